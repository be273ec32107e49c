"""A from-scratch NumPy engine that runs Keras models on their own weights.

Imports numpy, h5py and the standard library only: never TensorFlow or Keras.
"""

__version__ = "0.2.0"

from .errors import (GraphError, InputError, LayerError, ModelFileError, ScratchError,
                     UnsupportedLayerError, WeightMismatchError)
from . import layers
from .saving.io import load
from .models.model import Model

__all__ = ["__version__", "load", "Model", "layers", "ScratchError", "ModelFileError", "UnsupportedLayerError",
           "WeightMismatchError", "GraphError", "InputError", "LayerError"]
