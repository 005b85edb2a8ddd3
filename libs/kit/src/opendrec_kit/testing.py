"""Helpers for service tests against a real Postgres and a real broker.

`started(runtime)` runs a service in-process (its real database, migrations, broker,
subscribers and relay) and gives an HTTP client bound to its app. `TokenIssuer` signs
real EdDSA tokens with a test key that the service's verifier is told to trust.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import asyncpg
import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .runtime import ServiceRuntime
from .settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)

# (server URL, database name prefix) of every settings_for_test call, for dropping at session end.
CREATED_PREFIXES: list[tuple[str, str]] = []


def settings_for_test(cls: type[S], postgres_url: str, kafka_bootstrap: str, **overrides: Any) -> S:
    """Settings for one test module: its own databases (unique prefix), short consumer timeouts."""
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    CREATED_PREFIXES.append((postgres_url, prefix))
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": postgres_url,
        "database_name_prefix": prefix,
        "kafka_group_prefix": prefix,
        "kafka_bootstrap_servers": kafka_bootstrap,
        "kafka_session_timeout_ms": 2000,
        "kafka_heartbeat_interval_ms": 500,
        "kafka_topic_partitions": 1,
        "outbox_poll_interval_s": 0.2,
        "consumer_retry_backoff_ms": 10,
    }
    # The owners asked on a read-model miss (opendrec_kit.owners): by default a stand-in that knows nothing, so a
    # test of one service sees an unknown entity stay unknown (404) instead of an owner that is down (503).
    nobody = _owner_that_knows_nothing().url
    values.update(identity_url=nobody, devices_url=nobody, reservations_url=nobody)
    values.update(overrides)
    return cls(**values)


@functools.cache
def _owner_that_knows_nothing() -> OwnerStandIn:
    return OwnerStandIn().start()


class TokenIssuer:
    def __init__(self, audience: str = "opendrec", issuer: str = "opendrec-identity") -> None:
        self.key = Ed25519PrivateKey.generate()
        self.kid = f"test-{uuid.uuid4().hex[:8]}"
        self.audience = audience
        self.issuer = issuer

    def jwk(self) -> dict[str, Any]:
        jwk = jwt.algorithms.OKPAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": "EdDSA", "use": "sig"}

    def trust_in(self, runtime: ServiceRuntime) -> None:
        runtime.app.state.token_verifier.add_key(self.jwk())

    def token(
        self,
        *,
        user_id: int = 1,
        organization_id: int = 1,
        organization_type: str = "Developer",
        role: str = "OrganizationAdmin",
        permissions: dict[str, str] | None = None,
        expires_in: timedelta = timedelta(minutes=15),
        **extra: Any,
    ) -> str:
        now = datetime.now(UTC)
        claims = {
            "sub": str(user_id),
            "org": organization_id,
            "orgType": organization_type,
            "role": role,
            "email": f"user{user_id}@example.org",
            "perms": permissions or {},
            "jti": uuid.uuid4().hex,
            "iat": int(now.timestamp()),
            "exp": int((now + expires_in).timestamp()),
            "iss": self.issuer,
            "aud": self.audience,
            **extra,
        }
        return jwt.encode(claims, self.key, algorithm="EdDSA", headers={"kid": self.kid})

    def headers(self, **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(**kwargs)}"}


@contextlib.asynccontextmanager
async def started(runtime: ServiceRuntime) -> AsyncIterator[httpx.AsyncClient]:
    await runtime.start()
    try:
        transport = httpx.ASGITransport(app=runtime.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield client
    finally:
        await runtime.stop()


# How long a test waits for what the platform does in the background (consume an event, run a worker) before it
# fails. A passing test waits only as long as the work takes; the deadline is generous because `make test` runs on
# several workers sharing two cores, where a consumer replaying its topic's history behind a platform test's load
# was seen to need more than 20 s.
WAIT_S = 60.0


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = WAIT_S, interval: float = 0.05) -> Any:
    """Poll `check` until it returns a truthy value or the deadline passes (then fail with its last value)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


async def drop_test_databases() -> list[str]:
    """Drop the databases made under settings_for_test prefixes (call at session end)."""
    dropped: list[str] = []
    for server_url, prefix in CREATED_PREFIXES:
        conn = await asyncpg.connect(server_url)
        try:
            names = await conn.fetch("SELECT datname FROM pg_database WHERE starts_with(datname, $1)", prefix)
            for row in names:
                await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
                dropped.append(row["datname"])
        finally:
            await conn.close()
    CREATED_PREFIXES.clear()
    return dropped


async def wait_for_event(
    bootstrap: str, topic: str, match: Callable[[dict[str, Any]], bool], timeout: float = WAIT_S
) -> tuple[dict[str, Any], dict[str, str]]:
    """Read `topic` from the beginning (no consumer group) until an envelope matches; returns (envelope, headers)."""
    import orjson
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    try:
                        envelope = orjson.loads(record.value)
                        matched = match(envelope)
                    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                        continue  # not an envelope of the shape asked for (other tests publish poison too)
                    if matched:
                        headers = {k: v.decode() for k, v in (record.headers or [])}
                        return envelope, headers
        raise AssertionError(f"no matching event on {topic} within {timeout}s")
    finally:
        await consumer.stop()


async def all_events(bootstrap: str, topic: str, match: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Every envelope on `topic` (from the beginning up to its current end) that `match`es."""
    import orjson
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # metadata, so the partitions are known
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        found = []
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    try:
                        envelope = orjson.loads(record.value)
                        if match(envelope):
                            found.append(envelope)
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        continue
        return found
    finally:
        await consumer.stop()


async def publish_envelopes(bootstrap: str, items: list[tuple[str, str, bytes]]) -> None:
    """Publish raw (topic, key, value) records, as an upstream service's relay would."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for topic, key, value in items:
            await producer.send_and_wait(topic, value, key=key.encode())
    finally:
        await producer.stop()


async def publish_events(bootstrap: str, events: list[Any], producer: str = "test") -> list[Any]:
    """Publish events in envelopes (as their owning service would); returns the envelopes so a test can resend them."""
    from opendrec_contracts import envelope_for, topic_of

    envelopes = [envelope_for(e, producer) for e in events]
    await publish_envelopes(
        bootstrap,
        [(topic_of(e.TYPE), e.key(), env.model_dump_json().encode()) for e, env in zip(events, envelopes, strict=True)],
    )
    return envelopes


async def announce_organizations(bootstrap: str, runtime: ServiceRuntime, organizations: list[Any]) -> None:
    """Publish organization.registered events as identity would, and wait until `runtime`'s
    organization directory knows every one of them (for tests of `acting_organization`)."""
    from .organizations import find_organization

    await publish_events(bootstrap, organizations, producer="identity")
    for organization in organizations:
        await eventually(functools.partial(find_organization, runtime.pool, organization.organization_id))


async def dispatch(
    pool: asyncpg.Pool, producer: str, handler: Any, event: Any, *, consumer: str = "test", envelope: Any = None
) -> bool:
    """Hand `event` to `handler` in-process exactly as a consumer would (inbox claim and effect in one unit of
    work, recorded events to the outbox at commit): handler logic tested without a broker. False: a duplicate."""
    from opendrec_contracts import envelope_for

    from .messaging import handle_once

    envelope = envelope or envelope_for(event, "test")
    return await handle_once(pool, consumer, producer, envelope, event, handler)


@contextlib.asynccontextmanager
async def handling(pool: asyncpg.Pool, producer: str, handler: Any, event: Any) -> AsyncIterator[Any]:
    """Run `handler` on `event` in a unit of work that stays open (uncommitted) until the block ends: for tests
    of what another transaction sees or waits for meanwhile."""
    from opendrec_contracts import envelope_for

    from .uow import EventContext

    async with EventContext(pool, producer, envelope_for(event, "test")) as uow:
        await handler(event, uow)
        yield uow


def serve_jwks(jwk: dict[str, Any]) -> tuple[ThreadingHTTPServer, str]:
    """Serve `{"keys": [jwk]}` (e.g. a TokenIssuer's `jwk()`) at /.well-known/jwks.json from a thread, for a service run as
    its own process to trust (its IDENTITY_URL); returns (the server, to `.shutdown()` when done, its base URL)."""
    body = json.dumps({"keys": [jwk]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            # Identity's other paths (e.g. /internal/organizations/..., asked on a miss) know nothing here.
            found = self.path.split("?")[0] == "/.well-known/jwks.json"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) if found else 2))
            self.end_headers()
            self.wfile.write(body if found else b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


class OwnerStandIn:
    """Stands in for an owning service (opendrec_kit.owners) in one service's tests: answers GET /internal/... from
    `answers` (path with query string -> (status, body)), 404 otherwise, and records what was asked (path with
    query, Authorization header). Serve it from a thread with `start()`; its base URL is `url`."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, Any]] = {}
        self.asked: list[tuple[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.asked.append((self.path, self.headers.get("authorization", "")))
                status, answer = owner.answers.get(self.path, (404, {"message": "not found"}))
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def knows(self, path: str, states: list[tuple[Any, datetime]], producer: str = "owner") -> None:
        """Answer GET /internal<path> with these (event, since when) states, as `owners.answer` builds it."""
        from .owners import answer

        self.answers[f"/internal{path}"] = (200, answer(states, producer))

    def start(self) -> OwnerStandIn:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def announce_api_user_organizations(
    bootstrap: str, runtime: ServiceRuntime, base: int, names: list[str]
) -> tuple[str, str, dict[str, int]]:
    """Two API users, A and B, and organizations of theirs announced as identity would, known to `runtime` on
    return. A name says whose and what: `a_...`/`b_...`, a Buyer organization when it holds "buyer", else a
    Developer one (e.g. "a_buyer2", "b_dev"); ids are base + 1, base + 2, ... in the order given.
    Returns (A's API user id, B's, {name: organization id})."""
    from opendrec_contracts import OrganizationRegistered

    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    organizations = {name: base + n for n, name in enumerate(names, start=1)}
    await announce_organizations(
        bootstrap,
        runtime,
        [
            OrganizationRegistered(
                organization_id=organization_id,
                name=f"{name} {base}",
                organization_type="Buyer" if "buyer" in name else "Developer",
                api_user_id=a if name.startswith("a_") else b,
            )
            for name, organization_id in organizations.items()
        ],
    )
    return a, b, organizations
