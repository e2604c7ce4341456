"""mailctl against the real app under devhost: what an operator running a send by hand sees.

mailctl runs as its own process (``python -m mailctl``), on a pipe or on a real pseudo-terminal
when the live bar or Ctrl-C is the point; the service is the real ``function_app`` with devhost's
emulators, and the outbox is the ground truth for what was mailed.

The emulated SES reports ``MaxSendRate`` 0 (unknown): the app then sends unpaced in batches of
``SENDMAIL_SES_BATCH_SIZE``, so a send's progress moves every hundred recipients per lane and a
few thousand recipients take seconds. (With a known rate, batches are about a minute of
sending each and the counts move once a minute.)
"""

from __future__ import annotations

import csv
import fcntl
import os
import pty
import re
import select
import shlex
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.devhost.conftest import REPO_ROOT, DevhostProcess, real_app

pytestmark = pytest.mark.e2e

SENDER = "se@aifactory.page"
APP_ENV = {
    "DEVHOST_SES_MAX_SEND_RATE": "0",
    "DEVHOST_SES_MAX_24_HOUR_SEND": "1000000",
    "SENDMAIL_SES_BATCH_SIZE": "100",
}
#: Seconds between status reads in these tests (the service asks for 2).
POLL = "0.3"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    with real_app(tmp_path_factory.mktemp("mailctl-app") / "state", APP_ENV) as process:
        yield process


def mailctl_env(app: DevhostProcess, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILCTL_")}
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return {
        **env,
        "MAILCTL_URL": app.base_url,
        "MAILCTL_KEY": app.key,
        "PYTHONPATH": pythonpath,
        **extra,
    }


def mailctl(
    app: DevhostProcess, cwd: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m mailctl ARGS`` on pipes (not a terminal: progress comes as lines)."""
    return subprocess.run(
        [sys.executable, "-m", "mailctl", *args],
        cwd=cwd,
        env=mailctl_env(app, **env),
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def outbox(app: DevhostProcess) -> dict[str, list[dict[str, Any]]]:
    """Captured messages by recipient."""
    response = app.request("GET", "/_dev/outbox")
    assert response.status_code == 200
    by_recipient: dict[str, list[dict[str, Any]]] = {}
    for message in response.json()["messages"]:
        for recipient in message["to"]:
            by_recipient.setdefault(recipient, []).append(message)
    return by_recipient


def instances(app: DevhostProcess) -> int:
    response = app.request("GET", "/runtime/webhooks/durabletask/instances", params={"top": 1000})
    return len(response.json())


def write_list(path: Path, addresses: list[str]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["이름", "email", "team"])
        writer.writerows([f"사람 {i}", address, "ops"] for i, address in enumerate(addresses))
    return path


def read_report(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def wait_until_finished(app: DevhostProcess, send_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = app.request("GET", f"/api/v1/emails/{send_id}")
        if response.status_code == 200:
            return dict(response.json())
        time.sleep(0.3)
    raise TimeoutError(send_id)


# --- a real terminal ----------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]")
#: One frame of the live bar, as rendered (see mailctl.watching.BarDisplay).
BAR = re.compile(
    r"(?P<runtime>Pending|Running|Completed)\s.*?(?P<percent>\d+)%\s+(?P<sent>[\d,]+) sent · "
    r"(?P<failed>[\d,]+) failed · (?P<pending>[\d,]+) pending of (?P<total>[\d,]+)\s+"
    r"(?P<rate>[\d.,]+/s|—/s)\s+ETA (?P<eta>\d+:\d\d:\d\d|—)"
)


#: Run in the child's new session: make the pty its controlling terminal, then exec the command.
_TAKE_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


class Terminal:
    """A command on a pseudo-terminal (160x40 unless told), as it runs in an operator's shell."""

    def __init__(
        self, argv: list[str], *, cwd: Path, env: dict[str, str], columns: int = 160
    ) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _TAKE_TERMINAL, *argv],
            cwd=cwd,
            env={**env, "TERM": "xterm-256color"},
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        self.master = master
        self.raw = bytearray()

    @property
    def screen_text(self) -> str:
        """Everything written, escape sequences removed (every frame, in order)."""
        return _ANSI.sub("", self.raw.decode("utf-8", "replace")).replace("\r", "\n")

    def frames(self) -> list[dict[str, str]]:
        return [m.groupdict() for m in BAR.finditer(self.screen_text)]

    def read_until(self, done: Callable[[Terminal], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done(self):
            if time.monotonic() > deadline:
                raise TimeoutError(self.screen_text[-3000:])
            if not self._read(0.2):
                break

    def _read(self, wait: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], wait)
        if ready:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the other side closed
                return False
            if not chunk:
                return False
            self.raw.extend(chunk)
        return True

    def press_ctrl_c(self) -> None:
        os.write(self.master, b"\x03")  # the terminal turns it into SIGINT for the foreground

    def finish(self, timeout: float = 180) -> int:
        deadline = time.monotonic() + timeout
        while self._read(0.2):
            if time.monotonic() > deadline:
                self.proc.kill()
                raise TimeoutError(self.screen_text[-3000:])
        os.close(self.master)
        return self.proc.wait(timeout=30)


def mailctl_in_terminal(app: DevhostProcess, cwd: Path, *args: str, columns: int = 160) -> Terminal:
    return Terminal(
        [sys.executable, "-m", "mailctl", *args], cwd=cwd, env=mailctl_env(app), columns=columns
    )


def number(text: str) -> int:
    return int(text.replace(",", ""))


# --- delivery events ------------------------------------------------------------------------


def test_the_report_carries_the_delivery_events_the_service_has(
    app: DevhostProcess, tmp_path: Path
) -> None:
    simulator = ["success", "bounce", "complaint"]
    recipients = [f"{box}@simulator.amazonses.com" for box in simulator]
    write_list(tmp_path / "list.csv", recipients)
    sent = mailctl(
        app,
        tmp_path,
        *("send", "--from", SENDER, "--to-file", "list.csv", "--subject", "s", "--body", "b"),
        *("--poll-interval", POLL),
    )
    assert sent.returncode == 0, sent.stderr
    send_id = sent.stdout.split()[1]
    status = wait_until_finished(app, send_id)
    if "delivery" not in status:
        pytest.skip("this service reports no delivery events (no `delivery` in its status)")
    deadline = time.monotonic() + 60  # SES's events come after the send, through SNS
    while status["delivery"]["complained"] < 1 or status["delivery"]["bounced"] < 1:
        assert time.monotonic() < deadline, status["delivery"]
        time.sleep(0.3)
        status = wait_until_finished(app, send_id)

    later = mailctl(app, tmp_path, "status", send_id, "--to-file", "list.csv", "--report", "r.csv")

    assert later.returncode == 0, later.stderr
    assert "delivery: delivered 2, bounced 1, complained 1" in later.stdout
    rows = {r["email"]: r for r in read_report(tmp_path / "r.csv")}
    success, bounce, complaint = (rows[r] for r in recipients)
    assert success["delivery"] == "Delivery"
    assert (bounce["delivery"], bounce["delivery_detail"]) == (
        "Bounce/Permanent/General",
        "smtp; 550 5.1.1 user unknown",
    )
    assert complaint["delivery"] == "Complaint/abuse"
    assert re.fullmatch(r"Delivery@\S+; Complaint/abuse@\S+", complaint["events"])
    assert all(r["delivery_time"] for r in rows.values())


def test_bad_rows_are_refused_up_front_with_their_line_numbers(
    app: DevhostProcess, tmp_path: Path
) -> None:
    (tmp_path / "list.csv").write_text(
        "email,name\n"
        "good1@example.com,a\n"
        "good2@example,b\n"  # 3: no top-level domain
        "good3@example.com,c\n"
        ",d\n"  # 5: no address
        "Kim <kim@example.com>,e\n"  # 6: a display name
        "good4@example.com,f\n",
        encoding="utf-8",
    )
    sent_before, started_before = outbox(app), instances(app)

    result = mailctl(
        app,
        tmp_path,
        *("send", "--from", SENDER, "--to-file", "list.csv", "--subject", "s", "--body", "b"),
    )

    assert result.returncode == 2
    assert "mailctl: list.csv: 3 bad row(s); nothing was sent." in result.stderr
    problems = [line.strip() for line in result.stderr.splitlines() if line.startswith("  line")]
    assert [p.split(":")[0] for p in problems] == ["line 3", "line 5", "line 6"]
    assert "'good2@example' is not a valid email address" in problems[0]
    assert result.stdout == ""
    assert outbox(app) == sent_before
    assert instances(app) == started_before  # no send started at all


def test_a_list_or_report_that_cannot_be_used_is_refused_before_anything_starts(
    app: DevhostProcess, tmp_path: Path
) -> None:
    (tmp_path / "headerless.csv").write_text(
        "john.example.com\nb@example.com\nc@example.com\n", encoding="utf-8"
    )
    write_list(tmp_path / "list.csv", ["reported@example.com"])
    send = ("send", "--from", SENDER, "--subject", "s", "--body", "b")
    started_before = instances(app)

    headerless = mailctl(app, tmp_path, *send, "--to-file", "headerless.csv")
    missing = mailctl(app, tmp_path, *send, "--to-file", "missing.csv")
    no_folder = mailctl(app, tmp_path, *send, "--to-file", "list.csv", "--report", "no/r.csv")

    assert headerless.returncode == 2
    assert "  line 1: 'john.example.com' is not a valid email address" in headerless.stderr
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        "mailctl: cannot read the list missing.csv: No such file or directory"
    )
    assert no_folder.returncode == 2
    assert no_folder.stderr.startswith("mailctl: cannot write the report no/r.csv: there is no")
    assert "Traceback" not in headerless.stderr + missing.stderr + no_folder.stderr
    assert instances(app) == started_before  # no send started at all
    assert "reported@example.com" not in outbox(app)


# --- a few thousand rows ------------------------------------------------------------------------

CSV_RECIPIENTS = [f"csv{i:05d}@example.com" for i in range(2000)]


@pytest.fixture(scope="module")
def csv_send(app: DevhostProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One send of a 2,000-row CSV (plus duplicate rows) with a report, run once per module."""
    folder = tmp_path_factory.mktemp("csv-send")
    rows = [*CSV_RECIPIENTS, CSV_RECIPIENTS[7].upper(), CSV_RECIPIENTS[8]]  # sent once each
    write_list(folder / "list.csv", rows)
    (folder / "body.txt").write_text("안녕하세요,\n봄 소식을 전합니다.\n", encoding="utf-8")
    command = [
        "send",
        "--from",
        SENDER,
        "--to-file",
        "list.csv",
        "--subject",
        "봄 소식",
        "--body-file",
        "body.txt",
        "--report",
        "report.csv",
        "--poll-interval",
        POLL,
    ]
    started = time.monotonic()
    result = mailctl(app, folder, *command)
    return {
        "folder": folder,
        "command": command,
        "result": result,
        "seconds": time.monotonic() - started,
    }


def test_a_csv_of_thousands_is_sent_and_the_report_matches_the_outbox(
    app: DevhostProcess, csv_send: dict[str, Any]
) -> None:
    result = csv_send["result"]
    assert result.returncode == 0, result.stderr
    send_id = result.stdout.split()[1]  # "send <id> Completed: ..."
    assert "list.csv: 2,000 recipients (column 'email', header row skipped, 2 duplicates" in (
        result.stderr
    )
    assert f"send {send_id} Completed: 2,000 sent, 0 failed of 2,000" in result.stdout
    # not a terminal: progress comes as one line per change, ending at the whole send
    lines = [line for line in result.stderr.splitlines() if f" {send_id} " in line]
    assert lines
    assert "Completed: 2,000/2,000 done — sent 2,000, failed 0, pending 0" in lines[-1]

    report = read_report(csv_send["folder"] / "report.csv")
    mailed = outbox(app)
    assert [row["email"] for row in report] == CSV_RECIPIENTS  # file order, duplicates once
    for row in report:
        messages = mailed[row["email"]]
        assert len(messages) == 1  # one message each, and only one
        assert row["result"] == "sent"
        assert row["message_id"] == messages[0]["messageId"]
        assert (messages[0]["subject"], messages[0]["from"]) == ("봄 소식", SENDER)
    assert {mailed[r][0]["body"] for r in CSV_RECIPIENTS} == {"안녕하세요,\n봄 소식을 전합니다.\n"}


def test_running_the_same_command_again_sends_nothing_new(
    app: DevhostProcess, csv_send: dict[str, Any]
) -> None:
    first = csv_send["result"]
    assert first.returncode == 0, first.stderr
    before = outbox(app)
    report_path = csv_send["folder"] / "report.csv"
    first_report = sent_columns(read_report(report_path))

    again = mailctl(app, csv_send["folder"], *csv_send["command"])

    assert again.returncode == 0, again.stderr
    # the same send, the same outcome (delivery counts may have grown as SES events came in)
    assert again.stdout.splitlines()[0] == first.stdout.splitlines()[0]
    assert outbox(app) == before  # nobody mailed twice
    assert sent_columns(read_report(report_path)) == first_report
    # a script's form: the id alone, and no watching
    no_wait = mailctl(app, csv_send["folder"], *csv_send["command"], "--no-wait")
    assert no_wait.returncode == 0, no_wait.stderr
    assert no_wait.stdout == first.stdout.split()[1] + "\n"
    assert outbox(app) == before


def sent_columns(report: list[dict[str, str]]) -> list[tuple[str, ...]]:
    return [(r["email"], r["result"], r["message_id"], r["code"]) for r in report]


# --- on a terminal ------------------------------------------------------------------------------


def test_the_live_progress_bar_shows_counts_rate_and_eta_on_a_terminal(
    app: DevhostProcess, tmp_path: Path
) -> None:
    write_list(tmp_path / "list.csv", [f"bar{i:04d}@example.com" for i in range(600)])
    terminal = mailctl_in_terminal(
        app,
        tmp_path,
        *("send", "--from", SENDER, "--to-file", "list.csv", "--subject", "s", "--body", "b"),
        *("--poll-interval", POLL),
    )
    assert terminal.finish() == 0, terminal.screen_text[-3000:]

    frames = terminal.frames()
    assert frames, terminal.screen_text[-3000:]
    assert {number(f["total"]) for f in frames} == {600}
    moving = [f for f in frames if 0 < number(f["sent"]) < 600 and f["runtime"] == "Running"]
    assert moving, "no frame caught the send half-way"
    assert any(re.fullmatch(r"[\d.,]+/s", f["rate"]) and ":" in f["eta"] for f in moving)
    last = frames[-1]
    assert (last["runtime"], last["percent"], number(last["sent"])) == ("Completed", "100", 600)
    assert (last["failed"], last["pending"]) == ("0", "0")


def test_on_an_80_column_terminal_the_bar_gives_way_to_the_rate_and_eta(
    app: DevhostProcess, tmp_path: Path
) -> None:
    # 600 is enough: with the id, the bar, the percentage and the elapsed time the line needs
    # more than 90 columns
    write_list(tmp_path / "list.csv", [f"narrow{i:04d}@example.com" for i in range(600)])
    terminal = mailctl_in_terminal(
        app,
        tmp_path,
        *("send", "--from", SENDER, "--to-file", "list.csv", "--subject", "s", "--body", "b"),
        *("--poll-interval", POLL),
        columns=80,
    )
    assert terminal.finish() == 0, terminal.screen_text[-3000:]

    frames = terminal.frames()
    assert frames, terminal.screen_text[-3000:]
    assert {number(f["total"]) for f in frames} == {600}
    moving = [f for f in frames if 0 < number(f["sent"]) < 600]
    assert any(re.fullmatch(r"[\d.,]+/s", f["rate"]) and ":" in f["eta"] for f in moving)
    lines = [line for line in terminal.screen_text.splitlines() if " pending of " in line]
    assert max(len(line.rstrip()) for line in lines) <= 80
    assert "…" not in "".join(lines)


def test_ctrl_c_stops_watching_not_sending_and_says_how_to_resume(
    app: DevhostProcess, tmp_path: Path
) -> None:
    recipients = [f"ctrlc{i:04d}@example.com" for i in range(600)]
    write_list(tmp_path / "list.csv", recipients)
    terminal = mailctl_in_terminal(
        app,
        tmp_path,
        *("send", "--from", SENDER, "--to-file", "list.csv", "--subject", "s", "--body", "b"),
        *("--report", "report.csv", "--poll-interval", POLL),
    )
    terminal.read_until(lambda t: any(f["runtime"] == "Running" for f in t.frames()), 60)

    terminal.press_ctrl_c()

    assert terminal.finish() == 130
    text = terminal.screen_text
    send_id = re.search(r"accepted: send (\w+)", text)
    assert send_id, text
    send_id_text = send_id.group(1)
    assert f"Stopped watching. The send {send_id_text} goes on in the service." in text
    resume = re.search(r"Resume watching with: (.+)", text)
    assert resume, text
    assert resume.group(1).strip() == (
        f"python -m mailctl watch {send_id_text} --to-file list.csv --report report.csv"
    )
    assert not (tmp_path / "report.csv").exists()  # no report of a send still running

    running = mailctl(app, tmp_path, "status", send_id_text)
    assert running.returncode == 7, running.stdout + running.stderr
    assert f"send {send_id_text} Running:" in running.stdout

    # the send went on with nobody watching: everyone mailed, once
    assert wait_until_finished(app, send_id_text)["progress"]["sent"] == 600
    mailed = outbox(app)
    assert all(len(mailed[r]) == 1 for r in recipients)

    # and the printed command picks it up again, report included
    words = shlex.split(resume.group(1))
    assert words[:3] == ["python", "-m", "mailctl"]
    resumed = mailctl(app, tmp_path, *words[3:])
    assert resumed.returncode == 0, resumed.stderr
    report = read_report(tmp_path / "report.csv")
    assert [(r["email"], r["message_id"]) for r in report] == [
        (r, mailed[r][0]["messageId"]) for r in recipients
    ]


# --- the service's answers ----------------------------------------------------------------------


def test_service_errors_are_shown_as_the_envelope_message_with_exit_codes(
    app: DevhostProcess, tmp_path: Path
) -> None:
    write_list(tmp_path / "list.csv", ["someone@example.com"])
    send = ("send", "--to-file", "list.csv", "--subject", "s", "--body", "b")

    forbidden = mailctl(app, tmp_path, *send, "--from", "ceo@example.com")
    assert forbidden.returncode == 5
    assert forbidden.stderr.strip().endswith(
        "mailctl: the service answered 403: senderEmail ceo@example.com is not an allowed "
        "sender for aws-send; use a verified company address"
    )
    wrong_key = mailctl(app, tmp_path, *send, "--from", SENDER, MAILCTL_KEY="wrong")
    assert wrong_key.returncode == 5
    assert "the service answered 401" in wrong_key.stderr
    assert "MAILCTL_KEY" in wrong_key.stderr
    unknown = mailctl(app, tmp_path, "status", "no-such-send")
    assert unknown.returncode == 5
    assert "the service answered 404: No send with id 'no-such-send' exists." in unknown.stderr
    nobody_there = mailctl(app, tmp_path, "status", "x", "--url", "http://127.0.0.1:9")
    assert nobody_there.returncode == 6
    assert "no answer from http://127.0.0.1:9/api" in nobody_there.stderr
    assert "someone@example.com" not in outbox(app)


def test_user_send_takes_the_password_from_the_environment_never_a_flag(
    app: DevhostProcess, tmp_path: Path
) -> None:
    recipients = [f"friend{i}@example.com" for i in range(5)]
    write_list(tmp_path / "friends.csv", recipients)
    write_list(tmp_path / "one.csv", ["lonely@example.com"])

    def user_send(to_file: str, report: str, *extra: str, **env: str) -> Any:
        return mailctl(
            app,
            tmp_path,
            *("user-send", "--provider", "gmail", "--from", "me@gmail.example.com"),
            *("--to-file", to_file, "--subject", "안부", "--body", "잘 지내?"),
            *("--report", report, "--poll-interval", POLL, *extra),
            **env,
        )

    no_password = user_send("friends.csv", "report.csv")
    assert no_password.returncode == 2
    assert "no SMTP password: set MAILCTL_SMTP_PASSWORD" in no_password.stderr
    as_flag = user_send("friends.csv", "report.csv", "--password", "pw")
    assert as_flag.returncode == 2  # no such option
    assert "unrecognized arguments: --password pw" in as_flag.stderr

    sent = user_send("friends.csv", "report.csv", MAILCTL_SMTP_PASSWORD="app-password")
    assert sent.returncode == 0, sent.stderr
    mailed = outbox(app)
    report = read_report(tmp_path / "report.csv")
    assert [(r["email"], r["result"], r["message_id"]) for r in report] == [
        (r, "sent", mailed[r][0]["messageId"]) for r in recipients
    ]
    assert {mailed[r][0]["transport"] for r in recipients} == {"smtp"}

    # the sink refuses this password with 535: nobody sent, each recipient reported
    refused = user_send("one.csv", "refused.csv", MAILCTL_SMTP_PASSWORD="wrong-password")
    assert refused.returncode == 4, refused.stderr
    assert "failures: SMTP_AUTH_FAILED x1" in refused.stdout
    (row,) = read_report(tmp_path / "refused.csv")
    assert (row["email"], row["result"], row["code"]) == (
        "lonely@example.com",
        "failed",
        "SMTP_AUTH_FAILED",
    )
