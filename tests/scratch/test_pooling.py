"""Max/average (windowed and global) pooling against the real Keras layers, plus gradient checks."""

import keras
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from parity.tolerance import assert_close
from scratch.layers.base import LayerError, as_tuple
from scratch.layers.pooling import AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling2D
from tests.support import check_layer_gradients

PAIRS = {
    "max": (keras.layers.MaxPooling2D, MaxPooling2D),
    "average": (keras.layers.AveragePooling2D, AveragePooling2D),
    "global_average": (keras.layers.GlobalAveragePooling2D, GlobalAveragePooling2D),
    "global_max": (keras.layers.GlobalMaxPooling2D, GlobalMaxPooling2D),
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
    if kind == "average":
        reduction = int(np.prod(as_tuple(cfg["pool_size"], 2, "pool_size")))
    elif kind == "global_average":
        reduction = shape[1] * shape[2]
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


# ---- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [MaxPooling2D, AveragePooling2D])
@pytest.mark.parametrize("kwargs, message", [
    (dict(pool_size=2, padding="full"), r"padding must be 'valid' or 'same'. Received: padding='full'"),
    (dict(pool_size=0), r"pool_size must be a positive int or a tuple of 2 positive ints. Received: pool_size=\(0, 0\)"),
    (dict(pool_size=2, strides=(1, 0)), r"strides must be a positive int or a tuple of 2 positive ints"),
    (dict(pool_size=(2, 2, 2)), r"pool_size must be a positive int or a tuple of 2 positive ints"),
    (dict(data_format="channels_first"), r"Pooling2D supports data_format='channels_last' only. "
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
