"""devhost runs orchestrations the way the Azure host does: conformance with the extension's shim.

On Azure the SDK's actions are applied by the Durable extension's
``OutOfProcOrchestrationShim.ProcessAsyncActionsV2``
(Azure/azure-functions-durable-extension, src/WebJobs.Extensions.DurableTask/Listener/
OutOfProcOrchestrationShim.cs):

    foreach (AsyncAction action in actions)
    {
        Task durableTask = this.InvokeAPIFromAction(action, schema);
        try { await durableTask; } catch (Exception) { }
    }

run by DTFx (Azure/durabletask, src/DurableTask.Core/TaskOrchestrationExecutor.cs), which
replays the history in order and matches each scheduling event to the action with the same
sequence number (TaskOrchestrationContext.HandleTaskScheduledEvent); retries are DTFx's
RetryInterceptor (src/DurableTask.Core/RetryInterceptor.cs). The SDK side is
azure/durable_functions/models/Task.py: ``CompoundTask.__init__`` leaves children that an earlier
yield scheduled out of a new ``WhenAny``/``WhenAll`` action, and ``RetryAbleTask`` allocates its
timer and next attempt when it processes the failure / the timer.

The first half pins the model on hand-written action lists; the second runs real orchestrators
through the real SDK under devhost's engine: the sliding window the project used to have
collapses to one batch at a time after its first window, and with retries it loses results
(azure-functions-durable-python issue #603) — while the lanes that replaced it keep every lane
busy and stay correct under the same failures.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import pytest

from activities.names import FAIL_BATCH, FINISH_SEND, RELEASE_QUOTA, SEND_SES_BATCH
from devhost.durable.engine import Engine
from devhost.durable.history import EventType, event, format_timestamp
from devhost.durable.shim import NonDeterminism, call_refusal, replay
from orchestrators import lanes
from orchestrators.names import SES_ORCHESTRATOR
from orchestrators.send import bp as send_orchestrators
from tests.support.engine import Gate, running_engine, wait_finished

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def activity(name: str) -> dict[str, Any]:
    return {"actionType": 0, "functionName": name, "input": json.dumps(name)}


def with_retry(name: str, attempts: int, interval_ms: int = 1000) -> dict[str, Any]:
    return {
        "actionType": 1,
        "functionName": name,
        "input": json.dumps(name),
        "retryOptions": {
            "firstRetryIntervalInMilliseconds": interval_ms,
            "maxNumberOfAttempts": attempts,
        },
    }


def when_all(*children: dict[str, Any]) -> dict[str, Any]:
    return {"actionType": 12, "compoundActions": list(children)}


def when_any(*children: dict[str, Any]) -> dict[str, Any]:
    return {"actionType": 11, "compoundActions": list(children)}


def timer(fire_at: datetime, *, cancelled: bool = False) -> dict[str, Any]:
    return {"actionType": 5, "fireAt": format_timestamp(fire_at), "isCanceled": cancelled}


class History:
    """A history as the host writes it: episodes, scheduling events with the host's ids."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = [event(EventType.ORCHESTRATOR_STARTED, T0)]
        self.events.append(event(EventType.EXECUTION_STARTED, T0, Name="o", Input="null"))
        self.now = T0

    def episode(self, actions: list[dict[str, Any]], *new: dict[str, Any]) -> Any:
        """Close the running episode with what the host schedules for ``actions``."""
        self.events += list(new)
        result = replay(self.events, actions, lambda k: f"exec:{k}")
        for item in result.new:
            if item.kind == "activity":
                self.events.append(
                    event(EventType.TASK_SCHEDULED, self.now, item.event_id, Name=item.name)
                )
            elif item.kind == "timer":
                self.events.append(
                    event(
                        EventType.TIMER_CREATED,
                        self.now,
                        item.event_id,
                        FireAt=format_timestamp(item.fire_at or self.now),
                    )
                )
        self.now += timedelta(seconds=1)
        self.events.append(event(EventType.ORCHESTRATOR_STARTED, self.now))
        return result

    def done(self, task_id: int) -> dict[str, Any]:
        return event(EventType.TASK_COMPLETED, self.now, TaskScheduledId=task_id, Result="1")

    def failed(self, task_id: int) -> dict[str, Any]:
        return event(
            EventType.TASK_FAILED, self.now, TaskScheduledId=task_id, Reason="r", Details=""
        )

    def fired(self, timer_id: int) -> dict[str, Any]:
        return event(
            EventType.TIMER_FIRED, self.now, TimerId=timer_id, FireAt=format_timestamp(self.now)
        )


def new(result: Any) -> list[tuple[int, str, str | None]]:
    return [(s.event_id, s.kind, s.name) for s in result.new]


# --- the model, on hand-written actions --------------------------------------------------------


def test_each_action_is_awaited_before_the_next_is_invoked() -> None:
    history = History()
    first = history.episode([activity("a"), activity("b")])
    assert new(first) == [(0, "activity", "a")]  # b waits behind a
    assert first.blocked_at == 0
    second = history.episode([activity("a"), activity("b")], history.done(0))
    assert new(second) == [(1, "activity", "b")]


def test_a_when_all_schedules_all_its_children_at_once() -> None:
    result = History().episode([when_all(activity("a"), activity("b"), activity("c"))])
    assert new(result) == [(0, "activity", "a"), (1, "activity", "b"), (2, "activity", "c")]


def test_a_failed_task_does_not_stop_the_walk() -> None:
    history = History()
    history.episode([activity("a")])
    result = history.episode([activity("a"), activity("b")], history.failed(0))
    assert new(result) == [(1, "activity", "b")]


def test_a_when_any_that_carries_only_the_new_child_blocks_on_that_child() -> None:
    """The sliding window's shape: WhenAny(a, b) then WhenAny(c) — c's sibling b is not in it."""
    history = History()
    history.episode([when_any(activity("a"), activity("b"))])
    # a finished; the SDK scheduled c and yields a WhenAny holding only c
    after_a = history.episode(
        [when_any(activity("a"), activity("b")), when_any(activity("c"))], history.done(0)
    )
    assert new(after_a) == [(2, "activity", "c")]
    # b finished: the SDK schedules d, but the host is still awaiting c
    actions = [
        when_any(activity("a"), activity("b")),
        when_any(activity("c")),
        when_any(activity("d")),
    ]
    after_b = history.episode(actions, history.done(1))
    assert new(after_b) == []
    assert after_b.blocked_at == 1
    after_c = history.episode(actions, history.done(2))
    assert new(after_c) == [(3, "activity", "d")]


def test_a_retried_activity_takes_a_timer_then_the_next_attempt_and_a_dummy_timer_at_the_end() -> (
    None
):
    """RetryInterceptor: timer, attempt, ...; after the last attempt a timer that fires at once."""
    history = History()
    actions = [with_retry("flaky", attempts=2, interval_ms=5000)]
    history.episode(actions)
    after_failure = history.episode(actions, history.failed(0))
    [retry_timer] = after_failure.new
    assert (retry_timer.event_id, retry_timer.kind) == (1, "timer")
    assert retry_timer.fire_at == history.now - timedelta(seconds=1) + timedelta(seconds=5)
    assert new(history.episode(actions, history.fired(1))) == [(2, "activity", "flaky")]
    last = history.episode(actions, history.failed(2))
    [dummy] = last.new
    assert (dummy.event_id, dummy.kind) == (3, "timer")
    assert dummy.fire_at == history.now - timedelta(seconds=1)  # "Dummy timer for back-compat"
    done = history.episode(actions, history.fired(3))
    assert done.walk_finished
    assert done.open_tasks == 0


def test_a_cancelled_timer_takes_an_id_and_completes_at_once() -> None:
    result = History().episode([timer(T0 + timedelta(hours=1), cancelled=True), activity("a")])
    assert new(result) == [(0, "timer", None), (1, "activity", "a")]
    assert result.open_tasks == 1  # the activity; the cancelled timer is no longer open


def test_an_open_timer_keeps_the_instance_from_completing() -> None:
    """DTFx completes an orchestration only when no task is open (HasOpenTasks)."""
    history = History()
    actions = [when_any(activity("a"), timer(T0 + timedelta(hours=1)))]
    history.episode(actions)
    result = history.episode(actions, history.done(0))
    assert result.walk_finished
    assert result.open_tasks == 1


def test_an_external_event_raised_before_anyone_waits_is_kept_for_the_wait() -> None:
    history = History()
    raised = event(EventType.EVENT_RAISED, T0, Name="go", Input="1")
    result = history.episode(
        [{"actionType": 6, "externalEventName": "go"}, activity("after")], raised
    )
    assert new(result) == [(0, "activity", "after")]


def test_history_that_does_not_match_the_replay_is_non_deterministic() -> None:
    history = History()
    history.episode([activity("a")])
    with pytest.raises(NonDeterminism, match="sequence ID 0"):
        history.episode([activity("other")], history.done(0))


def wait_for(name: str) -> dict[str, Any]:
    return {"actionType": 6, "externalEventName": name}


def sub(name: str, instance_id: str | None = None) -> dict[str, Any]:
    return {"actionType": 2, "functionName": name, "input": "null", "instanceId": instance_id}


def test_a_call_the_extension_refuses_takes_no_id_and_is_never_answered() -> None:
    """``CallDurableTaskFunctionAsync`` is ``async``: its ArgumentException for a function the app
    does not have (``ThrowIfFunctionDoesNotExist``), or for a sub-orchestration id equal to the
    instance's or its parent's (ignoring case) or starting with "@", is a faulted task that
    ``ProcessAsyncActionsV2`` swallows. No sequence number is taken, so the next call gets the
    number the refused one would have had, and nothing ever answers the refused one."""
    refuse = call_refusal(["known"], ["child"], "Me", "Parent")
    actions = [
        activity("missing"),
        sub("child", "me"),
        sub("child", "PARENT"),
        sub("child", "@entity"),
        sub("nochild"),
        activity("Known"),  # names compare ignoring case
    ]
    history = History()
    result = replay(history.events, actions, lambda k: f"exec:{k}", refuse)
    assert [(item.event_id, item.name) for item in result.new] == [(0, "Known")]
    assert result.blocked_at == 5  # the walk went past every refused call to the last one
    assert len(result.refused) == 5
    assert "'missing' doesn't exist" in result.refused[0]
    assert "must be different" in result.refused[1]
    assert "must be different" in result.refused[2]
    assert "must not start with @" in result.refused[3]
    assert "'nochild' doesn't exist or is not an orchestrator" in result.refused[4]


def test_an_external_event_goes_to_the_newest_waiter_and_names_ignore_case() -> None:
    """``DurableOrchestrationContext.WaitForExternalEvent`` keeps waiters on a stack ("to make it
    easier for users to abandon external events ... a Task.WhenAny in a loop") in dictionaries
    with ``StringComparer.OrdinalIgnoreCase``: the event completes the newest wait, so the walk
    blocked on the older one stays blocked."""
    history = History()
    actions = [when_any(wait_for("Go"), timer(T0 + timedelta(hours=1))), wait_for("go")]
    first = history.episode(actions[:1])
    assert first.blocked_at == 0
    raised = event(EventType.EVENT_RAISED, history.now, Name="GO", Input="1")
    fired = history.fired(0)
    blocked = history.episode(actions, fired)  # the timer won the WhenAny; a second wait
    assert blocked.blocked_at == 1
    after = history.episode(actions, raised)  # the newest wait (the second) gets the event
    assert after.walk_finished


# --- real orchestrators through the real SDK under devhost's engine ------------------------------

app = df.DFApp()
app.register_functions(send_orchestrators)
GATE = Gate()
#: How the test batch activity answers, by batch key and attempt: "ok" or "fail".
SCRIPT: dict[str, list[str]] = {}
#: The batches the SES activity sent (their first index), in the order they succeeded.
SENT: list[int] = []


@app.function_name("window_batch")
@app.activity_trigger(input_name="batch")
def window_batch(batch: dict[str, Any]) -> dict[str, Any]:
    key = batch["key"]
    GATE.hold(key)
    plan = SCRIPT.get(key) or ["ok"]
    outcome = plan.pop(0) if len(plan) > 1 else plan[0]
    if outcome == "fail":
        raise RuntimeError(f"batch {key} failed")
    return {"batch": key}


@app.function_name("sliding_window")
@app.orchestration_trigger(context_name="context")
def sliding_window(context: df.DurableOrchestrationContext) -> Any:
    """The fan-out this project shipped before the lanes (orchestrators/fanout.py, removed):
    at most ``window`` batches in flight, refilled after each ``task_any``."""
    spec = context.get_input()
    retry = df.RetryOptions(first_retry_interval_in_milliseconds=50, max_number_of_attempts=2)
    results: list[Any] = [None] * spec["batches"]
    in_flight: dict[Any, int] = {}
    next_batch = 0
    while next_batch < spec["batches"] or in_flight:
        while next_batch < spec["batches"] and len(in_flight) < spec["window"]:
            payload = {"key": f"b{next_batch}"}
            task = (
                context.call_activity_with_retry("window_batch", retry, payload)
                if spec["retry"]
                else context.call_activity("window_batch", payload)
            )
            in_flight[task] = next_batch
            next_batch += 1
        finished = yield context.task_any(list(in_flight))
        index = in_flight.pop(finished)
        results[index] = finished.result if finished.state.name == "SUCCEEDED" else "failed"
    return results


@app.function_name(SEND_SES_BATCH)
@app.activity_trigger(input_name="batch")
def gated_ses_batch(batch: dict[str, Any]) -> dict[str, Any]:
    key = int(batch["ledgerKey"].split(":")[-1])  # the batch's first index: its number here
    GATE.hold(f"b{key}")
    plan = SCRIPT.get(f"b{key}") or ["ok"]
    if (plan.pop(0) if len(plan) > 1 else plan[0]) == "fail":
        raise RuntimeError(f"batch {key} failed")
    SENT.append(key)
    return {"sent": batch["count"], "failed": 0}


@app.function_name(RELEASE_QUOTA)
@app.activity_trigger(input_name="send")
def release_nothing(send: str) -> None:
    return None


@app.function_name(FAIL_BATCH)
@app.activity_trigger(input_name="batch")
def fail_everything(batch: dict[str, Any]) -> dict[str, Any]:
    return {"sent": 0, "failed": batch["count"]}


@app.function_name(FINISH_SEND)
@app.activity_trigger(input_name="send")
def finish_nothing(send: dict[str, Any]) -> None:
    return None


@pytest.fixture
def engine(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setattr(lanes, "ACTIVITY_RETRY_DELAY", timedelta(milliseconds=50))
    GATE.__init__()  # type: ignore[misc]
    SCRIPT.clear()
    SENT.clear()
    with running_engine(app, tmp_path) as running:
        yield running


def start_window(engine: Engine, batches: int, window: int, *, retry: bool) -> str:
    spec = {"batches": batches, "window": window, "retry": retry}
    return engine.start_orchestration("sliding_window", None, json.dumps(spec))


def test_the_old_sliding_window_collapses_to_one_batch_at_a_time_after_its_first_window(
    engine: Engine,
) -> None:
    instance_id = start_window(engine, batches=8, window=4, retry=False)
    assert sorted(GATE.settle(engine)) == ["b0", "b1", "b2", "b3"]

    GATE.release("b0")
    assert GATE.settle(engine)[4:] == ["b4"]
    for key in ("b1", "b2", "b3"):  # three more slots free up ...
        GATE.release(key)
    # ... and nothing starts: the host awaits WhenAny([b4]) before b5, b6, b7 (which the SDK
    # has already yielded, each in a WhenAny of its own).
    assert GATE.settle(engine)[4:] == ["b4"]
    for n in range(4, 8):
        running_now = GATE.settle(engine)[4:]
        assert running_now == [f"b{i}" for i in range(4, n + 1)]  # one at a time
        GATE.release(f"b{n}")

    row = wait_finished(engine, instance_id)
    assert json.loads(row.output or "") == [{"batch": f"b{n}"} for n in range(8)]


def test_the_old_sliding_window_with_retries_attaches_results_to_the_wrong_batch(
    engine: Engine,
) -> None:
    """azure-functions-durable-python #603, step by step (ids: the SDK's / the host's):

    - b1 finishes: the SDK schedules b3 as its task 3; the host, awaiting WhenAny([b2]), does not;
    - b2 fails: the host's RetryInterceptor creates its retry timer as 3, the SDK's as 4;
    - TimerFired(3): the SDK completes *b3* with the timer's empty result; the host starts b2's
      second attempt as 4;
    - b2's attempt 4 completes: the SDK takes it for its timer 4 and schedules b2 again as 5;
      the host's WhenAny([b2]) is done, so it finally starts b3, as 5;
    - b3 completes as 5: the SDK gives b3's result to b2.
    """
    SCRIPT["b2"] = ["fail", "ok"]
    instance_id = start_window(engine, batches=4, window=2, retry=True)
    assert sorted(GATE.settle(engine)) == ["b0", "b1"]
    GATE.release("b0")
    assert GATE.settle(engine)[2:] == ["b2"]
    GATE.release("b1")
    assert GATE.settle(engine)[2:] == ["b2"]  # b3 is not started
    for key in ("b2", "b2", "b3"):  # b2 fails, its second attempt succeeds, then b3 runs
        GATE.release(key)

    row = wait_finished(engine, instance_id)
    assert row.status == "Completed"
    assert json.loads(row.output or "") == [
        {"batch": "b0"},
        {"batch": "b1"},
        {"batch": "b3"},  # b2's slot: b3's result
        None,  # b3's slot: the retry timer
    ]


def test_lanes_keep_every_lane_busy_until_its_batches_run_out(engine: Engine) -> None:
    job = {
        "kind": "ses",
        "listRef": "list",
        "total": 12,
        "batchSize": 1,
        "lanes": 4,
        "maxRate": 100.0,
        "deadlineSeconds": 3600,
    }
    instance_id = engine.start_orchestration(SES_ORCHESTRATOR, None, json.dumps(job))
    # 4 lanes of 3 batches: lane n holds batches 3n, 3n+1, 3n+2
    assert sorted(GATE.settle(engine)) == ["b0", "b3", "b6", "b9"]
    GATE.release("b0")
    assert sorted(GATE.settle(engine)) == ["b0", "b1", "b3", "b6", "b9"]  # lane 0 goes on
    for key in ("b3", "b6", "b9"):
        GATE.release(key)
    started = GATE.settle(engine)
    assert sorted(started) == sorted(["b0", "b1", "b3", "b6", "b9", "b4", "b7", "b10"])
    assert len(started) - 4 == GATE.blocked  # four batches in flight: one per lane
    for key in ("b1", "b4", "b7", "b10", "b2", "b5", "b8", "b11"):
        if key not in GATE.started:
            GATE.settle(engine)
        GATE.release(key)

    row = wait_finished(engine, instance_id)
    outcome = json.loads(row.output or "null")
    assert outcome == {"kind": "ses", "total": 12, "sent": 12, "failed": 0}
    assert sorted(SENT) == list(range(12))


def test_lanes_retry_a_failed_batch_explicitly_and_stay_correct(engine: Engine) -> None:
    """The #603 scenario for lanes: a batch fails once while others finish around it."""
    SCRIPT["b0"] = ["fail", "ok"]
    job = {
        "kind": "ses",
        "listRef": "list",
        "total": 4,
        "batchSize": 1,
        "lanes": 2,
        "maxRate": 10.0,
        "deadlineSeconds": 3600,
    }
    instance_id = engine.start_orchestration(SES_ORCHESTRATOR, None, json.dumps(job))
    assert sorted(GATE.settle(engine)) == ["b0", "b2"]
    GATE.release("b0")  # fails: the lane waits on a timer, then runs b0 again
    GATE.release("b2")
    assert sorted(GATE.settle(engine)) == ["b0", "b0", "b2", "b3"]
    for key in ("b0", "b3"):
        GATE.release(key)
    GATE.settle(engine)
    GATE.release("b1")

    row = wait_finished(engine, instance_id)
    assert json.loads(row.output or "null") == {"kind": "ses", "total": 4, "sent": 4, "failed": 0}
    assert sorted(SENT) == [0, 1, 2, 3]  # b0 once, after its retry


def test_orchestrator_episodes_share_the_workers_thread_pool_with_activities(
    tmp_path: Any,
) -> None:
    """The Python worker runs sync orchestrators and activities on one pool of
    PYTHON_THREADPOOL_THREAD_COUNT threads: with one thread, a running activity holds up
    every orchestration episode — which is why the Bicep gives activities + orchestrators."""
    GATE.__init__()  # type: ignore[misc]
    SCRIPT.clear()
    with running_engine(app, tmp_path, threads=1) as engine:
        first = start_window(engine, batches=1, window=1, retry=False)
        assert GATE.settle(engine) == ["b0"]  # b0 holds the only thread
        second = start_window(engine, batches=1, window=1, retry=False)
        threading.Event().wait(0.5)
        assert engine.store.get_history(second) == []  # its first episode is still waiting
        GATE.release("b0")  # the second instance's b0 comes next (its episode got the thread)
        GATE.release("b0")
        assert wait_finished(engine, first).status == "Completed"
        assert wait_finished(engine, second).status == "Completed"
