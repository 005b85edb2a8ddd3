"""`acting_for`: the caller and the organization they name, in one route dependency that reads in
OpenAPI and in the access rule exactly as `organizationId: OrganizationQuery` + `permission(...)`."""

from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from opendrec_kit.auth import Principal, TokenVerifier, access_of, permission
from opendrec_kit.errors import install_error_handlers
from opendrec_kit.organizations import Acting, OrganizationQuery, acting_for, organization_query
from opendrec_kit.testing import TokenIssuer

MODULE = "DEVICE_MANAGEMENT_CRUDL"


def app_with_both() -> tuple[FastAPI, APIRouter]:
    app = FastAPI()
    install_error_handlers(app)
    router = APIRouter()

    @router.get("/pair")
    async def pair(organizationId: OrganizationQuery = None, user: Principal = permission(MODULE, "Read")) -> dict:
        return {"user": user.user_id, "organization": organizationId}

    @router.get("/acting")
    async def acting(acting: Acting = acting_for(MODULE, "Read")) -> dict:
        return {"user": acting.user.user_id, "organization": acting.organization_id}

    @router.get("/filter")
    async def filtered(
        organizationId: Annotated[int | None, organization_query("only this organization's users")] = None,
    ) -> dict:
        return {"organization": organizationId}

    app.include_router(router)
    return app, router


def test_acting_for_reads_as_the_pair_in_openapi_and_access() -> None:
    app, router = app_with_both()
    paths = app.openapi()["paths"]
    assert paths["/acting"]["get"]["parameters"] == paths["/pair"]["get"]["parameters"]
    routes = {r.path: r for r in router.routes if isinstance(r, APIRoute)}
    assert access_of(routes["/acting"]) == access_of(routes["/pair"])
    assert access_of(routes["/acting"])["x-permissions"] == [{"module": MODULE, "action": "Read"}]


def test_organization_query_with_another_description() -> None:
    (parameter,) = app_with_both()[0].openapi()["paths"]["/filter"]["get"]["parameters"]
    assert parameter["description"] == "only this organization's users"
    assert parameter["schema"]["anyOf"][0] == {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}


@pytest.mark.asyncio(loop_scope="session")
async def test_acting_for_gives_the_caller_and_the_organization_named() -> None:
    app, _ = app_with_both()
    issuer = TokenIssuer()
    verifier = TokenVerifier("http://127.0.0.1:9/unused")
    verifier.add_key(issuer.jwk())
    app.state.token_verifier = verifier
    reader = {"Authorization": f"Bearer {issuer.token(user_id=7, permissions={MODULE: 'R'})}"}
    stranger = {"Authorization": f"Bearer {issuer.token(user_id=8)}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        assert (await client.get("/acting", headers=reader)).json() == {"user": 7, "organization": None}
        named = await client.get("/acting?organizationId=42", headers=reader)
        assert named.json() == {"user": 7, "organization": 42}
        assert (await client.get("/acting?organizationId=0", headers=reader)).status_code == 400
        assert (await client.get("/acting", headers=stranger)).status_code == 403
        assert (await client.get("/acting")).status_code == 401
