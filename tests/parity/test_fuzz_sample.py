"""A bounded sample of the project's fuzzer (``make fuzz`` runs >= 2,000 cases): every case of every
class either runs or raises the project's own error; CLI cases exit 0/1/2 with one line, no traceback.

It runs in a fresh interpreter: the fuzzer forks one child per case, and forking this test process
(which may hold TensorFlow's threads by now) would not be safe.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_fuzz_sample_has_only_accepted_outcomes():
    proc = subprocess.run([sys.executable, "-m", "parity.fuzz", "--cases", "120", "--cli", "6",
                           "--cli-classes", "code,config_targeted,deep_json,truncate,zip_struct,h5_struct"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[1:]}
    assert int(rows["total"][1]) == 126
    assert {"bitflip", "h5_struct", "config_targeted", "code", "graph", "inputs", "cli-code"} <= set(rows)
    assert "FAILED" not in proc.stdout
