"""ConvNeXt's LayerScale and Inception-ResNet-v2's CustomScaleLayer against Keras's own classes, and the
safety check on the exact form a saved ConvNeXt / InceptionResNetV2 gives them."""

import json
import re

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import example, given, settings
from hypothesis import strategies as st
from keras.saving import serialize_keras_object
from keras.src.applications.convnext import LayerScale as KerasLayerScale
from keras.src.applications.inception_resnet_v2 import CustomScaleLayer as KerasCustomScaleLayer

from parity.tolerance import assert_close
from scratch.layers.application_layers import CustomScaleLayer, LayerScale
from scratch.layers.base import LayerError
from scratch.saving.registry import check_model_config, make_layer
from tests.support import check_layer_gradients

DTYPES = st.sampled_from(["float32", "float64"])
SEEDS = st.integers(0, 2**31 - 1)


def saved(keras_layer):
    """The layer entry as a .keras config.json holds it (module, class_name, registered_name, config)."""
    return json.loads(json.dumps(serialize_keras_object(keras_layer)))


def keras_grads(layer, xs, dy):
    ts = [tf.constant(x) for x in xs]
    with tf.GradientTape() as tape:
        for t in ts:
            tape.watch(t)
        y = layer(ts if len(ts) > 1 else ts[0])
    return y.numpy(), [g.numpy() for g in tape.gradient(y, [*ts, *layer.trainable_weights],
                                                        output_gradients=tf.constant(dy))]


@settings(max_examples=8)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), dim=st.integers(1, 6),
       dtype=DTYPES, seed=SEEDS)
@example(shape=(2, 3, 3), dim=4, dtype="float32", seed=0)   # ConvNeXt: (batch, H, W, C)
@example(shape=(1,), dim=1, dtype="float64", seed=1)
def test_layer_scale_matches_keras(shape, dim, dtype, seed):
    rng = np.random.default_rng(seed)
    k = KerasLayerScale(init_values=1e-6, projection_dim=dim, dtype=dtype)
    k.build((*shape, dim))
    k.set_weights([rng.normal(size=dim).astype(dtype)])
    mine = make_layer(saved(k))
    assert isinstance(mine, LayerScale)
    mine.build((None, *shape[1:], dim))
    assert mine.count_params() == k.count_params() == dim
    mine.set_weights(k.get_weights())
    x = rng.normal(size=(*shape, dim)).astype(dtype)
    dy = rng.normal(size=x.shape).astype(dtype)
    y_k, (dx_k, dgamma_k) = keras_grads(k, [x], dy)
    assert_close(mine.forward(x), y_k, label=f"LayerScale {dtype}")
    assert_close(mine.backward(dy), dx_k, label=f"LayerScale {dtype} dx")
    assert_close(mine.grads["gamma"], dgamma_k, label=f"LayerScale {dtype} dgamma", reduction=x.size // dim)


@settings(max_examples=8)
@given(scale=st.sampled_from([0.17, 0.1, 0.2, 1.0, -0.5]), shape=st.lists(st.integers(1, 4), min_size=2,
       max_size=4).map(tuple), broadcast=st.booleans(), dtype=DTYPES, seed=SEEDS)
@example(scale=0.17, shape=(2, 3, 3, 4), broadcast=False, dtype="float64", seed=0)   # block35's scale
@example(scale=0.1, shape=(2, 3), broadcast=True, dtype="float32", seed=1)
def test_custom_scale_layer_matches_keras(scale, shape, broadcast, dtype, seed):
    rng = np.random.default_rng(seed)
    k = KerasCustomScaleLayer(scale=scale, dtype=dtype)
    mine = make_layer(saved(k))
    assert isinstance(mine, CustomScaleLayer)
    other = (shape[0], *[1] * (len(shape) - 2), shape[-1]) if broadcast else shape
    xs = [rng.normal(size=shape).astype(dtype), rng.normal(size=other).astype(dtype)]
    dy = rng.normal(size=shape).astype(dtype)
    y_k, (dx0_k, dx1_k) = keras_grads(k, xs, dy)
    assert mine.compute_output_shape([(None, *shape[1:]), (None, *other[1:])]) == (None, *shape[1:])
    assert_close(mine.forward(xs), y_k, label=f"CustomScaleLayer {dtype}")
    dx0, dx1 = mine.backward(dy)
    assert_close(dx0, dx0_k, label="CustomScaleLayer dx0")
    assert_close(dx1, dx1_k, label="CustomScaleLayer dx1", reduction=dy.size // dx1.size)


def test_gradients():
    rng = np.random.default_rng(2)
    scale = LayerScale(init_values=0.5, projection_dim=3, dtype="float64")
    scale.build((None, 2, 3), rng=rng)
    assert set(check_layer_gradients(scale, rng.normal(size=(2, 2, 3)), rng=rng, label="LayerScale")) == \
        {"dx0", "gamma"}
    add = CustomScaleLayer(scale=0.17, dtype="float64")
    errors = check_layer_gradients(add, [rng.normal(size=(2, 3)), rng.normal(size=(2, 1))], rng=rng,
                                   label="CustomScaleLayer")
    assert set(errors) == {"dx0", "dx1"}


def _model_with(entry):
    return {"class_name": "Functional", "module": "keras", "config": {"name": "m", "layers": [entry]}}


@pytest.mark.parametrize("keras_layer", [KerasLayerScale(1e-6, 4), KerasCustomScaleLayer(0.17)],
                         ids=["LayerScale", "CustomScaleLayer"])
def test_safety_check_accepts_keras_applications_own_classes(keras_layer):
    entry = saved(keras_layer)
    # What a saved ConvNeXtTiny / InceptionResNetV2 config.json holds (checked on the real models).
    assert entry["module"].startswith("keras.src.applications.")
    assert entry["registered_name"] == entry["class_name"]
    assert check_model_config(_model_with(entry)) == []


@pytest.mark.parametrize("change,reason", [
    ({"module": "my_project.layers"}, r"from module 'my_project.layers'"),
    ({"registered_name": "Custom>LayerScale"}, r"registered as 'Custom>LayerScale'"),
])
def test_safety_check_refuses_lookalikes(change, reason):
    entry = {**saved(KerasLayerScale(1e-6, 4)), **change}
    (problem,) = check_model_config(_model_with(entry))
    assert problem[1] == "LayerScale"
    assert re.search(reason, problem[2])


@pytest.mark.parametrize("make,match", [
    (lambda: LayerScale(1e-6, 0), r"projection_dim must be a positive int\. Received: projection_dim=0"),
    (lambda: LayerScale(1e-6, 4).build((None, 3)), r"LayerScale with projection_dim=4 cannot scale an input whose"),
    (lambda: CustomScaleLayer(scale="big"), r"scale must be a number\. Received: scale='big'"),
    (lambda: CustomScaleLayer(0.1).forward(np.zeros((1, 2))), r"CustomScaleLayer takes a list of two inputs"),
    (lambda: CustomScaleLayer(0.1).compute_output_shape([(None, 2), (None, 3)]),
     r"CustomScaleLayer inputs do not broadcast"),
])
def test_errors(make, match):
    with pytest.raises(LayerError, match=match):
        make()
