"""Bare forwarding proxies the gateway's design was chosen against (no auth, no spans).

    python bench/gateway/variants.py <variant> <port> <upstream base URL>

Run through the benchmark: `python bench/gateway/bench_forwarding.py --variant asgi-aiohttp`.
Each forwards every path with method, headers (minus hop-by-hop) and body, and returns the
upstream's status, headers and body; only the server/client stack differs:
  asgi-pool        raw ASGI on uvicorn + the gateway's own UpstreamPool (its forwarding path)
  asgi-aiohttp     raw ASGI on uvicorn + a tuned aiohttp ClientSession
  aiohttp-web      aiohttp.web server + aiohttp ClientSession
  fastapi-aiohttp  FastAPI catch-all route on uvicorn + aiohttp ClientSession
  asgi-httpx       raw ASGI on uvicorn + httpx AsyncClient
"""

import asyncio
import sys

HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
HOP_B = {h.encode() for h in HOP}


def client_session():
    import aiohttp

    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=100, keepalive_timeout=4),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
    )


def asgi_app(upstream: str, client: str):
    """Raw ASGI callable; client "aiohttp", "httpx" or "pool" (the gateway's UpstreamPool)."""
    state = {}

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    if client == "aiohttp":
                        state["s"] = client_session()
                    elif client == "pool":
                        from opendrec_gateway.upstream import UpstreamPool

                        state["s"] = UpstreamPool(upstream)
                    else:
                        import httpx

                        state["s"] = httpx.AsyncClient(
                            limits=httpx.Limits(max_connections=100, max_keepalive_connections=100)
                        )
                    await send({"type": "lifespan.startup.complete"})
                else:
                    if client == "pool":
                        state["s"].close()
                    else:
                        await (state["s"].close() if client == "aiohttp" else state["s"].aclose())
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k not in HOP_B]
        url = (
            upstream
            + scope["raw_path"].decode()
            + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
        )
        message = await receive()
        body = message.get("body") or None
        if client == "pool":
            target = scope["raw_path"] + (b"?" + scope["query_string"] if scope["query_string"] else b"")
            r = await state["s"].request(
                scope["method"], target, [(k, v) for k, v in scope["headers"] if k not in HOP_B], body or b""
            )
            data = await r.read()
            out = [(k, v) for k, v in r.headers if k not in HOP_B]
            status = r.status
        elif client == "aiohttp":
            async with state["s"].request(scope["method"], url, headers=headers, data=body, allow_redirects=False) as r:
                data = await r.read()
                out = [(k.lower(), v) for k, v in r.raw_headers if k.lower() not in HOP_B]
                status = r.status
        else:
            r = await state["s"].request(scope["method"], url, headers=headers, content=body)
            data = r.content
            out = [(k.lower(), v) for k, v in r.headers.raw if k.lower() not in HOP_B]
            status = r.status_code
        out.append((b"content-length", b"%d" % len(data)))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": data})

    return app


def fastapi_app(upstream: str):
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request, Response

    state = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state["s"] = client_session()
        yield
        await state["s"].close()

    app = FastAPI(lifespan=lifespan)

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def proxy(path: str, request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k not in HOP}
        body = await request.body()
        url = upstream + request.url.path + ("?" + request.url.query if request.url.query else "")
        async with state["s"].request(
            request.method, url, headers=headers, data=body or None, allow_redirects=False
        ) as r:
            data = await r.read()
            return Response(
                data, status_code=r.status, headers={k: v for k, v in r.headers.items() if k.lower() not in HOP}
            )

    return app


def run_aiohttp_web(port: int, upstream: str) -> None:
    import uvloop
    from aiohttp import web
    from multidict import CIMultiDict

    async def handler(request: web.Request) -> web.Response:
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP]
        body = await request.read()
        async with request.app["s"].request(
            request.method, upstream + request.raw_path, headers=headers, data=body or None, allow_redirects=False
        ) as r:
            data = await r.read()
            return web.Response(
                status=r.status,
                body=data,
                headers=CIMultiDict((k, v) for k, v in r.headers.items() if k.lower() not in HOP),
            )

    async def start(app: web.Application) -> None:
        app["s"] = client_session()

    async def stop(app: web.Application) -> None:
        await app["s"].close()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def main() -> None:
    variant, port, upstream = sys.argv[1], int(sys.argv[2]), sys.argv[3].rstrip("/")
    if variant == "aiohttp-web":
        return run_aiohttp_web(port, upstream)
    import uvicorn

    apps = {
        "asgi-aiohttp": lambda: asgi_app(upstream, "aiohttp"),
        "asgi-httpx": lambda: asgi_app(upstream, "httpx"),
        "asgi-pool": lambda: asgi_app(upstream, "pool"),
        "fastapi-aiohttp": lambda: fastapi_app(upstream),
    }
    if variant not in apps:
        sys.exit(f"unknown variant {variant}; one of aiohttp-web, {', '.join(apps)}")
    uvicorn.run(
        apps[variant](),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        proxy_headers=False,
        server_header=False,
        date_header=False,
    )


if __name__ == "__main__":
    main()
