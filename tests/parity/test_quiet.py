"""``parity check`` prints no TensorFlow, absl or CUDA lines unless ``--verbose`` asks for them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "weights" / "cnn_b2_f16_k3_max.h5"


def _check(*flags):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PARITY_VERBOSE")}
    return subprocess.run([sys.executable, "-m", "parity", *flags, "check", str(MODEL), "--samples", "2"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


@pytest.mark.slow
def test_stderr_is_empty_by_default_and_verbose_shows_tensorflow():
    quiet = _check()
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert quiet.stderr == ""
    assert "PASS" in quiet.stdout
    loud = _check("--verbose")
    assert loud.returncode == 0
    assert "oneDNN" in loud.stderr or "absl" in loud.stderr or "cuda" in loud.stderr.lower()
