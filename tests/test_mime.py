"""The mail format: what a receiving mail client decodes from what build_message produces."""

from __future__ import annotations

import email
import io
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.generator import BytesGenerator
from email.message import EmailMessage
from typing import Any

import pytest

from sendmail.sending.mime import build_message, new_message_id

SENDER = "se@aifactory.page"
RECIPIENT = "reader@example.com"
MESSAGE_ID = "<1.2.3@aifactory.page>"


def wire(message: EmailMessage) -> bytes:
    """The bytes smtplib puts after DATA (same generator, CRLF line ends)."""
    out = io.BytesIO()
    BytesGenerator(out).flatten(message, linesep="\r\n")
    return out.getvalue()


def received(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def build(subject: str = "Hello", body: str = "Body", **kwargs) -> EmailMessage:
    kwargs.setdefault("message_id", MESSAGE_ID)
    return build_message(SENDER, RECIPIENT, subject, body, **kwargs)


def test_korean_subject_is_rfc2047_encoded_and_decodes_exactly():
    subject = "안녕하세요 {{name}}님"
    raw = wire(build(subject))

    assert raw.isascii()
    assert b"Subject: =?utf-8?b?" in raw
    assert str(received(raw)["Subject"]) == subject


@pytest.mark.parametrize(
    "subject",
    [
        # Long enough to fold, with a double space where the stdlib folder would fold and
        # drop it (Python 3.11's EmailPolicy folding loses whitespace between encoded words).
        "[공지] 11월 정기 점검 일정 안내드립니다 서비스 이용에 참고 부탁드립니다  감사합니다 😀",
        "가" * 200,
        "  leading and trailing spaces  ",
        "ASCII but long enough to need folding: " + "word " * 30,
        "looks like an encoded word =?utf-8?q?x?= but is not",
        "tab\tinside",
        "",
    ],
)
def test_any_subject_round_trips_exactly_with_lines_within_78(subject):
    raw = wire(build(subject))

    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    assert str(received(raw)["Subject"]) == subject


def test_short_ascii_subject_stays_readable():
    assert b"\r\nSubject: Weekly report {{name}}\r\n" in wire(build("Weekly report {{name}}"))


def test_body_is_utf8_base64_and_decodes_to_the_same_text():
    body = "안녕하세요 {{name}}님,\n\n점검은 02:00에 시작합니다.\n  들여쓴 줄 😀\n끝"
    raw = wire(build(body=body))
    part = received(raw)

    assert raw.isascii()  # nothing relies on 8BITMIME
    assert part.get_content_type() == "text/plain"
    assert part.get_content_charset() == "utf-8"
    assert part["Content-Transfer-Encoding"] == "base64"
    # Text travels with CRLF line breaks (RFC 2045 canonical form); nothing else changes,
    # no line is rewrapped and no trailing newline is added.
    assert part.get_content() == body.replace("\n", "\r\n")


def test_lone_cr_and_lf_in_the_body_become_crlf():
    part = received(wire(build(body="one\rtwo\nthree\r\nfour")))
    assert part.get_content() == "one\r\ntwo\r\nthree\r\nfour"


def test_date_and_message_id_are_always_present():
    when = datetime(2026, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=9)))

    with_date = received(wire(build(date=when)))
    without = received(wire(build()))

    assert with_date["Message-ID"] == MESSAGE_ID
    assert with_date["Date"].datetime == when
    assert without["Date"] is not None
    assert abs(without["Date"].datetime - datetime.now(UTC)) < timedelta(days=1)


def test_naive_date_is_refused():
    with pytest.raises(ValueError, match="time zone"):
        build(date=datetime(2026, 3, 1, 9, 30))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("subject", "Hi\r\nBcc: everyone@example.com"),
        ("subject", "Hi\nBcc: everyone@example.com"),
        ("subject", "Hi\rthere"),
        ("subject", "Hi\u2028there"),
        ("sender", "se@aifactory.page\r\nBcc: x@example.com"),
        ("recipient", "reader@example.com\nBcc: x@example.com"),
    ],
)
def test_line_breaks_in_headers_are_refused(field, value):
    args: dict[str, Any] = {"sender": SENDER, "recipient": RECIPIENT, "subject": "s", "body": "b"}
    args[field] = value
    with pytest.raises(ValueError, match="line breaks"):
        build_message(**args, message_id=MESSAGE_ID)


def test_message_id_uses_the_senders_domain_and_is_unique():
    first, second = new_message_id(SENDER), new_message_id(SENDER)

    assert first.startswith("<")
    assert first.endswith("@aifactory.page>")
    assert first != second


def test_message_id_of_an_internationalised_domain_is_ascii():
    assert new_message_id("홍길동@한국.kr").endswith("@xn--3e0b707e.kr>")


def test_sender_without_a_domain_is_refused():
    with pytest.raises(ValueError, match="domain"):
        new_message_id("no-at-sign")
