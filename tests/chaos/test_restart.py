"""The devstack's restart mode the fault-injection run relies on (OPENDREC_DEVSTACK_RESTART=1): a service killed with
-9 is started again with its port and environment, the others run on, and Ctrl-C still stops everything."""

import json
import os
import signal
import time
from pathlib import Path

import httpx
import psutil

from opendrec_devstack.pytest_plugin import start_platform

DUMMY_DIR = Path(__file__).parents[2] / "libs" / "devstack" / "tests" / "dummy"
DUMMY = "opendrec_devstack_dummy"  # a stand-in service: /readyz, /env


def service_pids(supervisor: int) -> list[int]:
    pids = []
    for p in psutil.Process(supervisor).children(recursive=True):
        try:
            if p.cmdline()[-2:] == ["-m", DUMMY] and os.getpgid(p.pid) == p.pid:
                pids.append(p.pid)
        except (psutil.NoSuchProcess, ProcessLookupError):
            continue  # it exited between the listing and the look (a killed service, a short-lived child)
    return pids


def test_a_killed_service_is_started_again_and_the_stack_runs_on(tmp_path, postgres_url, kafka_bootstrap):
    services = tmp_path / "services.json"
    services.write_text(
        json.dumps(
            [
                {"name": "identity", "module": DUMMY, "port": 8101, "url_env": "IDENTITY_URL"},
                {"name": "gateway", "module": DUMMY, "port": 8000, "url_env": "GATEWAY_URL"},
            ]
        )
    )
    env = {"PYTHONPATH": str(DUMMY_DIR), "OPENDREC_DEVSTACK_RESTART": "1"}
    p = start_platform(
        tmp_path / "state",
        database_url=postgres_url,
        kafka_bootstrap=kafka_bootstrap,
        services_file=services,
        extra_env=env,
        timeout=60,
    )
    try:
        before = service_pids(p.process.pid)
        assert len(before) == 2
        identity = p.service_urls["identity"]
        port = identity.rsplit(":", 1)[1]
        victim = next(pid for pid in before if psutil.Process(pid).environ().get("HTTP_PORT") == port)
        os.killpg(victim, signal.SIGKILL)

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = service_pids(p.process.pid)
            if len(now) == 2 and victim not in now:
                try:
                    if httpx.get(f"{identity}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
        else:
            raise AssertionError(f"identity not started again\n{p.log_tail()}")
        survivor = next(pid for pid in before if pid != victim)
        assert survivor in service_pids(p.process.pid)  # the other one ran on
        assert httpx.get(f"{identity}/env").json()["IDENTITY_URL"] == identity  # same port and environment
        assert "identity exited (rc=-9), starting it again" in p.log_tail(100_000)
    finally:
        rc = p.stop()
    assert rc == 130  # Ctrl-C's, not the killed service's
    assert service_pids(os.getpid()) == []
