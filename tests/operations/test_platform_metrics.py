"""`make run`'s platform under a small load: every service's /metrics (and the gateway's, on its own port) shows the
families of issue 18 moving; the gateway's public port routes no /metrics."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from opendrec_kit.testing import eventually

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


async def test_every_service_exposes_the_families_and_they_move_under_load(ops_platform, small_load):
    ops = ops_platform
    async with httpx.AsyncClient(base_url=ops.gateway_url, timeout=30) as http:
        r = await http.get("/metrics")
        assert r.status_code == 404  # not routed publicly
        before = await scrape_all(http, ops)
        for service in SERVICES:
            missing = [n for n in EVERY_SERVICE if n not in names(before[service])]
            assert not missing, (service, missing)

        await small_load(http)

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
                "import rows": total(after["readings"], "opendrec_bulk_rows_total", kind="reads_import") >= 1,
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
