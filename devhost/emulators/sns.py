"""A local Amazon SNS for the dev host: messages signed as SNS signs them, posted to the app.

- :class:`SigningKey`: an RSA key and a self-signed certificate, generated once and kept under
  ``<state>/sns/`` (the key 0600), so a test or a benchmark can sign messages as devhost does.
- :class:`CertificateServer`: plain HTTP on 127.0.0.1 — serves the certificate at
  ``/SimpleNotificationService-devhost.pem`` and answers ``/?Action=ConfirmSubscription&...``
  as SNS's ``SubscribeURL`` does. Its origin is what the app trusts through
  ``SENDMAIL_SNS_DEV_TRUSTED_ORIGIN`` (devhost sets it; the app trusts nothing local otherwise).
- :class:`SnsTopic`: one topic with one HTTP subscription (the app's events route, function key
  in the query string). Like SNS it first posts a ``SubscriptionConfirmation`` and delivers
  notifications only once the app confirmed it; each message is delivered at least once, retried
  with backoff while the endpoint answers 5xx or cannot be reached, dropped (and logged) on a
  4xx — SNS's default HTTP delivery policy, with shorter waits. Several deliveries run at once.

Signing follows the SNS documentation on its own (:func:`sign` builds the string to sign here,
not with the app's code), so the app's verifier is tested against an independent signer.
What is kept in memory only: messages not yet delivered are lost if devhost is killed.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import secrets
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

logger = logging.getLogger(__name__)

CERT_PATH = "/SimpleNotificationService-devhost.pem"
KEY_FILE = "signing-key.pem"
CERT_FILE = "signing-cert.pem"
ACCOUNT = "000000000000"
#: Deliveries running at once (SNS delivers to an HTTP endpoint concurrently too).
DELIVERY_THREADS = 4
#: Attempts per message while the endpoint answers 5xx or is unreachable, and the longest wait.
MAX_ATTEMPTS = 12
MAX_BACKOFF_SECONDS = 5.0

# Written out here again on purpose, as SNS documents them: the emulator signs independently of
# sendmail/feedback/sns.py's verifier, so a wrong field list in one is caught by the other's tests.
_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SUBSCRIPTION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SigningKey:
    """devhost's SNS signing key and certificate (PEM), generated once per state dir."""

    def __init__(self, key_pem: bytes, cert_pem: bytes) -> None:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        self.key_pem = key_pem
        self.cert_pem = cert_pem
        self._key: Any = load_pem_private_key(key_pem, password=None)

    @classmethod
    def generate(cls, *, days: int = 3650, common_name: str = "sns.devhost.local") -> SigningKey:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=days))
            .sign(key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cls(key_pem, cert.public_bytes(serialization.Encoding.PEM))

    @classmethod
    def load_or_create(cls, directory: Path) -> SigningKey:
        """The key kept in ``directory`` (``signing-key.pem`` 0600, ``signing-cert.pem``)."""
        from devhost.config import write_private

        key_path, cert_path = directory / KEY_FILE, directory / CERT_FILE
        if key_path.is_file() and cert_path.is_file():
            return cls(key_path.read_bytes(), cert_path.read_bytes())
        directory.mkdir(parents=True, exist_ok=True)
        signing = cls.generate()
        write_private(key_path, signing.key_pem.decode("ascii"))
        cert_path.write_bytes(signing.cert_pem)
        return signing

    def sign(self, fields: dict[str, Any], version: str = "2") -> dict[str, Any]:
        """``fields`` with ``SignatureVersion`` and ``Signature`` added (see :func:`sign`)."""
        return sign(fields, self._key, version)


def sign(fields: dict[str, Any], private_key: Any, version: str = "2") -> dict[str, Any]:
    """Sign an SNS message as SNS does: ``name\\nvalue\\n`` for each signed field present, in
    the documented order, SHA1withRSA (version 1) or SHA256withRSA (version 2)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    names = _NOTIFICATION_FIELDS if fields["Type"] == "Notification" else _SUBSCRIPTION_FIELDS
    text = "".join(f"{name}\n{fields[name]}\n" for name in names if name in fields)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 (SNS v1)
    signature = private_key.sign(text.encode("utf-8"), padding.PKCS1v15(), algorithm)
    return {
        **fields,
        "SignatureVersion": version,
        "Signature": base64.b64encode(signature).decode("ascii"),
    }


class CertificateServer:
    """The certificate and the subscription-confirmation URL, on loopback (see module docs)."""

    def __init__(self, cert_pem: bytes) -> None:
        self.cert_pem = cert_pem
        self.confirmations: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> CertificateServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == CERT_PATH:
                    self._answer(200, owner.cert_pem, "application/x-pem-file")
                    return
                query = parse_qs(parts.query)
                if parts.path == "/" and query.get("Action") == ["ConfirmSubscription"]:
                    token = query.get("Token", [""])[0]
                    if owner.confirm(token):
                        body = b"<ConfirmSubscriptionResponse><ConfirmSubscriptionResult/>"
                        self._answer(200, body + b"</ConfirmSubscriptionResponse>", "text/xml")
                        return
                self._answer(404, b"not found", "text/plain")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True, name="dev-sns")
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    @property
    def origin(self) -> str:
        if self._server is None:
            raise RuntimeError("the certificate server has not been started")
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    @property
    def cert_url(self) -> str:
        return self.origin + CERT_PATH

    def expect(self, token: str) -> threading.Event:
        with self._lock:
            return self.confirmations.setdefault(token, threading.Event())

    def confirm(self, token: str) -> bool:
        with self._lock:
            event = self.confirmations.get(token)
        if event is None:
            return False
        event.set()
        return True


class SnsTopic:
    """One topic, one HTTP subscription, at-least-once delivery (see the module docs)."""

    def __init__(
        self,
        *,
        region: str,
        name: str,
        endpoint: str,
        signing: SigningKey,
        certificates: CertificateServer,
        version: str = "2",
        threads: int = DELIVERY_THREADS,
    ) -> None:
        self.arn = f"arn:aws:sns:{region}:{ACCOUNT}:{name}"
        self.region = region
        self.endpoint = endpoint
        self.signing = signing
        self.certificates = certificates
        self.version = version
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._deliver_loop, daemon=True, name=f"dev-sns-{n}")
            for n in range(threads)
        ]
        self._subscribe_lock = threading.Lock()
        self._confirmed = threading.Event()
        self._stopping = threading.Event()
        self._busy = 0
        self._busy_lock = threading.Lock()
        self.delivered = 0
        self.dropped = 0

    def start(self) -> SnsTopic:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(None)

    @property
    def confirmed(self) -> bool:
        return self._confirmed.is_set()

    def publish(self, message: str, *, subject: str | None = None) -> str:
        """Queue a notification; returns its SNS ``MessageId``."""
        message_id = str(uuid.uuid4())
        fields: dict[str, Any] = {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": self.arn,
            "Message": message,
            "Timestamp": _now(),
        }
        if subject is not None:
            fields["Subject"] = subject
        with self._busy_lock:
            self._busy += 1
        self._queue.put(fields)
        return message_id

    def pending(self) -> int:
        """Messages published and not yet delivered or dropped."""
        with self._busy_lock:
            return self._busy

    def notification(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """A complete signed notification for ``fields`` (as posted; for tests and benches)."""
        return self.signing.sign(
            {
                **fields,
                "SigningCertURL": self.certificates.cert_url,
                "UnsubscribeURL": f"{self.certificates.origin}/?Action=Unsubscribe"
                f"&SubscriptionArn={quote(self.arn)}:devhost",
            },
            self.version,
        )

    # --- delivery ---------------------------------------------------------------------------
    def _deliver_loop(self) -> None:
        while True:
            fields = self._queue.get()
            if fields is None or self._stopping.is_set():
                return
            try:
                self._subscribe()
                self._deliver(self.notification(fields))
            except Exception:
                logger.exception("dev SNS: delivering %s failed", fields.get("MessageId"))
                self.dropped += 1
            finally:
                with self._busy_lock:
                    self._busy -= 1

    def _subscribe(self) -> None:
        """Post a SubscriptionConfirmation until the app has confirmed it (once per topic)."""
        with self._subscribe_lock:
            attempt = 0
            while not self._confirmed.is_set() and not self._stopping.is_set():
                token = secrets.token_hex(32)
                confirmed = self.certificates.expect(token)
                subscribe_url = (
                    f"{self.certificates.origin}/?Action=ConfirmSubscription"
                    f"&TopicArn={quote(self.arn)}&Token={token}"
                )
                message = self.signing.sign(
                    {
                        "Type": "SubscriptionConfirmation",
                        "MessageId": str(uuid.uuid4()),
                        "Token": token,
                        "TopicArn": self.arn,
                        "Message": f"You have chosen to subscribe to the topic {self.arn}.\n"
                        "To confirm the subscription, visit the SubscribeURL included in this "
                        "message.",
                        "SubscribeURL": subscribe_url,
                        "Timestamp": _now(),
                        "SigningCertURL": self.certificates.cert_url,
                    },
                    self.version,
                )
                status = self._post(message)
                if status is not None and 200 <= status < 300 and confirmed.is_set():
                    self._confirmed.set()
                    logger.info("dev SNS: the app confirmed the subscription to %s", self.arn)
                    return
                attempt += 1
                if attempt in (1, 10):
                    logger.warning(
                        "dev SNS: the app did not confirm the subscription (HTTP %s); retrying",
                        status,
                    )
                time.sleep(min(MAX_BACKOFF_SECONDS, 0.2 * 2 ** min(attempt, 5)))

    def _deliver(self, message: dict[str, Any]) -> None:
        for attempt in range(MAX_ATTEMPTS):
            status = self._post(message)
            if status is not None and 200 <= status < 300:
                self.delivered += 1
                return
            if status is not None and 400 <= status < 500 and status != 429:
                logger.warning(
                    "dev SNS: the app refused notification %s with HTTP %d: dropped",
                    message["MessageId"],
                    status,
                )
                self.dropped += 1
                return
            if self._stopping.is_set():
                return
            time.sleep(min(MAX_BACKOFF_SECONDS, 0.1 * 2**attempt))
        logger.warning("dev SNS: notification %s not delivered: dropped", message["MessageId"])
        self.dropped += 1

    def _post(self, message: Mapping[str, Any]) -> int | None:
        request = urllib.request.Request(  # noqa: S310 (the app's own loopback URL)
            self.endpoint,
            data=json.dumps(message).encode("utf-8"),
            method="POST",
            headers={
                "Content-Type": "text/plain; charset=UTF-8",
                "x-amz-sns-message-type": str(message["Type"]),
                "x-amz-sns-message-id": str(message["MessageId"]),
                "x-amz-sns-topic-arn": self.arn,
                "User-Agent": "Amazon Simple Notification Service Agent",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return int(response.status)
        except urllib.error.HTTPError as e:
            return int(e.code)
        except (urllib.error.URLError, OSError):
            return None


class LocalSns:
    """devhost's SNS for SES events: the signing key, the certificate server and one topic
    subscribed by the app's events route. ``<state>/sns/local-sns.json`` says where they are
    (certificate URL, trusted origin, topic ARN), for tests and benchmarks that sign their own
    messages with the same key."""

    def __init__(self, state_dir: Path, *, region: str, endpoint: str) -> None:
        self.directory = state_dir / "sns"
        self.signing = SigningKey.load_or_create(self.directory)
        self.certificates = CertificateServer(self.signing.cert_pem).start()
        self.topic = SnsTopic(
            region=region,
            name="devhost-ses-events",
            endpoint=endpoint,
            signing=self.signing,
            certificates=self.certificates,
        ).start()
        (self.directory / "local-sns.json").write_text(
            json.dumps(
                {
                    "topicArn": self.topic.arn,
                    "certUrl": self.certificates.cert_url,
                    "trustedOrigin": self.certificates.origin,
                }
            ),
            encoding="utf-8",
        )

    @property
    def trusted_origin(self) -> str:
        return self.certificates.origin

    def publish(self, message: str) -> str:
        return self.topic.publish(message)

    def stop(self) -> None:
        self.topic.stop()
        self.certificates.stop()
