"""Group commit of single-read requests (services.ReadGroups) against the real Postgres and broker: a group is one
transaction, yet each submission is judged by every rule in its turn, refused alone, idempotent, and announced exactly
once; a failed group runs each of its submissions alone.

Groups are formed here by calling the group's commit with the submissions in hand (what `add` does once the window
has passed), so which submissions share a group does not depend on timing."""

from __future__ import annotations

import asyncio
import itertools
import re
import uuid
from datetime import timedelta
from zoneinfo import ZoneInfo

import asyncpg
import orjson
import pytest
from opentelemetry import propagate

from opendrec_contracts import DeviceDeleted, DeviceRegistered, Envelope, parse_event
from opendrec_kit import ApiError, Principal, UnitOfWork
from opendrec_kit.telemetry import in_trace
from opendrec_kit.testing import eventually, publish_events
from opendrec_kit.timestamps import iso
from opendrec_readings import domain, services

from .test_service import Service, delta, new_device, new_id, running

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
    await asyncio.wait([future for _, future in group])  # those of unknown devices are answered after the group
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


async def test_each_read_of_a_group_is_announced_in_its_own_requests_trace(service):
    a, b = await service.register(), await service.register()
    trace_ids = [uuid.uuid4().hex for _ in range(2)]
    # as the API builds them: each in its request's trace context (here one a traceparent header would give)
    subs = []
    for device, trace_id in zip((a, b), trace_ids, strict=True):
        with in_trace(propagate.extract({"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"})):
            subs.append(submission(device, 1))
    outcomes = await commit_group(groups_of(service), subs)
    assert [type(o) for o in outcomes] == [services.Accepted] * 2
    for outcome, trace_id in zip(outcomes, trace_ids, strict=True):
        headers = await service.runtime.pool.fetchval(
            "SELECT headers FROM outbox WHERE topic = 'read.ingested' AND envelope::jsonb->'payload'->>'batch_id' = $1",
            str(outcome.summary.batch_id),
        )
        assert orjson.loads(headers)["traceparent"].split("-")[1] == trace_id


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


class DatabaseAway(UnitOfWork):
    """The unit of work of a group when the database goes away under it."""

    async def __aenter__(self):
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")


async def test_an_outage_answers_every_request_of_the_group_at_once(service):
    a, b = await service.register(), await service.register()
    runtime = service.runtime
    made: list[UnitOfWork] = []

    def uow() -> UnitOfWork:
        made.append(DatabaseAway(runtime.pool, runtime.name))
        return made[-1]

    groups = groups_of(service, uow)
    outcomes = await commit_group(groups, [submission(a, 1), submission(b, 1), submission(a, 2)])
    # each request's own outage (503 through the error handlers), none run alone against a database that is away
    assert [type(o) for o in outcomes] == [asyncpg.exceptions.ConnectionDoesNotExistError] * 3
    assert len(made) == 1
    assert await service.intervals(a.device_id) == [] and await service.intervals(b.device_id) == []


class SlowDevices:
    """The devices service as the group sees it when it asks about a device not known here: answering only when
    told to (nothing: the device does not exist)."""

    def __init__(self) -> None:
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()

    async def ask(self, owner, path, principal, params=None):
        self.asked.set()
        await self.answer.wait()
        return []


async def test_a_device_devices_is_asked_about_does_not_hold_up_the_next_group(service):
    a = await service.register()
    runtime = service.runtime
    devices = SlowDevices()
    groups = services.ReadGroups(runtime.uow, runtime.settings, devices, window_s=0.001, max_size=64, concurrent=1)
    unknown = submission(a, 1)
    unknown = services.Submission(unknown.user, "NOT-HERE-YET", None, "Delta", unknown.reads, (), None, None)
    loop = asyncio.get_running_loop()
    first = [(unknown, loop.create_future()), (submission(a, 1), loop.create_future())]
    await asyncio.wait_for(groups._commit(first), 10)  # answered what it could, without waiting for devices
    await asyncio.wait_for(devices.asked.wait(), 10)
    # the next group commits while devices has not answered about the first group's unknown device
    second = [(submission(a, 2), loop.create_future())]
    await asyncio.wait_for(groups._commit(second), 10)
    assert isinstance(first[1][1].result(), services.Accepted) and isinstance(second[0][1].result(), services.Accepted)
    assert not first[0][1].done()
    devices.answer.set()
    with pytest.raises(ApiError) as refused:
        await asyncio.wait_for(first[0][1], 10)
    assert refused.value.status == 404


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


# -- many concurrent single reads, judged as if posted one after the other ---------------------------------------


def script(device: DeviceRegistered, k: int) -> list[tuple[dict, dict]]:
    """The single-read requests one meter (the k-th) sends, in order, with their extra headers: accepted, repeated,
    refused by a rule each, keyed (replayed, reused for other reads), a local time that teaches the device its
    timezone, an Aggregate read where the device's reads are Delta."""
    o = device.onboarded_at

    def one(hours: float, wh: int, *, end: str | None = None, kind: str = "Delta", **extra) -> dict:
        read = {"starttimestamp": " ", "endtimestamp": end or iso(o + hours * H), "value": wh}
        return {"type": kind, "unit": "Wh", "reads": [read], **extra}

    local = (o + 3 * H).astimezone(ZoneInfo("Asia/Kolkata")).strftime("%Y-%m-%d %H:%M:%S")
    return [
        (one(1, 1000 + k), {}),
        (one(1, 1000 + k), {}),  # the same content: replayed
        (one(1, 900), {}),  # not after the last read
        (one(2, 0), {}),  # no energy
        (one(2, 10**12), {}),  # far above what the device can make
        (one(2, 800 + k), {"Idempotency-Key": "k"}),
        (one(2, 800 + k), {"Idempotency-Key": "k"}),  # replayed
        (one(3, 700), {"Idempotency-Key": "k"}),  # the key for other reads: 409
        (one(3, 5000, kind="Aggregate"), {}),  # the device's reads are Delta
        (one(0, 600, end=local, timezone="Asia/Kolkata"), {}),  # local time: the device learns its timezone
        (one(24 * 400, 10), {}),  # in the future
        (one(4, 500 + k), {}),
        (one(1, 1000 + k), {}),  # the first read's content again, after others: replayed
    ]


def twins(n: int) -> list[DeviceRegistered]:
    """n devices alike but for their ids (onboarded at the same instant): their answers can be compared."""
    base = new_device(capacity_kw=100)
    out = []
    for _ in range(n):
        device_id = new_id()
        ids = {"device_id": device_id, "external_id": f"EXT-{device_id}", "organization_id": new_id()}
        out.append(base.model_copy(update={**ids, "device_uuid": uuid.uuid4()}))
    return out


async def known(service: Service, devices: list[DeviceRegistered], deleted: DeviceRegistered) -> None:
    await publish_events(service.bootstrap, [*devices, deleted])
    for device in [*devices, deleted]:
        await eventually(lambda d=device: service.fetch("SELECT 1 FROM devices WHERE device_id = $1", d.device_id))
    gone = DeviceDeleted(device_id=deleted.device_id, external_id=deleted.external_id,
                         organization_id=deleted.organization_id)  # fmt: skip
    await publish_events(service.bootstrap, [gone])
    await eventually(
        lambda: service.fetch(
            "SELECT 1 FROM devices WHERE device_id = $1 AND deleted_at IS NOT NULL", deleted.device_id
        )
    )


def normal(device: DeviceRegistered, status: int, body: dict, replayed: bool, batches: dict[str, int]) -> tuple:
    """An answer with what differs between twins taken out: ids, and batch ids as the number of the first batch."""
    if status == 201:
        summary = {**body, "batchId": batches.setdefault(body["batchId"], len(batches))}
        return status, replayed, {**summary, "externalId": summary["externalId"] == device.external_id}
    text = orjson.dumps([body["message"], body.get("details")]).decode()
    for value, name in ((device.external_id, "<ext>"), (str(device.organization_id), "<org>")):
        text = text.replace(value, name)
    # when the twin was deleted, when the request was judged
    text = re.sub(r"was deleted on \S+:", "was deleted on <when>:", text)
    return status, re.sub(r"\(now \S+\)", "(now <now>)", text)


async def stored(service: Service, device: DeviceRegistered, batches: dict[str, int]) -> tuple:
    """What the device holds and announced: intervals, last read, timezone, batch rows, read.ingested events."""
    o = device.onboarded_at
    intervals = [(r["start_at"] - o, r["end_at"] - o, r["wh"], r["read_type"], batches[str(r["batch_id"])])
                 for r in await service.intervals(device.device_id)]  # fmt: skip
    last = await service.fetch(
        "SELECT l.ongoing_type, l.last_end - $2 AS last_end, l.last_value_wh, d.timezone, "
        "(SELECT count(*) FROM batches b WHERE b.device_id = l.device_id) AS batches "
        "FROM last_reads l JOIN devices d USING (device_id) WHERE device_id = $1",
        device.device_id,
        o,
    )
    events = await service.fetch(
        "SELECT envelope FROM outbox WHERE topic = 'read.ingested' AND key = $1 ORDER BY id", str(device.device_id)
    )
    announced = []
    for row in events:
        event = parse_event(Envelope.model_validate_json(row["envelope"]))
        intervals_of = [(start - o, end - o, wh) for start, end, wh in event.intervals()]
        announced.append((batches[str(event.batch_id)], event.read_type, intervals_of))
    return intervals, [tuple(r) for r in last], announced


def plan(
    devices: list[DeviceRegistered], deleted: DeviceRegistered, interleaved: bool
) -> list[tuple[DeviceRegistered, str, dict, dict]]:
    """Every device's script, plus reads of the deleted device and of an external id no device has: (device, the
    external id posted to, body, headers); `interleaved`: a step of each in turn, else one script after the other."""
    steps = [[(d, d.external_id, body, extra) for body, extra in script(d, k)] for k, d in enumerate(devices)]
    steps.append([(deleted, deleted.external_id, body, extra) for body, extra in script(deleted, 0)[:2]])
    steps.append([(devices[0], "NO-SUCH-METER", body, {}) for body, _ in script(devices[0], 0)[:2]])
    if not interleaved:
        return [step for lane in steps for step in lane]
    return [step for turn in itertools.zip_longest(*steps) for step in turn if step is not None]


async def outcomes_of(service: Service, devices, deleted, post, interleaved: bool = True) -> tuple[list, list]:
    """Answers of `post` for the plan (normalised per device, in plan order) and what each device stored."""
    batches: dict[int, dict[str, int]] = {}  # device id -> its batch ids, numbered
    steps = plan(devices, deleted, interleaved)
    answers = await post(steps)
    normalised = [normal(d, *answer, batches.setdefault(d.device_id, {})) for (d, *_), answer in zip(steps, answers, strict=True)]  # fmt: skip
    return normalised, [await stored(service, d, batches.setdefault(d.device_id, {})) for d in devices]


def assert_same(got: tuple[list, list], expected: tuple[list, list]) -> None:
    """Answer by answer, then device by device: the first difference is the one shown."""
    for i, (answer, sequential) in enumerate(zip(*(outcome[0] for outcome in (got, expected)), strict=True)):
        assert answer == sequential, f"request {i} of the plan"
    for i, (held, sequential) in enumerate(zip(got[1], expected[1], strict=True)):
        assert held == sequential, f"device {i}"


async def test_concurrent_single_reads_answer_and_store_as_sequential_posting_does(service):
    """Each meter posts its script one request after the other, all meters at once (groups form of them: a meter's
    read among others'); the answers, the intervals, last reads, timezones, batches and read.ingested events are
    those of the same scripts posted one request at a time to twin devices."""
    groups: services.ReadGroups = service.runtime.app.state.read_groups
    devices = twins(12)
    sequential_devices, concurrent_devices = devices[:6], devices[6:]
    await known(service, sequential_devices[:-1], sequential_devices[-1])
    await known(service, concurrent_devices[:-1], concurrent_devices[-1])

    async def answer(device, external_id, body, extra):
        response = await service.client.post(
            f"/api/meter-reads/new/{external_id}", json=body, headers=service.headers(device.organization_id, **extra)
        )
        return response.status_code, response.json(), response.headers.get("Idempotent-Replayed") == "true"

    async def one_at_a_time(steps):
        return [await answer(*step) for step in steps]

    async def meters_at_once(steps):
        by_meter: dict[str, list[int]] = {}
        for i, (_, external_id, _, _) in enumerate(steps):
            by_meter.setdefault(external_id, []).append(i)
        answers: list = [None] * len(steps)

        async def meter(indexes: list[int]) -> None:
            for i in indexes:
                answers[i] = await answer(*steps[i])

        await asyncio.gather(*(meter(indexes) for indexes in by_meter.values()))
        return answers

    expected = await outcomes_of(service, sequential_devices[:-1], sequential_devices[-1], one_at_a_time)
    grouped_before = groups.grouped - groups.groups
    got = await outcomes_of(service, concurrent_devices[:-1], concurrent_devices[-1], meters_at_once)
    assert_same(got, expected)
    assert groups.grouped - groups.groups > grouped_before, "no group held more than one request"
    statuses = [answer[0] for answer in expected[0]]
    assert {201, 400, 404, 409} <= set(statuses)


async def test_a_group_judges_one_devices_reads_in_their_order_as_sequential_posting_does(service):
    """The same scripts through the group commit alone, one after the other, every request waiting at once: groups of
    at most 16, one after the other, take most of a device's script together (its conflicting reads too: a repeat, a
    read not after the one before, a reused key); the outcomes of the use case and what is stored are those of
    posting one by one."""
    runtime = service.runtime
    devices = twins(10)
    sequential_devices, grouped_devices = devices[:5], devices[5:]
    await known(service, sequential_devices[:-1], sequential_devices[-1])
    await known(service, grouped_devices[:-1], grouped_devices[-1])
    groups = services.ReadGroups(
        runtime.uow, runtime.settings, runtime.owners, window_s=0.001, max_size=16, concurrent=1
    )

    def call(device, external_id, body, extra, groups):
        user = Principal(user_id=7, organization_id=device.organization_id, organization_type="Developer",
                         role="User", email="dev@example.org", permissions={"READS_MANAGEMENT_CRUDL": "RW"})  # fmt: skip
        read = body["reads"][0]
        return services.add_meter_reads(
            runtime.uow(), runtime.settings, runtime.owners, user, external_id, organization_id=None,
            read_type=body["type"], unit=body["unit"], timezone=body.get("timezone"),
            starts=[read["starttimestamp"]], ends=[read["endtimestamp"]], values=[read["value"]],
            idempotency_key=extra.get("Idempotency-Key"), groups=groups,
        )  # fmt: skip

    def as_answer(outcome):
        if isinstance(outcome, ApiError):
            return outcome.status, {"message": outcome.message, "details": outcome.details}, False
        assert isinstance(outcome, services.Accepted), outcome
        return 201, outcome.summary.as_json(), outcome.replayed

    async def one_by_one(steps):
        answers = []
        for step in steps:
            try:
                answers.append(as_answer(await call(*step, None)))
            except ApiError as refused:
                answers.append(as_answer(refused))
        return answers

    async def all_at_once(steps):
        # Each call enqueues its submission before its first await: the groups take them in the plan's order.
        outcomes = await asyncio.gather(*(call(*step, groups) for step in steps), return_exceptions=True)
        return [as_answer(outcome) for outcome in outcomes]

    expected = await outcomes_of(service, sequential_devices[:-1], sequential_devices[-1], one_by_one, False)
    got = await outcomes_of(service, grouped_devices[:-1], grouped_devices[-1], all_at_once, False)
    assert_same(got, expected)
    assert groups.groups >= 3 and groups.grouped > groups.groups
