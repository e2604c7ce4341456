"""A real Azurite (the Azure Storage emulator) on loopback, from the repo's ``node_modules``.

Install it once with ``npm ci`` at the repository root (``package.json`` pins the version).
A missing install fails the tests that need it, loudly: they are never skipped.

- ``azurite``: session-scoped, the table service only (``azurite-table``, in memory).
- ``azurite_all``: session-scoped, blob + queue + table in one process (``azurite``).
- ``start_azurite(services)``: the context manager both use, for scripts and benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from devhost.emulators.azurite import (
    ACCOUNT_KEY,
    ACCOUNT_NAME,
    BIN_DIR,
    HOST,
    REPO_ROOT,
    SERVICES,
    Azurite,
    AzuriteNotInstalled,
    start_azurite,
)

__all__ = [
    "ACCOUNT_KEY",
    "ACCOUNT_NAME",
    "BIN_DIR",
    "HOST",
    "REPO_ROOT",
    "SERVICES",
    "Azurite",
    "AzuriteNotInstalled",
    "start_azurite",
]


def _fixture(services: Sequence[str]) -> Iterator[Azurite]:
    try:
        with start_azurite(services) as azurite:
            yield azurite
    except AzuriteNotInstalled as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite's table service on 127.0.0.1 (a free port), in memory, for the whole session."""
    yield from _fixture(("table",))


@pytest.fixture(scope="session")
def azurite_all() -> Iterator[Azurite]:
    """Azurite's blob, queue and table services in one process, for the whole session."""
    yield from _fixture(SERVICES)
