"""Routes for the other services, never routed by the gateway nor in the public document: read-your-writes
(opendrec_kit.owners). A service that does not know a device yet (device.registered has not reached it) asks
here on its caller's behalf, with the caller's token, and takes the answer as it takes the event.

A malformed question (no id, more than MAX_IDS, an id or organizationId outside 1..2^63-1, no externalId) is a
422 here: it is another service's mistake, not a client's (the public routes' 400)."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, ValidationError

from opendrec_kit import ApiError, CurrentPrincipal, UoW
from opendrec_kit.organizations import MAX_ID

from . import domain, services

MAX_IDS = 1000  # device ids one question names

router = APIRouter(include_in_schema=False)

Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Q = TypeVar("Q", bound=BaseModel)


class DeviceIds(BaseModel):
    id: list[Id] = Field(min_length=1, max_length=MAX_IDS)


class ExternalIdOf(BaseModel):
    organizationId: Id
    externalId: str = Field(min_length=1, max_length=domain.MAX_EXTERNAL_ID)


def query(model: type[Q]) -> Any:
    """Route dependency: the query string as `model` (repeated names as lists), or a 422 naming each bad field."""
    lists = {name for name, f in model.model_fields.items() if getattr(f.annotation, "__origin__", None) is list}

    async def parsed(request: Request) -> Q:
        params = request.query_params
        given = {name: params.getlist(name) if name in lists else params.get(name) for name in model.model_fields}
        try:
            return model.model_validate({k: v for k, v in given.items() if v not in (None, [])})
        except ValidationError as exc:
            details = [
                {"field": ".".join(str(p) for p in e["loc"]) or "query", "message": e["msg"], "where": "query"}
                for e in exc.errors()
            ]
            fields = ", ".join(sorted({d["field"].split(".")[0] for d in details}))
            raise ApiError(422, f"Invalid question: check {fields}", details) from None

    return Depends(parsed)


@router.get("/internal/devices")
async def device_states(uow: UoW, principal: CurrentPrincipal, asked: DeviceIds = query(DeviceIds)) -> dict[str, Any]:
    """device.registered with the current state of each device named (`?id=1&id=2`) that the caller sees;
    the others are left out (`{"events": []}` when none)."""
    return await services.device_states(uow, principal, asked.id)


@router.get("/internal/devices/by-external-id")
async def device_state_by_external_id(
    uow: UoW, principal: CurrentPrincipal, asked: ExternalIdOf = query(ExternalIdOf)
) -> dict[str, Any]:
    """device.registered with the current state of the organization's device of this externalId, for a caller
    who may read that organization's devices; else 404."""
    return await services.device_state_by_external_id(uow, principal, asked.organizationId, asked.externalId)
