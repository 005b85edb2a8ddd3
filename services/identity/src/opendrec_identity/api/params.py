"""Parameters several routes declare alike."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from opendrec_kit.organizations import MAX_ID

from ..bodies import MAX_MODULE_ID

# An id in the path or the query: a Postgres bigint, so one past its range is a 400, not a 500.
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
# ACL modules are numbered by a Postgres serial (integer): 1 .. 2^31-1.
ModuleIdPath = Annotated[int, Path(ge=1, le=MAX_MODULE_ID)]
ModuleIdQuery = Annotated[int | None, Query(ge=1, le=MAX_MODULE_ID)]
