"""SmtpSender against a real SMTP server (aiosmtpd with TLS) on 127.0.0.1."""

from __future__ import annotations

import base64
import logging
import smtplib
import socket

import pytest
from pydantic import SecretStr

from devhost.emulators.smtp_sink import SmtpSink
from sendmail.contract.vocabulary import FailureCode, Provider
from sendmail.platform.settings import Settings
from sendmail.sending.content import RenderFailed
from sendmail.sending.mime import MailParts
from sendmail.sending.providers import SmtpEndpoint, endpoint_for
from sendmail.sending.smtp import SmtpSender, default_connect
from tests.support.smtp import sink_settings

SENDER = "se@aifactory.page"
PASSWORD = SecretStr("abcd efgh ijkl mnop")  # an app password's shape
RECIPIENTS = ["a@example.com", "b@example.com", "c@example.com"]


def make_sender(sink: SmtpSink, sleeps: list[float] | None = None, **overrides: object):
    pauses = sleeps if sleeps is not None else []
    return SmtpSender(sink_settings(sink, **overrides), sleep=pauses.append)


# --- the provider registry ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "host"),
    [
        (Provider.GMAIL, "smtp.gmail.com"),
        (Provider.NAVER, "smtp.naver.com"),
        (Provider.KAKAO, "smtp.kakao.com"),
    ],
)
def test_registry_uses_implicit_tls_on_465_without_overrides(provider, host):
    assert endpoint_for(provider, Settings()) == SmtpEndpoint(host, 465, "implicit", None)


def test_settings_override_every_provider():
    settings = Settings(
        SENDMAIL_SMTP_HOST="127.0.0.1",
        SENDMAIL_SMTP_PORT=2525,
        SENDMAIL_SMTP_TLS_MODE="starttls",
        SENDMAIL_SMTP_CA_FILE="/tmp/ca.pem",
    )
    assert endpoint_for(Provider.NAVER, settings) == SmtpEndpoint(
        "127.0.0.1", 2525, "starttls", "/tmp/ca.pem"
    )


def test_starttls_override_without_a_port_uses_587():
    endpoint = endpoint_for(Provider.GMAIL, Settings(SENDMAIL_SMTP_TLS_MODE="starttls"))
    assert (endpoint.host, endpoint.port, endpoint.tls_mode) == ("smtp.gmail.com", 587, "starttls")


def test_provider_names_are_case_insensitive():
    assert Provider("gmail") is Provider.GMAIL
    with pytest.raises(ValueError):
        Provider("smtp.evil.example")


# --- sending -------------------------------------------------------------------------------------


def test_one_login_one_message_per_recipient_with_client_message_ids(smtp_sink_any_tls):
    sink = smtp_sink_any_tls
    sent: list[tuple[int, str]] = []

    results = make_sender(sink).send(
        Provider.GMAIL,
        SENDER,
        PASSWORD,
        RECIPIENTS,
        MailParts("Hello", "Body"),
        on_sent=lambda index, message_id: sent.append((index, message_id)),
    )

    assert [r.recipient for r in results] == RECIPIENTS
    assert all(r.ok for r in results)
    received = sink.messages()
    assert [m.to for m in received] == [(r,) for r in RECIPIENTS]  # nobody sees the others
    assert all(m.sender == SENDER for m in received)
    ids = [r.message_id for r in results]
    assert ids == [m.message_id for m in received]
    assert len(set(ids)) == len(ids)
    assert all(i is not None and i.startswith("<") and i.endswith("@aifactory.page>") for i in ids)
    assert sent == list(enumerate(ids))
    assert sink.auth_commands == 1
    assert sink.logins() == [SENDER]


def test_wrong_app_password_fails_everyone_once_without_retry(start_smtp_sink):
    sink = start_smtp_sink("implicit", rejected_password="not-the-app-password")
    sleeps: list[float] = []

    results = make_sender(sink, sleeps).send(
        Provider.NAVER,
        SENDER,
        SecretStr("not-the-app-password"),
        RECIPIENTS[:2],
        MailParts("s", "b"),
    )

    assert [r.code for r in results] == [FailureCode.SMTP_AUTH_FAILED] * 2
    assert all(
        "Naver" in (r.message or "") and "app password" in (r.message or "") for r in results
    )
    assert all("535" in (r.message or "") for r in results)
    assert sink.auth_commands == 1  # one login, not one per mechanism or per retry
    assert sleeps == []
    assert sink.messages() == []


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_a_non_ascii_password_is_sent_in_utf8_with_either_mechanism(
    start_smtp_sink, monkeypatch, mechanism
):
    # Found by fuzzing: smtplib's auth() encodes credentials as ASCII, so "pässwörd" raised
    # UnicodeEncodeError in the activity, which failed three times and ended as BATCH_FAILED.
    monkeypatch.setattr("sendmail.sending.smtp._AUTH_MECHANISMS", (mechanism,))
    sink = start_smtp_sink("implicit", rejected_password="비밀번호-pässwörd")

    sent = make_sender(sink).send(
        Provider.KAKAO, SENDER, SecretStr("앱-비밀번호"), RECIPIENTS[:1], MailParts("s", "b")
    )
    refused = make_sender(sink).send(
        Provider.KAKAO, SENDER, SecretStr("비밀번호-pässwörd"), RECIPIENTS[:1], MailParts("s", "b")
    )

    assert [r.ok for r in sent] == [True]
    # The sink refuses exactly the UTF-8 bytes of this password: they arrived intact.
    assert [r.code for r in refused] == [FailureCode.SMTP_AUTH_FAILED]
    assert sink.auth_commands == 2
    assert sink.logins() == [SENDER]


def test_refused_recipient_does_not_stop_the_others(smtp_sink):
    smtp_sink.refuse_recipients("b@example.com")

    results = make_sender(smtp_sink).send(
        Provider.GMAIL, SENDER, PASSWORD, RECIPIENTS, MailParts("s", "b")
    )

    assert [r.ok for r in results] == [True, False, True]
    assert results[1].code is FailureCode.SMTP_RECIPIENT_REFUSED
    assert "550" in (results[1].message or "")
    assert [m.to for m in smtp_sink.messages()] == [("a@example.com",), ("c@example.com",)]


def test_a_halt_leaves_the_rest_unsent_and_pending(smtp_sink):
    """Paused or canceled (sendmail/sending/control.py): asked before each message; the
    messages already accepted stay sent, the rest are pending and never reach the server."""
    asked: list[int] = []

    def halt() -> bool:
        asked.append(1)
        return len(smtp_sink.messages()) >= 1

    results = make_sender(smtp_sink).send(
        Provider.GMAIL, SENDER, PASSWORD, RECIPIENTS, MailParts("s", "b"), halt=halt
    )

    assert [(r.ok, r.pending) for r in results] == [(True, False), (False, True), (False, True)]
    assert [m.to for m in smtp_sink.messages()] == [("a@example.com",)]
    assert len(asked) == 2


def test_refused_sender_fails_everyone(smtp_sink):
    smtp_sink.refuse_senders(SENDER)

    results = make_sender(smtp_sink).send(
        Provider.KAKAO, SENDER, PASSWORD, RECIPIENTS, MailParts("s", "b")
    )

    assert [r.code for r in results] == [FailureCode.SMTP_SENDER_REFUSED] * 3
    assert smtp_sink.messages() == []


def test_temporary_rejection_is_retried_with_backoff_then_sent(smtp_sink):
    smtp_sink.defer_recipient("b@example.com", times=2)
    sleeps: list[float] = []

    results = make_sender(smtp_sink, sleeps, SENDMAIL_SMTP_MAX_ATTEMPTS=3).send(
        Provider.GMAIL, SENDER, PASSWORD, RECIPIENTS, MailParts("s", "b")
    )

    assert all(r.ok for r in results)
    assert [m.to for m in smtp_sink.messages()] == [(r,) for r in RECIPIENTS]
    assert sleeps == [1.0, 2.0]
    assert smtp_sink.auth_commands == 1  # a 4xx keeps the session


def test_temporary_rejection_gives_up_after_max_attempts(smtp_sink):
    smtp_sink.defer_recipient("b@example.com", times=100)
    sleeps: list[float] = []

    results = make_sender(smtp_sink, sleeps, SENDMAIL_SMTP_MAX_ATTEMPTS=3).send(
        Provider.GMAIL, SENDER, PASSWORD, RECIPIENTS, MailParts("s", "b")
    )

    assert [r.ok for r in results] == [True, False, True]
    assert results[1].code is FailureCode.SMTP_TEMPORARY_FAILURE
    assert "451" in (results[1].message or "")
    assert len(sleeps) == 2


def test_dropped_connection_is_recovered_and_resent_with_the_same_message_id(smtp_sink_any_tls):
    sink = smtp_sink_any_tls
    # The server takes the 2nd message in full, then cuts the line before answering.
    sink.drop_after_data(1, keep=True)
    sleeps: list[float] = []

    results = make_sender(sink, sleeps).send(
        Provider.GMAIL, SENDER, PASSWORD, RECIPIENTS, MailParts("s", "b")
    )

    assert all(r.ok for r in results)
    received = sink.messages()
    assert [m.to for m in received] == [
        ("a@example.com",),
        ("b@example.com",),
        ("b@example.com",),
        ("c@example.com",),
    ]
    # The duplicate carries the same Message-ID, so the receiver can tell it is one mail.
    assert received[1].message_id == received[2].message_id == results[1].message_id
    assert sink.auth_commands == 2  # logged in again on the new connection
    assert len(sleeps) == 1


def test_lost_server_fails_the_rest_with_connection_failed(smtp_sink):
    def stop_after_first(index: int, message_id: str) -> None:
        if index == 0:
            smtp_sink.stop()

    sleeps: list[float] = []
    results = make_sender(smtp_sink, sleeps, SENDMAIL_SMTP_MAX_ATTEMPTS=3).send(
        Provider.GMAIL, SENDER, PASSWORD, RECIPIENTS, MailParts("s", "b"), on_sent=stop_after_first
    )

    assert [r.code for r in results] == [
        None,
        FailureCode.SMTP_CONNECTION_FAILED,
        FailureCode.SMTP_CONNECTION_FAILED,
    ]
    assert len(sleeps) == 2


def test_unreachable_server_fails_everyone_after_bounded_attempts():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(
        SENDMAIL_SMTP_HOST="127.0.0.1", SENDMAIL_SMTP_PORT=port, SENDMAIL_SMTP_MAX_ATTEMPTS=2
    )
    sleeps: list[float] = []

    results = SmtpSender(settings, sleep=sleeps.append).send(
        Provider.GMAIL, SENDER, PASSWORD, RECIPIENTS, MailParts("s", "b")
    )

    assert [r.code for r in results] == [FailureCode.SMTP_CONNECTION_FAILED] * 3
    assert sleeps == [1.0]


def test_untrusted_certificate_is_refused_before_any_auth(smtp_sink_any_tls):
    sink = smtp_sink_any_tls
    sleeps: list[float] = []
    # The sink's certificate is issued by its own CA; without ca_file only system CAs count.
    sender = make_sender(sink, sleeps, SENDMAIL_SMTP_CA_FILE=None)

    results = sender.send(Provider.GMAIL, SENDER, PASSWORD, RECIPIENTS, MailParts("s", "b"))

    assert [r.code for r in results] == [FailureCode.SMTP_CONNECTION_FAILED] * 3
    assert all("TLS" in (r.message or "") for r in results)
    assert sink.auth_commands == 0
    assert sink.messages() == []
    assert sleeps == []  # a certificate problem is not retried


def test_server_without_starttls_never_gets_the_password(start_smtp_sink):
    sink = start_smtp_sink("plaintext")  # offers AUTH in the clear, no STARTTLS
    settings = sink_settings(sink, SENDMAIL_SMTP_TLS_MODE="starttls")

    results = SmtpSender(settings, sleep=lambda _: None).send(
        Provider.GMAIL, SENDER, PASSWORD, RECIPIENTS, MailParts("s", "b")
    )

    assert [r.code for r in results] == [FailureCode.SMTP_CONNECTION_FAILED] * 3
    assert all("STARTTLS" in (r.message or "") for r in results)
    assert sink.auth_commands == 0


def test_implicit_mode_refuses_a_plaintext_connection_from_a_custom_factory(start_smtp_sink):
    sink = start_smtp_sink("plaintext")

    def plaintext(endpoint: SmtpEndpoint, timeout: float) -> smtplib.SMTP:
        return smtplib.SMTP(endpoint.host, endpoint.port, timeout=timeout)

    sender = SmtpSender(sink_settings(sink), connect=plaintext, sleep=lambda _: None)
    results = sender.send(Provider.GMAIL, SENDER, PASSWORD, RECIPIENTS[:1], MailParts("s", "b"))

    assert results[0].code is FailureCode.SMTP_CONNECTION_FAILED
    assert sink.auth_commands == 0


def test_korean_subject_and_body_arrive_intact(smtp_sink):
    subject = "[공지] {{name}}님, 11월 정기 점검  안내드립니다 — 서비스 이용에 참고 부탁드립니다 😀"
    body = "안녕하세요 {{name}}님,\n\n점검 시간: 02:00~04:00 (KST)\n  들여쓴 줄\n감사합니다.\n"

    results = make_sender(smtp_sink).send(
        Provider.GMAIL, SENDER, PASSWORD, ["reader@example.com"], MailParts(subject, body)
    )

    assert results[0].ok
    (received,) = smtp_sink.messages()
    assert received.subject == subject
    assert received.body == body
    assert smtp_sink.raw_messages()[0].isascii()  # MIME-encoded, no raw 8-bit on the wire


def test_each_recipient_gets_its_own_rendered_message_and_a_bad_one_fails_alone(smtp_sink):
    """Personalised user-send: one message made per recipient (sendmail.sending.content); one
    that cannot be made fails RENDER_FAILED and the connection goes on with the next."""

    def content(recipient: str) -> MailParts:
        if recipient.startswith("broken"):
            raise RenderFailed("the rendered subject holds a line break")
        name = recipient.split("@", maxsplit=1)[0]
        return MailParts(f"{name}님께", f"안녕 {name}", f"<p>안녕 <b>{name}</b></p>")

    results = make_sender(smtp_sink).send(
        Provider.GMAIL,
        SENDER,
        PASSWORD,
        ["minsu@example.com", "broken@example.com", "jiwoo@example.com"],
        content,
    )

    assert [r.ok for r in results] == [True, False, True]
    assert results[1].code == FailureCode.RENDER_FAILED
    got = {m.to[0]: m for m in smtp_sink.messages()}
    assert set(got) == {"minsu@example.com", "jiwoo@example.com"}
    assert (got["jiwoo@example.com"].subject, got["jiwoo@example.com"].html) == (
        "jiwoo님께",
        "<p>안녕 <b>jiwoo</b></p>",
    )


def test_an_internationalised_domain_travels_in_ascii_form(smtp_sink):
    """Envelope and header name the domain in its ASCII form: no SMTPUTF8 needed from the server
    (smtplib would otherwise send raw UTF-8, or fail where the server has no SMTPUTF8)."""
    results = make_sender(smtp_sink).send(
        Provider.NAVER, SENDER, PASSWORD, ["user@bücher.de"], MailParts("s", "b")
    )

    assert (results[0].ok, results[0].recipient) == (True, "user@bücher.de")
    (received,) = smtp_sink.messages()
    assert received.to == ("user@xn--bcher-kva.de",)
    raw = smtp_sink.raw_messages()[0]
    assert raw.isascii()
    assert b"To: user@xn--bcher-kva.de\r\n" in raw


def test_password_never_reaches_logs_or_smtplib_debug_output(start_smtp_sink, caplog, capfd):
    good = start_smtp_sink("starttls")
    bad = start_smtp_sink("implicit", rejected_password=PASSWORD.get_secret_value())

    def chatty(endpoint: SmtpEndpoint, timeout: float) -> smtplib.SMTP:
        connection = default_connect(endpoint, timeout)
        connection.set_debuglevel(2)  # the sender must switch this off again
        return connection

    caplog.set_level(logging.DEBUG)
    for sink in (good, bad):
        SmtpSender(sink_settings(sink), connect=chatty, sleep=lambda _: None).send(
            Provider.GMAIL, SENDER, PASSWORD, RECIPIENTS[:2], MailParts("s", "b")
        )

    assert good.logins() == [SENDER]
    assert bad.auth_commands == 1
    secret = PASSWORD.get_secret_value()
    forms = [
        secret,
        base64.b64encode(secret.encode()).decode(),
        base64.b64encode(f"\0{SENDER}\0{secret}".encode()).decode(),
    ]
    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    assert logged  # something was logged at DEBUG, so the check below means something
    for form in forms:
        assert form not in logged
    captured = capfd.readouterr()
    assert "send:" not in captured.err  # smtplib's debug output stayed off
    for form in forms:
        assert form not in captured.out + captured.err


class ScriptedLogin:
    """A connection whose server ignores AUTH LOGIN's initial response and prompts again."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, ...]] = []
        self.replies = [
            (334, b"VXNlcm5hbWU6"),  # "Username:"
            (334, b"UGFzc3dvcmQ6"),  # "Password:"
            (235, b"2.7.0 Authentication successful"),
        ]

    def docmd(self, *args: str) -> tuple[int, bytes]:
        self.sent.append(args)
        return self.replies.pop(0)


def test_a_username_prompt_is_answered_with_the_user_never_the_password() -> None:
    import base64

    from pydantic import SecretStr

    from sendmail.sending.smtp import _authenticate

    connection = ScriptedLogin()
    _authenticate(connection, "LOGIN", "me@example.com", SecretStr("s3cret"))  # type: ignore[arg-type]
    user = base64.b64encode(b"me@example.com").decode()
    secret = base64.b64encode(b"s3cret").decode()
    assert connection.sent == [("AUTH", f"LOGIN {user}"), (user,), (secret,)]


def test_every_final_login_answer_is_reported(start_smtp_sink) -> None:
    """What the failed-login limit counts: a refused login (535) as False, an accepted one as
    True; nothing for a login that never got an answer."""
    sink = start_smtp_sink("implicit", rejected_password="wrong-password")
    answers: list[bool] = []
    refused = make_sender(sink).send(
        Provider.GMAIL,
        SENDER,
        SecretStr("wrong-password"),
        RECIPIENTS[:2],
        MailParts("s", "b"),
        on_login=answers.append,
    )
    sent = make_sender(sink).send(
        Provider.GMAIL,
        SENDER,
        SecretStr("right"),
        RECIPIENTS[:2],
        MailParts("s", "b"),
        on_login=answers.append,
    )
    assert {d.code for d in refused} == {FailureCode.SMTP_AUTH_FAILED}
    assert all(d.ok for d in sent)
    assert answers == [False, True]


def test_a_login_the_guard_refuses_is_never_tried(start_smtp_sink) -> None:
    """The failed-login limit knows this password was refused within the hour: every
    recipient fails SMTP_AUTH_FAILED and the server never sees an AUTH command."""
    sink = start_smtp_sink("implicit")
    answers: list[bool] = []
    refused = make_sender(sink).send(
        Provider.GMAIL,
        SENDER,
        SecretStr("right"),
        RECIPIENTS[:3],
        MailParts("s", "b"),
        before_login=lambda: False,
        on_login=answers.append,
    )
    assert {d.code for d in refused} == {FailureCode.SMTP_AUTH_FAILED}
    assert "not tried again" in (refused[0].message or "")
    assert sink.auth_commands == 0
    assert answers == []
