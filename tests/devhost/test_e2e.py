"""devhost as a subprocess, driven only over HTTP on loopback."""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.devhost.conftest import TOYAPP_DIR, DevhostProcess

pytestmark = pytest.mark.e2e

WEBHOOK = "/runtime/webhooks/durabletask"


@pytest.fixture
def toy(devhost_factory) -> DevhostProcess:
    host: DevhostProcess = devhost_factory(TOYAPP_DIR)
    return host


def test_http_trigger_routing(toy):
    hello = toy.request("GET", "/api/hello/world", auth=False, params={"punct": "!"})
    assert (hello.status_code, hello.text) == (200, "hello world!")
    assert hello.headers["Content-Type"].startswith("text/plain")

    echo = toy.request(
        "POST", "/api/echo/42/more?a=1&b=two", data="payload", headers={"x-toy": "yes"}
    )
    assert echo.status_code == 201
    assert echo.headers["X-Echo"] == "1"
    assert echo.headers["Content-Type"].startswith("application/json")
    body = echo.json()
    assert body["method"] == "POST"
    assert body["route"] == {"id": "42", "rest": "more"}
    assert body["params"] == {"a": "1", "b": "two"}
    assert body["header"] == "yes"
    assert body["body"] == "payload"
    assert urlsplit(body["url"]).path == "/api/echo/42/more"

    assert toy.request("GET", "/api/echo/7").json()["route"] == {"id": "7"}  # optional segment
    assert toy.request("GET", "/api/echo/not-a-number").status_code == 404  # {id:int}
    assert toy.request("DELETE", "/api/echo/7").status_code == 404  # method not allowed
    assert toy.request("GET", "/api/no/such/route").status_code == 404


def test_a_line_feed_in_the_path_is_routed_like_any_other_character(toy):
    # Found by fuzzing: aiohttp's own router stopped at a decoded "\n" and answered a plain-text
    # 404 itself, so neither the function nor the JSON envelope was ever reached.
    hello = toy.request("GET", "/api/hello/a%0Ab", auth=False)
    assert (hello.status_code, hello.text) == (200, "hello a\nb")
    for path in ["/api/no/such%0Aroute", "/api/hello/a%0Ab/extra"]:
        missing = toy.request("GET", path, auth=False)
        assert missing.status_code == 404
        assert missing.headers["Content-Type"].startswith("application/json")
        assert missing.json()["status"] == 404


def test_function_key_is_required_unless_anonymous(toy):
    missing = toy.request("POST", "/api/echo/1", auth=False)
    assert missing.status_code == 401
    assert missing.json()["status"] == 401
    assert (
        toy.request("POST", "/api/echo/1", headers={"x-functions-key": "wrong"}).status_code == 401
    )
    assert (
        toy.request("POST", "/api/echo/1", auth=False, params={"code": toy.key}).status_code == 201
    )
    assert toy.request("GET", f"{WEBHOOK}/instances", auth=False).status_code == 401
    assert toy.request("GET", "/_dev/outbox", auth=False).status_code == 401
    assert toy.request("GET", "/api/hello/x", auth=False).status_code == 200


def test_durable_client_start_and_check_status_response(toy):
    started = toy.request("POST", "/api/orchestrators/sequence", json=3)
    assert started.status_code == 202
    links = started.json()
    assert started.headers["Location"] == links["statusQueryGetUri"]
    status_url = urlsplit(links["statusQueryGetUri"])
    assert status_url.netloc == urlsplit(toy.base_url).netloc
    assert f"code={toy.key}" in status_url.query
    deadline = time.monotonic() + 30
    while True:
        status = toy.request("GET", f"{status_url.path}?{status_url.query}", auth=False)
        if status.status_code == 200 or time.monotonic() > deadline:
            break
        assert status.status_code == 202
        time.sleep(0.1)
    assert status.status_code == 200
    assert status.json()["output"] == [6, 12, 24]

    waited = toy.request("POST", "/api/run/fan_out", json=5)
    assert (waited.status_code, waited.json()) == (200, [0, 1, 2, 3, 4])


def test_durable_client_operations(toy):
    toy.request("POST", "/api/orchestrators/approval", params={"instance": "c-approve"}, json=30)
    toy.request("POST", "/api/orchestrators/approval", params={"instance": "c-stop"}, json=30)
    assert (
        toy.request("POST", "/api/client/c-approve/approve", json={"ok": True}).status_code == 202
    )
    assert toy.request("POST", "/api/client/c-stop/terminate").status_code == 202
    assert toy.wait_for("c-approve")["output"] == {"approved": {"ok": True}}
    assert toy.wait_for("c-stop")["runtimeStatus"] == "Terminated"

    status = toy.request("GET", "/api/client/c-approve").json()
    assert status["runtimeStatus"] == "Completed"
    assert status["input"] == 30
    listed = toy.request("GET", "/api/instances", params={"status": "Completed,Terminated"}).json()
    assert {"c-approve", "c-stop"} <= set(listed)
    assert toy.request("DELETE", "/api/client/c-stop").json() == {"deleted": 1}
    assert toy.request("GET", "/api/client/c-stop").status_code == 404


def test_durable_http_api(toy):
    started = toy.request("POST", f"{WEBHOOK}/orchestrators/sequence/api-seq", json=2)
    assert started.status_code == 202
    assert started.json()["id"] == "api-seq"
    done = toy.wait_for("api-seq")
    assert done["runtimeStatus"] == "Completed"
    assert done["output"] == [4, 8, 16]
    assert done["input"] == 2
    assert set(done) >= {"name", "instanceId", "createdTime", "lastUpdatedTime", "customStatus"}

    detailed = toy.status("api-seq", showHistory="true", showHistoryOutput="true").json()
    kinds = [e["EventType"] for e in detailed["historyEvents"]]
    assert kinds == [
        "ExecutionStarted",
        "TaskCompleted",
        "TaskCompleted",
        "TaskCompleted",
        "ExecutionCompleted",
    ]
    assert detailed["historyEvents"][1]["Result"] == 4
    assert toy.status("api-seq", showInput="false").json()["input"] is None

    assert toy.status("nobody").status_code == 404
    unknown = toy.request("POST", f"{WEBHOOK}/orchestrators/no_such_orchestrator")
    assert unknown.status_code == 400

    toy.request("POST", f"{WEBHOOK}/orchestrators/failing/api-fail", json="because")
    assert toy.wait_for("api-fail")["runtimeStatus"] == "Failed"
    failed = toy.status("api-fail")
    assert failed.status_code == 400
    assert "boom: because" in failed.json()["output"]
    assert toy.status("api-fail", returnInternalServerErrorOnFailure="true").status_code == 500

    toy.request("POST", f"{WEBHOOK}/orchestrators/approval/api-wait", json=30)
    running = toy.status("api-wait")
    assert running.status_code == 202
    assert running.json()["runtimeStatus"] in ("Pending", "Running")
    raised = toy.request("POST", f"{WEBHOOK}/instances/api-wait/raiseEvent/approve", json="yes")
    assert raised.status_code == 202
    assert toy.wait_for("api-wait")["output"] == {"approved": "yes"}
    assert (
        toy.request("POST", f"{WEBHOOK}/instances/api-wait/raiseEvent/approve", json=1).status_code
        == 410
    )
    assert (
        toy.request("POST", f"{WEBHOOK}/instances/nobody/raiseEvent/approve", json=1).status_code
        == 404
    )

    toy.request("POST", f"{WEBHOOK}/orchestrators/approval/api-term", json=30)
    assert (
        toy.request(
            "POST", f"{WEBHOOK}/instances/api-term/terminate", params={"reason": "stop"}
        ).status_code
        == 202
    )
    terminated = toy.wait_for("api-term")
    assert (terminated["runtimeStatus"], terminated["output"]) == ("Terminated", "stop")
    assert toy.status("api-term").status_code == 400
    assert toy.request("POST", f"{WEBHOOK}/instances/api-term/terminate").status_code == 410

    completed = toy.request(
        "GET", f"{WEBHOOK}/instances", params={"runtimeStatus": "Completed"}
    ).json()
    assert {"api-seq", "api-wait"} <= {i["instanceId"] for i in completed}
    assert all(i["runtimeStatus"] == "Completed" for i in completed)

    pages: list[str] = []
    token = None
    for _ in range(10):
        headers: dict[str, str] = {"x-ms-continuation-token": token} if token else {}
        page = toy.request("GET", f"{WEBHOOK}/instances", params={"top": 2}, headers=headers)
        assert len(page.json()) <= 2
        pages += [i["instanceId"] for i in page.json()]
        token = page.headers.get("x-ms-continuation-token")
        if not token:
            break
    assert sorted(pages) == sorted({"api-seq", "api-fail", "api-wait", "api-term"})
    future = toy.request(
        "GET", f"{WEBHOOK}/instances", params={"createdTimeFrom": "2999-01-01T00:00:00Z"}
    )
    assert future.json() == []

    assert toy.request("DELETE", f"{WEBHOOK}/instances/api-seq").json() == {"instancesDeleted": 1}
    assert toy.request("DELETE", f"{WEBHOOK}/instances/api-seq").status_code == 404
    purged = toy.request(
        "DELETE", f"{WEBHOOK}/instances", params={"runtimeStatus": "Failed,Terminated"}
    )
    assert purged.json() == {"instancesDeleted": 2}


def _executions(log: Path) -> tuple[collections.Counter[str], collections.Counter[str]]:
    starts: collections.Counter[str] = collections.Counter()
    ends: collections.Counter[str] = collections.Counter()
    if log.exists():
        for line in log.read_text().splitlines():
            kind, _, key = line.partition(" ")
            (starts if kind == "start" else ends)[key] += 1
    return starts, ends


def test_kill_9_mid_orchestration_resumes_at_least_once(devhost_factory, tmp_path):
    log = tmp_path / "activities.log"
    host = devhost_factory(TOYAPP_DIR, env={"TOYAPP_ACTIVITY_LOG": str(log)})
    host.request("POST", f"{WEBHOOK}/orchestrators/sequence/before-crash", json=1)
    assert host.wait_for("before-crash")["runtimeStatus"] == "Completed"

    parallel, serial = 24, 6
    job = {"run": "crash", "parallel": parallel, "serial": serial, "delay": 0.3}
    assert host.request("POST", f"{WEBHOOK}/orchestrators/batch/crash", json=job).status_code == 202
    deadline = time.monotonic() + 30
    while sum(_executions(log)[1].values()) < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    host.kill()
    starts_before, ends_before = _executions(log)
    assert 0 < sum(ends_before.values()) < parallel + serial, "kill -9 must land mid-orchestration"

    host.start()
    done = host.wait_for("crash", timeout=120)
    assert done["runtimeStatus"] == "Completed"
    keys = [f"crash/{n}" for n in range(parallel + serial)]
    assert done["output"] == {"count": parallel + serial, "keys": keys}

    starts, ends = _executions(log)
    twice = sorted(k for k, n in starts.items() if n > 1)
    lost = [k for k in keys if ends[k] == 0]
    in_flight_at_kill = sorted(k for k in starts_before if ends_before[k] == 0)
    print(  # the figures for the report (pytest -s)
        f"\nkill -9: {sum(ends_before.values())} activities finished before the kill, "
        f"{len(in_flight_at_kill)} in flight; executed twice: {len(twice)} {twice}; "
        f"lost: {len(lost)}"
    )
    assert lost == []
    assert set(starts) == set(keys)
    # only work that had not been recorded as finished ran again: at most the in-flight ones
    assert set(twice) <= set(in_flight_at_kill) | {k for k in starts_before if ends_before[k] > 0}
    assert len(twice) <= 4  # maxConcurrentActivityFunctions of the toy app
    # completed instances survive the crash
    assert host.status("before-crash").json()["output"] == [2, 4, 8]
    assert "resumed:" in host.log()


def test_restart_keeps_key_and_timers(devhost_factory):
    host = devhost_factory(TOYAPP_DIR)
    host.request("POST", f"{WEBHOOK}/orchestrators/timer/timer-restart", json=1.5)
    host.restart(kill=False)
    done = host.wait_for("timer-restart", timeout=60)
    assert done["runtimeStatus"] == "Completed"
    assert done["output"] >= 1.5


def test_logs_one_line_per_request_without_secrets(toy):
    toy.request("POST", "/api/echo/5", params={"code": toy.key}, data="secret-body-text")
    job = {"key": "log-test", "fail_times": 0, "attempts": 1, "password": "hunter2"}
    assert toy.request("POST", "/api/run/with_retry", json=job).status_code == 200
    text = toy.log()
    # the function's route template and name, never the path (route values can be personal)
    assert "POST /api/echo/{id:int}/{rest?} (echo) 201" in text
    assert "/api/echo/5" not in text
    assert toy.key not in text.split("function key:")[-1].split("\n", 1)[1]
    assert "secret-body-text" not in text
    assert "hunter2" not in text
    assert "(with_retry): Completed" in text


def test_embedded_emulators_and_outbox(devhost_factory):
    host = devhost_factory(TOYAPP_DIR, emulators=True, env={"SENDMAIL_SEALING_KEY": ""})
    banner = host.log()
    assert "SES emulator at http://127.0.0.1:" in banner
    assert "SMTP sink at 127.0.0.1:" in banner
    outbox = host.request("GET", "/_dev/outbox")
    assert (outbox.status_code, outbox.json()) == (200, {"messages": []})
    assert (host.state_dir / "sealing-key").stat().st_mode & 0o077 == 0


def test_a_blocked_event_loop_delays_sync_functions_too(toy):
    """The Python worker handles every invocation on its event loop and hands sync functions to
    its thread pool from there (azure_functions_worker/dispatcher.py,
    Dispatcher._handle__invocation_request: ``await self._loop.run_in_executor(...)``), so an
    async function that blocks the loop delays a sync HTTP function as well. devhost did
    answer the sync one meanwhile, which hid such a block locally."""
    finished: dict[str, float] = {}

    def call(name: str, method: str, path: str) -> None:
        response = toy.request(method, path, auth=False, timeout=30)
        assert response.status_code == 200, response.text
        finished[name] = time.monotonic()

    blocker = threading.Thread(target=call, args=("block", "POST", "/api/block/1.5"))
    blocker.start()
    time.sleep(0.3)  # the loop is blocked by now
    call("hello", "GET", "/api/hello/world")
    blocker.join()
    # hello was answered only once the loop was free again: after the blocker's own answer
    # was on its way (ordering, not a duration)
    assert finished["hello"] >= finished["block"] - 0.05
