"""The gateway: a raw ASGI app that authenticates D-REC calls and forwards them.

The forwarding path was chosen by measurement (bench/gateway, figures in its README):
FastAPI routing on the hot path costs about as much as the light service behind it, and
aiohttp's client about twice the rest of the proxy; so this is a plain ASGI callable on
uvicorn (httptools, uvloop) forwarding through `upstream.UpstreamPool`. aiohttp is used
off the hot path (JWKS, health probes).

Per forwarded request: one server span whose traceparent goes upstream, the request id
(kept from X-Request-ID or made here) sent upstream and back, hop-by-hop headers dropped
both ways, the body passed through as bytes (small answers read whole, others streamed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, TypeVar

import aiohttp
import orjson
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from opendrec_kit import metrics
from opendrec_kit.addresses import client_address, networks
from opendrec_kit.auth import RevocationFollower, TokenVerifier, bearer_token
from opendrec_kit.errors import ApiError, envelope_bytes
from opendrec_kit.telemetry import redact_path, setup_logging, setup_tracing
from opendrec_kit.workers import Worker

from . import asyncapi, docs, openapi, routes
from .clients import PublicLimiter
from .settings import Settings
from .upstream import UpstreamError, UpstreamPool, UpstreamTimeout, relay_websocket

log = logging.getLogger("opendrec_gateway")

_T = TypeVar("_T")
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# RFC 9110 7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Request headers not passed on as received: hop-by-hop ones, framing (set by the pool),
# and the ones the gateway sets itself.
_REQUEST_SKIP = HOP_BY_HOP | {
    b"host",
    b"content-length",
    b"expect",
    b"traceparent",
    b"tracestate",
    b"x-request-id",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
}
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
_JSON = (b"content-type", b"application/json")
_CLOSE = [(b"connection", b"close")]  # after refusing a body: what is left of it is not read


UNROUTED = "unrouted"  # the route label of requests no route and no endpoint of the gateway took


def _count(method: str, route: str, status: int, started: float) -> None:
    """An answer the gateway made itself, in `http.server.request.duration` as forwarded ones are."""
    metrics.record_request(method, route, status, time.perf_counter() - started)


class _ClientGone(Exception):
    """The client disconnected before its request body was complete."""


class _BodyRefused(Exception):
    """The client's body broke a limit: answered `status` (413: too large, 408: too slow)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.service_urls = settings.service_urls()
        self.pools: dict[str, UpstreamPool] = {}
        self.session: aiohttp.ClientSession | None = None  # JWKS and health probes
        self.verifier: TokenVerifier  # made at startup, with the session
        self._revocations: Worker | None = None
        self._stop_metrics: Callable[[], None] | None = None
        self._access_log = settings.access_log
        self._buffer_limit = settings.buffer_limit_bytes
        self._url_limit = settings.url_limit_bytes
        self._header_limit = settings.header_limit_bytes
        self._public_limiter = PublicLimiter(settings.public_rate_limit)
        self._trusted_proxies = networks(settings.trusted_proxies)
        self._provider: TracerProvider | None = None
        self._tracer: trace.Tracer = trace.get_tracer(__name__)
        self._propagator = TraceContextTextMapPropagator()

    # ---- ASGI entry ---------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # noqa: BLE001 - reported to the server, which exits
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        s = self.settings
        self._provider = provider = setup_tracing(s.service_name, s.traces_file, s.otel_exporter_otlp_endpoint)
        self._tracer = provider.get_tracer(__name__)
        self.pools = {
            name: UpstreamPool(
                url,
                max_connections=s.upstream_pool_per_service,
                keepalive_s=s.upstream_keepalive_s,
                connect_timeout_s=s.upstream_connect_timeout_s,
                read_timeout_s=s.upstream_read_timeout_s,
            )
            for name, url in {**self.service_urls, routes.CONSOLE: s.console_url.rstrip("/")}.items()
        }
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(
                total=None, connect=s.upstream_connect_timeout_s, sock_read=s.upstream_read_timeout_s
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self.verifier = TokenVerifier.from_settings(s, session=self.session)
        if s.kafka_bootstrap_servers:
            self._revocations = RevocationFollower(s.kafka_bootstrap_servers, self.verifier).worker()
            self._revocations.start()
        if metrics.SETTINGS.metrics_port:
            try:  # its own port: the public one routes no /metrics
                self._stop_metrics = metrics.serve(metrics.SETTINGS.metrics_port, s.http_host)
            except OSError as exc:  # HTTP_WORKERS > 1: the first worker serves it (every worker's figures)
                log.warning("metrics port taken", extra={"port": metrics.SETTINGS.metrics_port, "error": str(exc)})
        # Not fatal when identity is not up yet: keys are fetched again on first use.
        await self.verifier.ensure_loaded()
        log.info("gateway started", extra={"services": self.service_urls, "jwks": self.verifier.loaded})

    async def shutdown(self) -> None:
        if self._stop_metrics is not None:
            self._stop_metrics()
        if self._revocations is not None:
            await self._revocations.stop()
        for pool in self.pools.values():
            pool.close()
        if self.session is not None:
            await self.session.close()
        if self._provider is not None:
            self._provider.shutdown()  # flushes pending spans

    # ---- request handling ---------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        started = time.perf_counter()

        # One pass over the request headers: what we need, and what goes upstream as is.
        forward: list[tuple[bytes, bytes]] = []
        skipped: dict[bytes, bytes] = {}  # the headers not passed on as received (the last of each name)
        authorization = None
        header_bytes = 0
        for key, value in scope["headers"]:
            header_bytes += len(key) + len(value)
            if key in _REQUEST_SKIP:
                skipped[key] = value
                continue
            if key == b"authorization":
                authorization = value
            forward.append((key, value))
        request_id = skipped.get(b"x-request-id")
        traceparent, tracestate = skipped.get(b"traceparent"), skipped.get(b"tracestate")
        host, content_length = skipped.get(b"host"), skipped.get(b"content-length")
        forwarded_for, connection = skipped.get(b"x-forwarded-for"), skipped.get(b"connection")
        if request_id is None or not _REQUEST_ID.fullmatch(request_id):
            request_id = os.urandom(16).hex().encode()
        rid = request_id.decode()

        # Answers the gateway makes itself are counted like forwarded ones, under the route prefix they were meant
        # for, the gateway's own endpoint, or "unrouted" (the label's values stay bounded whatever clients send).
        route = routes.resolve(path)
        if len(scope["raw_path"] or b"") + len(scope["query_string"]) > self._url_limit:
            await self._error(send, 414, f"The URL is longer than {self._url_limit} bytes", path, rid, _CLOSE)
            _count(method, route[0] if route else UNROUTED, 414, started)
            return
        if header_bytes > self._header_limit:
            message = f"The request headers are larger than {self._header_limit} bytes"
            await self._error(send, 431, message, path, rid, _CLOSE)
            _count(method, route[0] if route else UNROUTED, 431, started)
            return

        if route is None:
            status, own = await self._own(method, path, rid, send)
            _count(method, own, status, started)
            return
        prefix, service = route
        if routes.has_dot_segment(path):
            await self._error(send, 400, "Path must not contain '.' or '..' segments", path, rid)
            _count(method, prefix, 400, started)
            return

        parent = None
        if traceparent is not None:
            carrier = {"traceparent": traceparent.decode("latin-1")}
            if tracestate is not None:
                carrier["tracestate"] = tracestate.decode("latin-1")
            parent = self._propagator.extract(carrier)
        span = self._tracer.start_span(
            f"{method} {prefix}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "http.route": prefix,
                "url.path": redact_path(path),
                "opendrec.request_id": rid,
            },
        )
        status = 500
        peer = scope.get("client")
        client = client_address(
            peer[0] if peer else None,
            forwarded_for.decode("latin-1") if forwarded_for else None,
            self._trusted_proxies,
        )
        try:
            if routes.is_public(method, path):
                wait = self._public_limiter.allow(client)
                if wait is not None:
                    status = 429
                    message = f"Too many requests from {client} to the public routes; try again in {wait} s"
                    await self._error(send, 429, message, path, rid, [(b"retry-after", str(wait).encode()), *_CLOSE])
                    return
            else:
                try:
                    await self.verifier.claims(bearer_token(authorization.decode("latin-1") if authorization else None))
                except ApiError as exc:
                    status = exc.status
                    # RFC 6750 3: no error code when no credentials were sent at all
                    challenge = b'Bearer error="invalid_token"' if authorization else b"Bearer"
                    headers = [(b"www-authenticate", challenge)] if status == 401 else None
                    await self._error(send, status, exc.message, path, rid, headers)
                    return

            if connection is not None:  # headers named in Connection are hop-by-hop too
                named = {token.strip().lower() for token in connection.split(b",")}
                forward = [(k, v) for k, v in forward if k not in named]
            # W3C trace context of the server span, written as the propagator writes it (without its context
            # objects: a third of the cost of this block per request)
            context = span.get_span_context()
            if context.is_valid:
                ids = (context.trace_id, context.span_id, context.trace_flags)
                forward.append((b"traceparent", b"00-%032x-%016x-%02x" % ids))
                if context.trace_state:
                    forward.append((b"tracestate", context.trace_state.to_header().encode("latin-1")))
            forward.append((b"x-request-id", request_id))
            if peer:  # the client as the gateway sees it last: identity's throttle reads the last entry
                address = client.encode("latin-1", "replace")
                forward.append((b"x-forwarded-for", forwarded_for + b", " + address if forwarded_for else address))
            forward.append((b"x-forwarded-proto", scope.get("scheme", "http").encode()))
            if host is not None:
                forward.append((b"x-forwarded-host", host))

            bodiless = content_length is None and b"transfer-encoding" not in skipped  # RFC 9112 6.3: no body
            status = await self._forward(scope, receive, send, service, forward, content_length, request_id, bodiless)
        finally:
            metrics.record_request(method, prefix, status, time.perf_counter() - started)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            span.end()
            if self._access_log:
                log.info(
                    "request",
                    extra={
                        "method": method,
                        "path": redact_path(path),
                        "status": status,
                        "upstream": service,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                        "request_id": rid,
                        "trace_id": format(span.get_span_context().trace_id, "032x"),
                    },
                )

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket (OCPP charge points at /ocpp/{id}): relayed to its service, which authenticates the client
        (its Authorization header and subprotocols go along); anything else is refused at the upgrade (403)."""
        path: str = scope["path"]
        route = routes.resolve_websocket(path)
        if route is None:
            started = time.perf_counter()
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            _count("GET", UNROUTED, 403, started)  # a close before accepting: the server answers 403
            return
        prefix, service = route
        headers: dict[str, str] = {}
        forwarded_for = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                headers["Authorization"] = value.decode("latin-1")
            elif key == b"x-forwarded-for":
                forwarded_for = value.decode("latin-1")
        request_id = os.urandom(16).hex()
        headers["X-Request-ID"] = request_id
        peer = scope.get("client")
        if peer:  # the charge point as the gateway resolves it (behind TRUSTED_PROXIES too), last, as for HTTP
            client = client_address(peer[0], forwarded_for, self._trusted_proxies)
            headers["X-Forwarded-For"] = f"{forwarded_for}, {client}" if forwarded_for else client
        base = self.service_urls[service]
        url = "ws" + base.removeprefix("http") + scope["raw_path"].decode("latin-1")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        started = time.perf_counter()
        status = 502
        try:
            status = await relay_websocket(
                url,
                headers,
                list(scope.get("subprotocols") or []),
                receive,
                send,
                connect_timeout_s=self.settings.upstream_connect_timeout_s,
            )
        finally:
            metrics.record_request("GET", prefix, status, time.perf_counter() - started)
            if self._access_log:
                log.info(
                    "websocket",
                    extra={
                        "path": path,
                        "status": status,
                        "upstream": service,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                        "request_id": request_id,
                    },
                )

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        service: str,
        headers: list[tuple[bytes, bytes]],
        content_length: bytes | None,
        request_id: bytes,
        bodiless: bool = False,
    ) -> int:
        """Send the request to `service` and its answer to the client; returns the status sent. `bodiless`: the
        request has no body (neither a length nor chunks), so none is waited for."""
        path: str = scope["path"]
        method: str = scope["method"]
        rid = request_id.decode()
        target: bytes = scope["raw_path"] or path.encode()
        if scope["query_string"]:
            target += b"?" + scope["query_string"]

        s = self.settings
        body: bytes | AsyncIterator[bytes] = b""
        if not bodiless:
            large = routes.takes_large_body(path)
            limit = s.upload_body_limit_bytes if large else s.body_limit_bytes
            if content_length is not None and content_length.isdigit() and int(content_length) > limit:
                message = f"The request body is larger than {limit} bytes"
                return await self._error(send, 413, message, path, rid, _CLOSE)
            try:
                # A JSON body is read whole (within BODY_TIMEOUT_S) before a connection to the service is taken, so
                # slow clients hold no upstream slot; a large one streams, each part within BODY_IDLE_TIMEOUT_S.
                body = await _request_body(receive, limit, s.body_timeout_s, s.body_idle_timeout_s, stream=large)
            except _ClientGone:
                return 499  # the client left before its body was complete; nobody to answer
            except _BodyRefused as exc:
                return await self._error(send, exc.status, exc.message, path, rid, _CLOSE)
        asked = time.perf_counter()  # the service's latency: from sending (a streamed body included) to its headers
        try:
            response = await self.pools[service].request(method, target, headers, body, content_length)
        except _ClientGone:
            return 499
        except _BodyRefused as exc:  # a streamed body broke its limit on the way
            return await self._error(send, exc.status, exc.message, path, rid, _CLOSE)
        except UpstreamTimeout as exc:
            metrics.record_upstream(service, method, None, time.perf_counter() - asked, "timeout")
            return await self._upstream_failed(send, 504, service, path, rid, exc)
        except UpstreamError as exc:
            metrics.record_upstream(service, method, None, time.perf_counter() - asked, "unreachable")
            return await self._upstream_failed(send, 502, service, path, rid, exc)
        metrics.record_upstream(service, method, response.status, time.perf_counter() - asked)

        out = [(key, value) for key, value in response.headers if key not in HOP_BY_HOP]
        if not any(key == b"x-request-id" for key, _ in out):
            out.append((b"x-request-id", request_id))
        status = response.status
        length = response.content_length
        if response.complete or method == "HEAD" or (length is not None and length <= self._buffer_limit):
            try:
                data = await response.read()
            except UpstreamTimeout as exc:
                return await self._upstream_failed(send, 504, service, path, rid, exc)
            except UpstreamError as exc:
                return await self._upstream_failed(send, 502, service, path, rid, exc)
            await send({"type": "http.response.start", "status": status, "headers": out})
            await send({"type": "http.response.body", "body": data})
            return status

        # Streamed: the status line goes now; if the service fails half-way the client sees
        # a cut connection, the only honest signal left once headers are out.
        try:
            await send({"type": "http.response.start", "status": status, "headers": out})
            async for chunk in response.iter_chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            response.close()  # no-op once the body is complete
        return status

    # ---- answers the gateway writes itself ------------------------------------------

    async def _upstream_failed(self, send: Send, status: int, service: str, path: str, rid: str, exc: Exception) -> int:
        log.warning(
            "upstream failed",
            extra={"upstream": service, "path": path, "request_id": rid, "status": status, "error": str(exc)},
        )
        if status == 504:
            message = f"The {service} service did not answer in time"
        else:
            message = f"The {service} service is unreachable"
        return await self._error(send, status, message, path, rid)

    async def _error(
        self,
        send: Send,
        status: int,
        message: str,
        path: str,
        rid: str,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> int:
        if path.startswith(routes.SEED_ENVELOPE_PREFIX):
            phrase = HTTPStatus(status).phrase
            body = orjson.dumps({"Data": None, "Errors": None, "Meta": None, "StatusCode": status, "Message": phrase})
        else:
            body = envelope_bytes(status, message, path, rid)
        await _send_json(send, status, body, rid, headers)
        return status

    async def _own(self, method: str, path: str, rid: str, send: Send) -> tuple[int, str]:
        """The gateway's own endpoints (GET or HEAD); any other path is routed nowhere: 404. Returns the status sent
        and the route to count it under (the endpoint's path, one of a fixed few, or "unrouted")."""
        answer = {"/healthz": self._healthz, "/readyz": self._readyz, "/openapi.json": self._openapi}.get(path)
        document = docs.find(path) if answer is None else None  # Swagger UI at /swagger and /docs
        document = document or (asyncapi.find(path) if answer is None else None)  # the events' AsyncAPI document
        if answer is None and document is None:
            return await self._error(send, 404, f"No route {method} {path}", path, rid), UNROUTED
        if method not in ("GET", "HEAD"):
            return await self._error(send, 405, f"Method {method} is not allowed on {path}", path, rid), path
        if document is not None:
            await _send_document(send, document, rid)
            return 200, path
        assert answer is not None
        return await answer(path, rid, send), path

    async def _ask_services(self, ask: Callable[[str], Awaitable[_T]]) -> dict[str, _T]:
        """`ask(base_url)` of every service at once, by service name."""
        names = list(self.service_urls)
        answers = await asyncio.gather(*(ask(self.service_urls[name]) for name in names))
        return dict(zip(names, answers, strict=True))

    async def _healthz(self, path: str, rid: str, send: Send) -> int:
        """200 only when every service's /readyz answers 200; the per-service map either way."""
        services = await self._ask_services(self._probe)
        ready = all(r["status"] == "ready" for r in services.values())
        body = orjson.dumps({"status": "ok" if ready else "unavailable", "services": services})
        await _send_json(send, 200 if ready else 503, body, rid)
        return 200 if ready else 503

    async def _probe(self, base_url: str) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=self.settings.health_timeout_s)
        try:
            assert self.session is not None  # made at startup
            async with self.session.get(base_url + "/readyz", timeout=timeout) as resp:
                await resp.read()
                return {"status": "ready" if resp.status == 200 else "not ready", "statusCode": resp.status}
        except TimeoutError:
            return {"status": "unreachable", "statusCode": None, "error": "timed out"}
        except (aiohttp.ClientError, OSError) as exc:
            return {"status": "unreachable", "statusCode": None, "error": type(exc).__name__}

    async def _openapi(self, path: str, rid: str, send: Send) -> int:
        """The whole public API in one document, merged from the services' own (always current)."""
        fetched = await self._ask_services(self._fetch_openapi)
        missing = [name for name, document in fetched.items() if document is None]
        if missing:
            return await self._error(
                send, 503, f"Cannot describe the API right now: no answer from {', '.join(missing)}", path, rid
            )
        documents = {name: document for name, document in fetched.items() if document is not None}
        merged = openapi.merge(documents, title="OpenDREC", version="0.1.0")
        await _send_json(send, 200, orjson.dumps(merged), rid)
        return 200

    async def _fetch_openapi(self, base_url: str) -> dict[str, Any] | None:
        timeout = aiohttp.ClientTimeout(total=self.settings.health_timeout_s)
        try:
            assert self.session is not None  # made at startup
            async with self.session.get(base_url + "/openapi.json", timeout=timeout) as resp:
                return await resp.json() if resp.status == 200 else None
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
            return None

    async def _readyz(self, path: str, rid: str, send: Send) -> int:
        """Ready when this process can serve: started, and identity's signing keys loaded."""
        await self.verifier.ensure_loaded()
        if self.verifier.loaded and self.pools:
            await _send_json(send, 200, orjson.dumps({"status": "ready"}), rid)
            return 200
        body = orjson.dumps({"status": "not ready", "reason": "identity signing keys not loaded yet"})
        await _send_json(send, 503, body, rid)
        return 503


async def _request_body(
    receive: Receive, limit: int, timeout_s: float, idle_timeout_s: float, *, stream: bool
) -> bytes | AsyncIterator[bytes]:
    """The client's body: whole (bytes) when it came in one part or `stream` is false, else an iterator over its
    parts as they arrive (uvicorn hands large bodies over in parts). Never more than `limit` bytes (413), and no
    waiting longer than `timeout_s` for a whole body or `idle_timeout_s` for the next part (408)."""
    try:
        async with asyncio.timeout(idle_timeout_s if stream else timeout_s):
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            first: bytes = message.get("body", b"")
            if not message.get("more_body"):
                return _bounded(first, limit)
            if not stream:
                parts, size = [first], len(first)
                while message.get("more_body"):
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _ClientGone
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    _bounded_size(size, limit)
                    parts.append(chunk)
                return b"".join(parts)
    except TimeoutError:
        raise _BodyRefused(408, "The request body did not arrive in time") from None
    _bounded(first, limit)
    return _streamed(first, receive, limit, idle_timeout_s)


async def _streamed(first: bytes, receive: Receive, limit: int, idle_timeout_s: float) -> AsyncIterator[bytes]:
    size = len(first)
    if first:
        yield first
    while True:
        try:
            async with asyncio.timeout(idle_timeout_s):
                message = await receive()
        except TimeoutError:
            raise _BodyRefused(408, "The request body did not arrive in time") from None
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            _bounded_size(size, limit)
            yield chunk
        if not message.get("more_body"):
            return


def _bounded(body: bytes, limit: int) -> bytes:
    _bounded_size(len(body), limit)
    return body


def _bounded_size(size: int, limit: int) -> None:
    if size > limit:  # counted as it streams: a chunked body or a lying Content-Length stops here
        raise _BodyRefused(413, f"The request body is larger than {limit} bytes")


async def _send_document(send: Send, document: docs.Document, rid: str) -> None:
    """A page or file of the API documentation (Swagger UI), under its content security policy."""
    headers = [
        (b"content-type", document.content_type),
        (b"content-length", str(len(document.body)).encode()),
        (b"x-request-id", rid.encode()),
        (b"date", formatdate(usegmt=True).encode()),
        (b"content-security-policy", docs.CSP),
        (b"x-content-type-options", b"nosniff"),
        (b"cache-control", b"public, max-age=3600"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": document.body})


async def _send_json(
    send: Send, status: int, body: bytes, rid: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    out = [
        _JSON,
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", rid.encode()),
        (b"date", formatdate(usegmt=True).encode()),  # uvicorn's own Date header is off (see __main__)
    ]
    if headers:
        out.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


def create_app(settings: Settings | None = None) -> Gateway:
    """uvicorn factory (`--factory`); called once in each worker process."""
    settings = settings or Settings()
    setup_logging(settings.service_name, settings.log_level)
    return Gateway(settings)
