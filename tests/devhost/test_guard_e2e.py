"""The account guard end to end: the real app under devhost, SES's mailbox simulator bouncing
(devhost's SES answers ``bounce+label@simulator.amazonses.com`` as SES does and posts the events
through devhost's SNS to the app), the guard tripping from the app's own count, what that does to
unfinished and new sends, and the operator's reset."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.devhost.conftest import FAST_SES, DevhostProcess, real_app
from tests.devhost.test_ses_events import eventually

pytestmark = pytest.mark.e2e

SENDER = "se@aifactory.page"
SIM = "simulator.amazonses.com"
BULK = 5  # SENDMAIL_GUARD_BULK_RECIPIENTS here


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    env = {
        **FAST_SES,
        "SENDMAIL_GUARD_MIN_SAMPLE": "20",
        "SENDMAIL_GUARD_BULK_RECIPIENTS": str(BULK),
    }
    with real_app(tmp_path_factory.mktemp("guard") / "state", env) as process:
        yield process


def send(app: DevhostProcess, recipients: list[str], **extra: Any) -> Any:
    body = {"senderEmail": SENDER, "recipientEmails": recipients, "subject": "s", "body": "b"}
    return app.request("POST", "/api/v1/emails/aws-send", json={**body, **extra}, timeout=60)


def state(app: DevhostProcess, send_id: str) -> str:
    return str(app.request("GET", f"/api/v1/emails/{send_id}").json()["state"])


def test_bounces_trip_the_guard_which_holds_bulk_sends_until_an_operator_resets_it(
    app: DevhostProcess,
) -> None:
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    big = send(app, [f"later{i}@example.com" for i in range(BULK + 1)], scheduledAt=later)
    marketing = send(app, ["fan@example.com"], scheduledAt=later, category="marketing")
    receipt = send(app, ["buyer@example.com"], scheduledAt=later)
    assert {big.status_code, marketing.status_code, receipt.status_code} == {202}
    waiting = {
        name: r.json()["id"]
        for name, r in [("big", big), ("marketing", marketing), ("receipt", receipt)]
    }
    assert app.request("GET", "/api/v1/account").json()["guard"]["state"] == "ok"

    # 10 hard bounces in 30 messages: 33%, from a sample of 30 (20 needed)
    bouncing = [f"success+{i}@{SIM}" for i in range(20)] + [f"bounce+{i}@{SIM}" for i in range(10)]
    assert send(app, bouncing).status_code == 202

    account = eventually(
        lambda: (
            (a := app.request("GET", "/api/v1/account").json())["guard"]["state"] == "tripped" and a
        )
    )
    assert account["guard"]["reason"].startswith("bounce rate")
    assert account["rates"]["bounceRate"] >= 0.04  # read when it tripped: some may be on the way
    # the unfinished bulk sends are the guard's now; the small transactional one is not
    assert {name: state(app, i) for name, i in waiting.items()} == {
        "big": "paused",
        "marketing": "paused",
        "receipt": "scheduled",
    }
    refused = app.request("POST", f"/api/v1/emails/{waiting['big']}/resume")
    assert refused.status_code == 409
    assert "account guard" in refused.json()["message"]
    # new bulk sends wait; small transactional mail flows
    held = send(app, [f"more{i}@example.com" for i in range(BULK + 1)])
    assert held.status_code == 503
    assert held.headers["Retry-After"] == "3600"
    assert send(app, ["now@example.com"]).status_code == 202

    reset = app.request("POST", "/api/v1/account/guard/reset")

    assert reset.status_code == 200
    assert (reset.json()["wasTripped"], reset.json()["resumedSends"]) == (True, 2)
    assert {name: state(app, i) for name, i in waiting.items()} == {
        "big": "scheduled",
        "marketing": "scheduled",
        "receipt": "scheduled",
    }
    assert send(app, [f"again{i}@example.com" for i in range(BULK + 1)]).status_code == 202
