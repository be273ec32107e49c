"""keras_ref.zoo.calibrate_batchnorm: BatchNormalization's moving statistics as training leaves them."""

import numpy as np
import pytest

from keras_ref import zoo as kzoo

keras = pytest.importorskip("keras")


def _model():
    L = keras.layers
    inp = keras.Input((3, 3, 4))
    x = L.Conv2D(6, 1, name="conv")(inp)
    x = L.BatchNormalization(momentum=0.9, name="bn1")(x)
    x = L.Dropout(0.5, name="drop")(x)
    x = L.Dense(5, name="dense")(x)
    x = L.BatchNormalization(momentum=0.9, name="bn2")(x)
    return keras.Model(inp, x)


def test_moving_statistics_become_each_inputs_statistics_under_the_calibrated_layers_before_it():
    keras.utils.set_random_seed(0)
    model = _model()
    assert kzoo.randomize(model, np.random.default_rng(0)) > 0
    x = np.random.default_rng(1).normal(3.0, 5.0, (8, 3, 3, 4)).astype("float32")
    assert kzoo.calibrate_batchnorm(model, x) == 2
    bn1, bn2 = model.get_layer("bn1"), model.get_layer("bn2")
    # momentum and the dropout rate are restored
    assert bn1.momentum == bn2.momentum == 0.9 and model.get_layer("drop").rate == 0.5
    h = np.asarray(model.get_layer("conv")(x), np.float64)
    mean, var = bn1.get_weights()[2:]
    np.testing.assert_allclose(mean, h.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(var, h.var(axis=(0, 1, 2)), rtol=1e-4)
    # bn2 sees bn1's calibrated output with no dropout: the inference-time statistics
    inner = keras.Model(model.inputs, model.get_layer("dense").output)
    d = np.asarray(inner(x, training=False), np.float64)
    np.testing.assert_allclose(bn2.get_weights()[2], d.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn2.get_weights()[3], d.var(axis=(0, 1, 2)), rtol=1e-4)
    # gamma and beta keep their random draws: no layer is an identity
    gamma, beta = bn1.get_weights()[:2]
    assert np.ptp(gamma) > 0 and np.ptp(beta) > 0


def test_only_the_named_family_is_calibrated():
    assert kzoo.calibrated("EfficientNetV2S") and kzoo.calibrated("EfficientNetV2B0")
    assert not kzoo.calibrated("EfficientNetB0") and not kzoo.calibrated("ResNet50")
    assert not kzoo.calibrated("EfficientNetV2S", builder="efficientnet_v2.EfficientNetV2")
