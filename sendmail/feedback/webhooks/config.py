"""The webhook settings, read and checked once: endpoints, secrets, event types, the dev rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sendmail.contract.errors import ServiceMisconfigured
from sendmail.feedback.webhooks.delivery import WebhookSender
from sendmail.feedback.webhooks.endpoints import Endpoint, EndpointRefused, parse_endpoint
from sendmail.feedback.webhooks.events import EventType
from sendmail.feedback.webhooks.signing import SigningSecrets
from sendmail.platform.settings import Settings


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """What ``SENDMAIL_WEBHOOK_*`` say. No endpoint: webhooks are off, and no secret is needed."""

    endpoints: tuple[Endpoint, ...]
    secrets: SigningSecrets | None
    events: frozenset[EventType]
    allow_loopback_http: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookConfig:
        """Checked: every URL (:func:`parse_endpoint`), and with any URL, the secrets.
        :class:`ServiceMisconfigured` otherwise, naming a URL by its position only."""
        allow = settings.SENDMAIL_WEBHOOK_ALLOW_LOOPBACK_HTTP
        endpoints: list[Endpoint] = []
        for position, url in enumerate(settings.SENDMAIL_WEBHOOK_URLS, start=1):
            try:
                endpoint = parse_endpoint(url, allow_loopback_http=allow)
            except EndpointRefused as e:
                raise ServiceMisconfigured(f"SENDMAIL_WEBHOOK_URLS, URL {position}: {e}") from e
            if all(endpoint.fingerprint != known.fingerprint for known in endpoints):
                endpoints.append(endpoint)
        secrets = SigningSecrets(settings.SENDMAIL_WEBHOOK_SECRET) if endpoints else None
        return cls(tuple(endpoints), secrets, frozenset(settings.SENDMAIL_WEBHOOK_EVENTS), allow)

    def wants(self, type: EventType) -> bool:
        """Whether events of ``type`` are sent at all."""
        return bool(self.endpoints) and type in self.events

    def endpoint(self, fingerprint: str) -> Endpoint | None:
        """The configured endpoint of that fingerprint; None once it is no longer configured."""
        return next((e for e in self.endpoints if e.fingerprint == fingerprint), None)

    def sender(self, **overrides: Any) -> WebhookSender:
        """A sender for these settings (``overrides``: a test's resolver, CA, limits)."""
        if self.secrets is None:
            raise ServiceMisconfigured("no webhook endpoint is configured")
        return WebhookSender(
            self.secrets, allow_loopback_http=self.allow_loopback_http, **overrides
        )
