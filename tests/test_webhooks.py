"""Signed webhooks, the library (sendmail/feedback/webhooks/): signatures as the
``standardwebhooks`` package verifies them, events and their stable ids, the SSRF rules, one
attempt against a real local HTTPS server (pinned to the checked address, TLS for the host name)
and the retry schedule."""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr, ValidationError
from standardwebhooks import Webhook, WebhookVerificationError

from sendmail.contract.errors import ServiceMisconfigured
from sendmail.feedback.webhooks import (
    DEFAULT_EVENT_TYPES,
    EVENT_TYPES,
    MAX_ATTEMPTS,
    RETRY_DELAYS_SECONDS,
    DeliveryLimits,
    EndpointRefused,
    SendCounts,
    SigningSecrets,
    WebhookConfig,
    WebhookSender,
    address_refusal,
    delay_before,
    email_event,
    event_id,
    new_secret,
    parse_endpoint,
    send_event,
)
from sendmail.platform.settings import Settings

HOOK_HOST = "hooks.example.test"  # .test never resolves: only the stub resolver knows it
WHEN = datetime(2026, 3, 1, 9, 30, 12, 345000, tzinfo=UTC)
WHEN_IN_SEOUL = datetime(2026, 3, 1, 9, 30, 12, tzinfo=ZoneInfo("Asia/Seoul"))  # 00:30:12Z


# --- signing, verified by the standardwebhooks package -----------------------------------------


def bounce() -> Any:
    return email_event(
        "email.bounced",
        send_id="send-1",
        timestamp=WHEN,
        recipient="수신자@example.com",
        message_id="0100018e-abc",
        ses_type="Bounce",
        ses_sub_type="Permanent/General",
        metadata={"campaign": "봄 소식"},
    )


def test_the_signature_verifies_with_the_standardwebhooks_package() -> None:
    secret = new_secret()
    event = bounce()
    body = event.body()

    headers = SigningSecrets(SecretStr(secret)).headers(event.id, int(time.time()), body)

    assert Webhook(secret).verify(body, headers) == json.loads(body)
    assert headers["webhook-id"] == event.id
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"Permanent", b"Transient"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


@pytest.mark.parametrize("separator", [",", " ", ", ", "\n"])
def test_every_configured_secret_signs_so_rotation_verifies_with_either(separator: str) -> None:
    old, new = new_secret(), new_secret()
    body = bounce().body()

    headers = SigningSecrets(old + separator + new).headers("msg_rotation", int(time.time()), body)

    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(new_secret()).verify(body, headers)


def test_a_stale_or_future_timestamp_is_refused_by_the_package() -> None:
    secret = new_secret()
    body = bounce().body()
    signer = SigningSecrets(secret)

    stale = signer.headers("msg_old", int(time.time()) - 6 * 60, body)
    future = signer.headers("msg_new", int(time.time()) + 6 * 60, body)

    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(body, stale)
    with pytest.raises(WebhookVerificationError, match="too new"):
        Webhook(secret).verify(body, future)


@pytest.mark.parametrize(
    "value",
    [
        "",
        " , ",
        "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0",  # no whsec_ prefix
        "whsec_not*base64*at*all*here*right*now",
        "whsec_" + base64.b64encode(b"short").decode(),  # 5 bytes: the spec asks 24 at least
        "whsec_" + base64.b64encode(b"x" * 65).decode(),
    ],
)
def test_a_bad_secret_is_refused_without_its_text(value: str) -> None:
    good = new_secret()

    with pytest.raises(ServiceMisconfigured) as refused:
        SigningSecrets(SecretStr(f"{good},{value}" if value.strip(" ,") else value))

    message = str(refused.value)
    assert "SENDMAIL_WEBHOOK_SECRET" in message
    assert good[6:] not in message
    assert not value.strip(" ,") or value[6:] not in message


def test_the_secrets_repr_shows_only_how_many() -> None:
    secret = new_secret()
    assert repr(SigningSecrets(secret)) == "SigningSecrets(1 secrets)"
    assert secret[6:] not in repr(SigningSecrets(secret))


def test_an_id_that_would_break_the_signed_string_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'\.'"):
        SigningSecrets(new_secret()).signature("msg_a.b", 1, b"{}")


# --- events ----------------------------------------------------------------------------------


def test_an_email_event_body_has_the_spec_shape_in_compact_utf8_json() -> None:
    body = bounce().body()

    assert b" " not in body.replace("봄 소식".encode(), b"")  # compact: no spacing
    assert json.loads(body) == {
        "type": "email.bounced",
        "timestamp": "2026-03-01T09:30:12.345000Z",
        "data": {
            "sendId": "send-1",
            "metadata": {"campaign": "봄 소식"},
            "recipient": "수신자@example.com",
            "messageId": "0100018e-abc",
            "sesType": "Bounce",
            "sesSubType": "Permanent/General",
        },
    }
    assert "수신자".encode() in body  # UTF-8, not \\u escapes


def test_a_send_event_carries_state_and_counts_and_no_recipient() -> None:
    event = send_event(
        "send.completed",
        send_id="send-1",
        timestamp=WHEN_IN_SEOUL,
        state="completed",
        counts=SendCounts(total=10, sent=7, failed=2, canceled=1),
    )

    assert json.loads(event.body()) == {
        "type": "send.completed",
        "timestamp": "2026-03-01T00:30:12Z",
        "data": {
            "sendId": "send-1",
            "metadata": {},
            "state": "completed",
            "counts": {"total": 10, "sent": 7, "failed": 2, "canceled": 1},
        },
    }


def test_the_event_id_is_stable_for_one_identity_and_differs_between_identities() -> None:
    again = bounce()

    assert again.id == bounce().id
    assert again.id.startswith("msg_")
    assert len(again.id) == 30
    assert "." not in again.id
    ids = {
        event_id("send.paused", "send-1"),
        event_id("send.paused", "send-1", occurrence="2"),  # the second pause is another event
        event_id("send.resumed", "send-1"),
        event_id("send.paused", "send-2"),
        event_id("email.bounced", "send-1", message_id="m1", recipient="a@example.com"),
        event_id("email.bounced", "send-1", message_id="m2", recipient="a@example.com"),
        event_id("email.bounced", "send-1", message_id="m1", recipient="b@example.com"),
    }
    assert len(ids) == 7


def test_the_event_id_names_no_address() -> None:
    assert "example" not in bounce().id


def test_an_event_keeps_its_id_whatever_its_timestamp() -> None:
    later = email_event(
        "email.bounced",
        send_id="send-1",
        timestamp=WHEN + timedelta(hours=1),
        recipient="수신자@example.com",
        message_id="0100018e-abc",
    )
    assert later.id == bounce().id


def test_events_need_the_data_their_type_names() -> None:
    with pytest.raises(ValidationError, match="need a recipient"):
        send_event("email.bounced", send_id="s", timestamp=WHEN, state="running")
    with pytest.raises(ValidationError, match="take no recipient"):
        email_event("send.paused", send_id="s", timestamp=WHEN, recipient="a@example.com")
    with pytest.raises(ValidationError, match="time zone"):
        send_event("send.paused", send_id="s", timestamp=datetime(2026, 1, 1), state="paused")
    with pytest.raises(ValidationError):
        send_event("send.exploded", send_id="s", timestamp=WHEN, state="x")  # type: ignore[arg-type]


def test_the_default_events_are_all_but_email_delivered(monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(EVENT_TYPES) == 9
    assert set(DEFAULT_EVENT_TYPES) == set(EVENT_TYPES) - {"email.delivered"}
    assert list(DEFAULT_EVENT_TYPES) == Settings().SENDMAIL_WEBHOOK_EVENTS

    monkeypatch.setenv("SENDMAIL_WEBHOOK_EVENTS", "send.completed, email.delivered")
    assert Settings().SENDMAIL_WEBHOOK_EVENTS == ["send.completed", "email.delivered"]

    monkeypatch.setenv("SENDMAIL_WEBHOOK_EVENTS", "send.completed,email.opened")
    with pytest.raises(ValidationError):
        Settings()


# --- endpoint URLs and addresses (SSRF) -------------------------------------------------------

REFUSED_ADDRESSES = [
    "10.0.0.1",
    "172.16.5.4",
    "172.31.255.255",
    "192.168.1.1",
    "127.0.0.1",
    "127.1.2.3",
    "0.0.0.0",
    "0.1.2.3",
    "169.254.169.254",  # metadata (Azure IMDS, AWS, GCP)
    "169.254.1.1",
    "100.64.0.1",  # carrier-grade NAT
    "100.100.100.200",  # Alibaba's metadata, in it
    "168.63.129.16",  # Azure's platform address
    "192.0.0.192",  # Oracle's metadata
    "192.0.2.10",
    "198.18.0.1",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "fd00:ec2::254",  # AWS's IPv6 metadata
    "ff02::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "::ffff:8.8.8.8",  # a mapped address from DNS is refused whatever it maps
    "::127.0.0.1",  # IPv4-compatible (deprecated, reserved)
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
]


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_internal_addresses_are_refused(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "93.184.215.14", "2606:4700:4700::1111", "2002:808:808::1"]
)
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1"])
def test_the_development_setting_allows_loopback(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address), allow_loopback=True) is None


@pytest.mark.parametrize(
    "address", [a for a in REFUSED_ADDRESSES if not ipaddress.ip_address(a).is_loopback]
)
def test_the_development_setting_allows_nothing_else(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address), allow_loopback=True) is not None


@pytest.mark.parametrize(
    ("url", "dev"),
    [
        ("http://hooks.example.com/in", False),  # https only
        ("http://hooks.example.com/in", True),  # the dev setting: http to loopback only
        ("http://10.0.0.1/in", True),
        ("ftp://hooks.example.com/in", False),
        ("https:///in", False),
        ("hooks.example.com/in", False),
        ("https://hooks.example.com/a b", False),
        ("https://hooks.example.com/a\r\nX-Injected: 1", False),
        ("https://hooks.example.com:99999/", False),
        ("https://[fe80::1%25eth0]/", False),
        ("https://user%0d%0aX-Injected:1@hooks.example.com/", False),
        ("", False),
    ],
)
def test_endpoint_urls_that_are_refused(url: str, dev: bool) -> None:
    with pytest.raises(EndpointRefused):
        parse_endpoint(url, allow_loopback_http=dev)


def test_an_endpoint_url_is_read_without_exposing_its_secrets() -> None:
    endpoint = parse_endpoint("https://u:p%40ss@Hooks.Example.com:8443/in/TOKEN?key=QUERY#frag")

    assert (endpoint.scheme, endpoint.host, endpoint.port) == ("https", "hooks.example.com", 8443)
    assert endpoint.target == "/in/TOKEN?key=QUERY"
    assert endpoint.host_header == "hooks.example.com:8443"
    assert endpoint.authorization == "Basic " + base64.b64encode(b"u:p@ss").decode()
    for shown in (endpoint.label, repr(endpoint)):
        for secret in ("TOKEN", "QUERY", "p%40ss", "p@ss", "frag"):
            assert secret not in shown
    assert endpoint.label == f"https://hooks.example.com:8443 #{endpoint.fingerprint}"
    assert parse_endpoint("https://hooks.example.com").target == "/"
    assert parse_endpoint("https://bücher.example/é?q=ü").host == "xn--bcher-kva.example"
    assert parse_endpoint("https://bücher.example/é?q=ü").target == "/%C3%A9?q=%C3%BC"


@dataclass
class StubResolver:
    """DNS as a test wants it; remembers every question."""

    answers: dict[str, list[str]]
    calls: list[str] = field(default_factory=list)

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answers[host]


@pytest.mark.parametrize(
    "answer",
    [["10.1.2.3"], ["169.254.169.254"], ["93.184.215.14", "10.1.2.3"], ["fd00:ec2::254"]],
)
def test_a_name_that_resolves_to_an_internal_address_is_refused_before_connecting(
    answer: list[str], webhook_server: WebhookServer
) -> None:
    resolver = StubResolver({HOOK_HOST: answer})
    sender = WebhookSender(SigningSecrets(new_secret()), resolver=resolver)

    attempt = sender.attempt(parse_endpoint(f"https://{HOOK_HOST}/in"), "msg_x", b"{}")

    assert attempt.result == "refused"
    assert attempt.final
    assert "refused address" in attempt.reason
    assert attempt.address is None
    assert resolver.calls == [HOOK_HOST]
    assert webhook_server.requests == []


@pytest.mark.parametrize("url", ["https://127.0.0.1/in", "https://[::1]/in", "https://2130706433/"])
def test_a_loopback_endpoint_is_refused_outside_development(url: str) -> None:
    """``2130706433`` is 127.0.0.1 to the system resolver: the check is on what it answers."""
    sender = WebhookSender(SigningSecrets(new_secret()))

    attempt = sender.attempt(parse_endpoint(url), "msg_x", b"{}")

    assert attempt.result == "refused"
    assert "loopback" in attempt.reason


def test_http_under_the_development_setting_must_stay_on_this_machine() -> None:
    resolver = StubResolver({"localhost": ["93.184.215.14"]})
    sender = WebhookSender(
        SigningSecrets(new_secret()), allow_loopback_http=True, resolver=resolver
    )

    attempt = sender.attempt(
        parse_endpoint("http://localhost:9/in", allow_loopback_http=True), "msg_x", b"{}"
    )

    assert attempt.result == "refused"
    assert "off this machine" in attempt.reason


def test_a_failed_lookup_is_retried() -> None:
    sender = WebhookSender(SigningSecrets(new_secret()), resolver=StubResolver({}))

    attempt = sender.attempt(parse_endpoint(f"https://{HOOK_HOST}/"), "msg_x", b"{}")

    assert attempt.result == "retry"
    assert "DNS" in attempt.reason


# --- one attempt against a real local HTTPS server --------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    client: str


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.owner.requests.append(
            Received(self.path, dict(self.headers.items()), body, self.client_address[0])
        )
        behaviour = self.server.owner.behaviours.get(self.path.split("?")[0], [(200, {}, b"ok")])
        status, headers, answer = behaviour.pop(0) if len(behaviour) > 1 else behaviour[0]
        if status == "drop":
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if status == "drip":  # one header byte every 50 ms, for 3 s
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for _ in range(60):
                self.wfile.write(b"X")
                time.sleep(0.05)
            return
        if status == "slow":
            time.sleep(1.0)
            status = 200
        self.send_response(int(status))
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: WebhookServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeouts, the TLS name test) is expected here


@dataclass
class WebhookServer:
    port: int
    client_context: ssl.SSLContext
    requests: list[Received] = field(default_factory=list)
    behaviours: dict[str, list[tuple[Any, dict[str, str], bytes]]] = field(default_factory=dict)

    def url(self, path: str, host: str = HOOK_HOST) -> str:
        return f"https://{host}:{self.port}{path}"


def _write_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for hooks.example.test (and nothing else)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webhook test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOOK_HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOOK_HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return _write_certificates(tmp_path_factory.mktemp("webhook-tls"))


@pytest.fixture
def webhook_server(certificates: tuple[Path, Path, Path]) -> Iterator[WebhookServer]:
    ca_file, cert_file, key_file = certificates
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.socket = server_context.wrap_socket(httpd.socket, server_side=True)
    state = WebhookServer(
        port=httpd.server_address[1],
        client_context=ssl.create_default_context(cafile=str(ca_file)),
    )
    httpd.owner = state
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield state
    httpd.shutdown()
    thread.join()
    httpd.server_close()


@pytest.fixture
def no_system_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any lookup outside the injected resolver fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a second DNS lookup was made")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "gethostbyname", refuse)


def sender_for(
    server: WebhookServer,
    secret: str,
    resolver: StubResolver | None = None,
    **kwargs: Any,
) -> WebhookSender:
    """The dev setting lets the checked address be 127.0.0.1, where the server listens."""
    return WebhookSender(
        SigningSecrets(secret),
        allow_loopback_http=True,
        resolver=resolver or StubResolver({HOOK_HOST: ["127.0.0.1"]}),
        ssl_context=server.client_context,
        **kwargs,
    )


def test_a_delivery_goes_to_the_checked_address_with_tls_for_the_name_and_verifies(
    webhook_server: WebhookServer, no_system_dns: None
) -> None:
    secret = new_secret()
    resolver = StubResolver({HOOK_HOST: ["127.0.0.1"]})
    event = bounce()

    attempt = sender_for(webhook_server, secret, resolver).attempt(
        parse_endpoint(webhook_server.url("/in?token=abc")), event.id, event.body()
    )

    assert (attempt.result, attempt.status, attempt.answer) == ("delivered", 200, b"ok")
    assert attempt.address == "127.0.0.1"
    assert resolver.calls == [HOOK_HOST]  # once; the name itself never resolves
    [received] = webhook_server.requests
    assert received.client == "127.0.0.1"
    assert received.path == "/in?token=abc"
    assert received.headers["Host"] == f"{HOOK_HOST}:{webhook_server.port}"
    assert received.headers["Content-Type"] == "application/json"
    assert received.body == event.body()
    assert Webhook(secret).verify(received.body, received.headers)["data"]["sendId"] == "send-1"


def test_the_next_checked_address_is_tried_when_one_refuses(
    webhook_server: WebhookServer,
) -> None:
    """Nothing listens on 127.0.0.2 at the server's port: the attempt moves on to 127.0.0.1."""
    resolver = StubResolver({HOOK_HOST: ["127.0.0.2", "127.0.0.1"]})

    attempt = sender_for(webhook_server, new_secret(), resolver).attempt(
        parse_endpoint(webhook_server.url("/in")), "msg_x", b"{}"
    )

    assert attempt.result == "delivered"
    assert attempt.address == "127.0.0.1"
    assert resolver.calls == [HOOK_HOST]


def test_a_certificate_for_another_name_is_not_accepted(webhook_server: WebhookServer) -> None:
    resolver = StubResolver({"other.example.test": ["127.0.0.1"]})

    attempt = sender_for(webhook_server, new_secret(), resolver).attempt(
        parse_endpoint(webhook_server.url("/in", host="other.example.test")), "msg_x", b"{}"
    )

    assert attempt.result == "retry"
    assert "certificate not accepted" in attempt.reason
    assert webhook_server.requests == []


def test_a_5xx_is_retried_with_the_same_id_and_a_fresh_signature(
    webhook_server: WebhookServer,
) -> None:
    webhook_server.behaviours["/in"] = [(503, {}, b"busy"), (200, {}, b"ok")]
    secret = new_secret()
    clock = iter([time.time() - 100, time.time()])
    sender = sender_for(webhook_server, secret, clock=lambda: next(clock))
    endpoint = parse_endpoint(webhook_server.url("/in"))
    event = bounce()

    first = sender.attempt(endpoint, event.id, event.body())
    second = sender.attempt(endpoint, event.id, event.body())

    assert (first.result, first.status, first.answer, first.final) == ("retry", 503, b"busy", False)
    assert (second.result, second.final) == ("delivered", True)
    one, two = webhook_server.requests
    assert one.headers["webhook-id"] == two.headers["webhook-id"] == event.id
    assert int(two.headers["webhook-timestamp"]) - int(one.headers["webhook-timestamp"]) >= 99
    assert one.headers["webhook-signature"] != two.headers["webhook-signature"]
    for received in (one, two):
        Webhook(secret).verify(received.body, received.headers)


def test_410_is_gone_and_final(webhook_server: WebhookServer) -> None:
    webhook_server.behaviours["/in"] = [(410, {}, b"")]

    attempt = sender_for(webhook_server, new_secret()).attempt(
        parse_endpoint(webhook_server.url("/in")), "msg_x", b"{}"
    )

    assert (attempt.result, attempt.status, attempt.final) == ("gone", 410, True)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 429, 500, 502, 504])
def test_other_failures_are_retried(webhook_server: WebhookServer, status: int) -> None:
    webhook_server.behaviours["/in"] = [(status, {}, b"")]

    attempt = sender_for(webhook_server, new_secret()).attempt(
        parse_endpoint(webhook_server.url("/in")), "msg_x", b"{}"
    )

    assert (attempt.result, attempt.status) == ("retry", status)


def test_retry_after_is_passed_on_to_the_schedule(webhook_server: WebhookServer) -> None:
    webhook_server.behaviours["/in"] = [(429, {"Retry-After": "600"}, b"")]

    attempt = sender_for(webhook_server, new_secret()).attempt(
        parse_endpoint(webhook_server.url("/in")), "msg_x", b"{}"
    )

    assert attempt.retry_after == 600
    delay = delay_before(2, key="msg_x", retry_after=attempt.retry_after)
    assert delay is not None
    assert delay >= 600


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed(webhook_server: WebhookServer, status: int) -> None:
    location = webhook_server.url("/elsewhere")
    webhook_server.behaviours["/in"] = [(status, {"Location": location}, b"")]

    attempt = sender_for(webhook_server, new_secret()).attempt(
        parse_endpoint(webhook_server.url("/in")), "msg_x", b"{}"
    )

    assert (attempt.result, attempt.status) == ("retry", status)
    assert "not followed" in attempt.reason
    assert [r.path for r in webhook_server.requests] == ["/in"]


def test_a_dropped_connection_is_retried(webhook_server: WebhookServer) -> None:
    webhook_server.behaviours["/in"] = [("drop", {}, b"")]

    attempt = sender_for(webhook_server, new_secret()).attempt(
        parse_endpoint(webhook_server.url("/in")), "msg_x", b"{}"
    )

    assert attempt.result == "retry"
    assert len(webhook_server.requests) == 1


def test_a_refused_connection_is_retried(webhook_server: WebhookServer) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()

    attempt = sender_for(webhook_server, new_secret()).attempt(
        parse_endpoint(f"https://{HOOK_HOST}:{port}/in"), "msg_x", b"{}"
    )

    assert (attempt.result, attempt.reason) == ("retry", "connection refused")


def test_a_slow_endpoint_times_out_and_is_retried(webhook_server: WebhookServer) -> None:
    webhook_server.behaviours["/in"] = [("slow", {}, b"")]
    sender = sender_for(webhook_server, new_secret(), limits=DeliveryLimits(response_seconds=0.3))

    started = time.monotonic()
    attempt = sender.attempt(parse_endpoint(webhook_server.url("/in")), "msg_x", b"{}")

    assert (attempt.result, attempt.reason) == ("retry", "timed out waiting for the answer")
    assert time.monotonic() - started < 0.9


def test_an_answer_that_drips_is_cut_at_the_deadline_not_per_read(
    webhook_server: WebhookServer,
) -> None:
    """A byte every 50 ms never trips a per-read timeout; the deadline covers the whole answer."""
    webhook_server.behaviours["/in"] = [("drip", {}, b"")]
    sender = sender_for(webhook_server, new_secret(), limits=DeliveryLimits(response_seconds=0.5))

    started = time.monotonic()
    attempt = sender.attempt(parse_endpoint(webhook_server.url("/in")), "msg_x", b"{}")

    assert attempt.result == "retry"
    assert "timed out" in attempt.reason
    assert time.monotonic() - started < 1.2


def test_an_answer_is_read_only_up_to_the_limit(webhook_server: WebhookServer) -> None:
    webhook_server.behaviours["/in"] = [(200, {}, b"x" * (8 * 1024 * 1024))]

    attempt = sender_for(webhook_server, new_secret()).attempt(
        parse_endpoint(webhook_server.url("/in")), "msg_x", b"{}"
    )

    assert attempt.result == "delivered"
    assert attempt.answer == b"x" * 4096


def test_an_answer_head_past_the_budget_is_a_failed_attempt(webhook_server: WebhookServer) -> None:
    webhook_server.behaviours["/in"] = [(200, {f"X-Filler-{i}": "y" * 900 for i in range(60)}, b"")]

    attempt = sender_for(webhook_server, new_secret()).attempt(
        parse_endpoint(webhook_server.url("/in")), "msg_x", b"{}"
    )

    assert (attempt.result, attempt.reason) == ("retry", "answer head too large")


def test_plain_http_to_loopback_under_the_development_setting(
    no_system_dns: None,
) -> None:
    received: list[bytes] = []

    class Plain(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Plain)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        config = WebhookConfig.from_settings(
            Settings(
                SENDMAIL_WEBHOOK_URLS=f"http://127.0.0.1:{httpd.server_address[1]}/hook",
                SENDMAIL_WEBHOOK_SECRET=new_secret(),
                SENDMAIL_WEBHOOK_ALLOW_LOOPBACK_HTTP=True,
            )
        )
        attempt = config.sender().attempt(config.endpoints[0], "msg_x", b'{"a":1}')
    finally:
        httpd.shutdown()
        thread.join()
        httpd.server_close()

    assert (attempt.result, attempt.status) == ("delivered", 204)
    assert received == [b'{"a":1}']


def test_an_attempt_logs_no_url_secret_signature_or_body(
    webhook_server: WebhookServer, caplog: pytest.LogCaptureFixture
) -> None:
    secret = new_secret()
    event = bounce()
    endpoint = parse_endpoint(
        f"https://hookuser:PASSWORD@{HOOK_HOST}:{webhook_server.port}/in/PATHTOKEN?k=QUERYTOKEN"
    )
    caplog.set_level(logging.DEBUG)

    attempt = sender_for(webhook_server, secret).attempt(endpoint, event.id, event.body())

    assert attempt.result == "delivered"
    [received] = webhook_server.requests
    assert received.headers["Authorization"] == endpoint.authorization
    logged = caplog.text
    assert event.id in logged
    assert endpoint.label in logged
    for never in (
        "PASSWORD",
        "hookuser",
        "PATHTOKEN",
        "QUERYTOKEN",
        secret[6:],
        received.headers["webhook-signature"][3:],
        "수신자",
        "example.com",
    ):
        assert never not in logged


# --- the retry schedule ------------------------------------------------------------------------


def test_the_schedule_starts_at_once_and_spans_more_than_a_day() -> None:
    delays = [delay_before(n, key="msg_a") for n in range(1, MAX_ATTEMPTS + 1)]

    assert delays[0] == 0
    assert all(d is not None for d in delays)
    for delay, base in zip(delays, RETRY_DELAYS_SECONDS, strict=True):
        assert delay is not None
        assert base <= delay <= base * 1.1
    assert [int(d) for d in RETRY_DELAYS_SECONDS] == [0, 5, 300, 1800, 7200, 18000, 36000, 36000]
    assert sum(RETRY_DELAYS_SECONDS) >= 24 * 3600
    assert delay_before(MAX_ATTEMPTS + 1, key="msg_a") is None
    with pytest.raises(ValueError):
        delay_before(0)


def test_the_jitter_is_repeatable_per_event_and_spreads_events() -> None:
    assert delay_before(5, key="msg_a") == delay_before(5, key="msg_a")
    spread = {delay_before(5, key=f"msg_{n}") for n in range(20)}
    assert len(spread) == 20


def test_retry_after_lengthens_a_delay_but_never_past_the_longest_step() -> None:
    assert delay_before(2, key="k", retry_after=120) == 120
    assert delay_before(2, key="k", retry_after=3 * 24 * 3600) == 10 * 3600
    short = delay_before(6, key="k", retry_after=1)
    assert short is not None
    assert short >= 5 * 3600
    assert delay_before(1, key="k", retry_after=600) == 0  # the first attempt is at once


# --- the settings, read --------------------------------------------------------------------------


def test_no_endpoint_means_no_webhooks_and_no_secret_needed() -> None:
    config = WebhookConfig.from_settings(Settings())

    assert config.endpoints == ()
    assert not config.wants("send.completed")


def test_the_settings_are_checked_and_a_bad_url_is_named_by_position() -> None:
    token = "SECRETPATHTOKEN"
    with pytest.raises(ServiceMisconfigured, match="URL 2") as refused:
        WebhookConfig.from_settings(
            Settings(
                SENDMAIL_WEBHOOK_URLS=f"https://a.example.com/x,http://b.example.com/{token}",
                SENDMAIL_WEBHOOK_SECRET=new_secret(),
            )
        )
    assert token not in str(refused.value)

    with pytest.raises(ServiceMisconfigured, match="SENDMAIL_WEBHOOK_SECRET"):
        WebhookConfig.from_settings(Settings(SENDMAIL_WEBHOOK_URLS="https://a.example.com/x"))


def test_the_settings_read_endpoints_and_events() -> None:
    config = WebhookConfig.from_settings(
        Settings(
            SENDMAIL_WEBHOOK_URLS="https://a.example.com/x, https://b.example.com/y,"
            "https://a.example.com/x",
            SENDMAIL_WEBHOOK_SECRET=f"{new_secret()} {new_secret()}",
            SENDMAIL_WEBHOOK_EVENTS="send.completed,email.delivered",
        )
    )

    assert [e.host for e in config.endpoints] == ["a.example.com", "b.example.com"]
    assert config.secrets is not None
    assert len(config.secrets) == 2
    assert config.wants("email.delivered")
    assert not config.wants("email.bounced")
    second = config.endpoints[1]
    assert config.endpoint(second.fingerprint) == second
    assert config.endpoint("0" * 12) is None
