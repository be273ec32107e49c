"""A small Keras CNN trained on real digits, rerun layer by layer in scratch on the copied weights."""

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

from parity.tolerance import assert_close
from scratch.layers.conv import Conv2D
from scratch.layers.core import Dense, Flatten
from scratch.layers.pooling import MaxPooling2D

SCRATCH = {"Conv2D": Conv2D, "MaxPooling2D": MaxPooling2D, "Flatten": Flatten, "Dense": Dense}


@pytest.fixture(scope="module")
def trained():
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]  # (1797, 8, 8, 1), pixels 0..16 -> [0, 1]
    y = digits.target
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:1400], y[:1400], epochs=2, batch_size=32, verbose=0, shuffle=False)
    return model, x[1400:], y[1400:]


def scratch_layers(model):
    layers = []
    shape = (None, 8, 8, 1)
    for k in model.layers:
        mine = SCRATCH[type(k).__name__](**k.get_config())
        mine.build(shape)
        mine.set_weights(k.get_weights())
        assert mine.count_params() == k.count_params()
        shape = mine.compute_output_shape(shape)
        layers.append(mine)
    return layers


def test_training_learned_something(trained):
    model, x, y = trained
    # Guards the premise that the weights were trained (about 0.8 here; chance is 0.1).
    assert np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y) > 0.5


def test_scratch_reproduces_every_layer_and_the_predictions(trained):
    model, x, _ = trained
    probe = keras.Model(model.inputs, [layer.output for layer in model.layers])
    keras_outputs = [np.asarray(o) for o in probe([x])]
    # Multiply-adds behind one element: conv 3*3*1 per feature, then Dense over 3*3*8 features.
    reductions = [9, 9, 9, 9 * 72]
    h = x
    for layer, desired, reduction in zip(scratch_layers(model), keras_outputs, reductions):
        h = layer.forward(h)
        assert_close(h, desired, label=f"small CNN {layer.name}", reduction=reduction)
    final = keras_outputs[-1]
    np.testing.assert_array_equal(np.argmax(h, axis=1), np.argmax(final, axis=1))
    assert_close(h, np.asarray(model(x)), label="small CNN vs model(x)", reduction=9 * 72)
