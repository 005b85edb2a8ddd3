"""What each command finds out, as plain data (the commands print it as tables or JSON).

Every figure comes from where the platform already keeps it: health from /readyz, lag from the broker (the kit's
LagReader, the same as the services' metrics), the outbox from each service's /metrics, dead letters through
`opendrec_kit.dlq` (the one implementation of list and replay), jobs and reconciliation from the services'
databases, read only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from opendrec_contracts import topic_of
from opendrec_kit import dlq
from opendrec_kit.metrics import LagReader

from . import asyncapi, store
from .target import Target

Progress = Callable[[], None]  # called once per unit of work done (progress bars)


async def health(target: Target, timeout_s: float = 5.0) -> dict[str, Any]:
    """The gateway's /readyz and every service's /readyz (its checks and workers)."""

    async def ask(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
        try:
            r = await client.get(url.rstrip("/") + "/readyz")
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            return {"status": "ready" if r.status_code == 200 else "unready", "statusCode": r.status_code, **body}
        except httpx.HTTPError as exc:
            return {"status": "unreachable", "statusCode": None, "error": type(exc).__name__}

    async with httpx.AsyncClient(timeout=timeout_s) as client:
        names = ["gateway", *target.service_urls]
        urls = [target.gateway_url, *target.service_urls.values()]
        answers = await asyncio.gather(*(ask(client, url) for url in urls))
    services = {}
    for name, answer in zip(names, answers, strict=True):
        services[name] = {
            "status": "ready" if answer["status"] == "ready" else answer["status"],
            "statusCode": answer["statusCode"],
            "checks": answer.get("checks", {}),
            "workers": answer.get("workers", {}),
            **({"error": answer["error"]} if "error" in answer else {}),
        }
    return {
        "status": "ok" if all(s["status"] == "ready" for s in services.values()) else "degraded",
        "services": services,
    }


def consumer_groups(target: Target, service: str | None = None) -> dict[str, tuple[str, str]]:
    """group -> (service, topic) of every subscription (from the services' code, as the AsyncAPI document)."""
    _producers, consumers = asyncapi.scan()
    groups = {}
    for event_type, services in consumers.items():
        if event_type in asyncapi.EVERYONE_FOLLOWS:
            continue  # followed without a group: no lag to read
        topic = topic_of(event_type)
        for name in services:
            if service in (None, name):
                groups[f"{target.group_prefix}{name}.{topic}"] = (name, topic)
    return dict(sorted(groups.items()))


async def lag(target: Target, service: str | None = None) -> list[dict[str, Any]]:
    """Per service, group and partition: committed offset, end offset, lag."""
    groups = consumer_groups(target, service)
    reader = LagReader(target.kafka_bootstrap)
    try:
        found = await reader.read({group: topic for group, (_, topic) in groups.items()})
    finally:
        await reader.close()
    return [
        {
            "service": groups[p.group][0],
            "group": p.group,
            "topic": p.topic,
            "partition": p.partition,
            "committed": p.committed,
            "end": p.end,
            "lag": p.lag,
        }
        for p in found
    ]


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


async def outbox(target: Target, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """Each service's outbox as its metrics worker last measured it: rows waiting, the oldest's age, published and
    set aside since the process started."""

    async def one(client: httpx.AsyncClient, name: str, url: str) -> dict[str, Any]:
        try:
            r = await client.get(url.rstrip("/") + "/metrics")
            r.raise_for_status()
        except httpx.HTTPError as exc:
            return {"service": name, "error": type(exc).__name__}
        text = r.text

        def first(metric: str) -> float | None:
            values = [v for _, v in _samples(text, metric)]
            return values[0] if values else None

        return {
            "service": name,
            "backlog": first("opendrec_outbox_backlog"),
            "oldest_age_s": first("opendrec_outbox_oldest_age_seconds"),
            "published": first("opendrec_outbox_published_total"),
            "set_aside": first("opendrec_outbox_set_aside_total"),
        }

    async with httpx.AsyncClient(timeout=timeout_s) as client:
        return list(await asyncio.gather(*(one(client, n, u) for n, u in target.service_urls.items())))


def dlq_topics(topics: Sequence[str] | None) -> list[str] | None:
    """DLQ names from topics or DLQs (None: all of them)."""
    if not topics:
        return None
    return [t if t.endswith(dlq.DLQ_SUFFIX) else f"{t}{dlq.DLQ_SUFFIX}" for t in topics]


async def dead_letters(target: Target, topics: Sequence[str] | None = None) -> list[dlq.DeadLetter]:
    return await dlq.dead_letters(target.kafka_bootstrap, dlq_topics(topics))


async def replay(target: Target, letters: Sequence[dlq.DeadLetter]) -> int:
    return await dlq.replay(target.kafka_bootstrap, letters)


async def jobs(target: Target, *, unfinished_only: bool, limit: int) -> list[dict[str, Any]]:
    """Bulk onboarding (devices) and bulk read imports (readings), newest first."""
    out: list[dict[str, Any]] = []
    for service, kind, query in (
        ("devices", "device onboarding", store.bulk_jobs),
        ("readings", "read import", store.import_jobs),
    ):
        conn = await asyncpg.connect(target.database(service))
        try:
            out += [{"service": service, "kind": kind, **row} for row in await query(conn, unfinished_only, limit)]
        finally:
            await conn.close()
    return out


async def reconcile(
    target: Target, device_ids: Sequence[int] | None = None, progress: Callable[[int], Progress] | None = None
) -> list[dict[str, Any]]:
    """Per device: the reads readings accepted, the reads certificates holds (from read.ingested), and the Wh
    certified. In sync when certificates holds every accepted read (held = accepted) and certified Wh never exceed
    what it holds (the certificate invariant)."""
    readings = await asyncpg.connect(target.database("readings"))
    certificates = await asyncpg.connect(target.database("certificates"))
    try:
        ids = list(device_ids) if device_ids else await store.readings_devices(readings)
        step = progress(len(ids)) if progress else None
        out = []
        for device_id in ids:
            accepted, accepted_wh = await store.accepted_reads(readings, device_id)
            held, held_wh, allocated_wh = await store.held_reads(certificates, device_id)
            certificates_count, certified = await store.certified_wh(certificates, device_id)
            if certified > held_wh:
                verdict = "over-certified"  # the invariant broken: never expected
            elif (held, held_wh) != (accepted, accepted_wh):
                verdict = "behind"  # read.ingested not all handled yet (or lost: look at lag and dead letters)
            else:
                verdict = "ok"
            out.append(
                {
                    "device_id": device_id,
                    "accepted_reads": accepted,
                    "accepted_wh": accepted_wh,
                    "held_reads": held,
                    "held_wh": held_wh,
                    "allocated_wh": allocated_wh,
                    "certificates": certificates_count,
                    "certified_wh": certified,
                    "uncertified_wh": held_wh - certified,
                    "verdict": verdict,
                }
            )
            if step:
                step()
        return out
    finally:
        await readings.close()
        await certificates.close()
