"""Max/average (windowed and global, 1-D and 2-D) pooling against the real Keras layers, plus gradient checks."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import example, given
from hypothesis import strategies as st

from parity.tolerance import assert_close
from scratch.layers import pooling
from scratch.layers.base import LayerError, as_tuple
from scratch.layers.global_pooling import GlobalAveragePooling1D, GlobalMaxPooling1D
from scratch.layers.pooling import (AveragePooling1D, AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D,
                                    MaxPooling1D, MaxPooling2D)
from tests.support import check_layer_gradients, make_mask

PAIRS = {
    "max": (keras.layers.MaxPooling2D, MaxPooling2D),
    "average": (keras.layers.AveragePooling2D, AveragePooling2D),
    "global_average": (keras.layers.GlobalAveragePooling2D, GlobalAveragePooling2D),
    "global_max": (keras.layers.GlobalMaxPooling2D, GlobalMaxPooling2D),
    "max1d": (keras.layers.MaxPooling1D, MaxPooling1D),
    "average1d": (keras.layers.AveragePooling1D, AveragePooling1D),
    "global_average1d": (keras.layers.GlobalAveragePooling1D, GlobalAveragePooling1D),
    "global_max1d": (keras.layers.GlobalMaxPooling1D, GlobalMaxPooling1D),
}


def check_pool(kind, cfg, shape, seed, dtype="float32"):
    """Same random input through a Keras pooling layer and a scratch one built from its config."""
    keras_cls, scratch_cls = PAIRS[kind]
    x = np.random.default_rng(seed).normal(size=shape).astype(dtype)
    keras_layer = keras_cls(**cfg, dtype=dtype)
    desired = np.asarray(keras_layer(x))
    layer = scratch_cls(**keras_layer.get_config())
    layer.build((None,) + shape[1:])
    unbatched = (None,) + shape[1:]
    assert layer.compute_output_shape(unbatched) == tuple(keras_layer.compute_output_shape(unbatched))
    assert layer.count_params() == 0 and layer.get_weights() == []
    actual = layer.forward(x)
    if kind.startswith("average"):
        reduction = int(np.prod(as_tuple(cfg["pool_size"], len(shape) - 2, "pool_size")))
    elif kind.startswith("global_average"):
        reduction = int(np.prod(shape[1:-1]))
    else:
        reduction = 1
    assert_close(actual, desired, kind="forward", label=f"{kind} {cfg} {shape} {dtype}", reduction=reduction)


@st.composite
def pool_cases(draw):
    pool = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    strides = draw(st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(1, 4))))
    padding = draw(st.sampled_from(["valid", "same"]))
    size = [draw(st.integers(p if padding == "valid" else 1, 12)) for p in pool]
    shape = (draw(st.integers(1, 3)), *size, draw(st.integers(1, 4)))
    return dict(pool_size=pool, strides=strides, padding=padding), shape, draw(st.integers(0, 2**31 - 1))


def _pool(pool_size=2, strides=None, padding="valid"):
    return dict(pool_size=pool_size, strides=strides, padding=padding)


POOL_PINS = [
    (_pool(3, 2, "same"), (2, 7, 9, 3)),          # odd sizes, 'same', stride 2 (overlapping windows)
    (_pool(2, 2, "same"), (1, 5, 7, 2)),          # odd sizes, 'same', extra padding bottom/right
    (_pool(4, 2, "same"), (1, 7, 6, 1)),          # odd total padding: windows hang off both sides
    (_pool(2, 3, "valid"), (2, 11, 10, 2)),       # stride larger than the pool
    (_pool(2, 3, "same"), (1, 8, 7, 2)),
    (_pool(3, 1, "same"), (2, 1, 1, 3)),          # 1x1 input
    (_pool((5, 4), None, "valid"), (1, 5, 4, 3)),  # pool equal to the input size
    (_pool((3, 1), (1, 2), "same"), (1, 4, 5, 2)),
    (_pool(5, 2, "same"), (1, 3, 2, 2)),          # window larger than the input, 'same', stride 2
]


def _pins(test):
    for i, (cfg, shape) in enumerate(POOL_PINS):
        test = example(case=(cfg, shape, i))(test)
    return test


@given(case=pool_cases())
@_pins
def test_max_pooling2d_matches_keras(case):
    check_pool("max", *case)


@given(case=pool_cases())
@_pins
def test_average_pooling2d_matches_keras(case):
    check_pool("average", *case)


GLOBAL_SHAPES = st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 12), st.integers(1, 4))


@given(shape=GLOBAL_SHAPES, keepdims=st.booleans(), seed=st.integers(0, 2**31 - 1))
@example(shape=(1, 1, 1, 1), keepdims=False, seed=0)
@example(shape=(2, 7, 5, 3), keepdims=True, seed=1)
def test_global_average_pooling2d_matches_keras(shape, keepdims, seed):
    check_pool("global_average", dict(keepdims=keepdims), shape, seed)


@given(shape=GLOBAL_SHAPES, keepdims=st.booleans(), seed=st.integers(0, 2**31 - 1))
@example(shape=(1, 1, 1, 1), keepdims=False, seed=0)
@example(shape=(2, 7, 5, 3), keepdims=True, seed=1)
def test_global_max_pooling2d_matches_keras(shape, keepdims, seed):
    check_pool("global_max", dict(keepdims=keepdims), shape, seed)


@pytest.mark.parametrize("kind", ["max", "average"])
@pytest.mark.parametrize("cfg, shape", POOL_PINS[:5])
def test_pooling2d_float64_matches_keras(kind, cfg, shape):
    check_pool(kind, cfg, shape, seed=21, dtype="float64")


@pytest.mark.parametrize("kind", ["global_average", "global_max"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling2d_float64_matches_keras(kind, keepdims):
    check_pool(kind, dict(keepdims=keepdims), (2, 5, 3, 2), seed=22, dtype="float64")


def test_max_pooling_same_never_picks_padding():
    # All-negative input: if padded zeros took part, border windows would return 0.
    x = -1.0 - np.arange(2 * 5 * 5 * 1, dtype=np.float32).reshape(2, 5, 5, 1)
    y = MaxPooling2D(2, padding="same").forward(x)
    assert np.all(y < 0)
    np.testing.assert_array_equal(y, np.asarray(keras.layers.MaxPooling2D(2, padding="same")(x)))


def test_average_pooling_same_divides_by_real_cells():
    # Ones in, ones out: a divisor counting padded cells would shrink the border windows.
    y = AveragePooling2D(3, strides=2, padding="same").forward(np.ones((1, 6, 7, 1), np.float32))
    np.testing.assert_array_equal(y, np.ones((1, 3, 4, 1), np.float32))


# ---- gradients (float64 centered differences) --------------------------------------------------
GRADIENT_CASES = [
    ("max-same-s2-overlap", lambda: MaxPooling2D(3, strides=2, padding="same"), (2, 7, 6, 2)),
    ("max-valid-stride-gt-pool", lambda: MaxPooling2D(2, strides=3), (1, 8, 7, 2)),
    ("max-same-k4", lambda: MaxPooling2D((4, 3), strides=(2, 1), padding="same"), (1, 7, 5, 1)),
    ("avg-same-s2-overlap", lambda: AveragePooling2D(3, strides=2, padding="same"), (2, 7, 6, 2)),
    ("avg-same-k4", lambda: AveragePooling2D((4, 3), strides=(2, 1), padding="same"), (1, 7, 5, 1)),
    ("avg-valid", lambda: AveragePooling2D(2), (1, 5, 4, 3)),
    ("gap", lambda: GlobalAveragePooling2D(), (2, 3, 4, 3)),
    ("gap-keepdims", lambda: GlobalAveragePooling2D(keepdims=True), (2, 3, 4, 3)),
    ("gmp", lambda: GlobalMaxPooling2D(), (2, 3, 4, 3)),
    ("gmp-keepdims", lambda: GlobalMaxPooling2D(keepdims=True), (2, 3, 4, 3)),
]


@pytest.mark.parametrize("label, make, shape", GRADIENT_CASES, ids=[c[0] for c in GRADIENT_CASES])
def test_gradients(label, make, shape):
    rng = np.random.default_rng(9)
    layer = make().to_dtype("float64")
    layer.build(shape)
    errors = check_layer_gradients(layer, rng.normal(size=shape), rng=rng, label=label)
    assert set(errors) == {"dx0"}


def test_max_pooling_gradient_on_ties_goes_to_one_cell():
    # A constant window has many maxima; the gradient must still total dout, not a multiple of it.
    layer = MaxPooling2D(2)
    layer.forward(np.zeros((1, 4, 4, 1), np.float32))
    dx = layer.backward(np.ones((1, 2, 2, 1), np.float32))
    assert dx.sum() == 4 and dx.max() == 1


def tape_gradient(keras_layer, x, dout):
    """dx of a Keras layer by tf.GradientTape, for output gradient dout."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = keras_layer(x)
    return tape.gradient(y, x, output_gradients=tf.constant(dout)).numpy()


@pytest.mark.parametrize("make, shape", [
    (lambda m: m.MaxPooling2D(3, strides=1, padding="same"), (2, 5, 6, 2)),
    (lambda m: m.MaxPooling2D(3, strides=2, padding="same"), (2, 7, 6, 2)),
    (lambda m: m.MaxPooling2D((2, 3), strides=(1, 2)), (1, 6, 7, 3)),
    (lambda m: m.MaxPooling1D(3, strides=1, padding="same"), (2, 9, 3)),
    (lambda m: m.GlobalMaxPooling2D(), (2, 3, 4, 3)),
    (lambda m: m.GlobalMaxPooling1D(keepdims=True), (2, 6, 3)),
])
def test_max_pooling_ties_route_the_gradient_as_tensorflow(make, shape):
    """Rounded inputs tie often: windowed pools send each window's gradient to its first maximal cell
    (row-major), global pools split it among all tied maxima, as TF's MaxPoolGrad / reduce_max do."""
    rng = np.random.default_rng(13)
    x = np.round(rng.normal(size=shape)).astype("float32")
    k = make(keras.layers)
    mine = getattr(pooling, type(k).__name__)(**k.get_config())
    y = mine.forward(x)
    dout = rng.normal(size=y.shape).astype("float32")
    assert_close(mine.backward(dout), tape_gradient(k, x, dout), label=f"{type(k).__name__} tie gradient",
                 reduction=9)


def test_blocked_pooling_matches_one_block(monkeypatch):
    """Tiny blocks (a few output rows of one item each) give the forward bit for bit, the gradient
    up to the order of its sums."""
    x = np.random.default_rng(14).normal(size=(3, 11, 9, 4)).astype("float32")
    for cls in (MaxPooling2D, AveragePooling2D):
        whole = cls(3, strides=2, padding="same")
        y, dout = whole.forward(x), np.ones((3, 6, 5, 4), np.float32)
        dx = whole.backward(dout)
        monkeypatch.setattr(pooling, "BLOCK_BYTES", 64)
        blocked = cls(3, strides=2, padding="same")
        np.testing.assert_array_equal(blocked.forward(x), y)
        assert_close(blocked.backward(dout), dx, label=f"{cls.__name__} blocked dx", reduction=9)
        monkeypatch.undo()


# ---- 1-D pools -------------------------------------------------------------------------------------
@st.composite
def pool1d_cases(draw):
    pool = draw(st.integers(1, 5))
    strides = draw(st.one_of(st.none(), st.integers(1, 4)))
    padding = draw(st.sampled_from(["valid", "same"]))
    shape = (draw(st.integers(1, 3)), draw(st.integers(pool if padding == "valid" else 1, 13)), draw(st.integers(1, 4)))
    return dict(pool_size=pool, strides=strides, padding=padding), shape, draw(st.integers(0, 2**31 - 1))


POOL1D_PINS = [
    (_pool(3, 2, "same"), (2, 9, 3)),       # odd length, 'same', stride 2, overlapping windows
    (_pool(2, 2, "same"), (1, 7, 2)),       # extra padding at the end
    (_pool(5, 2, "same"), (1, 3, 2)),       # window larger than the input
    (_pool(2, 3, "valid"), (2, 11, 1)),     # stride larger than the pool
    (_pool(4, None, "valid"), (1, 4, 3)),   # pool equal to the input length
    (_pool(3, 1, "same"), (1, 1, 2)),       # one step
]


def _pins1d(test):
    for i, (cfg, shape) in enumerate(POOL1D_PINS):
        test = example(case=(cfg, shape, i), dtype=["float32", "float64"][i % 2])(test)
    return test


@given(case=pool1d_cases(), dtype=st.sampled_from(["float32", "float64"]))
@_pins1d
def test_max_pooling1d_matches_keras(case, dtype):
    check_pool("max1d", *case, dtype=dtype)


@given(case=pool1d_cases(), dtype=st.sampled_from(["float32", "float64"]))
@_pins1d
def test_average_pooling1d_matches_keras(case, dtype):
    check_pool("average1d", *case, dtype=dtype)


GLOBAL1D_SHAPES = st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 4))


@given(shape=GLOBAL1D_SHAPES, keepdims=st.booleans(), seed=st.integers(0, 2**31 - 1),
       dtype=st.sampled_from(["float32", "float64"]))
@example(shape=(1, 1, 1), keepdims=True, seed=0, dtype="float64")
@example(shape=(2, 7, 3), keepdims=False, seed=1, dtype="float32")
def test_global_pooling1d_matches_keras(shape, keepdims, seed, dtype):
    check_pool("global_average1d", dict(keepdims=keepdims), shape, seed, dtype)
    check_pool("global_max1d", dict(keepdims=keepdims), shape, seed, dtype)


@given(shape=GLOBAL1D_SHAPES, keepdims=st.booleans(), mode=st.sampled_from(["right", "left", "random"]),
       seed=st.integers(0, 2**31 - 1), dtype=st.sampled_from(["float32", "float64"]))
@example(shape=(2, 6, 3), keepdims=False, mode="right", seed=0, dtype="float32")
@example(shape=(3, 1, 2), keepdims=True, mode="random", seed=1, dtype="float64")
def test_global_average_pooling1d_averages_unmasked_steps_like_keras(shape, keepdims, mode, seed, dtype):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).astype(dtype)
    mask = make_mask(rng, mode, shape[0], shape[1])
    mask[:, rng.integers(shape[1])] = True          # every row keeps a step (all-masked is 0/0, below)
    k = keras.layers.GlobalAveragePooling1D(keepdims=keepdims, dtype=dtype)
    desired = np.asarray(k(tf.constant(x), mask=tf.constant(mask)))
    mine = GlobalAveragePooling1D(**k.get_config())
    assert_close(mine.forward(x, mask=mask), desired, label=f"GAP1D masked {shape} {mode} {dtype}",
                 reduction=shape[1])
    assert mine.compute_mask(x, mask) is None


def test_global_average_pooling1d_all_masked_row_is_nan_like_keras():
    x = np.ones((2, 3, 2), np.float32)
    mask = np.array([[True, False, True], [False, False, False]])
    desired = np.asarray(keras.layers.GlobalAveragePooling1D()(tf.constant(x), mask=tf.constant(mask)))
    actual = GlobalAveragePooling1D().forward(x, mask=mask)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(desired))
    assert np.isnan(actual[1]).all() and (actual[0] == 1).all()


def test_1d_pools_drop_the_mask_like_keras():
    mask = np.array([[True, False, True, True]])
    for cls, args in [(MaxPooling1D, ()), (AveragePooling1D, (2,)), (GlobalMaxPooling1D, ()),
                      (GlobalAveragePooling1D, ())]:
        assert cls(*args).compute_mask(np.zeros((1, 4, 2)), mask) is None
        assert getattr(keras.layers, cls.__name__)(*args).supports_masking == (cls is GlobalAveragePooling1D)


GRADIENT_CASES_1D = [
    ("max1d-same-s2", lambda: MaxPooling1D(3, strides=2, padding="same"), (2, 9, 2), {}),
    ("max1d-window-gt-input", lambda: MaxPooling1D(5, strides=2, padding="same"), (1, 3, 2), {}),
    ("avg1d-same-s2", lambda: AveragePooling1D(3, strides=2, padding="same"), (2, 9, 2), {}),
    ("avg1d-valid-s3", lambda: AveragePooling1D(2, strides=3), (1, 8, 3), {}),
    ("gap1d", lambda: GlobalAveragePooling1D(), (2, 5, 3), {}),
    ("gap1d-keepdims-masked", lambda: GlobalAveragePooling1D(keepdims=True), (2, 5, 3),
     {"mask": np.array([[True, False, True, True, False], [False, False, False, True, False]])}),
    ("gmp1d", lambda: GlobalMaxPooling1D(), (2, 5, 3), {}),
    ("gmp1d-keepdims", lambda: GlobalMaxPooling1D(keepdims=True), (2, 5, 3), {}),
]


@pytest.mark.parametrize("label, make, shape, kwargs", GRADIENT_CASES_1D, ids=[c[0] for c in GRADIENT_CASES_1D])
def test_gradients_1d(label, make, shape, kwargs):
    rng = np.random.default_rng(10)
    layer = make().to_dtype("float64")
    errors = check_layer_gradients(layer, rng.normal(size=shape), rng=rng, label=label, forward_kwargs=kwargs)
    assert set(errors) == {"dx0"}


# ---- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [MaxPooling2D, AveragePooling2D])
@pytest.mark.parametrize("kwargs, message", [
    (dict(pool_size=2, padding="full"), r"padding must be 'valid' or 'same'. Received: padding='full'"),
    (dict(pool_size=0), r"pool_size must be a positive int or a tuple of 2 positive ints. Received: pool_size=\(0, 0\)"),
    (dict(pool_size=2, strides=(1, 0)), r"strides must be a positive int or a tuple of 2 positive ints"),
    (dict(pool_size=(2, 2, 2)), r"pool_size must be a positive int or a tuple of 2 positive ints"),
    (dict(pool_size=2, data_format="channels_first"), r"Pooling2D supports data_format='channels_last' only. "
                                                      r"Received: data_format='channels_first'"),
    (dict(pool_size=2, bogus=1), r"Pooling2D got unsupported arguments: \['bogus'\]"),
])
def test_pooling2d_rejects_bad_arguments(cls, kwargs, message):
    with pytest.raises(LayerError, match=message):
        cls(**kwargs)


@pytest.mark.parametrize("cls", [MaxPooling2D, AveragePooling2D])
def test_pooling2d_rejects_bad_inputs(cls):
    with pytest.raises(LayerError, match=r"Pooling2D: computed output size would be zero or negative for input size "
                                         r"\(2, 5\), kernel \(3, 3\)"):
        cls(3).forward(np.zeros((1, 2, 5, 1)))
    with pytest.raises(LayerError, match=r"Pooling2D expects input of rank 4 \(N, H, W, C\)"):
        cls(2).forward(np.zeros((1, 4, 4)))


@pytest.mark.parametrize("cls", [GlobalAveragePooling2D, GlobalMaxPooling2D])
def test_global_pooling2d_rejects_bad_arguments(cls):
    with pytest.raises(LayerError, match=r"GlobalM?\w*Pooling2D supports data_format='channels_last' only"):
        cls(data_format="channels_first")
    with pytest.raises(LayerError, match=r"Pooling2D expects input of rank 4 \(N, H, W, C\). Received: "
                                         r"input_shape=\(2, 3\)"):
        cls().forward(np.zeros((2, 3)))


@pytest.mark.parametrize("cls", [MaxPooling1D, AveragePooling1D])
@pytest.mark.parametrize("kwargs, message", [
    (dict(pool_size=2, padding="causal"), r"padding must be 'valid' or 'same'. Received: padding='causal'"),
    (dict(pool_size=0), r"pool_size must be a positive int or a tuple of 1 positive ints. Received: pool_size=\(0,\)"),
    (dict(pool_size=2, strides=0), r"strides must be a positive int or a tuple of 1 positive ints"),
    (dict(pool_size=(2, 2)), r"pool_size must be a positive int or a tuple of 1 positive ints"),
    (dict(pool_size=2, data_format="channels_first"), r"Pooling1D supports data_format='channels_last' only. "
                                                      r"Received: data_format='channels_first'"),
])
def test_pooling1d_rejects_bad_arguments(cls, kwargs, message):
    with pytest.raises(LayerError, match=message):
        cls(**kwargs)


@pytest.mark.parametrize("cls", [MaxPooling1D, AveragePooling1D])
def test_pooling1d_rejects_bad_inputs(cls):
    with pytest.raises(LayerError, match=r"Pooling1D: computed output size would be zero or negative for input size "
                                         r"\(2,\), kernel \(3,\)"):
        cls(3).forward(np.zeros((1, 2, 1)))
    with pytest.raises(LayerError, match=r"Pooling1D expects input of rank 3 \(N, steps, C\)"):
        cls(2).forward(np.zeros((1, 4, 4, 1)))


@pytest.mark.parametrize("cls", [GlobalAveragePooling1D, GlobalMaxPooling1D])
def test_global_pooling1d_rejects_bad_arguments(cls):
    with pytest.raises(LayerError, match=r"Pooling1D supports data_format='channels_last' only"):
        cls(data_format="channels_first")
    with pytest.raises(LayerError, match=r"Pooling1D expects input of rank 3 \(N, steps, C\). Received: "
                                         r"input_shape=\(2, 3, 4, 1\)"):
        cls().forward(np.zeros((2, 3, 4, 1)))


def test_global_average_pooling1d_rejects_a_mask_of_the_wrong_shape():
    with pytest.raises(LayerError, match=r"GlobalAveragePooling1D: mask shape \(2, 4\) does not match the input's "
                                         r"\(batch, steps\) \(2, 3\)"):
        GlobalAveragePooling1D().forward(np.zeros((2, 3, 1)), mask=np.ones((2, 4), bool))
