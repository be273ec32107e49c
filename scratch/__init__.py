"""A from-scratch NumPy engine that runs Keras models on their own weights.

Imports numpy, h5py and the standard library only: never TensorFlow or Keras.
"""

from .errors import (GraphError, InputError, LayerError, ModelFileError, ScratchError,
                     UnsupportedLayerError, WeightMismatchError)
from .io import load
from .model import Model

__all__ = ["load", "Model", "ScratchError", "ModelFileError", "UnsupportedLayerError",
           "WeightMismatchError", "GraphError", "InputError", "LayerError"]
