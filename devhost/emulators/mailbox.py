"""SES's mailbox simulator, for the dev host: what SES would report about each message.

Real SES answers mail to ``simulator.amazonses.com`` with a defined outcome (labels allowed:
``bounce+anything@``); devhost's SES emulator does the same, and reports every other recipient
as delivered:

| address | SES's events |
|---|---|
| ``success@`` | Delivery |
| ``bounce@`` | Bounce, Permanent/General, ``smtp; 550 5.1.1 user unknown`` |
| ``ooto@`` | Delivery (the auto-reply goes to the sender, not into an event) |
| ``complaint@`` | Delivery, then Complaint (``abuse``) |
| ``suppressionlist@`` | Bounce, Permanent/Suppressed (as if on SES's global suppression list) |
| any other address | Delivery |

:func:`event_records` builds the records as SES publishes them to SNS: with a configuration set,
the event-publishing form (``eventType``, ``mail.tags`` with the message's own tags plus SES's
``ses:configuration-set``); without one, the identity-notification form (``notificationType``,
no tags). Only the fields the SES documentation lists; no headers, so no mail content.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

SIMULATOR_DOMAIN = "simulator.amazonses.com"
ACCOUNT = "000000000000"
_MTA = "dsn; devhost.simulator.amazonses.com"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def simulator_box(address: str) -> str | None:
    """``bounce`` for ``bounce+label@simulator.amazonses.com``; None off the simulator."""
    local, _, domain = address.strip().lower().rpartition("@")
    if domain != SIMULATOR_DOMAIN:
        return None
    return local.split("+", 1)[0]


def event_records(
    *,
    message_id: str,
    source: str,
    destination: Sequence[str],
    tags: Mapping[str, str],
    configuration_set: str | None,
    region: str,
    sent_at: datetime | None = None,
) -> list[dict[str, Any]]:
    """The SES event records for one accepted message, in the order SES would publish them."""
    sent = sent_at or datetime.now(UTC)
    mail: dict[str, Any] = {
        "timestamp": _iso(sent),
        "source": source,
        "sourceArn": f"arn:aws:ses:{region}:{ACCOUNT}:identity/{source.rpartition('@')[2]}",
        "sendingAccountId": ACCOUNT,
        "messageId": message_id,
        "destination": list(destination),
    }
    if configuration_set:
        all_tags = {name: [value] for name, value in tags.items()}
        all_tags["ses:configuration-set"] = [configuration_set]
        all_tags["ses:from-domain"] = [source.rpartition("@")[2]]
        mail["tags"] = all_tags
    key = "eventType" if configuration_set else "notificationType"
    later = sent + timedelta(milliseconds=800)
    records: list[dict[str, Any]] = []
    delivered = [a for a in destination if simulator_box(a) not in ("bounce", "suppressionlist")]
    if delivered:
        records.append(
            {
                key: "Delivery",
                "mail": mail,
                "delivery": {
                    "timestamp": _iso(later),
                    "processingTimeMillis": 800,
                    "recipients": delivered,
                    "smtpResponse": "250 2.6.0 Message received",
                    "reportingMTA": "devhost.smtp-out.amazonses.com",
                },
            }
        )
    for address in destination:
        box = simulator_box(address)
        if box == "bounce":
            records.append(_bounce(key, mail, address, "General", later, "5.1.1", "user unknown"))
        elif box == "suppressionlist":
            records.append(
                _bounce(
                    key,
                    mail,
                    address,
                    "Suppressed",
                    later,
                    "5.1.1",
                    "Amazon SES has suppressed sending to this address because it has a "
                    "recent history of bouncing as an invalid address.",
                )
            )
        elif box == "complaint":
            records.append(
                {
                    key: "Complaint",
                    "mail": mail,
                    "complaint": {
                        "complainedRecipients": [{"emailAddress": address}],
                        "timestamp": _iso(later + timedelta(seconds=1)),
                        "feedbackId": f"{message_id}-complaint",
                        "userAgent": "devhost mailbox simulator",
                        "complaintFeedbackType": "abuse",
                        "arrivalDate": _iso(later),
                    },
                }
            )
    return records


def _bounce(
    key: str,
    mail: Mapping[str, Any],
    address: str,
    sub_type: str,
    when: datetime,
    status: str,
    text: str,
) -> dict[str, Any]:
    return {
        key: "Bounce",
        "mail": mail,
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": sub_type,
            "bouncedRecipients": [
                {
                    "emailAddress": address,
                    "action": "failed",
                    "status": status,
                    "diagnosticCode": f"smtp; 550 {status} {text}",
                }
            ],
            "timestamp": _iso(when),
            "feedbackId": f"{mail['messageId']}-bounce",
            "reportingMTA": _MTA,
        },
    }
