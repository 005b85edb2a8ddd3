"""`make run`'s platform under a small load: every service's /metrics (and the gateway's, on its own port) shows the
families of issue 18 moving; the gateway's public port routes no /metrics."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from opendrec_devstack.drec_samples import (
    access_token,
    bearer,
    device_body,
    register_with_organization,
    registration_body,
    reservation_body,
    unique_tag,
)
from opendrec_kit.testing import eventually, wait_for_event
from opendrec_kit.timestamps import iso

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]

# What every service process exposes from the kit alone.
EVERY_SERVICE = [
    "http_server_request_duration_seconds_count",
    "db_client_connection_count",
    "db_client_connection_pending_requests",
    "opendrec_outbox_backlog",
    "opendrec_outbox_oldest_age_seconds",
    "opendrec_outbox_published_total",
]
CONSUMERS = ["readings", "reservations", "certificates", "devices", "charger-gateway"]
SERVICES = ["identity", *CONSUMERS]  # the kit's service runtimes


def parse(text: str) -> Series:
    return {
        (s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }


def total(series: Series, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in series.items() if n == name and all((k, val) in ls for k, val in labels.items()))


def names(series: Series) -> set[str]:
    return {n for n, _ in series}


async def scrape_all(http: httpx.AsyncClient, ops) -> dict[str, Series]:
    out = {}
    for name in SERVICES:
        r = await http.get(ops.service_urls[name].rstrip("/") + "/metrics")
        assert r.status_code == 200, (name, r.text[:300])
        out[name] = parse(r.text)
    r = await http.get(ops.gateway_metrics_url)
    assert r.status_code == 200
    out["gateway"] = parse(r.text)
    return out


async def small_load(http: httpx.AsyncClient, ops) -> dict[str, object]:
    """A developer, a device, accepted and refused reads, a buyer's reservation and its certificate."""

    async def user(kind: str) -> dict[str, str]:
        tag = unique_tag()
        body = registration_body(kind, email=f"OPS_{kind.upper()}_{tag}@example.org", orgName=f"Ops {tag}")
        await register_with_organization(http, body)
        return bearer(await access_token(http, body["email"], body["password"]))

    assert (await http.get("/healthz")).status_code == 200  # every service's /readyz, through the gateway
    dev = await user("Developer")
    external_id = f"OPS_{uuid.uuid4().hex[:8]}"
    r = await http.post("/api/device", json=device_body(external_id, capacity=2000), headers=dev)
    assert r.status_code == 201, r.text
    device = r.json()
    registered, _ = await wait_for_event(
        ops.kafka_bootstrap, "device.registered", lambda e: e["payload"]["external_id"] == external_id
    )
    buyer = await user("Buyer")
    reservation = reservation_body(f"OPS-RES-{uuid.uuid4().hex[:6]}", [device["id"]])

    async def reserved():
        r = await http.post("/api/device-group", json=reservation, headers=buyer)
        return r if r.status_code != 400 or "unknown device" not in r.text else None

    r = await eventually(reserved)
    assert r.status_code == 201, r.text
    window_start = r.json()["reservationStartDate"]

    start = datetime.fromisoformat(window_start.replace("Z", "+00:00")) + timedelta(minutes=5)
    history = {"type": "History", "unit": "Wh"}

    async def accepted():
        body = {
            **history,
            "reads": [
                {"starttimestamp": iso(start), "endtimestamp": iso(start + timedelta(minutes=10)), "value": 2500}
            ],
        }
        r = await http.post(f"/api/meter-reads/new/{external_id}", json=body, headers=dev)
        return None if r.status_code == 404 else r  # readings learns of the device from device.registered

    r = await eventually(accepted)
    assert r.status_code == 201, r.text
    # refused: a read whose end comes before its start
    bad = {
        **history,
        "reads": [{"starttimestamp": iso(start), "endtimestamp": iso(start - timedelta(minutes=1)), "value": 5}],
    }
    r = await http.post(f"/api/meter-reads/new/{external_id}", json=bad, headers=dev)
    assert r.status_code == 400, r.text
    return {"device": device, "registered": registered}


async def test_every_service_exposes_the_families_and_they_move_under_load(ops_platform):
    ops = ops_platform
    async with httpx.AsyncClient(base_url=ops.gateway_url, timeout=30) as http:
        r = await http.get("/metrics")
        assert r.status_code == 404  # not routed publicly
        before = await scrape_all(http, ops)
        for service in SERVICES:
            missing = [n for n in EVERY_SERVICE if n not in names(before[service])]
            assert not missing, (service, missing)

        await small_load(http, ops)

        async def moved() -> dict[str, Series] | None:
            after = await scrape_all(http, ops)
            checks = {
                # requests by route template, per service and at the gateway
                **{
                    f"{s} requests": total(after[s], "http_server_request_duration_seconds_count")
                    > total(before[s], "http_server_request_duration_seconds_count")
                    for s in SERVICES
                },
                "gateway requests by route": total(
                    after["gateway"], "http_server_request_duration_seconds_count", http_route="/api/device"
                )
                >= 1,
                # events handled, per consumer group, and their handler latency
                **{
                    f"{s} handled": total(after[s], "opendrec_consumer_messages_total", outcome="handled")
                    > total(before[s], "opendrec_consumer_messages_total", outcome="handled")
                    for s in CONSUMERS
                },
                "handler latency": total(after["certificates"], "messaging_process_duration_seconds_count") > 0,
                # lag measured per group and partition, and caught up
                **{f"{s} lag": "messaging_kafka_consumer_lag" in names(after[s]) for s in CONSUMERS},
                # the relay published what the load produced
                **{
                    f"{s} published": total(after[s], "opendrec_outbox_published_total")
                    > total(before[s], "opendrec_outbox_published_total")
                    for s in ("identity", "devices", "readings", "reservations", "certificates")
                },
                # the domain families
                "reads accepted": total(after["readings"], "opendrec_readings_reads_total", outcome="accepted") >= 1,
                "reads refused": total(
                    after["readings"], "opendrec_readings_reads_total", outcome="refused", reason="invalid"
                )
                >= 1,
                "Wh accepted": total(after["readings"], "opendrec_readings_watt_hours_total") >= 2500,
                "certificates issued": total(after["certificates"], "opendrec_certificates_issued_total") >= 1,
                "Wh certified": total(after["certificates"], "opendrec_certificates_watt_hours_total") >= 2000,
                "bulk jobs": "opendrec_bulk_jobs" in names(after["devices"])
                and "opendrec_bulk_jobs" in names(after["readings"]),
                "kazam polls": total(after["charger-gateway"], "opendrec_charger_polls_total")
                > total(before["charger-gateway"], "opendrec_charger_polls_total"),
            }
            if all(checks.values()):
                return after
            print("not yet:", [k for k, v in checks.items() if not v])  # in the failure's captured output
            return None

        after = await eventually(moved, timeout=90, interval=1)

        # lag is per group and partition, and drains once the load is handled
        lag = [(dict(ls), v) for (n, ls), v in after["readings"].items() if n == "messaging_kafka_consumer_lag"]
        assert all(
            {"messaging_consumer_group_name", "messaging_destination_name", "messaging_destination_partition_id"}
            <= set(labels)
            for labels, _ in lag
        )

        async def drained() -> bool:
            now = await scrape_all(http, ops)
            return all(total(now[s], "messaging_kafka_consumer_lag") == 0 for s in CONSUMERS)

        await eventually(drained, timeout=60, interval=1)
