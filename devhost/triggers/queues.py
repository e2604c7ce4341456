"""Queue triggers, run as the Functions host's Storage queues extension runs them.

Sources: the extension's listener and processor in Azure/azure-sdk-for-net,
``sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Common/src/Shared/Queues/``
(``QueueListener.cs`` @ 22354f38, ``QueueProcessor.cs`` @ 041cac99, ``QueuesOptions.cs``,
``Timers/RandomizedExponentialBackoffStrategy.cs`` @ a256d07e) and
``.../Storage.Queues/src/`` (``Listeners/QueueListenerFactory.cs`` @ 0efe5a88: the poison queue;
``Triggers/QueueTriggerBinding.cs`` @ 0238a1de: the trigger metadata;
``QueueServiceClientProvider.cs``: ``messageEncoding`` and the decoding-failed handler); the
older copy in Azure/azure-webjobs-sdk @ f79ea0bf (``src/Microsoft.Azure.WebJobs.Extensions.
Storage/Queues/``) says the same. What the Python function receives is built by the
azure-functions library's own converter (``azure.functions.queue.QueueMessageInConverter``) from
the trigger metadata the host sends (``GrpcMessageConversionExtensions.ToRpc`` in
Azure/azure-functions-host: strings as strings, numbers and times as JSON).

Per function, as the host does:

- **Polling.** The queue is checked to exist first (a missing queue is waited for, not created).
  Each poll receives up to ``batchSize`` messages (default 16, at most 32), invisible for
  **10 minutes** while they are processed — renewed at half that while a function runs. All of
  a batch are invoked at once; the next poll comes when no more than ``newBatchThreshold``
  (default ``batchSize / 2`` times the processors) are still running, so at most
  ``batchSize + newBatchThreshold`` run together. An empty poll backs off: 100 ms, then
  randomised exponential growth up to ``maxPollingInterval``; a poll that found messages resets
  it.
- **The body.** ``messageEncoding`` ``base64`` (the default) decodes it — a message that is
  not base64 goes straight to the poison queue, unrun — or ``none`` takes it as it is. The
  function gets a ``func.QueueMessage``: body (the text as UTF-8), ``id``, ``dequeue_count``,
  ``insertion_time``, ``expiration_time``, ``time_next_visible`` (UTC) and ``pop_receipt``.
- **Outcomes.** Success deletes the message. A failure makes it visible again after
  ``visibilityTimeout`` (default 0: at the next poll), unless its dequeue count has reached
  ``maxDequeueCount`` (default 5): then its text is copied to ``<queue>-poison`` (created if
  missing) and it is deleted. A message received with a dequeue count already over the limit (a
  run that never finished, e.g. a crash) is moved without running. A queue whose poison name
  would be invalid, or that is itself a ``-poison`` queue, has no poison queue: a failed message
  stays invisible for the 10 minutes instead (no fast loop).

devhost's own choices: ``maxPollingInterval`` is **2 seconds** unless ``host.json`` sets it (the
host's default is 1 minute: a development host should feel immediate); dynamic concurrency, the
listener being notified of messages the app's output bindings write (devhost has none), and the
visibility renewal's speed-up after a failed renewal are not modelled.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from devhost.app_loader import TriggeredFunction
from devhost.invoker import InvocationContext, accepted_parameters
from devhost.triggers.names import queue_name
from devhost.triggers.schedules import ScheduleError, parse_timespan

logger = logging.getLogger("devhost.queues")

Invoke = Callable[[Callable[..., Any], Mapping[str, Any]], Awaitable[Any]]

#: QueuesOptions.MaxBatchSize: Azure Queues returns at most 32 messages per request.
MAX_BATCH_SIZE = 32
#: QueuePollingIntervals.Minimum: the shortest wait after an empty poll.
MIN_POLLING_INTERVAL = 0.1
#: devhost's maxPollingInterval unless host.json sets one (the host's is 1 minute).
DEVHOST_MAX_POLLING_INTERVAL = 2.0
#: QueueListener's visibility for messages it is processing (renewed at half, while running).
PROCESSING_VISIBILITY_SECONDS = 600.0
#: RandomizedExponentialBackoffStrategy.RandomizationFactor.
RANDOMIZATION_FACTOR = 0.2
#: How long a stopping devhost waits for running queue functions.
DRAIN_SECONDS = 10.0
POISON_SUFFIX = "-poison"
RECENT_RUNS = 10
#: .NET's DateTimeOffset.MaxValue as JSON: what the host sends for a time Storage did not give.
_MAX_DATETIMEOFFSET = "9999-12-31T23:59:59.9999999+00:00"

Outcome = Literal[
    "deleted",
    "released",
    "poisoned",
    "left invisible",
    "not deleted",
    "storage error",
    "admin run succeeded",
    "admin run failed",
]


class HostConfigError(ValueError):
    """A ``host.json`` value the host refuses at startup."""


@dataclass(frozen=True)
class QueuesOptions:
    """``extensions.queues`` of ``host.json`` (``QueuesOptions``), with devhost's polling
    default."""

    batch_size: int = 16
    new_batch_threshold: int | None = None
    max_polling_interval: float = DEVHOST_MAX_POLLING_INTERVAL
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: Literal["base64", "none"] = "base64"
    #: ``SkuUtility.ProcessorCount``: the machine's, outside the (Windows) Consumption plan.
    processor_count: int = field(default_factory=lambda: os.cpu_count() or 1)

    @property
    def threshold(self) -> int:
        """``NewBatchThreshold``: set, or ``batchSize / 2 * processorCount``."""
        if self.new_batch_threshold is not None:
            return self.new_batch_threshold
        return (self.batch_size // 2) * self.processor_count

    @classmethod
    def from_host_json(cls, section: Mapping[str, Any]) -> QueuesOptions:
        """Read the section as .NET's configuration binder does (names ignore case; TimeSpans
        as ``hh:mm:ss``) and check it as the options' setters do; :class:`HostConfigError`."""
        values = {str(k).lower(): v for k, v in section.items()}
        options: dict[str, Any] = {}
        try:
            if "batchsize" in values:
                options["batch_size"] = int(values["batchsize"])
                if not 0 < options["batch_size"] <= MAX_BATCH_SIZE:
                    raise HostConfigError(f"queues.batchSize must be 1 to {MAX_BATCH_SIZE}")
            if "newbatchthreshold" in values:
                options["new_batch_threshold"] = int(values["newbatchthreshold"])
                if options["new_batch_threshold"] < 0:
                    raise HostConfigError("queues.newBatchThreshold must not be negative")
            if "maxpollinginterval" in values:
                interval = _seconds(values["maxpollinginterval"])
                if interval < MIN_POLLING_INTERVAL:
                    raise HostConfigError("queues.maxPollingInterval must not be under 00:00:00.1")
                options["max_polling_interval"] = interval
            if "visibilitytimeout" in values:
                options["visibility_timeout"] = _seconds(values["visibilitytimeout"])
            if "maxdequeuecount" in values:
                options["max_dequeue_count"] = int(values["maxdequeuecount"])
                if options["max_dequeue_count"] < 1:
                    raise HostConfigError("queues.maxDequeueCount must not be less than 1")
            if "messageencoding" in values:
                encoding = str(values["messageencoding"]).lower()
                if encoding not in ("base64", "none"):
                    raise HostConfigError("queues.messageEncoding must be base64 or none")
                options["message_encoding"] = encoding
        except (TypeError, ValueError) as e:
            if isinstance(e, HostConfigError):
                raise
            raise HostConfigError(f"host.json extensions.queues: {e}") from e
        return cls(**options)


def _seconds(value: Any) -> float:
    try:
        return parse_timespan(str(value)).total_seconds()
    except ScheduleError as e:
        raise HostConfigError(f"host.json extensions.queues: {e}") from e


class Backoff:
    """``RandomizedExponentialBackoffStrategy(Minimum, maxPollingInterval)``: the wait after a
    poll that found nothing."""

    def __init__(self, maximum: float, minimum: float = MIN_POLLING_INTERVAL) -> None:
        self.minimum = minimum
        self.maximum = max(maximum, minimum)
        self._current = 0.0
        self._exponent = 0

    def next_delay(self, found_messages: bool) -> float:
        if found_messages:
            self._current, self._exponent = self.minimum, 1
        elif self._current != self.maximum:
            delay = self.minimum
            if self._exponent > 0:
                factor = random.uniform(1 - RANDOMIZATION_FACTOR, 1 + RANDOMIZATION_FACTOR)  # noqa: S311
                delay += factor * 2 ** (self._exponent - 1) * self.minimum
            if delay < self.maximum:
                self._current = delay
                self._exponent += 1
            else:
                self._current = self.maximum
        return self._current


class Message(Protocol):
    """What a received Storage queue message gives (``azure.storage.queue.QueueMessage``)."""

    id: str | None
    content: Any
    pop_receipt: str | None
    dequeue_count: int | None
    inserted_on: datetime | None
    expires_on: datetime | None
    next_visible_on: datetime | None


@dataclass
class QueueRun:
    """One message handled, for ``GET /_dev/triggers``."""

    at: str
    message_id: str | None
    dequeue_count: int | None
    outcome: Outcome
    ran: bool
    ms: float

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "messageId": self.message_id,
            "dequeueCount": self.dequeue_count,
            "outcome": self.outcome,
            "invoked": self.ran,
            "ms": round(self.ms, 1),
        }


@dataclass
class _AdminMessage:
    content: str
    id: str | None = None
    pop_receipt: str | None = None
    dequeue_count: int | None = 0
    inserted_on: datetime | None = None
    expires_on: datetime | None = None
    next_visible_on: datetime | None = None


def poison_queue_name(name: str) -> str | None:
    """``QueueListenerFactory.CreatePoisonQueueReference``: ``<name>-poison``, unless the queue
    is a poison queue itself or the name would be too long."""
    if name.endswith(POISON_SUFFIX) or len(name + POISON_SUFFIX) > 63:
        return None
    return name + POISON_SUFFIX


def _utc_text(value: datetime | None) -> str:
    """A DateTimeOffset as the host serialises it into the trigger metadata."""
    if value is None:
        return _MAX_DATETIMEOFFSET
    return value.astimezone(UTC).isoformat()


def build_queue_message(
    message: Message, body: bytes, *, binary: bool = False
) -> Any:  # azure.functions.QueueMessage
    """The ``func.QueueMessage`` the Python worker builds: the library's own converter, fed the
    trigger value and metadata the host sends for this message."""
    from azure.functions import meta
    from azure.functions.queue import QueueMessageInConverter

    def as_json(value: Any) -> meta.Datum:
        return meta.Datum(json.dumps(value), "json")

    def as_text(value: str | None) -> meta.Datum:
        return meta.Datum(value, "string" if value is not None else None)  # null: no data

    metadata = {
        "Id": as_text(message.id),
        "DequeueCount": as_json(message.dequeue_count or 0),
        "ExpirationTime": as_json(_utc_text(message.expires_on)),
        "InsertionTime": as_json(_utc_text(message.inserted_on or datetime.now(UTC))),
        "NextVisibleTime": as_json(_utc_text(message.next_visible_on)),
        "PopReceipt": as_text(message.pop_receipt),
    }
    # The trigger value: the body as a string (invalid UTF-8 replaced, as .NET's decoder does),
    # or as bytes for ``dataType: binary``.
    value = (
        meta.Datum(body, "bytes")
        if binary
        else meta.Datum(body.decode("utf-8", "replace"), "string")
    )
    return QueueMessageInConverter.decode(value, trigger_metadata=metadata)


class QueueListener:
    """Polls one queue for one function (``QueueListener`` + ``QueueProcessor``)."""

    def __init__(
        self,
        function: TriggeredFunction,
        options: QueuesOptions,
        invoke: Invoke,
        queue: Any,
        poison: Any | None,
        *,
        processing_visibility: float = PROCESSING_VISIBILITY_SECONDS,
    ) -> None:
        self.function = function
        self.options = options
        self.invoke = invoke
        self.queue = queue  # azure.storage.queue.QueueClient, no message policies
        self.poison = poison
        self.processing_visibility = processing_visibility
        self.backoff = Backoff(options.max_polling_interval)
        self.counts: collections.Counter[str] = collections.Counter()
        self.recent: collections.deque[QueueRun] = collections.deque(maxlen=RECENT_RUNS)
        self.running = 0
        self.most_running = 0
        self._processing: set[asyncio.Task[None]] = set()
        self._binary = str(function.binding.get("dataType", "")).lower() == "binary"

    @property
    def queue_name(self) -> str:
        return str(self.queue.queue_name)

    # --- the poll loop (QueueListener.ExecuteAsync) --------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        exists: bool | None = None
        found_since_last_delay = False
        failing = False
        while not stop.is_set():
            batch: list[Any] = []
            try:
                if not exists:
                    exists = await asyncio.to_thread(self._exists)
                if exists:
                    batch = await asyncio.to_thread(self._receive)
                failing = False
            except Exception as e:  # any storage error backs off, as the host's does
                exists = None
                if not failing:
                    logger.warning(
                        "queue %s: polling failed, backing off: %s", self.queue_name, _reason(e)
                    )
                failing = True
            if batch:
                for message in batch:
                    task = asyncio.create_task(self.process(message))
                    self._processing.add(task)
                    task.add_done_callback(self._processing.discard)
                found_since_last_delay = True
                # WaitForNewBatchThreshold
                while len(self._processing) > self.options.threshold and not stop.is_set():
                    await _first_of(
                        asyncio.wait(set(self._processing), return_when="FIRST_COMPLETED"), stop
                    )
                continue
            delay = self.backoff.next_delay(found_since_last_delay)
            found_since_last_delay = False
            await _first_of(asyncio.sleep(delay), stop)
        if self._processing:
            await asyncio.wait(set(self._processing), timeout=DRAIN_SECONDS)

    def _exists(self) -> bool:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.queue.get_queue_properties()
        except ResourceNotFoundError:
            return False
        return True

    def _receive(self) -> list[Any]:
        size = self.options.batch_size
        return list(
            self.queue.receive_messages(
                messages_per_page=size,
                max_messages=size,
                visibility_timeout=int(self.processing_visibility),
            )
        )

    # --- one message (QueueListener.ProcessMessageAsync, QueueProcessor) ------------------------
    async def process(self, message: Message) -> None:
        started = time.perf_counter()
        at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        receipt = [message.pop_receipt]
        ran = False
        try:
            outcome, ran = await self._handle(message, receipt)
        except Exception as e:  # the message comes back after its visibility
            logger.warning(
                "queue %s: message %s: storage failed: %s", self.queue_name, message.id, _reason(e)
            )
            outcome = "storage error"
        self.counts[outcome] += 1
        elapsed = (time.perf_counter() - started) * 1000
        self.recent.appendleft(
            QueueRun(at, message.id, message.dequeue_count, outcome, ran, elapsed)
        )
        level = logging.WARNING if outcome == "poisoned" else logging.INFO
        logger.log(
            level,
            "queue %s -> %s: message %s (dequeue count %s) %s, %.1fms",
            self.queue_name,
            self.function.name,
            message.id,
            message.dequeue_count,
            outcome,
            elapsed,
        )

    async def _handle(self, message: Message, receipt: list[str | None]) -> tuple[Outcome, bool]:
        """Run the function for ``message`` (unless it must go to the poison queue at once) and
        complete it; the outcome and whether the function ran."""
        body = self._body(message)
        if body is None:
            # the decoding-failed handler (QueueServiceClientProvider): poison, never run
            logger.warning(
                "queue %s: message %s is not base64 (messageEncoding)", self.queue_name, message.id
            )
            return await self._to_poison(message, receipt), False
        if (message.dequeue_count or 0) > self.options.max_dequeue_count:
            # BeginProcessingMessageAsync: a message over the limit is moved without a run
            return await self._to_poison(message, receipt), False
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        renewal = asyncio.create_task(self._keep_invisible(message, receipt))
        try:
            succeeded = await self._invoke(message, body)
        finally:
            self.running -= 1
            renewal.cancel()
            await asyncio.gather(renewal, return_exceptions=True)
        return await self._complete(message, receipt, succeeded), True

    def _body(self, message: Message) -> bytes | None:
        content = message.content
        text = (
            content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content or "")
        )
        if self.options.message_encoding == "none":
            return text.encode("utf-8")
        try:
            return base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            return None

    async def _invoke(self, message: Message, body: bytes) -> bool:
        function = self.function
        kwargs: dict[str, Any] = {
            function.trigger_name: build_queue_message(message, body, binary=self._binary)
        }
        if "context" in accepted_parameters(function.func):
            kwargs["context"] = InvocationContext(function.name)
        try:
            await self.invoke(function.func, kwargs)
        except Exception:
            logger.exception("function %s raised (queue message %s)", function.name, message.id)
            return False
        return True

    async def _complete(
        self, message: Message, receipt: list[str | None], succeeded: bool
    ) -> Outcome:
        """``CompleteProcessingMessageAsync``."""
        if succeeded:
            return (
                "deleted"
                if await asyncio.to_thread(self._delete, message, receipt[0])
                else "not deleted"
            )
        if self.poison is None:
            return "left invisible"
        if (message.dequeue_count or 0) >= self.options.max_dequeue_count:
            return await self._to_poison(message, receipt)
        await asyncio.to_thread(self._release, message, receipt[0])
        return "released"

    async def _to_poison(self, message: Message, receipt: list[str | None]) -> Outcome:
        """``HandlePoisonMessageAsync``: copy the text as it is in the queue, then delete."""
        if self.poison is None:
            return "left invisible"
        await asyncio.to_thread(self._copy_to_poison, message)
        await asyncio.to_thread(self._delete, message, receipt[0])
        return "poisoned"

    def _copy_to_poison(self, message: Message) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        assert self.poison is not None
        try:
            self.poison.send_message(message.content)
        except ResourceNotFoundError:  # AddMessageAndCreateIfNotExistsAsync
            self.poison.create_queue()
            self.poison.send_message(message.content)

    def _delete(self, message: Message, pop_receipt: str | None) -> bool:
        """``DeleteMessageAsync``: a message someone else took over or that is gone is left."""
        from azure.core.exceptions import HttpResponseError

        try:
            self.queue.delete_message(message.id, pop_receipt)
        except HttpResponseError as e:
            if e.status_code in (400, 404, 409):
                logger.debug(
                    "queue %s: message %s not deleted: %s", self.queue_name, message.id, _reason(e)
                )
                return False
            raise
        return True

    def _release(self, message: Message, pop_receipt: str | None) -> None:
        """``ReleaseMessageAsync``: visible again after ``visibilityTimeout``."""
        from azure.core.exceptions import HttpResponseError

        try:
            self.queue.update_message(
                message.id, pop_receipt, visibility_timeout=int(self.options.visibility_timeout)
            )
        except HttpResponseError as e:
            if e.status_code not in (400, 404, 409):
                raise

    async def _keep_invisible(self, message: Message, receipt: list[str | None]) -> None:
        """``UpdateQueueMessageVisibilityCommand``: while the function runs, push the message's
        visibility out again every half of the processing visibility."""
        interval = self.processing_visibility / 2
        while True:
            await asyncio.sleep(interval)
            try:
                updated = await asyncio.to_thread(
                    self.queue.update_message,
                    message.id,
                    receipt[0],
                    visibility_timeout=int(self.processing_visibility),
                )
                receipt[0] = updated.pop_receipt
            except Exception as e:  # a failed renewal is tried again, as the host does
                logger.warning(
                    "queue %s: message %s: visibility not renewed: %s",
                    self.queue_name,
                    message.id,
                    _reason(e),
                )

    async def invoke_manually(self, text: str) -> None:
        """The admin API's run (``POST /admin/functions/<name>``): the input becomes a message
        that is not in any queue (``StringToStorageQueueMessageConverter``: no id, no pop
        receipt, dequeue count 0), so nothing is deleted, released or poisoned afterwards."""
        started = time.perf_counter()
        at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        message = _AdminMessage(content=text)
        succeeded = await self._invoke(message, text.encode("utf-8"))
        outcome: Outcome = "admin run succeeded" if succeeded else "admin run failed"
        self.counts[outcome] += 1
        elapsed = (time.perf_counter() - started) * 1000
        self.recent.appendleft(QueueRun(at, None, 0, outcome, True, elapsed))

    # --- visibility ----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        options = self.options
        return {
            "function": self.function.name,
            "type": "queueTrigger",
            "queue": self.queue_name,
            "poisonQueue": self.poison.queue_name if self.poison is not None else None,
            "connection": self.function.binding.get("connection") or "AzureWebJobsStorage",
            "settings": {
                "batchSize": options.batch_size,
                "newBatchThreshold": options.threshold,
                "maxPollingIntervalSeconds": options.max_polling_interval,
                "visibilityTimeoutSeconds": options.visibility_timeout,
                "maxDequeueCount": options.max_dequeue_count,
                "messageEncoding": options.message_encoding,
            },
            "running": self.running,
            "counts": dict(self.counts),
            "lastRuns": [run.to_json() for run in self.recent],
        }


async def _first_of(work: Awaitable[Any], stop: asyncio.Event) -> None:
    """Wait for ``work`` or for ``stop``, whichever comes first (``work`` is cancelled then)."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, stopper):
            if not pending.done():
                pending.cancel()
        await asyncio.gather(task, stopper, return_exceptions=True)


def _reason(error: BaseException) -> str:
    """An error's class and status, never its message (which can carry a URL with a SAS)."""
    status = getattr(error, "status_code", None)
    return f"{type(error).__name__}{f' {status}' if status else ''}"


def queue_clients(function: TriggeredFunction, env: Mapping[str, str]) -> tuple[Any, Any | None]:
    """The trigger's queue and its poison queue in the storage its ``connection`` names
    (``AzureWebJobsStorage`` when empty): a connection string, or identity-based settings, as
    the host reads them (``sendmail.platform.storage``). Raises ``BindingError`` or
    ``StorageUnavailable``."""
    from sendmail.platform.storage import queue_client

    name = queue_name(str(function.binding.get("queueName", "")), env)
    connection = str(function.binding.get("connection") or "AzureWebJobsStorage")
    queue = queue_client(name, env, connection=connection, retry_total=1)
    poison_name = poison_queue_name(name)
    poison = (
        queue_client(poison_name, env, connection=connection, retry_total=1)
        if poison_name is not None
        else None
    )
    return queue, poison
