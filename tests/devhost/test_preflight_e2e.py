"""Preflight end to end: the real app under devhost, whose SES plays a sandboxed account
(``DEVHOST_SES_SANDBOX=1``) with a few verified identities (``DEVHOST_SES_VERIFIED_IDENTITIES``):
an unverified sender is 403 and unverified recipients 400 before anything starts, while mail to
verified recipients and SES's mailbox simulator goes out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.devhost.conftest import DevhostProcess, real_app

pytestmark = pytest.mark.e2e

SENDER = "se@aifactory.page"
UNVERIFIED_SENDER = "news@aifactory.page"  # allowed by the app, never verified in SES
FRIEND = "friend@example.com"
SIMULATOR = "success@simulator.amazonses.com"
ROUTE = "/api/v1/emails/aws-send"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    env = {
        "DEVHOST_SES_SANDBOX": "1",
        "DEVHOST_SES_VERIFIED_IDENTITIES": f"{SENDER},{FRIEND}",
        "SENDMAIL_ALLOWED_SENDERS": f"{SENDER},{UNVERIFIED_SENDER}",
    }
    with real_app(tmp_path_factory.mktemp("preflight") / "state", env) as process:
        yield process


def send(app: DevhostProcess, recipients: list[str], sender: str = SENDER) -> Any:
    body = {"senderEmail": sender, "recipientEmails": recipients, "subject": "s", "body": "b"}
    return app.request("POST", ROUTE, json=body, timeout=60)


def outbox(app: DevhostProcess) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = app.request("GET", "/_dev/outbox").json()["messages"]
    return messages


def test_a_sandboxed_account_is_told_up_front_and_verified_mail_goes_out(
    app: DevhostProcess,
) -> None:
    strangers = send(app, [FRIEND, "stranger@example.com"])
    unverified = send(app, [FRIEND], sender=UNVERIFIED_SENDER)
    account = app.request("GET", "/api/v1/account").json()
    assert outbox(app) == []  # nothing started

    accepted = send(app, [FRIEND, SIMULATOR])
    assert accepted.status_code == 202, accepted.text
    finished = app.wait_for(accepted.json()["id"], timeout=90)

    assert strangers.status_code == 400
    assert strangers.json()["path"] == ROUTE
    assert "account is in the sandbox" in strangers.json()["message"]
    assert (
        "1 of the recipients is not verified (stranger@example.com)"
        in (strangers.json()["message"])
    )
    assert unverified.status_code == 403
    assert f"{UNVERIFIED_SENDER} is not verified for sending" in unverified.json()["message"]
    assert account["sandbox"] is True
    assert finished["runtimeStatus"] == "Completed"
    delivered = sorted(to for m in outbox(app) for to in m["to"])
    assert delivered == sorted([FRIEND, SIMULATOR])
