"""The exit-code contract of ``parity``: 1 only when parity was computed and failed; every failure to
read or understand the input, and every internal error (said so), is exit 2 with one stderr line and
no traceback unless ``--debug``. All refused before TensorFlow starts, so no Keras model is built here."""

import numpy as np
import pytest

from parity import cli
from parity.fuzz_cases import SEEDS


def _run(argv, capsys):
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err.strip().splitlines()


def test_internal_error_is_exit_2_saying_so(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "load_scratch", broken)
    rc, _, err = _run(["check", SEEDS / "k3_mlp.h5"], capsys)
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("parity: internal error (a bug in parity or scratch, not in your input): "
                             "RuntimeError: boom (rerun with --debug")
    rc, _, err = _run(["check", SEEDS / "k3_mlp.h5", "--debug"], capsys)
    assert rc == 2 and err[0] == "Traceback (most recent call last):" and "RuntimeError: boom" in err[-2]


def test_max_memory_refuses_before_allocating(capsys):
    rc, _, err = _run(["check", SEEDS / "k3_mlp.h5", "--max-memory", "100"], capsys)
    assert rc == 2 and len(err) == 1 and "beyond the memory budget of 100 bytes" in err[0]
    rc, _, err = _run(["check", SEEDS / "k3_mlp.h5", "--max-memory", "lots"], capsys)
    assert rc == 2 and "expected bytes or a size like 512M or 2G" in err[0]


@pytest.mark.parametrize("make, match", [
    (lambda p: np.save(p, np.zeros(1)), None),
    (lambda p: np.savez(p, tokens=np.full((2, 6), 10 ** 12)), r"outside \[-2147483648, 2147483647\]"),
    (lambda p: np.savez(p, tokens=np.zeros((0, 6), np.int32)), r"holds no samples"),
])
def test_hostile_inputs_npz_is_exit_2(tmp_path, capsys, make, match):
    path = tmp_path / "x.npz"
    make(path)
    target = path if path.exists() else tmp_path / "x.npy"
    rc, _, err = _run(["check", SEEDS / "k3_text.keras", "--inputs", target], capsys)
    assert rc == 2 and len(err) == 1 and err[0].startswith("parity: error: --inputs")
    if match:
        import re

        assert re.search(match, err[0]), err[0]


def test_npz_member_declaring_a_huge_array_is_refused_from_its_header(tmp_path, capsys):
    import zipfile

    header = np.lib.format.header_data_from_array_1_0(np.zeros((2, 6), np.int32))
    header["shape"] = (10 ** 6, 10 ** 6)
    with zipfile.ZipFile(tmp_path / "x.npz", "w") as zf, zf.open("tokens.npy", "w") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(b"\0" * 48)
    rc, _, err = _run(["check", SEEDS / "k3_text.keras", "--inputs", tmp_path / "x.npz"], capsys)
    assert rc == 2 and "declares shape (1000000, 1000000)" in err[0]
