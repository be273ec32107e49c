"""Bidirectional and TimeDistributed against the real Keras wrappers, plus gradient checks."""

import keras
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from parity.tolerance import assert_close, assert_gradient_close, numerical_gradient
from scratch.layers.base import LayerError
from scratch.layers.recurrent import GRU, LSTM, SimpleRNN
from scratch.layers.wrappers import Bidirectional, TimeDistributed
from tests.support import check_layer_gradients, make_mask, randomize_keras_weights

SCRATCH = {"SimpleRNN": SimpleRNN, "LSTM": LSTM, "GRU": GRU}
N_STATES = {"SimpleRNN": 1, "LSTM": 2, "GRU": 1}
MERGE_MODES = ["concat", "sum", "mul", "ave", None]


def as_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def scratch_from_keras(k):
    """Rebuild a scratch Bidirectional the way the model loader does: from the Keras config."""
    cfg = k.get_config()
    inner = cfg["layer"]
    back = cfg.get("backward_layer")
    backward = SCRATCH[back["class_name"]](**back["config"]) if back else None
    return Bidirectional(SCRATCH[inner["class_name"]](**inner["config"]), merge_mode=cfg["merge_mode"],
                         backward_layer=backward, dtype=cfg["dtype"])


bidi_cases = dict(kind=st.sampled_from(["SimpleRNN", "LSTM", "GRU"]), merge_mode=st.sampled_from(MERGE_MODES),
                  return_sequences=st.booleans(), return_state=st.booleans(), own_backward=st.booleans(),
                  units=st.integers(1, 3), features=st.integers(1, 3), steps=st.integers(1, 10),
                  batch=st.integers(1, 4), mask_mode=st.sampled_from(["none", "right", "left", "random"]),
                  with_state=st.booleans(), seed=st.integers(0, 2**16))


@given(dtype=st.sampled_from(["float32", "float64"]), **bidi_cases)
@example(kind="LSTM", merge_mode="concat", return_sequences=True, return_state=True, own_backward=False, units=3,
         features=2, steps=6, batch=4, mask_mode="left", with_state=False, seed=0, dtype="float32")
@example(kind="GRU", merge_mode=None, return_sequences=True, return_state=True, own_backward=True, units=2,
         features=3, steps=5, batch=3, mask_mode="right", with_state=True, seed=1, dtype="float64")
@example(kind="SimpleRNN", merge_mode="mul", return_sequences=False, return_state=False, own_backward=False,
         units=2, features=2, steps=1, batch=1, mask_mode="none", with_state=False, seed=2, dtype="float32")
def test_bidirectional_matches_keras(kind, merge_mode, return_sequences, return_state, own_backward, units,
                                     features, steps, batch, mask_mode, with_state, seed, dtype):
    rng = np.random.default_rng(seed)
    flags = dict(return_sequences=return_sequences, return_state=return_state, dtype=dtype)
    inner = getattr(keras.layers, kind)(units, **flags)
    backward = None
    if own_backward:
        # A hand-made backward layer may differ (here: activation, and units when the merge allows it).
        back_units = units + 1 if merge_mode in ("concat", None) else units
        backward = getattr(keras.layers, kind)(back_units, activation="sigmoid", go_backwards=True, **flags)
    k = keras.layers.Bidirectional(inner, merge_mode=merge_mode, backward_layer=backward, dtype=dtype)
    k.build((batch, steps, features))
    weights = randomize_keras_weights(k, rng)
    layer = scratch_from_keras(k)
    layer.build((None, steps, features))
    layer.set_weights(weights)
    assert layer.count_params() == k.count_params()
    for ours, theirs in ((layer.forward_layer, k.forward_layer), (layer.backward_layer, k.backward_layer)):
        for a, b in zip(ours.get_weights(), theirs.get_weights()):
            np.testing.assert_array_equal(a, b)

    x = rng.normal(size=(batch, steps, features)).astype(dtype)
    mask = make_mask(rng, mask_mode, batch, steps)
    init = None
    if with_state:
        init = [rng.normal(0, 0.5, size=(batch, w.shape[0])).astype(dtype)
                for sub in (k.forward_layer, k.backward_layer)
                for w in [sub.get_weights()[1]] * N_STATES[kind]]
    desired = [np.asarray(d) for d in as_list(k(x, mask=mask, initial_state=init))]
    actual = as_list(layer.forward(x, mask=mask, initial_state=init))
    label = f"Bidirectional({kind}) merge={merge_mode} seq={return_sequences} state={return_state} mask={mask_mode}"
    assert len(actual) == len(desired), label
    for i, (a, d) in enumerate(zip(actual, desired)):
        assert_close(a, d, kind="forward", label=f"{label} output {i}", reduction=steps * (features + units + 1))

    shape = (None, steps, features)
    ours = layer.compute_output_shape(shape)
    assert (ours if len(actual) > 1 else [ours]) == [(None, *a.shape[1:]) for a in actual]
    if k.forward_layer.units == k.backward_layer.units:
        # Keras derives every shape from the forward layer, wrong for a wider hand-made backward layer.
        k_shape = k.compute_output_shape(shape)
        k_shape = [tuple(s) for s in k_shape] if isinstance(k_shape[0], (tuple, list)) else tuple(k_shape)
        assert ours == k_shape
    # Keras attaches its compute_mask result to the flattened outputs in order, the rest get none.
    k_masks = as_list(k.compute_mask(x, None if mask is None else keras.ops.convert_to_tensor(mask)))
    s_masks = as_list(layer.compute_mask(x, mask))
    k_masks += [None] * (len(s_masks) - len(k_masks))
    assert len(s_masks) == len(desired)
    for sm, km in zip(s_masks, k_masks):
        assert (sm is None) == (km is None)
        if sm is not None:
            np.testing.assert_array_equal(sm, np.asarray(km))


def check_bidirectional_gradients(layer, x, mask, init, drop_first, rng, label):
    """check_layer_gradients extended to initial states and outputs that receive no gradient."""
    kwargs = dict(mask=mask, initial_state=init)
    out = layer.forward(x, **kwargs)
    douts = [None if (i == 0 and drop_first) else rng.normal(size=o.shape) for i, o in enumerate(as_list(out))]
    res = layer.backward(douts if isinstance(out, list) else douts[0])
    analytic_w = {n: g.copy() for n, g in layer.grads.items()}

    def objective():
        return sum(np.sum(o * d) for o, d in zip(as_list(layer.forward(x, **kwargs)), douts) if d is not None)

    for i, (arr, grad) in enumerate(zip([x] + list(init), res)):
        numeric = numerical_gradient(objective, arr, 1.0)
        assert_gradient_close(grad, numeric, label=f"{label} input {i}")
    for n in layer.trainable_weight_names():
        assert_gradient_close(analytic_w[n], numerical_gradient(objective, layer.weights[n], 1.0),
                              label=f"{label} d{n}")


@given(**bidi_cases)
@example(kind="LSTM", merge_mode="mul", return_sequences=True, return_state=True, own_backward=False, units=2,
         features=2, steps=4, batch=2, mask_mode="left", with_state=True, seed=0)
@example(kind="GRU", merge_mode=None, return_sequences=True, return_state=False, own_backward=True, units=2,
         features=2, steps=5, batch=2, mask_mode="random", with_state=False, seed=1)
@example(kind="LSTM", merge_mode="concat", return_sequences=False, return_state=True, own_backward=True, units=1,
         features=1, steps=4, batch=1, mask_mode="right", with_state=True, seed=515)  # d(initial_state) ~ 3e-6
def test_bidirectional_gradients(kind, merge_mode, return_sequences, return_state, own_backward, units, features,
                                 steps, batch, mask_mode, with_state, seed):
    rng = np.random.default_rng(seed)
    steps = min(steps, 5)
    flags = dict(return_sequences=return_sequences, return_state=return_state, dtype="float64")
    backward = None
    if own_backward:
        back_units = units + 1 if merge_mode in ("concat", None) else units
        backward = SCRATCH[kind](back_units, go_backwards=True, activation="sigmoid", **flags)
    layer = Bidirectional(SCRATCH[kind](units, **flags), merge_mode=merge_mode, backward_layer=backward)
    layer.build((batch, steps, features), rng=rng)
    x = rng.normal(size=(batch, steps, features))
    mask = make_mask(rng, mask_mode, batch, steps)
    label = f"Bidirectional({kind}) merge={merge_mode} seq={return_sequences} state={return_state} mask={mask_mode}"
    if with_state:
        init = [rng.normal(0, 0.5, size=(batch, sub.units))
                for sub in (layer.forward_layer, layer.backward_layer) for _ in range(N_STATES[kind])]
        drop_first = merge_mode is None  # the forward sequence gets no gradient, the backward one does
        check_bidirectional_gradients(layer, x, mask, init, drop_first, rng, label)
    else:
        check_layer_gradients(layer, x, rng=rng, label=label, forward_kwargs={"mask": mask})


def test_bidirectional_errors_and_weight_names():
    with pytest.raises(LayerError, match=r"merge_mode must be 'concat' or 'sum' or 'mul' or 'ave' or None. "
                                         r"Received: merge_mode='max'"):
        Bidirectional(LSTM(2), merge_mode="max")
    with pytest.raises(LayerError, match=r"layer must be a scratch recurrent layer instance"):
        Bidirectional(TimeDistributed(LSTM(2)))
    with pytest.raises(LayerError, match=r"should have different go_backwards values"):
        Bidirectional(LSTM(2), backward_layer=LSTM(2))
    with pytest.raises(LayerError, match=r"should have the same return_sequences"):
        Bidirectional(LSTM(2), backward_layer=LSTM(2, go_backwards=True, return_sequences=True))
    with pytest.raises(LayerError, match=r"Bidirectional holds no weights of its own"):
        Bidirectional(LSTM(2)).weights = {"kernel": np.zeros(1)}
    with pytest.raises(LayerError, match=r"expects 6 weights .* received 3"):
        Bidirectional(LSTM(2)).set_weights([np.zeros(1)] * 3)
    original = LSTM(2, return_sequences=True, name="enc")
    layer = Bidirectional(original)
    assert original.zero_output_for_mask is False and original.go_backwards is False  # Keras wraps copies
    assert (layer.forward_layer.name, layer.backward_layer.name) == ("forward_enc", "backward_enc")
    assert layer.forward_layer.zero_output_for_mask and layer.backward_layer.zero_output_for_mask
    assert layer.active_weight_names() == ("forward_layer/kernel", "forward_layer/recurrent_kernel",
                                           "forward_layer/bias", "backward_layer/kernel",
                                           "backward_layer/recurrent_kernel", "backward_layer/bias")
    layer.to_dtype("float64")
    assert layer.dtype == np.float64 and layer.backward_layer.dtype == np.float64


# ---- TimeDistributed ------------------------------------------------------------------------------
def _time_distributed_pair(keras_inner, scratch_cls, shape, rng, dtype):
    k = keras.layers.TimeDistributed(keras_inner, dtype=dtype)
    k.build(shape)
    weights = randomize_keras_weights(k, rng)
    layer = TimeDistributed(scratch_cls(**k.get_config()["layer"]["config"]), dtype=dtype)
    layer.build((None,) + shape[1:])
    layer.set_weights(weights)
    assert layer.count_params() == k.count_params()
    unbatched = (None,) + shape[1:]
    assert layer.compute_output_shape(unbatched) == tuple(k.compute_output_shape(unbatched))
    x = rng.normal(size=shape).astype(dtype)
    return layer, x, np.asarray(k(x))


@given(units=st.integers(1, 4), features=st.integers(1, 4), steps=st.integers(1, 6), batch=st.integers(1, 3),
       extra_axis=st.booleans(), activation=st.sampled_from([None, "relu", "tanh"]),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**16))
@example(units=1, features=1, steps=1, batch=1, extra_axis=False, activation=None, dtype="float32", seed=0)
def test_time_distributed_dense(units, features, steps, batch, extra_axis, activation, dtype, seed):
    from scratch.layers.core import Dense

    rng = np.random.default_rng(seed)
    shape = (batch, steps, 2, features) if extra_axis else (batch, steps, features)
    layer, x, desired = _time_distributed_pair(keras.layers.Dense(units, activation=activation, dtype=dtype),
                                               Dense, shape, rng, dtype)
    assert_close(layer.forward(x), desired, kind="forward", label=f"TimeDistributed(Dense) {shape}",
                 reduction=features)
    mask = rng.random((batch, steps)) < 0.5
    assert layer.compute_mask(x, mask) is mask
    layer.to_dtype("float64")
    check_layer_gradients(layer, x, rng=rng, label=f"TimeDistributed(Dense) {shape}")


@given(filters=st.integers(1, 3), kernel=st.integers(1, 3), strides=st.integers(1, 2),
       padding=st.sampled_from(["valid", "same"]), steps=st.integers(1, 3), batch=st.integers(1, 2),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**16))
@example(filters=2, kernel=2, strides=2, padding="same", steps=3, batch=2, dtype="float32", seed=0)
def test_time_distributed_conv2d(filters, kernel, strides, padding, steps, batch, dtype, seed):
    from scratch.layers.conv import Conv2D

    rng = np.random.default_rng(seed)
    shape = (batch, steps, 5, 4, 2)
    inner = keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding, dtype=dtype)
    layer, x, desired = _time_distributed_pair(inner, Conv2D, shape, rng, dtype)
    assert_close(layer.forward(x), desired, kind="forward", label=f"TimeDistributed(Conv2D) k={kernel}",
                 reduction=kernel * kernel * 2)
    layer.to_dtype("float64")
    check_layer_gradients(layer, x, rng=rng, label=f"TimeDistributed(Conv2D) k={kernel}")


def test_time_distributed_errors():
    from scratch.layers.core import Dense

    with pytest.raises(LayerError, match=r"layer must be a scratch Layer instance. Received: layer='dense'"):
        TimeDistributed("dense")
    with pytest.raises(LayerError, match=r"TimeDistributed expects input of shape \(batch, timesteps, \.\.\.\) "
                                         r"with at least 3 dimensions. Received: input_shape=\(None, 3\)"):
        TimeDistributed(Dense(2)).build((None, 3))


def test_time_distributed_delegates_weight_roles():
    from scratch.layers.normalization import BatchNormalization

    k = keras.layers.TimeDistributed(keras.layers.BatchNormalization(center=False))
    k.build((None, 3, 4))
    layer = TimeDistributed(BatchNormalization(**k.get_config()["layer"]["config"]))
    layer.build((None, 3, 4))
    assert layer.active_weight_names() == ("gamma", "moving_mean", "moving_variance")
    assert layer.trainable_weight_names() == ("gamma",) == tuple(w.name for w in k.trainable_weights)
    assert layer.count_params() == k.count_params()
