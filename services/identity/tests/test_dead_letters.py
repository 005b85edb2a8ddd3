"""Dead letters for admins, against the real broker: listed with their errors, replayed to their original topic
once, recorded with who replayed them; refused to anyone else and for letters that are not there."""

import uuid

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from opendrec_contracts import envelope_for
from opendrec_contracts.testing import device_registered
from opendrec_kit.testing import wait_for_event

from .accounts import headers_for, new_organization

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture
async def admin(client, identity_settings) -> dict[str, str]:
    return await headers_for(client, identity_settings.admin_email, identity_settings.admin_password)


async def dead_letter(bootstrap: str, error: str) -> tuple[str, dict]:
    """A device.registered event set aside as a consumer does: on device.registered.dlq with its error headers."""
    event = device_registered(uuid.uuid4().int % 10**9)
    envelope = envelope_for(event, "devices")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        headers = [
            ("x-error-type", b"ValueError"),
            ("x-error-message", error.encode()),
            ("x-original-topic", b"device.registered"),
            ("x-attempts", b"3"),
            ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ]
        await producer.send_and_wait(
            "device.registered.dlq", envelope.model_dump_json().encode(), key=event.key().encode(), headers=headers
        )
    finally:
        await producer.stop()
    return str(envelope.event_id), orjson.loads(envelope.model_dump_json())


async def find(client, admin, event_id: str) -> dict:
    listing = await client.get("/api/admin/dead-letters?topic=device.registered&limit=100", headers=admin)
    assert listing.status_code == 200, listing.text
    body = listing.json()
    pages = [body]
    for number in range(2, body["totalPages"] + 1):
        more = await client.get(
            f"/api/admin/dead-letters?topic=device.registered&limit=100&pageNumber={number}", headers=admin
        )
        pages.append(more.json())
    [letter] = [d for page in pages for d in page["deadLetters"] if d["eventId"] == event_id]
    return letter


async def test_an_admin_sees_a_dead_letter_with_its_error_and_replays_it_once(client, admin, kafka_bootstrap):
    error = f"a bug {uuid.uuid4().hex[:6]}"
    event_id, _ = await dead_letter(kafka_bootstrap, error)
    letter = await find(client, admin, event_id)
    assert letter["topic"] == "device.registered.dlq" and letter["originalTopic"] == "device.registered"
    assert (letter["eventType"], letter["errorType"], letter["errorMessage"]) == (
        "device.registered",
        "ValueError",
        error,
    )
    assert letter["attempts"] == "3" and letter["replayedAt"] is None

    position = {k: letter[k] for k in ("topic", "partition", "offset")}
    resp = await client.post("/api/admin/dead-letters/replay", json={"deadLetters": [position]}, headers=admin)
    assert resp.status_code == 200, resp.text
    assert resp.json()["replayed"] == 1
    [replayed] = resp.json()["deadLetters"]
    assert replayed["eventId"] == event_id and replayed["replayedAt"] is not None and replayed["replayedBy"] >= 1

    _, headers = await wait_for_event(kafka_bootstrap, "device.registered", lambda e: e["event_id"] == event_id)
    assert headers["x-replayed-from"] == f"device.registered.dlq/{letter['partition']}/{letter['offset']}"
    assert headers["traceparent"].startswith("00-0af7651916cd43dd")  # its trace goes on
    assert "x-error-type" not in headers
    assert (await find(client, admin, event_id))["replayedAt"] == replayed["replayedAt"]


async def test_replaying_a_letter_that_is_not_there_replays_nothing(client, admin, kafka_bootstrap):
    event_id, _ = await dead_letter(kafka_bootstrap, "another bug")
    letter = await find(client, admin, event_id)
    real = {k: letter[k] for k in ("topic", "partition", "offset")}
    absent = {**real, "offset": 2**61}
    resp = await client.post("/api/admin/dead-letters/replay", json={"deadLetters": [real, absent]}, headers=admin)
    assert resp.status_code == 404
    body = resp.json()
    assert "nothing replayed" in body["message"]
    assert [d["offset"] for d in body["details"]] == [2**61]
    assert (await find(client, admin, event_id))["replayedAt"] is None


async def test_only_admins_and_only_known_queues(client, admin):
    _, headers = await new_organization(client)
    assert (await client.get("/api/admin/dead-letters", headers=headers)).status_code == 403
    position = {"topic": "device.registered.dlq", "partition": 0, "offset": 0}
    replay = await client.post("/api/admin/dead-letters/replay", json={"deadLetters": [position]}, headers=headers)
    assert replay.status_code == 403
    unknown = await client.get("/api/admin/dead-letters?topic=no.such.topic", headers=admin)
    assert unknown.status_code == 400 and "no.such.topic" in unknown.json()["message"]
    empty = await client.post("/api/admin/dead-letters/replay", json={"deadLetters": []}, headers=admin)
    assert empty.status_code == 400
