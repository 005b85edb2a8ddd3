"""A platform of the operations tests' own: every service as a process (as `make run`), the gateway's metrics on a
known port and measurements every second, on a broker of its own (as the devstack's `platform` fixture, whose
reasons hold here too)."""

import contextlib
import os
from dataclasses import dataclass

import pytest

from opendrec_devstack.net import free_port
from opendrec_devstack.pytest_plugin import (
    Platform,
    databases_with_prefix,
    docker_available,
    drop_databases,
    start_platform,
)


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
