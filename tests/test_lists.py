"""A send's stored list and content: written once, read by slices — on the memory store and on
Azurite's blob service."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from devhost.emulators.azurite import Azurite, _free_port
from sendmail.platform.blobs import (
    AzureBlobStore,
    BlobNotFound,
    BlobStore,
    BlobUnavailable,
    MemoryBlobStore,
    blob_store_from_environment,
)
from sendmail.sending.jobs import Mail
from sendmail.sending.lists import (
    CHUNK,
    StoredListError,
    StoredSend,
    delete_send,
    encode_list,
    store_send,
    stored_send,
)

MAIL = Mail(sender="Ops <ops@example.com>", subject="Grüße — 件名 ✉", body="Hallo\n\nline\u2028two")

#: Addresses a JSON line must carry unchanged: IDN domains, UTF-8 local parts, quoted local
#: parts with JSON's special characters, and code points other line splitters break on.
ODD = [
    "josé@exämple.com",
    "用户@例子.广告",
    "почта@пример.рф",
    "user@xn--bcher-kva.example",
    '"a b\\"c"@example.com',
    "nel\u0085@example.com",
    "ls\u2028@example.com",
    "emoji\U0001f4e7@example.com",
]


def addresses(count: int) -> list[str]:
    """``count`` distinct addresses, an odd one every 97."""
    return [
        ODD[(i // 97) % len(ODD)].replace("@", f"+{i}@", 1) if i % 97 == 0 else f"r{i}@example.com"
        for i in range(count)
    ]


def _container() -> str:
    return "lists-" + uuid.uuid4().hex[:12]


@pytest.fixture(params=["memory", "azurite"])
def store(request: pytest.FixtureRequest) -> Iterator[BlobStore]:
    if request.param == "memory":
        yield MemoryBlobStore()
        return
    azurite: Azurite = request.getfixturevalue("azurite_all")
    blobs = blob_store_from_environment(
        {"AzureWebJobsStorage": azurite.connection_string}, container=_container()
    )
    yield blobs
    blobs.container_client.close()


def _ref() -> str:
    return f"send-{uuid.uuid4().hex}"


# --- the list, on both stores ---------------------------------------------------------------------
@pytest.mark.parametrize("total", [1, 999, 1000, 1001, 2000, 2537])
def test_every_slice_at_a_chunk_edge_reads_back_the_same_recipients(
    store: BlobStore, total: int
) -> None:
    recipients = addresses(total)
    ref = _ref()
    store_send(store, ref, recipients, MAIL)
    reader = StoredSend(store, ref)

    assert reader.count() == total
    assert reader.recipients(0, total) == recipients
    edges = {0, 1, 998, 999, 1000, 1001, 1999, 2000, 2001, total - 1, total}
    for start in sorted(e for e in edges if e <= total):
        for count in (0, 1, 2, 1000, 1001, total - start):
            if start + count <= total:
                assert reader.recipients(start, count) == recipients[start : start + count], (
                    start,
                    count,
                )


def test_odd_addresses_round_trip(store: BlobStore) -> None:
    ref = _ref()
    store_send(store, ref, ODD, MAIL)
    reader = StoredSend(store, ref)
    assert reader.recipients(0, len(ODD)) == ODD
    for index, address in enumerate(ODD):
        assert reader.recipients(index, 1) == [address]


def test_an_empty_list_has_count_0_and_only_the_empty_slice(store: BlobStore) -> None:
    ref = _ref()
    store_send(store, ref, [], MAIL)
    reader = StoredSend(store, ref)
    assert reader.count() == 0
    assert reader.recipients(0, 0) == []
    with pytest.raises(StoredListError):
        reader.recipients(0, 1)
    assert reader.mail() == MAIL


@pytest.mark.parametrize(("start", "count"), [(-1, 1), (0, 2538), (2537, 1), (2000, 600), (5, -1)])
def test_a_slice_outside_the_list_raises(store: BlobStore, start: int, count: int) -> None:
    ref = _ref()
    store_send(store, ref, addresses(2537), MAIL)
    with pytest.raises(StoredListError, match="outside the list of 2537"):
        StoredSend(store, ref).recipients(start, count)


def test_the_content_round_trips(store: BlobStore) -> None:
    ref = _ref()
    store_send(store, ref, ["a@example.com"], MAIL)
    assert StoredSend(store, ref).mail() == MAIL
    assert json.loads(store.get(f"{ref}/content.json")) == MAIL.model_dump()


def test_the_layout_is_a_line_per_recipient_and_an_index_of_offsets(store: BlobStore) -> None:
    ref = _ref()
    recipients = addresses(2537)
    store_send(store, ref, recipients, MAIL)

    data = store.get(f"{ref}/recipients.ndjson")
    lines = data.decode("utf-8").split("\n")
    assert lines[-1] == ""  # every line ends with a newline
    assert [json.loads(line) for line in lines[:-1]] == recipients
    index = json.loads(store.get(f"{ref}/recipients.index.json"))
    assert (index["count"], index["chunk"]) == (2537, CHUNK)
    assert index["offsets"][0] == 0
    assert index["offsets"][-1] == len(data)
    for number, offset in enumerate(index["offsets"][1:-1], 1):
        assert offset == len(b"".join(data.split(b"\n")[: number * CHUNK])) + number * CHUNK
    # the file holds addresses, not their escapes: UTF-8 as it is
    assert "用户".encode() in data


def test_a_missing_send_raises_blob_not_found(store: BlobStore) -> None:
    reader = StoredSend(store, _ref())
    with pytest.raises(BlobNotFound):
        reader.count()
    with pytest.raises(BlobNotFound):
        reader.recipients(0, 1)
    with pytest.raises(BlobNotFound):
        reader.mail()


def test_delete_send_removes_its_blobs_and_nothing_else(store: BlobStore) -> None:
    ref = _ref()
    store_send(store, ref, addresses(10), MAIL)
    store_send(store, ref + "0", addresses(3), MAIL)  # its name starts with ref: not deleted

    assert delete_send(store, ref) == 3

    with pytest.raises(BlobNotFound):
        StoredSend(store, ref).count()
    with pytest.raises(BlobNotFound):
        StoredSend(store, ref).mail()
    assert StoredSend(store, ref + "0").recipients(0, 3) == addresses(3)
    assert delete_send(store, ref) == 0


def test_storing_again_replaces_the_list(store: BlobStore) -> None:
    ref = _ref()
    store_send(store, ref, addresses(2001), MAIL)
    store_send(store, ref, ["only@example.com"], MAIL)
    reader = StoredSend(store, ref)
    assert reader.count() == 1
    assert reader.recipients(0, 1) == ["only@example.com"]


def test_a_ranged_get_reads_the_asked_bytes(store: BlobStore) -> None:
    store.put("r/blob", bytes(range(256)) * 4)
    assert store.get("r/blob") == bytes(range(256)) * 4
    assert store.get("r/blob", 10, 5) == bytes(range(10, 15))
    assert store.get("r/blob", 1020) == bytes(range(252, 256))
    assert store.get("r/blob", 3, 0) == b""


# --- what a slice reads ---------------------------------------------------------------------------
class RecordingStore(MemoryBlobStore):
    """Records every read: (name, offset, length, bytes returned)."""

    def __init__(self) -> None:
        super().__init__()
        self.gets: list[tuple[str, int, int | None, int]] = []

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        data = super().get(name, offset, length)
        self.gets.append((name, offset, length, len(data)))
        return data


@pytest.mark.parametrize(("start", "count"), [(2500, 10), (995, 10), (0, 10), (4990, 10)])
def test_a_slice_reads_a_bounded_range_of_the_list_not_the_whole_file(
    start: int, count: int
) -> None:
    store = RecordingStore()
    recipients = addresses(5000)
    store_send(store, "s", recipients, MAIL)
    whole = len(store.blobs["s/recipients.ndjson"])
    reader = StoredSend(store, "s")
    reader.count()  # the index
    store.gets.clear()

    assert reader.recipients(start, count) == recipients[start : start + count]

    assert len(store.gets) == 1
    name, offset, length, read = store.gets[0]
    assert name == "s/recipients.ndjson"
    assert length is not None
    assert read == length
    # at most the chunks the slice touches (two of the five here), never the whole file
    assert read < whole // 2
    # and the range holds the slice's lines
    lines = [json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in recipients]
    begin = len(b"".join(lines[:start]))
    end = begin + len(b"".join(lines[start : start + count]))
    assert offset <= begin
    assert offset + length >= end


def test_a_reader_reads_the_index_and_content_once() -> None:
    store = RecordingStore()
    store_send(store, "s", addresses(3000), MAIL)
    reader = StoredSend(store, "s")
    for start in range(0, 3000, 500):
        reader.recipients(start, 10)
        reader.mail()
        reader.count()
    names = [name for name, *_ in store.gets]
    assert names.count("s/recipients.index.json") == 1
    assert names.count("s/content.json") == 1
    assert names.count("s/recipients.ndjson") == 6


def test_stored_send_is_one_reader_per_store_and_send() -> None:
    one, other = MemoryBlobStore(), MemoryBlobStore()
    store_send(one, "s", ["a@example.com"], MAIL)
    store_send(other, "s", ["b@example.com"], MAIL)

    assert stored_send(one, "s") is stored_send(one, "s")
    assert stored_send(one, "s") is not stored_send(other, "s")
    assert stored_send(one, "s") is not stored_send(one, "t")
    assert stored_send(one, "s").recipients(0, 1) == ["a@example.com"]
    assert stored_send(other, "s").recipients(0, 1) == ["b@example.com"]


def test_an_index_that_is_not_ours_raises_stored_list_error() -> None:
    store = MemoryBlobStore()
    store_send(store, "s", ["a@example.com"], MAIL)
    store.put("s/recipients.index.json", b'{"count": 1}')
    with pytest.raises(StoredListError, match="no usable index"):
        StoredSend(store, "s").count()


def test_a_list_shorter_than_its_index_raises_stored_list_error() -> None:
    store = MemoryBlobStore()
    store_send(store, "s", addresses(10), MAIL)
    size = len(store.blobs["s/recipients.ndjson"])
    index = {"count": 20, "chunk": CHUNK, "offsets": [0, size + 50]}
    store.put("s/recipients.index.json", json.dumps(index).encode())
    with pytest.raises(StoredListError, match="shorter than its index"):
        StoredSend(store, "s").recipients(5, 10)


def test_encode_list_offsets() -> None:
    assert encode_list([]) == (b"", [0, 0])
    data, offsets = encode_list(["a"] * CHUNK)
    assert offsets == [0, len(data)]  # no offset at the very end twice
    data, offsets = encode_list(["a"] * (CHUNK + 1))
    assert offsets == [0, 4 * CHUNK, len(data)]


# --- the Azure store on Azurite -------------------------------------------------------------------
def test_the_container_is_created_on_first_write(azurite_all: Azurite) -> None:
    name = _container()
    blobs = blob_store_from_environment(
        {"AzureWebJobsStorage": azurite_all.connection_string}, container=name
    )
    assert isinstance(blobs, AzureBlobStore)
    assert not blobs.container_client.exists()  # construction does no I/O
    with pytest.raises(BlobNotFound):  # no container yet: nothing is found
        StoredSend(blobs, "s").count()

    store_send(blobs, "s", ["a@example.com"], MAIL)

    assert blobs.container_client.exists()
    again = blob_store_from_environment(
        {"AzureWebJobsStorage": azurite_all.connection_string}, container=name
    )
    assert StoredSend(again, "s").recipients(0, 1) == ["a@example.com"]


def test_delete_prefix_deletes_more_than_one_batch_request(azurite_all: Azurite) -> None:
    blobs = blob_store_from_environment(
        {"AzureWebJobsStorage": azurite_all.connection_string}, container=_container()
    )
    for number in range(300):
        blobs.put(f"p/{number}", b"x")
    blobs.put("q/0", b"y")
    assert blobs.delete_prefix("p/") == 300
    assert blobs.delete_prefix("p/") == 0
    assert blobs.get("q/0") == b"y"


def test_an_unreachable_blob_service_raises_blob_unavailable(azurite_all: Azurite) -> None:
    from azure.storage.blob import ContainerClient

    closed = azurite_all.connection_string.replace(
        f":{azurite_all.ports['blob']}/", f":{_free_port()}/"
    )
    blobs = AzureBlobStore(
        ContainerClient.from_connection_string(
            closed, container_name="x-unreachable", retry_total=0
        )
    )
    with pytest.raises(BlobUnavailable, match="blob write failed"):
        blobs.put("a", b"x")
    with pytest.raises(BlobUnavailable, match="blob read failed") as caught:
        blobs.get("a")
    assert not isinstance(caught.value, BlobNotFound)


def test_no_storage_configured_raises_blob_unavailable() -> None:
    with pytest.raises(BlobUnavailable, match="blob storage cannot be used"):
        blob_store_from_environment({})
