"""Pause, resume and cancel a send: ``POST /api/v1/emails/{id}/pause|resume|cancel``.

Each route changes the send's record first (:mod:`sendmail.sending.control`: one atomic
read-decide-write; 409 when the state does not allow it, 200 with ``changed: false`` when the
send already is as asked), then wakes the send's orchestrations: the event of the change to
every lane (a paused lane waits for it), and, for a cancel, the parent too (a scheduled send
waits for it). Sending itself does not wait for the events: the batch activities read the record
every half second. A wake-up that cannot be delivered is logged and answered all the same — the
change is recorded and in effect for sending, and a paused lane reads the record again on its
own within minutes — and a repeated call raises the events again. A change that took effect
queues ``send.paused`` or ``send.resumed`` (``send.canceled`` is queued when the canceled send has
stopped, with its final counts).
"""

import asyncio
import functools
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import azure.durable_functions as df
import azure.functions as func

from api.emails import read_status, status_url
from api.http import json_response, v1_errors
from orchestrators.names import KIND_BY_ORCHESTRATOR
from sendmail.contract.constants import FINISHED_STATUSES

if TYPE_CHECKING:
    from sendmail.feedback.webhooks.events import WebhookEvent
    from sendmail.sending.control import Action
    from sendmail.sending.sends import SendRecord

logger = logging.getLogger(__name__)

bp = df.Blueprint()

#: Attempts at raising one wake-up event, and the wait before the second.
RAISE_ATTEMPTS = 3
RAISE_RETRY_SECONDS = 0.2


@bp.function_name("email_pause")
@bp.route(route="v1/emails/{id}/pause", methods=["POST"])
@bp.durable_client_input(client_name="client")
@v1_errors
async def email_pause(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Stop starting new messages; the send waits, holding no worker, until resumed."""
    return await _control(req, client, "pause")


@bp.function_name("email_resume")
@bp.route(route="v1/emails/{id}/resume", methods=["POST"])
@bp.durable_client_input(client_name="client")
@v1_errors
async def email_resume(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Send again what a pause left: from where it stopped, nobody twice."""
    return await _control(req, client, "resume")


@bp.function_name("email_cancel")
@bp.route(route="v1/emails/{id}/cancel", methods=["POST"])
@bp.durable_client_input(client_name="client")
@v1_errors
async def email_cancel(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Stop for good: every recipient not sent yet ends ``canceled``."""
    return await _control(req, client, "cancel")


async def _control(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, action: "Action"
) -> func.HttpResponse:
    from sendmail import services
    from sendmail.contract.api_models import ControlResult
    from sendmail.contract.errors import NotFound
    from sendmail.sending.control import apply

    instance_id = req.route_params.get("id", "")
    missing = NotFound(f"No send with id {instance_id!r} exists.")
    if not (0 < len(instance_id) <= 100 and all(c.isalnum() or c in "-_" for c in instance_id)):
        raise missing
    status = await read_status(client, instance_id)
    if status.runtime_status is None or KIND_BY_ORCHESTRATOR.get(status.name or "") is None:
        raise missing
    ended = status.runtime_status.value in FINISHED_STATUSES
    now = datetime.now(UTC)
    applied = await asyncio.to_thread(
        functools.partial(
            apply, services.sends(), instance_id, action, ended=lambda: ended, now=now
        )
    )
    if applied is None:  # a send started before the sends table: nothing to control it by
        raise missing
    record, changed = applied
    if changed:
        logger.info("send %s: %s (control change %d)", instance_id, action, record.control_seq)
    if action != "pause" or changed:
        await wake(client, record, action)
    if changed and action != "cancel":
        await asyncio.to_thread(emit_change, record, now, action)
    body = ControlResult(
        id=instance_id,
        state=_shown_state(record, now),
        changed=changed,
        statusUrl=status_url(req, instance_id),
    )
    return json_response(body.model_dump(mode="json"))


def _shown_state(record: "SendRecord", now: datetime) -> str:
    if record.control != "running":
        return record.control
    if record.scheduled_at is not None and record.scheduled_at > now:
        return "scheduled"
    return "running"


async def wake(
    client: df.DurableOrchestrationClient, record: "SendRecord", action: "Action"
) -> None:
    """Raise the change's event to every lane (and a cancel's to the parent), all at once."""
    from orchestrators.lanes import lane_instance_id
    from sendmail.sending.control import CANCEL_EVENT, control_event

    # The change's own event, and the one before it: a change made where no Durable client is
    # (the account guard's pause, from the SNS route) raises none, and lanes that saw the change
    # before it wait for that number.
    numbers = [record.control_seq] + ([record.control_seq - 1] if record.control_seq > 1 else [])
    targets = [
        (lane_instance_id(record.id, n), control_event(seq))
        for n in range(record.lanes)
        for seq in numbers
    ]
    if action == "cancel":
        targets.append((record.id, CANCEL_EVENT))
    results = await asyncio.gather(
        *(_raise(client, instance, name, action) for instance, name in targets)
    )
    if not all(results):
        logger.warning(
            "send %s: %d of %d wake-ups for the %s were not delivered; the send's lanes read "
            "its record again on their own",
            record.id,
            results.count(False),
            len(results),
            action,
        )


async def _raise(
    client: df.DurableOrchestrationClient, instance_id: str, name: str, action: "Action"
) -> bool:
    """Raise one event; True when delivered or not needed (no such instance yet: a lane that
    has not started reads the record when it does; or one that has ended)."""
    url = client._get_raise_event_url(instance_id, name, None, None)
    for attempt in range(RAISE_ATTEMPTS):
        try:
            code, _ = await client._post_async_request(
                url, f'"{action}"', function_invocation_id=client._function_invocation_id
            )
        except Exception:
            code = None
        if code in (202, 404, 410):
            return True
        if attempt + 1 < RAISE_ATTEMPTS:
            await asyncio.sleep(RAISE_RETRY_SECONDS * 2**attempt)
    return False


def emit_change(record: "SendRecord", now: datetime, action: "Action") -> None:
    """Queue ``send.paused`` or ``send.resumed`` for the change ``action`` just made — only when
    the send itself went from running to paused or back: a second holder of a pause (``both``)
    or a resume that leaves the other holder's pause changes who holds it, not the send. The
    account guard's pauses and resumes too (api/account.py)."""
    from sendmail.feedback.webhooks.events import EventType, send_event

    if action == "pause" and record.paused_by == "both":
        return
    if action == "resume" and record.control != "running":
        return
    kind: EventType = "send.paused" if record.control == "paused" else "send.resumed"
    queue_event(
        send_event(
            kind,
            send_id=record.id,
            timestamp=now,
            state=record.control,
            metadata=dict(record.metadata) if record.metadata else None,
            occurrence=str(record.control_seq),
        )
    )


def queue_event(event: "WebhookEvent") -> None:
    """Queue a webhook event if its type is wanted (best effort: what happened stands whatever
    the queue says; the failure is logged)."""
    from sendmail import services
    from sendmail.feedback.webhooks.outbox import emit

    config = services.webhooks()
    if not config.wants(event.type):
        return
    try:
        emit(config, services.webhook_queue(), event)
    except Exception:
        logger.warning("the %s webhook %s was not queued", event.type, event.id, exc_info=True)
