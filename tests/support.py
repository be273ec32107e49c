"""Helpers the tests share: random Keras weights, gradient checks, masks, the grid's parameter count."""

import numpy as np

from parity.gradcheck import gradcheck


def randomize_keras_weights(keras_layer, rng, scale=0.5):
    """Give a built Keras layer random weights (so that biases and BN statistics are not trivial)."""
    new = []
    for w in keras_layer.get_weights():
        v = rng.normal(0.0, scale, size=w.shape).astype(w.dtype)
        if "variance" in _weight_name(keras_layer, len(new)):
            v = np.abs(v) + 0.1  # a variance must stay positive
        new.append(v)
    keras_layer.set_weights(new)
    return new


def _weight_name(keras_layer, i):
    return keras_layer.weights[i].name if i < len(keras_layer.weights) else ""


def check_layer_gradients(layer, inputs, *, rng, label, forward_kwargs=None, argnums=None):
    """Centered-difference check of ``layer.backward`` for dx and every weight (``parity.gradcheck``)."""
    return gradcheck(layer, inputs, rng=rng, label=label, forward_kwargs=forward_kwargs, argnums=argnums)


def make_mask(rng, mode, batch, steps):
    """(batch, steps) bool mask, or None for mode 'none'; 'right'/'left' pad one side with random
    lengths 0..steps, 'random' masks steps independently."""
    if mode == "none":
        return None
    if mode == "random":
        return rng.random((batch, steps)) < 0.6
    lengths = rng.integers(0, steps + 1, size=batch)
    t = np.arange(steps)[None, :]
    return t < lengths[:, None] if mode == "right" else t >= (steps - lengths)[:, None]


def expected_grid_params(cfg, cin=1, n_classes=10):
    """A grid CNN's parameter count from the architecture on paper: conv kernels + biases, Dense head."""
    total, k = 0, cfg["kernel"]
    for f in cfg["filters"]:
        total += k * k * cin * f + f
        cin = f
    return total + cin * 64 + 64 + 64 * n_classes + n_classes


def engine_refusals(config):
    """Class names in a Keras config that the engine's own check refuses (its one class table decides)."""
    from scratch.saving.registry import check_model_config

    if "class_name" not in config:
        config = {"class_name": "Functional", "config": config}   # model.get_config() has no wrapper
    return sorted({cls for _, cls, _ in check_model_config(config)})


def swapped_adam_bias_correction(self, name, g, w, lr):
    """Adam's update_step with its two bias corrections swapped: the breakage the training tests must catch."""
    c = w.dtype.type
    t = c(self.iterations + 1)
    b1p, b2p = np.power(c(self.beta_1), t), np.power(c(self.beta_2), t)
    m, v = self.slots["momentum"][name], self.slots["velocity"][name]
    alpha = lr * np.sqrt(c(1) - b1p) / (c(1) - b2p)    # the two corrections swapped
    m += (g - m) * c(1 - self.beta_1)
    v += (np.square(g) - v) * c(1 - self.beta_2)
    w -= (m * alpha) / (np.sqrt(v) + c(self.epsilon))


def build_project_wheel(out_dir):
    """The project's wheel, built from a private copy of its sources into `out_dir`; returns its path.

    setuptools writes build/ and *.egg-info beside the sources it builds. Building from a copy keeps
    two test files that build at once (pytest -n 2) from sharing those folders, and keeps the checkout clean.
    """
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root, out_dir = Path(__file__).resolve().parents[1], Path(out_dir)
    source = out_dir / "source"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in ("scratch", "keras_ref", "parity"):
        shutil.copytree(root / name, source / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(root / name, source / name)
    wheels = out_dir / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    str(source), "-w", str(wheels)], check=True, cwd=out_dir)
    return next(wheels.glob("*.whl"))
