"""SES fixtures: a real moto server over HTTP on loopback, clients for it, scripted SES errors.

- ``moto_server``: one ``ThreadedMotoServer`` on 127.0.0.1 and a free port for the session.
- ``ses_endpoint``: its URL, with moto's state reset before each test.
- ``sesv2_client`` / ``ses_v1_client``: boto3 clients for it, built with the production
  botocore configs from :mod:`sendmail.sending.ses` (so botocore's own retry behaviour is the real
  one).
- ``verified_sender``: an address verified in moto through the SESv2 API.
- ``moto_sent_messages``: what moto stored, read back over HTTP (``/moto-api/data.json``).
- :class:`ScriptedSes`: a botocore ``before-send`` hook that answers chosen calls with real SES
  error responses (429 ``TooManyRequestsException``, ...) and counts every HTTP attempt.

Moto's backends are process-global: the server here and ``SesEmulator`` share them, so only
one of them should be in use at a time (pytest runs modules one after another).
"""

from __future__ import annotations

import email
import email.policy
import io
import json
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest

REGION = "ap-northeast-2"
SENDER = "se@aifactory.page"
DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def ses_endpoint(moto_server: str) -> str:
    """The moto server's URL, with every moto backend reset for this test."""
    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    return moto_server


def make_client(service: str, endpoint_url: str, *, region: str = REGION) -> Any:
    """A boto3 client for moto with the production botocore config of that service."""
    import boto3

    from sendmail.sending.ses import quota_client_config, send_client_config

    config = send_client_config() if service == "sesv2" else quota_client_config()
    return boto3.session.Session().client(
        service,  # type: ignore[call-overload]
        region_name=region,
        endpoint_url=endpoint_url,
        config=config,
        **DUMMY_CREDENTIALS,
    )


@pytest.fixture
def sesv2_client(ses_endpoint: str) -> Any:
    return make_client("sesv2", ses_endpoint)


@pytest.fixture
def ses_v1_client(ses_endpoint: str) -> Any:
    return make_client("ses", ses_endpoint)


@pytest.fixture
def verified_sender(sesv2_client: Any) -> str:
    sesv2_client.create_email_identity(EmailIdentity=SENDER)
    return SENDER


def read_sent_messages(endpoint_url: str) -> list[dict[str, Any]]:
    """Every message moto stored: ``{id, source, destinations, subject, body}`` — for a raw
    message (what the service sends: ``Content.Raw``), as a mail client decodes it: the subject,
    ``body`` the text part, and also ``html`` (the HTML part or None), ``headers`` (the parsed
    message) and ``raw`` (its bytes)."""
    with urllib.request.urlopen(f"{endpoint_url}/moto-api/data.json", timeout=10) as response:
        data = json.loads(response.read().decode("utf-8"))
    ses = data.get("ses", {})
    messages: list[dict[str, Any]] = list(ses.get("Message", []))
    for item in ses.get("RawMessage", []):
        raw = str(item["raw_data"]).encode("utf-8", "surrogateescape")
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        text = parsed.get_body(preferencelist=("plain",))
        html = parsed.get_body(preferencelist=("html",))
        destinations = list(dict.fromkeys(str(a) for a in item.get("destinations") or []))
        messages.append(
            {
                "id": item["id"],
                "source": item["source"],
                "destinations": {"ToAddresses": destinations},
                "subject": str(parsed["Subject"]),
                "body": text.get_content() if text is not None else None,
                "html": html.get_content() if html is not None else None,
                "headers": parsed,
                "raw": raw,
            }
        )
    return messages


@pytest.fixture
def moto_sent_messages(ses_endpoint: str) -> Callable[[], list[dict[str, Any]]]:
    return lambda: read_sent_messages(ses_endpoint)


class _RawBody(io.BytesIO):
    """What botocore reads an ``AWSResponse`` body from."""

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.getvalue()


def error_response(url: str, status: int, code: str, message: str) -> Any:
    """A real SESv2 (REST-JSON) error response, as SES sends it."""
    from botocore.awsrequest import AWSResponse

    body = json.dumps({"message": message}).encode("utf-8")
    headers: Any = {
        "x-amzn-ErrorType": code,
        "x-amzn-RequestId": "00000000-0000-0000-0000-000000000000",
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
    }
    return AWSResponse(url, status, headers, _RawBody(body))


THROTTLED = (429, "TooManyRequestsException", "Maximum sending rate exceeded.")


@dataclass
class ScriptedSes:
    """Answers SendEmail attempt ``n`` (0-based) with ``script(n)``; None lets it reach moto.

    ``script`` may return ``(status, code, message)`` for an error response, or an exception
    instance to raise (as a broken connection would). With ``by_recipient`` instead, the answer
    is ``by_recipient(recipient, n)`` where ``n`` counts that recipient's attempts (senders call
    from several threads, so the global order is not fixed). ``calls`` counts every HTTP
    attempt, including any botocore would make on its own; ``bodies`` holds each request's JSON
    and ``times`` each attempt's ``time.monotonic()``. Thread-safe.
    """

    script: Callable[[int], tuple[int, str, str] | BaseException | None] = lambda _n: None
    by_recipient: Callable[[str, int], tuple[int, str, str] | BaseException | None] | None = None
    calls: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self, client: Any, operation: str = "SendEmail") -> ScriptedSes:
        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"before-send.{service}.{operation}", self._before_send)
        return self

    def _before_send(self, request: Any, **_: Any) -> Any:
        body: dict[str, Any] = {}
        if request.body:
            raw = request.body if isinstance(request.body, bytes) else request.body.encode()
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"raw": raw.decode("utf-8", "replace")}
        recipient = str((body.get("Destination") or {}).get("ToAddresses", [""])[0])
        with self._lock:
            attempt = self.calls
            self.calls += 1
            self.bodies.append(body)
            self.times.append(time.monotonic())
            mine = self.attempts[recipient]
            self.attempts[recipient] += 1
        if self.by_recipient is not None:
            outcome = self.by_recipient(recipient, mine)
        else:
            outcome = self.script(attempt)
        if outcome is None:
            return None
        if isinstance(outcome, BaseException):
            raise outcome
        status, code, message = outcome
        return error_response(request.url, status, code, message)


def first_n(n: int, outcome: tuple[int, str, str] | BaseException) -> ScriptedSes:
    """Fail the first ``n`` attempts with ``outcome``; later ones reach moto."""
    return ScriptedSes(lambda attempt: outcome if attempt < n else None)


def always(outcome: tuple[int, str, str] | BaseException) -> ScriptedSes:
    return ScriptedSes(lambda _attempt: outcome)


def send_quota_response(url: str, max_24_hour_send: str, max_send_rate: str, sent: str) -> Any:
    """A real SESv1 (query/XML) ``GetSendQuota`` response."""
    from botocore.awsrequest import AWSResponse

    body = (
        '<GetSendQuotaResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/">'
        "<GetSendQuotaResult>"
        f"<SentLast24Hours>{sent}</SentLast24Hours>"
        f"<Max24HourSend>{max_24_hour_send}</Max24HourSend>"
        f"<MaxSendRate>{max_send_rate}</MaxSendRate>"
        "</GetSendQuotaResult>"
        "<ResponseMetadata><RequestId>quota-1</RequestId></ResponseMetadata>"
        "</GetSendQuotaResponse>"
    ).encode()
    headers: Any = {"Content-Type": "text/xml", "Content-Length": str(len(body))}
    return AWSResponse(url, 200, headers, _RawBody(body))


@pytest.fixture(scope="session")
def lookalike_server() -> Iterator[Any]:
    """The SES look-alike of ``bench/`` in its own process: latency, a real rate limit (429)."""
    from bench.ses_lookalike import start_lookalike

    with start_lookalike(rate=1000, latency_ms=20, verified=[SENDER], seed=7) as handle:
        yield handle


@pytest.fixture
def lookalike(lookalike_server: Any) -> Any:
    """The look-alike with its counters reset and its default configuration restored."""
    lookalike_server.configure(
        rate=1000, burst_seconds=1, latency_ms=20, jitter_ms=0, throttle=0, errors=0
    )
    lookalike_server.reset()
    return lookalike_server
