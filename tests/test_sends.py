"""The sends table: one record per send, on both implementations (the Table one on Azurite)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from azure.data.tables import TableClient

from devhost.emulators.azurite import Azurite
from sendmail.platform.tables import TableUnavailable
from sendmail.sending.sends import (
    MemorySends,
    SendRecord,
    SendsTable,
    TableSends,
    sends_from_environment,
)
from tests.support.azurite import fresh_table

CREATED = datetime(2025, 7, 2, 15, 4, 33, 123000, tzinfo=UTC)


@pytest.fixture(params=["memory", "table"])
def sends(request: pytest.FixtureRequest) -> Iterator[SendsTable]:
    if request.param == "memory":
        yield MemorySends()
        return
    azurite: Azurite = request.getfixturevalue("azurite")
    client = fresh_table(azurite, "Sends")
    yield TableSends(client)
    client.close()


def _record(send_id: str = "send-1", **changes: object) -> SendRecord:
    fields: dict[str, object] = {
        "id": send_id,
        "kind": "ses",
        "total": 2537,
        "lanes": 3,
        "batch_size": 400,
        "list_ref": send_id,
        "created": CREATED,
    }
    fields.update(changes)
    return SendRecord(**fields)  # type: ignore[arg-type]


def test_a_created_send_reads_back_unfinished(sends: SendsTable) -> None:
    record = _record()
    sends.create(record)
    assert sends.get("send-1") == record
    got = sends.get("send-1")
    assert got is not None
    assert (got.finished, got.sent, got.failed) == (None, None, None)


def test_an_unknown_send_is_none(sends: SendsTable) -> None:
    assert sends.get("no-such-send") is None
    sends.create(_record("send-1"))
    assert sends.get("send-10") is None
    assert sends.get("send-") is None


def test_finish_adds_the_counts_and_the_time(sends: SendsTable) -> None:
    sends.create(_record(kind="smtp", total=3, lanes=3, batch_size=1))
    when = CREATED + timedelta(minutes=5)

    sends.finish("send-1", 2, 1, when)

    got = sends.get("send-1")
    assert got == _record(
        kind="smtp", total=3, lanes=3, batch_size=1, finished=when, sent=2, failed=1, canceled=0
    )


def test_a_finished_send_of_nobody_sent_keeps_its_zero_counts(sends: SendsTable) -> None:
    sends.create(_record())
    sends.finish("send-1", 0, 2537, CREATED)
    got = sends.get("send-1")
    assert got is not None
    assert (got.sent, got.failed) == (0, 2537)


def test_creating_again_is_harmless(sends: SendsTable) -> None:
    sends.create(_record())
    sends.create(_record())
    assert sends.get("send-1") == _record()


def test_sends_are_kept_apart(sends: SendsTable) -> None:
    ids = ["a", "a:lane0", "odd/id#?'\"", "메일-발송", "x" * 600]
    for number, send_id in enumerate(ids, 1):
        sends.create(_record(send_id, total=number))
    sends.finish("a", 1, 0, CREATED)
    for number, send_id in enumerate(ids, 1):
        got = sends.get(send_id)
        assert got is not None
        assert (got.id, got.total, got.list_ref) == (send_id, number, send_id)
        assert (got.finished is not None) == (send_id == "a")


def test_times_come_back_aware_and_in_utc(sends: SendsTable) -> None:
    sends.create(_record())
    sends.finish("send-1", 1, 0, CREATED + timedelta(hours=1))

    got = sends.get("send-1")
    assert got is not None
    assert got.finished is not None
    for moment in (got.created, got.finished):
        assert moment.tzinfo is not None
        assert moment.utcoffset() == timedelta(0)
    assert got.created == CREATED
    assert got.finished == CREATED + timedelta(hours=1)


# --- the Table implementation ---------------------------------------------------------------------
def test_a_row_holds_the_plan_and_counts_and_no_address(azurite: Azurite) -> None:
    client = fresh_table(azurite, "Sends")
    table = TableSends(client)
    table.create(_record("send-9"))
    table.finish("send-9", 2500, 37, CREATED)

    rows = list(client.list_entities())
    assert len(rows) == 1
    assert (rows[0]["PartitionKey"], rows[0]["RowKey"]) == ("send-9", "send")
    assert set(rows[0]) == {
        "PartitionKey",
        "RowKey",
        "Kind",
        "Total",
        "Lanes",
        "BatchSize",
        "ListRef",
        "CreatedAt",
        "Sent",
        "Failed",
        "Canceled",
        "FinishedAt",
    }
    client.close()


def test_the_table_gives_back_another_zones_time_as_the_same_instant_in_utc(
    azurite: Azurite,
) -> None:
    client = fresh_table(azurite, "Sends")
    table = TableSends(client)
    created = datetime(2025, 7, 2, 10, 4, 33, tzinfo=timezone(timedelta(hours=-5)))
    table.create(_record(created=created))
    table.finish("send-1", 1, 0, created + timedelta(hours=1))

    got = table.get("send-1")
    assert got is not None
    assert got.finished is not None
    assert (got.created, got.created.utcoffset()) == (created, timedelta(0))
    assert (got.finished, got.finished.utcoffset()) == (created + timedelta(hours=1), timedelta(0))
    client.close()


def test_a_malformed_row_raises_table_unavailable(azurite: Azurite) -> None:
    client = fresh_table(azurite, "Sends")
    table = TableSends(client)
    table.create(_record("send-1"))
    client.upsert_entity({"PartitionKey": "send-2", "RowKey": "send", "Kind": "ses"})
    with pytest.raises(TableUnavailable, match="malformed"):
        table.get("send-2")
    client.close()


def test_from_environment_uses_the_hosts_storage(azurite: Azurite) -> None:
    name = fresh_table(azurite, "Sends").table_name
    table = sends_from_environment(
        {"AzureWebJobsStorage": azurite.connection_string}, table_name=name
    )
    table.create(_record())
    assert table.get("send-1") == _record()
    with TableClient.from_connection_string(azurite.connection_string, name) as client:
        assert len(list(client.list_entities())) == 1
    with pytest.raises(TableUnavailable, match="sends table cannot be used"):
        sends_from_environment({})


def test_a_deleted_record_is_gone_and_deleting_again_is_harmless(sends: SendsTable) -> None:
    sends.create(_record("send-1"))
    sends.create(_record("send-2"))

    sends.delete("send-1")
    sends.delete("send-1")
    sends.delete("never-created")

    assert sends.get("send-1") is None
    assert sends.get("send-2") == _record("send-2")


def test_finishing_a_send_without_a_record_leaves_none(sends: SendsTable) -> None:
    """A send started before the sends table (or whose record was deleted): finishing it must
    not leave a partial row that would then read as malformed."""
    sends.finish("no-record", 1, 0, CREATED)
    assert sends.get("no-record") is None


def test_the_first_record_wins_and_comes_back_to_a_later_creator(sends: SendsTable) -> None:
    """A request that took over another's Idempotency-Key starts the same send: it must start
    it with the plan already recorded, or the recipients route would look in other batches."""
    first = _record(lanes=3, batch_size=400)
    assert sends.create(first) == first
    later = _record(lanes=4, batch_size=5000)
    assert sends.create(later) == first
    assert sends.get("send-1") == first


def test_metadata_reads_back_as_given(sends: SendsTable) -> None:
    metadata = {"campaign": "2026-12 뉴스레터", "requestedBy": "crm-42", "empty": ""}
    sends.create(_record(metadata=metadata))

    found = sends.get("send-1")

    assert found is not None
    assert found.metadata == metadata
    assert sends.create(_record("send-2")).metadata is None
    found = sends.get("send-2")
    assert found is not None
    assert found.metadata is None
