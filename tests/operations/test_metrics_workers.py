"""HTTP_WORKERS > 1: one scrape, whichever worker answers it, counts the requests every worker served."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from opendrec_devstack.net import free_port
from opendrec_kit.testing import eventually, settings_for_test
from opendrec_readings.settings import Settings

pytestmark = pytest.mark.asyncio(loop_scope="session")

REQUESTS = 60


def served(text: str, route: str) -> float:
    """Requests counted for `route` in a scrape."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "http_server_request_duration_seconds_count" and sample.labels.get("http_route") == route
    )


async def test_one_scrape_sums_the_requests_of_every_worker(postgres_url, kafka_bootstrap, tmp_path: Path) -> None:
    settings = settings_for_test(Settings, postgres_url, kafka_bootstrap)  # its own database and consumer groups
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    stale = metrics_dir / f"readings-{port}" / "histogram_1.db"  # a file of an earlier run: must not be summed in
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"not a metrics file")
    env = {
        **os.environ, "ENVIRONMENT": "test", "DATABASE_URL": postgres_url, "DATABASE_NAME_PREFIX": settings.database_name_prefix,
        "KAFKA_GROUP_PREFIX": settings.kafka_group_prefix, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_SESSION_TIMEOUT_MS": "2000", "KAFKA_HEARTBEAT_INTERVAL_MS": "500", "KAFKA_TOPIC_PARTITIONS": "1",
        "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(port), "HTTP_WORKERS": "2", "LOG_LEVEL": "INFO",
        "METRICS_MULTIPROC_DIR": str(metrics_dir),
    }  # fmt: skip
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = tmp_path / "readings.log"
    proc = subprocess.Popen(  # noqa: ASYNC220 - a test starts its process once
        [sys.executable, "-m", "opendrec_readings"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"

    def started_workers() -> set[int]:
        lines = [orjson.loads(line) for line in log.read_bytes().splitlines() if line.startswith(b"{")]
        return {line["pid"] for line in lines if line.get("message") == "service started"}

    async def both_started() -> bool:
        return len(started_workers()) >= 2

    try:
        assert await eventually(both_started, timeout=90), log.read_text()[-3000:]
        assert not stale.exists()
        async with httpx.AsyncClient(timeout=10) as client:
            before = served((await client.get(base + "/metrics")).text, "/readyz")
        # A new connection per request, so the kernel hands them to both workers; the answers say which served.
        pids: list[int] = []
        for _ in range(REQUESTS):
            async with httpx.AsyncClient(timeout=10) as client:
                answer = await client.get(base + "/readyz")
            assert answer.status_code == 200
            pids.append(answer.json()["pid"])
        assert set(pids) == started_workers(), "both workers must have served for the test to say anything"
        scrapes = []
        for _ in range(4):  # whichever worker answers the scrape
            async with httpx.AsyncClient(timeout=10) as client:
                scrapes.append(served((await client.get(base + "/metrics")).text, "/readyz") - before)
        assert scrapes == [REQUESTS] * 4
    finally:
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(timeout=60)
    assert returncode == 0, log.read_text()[-3000:]
