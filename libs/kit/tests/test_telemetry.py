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


# ---- the request layer's span (runtime.RequestIdMiddleware): what a trace reader finds for each request


def traced_app(exporter: InMemorySpanExporter):
    import logging

    from fastapi import FastAPI
    from opentelemetry import trace

    from opendrec_kit.errors import install_error_handlers
    from opendrec_kit.runtime import RequestIdMiddleware

    provider = TracerProvider(resource=Resource.create({"service.name": "devices"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = FastAPI()
    install_error_handlers(app)
    seen: dict[str, object] = {}

    @app.get("/api/device/{device_id}")
    async def device(device_id: int) -> dict:
        seen["span"] = trace.get_current_span()  # what log lines and outbox events read the trace from
        return {"id": device_id}

    @app.put("/api/user/reset/password/{token}")
    async def reset(token: str) -> dict:
        return {}

    @app.get("/api/auth/getAccess")
    async def get_access() -> dict:
        return {}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {}

    @app.get("/boom")
    async def boom() -> dict:
        logging.getLogger("test").info("about to fail")
        raise RuntimeError("bug")

    app.add_middleware(RequestIdMiddleware, tracer=provider.get_tracer("t"))
    return app, seen


async def test_a_request_is_one_server_span_continuing_the_callers_trace():
    import os

    import httpx

    exporter = InMemorySpanExporter()
    app, seen = traced_app(exporter)
    trace_id, parent_id = os.urandom(16).hex(), os.urandom(8).hex()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        r = await client.get(
            "/api/device/42?x=1", headers={"traceparent": f"00-{trace_id}-{parent_id}-01", "x-request-id": "rid-1"}
        )
        assert r.status_code == 200 and r.headers["x-request-id"] == "rid-1"
        [span] = exporter.get_finished_spans()
        assert span.name == "GET /api/device/{device_id}"
        assert span.kind.name == "SERVER"
        assert f"{span.context.trace_id:032x}" == trace_id and f"{span.parent.span_id:016x}" == parent_id
        assert seen["span"].get_span_context().span_id == span.context.span_id  # current while served
        assert dict(span.attributes) == {
            "http.request.method": "GET",
            "url.path": "/api/device/42",  # no query: getAccess-like secrets never reach a span
            "opendrec.request_id": "rid-1",
            "http.route": "/api/device/{device_id}",
            "http.response.status_code": 200,
        }
        exporter.clear()

        # No caller's trace: a trace of its own; a request id made and echoed.
        r = await client.get("/api/device/7")
        [span] = exporter.get_finished_spans()
        assert span.parent is None and span.attributes["opendrec.request_id"] == r.headers["x-request-id"]
        exporter.clear()

        # A mailed token in the path stays out of the span; a validation error is a 400 on its route.
        secret = "9f8e7d6c5b4a"
        await client.put(f"/api/user/reset/password/{secret}")
        r = await client.get("/api/device/not-a-number")
        assert r.status_code == 400
        reset, invalid = exporter.get_finished_spans()
        assert secret not in span_json_line(reset) and reset.attributes["url.path"].endswith("/{token}")
        assert invalid.name == "GET /api/device/{device_id}" and invalid.attributes["http.response.status_code"] == 400
        exporter.clear()

        # A bug: the span says 500 and error, with the exception; the answer is the envelope.
        r = await client.get("/boom")
        assert r.status_code == 500 and r.json()["statusCode"] == 500
        [span] = exporter.get_finished_spans()
        assert span.attributes["http.response.status_code"] == 500 and span.status.status_code == StatusCode.ERROR
        assert [e.attributes["exception.type"] for e in span.events] == ["RuntimeError"]
        exporter.clear()

        # Probes and getAccess (an API user's private key in its query) make no span; an unknown path does.
        await client.get("/healthz")
        await client.get("/api/auth/getAccess?privateKey=secret")
        await client.get("/api/auth/getAccess/")
        assert exporter.get_finished_spans() == ()
        assert (await client.get("/nowhere")).status_code == 404
        [span] = exporter.get_finished_spans()
        assert span.name == "GET" and span.attributes["http.response.status_code"] == 404
