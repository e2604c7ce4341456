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
        self._mac_keys = [_derive(k.encode("ascii"), _MAC_PURPOSE) for k in raw]

    def macs(self, secret: SecretStr) -> list[str]:
        """HMAC-SHA256 of ``secret`` under a key derived from each configured key, newest
        first: what may stand for a secret where it must be compared but never kept (an
        idempotency fingerprint). Derived keys, never the sealing keys themselves; one MAC
        per key, so a value made before a rotation still matches while its key is configured.
        """
        import hashlib
        import hmac

        data = secret.get_secret_value().encode("utf-8")
        return [hmac.new(key, data, hashlib.sha256).hexdigest() for key in self._mac_keys]

    def wrap(self, key: bytes) -> str:
        """``key`` (a data key of :mod:`sendmail.sending.secrets`) sealed with the newest
        configured key; no lifetime: a data key lives as long as the secrets it seals."""
        return self._fernet.encrypt(key).decode("ascii")

    def unwrap(self, token: str) -> bytes:
        """The data key in ``token``, or :class:`SealingError` (no configured key opens it)."""
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(token.encode("ascii", "replace"))
        except InvalidToken as e:
            raise SealingError("no configured sealing key opens this data key") from e

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


_MAC_PURPOSE = b"sendmail: MAC of a secret in an idempotency fingerprint"


def _derive(fernet_key: bytes, purpose: bytes) -> bytes:
    """A 32-byte key for ``purpose`` from a Fernet key (HKDF-SHA256): one key never serves two
    purposes."""
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    material = base64.urlsafe_b64decode(fernet_key)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(material)


def new_key() -> str:
    """A fresh Fernet key (for ``local.settings.json`` and Key Vault)."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode("ascii")
