"""The composition root: process-wide senders, ledger and sealer, created on first use.

Heavy clients (boto3, azure-data-tables) are imported only here and only when first needed, so
importing ``function_app`` stays cheap on a cold start. Tests replace them with :func:`override`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from sendmail.platform.settings import get_settings

if TYPE_CHECKING:
    from sendmail.admission.backlog import BacklogProbe
    from sendmail.admission.guard import AccountGuard
    from sendmail.admission.idempotency import IdempotencyStore
    from sendmail.admission.logins import LoginGuard
    from sendmail.admission.preflight import Preflight
    from sendmail.admission.reservations import QuotaReservations
    from sendmail.feedback.event_store import EventStore
    from sendmail.feedback.replays import ProcessedMessages
    from sendmail.feedback.sns import SnsVerifier
    from sendmail.feedback.suppression import SuppressionList
    from sendmail.feedback.webhooks.config import WebhookConfig
    from sendmail.feedback.webhooks.delivery import WebhookSender
    from sendmail.feedback.webhooks.outbox import WebhookQueue
    from sendmail.platform.blobs import BlobStore
    from sendmail.sending.ledger import SendLedger
    from sendmail.sending.sealing import Sealer
    from sendmail.sending.secrets import SecretStore
    from sendmail.sending.sends import SendsTable
    from sendmail.sending.ses import SesSender
    from sendmail.sending.smtp import SmtpSender
    from sendmail.sending.unsubscribe import UnsubscribeTokens

_lock = threading.RLock()  # a factory may ask for another instance (webhook_sender -> webhooks)
_instances: dict[str, Any] = {}


def _get(name: str, factory: Any) -> Any:
    with _lock:
        if name not in _instances:
            _instances[name] = factory()
        return _instances[name]


def ses_sender() -> SesSender:
    from sendmail.sending.ses import SesSender

    return _get("ses", lambda: SesSender(settings=get_settings()))  # type: ignore[no-any-return]


def preflight() -> Preflight | None:
    """SES's identity and account answers, cached (sendmail/admission/preflight.py); None where
    a test turned preflight off."""
    from sendmail.admission.preflight import Preflight

    return _get("preflight", lambda: Preflight(settings=get_settings()))  # type: ignore[no-any-return]


def smtp_sender() -> SmtpSender:
    from sendmail.sending.smtp import SmtpSender

    return _get("smtp", lambda: SmtpSender(get_settings()))  # type: ignore[no-any-return]


def ledger() -> SendLedger:
    from sendmail.sending.ledger import ledger_from_environment

    return _get("ledger", ledger_from_environment)  # type: ignore[no-any-return]


def blobs() -> BlobStore:
    """Each send's stored list and content (sendmail/sending/lists.py)."""
    from sendmail.platform.blobs import blob_store_from_environment

    return _get("blobs", blob_store_from_environment)  # type: ignore[no-any-return]


def sends() -> SendsTable:
    """One record per send (sendmail/sending/sends.py)."""
    from sendmail.sending.sends import sends_from_environment

    return _get("sends", sends_from_environment)  # type: ignore[no-any-return]


def idempotency() -> IdempotencyStore:
    from sendmail.admission.idempotency import store_from_environment

    hours = get_settings().SENDMAIL_IDEMPOTENCY_TTL_HOURS
    return _get("idempotency", lambda: store_from_environment(hours))  # type: ignore[no-any-return]


def event_store() -> EventStore:
    from sendmail.feedback.event_store import event_store_from_environment

    return _get("events", event_store_from_environment)  # type: ignore[no-any-return]


def suppressions() -> SuppressionList:
    from sendmail.feedback.suppression import suppressions_from_environment

    return _get("suppressions", suppressions_from_environment)  # type: ignore[no-any-return]


def processed_sns_messages() -> ProcessedMessages:
    from sendmail.feedback.replays import processed_messages_from_environment

    return _get("sns_messages", processed_messages_from_environment)  # type: ignore[no-any-return]


def login_guard() -> LoginGuard:
    from sendmail.admission.logins import login_guard_from_environment

    limit = get_settings().SENDMAIL_SMTP_LOGIN_FAILURES_PER_HOUR
    return _get("login_guard", lambda: login_guard_from_environment(limit))  # type: ignore[no-any-return]


def sns_verifier() -> SnsVerifier:
    """One per process: it keeps the SNS signing certificates it fetched."""
    from sendmail.feedback.sns import SnsVerifier

    return _get("sns", lambda: SnsVerifier.from_settings(get_settings()))  # type: ignore[no-any-return]


def backlog() -> BacklogProbe | None:
    """The work-item queue probe; None when no queue storage is configured (logged once)."""
    import logging

    from sendmail.admission.backlog import probe_from_environment
    from sendmail.platform.storage import StorageUnavailable

    def make() -> BacklogProbe | None:
        try:
            return probe_from_environment(get_settings().SENDMAIL_TASK_HUB)
        except StorageUnavailable as exc:
            logging.getLogger(__name__).warning("no work-item queue to probe: %s", exc)
            return None

    return _get("backlog", make)  # type: ignore[no-any-return]


def reservations() -> QuotaReservations:
    from sendmail.admission.reservations import reservations_from_environment

    return _get("reservations", reservations_from_environment)  # type: ignore[no-any-return]


def sealer() -> Sealer:
    from sendmail.sending.sealing import Sealer

    return _get("sealer", lambda: Sealer(get_settings().SENDMAIL_SEALING_KEY))  # type: ignore[no-any-return]


def guard() -> AccountGuard:
    """The account guard (sendmail/admission/guard.py) over its table."""
    from sendmail.admission.guard import AccountGuard, guard_store_from_environment

    return _get(  # type: ignore[no-any-return]
        "guard", lambda: AccountGuard(guard_store_from_environment(), get_settings())
    )


def webhooks() -> WebhookConfig:
    """The ``SENDMAIL_WEBHOOK_*`` settings, checked once (no endpoint: webhooks are off)."""
    from sendmail.feedback.webhooks.config import WebhookConfig

    return _get("webhooks", lambda: WebhookConfig.from_settings(get_settings()))  # type: ignore[no-any-return]


def webhook_queue() -> WebhookQueue:
    """Where webhook deliveries wait (sendmail/feedback/webhooks/outbox.py)."""
    from sendmail.feedback.webhooks.outbox import queue_from_environment

    return _get("webhook_queue", queue_from_environment)  # type: ignore[no-any-return]


def webhook_sender() -> WebhookSender:
    """Makes the attempts (one per process: it holds no connection between them)."""
    return _get("webhook_sender", lambda: webhooks().sender())  # type: ignore[no-any-return]


def unsubscribe_tokens() -> UnsubscribeTokens:
    """The unsubscribe-token codec under ``SENDMAIL_UNSUBSCRIBE_KEYS`` (500 when unset)."""
    from sendmail.sending.unsubscribe import UnsubscribeTokens

    keys = get_settings().SENDMAIL_UNSUBSCRIBE_KEYS
    return _get("unsubscribe_tokens", lambda: UnsubscribeTokens(keys))  # type: ignore[no-any-return]


def secrets() -> SecretStore:
    """Secrets a send needs while it runs (the SMTP password), sealed with the key ring."""
    from sendmail.sending.secrets import secret_store_from_environment

    return _get("secrets", lambda: secret_store_from_environment(sealer))  # type: ignore[no-any-return]


def override(**instances: Any) -> None:
    """Use these instances (keys: ses, smtp, ledger, sealer, idempotency, ...) instead of
    building them."""
    with _lock:
        _instances.update(instances)


def reset() -> None:
    """Forget every instance and the cached settings (tests)."""
    with _lock:
        _instances.clear()
    get_settings.cache_clear()
