"""Stand-ins for the Durable runtime where nothing real can run inside a unit test.

``FakeOrchestrationContext`` hands out real SDK ``TaskBase`` objects and completes them when the
orchestrator yields ``task_any``, so ``orchestrator_generator_wrapper`` can drive a real
orchestrator generator. ``FakeDurableClient`` records starts and serves statuses built with the
SDK's own ``DurableOrchestrationStatus.from_json``. End-to-end behaviour against a real replaying
host is covered by the devhost tests.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus
from azure.durable_functions.models.Task import TaskBase, TaskState

Outcome = Callable[[str, dict[str, Any]], Any]


class _LazyTask(TaskBase):  # type: ignore[misc]
    """A task completed when the orchestrator first reads it (a directly yielded task).

    Like the SDK, reading a failed task's result raises its exception into the orchestrator.
    """

    def __init__(self, id_: int, complete: Callable[[TaskBase], None]) -> None:
        self._complete_now = complete
        self._value: Any = None
        super().__init__(id_, [])

    @property
    def result(self) -> Any:
        if self.state is TaskState.RUNNING:
            self._complete_now(self)
        if self.state is TaskState.FAILED and isinstance(self._value, Exception):
            raise self._value
        return self._value

    @result.setter
    def result(self, value: Any) -> None:
        self._value = value


class FakeOrchestrationContext:
    """Completes activities when the orchestrator waits; ``pick`` chooses which finishes first."""

    def __init__(
        self,
        job: dict[str, Any],
        outcome: Outcome,
        *,
        instance_id: str = "instance-1",
        pick: Callable[[list[TaskBase]], TaskBase] = lambda tasks: tasks[0],
    ) -> None:
        self._job = job
        self._outcome = outcome
        self._pick = pick
        self.instance_id = instance_id
        self.is_replaying = False
        self.scheduled: list[tuple[str, dict[str, Any]]] = []
        self.custom_statuses: list[Any] = []
        self.window_sizes: list[int] = []
        self._calls: dict[TaskBase, tuple[str, dict[str, Any]]] = {}

    def get_input(self) -> dict[str, Any]:
        return self._job

    def _task(self, name: str, payload: dict[str, Any]) -> TaskBase:
        task = _LazyTask(len(self.scheduled), self._complete)
        self.scheduled.append((name, payload))
        self._calls[task] = (name, payload)
        return task

    def call_activity_with_retry(self, name: str, retry: Any, payload: dict[str, Any]) -> TaskBase:
        return self._task(name, payload)

    def call_activity(self, name: str, payload: dict[str, Any]) -> TaskBase:
        task = self._task(name, payload)
        self._complete(task)
        return task

    def _complete(self, task: TaskBase) -> None:
        if task.state is not TaskState.RUNNING:
            return
        name, payload = self._calls[task]
        value = self._outcome(name, payload)
        task.set_value(is_error=isinstance(value, Exception), value=value)

    def task_any(self, tasks: list[TaskBase]) -> TaskBase:
        self.window_sizes.append(len(tasks))
        chosen = self._pick(tasks)
        self._complete(chosen)
        winner = TaskBase(-1, [])
        winner.set_value(is_error=False, value=chosen)
        return winner

    def set_custom_status(self, status: Any) -> None:
        self.custom_statuses.append(status)


def status(
    instance_id: str,
    name: str,
    runtime_status: str,
    *,
    output: Any = None,
    custom_status: Any = None,
    input_: Any = None,
) -> DurableOrchestrationStatus:
    return DurableOrchestrationStatus.from_json(
        {
            "name": name,
            "instanceId": instance_id,
            "createdTime": "2026-11-29T10:00:00Z",
            "lastUpdatedTime": "2026-11-29T10:00:05Z",
            "input": input_,
            "output": output,
            "runtimeStatus": runtime_status,
            "customStatus": custom_status,
        }
    )


class FakeDurableClient:
    """Records ``start_new`` calls; status reads get the statuses a test scripted."""

    def __init__(self) -> None:
        self.started: list[tuple[str, Any]] = []
        self.statuses: dict[str, list[DurableOrchestrationStatus]] = {}
        self.status_reads: list[tuple[str, bool]] = []
        self.instance_ids: list[str] = []
        #: (instance id, event name, JSON data) of every event raised, in order.
        self.raised: list[tuple[str, str, str]] = []
        #: Answers to raise the next events with (202 when empty: 404 for unknown instances).
        self.raise_answers: list[int] = []
        self._function_invocation_id = "fake-invocation"

    async def start_new(
        self,
        orchestration_function_name: str,
        instance_id: str | None = None,
        client_input: Any = None,
    ) -> str:
        self.started.append((orchestration_function_name, client_input))
        # Statuses a test scripted before the start are keyed "inst{n}" (the n-th start): they
        # become the status of the id the app chose.
        alias = f"inst{len(self.started)}"
        started = instance_id or alias
        if started != alias and alias in self.statuses:
            self.statuses.setdefault(started, self.statuses.pop(alias))
        self.instance_ids.append(started)
        # as the task hub does: the instance exists (Pending) once it was started
        self.statuses.setdefault(started, [status(started, orchestration_function_name, "Pending")])
        return started

    # What api.emails.read_status uses of the SDK's client: the RPC base URL and the GET.
    class _Bindings:
        rpc_base_url = "http://127.0.0.1:7071/runtime/webhooks/durabletask/"

    _orchestration_bindings = _Bindings()

    def _get_raise_event_url(
        self, instance_id: str, event_name: str, task_hub: str | None, connection: str | None
    ) -> str:
        base = self._orchestration_bindings.rpc_base_url
        return f"{base}instances/{instance_id}/raiseEvent/{event_name}"

    async def _post_async_request(
        self, url: str, data: Any = None, function_invocation_id: str | None = None
    ) -> tuple[int, Any]:
        """Serve ``POST .../instances/{id}/raiseEvent/{name}`` as the Durable HTTP API does:
        202, or 404 for an instance it does not know (scripted answers first)."""
        path = urllib.parse.urlsplit(url).path
        instance_id, name = path.rsplit("/instances/", 1)[1].split("/raiseEvent/")
        if self.raise_answers:
            return self.raise_answers.pop(0), None
        self.raised.append((urllib.parse.unquote(instance_id), name, str(data)))
        return (202 if instance_id in self.statuses else 404), None

    async def _get_async_request(self, url: str) -> tuple[int, Any]:
        """Serve ``GET .../instances/{id}?...`` as the Durable HTTP API does (showInput=true
        unless the query says false); record (instance id, showInput) per read."""
        parsed = urllib.parse.urlsplit(url)
        instance_id = urllib.parse.unquote(parsed.path.rsplit("/instances/", 1)[1])
        query = dict(urllib.parse.parse_qsl(parsed.query))
        show_input = query.get("showInput", "true").lower() != "false"
        self.status_reads.append((instance_id, show_input))
        queue = self.statuses.get(instance_id)
        if not queue:
            return 404, None
        current = queue[0] if len(queue) == 1 else queue.pop(0)
        body = current.to_json()
        if not show_input:
            body = {**body, "input": None}
        return 200, body
