import json

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from opendrec_kit.telemetry import JsonLinesFileExporter, span_json_line


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


def test_traces_file_lines_have_the_sdk_layout(tmp_path):
    """The TRACES_FILE exporter writes what `ReadableSpan.to_json` would, one span per line."""
    path = tmp_path / "traces" / "gateway.jsonl"
    exporter = JsonLinesFileExporter(str(path))
    provider = TracerProvider(resource=Resource.create({"service.name": "gateway"}))
    tracer = provider.get_tracer("t")
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with tracer.start_as_current_span("GET /api/device") as span:
        span.set_attribute("http.response.status_code", 200)
        span.set_attribute("tags", ("a", "b"))
        span.add_event("retry", {"attempt": 2})
        span.set_status(Status(StatusCode.ERROR, "upstream failed"))
    with tracer.start_as_current_span("plain"):
        pass
    spans = memory.get_finished_spans()
    exporter.export(spans)
    exporter.shutdown()
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [json.loads(s.to_json()) for s in spans]


def test_secret_path_segments_are_redacted_in_paths_and_urls():
    from opendrec_kit.telemetry import redact_path

    assert redact_path("/api/user/confirm-email/abc.DEF-123") == "/api/user/confirm-email/{token}"
    assert redact_path("/api/user/reset/password/t0k3n?x=1") == "/api/user/reset/password/{token}?x=1"
    assert (
        redact_path("http://h:8000/api/invitation/register/s3cr3t") == "http://h:8000/api/invitation/register/{token}"
    )
    assert redact_path("/console/reset-password/abc") == "/console/reset-password/{token}"  # the mails' links
    assert redact_path("/console/invitation/s3cr3t") == "/console/invitation/{token}"
    assert redact_path("/api/device/42") == "/api/device/42"
    assert redact_path("/api/user/confirm-email/") == "/api/user/confirm-email/"  # nothing to hide


def test_a_span_started_with_a_secret_in_its_url_keeps_only_the_redacted_one():
    from opendrec_kit.telemetry import RedactSecretPaths

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(RedactSecretPaths())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    secret = "9f8e7d6c5b4a"
    attributes = {
        "http.target": f"/api/user/reset/password/{secret}",
        "http.url": f"http://127.0.0.1:8101/api/user/reset/password/{secret}",
        "url.path": f"/api/user/reset/password/{secret}",
        "http.method": "PUT",
    }
    with provider.get_tracer("t").start_as_current_span("PUT /api/user/reset/password/{token}", attributes=attributes):
        pass
    [span] = exporter.get_finished_spans()
    assert secret not in span.to_json()
    assert span.attributes["url.path"] == "/api/user/reset/password/{token}"
    assert span.attributes["http.method"] == "PUT"
