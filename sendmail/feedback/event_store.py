"""What SES reported after sending, per send: each recipient event once, and counts as they come.

The contract of :meth:`EventStore.record`:

- **Idempotent on the SNS message.** An event is stored under a row key made of its own time,
  the SNS ``MessageId`` and its position in that message; SNS delivers at least once, and a
  second delivery of the same message finds its rows and changes nothing (``duplicates``).
- **Counts are of recipients.** ``delivered`` is how many recipients have at least one Delivery
  event, and so on per type: a recipient delayed twice and then delivered counts once in
  ``delayed`` and once in ``delivered`` (the counts are not a partition of the send).
- **A count never drifts from the events.** The event row, the recipient's marker for that type
  (first event of the type only) and the counter increment are written in one entity group
  transaction, the counter under optimistic concurrency (ETag): either all three are stored or
  none. A crash in between leaves nothing, and SNS's retry records it.

Table layout (``SendMailEvents``, in the host's storage account): one partition per send
(``PartitionKey`` = the send id), holding

- ``e:<time>:<SNS MessageId>:<n>`` — one row per recipient event (recipient, SES message id,
  type, subtype, time, diagnostic text; never subject, headers or body);
- ``m:<type>:<recipient>`` — the recipient has been counted for that type;
- ``c:00`` … ``c:15`` — counters, one per shard of the recipients (a crc32 of the address), so
  that concurrent deliveries of one large send contend on 16 rows instead of one. The status
  route reads them with one range query.

Events list in time order (the row key's time is the event's own, not its arrival) and page by
an opaque cursor (the last row key). Retention: events hold addresses; :mod:`sendmail.retention`
deletes a send's partition with ``purge(send_id, limit)``, a page at a time, with the rest of
the send.
"""

from __future__ import annotations

import base64
import binascii
import os
import random
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from sendmail.contract.addresses import normalize_address
from sendmail.feedback.ses_events import EVENT_TYPES, EventType, RecipientEvent
from sendmail.platform.tables import LazyTable, TableUnavailable, escape, table_key

if TYPE_CHECKING:
    from azure.data.tables import TableClient

DEFAULT_TABLE_NAME = "SendMailEvents"
COUNTER_SHARDS = 16
#: Optimistic-concurrency rounds before a record gives up (the caller answers 500, SNS retries).
MAX_ATTEMPTS = 12
#: The field of :class:`DeliveryCounts` each event type counts in.
COUNT_FIELDS: dict[EventType, str] = {
    "Delivery": "delivered",
    "Bounce": "bounced",
    "Complaint": "complained",
    "Reject": "rejected",
    "DeliveryDelay": "delayed",
}
_EVENTS_LOW, _EVENTS_HIGH = "e:", "e;"  # ';' follows ':': every event row key sorts between


class EventStoreError(TableUnavailable):
    """The event store could not be read or written."""


@dataclass(frozen=True, slots=True)
class DeliveryCounts:
    """Recipients of one send with at least one event of each type."""

    delivered: int = 0
    bounced: int = 0
    complained: int = 0
    rejected: int = 0
    delayed: int = 0

    def to_json(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNT_FIELDS.values()}

    @classmethod
    def from_types(cls, counts: Mapping[str, int]) -> DeliveryCounts:
        return cls(**{COUNT_FIELDS[t]: int(counts.get(t, 0)) for t in EVENT_TYPES})


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One recipient event as the events route lists it."""

    recipient: str
    type: str
    timestamp: str
    message_id: str | None = None
    sub_type: str | None = None
    diagnostic: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "recipient": self.recipient,
            "messageId": self.message_id,
            "type": self.type,
            "subType": self.sub_type,
            "timestamp": self.timestamp,
            "diagnostic": self.diagnostic,
        }
        return {k: v for k, v in body.items() if v is not None}


@dataclass(frozen=True, slots=True)
class EventPage:
    events: list[StoredEvent]
    #: Where the next page starts; None on the last page.
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Recorded:
    """What :meth:`EventStore.record` did: events newly stored, and those already there."""

    recorded: int = 0
    duplicates: int = 0


class EventStore(Protocol):
    def record(self, sns_message_id: str, events: Sequence[RecipientEvent]) -> Recorded:
        """Store the events that name a send (``send_id``); the others are not stored."""
        ...

    def counts(self, send_id: str) -> DeliveryCounts: ...

    def page(
        self,
        send_id: str,
        *,
        limit: int,
        cursor: str | None = None,
        event_type: EventType | None = None,
    ) -> EventPage:
        """Events of ``send_id`` in time order, after ``cursor``; :class:`ValueError` if the
        cursor is not one this store gave."""
        ...


def event_row_key(sns_message_id: str, index: int, event: RecipientEvent) -> str:
    moment = event.timestamp.astimezone(UTC)
    stamp = moment.strftime("%Y%m%dT%H%M%S") + f".{moment.microsecond // 1000:03d}Z"
    return f"e:{stamp}:{escape(sns_message_id)}:{index:04d}"


def _shard(recipient: str) -> str:
    return f"c:{zlib.crc32(normalize_address(recipient).encode('utf-8')) % COUNTER_SHARDS:02d}"


def _marker(event: RecipientEvent) -> str:
    return f"m:{event.type}:{table_key(normalize_address(event.recipient))}"


def encode_cursor(row_key: str) -> str:
    return base64.urlsafe_b64encode(row_key.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        row_key = base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError) as e:
        raise ValueError("cursor is not one this service gave") from e
    if not (_EVENTS_LOW <= row_key < _EVENTS_HIGH) or len(row_key) > 1024:
        raise ValueError("cursor is not one this service gave")
    return row_key


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _stored(event: RecipientEvent) -> StoredEvent:
    return StoredEvent(
        recipient=event.recipient,
        type=event.type,
        timestamp=_iso(event.timestamp),
        message_id=event.message_id,
        sub_type=event.sub_type,
        diagnostic=event.diagnostic,
    )


class MemoryEventStore:
    """A process-local event store for tests. Thread-safe; the same contract as the table."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, dict[str, StoredEvent]] = {}
        self._markers: set[tuple[str, str]] = set()
        self._counts: dict[str, dict[str, int]] = {}

    def record(self, sns_message_id: str, events: Sequence[RecipientEvent]) -> Recorded:
        recorded = duplicates = 0
        with self._lock:
            for index, event in enumerate(events):
                if event.send_id is None:
                    continue
                rows = self._events.setdefault(event.send_id, {})
                key = event_row_key(sns_message_id, index, event)
                if key in rows:
                    duplicates += 1
                    continue
                rows[key] = _stored(event)
                recorded += 1
                marker = (event.send_id, _marker(event))
                if marker not in self._markers:
                    self._markers.add(marker)
                    counts = self._counts.setdefault(event.send_id, {})
                    counts[event.type] = counts.get(event.type, 0) + 1
        return Recorded(recorded, duplicates)

    def counts(self, send_id: str) -> DeliveryCounts:
        with self._lock:
            return DeliveryCounts.from_types(self._counts.get(send_id, {}))

    def page(
        self,
        send_id: str,
        *,
        limit: int,
        cursor: str | None = None,
        event_type: EventType | None = None,
    ) -> EventPage:
        after = decode_cursor(cursor) if cursor else None
        with self._lock:
            rows = sorted(self._events.get(send_id, {}).items())
        rows = [(k, e) for k, e in rows if (after is None or k > after)]
        rows = [(k, e) for k, e in rows if event_type is None or e.type == event_type]
        page = rows[:limit]
        more = len(rows) > limit
        return EventPage([e for _, e in page], encode_cursor(page[-1][0]) if more else None)

    def purge(self, send_id: str, limit: int | None = None) -> int:
        """Forget the send's events, markers and counts (all at once: ``limit`` is the table's
        page; here a send is one step). Returns how many rows that was."""
        with self._lock:
            rows = len(self._events.pop(send_id, {}))
            markers = {m for m in self._markers if m[0] == send_id}
            self._markers -= markers
            counters = len(self._counts.pop(send_id, {}))
        return rows + len(markers) + counters


@dataclass
class TableEventStore:
    """The event store on Azure Table storage (or Azurite); see the module docs."""

    client: TableClient
    _table: LazyTable = field(init=False)

    def __post_init__(self) -> None:
        self._table = LazyTable(self.client)

    def record(self, sns_message_id: str, events: Sequence[RecipientEvent]) -> Recorded:
        recorded = duplicates = 0
        for index, event in enumerate(events):
            if event.send_id is None:
                continue
            if self._record_one(event.send_id, event_row_key(sns_message_id, index, event), event):
                recorded += 1
            else:
                duplicates += 1
        return Recorded(recorded, duplicates)

    def _record_one(self, send_id: str, row_key: str, event: RecipientEvent) -> bool:
        """True if stored now, False if an earlier delivery stored it."""
        from azure.core import MatchConditions
        from azure.data.tables import TableTransactionError, UpdateMode

        partition = table_key(send_id)
        stored = _stored(event)
        row = {
            "PartitionKey": partition,
            "RowKey": row_key,
            "Recipient": stored.recipient,
            "MessageId": stored.message_id,
            "Type": stored.type,
            "SubType": stored.sub_type,
            "EventTime": stored.timestamp,
            "Diagnostic": stored.diagnostic,
        }
        row = {k: v for k, v in row.items() if v is not None}
        marker = {"PartitionKey": partition, "RowKey": _marker(event)}
        shard = _shard(event.recipient)
        for attempt in range(MAX_ATTEMPTS):
            counter = self._get(partition, shard)
            if counter is None:
                count: tuple[str, dict[str, Any], dict[str, Any]] = (
                    "create",
                    {"PartitionKey": partition, "RowKey": shard, event.type: 1},
                    {},
                )
            else:
                count = (
                    "update",
                    {
                        "PartitionKey": partition,
                        "RowKey": shard,
                        event.type: int(counter.get(event.type) or 0) + 1,
                    },
                    {
                        "mode": UpdateMode.MERGE,
                        "etag": counter.metadata["etag"],
                        "match_condition": MatchConditions.IfNotModified,
                    },
                )
            try:
                self._submit([("create", row, {}), ("create", marker, {}), count])
                return True
            except TableTransactionError:
                pass
            if self._get(partition, row_key) is not None:
                return False  # a second delivery of the same SNS message
            if self._get(partition, marker["RowKey"]) is not None:
                try:  # the recipient is already counted for this type: only the event row
                    self._submit([("create", row, {})])
                    return True
                except TableTransactionError:
                    if self._get(partition, row_key) is not None:
                        return False
            # another event moved the counter first: read it again
            time.sleep(random.uniform(0, 0.005 * (attempt + 1)))  # noqa: S311 (jitter)
        raise EventStoreError(f"recording an event of send {send_id} kept conflicting")

    def counts(self, send_id: str) -> DeliveryCounts:
        partition = table_key(send_id)
        totals: dict[str, int] = {}

        def read() -> None:
            rows = self.client.query_entities(
                "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
                parameters={"pk": partition, "low": "c:", "high": "c;"},
                select=list(EVENT_TYPES),
            )
            for row in rows:
                for name in EVENT_TYPES:
                    totals[name] = totals.get(name, 0) + int(row.get(name) or 0)

        self._call("read", read)
        return DeliveryCounts.from_types(totals)

    def page(
        self,
        send_id: str,
        *,
        limit: int,
        cursor: str | None = None,
        event_type: EventType | None = None,
    ) -> EventPage:
        after = decode_cursor(cursor) if cursor else None
        query = "PartitionKey eq @pk and RowKey gt @low and RowKey lt @high"
        parameters: dict[str, Any] = {
            "pk": table_key(send_id),
            "low": after if after is not None else _EVENTS_LOW,
            "high": _EVENTS_HIGH,
        }
        if event_type is not None:
            query += " and Type eq @type"
            parameters["type"] = event_type
        found: list[tuple[str, StoredEvent]] = []

        def read() -> None:
            rows = self.client.query_entities(
                query, parameters=parameters, results_per_page=min(limit + 1, 1000)
            )
            for row in rows:
                found.append((str(row["RowKey"]), _from_row(row)))
                if len(found) > limit:
                    break

        self._call("read", read)
        page = found[:limit]
        more = len(found) > limit
        return EventPage([e for _, e in page], encode_cursor(page[-1][0]) if more else None)

    def purge(self, send_id: str, limit: int | None = None) -> int:
        """Delete the rows of ``send_id`` (events, markers, counters): all of them, or at most
        ``limit`` (a page: call again until it answers 0). Returns how many."""
        partition = table_key(send_id)
        keys: list[str] = []

        def scan() -> None:
            rows = self.client.query_entities(
                "PartitionKey eq @pk",
                parameters={"pk": partition},
                select=["RowKey"],
                results_per_page=min(limit, 1000) if limit else None,
            )
            for row in rows:
                if limit is not None and len(keys) >= limit:
                    break
                keys.append(str(row["RowKey"]))

        self._call("read", scan)
        for start in range(0, len(keys), 100):
            operations = [
                ("delete", {"PartitionKey": partition, "RowKey": key})
                for key in keys[start : start + 100]
            ]
            self._call("purge", lambda ops=operations: self.client.submit_transaction(ops))
        return len(keys)

    # --- internals -------------------------------------------------------------------------
    def _get(self, partition: str, row_key: str) -> Any:
        from azure.core.exceptions import ResourceNotFoundError

        def read() -> Any:
            try:
                return self.client.get_entity(partition, row_key)
            except ResourceNotFoundError:
                return None

        return self._call("read", read)

    def _submit(self, operations: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
        from azure.data.tables import TableTransactionError

        self._table.call(
            "write",
            lambda: self.client.submit_transaction(operations),
            passthrough=(TableTransactionError,),
        )

    def _call(self, operation: str, action: Any) -> Any:
        return self._table.call(operation, action)


def _from_row(row: Mapping[str, Any]) -> StoredEvent:
    def text(name: str) -> str | None:
        value = row.get(name)
        return str(value) if value is not None else None

    return StoredEvent(
        recipient=str(row.get("Recipient") or ""),
        type=str(row.get("Type") or ""),
        timestamp=str(row.get("EventTime") or ""),
        message_id=text("MessageId"),
        sub_type=text("SubType"),
        diagnostic=text("Diagnostic"),
    )


def event_store_from_environment(
    env: Mapping[str, str] = os.environ, *, table_name: str = DEFAULT_TABLE_NAME
) -> TableEventStore:
    """The event store in the host's own storage (``AzureWebJobsStorage`` and friends)."""
    from sendmail.platform.storage import StorageUnavailable, table_client

    try:
        return TableEventStore(table_client(table_name, env))
    except StorageUnavailable as e:
        raise EventStoreError(f"the event store is unavailable: {e}") from e
