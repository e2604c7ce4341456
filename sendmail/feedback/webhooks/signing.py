"""Standard Webhooks signatures (symmetric, ``v1``): the three headers of one attempt.

The scheme, as the spec (standard-webhooks/standard-webhooks, ``spec/standard-webhooks.md``)
writes it and the ``standardwebhooks`` package verifies it (tests/test_webhooks.py):

- ``webhook-id``: the event's id (:func:`~sendmail.feedback.webhooks.events.event_id`), the same
  on every attempt;
- ``webhook-timestamp``: the attempt's time, integer Unix seconds — new on every attempt, so a
  receiver that refuses timestamps more than five minutes off (the package does) takes a retry
  made hours later;
- ``webhook-signature``: ``v1,`` and the base64 HMAC-SHA256 of ``{id}.{timestamp}.{body}``,
  keyed with the bytes after ``whsec_``; one such signature per configured secret, separated by
  spaces. That is rotation without downtime: configure the new secret beside the old one, let
  receivers switch, remove the old one.

Secrets (``SENDMAIL_WEBHOOK_SECRET``) are ``whsec_`` and standard base64 of 24 to 64 random bytes
(the spec's bounds), comma- or space-separated; :func:`new_secret` makes one. A value that is not
so is refused with :class:`~sendmail.contract.errors.ServiceMisconfigured`, whose message names
the secret's position, never its text; :class:`SigningSecrets`' repr shows only how many there
are.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re

from pydantic import SecretStr

from sendmail.contract.errors import ServiceMisconfigured

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
SIGNATURE_VERSION = "v1"
_SEPARATORS = re.compile(r"[,\s]+")


def new_secret() -> str:
    """A fresh secret for ``SENDMAIL_WEBHOOK_SECRET`` (32 random bytes)."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode("ascii")


class SigningSecrets:
    """The configured secrets; every one signs (see the module docs)."""

    def __init__(self, secrets: SecretStr | str | None) -> None:
        text = secrets.get_secret_value() if isinstance(secrets, SecretStr) else (secrets or "")
        keys: list[bytes] = []
        for position, secret in enumerate(p for p in _SEPARATORS.split(text) if p):
            keys.append(_key(secret, position + 1))
        if not keys:
            raise ServiceMisconfigured("SENDMAIL_WEBHOOK_SECRET is not set")
        self._keys = tuple(keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"SigningSecrets({len(self._keys)} secrets)"

    def signature(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """``webhook-signature``: one ``v1,<base64>`` per secret, space-separated."""
        if "." in msg_id or not msg_id:
            raise ValueError("a webhook id must be non-empty and hold no '.'")
        signed = b"%s.%d.%s" % (msg_id.encode("ascii"), timestamp, body)
        return " ".join(
            f"{SIGNATURE_VERSION},"
            + base64.b64encode(hmac.digest(key, signed, hashlib.sha256)).decode("ascii")
            for key in self._keys
        )

    def headers(self, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        """The three headers of one attempt made at ``timestamp`` (Unix seconds)."""
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": self.signature(msg_id, timestamp, body),
        }


def _key(secret: str, position: int) -> bytes:
    problem = f"SENDMAIL_WEBHOOK_SECRET's secret {position} must be whsec_ and base64 of " + (
        f"{MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes"
    )
    if not secret.startswith(SECRET_PREFIX):
        raise ServiceMisconfigured(problem)
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ServiceMisconfigured(problem) from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ServiceMisconfigured(problem)
    return key
