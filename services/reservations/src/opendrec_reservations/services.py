"""The use cases of the reservations service: each runs in the kit's unit of work.

Adapters (api.py, handlers.py, the expiry worker in app.py) parse, authorize and call one of these; the rules
are in domain.py, the SQL in store.py. Answers are plain dicts in the D-REC shape.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from opendrec_contracts import (
    CertificateIssued,
    DeviceDeleted,
    DeviceRegistered,
    ReservationCreated,
    ReservationEnded,
    ReservationUpdated,
)
from opendrec_kit import ApiError, Principal, UnitOfWork, watermarks
from opendrec_kit.models import AwareInstant
from opendrec_kit.organizations import (
    ADMIN,
    API_USER,
    MAX_ID,
    acting_organization,
    api_user_organizations,
    visible_organizations,
)
from opendrec_kit.owners import Known, OwnerServices
from opendrec_kit.owners import answer as owners_answer
from opendrec_kit.paging import Page, total_pages
from opendrec_kit.periods import FREQUENCIES
from opendrec_kit.timestamps import iso, iso_exact

from . import domain, store
from .settings import Settings

log = logging.getLogger(__name__)
BUYER = "Buyer"


class NewReservation(BaseModel):
    """The D-REC "Create Reservation" payload, field names unchanged."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=200)
    deviceIds: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(min_length=1, max_length=10_000)
    targetCapacityInMegaWattHour: Decimal | None = Field(default=None, gt=0, le=10**12)  # in Wh it must fit a bigint
    reservationStartDate: AwareInstant
    reservationEndDate: AwareInstant
    continueWithReservationIfOneOrMoreDevicesUnavailableForReservation: bool = False
    continueWithReservationIfTargetCapacityIsLessThanDeviceTotalCapacityBetweenDuration: bool = True
    authorityToExceed: bool = True
    frequency: Annotated[str, Field(description="hourly, daily, weekly, monthly or quarterly")]
    # API users name the buyer organization they act for
    organizationId: int | None = Field(default=None, ge=1, le=MAX_ID)
    reservationExpiryDate: AwareInstant | None = Field(
        default=None, description="No certificate is issued from then on; default: the end plus the configured days"
    )

    @field_validator("frequency")
    @classmethod
    def _frequency(cls, value: str) -> str:
        if value.lower() not in FREQUENCIES:
            raise ValueError(f"frequency must be one of {', '.join(FREQUENCIES)}")
        return value.lower()

    @model_validator(mode="after")
    def _window(self) -> NewReservation:
        if self.reservationEndDate <= self.reservationStartDate:
            raise ValueError("reservationEndDate must be after reservationStartDate")
        return self


class ReservationChange(BaseModel):
    """The D-REC "update device group" payload (PATCH /api/buyer-reservation/{id}): only the fields given change."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    targetCapacityInMegaWattHour: Decimal | None = Field(default=None, gt=0, le=10**12)
    reservationEndDate: AwareInstant | None = None
    authorityToExceed: bool | None = None
    reservationExpiryDate: AwareInstant | None = None


class EndReservationDate(BaseModel):
    """The D-REC "end reservation" payload, its field name as D-REC spells it."""

    model_config = ConfigDict(extra="ignore")

    endresavationdate: AwareInstant | None = Field(
        default=None, description="The reservation's end date, confirming which end is meant (D-REC); none: end it now"
    )


class ReservationFilters(BaseModel):
    """D-REC's listing filters (UnreservedDeviceGroupsFilterDTO), names unchanged; every filter given must hold.
    List filters take repeated values and/or commas (?country=IND,KEN)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    name: str | None = Field(default=None, max_length=200, description="Part of the reservation's name, any case")
    country: list[Annotated[str, Field(max_length=400)]] | None = Field(
        default=None, max_length=50, description="ISO 3166 alpha-3 codes: the group's countries include them all"
    )
    fuelCode: list[Annotated[str, Field(max_length=400)]] | None = Field(
        default=None, max_length=50, description="I-REC fuel codes (e.g. ES100): the group's fuels include them all"
    )
    start_date: datetime | None = Field(
        default=None, description="With end_date: reservations whose window lies within [start_date, end_date]"
    )
    end_date: datetime | None = Field(default=None, description="With start_date (UTC unless an offset is given)")
    reservationActive: str | None = Field(
        default=None, max_length=20, description="All, Active (not ended) or Deactive (ended)"
    )
    offTaker: list[Annotated[str, Field(max_length=400)]] | None = Field(
        default=None, max_length=50, description="Refused (400): devices' off-takers are not known here"
    )
    sdgbenefit: list[Annotated[str, Field(max_length=400)]] | None = Field(
        default=None, max_length=50, description="Refused (400): devices' SDG benefits are not known here"
    )

    @field_validator("start_date", "end_date")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    @field_validator("country")
    @classmethod
    def _countries(cls, value: list[str] | None) -> list[str]:
        return list(domain.filter_values(value, "country", domain.COUNTRY_CODE))

    @field_validator("fuelCode")
    @classmethod
    def _fuels(cls, value: list[str] | None) -> list[str]:
        return list(domain.filter_values(value, "fuelCode", domain.FUEL_CODE))

    @field_validator("reservationActive")
    @classmethod
    def _activity(cls, value: str | None) -> str | None:
        domain.activity(value)
        return value

    def listing_filter(self) -> domain.ListingFilter:
        """The filter a listing applies; 400 naming each filter that can't be applied."""
        given = {
            k: ",".join(v) if v else None for k, v in (("offTaker", self.offTaker), ("sdgbenefit", self.sdgbenefit))
        }
        _refuse(
            400, domain.refuse_unknown_attributes(given) + domain.refuse_filter_window(self.start_date, self.end_date)
        )
        return domain.ListingFilter(
            name=self.name or None,
            countries=tuple(self.country or ()),
            fuel_codes=tuple(self.fuelCode or ()),
            start=self.start_date,
            end=self.end_date,
            active=domain.activity(self.reservationActive),
        )


def bounds(settings: Settings) -> domain.Bounds:
    return domain.Bounds(
        max_future=timedelta(days=settings.reservation_max_future_days),
        expiry_after_end=timedelta(days=settings.reservation_expiry_days),
    )


# -- answers ------------------------------------------------------------------------------------


def _answer(row: Any, now: datetime) -> dict[str, Any]:
    """One reservation as D-REC shows a device group."""
    target = row["target_capacity_wh"]
    state = domain.state_of(row["reservation_end"], row["ended_at"], row["end_reason"], now)
    return {
        "id": row["id"],
        "devicegroup_uid": str(row["uid"]),
        "name": row["name"],
        "organizationId": row["buyer_organization_id"],
        "buyerId": row["buyer_user_id"],
        "deviceIds": list(row["device_ids"]),
        # The window's boundaries (a client's instants, or the moment a buyer ended it) exactly: µs kept.
        "reservationStartDate": iso_exact(row["reservation_start"]),
        "reservationEndDate": iso_exact(row["reservation_end"]),
        "targetCapacityInMegaWattHour": float(Decimal(target) / domain.WH_PER_MWH) if target is not None else None,
        "authorityToExceed": row["authority_to_exceed"],
        "frequency": row["frequency"],
        "reservationActive": state.state == "active",
        "state": state.state,
        "endedAt": iso_exact(state.ended_at) if state.ended_at else None,
        "endReason": state.end_reason,
        "createdAt": iso(row["created_at"]),
        "reservationExpiryDate": iso_exact(row["reservation_expiry"]) if row["reservation_expiry"] else None,
        "targetVolumeInMegaWattHour": float(Decimal(target) / domain.WH_PER_MWH) if target is not None else None,
        **domain.group_attributes(
            list(row["country_codes"]),
            list(row["fuel_codes"]),
            list(row["device_type_codes"]),
            row["capacity_kw"],
            list(row["commissioning_dates"]),
            now,
        ),
    }


def _refuse(status: int, problems: list[domain.Problem]) -> None:
    if problems:
        raise ApiError(status, "; ".join(m for _, m in problems), [{"field": f, "message": m} for f, m in problems])


# The reservation's terms: columns reservation.created and reservation.updated carry under the same name.
_TERMS = (
    "name",
    "buyer_organization_id",
    "reservation_start",
    "reservation_end",
    "target_capacity_wh",
    "authority_to_exceed",
    "reservation_expiry",
)


def _terms(row: Any) -> dict[str, Any]:
    """The reservation's terms as reservation.created and reservation.updated both carry them."""
    return {"reservation_id": row["id"], "reservation_uid": row["uid"], **{column: row[column] for column in _TERMS}}


def _updated_event(row: Any) -> ReservationUpdated:
    return ReservationUpdated(**_terms(row), revision=row["revision"], device_ids=list(row["device_ids"]))


def _ended_event(row: Any) -> ReservationEnded:
    """reservation.ended, the same for both ways of ending (the sweep, the buyer)."""
    return ReservationEnded(
        reservation_id=row["id"],
        reservation_uid=row["uid"],
        buyer_organization_id=row["buyer_organization_id"],
        device_ids=list(row["device_ids"]),
        ended_at=row["ended_at"],
        reason=row["end_reason"],
    )


# -- who may touch which reservations -------------------------------------------------------------


async def _acting_buyers(conn: asyncpg.Connection, user: Principal, organization_id: int | None) -> list[int] | None:
    """The buyer organizations a request that acts on one reservation may touch (None: any). An API user must
    name the organization it acts for (400 otherwise); an admin naming none may act on any reservation."""
    if user.role == API_USER:
        return [await acting_organization(conn, user, organization_id, organization_type=BUYER)]
    return await visible_organizations(conn, user, organization_id, organization_type=BUYER)


async def _visible_reservation(
    conn: asyncpg.Connection, reservation_id: int, organizations: list[int] | None
) -> asyncpg.Record:
    row = await store.reservation(conn, reservation_id)
    if row is None or (organizations is not None and row["buyer_organization_id"] not in organizations):
        raise ApiError(404, f"No reservation {reservation_id}")  # another's: as if absent, so ids leak nothing
    return row


# -- use cases ----------------------------------------------------------------------------------------


async def create_reservation(
    uow: UnitOfWork,
    settings: Settings,
    owners: OwnerServices,
    user: Principal,
    body: NewReservation,
    organization_id: int | None,
) -> dict[str, Any]:
    """Reserve the available devices of `body` for the buyer organization acted for;
    announces reservation.created. 400 when none, or some with continueWith...Unavailable false, is available,
    or (continueWith...TargetCapacity... false) when they can't produce the target in the window. Devices not
    heard of yet are asked of the devices service first (read-your-writes: `learn_devices`)."""
    refusal = domain.refuse_buyer(user.role, user.organization_id, user.organization_type, organization_id)
    if refusal:
        raise ApiError(400, refusal)
    limits = bounds(settings)
    await learn_devices(uow, owners, user, body.deviceIds)
    async with uow:
        buyer_organization_id = await acting_organization(uow.conn, user, organization_id, organization_type=BUYER)
        window = domain.Window(body.reservationStartDate, body.reservationEndDate)
        named_expiry = body.reservationExpiryDate
        _refuse(400, domain.refuse_dates(window.start, window.end, named_expiry, datetime.now(UTC), limits))
        known = await store.lock_devices(uow.conn, body.deviceIds)
        selection = domain.select_devices(body.deviceIds, known, window)
        refused = [{"deviceId": d, "reason": why} for d, why in selection.refused.items()]
        if not selection.accepted or (
            refused and not body.continueWithReservationIfOneOrMoreDevicesUnavailableForReservation
        ):
            raise ApiError(400, "Some devices are not available for this reservation", refused)
        target = domain.target_wh(body.targetCapacityInMegaWattHour)
        if not body.continueWithReservationIfTargetCapacityIsLessThanDeviceTotalCapacityBetweenDuration:
            capacity_kw = sum(known[d].capacity_kw for d in selection.accepted)
            unreachable = domain.refuse_target(capacity_kw, window, target)
            if unreachable:
                raise ApiError(400, domain.TARGET_UNREACHABLE, unreachable)
        inserted = await store.insert_reservation(
            uow.conn,
            uid=uuid.uuid4(),
            name=body.name,
            buyer_organization_id=buyer_organization_id,
            buyer_user_id=user.user_id,
            window=window,
            frequency=body.frequency,
            target_capacity_wh=target,
            authority_to_exceed=body.authorityToExceed,
            expiry=domain.expiry_of(window.end, named_expiry, limits),
            device_ids=selection.accepted,
        )
        row = await store.reservation(uow.conn, inserted["id"])
        assert row is not None  # inserted just now, in this transaction
        uow.record(ReservationCreated(**_terms(row), device_ids=selection.accepted, frequency=row["frequency"]))
    # the devices in the order asked for, as before
    return {**_answer({**row, "device_ids": selection.accepted}, datetime.now(UTC)), "unavailableDevices": refused}


async def end_reservation(
    uow: UnitOfWork,
    user: Principal,
    reservation_id: int,
    organization_id: int | None,
    end_date: datetime | None = None,
) -> dict[str, Any]:
    """The buyer ends its reservation now (reason ended_by_buyer); announces reservation.ended. 409 if it ended.
    `end_date` (D-REC's endresavationdate), when given, must be the reservation's end date: D-REC ends a
    reservation only when told its end date, and ends it at once (400 otherwise: nothing ends)."""
    async with uow:
        organizations = await _acting_buyers(uow.conn, user, organization_id)
        # Locked first, then read: the sweep skips it meanwhile, and we decide on its latest state.
        await store.lock_reservation(uow.conn, reservation_id)
        row = await _visible_reservation(uow.conn, reservation_id, organizations)
        now = await watermarks.decision_time(uow.conn)  # certificates wait for this moment's watermark
        refusal = domain.refuse_end(reservation_id, row["reservation_end"], row["ended_at"], row["end_reason"], now)
        if refusal:
            raise ApiError(409, refusal)
        if end_date is not None and end_date != row["reservation_end"]:
            message = (
                f"endresavationdate {iso_exact(end_date)} is not the end date of reservation {reservation_id} "
                f"({iso_exact(row['reservation_end'])}): name its end date to end it now"
            )
            raise ApiError(400, message, [{"field": "endresavationdate", "message": message}])
        ended = await store.end_reservation(uow.conn, reservation_id, now, "ended_by_buyer")
        assert ended is not None  # locked and not ended: refuse_end said so
        ended_row = {**row, **ended}
        uow.record(_ended_event(ended_row))
    return _answer(ended_row, now)


async def change_reservation(
    uow: UnitOfWork,
    settings: Settings,
    user: Principal,
    reservation_id: int,
    organization_id: int | None,
    change: ReservationChange,
) -> dict[str, Any]:
    """New name, end date, target, authority to exceed or expiry for a reservation that has not ended;
    announces reservation.updated (the full terms, one revision more). The end never moves before the start of
    the current certification period (409); moved later, its devices must be free until then (409 otherwise,
    each refused device in the details). An expiry not given stays, unless the new end passes it: then it
    becomes the new end plus the configured days."""
    limits = bounds(settings)
    async with uow:
        organizations = await _acting_buyers(uow.conn, user, organization_id)
        await store.lock_reservation(uow.conn, reservation_id)  # the sweep and an end wait for this change
        row = await _visible_reservation(uow.conn, reservation_id, organizations)
        now = await watermarks.decision_time(uow.conn)  # certificates wait for this moment's watermark
        refusal = domain.refuse_end(reservation_id, row["reservation_end"], row["ended_at"], row["end_reason"], now)
        if refusal:
            raise ApiError(409, f"This device groups reservation has already ended: {refusal}")
        if all(getattr(change, f) is None for f in ReservationChange.model_fields):
            raise ApiError(
                400,
                "Nothing to change: give name, targetCapacityInMegaWattHour, reservationEndDate, "
                "authorityToExceed or reservationExpiryDate",
            )
        end = change.reservationEndDate or row["reservation_end"]
        if change.reservationEndDate is not None:
            bad_end = domain.refuse_new_end(row["reservation_start"], end, row["frequency"], now)
            if bad_end:
                status, message = bad_end
                raise ApiError(status, message, [{"field": "reservationEndDate", "message": message}])
        expiry = change.reservationExpiryDate
        if expiry is None and row["reservation_expiry"] is not None and row["reservation_expiry"] < end:
            expiry = domain.expiry_of(end, None, limits)
        elif expiry is None:
            expiry = row["reservation_expiry"]
        # Only what changes is bounded again (the start may lie more than 3 years back by now).
        _refuse(400, domain.refuse_ahead(end, change.reservationExpiryDate, now, limits))
        if end > row["reservation_end"]:
            later = domain.Window(row["reservation_end"], end)
            known = await store.lock_devices(uow.conn, list(row["device_ids"]), besides=reservation_id)
            busy = domain.select_devices(list(row["device_ids"]), known, later).refused
            if busy:
                raise ApiError(
                    409,
                    f"reservationEndDate {iso_exact(end)}: some devices are reserved by another reservation "
                    f"after {iso_exact(row['reservation_end'])}",
                    [{"deviceId": d, "reason": why} for d, why in busy.items()],
                )
        target = (
            domain.target_wh(change.targetCapacityInMegaWattHour)
            if change.targetCapacityInMegaWattHour is not None
            else row["target_capacity_wh"]
        )
        await store.change_reservation(
            uow.conn,
            reservation_id,
            name=change.name if change.name is not None else row["name"],
            end=end,
            target_capacity_wh=target,
            authority_to_exceed=(
                change.authorityToExceed if change.authorityToExceed is not None else row["authority_to_exceed"]
            ),
            expiry=expiry,
            changed_at=now,
        )
        changed = await store.reservation(uow.conn, reservation_id)
        assert changed is not None  # locked above
        uow.record(_updated_event(changed))
    return _answer(changed, now)


async def delete_reservation(
    uow: UnitOfWork, user: Principal, reservation_id: int, organization_id: int | None
) -> dict[str, Any]:
    """D-REC's remove: the reservation vanishes, but only while nothing can have been certified against it (its
    window has not begun, or it was ended before it began); 409 otherwise (end it instead). Announced as
    reservation.ended at this moment (before its start: it held nothing, so certificates, devices and readings
    drop it) unless it had ended already. Answers the reservation as it was at its deletion."""
    async with uow:
        organizations = await _acting_buyers(uow.conn, user, organization_id)
        await store.lock_reservation(uow.conn, reservation_id)  # the sweep, an end and a change wait
        row = await _visible_reservation(uow.conn, reservation_id, organizations)
        now = await watermarks.decision_time(uow.conn)  # certificates wait for this moment's watermark
        state = domain.state_of(row["reservation_end"], row["ended_at"], row["end_reason"], now)
        refusal = domain.refuse_delete(reservation_id, row["reservation_start"], state.ended_at, now)
        if refusal:
            raise ApiError(409, refusal)
        if row["ended_at"] is None:
            row = {**row, "ended_at": now, "end_reason": "deleted", "status": "Ended"}
            uow.record(_ended_event(row))
        await store.delete_reservation(uow.conn, reservation_id)
    return {**_answer(row, now), "deleted": True}


async def reach_target(uow: UnitOfWork, event: CertificateIssued) -> None:
    """certificate.issued with target_reached: the reservation (no authority to exceed its target) ends at the end of
    the period that reached it (reason target_reached); announces reservation.ended. Nothing when it ended already
    (a redelivery, or its buyer or the sweep was first)."""
    if not event.target_reached:
        return
    async with uow:
        if not await store.lock_reservation(uow.conn, event.reservation_id):
            return
        row = await store.reservation(uow.conn, event.reservation_id)
        if row is None or row["ended_at"] is not None:
            return
        at = domain.target_end(row["reservation_start"], row["reservation_end"], event.period_end)
        ended = await store.end_reservation(uow.conn, event.reservation_id, at, "target_reached")
        if ended is not None:
            uow.record(_ended_event({**row, **ended}))
    log.info("reservation target reached", extra={"reservation_id": event.reservation_id})


async def end_expired(uow: UnitOfWork, now: datetime, batch_size: int) -> int:
    """End one batch of reservations whose end date is at or before `now` (reason expired, ended at their end
    date); announces reservation.ended for each. Returns how many it ended. Safe to run in several processes
    at once: each reservation is ended by exactly one of them (rows held by another are skipped)."""
    async with uow:
        rows = await store.end_expired(uow.conn, now, batch_size)
        uow.record_all(_ended_event(r) for r in rows)
    if rows:
        log.info("expired reservations ended", extra={"count": len(rows)})
    return len(rows)


async def reservation(
    uow: UnitOfWork, user: Principal, reservation_id: int, organization_id: int | None, *, acting: bool
) -> dict[str, Any]:
    """One reservation the caller may see. `acting`: the D-REC path where an API user must name its organization."""
    async with uow.reading() as r:
        if acting:
            organizations = await _acting_buyers(r.conn, user, organization_id)
        else:
            organizations = await visible_organizations(r.conn, user, organization_id, organization_type=BUYER)
        row = await _visible_reservation(r.conn, reservation_id, organizations)
    return _answer(row, datetime.now(UTC))


async def reservations_holding_devices(
    uow: UnitOfWork, user: Principal, organization_id: int | None, page: Page
) -> dict[str, Any]:
    """A developer's view: the reservations that hold (or held) its organization's devices, newest first, each with
    the organization's devices in it (never the other organizations'), its window and its state."""
    now = datetime.now(UTC)
    async with uow.reading() as r:
        # Any organization the caller acts for: one that owns no device (a Buyer's) simply has none held.
        organization = await acting_organization(r.conn, user, organization_id)
        total = await store.count_reservations_holding_devices_of(r.conn, organization)
        rows = await store.reservations_holding_devices_of(r.conn, organization, page.limit, page.offset)
    held = []
    for row in rows:
        state = domain.state_of(row["reservation_end"], row["ended_at"], row["end_reason"], now)
        held.append(
            {
                "id": row["id"],
                "devicegroup_uid": str(row["uid"]),
                "name": row["name"],
                "deviceIds": list(row["device_ids"]),
                "reservationStartDate": iso_exact(row["reservation_start"]),
                "reservationEndDate": iso_exact(row["reservation_end"]),
                "frequency": row["frequency"],
                "state": state.state,
                "endedAt": iso_exact(state.ended_at) if state.ended_at else None,
            }
        )
    return {
        "organizationId": organization,
        "reservations": held,
        "currentPage": page.number,
        "totalPages": total_pages(total, page.limit),
        "totalCount": total,
    }


async def reservations(
    uow: UnitOfWork,
    user: Principal,
    page: Page,
    organization_id: int | None,
    api_user_id: uuid.UUID | None = None,
    *,
    mine: bool = False,
    filters: ReservationFilters | None = None,
) -> dict[str, Any]:
    """A page of the reservations the caller may list, newest first, with totals; only those `filters` let through.

    `api_user_id`: an admin lists that API user's Buyer organizations' (an API user may name only itself).
    `mine`: the caller's own ("my"): an admin naming no organization sees its own organization's, not everyone's.
    The page is under `deviceGroups` and, as D-REC answers it, `groupedData` (with `pageNumber` = `currentPage`).
    """
    conditions = filters.listing_filter() if filters is not None else domain.ListingFilter()
    now = datetime.now(UTC)
    async with uow.reading() as r:
        organizations: list[int] | None
        if api_user_id is not None and user.role == ADMIN:
            theirs = await api_user_organizations(r.conn, str(api_user_id), BUYER)
            organizations = [o for o in theirs if organization_id in (None, o)]
        elif api_user_id is not None and not (
            user.role == API_USER and domain.same_api_user(user.api_user_id, api_user_id)
        ):
            raise ApiError(
                403, "apiuserId names another API user: only an admin may list another API user's reservations"
            )
        elif mine and user.role == ADMIN and organization_id is None:
            organizations = [user.organization_id]
        else:
            organizations = await visible_organizations(r.conn, user, organization_id, organization_type=BUYER)
        total = await store.count_reservations(r.conn, organizations, conditions, now)
        rows = await store.reservations_page(r.conn, organizations, conditions, now, page.limit, page.offset)
    groups = [_answer(row, now) for row in rows]
    return {
        "deviceGroups": groups,
        "groupedData": groups,
        "currentPage": page.number,
        "pageNumber": page.number,
        "totalPages": total_pages(total, page.limit),
        "totalCount": total,
    }


async def current_information(
    uow: UnitOfWork, user: Principal, uid: uuid.UUID, organization_id: int | None, page: Page
) -> dict[str, Any]:
    """Where an active reservation's certification stands, in D-REC's shape: the devices whose output before
    their onboarding is History energy of the window (a page of them), and the certification period under way.
    409 "Reservation expired" once it ended (as D-REC); 404 when it is not the caller's."""
    async with uow.reading() as r:
        organizations = await _acting_buyers(r.conn, user, organization_id)
        row = await store.reservation_by_uid(r.conn, uid)
        if row is None or (organizations is not None and row["buyer_organization_id"] not in organizations):
            raise ApiError(404, f"No reservation {uid}")
        total = await store.count_history_devices(r.conn, row["id"])
        history = await store.history_devices(r.conn, row["id"], page.limit, page.offset)
    now = datetime.now(UTC)
    if domain.state_of(row["reservation_end"], row["ended_at"], row["end_reason"], now).state != "active":
        raise ApiError(409, "Reservation expired")
    period = domain.ongoing_period(row["reservation_start"], row["reservation_end"], row["frequency"], now)
    return {
        "historynextissuansinfo": {
            "AllDeviceshistnextissuansinfo": [
                {
                    "device_externalid": h["external_id"],
                    "reservationStartDate": iso_exact(row["reservation_start"]),
                    "reservationEndDate": iso_exact(min(row["reservation_end"], h["onboarded_at"])),
                    "device_createdAt": iso_exact(h["onboarded_at"]),
                }
                for h in history
            ],
            "totalItems": total,
            "currentPage": page.number,
            "totalPages": total_pages(total, page.limit),
        },
        "ongoing_next_issuance": {
            "groupId": row["id"],
            "start_date": iso_exact(period.start),
            "end_date": iso_exact(period.end),
        },
    }


async def register_device(uow: UnitOfWork, event: DeviceRegistered, since: datetime) -> None:
    """A device that may be reserved (unless its deletion was heard first: then it stays deleted). `since`: when
    the state the event carries began (its envelope's time, or the devices service's stamp when learned on a
    miss); a state older than the one held changes nothing, the same state again changes nothing either."""
    async with uow:
        await store.lock_device_change(uow.conn, event.device_id)  # serialised with its deletion (other topic)
        await store.upsert_device(
            uow.conn,
            event.device_id,
            event.external_id,
            event.organization_id,
            event.capacity_kw,
            event.country_code,
            event.onboarded_at,
            event.fuel_code,
            event.device_type_code,
            event.commissioning_date,
            since,
        )


async def delete_device(uow: UnitOfWork, event: DeviceDeleted, deleted_at: datetime) -> None:
    """The device can't be reserved any more (remembered even before its registration is heard)."""
    async with uow:
        await store.lock_device_change(uow.conn, event.device_id)
        await store.delete_device(uow.conn, event.device_id, deleted_at)


# -- read-your-writes (opendrec_kit.owners) ------------------------------------------------------------

# Ids per question to the devices service (it takes up to 1000; 500 keep the request line short even for
# 19-digit ids). A reservation names at most 10 000 devices: a handful of questions in the worst case.
DEVICES_PER_QUESTION = 500


async def learn_devices(uow: UnitOfWork, owners: OwnerServices, user: Principal, device_ids: list[int]) -> None:
    """Devices named by the caller that this service has not heard of yet (device.registered may still be on its
    way) are asked of the devices service on the caller's behalf, once for all of them, and taken exactly as
    device.registered is (`register_device`, with the state's own time). Those it does not know or show stay
    unknown (the caller's usual refusal follows). No connection is held while asking; a 503 when it does not
    answer."""
    async with uow.reading() as r:
        missing = await store.unknown_devices(r.conn, device_ids)
    learned: list[Known] = []
    for start in range(0, len(missing), DEVICES_PER_QUESTION):
        ids = missing[start : start + DEVICES_PER_QUESTION]
        learned += await owners.ask("devices", "/devices?" + "&".join(f"id={i}" for i in ids), user)
    registered = sorted(
        ((k.event, k.occurred_at) for k in learned if isinstance(k.event, DeviceRegistered)),
        key=lambda known: known[0].device_id,  # one lock order for concurrent learners
    )
    if registered:
        async with uow:  # register_device re-checks under the device's lock (a delivery may have come meanwhile)
            for event, since in registered:
                await register_device(uow, event, since)


async def reservation_state(uow: UnitOfWork, user: Principal, reservation: int | uuid.UUID) -> dict[str, Any]:
    """Read-your-writes for other services: the events that make one reservation's current state as certificates,
    readings and devices take them, each stamped with when that state began. 404 when unknown or not the
    caller's to see (`reservation`: its id, or its uid): its buyer organization (an API user: any of its organizations), the organizations owning
    its devices, and admins see it.

    reservation.created carries the CURRENT terms (only those are kept), reservation.updated follows with them
    and the current revision when they changed, then reservation.ended if it ended. Consumers converge either
    way: every consumer keeps the terms of the highest revision it saw and lets reservation.created (revision 0)
    change nothing once a revision was taken, so the real reservation.created arriving later (its terms as
    first recorded) and older reservation.updated deliveries change nothing; when the terms never changed the
    current terms are the recorded ones. A repeated reservation.ended changes nothing."""
    async with uow.reading() as r:
        if isinstance(reservation, uuid.UUID):
            row = await store.reservation_by_uid(r.conn, reservation)
        else:
            row = await store.reservation(r.conn, reservation)
        visible = row is not None and domain.may_see_reservation(
            user.role == ADMIN,
            await _caller_organizations(r.conn, user),
            row["buyer_organization_id"],
            await store.device_organizations(r.conn, row["id"]),
        )
    if row is None or not visible:
        raise ApiError(404, f"No reservation {reservation}")
    created = ReservationCreated(**_terms(row), device_ids=list(row["device_ids"]), frequency=row["frequency"])
    states: list[tuple[Any, datetime]] = [(created, row["created_at"])]
    if row["revision"] > 0:
        states.append((_updated_event(row), row["changed_at"] or row["created_at"]))
    if row["ended_at"] is not None:
        states.append((_ended_event(row), row["ended_at"]))
    return owners_answer(states, uow.producer)


async def _caller_organizations(conn: asyncpg.Connection, user: Principal) -> set[int]:
    """The organizations the caller acts for: an API user's every organization, anyone else's own."""
    if user.role == API_USER:
        return set(await api_user_organizations(conn, user.api_user_id)) if user.api_user_id else set()
    return {user.organization_id}
