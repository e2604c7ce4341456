"""An SES look-alike server of our own: SES's wire protocol, rate limit and failures, under load.

moto's SES server answers instantly, has no rate limit and always reports the sandbox quota, so
it cannot show how a sender behaves against the real service under load. This server runs as
its own process (it outlives a SIGKILLed process under test and does not share its GIL) and is
driven by unmodified boto3 clients through ``endpoint_url``.

What it models of SES
    - SESv2 ``SendEmail`` (``POST /v2/email/outbound-emails``, rest-json): ``{"MessageId"}``,
      unique per accepted call. Recipients are To+Cc+Bcc (at most 50); quotas count recipients.
    - SESv2 ``GetAccount`` and SESv1 ``GetSendQuota`` (query protocol, XML): the configured
      quota and rate, what was sent, production access and sending enabled.
    - SESv2 ``GetEmailIdentity`` and ``ListEmailIdentities`` (one page), for the app's
      preflight: the ``verified`` identities, verified for sending (with ``*``: any identity
      asked about; none listed); another is 404 ``NotFoundException``.
    - Sender verification: a ``FromEmailAddress`` (or a Raw message's ``From``) that is not a
      verified address or on a verified domain is 400 ``MessageRejected`` ("Email address is not
      verified. ..."). ``*`` in ``verified`` accepts every sender.
    - The sending rate as SES applies it: a token bucket refilled at ``rate`` per second holding
      ``rate x burst_seconds`` (at least 1), so short bursts pass and a sustained excess does
      not. A call needs one whole token and takes one per recipient (the balance may go
      negative, as SES lets a multi-recipient call through and then refuses the next ones).
      Without a token: 429 ``TooManyRequestsException`` "Maximum sending rate exceeded.".
      Refused calls cost neither tokens nor daily quota.
    - The daily quota (``daily_quota`` recipients, -1 = unlimited; nothing rolls off, there is
      no 24-hour window): once it is used up, 400 ``LimitExceededException`` "Daily message
      quota exceeded.". That code is what SESv2 clients are seen to receive; AWS's guide only
      says "a throttling error" with that message, and SESv1 answered ``Throttling``.
    - Injected faults on ``SendEmail``, each with its own probability, drawn from one seeded
      generator (four draws per call whatever happens, so a seed replays the same faults for the
      same order of calls): ``throttle`` (the same 429), ``errors`` (503 ``ServiceUnavailable``
      or 500 ``InternalFailure``, half each), ``drop_before`` (the connection is closed without
      an answer and nothing is sent) and ``drop_after`` (the send is accepted and recorded, then
      the connection is closed without an answer: the ambiguous case). botocore reports both
      drops the same way (``ConnectionClosedError``): a client cannot tell them apart.
    - Latency on every SES answer (and drop): ``latency_ms`` plus uniform +-``jitter_ms``, as an
      asyncio sleep after the decision, so concurrency is unbounded.
    A call is decided when it arrives, in this order: drop_before, injected throttle, injected
    5xx, a malformed body (400 ``BadRequestException``), more than 50 recipients or an
    unverified sender (``MessageRejected``), the daily quota, the rate; then it is accepted.

What it does not model
    Signatures (any credentials pass), the sandbox (recipients are never checked), a rolling
    24-hour window, SESv1 sending, ``SendBulkEmail``, templates (accepted, never rendered),
    suppression lists, bounces and events, configuration sets (the name is ignored), TLS, and the
    API throttling of the quota reads.

Accounting, over HTTP under ``/_lookalike/`` (see :class:`Lookalike`): counters, per-recipient
delivery counts and duplicates, accepted messages, the highest concurrency seen, when the latest
``SendEmail`` call arrived (``last_call_monotonic``, whatever its outcome), a timeline in
0.1 s buckets, the configuration (changeable at run time) and a reset. Every call is exactly one
of: accepted, throttled_rate, throttled_injected, errors_5xx, dropped_before, rejected,
quota_exceeded, bad_requests; dropped_after is counted in accepted too.

``python -m bench.ses_lookalike --port 0 --rate 100 --latency-ms 50`` prints one JSON line
(``endpoint_url``, ``pid``, ``started_monotonic``, ``config``) once it listens;
:func:`start_lookalike` does that from Python. ``--capacity 100,300,1000`` measures how many
calls a second it sustains instead (see :func:`measure_capacity`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
RATE_EXCEEDED = "Maximum sending rate exceeded."
DAILY_QUOTA_EXCEEDED = "Daily message quota exceeded."
MAX_RECIPIENTS = 50
BUCKET_SECONDS = 0.1
_SES_V1_NS = "http://ses.amazonaws.com/doc/2010-12-01/"
_REGION = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/")
#: An SES operation decides at once: a response, or None to drop the connection unanswered.
_Operation = Callable[[web.Request, bytes], web.Response | None]
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclasses.dataclass
class LookalikeConfig:
    """What the server models; every field can be changed at run time (``configure``)."""

    rate: float = 14.0
    burst_seconds: float = 1.0
    latency_ms: float = 50.0
    jitter_ms: float = 0.0
    throttle: float = 0.0
    errors: float = 0.0
    drop_before: float = 0.0
    drop_after: float = 0.0
    daily_quota: int = 50_000
    verified: list[str] = dataclasses.field(default_factory=lambda: ["se@aifactory.page"])
    seed: int | None = None

    def updated(self, changes: dict[str, Any]) -> LookalikeConfig:
        """A copy with ``changes`` applied; ValueError names what is wrong."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        values = {**dataclasses.asdict(self), **changes}
        casts: dict[str, Any] = {
            "daily_quota": int,
            "verified": _identities,
            "seed": lambda v: None if v is None else int(v),
        }
        try:
            new = LookalikeConfig(**{k: casts.get(k, float)(v) for k, v in values.items()})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid setting: {exc}") from exc
        if new.rate <= 0 or new.burst_seconds <= 0:
            raise ValueError("rate and burst_seconds must be positive")
        if new.latency_ms < 0 or new.jitter_ms < 0 or new.daily_quota < -1:
            raise ValueError("latency_ms and jitter_ms must be >= 0, daily_quota >= -1")
        for name in ("throttle", "errors", "drop_before", "drop_after"):
            if not 0.0 <= getattr(new, name) <= 1.0:
                raise ValueError(f"{name} is a probability: 0 to 1")
        return new


def _identities(value: str | list[str]) -> list[str]:
    """Verified addresses and domains, from a list or a comma-separated string."""
    items = value.split(",") if isinstance(value, str) else value
    return [str(item).strip().lower() for item in items if str(item).strip()]


class TokenBucket:
    """SES's sending rate: ``rate`` tokens a second, at most ``capacity`` kept."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate, self.capacity = rate, max(1.0, capacity)
        self.tokens, self._last = self.capacity, now

    def resize(self, rate: float, capacity: float, now: float) -> None:
        self.refill(now)
        self.rate, self.capacity = rate, max(1.0, capacity)
        self.tokens = min(self.tokens, self.capacity)

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self._last) * self.rate)
        self._last = now

    def take(self, cost: int, now: float) -> bool:
        """Whether a call of ``cost`` recipients may go now (then it is paid for)."""
        self.refill(now)
        if self.tokens < 1.0:
            return False
        self.tokens -= cost
        return True


class Timeline:
    """Counts per :data:`BUCKET_SECONDS` since ``start`` and the highest concurrency in each."""

    _KEYS = ("calls", "accepted", "throttled", "errors", "dropped")

    def __init__(self, start: float) -> None:
        self.start = start
        self._counts: dict[int, dict[str, int]] = {}
        self._last_level: dict[int, int] = {}  # concurrency after the bucket's last event

    def _index(self, now: float) -> int:
        return max(0, int((now - self.start) / BUCKET_SECONDS))

    def count(self, key: str, now: float) -> None:
        bucket = self._counts.setdefault(self._index(now), dict.fromkeys(self._KEYS, 0))
        bucket[key] += 1

    def level(self, in_flight: int, now: float) -> None:
        index = self._index(now)
        bucket = self._counts.setdefault(index, dict.fromkeys(self._KEYS, 0))
        bucket["in_flight"] = max(bucket.get("in_flight", 0), in_flight)
        self._last_level[index] = in_flight

    def to_json(self, now: float, width: float = BUCKET_SECONDS) -> list[dict[str, float]]:
        """Every bucket from ``start`` to ``now`` (empty ones too), ``width`` seconds each."""
        factor = max(1, round(width / BUCKET_SECONDS))
        rows: list[dict[str, float]] = []
        level = 0
        for index in range(self._index(now) + 1):
            counts = self._counts.get(index, {})
            if index % factor == 0:
                rows.append({"t": round(index * BUCKET_SECONDS, 3), "in_flight": 0})
                rows[-1].update(dict.fromkeys(self._KEYS, 0))
            row = rows[-1]
            for key in self._KEYS:
                row[key] += counts.get(key, 0)
            row["in_flight"] = max(row["in_flight"], level, counts.get("in_flight", 0))
            level = self._last_level.get(index, level)
        return rows


class Lookalike:
    """The server's state and its aiohttp handlers (one event loop: no locks needed)."""

    _COUNTERS = (
        "calls",
        "accepted",
        "throttled_rate",
        "throttled_injected",
        "errors_5xx",
        "dropped_before",
        "dropped_after",
        "rejected",
        "quota_exceeded",
        "bad_requests",
    )

    def __init__(self, config: LookalikeConfig) -> None:
        self.config = config
        self._rng = random.Random()  # noqa: S311 - faults: four draws per SendEmail call
        self._jitter_rng = random.Random()  # noqa: S311 - latency: one draw per answer
        self._seed()
        self.started_wall = time.time()
        self.in_flight = 0
        self._reset(time.monotonic())

    def _seed(self) -> None:
        seed = self.config.seed
        self._rng.seed(seed)
        self._jitter_rng.seed(None if seed is None else f"jitter-{seed}")

    def _reset(self, now: float) -> None:
        self.started_monotonic = now
        self.counters = dict.fromkeys(self._COUNTERS, 0)
        self.other_calls = {
            "GetAccount": 0,
            "GetSendQuota": 0,
            "GetEmailIdentity": 0,
            "ListEmailIdentities": 0,
        }
        self.sent_recipients = 0  # what SentLast24Hours reports
        self.deliveries: dict[str, int] = {}
        self.messages: list[dict[str, Any]] = []
        self.last_call: float | None = None  # when the latest SendEmail arrived (monotonic)
        self.max_in_flight = self.in_flight
        self.timeline = Timeline(now)
        capacity = self.config.rate * self.config.burst_seconds
        self.bucket = TokenBucket(self.config.rate, capacity, now)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v2/email/outbound-emails", self._ses(self.send_email))
        app.router.add_get("/v2/email/account", self._ses(self.get_account))
        app.router.add_get("/v2/email/identities/{identity}", self._ses(self.get_email_identity))
        # ListEmailIdentities: botocore's current path, and the one it used before
        app.router.add_post("/v2/email/list-identities", self._ses(self.list_email_identities))
        app.router.add_get("/v2/email/identities", self._ses(self.list_email_identities))
        app.router.add_post("/", self._ses(self.query_api))
        app.router.add_get("/_lookalike/stats", self.stats)
        app.router.add_get("/_lookalike/recipients", self.recipients)
        app.router.add_get("/_lookalike/messages", self.message_list)
        app.router.add_get("/_lookalike/timeline", self.timeline_json)
        app.router.add_get("/_lookalike/config", self.config_json)
        app.router.add_post("/_lookalike/config", self.configure)
        app.router.add_post("/_lookalike/reset", self.reset)
        return app

    # --- SES --------------------------------------------------------------------------------

    def _ses(self, operation: _Operation) -> _Handler:
        """Wrap an SES operation: concurrency accounting, then latency before any answer."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            self._level(+1)
            try:
                try:
                    body = await request.read()
                except ConnectionError:  # the client is gone (killed) before its call arrived
                    return web.Response()
                response = operation(request, body)
                jitter = self._jitter_rng.uniform(-1, 1) * self.config.jitter_ms
                delay = self.config.latency_ms + jitter
                await asyncio.sleep(max(0.0, delay) / 1000)
                if response is None:  # a dropped connection: no answer at all
                    if request.transport is not None:
                        request.transport.close()
                    return web.Response()
                return response
            finally:
                self._level(-1)

        return wrapped

    def _level(self, change: int) -> None:
        self.in_flight += change
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.timeline.level(self.in_flight, time.monotonic())

    def _count(self, counter: str, timeline_key: str | None, now: float) -> None:
        self.counters[counter] += 1
        if timeline_key:
            self.timeline.count(timeline_key, now)

    def send_email(self, request: web.Request, body: bytes) -> web.Response | None:
        """Decide one ``SendEmail`` call at once (no awaits: the state changes atomically)."""
        now, config = time.monotonic(), self.config
        self.last_call = now
        self._count("calls", "calls", now)
        throttle, error, drop_before, drop_after = (self._rng.random() for _ in range(4))
        if drop_before < config.drop_before:
            self._count("dropped_before", "dropped", now)
            return None
        if throttle < config.throttle:
            self._count("throttled_injected", "throttled", now)
            return _json_error(429, "TooManyRequestsException", RATE_EXCEEDED)
        if error < config.errors:
            self._count("errors_5xx", "errors", now)
            if error < config.errors / 2:
                return _json_error(503, "ServiceUnavailable", "Service unavailable.")
            return _json_error(500, "InternalFailure", "The request processing has failed.")
        try:
            sender, recipients = _parse_send(body)
        except ValueError as exc:
            self._count("bad_requests", None, now)
            return _json_error(400, "BadRequestException", str(exc))
        if len(recipients) > MAX_RECIPIENTS:
            self._count("rejected", None, now)
            return _json_error(400, "MessageRejected", "Recipient count exceeds 50.")
        if not self._verified(sender):
            self._count("rejected", None, now)
            region = _REGION.search(request.headers.get("Authorization", ""))
            message = (
                "Email address is not verified. The following identities failed the check in "
                f"region {(region.group(1) if region else 'us-east-1').upper()}: {sender}"
            )
            return _json_error(400, "MessageRejected", message)
        if 0 <= config.daily_quota <= self.sent_recipients:
            self._count("quota_exceeded", None, now)
            return _json_error(400, "LimitExceededException", DAILY_QUOTA_EXCEEDED)
        if not self.bucket.take(len(recipients), now):
            self._count("throttled_rate", "throttled", now)
            return _json_error(429, "TooManyRequestsException", RATE_EXCEEDED)
        message_id = f"0100{int(time.time() * 1000):012x}-{uuid.uuid4()}-000000"
        self._count("accepted", "accepted", now)
        self.sent_recipients += len(recipients)
        for recipient in recipients:
            key = recipient.lower()
            self.deliveries[key] = self.deliveries.get(key, 0) + 1
        elapsed = round(now - self.started_monotonic, 4)
        self.messages.append({"MessageId": message_id, "Recipients": recipients, "t": elapsed})
        if drop_after < config.drop_after:
            self._count("dropped_after", "dropped", now)
            return None
        return _json({"MessageId": message_id})

    def _verified(self, sender: str) -> bool:
        sender = sender.lower()
        verified = self.config.verified
        return "*" in verified or sender in verified or sender.rpartition("@")[2] in verified

    def _quota(self) -> dict[str, float]:
        return {
            "Max24HourSend": float(self.config.daily_quota),
            "MaxSendRate": float(self.config.rate),
            "SentLast24Hours": float(self.sent_recipients),
        }

    def get_account(self, request: web.Request, body: bytes) -> web.Response:
        self.other_calls["GetAccount"] += 1
        return _json(
            {
                "DedicatedIpAutoWarmupEnabled": False,
                "EnforcementStatus": "HEALTHY",
                "ProductionAccessEnabled": True,
                "SendQuota": self._quota(),
                "SendingEnabled": True,
                "SuppressionAttributes": {"SuppressedReasons": []},
            }
        )

    def get_email_identity(self, request: web.Request, body: bytes) -> web.Response:
        self.other_calls["GetEmailIdentity"] += 1
        identity = request.match_info["identity"]
        verified = self.config.verified
        if "*" not in verified and identity.lower() not in verified:
            return _json_error(404, "NotFoundException", f"Email identity {identity} not found.")
        return _json(
            {
                "IdentityType": "EMAIL_ADDRESS" if "@" in identity else "DOMAIN",
                "FeedbackForwardingStatus": True,
                "VerifiedForSendingStatus": True,
                "VerificationStatus": "SUCCESS",
                "DkimAttributes": {"SigningEnabled": False, "Status": "NOT_STARTED"},
                "Policies": {},
                "Tags": [],
            }
        )

    def list_email_identities(self, request: web.Request, body: bytes) -> web.Response:
        self.other_calls["ListEmailIdentities"] += 1
        identities = [
            {
                "IdentityType": "EMAIL_ADDRESS" if "@" in name else "DOMAIN",
                "IdentityName": name,
                "SendingEnabled": True,
                "VerificationStatus": "SUCCESS",
            }
            for name in self.config.verified
            if name != "*"
        ]
        return _json({"EmailIdentities": identities})

    def query_api(self, request: web.Request, body: bytes) -> web.Response:
        """SESv1's query protocol: only ``GetSendQuota``."""
        form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
        if form.get("Action") != "GetSendQuota":
            action = escape(form.get("Action", ""))
            return _xml_error(400, "InvalidAction", f"Action {action} is not supported here.")
        self.other_calls["GetSendQuota"] += 1
        fields = "".join(f"<{k}>{v}</{k}>" for k, v in self._quota().items())
        request_id = str(uuid.uuid4())
        return _xml(
            f'<GetSendQuotaResponse xmlns="{_SES_V1_NS}"><GetSendQuotaResult>{fields}'
            f"</GetSendQuotaResult><ResponseMetadata><RequestId>{request_id}</RequestId>"
            "</ResponseMetadata></GetSendQuotaResponse>",
            request_id=request_id,
        )

    # --- control ----------------------------------------------------------------------------

    def stats_json(self) -> dict[str, Any]:
        now = time.monotonic()
        self.bucket.refill(now)
        return {
            **self.counters,
            "recipients_accepted": sum(self.deliveries.values()),
            "distinct_recipients": len(self.deliveries),
            "duplicates": sum(n - 1 for n in self.deliveries.values()),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "sent_last_24_hours": self.sent_recipients,
            "tokens": round(self.bucket.tokens, 3),
            "other_calls": dict(self.other_calls),
            "started_monotonic": self.started_monotonic,
            "started_wall": self.started_wall,
            "last_call_monotonic": self.last_call,
            "uptime": round(now - self.started_monotonic, 3),
        }

    async def stats(self, request: web.Request) -> web.Response:
        return _json(self.stats_json())

    async def recipients(self, request: web.Request) -> web.Response:
        return _json({"recipients": self.deliveries})

    async def message_list(self, request: web.Request) -> web.Response:
        return _json({"messages": self.messages})

    async def timeline_json(self, request: web.Request) -> web.Response:
        width = float(request.query.get("width", BUCKET_SECONDS))
        rows = self.timeline.to_json(time.monotonic(), width)
        return _json({"started_monotonic": self.started_monotonic, "buckets": rows})

    async def config_json(self, request: web.Request) -> web.Response:
        return _json(dataclasses.asdict(self.config))

    async def configure(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("the body must be a JSON object")
            self.config = self.config.updated(changes)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return _json({"error": str(exc)}, status=400)
        if "seed" in changes:
            self._seed()
        capacity = self.config.rate * self.config.burst_seconds
        self.bucket.resize(self.config.rate, capacity, time.monotonic())
        return _json(dataclasses.asdict(self.config))

    async def reset(self, request: web.Request) -> web.Response:
        self._reset(time.monotonic())
        self._seed()
        return _json(self.stats_json())


def _parse_send(data: bytes) -> tuple[str, list[str]]:
    """(sender, recipients) of a SESv2 ``SendEmail`` body; ValueError if it is malformed."""
    try:
        body = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ValueError("The request body is not valid JSON.") from exc
    if not isinstance(body, dict) or not isinstance(body.get("Content"), dict):
        raise ValueError("Content is required.")
    destination = body.get("Destination") or {}
    recipients = [
        str(address)
        for field in ("ToAddresses", "CcAddresses", "BccAddresses")
        for address in destination.get(field) or []
    ]
    sender = body.get("FromEmailAddress")
    raw = body["Content"].get("Raw")
    if isinstance(raw, dict) and (not sender or not recipients):
        headers = BytesHeaderParser().parsebytes(base64.b64decode(raw.get("Data", "")))
        sender = sender or headers.get("From", "")
        if not recipients:
            fields = [str(v) for h in ("To", "Cc", "Bcc") for v in headers.get_all(h, [])]
            recipients = [address for _, address in getaddresses(fields) if address]
    if not sender:
        raise ValueError("FromEmailAddress is required.")
    if not recipients:
        raise ValueError("Destination must name at least one recipient.")
    return parseaddr(str(sender))[1] or str(sender), recipients


def _headers(request_id: str | None = None) -> dict[str, str]:
    return {"x-amzn-RequestId": request_id or str(uuid.uuid4())}


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.json_response(payload, status=status, headers=_headers())


def _json_error(status: int, code: str, message: str) -> web.Response:
    """SESv2 (rest-json) error: botocore reads the code from ``x-amzn-ErrorType``."""
    headers = {**_headers(), "x-amzn-ErrorType": code}
    return web.json_response({"message": message}, status=status, headers=headers)


def _xml(body: str, status: int = 200, *, request_id: str) -> web.Response:
    headers = _headers(request_id)
    return web.Response(text=body, status=status, content_type="text/xml", headers=headers)


def _xml_error(status: int, code: str, message: str) -> web.Response:
    """SESv1 (query) error: botocore reads ``Error/Code`` from the XML."""
    request_id = str(uuid.uuid4())
    return _xml(
        f'<ErrorResponse xmlns="{_SES_V1_NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{message}</Message></Error><RequestId>{request_id}</RequestId>"
        "</ErrorResponse>",
        status,
        request_id=request_id,
    )


# --- running it -------------------------------------------------------------------------------


async def serve(config: LookalikeConfig, host: str, port: int, exit_on_stdin_eof: bool) -> None:
    """Listen until SIGTERM/SIGINT (or stdin's end); print the ready line first."""
    lookalike = Lookalike(config)
    runner = web.AppRunner(lookalike.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    bound_host, bound_port = runner.addresses[0][:2]
    ready = {
        "endpoint_url": f"http://{bound_host}:{bound_port}",
        "pid": os.getpid(),
        "started_monotonic": lookalike.started_monotonic,
        "config": dataclasses.asdict(config),
    }
    print(json.dumps(ready), flush=True)
    loop, stop = asyncio.get_running_loop(), asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if exit_on_stdin_eof:

        def watch_stdin() -> None:
            while os.read(0, 4096):  # not sys.stdin: its lock would block the exit
                pass
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


class LookalikeHandle:
    """A running look-alike process, driven over its ``/_lookalike/`` HTTP endpoints."""

    def __init__(self, process: subprocess.Popen[bytes], ready: dict[str, Any]) -> None:
        self.process = process
        self.endpoint_url: str = ready["endpoint_url"]
        self.pid: int = ready["pid"]
        self.started_monotonic: float = ready["started_monotonic"]
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        method = "GET" if payload is None else "POST"
        url = f"{self.endpoint_url}/_lookalike/{path}"  # http://127.0.0.1:port from the server
        request = urllib.request.Request(url, data, method=method)  # noqa: S310
        with self._opener.open(request, timeout=30) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        return dict(self._call("stats"))

    def recipients(self) -> dict[str, int]:
        return dict(self._call("recipients")["recipients"])

    def messages(self) -> list[dict[str, Any]]:
        return list(self._call("messages")["messages"])

    def timeline(self, width: float = BUCKET_SECONDS) -> dict[str, Any]:
        return dict(self._call(f"timeline?width={width}"))

    def config(self) -> dict[str, Any]:
        return dict(self._call("config"))

    def configure(self, **changes: Any) -> dict[str, Any]:
        return dict(self._call("config", changes))

    def reset(self) -> dict[str, Any]:
        return dict(self._call("reset", {}))

    def stop(self, timeout: float = 10.0) -> int:
        """Stop the process and return its exit status (0 when it stopped cleanly).

        Closing its stdin asks it to exit; SIGTERM follows after ``timeout``, then SIGKILL.
        """
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        for signal_it in (self.process.terminate, self.process.kill):
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                signal_it()
        return self.process.wait()


def command_line(config: LookalikeConfig, port: int = 0, host: str = "127.0.0.1") -> list[str]:
    """The command that starts a look-alike with ``config``."""
    args = [sys.executable, "-m", "bench.ses_lookalike", "--host", host, "--port", str(port)]
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value is None:
            continue
        if isinstance(value, list):
            value = ",".join(value)
        args += ["--" + field.name.replace("_", "-"), str(value)]
    return args


@contextlib.contextmanager
def start_lookalike(
    *, host: str = "127.0.0.1", ready_timeout: float = 30.0, **config: Any
) -> Iterator[LookalikeHandle]:
    """Run a look-alike in its own process for the ``with`` block (fields of LookalikeConfig).

    The process also exits when this one dies, even by SIGKILL (its stdin closes).
    """
    settings = LookalikeConfig().updated(config)
    command = [*command_line(settings, 0, host), "--exit-on-stdin-eof"]
    process = subprocess.Popen(  # noqa: S603 - our own module, same interpreter
        command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        readable, _, _ = select.select([process.stdout], [], [], ready_timeout)
        line = process.stdout.readline() if readable else b""
        if not line:
            raise RuntimeError(f"the SES look-alike did not start (exit {process.poll()})")
        handle = LookalikeHandle(process, json.loads(line))
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        process.stdout.close()
    try:
        yield handle
    finally:
        handle.stop()


# --- capacity -----------------------------------------------------------------------------


async def _load(endpoint_url: str, rate: float, seconds: float) -> dict[str, Any]:
    """Open loop: start ``rate`` SendEmail calls a second for ``seconds``; count the answers."""
    import aiohttp

    body = json.dumps(
        {
            "FromEmailAddress": "se@aifactory.page",
            "Destination": {"ToAddresses": ["load@example.com"]},
            "Content": {"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}},
        }
    ).encode()
    statuses: dict[str, int] = {}
    latencies: list[float] = []

    async def one(session: aiohttp.ClientSession) -> None:
        started = time.monotonic()
        try:
            async with session.post(f"{endpoint_url}/v2/email/outbound-emails", data=body) as r:
                await r.read()
                key = str(r.status)
        except aiohttp.ClientError as exc:
            key = type(exc).__name__
        statuses[key] = statuses.get(key, 0) + 1
        latencies.append(time.monotonic() - started)

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks: list[asyncio.Task[None]] = []
        start = time.monotonic()
        total = int(rate * seconds)
        for i in range(total):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session)))
        lag = time.monotonic() - (start + (total - 1) / rate)  # how far the sender fell behind
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - start
    latencies.sort()
    return {
        "target_per_s": rate,
        "achieved_per_s": round(total / elapsed, 1),
        "statuses": statuses,
        "latency_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "latency_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
        "sender_lag_ms": round(max(0.0, lag) * 1000, 1),
    }


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_capacity(rates: list[float], seconds: float, latency_ms: float) -> list[dict[str, Any]]:
    """For each target rate: achieved calls/s, latency percentiles and the server's CPU use."""
    results = []
    with start_lookalike(rate=1e9, latency_ms=latency_ms, daily_quota=-1) as lookalike:
        for rate in rates:
            lookalike.reset()
            cpu = _cpu_seconds(lookalike.pid)
            result = asyncio.run(_load(lookalike.endpoint_url, rate, seconds))
            result["server_cpu_percent"] = round(
                100 * (_cpu_seconds(lookalike.pid) - cpu) / seconds, 1
            )
            result["max_in_flight"] = lookalike.stats()["max_in_flight"]
            result["load_average_1m"] = round(os.getloadavg()[0], 2)  # others share the CPUs
            results.append(result)
    return results


def main(argv: list[str] | None = None) -> None:
    defaults = LookalikeConfig()
    parser = argparse.ArgumentParser(prog="python -m bench.ses_lookalike", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    for field in dataclasses.fields(defaults):
        default = getattr(defaults, field.name)
        kind = str if isinstance(default, list) else int if field.name == "seed" else None
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            default=",".join(default) if isinstance(default, list) else default,
            type=kind or type(default),
        )
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    parser.add_argument("--capacity", help="comma-separated calls/s to measure, e.g. 100,300,1000")
    parser.add_argument("--capacity-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    names = [field.name for field in dataclasses.fields(defaults)]
    config = defaults.updated({name: getattr(args, name) for name in names})
    if args.capacity:
        rates = [float(r) for r in args.capacity.split(",")]
        for result in measure_capacity(rates, args.capacity_seconds, config.latency_ms):
            print(json.dumps(result), flush=True)
        return
    asyncio.run(serve(config, args.host, args.port, args.exit_on_stdin_eof))


if __name__ == "__main__":
    main()
