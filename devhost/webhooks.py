"""``GET /_dev/webhooks``: every webhook attempt the app made in this devhost, newest last.

The app runs in devhost's process, so devhost listens to the app's own attempts
(:func:`sendmail.feedback.webhooks.outbox.add_attempt_listener`): what was sent (the event's id,
type and body, the endpoint as the app logs it, the attempt's number) and what the endpoint
answered (the result, status, reason, time, and the first bytes of its answer). Kept in memory,
the last :data:`KEPT` attempts: a development view, gone with the process (the receiver has the
rest). Bodies are the app's events, which name recipients: this is for a developer's machine.
"""

from __future__ import annotations

import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any

#: Attempts kept in memory.
KEPT = 500
#: Bytes of each answer shown.
ANSWER_SHOWN = 300


class WebhookLog:
    """The attempts, as ``GET /_dev/webhooks`` lists them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attempts: deque[dict[str, Any]] = deque(maxlen=KEPT)

    def listen(self) -> bool:
        """Hear the app's attempts; False when the app has no webhooks to hear."""
        try:
            from sendmail.feedback.webhooks.outbox import add_attempt_listener
        except ImportError:
            return False
        add_attempt_listener(self.record)
        return True

    def record(self, pending: Any, endpoint: str, attempt: Any) -> None:
        entry = {
            "at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "id": pending.id,
            "type": pending.type,
            "attempt": pending.attempt,
            "endpoint": endpoint,
            "result": attempt.result,
            "status": attempt.status,
            "reason": attempt.reason,
            "elapsedMs": round(attempt.elapsed * 1000, 1),
            "answer": attempt.answer[:ANSWER_SHOWN].decode("utf-8", "replace"),
            "body": pending.body,
        }
        with self._lock:
            self._attempts.append(entry)

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {"attempts": list(self._attempts)}
