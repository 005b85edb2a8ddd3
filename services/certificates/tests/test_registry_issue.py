"""issue_holdings: one holding per part, owned by the buyer, with the device's next serials (real Postgres)."""

import asyncio
import uuid
from datetime import UTC, datetime

from opendrec_certificates.registry import services
from opendrec_certificates.registry.domain import IssuedCertificate, SerialRange

from .helpers import ids

START = datetime(2021, 11, 6, tzinfo=UTC)
END = datetime(2021, 11, 10, tzinfo=UTC)


def issued(buyer, *parts):
    return IssuedCertificate(uuid.uuid4(), buyer, "SG", START, END, tuple(parts))


async def test_each_part_is_held_by_the_buyer_with_the_devices_next_serials(service):
    runtime, _, _ = service
    device, other = ids()
    first = await services.issue_holdings(runtime.uow(), issued(900001, (device, 1000), (other, 5)))
    assert [(h.device_id, h.organization_id, h.balances.total, h.ranges) for h in first] == [
        (device, 900001, 1000, (SerialRange(1, 1000),)),
        (other, 900001, 5, (SerialRange(1, 5),)),
    ]
    second = await services.issue_holdings(runtime.uow(), issued(900002, (device, 250)))
    assert second[0].ranges == (SerialRange(1001, 1250),)
    assert second[0].balances.available == second[0].balances.balance == 250


async def test_issuing_again_gives_the_same_holdings(service):
    runtime, _, _ = service
    device, _ = ids()
    certificate = issued(900001, (device, 10))
    first = await services.issue_holdings(runtime.uow(), certificate)
    again = await services.issue_holdings(runtime.uow(), certificate)
    assert again == first


async def test_concurrent_issuance_never_overlaps_ranges(service):
    runtime, _, _ = service
    device, _ = ids()
    results = await asyncio.gather(
        *(services.issue_holdings(runtime.uow(), issued(900001, (device, 100))) for _ in range(5))
    )
    ranges = sorted((r for hs in results for h in hs for r in h.ranges), key=lambda r: r.start)
    assert [(r.start, r.end) for r in ranges] == [(1 + 100 * i, 100 * (i + 1)) for i in range(5)]
