"""``parity check`` on a model that amplifies its own rounding: the amplified-rounding judge
(``parity.amplified``), as ``make zoo`` uses it, decides; ``--no-keras-truth`` and ``--atol/--rtol``
leave the direct rule alone; a wrong scratch layer still fails; a model without a float64 twin keeps
the direct verdict and says why."""

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from parity.cli import main

JUDGED = "passed by the amplified-rounding judge"


@pytest.fixture(scope="module")
def amplifying(tmp_path_factory):
    """4096 * (tanh(x W) - tanh(x (W + 2^-12))): a difference of two nearly equal tanh values,
    magnified. The inputs and weights are small dyadic numbers, so every pre-activation is exact in
    float32 and the only rounding is tanh's own (TF's float32 tanh is up to ~3 ulp, NumPy's ~1.2),
    which the cancellation lifts 40x beyond the direct rule at ``zoom`` while Keras float32 misses
    Keras float64 there by as much."""
    keras = pytest.importorskip("keras")
    L = keras.layers
    folder = tmp_path_factory.mktemp("amplified")
    inp = keras.Input((16,), name="x")
    a = L.Dense(32, activation="tanh", name="a")(inp)
    b = L.Dense(32, activation="tanh", name="b")(inp)
    model = keras.Model(inp, L.Rescaling(4096.0, name="zoom")(L.Subtract(name="diff")([a, b])))
    rng = np.random.default_rng(0)
    w = (rng.integers(-8, 9, size=(16, 32)) / 16).astype("float32")
    model.get_layer("a").set_weights([w, np.zeros(32, "float32")])
    model.get_layer("b").set_weights([w + np.float32(2 ** -12), np.zeros(32, "float32")])
    model.save(folder / "amp.keras")
    np.savez(folder / "x.npz", x=rng.integers(-3, 4, size=(8, 16)).astype("float32"))
    return folder


def _check(folder, capsys, *extra):
    rc = main(["check", str(folder / "amp.keras"), "--inputs", str(folder / "x.npz"), *map(str, extra)])
    return rc, capsys.readouterr().out


def _zoom_line(out):
    return next(line for line in out.splitlines() if line.startswith("  3 zoom "))


def test_the_judge_passes_it_with_both_numbers_everywhere_and_the_direct_rule_alone_fails(amplifying, tmp_path,
                                                                                          capsys):
    rc, out = _check(amplifying, capsys, "--report", tmp_path / "rep", "--junit", tmp_path / "j.xml")
    assert rc == 0, out
    line = _zoom_line(out)
    assert f"  ok  {JUDGED}" in line and "Keras float32" in line and "(amplified)" in line
    assert "amplified-rounding judge (Keras's float64 twin) used on the nodes failing the direct rule: vs Keras's " \
           "float64 twin (1 nodes, Keras float32 beyond the rule at 1): " in out
    row = json.loads((tmp_path / "rep" / "parity.json").read_text())["result"]["layers"][3]
    assert row["name"] == "zoom" and row["headroom"] > 10 and row["judged_by"].startswith("float64 truth")
    assert row["vs_truth"]["headroom"] < 0.5 and row["vs_truth"]["keras_headroom"] > 10
    assert JUDGED in (tmp_path / "rep" / "parity.md").read_text()
    assert JUDGED in (tmp_path / "rep" / "index.html").read_text()
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert suite.get("failures") == "0"
    assert JUDGED in suite.find("testcase[@name='003 zoom (Rescaling)']/system-out").text
    assert "float64 twin" in suite.find("properties/property[@name='keras_truth']").get("value")

    for off, why in (("--no-keras-truth", "turned off (--no-keras-truth)"),
                     ("--rtol=1e-6", "not with --atol/--rtol overrides")):
        rc, out = _check(amplifying, capsys, off)
        assert rc == 1 and "first diverging layer: zoom:" in out, out
        assert f"amplified-rounding judge: not used, {why}" in out and JUDGED not in out


def test_a_wrong_layer_fails_even_with_the_judge(amplifying, tmp_path, capsys, monkeypatch):
    """One element of ``zoom`` off by 3x Keras float32's own miss of its float64 twin there."""
    _check(amplifying, capsys, "--report", tmp_path)
    e_k = json.loads((tmp_path / "parity.json").read_text())["result"]["layers"][3]["vs_truth"]["keras_max_abs"]
    from scratch.layers.preprocessing import Rescaling

    original = Rescaling.forward

    def perturbed(self, x, training=False):
        y = np.array(original(self, x, training=training))
        y[5, 7] += np.float32(3 * e_k)
        return y

    monkeypatch.setattr(Rescaling, "forward", perturbed)
    rc, out = _check(amplifying, capsys)
    assert rc == 1 and "first diverging layer: zoom:" in out, out
    assert "fails the float64-truth judge too" in _zoom_line(out) and JUDGED not in out


def test_without_a_float64_twin_the_direct_verdict_stands_and_says_why(amplifying, capsys, monkeypatch):
    from parity import keras_truth

    def refuse(model, x):   # what float64_twin says of a tf_keras model
        raise ValueError("a float64 twin needs a Keras 3 model. Received: tf_keras.src.engine.functional.Functional")

    monkeypatch.setattr(keras_truth, "truth_outputs", refuse)
    rc, out = _check(amplifying, capsys)
    assert rc == 1 and "first diverging layer: zoom:" in out
    assert ("amplified-rounding judge: not used, Keras could not build its float64 twin: ValueError: a float64 twin "
            "needs a Keras 3 model") in out
