"""Bulk read import: the CSV parsing (pure), and jobs against the real database and broker."""

from __future__ import annotations

import io
import itertools
import tracemalloc
import uuid
from collections.abc import Iterable
from zoneinfo import ZoneInfo

import pytest

from opendrec_contracts import DeviceDeleted, envelope_for
from opendrec_kit.testing import TokenIssuer, dispatch, eventually, publish_events, settings_for_test, started
from opendrec_kit.timestamps import iso
from opendrec_readings import imports, services, store
from opendrec_readings.app import build
from opendrec_readings.handlers import Handlers
from opendrec_readings.settings import Settings

from .test_service import RW, H, new_device, running

HEADER = "deviceExternalId,timezone,type,unit,value,startDate,endDate\n"


# -- pure parts -----------------------------------------------------------------------------


def test_csv_columns_are_found_by_name_in_any_order_and_case():
    rows = imports.parse_csv(
        "\ufeffENDDATE,value,unit,type,timezone,deviceexternalid,startdate\n2024-01-01T00:00:00Z, 5 ,Wh,Delta,,D1,\n\n"
    )
    assert rows == [imports.CsvRow(1, "D1", "", "Delta", "Wh", "5", "", "2024-01-01T00:00:00Z")]


class _Generated(io.RawIOBase):
    """A CSV file of `rows` rows (and the chunks of `tail` after them), made as it is read: nothing holds it all."""

    def __init__(self, rows: int, tail: Iterable[bytes] = ()) -> None:
        self.lines = itertools.chain(
            [HEADER.encode()],
            (f"D{n % 7},,Delta,Wh,{n},,2024-01-01T00:00:00Z\n".encode() for n in range(rows)),
            tail,
        )
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while len(self.pending) < len(buffer):
            line = next(self.lines, None)
            if line is None:
                break
            self.pending += line
        n = min(len(buffer), len(self.pending))
        buffer[:n], self.pending = self.pending[:n], self.pending[n:]
        return n


def _peak_while_reading(source: io.RawIOBase) -> tuple[int, int | Exception]:
    """Peak memory (tracemalloc) while read_csv reads `source` to its end, and the rows read (or what it raised)."""
    tracemalloc.start()
    try:
        try:
            outcome: int | Exception = sum(1 for _ in imports.read_csv(io.BufferedReader(source)))
        except ValueError as exc:
            outcome = exc
        return tracemalloc.get_traced_memory()[1], outcome
    finally:
        tracemalloc.stop()


def test_reading_a_csv_holds_a_row_at_a_time_not_the_file():
    small_peak, small_rows = _peak_while_reading(_Generated(2_000))
    large_peak, large_rows = _peak_while_reading(_Generated(15_000))  # ~0.7 MB of CSV
    assert (small_rows, large_rows) == (2_000, 15_000)
    assert large_peak < 512 * 1024, f"peak {large_peak} bytes while reading 15,000 rows"
    assert large_peak < 2 * small_peak + 64 * 1024, (small_peak, large_peak)  # flat, whatever the length


def test_a_row_header_or_column_count_past_its_bound_is_refused_naming_it():
    # a 20 MB line with no end: refused once MAX_ROW_CHARS are read, without reading the rest
    peak, refused = _peak_while_reading(
        _Generated(10, tail=itertools.chain([b"D1,"], itertools.repeat(b"9" * 65536, 305)))
    )
    assert isinstance(refused, imports.TooLarge) and "row 11 is longer than 4096 characters" in str(refused)
    assert peak < 512 * 1024
    with pytest.raises(imports.TooLarge, match=r"the header .* is longer than 4096 characters"):
        imports.parse_csv("x" * 5000 + "\n")
    with pytest.raises(ValueError, match="the header has 65 columns; at most 64 are read"):
        imports.parse_csv(HEADER.strip() + ",x" * 58 + "\n")
    with pytest.raises(imports.TooLarge, match="row 2 is longer"):  # a quoted cell spanning lines counts whole
        imports.parse_csv(HEADER + 'A,,Delta,Wh,1,,x\nA,,Delta,Wh,"' + "1\n" * 3000 + '",,x\n')


def test_a_csv_without_a_column_is_refused_naming_it():
    with pytest.raises(ValueError, match="lacks unit, value"):
        imports.parse_csv("deviceExternalId,timezone,type,startDate,endDate\n")
    with pytest.raises(ValueError, match="empty"):
        imports.parse_csv("")


def test_consecutive_rows_of_one_device_type_unit_and_zone_form_a_group():
    rows = imports.parse_csv(
        HEADER + "A,,Delta,Wh,1,,x\nA,,Delta,Wh,2,,x\nA,,Delta,kWh,3,,x\nB,,Delta,Wh,4,,x\nA,,Delta,Wh,5,,x\n"
    )
    assert [[r.number for r in g] for g in imports.groups(rows)] == [[1, 2], [3], [4], [5]]
    assert [[r.number for r in g] for g in imports.groups(rows[:2], max_size=1)] == [[1], [2]]


def test_group_errors_and_row_form_errors():
    [row] = imports.parse_csv(HEADER + "A,Mars/Base,Delta,Wh,1,,2024-01-01T00:00:00Z\n")
    assert "unknown time zone" in imports.group_error(row)
    [row] = imports.parse_csv(HEADER + "A,,Daily,Wh,1,,2024-01-01T00:00:00Z\n")
    assert "type 'Daily'" in imports.group_error(row)
    rows = imports.parse_csv(
        HEADER + "A,,Delta,kWh,1.5,,2024-01-01T00:00:00Z\nA,,Delta,kWh,x,,2024-01-01T01:00:00Z\nA,,Delta,kWh,1,,\n"
    )
    reads, refused = imports.parse_group(rows)
    assert [(r.index, r.value_wh) for r in reads] == [(1, 1500)]
    assert [(r.number, r.accepted) for r in refused] == [(2, False), (3, False)]
    assert "not a number" in refused[0].reason and "endtimestamp is required" in refused[1].reason


# -- jobs -------------------------------------------------------------------------------------


class Instance:
    def __init__(self, runtime, client, issuer, bootstrap):
        self.runtime, self.client, self.issuer, self.bootstrap = runtime, client, issuer, bootstrap

    def headers(self, organization_id: int) -> dict[str, str]:
        return self.issuer.headers(user_id=7, organization_id=organization_id, permissions=RW) | {
            "Content-Type": "text/csv"
        }

    async def register(self, device):
        await publish_events(self.bootstrap, [device])
        await eventually(  # a consumer group joining a busy broker may take a while: a bound, not a timing
            lambda: self.runtime.pool.fetch("SELECT 1 FROM devices WHERE device_id = $1", device.device_id),
            timeout=90,
        )

    async def upload(self, organization_id: int, text: str):
        return await self.client.post(
            "/api/meter-reads/bulk-upload",
            content=text.encode(),
            params={"fileName": "reads.csv"},
            headers=self.headers(organization_id),
        )

    async def job(self, organization_id: int, job_id: str, **params):
        response = await self.client.get(
            f"/api/meter-reads/bulk-upload/{job_id}", params=params, headers=self.headers(organization_id)
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def finished(self, organization_id: int, job_id: str):
        async def done():
            job = await self.job(organization_id, job_id, limit=1000)
            return job if job["status"] == "done" else None

        return await eventually(done, timeout=30)


@pytest.fixture(scope="module")
async def instance(postgres_url, kafka_bootstrap):
    # Its own service name: its own database and consumer groups (it reads every event from the start).
    settings = {"service_name": "readings-import", "import_poll_interval_s": 0.2}
    async with running(postgres_url, kafka_bootstrap, **settings) as (runtime, client, issuer):
        yield Instance(runtime, client, issuer, kafka_bootstrap)


def _csv(device, lines: list[tuple]) -> str:
    return HEADER + "".join(",".join(str(c) for c in line) + "\n" for line in lines)


@pytest.mark.asyncio(loop_scope="session")
async def test_an_import_judges_each_row_and_reports_it(instance):
    device = new_device()
    await instance.register(device)
    t, ext = device.onboarded_at, device.external_id
    kolkata = (t + 6 * H).astimezone(ZoneInfo("Asia/Kolkata")).strftime("%Y-%m-%d %H:%M:%S")
    text = _csv(device, [
        (ext, "", "Delta", "Wh", 100, "", iso(t + H)),
        (ext, "", "Delta", "Wh", 200, " ", iso(t + 2 * H)),
        (ext, "", "Delta", "Wh", 0, "", iso(t + 3 * H)),  # refused: no energy
        (ext, "", "Delta", "Wh", 300, "", iso(t + 4 * H)),  # then counts from row 2's end
        ("NOPE", "", "Delta", "Wh", 1, "", iso(t + H)),
        (ext, "", "Delta", "kWh", "abc", "", iso(t + 5 * H)),
        (ext, "Asia/Kolkata", "Delta", "Wh", 50, "", kolkata),
        (ext, "", "Delta", "Wh", 10, "", iso(t + 5 * H)),  # before the previous read's end
        (ext, "", "Daily", "Wh", 1, "", iso(t + 7 * H)),
    ])  # fmt: skip
    response = await instance.upload(device.organization_id, text)
    assert response.status_code == 202, response.text
    assert response.json()["rowsTotal"] == 9 and response.json()["fileName"] == "reads.csv"
    job = await instance.finished(device.organization_id, response.json()["jobId"])
    assert (job["rowsDone"], job["accepted"], job["rejected"], job["progress"]) == (9, 4, 5, 100.0)
    results = {r["row"]: r for r in job["rows"]}
    assert [n for n, r in results.items() if r["status"] == "accepted"] == [1, 2, 4, 7]
    assert "greater than 0" in results[3]["reason"]
    assert "no device with external id 'NOPE'" in results[5]["reason"]
    assert "not a number" in results[6]["reason"]
    assert "must be after the previous read's end" in results[8]["reason"]
    assert "type 'Daily'" in results[9]["reason"]
    rejected = await instance.job(device.organization_id, job["jobId"], status="rejected")
    assert [r["row"] for r in rejected["rows"]] == [3, 5, 6, 8, 9]

    rows = await instance.runtime.pool.fetch(
        "SELECT start_at, end_at, wh, source FROM intervals WHERE device_id = $1 ORDER BY end_at", device.device_id
    )
    assert [(r["start_at"], r["end_at"], r["wh"]) for r in rows] == [
        (t, t + H, 100), (t + H, t + 2 * H, 200), (t + 2 * H, t + 4 * H, 300), (t + 4 * H, t + 6 * H, 50),
    ]  # fmt: skip
    assert {r["source"] for r in rows} == {"import"}
    listed = await instance.client.get("/api/meter-reads/bulk-upload", headers=instance.headers(device.organization_id))
    assert [j["jobId"] for j in listed.json()["jobs"]] == [job["jobId"]]
    # Nobody else sees the job.
    stranger = await instance.client.get(
        f"/api/meter-reads/bulk-upload/{job['jobId']}", headers=instance.headers(device.organization_id + 1)
    )
    assert stranger.status_code == 404


@pytest.mark.asyncio(loop_scope="session")
async def test_a_file_that_is_not_a_reads_csv_is_refused_at_upload(instance):
    response = await instance.upload(1, "device,value\nA,1\n")
    assert response.status_code == 400 and "lacks" in response.json()["message"]
    assert (await instance.upload(1, HEADER)).status_code == 400


@pytest.mark.asyncio(loop_scope="session")
async def test_a_csv_past_a_bound_is_refused_at_upload_naming_it_and_makes_no_job(instance):
    organization = new_device().organization_id
    long_row = HEADER + "A,,Delta,Wh,1,,x\n" + "A,,Delta,Wh," + "1" * 5000 + ",,x\n"
    response = await instance.upload(organization, long_row)
    assert response.status_code == 413, response.text
    assert response.json()["message"] == "Not a usable reads CSV: row 2 is longer than 4096 characters"
    wide = await instance.upload(organization, HEADER.strip() + ",x" * 60 + "\nA,,Delta,Wh,1,,x\n")
    assert wide.status_code == 400 and "at most 64 are read" in wide.json()["message"]
    listed = await instance.client.get("/api/meter-reads/bulk-upload", headers=instance.headers(organization))
    assert listed.json()["jobs"] == []  # nothing staged, nothing queued


@pytest.mark.asyncio(loop_scope="session")
async def test_a_group_that_fails_every_time_is_set_aside_and_the_job_goes_on(instance, monkeypatch):
    device = new_device()
    await instance.register(device)
    t, ext = device.onboarded_at, device.external_id
    judge = services._judge_group

    async def poisoned(uow, settings, organization_id, rows):
        if rows[0].external_id == "POISON":
            raise RuntimeError("this group cannot be judged")
        return await judge(uow, settings, organization_id, rows)

    monkeypatch.setattr(services, "_judge_group", poisoned)
    text = _csv(device, [
        (ext, "", "Delta", "Wh", 100, "", iso(t + H)),
        ("POISON", "", "Delta", "Wh", 1, "", iso(t + H)),
        ("POISON", "", "Delta", "Wh", 2, "", iso(t + 2 * H)),
        (ext, "", "Delta", "Wh", 200, "", iso(t + 2 * H)),
    ])  # fmt: skip
    response = await instance.upload(device.organization_id, text)
    assert response.status_code == 202, response.text
    job = await instance.finished(device.organization_id, response.json()["jobId"])
    assert (job["rowsDone"], job["accepted"], job["rejected"]) == (4, 2, 2)
    reasons = {r["row"]: r["reason"] for r in job["rows"]}
    assert reasons[1] is None and reasons[4] is None
    assert (
        reasons[2]
        == reasons[3]
        == ("set aside: judging its group failed 3 times (RuntimeError: this group cannot be judged)")
    )
    assert (
        await instance.runtime.pool.fetchval(
            "SELECT count(*) FROM import_staged WHERE job_id = $1", uuid.UUID(job["jobId"])
        )
        == 0
    )  # staged rows go as they are done


@pytest.mark.asyncio(loop_scope="session")
async def test_a_job_left_by_a_stopped_service_is_done_after_a_restart(postgres_url, kafka_bootstrap):
    settings = settings_for_test(
        Settings, postgres_url, kafka_bootstrap, service_name="readings-restart", import_worker=False
    )
    device = new_device()
    issuer = TokenIssuer()
    first = build(settings)
    issuer.trust_in(first)
    async with started(first) as client:
        before = Instance(first, client, issuer, kafka_bootstrap)
        await before.register(device)
        text = _csv(
            device,
            [
                (device.external_id, "", "Delta", "Wh", 1000 + h, "", iso(device.onboarded_at + h * H))
                for h in range(1, 601)
            ],
        )
        response = await before.upload(device.organization_id, text)
        assert response.status_code == 202
        job_id = response.json()["jobId"]
        assert (await before.job(device.organization_id, job_id))["status"] == "queued"
        assert "bulk-read-import" not in first.worker_status()  # IMPORT_WORKER=false: registered, not started
        # A job another worker holds is left alone while that worker's lease runs.
        async with first.uow() as other_worker:
            assert (await store.claim_job(other_worker.conn, 60))["job_id"] == uuid.UUID(job_id)
        assert await services.import_next_job(first.uow(), first.settings) is False
        async with first.uow() as other_worker:
            await store.release_job(other_worker.conn, uuid.UUID(job_id), None)  # as a stopping worker does

    again = build(settings.model_copy(update={"import_worker": True, "import_poll_interval_s": 0.2}))
    issuer.trust_in(again)
    async with started(again) as client:
        after = Instance(again, client, issuer, kafka_bootstrap)
        job = await after.finished(device.organization_id, job_id)
        assert (job["rowsDone"], job["accepted"]) == (600, 600)
        assert again.worker_status()["bulk-read-import"] == "ok"
        total = await again.pool.fetchval("SELECT sum(wh) FROM intervals WHERE device_id = $1", device.device_id)
        assert total == sum(1000 + h for h in range(1, 601))


@pytest.mark.asyncio(loop_scope="session")
async def test_rows_of_a_deleted_device_are_rejected_by_the_one_rule(instance):
    device = new_device()
    await instance.register(device)
    handlers = Handlers(instance.runtime.settings)
    gone = DeviceDeleted(
        device_id=device.device_id, external_id=device.external_id, organization_id=device.organization_id
    )
    envelope = envelope_for(gone, "devices")
    assert await dispatch(instance.runtime.pool, "readings", handlers.on_device_deleted, gone, envelope=envelope)
    t, ext = device.onboarded_at, device.external_id
    response = await instance.upload(
        device.organization_id, _csv(device, [(ext, "", "Delta", "Wh", 100, "", iso(t + h * H)) for h in (1, 2)])
    )
    job = await instance.finished(device.organization_id, response.json()["jobId"])
    reason = f"device {ext!r} was deleted on {iso(envelope.occurred_at)}: it takes no new reads"
    assert [(r["row"], r["status"], r["reason"]) for r in job["rows"]] == [
        (1, "rejected", reason),
        (2, "rejected", reason),
    ]
