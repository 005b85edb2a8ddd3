"""The gateway: a raw ASGI app that authenticates D-REC calls and forwards them.

Why raw ASGI and not FastAPI: the forwarding path is measured (bench/gateway). Routing
through FastAPI/Starlette costs about as much as the upstream service itself; a plain
ASGI callable on uvicorn (httptools, uvloop) with one pooled aiohttp ClientSession per
process roughly halves the gateway's CPU per request.

Per forwarded request: one server span (its traceparent goes upstream), the request id
(kept from X-Request-ID or made here) sent upstream and back, hop-by-hop headers dropped
both ways, small bodies read whole, large or unsized ones streamed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from email.utils import formatdate
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from yarl import URL

from . import routes
from .auth import Authenticator, AuthError, Jwks
from .errors import envelope_bytes
from .settings import Settings
from .telemetry import setup_logging, setup_tracing

log = logging.getLogger("opendrec_gateway")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# RFC 9110 7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer", b"trailers",
     b"transfer-encoding", b"upgrade"}
)
# Request headers the gateway does not pass on as received: hop-by-hop ones, and the ones
# it sets itself (Host and Content-Length by aiohttp; trace, request id, forwarding here).
_REQUEST_OWN = frozenset(
    {b"host", b"content-length", b"expect", b"traceparent", b"tracestate", b"x-request-id", b"x-forwarded-for",
     b"x-forwarded-proto", b"x-forwarded-host"}
)
_REQUEST_SKIP = HOP_BY_HOP | _REQUEST_OWN
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_JSON = [(b"content-type", b"application/json")]


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.service_urls = settings.service_urls()
        self._access_log = settings.access_log
        self._buffer_limit = settings.buffer_limit_bytes
        self.session: aiohttp.ClientSession | None = None
        self.authenticator: Authenticator | None = None
        self._provider = None
        self._tracer: trace.Tracer = trace.get_tracer(__name__)
        self._propagator = TraceContextTextMapPropagator()

    # ---- ASGI entry ---------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
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
        self._provider = setup_tracing("gateway", s.traces_file, s.otel_exporter_otlp_endpoint)
        self._tracer = self._provider.get_tracer(__name__)
        connector = aiohttp.TCPConnector(
            limit=0,  # no global cap; one pool per service below
            limit_per_host=s.upstream_pool_per_service,
            keepalive_timeout=s.upstream_keepalive_s,
            ttl_dns_cache=300,
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),  # a proxy must not keep or add cookies
            auto_decompress=False,  # bytes pass through as the service encoded them
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            timeout=aiohttp.ClientTimeout(
                total=None, connect=s.upstream_connect_timeout_s, sock_read=s.upstream_read_timeout_s
            ),
            raise_for_status=False,
        )
        jwks = Jwks(
            self.service_urls["identity"] + "/.well-known/jwks.json",
            self.session,
            ttl_s=s.jwks_ttl_s,
            min_refresh_interval_s=s.jwks_min_refresh_interval_s,
        )
        self.authenticator = Authenticator(
            jwks,
            cache_size=s.token_cache_size,
            audience=s.jwt_audience,
            issuer=s.jwt_issuer,
            leeway_s=s.jwt_leeway_s,
        )
        # Not fatal when identity is not up yet: keys are fetched again on first use.
        await jwks.ensure_loaded()
        log.info("gateway started", extra={"services": self.service_urls, "jwks": jwks.loaded})

    async def shutdown(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self._provider is not None:
            self._provider.shutdown()  # flushes pending spans

    # ---- request handling ---------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]

        # One pass over the request headers: what we need, and what goes upstream.
        forward: list[tuple[str, str]] = []
        request_id = authorization = traceparent = tracestate = forwarded_for = host = content_length = None
        connection = None
        for key, value in scope["headers"]:
            if key in _REQUEST_SKIP:
                if key == b"x-request-id":
                    request_id = value.decode("latin-1")
                elif key == b"traceparent":
                    traceparent = value.decode("latin-1")
                elif key == b"tracestate":
                    tracestate = value.decode("latin-1")
                elif key == b"host":
                    host = value.decode("latin-1")
                elif key == b"content-length":
                    content_length = value.decode("latin-1")
                elif key == b"x-forwarded-for":
                    forwarded_for = value.decode("latin-1")
                elif key == b"connection":
                    connection = value.decode("latin-1")
                continue
            text = value.decode("latin-1")
            if key == b"authorization":
                authorization = text
            forward.append((key.decode("latin-1"), text))
        if request_id is None or not _REQUEST_ID.fullmatch(request_id):
            request_id = os.urandom(16).hex()

        route = routes.resolve(path)
        if route is None:
            if path == "/healthz":
                return await self._healthz(method, path, request_id, send)
            if path == "/readyz":
                return await self._readyz(method, path, request_id, send)
            return await self._error(send, 404, f"No route {method} {path}", path, request_id)
        if routes.has_dot_segment(path):
            return await self._error(send, 400, "Path must not contain '.' or '..' segments", path, request_id)
        prefix, service = route

        parent = None
        if traceparent is not None:
            carrier = {"traceparent": traceparent}
            if tracestate is not None:
                carrier["tracestate"] = tracestate
            parent = self._propagator.extract(carrier)
        span = self._tracer.start_span(
            f"{method} {prefix}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                # few attributes on purpose: each costs ~4 us of SDK validation on the hot path
                "http.request.method": method,
                "http.route": prefix,
                "url.path": path,
                "opendrec.request_id": request_id,
            },
        )
        started = time.perf_counter()
        status = 500
        try:
            if not routes.is_public(method, path):
                try:
                    await self.authenticator.authenticate(authorization)
                except AuthError as exc:
                    status = exc.status
                    headers = [(b"www-authenticate", b'Bearer error="invalid_token"')] if status == 401 else []
                    return await self._error(send, status, exc.message, path, request_id, headers)

            if connection is not None:  # headers named in Connection are hop-by-hop too
                named = {token.strip().lower() for token in connection.split(",")}
                forward = [(k, v) for k, v in forward if k not in named]
            carrier: dict[str, str] = {}
            self._propagator.inject(carrier, context=trace.set_span_in_context(span))
            forward.extend(carrier.items())
            forward.append(("x-request-id", request_id))
            client = scope.get("client")
            if client:
                forward.append(("x-forwarded-for", f"{forwarded_for}, {client[0]}" if forwarded_for else client[0]))
            forward.append(("x-forwarded-proto", scope.get("scheme", "http")))
            if host is not None:
                forward.append(("x-forwarded-host", host))

            status = await self._forward(scope, receive, send, service, forward, content_length, request_id)
        finally:
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            span.end()
            if self._access_log:
                log.info(
                    "request",
                    extra={
                        "method": method,
                        "path": path,
                        "status": status,
                        "upstream": service,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                        "request_id": request_id,
                        "trace_id": format(span.get_span_context().trace_id, "032x"),
                    },
                )

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        service: str,
        headers: list[tuple[str, str]],
        content_length: str | None,
        request_id: str,
    ) -> int:
        """Send the request to `service` and its answer to the client; returns the status sent."""
        path: str = scope["path"]
        target = self.service_urls[service] + scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        try:
            url = URL(target, encoded=True)  # already percent-encoded by the client: pass as is
        except ValueError:
            return await self._error(send, 400, "Malformed request target", path, request_id)

        message = await receive()
        if message["type"] == "http.disconnect":
            return 499  # client gone before sending its body; nothing to answer
        data: bytes | AsyncIterator[bytes] | None
        if message.get("more_body"):
            data = _request_body(message.get("body", b""), receive)
            if content_length is not None:
                headers.append(("content-length", content_length))  # else aiohttp sends it chunked
        else:
            data = message.get("body") or None

        try:
            response = await self.session.request(scope["method"], url, headers=headers, data=data, allow_redirects=False)
        except TimeoutError:
            return await self._upstream_timeout(send, service, path, request_id)
        except (aiohttp.ClientError, OSError) as exc:
            return await self._upstream_down(send, service, path, request_id, exc)

        try:
            out: list[tuple[bytes, bytes]] = []
            has_request_id = False
            for key, value in response.raw_headers:
                key = key.lower()
                if key in HOP_BY_HOP:
                    continue
                if key == b"x-request-id":
                    has_request_id = True
                out.append((key, value))
            if not has_request_id:
                out.append((b"x-request-id", request_id.encode()))

            status = response.status
            length = response.content_length
            if (length is not None and length <= self._buffer_limit) or scope["method"] == "HEAD" or status in (204, 304):
                try:
                    body = await response.read()
                except TimeoutError:
                    return await self._upstream_timeout(send, service, path, request_id)
                except (aiohttp.ClientError, OSError) as exc:
                    return await self._upstream_down(send, service, path, request_id, exc)
                await send({"type": "http.response.start", "status": status, "headers": out})
                await send({"type": "http.response.body", "body": body})
                return status

            # Streamed: headers go now; if the service fails half-way the client sees a cut
            # connection (the status line is already out), which is the honest signal.
            await send({"type": "http.response.start", "status": status, "headers": out})
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return status
        except BaseException:
            response.close()  # the connection may hold an unread rest; never reuse it
            raise
        finally:
            response.release()  # back to the pool (no-op after close)

    # ---- answers the gateway writes itself ------------------------------------------

    async def _upstream_timeout(self, send: Send, service: str, path: str, request_id: str) -> int:
        log.warning("upstream timed out", extra={"upstream": service, "path": path, "request_id": request_id})
        message = f"The {service} service did not answer in time"
        return await self._error(send, 504, message, path, request_id)

    async def _upstream_down(self, send: Send, service: str, path: str, request_id: str, exc: BaseException) -> int:
        log.warning(
            "upstream unreachable", extra={"upstream": service, "path": path, "request_id": request_id, "error": repr(exc)}
        )
        message = f"The {service} service is unreachable"
        return await self._error(send, 502, message, path, request_id)

    async def _error(
        self,
        send: Send,
        status: int,
        message: str,
        path: str,
        request_id: str,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> int:
        body = envelope_bytes(status, message, path, request_id)
        await _send_json(send, status, body, request_id, headers)
        return status

    async def _healthz(self, method: str, path: str, request_id: str, send: Send) -> None:
        """200 only when every service's /readyz answers 200; the per-service map either way."""
        if method not in ("GET", "HEAD"):
            await self._error(send, 405, f"Method {method} is not allowed on {path}", path, request_id)
            return
        names = list(self.service_urls)
        results = await asyncio.gather(*(self._probe(self.service_urls[name]) for name in names))
        services = dict(zip(names, results, strict=True))
        ready = all(r["status"] == "ready" for r in services.values())
        body = orjson.dumps({"status": "ok" if ready else "unavailable", "services": services})
        await _send_json(send, 200 if ready else 503, body, request_id)

    async def _probe(self, base_url: str) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=self.settings.health_timeout_s)
        try:
            async with self.session.get(base_url + "/readyz", timeout=timeout) as resp:
                await resp.read()
                return {"status": "ready" if resp.status == 200 else "not ready", "statusCode": resp.status}
        except TimeoutError:
            return {"status": "unreachable", "statusCode": None, "error": "timed out"}
        except (aiohttp.ClientError, OSError) as exc:
            return {"status": "unreachable", "statusCode": None, "error": type(exc).__name__}

    async def _readyz(self, method: str, path: str, request_id: str, send: Send) -> None:
        """Ready when this process can serve: client pool open and identity's keys loaded."""
        if method not in ("GET", "HEAD"):
            await self._error(send, 405, f"Method {method} is not allowed on {path}", path, request_id)
            return
        jwks = self.authenticator.jwks
        await jwks.ensure_loaded()
        if jwks.loaded and self.session is not None and not self.session.closed:
            await _send_json(send, 200, orjson.dumps({"status": "ready"}), request_id)
        else:
            body = orjson.dumps({"status": "not ready", "reason": "identity signing keys not loaded yet"})
            await _send_json(send, 503, body, request_id)


async def _request_body(first: bytes, receive: Receive) -> AsyncIterator[bytes]:
    """The client's body as it arrives (for bodies uvicorn hands over in several parts)."""
    if first:
        yield first
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client disconnected while sending its body")
        if message.get("body"):
            yield message["body"]
        if not message.get("more_body"):
            return


async def _send_json(
    send: Send, status: int, body: bytes, request_id: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    out = [
        *_JSON,
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
        (b"date", formatdate(usegmt=True).encode()),  # uvicorn's own Date header is off (see __main__)
    ]
    if headers:
        out.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


def create_app(settings: Settings | None = None) -> Gateway:
    """uvicorn factory (`--factory`); called once in each worker process."""
    settings = settings or Settings()
    setup_logging("gateway", settings.log_level)
    return Gateway(settings)
