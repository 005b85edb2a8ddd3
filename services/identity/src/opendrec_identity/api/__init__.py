"""Identity's HTTP adapters, one module per area: each route parses, authorizes (its `permission(...)`,
`only_roles(...)` or `CurrentPrincipal` dependency), calls one use case of `services` and answers."""

from __future__ import annotations

from fastapi import APIRouter

from . import accounts, api_users, dead_letters, grants, internal, invitations, organizations, users

# In this order: the OpenAPI document lists the operations as they are included.
ROUTERS: list[APIRouter] = [
    accounts.router,
    organizations.router,
    invitations.router,
    api_users.router,
    grants.router,
    users.router,  # after accounts: GET /api/user/me is matched before GET /api/user/{id}
    dead_letters.router,
    internal.router,
]
