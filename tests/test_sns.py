"""SNS message verification: certificates generated here, messages signed by devhost's signer
(which builds the string to sign on its own), every rule of sendmail/feedback/sns.py held to.

The certificate "fetch" is a dict of URL -> PEM that counts its reads, so the tests see what
was fetched (nothing, for a refused topic). One test runs the real fetcher against a local HTTP
server to show it never follows a redirect.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from devhost.emulators.sns import SigningKey
from sendmail.feedback.sns import (
    FAILED_CERTIFICATE_SECONDS,
    SnsFetchFailed,
    SnsMalformed,
    SnsRejected,
    SnsVerifier,
    https_get,
    sns_host,
    string_to_sign,
)
from sendmail.platform.settings import Settings

REGION = "ap-northeast-2"
TOPIC = f"arn:aws:sns:{REGION}:123456789012:sendmail-ses-events"
CERT_URL = f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
SUBSCRIBE_URL = (
    f"https://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=t0k"
)


@pytest.fixture(scope="module")
def signing() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def other_signing() -> SigningKey:
    return SigningKey.generate()


class Certificates:
    """A fake fetch: URL -> body, counting reads."""

    def __init__(self, pems: dict[str, bytes]) -> None:
        self.pems = dict(pems)
        self.reads: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.reads.append(url)
        if url not in self.pems:
            raise SnsFetchFailed("not found", status=404)
        return self.pems[url]


@pytest.fixture
def fetch(signing: SigningKey) -> Certificates:
    return Certificates({CERT_URL: signing.cert_pem, SUBSCRIBE_URL: b"<ok/>"})


@pytest.fixture
def verifier(fetch: Certificates) -> SnsVerifier:
    return SnsVerifier([TOPIC], fetch=fetch)


def notification(
    signing: SigningKey, version: str = "2", *, subject: str | None = None, **overrides: Any
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": TOPIC,
        "Message": json.dumps({"eventType": "Delivery", "mail": {"messageId": "m-1"}}),
        "Timestamp": "2026-12-01T10:00:00.000Z",
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": f"https://sns.{REGION}.amazonaws.com/?Action=Unsubscribe",
    }
    if subject is not None:
        fields["Subject"] = subject
    fields.update(overrides)
    return signing.sign(fields, version)


def confirmation(signing: SigningKey, kind: str = "SubscriptionConfirmation") -> dict[str, Any]:
    return signing.sign(
        {
            "Type": kind,
            "MessageId": str(uuid.uuid4()),
            "Token": "t0k",
            "TopicArn": TOPIC,
            "Message": "You have chosen to subscribe to the topic.",
            "SubscribeURL": SUBSCRIBE_URL,
            "Timestamp": "2026-12-01T10:00:00.000Z",
            "SigningCertURL": CERT_URL,
        }
    )


def body(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields).encode()


# --- the string to sign, as AWS documents it ------------------------------------------------


def test_the_string_to_sign_is_the_documented_one() -> None:
    """The example of the SNS developer guide ("Verifying the signatures of Amazon SNS
    messages"), field for field."""
    fields = {
        "Type": "Notification",
        "MessageId": "4d4dc071-ddbf-465d-bba8-08f81c89da64",
        "TopicArn": "arn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P",
        "Subject": "My subject",
        "Message": "My Test Message",
        "Timestamp": "2012-06-05T04:37:04.321Z",
        "SignatureVersion": "1",
    }
    assert string_to_sign(fields) == (
        b"Message\nMy Test Message\nMessageId\n4d4dc071-ddbf-465d-bba8-08f81c89da64\n"
        b"Subject\nMy subject\nTimestamp\n2012-06-05T04:37:04.321Z\n"
        b"TopicArn\narn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P\n"
        b"Type\nNotification\n"
    )
    del fields["Subject"]
    assert b"Subject" not in string_to_sign(fields)


# --- what verifies ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("subject", [None, "Amazon SES Email Event Notification"])
def test_notifications_signed_with_the_topics_version_verify(
    fetch: Certificates, signing: SigningKey, version: str, subject: str | None
) -> None:
    verifier = SnsVerifier([TOPIC], fetch=fetch, signature_version=version)
    fields = notification(signing, version, subject=subject)
    message = verifier.verify(body(fields), message_type="Notification")
    assert (message.type, message.message_id, message.topic_arn) == (
        "Notification",
        fields["MessageId"],
        TOPIC,
    )
    assert message.subject == subject
    assert json.loads(message.message)["eventType"] == "Delivery"


def test_a_subscription_is_confirmed_by_fetching_its_subscribe_url(
    verifier: SnsVerifier, signing: SigningKey, fetch: Certificates
) -> None:
    message = verifier.verify(body(confirmation(signing)))
    verifier.confirm(message)
    assert fetch.reads == [CERT_URL, SUBSCRIBE_URL]


def test_an_unsubscribe_confirmation_verifies(verifier: SnsVerifier, signing: SigningKey) -> None:
    message = verifier.verify(body(confirmation(signing, "UnsubscribeConfirmation")))
    assert message.type == "UnsubscribeConfirmation"


@pytest.mark.parametrize(("topic_signs", "message_signs"), [("2", "1"), ("1", "2")])
def test_a_signature_of_another_version_than_the_topics_is_refused(
    fetch: Certificates, signing: SigningKey, topic_signs: str, message_signs: str
) -> None:
    """SHA-1 (version 1) is not taken where the topic signs with version 2 (the default):
    nothing can be downgraded to it. Refused before any fetch."""
    verifier = SnsVerifier([TOPIC], fetch=fetch, signature_version=topic_signs)
    with pytest.raises(SnsRejected, match="SignatureVersion"):
        verifier.verify(body(notification(signing, message_signs)))
    assert fetch.reads == []


def test_the_version_comes_from_the_setting_and_defaults_to_2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert SnsVerifier.from_settings(Settings()).signature_version == "2"
    monkeypatch.setenv("SENDMAIL_SNS_SIGNATURE_VERSION", "1")
    assert SnsVerifier.from_settings(Settings()).signature_version == "1"
    monkeypatch.setenv("SENDMAIL_SNS_SIGNATURE_VERSION", "3")
    with pytest.raises(ValueError, match="SENDMAIL_SNS_SIGNATURE_VERSION"):
        Settings()


def test_a_certificate_url_that_failed_is_refused_unfetched_for_a_while(
    signing: SigningKey,
) -> None:
    """Each failed fetch was repeated for every message naming the URL; now a failure is kept
    for FAILED_CERTIFICATE_SECONDS, then the URL is fetched again."""
    moment = [datetime.now(UTC)]
    fetch = Certificates({})
    verifier = SnsVerifier([TOPIC], fetch=fetch, clock=lambda: moment[0])
    for _ in range(5):
        with pytest.raises(SnsRejected, match="does not name a certificate"):
            verifier.verify(body(notification(signing)))
    assert fetch.reads == [CERT_URL]

    fetch.pems[CERT_URL] = signing.cert_pem  # published meanwhile
    moment[0] += timedelta(seconds=FAILED_CERTIFICATE_SECONDS + 1)
    verifier.verify(body(notification(signing)))
    assert fetch.reads == [CERT_URL, CERT_URL]


def test_the_certificate_is_fetched_once_per_url(
    verifier: SnsVerifier, signing: SigningKey, fetch: Certificates
) -> None:
    for _ in range(5):
        verifier.verify(body(notification(signing)))
    assert fetch.reads == [CERT_URL]


def test_the_china_partition_uses_its_own_domain(signing: SigningKey) -> None:
    topic = "arn:aws-cn:sns:cn-north-1:123456789012:events"
    url = "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-1.pem"
    verifier = SnsVerifier([topic], fetch=Certificates({url: signing.cert_pem}))
    verifier.verify(body(notification(signing, TopicArn=topic, SigningCertURL=url)))
    assert sns_host(topic) == "sns.cn-north-1.amazonaws.com.cn"
    assert sns_host("arn:aws:sns:us-gov-west-1:1:t") == "sns.us-gov-west-1.amazonaws.com"
    assert sns_host("arn:aws-iso:sns:us-iso-east-1:1:t") is None
    assert sns_host("arn:aws:sqs:us-east-1:1:t") is None


# --- what is refused --------------------------------------------------------------------------

REQUIRED_NOTIFICATION_FIELDS = [
    "Type",
    "MessageId",
    "TopicArn",
    "Message",
    "Timestamp",
    "Signature",
    "SignatureVersion",
    "SigningCertURL",
]


@pytest.mark.parametrize("name", REQUIRED_NOTIFICATION_FIELDS)
def test_a_notification_missing_a_field_is_refused(
    verifier: SnsVerifier, signing: SigningKey, name: str
) -> None:
    fields = notification(signing)
    del fields[name]
    with pytest.raises(SnsRejected):
        verifier.verify(body(fields))


@pytest.mark.parametrize("name", ["Token", "SubscribeURL", "Message", "Timestamp"])
def test_a_subscription_message_missing_a_field_is_refused(
    verifier: SnsVerifier, signing: SigningKey, name: str
) -> None:
    fields = confirmation(signing)
    del fields[name]
    with pytest.raises(SnsRejected):
        verifier.verify(body(fields))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Type", "Forgery"),
        ("Type", []),  # not text at all: a refusal, not a TypeError (a 500)
        ("Type", {"Notification": 1}),
        ("Message", 42),
        ("MessageId", ""),
        ("Subject", 1),
        ("SignatureVersion", "3"),
        ("SignatureVersion", 2),
        ("Signature", "not base64 !!"),
    ],
)
def test_malformed_fields_are_refused(
    verifier: SnsVerifier, signing: SigningKey, fetch: Certificates, name: str, value: Any
) -> None:
    fields = {**notification(signing), name: value}
    with pytest.raises(SnsRejected):
        verifier.verify(body(fields))


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'"text"', b"\xff\xfe", b"x" * 700_000])
def test_a_body_that_is_no_sns_message_is_malformed(verifier: SnsVerifier, raw: bytes) -> None:
    with pytest.raises(SnsMalformed):
        verifier.verify(raw)


def test_a_header_that_disagrees_with_the_type_is_refused(
    verifier: SnsVerifier, signing: SigningKey
) -> None:
    with pytest.raises(SnsRejected, match="x-amz-sns-message-type"):
        verifier.verify(body(notification(signing)), message_type="SubscriptionConfirmation")


def test_a_topic_not_allowed_is_refused_before_any_fetch(
    verifier: SnsVerifier, signing: SigningKey, fetch: Certificates
) -> None:
    other = f"arn:aws:sns:{REGION}:999999999999:someone-elses-topic"
    with pytest.raises(SnsRejected, match="TopicArn"):
        verifier.verify(body(notification(signing, TopicArn=other)))
    assert fetch.reads == []


@pytest.mark.parametrize(
    "url",
    [
        f"http://sns.{REGION}.amazonaws.com/SimpleNotificationService-1.pem",  # not https
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",  # another region
        f"https://sns.{REGION}.amazonaws.com.evil.example/SimpleNotificationService-1.pem",
        f"https://evil.example/sns.{REGION}.amazonaws.com/x.pem",
        f"https://sns.{REGION}.amazonaws.com:8443/SimpleNotificationService-1.pem",
        f"https://user@sns.{REGION}.amazonaws.com/SimpleNotificationService-1.pem",
        f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-1.txt",
        f"https://sns.{REGION}.amazonaws.com/x.pem?redirect=https://evil.example",
        f"https://sns.{REGION}.amazonaws.com.cn/SimpleNotificationService-1.pem",
        "http://127.0.0.1:8080/SimpleNotificationService-devhost.pem",
        "file:///etc/ssl/cert.pem",
        # urlsplit drops tabs and newlines and keeps spaces: what passed would not be what a
        # fetch asks for
        f"https://sns.{REGION}.amazonaws.com/Simple\tNotificationService-1.pem",
        f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-1.pem\n",
        f" https://sns.{REGION}.amazonaws.com/SimpleNotificationService-1.pem",
    ],
)
def test_a_certificate_url_off_the_topic_regions_sns_host_is_refused_unfetched(
    signing: SigningKey, url: str
) -> None:
    fetch = Certificates({url: signing.cert_pem})
    verifier = SnsVerifier([TOPIC], fetch=fetch)
    with pytest.raises(SnsRejected, match="SigningCertURL"):
        verifier.verify(body(notification(signing, SigningCertURL=url)))
    assert fetch.reads == []


@pytest.mark.parametrize("field", ["Message", "MessageId", "Timestamp", "Subject", "Type"])
def test_a_tampered_message_is_refused(
    verifier: SnsVerifier, signing: SigningKey, field: str
) -> None:
    fields = notification(signing, subject="original")
    fields[field] = "SubscriptionConfirmation" if field == "Type" else fields[field] + "x"
    with pytest.raises(SnsRejected):
        verifier.verify(body(fields))


def test_a_message_signed_by_another_key_is_refused(
    verifier: SnsVerifier, other_signing: SigningKey
) -> None:
    with pytest.raises(SnsRejected, match="signature does not verify"):
        verifier.verify(body(notification(other_signing)))


def test_a_subscribe_url_elsewhere_is_not_fetched(
    verifier: SnsVerifier, signing: SigningKey, fetch: Certificates
) -> None:
    for url in (
        "https://evil.example/?Action=ConfirmSubscription",
        f"https://sns.{REGION}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
    ):
        fields = signing.sign({**confirmation(signing), "SubscribeURL": url})
        message = verifier.verify(body(fields))
        with pytest.raises(SnsRejected):
            verifier.confirm(message)
    assert fetch.reads == [CERT_URL]


def test_certificates_that_are_missing_expired_or_not_rsa_are_refused(signing: SigningKey) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    missing = SnsVerifier([TOPIC], fetch=Certificates({}))
    with pytest.raises(SnsRejected, match="does not name a certificate"):
        missing.verify(body(notification(signing)))

    later = datetime.now(UTC) + timedelta(days=4000)
    expired = SnsVerifier(
        [TOPIC], fetch=Certificates({CERT_URL: signing.cert_pem}), clock=lambda: later
    )
    with pytest.raises(SnsRejected, match="not valid now"):
        expired.verify(body(notification(signing)))

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    not_rsa = SnsVerifier([TOPIC], fetch=Certificates({CERT_URL: pem}))
    with pytest.raises(SnsRejected, match="RSA"):
        not_rsa.verify(body(notification(signing)))

    garbage = SnsVerifier([TOPIC], fetch=Certificates({CERT_URL: b"not a certificate"}))
    with pytest.raises(SnsRejected, match="PEM"):
        garbage.verify(body(notification(signing)))


@pytest.mark.parametrize(
    ("status", "refused"), [(403, True), (404, True), (503, False), (None, False)]
)
def test_a_confirmation_sns_refuses_is_a_refusal_and_one_it_cannot_answer_a_failure(
    signing: SigningKey, status: int | None, refused: bool
) -> None:
    """An expired or replayed SubscriptionConfirmation (SNS answers 4xx to its SubscribeURL) is
    refused like a forgery (403, no traceback); SNS down or failing stays a failure (a 5xx, which
    SNS delivers again)."""
    certificates = Certificates({CERT_URL: signing.cert_pem})

    def fetch(url: str) -> bytes:
        if url == SUBSCRIBE_URL:
            raise SnsFetchFailed("refused", status=status)
        return certificates(url)

    verifier = SnsVerifier([TOPIC], fetch=fetch)
    message = verifier.verify(body(confirmation(signing)))
    with pytest.raises(SnsRejected if refused else SnsFetchFailed):
        verifier.confirm(message)


def test_an_unreachable_certificate_host_is_a_fetch_failure_not_a_refusal(
    signing: SigningKey,
) -> None:
    def down(url: str) -> bytes:
        raise SnsFetchFailed("connection refused")

    with pytest.raises(SnsFetchFailed):
        SnsVerifier([TOPIC], fetch=down).verify(body(notification(signing)))


# --- the development trust ------------------------------------------------------------------


def test_by_default_only_awss_sns_hosts_are_trusted(signing: SigningKey) -> None:
    """Default settings: a message whose certificate is on loopback (devhost's) is refused,
    the same message with the certificate on the topic region's SNS host verifies."""
    settings = Settings(SENDMAIL_SNS_TOPIC_ARNS=TOPIC)
    assert settings.SENDMAIL_SNS_DEV_TRUSTED_ORIGIN is None
    local = "http://127.0.0.1:8080/SimpleNotificationService-devhost.pem"
    fetch = Certificates({local: signing.cert_pem, CERT_URL: signing.cert_pem})
    verifier = SnsVerifier.from_settings(settings, fetch=fetch)

    with pytest.raises(SnsRejected, match="SigningCertURL"):
        verifier.verify(body(notification(signing, SigningCertURL=local)))
    assert fetch.reads == []
    verifier.verify(body(notification(signing)))
    assert fetch.reads == [CERT_URL]


def test_the_development_origin_is_trusted_only_when_set_and_only_on_loopback(
    signing: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = "http://127.0.0.1:8080/SimpleNotificationService-devhost.pem"
    monkeypatch.setenv("SENDMAIL_SNS_TOPIC_ARNS", TOPIC)
    monkeypatch.setenv("SENDMAIL_SNS_DEV_TRUSTED_ORIGIN", "http://127.0.0.1:8080")
    verifier = SnsVerifier.from_settings(Settings(), fetch=Certificates({local: signing.cert_pem}))
    verifier.verify(body(notification(signing, SigningCertURL=local)))
    with pytest.raises(SnsRejected):  # the same host on another port is not the origin
        verifier.verify(body(notification(signing, SigningCertURL=local.replace(":8080", ":8081"))))

    for value in (
        "https://sns.evil.example",
        "http://10.0.0.5:8080",
        "http://127.0.0.1:8080/path",
        "ftp://127.0.0.1",
    ):
        monkeypatch.setenv("SENDMAIL_SNS_DEV_TRUSTED_ORIGIN", value)
        with pytest.raises(ValueError, match="loopback"):
            Settings()


# --- the real fetcher ------------------------------------------------------------------------


@pytest.fixture
def redirecting_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/cert.pem":
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"PEM")
                return
            self.send_response(302)
            self.send_header("Location", "/cert.pem")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_fetcher_reads_a_url_and_never_follows_a_redirect(redirecting_server: str) -> None:
    assert https_get(f"{redirecting_server}/cert.pem") == b"PEM"
    with pytest.raises(SnsFetchFailed) as caught:
        https_get(f"{redirecting_server}/elsewhere")
    assert caught.value.status == 302


@pytest.mark.parametrize("status", [403, 429, 503])
def test_a_failure_that_may_pass_is_neither_a_refusal_nor_remembered(
    signing: SigningKey, status: int
) -> None:
    """A throttled or briefly refused certificate fetch is not the sender's fault: no 403 (SNS
    would not deliver again), no cached refusal; the route answers 500 and SNS retries."""
    reads: list[str] = []

    def flaky(url: str) -> bytes:
        reads.append(url)
        raise SnsFetchFailed("busy", status=status)

    verifier = SnsVerifier([TOPIC], fetch=flaky)
    for _ in range(2):
        with pytest.raises(SnsFetchFailed):
            verifier.verify(body(notification(signing)))
    assert reads == [CERT_URL, CERT_URL]
