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


#: Distinct domains whose check is remembered per process (most sends share a few).
DOMAIN_CHECKS_CACHED = 4096


def cache_domain_checks() -> None:
    """Let email-validator check each distinct domain once per process, not once per address.

    Checking an address's domain (IDNA, UTS #46 character by character) is about two thirds of
    what email-validator spends on an address (profiled: 10.5 of 16.5 s for 200,000 addresses
    over 50 domains), and its result depends on the domain and two flags only. So the function
    ``validate_email`` calls for it — looked up in its own module's globals — is wrapped in an
    LRU cache of :data:`DOMAIN_CHECKS_CACHED` domains. A domain that fails raises, which is not
    cached (checked again each time, as before). Idempotent; ``tests/test_models.py`` checks
    that email-validator still calls the function through that name and that every answer is
    the same as without the cache.
    """
    import functools
    import importlib
    from typing import Any

    # the submodule (``email_validator.validate_email`` is also the function's name)
    module: Any = importlib.import_module("email_validator.validate_email")
    original = module.validate_email_domain_name
    if getattr(original, "cache_info", None) is not None:
        return

    @functools.lru_cache(maxsize=DOMAIN_CHECKS_CACHED)
    def cached(
        domain: str, test_environment: bool = False, globally_deliverable: bool = True
    ) -> object:
        return original(
            domain, test_environment=test_environment, globally_deliverable=globally_deliverable
        )

    module.validate_email_domain_name = cached
