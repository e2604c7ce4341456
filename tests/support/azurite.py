"""A real Azurite (the Azure Storage emulator) on loopback, from the repo's ``node_modules``.

Install it once with ``npm ci`` at the repository root (``package.json`` pins the version).
A missing install fails the tests that need it, loudly: they are never skipped.

- ``azurite``: session-scoped, the table service only (``azurite-table``, in memory).
- ``azurite_all``: session-scoped, blob + queue + table in one process (``azurite``).
- ``start_azurite(services)``: the context manager both use, for scripts and benchmarks.
- ``fresh_table(azurite, prefix)``: a client for a table of a new name (created on first use).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from azure.data.tables import TableClient

__all__ = [
    "ACCOUNT_KEY",
    "ACCOUNT_NAME",
    "BIN_DIR",
    "HOST",
    "REPO_ROOT",
    "SERVICES",
    "Azurite",
    "AzuriteNotInstalled",
    "fresh_table",
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


def fresh_table(azurite: Azurite, prefix: str) -> TableClient:
    """A client for the table ``{prefix}{12 hex digits}`` in ``azurite``: a name no other test
    uses, so tests sharing the session's Azurite never see each other's rows."""
    from azure.data.tables import TableClient

    return TableClient.from_connection_string(
        azurite.connection_string, table_name=prefix + uuid.uuid4().hex[:12]
    )
