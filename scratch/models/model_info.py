"""What a model says about itself: input and output names and shapes, layers by name, the Keras
weight order (``keras_weight_slots``, which the savers and the gradient check follow) and the
``summary`` table. A mixin of ``Model`` (model.py), apart so that model.py is about running the graph.
"""

import numpy as np

from .graph import InputLayer, fmt_shape


class ModelInfo:
    """Introspection for ``Model``: reads ``layers``, ``nodes``, ``inputs``, ``outputs``, ``kind``,
    ``_all_layers`` and ``_shapes`` (set by ``Model.build``)."""

    def count_params(self):
        return int(sum(l.count_params() for l in self.layers))

    def keras_weight_slots(self, trainable_flags=True):
        """``[(layer, weight_name)]`` in Keras's ``trainable_weights + non_trainable_weights`` order."""
        slots = []
        for layer in self.layers:
            slots.extend(_weight_slots(layer, trainable_flags and self.keras_trainable))
        return [s for s in slots if s[2]] + [s for s in slots if not s[2]]

    # ---- introspection ----------------------------------------------------------------------
    @property
    def input_names(self):
        return [r[0] for r in self.inputs]

    @property
    def input_shapes(self):
        return [self._all_layers[r[0]].batch_shape for r in self.inputs]

    @property
    def input_dtypes(self):
        return [self._all_layers[r[0]].dtype for r in self.inputs]

    @property
    def output_names(self):
        return [r[0] if r[2] == 0 else f"{r[0]}[{r[2]}]" for r in self.outputs]

    @property
    def output_shapes(self):
        return [self._shapes[r] for r in self.outputs]

    def get_layer(self, name):
        """A layer by Keras name; ``"encoder/conv2d"`` reaches into nested models."""
        head, _, rest = name.partition("/")
        for layer in self.layers:
            if layer.name == head:
                if not rest:
                    return layer
                if isinstance(layer, ModelInfo):
                    return layer.get_layer(rest)
        known = [l.name for l in self.layers]
        raise ValueError(f"No such layer: {name!r} in model '{self.name}'. Existing layers are: {known}")

    def summary(self, print_fn=print):
        """A Keras-like table: layer (type), output shape, params, connected to; then the totals."""
        rows = [("Layer (type)", "Output Shape", "Param #", "Connected to")]
        first_node = {}
        for node in self.nodes:
            first_node.setdefault(node.layer.name, node)
        for layer in self.layers:
            node = first_node.get(layer.name)
            shape = layer.batch_shape if isinstance(layer, InputLayer) else (node.output_shape if node else None)
            links = "" if node is None else ", ".join(f"{r[0]}[{r[1]}][{r[2]}]" for r in node.refs())
            rows.append((f"{layer.name} ({getattr(layer, 'keras_class', type(layer).__name__)})",
                         fmt_shape(shape), f"{layer.count_params():,}", links if self.kind != "Sequential" else ""))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        line = "  ".join("{:<%d}" % w for w in widths)
        total = self.count_params()
        trainable = sum(int(np.prod(self._weight(l, n).shape)) for l, n, t in self.keras_weight_slots() if t)
        out = [f'Model: "{self.name}" ({self.kind})', "=" * (sum(widths) + 6), line.format(*rows[0]).rstrip(),
               "-" * (sum(widths) + 6)]
        out += [line.format(*r).rstrip() for r in rows[1:]]
        out += ["=" * (sum(widths) + 6), f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                f"Non-trainable params: {total - trainable:,}"]
        text = "\n".join(out)
        if print_fn is not None:
            print_fn(text)
        return text

    @staticmethod
    def _weight(layer, name):
        return layer.weights[name]


def _weight_slots(layer, trainable):
    """``[(layer, name, trainable)]`` for one layer, in its get_weights order."""
    if isinstance(layer, ModelInfo):
        return [(l, n, t) for l, n, t in layer.keras_weight_slots(trainable)]
    trainable = trainable and getattr(layer, "keras_trainable", True)
    state = set(layer.active_weight_names()) - set(layer.trainable_weight_names())   # BN's moving statistics
    return [(layer, n, trainable and n not in state) for n in layer.active_weight_names()]
