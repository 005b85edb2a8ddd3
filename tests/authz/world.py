"""The principals and organization-owned things the authorization tests call with: two Developer and
two Buyer organizations, an approved API user with a Developer and a Buyer organization of its own,
another API user, and a device, reads, a charger link, bulk jobs, invitations and a reservation."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from opendrec_contracts.access import API_USER_MODULES
from opendrec_devstack.drec_samples import device_body, reservation_body
from opendrec_devstack.kazam_sim import add_charger
from opendrec_kit.testing import eventually
from opendrec_kit.timestamps import iso

from .principals import (
    Caller,
    approved_api_user,
    expect,
    invite_member,
    login,
    organization_under,
    register_organization,
    tag,
    whoami,
)
from .principals import (
    api_user as register_api_user,
)

ALL_ACTIONS = ["Read", "Write", "Update", "Delete"]


def device_payload(external_id: str, project: str) -> dict[str, Any]:
    # The Postman collection's "Register Device" payload.
    return device_body(external_id, projectName=project, capacity=2000)


DEVICE_CSV_HEADER = (
    "externalId,projectName,address,latitude,longitude,countryCode,fuelCode,deviceTypeCode,"
    "capacity,commissioningDate,gridInterconnection,offTaker\n"
)
READS_CSV_HEADER = "deviceExternalId,timezone,type,unit,value,startDate,endDate\n"


@dataclass
class Side:
    """The things of one party (an organization, or an API user's pair of organizations): the ids a caller
    of that side uses, and the strings that must never reach anybody outside it."""

    developer_org: int
    buyer_org: int
    device_id: int
    external_id: str
    reservation_id: int
    reservation_uid: str
    reservation_name: str
    device_job_id: int | None = None
    reads_job_id: str | None = None
    charger_id: str | None = None
    invitation_id: int | None = None
    member_user_id: int | None = None  # a member other than the caller (cross-organization calls)
    secrets: list[str] = field(default_factory=list)


@dataclass
class World:
    anonymous: Caller
    admin: Caller
    org_admin: Caller
    device_owner: Caller
    user: Caller
    buyer: Caller
    sub_buyer: Caller
    api_user: Caller
    unapproved_api_user: Caller  # registered, nothing approved: permission-guarded operations refuse it
    api_developer: Caller  # first user of the API user's Developer organization
    api_buyer: Caller  # first user of the API user's Buyer organization
    other_developer: Caller
    other_buyer: Caller
    other_api_user: Caller
    first: Side  # the Developer and Buyer organizations of org_admin/buyer and their members
    api: Side  # the API user's organizations

    @property
    def matrix_callers(self) -> list[Caller]:
        return [
            self.anonymous,
            self.admin,
            self.org_admin,
            self.device_owner,
            self.user,
            self.buyer,
            self.sub_buyer,
            self.api_user,
            self.unapproved_api_user,
        ]

    @property
    def outsiders(self) -> list[Caller]:
        return [self.other_developer, self.other_buyer, self.other_api_user]

    def side_of(self, caller: Caller) -> Side:
        return self.api if caller.role == "ApiUser" else self.first


async def _device(
    http: httpx.AsyncClient, owner: Caller, label: str, organization_id: int | None = None
) -> dict[str, Any]:
    external_id = f"AUTHZ_{label}_{tag()}"
    body = device_payload(external_id, f"Authz project {label} {tag()}")
    if organization_id is None:
        return expect(await http.post("/api/device", json=body, headers=owner.headers), 201)

    async def registered():
        r = await http.post("/api/device", json={**body, "organizationId": organization_id}, headers=owner.headers)
        # devices learns of the API user's organization from organization.registered: wait for it
        return None if r.status_code == 403 and "not one of your organizations" in r.text else r

    return expect(await eventually(registered), 201)


async def _reserve(
    http: httpx.AsyncClient, buyer: Caller, device_id: int, name: str, organization_id: int | None = None
) -> dict[str, Any]:
    body = reservation_body(name, [device_id]) | ({"organizationId": organization_id} if organization_id else {})

    async def reserved():
        r = await http.post("/api/device-group", json=body, headers=buyer.headers)
        # reservations learns of the device (and an API user's organization) from events: wait for them
        waiting = r.status_code == 400 and "Some devices are not available" in r.text and "unknown" in r.text.lower()
        return None if waiting or (r.status_code == 403 and "not one of your organizations" in r.text) else r

    return expect(await eventually(reserved), 201)


async def _known_reserved(
    http: httpx.AsyncClient, buyer: Caller, device_id: int, organization_id: int | None = None
) -> None:
    """Wait until devices knows the device is reserved (then deleting it is refused with 409, so the
    matrix's DELETE cannot remove it)."""

    async def reserved():
        params = {"afterId": device_id + 1, "limit": 1} | (
            {"organizationId": organization_id} if organization_id else {}
        )
        r = await http.get("/api/device/ungrouped/buyerreservation", params=params, headers=buyer.headers)
        if r.status_code != 200:
            return None
        return all(d["id"] != device_id for d in r.json()["devices"])

    await eventually(reserved)


async def _read(http: httpx.AsyncClient, owner: Caller, external_id: str) -> None:
    body = {
        "type": "Delta",
        "unit": "Wh",
        "reads": [{"starttimestamp": " ", "endtimestamp": iso(datetime.now(UTC)), "value": 1}],
    }

    async def accepted():
        r = await http.post(f"/api/meter-reads/new/{external_id}", json=body, headers=owner.headers)
        return None if r.status_code == 404 else r  # readings learns of the device from device.registered

    expect(await eventually(accepted), 201)


async def _charger(http: httpx.AsyncClient, platform, owner: Caller, external_id: str) -> str:
    charger_id = f"authz{tag()[:6]}"
    # linking proves the charger is the organization's: its Kazam account (in dev, the platform's) must see it
    await add_charger(platform.kazam_url, platform.kazam_token, charger_id)

    async def linked():
        r = await http.post(
            "/api/charger", json={"chargerId": charger_id, "externalId": external_id}, headers=owner.headers
        )
        return None if r.status_code == 404 else r

    expect(await eventually(linked), 201)
    return charger_id


async def _certificates_know(http: httpx.AsyncClient, buyer: Caller, reservation_id: int) -> None:
    async def known():
        r = await http.get(
            "/api/certificate-log/by-reservation-groupId", params={"groupId": reservation_id}, headers=buyer.headers
        )
        return r.status_code == 200

    await eventually(known)


def _side(
    developer: Caller,
    buyer: Caller,
    device: dict[str, Any],
    reservation: dict[str, Any],
    member_emails: list[str | None],
    **more: Any,
) -> Side:
    """One party's things; its secrets are its organizations' names, the device's project, the reservation's
    name and the e-mails of its members."""
    return Side(
        developer_org=developer.organization_id,
        buyer_org=buyer.organization_id,
        device_id=device["id"],
        external_id=device["externalId"],
        reservation_id=reservation["id"],
        reservation_uid=reservation["devicegroup_uid"],
        reservation_name=reservation["name"],
        secrets=[
            developer.extra["organization_name"],
            buyer.extra["organization_name"],
            device["projectName"],
            reservation["name"],
            *member_emails,
        ],
        **more,
    )


async def build_world(http: httpx.AsyncClient, platform) -> World:
    # Independent steps run concurrently: most of the time goes to waiting for events between services.
    admin = Caller(
        "Admin",
        "Admin",
        await login(http, platform.admin_email, platform.admin_password),
        email=platform.admin_email,
        password=platform.admin_password,
    )
    org_admin, buyer, other_developer, other_buyer, _ = await asyncio.gather(
        register_organization(http, "Developer", "OrganizationAdmin", "Authz Developer"),
        register_organization(http, "Buyer", "Buyer", "Authz Buyer"),
        register_organization(http, "Developer", "other OrganizationAdmin", "Other Developer"),
        register_organization(http, "Buyer", "other Buyer", "Other Buyer"),
        whoami(http, admin),
    )
    # The API user may ask for every module with every action; the admin approves all of it, so the
    # matrix expects it wherever a permission (not a fixed role) guards the operation.
    everything = {m: ALL_ACTIONS for m in API_USER_MODULES}
    device_owner, user, sub_buyer, api_user, other_api_user, unapproved_api_user, device = await asyncio.gather(
        invite_member(http, platform.mail_dir, org_admin, "DeviceOwner", "DeviceOwner"),
        invite_member(http, platform.mail_dir, org_admin, "User", "User"),
        invite_member(http, platform.mail_dir, buyer, "SubBuyer", "SubBuyer"),
        approved_api_user(http, admin, "ApiUser", "Authz Integrator", everything),
        approved_api_user(http, admin, "other ApiUser", "Other Integrator", everything),
        register_api_user(http, "unapproved ApiUser", "Unapproved Integrator"),
        _device(http, org_admin, "FIRST"),
    )
    api_developer, api_buyer = await asyncio.gather(
        organization_under(http, api_user, "Developer", "ApiUser's OrganizationAdmin", "Api Developer"),
        organization_under(http, api_user, "Buyer", "ApiUser's Buyer", "Api Buyer"),
    )

    async def api_things():
        # the API user acts for its organizations (their own users do not log in)
        api_device = await _device(http, api_user, "API", api_developer.organization_id)
        api_reservation = await _reserve(
            http, api_user, api_device["id"], f"Authz api reservation {tag()}", api_buyer.organization_id
        )
        await _known_reserved(http, api_user, api_device["id"], api_buyer.organization_id)
        return api_device, api_reservation

    async def first_reservation():
        reservation = await _reserve(http, buyer, device["id"], f"Authz reservation {tag()}")
        await asyncio.gather(
            _known_reserved(http, buyer, device["id"]), _certificates_know(http, buyer, reservation["id"])
        )
        return reservation

    bad_row = f"AUTHZ_BULK_{tag()},p,a,45.6,78.9,XX,ES430,TC120,10,2021-01-02T11:35:27Z,true,School\n"
    reads_row = f"{device['externalId']},UTC,Delta,Wh,1,,{iso(datetime.now(UTC) + timedelta(days=3650))}\n"
    csv = {**org_admin.headers, "Content-Type": "text/csv"}

    async def spare_sessions():
        # Logging in costs a deliberate password hash (~1 s): done here, while the services exchange events.
        members = [admin, org_admin, device_owner, user, buyer, sub_buyer]
        for caller, token in zip(
            members, await asyncio.gather(*(login(http, c.email, c.password) for c in members)), strict=False
        ):
            caller.spare_token = token

    (api_device, api_reservation), reservation, _, charger_id, device_job, reads_job, _ = await asyncio.gather(
        api_things(),
        first_reservation(),
        _read(http, org_admin, device["externalId"]),
        _charger(http, platform, org_admin, device["externalId"]),
        http.post(
            "/api/device/bulk",
            content=(DEVICE_CSV_HEADER + bad_row).encode(),
            params={"fileName": "authz.csv"},
            headers=csv,
        ),
        http.post(
            "/api/meter-reads/bulk-upload",
            content=(READS_CSV_HEADER + reads_row).encode(),
            params={"fileName": "authz-reads.csv"},
            headers=csv,
        ),
        spare_sessions(),
    )
    device_job, reads_job = expect(device_job, 202), expect(reads_job, 202)

    first = _side(
        org_admin,
        buyer,
        device,
        reservation,
        [device_owner.email, user.email, sub_buyer.email],
        device_job_id=device_job["jobId"],
        reads_job_id=reads_job["jobId"],
        charger_id=charger_id,
        invitation_id=device_owner.extra["invitation_id"],
        member_user_id=user.user_id,
    )
    api = _side(
        api_developer,
        api_buyer,
        api_device,
        api_reservation,
        [api_developer.email, api_buyer.email],
        member_user_id=api_developer.user_id,
    )
    return World(
        anonymous=Caller("anonymous", None),
        admin=admin,
        org_admin=org_admin,
        device_owner=device_owner,
        user=user,
        buyer=buyer,
        sub_buyer=sub_buyer,
        api_user=api_user,
        unapproved_api_user=unapproved_api_user,
        api_developer=api_developer,
        api_buyer=api_buyer,
        other_developer=other_developer,
        other_buyer=other_buyer,
        other_api_user=other_api_user,
        first=first,
        api=api,
    )
