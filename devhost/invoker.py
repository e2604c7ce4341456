"""Call user functions the way the Python worker does.

Every invocation is dispatched on one long-lived event loop thread, the worker's loop, as the
Python worker handles each ``InvocationRequest`` in the coroutine
``Dispatcher._handle__invocation_request`` (azure-functions-python-worker,
``azure_functions_worker/dispatcher.py``): ``async def`` functions are awaited there (the
Durable SDK keeps a process-wide ``aiohttp`` session bound to that loop), and plain functions —
sync HTTP functions, activities *and orchestrator episodes* — are handed from there to one
thread pool of ``PYTHON_THREADPOOL_THREAD_COUNT`` threads (``await
self._loop.run_in_executor(self._sync_call_tp, ...)``). So an ``async def`` function that
blocks the loop delays every other invocation, sync ones included, as on Azure. A pool no
larger than ``maxConcurrentActivityFunctions`` lets long activities hold up every orchestration
episode. The engine keeps its own dispatch threads, which wait for the answers.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class WorkerStopped(RuntimeError):
    """The worker stopped while an invocation was waiting for its answer."""


class InvocationContext:
    """A minimal ``azure.functions.Context`` for functions that take a ``context`` parameter."""

    def __init__(self, function_name: str, function_directory: str = "") -> None:
        self.invocation_id = str(uuid.uuid4())
        self.function_name = function_name
        self.function_directory = function_directory
        self.trace_context = None
        self.retry_context = None
        self.thread_local_storage = threading.local()


def accepted_parameters(func: Callable[..., Any]) -> set[str]:
    try:
        return set(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return set()


class Worker:
    """The language worker: an event loop thread plus a thread pool."""

    def __init__(self, sync_threads: int = 16) -> None:
        self.sync_threads = sync_threads
        self._slots = threading.BoundedSemaphore(sync_threads)
        self._stopped = threading.Event()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run_loop, name="devhost-worker-loop", daemon=True
        )
        self._thread.start()
        self.pool = ThreadPoolExecutor(max_workers=sync_threads, thread_name_prefix="devhost-fn")

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def in_slot(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``func`` holding one of the sync thread pool's slots (waiting for one if none)."""
        with self._slots:
            return func(*args, **kwargs)

    async def _invoke(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Any) -> Any:
        """One invocation, on the worker's loop: awaited if async, else handed to the pool."""
        if inspect.iscoroutinefunction(func):
            return await func(*args, **kwargs)
        call = functools.partial(self.in_slot, func, *args, **kwargs)
        result = await asyncio.get_running_loop().run_in_executor(self.pool, call)
        if inspect.isawaitable(result):
            return await result
        return result

    def run(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Invoke from a non-loop thread (the engine's) and wait for the answer — or until the
        worker stops (then :class:`WorkerStopped`: a stopped loop answers nothing)."""
        future = asyncio.run_coroutine_threadsafe(self._invoke(func, args, kwargs), self.loop)
        while True:
            try:
                return future.result(timeout=0.5)
            except TimeoutError:
                if self._stopped.is_set():
                    future.cancel()
                    raise WorkerStopped(getattr(func, "__name__", "function")) from None

    def call_blocking(self, func: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
        """Invoke from a non-loop thread and wait (activities)."""
        return self.run(func, **kwargs)

    async def call_async(self, func: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
        """Invoke from another event loop (the HTTP server's) without blocking it."""
        future = asyncio.run_coroutine_threadsafe(self._invoke(func, (), kwargs), self.loop)
        return await asyncio.wrap_future(future)

    def stop(self) -> None:
        self._stopped.set()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.pool.shutdown(wait=False, cancel_futures=True)
