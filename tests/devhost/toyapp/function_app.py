"""A toy Durable Functions app for devhost's tests: every feature devhost claims, small.

Activities that the tests count write one line per execution to the file named by
``TOYAPP_ACTIVITY_LOG`` (``start <key>`` before the work, ``end <key>`` after).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from datetime import timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from tests.devhost.toyapp.triggers import triggers  # the queue and timer triggers

# --- activities -------------------------------------------------------------------------------
activities = df.Blueprint()

_attempts: dict[str, int] = {}
_attempts_lock = threading.Lock()
_log_lock = threading.Lock()


def _log(line: str) -> None:
    path = os.environ.get("TOYAPP_ACTIVITY_LOG")
    if not path:
        return
    with _log_lock:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


@activities.activity_trigger(input_name="value")
def double(value: int) -> int:
    return value * 2


@activities.activity_trigger(input_name="payload")
async def slow_echo(payload: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(float(payload.get("delay", 0.01)))
    return {"echo": payload.get("value")}


@activities.activity_trigger(input_name="payload")
def flaky(payload: dict[str, Any]) -> str:
    """Fails the first ``fail_times`` calls for ``key``, then answers."""
    key = str(payload["key"])
    with _attempts_lock:
        _attempts[key] = _attempts.get(key, 0) + 1
        attempt = _attempts[key]
    if attempt <= int(payload["fail_times"]):
        raise RuntimeError(f"flaky failure {attempt} for {key}")
    return f"ok after {attempt}"


@activities.activity_trigger(input_name="reason")
def boom(reason: str) -> None:
    raise ValueError(f"boom: {reason}")


@activities.activity_trigger(input_name="item")
def record(item: dict[str, Any]) -> str:
    key = f"{item['run']}/{item['n']}"
    _log(f"start {key}")
    time.sleep(float(item.get("delay", 0.2)))
    _log(f"end {key}")
    return key


@activities.activity_trigger(input_name="text")
def shout(text: str) -> str:
    return text.upper()


#: Steps that a test in this process holds: ``held_step`` waits for its key's event to be set.
HELD_STEPS: dict[str, threading.Event] = {}


@activities.activity_trigger(input_name="key")
def held_step(key: str) -> str:
    """Returns its key; waits first (at most 30 s) while a test holds that key."""
    held = HELD_STEPS.get(key)
    if held is not None:
        held.wait(30)
    return key


# --- orchestrators ----------------------------------------------------------------------------
orchestrators = df.Blueprint()


@orchestrators.orchestration_trigger(context_name="context")
def sequence(context: df.DurableOrchestrationContext):
    start = context.get_input() or 1
    first = yield context.call_activity("double", start)
    second = yield context.call_activity("double", first)
    third = yield context.call_activity("double", second)
    return [first, second, third]


@orchestrators.orchestration_trigger(context_name="context")
def shout_through(context: df.DurableOrchestrationContext):
    """Its input through an activity and back: as large as the caller makes it."""
    return (yield context.call_activity("shout", context.get_input()))


@orchestrators.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext):
    count = int(context.get_input() or 5)
    tasks = [
        context.call_activity("slow_echo", {"value": i, "delay": 0.01 * (count - i)})
        for i in range(count)
    ]
    results = yield context.task_all(tasks)
    return [r["echo"] for r in results]


@orchestrators.orchestration_trigger(context_name="context")
def with_retry(context: df.DurableOrchestrationContext):
    """Input: {"key", "fail_times", "attempts"}; returns the activity's answer or the error."""
    job = context.get_input()
    options = df.RetryOptions(
        first_retry_interval_in_milliseconds=50, max_number_of_attempts=job["attempts"]
    )
    try:
        answer = yield context.call_activity_with_retry("flaky", options, job)
    except Exception as exc:
        return {"error": str(exc)}
    after = yield context.call_activity("shout", answer)
    return {"answer": after}


@orchestrators.orchestration_trigger(context_name="context")
def parallel_retries(context: df.DurableOrchestrationContext):
    """Two retried activities and a plain one in one task_all: ids must interleave correctly."""
    key = context.get_input()
    options = df.RetryOptions(first_retry_interval_in_milliseconds=30, max_number_of_attempts=4)
    results = yield context.task_all(
        [
            context.call_activity_with_retry(
                "flaky", options, {"key": f"{key}-a", "fail_times": 2}
            ),
            context.call_activity("double", 21),
            context.call_activity_with_retry(
                "flaky", options, {"key": f"{key}-b", "fail_times": 1}
            ),
        ]
    )
    tail = yield context.call_activity("shout", "done")
    return [*results, tail]


@orchestrators.orchestration_trigger(context_name="context")
def timer(context: df.DurableOrchestrationContext):
    seconds = float(context.get_input() or 1)
    started = context.current_utc_datetime
    yield context.create_timer(started + timedelta(seconds=seconds))
    return (context.current_utc_datetime - started).total_seconds()


@orchestrators.orchestration_trigger(context_name="context")
def parent(context: df.DurableOrchestrationContext):
    first = yield context.call_sub_orchestrator("sequence", 3)
    options = df.RetryOptions(first_retry_interval_in_milliseconds=50, max_number_of_attempts=3)
    second = yield context.call_sub_orchestrator_with_retry(
        "with_retry", options, {"key": f"{context.instance_id}-sub", "fail_times": 1, "attempts": 2}
    )
    failure: str | None
    try:
        yield context.call_sub_orchestrator("failing", "from parent")
    except Exception as exc:
        failure = str(exc)
    else:
        failure = None
    return {"first": first, "second": second, "failure": failure}


@orchestrators.orchestration_trigger(context_name="context")
def failing(context: df.DurableOrchestrationContext):
    yield context.call_activity("boom", context.get_input() or "no reason")
    return "unreachable"


@orchestrators.orchestration_trigger(context_name="context")
def approval(context: df.DurableOrchestrationContext):
    """Waits for "approve" or a timeout (input: seconds)."""
    seconds = float(context.get_input() or 30)
    context.set_custom_status({"stage": "waiting"})
    deadline = context.create_timer(context.current_utc_datetime + timedelta(seconds=seconds))
    event = context.wait_for_external_event("approve")
    winner = yield context.task_any([event, deadline])
    if winner == event:
        deadline.cancel()
        context.set_custom_status({"stage": "approved"})
        return {"approved": event.result}
    context.set_custom_status({"stage": "timed out"})
    return {"approved": None}


@orchestrators.orchestration_trigger(context_name="context")
def counter(context: df.DurableOrchestrationContext):
    """continue_as_new until the input reaches 3."""
    value = int(context.get_input() or 0)
    doubled = yield context.call_activity("double", value)
    if value < 3:
        context.continue_as_new(value + 1)
        return None
    return {"value": value, "doubled": doubled}


@orchestrators.orchestration_trigger(context_name="context")
def relay(context: df.DurableOrchestrationContext):
    """A lane that waits for "go" before each step and continues as new every ``every`` steps.

    Input ``{"step", "steps", "every", "patience", "got"}``: before each step (the ``held_step``
    activity, keyed ``s<step>``) it waits for a "go" event at most ``patience`` seconds and
    records the event's input, or None when none came. Returns what every wait got.
    """
    job = context.get_input()
    step, got = job["step"], list(job["got"])
    for _ in range(job["every"]):
        go = context.wait_for_external_event("go")
        patience = context.create_timer(
            context.current_utc_datetime + timedelta(seconds=job["patience"])
        )
        winner = yield context.task_any([go, patience])
        if winner == go:
            patience.cancel()
            got.append(go.result)
        else:
            got.append(None)
        yield context.call_activity("held_step", f"s{step}")
        step += 1
        if step == job["steps"]:
            return got
    context.continue_as_new({**job, "step": step, "got": got})
    return None


@orchestrators.orchestration_trigger(context_name="context")
def waits(context: df.DurableOrchestrationContext):
    """Waits for "go" ``input`` times, each wait followed by a ``held_step`` (keyed ``w<n>``);
    returns what every wait got."""
    got = []
    for n in range(int(context.get_input())):
        got.append((yield context.wait_for_external_event("go")))
        yield context.call_activity("held_step", f"w{n}")
    return got


@orchestrators.orchestration_trigger(context_name="context")
def batch(context: df.DurableOrchestrationContext):
    """Fan out ``parallel`` recorded activities, then run ``serial`` more one by one."""
    job = context.get_input()
    run, delay = job["run"], job.get("delay", 0.2)
    first = yield context.task_all(
        [
            context.call_activity("record", {"run": run, "n": n, "delay": delay})
            for n in range(job["parallel"])
        ]
    )
    done = list(first)
    for n in range(job["parallel"], job["parallel"] + job["serial"]):
        context.set_custom_status({"done": len(done)})
        done.append((yield context.call_activity("record", {"run": run, "n": n, "delay": delay})))
    return {"count": len(done), "keys": done}


# --- HTTP -------------------------------------------------------------------------------------
http = df.Blueprint(http_auth_level=func.AuthLevel.FUNCTION)


@http.route(route="hello/{who}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def hello(req: func.HttpRequest) -> func.HttpResponse:
    who = req.route_params["who"]
    return func.HttpResponse(f"hello {who}{req.params.get('punct', '')}", mimetype="text/plain")


@http.route(route="block/{seconds}", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def block(req: func.HttpRequest) -> func.HttpResponse:
    """Blocks the worker's event loop, deliberately (a blocking call in an async function)."""
    time.sleep(float(req.route_params["seconds"]))
    return func.HttpResponse("unblocked")


@http.route(route="echo/{id:int}/{rest?}", methods=["GET", "POST", "PUT"])
async def echo(req: func.HttpRequest) -> func.HttpResponse:
    body = {
        "method": req.method,
        "url": req.url,
        "params": dict(req.params),
        "route": dict(req.route_params),
        "header": req.headers.get("x-toy"),
        "body": req.get_body().decode("utf-8"),
    }
    return func.HttpResponse(
        json.dumps(body), status_code=201, mimetype="application/json", headers={"X-Echo": "1"}
    )


@http.route(route="orchestrators/{name}", methods=["POST"])
@http.durable_client_input(client_name="client")
async def start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    body = req.get_body()
    payload = json.loads(body) if body else None
    instance_id = await client.start_new(
        req.route_params["name"], req.params.get("instance"), payload
    )
    response: func.HttpResponse = client.create_check_status_response(req, instance_id)
    return response


@http.route(route="run/{name}", methods=["POST"])
@http.durable_client_input(client_name="client")
async def run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    body = req.get_body()
    instance_id = await client.start_new(
        req.route_params["name"], None, json.loads(body) if body else None
    )
    response: func.HttpResponse = await client.wait_for_completion_or_create_check_status_response(
        req, instance_id, timeout_in_milliseconds=20000, retry_interval_in_milliseconds=100
    )
    return response


@http.route(route="client/{instance_id}", methods=["GET", "DELETE"])
@http.durable_client_input(client_name="client")
async def client_ops(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    instance_id = req.route_params["instance_id"]
    if req.method == "DELETE":
        purged = await client.purge_instance_history(instance_id)
        return func.HttpResponse(
            json.dumps({"deleted": purged.instances_deleted}), mimetype="application/json"
        )
    status = await client.get_status(instance_id, show_history=True, show_input=True)
    if not status:
        return func.HttpResponse(
            json.dumps({"found": False}), status_code=404, mimetype="application/json"
        )
    return func.HttpResponse(json.dumps(status.to_json(), default=str), mimetype="application/json")


@http.route(route="client/{instance_id}/{action}", methods=["POST"])
@http.durable_client_input(client_name="client")
async def client_actions(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    instance_id, action = req.route_params["instance_id"], req.route_params["action"]
    if action == "terminate":
        await client.terminate(instance_id, "stopped by test")
    elif action == "approve":
        await client.raise_event(instance_id, "approve", json.loads(req.get_body() or b"null"))
    else:
        return func.HttpResponse(status_code=400)
    return func.HttpResponse(status_code=202)


@http.route(route="instances", methods=["GET"])
@http.durable_client_input(client_name="client")
async def list_instances(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    statuses = await client.get_status_by(
        runtime_status=[
            df.OrchestrationRuntimeStatus(s)
            for s in req.params.get("status", "Completed").split(",")
        ]
    )
    return func.HttpResponse(
        json.dumps(sorted(s.instance_id for s in statuses)), mimetype="application/json"
    )


app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(activities)
app.register_functions(orchestrators)
app.register_functions(http)
app.register_functions(triggers)
