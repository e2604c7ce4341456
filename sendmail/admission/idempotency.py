"""``Idempotency-Key`` on the send routes: a retried POST returns the same send, never a new one.

Follows the IETF draft *The Idempotency-Key HTTP Header Field*
(draft-ietf-httpapi-idempotency-key-header): the key is the client's, one per logical request;
the server keeps key → request fingerprint → the send it started.

- **The same key and the same request** (same fingerprint) → the same send: the same id and
  ``Location``, the same 202 (or the 200 / envelope ``Prefer: wait`` gives once it finished);
  nothing is sent again.
- **The same key and another request** → 422 (the draft's "Unprocessable Content").
- **A key whose first request is still being processed** (recorded, its send not started yet)
  → 409 with ``Retry-After``; one request per key ever starts a send.
- **A bad key** (empty, longer than :data:`MAX_KEY_LENGTH`, not printable ASCII) → 400.

The fingerprint is a SHA-256 of the parsed request (canonical JSON of the model's fields),
never of raw bytes (whitespace and key order do not matter) and never of the SMTP password,
sealed or not: the password is stood for by its HMAC under a key derived from the sealing key
(:func:`fingerprints`), so the same key with another password is another request (422) and the
table holds nothing a password could be guessed from. Keys are scoped per route and per caller
(:func:`scoped_key`: a SHA-256 of the caller's function key — the Functions host passes the
``x-functions-key`` header or the ``code`` parameter through to the app, and tells the app
nothing else about who called), and kept at least ``SENDMAIL_IDEMPOTENCY_TTL_HOURS`` (24);
after that a reused key starts a new send.

Atomicity: :meth:`IdempotencyStore.claim` inserts the record if absent (Azure Tables
``create_entity`` fails on an existing row). The record holds the send's instance id, chosen
when the record is made, so every request with that key names the same instance, and a crash
between recording the key and ``start_new`` cannot start two sends: a later request with the key
finds the record without a send and, once :data:`TAKEOVER_AFTER` has passed since its holder last
touched it (the first request is gone), takes it over with an ETag-conditioned update — only one
taker wins — and starts that same instance. Right before ``start_new`` the holder
confirms its hold (:meth:`~IdempotencyStore.confirm`), conditioned on the ETag too: a request whose
admission ran so long that another took the key over finds out there and starts nothing (409),
and a fresh hold gives its ``start_new`` another :data:`TAKEOVER_AFTER`. A request refused before
its send starts (403, 429, 500) drops its record, so a retry after the cause is gone can go
through.

Retention: a record past its TTL names nothing any more (a request with its key starts a new
send), so :meth:`TableIdempotencyStore.purge_expired` deletes such records a page at a time
(:mod:`sendmail.retention`); a record claimed again in the meantime (its ETag changed) is kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sendmail.contract.errors import KeyReused, ValidationFailed
from sendmail.platform.tables import LazyTable

if TYPE_CHECKING:
    from azure.data.tables import TableClient
    from pydantic import BaseModel

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
#: A record whose send has not started this long after its holder last touched it (made, took
#: over or confirmed it) was left by a request that died before starting the send: another
#: request may take it over.
TAKEOVER_AFTER = timedelta(seconds=30)
#: Fields never part of a fingerprint (secrets).
_NOT_FINGERPRINTED = frozenset({"password"})
DEFAULT_TABLE_NAME = "SendMailIdempotency"


def parse_key(value: str | None) -> str | None:
    """The key from the header (a structured-field string: quotes optional), or None if absent.

    Raises :class:`ValidationFailed` (400) for an empty, too long or non-printable key.
    """
    if value is None:
        return None
    key = value.strip()
    if len(key) >= 2 and key.startswith('"') and key.endswith('"'):
        key = key[1:-1]
    if not key:
        raise ValidationFailed(f"{HEADER} must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise ValidationFailed(f"{HEADER} must be at most {MAX_KEY_LENGTH} characters")
    if not all(" " <= char <= "~" for char in key):
        raise ValidationFailed(f"{HEADER} must be printable ASCII")
    return key


def fingerprints(route: str, request: BaseModel, secret_macs: Sequence[str] = ()) -> list[str]:
    """SHA-256 of the route and the parsed request, its secrets left out and stood for by
    ``secret_macs`` (the password's MACs, :meth:`~sendmail.sending.sealing.Sealer.macs`, one per
    configured sealing key, newest first): one fingerprint per MAC, the first one kept. The
    same request with another password is another request (422), and a key rotation does not
    make a retry one while the old key is still configured."""
    # Fields at their defaults are left out: a field added later (html, recipients, category)
    # leaves the fingerprint of a request that does not use it as it was before.
    fields = request.model_dump(mode="json", exclude=set(_NOT_FINGERPRINTED), exclude_defaults=True)
    macs: list[str | None] = [*secret_macs] or [None]
    return [
        hashlib.sha256(
            json.dumps(
                [route, fields, mac], sort_keys=True, ensure_ascii=False, separators=(",", ":")
            ).encode("utf-8")
        ).hexdigest()
        for mac in macs
    ]


def scoped_key(key: str, caller: str | None) -> str:
    """The key as stored: the caller's key (``x-functions-key`` or ``code``) is part of it, as a
    SHA-256, so two callers' identical keys name two sends and no caller can learn of another's.
    ``None`` (no key reached the app: an anonymous route, a host that strips it) is one scope."""
    scope = hashlib.sha256(caller.encode("utf-8")).hexdigest() if caller else "-"
    return f"{scope}:{key}"


@dataclass(frozen=True)
class Claim:
    """What the store knows about a key: the send's instance id, and whether this request
    must start it (it made the record, or took an abandoned one over)."""

    route: str
    key: str
    instance_id: str
    created: datetime
    start: bool
    etag: str | None = None
    #: When the request holding the key last touched it (made it, took it over, confirmed it):
    #: another request may take it over :data:`TAKEOVER_AFTER` after that.
    held_since: datetime | None = None
    #: Its send was started (:meth:`IdempotencyStore.mark_started`): never start it again, even
    #: once the send's history is purged and the status API no longer knows it.
    started: bool = False

    @property
    def held(self) -> datetime:
        return self.held_since or self.created


class IdempotencyStore(Protocol):
    def claim(self, route: str, key: str, fingerprints: Sequence[str], now: datetime) -> Claim:
        """Record the key with the first fingerprint, or read it; raises :class:`KeyReused` when
        the recorded one is none of ``fingerprints``."""
        ...

    def take_over(self, claim: Claim, now: datetime) -> Claim | None:
        """Take an abandoned record over (only one caller wins); None if someone else did."""
        ...

    def confirm(self, claim: Claim, now: datetime) -> Claim | None:
        """Renew the hold of the request about to start the send; None if it lost the key
        (another request took it over meanwhile): then it must not start anything."""
        ...

    def release(self, claim: Claim) -> None:
        """Drop a record whose send never started (best effort)."""
        ...

    def mark_started(self, claim: Claim) -> None:
        """Note in the record that its send started."""
        ...


def _expired(created: datetime, ttl: timedelta, now: datetime) -> bool:
    return created + ttl <= now


def _new_instance_id() -> str:
    return uuid.uuid4().hex


class MemoryIdempotencyStore:
    """A process-local store for tests; same rules as the table store."""

    def __init__(self, ttl: timedelta = timedelta(hours=24)) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str], tuple[str, Claim]] = {}
        self._version = 0

    def claim(self, route: str, key: str, fingerprints: Sequence[str], now: datetime) -> Claim:
        with self._lock:
            found = self._rows.get((route, key))
            if found is None or _expired(found[1].created, self.ttl, now):
                self._version += 1
                claim = Claim(route, key, _new_instance_id(), now, True, str(self._version))
                self._rows[(route, key)] = (fingerprints[0], claim)
                return claim
            stored, claim = found
            if stored not in fingerprints:
                raise KeyReused(_reused(route))
            return replace(claim, start=False)

    def take_over(self, claim: Claim, now: datetime) -> Claim | None:
        with self._lock:
            found = self._rows.get((claim.route, claim.key))
            if found is None or found[1].etag != claim.etag:
                return None
            self._version += 1
            taken = replace(claim, start=True, etag=str(self._version), held_since=now)
            self._rows[(claim.route, claim.key)] = (found[0], taken)
            return taken

    def confirm(self, claim: Claim, now: datetime) -> Claim | None:
        return self.take_over(claim, now)

    def release(self, claim: Claim) -> None:
        with self._lock:
            found = self._rows.get((claim.route, claim.key))
            if found is not None and found[1].instance_id == claim.instance_id:
                del self._rows[(claim.route, claim.key)]

    def mark_started(self, claim: Claim) -> None:
        with self._lock:
            found = self._rows.get((claim.route, claim.key))
            if found is not None and found[1].etag == claim.etag:
                self._version += 1
                marked = replace(found[1], started=True, etag=str(self._version))
                self._rows[(claim.route, claim.key)] = (found[0], marked)

    def purge_expired(self, now: datetime, limit: int | None = None) -> int:
        """Delete records past their TTL (at most ``limit``); how many."""
        with self._lock:
            expired = [k for k, (_, c) in self._rows.items() if _expired(c.created, self.ttl, now)]
            for key in expired[:limit]:
                del self._rows[key]
            return len(expired[:limit])


class TableIdempotencyStore:
    """Keys in an Azure Table: partition = route, row = SHA-256 of the key (any key fits the
    table's key rules); the row holds the fingerprint, the instance id and when it was made."""

    def __init__(self, table: TableClient, ttl: timedelta = timedelta(hours=24)) -> None:
        self._table = table
        self._lazy = LazyTable(table)
        self.ttl = ttl

    @staticmethod
    def _row(key: str) -> str:
        return hashlib.sha256(key.encode("utf-8")).hexdigest()

    def claim(self, route: str, key: str, fingerprints: Sequence[str], now: datetime) -> Claim:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
        from azure.data.tables import UpdateMode

        self._lazy.ensure()
        while True:
            instance_id = _new_instance_id()
            entity = {
                "PartitionKey": route,
                "RowKey": self._row(key),
                "Fingerprint": fingerprints[0],
                "InstanceId": instance_id,
                "CreatedAt": now,
                "HeldSince": now,
            }
            try:
                metadata = self._table.create_entity(entity)
                return Claim(route, key, instance_id, now, True, _etag(metadata))
            except ResourceExistsError:
                pass
            existing = self._table.get_entity(route, self._row(key))
            created = _aware(existing["CreatedAt"])
            etag = existing.metadata.get("etag")
            if _expired(created, self.ttl, now):
                try:  # a reused key after its time: a new send, if nobody else got there first
                    metadata = self._table.update_entity(
                        entity,
                        mode=UpdateMode.REPLACE,
                        etag=etag,
                        match_condition=MatchConditions.IfNotModified,
                    )
                    return Claim(route, key, instance_id, now, True, _etag(metadata))
                except ResourceModifiedError:
                    continue
            if existing["Fingerprint"] not in fingerprints:
                raise KeyReused(_reused(route))
            held = _aware(existing.get("HeldSince") or created)
            started = bool(existing.get("Started", False))
            return Claim(
                route, key, str(existing["InstanceId"]), created, False, etag, held, started
            )

    def take_over(self, claim: Claim, now: datetime) -> Claim | None:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        try:
            metadata = self._table.update_entity(
                {"PartitionKey": claim.route, "RowKey": self._row(claim.key), "HeldSince": now},
                mode=UpdateMode.MERGE,
                etag=claim.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return None
        return replace(claim, start=True, etag=_etag(metadata), held_since=now)

    def confirm(self, claim: Claim, now: datetime) -> Claim | None:
        return self.take_over(claim, now)

    def release(self, claim: Claim) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError

        try:
            self._table.delete_entity(
                claim.route,
                self._row(claim.key),
                etag=claim.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except AzureError:
            logger.warning("an idempotency record could not be dropped; it expires on its own")

    def purge_expired(self, now: datetime, limit: int | None = None) -> int:
        """Delete the records past their TTL: all of them, or at most ``limit`` (a page: call
        again until it answers 0). Each is deleted only as it was read (``If-Match`` its ETag),
        in transactions of up to 100 per route, so a record claimed again meanwhile is kept.
        Returns how many were deleted."""
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import TableTransactionError

        cutoff = now - self.ttl
        found: dict[str, list[tuple[str, str]]] = {}
        count = 0

        def scan() -> None:
            nonlocal count
            rows = self._table.query_entities(
                "CreatedAt le @cutoff",
                parameters={"cutoff": cutoff},
                select=["PartitionKey", "RowKey"],
                results_per_page=min(limit, 1000) if limit else None,
            )
            for row in rows:
                if limit is not None and count >= limit:
                    break
                etag = str(row.metadata.get("etag") or "")
                found.setdefault(str(row["PartitionKey"]), []).append((str(row["RowKey"]), etag))
                count += 1

        self._lazy.call("read", scan)
        deleted = 0
        for route, rows in found.items():
            for start in range(0, len(rows), 100):
                chunk = rows[start : start + 100]
                operations = [
                    (
                        "delete",
                        {"PartitionKey": route, "RowKey": row_key},
                        {"etag": etag, "match_condition": MatchConditions.IfNotModified},
                    )
                    for row_key, etag in chunk
                ]
                try:
                    self._lazy.call(
                        "purge",
                        lambda ops=operations: self._table.submit_transaction(ops),  # type: ignore[misc]
                        passthrough=(TableTransactionError,),
                    )
                    deleted += len(chunk)
                    continue
                except TableTransactionError:
                    pass  # one of them changed or went: each on its own, the others still go
                for row_key, etag in chunk:
                    try:
                        self._table.delete_entity(
                            route, row_key, etag=etag, match_condition=MatchConditions.IfNotModified
                        )
                        deleted += 1
                    except (ResourceModifiedError, ResourceNotFoundError):
                        continue
                    except AzureError:
                        logger.warning("an expired idempotency record could not be deleted")
        return deleted

    def mark_started(self, claim: Claim) -> None:
        """Only the record this claim holds (its ETag): one that expired and was claimed again
        meanwhile belongs to another send."""
        from azure.core import MatchConditions
        from azure.data.tables import UpdateMode

        entity = {"PartitionKey": claim.route, "RowKey": self._row(claim.key), "Started": True}
        self._lazy.call(
            "mark",
            lambda: self._table.update_entity(
                entity,
                mode=UpdateMode.MERGE,
                etag=claim.etag,
                match_condition=MatchConditions.IfNotModified,
            ),
        )


def _etag(metadata: Any) -> str | None:
    return metadata.get("etag") if isinstance(metadata, dict) else None


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _reused(route: str) -> str:
    return (
        f"This {HEADER} was already used for a different {route} request; "
        "use a new key for a new request"
    )


def store_from_environment(ttl_hours: float) -> IdempotencyStore:
    """The table store in the host's own storage account (see :mod:`sendmail.platform.storage`)."""
    from sendmail.platform.storage import table_client

    return TableIdempotencyStore(table_client(DEFAULT_TABLE_NAME), timedelta(hours=ttl_hours))


def now() -> datetime:
    return datetime.now(UTC)
