"""Keras 3 operation nodes of a Functional graph, run with NumPy from a fixed table, forward and backward.

A Functional model built with ``x + y``, ``x * 0.5``, ``keras.ops.*`` or an activation called on
a tensor (``keras.activations.relu(x, max_value=6)``) serializes *operations*, not layers:
``{"module": "keras.src.ops.numpy", "class_name": "Add", "config": {"name": "add"}}`` (module
``keras.src.ops.*``, or ``keras.src.activations.activations`` for the generalized ``ReLU``).
Keras 3 also records the mask computations of Embedding/Masking/merge layers this way
(``NotEqual``, ``ExpandDims``, ``LogicalOr``, ``Any``) and passes their result as ``mask=``.
An operation has no weights and is not part of ``model.layers``.

The call's positional args are in the node, in Keras's order: tensors, and constants stored
inline (``x * 0.5`` -> ``[x, 0.5]``, ``2.0 - x`` -> ``[2.0, x]``; arrays as ``__numpy__``,
slices as ``__slice__``); the op's own settings (``axis``, ``newshape``) are its config. Python
scalars stay weak, so ``x + 3`` runs in x's dtype as it does in Keras (NumPy 2 promotion).

The engine maps a node's class name through ``OPS`` and nothing else: it never imports the
module a file names. Each entry turns the op's config into ``(forward, backward)``:
``forward(*args) -> y`` and ``backward(args, y, dy)`` -> one gradient per positional arg (a list
for a list arg such as Concatenate's; None for constants and non-float tensors). Broadcast
arguments get their gradient summed back to their own shape. Derivatives at kinks follow
TensorFlow's gradient kernels (Maximum's goes to x on ties, clip passes it at its bounds,
Max reduction splits it among ties). The forward/backward pairs are built in op_kernels.py.
"""

import math

import numpy as np

from .errors import LayerError
from .layers.base import Layer
from .layers import activation_functions as fn
from .op_kernels import (axis_arg, binary, cast, clip, concatenate, einsum, erf, gelu, get_item, keras_relu, like,
                         logic, matmul_backward, named, pow_db, reduce, shape_op, shared, softmax, stack, transpose,
                         unary, where)

OP_MODULES = ("keras.src.ops.", "keras.src.activations.")


# op class name -> (config -> (forward(*args), backward(args, y, dy)))
OPS = {
    # arithmetic
    "Add": binary(np.add, lambda a, b, y, d: d, lambda a, b, y, d: d),
    "Subtract": binary(np.subtract, lambda a, b, y, d: d, lambda a, b, y, d: -d),
    "Multiply": binary(np.multiply, lambda a, b, y, d: d * b, lambda a, b, y, d: d * a),
    "Divide": binary(np.true_divide, lambda a, b, y, d: d / b, lambda a, b, y, d: -d * y / b),
    "TrueDivide": binary(np.true_divide, lambda a, b, y, d: d / b, lambda a, b, y, d: -d * y / b),
    "Power": binary(np.power, lambda a, b, y, d: d * b * np.power(a, np.asarray(b) - 1), pow_db),
    "Maximum": binary(np.maximum, lambda a, b, y, d: d * (a >= b), lambda a, b, y, d: d * ~(a >= b)),
    "Minimum": binary(np.minimum, lambda a, b, y, d: d * (a <= b), lambda a, b, y, d: d * ~(a <= b)),
    "Negative": unary(np.negative, lambda x, y, d: -d),
    "Square": unary(np.square, lambda x, y, d: 2 * x * d),
    "Sqrt": unary(np.sqrt, lambda x, y, d: 0.5 * d / y),
    "Rsqrt": unary(lambda x: 1 / np.sqrt(x), lambda x, y, d: -0.5 * d * y ** 3),
    "Reciprocal": unary(np.reciprocal, lambda x, y, d: -d * y * y),
    "Absolute": unary(np.abs, lambda x, y, d: d * np.sign(x)),
    "Abs": unary(np.abs, lambda x, y, d: d * np.sign(x)),
    "Exp": unary(np.exp, lambda x, y, d: d * y),
    "Expm1": unary(np.expm1, lambda x, y, d: d * (y + 1)),
    "Log": unary(np.log, lambda x, y, d: d / x),
    "Log1p": unary(np.log1p, lambda x, y, d: d / (1 + x)),
    "Erf": unary(lambda x: erf(x).astype(x.dtype), lambda x, y, d: d * 2 / math.sqrt(math.pi) * np.exp(-x * x)),
    "Sin": unary(np.sin, lambda x, y, d: d * np.cos(x)),
    "Cos": unary(np.cos, lambda x, y, d: -d * np.sin(x)),
    "Clip": clip,
    # activations (keras.activations.* and keras.ops.* on tensors)
    "ReLU": keras_relu,
    "Relu": unary(lambda x: np.maximum(x, 0), lambda x, y, d: d * (y > 0)),
    "Relu6": named("relu6"),
    "LeakyRelu": lambda cfg: shared(fn.leaky_relu, fn.leaky_relu_backward, negative_slope=cfg.get("negative_slope", 0.2)),
    "Elu": lambda cfg: shared(fn.elu, fn.elu_backward, alpha=cfg.get("alpha", 1.0)),
    "Celu": lambda cfg: shared(fn.celu, fn.celu_backward, alpha=cfg.get("alpha", 1.0)),
    "Selu": named("selu"),
    "Sigmoid": named("sigmoid"),
    "LogSigmoid": named("log_sigmoid"),
    "Tanh": named("tanh"),
    "TanhShrink": named("tanh_shrink"),
    "HardTanh": named("hard_tanh"),
    "SoftShrink": lambda cfg: shared(fn.soft_shrink, fn.soft_shrink_backward, threshold=cfg.get("threshold", 0.5)),
    "HardShrink": lambda cfg: shared(fn.hard_shrink, fn.hard_shrink_backward, threshold=cfg.get("threshold", 0.5)),
    "HardSigmoid": named("hard_sigmoid"),
    "HardSilu": named("hard_silu"),
    "Silu": named("silu"),
    "Gelu": gelu,
    "Softplus": named("softplus"),
    "Softsign": named("softsign"),
    "SparsePlus": named("sparse_plus"),
    "SparseSigmoid": named("sparse_sigmoid"),
    "Glu": lambda cfg: shared(fn.glu, fn.glu_backward, axis=cfg.get("axis", -1)),
    "Softmax": softmax,
    "LogSoftmax": lambda cfg: softmax(cfg, log=True),
    # reductions and linear algebra
    "Mean": reduce("mean"), "Sum": reduce("sum"), "Max": reduce("max"), "Min": reduce("min"),
    "Any": reduce("any"), "All": reduce("all"),
    "Matmul": lambda cfg: (np.matmul, matmul_backward),
    "Einsum": einsum,
    # shapes
    "Reshape": shape_op(lambda cfg, x: np.reshape(x, cfg["newshape"])),
    "Transpose": transpose,
    "ExpandDims": shape_op(lambda cfg, x: np.expand_dims(x, axis_arg(cfg["axis"]))),
    "Squeeze": shape_op(lambda cfg, x: np.squeeze(x, axis_arg(cfg.get("axis")))),
    "Concatenate": concatenate,
    "Stack": stack,
    "GetItem": get_item,
    "Cast": cast,
    "Where": where,
    # masks and comparisons (no gradient)
    "NotEqual": logic(np.not_equal), "Equal": logic(np.equal), "Greater": logic(np.greater),
    "GreaterEqual": logic(np.greater_equal), "Less": logic(np.less), "LessEqual": logic(np.less_equal),
    "LogicalAnd": logic(np.logical_and), "LogicalOr": logic(np.logical_or), "LogicalNot": logic(np.logical_not),
    "ZerosLike": like(0), "OnesLike": like(1),
}


def is_op(layer_cfg):
    """A Keras 3 operation node (module ``keras.src.ops.*`` or ``keras.src.activations.*``), not a layer.

    Legacy ``.h5`` configs drop ``module``; there an operation is told from a layer of the same
    class name (``Add``, ``ReLU``, ``Concatenate``) by its config, which has no ``trainable`` key
    (every Keras layer's config has one).
    """
    module = layer_cfg.get("module")
    if isinstance(module, str):
        return module.startswith(OP_MODULES)
    cfg = layer_cfg.get("config") or {}
    return layer_cfg.get("class_name") in OPS and "trainable" not in cfg


class Op(Layer):
    """One Keras 3 operation node of a Functional graph: ``forward(*args)`` and ``backward(dy)``.

    ``backward`` returns one gradient per positional arg of the last ``forward`` (None for
    constants and masks). Output shapes are found by running the op on two dummy batches
    (``infer_output_shape``), so any op in the table has one without a shape rule of its own.
    """

    is_op = True

    def __init__(self, class_name, name=None, **config):
        super().__init__(name=name)
        if class_name not in OPS:
            raise LayerError(f"no scratch implementation of the Keras operation {class_name!r}")
        self.op_class, self.config = class_name, dict(config)
        self._forward, self._backward = OPS[class_name](self.config)

    def to_dtype(self, dtype):
        super().to_dtype(dtype)
        if self.op_class == "Cast" and np.dtype(self.config.get("dtype") or "float32").kind == "f":
            self.config["dtype"] = self.dtype.name   # a float64 truth run stays float64 through casts
        return self

    def infer_output_shape(self, args_small, args_large):
        """Output shape from two runs whose unknown (batch) dims were 2 and 3: dims that differ are None."""
        with np.errstate(all="ignore"):
            a, b = np.shape(self._forward(*args_small)), np.shape(self._forward(*args_large))
        if len(a) != len(b):
            return None
        return tuple(n if n == m else None for n, m in zip(a, b))

    def compute_mask(self, inputs, mask=None):
        return None

    def forward(self, *args, **kwargs):
        if kwargs:
            raise LayerError(f"operation '{self.name}' ({self.op_class}) is called with keyword arguments "
                             f"{sorted(kwargs)}, which the scratch operation does not take")
        y = self._forward(*args)
        self._cache = (args, y)
        return y

    def backward(self, dout):
        args, y = self._cache
        return self._backward(args, y, np.asarray(dout))
