"""Pause, resume and cancel end to end: the real app under devhost against the SES look-alike of
``bench/`` (SES's latency and token-bucket rate, and a count of what it accepted per recipient:
the ground truth for "nobody twice" and for what counts as sent).

What is pinned: no ``SendEmail`` reaches SES more than 2 seconds after the pause or cancel answer;
a paused send survives devhost killed with SIGKILL and started again at once, and resumed sends
everyone else once; a canceled send ends with ``sent`` exactly what SES accepted and ``sent +
failed + canceled`` the total; a scheduled send canceled before its time ends at once with
everyone canceled. How far under 2 seconds is measured by ``make bench`` (bench/control.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devhost.process import REPO_ROOT, DevhostProcess
from tests.devhost.conftest import lookalike_env

pytestmark = pytest.mark.e2e

SENDER = "se@aifactory.page"
RATE = 100
#: The promise: nothing new starts later than this after the answer.
STOP_SECONDS = 2.0


@pytest.fixture(scope="module")
def ses() -> Iterator[Any]:
    from bench.ses_lookalike import start_lookalike

    with start_lookalike(rate=RATE, latency_ms=20, verified=[SENDER], seed=7) as handle:
        yield handle


@pytest.fixture(scope="module")
def host(ses: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    env = lookalike_env(ses.endpoint_url, SENDMAIL_SES_MAX_IN_FLIGHT_BATCHES="2")
    state: Path = tmp_path_factory.mktemp("control") / "state"
    process = DevhostProcess(REPO_ROOT, state, env=env, emulators=True)
    process.start(timeout=120)
    yield process
    process.kill()
    process.session.close()


def start_send(host: DevhostProcess, recipients: list[str], **extra: Any) -> str:
    body = {"senderEmail": SENDER, "recipientEmails": recipients, "subject": "s", "body": "b"}
    response = host.request("POST", "/api/v1/emails/aws-send", json={**body, **extra}, timeout=60)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def control(host: DevhostProcess, send_id: str, action: str) -> float:
    """POST the action; the monotonic time its answer arrived."""
    response = host.request("POST", f"/api/v1/emails/{send_id}/{action}", timeout=30)
    answered = time.monotonic()
    assert response.status_code == 200, response.text
    return answered


def status(host: DevhostProcess, send_id: str) -> tuple[int, dict[str, Any]]:
    response = host.request("GET", f"/api/v1/emails/{send_id}")
    return response.status_code, dict(response.json())


def finish(host: DevhostProcess, send_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, body = status(host, send_id)
        if code == 200:
            return body
        time.sleep(0.2)
    raise TimeoutError(send_id)


def sending(ses: Any, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while ses.stats()["accepted"] < at_least:
        assert time.monotonic() < deadline, "the send never got going"
        time.sleep(0.02)


def last_start(ses: Any) -> float:
    """When the latest SendEmail the look-alike accepted arrived (monotonic, system-wide)."""
    started = ses.stats()["started_monotonic"]
    return float(max(started + m["t"] for m in ses.messages()))


def counts(ses: Any, recipients: list[str]) -> dict[str, int]:
    delivered = ses.recipients()
    return {r: delivered.get(r, 0) for r in recipients}


def test_a_paused_send_stops_within_2_seconds_survives_a_kill_and_resumes_to_everyone_once(
    ses: Any, host: DevhostProcess
) -> None:
    ses.configure(rate=RATE, latency_ms=20, throttle=0, errors=0)
    ses.reset()
    recipients = [f"pause{i:04d}@example.com" for i in range(1200)]
    send_id = start_send(host, recipients)
    sending(ses, 200)

    answered = control(host, send_id, "pause")
    time.sleep(STOP_SECONDS + 1)

    assert last_start(ses) <= answered + STOP_SECONDS
    code, paused = status(host, send_id)
    assert (code, paused["state"]) == (202, "paused")
    accepted = ses.stats()["accepted"]
    assert accepted < len(recipients)
    # the worst moment for a crash: lanes waiting for the resume event
    host.restart(kill=True)
    time.sleep(STOP_SECONDS)
    assert ses.stats()["accepted"] == accepted  # still paused after the restart
    assert status(host, send_id)[1]["state"] == "paused"

    control(host, send_id, "resume")
    done = finish(host, send_id)

    assert done["state"] == "completed"
    assert done["progress"] == {
        "total": 1200,
        "sent": 1200,
        "failed": 0,
        "pending": 0,
        "canceled": 0,
    }
    delivered = counts(ses, recipients)
    assert [r for r, n in delivered.items() if n != 1] == []  # everyone, once


def test_a_canceled_send_counts_as_sent_exactly_what_ses_accepted_and_cancels_the_rest(
    ses: Any, host: DevhostProcess
) -> None:
    ses.configure(rate=RATE, latency_ms=20, throttle=0, errors=0)
    ses.reset()
    recipients = [f"cancel{i:04d}@example.com" for i in range(1200)]
    send_id = start_send(host, recipients)
    sending(ses, 200)

    answered = control(host, send_id, "cancel")
    done = finish(host, send_id)

    assert last_start(ses) <= answered + STOP_SECONDS
    assert done["state"] == "canceled"
    progress = done["progress"]
    accepted = sum(1 for n in counts(ses, recipients).values() if n)
    assert progress["sent"] == accepted
    assert progress["sent"] + progress["failed"] + progress["canceled"] == 1200
    assert progress["canceled"] > 0
    assert max(counts(ses, recipients).values()) == 1
    assert {f["code"] for f in done["failures"]} == {"CANCELED"}
    assert len(done["failures"]) == progress["canceled"]
    page = host.request(
        "GET",
        f"/api/v1/emails/{send_id}/recipients",
        params={"status": "canceled", "limit": 1000},
    ).json()
    shown = page["recipients"]
    assert len(shown) == progress["canceled"]
    assert {(r["status"], r["code"]) for r in shown} == {("canceled", "CANCELED")}
    again = host.request("POST", f"/api/v1/emails/{send_id}/cancel")
    assert (again.status_code, again.json()["changed"]) == (200, False)
    resumed = host.request("POST", f"/api/v1/emails/{send_id}/resume")
    assert resumed.status_code == 409
    assert resumed.json()["message"] == "The send has already ended; there is nothing to resume."


def test_a_paused_send_canceled_and_killed_at_once_ends_canceled_with_exact_accounting(
    ses: Any, host: DevhostProcess
) -> None:
    """Cancel while paused (the lanes wake from their wait and cancel what is left), with
    devhost killed right after the cancel's answer and started again at once."""
    ses.configure(rate=RATE, latency_ms=20, throttle=0, errors=0)
    ses.reset()
    recipients = [f"both{i:04d}@example.com" for i in range(1200)]
    send_id = start_send(host, recipients)
    sending(ses, 200)
    paused_at = control(host, send_id, "pause")
    time.sleep(1)

    control(host, send_id, "cancel")
    host.restart(kill=True)
    done = finish(host, send_id)

    assert last_start(ses) <= paused_at + STOP_SECONDS  # nothing after the pause
    assert done["state"] == "canceled"
    progress = done["progress"]
    delivered = counts(ses, recipients)
    assert progress["sent"] == sum(1 for n in delivered.values() if n)
    assert max(delivered.values()) == 1
    assert progress["sent"] + progress["failed"] + progress["canceled"] == 1200
    assert progress["failed"] == 0


def test_a_scheduled_send_canceled_before_its_time_ends_at_once_with_everyone_canceled(
    ses: Any, host: DevhostProcess
) -> None:
    ses.reset()
    recipients = ["later1@example.com", "later2@example.com", "later3@example.com"]
    when = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    send_id = start_send(host, recipients, scheduledAt=when)
    host.wait_for(send_id, ("Running",), timeout=30)

    control(host, send_id, "cancel")
    done = finish(host, send_id, timeout=60)

    assert done["state"] == "canceled"
    assert done["progress"] == {"total": 3, "sent": 0, "failed": 0, "pending": 0, "canceled": 3}
    page = host.request("GET", f"/api/v1/emails/{send_id}/recipients").json()
    assert [(r["email"], r["status"], r["code"]) for r in page["recipients"]] == [
        (r, "canceled", "CANCELED") for r in recipients
    ]
    assert ses.stats()["accepted"] == 0


def test_a_user_send_paused_before_its_time_starts_paused_and_resumed_sends_everyone_once(
    host: DevhostProcess,
) -> None:
    """The SMTP side, through devhost's TLS sink: at its time the send's lanes start, each
    connection's activity finds the send paused before it reads the password or logs in, and
    waits; resumed, every recipient gets one message."""
    recipients = [f"friend{i}@example.com" for i in range(6)]
    when = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    body = {
        "provider": "GMAIL",
        "senderEmail": "me@gmail.com",
        "password": "app-password",
        "recipientEmails": recipients,
        "subject": "s",
        "body": "b",
        "scheduledAt": when,
    }
    answer = host.request("POST", "/api/v1/emails/user-send", json=body, timeout=60)
    assert answer.status_code == 202, answer.text
    send_id = str(answer.json()["id"])

    control(host, send_id, "pause")
    time.sleep(4)  # past its time: started, paused

    def smtp_to() -> list[str]:
        messages = host.request("GET", "/_dev/outbox").json()["messages"]
        return [to for m in messages if m["transport"] == "smtp" for to in m["to"]]

    assert not set(recipients) & set(smtp_to())
    code, paused = status(host, send_id)
    assert (code, paused["state"]) == (202, "paused")
    control(host, send_id, "resume")
    done = finish(host, send_id, timeout=60)

    assert (done["state"], done["progress"]["sent"]) == ("completed", 6)
    assert sorted(to for to in smtp_to() if to in recipients) == sorted(recipients)
