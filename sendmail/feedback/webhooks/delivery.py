"""One delivery attempt: one event's body, signed afresh, posted to one endpoint, judged.

:meth:`WebhookSender.attempt` does, in this order, and stops at the first that fails:

1. checks the URL and resolves its host **once**, checking every address
   (:mod:`~sendmail.feedback.webhooks.endpoints`; a refusal is final);
2. connects to a checked address — by address, never by name — within ``connect_seconds``
   for TCP and TLS together, trying the next checked address if one refuses;
3. for https, TLS with the system's CAs (or the context given), SNI and certificate
   verification for the URL's host name: the address was pinned, the identity still is the
   name's;
4. posts the body with ``webhook-id``, ``webhook-timestamp`` (now) and ``webhook-signature``
   (:mod:`~sendmail.feedback.webhooks.signing`), ``Connection: close``;
5. reads the answer under one deadline for the whole of it (``response_seconds``, however
   slowly the bytes drip) and a byte budget: the status line and headers within
   ``max_head_bytes``, the body only up to ``max_answer_bytes`` (kept for display, never
   parsed). Redirects are never followed.

The outcome (:class:`Attempt`, ``result``):

- ``delivered`` — any 2xx;
- ``gone`` — 410: the receiver says it wants no more; final for this endpoint and event (the
  Standard Webhooks spec goes further and disables the endpoint; here an operator configures
  endpoints, so one event's 410 does not silence the others);
- ``refused`` — this service will not call this URL (rule 1 or 2 of the endpoint rules): final,
  as retrying cannot change a configuration; logged at WARNING for the operator;
- ``retry`` — everything else: 5xx, 429, **every other 4xx**, 3xx (not followed), 1xx
  leftovers, timeouts, refused or dropped connections, TLS failures, a DNS lookup that failed,
  an answer too large. Only 410 is a final status because the usual 4xx of a webhook receiver
  are fixed by people within the retry schedule's day: 401/403 while a secret is being
  rotated (each retry is signed with the secrets configured *then*), 404 while the receiver is
  deployed, 400 from a receiver bug; a receiver that truly never takes an event costs eight
  small requests over a day. ``Retry-After`` (seconds or an HTTP date) is passed on for the
  schedule to honour.

Timeouts: ``connect_seconds`` 5 and ``response_seconds`` 15 by default — the spec advises 15 to
30 s for a receiver to act before it answers; nothing else waits on this (deliveries run apart
from sending), so the cost of a dead endpoint is one worker slot for at most 20 s per attempt.

What is logged, once per attempt: the event id, :attr:`Endpoint.label` (no path, query or user
info), the outcome, status and time taken. Never the body (it names a recipient), the secret, the
signature or the URL.
"""

from __future__ import annotations

import dataclasses
import email.utils
import http.client
import io
import logging
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal

from sendmail.feedback.webhooks.endpoints import (
    Endpoint,
    EndpointRefused,
    IPAddress,
    Resolver,
    resolve_checked,
    system_resolver,
)
from sendmail.feedback.webhooks.signing import SigningSecrets

logger = logging.getLogger(__name__)

Result = Literal["delivered", "gone", "retry", "refused"]
USER_AGENT = "Send-Mail-Webhooks/1"
#: The longest Retry-After passed on (a day; the schedule caps it further).
MAX_RETRY_AFTER_SECONDS = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class DeliveryLimits:
    """Time and size bounds of one attempt (see the module docs)."""

    connect_seconds: float = 5.0
    response_seconds: float = 15.0
    max_head_bytes: int = 32 * 1024
    max_answer_bytes: int = 4 * 1024


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one attempt came to."""

    result: Result
    #: Short and safe for logs: ``HTTP 503``, ``timed out waiting for the answer``, ...
    reason: str
    status: int | None = None
    #: Seconds the receiver asked to wait (``Retry-After``), if it did.
    retry_after: float | None = None
    #: The start of the answer's body, at most ``max_answer_bytes``.
    answer: bytes = b""
    #: The address the request went to.
    address: str | None = None
    elapsed: float = 0.0

    @property
    def final(self) -> bool:
        """No further attempt of this event at this endpoint."""
        return self.result != "retry"


class _AnswerTooLarge(Exception):
    """The answer's head went past the byte budget."""


class WebhookSender:
    """Makes attempts (one method, no state between attempts but the configuration).

    ``resolver`` and ``ssl_context`` are for tests (a stub resolver, a local CA);
    ``allow_loopback_http`` is the development setting; ``clock`` gives ``webhook-timestamp``.
    """

    def __init__(
        self,
        secrets: SigningSecrets,
        *,
        allow_loopback_http: bool = False,
        resolver: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
        limits: DeliveryLimits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secrets = secrets
        self._allow_loopback = allow_loopback_http
        self._resolver = resolver
        self._ssl_context = ssl_context
        self._limits = limits or DeliveryLimits()
        self._clock = clock

    def attempt(self, endpoint: Endpoint, msg_id: str, body: bytes) -> Attempt:
        """Post ``body`` as event ``msg_id`` to ``endpoint`` once; never raises for anything
        the network or the receiver does."""
        started = time.monotonic()
        outcome = self._attempt(endpoint, msg_id, body)
        outcome = dataclasses.replace(outcome, elapsed=time.monotonic() - started)
        log = logger.warning if outcome.result == "refused" else logger.info
        log(
            "webhook %s to %s: %s, %s in %.0f ms",
            msg_id,
            endpoint.label,
            outcome.result,
            outcome.reason,
            outcome.elapsed * 1000,
        )
        return outcome

    def _attempt(self, endpoint: Endpoint, msg_id: str, body: bytes) -> Attempt:
        try:
            addresses = resolve_checked(
                endpoint, self._resolver, allow_loopback=self._allow_loopback
            )
        except EndpointRefused as e:
            return Attempt("refused", str(e))
        except (OSError, UnicodeError) as e:
            return Attempt("retry", f"DNS lookup failed ({type(e).__name__})")
        limits = self._limits
        try:
            sock, address = self._connect(endpoint, addresses)
        except TimeoutError:
            return Attempt("retry", "timed out connecting")
        except ssl.SSLCertVerificationError as e:
            return Attempt("retry", f"certificate not accepted: {e.verify_message}")
        except ssl.SSLError as e:
            return Attempt("retry", f"TLS failed ({e.reason or type(e).__name__})")
        except ConnectionRefusedError:
            return Attempt("retry", "connection refused")
        except OSError as e:
            return Attempt("retry", f"connection failed ({type(e).__name__})")
        try:
            deadline = time.monotonic() + limits.response_seconds
            try:
                self._send(sock, endpoint, msg_id, body, deadline)
                return self._answer(sock, deadline, address)
            except ValueError as e:  # http.client refusing a header or target it would inject
                # (its message quotes the value: not logged, it may be a credential)
                reason = f"request refused by http.client ({type(e).__name__})"
                return Attempt("refused", reason, address=address)
            except TimeoutError:
                return Attempt("retry", "timed out waiting for the answer", address=address)
            except _AnswerTooLarge:
                return Attempt("retry", "answer head too large", address=address)
            except http.client.HTTPException as e:
                return Attempt("retry", f"no valid answer ({type(e).__name__})", address=address)
            except OSError as e:
                return Attempt("retry", f"connection dropped ({type(e).__name__})", address=address)
        finally:
            sock.close()

    def _connect(
        self, endpoint: Endpoint, addresses: Sequence[IPAddress]
    ) -> tuple[socket.socket, str]:
        """A connected (and for https, verified TLS) socket to the first checked address that
        answers, all within ``connect_seconds``."""
        deadline = time.monotonic() + self._limits.connect_seconds
        error: OSError = OSError("no address to connect to")
        for address in addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("connect deadline passed")
            family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(remaining)
                sock.connect((str(address), endpoint.port))
            except OSError as e:
                sock.close()
                error = e
                continue
            try:
                if endpoint.scheme == "https":
                    sock.settimeout(max(deadline - time.monotonic(), 0.001))
                    context = self._ssl_context or _default_context()
                    sock = context.wrap_socket(sock, server_hostname=endpoint.host)
            except BaseException:
                sock.close()
                raise
            return sock, str(address)
        raise error

    def _send(
        self, sock: socket.socket, endpoint: Endpoint, msg_id: str, body: bytes, deadline: float
    ) -> None:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        # http.client writes and validates the request (no CR/LF in the target or a header);
        # the socket is ours, so it never connects or looks anything up itself.
        request = http.client.HTTPConnection(endpoint.host, endpoint.port)
        request.sock = sock
        request.putrequest("POST", endpoint.target, skip_host=True, skip_accept_encoding=True)
        headers = {
            "Host": endpoint.host_header,
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "Connection": "close",
            **self._secrets.headers(msg_id, int(self._clock()), body),
        }
        if endpoint.authorization is not None:
            headers["Authorization"] = endpoint.authorization
        for name, value in headers.items():
            request.putheader(name, value)
        request.endheaders(body)

    def _answer(self, sock: socket.socket, deadline: float, address: str) -> Attempt:
        limits = self._limits
        reader = _DeadlineSocket(sock, deadline, limits.max_head_bytes + limits.max_answer_bytes)
        response = http.client.HTTPResponse(reader, method="POST")  # type: ignore[arg-type]
        response.begin()
        status = response.status
        retry_after = _retry_after(response.getheader("Retry-After"))
        answer = b""
        try:
            answer = response.read(limits.max_answer_bytes)
        except (OSError, http.client.HTTPException, _AnswerTooLarge):
            pass  # the status decides; the body is only shown
        finally:
            response.close()
        if 200 <= status < 300:
            result: Result = "delivered"
            reason = f"HTTP {status}"
        elif status == 410:
            result, reason = "gone", "HTTP 410"
        elif 300 <= status < 400:
            result, reason = "retry", f"HTTP {status}, redirect not followed"
        else:
            result, reason = "retry", f"HTTP {status}"
        return Attempt(result, reason, status, retry_after, answer, address)


class _DeadlineSocket:
    """What :class:`http.client.HTTPResponse` reads from: the socket under one deadline for the
    whole answer and a byte budget (``makefile`` is all HTTPResponse asks of a socket)."""

    def __init__(self, sock: socket.socket, deadline: float, budget: int) -> None:
        self._raw = _DeadlineReader(sock, deadline, budget)

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(self._raw)


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: socket.socket, deadline: float, budget: int) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline
        self._budget = budget

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the answer took too long")
        if self._budget <= 0:
            raise _AnswerTooLarge
        self._sock.settimeout(remaining)
        view = memoryview(buffer)[: self._budget]
        count = self._sock.recv_into(view)
        self._budget -= count
        return count


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds from now (delta-seconds or an HTTP date); None if absent or
    unreadable; at most :data:`MAX_RETRY_AFTER_SECONDS`."""
    if not value:
        return None
    value = value.strip()
    seconds: float
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


@lru_cache(maxsize=1)
def _default_context() -> ssl.SSLContext:
    """The system's CAs, hostname checking, TLS 1.2 or later (built once: loading CAs costs)."""
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
