"""The outbox's reading of captured mail (``from_wire``), its journal, and ``/_dev/outbox``.

The emulators' own tests (test_ses_emulator.py, test_smtp_sink.py) send a multipart newsletter
through SES and SMTP; these pin the edges without servers — which headers are decoded, 8-bit
mail, attachments, journal lines from before the outbox showed headers and parts — and, with
both emulators on one journal as devhost runs them, the JSON ``GET /_dev/outbox`` answers.
"""

from __future__ import annotations

import json
import smtplib
import ssl
from email import policy
from email.message import EmailMessage

from devhost.embedded import Embedded
from devhost.emulators.outbox import OutboxJournal, OutboxMessage, from_wire
from devhost.emulators.ses import SesEmulator
from tests.support.newsletter import (
    HTML,
    RECIPIENT,
    SENDER,
    TEXT,
    assert_shows_newsletter,
    newsletter,
)
from tests.support.ses import REGION, make_client


def read(raw: bytes, *, sender: str = "", message_id: str | None = None) -> OutboxMessage:
    return from_wire(
        raw,
        transport="smtp",
        sender=sender,
        to=[RECIPIENT],
        message_id=message_id,
        received_at="2026-05-01T00:00:00.000Z",
    )


def test_the_newsletter_reads_as_sent_and_from_and_message_id_come_from_its_headers():
    raw, headers = newsletter()

    message = read(raw)

    assert_shows_newsletter(message, headers)
    assert message.sender == "에이아이팩토리 <se@aifactory.page>"
    assert message.message_id == "<newsletter.1@aifactory.page>"
    assert read(raw, sender="se@aifactory.page", message_id="ses-1").message_id == "ses-1"


def test_encoded_words_are_decoded_only_where_a_mail_client_decodes_them():
    # An encoded List-Unsubscribe is what the stdlib's folder writes for a long value; no mail
    # client decodes it there, so the outbox must not hide it.
    raw = (
        b"From: =?utf-8?b?7JWI64WV?= <se@aifactory.page>\r\n"
        b"Subject: =?utf-8?b?7JWI64WV?=\r\n =?utf-8?q?_=F0=9F=8E=89?=\r\n"
        b"X-Campaign: =?utf-8?q?6=EC=9B=94?=\r\n"
        b"List-Unsubscribe: =?utf-8?q?=3Chttps=3A//x=2Eexample/u/1=3E?=\r\n"
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        b"Content-Type: text/plain;\r\n charset=utf-8\r\n"
        b"\r\n"
        b"hi\r\n"
    )

    message = read(raw)

    assert message.headers == (
        ("From", "안녕 <se@aifactory.page>"),
        ("Subject", "안녕 🎉"),
        ("X-Campaign", "6월"),
        ("List-Unsubscribe", "=?utf-8?q?=3Chttps=3A//x=2Eexample/u/1=3E?="),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("Content-Type", "text/plain; charset=utf-8"),  # as written: unfolded, not re-quoted
    )
    assert message.subject == "안녕 🎉"
    assert message.header("list-unsubscribe") == "=?utf-8?q?=3Chttps=3A//x=2Eexample/u/1=3E?="
    assert message.header("Reply-To") is None


def test_8bit_utf8_headers_and_body_read_as_utf8():
    raw = (
        "From: 김민수 <se@aifactory.page>\r\n"
        "Subject: 안녕 🎉\r\n"
        "List-Unsubscribe: <https://x.example/u/수신거부>\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "<p>안녕\u2028🎉</p>\r\n"
    ).encode()

    message = read(raw)

    assert message.headers == (
        ("From", "김민수 <se@aifactory.page>"),
        ("Subject", "안녕 🎉"),
        ("List-Unsubscribe", "<https://x.example/u/수신거부>"),
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Transfer-Encoding", "8bit"),
    )
    assert (message.text, message.html) == (None, "<p>안녕\u2028🎉</p>\n")
    assert message.body == message.html  # no text part: the HTML, as before


def test_the_first_text_and_html_parts_that_are_not_attachments_are_shown():
    message = EmailMessage(policy=policy.SMTP)
    message["Subject"] = "parts"
    message.set_content("the text\n")
    message.add_alternative("<p>the html</p>\n", subtype="html")
    message.add_attachment("an attached text\n", filename="notes.txt")
    message.add_attachment("<p>an attached page</p>\n", subtype="html", filename="page.html")
    forwarded = EmailMessage(policy=policy.SMTP)
    forwarded.set_content(message)  # message/rfc822, inline: its parts are not this message's
    attachments_only = EmailMessage(policy=policy.SMTP)
    attachments_only.add_attachment("attached before the body\n", filename="first.txt")
    attachments_only.add_attachment("<p>attached</p>\n", subtype="html", filename="a.html")
    attachments_only.attach(forwarded)

    wire = attachments_only.as_bytes()
    assert b"Content-Type: message/rfc822\r\n" in wire
    assert b"the text" in wire

    mixed = read(message.as_bytes())
    no_body = read(wire)

    assert (mixed.text, mixed.html) == ("the text\n", "<p>the html</p>\n")
    assert str(mixed.header("Content-Type")).startswith("multipart/mixed; boundary=")
    assert (no_body.text, no_body.html, no_body.body) == (None, None, "")


def test_an_unknown_charset_still_shows_the_text():
    raw = (
        b"Subject: x\r\nContent-Type: text/plain; charset=x-unknown-charset\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n7JWI64WV\r\n"
    )

    assert read(raw).text == "안녕"


def test_the_journal_round_trips_every_field_and_reads_lines_from_before_them(tmp_path):
    path = tmp_path / "outbox.jsonl"
    raw, _ = newsletter()
    sent = read(raw, sender="se@aifactory.page", message_id="ses-1")
    unusual = OutboxMessage(
        transport="ses",
        sender="se@aifactory.page",
        to=(RECIPIENT,),
        subject="line separators",
        message_id="ses-2",
        received_at="2026-05-01T00:00:01.000Z",
        body="a\u2028b\x85c",
        headers=(),
        text="a\u2028b\x85c",
        html="<p>\u2029</p>",
    )
    old_line = {  # written by devhost before headers, text and html existed
        "transport": "smtp",
        "from": "se@aifactory.page",
        "to": [RECIPIENT],
        "subject": "안녕",
        "messageId": "<x.1@aifactory.page>",
        "receivedAt": "2026-04-30T23:59:59.000Z",
        "body": "안녕\n끝",
    }
    path.write_text(json.dumps(old_line, ensure_ascii=False) + "\n", encoding="utf-8")
    journal = OutboxJournal(path)
    journal.append(sent)
    journal.append(unusual)
    with path.open("a", encoding="utf-8") as torn:
        torn.write('{"transport": "smtp", "fr')  # killed in the middle of a write

    old, again, unusual_again = OutboxJournal(path).read()

    assert (again, unusual_again) == (sent, unusual)
    assert (again.text, again.html) == (TEXT, HTML)
    assert old.to_json() == old_line | {"headers": None, "text": None, "html": None}


def test_the_dev_outbox_lists_both_transports_with_headers_and_parts(start_smtp_sink, tmp_path):
    journal = OutboxJournal(tmp_path / "outbox.jsonl")  # one journal for both, as in devhost
    sink = start_smtp_sink(journal=journal)
    ses = SesEmulator(region=REGION, allowed_senders=[SENDER], allowed_domains=[], journal=journal)
    raw, headers = newsletter()
    with ses:
        make_client("sesv2", ses.endpoint_url).send_email(
            FromEmailAddress=SENDER,
            Destination={"ToAddresses": [RECIPIENT]},
            Content={"Raw": {"Data": raw}},
        )
        context = ssl.create_default_context(cafile=sink.ca_file)
        with smtplib.SMTP_SSL(sink.host, sink.port, context=context) as client:
            client.login(SENDER, "any password")
            client.sendmail(SENDER, [RECIPIENT], raw)

        listed = Embedded(ses=ses, smtp=sink).outbox()  # GET /_dev/outbox: {"messages": listed}

    assert [m["transport"] for m in listed] == ["ses", "smtp"]
    for entry in json.loads(json.dumps(listed)):
        assert entry["headers"] == [list(h) for h in headers]
        assert (entry["text"], entry["html"], entry["body"]) == (TEXT, HTML, TEXT)
        assert_shows_newsletter(OutboxMessage.from_json(entry), headers)
