"""The integrator's client helper, over real HTTP against a running identity."""

import asyncio
import contextlib
import uuid

import pytest
import uvicorn

from opendrec_devstack.net import free_port
from opendrec_identity.app import build
from opendrec_identity.client import ApiUserClient
from opendrec_kit.testing import eventually, started

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@contextlib.asynccontextmanager
async def served(runtime):
    """The started runtime's app on a real port (its lifespan already ran in `started`)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(runtime.app, host="127.0.0.1", port=port, lifespan="off", log_config=None))
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: asyncio.sleep(0, server.started), timeout=10)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_the_helper_gets_a_token_and_calls_the_api(identity_settings):
    runtime = build(identity_settings)
    async with started(runtime) as client, served(runtime) as base_url:
        tag = uuid.uuid4().hex[:8]
        registered = await client.post(
            "/api/user/register",
            json={
                "firstName": "Int",
                "lastName": "Egrator",
                "email": f"helper-{tag}@example.org",
                "organizationType": "ApiUser",
                "password": "Helper123",
                "confirmPassword": "Helper123",
                "orgName": f"Helper-{tag}",
                "secretKey": "HL0001",
            },
        )
        created = registered.json()
        api = ApiUserClient(base_url, created["apiUserId"], created["privateKey"])
        assert "PRIVATE" not in repr(api)

        status, me = await asyncio.to_thread(api.call, "GET", "/api/user/me")
        assert status == 200, me
        assert (me["id"], me["role"]) == (created["id"], "ApiUser")
        first = api.token()
        status, _ = await asyncio.to_thread(
            api.call, "GET", "/api/Organization/apiuser/all_organization", None, {"limit": 5}
        )
        assert status == 403  # no module approved yet: the helper passes the API's answer through
        assert api.token() == first  # reused, not fetched again

        # Asking for modules and their approval revoke the current token: the helper gets a new one by itself.
        status, _ = await asyncio.to_thread(
            api.call, "POST", "/api/permission/module/apiuser/request", [{"moduleName": "ORGANIZATION_MANAGEMENT_CRUDL", "permissions": ["Read"]}]
        )  # fmt: skip
        assert status == 200
        login = await client.post(
            "/api/auth/login",
            json={"username": identity_settings.admin_email, "password": identity_settings.admin_password},
        )
        admin = {"Authorization": f"Bearer {login.json()['accessToken']}"}
        approved = await client.put(
            f"/api/permission/module/verify/ByAdmin/{created['apiUserId']}", headers=admin, json={"status": "Active"}
        )
        assert approved.status_code == 200, approved.text
        status, organizations = await asyncio.to_thread(
            api.call, "GET", "/api/Organization/apiuser/all_organization", None, {"limit": 5}
        )
        assert status == 200 and organizations["totalCount"] == 0
        assert api.token() != first

        wrong = ApiUserClient(base_url, str(uuid.uuid4()), created["privateKey"])
        with pytest.raises(Exception, match="401"):
            await asyncio.to_thread(wrong.token)
