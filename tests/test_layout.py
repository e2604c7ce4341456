"""The layout of ``sendmail/``: subpackages by capability, imports running one way.

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``); these tests run the same
``lint-imports`` as ``make lint``, show it refusing an upward import, and check what a contract
cannot: each subpackage's docstring, and no Functions SDK anywhere in the domain.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
SUBPACKAGES = ("platform", "contract", "sending", "admission", "feedback")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_tree_keeps_every_import_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """The packages the contracts name, and the contracts, in a scratch directory."""
    for package in ("sendmail", "api", "orchestrators", "activities", "devhost"):
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize(
    ("module", "upward_import", "reported"),
    [
        # The composition root imported from the bottom layer.
        ("platform/tables.py", "from sendmail import services", "sendmail.services"),
        # The contract importing the engine (an early draft had models -> mime).
        ("contract/models.py", "from sendmail.sending import mime", "sendmail.sending.mime"),
        # Two capabilities that must stay independent of each other.
        ("feedback/sns.py", "from sendmail.admission import backlog", "sendmail.admission"),
        # The engine reaching up into feedback.
        ("sending/runner.py", "from sendmail.feedback import suppression", "sendmail.feedback"),
    ],
)
def test_an_upward_import_breaks_the_contract(
    tree_copy: Path, module: str, upward_import: str, reported: str
) -> None:
    path = tree_copy / "sendmail" / module
    source = path.read_text()
    anchor = "from __future__ import annotations\n"
    path.write_text(source.replace(anchor, f"{anchor}\n{upward_import}  # noqa: F401\n", 1))

    result = lint_imports(tree_copy)

    assert result.returncode != 0
    assert "1 broken" in result.stdout
    assert reported in result.stdout


def test_the_domain_importing_the_app_breaks_the_contract(tree_copy: Path) -> None:
    path = tree_copy / "sendmail" / "sending" / "jobs.py"
    path.write_text(path.read_text() + "\nfrom activities import names  # noqa: E402, F401\n")

    result = lint_imports(tree_copy)

    assert result.returncode != 0
    assert "sendmail.sending.jobs -> activities" in result.stdout


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_every_subpackage_says_what_it_owns_and_may_import(name: str) -> None:
    doc = ast.get_docstring(ast.parse((ROOT / "sendmail" / name / "__init__.py").read_text()))
    assert doc is not None
    assert "Owns:" in doc
    assert "May import:" in doc


def test_every_subpackage_is_a_layer_of_the_contract() -> None:
    on_disk = {p.parent.name for p in (ROOT / "sendmail").glob("*/__init__.py")}
    assert on_disk == set(SUBPACKAGES)


def test_the_domain_imports_no_functions_sdk() -> None:
    """``azure.functions`` and ``azure.durable_functions`` belong to the app around the domain
    (import-linter cannot forbid part of the external ``azure`` namespace, so it is read here)."""
    offenders = []
    for path in sorted((ROOT / "sendmail").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [
                f"{path.relative_to(ROOT)}: {n}"
                for n in names
                if n.split(".")[:2] in (["azure", "functions"], ["azure", "durable_functions"])
            ]
    assert offenders == []
