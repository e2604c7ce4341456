"""The per-recipient report of a finished send: one CSV row per recipient.

Contract:

- Columns (:data:`COLUMNS`): ``email``, ``result`` (``sent``, ``failed`` or ``unknown``),
  ``message_id`` (sent), ``code`` and ``message`` (failed, the service's failure code and text),
  ``delivery`` and ``delivery_time`` (the latest delivery event — ``Delivery``, ``Bounce/
  Permanent``, ``Complaint`` … — where the service has events; ``delivery_detail`` is its
  diagnostic text) and ``events`` (all of them, oldest first, ``type[/subType]@timestamp``
  joined by ``; ``).
- **Which address got which Message-ID.** The service returns ``messageIds`` in recipient order,
  one per recipient sent, and every other recipient in ``failures``. So with the list that was
  sent (distinct addresses in order, as :mod:`mailctl.recipients` reads it), the recipients not
  in ``failures`` map one to one, in order, onto ``messageIds``. If the counts disagree (another
  list than the one sent) that mapping is not made: the rows then say what is certain, and
  :attr:`Report.warnings` says why.
- Without the list, the rows are the failures (by address), and the Message-IDs with the address
  a delivery event names, or none.
- A send that ended Failed / Terminated has neither messageIds nor failures: its recipients are
  ``unknown``, with the service's ``error`` as the message.
- **Where.** :func:`check_report_path` says, before anything is sent, why a path could not take
  the report (no such folder, not writable, a folder itself). :func:`write_report` writes it
  atomically, with the mode any new file gets (``0o666`` less the umask).
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


@dataclass(slots=True)
class Report:
    rows: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def build_report(
    status: dict[str, Any],
    recipients: list[str] | None,
    events: list[dict[str, Any]] | None = None,
) -> Report:
    report = Report()
    message_ids = [str(m) for m in status.get("messageIds") or []]
    failures = [f for f in status.get("failures") or [] if isinstance(f, dict)]
    by_message = _events_by_message_id(events or [])
    failed_keys = {str(f.get("recipient", "")).casefold() for f in failures}

    def sent_row(address: str, message_id: str) -> dict[str, str]:
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
        named = [e for e in by_message.get(message_id, []) if e.get("recipient")]
        address = str(named[-1]["recipient"]) if named else ""
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
    """Write the CSV atomically (a temporary file renamed into place), mode 0o666 less the umask
    (not the temporary file's 0o600)."""
    path = path.resolve()
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(report.rows)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it: put it back at once
    os.umask(mask)
    return mask


def _failure_row(failure: dict[str, Any]) -> dict[str, str]:
    return {
        "email": str(failure.get("recipient", "")),
        "result": "failed",
        "code": str(failure.get("code", "")),
        "message": str(failure.get("message", "")),
    }


def _complete(report: Report) -> Report:
    report.rows = [{column: row.get(column, "") for column in COLUMNS} for row in report.rows]
    return report


def _events_by_message_id(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in sorted(events, key=lambda e: str(e.get("timestamp") or "")):
        message_id = event.get("messageId")
        if message_id:
            grouped[str(message_id)].append(event)
    return grouped


def _event_label(event: dict[str, Any]) -> str:
    kind = str(event.get("type") or event.get("eventType") or "event")
    sub = event.get("subType") or event.get("subtype")
    return f"{kind}/{sub}" if sub else kind


def _with_events(row: dict[str, str], events: list[dict[str, Any]]) -> dict[str, str]:
    if events:
        latest = events[-1]
        row["delivery"] = _event_label(latest)
        row["delivery_time"] = str(latest.get("timestamp") or "")
        row["delivery_detail"] = str(latest.get("diagnostic") or "")
        row["events"] = "; ".join(f"{_event_label(e)}@{e.get('timestamp') or ''}" for e in events)
    return row
