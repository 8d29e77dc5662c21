"""Rules of the code's shape that a reviewer would otherwise check by hand (docs/architecture.md).

Why a test: each rule was broken before someone wrote it down — 292-line page builders, three IoU
implementations with different edge rules, variant names in seven places — and a rule nobody checks
erodes again.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("studio", "rfdetr_core")
MAX_FUNCTION_LINES = 60


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))


def _functions(path: Path) -> list[tuple[str, int, int]]:
    """(qualified name, first line, length) of every function; a nested function counts in its parent."""
    found: list[tuple[str, int, int]] = []

    def visit(node: ast.AST, prefix: str, inside_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                if not inside_function:
                    length = child.end_lineno - child.lineno + 1
                    found.append((f"{prefix}{child.name}", child.lineno, length))
                visit(child, f"{prefix}{child.name}.", True)
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.", inside_function)
            else:
                visit(child, prefix, inside_function)

    visit(ast.parse(path.read_text(encoding="utf-8")), "", False)
    return found


def test_no_function_is_longer_than_a_screen() -> None:
    too_long = [
        f"{path.relative_to(REPO)}:{line} {name} ({length} lines)"
        for path in _sources()
        for name, line, length in _functions(path)
        if length > MAX_FUNCTION_LINES
    ]
    assert not too_long, "functions over 60 lines:\n" + "\n".join(too_long)


def test_the_length_rule_sees_nested_functions(tmp_path: Path) -> None:
    body = "\n".join(f"        x{i} = {i}" for i in range(70))
    sample = tmp_path / "sample.py"
    sample.write_text(f"def outer():\n    def inner():\n{body}\n    return inner\n")
    assert _functions(sample) == [("outer", 1, 73)]


def test_pages_never_reach_below_the_services() -> None:
    """Pages talk to services; only services talk to the store's sessions and to rfdetr_core."""
    offenders = []
    for path in sorted((REPO / "studio" / "pages").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if re.search(r"^\s*(from|import) rfdetr_core\b", text, re.M) or ".session(" in text:
            offenders.append(path.name)
    assert not offenders, offenders


def test_services_know_nothing_of_gradio() -> None:
    offenders = [
        str(p.relative_to(REPO))
        for p in sorted((REPO / "studio" / "services").rglob("*.py"))
        if re.search(r"^\s*(from|import) gradio\b", p.read_text(encoding="utf-8"), re.M)
    ]
    assert not offenders, offenders


def test_one_numpy_iou() -> None:
    """Pairwise IoU is written once per array library (rfdetr_core/ops/boxes.py)."""
    pattern = re.compile(r"np\.(minimum|maximum)\([^)]*\[:, None, (2:|:2)\]")
    homes = {str(p.relative_to(REPO)) for p in _sources() if pattern.search(p.read_text(encoding="utf-8"))}
    assert homes == {"rfdetr_core/ops/boxes.py"}, homes


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff_is_clean(command: list[str]) -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is part of the test extra"
    result = subprocess.run([ruff, *command, "."], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
