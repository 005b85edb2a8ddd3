"""Every public operation, read from each service's OpenAPI, and the expected answer per role."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from opendrec_contracts.access import ACTION_LETTERS, MODULES, ROLES, roles_granted

SERVICES = ("identity", "devices", "readings", "reservations", "certificates", "charger-gateway")
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
AUTH_STATUSES = (401, 403)


@dataclass(frozen=True)
class Operation:
    service: str
    method: str  # upper case
    path: str  # template, e.g. /api/device/{id}
    access: str | None  # x-access: "public" | "signed-in" (None: missing, itself a failure)
    roles: tuple[str, ...]  # x-roles
    permissions: tuple[tuple[str, str], ...]  # x-permissions as (module, action)
    path_params: tuple[str, ...]
    query_params: tuple[str, ...]
    required_query: tuple[str, ...]
    body_types: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


async def collect(service_urls: dict[str, str]) -> list[Operation]:
    """The operations every service publishes in /openapi.json (routes left out of the schema,
    like /healthz, are not public API)."""
    found = []
    async with httpx.AsyncClient(timeout=10) as http:
        for service in SERVICES:
            resp = await http.get(f"{service_urls[service]}/openapi.json")
            assert resp.status_code == 200, f"{service} /openapi.json -> {resp.status_code}"
            for path, item in resp.json()["paths"].items():
                for method, op in item.items():
                    if method not in METHODS:
                        continue
                    params = op.get("parameters", [])
                    found.append(
                        Operation(
                            service=service,
                            method=method.upper(),
                            path=path,
                            access=op.get("x-access"),
                            roles=tuple(op.get("x-roles") or ()),
                            permissions=tuple((p["module"], p["action"]) for p in op.get("x-permissions") or ()),
                            path_params=tuple(p["name"] for p in params if p["in"] == "path"),
                            query_params=tuple(p["name"] for p in params if p["in"] == "query"),
                            required_query=tuple(p["name"] for p in params if p["in"] == "query" and p.get("required")),
                            body_types=tuple((op.get("requestBody") or {}).get("content", {})),
                        )
                    )
    return found


def declaration_problems(op: Operation) -> list[str]:
    """What is wrong with an operation's access declaration itself."""
    if op.access not in ("public", "signed-in"):
        return [f"x-access is {op.access!r}: every operation must say public or signed-in"]
    if op.access == "signed-in":
        unknown = set(op.roles) - set(ROLES)
        if not op.roles:
            return ["signed-in but x-roles is empty: nobody may call it"]
        if unknown:
            return [f"x-roles names unknown roles {sorted(unknown)}"]
        wrong = [p for p in op.permissions if p[0] not in MODULES or p[1] not in ACTION_LETTERS]
        if wrong:
            return [f"x-permissions names unknown modules or actions {wrong}"]
        # x-roles may narrow what the permissions grant by default (only_roles), never widen it
        granted = set(ROLES)
        for module, action in op.permissions:
            granted &= {*roles_granted(module, action), "ApiUser"}
        if set(op.roles) - granted:
            return [
                f"x-roles lists {sorted(set(op.roles) - granted)}, whom {list(op.permissions)} do not grant by default"
            ]
    elif op.roles or op.permissions:
        return ["public, yet it lists x-roles or x-permissions"]
    return []


def expected(op: Operation, role: str | None, exception: dict[str, Any] | None, *, approved: bool = True) -> str:
    """'401', '403' or 'pass' (anything but 401/403: authorization let the request through).
    `approved`: for an ApiUser, whether an admin approved its modules (x-roles lists ApiUser for a
    permission-guarded operation only once approved)."""
    allowed = exception["roles"] if exception and "roles" in exception else op.roles
    if op.access == "public":
        return "pass"
    if role is None:
        return "401"
    if role == "ApiUser" and op.permissions and not approved:
        return "403"
    return "pass" if role in allowed else "403"


def verdict(status: int) -> str:
    return str(status) if status in AUTH_STATUSES else "pass"
