"""The real app under devhost against an SES that behaves like SES under load.

SES here is the look-alike of ``bench/`` in its own process: 20 ms per call, SES's token-bucket
rate limit answering 429, throttling storms and 5xx on demand, and a count of what it accepted
per recipient — the ground truth for "everyone, once". The app runs with its Azurite ledger and
real orchestrations; devhost is killed with SIGKILL (alone, or its whole process group) in the
middle of a send and started again at once on the same state.

These tests pin behaviour (nobody lost, nobody twice beyond the calls in flight, throttling kept
rare at the configured rate), not speed: speed is measured by ``make bench``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devhost.process import REPO_ROOT, DevhostProcess
from tests.devhost.conftest import lookalike_env

pytestmark = pytest.mark.e2e

SENDER = "se@aifactory.page"
#: SendEmail calls one batch keeps in flight at most, in these tests.
CONCURRENCY = 8
LANES = 4


@pytest.fixture(scope="module")
def ses() -> Iterator[Any]:
    from bench.ses_lookalike import start_lookalike

    with start_lookalike(rate=100, latency_ms=20, verified=[SENDER], seed=5) as handle:
        yield handle


@pytest.fixture
def host(ses: Any, tmp_path: Path) -> Iterator[DevhostProcess]:
    env = lookalike_env(
        ses.endpoint_url,
        SENDMAIL_SES_MAX_IN_FLIGHT_BATCHES=str(LANES),
        SENDMAIL_SES_MAX_CONCURRENCY=str(CONCURRENCY),
    )
    process = DevhostProcess(REPO_ROOT, tmp_path / "state", env=env, emulators=True)
    process.start(timeout=120)
    yield process
    process.kill()
    process.session.close()


def configure(ses: Any, **changes: Any) -> None:
    ses.configure(**{"rate": 100, "latency_ms": 20, "throttle": 0, "errors": 0, **changes})
    ses.reset()


def start_send(host: DevhostProcess, recipients: list[str]) -> str:
    body = {"senderEmail": SENDER, "recipientEmails": recipients, "subject": "s", "body": "b"}
    response = host.request("POST", "/api/v1/emails/aws-send", json=body, timeout=60)
    assert response.status_code == 202, response.text
    return str(response.headers["Location"])


def finish(host: DevhostProcess, location: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = host.session.get(location, headers={"x-functions-key": host.key}, timeout=30)
        if response.status_code == 200:
            return dict(response.json())
        time.sleep(0.2)
    raise TimeoutError(location)


def delivered_once(ses: Any, recipients: list[str]) -> tuple[list[str], int]:
    counts = ses.recipients()
    lost = [r for r in recipients if counts.get(r, 0) == 0]
    duplicated = sum(n - 1 for n in counts.values() if n > 1)
    return lost, duplicated


def test_at_the_accounts_rate_everyone_is_sent_once_and_throttling_stays_rare(
    ses: Any, host: DevhostProcess
) -> None:
    configure(ses, rate=100)
    recipients = [f"steady{i:04d}@example.com" for i in range(600)]

    status = finish(host, start_send(host, recipients))

    assert status["progress"] == {
        "total": 600,
        "sent": 600,
        "failed": 0,
        "pending": 0,
        "canceled": 0,
    }
    assert delivered_once(ses, recipients) == ([], 0)
    stats = ses.stats()
    throttled = stats["throttled_rate"] + stats["throttled_injected"]
    assert throttled <= 0.05 * stats["accepted"], stats
    assert stats["max_in_flight"] > 1  # the batches really send concurrently


def test_a_throttling_storm_costs_time_never_a_recipient(ses: Any, host: DevhostProcess) -> None:
    configure(ses, rate=100, throttle=0.3, errors=0.02)
    recipients = [f"storm{i:04d}@example.com" for i in range(300)]

    status = finish(host, start_send(host, recipients))

    assert status["progress"]["sent"] == 300
    assert status["failures"] == []
    assert delivered_once(ses, recipients) == ([], 0)
    stats = ses.stats()
    assert stats["throttled_injected"] > 30  # the storm did happen
    assert stats["errors_5xx"] > 0


@pytest.mark.parametrize("kill", ["devhost", "process group"])
def test_killed_mid_send_and_restarted_at_once_only_calls_in_flight_can_go_twice(
    ses: Any, host: DevhostProcess, kill: str, record_property: Any
) -> None:
    configure(ses, rate=300, latency_ms=50)
    recipients = [f"crash{i:04d}@example.com" for i in range(1500)]
    location = start_send(host, recipients)
    deadline = time.monotonic() + 60
    while ses.stats()["accepted"] < 400:
        assert time.monotonic() < deadline, "the send never got going"
        time.sleep(0.02)
    read_at = time.monotonic()
    gauges = host.request("GET", "/_dev/inflight").json()
    # calls answered or not, and successes gathered for the ledger's next group write
    in_flight = gauges["sesCallsInFlight"] + gauges["unwrittenLedgerRecords"]
    if kill == "devhost":
        host.kill()
    else:
        host.kill_group()
    killed_at = time.monotonic()
    # calls that could start between reading the count and the kill: the rate, plus one each
    # lane's pacing may let through at once
    started_meanwhile = math.ceil(300 * (killed_at - read_at)) + LANES
    host.start(timeout=120)

    status = finish(host, location)

    lost, duplicated = delivered_once(ses, recipients)
    record_property("in_flight_at_kill", in_flight)
    record_property("duplicated", duplicated)
    print(  # the figures, visible with -s or -rA
        f"\n{kill} kill -9: {in_flight} SendEmail calls in flight or not yet written; "
        f"{duplicated} duplicated, {len(lost)} lost"
    )
    assert status["progress"]["sent"] == 1500
    assert lost == []
    assert sorted(status["messageIds"]) == sorted(set(status["messageIds"]))
    # Only a call in flight at the kill (sent, its answer or its ledger record not back yet) can
    # go out twice. The count was read just before the kill.
    assert duplicated <= in_flight + started_meanwhile
    started = ses.stats()["started_monotonic"]
    first_sent: dict[str, float] = {}
    for message in ses.messages():
        for recipient in message["Recipients"]:
            first_sent.setdefault(recipient, started + message["t"])
    counts = ses.recipients()
    twice = [r for r in recipients if counts.get(r, 0) > 1]
    # and never a message sent well before the kill (a lost ledger record would be one)
    assert all(killed_at - first_sent[r] < 2.0 for r in twice), "an old send was repeated"


def test_a_send_is_refused_with_429_while_the_work_item_queue_is_saturated_then_accepted(
    ses: Any, tmp_path: Path
) -> None:
    """v1's "batch queue saturated" 429, from devhost's mirror of the task hub's work-item
    queue in Azurite (the queue the app's probe reads in Azure too)."""
    configure(ses, rate=40, latency_ms=50)
    env = lookalike_env(
        ses.endpoint_url,
        SENDMAIL_SES_MAX_IN_FLIGHT_BATCHES=str(LANES),
        SENDMAIL_MAX_QUEUED_BATCHES="2",
    )
    host = DevhostProcess(REPO_ROOT, tmp_path / "state", env=env, emulators=True)
    host.start(timeout=120)
    try:
        first = start_send(host, [f"fill{i:03d}@example.com" for i in range(400)])
        time.sleep(1.0)  # its four lanes' batches are on the queue now
        body = {
            "senderEmail": SENDER,
            "recipientEmails": ["next@example.com"],
            "subject": "s",
            "body": "b",
        }
        refused = host.request("POST", "/api/v1/emails/aws-send", json=body)
        assert refused.status_code == 429, refused.text
        assert "internal batch queue is saturated" in refused.json()["message"]
        assert int(refused.headers["Retry-After"]) > 0
        finish(host, first)
        accepted = host.request("POST", "/api/v1/emails/aws-send", json=body)
        assert accepted.status_code == 202, accepted.text
        finish(host, accepted.headers["Location"])
        assert ses.recipients().get("next@example.com") == 1
    finally:
        host.kill()
        host.session.close()


def test_two_sends_that_fit_the_daily_quota_one_at_a_time_but_not_together(
    ses: Any, host: DevhostProcess
) -> None:
    """Admission reserves each send's recipients; the second of two concurrent sends that
    would together overrun the 24-hour quota is refused up front with 429."""
    from concurrent.futures import ThreadPoolExecutor

    configure(ses, rate=100, daily_quota=1000)
    try:

        def post(n: int) -> Any:
            recipients = [f"quota{n}-{i:03d}@example.com" for i in range(600)]
            body = {
                "senderEmail": SENDER,
                "recipientEmails": recipients,
                "subject": "s",
                "body": "b",
            }
            return host.request("POST", "/api/v1/emails/aws-send", json=body, timeout=60)

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(post, range(2)))

        assert sorted(a.status_code for a in answers) == [202, 429]
        [refused] = [a for a in answers if a.status_code == 429]
        assert "reserved by sends still running" in refused.json()["message"]
        [accepted] = [a for a in answers if a.status_code == 202]
        finish(host, accepted.headers["Location"])
        # done: what it used SES counts, the rest of its reservation is free again
        rest = [f"after{i:03d}@example.com" for i in range(400)]
        status = finish(host, start_send(host, rest))
        assert status["progress"]["sent"] == 400
        assert ses.stats()["quota_exceeded"] == 0  # SES never had to refuse anyone
    finally:
        configure(ses, daily_quota=50_000)
