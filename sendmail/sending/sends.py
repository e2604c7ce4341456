"""The sends table: one record per send, whatever its size.

Written by the starter before the orchestration starts (so a poll that comes before the
orchestrator's first episode finds it), finished by the orchestration's last step. It holds what
the routes need without reading any Durable input or output: the kind, the recipient count, the
plan that says which batch (ledger partition) holds which recipient, where the list and content
are stored, the counts when finished and the times, the caller's ``metadata``, and the send's
**control state**: ``running``, ``paused`` (and by whom: a caller, or the account guard) or
``canceled``, changed only through :meth:`SendsTable.change_control` (optimistic concurrency on
the row's ETag, so two routes changing it at once cannot both win on a stale read). The batch
activities read it between calls (:mod:`sendmail.sending.control`).

**Retention** (:mod:`sendmail.retention`) finds the sends finished before a time
(:meth:`SendsTable.expired`), marks each record ``purging`` (:meth:`SendsTable.mark_purging`)
before it deletes anything else of the send, and deletes the record last. A record being purged
is a send that no longer exists: the routes answer 404 for it, and its control state cannot
change (:meth:`SendsTable.change_control` answers None, as for no record).

Storage: Azure Table ``SendMailSends``, partition key = the send id, row key ``send``. No
address, no content, no secret is stored in it (the caller's metadata is stored as given: the
API tells callers to keep recipients' data and secrets out of it).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

from sendmail.contract.vocabulary import Kind
from sendmail.platform.tables import LazyTable, TableUnavailable, table_key
from sendmail.sending.jobs import Held

if TYPE_CHECKING:
    from azure.data.tables import TableClient

logger = logging.getLogger(__name__)

DEFAULT_TABLE_NAME = "SendMailSends"
_ROW = "send"

#: A send's control state: sending (or waiting for its time), paused, or canceled for good.
ControlState = Literal["running"] | Held
CONTROL_STATES: tuple[ControlState, ...] = ("running", *get_args(Held))
#: Who paused a send: a caller (``/pause``), the account guard (only its reset resumes it), or
#: both (the guard's reset leaves it paused by the caller; a caller's resume waits for the reset).
PausedBy = Literal["caller", "guard", "both"]
#: Attempts at a control change that lose a race (another change between read and write).
CONTROL_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class SendRecord:
    id: str
    kind: Kind
    total: int
    #: The plan: lanes and batch size (:func:`sendmail.sending.jobs.batch_bounds`).
    lanes: int
    batch_size: int
    #: Where the list and content are (:mod:`sendmail.sending.lists`).
    list_ref: str
    created: datetime
    finished: datetime | None = None
    sent: int | None = None
    failed: int | None = None
    #: The caller's ``metadata`` (echoed in the status route and the send's webhooks).
    metadata: Mapping[str, str] | None = None
    #: When a scheduled send is to start (None: at once).
    scheduled_at: datetime | None = None
    #: Recipients not sent because the send was canceled (with ``sent`` and ``failed``).
    canceled: int | None = None
    #: The control state, who paused it, how many changes it has seen (each webhook about a
    #: change names its number) and when the last one was made.
    control: ControlState = "running"
    paused_by: PausedBy | None = None
    control_seq: int = 0
    control_at: datetime | None = None
    #: When retention began purging the send (None: it is not being purged).
    purging: datetime | None = None


class SendsTable(Protocol):
    def create(self, record: SendRecord) -> SendRecord:
        """Write the record of a send about to start; the record stored. The first writer
        wins: a request that took over another's Idempotency-Key starts the same send, and both
        must start it with the plan in the record (the recipients route reads it)."""
        ...

    def get(self, send_id: str) -> SendRecord | None:
        """The send's record; None if there is none."""
        ...

    def finish(
        self, send_id: str, sent: int, failed: int, when: datetime, canceled: int = 0
    ) -> None:
        """The send is over: its counts and time."""
        ...

    def change_control(
        self, send_id: str, change: Callable[[SendRecord], SendRecord | None]
    ) -> tuple[SendRecord, bool] | None:
        """Apply ``change`` to the record (it answers the new record, or None for "nothing to
        change") as one atomic step: a record changed by someone else between the read and the
        write is read again and ``change`` asked again. The record after it and whether it
        changed; None when the send has no record, or its record is being purged."""
        ...

    def mark_purging(self, send_id: str, when: datetime) -> SendRecord | None:
        """Mark the record as being purged (retention's first step; a mark already there is
        kept). The record marked; None when there is none."""
        ...

    def expired(self, before: datetime) -> Iterator[SendRecord]:
        """Every send finished before ``before``, and every send being purged whenever it
        finished, a page of the table at a time: a scan, for retention only. Sends not
        finished are never among them."""
        ...

    def delete(self, send_id: str) -> None:
        """Forget the record (a send that never started; retention). No record: nothing."""
        ...

    def unfinished(self) -> list[SendRecord]:
        """Every send not finished (scheduled, running, paused): a scan of the table, for rare
        operator-level actions (the account guard's trip and reset), never per request."""
        ...


class MemorySends:
    """Process-local sends (unit tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: dict[str, SendRecord] = {}

    def create(self, record: SendRecord) -> SendRecord:
        with self._lock:
            return self.records.setdefault(record.id, record)

    def get(self, send_id: str) -> SendRecord | None:
        with self._lock:
            return self.records.get(send_id)

    def finish(
        self, send_id: str, sent: int, failed: int, when: datetime, canceled: int = 0
    ) -> None:
        with self._lock:
            record = self.records.get(send_id)
            if record is not None:
                self.records[send_id] = replace(
                    record, sent=sent, failed=failed, canceled=canceled, finished=when
                )

    def change_control(
        self, send_id: str, change: Callable[[SendRecord], SendRecord | None]
    ) -> tuple[SendRecord, bool] | None:
        with self._lock:
            record = self.records.get(send_id)
            if record is None or record.purging is not None:
                return None
            changed = change(record)
            if changed is None:
                return record, False
            self.records[send_id] = changed
            return changed, True

    def delete(self, send_id: str) -> None:
        with self._lock:
            self.records.pop(send_id, None)

    def mark_purging(self, send_id: str, when: datetime) -> SendRecord | None:
        with self._lock:
            record = self.records.get(send_id)
            if record is None or record.purging is not None:
                return record
            self.records[send_id] = marked = replace(record, purging=when)
            return marked

    def expired(self, before: datetime) -> Iterator[SendRecord]:
        with self._lock:
            found = [
                r
                for r in self.records.values()
                if r.purging is not None or (r.finished is not None and r.finished < before)
            ]
        yield from found

    def unfinished(self) -> list[SendRecord]:
        with self._lock:
            return [r for r in self.records.values() if r.finished is None]


class TableSends:
    """The sends table on Azure Table storage (or Azurite)."""

    def __init__(self, client: TableClient) -> None:
        self._table = LazyTable(client)

    def create(self, record: SendRecord) -> SendRecord:
        from azure.core.exceptions import ResourceExistsError

        entity: dict[str, Any] = {
            "PartitionKey": table_key(record.id),
            "RowKey": _ROW,
            "Kind": record.kind,
            "Total": record.total,
            "Lanes": record.lanes,
            "BatchSize": record.batch_size,
            "ListRef": record.list_ref,
            "CreatedAt": record.created,
        }
        if record.metadata:  # JSON: at most 10 keys of 40 and values of 256 characters
            entity["Metadata"] = json.dumps(dict(record.metadata), ensure_ascii=False)
        if record.scheduled_at is not None:
            entity["ScheduledAt"] = record.scheduled_at
        client = self._table.client
        try:
            self._table.call(
                "write", lambda: client.create_entity(entity), passthrough=(ResourceExistsError,)
            )
        except ResourceExistsError:
            existing = self.get(record.id)
            if existing is not None:
                return existing
        return record

    def get(self, send_id: str) -> SendRecord | None:
        found = self._read(send_id)
        return found[0] if found is not None else None

    def _read(self, send_id: str) -> tuple[SendRecord, str] | None:
        """The record and its row's ETag; None without one."""
        from azure.core.exceptions import ResourceNotFoundError

        client = self._table.client
        try:
            entity = self._table.call(
                "read",
                lambda: client.get_entity(table_key(send_id), _ROW),
                passthrough=(ResourceNotFoundError,),
            )
        except ResourceNotFoundError:
            return None
        return self._record(send_id, entity), str(entity.metadata.get("etag") or "")

    def _record(self, send_id: str, entity: Any) -> SendRecord:
        try:
            return SendRecord(
                id=send_id,
                kind=entity["Kind"],
                total=int(entity["Total"]),
                lanes=int(entity["Lanes"]),
                batch_size=int(entity["BatchSize"]),
                list_ref=str(entity["ListRef"]),
                created=_aware(entity["CreatedAt"]),
                finished=_aware(entity["FinishedAt"]) if entity.get("FinishedAt") else None,
                sent=int(entity["Sent"]) if entity.get("Sent") is not None else None,
                failed=int(entity["Failed"]) if entity.get("Failed") is not None else None,
                metadata=_metadata(entity.get("Metadata")),
                scheduled_at=_aware(entity["ScheduledAt"]) if entity.get("ScheduledAt") else None,
                canceled=int(entity["Canceled"]) if entity.get("Canceled") is not None else None,
                control=_control(entity.get("Control")),
                paused_by=_paused_by(entity.get("PausedBy")),
                control_seq=int(entity.get("ControlSeq") or 0),
                control_at=_aware(entity["ControlAt"]) if entity.get("ControlAt") else None,
                purging=_aware(entity["PurgingAt"]) if entity.get("PurgingAt") else None,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise TableUnavailable(f"the record of send {send_id} is malformed") from e

    def finish(
        self, send_id: str, sent: int, failed: int, when: datetime, canceled: int = 0
    ) -> None:
        """Merged into the record; a send without one (started before the sends table) is
        left without one: a partial row would read as malformed."""
        values = {"Sent": sent, "Failed": failed, "Canceled": canceled, "FinishedAt": when}
        if not self._merge(send_id, values):
            logger.warning("send %s has no record to finish", send_id)

    def change_control(
        self, send_id: str, change: Callable[[SendRecord], SendRecord | None]
    ) -> tuple[SendRecord, bool] | None:
        """Read, ``change``, write with ``If-Match`` on the ETag read: a 412 (someone changed
        the row in between) reads and asks again, at most :data:`CONTROL_ATTEMPTS` times."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        client = self._table.client
        for _ in range(CONTROL_ATTEMPTS):
            found = self._read(send_id)
            if found is None or found[0].purging is not None:
                return None
            record, etag = found
            changed = change(record)
            if changed is None:
                return record, False
            entity: dict[str, Any] = {
                "PartitionKey": table_key(send_id),
                "RowKey": _ROW,
                "Control": changed.control,
                "PausedBy": changed.paused_by or "",
                "ControlSeq": changed.control_seq,
                "ControlAt": changed.control_at,
            }
            try:
                self._table.call(
                    "write",
                    lambda entity=entity, etag=etag: client.update_entity(  # type: ignore[misc]
                        entity,
                        mode=UpdateMode.MERGE,
                        etag=etag,
                        match_condition=MatchConditions.IfNotModified,
                    ),
                    passthrough=(ResourceModifiedError, ResourceNotFoundError),
                )
            except ResourceModifiedError:
                continue  # someone else changed it first: decide again on what is there now
            except ResourceNotFoundError:
                return None
            return changed, True
        raise TableUnavailable(f"the control state of send {send_id} kept changing under us")

    def unfinished(self) -> list[SendRecord]:
        client = self._table.client
        rows = self._table.call(
            "read",
            lambda: [
                row
                for row in client.query_entities("RowKey eq @row", parameters={"row": _ROW})
                if not row.get("FinishedAt")
            ],
        )
        return [self._record(str(row["PartitionKey"]), row) for row in rows]

    def delete(self, send_id: str) -> None:
        client = self._table.client  # deleting what is not there succeeds (the SDK's 404)
        self._table.call("delete", lambda: client.delete_entity(table_key(send_id), _ROW))

    def mark_purging(self, send_id: str, when: datetime) -> SendRecord | None:
        """Merged into the row (never creates one: a record deleted meanwhile stays gone)."""
        record = self.get(send_id)
        if record is None or record.purging is not None:
            return record
        if not self._merge(send_id, {"PurgingAt": when}):
            return None
        return replace(record, purging=when)

    def _merge(self, send_id: str, values: Mapping[str, Any]) -> bool:
        """Merge ``values`` into the send's row; False when it has no row (none is created)."""
        from azure.core.exceptions import ResourceNotFoundError
        from azure.data.tables import UpdateMode

        entity = {"PartitionKey": table_key(send_id), "RowKey": _ROW, **values}
        client = self._table.client
        try:
            self._table.call(
                "write",
                lambda: client.update_entity(entity, mode=UpdateMode.MERGE),
                passthrough=(ResourceNotFoundError,),
            )
        except ResourceNotFoundError:
            return False
        return True

    def expired(self, before: datetime) -> Iterator[SendRecord]:
        """One server-side filtered query over the table, read a page (of up to 1,000 rows) at
        a time: rows deleted behind it (retention deletes them as it goes) do not disturb it.
        A row whose partition key is not a send id this table can read back (a hashed key) is
        skipped and logged."""
        from azure.core.exceptions import AzureError

        from sendmail.platform.storage import azure_error_text

        # A row without PurgingAt matches no comparison on it, so "ge the earliest time" means
        # "has the property" (Azure Tables has no "exists").
        # (the SDK finds parameters between spaces: none may touch a parenthesis)
        query = "RowKey eq @row and ( FinishedAt lt @before or PurgingAt ge @earliest )"
        parameters = {"row": _ROW, "before": before, "earliest": _EARLIEST}
        client = self._table.client
        rows = self._table.call(
            "read", lambda: iter(client.query_entities(query, parameters=parameters))
        )
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except AzureError as e:
                raise TableUnavailable(
                    f"reading expired sends failed: {azure_error_text(e)}"
                ) from e
            send_id = unescape_key(str(row["PartitionKey"]))
            if send_id is None:
                logger.warning("a send record under a hashed key is never purged")
                continue
            yield self._record(send_id, row)


#: The earliest time Azure Tables stores (1601-01-01): every stored time is at or after it.
_EARLIEST = datetime(1601, 1, 1, tzinfo=UTC)


def unescape_key(key: str) -> str | None:
    """The text :func:`~sendmail.platform.tables.table_key` made ``key`` from; None for a
    hashed key (``~H``…: the text is not in it)."""
    if key.startswith("~H"):
        return None
    data = bytearray()
    index = 0
    while index < len(key):
        if key[index] == "~":
            data.append(int(key[index + 1 : index + 3], 16))
            index += 3
        else:
            data.extend(key[index].encode("ascii"))
            index += 1
    return data.decode("utf-8", "surrogatepass")


def _metadata(stored: Any) -> dict[str, str] | None:
    if not stored:
        return None
    value = json.loads(str(stored))
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError("metadata is not an object of strings")
    return {str(k): v for k, v in value.items()}


def _control(stored: Any) -> ControlState:
    if not stored:
        return "running"
    if stored not in CONTROL_STATES:
        raise ValueError(f"unknown control state {stored!r}")
    state: ControlState = stored
    return state


def _paused_by(stored: Any) -> PausedBy | None:
    if not stored:
        return None
    if stored not in get_args(PausedBy):
        raise ValueError(f"unknown pauser {stored!r}")
    by: PausedBy = stored
    return by


def _aware(moment: Any) -> datetime:
    if not isinstance(moment, datetime):
        raise TypeError("not a datetime")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def sends_from_environment(
    env: Mapping[str, str] = os.environ, *, table_name: str = DEFAULT_TABLE_NAME
) -> TableSends:
    """The sends table in the storage the Functions host uses. No network I/O."""
    from sendmail.platform.storage import StorageUnavailable, table_client

    try:
        return TableSends(table_client(table_name, env))
    except StorageUnavailable as e:
        raise TableUnavailable(f"the sends table cannot be used: {e}") from e
