"""The model graph: Sequential and Functional Keras models rebuilt from their config (from_config.py).

A model is a list of *nodes* (one per layer call) in an order where every input exists before it
is used. A tensor is named as Keras names it, ``(layer_name, node_index, tensor_index)``.

Running a node follows Keras 3's ``Layer.__call__``:
- the layer gets ``mask=`` when the config passes one explicitly (Keras 3 files record masks as
  ``NotEqual``/``Any`` operation nodes), or when its call has exactly one tensor argument (then the
  mask of that argument). tf_keras always hands the inputs' masks over; its recurrent nodes list
  ``[x, *initial_state]`` as one input, which becomes ``initial_state=`` here;
- the output mask is ``layer.compute_mask(inputs, previous_mask)``, where ``previous_mask`` is the
  mask given to the call or else the mask of the first argument;
- a call with several tensor arguments (MultiHeadAttention's query, value, key) hands argument
  ``k``'s mask to the layer's ``k_mask`` parameter, and the positional arguments after the first
  go to ``forward`` too. MultiHeadAttention then deletes the masks of the tensors it was given
  (``set_keras_mask(query, None)``), so layers run after it see those tensors unmasked.

Trace names (``Model.trace``): a layer's output is under its Keras name; node k > 0 of a layer
called several times is ``name@k``; output i > 0 of a layer with several outputs (return_state)
is ``name[i]``; layers inside a nested model are ``outer/inner`` (``outer@k/inner`` for its node
k). Operation nodes (scratch/ops.py: ``x + y``, ``keras.ops.*``, Keras 3's mask operations) are
traced under their own names like layers, though ``model.layers`` leaves them out; InputLayers
are left out.

The graph's parts (InputLayer, Node, Ref) and the helpers that walk them are in graph.py;
backprop through a recorded run is in backprop.py; names, shapes, weight order and ``summary`` in
model_info.py.
"""

import numpy as np

from .. import parallel
from .backprop import Call, set_grads, backprop
from ..layers.base import Layer, LayerError, inference_only
from ..errors import GraphError, InputError, ModelFileError
from .graph import (InputLayer, Ref, accepted_kwargs, as_list, fmt_shape, leaves, resolve, resolve_masks,
                    shape_call_kwargs, sole_owner, squash, tensor_arguments, trace_name)
from .model_info import ModelInfo


class Model(ModelInfo, Layer):
    """A Keras Sequential or Functional model run by scratch layers.

    ``layers`` mirrors Keras's ``model.layers`` (a Functional model lists its InputLayers, a
    Sequential one does not). ``predict``/``trace`` take one array, a list in ``input_names``
    order, or a dict keyed by input name.
    """

    consumes_mask = True
    supports_masking = True

    def __init__(self, name, layers, nodes, inputs, outputs, kind="Functional", source=None):
        super().__init__(name=name)
        self.kind, self.source = kind, source
        self.layers = [l for l in layers if not getattr(l, "is_op", False)
                       and not (kind == "Sequential" and isinstance(l, InputLayer))]
        self._all_layers = {l.name: l for l in layers}
        self.nodes = nodes
        self.inputs, self.outputs = list(inputs), list(outputs)
        self.keras_class = kind
        self._params = {}
        self._last_use = {}
        for i, node in enumerate(nodes):
            for ref in node.refs():
                self._last_use[ref] = i
        self._plan = None

    # ---- construction from a Keras config -------------------------------------------------
    # ---- shapes and weights ---------------------------------------------------------------
    def build(self, input_shape=None, rng=None):
        """Infer every tensor's shape and build each layer at its first call."""
        shapes = {}
        given = None if input_shape is None else (as_list(input_shape) if len(self.inputs) > 1 else [input_shape])
        for i, ref in enumerate(self.inputs):
            layer = self._all_layers[ref[0]]
            shape = layer.batch_shape
            if shape is None and given is not None:
                shape = layer.batch_shape = tuple(given[i])
            if shape is None:
                raise ModelFileError(f"model '{self.name}'{self._where()}: the input shape of '{layer.name}' is unknown "
                                     "(the model was saved before it was built)")
            shapes[ref] = tuple(shape)
        for node in self.nodes:
            layer = node.layer
            in_shape = resolve(node.args[0], shapes) if node.args else None
            if hasattr(layer, "tensor_call_args"):   # several tensor arguments: all their shapes, in order
                in_shape = [resolve(a, shapes) for _, a in tensor_arguments(layer, node)]
            if getattr(layer, "is_op", False):
                out = self._op_output_shape(node, shapes)
            else:
                shape_kwargs = shape_call_kwargs(layer, node)
                try:
                    if not layer.built:
                        layer.build(in_shape, rng) if not isinstance(layer, Model) else layer.build(in_shape)
                    out = layer.compute_output_shape(in_shape, **shape_kwargs)
                except (LayerError, ValueError, TypeError, IndexError) as exc:
                    raise GraphError(f"model '{self.name}'{self._where()}: layer '{layer.name}' "
                                     f"({type(layer).__name__}) cannot take input shape {in_shape}: {exc}") from None
            node.output_shape = out
            outs = out if isinstance(out, list) else [out]
            for t, s in enumerate(outs):
                shapes[Ref(layer.name, node.index, t)] = None if s is None else tuple(s)
        self._shapes = shapes
        self.built = True

    def _op_output_shape(self, node, shapes):
        """An operation's output shape: the op run on dummy arrays whose unknown dims are 2, then 3."""
        refs = node.refs()
        if any(shapes.get(r) is None for r in refs):
            return None
        dummies = [{r: np.ones([fill if d is None else d for d in shapes[r]], self.dtype) for r in refs}
                   for fill in (2, 3)]
        try:
            return node.layer.infer_output_shape(*(resolve(node.args, d) for d in dummies))
        except (LayerError, ValueError, TypeError, IndexError) as exc:
            raise GraphError(f"model '{self.name}'{self._where()}: operation '{node.layer.name}' "
                             f"({node.layer.op_class}) cannot take input shapes "
                             f"{[shapes[r] for r in refs]}: {exc}") from None

    def _where(self):
        return f" in {self.source}" if self.source else ""

    def compute_output_shape(self, input_shape):
        out = [self._shapes[r] for r in self.outputs]
        return out if len(out) > 1 else out[0]

    def to_dtype(self, dtype):
        """Run every layer in ``dtype`` (``"float64"`` for a truth run); integer inputs stay integers."""
        for layer in self._all_layers.values():
            layer.to_dtype(dtype)
        self.dtype = np.dtype(dtype)
        return self

    # ---- running ----------------------------------------------------------------------------
    def _standardize(self, x):
        names = self.input_names
        if isinstance(x, dict):
            missing = [n for n in names if n not in x]
            if missing:
                raise InputError(f"model '{self.name}' expects inputs {names}; missing {missing}")
            xs = [x[n] for n in names]
        elif isinstance(x, (list, tuple)) and len(names) > 1 or (isinstance(x, (list, tuple)) and len(x) == 1):
            xs = list(x)
        else:
            xs = [x]
        if len(xs) != len(names):
            raise InputError(f"model '{self.name}' expects {len(names)} input(s) {names}, received {len(xs)}")
        xs = [np.asarray(v) for v in xs]
        for name, v, shape in zip(names, xs, self.input_shapes):
            if shape is not None and (v.ndim != len(shape) or any(
                    s is not None and s != d for s, d in zip(shape[1:], v.shape[1:]))):
                raise InputError(f"model '{self.name}': input '{name}' expects shape {fmt_shape(shape)}, "
                                 f"received {v.shape}")
        return xs

    def _run(self, xs, input_masks=None, collect=None, prefix="", feed=None, keep=False, training=False,
             tape=None):
        """Run the graph; returns (outputs, output_masks). ``collect`` receives (trace_name, value);
        ``tape`` receives each call's inputs for ``backward``."""
        values, masks = {}, {}
        input_masks = input_masks if input_masks is not None else [None] * len(xs)
        for ref, x, m in zip(self.inputs, xs, as_list(input_masks)):
            values[ref] = self._all_layers[ref[0]].forward(x)
            masks[ref] = m
        named = collect is not None or feed is not None
        free = not keep and tape is None   # free intermediates nobody reads again (ResNet-sized batches)
        for node, plan in zip(self.nodes, self._node_plan()):
            overwrite = free and plan.donor is not None and sole_owner(values, plan.donor)
            outs, out_masks = self._call_node(node, values, masks, collect, prefix, feed, training, tape,
                                              plan.tensor_args, overwrite)
            refs = plan.out_refs(len(outs))
            for ref, o, m in zip(refs, outs, out_masks):
                values[ref] = o
                masks[ref] = m
            if named:
                for t, (ref, o) in enumerate(zip(refs, outs)):
                    tname = prefix + trace_name(node.layer.name, node.index, t)
                    if collect is not None:
                        collect.append((tname, o))
                    if feed is not None and tname in feed:   # teacher forcing: downstream sees the reference
                        values[ref] = np.asarray(feed[tname])
            if free:
                for ref in plan.last_read:
                    values.pop(ref, None)
            outs = o = None   # ``values`` alone holds the outputs now (sole_owner counts references)
        return [values[r] for r in self.outputs], [masks.get(r) for r in self.outputs]

    def _node_plan(self):
        """Per node, what every run needs and no run changes (built at the first run; a decoding
        step model runs a tiny graph hundreds of times, where walking the arguments again per call
        was a third of the graph's own time): ``NodePlan``."""
        if self._plan is None:
            wanted, inputs = set(self.outputs), set(self.inputs)
            self._plan = [NodePlan(node, [r for r in dict.fromkeys(node.refs())
                                          if self._last_use.get(r) == i and r not in wanted and r not in inputs])
                          for i, node in enumerate(self.nodes)]
            for plan, node in zip(self._plan, self.nodes):
                refs = node.refs()
                if getattr(node.layer, "overwrites_input", False) and len(refs) == 1 and refs[0] in plan.last_read:
                    plan.donor = refs[0]
        return self._plan

    def _call_node(self, node, values, masks, collect, prefix, feed, training, tape=None, tensor_args=None,
                   overwrite_input=False):
        layer = node.layer
        args = resolve(node.args, values)
        kwargs = resolve(node.kwargs, values)
        kwargs.pop("training", None)
        if getattr(layer, "is_op", False):
            out = layer.forward(*args, **kwargs)
            if tape is not None:
                tape.append(Call(node, args, kwargs, [out]))
            layer._last_call = tape[-1] if tape is not None else None
            return [out], [None]
        first_mask = squash(resolve_masks(node.args[0], masks)) if node.args else None
        explicit = kwargs.pop("mask", None)
        if tensor_args is None:
            tensor_args = count_tensor_arguments(node)
        if explicit is not None:
            mask = squash(explicit)
        elif node.auto_mask == "tf_keras" or tensor_args == 1:
            mask = first_mask
        else:
            mask = None
        previous_mask = mask if mask is not None else first_mask
        x = args[0]
        if isinstance(layer, Model):
            k = "" if node.index == 0 else f"@{node.index}"
            sub_prefix = f"{prefix}{layer.name}{k}/"
            sub_tape = None if tape is None else []
            outs, out_masks = layer._run(as_list(x), input_masks=as_list(mask) if mask is not None else None,
                                         collect=collect, prefix=sub_prefix, feed=feed, training=training,
                                         tape=sub_tape)
            if tape is not None:
                tape.append(Call(node, x, {}, outs, sub_tape))
            return outs, out_masks
        call_kwargs = {k: v for k, v in kwargs.items() if v is not None}
        accepted = accepted_kwargs(layer)
        if layer.consumes_mask and mask is not None and "mask" in accepted:
            call_kwargs["mask"] = mask
        if tensor_args > 1:   # Keras hands each tensor argument `k`'s mask to a `k_mask` parameter
            for arg, struct in tensor_arguments(layer, node) if hasattr(layer, "tensor_call_args") else []:
                arg_mask = squash(resolve_masks(struct, masks))
                if f"{arg}_mask" in accepted and call_kwargs.get(f"{arg}_mask") is None and arg_mask is not None:
                    call_kwargs[f"{arg}_mask"] = arg_mask
        if "training" in accepted:
            call_kwargs["training"] = training
        if overwrite_input and "overwrite_input" in accepted:   # a subclass's forward may not take it
            call_kwargs["overwrite_input"] = True
        unknown = [k for k in call_kwargs if k not in accepted]
        if unknown:
            raise GraphError(f"layer '{layer.name}' ({type(layer).__name__}) is called with {unknown} in the config, "
                             "which the scratch layer does not take")
        out = layer.forward(x, *args[1:], **call_kwargs)
        if getattr(layer, "clears_input_masks", False):   # Keras's MHA deletes its inputs' masks when it runs
            for _, struct in tensor_arguments(layer, node):
                for ref in leaves(struct):
                    masks[ref] = None
        outs = as_list(out)
        if tape is not None:
            tape.append(Call(node, x, call_kwargs, outs, rest=args[1:]))
        elif getattr(layer, "_cache", None) is not None:
            # predict/trace record no tape, so no backward reads this cache: free the arrays it holds
            # (otherwise every layer's input and output stay alive for the whole call).
            layer._cache = None
        layer._last_call = tape[-1] if tape is not None else None   # whose inputs the layer's cache holds
        out_mask = layer.compute_mask(x, previous_mask)
        out_masks = as_list(out_mask) if isinstance(out_mask, (list, tuple)) else [out_mask]
        out_masks = (out_masks + [None] * len(outs))[:len(outs)]
        return outs, out_masks

    def forward(self, x, mask=None, training=False):
        """Run the graph and record every call for ``backward``; a list for several outputs."""
        self._tape = []
        self._tape_inputs = as_list(x) if len(self.inputs) > 1 else [x]
        # the output masks are kept for a loss that honours them (scratch.trainer)
        outs, self.output_masks = self._run(self._tape_inputs,
                                            input_masks=None if mask is None else as_list(mask), training=training,
                                            tape=self._tape)
        return outs if len(outs) > 1 else outs[0]

    def backward(self, dout):
        """Backprop through the graph recorded by the last ``forward``.

        ``dout`` mirrors the outputs (a list for several; None = no gradient). Returns dx (a list
        for several inputs; None for integer inputs such as token ids) and fills every layer's
        ``grads``, summed over the nodes of layers called more than once.
        """
        if not getattr(self, "_tape", None):
            raise LayerError(f"model '{self.name}': backward called before forward")
        acc = {}
        dxs = backprop(self, self._tape, self._tape_inputs, as_list(dout) if len(self.outputs) > 1 else [dout],
                       acc)
        for layer, grads in acc.values():
            set_grads(layer, grads)
        return dxs if len(dxs) > 1 else dxs[0]

    @property
    def weights(self):
        """``{layer/weight: array}`` over every layer (the arrays the layers compute with)."""
        return {f"{l.name}/{n}": w for l in self.layers for n, w in l.weights.items()}

    @weights.setter
    def weights(self, value):
        if value:
            raise LayerError("a Model holds no weights of its own; use set_weights or its layers")

    @property
    def grads(self):
        return {f"{l.name}/{n}": g for l in self.layers for n, g in l.grads.items()}

    @grads.setter
    def grads(self, value):
        if value:
            raise LayerError("a Model holds no gradients of its own")

    def active_weight_names(self):
        return tuple(f"{l.name}/{n}" for l in self.layers for n in l.active_weight_names())

    def trainable_weight_names(self):
        """The weights ``backward`` fills gradients for (all but state such as BN's statistics)."""
        return tuple(f"{l.name}/{n}" for l in self.layers for n in l.trainable_weight_names())

    def get_weights(self):
        return [w for l in self.layers for w in l.get_weights()]

    def set_weights(self, arrays):
        arrays = list(arrays)
        for layer in self.layers:
            k = len(layer.active_weight_names())
            if k:
                layer.set_weights(arrays[:k])
                arrays = arrays[k:]

    def compute_mask(self, inputs, mask=None):
        return None   # nested models are run through _run, which carries their output masks

    def predict(self, x, batch_size=32):
        """Inference on NumPy inputs in batches; a list when the model has several outputs."""
        xs = self._standardize(x)
        n = xs[0].shape[0]
        if any(v.shape[0] != n for v in xs):
            raise InputError(f"model '{self.name}': inputs have different batch sizes {[v.shape[0] for v in xs]}")
        batch_size = max(1, int(batch_size or n or 1))
        with parallel.single_threaded_blas(), inference_only():   # the engine splits big products itself
            chunks = [self._run([v[s:s + batch_size] for v in xs])[0] for s in range(0, max(n, 1), batch_size)]
        outs = [np.concatenate([c[i] for c in chunks], axis=0) for i in range(len(self.outputs))]
        return outs if len(outs) > 1 else outs[0]

    def trace(self, x, feed=None):
        """Every layer's output, ``{trace_name: ndarray}`` in execution order (naming: module docstring).

        With ``feed={trace_name: reference_output}``, each layer reads its inputs from ``feed``
        instead of from the scratch layers before it, which isolates each layer's own error from
        the error it inherits (its output is still recorded as computed).
        """
        collect = []
        with parallel.single_threaded_blas(), inference_only():
            self._run(self._standardize(x), collect=collect, feed=feed, keep=True)
        return dict(collect)

    def __repr__(self):
        return f"Model(name={self.name!r}, kind={self.kind!r}, layers={len(self.layers)})"


class NodePlan:
    """What running one node needs that only the graph decides: how many tensor arguments the call
    has (Keras's mask rule reads it), the refs of its outputs, and the tensors it is the last
    reader of (``last_read``, which a run that keeps nothing frees after it), and ``donor``: the
    ref of its only input when that input dies here and the layer can write its output into it
    (``overwrites_input``; a run that keeps nothing lets it when ``sole_owner`` holds)."""

    __slots__ = ("tensor_args", "last_read", "donor", "_node", "_out_refs")

    def __init__(self, node, last_read):
        self.tensor_args = count_tensor_arguments(node)
        self.last_read = last_read
        self.donor = None
        self._node, self._out_refs = node, []

    def out_refs(self, count):
        """``[Ref(layer, node, t) for t < count]``, made once (how many outputs shows at the first run)."""
        refs = self._out_refs
        while len(refs) < count:
            refs.append(Ref(self._node.layer.name, self._node.index, len(refs)))
        return refs if len(refs) == count else refs[:count]


def count_tensor_arguments(node):
    """How many of a call's arguments (``mask=`` aside) hold a tensor."""
    return sum(1 for a in list(node.args) + [v for k, v in node.kwargs.items() if k != "mask"]
               if any(True for _ in leaves(a)))
