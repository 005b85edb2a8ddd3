"""Embedded Tansu: a Kafka client can create a topic, produce and consume through it."""

import asyncio
import uuid

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from opendrec_devstack.broker import start_broker
from opendrec_devstack.net import free_port, port_is_free


async def test_create_produce_consume_then_stop(tmp_path):
    port = free_port()
    broker = start_broker(port, log_path=tmp_path / "tansu.log", pid_dir=tmp_path / "pids")
    try:
        assert broker.bootstrap == f"127.0.0.1:{port}"
        assert (tmp_path / "pids" / "tansu.json").exists()
        topic = f"device.registered.{uuid.uuid4().hex[:6]}"
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
            assert topic in await admin.list_topics()
        finally:
            await admin.close()

        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b'{"device_id": "d1"}', key=b"d1")
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=broker.bootstrap,
            group_id="devstack-test",
            auto_offset_reset="earliest",
            session_timeout_ms=2000,
            heartbeat_interval_ms=500,
        )
        await consumer.start()
        try:
            msg = await asyncio.wait_for(consumer.getone(), 20)
        finally:
            await consumer.stop()
        assert (msg.key, msg.value) == (b"d1", b'{"device_id": "d1"}')
    finally:
        broker.stop()
    assert not psutil.pid_exists(broker.process.pid) or psutil.Process(broker.process.pid).status() == "zombie"
    assert port_is_free(port)
    assert not (tmp_path / "pids" / "tansu.json").exists()


def test_refuses_a_busy_port(tmp_path):
    import socket

    import pytest

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(RuntimeError, match="in use"):
            start_broker(sock.getsockname()[1])
