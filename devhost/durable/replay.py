"""One orchestrator episode: build the context JSON, call the SDK, turn its actions into events.

This is the part of the Durable Task Framework that a host plays for an out-of-process
orchestrator. It is pure (no I/O): the engine persists what it returns.

Event ids. The SDK numbers every task it schedules with a sequence number and matches a
completion event to a task by that number (``TaskScheduledId`` / ``TimerId``). The host must
therefore give the ``k``-th id-consuming action the id ``k``. Retries complicate this: for a
``*_with_retry`` task the SDK itself allocates two more numbers per failed attempt (a timer
and the rescheduled task) *at the moment it replays the failure or the timer*, in between the
numbers of the tasks the user code yields. To stay in step, an episode carries at most one
such retry event and carries it first (see :func:`select_batch`); its numbers are allocated
before those of the actions the user code yields in the same episode, as the SDK does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from azure.functions._durable_functions import OrchestrationContext

from devhost.durable.history import (
    COMPLETED,
    CONTINUED_AS_NEW,
    FAILED,
    ID_CONSUMING_ACTIONS,
    RUNNING,
    ActionType,
    EventType,
    OrchestratorOutcome,
    action_signature,
    event,
    format_timestamp,
    outcome_from_exception,
    parse_state,
    parse_timestamp,
    to_json_text,
)

#: Replay schema sent as ``upperSchemaVersion`` (``ReplaySchema.V3``: compound actions).
UPPER_SCHEMA_VERSION = 2
#: What the Azure Storage backend sends; timers longer than this are split by the SDK.
MAX_SHORT_TIMER = "6.00:00:00"
LONG_TIMER_INTERVAL = "3.00:00:00"

OrchestratorHandle = Callable[[Any], str]


@dataclass
class EngineState:
    """Per-execution bookkeeping the host keeps next to the history."""

    next_id: int = 0
    signatures: list[str] = field(default_factory=list)
    event_ids: list[int | None] = field(default_factory=list)
    #: retry chains by key (the first attempt's id): kind, name, input, max, interval_ms, ...
    chains: dict[str, dict[str, Any]] = field(default_factory=dict)
    retry_by_task: dict[str, str] = field(default_factory=dict)
    retry_by_timer: dict[str, str] = field(default_factory=dict)
    cancelled_timers: list[int] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str | None) -> EngineState:
        if not text:
            return cls()
        return cls(**json.loads(text))

    def copy(self) -> EngineState:
        return EngineState.from_json(self.to_json())

    def allocate(self) -> int:
        value = self.next_id
        self.next_id += 1
        return value


@dataclass(frozen=True)
class ScheduledActivity:
    task_id: int
    name: str
    input: str | None


@dataclass(frozen=True)
class ScheduledTimer:
    timer_id: int
    fire_at: datetime


@dataclass(frozen=True)
class ScheduledSubOrchestration:
    task_id: int
    name: str
    instance_id: str
    input: str | None


@dataclass
class EpisodeInput:
    instance_id: str
    name: str
    input: str | None
    parent_instance_id: str | None
    history: list[dict[str, Any]]
    new_events: list[dict[str, Any]]
    state: EngineState
    now: datetime


@dataclass
class EpisodeResult:
    appended: list[dict[str, Any]]
    state: EngineState
    status: str
    outcome: OrchestratorOutcome
    activities: list[ScheduledActivity] = field(default_factory=list)
    timers: list[ScheduledTimer] = field(default_factory=list)
    sub_orchestrations: list[ScheduledSubOrchestration] = field(default_factory=list)
    cancelled_timers: list[int] = field(default_factory=list)
    #: JSON text: the output when completed, the failure message (a JSON string) when failed.
    output: str | None = None
    custom_status: str | None = None
    error: str | None = None
    continue_as_new_input: str | None = None


def is_retry_event(evt: dict[str, Any], state: EngineState) -> bool:
    """Whether the SDK allocates ids when it replays ``evt`` (a with-retry failure or timer)."""
    kind = evt.get("EventType")
    if kind in (EventType.TASK_FAILED, EventType.SUB_ORCHESTRATION_INSTANCE_FAILED):
        return str(evt.get("TaskScheduledId")) in state.retry_by_task
    if kind == EventType.TIMER_FIRED:
        return str(evt.get("TimerId")) in state.retry_by_timer
    return False


def select_batch(events: Sequence[dict[str, Any]], state: EngineState) -> int:
    """How many of the pending ``events`` (in arrival order) go into the next episode.

    A retry event may only come first: at most one per episode.
    """
    count = 0
    for evt in events:
        if count and is_retry_event(evt, state):
            break
        count += 1
    return count


def sub_orchestration_instance_id(parent_instance_id: str, task_id: int) -> str:
    return f"{parent_instance_id}:{task_id}"


def build_context(episode: EpisodeInput, new_events: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON context the Functions host passes to an orchestrator function."""
    history = [dict(e, IsPlayed=True) for e in episode.history]
    history += [dict(e, IsPlayed=False) for e in new_events]
    return {
        "history": history,
        "input": episode.input,
        "instanceId": episode.instance_id,
        "isReplaying": bool(episode.history),
        "parentInstanceId": episode.parent_instance_id,
        "upperSchemaVersion": UPPER_SCHEMA_VERSION,
        "maximumShortTimerDuration": MAX_SHORT_TIMER,
        "longRunningTimerIntervalDuration": LONG_TIMER_INTERVAL,
    }


def call_orchestrator(handle: OrchestratorHandle, context: dict[str, Any]) -> OrchestratorOutcome:
    """Call the registered orchestrator with the context JSON; parse state or failure."""
    try:
        raw: Any = handle(OrchestrationContext(json.dumps(context)))
    except Exception as exc:
        return outcome_from_exception(exc)
    state = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    if not isinstance(state, dict):
        return OrchestratorOutcome(
            is_done=False, actions=[], error="orchestrator returned no state"
        )
    return parse_state(state)


def failure_message(name: str, error: str) -> str:
    return f"Orchestrator function '{name}' failed: {error}"


def run_episode(handle: OrchestratorHandle, episode: EpisodeInput) -> EpisodeResult:
    """Run one episode and return the events to append and the work to schedule."""
    now = episode.now
    new_events = [event(EventType.ORCHESTRATOR_STARTED, now), *episode.new_events]
    outcome = call_orchestrator(handle, build_context(episode, new_events))
    state = episode.state.copy()
    result = EpisodeResult(appended=list(new_events), state=state, status=RUNNING, outcome=outcome)
    if outcome.custom_status is not None:
        result.custom_status = to_json_text(outcome.custom_status)

    if episode.new_events and is_retry_event(episode.new_events[0], episode.state):
        _apply_retry(episode.new_events[0], state, now, episode.instance_id, result)

    error = outcome.error
    processed = len(state.signatures)
    signatures = [action_signature(a) for a in outcome.actions]
    common = min(processed, len(signatures))
    if error is None and signatures[:common] != state.signatures[:common]:
        error = (
            "Non-deterministic workflow detected: the orchestrator scheduled "
            f"{signatures[:common]} on replay, history has {state.signatures[:common]}"
        )

    if error is None:
        _cancel_timers(outcome.actions[:common], state, result)
        continue_input = _schedule_new_actions(
            outcome.actions[processed:], state, now, episode.instance_id, result
        )
        if isinstance(continue_input, _Unsupported):
            error = continue_input.message
        elif outcome.is_done and continue_input is not _NO_CONTINUE:
            result.status = CONTINUED_AS_NEW
            result.continue_as_new_input = continue_input
        elif outcome.is_done:
            result.status = COMPLETED
            result.output = to_json_text(outcome.output) if outcome.has_output else None
            result.appended.append(
                event(
                    EventType.EXECUTION_COMPLETED,
                    now,
                    OrchestrationStatus=COMPLETED,
                    Result=result.output,
                )
            )

    if error is not None:
        message = failure_message(episode.name, error)
        result.status = FAILED
        result.error = error
        result.output = to_json_text(message)
        result.activities.clear()
        result.timers.clear()
        result.sub_orchestrations.clear()
        result.appended.append(
            event(
                EventType.EXECUTION_COMPLETED,
                now,
                OrchestrationStatus=FAILED,
                Result=message,
                FailureDetails={"ErrorType": "OrchestratorFailure", "ErrorMessage": error},
            )
        )
    result.appended.append(event(EventType.ORCHESTRATOR_COMPLETED, now))
    return result


class _Unsupported:
    def __init__(self, message: str) -> None:
        self.message = message


_NO_CONTINUE: Any = object()


def _apply_retry(
    evt: dict[str, Any], state: EngineState, now: datetime, instance_id: str, result: EpisodeResult
) -> None:
    """Allocate what the SDK allocates when it replays a with-retry failure or retry timer."""
    if evt["EventType"] == EventType.TIMER_FIRED:
        key = state.retry_by_timer[str(evt["TimerId"])]
        chain = state.chains[key]
        if chain["attempts"] >= chain["max"]:
            return  # the SDK now fails the task with the last error
        task_id = state.allocate()
        chain["attempts"] += 1
        state.retry_by_task[str(task_id)] = key
        _schedule_call(chain["kind"], task_id, chain, now, instance_id, result)
        return
    key = state.retry_by_task[str(evt["TaskScheduledId"])]
    chain = state.chains[key]
    timer_id = state.allocate()
    fire_at = now + timedelta(milliseconds=chain["interval_ms"])
    state.retry_by_timer[str(timer_id)] = key
    result.appended.append(
        event(EventType.TIMER_CREATED, now, timer_id, FireAt=format_timestamp(fire_at))
    )
    result.timers.append(ScheduledTimer(timer_id, fire_at))


def _schedule_call(
    kind: str,
    task_id: int,
    call: dict[str, Any],
    now: datetime,
    instance_id: str,
    result: EpisodeResult,
) -> None:
    if kind == "activity":
        result.appended.append(
            event(EventType.TASK_SCHEDULED, now, task_id, Name=call["name"], Input=call["input"])
        )
        result.activities.append(ScheduledActivity(task_id, call["name"], call["input"]))
        return
    child_id = call.get("instance_id") or sub_orchestration_instance_id(instance_id, task_id)
    result.appended.append(
        event(
            EventType.SUB_ORCHESTRATION_INSTANCE_CREATED,
            now,
            task_id,
            Name=call["name"],
            InstanceId=child_id,
            Input=call["input"],
        )
    )
    result.sub_orchestrations.append(
        ScheduledSubOrchestration(task_id, call["name"], child_id, call["input"])
    )


def _cancel_timers(
    actions: list[dict[str, Any]], state: EngineState, result: EpisodeResult
) -> None:
    for index, action in enumerate(actions):
        if action.get("actionType") != ActionType.CREATE_TIMER or not action.get("isCanceled"):
            continue
        timer_id = state.event_ids[index]
        if timer_id is not None and timer_id not in state.cancelled_timers:
            state.cancelled_timers.append(timer_id)
            result.cancelled_timers.append(timer_id)


def _schedule_new_actions(
    actions: list[dict[str, Any]],
    state: EngineState,
    now: datetime,
    instance_id: str,
    result: EpisodeResult,
) -> Any:
    """Give each new action its id and event; return the continue-as-new input if any."""
    continue_input: Any = _NO_CONTINUE
    for action in actions:
        kind = ActionType(action["actionType"])
        event_id = state.allocate() if kind in ID_CONSUMING_ACTIONS else None
        state.signatures.append(action_signature(action))
        state.event_ids.append(event_id)
        assert event_id is not None or kind == ActionType.WAIT_FOR_EXTERNAL_EVENT
        if kind in (ActionType.CALL_ACTIVITY, ActionType.CALL_ACTIVITY_WITH_RETRY):
            call = {"name": action["functionName"], "input": action.get("input")}
            _schedule_call("activity", event_id, call, now, instance_id, result)  # type: ignore[arg-type]
            if kind == ActionType.CALL_ACTIVITY_WITH_RETRY:
                _start_chain("activity", event_id, call, action, state)  # type: ignore[arg-type]
        elif kind in (
            ActionType.CALL_SUB_ORCHESTRATOR,
            ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY,
        ):
            call = {
                "name": action["functionName"],
                "input": action.get("input"),
                "instance_id": action.get("instanceId"),
            }
            _schedule_call("sub", event_id, call, now, instance_id, result)  # type: ignore[arg-type]
            if kind == ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY:
                _start_chain("sub", event_id, call, action, state)  # type: ignore[arg-type]
        elif kind == ActionType.CREATE_TIMER:
            fire_at = parse_timestamp(action["fireAt"])
            result.appended.append(
                event(EventType.TIMER_CREATED, now, event_id, FireAt=action["fireAt"])  # type: ignore[arg-type]
            )
            if action.get("isCanceled"):
                state.cancelled_timers.append(event_id)  # type: ignore[arg-type]
            else:
                result.timers.append(ScheduledTimer(event_id, fire_at))  # type: ignore[arg-type]
        elif kind == ActionType.CONTINUE_AS_NEW:
            continue_input = action.get("input")
        elif kind == ActionType.WAIT_FOR_EXTERNAL_EVENT:
            pass
        else:
            return _Unsupported(f"devhost does not support the {kind.name} action")
    return continue_input


def _start_chain(
    kind: str, task_id: int, call: dict[str, Any], action: dict[str, Any], state: EngineState
) -> None:
    options = action.get("retryOptions") or {}
    key = str(task_id)
    state.chains[key] = {
        "kind": kind,
        "name": call["name"],
        "input": call["input"],
        # a retried sub-orchestration gets a fresh instance id per attempt unless one was given
        "instance_id": call.get("instance_id"),
        "max": int(options.get("maxNumberOfAttempts", 1)),
        "interval_ms": int(options.get("firstRetryIntervalInMilliseconds", 1000)),
        "attempts": 1,
    }
    state.retry_by_task[key] = key
