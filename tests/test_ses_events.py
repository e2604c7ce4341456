"""SES event records, in the shapes the SES developer guide documents for SNS, read per recipient.

Both forms: event publishing (``eventType``, with ``mail.tags``) and identity notifications
(``notificationType``, no tags).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from sendmail.feedback.ses_events import (
    SEND_ID_TAG,
    parse_notification,
    parse_record,
    send_tags,
)

SEND_ID = "0f1c2d3e4f5a46b7a8b9c0d1e2f3a4b5"
MESSAGE_ID = "0102018c1a2b3c4d-5e6f7a8b-9c0d-1e2f-3a4b-5c6d7e8f9a0b-000000"


def mail(*destination: str, tags: bool = True) -> dict[str, Any]:
    record: dict[str, Any] = {
        "timestamp": "2026-12-01T10:00:00.000Z",
        "source": "se@aifactory.page",
        "sourceArn": "arn:aws:ses:ap-northeast-2:123456789012:identity/aifactory.page",
        "sendingAccountId": "123456789012",
        "messageId": MESSAGE_ID,
        "destination": list(destination),
        "headersTruncated": False,
        "headers": [{"name": "Subject", "value": "비밀 제목"}],
        "commonHeaders": {"subject": "비밀 제목", "to": list(destination)},
    }
    if tags:
        record["tags"] = {
            "ses:configuration-set": ["sendmail"],
            "ses:source-ip": ["192.0.2.0"],
            SEND_ID_TAG: [SEND_ID],
        }
    return record


BOUNCE = {
    "eventType": "Bounce",
    "bounce": {
        "bounceType": "Permanent",
        "bounceSubType": "General",
        "bouncedRecipients": [
            {
                "emailAddress": "gone@example.com",
                "action": "failed",
                "status": "5.1.1",
                "diagnosticCode": "smtp; 550 5.1.1 user unknown",
            }
        ],
        "timestamp": "2026-12-01T10:00:02.669Z",
        "feedbackId": "0100018c-bounce-000000",
        "reportingMTA": "dsn; mta.example.com",
    },
    "mail": mail("gone@example.com"),
}
COMPLAINT = {
    "eventType": "Complaint",
    "complaint": {
        "complainedRecipients": [{"emailAddress": "angry@example.com"}],
        "timestamp": "2026-12-01T10:05:00.000Z",
        "feedbackId": "0100018c-complaint-000000",
        "userAgent": "Mozilla/5.0",
        "complaintFeedbackType": "abuse",
        "arrivalDate": "2026-12-01T10:04:59.000Z",
    },
    "mail": mail("angry@example.com"),
}
DELIVERY = {
    "eventType": "Delivery",
    "mail": mail("happy@example.com"),
    "delivery": {
        "timestamp": "2026-12-01T10:00:01.133Z",
        "processingTimeMillis": 1133,
        "recipients": ["happy@example.com"],
        "smtpResponse": "250 2.6.0 Message received",
        "reportingMTA": "mta.example.com",
    },
}
DELAY = {
    "eventType": "DeliveryDelay",
    "mail": mail("slow@example.com"),
    "deliveryDelay": {
        "timestamp": "2026-12-01T10:10:00.095Z",
        "delayType": "TransientCommunicationFailure",
        "expirationTime": "2026-12-01T11:10:00.914Z",
        "delayedRecipients": [
            {
                "emailAddress": "slow@example.com",
                "status": "4.4.1",
                "diagnosticCode": "smtp; 421 4.4.1 Unable to connect to remote host",
            }
        ],
    },
}
REJECT = {"eventType": "Reject", "mail": mail("a@example.com"), "reject": {"reason": "Bad content"}}


def test_a_permanent_bounce_suppresses_its_recipient() -> None:
    [event] = parse_record(BOUNCE)
    assert (event.type, event.recipient, event.send_id, event.message_id) == (
        "Bounce",
        "gone@example.com",
        SEND_ID,
        MESSAGE_ID,
    )
    assert event.sub_type == "Permanent/General"
    assert event.diagnostic == "smtp; 550 5.1.1 user unknown"
    assert event.timestamp == datetime(2026, 12, 1, 10, 0, 2, 669000, tzinfo=UTC)
    assert event.suppress == "BOUNCE"


def test_an_event_about_a_message_belongs_to_the_address_it_was_sent_to() -> None:
    """A bounce names the DSN's Final-Recipient (SES: "If a DSN is available, this is the value of
    the Final-Recipient field"), which can be an alias's target: the address this service sent to,
    checks and reports is the message's one destination, so the event (and the suppression) is
    that address's; the other is kept in the diagnostic."""
    record = json.loads(json.dumps(BOUNCE))
    record["mail"] = mail("info@company.example")
    record["bounce"]["bouncedRecipients"][0]["emailAddress"] = "john@internal.company.example"
    [event] = parse_record(record)
    assert (event.recipient, event.suppress) == ("info@company.example", "BOUNCE")
    assert event.diagnostic == "smtp; 550 5.1.1 user unknown (for john@internal.company.example)"
    spelled = json.loads(json.dumps(BOUNCE))
    spelled["mail"] = mail("Gone@Example.com")
    assert parse_record(spelled)[0].diagnostic == "smtp; 550 5.1.1 user unknown"  # same address


def test_a_record_without_its_time_takes_the_notifications_so_a_redelivery_is_the_same() -> None:
    record = json.loads(json.dumps(REJECT))
    del record["mail"]["timestamp"]
    published = "2026-12-01T10:00:05.123Z"
    first, again = (parse_notification(json.dumps(record), published) for _ in range(2))
    assert first == again
    assert first is not None
    assert first[0].timestamp == datetime(2026, 12, 1, 10, 0, 5, 123000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("bounce_type", "sub_type", "suppress"),
    [
        ("Permanent", "NoEmail", "BOUNCE"),
        ("Permanent", "Suppressed", "BOUNCE"),
        ("Permanent", "OnAccountSuppressionList", "BOUNCE"),
        ("Transient", "MailboxFull", None),
        ("Transient", "General", None),
        ("Undetermined", "Undetermined", None),
    ],
)
def test_only_permanent_bounces_suppress(
    bounce_type: str, sub_type: str, suppress: str | None
) -> None:
    record = json.loads(json.dumps(BOUNCE))
    record["bounce"].update(bounceType=bounce_type, bounceSubType=sub_type)
    [event] = parse_record(record)
    assert event.sub_type == f"{bounce_type}/{sub_type}"
    assert event.suppress == suppress


def test_a_complaint_suppresses_unless_the_reporter_says_not_spam() -> None:
    [event] = parse_record(COMPLAINT)
    assert (event.type, event.recipient, event.sub_type, event.suppress) == (
        "Complaint",
        "angry@example.com",
        "abuse",
        "COMPLAINT",
    )
    not_spam = json.loads(json.dumps(COMPLAINT))
    not_spam["complaint"]["complaintFeedbackType"] = "not-spam"
    assert parse_record(not_spam)[0].suppress is None


def test_deliveries_delays_and_rejects_are_kept_and_suppress_nothing() -> None:
    [delivered] = parse_record(DELIVERY)
    assert (delivered.type, delivered.recipient, delivered.diagnostic) == (
        "Delivery",
        "happy@example.com",
        "250 2.6.0 Message received",
    )
    [delayed] = parse_record(DELAY)
    assert (delayed.type, delayed.sub_type) == ("DeliveryDelay", "TransientCommunicationFailure")
    assert delayed.diagnostic == "smtp; 421 4.4.1 Unable to connect to remote host"
    [rejected] = parse_record(REJECT)
    assert (rejected.type, rejected.recipient, rejected.diagnostic) == (
        "Reject",
        "a@example.com",
        "Bad content",
    )
    assert rejected.timestamp == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # the mail's time
    assert {e.suppress for e in (delivered, delayed, rejected)} == {None}


def test_nothing_of_the_mail_content_is_kept() -> None:
    for record in (BOUNCE, COMPLAINT, DELIVERY, DELAY, REJECT):
        for event in parse_record(record):
            assert "비밀" not in repr(event)


@pytest.mark.parametrize("kind", ["Send", "Open", "Click", "Rendering Failure", "Subscription"])
def test_other_event_types_are_not_kept(kind: str) -> None:
    assert parse_record({"eventType": kind, "mail": mail("a@example.com")}) == []


def test_the_older_notification_form_is_read_without_a_send() -> None:
    """Identity notifications: ``notificationType``, several recipients, no tags."""
    bounce = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {"emailAddress": "jane@example.com", "status": "5.1.1", "action": "failed"},
                {"emailAddress": "richard@example.com"},
            ],
            "timestamp": "2026-12-01T10:00:02.000Z",
            "feedbackId": "x",
            "remoteMtaIp": "127.0.2.0",
        },
        "mail": mail("jane@example.com", "mary@example.com", "richard@example.com", tags=False),
    }
    events = parse_record(bounce)
    assert [(e.recipient, e.diagnostic, e.send_id, e.suppress) for e in events] == [
        ("jane@example.com", "5.1.1", None, "BOUNCE"),
        ("richard@example.com", None, None, "BOUNCE"),
    ]
    complaint = {**COMPLAINT, "mail": mail("angry@example.com", tags=False)}
    complaint["notificationType"] = complaint.pop("eventType")
    [event] = parse_record(complaint)
    assert (event.type, event.send_id, event.suppress) == ("Complaint", None, "COMPLAINT")
    delivery = {**DELIVERY, "mail": mail("happy@example.com", tags=False)}
    delivery["notificationType"] = delivery.pop("eventType")
    assert [e.type for e in parse_record(delivery)] == ["Delivery"]


def test_a_notification_that_is_no_ses_record_is_not_parsed() -> None:
    assert parse_notification("Hello from SNS: a test message") is None
    assert parse_notification(json.dumps({"hello": "world"})) is None
    assert parse_notification(json.dumps({"eventType": "Bounce"})) is None  # no mail
    assert parse_notification(json.dumps([1, 2])) is None
    assert [e.type for e in parse_notification(json.dumps(BOUNCE)) or []] == ["Bounce"]


def test_malformed_parts_are_skipped_not_fatal() -> None:
    record = json.loads(json.dumps(BOUNCE))
    record["bounce"]["bouncedRecipients"].append({"emailAddress": 42})
    record["bounce"]["bouncedRecipients"].append("not an object")
    record["bounce"]["timestamp"] = "yesterday"
    record["mail"]["tags"][SEND_ID] = "not a list"
    record["mail"]["tags"][SEND_ID_TAG] = ["has spaces", SEND_ID]
    [event] = parse_record(record)
    assert event.send_id == SEND_ID
    assert event.timestamp == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # falls back to the mail


def test_a_long_diagnostic_is_clipped() -> None:
    record = json.loads(json.dumps(BOUNCE))
    record["bounce"]["bouncedRecipients"][0]["diagnosticCode"] = "x" * 5000
    [event] = parse_record(record)
    assert event.diagnostic is not None
    assert len(event.diagnostic) == 1000


def test_send_tags_carry_only_ids_ses_accepts() -> None:
    assert send_tags(SEND_ID) == {SEND_ID_TAG: SEND_ID}
    assert send_tags("with-dash_and_underscore") == {SEND_ID_TAG: "with-dash_and_underscore"}
    assert send_tags("has:colon") == {}
    assert send_tags("x" * 256) == {}
