"""The import rules of architecture.md, checked on every run: the layers of .importlinter
(shared layers import no app, each app only what stands below it, nothing imports
moderation), and the tests' own rule: helpers come from helper modules, never from
conftest.py or another test module."""

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent


def test_every_import_keeps_to_the_layers_of_architecture_md():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--config", str(ROOT / ".importlinter"), "--no-cache"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _is_test_module(module: str) -> bool:
    return module.rsplit(".", 1)[-1].startswith("test_") or module.endswith(".conftest")


def test_no_test_module_imports_from_conftest_or_another_test_module():
    graph = grimp.build_graph("tests", include_external_packages=False)
    wrong = sorted(
        f"{module} imports {imported}"
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if _is_test_module(imported)
    )
    assert wrong == []
