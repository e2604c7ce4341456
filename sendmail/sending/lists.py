"""A send's recipient list and content, stored once in Blob Storage and read by slices.

The starter writes them before the orchestration starts; the orchestration input carries only
the reference (the send's id) and counts, and each batch activity reads its own slice. So no
Durable input, output or history grows with the list (docs/architecture.md, "Size").

Layout, under ``{ref}/`` in the container (:data:`sendmail.platform.blobs.DEFAULT_CONTAINER`):

- ``content.json`` — the mail: sender, subject, body (one copy per send, not one per batch);
- ``recipients.ndjson`` — one JSON value per line, in request order: a JSON string (the address),
  or, for a personalised send, ``[address, {variable: value, ...}]``;
- ``recipients.index.json`` — ``{"count": N, "chunk": C, "offsets": [...]}``: the byte offset of
  every C-th line (and the end), so a slice is one ranged read of at most C lines too many on
  each side.

The blobs are written once and never changed: readers cache the index and the content per
process (:func:`stored_send`).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from sendmail.platform.blobs import BlobStore
from sendmail.sending.jobs import Mail

#: Lines between two recorded offsets: a slice reads at most this many lines too many per side.
CHUNK = 1000

_CONTENT = "content.json"
_LIST = "recipients.ndjson"
_INDEX = "recipients.index.json"


class StoredListError(Exception):
    """The stored list is not what this module writes (or a slice lies outside it)."""


def blob_name(ref: str, part: str) -> str:
    return f"{ref}/{part}"


#: What the list holds per recipient: the address, or the address and its variables' values.
Entry = str | tuple[str, dict[str, str]]


def encode_list(recipients: Sequence[Entry]) -> tuple[bytes, list[int]]:
    """The list file and the offset of every :data:`CHUNK`-th line, then of the end."""
    lines = [json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in recipients]
    offsets = [0]
    position = 0
    for number, line in enumerate(lines, 1):
        position += len(line)
        if number % CHUNK == 0 and number != len(lines):
            offsets.append(position)
    offsets.append(position)
    return b"".join(lines), offsets


def store_send(store: BlobStore, ref: str, recipients: Sequence[Entry], mail: Mail) -> None:
    """Write the send's content, list and index (index last: a reader that finds it finds the
    rest)."""
    data, offsets = encode_list(recipients)
    store.put(blob_name(ref, _CONTENT), mail.model_dump_json().encode("utf-8"))
    store.put(blob_name(ref, _LIST), data)
    index = {"count": len(recipients), "chunk": CHUNK, "offsets": offsets}
    store.put(blob_name(ref, _INDEX), json.dumps(index, separators=(",", ":")).encode())


def delete_send(store: BlobStore, ref: str) -> int:
    """Delete the send's stored list and content (retention); how many blobs went."""
    return store.delete_prefix(f"{ref}/")


@dataclass(frozen=True, slots=True)
class _Index:
    count: int
    chunk: int
    offsets: tuple[int, ...]


class StoredSend:
    """Reads one send's stored content and list slices (what a batch activity needs)."""

    def __init__(self, store: BlobStore, ref: str) -> None:
        self._store = store
        self.ref = ref
        self._index: _Index | None = None
        self._mail: Mail | None = None
        self._lock = threading.Lock()

    def mail(self) -> Mail:
        if self._mail is None:
            raw = self._store.get(blob_name(self.ref, _CONTENT))
            mail = Mail.model_validate_json(raw)
            with self._lock:
                self._mail = mail
        return self._mail

    def count(self) -> int:
        return self._read_index().count

    def recipients(self, start: int, count: int) -> list[str]:
        """Recipients ``start`` .. ``start + count - 1`` (request order): their addresses."""
        return [address for address, _ in self.entries(start, count)]

    def entries(self, start: int, count: int) -> list[tuple[str, dict[str, str]]]:
        """Recipients ``start`` .. ``start + count - 1`` with their variables' values (empty
        for a send that is not personalised)."""
        index = self._read_index()
        if start < 0 or count < 0 or start + count > index.count:
            raise StoredListError(
                f"slice {start}+{count} outside the list of {index.count} recipients"
            )
        if count == 0:
            return []
        first = start // index.chunk
        last = (start + count - 1) // index.chunk
        begin, end = index.offsets[first], index.offsets[last + 1]
        data = self._store.get(blob_name(self.ref, _LIST), begin, end - begin)
        lines = data.split(b"\n")
        skip = start - first * index.chunk
        chosen = lines[skip : skip + count]
        if len(chosen) != count:
            raise StoredListError(f"the stored list {self.ref} is shorter than its index says")
        entries: list[tuple[str, dict[str, str]]] = []
        for line in chosen:
            value = json.loads(line)
            if isinstance(value, str):
                entries.append((value, {}))
            elif (
                isinstance(value, list)
                and len(value) == 2
                and isinstance(value[0], str)
                and isinstance(value[1], dict)
            ):
                entries.append((value[0], value[1]))
            else:
                raise StoredListError(f"the stored list {self.ref} holds a line of another kind")
        return entries

    def _read_index(self) -> _Index:
        if self._index is None:
            raw = json.loads(self._store.get(blob_name(self.ref, _INDEX)))
            try:
                index = _Index(
                    count=int(raw["count"]),
                    chunk=int(raw["chunk"]),
                    offsets=tuple(int(o) for o in raw["offsets"]),
                )
            except (KeyError, TypeError, ValueError) as e:
                raise StoredListError(f"the stored list {self.ref} has no usable index") from e
            with self._lock:
                self._index = index
        return self._index


_CACHE_SIZE = 64
_cache: OrderedDict[tuple[int, str], StoredSend] = OrderedDict()
_cache_lock = threading.Lock()


def stored_send(store: BlobStore, ref: str) -> StoredSend:
    """The reader of ``ref``, shared by this process's activities (index and content are read
    once per process: the blobs never change)."""
    key = (id(store), ref)
    with _cache_lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return found
        reader = StoredSend(store, ref)
        _cache[key] = reader
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
        return reader
