"""v1's other 429, "the internal batch queue is saturated": decided from the task hub's own queue.

The queue is the Durable task hub's **work-item queue** in Azure Storage,
``{task hub name, lower case}-workitems`` (``sendmail-workitems`` for the hub ``SendMail``): every
scheduled activity — an SES batch, an SMTP connection — waits there until a worker takes it, and
stays there (invisible) while it runs. Its approximate message count is the backlog of batch
work, the same signal KEDA's Durable scaler reads. A send is refused with 429 before it starts
when that count is above ``SENDMAIL_MAX_QUEUED_BATCHES``.

Why 500 by default: a send runs at most ``SENDMAIL_SES_MAX_IN_FLIGHT_BATCHES`` (4) batches at
once, each about a minute long, so in steady state the queue holds ~4 messages per running send.
500 is over a hundred sends' worth, or every activity slot (8) of 60 instances — the queue only
gets there when the app cannot keep up (scale-out lagging, ``maximumInstanceCount`` reached),
and a new send would then only wait behind the others.

A probe that fails (storage unreachable, no permission) never blocks sending: it is logged and
the send is admitted; the service keeps working, only less protected.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sendmail.contract.errors import QuotaExceeded

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

logger = logging.getLogger(__name__)

#: Seconds a caller refused for a saturated queue is asked to wait (about one batch).
BACKLOG_RETRY_AFTER_SECONDS = 60


def work_item_queue_name(task_hub: str) -> str:
    """The Azure Storage provider's work-item queue of ``task_hub``."""
    return f"{task_hub.lower()}-workitems"


class BacklogProbe:
    """Reads the approximate message count of the work-item queue (one storage call)."""

    def __init__(self, queue: QueueClient) -> None:
        self._queue = queue

    def queued(self) -> int | None:
        """The count, or None when it cannot be read (logged; never raised)."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            properties = self._queue.get_queue_properties()
        except ResourceNotFoundError:
            return 0  # the hub has not made its queue yet: nothing waits
        except (AzureError, OSError, ValueError) as exc:
            logger.warning(
                "the work-item queue could not be read (%s); admitting the send",
                type(exc).__name__,
            )
            return None
        return int(properties.approximate_message_count or 0)


def admit_backlog(probe: BacklogProbe, limit: int) -> int | None:
    """Raise :class:`QuotaExceeded` (429) when more than ``limit`` batches wait; the count read."""
    queued = probe.queued()
    if queued is not None and queued > limit:
        logger.warning("work-item queue saturated: %d batches queued (limit %d)", queued, limit)
        raise QuotaExceeded(
            f"The internal batch queue is saturated ({queued} batches waiting); nothing was "
            "started, retry later",
            retry_after=BACKLOG_RETRY_AFTER_SECONDS,
            reason="backlog_full",
        )
    return queued


def probe_from_environment(task_hub: str) -> BacklogProbe:
    from sendmail.platform.storage import queue_client

    return BacklogProbe(queue_client(work_item_queue_name(task_hub)))
