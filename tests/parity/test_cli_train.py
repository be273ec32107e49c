"""``parity grad`` and ``parity train``: exit codes 0/1/2, tables, --report/--junit, training config use."""

import json

import numpy as np
import pytest

from parity.cli import main
from scratch import optimizers as O
from scratch.layers import pooling


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A compiled Keras 3 CNN saved with its training config (RMSprop, sparse CCE on softmax)."""
    import keras

    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(3, 3, activation="relu"),
                          keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
                          keras.layers.Dense(4, activation="softmax")])
    m.compile(optimizer=keras.optimizers.RMSprop(0.01), loss="sparse_categorical_crossentropy")
    path = tmp_path_factory.mktemp("cli") / "cnn.h5"
    m.save(path)
    return path


def test_grad_passes_with_report_and_junit(model_file, tmp_path, capsys):
    code = main(["grad", model_file, "--samples", "4", "--report", tmp_path / "rep", "--junit", tmp_path / "j.xml"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASS: 5/5 weight gradients within tolerance" in out and "/kernel" in out
    report = json.loads((tmp_path / "rep" / "grad.json").read_text())
    assert report["passed"] and len(report["rows"]) == 5
    assert 'tests="5" failures="0"' in (tmp_path / "j.xml").read_text()


def test_train_uses_the_file_setup_and_passes(model_file, capsys):
    code = main(["train", model_file, "--steps", "3", "--batch-size", "4", "--no-truth"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "RMSprop(" in out and "PASS: 3/3 steps agree" in out


def test_max_pool_tie_sent_to_the_wrong_cell_fails_grad(model_file, tmp_path, capsys, monkeypatch):
    """Integer-valued inputs tie inside pooling windows; routing a tie to the last maximum is caught."""
    def last_of_ties(self, dout):   # the fixture's 2x2/stride-2 pool, each tie sent to the LAST maximum
        image, y = self._cache[:2]
        n, _, _, c = image.shape
        oh, ow = y.shape[1:3]
        win = image[:, :2 * oh, :2 * ow].reshape(n, oh, 2, ow, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, oh, ow, 4, c)
        last = 3 - np.argmax(win[:, :, :, ::-1], axis=3)
        dwin = np.zeros_like(win)
        np.put_along_axis(dwin, last[:, :, :, None], np.asarray(dout)[:, :, :, None], axis=3)
        dx = np.zeros_like(image)
        dx[:, :2 * oh, :2 * ow] = dwin.reshape(n, oh, ow, 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(
            n, 2 * oh, 2 * ow, c)
        return dx

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "xy.npz", x=rng.integers(0, 2, (4, 6, 6, 1)).astype("float32"), y=rng.integers(0, 4, 4))
    assert main(["grad", model_file, "--inputs", tmp_path / "xy.npz", "--no-truth"]) == 0
    monkeypatch.setattr(pooling.MaxPooling2D, "backward", last_of_ties)
    code = main(["grad", model_file, "--inputs", tmp_path / "xy.npz", "--no-truth"])
    out = capsys.readouterr().out
    assert code == 1 and "first diverging weight:" in out, out
    assert any(line.startswith("input:") and "FAIL" in line for line in out.splitlines()), out


def test_broken_update_rule_fails_train(model_file, capsys, monkeypatch):
    def no_epsilon(self, name, g, w, lr):   # RMSprop with epsilon outside the square root
        v = self.slots["velocity"][name]
        v[...] = w.dtype.type(self.rho) * v + w.dtype.type(1 - self.rho) * np.square(g)
        w -= (lr * g) / (np.sqrt(v) + w.dtype.type(self.epsilon * 1e3))

    monkeypatch.setattr(O.RMSprop, "update_step", no_epsilon)
    code = main(["train", model_file, "--steps", "2", "--batch-size", "4"])
    out = capsys.readouterr().out
    assert code == 1 and "first failing step: 1" in out


@pytest.mark.parametrize("argv,match", [
    (["grad", "missing.h5"], "missing.h5: no such file"),
    (["grad", "{model}", "--samples", "0"], "--samples must be >= 1"),
    (["grad", "{model}", "--loss", "kl_divergence"], "--loss: Unsupported loss: 'kl_divergence'"),
    (["train", "{model}", "--optimizer", "lion"], "--optimizer 'lion' is not supported"),
    (["train", "{model}", "--learning-rate", "-1"], "--learning-rate must be > 0"),
    (["train", "{model}", "--steps", "0"], "--steps and --batch-size must be >= 1"),
    (["grad", "{model}", "--inputs", "{noy}"], "no array 'y'"),
])
def test_bad_input_exits_2(model_file, tmp_path, capsys, argv, match):
    np.savez(tmp_path / "noy.npz", x=np.zeros((2, 6, 6, 1), "float32"))
    argv = [a.format(model=model_file, noy=tmp_path / "noy.npz") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1
