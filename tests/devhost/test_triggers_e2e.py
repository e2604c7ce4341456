"""Queue and timer triggers under ``python -m devhost``, driven over HTTP and through storage.

What the host does is pinned in process by test_queue_trigger.py and test_timer_trigger.py
(their docstrings cite the extensions' sources); here the same behaviour comes through the
command line: the toy app's ``host.json`` (``extensions.queues``: ``maxDequeueCount`` 3, 500 ms
polling) is honoured, the schedule monitor's status lives in the state dir, ``GET
/_dev/triggers`` shows what ran, and the Functions host's admin API
(``POST /admin/functions/<name>`` with ``{"input": ...}``, 202 — Azure/azure-functions-host,
``FunctionsController.Invoke``) runs a queue or timer function once.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from tests.devhost.conftest import TOYAPP_DIR, DevhostProcess

pytestmark = pytest.mark.e2e


def runs(log: Path, function: str) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    lines = log.read_text(encoding="utf-8").splitlines()
    return [run for run in map(json.loads, lines) if run["function"] == function]


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def trigger(host: DevhostProcess, function: str) -> dict[str, Any]:
    listed = host.request("GET", "/_dev/triggers")
    assert listed.status_code == 200
    found: dict[str, Any] = next(t for t in listed.json()["triggers"] if t["function"] == function)
    return found


def test_queue_messages_are_run_deleted_or_poisoned_under_devhost(
    devhost_factory, azurite_all, tmp_path
):
    queue = f"toy-{uuid.uuid4().hex[:12]}"
    log = tmp_path / "runs.jsonl"
    host = devhost_factory(
        TOYAPP_DIR,
        env={
            "AzureWebJobsStorage": azurite_all.connection_string,
            "TOYAPP_QUEUE": queue,
            "TOYAPP_TRIGGER_LOG": str(log),
        },
    )
    sender = QueueClient.from_connection_string(
        azurite_all.connection_string, queue, message_encode_policy=TextBase64EncodePolicy()
    )
    sender.create_queue()  # the host waits for a missing queue; it does not create it
    good = sender.send_message(json.dumps({"n": 1}))
    bad = sender.send_message(json.dumps({"fail": "always"}))

    wait_for(lambda: trigger(host, "toy_job")["counts"].get("poisoned") == 1)
    wait_for(lambda: trigger(host, "toy_job")["counts"].get("deleted") == 1)
    attempts = [(run["id"], run["dequeueCount"]) for run in runs(log, "toy_job")]
    assert attempts.count((good.id, 1)) == 1
    assert [n for message_id, n in attempts if message_id == bad.id] == [1, 2, 3]  # host.json

    poison = QueueClient.from_connection_string(azurite_all.connection_string, f"{queue}-poison")
    (moved,) = poison.peek_messages()
    assert json.loads(base64.b64decode(moved.content)) == {"fail": "always"}  # as it was
    assert sender.get_queue_properties().approximate_message_count == 0

    shown = trigger(host, "toy_job")
    assert shown["queue"] == queue
    assert shown["poisonQueue"] == f"{queue}-poison"
    assert shown["settings"]["maxDequeueCount"] == 3
    assert shown["settings"]["maxPollingIntervalSeconds"] == 0.5
    assert shown["counts"] == {"deleted": 1, "released": 2, "poisoned": 1}
    assert {run["outcome"] for run in shown["lastRuns"]} == {"deleted", "released", "poisoned"}
    assert set(shown["lastRuns"][0]) == {
        "at",
        "messageId",
        "dequeueCount",
        "outcome",
        "invoked",
        "ms",
    }


def test_a_timer_runs_on_startup_and_then_every_second(devhost_factory, tmp_path):
    log = tmp_path / "runs.jsonl"
    host = devhost_factory(
        TOYAPP_DIR,
        env={
            "TOYAPP_TICK_SCHEDULE": "*/1 * * * * *",
            "TOYAPP_TICK_ON_STARTUP": "1",
            "TOYAPP_TRIGGER_LOG": str(log),
        },
    )
    wait_for(lambda: len(runs(log, "tick")) >= 4)
    ticks = runs(log, "tick")
    assert [run["pastDue"] for run in ticks[:4]] == [False] * 4
    # after the startup run, the scheduled ones a second apart (each at its second: the time
    # the function sees varies with the worker's dispatch, the span of two does not add up)
    assert all(later["at"] > earlier["at"] for earlier, later in itertools.pairwise(ticks))
    assert 1.5 < ticks[3]["at"] - ticks[1]["at"] < 2.6
    shown = trigger(host, "tick")
    assert shown["schedule"] == "*/1 * * * * *"
    assert shown["useMonitor"] is False  # more than once a minute: no schedule monitor
    assert shown["lastRuns"][-1]["reason"] == "runOnStartup"
    assert shown["lastRuns"][0]["reason"] == "schedule"


def test_a_missed_occurrence_is_run_past_due_and_the_admin_api_runs_functions_now(
    devhost_factory, azurite_all, tmp_path
):
    """The schedule monitor's status says the daily run at midnight was due and never ran
    (devhost was down): the start runs it at once, past due, and records the run."""
    log = tmp_path / "runs.jsonl"
    state = tmp_path / "state"
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = midnight - timedelta(days=1)
    (state / "timers").mkdir(parents=True)
    (state / "timers" / "tick.status").write_text(
        json.dumps(
            {
                "Last": yesterday.isoformat(),
                "Next": midnight.isoformat(),
                "LastUpdated": yesterday.isoformat(),
            }
        )
    )
    host = devhost_factory(
        TOYAPP_DIR,
        state_dir=state,
        env={
            "TOYAPP_TICK_SCHEDULE": "0 0 0 * * *",
            "TOYAPP_TRIGGER_LOG": str(log),
            "AzureWebJobsStorage": azurite_all.connection_string,
            "TOYAPP_QUEUE": f"toy-{uuid.uuid4().hex[:12]}",
        },
    )
    wait_for(lambda: len(runs(log, "tick")) == 1)
    (catch_up,) = runs(log, "tick")
    assert catch_up["pastDue"] is True
    assert datetime.fromisoformat(catch_up["scheduleStatus"]["Next"]) == midnight
    # the monitor's status is written once the run returned, as the host does: wait for it
    wait_for(
        lambda: (
            datetime.fromisoformat(
                json.loads((state / "timers" / "tick.status").read_text())["Next"]
            )
            == midnight + timedelta(days=1)
        )
    )

    # the admin API: a timer run now (not past due, the stored status), 202 at once
    run_now = host.request("POST", "/admin/functions/tick", json={"input": ""})
    assert run_now.status_code == 202
    wait_for(lambda: len(runs(log, "tick")) == 2)
    manual = runs(log, "tick")[1]
    assert manual["pastDue"] is False
    assert datetime.fromisoformat(manual["scheduleStatus"]["Next"]) == midnight + timedelta(days=1)
    assert trigger(host, "tick")["lastRuns"][0]["reason"] == "manual"

    # a queue function gets the input as a message that is in no queue
    job = host.request("POST", "/admin/functions/toy_job", json={"input": '{"n": 7}'})
    assert job.status_code == 202
    wait_for(lambda: len(runs(log, "toy_job")) == 1)
    (message,) = runs(log, "toy_job")
    assert (message["body"], message["dequeueCount"], message["id"]) == ('{"n": 7}', 0, None)

    assert host.request("POST", "/admin/functions/tick", auth=False, json={}).status_code == 401
    unknown = host.request("POST", "/admin/functions/nothing", json={"input": ""})
    assert (unknown.status_code, unknown.json()["status"]) == (404, 404)
    http = host.request("POST", "/admin/functions/hello", json={"input": ""})
    assert http.status_code == 400
    assert host.request("POST", "/admin/functions/tick", data="[1]").status_code == 400


def test_a_trigger_the_host_would_refuse_is_listed_in_error(devhost_factory):
    host = devhost_factory(TOYAPP_DIR, env={"TOYAPP_TICK_SCHEDULE": "every day"})
    listed = host.request("GET", "/_dev/triggers").json()
    errors = {error["function"]: error["error"] for error in listed["errors"]}
    assert "every day" in errors["tick"]
    assert "AzureWebJobsStorage" in errors["toy_job"]  # no storage configured (no emulators)
    assert listed["triggers"] == []
    assert host.request("GET", "/_dev/triggers", auth=False).status_code == 401
