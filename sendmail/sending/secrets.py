"""Secrets a send needs while it runs — the SMTP password — kept apart from it, and forgotten.

The Durable orchestration input and history are kept by the task hub, returned by its status
API and never purged by the service itself, so no secret may ride in them, not even sealed: a
sealed token in a month-old history opens with the key of the day. Instead:

- **Where**: the starter stores the password under the send's id (:meth:`SecretStore.put`); the
  orchestration carries only that reference, and the SMTP activity reads it back
  (:meth:`SecretStore.get`). Table ``SendMailSecrets``: ``PartitionKey`` = ``secret``,
  ``RowKey`` = the reference, the token, the id of the key that sealed it, and when it expires.
- **For how long**: until the send ends — its orchestration's last step deletes it
  (:meth:`SecretStore.delete`), so it is gone within moments of the last message — or, if that
  step never runs (a send terminated by hand), until it expires (:data:`SECRET_LIFETIME`), when
  :meth:`SecretStore.prune` deletes it.
- **Under which key**: each secret is sealed (Fernet) with a *data key* of the key ring
  (``SendMailSealingKeys``); a new data key is made when the newest is :data:`ROTATE_AFTER`
  (7 days) old, so keys rotate weekly without anyone. A data key is stored wrapped by the
  configured sealing key (``SENDMAIL_SEALING_KEY``, Key Vault), and dropped by
  :meth:`SecretStore.prune` once no stored secret uses it (and it is older than the rotation
  period plus :data:`DROP_GRACE`): a secret sealed with a dropped key — a copy in a backup, a
  snapshot — cannot be opened any more, whoever holds the configured key.
- **What is never kept**: the password in plain text, anywhere; a data key unwrapped.

Pruning runs at most every :data:`PRUNE_EVERY` per process when a secret is stored, and after
each send that used one; a scheduled send's secret simply lives (and keeps its key) until its
send has run. The configured sealing key itself changes only by hand (docs/deploy.md).
"""

from __future__ import annotations

import logging
import os
import secrets as random
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import SecretStr

from sendmail.platform.tables import LazyTable, TableUnavailable, table_key
from sendmail.sending.sealing import Sealer, SealingError

if TYPE_CHECKING:
    from azure.data.tables import TableClient

logger = logging.getLogger(__name__)

#: A stored secret nobody deleted expires this long after it was stored.
SECRET_LIFETIME = timedelta(days=7)
#: A data key seals new secrets for this long; then a new one is made.
ROTATE_AFTER = timedelta(days=7)
#: A data key no secret uses is dropped only once it is this much older than ROTATE_AFTER: no
#: store that chose it while it was current can still be about to write its secret.
DROP_GRACE = timedelta(hours=1)
PRUNE_EVERY = timedelta(minutes=10)
SECRETS_TABLE = "SendMailSecrets"
KEYS_TABLE = "SendMailSealingKeys"


class SecretGone(Exception):
    """No secret is stored under this reference (its send ended, it expired, or never was)."""


class SecretStoreError(TableUnavailable):
    """The secrets or the key ring could not be read or written."""


class Rows(Protocol):
    """One partition of a table: rows by key (the two tables of the store)."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, fields: dict[str, Any]) -> None: ...

    def delete(self, key: str) -> None: ...

    def all(self) -> Iterator[tuple[str, dict[str, Any]]]: ...


@dataclass(frozen=True, slots=True)
class Pruned:
    secrets: int
    keys: int


class SecretStore:
    """Secrets by reference, sealed with a rotating data key (see the module docs)."""

    def __init__(
        self,
        secrets: Rows,
        keys: Rows,
        sealer: Callable[[], Sealer],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._secrets = secrets
        self._keys = keys
        self._sealer = sealer
        self._clock = clock
        self._lock = threading.Lock()
        self._pruned_at: datetime | None = None

    def put(self, ref: str, secret: SecretStr, *, expires: datetime | None = None) -> None:
        """Store ``secret`` under ``ref`` until deleted or ``expires`` (default: now plus
        :data:`SECRET_LIFETIME`)."""
        from cryptography.fernet import Fernet

        now = self._clock()
        key_id, key = self._current_key(now)
        token = Fernet(key).encrypt(secret.get_secret_value().encode("utf-8")).decode("ascii")
        self._secrets.put(
            ref,
            {"KeyId": key_id, "Token": token, "ExpiresAt": expires or now + SECRET_LIFETIME},
        )
        self._maybe_prune(now)

    def get(self, ref: str) -> SecretStr:
        """The secret stored under ``ref``, or :class:`SecretGone`."""
        from cryptography.fernet import Fernet, InvalidToken

        row = self._secrets.get(ref)
        if row is None or _aware(row["ExpiresAt"]) <= self._clock():
            raise SecretGone(ref)
        key_row = self._keys.get(str(row["KeyId"]))
        if key_row is None:
            raise SecretGone(ref)  # its key was dropped: nothing can open it
        try:
            key = self._sealer().unwrap(str(key_row["Wrapped"]))
            return SecretStr(Fernet(key).decrypt(str(row["Token"]).encode("ascii")).decode())
        except (SealingError, InvalidToken, UnicodeError) as e:
            raise SecretGone(ref) from e

    def delete(self, ref: str) -> None:
        """Forget the secret under ``ref`` (nothing if there is none)."""
        self._secrets.delete(ref)

    def prune(self) -> Pruned:
        """Delete expired secrets, then drop the data keys no stored secret uses and that are
        past their rotation (plus :data:`DROP_GRACE`)."""
        now = self._clock()
        in_use: set[str] = set()
        expired = 0
        for ref, row in list(self._secrets.all()):
            if _aware(row["ExpiresAt"]) <= now:
                self._secrets.delete(ref)
                expired += 1
            else:
                in_use.add(str(row["KeyId"]))
        dropped = 0
        for key_id, row in list(self._keys.all()):
            retired = _aware(row["CreatedAt"]) + ROTATE_AFTER + DROP_GRACE <= now
            if retired and key_id not in in_use:
                self._keys.delete(key_id)
                dropped += 1
        with self._lock:
            self._pruned_at = now
        return Pruned(expired, dropped)

    def key_ids(self) -> list[str]:
        """The data keys on the ring, oldest first (for operators and tests)."""
        return sorted(key_id for key_id, _ in self._keys.all())

    def _current_key(self, now: datetime) -> tuple[str, bytes]:
        """The newest data key if it is younger than :data:`ROTATE_AFTER`, else a new one."""
        from cryptography.fernet import Fernet

        current = [
            (key_id, row)
            for key_id, row in self._keys.all()
            if now - _aware(row["CreatedAt"]) < ROTATE_AFTER
        ]
        for key_id, row in sorted(current, key=lambda item: _aware(item[1]["CreatedAt"]))[::-1]:
            try:
                return key_id, self._sealer().unwrap(str(row["Wrapped"]))
            except SealingError:
                continue  # wrapped by a sealing key no longer configured: make a new one
        key = Fernet.generate_key()
        key_id = f"{now:%Y%m%dT%H%M%SZ}-{random.token_hex(4)}"
        self._keys.put(key_id, {"Wrapped": self._sealer().wrap(key), "CreatedAt": now})
        return key_id, key

    def _maybe_prune(self, now: datetime) -> None:
        """Prune now and then while storing: best effort, never the storing request's failure
        (the end of each send prunes too)."""
        with self._lock:
            due = self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY
            if due:
                self._pruned_at = now
        if due:
            try:
                self.prune()
            except Exception:
                logger.warning("the secret store could not be pruned; it will be again later")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class MemoryRows:
    """Rows in a dict (tests and development without storage)."""

    def __init__(self) -> None:
        self._rows: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._rows.get(key)
            return dict(found) if found is not None else None

    def put(self, key: str, fields: dict[str, Any]) -> None:
        with self._lock:
            self._rows[key] = dict(fields)

    def delete(self, key: str) -> None:
        with self._lock:
            self._rows.pop(key, None)

    def all(self) -> Iterator[tuple[str, dict[str, Any]]]:
        with self._lock:
            return iter([(k, dict(v)) for k, v in self._rows.items()])


class TableRows:
    """One partition of an Azure Table (``RowKey`` = the key, escaped)."""

    def __init__(self, table: TableClient, partition: str) -> None:
        self._table = LazyTable(table)
        self._partition = partition

    def _call(self, operation: str, action: Callable[[], Any]) -> Any:
        try:
            return self._table.call(operation, action)
        except TableUnavailable as e:
            raise SecretStoreError(str(e)) from e

    def get(self, key: str) -> dict[str, Any] | None:
        from azure.core.exceptions import ResourceNotFoundError

        def read() -> dict[str, Any] | None:
            try:
                entity = self._table.client.get_entity(self._partition, table_key(key))
            except ResourceNotFoundError:
                return None
            return dict(entity)

        found: dict[str, Any] | None = self._call("read", read)
        return found

    def put(self, key: str, fields: dict[str, Any]) -> None:
        from azure.data.tables import UpdateMode

        entity = {"PartitionKey": self._partition, "RowKey": table_key(key), "Key": key, **fields}
        self._call(
            "write", lambda: self._table.client.upsert_entity(entity, mode=UpdateMode.REPLACE)
        )

    def delete(self, key: str) -> None:
        self._call(
            "delete", lambda: self._table.client.delete_entity(self._partition, table_key(key))
        )

    def all(self) -> Iterator[tuple[str, dict[str, Any]]]:
        def read() -> list[tuple[str, dict[str, Any]]]:
            rows = self._table.client.query_entities(
                "PartitionKey eq @p", parameters={"p": self._partition}
            )
            return [(str(row["Key"]), dict(row)) for row in rows]

        listed: list[tuple[str, dict[str, Any]]] = self._call("list", read)
        return iter(listed)


def secret_store_from_environment(
    sealer: Callable[[], Sealer], env: Mapping[str, str] = os.environ
) -> SecretStore:
    """The store in the host's own storage (``AzureWebJobsStorage`` and friends)."""
    from sendmail.platform.storage import StorageUnavailable, table_client

    try:
        return SecretStore(
            TableRows(table_client(SECRETS_TABLE, env), "secret"),
            TableRows(table_client(KEYS_TABLE, env), "key"),
            sealer,
        )
    except StorageUnavailable as e:
        raise SecretStoreError(f"the secret store is unavailable: {e}") from e
