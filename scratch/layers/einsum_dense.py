"""EinsumDense: a dense layer whose contraction is an einsum equation (Keras's ``EinsumDense``).

The equation reads ``input,kernel->output`` in one of Keras's three forms:

- ``abc,cd->abd``            every input axis named (the input rank is the spec's length);
- ``...b,bc->...c``          the leading axes elided (batch and any others pass through);
- ``ab...,bc->ac...``        the trailing axes elided (they pass through, after the named ones).

The elided axes are given letters of their own here, so that every einsum (forward and both
gradients) is written out in full. An axis named in the input but in neither the kernel nor the
output is summed away; a letter repeated inside one operand (a diagonal) is refused.

Shapes follow Keras's ``_analyze_split_string``: ``output_shape`` lists the output axes after the
batch axis (and before/after the elided ones); the kernel takes each of its axes from the output
shape when the letter is an output letter, else from the input shape. The bias covers the output
spec from the first ``bias_axes`` letter to its end, with size 1 on the letters not in
``bias_axes`` and on trailing elided axes, so that it broadcasts against the output.

Formula: ``y = act(einsum(equation, x, kernel) + bias)``.
Weights: kernel (shape above), bias (absent when ``bias_axes`` is None).
"""

import re
import string

import numpy as np

from . import activations
from .base import Layer, LayerError

_FORMS = (  # (regex over the equation with "..." replaced by "0", where the elided axes go)
    (re.compile(r"^([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)$"), None),
    (re.compile(r"^0([a-zA-Z]+),([a-zA-Z]+)->0([a-zA-Z]+)$"), "left"),
    (re.compile(r"^([a-zA-Z]{2,})0,([a-zA-Z]+)->([a-zA-Z]+)0$"), "right"),
)


def parse_equation(equation):
    """``(input_spec, kernel_spec, output_spec, elided_side)`` of an EinsumDense equation."""
    if not isinstance(equation, str):
        raise LayerError(f"equation must be a string. Received: equation={equation!r}")
    compact = re.sub(r"\s+", "", equation).replace("...", "0")
    for pattern, side in _FORMS:
        match = pattern.match(compact)
        if match:
            specs = match.groups()
            for spec in specs:
                if len(set(spec)) != len(spec):
                    raise LayerError(f"equation must not repeat a letter within one operand (no diagonals). "
                                     f"Received: equation={equation!r}")
            return (*specs, side)
    raise LayerError(f"Invalid einsum equation '{equation}'. Equations must be in the form "
                     "[X],[Y]->[Z], ...[X],[Y]->...[Z], or [X]...,[Y]->[Z]....")


class EinsumDense(Layer):
    """``y = act(einsum(equation, x, kernel) + bias)`` (see the module docstring for the shapes).

    Input: any rank the equation allows. Output: ``(batch, *output_shape)`` with the elided axes
    in place. Weights: kernel, then bias (when ``bias_axes`` is given), in Keras's order.
    """

    weight_names = ("kernel", "bias")
    supports_masking = False   # Keras leaves EinsumDense's compute_mask at the default

    def __init__(self, equation, output_shape, activation=None, bias_axes=None, lora_rank=None,
                 lora_alpha=None, gptq_unpacked_column_size=None, quantization_config=None, **kwargs):
        super().__init__(**kwargs)
        if lora_rank:
            raise LayerError(f"LoRA-enabled EinsumDense is not supported. Received: lora_rank={lora_rank!r}")
        if quantization_config is not None or gptq_unpacked_column_size is not None:
            raise LayerError("quantized EinsumDense is not supported. "
                             f"Received: quantization_config={quantization_config!r}")
        self.equation = equation
        self.input_spec, self.kernel_spec, self.output_spec, self.elided_side = parse_equation(equation)
        for letter in self.output_spec:
            if letter not in self.input_spec and letter not in self.kernel_spec:
                raise LayerError(f"Dimension '{letter}' was specified in the output '{self.output_spec}' but has "
                                 f"no corresponding dim in the input spec '{self.input_spec}' or weight spec "
                                 f"'{self.kernel_spec}'")
        for letter in self.kernel_spec:
            if letter not in self.input_spec and letter not in self.output_spec:
                raise LayerError(f"Weight dimension '{letter}' did not have a match in either the input spec "
                                 f"'{self.input_spec}' or the output spec '{self.output_spec}'. For this layer, "
                                 "the weight must be fully specified.")
        if isinstance(output_shape, (int, np.integer)):
            output_shape = (int(output_shape),)
        self.partial_output_shape = tuple(None if d is None else int(d) for d in output_shape)
        if bias_axes is not None:
            bad = [c for c in bias_axes if c not in self.output_spec]
            if bad:
                raise LayerError(f"Bias dimension '{bad[0]}' was requested, but is not part of the output spec "
                                 f"'{self.output_spec}'")
        self.bias_axes = bias_axes
        self.activation = activations.get(activation)
        self._shapes = None

    def active_weight_names(self):
        return ("kernel", "bias") if self.bias_axes is not None else ("kernel",)

    # ---- shapes -----------------------------------------------------------------------------
    def _analyze(self, input_shape):
        """Kernel shape, bias shape, full output shape and the einsum equation with elided axes
        lettered, for one input shape (Keras's ``_analyze_split_string``)."""
        input_shape = tuple(input_shape)
        ins, ker, outs = self.input_spec, self.kernel_spec, self.output_spec
        elided = len(input_shape) - len(ins)
        if elided < 0 or (elided > 0 and self.elided_side is None):
            raise LayerError(f"EinsumDense equation '{self.equation}' expects an input of rank {len(ins)}"
                             f"{' or more' if self.elided_side else ''}. Received: input_shape={input_shape}")
        out = [input_shape[0], *self.partial_output_shape]
        if self.elided_side == "left":
            out[1:1] = input_shape[1:elided]
        elif self.elided_side == "right" and elided:
            out += input_shape[len(input_shape) - elided:]
        offset_in = elided if self.elided_side == "left" else 0
        in_dim = {c: input_shape[i + offset_in] for i, c in enumerate(ins)}
        if len(out) != len(outs) + max(elided, 0) or (self.elided_side is None and len(out) != len(outs)):
            raise LayerError(f"output_shape {self.partial_output_shape} does not fit the output spec '{outs}' of "
                             f"equation '{self.equation}' for input_shape={input_shape}")
        offset_out = elided if self.elided_side == "left" else 0
        out_dim = {c: out[i + offset_out] for i, c in enumerate(outs)}
        for c in ins:
            if c in out_dim and out_dim[c] is not None and out_dim[c] != in_dim[c]:
                raise LayerError(f"Input shape and output shape do not match at shared dimension '{c}'. Input "
                                 f"shape is {in_dim[c]}, and output shape is {out_dim[c]}.")
            if c in out_dim:
                out_dim[c] = in_dim[c]
        for i, c in enumerate(outs):
            out[i + offset_out] = out_dim[c]
        kernel_shape = tuple(out_dim[c] if c in out_dim else in_dim[c] for c in ker)
        bias_shape = None
        if self.bias_axes is not None:
            first = min(outs.find(c) for c in self.bias_axes)
            bias_shape = tuple(out_dim[c] if c in self.bias_axes else 1 for c in outs[first:])
            if self.elided_side == "right":
                bias_shape += (1,) * elided
        free = [c for c in string.ascii_letters if c not in ins + ker + outs][:max(elided, 0)]
        extra = "".join(free)
        if self.elided_side == "left":
            specs = (extra + ins, ker, extra + outs)
        elif self.elided_side == "right":
            specs = (ins + extra, ker, outs + extra)
        else:
            specs = (ins, ker, outs)
        return kernel_shape, bias_shape, tuple(out), specs

    def build(self, input_shape, rng=None):
        kernel_shape, bias_shape, _, _ = self._analyze(input_shape)
        if any(d is None for d in kernel_shape):
            raise LayerError(f"EinsumDense cannot infer the kernel shape {kernel_shape} of equation "
                             f"'{self.equation}' from input_shape={tuple(input_shape)}")
        shapes = {"kernel": kernel_shape, "bias": bias_shape}
        self.weights = {n: (np.zeros(shapes[n], self.dtype) if rng is None
                            else rng.standard_normal(shapes[n]).astype(self.dtype) * 0.5)
                        for n in self.active_weight_names()}
        self._shapes = shapes
        self.built = True

    def expected_weight_shape(self, name):
        if self._shapes is not None:
            return self._shapes[name]
        return super().expected_weight_shape(name)

    def compute_output_shape(self, input_shape):
        return self._analyze(input_shape)[2]

    # ---- computation --------------------------------------------------------------------------
    def forward(self, x, training=False):
        x = self.cast(x)
        _, bias_shape, _, specs = self._analyze(x.shape)
        ins, ker, outs = specs
        z = np.einsum(f"{ins},{ker}->{outs}", x, self.weights["kernel"])
        if bias_shape is not None:
            z = z + self.weights["bias"]
        y = self.activation.forward(z.astype(self.dtype, copy=False))
        self._cache = (x, z, y, specs)
        return y

    def backward(self, dout):
        x, z, y, (ins, ker, outs) = self._cache
        dz = self.activation.backward(z, y, self.cast(dout))
        kernel = self.weights["kernel"]
        self.grads["kernel"] = contract_to(ker, kernel.shape, (outs, dz), (ins, x)).astype(self.dtype)
        if self.bias_axes is not None:
            bias = self.weights["bias"]
            lead = dz.ndim - bias.ndim   # axes before the bias's first letter are summed away
            summed = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(bias.shape) if n == 1)
            self.grads["bias"] = dz.sum(axis=summed, keepdims=True).reshape(bias.shape).astype(self.dtype)
        return contract_to(ins, x.shape, (outs, dz), (ker, kernel)).astype(self.dtype)


def contract_to(target, target_shape, *operands):
    """``einsum(operands -> target)`` for letters of ``target`` the operands have; the rest of
    ``target`` (axes the forward einsum summed away) is broadcast back, as d(sum)/dx = 1."""
    have = "".join(c for c in target if any(c in spec for spec, _ in operands))
    specs = ",".join(spec for spec, _ in operands)
    part = np.einsum(f"{specs}->{have}", *[a for _, a in operands])
    if have == target:
        return part
    shape = [target_shape[i] if c in have else 1 for i, c in enumerate(target)]
    return np.broadcast_to(part.reshape(shape), target_shape).copy()
