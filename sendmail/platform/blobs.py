"""Blobs of the service's own: whole objects written once and read whole or by byte range.

A send's recipient list and content are written here at admission and read by its batch
activities (:mod:`sendmail.sending.lists`), so neither rides in the Durable history. The
container lives in the Functions host's own storage account (``sendmail.platform.storage``:
Azurite's blob service locally, identity-based in Azure) and is created on first use.

:class:`MemoryBlobStore` is the process-local store for unit tests. Azure errors become
:class:`BlobUnavailable` (the operation and HTTP status, no secret); a blob that does not exist
is :class:`BlobNotFound`. Azure SDK imports happen inside the functions.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: The container of each send's list and content, in the host's storage account.
DEFAULT_CONTAINER = "sendmail-sends"


class BlobUnavailable(Exception):
    """A blob could not be read or written (or no blob storage is configured)."""


class BlobNotFound(BlobUnavailable):
    """The blob does not exist (never written, or deleted)."""


@runtime_checkable
class BlobStore(Protocol):
    def put(self, name: str, data: bytes) -> None:
        """Write ``data`` as blob ``name``, replacing it."""
        ...

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """The blob's bytes, or ``length`` bytes from ``offset``."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose name starts with ``prefix``; how many were deleted."""
        ...


class MemoryBlobStore:
    """A process-local blob store (unit tests). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.blobs: dict[str, bytes] = {}
        self.reads = 0

    def put(self, name: str, data: bytes) -> None:
        with self._lock:
            self.blobs[name] = bytes(data)

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        with self._lock:
            self.reads += 1
            if name not in self.blobs:
                raise BlobNotFound(f"no blob {name}")
            data = self.blobs[name]
        end = len(data) if length is None else offset + length
        return data[offset:end]

    def delete_prefix(self, prefix: str) -> int:
        with self._lock:
            names = [n for n in self.blobs if n.startswith(prefix)]
            for name in names:
                del self.blobs[name]
            return len(names)


class AzureBlobStore:
    """Blobs in one container of Azure Blob Storage (or Azurite), created on first write."""

    def __init__(self, container: ContainerClient) -> None:
        from sendmail.platform.storage import CreatedOnce

        self._container = container
        self._created = CreatedOnce(
            container.create_container, f"the blob container {container.container_name}"
        )

    @property
    def container_client(self) -> ContainerClient:
        return self._container

    def put(self, name: str, data: bytes) -> None:
        def upload() -> None:
            self._created.ensure()
            # The SDK splits a large body into blocks (4 MiB each) and commits them at the end:
            # a reader never sees a half-written list.
            self._container.upload_blob(name, data, overwrite=True, max_concurrency=4)

        self._call("write", upload)

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        def download() -> bytes:
            if length == 0:
                return b""
            stream = self._container.download_blob(name, offset=offset, length=length)
            return stream.readall()

        return self._call("read", download)

    def delete_prefix(self, prefix: str) -> int:
        def delete() -> int:
            names = [b.name for b in self._container.list_blobs(name_starts_with=prefix)]
            for start in range(0, len(names), 256):  # a batch request takes at most 256
                self._container.delete_blobs(*names[start : start + 256])
            return len(names)

        return self._call("delete", delete)

    def _call(self, operation: str, action: Callable[[], _T]) -> _T:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        from sendmail.platform.storage import azure_error_text

        try:
            return action()
        except ResourceNotFoundError as e:
            raise BlobNotFound(
                f"blob {operation} failed in container {self._container.container_name}: not found"
            ) from e
        except AzureError as e:
            raise BlobUnavailable(
                f"blob {operation} failed in container {self._container.container_name}: "
                f"{azure_error_text(e)}"
            ) from e


def blob_store_from_environment(
    env: Mapping[str, str] = os.environ,
    *,
    container: str = DEFAULT_CONTAINER,
    connection: str = "AzureWebJobsStorage",
) -> AzureBlobStore:
    """The blob container in the storage the Functions host uses (``sendmail.platform.storage``
    says how it is found). Builds the client only: no network I/O."""
    from sendmail.platform.storage import StorageUnavailable, container_client

    try:
        return AzureBlobStore(container_client(container, env, connection=connection))
    except StorageUnavailable as e:
        raise BlobUnavailable(f"blob storage cannot be used: {e}") from e
