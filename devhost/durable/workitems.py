"""The task hub's work-item queue, mirrored into Azurite for the app's backlog probe to read.

On Azure the Durable Azure Storage provider puts every scheduled activity on
``{hub, lower case}-workitems`` and deletes the message when the activity has finished (it stays
there, invisible, while it runs). devhost schedules activities in SQLite, so it mirrors that
queue: one message per activity from the moment it is queued until it finishes. The app's
``sendmail.admission.backlog`` probe then reads the same kind of count from the same kind of queue,
end to end. A mirror that fails (Azurite gone) logs once and never stops the engine.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

logger = logging.getLogger("devhost.durable")


class WorkItemQueue:
    """Puts and deletes one message per activity on an Azure Storage queue (``QueueClient``)."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue
        self._lock = threading.Lock()
        self._messages: dict[int, tuple[str, str]] = {}  # activity id -> (message id, receipt)
        self._failed = False

    def reset(self) -> None:
        """Start from an empty queue (after a restart the engine puts its pending work again)."""
        from azure.core.exceptions import ResourceExistsError

        try:
            try:
                self._queue.create_queue()
            except ResourceExistsError:
                self._queue.clear_messages()
        except Exception:
            self._fail("reset")

    def put(self, activity_id: int) -> None:
        try:
            # visible for a week: the queue counts it until the activity finishes
            sent = self._queue.send_message(str(activity_id), time_to_live=-1)
        except Exception:
            self._fail("put")
            return
        with self._lock:
            self._messages[activity_id] = (sent.id, sent.pop_receipt)

    def done(self, activity_id: int) -> None:
        with self._lock:
            message = self._messages.pop(activity_id, None)
        if message is None:
            return
        try:
            self._queue.delete_message(*message)
        except Exception:
            self._fail("delete")

    def _fail(self, what: str) -> None:
        if not self._failed:
            self._failed = True
            logger.warning("the work-item queue mirror failed (%s); going on without it", what)
