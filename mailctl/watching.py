"""Following a send until it finishes, with a live progress display.

Contract:

- :func:`watch` polls ``GET /api/v1/emails/{id}`` until it answers 200 (the send finished) and
  returns that body. It waits the service's ``Retry-After`` between reads (between
  ``min_interval`` and ``max_interval``; ``poll_interval`` overrides it).
- Reads change nothing, so network errors, 429 and 5xx are retried — with a note on the display
  — for ``give_up_after`` seconds without a good answer; then
  :class:`~mailctl.client.Unreachable` or :class:`~mailctl.client.ServiceError` is raised. Any
  other 4xx (unknown id, wrong key) is raised at once.
- **Ctrl-C stops the watching, never the send**: :exc:`KeyboardInterrupt` leaves :func:`watch`
  after the display is closed; the caller prints the id and how to resume. Nothing here asks
  the service to stop anything.
- **A paused send is watched on**: it may be resumed (or canceled), so :func:`watch` keeps
  reading until the service answers 200, showing ``paused`` (:func:`shown_state`) and saying
  once how to resume it. A canceled send shows ``canceled`` from the cancel on, and its
  answer is 200 once its counts are final.
- The display shows sent / failed / pending (and canceled, once there are any) of total, the
  rate and the ETA. The service's counts move a batch at a time (a batch is about a minute of
  sending), so the rate is measured from this watch's first read to the latest rise of the
  highest count seen (counts that go down — the service falls back to coarser counts when it
  cannot read a lane — undo nothing: the rate is never negative), leaving out the time the send
  was paused or waiting for its scheduled time (nothing could be sent then), and the ETA is the
  rest at that rate (none while paused or scheduled). Canceled recipients are done but not
  sent: they fill the bar, never the rate. :class:`BarDisplay` is a live
  line on a terminal (:func:`progress_line`: it fits the terminal's width, dropping the bar
  first, then the other decorations, so the counts, the rate and the ETA always show);
  :class:`LineDisplay` writes one line per change (logs, CI, pipes); :class:`NoDisplay` is
  silent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from mailctl.client import Client, ServiceError, Unreachable

Clock = Callable[[], float]
Sleep = Callable[[float], None]


#: The status route's ``state`` values shown instead of the runtime status: they say more
#: (the runtime status of a paused or scheduled send is Running, of a canceled one Completed).
SHOWN_STATES = ("scheduled", "paused", "canceled")
#: States in which nothing is sent: the rate's clock stops (:class:`Rate`).
HELD_STATES = ("scheduled", "paused")


def shown_state(status: dict[str, Any]) -> str:
    """What a status body says the send is doing: ``scheduled``, ``paused`` or ``canceled``
    where the service's ``state`` says so, else the Durable runtime status (``Running``,
    ``Completed``, ``Failed`` …, as before the service had ``state``)."""
    state = status.get("state")
    if state in SHOWN_STATES:
        return str(state)
    return str(status.get("runtimeStatus", "?"))


@dataclass(frozen=True, slots=True)
class Counts:
    total: int
    sent: int
    failed: int
    pending: int
    #: Not sent because the send was canceled (the service's ``progress.canceled``).
    canceled: int = 0

    @property
    def done(self) -> int:
        """Recipients settled: sent, failed or canceled (the bar's part)."""
        return self.sent + self.failed + self.canceled

    @property
    def attempted(self) -> int:
        """Recipients sent or failed: what the rate measures (a cancel settles many at once
        without sending any)."""
        return self.sent + self.failed

    @classmethod
    def of(cls, status: dict[str, Any]) -> Counts:
        progress = status.get("progress") or {}
        keys = ("total", "sent", "failed", "pending", "canceled")
        return cls(*(int(progress.get(k) or 0) for k in keys))


class Rate:
    """Recipients finished per second since the first read, measured at the latest rise of the
    highest count seen (never negative: a count that goes down is not progress undone), over
    the time the send could send: a hold (paused, or waiting for its scheduled time) is left
    out from the first read that saw it to the last (the time between that and the next read
    counts: the send may have gone on at any moment of it), and there is no ETA while held."""

    def __init__(self) -> None:
        self._start: tuple[float, int] | None = None
        #: (when, done, seconds held between the first read and then)
        self._latest: tuple[float, int, float] | None = None
        self._hold: tuple[float, float] | None = None  # (first, last) read of the current hold
        self._held_before = 0.0  # seconds held, in holds that have ended

    def observe(self, now: float, done: int, *, held: bool = False) -> None:
        if held:
            self._hold = (self._hold[0] if self._hold is not None else now, now)
        elif self._hold is not None:
            self._held_before += self._hold[1] - self._hold[0]
            self._hold = None
        if self._start is None:
            self._start = (now, done)
        elif done > (self._latest[1] if self._latest is not None else self._start[1]):
            self._latest = (now, done, self._held())

    def _held(self) -> float:
        ongoing = self._hold[1] - self._hold[0] if self._hold is not None else 0.0
        return self._held_before + ongoing

    @property
    def held(self) -> bool:
        return self._hold is not None

    @property
    def per_second(self) -> float | None:
        if self._start is None or self._latest is None:
            return None
        seconds = self._latest[0] - self._start[0] - self._latest[2]
        return (self._latest[1] - self._start[1]) / seconds if seconds > 0 else None

    def eta(self, counts: Counts) -> float | None:
        rate = self.per_second
        if self.held or not rate or rate <= 0:
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
        canceled = f", canceled {counts.canceled:,}" if counts.canceled else ""
        eta = format_duration(rate.eta(counts))
        self._stream.write(
            f"{stamp} {self._send_id} {runtime}: {counts.done:,}/{counts.total:,} done — "
            f"sent {counts.sent:,}, failed {counts.failed:,}, pending {counts.pending:,}"
            f"{canceled} — {format_rate(rate.per_second)}, ETA {eta}\n"
        )
        self._stream.flush()

    def note(self, text: str) -> None:
        self._stream.write(f"{text}\n")
        self._stream.flush()


#: The narrowest bar worth drawing; below it the bar is left out.
MIN_BAR_WIDTH = 10
#: What the live line holds, richest first: the first that fits the width is drawn. The bar goes
#: first, then the elapsed time, the id, the percentage, the runtime status, the total and the
#: words; the counts, the rate and the ETA stay.
_LAYOUTS: tuple[tuple[str, ...], ...] = (
    ("label", "bar", "percent", "counts", "rate", "eta", "elapsed"),
    ("label", "percent", "counts", "rate", "eta", "elapsed"),
    ("label", "percent", "counts", "rate", "eta"),
    ("runtime", "percent", "counts", "rate", "eta"),
    ("runtime", "counts", "rate", "eta"),
    ("counts", "rate", "eta"),
    ("short counts", "rate", "eta"),
    ("bare counts", "rate", "eta"),
)


def progress_line(
    width: int,
    *,
    send_id: str,
    runtime: str,
    counts: Counts,
    rate: float | None,
    eta: float | None,
    elapsed: float | None,
) -> RenderableType:
    """One line of live progress, as much of it as fits ``width`` columns (see :data:`_LAYOUTS`).

    ``sent · failed · pending`` (at the narrowest ``sent/failed/pending``), the rate and the ETA
    fit at 40 columns and more for sends of up to a hundred thousand recipients. Canceled
    recipients, once there are any, follow ``pending`` (``· N canceled``, at the narrowest
    ``/N``).
    """
    sent, failed, pending, total, canceled = (
        f"{n:,}"
        for n in (counts.sent, counts.failed, counts.pending, counts.total, counts.canceled)
    )
    words = f"[green]{sent} sent[/] · [red]{failed} failed[/] · [yellow]{pending} pending[/]"
    bare = f"[green]{sent}[/]/[red]{failed}[/]/[yellow]{pending}[/]"
    if counts.canceled:
        words += f" · [magenta]{canceled} canceled[/]"
        bare += f"/[magenta]{canceled}[/]"
    percent = min(100.0, counts.done * 100 / counts.total) if counts.total else 0.0
    parts = {
        "label": Text(f"{send_id[:12]} {runtime}", style="bold"),
        "runtime": Text(runtime, style="bold"),
        "percent": Text(f"{percent:>3.0f}%"),
        "counts": Text.from_markup(f"{words} of {total}"),
        "short counts": Text.from_markup(words),
        "bare counts": Text.from_markup(bare),
        "rate": Text(format_rate(rate), style="cyan"),
        "eta": Text(f"ETA {format_duration(eta)}"),
        "elapsed": Text(format_duration(elapsed), style="progress.elapsed"),
    }
    for layout in _LAYOUTS:
        used = sum(parts[name].cell_len for name in layout if name != "bar") + len(layout) - 1
        bar = width - used
        if used <= width and ("bar" not in layout or bar >= MIN_BAR_WIDTH):
            break
    table = Table.grid(padding=(0, 1))
    cells: list[RenderableType] = []
    for name in layout:
        if name == "bar":
            table.add_column(width=bar, no_wrap=True)
            cells.append(ProgressBar(total=max(counts.total, 1), completed=counts.done, width=bar))
        else:
            table.add_column(no_wrap=True)
            cells.append(parts[name])
    table.add_row(*cells)
    return table


class BarDisplay:
    """A live progress line on a terminal (:func:`progress_line`, redrawn 4 times a second at
    the terminal's current width)."""

    def __init__(self, console: Console, send_id: str, *, clock: Clock = time.monotonic) -> None:
        self._send_id = send_id
        self._clock = clock
        self._started: float | None = None
        self._state: tuple[Counts, float | None, float | None, str] | None = None
        self._live = Live(self, console=console, refresh_per_second=4)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self._state is None or self._started is None:
            return
        counts, rate, eta, runtime = self._state
        yield progress_line(
            options.max_width,
            send_id=self._send_id,
            runtime=runtime,
            counts=counts,
            rate=rate,
            eta=eta,
            elapsed=self._clock() - self._started,
        )

    def __enter__(self) -> BarDisplay:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    def update(self, counts: Counts, rate: Rate, runtime: str) -> None:
        if self._started is None:
            self._started = self._clock()
        self._state = (counts, rate.per_second, rate.eta(counts), runtime)
        self._live.refresh()

    def note(self, text: str) -> None:
        self._live.console.print(text, markup=False, highlight=False)


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
    resume_hint: str | None = None,
) -> dict[str, Any]:
    """The finished send's status body (see the module docstring). ``resume_hint`` follows the
    note that the send is paused (how to resume it)."""
    rate = Rate()
    trouble_since: float | None = None
    told_paused = False
    with display:
        while True:
            try:
                status = client.status(send_id)
            except (Unreachable, ServiceError) as e:
                if isinstance(e, ServiceError) and e.status < 500 and e.status != 429:
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
            state = status.body.get("state")
            rate.observe(clock(), counts.attempted, held=state in HELD_STATES)
            display.update(counts, rate, shown_state(status.body))
            if status.done:
                return status.body
            if state == "paused" and not told_paused:
                display.note(
                    f"The send {send_id} is paused: nothing new is sent until it is resumed; "
                    f"watching goes on. {resume_hint or ''}".rstrip()
                )
            told_paused = state == "paused"
            wait = poll_interval
            if wait is None:
                wait = min(max(status.retry_after or min_interval, min_interval), max_interval)
            sleep(wait)
