"""Following a send until it finishes, with a live progress display.

Contract:

- :func:`watch` polls ``GET /api/v1/emails/{id}`` until it answers 200 (the send finished) and
  returns that body. It waits the service's ``Retry-After`` between reads (between
  ``min_interval`` and ``max_interval``; ``poll_interval`` overrides it).
- Reads change nothing, so network errors and 5xx are retried — with a note on the display —
  for ``give_up_after`` seconds without a good answer; then :class:`~mailctl.client.Unreachable`
  or :class:`~mailctl.client.ServiceError` is raised. A 4xx (unknown id, wrong key) is raised
  at once.
- **Ctrl-C stops the watching, never the send**: :exc:`KeyboardInterrupt` leaves :func:`watch`
  after the display is closed; the caller prints the id and how to resume. Nothing here asks
  the service to stop anything.
- The display shows sent / failed / pending of total, the rate and the ETA. The service's
  counts move a batch at a time (a batch is about a minute of sending), so the rate is measured
  from this watch's first read to the latest change in the counts, and the ETA is the rest at
  that rate. :class:`BarDisplay` is rich's live bar (a terminal); :class:`LineDisplay` writes
  one line per change (logs, CI, pipes); :class:`NoDisplay` is silent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from mailctl.client import Client, ServiceError, Unreachable

Clock = Callable[[], float]
Sleep = Callable[[float], None]


@dataclass(frozen=True, slots=True)
class Counts:
    total: int
    sent: int
    failed: int
    pending: int

    @property
    def done(self) -> int:
        return self.sent + self.failed

    @classmethod
    def of(cls, status: dict[str, Any]) -> Counts:
        progress = status.get("progress") or {}
        return cls(*(int(progress.get(k) or 0) for k in ("total", "sent", "failed", "pending")))


class Rate:
    """Recipients finished per second since the first read, measured at the latest change."""

    def __init__(self) -> None:
        self._start: tuple[float, int] | None = None
        self._latest: tuple[float, int] | None = None

    def observe(self, now: float, done: int) -> None:
        if self._start is None:
            self._start = (now, done)
        elif done != (self._latest or self._start)[1]:
            self._latest = (now, done)

    @property
    def per_second(self) -> float | None:
        if self._start is None or self._latest is None:
            return None
        seconds = self._latest[0] - self._start[0]
        return (self._latest[1] - self._start[1]) / seconds if seconds > 0 else None

    def eta(self, counts: Counts) -> float | None:
        rate = self.per_second
        if not rate or rate <= 0:
            return None
        return max(0, counts.total - counts.done) / rate


def format_rate(rate: float | None) -> str:
    if rate is None:
        return "—/s"
    return f"{rate:,.1f}/s" if rate < 100 else f"{rate:,.0f}/s"


def format_duration(seconds: float | None) -> str:
    if seconds is None or math.isinf(seconds):
        return "—"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class Display(Protocol):
    def __enter__(self) -> Display: ...
    def __exit__(self, *exc: object) -> None: ...
    def update(self, counts: Counts, rate: Rate, runtime: str) -> None: ...
    def note(self, text: str) -> None: ...


class NoDisplay:
    def __enter__(self) -> NoDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, counts: Counts, rate: Rate, runtime: str) -> None:
        return None

    def note(self, text: str) -> None:
        return None


class LineDisplay:
    """One line per change of the counts (and every ``heartbeat`` seconds), for logs."""

    def __init__(self, stream: TextIO, send_id: str, *, heartbeat: float = 30.0) -> None:
        self._stream = stream
        self._send_id = send_id
        self._heartbeat = heartbeat
        self._last: tuple[Counts, str] | None = None
        self._last_at = 0.0

    def __enter__(self) -> LineDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, counts: Counts, rate: Rate, runtime: str) -> None:
        now = time.monotonic()
        if (counts, runtime) == self._last and now - self._last_at < self._heartbeat:
            return
        self._last, self._last_at = (counts, runtime), now
        stamp = datetime.now(UTC).strftime("%H:%M:%SZ")
        self._stream.write(
            f"{stamp} {self._send_id} {runtime}: {counts.done:,}/{counts.total:,} done — "
            f"sent {counts.sent:,}, failed {counts.failed:,}, pending {counts.pending:,} — "
            f"{format_rate(rate.per_second)}, ETA {format_duration(rate.eta(counts))}\n"
        )
        self._stream.flush()

    def note(self, text: str) -> None:
        self._stream.write(f"{text}\n")
        self._stream.flush()


class BarDisplay:
    """rich's live progress bar on a terminal (redrawn in place, 4 times a second)."""

    def __init__(self, console: Console, send_id: str) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=None),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn(
                "[green]{task.fields[sent]} sent[/] · [red]{task.fields[failed]} failed[/] · "
                "[yellow]{task.fields[pending]} pending[/] of {task.fields[of]}"
            ),
            TextColumn("[cyan]{task.fields[rate]}"),
            TextColumn("ETA {task.fields[eta]}"),
            TimeElapsedColumn(),
            console=console,
            refresh_per_second=4,
            expand=True,
        )
        self._send_id = send_id
        self._task: TaskID | None = None

    def __enter__(self) -> BarDisplay:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, counts: Counts, rate: Rate, runtime: str) -> None:
        fields: dict[str, Any] = {
            "sent": f"{counts.sent:,}",
            "failed": f"{counts.failed:,}",
            "pending": f"{counts.pending:,}",
            "of": f"{counts.total:,}",
            "rate": format_rate(rate.per_second),
            "eta": format_duration(rate.eta(counts)),
        }
        description = f"{self._send_id[:12]} {runtime}"
        if self._task is None:
            self._task = self._progress.add_task(
                description, total=max(counts.total, 1), completed=counts.done, **fields
            )
        else:
            self._progress.update(
                self._task,
                description=description,
                total=max(counts.total, 1),
                completed=counts.done,
                **fields,
            )

    def note(self, text: str) -> None:
        self._progress.console.print(text, markup=False, highlight=False)


def watch(
    client: Client,
    send_id: str,
    display: Display,
    *,
    poll_interval: float | None = None,
    min_interval: float = 0.5,
    max_interval: float = 5.0,
    give_up_after: float = 300.0,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> dict[str, Any]:
    """The finished send's status body (see the module docstring)."""
    rate = Rate()
    trouble_since: float | None = None
    with display:
        while True:
            try:
                status = client.status(send_id)
            except (Unreachable, ServiceError) as e:
                if isinstance(e, ServiceError) and e.status < 500:
                    raise
                now = clock()
                trouble_since = trouble_since if trouble_since is not None else now
                if now - trouble_since >= give_up_after:
                    raise
                display.note(f"status read failed ({e}); retrying")
                sleep(max_interval)
                continue
            trouble_since = None
            counts = Counts.of(status.body)
            rate.observe(clock(), counts.done)
            display.update(counts, rate, str(status.body.get("runtimeStatus", "?")))
            if status.done:
                return status.body
            wait = poll_interval
            if wait is None:
                wait = min(max(status.retry_after or min_interval, min_interval), max_interval)
            sleep(wait)
