"""The D-REC sample payloads (the STAGE Postman collection and API guide) that service tests, end-to-end and
authorization runs and benchmarks send, written once: a registration with an organization, a device, a
reservation, the bulk CSV columns, and logging in.

Each builder makes unique names where the platform wants them unique and takes keyword changes on top.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

PASSWORD = "MNO133"
SECRET_KEY = "MNLA70"

# The device fields every registration (and every bulk CSV row) must carry, in the D-REC template's order.
DEVICE_REQUIRED_FIELDS = (
    "externalId",
    "projectName",
    "address",
    "latitude",
    "longitude",
    "countryCode",
    "fuelCode",
    "deviceTypeCode",
    "capacity",
    "commissioningDate",
    "gridInterconnection",
    "offTaker",
)


def _iso(moment: datetime) -> str:
    """A UTC instant as D-REC writes it, to the millisecond: `2024-01-01T00:00:00.000Z`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def unique_tag() -> str:
    return uuid.uuid4().hex[:10]


def registration_body(kind: str = "Developer", *, password: str = PASSWORD, **changes: Any) -> dict[str, Any]:
    """POST /api/user/registerWithOrganization (or /api/user/register): the D-REC sample with a unique
    e-mail and organization name; `password` sets both password fields."""
    tag = unique_tag()
    body = {
        "firstName": "energy",
        "lastName": "dev",
        "email": f"UAT_STAGE_{tag.upper()}@gmail.com",
        "organizationType": kind,
        "password": password,
        "confirmPassword": password,
        "orgName": f"Drec4-{tag}",
        "orgAddress": "Hyderabad",
        "secretKey": SECRET_KEY,
    }
    body.update(changes)
    return body


def device_body(external_id: str = "UAT_STAGE_Drec4", **changes: Any) -> dict[str, Any]:
    """POST /api/device: "Register Device" of the D-REC STAGE Postman collection, verbatim but for externalId
    (and the project name made from it)."""
    body = {
        "externalId": external_id,
        "projectName": f"{external_id}_energy1",
        "address": "donno",
        "latitude": "45.67",
        "longitude": "78.990",
        "countryCode": "IND",
        "fuelCode": "ES430",
        "deviceTypeCode": "TC120",
        "capacity": 200,
        "commissioningDate": "2021-01-02T11:35:27.740Z",
        "gridInterconnection": True,
        "offTaker": "Residential",
        "impactStory": "DemoimpactStory",
        "data": "",
        "images": ["string"],
        "deviceDescription": "Rooftop Solar",
        "energyStorage": True,
        "energyStorageCapacity": 90,
        "qualityLabels": "qualityLabels",
        "SDGBenefits": 0,
        "version": "1.0",
    }
    body.update(changes)
    return body


def reservation_body(name: str, device_ids: list[int], **changes: Any) -> dict[str, Any]:
    """POST /api/device-group: an hourly reservation from an hour ago to a day from now."""
    now = datetime.now(UTC)
    body = {
        "name": name,
        "deviceIds": device_ids,
        "targetCapacityInMegaWattHour": 20,
        "reservationStartDate": _iso(now - timedelta(hours=1)),
        "reservationEndDate": _iso(now + timedelta(days=1)),
        "continueWithReservationIfOneOrMoreDevicesUnavailableForReservation": False,
        "continueWithReservationIfTargetCapacityIsLessThanDeviceTotalCapacityBetweenDuration": True,
        "authorityToExceed": True,
        "frequency": "hourly",
    }
    body.update(changes)
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def log_in(http: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    """POST /api/auth/login, the answer as it comes."""
    return await http.post("/api/auth/login", json={"username": email, "password": password})


async def access_token(http: httpx.AsyncClient, email: str, password: str) -> str:
    """Log in (it must succeed); the access token."""
    resp = await log_in(http, email, password)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["accessToken"])


async def register_with_organization(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    """POST /api/user/registerWithOrganization (it must succeed); the new user as answered."""
    resp = await http.post("/api/user/registerWithOrganization", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())
