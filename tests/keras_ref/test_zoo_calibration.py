"""keras_ref.zoo.calibrate: BatchNormalization statistics that keep a deep random net well-conditioned.

A deep stack of Conv2D + BatchNormalization, the pattern that made EfficientNetV2M/L chaotic with
random moving statistics: after ``randomize`` + ``calibrate`` every BatchNormalization's output
is about unit scale, none is an identity, a nested model is calibrated too, and the same seed
gives the same weights.
"""

import numpy as np
import pytest

from keras_ref import zoo as kzoo

keras = pytest.importorskip("keras")

DEPTH = 12


def _stack(seed, nested=False, depth=DEPTH):
    """Input -> depth x (Conv2D, BatchNormalization, relu) [the second half as a nested model]."""
    keras.utils.set_random_seed(seed)
    L = keras.layers

    def blocks(x, first, last):
        for i in range(first, last):
            # a large kernel scale makes each uncalibrated block multiply the activations' scale
            conv = L.Conv2D(8, 3, padding="same", name=f"conv{i}",
                            kernel_initializer=keras.initializers.RandomNormal(stddev=0.5))
            x = L.Activation("relu", name=f"relu{i}")(L.BatchNormalization(name=f"bn{i}")(conv(x)))
        return x

    img = keras.Input((6, 6, 3))
    x = blocks(img, 0, depth // 2)
    if nested:
        inner_in = keras.Input(x.shape[1:])
        x = keras.Model(inner_in, blocks(inner_in, depth // 2, depth), name="inner")(x)
    else:
        x = blocks(x, depth // 2, depth)
    return keras.Model(img, x)


def _bn_layers(model):
    return [layer for layer in kzoo._layers(model) if type(layer).__name__ == "BatchNormalization"]


def _bn_output_rms(model, x):
    """The rms of every BatchNormalization's output (of the outer graph) and of the model's, one call."""
    bns = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
    values = keras.Model(model.inputs, [bn.output for bn in bns] + [model.output])([x])
    return [float(np.sqrt(np.mean(np.square(np.asarray(v))))) for v in values]


def _sample(seed=1):
    return np.random.default_rng(seed).normal(0.0, 3.0, (2, 6, 6, 3)).astype("float32")


@pytest.mark.parametrize("nested", [False, True])
def test_calibrated_batch_normalizations_are_unit_scale_and_not_identities(nested):
    model, x = _stack(0, nested), _sample()
    rng = np.random.default_rng(0)
    kzoo.randomize(model, rng)
    uncalibrated = _bn_output_rms(model, x)
    assert kzoo.calibrate(model, x, rng) == DEPTH   # the nested model's too
    rms = _bn_output_rms(model, x)
    # each output about unit scale (gamma ~ U(0.5, 1.5), u_c ~ U(0.5, 2)), the model's output too
    # (the nested half's last one), where random statistics let the scale compound through the stack
    assert all(0.2 < r < 3.0 for r in rms), rms
    assert uncalibrated[-1] > 1e3
    for bn in _bn_layers(model):
        mean, var, gamma = (np.asarray(v) for v in (bn.moving_mean, bn.moving_variance, bn.gamma))
        assert (var > 0).all() and np.ptp(var) > 0 and np.ptp(mean) > 0 and np.ptp(gamma) > 0, bn.name
        assert not np.allclose(var, 1.0) and not np.allclose(gamma, 1.0), bn.name


def test_calibration_is_deterministic():
    weights = []
    for _ in range(2):
        model = _stack(0, depth=4)
        rng = np.random.default_rng(kzoo.SEED)
        kzoo.randomize(model, rng)
        kzoo.calibrate(model, _sample(), rng)
        weights.append(model.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(*weights))
