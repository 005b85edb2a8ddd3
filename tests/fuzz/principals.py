"""Who the fuzzer calls as, made through the public API only (via the gateway), before any fuzzing starts:
an Admin, a Developer (its organization's OrganizationAdmin), a Buyer, an approved API user holding every
module, and nobody (anonymous). Each signed-in principal gets two sessions: one the fuzzer uses throughout,
and a spare one for the operations that end a session (logout, key rotation), fuzzed last. A few real things
(a device, a read, a reservation) give the generated small ids something to find."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from opendrec_contracts.access import API_USER_MODULES
from opendrec_devstack.drec_samples import device_body, registration_body, reservation_body, unique_tag
from opendrec_identity.client import ASSERTION_TYPE, client_assertion

ALL_ACTIONS = ["Read", "Write", "Update", "Delete"]


@dataclass
class Principal:
    role: str  # "anonymous", "Developer", "Buyer", "ApiUser", "Admin"
    token: str | None = None
    spare_token: str | None = None  # a second session, for the operations that end one

    def headers(self, *, spare: bool = False) -> dict[str, str]:
        token = self.spare_token if spare else self.token
        return {"Authorization": f"Bearer {token}"} if token else {}


def _ok(resp: httpx.Response, *statuses: int) -> Any:
    assert resp.status_code in statuses, (
        f"{resp.request.method} {resp.request.url.path} -> {resp.status_code}: {resp.text[:1000]}"
    )
    return resp.json() if resp.content else None


def _login(http: httpx.Client, email: str, password: str) -> str:
    return str(_ok(http.post("/api/auth/login", json={"username": email, "password": password}), 200)["accessToken"])


def _organization_user(http: httpx.Client, kind: str) -> Principal:
    body = registration_body(kind, email=f"fuzz-{kind.lower()}-{unique_tag()}@example.org")
    _ok(http.post("/api/user/registerWithOrganization", json=body), 201)
    return Principal(kind, _login(http, body["email"], body["password"]), _login(http, body["email"], body["password"]))


def _api_user_token(http: httpx.Client, api_user_id: str, private_key: str) -> str:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion(api_user_id, private_key),
    }
    return str(_ok(http.post("/api/auth/token", data=form), 200)["access_token"])


def _api_user(http: httpx.Client, admin: Principal) -> Principal:
    body = registration_body("ApiUser", email=f"fuzz-apiuser-{unique_tag()}@example.org")
    created = _ok(http.post("/api/user/register", json=body), 201)
    api_user_id, key = created["apiUserId"], created["privateKey"]
    headers = {"Authorization": f"Bearer {_api_user_token(http, api_user_id, key)}"}
    wanted = [{"moduleName": m, "permissions": ALL_ACTIONS} for m in API_USER_MODULES]
    _ok(http.post("/api/permission/module/apiuser/request", headers=headers, json=wanted), 200)
    approval = {"status": "Active"}
    _ok(http.put(f"/api/permission/module/verify/ByAdmin/{api_user_id}", headers=admin.headers(), json=approval), 200)
    # the approval revoked the earlier token
    return Principal("ApiUser", _api_user_token(http, api_user_id, key), _api_user_token(http, api_user_id, key))


def _eventually(call: Any, timeout_s: float = 30.0) -> httpx.Response:
    """Retry a call while the services still learn of each other's things from events (404/400/403)."""
    deadline = time.monotonic() + timeout_s
    while True:
        resp: httpx.Response = call()
        if resp.status_code < 400 or time.monotonic() > deadline:
            return resp
        time.sleep(0.3)


def _things(http: httpx.Client, developer: Principal, buyer: Principal) -> None:
    """A device of the Developer with a read, reserved by the Buyer."""
    external_id = f"FUZZ_{unique_tag()}"
    device = _ok(http.post("/api/device", json=device_body(external_id), headers=developer.headers()), 201)
    read = {  # a day of 2024, after the device's commissioning
        "type": "History",
        "unit": "Wh",
        "reads": [
            {"starttimestamp": "2024-01-01T00:00:00.000Z", "endtimestamp": "2024-01-02T00:00:00.000Z", "value": 1000}
        ],
    }
    _ok(
        _eventually(lambda: http.post(f"/api/meter-reads/new/{external_id}", json=read, headers=developer.headers())),
        201,
    )
    reservation = reservation_body(f"Fuzz reservation {unique_tag()}", [device["id"]])
    _ok(_eventually(lambda: http.post("/api/device-group", json=reservation, headers=buyer.headers())), 201)


def make_principals(gateway_url: str, admin_email: str, admin_password: str) -> dict[str, Principal]:
    with httpx.Client(base_url=gateway_url, timeout=60) as http:
        admin = Principal("Admin", _login(http, admin_email, admin_password), _login(http, admin_email, admin_password))
        developer = _organization_user(http, "Developer")
        buyer = _organization_user(http, "Buyer")
        api_user = _api_user(http, admin)
        _things(http, developer, buyer)
    return {p.role: p for p in (Principal("anonymous"), developer, buyer, api_user, admin)}
