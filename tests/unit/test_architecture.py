"""The shape of the code, checked like behaviour: layers, imports at module level, module size.

* ``lint-imports`` holds the layer contract of ``.importlinter`` (web > balancing > changes >
  vms > hosts > numaportal core > numaportal.virt). ``make test`` runs it too; here it also
  fails a plain ``pytest`` run.
* No project module imports another project module inside a function: such an import hides a
  dependency from the contract (it is how import cycles used to be dodged). Django's
  ``AppConfig.ready()`` is the one documented exception.
* No module is over ~500 lines unless its first docstring says why ("Why this is long:").
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = ("numaportal", "hosts", "vms", "changes", "balancing", "web")
#: (file, function) pairs allowed to import project code inside a function, and why.
FUNCTION_IMPORTS_ALLOWED = {
    # Django loads AppConfig modules before the app registry is ready; ready() is where
    # signal handlers and the Celery app are imported (Django's documented place).
    ("numaportal/apps.py", "ready"),
    # ... and where balancing registers its policy lookup with changes (the hot-add hook,
    # changes.kinds.policy_hook): changes may not import balancing, which is above it.
    ("balancing/apps.py", "ready"),
}
MAX_LINES = 500
LONG_REASON = "Why this is long:"


def _sources(*tops: str) -> list[Path]:
    files = []
    for top in tops:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "migrations" not in path.parts:
                files.append(path)
    return files


def _project_import(node: ast.AST) -> str | None:
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        name = node.module
    elif isinstance(node, ast.Import):
        name = node.names[0].name
    else:
        return None
    return name if name.split(".")[0] in PROJECT_PACKAGES else None


def _imports_in_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        rel = path.relative_to(ROOT).as_posix()
        if (rel, func.name) in FUNCTION_IMPORTS_ALLOWED:
            continue
        for node in ast.walk(func):
            name = _project_import(node)
            if name is not None:
                found.append(f"{rel}:{node.lineno} imports {name} inside {func.name}()")
    return found


def test_the_layer_contract_holds() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "lint-imports (import-linter) is not installed in this virtualenv"
    result = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_no_project_import_hides_inside_a_function() -> None:
    offenders = [
        line for path in _sources(*PROJECT_PACKAGES) for line in _imports_in_functions(path)
    ]
    assert offenders == []


def test_the_checker_finds_an_import_inside_a_function(tmp_path: Path) -> None:
    probe = ROOT / "hosts" / "_probe_for_test.py"
    try:
        probe.write_text("def f():\n    from vms.models import VirtualMachine\n    return 1\n")
        assert _imports_in_functions(probe) == [
            "hosts/_probe_for_test.py:2 imports vms.models inside f()"
        ]
    finally:
        probe.unlink()


def test_no_module_is_long_without_saying_why() -> None:
    long_silent = []
    for path in _sources(*PROJECT_PACKAGES, "bench", "tests"):
        text = path.read_text()
        lines = text.count("\n")
        if lines <= MAX_LINES:
            continue
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if LONG_REASON not in docstring:
            long_silent.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert long_silent == []
