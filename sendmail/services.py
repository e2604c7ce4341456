"""The composition root: process-wide senders, ledger and sealer, created on first use.

Heavy clients (boto3, azure-data-tables) are imported only here and only when first needed, so
importing ``function_app`` stays cheap on a cold start. Tests replace them with :func:`override`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from sendmail.settings import get_settings

if TYPE_CHECKING:
    from sendmail.ledger import SendLedger
    from sendmail.sealing import Sealer
    from sendmail.ses import SesSender
    from sendmail.smtp import SmtpSender

_lock = threading.Lock()
_instances: dict[str, Any] = {}


def _get(name: str, factory: Any) -> Any:
    with _lock:
        if name not in _instances:
            _instances[name] = factory()
        return _instances[name]


def ses_sender() -> SesSender:
    from sendmail.ses import SesSender

    return _get("ses", lambda: SesSender(settings=get_settings()))  # type: ignore[no-any-return]


def smtp_sender() -> SmtpSender:
    from sendmail.smtp import SmtpSender

    return _get("smtp", lambda: SmtpSender(get_settings()))  # type: ignore[no-any-return]


def ledger() -> SendLedger:
    from sendmail.ledger import ledger_from_environment

    return _get("ledger", ledger_from_environment)  # type: ignore[no-any-return]


def sealer() -> Sealer:
    from sendmail.sealing import Sealer

    return _get("sealer", lambda: Sealer(get_settings().SENDMAIL_SEALING_KEY))  # type: ignore[no-any-return]


def override(**instances: Any) -> None:
    """Use these instances (keys: ses, smtp, ledger, sealer) instead of building them."""
    with _lock:
        _instances.update(instances)


def reset() -> None:
    """Forget every instance and the cached settings (tests)."""
    with _lock:
        _instances.clear()
    get_settings.cache_clear()
