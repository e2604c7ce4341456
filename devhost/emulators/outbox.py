"""What the embedded emulators captured, in the shape of ``GET /_dev/outbox``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Transport = Literal["ses", "smtp"]


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One captured mail. ``subject`` is decoded text; ``received_at`` is ISO 8601 UTC."""

    transport: Transport
    sender: str
    to: tuple[str, ...]
    subject: str
    message_id: str
    received_at: str
    body: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "transport": self.transport,
            "from": self.sender,
            "to": list(self.to),
            "subject": self.subject,
            "messageId": self.message_id,
            "receivedAt": self.received_at,
            "body": self.body,
        }
