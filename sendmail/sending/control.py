"""Pause, resume and cancel: what each does to a send's record, and how sending sees it.

The control state lives in the send's record (:mod:`sendmail.sending.sends`), and only there.
The routes (``api/control.py``) change it with :func:`decide` — one atomic read-decide-write
(:meth:`~sendmail.sending.sends.SendsTable.change_control`) — and only then wake the send's
orchestrations with the :data:`CONTROL_EVENT` event. Batch activities cannot receive events:
they read the record through a :class:`ControlWatch` before they start and every
:data:`WATCH_INTERVAL` seconds while they send, and stop starting new ``SendEmail`` calls or SMTP
messages as soon as it says ``paused`` or ``canceled`` (orchestrators/lanes.py has what the lane
does then). So the promise "nothing new starts more than 2 seconds after the answer" rests on
this interval plus one table read, never on an event being delivered.

The rules (:func:`decide`), per action and the state the send is in:

============  ==============  ================  ================  =========================
action        running         paused            canceled          ended
============  ==============  ================  ================  =========================
pause         paused          (200, as it is)   409               409
resume        (200, as is)    running           409               409
cancel        canceled        canceled          (200, as it is)   409 (200 if canceled)
============  ==============  ================  ================  =========================

A scheduled send is ``running`` here (waiting for its time): pausing it makes it start paused,
canceling it ends it before anything is sent. A pause is held by whoever made it — a caller, the
account guard, or both (``paused_by``): each resume lifts its own, and the send runs again once
nobody holds it. A caller's resume of a send the guard holds is 409 (only the guard's reset lifts
that); the guard's reset leaves a caller's own pause in place. A caller may always cancel. Every
change counts one in ``control_seq`` (the ``occurrence`` of its webhook).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Literal

from sendmail.contract.errors import StateConflict
from sendmail.sending.jobs import Held
from sendmail.sending.sends import ControlState, PausedBy, SendRecord, SendsTable

logger = logging.getLogger(__name__)

#: The routes' actions.
Action = Literal["pause", "resume", "cancel"]
ACTIONS: tuple[Action, ...] = ("pause", "resume", "cancel")
#: The external events that wake a send's orchestrations; their payload is the action, for the
#: logs: what to do is always read from the record. Every change of the control state raises
#: ``control-{its control_seq}`` to every lane: a paused lane that saw change ``n`` waits for
#: ``control-{n + 1}``, the next change whatever it is (:func:`control_event`), so an event of
#: an earlier change, still buffered or carried over a ``continue_as_new``, never wakes a later
#: wait. A cancel also raises :data:`CANCEL_EVENT` to the parent (a scheduled send waits for it).
CONTROL_EVENT = "control"
CANCEL_EVENT = "cancel"
#: The message of a recipient not sent because its send was canceled (code ``CANCELED``).
CANCELED_MESSAGE = "not sent: the send was canceled"
#: How often a batch in progress reads its send's control state again (seconds).
WATCH_INTERVAL = 0.5


def control_event(seq: int) -> str:
    """The name of the event raised for the send's control change number ``seq``."""
    return f"{CONTROL_EVENT}-{seq}"


class ControlConflict(StateConflict):
    """The action is not allowed in the send's state (the routes answer 409)."""


def decide(
    action: Action, record: SendRecord, *, ended: bool, now: datetime, by: PausedBy = "caller"
) -> SendRecord | None:
    """The record after ``action`` by ``by`` (a caller, or the account guard), or None when the
    send is already as the action would leave it (answered 200, nothing written). ``ended``:
    the send's orchestration has finished. Raises :class:`ControlConflict` when the state does
    not allow it (see the module docs)."""
    state = record.control
    if ended or record.finished is not None:
        if action == "cancel" and state == "canceled":
            return None
        raise ControlConflict(f"The send has already ended; there is nothing to {action}.")
    if state == "canceled":
        if action == "cancel":
            return None
        raise ControlConflict(f"The send was canceled; it cannot be {_past[action]}.")
    if action == "cancel":
        return _changed(record, "canceled", None, now)
    holders = _holders(record)
    if action == "pause":
        if by in holders:
            return None
        return _changed(record, "paused", _paused_by(holders | {by}), now)
    # resume: lifts the pause of whoever asks, and the send runs once nobody else holds it
    if by not in holders:
        if holders == {"guard"}:
            raise ControlConflict(
                "The account guard paused this send (high bounce or complaint rates); an "
                "operator resumes it with POST /api/v1/account/guard/reset after investigating."
            )
        return None  # running, or paused by the caller only: the guard's reset changes nothing
    left = holders - {by}
    if left:
        return _changed(record, "paused", _paused_by(left), now)
    return _changed(record, "running", None, now)


def _holders(record: SendRecord) -> set[str]:
    """Who holds a paused send: ``caller``, ``guard``, both, or nobody (running)."""
    if record.control != "paused":
        return set()
    if record.paused_by == "both":
        return {"caller", "guard"}
    return {record.paused_by or "caller"}


def _paused_by(holders: set[str]) -> PausedBy:
    if holders == {"caller", "guard"}:
        return "both"
    return "guard" if holders == {"guard"} else "caller"


_past: dict[Action, str] = {"pause": "paused", "resume": "resumed", "cancel": "canceled"}


def _changed(
    record: SendRecord, state: ControlState, by: PausedBy | None, now: datetime
) -> SendRecord:
    return replace(
        record, control=state, paused_by=by, control_seq=record.control_seq + 1, control_at=now
    )


def apply(
    sends: SendsTable,
    send_id: str,
    action: Action,
    *,
    ended: Callable[[], bool],
    now: datetime,
    by: PausedBy = "caller",
) -> tuple[SendRecord, bool] | None:
    """:func:`decide` on the stored record, atomically; (record after, whether it changed), or
    None when the send has no record. ``ended`` is asked only when the record is not finished
    (it reads the orchestration's status). Raises :class:`ControlConflict`."""
    over: list[bool] = []

    def change(record: SendRecord) -> SendRecord | None:
        if not over:
            over.append(record.finished is not None or ended())
        return decide(action, record, ended=over[0], now=now, by=by)

    return sends.change_control(send_id, change)


class ControlWatch:
    """A send's control state as its batches in this process see it: read when each batch
    starts, then every ``interval`` seconds by a thread of its own while any batch of
    the send runs here (:func:`watching`). A read that fails keeps the last state (a table
    hiccup does not stop sending; the ledger would fail first)."""

    def __init__(self, read: Callable[[], SendRecord | None], interval: float) -> None:
        self._read = read
        self._interval = interval
        self._seen: tuple[ControlState, int] = ("running", 0)
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="control-watch", daemon=True)
        self._thread.start()

    def held(self) -> Held | None:
        """``paused`` or ``canceled`` when new sends must not start; None while running."""
        return self.snapshot()[0]

    @property
    def seq(self) -> int:
        """The number of the last control change read (the record's ``control_seq``)."""
        return self._seen[1]

    def snapshot(self) -> tuple[Held | None, int]:
        """The state and its change number, read together (one attribute, swapped whole)."""
        state, seq = self._seen
        return (None if state == "running" else state), seq

    def refresh(self) -> None:
        try:
            record = self._read()
        except Exception:
            if not self._failing:
                logger.warning("a send's control state could not be read", exc_info=True)
            self._failing = True
            return
        self._failing = False
        if record is not None:
            self._seen = (record.control, record.control_seq)

    def close(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.refresh()


class Halt:
    """What one batch asks before each call (``halt()``), remembering the first state that
    stopped it: the batch reports that one (``held`` and its change number), even if the watch
    reads ``running`` again before the batch returns — a pause and resume within half a second
    must leave the rest of the batch pending for a new run, not look like recipients a run
    without a deadline left behind for good."""

    def __init__(self, watch: ControlWatch) -> None:
        self._watch = watch
        self.stopped: tuple[Held, int] | None = None

    def __call__(self) -> bool:
        held, seq = self._watch.snapshot()
        if held is None:
            return False
        if self.stopped is None:
            self.stopped = (held, seq)
        return True

    def held(self) -> tuple[Held, int] | None:
        """What the batch reports as holding it: the state that stopped it, else the state now
        if it is held (a batch that ran out of time while the send was paused)."""
        if self.stopped is not None:
            return self.stopped
        held, seq = self._watch.snapshot()
        return (held, seq) if held is not None else None


_watches_lock = threading.Lock()
_watches: dict[str, tuple[ControlWatch, int]] = {}


@contextmanager
def watching(
    sends: SendsTable, send_id: str, interval: float = WATCH_INTERVAL
) -> Iterator[ControlWatch]:
    """The process's :class:`ControlWatch` of ``send_id``, shared by the send's batches that run
    here at once (one table read per interval, however many lanes), closed with the last."""
    with _watches_lock:
        found = _watches.get(send_id)
        if found is None:
            watch = ControlWatch(lambda: sends.get(send_id), interval)
            _watches[send_id] = (watch, 1)
        else:
            watch = found[0]
            _watches[send_id] = (watch, found[1] + 1)
    try:
        watch.refresh()  # a batch starting now sees the state of now
        yield watch
    finally:
        with _watches_lock:
            held, users = _watches[send_id]
            if users == 1:
                del _watches[send_id]
                held.close()
            else:
                _watches[send_id] = (held, users - 1)
