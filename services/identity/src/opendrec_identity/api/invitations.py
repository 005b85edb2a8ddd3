"""Invitations over HTTP: parse, authorize, call a use case (services/invitations.py), answer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from opendrec_kit import CurrentPrincipal, UoW
from opendrec_kit.organizations import Acting, acting_for
from opendrec_kit.paging import Page

from ..bodies import Answer, InvitationOut, InvitationsPage, Invite, InvitedRegistration, UserOut
from ..services import invitations as use_cases
from .deps import Ident, Paging
from .params import IdPath

router = APIRouter(tags=["invitation"])


def _organization(acting: Acting) -> int:
    """The organization named, else the caller's own (the use case checks the caller manages it)."""
    return acting.organization_id or acting.user.organization_id


@router.post("/api/invitation", status_code=201, response_model=InvitationOut)
async def invite(
    body: Invite,
    uow: UoW,
    identity: Ident,
    acting: Acting = acting_for("INVITATION_MANAGEMENT_CRUDL", "Write"),
) -> dict[str, Any]:
    """Invite an e-mail address to join an organization (default: the caller's) with a role; a mail is sent to it."""
    return await use_cases.invite(uow, identity, acting.user, _organization(acting), body)


@router.get("/api/invitation", response_model=InvitationsPage)
async def invitations(
    uow: UoW,
    acting: Acting = acting_for("INVITATION_MANAGEMENT_CRUDL", "Read"),
    page: Page = Paging,
) -> dict[str, Any]:
    """The invitations an organization (default: the caller's) sent, a page at a time."""
    return await use_cases.invitations(uow, acting.user, _organization(acting), page)


@router.get("/api/invitation/By_email", response_model=list[InvitationOut])
async def my_invitations(principal: CurrentPrincipal, uow: UoW) -> list[dict[str, Any]]:
    """The invitations sent to the caller's e-mail address (from any organization; answered ones too), newest
    first, at most 100: the ids to accept or reject with PUT /api/invitation/{id}. Any signed-in caller (D-REC asks
    INVITATION_MANAGEMENT_CRUDL Read, which the roles an invitation may move, DeviceOwner, SubBuyer and User,
    do not hold); it shows only the caller's own."""
    return await use_cases.my_invitations(uow, principal)


@router.put("/api/invitation/{invitationId}", response_model=InvitationOut)
async def answer(
    invitationId: IdPath, body: Answer, principal: CurrentPrincipal, uow: UoW, identity: Ident
) -> dict[str, Any]:
    """Accept or reject an invitation sent to the caller's e-mail address. Accepting moves the caller
    into the inviting organization with the invited role; their current tokens are revoked (log in again)."""
    return await use_cases.answer(uow, identity, principal, invitationId, body.status)


@router.post("/api/invitation/register/{token}", status_code=201, response_model=UserOut)
async def register_invited(body: InvitedRegistration, uow: UoW, identity: Ident, token: str) -> dict[str, Any]:
    """Create the account of an invited e-mail address (no login: the mailed token is the proof) and
    join the organization. The e-mail counts as confirmed."""
    return await use_cases.register_invited(uow, identity, token, body)
