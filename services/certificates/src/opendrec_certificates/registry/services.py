"""The registry's use cases: each an `async def` taking the kit's unit of work and plain arguments."""

from __future__ import annotations

import uuid

from opendrec_kit.uow import UnitOfWork

from . import store
from .domain import Holding, IssuedCertificate, SerialRange


async def issue_holdings(uow: UnitOfWork, certificate: IssuedCertificate) -> list[Holding]:
    """One holding per part of an issued certificate, owned by its buyer organization, with the part's serial range
    (the device's next serials). Called by issuance inside its unit of work; a certificate already holding its
    parts (issuance replayed) gets them back unchanged."""
    async with uow:
        existing = await store.holdings_of_certificate(uow.conn, certificate.certificate_id)
        if existing:
            return [store.holding_of(row, await store.ranges_of(uow.conn, row["id"])) for row in existing]
        holdings = []
        for device_id, energy_wh in certificate.parts:
            if energy_wh <= 0:
                continue  # a part without energy has no serials
            start = await store.take_serials(uow.conn, device_id, energy_wh)
            serials = SerialRange(start, start + energy_wh - 1)
            holding_id = uuid.uuid4()
            row = await store.insert_holding(
                uow.conn,
                holding_id,
                certificate.certificate_id,
                device_id,
                certificate.buyer_organization_id,
                certificate.country_code,
                certificate.period_start,
                certificate.period_end,
                energy_wh,
            )
            await store.insert_range(uow.conn, device_id, holding_id, serials, None)
            holdings.append(store.holding_of(row, [serials]))
        return holdings
