"""When to try an event again: a fixed schedule spanning more than a day, as a pure function.

Attempt 1 is made at once; attempt *n* waits :data:`RETRY_DELAYS_SECONDS`\\ ``[n-1]`` after
attempt *n-1* failed — 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (Svix's schedule, which the
Standard Webhooks spec's example follows for its first seven steps): eight attempts over 27 h 35
min at least, so a receiver down for a whole day still gets the event, and a receiver that never
answers costs eight requests per event. Then the event is given up for that endpoint (logged).

Each delay is stretched by up to :data:`JITTER` (never shortened, so the total stays above a
day), by an amount that is a hash of the event id and the attempt: pure and repeatable (a
redelivered queue message computes the same delay), yet events that failed together —
an endpoint's outage — do not all come back in the same second. A ``Retry-After`` the receiver
sent is honoured when it asks for longer than the schedule, up to the schedule's longest step.
"""

from __future__ import annotations

import hashlib

RETRY_DELAYS_SECONDS: tuple[float, ...] = (
    0.0,
    5.0,
    5 * 60.0,
    30 * 60.0,
    2 * 3600.0,
    5 * 3600.0,
    10 * 3600.0,
    10 * 3600.0,
)
MAX_ATTEMPTS = len(RETRY_DELAYS_SECONDS)
#: The largest share a delay is stretched by.
JITTER = 0.1


def delay_before(attempt: int, *, key: str = "", retry_after: float | None = None) -> float | None:
    """Seconds to wait, after attempt ``attempt - 1`` failed, before attempt ``attempt``
    (1-based: attempt 1 waits 0); None once :data:`MAX_ATTEMPTS` were made (give up).
    ``key``: the event id (and endpoint), which picks the jitter."""
    if attempt < 1:
        raise ValueError("attempts count from 1")
    if attempt > MAX_ATTEMPTS:
        return None
    base = RETRY_DELAYS_SECONDS[attempt - 1]
    digest = hashlib.sha256(f"{key}\x1f{attempt}".encode()).digest()
    stretch = int.from_bytes(digest[:4], "big") / 2**32 * JITTER
    delay = base * (1 + stretch)
    if retry_after is not None and attempt > 1:
        delay = max(delay, min(retry_after, max(RETRY_DELAYS_SECONDS)))
    return delay
