"""The retention timer: ``retention`` purges what finished sends leave behind, once a day.

Not an HTTP route: a timer trigger whose schedule is the app setting
``SENDMAIL_RETENTION_SCHEDULE`` (NCRONTAB with seconds; the binding names it as
``%SENDMAIL_RETENTION_SCHEDULE%``, which the Functions host resolves from its app settings when
it indexes the function — unset, the host refuses the function, so the Bicep always sets it;
the Python v2 model passes the expression through to the function's metadata unchanged). This
module sets the default for a process that has none (devhost, tests), as devhost resolves the
expression from its own environment. It lives in ``api/`` because, like the send routes, it is a
Durable client of the send orchestrations and must name their instances (the lanes' ids come
from :func:`orchestrators.lanes.lane_instance_id`): ``activities/`` sits below
``orchestrators/``.

What is purged, in which order and why it is safe to stop anywhere: :mod:`sendmail.retention`.
The run itself is blocking storage work: it runs on a thread of its own (never the event loop
the HTTP routes share, nor its default pool), and reaches the Durable client, which is async,
back on the loop.
"""

import asyncio
import logging
import os
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import azure.durable_functions as df
import azure.functions as func

if TYPE_CHECKING:
    from sendmail.retention import Purged

logger = logging.getLogger(__name__)

bp = df.Blueprint()

#: The app setting the timer's schedule is read from, and its default: 03:30 every day in the
#: host's time zone (UTC on Azure). sendmail.platform.settings has the same default (a test
#: holds them equal); it is not imported here, to keep the app's import cheap.
SCHEDULE_SETTING = "SENDMAIL_RETENTION_SCHEDULE"
DEFAULT_SCHEDULE = "0 30 3 * * *"
os.environ.setdefault(SCHEDULE_SETTING, DEFAULT_SCHEDULE)
#: How long one Durable call may take before the run gives up on it.
DURABLE_CALL_SECONDS = 60

_T = TypeVar("_T")
_runs = ThreadPoolExecutor(1, thread_name_prefix="retention")


@bp.function_name("retention")
@bp.timer_trigger(arg_name="timer", schedule=f"%{SCHEDULE_SETTING}%")
@bp.durable_client_input(client_name="client")
async def retention(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    loop = asyncio.get_running_loop()
    histories = DurableHistories(client, loop)
    purged = await loop.run_in_executor(_runs, run, histories)
    logger.info("retention%s: %s", " (past due)" if timer.past_due else "", purged.summary())


def run(histories: "DurableHistories") -> "Purged":
    """One run with the app's stores and settings."""
    from sendmail import services
    from sendmail.platform.settings import get_settings
    from sendmail.retention import (
        EventRows,
        ExpiringKeys,
        LedgerRows,
        Stores,
        poison_queue_from_environment,
        purge_expired,
    )

    settings = get_settings()
    ledger, events, keys = services.ledger(), services.event_store(), services.idempotency()
    if not isinstance(ledger, LedgerRows) or not isinstance(events, EventRows):
        raise TypeError("the ledger and the event store must be able to purge a send")
    stores = Stores(
        sends=services.sends(),
        blobs=services.blobs(),
        ledger=ledger,
        events=events,
        idempotency=keys if isinstance(keys, ExpiringKeys) else None,
        poison=poison_queue_from_environment(),
    )
    return purge_expired(
        stores,
        histories,
        now=datetime.now(UTC),
        days=settings.SENDMAIL_RETENTION_DAYS,
        budget_seconds=settings.SENDMAIL_RETENTION_RUN_SECONDS,
    )


class DurableHistories:
    """:class:`sendmail.retention.Histories` through the timer's Durable client, called from the
    run's thread: each call is run on the function's event loop and waited for."""

    def __init__(
        self, client: df.DurableOrchestrationClient, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._client = client
        self._loop = loop

    def _call(self, call: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(call, self._loop).result(DURABLE_CALL_SECONDS)

    def instances(self, send_id: str, lanes: int) -> list[str]:
        from orchestrators.lanes import lane_instance_id

        return [*(lane_instance_id(send_id, n) for n in range(lanes)), send_id]

    def running(self, instance_id: str) -> bool:
        from api.emails import read_status
        from sendmail.contract.constants import FINISHED_STATUSES

        status = self._call(read_status(self._client, instance_id))
        runtime = status.runtime_status
        return runtime is not None and runtime.value not in FINISHED_STATUSES

    def purge(self, instance_id: str) -> int:
        result = self._call(self._client.purge_instance_history(instance_id))
        return int(result.instances_deleted or 0)
