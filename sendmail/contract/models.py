"""Request models of the v1 API and their validation.

The field names are v1's (camelCase). Unknown fields are ignored, as v1 did. Every rule failure
becomes a :class:`~sendmail.contract.errors.ValidationFailed` whose message names the field and the
problem. Limits that come from settings (subject and body size, recipient count) are passed in as
:class:`Limits` through pydantic's validation context.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from sendmail.contract.addresses import cache_domain_checks, normalize_address
from sendmail.contract.errors import ValidationFailed
from sendmail.contract.text import has_line_break
from sendmail.contract.vocabulary import Provider
from sendmail.platform import jsontext
from sendmail.platform.settings import Settings

#: v1's cap on user-send recipients (providers accept about 100 recipients per message).
USER_SEND_MAX_RECIPIENTS = 100
_MAX_REPORTED_PROBLEMS = 10


#: The largest request body the Functions platform accepts (the HTTP trigger's documented
#: request length limit, 100 MB = 104,857,600 bytes); a million addresses take about 30 MB.
PLATFORM_MAX_REQUEST_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    max_recipients: int
    max_subject_chars: int
    max_body_bytes: int

    @property
    def max_entries(self) -> int:
        """The longest ``recipientEmails`` array read at all, duplicates included: twice the
        recipient cap. Longer is refused as soon as the body is decoded, before any address is
        looked at (one request of the platform's maximum size must not hold a worker for long).
        """
        return 2 * self.max_recipients

    @property
    def max_commas(self) -> int:
        """The most commas a valid body can hold: one per entry, one per character of the
        subject and the body (each could be all commas), and room for the other fields (a
        password, fields this service ignores) and the separators between them."""
        return self.max_entries + self.max_body_bytes + self.max_subject_chars + 4096

    @property
    def max_request_bytes(self) -> int:
        """The largest body worth parsing: every field at its limit, generously encoded.

        Text may be JSON-escaped (up to 6 bytes a character for the body and subject); valid
        addresses are ASCII and at most 254 characters. Anything larger is refused before
        parsing, so an oversized request costs no parsing or validation time.
        """
        text = 6 * (self.max_body_bytes + 4 * self.max_subject_chars)
        return min(PLATFORM_MAX_REQUEST_BYTES, text + 300 * self.max_recipients + 64 * 1024)

    @classmethod
    def for_aws(cls, settings: Settings) -> Limits:
        return cls(
            settings.SENDMAIL_SES_MAX_RECIPIENTS,
            settings.SENDMAIL_MAX_SUBJECT_CHARS,
            settings.SENDMAIL_MAX_BODY_BYTES,
        )

    @classmethod
    def for_user(cls, settings: Settings) -> Limits:
        return cls(
            USER_SEND_MAX_RECIPIENTS,
            settings.SENDMAIL_MAX_SUBJECT_CHARS,
            settings.SENDMAIL_MAX_BODY_BYTES,
        )


def _limits(info: ValidationInfo) -> Limits | None:
    context = info.context
    if isinstance(context, dict):
        limits = context.get("limits")
        if isinstance(limits, Limits):
            return limits
    return None


cache_domain_checks()  # each distinct domain checked once per process (addresses.py)


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("sendmail", message)


def _is_utf8_text(value: str) -> bool:
    """False for a string with an unpaired surrogate: JSON allows one, UTF-8 does not."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_valid_address(value: str) -> bool:
    try:
        check_address(value)
    except PydanticCustomError:
        return False
    return True


def check_address(value: str) -> str:
    """A syntactically valid address (no DNS), with no line breaks; returned as given."""
    if has_line_break(value):
        raise _fail("must not contain line breaks")
    if value != value.strip() or not value:
        raise _fail("must be a valid email address")
    try:
        validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as e:
        raise _fail("must be a valid email address") from e
    return value


class AwsEmailRequest(BaseModel):
    """``POST /api/v1/emails/aws-send``: company mail through AWS SES."""

    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "senderEmail": "se@aifactory.page",
                    "recipientEmails": ["user1@example.com", "user2@example.com"],
                    "subject": "Welcome!",
                    "body": "Thank you for signing up.",
                }
            ]
        },
    )

    senderEmail: StrictStr = Field(
        description="An allowed, SES-verified sender address (or an address at a verified domain).",
        examples=["se@aifactory.page"],
    )
    recipientEmails: list[StrictStr] = Field(
        min_length=1,
        description=(
            "Recipients. Each gets its own message. Duplicates (case-insensitive) are sent once."
        ),
    )
    subject: StrictStr = Field(description="Subject, plain text, no line breaks.", min_length=1)
    body: StrictStr = Field(description="Body, plain text (UTF-8).", min_length=1)

    @field_validator("senderEmail")
    @classmethod
    def _sender(cls, value: str) -> str:
        return check_address(value)

    @field_validator("recipientEmails")
    @classmethod
    def _recipients(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if not value:
            raise _fail("must contain at least one address")
        limits = _limits(info)
        distinct = len({address.casefold() for address in value})
        if limits and distinct > limits.max_recipients:
            # Counted before the (costlier) address checks: an oversized list is refused cheaply.
            raise _fail(
                f"must contain at most {limits.max_recipients} distinct addresses (got {distinct})"
            )
        # Each distinct string is checked once (a list of one address a million times costs one
        # check), and the problems are reported in list order, counted per entry.
        invalid: dict[str, str] = {}
        unique: dict[str, str] = {}
        for address in dict.fromkeys(value):
            try:
                check_address(address)
            except PydanticCustomError as e:
                invalid[address] = e.message()
                continue
            unique.setdefault(normalize_address(address), address)  # bücher.de = xn--bcher-kva.de
        if invalid:
            problems = [(i, invalid[a]) for i, a in enumerate(value) if a in invalid]
            index, message = problems[0]
            more = f" ({len(problems) - 1} more invalid)" if len(problems) > 1 else ""
            raise _fail(f"[{index}] {message}{more}")
        if limits and len(unique) > limits.max_recipients:  # (casefold merged straße, strasse)
            raise _fail(
                f"must contain at most {limits.max_recipients} distinct addresses "
                f"(got {len(unique)})"
            )
        return list(unique.values())

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise _fail("must not be blank")
        # Every break the mail builder refuses (not only CR and LF: U+2028, U+0085, ...), or the
        # send would be accepted here and then fail in the SMTP activity on every retry.
        if has_line_break(value):
            raise _fail("must not contain line breaks")
        limits = _limits(info)
        if limits and len(value) > limits.max_subject_chars:
            raise _fail(f"must be at most {limits.max_subject_chars} characters")
        return value

    @field_validator("body")
    @classmethod
    def _body(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise _fail("must not be blank")
        limits = _limits(info)
        if limits and len(value.encode("utf-8", "surrogatepass")) > limits.max_body_bytes:
            raise _fail(f"must be at most {limits.max_body_bytes} bytes in UTF-8")
        return value


class UserEmailRequest(AwsEmailRequest):
    """``POST /api/v1/emails/user-send``: mail through the user's own SMTP account."""

    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "provider": "GMAIL",
                    "senderEmail": "your@gmail.com",
                    "password": "appPassword",
                    "recipientEmails": ["friend@example.com"],
                    "subject": "Hi",
                    "body": "Long time no see!",
                }
            ]
        },
    )

    provider: Provider = Field(description="The user's mail provider.")
    password: SecretStr = Field(
        min_length=1,
        description="App password / SMTP password of senderEmail. Never stored in plain text.",
        json_schema_extra={"format": "password", "writeOnly": True},
    )
    senderEmail: StrictStr = Field(
        description="The SMTP login account, which is also the sender.",
        examples=["your@gmail.com"],
    )
    recipientEmails: list[StrictStr] = Field(
        min_length=1,
        max_length=None,
        description=(
            f"At most {USER_SEND_MAX_RECIPIENTS} recipients. Each gets its own message. "
            "Duplicates (case-insensitive) are sent once."
        ),
    )

    @field_validator("password")
    @classmethod
    def _password(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        # StrictStr fields refuse an unpaired surrogate ("\ud800" in the JSON) themselves;
        # SecretStr does not, and the password must survive UTF-8 (sealing, SMTP AUTH).
        if not _is_utf8_text(secret):
            raise _fail("must be valid Unicode text")
        if not secret.strip():
            raise _fail("must not be blank")
        if "\r" in secret or "\n" in secret:
            raise _fail("must not contain line breaks")
        return value


M = TypeVar("M", bound=AwsEmailRequest)


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def _describe(error: Any) -> str:
    field = _field_path(tuple(error["loc"]))
    kind = error["type"]
    if kind == "missing":
        return f"{field} is required"
    if kind == "sendmail":
        message = str(error["msg"])
        return f"{field}{message}" if message.startswith("[") else f"{field} {message}"
    if kind in {"string_type", "string_sub_type"}:
        return f"{field} must be a string"
    if kind == "string_unicode":
        return f"{field} must be valid Unicode text"
    if kind == "list_type":
        return f"{field} must be an array of strings"
    if kind in {"too_short", "string_too_short"}:
        return f"{field} must not be empty"
    if kind == "enum":
        names = ", ".join(p.value for p in Provider)
        return f"{field} must be one of {names}"
    return f"{field} is invalid"


def decode_body(raw: bytes, limits: Limits) -> dict[str, Any]:
    """The request's JSON object, refused (:class:`ValidationFailed`) when it is too large, not
    JSON this service can read (deep nesting and huge numbers included), not an object, or when
    its ``recipientEmails`` holds more than :attr:`Limits.max_entries` entries. Costs one parse:
    nothing here looks at an address."""
    if len(raw) > limits.max_request_bytes:
        raise ValidationFailed(f"the request body must be at most {limits.max_request_bytes} bytes")
    # CPython's JSON parser holds the GIL for the whole parse: 100 MB of tiny entries would stall
    # every other request of the worker for seconds. A valid body has at most one comma per entry
    # and per character of its text fields (plus the few between fields): counting them is a
    # fast scan, and a body with more is refused before it is parsed.
    if raw.count(b",") > limits.max_commas:
        raise ValidationFailed(
            "the request body holds more values than a valid request can (recipientEmails: at "
            f"most {limits.max_entries} entries, duplicates included)"
        )
    try:
        data = jsontext.loads(raw) if raw.strip() else None
    except jsontext.MalformedJson as e:
        raise ValidationFailed("the request body must be valid UTF-8 JSON") from e
    if not isinstance(data, dict):
        raise ValidationFailed("the request body must be a JSON object")
    entries = data.get("recipientEmails")
    if isinstance(entries, list) and len(entries) > limits.max_entries:
        raise ValidationFailed(
            f"recipientEmails must contain at most {limits.max_entries} entries, duplicates "
            f"included (got {len(entries)})"
        )
    return data


def parse_request(
    model: type[M],
    raw: bytes,
    limits: Limits,
    *,
    admit_sender: Callable[[str], None] | None = None,
) -> M:
    """Decode a JSON body and validate it; raise :class:`ValidationFailed` with clear messages.

    The cheap refusals come first: size, JSON, the number of entries (:func:`decode_body`), then
    ``admit_sender`` with the sender's address when that address is valid (it raises, e.g. 403
    for a sender not allowed), and only then the per-address validation. CPU-bound: run it on a
    worker thread, never on the event loop.
    """
    data = decode_body(raw, limits)
    sender = data.get("senderEmail")
    if admit_sender is not None and isinstance(sender, str) and _is_valid_address(sender):
        admit_sender(sender)
    try:
        return model.model_validate(data, context={"limits": limits})
    except ValidationError as e:
        problems = [_describe(err) for err in e.errors(include_url=False, include_input=False)]
        problems = list(dict.fromkeys(problems))
        if len(problems) > _MAX_REPORTED_PROBLEMS:
            extra = len(problems) - _MAX_REPORTED_PROBLEMS
            problems = [*problems[:_MAX_REPORTED_PROBLEMS], f"and {extra} more"]
        raise ValidationFailed(problems) from None
