"""The per-send event store, in memory and on a real Azurite: idempotent on the SNS message,
counts of recipients per type that never drift, events listed in time order by page."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sendmail.feedback.event_store import (
    DeliveryCounts,
    EventStore,
    MemoryEventStore,
    TableEventStore,
    event_store_from_environment,
)
from sendmail.feedback.ses_events import EventType, RecipientEvent
from sendmail.platform.tables import TableUnavailable
from tests.support.azurite import Azurite

SEND = "send0001"
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def event(
    type_: EventType,
    recipient: str,
    *,
    send_id: str | None = SEND,
    seconds: float = 0,
    **extra: Any,
) -> RecipientEvent:
    return RecipientEvent(
        type=type_,
        recipient=recipient,
        timestamp=T0 + timedelta(seconds=seconds),
        message_id=f"ses-{recipient}",
        send_id=send_id,
        **extra,
    )


@pytest.fixture(params=["memory", "table"])
def store(request: pytest.FixtureRequest) -> Iterator[EventStore]:
    if request.param == "memory":
        yield MemoryEventStore()
        return
    azurite: Azurite = request.getfixturevalue("azurite")
    name = "Events" + uuid.uuid4().hex[:12]
    store = event_store_from_environment(
        {"AzureWebJobsStorage": azurite.connection_string}, table_name=name
    )
    yield store
    store.client.delete_table()


def test_events_are_counted_per_type_and_recipient(store: EventStore) -> None:
    store.record("sns-1", [event("Delivery", "a@example.com")])
    store.record("sns-2", [event("Delivery", "b@example.com")])
    store.record("sns-3", [event("DeliveryDelay", "c@example.com", seconds=1)])
    store.record("sns-4", [event("DeliveryDelay", "c@example.com", seconds=2)])  # again: once
    store.record("sns-5", [event("Delivery", "C@Example.com", seconds=3)])  # same, other case
    store.record("sns-6", [event("Bounce", "d@example.com", sub_type="Permanent/General")])
    store.record("sns-7", [event("Complaint", "a@example.com", seconds=4)])
    store.record("sns-8", [event("Reject", "e@example.com")])
    assert store.counts(SEND) == DeliveryCounts(
        delivered=3, bounced=1, complained=1, rejected=1, delayed=1
    )
    assert store.counts("another-send") == DeliveryCounts()


def test_a_redelivered_sns_message_changes_nothing(store: EventStore) -> None:
    events = [event("Bounce", "a@example.com"), event("Bounce", "b@example.com")]
    first = store.record("sns-1", events)
    again = store.record("sns-1", events)
    assert (first.recorded, first.duplicates) == (2, 0)
    assert (again.recorded, again.duplicates) == (0, 2)
    assert store.counts(SEND).bounced == 2
    assert len(store.page(SEND, limit=10).events) == 2


def test_events_without_a_send_are_not_stored(store: EventStore) -> None:
    outcome = store.record("sns-1", [event("Delivery", "a@example.com", send_id=None)])
    assert (outcome.recorded, outcome.duplicates) == (0, 0)
    assert store.page(SEND, limit=10).events == []


def test_events_page_in_time_order_and_filter_by_type(store: EventStore) -> None:
    # recorded out of order: listed by the events' own times
    for n in reversed(range(5)):
        store.record(f"sns-{n}", [event("Delivery", f"r{n}@example.com", seconds=n)])
    store.record("sns-b", [event("Bounce", "x@example.com", seconds=2.5, diagnostic="550")])

    first = store.page(SEND, limit=2)
    assert [e.recipient for e in first.events] == ["r0@example.com", "r1@example.com"]
    assert first.cursor is not None
    second = store.page(SEND, limit=2, cursor=first.cursor)
    assert [e.recipient for e in second.events] == ["r2@example.com", "x@example.com"]
    third = store.page(SEND, limit=2, cursor=second.cursor)
    assert [e.recipient for e in third.events] == ["r3@example.com", "r4@example.com"]
    assert third.cursor is None

    [bounce] = store.page(SEND, limit=10, event_type="Bounce").events
    assert bounce.to_json() == {
        "recipient": "x@example.com",
        "messageId": "ses-x@example.com",
        "type": "Bounce",
        "timestamp": "2026-12-01T10:00:02.500Z",
        "diagnostic": "550",
    }
    with pytest.raises(ValueError, match="cursor"):
        store.page(SEND, limit=2, cursor="bm90IGEgY3Vyc29y")  # "not a cursor"
    with pytest.raises(ValueError, match="cursor"):
        store.page(SEND, limit=2, cursor="%%%")


def test_concurrent_deliveries_of_one_send_count_exactly(azurite: Azurite) -> None:
    """40 threads, 200 recipients, every SNS message delivered twice, some at the same time:
    the counters (under ETags, sharded) end exactly at the number of recipients."""
    store = event_store_from_environment(
        {"AzureWebJobsStorage": azurite.connection_string},
        table_name="Events" + uuid.uuid4().hex[:12],
    )
    recipients = [f"user{n}@example.com" for n in range(200)]
    work = [(f"sns-{n}", r) for n, r in enumerate(recipients)] * 2
    lock = threading.Lock()
    duplicates = redelivered = 0

    def worker(items: list[tuple[str, str]]) -> None:
        nonlocal duplicates, redelivered
        for sns_id, recipient in items:
            # Azurite sometimes resets a connection under 40 writers: the route answers 500 and
            # SNS delivers the message again, as here (a reset after the commit makes that
            # delivery a duplicate: counted in ``redelivered``, never in the counters).
            for attempt in range(5):
                try:
                    outcome = store.record(sns_id, [event("Delivery", recipient)])
                    break
                except TableUnavailable:
                    if attempt == 4:
                        raise
                    with lock:
                        redelivered += 1
            with lock:
                duplicates += outcome.duplicates

    threads = [threading.Thread(target=worker, args=(work[n::40],)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert store.counts(SEND).delivered == 200
        assert 200 <= duplicates <= 200 + redelivered  # exactly 200 without a redelivery
        assert len(store.page(SEND, limit=1000).events) == 200
        assert store.purge(SEND) == 200 * 2 + 16  # events, markers, counter shards
        assert store.counts(SEND) == DeliveryCounts()
    finally:
        store.client.delete_table()


def test_without_storage_the_store_is_unavailable() -> None:
    from sendmail.feedback.event_store import EventStoreError

    with pytest.raises(EventStoreError, match="no storage configured"):
        event_store_from_environment({})
    assert isinstance(
        event_store_from_environment({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}),
        TableEventStore,
    )
