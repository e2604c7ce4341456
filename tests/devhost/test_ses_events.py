"""SES's events end to end: the real app under devhost, SES's mailbox simulator, devhost's SNS.

devhost's SES emulator answers mail to ``simulator.amazonses.com`` as SES does and posts the
matching SNS notifications — signed with devhost's key, certificate on loopback — to the app's
events route with the function key; the app trusts that origin only because devhost said so
(``SENDMAIL_SNS_DEV_TRUSTED_ORIGIN``). What a caller and an operator see: counts on the status
route, events listed, suppression entries, the next send skipping them, deletion restoring
sending, and a forged notification refused with nothing recorded.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from devhost.emulators.sns import SigningKey
from tests.devhost.conftest import FAST_SES, DevhostProcess, real_app

pytestmark = pytest.mark.e2e

SENDER = "se@aifactory.page"
SIM = "simulator.amazonses.com"
SUCCESS, BOUNCE, OOTO, COMPLAINT, LISTED = (
    f"{box}@{SIM}" for box in ("success", "bounce", "ooto", "complaint", "suppressionlist")
)
ELSEWHERE = "someone@example.com"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    with real_app(tmp_path_factory.mktemp("ses-events") / "state", FAST_SES) as process:
        yield process


def local_sns(app: DevhostProcess) -> dict[str, str]:
    info: dict[str, str] = json.loads(
        (Path(app.state_dir) / "sns" / "local-sns.json").read_text(encoding="utf-8")
    )
    return info


def send(app: DevhostProcess, recipients: list[str]) -> dict[str, Any]:
    response = app.request(
        "POST",
        "/api/v1/emails/aws-send",
        json={"senderEmail": SENDER, "recipientEmails": recipients, "subject": "s", "body": "b"},
        headers={"Prefer": "wait=30"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def eventually(check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout}s")
        time.sleep(0.1)


def delivery(app: DevhostProcess, send_id: str) -> dict[str, int]:
    counts: dict[str, int] = app.request("GET", f"/api/v1/emails/{send_id}").json()["delivery"]
    return counts


def mailed(app: DevhostProcess, address: str) -> int:
    messages = app.request("GET", "/_dev/outbox").json()["messages"]
    return sum(1 for m in messages if address in m["to"])


def all_events(app: DevhostProcess, send_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    params: dict[str, str] = {"limit": "2"}
    while True:
        page = app.request("GET", f"/api/v1/emails/{send_id}/events", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        events += body["events"]
        if "nextCursor" not in body:
            return events
        params["cursor"] = body["nextCursor"]


def test_the_mailbox_simulator_end_to_end(app: DevhostProcess) -> None:
    first = send(app, [SUCCESS, BOUNCE, OOTO, COMPLAINT, LISTED, ELSEWHERE])
    assert len(first["messageIds"]) == 6
    send_id = first["id"]

    expected = {"delivered": 4, "bounced": 2, "complained": 1, "rejected": 0, "delayed": 0}
    eventually(lambda: delivery(app, send_id) == expected)
    assert "confirmed the subscription" in app.log()  # SNS's handshake came first

    events = all_events(app, send_id)
    assert sorted((e["recipient"], e["type"]) for e in events) == sorted(
        [
            (SUCCESS, "Delivery"),
            (OOTO, "Delivery"),
            (COMPLAINT, "Delivery"),
            (ELSEWHERE, "Delivery"),
            (BOUNCE, "Bounce"),
            (LISTED, "Bounce"),
            (COMPLAINT, "Complaint"),
        ]
    )
    assert set(first["messageIds"]) == {e["messageId"] for e in events}
    bounce = next(e for e in events if e["recipient"] == BOUNCE)
    assert (bounce["subType"], bounce["diagnostic"]) == (
        "Permanent/General",
        "smtp; 550 5.1.1 user unknown",
    )
    bounces = app.request("GET", f"/api/v1/emails/{send_id}/events", params={"type": "Bounce"})
    assert {e["recipient"] for e in bounces.json()["events"]} == {BOUNCE, LISTED}

    # a hard bounce or a complaint suppresses; a delivery does not
    reasons = {}
    for address in (BOUNCE, COMPLAINT, LISTED, SUCCESS, ELSEWHERE):
        response = app.request("GET", f"/api/v1/suppressions/{address}")
        reasons[address] = response.json()["reason"] if response.status_code == 200 else None
    assert reasons == {
        BOUNCE: "BOUNCE",
        COMPLAINT: "COMPLAINT",
        LISTED: "BOUNCE",
        SUCCESS: None,
        ELSEWHERE: None,
    }
    entry = app.request("GET", f"/api/v1/suppressions/{BOUNCE.upper()}").json()
    assert entry["eventType"] == "Bounce"
    assert "sendId" not in entry

    # the next send skips them: SUPPRESSED, and SES never sees them
    before = mailed(app, BOUNCE)
    second = send(app, [BOUNCE, SUCCESS, COMPLAINT])
    assert len(second["messageIds"]) == 1
    assert {(f["recipient"], f["code"]) for f in second["failures"]} == {
        (BOUNCE, "SUPPRESSED"),
        (COMPLAINT, "SUPPRESSED"),
    }
    assert mailed(app, BOUNCE) == before

    # an operator takes one off the list: it is mailed again
    assert app.request("DELETE", f"/api/v1/suppressions/{BOUNCE}").status_code == 204
    assert app.request("GET", f"/api/v1/suppressions/{BOUNCE}").status_code == 404
    third = send(app, [BOUNCE])
    assert len(third["messageIds"]) == 1
    assert mailed(app, BOUNCE) == before + 1
    # ... and bounces again, so it is back on the list
    eventually(lambda: app.request("GET", f"/api/v1/suppressions/{BOUNCE}").status_code == 200)


def test_a_forged_notification_with_the_right_key_is_refused(app: DevhostProcess) -> None:
    """The function key is right; the signature is not devhost's SNS's: 403, nothing kept."""
    info = local_sns(app)
    send_id = send(app, [SUCCESS])["id"]
    eventually(lambda: delivery(app, send_id)["delivered"] == 1)
    victim = f"victim-{uuid.uuid4().hex[:8]}@example.com"
    record = {
        "eventType": "Bounce",
        "mail": {
            "messageId": "forged",
            "destination": [victim],
            "tags": {"sendmail-send-id": [send_id]},
        },
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": victim}],
        },
    }
    forger = SigningKey.generate()
    genuine = SigningKey.load_or_create(Path(app.state_dir) / "sns")
    base = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": info["topicArn"],
        "Message": json.dumps(record),
        "Timestamp": "2026-12-01T10:00:00.000Z",
        "SigningCertURL": info["certUrl"],
    }
    tampered = genuine.sign(base)
    tampered["Message"] = tampered["Message"].replace("Permanent", "Permanent ")
    for forged in (forger.sign(base), tampered):
        response = app.request(
            "POST", "/api/v1/events/ses", auth=False, params={"code": app.key}, json=forged
        )
        assert response.status_code == 403, response.text
        assert response.json()["status"] == 403
    assert app.request("GET", f"/api/v1/suppressions/{victim}").status_code == 404
    assert delivery(app, send_id)["bounced"] == 0
    # the same message signed with devhost's key is taken: the refusal was the signature's
    signed = app.request(
        "POST", "/api/v1/events/ses", auth=False, params={"code": app.key}, json=genuine.sign(base)
    )
    assert signed.status_code == 200, signed.text
    assert app.request("GET", f"/api/v1/suppressions/{victim}").status_code == 200
    # without the function key the host refuses before the app runs
    assert app.request("POST", "/api/v1/events/ses", auth=False, json=base).status_code == 401


def test_event_ingestion_rate_through_devhost(app: DevhostProcess) -> None:
    """Signed Delivery notifications posted 8 at a time, as SNS delivers concurrently; each is
    verified, recorded and counted. Prints the rate (docs/benchmarks.md has the full run)."""
    info = local_sns(app)
    signing = SigningKey.load_or_create(Path(app.state_dir) / "sns")
    send_id = send(app, [ELSEWHERE])["id"]
    total = 300
    bodies = []
    for n in range(total):
        record = {
            "eventType": "Delivery",
            "mail": {
                "messageId": f"m{n}",
                "destination": [f"r{n}@example.com"],
                "tags": {"sendmail-send-id": [send_id]},
            },
            "delivery": {"recipients": [f"r{n}@example.com"], "smtpResponse": "250 ok"},
        }
        bodies.append(
            signing.sign(
                {
                    "Type": "Notification",
                    "MessageId": str(uuid.uuid4()),
                    "TopicArn": info["topicArn"],
                    "Message": json.dumps(record),
                    "Timestamp": "2026-12-01T10:00:00.000Z",
                    "SigningCertURL": info["certUrl"],
                }
            )
        )
    url = f"{app.base_url}/api/v1/events/ses"

    def post(body: dict[str, Any]) -> int:
        with requests.Session() as session:
            return session.post(url, params={"code": app.key}, json=body, timeout=30).status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(post, bodies))
    elapsed = time.perf_counter() - started
    assert statuses == [200] * total
    assert eventually(lambda: delivery(app, send_id)["delivered"] == total + 1)
    print(
        f"\nevent ingestion through devhost: {total} in {elapsed:.2f} s = {total / elapsed:.0f}/s"
    )


def test_no_recipient_address_reaches_the_logs(app: DevhostProcess) -> None:
    """The security review found recipient addresses in the logs: azure-core logs every Table
    request URL at INFO, and a suppression point read names the address in its URL
    (``…(PartitionKey='example.com',RowKey='victim.person')``); in Azure the worker forwards
    every INFO record to Application Insights. A full send — suppressed recipients looked up
    and skipped, events ingested, an operator's lookup and removal, a user-send — must leave no
    address in any form (the unique tokens below are in every local part) in the log, which
    holds everything devhost's process logs at its default level (INFO), the app's records
    included."""
    token = uuid.uuid4().hex[:12]
    bounce, complaint = f"bounce+{token}b@{SIM}", f"complaint+{token}c@{SIM}"
    others = [f"{token}{n}@example.org" for n in range(3)]
    first = send(app, [bounce, complaint, *others])
    eventually(lambda: delivery(app, first["id"])["bounced"] == 1)
    eventually(lambda: app.request("GET", f"/api/v1/suppressions/{complaint}").status_code == 200)
    second = send(app, [bounce, complaint, *others])  # point reads of the suppression list
    assert {f["code"] for f in second["failures"]} == {"SUPPRESSED"}
    assert app.request("DELETE", f"/api/v1/suppressions/{bounce}").status_code == 204
    user = app.request(
        "POST",
        "/api/v1/emails/user-send",
        json={
            "provider": "GMAIL",
            "senderEmail": f"me{token}s@gmail.com",
            "password": f"pw-{token}-secret",
            "recipientEmails": others,
            "subject": "s",
            "body": "b",
        },
        headers={"Prefer": "wait=30"},
    )
    assert user.status_code == 200, user.text

    log = app.log()
    leaks = [line for line in log.splitlines() if token in line]
    assert leaks == [], "\n".join(leaks[:10])
