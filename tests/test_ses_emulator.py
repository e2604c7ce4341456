"""The dev host's SES emulator, driven over HTTP the way the app drives SES."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from devhost.emulators.outbox import OutboxJournal
from devhost.emulators.ses import SesEmulator
from sendmail.platform.settings import Settings
from sendmail.sending.mime import MailParts
from sendmail.sending.ses import SesSender
from tests.support.newsletter import RECIPIENT, assert_shows_newsletter, newsletter
from tests.support.ses import make_client

REGION = "ap-northeast-2"
SENDER = "se@aifactory.page"
DOMAIN = "mail.example.org"
KOREAN_SUBJECT = "안녕하세요 — 테스트"
KOREAN_BODY = "안녕하세요,\n한국어 본문입니다.\n감사합니다."


def start_emulator(journal: OutboxJournal | None = None) -> SesEmulator:
    emu = SesEmulator(
        region=REGION,
        allowed_senders=[SENDER],
        allowed_domains=[DOMAIN],
        max_24_hour_send=50_000,
        max_send_rate=14,
        journal=journal,
    )
    emu.start()
    return emu


@pytest.fixture
def emulator():
    emu = start_emulator()
    try:
        yield emu
    finally:
        emu.stop()


def send(client: Any, sender: str, to: str, subject: str = "Hi", body: str = "Body") -> str:
    response = client.send_email(
        FromEmailAddress=sender,
        Destination={"ToAddresses": [to]},
        Content={
            "Simple": {
                "Subject": {"Data": subject, "Charset": "UTF-8"},
                "Body": {"Text": {"Data": body, "Charset": "UTF-8"}},
            }
        },
    )
    message_id: str = response["MessageId"]
    return message_id


def test_it_listens_on_loopback_only(emulator):
    assert emulator.endpoint_url.startswith("http://127.0.0.1:")


def test_allowed_sender_and_domain_can_send_an_unlisted_sender_cannot(emulator):
    client = make_client("sesv2", emulator.endpoint_url)

    assert send(client, SENDER, "a@example.com")
    assert send(client, f"noreply@{DOMAIN}", "b@example.com")
    with pytest.raises(ClientError) as caught:
        send(client, "intruder@evil.example", "c@example.com")

    assert caught.value.response["Error"]["Code"] == "MessageRejected"
    assert [m.sender for m in emulator.messages()] == [SENDER, f"noreply@{DOMAIN}"]


def test_quota_is_production_like_and_counts_what_was_sent(emulator):
    sesv2 = make_client("sesv2", emulator.endpoint_url)
    ses = make_client("ses", emulator.endpoint_url)

    before = ses.get_send_quota()
    for i in range(3):
        send(sesv2, SENDER, f"r{i}@example.com")
    with pytest.raises(ClientError):
        send(sesv2, "intruder@evil.example", "x@example.com")  # rejected: not counted
    after = ses.get_send_quota()

    assert (before["Max24HourSend"], before["MaxSendRate"]) == (50_000, 14)
    assert before["SentLast24Hours"] == 0
    assert after["SentLast24Hours"] == 3


def test_set_quota_changes_what_get_send_quota_reports(emulator):
    ses = make_client("ses", emulator.endpoint_url)

    emulator.set_quota(-1, 200)
    unlimited = ses.get_send_quota()
    emulator.set_quota(2, 1)
    small = ses.get_send_quota()

    assert (unlimited["Max24HourSend"], unlimited["MaxSendRate"]) == (-1, 200)
    assert (small["Max24HourSend"], small["MaxSendRate"]) == (2, 1)


def test_messages_carry_decoded_korean_subject_body_and_the_ses_message_id(emulator):
    client = make_client("sesv2", emulator.endpoint_url)

    message_id = send(client, SENDER, "수신자@example.com", KOREAN_SUBJECT, KOREAN_BODY)
    (message,) = emulator.messages()

    assert message.transport == "ses"
    assert message.message_id == message_id
    assert message.sender == SENDER
    assert message.to == ("수신자@example.com",)
    assert message.subject == KOREAN_SUBJECT
    assert message.body == KOREAN_BODY
    # Simple content: SES writes the MIME, moto keeps one body: no headers to show
    assert (message.text, message.html, message.headers) == (KOREAN_BODY, None, None)
    received = datetime.fromisoformat(message.received_at)
    assert received.utcoffset() == timedelta(0)
    assert message.to_json()["messageId"] == message_id
    assert message.to_json()["subject"] == KOREAN_SUBJECT
    assert emulator.messages()[0].received_at == message.received_at  # stable across reads


def test_the_app_reaches_it_through_the_generic_endpoint_variable(emulator, monkeypatch, tmp_path):
    # What the dev host does: AWS_ENDPOINT_URL and dummy credentials, no explicit clients.
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_SESV2", "AWS_ENDPOINT_URL_SES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "dev")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "dev")
    monkeypatch.setenv("AWS_ENDPOINT_URL", emulator.endpoint_url)
    sender = SesSender(settings=Settings(AWS_REGION=REGION))

    results = sender.send(
        SENDER, ["a@example.com", "b@example.com"], MailParts(KOREAN_SUBJECT, "Body")
    ).deliveries
    quota = sender.get_quota()

    assert all(d.ok for d in results)
    assert sorted(m.message_id for m in emulator.messages()) == sorted(
        str(d.message_id) for d in results
    )
    assert quota.max_24_hour_send == 50_000
    assert quota.max_send_rate == 14
    assert quota.sent_last_24_hours == 2
    assert quota.remaining() == 49_998


def test_concurrent_sends_are_all_captured_once(emulator):
    client = make_client("sesv2", emulator.endpoint_url)
    ids: list[str] = []
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(5):
                ids.append(send(client, SENDER, f"t{n}-{i}@example.com"))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    captured = emulator.messages()
    assert sorted(m.message_id for m in captured) == sorted(ids)
    assert len(set(ids)) == 20
    quota = make_client("ses", emulator.endpoint_url).get_send_quota()
    assert quota["SentLast24Hours"] == 20


def test_stop_closes_the_port(emulator):
    url = emulator.endpoint_url
    emulator.stop()

    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=5)
    with pytest.raises(RuntimeError, match="not been started"):
        _ = emulator.endpoint_url


def test_raw_mime_messages_are_listed_with_the_subject_decoded(emulator):
    from email.message import EmailMessage

    mime = EmailMessage()
    mime["From"] = SENDER
    mime["To"] = "a@example.com"
    mime["Subject"] = KOREAN_SUBJECT  # sent as an RFC 2047 encoded word
    mime.set_content(KOREAN_BODY)
    raw = mime.as_bytes()
    assert KOREAN_SUBJECT.encode() not in raw  # really encoded on the wire
    client = make_client("sesv2", emulator.endpoint_url)

    response = client.send_email(
        FromEmailAddress=SENDER,
        Destination={"ToAddresses": ["a@example.com"]},
        Content={"Raw": {"Data": raw}},
    )
    (message,) = emulator.messages()

    assert message.message_id == response["MessageId"]
    assert message.subject == KOREAN_SUBJECT
    assert message.body.rstrip("\n") == KOREAN_BODY
    assert message.to == ("a@example.com",)


def send_newsletter(emulator: SesEmulator) -> tuple[str, list[tuple[str, str]]]:
    raw, headers = newsletter()
    response = make_client("sesv2", emulator.endpoint_url).send_email(
        FromEmailAddress=SENDER,
        Destination={"ToAddresses": [RECIPIENT]},
        Content={"Raw": {"Data": raw}},
    )
    message_id: str = response["MessageId"]
    return message_id, headers


def test_a_raw_multipart_message_shows_its_headers_text_and_html_decoded(emulator):
    message_id, headers = send_newsletter(emulator)

    (message,) = emulator.messages()

    assert (message.message_id, message.sender) == (message_id, SENDER)
    assert_shows_newsletter(message, headers)


def test_the_journal_keeps_headers_text_and_html_across_a_restart(tmp_path):
    journal = tmp_path / "outbox.jsonl"
    emu = start_emulator(OutboxJournal(journal))
    try:
        message_id, headers = send_newsletter(emu)
    finally:
        emu.stop()

    (message,) = OutboxJournal(journal).read()  # what a restarted devhost reads

    assert message.message_id == message_id
    assert_shows_newsletter(message, headers)


def test_a_moto_reset_keeps_the_production_quota(emulator):
    ses = make_client("ses", emulator.endpoint_url)
    send(make_client("sesv2", emulator.endpoint_url), SENDER, "a@example.com")
    reset = urllib.request.Request(f"{emulator.endpoint_url}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset, timeout=10).close()

    assert emulator.messages() == []  # everything moto held is gone
    quota = ses.get_send_quota()

    assert (quota["Max24HourSend"], quota["MaxSendRate"]) == (50_000, 14)
    assert quota["SentLast24Hours"] == 0
