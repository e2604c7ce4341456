"""Sealing the SMTP password so only the SMTP activity can read it.

The Durable orchestration input and history are stored in plain text in the task hub and are
returned by the Durable status API, so the HTTP starter seals the password with Fernet (AES-128-CBC
+ HMAC-SHA256) under a key from settings, and only the SMTP activity opens it. Several keys may be
configured, newest first (``MultiFernet``): the first seals, all open, which allows rotation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import SecretStr

from sendmail.contract.errors import ServiceMisconfigured

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet


class SealingError(Exception):
    """A sealed value could not be opened (wrong key, tampered, or not a token)."""


#: A sealed password opens for this long after sealing. A send finishes in minutes; the limit
#: bounds what a leaked key could open from old task-hub history.
SEALED_LIFETIME_SECONDS = 7 * 24 * 3600


class Sealer:
    def __init__(self, keys: SecretStr | None) -> None:
        from cryptography.fernet import Fernet, MultiFernet

        raw = [k.strip() for k in (keys.get_secret_value() if keys else "").split(",")]
        raw = [k for k in raw if k]
        if not raw:
            raise ServiceMisconfigured("SENDMAIL_SEALING_KEY is not set")
        try:
            self._fernet: MultiFernet = MultiFernet([Fernet(k.encode("ascii")) for k in raw])
        except (ValueError, UnicodeEncodeError) as e:
            raise ServiceMisconfigured(
                "SENDMAIL_SEALING_KEY must be url-safe base64 Fernet keys"
            ) from e

    def seal(self, secret: SecretStr) -> str:
        return self._fernet.encrypt(secret.get_secret_value().encode("utf-8")).decode("ascii")

    def open(self, token: str, *, now: int | None = None) -> SecretStr:
        """The secret, if the token is genuine and at most ``SEALED_LIFETIME_SECONDS`` old."""
        from cryptography.fernet import InvalidToken

        data = token.encode("ascii", "replace")
        try:
            if now is None:
                plain = self._fernet.decrypt(data, ttl=SEALED_LIFETIME_SECONDS)
            else:
                plain = self._fernet.decrypt_at_time(data, SEALED_LIFETIME_SECONDS, now)
            return SecretStr(plain.decode("utf-8"))
        except (InvalidToken, UnicodeError) as e:
            raise SealingError(
                "the sealed password cannot be opened with the configured keys"
            ) from e


def new_key() -> str:
    """A fresh Fernet key (for ``local.settings.json`` and Key Vault)."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode("ascii")
