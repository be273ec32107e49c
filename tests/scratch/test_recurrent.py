"""SimpleRNN, LSTM and GRU against the real Keras layers, the step API, and BPTT gradient checks."""

import keras
import numpy as np
import pytest
import tf_keras
from hypothesis import example, given
from hypothesis import strategies as st

from parity.tolerance import assert_close, assert_gradient_close, numerical_gradient
from scratch.layers.base import LayerError
from scratch.layers.embedding import Embedding
from scratch.layers.recurrent import GRU, LSTM, SimpleRNN
from scratch.layers.sequence import Masking
from tests.support import check_layer_gradients, make_mask, randomize_keras_weights

SCRATCH = {"SimpleRNN": SimpleRNN, "LSTM": LSTM, "GRU": GRU}
N_STATES = {"SimpleRNN": 1, "LSTM": 2, "GRU": 1}
MASK_MODES = ["none", "right", "left", "random"]


def keras_flags(kind, draw_flags):
    cfg = dict(draw_flags)
    if kind == "SimpleRNN":
        cfg.pop("recurrent_activation", None)
    if kind != "GRU":
        cfg.pop("reset_after", None)
    if kind != "LSTM":
        cfg.pop("unit_forget_bias", None)
    return cfg


flag_sets = st.fixed_dictionaries({
    "activation": st.sampled_from(["tanh", "relu", "sigmoid", None]),
    "recurrent_activation": st.sampled_from(["sigmoid", "hard_sigmoid", "tanh"]),
    "use_bias": st.booleans(),
    "return_sequences": st.booleans(),
    "return_state": st.booleans(),
    "go_backwards": st.booleans(),
    "reset_after": st.booleans(),
    "unit_forget_bias": st.booleans(),
    "zero_output_for_mask": st.booleans(),
})

DEFAULT_FLAGS = dict(activation="tanh", recurrent_activation="sigmoid", use_bias=True, return_sequences=False,
                     return_state=False, go_backwards=False, reset_after=True, unit_forget_bias=True,
                     zero_output_for_mask=False)


def as_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def check_against_keras(kind, flags, units, features, steps, batch, mask_mode, with_state, dtype, seed):
    """One random layer through Keras and scratch; returns the largest abs error over all outputs."""
    rng = np.random.default_rng(seed)
    k = getattr(keras.layers, kind)(units, dtype=dtype, **keras_flags(kind, flags))
    k.build((batch, steps, features))
    weights = randomize_keras_weights(k, rng)
    layer = SCRATCH[kind](**k.get_config())
    layer.build((None, steps, features))
    layer.set_weights(weights)
    assert layer.count_params() == k.count_params()

    x = rng.normal(size=(batch, steps, features)).astype(dtype)
    mask = make_mask(rng, mask_mode, batch, steps)
    init = None
    if with_state:
        init = [rng.normal(0, 0.5, size=(batch, units)).astype(dtype) for _ in range(N_STATES[kind])]
    desired = as_list(k(x, mask=mask, initial_state=init))
    actual = as_list(layer.forward(x, mask=mask, initial_state=init))
    label = f"{kind} {flags} units={units} x={x.shape} mask={mask_mode} init={with_state} {dtype}"
    assert len(actual) == len(desired), label
    worst = 0.0
    for i, (a, d) in enumerate(zip(actual, desired)):
        stats = assert_close(a, np.asarray(d), kind="forward", label=f"{label} output {i}",
                             reduction=steps * (features + units))
        worst = max(worst, stats["max_abs"])

    shape = (None, steps, features)
    k_shape = k.compute_output_shape(shape)
    k_shape = [tuple(s) for s in k_shape] if layer.return_state else tuple(k_shape)
    assert layer.compute_output_shape(shape) == k_shape
    k_masks = as_list(k.compute_mask(x, None if mask is None else keras.ops.convert_to_tensor(mask)))
    s_masks = as_list(layer.compute_mask(x, mask))
    assert len(s_masks) == len(k_masks)
    for sm, km in zip(s_masks, k_masks):
        assert (sm is None) == (km is None)
        if sm is not None:
            np.testing.assert_array_equal(sm, np.asarray(km))
    return worst


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
@given(flags=flag_sets, units=st.integers(1, 4), features=st.integers(1, 4), steps=st.integers(1, 12),
       batch=st.integers(1, 5), mask_mode=st.sampled_from(MASK_MODES), with_state=st.booleans(),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**16))
@example(flags=DEFAULT_FLAGS, units=3, features=2, steps=1, batch=1, mask_mode="none", with_state=False,
         dtype="float32", seed=0)
@example(flags={**DEFAULT_FLAGS, "return_sequences": True, "return_state": True, "go_backwards": True},
         units=2, features=3, steps=7, batch=4, mask_mode="left", with_state=True, dtype="float32", seed=1)
@example(flags={**DEFAULT_FLAGS, "return_sequences": True, "use_bias": False, "reset_after": False},
         units=3, features=2, steps=9, batch=5, mask_mode="right", with_state=False, dtype="float64", seed=2)
@example(flags={**DEFAULT_FLAGS, "recurrent_activation": "hard_sigmoid", "zero_output_for_mask": True,
                "return_sequences": True}, units=4, features=4, steps=12, batch=3, mask_mode="random",
         with_state=False, dtype="float32", seed=3)
def test_matches_keras(kind, flags, units, features, steps, batch, mask_mode, with_state, dtype, seed):
    check_against_keras(kind, flags, units, features, steps, batch, mask_mode, with_state, dtype, seed)


@pytest.mark.parametrize("kind, extra", [("LSTM", {}), ("GRU", {"reset_after": True}), ("GRU", {"reset_after": False})])
def test_tf_keras_hard_sigmoid_needs_its_own_activation(kind, extra):
    """tf_keras's 'hard_sigmoid' is clip(0.2x + 0.5); the loader maps it to 'hard_sigmoid_tf_keras'."""
    rng = np.random.default_rng(7)
    k = getattr(tf_keras.layers, kind)(3, recurrent_activation="hard_sigmoid", return_sequences=True, **extra)
    k.build((2, 6, 3))
    weights = randomize_keras_weights(k, rng, scale=1.0)
    x = rng.normal(0, 2.0, size=(2, 6, 3)).astype("float32")
    desired = np.asarray(k(x))
    cfg = {key: v for key, v in k.get_config().items() if key not in ("implementation",)}
    for name, should_match in (("hard_sigmoid_tf_keras", True), ("hard_sigmoid", False)):
        layer = SCRATCH[kind](**{**cfg, "recurrent_activation": name})
        layer.build(x.shape)
        layer.set_weights(weights)
        actual = layer.forward(x)
        if should_match:
            assert_close(actual, desired, kind="forward", label=f"tf_keras {kind} {name}", reduction=6 * 6)
        else:
            assert np.max(np.abs(actual - desired)) > 1e-3


KINDS = st.sampled_from(["SimpleRNN", "LSTM", "GRU"])


@given(kinds=st.tuples(KINDS, KINDS, KINDS), units=st.tuples(*[st.integers(1, 4)] * 3),
       backwards=st.tuples(*[st.booleans()] * 3), mask_mode=st.sampled_from(["right", "left", "random"]),
       batch=st.integers(1, 4), steps=st.integers(1, 10), seed=st.integers(0, 2**16))
@example(kinds=("LSTM", "GRU", "SimpleRNN"), units=(4, 3, 2), backwards=(False, True, False), mask_mode="random",
         batch=4, steps=8, seed=0)
def test_stacked_layers_with_embedding_mask(kinds, units, backwards, mask_mode, batch, steps, seed):
    """Embedding(mask_zero) -> RNN(return_sequences) -> RNN(return_sequences) -> RNN, masks flowing
    through compute_mask exactly as they flow through a Keras Sequential model."""
    rng = np.random.default_rng(seed)
    real = make_mask(rng, mask_mode, batch, steps)
    ids = np.where(real, rng.integers(1, 9, size=(batch, steps)), 0)
    k_layers = [keras.layers.Embedding(9, 3, mask_zero=True)]
    for i, (kind, u, back) in enumerate(zip(kinds, units, backwards)):
        k_layers.append(getattr(keras.layers, kind)(u, return_sequences=i < 2, go_backwards=back))
    model = keras.Sequential([keras.Input((steps,), dtype="int32")] + k_layers)
    s_layers = []
    for kl in k_layers:
        randomize_keras_weights(kl, rng)
        sl = {"Embedding": Embedding, **SCRATCH}[type(kl).__name__](**kl.get_config())
        sl.set_weights(kl.get_weights())
        s_layers.append(sl)
    desired = np.asarray(model(ids))
    h, mask = ids, None
    for sl in s_layers:
        out = sl.forward(h, mask=mask) if sl.consumes_mask else sl.forward(h)
        mask = sl.compute_mask(h, mask)
        h = out
    assert mask is None
    assert_close(h, desired, kind="forward", label=f"stacked {kinds} {mask_mode}", reduction=steps * 8)


@pytest.mark.parametrize("side", ["left", "right"])
def test_masking_layer_feeds_lstm(side):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 6, 2)).astype("float32")
    if side == "right":
        x[0, 4:] = 0.0
        x[1, 2:] = 0.0
    else:
        x[0, :2] = 0.0
        x[2, :5] = 0.0
    k_lstm = keras.layers.LSTM(3, return_sequences=True, return_state=True)
    inp = keras.Input((6, 2))
    model = keras.Model(inp, k_lstm(keras.layers.Masking()(inp)))
    randomize_keras_weights(k_lstm, rng)
    desired = [np.asarray(d) for d in model(x)]
    masking, lstm = Masking(), LSTM(**k_lstm.get_config())
    lstm.set_weights(k_lstm.get_weights())
    actual = lstm.forward(masking.forward(x), mask=masking.compute_mask(x))
    for i, (a, d) in enumerate(zip(actual, desired)):
        assert_close(a, d, kind="forward", label=f"Masking->LSTM output {i}", reduction=6 * 5)


# ---- step API ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
@given(units=st.integers(1, 4), features=st.integers(1, 4), steps=st.integers(1, 12), batch=st.integers(1, 5),
       use_bias=st.booleans(), reset_after=st.booleans(), split=st.integers(0, 12), seed=st.integers(0, 2**16))
@example(units=1, features=1, steps=1, batch=1, use_bias=True, reset_after=True, split=0, seed=0)
def test_step_api_replays_forward_and_keras(kind, units, features, steps, batch, use_bias, reset_after, split,
                                            seed):
    rng = np.random.default_rng(seed)
    extra = {"reset_after": reset_after} if kind == "GRU" else {}
    k = getattr(keras.layers, kind)(units, use_bias=use_bias, return_sequences=True, return_state=True, **extra)
    k.build((batch, steps, features))
    randomize_keras_weights(k, rng)
    layer = SCRATCH[kind](**k.get_config())
    layer.set_weights(k.get_weights())
    x = rng.normal(size=(batch, steps, features)).astype("float32")
    seq, *final = layer.forward(x)

    states = layer.initial_states(batch)
    stepped = []
    for t in range(steps):
        out, states = layer.step(x[:, t], states)
        stepped.append(out)
    # One math path: replaying the steps must give the very same bits as the full forward.
    np.testing.assert_array_equal(np.stack(stepped, axis=1), seq)
    for a, b in zip(states, final):
        np.testing.assert_array_equal(a, b)
    k_seq, *k_final = (np.asarray(o) for o in k(x))
    assert_close(np.stack(stepped, axis=1), k_seq, kind="forward", label=f"{kind} step API vs Keras",
                 reduction=steps * (features + units))
    for i, (a, b) in enumerate(zip(states, k_final)):
        assert_close(a, b, kind="forward", label=f"{kind} step state {i}", reduction=steps * (features + units))

    # A decoder primes the states on a prefix, then continues token by token.
    split = min(split, steps - 1)
    if split:
        _, *states = layer.forward(x[:, :split])
        for t in range(split, steps):
            out, states = layer.step(x[:, t], states)
        assert_close(out, k_seq[:, -1], kind="forward", label=f"{kind} primed decode",
                     reduction=steps * (features + units))


# ---- gradients -------------------------------------------------------------------------------------

def check_rnn_gradients(layer, x, *, mask, init, none_outputs, rng, label):
    """Like tests.support.check_layer_gradients, plus d(initial_state) and outputs with no gradient."""
    kwargs = dict(mask=mask, initial_state=init)
    outs = as_list(layer.forward(x, **kwargs))
    douts = [None if i in none_outputs else rng.normal(size=o.shape) for i, o in enumerate(outs)]
    result = layer.backward(douts if layer.return_state else douts[0])
    analytic_inputs = result if init is not None else [result]
    analytic_w = {n: g.copy() for n, g in layer.grads.items()}

    def objective():
        return sum(np.sum(o * d) for o, d in zip(as_list(layer.forward(x, **kwargs)), douts) if d is not None)

    worst = 0.0
    for i, (arr, grad) in enumerate(zip([x] + list(init or []), analytic_inputs)):
        name = "dx" if i == 0 else f"d_initial_state{i - 1}"
        numeric = numerical_gradient(objective, arr, 1.0)
        worst = max(worst, assert_gradient_close(grad, numeric, label=f"{label} {name}"))
    for n in layer.trainable_weight_names():
        worst = max(worst, assert_gradient_close(analytic_w[n], numerical_gradient(objective, layer.weights[n], 1.0),
                                                 label=f"{label} d{n}"))
    return worst


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
@given(flags=flag_sets, units=st.integers(1, 3), features=st.integers(1, 3), steps=st.integers(1, 6),
       batch=st.integers(1, 3), mask_mode=st.sampled_from(MASK_MODES), with_state=st.booleans(),
       drop_output=st.booleans(), seed=st.integers(0, 2**16))
@example(flags={**DEFAULT_FLAGS, "return_sequences": True, "return_state": True, "go_backwards": True},
         units=2, features=2, steps=5, batch=3, mask_mode="left", with_state=True, drop_output=False, seed=0)
@example(flags={**DEFAULT_FLAGS, "reset_after": False, "zero_output_for_mask": True, "return_sequences": True},
         units=3, features=2, steps=6, batch=2, mask_mode="random", with_state=False, drop_output=False, seed=1)
@example(flags={**DEFAULT_FLAGS, "return_state": True}, units=2, features=1, steps=4, batch=2,
         mask_mode="right", with_state=True, drop_output=True, seed=2)
@example(flags={**DEFAULT_FLAGS, "activation": "sigmoid", "use_bias": False}, units=1, features=1, steps=4,
         batch=1, mask_mode="none", with_state=True, drop_output=False, seed=0)  # d(initial_state) ~ 7e-8
def test_gradients(kind, flags, units, features, steps, batch, mask_mode, with_state, drop_output, seed):
    rng = np.random.default_rng(seed)
    layer = SCRATCH[kind](units, dtype="float64", **keras_flags(kind, flags))
    layer.build((batch, steps, features), rng=rng)
    x = rng.normal(size=(batch, steps, features))
    mask = make_mask(rng, mask_mode, batch, steps)
    label = f"{kind} {flags} mask={mask_mode}"
    if not with_state and not layer.return_state:
        check_layer_gradients(layer, x, rng=rng, label=label, forward_kwargs={"mask": mask})
        return
    init = [rng.normal(0, 0.5, size=(batch, units)) for _ in range(N_STATES[kind])] if with_state else None
    none_outputs = (0,) if drop_output and layer.return_state else ()
    check_rnn_gradients(layer, x, mask=mask, init=init, none_outputs=none_outputs, rng=rng, label=label)


# ---- construction, shapes, errors ----------------------------------------------------------------
@pytest.mark.parametrize("unit_forget_bias", [True, False])
def test_lstm_initial_bias_follows_unit_forget_bias(unit_forget_bias):
    k = keras.layers.LSTM(3, unit_forget_bias=unit_forget_bias)
    k.build((None, 4, 2))
    layer = LSTM(**k.get_config())
    layer.build((None, 4, 2))
    np.testing.assert_array_equal(layer.weights["bias"], k.get_weights()[2])


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("use_bias", [True, False])
def test_weight_shapes_and_count_match_keras(kind, use_bias):
    extra = [{"reset_after": True}, {"reset_after": False}] if kind == "GRU" else [{}]
    for cfg in extra:
        k = getattr(keras.layers, kind)(5, use_bias=use_bias, **cfg)
        k.build((None, 7, 3))
        layer = SCRATCH[kind](**k.get_config())
        layer.build((None, 7, 3), rng=np.random.default_rng(0))
        assert [w.shape for w in layer.get_weights()] == [w.shape for w in k.get_weights()]
        assert layer.count_params() == k.count_params()
        layer.set_weights(k.get_weights())


def test_errors():
    with pytest.raises(LayerError, match=r"units must be a positive integer. Received: units=0"):
        LSTM(0)
    with pytest.raises(LayerError, match=r"activation 'swishy' is not supported"):
        GRU(2, activation="swishy")
    with pytest.raises(LayerError, match=r"stateful=True is not supported"):
        SimpleRNN(2, stateful=True)
    with pytest.raises(LayerError, match=r"got unsupported arguments: \['bogus'\]"):
        LSTM(2, bogus=1)
    layer = LSTM(2)
    layer.build((None, 3, 2), rng=np.random.default_rng(0))
    with pytest.raises(LayerError, match=r"LSTM expects input of shape \(batch, timesteps, features\). "
                                         r"Received: shape=\(3, 2\)"):
        layer.forward(np.zeros((3, 2)))
    with pytest.raises(LayerError, match=r"expects a mask of shape \(batch, timesteps\)=\(1, 3\). "
                                         r"Received: mask.shape=\(1, 4\)"):
        layer.forward(np.zeros((1, 3, 2)), mask=np.ones((1, 4), bool))
    with pytest.raises(LayerError, match=r"expects 2 state\(s\) \['h', 'c'\] of shape \(1, 2\)"):
        layer.forward(np.zeros((1, 3, 2)), initial_state=[np.zeros((1, 2))])
    with pytest.raises(LayerError, match=r"weight 'recurrent_kernel' has shape \(3, 8\), expected \(2, 8\)"):
        layer.set_weights([np.zeros((2, 8)), np.zeros((3, 8)), np.zeros(8)])
    with pytest.raises(LayerError, match=r"training with dropout or recurrent_dropout is not supported"):
        LSTM(2, dropout=0.5).forward(np.zeros((1, 3, 2)), training=True)
    with pytest.raises(LayerError, match=r"GRU.backward called before forward"):
        GRU(2).backward(np.zeros((1, 2)))
    # Dropout is the identity at inference: same output as without it.
    plain, dropped = GRU(2), GRU(2, dropout=0.3, recurrent_dropout=0.4)
    rng = np.random.default_rng(1)
    plain.build((1, 3, 2), rng=rng)
    dropped.set_weights(plain.get_weights())
    x = rng.normal(size=(1, 3, 2))
    np.testing.assert_array_equal(plain.forward(x), dropped.forward(x))
