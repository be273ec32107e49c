"""Report artifacts are readable by other users (an artifact server), whatever the umask."""

import os
import stat

from parity.report import write_atomic, write_junit

def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)

def test_atomic_writes_are_0644_even_under_a_strict_umask(tmp_path):
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "parity.md", "# report\n")
        result = {"passed": True, "layers": [{"name": "dense", "class_name": "Dense", "depth": 1, "passed": True}],
                  "first_diverging": None}
        write_junit(tmp_path / "parity.xml", "m.h5", result, 0.1)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "parity.md") == 0o644
    assert _mode(tmp_path / "parity.xml") == 0o644
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]
