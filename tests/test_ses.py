"""SesSender against real servers over HTTP: moto (with SES errors injected as real HTTP
responses) and the SES look-alike of ``bench/`` (latency, a real rate limit answering 429)."""

from __future__ import annotations

import base64
import email
import email.policy
import socket
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from sendmail.contract.vocabulary import FailureCode
from sendmail.platform.settings import Settings
from sendmail.sending.content import RenderFailed
from sendmail.sending.mime import MailParts
from sendmail.sending.ses import MAX_BACKOFF_SECONDS, SendQuota, SesSender
from tests.support.ses import (
    REGION,
    SENDER,
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
    values: dict[str, Any] = {"AWS_REGION": REGION, "SENDMAIL_SES_CONFIGURATION_SET": None}
    values.update(overrides)
    return Settings(**values)


def make_sender(client: Any, *, settings: Settings | None = None, **kw: Any) -> SesSender:
    """A sender with no backoff jitter wait (``random`` 0) unless a test asks for one."""
    return SesSender(
        client, settings=settings or make_settings(), random=kw.pop("random", lambda: 0.0), **kw
    )


# --- sending ---------------------------------------------------------------------------------


def test_each_recipient_gets_its_own_message_in_input_order(
    sesv2_client, verified_sender, moto_sent_messages
):
    recipients = [f"r{i:02d}@example.com" for i in range(30)]

    report = make_sender(sesv2_client).send(
        verified_sender, recipients, MailParts("Hello", "Body text")
    )

    assert [d.recipient for d in report.deliveries] == recipients
    assert all(d.ok for d in report.deliveries)
    stored = {m["id"]: m for m in moto_sent_messages()}
    assert len(stored) == 30
    for delivery in report.deliveries:
        message = stored[delivery.message_id]
        assert message["destinations"] == {"ToAddresses": [delivery.recipient]}
        assert message["source"] == verified_sender
        assert (message["subject"], message["body"]) == ("Hello", "Body text")


def test_the_message_goes_as_raw_mime_with_the_configuration_set(sesv2_client, verified_sender):
    """SESv2 ``Content.Raw``: the whole message as mime.compose wrote it, no Message-ID (SES
    sets its own), the envelope recipient in Destination."""
    spy = ScriptedSes().install(sesv2_client)
    settings = make_settings(SENDMAIL_SES_CONFIGURATION_SET="bounces")

    report = make_sender(sesv2_client, settings=settings).send(
        verified_sender, ["a@example.com"], MailParts("Hi", "Body")
    )

    assert report.deliveries[0].ok
    (request,) = spy.bodies
    assert set(request["Content"]) == {"Raw"}
    raw = base64.b64decode(request["Content"]["Raw"]["Data"])
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert (message["Subject"], message["To"], message["From"]) == (
        "Hi",
        "a@example.com",
        verified_sender,
    )
    assert message["Message-ID"] is None
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message.get_content() == "Body"
    assert request["ConfigurationSetName"] == "bounces"
    assert request["Destination"] == {"ToAddresses": ["a@example.com"]}


def test_korean_subject_and_body_arrive_byte_exact(
    sesv2_client, verified_sender, moto_sent_messages
):
    report = make_sender(sesv2_client).send(
        verified_sender, ["reader@example.com"], MailParts(KOREAN_SUBJECT, KOREAN_BODY)
    )

    (delivery,) = report.deliveries
    assert delivery.ok
    (stored,) = moto_sent_messages()
    assert stored["id"] == delivery.message_id
    assert stored["subject"] == KOREAN_SUBJECT
    assert stored["body"] == KOREAN_BODY.replace("\n", "\r\n")  # the canonical form of text
    assert stored["html"] is None
    assert stored["destinations"] == {"ToAddresses": ["reader@example.com"]}


def test_html_and_headers_arrive_as_multipart_alternative(
    sesv2_client, verified_sender, moto_sent_messages
):
    html = "<p>안녕하세요 <b>김민수</b>님 🙂</p>"
    headers = (
        ("List-Unsubscribe", "<https://mail.example/api/v1/unsubscribe/u1abc>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    )

    report = make_sender(sesv2_client).send(
        verified_sender, ["reader@example.com"], MailParts("소식", "안녕하세요", html, headers)
    )

    assert report.deliveries[0].ok
    (stored,) = moto_sent_messages()
    message = stored["headers"]
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert (stored["body"], stored["html"]) == ("안녕하세요", html)
    assert message["List-Unsubscribe"] == "<https://mail.example/api/v1/unsubscribe/u1abc>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_recipient_whose_message_cannot_be_made_fails_alone(
    sesv2_client, verified_sender, moto_sent_messages
):
    def content(recipient: str) -> MailParts:
        if recipient.startswith("bad"):
            raise RenderFailed("the rendered subject holds a line break")
        return MailParts("Hi", "Body")

    report = make_sender(sesv2_client).send(
        verified_sender, ["a@example.com", "bad@example.com", "c@example.com"], content
    )

    ok, bad, last = report.deliveries
    assert ok.ok
    assert last.ok
    assert (bad.ok, bad.pending, bad.code) == (False, False, FailureCode.RENDER_FAILED)
    assert len(moto_sent_messages()) == 2


def test_an_internationalised_domain_is_given_to_ses_in_ascii_form(
    sesv2_client, verified_sender, moto_sent_messages
):
    """SESv2 ``Destination``: a non-ASCII domain "must be encoded using Punycode"."""
    report = make_sender(sesv2_client).send(
        verified_sender, ["user@bücher.de"], MailParts("s", "b")
    )

    (delivery,) = report.deliveries
    assert (delivery.ok, delivery.recipient) == (True, "user@bücher.de")  # reported as given
    (stored,) = moto_sent_messages()
    assert stored["destinations"] == {"ToAddresses": ["user@xn--bcher-kva.de"]}


def test_unverified_sender_rejects_every_recipient_without_raising(
    sesv2_client, moto_sent_messages
):
    spy = ScriptedSes().install(sesv2_client)
    sent: list[tuple[int, str]] = []
    recipients = ["a@example.com", "b@example.com"]

    report = make_sender(sesv2_client).send(
        "nobody@unverified.example",
        recipients,
        MailParts("Hi", "Body"),
        on_sent=lambda *a: sent.append(a),
    )

    results = report.deliveries
    assert [d.code for d in results] == [FailureCode.SES_MESSAGE_REJECTED] * 2
    assert not any(d.pending for d in results)
    assert all(d.message and "not verified" not in d.message for d in results)  # our words
    assert "nobody@unverified.example" not in (results[0].message or "")
    assert spy.calls == 2  # rejection is per recipient: each one asked, none retried
    assert sent == []
    assert moto_sent_messages() == []


def test_on_sent_is_called_once_per_success_with_its_index(sesv2_client, verified_sender):
    rejected = (400, "MessageRejected", "Address blacklisted.")
    ScriptedSes(by_recipient=lambda r, _n: rejected if r == "b@example.com" else None).install(
        sesv2_client
    )
    sent: list[tuple[int, str]] = []

    report = make_sender(sesv2_client).send(
        verified_sender,
        ["a@example.com", "b@example.com", "c@example.com"],
        MailParts("Hi", "Body"),
        on_sent=lambda index, message_id: sent.append((index, message_id)),
    )

    results = report.deliveries
    assert [d.ok for d in results] == [True, False, True]
    assert results[1].code is FailureCode.SES_MESSAGE_REJECTED
    assert sorted(sent) == [(0, results[0].message_id), (2, results[2].message_id)]


def test_empty_recipient_list_sends_nothing(sesv2_client, verified_sender):
    spy = ScriptedSes().install(sesv2_client)
    assert (
        make_sender(sesv2_client).send(verified_sender, [], MailParts("Hi", "Body")).deliveries
        == []
    )
    assert spy.calls == 0


def test_an_on_sent_that_raises_fails_the_batch_after_the_calls_in_flight(
    sesv2_client, verified_sender
):
    def broken(index: int, message_id: str) -> None:
        raise RuntimeError("a bug in the caller")

    with pytest.raises(RuntimeError, match="a bug in the caller"):
        make_sender(sesv2_client).send(
            verified_sender, ["a@example.com"], MailParts("Hi", "B"), on_sent=broken
        )


# --- concurrency and pacing ------------------------------------------------------------------


def test_calls_overlap_when_ses_is_slow_and_stay_under_the_concurrency_cap(lookalike):
    lookalike.configure(latency_ms=100, rate=1000)
    settings = make_settings(SENDMAIL_SES_MAX_CONCURRENCY=4)
    client = make_client("sesv2", lookalike.endpoint_url)

    report = make_sender(client, settings=settings).send(
        SENDER, [f"c{i}@example.com" for i in range(24)], MailParts("Hi", "B"), max_rate=200
    )

    assert all(d.ok for d in report.deliveries)
    stats = lookalike.stats()
    # one at a time would be 1; the window is ceil(200/s x latency x 2) + 1, capped at 4
    assert 2 <= stats["max_in_flight"] <= 4
    assert stats["accepted"] == 24
    assert stats["duplicates"] == 0


def test_max_rate_spaces_the_calls(sesv2_client, verified_sender):
    spy = ScriptedSes().install(sesv2_client)

    report = make_sender(sesv2_client).send(
        verified_sender,
        [f"r{i}@example.com" for i in range(12)],
        MailParts("s", "b"),
        max_rate=40.0,
    )

    assert all(d.ok for d in report.deliveries)
    # 12 calls at 40/s with a burst of 2: the last starts at least 10 intervals after the first.
    assert spy.times[-1] - spy.times[0] >= 10 / 40.0 - 0.01
    assert report.rate == pytest.approx(40.0)


def test_without_max_rate_nothing_waits(sesv2_client, verified_sender):
    slept: list[float] = []
    sender = make_sender(sesv2_client, sleep=slept.append)
    report = sender.send(verified_sender, ["a@example.com", "b@example.com"], MailParts("s", "b"))
    assert all(d.ok for d in report.deliveries)
    assert slept == []
    assert report.rate is None


def test_when_ses_throttles_below_the_asked_rate_the_batch_slows_down_and_sends_everyone(
    lookalike,
):
    # The account really allows 20/s (a 1 s burst); the batch was told it may use 60/s.
    lookalike.configure(rate=20, burst_seconds=1, latency_ms=20)
    client = make_client("sesv2", lookalike.endpoint_url)
    recipients = [f"t{i}@example.com" for i in range(80)]

    report = make_sender(client, random=lambda: 0.5).send(
        SENDER, recipients, MailParts("Hi", "B"), max_rate=60
    )

    assert all(d.ok for d in report.deliveries)
    stats = lookalike.stats()
    assert stats["throttled_rate"] > 0
    assert stats["accepted"] == 80
    assert stats["duplicates"] == 0
    assert report.rate is not None
    assert report.rate < 60


# --- transient failures: time, never recipients ----------------------------------------------


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
def test_transient_errors_are_retried_until_sent(
    sesv2_client, verified_sender, moto_sent_messages, transient
):
    spy = first_n(2, transient).install(sesv2_client)

    report = make_sender(sesv2_client).send(
        verified_sender, ["a@example.com"], MailParts("Hi", "Body")
    )

    (delivery,) = report.deliveries
    assert delivery.ok
    assert spy.calls == 3  # two errors, then the send: botocore added no attempts of its own
    assert [m["id"] for m in moto_sent_messages()] == [delivery.message_id]


def test_a_retry_waits_for_its_backoff_while_the_others_go_on(sesv2_client, verified_sender):
    spy = ScriptedSes(
        by_recipient=lambda r, n: THROTTLED if r == "a@example.com" and n == 0 else None
    ).install(sesv2_client)

    report = make_sender(sesv2_client, random=lambda: 0.5).send(
        verified_sender,
        ["a@example.com", "b@example.com", "c@example.com"],
        MailParts("Hi", "Body"),
    )

    assert all(d.ok for d in report.deliveries)
    first_try, second_try = [
        t
        for t, b in zip(spy.times, spy.bodies, strict=True)
        if b["Destination"]["ToAddresses"] == ["a@example.com"]
    ]
    assert second_try - first_try >= 0.25  # backoff(1) = 0.5 s ceiling x 0.5
    assert spy.bodies[-1]["Destination"]["ToAddresses"] == [
        "a@example.com"
    ]  # the others went first


def test_backoff_doubles_with_full_jitter_and_is_capped(sesv2_client):
    sender = make_sender(sesv2_client, random=lambda: 0.999)
    delays = [sender.backoff(n) for n in range(1, 11)]
    assert delays[:4] == pytest.approx([0.4995, 0.999, 1.998, 3.996])
    assert max(delays) <= MAX_BACKOFF_SECONDS
    assert delays[-1] == pytest.approx(MAX_BACKOFF_SECONDS * 0.999)
    assert make_sender(sesv2_client, random=lambda: 0.0).backoff(5) == 0.0


def test_throttling_that_never_stops_leaves_recipients_pending_when_time_runs_out(
    sesv2_client, verified_sender, moto_sent_messages
):
    spy = always(THROTTLED).install(sesv2_client)
    recipients = ["a@example.com", "b@example.com", "c@example.com"]

    report = make_sender(sesv2_client).send(
        verified_sender, recipients, MailParts("Hi", "B"), max_rate=50, time_budget=0.5
    )

    assert all(d.pending for d in report.deliveries)
    assert [d.code for d in report.deliveries] == [FailureCode.SES_THROTTLED] * 3
    assert not report.stalled  # the budget ended it, not a stall
    assert spy.calls > 3  # each was tried more than once: nobody was given up on
    assert report.rate is not None
    assert report.rate < 50
    assert "Maximum sending rate" not in (report.deliveries[0].message or "")
    assert moto_sent_messages() == []


def test_ses_refusing_everything_for_the_stall_time_returns_the_batch_as_stalled(
    sesv2_client, verified_sender
):
    always((503, "ServiceUnavailable", "Service unavailable.")).install(sesv2_client)

    report = make_sender(sesv2_client, stall_seconds=0.3).send(
        verified_sender, ["a@example.com", "b@example.com"], MailParts("Hi", "B"), time_budget=60
    )

    assert report.stalled
    assert [(d.pending, d.code) for d in report.deliveries] == [(True, FailureCode.SES_ERROR)] * 2


def test_recipients_never_reached_before_the_budget_are_pending(sesv2_client, verified_sender):
    spy = ScriptedSes().install(sesv2_client)
    recipients = [f"r{i}@example.com" for i in range(40)]

    report = make_sender(sesv2_client).send(
        verified_sender, recipients, MailParts("Hi", "B"), max_rate=20, time_budget=0.5
    )

    sent = [d for d in report.deliveries if d.ok]
    pending = [d for d in report.deliveries if d.pending]
    assert len(sent) == spy.calls < 40
    assert len(sent) + len(pending) == 40
    assert {d.code for d in pending} == {FailureCode.SES_THROTTLED}
    assert all("deadline" in (d.message or "") for d in pending)


def test_unreachable_ses_leaves_the_batch_pending():
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = make_client("sesv2", f"http://127.0.0.1:{port}")

    report = make_sender(client, stall_seconds=0.3).send(
        "se@aifactory.page",
        ["a@example.com", "b@example.com"],
        MailParts("Hi", "Body"),
        time_budget=30,
    )

    assert report.stalled
    assert [(d.pending, d.code) for d in report.deliveries] == [(True, FailureCode.SES_ERROR)] * 2


def test_connection_broken_after_sending_is_reported_unknown_and_not_resent(
    sesv2_client, verified_sender, moto_sent_messages
):
    broken = ReadTimeoutError(endpoint_url="http://127.0.0.1")
    spy = ScriptedSes(by_recipient=lambda r, _n: broken if r == "a@example.com" else None).install(
        sesv2_client
    )

    report = make_sender(sesv2_client).send(
        verified_sender, ["a@example.com", "b@example.com"], MailParts("Hi", "Body")
    )

    results = report.deliveries
    assert results[0].code is FailureCode.DELIVERY_UNKNOWN
    assert not results[0].pending
    assert results[1].ok  # the batch goes on
    assert spy.calls == 2
    assert [m["id"] for m in moto_sent_messages()] == [results[1].message_id]


def test_unexpected_exceptions_propagate(sesv2_client, verified_sender):
    always(RuntimeError("bug")).install(sesv2_client)
    with pytest.raises(RuntimeError, match="bug"):
        make_sender(sesv2_client).send(verified_sender, ["a@example.com"], MailParts("Hi", "Body"))


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
    recipients = [f"r{i}@example.com" for i in range(5)]
    one_at_a_time = make_settings(SENDMAIL_SES_MAX_CONCURRENCY=1)

    report = make_sender(sesv2_client, settings=one_at_a_time).send(
        verified_sender, recipients, MailParts("Hi", "B")
    )

    results = report.deliveries
    assert [d.code for d in results] == [code] * 5
    assert not any(d.pending for d in results)
    assert spy.calls == 1  # not retried, and the rest of the batch did not hammer SES
    assert all(d.message and error[2] not in d.message for d in results)
    assert moto_sent_messages() == []


def test_an_account_level_error_stops_new_calls_while_those_in_flight_finish(
    sesv2_client, verified_sender
):
    paused = (400, "SendingPausedException", "Sending paused for this account.")
    spy = always(paused).install(sesv2_client)
    recipients = [f"r{i}@example.com" for i in range(200)]

    report = make_sender(sesv2_client, settings=make_settings(SENDMAIL_SES_MAX_CONCURRENCY=8)).send(
        verified_sender, recipients, MailParts("Hi", "B")
    )

    assert {d.code for d in report.deliveries} == {FailureCode.SES_SENDING_PAUSED}
    assert spy.calls <= 8  # at most the calls already in flight when the first answer came


def test_an_account_level_stop_during_a_pacing_wait_starts_no_further_call(
    sesv2_client, verified_sender
):
    """At 4/s the third call waits 0.25 s for its slot; the first two answer "paused" meanwhile."""

    def slow_pause(_attempt: int) -> tuple[int, str, str]:
        time.sleep(0.05)
        return (400, "SendingPausedException", "Sending paused for this account.")

    spy = ScriptedSes(slow_pause).install(sesv2_client)

    report = make_sender(sesv2_client).send(
        verified_sender, [f"r{i}@example.com" for i in range(5)], MailParts("Hi", "B"), max_rate=4.0
    )

    assert spy.calls == 2  # the burst of two; the third, already waiting, never goes
    assert {d.code for d in report.deliveries} == {FailureCode.SES_SENDING_PAUSED}
    assert report.stop is not None


def test_a_halt_starts_no_further_call_and_leaves_the_rest_pending(sesv2_client, verified_sender):
    """Paused or canceled (sendmail/sending/control.py): asked before each call, also while the
    batch waits for its pace; the calls made stay sent, the rest are pending, not failed."""
    spy = ScriptedSes().install(sesv2_client)
    recipients = [f"r{i}@example.com" for i in range(40)]

    report = make_sender(sesv2_client).send(
        verified_sender,
        recipients,
        MailParts("Hi", "B"),
        max_rate=20.0,
        halt=lambda: spy.calls >= 5,
    )

    sent = [d for d in report.deliveries if d.ok]
    assert len(sent) == spy.calls
    assert 5 <= spy.calls <= 6  # a call already past its check when the fifth answered
    assert all(d.pending for d in report.deliveries if not d.ok)
    assert report.stop is None


def test_message_rejected_is_per_recipient_and_not_retried(sesv2_client, verified_sender):
    spy = always((400, "MessageRejected", "Email address is not verified.")).install(sesv2_client)

    report = make_sender(sesv2_client).send(
        verified_sender,
        ["a@example.com", "b@example.com", "c@example.com"],
        MailParts("Hi", "Body"),
    )

    assert [d.code for d in report.deliveries] == [FailureCode.SES_MESSAGE_REJECTED] * 3
    assert spy.calls == 3


# --- quota -----------------------------------------------------------------------------------


def test_quota_is_read_from_get_send_quota(sesv2_client, ses_v1_client, verified_sender):
    sender = make_sender(sesv2_client, quota_client=ses_v1_client)
    for recipient in ("a@example.com", "b@example.com"):  # Simple: moto counts each once
        sesv2_client.send_email(
            FromEmailAddress=verified_sender,
            Destination={"ToAddresses": [recipient]},
            Content={"Simple": {"Subject": {"Data": "Hi"}, "Body": {"Text": {"Data": "Body"}}}},
        )

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
    sender = SesSender(settings=make_settings())

    (delivery,) = sender.send(
        "se@aifactory.page", ["a@example.com"], MailParts("Hi", "Body")
    ).deliveries
    quota = sender.get_quota()

    assert delivery.ok
    assert [m["id"] for m in moto_sent_messages()] == [delivery.message_id]
    # moto counts a Raw message's recipient twice (Destination, then its To header again)
    assert quota.sent_last_24_hours == 2


def test_importing_the_module_does_not_import_boto3():
    code = (
        "import sys, sendmail.sending.ses; print('boto3' in sys.modules, 'botocore' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    ).stdout
    assert out.split() == ["False", "False"]
