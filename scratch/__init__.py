"""A from-scratch NumPy engine that runs Keras models on their own weights.

Imports numpy, h5py and the standard library only: never TensorFlow or Keras.
"""
