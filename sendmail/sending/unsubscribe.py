"""Unsubscribe tokens: who (the recipient) and which send, sealed into a URL path segment.

A marketing message's ``List-Unsubscribe`` link is ``{SENDMAIL_PUBLIC_BASE_URL}/api/v1/unsubscribe/
{token}``. The token must

- work for as long as the mail may be opened — months, long after the send's own data is purged
  (issue 21's retention): so it *carries* the recipient and the send instead of pointing at a row;
- never be forged or enumerated (anyone could unsubscribe anyone): so it is authenticated;
- put no address or send id in clear into URLs that proxies, mail scanners and platforms log:
  so it is encrypted.

Format: ``u1`` + base64url (no padding) of ``key id (4 bytes) || nonce (12) || AES-256-GCM(
payload) || tag (16)``, with the key id as associated data. The payload is ``send id`` (the
32-hex-digit id as 16 bytes when it is one, else its UTF-8 text after a 0x00 marker) then the
normalised address in UTF-8. About 90 characters for a usual address.

Keys (``SENDMAIL_UNSUBSCRIBE_KEYS``): url-safe base64 32-byte keys, comma-separated, newest first.
The first makes tokens; every configured key reads them, found by its id (the first 4 bytes of
SHA-256 of the key), so rotating is: put a new key first, keep the old ones as long as mail that
carries their tokens may still be clicked (a year is a fair choice), then drop them. A token
under a key no longer configured reads as unknown (404), like a forged one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import SecretStr

from sendmail.contract.errors import ServiceMisconfigured

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: The route a token is read on (under ``/api``).
UNSUBSCRIBE_ROUTE = "v1/unsubscribe/{token}"
_PREFIX = "u1"
_KEY_ID_BYTES = 4
_NONCE_BYTES = 12
_TAG_BYTES = 16
_HEX_ID = re.compile(r"^[0-9a-f]{32}$")
_TOKEN = re.compile(r"^u1[A-Za-z0-9_-]{40,600}$")
_TEXT_ID = 0x00  # payload marker: the send id is text, not 16 bytes of hex
_HEX_MARK = 0x01  # payload marker: the send id is 32 hex digits packed into 16 bytes


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """What a genuine token says: the recipient (normalised) and the send it came with."""

    send_id: str
    email: str


def new_key() -> str:
    """A fresh key for ``SENDMAIL_UNSUBSCRIBE_KEYS`` (url-safe base64 of 32 random bytes)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


class UnsubscribeTokens:
    """Makes and reads tokens under the configured keys (see the module docs)."""

    def __init__(self, keys: SecretStr | str | None) -> None:
        text = keys.get_secret_value() if isinstance(keys, SecretStr) else (keys or "")
        raw = [k.strip() for k in text.split(",") if k.strip()]
        if not raw:
            raise ServiceMisconfigured("SENDMAIL_UNSUBSCRIBE_KEYS is not set")
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        ciphers: list[tuple[bytes, AESGCM]] = []
        for key in raw:
            try:
                material = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
            except (binascii.Error, ValueError) as e:
                raise ServiceMisconfigured(
                    "SENDMAIL_UNSUBSCRIBE_KEYS must be url-safe base64 32-byte keys"
                ) from e
            if len(material) != 32:
                raise ServiceMisconfigured(
                    "SENDMAIL_UNSUBSCRIBE_KEYS must be url-safe base64 32-byte keys"
                )
            ciphers.append((hashlib.sha256(material).digest()[:_KEY_ID_BYTES], AESGCM(material)))
        self._ciphers = ciphers
        self._by_id = {key_id: cipher for key_id, cipher in reversed(ciphers)}

    def make(self, send_id: str, email: str) -> str:
        """A new token for ``email`` (normalised by the caller) in send ``send_id``."""
        key_id, cipher = self._ciphers[0]
        nonce = os.urandom(_NONCE_BYTES)
        sealed = cipher.encrypt(nonce, _payload(send_id, email), key_id)
        data = base64.urlsafe_b64encode(key_id + nonce + sealed).rstrip(b"=").decode("ascii")
        return _PREFIX + data

    def read(self, token: str) -> Unsubscribe | None:
        """What ``token`` says, or None when it is not one of ours (malformed, forged, altered,
        or made under a key no longer configured)."""
        from cryptography.exceptions import InvalidTag

        if not _TOKEN.match(token):
            return None
        data = token[len(_PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) < _KEY_ID_BYTES + _NONCE_BYTES + _TAG_BYTES + 2:
            return None
        key_id = raw[:_KEY_ID_BYTES]
        cipher = self._by_id.get(key_id)
        if cipher is None:
            return None
        nonce = raw[_KEY_ID_BYTES : _KEY_ID_BYTES + _NONCE_BYTES]
        try:
            plain = cipher.decrypt(nonce, raw[_KEY_ID_BYTES + _NONCE_BYTES :], key_id)
        except InvalidTag:
            return None
        return _unpack(plain)


def unsubscribe_url(base_url: str, token: str) -> str:
    """The one-click unsubscribe link of ``token`` at ``base_url``
    (``SENDMAIL_PUBLIC_BASE_URL``)."""
    return f"{base_url.rstrip('/')}/api/{UNSUBSCRIBE_ROUTE.format(token=token)}"


def _payload(send_id: str, email: str) -> bytes:
    if _HEX_ID.match(send_id):
        head = bytes([_HEX_MARK]) + bytes.fromhex(send_id)
    else:
        text = send_id.encode("utf-8")
        if len(text) > 255:
            raise ValueError("send id too long for an unsubscribe token")
        head = bytes([_TEXT_ID, len(text)]) + text
    return head + email.encode("utf-8")


def _unpack(plain: bytes) -> Unsubscribe | None:
    try:
        if plain[0] == _HEX_MARK:
            send_id, rest = plain[1:17].hex(), plain[17:]
        elif plain[0] == _TEXT_ID:
            size = plain[1]
            send_id, rest = plain[2 : 2 + size].decode("utf-8"), plain[2 + size :]
        else:
            return None
        email = rest.decode("utf-8")
    except (IndexError, UnicodeDecodeError):
        return None
    if "@" not in email:
        return None
    return Unsubscribe(send_id=send_id, email=email)
