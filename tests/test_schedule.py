"""Scheduled sends (``scheduledAt``): validated at admission, admitted against the whole daily
quota without a reservation, the password kept until its time, ``state: scheduled`` on the status
route, and — through the real SDK and devhost's replay, with a clock the test controls — a 30-day
wait made of 3-day generations before the send reads the quota again, and a cancel that ends the
wait at once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import azure.durable_functions as df
import pytest

from activities.names import FINISH_SEND, READ_CONTROL, START_SCHEDULED
from devhost.durable.history import COMPLETED, CONTINUED_AS_NEW, EventType, event
from devhost.durable.replay import EpisodeResult
from orchestrators.names import SES_ORCHESTRATOR
from orchestrators.send import bp as send_orchestrators
from sendmail import services
from sendmail.admission.reservations import MemoryReservations
from sendmail.contract.errors import ValidationFailed
from sendmail.contract.models import AwsEmailRequest, Limits, parse_request
from sendmail.sending.control import CANCEL_EVENT
from sendmail.sending.jobs import SesJob
from sendmail.sending.secrets import SECRET_LIFETIME
from sendmail.sending.ses import SendQuota
from tests.devhost.test_replay import Replayer, scheduled
from tests.support.durable import FakeDurableClient, status
from tests.support.engine import index_once
from tests.support.http import StubQuota, call

#: The send orchestrators alone, indexed once (an app's functions can be listed once).
ORCHESTRATORS = df.DFApp()
ORCHESTRATORS.register_functions(send_orchestrators)
LIMITS = Limits(max_recipients=5, max_subject_chars=50, max_body_bytes=100, max_schedule_days=30)
SEND = {
    "senderEmail": "se@aifactory.page",
    "recipientEmails": ["a@example.com", "b@example.com"],
    "subject": "s",
    "body": "b",
}


def at(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


def parse(scheduled: Any) -> AwsEmailRequest:
    raw = json.dumps({**SEND, "scheduledAt": scheduled}).encode()
    return parse_request(AwsEmailRequest, raw, LIMITS)


def test_a_time_ahead_is_kept_in_utc_and_a_time_just_past_means_now() -> None:
    seoul = (datetime.now(UTC) + timedelta(days=2)).astimezone(datetime.now().astimezone().tzinfo)
    ahead = parse(seoul.isoformat())
    assert ahead.scheduled
    assert ahead.scheduledAt == seoul
    assert ahead.scheduledAt is not None
    assert ahead.scheduledAt.tzinfo == UTC
    assert not parse(at(-timedelta(seconds=30))).scheduled  # clocks differ: send now


@pytest.mark.parametrize(
    ("scheduled", "expected"),
    [
        (-timedelta(minutes=2), "scheduledAt must not be in the past"),
        (timedelta(days=30, minutes=1), "scheduledAt must be at most 30 days ahead"),
        ("2026-12-24T09:00:00", "scheduledAt must be an RFC 3339 date-time with an offset"),
        ("next tuesday", "scheduledAt must be an RFC 3339 date-time with an offset"),
    ],
    ids=["past", "too-far", "no-offset", "not-a-time"],  # stable ids: xdist workers compare them
)
def test_a_bad_time_is_400(scheduled: timedelta | str, expected: str) -> None:
    when = at(scheduled) if isinstance(scheduled, timedelta) else scheduled
    with pytest.raises(ValidationFailed) as info:
        parse(when)
    assert expected in info.value.message


def send(app_functions: dict[str, Any], route: str, body: dict[str, Any], client: Any) -> Any:
    name = route.replace("-", "_")  # the function's name
    return call(
        app_functions, name, f"/api/v1/emails/{route}", method="POST", body=body, client=client
    )


def test_a_scheduled_aws_send_reserves_nothing_and_is_refused_only_past_the_whole_quota(
    app_functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What is left of today's quota says nothing about the send's day: only a send larger
    than the whole 24-hour quota is refused; the reservation is made when its time comes."""
    quota = StubQuota(SendQuota(max_24_hour_send=3, max_send_rate=14, sent_last_24_hours=3))
    monkeypatch.setattr(services, "ses_sender", lambda: quota)
    reservations = MemoryReservations()
    services.override(reservations=reservations)
    client = FakeDurableClient()
    when = at(timedelta(days=3))

    accepted = send(app_functions, "aws-send", {**SEND, "scheduledAt": when}, client)
    now = send(app_functions, "aws-send", SEND, client)
    too_big = {**SEND, "scheduledAt": when, "recipientEmails": [f"r{i}@x.com" for i in range(4)]}
    refused = send(app_functions, "aws-send", too_big, client)

    assert accepted.status_code == 202, accepted.get_body()
    assert now.status_code == 429  # sent now, it needs what is left today
    assert refused.status_code == 429
    assert "the SES 24-hour quota is 3" in json.loads(refused.get_body())["message"]
    assert reservations.rows == {}
    [(name, job)] = client.started
    assert name == SES_ORCHESTRATOR
    assert SesJob.model_validate(job).scheduledAt == datetime.fromisoformat(when)


def test_the_status_route_says_scheduled_and_when(
    app_functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    quota = StubQuota()
    monkeypatch.setattr(services, "ses_sender", lambda: quota)
    client = FakeDurableClient()
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=5)
    started = send(app_functions, "aws-send", {**SEND, "scheduledAt": when.isoformat()}, client)
    instance_id = json.loads(started.get_body())["id"]

    def state(custom: Any) -> dict[str, Any]:
        client.statuses[instance_id] = [
            status(
                instance_id,
                SES_ORCHESTRATOR,
                "Running" if custom else "Pending",
                custom_status=custom,
            )
        ]
        answer = call(
            app_functions,
            "email_status",
            f"/api/v1/emails/{instance_id}",
            route_params={"id": instance_id},
            client=client,
        )
        assert answer.status_code == 202
        body: dict[str, Any] = json.loads(answer.get_body())
        return body

    before = state(None)  # before the orchestration's first episode: the record says when
    waiting = state({"state": "scheduled", "scheduledAt": when.isoformat()})
    running = state(
        {"total": 2, "sent": 0, "failed": 0, "pending": 0, "batches": 1, "done": 0, "lanes": 1}
    )

    assert (before["state"], before["scheduledAt"]) == (
        "scheduled",
        when.isoformat().replace("+00:00", "Z"),
    )
    assert before["progress"] == {"total": 2, "sent": 0, "failed": 0, "pending": 0, "canceled": 0}
    assert waiting["state"] == "scheduled"
    assert running["state"] == "running"


def test_a_scheduled_user_sends_password_is_kept_until_a_lifetime_past_its_time(
    app_functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sendmail.sending.sealing import new_key

    monkeypatch.setenv("SENDMAIL_SEALING_KEY", new_key())
    from sendmail.platform.settings import get_settings

    get_settings.cache_clear()
    stored: list[tuple[str, datetime | None]] = []
    real = services.secrets()
    monkeypatch.setattr(
        real, "put", lambda ref, secret, *, expires=None: stored.append((ref, expires))
    )
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(days=20)
    body = {**SEND, "provider": "GMAIL", "senderEmail": "me@gmail.com", "password": "app-pw"}

    answer = send(
        app_functions, "user-send", {**body, "scheduledAt": when.isoformat()}, FakeDurableClient()
    )

    assert answer.status_code == 202, answer.get_body()
    [(_, expires)] = stored
    assert expires == when + SECRET_LIFETIME


def _scheduled_replay(days: float) -> tuple[Replayer, datetime]:
    index = index_once(ORCHESTRATORS)
    replay = Replayer(index, SES_ORCHESTRATOR, None)
    when = replay.now + timedelta(days=days, seconds=1)
    job = SesJob(
        listRef="s1", total=2, batchSize=500, lanes=1, deadlineSeconds=600, scheduledAt=when
    )
    replay.input = job.model_dump_json()
    return replay, when


def _next_generation(replay: Replayer, result: EpisodeResult) -> EpisodeResult:
    """What the host does at a ``continue_as_new``: a new execution, its history from nothing,
    the new input (devhost's engine does the same: tests/devhost/test_continue_as_new.py)."""
    assert result.status == CONTINUED_AS_NEW
    replay.history = []
    replay.input = result.continue_as_new_input or ""
    return replay.start()


def test_a_30_day_schedule_waits_in_3_day_generations_then_reads_the_quota() -> None:
    """Each generation waits one plain timer of at most 3 days (below the extension's
    maximumShortTimerDuration, 6 days, so the SDK never makes a LongTimerTask, whose later
    timers would sit outside the task_any with the cancel event: orchestrators/send.py), then
    continues as new; the last one waits until the time itself and reads the quota. A clock
    the test moves stands for the 30 days."""
    replay, when = _scheduled_replay(30)

    result = replay.start()

    assert json.loads(result.custom_status or "")["state"] == "scheduled"
    fires: list[datetime] = []
    generations = 1
    while not result.activities:
        if result.status == CONTINUED_AS_NEW:
            result = _next_generation(replay, result)
            generations += 1
            continue
        (timer,) = result.timers
        assert timer.fire_at - replay.now <= timedelta(days=3)
        fires.append(timer.fire_at)
        replay.now = timer.fire_at - timedelta(seconds=1)  # the next episode adds a second
        result = replay.episode(replay.fired(timer.timer_id))
        assert generations < 20
    assert generations == 10  # ten waits of at most 3 days (each episode moves the clock 1 s)
    assert {b - a for a, b in pairwise(fires[:-1])} == {timedelta(days=3, seconds=1)}
    assert fires[-1] == when
    assert [a.name for a in result.activities] == [START_SCHEDULED]


@pytest.mark.parametrize("days", [1, 20], ids=["within-a-step", "steps-later"])
def test_a_cancel_wakes_a_scheduled_send_at_once_and_it_ends_with_everyone_canceled(
    days: int,
) -> None:
    """The control event wins the task_any over the timer: the host's walk goes on at once
    (its WhenAny completes), the parent reads the record (READ_CONTROL), and a canceled send
    finishes with every recipient canceled and nothing sent — whether the event comes in the
    first generation's wait or a later one's."""
    replay, _ = _scheduled_replay(days)
    result = replay.start()
    if days > 3:  # a later generation
        (timer,) = result.timers
        replay.now = timer.fire_at - timedelta(seconds=1)
        result = _next_generation(replay, replay.episode(replay.fired(timer.timer_id)))
    (timer,) = result.timers

    woken = replay.episode(
        event(EventType.EVENT_RAISED, replay.now, Name=CANCEL_EVENT, Input='"cancel"')
    )

    [(read_id, read, send_id)] = scheduled(woken)
    assert (read, send_id) == (READ_CONTROL, "inst-1")
    canceling = replay.episode(replay.completed(read_id, "canceled"))
    [(finish_id, finish, counts)] = scheduled(canceling)
    assert (finish, counts) == (
        FINISH_SEND,
        # "unsettled": no batch counted them, finish_send does (sendmail.recipients.canceled)
        {"id": "inst-1", "sent": 0, "failed": 0, "canceled": 2, "unsettled": 2},
    )
    ended = replay.episode(replay.completed(finish_id, None))
    assert ended.status == COMPLETED
    assert json.loads(ended.output or "") == {
        "kind": "ses",
        "total": 2,
        "sent": 0,
        "failed": 0,
        "canceled": 2,
    }


def test_a_wake_for_a_send_not_canceled_waits_on_in_a_new_generation() -> None:
    """Events only wake: a parent woken while its record does not say canceled waits on."""
    replay, when = _scheduled_replay(2)
    replay.start()
    woken = replay.episode(
        event(EventType.EVENT_RAISED, replay.now, Name=CANCEL_EVENT, Input='"cancel"')
    )
    [(read_id, _, _)] = scheduled(woken)

    again = replay.episode(replay.completed(read_id, "paused"))

    assert again.status == CONTINUED_AS_NEW
    (timer,) = _next_generation(replay, again).timers
    assert timer.fire_at == when


def test_a_retry_after_the_time_passed_finds_its_send_and_a_new_request_is_400(
    app_functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same request with its Idempotency-Key answers the same send, even once its time is
    more than a minute past; without a send under the key, that time is a 400."""
    from sendmail.admission.idempotency import MemoryIdempotencyStore
    from sendmail.contract import models

    quota = StubQuota()
    monkeypatch.setattr(services, "ses_sender", lambda: quota)
    services.override(idempotency=MemoryIdempotencyStore())
    client = FakeDurableClient()
    body = {**SEND, "scheduledAt": at(timedelta(seconds=90))}

    def post(key: str) -> Any:
        return call(
            app_functions,
            "aws_send",
            "/api/v1/emails/aws-send",
            method="POST",
            body=body,
            headers={"Idempotency-Key": key},
            client=client,
        )

    first = post("retry-later")
    assert first.status_code == 202, first.get_body()

    class Later(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return datetime.now(tz) + timedelta(minutes=10)

    monkeypatch.setattr(models, "datetime", Later)
    again = post("retry-later")
    other = post("another-key")

    assert again.status_code == 202, again.get_body()
    assert json.loads(again.get_body())["id"] == json.loads(first.get_body())["id"]
    assert len(client.started) == 1
    assert other.status_code == 400
    assert "scheduledAt must not be in the past" in json.loads(other.get_body())["message"]
