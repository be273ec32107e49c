"""The errors the loader and the model graph raise.

Every error names what it is about (the file, the layer, the key and value, the dataset) so that a
person can act on it without a debugger. Everything the engine raises on bad input (a file, a
config, an array given to ``predict``) is a ``ScratchError``; anything else escaping ``scratch.load``
or ``predict`` is an engine bug. The CLI exits 2 on every ``ScratchError``.
"""

__all__ = ["ScratchError", "ModelFileError", "ConfigError", "UnsupportedLayerError", "WeightMismatchError",
           "GraphError", "InputError", "LayerError", "ResourceError"]


class ScratchError(Exception):
    """Base class of the engine's loader and graph errors."""


class LayerError(ScratchError, ValueError):
    """A layer was given arguments or weights it cannot use (Keras raises ValueError for these)."""


class ModelFileError(ScratchError, ValueError):
    """A model file cannot be read: not HDF5 or zip, truncated, or missing its config."""


class ConfigError(ModelFileError):
    """The model config has the wrong shape: a list where a dict belongs, a bad node, a bad dtype..."""


class ResourceError(ScratchError, ValueError):
    """The file or config declares more memory than the budget (``scratch.load(..., max_bytes=)``)."""


class WeightMismatchError(ModelFileError):
    """A weight is missing from the file, or its shape does not match what the config implies."""


class GraphError(ModelFileError):
    """The model config describes a graph that cannot be run (dangling or cyclic references)."""


class InputError(ScratchError, ValueError):
    """``predict``/``trace`` received inputs that do not fit the model (count, names, shapes)."""


class UnsupportedLayerError(ScratchError):
    """The model holds layers (or objects) the engine does not run, or refuses to run.

    ``problems`` lists ``(layer_name, class_name, reason)`` for every offender in the model, so a
    user sees them all at once instead of fixing them one by one.
    """

    def __init__(self, problems, source=None):
        self.problems = [tuple(p) for p in problems]
        self.source = source
        where = f" in {source}" if source else ""
        lines = [f"  - {name!r} ({cls}): {reason}" for name, cls, reason in self.problems]
        super().__init__(
            f"{len(self.problems)} unsupported layer(s){where}:\n" + "\n".join(lines)
        )

    @property
    def layers(self):
        """``[(layer_name, class_name), ...]`` of every unsupported layer."""
        return [(name, cls) for name, cls, _ in self.problems]
