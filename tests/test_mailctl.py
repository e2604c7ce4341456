"""mailctl's pure parts: reading lists, the Idempotency-Key, reports, rate and ETA, settings;
its commands against an in-process stand-in of the API, and pause, resume and cancel (with
status, watch and the report of a paused or canceled send) against the app's own HTTP
functions, run in process as the host runs them.

The client against the real service (a devhost) is in tests/devhost/test_mailctl_e2e.py.
"""

from __future__ import annotations

import base64
import csv
import functools
import gc
import hashlib
import io
import json
import os
import re
import sys
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from mailctl import cli, watching
from mailctl.client import (
    CONTROL_ATTEMPTS,
    KEY_BUSY_PATIENCE,
    PAGE_ATTEMPTS,
    Client,
    _service_error,
    idempotency_key,
    installation_salt,
)
from mailctl.config import DEFAULT_URL, is_loopback, resolve
from mailctl.exitcodes import ExitCode
from mailctl.recipients import BadRows, address_key, parse_recipients, read_recipients
from mailctl.report import (
    COLUMNS,
    DeliveryEvents,
    build_report,
    recipient_row,
    write_paged_report,
    write_report,
)
from mailctl.watching import BarDisplay, Counts, Rate, format_duration, format_rate
from orchestrators.names import LANE_ORCHESTRATOR, SES_ORCHESTRATOR
from sendmail import services
from sendmail.admission.idempotency import TAKEOVER_AFTER
from sendmail.contract.addresses import normalize_address
from tests.support.durable import FakeDurableClient, status
from tests.support.http import call, record_outcomes, store_finished

ROOT = Path(__file__).resolve().parent.parent


# --- reading a list -----------------------------------------------------------------------------


def test_a_csv_with_an_email_column_anywhere_and_a_header_row() -> None:
    data = "name,E-mail,team\nKim,kim@example.com,a\nLee, lee@example.com ,b\n"
    read = parse_recipients(data.encode())
    assert read.addresses == ["kim@example.com", "lee@example.com"]  # cell spaces trimmed
    assert read.header
    assert read.column == "E-mail"


def test_a_plain_list_without_header_blank_lines_and_duplicates() -> None:
    data = b"a@example.com\n\nb@example.com\nA@EXAMPLE.com\n\n"
    read = parse_recipients(data)
    assert read.addresses == ["a@example.com", "b@example.com"]  # first spelling, file order
    assert (read.rows, read.duplicates, read.header) == (3, 1, False)


def test_duplicates_are_the_services_duplicates() -> None:
    """The service's rule (sendmail.contract.addresses): case-insensitive, the domain in ASCII
    form. A list that merged other addresses, or kept apart what the service merges, would not
    match what was sent (the report pairs them one to one)."""
    data = "a@bücher.de\nA@XN--BCHER-KVA.DE\nb@straße.de\nb@strasse.de\n".encode()
    read = parse_recipients(data)
    assert read.addresses == ["a@bücher.de", "b@straße.de", "b@strasse.de"]
    assert [normalize_address(a) for a in read.addresses] == [
        address_key(a) for a in read.addresses
    ]


def test_a_header_without_an_email_column_uses_the_first_column() -> None:
    read = parse_recipients(b"address;name\nx@example.com;X\ny@example.com;Y\n")
    assert read.addresses == ["x@example.com", "y@example.com"]
    assert read.header


def test_excel_files_semicolons_tabs_bom_and_cp949() -> None:
    bom = "\ufeffemail\nkim@example.com\n".encode()
    assert parse_recipients(bom).addresses == ["kim@example.com"]
    tabs = "이름\t이메일\n김\tkim@example.com\n".encode()
    assert parse_recipients(tabs).addresses == ["kim@example.com"]
    korean_excel = "이름,email\n김철수,kim@example.com\n".encode("cp949")
    with pytest.raises(BadRows) as refused:
        parse_recipients(korean_excel)
    assert "line 1" in str(refused.value.problems[0])
    assert "cp949" in str(refused.value.problems[0])
    read = parse_recipients(korean_excel, encoding="cp949")
    assert read.addresses == ["kim@example.com"]


def test_every_bad_row_is_refused_with_its_line_number() -> None:
    data = (
        "email,name\n"  # 1
        "good1@example.com,a\n"  # 2
        "not-an-address,b\n"  # 3
        "\n"  # 4 (blank: skipped, not a problem)
        ",c\n"  # 5 (no address)
        '"multi\nline",d\n'  # 6-7: reported at its first line
        "good2@example.com,e\n"  # 8
        "Kim <kim@example.com>,f\n"  # 9 (a display name is not an address)
        "kim@exam ple.com,g\n"  # 10
    )
    with pytest.raises(BadRows) as refused:
        parse_recipients(data.encode(), source="list.csv")
    lines = [p.line for p in refused.value.problems]
    assert lines == [3, 5, 6, 9, 10]
    messages = [str(p) for p in refused.value.problems]
    assert messages[0].startswith("line 3: 'not-an-address' is not a valid email address")
    assert messages[1] == "line 5: no address in this row"
    assert "line break" in messages[2]


def test_the_column_can_be_named_or_numbered() -> None:
    data = b"id,work,home\n1,w1@example.com,h1@example.com\n"
    assert parse_recipients(data, column="home").addresses == ["h1@example.com"]
    assert parse_recipients(data[13:], column="2").addresses == ["w1@example.com"]
    with pytest.raises(BadRows) as refused:
        parse_recipients(data, column="mobile")
    assert "no column named 'mobile'" in str(refused.value.problems[0])
    # by number, a first row that names no column the way a header does is data
    with pytest.raises(BadRows) as refused:
        parse_recipients(data, column="2")
    (problem,) = refused.value.problems
    assert str(problem).startswith("line 1: 'work' is not a valid email address")
    assert "a header row? choose the column by its name (--column NAME)" in str(problem)
    named = b"name,email,other\nKim,kim@example.com,k2@example.com\n"
    read = parse_recipients(named, column="3")
    assert (read.addresses, read.header) == (["k2@example.com"], True)


def test_a_first_row_is_a_header_only_if_it_names_a_column() -> None:
    # a header-less list whose first address lacks its @: refused, never skipped
    for column in (None, "1"):
        with pytest.raises(BadRows) as refused:
            parse_recipients(b"john.example.com\nb@x.com\nc@x.com\n", column=column)
        (problem,) = refused.value.problems
        assert str(problem).startswith("line 1: 'john.example.com' is not a valid email address")
        assert "a header row?" in str(problem)
    # a header-less name,email file: every row refused, the first one too
    with pytest.raises(BadRows) as refused:
        parse_recipients(b"Kim,kim@example.com\nLee,lee@example.com\n")
    assert [p.line for p in refused.value.problems] == [1, 2]
    assert "name the address column email, or choose it with --column" in str(
        refused.value.problems[0]
    )
    # recognised header names: any case, spaces, - and _; email-like names first
    for header, column in [
        ("E-Mail", "E-Mail"),
        ("email address", "email address"),
        ("Name;E_MAIL", "E_MAIL"),
        ("Recipient", "Recipient"),
        ("TO", "TO"),
        ("Address;Name", "Address"),
        ("name;address;Email", "Email"),
        ("이름;이메일", "이메일"),
    ]:
        cells = header.split(";")
        row = ";".join("x@example.com" if c == column else "x" for c in cells)
        read = parse_recipients(f"{header}\n{row}\n".encode())
        assert (read.addresses, read.header, read.column) == (["x@example.com"], True, column)


def test_an_empty_list_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("email\n\n", encoding="utf-8")
    with pytest.raises(BadRows, match="1 bad row"):
        read_recipients(empty)


# --- the Idempotency-Key ------------------------------------------------------------------------


def test_the_idempotency_key_is_the_request_substance_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MAILCTL_SALT_FILE", str(tmp_path / "salt"))
    base = ("aws-send", "se@aifactory.page", ["a@example.com", "b@example.com"], "S", "B")
    key = idempotency_key(*base)
    assert re.fullmatch(r"mailctl-v2-[0-9a-f]{64}", key)  # printable ASCII, < 255 characters
    # the same people in another order, spelling or with duplicates: the same send
    same = ["B@example.com", "a@example.com", "a@EXAMPLE.com"]
    assert idempotency_key("aws-send", base[1], same, "S", "B") == key
    changed = [
        idempotency_key("user-send", *base[1:]),
        idempotency_key("aws-send", "other@aifactory.page", *base[2:]),
        idempotency_key("aws-send", base[1], ["a@example.com"], "S", "B"),
        idempotency_key("aws-send", base[1], base[2], "S2", "B"),
        idempotency_key("aws-send", base[1], base[2], "S", "B "),
        idempotency_key(*base, provider="GMAIL"),
    ]
    assert len({key, *changed}) == 7


def test_the_key_is_salted_per_installation(tmp_path: Path) -> None:
    """Found by the security review: a key that is a hash of the content alone can be computed
    by anyone who can guess the content. Each installation salts it with its own random salt,
    kept (mode 0600) so a re-run on the same machine is the same send."""
    here = {"MAILCTL_SALT_FILE": str(tmp_path / "here" / "salt")}
    there = {"XDG_CONFIG_HOME": str(tmp_path / "there")}
    salt = installation_salt(here)
    assert len(salt) == 64
    assert installation_salt(here) == salt  # kept
    assert (tmp_path / "here" / "salt").stat().st_mode & 0o777 == 0o600
    assert installation_salt(there) != salt
    assert (tmp_path / "there" / "mailctl" / "salt").exists()
    request = ("aws-send", "se@aifactory.page", ["a@example.com"], "S", "B")
    assert idempotency_key(*request, salt=salt) == idempotency_key(*request, salt=salt)
    assert idempotency_key(*request, salt=salt) != idempotency_key(
        *request, salt=installation_salt(there)
    )


def test_the_key_is_the_hash_of_the_canonical_json_hashed_as_it_is_encoded() -> None:
    """The key is hashed piece by piece (a million recipients' JSON is never held whole): it
    must stay the SHA-256 of the one canonical JSON text, or re-running a send from before
    would start a second one."""
    recipients = ["Kim@Example.com", "이메일@example.com", "b@straße.de", 'q"uote@example.com']
    request = ("user-send", "me@gmail.example.com", recipients, "제목 \u2028", 'b\\"\n', "GMAIL")
    substance = {
        "route": request[0],
        "sender": request[1],
        "recipients": sorted({a.casefold() for a in recipients}),
        "subject": request[3],
        "body": request[4],
        "provider": request[5],
        "salt": "pepper",
    }
    canonical = json.dumps(substance, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    expected = "mailctl-v2-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert idempotency_key(*request, salt="pepper") == expected


def test_line_ends_of_every_kind_and_quoted_cells_across_lines() -> None:
    """The reader is fed the text a line at a time (not a StringIO copy of it): lines end as a
    file opened with newline="" ends them, so old Mac files and quoted line breaks still read."""
    for end in ("\n", "\r\n", "\r"):
        data = end.join(["email,note", 'a@example.com,"two', 'lines"', "b@example.com,x", ""])
        read = parse_recipients(data.encode())
        assert read.addresses == ["a@example.com", "b@example.com"], repr(end)
    no_final_end = parse_recipients(b"a@example.com\nb@example.com")
    assert no_final_end.addresses == ["a@example.com", "b@example.com"]
    with pytest.raises(BadRows) as refused:
        parse_recipients(b"email\r\na@example.com\r\nnope\r\n")
    assert str(refused.value.problems[0]).startswith("line 3: 'nope'")


def test_reading_a_list_holds_it_about_once() -> None:
    """A million-row list is read whole (it is sent whole), but not copied over and over:
    before, a StringIO of the text (four bytes a character) and a second string per address
    took the peak to 3.6 times the list kept; now the text, the list and the duplicate check."""
    data = ("email\n" + "".join(f"user{i:06d}@example.com\n" for i in range(2_000))).encode()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        read = parse_recipients(data)
        kept, peak = (m - before for m in tracemalloc.get_traced_memory())
    finally:
        tracemalloc.stop()
    assert len(read.addresses) == 2_000
    assert peak < 2 * kept, (peak, kept)


# --- reports ------------------------------------------------------------------------------------

SENT_AND_FAILED = {
    "id": "s1",
    "runtimeStatus": "Completed",
    "progress": {"total": 4, "sent": 3, "failed": 1, "pending": 0},
    "messageIds": ["m-a", "m-c", "m-d"],
    "failures": [{"recipient": "b@example.com", "code": "SES_MESSAGE_REJECTED", "message": "no"}],
}


def test_report_rows_pair_each_address_with_its_message_id_or_failure(tmp_path: Path) -> None:
    recipients = ["a@example.com", "b@example.com", "c@example.com", "d@example.com"]
    events = [
        {"recipient": "c@example.com", "messageId": "m-c", "type": "Delivery", "timestamp": "t1"},
        {
            "recipient": "c@example.com",
            "messageId": "m-c",
            "type": "Complaint",
            "subType": "abuse",
            "timestamp": "t2",
        },
    ]
    report = build_report(SENT_AND_FAILED, recipients, events)
    assert report.warnings == []
    path = tmp_path / "out.csv"
    write_report(path, report)
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == COLUMNS
    assert [(r["email"], r["result"], r["message_id"], r["code"]) for r in rows] == [
        ("a@example.com", "sent", "m-a", ""),
        ("b@example.com", "failed", "", "SES_MESSAGE_REJECTED"),
        ("c@example.com", "sent", "m-c", ""),
        ("d@example.com", "sent", "m-d", ""),
    ]
    assert (rows[2]["delivery"], rows[2]["delivery_time"]) == ("Complaint/abuse", "t2")
    assert rows[2]["events"] == "Delivery@t1; Complaint/abuse@t2"


def test_a_report_from_another_list_does_not_guess_which_address_got_which_id() -> None:
    report = build_report(SENT_AND_FAILED, ["a@example.com", "z@example.com"])
    assert "not the list that was sent" in report.warnings[0]
    assert [r["email"] for r in report.rows] == ["b@example.com", "", "", ""]
    assert [r["message_id"] for r in report.rows] == ["", "m-a", "m-c", "m-d"]


def test_a_send_that_failed_whole_reports_every_recipient_unknown() -> None:
    status = {
        "id": "s2",
        "runtimeStatus": "Terminated",
        "progress": {"total": 2, "sent": 0, "failed": 0, "pending": 0},
        "messageIds": [],
        "failures": [],
        "error": "The send ended as Terminated before every recipient was attempted.",
    }
    rows = build_report(status, ["a@example.com", "b@example.com"]).rows
    assert {r["result"] for r in rows} == {"unknown"}
    assert rows[0]["message"].startswith("The send ended as Terminated")


# --- progress arithmetic ------------------------------------------------------------------------


def test_rate_and_eta_are_measured_from_the_first_read_to_the_latest_change() -> None:
    rate = Rate()
    counts = Counts(total=1000, sent=0, failed=0, pending=0)
    rate.observe(100.0, 0)
    assert (rate.per_second, rate.eta(counts)) == (None, None)  # nothing moved yet
    rate.observe(102.0, 0)
    rate.observe(110.0, 200)  # a batch landed: 200 in 10 s
    rate.observe(112.0, 200)  # no change: the rate is not diluted by waiting between batches
    assert rate.per_second == 20.0
    assert rate.eta(Counts(1000, 190, 10, 0)) == 40.0
    assert (format_rate(20.0), format_rate(1234.4), format_rate(None)) == (
        "20.0/s",
        "1,234/s",
        "—/s",
    )
    assert (format_duration(40.0), format_duration(3725), format_duration(None)) == (
        "0:00:40",
        "1:02:05",
        "—",
    )


# --- errors and settings ------------------------------------------------------------------------


def test_errors_are_the_envelope_message_or_say_what_an_empty_answer_means() -> None:
    envelope = {
        "timestamp": "2026-01-01T00:00:00Z",
        "status": 403,
        "error": "Forbidden",
        "message": "senderEmail x@example.com is not an allowed sender for aws-send",
        "path": "/api/v1/emails/aws-send",
    }
    error = _service_error(httpx.Response(403, json=envelope))
    assert (error.status, error.message) == (403, envelope["message"])
    azure_401 = _service_error(httpx.Response(401, content=b""))  # Azure's host: no body
    assert "function key was refused" in azure_401.message
    quota = _service_error(
        httpx.Response(429, json={"message": "q"}, headers={"Retry-After": "60"})
    )
    assert quota.retry_after == 60.0
    assert _service_error(httpx.Response(502, text="<html>")).message == "Bad Gateway (HTTP 502)"


def test_settings_come_from_flags_then_environment_then_the_local_host(tmp_path: Path) -> None:
    (tmp_path / ".devhost").mkdir()
    (tmp_path / ".devhost" / "function-key").write_text("local-key\n", encoding="utf-8")
    local = resolve(None, None, {}, tmp_path)
    assert (local.base_url, local.key, local.api_url) == (
        DEFAULT_URL,
        "local-key",
        f"{DEFAULT_URL}/api",
    )
    env = {"MAILCTL_URL": "https://mail.example.com/api/", "MAILCTL_KEY": "env-key"}
    assert resolve(None, None, env, tmp_path).base_url == "https://mail.example.com"
    assert resolve(None, None, env, tmp_path).key == "env-key"
    assert resolve("http://127.0.0.1:9", "flag-key", env, tmp_path).key == "flag-key"
    # the local host's key is never sent to another host
    remote = resolve("https://mail.example.com", None, {}, tmp_path)
    assert remote.key is None


# --- packaging ----------------------------------------------------------------------------------


def test_mailctl_is_a_dev_tool_outside_the_function_app() -> None:
    ignored = (ROOT / ".funcignore").read_text(encoding="utf-8").split()
    assert "mailctl" in ignored
    dev = (ROOT / "requirements-dev.txt").read_text(encoding="utf-8").splitlines()
    assert "-r mailctl/requirements.txt" in dev
    app_code = [ROOT / "function_app.py", *ROOT.glob("api/*.py"), *ROOT.glob("sendmail/*.py")]
    assert not [p for p in app_code if "mailctl" in p.read_text(encoding="utf-8")]


def test_events_are_read_page_by_page_and_a_missing_route_means_none() -> None:
    from mailctl.client import Client

    pages = {
        None: {"id": "s1", "events": [{"messageId": "m1", "type": "Send"}], "nextCursor": "c2"},
        "c2": {"id": "s1", "events": [{"messageId": "m1", "type": "Delivery"}]},
    }
    asked: list[dict[str, str]] = []

    def service(request: httpx.Request) -> httpx.Response:
        asked.append(dict(request.url.params))
        if request.url.path == "/api/v1/emails/s1/events":
            return httpx.Response(200, json=pages[request.url.params.get("cursor")])
        return httpx.Response(404, json={"message": "No function matches this route."})

    with Client("http://127.0.0.1:9/api", "k", transport=httpx.MockTransport(service)) as client:
        pages_read = list(client.event_pages("s1"))
        assert [[e["type"] for e in page] for page in pages_read] == [["Send"], ["Delivery"]]
        assert asked == [{"limit": "1000"}, {"limit": "1000", "cursor": "c2"}]
        assert list(client.event_pages("older-service")) == []


def test_a_dry_run_checks_the_list_and_shows_the_key_without_sending(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mailctl.cli import main

    (tmp_path / "list.csv").write_text("email\na@example.com\nb@example.com\n", encoding="utf-8")
    (tmp_path / "bad.csv").write_text("email\na@example.com\nnope\n", encoding="utf-8")
    common = ["--from", "se@aifactory.page", "--subject", "S", "--body", "B"]
    nowhere = ["--url", "http://127.0.0.1:9"]  # nothing listens: a request would fail

    code = main(["send", *common, *nowhere, "--to-file", str(tmp_path / "list.csv"), "--dry-run"])

    out = capsys.readouterr().out
    key = idempotency_key(
        "aws-send", "se@aifactory.page", ["a@example.com", "b@example.com"], "S", "B"
    )
    assert (code, out) == (0, f"dry run: 2 recipients; Idempotency-Key {key}\n")
    code = main(["send", *common, *nowhere, "--to-file", str(tmp_path / "bad.csv")])
    err = capsys.readouterr().err
    assert code == 2
    assert "1 bad row(s); nothing was sent." in err
    assert "line 3: 'nope' is not a valid email address" in err


# --- the commands against an in-process service -------------------------------------------------

Handler = Callable[[httpx.Request], httpx.Response]


@dataclass
class FakeService:
    """The v1 API as mailctl meets it, in process: ``routes`` answers ``"METHOD /path"``.
    Time is fake: sleeping (the client's and the watch's) moves :attr:`now`, nothing waits."""

    routes: dict[str, Handler] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    now: float = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def clock(self) -> float:
        return self.now

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get(f"{request.method} {request.url.path}")
        if route is None:
            return httpx.Response(404, json={"message": f"no route {request.url.path}"})
        return route(request)

    def posts(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == "POST"]


def accepted(send_id: str = "s1", total: int = 2) -> Handler:
    return lambda request: httpx.Response(202, json={"id": send_id, "total": total})


def finished(send_id: str = "s1", recipients: int = 2) -> dict[str, Any]:
    return {
        "id": send_id,
        "runtimeStatus": "Completed",
        "progress": {"total": recipients, "sent": recipients, "failed": 0, "pending": 0},
        "messageIds": [f"m{i}" for i in range(recipients)],
        "failures": [],
    }


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeService:
    """mailctl's commands talk to a :class:`FakeService`; cwd is ``tmp_path`` with ``list.csv``."""
    fake = FakeService()

    def client(config: Any, args: Any) -> Client:
        transport = httpx.MockTransport(fake.handle)
        return Client(
            config.api_url, config.key, sleep=fake.sleep, clock=fake.clock, transport=transport
        )

    monkeypatch.setattr(cli, "_client", client)
    monkeypatch.setattr(
        cli, "watch", functools.partial(watching.watch, clock=fake.clock, sleep=fake.sleep)
    )
    for name in ("MAILCTL_URL", "MAILCTL_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "list.csv").write_text("email\na@example.com\nb@example.com\n", encoding="utf-8")
    return fake


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


SEND = ("send", "--from", "se@aifactory.page", "--to-file", "list.csv", "--subject", "S")


def test_an_unreadable_list_or_body_is_one_line_and_exit_2(
    service: FakeService, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "folder.csv").mkdir()
    for argv, message in [
        (
            ("send", "--from", "se@aifactory.page", "--to-file", "missing.csv", "--subject", "S"),
            "mailctl: cannot read the list missing.csv: No such file or directory",
        ),
        (
            ("send", "--from", "se@aifactory.page", "--to-file", "folder.csv", "--subject", "S"),
            "mailctl: cannot read the list folder.csv: Is a directory",
        ),
    ]:
        assert run(capsys, *argv, "--body", "B") == (2, "", message + "\n")
    code, out, err = run(capsys, *SEND, "--body-file", "missing.txt")
    assert (code, out) == (2, "")
    assert err == "mailctl: cannot read the body missing.txt: No such file or directory\n"
    code, _, err = run(capsys, "watch", "s1", "--to-file", "missing.csv")
    assert code == 2
    assert err == "mailctl: cannot read the list missing.csv: No such file or directory\n"
    assert service.requests == []


def test_a_report_path_that_cannot_be_written_is_refused_before_anything_is_sent(
    service: FakeService, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    service.routes["POST /api/v1/emails/aws-send"] = accepted()
    (tmp_path / "a-folder").mkdir()
    for report, reason in [
        ("no/such/dir/out.csv", f"there is no folder {tmp_path / 'no' / 'such' / 'dir'}"),
        ("a-folder", "a-folder is a folder"),
    ]:
        code, out, err = run(capsys, *SEND, "--body", "B", "--report", report)
        assert (code, out) == (2, "")
        assert err == f"mailctl: cannot write the report {report}: {reason} (nothing was sent)\n"
        code, _, err = run(capsys, "watch", "s1", "--report", report)
        assert (code, err) == (2, f"mailctl: cannot write the report {report}: {reason}\n")
    assert service.requests == []


def test_the_report_gets_the_mode_of_any_new_file(tmp_path: Path) -> None:
    report = build_report(SENT_AND_FAILED, None)
    previous = os.umask(0o027)
    try:
        write_report(tmp_path / "out.csv", report)
    finally:
        os.umask(previous)
    assert (tmp_path / "out.csv").stat().st_mode & 0o777 == 0o640  # 0o666 less the umask


def test_a_key_in_progress_is_asked_again_until_the_service_could_take_it_over(
    service: FakeService, capsys: pytest.CaptureFixture[str]
) -> None:
    # the service takes over a key whose holder went silent after TAKEOVER_AFTER: wait longer
    assert TAKEOVER_AFTER.total_seconds() + 10 <= KEY_BUSY_PATIENCE
    busy = httpx.Response(409, json={"message": "in progress"}, headers={"Retry-After": "1"})

    def taken_over_after_30s(request: httpx.Request) -> httpx.Response:
        if service.now < TAKEOVER_AFTER.total_seconds() + 1:
            return busy
        return httpx.Response(202, json={"id": "s1", "total": 2})

    service.routes["POST /api/v1/emails/aws-send"] = taken_over_after_30s
    code, out, err = run(capsys, *SEND, "--body", "B", "--no-wait")
    assert (code, out) == (0, "s1\n"), err
    assert len(service.posts()) > 30  # about once a second: Retry-After honoured
    assert {r.headers["Idempotency-Key"] for r in service.posts()} == {
        idempotency_key(
            "aws-send", "se@aifactory.page", ["a@example.com", "b@example.com"], "S", "B"
        )
    }

    service.requests.clear()
    service.now = 0.0
    service.routes["POST /api/v1/emails/aws-send"] = lambda request: busy
    code, out, err = run(capsys, *SEND, "--body", "B")
    assert (code, out) == (6, "")  # try again later
    assert service.now == KEY_BUSY_PATIENCE
    assert "still answered 409 after 45 s: in progress" in err
    assert "running the same command again is safe" in err


def test_429_is_try_again_later(service: FakeService, capsys: pytest.CaptureFixture[str]) -> None:
    quota = {"message": "the 24-hour quota is used up"}
    service.routes["POST /api/v1/emails/aws-send"] = lambda request: httpx.Response(
        429, json=quota, headers={"Retry-After": "3600"}
    )
    code, _, err = run(capsys, *SEND, "--body", "B")
    assert code == 6
    assert "answered 429: the 24-hour quota is used up (retry after 1:00:00)" in err


def in_turn(*answers: httpx.Response) -> Handler:
    """A route answering ``answers`` in turn, the last one from then on."""
    left = list(answers)
    return lambda request: left.pop(0) if len(left) > 1 else left[0]


def running(send_id: str = "s1") -> Handler:
    body = {
        "id": send_id,
        "runtimeStatus": "Running",
        "progress": {"total": 2, "sent": 1, "failed": 0, "pending": 1},
    }
    return lambda request: httpx.Response(202, json=body, headers={"Retry-After": "2"})


def test_watching_that_stops_on_an_error_says_the_send_goes_on_and_how_to_resume(
    service: FakeService, capsys: pytest.CaptureFixture[str]
) -> None:
    service.routes["POST /api/v1/emails/aws-send"] = accepted()
    resume = "Resume watching with: python -m mailctl watch s1 --to-file list.csv\n"
    for answer, code, said in [
        (403, 5, "mailctl: the service answered 403: no"),
        (404, 5, "mailctl: the service answered 404: no"),
        (503, 6, "mailctl: the service answered 503: no"),  # given up after 300 s
        (429, 6, "mailctl: the service answered 429: no"),  # likewise
    ]:
        service.now = 0.0
        service.routes["GET /api/v1/emails/s1"] = in_turn(
            running()(httpx.Request("GET", "/")), httpx.Response(answer, json={"message": "no"})
        )
        result, out, err = run(capsys, *SEND, "--body", "B", "--progress", "none")
        assert (result, out) == (code, ""), err
        assert err.endswith(
            f"{said}\nStopped watching. The send s1 goes on in the service.\n{resume}"
        )
    assert service.now >= 300
    # an id the service never knew: nothing goes on, nothing to resume
    code, _, err = run(capsys, "watch", "nope", "--progress", "none")
    assert code == 5
    assert "goes on" not in err


def test_the_resume_command_says_how_to_give_a_key_that_came_from_key(
    service: FakeService, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    service.routes["POST /api/v1/emails/aws-send"] = accepted()
    url = ("--url", "https://mail.example.com")
    code, _, err = run(capsys, *SEND, "--body", "B", "--no-wait", *url, "--key", "secret-key")
    assert code == 0
    assert "secret-key" not in err
    assert err.endswith(
        "follow it with: python -m mailctl watch s1 --url https://mail.example.com "
        "--to-file list.csv\n  (with the function key: add --key KEY, or set MAILCTL_KEY)\n"
    )
    monkeypatch.setenv("MAILCTL_KEY", "secret-key")  # it is still there for the next command
    code, _, err = run(capsys, *SEND, "--body", "B", "--no-wait", *url)
    assert err.endswith("--to-file list.csv\n")


def test_ctrl_c_while_reading_the_report_events_names_the_send(
    service: FakeService, capsys: pytest.CaptureFixture[str]
) -> None:
    service.routes["POST /api/v1/emails/aws-send"] = accepted()
    service.routes["GET /api/v1/emails/s1"] = lambda request: httpx.Response(200, json=finished())

    def interrupted(request: httpx.Request) -> httpx.Response:
        raise KeyboardInterrupt

    service.routes["GET /api/v1/emails/s1/events"] = interrupted
    code, out, err = run(capsys, *SEND, "--body", "B", "--progress", "none", "--report", "r.csv")
    assert (code, out) == (130, "")
    assert err.endswith(
        "Stopped before the report was written. The send s1 has finished (2 sent, 0 failed of "
        "2).\nWrite the report with: python -m mailctl watch s1 --to-file list.csv "
        "--report r.csv\n"
    )


def test_a_body_file_s_byte_order_mark_is_not_mailed(
    service: FakeService, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    service.routes["POST /api/v1/emails/aws-send"] = accepted()
    (tmp_path / "body.txt").write_bytes("\ufeff안녕하세요\n".encode())
    code, _, err = run(capsys, *SEND, "--body-file", "body.txt", "--no-wait")
    assert code == 0, err
    assert json.loads(service.posts()[0].content)["body"] == "안녕하세요\n"


def test_a_url_without_http_or_https_is_refused_before_anything_is_sent(
    service: FakeService, capsys: pytest.CaptureFixture[str]
) -> None:
    for url in ("mail.example.com", "ftp://mail.example.com", "localhost:7071"):
        code, out, err = run(capsys, *SEND, "--body", "B", "--url", url)
        assert (code, out) == (2, "")
        assert err.startswith(f"mailctl: --url {url!r} is not an http:// or https:// URL")
    assert service.requests == []


def test_only_a_loopback_host_gets_the_local_key(tmp_path: Path) -> None:
    (tmp_path / ".devhost").mkdir()
    (tmp_path / ".devhost" / "function-key").write_text("local-key\n", encoding="utf-8")
    for url in ("http://localhost:7071", "http://127.0.0.2:7071", "http://[::1]:7071"):
        assert is_loopback(url)
        assert resolve(url, None, {}, tmp_path).key == "local-key"
    for url in ("http://127.0.0.1.nip.io", "http://127.evil.example", "http://10.0.0.1"):
        assert not is_loopback(url)
        assert resolve(url, None, {}, tmp_path).key is None


def test_the_rate_never_goes_negative_when_the_counts_drop() -> None:
    rate = Rate()
    rate.observe(0.0, 1000)
    rate.observe(10.0, 1500)
    rate.observe(20.0, 855)  # the service fell back to lower parent counts
    assert rate.per_second == 50.0
    rate.observe(30.0, 1400)  # still below the highest seen: no new measure
    assert rate.per_second == 50.0
    rate.observe(40.0, 2000)
    assert rate.per_second == 25.0
    dropped = Rate()
    dropped.observe(0.0, 1000)
    dropped.observe(10.0, 355)
    assert dropped.per_second is None


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_the_progress_line_keeps_counts_rate_and_eta_at_any_width(width: int) -> None:
    console = Console(width=width, file=io.StringIO(), color_system=None)
    rate = Rate()
    rate.observe(0.0, 0)
    rate.observe(10.0, 12_344)
    counts = Counts(total=20_000, sent=6_500, failed=167, pending=13_333)
    with BarDisplay(console, "4f1c9a2b7d3e44aa") as display:
        display.update(counts, rate, "Running")
    (text,) = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert len(text) <= width
    assert "…" not in text
    assert re.search(r"6,500\b.*\b167\b.*\b13,333\b.* 1,234/s ETA 0:00:11", text), text
    if width >= 80:
        assert "6,500 sent · 167 failed · 13,333 pending of 20,000" in text
    assert ("━" in text) == (width >= 120)  # the bar goes first


# --- the report from the recipients route -------------------------------------------------------


def listed_json(index: int) -> str:
    """Recipient ``index`` of a generated send as the recipients route lists it, as JSON text
    (made without dicts: the fakes serve hundreds of thousands of them under tracemalloc):
    every seventh (3, 10, 17 ...) failed, the others sent."""
    if index % 7 == 3:
        return (
            f'{{"email":"r{index:06d}@example.com","status":"failed",'
            f'"code":"SES_MESSAGE_REJECTED","message":"rejected {index}"}}'
        )
    return f'{{"email":"r{index:06d}@example.com","status":"sent","messageId":"m-{index}"}}'


def listed(index: int) -> dict[str, str]:
    return dict(json.loads(listed_json(index)))


def delivered_at(index: int) -> str:
    return f"2026-11-29T10:{index // 60 % 60:02d}:{index % 60:02d}Z"


def cursor_at(index: int) -> str:
    return base64.urlsafe_b64encode(f"at {index}".encode()).decode()


def cursor_index(params: dict[str, str]) -> int:
    return int(base64.urlsafe_b64decode(params["cursor"]).split()[1]) if "cursor" in params else 0


def generated_page(
    request: httpx.Request, total: int, key: str, item: Callable[[int], str | None]
) -> httpx.Response:
    """A page of a generated list of ``total``: ``{"id", key: [items], "nextCursor"?}``."""
    params = dict(request.url.params)
    start = cursor_index(params)
    stop = min(total, start + int(params.get("limit", "100")))
    items = ",".join(filter(None, map(item, range(start, stop))))
    more = f',"nextCursor":"{cursor_at(stop)}"' if stop < total else ""
    body = f'{{"id":"s1","{key}":[{items}]{more}}}'
    return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})


def recipients_route(
    total: int,
    asked: list[dict[str, str]] | None = None,
    trouble: Callable[[int], httpx.Response | None] | None = None,
) -> Handler:
    """``GET /api/v1/emails/s1/recipients`` of a send of ``total`` (:func:`listed_json`), each
    page made when asked; ``trouble(start)`` may answer a page instead."""

    def route(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        if asked is not None:
            asked.append(params)
        answer = trouble(cursor_index(params)) if trouble is not None else None
        if answer is not None:
            return answer
        return generated_page(request, total, "recipients", listed_json)

    return route


def events_route(total: int) -> Handler:
    """``GET /api/v1/emails/s1/events``: a Delivery for every sent recipient, made when asked."""

    def event(i: int) -> str | None:
        if i % 7 == 3:
            return None
        return (
            f'{{"recipient":"r{i:06d}@example.com","messageId":"m-{i}","type":"Delivery",'
            f'"timestamp":"{delivered_at(i)}"}}'
        )

    return lambda request: generated_page(request, total, "events", event)


def finished_large(total: int) -> dict[str, Any]:
    """A finished send above the inline limit: counts, no inline results, ``recipientsUrl``."""
    failed = len(range(3, total, 7))
    return {
        "id": "s1",
        "runtimeStatus": "Completed",
        "progress": {"total": total, "sent": total - failed, "failed": failed, "pending": 0},
        "messageIds": [],
        "failures": [],
        "recipientsUrl": "http://127.0.0.1:7071/api/v1/emails/s1/recipients",
    }


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_report_pages_through_the_recipients_route_and_writes_every_row_in_order(
    service: FakeService, capsys: pytest.CaptureFixture[str]
) -> None:
    total = 12_345
    asked: list[dict[str, str]] = []
    service.routes["GET /api/v1/emails/s1"] = lambda r: httpx.Response(
        200, json=finished_large(total)
    )
    service.routes["GET /api/v1/emails/s1/recipients"] = recipients_route(total, asked)
    events = [
        {"messageId": "m-1", "recipient": "r000001@example.com", "type": "Delivery",
         "timestamp": "2026-11-29T10:00:05Z"},
        {"messageId": "m-1", "recipient": "r000001@example.com", "type": "Complaint",
         "subType": "abuse", "timestamp": "2026-11-29T11:00:00Z"},
        {"messageId": "m-11001", "type": "Bounce", "subType": "Permanent",
         "timestamp": "2026-11-29T10:00:01Z", "diagnostic": "smtp; 550 user unknown"},
        {"recipient": "r000002@example.com", "type": "Delivery", "timestamp": "t"},  # no id
    ]  # fmt: skip
    service.routes["GET /api/v1/emails/s1/events"] = lambda r: httpx.Response(
        200,
        json={"id": "s1", "events": events[:2], "nextCursor": "e2"}
        if "cursor" not in r.url.params
        else {"id": "s1", "events": events[2:]},
    )

    code, out, err = run(capsys, "watch", "s1", "--report", "r.csv", "--progress", "lines")

    failed = len(range(3, total, 7))
    assert code == 3, err  # some failed
    assert out == (
        f"send s1 Completed: {total - failed:,} sent, {failed:,} failed of {total:,}\n"
        f"  failures: SES_MESSAGE_REJECTED x{failed:,}\n"  # counted from the report's rows
    )
    # page after page, each cursor the one the page before gave, the route's largest page
    assert asked[0] == {"limit": "1000"}
    assert asked[1:] == [
        {"limit": "1000", "cursor": cursor_at(n)} for n in range(1000, total, 1000)
    ]
    rows = read_rows(Path("r.csv"))
    assert len(rows) == total
    for index, row in enumerate(rows):
        expected = listed(index)
        assert row["email"] == expected["email"]
        assert row["result"] == expected["status"]
        assert row["message_id"] == expected.get("messageId", "")
        assert (row["code"], row["message"]) == (
            expected.get("code", ""),
            expected.get("message", ""),
        )
    assert (rows[1]["delivery"], rows[1]["delivery_time"]) == (
        "Complaint/abuse",
        "2026-11-29T11:00:00Z",
    )
    assert (
        rows[1]["events"] == "Delivery@2026-11-29T10:00:05Z; Complaint/abuse@2026-11-29T11:00:00Z"
    )
    assert (rows[11001]["delivery"], rows[11001]["delivery_detail"]) == (
        "Bounce/Permanent",
        "smtp; 550 user unknown",
    )
    assert rows[2]["delivery"] == ""
    # how far the report got, every tenth of the way, then where it is
    notes = [line for line in err.splitlines() if line.startswith("report: ")]
    assert notes == [
        *(
            f"report: {n:,} of {total:,} rows"
            for n in (2000, 3000, 4000, 5000, 7000, 8000, 9000, 10_000, 12_000)
        ),
        f"report: r.csv ({total:,} rows)",
    ]
    assert not [p for p in Path().iterdir() if p.name.startswith(".r.csv.")]  # no temporary file


def test_the_report_of_200000_recipients_holds_a_page_never_the_send(tmp_path: Path) -> None:
    """The service's recipients and delivery events (one per recipient sent) are made as they
    are asked for, a page at a time; the peak of memory while the report is written (events
    read, pages joined and written) is compared with what the rows alone would take held at
    once (measured on a tenth of them). Holding the rows, the recipients or the events of the
    send would each exceed it several times over; a page is a few hundred kilobytes."""
    total = 200_000
    fake = FakeService()
    fake.routes["GET /api/v1/emails/s1/recipients"] = recipients_route(total)
    fake.routes["GET /api/v1/emails/s1/events"] = events_route(total)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = [recipient_row(listed(i)) for i in range(total // 10)]  # a tenth, measured
        rows_size = (tracemalloc.get_traced_memory()[0] - before) * 10
        del held
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        transport = httpx.MockTransport(fake.handle)
        with (
            Client("http://127.0.0.1:9/api", "k", transport=transport) as client,
            DeliveryEvents() as events,
        ):
            for page in client.event_pages("s1"):
                events.add(page)
            written = write_paged_report(tmp_path / "r.csv", client.recipient_pages("s1"), events)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    fake.requests.clear()

    assert written.rows == total
    assert written.codes == {"SES_MESSAGE_REJECTED": len(range(3, total, 7))}
    assert peak < rows_size / 10, f"peak {peak:,} B; the rows held: {rows_size:,} B"
    with (tmp_path / "r.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        count = 0
        for index, row in enumerate(reader):
            expected = listed(index)
            assert (row["email"], row["message_id"]) == (
                expected["email"],
                expected.get("messageId", ""),
            )
            if "messageId" in expected:
                assert (
                    row["delivery_time"]
                    == f"2026-11-29T10:{index // 60 % 60:02d}:{index % 60:02d}Z"
                )
            count += 1
    assert count == total


def test_a_page_error_mid_way_leaves_no_partial_report_and_says_why(
    service: FakeService, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    total = 3_000
    service.routes["GET /api/v1/emails/s1"] = lambda r: httpx.Response(
        200, json=finished_large(total)
    )
    (tmp_path / "r.csv").write_text("an earlier report\n", encoding="utf-8")
    resume = "write it later with: python -m mailctl watch s1 --report r.csv\n"
    asked: list[dict[str, str]] = []

    def broken(answer: httpx.Response) -> Callable[[int], httpx.Response | None]:
        return lambda start: answer if start == 2000 else None

    # a service that keeps failing: tried again, then given up; the earlier report untouched
    unavailable = httpx.Response(503, json={"message": "the ledger is unavailable"})
    service.routes["GET /api/v1/emails/s1/recipients"] = recipients_route(
        total, asked, broken(unavailable)
    )
    code, out, err = run(capsys, "watch", "s1", "--report", "r.csv", "--progress", "none")
    assert code == 3  # the send's outcome: the report's trouble is said, not an exit code
    assert out.startswith("send s1 Completed")
    assert err.endswith(
        "mailctl: report: r.csv not written: the recipients could not be read (the service "
        f"answered 503: the ledger is unavailable); {resume}"
    )
    assert [cursor_index(a) for a in asked] == [0, 1000] + [2000] * PAGE_ATTEMPTS
    assert (tmp_path / "r.csv").read_text(encoding="utf-8") == "an earlier report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.csv", "r.csv"]

    # a refusal is not tried again
    asked.clear()
    refused = httpx.Response(400, json={"message": "cursor must be a nextCursor this service gave"})
    service.routes["GET /api/v1/emails/s1/recipients"] = recipients_route(
        total, asked, broken(refused)
    )
    code, _, err = run(capsys, "watch", "s1", "--report", "r.csv", "--progress", "none")
    assert "(the service answered 400: cursor must be a nextCursor this service gave)" in err
    assert [cursor_index(a) for a in asked] == [0, 1000, 2000]
    assert (tmp_path / "r.csv").read_text(encoding="utf-8") == "an earlier report\n"

    # Ctrl-C half-way: the same, and how to write it later
    def interrupted(start: int) -> httpx.Response | None:
        if start == 2000:
            raise KeyboardInterrupt
        return None

    service.routes["GET /api/v1/emails/s1/recipients"] = recipients_route(total, None, interrupted)
    code, out, err = run(capsys, "watch", "s1", "--report", "r.csv", "--progress", "none")
    assert (code, out) == (130, "")
    assert "Stopped before the report was written. The send s1 has finished" in err
    assert err.endswith("Write the report with: python -m mailctl watch s1 --report r.csv\n")
    assert (tmp_path / "r.csv").read_text(encoding="utf-8") == "an earlier report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.csv", "r.csv"]

    # a page that fails once is read again, and the report is whole
    blips = [httpx.Response(502, json={"message": "bad gateway"})]
    service.routes["GET /api/v1/emails/s1/recipients"] = recipients_route(
        total, None, lambda start: blips.pop() if start == 2000 and blips else None
    )
    code, _, err = run(capsys, "watch", "s1", "--report", "r.csv", "--progress", "none")
    assert code == 3
    assert err.endswith("report: r.csv (3,000 rows)\n"), err
    assert [r["email"] for r in read_rows(tmp_path / "r.csv")] == [
        listed(i)["email"] for i in range(total)
    ]


def test_an_older_service_s_report_maps_the_list_onto_the_inline_results(
    service: FakeService, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Without ``recipientsUrl`` (a service from before the recipients route) the report is
    made as before, from the status's messageIds and failures and the list; with it, the list
    is not even read (watching a long send holds none of it)."""
    service.routes["GET /api/v1/emails/s1"] = lambda r: httpx.Response(200, json=finished())
    code, _, err = run(
        capsys, "watch", "s1", "--to-file", "list.csv", "--report", "r.csv", "--progress", "none"
    )
    assert code == 0, err
    assert [(r["email"], r["message_id"]) for r in read_rows(tmp_path / "r.csv")] == [
        ("a@example.com", "m0"),
        ("b@example.com", "m1"),
    ]
    assert not [r for r in service.requests if r.url.path.endswith("/recipients")]

    (tmp_path / "bad.csv").write_text("email\nnot an address\n", encoding="utf-8")
    service.routes["GET /api/v1/emails/s1"] = lambda r: httpx.Response(200, json=finished_large(20))
    service.routes["GET /api/v1/emails/s1/recipients"] = recipients_route(20)
    code, _, err = run(
        capsys, "watch", "s1", "--to-file", "bad.csv", "--report", "r.csv", "--progress", "none"
    )
    assert code == 3, err
    assert len(read_rows(tmp_path / "r.csv")) == 20
    # an older service, and a list that cannot be read then: rows without it, and why
    service.routes["GET /api/v1/emails/s1"] = lambda r: httpx.Response(200, json=finished())
    code, _, err = run(
        capsys, "watch", "s1", "--to-file", "bad.csv", "--report", "r.csv", "--progress", "none"
    )
    assert code == 0
    assert "mailctl: report: bad.csv: 1 bad row(s); the rows are written without it" in err
    assert [r["message_id"] for r in read_rows(tmp_path / "r.csv")] == ["m0", "m1"]


def test_send_lets_the_list_go_once_the_service_has_it(
    service: FakeService, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The list is held while it is read, checked and sent; a send watched for hours holds
    none of it (nor does its report, which comes from the recipients route): while watching,
    no list or dict of the list's size is alive."""
    total = 5_000
    addresses = [f"user{i:06d}@example.com" for i in range(total)]
    (tmp_path / "list.csv").write_text("\n".join(["email", *addresses]), encoding="utf-8")
    del addresses
    alive_while_watching: list[int] = []
    posted: list[int] = []

    def status(request: httpx.Request) -> httpx.Response:
        for post in service.posts():
            posted.append(len(json.loads(post.content)["recipientEmails"]))
        service.requests.clear()  # the fake's own copy of the POST: not mailctl's
        gc.collect()
        alive_while_watching.append(
            sum(isinstance(o, list | dict | set) and len(o) >= total for o in gc.get_objects())
        )
        return httpx.Response(200, json=finished_large(total))

    service.routes["POST /api/v1/emails/aws-send"] = accepted(total=total)
    service.routes["GET /api/v1/emails/s1"] = status
    code, _, err = run(capsys, *SEND, "--body", "B", "--progress", "none")

    assert code == 3, err
    assert posted == [total]
    assert alive_while_watching == [0]


def test_html_category_time_and_metadata_go_into_the_request_and_its_key(
    service: FakeService, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    service.routes["POST /api/v1/emails/aws-send"] = accepted()
    (tmp_path / "news.html").write_text("<p>안녕하세요</p>", encoding="utf-8")
    extra = [
        "--html-file",
        "news.html",
        "--category",
        "marketing",
        "--at",
        "2026-12-24T09:00:00+09:00",
        "--metadata",
        "campaign=2026-12",
        "--metadata",
        "by=crm=42",
    ]

    code, _, _ = run(capsys, *SEND, "--body", "B", "--no-wait", *extra)
    plain, _, _ = run(capsys, *SEND, "--body", "B", "--no-wait")

    assert (code, plain) == (0, 0)
    first, second = service.posts()
    body = json.loads(first.content)
    assert (body["html"], body["category"], body["scheduledAt"]) == (
        "<p>안녕하세요</p>",
        "marketing",
        "2026-12-24T09:00:00+09:00",
    )
    assert body["metadata"] == {"campaign": "2026-12", "by": "crm=42"}
    assert "html" not in json.loads(second.content)
    assert first.headers["Idempotency-Key"] != second.headers["Idempotency-Key"]


def test_metadata_without_a_key_is_a_usage_error(
    service: FakeService, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, *SEND, "--body", "B", "--metadata", "novalue")

    assert code == 2
    assert "--metadata takes KEY=VALUE, not 'novalue'" in err
    assert service.requests == []


# --- pause, resume, cancel: mailctl against the app's own routes, in process ---------------------

THREE = ["a@example.com", "b@example.com", "c@example.com"]


def serve_send(
    service: FakeService,
    app_functions: dict[str, Any],
    durable: FakeDurableClient,
    send_id: str = "send-1",
) -> None:
    """The app's routes of ``send_id`` behind ``service``: each request runs the registered HTTP
    function as the host does (tests/support/http.py), over ``durable`` and the in-memory
    stores every test gets (sends table, ledger, blobs)."""

    def route(name: str) -> Handler:
        def handle(request: httpx.Request) -> httpx.Response:
            answer = call(
                app_functions,
                name,
                request.url.path,
                method=request.method,
                params=dict(request.url.params),
                route_params={"id": send_id},
                client=durable,
            )
            return httpx.Response(
                answer.status_code, content=answer.get_body(), headers=dict(answer.headers)
            )

        return handle

    base = f"/api/v1/emails/{send_id}"
    for action in ("pause", "resume", "cancel"):
        service.routes[f"POST {base}/{action}"] = route(f"email_{action}")
    service.routes[f"GET {base}"] = route("email_status")
    service.routes[f"GET {base}/recipients"] = route("email_recipients")
    service.routes[f"GET {base}/events"] = route("email_events")


def running_send(durable: FakeDurableClient, sent: int = 1, send_id: str = "send-1") -> None:
    """``send_id`` (stored, one lane) running in ``durable``: ``sent`` of its 3 sent so far."""
    durable.statuses[send_id] = [
        status(send_id, SES_ORCHESTRATOR, "Running", custom_status={"total": 3, "lanes": 1})
    ]
    lane = f"{send_id}:lane0"
    progress = {"total": 3, "sent": sent, "failed": 0, "pending": 0, "canceled": 0}
    durable.statuses[lane] = [status(lane, LANE_ORCHESTRATOR, "Running", custom_status=progress)]


class Terminal(io.StringIO):
    """stdin as a person at a terminal: what they will type."""

    def isatty(self) -> bool:
        return True


def control_state(send_id: str = "send-1") -> str:
    stored = services.sends().get(send_id)
    assert stored is not None
    return stored.control


def test_pause_resume_and_cancel_say_what_happened_and_where_the_send_is(
    service: FakeService, capsys: pytest.CaptureFixture[str], app_functions: dict[str, Any]
) -> None:
    store_finished("send-1", THREE, {0: "msg-0"})
    durable = FakeDurableClient()
    running_send(durable)
    serve_send(service, app_functions, durable)

    steps = [
        (("pause",), "send send-1 paused (state: paused)", "paused"),
        (("pause",), "send send-1 already paused (state: paused)", "paused"),
        (("resume",), "send send-1 resumed (state: running)", "running"),
        (("resume",), "send send-1 was not paused (state: running)", "running"),
        (("cancel", "--yes"), "send send-1 canceled (state: canceled)", "canceled"),
        (("cancel", "--yes"), "send send-1 already canceled (state: canceled)", "canceled"),
    ]
    for argv, said, stored in steps:
        code, out, err = run(capsys, *argv, "send-1")
        assert (code, out) == (0, said + "\n"), err
        assert control_state() == stored  # the route itself changed the send's record
        if stored == "paused":
            assert err == "Resume it with: python -m mailctl resume send-1\n"
        else:
            assert err == "Follow it with: python -m mailctl watch send-1\n"
    # one call each reached the route, which woke the send (a repeated pause needs no wake-up)
    lane = "send-1:lane0"
    # (each change's event and the one before it: api/control.py)
    assert [(instance, event) for instance, event, _ in durable.raised] == [
        (lane, "control-1"),
        *[(lane, "control-2"), (lane, "control-1")] * 2,
        *[(lane, "control-3"), (lane, "control-2"), ("send-1", "cancel")] * 2,
    ]

    # what the state does not allow: the service's message, exit 5, nothing changed
    code, out, err = run(capsys, "pause", "send-1")
    assert (code, out) == (5, "")
    assert err == "mailctl: the service answered 409: The send was canceled; it cannot be paused.\n"
    assert control_state() == "canceled"


def test_a_send_the_account_guard_paused_is_not_resumed_by_mailctl(
    service: FakeService, capsys: pytest.CaptureFixture[str], app_functions: dict[str, Any]
) -> None:
    store_finished("send-1", THREE, {0: "msg-0"})
    services.sends().change_control(
        "send-1", lambda r: replace(r, control="paused", paused_by="guard", control_seq=1)
    )
    durable = FakeDurableClient()
    running_send(durable)
    serve_send(service, app_functions, durable)

    code, out, err = run(capsys, "resume", "send-1")
    assert (code, out) == (5, "")
    assert err.startswith("mailctl: the service answered 409: The account guard paused this send")
    assert "POST /api/v1/account/guard/reset" in err
    code, out, _ = run(capsys, "pause", "send-1")  # the caller's pause is held too
    assert (code, out) == (0, "send send-1 paused (state: paused)\n")
    assert control_state() == "paused"
    record = services.sends().get("send-1")
    assert record is not None
    assert record.paused_by == "both"  # the guard's reset will leave the caller's pause


def test_an_unknown_send_is_the_service_s_404_and_exit_5(
    service: FakeService, capsys: pytest.CaptureFixture[str], app_functions: dict[str, Any]
) -> None:
    serve_send(service, app_functions, FakeDurableClient(), "nobody")
    for argv in (("pause",), ("resume",), ("cancel", "--yes")):
        code, out, err = run(capsys, *argv, "nobody")
        assert (code, out) == (5, "")
        assert err == "mailctl: the service answered 404: No send with id 'nobody' exists.\n"
    # an id that is not one goes into the path as one segment, never as more of the path
    code, _, _ = run(capsys, "pause", "../aws-send")
    assert code == 5
    assert service.requests[-1].url.raw_path == b"/api/v1/emails/..%2Faws-send/pause"


def test_cancel_asks_on_a_terminal_and_a_script_must_say_yes(
    service: FakeService,
    capsys: pytest.CaptureFixture[str],
    app_functions: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store_finished("send-1", THREE, {0: "msg-0"})
    durable = FakeDurableClient()
    running_send(durable)
    serve_send(service, app_functions, durable)

    # a script (stdin not a terminal) must say --yes: nothing is asked of the service
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    code, out, err = run(capsys, "cancel", "send-1")
    assert (code, out) == (2, "")
    assert err == (
        "mailctl: cancel asks before it cancels; with stdin not a terminal, say --yes "
        "(nothing was canceled)\n"
    )
    assert service.requests == []

    # a person: shown where the send is, asked; anything but y/yes (or no answer) keeps it going
    question = (
        "send send-1 Running: 1 sent, 0 failed, 0 pending of 3\n"
        "Cancel the send send-1? Recipients not sent yet will never be sent. [y/N] "
    )
    for typed in ("n\n", "\n", "", "cancel\n"):
        monkeypatch.setattr(sys, "stdin", Terminal(typed))
        code, out, err = run(capsys, "cancel", "send-1")
        assert (code, out) == (2, "")
        assert err == question + "mailctl: not canceled; the send goes on\n"
    assert service.posts() == []
    assert control_state() == "running"

    monkeypatch.setattr(sys, "stdin", Terminal("YES\n"))
    code, out, err = run(capsys, "cancel", "send-1")
    assert (code, out) == (0, "send send-1 canceled (state: canceled)\n")
    assert err.startswith(question)
    assert control_state() == "canceled"

    monkeypatch.setattr(sys, "stdin", Terminal(""))  # canceled already: nothing to ask
    code, out, err = run(capsys, "cancel", "send-1")
    assert (code, out) == (0, "send send-1 already canceled (state: canceled)\n")
    assert "Cancel the send" not in err

    # a send that has ended: nothing to ask about; the service says what canceling it does
    durable.statuses["send-1"] = [status("send-1", SES_ORCHESTRATOR, "Completed", output={})]
    services.sends().change_control("send-1", lambda r: replace(r, control="running"))
    monkeypatch.setattr(sys, "stdin", Terminal(""))
    code, out, err = run(capsys, "cancel", "send-1")
    assert (code, out) == (5, "")
    assert err == (
        "mailctl: the service answered 409: The send has already ended; there is nothing to "
        "cancel.\n"
    )


def test_a_control_call_without_an_answer_is_tried_again_and_never_called_already_done(
    service: FakeService, capsys: pytest.CaptureFixture[str]
) -> None:
    """Repeating a pause changes nothing, so mailctl tries again where a read would; but after
    a try that may have reached the service, its "changed: false" may be that try's doing."""
    unchanged = httpx.Response(
        200,
        json={"id": "s1", "state": "paused", "changed": False, "statusUrl": "http://x/s1"},
    )

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def dropped(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset", request=request)

    answered_after: list[Callable[[httpx.Request], httpx.Response]] = []

    def in_order(request: httpx.Request) -> httpx.Response:
        return answered_after.pop(0)(request) if answered_after else unchanged

    service.routes["POST /api/v1/emails/s1/pause"] = in_order
    for first, said in [
        (refused, "already paused"),  # certainly never arrived: the send was paused before
        (dropped, "paused"),  # may have arrived and paused it
        (lambda r: httpx.Response(503, json={"message": "busy"}), "paused"),
    ]:
        service.requests.clear()
        answered_after[:] = [first]
        code, out, err = run(capsys, "pause", "s1")
        assert (code, out) == (0, f"send s1 {said} (state: paused)\n"), err
        assert len(service.posts()) == 2

    # a 409 is the service's answer, not a hiccup: asked once
    service.requests.clear()
    service.routes["POST /api/v1/emails/s1/pause"] = lambda r: httpx.Response(
        409, json={"message": "The send has already ended; there is nothing to pause."}
    )
    code, _, err = run(capsys, "pause", "s1")
    assert (code, len(service.posts())) == (5, 1)

    # Ctrl-C before the answer: the change may have been made; how to see, and that a re-run
    # is safe
    def interrupted(request: httpx.Request) -> httpx.Response:
        raise KeyboardInterrupt

    service.routes["POST /api/v1/emails/s1/pause"] = interrupted
    code, out, err = run(capsys, "pause", "s1")
    assert (code, out) == (130, "")
    assert err == (
        "\nmailctl: interrupted before the service answered: the send may be paused or not. "
        "See with: python -m mailctl status s1\n"
        "(running the same command again is safe: repeating it changes nothing)\n"
    )

    # no answer at all, however often: try again later, and how to see what happened
    service.requests.clear()
    service.routes["POST /api/v1/emails/s1/pause"] = dropped
    code, out, err = run(capsys, "pause", "s1", "--url", "http://127.0.0.1:9")
    assert (code, out) == (6, "")
    assert len(service.posts()) == CONTROL_ATTEMPTS
    assert err.startswith("mailctl: no answer from http://127.0.0.1:9/api/ (ReadError")
    assert err.endswith(
        "The pause may or may not have taken effect. Running the same command again is safe "
        "(repeating it changes nothing); see where the send is with: python -m mailctl status "
        "s1 --url http://127.0.0.1:9\n"
    )


def test_status_and_watch_of_a_paused_send_say_paused_and_watch_goes_on(
    service: FakeService, capsys: pytest.CaptureFixture[str], app_functions: dict[str, Any]
) -> None:
    store_finished("send-1", THREE, {0: "msg-0"})
    durable = FakeDurableClient()
    running_send(durable)
    serve_send(service, app_functions, durable)
    assert run(capsys, "pause", "send-1")[0] == 0

    code, out, _ = run(capsys, "status", "send-1")
    assert (code, out) == (7, "send send-1 paused: 1 sent, 0 failed, 0 pending of 3\n")

    # watched while paused: it goes on watching (paused, said once), and through the resume to
    # the end; the time it was paused is not counted against the rate
    progress = {"total": 300, "sent": 100, "failed": 0, "pending": 0, "canceled": 0}
    paused = {"id": "s1", "state": "paused", "runtimeStatus": "Running", "progress": progress}
    resumed = {**paused, "state": "running", "progress": {**progress, "sent": 200}}
    done = {**finished("s1", 300), "state": "completed"}
    answers = [httpx.Response(202, json=paused, headers={"Retry-After": "5"})] * 60
    answers += [httpx.Response(202, json=resumed, headers={"Retry-After": "5"})]
    answers += [httpx.Response(200, json=done)]
    service.routes["GET /api/v1/emails/s1"] = in_turn(*answers)
    code, out, err = run(capsys, "watch", "s1", "--progress", "lines")
    assert (code, out) == (0, "send s1 Completed: 300 sent, 0 failed of 300\n"), err
    lines = err.splitlines()
    assert " s1 paused: 100/300 done" in lines[0]
    assert lines[0].endswith("—/s, ETA —")  # nothing moves while paused: no ETA
    assert lines[1] == (
        "The send s1 is paused: nothing new is sent until it is resumed; watching goes on. "
        "Resume it with: python -m mailctl resume s1"
    )
    assert err.count("is paused") == 1
    assert " s1 Running: 200/300 done" in lines[-2]
    assert lines[-2].endswith("20.0/s, ETA 0:00:05")  # 100 in the 5 s since the resume
    assert service.now == 61 * 5


def test_a_canceled_send_ends_canceled_with_its_own_exit_code_and_report_rows(
    service: FakeService,
    capsys: pytest.CaptureFixture[str],
    app_functions: dict[str, Any],
    tmp_path: Path,
) -> None:
    """The send of three is canceled after one was sent: the lanes record the other two
    CANCELED and the send completes. ``watch`` (``send`` and ``status`` too) says canceled and
    exits 8: not a failure to look into (4), not recipients to send again (3)."""
    store_finished("send-1", THREE, {0: "msg-0"})
    durable = FakeDurableClient()
    running_send(durable)
    serve_send(service, app_functions, durable)
    assert run(capsys, "cancel", "send-1", "--yes")[0] == 0
    code, out, _ = run(capsys, "status", "send-1")  # the counts are not final yet
    assert (code, out) == (7, "send send-1 canceled: 1 sent, 0 failed, 0 pending of 3\n")

    canceled = ("CANCELED", "not sent: the send was canceled")
    record_outcomes("send-1", {1: canceled, 2: canceled})
    output = {"kind": "ses", "total": 3, "sent": 1, "failed": 0, "canceled": 2}
    durable.statuses["send-1"] = [status("send-1", SES_ORCHESTRATOR, "Completed", output=output)]

    code, out, err = run(capsys, "watch", "send-1", "--report", "r.csv", "--progress", "lines")
    assert code == ExitCode.CANCELED
    assert int(ExitCode.CANCELED) == 8  # the README's table
    summary = out.splitlines()
    assert summary[0] == "send send-1 canceled: 1 sent, 0 failed, 2 canceled of 3"
    assert not [line for line in summary if "failures" in line]  # canceled failed nobody
    assert " send-1 canceled: 3/3 done — sent 1, failed 0, pending 0, canceled 2" in err
    rows = read_rows(tmp_path / "r.csv")
    assert [(r["email"], r["result"], r["code"]) for r in rows] == [
        ("a@example.com", "sent", ""),
        ("b@example.com", "canceled", "CANCELED"),
        ("c@example.com", "canceled", "CANCELED"),
    ]
    code, out, _ = run(capsys, "status", "send-1")
    assert (code, out.splitlines()[0]) == (8, summary[0])

    # an older service's inline failures hold the canceled recipients too (code CANCELED)
    inline = {
        "id": "s1",
        "state": "canceled",
        "runtimeStatus": "Completed",
        "progress": {"total": 2, "sent": 1, "failed": 0, "pending": 0, "canceled": 1},
        "messageIds": ["m0"],
        "failures": [{"recipient": "b@example.com", "code": canceled[0], "message": canceled[1]}],
    }
    assert [r["result"] for r in build_report(inline, ["a@example.com", "b@example.com"]).rows] == [
        "sent",
        "canceled",
    ]
    assert cli._summary(inline) == "send s1 canceled: 1 sent, 0 failed, 1 canceled of 2"


def test_the_rate_leaves_out_the_time_the_send_was_paused_or_waiting_for_its_time() -> None:
    rate = Rate()
    rate.observe(0.0, 0, held=True)  # scheduled: waiting for its time
    rate.observe(3600.0, 0, held=True)
    rate.observe(3610.0, 100)  # started some time in the last 10 s: they count
    assert rate.per_second == 10.0
    rate.observe(3620.0, 200)
    rate.observe(3630.0, 300, held=True)  # paused: the last batch landed, then nothing
    assert rate.per_second == 10.0
    assert rate.eta(Counts(1000, 300, 0, 0)) is None  # no ETA while paused
    rate.observe(10_000.0, 300, held=True)
    rate.observe(10_010.0, 400)  # resumed, after 6,370 s paused
    assert rate.per_second == 10.0
    assert rate.eta(Counts(1000, 400, 0, 0)) == 60.0
    # canceled recipients are done (the bar, the ETA), never sent (the rate)
    counts = Counts(total=1000, sent=300, failed=0, pending=0, canceled=700)
    assert (counts.done, counts.attempted) == (1000, 300)
    assert rate.eta(counts) == 0.0


def test_the_progress_line_shows_canceled_recipients_once_there_are_any() -> None:
    console = Console(width=100, file=io.StringIO(), color_system=None)
    rate = Rate()
    counts = Counts(total=20_000, sent=6_500, failed=167, pending=0, canceled=13_333)
    with BarDisplay(console, "4f1c9a2b7d3e44aa") as display:
        display.update(counts, rate, "canceled")
    (text,) = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert "canceled" in text
    assert "6,500 sent · 167 failed · 0 pending · 13,333 canceled of 20,000" in text
    assert "100%" in text
