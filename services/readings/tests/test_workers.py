"""HTTP_WORKERS: `python -m opendrec_readings` as several processes on one port, all serving, stopped together."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
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
        "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(port), "HTTP_WORKERS": "2", "LOG_LEVEL": "WARNING",
    }  # fmt: skip
    log = tmp_path / "readings.log"
    proc = subprocess.Popen([sys.executable, "-m", "opendrec_readings"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    ready: set[int] = set()

    async def ask() -> None:
        async with httpx.AsyncClient() as client:  # a new connection: the kernel hands it to one of the workers
            try:
                response = await client.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            except httpx.HTTPError:
                return
            if response.status_code == 200 and response.json()["checks"] == {"database": "ok", "broker": "ok", "outbox": "ok", "tasks": "ok"}:
                ready.add(response.json()["pid"])

    async def both_ready() -> bool:
        await asyncio.gather(*(ask() for _ in range(8)))  # at once: a busy worker leaves some to the other
        return len(ready) >= 2

    try:
        assert await eventually(both_ready, timeout=90), log.read_text()[-3000:]
        assert len(ready) == 2 and {_parent_of(pid) for pid in ready} == {proc.pid}
    finally:
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(timeout=60)
    assert returncode == 0, log.read_text()[-3000:]
    assert not [pid for pid in ready if _alive(pid)]


def test_a_service_without_a_worker_factory_refuses_more_than_one_worker():
    runtime = build(Settings(http_workers=2))
    with pytest.raises(RuntimeError, match="HTTP_WORKERS=1 only"):
        runtime.run()
