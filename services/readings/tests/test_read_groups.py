"""Group commit of single-read requests (services.ReadGroups) against the real Postgres and broker: a group is one
transaction, yet each submission is judged by every rule in its turn, refused alone, idempotent, and announced exactly
once; a failed group runs each of its submissions alone.

Groups are formed here by calling the group's commit with the submissions in hand (what `add` does once the window
has passed), so which submissions share a group does not depend on timing."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest

from opendrec_contracts import DeviceRegistered
from opendrec_kit import ApiError, Principal, UnitOfWork
from opendrec_kit.testing import eventually
from opendrec_kit.timestamps import iso
from opendrec_readings import domain, services

from .test_service import Service, delta, running

pytestmark = pytest.mark.asyncio(loop_scope="session")

H = timedelta(hours=1)


@pytest.fixture(scope="module")
async def service(postgres_url, kafka_bootstrap):
    async with running(postgres_url, kafka_bootstrap, service_name="readings-groups") as (runtime, client, issuer):
        yield Service(runtime, client, issuer, kafka_bootstrap)


def submission(device: DeviceRegistered, hour: float, wh: int = 1000, key: str | None = None) -> services.Submission:
    """One Delta read of `device` ending `hour` hours after its onboarding, parsed as the API parses it."""
    user = Principal(user_id=7, organization_id=device.organization_id, organization_type="Developer", role="Admin",
                     email="dev@example.org", permissions={"READS_MANAGEMENT_CRUDL": "RW"})  # fmt: skip
    end = iso(device.onboarded_at + hour * H)
    reads, errors = domain.parse_reads([" "], [end], [wh], "Delta", "Wh", None)
    return services.Submission(user, device.external_id, None, "Delta", reads, errors, key, None)


def groups_of(service: Service, uow=None) -> services.ReadGroups:
    runtime = service.runtime
    return services.ReadGroups(
        uow or runtime.uow, runtime.settings, runtime.owners, window_s=0.001, max_size=64, concurrent=1
    )


async def commit_group(groups: services.ReadGroups, subs: list[services.Submission]) -> list:
    """Commit `subs` as one group; each one's outcome (Accepted, Rejected or the exception it raised)."""
    loop = asyncio.get_running_loop()
    group = [(s, loop.create_future()) for s in subs]
    await groups._commit(group)
    outcomes = []
    for _, future in group:
        exc = future.exception()
        outcomes.append(exc if exc is not None else future.result())
    return outcomes


async def announced(service: Service, batch_id) -> int:
    """How many read.ingested events of this batch were recorded for publication."""
    return await service.runtime.pool.fetchval(
        "SELECT count(*) FROM outbox WHERE topic = 'read.ingested' AND envelope::jsonb->'payload'->>'batch_id' = $1",
        str(batch_id),
    )


async def test_one_transaction_for_many_devices_two_reads_of_one_device_judged_in_turn(service):
    a, b = await service.register(), await service.register()
    groups = groups_of(service)
    # a group takes its submissions ordered by device, one device's in their arrival order
    outcomes = await commit_group(groups, [submission(b, 1), submission(a, 1, 500), submission(b, 2, 700)])
    assert [type(o) for o in outcomes] == [services.Accepted] * 3
    assert (groups.groups, groups.grouped) == (1, 3)
    assert [(r["end_at"], r["wh"]) for r in await service.intervals(b.device_id)] == [
        (b.onboarded_at + H, 1000),
        (b.onboarded_at + 2 * H, 700),  # counted from the first read of the same group
    ]
    assert [(r["end_at"], r["wh"]) for r in await service.intervals(a.device_id)] == [(a.onboarded_at + H, 500)]
    for outcome in outcomes:
        assert await announced(service, outcome.summary.batch_id) == 1


async def test_a_bad_read_is_refused_alone_the_others_of_its_group_stored(service):
    a, b = await service.register(), await service.register()
    await service.post(a, delta(a, [3]))
    groups = groups_of(service)
    too_much = 10**12  # far above what 100 kW make in an hour
    outcomes = await commit_group(
        groups,
        [submission(a, 2), submission(b, 1, too_much), submission(b, 2, 800), submission(a, 4, 600)],
    )
    # a at hour 2 is before its last read (hour 3); b's first is implausible, so b's second counts from onboarding
    refused_a, refused_b, accepted_b, accepted_a = outcomes
    assert isinstance(refused_a, services.Rejected) and "endtimestamp" in refused_a.errors[0].reason
    assert isinstance(refused_b, services.Rejected) and "plausible" in refused_b.errors[0].reason
    assert isinstance(accepted_b, services.Accepted) and isinstance(accepted_a, services.Accepted)
    assert [(r["end_at"], r["wh"]) for r in await service.intervals(a.device_id)] == [
        (a.onboarded_at + 3 * H, 1000),
        (a.onboarded_at + 4 * H, 600),
    ]
    assert [(r["start_at"], r["end_at"], r["wh"]) for r in await service.intervals(b.device_id)] == [
        (b.onboarded_at, b.onboarded_at + 2 * H, 800)
    ]
    assert await announced(service, accepted_a.summary.batch_id) == 1
    assert await announced(service, accepted_b.summary.batch_id) == 1


async def test_repeats_in_and_across_groups_are_idempotent(service):
    a, b = await service.register(), await service.register()
    groups = groups_of(service)
    first, repeat, keyed = await commit_group(groups, [submission(a, 1), submission(a, 1), submission(b, 1, key="k-1")])
    assert isinstance(first, services.Accepted) and not first.replayed
    assert isinstance(repeat, services.Accepted) and repeat.replayed
    assert repeat.summary.batch_id == first.summary.batch_id
    # the next group: the same key again (replayed), the key for other reads (409, alone), a's next read (stored)
    again, conflict, next_read = await commit_group(
        groups, [submission(b, 1, key="k-1"), submission(b, 2, key="k-1"), submission(a, 2)]
    )
    assert isinstance(again, services.Accepted) and again.replayed and again.summary.batch_id == keyed.summary.batch_id
    assert isinstance(conflict, ApiError) and conflict.status == 409
    assert isinstance(next_read, services.Accepted) and not next_read.replayed
    assert len(await service.intervals(a.device_id)) == 2 and len(await service.intervals(b.device_id)) == 1
    for outcome in (first, keyed, next_read):
        assert await announced(service, outcome.summary.batch_id) == 1


class CommitFails(UnitOfWork):
    """The unit of work of a group whose commit the database refuses (as after a deadlock or a lost connection)."""

    async def __aexit__(self, exc_type, exc, tb):
        await super().__aexit__(RuntimeError, RuntimeError(), None)  # rolls back
        raise asyncpg.exceptions.DeadlockDetectedError("deadlock detected")


async def test_a_failed_group_runs_each_submission_alone(service):
    a, b = await service.register(), await service.register()
    runtime = service.runtime
    made: list[UnitOfWork] = []

    def uow() -> UnitOfWork:
        # the group's own unit of work fails; the ones each submission then gets alone are the real thing
        made.append(CommitFails(runtime.pool, runtime.name) if not made else runtime.uow())
        return made[-1]

    groups = groups_of(service, uow)
    outcomes = await commit_group(groups, [submission(a, 1), submission(b, 1, 10**12), submission(a, 2)])
    assert [type(o) for o in outcomes] == [services.Accepted, services.Rejected, services.Accepted]
    assert groups.groups == 0  # the group did not commit; each submission did alone
    assert [r["wh"] for r in await service.intervals(a.device_id)] == [1000, 1000]
    assert await service.intervals(b.device_id) == []
    for outcome in (outcomes[0], outcomes[2]):
        assert await announced(service, outcome.summary.batch_id) == 1


async def test_concurrent_single_reads_over_http_are_all_stored_and_announced_once(service):
    devices = [await service.register() for _ in range(4)]
    bodies = [(d, delta(d, [h])) for d in devices for h in (1, 2, 3)]

    # each device's reads in order, the devices concurrently: every one accepted, whatever groups they fell in
    async def post_all(device: DeviceRegistered) -> list:
        return [await service.post(d, body) for d, body in bodies if d is device]

    answers = [r for rs in await asyncio.gather(*(post_all(d) for d in devices)) for r in rs]
    assert [r.status_code for r in answers] == [201] * len(bodies), [r.text for r in answers]
    for device in devices:
        rows = await service.intervals(device.device_id)
        assert [r["end_at"] for r in rows] == [device.onboarded_at + h * H for h in (1, 2, 3)]
    for answer in answers:
        assert await eventually(lambda a=answer: announced(service, a.json()["batchId"])) == 1
