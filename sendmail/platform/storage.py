"""Clients for the Functions host's own storage account: tables, queues and blobs, as the host
reads them.

The send ledger, the sends table, the idempotency keys, the quota reservations (Azure Tables),
the task hub's work-item queue (Azure Queues) and each send's recipient list and content (Azure
Blobs) all live in the storage account the Functions host itself uses,
configured the way the host is (``connection`` is ``AzureWebJobsStorage`` unless told otherwise):

1. ``{connection}``: a connection string; ``UseDevelopmentStorage=true`` means Azurite on
   ``127.0.0.1`` (tables on 10002, queues on 10001, blobs on 10000) or
   ``DevelopmentStorageProxyUri``.
2. ``{connection}__tableServiceUri`` / ``__queueServiceUri`` / ``__blobServiceUri``:
   identity-based, with ``{connection}__credential=managedidentity`` and
   ``{connection}__clientId`` (a user-assigned identity); without ``__credential``,
   ``DefaultAzureCredential``.
3. ``{connection}__accountName``: identity-based at ``https://{name}.{service}.core.windows.net``.

:class:`StorageUnavailable` says none is set (or what is set cannot be used). Building a client
does no network I/O. Azure SDK imports happen inside the functions: importing this module is
cheap.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableClient
    from azure.storage.blob import ContainerClient
    from azure.storage.queue import QueueClient

logger = logging.getLogger(__name__)

Service = Literal["table", "queue", "blob"]

#: Azure Storage's well-known development account (Azurite, the storage emulator).
DEV_ACCOUNT_NAME = "devstoreaccount1"
DEV_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
DEV_PORTS: dict[Service, int] = {"table": 10002, "queue": 10001, "blob": 10000}


def azure_error_text(error: BaseException) -> str:
    """An Azure SDK error as the service reports it: its type and HTTP status, never its message
    (which may carry a URL with a key or an address in it)."""
    status = getattr(error, "status_code", None)
    return f"{type(error).__name__}{f' (HTTP {status})' if status else ''}"


class CreatedOnce:
    """A table or container created on first use, once per process: racing creators and one
    that exists already are fine; Azure errors are raised as they are."""

    def __init__(self, create: Callable[[], object], what: str) -> None:
        self._create = create
        self._what = what
        self._ready = threading.Event()
        self._lock = threading.Lock()

    def ensure(self) -> None:
        if self._ready.is_set():
            return
        from azure.core.exceptions import ResourceExistsError

        with self._lock:
            if self._ready.is_set():
                return
            try:
                self._create()
                logger.info("Created %s", self._what)
            except ResourceExistsError:
                pass
            self._ready.set()


class StorageUnavailable(Exception):
    """No storage is configured for the service's tables, queues or blobs, or it is unusable."""


def client_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Bounded defaults: azure-core would wait 300 s per read and retry up to 10 times."""
    merged: dict[str, Any] = {"connection_timeout": 10, "read_timeout": 30, "retry_total": 3}
    merged.update(options)
    return merged


def _parse_connection_string(connection_string: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for segment in connection_string.split(";"):
        name, sep, value = segment.strip().partition("=")
        if sep and name:
            parts[name.strip().lower()] = value.strip()
    return parts


def resolve_development_storage(connection_string: str) -> str:
    """Expand ``UseDevelopmentStorage=true[;DevelopmentStorageProxyUri=...]`` to Azurite's
    well-known account; any other connection string is returned unchanged."""
    parts = _parse_connection_string(connection_string)
    if parts.get("usedevelopmentstorage", "").lower() != "true":
        return connection_string
    base = parts.get("developmentstorageproxyuri", "http://127.0.0.1").rstrip("/")
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT_NAME};"
        f"AccountKey={DEV_ACCOUNT_KEY};"
        f"TableEndpoint={base}:{DEV_PORTS['table']}/{DEV_ACCOUNT_NAME};"
        f"QueueEndpoint={base}:{DEV_PORTS['queue']}/{DEV_ACCOUNT_NAME};"
        f"BlobEndpoint={base}:{DEV_PORTS['blob']}/{DEV_ACCOUNT_NAME};"
    )


def credential_from_environment(env: Mapping[str, str], connection: str) -> TokenCredential:
    kind = env.get(f"{connection}__credential", "").strip().lower()
    client_id = env.get(f"{connection}__clientId", "").strip() or None
    if kind == "managedidentity":
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=client_id)
    if kind:
        raise StorageUnavailable(
            f"{connection}__credential={kind!r} is not supported here; "
            "use 'managedidentity' or leave it unset"
        )
    # As the Functions host does without __credential: a developer's identity locally, the
    # system-assigned managed identity in Azure.
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=client_id)


def storage_target(
    service: Service, env: Mapping[str, str] = os.environ, connection: str = "AzureWebJobsStorage"
) -> tuple[str, None] | tuple[None, str]:
    """(connection string, None) or (None, service URI) for ``service``, as listed above."""
    connection_string = env.get(connection, "").strip()
    if connection_string:
        return resolve_development_storage(connection_string), None
    service_uri = env.get(f"{connection}__{service}ServiceUri", "").strip()
    account_name = env.get(f"{connection}__accountName", "").strip()
    if not service_uri and account_name:
        service_uri = f"https://{account_name}.{service}.core.windows.net"
    if service_uri:
        return None, service_uri
    raise StorageUnavailable(
        f"no storage configured: set {connection} (a connection string) or "
        f"{connection}__{service}ServiceUri / {connection}__accountName (identity-based)"
    )


_C = TypeVar("_C")


def _client(
    service: Service,
    env: Mapping[str, str],
    connection: str,
    from_connection_string: Callable[[str], _C],
    from_uri: Callable[[str, TokenCredential], _C],
) -> _C:
    """A client of ``service``, from a connection string or a service URI and a credential, as
    :func:`storage_target` finds them; a malformed setting is :class:`StorageUnavailable`."""
    connection_string, uri = storage_target(service, env, connection)
    try:
        if connection_string is not None:
            return from_connection_string(connection_string)
        assert uri is not None
        return from_uri(uri, credential_from_environment(env, connection))
    except ValueError as e:  # the SDK's own words on a malformed setting: no secret values
        raise StorageUnavailable(f"the storage settings are unusable: {e}") from e


def table_client(
    table_name: str,
    env: Mapping[str, str] = os.environ,
    *,
    connection: str = "AzureWebJobsStorage",
    **options: Any,
) -> TableClient:
    from azure.data.tables import TableClient

    bounded = client_options(options)
    return _client(
        "table",
        env,
        connection,
        lambda cs: TableClient.from_connection_string(cs, table_name=table_name, **bounded),
        lambda uri, cred: TableClient(
            endpoint=uri, table_name=table_name, credential=cred, **bounded
        ),
    )


def queue_client(
    queue_name: str,
    env: Mapping[str, str] = os.environ,
    *,
    connection: str = "AzureWebJobsStorage",
    **options: Any,
) -> QueueClient:
    from azure.storage.queue import QueueClient

    bounded = client_options(options)
    return _client(
        "queue",
        env,
        connection,
        lambda cs: QueueClient.from_connection_string(cs, queue_name=queue_name, **bounded),
        lambda uri, cred: QueueClient(
            account_url=uri, queue_name=queue_name, credential=cred, **bounded
        ),
    )


def container_client(
    container: str,
    env: Mapping[str, str] = os.environ,
    *,
    connection: str = "AzureWebJobsStorage",
    **options: Any,
) -> ContainerClient:
    from azure.storage.blob import ContainerClient

    bounded = client_options(options)
    return _client(
        "blob",
        env,
        connection,
        lambda cs: ContainerClient.from_connection_string(cs, container_name=container, **bounded),
        lambda uri, cred: ContainerClient(
            account_url=uri, container_name=container, credential=cred, **bounded
        ),
    )
