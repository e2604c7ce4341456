"""Fixtures for the infrastructure policy tests: the parsed infra/ directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra.bicep import Project

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA = REPO_ROOT / "infra"


@pytest.fixture(scope="session")
def infra() -> Project:
    project = Project.load(INFRA)
    assert project.files, f"no .bicep file under {INFRA}"
    return project
