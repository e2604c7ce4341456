"""``GET /_dev/metrics`` and a line per finished send: the app's telemetry, on this machine.

The app records through the OpenTelemetry API only (:mod:`sendmail.platform.telemetry`); in
Azure it exports to Application Insights. devhost gives it an in-memory SDK instead: a
``MeterProvider`` read on demand (cumulative since devhost started) and a ``TracerProvider`` whose
last :data:`SPANS_KEPT` spans are kept. ``GET /_dev/metrics`` shows both, with the pending
recipients derived as the workbook derives them (queued - sent - failed - canceled), and each
send that finishes prints one line (``send … completed: 980 sent, 20 failed, 0 canceled of 1000
in 12.3 s (79.7/s)``). ``DEVHOST_TELEMETRY=0`` leaves the app's instruments as the API's no-ops
(the telemetry benchmark's baseline).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

#: Spans kept in memory (a development view: the newest).
SPANS_KEPT = 200
SWITCH = "DEVHOST_TELEMETRY"

_COUNTED = ("sent", "failed", "canceled")


def enabled() -> bool:
    return os.environ.get(SWITCH, "1").strip().lower() not in ("0", "false", "off", "no")


class Metrics:
    """The app's metrics and spans, as ``GET /_dev/metrics`` shows them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: deque[dict[str, Any]] = deque(maxlen=SPANS_KEPT)
        self._reader: Any = None
        self.listening = False

    def listen(self, print_summary: bool = True) -> bool:
        """Give the app in-memory providers (and print each finished send); False when the
        app has no telemetry module or devhost's telemetry is off."""
        if not enabled():
            return False
        try:
            from sendmail.platform import telemetry
        except ImportError:
            return False
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        self._reader = InMemoryMetricReader()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(_SpanKeeper(self)))
        telemetry.use_providers(MeterProvider(metric_readers=[self._reader]), tracer_provider)
        if print_summary:
            telemetry.on_send_finished(lambda summary: print(summary.line(), flush=True))
        self.listening = True
        return True

    def keep(self, span: ReadableSpan) -> None:
        attributes = dict(span.attributes or {})
        took = (span.end_time or 0) - (span.start_time or 0)
        entry = {
            "name": span.name,
            "sendId": attributes.pop("sendmail.send_id", None),
            "traceId": f"{span.context.trace_id:032x}" if span.context else None,
            "ms": round(took / 1e6, 1),
            "status": span.status.status_code.name,
            "attributes": attributes,
        }
        with self._lock:
            self._spans.append(entry)

    def to_json(self) -> dict[str, Any]:
        if self._reader is None:
            return {"enabled": False, "metrics": {}, "spans": []}
        metrics = _points(self._reader.get_metrics_data())
        totals = {name: _total(metrics, f"sendmail.recipients.{name}") for name in _COUNTED}
        queued = _total(metrics, "sendmail.recipients.queued")
        with self._lock:
            spans = list(self._spans)
        return {
            "enabled": True,
            "metrics": metrics,
            "derived": {
                "sendmail.recipients.pending": queued - sum(totals.values()),
            },
            "spans": spans,
        }


class _SpanKeeper(SpanExporter):
    """A span exporter that hands each ended span to :class:`Metrics`."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            self._metrics.keep(span)
        return SpanExportResult.SUCCESS


def _points(data: Any) -> dict[str, Any]:
    """Each metric by name: its unit and its points (attributes and value)."""
    found: dict[str, Any] = {}
    if data is None:
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found[metric.name] = {
                    "unit": metric.unit,
                    "points": [
                        {"attributes": dict(point.attributes or {}), "value": point.value}
                        for point in metric.data.data_points
                    ],
                }
    return found


def _total(metrics: dict[str, Any], name: str) -> float:
    metric = metrics.get(name)
    return sum(p["value"] for p in metric["points"]) if metric else 0
