"""Every recipient's outcome, in request order, a page at a time — for a send of any size.

A send's outcomes are in the send ledger (one partition per batch, keyed by the batch's first
index: :func:`sendmail.sending.jobs.ledger_key`), its addresses in the stored list
(:mod:`sendmail.sending.lists`), and which batch holds which recipient follows from the plan in
its record (:mod:`sendmail.sending.sends`). A page reads, for each window of at most
:data:`WINDOW` recipients, one ranged query of one ledger partition and one ranged read of the
list: its cost does not depend on the send's size or on the page's place in it.

Statuses: ``sent`` (with the Message-ID), ``failed`` (code and message; suppressed addresses
included, as ``SUPPRESSED``), ``canceled`` (code ``CANCELED``: the send was canceled before it
was sent), ``pending`` (no outcome yet). Once the send is over, a recipient without an outcome
is ``failed`` as ``DELIVERY_UNKNOWN``: its batch ended without a record (the ledger could not be
written, or the send was terminated), so it may or may not have been sent — except in a send
canceled before it started (its record counts every recipient canceled, and no ledger row was
ever written): there, ``canceled``.

Cursors are opaque to callers: ``r1.`` + the index of the next recipient to look at, base64url.
With a ``status`` filter a page looks at no more than :data:`SCAN_PAGES` pages' worth of
recipients: it may hold fewer than ``limit`` and still have a ``nextCursor``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from sendmail.contract.vocabulary import FailureCode
from sendmail.sending.control import CANCELED_MESSAGE
from sendmail.sending.jobs import batch_of, ledger_key
from sendmail.sending.ledger import Recorded, SendLedger
from sendmail.sending.lists import StoredSend
from sendmail.sending.sends import SendRecord

Status = Literal["sent", "failed", "canceled", "pending"]
STATUSES: tuple[Status, ...] = ("sent", "failed", "canceled", "pending")
#: Recipients read at once (one ledger query, one list read).
WINDOW = 1000
#: With a status filter, a page looks at no more than this many times ``limit`` recipients.
SCAN_PAGES = 10
_PREFIX = "r1."
UNKNOWN_MESSAGE = (
    "no outcome was recorded for this recipient before the send ended: "
    "it may or may not have been sent"
)


@dataclass(frozen=True, slots=True)
class RecipientOutcome:
    index: int
    email: str
    status: Status
    message_id: str | None = None
    code: str | None = None
    message: str | None = None

    def to_json(self) -> dict[str, str]:
        out = {"email": self.email, "status": self.status}
        if self.message_id is not None:
            out["messageId"] = self.message_id
        if self.code is not None:
            out["code"] = self.code
            out["message"] = self.message or ""
        return out


@dataclass(frozen=True, slots=True)
class Page:
    recipients: list[RecipientOutcome]
    #: Where the next page starts; None on the last page.
    cursor: str | None


def encode_cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{index}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, total: int) -> int:
    """The index a cursor points at; ValueError if it is not one this module gave."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError) as e:
        raise ValueError("not a cursor") from e
    number = text.removeprefix(_PREFIX)
    if number == text or not number.isascii() or not number.isdigit():
        raise ValueError("not a cursor")
    index = int(number)
    if not 0 < index < total:
        raise ValueError("cursor outside the send")
    return index


def outcomes(
    record: SendRecord,
    ledger: SendLedger,
    stored: StoredSend,
    start: int = 0,
    stop: int | None = None,
    *,
    finished: bool,
    window: int = WINDOW,
) -> Iterator[RecipientOutcome]:
    """The recipients ``start`` .. ``stop - 1`` (to the end by default), in request order:
    each batch's outcomes read once (one ledger partition), the list ``window`` addresses at a
    time."""
    end = record.total if stop is None else min(stop, record.total)
    unsent = "canceled" if record.finished and record.canceled == record.total else "unknown"
    index = start
    rows: dict[int, Recorded] = {}
    read_for: int | None = None  # the batch whose outcomes ``rows`` holds
    while index < end:
        first, count = batch_of(record.total, record.lanes, record.batch_size, index)
        upto = min(first + count, index + window, end)
        if read_for != first:  # one read per batch, however many windows it spans
            batch_end = min(first + count, end)
            rows = ledger.outcomes(ledger_key(record.id, first), index - first, batch_end - first)
            read_for = first
        emails = stored.recipients(index, upto - index)
        for offset, email in enumerate(emails):
            row = rows.get(index + offset - first)
            yield _outcome(index + offset, email, row, finished, unsent)
        index = upto


def page(
    record: SendRecord,
    ledger: SendLedger,
    stored: StoredSend,
    *,
    limit: int,
    cursor: str | None = None,
    status: Status | None = None,
    finished: bool,
) -> Page:
    """One page of at most ``limit`` recipients (of ``status``, if given) from ``cursor`` on.
    Raises ValueError for a cursor this module did not give for this send."""
    start = decode_cursor(cursor, record.total) if cursor is not None else 0
    if status is None:
        stop = min(record.total, start + limit)
        chosen = list(outcomes(record, ledger, stored, start, stop, finished=finished))
        return Page(chosen, encode_cursor(stop) if stop < record.total else None)
    stop = min(record.total, start + limit * SCAN_PAGES)
    chosen = []
    for outcome in outcomes(record, ledger, stored, start, stop, finished=finished):
        if outcome.status == status:
            chosen.append(outcome)
            if len(chosen) == limit:
                stop = outcome.index + 1
                break
    return Page(chosen, encode_cursor(stop) if stop < record.total else None)


def _outcome(
    index: int, email: str, row: Recorded | None, finished: bool, unsent: str = "unknown"
) -> RecipientOutcome:
    if row is not None and row.message_id is not None:
        return RecipientOutcome(index, email, "sent", message_id=row.message_id)
    if row is not None and row.code is not None:
        status: Status = "canceled" if row.code == FailureCode.CANCELED.value else "failed"
        return RecipientOutcome(index, email, status, code=row.code, message=row.message)
    if finished and unsent == "canceled":
        code = FailureCode.CANCELED.value
        return RecipientOutcome(index, email, "canceled", code=code, message=CANCELED_MESSAGE)
    if finished:
        code = FailureCode.DELIVERY_UNKNOWN.value
        return RecipientOutcome(index, email, "failed", code=code, message=UNKNOWN_MESSAGE)
    return RecipientOutcome(index, email, "pending")
