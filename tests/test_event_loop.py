"""No async HTTP function blocks the worker's event loop, even when SES answers slowly.

The Python worker runs every ``async def`` function of an instance on one event loop: a blocking
call inside one of them (boto3's ``GetSendQuota`` is one: up to 3 x (5 s + 15 s) with the quota
client's timeouts and retries) stalls every other request on that worker, including callers
waiting with ``Prefer: wait``. Blocking SDK calls belong on a thread (``asyncio.to_thread``).

How this is detected, without mocks that could not fail:

- SES is moto's real server over HTTP, reached by real botocore clients built with the production
  configs; a ``before-send`` hook on those clients makes every SES call take ``LATENCY`` seconds,
  on whichever thread makes it (as a slow network would).
- Each function runs on a fresh event loop in debug mode with ``slow_callback_duration`` =
  ``SLOW``: asyncio then logs "Executing <Task ...> took N seconds" for every step that held the
  loop longer, and those reports fail the test. A ticker coroutine beside the request measures
  the longest stall another request would have seen.
- ``test_the_watch_catches_a_quota_read_on_the_loop`` runs the old starter's pattern (the
  admission called directly inside the coroutine) under the same watch and requires it to be
  reported, so the watch is shown to fail when it should.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func
import pytest

from sendmail import services
from sendmail.sending.sealing import new_key
from tests.support.durable import FakeDurableClient
from tests.support.http import BASE
from tests.support.ses import make_client

#: How long every SES call takes (seconds).
LATENCY = 1.0
#: A loop step longer than this is a blocked loop (asyncio's own default is 0.1 s; the margin
#: keeps a busy CI machine from failing the test, the latency keeps a real block far above it).
SLOW = 0.3


@dataclass
class Latency:
    """A botocore ``before-send`` hook: each SES request waits ``seconds`` before it is sent."""

    seconds: float
    enabled: bool = True
    threads: list[int] = field(default_factory=list)

    def install(self, client: Any) -> None:
        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"before-send.{service}", self._before_send)

    def _before_send(self, **_: Any) -> None:
        if self.enabled:
            self.threads.append(threading.get_ident())
            time.sleep(self.seconds)


@pytest.fixture
def sealing_key(monkeypatch: pytest.MonkeyPatch) -> str:
    from sendmail.sending import unsubscribe

    key = new_key()
    monkeypatch.setenv("SENDMAIL_SEALING_KEY", key)
    monkeypatch.setenv("SENDMAIL_UNSUBSCRIBE_KEYS", unsubscribe.new_key())  # the unsubscribe routes
    return key


@pytest.fixture
def slow_ses(moto_server: str, sealing_key: str) -> Latency:
    """The app's SES sender, on moto over HTTP, every call ``LATENCY`` seconds slow."""
    from sendmail.platform.settings import get_settings
    from sendmail.sending.ses import SesSender

    latency = Latency(LATENCY)
    quota_client, send_client = make_client("ses", moto_server), make_client("sesv2", moto_server)
    latency.install(quota_client)
    latency.install(send_client)
    services.override(
        ses=SesSender(send_client, settings=get_settings(), quota_client=quota_client)
    )
    return latency


@dataclass
class Watched:
    result: Any
    slow_steps: list[str]
    longest_stall: float
    loop_thread: int


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing") and " took " in message:
            self.messages.append(message)


def run_watched(make: Callable[[], Awaitable[Any]]) -> Watched:
    """Run ``make()`` on a new debug-mode loop; report slow steps and the longest stall."""
    loop = asyncio.new_event_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW
    collect = _Collect()
    asyncio_logger = logging.getLogger("asyncio")
    previous_level = asyncio_logger.level
    asyncio_logger.addHandler(collect)
    asyncio_logger.setLevel(logging.WARNING)

    async def main() -> tuple[Any, float]:
        gaps: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = loop.time()
            while not done.is_set():
                await asyncio.sleep(0.01)
                now = loop.time()
                gaps.append(now - last)
                last = now

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        try:
            result = await make()
        finally:
            done.set()
            await ticking
        return result, max(gaps, default=0.0)

    try:
        result, longest = loop.run_until_complete(main())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop_thread = threading.get_ident()
    finally:
        asyncio_logger.removeHandler(collect)
        asyncio_logger.setLevel(previous_level)
        loop.close()
    return Watched(result, collect.messages, longest, loop_thread)


# -- the app's async HTTP functions ---------------------------------------------------------------

AWS = {
    "senderEmail": "se@aifactory.page",
    "recipientEmails": ["a@example.com", "b@example.com"],
    "subject": "안녕하세요",
    "body": "본문입니다",
}
USER = {
    "provider": "GMAIL",
    "senderEmail": "me@gmail.com",
    "password": "app-password-123",
    "recipientEmails": ["friend@example.com"],
    "subject": "Hi",
    "body": "Long time no see!",
}

#: One representative request per async HTTP function: (method, path, route params, body, status).
REQUESTS: dict[str, tuple[str, str, dict[str, str], Any, int]] = {
    "aws_send": ("POST", "/api/v1/emails/aws-send", {}, AWS, 202),
    "user_send": ("POST", "/api/v1/emails/user-send", {}, USER, 202),
    "email_status": ("GET", "/api/v1/emails/abc123", {"id": "abc123"}, None, 404),
    "email_recipients": ("GET", "/api/v1/emails/abc123/recipients", {"id": "abc123"}, None, 404),
    "email_events": ("GET", "/api/v1/emails/abc123/events", {"id": "abc123"}, None, 404),
    "email_pause": ("POST", "/api/v1/emails/abc123/pause", {"id": "abc123"}, None, 404),
    "email_resume": ("POST", "/api/v1/emails/abc123/resume", {"id": "abc123"}, None, 404),
    "email_cancel": ("POST", "/api/v1/emails/abc123/cancel", {"id": "abc123"}, None, 404),
    "ses_events": ("POST", "/api/v1/events/ses", {}, {"Type": "Notification"}, 403),
    "account_get": ("GET", "/api/v1/account", {}, None, 200),
    "account_guard_reset": ("POST", "/api/v1/account/guard/reset", {}, None, 200),
    "suppression_get": (
        "GET",
        "/api/v1/suppressions/a@example.com",
        {"email": "a@example.com"},
        None,
        404,
    ),
    "suppression_delete": (
        "DELETE",
        "/api/v1/suppressions/a@example.com",
        {"email": "a@example.com"},
        None,
        404,
    ),
    "unsubscribe_page": (
        "GET",
        "/api/v1/unsubscribe/u1" + "A" * 60,
        {"token": "u1" + "A" * 60},
        None,
        404,
    ),
    "unsubscribe": (
        "POST",
        "/api/v1/unsubscribe/u1" + "A" * 60,
        {"token": "u1" + "A" * 60},
        None,
        404,
    ),
    "openapi_document": ("GET", "/api/v1/openapi.json", {}, None, 200),
    "docs": ("GET", "/api/v1/docs/", {"path": ""}, None, 200),
    "v1_swagger_ui": ("GET", "/api/swagger-ui/index.html", {}, None, 302),
}


def async_http_functions(app_functions: dict[str, Any]) -> set[str]:
    found = set()
    for name, function in app_functions.items():
        if not any(b.get_binding_name() == "httpTrigger" for b in function.get_bindings()):
            continue
        user_function = function.get_user_function()
        inner = getattr(user_function, "client_function", user_function)
        if inspect.iscoroutinefunction(inner) or inspect.iscoroutinefunction(user_function):
            found.add(name)
    return found


def invoke(app_functions: dict[str, Any], name: str) -> Callable[[], Awaitable[Any]]:
    method, path, route_params, body, _ = REQUESTS[name]
    user_function = app_functions[name].get_user_function()

    def make() -> Awaitable[Any]:
        req = func.HttpRequest(
            method=method,
            url=f"{BASE}{path}",
            headers={"Content-Type": "application/json"} if body is not None else {},
            params={},
            route_params=route_params,
            body=json.dumps(body).encode() if body is not None else b"",
        )
        if hasattr(user_function, "client_function"):
            result = user_function.client_function(req=req, client=FakeDurableClient())
        else:
            result = user_function(req)
        assert inspect.isawaitable(result), name
        return result

    return make


def test_every_async_http_function_has_a_request_here(app_functions: dict[str, Any]) -> None:
    """A new async route must be added to REQUESTS, so it is watched too."""
    assert async_http_functions(app_functions) == set(REQUESTS)


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_no_async_http_function_blocks_the_event_loop(
    name: str,
    app_functions: dict[str, Any],
    slow_ses: Latency,
) -> None:
    make = invoke(app_functions, name)
    # First use imports the domain modules (one-off CPU work, not I/O): not what is measured.
    slow_ses.enabled = False
    asyncio.run(make())  # type: ignore[arg-type]
    slow_ses.enabled = True

    watched = run_watched(make)

    response = watched.result
    assert isinstance(response, func.HttpResponse)
    assert response.status_code == REQUESTS[name][4], response.get_body()[:300]
    assert watched.slow_steps == [], f"{name} blocked the event loop: {watched.slow_steps}"
    assert watched.longest_stall < SLOW, (
        f"{name}: another request on this worker waited {watched.longest_stall:.2f} s"
    )
    # The SES calls a function makes really were slow, and were made off the loop's thread.
    assert watched.loop_thread not in slow_ses.threads
    if name == "aws_send":
        assert slow_ses.threads, "aws_send read the SES quota without going through botocore"


def test_the_watch_catches_a_quota_read_on_the_loop(slow_ses: Latency) -> None:
    """The old starter's pattern (admission called inside the coroutine) must be reported."""
    from sendmail.admission.policy import admit_ses
    from sendmail.contract.models import AwsEmailRequest, Limits, parse_request
    from sendmail.platform.settings import get_settings

    settings = get_settings()
    request = parse_request(AwsEmailRequest, json.dumps(AWS).encode(), Limits.for_aws(settings))

    async def blocking_starter() -> Any:
        return admit_ses(request, settings, services.ses_sender())

    watched = run_watched(blocking_starter)

    assert len(watched.slow_steps) == 1, watched.slow_steps
    assert "took" in watched.slow_steps[0]
    assert watched.longest_stall >= LATENCY * 0.9
    assert slow_ses.threads == [watched.loop_thread]


@dataclass
class Parses:
    """Where the request body was parsed (``jsontext.loads``, which holds the GIL throughout:
    the one step of a request that no other thread can interrupt)."""

    threads: list[int] = field(default_factory=list)


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Parses:
    from sendmail.platform import jsontext

    seen = Parses()
    real = jsontext.loads

    def loads(raw: bytes | str, **options: Any) -> Any:
        seen.threads.append(threading.get_ident())
        return real(raw, **options)

    monkeypatch.setattr(jsontext, "loads", loads)
    return seen


def watch_aws_send(app_functions: dict[str, Any], raw: bytes) -> Watched:
    user_function = app_functions["aws_send"].get_user_function()

    def make() -> Awaitable[Any]:
        req = func.HttpRequest(
            method="POST", url=f"{BASE}/api/v1/emails/aws-send", headers={}, params={}, body=raw
        )
        return user_function.client_function(req=req, client=FakeDurableClient())  # type: ignore[no-any-return]

    return run_watched(make)


def aws_body(recipients: list[str], sender: str = "se@aifactory.page") -> bytes:
    body = {**AWS, "senderEmail": sender, "recipientEmails": recipients}
    return json.dumps(body, separators=(",", ":")).encode()


def test_a_body_of_the_largest_size_holding_one_address_is_refused_off_the_loop(
    app_functions: dict[str, Any], slow_ses: Latency, parses: Parses
) -> None:
    """The security review's request: a body of the largest accepted size holding nothing but
    one address, over and over, from a sender that is not allowed. It froze the worker's loop
    for 29 s (every entry validated, on the loop, before the sender was checked).

    At a million recipients the largest body is the platform's 100 MiB (about 11.6 million
    copies), and CPython's parser would hold the GIL one to three seconds over it — every other
    request of the worker waiting that long. So the body's commas are counted before it is
    parsed (a valid body has at most one per entry and per character of its text): this one is
    refused without a parse, and the loop stays free (well under a second)."""
    from sendmail.contract.models import PLATFORM_MAX_REQUEST_BYTES, Limits
    from sendmail.platform.settings import get_settings

    limits = Limits.for_aws(get_settings())
    limit = limits.max_request_bytes
    assert (limits.max_recipients, limit) == (1_000_000, PLATFORM_MAX_REQUEST_BYTES)
    copies = (limit - 1_000) // len('"a@b.co",')
    raw = aws_body(["a@b.co"] * copies, sender="x@not-allowed.example")
    assert copies > limits.max_commas
    assert len(raw) <= limit  # refused for what it holds, not for its size
    parses.threads.clear()

    watched = watch_aws_send(app_functions, raw)

    response = watched.result
    assert response.status_code == 400
    message = json.loads(response.get_body())["message"]
    assert f"at most {limits.max_entries} entries, duplicates included" in message
    assert parses.threads == []  # refused before any parse
    assert watched.longest_stall < 1.0, f"another request waited {watched.longest_stall:.2f} s"
    assert slow_ses.threads == []  # refused before admission read SES


def test_a_million_recipients_from_a_sender_not_allowed_leave_the_loop_free(
    app_functions: dict[str, Any], slow_ses: Latency, parses: Parses
) -> None:
    """A million distinct addresses (about 33 MB): parsed off the loop and refused for the
    sender before any address is validated (the last one is not an address: still 403)."""
    recipients = [f"customer.{i:07d}@mail.example.com" for i in range(1_000_000 - 1)]
    raw = aws_body([*recipients, "not an address"], sender="x@not-allowed.example")

    watched = watch_aws_send(app_functions, raw)

    response = watched.result
    assert response.status_code == 403, response.get_body()[:300]
    assert len(parses.threads) == 1
    assert watched.loop_thread not in parses.threads
    assert watched.longest_stall < 1.0, f"another request waited {watched.longest_stall:.2f} s"
    assert slow_ses.threads == []


def test_a_large_personalised_list_is_parsed_without_stalling_the_loop(
    app_functions: dict[str, Any], slow_ses: Latency, parses: Parses
) -> None:
    """600,000 personalised recipients (about 66 MB, 2.4 million JSON values): in one call
    CPython's parser would hold the GIL, and the garbage collector would run in the middle, for
    about 1.5 s (measured: 0.76 s at half the size); the list is parsed an element at a time with
    the collector paused (sendmail/platform/jsontext.py: 0.2 s at half the size, most of it the
    UTF-8 decoding and the collection after), and the sender is refused before any entry is
    validated."""
    entries = [
        {"email": f"customer.{i:07d}@mail.example.com", "variables": {"name": f"김민수{i}"}}
        for i in range(600_000)
    ]
    body = {**AWS, "senderEmail": "x@not-allowed.example", "recipients": entries}
    body.pop("recipientEmails", None)
    raw = json.dumps(body, ensure_ascii=False).encode()

    watched = watch_aws_send(app_functions, raw)

    response = watched.result
    assert response.status_code == 403, response.get_body()[:300]
    assert len(parses.threads) == 1
    assert watched.loop_thread not in parses.threads
    assert watched.longest_stall < 1.0, f"another request waited {watched.longest_stall:.2f} s"


def test_validating_the_most_entries_a_request_may_hold_leaves_the_loop_free(
    app_functions: dict[str, Any], slow_ses: Latency, parses: Parses
) -> None:
    """Two million entries (the most a request of a million recipients may hold, duplicates
    included): 20,000 distinct addresses, each a hundred times, from an allowed sender. Every
    entry is counted and de-duplicated and every distinct address validated, on a worker
    thread; then admission reads SES (slowly, off the loop too) and refuses it: moto's
    24-hour quota is 200 messages, and the refusal names the 20,000 the list came down to."""
    from sendmail.contract.models import Limits
    from sendmail.platform.settings import get_settings

    limits = Limits.for_aws(get_settings())
    distinct = [f"customer.{i:05d}@mail.example.com" for i in range(20_000)]
    raw = aws_body(distinct * (limits.max_entries // len(distinct)))
    assert limits.max_entries == 2_000_000

    watched = watch_aws_send(app_functions, raw)

    response = watched.result
    assert response.status_code == 429, response.get_body()[:300]
    assert "needs 20000 messages" in json.loads(response.get_body())["message"]
    assert len(parses.threads) == 1
    assert watched.loop_thread not in parses.threads
    # (no check of slow_steps here: a worker thread's long C call — the parse, pydantic's pass
    # over the list — may pause the loop in the middle of one of its steps, and debug mode
    # then reports that step; the stall is what another request sees)
    assert watched.longest_stall < 1.0, f"another request waited {watched.longest_stall:.2f} s"
    assert slow_ses.threads
    assert watched.loop_thread not in slow_ses.threads
