"""The send ledger: what an activity already sent, so a retried batch does not send it again.

No SES send call takes an idempotency token, and Durable activities run at least once: an
activity retried by ``RetryOptions`` or re-run after a host crash would mail the same people
again. The activity asks the ledger first and records every success as it goes::

    key = f"{instance_id}:{first:010d}"      # unique per batch: its first recipient's index
    done = ledger.sent(key)                   # recipient index within the batch -> Message-ID
    for index, recipient in enumerate(batch):
        if index in done:
            continue                          # sent by an earlier attempt: report done[index]
        message_id = send(recipient)
        ledger.record(key, index, message_id)

What is guaranteed, and what is not:

- A recipient whose ``record`` returned is never sent again by a later attempt of the same
  batch. The one window left is *after* the provider accepted a message and *before* its
  ``record`` returned (a crash, a lost connection, a ledger error): that recipient is sent again.
  Nothing closes that window without a provider-side idempotency token; the ledger shrinks it
  from "the whole batch" to "one recipient per crash".
- If ``record`` raises after a send, the mail is out: the caller should report that recipient as
  sent (it has the Message-ID) and not pretend it failed.
- Two attempts of the same batch running *at the same time* (which Durable does not do on its
  own) are not serialised: both may send. The ledger is a record, not a lock.

``record_many`` writes up to 100 records of one key in one round trip. A caller that buffers
records to use it widens the window above to "every record not yet flushed": that is the
caller's explicit choice, and the default path (``record`` per recipient) does not buffer at all.

**Every recipient's outcome.** The ledger is also where a send's per-recipient results live:
``record_failures`` writes the recipients that failed for good (code and message), so a batch's
partition says, for each recipient, sent (with its Message-ID), failed, or — nothing — not
decided yet. ``outcomes`` reads them (a whole batch, or a range of it); a failure never hides a
success: a recipient with a Message-ID anywhere in its batch's partition is *sent*.
Batch keys are ``{instance}:{first recipient's index in the send, 10 digits}``, so a send's
partitions sort in request order and the recipients route pages through them in that order.

**Rows.** ``record`` writes one row per recipient (row key: its index in the batch, 10 digits;
``MessageId``). ``record_many`` and ``record_failures`` write one *group row* per up to 100
recipients (row key ``g`` + the group's lowest index + a random suffix; ``Sent``: a JSON object
index -> Message-ID, or ``Failed``: index -> [code, message]): one entity, one upsert. An entity
group transaction of 100 one-recipient rows costs about 30 times the CPU of one 100-recipient
entity in azure-data-tables (measured: 33 ms against 1.1 ms), and the ledger's writes were the
largest part of what a recipient costs (docs/benchmarks.md). ``outcomes`` reads the batch's
partition whole and keeps the range asked for: a few dozen rows for an SES batch of 5,000 with
group commit, one row per recipient where each is recorded on its own (SMTP, or
``SENDMAIL_LEDGER_GROUP_MS=0``).

Privacy: the ledger stores no addresses. The partition key is the batch key, the row keys are
indices within the batch, and the properties besides ``CreatedAt`` are Message-IDs, or failures'
codes and messages (written by this service: no server text, no secret).

Retention: every batch is one partition whose key starts with the instance id, so one range
query over the partition keys finds every batch of a send: ``purge(instance_id, limit)`` deletes
them a page at a time (:mod:`sendmail.retention` calls it until it answers 0). Keys whose escaped
form is too long for a table key (only very long or non-ASCII instance ids: this service's ids
are 32 hex digits) are stored under a hash and are not reached by ``purge``; they cost a few
hundred bytes each and can be dropped with the whole table.

Azure SDK imports (``azure.data.tables``, ``azure.identity``) happen inside functions, so that
importing this module stays cheap for code that only needs :class:`MemorySendLedger`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from sendmail.platform.tables import LazyTable, escape, table_key

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableClient

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TABLE_NAME",
    "LedgerError",
    "LedgerUnavailable",
    "MemorySendLedger",
    "Recorded",
    "SendLedger",
    "TableSendLedger",
    "ledger_from_environment",
]

#: The table the Functions app's ledger lives in, in the host's own storage account.
DEFAULT_TABLE_NAME = "SendMailLedger"

# Keys are escaped as sendmail.platform.tables.table_key does: ~XX per UTF-8 byte outside
# [A-Za-z0-9._:-], ~H + SHA-256 when the escaped key is longer than 512 characters.
_ROW_KEY_WIDTH = 10
_MAX_INDEX = 10**_ROW_KEY_WIDTH - 1
# An entity group transaction holds at most 100 operations.
_TRANSACTION_LIMIT = 100
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")


@dataclass(frozen=True, slots=True)
class Recorded:
    """What the ledger holds for one recipient: a Message-ID (sent), else a failure."""

    message_id: str | None = None
    code: str | None = None
    message: str | None = None

    @property
    def sent(self) -> bool:
        return self.message_id is not None


class LedgerError(Exception):
    """The send ledger could not be read or written. Do not send what it could not confirm."""


class LedgerUnavailable(LedgerError):
    """No storage is configured for the send ledger (or its settings are unusable)."""


@runtime_checkable
class SendLedger(Protocol):
    """A durable record of the recipients an orchestration batch has already been sent to."""

    def sent(self, key: str) -> dict[int, str]:
        """Recipient index within the batch -> Message-ID, for every record under ``key``."""
        ...

    def record(self, key: str, index: int, message_id: str) -> None:
        """Record one successful send. Calling it again for the same index is harmless."""
        ...

    def record_many(self, key: str, records: Mapping[int, str]) -> None:
        """Record several sends of one batch in as few round trips as the store allows."""
        ...

    def record_failures(self, key: str, failures: Mapping[int, tuple[str, str]]) -> None:
        """Record recipients that failed for good: index -> (code, message). A recipient
        already recorded as sent stays sent."""
        ...

    def outcomes(self, key: str, first: int = 0, stop: int | None = None) -> dict[int, Recorded]:
        """Index -> what is recorded, for the indices ``first`` .. ``stop - 1`` of the batch
        (all by default); an index without a record is not decided yet."""
        ...


def _check_record(key: str, index: int, message_id: str) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError("ledger key must be a non-empty string")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= _MAX_INDEX:
        raise ValueError(f"recipient index must be an int in 0..{_MAX_INDEX}")
    if not isinstance(message_id, str) or not message_id:
        raise ValueError("message id must be a non-empty string")


def _check_failure(key: str, index: int, code: str, message: str) -> None:
    _check_record(key, index, "-")
    if not isinstance(code, str) or not code or not isinstance(message, str):
        raise ValueError("a failure needs a code and a message")


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError("ledger key must be a non-empty string")


class MemorySendLedger:
    """A process-local ledger for tests and the devhost. Thread-safe; lost when the process ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, dict[int, Recorded]] = {}

    def sent(self, key: str) -> dict[int, str]:
        _check_key(key)
        with self._lock:
            rows = self._records.get(key, {})
            return {i: r.message_id for i, r in rows.items() if r.message_id is not None}

    def record(self, key: str, index: int, message_id: str) -> None:
        _check_record(key, index, message_id)
        with self._lock:
            self._records.setdefault(key, {})[index] = Recorded(message_id=message_id)

    def record_many(self, key: str, records: Mapping[int, str]) -> None:
        for index, message_id in records.items():
            _check_record(key, index, message_id)
        with self._lock:
            rows = self._records.setdefault(key, {})
            rows.update((i, Recorded(message_id=m)) for i, m in records.items())

    def record_failures(self, key: str, failures: Mapping[int, tuple[str, str]]) -> None:
        for index, (code, message) in failures.items():
            _check_failure(key, index, code, message)
        with self._lock:
            rows = self._records.setdefault(key, {})
            for index, (code, message) in failures.items():
                if index not in rows or not rows[index].sent:
                    rows[index] = Recorded(code=code, message=message)

    def outcomes(self, key: str, first: int = 0, stop: int | None = None) -> dict[int, Recorded]:
        _check_key(key)
        with self._lock:
            rows = self._records.get(key, {})
            return {
                i: r for i, r in sorted(rows.items()) if i >= first and (stop is None or i < stop)
            }

    def purge(self, instance_id: str, limit: int | None = None) -> int:
        """Drop the records of ``instance_id``'s batches, at most ``limit`` (all by default);
        returns how many were dropped (0: none is left)."""
        _check_key(instance_id)
        prefix = f"{instance_id}:"
        dropped = 0
        with self._lock:
            for key in [key for key in self._records if key.startswith(prefix)]:
                rows = self._records[key]
                for index in sorted(rows):
                    if limit is not None and dropped >= limit:
                        return dropped
                    del rows[index]
                    dropped += 1
                del self._records[key]
        return dropped


def _partition_key(key: str) -> str:
    """The table partition key for a ledger key: injective, and prefix-preserving when short.

    Escaped keys use only ``[A-Za-z0-9._:-]`` and ``~`` + two upper-case hex digits, so
    ``~H`` (H is not a hex digit) cannot collide with them.
    """
    return table_key(key)


def _row_key(index: int) -> str:
    return f"{index:0{_ROW_KEY_WIDTH}d}"


_T = TypeVar("_T")
_I = TypeVar("_I")

#: Records in one group row at most (as many as the runner gathers: ``GroupCommit``).
_GROUP_SIZE = 100
#: A group row's JSON stays well under a string property's 64 KiB (32,768 UTF-16 units).
_GROUP_CHARS = 24_000


def _groups(items: list[_I], weight: Callable[[_I], int]) -> list[list[_I]]:
    """Consecutive groups of at most 100 items whose weights (characters) stay under
    :data:`_GROUP_CHARS`."""
    groups: list[list[_I]] = []
    current: list[_I] = []
    chars = 0
    for item in items:
        size = weight(item) + 24
        if current and (len(current) == _GROUP_SIZE or chars + size > _GROUP_CHARS):
            groups.append(current)
            current, chars = [], 0
        current.append(item)
        chars += size
    if current:
        groups.append(current)
    return groups


def _read_row(entity: Mapping[str, Any], sent: dict[int, str], failed: dict[int, Recorded]) -> bool:
    """Add one ledger row's records to ``sent`` / ``failed``; False if it is malformed."""
    row_key = entity.get("RowKey")
    if not isinstance(row_key, str):
        return False
    if row_key.isascii() and row_key.isdigit():  # one recipient (record)
        message_id, code = entity.get("MessageId"), entity.get("Code")
        if isinstance(message_id, str) and message_id:
            sent.setdefault(int(row_key), message_id)
            return True
        if isinstance(code, str) and code:
            failed.setdefault(int(row_key), Recorded(code=code, message=str(entity.get("Message"))))
            return True
        return False
    try:
        if isinstance(entity.get("Sent"), str):
            for index, message_id in json.loads(entity["Sent"]).items():
                if isinstance(message_id, str) and message_id:
                    sent.setdefault(int(index), message_id)
            return True
        if isinstance(entity.get("Failed"), str):
            for index, (code, message) in json.loads(entity["Failed"]).items():
                failed.setdefault(int(index), Recorded(code=str(code), message=str(message)))
            return True
    except (ValueError, TypeError, AttributeError):
        return False
    return False


class TableSendLedger:
    """The send ledger on Azure Table storage (or Azurite): one partition per batch key.

    Build it with :meth:`from_connection_string`, :meth:`from_endpoint`, or
    :func:`ledger_from_environment`. Construction does no I/O; the table is created on first use.
    Every ``record`` is one upsert, written before it returns (no buffering).
    """

    def __init__(self, table_client: TableClient) -> None:
        if not _TABLE_NAME.match(table_client.table_name):
            raise ValueError(
                "table name must be 3-63 letters and digits, starting with a letter: "
                f"{table_client.table_name!r}"
            )
        self._client = table_client
        self._table = LazyTable(table_client)

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_connection_string(
        cls, connection_string: str, *, table_name: str = DEFAULT_TABLE_NAME, **client_options: Any
    ) -> TableSendLedger:
        """A ledger in the account a storage connection string names (``UseDevelopmentStorage``
        included: see :func:`ledger_from_environment`)."""
        from azure.data.tables import TableClient

        from sendmail.platform.storage import client_options as bounded
        from sendmail.platform.storage import resolve_development_storage

        client = TableClient.from_connection_string(
            resolve_development_storage(connection_string),
            table_name=table_name,
            **bounded(client_options),
        )
        return cls(client)

    @classmethod
    def from_endpoint(
        cls,
        endpoint: str,
        credential: TokenCredential,
        *,
        table_name: str = DEFAULT_TABLE_NAME,
        **client_options: Any,
    ) -> TableSendLedger:
        """A ledger at a table service URI (``https://{account}.table.core.windows.net``),
        authenticated with a Microsoft Entra token credential (managed identity)."""
        from azure.data.tables import TableClient

        from sendmail.platform.storage import client_options as bounded

        client = TableClient(
            endpoint=endpoint,
            table_name=table_name,
            credential=credential,
            **bounded(client_options),
        )
        return cls(client)

    @property
    def table_client(self) -> TableClient:
        """The underlying client (its ``url``, ``table_name`` and ``credential``)."""
        return self._client

    # --- the SendLedger protocol -------------------------------------------------------------
    def sent(self, key: str) -> dict[int, str]:
        return {i: r.message_id for i, r in self.outcomes(key).items() if r.message_id is not None}

    def outcomes(self, key: str, first: int = 0, stop: int | None = None) -> dict[int, Recorded]:
        _check_key(key)
        partition = _partition_key(key)
        sent: dict[int, str] = {}
        failed: dict[int, Recorded] = {}

        def read() -> None:
            entities = self._client.query_entities(
                "PartitionKey eq @pk",
                parameters={"pk": partition},
                select=["RowKey", "MessageId", "Code", "Message", "Sent", "Failed"],
            )
            for entity in entities:
                if not _read_row(entity, sent, failed):
                    logger.warning("Ignoring a malformed send-ledger row in one partition")

        self._call("read", read)
        found: dict[int, Recorded] = {i: Recorded(message_id=m) for i, m in sent.items()}
        for index, failure in failed.items():
            found.setdefault(index, failure)
        return {i: found[i] for i in sorted(found) if i >= first and (stop is None or i < stop)}

    def record(self, key: str, index: int, message_id: str) -> None:
        _check_record(key, index, message_id)
        from azure.data.tables import UpdateMode

        entity = self._entity(_partition_key(key), index, message_id)
        self._call("write", lambda: self._client.upsert_entity(entity, mode=UpdateMode.REPLACE))

    def record_many(self, key: str, records: Mapping[int, str]) -> None:
        """One group row per up to 100 records: each row is written whole or not at all."""
        for index, message_id in records.items():
            _check_record(key, index, message_id)
        groups = _groups(sorted(records.items()), lambda item: len(item[1]))
        self._write_groups(key, "Sent", [{str(i): m for i, m in group} for group in groups])

    def record_failures(self, key: str, failures: Mapping[int, tuple[str, str]]) -> None:
        """One group row per up to 100 failures (fewer when their messages are long). A
        recipient recorded as sent stays sent: readers let a Message-ID win."""
        for index, (code, message) in failures.items():
            _check_failure(key, index, code, message)
        groups = _groups(sorted(failures.items()), lambda item: len(item[1][0]) + len(item[1][1]))
        self._write_groups(
            key, "Failed", [{str(i): [c, m] for i, (c, m) in group} for group in groups]
        )

    def _write_groups(self, key: str, field: str, groups: list[dict[str, Any]]) -> None:
        from azure.data.tables import UpdateMode

        partition = _partition_key(key)
        for group in groups:
            lowest = min(int(i) for i in group)
            entity = {
                "PartitionKey": partition,
                "RowKey": f"g{_row_key(lowest)}.{uuid.uuid4().hex[:12]}",
                field: json.dumps(group, separators=(",", ":"), ensure_ascii=False),
                "CreatedAt": datetime.now(UTC),
            }
            self._call(
                "write", partial(self._client.upsert_entity, entity, mode=UpdateMode.REPLACE)
            )

    # --- retention -----------------------------------------------------------------------------
    def purge(self, instance_id: str, limit: int | None = None) -> int:
        """Delete the records of ``instance_id``'s batches (keys ``{instance_id}:...``): all of
        them, or the rows that hold about ``limit`` (a page; a group row's records go whole).

        One range query over the partition keys, then one transaction per 100 rows of a batch.
        Returns how many records were deleted (a row counts at least one: 0 means none is
        left). Batches stored under a hashed key (see the module docs) are not reached.
        """
        _check_key(instance_id)
        low = escape(f"{instance_id}:")
        high = low[:-1] + ";"  # ':' + 1: every key that starts with low sorts below it
        rows: dict[str, list[str]] = {}
        records = 0

        def scan() -> None:
            nonlocal records
            entities = self._client.query_entities(
                "PartitionKey ge @low and PartitionKey lt @high",
                parameters={"low": low, "high": high},
                select=["PartitionKey", "RowKey", "Sent", "Failed"],
                results_per_page=min(limit, 1000) if limit else None,
            )
            for entity in entities:
                if limit is not None and records >= limit:
                    break
                rows.setdefault(str(entity["PartitionKey"]), []).append(str(entity["RowKey"]))
                group = entity.get("Sent") or entity.get("Failed")
                try:
                    records += max(1, len(json.loads(group))) if isinstance(group, str) else 1
                except ValueError:  # a malformed group row is deleted all the same
                    records += 1

        self._call("read", scan)
        for partition, row_keys in rows.items():
            for start in range(0, len(row_keys), _TRANSACTION_LIMIT):
                chunk = row_keys[start : start + _TRANSACTION_LIMIT]
                operations = [("delete", {"PartitionKey": partition, "RowKey": rk}) for rk in chunk]
                self._call("purge", partial(self._client.submit_transaction, operations))
        return records

    # --- internals -----------------------------------------------------------------------------
    @staticmethod
    def _entity(partition: str, index: int, message_id: str) -> dict[str, Any]:
        return {
            "PartitionKey": partition,
            "RowKey": _row_key(index),
            "MessageId": message_id,
            "CreatedAt": datetime.now(UTC),
        }

    def _call(self, operation: str, action: Callable[[], _T]) -> _T:
        from azure.core.exceptions import AzureError

        from sendmail.platform.storage import azure_error_text

        try:
            self._table.ensure()
            return action()
        except AzureError as e:
            raise LedgerError(
                f"send ledger {operation} failed on table {self._client.table_name}: "
                f"{azure_error_text(e)}"
            ) from e


def ledger_from_environment(
    env: Mapping[str, str] = os.environ,
    *,
    connection: str = "AzureWebJobsStorage",
    table_name: str = DEFAULT_TABLE_NAME,
) -> SendLedger:
    """The Table ledger in the storage the Functions host itself uses.

    Read in this order (``connection`` is ``AzureWebJobsStorage`` unless told otherwise):

    1. ``{connection}``: a connection string; ``UseDevelopmentStorage=true`` means Azurite on
       ``127.0.0.1:10002`` (or ``DevelopmentStorageProxyUri``).
    2. ``{connection}__tableServiceUri``: identity-based, with ``{connection}__credential=
       managedidentity`` and ``{connection}__clientId`` (user-assigned identity); without
       ``__credential``, ``DefaultAzureCredential``.
    3. ``{connection}__accountName``: identity-based at ``https://{name}.table.core.windows.net``.

    Raises :class:`LedgerUnavailable` when none is set. Builds clients only: no network I/O.
    """
    from sendmail.platform.storage import StorageUnavailable, table_client

    try:
        return TableSendLedger(table_client(table_name, env, connection=connection))
    except StorageUnavailable as e:
        raise LedgerUnavailable(f"the send ledger cannot be used: {e}") from e
