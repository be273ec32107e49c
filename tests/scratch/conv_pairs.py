"""What the Conv1D, transposed, depthwise and separable convolution tests share: one random input
and weight set through the real Keras layer and the scratch layer built from its config, in
float32 and float64, and the float64 gradient check."""

import warnings

import numpy as np
from hypothesis import example

from parity.compare import own_reduction
from parity.tolerance import assert_close, compare
from tests.support import check_layer_gradients, randomize_keras_weights


def _keras_per_item(keras_layer, x):
    return np.concatenate([np.asarray(keras_layer(x[i:i + 1])) for i in range(len(x))])


def check_against_keras(keras_cls, scratch_cls, cfg, shape, seed, dtypes=("float32", "float64")):
    """Forward in ``dtypes`` (float32 and float64) against Keras; returns {dtype: compare stats}.

    The tolerance's reduction is the harness's own (parity.compare.own_reduction). As in
    test_conv.py, TF's oneDNN float32 conv can misbehave on tiny batched inputs; only when Keras
    disagrees with itself run one item at a time does its per-item output become the reference.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    k32 = keras_cls(**cfg)
    k32.build(shape)
    weights = randomize_keras_weights(k32, rng)
    k64 = keras_cls(**cfg, dtype="float64")
    k64.build(shape)
    k64.set_weights([w.astype("float64") for w in weights])
    unbatched = (None,) + tuple(shape[1:])
    reduction = own_reduction(keras_cls.__name__, k32.get_config(), unbatched)
    stats = {}
    for dtype, keras_layer in (("float32", k32), ("float64", k64)):
        if dtype not in dtypes:
            continue
        xd = x.astype(dtype)
        layer = scratch_cls(**keras_layer.get_config())
        layer.build(unbatched, rng=np.random.default_rng(0))
        layer.set_weights(weights)
        assert layer.compute_output_shape(unbatched) == tuple(keras_layer.compute_output_shape(unbatched))
        assert layer.count_params() == keras_layer.count_params()
        actual = layer.forward(xd)
        desired = np.asarray(keras_layer(xd))
        label = f"{keras_cls.__name__} {cfg} {shape} {dtype}"
        if dtype == "float32" and not compare(actual, desired, reduction=reduction)["passed"]:
            per_item = _keras_per_item(keras_layer, xd)
            if not compare(per_item, desired, reduction=reduction)["passed"]:
                warnings.warn(f"TF disagrees with itself batched vs per item on {label}; compared per item")
                desired = per_item
        stats[dtype] = assert_close(actual, desired, kind="forward", label=label, reduction=reduction)
    return stats


def check_gradients(make, shape, seed=7):
    """Float64 centered differences for dx and every weight of a layer built with random weights."""
    rng = np.random.default_rng(seed)
    layer = make().to_dtype("float64")
    layer.build(shape, rng=rng)
    errors = check_layer_gradients(layer, rng.normal(size=shape), rng=rng, label=type(layer).__name__)
    assert set(errors) == {"dx0", *layer.active_weight_names()}
    return errors


def pinned(pins):
    """``@example(case=(*pin, i + 1))`` for every pinned case: each edge case with its own seed."""
    def decorate(test):
        for i, pin in enumerate(pins):
            test = example(case=(*pin, i + 1))(test)
        return test
    return decorate


def form_taken(use, layer, x):
    """Whether Conv2D ``layer`` runs the form that ``use(layer, padded_shape, out_hw)`` picks
    (``conv_taps.use_taps``, ``conv_winograd.use_winograd``) on input ``x``."""
    pads, out_hw = layer._setup(x)
    shape = (x.shape[0], x.shape[1] + sum(pads[0]), x.shape[2] + sum(pads[1]), x.shape[3])
    return use(layer, shape, out_hw)


def float64_conv(cfg, shape, seed=3):
    """A float64 Conv2D from ``cfg`` with seeded random weights, and a seeded input of ``shape``."""
    from scratch.layers.conv import Conv2D

    rng = np.random.default_rng(seed)
    layer = Conv2D(**cfg).to_dtype("float64")
    layer.build(shape, rng=rng)
    return layer, rng.normal(size=shape)
