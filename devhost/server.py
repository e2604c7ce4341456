"""The HTTP front: HTTP-triggered functions, the Durable HTTP API, dev endpoints."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
from aiohttp import web

from devhost.app_loader import FunctionIndex, HttpFunction
from devhost.durable import api as durable_api
from devhost.durable.api import DurableUrls
from devhost.durable.engine import Engine
from devhost.invoker import InvocationContext, Worker, accepted_parameters
from devhost.metrics import Metrics
from devhost.triggers.listeners import TriggerListeners
from devhost.webhooks import WebhookLog

#: The largest request body the Functions host takes (the HTTP trigger's request length limit,
#: 100 MB); a larger one never reaches the app.
PLATFORM_MAX_REQUEST_BYTES = 100 * 1024 * 1024

logger = logging.getLogger("devhost.http")

RPC_PREFIX = "/_devhost/rpc/"
#: The host's admin API for running a non-HTTP function once (``POST .../<function name>``).
ADMIN_FUNCTIONS_PREFIX = "/admin/functions/"
OutboxProvider = Callable[[], list[dict[str, Any]]]


def error_body(status: int, error: str, message: str, path: str) -> dict[str, Any]:
    """The service's error envelope ``{timestamp, status, error, message, path}``."""
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "status": status,
        "error": error,
        "message": message,
        "path": path,
    }


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


class DevHost:
    """Serves one indexed app."""

    def __init__(
        self,
        index: FunctionIndex,
        engine: Engine,
        worker: Worker,
        urls: DurableUrls,
        rpc_token: str,
        outbox: OutboxProvider | None = None,
        function_keys: Mapping[str, frozenset[str]] | None = None,
        triggers: TriggerListeners | None = None,
        webhooks: WebhookLog | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.index = index
        #: The app's metrics and spans (``GET /_dev/metrics``).
        self.metrics = metrics
        #: The app's webhook attempts (``GET /_dev/webhooks``).
        self.webhooks = webhooks
        #: The app's queue and timer triggers (``GET /_dev/triggers``, the admin API).
        self.triggers = triggers
        self._admin_runs: set[asyncio.Task[bool]] = set()
        #: Per-function keys: function name -> values that open it besides the host key.
        self.function_keys = dict(function_keys or {})
        self.engine = engine
        self.worker = worker
        self.urls = urls
        self.rpc_token = rpc_token
        self.outbox = outbox

    def make_app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._access_log], client_max_size=PLATFORM_MAX_REQUEST_BYTES
        )
        # Every path reaches _dispatch, which answers unmatched ones with the JSON envelope.
        # ``[\s\S]``, not ``.``: aiohttp matches the decoded path, and ``.`` stops at a "\n"
        # (``%0A``), which aiohttp would then answer itself with a plain-text 404.
        app.router.add_route("*", r"/{tail:[\s\S]*}", self._dispatch)
        return app

    @web.middleware
    async def _access_log(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            logger.info(
                "%s %s %d %.1fms", request.method, self._logged_path(request), status, elapsed
            )

    def _logged_path(self, request: web.Request) -> str:
        """What the access log names: a function's route *template*, never the path itself — a
        route value can be personal data (``/api/v1/suppressions/{email}``), and the Functions
        host, too, logs which function ran, not the URL. devhost's own paths are logged as they
        are (the RPC token masked); a path no function matches is not logged at all."""
        path = request.path
        if path.startswith(RPC_PREFIX):
            return RPC_PREFIX + "***/" + path[len(RPC_PREFIX) :].partition("/")[2]
        if path.startswith(("/_dev/", durable_api.WEBHOOK_PREFIX, ADMIN_FUNCTIONS_PREFIX)):
            return path
        found = self._route(request)
        if found is None:
            return "(no function matches)"
        return f"/{found[0].route.template} ({found[0].name})"

    def _authorised(self, request: web.Request, function: str | None = None) -> bool:
        """The host key opens everything; a per-function key only its own function (as on
        Azure: a function-level route takes a host key or one of that function's keys)."""
        supplied = (
            request.headers.get("x-functions-key") or request.query.get("code") or ""
        ).encode()
        if hmac.compare_digest(supplied, self.urls.key.encode()):
            return True
        keys = self.function_keys.get(function, frozenset()) if function else frozenset()
        return any(hmac.compare_digest(supplied, key.encode()) for key in keys)

    def _unauthorised(self, request: web.Request) -> web.Response:
        return _json(
            error_body(
                401,
                "Unauthorized",
                "A valid function key is required "
                "(x-functions-key header or code query parameter).",
                request.path,
            ),
            401,
        )

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/_dev/health":
            return _json({"state": "Running"})
        if path.startswith(RPC_PREFIX):
            token, _, rest = path[len(RPC_PREFIX) :].partition("/")
            if not hmac.compare_digest(token.encode(), self.rpc_token.encode()):
                return self._unauthorised(request)
            return await durable_api.handle(request, rest, self.engine, self.urls)
        if path == durable_api.WEBHOOK_PREFIX or path.startswith(durable_api.WEBHOOK_PREFIX + "/"):
            if not self._authorised(request):
                return self._unauthorised(request)
            rest = path[len(durable_api.WEBHOOK_PREFIX) :]
            return await durable_api.handle(request, rest, self.engine, self.urls)
        if path == "/_dev/outbox" and request.method == "GET":
            if not self._authorised(request):
                return self._unauthorised(request)
            messages = self.outbox() if self.outbox else []
            return _json({"messages": messages})
        if path == "/_dev/inflight" and request.method == "GET":
            if not self._authorised(request):
                return self._unauthorised(request)
            return _json(
                {
                    "sesCallsInFlight": _ses_calls_in_flight(),
                    "unwrittenLedgerRecords": _unwritten_ledger_records(),
                }
            )
        if path == "/_dev/stats" and request.method == "GET":
            if not self._authorised(request):
                return self._unauthorised(request)
            store = self.engine.store
            return _json(
                {
                    "historyEventsWritten": store.history_events_written,
                    "historyBytesWritten": store.history_bytes_written,
                }
            )
        if path == "/_dev/webhooks" and request.method == "GET":
            if not self._authorised(request):
                return self._unauthorised(request)
            return _json(self.webhooks.to_json() if self.webhooks else {"attempts": []})
        if path == "/_dev/metrics" and request.method == "GET":
            if not self._authorised(request):
                return self._unauthorised(request)
            return _json(self.metrics.to_json() if self.metrics else {"enabled": False})
        if path == "/_dev/triggers" and request.method == "GET":
            if not self._authorised(request):
                return self._unauthorised(request)
            if self.triggers is None:
                return _json({"triggers": [], "errors": []})
            return _json(self.triggers.to_json())
        if path.startswith(ADMIN_FUNCTIONS_PREFIX) and request.method == "POST":
            if not self._authorised(request):
                return self._unauthorised(request)
            return await self._admin_invoke(request, path[len(ADMIN_FUNCTIONS_PREFIX) :])
        return await self._http_function(request)

    async def _admin_invoke(self, request: web.Request, name: str) -> web.Response:
        """The host's ``POST /admin/functions/<name>`` with ``{"input": "..."}``: runs a queue
        or timer function once, in the background, and answers 202 at once."""
        if self.triggers is None or self.triggers.find(name) is None:
            known = any(f.name.lower() == name.lower() for f in self.index.http)
            message = (
                "HTTP functions are invoked at their route."
                if known
                else "No queue or timer function has this name."
            )
            status, error = (400, "Bad Request") if known else (404, "Not Found")
            return _json(error_body(status, error, message, request.path), status)
        try:
            body = await request.json() if await request.read() else {}
            text = body.get("input", "") if isinstance(body, dict) else None
        except ValueError:
            text = None
        if not isinstance(text, str):
            return _json(
                error_body(
                    400, "Bad Request", 'The body must be {"input": "<text>"}.', request.path
                ),
                400,
            )
        run = asyncio.create_task(self.triggers.invoke(name, text))
        self._admin_runs.add(run)
        run.add_done_callback(self._admin_runs.discard)
        return web.Response(status=202)

    # --- HTTP-triggered functions -------------------------------------------------------------
    def _route(self, request: web.Request) -> tuple[HttpFunction, dict[str, str]] | None:
        raw_path = request.raw_path.split("?", 1)[0]
        for function in self.index.http:
            params = function.route.match(raw_path)
            if params is None:
                continue
            if function.methods is not None and request.method.upper() not in function.methods:
                continue
            return function, params
        return None

    async def _http_function(self, request: web.Request) -> web.StreamResponse:
        found = self._route(request)
        if found is None:
            return _json(
                error_body(404, "Not Found", "No function matches this route.", request.path), 404
            )
        function, route_params = found
        if function.auth_level != "anonymous" and not self._authorised(request, function.name):
            return self._unauthorised(request)
        body = await request.read()
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        params: dict[str, str] = {}
        for name, value in request.query.items():
            params.setdefault(name, value)
        host = request.headers.get("Host") or self.urls.origin.split("://", 1)[1]
        http_request = func.HttpRequest(
            method=request.method.upper(),
            url=f"{request.scheme}://{host}{request.raw_path}",
            headers=headers,
            params=params,
            route_params=route_params,
            body=body,
        )
        kwargs: dict[str, Any] = {function.trigger_name: http_request}
        for client in function.client_names:
            kwargs[client] = self.urls.client_binding()
        accepted = accepted_parameters(function.func)
        if "context" in accepted and "context" not in kwargs:
            kwargs["context"] = InvocationContext(function.name)
        try:
            result = await self.worker.call_async(function.func, kwargs)
        except Exception:
            logger.exception("function %s raised", function.name)
            return _json(
                error_body(500, "Internal Server Error", "The function failed.", request.path), 500
            )
        return to_web_response(result)


def to_web_response(result: Any) -> web.Response:
    """Write a function's return value as the worker would."""
    if isinstance(result, func.HttpResponse):
        headers = {k: v for k, v in result.headers.items()}
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
        headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        if content_type is None:
            content_type = f"{result.mimetype}; charset={result.charset}"
        response = web.Response(status=result.status_code, body=result.get_body(), headers=headers)
        response.headers["Content-Type"] = content_type
        return response
    if result is None:
        return web.Response(status=204)
    if isinstance(result, (bytes, bytearray)):
        return web.Response(status=200, body=bytes(result), content_type="application/octet-stream")
    if isinstance(result, str):
        return web.Response(status=200, text=result, content_type="text/plain")
    return _json(result)


def _unwritten_ledger_records() -> int | None:
    """Successes the app gathered for its ledger and has not written yet (group commit)."""
    runner = sys.modules.get("sendmail.sending.runner")
    gauge = getattr(runner, "unwritten_records", None)
    return int(gauge()) if callable(gauge) else None


def _ses_calls_in_flight() -> int | None:
    """The app's SES calls started and not yet settled (answered and recorded), if it sends."""
    ses = sys.modules.get("sendmail.sending.ses")
    gauge = getattr(ses, "calls_in_flight", None)
    return int(gauge()) if callable(gauge) else None
