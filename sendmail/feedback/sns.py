"""Amazon SNS messages posted to an HTTPS endpoint: verified as AWS documents, subscriptions
confirmed.

SNS posts each message as a JSON document. :meth:`SnsVerifier.verify` trusts one only when all of
these hold, checked in this order; the first that fails refuses the message, and nothing is
fetched or recorded for a message refused by an earlier rule:

1. The body is a JSON object (:class:`SnsMalformed`, 400, otherwise) of a known ``Type`` —
   ``Notification``, ``SubscriptionConfirmation``, ``UnsubscribeConfirmation`` — carrying every
   field that type signs, each a string, and the ``SignatureVersion`` the topic is set up
   with (``SENDMAIL_SNS_SIGNATURE_VERSION``: 2 by default; a v1 signature, SHA-1, is not taken
   where the topic signs with v2, so nothing can be downgraded to it). Every rule from here on
   refuses with :class:`SnsRejected`, 403 — whose answer says only that the message could not
   be verified; the reason goes to the log.
2. ``TopicArn`` is one of the allowed topics (``SENDMAIL_SNS_TOPIC_ARNS``): a message from a
   topic nobody configured costs no network I/O.
3. ``SigningCertURL`` is ``https://sns.<region>.amazonaws.com/<name>.pem`` for the region of the
   ``TopicArn`` (``.amazonaws.com.cn`` in the ``aws-cn`` partition): no other scheme, host, port
   or user info. ``SubscribeURL`` passes the same host rule before it is fetched.
4. The certificate is fetched over HTTPS (system CAs, no redirects, bounded size and time),
   must be valid now and hold an RSA key; it is cached by URL (SNS publishes a rotated
   certificate under a new URL), so a steady stream of events costs no fetch. A URL whose fetch
   was definitely refused (404/410, not a certificate, expired, not RSA) is remembered for
   :data:`FAILED_CERTIFICATE_SECONDS`, so repeating it costs no fetch either; a failure that may
   pass (other 4xx, 5xx, no connection) is not.
5. ``Signature`` (base64) verifies over the string to sign — ``name\\nvalue\\n`` for each signed
   field in byte order (Notification: Message, MessageId, Subject if present, Timestamp,
   TopicArn, Type; subscription messages: Message, MessageId, SubscribeURL, Timestamp, Token,
   TopicArn, Type) — SHA1withRSA for ``SignatureVersion`` 1, SHA256withRSA for 2.

The development trust: ``SENDMAIL_SNS_DEV_TRUSTED_ORIGIN`` names one loopback origin (devhost's
local SNS) whose URLs also pass rule 3, over plain HTTP; the settings refuse a non-loopback
value. Unset — the default, and always in Azure — only AWS's SNS hosts are trusted.

Not checked: the certificate's chain (SNS publishes the signing certificate without its
intermediates; its authenticity comes from the AWS host it was fetched from over verified HTTPS,
as in AWS's own SDK validators), and the message's age (SNS retries a delivery for as long as
its delivery policy says). A replayed genuine notification is recognised by its ``MessageId``
instead (:mod:`sendmail.feedback.replays`): it records nothing again, and in particular does not
put back on the suppression list an address an operator removed.

Messages in the exceptions are written here and name no secret; the module imports
``cryptography`` only when it verifies, so importing it stays cheap.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from sendmail.platform import jsontext

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

    from sendmail.platform.settings import Settings

logger = logging.getLogger(__name__)

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"

#: The fields each message type signs, in the order of the string to sign (byte order).
SIGNED_FIELDS: dict[str, tuple[str, ...]] = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
    UNSUBSCRIBE_CONFIRMATION: (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
#: Signed only when present.
OPTIONAL_FIELDS = frozenset({"Subject"})
SIGNATURE_VERSIONS = ("1", "2")

#: The largest body taken: SNS messages are at most 256 KiB, JSON escaping can double them.
MAX_BODY_BYTES = 600 * 1024
#: Fetches: certificate and confirmation answers are a few KiB.
FETCH_TIMEOUT_SECONDS = 10.0
MAX_FETCH_BYTES = 64 * 1024
#: Certificates kept per process (one per SNS region and rotation in use).
CERTIFICATE_CACHE_SIZE = 32
#: How long a certificate URL whose fetch failed is refused without fetching it again, and how
#: many such URLs are remembered.
FAILED_CERTIFICATE_SECONDS = 300
FAILED_CERTIFICATE_CACHE_SIZE = 256

#: The DNS suffix of SNS's hosts per ARN partition.
_PARTITION_DOMAINS = {
    "aws": "amazonaws.com",
    "aws-us-gov": "amazonaws.com",
    "aws-cn": "amazonaws.com.cn",
}
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$")

Fetch = Callable[[str], bytes]


class SnsMalformed(Exception):
    """The body is not an SNS message at all (not a JSON object): 400."""


class SnsRejected(Exception):
    """The message failed verification: 403, and nothing is recorded."""


class SnsFetchFailed(Exception):
    """A certificate or confirmation URL that passed the checks could not be fetched.

    ``status`` is the HTTP status the server answered, if it answered at all.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class SnsMessage:
    """A verified SNS message."""

    type: str
    message_id: str
    topic_arn: str
    timestamp: str
    message: str
    subject: str | None = None
    subscribe_url: str | None = None


def https_get(url: str, *, timeout: float = FETCH_TIMEOUT_SECONDS) -> bytes:
    """GET ``url`` (already checked by the caller): no redirects, at most MAX_FETCH_BYTES."""
    opener = urllib.request.build_opener(_NoRedirects())
    request = urllib.request.Request(url, headers={"User-Agent": "send-mail-sns-verifier"})  # noqa: S310 (checked URLs only)
    try:
        with opener.open(request, timeout=timeout) as response:
            data: bytes = response.read(MAX_FETCH_BYTES + 1)
    except urllib.error.HTTPError as e:
        raise SnsFetchFailed(f"{_where(url)} answered HTTP {e.code}", status=e.code) from e
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise SnsFetchFailed(f"fetching {_where(url)} failed: {type(e).__name__}") from e
    if len(data) > MAX_FETCH_BYTES:
        raise SnsFetchFailed(f"{_where(url)} answered more than {MAX_FETCH_BYTES} bytes")
    return data


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could lead anywhere: it is an error, not a hop."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _where(url: str) -> str:
    """A URL for the log: scheme, host and path, never the query (a token lives there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def sns_host(topic_arn: str) -> str | None:
    """``sns.<region>.<domain>`` for the topic's region and partition; None if not an SNS ARN."""
    parts = topic_arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sns":
        return None
    partition, region = parts[1], parts[3]
    domain = _PARTITION_DOMAINS.get(partition)
    if domain is None or not _REGION.match(region):
        return None
    return f"sns.{region}.{domain}"


def string_to_sign(fields: Mapping[str, Any]) -> bytes:
    """The bytes SNS signed for a message of ``fields["Type"]`` (see the module docs)."""
    lines: list[str] = []
    for name in SIGNED_FIELDS[str(fields["Type"])]:
        value = fields.get(name)
        if value is None and name in OPTIONAL_FIELDS:
            continue
        lines.append(f"{name}\n{value}\n")
    return "".join(lines).encode("utf-8")


def parse_body(body: bytes) -> dict[str, Any]:
    """The JSON object of an SNS message, or :class:`SnsMalformed`."""
    if len(body) > MAX_BODY_BYTES:
        raise SnsMalformed(f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        document = jsontext.loads(body)
    except jsontext.MalformedJson as e:
        raise SnsMalformed("the body must be an SNS message: a UTF-8 JSON object") from e
    if not isinstance(document, dict):
        raise SnsMalformed("the body must be an SNS message: a UTF-8 JSON object")
    return document


class CertificateCache:
    """Public keys of SNS signing certificates by URL, fetched once, kept while valid."""

    def __init__(
        self,
        fetch: Fetch = https_get,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        size: int = CERTIFICATE_CACHE_SIZE,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._size = size
        self._lock = threading.Lock()
        self._keys: OrderedDict[str, tuple[RSAPublicKey, datetime]] = OrderedDict()
        #: URL -> (the refusal, until when it is repeated without a fetch).
        self._failed: OrderedDict[str, tuple[SnsRejected, datetime]] = OrderedDict()
        self.fetches = 0

    def public_key(self, url: str) -> RSAPublicKey:
        now = self._clock()
        with self._lock:
            cached = self._keys.get(url)
            if cached is not None and now <= cached[1]:
                self._keys.move_to_end(url)
                return cached[0]
            failed = self._failed.get(url)
            if failed is not None and now < failed[1]:
                raise SnsRejected(str(failed[0]))
        try:
            key, not_after = self._load(url, now)
        except SnsRejected as e:
            with self._lock:
                self._failed[url] = (e, now + timedelta(seconds=FAILED_CERTIFICATE_SECONDS))
                self._failed.move_to_end(url)
                while len(self._failed) > FAILED_CERTIFICATE_CACHE_SIZE:
                    self._failed.popitem(last=False)
            raise
        with self._lock:
            self._keys[url] = (key, not_after)
            self._keys.move_to_end(url)
            while len(self._keys) > self._size:
                self._keys.popitem(last=False)
        return key

    def _load(self, url: str, now: datetime) -> tuple[RSAPublicKey, datetime]:
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

        try:
            pem = self._fetch(url)
        except SnsFetchFailed as e:
            if e.status in (404, 410):  # no such certificate: a definite answer
                raise SnsRejected("the SigningCertURL does not name a certificate") from e
            # AWS unreachable, failing, throttling (429) or refusing for now (403): not the
            # sender's fault and maybe not lasting, so no refusal is remembered — the route
            # answers 500 and SNS delivers again
            raise
        self.fetches += 1
        try:
            certificate = x509.load_pem_x509_certificate(pem)
        except ValueError as e:
            raise SnsRejected("the SigningCertURL does not hold a PEM certificate") from e
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise SnsRejected("the signing certificate is not valid now")
        key = certificate.public_key()
        if not isinstance(key, RSAPublicKey):
            raise SnsRejected("the signing certificate does not hold an RSA key")
        return key, certificate.not_valid_after_utc


class SnsVerifier:
    """Verifies SNS messages for a set of topics (see the module docs) and confirms
    subscriptions. Thread-safe; one per process keeps the certificate cache warm."""

    def __init__(
        self,
        topics: Iterable[str],
        *,
        dev_origin: str | None = None,
        fetch: Fetch = https_get,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        signature_version: str = "2",
    ) -> None:
        if signature_version not in SIGNATURE_VERSIONS:
            raise ValueError(f"SignatureVersion {signature_version!r} is not 1 or 2")
        self.topics = frozenset(topics)
        self.dev_origin = dev_origin
        self.signature_version = signature_version
        self._fetch = fetch
        self.certificates = CertificateCache(fetch, clock=clock)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> SnsVerifier:
        return cls(
            settings.SENDMAIL_SNS_TOPIC_ARNS,
            dev_origin=settings.SENDMAIL_SNS_DEV_TRUSTED_ORIGIN,
            signature_version=settings.SENDMAIL_SNS_SIGNATURE_VERSION,
            **kwargs,
        )

    # --- verification ----------------------------------------------------------------------
    def verify(self, body: bytes, *, message_type: str | None = None) -> SnsMessage:
        """The verified message in ``body``, or :class:`SnsMalformed` / :class:`SnsRejected`.

        ``message_type`` is the ``x-amz-sns-message-type`` header, if the request had one: it
        must name the body's type.
        """
        fields = parse_body(body)
        kind = fields.get("Type")
        if not isinstance(kind, str) or kind not in SIGNED_FIELDS:
            raise SnsRejected(
                "Type must be Notification, SubscriptionConfirmation or UnsubscribeConfirmation"
            )
        if message_type is not None and message_type != kind:
            raise SnsRejected("the x-amz-sns-message-type header does not match the Type")
        required = [n for n in SIGNED_FIELDS[kind] if n not in OPTIONAL_FIELDS]
        required += ["Signature", "SignatureVersion", "SigningCertURL"]
        for name in required:
            if not isinstance(fields.get(name), str) or not fields[name]:
                raise SnsRejected(f"{name} must be a non-empty string")
        for name in OPTIONAL_FIELDS:
            if fields.get(name) is not None and not isinstance(fields[name], str):
                raise SnsRejected(f"{name} must be a string")
        version = fields["SignatureVersion"]
        if version != self.signature_version:
            raise SnsRejected(
                f"SignatureVersion {version[:8]!r} is not the topic's "
                f"(SENDMAIL_SNS_SIGNATURE_VERSION={self.signature_version})"
            )
        topic = fields["TopicArn"]
        if topic not in self.topics:
            raise SnsRejected("TopicArn is not an allowed topic (SENDMAIL_SNS_TOPIC_ARNS)")
        cert_url = fields["SigningCertURL"]
        self.check_url(cert_url, topic, certificate=True)
        try:
            signature = base64.b64decode(fields["Signature"], validate=True)
        except (binascii.Error, ValueError) as e:
            raise SnsRejected("Signature is not base64") from e
        key = self.certificates.public_key(cert_url)
        self._check_signature(key, signature, string_to_sign(fields), version)
        return SnsMessage(
            type=kind,
            message_id=fields["MessageId"],
            topic_arn=topic,
            timestamp=fields["Timestamp"],
            message=fields["Message"],
            subject=fields.get("Subject"),
            subscribe_url=fields.get("SubscribeURL"),
        )

    def check_url(self, url: str, topic_arn: str, *, certificate: bool = False) -> None:
        """:class:`SnsRejected` unless ``url`` is one SNS itself would give for ``topic_arn``:
        https on ``sns.<the topic's region>.amazonaws.com`` (or the development origin)."""
        what = "SigningCertURL" if certificate else "SubscribeURL"
        try:
            if not url.isascii() or not url.isprintable() or " " in url:
                raise ValueError(url)  # urlsplit drops tabs and newlines: a fetch would not
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise SnsRejected(f"{what} is not a valid URL") from e
        if self.dev_origin is not None and _origin(parts.scheme, parts.hostname, port) == (
            self.dev_origin
        ):
            return
        host = sns_host(topic_arn)
        if (
            host is None
            or parts.scheme != "https"
            or (parts.hostname or "") != host
            or port not in (None, 443)
            or parts.username is not None
            or parts.password is not None
            or parts.fragment
        ):
            raise SnsRejected(f"{what} must be an https URL on {host or 'an SNS host'}")
        if certificate and (parts.query or not parts.path.endswith(".pem")):
            raise SnsRejected("SigningCertURL must name a .pem certificate")

    @staticmethod
    def _check_signature(key: RSAPublicKey, signature: bytes, data: bytes, version: str) -> None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 (SNS v1)
        try:
            key.verify(signature, data, padding.PKCS1v15(), algorithm)
        except InvalidSignature as e:
            raise SnsRejected("the signature does not verify") from e

    # --- subscriptions ----------------------------------------------------------------------
    def confirm(self, message: SnsMessage) -> None:
        """Confirm a verified ``SubscriptionConfirmation`` by fetching its ``SubscribeURL``,
        after the same host rule as the certificate. :class:`SnsFetchFailed` if it fails."""
        url = message.subscribe_url or ""
        self.check_url(url, message.topic_arn)
        action = parse_qs(urlsplit(url).query).get("Action", [""])[0]
        if action != "ConfirmSubscription":
            raise SnsRejected("SubscribeURL must be a ConfirmSubscription request")
        try:
            self._fetch(url)
        except SnsFetchFailed as e:
            if e.status is not None and 400 <= e.status < 500:  # an expired or replayed token
                raise SnsRejected("SNS refused the confirmation (expired or already used)") from e
            raise  # AWS unreachable or failing: SNS delivers the confirmation again after a 5xx


def _origin(scheme: str, host: str | None, port: int | None) -> str:
    netloc = f"[{host}]" if host and ":" in host else (host or "")
    if port is not None:
        netloc += f":{port}"
    return f"{scheme}://{netloc}"
