"""Keep TensorFlow's native start-up lines (absl, oneDNN, CUDA probing) off the user's terminal.

TensorFlow prints them from C++ straight to file descriptor 2, before ``TF_CPP_MIN_LOG_LEVEL`` is
read by absl, so neither that variable nor ``sys.stderr`` can hide them. While TensorFlow imports
and first touches its devices, fd 2 is pointed at /dev/null; Python's own errors still reach the
terminal afterwards. Later native lines (oneDNN's "supports DT_BOOL only on platforms with AVX-512"
at the first boolean op) are ERROR-level logs, so ``TF_CPP_MIN_LOG_LEVEL`` is set to 3 before the
import. ``--verbose`` (``PARITY_VERBOSE=1``) changes neither.
"""

import contextlib
import os
import sys

VERBOSE_ENV = "PARITY_VERBOSE"


def verbose():
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes")


@contextlib.contextmanager
def native_stderr_silenced():
    """Redirect fd 2 to /dev/null for the block (a no-op in verbose mode)."""
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow_quietly():
    """Import keras and tensorflow and initialise TF's devices with fd 2 silenced; returns (keras, tf)."""
    if not verbose():
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    with native_stderr_silenced():
        import keras
        import tensorflow as tf

        tf.config.list_physical_devices()   # the CUDA probe ('failed call to cuInit') happens here
        tf.constant(0.0) + 1.0               # ... and the first kernel launch logs oneDNN once more
    return keras, tf
