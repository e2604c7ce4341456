"""Small Azure Tables helpers for the service's own tables: keys from text, a lazy table.

Keys (:func:`table_key`): table keys may not hold ``/ \\ # ?`` or control characters, and
``' %`` and friends are fragile in the URLs and filters that carry keys. Everything outside
``[A-Za-z0-9._:-]`` is escaped as ``~XX`` per UTF-8 byte, so distinct texts give distinct keys
and the order of plain ASCII keys is kept. A key whose escaped form is longer than
:data:`MAX_PLAIN_KEY` (table keys are at most 1 KiB) is stored as ``~H`` + SHA-256 instead
(``H`` is not a hex digit: no collision with an escape). The send ledger's keys are these.

Tables (:class:`LazyTable`): created on first use, Azure errors turned into
:class:`TableUnavailable`. Azure SDK imports happen inside the functions.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from azure.data.tables import TableClient

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_KEY_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:")
#: 512 ASCII characters fit a table key however it is counted (UTF-8 or UTF-16).
MAX_PLAIN_KEY = 512


def escape(value: str) -> str:
    """``value`` with every character outside ``[A-Za-z0-9._:-]`` written as ``~XX`` bytes."""
    out: list[str] = []
    for char in value:
        if char in _KEY_SAFE:
            out.append(char)
        else:
            out.extend(f"~{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
    return "".join(out)


def table_key(value: str) -> str:
    """A partition or row key for ``value``: its escape, or a hash when that is too long."""
    escaped = escape(value)
    if len(escaped) <= MAX_PLAIN_KEY:
        return escaped
    return "~H" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


class TableUnavailable(Exception):
    """A table of the service could not be read or written (or is not configured)."""


class LazyTable:
    """A ``TableClient`` whose table is created on first use; Azure errors become
    :class:`TableUnavailable` (with the operation and HTTP status, no secret)."""

    def __init__(self, client: TableClient) -> None:
        from sendmail.platform.storage import CreatedOnce

        self.client = client
        self._created = CreatedOnce(client.create_table, f"the table {client.table_name}")

    def call(
        self,
        operation: str,
        action: Callable[[], _T],
        *,
        passthrough: tuple[type[Exception], ...] = (),
    ) -> _T:
        """``action()`` on the (created) table; ``passthrough`` errors are raised as they are."""
        from azure.core.exceptions import AzureError

        from sendmail.platform.storage import azure_error_text

        try:
            self.ensure()
            return action()
        except passthrough:
            raise
        except AzureError as e:
            raise TableUnavailable(
                f"{operation} failed on table {self.client.table_name}: {azure_error_text(e)}"
            ) from e

    def ensure(self) -> None:
        """Create the table unless this client already did (once per process; racing
        creators and an existing table are fine). Azure errors are raised as they are."""
        self._created.ensure()
