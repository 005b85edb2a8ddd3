"""Pages of a listing: `?pageNumber=` (D-REC; the older `pagenumber` too) and `?limit=`, and the totals answered.

No `from __future__ import annotations` here: the dependency's Query bounds are closure values FastAPI must see.
"""

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Query

from .errors import ApiError

MAX_PAGE_NUMBER = 1_000_000


@dataclass(frozen=True)
class Page:
    number: int  # 1-based
    limit: int

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.limit


def total_pages(total: int, limit: int) -> int:
    return -(-total // limit)


def page_query(default_limit: int, max_limit: int, what: str = "items") -> Any:
    """A route dependency reading the page asked for: `Paging = Annotated[Page, Depends(page_query(20, 100))]`."""

    async def paging(  # async: FastAPI runs a plain def dependency in a worker thread, a hop per listing
        pageNumber: Annotated[
            int | None, Query(ge=1, le=MAX_PAGE_NUMBER, description="1-based page number (default 1)")
        ] = None,
        pagenumber: Annotated[
            int | None, Query(ge=1, le=MAX_PAGE_NUMBER, include_in_schema=False)
        ] = None,  # older spelling
        limit: Annotated[int, Query(ge=1, le=max_limit, description=f"{what} per page")] = default_limit,
    ) -> Page:
        if pageNumber is not None and pagenumber is not None and pageNumber != pagenumber:
            raise ApiError(400, "pageNumber and pagenumber disagree: give one of them")
        return Page(pageNumber or pagenumber or 1, limit)

    return paging
