"""The ledger over HTTP, readable by anyone (no token): the chain export and a certificate's proof."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from opendrec_kit import UoW
from opendrec_kit.errors import ApiError

from . import services
from .domain import MAX_PAGE

router = APIRouter(tags=["ledger"])


@router.get("/api/certificate/ledger", summary="The ledger: a page of the hash chain and its head (public)")
async def ledger_export(
    uow: UoW,
    after: Annotated[int, Query(ge=0, le=2**63 - 1, description="Entries after this sequence (0: from the first)")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="At most this many entries")] = MAX_PAGE,
) -> Response:
    """`{after, entries, format, head, until}` in the canonical encoding (JSON with sorted keys, no spaces): entries
    after+1..until in order, and the head when the page was read. Next page: `after=until` while `until` <
    `head.sequence`. Save the pages as they come and check them offline with
    `python -m opendrec_certificates.ledger.verify page.json ...`. 400 when `after` is beyond the head."""
    try:
        page = await services.export(uow, after, limit)
    except services.BeyondHead as beyond:
        raise ApiError(400, str(beyond)) from None
    return Response(content=page, media_type="application/json")


@router.get("/api/certificate/ledger/proof/{certificateId}", summary="A certificate's proof in the ledger (public)")
async def ledger_proof(certificateId: uuid.UUID, uow: UoW) -> dict[str, Any]:
    """The certificate's entries (issuance, transfers, retirements, locks, releases) with their hashes, the chain
    head, the reads_hash its issuance covers, and how to recompute each. 404 when the ledger has no entry of it."""
    found = await services.proof(uow, certificateId)
    if found is None:
        raise ApiError(404, f"No ledger entry of certificate {certificateId}")
    return found
