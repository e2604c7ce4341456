"""What the embedded emulators captured, in the shape of ``GET /_dev/outbox``.

Each captured mail is an :class:`OutboxMessage`: who sent it to whom, its decoded subject, the
message id, when the emulator took it, and — for a message captured as MIME bytes (SES
``Content.Raw``, anything over SMTP) — what a recipient gets, read by :func:`from_wire`:

- ``headers``: every header of the top-level message in order, as ``[name, value]`` pairs,
  folding undone. Encoded words (RFC 2047) are decoded where RFC 2047 lets them stand — the
  address headers (``From``, ``To``, ``Cc``, ``Bcc``, ``Reply-To``, ``Sender``, ``Resent-*``),
  ``Subject``, ``Comments``, ``Content-Description`` and ``X-*`` extension fields — and 8-bit
  UTF-8 (RFC 6532) is read as UTF-8. Every other header (``List-Unsubscribe``,
  ``List-Unsubscribe-Post``, ``Content-Type``, ``Message-ID``, ``Date``, ...) is shown as it was
  on the wire: a mail client does not decode an encoded word there, so neither does the outbox,
  and a test comparing such a header exactly sees what a recipient's client sees.
- ``text`` / ``html``: the first ``text/plain`` and the first ``text/html`` part that is not an
  attachment, transfer encoding and charset decoded, line breaks as ``\\n`` (as a mail client
  shows them); ``None`` when the message has no such part.
- ``body``: what it always was, the text part, else the HTML part, else ``""``.

What is not known is ``None``, never a guess: a moto ``Simple`` message (SES built the MIME
itself) has ``headers=None`` and its body as ``text``; a journal line written before these
fields existed reads with ``headers``, ``text`` and ``html`` all ``None``. The raw bytes are
not kept in the outbox (they would about double every journal line and every poll of
``/_dev/outbox``); the SMTP sink keeps them in memory for tests (``SmtpSink.raw_messages``).
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any, Literal

Transport = Literal["ses", "smtp"]
Header = tuple[str, str]

#: Headers whose encoded words a mail client decodes (RFC 2047 section 5); ``x-`` fields too.
_DECODED_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "sender",
        "resent-from",
        "resent-to",
        "resent-cc",
        "resent-bcc",
        "resent-sender",
        "subject",
        "comments",
        "content-description",
    }
)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One captured mail. ``subject`` is decoded text; ``received_at`` is ISO 8601 UTC.

    ``headers``, ``text`` and ``html`` are what a recipient gets (see the module docstring);
    ``None`` where the capture did not record it.
    """

    transport: Transport
    sender: str
    to: tuple[str, ...]
    subject: str
    message_id: str
    received_at: str
    body: str = ""
    headers: tuple[Header, ...] | None = None
    text: str | None = None
    html: str | None = None

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        wanted = name.lower()
        return next((v for n, v in self.headers or () if n.lower() == wanted), None)

    def to_json(self) -> dict[str, object]:
        return {
            "transport": self.transport,
            "from": self.sender,
            "to": list(self.to),
            "subject": self.subject,
            "messageId": self.message_id,
            "receivedAt": self.received_at,
            "body": self.body,
            "headers": None if self.headers is None else [list(h) for h in self.headers],
            "text": self.text,
            "html": self.html,
        }

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> OutboxMessage:
        """The inverse of :meth:`to_json`; fields added later may be missing (old journals)."""
        headers = item.get("headers")
        return cls(
            transport=item["transport"],
            sender=item["from"],
            to=tuple(item["to"]),
            subject=item["subject"],
            message_id=item["messageId"],
            received_at=item["receivedAt"],
            body=item.get("body", ""),
            headers=None if headers is None else tuple((str(n), str(v)) for n, v in headers),
            text=item.get("text"),
            html=item.get("html"),
        )


def from_wire(
    raw: bytes,
    *,
    transport: Transport,
    sender: str,
    to: Sequence[str],
    message_id: str | None,
    received_at: str,
) -> OutboxMessage:
    """An outbox entry for a message captured as the bytes it was on the wire.

    ``sender`` empty: the ``From`` header's. ``message_id`` None: the ``Message-ID`` header's
    (SMTP); SES answers with its own id, which is the one the app records.
    """
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    if not isinstance(parsed, EmailMessage):  # policy.default's message_factory makes one
        raise TypeError(f"expected an EmailMessage, got {type(parsed).__name__}")
    headers = tuple(_headers(parsed))
    text = _first_part(parsed, "plain")
    html = _first_part(parsed, "html")
    found = {name.lower(): value for name, value in reversed(headers)}  # the first of each
    return OutboxMessage(
        transport=transport,
        sender=sender or found.get("from", ""),
        to=tuple(to),
        subject=found.get("subject", ""),
        message_id=found.get("message-id", "").strip() if message_id is None else message_id,
        received_at=received_at,
        body=text if text is not None else (html or ""),
        headers=headers,
        text=text,
        html=html,
    )


def _headers(message: Message) -> Iterator[Header]:
    for name, value in message.raw_items():
        yield name, _header_value(name, value)


def _header_value(name: str, raw: str) -> str:
    key = name.lower()
    if key in _DECODED_HEADERS or key.startswith("x-"):
        try:
            return _utf8(str(email.policy.default.header_fetch_parse(name, raw)))
        except Exception:  # noqa: S110 - a header the parser cannot take: show it as it came
            pass
    return _utf8("".join(_LINE_BREAK.split(raw)))


def _utf8(value: str) -> str:
    """8-bit header bytes reach here as surrogate escapes: read them as UTF-8 (RFC 6532)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


def _first_part(message: EmailMessage, subtype: str) -> str | None:
    for part in _leaves(message):
        if part.get_content_type() == f"text/{subtype}" and not part.is_attachment():
            return _content(part)
    return None


def _leaves(part: EmailMessage) -> Iterator[EmailMessage]:
    """The non-multipart parts, depth first (an attached ``message/rfc822`` is a leaf)."""
    if part.get_content_maintype() != "multipart":
        yield part
        return
    for sub in part.iter_parts():
        if isinstance(sub, EmailMessage):  # always, with policy.default
            yield from _leaves(sub)


def _content(part: EmailMessage) -> str:
    try:
        content = str(part.get_content())
    except (LookupError, ValueError):  # an unknown charset, a broken transfer encoding
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return "\n".join(_LINE_BREAK.split(content))


class OutboxJournal:
    """An append-only JSON-lines file of captured mail, so the outbox survives a restart.

    Each capture is written (and flushed to the OS) before the emulator answers the sender, so a
    devhost killed with SIGKILL still knows every message it accepted. Lines written before a
    field existed still read (:meth:`OutboxMessage.from_json`).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, message: OutboxMessage) -> None:
        line = json.dumps(message.to_json(), ensure_ascii=False) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as journal:
            journal.write(line)
            journal.flush()
            os.fsync(journal.fileno())

    def read(self) -> list[OutboxMessage]:
        if not self.path.exists():
            return []
        out: list[OutboxMessage] = []
        with self._lock:
            # "\n" only: str.splitlines() would also split at U+2028 or U+0085 inside a body,
            # which json.dumps leaves as they are.
            lines = self.path.read_text(encoding="utf-8").split("\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a kill in the middle of a write
            out.append(OutboxMessage.from_json(item))
        return out
