"""Helpers shared by the certificates integration tests."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings

import opendrec_certificates
from opendrec_certificates import handlers
from opendrec_contracts import DeviceRegistered, ReadIngested, ReservationCreated
from opendrec_contracts.testing import device_registered
from opendrec_kit import db
from opendrec_kit.testing import dispatch

T0 = datetime(2025, 3, 1, 10, tzinfo=UTC)
H = timedelta(hours=1)
PERMS = {"CERTIFICATE_LOG_MANAGEMENT_CRUDL": "R"}


def ids():
    n = uuid.uuid4().int % 10**9
    return n, n + 1  # device id, reservation id: unique per test


def reservation(reservation_id, device_id, buyer_org, **kw):
    return ReservationCreated(
        reservation_id=reservation_id,
        reservation_uid=uuid.uuid4(),
        name=f"res-{reservation_id}",
        buyer_organization_id=buyer_org,
        device_ids=[device_id],
        reservation_start=kw.get("start", T0),
        reservation_end=kw.get("end", T0 + 24 * H),
        frequency=kw.get("frequency", "hourly"),
        target_capacity_wh=kw.get("target"),
        authority_to_exceed=kw.get("exceed", True),
    )


def registered(device_id, owner_org, country="IND", **fields) -> DeviceRegistered:
    """The device.registered that makes a device known here (its owner, country and externalId, as `reads` names
    it): energy is certified only for devices known here. Publish it with the reads, or `register` it."""
    return device_registered(
        device_id, organization_id=owner_org, country_code=country, external_id=f"ext-{device_id}", **fields
    )


async def register(runtime, device_id, owner_org, country="IND", **fields) -> DeviceRegistered:
    """The device made known here through the real handler (device.registered, settling as the service does)."""
    return await register_on(runtime.pool, runtime.app.state.settlement, device_id, owner_org, country, **fields)


async def register_on(pool, settlement, device_id, owner_org, country="IND", **fields) -> DeviceRegistered:
    """`register` on a database of a test's own, with the test's settlement."""
    event = registered(device_id, owner_org, country, **fields)
    assert await dispatch(pool, "certificates", partial(handlers.on_device_registered, settlement=settlement), event)
    return event


def reads(device_id, owner_org, values, start=T0):
    return ReadIngested(
        batch_id=uuid.uuid4(),
        device_id=device_id,
        external_id=f"ext-{device_id}",
        organization_id=owner_org,
        read_type="Delta",
        **ReadIngested.columns(
            [start + i * H for i in range(len(values))], [start + (i + 1) * H for i in range(len(values))], list(values)
        ),
    )


def z(moment):
    """A whole-second UTC moment as the answers write it (D-REC: milliseconds, Z)."""
    assert moment.microsecond == 0 and moment.utcoffset() == timedelta(0)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def certificates(client, issuer, reservation_id, org):
    """The reservation's log by id: D-REC's bare array, one entry per certificate (X-Total-Count: all of them)."""
    r = await client.get(
        "/api/certificate-log/by-reservation-groupId",
        params={"groupId": reservation_id},
        headers=issuer.headers(organization_id=org, permissions=PERMS),
    )
    return r


async def reservation_log(client, issuer, uid, org):
    """The reservation's log by uid: an object with the reservation's terms, its certificates and totals."""
    return await client.get(
        f"/api/certificate-log/issuer/certified/{uid}", headers=issuer.headers(organization_id=org, permissions=PERMS)
    )


def energy(entries):
    """The energy of a log's entries (D-REC's readvalue_watthour); every one of them is on the page."""
    return sum(e["readvalue_watthour"] for e in entries)


async def total_certified(client, issuer, reservation_id, buyer_org):
    r = await certificates(client, issuer, reservation_id, buyer_org)
    if r.status_code != 200:
        return None
    assert int(r.headers["X-Total-Count"]) == len(r.json())  # the whole log is on the page
    return energy(r.json())


async def _equals(coro, value):
    return (await coro) == value


async def _ge(stats, key, value):
    return stats[key] >= value


MIGRATIONS = Path(opendrec_certificates.__file__).parent / "migrations"


def migrated_database(postgres_url: str, prefix: str) -> str:
    """A new certificates database, migrated: for a module of its own (property tests, each example with its ids)."""

    async def create() -> str:
        url = await db.ensure_database(postgres_url, f"{prefix}_{uuid.uuid4().hex[:8]}")
        await db.migrate(url, MIGRATIONS)
        return url

    return asyncio.run(create())


def database_examples(n: int) -> settings:
    """Hypothesis settings for examples that each run real statements: `n` of them, no deadline, and no long shrinking
    (a failure prints its example to reproduce it)."""
    return settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        print_blob=True,
    )
