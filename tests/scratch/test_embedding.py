"""Embedding against keras.layers.Embedding (and tf_keras's), plus its gradient check."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from hypothesis import example, given
from hypothesis import strategies as st

from parity.tolerance import assert_close
from scratch.layers.base import LayerError
from scratch.layers.embedding import Embedding
from tests.support import check_layer_gradients, randomize_keras_weights


@given(input_dim=st.integers(1, 20), output_dim=st.integers(1, 5), mask_zero=st.booleans(),
       shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
       id_kind=st.sampled_from(["int32", "int64", "float32", "negative"]),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**16))
@example(input_dim=1, output_dim=1, mask_zero=True, shape=(1,), id_kind="int32", dtype="float32", seed=0)
@example(input_dim=6, output_dim=3, mask_zero=True, shape=(2, 5), id_kind="negative", dtype="float64", seed=1)
@example(input_dim=9, output_dim=2, mask_zero=False, shape=(3, 2, 4), id_kind="float32", dtype="float32", seed=2)
def test_matches_keras(input_dim, output_dim, mask_zero, shape, id_kind, dtype, seed):
    rng = np.random.default_rng(seed)
    k = keras.layers.Embedding(input_dim, output_dim, mask_zero=mask_zero, dtype=dtype)
    k.build(shape)
    weights = randomize_keras_weights(k, rng)
    layer = Embedding(**k.get_config())
    layer.build(shape)
    layer.set_weights(weights)
    assert layer.count_params() == k.count_params()
    assert layer.compute_output_shape((None,) + shape[1:]) == k.compute_output_shape((None,) + shape[1:])

    if id_kind == "negative":      # Keras 3 counts negative ids from the end, as numpy does
        ids = rng.integers(-input_dim, input_dim, size=shape)
    elif id_kind == "float32":     # cast to int32 by truncation toward zero
        ids = rng.uniform(-0.99, input_dim - 0.01, size=shape).astype("float32")
    else:
        ids = rng.integers(0, input_dim, size=shape).astype(id_kind)
    desired = np.asarray(k(ids))
    assert_close(layer.forward(ids), desired, kind="forward", label=f"Embedding ids={id_kind}", reduction=1)
    k_mask = k.compute_mask(keras.ops.convert_to_tensor(ids), None)
    s_mask = layer.compute_mask(ids, None)
    assert (s_mask is None) == (k_mask is None) == (not mask_zero)
    if mask_zero:
        np.testing.assert_array_equal(s_mask, np.asarray(k_mask))


def test_matches_tf_keras_config_with_input_length():
    rng = np.random.default_rng(3)
    k = tf_keras.layers.Embedding(7, 4, mask_zero=True, input_length=5)
    k.build((None, 5))
    weights = randomize_keras_weights(k, rng)
    layer = Embedding(**k.get_config())
    layer.set_weights(weights)
    ids = rng.integers(0, 7, size=(3, 5))
    assert_close(layer.forward(ids), np.asarray(k(ids)), kind="forward", label="tf_keras Embedding")
    np.testing.assert_array_equal(layer.compute_mask(ids), np.asarray(k.compute_mask(ids)))


@given(input_dim=st.integers(1, 8), output_dim=st.integers(1, 4), batch=st.integers(1, 4), steps=st.integers(1, 6),
       mask_zero=st.booleans(), seed=st.integers(0, 2**16))
@example(input_dim=2, output_dim=3, batch=4, steps=6, mask_zero=True, seed=0)   # many repeated ids
def test_gradients(input_dim, output_dim, batch, steps, mask_zero, seed):
    rng = np.random.default_rng(seed)
    layer = Embedding(input_dim, output_dim, mask_zero=mask_zero, dtype="float64")
    layer.build((batch, steps), rng=rng)
    ids = rng.integers(0, input_dim, size=(batch, steps))
    # Integer ids have no gradient (backward returns None); only the table is checked.
    check_layer_gradients(layer, ids, rng=rng, label="Embedding", argnums=())
    assert layer.backward(np.ones((batch, steps, output_dim))) is None
    np.testing.assert_array_equal(layer.grads["embeddings"].sum(axis=1),
                                  np.bincount(ids.ravel(), minlength=input_dim) * output_dim)


def test_out_of_range_ids_are_refused_like_keras():
    k = keras.layers.Embedding(5, 2)
    k.build((None,))
    layer = Embedding(5, 2)
    layer.build((None,))
    for bad, shown in (([[1, 5]], r"ids\[0, 1\] = 5"), ([[-6, 0]], r"ids\[0, 0\] = -6")):
        with pytest.raises(tf.errors.InvalidArgumentError):
            k(np.array(bad))
        with pytest.raises(LayerError, match=r"Embedding 'embedding' got an id outside \[-5, 5\) "
                                             rf"\(input_dim=5\): {shown}"):
            layer.forward(np.array(bad))


def test_bad_arguments():
    with pytest.raises(LayerError, match=r"input_dim must be a positive integer. Received: input_dim=0"):
        Embedding(0, 3)
    with pytest.raises(LayerError, match=r"output_dim must be a positive integer. Received: output_dim=2.5"):
        Embedding(3, 2.5)
    with pytest.raises(LayerError, match=r"LoRA-enabled Embedding is not supported. Received: lora_rank=4"):
        Embedding(3, 2, lora_rank=4)
    with pytest.raises(LayerError, match=r"weight 'embeddings' has shape \(3, 3\), expected \(3, 2\)"):
        Embedding(3, 2).set_weights([np.zeros((3, 3))])
    with pytest.raises(LayerError, match=r"Embedding.backward called before forward"):
        Embedding(3, 2).backward(np.zeros((1, 2)))
