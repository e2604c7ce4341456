"""The v1 routes: send through SES or SMTP, and the status route callers poll.

A send route parses and validates the body, admits the request (allowed sender, SES quota — both
decided before anything starts, since once a 202 is out it is too late for 403 or 429), seals the
SMTP password, starts the orchestration and answers 202 with ``Location`` — or, when the caller
asked with ``Prefer: wait=N`` and the send finishes in time, the v1 ``200 {"messageIds": [...]}``.
Domain modules are imported inside the handlers: keeping ``function_app`` cheap to import.
"""

import asyncio
import logging
import time
from typing import Any

import azure.durable_functions as df
import azure.functions as func
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus

from api.http import (
    as_json_object,
    json_response,
    preferred_wait,
    request_path,
    retry_after,
    url_for,
    v1_errors,
)
from orchestrators.names import KIND_BY_ORCHESTRATOR, SES_ORCHESTRATOR, SMTP_ORCHESTRATOR

logger = logging.getLogger(__name__)

bp = df.Blueprint()

STATUS_ROUTE = "v1/emails/{id}"
#: Seconds a poller is asked to wait between status reads while a send runs.
POLL_AFTER_SECONDS = 2

_FINISHED = {"Completed", "Failed", "Terminated", "Canceled"}


def status_url(req: func.HttpRequest, instance_id: str) -> str:
    return url_for(req, f"/api/v1/emails/{instance_id}")


@bp.function_name("aws_send")
@bp.route(route="v1/emails/aws-send", methods=["POST"])
@bp.durable_client_input(client_name="client")
@v1_errors
async def aws_send(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    from sendmail import services
    from sendmail.admission import admit_ses
    from sendmail.jobs import Mail, SesJob
    from sendmail.models import AwsEmailRequest, Limits, parse_request
    from sendmail.settings import get_settings

    settings = get_settings()
    request = parse_request(AwsEmailRequest, req.get_body(), Limits.for_aws(settings))
    quota = admit_ses(request, settings, services.ses_sender())
    in_flight = settings.SENDMAIL_SES_MAX_IN_FLIGHT_BATCHES
    job = SesJob(
        mail=Mail(sender=request.senderEmail, subject=request.subject, body=request.body),
        recipients=request.recipientEmails,
        batchSize=settings.SENDMAIL_SES_BATCH_SIZE,
        maxInFlight=in_flight,
        maxRatePerBatch=quota.max_send_rate / in_flight if quota.max_send_rate > 0 else None,
    )
    instance_id = await client.start_new(SES_ORCHESTRATOR, None, job.model_dump(mode="json"))
    logger.info("ses send %s started: %d recipients", instance_id, len(job.recipients))
    return await _accepted(req, client, instance_id, "ses", len(job.recipients))


@bp.function_name("user_send")
@bp.route(route="v1/emails/user-send", methods=["POST"])
@bp.durable_client_input(client_name="client")
@v1_errors
async def user_send(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    from sendmail import services
    from sendmail.jobs import Mail, SmtpJob
    from sendmail.models import Limits, UserEmailRequest, parse_request
    from sendmail.settings import get_settings

    settings = get_settings()
    request = parse_request(UserEmailRequest, req.get_body(), Limits.for_user(settings))
    job = SmtpJob(
        mail=Mail(sender=request.senderEmail, subject=request.subject, body=request.body),
        provider=request.provider,
        sealedPassword=services.sealer().seal(request.password),
        recipients=request.recipientEmails,
        connections=settings.SENDMAIL_SMTP_CONNECTIONS,
    )
    instance_id = await client.start_new(SMTP_ORCHESTRATOR, None, job.model_dump(mode="json"))
    logger.info(
        "smtp send %s started: provider %s, %d recipients",
        instance_id,
        job.provider.value,
        len(job.recipients),
    )
    return await _accepted(req, client, instance_id, "smtp", len(job.recipients))


async def _accepted(
    req: func.HttpRequest,
    client: df.DurableOrchestrationClient,
    instance_id: str,
    kind: str,
    total: int,
) -> func.HttpResponse:
    """202 with where to poll — or the v1 200 if the caller waits and the send finishes."""
    location = status_url(req, instance_id)
    wait = preferred_wait(req)
    if wait:
        status = await _wait_for_finish(client, instance_id, wait)
        if status is not None and status.runtime_status is not None:
            name = status.runtime_status.value
            output = as_json_object(status.output)
            if name == "Completed" and output is not None:
                return json_response(
                    {
                        "id": instance_id,
                        "messageIds": output.get("messageIds", []),
                        "failures": output.get("failures", []),
                    },
                    200,
                    {"Preference-Applied": f"wait={wait}", "Content-Location": location},
                )
            if name in _FINISHED:
                from sendmail.errors import envelope

                body = envelope(
                    500,
                    f"The send {instance_id} ended as {name}; see {location} for details.",
                    request_path(req),
                )
                return json_response(body, 500, {"Location": location})
    return json_response(
        {
            "id": instance_id,
            "kind": kind,
            "runtimeStatus": "Pending",
            "total": total,
            "statusUrl": location,
        },
        202,
        {"Location": location, **retry_after(POLL_AFTER_SECONDS)},
    )


async def _wait_for_finish(
    client: df.DurableOrchestrationClient, instance_id: str, seconds: int
) -> DurableOrchestrationStatus | None:
    deadline = time.monotonic() + seconds
    delay = 0.1
    status: DurableOrchestrationStatus | None = None
    while True:
        status = await client.get_status(instance_id)
        if status.runtime_status is not None and status.runtime_status.value in _FINISHED:
            return status
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return status
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, 1.0)


@bp.function_name("email_status")
@bp.route(route=STATUS_ROUTE, methods=["GET"])
@bp.durable_client_input(client_name="client")
@v1_errors
async def email_status(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    from sendmail.errors import NotFound

    instance_id = req.route_params.get("id", "")
    status = await client.get_status(instance_id) if _plausible_id(instance_id) else None
    kind = KIND_BY_ORCHESTRATOR.get(status.name or "") if status is not None else None
    if status is None or status.runtime_status is None or kind is None:
        raise NotFound(f"No send with id {instance_id!r} exists.")
    runtime = status.runtime_status.value
    output = as_json_object(status.output) if runtime == "Completed" else None
    custom = as_json_object(status.custom_status) or {}
    if output is not None:
        progress = {k: output.get(k, 0) for k in ("total", "sent", "failed")}
    else:
        progress = {k: custom.get(k) for k in ("total", "sent", "failed")}
        if progress["total"] is None:
            progress = await _pending_progress(client, instance_id)
    body: dict[str, Any] = {
        "id": instance_id,
        "kind": kind,
        "runtimeStatus": runtime,
        "createdTime": _iso(status.created_time),
        "lastUpdatedTime": _iso(status.last_updated_time),
        "progress": progress,
        "messageIds": output.get("messageIds", []) if output else [],
        "failures": output.get("failures", []) if output else [],
    }
    if runtime in {"Failed", "Terminated", "Canceled"}:
        body["error"] = f"The send ended as {runtime} before every recipient was attempted."
    headers = {} if runtime in _FINISHED else retry_after(POLL_AFTER_SECONDS)
    return json_response(body, 200 if runtime in _FINISHED else 202, headers)


async def _pending_progress(
    client: df.DurableOrchestrationClient, instance_id: str
) -> dict[str, int]:
    """Before the orchestrator's first episode there is no custom status: count the input.

    The input is read here, server-side, only for its recipient count; it is never returned.
    """
    status = await client.get_status(instance_id, show_input=True)
    job = as_json_object(status.input_) or {}
    recipients = job.get("recipients")
    total = len(recipients) if isinstance(recipients, list) else 0
    return {"total": total, "sent": 0, "failed": 0}


def _plausible_id(instance_id: str) -> bool:
    return 0 < len(instance_id) <= 100 and all(c.isalnum() or c in "-_" for c in instance_id)


def _iso(moment: Any) -> str | None:
    if moment is None:
        return None
    text: str = moment.isoformat() if hasattr(moment, "isoformat") else str(moment)
    return text.replace("+00:00", "Z")
