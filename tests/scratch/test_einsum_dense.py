"""scratch EinsumDense against keras.layers.EinsumDense: shapes, forward, gradients, refusals."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import example, given, settings
from hypothesis import strategies as st

from parity.compare import own_reduction
from parity.tolerance import assert_close
from scratch.layers.base import LayerError
from scratch.layers.einsum_dense import EinsumDense
from tests.support import check_layer_gradients, randomize_keras_weights

DTYPES = st.sampled_from(["float32", "float64"])
SEEDS = st.integers(0, 2**31 - 1)

# (equation, input rank, output_shape with the free sizes as names, bias_axes choices):
# the forms Keras's MultiHeadAttention builds, Dense-like forms with ellipses, and a summed axis.
FORMS = [
    ("abc,cd->abd", 3, (None, "d"), [None, "d"]),
    ("ab,bc->ac", 2, ("c",), [None, "c"]),
    ("abc,cde->abde", 3, (None, "d", "e"), [None, "de", "e", "d"]),     # MHA query/key/value
    ("abcd,cde->abe", 4, (None, "e"), [None, "e"]),                      # MHA attention_output
    ("abcd,def->abcef", 4, (None, None, "e", "f"), [None, "ef", "f"]),   # MHA, rank-4 query
    ("...b,bc->...c", 4, ("c",), [None, "c"]),
    ("ab...,bc->ac...", 4, ("c",), [None, "c"]),
    ("abc,cd->ad", 3, ("d",), [None, "d"]),                              # b summed away
    ("abc,bcd->ad", 3, ("d",), [None, "d"]),                             # two contracted axes
]


@st.composite
def cases(draw):
    eq, rank, out_spec, bias_choices = draw(st.sampled_from(FORMS))
    shape = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    sizes = {c: draw(st.integers(1, 4)) for c in "cdef"}
    output_shape = tuple(None if c is None else sizes[c] for c in out_spec)
    return eq, shape, output_shape, draw(st.sampled_from(bias_choices))


def twin(eq, shape, output_shape, bias_axes, dtype, rng, activation="linear"):
    k = keras.layers.EinsumDense(eq, output_shape=output_shape, bias_axes=bias_axes, activation=activation,
                                 dtype=dtype)
    k.build(shape)
    randomize_keras_weights(k, rng)
    mine = EinsumDense(**k.get_config())
    mine.build(shape)
    mine.set_weights(k.get_weights())
    return k, mine


@given(case=cases(), activation=st.sampled_from(["linear", "tanh", "relu", "sigmoid"]), dtype=DTYPES, seed=SEEDS)
@example(case=("abc,cde->abde", (2, 3, 4), (None, 2, 3), "de"), activation="linear", dtype="float32", seed=0)
@example(case=("abcd,cde->abe", (2, 3, 2, 4), (None, 5), "e"), activation="linear", dtype="float64", seed=0)
@example(case=("...b,bc->...c", (1, 2, 3, 4), (5,), "c"), activation="tanh", dtype="float32", seed=0)
@example(case=("ab...,bc->ac...", (2, 4, 3, 2), (5,), "c"), activation="linear", dtype="float32", seed=0)
@example(case=("abc,cd->ad", (2, 3, 4), (5,), None), activation="relu", dtype="float64", seed=0)
def test_einsum_dense_matches_keras(case, activation, dtype, seed):
    eq, shape, output_shape, bias_axes = case
    rng = np.random.default_rng(seed)
    k, mine = twin(eq, shape, output_shape, bias_axes, dtype, rng, activation)
    assert mine.active_weight_names() == tuple(w.name for w in k.weights)
    assert [w.shape for w in mine.get_weights()] == [tuple(w.shape) for w in k.weights]
    assert mine.count_params() == k.count_params()
    ours, theirs = mine.compute_output_shape(shape), tuple(k.compute_output_shape(shape))
    x = rng.normal(size=shape).astype(dtype)
    y = mine.forward(x)
    # Keras leaves free output sizes it could infer as None, and lists left-elided axes in reverse
    # order (keras/src/layers/core/einsum_dense.py inserts each at position 1); ours are the real shape.
    assert ours == y.shape and len(ours) == len(theirs)
    if not eq.startswith("..."):
        assert all(t is None or t == o for o, t in zip(ours, theirs))
    red = own_reduction("EinsumDense", k.get_config(), shape)
    assert_close(y, np.asarray(k(tf.constant(x))), label=f"EinsumDense {eq} {shape}", reduction=red)


def test_left_elided_output_shape_is_the_real_one():
    """Keras reports (None, 4, 3, 5) for an input (None, 3, 4, 6); the einsum gives (.., 3, 4, 5)."""
    k = keras.layers.EinsumDense("...b,bc->...c", output_shape=5)
    assert tuple(k.compute_output_shape((None, 3, 4, 6))) == (None, 4, 3, 5)
    assert EinsumDense("...b,bc->...c", output_shape=5).compute_output_shape((None, 3, 4, 6)) == (None, 3, 4, 5)


@settings(max_examples=8)
@given(case=cases(), activation=st.sampled_from(["linear", "tanh"]), seed=SEEDS)
@example(case=("ab...,bc->ac...", (2, 3, 2, 2), (3,), "c"), activation="tanh", seed=0)
@example(case=("abc,bcd->ad", (2, 3, 2), (3,), "d"), activation="linear", seed=0)
@example(case=("abc,cd->ad", (2, 3, 2), (3,), None), activation="tanh", seed=0)     # dx broadcast over b
def test_einsum_dense_gradients(case, activation, seed):
    eq, shape, output_shape, bias_axes = case
    rng = np.random.default_rng(seed)
    layer = EinsumDense(eq, output_shape=output_shape, bias_axes=bias_axes, activation=activation, dtype="float64")
    layer.build(shape, rng=rng)
    check_layer_gradients(layer, rng.normal(size=shape), rng=rng, label=f"EinsumDense {eq}")


def test_einsum_dense_to_dtype():
    rng = np.random.default_rng(0)
    layer = EinsumDense("abc,cd->abd", output_shape=(None, 3), bias_axes="d")
    layer.build((2, 4, 5), rng=rng)
    x = rng.normal(size=(2, 4, 5))
    y32 = layer.forward(x)
    layer.to_dtype("float64")
    y64 = layer.forward(x)
    assert y32.dtype == np.float32 and y64.dtype == np.float64
    assert_close(y32, y64.astype(np.float32), label="EinsumDense to_dtype", reduction=5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(equation="ab,bc", output_shape=3), r"Invalid einsum equation 'ab,bc'"),
    (dict(equation="a...b,bc->a...c", output_shape=3), r"Invalid einsum equation"),
    (dict(equation="aab,bc->ac", output_shape=3), r"must not repeat a letter"),
    (dict(equation="ab,bc->ad", output_shape=3), r"Dimension 'd' was specified in the output"),
    (dict(equation="ab,bcz->ac", output_shape=3), r"Weight dimension 'z' did not have a match"),
    (dict(equation="ab,bc->ac", output_shape=3, bias_axes="b"), r"Bias dimension 'b' was requested"),
    (dict(equation="ab,bc->ac", output_shape=3, lora_rank=2), r"LoRA-enabled EinsumDense is not supported"),
    (dict(equation="ab,bc->ac", output_shape=3, activation="nope"), r"activation 'nope' is not supported"),
])
def test_einsum_dense_refuses(kwargs, match):
    with pytest.raises(LayerError, match=match):
        EinsumDense(**kwargs)


def test_einsum_dense_refuses_bad_shapes():
    with pytest.raises(LayerError, match=r"expects an input of rank 3\. Received: input_shape=\(2, 3\)"):
        EinsumDense("abc,cd->abd", output_shape=(None, 4)).build((2, 3))
    with pytest.raises(LayerError, match=r"do not match at shared dimension 'b'"):
        EinsumDense("abc,cd->abd", output_shape=(5, 4)).build((2, 3, 6))
    with pytest.raises(LayerError, match=r"does not fit the output spec"):
        EinsumDense("abc,cd->abd", output_shape=(4,)).build((2, 3, 6))
