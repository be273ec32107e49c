"""The engine installs on its own: numpy and h5py, no TensorFlow, and it runs a committed model."""

import subprocess
import sys
import venv
from pathlib import Path

import pytest

import parity
import scratch
from tests.support import build_project_wheel

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "weights" / "cnn_b3_f32_k5_max.h5"

PROBE = f"""
import sys
import numpy as np
import scratch
model = scratch.load({str(MODEL)!r})
x = np.random.default_rng(0).normal(size=(3, 32, 32, 1)).astype("float32")
y = model.predict(x)
assert y.shape == (3, 10), y.shape
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras", "sklearn", "scipy"))
assert not heavy, heavy
print(scratch.__version__)
"""


@pytest.fixture(scope="module")
def engine_only_venv(tmp_path_factory):
    """A fresh venv holding the project's wheel and its declared core dependencies only."""
    tmp = tmp_path_factory.mktemp("engine_only")
    wheel = build_project_wheel(tmp)
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], check=True, cwd=tmp)
    return python


@pytest.mark.slow
def test_engine_installs_and_predicts_without_tensorflow(engine_only_venv, tmp_path):
    listed = subprocess.run([str(engine_only_venv), "-m", "pip", "list", "--format=freeze"],
                            capture_output=True, text=True, check=True).stdout.lower()
    assert "tensorflow" not in listed and "keras==" not in listed
    # Run from an empty folder so that the checkout on sys.path cannot stand in for the installed wheel.
    done = subprocess.run([str(engine_only_venv), "-c", PROBE], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == scratch.__version__


@pytest.mark.slow
def test_parity_without_the_keras_extra_names_the_extra(engine_only_venv, tmp_path):
    done = subprocess.run([str(engine_only_venv), "-m", "parity", "check", str(MODEL)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "keras-parity[keras]" in done.stderr and "extra" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "cannot read" not in done.stderr and MODEL.name not in done.stderr   # the file is not to blame


def test_both_packages_have_one_version():
    assert scratch.__version__ == parity.__version__
    assert scratch.__version__.count(".") == 2
