"""The Kazam simulator process for the charger gateway's tests, and a hook for tests about links rather than
ownership: their chargers exist on the platform account before they are linked."""

import json
import subprocess
import sys
import uuid

import httpx
import pytest

from opendrec_devstack.net import free_port, wait_for_port


@pytest.fixture(scope="module")
def kazam_sim(tmp_path_factory):
    """(url, platform token) of a Kazam simulator process."""
    port, token = free_port(), f"sim-{uuid.uuid4().hex}"
    log = tmp_path_factory.mktemp("kazam") / "sim.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "opendrec_devstack.kazam_sim", "--port", str(port), "--token", token],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_for_port(port, timeout=30, proc=proc)
        yield f"http://127.0.0.1:{port}", token
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
async def sim(kazam_sim):
    """A client of the Kazam simulator's control API (the platform token)."""
    url, token = kazam_sim
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


def chargers_exist_on_the_platform(client: httpx.AsyncClient, sim_url: str, sim_token: str) -> None:
    """Before each POST /api/charger through `client`, the charger is added to the simulator (platform account):
    linking proves ownership with /getDeviceState, and these tests are about links, not ownership."""

    async def add_charger(request: httpx.Request) -> None:
        if request.method != "POST" or request.url.path != "/api/charger":
            return
        try:
            charger = json.loads(request.content).get("chargerId")
        except (ValueError, AttributeError):
            return
        if not isinstance(charger, str) or not charger.strip():
            return
        async with httpx.AsyncClient(base_url=sim_url, headers={"Authorization": f"Bearer {sim_token}"}) as sim:
            await sim.post("/simulator/devices", json={"device_id": charger.strip()})

    client.event_hooks["request"].append(add_charger)
