"""Tracing and logs for one process (a service or the gateway): OpenTelemetry spans (to a
JSON-lines file and/or OTLP) and JSON log lines that carry the trace id, so a log line leads
to its trace.

- TRACES_FILE set: every span is appended to that file as one JSON line, in the layout of
  the SDK's `ReadableSpan.to_json` (bytes attribute values written as text).
- OTEL_EXPORTER_OTLP_ENDPOINT set: spans also go to that collector over OTLP/HTTP.
- Neither: spans are still created, so trace context is still propagated.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.util import ns_to_iso_str
from opentelemetry.trace import SpanContext
from pythonjsonlogger.json import JsonFormatter

_configured = False

# Paths whose last segment is a secret: the one-time tokens mailed to users (confirm an e-mail, reset a password,
# accept an invitation). Whoever reads a trace or a log must not be able to use them: kept out as "{token}".
SECRET_PATHS = re.compile(
    r"(/api/user/confirm-email/|/api/user/reset/password/|/api/invitation/register/"
    r"|/console/confirm-email/|/console/reset-password/|/console/invitation/)[^/?#\s]+"
)
_URL_ATTRIBUTES = ("http.target", "url.path", "http.url", "url.full")


def redact_path(path: str) -> str:
    """`path` (or a URL) with its secret segments replaced by `{token}`."""
    return SECRET_PATHS.sub(r"\1{token}", path)


def redact_span(span: Any, scope: object = None) -> None:
    """Replace secret path segments in a span's URL attributes (an instrumentation's hook, or a span processor's)."""
    attributes = getattr(span, "attributes", None) or {}
    for key in _URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str) and SECRET_PATHS.search(value):
            span.set_attribute(key, redact_path(value))


class RedactSecretPaths(SpanProcessor):
    """Redacts a span's URL attributes when it starts (instrumentations set them at creation; exporters read them
    when it ends)."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        redact_span(span)


class _TraceIds(logging.Filter):
    """Adds service, and trace/span ids of the current span, to every log record."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            record.trace_id = format(ctx.trace_id, "032x")
            record.span_id = format(ctx.span_id, "016x")
        return True


def setup_logging(service: str, level: str = "INFO") -> None:
    """JSON log lines on stdout for the root logger (uvicorn's loggers included)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(_TraceIds(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # aiokafka is chatty at INFO about group rebalances; keep it to warnings.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # one line per request is the access log's job, and it is costly on a hot path
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def _text(value: object) -> object:
    """orjson's fallback: bytes (e.g. Kafka message keys, which the SDK's to_json can't write) as text."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def _context(ctx: SpanContext) -> dict[str, str]:
    return {
        "trace_id": f"0x{ctx.trace_id:032x}",
        "span_id": f"0x{ctx.span_id:016x}",
        "trace_state": repr(ctx.trace_state),
    }


class JsonLinesFileExporter(SpanExporter):
    """Appends spans to a file, one JSON object per line, in `ReadableSpan.to_json`'s layout.

    Serialised with orjson and a cached resource: `to_json` costs ~65 us a span, which on the
    gateway's hot path (its CPU is shared with the export thread) cost a third of its
    throughput (bench/gateway). Each batch is one O_APPEND write, so several processes
    (HTTP_WORKERS) can share the file.
    """

    def __init__(self, path: str) -> None:
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()
        self._resources: dict[int, dict[str, Any]] = {}

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = b"".join(self.line(span) for span in spans)
        try:
            with self._lock:
                os.write(self._fd, data)
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def line(self, span: ReadableSpan) -> bytes:
        """One span as one JSON line (newline included)."""
        resource = self._resources.get(id(span.resource))
        if resource is None:
            resource = self._resources[id(span.resource)] = json.loads(span.resource.to_json())
        return orjson.dumps(span_record(span, resource), default=_text, option=orjson.OPT_APPEND_NEWLINE)

    def shutdown(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def span_record(span: ReadableSpan, resource: dict[str, Any] | None = None) -> dict[str, Any]:
    """One span in `ReadableSpan.to_json`'s layout; `resource`: the span's resource as a dict, if at hand."""
    status = {"status_code": span.status.status_code.name}
    if span.status.description:
        status["description"] = span.status.description
    return {
        "name": span.name,
        "context": _context(span.context) if span.context else None,
        "kind": str(span.kind),
        "parent_id": f"0x{span.parent.span_id:016x}" if span.parent is not None else None,
        "start_time": ns_to_iso_str(span.start_time) if span.start_time else None,
        "end_time": ns_to_iso_str(span.end_time) if span.end_time else None,
        "status": status,
        "attributes": dict(span.attributes or {}),
        "events": [
            {"name": e.name, "timestamp": ns_to_iso_str(e.timestamp), "attributes": dict(e.attributes or {})}
            for e in span.events
        ],
        "links": [
            {"context": _context(link.context), "attributes": dict(link.attributes or {})} for link in span.links
        ],
        "resource": resource if resource is not None else json.loads(span.resource.to_json()),
    }


def span_json_line(span: ReadableSpan) -> str:
    """One span as one JSON line, as the TRACES_FILE exporter writes it."""
    return orjson.dumps(span_record(span), default=_text, option=orjson.OPT_APPEND_NEWLINE).decode()


def setup_tracing(service: str, traces_file: str | None, otlp_endpoint: str | None) -> TracerProvider:
    """Install and return this process's tracer provider (once per process; later calls return it)."""
    global _configured
    provider = trace.get_tracer_provider()
    if _configured and isinstance(provider, TracerProvider):
        return provider
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(RedactSecretPaths())
    if traces_file:
        # OTEL_BSP_SCHEDULE_DELAY, when set, decides how soon a span is written; else within 200 ms
        delay = None if "OTEL_BSP_SCHEDULE_DELAY" in os.environ else 200
        provider.add_span_processor(BatchSpanProcessor(JsonLinesFileExporter(traces_file), schedule_delay_millis=delay))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces"))
        )
    trace.set_tracer_provider(provider)
    _configured = True
    return provider


TraceContext = Context  # for services, which do not import OpenTelemetry themselves


def current_trace() -> Context:
    """The trace context now (a request's, a message's): to carry work done later, elsewhere, under it."""
    return otel_context.get_current()


@contextlib.contextmanager
def in_trace(context: Context) -> Iterator[None]:
    """Run the block under `context` (from `current_trace`), e.g. one request's share of a group commit: the events
    it records continue that request's trace."""
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)
