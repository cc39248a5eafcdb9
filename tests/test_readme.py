"""The README's core snippet runs as written, and its first bash block holds the two set-up commands CI runs."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def test_core_snippet_runs():
    snippet = _blocks("python")[0]
    assert "nda.build" in snippet
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    neg, x = namespace["neg"], namespace["x"]
    assert neg.shape == x.shape and neg.dtype == x.dtype and not (neg == x).all()


def test_first_bash_block_has_the_main_job_and_the_test_command():
    lines = [line for line in _blocks("bash")[0].splitlines() if line.strip()]
    assert len(lines) == 2
    assert "tasks/tour.py" in lines[0] and "pip install" in lines[0] and ".[demo]" in lines[0]
    assert "pytest" in lines[1] and ".[dev]" in lines[1]
