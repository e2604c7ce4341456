"""devhost runs queue triggers as the Functions host does (in process, against a real Azurite).

The host's side, in Azure/azure-sdk-for-net, sdk/storage/:

- ``Microsoft.Azure.WebJobs.Extensions.Storage.Common/src/Shared/Queues/QueueListener.cs``
  @ 22354f38: ``ExecuteAsync`` receives ``BatchSize`` messages invisible for 10 minutes,
  starts them all, and polls again once ``_processing.Count <= NewBatchThreshold``
  (``WaitForNewBatchThreshold``); ``ProcessMessageAsync`` renews the visibility at half of it
  while the function runs (``CreateUpdateMessageVisibilityTimer``);
- ``.../Shared/Queues/QueueProcessor.cs`` @ 041cac99: ``BeginProcessingMessageAsync`` moves a
  message whose ``DequeueCount > MaxDequeueCount`` without running it;
  ``CompleteProcessingMessageAsync`` deletes on success, else copies to the poison queue at
  ``DequeueCount >= MaxDequeueCount`` (``HandlePoisonMessageAsync``: add the body, delete) or
  releases it for ``VisibilityTimeout`` (``ReleaseMessageAsync``);
- ``.../Shared/Timers/RandomizedExponentialBackoffStrategy.cs`` @ a256d07e: the empty-poll wait;
- ``.../Shared/Queues/QueuesOptions.cs``: the defaults (16, ``BatchSize / 2 * processors``,
  1 minute, 5, zero, base64) and the setters' checks;
- ``Microsoft.Azure.WebJobs.Extensions.Storage.Queues/src/Listeners/QueueListenerFactory.cs``
  @ 0efe5a88 (``<queue>-poison``), ``Triggers/QueueTriggerBinding.cs`` @ 0238a1de (the
  trigger metadata: ``DequeueCount``, ``ExpirationTime``, ``Id``, ``InsertionTime``,
  ``NextVisibleTime``, ``PopReceipt``) and ``QueueServiceClientProvider.cs`` (a message the
  base64 client cannot decode goes to the poison queue, ``CreateMessageDecodingFailedHandler``).

The function is the toy app's ``toy_job`` (tests/devhost/toyapp/triggers.py), run by devhost's
worker; what it records is what ``func.QueueMessage`` told it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from devhost.app_loader import TriggeredFunction
from devhost.invoker import Worker
from devhost.triggers.queues import (
    MIN_POLLING_INTERVAL,
    Backoff,
    HostConfigError,
    QueueListener,
    QueuesOptions,
    queue_clients,
)
from tests.devhost.toyapp import triggers as toy

FAST = QueuesOptions(max_polling_interval=0.2, processor_count=1)


@pytest.fixture
def worker() -> Iterator[Worker]:
    worker = Worker(sync_threads=8)
    yield worker
    worker.stop()


@pytest.fixture
def toy_job(toy_index: Any) -> TriggeredFunction:
    toy.RUNS.clear()
    function: TriggeredFunction = next(f for f in toy_index.queues if f.name == "toy_job")
    return function


class Queues:
    """A fresh queue (and its poison queue) in the session's Azurite, for one test."""

    def __init__(self, azurite: Any, function: TriggeredFunction, worker: Worker) -> None:
        self.name = f"toy-{uuid.uuid4().hex[:12]}"
        self.env = {"AzureWebJobsStorage": azurite.connection_string, "TOYAPP_QUEUE": self.name}
        self.function = function
        self.worker = worker
        connection = azurite.connection_string
        self.sender = QueueClient.from_connection_string(
            connection, self.name, message_encode_policy=TextBase64EncodePolicy()
        )
        self.raw = QueueClient.from_connection_string(connection, self.name)
        self.poison = QueueClient.from_connection_string(connection, self.name + "-poison")
        self.raw.create_queue()

    def listener(self, options: QueuesOptions = FAST, **kwargs: Any) -> QueueListener:
        queue, poison = queue_clients(self.function, self.env)
        return QueueListener(
            self.function, options, self.worker.call_async, queue, poison, **kwargs
        )

    def send(self, job: Any, **kwargs: Any) -> Any:
        text = job if isinstance(job, str) else json.dumps(job)
        return self.sender.send_message(text, **kwargs)

    def count(self) -> int:
        """Messages in the queue, visible or not."""
        return int(self.raw.get_queue_properties().approximate_message_count or 0)

    def poisoned(self) -> list[str]:
        """The poison queue's messages, as stored (raw text)."""
        try:
            return [m.content for m in self.poison.peek_messages(max_messages=32)]
        except Exception:  # no poison queue yet
            return []


@pytest.fixture
def queues(azurite_all: Any, toy_job: TriggeredFunction, worker: Worker) -> Queues:
    return Queues(azurite_all, toy_job, worker)


def jobs() -> list[dict[str, Any]]:
    return [run for run in toy.RUNS if run["function"] == "toy_job"]


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(listener: QueueListener) -> AsyncIterator[QueueListener]:
    stop = asyncio.Event()
    task = asyncio.create_task(listener.run(stop))
    try:
        yield listener
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def test_a_message_is_delivered_once_and_deleted(queues):
    queues.send({"n": 1})

    async def scenario() -> None:
        async with running(queues.listener()) as listener:
            await until(lambda: listener.counts["deleted"] == 1)
            await asyncio.sleep(0.5)  # more polls: nothing comes back

    asyncio.run(scenario())
    assert [json.loads(run["body"]) for run in jobs()] == [{"n": 1}]
    assert queues.count() == 0
    assert queues.poisoned() == []


def test_the_function_gets_the_queue_message_the_worker_builds(queues):
    sent = queues.send({"greeting": "안녕하세요"}, time_to_live=3600)
    received_after = datetime.now(UTC)

    async def scenario() -> None:
        async with running(queues.listener()) as listener:
            await until(lambda: listener.counts["deleted"] == 1)

    asyncio.run(scenario())
    (run,) = jobs()
    assert json.loads(run["body"]) == {"greeting": "안녕하세요"}  # base64 decoded, UTF-8
    assert run["id"] == sent.id
    assert run["dequeueCount"] == 1
    inserted = datetime.fromisoformat(run["insertionTime"])
    assert inserted == sent.inserted_on
    assert inserted.utcoffset() == timedelta(0)  # aware, UTC
    assert datetime.fromisoformat(run["expirationTime"]) == sent.expires_on
    assert sent.expires_on - sent.inserted_on == timedelta(hours=1)
    # received invisible for the host's 10 minutes
    next_visible = datetime.fromisoformat(run["timeNextVisible"])
    assert timedelta(minutes=9) < next_visible - received_after < timedelta(minutes=11)
    assert isinstance(run["popReceipt"], str)
    assert run["popReceipt"]


def test_a_failing_message_is_retried_then_moved_to_the_poison_queue(queues):
    options = QueuesOptions(max_polling_interval=0.2, max_dequeue_count=3, processor_count=1)
    sent = queues.send({"fail": "always"})
    stored = queues.raw.peek_messages()[0].content  # the base64 text, as it is in the queue

    async def scenario() -> None:
        async with running(queues.listener(options)) as listener:
            await until(lambda: listener.counts["poisoned"] == 1)
            await asyncio.sleep(0.5)

    asyncio.run(scenario())
    assert [(run["id"], run["dequeueCount"]) for run in jobs()] == [
        (sent.id, 1),
        (sent.id, 2),
        (sent.id, 3),
    ]
    assert queues.poisoned() == [stored]
    assert queues.count() == 0


def test_a_message_that_recovers_is_deleted_not_poisoned(queues):
    queues.send({"fail": 1})

    async def scenario() -> None:
        async with running(queues.listener()) as listener:
            await until(lambda: listener.counts["deleted"] == 1)
            assert listener.counts["released"] == 1

    asyncio.run(scenario())
    assert [(run["dequeueCount"], run["failed"]) for run in jobs()] == [(1, True), (2, False)]
    assert queues.poisoned() == []
    assert queues.count() == 0


def test_a_failed_message_comes_back_after_the_visibility_timeout(queues):
    options = QueuesOptions(max_polling_interval=0.2, visibility_timeout=2.0, processor_count=1)
    queues.send({"fail": 1})

    async def scenario() -> None:
        async with running(queues.listener(options)) as listener:
            await until(lambda: listener.counts["deleted"] == 1)

    asyncio.run(scenario())
    failed, retried = jobs()
    assert retried["started"] - failed["ended"] >= 1.9


def test_a_message_that_is_not_base64_goes_to_the_poison_queue_unrun(queues):
    queues.raw.send_message("not base64: {}")

    async def scenario() -> None:
        async with running(queues.listener()) as listener:
            await until(lambda: listener.counts["poisoned"] == 1)

    asyncio.run(scenario())
    assert jobs() == []
    assert queues.poisoned() == ["not base64: {}"]
    assert queues.count() == 0


def test_message_encoding_none_takes_the_text_as_it_is(queues):
    options = QueuesOptions(max_polling_interval=0.2, message_encoding="none", processor_count=1)
    queues.raw.send_message('{"plain": true}')

    async def scenario() -> None:
        async with running(queues.listener(options)) as listener:
            await until(lambda: listener.counts["deleted"] == 1)

    asyncio.run(scenario())
    assert [run["body"] for run in jobs()] == ['{"plain": true}']


def test_a_message_already_over_the_limit_is_moved_without_running(queues):
    """A message whose run never finished (devhost killed mid-run) comes back with a higher
    dequeue count; past ``maxDequeueCount`` the host moves it before running it."""
    options = QueuesOptions(max_polling_interval=0.2, max_dequeue_count=1, processor_count=1)
    queues.send({"n": 1})
    taken = queues.raw.receive_message(visibility_timeout=1)  # dequeue count 1, never completed
    assert taken is not None
    time.sleep(1.2)

    async def scenario() -> None:
        async with running(queues.listener(options)) as listener:
            await until(lambda: listener.counts["poisoned"] == 1)

    asyncio.run(scenario())
    assert jobs() == []
    assert len(queues.poisoned()) == 1


def test_at_most_batch_size_plus_new_batch_threshold_run_at_once(queues):
    """Batch 4, threshold 2: the first poll starts four; when the two short ones end, two are
    left (not more than the threshold), so the next poll starts four more: six at once, and
    never seven."""
    options = QueuesOptions(
        max_polling_interval=0.2, batch_size=4, new_batch_threshold=2, processor_count=1
    )
    for hold in (1.5, 1.5, 0.1, 0.1, 1.0, 1.0, 1.0, 1.0, 0.1, 0.1):
        queues.send({"hold": hold})

    async def scenario() -> None:
        async with running(queues.listener(options)) as listener:
            await until(lambda: listener.counts["deleted"] == 10)

    asyncio.run(scenario())
    runs = jobs()
    most = max(
        sum(1 for r in runs if r["started"] <= t < r["ended"]) for t in (r["started"] for r in runs)
    )
    assert most == 6


def test_a_long_run_keeps_its_message_invisible(queues):
    """Received invisible for (here) 2 s instead of 10 minutes, renewed every second while the
    function runs 3 s: nobody receives it again meanwhile."""
    queues.send({"hold": 3})

    async def scenario() -> None:
        async with running(queues.listener(processing_visibility=2)) as listener:
            await until(lambda: listener.counts["deleted"] == 1)
            await asyncio.sleep(0.5)

    asyncio.run(scenario())
    assert [run["dequeueCount"] for run in jobs()] == [1]
    assert queues.count() == 0


def test_polling_backs_off_exponentially_and_resets_when_messages_come():
    backoff = Backoff(maximum=2.0)
    delays = [backoff.next_delay(found_messages=False) for _ in range(8)]
    assert delays[0] == MIN_POLLING_INTERVAL
    assert 0.18 <= delays[1] <= 0.22  # 100 ms + (0.8 to 1.2) x 100 ms
    assert 0.26 <= delays[2] <= 0.34  # 100 ms + (0.8 to 1.2) x 200 ms
    assert delays == sorted(delays)
    assert delays[-1] == 2.0  # held at maxPollingInterval
    assert backoff.next_delay(found_messages=True) == MIN_POLLING_INTERVAL


def test_host_json_queue_settings_are_read_as_the_host_reads_them():
    defaults = QueuesOptions.from_host_json({})
    assert (defaults.batch_size, defaults.max_dequeue_count, defaults.visibility_timeout) == (
        16,
        5,
        0.0,
    )
    assert defaults.message_encoding == "base64"
    assert defaults.max_polling_interval == 2.0  # devhost's; the host's default is 1 minute
    assert defaults.threshold == 8 * defaults.processor_count
    options = QueuesOptions.from_host_json(
        {
            "BatchSize": 8,
            "newBatchThreshold": 0,
            "maxPollingInterval": "00:00:05",
            "visibilityTimeout": "00:00:30",
            "maxDequeueCount": 2,
            "messageEncoding": "None",
        }
    )
    assert options == QueuesOptions(
        batch_size=8,
        new_batch_threshold=0,
        max_polling_interval=5.0,
        visibility_timeout=30.0,
        max_dequeue_count=2,
        message_encoding="none",
        processor_count=options.processor_count,
    )
    assert options.threshold == 0


@pytest.mark.parametrize(
    "section",
    [
        {"batchSize": 33},
        {"batchSize": 0},
        {"maxDequeueCount": 0},
        {"newBatchThreshold": -1},
        {"maxPollingInterval": "00:00:00.05"},
        {"visibilityTimeout": "soon"},
        {"messageEncoding": "utf8"},
    ],
)
def test_queue_settings_the_host_refuses_are_refused(section):
    with pytest.raises(HostConfigError):
        QueuesOptions.from_host_json(section)
