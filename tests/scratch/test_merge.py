"""scratch.merge and scratch.dot against keras.layers: Add, Subtract, Multiply, Average, Maximum, Minimum,
Concatenate, Dot."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import example, given, settings
from hypothesis import strategies as st
from keras.src.backend import get_keras_mask, set_keras_mask  # how Keras 3 attaches a mask to an eager tensor

from parity.compare import own_reduction
from parity.tolerance import assert_close
from scratch.layers.base import LayerError
from scratch.layers.dot import Dot
from scratch.layers.merge import Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract
from tests.support import check_layer_gradients

ELEMENTWISE = [Add, Subtract, Multiply, Average, Maximum, Minimum]
DTYPES = st.sampled_from(["float32", "float64"])
SEEDS = st.integers(0, 2**31 - 1)


def keras_twin(cls, dtype, **config):
    k = getattr(keras.layers, cls.__name__)(dtype=dtype, **config)
    return k, cls(**k.get_config())


def keras_tensors(xs, masks=None):
    ts = [tf.constant(x) for x in xs]
    for t, m in zip(ts, masks or [None] * len(ts)):
        if m is not None:
            set_keras_mask(t, tf.constant(m))
    return ts


@st.composite
def broadcast_shapes(draw, n):
    """n input shapes that Keras broadcasts: equal, with size-1 axes, or of lower rank."""
    full = tuple(draw(st.lists(st.integers(1, 4), min_size=2, max_size=4)))
    out = []
    for _ in range(n):
        kind = draw(st.sampled_from(["same", "ones", "lower"]))
        if kind == "ones":
            out.append((full[0], *(1 if draw(st.booleans()) else d for d in full[1:])))
        elif kind == "lower" and len(full) > 2:
            out.append((full[0], *full[draw(st.integers(2, len(full) - 1)):]))
        else:
            out.append(full)
    return out


@st.composite
def elementwise_cases(draw):
    cls = draw(st.sampled_from(ELEMENTWISE))
    n = 2 if cls is Subtract else draw(st.integers(1, 4))
    return cls, draw(broadcast_shapes(n))


@given(case=elementwise_cases(), dtype=DTYPES, seed=SEEDS)
@example(case=(Add, [(2, 3), (2, 3)]), dtype="float32", seed=0)
@example(case=(Add, [(2, 3, 4), (2, 4), (2, 1, 4)]), dtype="float64", seed=0)
@example(case=(Subtract, [(2, 3, 4), (2, 3, 1)]), dtype="float32", seed=0)
@example(case=(Average, [(2, 3), (2, 3), (2, 3)]), dtype="float32", seed=0)
@example(case=(Multiply, [(2, 1, 4), (2, 3, 1)]), dtype="float32", seed=0)
@example(case=(Maximum, [(1, 5), (1, 5), (1, 5), (1, 5)]), dtype="float64", seed=0)
@example(case=(Minimum, [(3, 2, 2), (3, 2)]), dtype="float32", seed=0)
@example(case=(Add, [(2, 3)]), dtype="float32", seed=0)
def test_elementwise_matches_keras(case, dtype, seed):
    cls, shapes = case
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=s).astype(dtype) for s in shapes]
    k, mine = keras_twin(cls, dtype)
    batchless = [(None, *s[1:]) for s in shapes]
    assert mine.compute_output_shape(batchless) == tuple(k.compute_output_shape(batchless))
    assert mine.supports_masking == k.supports_masking
    mine.build(shapes)
    assert mine.count_params() == 0
    assert_close(mine.forward(xs), np.asarray(k(keras_tensors(xs))), label=f"{cls.__name__} {shapes}",
                 reduction=len(xs))


@st.composite
def masked_cases(draw):
    cls = draw(st.sampled_from(ELEMENTWISE))
    n = 2 if cls is Subtract else draw(st.integers(1, 4))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 3)))
    has_mask = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return cls, shape, has_mask


@given(case=masked_cases(), dtype=DTYPES, seed=SEEDS)
@example(case=(Maximum, (2, 5, 3), [True, True, True]), dtype="float32", seed=0)
@example(case=(Maximum, (2, 5, 3), [False, True]), dtype="float32", seed=0)
@example(case=(Minimum, (2, 5, 3), [True, False, True]), dtype="float64", seed=0)
@example(case=(Multiply, (2, 5, 3), [True, True]), dtype="float32", seed=0)
@example(case=(Multiply, (2, 5, 3), [True, False]), dtype="float32", seed=0)
@example(case=(Add, (2, 5, 3), [True, True]), dtype="float32", seed=0)
def test_masked_elementwise_matches_keras(case, dtype, seed):
    """Outputs and output masks when some inputs carry (B, T) masks, as after Embedding(mask_zero)."""
    cls, shape, has_mask = case
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=shape).astype(dtype) for _ in has_mask]
    masks = [rng.random(shape[:-1]) < 0.5 if m else None for m in has_mask]
    k, mine = keras_twin(cls, dtype)
    y_k = k(keras_tensors(xs, masks))
    kwargs = {"mask": masks} if mine.consumes_mask else {}
    assert_close(mine.forward(xs, **kwargs), np.asarray(y_k), label=f"masked {cls.__name__} {has_mask}",
                 reduction=len(xs))
    mask_k = get_keras_mask(y_k)
    mask_m = mine.compute_mask(xs, masks)
    if mask_k is None:
        assert mask_m is None
    else:
        np.testing.assert_array_equal(mask_m, np.asarray(mask_k))


@st.composite
def concat_cases(draw):
    rank = draw(st.integers(2, 4))
    axis = draw(st.sampled_from([a for a in range(-rank, rank) if a % rank != 0]))
    base = draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank))
    n = draw(st.integers(1, 4))
    shapes = []
    for _ in range(n):
        s = list(base)
        s[axis] = draw(st.integers(1, 4))
        shapes.append(tuple(s))
    return axis, shapes


@given(case=concat_cases(), dtype=DTYPES, seed=SEEDS)
@example(case=(-1, [(2, 3), (2, 4)]), dtype="float32", seed=0)
@example(case=(1, [(2, 3, 4), (2, 1, 4), (2, 2, 4)]), dtype="float64", seed=0)
@example(case=(-2, [(1, 2, 2, 3), (1, 2, 5, 3)]), dtype="float32", seed=0)
def test_concatenate_matches_keras(case, dtype, seed):
    axis, shapes = case
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=s).astype(dtype) for s in shapes]
    k, mine = keras_twin(Concatenate, dtype, axis=axis)
    batchless = [(None, *s[1:]) for s in shapes]
    assert mine.compute_output_shape(batchless) == tuple(k.compute_output_shape(batchless))
    assert mine.compute_output_shape(shapes) == tuple(k.compute_output_shape(shapes))
    assert_close(mine.forward(xs), np.asarray(k(keras_tensors(xs))), label=f"Concatenate axis={axis}")


@given(axis=st.sampled_from([-1, 1, 2]), has_mask=st.lists(st.booleans(), min_size=1, max_size=3),
       full_rank_mask=st.booleans(), seed=SEEDS)
@example(axis=-1, has_mask=[True, False], full_rank_mask=False, seed=0)
@example(axis=1, has_mask=[True, True], full_rank_mask=False, seed=0)
@example(axis=-1, has_mask=[False, False], full_rank_mask=False, seed=0)
def test_concatenate_mask_matches_keras(axis, has_mask, full_rank_mask, seed):
    rng = np.random.default_rng(seed)
    shapes = [(2, 3, 2) if axis != 1 else (2, int(rng.integers(1, 4)), 2) for _ in has_mask]
    if axis == 2:
        shapes = [(2, 3, int(rng.integers(1, 4))) for _ in has_mask]
    xs = [rng.normal(size=s).astype("float32") for s in shapes]
    masks = [None if not m else rng.random(s if full_rank_mask else s[:-1]) < 0.5
             for m, s in zip(has_mask, shapes)]
    k, mine = keras_twin(Concatenate, "float32", axis=axis)
    expected = k.compute_mask(keras_tensors(xs), [None if m is None else tf.constant(m) for m in masks])
    got = mine.compute_mask(xs, masks)
    if expected is None:
        assert got is None
    else:
        np.testing.assert_array_equal(got, np.asarray(expected))


GRAD_CASES = [(Add, [(2, 3, 4), (2, 3, 4), (2, 1, 4)]), (Add, [(2, 3, 4), (2, 4)]),
              (Subtract, [(2, 3, 4), (2, 3, 1)]), (Average, [(2, 3), (2, 3), (2, 3)]),
              (Multiply, [(2, 3, 4), (2, 1, 4), (2, 3, 4)]), (Maximum, [(2, 3, 4), (2, 3, 4), (2, 3, 1)]),
              (Minimum, [(2, 3, 4), (2, 4)])]


@pytest.mark.parametrize("cls,shapes", GRAD_CASES)
def test_elementwise_gradients(cls, shapes):
    rng = np.random.default_rng(3)
    xs = [rng.normal(size=s) for s in shapes]
    errors = check_layer_gradients(cls(dtype="float64"), xs, rng=rng, label=f"{cls.__name__} {shapes}")
    assert set(errors) == {f"dx{i}" for i in range(len(xs))}


@pytest.mark.parametrize("cls", [Multiply, Maximum, Minimum])
@pytest.mark.parametrize("has_mask", [(True, True, True), (True, False, True), (False, True, False)])
def test_masked_elementwise_gradients(cls, has_mask):
    rng = np.random.default_rng(4)
    xs = [rng.normal(size=(2, 4, 3)) for _ in has_mask]
    masks = [rng.random((2, 4)) < 0.5 if m else None for m in has_mask]
    check_layer_gradients(cls(dtype="float64"), xs, rng=rng, label=f"masked {cls.__name__} {has_mask}",
                          forward_kwargs={"mask": masks})


@pytest.mark.parametrize("axis", [-1, 1])
def test_concatenate_gradients(axis):
    rng = np.random.default_rng(5)
    shapes = [(2, 3, 4), (2, 2, 4)] if axis == 1 else [(2, 3, 1), (2, 3, 4), (2, 3, 2)]
    check_layer_gradients(Concatenate(axis=axis, dtype="float64"), [rng.normal(size=s) for s in shapes],
                          rng=rng, label=f"Concatenate axis={axis}")


@pytest.mark.parametrize("make,match", [
    (lambda: Add().forward(np.zeros((2, 3))), r"A merge layer should be called on a list of inputs\. "
                                               r"Received: inputs of type ndarray"),
    (lambda: Subtract().forward([np.zeros((2, 3))] * 3), r"A `Subtract` layer should be called on exactly 2 inputs\. "
                                                         r"Received 3 inputs"),
    (lambda: Add().forward([]), r"A merge layer should be called on a list of at least 1 input\. Received 0"),
    (lambda: Add().forward([np.zeros((2, 3)), np.zeros((2, 4))]),
     r"Inputs have incompatible shapes\. Received shapes \(3,\) and \(4,\)"),
    (lambda: Add().compute_output_shape([(2, 3), (4, 3)]),
     r"Cannot merge tensors with different batch sizes\. Received tensors with shapes \[\(2, 3\), \(4, 3\)\]"),
    (lambda: Add().build((None, 3)), r"A merge layer should be called on a list of inputs\. "
                                     r"Received: input_shape=\(None, 3\)"),
    (lambda: Add().compute_mask([np.zeros((1, 2))], np.ones((1, 2), bool)), r"`mask` should be a list\."),
    (lambda: Add().compute_mask([np.zeros((1, 2))] * 2, [None]), r"The lists `inputs` and `mask` should have "
                                                                  r"the same length\. Received: 2 inputs and 1 masks"),
    (lambda: Concatenate(axis=1).forward([np.zeros((2, 3, 4)), np.zeros((2, 3, 5))]),
     r"A `Concatenate` layer requires inputs with matching shapes except for the concatenation axis\. "
     r"Received: input_shape=\[\(2, 3, 4\), \(2, 3, 5\)\]"),
    (lambda: Concatenate(axis=3).compute_output_shape([(None, 2, 2)]), r"axis 3 is out of bounds for inputs of rank 3"),
    (lambda: Concatenate(axis=1.5), r"axis must be an int\. Received: axis=1\.5"),
    (lambda: Concatenate().forward(np.zeros((2, 2))), r"A `Concatenate` layer should be called on a list"),
    (lambda: Maximum().forward([np.zeros((2, 3))] * 2, mask=[None]), r"Expected one mask per input \(2\)\. "
                                                                    r"Received 1 masks"),
])
def test_errors(make, match):
    with pytest.raises(LayerError, match=match):
        make()


def test_mask_rules_pass_or_of_masks():
    a, b = np.array([[True, False, False]]), np.array([[False, False, True]])
    xs = [np.zeros((1, 3, 2))] * 2
    np.testing.assert_array_equal(Add().compute_mask(xs, [a, b]), [[True, False, True]])
    assert Add().compute_mask(xs, [a, None]) is None
    assert Add().compute_mask(xs, None) is None


# ---- Dot ------------------------------------------------------------------------------------------
@st.composite
def dot_cases(draw):
    """Two inputs of rank 2-4 sharing the batch and one contracted axis, ``axes`` int or pair,
    negative or not."""
    r1, r2 = draw(st.integers(2, 4)), draw(st.integers(2, 4))
    b, n = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    s1 = [b] + [draw(st.integers(1, 3)) for _ in range(r1 - 1)]
    s2 = [b] + [draw(st.integers(1, 3)) for _ in range(r2 - 1)]
    a1, a2 = draw(st.integers(1, r1 - 1)), draw(st.integers(1, r2 - 1))
    if draw(st.booleans()) and r1 == r2:
        a2 = a1
        axes = draw(st.sampled_from([a1, a1 - r1]))
    else:
        axes = (draw(st.sampled_from([a1, a1 - r1])), draw(st.sampled_from([a2, a2 - r2])))
    s1[a1], s2[a2] = n, n
    return axes, (tuple(s1), tuple(s2))


@given(case=dot_cases(), normalize=st.booleans(), dtype=DTYPES, seed=SEEDS)
@example(case=(1, ((2, 3), (2, 3))), normalize=False, dtype="float32", seed=0)      # 2D x 2D -> (batch, 1)
@example(case=((1, 2), ((2, 3, 4), (2, 5, 3))), normalize=True, dtype="float64", seed=0)
@example(case=(-1, ((2, 4, 3), (2, 2, 3))), normalize=False, dtype="float32", seed=0)
@example(case=((2, 1), ((1, 2, 3, 4), (1, 3))), normalize=True, dtype="float32", seed=0)
@example(case=((1, 1), ((2, 1), (2, 1))), normalize=True, dtype="float64", seed=0)    # length-1 axis
def test_dot_matches_keras(case, normalize, dtype, seed):
    axes, shapes = case
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=s).astype(dtype) for s in shapes]
    k, mine = keras_twin(Dot, dtype, axes=axes, normalize=normalize)
    batchless = [(None, *s[1:]) for s in shapes]
    assert mine.compute_output_shape(batchless) == tuple(k.compute_output_shape(batchless))
    mine.build(shapes)
    y = mine.forward(xs)
    assert y.shape == mine.compute_output_shape(shapes)
    assert mine.compute_mask(xs, [np.ones(s[:-1], bool) for s in shapes]) is None
    assert_close(y, np.asarray(k(keras_tensors(xs))), label=f"Dot axes={axes} {shapes} normalize={normalize}",
                 reduction=own_reduction("Dot", k.get_config(), shapes))


def test_dot_normalize_floors_the_norm():
    """ops.normalize caps 1/norm at 1/1e-7: an all-zero row stays zero instead of becoming NaN."""
    xs = [np.zeros((1, 3), np.float32), np.ones((1, 3), np.float32)]
    k = keras.layers.Dot(axes=1, normalize=True)
    np.testing.assert_array_equal(Dot(axes=1, normalize=True).forward(xs), np.asarray(k(keras_tensors(xs))))


@settings(max_examples=10)
@given(case=dot_cases(), normalize=st.booleans(), seed=SEEDS)
@example(case=((1, 2), ((2, 3, 4), (2, 5, 3))), normalize=True, seed=0)
@example(case=(1, ((2, 3), (2, 3))), normalize=True, seed=1)
def test_dot_gradients(case, normalize, seed):
    axes, shapes = case
    rng = np.random.default_rng(seed)
    axis = axes if isinstance(axes, int) else axes[0]
    # Normalizing a length-1 axis gives sign(x), whose gradient is 0: finite differences see only noise.
    normalize = normalize and shapes[0][axis] > 1
    layer = Dot(axes=axes, normalize=normalize, dtype="float64")
    check_layer_gradients(layer, [rng.normal(size=s) for s in shapes], rng=rng, label=f"Dot {axes} {shapes}")


@pytest.mark.parametrize("make,match", [
    (lambda: Dot(axes="1"), r"Invalid type for argument `axes`: it should be a list or an int\. Received: axes='1'"),
    (lambda: Dot(axes=(1, 2, 3)), r"it should contain two elements\. Received: axes=\(1, 2, 3\)"),
    (lambda: Dot(axes=(1, 1.5)), r"list elements should be integers\. Received: axes=\(1, 1\.5\)"),
    (lambda: Dot(axes=1).build([(2, 3), (2, 4)]), r"Incompatible input shapes: axis values 3 \(at axis 1\) != 4"),
    (lambda: Dot(axes=0).build([(2, 3), (2, 3)]), r"Dot axes must name a non-batch axis"),
    (lambda: Dot(axes=1).build([(2, 3)]), r"A `Dot` layer should be called on a list of 2 inputs"),
    (lambda: Dot(axes=1).forward([np.zeros((2, 3))] * 3), r"A `Dot` layer should be called on exactly 2 inputs"),
    (lambda: Dot(axes=1).build([(2,), (2, 3)]), r"Cannot do batch_dot on inputs with rank < 2"),
])
def test_dot_errors(make, match):
    with pytest.raises(LayerError, match=match):
        make()
