"""The operators' view of the SES account, and the account guard's trip and reset.

``GET /api/v1/account`` (host keys only: access.json) says what the account is — production or
sandbox, quota and rate, SES's enforcement status — what the service itself measured (bounce and
complaint rates over the guard's window) and the guard's state. ``POST /api/v1/account/guard/
reset`` lets bulk sending go on after an operator looked at what bounced: the guard is ``ok``
again, and every send it paused is resumed (and woken).

:func:`guard_tripped` is what happens when the guard trips, wherever it trips (the SNS route's
event counts, SES's enforcement status read here): the unfinished bulk sends are paused as the
guard's and ``account.guard_tripped`` is queued. Pausing writes the sends' records only: their
batches read them within half a second (sendmail/sending/control.py).
"""

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import azure.durable_functions as df
import azure.functions as func

from api.http import json_response, v1_errors

if TYPE_CHECKING:
    from sendmail.admission.guard import GuardState

logger = logging.getLogger(__name__)

bp = df.Blueprint()

#: SES's enforcement statuses that trip the guard at once (SESv2 ``GetAccount``).
TRIPPING_ENFORCEMENT = frozenset({"PROBATION", "SHUTDOWN"})


def guard_tripped(state: "GuardState") -> int:
    """The guard just tripped: pause the unfinished bulk sends as the guard's and queue
    ``account.guard_tripped``; how many were paused. Blocking: call it on a worker thread."""
    from api.control import queue_event
    from sendmail.feedback.webhooks.events import guard_event

    paused = pause_bulk()
    queue_event(
        guard_event(
            timestamp=state.since or datetime.now(UTC),
            reason=state.reason or "",
            paused_sends=paused,
        )
    )
    return paused


def pause_bulk() -> int:
    """Pause, as the guard's, every unfinished bulk send not paused by it yet; how many. Done
    when the guard trips, and again whenever an operator reads the account while it is tripped
    (a trip whose pauses failed half-way is completed then)."""
    from api.control import emit_change
    from sendmail import services
    from sendmail.admission.guard import bulk
    from sendmail.sending.control import ControlConflict, apply
    from sendmail.sending.lists import stored_send

    sends = services.sends()
    now = datetime.now(UTC)

    def category(list_ref: str) -> str:
        try:
            return stored_send(services.blobs(), list_ref).mail().category
        except Exception:  # unreadable: judged by its size alone
            logger.warning("send %s: its content is unreadable", list_ref, exc_info=True)
            return "transactional"

    paused = 0
    for record in bulk(services.guard(), sends.unfinished(), category):
        try:
            changed = apply(sends, record.id, "pause", ended=lambda: False, now=now, by="guard")
        except ControlConflict:
            continue
        if changed is not None and changed[1]:
            paused += 1
            emit_change(changed[0], now, "pause")
    if paused:
        logger.warning("account guard: %d sends paused", paused)
    return paused


@bp.function_name("account_get")
@bp.route(route="v1/account", methods=["GET"])
@v1_errors
async def account_get(req: func.HttpRequest) -> func.HttpResponse:
    """The SES account, the service's own rates, the guard."""
    from sendmail.contract.api_models import AccountStatus

    body = AccountStatus.model_validate(await asyncio.to_thread(_account))
    return json_response(body.model_dump(mode="json"))


def _account() -> dict[str, Any]:
    from sendmail import services

    guard = services.guard()
    ses = services.ses_sender()
    facts: dict[str, Any] = {"sandbox": None, "enforcementStatus": None, "quota": None}
    try:
        quota = ses.get_quota()
        facts["quota"] = {
            "max24HourSend": quota.max_24_hour_send,
            "maxSendRate": quota.max_send_rate,
            "sentLast24Hours": quota.sent_last_24_hours,
        }
    except Exception:
        logger.warning("SES GetSendQuota failed", exc_info=True)
    facts.update(_ses_account())
    trip_on_enforcement(facts.get("enforcementStatus"))
    state = guard.state(fresh=True)
    if state.state == "tripped":
        pause_bulk()
    counts = guard.rates()
    settings = guard.settings
    return {
        **facts,
        "rates": {
            "windowHours": settings.SENDMAIL_GUARD_WINDOW_HOURS,
            "sample": counts.sample,
            "bounced": counts.bounced,
            "complained": counts.complained,
            "bounceRate": round(counts.bounce_rate, 6),
            "complaintRate": round(counts.complaint_rate, 6),
        },
        "guard": state.to_json(),
    }


def _ses_account() -> dict[str, Any]:
    """Sandbox and enforcement status from SESv2 ``GetAccount``, read now (None each when
    unknown): through preflight's reader (retries, and its cache refreshed for admission), or
    the sender's client where there is no preflight (unit tests)."""
    from sendmail import services

    preflight = services.preflight()
    if preflight is not None:
        summary = preflight.account_summary(fresh=True) or {}
        return {
            "sandbox": summary.get("sandbox"),
            "enforcementStatus": summary.get("enforcementStatus"),
        }
    try:
        response = services.ses_sender().account()
    except Exception:
        logger.warning("SES GetAccount failed", exc_info=True)
        return {}
    production = response.get("ProductionAccessEnabled")
    return {
        "sandbox": None if production is None else not production,
        "enforcementStatus": response.get("EnforcementStatus"),
    }


def trip_on_enforcement(enforcement: str | None) -> None:
    """Trip the guard (and pause the bulk sends) when SES's enforcement status says the account
    is under review or worse; nothing when it is already tripped. Blocking."""
    from sendmail import services

    if enforcement not in TRIPPING_ENFORCEMENT:
        return
    tripped = services.guard().trip(
        f"SES reports the account's enforcement status as {enforcement}", "enforcement"
    )
    if tripped is not None:
        guard_tripped(tripped)


@bp.function_name("account_guard_reset")
@bp.route(route="v1/account/guard/reset", methods=["POST"])
@bp.durable_client_input(client_name="client")
@v1_errors
async def account_guard_reset(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """An operator lets bulk sending go on: the guard is ok, the sends it paused resume."""
    from api.control import wake
    from sendmail import services
    from sendmail.contract.api_models import GuardReset

    reset, changed = await asyncio.to_thread(_reset)
    for record in changed:
        await wake(client, record, "resume")
    state = await asyncio.to_thread(lambda: services.guard().state(fresh=True))
    running = sum(1 for record in changed if record.control == "running")
    body = GuardReset.model_validate(
        {"guard": state.to_json(), "wasTripped": reset, "resumedSends": running}
    )
    return json_response(body.model_dump(mode="json"))


def _reset() -> tuple[bool, list[Any]]:
    from api.control import emit_change
    from sendmail import services
    from sendmail.sending.control import ControlConflict, apply

    reset = services.guard().reset()
    sends = services.sends()
    now = datetime.now(UTC)
    resumed = []
    for record in sends.unfinished():
        if record.control != "paused" or record.paused_by not in ("guard", "both"):
            continue
        try:
            changed = apply(sends, record.id, "resume", ended=lambda: False, now=now, by="guard")
        except ControlConflict:
            continue
        if changed is not None and changed[1]:
            resumed.append(changed[0])  # woken either way: a caller's own pause stays
            emit_change(changed[0], now, "resume")
    logger.warning("account guard reset: %d sends resumed", len(resumed))
    return reset, resumed
