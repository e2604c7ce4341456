"""The Durable Task wire contract: history events, orchestrator state, action flattening.

History events are plain dicts in the shape the Functions host sends to the Python SDK
(``azure.durable_functions.models.history.HistoryEvent(**event)``): PascalCase keys,
``EventType`` numbers from ``HistoryEventType``, ``EventId`` -1 for events that do not
schedule anything, ``Timestamp`` as ISO 8601 UTC.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

#: The SDK's own timestamp format (``azure.durable_functions.constants.DATETIME_STRING_FORMAT``).
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

#: Marker the SDK puts between a failed orchestrator's message and its state JSON.
OUT_OF_PROC_MARKER = "$OutOfProcData$:"


class EventType(IntEnum):
    """``azure.durable_functions.models.history.HistoryEventType``."""

    EXECUTION_STARTED = 0
    EXECUTION_COMPLETED = 1
    EXECUTION_FAILED = 2
    EXECUTION_TERMINATED = 3
    TASK_SCHEDULED = 4
    TASK_COMPLETED = 5
    TASK_FAILED = 6
    SUB_ORCHESTRATION_INSTANCE_CREATED = 7
    SUB_ORCHESTRATION_INSTANCE_COMPLETED = 8
    SUB_ORCHESTRATION_INSTANCE_FAILED = 9
    TIMER_CREATED = 10
    TIMER_FIRED = 11
    ORCHESTRATOR_STARTED = 12
    ORCHESTRATOR_COMPLETED = 13
    EVENT_SENT = 14
    EVENT_RAISED = 15
    CONTINUE_AS_NEW = 16
    GENERIC_EVENT = 17
    HISTORY_STATE = 18
    EXECUTION_SUSPENDED = 19
    EXECUTION_RESUMED = 20


class ActionType(IntEnum):
    """``azure.durable_functions.models.actions.ActionType``."""

    CALL_ACTIVITY = 0
    CALL_ACTIVITY_WITH_RETRY = 1
    CALL_SUB_ORCHESTRATOR = 2
    CALL_SUB_ORCHESTRATOR_WITH_RETRY = 3
    CONTINUE_AS_NEW = 4
    CREATE_TIMER = 5
    WAIT_FOR_EXTERNAL_EVENT = 6
    CALL_ENTITY = 7
    CALL_HTTP = 8
    SIGNAL_ENTITY = 9
    WHEN_ANY = 11
    WHEN_ALL = 12


#: Durable runtime statuses, as the HTTP API spells them.
PENDING = "Pending"
RUNNING = "Running"
COMPLETED = "Completed"
FAILED = "Failed"
TERMINATED = "Terminated"
CONTINUED_AS_NEW = "ContinuedAsNew"
TERMINAL_STATUSES = frozenset({COMPLETED, FAILED, TERMINATED})


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    """``moment`` (aware or naive-UTC) in the SDK's ISO format."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    """An ISO 8601 timestamp as an aware UTC datetime (naive input is taken as UTC)."""
    cleaned = text.strip()
    if cleaned.endswith("Z"):
        cleaned = cleaned[:-1] + "+00:00"
    # .NET writes 7 fractional digits; Python accepts at most 6.
    head, dot, rest = cleaned.partition(".")
    if dot:
        digits = ""
        tail = rest
        while tail and tail[0].isdigit():
            digits += tail[0]
            tail = tail[1:]
        cleaned = f"{head}.{digits[:6].ljust(6, '0')}{tail}"
    moment = datetime.fromisoformat(cleaned)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def event(
    event_type: EventType, timestamp: datetime, event_id: int = -1, **fields: Any
) -> dict[str, Any]:
    """One history event. ``IsPlayed`` is set when the context is built."""
    return {
        "EventType": int(event_type),
        "EventId": event_id,
        "IsPlayed": False,
        "Timestamp": format_timestamp(timestamp),
        **fields,
    }


def to_json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def normalize_json_input(value: Any) -> str | None:
    """A client-supplied payload as the JSON text the orchestrator will ``df_loads``.

    The SDK's client double-encodes: it ``df_dumps`` the input and posts that string as JSON,
    so the request body is a JSON string holding JSON text. Callers of the HTTP API post the
    value itself. A string that parses as JSON is taken as JSON text; any other value is
    serialised.
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return to_json_text(value)
        return value
    return to_json_text(value)


def json_text_value(text: str | None) -> Any:
    """Parse stored JSON text for an API response (invalid JSON is returned as the string)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def flatten_actions(actions: list[Any]) -> Iterator[dict[str, Any]]:
    """The atomic actions of an orchestrator state, in scheduling order.

    Replay schema V1 nests one list per ``yield``; V2+ returns one list. ``WhenAll`` /
    ``WhenAny`` carry their children in ``compoundActions``.
    """
    for item in actions:
        if isinstance(item, list):
            yield from flatten_actions(item)
        elif isinstance(item, dict):
            action_type = item.get("actionType")
            if action_type in (ActionType.WHEN_ALL, ActionType.WHEN_ANY):
                yield from flatten_actions(item.get("compoundActions") or [])
            else:
                yield item


@dataclass
class OrchestratorOutcome:
    """What one orchestrator execution returned, parsed from the state JSON."""

    is_done: bool
    #: Every atomic action, compound ones flattened (in scheduling order).
    actions: list[dict[str, Any]]
    output: Any = None
    has_output: bool = False
    error: str | None = None
    custom_status: Any = None
    raw_state: dict[str, Any] = field(default_factory=dict)
    #: One action per ``yield``, compound actions kept whole: what the host's shim walks.
    top_actions: list[dict[str, Any]] = field(default_factory=list)


def top_level_actions(actions: list[Any]) -> list[dict[str, Any]]:
    """The schema V2+ action list (``[[a, b, ...]]``: one inner list) as one list."""
    out: list[dict[str, Any]] = []
    for item in actions:
        if isinstance(item, list):
            out.extend(a for a in item if isinstance(a, dict))
        elif isinstance(item, dict):
            out.append(item)
    return out


def parse_state(state: dict[str, Any]) -> OrchestratorOutcome:
    actions = state.get("actions") or []
    return OrchestratorOutcome(
        is_done=bool(state.get("isDone")),
        actions=list(flatten_actions(actions)),
        top_actions=top_level_actions(actions),
        output=state.get("output"),
        has_output="output" in state,
        error=state.get("error"),
        custom_status=state.get("customStatus"),
        raw_state=state,
    )


def outcome_from_exception(exc: BaseException) -> OrchestratorOutcome:
    """A failed orchestrator: the SDK raises ``<message>\\n\\n$OutOfProcData$:<state JSON>``."""
    message = str(exc)
    head, marker, tail = message.rpartition(OUT_OF_PROC_MARKER)
    if marker:
        try:
            state = json.loads(tail)
        except ValueError:
            state = None
        if isinstance(state, dict):
            outcome = parse_state(state)
            outcome.is_done = False
            outcome.error = state.get("error") or head.strip() or type(exc).__name__
            return outcome
    return OrchestratorOutcome(
        is_done=False, actions=[], error=f"{type(exc).__name__}: {message}".strip()
    )
