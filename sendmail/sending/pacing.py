"""Pacing ``SendEmail`` calls at a share of the account's rate, adapting when SES throttles anyway.

SES limits an account to ``MaxSendRate`` messages a second and answers a call above it with 429
``TooManyRequestsException`` ("Maximum sending rate exceeded."); it tolerates short bursts, not
a sustained excess. A batch is given its share of that rate (``MaxSendRate`` divided by the
batches of the send that run at once) and must neither exceed it nor waste it.

:class:`AdaptiveRate` is the one place that decides *when* the next call may start:

Pacing
    A token bucket in its virtual-scheduling form (GCRA): calls are spaced ``1 / rate`` apart,
    with a burst allowance of :data:`BURST_CALLS` so that a dispatcher that wakes up late can
    catch up instead of losing that time for good. Without a rate (unknown quota) nothing waits.

Adapting (AIMD, as TCP does and as botocore's ``adaptive`` retry mode does)
    When SES throttles anyway — other senders on the same account, a limit lowered by AWS — the
    rate is multiplied by :data:`DECREASE_FACTOR` (0.7, botocore's beta), at most once per
    :data:`DECREASE_COOLDOWN_SECONDS` (SES measures its rate per second: every call already in
    flight when the first 429 arrives was sent at the old rate, and punishing each of them
    again would collapse the rate for one event). All the while the rate grows back linearly,
    by the ceiling every :data:`RECOVERY_SECONDS`, never above the ceiling nor below
    :data:`FLOOR_FRACTION` of it. At the configured rate SES does not throttle at all, so
    throttled calls stay a small fraction of all calls. Under a sustained excess the rate
    oscillates just under what SES accepts. In a storm that is not about the rate (SES refusing
    a third of all calls whatever the pace) a decrease comes every second and the rate settles
    where one second of growth is undone by one decrease: ``r = 0.7 (r + C / 10)``, a quarter to
    a third of the ceiling ``C`` — slower, but neither into the wall nor to a standstill.

Thread-safe: one dispatcher reserves slots, the threads that made the calls report outcomes.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

#: Calls that may go out back to back after an idle or late moment (a small burst SES allows).
BURST_CALLS = 2
#: Multiplicative decrease on a throttle.
DECREASE_FACTOR = 0.7
#: At most one decrease per this many seconds (SES's own window).
DECREASE_COOLDOWN_SECONDS = 1.0
#: Linear recovery: from zero to the ceiling in this many seconds (10% of it per second).
RECOVERY_SECONDS = 10.0
#: The rate never drops below this fraction of the ceiling.
FLOOR_FRACTION = 0.1
#: Never slower than this many calls a second, whatever the ceiling (a throttled sandbox account
#: at 1/s must still make progress).
MIN_RATE = 0.2


class AdaptiveRate:
    """A token bucket at ``ceiling`` calls a second (None: unpaced) that backs off on throttles.

    ``start`` is where the rate begins (e.g. where the previous batch of the same send ended);
    it is clamped into ``[floor, ceiling]``.
    """

    def __init__(
        self,
        ceiling: float | None,
        *,
        start: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._ceiling = ceiling if ceiling and ceiling > 0 else None
        if self._ceiling is None:
            self._floor = 0.0
            self._rate = math.inf
        else:
            self._floor = max(MIN_RATE, self._ceiling * FLOOR_FRACTION)
            self._floor = min(self._floor, self._ceiling)
            wanted = start if start and start > 0 else self._ceiling
            self._rate = min(self._ceiling, max(self._floor, wanted))
        now = clock()
        self._tat = now  # theoretical arrival time of the next call (GCRA)
        self._last_decrease = -math.inf
        self._last_update = now
        self.throttles = 0
        self.decreases = 0

    @property
    def rate(self) -> float | None:
        """Calls a second now; None when unpaced."""
        with self._lock:
            return None if self._ceiling is None else self._rate

    @property
    def ceiling(self) -> float | None:
        return self._ceiling

    def reserve(self) -> float:
        """Take the next slot; returns how many seconds to wait before making the call."""
        with self._lock:
            if self._ceiling is None:
                return 0.0
            now = self._clock()
            self._grow(now)
            interval = 1.0 / self._rate
            start = max(now, self._tat - (BURST_CALLS - 1) * interval)
            self._tat = max(self._tat, start) + interval
            return start - now

    def on_success(self) -> None:
        with self._lock:
            if self._ceiling is not None:
                self._grow(self._clock())

    def on_throttle(self) -> None:
        """SES refused a call for its rate: slow down (once per cooldown)."""
        with self._lock:
            self.throttles += 1
            if self._ceiling is None:
                return
            now = self._clock()
            if now - self._last_decrease < DECREASE_COOLDOWN_SECONDS:
                return
            self._grow(now)
            self._rate = max(self._floor, self._rate * DECREASE_FACTOR)
            self._last_decrease = now
            self.decreases += 1

    def _grow(self, now: float) -> None:
        assert self._ceiling is not None
        elapsed = max(0.0, now - self._last_update)
        self._last_update = now
        if self._rate < self._ceiling:
            step = self._ceiling * elapsed / RECOVERY_SECONDS
            self._rate = min(self._ceiling, self._rate + step)
