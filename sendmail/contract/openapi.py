"""The OpenAPI 3.1 document of the v1 API, generated from the pydantic models the code runs on.

Schemas come from the request models (:mod:`sendmail.contract.models`, validation mode) and the
response models (:mod:`sendmail.contract.api_models`, serialization mode) through pydantic's JSON
Schema generator; nothing here repeats a field by hand. The limits that come from settings
(recipients, subject, body) are written into the request schemas from the same
:class:`~sendmail.contract.models.Limits` the handlers validate with, so the document a deployment
serves tells the truth for that deployment.

:func:`build_openapi` is pure: no Azure imports, no I/O, the same settings give the same document.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from sendmail.contract import api_models
from sendmail.contract.addresses import ADDRESS_PATTERN, MAX_ADDRESS_CHARS
from sendmail.contract.constants import MAX_WAIT_SECONDS
from sendmail.contract.errors import envelope
from sendmail.contract.models import AwsEmailRequest, Limits, UserEmailRequest
from sendmail.contract.text import LINE_BREAK_CHARACTERS
from sendmail.platform.settings import Settings

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1.0.0"
#: Where the routes live relative to the document's host: the Functions route prefix.
SERVER_URL = "/api"

_REF = "#/components/schemas/{model}"
_JSON = "application/json"
_EXAMPLE_TIME = datetime(2025, 7, 2, 15, 4, 33, tzinfo=UTC)

Schema = dict[str, Any]

#: No line break of any kind (what the validation and the mail builder refuse), written with
#: ``\\uXXXX`` escapes, which ECMA-262 and Python regular expressions read alike.
SUBJECT_PATTERN = "^[^" + "".join(f"\\u{ord(c):04x}" for c in LINE_BREAK_CHARACTERS) + "]*$"

#: What ``sendmail.contract.models.check_address`` holds addresses to, beyond JSON Schema's
#: ``email`` format (an annotation that admits all of these): found by fuzzing, which sent them and
#: got 400.
ADDRESS_RULES = (
    "Addresses are `local@domain.tld` with a plain ASCII local part: no quoted local part, "
    "no IP literal, a domain with a dot and not a special-use name (`.test`, `.invalid`, "
    "`.local`, `.localhost`, `.onion`, `.arpa`); anything else is 400. An internationalised "
    "domain (`bücher.de`) is accepted and mailed in its ASCII form (`xn--bcher-kva.de`)."
)

#: Security requirements: a function key in the header *or* in the query string.
FUNCTION_KEY: list[dict[str, list[str]]] = [{"functionKey": []}, {"functionKeyQuery": []}]


def build_openapi(settings: Settings) -> dict[str, Any]:
    """The whole document for a deployment configured with ``settings``."""
    schemas = _component_schemas(settings)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Send-Mail",
            "version": API_VERSION,
            "summary": "Mail as a service: company bulk mail through AWS SES, users' own SMTP.",
            "description": _DESCRIPTION,
        },
        "servers": [{"url": SERVER_URL, "description": "This deployment (the Functions host)."}],
        "tags": [
            {"name": "emails", "description": "Send mail and follow a send."},
            {"name": "events", "description": "What SES reported after sending (through SNS)."},
            {"name": "suppressions", "description": "Addresses aws-send no longer mails."},
            {
                "name": "unsubscribe",
                "description": (
                    "One-click unsubscribe (RFC 8058): the links marketing mail carries. "
                    "Anonymous: mail clients and recipients call them."
                ),
            },
            {
                "name": "account",
                "description": (
                    "The SES account and the account guard. Operators only (host keys): a "
                    "caller's key does not open these."
                ),
            },
            {"name": "health", "description": "Liveness."},
        ],
        "security": FUNCTION_KEY,
        "paths": {
            "/v1/emails/aws-send": {"post": _aws_send()},
            "/v1/emails/user-send": {"post": _user_send()},
            "/v1/emails/{id}": {"get": _email_status()},
            "/v1/emails/{id}/recipients": {"get": _email_recipients()},
            "/v1/emails/{id}/events": {"get": _email_events()},
            "/v1/emails/{id}/pause": {"post": _email_control("pause")},
            "/v1/emails/{id}/resume": {"post": _email_control("resume")},
            "/v1/emails/{id}/cancel": {"post": _email_control("cancel")},
            "/v1/events/ses": {"post": _ses_events()},
            "/v1/suppressions/{email}": {
                "get": _suppression_get(),
                "delete": _suppression_delete(),
            },
            "/v1/unsubscribe/{token}": {
                "get": _unsubscribe_page(),
                "post": _unsubscribe(),
            },
            "/v1/account": {"get": _account_get()},
            "/v1/account/guard/reset": {"post": _account_guard_reset()},
            "/health": {"get": _health()},
        },
        "components": {
            "schemas": schemas,
            "headers": _HEADERS,
            "responses": _error_responses(),
            "securitySchemes": {
                "functionKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-functions-key",
                    "description": "A function key of the app, in the `x-functions-key` header.",
                },
                "functionKeyQuery": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "code",
                    "description": "A function key of the app, as the `code` query parameter.",
                },
            },
        },
    }


# --- Schemas ----------------------------------------------------------------------------------


def _component_schemas(settings: Settings) -> dict[str, Schema]:
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (AwsEmailRequest, "validation"),
        (UserEmailRequest, "validation"),
        (api_models.SnsMessage, "validation"),
        *((model, "serialization") for model in api_models.RESPONSE_MODELS),
    ]
    _, generated = models_json_schema(
        models, ref_template=_REF, union_format="primitive_type_array"
    )
    schemas: dict[str, Schema] = copy.deepcopy(generated["$defs"])
    for schema in schemas.values():
        for field in schema.get("properties", {}).values():
            field.pop("title", None)  # "Senderemail": pydantic's titles add nothing to the names
    _apply_limits(schemas["AwsEmailRequest"], Limits.for_aws(settings))
    _apply_limits(schemas["UserEmailRequest"], Limits.for_user(settings))
    return dict(sorted(schemas.items()))


def _apply_limits(schema: Schema, limits: Limits) -> None:
    """Write the deployment's limits into a request schema (what the validators enforce)."""
    fields = schema["properties"]
    sender = fields["senderEmail"]
    sender["format"] = "email"
    sender["description"] = f"{sender['description']} {ADDRESS_RULES}"
    recipients = fields["recipientEmails"]
    addresses = _non_null(recipients)
    addresses["items"] = {**addresses["items"], "format": "email"}
    addresses["maxItems"] = limits.max_recipients
    recipients["description"] = (
        f"At most {limits.max_recipients} distinct recipients. Each gets its own message; "
        "duplicates (compared case-insensitively, a domain in its ASCII form) are sent once, "
        "keeping the first spelling. Exactly one of recipientEmails and recipients is given; "
        "with recipientEmails, subject, body and html are sent as they are (text that looks "
        f"like a template included). {ADDRESS_RULES}"
    )
    _non_null(fields["recipients"])["maxItems"] = limits.max_recipients
    html = fields["html"]
    _non_null(html)["maxLength"] = limits.max_html_bytes
    html["description"] = (
        f"{html['description']} At most {limits.max_html_bytes} bytes in UTF-8 (so at most "
        "that many characters)."
    )
    subject = fields["subject"]
    subject["maxLength"] = limits.max_subject_chars
    subject["pattern"] = SUBJECT_PATTERN
    subject["description"] = (
        f"Subject, plain text, at most {limits.max_subject_chars} characters, no line breaks, "
        "not only white space."
    )
    body = fields["body"]
    # Characters never outnumber UTF-8 bytes: maxLength is a true (if loose) bound on the body.
    body["maxLength"] = limits.max_body_bytes
    body["description"] = (
        f"Body, plain text, not only white space. At most {limits.max_body_bytes} bytes in UTF-8 "
        "(non-ASCII characters take 2-4 bytes each, so fewer characters fit)."
    )


def _non_null(schema: Schema) -> Schema:
    """The schema of an optional field's value (pydantic writes ``anyOf: [value, null]``)."""
    for option in schema.get("anyOf", []):
        if option.get("type") != "null":
            return option  # type: ignore[no-any-return]
    return schema


def _ref(name: str) -> Schema:
    return {"$ref": _REF.format(model=name)}


def _json_content(model: type[BaseModel], *examples: tuple[str, object]) -> Schema:
    content: Schema = {"schema": _ref(model.__name__)}
    if examples:
        content["examples"] = {name: {"value": value} for name, value in examples}
    return {_JSON: content}


def _model_example(model: type[BaseModel]) -> object:
    """The first of the model's own examples (every documented model has one)."""
    extra = model.model_config.get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    if not isinstance(examples, list) or not examples:
        raise TypeError(f"{model.__name__} declares no examples")
    return examples[0]


# --- Headers and shared responses -------------------------------------------------------------

_HEADERS: dict[str, Schema] = {
    "Location": {
        "description": "Absolute URL of the send's status route.",
        "schema": {"type": "string", "format": "uri"},
    },
    "RetryAfter": {
        "description": "Seconds to wait before asking again.",
        "schema": {"type": "integer", "minimum": 1},
    },
    "PreferenceApplied": {
        "description": "The `wait` preference that was honoured, e.g. `wait=30`.",
        "schema": {"type": "string"},
    },
    "ContentLocation": {
        "description": "Absolute URL of the send's status route.",
        "schema": {"type": "string", "format": "uri"},
    },
}


def _header(name: str) -> Schema:
    return {"$ref": f"#/components/headers/{name}"}


ErrorName = Literal[
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "StateConflict",
    "UnprocessableContent",
    "TooManyRequests",
    "ServiceUnavailable",
    "InternalError",
]

_ERRORS: dict[ErrorName, tuple[HTTPStatus, str, str, str]] = {
    "BadRequest": (
        HTTPStatus.BAD_REQUEST,
        "The body is not a JSON object, or a field breaks a rule: the message names each.",
        "Validation failed: senderEmail must be a valid email address",
        "/api/v1/emails/aws-send",
    ),
    "Unauthorized": (
        HTTPStatus.UNAUTHORIZED,
        "No function key, or a wrong one. In Azure the Functions host answers this itself, "
        "before the app runs, and its body may be empty.",
        "A valid function key is required (x-functions-key header or code query parameter).",
        "/api/v1/emails/aws-send",
    ),
    "Forbidden": (
        HTTPStatus.FORBIDDEN,
        "`senderEmail` is not an allowed company sender, or SES has neither the address nor "
        "its domain verified for sending (preflight). Nothing was started.",
        "senderEmail someone@elsewhere.example.com is not an allowed sender for aws-send; "
        "use a verified company address",
        "/api/v1/emails/aws-send",
    ),
    "NotFound": (
        HTTPStatus.NOT_FOUND,
        "No send with this id exists.",
        "No send with id '0f1c2d3e4f5a46b7a8b9c0d1e2f3a4b5' exists.",
        "/api/v1/emails/0f1c2d3e4f5a46b7a8b9c0d1e2f3a4b5",
    ),
    "Conflict": (
        HTTPStatus.CONFLICT,
        "The first request with this `Idempotency-Key` is still being processed (its send has "
        "not started yet). Send the same request again after `Retry-After`: it then gets that "
        "send's answer.",
        "A request with this Idempotency-Key is still being processed; send it again in a "
        "moment to get its answer",
        "/api/v1/emails/aws-send",
    ),
    "StateConflict": (
        HTTPStatus.CONFLICT,
        "The send's state does not allow this: it has ended (resume, pause or cancel a finished "
        "send), it was canceled (pause or resume it), or the account guard paused it (a "
        "caller's resume). Nothing changed.",
        "The send has already ended; there is nothing to resume.",
        "/api/v1/emails/0f1c2d3e4f5a46b7a8b9c0d1e2f3a4b5/resume",
    ),
    "UnprocessableContent": (
        HTTPStatus.UNPROCESSABLE_ENTITY,
        "This `Idempotency-Key` was already used for a different request to this route. "
        "Nothing was started.",
        "This Idempotency-Key was already used for a different aws-send request; use a new "
        "key for a new request",
        "/api/v1/emails/aws-send",
    ),
    "TooManyRequests": (
        HTTPStatus.TOO_MANY_REQUESTS,
        "The send needs more messages than are left in the SES 24-hour quota (counting what "
        "sends still running have reserved), or the internal batch queue is saturated (more "
        "than `SENDMAIL_MAX_QUEUED_BATCHES` batches wait in the task hub's work-item queue). "
        "Nothing was started; `Retry-After` says when to try again.",
        "This send needs 2 messages but only 1 are left in the SES 24-hour quota; retry later",
        "/api/v1/emails/aws-send",
    ),
    "ServiceUnavailable": (
        HTTPStatus.SERVICE_UNAVAILABLE,
        "The account guard tripped (the service's own bounce or complaint rate, or SES's "
        "enforcement status): bulk aws-sends — `marketing`, or more than "
        "`SENDMAIL_GUARD_BULK_RECIPIENTS` recipients — are refused until an operator resets it; "
        "small transactional sends still go out. Nothing was started; `Retry-After` is an hour.",
        "Bulk sending is paused by the account guard: bounce rate 6.00% over the last 24 hours "
        "(30 of 500) reached 4.00%. Small transactional sends still go out; an operator resumes "
        "bulk sending with POST /api/v1/account/guard/reset after investigating.",
        "/api/v1/emails/aws-send",
    ),
    "InternalError": (
        HTTPStatus.INTERNAL_SERVER_ERROR,
        "Something unexpected happened: it is logged with its details, the caller sees a "
        "generic message.",
        "An unexpected error occurred. It has been logged; please try again later.",
        "/api/v1/emails/aws-send",
    ),
}


def _error_responses() -> dict[str, Schema]:
    responses: dict[str, Schema] = {}
    for name, (status, description, message, path) in _ERRORS.items():
        example = envelope(status, message, path, now=_EXAMPLE_TIME)
        response: Schema = {
            "description": description,
            "content": _json_content(api_models.ErrorEnvelope, (name, example)),
        }
        if status in (HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE) or (
            name == "Conflict"
        ):
            response["headers"] = {"Retry-After": _header("RetryAfter")}
        responses[name] = response
    return responses


def _error(name: ErrorName) -> Schema:
    return {"$ref": f"#/components/responses/{name}"}


# --- Operations -------------------------------------------------------------------------------

_PREFER: Schema = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "description": (
        "`wait=N` (RFC 7240): wait up to N seconds for the send to finish and answer like v1, "
        f"`200` with the Message-IDs. N is capped at {MAX_WAIT_SECONDS}. If the send is still "
        "running after N seconds the answer is the usual `202`."
    ),
    "schema": {"type": "string"},
    "example": "wait=30",
}


_IDEMPOTENCY_KEY: Schema = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Makes the request safe to retry (IETF draft *The Idempotency-Key HTTP Header "
        "Field*): the same key with the same request answers the same send — the same `id`, "
        "`Location` and `202` (or the `200` that `Prefer: wait` gives once it finished) — and "
        "nothing is sent again; the same key with another request is `422`; while the first "
        "request with the key is still starting its send, `409`. Keys are per route, kept at "
        "least 24 hours, 1 to 255 printable ASCII characters (an RFC 8941 string: quotes "
        "optional). The password is not part of what is compared."
    ),
    # No example: Swagger UI would fill it in, and a second "Try it out" with another body would
    # then meet its own earlier request (422).
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
}


def _send_responses(*errors: ErrorName) -> dict[str, Schema]:
    return {
        "200": {
            "description": (
                "Only with `Prefer: wait=N`: the send finished within N seconds and sent at "
                "least one message. v1's synchronous answer, plus the send's `id` and its "
                "`failures`."
            ),
            "headers": {
                "Preference-Applied": _header("PreferenceApplied"),
                "Content-Location": _header("ContentLocation"),
            },
            "content": _json_content(api_models.SendResult),
        },
        "202": {
            "description": "The send started. Poll `Location` (the status route).",
            "headers": {"Location": _header("Location"), "Retry-After": _header("RetryAfter")},
            "content": _json_content(api_models.Accepted),
        },
        **{str(_ERRORS[name][0].value): _error(name) for name in errors},
        "500": {
            "description": (
                "Something unexpected happened (logged; the caller sees a generic message). "
                "With `Prefer: wait`, also a send that ended as Failed, Terminated or Canceled "
                "within N seconds, or that finished without sending to anyone: `Location` then "
                "points at its status, which lists every recipient's failure."
            ),
            "headers": {"Location": _header("Location")},
            "content": _json_content(api_models.ErrorEnvelope),
        },
    }


def _send_body(model: type[BaseModel], description: str) -> Schema:
    return {
        "required": True,
        "description": description,
        "content": _json_content(model, ("default", _model_example(model))),
    }


def _aws_send() -> Schema:
    return {
        "operationId": "aws_send",
        "tags": ["emails"],
        "summary": "Send company mail through AWS SES",
        "description": (
            "Validates the request, checks that the sender is allowed (403) and that the SES "
            "24-hour quota has room for every recipient (429) — both before anything starts — "
            "then starts the send: one message per recipient."
        ),
        "parameters": [_PREFER, _IDEMPOTENCY_KEY],
        "requestBody": _send_body(AwsEmailRequest, "The mail and its recipients."),
        "responses": _send_responses(
            "BadRequest",
            "Unauthorized",
            "Forbidden",
            "Conflict",
            "UnprocessableContent",
            "TooManyRequests",
            "ServiceUnavailable",
        ),
    }


def _user_send() -> Schema:
    return {
        "operationId": "user_send",
        "tags": ["emails"],
        "summary": "Send mail through the user's own SMTP account",
        "description": (
            "Sends through the provider's submission server (from the service's registry, never "
            "from the request), logging in as `senderEmail` with `password`. The password is "
            "sealed at once and never stored or logged in plain text."
        ),
        "parameters": [_PREFER, _IDEMPOTENCY_KEY],
        "requestBody": _send_body(
            UserEmailRequest, "The provider, the account, the mail and its recipients."
        ),
        "responses": {
            **_send_responses(
                "BadRequest", "Unauthorized", "Conflict", "UnprocessableContent", "TooManyRequests"
            ),
            "403": {
                "description": (
                    "Only with `Prefer: wait=N`: the send finished and the provider's SMTP "
                    "server refused the login (`SMTP_AUTH_FAILED` for every recipient): check "
                    "the app password. `Location` points at the send's status."
                ),
                "headers": {"Location": _header("Location")},
                "content": _json_content(api_models.ErrorEnvelope),
            },
        },
    }


def _email_status() -> Schema:
    return {
        "operationId": "email_status",
        "tags": ["emails"],
        "summary": "Where a send is",
        "description": (
            "`202` with `Retry-After` while the send is Pending or Running, `200` once it "
            "finished. Never returns the send's input."
        ),
        "parameters": [
            {
                "name": "id",
                "in": "path",
                "required": True,
                "description": "The send's id, from the `202` answer.",
                "schema": {"type": "string", "maxLength": 100},
            }
        ],
        "responses": {
            "200": {
                "description": "The send finished (Completed, Failed, Terminated or Canceled).",
                "content": _json_content(
                    api_models.EmailStatus,
                    ("completed", _model_example(api_models.EmailStatus)),
                ),
            },
            "202": {
                "description": "The send is still running; ask again after `Retry-After`.",
                "headers": {"Retry-After": _header("RetryAfter")},
                "content": _json_content(api_models.EmailStatus),
            },
            "401": _error("Unauthorized"),
            "404": _error("NotFound"),
            "500": _error("InternalError"),
        },
    }


_CONTROL: dict[str, tuple[str, str]] = {
    "pause": (
        "Pause a send",
        "Nothing new is sent more than 2 seconds after the answer: messages already handed to "
        "SES or the SMTP server finish, the rest waits. The send's lanes wait without holding "
        "a worker, and its deadline does not run while it is paused. A scheduled send paused "
        "before its time starts paused. `state` becomes `paused`; `send.paused` is delivered "
        "to the webhooks.",
    ),
    "resume": (
        "Resume a paused send",
        "The send goes on from where it stopped: nobody is sent twice. A send the account "
        "guard paused is resumed only by an operator's guard reset (`409`). Resuming a running "
        "send changes nothing (`200`, `changed: false`) but wakes its lanes again. "
        "`send.resumed` is delivered to the webhooks.",
    ),
    "cancel": (
        "Cancel a send",
        "For good: nothing new is sent more than 2 seconds after the answer, and every "
        "recipient not sent ends `canceled` (code `CANCELED`); `sent + failed + canceled` is "
        "the total, and what counts as sent is exactly what SES or the SMTP server accepted. "
        "Works on scheduled, running and paused sends. `state` is `canceled` at once; the "
        "counts are final when the status route answers `200`, and `send.canceled` (with the "
        "counts) is delivered to the webhooks then.",
    ),
}


def _email_control(action: str) -> Schema:
    summary, description = _CONTROL[action]
    return {
        "operationId": f"email_{action}",
        "tags": ["emails"],
        "summary": summary,
        "description": description,
        "parameters": [_SEND_ID_PARAMETER],
        "responses": {
            "200": {
                "description": (
                    "Done, or the send already was as asked (a repeated call: `changed` is false)."
                ),
                "content": _json_content(
                    api_models.ControlResult, ("result", _model_example(api_models.ControlResult))
                ),
            },
            "401": _error("Unauthorized"),
            "404": _error("NotFound"),
            "409": _error("StateConflict"),
            "500": _error("InternalError"),
        },
    }


def _envelope(description: str) -> Schema:
    """An error response of one route, in the v1 envelope."""
    return {"description": description, "content": _json_content(api_models.ErrorEnvelope)}


def _ses_events() -> Schema:
    return {
        "operationId": "ses_events",
        "tags": ["events"],
        "summary": "SES events through SNS: the SNS subscription's endpoint",
        "description": (
            "Subscribe this URL, with the function key as `?code=`, to the SNS topic of the SES "
            "configuration set's event destination. Every message is verified as AWS documents "
            "(signature versions 1 and 2, the certificate only from "
            "`https://sns.<the topic's region>.amazonaws.com`, the topic in "
            "`SENDMAIL_SNS_TOPIC_ARNS`); a SubscriptionConfirmation is confirmed. A notification's "
            "SES events (Delivery, Bounce, Complaint, Reject, DeliveryDelay) are recorded for "
            "their send — found by the message tag `sendmail-send-id` — and a hard bounce or a "
            "complaint puts the address on the suppression list. Idempotent on the SNS "
            "`MessageId`."
        ),
        "requestBody": {
            "required": True,
            "description": "The SNS message, as SNS posts it.",
            "content": _json_content(
                api_models.SnsMessage, ("default", _model_example(api_models.SnsMessage))
            ),
        },
        "responses": {
            "200": {
                "description": "Verified and handled (or already handled: a redelivery).",
                "content": _json_content(api_models.EventsReceipt),
            },
            "400": _envelope("The body is not an SNS message (not a JSON object)."),
            "401": _error("Unauthorized"),
            "403": _envelope(
                "The message failed verification (unknown type or topic, a missing field, a "
                "certificate URL not on the topic region's SNS host, a bad signature). "
                "Nothing was recorded."
            ),
            "500": _envelope(
                "Something failed after the message was verified (logged); SNS delivers it "
                "again, and what was already recorded is not recorded twice."
            ),
        },
    }


_SEND_ID_PARAMETER: Schema = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The send's id.",
    "schema": {"type": "string", "maxLength": 100},
}
_CURSOR_PARAMETER: Schema = {
    "name": "cursor",
    "in": "query",
    "required": False,
    "description": "The previous page's `nextCursor`.",
    "schema": {"type": "string"},
}


def _limit_parameter(what: str) -> Schema:
    return {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": f"{what} per page (default 100).",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
    }


def _email_recipients() -> Schema:
    return {
        "operationId": "email_recipients",
        "tags": ["emails"],
        "summary": "Every recipient of a send and its outcome, paged",
        "description": (
            "The send's recipients in the order the request listed them, each `sent` (with its "
            "Message-ID), `failed` (code and message), `canceled` or `pending`, a page at a time "
            "(`nextCursor`). Any size of send, the same cost per page; the status route links "
            "here (`recipientsUrl`)."
        ),
        "parameters": [
            _SEND_ID_PARAMETER,
            _limit_parameter("Recipients"),
            _CURSOR_PARAMETER,
            {
                "name": "status",
                "in": "query",
                "required": False,
                "description": (
                    "Only recipients with this status. A filtered page looks at up to ten "
                    "pages' worth of recipients: it may hold fewer than `limit` and still have "
                    "a `nextCursor`."
                ),
                "schema": {"type": "string", "enum": ["sent", "failed", "canceled", "pending"]},
            },
        ],
        "responses": {
            "200": {
                "description": "A page of the send's recipients.",
                "content": _json_content(
                    api_models.RecipientsPage, ("page", _model_example(api_models.RecipientsPage))
                ),
            },
            "400": _envelope("`limit`, `status` or `cursor` is not valid."),
            "401": _error("Unauthorized"),
            "404": _error("NotFound"),
            "500": _error("InternalError"),
        },
    }


def _email_events() -> Schema:
    return {
        "operationId": "email_events",
        "tags": ["events"],
        "summary": "A send's events, per recipient",
        "description": (
            "The SES events of an SES send, oldest first, a page at a time (`nextCursor`). "
            "They arrive through SNS seconds to days after sending; the status route counts them "
            "(`delivery`). An SMTP send has none."
        ),
        "parameters": [
            _SEND_ID_PARAMETER,
            _limit_parameter("Events"),
            _CURSOR_PARAMETER,
            {
                "name": "type",
                "in": "query",
                "required": False,
                "description": "Only events of this type.",
                "schema": {
                    "type": "string",
                    "enum": ["Delivery", "Bounce", "Complaint", "Reject", "DeliveryDelay"],
                },
            },
        ],
        "responses": {
            "200": {
                "description": "A page of the send's events.",
                "content": _json_content(
                    api_models.SendEvents, ("page", _model_example(api_models.SendEvents))
                ),
            },
            "400": _envelope("`limit`, `type` or `cursor` is not valid."),
            "401": _error("Unauthorized"),
            "404": _error("NotFound"),
            "500": _error("InternalError"),
        },
    }


_EMAIL_PARAMETER: Schema = {
    "name": "email",
    "in": "path",
    "required": True,
    "description": "The address (compared trimmed and lower-case).",
    "schema": {"type": "string", "maxLength": MAX_ADDRESS_CHARS, "pattern": ADDRESS_PATTERN},
}


def _suppression_get() -> Schema:
    return {
        "operationId": "suppression_get",
        "tags": ["suppressions"],
        "summary": "Is an address suppressed?",
        "description": (
            "An address goes on the suppression list after a permanent (hard) bounce or a "
            "complaint — aws-send then skips it and reports it as `SUPPRESSED` — or when the "
            "recipient unsubscribes (one-click, `POST /v1/unsubscribe/{token}`): marketing "
            "sends then skip it as `UNSUBSCRIBED`. An address can carry both: `entries` lists "
            "every reason, the bounce or complaint first; the top-level fields repeat the first "
            "entry."
        ),
        "parameters": [_EMAIL_PARAMETER],
        "responses": {
            "200": {
                "description": "The address is on the list.",
                "content": _json_content(
                    api_models.Suppression, ("entry", _model_example(api_models.Suppression))
                ),
            },
            "400": _envelope("`email` is not an email address."),
            "401": _error("Unauthorized"),
            "404": _envelope("The address is not on the suppression list."),
            "500": _error("InternalError"),
        },
    }


def _suppression_delete() -> Schema:
    return {
        "operationId": "suppression_delete",
        "tags": ["suppressions"],
        "summary": "Take an address off the suppression list",
        "description": (
            "For an operator who has confirmed the address is good again: aws-send mails it "
            "from the next batch on. Without `reason`, the bounce or complaint is removed and "
            "the recipient's unsubscribe stays (consent is the person's); `reason=UNSUBSCRIBED` "
            "removes the unsubscribe, when the person asked for mail again."
        ),
        "parameters": [
            _EMAIL_PARAMETER,
            {
                "name": "reason",
                "in": "query",
                "required": False,
                "description": "Remove only the entry with this reason.",
                "schema": {"type": "string", "enum": ["BOUNCE", "COMPLAINT", "UNSUBSCRIBED"]},
            },
        ],
        "responses": {
            "204": {"description": "Removed."},
            "400": _envelope("`email` is not an email address, or `reason` is not a reason."),
            "401": _error("Unauthorized"),
            "404": _envelope(
                "The address is not on the suppression list (with this `reason`, if one is given)."
            ),
            "500": _error("InternalError"),
        },
    }


def _account_get() -> Schema:
    return {
        "operationId": "account_get",
        "tags": ["account"],
        "summary": "The SES account, the service's own rates, the account guard",
        "description": (
            "Sandbox or production, quota and rate, SES's enforcement status (`PROBATION` or "
            "`SHUTDOWN` trips the guard at once), the bounce and complaint rates the service "
            "measured over the guard's window, and the guard. While the guard is tripped, "
            "reading this also pauses any bulk send it has not paused yet."
        ),
        "responses": {
            "200": {
                "description": "The account.",
                "content": _json_content(
                    api_models.AccountStatus, ("ok", _model_example(api_models.AccountStatus))
                ),
            },
            "401": _error("Unauthorized"),
            "500": _error("InternalError"),
        },
    }


def _account_guard_reset() -> Schema:
    return {
        "operationId": "account_guard_reset",
        "tags": ["account"],
        "summary": "Let bulk sending go on after the guard tripped",
        "description": (
            "For an operator who has looked at what bounced or complained: the guard is `ok` "
            "again, bulk aws-sends are admitted, and every send the guard paused resumes. A "
            "send a caller paused stays paused."
        ),
        "responses": {
            "200": {
                "description": "The guard is ok.",
                "content": _json_content(
                    api_models.GuardReset, ("reset", _model_example(api_models.GuardReset))
                ),
            },
            "401": _error("Unauthorized"),
            "500": _error("InternalError"),
        },
    }


_HTML = "text/html"
_TOKEN_PARAMETER: Schema = {
    "name": "token",
    "in": "path",
    "required": True,
    "description": (
        "The token of the message's `List-Unsubscribe` link: the recipient and the send, "
        "encrypted and authenticated (no address or id in clear)."
    ),
    "schema": {"type": "string", "maxLength": 1000, "pattern": "^u1[A-Za-z0-9_-]+$"},
}
_PAGE_HEADERS: dict[str, Schema] = {
    "Content-Security-Policy": {
        "description": "Nothing loads but the page's own style; the form posts to this app only.",
        "schema": {"type": "string"},
    },
    "Referrer-Policy": {"description": "`no-referrer`.", "schema": {"type": "string"}},
    "X-Robots-Tag": {"description": "`noindex, nofollow`.", "schema": {"type": "string"}},
}


def _page(description: str) -> Schema:
    return {
        "description": description,
        "headers": _PAGE_HEADERS,
        "content": {_HTML: {"schema": {"type": "string"}}},
    }


def _unsubscribe_not_found() -> Schema:
    return {
        "description": (
            "The token is not one of this service's (malformed, altered, forged, or made under a "
            "key no longer configured). Nothing was recorded. A page when the request prefers "
            "`text/html` (a browser), the v1 envelope otherwise."
        ),
        "content": {
            **_json_content(api_models.ErrorEnvelope),
            _HTML: {"schema": {"type": "string"}},
        },
    }


def _unsubscribe_error() -> Schema:
    return _envelope(
        "`SENDMAIL_UNSUBSCRIBE_KEYS` is not set or not valid (no token can be read: logged "
        "for the operator), the suppression list could not be written, or something else "
        "unexpected happened."
    )


def _unsubscribe_page() -> Schema:
    return {
        "operationId": "unsubscribe_page",
        "tags": ["unsubscribe"],
        "summary": "The unsubscribe page (never unsubscribes by itself)",
        "description": (
            "Anonymous. A small page, in Korean and English, showing the address masked "
            "(`k***@example.com`) and a button that posts `List-Unsubscribe=One-Click` to the "
            "same URL. Opening it records nothing: link scanners fetch every link in a message."
        ),
        "security": [],
        "parameters": [_TOKEN_PARAMETER],
        "responses": {
            "200": _page("The page with the button."),
            "404": _unsubscribe_not_found(),
            "500": _unsubscribe_error(),
        },
    }


def _unsubscribe() -> Schema:
    return {
        "operationId": "unsubscribe",
        "tags": ["unsubscribe"],
        "summary": "Unsubscribe: the one click (RFC 8058)",
        "description": (
            "Anonymous: what a mail client posts for `List-Unsubscribe-Post: "
            "List-Unsubscribe=One-Click`, and what the page's button posts. The address the "
            "token names goes on the suppression list with reason `UNSUBSCRIBED`: later "
            "marketing sends skip it (`UNSUBSCRIBED`); transactional mail still reaches it. "
            "Repeating it is harmless (200 again). The token alone is the authority: the body is "
            "not checked, so a client that posts something other than RFC 8058's form is still "
            "honoured."
        ),
        "security": [],
        "parameters": [_TOKEN_PARAMETER],
        "requestBody": {
            "required": False,
            "description": "`List-Unsubscribe=One-Click`, as RFC 8058 has clients send it.",
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "List-Unsubscribe": {"type": "string", "const": "One-Click"}
                        },
                    },
                    "example": {"List-Unsubscribe": "One-Click"},
                }
            },
        },
        "responses": {
            "200": {
                "description": (
                    "Unsubscribed (now, or before). A short confirmation page instead of JSON "
                    "when the request prefers `text/html` (the page's button)."
                ),
                "content": {
                    **_json_content(
                        api_models.UnsubscribeReceipt,
                        ("default", _model_example(api_models.UnsubscribeReceipt)),
                    ),
                    _HTML: {"schema": {"type": "string"}},
                },
            },
            "404": _unsubscribe_not_found(),
            "500": _unsubscribe_error(),
        },
    }


def _health() -> Schema:
    return {
        "operationId": "health",
        "tags": ["health"],
        "summary": "Liveness",
        "description": "Anonymous. Touches no dependency.",
        "security": [],
        "responses": {
            "200": {"description": "The app is up.", "content": _json_content(api_models.Health)}
        },
    }


_DESCRIPTION = """\
Mail sending as a service, replacing the synchronous v1 service with the same request fields,
error envelope and status codes.

Sending is asynchronous: a send route answers `202 Accepted` with `Location` (the status route)
and `Retry-After`; poll the status route until it answers `200`. A caller that wants v1's
synchronous answer sends `Prefer: wait=N` (N ≤ 60).

Every recipient gets its own message (nobody sees another recipient). `messageIds` come back in
recipient order, one per recipient sent; every recipient not sent is in `failures` with a code.

Send and status routes need a function key: the `x-functions-key` header or the `code` query
parameter. Every error the app answers is the v1 envelope `{timestamp, status, error, message,
path}` (a missing or wrong key is refused by the Functions host itself; see 401).
"""
