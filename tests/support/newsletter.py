"""A marketing mail as it goes on the wire, and what the outbox must show of it.

Built with the stdlib ``email`` package (not the app's builder: the outbox is checked against
an independent message): ``multipart/alternative`` with a quoted-printable text part and a
base64 HTML part, Korean text, emoji, a 1,199-character line, an encoded and folded subject, and
``List-Unsubscribe`` folded between its two URIs plus ``List-Unsubscribe-Post`` (RFC 8058),
written as header lines because the stdlib would turn a long ``List-Unsubscribe`` into encoded
words. CRLF line ends throughout, as SMTP and SES carry it.
"""

from __future__ import annotations

from email import policy
from email.message import EmailMessage

from devhost.emulators.outbox import OutboxMessage

SENDER = "se@aifactory.page"
RECIPIENT = "minsu.kim@example.com"
FROM = f"에이아이팩토리 <{SENDER}>"
SUBJECT = "(광고) 6월 소식 — 새 기능을 소개합니다 🎉 김민수님, 이번 달의 소식을 전해 드립니다"
MESSAGE_ID = "<newsletter.1@aifactory.page>"
UNSUBSCRIBE_URL = "https://mail.aifactory.page/api/v1/unsubscribe/" + "AbC-dEf_0123456789" * 4
UNSUBSCRIBE_MAILTO = "mailto:unsubscribe@aifactory.page?subject=unsubscribe"
LONG_LINE = " ".join(["가나다라마바사"] * 150)  # 1,199 characters, 3,150 UTF-8 bytes
TEXT = f"안녕하세요 김민수님 🎉\n\n{LONG_LINE}\n\n수신거부: {UNSUBSCRIBE_URL}\n"
HTML = (
    '<!doctype html>\n<html lang="ko"><body>\n<p>안녕하세요 <b>김민수</b>님 🎉</p>\n'
    f"<p>{LONG_LINE}</p>\n"
    f'<p><a href="{UNSUBSCRIBE_URL}">수신거부 · Unsubscribe</a></p>\n</body></html>\n'
)


def newsletter(recipient: str = RECIPIENT) -> tuple[bytes, list[tuple[str, str]]]:
    """The message's bytes and the headers the outbox must list for it, in order."""
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = FROM
    message["To"] = recipient
    message["Subject"] = SUBJECT
    message["Message-ID"] = MESSAGE_ID
    message.set_content(TEXT, cte="quoted-printable")
    message.add_alternative(HTML, subtype="html", cte="base64")
    head, blank, body = message.as_bytes().partition(b"\r\n\r\n")
    unsubscribe = (
        f"List-Unsubscribe: <{UNSUBSCRIBE_URL}>,\r\n <{UNSUBSCRIBE_MAILTO}>\r\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click"
    ).encode("ascii")
    raw = head + b"\r\n" + unsubscribe + blank + body
    # What the test relies on really is on the wire: encoded, folded, no line over 998 octets.
    assert SUBJECT.encode() not in raw
    assert b"=?utf-8?" in head
    assert b">,\r\n <mailto:" in raw
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998 < len(LONG_LINE.encode())
    headers = [
        ("From", FROM),
        ("To", recipient),
        ("Subject", SUBJECT),
        ("Message-ID", MESSAGE_ID),
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{message.get_boundary()}"'),
        ("List-Unsubscribe", f"<{UNSUBSCRIBE_URL}>, <{UNSUBSCRIBE_MAILTO}>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    ]
    return raw, headers


def assert_shows_newsletter(
    message: OutboxMessage, headers: list[tuple[str, str]], *, recipient: str = RECIPIENT
) -> None:
    """``message`` shows exactly what a recipient of :func:`newsletter` gets."""
    assert message.to == (recipient,)
    assert message.subject == SUBJECT
    assert message.headers == tuple(headers)
    assert message.header("list-unsubscribe-post") == "List-Unsubscribe=One-Click"
    assert message.text == TEXT
    assert message.html == HTML
    assert message.body == TEXT
    as_json = message.to_json()
    assert as_json["headers"] == [list(h) for h in headers]
    assert (as_json["text"], as_json["html"], as_json["body"]) == (TEXT, HTML, TEXT)
