"""The toy app's queue and timer triggers: they record what they got, and fail on demand.

Every run is appended to :data:`RUNS` (tests in this process) and, when ``TOYAPP_TRIGGER_LOG``
names a file, written there as one JSON line (a devhost subprocess). The bindings read app
settings, with defaults set here so that devhost runs the toy app without them:
``TOYAPP_QUEUE`` (the queue ``toy_job`` reads) and ``TOYAPP_TICK_SCHEDULE`` (``tick``'s
schedule; by default once a year); ``TOYAPP_TICK_ON_STARTUP=1`` sets ``tick``'s
``run_on_startup``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import azure.functions as func

os.environ.setdefault("TOYAPP_QUEUE", "toy-jobs")
os.environ.setdefault("TOYAPP_TICK_SCHEDULE", "0 0 0 1 1 *")

triggers = func.Blueprint()  # type: ignore[no-untyped-call]

#: Every run in this process, in order.
RUNS: list[dict[str, Any]] = []
_lock = threading.Lock()


def _record(run: dict[str, Any]) -> None:
    with _lock:
        RUNS.append(run)
        path = os.environ.get("TOYAPP_TRIGGER_LOG")
        if path:
            with open(path, "a", encoding="utf-8") as log:
                log.write(json.dumps(run) + "\n")


def _when(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


@triggers.queue_trigger(
    arg_name="msg", queue_name="%TOYAPP_QUEUE%", connection="AzureWebJobsStorage"
)
def toy_job(msg: func.QueueMessage) -> None:
    """Records the message. A JSON body may ask for ``{"hold": seconds}`` (sleeps first) and
    ``{"fail": n}`` (raises while the dequeue count is at most ``n``; ``"always"``: every
    time)."""
    text = msg.get_body().decode("utf-8", "replace")
    try:
        job = json.loads(text)
    except ValueError:
        job = None
    job = job if isinstance(job, dict) else {}
    started = time.time()
    time.sleep(float(job.get("hold", 0)))
    fail = job.get("fail", 0)
    failing = fail == "always" or (msg.dequeue_count or 0) <= int(fail)
    _record(
        {
            "function": "toy_job",
            "id": msg.id,
            "body": text,
            "dequeueCount": msg.dequeue_count,
            "insertionTime": _when(msg.insertion_time),
            "expirationTime": _when(msg.expiration_time),
            "timeNextVisible": _when(msg.time_next_visible),
            "popReceipt": msg.pop_receipt,
            "started": started,
            "ended": time.time(),
            "failed": failing,
        }
    )
    if failing:
        raise RuntimeError(f"toy_job fails on demand (dequeue count {msg.dequeue_count})")


@triggers.timer_trigger(
    schedule="%TOYAPP_TICK_SCHEDULE%",
    arg_name="timer",
    run_on_startup=os.environ.get("TOYAPP_TICK_ON_STARTUP") == "1",
)
def tick(timer: func.TimerRequest) -> None:
    """Records what the timer says."""
    _record(
        {
            "function": "tick",
            "at": time.time(),
            "pastDue": timer.past_due,
            # the worker's func.TimerRequest has both; the abstract class it is typed as has not
            "scheduleStatus": getattr(timer, "schedule_status", None),
            "schedule": getattr(timer, "schedule", None),
        }
    )
