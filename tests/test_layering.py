"""Imports only point down the layers (README "Layers"): a module that imports upward fails here.

    core (nda/*.py: base, registry, compose, sampling, distributions, files, distributed, reporting)
      <- vision | text                      (never each other)
      <- objectives                         (logits / embeddings only: no pixels, no strings)
      <- metrics | integrations | models | data | run
      <- cli, jobs (nda/jobs: jobs never import jobs), tasks/ (shims), benchmarks/

Every import statement counts, including lazy ones inside functions (registry entries are strings, not
imports, which is how core can name the built-in negatives without importing them).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYER = {
    "core": 0,
    "vision": 1, "text": 1,
    "objectives": 2,
    "metrics": 3, "integrations": 3, "models": 3, "data": 3, "run": 3,
    "cli": 4, "__main__": 4, "jobs": 4,
}


def _area(module: str) -> str:
    """``nda.vision.jigsaw`` -> ``vision``; ``nda.base`` -> ``core``; ``nda.run`` -> ``run``."""
    parts = module.split(".")
    if parts[0] != "nda":
        return ""
    if len(parts) == 1:
        return "core"
    second = parts[1]
    if (ROOT / "nda" / second).is_dir() or second in LAYER:
        return second
    return "core"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            here = ROOT / node.module.replace(".", "/")
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names
                      if (here / a.name).is_dir() or (here / f"{a.name}.py").is_file()]
    return found


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


PACKAGE_FILES = sorted((ROOT / "nda").rglob("*.py"))


def _violations(here: str, imports: list[tuple[int, str]]) -> list[str]:
    bad = []
    for line, target in imports:
        there = _area(target)
        if not there or there == here:
            continue
        if LAYER[there] > LAYER[here] or (LAYER[there] == LAYER[here] == 1):
            bad.append(f"line {line}: {here} imports {target} ({there})")
    return bad


@pytest.mark.parametrize("path", PACKAGE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_package_imports_point_down(path):
    bad = _violations(_area(_module_name(path)), _imports(path))
    assert not bad, f"{path.relative_to(ROOT)} imports upward or sideways:\n" + "\n".join(bad)


def test_the_checker_finds_upward_sideways_and_lazy_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import torch\nfrom nda.base import Negative\n"
                     "def f():\n    from nda.models.gan import EMA\n    import nda.text.shuffle\n")
    bad = _violations("vision", _imports(probe))
    assert [b.split(":")[0] for b in bad] == ["line 4", "line 5"]
    assert _violations("models", _imports(probe)) == []


JOB_FILES = sorted((ROOT / "nda" / "jobs").glob("*.py"))


@pytest.mark.parametrize("path", JOB_FILES + sorted((ROOT / "tasks").glob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_jobs_never_import_jobs_or_patch_sys_path(path):
    text = path.read_text()
    assert "sys.path.insert" not in text and "sys.path.append" not in text, f"{path.name} patches sys.path"
    jobs = {p.stem for p in JOB_FILES} - {"__init__"}
    own = f"nda.jobs.{path.stem}" if path.parent.name in ("jobs", "tasks") else None
    for line, target in _imports(path):
        top = target.split(".")[0]
        assert top != "tasks" and top not in jobs, f"{path.name}:{line} imports the job {target}"
        if target.startswith("nda.jobs.") and target != own:
            raise AssertionError(f"{path.name}:{line} imports the job {target}")


def test_a_shim_is_its_job():
    """``tasks/<job>.py`` only runs or re-exports ``nda.jobs.<job>``: a job lives in one place."""
    for shim in sorted((ROOT / "tasks").glob("*.py")):
        imported = {target for _, target in _imports(shim) if target.startswith("nda.")}
        assert imported == {"nda.jobs", f"nda.jobs.{shim.stem}"}, f"{shim.name} imports {sorted(imported)}"
        assert len(shim.read_text().splitlines()) <= 12, f"{shim.name} is more than a shim"


def test_tests_mirror_the_package():
    """tests/<area>/ for every nda/<area>/ (tests/core for nda/*.py), plus tests/tasks for the jobs and
    tests/reliability for adversarial cases that cross areas (bad files, interrupted runs, odd inputs)."""
    areas = {p.name for p in (ROOT / "nda").iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    areas = {"tasks" if a == "jobs" else a for a in areas}  # the jobs' tests are tests/tasks
    folders = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    assert areas | {"core", "tasks", "reliability"} == folders, f"package areas {sorted(areas)} vs test folders {sorted(folders)}"
    stray = [p.name for p in (ROOT / "tests").glob("test_*.py") if p.name not in ("test_layering.py", "test_readme.py", "test_packaging.py")]
    assert not stray, f"tests outside an area folder: {stray}"
