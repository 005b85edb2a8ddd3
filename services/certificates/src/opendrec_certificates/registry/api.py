"""The registry over HTTP: parse, authorize, call one use case (registry/services.py), answer.

Holders act: the lifecycle routes take the organization acted for (`organizationId`, required for API users) and
refuse admins (they see everything and act for no one). Every mutation carries an `Idempotency-Key` header.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from opendrec_contracts.access import ADMIN, ROLES
from opendrec_kit import UoW
from opendrec_kit.auth import only_roles
from opendrec_kit.errors import ERROR_STATUSES, ApiError
from opendrec_kit.organizations import MAX_ID, Acting, acting_for
from opendrec_kit.paging import Page, page_query

from . import services
from .settings import RegistrySettings, registry_settings

MODULE = "CERTIFICATE_LOG_MANAGEMENT_CRUDL"
HOLDERS = tuple(r for r in ROLES if r != ADMIN)  # admins see all and act for no one

router = APIRouter(tags=["registry"])
Settings = Annotated[RegistrySettings, Depends(registry_settings)]
Paging = Annotated[Page, Depends(page_query(default_limit=100, max_limit=1000, what="items"))]
Reading = Annotated[Acting, acting_for(MODULE, "Read")]


async def _writing(uow: UoW, acting: Annotated[Acting, acting_for(MODULE, "Write")]) -> Acting:
    return await services.holder(uow, acting)


async def _updating(uow: UoW, acting: Annotated[Acting, acting_for(MODULE, "Update")]) -> Acting:
    return await services.holder(uow, acting)


# The holder acting, its organization resolved before the body or the Idempotency-Key is looked at.
Writing = Annotated[Acting, Depends(_writing)]
Updating = Annotated[Acting, Depends(_updating)]
Holder = only_roles(*HOLDERS)
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Yours: the same key with the same request answers the first answer again; with another, 409",
    ),
]
Id = Annotated[uuid.UUID, Path(description="The transfer's or lock's id")]
EnergyWh = Annotated[int, Field(ge=1, le=MAX_ID, description="Wh; the holding's first available serials go")]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TransferBody(Body):
    holdingId: uuid.UUID
    toOrganizationId: int = Field(ge=1, le=MAX_ID)
    energyWh: EnergyWh
    direct: bool = Field(default=False, description="At once, without the receiver accepting (where allowed)")


class RetirementBody(Body):
    holdingId: uuid.UUID
    energyWh: EnergyWh
    beneficiary: str = Field(min_length=1, max_length=500)
    location: str | None = Field(default=None, max_length=500)
    purpose: str = Field(min_length=1, max_length=500)
    reportingStart: AwareDatetime
    reportingEnd: AwareDatetime

    @model_validator(mode="after")
    def _period(self) -> RetirementBody:
        if self.reportingEnd <= self.reportingStart:
            raise ValueError("reportingEnd must be after reportingStart")
        return self


class LockBody(Body):
    holdingId: uuid.UUID
    energyWh: EnergyWh
    purpose: Literal["sale", "export", "auction"]


class ReleaseBody(Body):
    outcome: Literal["released", "exported"] = "released"


def _answer(answer: services.Answer) -> JSONResponse:
    status, body = answer
    return JSONResponse(body, status_code=status)


@router.post("/api/certificate/transfers", status_code=201, dependencies=[Holder], summary="Transfer energy")
async def transfer(body: TransferBody, uow: UoW, acting: Writing, key: IdempotencyKey, settings: Settings) -> Any:
    """Part or all of a holding to another organization: `pending` until the receiver accepts (or rejects, or the
    sender cancels); `direct` where REGISTRY_DIRECT_TRANSFERS allows it."""
    request = services.TransferRequest(body.holdingId, body.toOrganizationId, body.energyWh, body.direct)
    return _answer(await services.transfer(uow, acting, key, request, settings))


def _decision(decision: Literal["accept", "reject", "cancel"]) -> Callable[..., Coroutine[Any, Any, Any]]:
    async def decide(id: Id, uow: UoW, acting: Updating, key: IdempotencyKey, settings: Settings) -> Any:
        return _answer(await services.decide_transfer(uow, acting, key, id, decision, settings))

    decide.__name__ = f"{decision}_transfer"
    decide.__doc__ = {
        "accept": "The receiver takes the energy: the serials are its holding's from now on.",
        "reject": "The receiver refuses: the energy is the sender's again.",
        "cancel": "The sender takes a pending transfer back.",
    }[decision]
    return decide


for _decided in ("accept", "reject", "cancel"):
    router.add_api_route(
        f"/api/certificate/transfers/{{id}}/{_decided}",
        _decision(_decided),
        methods=["POST"],
        dependencies=[Holder],
        summary=f"{_decided.capitalize()} a pending transfer",
    )


@router.get("/api/certificate/transfers", summary="Transfers from or to the organization")
async def transfers(
    uow: UoW,
    acting: Reading,
    page: Paging,
    status: Annotated[
        Literal["pending", "accepted", "direct", "rejected", "cancelled"] | None, Query(description="only these")
    ] = None,
) -> dict[str, Any]:
    return await services.transfers(uow, acting, page, status)


@router.post("/api/certificate/retirements", status_code=201, dependencies=[Holder], summary="Retire (claim) energy")
async def retire(body: RetirementBody, uow: UoW, acting: Writing, key: IdempotencyKey, settings: Settings) -> Any:
    """Irreversible: the holding's first available serials are retired for the beneficiary."""
    request = services.RetirementRequest(
        body.holdingId,
        body.energyWh,
        body.beneficiary,
        body.purpose,
        body.reportingStart,
        body.reportingEnd,
        body.location or None,
    )
    return _answer(await services.retire(uow, acting, key, request, settings))


@router.post("/api/certificate/locks", status_code=201, dependencies=[Holder], summary="Lock energy")
async def lock(body: LockBody, uow: UoW, acting: Writing, key: IdempotencyKey, settings: Settings) -> Any:
    """Set energy aside for a sale, an export or an auction (OnSale, OnExporting, OnAuction) until released."""
    return _answer(await services.lock(uow, acting, key, body.holdingId, body.energyWh, body.purpose, settings))


@router.post("/api/certificate/locks/{id}/release", dependencies=[Holder], summary="Release a lock")
async def release(
    id: Id, uow: UoW, acting: Updating, key: IdempotencyKey, settings: Settings, body: ReleaseBody | None = None
) -> Any:
    """`released`: available again; `exported`: gone as the lock intended (Exported)."""
    outcome = body.outcome if body is not None else "released"
    return _answer(await services.release(uow, acting, key, id, outcome, settings))


@router.get("/api/certificate/holdings", summary="The organization's holdings")
async def holdings(uow: UoW, acting: Reading, page: Paging, settings: Settings) -> dict[str, Any]:
    """Each certificate part the organization holds energy of, with its balances (Wh) and serial ranges."""
    return await services.holdings(uow, acting, page, settings)


@router.get("/api/certificate-log/redemption-report", summary="Claims (retirements) of the organization")
async def redemption_report(uow: UoW, acting: Reading, settings: Settings) -> list[dict[str, Any]]:
    """D-REC's redemption report: one entry per claim, D-REC's fields first, then ours (`retirement`)."""
    return await services.redemption_report(uow, acting, settings)


# -- the REC inventory (shared/seeds/rec-inventory-api.txt): the seed's envelope for every answer --------------------


def seed_envelope(status: int, message: str, errors: Any = None) -> JSONResponse:
    return JSONResponse(
        {"Data": None, "Errors": errors, "Meta": None, "StatusCode": status, "Message": message}, status_code=status
    )


SEED_MESSAGES = {401: "Unauthorized", 403: "Forbidden", 404: "Not found"}


class SeedError(BaseModel):
    """The seed's envelope, as `seed_envelope` makes it."""

    Data: None
    Errors: Any
    Meta: None
    StatusCode: int
    Message: str


# Every refusal of the inventory (its own and the gateway's on /public/v2) comes in the seed's envelope.
SEED_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": SeedError, "description": description} for status, description in ERROR_STATUSES.items()
}


class SeedRoute(APIRoute):
    """Refusals of the inventory (token, permission, organization, validation) in the seed's envelope."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                return seed_envelope(exc.status, SEED_MESSAGES.get(exc.status, exc.message))
            except RequestValidationError as exc:
                errors = [{"Field": ".".join(str(p) for p in e["loc"][1:]), "Message": e["msg"]} for e in exc.errors()]
                return seed_envelope(400, "Bad request", errors)

        return answer


async def rec_inventory(
    uow: UoW,
    acting: Reading,
    settings: Settings,
    CurrentPage: Annotated[int, Query(ge=1, le=1_000_000, description="The page (1-based)")] = 1,
    ItemsPerPage: Annotated[int, Query(ge=1, le=1000, description="Items per page")] = 10,
    Registries: Annotated[list[str] | None, Query(description="Only these registries (repeat the key)")] = None,
    DeviceIds: Annotated[list[uuid.UUID] | None, Query(description="Only these devices (repeat the key)")] = None,
) -> Any:
    """The organization's holdings as the seed's items (quantities in MWh, 6 decimals); the seed's Meta."""
    page = await services.inventory(uow, acting, CurrentPage, ItemsPerPage, Registries or [], DeviceIds or [], settings)
    return page if page is not None else seed_envelope(404, SEED_MESSAGES[404])


router.add_api_route(
    "/public/v2/inventories/recs",
    rec_inventory,
    methods=["GET"],
    route_class_override=SeedRoute,
    responses=SEED_ERROR_RESPONSES,
    tags=["registry"],
    summary="REC inventory",
)
