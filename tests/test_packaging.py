"""Packaging metadata matches the code: every third-party import of nda/ is declared, the version has one
source, ``py.typed`` ships, and ``.[dev]`` installs what the tests import.

Why: an undeclared import works in the developer's venv and fails in a user's fresh one; two version strings
drift. The imports are read with ``ast`` (lazy ones inside functions included) and mapped to distributions
through the installed packages' metadata.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCAL = {"nda", "tasks", "benchmarks", "examples", "conftest", "__future__"}


def _norm(name: str) -> str:
    """PEP 503 name: ``Pillow`` / ``scikit_learn`` -> ``pillow`` / ``scikit-learn``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(requirements: list[str]) -> set[str]:
    return {_norm(re.match(r"[A-Za-z0-9_.\-]+", r.strip()).group(0)) for r in requirements}


DEPENDENCIES = _requirement_names(PYPROJECT["project"]["dependencies"])
EXTRAS = {k: _requirement_names(v) for k, v in PYPROJECT["project"].get("optional-dependencies", {}).items()}


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Inside ``try: ... except ImportError`` (an optional import with its own fallback or message)."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
            or isinstance(h.type, ast.Tuple) and any(getattr(e, "id", "") == "ImportError" for e in h.type.elts)
            for h in node.handlers
        ):
            return True
    return False


def third_party_imports(folder: Path) -> dict[str, list[tuple[str, bool, bool]]]:
    """top-level module -> [(file:line, at module level, optional)] for non-stdlib imports; optional: guarded by
    ``except ImportError`` or named in a ``pytest.importorskip`` of the same file."""
    found: dict[str, list[tuple[str, bool, bool]]] = {}
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        skippable = {n.args[0].value.split(".")[0] for n in ast.walk(tree)  # pytest.importorskip("x"): optional
                     if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "importorskip" and n.args
                     and isinstance(n.args[0], ast.Constant) and isinstance(n.args[0].value, str)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            top_level = not any(isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef)) for p in _chain(node, parents))
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in LOCAL:
                    continue
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                found.setdefault(top, []).append((where, top_level, top in skippable or _guarded(node, parents)))
    return found


def _chain(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> list[ast.AST]:
    out = []
    while node in parents:
        node = parents[node]
        out.append(node)
    return out


@functools.lru_cache(maxsize=1)
def _module_owners() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()  # scans every installed distribution: once


def distributions(module: str) -> set[str]:
    """The installed distributions that provide the top-level ``module``."""
    return {_norm(d) for d in _module_owners().get(module, [])}


def test_every_third_party_import_of_nda_is_declared():
    """Module-level imports need a hard dependency (``import nda.x`` must work after ``pip install nda``);
    imports inside functions may come from an extra."""
    optional = set().union(*EXTRAS.values())
    problems = []
    for module, sites in sorted(third_party_imports(ROOT / "nda").items()):
        dists = distributions(module)
        if not dists and all(guarded for _, _, guarded in sites) and module in optional:
            continue  # an optional import with its own message, declared in an extra under its own name
        if not dists:
            problems.append(f"{module} ({sites[0][0]}): not installed, so its distribution is unknown")
            continue
        needed = any(top and not guarded for _, top, guarded in sites)
        declared = DEPENDENCIES if needed else DEPENDENCIES | optional
        if not dists & declared:
            kind = "dependencies" if needed else "dependencies or an extra"
            problems.append(f"{module} ({sites[0][0]}) is provided by {sorted(dists)}, not declared in {kind}")
    assert not problems, "pyproject.toml misses imports of nda/:\n" + "\n".join(problems)


def test_the_checker_sees_lazy_module_level_and_guarded_imports(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(
        "import os\nimport numpy as np\ntry:\n    import yaml\nexcept ImportError:\n    yaml = None\n"
        "def f():\n    from tqdm.auto import tqdm\n"
        "def test_g():\n    pytest.importorskip('scipy.stats')\n    import scipy.stats\n")
    found = third_party_imports(tmp_path / "pkg")
    assert found == {"numpy": [("pkg/m.py:2", True, False)], "yaml": [("pkg/m.py:4", True, True)],
                     "tqdm": [("pkg/m.py:8", False, False)], "scipy": [("pkg/m.py:11", False, True)]}


def test_version_has_one_source():
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project.get("dynamic", []), "pyproject.toml writes the version"
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "nda.__version__"}
    tree = ast.parse((ROOT / "nda" / "__init__.py").read_text())
    values = [n.value.value for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
              and any(getattr(t, "id", "") == "__version__" for t in n.targets)]
    assert len(values) == 1 and re.fullmatch(r"\d+\.\d+\.\d+\S*", values[0]), values  # a literal setuptools can read
    others = [str(p.relative_to(ROOT)) for p in (ROOT / "nda").rglob("*.py")
              if p.name != "__init__.py" or p.parent.name != "nda"
              if re.search(r"^__version__\s*=", p.read_text(), re.M)]
    assert not others, f"__version__ is written again in {others}"


def test_py_typed_ships():
    assert (ROOT / "nda" / "py.typed").is_file()
    data = PYPROJECT["tool"]["setuptools"].get("package-data", {})
    assert "py.typed" in data.get("nda", []) + data.get("*", [])


def test_extras_and_dev_covers_the_tests():
    assert {"plots", "tensorboard", "fid", "dev"} <= set(EXTRAS)
    assert "matplotlib" not in DEPENDENCIES and EXTRAS["plots"] <= EXTRAS["dev"]  # the GAN job test checks its plot
    test_imports = third_party_imports(ROOT / "tests")
    missing = []
    for module, sites in sorted(test_imports.items()):
        if all(guarded for _, _, guarded in sites):
            continue
        if not distributions(module) & (DEPENDENCIES | EXTRAS["dev"]):
            missing.append(f"{module} ({sites[0][0]})")
    assert not missing, f"tests import packages that neither the dependencies nor .[dev] install: {missing}"
