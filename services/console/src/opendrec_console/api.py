"""The console's pages: parse the form or query, check the session and CSRF token, call one use case, render.

Every page is server-rendered HTML that works without script; /console/static/console.js only adds live
progress and charts. A refusal of the API is shown next to the fields it names, with its message on top.
"""

from __future__ import annotations

import hmac
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from . import domain, services
from .client import Api, Refusal
from .session import COOKIE, Session, Sessions
from .settings import Settings

router = APIRouter(include_in_schema=False)
templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["energy"] = domain.kwh
templates.filters["day"] = lambda value: str(value or "")[:10]
templates.filters["instant"] = lambda value: str(value or "").replace("T", " ")[:16]
templates.filters["pairs"] = lambda values: [(value, value) for value in values]  # a select's options

_TOKEN = re.compile(r"[A-Za-z0-9_\-=]{8,200}")  # the one-time tokens identity mails
_JOB_ID = re.compile(r"[0-9a-fA-F-]{1,64}")
_API_USER_ID = re.compile(r"[A-Za-z0-9_\-]{1,100}")
_FILE_NAME = re.compile(r"[^A-Za-z0-9._\-]")
JobFetch = Callable[[Api, Session, str, int], Awaitable[dict[str, Any]]]


class NotSignedIn(Exception):
    """A page that needs a session was asked without one: answered with the sign-in page."""


# ---- request plumbing -----------------------------------------------------------------------------------------


def _api(request: Request) -> Api:
    return request.app.state.api


def _sessions(request: Request) -> Sessions:
    return request.app.state.sessions


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _session(request: Request) -> Session:
    return _sessions(request).open(request.cookies.get(COOKIE))


def _signed_in(request: Request) -> Session:
    session = _session(request)
    if not session.signed_in:
        raise NotSignedIn
    return session


def _keep(request: Request, response: Response, session: Session) -> Response:
    """The session back into its cookie: HttpOnly, SameSite=Strict, Secure off localhost, path /."""
    response.set_cookie(
        COOKIE,
        _sessions(request).seal(session),
        max_age=_sessions(request).max_age_s,
        httponly=True,
        samesite="strict",
        secure=_settings(request).secure_cookies(),
        path="/",
    )
    return response


def _render(request: Request, template: str, session: Session, http_status: int = 200, **context: Any) -> Response:
    notice, session.notice = session.notice, ""
    html = templates.get_template(template).render(session=session, notice=notice, path=request.url.path, **context)
    return _keep(request, HTMLResponse(html, status_code=http_status), session)


def _redirect(request: Request, to: str, session: Session, notice: str = "") -> Response:
    if notice:
        session.notice = notice
    return _keep(request, RedirectResponse(to, status_code=303), session)


async def _form(request: Request, session: Session) -> dict[str, str]:
    """The posted form's text fields (bounded), after checking its CSRF token against the session's."""
    form = await request.form()
    sent = form.get("csrf")
    if not isinstance(sent, str) or not hmac.compare_digest(sent, session.csrf):
        raise Refusal(403, "This form has expired; please send it again")
    return {k: domain.field_text(v) for k, v in form.items() if isinstance(v, str) and k != "csrf"}


def _refused(request: Request, template: str, session: Session, exc: Refusal, **context: Any) -> Response:
    if exc.status == 401 and session.signed_in:
        # the token expired or was revoked (sign-out elsewhere, new permissions): the session ends here too
        again = "/console/sign-in-key" if session.api_user_id else "/console/sign-in"
        return _redirect(request, again, Session(), f"{exc.message}")
    status = exc.status if 400 <= exc.status < 500 else 502
    return _render(request, template, session, status, error=exc.message, errors=exc.fields, **context)


Action = Callable[[Session, dict[str, str]], Awaitable[str]]


async def _button(request: Request, act: Action, back: str, failed: str, done: str = "") -> Response:
    """A form that is one button (a decision, a deletion): the CSRF token checked, `act` done with the form; then
    to `done` (or `back`) saying what it did, or to `back` saying why not."""
    session = _signed_in(request)
    try:
        notice = await act(session, await _form(request, session))
    except Refusal as exc:
        return _redirect(request, back, session, f"{failed}: {exc.message}")
    return _redirect(request, done or back, session, notice)


def _mailed_token(token: str) -> str:
    """A one-time token as a form sends it (confirmation, reset, invitation), refused next to its field when it is
    not one identity mails."""
    if not _TOKEN.fullmatch(token):
        raise Refusal(400, "That token is not one we sent", {"token": "Paste the token from the e-mail"})
    return token


def problem_page(request: Request, exc: Refusal) -> Response:
    """A refusal no page expected (the platform down, a 403 on a page not meant for this role)."""
    return _refused(request, "error.html", _session(request), exc)


def ask_to_sign_in(request: Request) -> Response:
    """A page that needs a session, asked without one (`NotSignedIn`)."""
    session = Session()
    session.notice = "Please sign in"
    return _redirect(request, "/console/sign-in", session)


_CHARGER_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_DEAD_LETTER = re.compile(r"([A-Za-z0-9._\-]{1,200})\|(\d{1,5})\|(\d{1,19})")  # topic|partition|offset


def _page(request: Request) -> int:
    return domain.page_number(request.query_params.get("page"))


def _paged(listing: dict[str, Any], page: int) -> dict[str, int]:
    """The pager's figures of a listing that tells its `totalCount`."""
    return {"page": page, "pages": domain.page_count(int(listing.get("totalCount") or 0))}


async def _chosen(request: Request, name: str, allowed: tuple[str, ...]) -> list[str]:
    """The values ticked of a group of checkboxes, only those offered, in the offered order."""
    ticked = set((await request.form()).getlist(name))
    return [value for value in allowed if value in ticked]


def _organization_id(request: Request) -> int | None:
    value = request.query_params.get("organizationId", "")
    return int(value) if value.isdigit() and 0 < int(value) < 2**31 else None


# ---- entry ----------------------------------------------------------------------------------------------------


@router.get("/")
async def root() -> Response:
    return RedirectResponse("/console/", status_code=303)


@router.get("/console")
@router.get("/console/")
async def home(request: Request) -> Response:
    session = _session(request)
    if not session.signed_in:
        return _redirect(request, "/console/sign-in", session)
    return _render(request, "home.html", session)


# ---- accounts -------------------------------------------------------------------------------------------------


@router.get("/console/register")
async def register_page(request: Request) -> Response:
    return _render(request, "register.html", _session(request), values={}, errors={})


@router.post("/console/register")
async def register(request: Request) -> Response:
    session = _session(request)
    try:
        form = await _form(request, session)
        if form.get("organizationType") == "ApiUser":
            answer = await services.register_api_user(_api(request), form)
            return _render(request, "api_user_key.html", session, answer=answer)
        if form.get("organizationType") not in domain.ORGANIZATION_TYPES:
            raise Refusal(400, "Choose the organization's type", {"organizationType": "Choose one"})
        await services.register(_api(request), form)
    except Refusal as exc:
        return _refused(request, "register.html", session, exc, values=await _values(request))
    notice = "Registered. We sent you an e-mail: open its link (or paste its token below) to confirm your address."
    return _redirect(request, "/console/confirm-email", session, notice)


async def _values(request: Request) -> dict[str, str]:
    """What the user typed, to fill the form again (never the passwords or the CSRF token)."""
    form = await request.form()
    hidden = {"csrf", "password", "confirmPassword", "oldPassword", "newPassword"}
    return {k: domain.field_text(v) for k, v in form.items() if isinstance(v, str) and k not in hidden}


@router.get("/console/confirm-email")
@router.get("/console/confirm-email/{token}")
async def confirm_page(request: Request, token: str = "") -> Response:
    # The link only fills the form: confirming is a POST, so mail scanners that open links change nothing.
    token = token if _TOKEN.fullmatch(token) else ""
    return _render(request, "confirm.html", _session(request), token=token, errors={})


@router.post("/console/confirm-email")
async def confirm(request: Request) -> Response:
    session = _session(request)
    try:
        form = await _form(request, session)
        token = _mailed_token(form.get("token", ""))
        message = await services.confirm_email(_api(request), token)
    except Refusal as exc:
        return _refused(request, "confirm.html", session, exc, token="")
    return _redirect(request, "/console/sign-in", session, f"{message}. You can sign in now.")


@router.get("/console/sign-in")
async def sign_in_page(request: Request) -> Response:
    return _render(request, "sign_in.html", _session(request), values={}, errors={})


@router.post("/console/sign-in")
async def sign_in(request: Request) -> Response:
    session = _session(request)
    try:
        form = await _form(request, session)
        fresh = await services.sign_in(_api(request), session, form.get("email", ""), form.get("password", ""))
    except Refusal as exc:
        return _refused(request, "sign_in.html", session, exc, values=await _values(request))
    return _redirect(request, "/console/", fresh, f"Signed in as {fresh.email}")


@router.get("/console/sign-in-key")
async def sign_in_key_page(request: Request) -> Response:
    return _render(request, "sign_in_key.html", _session(request), values={}, errors={})


@router.post("/console/sign-in-key")
async def sign_in_key(request: Request) -> Response:
    """An API user signs in with its private key file: used for one assertion, never stored or logged."""
    session = _session(request)
    try:
        form = await request.form()
        sent = form.get("csrf")
        if not isinstance(sent, str) or not hmac.compare_digest(sent, session.csrf):
            raise Refusal(403, "This form has expired; please send it again")
        given = form.get("apiUserId")
        api_user_id = domain.field_text(given if isinstance(given, str) else "")
        if not _API_USER_ID.fullmatch(api_user_id):
            raise Refusal(400, "Give your API user id", {"apiUserId": "The id shown with your key"})
        upload = form.get("key")
        if upload is None or isinstance(upload, str) or not upload.filename:
            raise Refusal(400, "Choose your private key file", {"key": "Choose the .pem file you downloaded"})
        pem = await upload.read(16 * 1024)
        fresh = await services.sign_in_with_key(_api(request), api_user_id, pem)
    except Refusal as exc:
        return _refused(request, "sign_in_key.html", session, exc, values=await _values(request))
    return _redirect(request, "/console/permissions", fresh, f"Signed in as API user {api_user_id}")


@router.get("/console/permissions")
async def permissions_page(request: Request) -> Response:
    session = _signed_in(request)
    found = await services.permissions(_api(request), session)
    return _render(request, "permissions.html", session, modules=domain.API_USER_MODULES,
                   choices=domain.PERMISSIONS, errors={}, **found)  # fmt: skip


@router.post("/console/permissions")
async def request_permissions(request: Request) -> Response:
    session = _signed_in(request)
    try:
        form = await _form(request, session)
        wanted = [p for p in (await request.form()).getlist("permissions") if p in domain.PERMISSIONS]
        module = form.get("module", "")
        if module not in domain.API_USER_MODULES:
            raise Refusal(400, "Choose a module", {"module": "Choose one"})
        if not wanted:
            raise Refusal(400, "Choose at least one permission", {"permissions": "Choose at least one"})
        answer = await services.request_permissions(_api(request), session, module, [str(p) for p in wanted])
        session.requested = str(answer.get("status") or "Request")
    except Refusal as exc:
        found = await services.permissions(_api(request), session) if exc.status != 401 else {}
        return _refused(request, "permissions.html", session, exc, modules=domain.API_USER_MODULES,
                        choices=domain.PERMISSIONS, **found)  # fmt: skip
    return _redirect(request, "/console/permissions", session, f"Requested {module}: an administrator decides")


@router.post("/console/sign-out")
async def sign_out(request: Request) -> Response:
    session = _session(request)
    try:
        await _form(request, session)
        await services.sign_out(_api(request), session)
    except Refusal:
        pass  # the session ends here whatever identity said; its token expires soon anyway
    return _redirect(request, "/console/sign-in", Session(), "Signed out")


@router.get("/console/forgot-password")
async def forgot_page(request: Request) -> Response:
    return _render(request, "forgot.html", _session(request), values={}, errors={})


@router.post("/console/forgot-password")
async def forgot(request: Request) -> Response:
    session = _session(request)
    try:
        form = await _form(request, session)
        await services.forgot_password(_api(request), form.get("email", ""))
    except Refusal as exc:
        return _refused(request, "forgot.html", session, exc, values=await _values(request))
    notice = "If that address has an account, we sent it a reset link."
    return _redirect(request, "/console/reset-password", session, notice)


@router.get("/console/reset-password")
@router.get("/console/reset-password/{token}")
async def reset_page(request: Request, token: str = "") -> Response:
    token = token if _TOKEN.fullmatch(token) else ""  # a mail's link only fills the form
    return _render(request, "reset.html", _session(request), token=token, errors={})


@router.post("/console/reset-password")
async def reset(request: Request) -> Response:
    session = _session(request)
    try:
        form = await _form(request, session)
        token = _mailed_token(form.get("token", ""))
        await services.reset_password(
            _api(request), token, form.get("newPassword", ""), form.get("confirmPassword", "")
        )
    except Refusal as exc:
        return _refused(request, "reset.html", session, exc, token="")
    return _redirect(request, "/console/sign-in", session, "Your password is changed. Sign in with the new one.")


@router.get("/console/profile")
async def profile_page(request: Request) -> Response:
    session = _signed_in(request)
    try:
        me = await services.profile(_api(request), session)
    except Refusal as exc:
        return _refused(request, "profile.html", session, exc, me={})
    return _render(request, "profile.html", session, me=me, errors={})


@router.post("/console/profile")
async def update_profile(request: Request) -> Response:
    session = _signed_in(request)
    try:
        form = await _form(request, session)
        me = await services.update_profile(_api(request), session, form.get("firstName", ""), form.get("lastName", ""))
    except Refusal as exc:
        return _refused(request, "profile.html", session, exc, me=await _values(request))
    session.name = f"{me.get('firstName', '')} {me.get('lastName', '')}".strip()
    return _redirect(request, "/console/profile", session, "Profile saved")


@router.post("/console/profile/password")
async def change_password(request: Request) -> Response:
    session = _signed_in(request)
    try:
        form = await _form(request, session)
        await services.change_password(
            _api(request),
            session,
            form.get("oldPassword", ""),
            form.get("newPassword", ""),
            form.get("confirmPassword", ""),
        )
    except Refusal as exc:
        me = await services.profile(_api(request), session) if exc.status != 401 else {}
        return _refused(request, "profile.html", session, exc, me=me)
    return _redirect(request, "/console/profile", session, "Password changed")


# ---- devices --------------------------------------------------------------------------------------------------

# commissioningDateFrom/To: bare dates (YYYY-MM-DD), a bare upper bound including that day (the API's rule)
DATE_FILTERS = ("commissioningDateFrom", "commissioningDateTo")
DEVICE_FILTERS = ("countryCode", "fuelCode", "deviceTypeCode", "capacity", "offTaker", *DATE_FILTERS)


def _filters(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    return {n: domain.field_text(request.query_params.get(n), limit=60) for n in names if request.query_params.get(n)}


@router.get("/console/devices")
async def devices_page(request: Request) -> Response:
    session = _signed_in(request)
    page = _page(request)
    filters = _filters(request, DEVICE_FILTERS)
    listing = await services.devices(_api(request), session, filters, page)
    choices = await services.device_choices(_api(request))
    return _render(
        request, "devices.html", session, devices=listing.get("devices") or [],
        total=int(listing.get("totalCount") or 0), filters=filters, choices=choices, **_paged(listing, page),
    )  # fmt: skip


@router.get("/console/devices/new")
async def new_device_page(request: Request) -> Response:
    session = _signed_in(request)
    choices = await services.device_choices(_api(request))
    return _render(request, "device_form.html", session, choices=choices, values={}, errors={}, device=None)


@router.post("/console/devices/new")
async def new_device(request: Request) -> Response:
    session = _signed_in(request)
    try:
        form = await _form(request, session)
        created = await services.register_device(_api(request), session, form)
    except Refusal as exc:
        choices = await services.device_choices(_api(request))
        return _refused(
            request, "device_form.html", session, exc, choices=choices, values=await _values(request), device=None
        )
    return _redirect(
        request, f"/console/devices/{created['id']}", session, f"Device {created['externalId']} registered"
    )


@router.get("/console/devices/{device_id:int}")
async def device_page(request: Request, device_id: int) -> Response:
    session = _signed_in(request)
    found = await services.device(_api(request), session, device_id)
    granularity = "month" if request.query_params.get("per") == "month" else "day"
    chart = await services.energy(_api(request), session, found["externalId"], granularity)
    return _render(request, "device.html", session, device=found, chart=chart, granularity=granularity, errors={})


@router.get("/console/devices/{device_id:int}/edit")
async def edit_device_page(request: Request, device_id: int) -> Response:
    session = _signed_in(request)
    found = await services.device(_api(request), session, device_id)
    choices = await services.device_choices(_api(request))
    values = {k: str(v) for k, v in found.items() if v is not None}
    values["commissioningDate"] = str(found.get("commissioningDate") or "")[:16]
    return _render(request, "device_form.html", session, choices=choices, values=values, errors={}, device=found)


@router.post("/console/devices/{device_id:int}/edit")
async def edit_device(request: Request, device_id: int) -> Response:
    session = _signed_in(request)
    try:
        form = await _form(request, session)
        found = await services.device(_api(request), session, device_id)
        await services.update_device(_api(request), session, found["externalId"], form)
    except Refusal as exc:
        choices = await services.device_choices(_api(request))
        values = await _values(request)
        return _refused(
            request, "device_form.html", session, exc, choices=choices, values=values, device={"id": device_id}
        )
    return _redirect(request, f"/console/devices/{device_id}", session, "Device saved")


@router.post("/console/devices/{device_id:int}/delete")
async def delete_device(request: Request, device_id: int) -> Response:
    async def delete(session: Session, form: dict[str, str]) -> str:
        await services.delete_device(_api(request), session, device_id)
        return "Device deleted"

    return await _button(request, delete, f"/console/devices/{device_id}", "Not deleted", done="/console/devices")


# ---- reads ----------------------------------------------------------------------------------------------------


@router.get("/console/reads")
async def reads_page(request: Request) -> Response:
    session = _signed_in(request)
    try:
        jobs = await services.read_jobs(_api(request), session)
    except Refusal as exc:
        return _refused(request, "reads.html", session, exc, jobs=[])
    return _render(request, "reads.html", session, jobs=jobs, errors={})


async def _csv_upload(request: Request, session: Session, what: str) -> tuple[str, bytes]:
    """The posted CSV file (field `file`), bounded, after the CSRF check: (a safe file name, its bytes)."""
    form = await request.form()
    sent = form.get("csrf")
    if not isinstance(sent, str) or not hmac.compare_digest(sent, session.csrf):
        raise Refusal(403, "This form has expired; please send it again")
    upload = form.get("file")
    if upload is None or isinstance(upload, str) or not upload.filename:
        raise Refusal(400, f"Choose a CSV file of {what}", {"file": "Choose a CSV file"})
    limit = _settings(request).upload_limit_bytes
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise Refusal(413, f"The file is larger than {limit // (1 << 20)} MiB", {"file": "Too large"})
    return _FILE_NAME.sub("_", upload.filename)[:100] or f"{what}.csv", data


async def _job_progress(request: Request, job_id: str, fetch: JobFetch) -> Response:
    """A job's progress for console.js (same origin, the session cookie; never the token): a bare status when it
    cannot be read (the script then reloads the page, which says why)."""
    session = _session(request)
    if not session.signed_in:
        return Response(status_code=401)
    try:
        _check_job_id(job_id)
        job = await fetch(_api(request), session, job_id, 1)
    except Refusal as exc:
        return Response(status_code=exc.status)
    finished = job.get("finishedAt") is not None or job.get("status") in ("done", "failed", "completed")
    body = {"progress": job.get("progress") or 0, "finished": finished, "status": job.get("status")}
    return Response(content=json.dumps(body), media_type="application/json")


@router.post("/console/reads")
async def upload_reads(request: Request) -> Response:
    session = _signed_in(request)
    try:
        name, data = await _csv_upload(request, session, "reads")
        job = await services.upload_reads(_api(request), session, name, data)
    except Refusal as exc:
        jobs = await services.read_jobs(_api(request), _session(request)) if exc.status != 401 else []
        return _refused(request, "reads.html", session, exc, jobs=jobs)
    return _redirect(request, f"/console/reads/jobs/{job['jobId']}", session, "Reads uploaded: they are being checked")


def _check_job_id(job_id: str) -> None:
    if not _JOB_ID.fullmatch(job_id):
        raise Refusal(404, "No such upload")


@router.get("/console/reads/jobs/{job_id}")
async def read_job_page(request: Request, job_id: str) -> Response:
    session = _signed_in(request)
    _check_job_id(job_id)
    job = await services.read_job(_api(request), session, job_id, _page(request))
    return _render(request, "read_job.html", session, job=job)


@router.get("/console/reads/jobs/{job_id}/progress")
async def read_job_progress(request: Request, job_id: str) -> Response:
    return await _job_progress(request, job_id, services.read_job)


# ---- bulk device onboarding -----------------------------------------------------------------------------------


@router.get("/console/devices/bulk")
async def device_bulk_page(request: Request) -> Response:
    session = _signed_in(request)
    try:
        jobs = await services.device_jobs(_api(request), session)
    except Refusal as exc:
        return _refused(request, "devices_bulk.html", session, exc, jobs=[])
    return _render(request, "devices_bulk.html", session, jobs=jobs, errors={})


@router.post("/console/devices/bulk")
async def device_bulk(request: Request) -> Response:
    session = _signed_in(request)
    try:
        name, data = await _csv_upload(request, session, "devices")
        job = await services.upload_devices(_api(request), session, name, data)
    except Refusal as exc:
        jobs = await services.device_jobs(_api(request), session) if exc.status != 401 else []
        return _refused(request, "devices_bulk.html", session, exc, jobs=jobs)
    return _redirect(
        request, f"/console/devices/bulk/{job['jobId']}", session, "Devices uploaded: they are being registered"
    )


@router.get("/console/devices/bulk/{job_id}")
async def device_job_page(request: Request, job_id: str) -> Response:
    session = _signed_in(request)
    _check_job_id(job_id)
    page = _page(request)
    job = await services.device_job(_api(request), session, job_id, page)
    return _render(request, "device_job.html", session, job=job)


@router.get("/console/devices/bulk/{job_id}/progress")
async def device_job_progress(request: Request, job_id: str) -> Response:
    return await _job_progress(request, job_id, services.device_job)


# ---- reservations ---------------------------------------------------------------------------------------------

AVAILABLE_FILTERS = ("countryCode", "fuelCode", "deviceTypeCode", "capacity", "offTaker", *DATE_FILTERS)


@router.get("/console/reservations")
async def reservations_page(request: Request) -> Response:
    session = _signed_in(request)
    page = _page(request)
    listing = await services.reservations(_api(request), session, page)
    groups = listing.get("deviceGroups") or []
    return _render(request, "reservations.html", session, groups=groups, **_paged(listing, page))


async def _new_reservation(request: Request, session: Session, status: int = 200, **context: Any) -> Response:
    page = _page(request)
    filters = _filters(request, AVAILABLE_FILTERS)
    listing = await services.available_devices(_api(request), session, filters, page)
    choices = await services.device_choices(_api(request))
    context.setdefault("values", {})
    context.setdefault("errors", {})
    return _render(
        request, "reservation_form.html", session, status, devices=listing.get("devices") or [], filters=filters,
        choices=choices, frequencies=domain.FREQUENCIES, **_paged(listing, page), **context,
    )  # fmt: skip


@router.get("/console/reservations/new")
async def new_reservation_page(request: Request) -> Response:
    session = _signed_in(request)
    return await _new_reservation(request, session)


@router.post("/console/reservations/new")
async def new_reservation(request: Request) -> Response:
    session = _signed_in(request)
    try:
        form = await _form(request, session)
        raw = (await request.form()).getlist("deviceIds")
        device_ids = [int(v) for v in raw if isinstance(v, str) and v.isdigit()][:1000]
        created = await services.reserve(_api(request), session, form, device_ids)
    except Refusal as exc:
        return await _new_reservation(
            request, session, exc.status if 400 <= exc.status < 500 else 502, error=exc.message, errors=exc.fields,
            values=await _values(request),
        )  # fmt: skip
    return _redirect(
        request, f"/console/reservations/{created['id']}", session, f"Reservation {created['name']} created"
    )


@router.get("/console/reservations/{reservation_id:int}")
async def reservation_page(request: Request, reservation_id: int) -> Response:
    session = _signed_in(request)
    found = await services.reservation(_api(request), session, reservation_id)
    return _render(request, "reservation.html", session, **found)


@router.get("/console/reservations/{reservation_id:int}/certificates.csv")
async def export_certificates(request: Request, reservation_id: int) -> Response:
    session = _signed_in(request)
    found = await services.reservation(_api(request), session, reservation_id)
    answer = await services.export_certificates(_api(request), session, str(found["uid"]))
    name = f"certificates-reservation-{reservation_id}.csv"
    return Response(
        answer.content,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post("/console/reservations/{reservation_id:int}/end")
async def end_reservation(request: Request, reservation_id: int) -> Response:
    async def end(session: Session, form: dict[str, str]) -> str:
        await services.end_reservation(_api(request), session, reservation_id)
        return "Reservation ended"

    return await _button(request, end, f"/console/reservations/{reservation_id}", "Not ended")


# ---- admin ----------------------------------------------------------------------------------------------------


@router.get("/console/admin/api-users")
async def api_users_page(request: Request) -> Response:
    session = _signed_in(request)
    status = request.query_params.get("status", "Request")
    status = status if status in ("Request", "Active", "Deactive") else "Request"
    page = _page(request)
    listing = await services.api_users(_api(request), session, status, page)
    users = listing.get("apiusers") or []
    return _render(request, "api_users.html", session, users=users, status=status, **_paged(listing, page))


@router.post("/console/admin/api-users/{api_user_id}")
async def decide_api_user(request: Request, api_user_id: str) -> Response:
    async def decide(session: Session, form: dict[str, str]) -> str:
        decision = form.get("status", "")
        if decision not in ("Active", "Deactive") or not _API_USER_ID.fullmatch(api_user_id):
            raise Refusal(400, "Approve or deny")
        await services.decide_api_user(_api(request), session, api_user_id, decision)
        return f"API user {api_user_id} {'approved' if decision == 'Active' else 'denied'}"

    return await _button(request, decide, "/console/admin/api-users", "Not changed")


@router.get("/console/admin/organizations")
async def organizations_page(request: Request) -> Response:
    session = _signed_in(request)
    wanted = _organization_id(request)
    if wanted:  # "open by id"
        return RedirectResponse(f"/console/admin/organizations/{wanted}", status_code=303)
    kind = request.query_params.get("organizationType", "")
    kind = kind if kind in domain.ORGANIZATION_KINDS else ""
    page = _page(request)
    orgs = await services.organizations(_api(request), session, kind, page)
    people = await services.users(_api(request), session, 1)
    return _render(
        request, "organizations.html", session, organizations=orgs.get("organizations") or [],
        users=people.get("users") or [], kind=kind, kinds=domain.ORGANIZATION_KINDS, **_paged(orgs, page),
    )  # fmt: skip


# ---- the registry ---------------------------------------------------------------------------------------------

_ONCE = re.compile(r"[0-9a-f]{32}")
_HOLDING_ID = re.compile(r"[0-9a-fA-F-]{1,64}")
TRANSFER_ACTIONS = {"accept": "accepted", "reject": "rejected", "cancel": "cancelled"}  # and what each did


@router.get("/console/certificates")
async def certificates_page(request: Request) -> Response:
    session = _signed_in(request)
    page = _page(request)
    listing = await services.holdings(_api(request), session, page)
    moving = await services.transfers(_api(request), session)
    return _render(
        request, "certificates.html", session, holdings=listing.get("holdings") or [], transfers=moving,
        **_paged(listing, page),
    )  # fmt: skip


async def _holding_form(request: Request, holding_id: str, kind: str) -> Response:
    session = _signed_in(request)
    if not _HOLDING_ID.fullmatch(holding_id):
        raise Refusal(404, "No such holding")
    found = await services.holding(_api(request), session, holding_id)
    # one key per form shown: sending it twice does the operation once
    return _render(request, f"{kind}.html", session, holding=found, values={}, errors={}, once=uuid.uuid4().hex)


async def _holding_post(request: Request, holding_id: str, kind: str) -> Response:
    session = _signed_in(request)
    try:
        form = await _form(request, session)
        if not _HOLDING_ID.fullmatch(holding_id):
            raise Refusal(404, "No such holding")
        once = form.get("once", "")
        if not _ONCE.fullmatch(once):
            raise Refusal(400, "This form has expired; please open it again")
        if kind == "retire":
            await services.retire(_api(request), session, holding_id, form, once)
            notice = f"Retired {domain.kwh(int(form.get('energyWh') or 0))} for {form.get('beneficiary', '')}"
        else:
            await services.transfer(_api(request), session, holding_id, form, once)
            notice = "Transfer offered: it completes when the receiving organization accepts it"
    except Refusal as exc:
        found = await services.holding(_api(request), session, holding_id) if exc.status != 401 else {}
        values = await _values(request)
        return _refused(request, f"{kind}.html", session, exc, holding=found, values=values, once=values.get("once"))
    return _redirect(request, "/console/certificates", session, notice)


@router.get("/console/certificates/{holding_id}/retire")
async def retire_page(request: Request, holding_id: str) -> Response:
    return await _holding_form(request, holding_id, "retire")


@router.post("/console/certificates/{holding_id}/retire")
async def retire(request: Request, holding_id: str) -> Response:
    return await _holding_post(request, holding_id, "retire")


@router.get("/console/certificates/{holding_id}/transfer")
async def transfer_page(request: Request, holding_id: str) -> Response:
    return await _holding_form(request, holding_id, "transfer")


@router.post("/console/certificates/{holding_id}/transfer")
async def transfer(request: Request, holding_id: str) -> Response:
    return await _holding_post(request, holding_id, "transfer")


@router.post("/console/transfers/{transfer_id}/{action}")
async def decide_transfer(request: Request, transfer_id: str, action: str) -> Response:
    async def decide(session: Session, form: dict[str, str]) -> str:
        if action not in TRANSFER_ACTIONS or not _HOLDING_ID.fullmatch(transfer_id):
            raise Refusal(404, "No such transfer")
        await services.decide_transfer(_api(request), session, transfer_id, action)
        return f"Transfer {TRANSFER_ACTIONS[action]}"

    return await _button(request, decide, "/console/certificates", "Not done")


@router.get("/console/admin/acl")
async def acl_page(request: Request) -> Response:
    session = _signed_in(request)
    page = _page(request)
    listing = await services.acl_modules(_api(request), session, page)
    modules = listing.get("aclmodules") or []
    return _render(request, "acl.html", session, modules=modules, **_paged(listing, page))


@router.get("/console/devices/certificates")
async def device_certificates_page(request: Request) -> Response:
    session = _signed_in(request)
    page = _page(request)
    log = await services.device_certificates(_api(request), session, page)
    return _render(
        request, "device_certificates.html", session, entries=log.get("certificatelog") or [],
        totalEnergyWh=log.get("totalEnergyWh") or 0, **_paged(log, page),
    )  # fmt: skip


# ---- invitations ----------------------------------------------------------------------------------------------


@router.get("/console/invitation")
@router.get("/console/invitation/{token}")
async def invitation_page(request: Request, token: str = "") -> Response:
    # The mail's link only fills the form: nothing happens until the invitee sends it.
    token = token if _TOKEN.fullmatch(token) else ""
    return _render(request, "invitation.html", _session(request), values={"token": token}, errors={})


@router.post("/console/invitation")
async def register_invited(request: Request) -> Response:
    session = _session(request)
    try:
        form = await _form(request, session)
        token = _mailed_token(form.get("token", ""))
        joined = await services.register_invited(_api(request), token, form)
    except Refusal as exc:
        return _refused(request, "invitation.html", session, exc, values=await _values(request))
    organization = (joined.get("organization") or {}).get("name", "")
    notice = f"Welcome to {organization}. Sign in with {joined.get('email', 'your e-mail')} and your new password."
    return _redirect(request, "/console/sign-in", session, notice)


async def _invitations(request: Request, session: Session) -> dict[str, Any]:
    page = _page(request)
    sent = await services.sent_invitations(_api(request), session, page)
    return {
        "received": await services.my_invitations(_api(request), session),
        "sent": None if sent is None else sent.get("invitations") or [],
        "roles": domain.INVITED_ROLES.get(session.organization_type, ()),
        **_paged(sent or {}, page),
    }


@router.get("/console/invitations")
async def invitations_page(request: Request) -> Response:
    session = _signed_in(request)
    context = await _invitations(request, session)
    return _render(request, "invitations.html", session, values={}, errors={}, **context)


@router.post("/console/invitations")
async def invite(request: Request) -> Response:
    session = _signed_in(request)
    try:
        form = await _form(request, session)
        sent = await services.invite(_api(request), session, form.get("email", ""), form.get("role", ""))
    except Refusal as exc:
        context = await _invitations(request, session)
        return _refused(request, "invitations.html", session, exc, values=await _values(request), **context)
    return _redirect(request, "/console/invitations", session, f"Invitation sent to {sent.get('email', '')}")


@router.post("/console/invitations/{invitation_id:int}")
async def answer_invitation(request: Request, invitation_id: int) -> Response:
    session = _signed_in(request)
    try:
        form = await _form(request, session)
        status = form.get("status", "")
        if status not in ("Accepted", "Rejected"):
            raise Refusal(400, "Accept or reject")
        answered = await services.answer_invitation(_api(request), session, invitation_id, status)
    except Refusal as exc:
        return _redirect(request, "/console/invitations", session, f"Not answered: {exc.message}")
    if status == "Rejected":
        return _redirect(request, "/console/invitations", session, "Invitation rejected")
    # Joining another organization revokes the user's tokens: a new session, as the new member.
    organization = (answered.get("organization") or {}).get("name", "")
    notice = f"You joined {organization} as {answered.get('role', '')}. Sign in again to work there."
    return _redirect(request, "/console/sign-in", Session(), notice)


# ---- admin: dead letters and jobs -----------------------------------------------------------------------------


@router.get("/console/admin/dead-letters")
async def dead_letters_page(request: Request) -> Response:
    session = _signed_in(request)
    topic = domain.field_text(request.query_params.get("topic"), limit=200)
    page = _page(request)
    listing = await services.dead_letters(_api(request), session, topic, page)
    return _render(
        request, "dead_letters.html", session, letters=listing.get("deadLetters") or [], topic=topic,
        total=listing.get("totalItems") or 0, waiting=listing.get("waitingItems") or 0, page=page,
        pages=int(listing.get("totalPages") or 1),
    )  # fmt: skip


@router.post("/console/admin/dead-letters/replay")
async def replay_dead_letters(request: Request) -> Response:
    async def replay(session: Session, form: dict[str, str]) -> str:
        chosen = [_DEAD_LETTER.fullmatch(v) for v in (await request.form()).getlist("letter") if isinstance(v, str)]
        positions = [{"topic": m[1], "partition": int(m[2]), "offset": int(m[3])} for m in chosen if m][:500]
        if not positions:
            raise Refusal(400, "Choose the dead letters to replay")
        done = await services.replay_dead_letters(_api(request), session, positions)
        return f"Replayed {int(done.get('replayed') or 0)} dead letter(s)"

    return await _button(request, replay, "/console/admin/dead-letters", "Not replayed")


@router.get("/console/admin/jobs")
async def jobs_page(request: Request) -> Response:
    session = _signed_in(request)
    organization_id = _organization_id(request)
    page = _page(request)
    onboarding = await services.onboarding_jobs(_api(request), session, organization_id, page)
    imports = await services.import_jobs(_api(request), session, organization_id, 1) if organization_id else []
    return _render(
        request, "admin_jobs.html", session, device_jobs=onboarding.get("csvJobs") or [], read_jobs=imports,
        organization_id=organization_id, **_paged(onboarding, page),
    )  # fmt: skip


# ---- admin: organizations and users ---------------------------------------------------------------------------


async def _organization(request: Request, session: Session, organization_id: int) -> dict[str, Any]:
    page = _page(request)
    found = await services.organization(_api(request), session, organization_id)
    people = await services.organization_users(_api(request), session, organization_id, page)
    return {
        "organization": found,
        "users": people.get("users") or [],
        "statuses": domain.ORGANIZATION_STATUSES,
        **_paged(people, page),
    }


@router.get("/console/admin/organizations/{organization_id:int}")
async def organization_page(request: Request, organization_id: int) -> Response:
    session = _signed_in(request)
    context = await _organization(request, session, organization_id)
    values = {k: str(v or "") for k, v in context["organization"].items()}
    return _render(request, "organization.html", session, values=values, errors={}, **context)


@router.post("/console/admin/organizations/{organization_id:int}")
async def update_organization(request: Request, organization_id: int) -> Response:
    session = _signed_in(request)
    try:
        form = await _form(request, session)
        await services.update_organization(_api(request), session, organization_id, form)
    except Refusal as exc:
        context = await _organization(request, session, organization_id)
        return _refused(request, "organization.html", session, exc, values=await _values(request), **context)
    return _redirect(request, f"/console/admin/organizations/{organization_id}", session, "Organization saved")


@router.get("/console/admin/users/{user_id:int}")
async def user_page(request: Request, user_id: int) -> Response:
    session = _signed_in(request)
    found = await services.user(_api(request), session, user_id)
    values = {k: str(v or "") for k, v in found.items()}
    return _render(request, "user.html", session, user=found, values=values, errors={}, statuses=domain.USER_STATUSES)


@router.post("/console/admin/users/{user_id:int}")
async def update_user(request: Request, user_id: int) -> Response:
    session = _signed_in(request)
    try:
        form = await _form(request, session)
        await services.update_user(_api(request), session, user_id, form)
    except Refusal as exc:
        found = await services.user(_api(request), session, user_id)
        return _refused(
            request, "user.html", session, exc, user=found, values=await _values(request),
            statuses=domain.USER_STATUSES,
        )  # fmt: skip
    return _redirect(request, f"/console/admin/users/{user_id}", session, "User saved")


# ---- admin: ACL modules and grants ----------------------------------------------------------------------------


async def _acl_module(request: Request, session: Session, module_id: int) -> dict[str, Any]:
    page = _page(request)
    module = await services.acl_module(_api(request), session, module_id)
    held = await services.grants(_api(request), session, module_id, page)
    return {
        "module": module,
        "grants": held.get("permissions") or [],
        "choices": domain.PERMISSIONS,
        "statuses": domain.MODULE_STATUSES,
        **_paged(held, page),
    }


@router.get("/console/admin/acl/{module_id:int}")
async def acl_module_page(request: Request, module_id: int) -> Response:
    session = _signed_in(request)
    context = await _acl_module(request, session, module_id)
    return _render(request, "acl_module.html", session, values={}, errors={}, **context)


@router.post("/console/admin/acl/{module_id:int}")
async def update_acl_module(request: Request, module_id: int) -> Response:
    session = _signed_in(request)
    try:
        form = await _form(request, session)
        offered = await _chosen(request, "permissions", domain.PERMISSIONS)
        await services.update_acl_module(
            _api(request), session, module_id, form.get("description", ""), offered, form.get("status", "")
        )
    except Refusal as exc:
        context = await _acl_module(request, session, module_id)
        return _refused(request, "acl_module.html", session, exc, values={}, **context)
    return _redirect(request, f"/console/admin/acl/{module_id}", session, "Module saved")


@router.post("/console/admin/acl/{module_id:int}/grants")
async def grant(request: Request, module_id: int) -> Response:
    session = _signed_in(request)
    try:
        form = await _form(request, session)
        given = await _chosen(request, "grant", domain.PERMISSIONS)
        entity_type, entity_id = form.get("entityType", ""), form.get("entityId", "")
        await services.grant(_api(request), session, module_id, entity_type, entity_id, given)
    except Refusal as exc:
        context = await _acl_module(request, session, module_id)
        return _refused(request, "acl_module.html", session, exc, values=await _values(request), **context)
    notice = f"Granted {', '.join(given)} to {entity_type} {entity_id}"
    return _redirect(request, f"/console/admin/acl/{module_id}", session, notice)


@router.post("/console/admin/acl/{module_id:int}/grants/{grant_id:int}")
async def change_grant(request: Request, module_id: int, grant_id: int) -> Response:
    async def change(session: Session, form: dict[str, str]) -> str:
        if form.get("action") == "revoke":
            await services.revoke_grant(_api(request), session, grant_id)
            return f"Grant {grant_id} revoked"
        given = await _chosen(request, f"grant-{grant_id}", domain.PERMISSIONS)
        await services.change_grant(_api(request), session, grant_id, given)
        return f"Grant {grant_id} saved"

    return await _button(request, change, f"/console/admin/acl/{module_id}", "Not changed")


# ---- EV chargers (Kazam) --------------------------------------------------------------------------------------


async def _chargers(request: Request, session: Session) -> dict[str, Any]:
    page = _page(request)
    links = await services.charger_links(_api(request), session, page)
    account = await services.kazam_account(_api(request), session)
    return {"links": links["links"], "account": account, **_paged(links, page)}


@router.get("/console/chargers")
async def chargers_page(request: Request) -> Response:
    session = _signed_in(request)
    context = await _chargers(request, session)
    return _render(request, "chargers.html", session, values={}, errors={}, **context)


@router.post("/console/chargers/kazam")
async def register_kazam(request: Request) -> Response:
    session = _signed_in(request)
    try:
        form = await _form(request, session)
        await services.register_kazam(_api(request), session, form.get("token", ""), form.get("baseUrl", ""))
    except Refusal as exc:
        context = await _chargers(request, session)
        values = {k: v for k, v in (await _values(request)).items() if k != "token"}
        return _refused(request, "chargers.html", session, exc, values=values, **context)
    return _redirect(request, "/console/chargers", session, "Kazam credentials saved")


@router.post("/console/chargers/kazam/forget")
async def forget_kazam(request: Request) -> Response:
    async def forget(session: Session, form: dict[str, str]) -> str:
        await services.forget_kazam(_api(request), session)
        return "Kazam credentials removed"

    return await _button(request, forget, "/console/chargers", "Not removed")


@router.post("/console/chargers")
async def link_charger(request: Request) -> Response:
    session = _signed_in(request)
    try:
        form = await _form(request, session)
        linked = await services.link_charger(
            _api(request), session, form.get("chargerId", ""), form.get("externalId", "")
        )
    except Refusal as exc:
        context = await _chargers(request, session)
        return _refused(request, "chargers.html", session, exc, values=await _values(request), **context)
    notice = f"Charger {linked.get('chargerId')} linked to {linked.get('externalId')}"
    return _redirect(request, f"/console/chargers/{linked.get('chargerId')}", session, notice)


def _charger_id(charger_id: str) -> str:
    if not _CHARGER_ID.fullmatch(charger_id):
        raise Refusal(404, f"No charger {charger_id[:64]} linked in your organization")
    return charger_id


@router.post("/console/chargers/{charger_id}/unlink")
async def unlink_charger(request: Request, charger_id: str) -> Response:
    async def unlink(session: Session, form: dict[str, str]) -> str:
        await services.unlink_charger(_api(request), session, _charger_id(charger_id))
        return f"Charger {charger_id} unlinked"

    return await _button(request, unlink, "/console/chargers", "Not unlinked")


@router.get("/console/chargers/{charger_id}")
async def charger_page(request: Request, charger_id: str) -> Response:
    session = _signed_in(request)
    today = datetime.now(UTC).date()
    first = domain.day(request.query_params.get("from")) or (today - timedelta(days=6)).isoformat()
    last = domain.day(request.query_params.get("to")) or today.isoformat()
    page = _page(request)
    found = await services.charger(_api(request), session, _charger_id(charger_id), (first, last), page)
    return _render(request, "charger.html", session, charger=found, days=(first, last), **_paged(found, page))


# ---- a developer's devices in reservations --------------------------------------------------------------------


@router.get("/console/devices/reservations")
async def device_reservations_page(request: Request) -> Response:
    session = _signed_in(request)
    found = await services.reserved_devices(_api(request), session)
    return _render(request, "device_reservations.html", session, **found)
