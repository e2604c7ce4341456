"""Metrics and traces: what the service counts, through the OpenTelemetry API only.

**Who configures what.** In Azure this module does, lazily: at the first record of a process, with
``APPLICATIONINSIGHTS_CONNECTION_STRING`` set (the Bicep sets it), it configures the Azure Monitor
OpenTelemetry distro (``configure_azure_monitor``) on a background thread, for metrics and traces;
logs keep going through the Functions host, as before (the distro's log exporter is off, or each
record would be stored twice). The worker's own route (the app setting
``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY``, azure-functions-python-worker ``dispatcher.py``
→ ``otel.initialize_azure_monitor``) imports and configures the distro at the worker's init
request, before the app loads: about half a second on every cold start, and with the distro's
defaults (the Azure SDK's span per Table write, a log exporter storing each log twice), so the
Bicep leaves it unset. If someone switches it on all the same, the SDK it configured is used and
nothing is configured twice. devhost
configures an in-memory SDK instead (``/_dev/metrics``). Without either, the API's instruments are
no-ops costing a method call.

**Off the cold-start path.** ``opentelemetry`` is imported on the first record, never when the
app is imported; the instruments are created once per process.

**Per batch, not per recipient.** The engine counts a batch's outcomes in one call (and a throttle
as it happens, which is rare by design): no span or counter per ``SendEmail`` or ledger write.
Spans cover an admission and a batch, each with the send id (``sendmail.send_id``), which is the
correlation across the Durable host: the Python Durable SDK does not carry trace context from a
starter into its orchestration and activities. The service's log lines name the send in their
text, as they always did (:mod:`sendmail.platform.logs`): they reach Application Insights through
the host, which keeps no custom field of a Python log record.

**The catalogue** (the names the workbook and the alert rules query; all counters are monotonic
and exported as deltas by the Azure Monitor exporter):

=====================================  ========================================================
``sendmail.sends.started``             sends admitted; ``api`` (aws|user), ``category``,
                                       ``scheduled`` (true|false)
``sendmail.sends.finished``            sends ended; ``api``, ``state`` (completed|canceled|failed)
``sendmail.recipients.queued``         recipients of the sends admitted; ``api``
``sendmail.recipients.sent``           recipients accepted by SES or the SMTP server; ``transport``
``sendmail.recipients.failed``         recipients failed for good; ``transport``, ``code``
                                       (``SEND_FAILED``: a failed send's unsettled ones)
``sendmail.recipients.canceled``       recipients not sent because their send was canceled
``sendmail.recipients.throttled``      sends refused for the rate and tried again; ``transport``
``sendmail.ses.rate``                  (gauge) the SES calls per second this instance's
                                       batches are pacing at now
``sendmail.sns.events``                SES events received through SNS; ``type`` (SES's
                                       names), and ``permanent`` (true|false) for a Bounce
``sendmail.admission.refusals``        requests refused; ``route``, ``status``, ``reason``
``sendmail.webhooks.deliveries``       webhook delivery attempts; ``event``, ``outcome``
                                       (delivered|retried|poisoned — given up after every
                                       retry — |refused|gone|dropped)
``sendmail.guard.trips``               the account guard tripping; ``reason``
=====================================  ========================================================

Recipients *pending* are ``queued - sent - failed - canceled``: a gauge kept by one process would
be wrong on a plan whose instances come and go (the exporter sends an up-down counter as each
process's own running total), while the four counters add up across instances.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

METER_NAME = "sendmail"
#: The Application Insights connection string (the Functions host's own setting).
CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
#: The span attribute that names the send.
SEND_ID = "sendmail.send_id"
#: ``sendmail.recipients.failed``'s ``code`` for the recipients of a send that failed which no
#: batch settled (not a failure code of the API: no ledger row says it).
UNSETTLED = "SEND_FAILED"


#: Every counter: the attribute the recorders name it by, its name, unit and description.
COUNTERS: dict[str, tuple[str, str, str]] = {
    "sends_started": ("sendmail.sends.started", "{send}", "Sends admitted"),
    "sends_finished": ("sendmail.sends.finished", "{send}", "Sends ended"),
    "queued": ("sendmail.recipients.queued", "{recipient}", "Recipients of the sends admitted"),
    "sent": ("sendmail.recipients.sent", "{recipient}", "Recipients sent"),
    "failed": ("sendmail.recipients.failed", "{recipient}", "Recipients failed for good"),
    "canceled": (
        "sendmail.recipients.canceled",
        "{recipient}",
        "Recipients not sent: send canceled",
    ),
    "throttled": (
        "sendmail.recipients.throttled",
        "{call}",
        "Sends refused for the rate, tried again",
    ),
    "sns_events": ("sendmail.sns.events", "{event}", "SES events through SNS"),
    "refusals": ("sendmail.admission.refusals", "{request}", "Requests refused at admission"),
    "webhooks": ("sendmail.webhooks.deliveries", "{attempt}", "Webhook delivery attempts"),
    "guard_trips": ("sendmail.guard.trips", "{trip}", "The account guard tripping"),
}


class _Adds(Protocol):
    def add(self, amount: int, attributes: Mapping[str, str] | None = None) -> None: ...


class _Instruments:
    """The counters by their attribute name (:data:`COUNTERS`), and the rate gauge."""

    def __init__(self, counters: Mapping[str, _Adds]) -> None:
        self.counters = dict(counters)

    @classmethod
    def made(cls, provider: MeterProvider | None) -> _Instruments:
        from opentelemetry import metrics

        meter = (provider or metrics.get_meter_provider()).get_meter(METER_NAME)
        meter.create_observable_gauge(
            "sendmail.ses.rate",
            callbacks=[_observe_rates],
            unit="{call}/s",
            description="SES calls per second this instance's batches pace at",
        )
        return cls(
            {
                key: meter.create_counter(name, unit, description)
                for key, (name, unit, description) in COUNTERS.items()
            }
        )


class _Held:
    """Records kept while the exporter is being configured, replayed into the real counters
    once it is: OpenTelemetry's proxy instruments would drop them, and the first records of an
    instance are its first admission's (``sends.started``, ``recipients.queued``) — lost, the
    derived pending would go negative by that send on every instance that starts. At most
    :data:`HELD_MOST` records are kept (a configuration that never ends must not grow memory)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, int, dict[str, str]]] = []
        self.target: _Instruments | None = None

    def counters(self) -> dict[str, _Adds]:
        return {key: _HeldCounter(self, key) for key in COUNTERS}

    def release(self, target: _Instruments) -> None:
        with self.lock:
            for key, amount, attributes in self.calls:
                target.counters[key].add(amount, attributes)
            self.calls.clear()
            self.target = target


#: Records held at most while the exporter is configured (beyond: dropped).
HELD_MOST = 10_000


class _HeldCounter:
    def __init__(self, held: _Held, key: str) -> None:
        self._held, self._key = held, key

    def add(self, amount: int, attributes: Mapping[str, str] | None = None) -> None:
        with self._held.lock:
            target = self._held.target
            if target is None:
                if len(self._held.calls) < HELD_MOST:
                    self._held.calls.append((self._key, amount, dict(attributes or {})))
                return
        target.counters[self._key].add(amount, attributes)


_P = ParamSpec("_P")


def _never_raises(record: Callable[_P, None]) -> Callable[_P, None]:
    """A recorder that cannot fail its caller: telemetry runs after mail went out, after a state
    was written, before a tally is returned — an exception there would cost a re-send or a lost
    step. A failure is logged (the first of each recorder's, with its traceback) and dropped."""
    failed: list[bool] = []

    @functools.wraps(record)
    def recorder(*args: _P.args, **kwargs: _P.kwargs) -> None:
        try:
            record(*args, **kwargs)
        except Exception:
            logging.getLogger(__name__).warning(
                "telemetry: %s failed; not recorded", record.__name__, exc_info=not failed
            )
            failed.append(True)

    return recorder


class _State:
    """What this process records with (one per process, changed under ``lock``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.instruments: _Instruments | None = None
        self.meter_provider: MeterProvider | None = None
        self.tracer_provider: TracerProvider | None = None


_state = _State()


def use_providers(
    meter_provider: MeterProvider | None, tracer_provider: TracerProvider | None = None
) -> None:
    """Record with these providers instead of OpenTelemetry's global ones (devhost, tests);
    None for both: the global ones again. The instruments are made again on the next record."""
    with _state.lock:
        _state.meter_provider, _state.tracer_provider = meter_provider, tracer_provider
        _state.instruments = None


def _get() -> _Instruments:
    found = _state.instruments
    if found is None:
        with _state.lock:
            if _state.instruments is None:
                held = _export_from_here() if _state.meter_provider is None else None
                if held is not None:  # until the exporter is configured
                    _state.instruments = _Instruments(held.counters())
                else:
                    _state.instruments = _Instruments.made(_state.meter_provider)
            found = _state.instruments
    return found


def _export_from_here() -> _Held | None:
    """In Azure (a connection string, ``SENDMAIL_TELEMETRY_ENABLED``, and no SDK configured
    by the worker already): configure the Azure Monitor distro on a thread of its own, so that no
    request or activity waits for it (about 0.5 s of imports and set-up). What is recorded
    meanwhile is held and recorded once it is configured (:class:`_Held`, returned; None when
    nothing is being configured)."""
    if not os.environ.get(CONNECTION_STRING):
        return None
    try:
        from sendmail.platform.settings import get_settings

        if not get_settings().SENDMAIL_TELEMETRY_ENABLED:
            return None
    except Exception:  # invalid settings fail the code that needs them, not the telemetry
        return None
    from opentelemetry import metrics

    if type(metrics.get_meter_provider()).__name__ != "_ProxyMeterProvider":
        return None  # the worker configured it (PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY)
    held = _Held()
    try:
        threading.Thread(
            target=_configure_azure_monitor, args=(held,), name="sendmail-telemetry", daemon=True
        ).start()
    except RuntimeError:  # no thread to be had: this process exports nothing, and says so once
        logging.getLogger(__name__).warning("telemetry: no thread to configure the exporter on")
        return None
    return held


#: The auto-instrumentations the distro would switch on, all off: the Azure SDK's would add a span
#: per Table or Blob call (a ledger write each), and the service makes no other HTTP calls worth
#: one. Its own spans (an admission, a batch) are the traces.
INSTRUMENTATIONS_OFF = (
    "azure_sdk",
    "django",
    "fastapi",
    "flask",
    "httpx",
    "httpx2",
    "psycopg2",
    "requests",
    "urllib",
    "urllib3",
)


def _configure_azure_monitor(held: _Held) -> None:
    log = logging.getLogger(__name__)
    try:
        from azure.monitor.opentelemetry import configure_azure_monitor

        # Logs already reach Application Insights through the Functions host: exported here too,
        # each would be stored twice. The distro's ``disable_logging=True`` is not enough: its
        # defaults overwrite it from this variable (azure-monitor-opentelemetry 1.8.11,
        # ``_utils/configurations.py``, ``_default_disable_logging``).
        os.environ.setdefault("OTEL_LOGS_EXPORTER", "none")
        configure_azure_monitor(
            connection_string=os.environ.get(CONNECTION_STRING),
            enable_live_metrics=False,
            # The host collects the process's counters already; these would add a span processor.
            enable_performance_counters=False,
            instrumentation_options={name: {"enabled": False} for name in INSTRUMENTATIONS_OFF},
        )
        log.info("telemetry: metrics and traces export to Application Insights")
    except Exception:
        log.warning("telemetry: the Azure Monitor exporter could not be configured", exc_info=True)
    # Configured or not, the real instruments take over (without an SDK: no-ops) and what was
    # held is recorded into them.
    made = _Instruments.made(None)
    held.release(made)
    with _state.lock:
        if _state.meter_provider is None:
            _state.instruments = made


def _count(key: str, amount: int, attributes: Mapping[str, str]) -> None:
    if amount > 0:
        _get().counters[key].add(amount, dict(attributes))


# --- the rate gauge: what the live SES batches of this process pace at -------------------------

_rates_lock = threading.Lock()
_rates: dict[int, Callable[[], float | None]] = {}


def _observe_rates(_options: Any) -> Iterator[Any]:
    from opentelemetry.metrics import Observation

    with _rates_lock:
        sources = list(_rates.values())
    total = 0.0
    for source in sources:
        rate = source()
        if rate is not None and rate != float("inf"):
            total += rate
    yield Observation(total, {"transport": "ses"})


@contextmanager
def pacing(rate: Callable[[], float | None]) -> Iterator[None]:
    """While inside, ``rate()`` (calls per second, None when unknown) counts in the gauge."""
    _instruments_made()  # the gauge exists once the instruments do
    key = id(rate)
    with _rates_lock:
        _rates[key] = rate
    try:
        yield
    finally:
        with _rates_lock:
            _rates.pop(key, None)


@_never_raises
def _instruments_made() -> None:
    _get()


# --- sends -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendSummary:
    """One finished send, as the one-line summary says it."""

    send_id: str
    api: str
    state: str
    total: int
    sent: int
    failed: int
    canceled: int
    #: From the request's admission to the end (None when unknown).
    seconds: float | None

    def line(self) -> str:
        took = "" if self.seconds is None else f" in {self.seconds:.1f} s"
        rate = ""
        if self.seconds and self.sent:
            rate = f" ({self.sent / self.seconds:.1f}/s)"
        return (
            f"send {self.send_id} {self.state}: {self.sent} sent, {self.failed} failed, "
            f"{self.canceled} canceled of {self.total}{took}{rate}"
        )


#: Told of every send that finished in this process (devhost prints the summary line).
_finished_listeners: list[Callable[[SendSummary], None]] = []


def on_send_finished(listener: Callable[[SendSummary], None]) -> Callable[[], None]:
    """Call ``listener`` for each send finished in this process; the function that stops it."""
    _finished_listeners.append(listener)
    return lambda: _finished_listeners.remove(listener)


@_never_raises
def send_started(send_id: str, api: str, recipients: int, category: str, scheduled: bool) -> None:
    """A send was admitted and its orchestration started; the current span (the admission's)
    is given its id."""
    from opentelemetry import trace

    current = trace.get_current_span()
    if current.is_recording():
        current.set_attribute(SEND_ID, send_id)
    attributes = {"api": api, "category": category, "scheduled": "true" if scheduled else "false"}
    _count("sends_started", 1, attributes)
    _count("queued", recipients, {"api": api})


@_never_raises
def send_finished(summary: SendSummary, unsent_canceled: int = 0) -> None:
    """A send ended. ``unsent_canceled``: recipients canceled without a batch ever settling them
    (a scheduled send canceled before its time), counted here since no batch counts them."""
    _count("sends_finished", 1, {"api": summary.api, "state": summary.state})
    _count("canceled", unsent_canceled, {"transport": _transport(summary.api)})
    for listener in list(_finished_listeners):
        try:
            listener(summary)
        except Exception:  # a listener never fails the activity that finished the send
            logging.getLogger(__name__).exception("a send-finished listener failed")


def _transport(api: str) -> str:
    return "ses" if api == "aws" else "smtp"


# --- recipients --------------------------------------------------------------------------------


@_never_raises
def recipients_settled(transport: str, sent: int, failures: Mapping[str, int]) -> None:
    """A batch run's new outcomes: ``sent`` now, and failures by code (``CANCELED`` counts as
    canceled, not failed). Outcomes settled by an earlier run are not counted again."""
    _count("sent", sent, {"transport": transport})
    for code, count in failures.items():
        if code == "CANCELED":
            _count("canceled", count, {"transport": transport})
        else:
            _count("failed", count, {"transport": transport, "code": code})


@_never_raises
def throttled(transport: str, count: int = 1) -> None:
    _count("throttled", count, {"transport": transport})


# --- the edges -----------------------------------------------------------------------------------


@_never_raises
def sns_events(event_type: str, count: int = 1, permanent: bool | None = None) -> None:
    """``count`` SES events of ``event_type``; for a bounce, ``permanent`` (True, False)."""
    attributes = {"type": event_type}
    if permanent is not None:
        attributes["permanent"] = "true" if permanent else "false"
    _count("sns_events", count, attributes)


@_never_raises
def admission_refused(route: str, status: int, reason: str) -> None:
    _count("refusals", 1, {"route": route, "status": str(status), "reason": reason})


@_never_raises
def webhook_delivery(event: str, outcome: str) -> None:
    _count("webhooks", 1, {"event": event, "outcome": outcome})


@_never_raises
def guard_tripped(reason: str) -> None:
    _count("guard_trips", 1, {"reason": reason})


# --- spans ---------------------------------------------------------------------------------------


@contextmanager
def span(name: str, send_id: str | None, **attributes: str | int | bool) -> Iterator[Any]:
    """A span named ``name`` around the block, with the send id as ``sendmail.send_id`` and each
    of ``attributes`` as ``sendmail.{key}``; a child of the current span, if any. An admission's
    span and its batches' are each the root of a trace (no context crosses the Durable host):
    the send id joins them. Yields the span."""
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    tracer = (_state.tracer_provider or trace.get_tracer_provider()).get_tracer(METER_NAME)
    # No exception event and no exception text on the span: messages name addresses (a refused
    # sender, the sandbox's unverified recipients, an SMTP server's answer). The type and the
    # reason, which are stable names, say what happened.
    with tracer.start_as_current_span(
        name, record_exception=False, set_status_on_exception=False
    ) as current:
        if current.is_recording():
            if send_id is not None:
                current.set_attribute(SEND_ID, send_id)
            for key, value in attributes.items():
                current.set_attribute(f"sendmail.{key}", value)
        try:
            yield current
        except Exception as error:
            if current.is_recording():
                current.set_status(Status(StatusCode.ERROR, type(error).__name__))
                current.set_attribute("sendmail.error", type(error).__name__)
                reason = getattr(error, "reason", None)
                if isinstance(reason, str):
                    current.set_attribute("sendmail.reason", reason)
            raise
