"""The Keras side is an extra: say so, rather than blame the user's model file, when it is missing."""

import importlib.util

# Top-level modules of the `keras` extra that the parity side imports.
KERAS_EXTRA_MODULES = ("tensorflow", "keras", "tf_keras")
INSTALL_HINT = "pip install 'keras-parity[keras]'"


class MissingExtra(Exception):
    """The parity side was asked for Keras in an engine-only install."""


def require_keras():
    """Raise MissingExtra naming the missing modules and the install command; return None if all are there."""
    missing = [m for m in KERAS_EXTRA_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtra(f"the Keras side of parity is not installed (missing: {', '.join(missing)}); "
                           f"install the keras extra: {INSTALL_HINT}")
