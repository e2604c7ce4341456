"""A local Amazon SES for the dev host: moto's server on loopback, made to look like production.

:class:`SesEmulator` runs moto's server (built from moto's own parts, as
``moto.server.ThreadedMotoServer`` is, behind a WSGI wrapper) in this process on 127.0.0.1 and a
free port. Point the app at it with ``AWS_ENDPOINT_URL=<endpoint_url>`` and dummy credentials
(``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``): the app's SESv2 client (sending) and its
SESv1 client (``GetSendQuota``) both resolve to it, because moto's server routes SESv2
(``/v2/email/...``) and the SESv1 query API (``POST /``) by path.

What it adds to moto:

- ``start()`` verifies the identities it is given (``verified_identities``: addresses and
  domains; by default every allowed sender address and sender domain) through the real SES API
  over HTTP, so moto's sender verification (unverified ``FromEmailAddress`` ->
  ``MessageRejected``) matches the service's allow-list — or, given fewer, lets the app's
  preflight meet an unverified sender.
- The account as SES describes it: SESv2 ``GetAccount`` (which moto does not have: answered by
  the WSGI wrapper around moto's server) reports ``ProductionAccessEnabled`` (false with
  ``sandbox``), ``EnforcementStatus`` (``HEALTHY``, ``PROBATION`` or ``SHUTDOWN``; sending
  disabled with the last), ``SendingEnabled`` and the quota ``GetSendQuota`` reports.
  ``GetEmailIdentity`` answers ``VerifiedForSendingStatus`` true for a verified identity (moto
  says false for every one while calling it ``SUCCESS``); ``ListEmailIdentities`` is moto's.
  In the ``sandbox``, a ``SendEmail`` to a recipient that is not a verified address, not at a
  verified domain and not SES's mailbox simulator is ``MessageRejected``, as SES does.
  :meth:`SesEmulator.set_account` changes both at run time.
- ``GetSendQuota`` answers production-like limits (moto hard-codes the sandbox's 200 a day and
  1 a second) with ``SentLast24Hours`` counting the recipients moto really accepted in the last
  24 hours. This is done by patching the SES backend *instance* of this account and region in
  process (the server's threads share moto's process-global backends).
- ``messages()`` lists what moto accepted as :class:`OutboxMessage` (decoded subject, SES
  MessageId, the time the emulator saw the send; for ``Content.Raw``, the message's headers and
  decoded text and HTML parts, read from the bytes as sent).
- With ``events`` (devhost's :class:`~devhost.emulators.sns.LocalSns`), SES's mailbox simulator:
  every SESv2 ``SendEmail`` moto accepted becomes the SES event records real SES would publish
  (:mod:`devhost.emulators.mailbox`: a Delivery, or a bounce or complaint for the simulator's
  addresses), with the message's ``EmailTags`` — which moto itself drops, so a WSGI wrapper
  around moto's server reads them off the request — posted through SNS to the app. As in SES,
  mail to the simulator does not count against the daily quota.

moto's backends are process-global: run one emulator per process and region. A moto reset
(``/moto-api/reset``) drops the verified identities; the quota patch is re-applied on the next
call to this class.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from typing import Any, Protocol

from devhost.emulators.mailbox import event_records, simulator_box
from devhost.emulators.outbox import OutboxJournal, OutboxMessage, from_wire

logger = logging.getLogger(__name__)

_DUMMY_KEY = "testing"  # moto accepts any credentials
_WINDOW = timedelta(hours=24)


#: Where SESv2 ``SendEmail`` is posted, and where ``GetAccount`` is read.
_SEND_EMAIL_PATH = "/v2/email/outbound-emails"
_ACCOUNT_PATH = "/v2/email/account"
#: SESv2 ``GetAccount``'s ``EnforcementStatus`` values the emulator plays.
ENFORCEMENT_STATUSES = ("HEALTHY", "PROBATION", "SHUTDOWN")


class EventSink(Protocol):
    """Where SES event records go (devhost's local SNS topic)."""

    def publish(self, message: str) -> str: ...

    def stop(self) -> None: ...


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SesEmulator:
    """moto's SES server on loopback with verified senders and a configurable quota."""

    def __init__(
        self,
        *,
        region: str,
        allowed_senders: Sequence[str],
        allowed_domains: Sequence[str],
        max_24_hour_send: float = 50_000,
        max_send_rate: float = 14,
        journal: OutboxJournal | None = None,
        events: EventSink | None = None,
        verified_identities: Sequence[str] | None = None,
        sandbox: bool = False,
        enforcement_status: str = "HEALTHY",
    ) -> None:
        self.region = region
        self._journal = journal
        self.events = events
        self._senders = list(dict.fromkeys(s.strip().lower() for s in allowed_senders if s))
        self._domains = list(
            dict.fromkeys(d.strip().lower().lstrip("@") for d in allowed_domains if d)
        )
        if verified_identities is None:
            verified_identities = [*self._senders, *self._domains]
        self._verified = list(
            dict.fromkeys(i.strip().lower().lstrip("@") for i in verified_identities if i.strip())
        )
        self.sandbox = sandbox
        self.enforcement_status = _enforcement(enforcement_status)
        self._max_24_hour_send = float(max_24_hour_send)
        self._max_send_rate = float(max_send_rate)
        self._lock = threading.RLock()
        self._server: Any = None
        self._endpoint_url: str | None = None
        self._patched: Any = None  # the moto SES backend instance carrying our patches
        self._patched_v2: Any = None  # the moto SESv2 backend instance carrying ours
        self._received_at: dict[str, datetime] = {}
        self._sends: list[tuple[datetime, int]] = []  # (when, recipients) per accepted send
        self._baseline = 0  # messages already in moto's backend when this emulator began

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the server and verify the identities (by default: the allowed senders and
        domains) in it."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("the SES emulator is already running")
            # werkzeug logs every request at INFO on its own handler: one line per mail.
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            server = _CapturingMotoServer(
                self._published if self.events is not None else None, self._get_account
            )
            server.start()
            host, port = server.get_host_and_port()
            self._server = server
            self._endpoint_url = f"http://{host}:{port}"
            # Moto's backends are process-global: list only what is sent from now on.
            self._ensure_patched(baseline=True)
        try:
            self._verify_identities()
        except BaseException:
            self.stop()
            raise
        logger.info(
            "SES emulator on %s (%s): %d identities verified%s",
            self._endpoint_url,
            self.region,
            len(self._verified),
            ", a sandboxed account" if self.sandbox else "",
        )

    def stop(self) -> None:
        """Stop the server and take the patches off moto's backend. Idempotent."""
        with self._lock:
            server, self._server = self._server, None
            self._endpoint_url = None
            self._unpatch()
        if self.events is not None:
            self.events.stop()
        if server is None:
            return
        server.stop()
        inner = getattr(server, "_server", None)
        if inner is not None:
            inner.server_close()

    def __enter__(self) -> SesEmulator:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        if self._endpoint_url is None:
            raise RuntimeError("the SES emulator has not been started")
        return self._endpoint_url

    # --- quota ---------------------------------------------------------------------------

    def set_quota(self, max_24_hour_send: float, max_send_rate: float) -> None:
        """What ``GetSendQuota`` reports from now on (-1 = unlimited daily sending)."""
        with self._lock:
            self._max_24_hour_send = float(max_24_hour_send)
            self._max_send_rate = float(max_send_rate)
            self._ensure_patched()

    def set_account(
        self, *, sandbox: bool | None = None, enforcement_status: str | None = None
    ) -> None:
        """What ``GetAccount`` reports (and, for ``sandbox``, whom ``SendEmail`` accepts) from
        now on."""
        with self._lock:
            if sandbox is not None:
                self.sandbox = sandbox
            if enforcement_status is not None:
                self.enforcement_status = _enforcement(enforcement_status)

    def _get_account(self) -> dict[str, Any]:
        """SESv2 ``GetAccount``'s answer (the SESv2 API reference's shape)."""
        quota = self._get_send_quota()
        with self._lock:
            return {
                "DedicatedIpAutoWarmupEnabled": False,
                "EnforcementStatus": self.enforcement_status,
                "ProductionAccessEnabled": not self.sandbox,
                "SendQuota": quota,
                "SendingEnabled": self.enforcement_status != "SHUTDOWN",
                "SuppressionAttributes": {"SuppressedReasons": []},
            }

    def _sent_last_24_hours(self) -> int:
        cutoff = datetime.now(UTC) - _WINDOW
        with self._lock:
            self._sends = [(when, n) for when, n in self._sends if when > cutoff]
            return sum(n for _, n in self._sends)

    # --- captured mail -------------------------------------------------------------------

    def messages(self) -> list[OutboxMessage]:
        """Every mail moto accepted in this region, oldest first (with a journal: ever)."""
        if self._journal is not None:
            return [m for m in self._journal.read() if m.transport == "ses"]
        with self._lock:
            return self._captured()

    def _captured(self) -> list[OutboxMessage]:
        from moto.ses.models import Message, RawMessage

        with self._lock:
            backend = self._ensure_patched()
            captured = list(backend.sent_messages)[self._baseline :]
            out: list[OutboxMessage] = []
            for item in captured:
                received = self._received_at.setdefault(item.id, datetime.now(UTC))
                if isinstance(item, Message):
                    out.append(self._simple(item, received))
                elif isinstance(item, RawMessage):
                    out.append(self._raw(item, received))
            return out

    @classmethod
    def _outbox_message(cls, item: Any, received: datetime) -> OutboxMessage:
        from moto.ses.models import RawMessage

        if isinstance(item, RawMessage):
            return cls._raw(item, received)
        return cls._simple(item, received)

    @staticmethod
    def _simple(item: Any, received: datetime) -> OutboxMessage:
        # SES builds the MIME of Simple content itself, and moto keeps only its subject and one
        # body (the HTML one when both were given): no headers, the body as the text.
        return OutboxMessage(
            transport="ses",
            sender=item.source,
            to=_recipients(item),
            subject=item.subject,
            message_id=item.id,
            received_at=_iso(received),
            body=item.body,
            text=item.body,
        )

    @staticmethod
    def _raw(item: Any, received: datetime) -> OutboxMessage:
        # moto keeps the raw message as text (it decodes the bytes as UTF-8); parse it as the
        # bytes it was on the wire, or an 8-bit UTF-8 body comes back as escapes.
        return from_wire(
            item.raw_data.encode("utf-8", "surrogateescape"),
            transport="ses",
            sender=item.source or "",
            to=_recipients(item),
            message_id=item.id,
            received_at=_iso(received),
        )

    # --- moto internals ------------------------------------------------------------------

    def _backend(self) -> Any:
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends

        account = os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)
        return ses_backends[account][self.region]

    def _v2_backend(self) -> Any:
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.sesv2.models import sesv2_backends

        account = os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)
        return sesv2_backends[account][self.region]

    def _ensure_patched(self, *, baseline: bool = False) -> Any:
        """Patch this region's SES backend instance (again, if moto was reset) and return it.

        ``baseline``: ignore the messages already in the backend (at start). A backend that
        replaced ours was made by a moto reset, so everything in it was sent since.
        """
        with self._lock:
            backend = self._backend()
            # A moto reset either replaces the backend or re-initialises it in place.
            intact = backend is self._patched and "get_send_quota" in vars(backend)
            if intact or self._server is None:
                self._ensure_v2_patched()
                return backend
            self._unpatch()
            self._received_at.clear()
            self._sends.clear()
            self._baseline = len(backend.sent_messages) if baseline else 0
            backend.send_email = self._stamping(backend.send_email)
            backend.send_raw_email = self._stamping(backend.send_raw_email)
            backend.get_send_quota = self._get_send_quota
            self._patched = backend
            self._ensure_v2_patched()
            return backend

    def _ensure_v2_patched(self) -> None:
        """The SESv2 backend's ``get_email_identity`` reports a verified identity as verified
        for sending (again, after a moto reset)."""
        backend = self._v2_backend()
        if backend is self._patched_v2 and "get_email_identity" in vars(backend):
            return
        if self._server is None:
            return
        original = backend.get_email_identity

        def get_email_identity(email_identity: str) -> Any:
            identity = original(email_identity)  # NotFoundException for an unknown one
            identity.verified_for_sending_status = identity.verification_status == "SUCCESS"
            return identity

        backend.get_email_identity = get_email_identity
        self._patched_v2 = backend

    def _unpatch(self) -> None:
        backend, self._patched = self._patched, None
        v2, self._patched_v2 = self._patched_v2, None
        if v2 is not None:
            v2.__dict__.pop("get_email_identity", None)
        if backend is None:
            return
        for name in ("send_email", "send_raw_email", "get_send_quota"):
            backend.__dict__.pop(name, None)  # the class's own method shows through again

    def _stamping(self, send: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a backend send so each accepted message gets a time and a recipient count."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                if self.sandbox:
                    self._sandbox_check(kwargs.get("source"), kwargs.get("destinations"))
                message = send(*args, **kwargs)
                now = datetime.now(UTC)
                self._received_at[message.id] = now
                # SES's mailbox simulator does not count against the daily quota
                counted = [r for r in _recipients(message) if simulator_box(r) is None]
                self._sends.append((now, len(counted)))
                if self._journal is not None:
                    self._journal.append(self._outbox_message(message, now))
                return message

        return wrapper

    def _sandbox_check(self, source: Any, destinations: Any) -> None:
        """SES's sandbox: every recipient a verified identity (address or domain) or the
        mailbox simulator's, else ``MessageRejected`` naming them (after the sender's check,
        which moto makes)."""
        from moto.ses.exceptions import MessageRejectedError

        identities = {name.lower() for name in self._backend().email_identities}

        def verified(address: str) -> bool:
            address = parseaddr(address)[1].lower()
            domain = address.rpartition("@")[2]
            return address in identities or domain in identities

        if source is None or not verified(str(source)):
            return  # moto refuses the sender itself
        addresses = destinations or []
        if isinstance(addresses, dict):
            addresses = [
                a
                for key in ("ToAddresses", "CcAddresses", "BccAddresses")
                for a in addresses.get(key) or []
            ]
        failed = [
            str(a) for a in addresses if simulator_box(str(a)) is None and not verified(str(a))
        ]
        if failed:
            raise MessageRejectedError(
                "Email address is not verified. The following identities failed the check in "
                f"region {self.region.upper()}: {', '.join(failed)}"
            )

    def _get_send_quota(self) -> dict[str, float]:
        # A plain dict in the response's shape: moto serialises it like its own SESQuota, which
        # would hard-code 200/1 (and keep every instance alive in moto's model registry).
        with self._lock:
            return {
                "Max24HourSend": self._max_24_hour_send,
                "MaxSendRate": self._max_send_rate,
                "SentLast24Hours": float(self._sent_last_24_hours()),
            }

    # --- SES events ----------------------------------------------------------------------

    def _published(self, request: dict[str, Any], response: dict[str, Any]) -> None:
        """An accepted SESv2 SendEmail: publish what SES would report about it."""
        if self.events is None:
            return
        destination = request.get("Destination") or {}
        recipients = [
            str(address)
            for key in ("ToAddresses", "CcAddresses", "BccAddresses")
            for address in destination.get(key) or []
        ]
        tags = {
            str(tag.get("Name")): str(tag.get("Value"))
            for tag in request.get("EmailTags") or []
            if isinstance(tag, dict)
        }
        records = event_records(
            message_id=str(response["MessageId"]),
            source=str(request.get("FromEmailAddress") or ""),
            destination=recipients,
            tags=tags,
            configuration_set=request.get("ConfigurationSetName") or None,
            region=self.region,
        )
        for record in records:
            self.events.publish(json.dumps(record))

    def _verify_identities(self) -> None:
        import boto3

        client = boto3.session.Session().client(
            "sesv2",
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=_DUMMY_KEY,
            aws_secret_access_key=_DUMMY_KEY,
        )
        for identity in self._verified:
            client.create_email_identity(EmailIdentity=identity)


def _enforcement(status: str) -> str:
    value = status.strip().upper()
    if value not in ENFORCEMENT_STATUSES:
        raise ValueError(f"enforcement status {status!r}: one of {', '.join(ENFORCEMENT_STATUSES)}")
    return value


def _recipients(message: Any) -> tuple[str, ...]:
    """The distinct recipients of a moto message (a raw one lists header addresses again)."""
    destinations = message.destinations or ()
    if isinstance(destinations, dict):
        destinations = [
            address
            for key in ("ToAddresses", "CcAddresses", "BccAddresses")
            for address in destinations.get(key, [])
        ]
    return tuple(dict.fromkeys(str(address) for address in destinations))


class _CapturingMotoServer:
    """moto's threaded server, with a WSGI wrapper that hands every accepted SESv2 SendEmail
    (request and answer) to ``on_sent`` (moto itself drops ``EmailTags``) and answers SESv2
    ``GetAccount`` (``GET /v2/email/account``, which moto lacks) with ``account()``. Built on
    moto's own server parts (``moto.moto_server``), as ``ThreadedMotoServer`` is."""

    def __init__(
        self,
        on_sent: Callable[[dict[str, Any], dict[str, Any]], None] | None,
        account: Callable[[], dict[str, Any]],
    ) -> None:
        self._on_sent = on_sent
        self._account = account
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(
            "127.0.0.1", 0, self._capture(app), True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="ses-emulator"
        )
        self._thread.start()

    def get_host_and_port(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join()

    def _capture(self, app: Any) -> Any:
        def wrapper(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            method, path = environ.get("REQUEST_METHOD"), environ.get("PATH_INFO")
            if method == "GET" and path == _ACCOUNT_PATH:
                body = json.dumps(self._account()).encode("utf-8")
                start_response(
                    "200 OK",
                    [
                        ("Content-Type", "application/json"),
                        ("Content-Length", str(len(body))),
                        ("x-amzn-RequestId", str(uuid.uuid4())),
                    ],
                )
                return [body]
            if self._on_sent is None or method != "POST" or path != _SEND_EMAIL_PATH:
                return app(environ, start_response)  # type: ignore[no-any-return]
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            statuses: list[str] = []

            def capture(status: str, headers: Any, exc_info: Any = None) -> Any:
                statuses.append(status)
                return start_response(status, headers, exc_info)

            result = app(environ, capture)
            try:
                chunks = list(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            if statuses and statuses[0].startswith("200"):
                try:
                    self._on_sent(json.loads(body), json.loads(b"".join(chunks)))
                except Exception:
                    logger.exception("SES emulator: publishing the events of a message failed")
            return chunks

        return wrapper
