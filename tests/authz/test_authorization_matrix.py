"""The authorization matrix: every public operation (from each service's OpenAPI) called through the gateway
as every role, anonymously, and with another organization's ids; the answer must match what the operation
declares (x-access / x-roles), and nobody may see another organization's things.

Expected answer per (operation, caller), from the operation's OpenAPI:
  x-access public                  -> never 401/403, for anybody
  signed-in, anonymous             -> 401
  signed-in, role not in x-roles   -> 403
  signed-in, role in x-roles       -> anything but 401/403 (400/404/409: authorization let it through)
(One ApiUser is approved for every module, so it is expected wherever x-roles lists it; another, never
approved, must be refused wherever a module permission guards the operation.) Path ids are the
caller's own things, so an allowed caller is not refused for ownership. Any 5xx is a failure too.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
import pytest_asyncio

from .calls import Call, build
from .operations import Operation, collect, declaration_problems, expected, verdict
from .principals import Caller, api_user_token, login
from .world import Side, World, build_world

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

# Operations whose answer legitimately differs from their x-roles: {"METHOD /path": {"roles": (roles that
# pass), "why": "..."}}. Keep it short: a role-only rule belongs in the route (opendrec_kit.auth.only_roles),
# which puts it in x-roles; any other difference is a bug to fix, not an exception.
EXCEPTIONS: dict[str, dict[str, Any]] = {}

# Operations that end a session: called last (a logout with a second session of the caller; the key
# rotation with the caller's own token, which for the API user revokes all its tokens).
SESSION_ENDING = ("POST /api/auth/logout", "POST /api/user/apiuser/rotate-key")

# Path/query parameters naming something an organization owns.
ORG_OWNED = {
    "organizationId",
    "orgId",
    "groupId",
    "id",
    "externalId",
    "reservation_id",
    "groupUid",
    "invitationId",
    "userId",
    "chargerId",
    "jobId",
}
# Operations taking another organization (or its thing) in the body.
ORG_OWNED_IN_BODY = ("POST /api/charger", "POST /api/device", "POST /api/device-group", "POST /api/buyer-reservation")
# Listings meant to show other organizations' things.
MARKETPLACE = {
    "GET /api/device/ungrouped/buyerreservation": "buyers look for any developer's unreserved devices",
}

CONCURRENCY = 16


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def http(platform):
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=30) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def operations(platform) -> list[Operation]:
    found = await collect(platform.service_urls)
    assert len({op.service for op in found}) == 6, "every service publishes operations"
    return found


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(http, platform) -> World:
    return await build_world(http, platform)


def message(resp: httpx.Response) -> str:
    try:
        answer = resp.json()
    except ValueError:
        return resp.text[:160]
    return str(answer.get("message", answer) if isinstance(answer, dict) else answer)[:160]


async def send(http: httpx.AsyncClient, call: Call, caller: Caller, token: str | None = None) -> httpx.Response:
    kwargs = dict(call.kwargs)
    headers = {**({"Authorization": f"Bearer {token}"} if token else caller.headers), **kwargs.pop("headers", {})}
    return await http.request(call.method, call.path, params=call.params, headers=headers, **kwargs)


async def gather(jobs, limit: int = CONCURRENCY) -> list:
    gate = asyncio.Semaphore(limit)

    async def one(job):
        async with gate:
            return await job

    return await asyncio.gather(*(one(j) for j in jobs))


def report(title: str, problems: list[str]) -> str:
    return f"{len(problems)} {title}:\n  " + "\n  ".join(sorted(problems))


def not_routed(resp: httpx.Response) -> bool:
    return resp.status_code == 404 and message(resp).startswith("No route")


# -- the declaration ------------------------------------------------------------------------------------------


async def test_every_operation_declares_its_access_and_the_gateway_routes_it(http, operations):
    problems = [f"{op.key} ({op.service}): {p}" for op in operations for p in declaration_problems(op)]
    # Anonymous calls with made-up ids: enough to see whether the gateway has a route.
    anonymous = Caller("anonymous", None)
    made_up = Side(
        developer_org=1,
        buyer_org=1,
        device_id=1,
        external_id="authz-route-probe",
        reservation_id=1,
        reservation_uid=str(uuid.uuid4()),
        reservation_name="",
    )
    calls = [(op, build(op, anonymous, None, victim=made_up)) for op in operations]
    answers = await gather(send(http, call, anonymous) for _, call in calls)
    problems += [
        f"{op.key} ({op.service}): the gateway has no route for it ({message(r)})"
        for (op, _), r in zip(calls, answers, strict=False)
        if not_routed(r)
    ]
    assert not problems, report("operations without a proper access declaration or route", problems)


async def test_the_gateway_publishes_one_document_of_every_operation_and_its_access(http, operations):
    resp = await http.get("/openapi.json")
    assert resp.status_code == 200, resp.text
    published = {(m.upper(), p): op for p, ops in resp.json()["paths"].items() for m, op in ops.items()}
    problems = []
    for op in operations:
        listed = published.get((op.method, op.path))
        if listed is None:
            problems.append(f"{op.key}: missing from the gateway's /openapi.json")
        elif (listed.get("x-access"), tuple(listed.get("x-roles", ()))) != (op.access, op.roles):
            problems.append(f"{op.key}: the gateway's document says {listed.get('x-access')} {listed.get('x-roles')}")
    assert len(published) == len(operations), "the gateway lists exactly the services' operations"
    assert not problems, report("gateway OpenAPI differs from the services'", problems)


# -- every operation as every role ---------------------------------------------------------------------------


def mismatch(op: Operation, caller: Caller, call: Call, resp: httpx.Response) -> str | None:
    want = expected(op, caller.role, EXCEPTIONS.get(op.key), approved=caller.extra.get("approved", True))
    got = verdict(resp.status_code)
    if resp.status_code >= 500:
        return f"{op.key} as {caller.name}: {resp.status_code} {message(resp)} (server error; sent {call.method} {call.path})"
    if not_routed(resp):
        return f"{op.key} as {caller.name}: no gateway route"
    if want == got:
        return None
    refused = (
        "an API user holds no module before approval"
        if caller.extra.get("approved") is False and op.permissions
        else f"{caller.name} is not in x-roles {list(op.roles)}"
    )
    why = {
        "401": "anonymous must get 401",
        "403": refused,
        "pass": "public operation" if op.access == "public" else f"{caller.name} is in x-roles {list(op.roles)}",
    }[want]
    return f"{op.key} as {caller.name}: expected {want if want != 'pass' else 'not 401/403'} ({why}), got {resp.status_code} {message(resp)}"


async def throwaway_token(http: httpx.AsyncClient, caller: Caller) -> str | None:
    """A second session of the caller, for calls that end a session."""
    if caller.role is None:
        return None
    if caller.role == "ApiUser":
        return await api_user_token(http, caller)
    return caller.spare_token or await login(http, caller.email, caller.password)


async def test_every_role_reaches_exactly_the_operations_it_may(http, operations, world):
    pairs = [(op, caller) for op in operations for caller in world.matrix_callers]
    ordinary = [(op, c) for op, c in pairs if op.key not in SESSION_ENDING]
    calls = [build(op, c, world) for op, c in ordinary]
    answers = await gather(send(http, call, c) for (_, c), call in zip(ordinary, calls, strict=False))
    problems = [
        m for (op, c), call, r in zip(ordinary, calls, answers, strict=False) if (m := mismatch(op, c, call, r))
    ]

    # Session-ending operations last: logouts each with a second session of the caller, then the key
    # rotations with the callers' own tokens (for the API user that revokes every token: the very last call).
    logouts = [(op, c) for op, c in pairs if op.key == "POST /api/auth/logout"]
    rotations = [(op, c) for op, c in pairs if op.key in SESSION_ENDING and op.key != "POST /api/auth/logout"]

    async def end_session(op: Operation, caller: Caller, token: str | None) -> tuple[Call, httpx.Response]:
        call = build(op, caller, world)
        return call, await send(http, call, caller, token)

    for batch, spare in ((logouts, True), (rotations, False)):
        tokens = [await throwaway_token(http, c) if spare else None for _, c in batch]
        answers = await gather(end_session(op, c, token) for (op, c), token in zip(batch, tokens, strict=False))
        problems += [m for (op, c), (call, r) in zip(batch, answers, strict=False) if (m := mismatch(op, c, call, r))]
    for (_, caller), (_, resp) in zip(rotations, answers, strict=False):
        if caller is world.api_user and resp.status_code == 200:  # carry on with the new key
            caller.private_key = resp.json()["privateKey"]
            caller.token = await api_user_token(http, caller)
    assert not problems, report(f"authorization mismatches in {len(pairs)} calls", problems)


# -- another organization's things ------------------------------------------------------------------------


def takes_org_owned_id(op: Operation) -> bool:
    return op.access == "signed-in" and (
        bool(ORG_OWNED & set(op.path_params + op.query_params)) or op.key in ORG_OWNED_IN_BODY
    )


def leaked(resp: httpx.Response, secrets: list[str]) -> list[str]:
    text = resp.text.lower()
    return [s for s in secrets if s and s.lower() in text]


async def still_intact(http: httpx.AsyncClient, world: World) -> list[str]:
    """What the other organizations' calls must not have changed."""
    problems = []
    first = world.first
    device = await http.get(f"/api/device/{first.device_id}", headers=world.org_admin.headers)
    if device.status_code != 200 or device.json()["address"] != "donno":
        problems.append(
            f"device {first.device_id} of the first organization changed or vanished: {device.status_code} {message(device)}"
        )
    chargers = await http.get("/api/charger", headers=world.org_admin.headers)
    if first.charger_id not in chargers.text:
        problems.append(f"charger link {first.charger_id} of the first organization vanished")
    reservation = await http.get(f"/api/device-group/{first.reservation_id}", headers=world.buyer.headers)
    if reservation.status_code != 200 or not reservation.json().get("reservationActive"):
        problems.append(
            f"reservation {first.reservation_id} of the first Buyer organization ended or vanished: {reservation.status_code} {message(reservation)}"
        )
    members = await http.get("/api/Organization/users", params={"limit": 100}, headers=world.org_admin.headers)
    roles = {u["email"]: u["role"] for u in members.json().get("users", [])} if members.status_code == 200 else {}
    if roles.get(world.user.email) != "User" or roles.get(world.device_owner.email) != "DeviceOwner":
        problems.append(f"members of the first organization changed: {roles or message(members)}")
    return problems


async def test_no_one_reaches_another_organizations_things(http, operations, world):
    victims: list[tuple[str, Side]] = [("the first organizations'", world.first), ("the API user's", world.api)]
    cases = [
        (op, caller, label, side)
        for op in operations
        if takes_org_owned_id(op)
        for caller in world.outsiders
        for label, side in victims
    ]
    calls = [build(op, caller, world, victim=side) for op, caller, _, side in cases]
    answers = await gather(send(http, call, caller) for (_, caller, _, _), call in zip(cases, calls, strict=False))
    problems = []
    for (op, caller, label, side), call, resp in zip(cases, calls, answers, strict=False):
        where = f"{op.key} as {caller.name} with {label} ids ({call.method} {call.path} {call.params or ''})"
        if resp.status_code not in (403, 404):
            problems.append(f"{where}: expected 403 or 404, got {resp.status_code} {message(resp)}")
        if found := leaked(resp, side.secrets):
            problems.append(f"{where}: the answer shows {found}")
    problems += await still_intact(http, world)
    assert not problems, report(f"cross-organization problems in {len(cases)} calls", problems)


async def test_listings_show_only_the_callers_organization(http, operations, world):
    # The owners' own listings do show the things looked for, so their absence below means something.
    controls = [
        (world.org_admin, "/api/device/my", {}, world.first.external_id),
        (world.org_admin, "/api/Organization/users", {}, world.user.email),
        (world.org_admin, "/api/invitation", {}, world.device_owner.email),
        (world.org_admin, "/api/charger", {}, world.first.charger_id),
        (world.buyer, "/api/device-group/my", {}, world.first.reservation_name),
        (world.buyer, "/api/buyer-reservation", {}, world.first.reservation_name),
        (
            world.api_user,
            "/api/Organization/apiuser/all_organization",
            {},
            world.api_developer.extra["organization_name"],
        ),
        (world.api_user, "/api/device/my", {"organizationId": world.api.developer_org}, world.api.external_id),
        (world.api_user, "/api/buyer-reservation", {"organizationId": world.api.buyer_org}, world.api.reservation_name),
    ]
    problems = []
    for caller, path, params, needle in controls:
        resp = await http.get(path, params=params, headers=caller.headers)
        if resp.status_code != 200 or needle.lower() not in resp.text.lower():
            problems.append(
                f"control: GET {path} {params or ''} as {caller.name} should list {needle!r}: {resp.status_code} {message(resp)}"
            )

    listings = [
        op
        for op in operations
        if op.method == "GET"
        and op.access == "signed-in"
        and not op.path_params
        and not op.required_query
        and op.key not in MARKETPLACE
    ]
    secrets = [
        *world.first.secrets,
        world.first.external_id,
        world.first.charger_id,
        *world.api.secrets,
        world.api.external_id,
    ]
    cases = [(op, caller) for op in listings for caller in world.outsiders]
    answers = await gather(http.get(op.path, headers=caller.headers) for op, caller in cases)
    for (op, caller), resp in zip(cases, answers, strict=False):
        if resp.status_code >= 500:
            problems.append(f"{op.key} as {caller.name}: {resp.status_code} {message(resp)}")
        if found := leaked(resp, secrets):
            problems.append(f"{op.key} as {caller.name}: lists another organization's {found}")
    assert not problems, report(f"listing problems ({len(cases)} listings as outsiders)", problems)
