"""SesSender against a real moto server over HTTP; SES errors injected as real HTTP responses."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from sendmail.results import FailureCode
from sendmail.ses import MAX_BACKOFF_SECONDS, SendQuota, SesSender
from sendmail.settings import Settings
from tests.support.ses import (
    REGION,
    THROTTLED,
    ScriptedSes,
    always,
    first_n,
    make_client,
    send_quota_response,
)

KOREAN_SUBJECT = "안녕하세요 — 테스트"
KOREAN_BODY = "안녕하세요,\n메일 발송 테스트입니다.\n\n감사합니다 🙂\n— 운영팀"


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "AWS_REGION": REGION,
        "SENDMAIL_SES_MAX_ATTEMPTS": 3,
        "SENDMAIL_SES_CONFIGURATION_SET": None,
    }
    values.update(overrides)
    return Settings(**values)


class Recorder:
    """Collects the sleeps a sender asks for, instead of sleeping."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def make_sender(
    client: Any, *, settings: Settings | None = None, sleep: Recorder | None = None, **kw: Any
) -> SesSender:
    return SesSender(
        client,
        settings=settings or make_settings(),
        sleep=sleep or Recorder(),
        random=kw.pop("random", lambda: 0.5),
        **kw,
    )


# --- sending ---------------------------------------------------------------------------------


def test_each_recipient_gets_its_own_message_in_input_order(
    sesv2_client, verified_sender, moto_sent_messages
):
    recipients = ["c@example.com", "a@example.com", "b@example.com"]

    results = make_sender(sesv2_client).send(verified_sender, recipients, "Hello", "Body text")

    assert [d.recipient for d in results] == recipients
    assert all(d.ok for d in results)
    stored = {m["id"]: m for m in moto_sent_messages()}
    assert len(stored) == 3
    for delivery in results:
        message = stored[delivery.message_id]
        assert message["destinations"] == {"ToAddresses": [delivery.recipient]}
        assert message["source"] == verified_sender
        assert (message["subject"], message["body"]) == ("Hello", "Body text")


def test_request_declares_utf8_and_the_configuration_set(sesv2_client, verified_sender):
    spy = ScriptedSes(lambda _attempt: None).install(sesv2_client)
    settings = make_settings(SENDMAIL_SES_CONFIGURATION_SET="bounces")

    results = make_sender(sesv2_client, settings=settings).send(
        verified_sender, ["a@example.com"], "Hi", "Body"
    )

    assert results[0].ok
    (request,) = spy.bodies
    simple = request["Content"]["Simple"]
    assert simple["Subject"] == {"Data": "Hi", "Charset": "UTF-8"}
    assert simple["Body"] == {"Text": {"Data": "Body", "Charset": "UTF-8"}}
    assert request["ConfigurationSetName"] == "bounces"
    assert request["Destination"] == {"ToAddresses": ["a@example.com"]}


def test_korean_subject_and_body_arrive_byte_exact(
    sesv2_client, verified_sender, moto_sent_messages
):
    (delivery,) = make_sender(sesv2_client).send(
        verified_sender, ["수신자@example.com"], KOREAN_SUBJECT, KOREAN_BODY
    )

    assert delivery.ok
    (stored,) = moto_sent_messages()
    assert stored["id"] == delivery.message_id
    assert stored["subject"].encode("utf-8") == KOREAN_SUBJECT.encode("utf-8")
    assert stored["body"].encode("utf-8") == KOREAN_BODY.encode("utf-8")
    assert stored["destinations"] == {"ToAddresses": ["수신자@example.com"]}


def test_unverified_sender_rejects_every_recipient_without_raising(
    sesv2_client, moto_sent_messages
):
    spy = ScriptedSes(lambda _attempt: None).install(sesv2_client)
    sent: list[tuple[int, str]] = []
    recipients = ["a@example.com", "b@example.com"]

    results = make_sender(sesv2_client).send(
        "nobody@unverified.example", recipients, "Hi", "Body", on_sent=lambda *a: sent.append(a)
    )

    assert [d.code for d in results] == [FailureCode.SES_MESSAGE_REJECTED] * 2
    assert all(d.message and "not verified" not in d.message for d in results)  # our words
    assert "nobody@unverified.example" not in (results[0].message or "")
    assert spy.calls == 2  # rejection is per recipient: each one asked, none retried
    assert sent == []
    assert moto_sent_messages() == []


def test_on_sent_is_called_once_per_success_with_its_index(sesv2_client, verified_sender):
    # The second recipient is rejected by SES; the others go through.
    rejected = (400, "MessageRejected", "Address blacklisted.")
    ScriptedSes(lambda attempt: rejected if attempt == 1 else None).install(sesv2_client)
    sent: list[tuple[int, str]] = []

    results = make_sender(sesv2_client).send(
        verified_sender,
        ["a@example.com", "b@example.com", "c@example.com"],
        "Hi",
        "Body",
        on_sent=lambda index, message_id: sent.append((index, message_id)),
    )

    assert [d.ok for d in results] == [True, False, True]
    assert results[1].code is FailureCode.SES_MESSAGE_REJECTED
    assert sent == [(0, results[0].message_id), (2, results[2].message_id)]


def test_empty_recipient_list_sends_nothing(sesv2_client, verified_sender):
    spy = ScriptedSes(lambda _attempt: None).install(sesv2_client)
    assert make_sender(sesv2_client).send(verified_sender, [], "Hi", "Body") == []
    assert spy.calls == 0


# --- retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "transient",
    [
        THROTTLED,
        (400, "Throttling", "Maximum sending rate exceeded."),  # the SESv1 spelling
        (500, "InternalFailure", "Internal failure."),
        (503, "ServiceUnavailable", "Service unavailable."),
    ],
    ids=["429", "v1-throttling", "500", "503"],
)
def test_transient_errors_are_retried_with_backoff_until_sent(
    sesv2_client, verified_sender, moto_sent_messages, transient
):
    spy = first_n(2, transient).install(sesv2_client)
    sleep = Recorder()

    (delivery,) = make_sender(sesv2_client, sleep=sleep).send(
        verified_sender, ["a@example.com"], "Hi", "Body"
    )

    assert delivery.ok
    assert spy.calls == 3  # two errors, then the send: botocore added no attempts of its own
    assert sleep.sleeps == [0.25, 0.5]  # ceilings 0.5 s and 1 s, jitter fixed at 0.5
    assert [m["id"] for m in moto_sent_messages()] == [delivery.message_id]


def test_throttling_that_never_stops_gives_up_after_max_attempts(
    sesv2_client, verified_sender, moto_sent_messages
):
    spy = always(THROTTLED).install(sesv2_client)
    sleep = Recorder()
    recipients = ["a@example.com", "b@example.com", "c@example.com"]

    results = make_sender(sesv2_client, sleep=sleep).send(verified_sender, recipients, "Hi", "B")

    assert [d.code for d in results] == [FailureCode.SES_THROTTLED] * 3
    # Exactly SENDMAIL_SES_MAX_ATTEMPTS (3) calls for the first recipient, then the rest of the
    # batch is failed without hammering a throttling SES.
    assert spy.calls == 3
    assert len(sleep.sleeps) == 2
    assert "Maximum sending rate" not in (results[0].message or "")
    assert moto_sent_messages() == []


def test_max_attempts_of_one_means_one_http_call_even_when_throttled(sesv2_client, verified_sender):
    spy = always(THROTTLED).install(sesv2_client)
    sleep = Recorder()
    settings = make_settings(SENDMAIL_SES_MAX_ATTEMPTS=1)

    (delivery,) = make_sender(sesv2_client, settings=settings, sleep=sleep).send(
        verified_sender, ["a@example.com"], "Hi", "Body"
    )

    assert delivery.code is FailureCode.SES_THROTTLED
    assert spy.calls == 1  # botocore's own throttling retries are off
    assert sleep.sleeps == []


def test_backoff_doubles_and_is_capped(sesv2_client, verified_sender):
    always(THROTTLED).install(sesv2_client)
    sleep = Recorder()
    settings = make_settings(SENDMAIL_SES_MAX_ATTEMPTS=10)

    make_sender(sesv2_client, settings=settings, sleep=sleep, random=lambda: 0.999).send(
        verified_sender, ["a@example.com"], "Hi", "Body"
    )

    assert len(sleep.sleeps) == 9
    assert sleep.sleeps[:4] == pytest.approx([0.4995, 0.999, 1.998, 3.996])
    assert max(sleep.sleeps) <= MAX_BACKOFF_SECONDS
    assert sleep.sleeps[-1] == pytest.approx(MAX_BACKOFF_SECONDS * 0.999)


def test_unreachable_ses_fails_the_batch_after_max_attempts():
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = make_client("sesv2", f"http://127.0.0.1:{port}")
    spy = ScriptedSes(lambda _attempt: None).install(client)
    sleep = Recorder()

    results = make_sender(client, sleep=sleep).send(
        "se@aifactory.page", ["a@example.com", "b@example.com"], "Hi", "Body"
    )

    assert [d.code for d in results] == [FailureCode.SES_ERROR] * 2
    assert spy.calls == 3
    assert len(sleep.sleeps) == 2


def test_connection_broken_after_sending_is_reported_unknown_and_not_resent(
    sesv2_client, verified_sender, moto_sent_messages
):
    broken = ReadTimeoutError(endpoint_url="http://127.0.0.1")
    spy = ScriptedSes(lambda attempt: broken if attempt == 0 else None).install(sesv2_client)
    sleep = Recorder()

    results = make_sender(sesv2_client, sleep=sleep).send(
        verified_sender, ["a@example.com", "b@example.com"], "Hi", "Body"
    )

    assert results[0].code is FailureCode.DELIVERY_UNKNOWN
    assert results[1].ok  # the batch goes on
    assert spy.calls == 2
    assert sleep.sleeps == []
    assert [m["id"] for m in moto_sent_messages()] == [results[1].message_id]


def test_unexpected_exceptions_propagate(sesv2_client, verified_sender):
    always(RuntimeError("bug")).install(sesv2_client)
    with pytest.raises(RuntimeError, match="bug"):
        make_sender(sesv2_client).send(verified_sender, ["a@example.com"], "Hi", "Body")


# --- permanent errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (
            (400, "SendingPausedException", "Sending paused for this account."),
            FailureCode.SES_SENDING_PAUSED,
        ),
        (
            (400, "AccountSuspendedException", "Account suspended."),
            FailureCode.SES_ACCOUNT_SUSPENDED,
        ),
        (
            (400, "MailFromDomainNotVerifiedException", "MAIL FROM domain not verified."),
            FailureCode.SES_MAIL_FROM_NOT_VERIFIED,
        ),
        (
            (429, "TooManyRequestsException", "Daily message quota exceeded."),
            FailureCode.SES_DAILY_QUOTA_EXCEEDED,
        ),
        (
            (400, "Throttling", "Daily message quota exceeded."),
            FailureCode.SES_DAILY_QUOTA_EXCEEDED,
        ),
        (
            (400, "LimitExceededException", "Sending quota exceeded."),
            FailureCode.SES_DAILY_QUOTA_EXCEEDED,
        ),
        (
            (403, "AccessDeniedException", "User is not authorized."),
            FailureCode.SES_ERROR,
        ),
    ],
    ids=["paused", "suspended", "mail-from", "daily-429", "daily-v1", "limit", "access-denied"],
)
def test_account_level_errors_fail_the_batch_after_one_call(
    sesv2_client, verified_sender, moto_sent_messages, error, code
):
    spy = always(error).install(sesv2_client)
    sleep = Recorder()
    recipients = [f"r{i}@example.com" for i in range(5)]

    results = make_sender(sesv2_client, sleep=sleep).send(verified_sender, recipients, "Hi", "B")

    assert [d.code for d in results] == [code] * 5
    assert spy.calls == 1  # not retried, and the rest of the batch did not hammer SES
    assert sleep.sleeps == []
    assert all(d.message and error[2] not in d.message for d in results)
    assert moto_sent_messages() == []


def test_message_rejected_is_per_recipient_and_not_retried(sesv2_client, verified_sender):
    spy = always((400, "MessageRejected", "Email address is not verified.")).install(sesv2_client)
    sleep = Recorder()

    results = make_sender(sesv2_client, sleep=sleep).send(
        verified_sender, ["a@example.com", "b@example.com", "c@example.com"], "Hi", "Body"
    )

    assert [d.code for d in results] == [FailureCode.SES_MESSAGE_REJECTED] * 3
    assert spy.calls == 3
    assert sleep.sleeps == []


# --- quota -----------------------------------------------------------------------------------


def test_quota_is_read_from_get_send_quota(sesv2_client, ses_v1_client, verified_sender):
    sender = make_sender(sesv2_client, quota_client=ses_v1_client)
    sender.send(verified_sender, ["a@example.com", "b@example.com"], "Hi", "Body")

    quota = sender.get_quota()

    # moto always answers the sandbox's 200 a day and 1 a second.
    assert quota == SendQuota(max_24_hour_send=200, max_send_rate=1, sent_last_24_hours=2)
    assert quota.remaining() == 198


@pytest.mark.parametrize(
    ("reported", "remaining"),
    [(("-1", "200", "12345"), None), (("50000", "14", "49990"), 10), (("100", "1", "130"), 0)],
    ids=["unlimited", "production", "overdrawn"],
)
def test_quota_parsing(sesv2_client, ses_v1_client, reported, remaining):
    def answer(request: Any, **_: Any) -> Any:
        return send_quota_response(request.url, *reported)

    ses_v1_client.meta.events.register("before-send.ses.GetSendQuota", answer)

    quota = make_sender(sesv2_client, quota_client=ses_v1_client).get_quota()

    assert quota.max_24_hour_send == float(reported[0])
    assert quota.max_send_rate == float(reported[1])
    assert quota.sent_last_24_hours == float(reported[2])
    assert quota.unlimited is (remaining is None)
    assert quota.remaining() == remaining


def test_production_access_is_unknown_where_get_account_is_missing(sesv2_client):
    # moto does not implement SESv2 GetAccount (404): the sender says "unknown", not crash.
    assert make_sender(sesv2_client).production_access() is None


# --- clients built from settings and the environment -----------------------------------------


@pytest.fixture
def aws_env(monkeypatch, ses_endpoint, tmp_path):
    """The environment the devhost gives the app: a generic endpoint and dummy credentials."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_SESV2", "AWS_ENDPOINT_URL_SES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", ses_endpoint)
    return ses_endpoint


def test_clients_are_made_lazily_from_settings_and_environment(aws_env, moto_sent_messages):
    verifier = make_client("sesv2", aws_env)
    verifier.create_email_identity(EmailIdentity="se@aifactory.page")
    sender = SesSender(settings=make_settings(), sleep=Recorder())

    (delivery,) = sender.send("se@aifactory.page", ["a@example.com"], "Hi", "Body")
    quota = sender.get_quota()

    assert delivery.ok
    assert [m["id"] for m in moto_sent_messages()] == [delivery.message_id]
    assert quota.sent_last_24_hours == 1


def test_importing_the_module_does_not_import_boto3():
    code = "import sys, sendmail.ses; print('boto3' in sys.modules, 'botocore' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    ).stdout
    assert out.split() == ["False", "False"]


class FakeClock:
    """A monotonic clock that only moves when the sender sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_max_rate_spaces_every_call_so_the_window_shares_the_account_rate(
    sesv2_client, verified_sender
):
    clock = FakeClock()
    settings = Settings(SENDMAIL_SES_MAX_ATTEMPTS=3)
    sender = SesSender(
        sesv2_client, settings=settings, sleep=clock.sleep, clock=clock, random=lambda: 0.5
    )
    spy = first_n(1, (429, "TooManyRequestsException", "Maximum sending rate exceeded.")).install(
        sesv2_client
    )

    results = sender.send(
        verified_sender, [f"r{i}@example.com" for i in range(4)], "s", "b", max_rate=2.0
    )

    assert all(d.ok for d in results)
    assert spy.calls == 5  # one throttled attempt, then four sends
    # Calls start at t=100 and are at least 0.5 s apart: the clock advanced by sleeps only,
    # covering four intervals (the retry's backoff may already cover part of one).
    assert clock.now - 100.0 >= 4 * 0.5
    assert all(s > 0 for s in clock.sleeps)


def test_without_max_rate_nothing_waits(sesv2_client, verified_sender):
    clock = FakeClock()
    sender = SesSender(sesv2_client, settings=Settings(), sleep=clock.sleep, clock=clock)
    results = sender.send(verified_sender, ["a@example.com", "b@example.com"], "s", "b")
    assert all(d.ok for d in results)
    assert clock.sleeps == []
