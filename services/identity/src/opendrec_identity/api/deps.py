"""What identity's routes declare besides their bodies: the use cases' collaborators, paging, access rules."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from opendrec_kit.auth import only_roles
from opendrec_kit.paging import page_query

from .. import domain
from ..services.common import Identity


async def _identity(request: Request) -> Identity:  # async: FastAPI runs a plain function in a worker thread
    return request.app.state.identity


Ident = Annotated[Identity, Depends(_identity)]

Paging = Depends(page_query(default_limit=10, max_limit=100))

# Admin listings cross every organization: the Admin role, whatever a module grant says.
ADMIN_ONLY = [only_roles(domain.ADMIN)]
# Listings and changes an API user makes for the organizations registered under it, as an Admin does for all.
ADMIN_OR_API_USER = [only_roles(domain.ADMIN, domain.API_USER)]

TokenParam = Path(min_length=1, max_length=200, description="the token received by mail")
