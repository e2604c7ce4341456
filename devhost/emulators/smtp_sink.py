"""A real SMTP submission server on loopback that keeps what it receives.

The devhost points the SMTP settings at it when no real provider is configured, and the tests
drive ``SmtpSender`` against it. It speaks real SMTP over real TLS (aiosmtpd): a CA and a
server certificate for ``localhost`` / ``127.0.0.1`` are generated at the first start and the CA
is written to ``ca_file`` for clients to trust.

TLS modes:

- ``implicit``: TLS from the first byte (port 465 style). aiosmtpd does not see a TLS session
  it did not start itself, so AUTH is only offered with ``auth_require_tls=False``
  (aiosmtpd #281); the socket is encrypted all the same.
- ``starttls``: plaintext greeting, ``STARTTLS`` required before anything else, AUTH only
  after it (port 587 style).
- ``plaintext``: no TLS at all, yet AUTH offered: a misconfigured or downgraded server, for
  tests proving that a client refuses to send a password to it.

Every mode offers AUTH LOGIN and PLAIN and accepts any credentials except the password
``rejected_password`` and any password starting with ``wrong-`` (535): several wrong passwords,
for the failed-login limit. Mail is only accepted after AUTH.

Test hooks, safe to call from any thread: :meth:`refuse_recipients`, :meth:`refuse_senders`,
:meth:`defer_recipient`, :meth:`drop_after_data`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
import threading
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devhost.emulators.outbox import OutboxJournal, OutboxMessage, from_wire

logger = logging.getLogger(__name__)

SinkTlsMode = Literal["implicit", "starttls", "plaintext"]

LOOPBACK = "127.0.0.1"


#: Passwords with this prefix are refused too (535): a test can try several wrong ones.
REFUSED_PREFIX = b"wrong-"


class _QuietLoginDataDeprecation(logging.Filter):
    """aiosmtpd 1.4.6 logs "Session.login_data is deprecated" on every successful login made
    through the (current) ``authenticator`` API, i.e. its own code trips its own deprecation."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Session.login_data is deprecated")


_AIOSMTPD_LOG = logging.getLogger("mail.log")
if not any(isinstance(f, _QuietLoginDataDeprecation) for f in _AIOSMTPD_LOG.filters):
    _AIOSMTPD_LOG.addFilter(_QuietLoginDataDeprecation())


class SmtpSink:
    """An SMTP server on ``127.0.0.1`` with TLS, AUTH and an outbox. Use as a context manager."""

    def __init__(
        self,
        cert_dir: str | Path,
        *,
        tls_mode: SinkTlsMode = "implicit",
        rejected_password: str = "wrong-password",  # noqa: S107 - a test fixture value
        journal: OutboxJournal | None = None,
    ) -> None:
        self.host = LOOPBACK
        self._journal = journal
        self.port = 0
        self.tls_mode: SinkTlsMode = tls_mode
        self.rejected_password = rejected_password
        self._cert_dir = Path(cert_dir)
        self.ca_file = str(self._cert_dir / "ca.pem")
        self._cert_file = self._cert_dir / "server.pem"
        self._key_file = self._cert_dir / "server-key.pem"
        self._controller: _SinkController | None = None
        self._lock = threading.Lock()
        self._messages: list[OutboxMessage] = []
        self._raw: list[bytes] = []
        self._auth_commands = 0
        self._logins: list[str] = []
        self._refused_recipients: set[str] = set()
        self._refused_senders: set[str] = set()
        self._deferrals: dict[str, int] = {}
        self._data_until_drop: int | None = None
        self._keep_dropped = True

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Generate the certificate (first start only), bind a free port and serve."""
        if self._controller is not None:
            raise RuntimeError("the SMTP sink is already running")
        if not self._cert_file.exists():
            write_certificates(self._cert_dir, Path(self.ca_file), self._cert_file, self._key_file)
        server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_tls.minimum_version = ssl.TLSVersion.TLSv1_2
        server_tls.load_cert_chain(self._cert_file, self._key_file)

        # aiosmtpd's Controller cannot serve port 0 (it probes the port it was given), so bind
        # a free port here and hand the bound socket over: no window for another process.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind((self.host, 0))
        except OSError:
            listener.close()
            raise
        self.port = listener.getsockname()[1]
        smtp_kwargs: dict[str, Any] = {
            "server_hostname": "localhost",  # not socket.getfqdn(): no DNS lookup
            "authenticator": self._authenticate,
            "timeout": 60,
        }
        if self.tls_mode == "implicit":
            smtp_kwargs.update(ssl_context=server_tls, auth_require_tls=False)
        elif self.tls_mode == "starttls":
            smtp_kwargs.update(tls_context=server_tls, require_starttls=True, auth_require_tls=True)
        else:
            smtp_kwargs.update(auth_require_tls=False)
        controller = _SinkController(self, listener, **smtp_kwargs)
        try:
            controller.start()
        except BaseException:
            listener.close()
            raise
        self._controller = controller
        logger.info("SMTP sink (%s) listening on %s:%d", self.tls_mode, self.host, self.port)

    def stop(self) -> None:
        """Stop serving. Captured mail stays readable."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- what was received -------------------------------------------------------------------

    def messages(self) -> list[OutboxMessage]:
        """The accepted mail, oldest first (with a journal: also before a restart)."""
        if self._journal is not None:
            return [m for m in self._journal.read() if m.transport == "smtp"]
        with self._lock:
            return list(self._messages)

    def raw_messages(self) -> list[bytes]:
        """The accepted mail as received after DATA (headers and encoded body), oldest first."""
        with self._lock:
            return list(self._raw)

    @property
    def auth_commands(self) -> int:
        """How many AUTH commands clients have sent, accepted or not."""
        with self._lock:
            return self._auth_commands

    def logins(self) -> list[str]:
        """The user names of the accepted logins (never the passwords)."""
        with self._lock:
            return list(self._logins)

    def clear(self) -> None:
        """Forget the captured mail, the AUTH records and every test hook."""
        with self._lock:
            self._messages.clear()
            self._raw.clear()
            self._auth_commands = 0
            self._logins.clear()
            self._refused_recipients.clear()
            self._refused_senders.clear()
            self._deferrals.clear()
            self._data_until_drop = None
            self._keep_dropped = True

    # --- test hooks ----------------------------------------------------------------------------

    def refuse_recipients(self, *addresses: str) -> None:
        """Answer ``550`` to RCPT for these addresses from now on."""
        with self._lock:
            self._refused_recipients.update(a.lower() for a in addresses)

    def refuse_senders(self, *addresses: str) -> None:
        """Answer ``553`` to MAIL FROM these addresses from now on."""
        with self._lock:
            self._refused_senders.update(a.lower() for a in addresses)

    def defer_recipient(self, address: str, times: int = 1) -> None:
        """Answer ``451`` (try again later) to the next ``times`` RCPTs for ``address``."""
        with self._lock:
            self._deferrals[address.lower()] = times

    def drop_after_data(self, count: int, *, keep: bool = True) -> None:
        """Accept ``count`` more messages, then cut the connection instead of answering the next.

        The dropped message's content has been received in full; with ``keep`` it stays in the
        outbox, as when a real server queued the mail but the reply never reached the client.
        Applies once.
        """
        with self._lock:
            self._data_until_drop = count
            self._keep_dropped = keep

    # --- the server's side (event loop thread) -------------------------------------------------

    def _note_auth_command(self) -> None:
        with self._lock:
            self._auth_commands += 1

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        if auth_data.password == self.rejected_password.encode() or auth_data.password.startswith(
            REFUSED_PREFIX
        ):
            return AuthResult(success=False, handled=False)  # 535 5.7.8
        with self._lock:
            self._logins.append(auth_data.login.decode("utf-8", "replace"))
        return AuthResult(success=True, auth_data=auth_data)

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        with self._lock:
            refused = address.lower() in self._refused_senders
        if refused:
            return "553 5.7.1 Sender address rejected: not owned by user"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        key = address.lower()
        with self._lock:
            refused = key in self._refused_recipients
            deferred = self._deferrals.get(key, 0) > 0
            if deferred:
                self._deferrals[key] -= 1
        if refused:
            return "550 5.1.1 Recipient address rejected: user unknown"
        if deferred:
            return "451 4.7.1 Try again later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = bytes(envelope.original_content or b"")
        with self._lock:
            drop = self._data_until_drop == 0
            if drop:
                self._data_until_drop = None
            elif self._data_until_drop is not None:
                self._data_until_drop -= 1
            keep = not drop or self._keep_dropped
        if keep:
            captured = _captured(str(envelope.mail_from or ""), list(envelope.rcpt_tos), raw)
            with self._lock:
                self._messages.append(captured)
                self._raw.append(raw)
            if self._journal is not None:
                self._journal.append(captured)
        if drop:
            # Cut the connection without a reply, as a crashed or unreachable server would.
            # Raising CancelledError ends aiosmtpd's client task the way a lost connection does.
            if isinstance(server.transport, asyncio.WriteTransport):
                server.transport.abort()
            raise asyncio.CancelledError
        return "250 2.0.0 OK: queued"


def _captured(sender: str, recipients: list[str], raw: bytes) -> OutboxMessage:
    return from_wire(
        raw,
        transport="smtp",
        sender=sender,
        to=recipients,
        message_id=None,  # the Message-ID header: SMTP answers with no id of its own
        received_at=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    )


class _SinkSMTP(SMTP):
    """aiosmtpd's server, counting AUTH commands before anything can refuse them."""

    def __init__(self, sink: SmtpSink, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sink = sink

    async def smtp_AUTH(self, arg: str) -> None:
        self._sink._note_auth_command()
        await super().smtp_AUTH(arg)


class _SinkController(Controller):
    """A Controller serving an already-bound socket (``Controller(port=0)`` does not work)."""

    def __init__(self, sink: SmtpSink, listener: socket.socket, **kwargs: Any) -> None:
        super().__init__(sink, hostname=sink.host, port=listener.getsockname()[1], **kwargs)
        self._sink = sink
        self._listener = listener

    def factory(self) -> SMTP:
        return _SinkSMTP(self._sink, self.handler, **self.SMTP_kwargs)

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        return self.loop.create_server(
            self._factory_invoker, sock=self._listener, ssl=self.ssl_context
        )


def write_certificates(directory: Path, ca_file: Path, cert_file: Path, key_file: Path) -> None:
    """A throwaway CA and a server certificate for ``localhost`` and ``127.0.0.1``, as PEM.

    A separate CA (rather than one self-signed leaf) verifies under every OpenSSL policy,
    including Python 3.13's ``VERIFY_X509_STRICT`` default.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    not_before, not_after = now - timedelta(hours=1), now + timedelta(days=30)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Send-Mail devhost test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.IPv4Address(LOOPBACK)),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
