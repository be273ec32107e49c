"""The parity suite: the only package that knows both Keras and the scratch engine."""
