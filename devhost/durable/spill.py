"""What Azure Storage would move out of the task hub's tables and queues into blobs.

devhost keeps its history in SQLite, where a large value costs nothing visible; on Azure
Storage the same value is compressed into a blob, and every later read of the history fetches
those blobs one after another. So that a regression toward data carried in the history shows
locally, devhost logs a warning — once per instance and kind — when a value passes the
thresholds the Durable Task Framework's Azure Storage provider uses (Azure/durabletask,
``src/DurableTask.AzureStorage``):

- ``Tracking/AzureTableTrackingStore.cs``: ``MaxTablePropertySizeInBytes = 60 * 1024`` — a
  history or instance row's string property (``Name``, ``Input``, ``Result``, ``Output``,
  ``Reason``, ``Details``, ``Correlation``, ``FailureDetails``, ``Tags``) larger than that in
  UTF-16 (``Encoding.Unicode``) is compressed into a blob and the row keeps its name.
- ``MessageManager.cs``: ``MaxStorageQueuePayloadSizeInBytes = 45 * 1024`` ("the Storage SDK
  will base64 encode the message, increasing the size by a factor of 4/3") — a queue message
  (an activity's input, a result or an event going back to its orchestration) larger than that
  goes to a blob too. devhost measures the payload alone; the host's message envelope adds a
  few hundred bytes, so devhost is the lenient one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

logger = logging.getLogger("devhost.durable")

TABLE_PROPERTY_LIMIT = 60 * 1024
QUEUE_PAYLOAD_LIMIT = 45 * 1024
#: AzureTableTrackingStore.VariableSizeEntityProperties: the properties that may spill.
VARIABLE_SIZE_PROPERTIES = (
    "Name",
    "Input",
    "Result",
    "Output",
    "Reason",
    "Details",
    "Correlation",
    "FailureDetails",
    "Tags",
)


class SpillWatch:
    """Warns once per instance and kind (``history`` or ``message``) about a value that would
    spill to a blob on Azure Storage; counts every such value (tests and benchmarks read it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str]] = set()
        self.spills: dict[str, int] = {"history": 0, "message": 0}

    def history(self, instance_id: str, events: Iterable[Mapping[str, Any]]) -> None:
        for event in events:
            for name in VARIABLE_SIZE_PROPERTIES:
                value = event.get(name)
                # 4 bytes a character at most (a non-BMP character is a surrogate pair)
                if isinstance(value, str) and len(value) * 4 > TABLE_PROPERTY_LIMIT:
                    size = len(value.encode("utf-16-le"))  # surrogate pairs count twice
                    if size > TABLE_PROPERTY_LIMIT:
                        what = f"{event_name(event)}.{name}"
                        self._spill(instance_id, "history", what, size, TABLE_PROPERTY_LIMIT)

    def message(self, instance_id: str, what: str, payload: str | None) -> None:
        if payload is None or len(payload) <= QUEUE_PAYLOAD_LIMIT // 4:
            return
        size = len(payload.encode("utf-8"))
        if size > QUEUE_PAYLOAD_LIMIT:
            self._spill(instance_id, "message", what, size, QUEUE_PAYLOAD_LIMIT)

    def _spill(self, instance_id: str, kind: str, what: str, size: int, limit: int) -> None:
        with self._lock:
            self.spills[kind] += 1
            first = (instance_id, kind) not in self._warned
            self._warned.add((instance_id, kind))
        if first:
            where = "a blob of the task hub" if kind == "history" else "a blob (large message)"
            logger.warning(
                "instance %s: %s is %d bytes; on Azure Storage it would spill to %s "
                "(limit %d bytes), and reading it back costs a blob read per value "
                "(devhost/durable/spill.py)",
                instance_id,
                what,
                size,
                where,
                limit,
            )


def event_name(event: Mapping[str, Any]) -> str:
    """``ExecutionStarted`` for event type 0, as DTFx names its events."""
    from devhost.durable.history import EventType

    try:
        name = EventType(int(event["EventType"])).name
    except (KeyError, TypeError, ValueError):
        return "event"
    return "".join(part.capitalize() for part in name.split("_"))
