"""The account guard (sendmail/admission/guard.py, api/account.py): rates over a trailing window
from counted events, the trip (bounces, complaints, SES's enforcement status), what a trip does
to running and new sends, the operator's reset, and the guard's table on Azurite."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrators.names import LANE_ORCHESTRATOR, SES_ORCHESTRATOR
from sendmail import services
from sendmail.admission.guard import (
    RETRY_AFTER_SECONDS,
    AccountGuard,
    Counts,
    GuardState,
    MemoryGuardStore,
    TableGuardStore,
)
from sendmail.contract.errors import ServiceUnavailable
from sendmail.feedback.ses_events import RecipientEvent
from sendmail.feedback.webhooks.config import WebhookConfig
from sendmail.feedback.webhooks.outbox import MemoryWebhookQueue
from sendmail.feedback.webhooks.signing import new_secret
from sendmail.platform.settings import Settings
from sendmail.sending.jobs import Mail
from sendmail.sending.lists import store_send
from sendmail.sending.sends import SendRecord
from tests.support.azurite import Azurite, fresh_table
from tests.support.durable import FakeDurableClient, status
from tests.support.http import StubQuota, call

NOW = datetime(2026, 12, 6, 12, 30, tzinfo=UTC)
SETTINGS = Settings(SENDMAIL_GUARD_MIN_SAMPLE=100)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def guard(store: Any = None, settings: Settings = SETTINGS) -> tuple[AccountGuard, Clock]:
    clock = Clock()
    return AccountGuard(store or MemoryGuardStore(), settings, clock), clock


# --- the rates and the trip ---------------------------------------------------------------------


def test_the_rates_are_judged_only_from_the_minimum_sample() -> None:
    checked, _ = guard()
    assert checked.judge(Counts(delivered=50, bounced=40)) is None  # 90 < 100: says nothing
    reason = checked.judge(Counts(delivered=96, bounced=4))
    assert reason == "bounce rate 4.00% over the last 24 hours (4 of 100) reached 4.00%"
    assert checked.judge(Counts(delivered=97, bounced=3)) is None
    complaint = checked.judge(Counts(delivered=1000, complained=1))
    assert complaint is not None
    assert complaint.startswith("complaint rate 0.100% over the last 24 hours (1 of 1000)")
    assert checked.judge(Counts(delivered=2000, complained=1)) is None  # 0.05% < 0.08%


def test_counts_in_the_window_trip_once_and_older_hours_fall_out() -> None:
    checked, clock = guard()
    assert checked.observe(Counts(delivered=60, bounced=3)) is None  # sample 63: too few
    clock.now += timedelta(hours=23)
    tripped = checked.observe(Counts(delivered=40, bounced=2))  # 5 of 105 in the window
    assert tripped is not None
    assert (tripped.state, tripped.since) == ("tripped", clock.now)
    assert checked.observe(Counts(bounced=5)) is None  # already tripped: nothing new
    assert checked.state(fresh=True).state == "tripped"
    clock.now += timedelta(hours=2)  # the first hour left the window
    assert checked.rates().sample == 40 + 2 + 5


def test_deliveries_alone_never_trip_and_reset_lets_go() -> None:
    checked, _ = guard()
    assert checked.observe(Counts(delivered=10_000)) is None
    assert checked.trip("SES reports the account's enforcement status as PROBATION") is not None
    assert checked.trip("again") is None
    assert checked.reset() is True
    assert checked.reset() is False
    assert checked.state() == GuardState()


def test_while_tripped_only_bulk_sends_are_refused_with_503() -> None:
    checked, _ = guard()
    checked.admit("marketing", 5)  # ok: not tripped
    checked.trip("bounce rate 6.00% …")
    with pytest.raises(ServiceUnavailable) as refused:
        checked.admit("marketing", 5)
    assert refused.value.headers == {"Retry-After": str(RETRY_AFTER_SECONDS)}
    assert "POST /api/v1/account/guard/reset" in refused.value.message
    with pytest.raises(ServiceUnavailable):
        checked.admit("transactional", SETTINGS.SENDMAIL_GUARD_BULK_RECIPIENTS + 1)
    checked.admit("transactional", SETTINGS.SENDMAIL_GUARD_BULK_RECIPIENTS)  # small: flows


# --- the table ----------------------------------------------------------------------------------


def test_the_table_adds_concurrent_counts_exactly_and_changes_state_once(azurite: Azurite) -> None:
    store = TableGuardStore(fresh_table(azurite, "Guard"))
    threads = [
        threading.Thread(target=lambda: store.add("h2026120612", Counts(1, 1, 0))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.add("h2026120510", Counts(100, 0, 0))  # outside the window below

    assert store.window("h2026120600", "h2026120623") == Counts(8, 8, 0)
    tripped = GuardState("tripped", "why", NOW)
    assert store.set_state(tripped, only_from="ok") is True
    assert store.set_state(GuardState("tripped", "other", NOW), only_from="ok") is False
    assert store.state() == tripped
    assert store.set_state(GuardState(), only_from="tripped") is True
    assert store.state() == GuardState()


# --- a trip, through the SNS route's counting, and the operator's routes -------------------------


def bounce(address: str) -> RecipientEvent:
    return RecipientEvent("Bounce", address, NOW, sub_type="General", suppress="BOUNCE")


def delivery(address: str) -> RecipientEvent:
    return RecipientEvent("Delivery", address, NOW)


@pytest.fixture
def queue() -> MemoryWebhookQueue:
    settings = Settings(
        SENDMAIL_WEBHOOK_URLS="https://hooks.example.com/in", SENDMAIL_WEBHOOK_SECRET=new_secret()
    )
    queued = MemoryWebhookQueue()
    services.override(
        webhooks=WebhookConfig.from_settings(settings),
        webhook_queue=queued,
        guard=AccountGuard(MemoryGuardStore(), SETTINGS),
    )
    return queued


def a_send(send_id: str, total: int, category: str = "transactional", **changes: Any) -> None:
    store_send(
        services.blobs(),
        send_id,
        [f"r{i}@example.com" for i in range(total)],
        Mail(sender="se@aifactory.page", subject="s", body="b", category=category),
    )
    record = SendRecord(
        id=send_id,
        kind="ses",
        total=total,
        lanes=1,
        batch_size=500,
        list_ref=send_id,
        created=NOW,
    )
    services.sends().create(replace(record, **changes))


def types(queue: MemoryWebhookQueue) -> list[str]:
    return [json.loads(json.loads(m)["body"])["type"] for m, _ in queue.messages]


def test_a_trip_pauses_the_bulk_sends_as_the_guards_and_the_reset_resumes_them(
    app_functions: dict[str, Any], queue: MemoryWebhookQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.sns import _guard

    monkeypatch.setattr(services, "ses_sender", StubQuota)
    a_send("marketing", 3, "marketing")
    a_send("big", SETTINGS.SENDMAIL_GUARD_BULK_RECIPIENTS + 1)
    a_send("receipt", 1)
    a_send("mine", 500, control="paused", paused_by="caller", control_seq=1)
    a_send("done", 500, finished=NOW, sent=500, failed=0)

    _guard([delivery(f"d{i}@example.com") for i in range(95)])
    _guard([bounce(f"b{i}@example.com") for i in range(5)])  # 5% of 100

    sends = services.sends()
    state = {
        i: (r.control, r.paused_by)
        for i in ("marketing", "big", "receipt", "mine")
        if (r := sends.get(i)) is not None
    }
    assert state == {
        "marketing": ("paused", "guard"),
        "big": ("paused", "guard"),
        "receipt": ("running", None),  # small transactional mail keeps flowing
        "mine": ("paused", "both"),  # the caller's pause, held by the guard too
    }
    # send.paused for the two that were running; "mine" was paused already (now held by both)
    assert types(queue) == ["send.paused"] * 2 + ["account.guard_tripped"]
    tripped = json.loads(json.loads(queue.messages[-1][0])["body"])
    assert tripped["data"]["pausedSends"] == 3
    assert "sendId" not in tripped["data"]
    assert tripped["data"]["reason"].startswith("bounce rate 5.00%")

    # the caller cannot lift it
    client = FakeDurableClient()
    for send_id in ("marketing", "big", "mine"):
        client.statuses[send_id] = [status(send_id, SES_ORCHESTRATOR, "Running")]
        lane = f"{send_id}:lane0"
        client.statuses[lane] = [status(lane, LANE_ORCHESTRATOR, "Running")]
    refused = call(
        app_functions,
        "email_resume",
        "/api/v1/emails/marketing/resume",
        method="POST",
        route_params={"id": "marketing"},
        client=client,
    )
    assert refused.status_code == 409
    shown = json.loads(call(app_functions, "account_get", "/api/v1/account").get_body())
    assert shown["guard"]["state"] == "tripped"
    assert shown["rates"] == {
        "windowHours": 24.0,
        "sample": 100,
        "bounced": 5,
        "complained": 0,
        "bounceRate": 0.05,
        "complaintRate": 0.0,
    }

    reset = call(
        app_functions,
        "account_guard_reset",
        "/api/v1/account/guard/reset",
        method="POST",
        client=client,
    )

    body = json.loads(reset.get_body())
    assert (reset.status_code, body["wasTripped"], body["resumedSends"]) == (200, True, 2)
    assert body["guard"] == {"state": "ok", "reason": None, "since": None}
    for send_id, after in [
        ("marketing", ("running", None)),
        ("big", ("running", None)),
        ("mine", ("paused", "caller")),  # the caller's own pause stays
    ]:
        record = sends.get(send_id)
        assert record is not None
        assert (record.control, record.paused_by) == after
        assert (f"{send_id}:lane0", f"control-{record.control_seq}", '"resume"') in client.raised


def test_an_enforcement_status_of_probation_trips_the_guard_at_once(
    app_functions: dict[str, Any], queue: MemoryWebhookQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    class OnProbation(StubQuota):
        def account(self) -> dict[str, Any]:
            return {"ProductionAccessEnabled": True, "EnforcementStatus": "PROBATION"}

    monkeypatch.setattr(services, "ses_sender", OnProbation)
    a_send("marketing", 3, "marketing")

    answer = call(app_functions, "account_get", "/api/v1/account")

    body = json.loads(answer.get_body())
    assert (body["sandbox"], body["enforcementStatus"]) == (False, "PROBATION")
    assert body["guard"]["state"] == "tripped"
    assert "PROBATION" in body["guard"]["reason"]
    record = services.sends().get("marketing")
    assert record is not None
    assert record.paused_by == "guard"
    assert types(queue) == ["send.paused", "account.guard_tripped"]


def test_a_tripped_guard_refuses_a_bulk_aws_send_with_503_and_admits_a_receipt(
    app_functions: dict[str, Any], queue: MemoryWebhookQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "ses_sender", StubQuota)
    services.guard().trip("bounce rate 6.00% …")
    client = FakeDurableClient()
    body = {
        "senderEmail": "se@aifactory.page",
        "recipientEmails": ["a@example.com"],
        "subject": "s",
        "body": "b",
    }

    def send(extra: dict[str, Any]) -> Any:
        return call(
            app_functions,
            "aws_send",
            "/api/v1/emails/aws-send",
            method="POST",
            body={**body, **extra},
            client=client,
        )

    bulk = [f"r{i}@example.com" for i in range(SETTINGS.SENDMAIL_GUARD_BULK_RECIPIENTS + 1)]
    refused = send({"recipientEmails": bulk})  # bulk by size, whatever its category
    admitted = send({})

    assert refused.status_code == 503
    envelope = json.loads(refused.get_body())
    assert (envelope["status"], envelope["error"]) == (503, "Service Unavailable")
    assert envelope["message"].startswith("Bulk sending is paused by the account guard")
    assert refused.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert admitted.status_code == 202
    assert len(client.started) == 1


def test_an_admission_that_reads_probation_trips_the_guard_before_admitting(
    app_functions: dict[str, Any], queue: MemoryWebhookQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Preflight's cached GetAccount says PROBATION: the guard trips on the request itself, which
    (bulk) is refused 503; a receipt still goes out."""
    from sendmail.admission.preflight import SesAccount

    class Preflight:
        def account(self, *, fresh: bool = False) -> SesAccount:
            return SesAccount(True, "PROBATION", True, 50_000, 14, 0)

        def check(self, sender: str, recipients: Any) -> None:
            return None

    monkeypatch.setattr(services, "ses_sender", StubQuota)
    services.override(preflight=Preflight())
    client = FakeDurableClient()
    body = {"senderEmail": "se@aifactory.page", "subject": "s", "body": "b"}
    bulk = [f"r{i}@example.com" for i in range(SETTINGS.SENDMAIL_GUARD_BULK_RECIPIENTS + 1)]

    def send(recipients: list[str]) -> Any:
        return call(
            app_functions,
            "aws_send",
            "/api/v1/emails/aws-send",
            method="POST",
            body={**body, "recipientEmails": recipients},
            client=client,
        )

    assert send(bulk).status_code == 503
    assert send(["buyer@example.com"]).status_code == 202
    state = services.guard().state(fresh=True)
    assert state.state == "tripped"
    assert state.reason == "SES reports the account's enforcement status as PROBATION"
    assert types(queue) == ["account.guard_tripped"]


def test_an_unusable_guard_table_never_fails_the_sns_route(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """SNS would deliver the notification again for ever: the events, suppressions and webhooks
    were done; only the count is lost (logged)."""
    from api.sns import _guard
    from sendmail.platform.tables import TableUnavailable

    def unusable() -> AccountGuard:
        raise TableUnavailable("the guard's table cannot be used: no storage configured")

    monkeypatch.setattr(services, "guard", unusable)

    _guard([bounce("b@example.com")])

    assert "could not count SES's events" in caplog.text
