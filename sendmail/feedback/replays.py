"""SNS notifications already acted on, by ``MessageId``: a replay changes nothing.

SNS signs a message once, and the signature never expires (the verifier does not judge a
message's age: SNS redelivers for as long as its delivery policy says). So a genuine Bounce
captured once can be posted again at any time. Events are stored idempotently, but the
suppression list is not a log: an address an operator removed (it is known to be good again)
would be put back by a replay of the bounce that first listed it. So:

- **What is recorded**: the ``MessageId`` of each notification once everything it caused is
  done (suppression, events) — :meth:`ProcessedMessages.remember` is the last step of
  :func:`sendmail.feedback.intake.act`.
- **What it does**: a notification whose id is recorded is acknowledged (200) and nothing else:
  no suppression, no event. SNS's own redelivery of a message the route already answered is the
  same case, and is as harmless.
- **The window that stays**: a crash after the suppression and before the record leaves the id
  unrecorded; SNS's redelivery then acts again — exactly what the first delivery did, the one
  case where an operator's removal in between would be undone.
- **Layout** (``SendMailSnsMessages``): ``PartitionKey`` = the UTC day of the notification's
  signed ``Timestamp`` (so the retention purge drops whole days), ``RowKey`` = the
  ``MessageId`` (:func:`~sendmail.platform.tables.table_key`). A replay carries the same signed
  timestamp, so it finds the same row.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from sendmail.platform.tables import LazyTable, TableUnavailable, table_key

if TYPE_CHECKING:
    from azure.data.tables import TableClient

DEFAULT_TABLE_NAME = "SendMailSnsMessages"


class ReplayStoreError(TableUnavailable):
    """The record of processed SNS messages could not be read or written."""


class ProcessedMessages(Protocol):
    def seen(self, message_id: str, timestamp: str) -> bool:
        """Whether the notification ``message_id`` (signed at ``timestamp``) was acted on."""
        ...

    def remember(self, message_id: str, timestamp: str) -> None:
        """Record that the notification was acted on (idempotent)."""
        ...


def _partition(timestamp: str) -> str:
    """The day of an SNS ``Timestamp`` (``2026-12-01T10:00:00.000Z`` -> ``2026-12-01``)."""
    day = timestamp[:10]
    return table_key(day if len(day) == 10 else "undated")


class MemoryProcessedMessages:
    """In-process record (tests and development without storage)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: set[tuple[str, str]] = set()

    def seen(self, message_id: str, timestamp: str) -> bool:
        with self._lock:
            return (_partition(timestamp), message_id) in self._ids

    def remember(self, message_id: str, timestamp: str) -> None:
        with self._lock:
            self._ids.add((_partition(timestamp), message_id))


class TableProcessedMessages:
    """The record in an Azure Table (one row per notification, see the module docs)."""

    def __init__(self, table: TableClient) -> None:
        self._table = LazyTable(table)

    def seen(self, message_id: str, timestamp: str) -> bool:
        from azure.core.exceptions import ResourceNotFoundError

        def read() -> bool:
            try:
                self._table.client.get_entity(
                    _partition(timestamp), table_key(message_id), select=["PartitionKey"]
                )
            except ResourceNotFoundError:
                return False
            return True

        try:
            return self._table.call("read", read)
        except TableUnavailable as e:
            raise ReplayStoreError(str(e)) from e

    def remember(self, message_id: str, timestamp: str) -> None:
        from azure.data.tables import UpdateMode

        entity = {"PartitionKey": _partition(timestamp), "RowKey": table_key(message_id)}
        try:
            self._table.call(
                "upsert", lambda: self._table.client.upsert_entity(entity, mode=UpdateMode.REPLACE)
            )
        except TableUnavailable as e:
            raise ReplayStoreError(str(e)) from e


def processed_messages_from_environment(
    env: Mapping[str, str] = os.environ, *, table_name: str = DEFAULT_TABLE_NAME
) -> TableProcessedMessages:
    """The record in the host's own storage (``AzureWebJobsStorage`` and friends)."""
    from sendmail.platform.storage import StorageUnavailable, table_client

    try:
        return TableProcessedMessages(table_client(table_name, env))
    except StorageUnavailable as e:
        raise ReplayStoreError(f"the SNS message record is unavailable: {e}") from e
