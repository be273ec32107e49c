"""The import direction is the architecture: scratch knows no Keras, keras_ref knows no scratch, and
no module imports itself back through others (a cycle, even one hidden in a function-level import,
makes import order matter and the layers meaningless)."""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRATCH_ALLOWED = {"numpy", "h5py"} | set(sys.stdlib_module_names)
PACKAGES = ("scratch", "keras_ref", "parity")


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


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_only_the_entry_points_import_the_cli():
    # parity.cli is the top of the graph: __main__ runs it, the fuzzer drives it; shared pieces live in cli_inputs.
    graph = import_graph()
    assert {m for m, edges in graph.items() if "parity.cli" in edges} <= {"parity.__main__", "parity.fuzz"}


def test_every_name_imported_from_the_project_exists():
    # A function-level `from .suite import _load_dataset` fails only when that function runs: moving code
    # must not leave such an import behind.
    files = module_files()
    assert missing_names(files) == []


def test_the_checkers_can_fail(tmp_path):
    # A two-module cycle through a function-level import, a three-module one through `from . import`,
    # and a function-level import of a name that is not there.
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import f\n\n\ndef g():\n    pass\n")
    (pkg / "b.py").write_text("def f():\n    from .a import g\n")
    (pkg / "c.py").write_text("from . import d\n")
    (pkg / "d.py").write_text("import pkg.e\n")
    (pkg / "e.py").write_text("from pkg import c, a\n")
    graph = import_graph(module_files(tmp_path, ["pkg"]))
    assert graph["pkg.e"] == {"pkg.c", "pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d", "pkg.e"]]
    (pkg / "f.py").write_text("def g():\n    from .a import f, gone\n")
    assert [line.split(": ", 1)[1] for line in missing_names(module_files(tmp_path, ["pkg"]), tmp_path)] == [
        "from pkg.a import gone"]


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


def module_files(root=ROOT, packages=PACKAGES):
    """Dotted module name -> file, for every ``.py`` under the given packages."""
    files = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            files[name] = path
    return files


def _from_base(node, module, is_package):
    """The absolute module a ``from ... import`` reads from (relative levels resolved against ``module``)."""
    if not node.level:
        return node.module
    anchor = module.split(".") if is_package else module.split(".")[:-1]
    anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join(anchor + ([node.module] if node.module else []))


def _targets(node, module, is_package, known):
    """The project modules one import statement names (a ``from pkg import sub`` names ``pkg.sub``)."""
    if isinstance(node, ast.Import):
        bases, names = [alias.name for alias in node.names], []
    else:
        bases, names = [_from_base(node, module, is_package)], [alias.name for alias in node.names]
    for base in bases:
        # `import a.b.c` runs a.b.c; name the longest prefix that is a project module.
        parts = base.split(".")
        while parts and ".".join(parts) not in known:
            parts.pop()
        submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in known]
        if submodules:
            yield from submodules
            if any(f"{base}.{n}" not in known for n in names):
                yield base
        elif parts:
            yield ".".join(parts)


def import_graph(files=None):
    """Module -> set of project modules it imports (itself excluded)."""
    files = module_files() if files is None else files
    graph = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges.update(_targets(node, module, is_package, files))
        edges.discard(module)
        graph[module] = edges
    return graph


def cycles(graph):
    """Every strongly connected component of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def defined_names(path):
    """Names a module defines at its top level (functions, classes, assignments, imports), ``*`` if it
    star-imports or sets ``__getattr__`` (then anything may exist)."""
    names = set()
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.If, ast.Try)):
            names.update(defined_names_in(node))
    return names


def defined_names_in(node):
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, (ast.FunctionDef, ast.ClassDef)):
            found.add(sub.name)
        elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
            found.add(sub.id)
        elif isinstance(sub, (ast.Import, ast.ImportFrom)):
            found.update((a.asname or a.name).split(".")[0] for a in sub.names)
    return found


def missing_names(files, root=ROOT):
    """``file:line: from M import name`` for every name a project module imports from another that
    neither defines it nor has it as a submodule."""
    defined = {m: defined_names(p) for m, p in files.items()}
    found = []
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = _from_base(node, module, is_package)
            if base not in files or "*" in defined[base] or "__getattr__" in defined[base]:
                continue
            for alias in node.names:
                if alias.name != "*" and alias.name not in defined[base] and f"{base}.{alias.name}" not in files:
                    found.append(f"{path.relative_to(root)}:{node.lineno}: from {base} import {alias.name}")
    return found
