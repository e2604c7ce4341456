"""Failed SMTP logins limited per account: ``user-send`` is no password oracle.

``user-send`` logs in to a provider with the password a caller gives; with ``Prefer: wait`` a
wrong one answers 403 and a right one 200. Unlimited, that is a way to test guessed or stolen
passwords against Gmail, Naver and Kakao through this service — and a provider locks an account
(or the service's addresses) after enough failures. So, per sender account (provider and
address), over a trailing hour:

- **What counts**: every login the provider refused (5xx), and every password not yet proven
  that a send admitted and has not logged in with yet (*pending*, counted once per distinct
  password however many sends carry it). A burst of requests with new passwords therefore counts
  before any of them has reached the provider.
- **One login per password at a time, one refusal per password**: before each login the SMTP
  activity asks :meth:`LoginGuard.begin`. A password the provider refused within the hour is not
  tried again (its sends fail ``SMTP_AUTH_FAILED`` at once); while one connection is logging in
  with a password not yet proven, the others (a send's parallel connections, a burst of sends)
  wait for its answer instead of trying too. So the provider sees at most one refused login per
  wrong password — the limit is on what the provider sees, which is what locks accounts.
- **The limit**: once those reach ``SENDMAIL_SMTP_LOGIN_FAILURES_PER_HOUR`` (5), ``user-send``
  for the account answers 429 with ``Retry-After`` (when enough of them have left the hour for
  the account to be under the limit) without trying the provider.
- **What is never limited**: a password that logged in within the hour (its owner keeps
  sending while someone else guesses), and a password counted as pending already (its other
  sends wait for the same answer).
- **What is stored**: the account as a SHA-256 of provider and address; passwords as their MACs
  (:meth:`~sendmail.sending.sealing.Sealer.macs`), never themselves; at most the hour's entries.

The starter calls :meth:`LoginGuard.admit` before it starts a send; each SMTP connection goes
through a :class:`LoginSession` (``begin`` before a login, ``record`` after its answer,
``release`` when it got none). Table layout (``SendMailSmtpLogins``):
``PartitionKey`` = ``logins``, ``RowKey`` = the account's hash, ``Attempts`` = the entries as
JSON, updated under the row's ETag (concurrent starters and activities never lose an entry).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal, Protocol

from sendmail.contract.errors import QuotaExceeded
from sendmail.platform.tables import LazyTable, TableUnavailable

if TYPE_CHECKING:
    from azure.data.tables import TableClient

logger = logging.getLogger(__name__)

WINDOW = timedelta(hours=1)
DEFAULT_TABLE_NAME = "SendMailSmtpLogins"
_PARTITION = "logins"

Outcome = Literal["pending", "trying", "failed", "ok"]
Gate = Literal["go", "wait", "refused"]
#: A login announced by :func:`begin` and never answered (its activity died) stops holding the
#: others back after this long: longer than a login can take (AUTH LOGIN is three exchanges of
#: up to SENDMAIL_SMTP_TIMEOUT_SECONDS, 30 s, each).
TRY_TIMEOUT = timedelta(seconds=120)
#: How long a connection waits for another one's login with the same password to be answered
#: (past TRY_TIMEOUT: by then the announcement expired), and how often it looks.
LOGIN_WAIT_SECONDS = 130.0
LOGIN_WAIT_POLL_SECONDS = 0.5


class LoginGuardError(TableUnavailable):
    """The record of SMTP logins could not be read or written."""


def account_key(provider: str, sender: str) -> str:
    """The account a login is for, as stored: a SHA-256 of provider and address — the address
    as the provider tells accounts apart, so that spellings of one account share one limit
    (Gmail ignores dots and a ``+tag`` in the local part, and ``googlemail.com`` is
    ``gmail.com``)."""
    local, _, domain = sender.strip().lower().rpartition("@")
    if provider.upper() == "GMAIL" and domain in ("gmail.com", "googlemail.com"):
        local, domain = local.split("+", 1)[0].replace(".", ""), "gmail.com"
    return hashlib.sha256(f"{provider.upper()}:{local}@{domain}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Attempt:
    mac: str
    at: datetime
    outcome: Outcome

    def to_json(self) -> dict[str, str]:
        return {"mac": self.mac, "at": self.at.isoformat(), "outcome": self.outcome}

    @classmethod
    def from_json(cls, raw: Mapping[str, str]) -> Attempt:
        outcome = raw["outcome"]
        if outcome not in ("pending", "trying", "failed", "ok"):
            raise ValueError(outcome)
        return cls(raw["mac"], datetime.fromisoformat(raw["at"]), outcome)  # type: ignore[arg-type]


def _recent(attempts: list[Attempt], now: datetime) -> list[Attempt]:
    return [a for a in attempts if now - a.at < WINDOW]


def admit(attempts: list[Attempt], mac: str, now: datetime, limit: int) -> list[Attempt]:
    """The entries after admitting a send with the password ``mac``, or :class:`QuotaExceeded`
    (429, ``Retry-After``) when the account has used up its failures (see the module docs)."""
    recent = _recent(attempts, now)
    if any(a.mac == mac and a.outcome != "failed" for a in recent):
        return recent  # proven within the hour, or already waiting for its answer
    counted = [a for a in recent if a.outcome == "failed"]
    unanswered: dict[str, Attempt] = {}
    for a in recent:
        if a.outcome in ("pending", "trying") and not _proven(recent, a.mac):
            unanswered.setdefault(a.mac, a)
    counted += unanswered.values()
    if len(counted) >= limit:
        # Admitted again once enough of them have left the hour to be under the limit.
        freeing = sorted(a.at for a in counted)[len(counted) - limit]
        wait = max(1, int((freeing + WINDOW - now).total_seconds()) + 1)
        raise QuotaExceeded(
            f"Too many failed logins for this account in the last hour (at most {limit}); "
            "check the sender address and its app password, and try again later",
            retry_after=wait,
            reason="login_failures",
        )
    return [*recent, Attempt(mac, now, "pending")]


def _proven(attempts: list[Attempt], mac: str) -> bool:
    return any(a.mac == mac and a.outcome in ("ok", "failed") for a in attempts)


def begin(attempts: list[Attempt], mac: str, now: datetime) -> tuple[Gate, list[Attempt]]:
    """Whether a connection may log in with ``mac`` now — ``go`` (proven, or nobody is trying
    it: then this one is, until its answer), ``wait`` (another connection is trying it) or
    ``refused`` (the provider refused it within the hour) — and the entries after."""
    recent = _recent(attempts, now)
    mine = [a for a in recent if a.mac == mac]
    if any(a.outcome == "ok" for a in mine):
        return "go", recent
    if any(a.outcome == "failed" for a in mine):
        return "refused", recent
    if any(a.outcome == "trying" and now - a.at < TRY_TIMEOUT for a in mine):
        return "wait", recent
    return "go", [*recent, Attempt(mac, now, "trying")]


def record(attempts: list[Attempt], mac: str, ok: bool, now: datetime) -> list[Attempt]:
    """The entries after a login with the password ``mac`` succeeded or was refused."""
    recent = [
        a
        for a in _recent(attempts, now)
        if not (a.mac == mac and a.outcome in ("pending", "trying"))
    ]
    # The latest answer is the one that holds: a password that logged in and is refused now
    # (revoked meanwhile) is a refused one, not a proven one.
    recent = [a for a in recent if not (a.mac == mac and a.outcome == "ok")]
    if not ok and any(a.mac == mac and a.outcome == "failed" for a in recent):
        return recent  # refused already: one failure per password
    return [*recent, Attempt(mac, now, "ok" if ok else "failed")]


def release(attempts: list[Attempt], mac: str, now: datetime) -> list[Attempt]:
    """The entries after a login announced by :func:`begin` ended without a final answer (a
    4xx, a timeout, no login method): others may try the password now."""
    return [a for a in _recent(attempts, now) if not (a.mac == mac and a.outcome == "trying")]


class LoginGuard(Protocol):
    def admit(self, account: str, mac: str, now: datetime) -> None:
        """Raise :class:`QuotaExceeded` (429) if the account may not try ``mac`` now."""
        ...

    def begin(self, account: str, mac: str, now: datetime) -> Gate:
        """Before a login with ``mac``: ``go``, ``wait`` or ``refused`` (:func:`begin`)."""
        ...

    def record(self, account: str, mac: str, ok: bool, now: datetime) -> None:
        """A login with ``mac`` was accepted (``ok``) or refused by the provider."""
        ...

    def release(self, account: str, mac: str, now: datetime) -> None:
        """A login announced by :meth:`begin` ended without a final answer."""
        ...


class MemoryLoginGuard:
    """In-process record (tests and development without storage)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._rows: dict[str, list[Attempt]] = {}

    def admit(self, account: str, mac: str, now: datetime) -> None:
        with self._lock:
            self._rows[account] = admit(self._rows.get(account, []), mac, now, self.limit)

    def begin(self, account: str, mac: str, now: datetime) -> Gate:
        with self._lock:
            gate, self._rows[account] = begin(self._rows.get(account, []), mac, now)
            return gate

    def record(self, account: str, mac: str, ok: bool, now: datetime) -> None:
        with self._lock:
            self._rows[account] = record(self._rows.get(account, []), mac, ok, now)

    def release(self, account: str, mac: str, now: datetime) -> None:
        with self._lock:
            self._rows[account] = release(self._rows.get(account, []), mac, now)


class TableLoginGuard:
    """The record in an Azure Table, one row per account (see the module docs)."""

    def __init__(self, table: TableClient, limit: int) -> None:
        self._table = LazyTable(table)
        self.limit = limit

    def admit(self, account: str, mac: str, now: datetime) -> None:
        self._update(account, lambda attempts: admit(attempts, mac, now, self.limit))

    def begin(self, account: str, mac: str, now: datetime) -> Gate:
        gates: list[Gate] = []

        def change(attempts: list[Attempt]) -> list[Attempt]:
            gate, after = begin(attempts, mac, now)
            gates.append(gate)
            return after

        self._update(account, change)
        return gates[-1]  # the one of the write that went through

    def record(self, account: str, mac: str, ok: bool, now: datetime) -> None:
        self._update(account, lambda attempts: record(attempts, mac, ok, now))

    def release(self, account: str, mac: str, now: datetime) -> None:
        self._update(account, lambda attempts: release(attempts, mac, now))

    def _update(self, account: str, change: _Change) -> None:
        try:
            self._table.call("update", lambda: self._cas(account, change))
        except TableUnavailable as e:
            raise LoginGuardError(str(e)) from e

    def _cas(self, account: str, change: _Change) -> None:
        """Read, change, write under the ETag; again if another writer came first."""
        from azure.core import MatchConditions
        from azure.core.exceptions import (
            ResourceExistsError,
            ResourceModifiedError,
            ResourceNotFoundError,
        )
        from azure.data.tables import UpdateMode

        client = self._table.client
        while True:
            try:
                row = client.get_entity(_PARTITION, account)
                attempts = [Attempt.from_json(a) for a in json.loads(row["Attempts"])]
                etag = row.metadata.get("etag")
            except ResourceNotFoundError:
                attempts, etag = [], None
            changed = change(attempts)
            if etag is not None and changed == attempts:
                return  # nothing to write (a connection told to wait only reads)
            entity = {
                "PartitionKey": _PARTITION,
                "RowKey": account,
                "Attempts": json.dumps([a.to_json() for a in changed]),
            }
            try:
                if etag is None:
                    client.create_entity(entity)
                else:
                    client.update_entity(
                        entity,
                        mode=UpdateMode.REPLACE,
                        etag=etag,
                        match_condition=MatchConditions.IfNotModified,
                    )
                return
            except (ResourceExistsError, ResourceModifiedError):
                continue


class _Change(Protocol):
    def __call__(self, attempts: list[Attempt], /) -> list[Attempt]: ...


class LoginSession:
    """One SMTP connection's side of the guard: what ``SmtpSender.send`` calls around each
    login (``before_login=session.may_try``, ``on_login=session.answered``), and
    :meth:`close` when the connection is done.

    ``may_try`` asks :meth:`LoginGuard.begin`, waiting while another connection tries the same
    password; once this connection announced a login it is not asked again until the login is
    answered (a retry after a 4xx or a drop does not wait on itself). A login never answered is
    released at :meth:`close`. A guard that cannot be reached is logged and never stops the send.
    """

    def __init__(
        self,
        guard: Callable[[], LoginGuard],
        account: str,
        mac: str,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._guard = guard
        self._account = account
        self._mac = mac
        self._clock = clock
        self._sleep = sleep
        self._holding = False  # this connection announced a login not answered yet

    def may_try(self) -> bool:
        if self._holding:
            return True
        deadline = time.monotonic() + LOGIN_WAIT_SECONDS
        while True:
            try:
                gate = self._guard().begin(self._account, self._mac, self._clock())
            except Exception:
                logger.warning("the SMTP login guard is unavailable; logging in")
                return True
            if gate != "wait" or time.monotonic() > deadline:
                self._holding = gate == "go"
                return gate != "refused"
            self._sleep(LOGIN_WAIT_POLL_SECONDS)

    def answered(self, ok: bool) -> None:
        self._holding = False
        try:
            self._guard().record(self._account, self._mac, ok, self._clock())
        except Exception:
            logger.warning("an SMTP login was not recorded by the guard")

    def close(self) -> None:
        if self._holding:
            self._holding = False
            try:
                self._guard().release(self._account, self._mac, self._clock())
            except Exception:
                logger.warning("an unanswered SMTP login was not released by the guard")


def login_guard_from_environment(
    limit: int, env: Mapping[str, str] = os.environ, *, table_name: str = DEFAULT_TABLE_NAME
) -> TableLoginGuard:
    """The record in the host's own storage (``AzureWebJobsStorage`` and friends)."""
    from sendmail.platform.storage import StorageUnavailable, table_client

    try:
        return TableLoginGuard(table_client(table_name, env), limit)
    except StorageUnavailable as e:
        raise LoginGuardError(f"the SMTP login record is unavailable: {e}") from e
