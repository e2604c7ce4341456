"""External events around ``continue_as_new``: devhost does what the Azure host does.

The Python SDK's ``continue_as_new`` is a ``ContinueAsNewAction`` of ``actionType`` and
``input`` only (azure/durable_functions/models/actions/ContinueAsNewAction.py): no
``preserveUnprocessedEvents``. On Azure (Azure/azure-functions-durable-extension at a7c6d694,
on DurableTask.Core 2.17.1 = Azure/durabletask 9432291f and DurableTask.AzureStorage 1.17.5 =
c7c6ea15):

* the extension's shim turns the action into ``this.context.ContinueAsNew(action.Input)``
  (src/WebJobs.Extensions.DurableTask/Listener/OutOfProcOrchestrationShim.cs:170-172; its
  ``AsyncAction`` has no field for the flag), so ``preserveUnprocessedEvents`` takes its default,
  false (ContextInterfaces/IDurableOrchestrationContext.cs:98). ``DurableOrchestrationContext.
  ContinueAsNew`` (ContextImplementations/DurableOrchestrationContext.cs:1044-1050) calls DTFx's
  ``ContinueAsNew`` at once — while the walk is at that action, in the middle of the events;
* an ``EventRaised`` that DTFx processes **before** that moment goes to the extension
  (``TaskOrchestrationShim.RaiseEvent`` -> ``DurableOrchestrationContext.RaiseEvent``, :905):
  to a waiter, or into its in-memory ``bufferedExternalEvents`` (:954). Those buffered are
  re-sent to the next generation only when ``PreserveUnprocessedEvents``
  (DurableTaskExtension.cs:829-835): from Python, never — **dropped**;
* an ``EventRaised`` DTFx processes **after** it is not raised but kept for the next generation
  (DurableTask.Core TaskOrchestrationContext.cs:414-424, ``HandleEventRaisedEvent``: ``if
  (skipCarryOverEvents || !this.HasContinueAsNew)`` ... else ``AddEventToNextIteration``), the
  Azure Storage backend's ``EventBehaviourForContinueAsNew`` being ``Carryover``
  (DurableTask.AzureStorage AzureStorageOrchestrationServiceSettings.cs:219); the dispatcher
  writes them into the new generation's history right after its ``ExecutionStarted`` and runs
  that generation in the same work item (TaskOrchestrationDispatcher.cs:447-455, 555-575) —
  **carried over, first**;
* an event raised while the episode runs, or later, names no execution (DurableClient.cs:836-838
  and 864 clear ``ExecutionId``; termination too, :384-386), and the Azure Storage backend hands
  such a message to the instance's current generation (OrchestrationSessionManager.cs:422-424,
  "A null executionId value means that this is a management operation, like RaiseEvent or
  Terminate, which should be delivered to the current session"; unprocessed messages go back to
  the pending buffer when the session is released, :645-658) — **the new generation gets it**.

The first test pins the model (devhost/durable/shim.py) on hand-written actions; the others run
the toy app's ``relay`` orchestrator (waits for "go" before every step, continues as new every
``every`` steps) through the real SDK under devhost's engine, one episode at a time
(``Engine.step``), raising "go" at each moment. The last one shows what the SDK does with an
event that arrives before its wait, within a generation.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devhost.durable.engine import Engine, EngineOptions
from devhost.durable.history import CONTINUED_AS_NEW, EventType, event
from devhost.durable.replay import EpisodeResult
from devhost.durable.shim import replay
from devhost.durable.store import InboxRow, Store
from devhost.invoker import Worker
from tests.devhost.toyapp.function_app import HELD_STEPS
from tests.support.engine import wait_finished

T0 = datetime(2030, 1, 1, tzinfo=UTC)

#: The SDK keeps an event that nobody waits for yet with this warning (TaskOrchestrationExecutor.
#: set_task_value); the worker just logs it, and so must these tests (warnings are errors here).
pytestmark = pytest.mark.filterwarnings("ignore:Potential duplicate Task completion:UserWarning")


# --- the model ----------------------------------------------------------------------------------


def test_events_the_host_processes_after_the_walk_reached_continue_as_new_are_carried_over() -> (
    None
):
    past = [
        event(EventType.ORCHESTRATOR_STARTED, T0),
        event(EventType.EXECUTION_STARTED, T0, Name="o", Input="null"),
        event(EventType.TASK_SCHEDULED, T0, 0, Name="a"),
        event(EventType.ORCHESTRATOR_STARTED, T0 + timedelta(seconds=1)),
    ]
    done = event(EventType.TASK_COMPLETED, T0, TaskScheduledId=0, Result="1")
    first, second = (event(EventType.EVENT_RAISED, T0, Name="go", Input=f'"{n}"') for n in "12")
    step = {"actionType": 0, "functionName": "a", "input": "null"}
    wait = {"actionType": 6, "externalEventName": "go"}
    again = {"actionType": 4, "input": "1"}

    after = replay([*past, done, first], [step, again], lambda k: f"x:{k}")
    assert after.continue_as_new
    assert after.carried_over == [first]

    # raised before the walk got there: buffered by the extension, not carried (dropped)
    before = replay([*past, first, done], [step, again], lambda k: f"x:{k}")
    assert before.continue_as_new
    assert before.carried_over == []

    # a waiter takes the first; only what comes after the continue_as_new is carried
    waited = replay([*past, done, first, second], [step, wait, again], lambda k: f"x:{k}")
    assert waited.carried_over == [second]


def test_an_event_that_wins_a_when_any_whose_timer_is_then_canceled_is_carried_over() -> None:
    """The lanes' pause wait (orchestrators/lanes.py): ``task_any([event, timer])``; the event
    wins, the SDK cancels the timer (``isCanceled``) and continues as new. On replay the
    extension creates the timer and cancels its token right away
    (OutOfProcOrchestrationShim.cs, ``InvokeAPIFromAction``, ``case AsyncActionType.CreateTimer``:
    ``if (action.IsCanceled) { cts.Cancel(); }`` at 07ef250), so the ``WhenAny`` completes before
    the ``EventRaised`` is processed, the walk reaches ``ContinueAsNew``, and the event that won
    is carried over to the next generation — which is why the lanes number their events."""
    past = [
        event(EventType.ORCHESTRATOR_STARTED, T0),
        event(EventType.EXECUTION_STARTED, T0, Name="o", Input="null"),
        event(EventType.TIMER_CREATED, T0, 0, FireAt="2030-01-01T00:10:00.000000Z"),
        event(EventType.ORCHESTRATOR_STARTED, T0 + timedelta(seconds=1)),
    ]
    woke = event(EventType.EVENT_RAISED, T0, Name="control-2", Input='"resume"')
    timer = {"actionType": 5, "fireAt": "2030-01-01T00:10:00.000000Z", "isCanceled": True}
    wait = {"actionType": 6, "externalEventName": "control-2"}
    when_any = {"actionType": 11, "compoundActions": [wait, timer]}
    again = {"actionType": 4, "input": "1"}

    result = replay([*past, woke], [when_any, again], lambda k: f"x:{k}")

    assert result.continue_as_new
    assert result.carried_over == [woke]
    assert result.open_tasks == 0  # the canceled timer holds nothing open


# --- the engine, with the real SDK --------------------------------------------------------------


@pytest.fixture
def engine(tmp_path: Any, toy_index: Any) -> Iterator[Engine]:
    """An engine whose dispatcher is not started: the test runs each episode (``Engine.step``)
    and so decides which events share it; activities run at once, unless held."""
    worker = Worker(sync_threads=4)
    engine = Engine(
        Store(tmp_path / "durable.sqlite3"),
        toy_index,
        worker,
        EngineOptions(max_concurrent_activities=4, poll_interval=0.02),
    )
    yield engine
    for held in HELD_STEPS.values():
        held.set()
    HELD_STEPS.clear()
    engine.stop()
    worker.stop()


def start_relay(engine: Engine, steps: int, every: int) -> str:
    """A relay whose first wait is answered ("g0") in its first episode."""
    job = {"step": 0, "steps": steps, "every": every, "patience": 1.0, "got": []}
    instance_id = engine.start_orchestration("relay", None, json.dumps(job))
    raise_go(engine, instance_id, "g0")
    assert engine.step(instance_id)
    return instance_id


def raise_go(engine: Engine, instance_id: str, value: str) -> None:
    assert engine.raise_event(instance_id, "go", json.dumps(value)) == "accepted"


def hold(key: str) -> None:
    HELD_STEPS[key] = threading.Event()


def finish_step(engine: Engine, instance_id: str, key: str) -> None:
    """Let step ``key`` finish and wait until its completion is in the instance's inbox."""
    HELD_STEPS[key].set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(
            r.event["EventType"] == EventType.TASK_COMPLETED for r in inbox(engine, instance_id)
        ):
            return
        time.sleep(0.01)
    raise TimeoutError(f"step {key} did not complete")


def inbox(engine: Engine, instance_id: str) -> list[InboxRow]:
    """The instance's queued events but timers (the relay's cancelled ones fire later)."""
    rows = engine.store.due_inbox(instance_id, now=float("inf"))
    return [r for r in rows if r.event["EventType"] != EventType.TIMER_FIRED]


def continue_as_new_episode(engine: Engine, instance_id: str) -> None:
    """Run the episode in which the relay continues as new."""
    generation = engine.store.get_instance(instance_id)
    assert engine.step(instance_id)
    after = engine.store.get_instance(instance_id)
    assert generation is not None
    assert after is not None
    assert after.execution_id != generation.execution_id, "the relay did not continue as new"


def while_the_episode_runs(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, act: Callable[[], None]
) -> None:
    """Do ``act`` after the next episode that continues as new has run, before it is committed."""
    run = engine.worker.run

    def run_then_act(func: Any, *args: Any, **kwargs: Any) -> Any:
        result = run(func, *args, **kwargs)
        if isinstance(result, EpisodeResult) and result.status == CONTINUED_AS_NEW:
            act()
        return result

    monkeypatch.setattr(engine.worker, "run", run_then_act)


def outcome(engine: Engine, instance_id: str) -> Any:
    """Let the dispatcher run the rest (a wait that gets nothing gives up after 1 s)."""
    engine.start()
    row = wait_finished(engine, instance_id)
    assert row.status == "Completed", row.output
    return json.loads(row.output or "null")


def test_an_event_raised_after_the_completion_that_continues_as_new_is_carried_over(
    engine: Engine,
) -> None:
    """Same batch, after the step's completion: DTFx has ContinueAsNew when it processes the
    event and keeps it for the next generation. (devhost dropped it before.)"""
    hold("s0")
    instance_id = start_relay(engine, steps=2, every=1)
    finish_step(engine, instance_id, "s0")
    raise_go(engine, instance_id, "after")
    kinds = [r.event["EventType"] for r in inbox(engine, instance_id)]
    assert kinds == [EventType.TASK_COMPLETED, EventType.EVENT_RAISED]
    continue_as_new_episode(engine, instance_id)
    assert outcome(engine, instance_id) == ["g0", "after"]


def test_an_event_raised_before_the_completion_that_continues_as_new_is_dropped(
    engine: Engine,
) -> None:
    """Same batch, before the step's completion: nobody waits, the extension buffers it, and a
    continue_as_new from Python (preserveUnprocessedEvents false) drops the buffer. (devhost
    already did this.)"""
    hold("s0")
    instance_id = start_relay(engine, steps=2, every=1)
    raise_go(engine, instance_id, "before")
    finish_step(engine, instance_id, "s0")
    kinds = [r.event["EventType"] for r in inbox(engine, instance_id)]
    assert kinds == [EventType.EVENT_RAISED, EventType.TASK_COMPLETED]
    continue_as_new_episode(engine, instance_id)
    assert outcome(engine, instance_id) == ["g0", None]


def test_an_event_raised_while_the_episode_that_continues_as_new_runs_goes_to_the_new_one(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It names no execution, so the new generation gets it. (devhost dropped it before: it was
    queued for the old execution, whose inbox the continue_as_new cleared.)"""
    hold("s0")
    instance_id = start_relay(engine, steps=2, every=1)
    finish_step(engine, instance_id, "s0")
    while_the_episode_runs(engine, monkeypatch, lambda: raise_go(engine, instance_id, "during"))
    continue_as_new_episode(engine, instance_id)
    assert outcome(engine, instance_id) == ["g0", "during"]


def test_an_event_raised_after_the_new_generation_started_goes_to_it(engine: Engine) -> None:
    """(devhost already did this.)"""
    hold("s0")
    instance_id = start_relay(engine, steps=2, every=1)
    finish_step(engine, instance_id, "s0")
    continue_as_new_episode(engine, instance_id)
    raise_go(engine, instance_id, "later")
    assert outcome(engine, instance_id) == ["g0", "later"]


def test_carried_over_events_come_before_those_raised_during_the_episode(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The carried events are in the new generation's first episode; what arrived meanwhile is
    processed after them."""
    hold("s0")
    hold("s1")
    instance_id = start_relay(engine, steps=4, every=2)
    finish_step(engine, instance_id, "s0")
    assert engine.step(instance_id)  # s0's completion: the relay waits for its second "go"
    raise_go(engine, instance_id, "g1")
    assert engine.step(instance_id)
    finish_step(engine, instance_id, "s1")
    raise_go(engine, instance_id, "carried")
    while_the_episode_runs(engine, monkeypatch, lambda: raise_go(engine, instance_id, "during"))
    continue_as_new_episode(engine, instance_id)
    assert outcome(engine, instance_id) == ["g0", "g1", "carried", "during"]


def test_a_termination_requested_while_the_episode_runs_ends_the_new_generation(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Termination names no execution either (DurableClient.TerminateAsync). (devhost lost it
    before, and the instance ran on.)"""
    hold("s0")
    instance_id = start_relay(engine, steps=2, every=1)
    finish_step(engine, instance_id, "s0")

    def terminate() -> None:
        assert engine.terminate(instance_id, "stop") == "accepted"

    while_the_episode_runs(engine, monkeypatch, terminate)
    continue_as_new_episode(engine, instance_id)
    engine.start()
    row = wait_finished(engine, instance_id)
    assert (row.status, json.loads(row.output or "null")) == ("Terminated", "stop")


def test_an_event_raised_before_its_wait_is_taken_again_by_every_later_wait_in_the_sdk(
    engine: Engine,
) -> None:
    """Not about continue_as_new, but the hazard of events that arrive before their wait, which a
    lane waiting for "resume" meets. The SDK (1.7.0, azure/durable_functions/models/) keeps such
    an event by name (TaskOrchestrationExecutor.py, ``set_task_value``: ``deferred_tasks[key]``,
    a dict, so a later one replaces it) and hands it to every new wait of that name, never
    forgetting it (DurableOrchestrationContext.py, ``_add_to_open_tasks``); the extension queues
    it and gives it to one wait. So a later plain wait is done for the SDK and not for the host:
    the host schedules nothing after it until another event comes, and the orchestrator then
    gets the old event again. Only a new generation forgets it."""
    instance_id = engine.start_orchestration("waits", None, "3")
    for key in ("w0", "w1", "w2"):
        hold(key)
    assert engine.step(instance_id)
    raise_go(engine, instance_id, "a")
    assert engine.step(instance_id)  # the first wait takes "a"; w0 runs
    raise_go(engine, instance_id, "b")
    assert engine.step(instance_id)  # nobody waits for "b"
    finish_step(engine, instance_id, "w0")
    assert engine.step(instance_id)  # the second wait takes "b"; w1 runs
    finish_step(engine, instance_id, "w1")
    assert engine.step(instance_id)  # the SDK's third wait takes "b" again; the host's waits

    def scheduled() -> list[str]:
        history = engine.store.get_history(instance_id)
        return [e["Input"] for e in history if e["EventType"] == EventType.TASK_SCHEDULED]

    assert scheduled() == ['"w0"', '"w1"']  # w2 is not started
    raise_go(engine, instance_id, "c")  # the host's third wait takes it
    assert engine.step(instance_id)
    assert scheduled() == ['"w0"', '"w1"', '"w2"']
    HELD_STEPS["w2"].set()
    assert outcome(engine, instance_id) == ["a", "b", "b"]
