"""``python -m devhost``: run ``function_app.app`` on 127.0.0.1 with a local durable engine."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

from aiohttp import web

from devhost.app_loader import index_functions, load_app
from devhost.config import function_key, load_host_json, load_local_settings, per_function_keys
from devhost.durable.api import DurableUrls
from devhost.durable.engine import Engine, EngineOptions
from devhost.durable.store import Store
from devhost.embedded import start_embedded
from devhost.invoker import Worker
from devhost.metrics import Metrics
from devhost.server import RPC_PREFIX, DevHost
from devhost.triggers.listeners import TriggerListeners
from devhost.triggers.queues import HostConfigError, QueuesOptions
from devhost.webhooks import WebhookLog
from sendmail.platform.logs import quiet_sdk_loggers

logger = logging.getLogger("devhost")

LOOPBACK = "127.0.0.1"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    parser.add_argument("--port", type=int, default=7071, help="port on 127.0.0.1 (default 7071)")
    parser.add_argument(
        "--state", type=Path, default=None, help="state directory (default <app dir>/.devhost)"
    )
    parser.add_argument(
        "--no-emulators", action="store_true", help="do not start the SES and SMTP emulators"
    )
    parser.add_argument(
        "--app-dir", type=Path, default=Path.cwd(), help="directory of function_app.py (default .)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("DEVHOST_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiosmtpd logs every connection and command at INFO: the sink's own lines say enough.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    # As the app does in the worker (function_app.py), before any SDK logs: no address in logs.
    quiet_sdk_loggers()
    app_dir = args.app_dir.resolve()
    state_dir = (args.state or app_dir / ".devhost").resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)

    # Environment first: the app reads its settings once, at import.
    applied = load_local_settings(app_dir)
    if applied:
        logger.info("local.settings.json: %d value(s) applied", len(applied))
    key, key_source = function_key(state_dir)
    embedded = start_embedded(
        state_dir,
        emulators=not args.no_emulators,
        app_origin=f"http://{LOOPBACK}:{args.port}",
        function_key=key,
    )
    try:
        return _serve(args, app_dir, state_dir, key, key_source, embedded)
    finally:
        embedded.stop()


def _serve(args, app_dir: Path, state_dir: Path, key: str, key_source: str, embedded) -> int:
    host_settings = load_host_json(app_dir)
    index = index_functions(load_app(app_dir), route_prefix=host_settings.route_prefix)
    for name in index.unsupported:
        logger.warning("function %s is not supported by devhost and is not served", name)

    store = Store(state_dir / "durable.sqlite3")
    worker = Worker(sync_threads=int(os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT") or 16))
    engine = Engine(
        store,
        index,
        worker,
        EngineOptions(
            max_concurrent_activities=host_settings.max_concurrent_activities,
            max_concurrent_orchestrations=host_settings.max_concurrent_orchestrations,
        ),
        work_items=_work_item_queue(host_settings.task_hub),
    )
    rpc_token = secrets.token_urlsafe(24)
    origin = f"http://{LOOPBACK}:{args.port}"
    urls = DurableUrls(
        origin=origin,
        key=key,
        task_hub=host_settings.task_hub,
        rpc_path=f"{RPC_PREFIX}{rpc_token}/",
    )
    function_keys = per_function_keys(app_dir, (f.name for f in index.http))
    try:
        queues_options = QueuesOptions.from_host_json(host_settings.queues)
    except HostConfigError as e:
        raise SystemExit(f"host.json: {e}") from e
    triggers = TriggerListeners(
        index, queues_options, worker.call_async, state_dir, client_binding=urls.client_binding
    )
    webhooks = WebhookLog()
    webhooks.listen()
    metrics = Metrics()  # the app's telemetry in memory, and a line per finished send
    metrics.listen()
    host = DevHost(
        index,
        engine,
        worker,
        urls,
        rpc_token,
        outbox=embedded.outbox,
        function_keys=function_keys,
        triggers=triggers,
        webhooks=webhooks,
        metrics=metrics,
    )

    async def run() -> None:
        runner = web.AppRunner(host.make_app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, LOOPBACK, args.port, reuse_address=True)
        await site.start()
        engine.start()
        await triggers.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        _banner(
            origin, key, key_source, state_dir, index.summary(), embedded, engine, triggers, metrics
        )
        await stop.wait()
        logger.info("shutting down")
        await triggers.stop()
        engine.stop()
        await runner.cleanup()

    try:
        asyncio.run(run())
    finally:
        worker.stop()
    return 0


def _banner(
    origin, key, key_source, state_dir, functions, embedded, engine, triggers, metrics
) -> None:
    lines = [
        f"devhost listening on {origin}",
        f"  base URL:       {origin}/api/",
        f"  function key:   {key}  ({key_source}; send as x-functions-key or ?code=)",
        f"  state dir:      {state_dir}",
        f"  functions:      {functions}",
        f"  triggers:       {triggers.summary()} (GET /_dev/triggers)",
        f"  emulators:      {', '.join(embedded.active()) or 'none'}",
        f"  metrics:        {'GET /_dev/metrics' if metrics.listening else 'off'}",
    ]
    lines += [f"  note:           {note}" for note in embedded.notes]
    if engine.resumed_activities:
        lines.append(f"  resumed:        {engine.resumed_activities} unfinished activit(ies)")
    print("\n".join(lines), flush=True)


def _work_item_queue(task_hub: str):
    """The hub's work-item queue in the local storage (Azurite), mirrored by the engine; None
    when no local queue storage is configured."""
    connection = os.environ.get("AzureWebJobsStorage", "")  # noqa: SIM112 (its name)
    if "QueueEndpoint=" not in connection and "UseDevelopmentStorage" not in connection:
        return None
    from azure.storage.queue import QueueClient

    from devhost.durable.workitems import WorkItemQueue
    from sendmail.platform.storage import resolve_development_storage

    name = f"{task_hub.lower()}-workitems"
    queue = QueueClient.from_connection_string(
        resolve_development_storage(connection), queue_name=name, retry_total=1
    )
    logger.info("work-item queue mirrored in local storage: %s", name)
    return WorkItemQueue(queue)
