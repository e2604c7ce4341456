"""What the embedded emulators captured, in the shape of ``GET /_dev/outbox``."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
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


class OutboxJournal:
    """An append-only JSON-lines file of captured mail, so the outbox survives a restart.

    Each capture is written (and flushed to the OS) before the emulator answers the sender, so a
    devhost killed with SIGKILL still knows every message it accepted.
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
            lines = self.path.read_text(encoding="utf-8").splitlines()
        for line in lines:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a kill in the middle of a write
            out.append(
                OutboxMessage(
                    transport=item["transport"],
                    sender=item["from"],
                    to=tuple(item["to"]),
                    subject=item["subject"],
                    message_id=item["messageId"],
                    received_at=item["receivedAt"],
                    body=item.get("body", ""),
                )
            )
        return out
