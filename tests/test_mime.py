"""The mail format: what a receiving mail client decodes from what mime.compose writes."""

from __future__ import annotations

import email
import io
import uuid
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.generator import BytesGenerator
from email.message import EmailMessage
from typing import Any

import pytest

from sendmail.sending.mime import MailParts, compose, new_message_id

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


def build(subject: str = "Hello", body: str = "Body", **kwargs: Any) -> EmailMessage:
    """compose()'s bytes as a message object (read with the SMTP policy: CRLF, 78 columns)."""
    kwargs.setdefault("message_id", MESSAGE_ID)
    sender = kwargs.pop("sender", SENDER)
    recipient = kwargs.pop("recipient", RECIPIENT)
    raw = compose(sender, recipient, MailParts(subject, body), **kwargs)
    parsed = email.message_from_bytes(raw, policy=policy.SMTP)
    assert isinstance(parsed, EmailMessage)
    return parsed


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
        build(**args)


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


def compose_received(parts: MailParts, message_id: str | None = MESSAGE_ID) -> tuple[bytes, Any]:
    raw = compose(SENDER, RECIPIENT, parts, message_id=message_id)
    return raw, received(raw)


def test_html_makes_multipart_alternative_text_first_and_both_decode_exactly():
    long_line = "한국어 텍스트와 이모지 😀🎉 " * 400  # one line of about 7,000 characters
    text = f"안녕하세요 김민수님,\n{long_line}\n\n감사합니다 🙂"
    html = f"<html><body><p>안녕하세요 <b>김민수</b>님 😀</p><p>{long_line}</p></body></html>"

    raw, message = compose_received(MailParts("12월 소식 😀", text, html))

    assert raw.isascii()
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    assert message.get_content_type() == "multipart/alternative"
    plain, rich = message.iter_parts()
    assert [plain.get_content_type(), rich.get_content_type()] == ["text/plain", "text/html"]
    for part in (plain, rich):
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "base64"
    assert plain.get_content() == text.replace("\n", "\r\n")
    assert rich.get_content() == html
    assert str(message["Subject"]) == "12월 소식 😀"
    assert message["MIME-Version"] == "1.0"


def test_extra_headers_are_written_as_given_on_one_line():
    link = "<https://mail.example.com/api/v1/unsubscribe/u1" + "A" * 120 + ">"
    parts = MailParts(
        "Hi",
        "Body",
        headers=(
            ("List-Unsubscribe", link),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ),
    )

    raw, message = compose_received(parts)

    assert f"\r\nList-Unsubscribe: {link}\r\n".encode() in raw
    assert message["List-Unsubscribe"] == link
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.parametrize(
    ("name", "value"),
    [("List-Unsubscribe", "<https://x>\r\nBcc: a@b.c"), ("Bad Name", "x"), ("X-K", "한국")],
)
def test_a_header_that_could_inject_or_is_not_ascii_is_refused(name, value):
    with pytest.raises(ValueError, match=r"header|line breaks"):
        compose(SENDER, RECIPIENT, MailParts("s", "b", headers=((name, value),)), message_id=None)


def test_without_a_message_id_none_is_written_for_ses_to_set():
    _, message = compose_received(MailParts("s", "b"), message_id=None)

    assert message["Message-ID"] is None
    assert message["Date"] is not None


def test_a_message_that_is_not_personalised_has_its_parts_encoded_once():
    from sendmail.sending.mime import _encoded_part

    parts = MailParts("s", "text " + uuid.uuid4().hex, "<p>" + "뉴스" * 5000 + "</p>")
    compose(SENDER, "a@example.com", parts, message_id=None)
    before = _encoded_part.cache_info()

    second = compose(SENDER, "b@example.com", parts, message_id=None)

    after = _encoded_part.cache_info()
    assert (after.hits - before.hits, after.misses - before.misses) == (2, 0)
    html = received(second).get_body(preferencelist=("html",))
    assert html is not None
    assert html.get_content() == parts.html
