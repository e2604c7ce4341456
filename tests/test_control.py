"""Pause, resume and cancel: the rules (sendmail/sending/control.py), the record's atomic change
(in memory and on Azurite, with a write lost to a concurrent one), the watch the batch
activities read, and the three routes (api/control.py): status codes, the envelope, the events
raised, the webhooks queued."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrators.names import LANE_ORCHESTRATOR, SES_ORCHESTRATOR
from sendmail import services
from sendmail.feedback.webhooks.config import WebhookConfig
from sendmail.feedback.webhooks.outbox import MemoryWebhookQueue
from sendmail.feedback.webhooks.signing import new_secret
from sendmail.platform.settings import Settings
from sendmail.sending.control import (
    CANCEL_EVENT,
    ControlConflict,
    Halt,
    apply,
    control_event,
    decide,
    watching,
)
from sendmail.sending.sends import MemorySends, SendRecord, SendsTable, TableSends
from tests.support.azurite import Azurite, fresh_table
from tests.support.durable import FakeDurableClient, status
from tests.support.http import call

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def record(**changes: Any) -> SendRecord:
    base = SendRecord(
        id="send-1",
        kind="ses",
        total=30,
        lanes=3,
        batch_size=10,
        list_ref="send-1",
        created=NOW - timedelta(minutes=5),
    )
    return replace(base, **changes)


# --- the rules ----------------------------------------------------------------------------------

RUNNING = record()
PAUSED = record(control="paused", paused_by="caller", control_seq=1)
GUARDED = record(control="paused", paused_by="guard", control_seq=1)
BOTH = record(control="paused", paused_by="both", control_seq=2)
CANCELED = record(control="canceled", control_seq=1)


@pytest.mark.parametrize(
    ("action", "before", "by", "after"),
    [
        ("pause", RUNNING, "caller", ("paused", "caller")),
        ("pause", PAUSED, "caller", None),
        ("pause", GUARDED, "caller", ("paused", "both")),  # the caller's pause held too
        ("pause", PAUSED, "guard", ("paused", "both")),  # the guard holds a caller's pause too
        ("pause", BOTH, "guard", None),
        ("resume", BOTH, "guard", ("paused", "caller")),  # the reset leaves the caller's pause
        ("resume", BOTH, "caller", ("paused", "guard")),  # ... and the caller's the guard's
        ("pause", GUARDED, "guard", None),
        ("resume", PAUSED, "caller", ("running", None)),
        ("resume", RUNNING, "caller", None),
        ("resume", GUARDED, "guard", ("running", None)),  # the guard's reset
        ("resume", PAUSED, "guard", None),  # ... never lifts a caller's pause
        ("cancel", BOTH, "caller", ("canceled", None)),
        ("cancel", RUNNING, "caller", ("canceled", None)),
        ("cancel", PAUSED, "caller", ("canceled", None)),
        ("cancel", GUARDED, "caller", ("canceled", None)),
        ("cancel", CANCELED, "caller", None),
    ],
    ids=lambda v: v.control if isinstance(v, SendRecord) else str(v),
)
def test_what_each_action_does_in_each_state(
    action: Any, before: SendRecord, by: Any, after: tuple[str, str | None] | None
) -> None:
    changed = decide(action, before, ended=False, now=NOW, by=by)
    if after is None:
        assert changed is None
        return
    assert changed is not None
    assert (changed.control, changed.paused_by) == after
    assert changed.control_seq == before.control_seq + 1
    assert changed.control_at == NOW


@pytest.mark.parametrize(
    ("action", "before", "ended", "message"),
    [
        ("resume", RUNNING, True, "The send has already ended; there is nothing to resume."),
        ("pause", RUNNING, True, "The send has already ended; there is nothing to pause."),
        ("cancel", RUNNING, True, "The send has already ended; there is nothing to cancel."),
        ("pause", CANCELED, False, "The send was canceled; it cannot be paused."),
        ("resume", CANCELED, False, "The send was canceled; it cannot be resumed."),
        ("resume", GUARDED, False, "POST /api/v1/account/guard/reset"),
    ],
    ids=[
        "resume-ended",
        "pause-ended",
        "cancel-ended",
        "pause-canceled",
        "resume-canceled",
        "resume-guarded",
    ],
)
def test_what_the_state_does_not_allow_is_a_conflict(
    action: Any, before: SendRecord, ended: bool, message: str
) -> None:
    with pytest.raises(ControlConflict) as info:
        decide(action, before, ended=ended, now=NOW)
    assert message in info.value.message


def test_a_finished_record_is_ended_and_a_canceled_one_may_be_canceled_again() -> None:
    finished = record(finished=NOW, sent=30, failed=0)
    with pytest.raises(ControlConflict):
        decide("pause", finished, ended=False, now=NOW)
    assert decide("cancel", replace(CANCELED, finished=NOW), ended=True, now=NOW) is None


# --- the record, changed atomically -------------------------------------------------------------


@pytest.fixture(params=["memory", "table"])
def sends(request: pytest.FixtureRequest) -> SendsTable:
    if request.param == "memory":
        return MemorySends()
    azurite: Azurite = request.getfixturevalue("azurite")
    return TableSends(fresh_table(azurite, "Sends"))


def test_a_change_is_stored_with_its_number_and_time(sends: SendsTable) -> None:
    sends.create(record())
    assert apply(sends, "send-1", "pause", ended=lambda: False, now=NOW) == (
        record(control="paused", paused_by="caller", control_seq=1, control_at=NOW),
        True,
    )
    again = apply(sends, "send-1", "pause", ended=lambda: False, now=NOW + timedelta(seconds=1))
    assert again is not None
    assert again[1] is False
    assert sends.get("send-1") == again[0]
    assert apply(sends, "nobody", "pause", ended=lambda: False, now=NOW) is None


def test_ended_is_asked_only_of_a_record_not_finished(sends: SendsTable) -> None:
    sends.create(record())
    asked: list[int] = []

    def ended() -> bool:
        asked.append(1)
        return True

    with pytest.raises(ControlConflict):
        apply(sends, "send-1", "resume", ended=ended, now=NOW)
    sends.finish("send-1", 30, 0, NOW)
    with pytest.raises(ControlConflict):
        apply(sends, "send-1", "resume", ended=ended, now=NOW)
    assert asked == [1]


def test_a_change_that_loses_a_race_is_decided_again_on_what_won(azurite: Azurite) -> None:
    """The table's ETag: a cancel written between this pause's read and its write makes the
    write fail (412); the pause is decided again on the canceled record — a conflict, not a
    pause over a cancel."""
    client = fresh_table(azurite, "Sends")
    sends = TableSends(client)
    sends.create(record())
    other = TableSends(client)
    reads: list[str] = []

    def pause(current: SendRecord) -> SendRecord | None:
        reads.append(current.control)
        if len(reads) == 1:  # another route cancels it first
            apply(other, "send-1", "cancel", ended=lambda: False, now=NOW)
        return decide("pause", current, ended=False, now=NOW)

    with pytest.raises(ControlConflict):
        sends.change_control("send-1", pause)

    assert reads == ["running", "canceled"]
    stored = sends.get("send-1")
    assert stored is not None
    assert (stored.control, stored.control_seq) == ("canceled", 1)


# --- what the batch activities read -------------------------------------------------------------


def test_the_watch_sees_a_change_within_its_interval_and_is_shared_by_a_sends_batches() -> None:
    sends = MemorySends()
    sends.create(record())
    with watching(sends, "send-1", interval=0.05) as first, watching(sends, "send-1") as second:
        assert first is second
        assert first.held() is None
        apply(sends, "send-1", "pause", ended=lambda: False, now=NOW)
        deadline = time.monotonic() + 2
        while first.held() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (first.held(), first.seq) == ("paused", 1)
    with watching(sends, "send-1") as third:  # the last one closed it: a new watch
        assert third is not first
        assert third.held() == "paused"  # read when the batch starts


def test_a_watch_whose_reads_fail_keeps_the_last_state(caplog: pytest.LogCaptureFixture) -> None:
    sends = MemorySends()
    sends.create(record(control="paused", paused_by="caller", control_seq=4))
    failing = threading.Event()
    real_get = sends.get

    def get(send_id: str) -> SendRecord | None:
        if failing.is_set():
            raise RuntimeError("table down")
        return real_get(send_id)

    sends.get = get  # type: ignore[method-assign]
    with watching(sends, "send-1", interval=0.02) as watch:
        assert watch.held() == "paused"
        failing.set()
        time.sleep(0.1)
        assert (watch.held(), watch.seq) == ("paused", 4)
    assert caplog.text.count("could not be read") == 1  # once, not every interval


# --- the routes ---------------------------------------------------------------------------------


@pytest.fixture
def queue() -> MemoryWebhookQueue:
    settings = Settings(
        SENDMAIL_WEBHOOK_URLS="https://hooks.example.com/in",
        SENDMAIL_WEBHOOK_SECRET=new_secret(),
        SENDMAIL_WEBHOOK_EVENTS="send.paused,send.resumed,send.canceled,send.completed",
    )
    queued = MemoryWebhookQueue()
    services.override(webhooks=WebhookConfig.from_settings(settings), webhook_queue=queued)
    return queued


def control(
    app_functions: dict[str, Any], client: FakeDurableClient, action: str, send_id: str = "send-1"
) -> tuple[int, dict[str, Any]]:
    response = call(
        app_functions,
        f"email_{action}",
        f"/api/v1/emails/{send_id}/{action}",
        method="POST",
        route_params={"id": send_id},
        client=client,
    )
    return response.status_code, json.loads(response.get_body())


def running(client: FakeDurableClient, runtime: str = "Running", lanes: int = 3) -> None:
    client.statuses["send-1"] = [status("send-1", SES_ORCHESTRATOR, runtime)]
    for n in range(lanes):
        lane = f"send-1:lane{n}"
        client.statuses[lane] = [status(lane, LANE_ORCHESTRATOR, runtime)]


def resumed_events(lane: str, seq: int) -> list[tuple[str, str, str]]:
    return [(lane, control_event(seq), '"resume"'), (lane, control_event(seq - 1), '"resume"')]


def webhook_types(queued: MemoryWebhookQueue) -> list[tuple[str, str]]:
    bodies = [json.loads(json.loads(message)["body"]) for message, _ in queued.messages]
    return [(b["type"], b["data"]["state"]) for b in bodies]


def test_pause_resume_cancel_change_the_record_wake_the_lanes_and_queue_webhooks(
    app_functions: dict[str, Any], queue: MemoryWebhookQueue
) -> None:
    services.sends().create(record(metadata={"campaign": "spring"}))
    client = FakeDurableClient()
    running(client)
    lanes = [f"send-1:lane{n}" for n in range(3)]

    paused = control(app_functions, client, "pause")
    again = control(app_functions, client, "pause")
    raised_after_pauses = list(client.raised)
    resumed = control(app_functions, client, "resume")
    resumed_again = control(app_functions, client, "resume")
    canceled = control(app_functions, client, "cancel")

    assert paused == (
        200,
        {
            "id": "send-1",
            "state": "paused",
            "changed": True,
            "statusUrl": "http://localhost:7071/api/v1/emails/send-1",
        },
    )
    assert (again[0], again[1]["changed"]) == (200, False)
    assert (resumed[1]["state"], resumed[1]["changed"]) == ("running", True)
    assert (resumed_again[1]["state"], resumed_again[1]["changed"]) == ("running", False)
    assert (canceled[1]["state"], canceled[1]["changed"]) == ("canceled", True)
    # every change wakes every lane with its own number; a repeated resume wakes them again;
    # a cancel wakes the parent too
    assert raised_after_pauses == [(lane, control_event(1), '"pause"') for lane in lanes]
    assert sorted(client.raised[3:]) == sorted(
        [
            # each change's event and the one before it (a change made without a Durable client,
            # the guard's, raises none)
            *(e for lane in lanes for e in resumed_events(lane, 2)),
            *(e for lane in lanes for e in resumed_events(lane, 2)),
            *(
                e
                for lane in lanes
                for e in (
                    (lane, control_event(3), '"cancel"'),
                    (lane, control_event(2), '"cancel"'),
                )
            ),
            ("send-1", CANCEL_EVENT, '"cancel"'),
        ]
    )
    stored = services.sends().get("send-1")
    assert stored is not None
    assert (stored.control, stored.control_seq) == ("canceled", 3)
    # send.canceled goes out when the send has stopped (with its counts), not here
    assert webhook_types(queue) == [("send.paused", "paused"), ("send.resumed", "running")]
    first = json.loads(json.loads(queue.messages[0][0])["body"])
    assert first["data"]["metadata"] == {"campaign": "spring"}


@pytest.mark.parametrize(
    ("action", "runtime", "control_state", "message"),
    [
        (
            "resume",
            "Completed",
            "running",
            "The send has already ended; there is nothing to resume.",
        ),
        (
            "cancel",
            "Completed",
            "running",
            "The send has already ended; there is nothing to cancel.",
        ),
        ("pause", "Running", "canceled", "The send was canceled; it cannot be paused."),
    ],
    ids=["resume-finished", "cancel-finished", "pause-canceled"],
)
def test_what_the_state_does_not_allow_is_409_in_the_envelope(
    app_functions: dict[str, Any], action: str, runtime: str, control_state: Any, message: str
) -> None:
    services.sends().create(record(control=control_state, control_seq=1))
    client = FakeDurableClient()
    running(client, runtime)

    code, body = control(app_functions, client, action)

    assert code == 409
    assert body["message"] == message
    assert set(body) == {"timestamp", "status", "error", "message", "path"}
    assert (body["status"], body["error"]) == (409, "Conflict")
    assert body["path"] == f"/api/v1/emails/send-1/{action}"
    assert client.raised == []


def test_canceling_a_canceled_send_that_ended_is_200(app_functions: dict[str, Any]) -> None:
    services.sends().create(record(control="canceled", control_seq=1, finished=NOW, canceled=30))
    client = FakeDurableClient()
    running(client, "Completed")

    code, body = control(app_functions, client, "cancel")

    assert (code, body["state"], body["changed"]) == (200, "canceled", False)


@pytest.mark.parametrize("send_id", ["nobody", "../etc", "x" * 101], ids=["unknown", "bad", "long"])
def test_an_unknown_send_is_404(app_functions: dict[str, Any], send_id: str) -> None:
    code, body = control(app_functions, FakeDurableClient(), "pause", send_id)
    assert code == 404
    assert body["status"] == 404


def test_a_scheduled_send_paused_before_its_time_is_shown_paused_and_canceled_wakes_its_parent(
    app_functions: dict[str, Any],
) -> None:
    services.sends().create(record(scheduled_at=datetime.now(UTC) + timedelta(days=2)))
    client = FakeDurableClient()
    client.statuses["send-1"] = [status("send-1", SES_ORCHESTRATOR, "Running")]  # no lanes yet

    resumed = control(app_functions, client, "resume")
    paused = control(app_functions, client, "pause")
    canceled = control(app_functions, client, "cancel")

    assert resumed[1]["state"] == "scheduled"
    assert paused[1]["state"] == "paused"
    assert canceled[1]["state"] == "canceled"
    # lanes that do not exist yet answer 404: nothing to wake, nothing failed
    assert ("send-1", CANCEL_EVENT, '"cancel"') in client.raised


def test_a_wake_up_that_cannot_be_delivered_is_logged_and_the_change_stands(
    app_functions: dict[str, Any], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.control

    monkeypatch.setattr(api.control, "RAISE_RETRY_SECONDS", 0.001)
    services.sends().create(record(lanes=1, control="paused", paused_by="caller", control_seq=1))
    client = FakeDurableClient()
    running(client, lanes=1)
    client.raise_answers = [500, 503] * 3  # both events fail all their attempts

    code, body = control(app_functions, client, "resume")

    assert (code, body["state"]) == (200, "running")
    assert "2 of 2 wake-ups for the resume were not delivered" in caplog.text
    stored = services.sends().get("send-1")
    assert stored is not None
    assert stored.control == "running"


@pytest.mark.parametrize(
    ("control_state", "shown"),
    [("running", "running"), ("paused", "paused"), ("canceled", "canceled")],
    ids=["running", "paused", "canceled"],
)
def test_the_status_route_shows_the_control_state_at_once(
    app_functions: dict[str, Any], control_state: Any, shown: str
) -> None:
    """Paused and canceled show as soon as the record says so (the lanes stop within 2 s); a
    canceled send's answer stays 202 until its counts are final."""
    services.sends().create(record(control=control_state, control_seq=1))
    client = FakeDurableClient()
    lane = {"total": 10, "sent": 4, "failed": 0, "pending": 2, "canceled": 3}
    client.statuses["send-1"] = [
        status("send-1", SES_ORCHESTRATOR, "Running", custom_status={"total": 30, "lanes": 3})
    ]
    for n in range(3):
        client.statuses[f"send-1:lane{n}"] = [
            status(f"send-1:lane{n}", LANE_ORCHESTRATOR, "Running", custom_status=lane)
        ]

    response = call(
        app_functions,
        "email_status",
        "/api/v1/emails/send-1",
        route_params={"id": "send-1"},
        client=client,
    )

    body = json.loads(response.get_body())
    assert (response.status_code, body["state"]) == (202, shown)
    assert body["progress"] == {
        "total": 30,
        "sent": 12,
        "failed": 0,
        "pending": 6,
        "canceled": 9,
    }


def test_a_batch_reports_the_state_that_stopped_it_even_after_a_quick_resume() -> None:
    """A pause and a resume within one watch interval: the batch stopped on the pause must come
    back held (the lane runs it again after the next change), not with recipients left pending
    that a run without a deadline (SMTP) would fail for good."""
    sends = MemorySends()
    sends.create(record())
    with watching(sends, "send-1", interval=60) as watch:
        halt = Halt(watch)
        assert halt() is False
        assert halt.held() is None
        apply(sends, "send-1", "pause", ended=lambda: False, now=NOW)
        watch.refresh()
        assert halt() is True
        apply(sends, "send-1", "resume", ended=lambda: False, now=NOW)
        watch.refresh()  # running again before the batch returns
        assert halt.held() == ("paused", 1)


def test_a_second_holder_of_a_pause_queues_no_webhook(
    app_functions: dict[str, Any], queue: MemoryWebhookQueue
) -> None:
    """send.paused and send.resumed say the send stopped or went on: a caller's pause of a send
    the guard already holds, and its resume, change who holds it, not the send."""
    services.sends().create(record(control="paused", paused_by="guard", control_seq=1))
    client = FakeDurableClient()
    running(client)

    paused = control(app_functions, client, "pause")
    resumed = control(app_functions, client, "resume")

    assert (paused[1]["state"], paused[1]["changed"]) == ("paused", True)
    assert (resumed[1]["state"], resumed[1]["changed"]) == ("paused", True)
    stored = services.sends().get("send-1")
    assert stored is not None
    assert stored.paused_by == "guard"
    assert queue.messages == []
