"""The import direction is the architecture: scratch knows no Keras, keras_ref knows no scratch."""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRATCH_ALLOWED = {"numpy", "h5py"} | set(sys.stdlib_module_names)


def imported_modules(path):
    """Top-level module names imported by a Python file (relative imports excluded)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in (
            "import_module", "__import__"
        ) and node.args and isinstance(node.args[0], ast.Constant):
            yield str(node.args[0].value).split(".")[0], node.lineno


def violations(package, allowed=None, forbidden=()):
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for module, line in imported_modules(path):
            if module == package:
                continue
            if (allowed is not None and module not in allowed) or module in forbidden:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return found


def test_scratch_imports_only_numpy_h5py_and_stdlib():
    assert violations("scratch", allowed=SCRATCH_ALLOWED) == []


def test_keras_ref_never_imports_scratch():
    assert violations("keras_ref", forbidden={"scratch"}) == []


@pytest.mark.parametrize("source, bad", [
    ("import tensorflow as tf\n", "tensorflow"),
    ("from keras import layers\n", "keras"),
    ("import importlib\nimportlib.import_module('tf_keras')\n", "tf_keras"),
])
def test_rule_catches_forbidden_imports(tmp_path, source, bad):
    # The checker itself must be able to fail.
    path = tmp_path / "mod.py"
    path.write_text(source)
    assert bad in {m for m, _ in imported_modules(path)}
    assert bad not in SCRATCH_ALLOWED
