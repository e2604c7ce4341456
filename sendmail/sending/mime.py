"""Building the mail itself: UTF-8 plain text with MIME encoding that survives any relay.

Decisions (each one checked against what a receiver decodes):

- The body is always UTF-8, base64-encoded, with CRLF line breaks (the canonical form of
  text, RFC 2045). Base64 needs no 8BITMIME support anywhere on the path, and the decoded bytes
  are exactly the text given, line breaks aside: no trailing newline is added, no line is
  rewrapped, ``{{name}}`` and other template-looking text is sent literally.
- The subject is written by this module, not by the ``email`` package's header folder: on
  Python 3.11 that folder drops the whitespace at a fold between two encoded words (a long
  Korean subject loses spaces) and sometimes adds a leading space. A short, plain-ASCII subject
  goes out as it is; any other subject goes out as RFC 2047 base64 encoded words that each hold
  whole characters and carry every space inside them, folded between words, so unfolding and
  decoding give the subject back exactly.
- ``Date`` and ``Message-ID`` are always present. The client makes the Message-ID (the SMTP
  server's 250 reply carries a queue id, not the Message-ID, and Gmail rejects mail without
  a valid one), with the sender's domain on the right of the ``@``.
- CR, LF and the other line separators are refused in the subject, the addresses and the
  Message-ID: a header injection guard behind the HTTP layer's validation.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from sendmail.contract.addresses import ascii_address, ascii_domain
from sendmail.contract.text import has_line_break

#: The policy of every message built here: the modern API, CRLF line ends, 78-column lines.
MESSAGE_POLICY = policy.SMTP

_NEWLINES = re.compile(r"\r\n|\r|\n")
_PLAIN_SUBJECT = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
_SUBJECT_FIELD = "Subject: "
_MAX_LINE = 78  # RFC 5322's recommended limit (MESSAGE_POLICY.max_line_length)
# Bytes of UTF-8 per encoded word: 39 bytes -> 52 base64 chars -> a 64-char encoded word, so
# "Subject: " + the first word stays within 78 columns and every word within RFC 2047's 75.
_ENCODED_WORD_BYTES = 39


def new_message_id(sender: str) -> str:
    """A new, globally unique ``Message-ID`` (``<...@sender's domain>``) for mail from ``sender``.

    An internationalised domain is written in its ASCII (IDNA) form.
    """
    ensure_single_line("sender", sender)
    _, at, domain = parseaddr(sender)[1].rpartition("@")
    if not at or not domain.strip():
        raise ValueError("sender has no domain")
    return make_msgid(domain=ascii_domain(domain.strip()))


def build_message(
    sender: str,
    recipient: str,
    subject: str,
    body: str,
    *,
    message_id: str,
    date: datetime | None = None,
) -> EmailMessage:
    """One UTF-8 plain-text message from ``sender`` to ``recipient``.

    ``date`` defaults to now; it must carry a time zone. Raises ``ValueError`` when the subject,
    an address or the Message-ID holds a line break, or when ``body`` is not encodable text.
    """
    for name, value in (
        ("sender", sender),
        ("recipient", recipient),
        ("subject", subject),
        ("message_id", message_id),
    ):
        ensure_single_line(name, value)
    when = datetime.now(UTC) if date is None else date
    if when.tzinfo is None:
        raise ValueError("date must carry a time zone")

    message = EmailMessage(policy=MESSAGE_POLICY)
    message["From"] = ascii_address(sender)  # domains in ASCII: no SMTPUTF8 needed for them
    message["To"] = ascii_address(recipient)
    message.set_raw("Subject", _subject_field_value(subject))
    message["Date"] = format_datetime(when)
    message["Message-ID"] = message_id
    canonical = _NEWLINES.sub("\r\n", body).encode("utf-8")
    message.set_content(canonical, "text", "plain", cte="base64", params={"charset": "utf-8"})
    return message


def ensure_single_line(name: str, value: str) -> None:
    """Raise ``ValueError`` when ``value`` (a header's content) holds any line break."""
    if has_line_break(value):
        raise ValueError(f"{name} must not contain line breaks")


def _subject_field_value(subject: str) -> str:
    """The Subject field's value as it goes on the wire (already folded, ASCII only)."""
    plain = (
        _PLAIN_SUBJECT.fullmatch(subject) is not None
        and "=?" not in subject
        and len(_SUBJECT_FIELD) + len(subject) <= _MAX_LINE
    )
    if plain or not subject:
        return subject
    words: list[bytes] = []
    chunk = b""
    for char in subject:
        encoded = char.encode("utf-8")
        if chunk and len(chunk) + len(encoded) > _ENCODED_WORD_BYTES:
            words.append(chunk)
            chunk = b""
        chunk += encoded
    words.append(chunk)
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(word).decode('ascii')}?=" for word in words)
