"""The Durable Functions HTTP API (``/runtime/webhooks/durabletask/...``) and the client binding.

The same handlers serve the documented webhook API (authorised by the local key) and the RPC
endpoint the Python SDK's ``DurableOrchestrationClient`` calls through ``rpcBaseUrl``
(authorised by a per-process token in its path, as the real host's RPC endpoint is only
reachable from the worker).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web

from devhost.durable.engine import (
    Engine,
    InstanceConflict,
    UnknownOrchestrator,
    describe_instance,
)
from devhost.durable.history import (
    COMPLETED,
    FAILED,
    TERMINAL_STATUSES,
    TERMINATED,
    format_timestamp,
    json_text_value,
    normalize_json_input,
    parse_timestamp,
)

WEBHOOK_PREFIX = "/runtime/webhooks/durabletask"
CONTINUATION_HEADER = "x-ms-continuation-token"


@dataclass(frozen=True)
class DurableUrls:
    """Where devhost serves the Durable APIs, for binding JSON and management payloads."""

    origin: str  # http://127.0.0.1:7071
    key: str
    task_hub: str
    rpc_path: str  # /_devhost/rpc/<token>/

    @property
    def webhook_base(self) -> str:
        return f"{self.origin}{WEBHOOK_PREFIX}"

    @property
    def rpc_base(self) -> str:
        return f"{self.origin}{self.rpc_path}"

    def management_urls(self, instance_id: str, origin: str | None = None) -> dict[str, str]:
        base = f"{origin or self.origin}{WEBHOOK_PREFIX}/instances/{quote(instance_id, safe='')}"
        query = f"taskHub={quote(self.task_hub)}&connection=Storage&code={quote(self.key)}"
        return {
            "id": instance_id,
            "statusQueryGetUri": f"{base}?{query}",
            "sendEventPostUri": f"{base}/raiseEvent/{{eventName}}?{query}",
            "terminatePostUri": f"{base}/terminate?reason={{text}}&{query}",
            "rewindPostUri": f"{base}/rewind?reason={{text}}&{query}",
            "purgeHistoryDeleteUri": f"{base}?{query}",
            "restartPostUri": f"{base}/restart?{query}",
            "suspendPostUri": f"{base}/suspend?reason={{text}}&{query}",
            "resumePostUri": f"{base}/resume?reason={{text}}&{query}",
        }

    def client_binding(self) -> str:
        """The ``durableClient`` binding data the Functions host passes to the worker."""
        creation = f"{self.webhook_base}/orchestrators/{{functionName}}[/{{instanceId}}]"
        return json.dumps(
            {
                "taskHubName": self.task_hub,
                "creationUrls": {
                    "createNewInstancePostUri": f"{creation}?code={self.key}",
                    "createAndWaitOnNewInstancePostUri": (
                        f"{creation}?timeout={{timeoutInSeconds}}"
                        f"&pollingInterval={{intervalInSeconds}}&code={self.key}"
                    ),
                },
                "managementUrls": self.management_urls("INSTANCEID"),
                "baseUrl": self.webhook_base,
                "requiredQueryStringParameters": f"code={self.key}",
                "rpcBaseUrl": self.rpc_base,
                "httpBaseUrl": "",
                "maxGrpcMessageSizeInBytes": 0,
                "grpcHttpClientTimeout": "00:01:40",
            }
        )


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body, ensure_ascii=False),
        content_type="application/json",
        headers=headers,
    )


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


async def _read_json_body(request: web.Request) -> tuple[bool, str | None]:
    """``(ok, json_text)``; an empty body is ``None``."""
    raw = await request.read()
    if not raw.strip():
        return True, None
    try:
        value = json.loads(raw)
    except ValueError:
        return False, None
    return True, normalize_json_input(value)


def _origin(request: web.Request, urls: DurableUrls) -> str:
    host = request.headers.get("Host")
    return f"{request.scheme}://{host}" if host else urls.origin


def _time_arg(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if not value:
        return None
    return format_timestamp(parse_timestamp(value))


async def handle(
    request: web.Request, subpath: str, engine: Engine, urls: DurableUrls
) -> web.Response:
    """Serve ``subpath`` (what follows ``.../durabletask/``) of the Durable HTTP API."""
    parts = [p for p in subpath.split("/") if p]
    method = request.method.upper()
    if parts and parts[0] == "orchestrators" and len(parts) in (2, 3) and method == "POST":
        return await _start(request, engine, urls, parts[1], parts[2] if len(parts) == 3 else None)
    if parts and parts[0] == "instances":
        if len(parts) == 1:
            if method == "GET":
                return _query(request, engine)
            if method == "DELETE":
                return _purge_by(request, engine)
        elif len(parts) == 2:
            if method == "GET":
                return _status(request, engine, parts[1])
            if method == "DELETE":
                return _purge(engine, parts[1])
        elif len(parts) == 3 and parts[2] == "terminate" and method == "POST":
            return _terminate(request, engine, parts[1])
        elif len(parts) == 4 and parts[2] == "raiseEvent" and method == "POST":
            return await _raise_event(request, engine, parts[1], parts[3])
        elif len(parts) == 3 and parts[2] in ("rewind", "suspend", "resume", "restart"):
            return _json({"message": f"devhost does not support {parts[2]}."}, 501)
    if parts and parts[0] == "entities":
        return _json({"message": "devhost does not support durable entities."}, 501)
    return _json({"message": "Not found."}, 404)


async def _start(
    request: web.Request, engine: Engine, urls: DurableUrls, name: str, instance_id: str | None
) -> web.Response:
    ok, input_text = await _read_json_body(request)
    if not ok:
        return _json(
            {
                "Message": "Request content is not valid JSON.",
                "ExceptionMessage": "Request content is not valid JSON.",
            },
            400,
        )
    try:
        started = engine.start_orchestration(name, instance_id, input_text)
    except UnknownOrchestrator as exc:
        return _json({"Message": str(exc), "ExceptionMessage": str(exc)}, 400)
    except InstanceConflict as exc:
        return _json({"Message": str(exc), "ExceptionMessage": str(exc)}, 409)
    payload = urls.management_urls(started, _origin(request, urls))
    timeout = request.query.get("timeout")
    if timeout and timeout.isdigit():
        interval = float(request.query.get("pollingInterval") or 1)
        deadline = time.monotonic() + float(timeout)
        while time.monotonic() < deadline:
            row = engine.store.get_instance(started)
            if row is not None and row.status in TERMINAL_STATUSES:
                if row.status == COMPLETED:
                    return _json(json_text_value(row.output), 200)
                return _json(
                    describe_instance(row, None, show_input=False, show_history_output=False), 200
                )
            await asyncio.sleep(min(max(interval, 0.05), 5.0))
    return _json(
        payload,
        202,
        headers={"Location": payload["statusQueryGetUri"], "Retry-After": "10"},
    )


def _status(request: web.Request, engine: Engine, instance_id: str) -> web.Response:
    row = engine.store.get_instance(instance_id)
    if row is None:
        return _json({"message": f"No instance with ID '{instance_id}' found."}, 404)
    history = engine.store.get_history(instance_id) if _flag(request, "showHistory") else None
    body = describe_instance(
        row,
        history,
        show_input=request.query.get("showInput", "true").lower() != "false",
        show_history_output=_flag(request, "showHistoryOutput"),
    )
    if row.status == COMPLETED:
        return _json(body, 200)
    if row.status == FAILED and _flag(request, "returnInternalServerErrorOnFailure"):
        return _json(body, 500)
    if row.status in (FAILED, TERMINATED):
        return _json(body, 400)
    return _json(body, 202)


def _encode_token(row: Any) -> str:
    return base64.urlsafe_b64encode(
        json.dumps([row.created_time, row.instance_id]).encode()
    ).decode()


def _decode_token(token: str | None) -> tuple[str, str] | None:
    if not token:
        return None
    try:
        created, instance_id = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error, TypeError):
        return None
    return str(created), str(instance_id)


def _statuses(request: web.Request) -> list[str] | None:
    raw = request.query.get("runtimeStatus")
    if not raw:
        return None
    return [s.strip() for s in raw.split(",") if s.strip()]


def _query(request: web.Request, engine: Engine) -> web.Response:
    top = request.query.get("top")
    limit = int(top) if top and top.isdigit() and int(top) > 0 else None
    after = _decode_token(request.headers.get(CONTINUATION_HEADER))
    rows = engine.store.query_instances(
        created_from=_time_arg(request, "createdTimeFrom"),
        created_to=_time_arg(request, "createdTimeTo"),
        statuses=_statuses(request),
        prefix=request.query.get("instanceIdPrefix"),
        after=after,
        limit=limit + 1 if limit else None,
    )
    headers: dict[str, str] = {}
    if limit is not None and len(rows) > limit:
        rows = rows[:limit]
        headers[CONTINUATION_HEADER] = _encode_token(rows[-1])
    show_input = _flag(request, "showInput")
    body = [
        describe_instance(r, None, show_input=show_input, show_history_output=False) for r in rows
    ]
    return _json(body, 200, headers)


def _purge(engine: Engine, instance_id: str) -> web.Response:
    deleted = engine.purge(instance_id)
    if not deleted:
        return _json({"instancesDeleted": 0}, 404)
    return _json({"instancesDeleted": deleted}, 200)


def _purge_by(request: web.Request, engine: Engine) -> web.Response:
    deleted = engine.purge_by(
        _time_arg(request, "createdTimeFrom"),
        _time_arg(request, "createdTimeTo"),
        _statuses(request),
    )
    return _json({"instancesDeleted": deleted}, 200 if deleted else 404)


def _terminate(request: web.Request, engine: Engine, instance_id: str) -> web.Response:
    outcome = engine.terminate(instance_id, request.query.get("reason"))
    if outcome == "not_found":
        return _json({"message": f"No instance with ID '{instance_id}' found."}, 404)
    if outcome == "gone":
        return _json({"message": f"Instance '{instance_id}' has already completed."}, 410)
    return web.Response(status=202)


async def _raise_event(
    request: web.Request, engine: Engine, instance_id: str, name: str
) -> web.Response:
    ok, input_text = await _read_json_body(request)
    if not ok:
        return _json({"message": "Only application/json request content is supported"}, 400)
    outcome = engine.raise_event(instance_id, name, input_text)
    if outcome == "not_found":
        return _json({"message": f"No instance with ID '{instance_id}' found."}, 404)
    if outcome == "gone":
        return _json({"message": f"Instance '{instance_id}' has already completed."}, 410)
    return web.Response(status=202)
