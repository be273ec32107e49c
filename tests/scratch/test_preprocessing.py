"""Rescaling and Normalization against the real Keras layers, forward and backward, with configs as saved."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import example, given, settings
from hypothesis import strategies as st

from parity.compare import own_reduction
from parity.tolerance import assert_close
from scratch.layers.base import LayerError
from scratch.layers.preprocessing import Normalization, Rescaling
from tests.support import check_layer_gradients

DTYPES = st.sampled_from(["float32", "float64"])
SEEDS = st.integers(0, 2**31 - 1)


def saved_config(keras_layer):
    """The config as a .keras file stores it (JSON round trip: tuples become lists, arrays __numpy__ dicts)."""
    return json.loads(json.dumps(keras.saving.serialize_keras_object(keras_layer)))["config"]


def keras_value_and_dx(layer, x, dy):
    t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(t)
        y = layer(t)
    return y.numpy(), tape.gradient(y, t, output_gradients=tf.constant(dy)).numpy()


def check(keras_layer, mine, x, rng, label):
    dy = rng.normal(size=x.shape).astype(x.dtype)
    y_k, dx_k = keras_value_and_dx(keras_layer, x, dy)
    assert_close(mine.forward(x), y_k, label=label)
    assert_close(mine.backward(dy), dx_k, label=f"{label} dx")


# ---- Rescaling --------------------------------------------------------------------------------
@settings(max_examples=10)
@given(scale=st.sampled_from([1 / 255, 1 / 127.5, 2.0, -0.5, "per_channel", "numpy"]),
       offset=st.sampled_from([0.0, -1.0, 0.1, "per_channel"]), dtype=DTYPES, seed=SEEDS)
@example(scale=1 / 255, offset=0.0, dtype="float64", seed=0)       # 1/255 is not a float32: Keras rounds it
@example(scale=1 / 127.5, offset=-1.0, dtype="float32", seed=1)
@example(scale="numpy", offset="per_channel", dtype="float64", seed=2)   # a float64 array keeps its precision
def test_rescaling_matches_keras(scale, offset, dtype, seed):
    rng = np.random.default_rng(seed)
    channels = 3
    if scale == "per_channel":
        scale = [0.1, 0.2, 0.3]
    elif scale == "numpy":
        scale = rng.uniform(0.1, 2.0, channels)          # float64, saved as a __numpy__ object
    if offset == "per_channel":
        offset = [-0.1, 0.0, 0.7]
    k = keras.layers.Rescaling(scale=scale, offset=offset, dtype=dtype)
    mine = Rescaling(**saved_config(k))
    assert mine.compute_output_shape((None, 4, channels)) == tuple(k.compute_output_shape((None, 4, channels)))
    assert mine.supports_masking == k.supports_masking and mine.count_params() == 0
    x = rng.uniform(0, 255, size=(2, 4, channels)).astype(dtype)
    check(k, mine, x, rng, f"Rescaling {scale} {offset} {dtype}")


def test_rescaling_accepts_integer_images():
    k = keras.layers.Rescaling(scale=1 / 255)
    x = np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3)
    assert_close(Rescaling(**saved_config(k)).forward(x), k(x).numpy(), label="Rescaling uint8")


def test_rescaling_gradients():
    rng = np.random.default_rng(3)
    layer = Rescaling(scale=[0.5, -2.0], offset=0.25, dtype="float64")
    check_layer_gradients(layer, rng.normal(size=(3, 2)), rng=rng, label="Rescaling")


# ---- Normalization ----------------------------------------------------------------------------
@st.composite
def norm_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=2, max_size=4)))
    rank = len(shape)
    axis = draw(st.one_of(st.none(), st.sampled_from(range(-rank + 1, rank)),
                          st.lists(st.integers(1, rank - 1), min_size=1, max_size=rank - 1, unique=True)))
    return shape, axis, draw(st.booleans()), draw(st.sampled_from(["weights", "config", "config_scalar"]))


def _kept(shape, axis):
    axes = () if axis is None else (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(shape[a % len(shape)] for a in sorted(a % len(shape) for a in axes))


@settings(max_examples=12)
@given(case=norm_cases(), dtype=DTYPES, seed=SEEDS)
@example(case=((2, 3), -1, False, "weights"), dtype="float32", seed=0)
@example(case=((2, 4, 3), -1, False, "config"), dtype="float64", seed=1)    # ConvNeXt's prestem: lists in the config
@example(case=((2, 3, 2), [1, 2], True, "weights"), dtype="float64", seed=2)
@example(case=((3, 2), None, False, "config_scalar"), dtype="float32", seed=3)
@example(case=((2, 3), 1, False, "zero_variance"), dtype="float32", seed=4)  # the 1e-7 floor of the std
def test_normalization_matches_keras(case, dtype, seed):
    shape, axis, invert, source = case
    rng = np.random.default_rng(seed)
    kept = _kept(shape, axis)
    mean = rng.normal(0.0, 2.0, kept)
    variance = rng.uniform(0.1, 3.0, kept)
    if source == "zero_variance":
        variance[...] = 0.0
    if source.startswith("config"):
        m, v = (float(mean.flat[0]), float(variance.flat[0])) if source == "config_scalar" \
            else (mean.tolist(), variance.tolist())
        k = keras.layers.Normalization(axis=axis, mean=m, variance=v, invert=invert, dtype=dtype)
        k.build(shape)
    else:
        k = keras.layers.Normalization(axis=axis, invert=invert, dtype=dtype)
        k.build(shape)
        k.set_weights([mean.astype(dtype), variance.astype(dtype), np.asarray(7, np.int64)])
        k.finalize_state()   # as loading a file does (load_own_variables); set_weights alone leaves the old stats
    mine = Normalization(**saved_config(k))
    mine.build((None, *shape[1:]))
    assert mine.active_weight_names() == tuple(w.name for w in k.weights)
    assert mine.count_params() == k.count_params()
    assert mine.compute_output_shape((None, *shape[1:])) == tuple(k.compute_output_shape((None, *shape[1:])))
    if k.weights:
        mine.set_weights(k.get_weights())
        assert mine.weights["count"].dtype == np.int64 and int(mine.weights["count"]) == 7
    check(k, mine, rng.normal(0.0, 3.0, size=shape).astype(dtype), rng, f"Normalization {case} {dtype}")


def test_normalization_keeps_count_an_integer_across_dtypes():
    layer = Normalization(axis=-1)
    layer.build((None, 2))
    layer.set_weights([np.zeros(2), np.ones(2), np.asarray(5, np.int64)])
    layer.to_dtype("float64")
    assert layer.weights["mean"].dtype == np.float64 and layer.weights["count"].dtype == np.int64
    assert layer.trainable_weight_names() == () and layer.count_params() == 5


@pytest.mark.parametrize("invert", [False, True])
def test_normalization_gradients(invert):
    rng = np.random.default_rng(4)
    layer = Normalization(axis=-1, mean=[0.5, -1.0, 2.0], variance=[0.25, 4.0, 1.0], invert=invert, dtype="float64")
    layer.build((None, 3))
    errors = check_layer_gradients(layer, rng.normal(size=(4, 3)), rng=rng, label=f"Normalization invert={invert}")
    assert set(errors) == {"dx0"}


# ---- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("make,match", [
    (lambda: Rescaling(scale="big"), r"scale must be a number, a list or a NumPy array\. Received: scale='big'"),
    (lambda: Rescaling(scale={"class_name": "Nope"}), r"scale must be a number, a list or a NumPy array"),
    (lambda: Rescaling(scale=[1.0, 2.0]).compute_output_shape((None, 3)),
     r"scale of shape \(2,\) does not broadcast against input shape \(None, 3\)"),
    (lambda: Normalization(mean=[1.0]), r"When setting values directly, both `mean` and `variance` must be set\."),
    (lambda: Normalization(mean=[1.0, 2.0], variance=[1.0]),
     r"`mean` and `variance` must have the same shape\. Received: mean shape \(2,\) and variance shape \(1,\)"),
    (lambda: Normalization(axis=-1, mean=[[1.0]], variance=[[1.0]]),
     r"The rank of `mean` must be less than or equal to the number of axes \(1\)"),
    (lambda: Normalization(axis="last"), r"axis must be an int, a list of ints or None\. Received: axis='last'"),
    (lambda: Normalization(axis=3).build((None, 2)),
     r"All `axis` values must be in the range \[-ndim, ndim\)\. Received inputs with ndim=2, while axis=\(3,\)"),
    (lambda: Normalization(axis=1).build((None, None)), r"All `axis` values to be kept must have a known shape"),
])
def test_errors(make, match):
    with pytest.raises(LayerError, match=match):
        make()


# ---- through a saved file ---------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_saved_model_with_the_new_layers_loads_and_matches(tmp_path, suffix):
    """Normalization's adapted weights (count is int64 in the file), config constants, the per-sample
    normalizations and the activation layers, read back from both file formats, in float32 and float64."""
    import scratch

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5, 5, 4)).astype("float32")
    norm = keras.layers.Normalization()
    norm.adapt(x)
    L = keras.layers
    model = keras.Sequential([keras.Input((5, 5, 4)), L.Rescaling(0.5, offset=0.1), norm,
                              L.Conv2D(8, 3, activation="mish"), L.GroupNormalization(groups=4),
                              L.PReLU(shared_axes=[1, 2]), L.LayerNormalization(axis=[1, 3]), L.LeakyReLU(0.1),
                              L.ELU(0.5), L.UnitNormalization(), L.Flatten(), L.Dense(5, activation="log_softmax")])
    for layer in model.layers[2:]:
        layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])
    model.save(tmp_path / f"m{suffix}")
    want = model.predict(x, verbose=0)
    # A chain: the longest sum behind an output is every layer's own reduction added up (parity.compare's rule).
    chain = sum(own_reduction(type(layer).__name__, layer.get_config(), layer.input.shape) for layer in model.layers)
    mine = scratch.load(tmp_path / f"m{suffix}")
    assert mine.get_layer(norm.name).weights["count"].dtype == np.int64
    assert_close(mine.predict(x), want, label=f"saved model {suffix}", reduction=chain)
    truth = mine.to_dtype("float64").predict(x.astype("float64"))
    assert truth.dtype == np.float64
    assert_close(truth.astype("float32"), want, label=f"saved model {suffix} float64", reduction=chain)
