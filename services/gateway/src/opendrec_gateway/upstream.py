"""Pooled keep-alive HTTP/1.1 connections to one service, for the forwarding hot path only.

Why not aiohttp's ClientSession here (it is used for JWKS and health probes): measured on
this 2-core machine against a canned upstream, a bare uvicorn proxy spends ~210 us of CPU
per request with aiohttp's client and ~70 us with this one, which is what lets the gateway
keep >= 60% of a light service's throughput (bench/gateway). The parsing is httptools
(llhttp), the parser uvicorn itself uses; what is written here is only the pooling and
framing a proxy needs:

- one request at a time per connection (no pipelining), LIFO reuse of idle connections,
  idle ones dropped after `keepalive_s` (set below the services' own keep-alive timeout);
- at most `max_connections` in use per service; callers wait for a free one;
- request bodies as bytes, or streamed (Content-Length kept, else chunked), with drain;
- response bodies read whole or streamed, with read pausing while the consumer lags;
- connect and read timeouts (read: no byte from the service for `read_timeout_s`);
- one retry of an idempotent request, with a buffered body, on a reused connection that
  the service closed before answering (RFC 9112 9.3.1: it never saw the request).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httptools

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_HIGH_WATER = 512 * 1024  # buffered, unconsumed response bytes before reading pauses
_LOW_WATER = 128 * 1024

log = logging.getLogger("opendrec_gateway")


class UpstreamError(Exception):
    """The service could not be reached or broke the exchange (-> 502)."""


class UpstreamTimeout(UpstreamError):
    """The service did not connect or answer in time (-> 504)."""


class _Stale(Exception):
    """A reused connection was closed by the service before any byte of the answer."""


class UpstreamResponse:
    """Status and headers at once; the body as it arrives."""

    def __init__(self, conn: _Connection, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self._conn: _Connection | None = conn
        self.status = status
        self.headers = headers  # names lower-cased, in order, repeats kept
        self.content_length: int | None = None
        for name, value in headers:
            if name == b"content-length":
                self.content_length = int(value)
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self.complete = False
        self._error: BaseException | None = None

    # called by the connection
    def _feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > _HIGH_WATER and not self._paused and self._conn is not None:
            self._paused = True
            self._conn.pause_reading()
        self._wake()

    def _finish(self, error: BaseException | None = None) -> None:
        self.complete = error is None
        self._error = error
        self._conn = None
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter
        self._waiter = None

    # for the consumer
    async def read(self) -> bytes:
        """The whole body (for answers small enough to hold)."""
        if self.complete:  # the common case: it came with the headers
            body = b"".join(self._chunks)
            self._chunks.clear()
            return body
        return b"".join([chunk async for chunk in self.iter_chunks()])  # consuming keeps reading going

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered < _LOW_WATER:
                    self._paused = False
                    if self._conn is not None:
                        self._conn.resume_reading()
                yield chunk
            elif self.complete:
                return
            elif self._error is not None:
                raise self._error
            else:
                await self._wait()

    def close(self) -> None:
        """Give up on the rest of the body: the connection cannot be reused."""
        if self._conn is not None:
            self._conn.abort(UpstreamError("response abandoned"))


class _Connection(asyncio.Protocol):
    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set by connection_made, before any use
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.used = 0  # exchanges completed on this connection
        self.idle_since = 0.0
        # per exchange
        self.busy = False
        self.is_head = False
        self.got_bytes = False
        self.last_activity = 0.0
        self.head: asyncio.Future[UpstreamResponse] | None = None
        self.response: UpstreamResponse | None = None
        self.writing = False  # a streamed request body is still going out
        self._headers: list[tuple[bytes, bytes]] = []
        self._skip_message = False  # a 1xx informational answer
        self._head_done = False
        self._timer: asyncio.TimerHandle | None = None
        self._drain: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False

    # ---- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP connection's transport is a Transport

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        self.last_activity = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.abort(UpstreamError(f"invalid HTTP answer from the service: {exc}"))
            return
        if self._head_done:  # llhttp would wait for the body a HEAD answer announces
            self._head_done = False
            keep_alive = self.parser.should_keep_alive()
            self.parser = httptools.HttpResponseParser(self)
            self._complete(reuse=keep_alive)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._forget(self)
        if not self.busy:
            return
        if self.response is not None and self._until_close():
            self._complete(reuse=False)  # an answer delimited by the connection's end
        elif not self.got_bytes and self.used:
            self._end(_Stale())
        else:
            self._end(UpstreamError("the service closed the connection mid-answer"))
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def pause_reading(self) -> None:
        self._read_paused = True
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._read_paused:
            self._read_paused = False
            self.last_activity = self.loop.time()  # the read timeout restarts from here
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # ---- httptools callbacks
    def on_message_begin(self) -> None:
        self._headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # 1xx informational: not the answer, wait for the next message
            self._skip_message = True
            return
        response = UpstreamResponse(self, status, self._headers)
        self.response = response
        if self.head is not None and not self.head.done():
            self.head.set_result(response)
        self._head_done = self.is_head

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response._feed(body)

    def on_message_complete(self) -> None:
        self._head_done = False
        if self._skip_message:
            self._skip_message = False
            return
        self._complete(reuse=self.parser.should_keep_alive())

    # ---- exchange
    async def send(
        self, head: bytes, body: bytes | AsyncIterable[bytes], chunked: bool, is_head: bool
    ) -> UpstreamResponse:
        self.busy = True
        self.is_head = is_head
        self.got_bytes = False
        self.head = self.loop.create_future()
        if isinstance(body, bytes):
            self.transport.write(head + body if body else head)
        else:
            self.transport.write(head)
            self.writing = True
            try:
                async for chunk in body:
                    if self.closed:
                        break
                    if chunk:
                        self.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                    if self._write_paused:
                        self._drain = self.loop.create_future()
                        await self._drain
                        self._drain = None
                if chunked and not self.closed:
                    self.transport.write(b"0\r\n\r\n")
            finally:
                self.writing = False
        self.last_activity = self.loop.time()
        if self.busy and not self.head.done():
            self._timer = self.loop.call_at(self.last_activity + self.pool.read_timeout_s, self._check_timeout)
        return await self.head

    def _check_timeout(self) -> None:
        self._timer = None
        if not self.busy:
            return
        if self._read_paused:  # our consumer is slow, not the service
            due = self.loop.time() + self.pool.read_timeout_s
        else:
            due = self.last_activity + self.pool.read_timeout_s
            if due <= self.loop.time():
                self.abort(UpstreamTimeout("the service did not answer in time"))
                return
        self._timer = self.loop.call_at(due, self._check_timeout)

    def _until_close(self) -> bool:
        """An answer without Content-Length or chunked framing ends when the connection does."""
        r = self.response
        return (
            r is not None
            and not r.complete
            and r.content_length is None
            and all(name != b"transfer-encoding" for name, _ in r.headers)
        )

    def _complete(self, reuse: bool) -> None:
        if not self.busy:
            return
        response = self.response
        if response is not None:
            response._finish()
        self.used += 1
        self._release(reuse)

    def _end(self, error: BaseException) -> None:
        """The exchange failed: tell whoever waits, never reuse the connection."""
        if self.head is not None and not self.head.done():
            self.head.set_exception(error)
            self.head.exception()  # retrieved: a failure before anyone awaits is not "never retrieved"
        if self.response is not None:
            self.response._finish(error)
        self._release(False)

    def abort(self, error: BaseException) -> None:
        if self.busy:
            self._end(error)
        self.close()

    def _release(self, reuse: bool) -> None:
        if not self.busy:
            return
        self.busy = False
        self.response = None
        self.head = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if reuse and not self.closed and not self.writing:  # answered before the body was all sent: drop
            self.resume_reading()
            self.idle_since = self.loop.time()
            self.pool._idle.append(self)
        else:
            self.close()
        self.pool._slots.release()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()


class UpstreamPool:
    def __init__(
        self,
        base_url: str,
        max_connections: int = 100,
        keepalive_s: float = 4.0,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) base URL: {base_url!r}")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if url.scheme == "https" else None
        self.prefix = url.path.rstrip("/").encode()
        default_port = self.port == (443 if url.scheme == "https" else 80)
        self.host_header = (url.hostname if default_port else f"{url.hostname}:{self.port}").encode()
        self.keepalive_s = keepalive_s
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: deque[_Connection] = deque()
        self._all: set[_Connection] = set()

    async def request(
        self,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterable[bytes] = b"",
        body_length: bytes | None = None,
    ) -> UpstreamResponse:
        """Send one request; `target` is the path and query as the client sent them.

        `headers` must not hold Host, Content-Length or Transfer-Encoding: framing is set
        here (a streamed body keeps `body_length` if given, else goes chunked).
        """
        parts = [method.encode(), b" ", self.prefix, target, b" HTTP/1.1\r\nhost: ", self.host_header, b"\r\n"]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        chunked = False
        if isinstance(body, bytes):
            if body or method in ("POST", "PUT", "PATCH"):
                parts += (b"content-length: ", b"%d" % len(body), b"\r\n")
        elif body_length is not None:
            parts += (b"content-length: ", body_length, b"\r\n")
        else:
            chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        parts.append(b"\r\n")
        head = b"".join(parts)

        retry = isinstance(body, bytes) and method in IDEMPOTENT
        while True:
            await self._slots.acquire()
            try:
                conn = await self._connection()
            except BaseException:
                self._slots.release()
                raise
            try:
                return await conn.send(head, body, chunked, method == "HEAD")
            except _Stale:
                if retry:
                    retry = False
                    continue
                raise UpstreamError("the service closed the connection before answering") from None
            except BaseException:  # e.g. the client went away while its body was streaming
                conn.abort(UpstreamError("request abandoned"))
                raise

    async def _connection(self) -> _Connection:
        now = self.loop.time()
        while self._idle:
            conn = self._idle.pop()  # most recently used: least likely closed by the service
            if conn.closed:
                continue
            if now - conn.idle_since > self.keepalive_s:
                conn.close()
                continue
            return conn
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await self.loop.create_connection(
                    lambda: _Connection(self), self.host, self.port, ssl=self.ssl
                )
        except TimeoutError:
            raise UpstreamTimeout("connecting to the service timed out") from None
        except OSError as exc:
            raise UpstreamError(f"cannot connect to the service: {exc.strerror or exc}") from None
        self._all.add(conn)
        return conn

    def _forget(self, conn: _Connection) -> None:
        self._all.discard(conn)

    def close(self) -> None:
        for conn in list(self._all):
            conn.abort(UpstreamError("gateway shutting down"))
        self._idle.clear()


# ---- WebSocket relay (OCPP 1.6J charge points) ----------------------------------------------------------------
# Off the hot path (a charge point holds one long-lived connection): aiohttp's client, one session per
# connection, no read timeout (a charge point may be quiet between heartbeats).


async def relay_websocket(
    url: str,
    headers: dict[str, str],
    subprotocols: list[str],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
    *,
    connect_timeout_s: float,
) -> int:
    """Relay one ASGI WebSocket to `url` (ws://…): the upstream handshake first, with the client's credentials and
    subprotocols; the client is accepted only if the service accepts it (with the subprotocol it chose), refused
    (HTTP 403 before the upgrade) otherwise. Then frames both ways until either side closes. Returns the
    handshake's status (101 accepted; the service's refusal; 502 unreachable)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return 400
    timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_connect=connect_timeout_s)
    async with aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()) as session:
        try:
            upstream = await session.ws_connect(url, protocols=subprotocols, headers=headers, autoping=True)
        except aiohttp.WSServerHandshakeError as exc:
            await send({"type": "websocket.close", "code": 1008})
            return exc.status
        except (aiohttp.ClientError, TimeoutError):
            await send({"type": "websocket.close", "code": 1011})
            return 502
        async with upstream:
            await send({"type": "websocket.accept", "subprotocol": upstream.protocol})
            to_service = asyncio.create_task(_client_to_service(receive, upstream))
            to_client = asyncio.create_task(_service_to_client(upstream, send))
            done, pending = await asyncio.wait({to_service, to_client}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                error = None if task.cancelled() else task.exception()
                if error is not None:  # a side went away mid-frame: the upgrade was still accepted (101)
                    log.debug("websocket relay ended", extra={"error": f"{type(error).__name__}: {error}"})
    return 101


async def _client_to_service(
    receive: Callable[[], Awaitable[dict[str, Any]]], upstream: aiohttp.ClientWebSocketResponse
) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            await upstream.close(code=message.get("code", 1000))
            return
        if message.get("text") is not None:
            await upstream.send_str(message["text"])
        elif message.get("bytes") is not None:
            await upstream.send_bytes(message["bytes"])


async def _service_to_client(
    upstream: aiohttp.ClientWebSocketResponse, send: Callable[[dict[str, Any]], Awaitable[None]]
) -> None:
    async for frame in upstream:
        if frame.type == aiohttp.WSMsgType.TEXT:
            await send({"type": "websocket.send", "text": frame.data})
        elif frame.type == aiohttp.WSMsgType.BINARY:
            await send({"type": "websocket.send", "bytes": frame.data})
    await send({"type": "websocket.close", "code": upstream.close_code or 1000})
