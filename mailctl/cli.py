"""The commands: ``send``, ``user-send``, ``status``, ``watch``, ``pause``, ``resume``,
``cancel``.

Output: the progress display, notes and errors go to stderr; the outcome (the summary, which
starts with the send's id; the id alone for ``send --no-wait``; ``status --json``) to stdout, so
``mailctl ... > result.txt`` keeps what matters.
Exit codes: :mod:`mailctl.exitcodes`.

``pause``, ``resume`` and ``cancel`` print one line — what happened and the send's state —
and exit 0, also when the send already was as asked; the service's 404 or 409 is its message
and exit 5. ``cancel`` asks first on a terminal (showing where the send is) unless ``--yes``;
with stdin not a terminal it requires ``--yes``, so a script says what it means.

Memory: ``send`` holds the list while it is checked and sent (the request is built from it), and
lets it go once the service has accepted it: watching and the report (:mod:`mailctl.report`,
written a page of the recipients route at a time) hold nothing that grows with the send.
``watch`` and ``status`` read ``--to-file`` only where an older service's report needs it.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shlex
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console

from mailctl import __version__
from mailctl.client import (
    KEY_BUSY_PATIENCE,
    Client,
    Controlled,
    KeyBusy,
    ServiceError,
    Unreachable,
    idempotency_key,
)
from mailctl.config import DEFAULT_URL, KEY_ENV, URL_ENV, BadURL, Config, resolve
from mailctl.exitcodes import ExitCode
from mailctl.recipients import BadRows, RecipientList, read_recipients
from mailctl.report import (
    CANCELED_CODE,
    DeliveryEvents,
    Written,
    build_report,
    check_report_path,
    write_paged_report,
    write_report,
)
from mailctl.watching import (
    BarDisplay,
    Counts,
    Display,
    LineDisplay,
    NoDisplay,
    Rate,
    format_duration,
    shown_state,
    watch,
)

PASSWORD_ENV = "MAILCTL_SMTP_PASSWORD"  # noqa: S105 (the variable's name)
PROVIDERS = ("GMAIL", "NAVER", "KAKAO")
#: v1's cap on user-send recipients (the service refuses more with 400).
USER_SEND_MAX_RECIPIENTS = 100
#: Bad rows printed before "... and N more".
SHOWN_PROBLEMS = 20
FINISHED_OK = "Completed"
#: What a pause, resume or cancel did (``changed``), and what an unchanged answer means.
DONE = {"pause": "paused", "resume": "resumed", "cancel": "canceled"}
ALREADY = {"pause": "already paused", "resume": "was not paused", "cancel": "already canceled"}
#: A report of this many rows or more says how far it got, every tenth of the way (on stderr;
#: not with ``--progress none``).
REPORT_PROGRESS_FROM = 10_000

#: Reads the list sent, when a report needs it (an older service's): None without --to-file.
ListSource = Callable[[], list[str]] | None


class UsageError(Exception):
    """A problem with the command line or its files: exit 2, nothing sent."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    err = sys.stderr
    try:
        code: int = args.run(args, err)
    except BadRows as e:
        _print_bad_rows(e, err)
        return ExitCode.USAGE
    except UsageError as e:
        print(f"mailctl: {e}", file=err)
        return ExitCode.USAGE
    except (ServiceError, Unreachable) as e:
        print(_error_message(e), file=err)
        return _error_code(e)
    except KeyboardInterrupt:
        print("\nmailctl: interrupted", file=err)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # the reader of stdout went away (| head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    return code


# --- commands -----------------------------------------------------------------------------------
def _send(args: argparse.Namespace, err: TextIO) -> int:
    config = _config(args)
    with _client(config, args) as client:
        started = _start(client, args, err)
        if isinstance(started, int):
            return started
        # the list is let go here (_start's locals): watching a long send holds none of it
        send_id = started
        resume = _resume(args, send_id, config)
        if args.no_wait:
            print(send_id)  # for a script: ID=$(python -m mailctl send ... --no-wait)
            print(f"follow it with: {resume}", file=err)
            return ExitCode.OK
        return _follow(client, args, send_id, _list_source(args), resume, err, started=True)


def _start(client: Client, args: argparse.Namespace, err: TextIO) -> str | int:
    """Read and check the list, then send it: the send's id, or an exit code (a dry run, Ctrl-C
    before the service answered)."""
    route = "user-send" if args.command == "user-send" else "aws-send"
    recipients = _read_list(args)
    subject, body = args.subject, _body(args)
    _check_report(args, " (nothing was sent)")
    provider = getattr(args, "provider", None)
    if route == "user-send" and len(recipients.addresses) > USER_SEND_MAX_RECIPIENTS:
        raise UsageError(
            f"user-send takes at most {USER_SEND_MAX_RECIPIENTS} recipients; "
            f"{args.to_file} has {len(recipients.addresses):,} (use send, through SES)"
        )
    extra = _extra_fields(args)
    key = args.idempotency_key or idempotency_key(
        route, args.sender, recipients.addresses, subject, body, provider, extra=extra
    )
    _describe_list(args.to_file, recipients, err)
    if args.dry_run:
        print(f"dry run: {len(recipients.addresses):,} recipients; Idempotency-Key {key}")
        return ExitCode.OK
    payload: dict[str, Any] = {
        "senderEmail": args.sender,
        "recipientEmails": recipients.addresses,
        "subject": subject,
        "body": body,
        **extra,
    }
    if route == "user-send":
        payload = {"provider": provider, **payload, "password": _password(args.sender)}
    try:
        accepted = client.send(route, payload, key)
    except KeyboardInterrupt:
        print(
            "\nmailctl: interrupted before the service answered: the send may have started. "
            "Run the same command again: its Idempotency-Key makes it the same send, "
            "not a second one.",
            file=err,
        )
        return ExitCode.INTERRUPTED
    except Unreachable as e:
        if e.maybe_sent:
            raise Unreachable(
                f"{e}. The send may have started: run the same command again — its "
                "Idempotency-Key makes it the same send, not a second one.",
                maybe_sent=True,
            ) from e
        raise
    send_id = str(accepted["id"])
    total = int(accepted.get("total") or 0)
    print(f"accepted: send {send_id}, {total:,} recipients", file=err)
    return send_id


def _watch(args: argparse.Namespace, err: TextIO) -> int:
    config = _config(args)
    recipients = _optional_list(args)
    _check_report(args)
    resume = _resume(args, args.id, config)
    with _client(config, args) as client:
        return _follow(client, args, args.id, recipients, resume, err, started=False)


def _status(args: argparse.Namespace, err: TextIO) -> int:
    config = _config(args)
    recipients = _optional_list(args)
    _check_report(args)
    with _client(config, args) as client:
        status = client.status(args.id)
        if args.json:
            print(json.dumps(status.body, ensure_ascii=False, indent=2))
        if not status.done:
            if not args.json:
                print(_running_line(status.body))
            if args.report:
                print("mailctl: the send is still running: no report yet", file=err)
            return ExitCode.RUNNING
        resume = _resume(args, args.id, config)
        return _finish(client, args, status.body, recipients, resume, err, quiet=args.json)


def _control(args: argparse.Namespace, err: TextIO) -> int:
    """``pause``, ``resume`` or ``cancel`` ID: one line on stdout, what to do next on stderr."""
    config = _config(args)
    action: str = args.command
    if action == "cancel" and not args.yes and not sys.stdin.isatty():
        raise UsageError(
            "cancel asks before it cancels; with stdin not a terminal, say --yes "
            "(nothing was canceled)"
        )
    with _client(config, args) as client:
        if action == "cancel" and not args.yes and not _cancel_confirmed(client, args.id, err):
            print("mailctl: not canceled; the send goes on", file=err)
            return ExitCode.USAGE
        try:
            done = client.control(args.id, action)
        except KeyboardInterrupt:
            print(
                f"\nmailctl: interrupted before the service answered: the send may be "
                f"{DONE[action]} or not. See with: {_command(args, 'status', args.id)}\n"
                "(running the same command again is safe: repeating it changes nothing)",
                file=err,
            )
            return ExitCode.INTERRUPTED
        except (ServiceError, Unreachable) as e:
            if isinstance(e, Unreachable) or e.status >= 500 or e.status == 429:
                print(_error_message(e), file=err)
                print(
                    f"The {action} may or may not have taken effect. Running the same command "
                    "again is safe (repeating it changes nothing); see where the send is with: "
                    f"{_command(args, 'status', args.id)}",
                    file=err,
                )
                return _error_code(e)
            raise
    print(_control_line(action, done))
    follow = "Resume it with" if done.state == "paused" else "Follow it with"
    command = _command(args, "resume" if done.state == "paused" else "watch", args.id)
    print(f"{follow}: {command}{_key_note(config)}", file=err)
    return ExitCode.OK


def _control_line(action: str, done: Controlled) -> str:
    """``send ID paused (state: paused)``, ``send ID already paused (state: paused)`` …: what
    the call did and where the send is. After a try that may have reached the service
    (``repeated``), an unchanged answer is not called "already": that try may have done it."""
    what = DONE[action] if done.changed or done.repeated else ALREADY[action]
    return f"send {done.id} {what} (state: {done.state})"


def _cancel_confirmed(client: Client, send_id: str, err: TextIO) -> bool:
    """Show where the send is and ask; True for y or yes. A send that has ended or was
    canceled already is not asked about: the service says what canceling it does (nothing)."""
    status = client.status(send_id)
    if status.done or status.body.get("state") == "canceled":
        return True
    print(_running_line(status.body), file=err)
    print(
        f"Cancel the send {send_id}? Recipients not sent yet will never be sent. [y/N] ",
        end="",
        file=err,
        flush=True,
    )
    answer = sys.stdin.readline()  # "" at the end of input: no
    return answer.strip().lower() in ("y", "yes")


def _follow(
    client: Client,
    args: argparse.Namespace,
    send_id: str,
    recipients: ListSource,
    resume: str,
    err: TextIO,
    *,
    started: bool,
) -> int:
    """Watch the send, then finish (report, summary). However the watching stops before the send
    is done — Ctrl-C, a refusal, the service gone for too long — the id and the command that
    resumes are printed, once the send is known to exist (``started``, or a status read)."""
    display = _Seen(_display(args, send_id, err))
    try:
        final = watch(
            client,
            send_id,
            display,
            poll_interval=args.poll_interval,
            resume_hint=f"Resume it with: {_command(args, 'resume', send_id)}",
        )
    except KeyboardInterrupt:
        print(f"\n{_stopped(send_id, resume)}", file=err)
        return ExitCode.INTERRUPTED
    except (ServiceError, Unreachable) as e:
        if not (started or display.seen):
            raise  # no such send, or no answer at all: the error says it
        print(_error_message(e), file=err)
        print(_stopped(send_id, resume), file=err)
        return _error_code(e)
    return _finish(client, args, final, recipients, resume, err)


def _stopped(send_id: str, resume: str) -> str:
    return (
        f"Stopped watching. The send {send_id} goes on in the service.\n"
        f"Resume watching with: {resume}"
    )


def _finish(
    client: Client,
    args: argparse.Namespace,
    status: dict[str, Any],
    recipients: ListSource,
    resume: str,
    err: TextIO,
    *,
    quiet: bool = False,
) -> int:
    written: Written | None = None
    if args.report:
        try:
            written = _report(client, args, status, recipients, resume, err)
        except KeyboardInterrupt:
            print(
                f"\nStopped before the report was written. The send {status['id']} has "
                f"finished ({_counts_text(status)}).\nWrite the report with: {resume}",
                file=err,
            )
            return ExitCode.INTERRUPTED
    if not quiet:
        print(_summary(status, written.codes if written is not None else None))
    return _outcome(status)


def _report(
    client: Client,
    args: argparse.Namespace,
    status: dict[str, Any],
    recipients: ListSource,
    resume: str,
    err: TextIO,
) -> Written | None:
    """Write ``--report`` (:mod:`mailctl.report`): from the recipients route a page at a time
    where the service has it (its status carries ``recipientsUrl``), else from the status.
    What was written (None if nothing, or not counted), having said so on ``err``."""
    send_id = str(status["id"])
    path = Path(args.report)
    total = Counts.of(status).total
    reached = 0

    def progress(written: Written) -> None:
        nonlocal reached
        if getattr(args, "progress", "auto") == "none" or total < REPORT_PROGRESS_FROM:
            return
        tenths = written.rows * 10 // max(total, 1)
        if tenths > reached and written.rows < total:
            reached = tenths
            print(f"report: {written.rows:,} of {total:,} rows", file=err)

    with DeliveryEvents() as events:
        try:
            for page in client.event_pages(send_id):
                events.add(page)
        except (ServiceError, Unreachable) as e:  # the send is done: report what is known
            print(f"mailctl: report: delivery events not read ({e})", file=err)
            events.clear()
        try:
            if status.get("recipientsUrl"):
                pages = client.recipient_pages(send_id)
                written = write_paged_report(path, pages, events, on_page=progress)
                rows, warnings = written.rows, _count_warnings(written.rows, total)
            else:
                report = build_report(status, _read_for_report(recipients, err), events)
                write_report(path, report)
                written, rows, warnings = None, len(report.rows), report.warnings
        except OSError as e:
            print(
                f"mailctl: report: {args.report} not written ({e.strerror or e}); "
                f"write it later with: {resume}",
                file=err,
            )
            return None
        except (ServiceError, Unreachable) as e:
            print(
                f"mailctl: report: {args.report} not written: the recipients could not be read "
                f"({_error_message(e).removeprefix('mailctl: ')}); "
                f"write it later with: {resume}",
                file=err,
            )
            return None
    for warning in warnings:
        print(f"mailctl: report: {warning}", file=err)
    print(f"report: {args.report} ({rows:,} rows)", file=err)
    return written


def _count_warnings(rows: int, total: int) -> list[str]:
    if total and rows != total:
        return [f"the service listed {rows:,} recipients for a send of {total:,}"]
    return []


def _read_for_report(recipients: ListSource, err: TextIO) -> list[str] | None:
    """The list sent, for an older service's report; None (said on ``err``) if unreadable."""
    if recipients is None:
        return None
    try:
        return recipients()
    except (UsageError, BadRows) as e:
        print(f"mailctl: report: {e}; the rows are written without it", file=err)
    return None


# --- pieces -------------------------------------------------------------------------------------
def _outcome(status: dict[str, Any]) -> ExitCode:
    progress = status.get("progress") or {}
    if status.get("state") == "canceled" and status.get("runtimeStatus") == FINISHED_OK:
        # Someone stopped the send on purpose, and the watching went as it should: not 4 (the
        # send failed: look at the service, send again) nor 3 (some failed: send those again,
        # which would mail the very people the cancel spared), and not 0 (everyone was sent).
        # A code of its own, so a script can tell "stopped by a person" from all three.
        return ExitCode.CANCELED
    if status.get("runtimeStatus") != FINISHED_OK or not int(progress.get("sent") or 0):
        return ExitCode.FAILED
    return ExitCode.PARTIAL if int(progress.get("failed") or 0) else ExitCode.OK


def _counts_text(status: dict[str, Any]) -> str:
    counts = Counts.of(status)
    canceled = f", {counts.canceled:,} canceled" if counts.canceled else ""
    return f"{counts.sent:,} sent, {counts.failed:,} failed{canceled} of {counts.total:,}"


def _summary(status: dict[str, Any], counted: Counter[str] | None = None) -> str:
    """The outcome. Failure codes come from the status (inline up to the service's limit) or,
    for a larger send, from the report's rows (``counted``) when one was written."""
    lines = [f"send {status.get('id')} {shown_state(status)}: {_counts_text(status)}"]
    if status.get("error"):
        lines.append(f"  {status['error']}")
    # canceled recipients are in v1's inline failures (code CANCELED) but failed nobody: the
    # counts say how many
    codes = Counter(
        code
        for code in (str(f.get("code")) for f in status.get("failures") or [])
        if code != CANCELED_CODE
    )
    if not codes and counted:
        codes = counted
    if codes:
        lines.append("  failures: " + ", ".join(f"{c} x{n:,}" for c, n in codes.most_common()))
    delivery = status.get("delivery")
    if isinstance(delivery, dict) and delivery:
        lines.append("  delivery: " + ", ".join(f"{k} {v:,}" for k, v in delivery.items()))
    return "\n".join(lines)


def _running_line(status: dict[str, Any]) -> str:
    """Where a send that has not finished is: ``send ID Running: 1 sent, 0 failed, 1 pending
    of 2``; ``paused``, ``scheduled`` or ``canceled`` (counts not final yet) in place of the
    runtime status when the service says so, and the canceled count once there is one."""
    counts = Counts.of(status)
    parts = [f"{counts.sent:,} sent", f"{counts.failed:,} failed", f"{counts.pending:,} pending"]
    if counts.canceled:
        parts.append(f"{counts.canceled:,} canceled")
    return f"send {status.get('id')} {shown_state(status)}: {', '.join(parts)} of {counts.total:,}"


def _display(args: argparse.Namespace, send_id: str, err: TextIO) -> Display:
    console = Console(file=err, force_terminal=True if args.progress == "bar" else None)
    mode = args.progress
    if mode == "auto":
        mode = "bar" if console.is_terminal else "lines"
    if mode == "bar":
        return BarDisplay(console, send_id)
    if mode == "lines":
        return LineDisplay(err, send_id)
    return NoDisplay()


class _Seen:
    """A display that remembers whether a status was read (the send exists)."""

    def __init__(self, display: Display) -> None:
        self._display = display
        self.seen = False

    def __enter__(self) -> _Seen:
        self._display.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._display.__exit__(*exc)

    def update(self, counts: Counts, rate: Rate, runtime: str) -> None:
        self.seen = True
        self._display.update(counts, rate, runtime)

    def note(self, text: str) -> None:
        self._display.note(text)


def _resume(args: argparse.Namespace, send_id: str, config: Config) -> str:
    """The command that resumes watching (and writes the report), and, when the key came from
    ``--key`` (never printed), how to give it again."""
    return _resume_command(args, send_id) + _key_note(config)


def _key_note(config: Config) -> str:
    """How to give the key again, when it came from ``--key`` (never printed)."""
    if config.key_source == "--key":
        return f"\n  (with the function key: add --key KEY, or set {KEY_ENV})"
    return ""


def _command(args: argparse.Namespace, command: str, send_id: str) -> str:
    """``python -m mailctl COMMAND ID`` with this command's ``--url``."""
    words = ["python", "-m", "mailctl", command, send_id]
    if args.url:
        words += ["--url", args.url]
    return shlex.join(words)


def _resume_command(args: argparse.Namespace, send_id: str) -> str:
    words = ["python", "-m", "mailctl", "watch", send_id]
    if args.url:
        words += ["--url", args.url]
    if args.to_file:
        words += ["--to-file", args.to_file]
        if args.column:
            words += ["--column", args.column]
        if args.encoding != "utf-8":
            words += ["--encoding", args.encoding]
    if args.report:
        words += ["--report", args.report]
    return shlex.join(words)


def _config(args: argparse.Namespace) -> Config:
    try:
        return resolve(args.url, args.key)
    except BadURL as e:
        raise UsageError(str(e)) from e


def _client(config: Config, args: argparse.Namespace) -> Client:
    return Client(config.api_url, config.key, timeout=args.timeout)


def _read_list(args: argparse.Namespace) -> RecipientList:
    try:
        return read_recipients(Path(args.to_file), column=args.column, encoding=args.encoding)
    except OSError as e:
        raise UsageError(f"cannot read the list {args.to_file}: {e.strerror or e}") from e


def _list_source(args: argparse.Namespace) -> ListSource:
    """Reads ``--to-file`` again when (if ever) a report needs it."""
    if not args.to_file:
        return None
    return lambda: _read_list(args).addresses


def _optional_list(args: argparse.Namespace) -> ListSource:
    """``--to-file`` of ``watch`` and ``status``: checked readable now, read only if a report
    needs it (an older service's), so watching holds none of a long list."""
    if not args.to_file:
        return None
    try:
        with Path(args.to_file).open("rb"):
            pass
    except OSError as e:
        raise UsageError(f"cannot read the list {args.to_file}: {e.strerror or e}") from e
    return _list_source(args)


def _body(args: argparse.Namespace) -> str:
    if args.body is not None:
        return str(args.body)
    try:
        return Path(args.body_file).read_text(encoding="utf-8-sig")  # a BOM is not the body's
    except OSError as e:
        raise UsageError(f"cannot read the body {args.body_file}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise UsageError(
            f"cannot read the body {args.body_file}: not UTF-8 text (byte {e.start:,}); "
            "save it as UTF-8"
        ) from e


def _extra_fields(args: argparse.Namespace) -> dict[str, object]:
    """The request's optional fields the command line gave: html (from a file), category,
    scheduledAt and metadata. Checked here only as far as the command line can be wrong; the
    service validates the rest (400 with its message)."""
    extra: dict[str, object] = {}
    if getattr(args, "html_file", None):
        try:
            extra["html"] = Path(args.html_file).read_text(encoding="utf-8-sig")
        except OSError as e:
            raise UsageError(f"cannot read the HTML {args.html_file}: {e.strerror or e}") from e
        except UnicodeDecodeError as e:
            raise UsageError(f"cannot read the HTML {args.html_file}: not UTF-8 text") from e
    if getattr(args, "category", None):
        extra["category"] = args.category
    if getattr(args, "at", None):
        extra["scheduledAt"] = args.at
    pairs = getattr(args, "metadata", None) or []
    if pairs:
        metadata: dict[str, str] = {}
        for pair in pairs:
            name, sep, value = pair.partition("=")
            if not sep or not name:
                raise UsageError(f"--metadata takes KEY=VALUE, not {pair!r}")
            metadata[name] = value
        extra["metadata"] = metadata
    return extra


def _check_report(args: argparse.Namespace, consequence: str = "") -> None:
    """Refuse a ``--report`` path that could not take the report, before anything happens."""
    if args.report:
        reason = check_report_path(Path(args.report))
        if reason:
            raise UsageError(f"cannot write the report {args.report}: {reason}{consequence}")


def _password(sender: str) -> str:
    password = os.environ.get(PASSWORD_ENV)
    if password:
        return password
    if not sys.stdin.isatty():
        raise UsageError(f"no SMTP password: set {PASSWORD_ENV}, or run in a terminal to be asked")
    password = getpass.getpass(f"SMTP password (app password) for {sender}: ")
    if not password:
        raise UsageError("no SMTP password given")
    return password


def _describe_list(source: str, recipients: RecipientList, err: TextIO) -> None:
    column = f"column {recipients.column!r}" + (", header row skipped" if recipients.header else "")
    duplicates = (
        f", {recipients.duplicates:,} duplicates sent once" if recipients.duplicates else ""
    )
    print(
        f"{source}: {len(recipients.addresses):,} recipients ({column}{duplicates})",
        file=err,
    )


def _print_bad_rows(error: BadRows, err: TextIO) -> None:
    count = len(error.problems)
    print(f"mailctl: {error.source}: {count:,} bad row(s); nothing was sent.", file=err)
    for problem in error.problems[:SHOWN_PROBLEMS]:
        print(f"  {problem}", file=err)
    if count > SHOWN_PROBLEMS:
        print(f"  ... and {count - SHOWN_PROBLEMS:,} more", file=err)


def _error_message(error: ServiceError | Unreachable) -> str:
    if isinstance(error, KeyBusy):
        return (
            f"mailctl: the service still answered 409 after {KEY_BUSY_PATIENCE:.0f} s: "
            f"{error.message}\nAnother request with the same Idempotency-Key (an earlier run of "
            "this command?) is still being admitted; this one started nothing. Try again later: "
            "running the same command again is safe — its Idempotency-Key makes it the same "
            "send, not a second one."
        )
    if isinstance(error, ServiceError):
        return f"mailctl: the service answered {error.status}: {error.message}{_hint(error)}"
    return f"mailctl: {error}"


def _error_code(error: ServiceError | Unreachable) -> ExitCode:
    """6 (try again later) for no answer, a failing service, 429 and a busy key; else 5."""
    if isinstance(error, Unreachable | KeyBusy) or error.status == 429 or error.status >= 500:
        return ExitCode.UNAVAILABLE
    return ExitCode.REFUSED


def _hint(error: ServiceError) -> str:
    if error.status == 422:
        return (
            " (mailctl derives the Idempotency-Key from the sender, the recipients, the subject, "
            "the body and the provider; --idempotency-key sets another on purpose)"
        )
    if error.status == 429 and error.retry_after:
        return f" (retry after {format_duration(error.retry_after)})"
    if error.status == 401:
        return f" (the key comes from --key, {KEY_ENV}, or .devhost/function-key for a local host)"
    return ""


# --- the command line ---------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=f"the app's base URL (${URL_ENV}; default {DEFAULT_URL})")
    common.add_argument("--key", help=f"function key (${KEY_ENV}; default .devhost/function-key)")
    common.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request")

    following = argparse.ArgumentParser(add_help=False)
    following.add_argument("--report", metavar="CSV", help="write one row per recipient")
    following.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        help="live bar on a terminal, a line per change otherwise (auto)",
    )
    following.add_argument("--poll-interval", type=float, help=argparse.SUPPRESS)

    listing = argparse.ArgumentParser(add_help=False)
    listing.add_argument("--column", help="the address column: a header name or a 1-based number")
    listing.add_argument("--encoding", default="utf-8", help="the list's encoding (utf-8)")

    parser = argparse.ArgumentParser(
        prog="python -m mailctl",
        description="Send mail from a list through the Send-Mail service and watch it go.",
        epilog="Exit codes: 0 all sent (pause/resume/cancel: done, or already so), 2 bad input "
        "(nothing sent), 3 some failed, 4 none sent or the send failed, 5 refused by the service "
        "(pause/resume/cancel: 404 unknown id, 409 not in this state), 6 try again later "
        "(service unreachable, failing or busy: 429, 409), 7 still running or paused (status), "
        "8 the send was canceled, 130 stopped watching (the send goes on).",
    )
    parser.add_argument("--version", action="version", version=f"mailctl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, help_text in (
        ("send", "company mail through Amazon SES (aws-send)"),
        ("user-send", "mail through the sender's own SMTP account (user-send, at most 100)"),
    ):
        send = commands.add_parser(
            name, help=help_text, parents=[common, following, listing], description=help_text
        )
        send.add_argument("--from", dest="sender", required=True, metavar="ADDRESS")
        send.add_argument(
            "--to-file", required=True, metavar="FILE", help="CSV (column 'email') or a list"
        )
        send.add_argument("--subject", required=True)
        body = send.add_mutually_exclusive_group(required=True)
        body.add_argument("--body-file", metavar="FILE", help="the body, UTF-8 plain text")
        body.add_argument("--body", help="the body as text")
        wait = send.add_mutually_exclusive_group()
        wait.add_argument(
            "--wait", action="store_false", dest="no_wait", help="watch until done (default)"
        )
        wait.add_argument("--no-wait", action="store_true", help="return once accepted")
        send.set_defaults(no_wait=False)
        send.add_argument(
            "--html-file", metavar="FILE", help="an HTML part too (UTF-8); the body is the text"
        )
        send.add_argument(
            "--at",
            metavar="TIME",
            help="send at this time (RFC 3339 with an offset, e.g. 2026-12-24T09:00:00+09:00)",
        )
        send.add_argument(
            "--metadata",
            action="append",
            metavar="KEY=VALUE",
            help="your own key for the send, echoed in its status and webhooks (repeatable)",
        )
        if name == "send":
            send.add_argument(
                "--category",
                choices=("transactional", "marketing"),
                help="marketing: one-click unsubscribe, the (광고) prefix, unsubscribed skipped",
            )
        send.add_argument("--dry-run", action="store_true", help="check the list; send nothing")
        send.add_argument("--idempotency-key", help="instead of the one derived from the request")
        if name == "user-send":
            send.add_argument("--provider", required=True, choices=PROVIDERS, type=str.upper)
            send.epilog = f"The password comes from ${PASSWORD_ENV} or a prompt, never a flag."
        send.set_defaults(run=_send)

    watch_cmd = commands.add_parser(
        "watch", help="follow a send until it finishes", parents=[common, following, listing]
    )
    watch_cmd.add_argument("id")
    watch_cmd.add_argument("--to-file", metavar="FILE", help="the list sent, to name report rows")
    watch_cmd.set_defaults(run=_watch)

    status = commands.add_parser("status", help="where a send is, once", parents=[common, listing])
    status.add_argument("id")
    status.add_argument("--json", action="store_true", help="print the status body")
    status.add_argument("--report", metavar="CSV", help="write one row per recipient (finished)")
    status.add_argument("--to-file", metavar="FILE", help="the list sent, to name report rows")
    status.set_defaults(run=_status)

    for action, help_text, description in (
        (
            "pause",
            "stop starting new messages until resumed",
            "Pause a send: no new message starts within 2 seconds of the answer; the send waits "
            "(its deadline does not run) until it is resumed or canceled. Pausing a paused send "
            "is not an error (exit 0: 'already paused').",
        ),
        (
            "resume",
            "go on sending a paused send",
            "Resume a paused send: it goes on from where it stopped, nobody twice. A send the "
            "account guard paused is resumed only by an operator's guard reset (409, exit 5).",
        ),
        (
            "cancel",
            "stop a send for good",
            "Cancel a send (scheduled, running or paused): no new message starts within 2 "
            "seconds of the answer and every recipient not sent yet is never sent (canceled). "
            "On a terminal, mailctl shows where the send is and asks first; --yes does not ask. "
            "When stdin is not a terminal (a script, a pipe, cron) --yes is required: a script "
            "says what it means (without it: exit 2, nothing canceled; so is answering no).",
        ),
    ):
        control = commands.add_parser(
            action, help=help_text, description=description, parents=[common]
        )
        control.add_argument("id")
        if action == "cancel":
            control.add_argument("--yes", "-y", action="store_true", help="do not ask")
        control.set_defaults(run=_control)
    return parser
