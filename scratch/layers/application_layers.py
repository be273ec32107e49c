"""Layers that Keras's own applications define: ConvNeXt's LayerScale, Inception-ResNet-v2's CustomScaleLayer.

They are not in ``keras.layers``; a saved ConvNeXt / InceptionResNetV2 names them with their
defining module and a plain registered name, e.g. ``{"module": "keras.src.applications.convnext",
"class_name": "LayerScale", "registered_name": "LayerScale"}``, which the safety check accepts as
Keras's own (module under ``keras``, no ``package>`` prefix). Neither supports masking (Keras's
Layer default), so a mask stops here.
"""

import numpy as np

from .base import Layer, LayerError


class LayerScale(Layer):
    """``y = x * gamma``, one learned scale per channel (ConvNeXt's residual branch).

    Input ``(batch, ..., projection_dim)``, output the same shape. Weight: gamma
    ``(projection_dim,)`` (Keras's unnamed variable, initialized to ``init_values``).
    ``dx = dy * gamma``, ``dgamma = sum(dy * x)`` over every axis but the last.
    """

    weight_names = ("gamma",)

    def __init__(self, init_values, projection_dim, **kwargs):
        super().__init__(**kwargs)
        if isinstance(projection_dim, bool) or not isinstance(projection_dim, (int, np.integer)) or projection_dim < 1:
            raise LayerError(f"projection_dim must be a positive int. Received: projection_dim={projection_dim!r}")
        self.init_values = float(init_values)
        self.projection_dim = int(projection_dim)

    def build(self, input_shape, rng=None):
        self.compute_output_shape(input_shape)
        gamma = np.full(self.projection_dim, self.init_values) if rng is None else \
            rng.normal(0.0, 1.0, self.projection_dim)
        self.weights = {"gamma": gamma.astype(self.dtype)}
        self.built = True

    def expected_weight_shape(self, name):
        return (self.projection_dim,)

    def compute_output_shape(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != self.projection_dim:
            raise LayerError(f"LayerScale with projection_dim={self.projection_dim} cannot scale an input whose last "
                             f"axis has size {input_shape[-1]}. Received: input_shape={tuple(input_shape)}")
        return tuple(input_shape)

    def forward(self, x, training=False):
        x = self.cast(x)
        self.compute_output_shape(x.shape)
        self._x = x
        return x * self.weights["gamma"]

    def backward(self, dout):
        dy = self.cast(dout)
        self.grads["gamma"] = np.sum((dy * self._x).reshape(-1, self.projection_dim), axis=0).astype(self.dtype)
        return (dy * self.weights["gamma"]).astype(self.dtype)


class CustomScaleLayer(Layer):
    """``y = inputs[0] + inputs[1] * scale``: Inception-ResNet's scaled residual sum.

    Takes a list of two arrays that broadcast against each other (NumPy rules, as TF's); output
    the broadcast shape. No weights. ``dx0 = dy``, ``dx1 = dy * scale``, each summed back to its
    input's shape.
    """

    def __init__(self, scale, **kwargs):
        super().__init__(**kwargs)
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)):
            raise LayerError(f"scale must be a number. Received: scale={scale!r}")
        self.scale = float(scale)

    def compute_output_shape(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2 or \
                not all(isinstance(s, (list, tuple)) for s in input_shape):
            raise LayerError(f"CustomScaleLayer takes a list of two inputs. Received: input_shape={input_shape!r}")
        rank = max(len(s) for s in input_shape)
        aligned = [(1,) * (rank - len(s)) + tuple(s) for s in input_shape]
        out = []
        for dims in zip(*aligned):
            sizes = {d for d in dims if d not in (None, 1)}
            if len(sizes) > 1:
                raise LayerError(f"CustomScaleLayer inputs do not broadcast. Received: input_shape={input_shape!r}")
            out.append(sizes.pop() if sizes else None if None in dims else 1)
        return tuple(out)

    def forward(self, inputs, training=False):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise LayerError("CustomScaleLayer takes a list of two inputs.")
        a, b = (self.cast(x) for x in inputs)
        self._shapes = (a.shape, b.shape)
        return (a + b * self.scale).astype(self.dtype)

    def backward(self, dout):
        dy = self.cast(dout)
        return [_sum_to_shape(dy, s).astype(self.dtype) for s in self._shapes[:1]] + \
               [_sum_to_shape(dy * self.scale, self._shapes[1]).astype(self.dtype)]


def _sum_to_shape(g, shape):
    """Undo NumPy broadcasting: sum ``g`` over the axes that ``shape`` broadcast along."""
    g = np.sum(g, axis=tuple(range(g.ndim - len(shape)))) if g.ndim > len(shape) else g
    axes = tuple(i for i, (n, m) in enumerate(zip(shape, g.shape)) if n == 1 and m != 1)
    return np.sum(g, axis=axes, keepdims=True) if axes else g
