import json
import os
from pathlib import Path

import psutil
import pytest

DUMMY_DIR = Path(__file__).parent / "dummy"


@pytest.fixture
def dummy_services(tmp_path):
    """A two-service table of stand-ins (tests/dummy/opendrec_devstack_dummy.py), and the env
    that lets `python -m` find them."""
    path = tmp_path / "services.json"
    path.write_text(
        json.dumps(
            [
                {"name": "identity", "module": "opendrec_devstack_dummy", "port": 8101, "url_env": "IDENTITY_URL"},
                {"name": "gateway", "module": "opendrec_devstack_dummy", "port": 8000, "url_env": "GATEWAY_URL"},
            ]
        )
    )
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(DUMMY_DIR), os.environ.get("PYTHONPATH")]))}
    return path, env


@pytest.fixture
def processes_mentioning():
    """processes_mentioning(text): live processes whose command line mentions `text`."""

    def find(text: str) -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["cmdline", "status"]):
            if p.info["status"] != psutil.STATUS_ZOMBIE and any(text in part for part in (p.info["cmdline"] or [])):
                found.append(p)
        return found

    return find
