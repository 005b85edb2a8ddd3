import json

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from opendrec_kit.telemetry import span_json_line


def test_span_with_bytes_attribute_is_one_json_line():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "devices"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("parent"), tracer.start_as_current_span("device.registered publish") as span:
        span.set_attribute("messaging.kafka.message.key", b"42")  # what FastStream records for Kafka keys
    child, parent = exporter.get_finished_spans()
    line = span_json_line(child)
    assert line.endswith("\n") and "\n" not in line[:-1]
    record = json.loads(line)
    assert record["attributes"]["messaging.kafka.message.key"] == "42"
    assert record["context"]["trace_id"] == f"0x{parent.context.trace_id:032x}"
    assert record["parent_id"] == f"0x{parent.context.span_id:016x}"
    assert record["resource"]["attributes"]["service.name"] == "devices"
