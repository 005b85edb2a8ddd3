"""A platform of the operations tests' own: every service as a process (as `make run`), the gateway's metrics on a
known port and measurements every second, on a broker of its own (as the devstack's `platform` fixture, whose
reasons hold here too)."""

import contextlib
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from opendrec_devstack.drec_samples import (
    access_token,
    bearer,
    device_body,
    register_with_organization,
    registration_body,
    reservation_body,
    unique_tag,
)
from opendrec_devstack.net import free_port
from opendrec_devstack.pytest_plugin import (
    Platform,
    databases_with_prefix,
    docker_available,
    drop_databases,
    start_platform,
)
from opendrec_kit.testing import eventually, wait_for_event
from opendrec_kit.timestamps import iso


@dataclass
class OpsPlatform:
    platform: Platform
    gateway_metrics_url: str

    def __getattr__(self, name: str):
        return getattr(self.platform, name)


@pytest.fixture(scope="session")
def ops_platform(postgres_url, kafka_bootstrap, tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("ops-platform")
    metrics_port = free_port()
    with contextlib.ExitStack() as stack:
        bootstrap = kafka_bootstrap
        if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and not docker_available():
            from opendrec_devstack.broker import start_broker

            bootstrap = stack.enter_context(start_broker(log_path=state_dir.parent / "ops-tansu.log")).bootstrap
        running = start_platform(
            state_dir,
            database_url=postgres_url,
            kafka_bootstrap=bootstrap,
            extra_env={"CERTIFY_SETTLE_S": "1", "METRICS_PORT": str(metrics_port), "METRICS_INTERVAL_S": "1"},
        )
        try:
            yield OpsPlatform(running, f"http://127.0.0.1:{metrics_port}/metrics")
        finally:
            running.stop()
            drop_databases(postgres_url, databases_with_prefix(postgres_url, running.database_name_prefix))


@pytest.fixture(scope="session")
def small_load(ops_platform):
    """A small load through the gateway: a developer, a device, accepted and refused reads, a CSV read import, a
    buyer's reservation and the certificate of its History read."""
    ops = ops_platform

    async def load(http: httpx.AsyncClient) -> dict[str, Any]:
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
        await wait_for_event(
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
        csv = f"deviceExternalId,timezone,type,unit,value,startDate,endDate\n{external_id},,History,Wh,300,{iso(start + timedelta(minutes=20))},{iso(start + timedelta(minutes=25))}\n"
        r = await http.post(
            "/api/meter-reads/bulk-upload",
            params={"fileName": "ops.csv"},
            content=csv,
            headers={**dev, "Content-Type": "text/csv"},
        )
        assert r.status_code == 202, r.text
        return {"device": device, "external_id": external_id, "import_job": r.json()["jobId"]}

    return load
