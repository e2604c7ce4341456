"""Addresses as they travel: with their domain in ASCII (IDNA) form.

The service accepts internationalised domains (``user@bücher.de``; local parts must be ASCII,
``models.check_address``), but SES takes a destination's domain only in its ASCII form ("If the
domain part of an address contains non-ASCII characters, they must be encoded using Punycode",
SESv2 ``Destination``), and its event records name recipients that way. So the address sent to
SES, and the key under which events and the suppression list find an address, both use the
domain's ASCII form, mapped the way email-validator checked it (UTS #46, non-transitional: a
full-width ``\uff45xample.com`` is ``example.com``).
"""

from __future__ import annotations

#: What the suppression routes take as an address: something@something, no white space (the
#: list holds what SES reported, which need not pass the send routes' stricter validation).
ADDRESS_PATTERN = r"^[^@\s]+@[^@\s]+$"
MAX_ADDRESS_CHARS = 320


def ascii_domain(domain: str) -> str:
    """``domain`` lower-cased, in its IDNA ASCII form; as given (lower-cased) if it has none."""
    if domain.isascii():
        return domain.lower()
    import idna  # email-validator's own dependency, loaded only for such domains

    try:
        return idna.encode(domain, uts46=True, std3_rules=False, transitional=False).decode("ascii")
    except idna.IDNAError:  # not a valid name: nothing was sent to it, nothing will match it
        return domain.lower()


def ascii_address(address: str) -> str:
    """``address`` with its domain in ASCII form and its local part as given."""
    local, at, domain = address.rpartition("@")
    return f"{local}@{ascii_domain(domain)}" if at else address


def normalize_address(address: str) -> str:
    """How events and the suppression list compare and store addresses: trimmed, domain in ASCII
    form, lower-cased (mailbox providers treat local parts case-insensitively in practice)."""
    return ascii_address(address.strip()).lower()
