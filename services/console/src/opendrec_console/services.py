"""The console's use cases: each asks the public API what a page needs, or sends what a form says.

They take the API client and the session; a refusal of the API comes out as `client.Refusal` (its message and
fields), which the pages show next to the fields it names.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import domain
from .client import Answer, Api, Refusal
from .session import Session


async def _page_of(api: Api, session: Session, path: str, page: int, **params: Any) -> dict[str, Any]:
    """One page of a listing, as the signed-in user sees it (D-REC's `pageNumber` and `limit`)."""
    query = {"pageNumber": page, "limit": domain.PAGE_SIZE, **params}
    return dict(await api.ask("GET", path, token=session.token, params=query))


async def _upload(api: Api, session: Session, path: str, file_name: str, csv: bytes) -> dict[str, Any]:
    """A CSV posted as the body (text/csv), imported in the background: the job the API answers."""
    params = {"fileName": file_name}
    return dict(await api.ask("POST", path, token=session.token, params=params, content=csv, content_type="text/csv"))


# ---- accounts -------------------------------------------------------------------------------------------------


REGISTRATION_FIELDS = ("firstName", "lastName", "email", "password", "confirmPassword", "orgName", "orgAddress")


def registration(form: dict[str, str], organization_type: str) -> dict[str, Any]:
    """The registration form as identity takes it (a field left out is sent empty: the API names what is wrong)."""
    body = {key: form.get(key, "") for key in REGISTRATION_FIELDS}
    return {**body, "organizationType": organization_type, "secretKey": form.get("secretKey") or ""}


async def register(api: Api, form: dict[str, str]) -> dict[str, Any]:
    """A user with a new organization (Developer or Buyer); identity mails the confirmation link."""
    body = registration(form, form.get("organizationType", ""))
    return dict(await api.ask("POST", "/api/user/registerWithOrganization", json=body))


async def register_api_user(api: Api, form: dict[str, str]) -> dict[str, Any]:
    """An API user; the answer holds its private key, shown once and never kept here."""
    return dict(await api.ask("POST", "/api/user/register", json=registration(form, "ApiUser")))


async def confirm_email(api: Api, token: str) -> str:
    answer = await api.ask("PUT", f"/api/user/confirm-email/{token}")
    return str((answer or {}).get("message") or "Your e-mail address is confirmed")


async def sign_in(api: Api, session: Session, email: str, password: str) -> Session:
    """Log in and learn who the user is: a new session (a fresh CSRF token with it)."""
    answer = await api.ask("POST", "/api/auth/login", json={"username": email, "password": password})
    return await _session_of(api, str(answer["accessToken"]))


ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_AUDIENCE = "opendrec-identity"


def client_assertion(api_user_id: str, private_key_pem: bytes) -> str:
    """RFC 7523: iss = sub = the API user's id, a fresh jti, valid for a minute, signed with its Ed25519 key."""
    try:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise Refusal(400, "That file is not a private key", {"key": "Choose the .pem file you downloaded"}) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise Refusal(400, "That is not an OpenDREC API user's key", {"key": "Choose the .pem file you downloaded"})
    now = int(time.time())
    claims = {"iss": api_user_id, "sub": api_user_id, "aud": ASSERTION_AUDIENCE, "iat": now, "exp": now + 60}
    return jwt.encode({**claims, "jti": uuid.uuid4().hex}, key, algorithm="EdDSA")


async def sign_in_with_key(api: Api, api_user_id: str, private_key_pem: bytes) -> Session:
    """An API user signs in with its key: the assertion is made here and the key forgotten at once."""
    form = f"grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}&client_assertion="
    assertion = client_assertion(api_user_id, private_key_pem)
    answer = await api.ask(
        "POST",
        "/api/auth/token",
        content=(form + assertion).encode(),
        content_type="application/x-www-form-urlencoded",
    )
    session = await _session_of(api, str(answer["access_token"]))
    session.api_user_id = api_user_id
    return session


async def _session_of(api: Api, token: str) -> Session:
    me = await api.ask("GET", "/api/user/me", token=token)
    organization = me.get("organization") or {}
    return Session(
        token=token,
        user_id=me.get("id"),
        email=str(me.get("email", "")),
        name=f"{me.get('firstName', '')} {me.get('lastName', '')}".strip(),
        role=str(me.get("role", "")),
        organization_id=organization.get("id"),
        organization_name=str(organization.get("name", "")),
        organization_type=str(organization.get("organizationType", "")),
    )


async def permissions(api: Api, session: Session) -> dict[str, Any]:
    """The API user's status (Request, Active, Deactive) and the modules it holds now. Its own user record (with
    the status) needs USER_MANAGEMENT_CRUDL Read; without it, the status is the last request's answer, or Active
    once modules are granted."""
    me = await api.ask("GET", "/api/user/me", token=session.token)
    granted = me.get("permissions") or {}
    user = await api.call("GET", f"/api/user/{session.user_id}", token=session.token)
    if user.ok and isinstance(user.body, dict):
        status = user.body.get("permission_status") or user.body.get("permissionStatus") or ""
    else:
        status = "Active" if granted else session.requested
    return {"status": status, "granted": granted, "apiUserId": me.get("apiUserId") or session.api_user_id}


async def request_permissions(api: Api, session: Session, module: str, wanted: list[str]) -> dict[str, Any]:
    body = [{"moduleName": module, "permissions": wanted}]
    return dict(await api.ask("POST", "/api/permission/module/apiuser/request", token=session.token, json=body))


async def sign_out(api: Api, session: Session) -> None:
    """Revoke the token at identity; the cookie is dropped by the page whatever the answer."""
    if session.token:
        await api.call("POST", "/api/auth/logout", token=session.token)


async def forgot_password(api: Api, email: str) -> None:
    await api.ask("POST", "/api/user/forget-password", json={"email": email})


async def reset_password(api: Api, token: str, password: str, confirm: str) -> None:
    body = {"newPassword": password, "confirmPassword": confirm}
    await api.ask("PUT", f"/api/user/reset/password/{token}", json=body)


async def profile(api: Api, session: Session) -> dict[str, Any]:
    return dict(await api.ask("GET", "/api/user/me", token=session.token))


async def update_profile(api: Api, session: Session, first_name: str, last_name: str) -> dict[str, Any]:
    body = {"firstName": first_name, "lastName": last_name}
    return dict(await api.ask("PUT", "/api/user/profile", token=session.token, json=body))


async def change_password(api: Api, session: Session, old: str, new: str, confirm: str) -> None:
    body = {"oldPassword": old, "newPassword": new, "confirmPassword": confirm}
    await api.ask("PUT", "/api/user/password", token=session.token, json=body)


# ---- reference data -------------------------------------------------------------------------------------------


async def device_choices(api: Api) -> dict[str, list[dict[str, Any]]]:
    """Fuels, device types and countries for the device forms and filters (public lists)."""
    fuels = await api.ask("GET", "/api/device/fuel-type")
    types = await api.ask("GET", "/api/device/device-type")
    countries = await api.ask("GET", "/api/countrycode/list")
    return {"fuels": list(fuels), "types": list(types), "countries": list(countries)}


# ---- devices --------------------------------------------------------------------------------------------------


async def devices(api: Api, session: Session, filters: dict[str, str], page: int) -> dict[str, Any]:
    return await _page_of(api, session, "/api/device/my", page, **filters)


async def device(api: Api, session: Session, device_id: int) -> dict[str, Any]:
    return dict(await api.ask("GET", f"/api/device/{device_id}", token=session.token))


def device_payload(form: dict[str, str]) -> dict[str, Any]:
    """A device form as D-REC's registration body: numbers and booleans as the API takes them, text as typed
    (the API says what is wrong with each field)."""
    body: dict[str, Any] = {
        key: form.get(key, "")
        for key in (
            "externalId",
            "projectName",
            "address",
            "latitude",
            "longitude",
            "countryCode",
            "fuelCode",
            "deviceTypeCode",
            "offTaker",
            "deviceDescription",
            "impactStory",
        )
    }
    body["capacity"] = _number(form.get("capacity", ""))
    body["commissioningDate"] = domain.iso_utc(form.get("commissioningDate", "")) or form.get("commissioningDate")
    body["gridInterconnection"] = form.get("gridInterconnection") == "on"
    body["energyStorage"] = form.get("energyStorage") == "on"
    return body


def _number(text: str) -> Any:
    try:
        return float(text) if text.strip() else None
    except ValueError:
        return text  # the API names the field and says why


async def register_device(api: Api, session: Session, form: dict[str, str]) -> dict[str, Any]:
    return dict(await api.ask("POST", "/api/device", token=session.token, json=device_payload(form)))


async def update_device(api: Api, session: Session, external_id: str, form: dict[str, str]) -> dict[str, Any]:
    changes = {k: v for k, v in device_payload(form).items() if k != "externalId" and v not in ("", None)}
    return dict(await api.ask("PATCH", f"/api/device/{external_id}", token=session.token, json=changes))


async def delete_device(api: Api, session: Session, device_id: int) -> None:
    await api.ask("DELETE", f"/api/device/{device_id}", token=session.token)


async def energy(api: Api, session: Session, external_id: str, granularity: str) -> dict[str, Any]:
    """The device's accumulated energy per day or month (the readings service's sums), as chart data."""
    params = {"readType": "accumulated", "granularity": granularity}
    answer = await api.call("GET", f"/api/meter-reads/new/{external_id}", token=session.token, params=params)
    if not answer.ok or not isinstance(answer.body, dict):
        return {"labels": [], "values": [], "totalWh": 0}
    return {**domain.series(answer.body.get("accumulated") or []), "totalWh": answer.body.get("totalWh", 0)}


# ---- reads ----------------------------------------------------------------------------------------------------


async def upload_reads(api: Api, session: Session, file_name: str, csv: bytes) -> dict[str, Any]:
    """A CSV of reads, imported by readings in the background: the job (poll it for progress and results)."""
    return await _upload(api, session, "/api/meter-reads/bulk-upload", file_name, csv)


async def read_job(api: Api, session: Session, job_id: str, page: int) -> dict[str, Any]:
    params = {"pageNumber": page, "limit": 100}
    return dict(await api.ask("GET", f"/api/meter-reads/bulk-upload/{job_id}", token=session.token, params=params))


async def read_jobs(api: Api, session: Session) -> list[dict[str, Any]]:
    answer = await api.ask("GET", "/api/meter-reads/bulk-upload", token=session.token)
    return list(answer.get("jobs", answer) if isinstance(answer, dict) else answer)


# ---- reservations and certificates ----------------------------------------------------------------------------


async def available_devices(api: Api, session: Session, filters: dict[str, str], page: int) -> dict[str, Any]:
    return await _page_of(api, session, "/api/device/ungrouped/buyerreservation", page, **filters)


async def reservations(api: Api, session: Session, page: int) -> dict[str, Any]:
    return await _page_of(api, session, "/api/buyer-reservation/my", page)


def reservation_payload(form: dict[str, str], device_ids: list[int]) -> dict[str, Any]:
    return {
        "name": form.get("name", ""),
        "deviceIds": device_ids,
        "targetCapacityInMegaWattHour": _number(form.get("targetCapacityInMegaWattHour", "")),
        "reservationStartDate": domain.iso_utc(form.get("reservationStartDate", "")),
        "reservationEndDate": domain.iso_utc(form.get("reservationEndDate", "")),
        "frequency": form.get("frequency", ""),
        "continueWithReservationIfOneOrMoreDevicesUnavailableForReservation": form.get("continueIfUnavailable") == "on",
        "continueWithReservationIfTargetCapacityIsLessThanDeviceTotalCapacityBetweenDuration": form.get(
            "continueIfTargetLess"
        )
        == "on",
        "authorityToExceed": form.get("authorityToExceed") == "on",
    }


async def reserve(api: Api, session: Session, form: dict[str, str], device_ids: list[int]) -> dict[str, Any]:
    body = reservation_payload(form, device_ids)
    return dict(await api.ask("POST", "/api/device-group", token=session.token, json=body))


async def reservation(api: Api, session: Session, reservation_id: int) -> dict[str, Any]:
    """The reservation, its certificates (with each one's parts) and the energy per device."""
    group = dict(await api.ask("GET", f"/api/buyer-reservation/{reservation_id}", token=session.token))
    uid = group.get("devicegroup_uid") or group.get("uid")
    log: dict[str, Any] = {"certificates": [], "totalEnergyWh": 0}
    if uid:
        answer = await api.call("GET", f"/api/certificate-log/issuer/certified/{uid}", token=session.token)
        if answer.ok and isinstance(answer.body, dict):
            log = answer.body
    certificates = list(log.get("certificates") or [])
    total = int(log.get("totalEnergyWh") or 0)
    return {
        "group": group,
        "uid": uid,
        "certificates": certificates,
        "totalEnergyWh": total,
        "perDevice": domain.per_device(certificates),
        "progress": domain.progress_percent(total, group.get("targetCapacityInMegaWattHour")),
    }


async def export_certificates(api: Api, session: Session, uid: str) -> Answer:
    """The reservation's per-device certificate CSV, as the API makes it."""
    answer = await api.call(
        "GET", f"/api/certificate-log/export_perdevice/{uid}", token=session.token, accept="text/csv"
    )
    return answer.checked()


async def end_reservation(api: Api, session: Session, reservation_id: int) -> None:
    await api.ask("POST", f"/api/device-group/{reservation_id}/end", token=session.token)


# ---- admin ----------------------------------------------------------------------------------------------------


async def api_users(api: Api, session: Session, status: str, page: int) -> dict[str, Any]:
    return await _page_of(api, session, "/api/admin/apiusers", page, permissionStatus=status)


async def decide_api_user(api: Api, session: Session, api_user_id: str, status: str) -> None:
    path = f"/api/permission/module/verify/ByAdmin/{api_user_id}"
    await api.ask("PUT", path, token=session.token, json={"status": status})


async def organizations(api: Api, session: Session, organization_type: str, page: int) -> dict[str, Any]:
    """Every organization (of one type, if given), oldest first."""
    kind = {"organizationType": organization_type} if organization_type else {}
    return await _page_of(api, session, "/api/admin/organizations", page, **kind)


async def users(api: Api, session: Session, page: int) -> dict[str, Any]:
    return await _page_of(api, session, "/api/admin/users", page)


# ---- the registry: holdings, transfers, retirements ----------------------------------------------------------


async def holdings(api: Api, session: Session, page: int) -> dict[str, Any]:
    return await _page_of(api, session, "/api/certificate/holdings", page)


async def holding(api: Api, session: Session, holding_id: str) -> dict[str, Any]:
    """One of the organization's holdings (the registry lists them; there is no single-holding read)."""
    page = 1
    while True:
        listing = await api.ask(
            "GET", "/api/certificate/holdings", token=session.token, params={"pageNumber": page, "limit": 100}
        )
        for item in listing.get("holdings") or []:
            if item.get("id") == holding_id:
                return dict(item)
        if page >= int(listing.get("totalPages") or 0) or page >= 100:
            raise Refusal(404, "No such holding in your organization's inventory")
        page += 1


async def transfers(api: Api, session: Session) -> list[dict[str, Any]]:
    answer = await api.ask("GET", "/api/certificate/transfers", token=session.token, params={"limit": 50})
    return list(answer.get("transfers") or [])


async def transfer(api: Api, session: Session, holding_id: str, form: dict[str, str], once: str) -> dict[str, Any]:
    """`once`: the form's idempotency key, so a form sent twice (a double click, a retry) transfers once."""
    body = {
        "holdingId": holding_id,
        "toOrganizationId": _integer(form.get("toOrganizationId", "")),
        "energyWh": _integer(form.get("energyWh", "")),
    }
    headers = {"Idempotency-Key": once}
    return dict(await api.ask("POST", "/api/certificate/transfers", token=session.token, json=body, headers=headers))


async def decide_transfer(api: Api, session: Session, transfer_id: str, action: str) -> None:
    await api.ask("POST", f"/api/certificate/transfers/{transfer_id}/{action}", token=session.token)


async def retire(api: Api, session: Session, holding_id: str, form: dict[str, str], once: str) -> dict[str, Any]:
    """`once`: the form's idempotency key, so a form sent twice retires once."""
    body = {
        "holdingId": holding_id,
        "energyWh": _integer(form.get("energyWh", "")),
        "beneficiary": form.get("beneficiary", ""),
        "location": form.get("location", ""),
        "purpose": form.get("purpose", ""),
        "reportingStart": domain.iso_utc(form.get("reportingStart", "")) or form.get("reportingStart"),
        "reportingEnd": domain.iso_utc(form.get("reportingEnd", "")) or form.get("reportingEnd"),
    }
    headers = {"Idempotency-Key": once}
    return dict(await api.ask("POST", "/api/certificate/retirements", token=session.token, json=body, headers=headers))


def _integer(text: str) -> Any:
    try:
        return int(text) if text.strip() else None
    except ValueError:
        return text  # the API names the field and says why


# ---- bulk device onboarding -----------------------------------------------------------------------------------


async def upload_devices(api: Api, session: Session, file_name: str, csv: bytes) -> dict[str, Any]:
    """A CSV of devices, registered by the devices service in the background: the job."""
    return await _upload(api, session, "/api/device/bulk", file_name, csv)


async def device_jobs(api: Api, session: Session) -> list[dict[str, Any]]:
    answer = await api.ask("GET", "/api/device/bulk-jobs", token=session.token, params={"limit": 20})
    return list(answer.get("csvJobs") or [])


async def device_job(api: Api, session: Session, job_id: str, page: int) -> dict[str, Any]:
    """The job with one page of its per-row results."""
    params = {"pageNumber": page, "limit": 100}
    answer = await api.ask("GET", f"/api/device/bulk-jobs/{job_id}/results", token=session.token, params=params)
    return {**answer["job"], "rows": list(answer.get("rows") or [])}


async def acl_modules(api: Api, session: Session, page: int) -> dict[str, Any]:
    return await _page_of(api, session, "/api/aclmodules", page)


async def device_certificates(api: Api, session: Session, page: int) -> dict[str, Any]:
    """A developer's devices' certificates, each with the reservation it was issued to."""
    return await _page_of(api, session, "/api/certificate-log/issuer/certifiedlogOfdevices", page)


# ---- invitations ----------------------------------------------------------------------------------------------


async def register_invited(api: Api, token: str, form: dict[str, str]) -> dict[str, Any]:
    """The account of an invited address, made with the mailed token (the address counts as confirmed)."""
    body = {key: form.get(key, "") for key in ("firstName", "lastName", "password", "confirmPassword")}
    return dict(await api.ask("POST", f"/api/invitation/register/{token}", json=body))


async def my_invitations(api: Api, session: Session) -> list[dict[str, Any]]:
    """The invitations sent to the signed-in user's address, every organization's, newest first."""
    return list(await api.ask("GET", "/api/invitation/By_email", token=session.token))


async def answer_invitation(api: Api, session: Session, invitation_id: int, status: str) -> dict[str, Any]:
    """Accepted moves the user into the inviting organization with the invited role (its tokens are revoked)."""
    path = f"/api/invitation/{invitation_id}"
    return dict(await api.ask("PUT", path, token=session.token, json={"status": status}))


async def sent_invitations(api: Api, session: Session, page: int) -> dict[str, Any] | None:
    """The organization's invitations; None when the user may not invite (INVITATION_MANAGEMENT_CRUDL)."""
    query = {"organizationId": session.organization_id, "pageNumber": page, "limit": domain.PAGE_SIZE}
    answer = await api.call("GET", "/api/invitation", token=session.token, params=query)
    if answer.status == 403:
        return None
    return dict(answer.checked().body)


async def invite(api: Api, session: Session, email: str, role: str) -> dict[str, Any]:
    params = {"organizationId": session.organization_id}
    body = {"email": email, "role": role}
    return dict(await api.ask("POST", "/api/invitation", token=session.token, params=params, json=body))


# ---- admin: dead letters and jobs -----------------------------------------------------------------------------


async def dead_letters(api: Api, session: Session, topic: str, page: int) -> dict[str, Any]:
    return await _page_of(api, session, "/api/admin/dead-letters", page, **({"topic": topic} if topic else {}))


async def replay_dead_letters(api: Api, session: Session, positions: list[dict[str, Any]]) -> dict[str, Any]:
    """Publish the chosen dead letters again (every consumer's inbox makes a repeat harmless)."""
    body = {"deadLetters": positions}
    return dict(await api.ask("POST", "/api/admin/dead-letters/replay", token=session.token, json=body))


async def onboarding_jobs(api: Api, session: Session, organization_id: int | None, page: int) -> dict[str, Any]:
    """Bulk device onboarding jobs: every organization's for an admin naming none."""
    scope = {"organizationId": organization_id} if organization_id else {}
    return await _page_of(api, session, "/api/device/bulk-jobs", page, **scope)


async def import_jobs(api: Api, session: Session, organization_id: int | None, page: int) -> list[dict[str, Any]]:
    """Bulk read imports of one organization (readings lists them per organization)."""
    scope = {"organizationId": organization_id} if organization_id else {}
    answer = await _page_of(api, session, "/api/meter-reads/bulk-upload", page, **scope)
    return list(answer.get("jobs") or [])


# ---- admin: organizations, users, ACL -------------------------------------------------------------------------


async def organization(api: Api, session: Session, organization_id: int) -> dict[str, Any]:
    return dict(await api.ask("GET", f"/api/admin/organizations/{organization_id}", token=session.token))


async def organization_users(api: Api, session: Session, organization_id: int, page: int) -> dict[str, Any]:
    return await _page_of(api, session, f"/api/admin/organizations/user/{organization_id}", page)


async def update_organization(api: Api, session: Session, organization_id: int, form: dict[str, str]) -> dict[str, Any]:
    """Name, address (empty clears it) and status, as the form has them (the API says what it refuses)."""
    body = {"name": form.get("name", ""), "address": form.get("address", ""), "status": form.get("status", "")}
    path = f"/api/admin/organizations/{organization_id}"
    return dict(await api.ask("PATCH", path, token=session.token, json=body))


async def user(api: Api, session: Session, user_id: int) -> dict[str, Any]:
    return dict(await api.ask("GET", f"/api/user/{user_id}", token=session.token))


async def update_user(api: Api, session: Session, user_id: int, form: dict[str, str]) -> dict[str, Any]:
    """Only what changed goes: a new e-mail must be confirmed again, and one's own status may not change."""
    now = await user(api, session, user_id)
    changes = {
        k: form.get(k, "") for k in ("firstName", "lastName", "email", "status") if form.get(k, "") != now.get(k)
    }
    if not changes:
        return now
    return dict(await api.ask("PUT", f"/api/admin/users/{user_id}", token=session.token, json=changes))


async def acl_module(api: Api, session: Session, module_id: int) -> dict[str, Any]:
    return dict(await api.ask("GET", f"/api/aclmodules/{module_id}", token=session.token))


async def update_acl_module(
    api: Api, session: Session, module_id: int, description: str, permissions: list[str], status: str
) -> dict[str, Any]:
    body = {"description": description, "permissions": permissions, "status": status}
    return dict(await api.ask("PUT", f"/api/aclmodules/{module_id}", token=session.token, json=body))


async def grants(api: Api, session: Session, module_id: int, page: int) -> dict[str, Any]:
    """Who holds what of one module: grants per role and per user."""
    return await _page_of(api, session, "/api/permission", page, aclmodulesId=module_id)


async def grant(
    api: Api, session: Session, module_id: int, entity_type: str, entity_id: str, permissions: list[str]
) -> dict[str, Any]:
    # a user by its id (a number), a role by its name
    holder: str | int = int(entity_id) if entity_type == "User" and entity_id.isdigit() else entity_id
    body = {"aclmodulesId": module_id, "entityType": entity_type, "entityId": holder, "permissions": permissions}
    return dict(await api.ask("POST", "/api/permission", token=session.token, json=body))


async def change_grant(api: Api, session: Session, grant_id: int, permissions: list[str]) -> None:
    await api.ask("PUT", f"/api/permission/{grant_id}", token=session.token, json={"permissions": permissions})


async def revoke_grant(api: Api, session: Session, grant_id: int) -> None:
    await api.ask("DELETE", f"/api/permission/{grant_id}", token=session.token)


# ---- EV chargers (Kazam) --------------------------------------------------------------------------------------


async def kazam_account(api: Api, session: Session) -> dict[str, Any] | None:
    """The organization's Kazam credentials' status (never the token); None when it registered none."""
    answer = await api.call("GET", "/api/charger/kazam/credentials", token=session.token)
    if answer.status == 404:
        return None
    return dict(answer.checked().body)


async def register_kazam(api: Api, session: Session, token: str, base_url: str) -> dict[str, Any]:
    body = {"token": token, **({"baseUrl": base_url} if base_url else {})}
    return dict(await api.ask("PUT", "/api/charger/kazam/credentials", token=session.token, json=body))


async def forget_kazam(api: Api, session: Session) -> None:
    await api.ask("DELETE", "/api/charger/kazam/credentials", token=session.token)


async def charger_links(api: Api, session: Session, page: int) -> dict[str, Any]:
    """A page of the organization's charger links; the total comes in X-Total-Count."""
    query = {"pageNumber": page, "limit": domain.PAGE_SIZE}
    answer = (await api.call("GET", "/api/charger", token=session.token, params=query)).checked()
    total = answer.headers.get("x-total-count", "")
    links = list(answer.body or [])
    return {"links": links, "totalCount": int(total) if total.isdigit() else len(links)}


async def link_charger(api: Api, session: Session, charger_id: str, external_id: str) -> dict[str, Any]:
    body = {"chargerId": charger_id, "externalId": external_id}
    return dict(await api.ask("POST", "/api/charger", token=session.token, json=body))


async def unlink_charger(api: Api, session: Session, charger_id: str) -> None:
    await api.ask("DELETE", f"/api/charger/{charger_id}", token=session.token)


async def charger(api: Api, session: Session, charger_id: str, days: tuple[str, str], page: int) -> dict[str, Any]:
    """A linked charger: its state and uptime as Kazam answers them now (each may be unavailable: said so on the
    page), and the transactions the gateway acted on."""
    base = f"/api/charger/{charger_id}"
    state = await api.call("GET", f"{base}/state", token=session.token)
    if state.status == 404:
        raise Refusal(404, f"No charger {charger_id} linked in your organization")
    uptime = await api.call("GET", f"{base}/uptime", token=session.token, params={"from": days[0], "to": days[1]})
    query = {"pageNumber": page, "limit": domain.PAGE_SIZE}
    transactions = await api.call("GET", f"{base}/transactions", token=session.token, params=query)
    total = transactions.headers.get("x-total-count", "")
    return {
        "chargerId": charger_id,
        "state": state.body if state.ok else None,
        "stateProblem": "" if state.ok else domain.refusal_of(state.status, state.body)[0],
        "uptime": uptime.body if uptime.ok else None,
        "uptimeProblem": "" if uptime.ok else domain.refusal_of(uptime.status, uptime.body)[0],
        "transactions": list(transactions.body or []) if transactions.ok else [],
        "totalCount": int(total) if total.isdigit() else 0,
    }


# ---- a developer's devices in reservations --------------------------------------------------------------------


async def reserved_devices(api: Api, session: Session) -> dict[str, Any]:
    """The reservations holding (or having held) the organization's devices, each with those devices
    (`/api/device-group/of-my-devices`), and the reservations their certificates went to."""
    devices: list[dict[str, Any]] = []
    for page in range(1, domain.MAX_PAGES_READ + 1):
        listing = await _page_of(api, session, "/api/device/my", page, limit=100)
        devices += listing.get("devices") or []
        if page >= int(listing.get("totalPages") or 0):
            break
    by_id = {d.get("id"): d for d in devices}
    holding = await api.ask("GET", "/api/device-group/of-my-devices", token=session.token, params={"limit": 100})
    holders = [
        {**r, "devices": [by_id.get(i) or {"id": i, "externalId": f"#{i}"} for i in r.get("deviceIds") or []]}
        for r in holding.get("reservations") or []
    ]
    held = {i for r in holders if r.get("state") == "active" for i in r.get("deviceIds") or []}
    log = await api.ask(
        "GET", "/api/certificate-log/issuer/certifiedlogOfdevices", token=session.token, params={"limit": 1000}
    )
    return {
        "holders": holders,
        "holderCount": int(holding.get("totalCount") or 0),
        "heldCount": len(held),
        "deviceCount": len(devices),
        "reservations": domain.reservations_of(log.get("certificatelog") or []),
    }
