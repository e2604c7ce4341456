"""Preflight at admission (sendmail/admission/preflight.py): SES's own answers — devhost's SES
emulator, the SES look-alike of bench/, moto's server with scripted errors — checked the way
aws-send checks them, and the route's 403 and 400 in the v1 envelope before anything starts."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devhost.emulators.ses import SesEmulator
from sendmail import services
from sendmail.admission import preflight as preflight_module
from sendmail.admission.preflight import Preflight, sender_identities, unverified_recipients
from sendmail.contract.errors import Forbidden, ValidationFailed
from sendmail.platform.settings import Settings, get_settings
from sendmail.sending.ses import quota_client_config
from tests.support.durable import FakeDurableClient
from tests.support.http import StubQuota, call
from tests.support.ses import DUMMY_CREDENTIALS, REGION, SENDER, ScriptedSes

DOMAIN = "mail.example.org"
ROUTE = "/api/v1/emails/aws-send"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def read_client(endpoint_url: str) -> Any:
    """A sesv2 client as the app makes its read client (the quota config: retries)."""
    import boto3

    return boto3.session.Session().client(
        "sesv2",
        region_name=REGION,
        endpoint_url=endpoint_url,
        config=quota_client_config(),
        aws_access_key_id=DUMMY_CREDENTIALS["aws_access_key_id"],
        aws_secret_access_key=DUMMY_CREDENTIALS["aws_secret_access_key"],
    )


def count_calls(client: Any) -> Counter[str]:
    """SES operations ``client`` calls from now on (botocore retries are not counted again)."""
    calls: Counter[str] = Counter()

    def before_call(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    client.meta.events.register("before-call.sesv2", before_call)
    return calls


def start_emulator(**options: Any) -> SesEmulator:
    """devhost's SES emulator on a fresh moto (its backends are process-global: what an
    earlier test verified would still be verified)."""
    from moto.moto_api._internal.models import moto_api_backend

    moto_api_backend.reset()
    emulator = SesEmulator(
        region=REGION, allowed_senders=[SENDER], allowed_domains=[DOMAIN], **options
    )
    emulator.start()
    return emulator


@pytest.fixture
def emulator() -> Iterator[SesEmulator]:
    emulator = start_emulator()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_preflight(endpoint_url: str, clock: Clock | None = None) -> tuple[Preflight, Any]:
    client = read_client(endpoint_url)
    return Preflight(client, settings=Settings(), clock=clock or Clock()), client


# --- the sender -----------------------------------------------------------------------------


def test_a_verified_address_or_domain_passes_and_another_sender_is_403_saying_what_to_do(
    emulator: SesEmulator,
) -> None:
    preflight, _ = make_preflight(emulator.endpoint_url)

    preflight.check_sender(SENDER)
    preflight.check_sender(f"news@{DOMAIN}")
    preflight.check_sender(f"news@eu.{DOMAIN}")  # a verified domain sends from its subdomains
    with pytest.raises(Forbidden) as refused:
        preflight.check_sender("news@elsewhere.example")

    message = refused.value.message
    assert "news@elsewhere.example is not verified for sending in Amazon SES" in message
    assert f"region {REGION}" in message
    assert "verify the address or its domain elsewhere.example" in message


def test_the_identities_asked_about_are_the_address_its_domain_and_the_parents() -> None:
    assert sender_identities("News@Mail.Example.ORG") == [
        "News@mail.example.org",
        "mail.example.org",
        "example.org",
    ]
    assert sender_identities("a@bücher.de") == ["a@xn--bcher-kva.de", "xn--bcher-kva.de"]


def test_the_emulator_answers_get_email_identity_like_ses(emulator: SesEmulator) -> None:
    client = read_client(emulator.endpoint_url)

    verified = client.get_email_identity(EmailIdentity=SENDER)
    with pytest.raises(client.exceptions.NotFoundException):
        client.get_email_identity(EmailIdentity="someone@elsewhere.example")

    assert verified["VerifiedForSendingStatus"] is True  # moto alone says False
    assert verified["IdentityType"] == "EMAIL_ADDRESS"
    assert verified["VerificationStatus"] == "SUCCESS"


def test_sender_answers_are_cached_and_a_refusal_only_briefly(
    emulator: SesEmulator, clock: Clock
) -> None:
    preflight, client = make_preflight(emulator.endpoint_url, clock)
    calls = count_calls(client)
    newcomer = "new@elsewhere.example"

    preflight.check_sender(SENDER)
    clock.now += 299
    preflight.check_sender(SENDER)
    assert calls["GetEmailIdentity"] == 1  # kept SENDMAIL_PREFLIGHT_CACHE_SECONDS (300)
    clock.now += 1
    preflight.check_sender(SENDER)
    assert calls["GetEmailIdentity"] == 2

    with pytest.raises(Forbidden):
        preflight.check_sender(newcomer)
    read = calls["GetEmailIdentity"]
    client.create_email_identity(EmailIdentity=newcomer)  # verified in SES just now
    clock.now += 29
    with pytest.raises(Forbidden):  # the refusal is kept a little
        preflight.check_sender(newcomer)
    assert calls["GetEmailIdentity"] == read
    clock.now += 1
    preflight.check_sender(newcomer)  # and seen within 30 s


# --- the sandbox ----------------------------------------------------------------------------


def test_in_the_sandbox_recipients_must_be_verified_or_the_mailbox_simulator(
    clock: Clock,
) -> None:
    emulator = start_emulator(
        sandbox=True, verified_identities=[SENDER, "friend@example.com", "team.example"]
    )
    try:
        preflight, _ = make_preflight(emulator.endpoint_url, clock)
        preflight.check_recipients(
            [
                "Friend@Example.com",  # compared case-insensitively
                "anyone@team.example",  # at a verified domain
                "dev@eu.team.example",  # or one of its subdomains
                "bounce@simulator.amazonses.com",
                "success+label@simulator.amazonses.com",
            ]
        )
        strangers = [f"user{i}@example.com" for i in range(7)]
        with pytest.raises(ValidationFailed) as refused:
            preflight.check_recipients(["friend@example.com", *strangers])
    finally:
        emulator.stop()

    message = refused.value.message
    assert "the Amazon SES account is in the sandbox" in message
    assert "7 of the recipients are not verified" in message
    assert ", ".join(strangers[:5]) + ", …" in message
    assert strangers[5] not in message
    assert "simulator.amazonses.com" in message
    assert refused.value.status == 400


def test_out_of_the_sandbox_recipients_are_not_looked_at(emulator: SesEmulator) -> None:
    preflight, client = make_preflight(emulator.endpoint_url)
    calls = count_calls(client)

    preflight.check_recipients(["stranger@example.com"])

    assert calls == {"GetAccount": 1}


def test_fifty_thousand_recipients_cost_one_list_of_identities(clock: Clock) -> None:
    emulator = start_emulator(sandbox=True, verified_identities=[SENDER, "example.com"])
    try:
        preflight, client = make_preflight(emulator.endpoint_url, clock)
        calls = count_calls(client)
        recipients = [f"user{i}@example.com" for i in range(50_000)]

        preflight.check_recipients(recipients)
        preflight.check_recipients(recipients)
    finally:
        emulator.stop()

    assert calls == {"GetAccount": 1, "ListEmailIdentities": 1}


def test_every_page_of_identities_is_read(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preflight_module, "LIST_PAGE_SIZE", 2)
    friends = [f"friend{i}@example.com" for i in range(5)]
    emulator = start_emulator(sandbox=True, verified_identities=[SENDER, *friends])
    try:
        preflight, client = make_preflight(emulator.endpoint_url, clock)
        calls = count_calls(client)
        preflight.check_recipients(friends)
    finally:
        emulator.stop()

    assert calls["ListEmailIdentities"] == 3  # six identities, two a page


def test_a_recipient_verified_just_now_is_admitted_within_thirty_seconds(clock: Clock) -> None:
    emulator = start_emulator(sandbox=True, verified_identities=[SENDER])
    try:
        preflight, client = make_preflight(emulator.endpoint_url, clock)
        calls = count_calls(client)
        preflight.check_recipients(["bounce@simulator.amazonses.com"])  # the list is read
        client.create_email_identity(EmailIdentity="new@example.com")
        with pytest.raises(ValidationFailed):  # a list read just now: refused from it
            preflight.check_recipients(["new@example.com"])
        clock.now += 31
        preflight.check_recipients(["new@example.com"])  # an older list is read again first
    finally:
        emulator.stop()

    assert calls["ListEmailIdentities"] == 2


def test_a_sandboxed_account_is_read_again_soon_and_production_kept(clock: Clock) -> None:
    emulator = start_emulator(sandbox=True)
    try:
        preflight, client = make_preflight(emulator.endpoint_url, clock)
        calls = count_calls(client)
        with pytest.raises(ValidationFailed):
            preflight.check_recipients(["stranger@example.com"])
        emulator.set_account(sandbox=False)  # production access granted
        clock.now += 30
        preflight.check_recipients(["stranger@example.com"])
        clock.now += 299
        preflight.check_recipients(["stranger@example.com"])
    finally:
        emulator.stop()

    assert calls["GetAccount"] == 2


def test_recipients_are_matched_by_set_lookups_in_ascii_form() -> None:
    verified = frozenset({"xn--bcher-kva.de", "a@example.com"})

    listed, count = unverified_recipients(
        ["x@bücher.de", "A@example.com", "b@example.com", "c@other.example"], verified
    )

    assert (listed, count) == (["b@example.com", "c@other.example"], 2)


# --- the account ----------------------------------------------------------------------------


def test_the_account_summary_reports_sandbox_quota_rate_and_enforcement(
    emulator: SesEmulator, clock: Clock
) -> None:
    emulator.set_quota(50_000, 14)
    preflight, _ = make_preflight(emulator.endpoint_url, clock)

    first = preflight.account_summary()
    emulator.set_account(sandbox=True, enforcement_status="PROBATION")
    cached = preflight.account_summary()
    fresh = preflight.account_summary(fresh=True)

    assert first == {
        "sandbox": False,
        "enforcementStatus": "HEALTHY",
        "sendingEnabled": True,
        "quota": {"max24HourSend": 50_000.0, "maxSendRate": 14.0, "sentLast24Hours": 0.0},
    }
    assert cached == first
    assert fresh is not None
    assert (fresh["sandbox"], fresh["enforcementStatus"]) == (True, "PROBATION")


def test_a_shut_down_account_reports_sending_disabled(emulator: SesEmulator) -> None:
    emulator.set_account(enforcement_status="shutdown")
    account = read_client(emulator.endpoint_url).get_account()

    assert (account["EnforcementStatus"], account["SendingEnabled"]) == ("SHUTDOWN", False)
    with pytest.raises(ValueError, match="HEALTHY, PROBATION, SHUTDOWN"):
        emulator.set_account(enforcement_status="SUSPENDED")


def test_the_emulated_sandbox_rejects_mail_to_an_unverified_recipient_as_ses_does() -> None:
    emulator = start_emulator(sandbox=True)
    try:
        client = read_client(emulator.endpoint_url)

        def send(to: str) -> Any:
            return client.send_email(
                FromEmailAddress=SENDER,
                Destination={"ToAddresses": [to]},
                Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}},
            )

        send("success@simulator.amazonses.com")
        with pytest.raises(client.exceptions.MessageRejected) as rejected:
            send("stranger@example.com")
    finally:
        emulator.stop()

    assert "Email address is not verified" in str(rejected.value)


# --- SES unreadable: admitted ---------------------------------------------------------------


def test_when_ses_denies_the_reads_the_send_is_admitted_and_logged_once(
    ses_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    preflight, client = make_preflight(ses_endpoint)
    denied = ScriptedSes(lambda _n: (400, "AccessDeniedException", "not authorized"))
    denied.install(client, "GetEmailIdentity")
    caplog.set_level(logging.DEBUG, logger="sendmail.admission.preflight")

    preflight.check_sender("someone@elsewhere.example")
    preflight.check_sender("another@elsewhere.example")

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "GetEmailIdentity failed (AccessDeniedException)" in warnings[0].getMessage()
    assert "@" not in caplog.text  # no address in the log


def test_a_failed_read_is_kept_briefly_not_asked_on_every_request(
    ses_endpoint: str, clock: Clock
) -> None:
    preflight, client = make_preflight(ses_endpoint, clock)
    failing = ScriptedSes(lambda _n: (400, "AccessDeniedException", "not authorized")).install(
        client, "GetEmailIdentity"
    )

    preflight.check_sender("someone@elsewhere.example")
    attempts = failing.calls
    preflight.check_sender("someone@elsewhere.example")
    clock.now += 30
    preflight.check_sender("someone@elsewhere.example")

    assert attempts == 2  # the address and its domain
    assert failing.calls == attempts * 2


def test_where_get_account_is_missing_recipients_are_not_checked(ses_endpoint: str) -> None:
    preflight, client = make_preflight(ses_endpoint)  # moto alone: no GetAccount (404)
    calls = count_calls(client)

    preflight.check_recipients(["stranger@example.com"])

    assert preflight.account_summary() is None
    assert "ListEmailIdentities" not in calls


# --- the SES look-alike of bench/ -----------------------------------------------------------


def test_the_lookalike_answers_the_preflight_reads(lookalike: Any) -> None:
    preflight, client = make_preflight(lookalike.endpoint_url)

    preflight.check_sender(SENDER)
    with pytest.raises(Forbidden):
        preflight.check_sender("someone@elsewhere.example")
    listed = client.list_email_identities()["EmailIdentities"]

    assert preflight.account_summary() == {
        "sandbox": False,
        "enforcementStatus": "HEALTHY",
        "sendingEnabled": True,
        "quota": {"max24HourSend": 50_000.0, "maxSendRate": 1000.0, "sentLast24Hours": 0.0},
    }
    assert [(i["IdentityName"], i["VerificationStatus"]) for i in listed] == [(SENDER, "SUCCESS")]
    calls = lookalike.stats()["other_calls"]
    assert (calls["GetEmailIdentity"], calls["ListEmailIdentities"]) == (3, 1)


# --- aws-send -------------------------------------------------------------------------------

BODY = {
    "senderEmail": SENDER,
    "recipientEmails": ["a@example.com", "b@example.com"],
    "subject": "안녕하세요",
    "body": "본문입니다",
}


def aws_send(app_functions: dict[str, Any], client: FakeDurableClient, **changes: Any) -> Any:
    return call(
        app_functions, "aws_send", ROUTE, method="POST", body={**BODY, **changes}, client=client
    )


def envelope(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    body: dict[str, Any] = json.loads(response.get_body())
    assert set(body) == {"timestamp", "status", "error", "message", "path"}
    assert (body["status"], body["path"]) == (status, ROUTE)
    return body


def use(endpoint_url: str) -> None:
    services.override(ses=StubQuota(), preflight=make_preflight(endpoint_url)[0])


def nothing_stored() -> bool:
    return not services.blobs().blobs and not services.sends().records  # type: ignore[attr-defined]


def test_aws_send_from_an_unverified_sender_is_403_and_nothing_starts(
    app_functions: dict[str, Any],
) -> None:
    emulator = start_emulator(verified_identities=[])  # allowed, but never verified in SES
    try:
        use(emulator.endpoint_url)
        client = FakeDurableClient()
        refused = aws_send(app_functions, client)
        later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        scheduled = aws_send(app_functions, client, scheduledAt=later)
    finally:
        emulator.stop()

    for response in (refused, scheduled):
        body = envelope(response, 403)
        assert body["error"] == "Forbidden"
        assert f"senderEmail {SENDER} is not verified for sending in Amazon SES" in body["message"]
    assert client.started == []
    assert nothing_stored()


def test_aws_send_from_a_sandbox_to_unverified_recipients_is_400_naming_them(
    app_functions: dict[str, Any],
) -> None:
    emulator = start_emulator(sandbox=True)
    try:
        use(emulator.endpoint_url)
        client = FakeDurableClient()
        refused = aws_send(app_functions, client)
        later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        scheduled = aws_send(app_functions, client, scheduledAt=later)
        simulator = aws_send(
            app_functions,
            client,
            recipientEmails=["success@simulator.amazonses.com", "bounce@simulator.amazonses.com"],
        )
    finally:
        emulator.stop()

    for response in (refused, scheduled):
        body = envelope(response, 400)
        assert body["message"].startswith("Validation failed: the Amazon SES account is in the")
        assert (
            "2 of the recipients are not verified (a@example.com, b@example.com)"
            in (body["message"])
        )
    assert simulator.status_code == 202
    assert len(client.started) == 1


def test_aws_send_from_a_verified_sender_in_production_is_202(
    app_functions: dict[str, Any], emulator: SesEmulator
) -> None:
    use(emulator.endpoint_url)
    client = FakeDurableClient()

    assert aws_send(app_functions, client).status_code == 202
    assert len(client.started) == 1


def test_aws_send_is_admitted_when_ses_cannot_be_read(
    app_functions: dict[str, Any], ses_endpoint: str
) -> None:
    preflight, read = make_preflight(ses_endpoint)
    ScriptedSes(lambda _n: (400, "AccessDeniedException", "not authorized")).install(
        read, "GetEmailIdentity"
    )
    services.override(ses=StubQuota(), preflight=preflight)
    client = FakeDurableClient()

    assert aws_send(app_functions, client).status_code == 202
    assert len(client.started) == 1


def test_preflight_can_be_turned_off(
    app_functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = start_emulator(verified_identities=[])
    try:
        monkeypatch.setenv("SENDMAIL_PREFLIGHT_ENABLED", "false")
        get_settings.cache_clear()
        use(emulator.endpoint_url)
        client = FakeDurableClient()
        response = aws_send(app_functions, client)
    finally:
        emulator.stop()

    assert response.status_code == 202
