"""mailctl's pure parts: reading lists, the Idempotency-Key, reports, rate and ETA, settings.

The client against the real service (a devhost) is in tests/devhost/test_mailctl_e2e.py.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import httpx
import pytest

from mailctl.client import _service_error, idempotency_key
from mailctl.config import DEFAULT_URL, resolve
from mailctl.recipients import BadRows, parse_recipients, read_recipients
from mailctl.report import COLUMNS, build_report, write_report
from mailctl.watching import Counts, Rate, format_duration, format_rate

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
    assert parse_recipients(data, column="2").addresses == ["w1@example.com"]
    with pytest.raises(BadRows) as refused:
        parse_recipients(data, column="mobile")
    assert "no column named 'mobile'" in str(refused.value.problems[0])


def test_an_empty_list_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("email\n\n", encoding="utf-8")
    with pytest.raises(BadRows, match="1 bad row"):
        read_recipients(empty)


# --- the Idempotency-Key ------------------------------------------------------------------------


def test_the_idempotency_key_is_the_request_substance_and_nothing_else() -> None:
    base = ("aws-send", "se@aifactory.page", ["a@example.com", "b@example.com"], "S", "B")
    key = idempotency_key(*base)
    assert re.fullmatch(r"mailctl-v1-[0-9a-f]{64}", key)  # printable ASCII, < 255 characters
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
        events = client.events("s1")
        assert [e["type"] for e in events or []] == ["Send", "Delivery"]
        assert asked == [{"limit": "1000"}, {"limit": "1000", "cursor": "c2"}]
        assert client.events("older-service") is None


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
