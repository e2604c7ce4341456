"""The durable engine in process (SQLite store, thread pools), without HTTP."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devhost.durable.engine import Engine, EngineOptions, InstanceConflict, UnknownOrchestrator
from devhost.durable.history import TERMINAL_STATUSES, EventType
from devhost.durable.replay import EpisodeInput, build_context, call_orchestrator
from devhost.durable.shim import replay
from devhost.durable.store import Store
from devhost.invoker import Worker


@pytest.fixture
def engine(tmp_path, toy_index) -> Iterator[Engine]:
    worker = Worker(sync_threads=4)
    engine = Engine(
        Store(tmp_path / "durable.sqlite3"),
        toy_index,
        worker,
        EngineOptions(max_concurrent_activities=4, poll_interval=0.05),
    )
    engine.start()
    yield engine
    engine.stop()
    worker.stop()


def run(
    engine: Engine, name: str, payload: Any, instance_id: str | None = None, timeout: float = 30
) -> Any:
    instance_id = engine.start_orchestration(name, instance_id, json.dumps(payload))
    return wait(engine, instance_id, timeout)


def wait(engine: Engine, instance_id: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = engine.store.get_instance(instance_id)
        if row is not None and row.status in TERMINAL_STATUSES:
            return row
        time.sleep(0.02)
    raise TimeoutError(f"{instance_id} did not finish: {engine.store.get_instance(instance_id)}")


def replay_completed(engine: Engine, instance_id: str) -> None:
    """Replaying a finished instance's recorded history yields the same actions and output."""
    row = engine.store.get_instance(instance_id)
    assert row is not None
    history = engine.store.get_history(instance_id)
    episode = EpisodeInput(
        instance_id=instance_id,
        name=row.name,
        input=row.input,
        parent_instance_id=row.parent_instance_id,
        history=history,
        new_events=[],
        now=None,  # type: ignore[arg-type]
    )
    context = build_context(episode, [])
    for event in context["history"]:
        assert event["IsPlayed"] is True
    outcome = call_orchestrator(engine.index.orchestrators[row.name], context)
    # The host's shim, replayed over the recorded history, matches every scheduling event
    # (it raises NonDeterminism otherwise) and finds nothing new to schedule.
    host = replay(history, outcome.top_actions, lambda task_id: f"{row.execution_id}:{task_id}")
    assert host.new == []
    if row.status == "Completed":
        assert outcome.is_done
        assert json.dumps(outcome.output) == json.dumps(json.loads(row.output or "null"))
    else:
        assert outcome.error is not None


def test_activities_run_and_the_result_is_recorded(engine):
    row = run(engine, "fan_out", 8)
    assert row.status == "Completed"
    assert json.loads(row.output) == list(range(8))
    replay_completed(engine, row.instance_id)


def test_interleaved_retries_complete(engine):
    row = run(engine, "parallel_retries", "engine-pr")
    assert json.loads(row.output) == ["ok after 3", 42, "ok after 2", "DONE"]
    replay_completed(engine, row.instance_id)
    history = engine.store.get_history(row.instance_id)
    timers = [e for e in history if e["EventType"] == EventType.TIMER_CREATED]
    assert len(timers) == 3  # one per failed attempt


def test_exhausted_retries_reach_the_orchestrator_as_an_exception(engine):
    row = run(engine, "with_retry", {"key": "engine-ex", "fail_times": 5, "attempts": 3})
    error = json.loads(row.output)["error"]
    assert "Activity function 'flaky' failed: RuntimeError: flaky failure 3 for engine-ex" in error
    replay_completed(engine, row.instance_id)


def test_sub_orchestrations_with_and_without_retry_and_failure(engine):
    row = run(engine, "parent", {}, instance_id="engine-parent")
    output = json.loads(row.output)
    assert output["first"] == [6, 12, 24]
    assert output["second"] == {"answer": "OK AFTER 2"}
    assert "Orchestrator function 'failing' failed" in output["failure"]
    assert "boom: from parent" in output["failure"]
    # DTFx names a sub-orchestration started without an id "{parent execution id}:{sequence id}"
    child = engine.store.get_instance(f"{row.execution_id}:0")
    assert child is not None
    assert child.status == "Completed"
    assert child.parent_instance_id == "engine-parent"
    replay_completed(engine, row.instance_id)


def test_failed_orchestration_is_failed_with_the_activity_error(engine):
    row = run(engine, "failing", "because")
    assert row.status == "Failed"
    assert "ValueError: boom: because" in json.loads(row.output)
    replay_completed(engine, row.instance_id)


def test_timer_really_waits_until_fire_at(engine):
    started = time.monotonic()
    row = run(engine, "timer", 0.5)
    assert time.monotonic() - started >= 0.5
    assert json.loads(row.output) >= 0.5  # orchestration time moved past fireAt
    replay_completed(engine, row.instance_id)


def test_continue_as_new_restarts_with_fresh_history(engine):
    row = run(engine, "counter", 0)
    assert json.loads(row.output) == {"value": 3, "doubled": 6}
    history = engine.store.get_history(row.instance_id)
    started = [e for e in history if e["EventType"] == EventType.EXECUTION_STARTED]
    assert len(started) == 1
    assert started[0]["Input"] == "3"
    replay_completed(engine, row.instance_id)


def test_external_event_and_terminate(engine):
    approved = engine.start_orchestration("approval", "engine-approve", "30")
    assert engine.raise_event(approved, "approve", json.dumps({"by": "test"})) == "accepted"
    row = wait(engine, approved)
    assert json.loads(row.output) == {"approved": {"by": "test"}}
    assert engine.raise_event(approved, "approve", None) == "gone"

    stopped = engine.start_orchestration("approval", "engine-stop", "30")
    assert engine.terminate(stopped, "enough") == "accepted"
    row = wait(engine, stopped)
    assert (row.status, json.loads(row.output)) == ("Terminated", "enough")
    assert engine.terminate(stopped, "again") == "gone"
    assert engine.terminate("nobody", "x") == "not_found"


def test_start_rejects_unknown_names_and_running_duplicates(engine):
    with pytest.raises(UnknownOrchestrator):
        engine.start_orchestration("nope", None, None)
    engine.start_orchestration("approval", "engine-dup", "30")
    with pytest.raises(InstanceConflict):
        engine.start_orchestration("approval", "engine-dup", "30")
    engine.terminate("engine-dup", "done")
    wait(engine, "engine-dup")
    # a finished instance id can be reused
    assert engine.start_orchestration("sequence", "engine-dup", "1") == "engine-dup"
    assert json.loads(wait(engine, "engine-dup").output) == [2, 4, 8]


def test_values_that_would_spill_to_blobs_on_azure_are_warned_once(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """DTFx's Azure Storage provider moves a history property over 60 KB of UTF-16
    (AzureTableTrackingStore.MaxTablePropertySizeInBytes) and a queue message over 45 KB
    (MessageManager.MaxStorageQueuePayloadSizeInBytes) to blobs; devhost keeps them in SQLite,
    so it says so — once per instance and kind — for a regression to show locally."""
    small = run(engine, "shout_through", "x" * 1000)
    assert small.status == "Completed"
    assert engine.store.spill.spills == {"history": 0, "message": 0}

    text = "가" * 31_000  # 62,000 bytes in UTF-16, 93,000 in UTF-8: both limits passed
    with caplog.at_level(logging.WARNING, logger="devhost.durable"):
        big = run(engine, "shout_through", text)
    assert big.status == "Completed"
    warnings = [r.getMessage() for r in caplog.records if "would spill" in r.getMessage()]
    assert len(warnings) == 2  # once for the history, once for the messages
    assert any(
        w.endswith("costs a blob read per value (devhost/durable/spill.py)") for w in warnings
    )
    assert any("ExecutionStarted.Input is" in w for w in warnings)  # the history row
    assert any("the ExecutionStarted.Input message" in w for w in warnings)  # the start message
    spills = engine.store.spill.spills
    # the history: the input, the activity's scheduled input, its result, the output
    assert spills["history"] >= 4
    # the messages: the start, the activity's input, its result going back
    assert spills["message"] >= 3


def test_stopping_the_worker_releases_a_thread_waiting_for_an_answer() -> None:
    """A stopped loop answers nothing: whoever waits for an invocation is told, instead of
    waiting for ever (devhost would not exit)."""
    import threading

    from devhost.invoker import WorkerStopped

    worker = Worker(sync_threads=1)
    started, outcome = threading.Event(), []

    def stuck() -> None:
        started.set()
        time.sleep(3)

    def wait_for_it() -> None:
        try:
            worker.run(stuck)
        except WorkerStopped:
            outcome.append("stopped")

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    assert started.wait(5)
    worker.stop()
    waiter.join(2)
    assert outcome == ["stopped"]
