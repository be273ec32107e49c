"""How ``make bench`` measures: side-by-side timing, peak memory and the machine's state.

Timing: warm-ups of every side first, then the sides called in turn ``A B A B ...`` (so a load
spike from another process hits both), and the median of each side. The ratio is
``median(scratch) / median(Keras)``.

Memory: each side's allocator peak during one call, above what was live when the call began:
numpy's allocations through ``tracemalloc`` (numpy reports every array buffer to it) for scratch,
TensorFlow's CPU allocator statistics (``tf.config.experimental.get_memory_info``) for Keras.
Both count the buffers a call allocates, not memory an allocator keeps cached.
"""

import gc
import os
import statistics
import time
import tracemalloc


def interleaved(sides, *, warmups, pairs):
    """{name: [seconds]} from calling the ``sides`` ({name: fn}) in turn, after warm-ups."""
    for _ in range(warmups):
        for fn in sides.values():
            fn()
    times = {name: [] for name in sides}
    for _ in range(pairs):
        for name, fn in sides.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


# OpenBLAS's workers spin for 2**28 cycles after a threaded call (its default THREAD_TIMEOUT; about
# 0.1 s at 2.6 GHz) before they sleep.
OPENBLAS_SPIN_S = 0.25


def let_blas_threads_sleep():
    """Wait until numpy's threaded BLAS workers stop spinning, so they take no core from what runs next."""
    time.sleep(OPENBLAS_SPIN_S)


def median(values):
    return float(statistics.median(values)) if values else None


def scratch_peak_mb(fn):
    """numpy's peak allocation (MiB) during ``fn()`` above what was allocated before."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn()
        return (tracemalloc.get_traced_memory()[1] - base) / 2**20
    finally:
        tracemalloc.stop()


def keras_peak_mb(fn):
    """TensorFlow's CPU allocator peak (MiB) during ``fn()`` above its live bytes before; None when
    the allocator keeps no statistics."""
    import tensorflow as tf

    gc.collect()
    try:
        tf.config.experimental.reset_memory_stats("CPU:0")
        base = tf.config.experimental.get_memory_info("CPU:0")["current"]
    except (ValueError, RuntimeError, tf.errors.OpError):
        return None
    fn()
    return (tf.config.experimental.get_memory_info("CPU:0")["peak"] - base) / 2**20


def load():
    """1-, 5- and 15-minute load averages and the CPUs this process may use."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        one = five = fifteen = None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return dict(load1=one, load5=five, load15=fifteen, cpus=cpus)


def blas_info():
    """What BLAS numpy runs and with how many threads (threadpoolctl when present), and what the
    engine limits its own calls to."""
    try:
        from scratch import parallel

        info = dict(engine_blas=parallel.blas_library(), engine_blas_threads=parallel.blas_threads(),
                    engine_pool_workers=parallel.workers())
    except ImportError:   # an engine from before scratch.parallel (a baseline run)
        info = dict(engine_blas=None, engine_blas_threads=None, engine_pool_workers=None)
    try:
        from threadpoolctl import threadpool_info

        info["threadpools"] = [{k: p.get(k) for k in ("user_api", "internal_api", "prefix", "version",
                                                       "architecture", "num_threads", "threading_layer")}
                               for p in threadpool_info()]
    except ImportError:
        info["threadpools"] = "threadpoolctl not installed"
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "SCRATCH_NUM_THREADS", "TF_ENABLE_ONEDNN_OPTS"):
        info[var] = os.environ.get(var)
    return info


class BusyNeighbour:
    """A second CPU-bound process beside the benchmark (``BENCH_BUSY=1``), to see how the ratios
    move when the machine is busy."""

    def __enter__(self):
        import subprocess
        import sys

        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait()
