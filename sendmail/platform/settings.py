"""Typed settings, read once from the environment.

Every setting the service reads is a field here; the README's settings table documents the same
names. Locally they come from ``local.settings.json`` (or the devhost), in Azure from app
settings (secrets through Key Vault references).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

TlsMode = Literal["implicit", "starttls"]

#: The sender the v1 service used in practice; the default allow-list.
DEFAULT_ALLOWED_SENDER = "se@aifactory.page"

#: The webhook event types (sendmail/feedback/webhooks/events.py describes each).
WebhookEventType = Literal[
    "send.completed",
    "send.canceled",
    "send.paused",
    "send.resumed",
    "email.delivered",
    "email.bounced",
    "email.complained",
    "email.unsubscribed",
    "account.guard_tripped",
]
#: Sent unless SENDMAIL_WEBHOOK_EVENTS says otherwise: every type but email.delivered, which is
#: one event per recipient (a million-recipient send, a million deliveries per endpoint).
DEFAULT_WEBHOOK_EVENTS: tuple[WebhookEventType, ...] = (
    "send.completed",
    "send.canceled",
    "send.paused",
    "send.resumed",
    "email.bounced",
    "email.complained",
    "email.unsubscribed",
    "account.guard_tripped",
)


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _loopback_origin(value: str) -> str:
    """``scheme://host[:port]`` on this machine only, normalised; anything else is refused, so
    the development trust can never name a host another machine controls."""
    from urllib.parse import urlsplit

    parts = urlsplit(value.strip())
    host = parts.hostname or ""
    if (
        parts.scheme not in ("http", "https")
        or host not in _LOOPBACK_HOSTS
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValueError("must be an http(s) origin on the loopback interface, without a path")
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return f"{parts.scheme}://{netloc}"


class Settings(BaseSettings):
    """The service's configuration. Field names are the environment variable names."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    # --- AWS SES -------------------------------------------------------------------------
    AWS_REGION: str = Field(
        default="ap-northeast-2",
        validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"),
        description="AWS region of the SES account.",
    )
    SENDMAIL_ALLOWED_SENDERS: Annotated[list[str], NoDecode] = Field(
        default=[DEFAULT_ALLOWED_SENDER],
        description="Comma-separated sender addresses allowed on aws-send.",
    )
    SENDMAIL_ALLOWED_SENDER_DOMAINS: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Comma-separated domains whose every address is allowed on aws-send.",
    )
    SENDMAIL_SES_BATCH_SIZE: int = Field(
        default=500,
        ge=1,
        le=5000,
        description="Recipients per SES batch, at least (grown to about a minute of sending).",
    )
    SENDMAIL_SES_MAX_IN_FLIGHT_BATCHES: int = Field(default=4, ge=1, le=100)
    SENDMAIL_SES_MAX_RECIPIENTS: int = Field(
        default=1_000_000,
        ge=1,
        le=1_000_000,
        description="Most distinct recipients of one aws-send request.",
    )
    SENDMAIL_STATUS_INLINE_RECIPIENTS: int = Field(
        default=10_000,
        ge=0,
        le=10_000,
        description=(
            "Sends of up to this many recipients get messageIds and failures inline in the "
            "status route; larger ones get recipientsUrl (the paged recipients route)."
        ),
    )
    SENDMAIL_SES_CONFIGURATION_SET: str | None = Field(
        default=None, description="SES configuration set (event destinations for bounces)."
    )
    SENDMAIL_SES_MAX_CONCURRENCY: int = Field(
        default=16,
        ge=1,
        le=64,
        description="Most SendEmail calls in flight in one batch activity (the pace decides).",
    )
    SENDMAIL_SES_BATCH_TIME_BUDGET_SECONDS: float = Field(
        default=300.0,
        ge=5,
        le=1500,
        description="How long one batch activity sends before handing what is left back.",
    )
    SENDMAIL_SES_SEND_DEADLINE_SECONDS: float = Field(
        default=3600.0,
        ge=60,
        le=7 * 24 * 3600,
        description=(
            "How long past the time MaxSendRate needs for a send its deadline is; then "
            "recipients SES kept throttling or refusing are failed."
        ),
    )

    # --- Telemetry (sendmail/platform/telemetry.py) ----------------------------------------------
    SENDMAIL_TELEMETRY_ENABLED: bool = Field(
        default=True,
        description=(
            "With APPLICATIONINSIGHTS_CONNECTION_STRING set, each instance exports the service's "
            "metrics and sampled traces to Application Insights (the Azure Monitor OpenTelemetry "
            "distro, configured in the background at the first record)."
        ),
    )

    # --- Preflight at admission (sendmail/admission/preflight.py) -------------------------------
    SENDMAIL_PREFLIGHT_ENABLED: bool = Field(
        default=True,
        description=(
            "aws-send asks SES whether the sender is verified (403 if not) and, in the sandbox, "
            "whether the recipients are (400 if not), before anything starts."
        ),
    )
    SENDMAIL_PREFLIGHT_CACHE_SECONDS: float = Field(
        default=300,
        ge=0,
        le=24 * 3600,
        description=(
            "How long SES's answers are kept (an unverified identity, a sandboxed account or an "
            "unreadable SES: at most 30 s, so a fix is seen soon)."
        ),
    )

    SENDMAIL_MAX_QUEUED_BATCHES: int = Field(
        default=500,
        ge=1,
        description="Batches waiting in the task hub's work-item queue above which sends are 429.",
    )
    SENDMAIL_TASK_HUB: str = Field(
        default="SendMail",
        min_length=3,
        description="The Durable task hub (host.json hubName): its work-item queue is probed.",
    )
    SENDMAIL_IDEMPOTENCY_TTL_HOURS: float = Field(
        default=24,
        ge=24,
        le=24 * 30,
        description="How long an Idempotency-Key names its send (at least 24 hours).",
    )

    # --- SES events through SNS, and the suppression list --------------------------------------
    SENDMAIL_SNS_TOPIC_ARNS: Annotated[list[str], NoDecode] = Field(
        default=[],
        description=(
            "Comma-separated SNS topic ARNs the events route accepts messages from (none: every "
            "message is refused)."
        ),
    )
    SENDMAIL_SNS_DEV_TRUSTED_ORIGIN: str | None = Field(
        default=None,
        description=(
            "Development only: one loopback origin (http://127.0.0.1:PORT) trusted for "
            "SigningCertURL and SubscribeURL besides AWS's SNS hosts. devhost sets it; never "
            "in Azure."
        ),
    )
    SENDMAIL_SNS_SIGNATURE_VERSION: Literal["1", "2"] = Field(
        default="2",
        description=(
            "The only SNS SignatureVersion accepted: 2 (SHA256withRSA), as the topic is set up "
            "(docs/deploy.md); 1 (SHA1withRSA) only for a topic that still signs so."
        ),
    )
    SENDMAIL_SUPPRESSION_ENABLED: bool = Field(
        default=True,
        description="aws-send skips addresses on the suppression list (reported as SUPPRESSED).",
    )

    # --- Webhooks ------------------------------------------------------------------------------
    SENDMAIL_WEBHOOK_URLS: Annotated[list[str], NoDecode] = Field(
        default=[],
        description=(
            "Comma-separated endpoints every enabled event is posted to (https; none: no "
            "webhooks). Checked when read by sendmail.feedback.webhooks, never echoed."
        ),
    )
    SENDMAIL_WEBHOOK_SECRET: SecretStr | None = Field(
        default=None,
        description=(
            "Standard Webhooks signing secrets (whsec_ and base64 of 24-64 bytes), comma- or "
            "space-separated; every one signs each attempt (rotation). Key Vault in Azure."
        ),
    )
    SENDMAIL_WEBHOOK_EVENTS: Annotated[list[WebhookEventType], NoDecode] = Field(
        default=list(DEFAULT_WEBHOOK_EVENTS),
        description="Comma-separated event types sent (default: all but email.delivered).",
    )
    SENDMAIL_WEBHOOK_ALLOW_LOOPBACK_HTTP: bool = Field(
        default=False,
        description=(
            "Development only (devhost sets it): webhook endpoints on this machine's loopback "
            "addresses are allowed, over http too. Never in Azure."
        ),
    )

    # --- The account guard (sendmail/admission/guard.py) --------------------------------------
    SENDMAIL_GUARD_BOUNCE_RATE: float = Field(
        default=0.04,
        gt=0,
        le=1,
        description="Permanent bounces per message with a known fate that trip the guard.",
    )
    SENDMAIL_GUARD_COMPLAINT_RATE: float = Field(
        default=0.0008,
        gt=0,
        le=1,
        description="Complaints per message with a known fate that trip the guard.",
    )
    SENDMAIL_GUARD_MIN_SAMPLE: int = Field(
        default=500,
        ge=1,
        description="Messages with a known fate in the window before the rates are judged.",
    )
    SENDMAIL_GUARD_WINDOW_HOURS: float = Field(
        default=24, gt=0, le=24 * 14, description="The trailing window the rates cover (hours)."
    )
    SENDMAIL_GUARD_BULK_RECIPIENTS: int = Field(
        default=100,
        ge=1,
        description=(
            "An aws-send of more recipients than this is bulk whatever its category: paused and "
            "refused while the guard is tripped."
        ),
    )

    # --- Retention (sendmail/retention.py, api/retention.py) -----------------------------------
    SENDMAIL_RETENTION_DAYS: float = Field(
        default=30,
        gt=0,
        le=3650,
        description=(
            "Days a finished send's data (Durable histories, list and content, ledger, events) "
            "and a webhook poison message are kept; fractions allowed (trying it)."
        ),
    )
    SENDMAIL_RETENTION_SCHEDULE: str = Field(
        default="0 30 3 * * *",
        min_length=1,
        description=(
            "When the retention timer runs: NCRONTAB with seconds, in the host's time zone "
            "(UTC on Azure). The Functions host reads it (the timer's %SENDMAIL_RETENTION_"
            "SCHEDULE% binding); the Bicep always sets it."
        ),
    )
    SENDMAIL_RETENTION_RUN_SECONDS: float = Field(
        default=300,
        ge=5,
        le=1500,
        description=(
            "How long one retention run purges before it stops (what is left waits for the "
            "next run); below functionTimeout."
        ),
    )

    # --- Request limits --------------------------------------------------------------------
    SENDMAIL_MAX_SCHEDULE_DAYS: float = Field(
        default=30,
        ge=0,
        le=365,
        description="How far ahead a send's scheduledAt may be (days; 0: no scheduling).",
    )
    SENDMAIL_MAX_SUBJECT_CHARS: int = Field(default=998, ge=1)
    SENDMAIL_MAX_BODY_BYTES: int = Field(default=102_400, ge=1)
    SENDMAIL_MAX_HTML_BYTES: int = Field(
        default=102_400,
        ge=1,
        description=(
            "Most bytes (UTF-8) of a request's html, and of each rendered text or HTML part of "
            "a personalised message (Gmail clips HTML past about 102 KB)."
        ),
    )

    # --- Marketing mail and one-click unsubscribe ---------------------------------------------
    SENDMAIL_PUBLIC_BASE_URL: str | None = Field(
        default=None,
        description=(
            "The address mail clients reach the unsubscribe routes at (https://host, no path); "
            "marketing sends are refused (500) without it. devhost sets its own."
        ),
    )
    SENDMAIL_UNSUBSCRIBE_KEYS: SecretStr | None = Field(
        default=None,
        description=(
            "Keys of the unsubscribe tokens: comma-separated url-safe base64 32-byte keys, newest "
            "first (the first makes tokens, all read them: keep an old key as long as mail that "
            "carries its tokens may be opened). Key Vault in Azure; devhost sets its own."
        ),
    )
    SENDMAIL_UNSUBSCRIBE_MAILTO: str | None = Field(
        default=None,
        description=(
            "An address for List-Unsubscribe's mailto: alternative (none: only the https link)."
        ),
    )
    SENDMAIL_UNSUBSCRIBE_FOOTER: str = Field(
        default=(
            "\n\n--\n"
            "더 이상 이 메일을 받지 않으시려면 수신거부하세요: {{ unsubscribe_url }}\n"
            "To stop receiving these emails, unsubscribe: {{ unsubscribe_url }}"
        ),
        min_length=1,
        description=(
            "Appended to a marketing message's text (and, as a paragraph, to its HTML) when the "
            "part does not use {{ unsubscribe_url }}; must itself use {{ unsubscribe_url }}."
        ),
    )
    SENDMAIL_MARKETING_SUBJECT_PREFIX: str = Field(
        default="(광고)",
        description=(
            "Put before a marketing subject that does not start with it (Korea's Information "
            "and Communications Network Act, article 50); empty: nothing is added."
        ),
    )

    # --- Hosting -------------------------------------------------------------------------------
    SENDMAIL_FUNCTIONS: Literal["all", "public"] = Field(
        default="all",
        description=(
            "Which functions the app registers (function_app.py reads it at import): all, or "
            "public — only the routes that must be reachable from anywhere (unsubscribe, the SNS "
            "events endpoint, health), for the public app the Bicep adds when the caller IP "
            "allow-list is on."
        ),
    )

    # --- SMTP --------------------------------------------------------------------------------
    SENDMAIL_SMTP_CONNECTIONS: int = Field(default=3, ge=1, le=10)
    SENDMAIL_SMTP_TIMEOUT_SECONDS: float = Field(default=30.0, gt=0)
    SENDMAIL_LEDGER_GROUP_MS: float = Field(
        default=50,
        ge=0,
        le=1000,
        description=(
            "SES batches gather ledger records for at most this many milliseconds (or 100 "
            "records) and write them as one table transaction; 0 writes each record at once. "
            "A crash may re-send the successes not yet written (never more than 300)."
        ),
    )
    SENDMAIL_SMTP_LOGIN_FAILURES_PER_HOUR: int = Field(
        default=5,
        ge=1,
        description=(
            "Failed (or not yet answered) SMTP logins per sender account in a trailing hour "
            "after which user-send answers 429 without trying the provider."
        ),
    )
    SENDMAIL_SMTP_MAX_ATTEMPTS: int = Field(
        default=3, ge=1, le=10, description="Attempts per recipient on 4xx / dropped connections."
    )
    SENDMAIL_SMTP_HOST: str | None = Field(
        default=None, description="Override every provider's host (tests, local runs)."
    )
    SENDMAIL_SMTP_PORT: int | None = Field(default=None, ge=1, le=65535)
    SENDMAIL_SMTP_TLS_MODE: TlsMode | None = None
    SENDMAIL_SMTP_CA_FILE: str | None = Field(
        default=None, description="Extra CA bundle to trust (self-signed local servers)."
    )

    # --- Secrets -------------------------------------------------------------------------------
    SENDMAIL_SEALING_KEY: SecretStr | None = Field(
        default=None,
        description="Fernet key(s), comma-separated, newest first, sealing SMTP passwords.",
    )

    @field_validator("SENDMAIL_ALLOWED_SENDERS", "SENDMAIL_ALLOWED_SENDER_DOMAINS", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("SENDMAIL_ALLOWED_SENDERS", "SENDMAIL_ALLOWED_SENDER_DOMAINS")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [v.lower().lstrip("@") for v in value]

    @field_validator(
        "SENDMAIL_SNS_TOPIC_ARNS", "SENDMAIL_WEBHOOK_URLS", "SENDMAIL_WEBHOOK_EVENTS", mode="before"
    )
    @classmethod
    def _topics(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("SENDMAIL_SNS_DEV_TRUSTED_ORIGIN", mode="before")
    @classmethod
    def _dev_origin(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return _loopback_origin(value) if isinstance(value, str) else value

    @classmethod
    def env_names(cls) -> frozenset[str]:
        """Every environment variable name this class reads (for docs and infra checks)."""
        names: set[str] = set()
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                names.update(str(choice) for choice in alias.choices)
            else:
                names.add(name)
        return frozenset(names)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, validated once."""
    return Settings()
