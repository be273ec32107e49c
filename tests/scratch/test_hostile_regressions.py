"""Fuzz cases that once failed, pinned: each raised a foreign exception (h5py, zipfile, json, NumPy or
plain Python), hit RecursionError or MemoryError, or let smuggled code through to another error, on
the engine before the hostile-input work (one case per distinct failure site of a 1,000-case
``python -m parity.fuzz`` run). Replayed by the fuzzer itself, in its child processes with limits;
each must now run or raise the project's own error (``code`` cases: an UnsupportedLayerError)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

ONCE_FAILED = [
    "config_random:62", "config_random:63", "config_targeted:10", "config_random:5", "config_random:17",
    "config_targeted:31", "config_targeted:0", "zip_struct:0", "config_targeted:1", "deep_json:2", "code:0",
    "config_targeted:57", "code:41", "code:2", "config_targeted:14", "code:33", "code:10", "h5_struct:1",
    "config_targeted:17", "zip_struct:8", "bitflip:51", "zip_struct:20", "deep_json:1", "bitflip:5",
    "bitflip:8", "h5_struct:11", "h5_struct:19", "zip_struct:6", "inputs:29", "config_random:58", "code:3",
    "config_random:40", "config_random:61", "config_random:30", "code:17", "code:36", "code:14",
    "h5_struct:6", "config_targeted:5", "config_targeted:3", "config_targeted:63", "inputs:10", "code:45",
    "h5_struct:15",
    "graph:10", "graph:13",   # 3,000-layer graphs shuffled and reversed: the old quadratic sweep ran past 30 s
    "config_random:66", "config_random:86",   # found on the new engine: a layer called on no tensor (KeyError)
    "config_random:101",   # found on the new engine: a tensor index beyond the outputs of its layer call
]


def test_cases_that_once_failed_now_pass():
    proc = subprocess.run([sys.executable, "-m", "parity.fuzz", "--only", ",".join(ONCE_FAILED)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAILED" not in proc.stdout
    total = proc.stdout.splitlines()[-1].split()
    assert total[0] == "total" and int(total[1]) == len(ONCE_FAILED)
