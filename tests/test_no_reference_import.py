"""``rfdetr_core`` must never import the reference ``rfdetr`` package (it is a test oracle only)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    import rfdetr_core
    failed = []
    for info in pkgutil.walk_packages(rfdetr_core.__path__, prefix="rfdetr_core."):
        try:
            importlib.import_module(info.name)
        except Exception as exc:  # report every broken module, not only the first
            failed.append(f"{info.name}: {type(exc).__name__}: {exc}")
    leaked = sorted(m for m in sys.modules if m == "rfdetr" or m.startswith("rfdetr."))
    print("LEAKED", leaked)
    print("FAILED", failed)
    print("COUNT", sum(1 for m in sys.modules if m.startswith("rfdetr_core")))
    """
)


def test_importing_every_rfdetr_core_module_never_loads_the_reference():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = dict(
        line.split(" ", 1)
        for line in result.stdout.splitlines()
        if line.split(" ", 1)[0] in {"LEAKED", "FAILED", "COUNT"}
    )
    assert lines["LEAKED"] == "[]", lines["LEAKED"]
    assert lines["FAILED"] == "[]", lines["FAILED"]
    assert int(lines["COUNT"]) > 5  # the walk really imported the package's modules


def test_model_modules_do_not_mention_the_reference_package_in_imports():
    """A static check too: a lazy ``import rfdetr`` inside a function would escape the walk above."""
    import ast
    from pathlib import Path

    import rfdetr_core

    root = Path(rfdetr_core.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(root)}: {n}" for n in names if n == "rfdetr" or n.startswith("rfdetr.")
            ]
    assert offenders == []
