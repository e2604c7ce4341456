"""The suppression list (in memory and on Azurite) and what it does to an SES batch: suppressed
recipients never reach SES and fail with SUPPRESSED, unsubscribed ones are skipped by marketing
sends (UNSUBSCRIBED); every message carries the send id tag."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from sendmail import services
from sendmail.contract.vocabulary import Category, FailureCode
from sendmail.feedback.ses_events import SEND_ID_TAG, RecipientEvent
from sendmail.feedback.suppression import (
    MemorySuppressionList,
    Suppression,
    SuppressionList,
    skipping_suppressed,
    suppressions_from_environment,
)
from sendmail.platform.blobs import MemoryBlobStore
from sendmail.platform.tables import TableUnavailable
from sendmail.sending.jobs import Mail, SesBatch, ledger_key
from sendmail.sending.ledger import MemorySendLedger, Recorded
from sendmail.sending.lists import store_send
from sendmail.sending.results import BatchReport, Delivery
from tests.support.azurite import Azurite
from tests.support.ses import ScriptedSes

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def entry(email: str, reason: Any = "BOUNCE", **extra: Any) -> Suppression:
    return Suppression(email=email, reason=reason, created=NOW, **extra)


@pytest.fixture(params=["memory", "table"])
def listed(request: pytest.FixtureRequest) -> Iterator[SuppressionList]:
    if request.param == "memory":
        yield MemorySuppressionList()
        return
    azurite: Azurite = request.getfixturevalue("azurite")
    table = suppressions_from_environment(
        {"AzureWebJobsStorage": azurite.connection_string},
        table_name="Suppressions" + uuid.uuid4().hex[:12],
    )
    yield table
    table.client.delete_table()


def test_an_address_is_listed_once_with_its_first_cause(listed: SuppressionList) -> None:
    first = entry(
        "gone@example.com",
        send_id="send1",
        message_id="m1",
        event_type="Bounce",
        sub_type="Permanent/General",
        diagnostic="smtp; 550 5.1.1 user unknown",
    )
    assert listed.add(first) is True
    assert listed.add(entry("gone@example.com", "COMPLAINT", send_id="send2")) is False
    [found] = listed.get("  Gone@Example.COM ")
    assert found.to_json() == {
        "email": "gone@example.com",
        "reason": "BOUNCE",
        "createdTime": "2026-12-01T10:00:00Z",
        "eventType": "Bounce",
        "subType": "Permanent/General",
        "diagnostic": "smtp; 550 5.1.1 user unknown",
    }
    assert listed.get("other@example.com") == []
    # kept (an operator reading the table can trace it), never answered: a send id opens its
    # caller's recipients, and the suppression routes are every operator's
    assert (found.send_id, found.message_id) == ("send1", "m1")


def test_removal_restores_an_address_and_says_whether_it_was_listed(
    listed: SuppressionList,
) -> None:
    listed.add(entry("a@example.com"))
    assert listed.remove("A@example.com") is True
    assert listed.get("a@example.com") == []
    assert listed.remove("a@example.com") is False


def test_lookup_finds_the_listed_among_many(listed: SuppressionList) -> None:
    for address in ("x1@example.com", "x2@other.example", "odd+tag~%@example.com"):
        listed.add(entry(address))
    recipients = [f"user{n}@example.com" for n in range(60)]
    recipients += ["X1@example.com", "x2@other.example", "odd+tag~%@example.com"]
    assert set(listed.lookup(recipients)) == {
        "x1@example.com",
        "x2@other.example",
        "odd+tag~%@example.com",
    }
    assert listed.lookup([]) == {}


def test_an_internationalised_domain_matches_its_ascii_form(listed: SuppressionList) -> None:
    """SES names recipients with their domain in ASCII (punycode) form, the form it was sent in
    (sendmail.contract.addresses); a recipient written with Unicode or full-width letters is the
    same address."""
    listed.add(entry("user@xn--bcher-kva.de"))
    listed.add(entry("user@example.com"))
    found = listed.lookup(["user@bücher.de", "USER@BÜCHER.DE", "user@\uff45xample.com"])
    assert set(found) == {"user@xn--bcher-kva.de", "user@example.com"}
    [got] = listed.get("User@Bücher.de")
    assert got.email == "user@xn--bcher-kva.de"


def test_a_crowded_domain_is_read_in_pages_unless_its_partition_is_large(
    azurite: Azurite,
) -> None:
    """30 recipients at a domain with 20 listed entries: one partition read. 10 recipients at a
    domain with 1,200 listed (over the 1,000 a read may go through for 10): one read per
    recipient. Two recipients at their own domains: one read each. The same answer either way,
    an address's unsubscribe entry included, in the same number of requests as when an address
    had one row (a read per recipient was a point read then; it is a range of the address's
    rows now)."""
    from sendmail.feedback.suppression import TableSuppressionList
    from sendmail.platform.tables import table_key

    table = suppressions_from_environment(
        {"AzureWebJobsStorage": azurite.connection_string},
        table_name="Suppressions" + uuid.uuid4().hex[:12],
    )
    assert isinstance(table, TableSuppressionList)
    table.add(entry("first@lonely.example"))  # creates the table
    for domain, count in (("small.example", 20), ("large.example", 1200)):
        rows = [
            {
                "PartitionKey": table_key(domain),
                "RowKey": table_key(f"user{n}"),
                "Email": f"user{n}@{domain}",
                "Reason": "BOUNCE",
                "CreatedTime": NOW,
            }
            for n in range(count)
        ]
        for start in range(0, count, 100):
            table.client.submit_transaction([("create", r) for r in rows[start : start + 100]])
    for address in ("user10@small.example", "user5@large.example", "user9000@large.example"):
        table.add(entry(address, "UNSUBSCRIBED"))
    calls = {"scan": 0, "address": 0, "point": 0}
    query, get = table.client.query_entities, table.client.get_entity

    def counted_query(query_filter: str, **kwargs: Any) -> Any:
        calls["address" if "RowKey" in query_filter else "scan"] += 1
        return query(query_filter, **kwargs)

    def counted_get(*args: Any, **kwargs: Any) -> Any:
        calls["point"] += 1
        return get(*args, **kwargs)

    table.client.query_entities = counted_query  # type: ignore[method-assign]
    table.client.get_entity = counted_get  # type: ignore[method-assign]
    try:
        batch = [f"user{n}@small.example" for n in range(10, 40)]  # 10 listed (10..19)
        batch += [f"USER{n}@large.example" for n in (5, 1199, 5000, 5001, 5002, 5003)]
        batch += [f"user{n}@large.example" for n in range(9000, 9004)]
        batch += ["first@lonely.example", "second@other.example"]
        found = table.lookup(batch)
    finally:
        table.client.delete_table()
    assert set(found) == {f"user{n}@small.example" for n in range(10, 20)} | {
        "user5@large.example",
        "user1199@large.example",
        "user9000@large.example",
        "first@lonely.example",
    }
    reasons = {address: [e.reason for e in entries] for address, entries in found.items()}
    assert reasons["user10@small.example"] == ["BOUNCE", "UNSUBSCRIBED"]  # by the scan
    assert reasons["user5@large.example"] == ["BOUNCE", "UNSUBSCRIBED"]  # by the address
    assert reasons["user9000@large.example"] == ["UNSUBSCRIBED"]
    assert reasons["user11@small.example"] == ["BOUNCE"]
    # a read per crowded domain; one per address elsewhere, as before
    assert calls == {"scan": 2, "address": 10 + 2, "point": 0}


def test_rows_written_before_unsubscribes_read_as_they_did(azurite: Azurite) -> None:
    """A row as the list wrote it when an address had one (RowKey = the local part's key, reason
    BOUNCE or COMPLAINT) is that address's delivery entry; an unsubscribe goes next to it, and
    neither hides the other. No local part's key is an unsubscribe row's, and an address's
    range holds its own rows only (``x.y`` and ``x0`` sort right after ``x``)."""
    from sendmail.platform.tables import table_key

    table = suppressions_from_environment(
        {"AzureWebJobsStorage": azurite.connection_string},
        table_name="Suppressions" + uuid.uuid4().hex[:12],
    )
    table.add(entry("creates@table.example"))
    for local, reason in (("old", "BOUNCE"), ("older", "COMPLAINT"), ("oldest", "Bounce?")):
        table.client.create_entity(
            {
                "PartitionKey": table_key("example.com"),
                "RowKey": table_key(local),
                "Email": f"{local}@example.com",
                "Reason": reason,
                "CreatedTime": NOW,
                "EventType": "Bounce" if reason != "COMPLAINT" else "Complaint",
            }
        )
    try:
        assert [e.reason for e in table.get("old@example.com")] == ["BOUNCE"]
        assert [e.reason for e in table.get("older@example.com")] == ["COMPLAINT"]
        assert [e.reason for e in table.get("oldest@example.com")] == ["BOUNCE"]
        assert table.add(entry("old@example.com", "UNSUBSCRIBED")) is True
        assert [e.reason for e in table.get("old@example.com")] == ["BOUNCE", "UNSUBSCRIBED"]
        assert [e.reason for e in table.get("older@example.com")] == ["COMPLAINT"]

        # "x!unsubscribed" is a local part whose key is "x~21unsubscribed", not x's unsubscribe
        for address in ("x!unsubscribed@example.com", "x.y@example.com", "x0@example.com"):
            table.add(entry(address))
        table.add(entry("x@example.com", "UNSUBSCRIBED"))
        assert [e.email for e in table.get("x@example.com")] == ["x@example.com"]
        assert [e.reason for e in table.get("x@example.com")] == ["UNSUBSCRIBED"]
        assert [e.reason for e in table.get("x!unsubscribed@example.com")] == ["BOUNCE"]
        assert table.get("x.@example.com") == []
    finally:
        table.client.delete_table()


def test_an_unsubscribe_and_a_bounce_are_both_kept_whichever_comes_first(
    listed: SuppressionList,
) -> None:
    later = datetime(2026, 12, 5, tzinfo=UTC)
    assert listed.add(entry("a@example.com", "UNSUBSCRIBED", send_id="s1")) is True
    assert listed.add(entry("a@example.com", "BOUNCE", event_type="Bounce")) is True
    assert listed.add(entry("b@example.com", "COMPLAINT")) is True
    assert listed.add(entry("b@example.com", "UNSUBSCRIBED")) is True
    # repeating an unsubscribe is harmless: the first entry stays, with its time
    again = Suppression(email="a@example.com", reason="UNSUBSCRIBED", created=later)
    assert listed.add(again) is False
    # a second delivery event changes nothing either (the first wins), unsubscribed or not
    assert listed.add(entry("a@example.com", "COMPLAINT")) is False

    a = listed.get("A@example.com")
    assert [(e.reason, e.created) for e in a] == [("BOUNCE", NOW), ("UNSUBSCRIBED", NOW)]
    assert a[1].send_id == "s1"  # kept for operators reading the table, never answered
    assert [e.reason for e in listed.get("b@example.com")] == ["COMPLAINT", "UNSUBSCRIBED"]
    found = listed.lookup(["a@example.com", "B@EXAMPLE.COM", "c@example.com"])
    assert {k: [e.reason for e in v] for k, v in found.items()} == {
        "a@example.com": ["BOUNCE", "UNSUBSCRIBED"],
        "b@example.com": ["COMPLAINT", "UNSUBSCRIBED"],
    }


def test_removal_takes_every_entry_or_the_one_named(listed: SuppressionList) -> None:
    for reason in ("BOUNCE", "UNSUBSCRIBED"):
        listed.add(entry("a@example.com", reason))
        listed.add(entry("b@example.com", reason))
    assert listed.remove("a@example.com", "COMPLAINT") is False  # its delivery entry is a bounce
    assert listed.remove("a@example.com", "BOUNCE") is True
    assert [e.reason for e in listed.get("a@example.com")] == ["UNSUBSCRIBED"]
    assert listed.remove("a@example.com", "BOUNCE") is False
    assert listed.remove("a@example.com", "UNSUBSCRIBED") is True
    assert listed.get("a@example.com") == []

    assert listed.remove("B@example.com") is True  # every entry
    assert listed.get("b@example.com") == []
    assert listed.lookup(["a@example.com", "b@example.com"]) == {}


def test_the_answer_lists_every_entry_and_repeats_the_first() -> None:
    from sendmail.contract.api_models import Suppression as SuppressionBody
    from sendmail.feedback.suppression import listing_json

    bounce = entry("a@example.com", event_type="Bounce", sub_type="Permanent/General")
    unsubscribe = entry("a@example.com", "UNSUBSCRIBED", send_id="s1")
    body = listing_json([bounce, unsubscribe])
    assert body == {
        "email": "a@example.com",
        "reason": "BOUNCE",
        "createdTime": "2026-12-01T10:00:00Z",
        "eventType": "Bounce",
        "subType": "Permanent/General",
        "entries": [
            {
                "reason": "BOUNCE",
                "createdTime": "2026-12-01T10:00:00Z",
                "eventType": "Bounce",
                "subType": "Permanent/General",
            },
            {"reason": "UNSUBSCRIBED", "createdTime": "2026-12-01T10:00:00Z"},
        ],
    }
    SuppressionBody.model_validate(body)  # the documented model takes it
    assert SuppressionBody.model_validate(listing_json([unsubscribe])).reason == "UNSUBSCRIBED"


def test_the_documented_reasons_are_the_lists() -> None:
    from typing import get_args

    from sendmail.contract.api_models import SuppressionReasonName
    from sendmail.feedback.ses_events import SuppressionReason

    assert get_args(SuppressionReasonName) == get_args(SuppressionReason)


def test_an_event_makes_an_entry_only_when_it_suppresses() -> None:
    bounce = RecipientEvent(
        type="Bounce",
        recipient="Gone@Example.com",
        timestamp=NOW,
        send_id="s",
        sub_type="Permanent/General",
        suppress="BOUNCE",
    )
    made = Suppression.from_event(bounce, NOW)
    assert made is not None
    assert (made.email, made.reason, made.send_id) == ("gone@example.com", "BOUNCE", "s")
    delivery = RecipientEvent(type="Delivery", recipient="a@example.com", timestamp=NOW)
    assert Suppression.from_event(delivery) is None


# --- what it does to a batch ------------------------------------------------------------------


class FakeSend:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, recipients: Sequence[str], on_sent: Any) -> BatchReport:
        self.calls.append(list(recipients))
        deliveries = []
        for position, recipient in enumerate(recipients):
            on_sent(position, f"id-{recipient}")
            deliveries.append(Delivery.sent(recipient, f"id-{recipient}"))
        return BatchReport(deliveries, rate=7.0)


def test_suppressed_recipients_are_skipped_and_reported_in_order() -> None:
    listed = MemorySuppressionList()
    listed.add(entry("b@example.com"))
    listed.add(entry("d@example.com", "COMPLAINT"))
    send = FakeSend()
    recorded: list[tuple[int, str]] = []
    report = skipping_suppressed(send, listed)(
        ["a@example.com", "B@example.com", "c@example.com", "d@example.com"],
        lambda index, message_id: recorded.append((index, message_id)),
    )
    assert send.calls == [["a@example.com", "c@example.com"]]
    # on_sent gets the index in the whole batch, not in what was sent
    assert recorded == [(0, "id-a@example.com"), (2, "id-c@example.com")]
    assert [(d.recipient, d.message_id, d.code) for d in report.deliveries] == [
        ("a@example.com", "id-a@example.com", None),
        ("B@example.com", None, FailureCode.SUPPRESSED),
        ("c@example.com", "id-c@example.com", None),
        ("d@example.com", None, FailureCode.SUPPRESSED),
    ]
    assert report.rate == 7.0
    message = report.deliveries[3].message or ""
    assert "complaint" in message
    assert "DELETE /api/v1/suppressions" in message


def test_a_batch_with_nobody_suppressed_is_sent_as_it_is() -> None:
    send = FakeSend()
    report = skipping_suppressed(send, MemorySuppressionList())(["a@x.example"], lambda *_: None)
    assert send.calls == [["a@x.example"]]
    assert report.deliveries[0].ok


BOUNCED, UNSUBSCRIBED, BOTH, CLEAN = (
    "bounced@example.com",
    "unsubscribed@example.com",
    "both@example.com",
    "clean@example.com",
)


@pytest.mark.parametrize(
    ("marketing", "bounces", "expected"),
    [
        # transactional, suppression on: only bounces and complaints are skipped
        (False, True, {BOUNCED: "SUPPRESSED", BOTH: "SUPPRESSED"}),
        # marketing: unsubscribes too; an address with both is SUPPRESSED
        (True, True, {BOUNCED: "SUPPRESSED", UNSUBSCRIBED: "UNSUBSCRIBED", BOTH: "SUPPRESSED"}),
        # marketing with SENDMAIL_SUPPRESSION_ENABLED=false: unsubscribes are still honoured
        (True, False, {UNSUBSCRIBED: "UNSUBSCRIBED", BOTH: "UNSUBSCRIBED"}),
    ],
    ids=["transactional", "marketing", "marketing-suppression-off"],
)
def test_what_a_batch_skips_depends_on_the_send_and_the_setting(
    marketing: bool, bounces: bool, expected: dict[str, str]
) -> None:
    listed = MemorySuppressionList()
    listed.add(entry(BOUNCED))
    listed.add(entry(UNSUBSCRIBED, "UNSUBSCRIBED"))
    listed.add(entry(BOTH, "COMPLAINT"))
    listed.add(entry(BOTH, "UNSUBSCRIBED"))
    send = FakeSend()
    recipients = [BOUNCED, UNSUBSCRIBED, BOTH, CLEAN]

    report = skipping_suppressed(send, listed, marketing=marketing, bounces=bounces)(
        recipients, lambda *_: None
    )

    assert send.calls == [[r for r in recipients if r not in expected]]
    failed = {d.recipient: d.code for d in report.deliveries if not d.ok}
    assert failed == expected
    for delivery in report.deliveries:
        assert "@" not in (delivery.message or "")  # never the address
        if delivery.code == FailureCode.UNSUBSCRIBED:
            assert "unsubscribed on 2026-12-01" in (delivery.message or "")
            assert "transactional mail still is" in (delivery.message or "")


def test_with_nothing_to_check_no_lookup_is_made() -> None:
    listed = MemorySuppressionList()
    listed.add(entry("a@example.com"))
    send = FakeSend()
    report = skipping_suppressed(send, listed, marketing=False, bounces=False)(
        ["a@example.com"], lambda *_: None
    )
    assert report.deliveries[0].ok
    assert listed.lookups == 0


def test_a_lookup_that_fails_sends_nothing() -> None:
    from azure.data.tables import TableClient

    from sendmail.feedback.suppression import TableSuppressionList

    nothing_listens = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "TableEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    )
    table = TableSuppressionList(
        TableClient.from_connection_string(nothing_listens, table_name="Nothing", retry_total=0)
    )
    send = FakeSend()
    with pytest.raises(TableUnavailable):
        skipping_suppressed(send, table)(["a@example.com"], lambda *_: None)
    assert send.calls == []


# --- the SES activity, against moto ---------------------------------------------------------


SEND_ID = "sendabc"


def run_activity(
    app_functions: dict[str, Any],
    recipients: list[str],
    start: int = 0,
    category: Category = "transactional",
) -> tuple[dict[str, Any], dict[int, Recorded]]:
    """Run the SES activity on the batch ``start ..`` of a send whose list is ``recipients``:
    (its tally, the ledger's outcomes of the batch)."""
    store_send(
        services.blobs(),
        SEND_ID,
        recipients,
        Mail(sender="se@aifactory.page", subject="s", body="b", category=category),
    )
    key = ledger_key(SEND_ID, start)
    batch = SesBatch(ledgerKey=key, listRef=SEND_ID, start=start, count=len(recipients) - start)
    result: dict[str, Any] = app_functions["send_ses_batch"].get_user_function()(
        batch.model_dump(mode="json")
    )
    return result, services.ledger().outcomes(key)


@pytest.fixture
def activity_ses(sesv2_client: Any, verified_sender: str) -> ScriptedSes:
    from sendmail.platform.settings import get_settings
    from sendmail.sending.ses import SesSender

    wire = ScriptedSes().install(sesv2_client)
    services.override(ses=SesSender(sesv2_client, settings=get_settings()))
    return wire


def test_the_ses_activity_skips_suppressed_recipients_and_tags_every_message(
    app_functions: dict[str, Any], activity_ses: ScriptedSes
) -> None:
    services.suppressions().add(entry("bad@example.com"))
    # the batch is the send's recipients 1 and 2 (the first is another batch's)
    result, outcomes = run_activity(
        app_functions, ["other@example.com", "ok@example.com", "bad@example.com"], start=1
    )

    assert (result["sent"], result["failed"], result.get("pending", 0)) == (1, 1, 0)
    assert set(outcomes) == {0, 1}  # indices within the batch
    assert outcomes[0].sent
    assert (outcomes[1].sent, outcomes[1].code) == (False, "SUPPRESSED")
    [sent] = activity_ses.bodies  # SES saw the one recipient not suppressed
    assert sent["Destination"] == {"ToAddresses": ["ok@example.com"]}
    assert sent["EmailTags"] == [{"Name": SEND_ID_TAG, "Value": SEND_ID}]


def test_with_suppression_off_the_activity_sends_to_everyone(
    app_functions: dict[str, Any], activity_ses: ScriptedSes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDMAIL_SUPPRESSION_ENABLED", "false")
    from sendmail.platform.settings import get_settings

    get_settings.cache_clear()
    listed = services.suppressions()
    listed.add(entry("bad@example.com"))
    result, outcomes = run_activity(app_functions, ["ok@example.com", "bad@example.com"])
    assert (result["sent"], result["failed"]) == (2, 0)
    assert len(outcomes) == 2
    assert all(o.sent for o in outcomes.values())
    assert len(activity_ses.bodies) == 2
    assert isinstance(listed, MemorySuppressionList)
    assert listed.lookups == 0  # not even asked


def test_with_suppression_off_marketing_still_skips_the_unsubscribed_and_transactional_does_not(
    app_functions: dict[str, Any], activity_ses: ScriptedSes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Consent is not a tuning knob: SENDMAIL_SUPPRESSION_ENABLED=false stops bounce and
    complaint skipping, never the unsubscribes of marketing mail."""
    from sendmail.platform.settings import get_settings
    from sendmail.sending.unsubscribe import new_key

    monkeypatch.setenv("SENDMAIL_SUPPRESSION_ENABLED", "false")
    monkeypatch.setenv("SENDMAIL_PUBLIC_BASE_URL", "https://mail.example.com")
    monkeypatch.setenv("SENDMAIL_UNSUBSCRIBE_KEYS", new_key())
    get_settings.cache_clear()
    services.suppressions().add(entry("left@example.com", "UNSUBSCRIBED"))
    services.suppressions().add(entry("bounced@example.com", "BOUNCE"))
    everyone = ["ok@example.com", "left@example.com", "bounced@example.com"]

    result, outcomes = run_activity(app_functions, everyone, category="marketing")

    assert (result["sent"], result["failed"]) == (2, 1)
    assert (outcomes[1].sent, outcomes[1].code) == (False, "UNSUBSCRIBED")
    assert sorted(b["Destination"]["ToAddresses"][0] for b in activity_ses.bodies) == [
        "bounced@example.com",  # (calls run concurrently: in any order)
        "ok@example.com",
    ]

    activity_ses.bodies.clear()
    services.override(blobs=MemoryBlobStore(), ledger=MemorySendLedger())  # the send anew
    result, _ = run_activity(app_functions, everyone, category="transactional")

    assert (result["sent"], result["failed"]) == (3, 0)
    assert len(activity_ses.bodies) == 3
