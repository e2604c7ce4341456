"""The durable engine: runs orchestrator episodes and activities over the SQLite store.

Work flows through two tables. ``inbox`` holds events for an instance that no episode has
consumed yet (ExecutionStarted, TaskCompleted, TimerFired with a future ``visible_at``,
EventRaised, termination requests; the last two, as the extension's client sends them, for
whichever execution is current, so a ``continue_as_new`` passes them on). ``activities``
holds activities that were scheduled and have not reported. An episode reads the due inbox
events, calls the orchestrator and, in one transaction, appends the history, deletes the
consumed events and queues the new work. An activity that finishes deletes its row and
queues its TaskCompleted, also in one transaction. A crash between the two loses nothing:
the activity row is still there and runs again on restart (at least once), exactly as on the
real host.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter

from devhost.app_loader import FunctionIndex
from devhost.durable.history import (
    COMPLETED,
    CONTINUED_AS_NEW,
    FAILED,
    PENDING,
    RUNNING,
    TERMINAL_STATUSES,
    TERMINATED,
    EventType,
    event,
    format_timestamp,
    to_json_text,
    utcnow,
)
from devhost.durable.replay import EpisodeInput, EpisodeResult, run_episode
from devhost.durable.shim import call_refusal
from devhost.durable.store import ActivityRow, InboxRow, InstanceRow, Store
from devhost.durable.workitems import WorkItemQueue
from devhost.invoker import InvocationContext, Worker, accepted_parameters

logger = logging.getLogger("devhost.durable")

#: Episodes one dispatch may run for an instance before yielding to others.
_EPISODES_PER_DISPATCH = 20
#: Engine-internal inbox event: terminate the instance (``Input`` = reason).
_TERMINATE = "devhost.terminate"


def _no_orchestrator(name: str) -> str:
    return f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator function."


def _conflict(instance_id: str, status: str) -> str:
    return f"An orchestration with instance ID '{instance_id}' is already {status}."


class UnknownOrchestrator(LookupError):
    pass


class InstanceConflict(RuntimeError):
    pass


@dataclass(frozen=True)
class EngineOptions:
    max_concurrent_activities: int = 10
    max_concurrent_orchestrations: int = 4
    #: Longest the dispatcher sleeps between looks at the inbox (it is also woken on writes).
    poll_interval: float = 1.0


class Engine:
    """Runs the orchestrations and activities of one app against one store."""

    def __init__(
        self,
        store: Store,
        index: FunctionIndex,
        worker: Worker,
        options: EngineOptions | None = None,
        work_items: WorkItemQueue | None = None,
    ) -> None:
        self.store = store
        #: the task hub's work-item queue, mirrored (devhost/durable/workitems.py)
        self.work_items = work_items
        self.index = index
        self.worker = worker
        self.options = options or EngineOptions()
        self._wake = threading.Condition()
        self._running: set[str] = set()
        self._inflight: set[int] = set()
        self._stopping = False
        self._orchestrations = ThreadPoolExecutor(
            self.options.max_concurrent_orchestrations, thread_name_prefix="devhost-orch"
        )
        self._activities = ThreadPoolExecutor(
            self.options.max_concurrent_activities, thread_name_prefix="devhost-activity"
        )
        self._dispatcher = threading.Thread(
            target=self._dispatch_loop, name="devhost-dispatcher", daemon=True
        )
        #: counters for the startup banner and tests
        self.resumed_activities = 0

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Resume unfinished work (queued activities, due events) and start dispatching."""
        if self.work_items is not None:
            self.work_items.reset()
        for row in self.store.pending_activities():
            self.resumed_activities += 1
            self._submit_activity(row.id)
        self._dispatcher.start()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        self._orchestrations.shutdown(wait=False, cancel_futures=True)
        self._activities.shutdown(wait=False, cancel_futures=True)

    def notify(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def idle(self) -> tuple[bool, int]:
        """(no episode running and no event due, activities in flight): for tests and tools."""
        with self._wake:
            episodes = bool(self._running)
            activities = len(self._inflight)
        return not episodes and not self.store.ready_instances(time.time()), activities

    # --- client operations ------------------------------------------------------------------
    def start_orchestration(
        self, name: str, instance_id: str | None, input_text: str | None
    ) -> str:
        if name not in self.index.orchestrators:
            raise UnknownOrchestrator(_no_orchestrator(name))
        instance_id = instance_id or uuid.uuid4().hex
        with self.store.transaction() as conn:
            existing = self.store.get_instance(instance_id, conn)
            if existing is not None and existing.status not in TERMINAL_STATUSES:
                raise InstanceConflict(_conflict(instance_id, existing.status))
            self._create_instance(conn, instance_id, name, input_text, parent=None)
        logger.info("orchestration %s (%s): %s", instance_id, name, PENDING)
        self.notify()
        return instance_id

    def raise_event(self, instance_id: str, event_name: str, input_text: str | None) -> str:
        """``accepted``, ``not_found`` or ``gone`` (completed, failed or terminated)."""
        raised = event(EventType.EVENT_RAISED, utcnow(), Name=event_name, Input=input_text)
        return self._deliver(instance_id, raised)

    def terminate(self, instance_id: str, reason: str | None) -> str:
        """``accepted``, ``not_found`` or ``gone``, as :meth:`raise_event`."""
        return self._deliver(instance_id, {"EventType": _TERMINATE, "Input": reason})

    def _deliver(self, instance_id: str, new_event: dict[str, Any]) -> str:
        """Queue an event for a running instance's next episode, for no particular execution:
        the extension's client clears ``ExecutionId`` on raised events and terminations, and the
        Azure Storage backend gives such a message to the instance's current generation — the
        next one, if the running episode continues as new (see :meth:`_continue_as_new`)."""
        with self.store.transaction() as conn:
            instance = self.store.get_instance(instance_id, conn)
            if instance is None:
                return "not_found"
            if instance.status in TERMINAL_STATUSES:
                return "gone"
            self.store.add_inbox(conn, instance_id, None, new_event)
        self.notify()
        return "accepted"

    def purge(self, instance_id: str) -> int:
        with self.store.transaction() as conn:
            if self.store.get_instance(instance_id, conn) is None:
                return 0
            self.store.purge_instance(conn, instance_id)
        return 1

    def purge_by(
        self, created_from: str | None, created_to: str | None, statuses: list[str] | None
    ) -> int:
        rows = self.store.query_instances(
            created_from=created_from,
            created_to=created_to,
            statuses=statuses or sorted(TERMINAL_STATUSES),
        )
        with self.store.transaction() as conn:
            for row in rows:
                self.store.purge_instance(conn, row.instance_id)
        return len(rows)

    # --- dispatching ------------------------------------------------------------------------
    def step(self, instance_id: str) -> bool:
        """Run one episode of ``instance_id`` now, in this thread, if it has due events (True if
        it did work): for tests that drive an engine they have not started, one episode at a
        time, and so decide which events share an episode."""
        return self._process(instance_id)

    def _dispatch_loop(self) -> None:
        while True:
            with self._wake:
                if self._stopping:
                    return
            try:
                now = time.time()
                for instance_id in self.store.ready_instances(now):
                    with self._wake:
                        if instance_id in self._running or self._stopping:
                            continue
                        self._running.add(instance_id)
                    self._orchestrations.submit(self._run_instance, instance_id)
                next_due = self.store.next_visible_at(now)
            except Exception:
                logger.exception("dispatcher error")
                next_due = None
            timeout = self.options.poll_interval
            if next_due is not None:
                timeout = min(timeout, max(next_due - time.time(), 0.01))
            with self._wake:
                if not self._stopping:
                    self._wake.wait(timeout)

    def _run_instance(self, instance_id: str) -> None:
        try:
            for _ in range(_EPISODES_PER_DISPATCH):
                if not self._process(instance_id):
                    break
        except Exception:
            logger.exception("orchestration %s: engine error", instance_id)
        finally:
            with self._wake:
                self._running.discard(instance_id)
                self._wake.notify_all()

    def _process(self, instance_id: str) -> bool:
        """Run one episode of ``instance_id`` if it has due events; True if it did work."""
        rows = self.store.due_inbox(instance_id)
        if not rows:
            return False
        instance = self.store.get_instance(instance_id)
        stale = [
            r
            for r in rows
            if instance is None
            or instance.status in TERMINAL_STATUSES
            or (r.execution_id is not None and r.execution_id != instance.execution_id)
        ]
        if stale:
            with self.store.transaction() as conn:
                self.store.delete_inbox(conn, [r.id for r in stale])
            rows = [r for r in rows if r not in stale]
        if instance is None or not rows:
            return bool(stale)
        terminate = next((r for r in rows if r.event.get("EventType") == _TERMINATE), None)
        if terminate is not None:
            self._terminate_now(instance, rows, terminate.event.get("Input"))
            return True
        history = self.store.get_history(instance_id)
        if not history:
            starts = [r for r in rows if r.event.get("EventType") == EventType.EXECUTION_STARTED]
            if not starts:
                return False
            rows = starts[:1] + [r for r in rows if r is not starts[0]]
        batch = rows  # every due event in one episode, as the host dequeues them
        handle = self.index.orchestrators.get(instance.name)
        if handle is None:
            result = None
        else:
            result = self.worker.run(
                run_episode,
                handle,
                EpisodeInput(
                    instance_id=instance_id,
                    name=instance.name,
                    input=instance.input,
                    parent_instance_id=instance.parent_instance_id,
                    history=history,
                    new_events=[r.event for r in batch],
                    now=utcnow(),
                    execution_id=instance.execution_id,
                    refuse=call_refusal(
                        self.index.activities,
                        self.index.orchestrators,
                        instance_id,
                        instance.parent_instance_id,
                    ),
                ),
            )
        self._commit(instance, len(history), batch, result)
        return True

    # --- committing an episode ---------------------------------------------------------------
    def _commit(
        self,
        instance: InstanceRow,
        history_length: int,
        batch: list[InboxRow],
        result: EpisodeResult | None,
    ) -> None:
        now = utcnow()
        stamp = format_timestamp(now)
        new_activities: list[int] = []
        if result is None:  # the orchestrator function disappeared from the app
            message = f"Orchestrator function '{instance.name}' does not exist in this app."
            with self.store.transaction() as conn:
                self.store.delete_inbox(conn, [r.id for r in batch])
                self._finish(conn, instance, FAILED, to_json_text(message), stamp, error=message)
            logger.info("orchestration %s (%s): %s", instance.instance_id, instance.name, FAILED)
            return
        with self.store.transaction() as conn:
            current = self.store.get_instance(instance.instance_id, conn)
            if current is None or current.execution_id != instance.execution_id:
                return  # purged or restarted while the episode ran
            self.store.delete_inbox(conn, [r.id for r in batch])
            self.store.append_history(conn, instance.instance_id, history_length, result.appended)
            for activity in result.activities:
                new_activities.append(
                    self.store.add_activity(
                        conn,
                        instance.instance_id,
                        instance.execution_id,
                        activity.task_id,
                        activity.name,
                        activity.input,
                    )
                )
            for timer in result.timers:
                self.store.add_inbox(
                    conn,
                    instance.instance_id,
                    instance.execution_id,
                    event(
                        EventType.TIMER_FIRED,
                        timer.fire_at,
                        TimerId=timer.timer_id,
                        FireAt=format_timestamp(timer.fire_at),
                    ),
                    visible_at=timer.fire_at.timestamp(),
                )
            for sub in result.sub_orchestrations:
                self._start_sub_orchestration(
                    conn, instance, sub.task_id, sub.name, sub.instance_id, sub.input
                )
            custom = result.custom_status
            if result.status == CONTINUED_AS_NEW:
                self._continue_as_new(conn, instance, result, stamp)
                new_activities.clear()
            elif result.status in (COMPLETED, FAILED):
                self._finish(
                    conn, instance, result.status, result.output, stamp, custom, result.error
                )
            else:
                self.store.update_instance(
                    conn,
                    instance.instance_id,
                    status=RUNNING,
                    custom_status=custom,
                    last_updated_time=stamp,
                )
        if result.status != instance.status or result.status in (COMPLETED, FAILED):
            logger.info(
                "orchestration %s (%s): %s", instance.instance_id, instance.name, result.status
            )
        for activity_id in new_activities:
            self._submit_activity(activity_id)
        if result.sub_orchestrations or result.status == CONTINUED_AS_NEW:
            self.notify()

    def _continue_as_new(
        self, conn: Any, instance: InstanceRow, result: EpisodeResult, stamp: str
    ) -> None:
        """Start the instance's next generation with the events Azure gives it.

        Its inbox starts, as DTFx's dispatcher writes the new history, with ``ExecutionStarted``
        and the raised events carried over (those processed after the walk reached
        ``ContinueAsNew``, :attr:`EpisodeResult.carried_over`); then come the events queued for
        no execution while the episode ran (raised events, terminations), which the Azure Storage
        backend hands to the new generation after its first episode. What was queued for the old
        execution — its timers, activity and sub-orchestration completions — is dropped, as
        messages for an execution that is no longer current are on Azure; so are the events it
        buffered without a waiter (``preserveUnprocessedEvents`` is false for the SDK's action).
        """
        later = self.store.unaddressed_inbox(conn, instance.instance_id)
        self.store.delete_instance_data(conn, instance.instance_id)
        execution_id = uuid.uuid4().hex
        self.store.update_instance(
            conn,
            instance.instance_id,
            execution_id=execution_id,
            status=RUNNING,
            input=result.continue_as_new_input,
            output=None,
            custom_status=result.custom_status,
            last_updated_time=stamp,
        )
        started = self._execution_started(
            instance.name,
            instance.instance_id,
            execution_id,
            result.continue_as_new_input,
            instance.parent_instance_id,
        )
        self.store.add_inbox(conn, instance.instance_id, execution_id, started)
        for carried in result.carried_over:
            self.store.add_inbox(conn, instance.instance_id, execution_id, carried, message=False)
        for row in later:
            self.store.add_inbox(
                conn, instance.instance_id, None, row.event, row.visible_at, message=False
            )

    def _finish(
        self,
        conn: Any,
        instance: InstanceRow,
        status: str,
        output: str | None,
        stamp: str,
        custom_status: str | None = None,
        error: str | None = None,
    ) -> None:
        fields: dict[str, Any] = {"status": status, "output": output, "last_updated_time": stamp}
        if custom_status is not None:
            fields["custom_status"] = custom_status
        self.store.update_instance(conn, instance.instance_id, **fields)
        conn.execute("DELETE FROM inbox WHERE instance_id = ?", (instance.instance_id,))
        conn.execute("DELETE FROM activities WHERE instance_id = ?", (instance.instance_id,))
        if instance.parent_instance_id is None or instance.parent_task_id is None:
            return
        now = utcnow()
        if status == COMPLETED:
            notice = event(
                EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED,
                now,
                TaskScheduledId=instance.parent_task_id,
                Result=output,
            )
        else:
            reason = (
                f"Orchestrator function '{instance.name}' failed: {error}"
                if status == FAILED
                else f"Orchestration '{instance.instance_id}' was terminated: {error or ''}"
            )
            notice = event(
                EventType.SUB_ORCHESTRATION_INSTANCE_FAILED,
                now,
                TaskScheduledId=instance.parent_task_id,
                Reason=reason,
                Details="",
            )
        self.store.add_inbox(
            conn, instance.parent_instance_id, instance.parent_execution_id, notice
        )
        self.notify()

    def _terminate_now(self, instance: InstanceRow, rows: list[InboxRow], reason: Any) -> None:
        stamp = format_timestamp(utcnow())
        with self.store.transaction() as conn:
            length = self.store.history_length(conn, instance.instance_id)
            self.store.append_history(
                conn,
                instance.instance_id,
                length,
                [event(EventType.EXECUTION_TERMINATED, utcnow(), Input=reason)],
            )
            self._finish(
                conn, instance, TERMINATED, to_json_text(reason), stamp, error=str(reason or "")
            )
        logger.info("orchestration %s (%s): %s", instance.instance_id, instance.name, TERMINATED)

    def _execution_started(
        self,
        name: str,
        instance_id: str,
        execution_id: str,
        input_text: str | None,
        parent_instance_id: str | None,
    ) -> dict[str, Any]:
        return event(
            EventType.EXECUTION_STARTED,
            utcnow(),
            Name=name,
            Input=input_text,
            Version="",
            OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": execution_id},
            ParentInstance=(
                {"OrchestrationInstance": {"InstanceId": parent_instance_id}}
                if parent_instance_id
                else None
            ),
        )

    def _create_instance(
        self,
        conn: Any,
        instance_id: str,
        name: str,
        input_text: str | None,
        parent: tuple[InstanceRow, int] | None,
    ) -> None:
        stamp = format_timestamp(utcnow())
        execution_id = uuid.uuid4().hex
        self.store.delete_instance_data(conn, instance_id)
        self.store.insert_instance(
            conn,
            InstanceRow(
                instance_id=instance_id,
                name=name,
                execution_id=execution_id,
                status=PENDING,
                input=input_text,
                output=None,
                custom_status=None,
                created_time=stamp,
                last_updated_time=stamp,
                parent_instance_id=parent[0].instance_id if parent else None,
                parent_execution_id=parent[0].execution_id if parent else None,
                parent_task_id=parent[1] if parent else None,
            ),
        )
        self.store.add_inbox(
            conn,
            instance_id,
            execution_id,
            self._execution_started(
                name,
                instance_id,
                execution_id,
                input_text,
                parent[0].instance_id if parent else None,
            ),
        )

    def _start_sub_orchestration(
        self,
        conn: Any,
        parent: InstanceRow,
        task_id: int,
        name: str,
        instance_id: str,
        input_text: str | None,
    ) -> None:
        existing = self.store.get_instance(instance_id, conn)
        problem = None
        if name not in self.index.orchestrators:
            problem = _no_orchestrator(name)
        elif existing is not None and existing.status not in TERMINAL_STATUSES:
            problem = _conflict(instance_id, existing.status)
        if problem is not None:
            self.store.add_inbox(
                conn,
                parent.instance_id,
                parent.execution_id,
                event(
                    EventType.SUB_ORCHESTRATION_INSTANCE_FAILED,
                    utcnow(),
                    TaskScheduledId=task_id,
                    Reason=problem,
                    Details="",
                ),
            )
            return
        self._create_instance(conn, instance_id, name, input_text, parent=(parent, task_id))
        logger.info("orchestration %s (%s): %s", instance_id, name, PENDING)

    # --- activities -------------------------------------------------------------------------
    def _submit_activity(self, activity_id: int) -> None:
        with self._wake:
            if activity_id in self._inflight or self._stopping:
                return
            self._inflight.add(activity_id)
        if self.work_items is not None:
            self.work_items.put(activity_id)
        self._activities.submit(self._run_activity, activity_id)

    def _run_activity(self, activity_id: int) -> None:
        try:
            row = self.store.get_activity(activity_id)
            if row is None:
                return
            self.store.mark_dispatched(activity_id)
            outcome = self._invoke_activity(row)
            with self.store.transaction() as conn:
                still_queued = conn.execute(
                    "DELETE FROM activities WHERE id = ?", (activity_id,)
                ).rowcount
                if still_queued:
                    self.store.add_inbox(conn, row.instance_id, row.execution_id, outcome)
            self.notify()
        except Exception:
            logger.exception("activity %s: engine error", activity_id)
        finally:
            if self.work_items is not None:
                self.work_items.done(activity_id)
            with self._wake:
                self._inflight.discard(activity_id)

    def _invoke_activity(self, row: ActivityRow) -> dict[str, Any]:
        activity = self.index.activities.get(row.name)
        if activity is None:
            return event(
                EventType.TASK_FAILED,
                utcnow(),
                TaskScheduledId=row.task_id,
                Reason=f"The function '{row.name}' doesn't exist or is not an activity function.",
                Details="",
            )
        try:
            value = (
                ActivityTriggerConverter.decode(
                    meta.Datum(row.input, "string"), trigger_metadata=None
                )
                if row.input is not None
                else None
            )
            kwargs: dict[str, Any] = {activity.input_name: value}
            if "context" in accepted_parameters(activity.func) and activity.input_name != "context":
                kwargs["context"] = InvocationContext(row.name)
            output = self.worker.call_blocking(activity.func, kwargs)
            result = ActivityTriggerConverter.encode(output, expected_type=None).value
        except Exception as exc:
            return event(
                EventType.TASK_FAILED,
                utcnow(),
                TaskScheduledId=row.task_id,
                Reason=f"Activity function '{row.name}' failed: {type(exc).__name__}: {exc}",
                Details=_user_traceback(exc),
            )
        return event(EventType.TASK_COMPLETED, utcnow(), TaskScheduledId=row.task_id, Result=result)


_DEVHOST_DIR = str(Path(__file__).resolve().parent.parent)


def _user_traceback(exc: BaseException) -> str:
    """The exception's traceback without devhost's own frames (what the worker would report)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_DEVHOST_DIR):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb)).strip()


def describe_instance(
    row: InstanceRow,
    history: list[dict[str, Any]] | None,
    *,
    show_input: bool,
    show_history_output: bool,
) -> dict[str, Any]:
    """The Durable HTTP API status body."""
    from devhost.durable.history import json_text_value

    body: dict[str, Any] = {
        "name": row.name,
        "instanceId": row.instance_id,
        "runtimeStatus": row.status,
        "input": json_text_value(row.input) if show_input else None,
        "customStatus": json_text_value(row.custom_status),
        "output": json_text_value(row.output),
        "createdTime": _api_time(row.created_time),
        "lastUpdatedTime": _api_time(row.last_updated_time),
    }
    if history is not None:
        body["historyEvents"] = summarize_history(history, show_input, show_history_output)
    return body


def _api_time(stamp: str) -> str:
    return stamp.split(".", maxsplit=1)[0] + "Z"


def summarize_history(
    events: list[dict[str, Any]], show_input: bool, show_output: bool
) -> list[dict[str, Any]]:
    """History as the HTTP API shows it: completions joined with their scheduling events."""
    from devhost.durable.history import json_text_value

    scheduled: dict[int, dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for evt in events:
        kind = evt.get("EventType")
        if kind in (
            EventType.TASK_SCHEDULED,
            EventType.TIMER_CREATED,
            EventType.SUB_ORCHESTRATION_INSTANCE_CREATED,
        ):
            scheduled[evt["EventId"]] = evt
            continue
        if kind in (EventType.ORCHESTRATOR_STARTED, EventType.ORCHESTRATOR_COMPLETED):
            continue
        name = EventType(kind).name.title().replace("_", "") if isinstance(kind, int) else str(kind)
        item: dict[str, Any] = {"EventType": name, "Timestamp": evt.get("Timestamp")}
        if kind == EventType.EXECUTION_STARTED:
            item["FunctionName"] = evt.get("Name")
            if show_input:
                item["Input"] = json_text_value(evt.get("Input"))
        elif kind in (EventType.TASK_COMPLETED, EventType.TASK_FAILED):
            origin = scheduled.get(evt.get("TaskScheduledId", -1), {})
            item["FunctionName"] = origin.get("Name")
            item["ScheduledTime"] = origin.get("Timestamp")
            if kind == EventType.TASK_FAILED:
                item["Reason"] = evt.get("Reason")
                item["Details"] = evt.get("Details")
            elif show_output:
                item["Result"] = json_text_value(evt.get("Result"))
        elif kind in (
            EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED,
            EventType.SUB_ORCHESTRATION_INSTANCE_FAILED,
        ):
            origin = scheduled.get(evt.get("TaskScheduledId", -1), {})
            item["FunctionName"] = origin.get("Name")
            item["InstanceId"] = origin.get("InstanceId")
            item["ScheduledTime"] = origin.get("Timestamp")
            if kind == EventType.SUB_ORCHESTRATION_INSTANCE_FAILED:
                item["Reason"] = evt.get("Reason")
            elif show_output:
                item["Result"] = json_text_value(evt.get("Result"))
        elif kind == EventType.TIMER_FIRED:
            item["FireAt"] = evt.get("FireAt")
        elif kind == EventType.EVENT_RAISED:
            item["Name"] = evt.get("Name")
            if show_input:
                item["Input"] = json_text_value(evt.get("Input"))
        elif kind == EventType.EXECUTION_COMPLETED:
            item["OrchestrationStatus"] = evt.get("OrchestrationStatus")
            if show_output:
                item["Result"] = json_text_value(evt.get("Result"))
        elif kind == EventType.EXECUTION_TERMINATED:
            item["Reason"] = evt.get("Input")
        out.append(item)
    return out
