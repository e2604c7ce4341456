"""Retention (sendmail/retention.py) against Azurite: exactly what finished more than the limit ago
goes — histories, blobs, ledger, events, record — and nothing else; a purge that dies half-way
reads as gone and is finished by the next run; the routes answer 404 for a send being purged.

Each test builds its own stores (tables, container and queue of new names) in the session's
Azurite (blob, queue and table services). Durable histories are a dictionary here: the timer
with the real Durable API runs under devhost in tests/devhost/test_retention_e2e.py.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableClient
from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient

from devhost.emulators.azurite import Azurite
from orchestrators.lanes import lane_instance_id
from sendmail import retention
from sendmail.admission.idempotency import TableIdempotencyStore
from sendmail.feedback.event_store import TableEventStore, _shard
from sendmail.feedback.ses_events import RecipientEvent
from sendmail.platform.blobs import AzureBlobStore
from sendmail.platform.tables import table_key
from sendmail.retention import Histories, Purged, StoragePoisonQueue, Stores, purge_expired
from sendmail.sending.jobs import Mail, batch_bounds, ledger_key
from sendmail.sending.ledger import TableSendLedger
from sendmail.sending.lists import store_send
from sendmail.sending.sends import MemorySends, SendRecord, SendsTable, TableSends, unescape_key
from tests.support.azurite import fresh_table

NOW = datetime.now(UTC).replace(microsecond=0)
DAYS = 30.0
SENDER = "se@aifactory.page"
RECIPIENTS = [f"person{i}@example.com" for i in range(5)]
LANES, BATCH = 2, 2  # batches (0, 2) (2, 1) | (3, 2): three ledger partitions


class MemoryHistories:
    """Durable instances by id and runtime status, as the task hub would hold them."""

    def __init__(self) -> None:
        self.runtime: dict[str, str] = {}
        self.purged: list[str] = []

    def instances(self, send_id: str, lanes: int) -> list[str]:
        return [*(lane_instance_id(send_id, n) for n in range(lanes)), send_id]

    def running(self, instance_id: str) -> bool:
        return self.runtime.get(instance_id) in ("Pending", "Running")

    def purge(self, instance_id: str) -> int:
        self.purged.append(instance_id)
        return 1 if self.runtime.pop(instance_id, None) is not None else 0


@dataclass
class World:
    """Every store a send leaves something in, on Azurite, and the raw clients to look."""

    stores: Stores
    histories: MemoryHistories
    container: ContainerClient
    tables: dict[str, TableClient]

    def run(self, histories: Histories | None = None, **options: Any) -> Purged:
        return purge_expired(
            self.stores,
            histories or self.histories,
            now=options.pop("now", NOW),
            days=options.pop("days", DAYS),
            budget_seconds=options.pop("budget_seconds", 60),
            **options,
        )

    def seed(self, send_id: str, finished: datetime | None, runtime: str = "Completed") -> None:
        """A send as its lanes leave it: list and content, record, ledger, events, histories."""
        record = SendRecord(
            id=send_id,
            kind="ses",
            total=len(RECIPIENTS),
            lanes=LANES,
            batch_size=BATCH,
            list_ref=send_id,
            created=(finished or NOW) - timedelta(minutes=5),
        )
        store_send(
            self.stores.blobs, send_id, RECIPIENTS, Mail(sender=SENDER, subject="s", body="b")
        )
        self.stores.sends.create(record)
        ledger = self.stores.ledger
        assert isinstance(ledger, TableSendLedger)
        for first, count in batch_bounds(len(RECIPIENTS), LANES, BATCH):
            key = ledger_key(send_id, first)
            ledger.record_many(key, {i: f"<{send_id}.{first + i}@ses>" for i in range(count - 1)})
            ledger.record_failures(key, {count - 1: ("SES_MESSAGE_REJECTED", "rejected")})
        events = self.stores.events
        assert isinstance(events, TableEventStore)
        at = finished or NOW
        events.record(
            f"sns-{send_id}",
            [
                RecipientEvent("Delivery", r, at, message_id=f"m{i}", send_id=send_id)
                for i, r in enumerate(RECIPIENTS)
            ],
        )
        for instance in self.histories.instances(send_id, LANES):
            self.histories.runtime[instance] = runtime
        if finished is not None:
            self.stores.sends.finish(send_id, 3, 2, finished)

    def remains(self, send_id: str) -> dict[str, int]:
        """What is left of the send, store by store."""
        low = f"{send_id}:"
        ledger_rows = self.tables["ledger"].query_entities(
            "PartitionKey ge @low and PartitionKey lt @high",
            parameters={"low": low, "high": f"{send_id};"},
        )
        event_rows = self.tables["events"].query_entities(
            "PartitionKey eq @pk", parameters={"pk": table_key(send_id)}
        )
        return {
            "record": int(self.stores.sends.get(send_id) is not None),
            "instances": sum(
                i in self.histories.runtime for i in self.histories.instances(send_id, LANES)
            ),
            "blobs": len(list(self.container.list_blobs(name_starts_with=f"{send_id}/"))),
            "ledger": len(list(ledger_rows)),
            "events": len(list(event_rows)),
        }


#: A seeded send: content, list and index blobs; per batch a row of successes (when it has
#: any) and a row of failures; per recipient an event and a marker, and a counter per shard.
WHOLE = {
    "record": 1,
    "instances": LANES + 1,
    "blobs": 3,
    "ledger": 5,
    "events": 2 * len(RECIPIENTS) + len({_shard(r) for r in RECIPIENTS}),
}
GONE = dict.fromkeys(WHOLE, 0)


@pytest.fixture
def world(azurite_all: Azurite) -> Iterator[World]:
    tables = {
        name: fresh_table(azurite_all, prefix)
        for name, prefix in (("sends", "Sends"), ("ledger", "Ledger"), ("events", "Events"))
    }
    container = ContainerClient.from_connection_string(
        azurite_all.connection_string, f"sends-{uuid.uuid4().hex[:12]}"
    )
    stores = Stores(
        sends=TableSends(tables["sends"]),
        blobs=AzureBlobStore(container),
        ledger=TableSendLedger(tables["ledger"]),
        events=TableEventStore(tables["events"]),
    )
    yield World(stores, MemoryHistories(), container, tables)
    for client in tables.values():
        client.close()
    container.close()


def seeded(world: World) -> dict[str, str]:
    """Three sends around the limit: 31 days finished, 29 days finished, and running."""
    ids = {name: f"{name}-{uuid.uuid4().hex[:8]}" for name in ("old", "recent", "running")}
    world.seed(ids["old"], NOW - timedelta(days=31))
    world.seed(ids["recent"], NOW - timedelta(days=29))
    world.seed(ids["running"], None, runtime="Running")
    return ids


def test_a_seeded_send_is_in_every_store(world: World) -> None:
    """The baseline the other tests compare with: each store holds something of a send."""
    send_id = f"s-{uuid.uuid4().hex[:8]}"
    world.seed(send_id, NOW - timedelta(days=31))
    assert world.remains(send_id) == WHOLE


def test_only_what_finished_more_than_the_limit_ago_is_purged(world: World) -> None:
    ids = seeded(world)

    purged = world.run()

    assert world.remains(ids["old"]) == GONE
    assert world.remains(ids["recent"]) == WHOLE
    assert world.remains(ids["running"]) == WHOLE
    assert (purged.sends, purged.instances, purged.blobs) == (1, LANES + 1, 3)
    assert purged.ledger == len(RECIPIENTS)  # records (here one a row)
    assert purged.events == WHOLE["events"]
    assert (purged.failed, purged.kept_running, purged.unfinished) == (0, 0, False)
    assert sorted(world.histories.purged) == sorted(world.histories.instances(ids["old"], LANES))
    # the record's route-facing state went last: nothing of the send is left to find
    assert world.stores.sends.get(ids["old"]) is None


def test_a_fraction_of_a_day_is_a_limit_too(world: World) -> None:
    ids = seeded(world)

    world.run(days=29.5)

    assert world.remains(ids["old"]) == GONE
    assert world.remains(ids["recent"]) == WHOLE
    world.run(days=28.9)
    assert world.remains(ids["recent"]) == GONE
    assert world.remains(ids["running"]) == WHOLE  # never: no finish time


class Crash(BaseException):
    """The process dies here (not an Exception: nothing in the run catches it)."""


class CrashOn:
    """``inner`` whose ``method`` kills the run on its ``call``-th call."""

    def __init__(self, inner: Any, method: str, call: int = 1) -> None:
        self._inner, self._method, self._left = inner, method, call

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._inner, name)
        if name != self._method:
            return found

        def crashing(*args: Any, **kwargs: Any) -> Any:
            self._left -= 1
            if self._left == 0:
                raise Crash(name)
            return found(*args, **kwargs)

        return crashing


@pytest.mark.parametrize(
    ("store", "method", "call"),
    [
        ("histories", "purge", 2),  # after the first lane's history
        ("blobs", "delete_prefix", 1),
        ("ledger", "purge", 2),  # after the first page of the ledger
        ("events", "purge", 3),  # ledger gone, events half-way
        ("sends", "delete", 1),  # everything gone but the record
    ],
)
def test_a_purge_that_dies_half_way_reads_as_gone_and_the_next_run_finishes_it(
    world: World, monkeypatch: pytest.MonkeyPatch, store: str, method: str, call: int
) -> None:
    monkeypatch.setattr(retention, "PAGE", 2)  # several pages per send
    ids = seeded(world)
    histories: Histories = world.histories
    stores = world.stores
    if store == "histories":
        histories = CrashOn(world.histories, method, call)
    else:
        broken = CrashOn(getattr(world.stores, store), method, call)
        world.stores = replace(stores, **{store: broken})

    with pytest.raises(Crash):
        world.run(histories)
    world.stores = stores

    record = world.stores.sends.get(ids["old"])
    assert record is not None
    assert record.purging is not None  # the routes answer 404 from here on
    assert world.remains(ids["old"]) != WHOLE
    assert world.remains(ids["recent"]) == WHOLE
    assert world.remains(ids["running"]) == WHOLE

    purged = world.run()

    assert world.remains(ids["old"]) == GONE
    assert purged.sends == 1
    assert world.remains(ids["recent"]) == WHOLE
    assert world.remains(ids["running"]) == WHOLE


def test_a_send_being_purged_is_finished_even_under_a_longer_limit(world: World) -> None:
    """A mark is a promise: once a send reads as gone, it is made gone, whatever the setting
    says by the next run."""
    send_id = f"s-{uuid.uuid4().hex[:8]}"
    world.seed(send_id, NOW - timedelta(days=31))
    world.stores.sends.mark_purging(send_id, NOW)

    world.run(days=365)

    assert world.remains(send_id) == GONE


def test_a_failing_send_is_counted_and_the_others_are_still_purged(world: World) -> None:
    first, second = (f"s{n}-{uuid.uuid4().hex[:8]}" for n in (1, 2))
    world.seed(first, NOW - timedelta(days=40))
    world.seed(second, NOW - timedelta(days=40))

    class FailsForFirst:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def purge(self, send_id: str, limit: int | None = None) -> int:
            if send_id == first:
                raise RuntimeError("the events table answered 503")
            return int(self.inner.purge(send_id, limit))

    world.stores = replace(world.stores, events=FailsForFirst(world.stores.events))
    purged = world.run()

    assert (purged.sends, purged.failed) == (1, 1)
    assert world.remains(second) == GONE
    left = world.remains(first)
    assert left["record"] == 1
    assert left["events"] == WHOLE["events"]
    record = world.stores.sends.get(first)
    assert record is not None
    assert record.purging is not None


def test_a_send_whose_orchestration_still_runs_is_left_alone(world: World) -> None:
    send_id = f"s-{uuid.uuid4().hex[:8]}"
    world.seed(send_id, NOW - timedelta(days=31))
    world.histories.runtime[send_id] = "Running"  # its last step still to run

    purged = world.run()

    assert purged.kept_running == 1
    assert world.remains(send_id) == WHOLE
    record = world.stores.sends.get(send_id)
    assert record is not None
    assert record.purging is None


def test_a_send_without_a_record_is_not_touched(world: World) -> None:
    send_id = f"s-{uuid.uuid4().hex[:8]}"
    world.seed(send_id, NOW - timedelta(days=31))
    world.stores.sends.delete(send_id)

    purged = world.run()

    assert purged.sends == 0
    assert world.remains(send_id) == {**WHOLE, "record": 0}


def test_a_run_stops_at_its_time_budget_and_the_next_one_goes_on(world: World) -> None:
    ids = [f"s{n}-{uuid.uuid4().hex[:8]}" for n in range(3)]
    for send_id in ids:
        world.seed(send_id, NOW - timedelta(days=31))
    ticks = iter(range(10_000))

    purged = world.run(budget_seconds=4, clock=lambda: float(next(ticks)))

    assert purged.unfinished
    assert purged.sends < 3
    again = world.run()
    assert not again.unfinished
    assert purged.sends + again.sends == 3
    assert [world.remains(s) for s in ids] == [GONE] * 3


def test_the_summary_holds_counts_only() -> None:
    summary = Purged(sends=2, instances=6, blobs=6, ledger=10, events=32, seconds=1.25).summary()
    assert summary.startswith("sends 2, instances 6, blobs 6, ledger 10, events 32")
    assert summary.endswith("in 1.2 s")
    assert "@" not in summary


# --- idempotency records and the webhook poison queue -----------------------------------------


def test_idempotency_records_past_their_ttl_are_deleted_and_the_others_kept(
    azurite_all: Azurite,
) -> None:
    table = fresh_table(azurite_all, "Keys")
    store = TableIdempotencyStore(table, timedelta(hours=24))
    store.claim("aws-send", "old", ["f1"], NOW - timedelta(hours=25))
    store.claim("user-send", "older", ["f2"], NOW - timedelta(days=3))
    young = store.claim("aws-send", "young", ["f3"], NOW - timedelta(hours=23))

    assert store.purge_expired(NOW, limit=1) == 1  # a page at a time
    assert store.purge_expired(NOW) == 1
    assert store.purge_expired(NOW) == 0

    rows = list(table.list_entities())
    assert [row["InstanceId"] for row in rows] == [young.instance_id]
    assert store.claim("aws-send", "old", ["other"], NOW).start  # a new send under the key


def test_poison_messages_older_than_the_limit_are_deleted_and_younger_ones_kept(
    azurite_all: Azurite,
) -> None:
    queue = QueueClient.from_connection_string(
        azurite_all.connection_string, f"hooks{uuid.uuid4().hex[:8]}-poison"
    )
    assert StoragePoisonQueue(queue).purge_before(datetime.now(UTC)) == 0  # no queue yet
    queue.create_queue()
    for n in range(3):
        queue.send_message(json.dumps({"old": n}))
    time.sleep(1.2)  # Storage's insertion times are to the second
    cutoff = datetime.now(UTC)
    time.sleep(1.2)
    queue.send_message(json.dumps({"young": 1}))

    assert StoragePoisonQueue(queue).purge_before(cutoff) == 3

    left = queue.peek_messages(max_messages=32)
    assert [json.loads(m.content) for m in left] == [{"young": 1}]  # and visible at once
    assert StoragePoisonQueue(queue).purge_before(cutoff) == 0
    queue.delete_queue()


def test_the_run_purges_idempotency_records_and_poison_messages_too(
    world: World, azurite_all: Azurite
) -> None:
    keys = TableIdempotencyStore(fresh_table(azurite_all, "Keys"), timedelta(hours=24))
    keys.claim("aws-send", "old", ["f"], NOW - timedelta(hours=30))
    queue = QueueClient.from_connection_string(
        azurite_all.connection_string, f"hooks{uuid.uuid4().hex[:8]}-poison"
    )
    queue.create_queue()
    queue.send_message("an event for a@example.com")
    time.sleep(1.2)
    world.stores = replace(world.stores, idempotency=keys, poison=StoragePoisonQueue(queue))

    purged = world.run(now=datetime.now(UTC) + timedelta(days=DAYS))

    assert (purged.idempotency, purged.poison) == (1, 1)
    queue.delete_queue()


# --- the sends table's part --------------------------------------------------------------------


@pytest.fixture(params=["memory", "table"])
def sends(request: pytest.FixtureRequest) -> Iterator[SendsTable]:
    if request.param == "memory":
        yield MemorySends()
        return
    client = fresh_table(request.getfixturevalue("azurite_all"), "Sends")
    yield TableSends(client)
    client.close()


def _record(send_id: str) -> SendRecord:
    return SendRecord(
        id=send_id, kind="ses", total=3, lanes=1, batch_size=3, list_ref=send_id, created=NOW
    )


def test_expired_finds_sends_finished_before_the_time_and_every_send_being_purged(
    sends: SendsTable,
) -> None:
    for send_id, finished in (
        ("a-old", NOW - timedelta(days=2)),
        ("b-new", NOW),
        ("c-running", None),
        ("d-marked", NOW),
    ):
        sends.create(_record(send_id))
        if finished is not None:
            sends.finish(send_id, 3, 0, finished)
    marked = sends.mark_purging("d-marked", NOW)
    assert marked is not None
    assert marked.purging == NOW

    found = sorted(r.id for r in sends.expired(NOW - timedelta(days=1)))

    assert found == ["a-old", "d-marked"]
    got = sends.get("d-marked")
    assert got is not None
    assert got.purging == NOW


def test_a_mark_is_kept_and_never_made_for_a_send_without_a_record(sends: SendsTable) -> None:
    sends.create(_record("s1"))
    sends.mark_purging("s1", NOW)
    again = sends.mark_purging("s1", NOW + timedelta(hours=1))

    assert again is not None
    assert again.purging == NOW
    assert sends.mark_purging("nobody", NOW) is None
    assert sends.get("nobody") is None


def test_a_send_being_purged_cannot_be_paused_or_canceled(sends: SendsTable) -> None:
    sends.create(_record("s1"))
    sends.finish("s1", 3, 0, NOW - timedelta(days=40))
    assert sends.change_control("s1", lambda r: replace(r, control="canceled")) is not None
    sends.create(_record("s2"))
    sends.mark_purging("s2", NOW)

    assert sends.change_control("s2", lambda r: replace(r, control="paused")) is None
    got = sends.get("s2")
    assert got is not None
    assert got.control == "running"


@pytest.mark.parametrize("text", ["0f1c2d3e4f", "a:b.c-d_e", "a/b#c?d", "한글 ids", "~tilde"])
def test_a_partition_key_reads_back_as_the_id_it_was_made_from(text: str) -> None:
    assert unescape_key(table_key(text)) == text


def test_a_hashed_partition_key_reads_back_as_nothing() -> None:
    assert unescape_key(table_key("x" * 600)) is None


# --- the routes: a send being purged no longer exists -------------------------------------------


def _route(app_functions: dict[str, Any], client: Any, name: str, path: str) -> Any:
    from tests.support.http import call

    method = "POST" if path.rsplit("/", 1)[-1] in ("pause", "resume", "cancel") else "GET"
    return call(app_functions, name, path, method=method, route_params={"id": "s1"}, client=client)


ROUTES = [
    ("email_status", "/api/v1/emails/s1"),
    ("email_recipients", "/api/v1/emails/s1/recipients"),
    ("email_events", "/api/v1/emails/s1/events"),
    ("email_pause", "/api/v1/emails/s1/pause"),
    ("email_resume", "/api/v1/emails/s1/resume"),
    ("email_cancel", "/api/v1/emails/s1/cancel"),
]


@pytest.mark.parametrize(("name", "path"), ROUTES)
def test_every_route_about_a_send_answers_404_once_it_is_being_purged(
    app_functions: dict[str, Any], name: str, path: str
) -> None:
    from sendmail import services
    from tests.support.durable import FakeDurableClient
    from tests.support.http import finished

    client = FakeDurableClient()
    client.statuses["s1"] = [finished("s1")]
    before = _route(app_functions, client, name, path)
    assert before.status_code in (200, 409), before.get_body()[:300]  # it exists

    services.sends().mark_purging("s1", NOW)
    answer = _route(app_functions, client, name, path)

    assert answer.status_code == 404, answer.get_body()[:300]
    envelope = json.loads(answer.get_body())
    assert set(envelope) == {"timestamp", "status", "error", "message", "path"}
    assert envelope["message"] == "No send with id 's1' exists."


def test_the_timer_takes_its_schedule_from_the_app_setting(app_functions: dict[str, Any]) -> None:
    """``%SENDMAIL_RETENTION_SCHEDULE%``: the host resolves it; the default is the settings'."""
    from api.retention import DEFAULT_SCHEDULE, SCHEDULE_SETTING
    from sendmail.platform.settings import Settings

    bindings = json.loads(app_functions["retention"].get_function_json())["bindings"]
    types = {b["type"]: b for b in bindings}
    assert types["timerTrigger"]["schedule"] == f"%{SCHEDULE_SETTING}%"
    assert "durableClient" in types
    assert Settings.model_fields[SCHEDULE_SETTING].default == DEFAULT_SCHEDULE
