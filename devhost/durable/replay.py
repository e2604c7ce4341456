"""One orchestrator episode: build the context JSON, call the SDK, turn its actions into events.

This is the part of the Durable Task Framework that a host plays for an out-of-process
orchestrator. It is pure (no I/O): the engine persists what it returns.

The SDK returns every action its generator yielded since the start; the host decides what is
new and gives it its sequence number. That decision is the Azure host's own: the actions are
replayed by :mod:`devhost.durable.shim`, a model of the Durable extension's
``OutOfProcOrchestrationShim`` running on DTFx (in-order, awaiting each action before the next;
retries numbered by DTFx's ``RetryInterceptor``). The history therefore carries the host's
numbers, and when the SDK numbers differently it misbehaves here exactly as it would on Azure.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from azure.functions._durable_functions import OrchestrationContext

from devhost.durable.history import (
    COMPLETED,
    CONTINUED_AS_NEW,
    FAILED,
    RUNNING,
    ActionType,
    EventType,
    OrchestratorOutcome,
    event,
    format_timestamp,
    outcome_from_exception,
    parse_state,
    to_json_text,
)
from devhost.durable.shim import NonDeterminism, Refuse, Scheduled, Unsupported, replay

logger = logging.getLogger(__name__)

#: Replay schema sent as ``upperSchemaVersion`` (``ReplaySchema.V3``: compound actions).
UPPER_SCHEMA_VERSION = 2
#: What the Azure Storage backend sends; timers longer than this are split by the SDK.
MAX_SHORT_TIMER = "6.00:00:00"
LONG_TIMER_INTERVAL = "3.00:00:00"

OrchestratorHandle = Callable[[Any], str]


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
    now: datetime
    #: The execution's id: DTFx names a sub-orchestration without an instance id after it.
    execution_id: str = ""
    #: The extension's checks before it schedules a call (:func:`shim.call_refusal`); None: none.
    refuse: Refuse | None = None


@dataclass
class EpisodeResult:
    appended: list[dict[str, Any]]
    status: str
    outcome: OrchestratorOutcome
    activities: list[ScheduledActivity] = field(default_factory=list)
    timers: list[ScheduledTimer] = field(default_factory=list)
    sub_orchestrations: list[ScheduledSubOrchestration] = field(default_factory=list)
    #: JSON text: the output when completed, the failure message (a JSON string) when failed.
    output: str | None = None
    custom_status: str | None = None
    error: str | None = None
    continue_as_new_input: str | None = None
    #: When continued as new: the raised events the next generation starts with (the shim's
    #: :attr:`~devhost.durable.shim.ShimResult.carried_over`).
    carried_over: list[dict[str, Any]] = field(default_factory=list)
    #: Index of the action the host's walk waits on (None when it reached the end).
    blocked_at: int | None = None


def sub_orchestration_instance_id(execution_id: str, task_id: int) -> str:
    """DTFx's id for a sub-orchestration started without one: ``{ExecutionId}:{sequence id}``."""
    return f"{execution_id}:{task_id}"


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
    result = EpisodeResult(appended=list(new_events), status=RUNNING, outcome=outcome)
    if outcome.custom_status is not None:
        result.custom_status = to_json_text(outcome.custom_status)

    error: str | None = None
    try:
        host = replay(
            episode.history + new_events,
            outcome.top_actions,
            lambda task_id: sub_orchestration_instance_id(episode.execution_id, task_id),
            episode.refuse,
        )
    except (NonDeterminism, Unsupported) as exc:
        error = (
            f"Non-deterministic workflow detected: {exc}"
            if isinstance(exc, NonDeterminism)
            else str(exc)
        )
    else:
        for reason in host.refused:
            logger.warning(
                "orchestration %s (%s): a call was refused by the host: %s. On Azure the "
                "extension swallows this: nothing is scheduled and the orchestration waits for "
                "it forever",
                episode.instance_id,
                episode.name,
                reason,
            )
        for item in host.new:
            _schedule(item, now, result)
        result.blocked_at = host.blocked_at
        # DTFx completes an instance only when the code returned and no task is open.
        finished = host.walk_finished and host.open_tasks == 0
        if finished and outcome.error is not None:
            error = outcome.error
        elif finished and outcome.is_done and host.continue_as_new:
            result.status = CONTINUED_AS_NEW
            result.continue_as_new_input = _continue_as_new_input(outcome)
            result.carried_over = host.carried_over
        elif finished and outcome.is_done:
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


def _schedule(item: Scheduled, now: datetime, result: EpisodeResult) -> None:
    """The history event and the work item for one new action."""
    if item.kind == "activity":
        name = str(item.name)
        result.appended.append(
            event(EventType.TASK_SCHEDULED, now, item.event_id, Name=name, Input=item.input)
        )
        result.activities.append(ScheduledActivity(item.event_id, name, item.input))
    elif item.kind == "timer":
        assert item.fire_at is not None
        result.appended.append(
            event(
                EventType.TIMER_CREATED,
                now,
                item.event_id,
                FireAt=format_timestamp(item.fire_at),
            )
        )
        result.timers.append(ScheduledTimer(item.event_id, item.fire_at))
    else:
        name, child_id = str(item.name), str(item.instance_id)
        result.appended.append(
            event(
                EventType.SUB_ORCHESTRATION_INSTANCE_CREATED,
                now,
                item.event_id,
                Name=name,
                InstanceId=child_id,
                Input=item.input,
            )
        )
        result.sub_orchestrations.append(
            ScheduledSubOrchestration(item.event_id, name, child_id, item.input)
        )


def _continue_as_new_input(outcome: OrchestratorOutcome) -> str | None:
    for action in outcome.actions:
        if action.get("actionType") == ActionType.CONTINUE_AS_NEW:
            value = action.get("input")
            return value if isinstance(value, str) or value is None else to_json_text(value)
    return None
