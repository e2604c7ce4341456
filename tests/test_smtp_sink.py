"""The SMTP sink itself, driven by plain smtplib over 127.0.0.1."""

from __future__ import annotations

import smtplib
import ssl
from datetime import datetime, timedelta

import pytest

from devhost.emulators.outbox import OutboxJournal
from devhost.emulators.smtp_sink import SmtpSink
from tests.support.newsletter import (
    FROM,
    MESSAGE_ID,
    RECIPIENT,
    SENDER,
    SUBJECT,
    assert_shows_newsletter,
    newsletter,
)

MAIL = (
    b"From: se@aifactory.page\r\nTo: a@example.com\r\n"
    b"Subject: =?utf-8?b?7JWI64WV?=\r\nMessage-ID: <x.1@aifactory.page>\r\n"
    b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n'
    b"MIME-Version: 1.0\r\n\r\n7JWI64WVDQrrgZ0=\r\n"
)


def trusting(sink: SmtpSink) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=sink.ca_file)


def test_captures_mail_in_outbox_shape(smtp_sink):
    with smtplib.SMTP_SSL(smtp_sink.host, smtp_sink.port, context=trusting(smtp_sink)) as client:
        client.login("se@aifactory.page", "any password")
        client.sendmail("se@aifactory.page", ["a@example.com"], MAIL)

    (message,) = smtp_sink.messages()
    assert message.to_json() | {"receivedAt": None} == {
        "transport": "smtp",
        "from": "se@aifactory.page",
        "to": ["a@example.com"],
        "subject": "안녕",
        "messageId": "<x.1@aifactory.page>",
        "receivedAt": None,
        "body": "안녕\n끝",
        "headers": [
            ["From", "se@aifactory.page"],
            ["To", "a@example.com"],
            ["Subject", "안녕"],
            ["Message-ID", "<x.1@aifactory.page>"],
            ["Content-Type", 'text/plain; charset="utf-8"'],
            ["Content-Transfer-Encoding", "base64"],
            ["MIME-Version", "1.0"],
        ],
        "text": "안녕\n끝",
        "html": None,
    }
    received_at = datetime.fromisoformat(message.received_at)
    assert received_at.utcoffset() == timedelta(0)
    assert smtp_sink.raw_messages() == [MAIL]

    smtp_sink.clear()
    assert smtp_sink.messages() == []
    assert smtp_sink.raw_messages() == []


def test_a_multipart_message_shows_its_headers_text_and_html_decoded_after_a_restart(
    start_smtp_sink, tmp_path
):
    journal = tmp_path / "outbox.jsonl"
    sink = start_smtp_sink(journal=OutboxJournal(journal))
    raw, headers = newsletter()
    with smtplib.SMTP_SSL(sink.host, sink.port, context=trusting(sink)) as client:
        client.login(SENDER, "any password")
        client.sendmail(SENDER, [RECIPIENT], raw)
    sink.stop()

    (message,) = sink.messages()
    assert sink.raw_messages() == [raw]
    assert OutboxJournal(journal).read() == [message]  # what a restarted devhost reads
    assert (message.transport, message.sender, message.message_id) == ("smtp", SENDER, MESSAGE_ID)
    assert message.header("From") == FROM
    assert message.subject == SUBJECT
    assert_shows_newsletter(message, headers)


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
def test_rejected_password_gets_535_with_either_mechanism(smtp_sink, mechanism):
    with smtplib.SMTP_SSL(smtp_sink.host, smtp_sink.port, context=trusting(smtp_sink)) as client:
        client.ehlo()
        client.user, client.password = "se@aifactory.page", "wrong-password"
        authobject = client.auth_login if mechanism == "LOGIN" else client.auth_plain
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.auth(mechanism, authobject)

    assert refused.value.smtp_code == 535
    assert smtp_sink.logins() == []


def test_mail_without_login_is_refused(smtp_sink):
    with (
        smtplib.SMTP_SSL(smtp_sink.host, smtp_sink.port, context=trusting(smtp_sink)) as client,
        pytest.raises(smtplib.SMTPSenderRefused) as refused,
    ):
        client.sendmail("se@aifactory.page", ["a@example.com"], MAIL)

    assert refused.value.smtp_code == 530
    assert smtp_sink.messages() == []


def test_starttls_sink_offers_auth_only_after_starttls(smtp_sink_starttls):
    sink = smtp_sink_starttls
    with smtplib.SMTP(sink.host, sink.port) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")
        client.starttls(context=trusting(sink))
        client.ehlo()
        assert client.has_extn("auth")
        client.login("se@aifactory.page", "any password")

    assert sink.logins() == ["se@aifactory.page"]


def test_each_sink_gets_its_own_free_port(start_smtp_sink):
    first, second = start_smtp_sink(), start_smtp_sink()

    assert first.host == second.host == "127.0.0.1"
    assert 0 < first.port != second.port
