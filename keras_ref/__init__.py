"""Keras reference models: data, builders, training and export to weights/. Never imports scratch."""
