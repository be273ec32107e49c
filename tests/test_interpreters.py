"""The engine computes the same bits on every Python that ``requires-python`` admits.

The harness (TensorFlow, Keras, the reports) is tested on the interpreter that runs this suite. The
engine alone is installed from the project's wheel into a fresh venv of each other claimed version
(numpy and h5py at their pinned versions, from the package registry), and ``engine_probe.py`` runs
there: committed models in both file formats, float32 and float64 predictions, and two seeded epochs
of training. Its arrays must equal, bit for bit, what the same probe computes in this process: the
numpy build and its BLAS are the same, so any difference is the interpreter's.

Interpreters are looked up as ``pythonX.Y`` on PATH, then under pyenv's versions; PARITY_PYTHONS
(paths separated by ':') overrides the search. A claimed version that cannot be found fails: the
claim in pyproject.toml is only as good as this test.
"""

import glob
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support import build_project_wheel

ROOT = Path(__file__).resolve().parents[1]
PROBE = Path(__file__).with_name("engine_probe.py")
OTHER_VERSIONS = ("3.12", "3.13")


def _claimed_range():
    text = (ROOT / "pyproject.toml").read_text()
    return re.search(r'^requires-python\s*=\s*"([^"]+)"', text, re.M).group(1)


def _interpreter(version):
    """The path of a working Python `version` interpreter on this machine, or None."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = [p for p in os.environ.get("PARITY_PYTHONS", "").split(":") if p]
    candidates += [shutil.which(f"python{version}")]
    candidates += sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}"), reverse=True)
    for path in filter(None, candidates):
        # A pyenv shim is on PATH even when that version is not selected; ask each one what it is.
        done = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip() == version:
            return path
    return None


def _load_probe():
    # Loaded from its file: putting tests/ on sys.path would let tests/scratch shadow the engine.
    spec = importlib.util.spec_from_file_location("engine_probe", PROBE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_requires_python_names_exactly_the_tested_versions():
    assert sys.version_info[:2] == (3, 11), "the harness side is tested on 3.11; update OTHER_VERSIONS"
    assert _claimed_range() == ">=3.11,<3.14", _claimed_range()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return build_project_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def expected():
    return _load_probe().probe(ROOT / "weights")


@pytest.fixture(scope="module")
def probe_runs(wheel, tmp_path_factory):
    """Install the wheel and run the probe under every other version at once (mostly pip's waiting)."""
    runs = {}
    for version in OTHER_VERSIONS:
        python = _interpreter(version)
        if python is None:
            runs[version] = None
            continue
        tmp = tmp_path_factory.mktemp(f"py{version}")
        env_dir, out = tmp / "venv", tmp / "probe.npz"
        env_python = env_dir / "bin" / "python"
        # -P keeps the probe's own folder (tests/, holding tests/scratch) off sys.path.
        script = (f"{shlex.quote(python)} -m venv {shlex.quote(str(env_dir))} && "
                  f"{env_python} -m pip install --quiet --disable-pip-version-check {shlex.quote(str(wheel))} && "
                  f"{env_python} -P {shlex.quote(str(PROBE))} {shlex.quote(str(ROOT / 'weights'))} {out}")
        runs[version] = (env_dir, out, subprocess.Popen(["bash", "-c", script], cwd=tmp, text=True,
                                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    return {v: None if r is None else (r[0], r[1], r[2].wait(), r[2].stdout.read()) for v, r in runs.items()}


@pytest.mark.slow
@pytest.mark.parametrize("version", OTHER_VERSIONS)
def test_engine_gives_the_same_bits_on(version, probe_runs, expected):
    assert probe_runs[version], (f"pyproject.toml claims Python {version} but no python{version} was found on "
                                 "PATH or under pyenv; install it or point PARITY_PYTHONS at it")
    env_dir, out, returncode, output = probe_runs[version]
    assert returncode == 0, output
    got = np.load(out)
    assert str(got["__python__"]).startswith(version + ".")
    assert str(env_dir) in str(got["__engine__"]), "the probe must run the installed wheel, not the checkout"
    for key, want in expected.items():
        have = got[key.replace("/", "|")]
        assert have.dtype == want.dtype and np.array_equal(have, want), f"{key} differs on Python {version}"
    assert len(got.files) == len(expected) + 2
