"""Tracing and logs: OpenTelemetry spans (to a JSON-lines file and/or OTLP) and JSON log lines
that carry the trace id, so a log line leads to its trace."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import orjson
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from pythonjsonlogger.json import JsonFormatter

_configured = False


class _TraceIds(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        record.service = self.service
        if ctx.is_valid:
            record.trace_id = format(ctx.trace_id, "032x")
            record.span_id = format(ctx.span_id, "016x")
        return True


def setup_logging(service: str, level: str = "INFO") -> None:
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
    root.setLevel(level)
    # aiokafka is chatty at INFO about group rebalances; keep it to warnings.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def _plain(value: object) -> object:
    if isinstance(value, bytes):  # e.g. Kafka message keys, which the SDK's to_json can't write
        return value.decode(errors="replace")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def span_json_line(span: ReadableSpan) -> str:
    """One span as one JSON line, in the shape of the SDK's ReadableSpan.to_json()."""
    ctx = span.get_span_context()
    record = {
        "name": span.name,
        "context": {"trace_id": f"0x{ctx.trace_id:032x}", "span_id": f"0x{ctx.span_id:016x}"},
        "kind": str(span.kind),
        "parent_id": f"0x{span.parent.span_id:016x}" if span.parent else None,
        "start_time": span.start_time,
        "end_time": span.end_time,
        "status": {"status_code": span.status.status_code.name, "description": span.status.description},
        "attributes": {k: _plain(v) for k, v in (span.attributes or {}).items()},
        "events": [
            {
                "name": e.name,
                "timestamp": e.timestamp,
                "attributes": {k: _plain(v) for k, v in (e.attributes or {}).items()},
            }
            for e in span.events
        ],
        "links": [
            {"trace_id": f"0x{link.context.trace_id:032x}", "span_id": f"0x{link.context.span_id:016x}"}
            for link in span.links
        ],
        "resource": {"attributes": {k: _plain(v) for k, v in span.resource.attributes.items()}},
    }
    # orjson: the SDK's own to_json costs ~65 us a span (measured in bench/gateway)
    return orjson.dumps(record, default=str).decode() + "\n"


def setup_tracing(service: str, traces_file: str | None, otlp_endpoint: str | None) -> TracerProvider:
    """Install the global tracer provider once per process."""
    global _configured
    provider = trace.get_tracer_provider()
    if _configured and isinstance(provider, TracerProvider):
        return provider
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if traces_file:
        path = Path(traces_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        out = path.open("a", buffering=1)  # line-buffered: each span one JSON line, written by the exporter thread
        provider.add_span_processor(
            BatchSpanProcessor(
                ConsoleSpanExporter(out=out, formatter=span_json_line),
                schedule_delay_millis=200,
            )
        )
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces"))
        )
    trace.set_tracer_provider(provider)
    _configured = True
    return provider
