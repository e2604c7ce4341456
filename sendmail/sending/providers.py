"""The SMTP provider registry: where each provider's submission server is and how to reach it.

Host, port and TLS mode come from this registry, never from a request: a caller-chosen host
would make the service an open relay and an SSRF hole. Settings (``SENDMAIL_SMTP_*``) may
override the registry for tests and local runs, e.g. to point every provider at the devhost's
SMTP sink and trust its self-signed certificate.
"""

from __future__ import annotations

from dataclasses import dataclass

from sendmail.contract.vocabulary import Provider
from sendmail.platform.settings import Settings, TlsMode

#: The well-known submission port of each TLS mode (RFC 8314 / RFC 6409).
DEFAULT_PORTS: dict[TlsMode, int] = {"implicit": 465, "starttls": 587}


@dataclass(frozen=True, slots=True)
class SmtpEndpoint:
    """Where to connect: host, port, TLS mode and an extra CA bundle to trust (or None)."""

    host: str
    port: int
    tls_mode: TlsMode
    ca_file: str | None = None


_REGISTRY: dict[Provider, SmtpEndpoint] = {
    Provider.GMAIL: SmtpEndpoint("smtp.gmail.com", 465, "implicit"),
    Provider.NAVER: SmtpEndpoint("smtp.naver.com", 465, "implicit"),
    Provider.KAKAO: SmtpEndpoint("smtp.kakao.com", 465, "implicit"),
}


def endpoint_for(provider: Provider, settings: Settings) -> SmtpEndpoint:
    """The endpoint for ``provider``, with the settings' overrides applied.

    ``SENDMAIL_SMTP_HOST`` / ``_PORT`` / ``_TLS_MODE`` / ``_CA_FILE`` replace the registry's
    values when set. When only the TLS mode is overridden, the port follows the mode's standard
    port (465 implicit, 587 STARTTLS) rather than keeping a port that speaks the other mode.
    """
    base = _REGISTRY[Provider(provider)]
    tls_mode: TlsMode = settings.SENDMAIL_SMTP_TLS_MODE or base.tls_mode
    if settings.SENDMAIL_SMTP_PORT is not None:
        port = settings.SENDMAIL_SMTP_PORT
    elif tls_mode != base.tls_mode:
        port = DEFAULT_PORTS[tls_mode]
    else:
        port = base.port
    return SmtpEndpoint(
        host=settings.SENDMAIL_SMTP_HOST or base.host,
        port=port,
        tls_mode=tls_mode,
        ca_file=settings.SENDMAIL_SMTP_CA_FILE or base.ca_file,
    )
