"""What a deployment ships: ``.funcignore`` keeps dev tools and local state out of the package."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def ignored() -> set[str]:
    lines = (ROOT / ".funcignore").read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


@pytest.mark.parametrize(
    "path",
    [
        ".devhost",  # local state: a dev sealing key, function key, TLS key, outbox with addresses
        "local.settings.json",  # local secrets
        "devhost",
        "tests",
        "bench",
        "infra",
        "node_modules",
        ".venv*",
        ".git*",
    ],
)
def test_dev_only_paths_are_never_deployed(path: str) -> None:
    assert path in ignored()


@pytest.mark.parametrize(
    "path", ["function_app.py", "host.json", "requirements.txt", "api", "sendmail"]
)
def test_the_app_itself_is_deployed(path: str) -> None:
    assert path not in ignored()
    assert (ROOT / path).exists()
