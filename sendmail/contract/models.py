"""Request models of the v1 API and their validation.

The field names are v1's (camelCase). Unknown fields are ignored, as v1 did. Every rule failure
becomes a :class:`~sendmail.contract.errors.ValidationFailed` whose message names the field and the
problem. Limits that come from settings (subject and body size, recipient count) are passed in as
:class:`Limits` through pydantic's validation context.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from sendmail.contract.addresses import cache_domain_checks, normalize_address
from sendmail.contract.errors import ValidationFailed
from sendmail.contract.templates import Template, TemplateError, compile_template
from sendmail.contract.text import has_line_break
from sendmail.contract.vocabulary import Category, Provider
from sendmail.platform import jsontext
from sendmail.platform.settings import Settings

#: v1's cap on user-send recipients (providers accept about 100 recipients per message).
USER_SEND_MAX_RECIPIENTS = 100
_MAX_REPORTED_PROBLEMS = 10


#: The largest request body the Functions platform accepts (the HTTP trigger's documented
#: request length limit, 100 MB = 104,857,600 bytes); a million addresses take about 30 MB.
PLATFORM_MAX_REQUEST_BYTES = 100 * 1024 * 1024

#: Personalisation: the most variables one recipient may carry, the longest value, and the
#: request bytes allowed per recipient for them (on top of the address).
MAX_VARIABLES = 50
MAX_VARIABLE_CHARS = 2000
VARIABLES_BYTES_PER_RECIPIENT = 1024
#: A variable's name: what the template language accepts (sendmail.contract.templates).
VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: Given by the service to marketing templates, never by a caller.
UNSUBSCRIBE_URL = "unsubscribe_url"
#: A ``scheduledAt`` this far in the past still means "now" (clocks differ); further is a 400.
SCHEDULE_PAST_TOLERANCE = timedelta(minutes=1)
#: A send's ``metadata``: the caller's own keys, echoed in the status route and its webhooks.
MAX_METADATA_KEYS = 10
MAX_METADATA_KEY_CHARS = 40
MAX_METADATA_VALUE_CHARS = 256


@dataclass(frozen=True, slots=True)
class Limits:
    max_recipients: int
    max_subject_chars: int
    max_body_bytes: int
    max_html_bytes: int = 102_400  # SENDMAIL_MAX_HTML_BYTES's default
    max_schedule_days: float = 30  # SENDMAIL_MAX_SCHEDULE_DAYS's default

    @property
    def max_entries(self) -> int:
        """The longest ``recipientEmails`` array read at all, duplicates included: twice the
        recipient cap. Longer is refused as soon as the body is decoded, before any address is
        looked at (one request of the platform's maximum size must not hold a worker for long).
        """
        return 2 * self.max_recipients

    @property
    def max_commas(self) -> int:
        """The most commas a valid body with ``recipientEmails`` can hold: one per entry, one
        per character of the subject, the body and the html (each could be all commas), and
        room for the other fields (a password, fields this service ignores) and the separators
        between them."""
        text = self.max_body_bytes + self.max_html_bytes + self.max_subject_chars
        return self.max_entries + text + 4096

    @property
    def max_commas_personalised(self) -> int:
        """The same for a body with ``recipients``: each entry may also hold
        :data:`MAX_VARIABLES` values. A body this large is parsed an element at a time
        (:func:`sendmail.platform.jsontext.loads`), so it does not stall the worker's loop."""
        return self.max_commas + self.max_entries * (1 + MAX_VARIABLES)

    @property
    def max_request_bytes(self) -> int:
        """The largest body worth parsing: every field at its limit, generously encoded.

        Text may be JSON-escaped (up to 6 bytes a character for the body and subject); valid
        addresses are ASCII and at most 254 characters. Anything larger is refused before
        parsing, so an oversized request costs no parsing or validation time.
        """
        text = 6 * (self.max_body_bytes + self.max_html_bytes + 4 * self.max_subject_chars)
        per_recipient = 300 + VARIABLES_BYTES_PER_RECIPIENT
        return min(PLATFORM_MAX_REQUEST_BYTES, text + per_recipient * self.max_recipients + 65536)

    @classmethod
    def for_aws(cls, settings: Settings) -> Limits:
        return cls(
            settings.SENDMAIL_SES_MAX_RECIPIENTS,
            settings.SENDMAIL_MAX_SUBJECT_CHARS,
            settings.SENDMAIL_MAX_BODY_BYTES,
            settings.SENDMAIL_MAX_HTML_BYTES,
            settings.SENDMAIL_MAX_SCHEDULE_DAYS,
        )

    @classmethod
    def for_user(cls, settings: Settings) -> Limits:
        return cls(
            USER_SEND_MAX_RECIPIENTS,
            settings.SENDMAIL_MAX_SUBJECT_CHARS,
            settings.SENDMAIL_MAX_BODY_BYTES,
            settings.SENDMAIL_MAX_HTML_BYTES,
            settings.SENDMAIL_MAX_SCHEDULE_DAYS,
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


def _has_control(value: str) -> bool:
    """Whether ``value`` holds a control character (C0, DEL, C1) or any line break."""
    return has_line_break(value) or any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value)


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


def _distinct_addresses(value: Sequence[str], limits: Limits | None) -> list[int]:
    """Positions in ``value`` of the addresses kept: valid, each distinct address once (the
    first spelling), in order. Raises the field's error: too many, or which are invalid."""
    if not value:
        raise _fail("must contain at least one address")
    distinct = len({address.casefold() for address in value})
    if limits and distinct > limits.max_recipients:
        # Counted before the (costlier) address checks: an oversized list is refused cheaply.
        raise _fail(
            f"must contain at most {limits.max_recipients} distinct addresses (got {distinct})"
        )
    # Each distinct string is checked once (a list of one address a million times costs one
    # check), and the problems are reported in list order, counted per entry.
    invalid: dict[str, str] = {}
    checked: set[str] = set()
    unique: dict[str, int] = {}
    for position, address in enumerate(value):
        if address in checked or address in invalid:
            continue
        checked.add(address)
        try:
            check_address(address)
        except PydanticCustomError as e:
            invalid[address] = e.message()
            continue
        unique.setdefault(normalize_address(address), position)  # bücher.de = xn--bcher-kva.de
    if invalid:
        problems = [(i, invalid[a]) for i, a in enumerate(value) if a in invalid]
        index, message = problems[0]
        more = f" ({len(problems) - 1} more invalid)" if len(problems) > 1 else ""
        raise _fail(f"[{index}] {message}{more}")
    if limits and len(unique) > limits.max_recipients:  # (casefold merged straße, strasse)
        raise _fail(
            f"must contain at most {limits.max_recipients} distinct addresses (got {len(unique)})"
        )
    return list(unique.values())


class Recipient(BaseModel):
    """One recipient of a personalised send and the values of its variables."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    email: StrictStr = Field(description="The recipient's address.")
    variables: dict[str, Any] = Field(
        default_factory=dict,
        json_schema_extra={"additionalProperties": {"type": ["string", "number"]}},
        description=(
            f"Values for the templates' variables (at most {MAX_VARIABLES}; names are letters, "
            f"digits and _, not starting with a digit; values at most {MAX_VARIABLE_CHARS} "
            "characters; numbers are written as JSON writes them). HTML-escaped in html, never "
            f"in subject or body. {UNSUBSCRIBE_URL!r} is the service's own."
        ),
    )

    @field_validator("variables")
    @classmethod
    def _variables(cls, value: dict[str, Any]) -> dict[str, str]:
        if len(value) > MAX_VARIABLES:
            raise _fail(f"must hold at most {MAX_VARIABLES} variables")
        out: dict[str, str] = {}
        for name, item in value.items():
            if not VARIABLE_NAME.fullmatch(name):
                raise _fail(
                    f"{name[:40]!r} is not a variable name (letters, digits and _, not starting "
                    "with a digit, at most 64 characters)"
                )
            if name == UNSUBSCRIBE_URL:
                raise _fail(f"{UNSUBSCRIBE_URL!r} is given by the service, not by a request")
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise _fail(f"{name}: a value must be a string or a number")
            text = item if isinstance(item, str) else json.dumps(item)
            if len(text) > MAX_VARIABLE_CHARS:
                raise _fail(f"{name}: a value must be at most {MAX_VARIABLE_CHARS} characters")
            if not _is_utf8_text(text):
                raise _fail(f"{name}: a value must be valid Unicode text")
            out[name] = text
        return out


@dataclass(frozen=True, slots=True)
class Templates:
    """A personalised request's subject, body and html, compiled (admission checked them)."""

    subject: Template
    body: Template
    html: Template | None

    def parts(self) -> list[tuple[str, Template]]:
        found = [("subject", self.subject), ("body", self.body)]
        return found + ([("html", self.html)] if self.html is not None else [])


class _SendRequest(BaseModel):
    """The fields both send routes share."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    senderEmail: StrictStr = Field(
        description="An allowed, SES-verified sender address (or an address at a verified domain).",
        examples=["se@aifactory.page"],
    )
    recipientEmails: list[StrictStr] | None = Field(
        default=None,
        min_length=1,
        description=(
            "Recipients. Each gets its own message. Duplicates (case-insensitive) are sent once. "
            "Exactly one of recipientEmails and recipients is given; with recipientEmails the "
            "subject, body and html are sent as they are (text that looks like a template "
            "included)."
        ),
    )
    recipients: list[Recipient] | None = Field(
        default=None,
        min_length=1,
        description=(
            "Personalised recipients, instead of recipientEmails: each with its own variables. "
            'subject, body and html are then templates: {{ name }} and {{ name | default("…") }}'
            ", nothing else. Same limits and duplicates rule as recipientEmails (the first entry "
            "of an address is kept)."
        ),
    )
    subject: StrictStr = Field(description="Subject, plain text, no line breaks.", min_length=1)
    body: StrictStr = Field(
        description="Body, plain text (UTF-8): the text part of every message.", min_length=1
    )
    html: StrictStr | None = Field(
        default=None,
        min_length=1,
        description=(
            "The HTML part (optional): with it every message is multipart/alternative, body as "
            "the text part and this as the HTML part."
        ),
    )

    metadata: dict[str, StrictStr] | None = Field(
        default=None,
        description=(
            f"The caller's own keys for this send (at most {MAX_METADATA_KEYS}; keys 1-"
            f"{MAX_METADATA_KEY_CHARS} characters, values strings of at most "
            f"{MAX_METADATA_VALUE_CHARS} characters, neither with control characters), echoed in "
            "the status route and in every webhook about the send. Never put secrets or "
            "recipients' data here: it is stored and shown as given."
        ),
        examples=[{"campaign": "2026-12-newsletter", "requestedBy": "crm-42"}],
    )

    scheduledAt: AwareDatetime | None = Field(
        default=None,
        description=(
            "When to send (RFC 3339 with an offset, e.g. 2026-12-24T09:00:00+09:00): at most "
            "SENDMAIL_MAX_SCHEDULE_DAYS ahead, not more than a minute in the past (a time "
            "already here sends now). The status route shows state 'scheduled' until then."
        ),
        examples=["2026-12-24T09:00:00+09:00"],
    )

    @field_validator("senderEmail")
    @classmethod
    def _sender(cls, value: str) -> str:
        return check_address(value)

    @field_validator("scheduledAt")
    @classmethod
    def _scheduled(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is None:
            return None
        when = value.astimezone(UTC)
        now = datetime.now(UTC)
        past_allowed = isinstance(info.context, dict) and info.context.get("past_schedule")
        if when < now - SCHEDULE_PAST_TOLERANCE and not past_allowed:
            raise _fail("must not be in the past")
        limits = _limits(info)
        days = limits.max_schedule_days if limits else 30
        if when > now + timedelta(days=days):
            raise _fail(f"must be at most {days:g} days ahead")
        return when

    @property
    def scheduled(self) -> bool:
        """Whether the send waits for its time (a ``scheduledAt`` now or just past: no)."""
        return self.scheduledAt is not None and self.scheduledAt > datetime.now(UTC)

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if len(value) > MAX_METADATA_KEYS:
            raise _fail(f"must hold at most {MAX_METADATA_KEYS} keys")
        for key, item in value.items():
            if not 1 <= len(key) <= MAX_METADATA_KEY_CHARS or _has_control(key):
                raise _fail(
                    f"keys must be 1-{MAX_METADATA_KEY_CHARS} characters without control characters"
                )
            if len(item) > MAX_METADATA_VALUE_CHARS or _has_control(item):
                raise _fail(
                    f"{key[:MAX_METADATA_KEY_CHARS]}: a value must be at most "
                    f"{MAX_METADATA_VALUE_CHARS} characters without control characters"
                )
            if not (_is_utf8_text(key) and _is_utf8_text(item)):
                raise _fail("must be valid Unicode text")
        return value

    @field_validator("recipientEmails")
    @classmethod
    def _recipients(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is None:
            return None
        return [value[i] for i in _distinct_addresses(value, _limits(info))]

    @field_validator("recipients")
    @classmethod
    def _personalised(
        cls, value: list[Recipient] | None, info: ValidationInfo
    ) -> list[Recipient] | None:
        if value is None:
            return None
        return [value[i] for i in _distinct_addresses([r.email for r in value], _limits(info))]

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

    @field_validator("html")
    @classmethod
    def _html(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise _fail("must not be blank")
        limits = _limits(info)
        if limits and len(value.encode("utf-8", "surrogatepass")) > limits.max_html_bytes:
            raise _fail(f"must be at most {limits.max_html_bytes} bytes in UTF-8")
        return value

    @model_validator(mode="after")
    def _one_list(self) -> _SendRequest:
        if self.recipientEmails is None and self.recipients is None:
            raise _fail("recipientEmails is required")  # v1's words (or recipients)
        if self.recipientEmails is not None and self.recipients is not None:
            raise _fail("give recipientEmails or recipients, not both")
        if self.recipients is not None:
            try:
                templates = self.templates()
            except TemplateError as e:
                raise _fail(str(e)) from None
            check_personalisation(templates, self.recipients, self.marketing)
        return self

    @property
    def marketing(self) -> bool:
        return False

    @property
    def addresses(self) -> list[str]:
        """The recipients' addresses, duplicates removed, in request order."""
        if self.recipients is not None:
            return [r.email for r in self.recipients]
        return list(self.recipientEmails or [])

    @property
    def personalised(self) -> bool:
        return self.recipients is not None

    def templates(self) -> Templates:
        """The subject, body and html compiled as templates (raises :class:`TemplateError`)."""
        return Templates(
            compile_template(self.subject, field="subject"),
            compile_template(self.body, field="body"),
            None if self.html is None else compile_template(self.html, field="html"),
        )

    def list_entries(self) -> list[str] | list[tuple[str, dict[str, str]]]:
        """What the stored list holds per recipient: the address, or the address and its
        values (personalised)."""
        if self.recipients is not None:
            return [(r.email, {k: str(v) for k, v in r.variables.items()}) for r in self.recipients]
        return list(self.recipientEmails or [])


def check_personalisation(
    templates: Templates, recipients: Sequence[Recipient], marketing: bool
) -> None:
    """Refuse (field error) a template that uses ``unsubscribe_url`` outside marketing mail,
    and the first recipient without a value some template needs (naming both)."""
    for field_name, template in templates.parts():
        if UNSUBSCRIBE_URL in template.names and not marketing:
            raise _fail(
                f"{field_name} uses {{{{ {UNSUBSCRIBE_URL} }}}}, which only marketing sends have "
                '("category": "marketing")'
            )
    needed: dict[str, str] = {}
    for field_name, template in templates.parts():
        for name in template.required - {UNSUBSCRIBE_URL}:
            needed.setdefault(name, field_name)
    if not needed:
        return
    names = frozenset(needed)
    for index, recipient in enumerate(recipients):
        variables: Mapping[str, str] = recipient.variables
        if names <= variables.keys():
            continue
        missing = sorted(names - variables.keys(), key=list(needed).index)[0]
        raise _fail(
            f"recipients[{index}] ({recipient.email}) has no value for {missing!r}, which "
            f"{needed[missing]} uses without a default"
        )


class AwsEmailRequest(_SendRequest):
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
                },
                {
                    "senderEmail": "se@aifactory.page",
                    "recipients": [
                        {"email": "minsu@example.com", "variables": {"name": "김민수"}},
                        {"email": "jiwoo@example.com", "variables": {}},
                    ],
                    "subject": '{{ name | default("회원") }}님, 12월 소식입니다',
                    "body": '안녕하세요 {{ name | default("회원") }}님,\n12월 소식을 전합니다.',
                    "html": '<p>안녕하세요 <b>{{ name | default("회원") }}</b>님,</p>',
                    "category": "marketing",
                },
            ]
        },
    )

    category: Category = Field(
        default="transactional",
        description=(
            "transactional (the default: receipts, password resets — reaches addresses that "
            "unsubscribed) or marketing: one-click unsubscribe headers and link, the subject "
            "prefix, and addresses that unsubscribed are skipped (UNSUBSCRIBED)."
        ),
    )

    @property
    def marketing(self) -> bool:
        return self.category == "marketing"


class UserEmailRequest(_SendRequest):
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
    recipientEmails: list[StrictStr] | None = Field(
        default=None,
        min_length=1,
        max_length=None,
        description=(
            f"At most {USER_SEND_MAX_RECIPIENTS} recipients. Each gets its own message. "
            "Duplicates (case-insensitive) are sent once. Exactly one of recipientEmails and "
            "recipients is given."
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


M = TypeVar("M", bound=_SendRequest)


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def _describe(error: Any) -> str:
    kind = error["type"]
    if not error["loc"] and kind == "sendmail":
        return str(error["msg"])  # about the request as a whole: the message says what
    field = _field_path(tuple(error["loc"]))
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
    if kind == "literal_error":
        return f"{field} is invalid: {error['msg']}"  # pydantic's "Input should be 'a' or 'b'"
    if kind.startswith(("datetime", "timezone")):
        return f"{field} must be an RFC 3339 date-time with an offset (2026-12-24T09:00:00+09:00)"
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
    # (a body naming "recipients" is a personalised one: more values per entry, and its list is
    # parsed an element at a time, so the loop does not stall on it either)
    personalised = b'"recipients"' in raw
    most = limits.max_commas_personalised if personalised else limits.max_commas
    if raw.count(b",") > most:
        raise ValidationFailed(
            "the request body holds more values than a valid request can (recipientEmails: at "
            f"most {limits.max_entries} entries, duplicates included)"
        )
    try:
        data = jsontext.loads(raw, streamed=("recipients",)) if raw.strip() else None
    except jsontext.MalformedJson as e:
        raise ValidationFailed("the request body must be valid UTF-8 JSON") from e
    if not isinstance(data, dict):
        raise ValidationFailed("the request body must be a JSON object")
    for name in ("recipientEmails", "recipients"):
        entries = data.get(name)
        if isinstance(entries, list) and len(entries) > limits.max_entries:
            raise ValidationFailed(
                f"{name} must contain at most {limits.max_entries} entries, duplicates "
                f"included (got {len(entries)})"
            )
    return data


def parse_request(
    model: type[M],
    raw: bytes,
    limits: Limits,
    *,
    admit_sender: Callable[[str], None] | None = None,
    past_schedule: bool = False,
) -> M:
    """Decode a JSON body and validate it; raise :class:`ValidationFailed` with clear messages.

    The cheap refusals come first: size, JSON, the number of entries (:func:`decode_body`), then
    ``admit_sender`` with the sender's address when that address is valid (it raises, e.g. 403
    for a sender not allowed), and only then the per-address validation. CPU-bound: run it on a
    worker thread, never on the event loop. ``past_schedule``: a ``scheduledAt`` in the past is
    accepted (only to find the send an Idempotency-Key retry names, whose time has passed).
    """
    data = decode_body(raw, limits)
    sender = data.get("senderEmail")
    if admit_sender is not None and isinstance(sender, str) and _is_valid_address(sender):
        admit_sender(sender)
    try:
        context = {"limits": limits, "past_schedule": past_schedule}
        return model.model_validate(data, context=context)
    except ValidationError as e:
        problems = [_describe(err) for err in e.errors(include_url=False, include_input=False)]
        if data.get("recipientEmails") is None and data.get("recipients") is None:
            # v1 named the missing list among the other problems, in field order
            after = sum(1 for p in problems if p.startswith("senderEmail"))
            problems.insert(after, "recipientEmails is required")
        problems = list(dict.fromkeys(problems))
        if len(problems) > _MAX_REPORTED_PROBLEMS:
            extra = len(problems) - _MAX_REPORTED_PROBLEMS
            problems = [*problems[:_MAX_REPORTED_PROBLEMS], f"and {extra} more"]
        raise ValidationFailed(problems) from None
