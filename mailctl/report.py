"""The per-recipient report of a finished send: one CSV row per recipient.

Contract:

- Columns (:data:`COLUMNS`): ``email``, ``result`` (``sent``, ``failed``, ``canceled`` — not
  sent because the send was canceled, code ``CANCELED`` — or ``unknown``), ``message_id``
  (sent), ``code`` and ``message`` (failed or canceled, the service's code and text),
  ``delivery`` and ``delivery_time`` (the latest delivery event — ``Delivery``, ``Bounce/
  Permanent``, ``Complaint`` … — where the service has events; ``delivery_detail`` is its
  diagnostic text) and ``events`` (all of them, oldest first, ``type[/subType]@timestamp``
  joined by ``; ``).
- **Rows from the recipients route, streamed.** A service whose status carries
  ``recipientsUrl`` lists every recipient of a send with its outcome, in request order, a page
  at a time (``GET /api/v1/emails/{id}/recipients``): :func:`write_paged_report` writes each
  page's rows as the page arrives, so mailctl holds one page (1,000 recipients,
  :data:`mailctl.client.RECIPIENTS_PAGE`) and never the send, whatever its size. ``result`` is the
  route's status (``sent``, ``failed`` — a recipient the service could not settle is ``failed``
  with ``DELIVERY_UNKNOWN`` —, ``canceled``, and ``unknown`` for one still ``pending``). The
  list given with ``--to-file`` is not needed: the route names every recipient.
- **An older service** (no ``recipientsUrl``: no recipients route) puts the outcomes in the status
  itself: :func:`build_report` maps them. It returns ``messageIds`` in recipient order, one per
  recipient sent, and every other recipient in ``failures``. So with the list that was sent
  (distinct addresses in order, as :mod:`mailctl.recipients` reads it), the recipients not in
  ``failures`` map one to one, in order, onto ``messageIds``. If the counts disagree (another
  list than the one sent) that mapping is not made: the rows then say what is certain, and
  :attr:`Report.warnings` says why. Without the list, the rows are the failures (by address),
  and the Message-IDs with the address a delivery event names, or none. A send that ended
  Failed / Terminated has neither messageIds nor failures: its recipients are ``unknown``, with
  the service's ``error`` as the message. (That status holds the whole send anyway, so this path
  holds it too.)
- **Delivery events, on disk.** A send of a million recipients has a million events and more
  (a ``Delivery`` each, bounces, complaints, delays): held in memory they would break the bound
  above, and keeping them only for sends with few events would drop the columns exactly where
  the report is needed most. So :class:`DeliveryEvents` streams them, a page of the events
  route at a time, into a private temporary SQLite database (in SQLite's temporary directory:
  ``$SQLITE_TMPDIR``, ``$TMPDIR``, else ``/var/tmp``; SQLite unlinks the file as it makes it,
  so nothing is left behind even if mailctl is killed), indexed by Message-ID; each page of
  recipients then looks up its own Message-IDs. Memory: SQLite's page cache, at most
  :data:`EVENT_CACHE_KIB` KiB, and one page of events; disk: about 200 bytes an event (SES
  Message-IDs are 60 characters), some 200 MB for a million. Events without a Message-ID name
  no recipient row and are not kept.
- **Where.** :func:`check_report_path` says, before anything is sent, why a path could not take
  the report (no such folder, not writable, a folder itself). :func:`write_rows` writes it
  atomically — rows go to a temporary file in the same folder, renamed into place once the last
  row is written; if anything fails first (a page that cannot be read, Ctrl-C, a full disk) the
  temporary file is removed and an earlier report at the path is left as it was — with the mode
  any new file gets (``0o666`` less the umask).
"""

from __future__ import annotations

import csv
import os
import sqlite3
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

COLUMNS = (
    "email",
    "result",
    "message_id",
    "code",
    "message",
    "delivery",
    "delivery_time",
    "delivery_detail",
    "events",
)
#: The most memory SQLite's page cache for the delivery events may take, in KiB.
EVENT_CACHE_KIB = 8192
#: The code of a recipient not sent because its send was canceled (its own ``result``, never a
#: failure).
CANCELED_CODE = "CANCELED"
#: The results a row can have.
RESULTS = ("sent", "failed", "canceled", "unknown")
#: Message-IDs looked up per query (below SQLite's smallest limit of bound variables, 999).
_LOOKUP_CHUNK = 500

Row = dict[str, str]


@dataclass(slots=True)
class Report:
    rows: list[Row] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Written:
    """What :func:`write_paged_report` wrote: rows, by result, and the failure codes."""

    rows: int = 0
    results: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)


# --- delivery events ----------------------------------------------------------------------------
class Event(NamedTuple):
    """One delivery event as the report shows it."""

    label: str  # type[/subType]
    timestamp: str
    diagnostic: str
    recipient: str


class DeliveryEvents:
    """A send's delivery events by Message-ID, in a temporary SQLite database on disk (see the
    module docstring). :meth:`add` pages of the events route, then :meth:`of` Message-IDs."""

    def __init__(self) -> None:
        self._db = sqlite3.connect("")  # "": private, on disk, deleted when closed
        self._db.execute(f"PRAGMA cache_size = -{EVENT_CACHE_KIB}")
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY, message_id TEXT NOT NULL, "
            "timestamp TEXT NOT NULL, label TEXT NOT NULL, diagnostic TEXT NOT NULL, "
            "recipient TEXT NOT NULL)"
        )
        self._indexed = False
        self.count = 0

    @classmethod
    def of_list(cls, events: Iterable[dict[str, Any]]) -> DeliveryEvents:
        found = cls()
        found.add(events)
        return found

    def __enter__(self) -> DeliveryEvents:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def add(self, events: Iterable[dict[str, Any]]) -> None:
        """Keep ``events`` (a page of the events route's ``events``)."""
        rows = [
            (
                str(event["messageId"]),
                str(event.get("timestamp") or ""),
                _event_label(event),
                str(event.get("diagnostic") or ""),
                str(event.get("recipient") or ""),
            )
            for event in events
            if event.get("messageId")
        ]
        with self._db:
            self._db.executemany(
                "INSERT INTO events (message_id, timestamp, label, diagnostic, recipient) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )
        self.count += len(rows)

    def clear(self) -> None:
        with self._db:
            self._db.execute("DELETE FROM events")
        self.count = 0

    def of(self, message_ids: Sequence[str]) -> dict[str, list[Event]]:
        """The events of each of ``message_ids`` that has any, oldest first."""
        found: dict[str, list[Event]] = defaultdict(list)
        if not self.count or not message_ids:
            return found
        if not self._indexed:  # once every event is in: one sort instead of one per insert
            self._db.execute("CREATE INDEX IF NOT EXISTS by_message ON events (message_id)")
            self._indexed = True
        for first in range(0, len(message_ids), _LOOKUP_CHUNK):
            chunk = message_ids[first : first + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            query = (
                "SELECT message_id, label, timestamp, diagnostic, recipient FROM events "  # noqa: S608 (marks only)
                f"WHERE message_id IN ({marks}) ORDER BY message_id, timestamp, seq"
            )
            for message_id, label, timestamp, diagnostic, recipient in self._db.execute(
                query, chunk
            ):
                found[message_id].append(Event(label, timestamp, diagnostic, recipient))
        return found


# --- rows from the recipients route -------------------------------------------------------------
def recipient_row(recipient: dict[str, Any], events: Sequence[Event] = ()) -> Row:
    """A row of the report from one recipient of the recipients route."""
    status = str(recipient.get("status") or "")
    row: Row = {
        "email": str(recipient.get("email") or ""),
        "result": status if status in RESULTS else "unknown",
        "message_id": str(recipient.get("messageId") or ""),
        "code": str(recipient.get("code") or ""),
        "message": str(recipient.get("message") or ""),
    }
    return _with_events(row, events)


def write_paged_report(
    path: Path,
    pages: Iterable[list[dict[str, Any]]],
    events: DeliveryEvents | None = None,
    *,
    on_page: Callable[[Written], None] | None = None,
) -> Written:
    """Write the report of ``pages`` of the recipients route to ``path``, each page's rows as
    the page arrives (atomically: see the module docstring; an error from ``pages`` leaves no
    file). ``on_page`` is told after each page."""
    written = Written()

    def rows() -> Iterator[Row]:
        for page in pages:
            ids = [str(r["messageId"]) for r in page if r.get("messageId")]
            by_message = events.of(ids) if events is not None else {}
            for recipient in page:
                message_id = str(recipient.get("messageId") or "")
                row = recipient_row(recipient, by_message.get(message_id, ()))
                written.rows += 1
                written.results[row["result"]] += 1
                if row["code"] and row["result"] == "failed":
                    written.codes[row["code"]] += 1
                yield row
            if on_page is not None:
                on_page(written)

    write_rows(path, rows())
    return written


# --- rows from an older service's status --------------------------------------------------------
def build_report(
    status: dict[str, Any],
    recipients: list[str] | None,
    events: list[dict[str, Any]] | DeliveryEvents | None = None,
) -> Report:
    """The report of an older service's status (see the module docstring)."""
    if isinstance(events, list):
        with DeliveryEvents.of_list(events) as kept:
            return build_report(status, recipients, kept)
    report = Report()
    message_ids = [str(m) for m in status.get("messageIds") or []]
    failures = [f for f in status.get("failures") or [] if isinstance(f, dict)]
    by_message = events.of(message_ids) if events is not None else {}
    failed_keys = {str(f.get("recipient", "")).casefold() for f in failures}

    def sent_row(address: str, message_id: str) -> Row:
        row = {"email": address, "result": "sent", "message_id": message_id}
        return _with_events(row, by_message.get(message_id, []))

    if recipients is not None:
        remaining = [r for r in recipients if r.casefold() not in failed_keys]
        total = int((status.get("progress") or {}).get("total") or 0)
        if not message_ids and not failures:
            error = str(status.get("error") or "the send reported no outcome for this recipient")
            report.rows = [{"email": r, "result": "unknown", "message": error} for r in recipients]
            return _complete(report)
        if len(remaining) == len(message_ids) and (total in (0, len(recipients))):
            sent = {
                r.casefold(): sent_row(r, m) for r, m in zip(remaining, message_ids, strict=True)
            }
            failed = {str(f.get("recipient", "")).casefold(): _failure_row(f) for f in failures}
            report.rows = [sent.get(r.casefold()) or failed[r.casefold()] for r in recipients]
            return _complete(report)
        report.warnings.append(
            f"the list has {len(recipients):,} distinct recipients but the send has "
            f"{total:,} ({len(message_ids):,} sent, {len(failures):,} failed): it is not the "
            "list that was sent, so Message-IDs are not matched to addresses"
        )
    report.rows = [_failure_row(f) for f in failures]
    for message_id in message_ids:
        named = [e for e in by_message.get(message_id, []) if e.recipient]
        address = named[-1].recipient if named else ""
        report.rows.append(sent_row(address, message_id))
    if recipients is None and message_ids:
        report.warnings.append(
            "no recipient list given (--to-file): sent rows carry an address only where a "
            "delivery event names it"
        )
    return _complete(report)


def check_report_path(path: Path) -> str | None:
    """Why the report could not be written at ``path``, or None if it can (a file made and
    removed in its folder, as :func:`write_report` will)."""
    if path.is_dir():
        return f"{path} is a folder"
    folder = path.resolve().parent
    if not folder.is_dir():
        return f"there is no folder {folder}"
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    except OSError as e:
        return f"cannot write in {folder} ({e.strerror or e})"
    os.close(descriptor)
    Path(temporary).unlink(missing_ok=True)
    return None


def write_report(path: Path, report: Report) -> None:
    """Write a built report (:func:`build_report`): :func:`write_rows`."""
    write_rows(path, report.rows)


def write_rows(path: Path, rows: Iterable[Row]) -> int:
    """Write the CSV of ``rows`` (read as they are written) atomically: a temporary file in the
    same folder, renamed into place after the last row, removed if anything fails first. The
    file gets mode 0o666 less the umask (not the temporary file's 0o600). The rows written."""
    path = path.resolve()
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    count = 0
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
            writer = csv.DictWriter(handle, fieldnames=COLUMNS, restval="")
            writer.writeheader()
            for row in rows:
                writer.writerow(row)
                count += 1
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return count


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it: put it back at once
    os.umask(mask)
    return mask


def _failure_row(failure: dict[str, Any]) -> Row:
    """A row of v1's inline ``failures``, where canceled recipients are too (code CANCELED)."""
    code = str(failure.get("code", ""))
    return {
        "email": str(failure.get("recipient", "")),
        "result": "canceled" if code == CANCELED_CODE else "failed",
        "code": code,
        "message": str(failure.get("message", "")),
    }


def _complete(report: Report) -> Report:
    report.rows = [{column: row.get(column, "") for column in COLUMNS} for row in report.rows]
    return report


def _event_label(event: dict[str, Any]) -> str:
    kind = str(event.get("type") or event.get("eventType") or "event")
    sub = event.get("subType") or event.get("subtype")
    return f"{kind}/{sub}" if sub else kind


def _with_events(row: Row, events: Sequence[Event]) -> Row:
    if events:
        latest = events[-1]
        row["delivery"] = latest.label
        row["delivery_time"] = latest.timestamp
        row["delivery_detail"] = latest.diagnostic
        row["events"] = "; ".join(f"{e.label}@{e.timestamp}" for e in events)
    return row
