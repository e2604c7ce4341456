"""Preflight: what SES itself would refuse for a whole send, told at admission.

Without it, an unverified sender or a sandboxed account fails recipient by recipient inside the
orchestration, and the caller learns it only from a send that "completed" with everyone failed.
So aws-send asks SES first (on the worker thread of its admission, before anything is stored or
started, scheduled sends included):

- **the sender** (:meth:`Preflight.check_sender`): SESv2 ``GetEmailIdentity`` for the address,
  its domain and the domain's parents (SES lets a verified domain send from its subdomains); one
  with ``VerifiedForSendingStatus`` is enough. None: :class:`~sendmail.contract.errors.Forbidden`
  (403) saying what to verify, and where. The address is looked up as given (SES may compare
  local parts case-sensitively), the domains lower-cased and in ASCII form.
- **the recipients, in the sandbox only** (:meth:`Preflight.check_recipients`): when
  ``GetAccount`` says ``ProductionAccessEnabled`` is false, SES delivers only to verified
  addresses and domains, and to its mailbox simulator (``*@simulator.amazonses.com``). The
  verified identities come from ``ListEmailIdentities`` (paged, once, cached): a set, so a
  50,000-recipient request costs set look-ups, not calls. Recipients outside it are refused
  with :class:`~sendmail.contract.errors.ValidationFailed` (400), the first
  :data:`MAX_LISTED` named and the count given. Compared case-insensitively: a doubt admits.

Cached, per process
    Every answer is kept ``SENDMAIL_PREFLIGHT_CACHE_SECONDS`` (300 s by default) — an admission
    costs nothing more once warm — except the answers that refuse or may change soon: an
    unverified identity, a sandboxed account and an unreadable SES are kept at most
    :data:`NEGATIVE_CACHE_SECONDS`, so a just-verified sender (or an account just out of the
    sandbox) is seen within that. The identity list is kept the full time for admitting, but a
    refusal is only made from a list at most :data:`NEGATIVE_CACHE_SECONDS` old (read again
    first), so a just-verified recipient is not refused for minutes.

When SES cannot be read: admit (fail open)
    A timeout, a throttle that outlasts botocore's retries, or ``AccessDenied`` because the IAM
    policy lacks ``ses:GetEmailIdentity``, ``ses:ListEmailIdentities`` or ``ses:GetAccount``:
    the check it feeds is skipped and the send admitted, as before preflight — SES still refuses
    per recipient (``MessageRejected``), so nothing worse than today can happen, while refusing
    would stop all mail over a missing permission. Each kind of failure is logged once per
    process (a warning naming the operation and the error code, never an address); the failed
    read is kept :data:`NEGATIVE_CACHE_SECONDS` so an unreachable SES does not cost every
    request botocore's retries. A sender lookup that fails while another says "not verified"
    admits too: only answers that all say "not verified" refuse.

The reads use a ``sesv2`` client with the quota client's botocore config (idempotent reads:
standard retries, :func:`sendmail.sending.ses.create_sesv2_read_client`).
``SENDMAIL_PREFLIGHT_ENABLED=false`` turns the checks off (for an SES-compatible endpoint that
does not answer these calls); :meth:`Preflight.account_summary` still reads the account, for
the operators' route (``services.preflight()``; None in unit tests that do not bring one).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sendmail.contract.addresses import ascii_address, ascii_domain
from sendmail.contract.errors import Forbidden, ValidationFailed
from sendmail.platform.settings import Settings, get_settings

if TYPE_CHECKING:
    from mypy_boto3_sesv2.client import SESV2Client

logger = logging.getLogger(__name__)

#: The longest an answer that refuses (or a failed read) is kept, in seconds.
NEGATIVE_CACHE_SECONDS = 30.0
#: Unverified recipients a sandbox refusal names (it counts them all).
MAX_LISTED = 5
#: SES's mailbox simulator: reachable from the sandbox without verification.
SIMULATOR_DOMAIN = "simulator.amazonses.com"
#: ``ListEmailIdentities`` page size (SES's maximum) and the most pages read: a sandboxed
#: account verifies a handful of identities; a list longer than this is not trusted to be whole.
LIST_PAGE_SIZE = 1000
MAX_LIST_PAGES = 20

_UNREAD = object()  # a failed read, cached like an answer
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class SesAccount:
    """SESv2 ``GetAccount``, the parts the service uses (each None when SES did not say)."""

    production_access: bool | None
    enforcement_status: str | None
    sending_enabled: bool | None
    max_24_hour_send: float | None
    max_send_rate: float | None
    sent_last_24_hours: float | None

    @property
    def sandbox(self) -> bool | None:
        return None if self.production_access is None else not self.production_access

    @classmethod
    def from_response(cls, response: Any) -> SesAccount:
        quota = response.get("SendQuota") or {}

        def number(name: str) -> float | None:
            value = quota.get(name)
            return None if value is None else float(value)

        def flag(name: str) -> bool | None:
            value = response.get(name)
            return None if value is None else bool(value)

        status = response.get("EnforcementStatus")
        return cls(
            production_access=flag("ProductionAccessEnabled"),
            enforcement_status=None if status is None else str(status),
            sending_enabled=flag("SendingEnabled"),
            max_24_hour_send=number("Max24HourSend"),
            max_send_rate=number("MaxSendRate"),
            sent_last_24_hours=number("SentLast24Hours"),
        )

    def to_json(self) -> dict[str, Any]:
        """What the operators' account route shows (``GET /api/v1/account``)."""
        quota = None
        if self.max_24_hour_send is not None and self.max_send_rate is not None:
            quota = {
                "max24HourSend": self.max_24_hour_send,
                "maxSendRate": self.max_send_rate,
                "sentLast24Hours": self.sent_last_24_hours or 0.0,
            }
        return {
            "sandbox": self.sandbox,
            "enforcementStatus": self.enforcement_status,
            "sendingEnabled": self.sending_enabled,
            "quota": quota,
        }


class Preflight:
    """SES's identity and account answers, cached per process, and the checks made of them.

    ``client`` (``sesv2``) is made from ``settings`` on first use when not given (tests give
    a moto server's). ``clock`` (monotonic seconds) drives the cache. Thread-safe: concurrent
    admissions share one instance (two that miss together may both ask SES; both answers agree).
    """

    def __init__(
        self,
        client: SESV2Client | None = None,
        *,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings if settings is not None else get_settings()
        self._client = client
        self._clock = clock
        self.cache_seconds = float(self._settings.SENDMAIL_PREFLIGHT_CACHE_SECONDS)
        self.negative_seconds = min(NEGATIVE_CACHE_SECONDS, self.cache_seconds)
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Any]] = {}  # key -> (read at, answer or _UNREAD)
        self._warned: set[str] = set()

    @property
    def region(self) -> str:
        return self._settings.AWS_REGION

    def _sesv2(self) -> SESV2Client:
        with self._lock:
            if self._client is None:
                from sendmail.sending.ses import create_sesv2_read_client

                self._client = create_sesv2_read_client(self._settings)
            return self._client

    # --- the checks --------------------------------------------------------------------------

    def check(self, sender: str, recipients: Sequence[str]) -> None:
        """Both checks, the sender's first: raise 403 or 400, or return (admitted)."""
        self.check_sender(sender)
        self.check_recipients(recipients)

    def check_sender(self, sender: str) -> None:
        """Raise :class:`Forbidden` unless SES has the sender's address or domain verified for
        sending (or could not say)."""
        answers = []
        for identity in sender_identities(sender):
            verified = self.identity_verified(identity)
            if verified:
                return
            answers.append(verified)
        if any(answer is None for answer in answers):
            return  # SES could not say for some of them: fail open (logged)
        domain = ascii_domain(sender.rpartition("@")[2])
        raise Forbidden(
            f"senderEmail {sender} is not verified for sending in Amazon SES (region "
            f"{self.region}): verify the address or its domain {domain} in SES in that region, "
            f"then send again (a new verification is seen here within "
            f"{int(self.negative_seconds)} seconds)",
            reason="sender_unverified",
        )

    def check_recipients(self, recipients: Sequence[str]) -> None:
        """In the SES sandbox, raise :class:`ValidationFailed` naming recipients that are not
        verified identities (nor the mailbox simulator's). Out of it, or if SES could not say
        whether it is, nothing."""
        account = self.account()
        if account is None or account.production_access is not False:
            return
        verified = self.verified_identities(max_age=self.cache_seconds)
        if verified is None:
            return
        listed, count = unverified_recipients(recipients, verified)
        if count and 0 < self.negative_seconds < self._age("identities"):
            verified = self.verified_identities(max_age=0)  # refuse only from a recent list
            if verified is None:
                return
            listed, count = unverified_recipients(recipients, verified)
        if not count:
            return
        more = ", …" if count > len(listed) else ""
        logger.info("preflight: sandbox account, %d recipients not verified", count)
        raise ValidationFailed(
            f"the Amazon SES account is in the sandbox (region {self.region}), where mail goes "
            f"only to verified addresses and domains: {count} of the recipients "
            f"{'is' if count == 1 else 'are'} not verified ({', '.join(listed)}{more}); verify "
            f"them in SES, test with the mailbox simulator (…@{SIMULATOR_DOMAIN}), or request "
            "production access for the account",
            reason="sandbox_recipients",
        )

    # --- SES's answers, cached ---------------------------------------------------------------

    def identity_verified(self, identity: str) -> bool | None:
        """Whether ``identity`` (an address or a domain) is verified for sending; None when SES
        could not say (``GetEmailIdentity``)."""
        key = f"identity:{identity}"
        hit, value = self._cached(key, self.cache_seconds)
        if hit:
            return cast("bool | None", value)
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._sesv2().get_email_identity(EmailIdentity=identity)
        except ClientError as exc:
            if _error_code(exc) == "NotFoundException":  # never created: not verified
                return self._store(key, False)
            self._unreadable("GetEmailIdentity", _error_code(exc))
            return self._store(key, None)
        except BotoCoreError as exc:
            self._unreadable("GetEmailIdentity", type(exc).__name__)
            return self._store(key, None)
        return self._store(key, bool(response.get("VerifiedForSendingStatus")))

    def account(self, *, fresh: bool = False) -> SesAccount | None:
        """SESv2 ``GetAccount`` (None when SES could not be read). ``fresh``: read it now."""
        hit, value = self._cached("account", 0.0 if fresh else self.cache_seconds)
        if hit:
            return cast("SesAccount | None", value)
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._sesv2().get_account()
        except (ClientError, BotoCoreError) as exc:
            self._unreadable("GetAccount", _error_code(exc))
            return self._store("account", None)
        return self._store("account", SesAccount.from_response(response))

    def account_summary(self, *, fresh: bool = False) -> dict[str, Any] | None:
        """The account as the operators' route shows it — ``{"sandbox", "enforcementStatus",
        "sendingEnabled", "quota": {"max24HourSend", "maxSendRate", "sentLast24Hours"}}`` — from
        the cached ``GetAccount`` (``fresh``: read now); None when SES could not be read."""
        account = self.account(fresh=fresh)
        return None if account is None else account.to_json()

    def verified_identities(self, *, max_age: float) -> frozenset[str] | None:
        """The account's verified identities, lower-cased (``ListEmailIdentities``, every page),
        read again if the cached list is older than ``max_age`` seconds; None when SES could not
        be read or the list is longer than :data:`MAX_LIST_PAGES` pages."""
        hit, value = self._cached("identities", max_age)
        if hit:
            return cast("frozenset[str] | None", value)
        from botocore.exceptions import BotoCoreError, ClientError

        found: set[str] = set()
        token: str | None = None
        try:
            for _page in range(MAX_LIST_PAGES):
                if token:
                    response = self._sesv2().list_email_identities(
                        PageSize=LIST_PAGE_SIZE, NextToken=token
                    )
                else:
                    response = self._sesv2().list_email_identities(PageSize=LIST_PAGE_SIZE)
                found.update(_verified_names(response.get("EmailIdentities") or []))
                token = response.get("NextToken")
                if not token:
                    break
            else:
                self._unreadable("ListEmailIdentities", "too many identities")
                return self._store("identities", None)
        except (ClientError, BotoCoreError) as exc:
            self._unreadable("ListEmailIdentities", _error_code(exc))
            return self._store("identities", None)
        return self._store("identities", frozenset(found))

    def forget(self) -> None:
        """Drop every cached answer (tests; an operator who just verified something)."""
        with self._lock:
            self._cache.clear()

    def _cached(self, key: str, max_age: float) -> tuple[bool, Any]:
        """(True, answer) for an answer still fresh: kept up to ``max_age`` seconds, and at
        most :data:`NEGATIVE_CACHE_SECONDS` if it refuses or was not read."""
        with self._lock:
            entry = self._cache.get(key)
        if entry is None:
            return False, None
        read_at, value = entry
        if value is _UNREAD or _negative(value):
            max_age = min(max_age, self.negative_seconds)
        if self._clock() - read_at >= max_age:
            return False, None
        return True, None if value is _UNREAD else value

    def _store(self, key: str, value: _T) -> _T:
        with self._lock:
            self._cache[key] = (self._clock(), _UNREAD if value is None else value)
        return value

    def _age(self, key: str) -> float:
        with self._lock:
            entry = self._cache.get(key)
        return float("inf") if entry is None else self._clock() - entry[0]

    def _unreadable(self, operation: str, reason: str) -> None:
        """Log a read that failed, once per operation and reason in this process."""
        key = f"{operation}:{reason}"
        with self._lock:
            first = key not in self._warned
            self._warned.add(key)
        if first:
            logger.warning(
                "preflight: SES %s failed (%s); admitting without that check "
                "(SES still refuses per recipient)",
                operation,
                reason,
            )
        else:
            logger.debug("preflight: SES %s failed (%s) again", operation, reason)


def sender_identities(sender: str) -> list[str]:
    """The identities that can make ``sender`` verified, most specific first: the address
    (local part as given, domain in lower-case ASCII), its domain, and the domain's parents
    down to two labels (``a@mail.example.com``: the address, ``mail.example.com``,
    ``example.com``)."""
    address = ascii_address(sender.strip())
    return [address, *_domains(address.rpartition("@")[2])]


def unverified_recipients(
    recipients: Iterable[str], verified: frozenset[str]
) -> tuple[list[str], int]:
    """(the first :data:`MAX_LISTED` recipients that are neither a verified identity, at a
    verified domain (or its subdomains) nor the mailbox simulator's, how many there are).
    Case-insensitive; one set look-up per recipient and per distinct domain."""
    listed: list[str] = []
    count = 0
    by_domain: dict[str, bool] = {}
    for recipient in recipients:
        address = ascii_address(recipient.strip()).lower()
        domain = address.rpartition("@")[2]
        if address in verified:
            continue
        covered = by_domain.get(domain)
        if covered is None:
            covered = domain == SIMULATOR_DOMAIN or any(d in verified for d in _domains(domain))
            by_domain[domain] = covered
        if covered:
            continue
        count += 1
        if len(listed) < MAX_LISTED:
            listed.append(recipient)
    return listed, count


def _domains(domain: str) -> list[str]:
    """``domain`` (lower-case ASCII) and its parents down to two labels."""
    labels = ascii_domain(domain).split(".")
    return [".".join(labels[i:]) for i in range(max(1, len(labels) - 1))]


def _verified_names(identities: Iterable[Any]) -> Iterable[str]:
    for identity in identities:
        name = identity.get("IdentityName")
        if name and identity.get("VerificationStatus") == "SUCCESS":
            yield str(name).lower()


def _negative(value: Any) -> bool:
    """An answer that refuses, or may stop refusing soon: kept briefly."""
    if value is False:
        return True
    return isinstance(value, SesAccount) and value.production_access is False


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = (response.get("Error") or {}).get("Code")
        if code:
            return str(code)
    return type(exc).__name__
