"""One request per (operation, caller): path parameters filled with ids of the caller's own side
(so an allowed caller is not refused for ownership), a minimal body that cannot do harm."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opendrec_devstack.drec_samples import reservation_body
from opendrec_kit.timestamps import iso

from .operations import Operation
from .principals import Caller, tag
from .world import Side, World, device_payload

NO_SUCH_CHARGER = "authz-no-such-charger"
NO_SUCH_DEVICE_JOB = 2**62
MISMATCHED_PASSWORD = {"oldPassword": "Wrong12345", "newPassword": "Other12345", "confirmPassword": "Differ12345"}


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, Any]
    kwargs: dict[str, Any]  # json / content / data / headers beyond the caller's


# Mutations whose own-side call with real ids is known to be harmless (see `body`): a no-op patch, a delete
# refused while the device is reserved, one's own membership (refused), an answered invitation, a 1 Wh read,
# an empty CSV. Any other mutation gets ids of nothing, so that a new endpoint cannot wreck the fixtures:
# authorization is still exercised, an allowed caller gets 404.
REVIEWED_MUTATIONS = {
    "PATCH /api/device/{externalId}",
    "DELETE /api/device/{id}",
    "PUT /api/Organization/{organizationId}/change-role/{userId}",
    "POST /api/Organization/{organizationId}/remove-member/{userId}",
    "PUT /api/invitation/{invitationId}",
    "POST /api/meter-reads/new/{externalId}",
    "POST /api/device/addByAdmin/process-creation-bulk-devices-csv/{organizationId}",
}
NOTHING = 2**31 - 1


def _acts_for_buyer(op: Operation) -> bool:
    """Whether an API user names its Buyer organization here: reservations and the certificate log are
    the buyers'; so is an operation only Buyer-side roles reach (e.g. the devices one may reserve)."""
    buyer_side = {"Buyer", "SubBuyer"} & set(op.roles) and not {"OrganizationAdmin", "DeviceOwner", "User"} & set(
        op.roles
    )
    return op.service in ("reservations", "certificates") or bool(buyer_side)


def _organization(op: Operation, caller: Caller, side: Side) -> int:
    """The organization a caller names: its own; an API user one of its organizations (of the kind the
    operation is about); the admin the first Developer (or Buyer) organization."""
    if caller.role == "ApiUser" or caller.role == "Admin" or caller.organization_id is None:
        return side.buyer_org if _acts_for_buyer(op) else side.developer_org
    return caller.organization_id


def _nothing(op: Operation) -> dict[str, Any]:
    return {
        "id": NOTHING,
        "externalId": f"authz-no-such-device-{tag()}",
        "reservation_id": NOTHING,
        "groupUid": str(uuid.uuid4()),
        "invitationId": NOTHING,
        "chargerId": NO_SUCH_CHARGER,
        "jobId": str(uuid.uuid4()) if op.service == "readings" else NO_SUCH_DEVICE_JOB,
    }


def path_values(op: Operation, caller: Caller, side: Side, *, own: bool) -> dict[str, Any]:
    """Values for the path parameters. `own`: the caller's side, chosen so that an authorized caller
    passes (a missing thing answers 404, which is fine); otherwise `side` is a victim's things."""
    values: dict[str, Any] = {
        "organizationId": _organization(op, caller, side)
        if own
        else (side.buyer_org if _acts_for_buyer(op) else side.developer_org),
        # {id} is a device under /api/device; elsewhere (ACL modules, permission rows) not an organization's
        "id": side.device_id if op.path.startswith("/api/device/") else NOTHING,
        "externalId": side.external_id,
        "reservation_id": side.reservation_id,
        "groupUid": side.reservation_uid,
        "invitationId": side.invitation_id or NOTHING,
        # own: the caller itself (changing one's own membership is refused with 400, harmlessly)
        "userId": (caller.user_id or 1) if own else side.member_user_id,
        "chargerId": NO_SUCH_CHARGER if own or not side.charger_id else side.charger_id,
        "apiuserId": str(uuid.uuid4()),
        "certificateId": str(uuid.uuid4()),  # no such certificate: the ledger's proof answers 404
        "token": f"not-a-token-{tag()}",
        "jobId": (side.reads_job_id or str(uuid.uuid4()))
        if op.service == "readings"
        else (side.device_job_id or NO_SUCH_DEVICE_JOB),
    }
    if own and op.method != "GET" and op.key not in REVIEWED_MUTATIONS:
        values.update(_nothing(op))
    missing = set(op.path_params) - set(values)
    assert not missing, f"{op.key}: no value for path parameters {sorted(missing)}; add one in tests/authz/calls.py"
    return {name: values[name] for name in op.path_params}


def query_values(op: Operation, caller: Caller, side: Side, *, own: bool) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if "groupId" in op.query_params:
        params["groupId"] = side.reservation_id
    for name in ("organizationId", "orgId"):
        # an API user names the organization it acts for; a victim's side is named explicitly
        if name in op.query_params and (not own or caller.role == "ApiUser"):
            params[name] = side.buyer_org if _acts_for_buyer(op) else side.developer_org
    if {"from", "to"} <= set(op.required_query):  # a charger's uptime: a day of it
        params.update({"from": "2026-01-01", "to": "2026-01-02"})
    missing = set(op.required_query) - set(params)
    assert not missing, f"{op.key}: no value for required query parameters {sorted(missing)}"
    return params


def body(op: Operation, caller: Caller, side: Side, *, own: bool) -> dict[str, Any]:
    """A minimal body: valid where the interesting checks come after body validation, harmless always.
    Bodies name the organization acted for when the caller is an API user, and always with a victim's
    things (where anybody but an API user or the admin naming another organization must be refused)."""
    api = caller.role == "ApiUser" or not own
    key = op.key
    if key == "POST /api/device":
        payload = device_payload(f"AUTHZ_MATRIX_{tag()}", f"matrix device {tag()}")
        return {"json": {**payload, "organizationId": side.developer_org} if api else payload}
    if key == "PATCH /api/device/{externalId}":
        # own: the value it has already (nothing changes); a victim's device: a change that must not happen
        return {"json": {"address": "donno" if own else "hijacked by another organization"}}
    if key in ("POST /api/device-group", "POST /api/buyer-reservation"):
        # the device is reserved already: an authorized buyer gets 400 "not available", nothing is created
        payload = reservation_body(f"matrix {tag()}", [side.device_id])
        return {"json": {**payload, "organizationId": side.buyer_org} if api else payload}
    if key == "POST /api/charger":
        external_id = side.external_id if not own else f"no-such-device-{tag()}"
        return {
            "json": {
                "chargerId": f"authz{tag()[:6]}",
                "externalId": external_id,
                **({"organizationId": side.developer_org} if api else {}),
            }
        }
    if key == "POST /api/invitation":
        return {"json": {"email": f"authz-matrix-{tag()}@example.org", "role": "NoSuchRole"}}
    if key == "PUT /api/invitation/{invitationId}":
        return {"json": {"status": "Rejected"}}
    if key == "PUT /api/Organization/{organizationId}/change-role/{userId}":
        return {"json": {"role": "User" if own else "OrganizationAdmin"}}
    if key == "PUT /api/user/password":
        return {"json": MISMATCHED_PASSWORD}
    if key == "POST /api/permission/module/apiuser/request":
        return {"json": []}  # refused as empty; a real request would withdraw the API user's approval
    if key == "PUT /api/permission/module/verify/ByAdmin/{apiuserId}":
        return {"json": {"status": "Active"}}
    if key == "POST /api/meter-reads/new/{externalId}":
        # a valid read, so that checks after body validation run too (1 Wh now: plausible for any device)
        read = {"starttimestamp": " ", "endtimestamp": iso(datetime.now(UTC)), "value": 1}
        return {
            "json": {
                "type": "Delta",
                "unit": "Wh",
                "reads": [read],
                **({"organizationId": side.developer_org} if api else {}),
            }
        }
    if "application/json" in op.body_types:
        return {"json": {}}
    if "application/x-www-form-urlencoded" in op.body_types:
        return {"data": {}}
    if "text/csv" in op.body_types or (op.method == "POST" and op.path.startswith("/api/device/")):  # bulk CSV uploads
        return {"content": b"", "headers": {"Content-Type": "text/csv"}}
    return {}


def build(op: Operation, caller: Caller, world: World | None, *, victim: Side | None = None) -> Call:
    """The call of `op` by `caller` on its own side, or on `victim`'s things."""
    own = victim is None
    side = world.side_of(caller) if own else victim
    path = op.path.format(**path_values(op, caller, side, own=own))
    return Call(op.method, path, query_values(op, caller, side, own=own), body(op, caller, side, own=own))
