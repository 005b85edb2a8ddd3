"""HTTP_WORKERS: `python -m opendrec_readings` as several processes on one port, all serving, stopped together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from opendrec_devstack.net import free_port
from opendrec_kit.testing import eventually, settings_for_test
from opendrec_readings.app import build
from opendrec_readings.settings import Settings


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.asyncio(loop_scope="session")
async def test_two_workers_serve_on_one_port_and_stop_together(postgres_url, kafka_bootstrap, tmp_path):
    settings = settings_for_test(Settings, postgres_url, kafka_bootstrap)  # its own database and consumer groups
    port = free_port()
    env = {
        **os.environ, "ENVIRONMENT": "test", "DATABASE_URL": postgres_url, "DATABASE_NAME_PREFIX": settings.database_name_prefix,
        "KAFKA_GROUP_PREFIX": settings.kafka_group_prefix, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_SESSION_TIMEOUT_MS": "2000", "KAFKA_HEARTBEAT_INTERVAL_MS": "500", "KAFKA_TOPIC_PARTITIONS": "1",
        "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(port), "HTTP_WORKERS": "2", "LOG_LEVEL": "INFO",
    }  # fmt: skip
    log = tmp_path / "readings.log"
    proc = subprocess.Popen(  # noqa: ASYNC220 - a test starts its process once
        [sys.executable, "-m", "opendrec_readings"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )

    def started_workers() -> set[int]:
        # Each worker logs "service started" with its pid once its database pool, broker and relay run.
        # (Asking /readyz can't tell them apart: the kernel may hand every new connection to the same one.)
        lines = [orjson.loads(line) for line in log.read_bytes().splitlines() if line.startswith(b"{")]
        return {line["pid"] for line in lines if line.get("message") == "service started"}

    async def both_started() -> bool:
        return len(started_workers()) >= 2

    async def ready() -> bool:
        async with httpx.AsyncClient() as client:
            try:
                response = await client.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            except httpx.HTTPError:
                return False
        return response.status_code == 200 and response.json()["pid"] in started_workers()

    workers: set[int] = set()
    try:
        assert await eventually(both_started, timeout=90), log.read_text()[-3000:]
        workers = started_workers()
        assert len(workers) == 2 and {_parent_of(pid) for pid in workers} == {proc.pid}
        assert await eventually(ready, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(timeout=60)
    assert returncode == 0, log.read_text()[-3000:]
    assert not [pid for pid in workers if _alive(pid)]


def test_a_service_without_a_worker_factory_refuses_more_than_one_worker():
    runtime = build(Settings(http_workers=2))
    with pytest.raises(RuntimeError, match="HTTP_WORKERS=1 only"):
        runtime.run()
