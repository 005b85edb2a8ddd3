"""The AsyncAPI document: generated from the contracts and the services' code, committed, served by the gateway."""

import json
import re

import httpx
import pytest

from opendrec_cli import asyncapi
from opendrec_contracts import EVENTS, all_topics
from opendrec_gateway.app import Gateway
from opendrec_gateway.settings import Settings


def test_the_committed_document_is_what_the_contracts_make_now():
    assert asyncapi.check(), "contracts or subscriptions changed: run `opendrec asyncapi --write` and commit it"


def test_every_topic_with_its_key_payload_producers_and_consumers():
    doc = asyncapi.document()
    assert doc["asyncapi"] == "3.0.0"
    assert set(doc["channels"]) == set(all_topics())  # every topic and its DLQ
    for event_type, model in EVENTS.items():
        channel = doc["channels"][event_type]
        assert channel["x-key"] == model.KEY
        message = doc["components"]["messages"][model.__name__]
        assert message["payload"]["properties"]["payload"] == {"$ref": f"#/components/schemas/{model.__name__}"}
        assert message["payload"]["properties"]["type"]["const"] == event_type
        assert channel["x-producers"], f"{event_type} has no producer"
    # what the architecture says, read from the code
    assert doc["channels"]["read.submitted"]["x-producers"] == ["charger-gateway"]
    assert doc["channels"]["read.ingested"]["x-producers"] == ["readings"]
    assert doc["channels"]["read.ingested"]["x-consumers"] == ["certificates"]
    assert "readings" in doc["channels"]["device.registered"]["x-consumers"]
    assert "gateway" in doc["channels"]["token.revoked"]["x-consumers"]
    receive = doc["operations"]["certificates.receive.read.ingested"]
    assert receive["action"] == "receive"
    assert receive["bindings"]["kafka"]["groupId"]["const"] == "certificates.read.ingested"
    assert doc["operations"]["readings.send.read.ingested"]["action"] == "send"


def _pointer(doc, ref: str):
    node = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_reference_resolves_inside_the_document():
    doc = asyncapi.document()
    refs = re.findall(r'"\$ref": "([^"]+)"', json.dumps(doc))
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        _pointer(doc, ref)  # KeyError if dangling


@pytest.mark.asyncio(loop_scope="session")
async def test_the_gateway_serves_it_as_json_and_as_a_page_without_scripts():
    gateway = Gateway(Settings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gateway") as http:
        for path in ("/asyncapi", "/asyncapi.json"):
            r = await http.get(path)
            assert r.status_code == 200 and r.headers["content-type"] == "application/json"
            assert r.json() == asyncapi.document()
        r = await http.get("/asyncapi.html")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        page = r.text
        for event_type in EVENTS:
            assert f"<code>{event_type}</code>" in page
        assert "<script" not in page and "https://" not in page and "http://" not in page  # nothing from a CDN
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert (await http.post("/asyncapi")).status_code == 405
