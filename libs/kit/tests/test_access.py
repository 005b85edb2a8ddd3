"""Who may call what: the OpenAPI access description, role checks, and the organization a request acts for."""

import uuid

import pytest
from fastapi import APIRouter

from opendrec_contracts import OrganizationRegistered
from opendrec_kit import ApiError, ServiceRuntime, ServiceSettings
from opendrec_kit.auth import CurrentPrincipal, Principal, only_roles, permission
from opendrec_kit.organizations import (
    acting_organization,
    api_user_organizations,
    find_organization,
    visible_organizations,
)
from opendrec_kit.testing import TokenIssuer, eventually, publish_events, settings_for_test, started

pytestmark = pytest.mark.asyncio(loop_scope="session")


def build(settings: ServiceSettings) -> ServiceRuntime:
    runtime = ServiceRuntime(settings, title="access sample")
    router = APIRouter()

    @router.get("/open")
    async def open_to_all() -> dict:
        return {"ok": True}

    @router.get("/mine")
    async def mine(user: CurrentPrincipal) -> dict:
        return {"user": user.user_id}

    @router.post("/devices")
    async def write_device(user: Principal = permission("DEVICE_MANAGEMENT_CRUDL", "Write")) -> dict:
        return {"user": user.user_id}

    @router.get("/admin/things")
    async def admin_things(user: Principal = only_roles("Admin")) -> dict:
        return {"user": user.user_id}

    runtime.include_router(router)
    runtime.follow_organizations()
    return runtime


@pytest.fixture(scope="module")
def issuer() -> TokenIssuer:
    return TokenIssuer()


@pytest.fixture(scope="module")
async def service(postgres_url, kafka_bootstrap, issuer):
    runtime = build(settings_for_test(ServiceSettings, postgres_url, kafka_bootstrap, service_name="access"))
    issuer.trust_in(runtime)
    async with started(runtime) as client:
        yield runtime, client


def operation(runtime: ServiceRuntime, method: str, path: str) -> dict:
    return runtime.app.openapi()["paths"][path][method]


async def test_openapi_lists_what_each_endpoint_needs(service):
    runtime, _ = service
    assert operation(runtime, "get", "/open")["x-access"] == "public"
    mine = operation(runtime, "get", "/mine")
    assert mine["x-access"] == "signed-in" and "User" in mine["x-roles"] and "x-permissions" not in mine
    write = operation(runtime, "post", "/devices")
    assert write["x-permissions"] == [{"module": "DEVICE_MANAGEMENT_CRUDL", "action": "Write"}]
    # Buyers and plain users only read devices; DeviceOwners write them
    assert {"Admin", "OrganizationAdmin", "DeviceOwner", "ApiUser"} == set(write["x-roles"])
    assert "Write on DEVICE_MANAGEMENT_CRUDL" in write["description"]
    assert operation(runtime, "get", "/admin/things")["x-roles"] == ["Admin"]


async def test_role_and_permission_checks_answer_401_and_403(service, issuer):
    _, client = service
    assert (await client.get("/open")).status_code == 200
    assert (await client.get("/mine")).status_code == 401
    buyer = issuer.headers(role="Buyer", organization_type="Buyer", permissions={"DEVICE_MANAGEMENT_CRUDL": "R"})
    denied = await client.post("/devices", headers=buyer)
    assert denied.status_code == 403 and "DEVICE_MANAGEMENT_CRUDL" in denied.json()["message"]
    owner = issuer.headers(role="DeviceOwner", permissions={"DEVICE_MANAGEMENT_CRUDL": "RWU"})
    assert (await client.post("/devices", headers=owner)).status_code == 200
    refused = await client.get("/admin/things", headers=owner)
    assert refused.status_code == 403 and "Admin" in refused.json()["message"]
    assert (await client.get("/admin/things", headers=issuer.headers(role="Admin"))).status_code == 200


def principal(role: str, organization_id: int, organization_type: str, api_user_id: str | None = None) -> Principal:
    return Principal(
        user_id=1,
        organization_id=organization_id,
        organization_type=organization_type,
        role=role,
        email="a@b.org",
        api_user_id=api_user_id,
    )


async def error_of(call) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await call
    return caught.value


async def test_an_api_user_acts_for_its_own_organizations_only(service, kafka_bootstrap):
    runtime, _ = service
    base = 900_000_000 + uuid.uuid4().int % 1_000_000 * 10
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    developer, buyer, others = base + 1, base + 2, base + 3
    await publish_events(
        kafka_bootstrap,
        [
            OrganizationRegistered(
                organization_id=developer, name=f"dev {base}", organization_type="Developer", api_user_id=mine
            ),
            OrganizationRegistered(
                organization_id=buyer, name=f"buy {base}", organization_type="Buyer", api_user_id=mine
            ),
            OrganizationRegistered(
                organization_id=others, name=f"oth {base}", organization_type="Developer", api_user_id=theirs
            ),
        ],
    )
    await eventually(lambda: api_user_organizations(runtime.pool, theirs))
    await eventually(lambda: api_user_organizations(runtime.pool, mine, "Buyer"))
    api_user = principal("ApiUser", base, "ApiUser", mine)

    assert await acting_organization(runtime.pool, api_user, developer, organization_type="Developer") == developer
    assert await api_user_organizations(runtime.pool, mine) == [developer, buyer]
    assert await visible_organizations(runtime.pool, api_user, None, organization_type="Developer") == [developer]

    missing = await error_of(acting_organization(runtime.pool, api_user, None, organization_type="Developer"))
    assert missing.status == 400 and "organizationId is required" in missing.message
    wrong_type = await error_of(acting_organization(runtime.pool, api_user, buyer, organization_type="Developer"))
    assert wrong_type.status == 403 and "Buyer organization" in wrong_type.message
    foreign = await error_of(acting_organization(runtime.pool, api_user, others))
    assert foreign.status == 403 and "not one of your organizations" in foreign.message
    unknown = await error_of(acting_organization(runtime.pool, api_user, base + 9))
    assert unknown.status == 403


async def test_users_act_for_their_own_organization_and_admins_for_any(service, kafka_bootstrap):
    runtime, _ = service
    base = 910_000_000 + uuid.uuid4().int % 1_000_000 * 10
    await publish_events(
        kafka_bootstrap,
        [
            OrganizationRegistered(organization_id=base + 1, name=f"dev {base}", organization_type="Developer"),
        ],
    )
    owner = principal("DeviceOwner", 42, "Developer")
    assert await acting_organization(runtime.pool, owner, None) == 42
    assert await acting_organization(runtime.pool, owner, 42, organization_type="Developer") == 42
    other = await error_of(acting_organization(runtime.pool, owner, base + 1))
    assert other.status == 403 and "own organization (42)" in other.message
    buyer = await error_of(
        acting_organization(runtime.pool, principal("Buyer", 43, "Buyer"), None, organization_type="Developer")
    )
    assert buyer.status == 403

    admin = principal("Admin", 1, "Admin")
    await eventually(lambda: find_organization(runtime.pool, base + 1))
    assert await acting_organization(runtime.pool, admin, base + 1, organization_type="Developer") == base + 1
    assert await visible_organizations(runtime.pool, admin, None) is None
    absent = await error_of(acting_organization(runtime.pool, admin, base + 7))
    assert absent.status == 404
