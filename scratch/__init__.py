"""A from-scratch NumPy engine that runs Keras models on their own weights.

Imports numpy, h5py and the standard library only: never TensorFlow or Keras.
"""

from .errors import (GraphError, InputError, LayerError, ModelFileError, ScratchError,
                     UnsupportedLayerError, WeightMismatchError)
from . import layers
from .saving.io import load
from .models.model import Model

__all__ = ["load", "Model", "layers", "ScratchError", "ModelFileError", "UnsupportedLayerError",
           "WeightMismatchError", "GraphError", "InputError", "LayerError"]
