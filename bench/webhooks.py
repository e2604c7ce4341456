"""Webhooks through devhost: delivery latency and throughput, and a slow endpoint's cost to sending.

1. **Latency and throughput**: :data:`EVENTS` events put on the app's webhook queue at once (in
   devhost's Azurite, as the app queues them), delivered by the app's queue trigger to a receiver
   on loopback that answers at once: time from queueing to receipt (median, p90, max) and events
   per second.
2. **A slow endpoint's cost to sending**: one send of :data:`RECIPIENTS` at 300/s against the SES
   look-alike, without webhooks, then with an endpoint that takes 5 s to answer and
   :data:`BACKLOG` events waiting for it: the achieved rate of each and their ratio (should be 1:
   deliveries never run on the sends' threads or task hub).

``python -m bench.webhooks`` (in ``make bench``); results in ``docs/benchmarks/webhooks.json``
and between ``<!-- webhooks:begin -->`` and ``<!-- webhooks:end -->`` in docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.sending import (
    LATENCY_MS,
    OUT_DIR,
    SENDER,
    app_against,
    post_send,
    recipients,
    wait_done,
    write_between_markers,
)

EVENTS = 300
RECIPIENTS = 6000
BACKLOG = 200
RATE = 300.0
SLOW_SECONDS = 5.0


class Receiver:
    """An endpoint on loopback answering 204 after ``delay`` seconds; receipt times by id."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.received: dict[str, float] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver.lock:
                    receiver.received.setdefault(self.headers["webhook-id"], time.monotonic())
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def webhook_env(url: str) -> dict[str, str]:
    from sendmail.feedback.webhooks.signing import new_secret

    return {
        "SENDMAIL_WEBHOOK_URLS": url,
        "SENDMAIL_WEBHOOK_SECRET": new_secret(),
        "SENDMAIL_WEBHOOK_ALLOW_LOOPBACK_HTTP": "true",
    }


def queue_events(state_dir: Path, url: str, count: int, prefix: str) -> dict[str, float]:
    """Put ``count`` events on the app's webhook queue in devhost's Azurite; queueing time by
    webhook id."""
    from azure.storage.queue import QueueClient, TextBase64EncodePolicy

    from sendmail.feedback.webhooks.endpoints import parse_endpoint
    from sendmail.feedback.webhooks.events import send_event
    from sendmail.feedback.webhooks.outbox import QUEUE_NAME, Pending

    connection = (state_dir / "azurite" / "connection-string").read_text()
    queue = QueueClient.from_connection_string(
        connection, QUEUE_NAME, message_encode_policy=TextBase64EncodePolicy()
    )
    with contextlib.suppress(Exception):
        queue.create_queue()
    fingerprint = parse_endpoint(url, allow_loopback_http=True).fingerprint
    queued: dict[str, float] = {}
    from datetime import UTC, datetime

    for n in range(count):
        event = send_event(
            "send.completed",
            send_id=f"{prefix}{n:05d}",
            timestamp=datetime.now(UTC),
            state="completed",
        )
        message = Pending(
            id=event.id, type=event.type, body=event.body().decode(), endpoint=fingerprint
        )
        queued[event.id] = time.monotonic()
        queue.send_message(message.model_dump_json())
    return queued


def latency() -> dict[str, Any]:
    from devhost.process import REPO_ROOT, DevhostProcess

    receiver = Receiver()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        state = Path(tmp) / "state"
        host = DevhostProcess(
            REPO_ROOT,
            state,
            env={**webhook_env(receiver.url), "DEVHOST_LOG_LEVEL": "WARNING"},
            emulators=True,
        )
        host.start(timeout=120)
        try:
            queued = queue_events(state, receiver.url, EVENTS, "l")
            deadline = time.monotonic() + 300
            while len(receiver.received) < EVENTS and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            host.stop()
            host.session.close()
    waits = sorted(receiver.received[i] - queued[i] for i in queued if i in receiver.received)
    span = max(receiver.received.values()) - min(queued.values())
    receiver.server.shutdown()
    return {
        "events": EVENTS,
        "delivered": len(waits),
        "latency_median_s": round(statistics.median(waits), 3),
        "latency_p90_s": round(waits[int(len(waits) * 0.9) - 1], 3),
        "latency_max_s": round(waits[-1], 3),
        "events_per_s": round(len(waits) / span, 1),
    }


@contextlib.contextmanager
def lookalike() -> Iterator[Any]:
    from bench.ses_lookalike import start_lookalike

    with start_lookalike(
        rate=RATE, latency_ms=LATENCY_MS, verified=[SENDER], daily_quota=10_000_000, seed=7
    ) as handle:
        handle.configure(
            rate=RATE, burst_seconds=1, latency_ms=LATENCY_MS, jitter_ms=5, throttle=0, errors=0
        )
        yield handle


def send_rate(handle: Any, env: dict[str, str], backlog: bool, url: str) -> dict[str, Any]:
    to = recipients(RECIPIENTS, prefix="w" if backlog else "v")
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        app_against(handle, Path(tmp) / "state", **env) as host,
    ):
        handle.reset()
        if backlog:
            queue_events(Path(tmp) / "state", url, BACKLOG, "b")
            time.sleep(2)  # the trigger has picked up its batch: a full pool of slow attempts
        started = time.monotonic()
        status = wait_done(host, post_send(host, to), timeout=RECIPIENTS / RATE * 4 + 120)
        elapsed = time.monotonic() - started
    return {
        "recipients": RECIPIENTS,
        "seconds": round(elapsed, 2),
        "achieved_per_s": round(RECIPIENTS / elapsed, 1),
        "sent": status["progress"]["sent"],
    }


def slow_endpoint() -> dict[str, Any]:
    receiver = Receiver(delay=SLOW_SECONDS)
    with lookalike() as handle:
        plain = send_rate(handle, {}, False, receiver.url)
        print(json.dumps({"without_webhooks": plain}), flush=True)
        slow = send_rate(handle, webhook_env(receiver.url), True, receiver.url)
        print(json.dumps({"slow_endpoint": slow}), flush=True)
    receiver.server.shutdown()
    return {
        "rate": RATE,
        "endpoint_seconds": SLOW_SECONDS,
        "backlog": BACKLOG,
        "without_webhooks": plain,
        "slow_endpoint": slow,
        "ratio": round(slow["achieved_per_s"] / plain["achieved_per_s"], 3),
    }


def table(results: dict[str, Any]) -> str:
    lines = []
    lat = results.get("latency")
    if lat:
        lines += [
            f"{lat['events']} events queued at once, delivered by the queue trigger to an endpoint "
            f"on loopback that answers at once: {lat['delivered']} delivered, "
            f"{lat['events_per_s']} events/s; from queueing to receipt median "
            f"{lat['latency_median_s']} s, p90 {lat['latency_p90_s']} s, max "
            f"{lat['latency_max_s']} s.",
        ]
    slow = results.get("slow_endpoint")
    if slow:
        lines += [
            "",
            "| one send of 6,000 at 300/s | achieved /s | seconds |",
            "|---|---:|---:|",
            f"| without webhooks | {slow['without_webhooks']['achieved_per_s']} | "
            f"{slow['without_webhooks']['seconds']} |",
            f"| an endpoint taking {slow['endpoint_seconds']:g} s per answer, "
            f"{slow['backlog']} events waiting for it | "
            f"{slow['slow_endpoint']['achieved_per_s']} | {slow['slow_endpoint']['seconds']} |",
            "",
            f"Slow endpoint ÷ none: {slow['ratio']}.",
        ]
    return "\n".join(lines)


def main() -> None:
    results: dict[str, Any] = {"latency": latency()}
    print(json.dumps(results["latency"]), flush=True)
    results["slow_endpoint"] = slow_endpoint()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "webhooks.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    write_between_markers("webhooks", table(results))
    print(table(results))


if __name__ == "__main__":
    main()
