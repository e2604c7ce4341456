"""The SES look-alike (bench/ses_lookalike.py), a real subprocess driven by real boto3 clients."""

from __future__ import annotations

import re
import threading
import time
import urllib.error
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError

from bench import naive
from bench.ses_lookalike import LookalikeHandle, TokenBucket, start_lookalike

SENDER = "se@aifactory.page"
REGION = "ap-northeast-2"
CONTENT = {"Simple": {"Subject": {"Data": "안녕하세요"}, "Body": {"Text": {"Data": "본문"}}}}
BASE: dict[str, Any] = {
    "rate": 1000,
    "burst_seconds": 1,
    "latency_ms": 0,
    "jitter_ms": 0,
    "throttle": 0,
    "errors": 0,
    "drop_before": 0,
    "drop_after": 0,
    "daily_quota": 50_000,
    "verified": [SENDER],
    "seed": 7,
}


def make_client(service: str, endpoint_url: str) -> Any:
    """A plain boto3 client; botocore makes one attempt per call (no retries of its own)."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        service,  # type: ignore[call-overload]
        region_name=REGION,
        endpoint_url=endpoint_url,
        aws_access_key_id="any",
        aws_secret_access_key="any",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def server() -> Iterator[LookalikeHandle]:
    with start_lookalike(**BASE) as handle:
        yield handle


@pytest.fixture
def lookalike(server: LookalikeHandle) -> LookalikeHandle:
    """The module's server with the base configuration and empty accounting."""
    server.configure(**BASE)
    server.reset()
    return server


@pytest.fixture(scope="module")
def sesv2(server: LookalikeHandle) -> Any:
    return make_client("sesv2", server.endpoint_url)


def send(client: Any, recipient: str, sender: str = SENDER, **extra: Any) -> str:
    destination = {"ToAddresses": [recipient], **extra}
    response = client.send_email(FromEmailAddress=sender, Destination=destination, Content=CONTENT)
    return str(response["MessageId"])


def outcome(call: Callable[[], Any]) -> str:
    """'ok', or the botocore error code / exception class name."""
    try:
        call()
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    except ConnectionClosedError:
        return "ConnectionClosedError"
    return "ok"


def test_send_email_accepts_and_returns_a_unique_message_id(lookalike, sesv2):
    ids = [send(sesv2, f"user{i}@example.com") for i in range(5)]

    assert len(set(ids)) == 5
    assert all(re.fullmatch(r"0100[0-9a-f]{12}-[0-9a-f-]{36}-000000", i) for i in ids)
    assert [m["MessageId"] for m in lookalike.messages()] == ids
    stats = lookalike.stats()
    assert (stats["calls"], stats["accepted"], stats["distinct_recipients"]) == (5, 5, 5)


def test_quota_reads_parse_in_boto3_v1_and_v2(lookalike, sesv2):
    lookalike.configure(rate=14, daily_quota=200)
    send(sesv2, "a@example.com")
    send(sesv2, "b@example.com", CcAddresses=["c@example.com"])  # quotas count recipients

    quota = make_client("ses", lookalike.endpoint_url).get_send_quota()
    account = sesv2.get_account()

    assert (quota["Max24HourSend"], quota["MaxSendRate"], quota["SentLast24Hours"]) == (
        200.0,
        14.0,
        3.0,
    )
    assert account["SendQuota"] == {
        "Max24HourSend": 200.0,
        "MaxSendRate": 14.0,
        "SentLast24Hours": 3.0,
    }
    assert account["ProductionAccessEnabled"] is True
    assert account["SendingEnabled"] is True
    assert lookalike.stats()["other_calls"] == {
        "GetAccount": 1,
        "GetSendQuota": 1,
        "GetEmailIdentity": 0,
        "ListEmailIdentities": 0,
    }


def test_unverified_sender_is_rejected_like_ses(lookalike, sesv2):
    with pytest.raises(sesv2.exceptions.MessageRejected) as caught:
        send(sesv2, "a@example.com", sender="someone@elsewhere.example")

    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Error"]["Message"].startswith("Email address is not verified.")
    assert "AP-NORTHEAST-2: someone@elsewhere.example" in error["Error"]["Message"]
    lookalike.configure(verified=["aifactory.page"])  # a verified domain covers its addresses
    send(sesv2, "b@example.com", sender="other@aifactory.page")
    assert lookalike.recipients() == {"b@example.com": 1}
    assert lookalike.stats()["rejected"] == 1


def test_token_bucket_allows_bursts_but_not_a_sustained_excess():
    bucket = TokenBucket(rate=10, capacity=20, now=0.0)

    assert sum(bucket.take(1, 0.0) for _ in range(25)) == 20
    assert not bucket.take(1, 0.05)  # half a token
    assert bucket.take(1, 0.1)
    assert sum(bucket.take(1, 1.1) for _ in range(20)) == 10  # refilled at 10/s, not to 20
    assert bucket.take(5, 3.1)  # one whole token lets a 5-recipient call through...
    assert bucket.tokens == 15
    bucket.tokens = 1
    assert bucket.take(5, 3.1)
    assert not bucket.take(1, 3.2)  # ...and the next calls wait for the debt to refill
    assert bucket.take(1, 3.6)


def test_rate_limit_answers_429_too_many_requests_and_recovers(lookalike, sesv2):
    lookalike.configure(rate=2, burst_seconds=5)  # 10 at once, then 2 a second
    lookalike.reset()  # a full bucket of the new size

    def one(i: int) -> str:
        return outcome(lambda: send(sesv2, f"u{i}@example.com"))

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(one, range(30)))

    accepted, throttled = results.count("ok"), results.count("TooManyRequestsException")
    assert accepted + throttled == 30
    assert accepted >= 10
    assert throttled >= 10  # 30 calls would need 10 s at 2/s
    stats = lookalike.stats()
    assert (stats["accepted"], stats["throttled_rate"]) == (accepted, throttled)
    assert stats["distinct_recipients"] == stats["sent_last_24_hours"] == accepted
    errors: list[ClientError] = []
    for i in range(20):  # whatever refilled meanwhile is used up, then 429
        try:
            send(sesv2, f"again{i}@example.com")
        except ClientError as exc:
            errors.append(exc)
            break
    assert isinstance(errors[0], sesv2.exceptions.TooManyRequestsException)
    assert errors[0].response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert errors[0].response["Error"]["Message"] == "Maximum sending rate exceeded."

    time.sleep(0.6)  # at 2 tokens a second, at least one whole token again
    send(sesv2, "later@example.com")


def test_daily_quota_exceeded_is_limit_exceeded(lookalike, sesv2):
    lookalike.configure(daily_quota=2)
    send(sesv2, "a@example.com")
    send(sesv2, "b@example.com")

    with pytest.raises(sesv2.exceptions.LimitExceededException) as caught:
        send(sesv2, "c@example.com")

    assert caught.value.response["Error"]["Message"] == "Daily message quota exceeded."
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert lookalike.stats()["quota_exceeded"] == 1
    assert make_client("ses", lookalike.endpoint_url).get_send_quota()["SentLast24Hours"] == 2


def test_injected_throttle_is_the_same_429(lookalike, sesv2):
    lookalike.configure(throttle=1.0)

    with pytest.raises(sesv2.exceptions.TooManyRequestsException) as caught:
        send(sesv2, "a@example.com")

    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    stats = lookalike.stats()
    assert (stats["throttled_injected"], stats["throttled_rate"], stats["accepted"]) == (1, 0, 0)


def test_injected_5xx_are_service_unavailable_or_internal_failure(lookalike, sesv2):
    lookalike.configure(errors=1.0)
    seen: dict[str, set[int]] = {}

    for i in range(12):
        with pytest.raises(ClientError) as caught:
            send(sesv2, f"u{i}@example.com")
        response = caught.value.response
        seen.setdefault(response["Error"]["Code"], set()).add(
            response["ResponseMetadata"]["HTTPStatusCode"]
        )

    assert seen == {"ServiceUnavailable": {503}, "InternalFailure": {500}}
    assert lookalike.stats()["errors_5xx"] == 12
    assert lookalike.recipients() == {}


def test_drop_before_closes_the_connection_and_sends_nothing(lookalike, sesv2):
    lookalike.configure(drop_before=1.0)

    with pytest.raises(ConnectionClosedError):
        send(sesv2, "a@example.com")

    assert lookalike.recipients() == {}
    stats = lookalike.stats()
    assert (stats["dropped_before"], stats["accepted"]) == (1, 0)


def test_drop_after_sends_then_closes_the_connection(lookalike, sesv2):
    lookalike.configure(drop_after=1.0)

    with pytest.raises(ConnectionClosedError):
        send(sesv2, "a@example.com")

    assert lookalike.recipients() == {"a@example.com": 1}
    assert len(lookalike.messages()) == 1
    stats = lookalike.stats()
    assert (stats["dropped_after"], stats["accepted"]) == (1, 1)


def test_configure_at_run_time_starts_and_ends_a_storm(lookalike, sesv2):
    assert outcome(lambda: send(sesv2, "a@example.com")) == "ok"
    assert lookalike.configure(throttle=1.0)["throttle"] == 1.0
    assert outcome(lambda: send(sesv2, "b@example.com")) == "TooManyRequestsException"
    lookalike.configure(throttle=0)
    assert outcome(lambda: send(sesv2, "c@example.com")) == "ok"

    for bad in ({"throttle": 2}, {"rate": 0}, {"nonsense": 1}):
        with pytest.raises(urllib.error.HTTPError) as caught:
            lookalike.configure(**bad)
        assert caught.value.code == 400
    assert lookalike.config()["throttle"] == 0


def test_seeded_faults_replay_after_reset(lookalike, sesv2):
    lookalike.configure(throttle=0.3, errors=0.2, seed=11)

    def run() -> list[str]:
        return [outcome(partial(send, sesv2, f"u{i}@example.com")) for i in range(20)]

    first = run()
    lookalike.reset()  # reseeds

    assert run() == first
    assert {"ok", "TooManyRequestsException"} <= set(first)
    stats = lookalike.stats()  # every call is counted under exactly one outcome
    outcomes = ("accepted", "throttled_injected", "errors_5xx", "throttled_rate", "rejected")
    assert sum(stats[name] for name in outcomes) == stats["calls"] == 20
    assert stats["accepted"] == first.count("ok")


def test_recipients_duplicates_and_timeline_accounting(lookalike, sesv2):
    send(sesv2, "a@example.com")
    send(sesv2, "A@example.com")  # the same mailbox again
    send(sesv2, "b@example.com", CcAddresses=["a@example.com"])
    lookalike.configure(throttle=1.0)
    outcome(lambda: send(sesv2, "c@example.com"))

    assert lookalike.recipients() == {"a@example.com": 3, "b@example.com": 1}
    stats = lookalike.stats()
    assert (stats["distinct_recipients"], stats["duplicates"]) == (2, 2)
    assert (stats["calls"], stats["accepted"], stats["recipients_accepted"]) == (4, 3, 4)
    timeline = lookalike.timeline()
    assert timeline["started_monotonic"] == stats["started_monotonic"]
    buckets = timeline["buckets"]
    assert [b["t"] for b in buckets] == [round(i * 0.1, 3) for i in range(len(buckets))]
    assert sum(b["calls"] for b in buckets) == 4
    assert sum(b["accepted"] for b in buckets) == 3
    assert sum(b["throttled"] for b in buckets) == 1
    assert max(b["in_flight"] for b in buckets) == 1
    assert sum(b["calls"] for b in lookalike.timeline(width=1)["buckets"]) == 4


def test_last_call_is_when_the_latest_send_email_arrived_whatever_its_outcome(lookalike, sesv2):
    """On the system-wide monotonic clock, so another process can compare it with its own
    times (bench/control.py: the last call after a pause's answer)."""
    assert lookalike.stats()["last_call_monotonic"] is None  # none since the reset
    before = time.monotonic()
    send(sesv2, "a@example.com")
    accepted_at = lookalike.stats()["last_call_monotonic"]
    assert before <= accepted_at <= time.monotonic()
    lookalike.configure(latency_ms=200, throttle=1.0)
    time.sleep(0.05)
    refused_from = time.monotonic()
    assert outcome(lambda: send(sesv2, "b@example.com")) == "TooManyRequestsException"
    refused_to = time.monotonic()
    refused_at = lookalike.stats()["last_call_monotonic"]
    assert refused_from <= refused_at <= refused_to - 0.15  # on arrival, not on the answer
    make_client("sesv2", lookalike.endpoint_url).get_account()
    assert lookalike.stats()["last_call_monotonic"] == refused_at  # only SendEmail counts
    assert lookalike.reset()["last_call_monotonic"] is None


def test_latency_overlaps_calls_and_max_in_flight_counts_them(lookalike, sesv2):
    lookalike.configure(latency_ms=300)
    barrier = threading.Barrier(8)

    def one(i: int) -> str:
        barrier.wait()
        return send(sesv2, f"u{i}@example.com")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(8)))

    stats = lookalike.stats()
    assert (stats["max_in_flight"], stats["in_flight"], stats["accepted"]) == (8, 0, 8)


def test_naive_baseline_counts_sent_and_failed_by_code(lookalike):
    recipients = [f"u{i}@example.com" for i in range(3)]

    sent = naive.send_all(recipients, endpoint_url=lookalike.endpoint_url)
    refused = naive.send_all(
        recipients, endpoint_url=lookalike.endpoint_url, sender="x@unverified.example"
    )

    assert (sent.sent, sent.failed) == (3, {})
    assert (refused.sent, refused.failed) == (0, {"MessageRejected": 3})
    assert lookalike.stats()["accepted"] == 3


def test_stop_ends_the_process_cleanly():
    with start_lookalike(latency_ms=0) as handle:
        assert handle.stats()["calls"] == 0
    assert handle.process.returncode == 0
