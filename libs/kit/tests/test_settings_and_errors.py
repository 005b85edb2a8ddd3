import re

import httpx
import orjson
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ValidationError

from opendrec_kit import ApiError, ServiceSettings
from opendrec_kit.errors import envelope, envelope_bytes, install_error_handlers
from opendrec_kit.runtime import RequestIdMiddleware
from opendrec_kit.settings import CoreSettings


class WithSecret(ServiceSettings):
    SECRET_FIELDS = ("admin_password",)
    admin_password: str = "dev-only-change-me"


def test_dev_default_secret_is_fine_in_dev_and_refused_in_production():
    assert WithSecret(environment="dev").admin_password == "dev-only-change-me"
    with pytest.raises(ValidationError, match="ADMIN_PASSWORD still hold the dev default"):
        WithSecret(environment="production")
    assert WithSecret(environment="production", admin_password="s3cret-from-vault").environment == "production"


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("DATABASE_NAME_PREFIX", "prod_")
    s = ServiceSettings(service_name="charger-gateway")
    assert s.kafka_bootstrap_servers == "kafka:9092" and s.database_name == "prod_charger_gateway"
    with pytest.raises(ValidationError):
        ServiceSettings(database_name_prefix="bad-prefix; drop")


def test_core_settings_need_no_database_or_broker(monkeypatch):
    """What the gateway builds on: one worker-count name (HTTP_WORKERS), nothing of a service's storage."""
    monkeypatch.setenv("HTTP_WORKERS", "3")
    monkeypatch.setenv("IDENTITY_URL", "http://identity:8101/")
    core = CoreSettings()
    assert core.http_workers == 3 and core.jwks_url == "http://identity:8101/.well-known/jwks.json"
    assert not hasattr(core, "database_url") and not hasattr(core, "kafka_bootstrap_servers")
    assert ServiceSettings(service_name="devices").http_workers == 3

    class GatewayLike(CoreSettings):
        SECRET_FIELDS = ("admin_password",)
        admin_password: str = "dev-only-change-me"

    with pytest.raises(ValidationError, match="ADMIN_PASSWORD still hold the dev default"):
        GatewayLike(environment="production")


def test_envelope_bytes_are_the_envelope_with_a_millisecond_timestamp():
    body = orjson.loads(envelope_bytes(502, "The readings service is unreachable", "/api/meter-reads", "r-1"))
    assert list(body) == ["statusCode", "error", "message", "path", "timestamp", "requestId", "success"]
    assert body["error"] == "Bad Gateway" and body["requestId"] == "r-1"
    assert body["success"] is False  # the reference D-REC API's flag, read by its clients
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["timestamp"])
    detailed = envelope(400, "Invalid", "/x", "r-2", details=[{"field": "name"}])
    assert list(detailed)[-1] == "details" and detailed["details"] == [{"field": "name"}]


class Item(BaseModel):
    name: str
    capacity: float


def app() -> FastAPI:
    a = FastAPI()
    install_error_handlers(a)

    @a.post("/items")
    async def create(item: Item) -> dict:
        if item.name == "taken":
            raise ApiError(409, "An item with this name exists", {"name": item.name})
        if item.name == "boom":
            raise RuntimeError("bug")
        return {"ok": True}

    a.add_middleware(RequestIdMiddleware)
    return a


@pytest.fixture
async def client():
    transport = httpx.ASGITransport(app=app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def test_validation_errors_are_400_with_every_field(client):
    r = await client.post("/items", json={"capacity": "lots"})
    body = r.json()
    assert r.status_code == 400 and body["statusCode"] == 400 and body["error"] == "Bad Request"
    assert {d["field"] for d in body["details"]} == {"name", "capacity"}
    assert body["path"] == "/items" and body["requestId"] == r.headers["x-request-id"]


async def test_malformed_json_is_400(client):
    r = await client.post("/items", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["statusCode"] == 400


@pytest.mark.parametrize("depth", [5_000, 200_000])
async def test_json_nested_past_the_parsers_depth_is_400_not_a_crash(client, depth):
    # A body of brackets only (200,000 deep is 400 KB, under the gateway's 1 MiB): the parser's recursion bound
    # refuses it in the envelope; the process goes on.
    for body in ("[" * depth + "]" * depth, '{"name":' * depth + "1" + "}" * depth):
        r = await client.post("/items", content=body.encode(), headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["message"] == "There was an error parsing the body", r.text
    assert (await client.post("/items", json={"name": "after", "capacity": 1})).json() == {"ok": True}


async def test_domain_error_unknown_route_and_method(client):
    r = await client.post("/items", json={"name": "taken", "capacity": 1}, headers={"x-request-id": "abc"})
    assert (
        r.status_code == 409
        and r.json()["message"] == "An item with this name exists"
        and r.json()["requestId"] == "abc"
    )
    r = await client.get("/nowhere")
    assert r.status_code == 404 and r.json()["message"] == "No route GET /nowhere"
    r = await client.get("/items")
    assert r.status_code == 405 and "not allowed" in r.json()["message"]


async def test_a_bug_is_500_in_the_envelope_without_internals(client):
    r = await client.post("/items", json={"name": "boom", "capacity": 1})
    assert r.status_code == 500 and r.json()["statusCode"] == 500 and "bug" not in r.text
