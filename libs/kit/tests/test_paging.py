"""Pages of a listing: offsets, totals, and the two spellings of the page number."""

import pytest

from opendrec_kit import ApiError
from opendrec_kit.paging import Page, page_query, total_pages


def test_offsets_and_totals():
    assert [Page(n, 20).offset for n in (1, 2, 3)] == [0, 20, 40]
    assert [total_pages(t, 20) for t in (0, 1, 20, 21, 40)] == [0, 1, 1, 2, 2]


async def test_either_spelling_of_the_page_number_but_not_two_different_ones():
    paging = page_query(default_limit=20, max_limit=100)
    assert await paging(pageNumber=None, pagenumber=None, limit=20) == Page(1, 20)
    assert await paging(pageNumber=3, pagenumber=None, limit=5) == Page(3, 5)
    assert await paging(pageNumber=None, pagenumber=4, limit=5) == Page(4, 5)
    assert await paging(pageNumber=2, pagenumber=2, limit=5) == Page(2, 5)
    with pytest.raises(ApiError) as refused:
        await paging(pageNumber=2, pagenumber=3, limit=5)
    assert refused.value.status == 400 and "disagree" in refused.value.message
