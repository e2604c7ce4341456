"""The send ledger: the contract on both implementations, the Table one against a real Azurite."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import azure.identity
import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.data.tables import TableServiceClient

from devhost.emulators import azurite as azurite_emulator
from devhost.emulators.azurite import REPO_ROOT, Azurite, _free_port
from sendmail.sending.jobs import ledger_key
from sendmail.sending.ledger import (
    LedgerError,
    LedgerUnavailable,
    MemorySendLedger,
    Recorded,
    SendLedger,
    TableSendLedger,
    ledger_from_environment,
)
from tests.support import azurite as azurite_support


def _table_name() -> str:
    return "Ledger" + uuid.uuid4().hex[:16]


def _key(batch: int = 0) -> str:
    return f"{uuid.uuid4()}:{batch}"


@pytest.fixture(params=["memory", "table"])
def ledger(request: pytest.FixtureRequest) -> Iterator[MemorySendLedger | TableSendLedger]:
    if request.param == "memory":
        yield MemorySendLedger()
        return
    azurite: Azurite = request.getfixturevalue("azurite")
    table = TableSendLedger.from_connection_string(
        azurite.connection_string, table_name=_table_name()
    )
    yield table
    table.table_client.close()


# --- the contract, on both implementations --------------------------------------------------------
def test_both_implementations_satisfy_the_protocol(ledger: SendLedger) -> None:
    assert isinstance(ledger, SendLedger)


def test_a_batch_never_recorded_has_no_records(ledger: SendLedger) -> None:
    assert ledger.sent(_key()) == {}


def test_records_come_back_by_recipient_index(ledger: SendLedger) -> None:
    key = _key()
    ledger.record(key, 0, "<a@mail.example>")
    ledger.record(key, 7, "0100018f-ses-id-7")
    ledger.record(key, 499, "0100018f-ses-id-499")

    assert ledger.sent(key) == {
        0: "<a@mail.example>",
        7: "0100018f-ses-id-7",
        499: "0100018f-ses-id-499",
    }


def test_recording_the_same_send_twice_is_harmless(ledger: SendLedger) -> None:
    key = _key()
    ledger.record(key, 3, "id-3")
    ledger.record(key, 3, "id-3")
    assert ledger.sent(key) == {3: "id-3"}

    ledger.record(key, 3, "id-3-resent")  # last write wins
    assert ledger.sent(key) == {3: "id-3-resent"}


def test_sent_returns_a_copy(ledger: SendLedger) -> None:
    key = _key()
    ledger.record(key, 1, "id-1")
    ledger.sent(key)[2] = "not recorded"
    assert ledger.sent(key) == {1: "id-1"}


ODD_KEYS = [
    "a/b\\c#d?e:0",
    "ctl\x00\x01\x1f\x7f\x85\x9f:1",
    'it\'s "quoted" & 100% <odd>:2',
    "~2F:0",  # must not collide with "/:0", which escapes to ~2F (so ~ is escaped too)
    "/:0",
    "%2F:0",
    "메일-발송:3",
    "emoji \U0001f4e7 :4",
    "x" * 600 + ":5",  # escapes to more than a table key holds: stored under a hash
    "/" * 300 + ":6",
]


def test_odd_keys_are_stored_apart_and_read_back(ledger: SendLedger) -> None:
    suffix = uuid.uuid4().hex
    keys = [f"{suffix}{key}" for key in ODD_KEYS] + [f"{key}{suffix}" for key in ODD_KEYS]
    for number, key in enumerate(keys):
        ledger.record(key, number, f"id-{number}")

    for number, key in enumerate(keys):
        assert ledger.sent(key) == {number: f"id-{number}"}, repr(key)


def test_batches_of_one_instance_and_of_similar_instances_do_not_mix(ledger: SendLedger) -> None:
    instance = uuid.uuid4().hex
    keys = [f"{instance}:0", f"{instance}:1", f"{instance}:10", f"{instance}0:1", f"{instance}"]
    for number, key in enumerate(keys):
        ledger.record(key, 0, f"first-{number}")
        ledger.record(key, number + 1, f"second-{number}")

    for number, key in enumerate(keys):
        assert ledger.sent(key) == {0: f"first-{number}", number + 1: f"second-{number}"}


def test_records_from_many_threads_all_land(ledger: SendLedger) -> None:
    keys = [_key(0), _key(1)]
    threads_count, per_thread = 8, 20
    errors: list[BaseException] = []
    start = threading.Barrier(threads_count)

    def work(worker: int) -> None:
        try:
            start.wait(timeout=30)
            for i in range(per_thread):
                index = worker * per_thread + i
                ledger.record(keys[index % 2], index, f"id-{index}")
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []

    total = threads_count * per_thread
    assert ledger.sent(keys[0]) == {i: f"id-{i}" for i in range(0, total, 2)}
    assert ledger.sent(keys[1]) == {i: f"id-{i}" for i in range(1, total, 2)}


def test_record_many_writes_every_record(ledger: SendLedger) -> None:
    key = _key()
    ledger.record(key, 5, "old-5")
    records = {i: f"id-{i}" for i in range(250)}  # more than one 100-entity transaction

    ledger.record_many(key, records)
    ledger.record_many(key, records)  # again: harmless
    ledger.record_many(key, {})

    sent = ledger.sent(key)
    # A recipient recorded twice (sent twice: a crash between its send and its record) keeps
    # one of its Message-IDs — either is true.
    assert sent.pop(5) in {"old-5", "id-5"}
    assert sent == {i: m for i, m in records.items() if i != 5}


@pytest.mark.parametrize(
    ("key", "index", "message_id"),
    [
        ("", 0, "id"),
        ("k:0", -1, "id"),
        ("k:0", True, "id"),
        ("k:0", 10**10, "id"),
        ("k:0", 0, ""),
    ],
)
def test_bad_records_are_refused_before_anything_is_written(
    ledger: SendLedger, key: str, index: int, message_id: str
) -> None:
    with pytest.raises(ValueError):
        ledger.record(key, index, message_id)
    with pytest.raises(ValueError):
        ledger.record_many(key, {index: message_id, 1: "fine"})
    if key:
        assert ledger.sent(key) == {}


def test_purge_drops_every_batch_of_one_instance_and_nothing_else(
    ledger: MemorySendLedger | TableSendLedger,
) -> None:
    instance = f"{uuid.uuid4()}/odd#id"
    mine = [f"{instance}:0", f"{instance}:1", f"{instance}:12"]
    others = [f"{instance}0:0", f"{instance}x:1", instance, f"other-{instance}:0"]
    for key in mine + others:
        ledger.record_many(key, {i: f"{key}-{i}" for i in range(3)})
    ledger.record_many(mine[2], {i: f"many-{i}" for i in range(3, 150)})  # > 100 in one batch

    assert ledger.purge(instance) == 3 + 3 + 150

    for key in mine:
        assert ledger.sent(key) == {}
    for key in others:
        assert ledger.sent(key) == {i: f"{key}-{i}" for i in range(3)}
    assert ledger.purge(instance) == 0


# --- every recipient's outcome: failures and ranges, on both implementations --------------------
def test_failures_are_recorded_with_their_code_and_message(ledger: SendLedger) -> None:
    key = _key()
    ledger.record(key, 0, "id-0")
    ledger.record_failures(key, {1: ("SES_MESSAGE_REJECTED", "rejected"), 3: ("SUPPRESSED", "")})

    assert ledger.outcomes(key) == {
        0: Recorded(message_id="id-0"),
        1: Recorded(code="SES_MESSAGE_REJECTED", message="rejected"),
        3: Recorded(code="SUPPRESSED", message=""),
    }
    assert [r.sent for r in ledger.outcomes(key).values()] == [True, False, False]
    assert ledger.sent(key) == {0: "id-0"}  # failure rows are not sends


def test_a_batch_never_recorded_has_no_outcomes(ledger: SendLedger) -> None:
    assert ledger.outcomes(_key()) == {}
    assert ledger.outcomes(_key(), 5, 10) == {}


def test_a_failure_merged_onto_a_sent_row_keeps_it_sent(ledger: SendLedger) -> None:
    key = _key()
    ledger.record(key, 2, "id-2")
    ledger.record_many(key, {i: f"id-{i}" for i in range(10, 20)})

    ledger.record_failures(key, {2: ("BATCH_FAILED", "late"), 15: ("SES_THROTTLED", "late")})

    outcomes = ledger.outcomes(key)
    assert outcomes[2] == Recorded(message_id="id-2")
    assert outcomes[15] == Recorded(message_id="id-15")
    assert ledger.sent(key) == {2: "id-2"} | {i: f"id-{i}" for i in range(10, 20)}


def test_a_send_recorded_over_a_failure_row_makes_it_sent(ledger: SendLedger) -> None:
    key = _key()
    ledger.record_failures(key, {i: ("SES_THROTTLED", "later") for i in range(4)})

    ledger.record(key, 1, "id-1")
    ledger.record_many(key, {2: "id-2"})

    assert ledger.outcomes(key) == {
        0: Recorded(code="SES_THROTTLED", message="later"),
        1: Recorded(message_id="id-1"),
        2: Recorded(message_id="id-2"),
        3: Recorded(code="SES_THROTTLED", message="later"),
    }
    assert ledger.sent(key) == {1: "id-1", 2: "id-2"}


def test_record_failures_writes_every_failure(ledger: SendLedger) -> None:
    key = _key()
    failures = {i: ("NOT_SENT", f"failure {i}") for i in range(230)}  # several transactions
    ledger.record_failures(key, failures)
    ledger.record_failures(key, failures)  # again: harmless
    ledger.record_failures(key, {})

    assert ledger.outcomes(key) == {
        i: Recorded(code=code, message=message) for i, (code, message) in failures.items()
    }
    assert ledger.sent(key) == {}


RANGE_ROWS = [0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 4999]


@pytest.mark.parametrize(
    ("first", "stop", "expected"),
    [
        (0, None, RANGE_ROWS),
        (1, None, RANGE_ROWS[1:]),
        (10, 100, [10, 11, 99]),  # first included, stop excluded
        (9, 11, [9, 10]),
        (11, 12, [11]),
        (2, 9, []),
        (100, 100, []),
        (0, 1, [0]),
        (101, 1000, [101, 999]),
        (1000, None, [1000, 4999]),
        (5000, None, []),
        (0, 10_000, RANGE_ROWS),
    ],
)
def test_outcomes_reads_a_range_of_the_batch(
    ledger: SendLedger, first: int, stop: int | None, expected: list[int]
) -> None:
    key = ledger_key(uuid.uuid4().hex, 846)
    sent = {i: f"id-{i}" for i in RANGE_ROWS if i % 2 == 0}
    ledger.record_many(key, sent)
    ledger.record_failures(key, {i: ("SES_ERROR", f"m{i}") for i in RANGE_ROWS if i % 2})

    outcomes = ledger.outcomes(key, first, stop)

    assert list(outcomes) == expected  # in index order
    for index, recorded in outcomes.items():
        if index % 2 == 0:
            assert recorded == Recorded(message_id=f"id-{index}")
        else:
            assert recorded == Recorded(code="SES_ERROR", message=f"m{index}")


@pytest.mark.parametrize(
    ("index", "code", "message"),
    [(-1, "C", "m"), (True, "C", "m"), (10**10, "C", "m"), (0, "", "m"), (0, "C", None)],
)
def test_bad_failures_are_refused_before_anything_is_written(
    ledger: SendLedger, index: int, code: str, message: str
) -> None:
    key = _key()
    with pytest.raises(ValueError):
        ledger.record_failures(key, {5: ("FINE", "fine"), index: (code, message)})
    assert ledger.outcomes(key) == {}


def test_failures_under_odd_keys_are_read_back(ledger: SendLedger) -> None:
    suffix = uuid.uuid4().hex
    for number, key in enumerate(ODD_KEYS):
        ledger.record_failures(f"{key}{suffix}", {number: ("C", key)})
    for number, key in enumerate(ODD_KEYS):
        assert ledger.outcomes(f"{key}{suffix}") == {number: Recorded(code="C", message=key)}


def test_purge_drops_failure_rows_too(ledger: MemorySendLedger | TableSendLedger) -> None:
    instance = uuid.uuid4().hex
    ledger.record_many(ledger_key(instance, 0), {0: "id-0", 1: "id-1"})
    ledger.record_failures(ledger_key(instance, 0), {2: ("C", "m")})
    ledger.record_failures(ledger_key(instance, 400), {0: ("C", "m")})

    assert ledger.purge(instance) == 4
    assert ledger.outcomes(ledger_key(instance, 0)) == {}
    assert ledger.outcomes(ledger_key(instance, 400)) == {}


# --- the Table ledger on a real Azurite ----------------------------------------------------------
def _service(azurite: Azurite) -> TableServiceClient:
    return TableServiceClient.from_connection_string(azurite.connection_string)


def test_the_table_is_created_on_first_use_and_shared_after(azurite: Azurite) -> None:
    name = _table_name()
    first = TableSendLedger.from_connection_string(azurite.connection_string, table_name=name)
    with _service(azurite) as service:
        assert name not in {t.name for t in service.list_tables()}  # construction does no I/O

        assert first.sent(_key()) == {}
        assert name in {t.name for t in service.list_tables()}

    # A retried activity builds a new ledger: the table exists already, the records are there.
    key = _key()
    first.record(key, 1, "id-1")
    second = TableSendLedger.from_connection_string(azurite.connection_string, table_name=name)
    assert second.sent(key) == {1: "id-1"}
    second.record(key, 2, "id-2")
    assert first.sent(key) == {1: "id-1", 2: "id-2"}


def test_a_row_holds_the_index_and_message_id_and_no_address(azurite: Azurite) -> None:
    name = _table_name()
    ledger = TableSendLedger.from_connection_string(azurite.connection_string, table_name=name)
    instance = uuid.uuid4()
    ledger.record(f"{instance}:4", 7, "<msg-7@mail.example>")

    with _service(azurite) as service:
        rows = list(service.get_table_client(name).list_entities())
    assert len(rows) == 1
    row = rows[0]
    assert row["PartitionKey"] == f"{instance}:4"  # GUID-like keys are stored as they are
    assert row["RowKey"] == "0000000007"
    assert row["MessageId"] == "<msg-7@mail.example>"
    assert isinstance(row["CreatedAt"], datetime)
    assert row["CreatedAt"].tzinfo is not None
    assert set(row) == {"PartitionKey", "RowKey", "MessageId", "CreatedAt"}


def test_groups_are_one_row_each_with_codes_and_messages_and_no_address(
    azurite: Azurite,
) -> None:
    name = _table_name()
    ledger = TableSendLedger.from_connection_string(azurite.connection_string, table_name=name)
    key = ledger_key(uuid.uuid4().hex, 1246)
    ledger.record_failures(key, {7: ("SUPPRESSED", "on the suppression list")})
    ledger.record(key, 8, "id-8")
    ledger.record_failures(key, {8: ("SES_THROTTLED", "late")})  # never hides the send
    ledger.record_many(key, {i: f"id-{i}" for i in range(100, 350)})  # 250: three groups

    with _service(azurite) as service:
        rows = list(service.get_table_client(name).list_entities())
    assert len(rows) == 1 + 2 + 3  # the single record, two failure groups, three sent groups
    assert {row["PartitionKey"] for row in rows} == {key}
    groups = [row for row in rows if row["RowKey"].startswith("g")]
    failed = [json.loads(row["Failed"]) for row in groups if "Failed" in row]
    assert sorted(failed, key=len) == [
        {"7": ["SUPPRESSED", "on the suppression list"]},
        {"8": ["SES_THROTTLED", "late"]},
    ]
    sent = [json.loads(row["Sent"]) for row in groups if "Sent" in row]
    assert sorted(len(group) for group in sent) == [50, 100, 100]
    for row in groups:
        assert set(row) - {"Sent", "Failed"} == {"PartitionKey", "RowKey", "CreatedAt"}
        assert "@" not in json.dumps(row, default=str)
    outcomes = ledger.outcomes(key)
    assert outcomes[7] == Recorded(code="SUPPRESSED", message="on the suppression list")
    assert outcomes[8] == Recorded(message_id="id-8")  # a Message-ID wins over a failure
    assert len(outcomes) == 252


def test_long_failure_messages_are_split_into_rows_a_property_can_hold(azurite: Azurite) -> None:
    name = _table_name()
    ledger = TableSendLedger.from_connection_string(azurite.connection_string, table_name=name)
    key = ledger_key(uuid.uuid4().hex, 0)
    failures = {i: ("SES_ERROR", "가" * 900) for i in range(100)}  # 90,000 characters in all
    ledger.record_failures(key, failures)

    with _service(azurite) as service:
        rows = list(service.get_table_client(name).list_entities())
    assert len(rows) > 1
    assert all(len(row["Failed"]) < 32_768 for row in rows)
    assert ledger.outcomes(key) == {
        i: Recorded(code=c, message=m) for i, (c, m) in failures.items()
    }


def test_a_malformed_row_is_ignored_not_read_as_an_outcome(
    azurite: Azurite, caplog: pytest.LogCaptureFixture
) -> None:
    name = _table_name()
    ledger = TableSendLedger.from_connection_string(azurite.connection_string, table_name=name)
    key = ledger_key(uuid.uuid4().hex, 0)
    ledger.record(key, 0, "id-0")
    with _service(azurite) as service:
        client = service.get_table_client(name)
        client.upsert_entity({"PartitionKey": key, "RowKey": "0000000001", "Other": "x"})
        client.upsert_entity({"PartitionKey": key, "RowKey": "not-a-row", "MessageId": "id"})

    assert ledger.outcomes(key) == {0: Recorded(message_id="id-0")}
    assert ledger.sent(key) == {0: "id-0"}
    assert "malformed send-ledger row" in caplog.text


def test_forbidden_key_characters_never_reach_the_table(azurite: Azurite) -> None:
    name = _table_name()
    ledger = TableSendLedger.from_connection_string(azurite.connection_string, table_name=name)
    for number, key in enumerate(ODD_KEYS):
        ledger.record(key, number, "id")

    with _service(azurite) as service:
        partitions = {row["PartitionKey"] for row in service.get_table_client(name).list_entities()}
    assert len(partitions) == len(ODD_KEYS)
    for partition in partitions:
        assert len(partition) <= 512
        assert not set(partition) & set("/\\#?'%")
        assert all(0x20 < ord(char) < 0x7F for char in partition)


def test_an_unreachable_store_raises_ledger_error(azurite: Azurite) -> None:
    closed = azurite.connection_string.replace(f":{azurite.ports['table']}/", f":{_free_port()}/")
    ledger = TableSendLedger.from_connection_string(closed, retry_total=0)
    with pytest.raises(LedgerError, match="send ledger read failed"):
        ledger.sent(_key())
    with pytest.raises(LedgerError, match="send ledger write failed"):
        ledger.record(_key(), 0, "id")
    with pytest.raises(LedgerError, match="send ledger write failed"):
        ledger.record_failures(_key(), {0: ("C", "m")})
    with pytest.raises(LedgerError, match="send ledger read failed"):
        ledger.outcomes(_key(), 0, 10)


def test_a_bad_table_name_is_refused(azurite: Azurite) -> None:
    with pytest.raises(ValueError, match="table name"):
        TableSendLedger.from_connection_string(azurite.connection_string, table_name="send-ledger")


def test_the_all_services_azurite_serves_blob_queue_and_table(azurite_all: Azurite) -> None:
    assert set(azurite_all.ports) == {"blob", "queue", "table"}
    for service in ("Blob", "Queue", "Table"):
        assert f"{service}Endpoint=http://127.0.0.1:" in azurite_all.connection_string
    for service in ("blob", "queue"):
        # Unauthenticated, so refused, but with a storage-service HTTP answer.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(azurite_all.endpoint(service) + "?comp=list", timeout=10)
        assert refused.value.code in {400, 403}
        refused.value.close()
    ledger = ledger_from_environment({"AzureWebJobsStorage": azurite_all.connection_string})
    key = _key()
    ledger.record(key, 0, "id")
    assert ledger.sent(key) == {0: "id"}


# --- ledger_from_environment ---------------------------------------------------------------------
def test_from_environment_uses_the_hosts_connection_string(azurite: Azurite) -> None:
    table = _table_name()
    ledger = ledger_from_environment(
        {"AzureWebJobsStorage": azurite.connection_string}, table_name=table
    )
    assert isinstance(ledger, TableSendLedger)
    assert ledger.table_client.table_name == table
    key = _key()
    ledger.record(key, 2, "id-2")
    assert ledger.sent(key) == {2: "id-2"}


def test_from_environment_reads_the_named_connection(azurite: Azurite) -> None:
    env = {"DurableStorage": azurite.connection_string}
    ledger = ledger_from_environment(env, connection="DurableStorage")
    assert isinstance(ledger, TableSendLedger)
    assert ledger.table_client.url == azurite.table_endpoint
    with pytest.raises(LedgerUnavailable):
        ledger_from_environment(env)


@pytest.mark.parametrize(
    ("setting", "endpoint"),
    [
        ("UseDevelopmentStorage=true", "http://127.0.0.1:10002/devstoreaccount1"),
        (" usedevelopmentstorage=TRUE; ", "http://127.0.0.1:10002/devstoreaccount1"),
        (
            "UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://azurite.local",
            "http://azurite.local:10002/devstoreaccount1",
        ),
    ],
)
def test_from_environment_maps_development_storage_to_azurite(setting: str, endpoint: str) -> None:
    ledger = ledger_from_environment({"AzureWebJobsStorage": setting})
    assert isinstance(ledger, TableSendLedger)
    client = ledger.table_client
    assert client.url == endpoint
    assert client.table_name == "SendMailLedger"
    assert isinstance(client.credential, AzureNamedKeyCredential)
    assert client.credential.named_key.name == "devstoreaccount1"


class RecordingManagedIdentity(azure.identity.ManagedIdentityCredential):
    built: list[str | None] = []  # noqa: RUF012 - per-test, reset by the fixture

    def __init__(self, *, client_id: str | None = None, **kwargs: object) -> None:
        RecordingManagedIdentity.built.append(client_id)
        super().__init__(client_id=client_id, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def managed_identities(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    RecordingManagedIdentity.built = []
    monkeypatch.setattr(azure.identity, "ManagedIdentityCredential", RecordingManagedIdentity)
    return RecordingManagedIdentity.built


def test_from_environment_uses_the_hosts_user_assigned_identity(
    managed_identities: list[str | None],
) -> None:
    env = {
        "AzureWebJobsStorage__tableServiceUri": "https://stsendmail.table.core.windows.net",
        "AzureWebJobsStorage__blobServiceUri": "https://stsendmail.blob.core.windows.net",
        "AzureWebJobsStorage__credential": "managedidentity",
        "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-0000000000c1",
    }
    ledger = ledger_from_environment(env)

    assert isinstance(ledger, TableSendLedger)
    assert ledger.table_client.url == "https://stsendmail.table.core.windows.net"
    assert ledger.table_client.account_name == "stsendmail"
    assert isinstance(ledger.table_client.credential, azure.identity.ManagedIdentityCredential)
    assert managed_identities == ["00000000-0000-0000-0000-0000000000c1"]


def test_from_environment_derives_the_table_uri_from_the_account_name(
    managed_identities: list[str | None],
) -> None:
    env = {
        "AzureWebJobsStorage__accountName": "stsendmail",
        "AzureWebJobsStorage__credential": "managedidentity",
    }
    ledger = ledger_from_environment(env)

    assert isinstance(ledger, TableSendLedger)
    assert ledger.table_client.url == "https://stsendmail.table.core.windows.net"
    assert managed_identities == [None]  # system-assigned


def test_from_environment_without_credential_setting_uses_default_credential() -> None:
    ledger = ledger_from_environment({"AzureWebJobsStorage__accountName": "stsendmail"})
    assert isinstance(ledger, TableSendLedger)
    assert isinstance(ledger.table_client.credential, azure.identity.DefaultAzureCredential)


def test_from_environment_prefers_the_connection_string(azurite: Azurite) -> None:
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "AzureWebJobsStorage__accountName": "stsendmail",
        "AzureWebJobsStorage__credential": "managedidentity",
    }
    ledger = ledger_from_environment(env)
    assert isinstance(ledger, TableSendLedger)
    assert ledger.table_client.url == azurite.table_endpoint


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "send ledger cannot be used: no storage configured: set AzureWebJobsStorage"),
        ({"AzureWebJobsStorage": "   "}, "no storage configured"),
        ({"AzureWebJobsStorage__credential": "managedidentity"}, "no storage configured"),
        ({"OtherStorage": "UseDevelopmentStorage=true"}, "no storage configured"),
        ({"AzureWebJobsStorage": "not a connection string"}, "settings are unusable"),
        (
            {
                "AzureWebJobsStorage__accountName": "stsendmail",
                "AzureWebJobsStorage__credential": "connectionstring",
            },
            "not supported",
        ),
        (
            {
                "AzureWebJobsStorage__tableServiceUri": "http://stsendmail.table.core.windows.net",
                "AzureWebJobsStorage__credential": "managedidentity",
            },
            "only supported with HTTPS",
        ),
    ],
)
def test_from_environment_says_clearly_when_it_cannot_build_a_ledger(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(LedgerUnavailable, match=message) as caught:
        ledger_from_environment(env)
    assert isinstance(caught.value, LedgerError)


def test_importing_the_module_does_not_import_the_azure_sdk() -> None:
    code = (
        "import sys, sendmail.sending.ledger; "
        "loaded = sorted(m for m in sys.modules if m.startswith('azure')); "
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_missing_azurite_install_fails_and_says_to_run_npm_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(azurite_emulator, "BIN_DIR", tmp_path / "node_modules" / ".bin")
    with (
        pytest.raises(azurite_support.AzuriteNotInstalled, match="run `npm ci`"),
        azurite_support.start_azurite(),
    ):
        pass
    # The fixtures fail (never skip) with the same words.
    with pytest.raises(pytest.fail.Exception, match="run `npm ci`"):
        next(azurite_support._fixture(("table",)))
