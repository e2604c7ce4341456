"""What the Azure host does with an out-of-process orchestrator's actions: a model to run here.

On Azure, the Python SDK does not schedule anything itself. Each episode it returns the list of
actions its generator yielded since the start (one action per ``yield``; ``task_all`` /
``task_any`` are ``WhenAll`` / ``WhenAny`` actions whose ``compoundActions`` hold the children
*not scheduled by an earlier yield* — ``CompoundTask.__init__`` in the SDK's
``azure/durable_functions/models/Task.py`` skips children whose ``_is_scheduled`` is set). The
Durable extension then replays that list as .NET code inside the Durable Task Framework:

* ``OutOfProcOrchestrationShim.ProcessAsyncActionsV2`` (Azure/azure-functions-durable-extension,
  ``src/WebJobs.Extensions.DurableTask/Listener/OutOfProcOrchestrationShim.cs``) walks the list
  **in order and awaits each action before invoking the next**; a failed task's exception is
  swallowed and the walk goes on. ``WhenAll`` / ``WhenAny`` become ``Task.WhenAll`` /
  ``Task.WhenAny`` over the invoked children.
* DTFx (Azure/durabletask, ``src/DurableTask.Core/TaskOrchestrationExecutor.cs``) runs that code
  from the start on every episode and feeds it the history in order: a ``TaskScheduled`` /
  ``TimerCreated`` / ``SubOrchestrationInstanceCreated`` event must match the action the replay
  produced with the same sequence number, or the instance fails as non-deterministic
  (``TaskOrchestrationContext.Handle*CreatedEvent``); a completion event completes the open task
  with that number and the awaiting code continues *synchronously, right there in the event
  order*, so every id is allocated by the moment its invoking code runs. A completion for a task
  that is not open is ignored (``LogDuplicateEvent``). Actions left unmatched at the end are new:
  the host schedules them. The orchestration completes only when the walk has reached the end
  of the list, the SDK says it is done, and no task is open (``HasOpenTasks``).
* ``call_activity_with_retry`` is DTFx's ``RetryInterceptor`` (``src/DurableTask.Core/
  RetryInterceptor.cs``): after a failed attempt it creates a retry timer (and, after the last
  attempt, a "dummy" timer that fires at once) and only then the next attempt, each taking the
  next sequence number *when the failure or the timer is processed*.

* A call the extension refuses before scheduling — ``CallDurableTaskFunctionAsync`` is an ``async``
  method, so its ``ArgumentException`` for a function the app does not have
  (``DurableTaskExtension.ThrowIfFunctionDoesNotExist``), or for a sub-orchestration id equal to
  the instance's or its parent's or starting with ``@``, becomes a faulted task — is swallowed by
  the walk like any failure: it takes **no sequence number**, no event ever answers it, and the
  SDK waits for it forever (the instance stays Running). :class:`Refused` lists them.
* External events (``DurableOrchestrationContext.WaitForExternalEvent`` / ``RaiseEvent``): names
  compare ignoring case; an event goes to the **newest** waiter of its name (a stack, "to make it
  easier for users to abandon external events ... a Task.WhenAny in a loop"), and one that
  arrives before anyone waits is buffered in order.
* ``continue_as_new``: the walk calls ``ContinueAsNew(input)`` when it reaches the action, and
  from then on DTFx does not raise an ``EventRaised`` but keeps it for the next generation
  (``TaskOrchestrationContext.HandleEventRaisedEvent``; the Azure Storage backend's
  ``BehaviorOnContinueAsNew.Carryover``): :attr:`ShimResult.carried_over`. Events buffered
  before that moment are dropped: the SDK's action cannot ask for ``preserveUnprocessedEvents``
  (``tests/devhost/test_continue_as_new.py`` has the sources).

The consequence (azure-functions-durable-python issue #603, closed as won't fix for SDK 1.x): an
action behind a pending one is not scheduled until that one completes, and the SDK and the host
number tasks differently as soon as the SDK yields work the host has not reached yet. This module
reproduces the host's side exactly, so a pattern that stalls or misbehaves on Azure stalls or
misbehaves under devhost too; ``tests/devhost/test_shim.py`` pins it.

Pure: no I/O. :func:`replay` is given the whole history (past and new events) and the SDK's
actions and says what the host schedules now.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from devhost.durable.history import ActionType, EventType, parse_timestamp

Kind = Literal["activity", "timer", "sub"]


#: Why the extension would refuse a call (an action and its kind), or None: see :func:`replay`.
Refuse = Callable[[Kind, dict[str, Any]], "str | None"]


#: The calls the extension schedules, by action type, and those made through its RetryInterceptor.
_CALLS: dict[ActionType, Kind] = {
    ActionType.CALL_ACTIVITY: "activity",
    ActionType.CALL_ACTIVITY_WITH_RETRY: "activity",
    ActionType.CALL_SUB_ORCHESTRATOR: "sub",
    ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY: "sub",
}
_RETRIED_CALLS = frozenset(
    {ActionType.CALL_ACTIVITY_WITH_RETRY, ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY}
)


class NonDeterminism(Exception):
    """The history does not match what the replay produced (DTFx fails the instance)."""


class Unsupported(Exception):
    """An action devhost does not implement (entities, durable HTTP)."""


@dataclass
class Scheduled:
    """Work the replay produced: an activity, a timer or a sub-orchestration, by sequence id."""

    event_id: int
    kind: Kind
    name: str | None = None
    input: str | None = None
    fire_at: datetime | None = None
    instance_id: str | None = None


class _Task:
    """A .NET ``Task`` as far as the replay cares: done or not, failed or not, continuations."""

    __slots__ = ("_continuations", "done", "failed")

    def __init__(self, *, done: bool = False, failed: bool = False) -> None:
        self.done = done
        self.failed = failed
        self._continuations: list[Callable[[], None]] = []

    def then(self, continuation: Callable[[], None]) -> None:
        if self.done:
            continuation()
        else:
            self._continuations.append(continuation)

    def finish(self, *, failed: bool) -> None:
        if self.done:
            return
        self.done, self.failed = True, failed
        continuations, self._continuations = self._continuations, []
        for continuation in continuations:
            continuation()


@dataclass
class ShimResult:
    """The host's view after replaying every event: what to schedule, whether it may finish."""

    #: Actions produced by this replay that no history event matched: the host schedules them.
    new: list[Scheduled] = field(default_factory=list)
    #: The walk reached the end of the action list (nothing is blocking it).
    walk_finished: bool = False
    #: Scheduled tasks that have not completed (DTFx's ``HasOpenTasks``).
    open_tasks: int = 0
    #: Index of the action the walk is blocked on, if any (for diagnostics and tests).
    blocked_at: int | None = None
    continue_as_new: bool = False
    #: Calls the extension refused (why, per call): on Azure they are never answered.
    refused: list[str] = field(default_factory=list)
    #: ``EventRaised`` events processed after the walk reached ``ContinueAsNew``, in order:
    #: DTFx carries them over into the next generation's history.
    carried_over: list[dict[str, Any]] = field(default_factory=list)


class Shim:
    """One replay of the extension's shim over DTFx. Use :func:`replay`."""

    def __init__(
        self,
        actions: Sequence[dict[str, Any]],
        default_instance_id: Callable[[int], str],
        refuse: Refuse | None = None,
    ) -> None:
        self.actions = list(actions)
        self._refuse = refuse
        self.refused: list[str] = []
        self.cursor = 0
        self.walk_finished = False
        self.continue_as_new = False
        self.now: datetime | None = None
        self._next_id = 0
        self._default_instance_id = default_instance_id
        self._unmatched: dict[int, Scheduled] = {}
        self._open: dict[int, _Task] = {}
        self._waiters: dict[str, list[_Task]] = {}  # by name, lower-cased: a stack each
        self._buffered: dict[str, deque[None]] = {}
        self._carried_over: list[dict[str, Any]] = []

    # --- the walk (ProcessAsyncActionsV2) -----------------------------------------------------
    def walk(self) -> None:
        while self.cursor < len(self.actions):
            task = self._invoke(self.actions[self.cursor])
            self.cursor += 1
            if not task.done:
                task.then(self.walk)  # ``await``: the walk resumes when this task completes
                return
        self.walk_finished = True

    def _invoke(self, action: dict[str, Any]) -> _Task:
        kind = ActionType(action["actionType"])
        call = _CALLS.get(kind)
        if call is not None:
            refused = self._refuse(call, action) if self._refuse else None
            if refused is not None:  # thrown inside the async call: a faulted task, no id
                self.refused.append(refused)
                return _Task(done=True, failed=True)
            if kind in _RETRIED_CALLS:
                return _RetryCall(self, call, action).task
            return self._schedule(call, action)
        if kind == ActionType.CREATE_TIMER:
            timer = self._schedule("timer", action)
            if action.get("isCanceled"):
                self._cancel(timer)
            return timer
        if kind == ActionType.WAIT_FOR_EXTERNAL_EVENT:
            return self._wait_for(str(action.get("externalEventName")))
        if kind == ActionType.CONTINUE_AS_NEW:
            self.continue_as_new = True
            return _Task(done=True)
        if kind in (ActionType.WHEN_ALL, ActionType.WHEN_ANY):
            children = [self._invoke(child) for child in action.get("compoundActions") or []]
            return _when_all(children) if kind == ActionType.WHEN_ALL else _when_any(children)
        raise Unsupported(f"devhost does not support the {kind.name} action")

    # --- DTFx's TaskOrchestrationContext ------------------------------------------------------
    def _schedule(self, kind: Kind, action: dict[str, Any], **override: Any) -> _Task:
        event_id = self._next_id
        self._next_id += 1
        item = Scheduled(event_id, kind)
        if kind == "timer":
            fire_at = override.get("fire_at")
            item.fire_at = fire_at if fire_at is not None else parse_timestamp(action["fireAt"])
        else:
            item.name = action.get("functionName")
            item.input = action.get("input")
            if kind == "sub":
                item.instance_id = action.get("instanceId") or self._default_instance_id(event_id)
        self._unmatched[event_id] = item
        task = _Task()
        self._open[event_id] = task
        return task

    def create_timer(self, fire_at: datetime) -> _Task:
        return self._schedule("timer", {}, fire_at=fire_at)

    def _cancel(self, timer: _Task) -> None:
        for event_id, task in list(self._open.items()):
            if task is timer:
                del self._open[event_id]
        timer.finish(failed=True)  # a cancelled timer: ``await`` throws, the walk goes on

    def _wait_for(self, name: str) -> _Task:
        key = name.lower()  # the extension's dictionaries use StringComparer.OrdinalIgnoreCase
        buffered = self._buffered.get(key)
        if buffered:
            buffered.popleft()
            return _Task(done=True)
        task = _Task()
        self._waiters.setdefault(key, []).append(task)
        return task

    def process(self, evt: dict[str, Any]) -> None:
        """Feed one history event, as ``TaskOrchestrationExecutor.ProcessEvent`` does."""
        kind = evt.get("EventType")
        if kind == EventType.ORCHESTRATOR_STARTED:
            self.now = parse_timestamp(str(evt["Timestamp"]))
        elif kind == EventType.EXECUTION_STARTED:
            self.walk()  # the orchestrator function is invoked here
        elif kind == EventType.TASK_SCHEDULED:
            self._match(evt, "activity")
        elif kind == EventType.TIMER_CREATED:
            self._match(evt, "timer")
        elif kind == EventType.SUB_ORCHESTRATION_INSTANCE_CREATED:
            self._match(evt, "sub")
        elif kind in (EventType.TASK_COMPLETED, EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED):
            self._complete(int(evt["TaskScheduledId"]), failed=False)
        elif kind in (EventType.TASK_FAILED, EventType.SUB_ORCHESTRATION_INSTANCE_FAILED):
            self._complete(int(evt["TaskScheduledId"]), failed=True)
        elif kind == EventType.TIMER_FIRED:
            self._complete(int(evt["TimerId"]), failed=False)
        elif kind == EventType.EVENT_RAISED and self.continue_as_new:
            self._carried_over.append(evt)  # for the next generation, not for this one's waiters
        elif kind == EventType.EVENT_RAISED:
            key = str(evt.get("Name")).lower()
            waiters = self._waiters.get(key)
            if waiters:
                waiters.pop().finish(failed=False)  # the newest waiter: the extension's stack
            else:
                self._buffered.setdefault(key, deque()).append(None)

    def _match(self, evt: dict[str, Any], kind: Kind) -> None:
        event_id = int(evt["EventId"])
        produced = self._unmatched.get(event_id)
        what = {"activity": "an activity task", "timer": "a timer", "sub": "a sub-orchestration"}
        if produced is None:
            raise NonDeterminism(
                f"A previous execution of this orchestration scheduled {what[kind]} with sequence "
                f"ID {event_id} (name {evt.get('Name')!r}), but the current replay execution "
                "hasn't (yet?) scheduled this task."
            )
        if produced.kind != kind or (
            kind != "timer" and str(produced.name).lower() != str(evt.get("Name")).lower()
        ):
            raise NonDeterminism(
                f"A previous execution of this orchestration scheduled {what[kind]} with sequence "
                f"ID {event_id} (name {evt.get('Name')!r}), but the current replay produced "
                f"{what[produced.kind]} named {produced.name!r} with this sequence number."
            )
        del self._unmatched[event_id]

    def _complete(self, event_id: int, *, failed: bool) -> None:
        task = self._open.pop(event_id, None)
        if task is not None:  # else a duplicate or a cancelled timer: ignored, as DTFx does
            task.finish(failed=failed)

    def result(self) -> ShimResult:
        return ShimResult(
            new=[self._unmatched[k] for k in sorted(self._unmatched)],
            walk_finished=self.walk_finished,
            open_tasks=len(self._open),
            blocked_at=None if self.walk_finished else self.cursor - 1,
            continue_as_new=self.continue_as_new,
            refused=list(self.refused),
            carried_over=list(self._carried_over),
        )


class _RetryCall:
    """DTFx's ``RetryInterceptor.Invoke`` for ``Call*WithRetry`` actions."""

    def __init__(self, shim: Shim, kind: Kind, action: dict[str, Any]) -> None:
        options = action.get("retryOptions") or {}
        self.shim, self.kind, self.action = shim, kind, action
        self.max_attempts = max(1, int(options.get("maxNumberOfAttempts", 1)))
        self.first_interval = timedelta(
            milliseconds=float(options.get("firstRetryIntervalInMilliseconds", 0))
        )
        self.backoff = float(options.get("backoffCoefficient", 1.0))
        max_interval = options.get("maxRetryIntervalInMilliseconds")
        self.max_interval = (
            timedelta(milliseconds=float(max_interval)) if max_interval else timedelta.max
        )
        self.retry_count = 0
        self.task = _Task()
        self._attempt()

    def _attempt(self) -> None:
        attempt = self.shim._schedule(self.kind, self.action)
        attempt.then(lambda: self._after(attempt))

    def _after(self, attempt: _Task) -> None:
        if not attempt.failed:
            self.task.finish(failed=False)
            return
        now = self.shim.now
        assert now is not None
        if self.retry_count + 1 >= self.max_attempts:
            # "Dummy timer for back-compat": fires at once, then the last error is thrown.
            self.shim.create_timer(now).then(lambda: self.task.finish(failed=True))
            return
        delay = self.first_interval * (self.backoff**self.retry_count)
        delay = min(delay, self.max_interval)
        if delay <= timedelta(0):
            self.task.finish(failed=True)
            return

        def next_attempt() -> None:
            self.retry_count += 1
            self._attempt()

        self.shim.create_timer(now + delay).then(next_attempt)


def _when_all(children: list[_Task]) -> _Task:
    task = _Task(done=not children)
    remaining = [len(children)]

    def one_done() -> None:
        remaining[0] -= 1
        if remaining[0] == 0:
            task.finish(failed=any(child.failed for child in children))

    for child in children:
        child.then(one_done)
    return task


def _when_any(children: list[_Task]) -> _Task:
    if not children:
        raise Unsupported("Task.WhenAny over no tasks (the extension would throw)")
    task = _Task()
    for child in children:
        child.then(lambda: task.finish(failed=False))  # WhenAny's own task never faults
    return task


def replay(
    events: Sequence[dict[str, Any]],
    actions: Sequence[dict[str, Any]],
    default_instance_id: Callable[[int], str],
    refuse: Refuse | None = None,
) -> ShimResult:
    """Replay the shim over ``events`` (the whole history, new events last) and ``actions``.

    ``actions`` is the SDK's list for replay schema V2+ (``state["actions"][0]``), compound
    actions not flattened. ``refuse`` says why the extension would throw on a call, if it would
    (:func:`call_refusal`). Raises :class:`NonDeterminism` or :class:`Unsupported`.
    """
    shim = Shim(actions, default_instance_id, refuse)
    for evt in events:
        shim.process(evt)
    return shim.result()


def call_refusal(
    activities: Collection[str],
    orchestrators: Collection[str],
    instance_id: str,
    parent_instance_id: str | None,
) -> Refuse:
    """The extension's checks in ``DurableOrchestrationContext.CallDurableTaskFunctionAsync``
    before it schedules a call: the function exists (``ThrowIfFunctionDoesNotExist``: names
    compare ignoring case; a disabled function is not indexed), and a sub-orchestration's instance
    id is neither the instance's nor its parent's (ignoring case) nor starts with ``@``."""
    known = {
        "activity": {name.lower() for name in activities},
        "sub": {name.lower() for name in orchestrators},
    }
    own = {instance_id.lower(), *([parent_instance_id.lower()] if parent_instance_id else [])}

    def refuse(kind: Kind, action: dict[str, Any]) -> str | None:
        name = str(action.get("functionName"))
        if name.lower() not in known.get(kind, set()):
            what = "an activity" if kind == "activity" else "an orchestrator"
            return f"the function '{name}' doesn't exist or is not {what} function"
        sub_id = action.get("instanceId")
        if kind == "sub" and sub_id and str(sub_id).lower() in own:
            return (
                "the instance ID of a sub-orchestration must be different than the instance ID "
                "of a parent orchestration"
            )
        if kind == "sub" and sub_id and str(sub_id).startswith("@"):
            return "orchestration instance ids must not start with @"
        return None

    return refuse
