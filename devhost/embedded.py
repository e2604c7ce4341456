"""Embedded defaults: local SES and SMTP emulators, Azurite for storage, dev keys (sealing and
unsubscribe tokens), and the app's own address as its public base URL.

Everything here changes ``os.environ`` and must run BEFORE ``function_app`` is imported: the
app reads its settings once. Emulator modules are imported lazily, only when started.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devhost.config import write_private

logger = logging.getLogger(__name__)

SEALING_KEY_ENV = "SENDMAIL_SEALING_KEY"
SEALING_KEY_FILE = "sealing-key"
UNSUBSCRIBE_KEYS_ENV = "SENDMAIL_UNSUBSCRIBE_KEYS"
UNSUBSCRIBE_KEY_FILE = "unsubscribe-key"
PUBLIC_BASE_URL_ENV = "SENDMAIL_PUBLIC_BASE_URL"
SES_ENDPOINT_ENVS = ("AWS_ENDPOINT_URL_SESV2", "AWS_ENDPOINT_URL")
SMTP_OVERRIDE_ENVS = ("SENDMAIL_SMTP_HOST", "SENDMAIL_SMTP_PORT")
STORAGE_ENVS = ("AzureWebJobsStorage", "AzureWebJobsStorage__tableServiceUri")
OUTBOX_JOURNAL = "outbox.jsonl"
#: The SES emulator's quota: a new production SES account's (50,000 a day, 14 a second) unless
#: these say otherwise. moto alone would report the sandbox's 200 a day and 1 a second.
SES_DAILY_QUOTA_ENV = "DEVHOST_SES_MAX_24_HOUR_SEND"
SES_RATE_ENV = "DEVHOST_SES_MAX_SEND_RATE"
#: The account the SES emulator plays (GetAccount, GetEmailIdentity; the app's preflight asks):
#: ``1`` for a sandboxed one (mail only to verified identities and the mailbox simulator; the
#: sandbox's 200 a day and 1 a second unless the quota variables say otherwise), the identities
#: verified (addresses and domains, comma-separated; default: the allowed senders and domains)
#: and SES's enforcement status (HEALTHY, PROBATION or SHUTDOWN).
SES_SANDBOX_ENV = "DEVHOST_SES_SANDBOX"
SES_VERIFIED_ENV = "DEVHOST_SES_VERIFIED_IDENTITIES"
SES_ENFORCEMENT_ENV = "DEVHOST_SES_ENFORCEMENT"
DEFAULT_REGION = "ap-northeast-2"
DEFAULT_SENDER = "se@aifactory.page"
#: SES's events: where the emulator posts them, and what the app is told to trust.
SES_EVENTS_PATH = "/api/v1/events/ses"
SNS_DEV_ORIGIN_ENV = "SENDMAIL_SNS_DEV_TRUSTED_ORIGIN"
SNS_TOPICS_ENV = "SENDMAIL_SNS_TOPIC_ARNS"
CONFIGURATION_SET_ENV = "SENDMAIL_SES_CONFIGURATION_SET"
DEV_CONFIGURATION_SET = "devhost-events"


def _csv(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


@dataclass
class Embedded:
    """The emulators devhost started (if any) and what they captured."""

    ses: Any = None
    smtp: Any = None
    azurite: Any = None
    notes: list[str] = field(default_factory=list)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def active(self) -> list[str]:
        names = []
        if self.ses is not None:
            names.append(f"SES emulator at {self.ses.endpoint_url}")
        if self.smtp is not None:
            names.append(f"SMTP sink at {self.smtp.host}:{self.smtp.port} (implicit TLS)")
        if self.azurite is not None:
            names.append(f"Azurite (blobs, queues, tables) at {self.azurite.table_endpoint}")
        return names

    def outbox(self) -> list[dict[str, Any]]:
        """Both emulators' messages as JSON, oldest first (``GET /_dev/outbox``)."""
        messages: list[Any] = []
        for emulator in (self.ses, self.smtp):
            if emulator is not None:
                messages.extend(emulator.messages())
        messages.sort(key=lambda m: m.received_at)
        return [m.to_json() for m in messages]

    def stop(self) -> None:
        self._stack.close()
        for emulator in (self.smtp, self.ses):
            if emulator is not None:
                try:
                    emulator.stop()
                except Exception:
                    logger.exception("stopping %s", type(emulator).__name__)


def ensure_sealing_key(state_dir: Path) -> str:
    """Set a dev ``SENDMAIL_SEALING_KEY`` (Fernet) unless one is configured.

    Returns where it came from: ``env``, ``state`` or ``generated``.
    """

    def fernet_key() -> str:
        from cryptography.fernet import Fernet

        return Fernet.generate_key().decode()

    return _ensure_dev_key(SEALING_KEY_ENV, state_dir / SEALING_KEY_FILE, fernet_key)


def ensure_unsubscribe_keys(state_dir: Path) -> str:
    """Set a dev ``SENDMAIL_UNSUBSCRIBE_KEYS`` (one key) unless keys are configured, kept in
    ``<state>/unsubscribe-key`` so the links of mail sent before a restart keep working.

    Returns where it came from: ``env``, ``state`` or ``generated``.
    """

    def token_key() -> str:  # what sendmail.sending.unsubscribe.new_key() makes
        import base64

        return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")

    return _ensure_dev_key(UNSUBSCRIBE_KEYS_ENV, state_dir / UNSUBSCRIBE_KEY_FILE, token_key)


def _ensure_dev_key(env_name: str, path: Path, make: Callable[[], str]) -> str:
    """``env_name`` from the environment (``env``), else from ``path`` (``state``: kept there
    with private permissions), else a new key written there (``generated``)."""
    if os.environ.get(env_name):
        return "env"
    if path.is_file() and path.read_text(encoding="utf-8").strip():
        os.environ[env_name] = path.read_text(encoding="utf-8").strip()
        os.chmod(path, 0o600)
        return "state"
    key = make()
    write_private(path, key)
    os.environ[env_name] = key
    return "generated"


def ensure_public_base_url(app_origin: str | None) -> str:
    """Set ``SENDMAIL_PUBLIC_BASE_URL`` to devhost's own origin unless one is configured: the
    unsubscribe links of mail sent here then open on this machine. Returns ``env``, ``devhost``
    or ``unset`` (no origin known)."""
    if os.environ.get(PUBLIC_BASE_URL_ENV):
        return "env"
    if not app_origin:
        return "unset"
    os.environ[PUBLIC_BASE_URL_ENV] = app_origin
    return "devhost"


def start_embedded(
    state_dir: Path,
    *,
    emulators: bool = True,
    app_origin: str | None = None,
    function_key: str | None = None,
) -> Embedded:
    """Start the emulators that are not replaced by configuration and point the env at them.

    ``app_origin`` and ``function_key`` say where the app will listen: the SES emulator posts
    SES's events (through its local SNS) to the app's events route there.
    """
    embedded = Embedded()
    embedded.notes.append(f"sealing key: {ensure_sealing_key(state_dir)}")
    embedded.notes.append(f"unsubscribe key: {ensure_unsubscribe_keys(state_dir)}")
    embedded.notes.append(f"public base URL: {ensure_public_base_url(app_origin)}")
    if not emulators:
        embedded.notes.append("emulators disabled (--no-emulators)")
        return embedded
    from devhost.emulators.outbox import OutboxJournal

    journal = OutboxJournal(state_dir / OUTBOX_JOURNAL)
    try:
        if any(os.environ.get(name) for name in STORAGE_ENVS):
            embedded.notes.append("storage: configured AzureWebJobsStorage")
        else:
            embedded.azurite = _start_azurite(state_dir, embedded._stack)
        if any(os.environ.get(name) for name in SES_ENDPOINT_ENVS):
            embedded.notes.append("SES: configured endpoint")
        else:
            embedded.ses = _start_ses(
                journal, state_dir, _events_endpoint(app_origin, function_key)
            )
        if any(os.environ.get(name) for name in SMTP_OVERRIDE_ENVS):
            embedded.notes.append("SMTP: configured override")
        else:
            embedded.smtp = _start_smtp(state_dir, journal)
    except BaseException:
        embedded.stop()
        raise
    return embedded


def _start_azurite(state_dir: Path, stack: contextlib.ExitStack) -> Any:
    """Azurite's blob, queue and table services, persistent under the state dir (the sends'
    lists and content, the ledger and the sends table survive; the queue service holds the task
    hub's mirrored work-item queue).

    It outlives a crashed devhost just long enough to save its data; the start waits for a
    previous devhost's Azurite to have done so (``devhost.emulators.azurite``'s module docs).
    """
    from devhost.emulators.azurite import start_azurite

    location = state_dir / "azurite"
    azurite = stack.enter_context(start_azurite(("blob", "queue", "table"), location=location))
    os.environ["AzureWebJobsStorage"] = azurite.connection_string  # noqa: SIM112 (its name)
    # Where to look at what the app stored (tools and tests): Azurite's well-known development
    # account, no secret of the app's.
    write_private(location / "connection-string", azurite.connection_string)
    return azurite


def _events_endpoint(app_origin: str | None, function_key: str | None) -> str | None:
    if app_origin is None or function_key is None:
        return None
    from urllib.parse import quote

    # As an SNS HTTPS subscription carries it: the function key in the query string.
    return f"{app_origin}{SES_EVENTS_PATH}?code={quote(function_key, safe='')}"


def _start_ses(journal: Any, state_dir: Path | None = None, events_url: str | None = None) -> Any:
    """moto's SES with the mailbox simulator: with ``events_url``, SES's events go through a
    local SNS (signed, certificate served on loopback) to the app, which is told to trust that
    origin and topic — the only way the app trusts anything but AWS's SNS hosts."""
    from devhost.emulators.ses import SesEmulator

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    senders = _csv(os.environ.get("SENDMAIL_ALLOWED_SENDERS")) or [DEFAULT_SENDER]
    domains = _csv(os.environ.get("SENDMAIL_ALLOWED_SENDER_DOMAINS"))
    events = None
    if events_url is not None and state_dir is not None:
        from devhost.emulators.sns import LocalSns

        events = LocalSns(state_dir, region=region, endpoint=events_url)
        os.environ[SNS_DEV_ORIGIN_ENV] = events.trusted_origin
        topics = _csv(os.environ.get(SNS_TOPICS_ENV))
        os.environ[SNS_TOPICS_ENV] = ",".join(dict.fromkeys([*topics, events.topic.arn]))
        # SES publishes event records (with tags) only for mail sent with a configuration set
        if not os.environ.get(CONFIGURATION_SET_ENV):
            os.environ[CONFIGURATION_SET_ENV] = DEV_CONFIGURATION_SET
    sandbox = os.environ.get(SES_SANDBOX_ENV, "").strip().lower() in ("1", "true", "yes")
    verified = os.environ.get(SES_VERIFIED_ENV)
    emulator = SesEmulator(
        region=region,
        allowed_senders=senders,
        allowed_domains=domains,
        max_24_hour_send=float(os.environ.get(SES_DAILY_QUOTA_ENV) or (200 if sandbox else 50_000)),
        max_send_rate=float(os.environ.get(SES_RATE_ENV) or (1 if sandbox else 14)),
        journal=journal,
        events=events,
        verified_identities=_csv(verified) if verified is not None else None,
        sandbox=sandbox,
        enforcement_status=os.environ.get(SES_ENFORCEMENT_ENV) or "HEALTHY",
    )
    emulator.start()
    os.environ["AWS_ENDPOINT_URL"] = emulator.endpoint_url
    os.environ["AWS_ACCESS_KEY_ID"] = "devhost"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "devhost"  # noqa: S105 - moto accepts any credentials
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ["AWS_REGION"] = region
    return emulator


def _start_smtp(state_dir: Path, journal: Any) -> Any:
    from devhost.emulators.smtp_sink import SmtpSink

    cert_dir = state_dir / "smtp-tls"
    cert_dir.mkdir(parents=True, exist_ok=True)
    sink = SmtpSink(cert_dir, tls_mode="implicit", journal=journal)
    sink.start()
    os.environ["SENDMAIL_SMTP_HOST"] = sink.host
    os.environ["SENDMAIL_SMTP_PORT"] = str(sink.port)
    os.environ["SENDMAIL_SMTP_TLS_MODE"] = "implicit"
    os.environ["SENDMAIL_SMTP_CA_FILE"] = str(sink.ca_file)
    return sink
