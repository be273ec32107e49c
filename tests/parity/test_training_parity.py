"""N-step training parity (scratch trainer vs Keras train_on_batch) and whole-model gradient parity,
on a small CNN built here and on one committed reference model; broken update rules must fail."""

import os
from pathlib import Path

import numpy as np
import pytest

import scratch
from parity import keras_runner as kr
from parity.gradients import compare_gradients
from parity.training import training_parity
from scratch import losses as L
from scratch import optimizers as O
from tests.support import swapped_adam_bias_correction

WEIGHTS = Path(__file__).resolve().parents[2] / "weights"


@pytest.fixture(scope="module")
def small_cnn(tmp_path_factory):
    """Conv -> BN -> MaxPool -> Flatten -> Dense softmax (the grid's shape, tiny), as a Keras 3 .h5."""
    import keras

    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                          keras.layers.BatchNormalization(), keras.layers.MaxPooling2D(2),
                          keras.layers.Flatten(), keras.layers.Dense(5, activation="softmax")])
    path = tmp_path_factory.mktemp("cnn") / "small.h5"
    m.save(path)
    return path


def _batches(steps, n=8, seed=0):
    rng = np.random.default_rng(seed)
    return [([rng.normal(size=(n, 8, 8, 1)).astype("float32")], rng.integers(0, 5, n), None) for _ in range(steps)]


def _run(path, optimizer, config, steps=4, truth=True):
    sm = scratch.load(path)
    t = scratch.load(path).to_dtype("float64") if truth else None
    return training_parity(kr.load_model(path), sm, _batches(steps), L.SparseCategoricalCrossentropy(), optimizer,
                           config, truth=t)


THOROUGH = os.environ.get("HYPOTHESIS_PROFILE") == "thorough"
_ALL = [("SGD", {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True}),
        ("Adam", {"learning_rate": 0.01, "amsgrad": True}),
        ("AdamW", {"learning_rate": 0.01, "weight_decay": 0.1}),
        ("RMSprop", {"learning_rate": 0.01, "centered": True, "momentum": 0.5}),
        ("Adagrad", {"learning_rate": 0.05}),
        ("Nadam", {"learning_rate": 0.01, "clipnorm": 0.5})]


# Each optimizer costs Keras a compile and a traced train step (~10 s here): one by default, all six
# under HYPOTHESIS_PROFILE=thorough (the update rules themselves are all tested in test_optimizers).
@pytest.mark.parametrize("optimizer,config", _ALL if THOROUGH else [_ALL[3]])
def test_steps_agree_per_optimizer(small_cnn, optimizer, config):
    result = _run(small_cnn, optimizer, config)
    assert result["passed"], result["steps"]
    assert all(r["within_budget"] for r in result["steps"]), "drift beyond the budget on a well-conditioned net"


def test_swapped_adam_bias_correction_fails(small_cnn, monkeypatch):
    monkeypatch.setattr(O.Adam, "update_step", swapped_adam_bias_correction)
    result = _run(small_cnn, "Adam", {"learning_rate": 0.01}, steps=2)
    assert not result["passed"] and result["first_failing_step"] == 1
    assert not result["steps"][0]["attributed_to_rounding"]   # the float64 run shares the bug: no excuse


def test_committed_cnn_gradients_and_steps():
    path = WEIGHTS / "cnn_b2_f16_k3_max.h5"
    sm, km = scratch.load(path), kr.load_model(path)
    rng = np.random.default_rng(0)
    x = rng.random((4, *sm.input_shapes[0][1:])).astype("float32")
    y = rng.integers(0, 10, 4)
    grads = compare_gradients(km, sm, [x], y, L.SparseCategoricalCrossentropy())
    assert grads["passed"], grads["first_diverging"]
    steps = training_parity(km, scratch.load(path), [([x], y, None)] * 3, L.SparseCategoricalCrossentropy(), "Adam",
                            {"learning_rate": 1e-3})
    assert steps["passed"]


def test_committed_captioner_masked_loss_gradients():
    """Teacher forcing with the masked loss: sample weight = target != pad, tokens 0-padded."""
    path = WEIGHTS / "cap_rnn1_init.h5"
    sm, km = scratch.load(path), kr.load_model(path)
    rng = np.random.default_rng(1)
    (img_shape, tok_shape) = [s[1:] for s in sm.input_shapes]
    steps, vocab = tok_shape[0], sm.output_shapes[0][-1]
    lengths = rng.integers(2, steps + 1, 4)
    tokens = np.where(np.arange(steps) < lengths[:, None], rng.integers(1, vocab, (4, steps)), 0).astype("int32")
    target = np.where(np.arange(steps) < lengths[:, None] - 1, rng.integers(1, vocab, (4, steps)), 0)
    images = rng.random((4, *img_shape)).astype("float32")
    result = compare_gradients(km, sm, [images, tokens], target, L.SparseCategoricalCrossentropy(from_logits=True),
                               sample_weight=(target != 0).astype("float32"))
    assert result["passed"], result["first_diverging"]
