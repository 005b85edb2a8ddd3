"""Bulk CSV onboarding: a mixed file, malformed files, permissions, and a restart in the middle."""

import csv
import io
import itertools
import tracemalloc
import uuid
from datetime import datetime

import pytest
from aiokafka import AIOKafkaConsumer

from opendrec_devices import bulk, services
from opendrec_devices.app import build
from opendrec_devices.models import FIELD_COLUMNS
from opendrec_devices.settings import Settings
from opendrec_devstack.drec_samples import DEVICE_REQUIRED_FIELDS
from opendrec_kit.testing import TokenIssuer, eventually, settings_for_test, started

from .test_api import ALL, dev, known_organizations, new_org, payload

pytestmark = pytest.mark.asyncio(loop_scope="session")

BULK = {"DEVICE_BULK_MANAGEMENT_CRUDL": "RW", **ALL}
COLUMNS = [
    *DEVICE_REQUIRED_FIELDS,
    "yieldValue",
    "images",
    "SDGBenefits",
    "energyStorage",
    "energyStorageCapacity",
    "timezone",
]


def good(ext, **changes):
    row = {
        "externalId": ext,
        "projectName": f"project {ext}",
        "address": "12 Main Rd",
        "latitude": "19°20'50.97\"S",
        "longitude": "46.05",
        "countryCode": "KE",
        "fuelCode": "ES100",
        "deviceTypeCode": "TC120",
        "capacity": "12.5",
        "commissioningDate": "2021-03-04T05:06:07Z",
        "gridInterconnection": "true",
        "offTaker": "School",
        "yieldValue": "1400",
        "images": "a.png;b.png",
        "SDGBenefits": "SDG7|SDG13",
        "energyStorage": "false",
        "energyStorageCapacity": "",
        "timezone": "Africa/Nairobi",
    }
    return {**row, **changes}


def to_csv(rows, columns=COLUMNS, delimiter=","):
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, delimiter=delimiter, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


@pytest.fixture(scope="module")
def settings_overrides() -> dict:
    return {"bulk_max_bytes": 100_000, "bulk_batch_size": 7}


def developer(issuer, org, perms=BULK):
    return issuer.headers(organization_id=org, organization_type="Developer", permissions=perms, user_id=7)


async def upload(client, headers, body, org=None, content_type="text/csv"):
    path = f"/api/device/addByAdmin/process-creation-bulk-devices-csv/{org}" if org else "/api/device/bulk"
    return await client.post(
        path, content=body, headers={**headers, "Content-Type": content_type}, params={"fileName": "devices.csv"}
    )


async def finished(client, headers, job_id):
    async def check():
        job = (await client.get(f"/api/device/bulk-jobs/{job_id}", headers=headers)).json()
        return job if job["status"] == "completed" else None

    return await eventually(check)


async def results(client, headers, job_id, **params):
    r = await client.get(f"/api/device/bulk-jobs/{job_id}/results", params={"limit": 1000, **params}, headers=headers)
    assert r.status_code == 200, r.text
    return {row["row"]: row for row in r.json()["rows"]}


async def registered_events(bootstrap, external_ids, absent=()):
    """How many distinct device.registered events (by event id: the relay delivers at least once, consumers
    drop redeliveries) name each of these external ids. Reads the topic from the start until every id has
    shown up, then on until the topic is idle (what was published with them has been read too)."""
    import orjson

    consumer = AIOKafkaConsumer(
        "device.registered", bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    seen = {e: set() for e in [*external_ids, *absent]}
    try:
        idle_polls = 0
        while idle_polls < 3 or not all(seen[e] for e in external_ids):
            batches = await consumer.getmany(timeout_ms=300)
            idle_polls = 0 if batches else idle_polls + 1
            if idle_polls > 60:
                break  # ~20 s without a record: some id never came; the caller's assertion says which
            for records in batches.values():
                for record in records:
                    try:
                        envelope = orjson.loads(record.value)
                        ext = envelope["payload"]["external_id"]
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        continue
                    if ext in seen:
                        seen[ext].add(envelope["event_id"])
    finally:
        await consumer.stop()
    return {e: len(ids) for e, ids in seen.items()}


async def test_mixed_file_good_bad_and_duplicate_rows(service, kafka_bootstrap):
    client, issuer = service
    org = new_org()
    headers = developer(issuer, org)
    tag = uuid.uuid4().hex[:6]
    # already in the registry (registered through the API)
    existing = payload(externalId=f"{tag}-old")
    old = await client.post("/api/device", json=existing, headers=dev(issuer, org))
    assert old.status_code == 201
    rows = [
        good(f"{tag}-1"),  # row 2: created
        good(f"{tag}-2", timezone="", commissioningDate="2020-01-01T00:00:00"),  # row 3: created with a warning
        good(f"{tag}-3", capacity="0", countryCode="XX", fuelCode="fuel8"),  # row 4: failed, three reasons
        good(f"{tag}-1", projectName="twin"),  # row 5: repeats row 2
        good(f"{tag}-old"),  # row 6: already registered
        good(f"{tag}-4", latitude="95", offTaker="", energyStorageCapacity="3"),  # row 7: failed, three reasons
        good(f"{tag}-5", yieldValue="0"),  # row 8: created with a warning
    ] + [good(f"{tag}-bulk{i}") for i in range(10)]  # rows 9-18: created
    body = to_csv(rows, [*COLUMNS, "notes"])
    r = await upload(client, headers, body)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["totalRows"] == 17 and job["organizationId"] == org and job["fileName"] == "devices.csv"
    assert job["warnings"] == ["column(s) ignored, not device fields: notes"]

    job = await finished(client, headers, job["jobId"])
    assert (job["processedRows"], job["createdRows"], job["createdWithWarningsRows"], job["failedRows"]) == (
        17,
        11,
        2,
        4,
    )
    # compared as instants: µs are kept when present, so the strings may differ in length
    assert job["progress"] == 100.0
    assert datetime.fromisoformat(job["finishedAt"]) >= datetime.fromisoformat(job["startedAt"])

    by_row = await results(client, headers, job["jobId"])
    assert [by_row[n]["status"] for n in range(2, 9)] == [
        "created",
        "created_with_warnings",
        "failed",
        "failed",
        "failed",
        "failed",
        "created_with_warnings",
    ]
    assert all(by_row[n]["status"] == "created" for n in range(9, 19))
    assert "read as UTC" in by_row[3]["warnings"][0] and "yieldValue 0" in by_row[8]["warnings"][0]
    assert {e["field"] for e in by_row[4]["errors"]} == {"capacity", "countryCode", "fuelCode"}
    assert by_row[5]["errors"] == [
        {"field": "externalId", "message": f"externalId '{tag}-1' repeats row 2 of this file"}
    ]
    assert f"already used by device {old.json()['id']}" in by_row[6]["errors"][0]["message"]
    assert {e["field"] for e in by_row[7]["errors"]} == {"latitude", "offTaker", "energyStorageCapacity"}
    failed = await results(client, headers, job["jobId"], status="failed")
    assert sorted(failed) == [4, 5, 6, 7]

    # created rows are real devices, announced once each
    device = (await client.get(f"/api/device/externalId/{tag}-1", headers=dev(issuer, org))).json()
    assert device["id"] == by_row[2]["deviceId"] and device["projectName"] == f"project {tag}-1"
    assert (device["countryCode"], device["latitude"], device["capacity"]) == ("KEN", "-19.3474917", 12.5)
    assert device["images"] == ["a.png", "b.png"] and device["SDGBenefits"] == ["SDG7", "SDG13"]
    mine = (await client.get("/api/device/my", params={"limit": 100}, headers=dev(issuer, org))).json()
    assert mine["totalCount"] == 14  # 13 from the file + the one registered before
    created = [f"{tag}-1", f"{tag}-2", f"{tag}-5"] + [f"{tag}-bulk{i}" for i in range(10)]

    counts = await registered_events(kafka_bootstrap, created, absent=[f"{tag}-3", f"{tag}-4"])
    assert all(counts[e] == 1 for e in created) and counts[f"{tag}-3"] == counts[f"{tag}-4"] == 0


async def test_semicolon_file_with_a_short_row(service):
    client, issuer = service
    org = new_org()
    headers = developer(issuer, org)
    body = to_csv([good("s-1"), good("s-2")], delimiter=";") + b"s-3;only;four;cells\n"
    job = (await upload(client, headers, body)).json()
    job = await finished(client, headers, job["jobId"])
    assert (job["createdRows"], job["failedRows"]) == (2, 1)
    row = (await results(client, headers, job["jobId"]))[4]
    assert row["errors"] == [{"field": "row", "message": f"the row has 4 cells; the header has {len(COLUMNS)}"}]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "fragment"),
    [
        (b"externalId,projectName\nx,y\n", "text/csv", 400, "lacks required column(s) address, latitude"),
        (to_csv([good("l-1")]).replace(b"12 Main Rd", "Café ü".encode("latin-1")), "text/csv", 400, "not UTF-8"),
        (b"", "text/csv", 400, "empty"),
        (to_csv([]), "text/csv", 400, "no rows"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "text/csv", 400, "not UTF-8"),
        (to_csv([good("n-1")]) + b'n-2,"unterminated\n', "text/csv", 400, "not valid CSV"),
        (to_csv([good(f"big-{i}") for i in range(1000)]), "text/csv", 413, "larger than 100000 bytes"),
        (to_csv([good("j-1")]), "application/json", 415, "Expected a CSV file"),
        (to_csv([good("m-1")]), "multipart/mixed; boundary=x", 415, "as multipart/form-data or as the request body"),
        (to_csv([good("m-2")]), "multipart/form-data", 400, "has no boundary"),
        (to_csv([good("m-3")]), "multipart/form-data; boundary=x", 400, "malformed"),
        # bounds (issue 12): each names its limit
        (b"externalId," + b"x" * 9000 + b"\n", "text/csv", 413, "the header (the first line) is longer than 8192"),
        (",".join([*COLUMNS, *(f"c{i}" for i in range(90))]).encode() + b"\n", "text/csv", 400, "at most 100 are read"),
        (to_csv([good("r-1"), good("r-2", projectName="p" * 17000)]), "text/csv", 413, "row 3 is longer than 16384"),
        (to_csv([good("r-3")]) + b'r-4,"' + b"a\n" * 9000, "text/csv", 413, "row 3 is longer than 16384"),
    ],
)
async def test_malformed_files_are_refused_without_a_job(service, body, content_type, status, fragment):
    client, issuer = service
    org = new_org()
    headers = developer(issuer, org)
    r = await upload(client, headers, body, content_type=content_type)
    assert r.status_code == status, r.text
    assert fragment in r.json()["message"]
    jobs = (await client.get("/api/device/bulk-jobs", headers=headers)).json()
    assert jobs["totalCount"] == 0
    assert (await client.get("/api/device/my", headers=dev(issuer, org))).json()["totalCount"] == 0


async def test_who_may_upload_and_see_jobs(service, kafka_bootstrap):
    client, issuer = service
    org, other, buyer_org = new_org(), new_org(), new_org()
    await known_organizations(client, kafka_bootstrap, (org, "Developer"), (buyer_org, "Buyer"))
    body = to_csv([good(f"p-{uuid.uuid4().hex[:6]}")])
    buyer = issuer.headers(organization_id=org, organization_type="Buyer", permissions=BULK)
    r = await upload(client, buyer, body, org)
    assert r.status_code == 403 and "Only Developer organizations" in r.json()["message"]
    r = await upload(client, developer(issuer, org), body, other)
    assert r.status_code == 403 and "your own organization" in r.json()["message"]
    r = await upload(client, developer(issuer, org, ALL), body, org)
    assert r.status_code == 403 and "DEVICE_BULK_MANAGEMENT_CRUDL" in r.json()["message"]
    assert (
        await client.post(f"/api/device/addByAdmin/process-creation-bulk-devices-csv/{org}", content=body)
    ).status_code == 401

    admin = issuer.headers(organization_id=1, organization_type="Admin", role="Admin")
    r = await upload(client, admin, body, buyer_org)
    assert r.status_code == 403 and "Buyer organization" in r.json()["message"]
    r = await upload(client, admin, body, other)  # no such organization (identity never announced it)
    assert r.status_code == 404 and f"Organization {other} does not exist" in r.json()["message"]
    r = await upload(client, admin, body)  # the admin's own organization holds no devices
    assert r.status_code == 400 and "organizationId is required" in r.json()["message"]
    r = await upload(client, admin, body, org)
    assert r.status_code == 202 and r.json()["organizationId"] == org
    job_id = r.json()["jobId"]
    job = await finished(client, admin, job_id)
    assert job["createdRows"] == 1

    mine = developer(issuer, org, {"DEVICE_BULK_MANAGEMENT_CRUDL": "R"})
    assert (await client.get(f"/api/device/bulk-jobs/{job_id}", headers=mine)).json()["createdRows"] == 1
    assert (await client.get(f"/api/device/bulk-jobs/{job_id}", headers=developer(issuer, other))).status_code == 404
    assert (
        await client.get(f"/api/device/bulk-jobs/{job_id}/results", headers=developer(issuer, other))
    ).status_code == 404
    listed = (await client.get("/api/device/bulk-jobs", headers=mine)).json()
    assert [j["jobId"] for j in listed["csvJobs"]] == [job_id]
    # the D-REC paths
    drec = await client.get(
        "/api/buyer-reservation/bulk-upload/get-all-csv-jobs-of-organization",
        params={"orgId": org, "pageNumber": 1, "limit": 1},
        headers=mine,
    )
    assert drec.status_code == 200 and [j["jobId"] for j in drec.json()["csvJobs"]] == [job_id]
    status = await client.get(
        f"/api/buyer-reservation/bulk-upload-status/{job_id}", params={"orgId": org}, headers=mine
    )
    assert status.status_code == 200 and status.json()["status"] == "completed"
    foreign = await client.get(
        "/api/buyer-reservation/bulk-upload/get-all-csv-jobs-of-organization", params={"orgId": other}, headers=mine
    )
    assert foreign.status_code == 403
    by_admin = await client.get(
        f"/api/buyer-reservation/bulk-upload-status/{job_id}", params={"orgId": other}, headers=admin
    )
    assert by_admin.status_code == 404
    no_read = developer(issuer, org, ALL)
    assert (await client.get(f"/api/device/bulk-jobs/{job_id}", headers=no_read)).status_code == 403


async def test_a_restart_in_the_middle_resumes_without_registering_a_row_twice(postgres_url, kafka_bootstrap):
    settings = settings_for_test(Settings, postgres_url, kafka_bootstrap, bulk_batch_size=4, bulk_worker_enabled=False)
    issuer = TokenIssuer()
    org = new_org()
    headers = developer(issuer, org)
    tag = uuid.uuid4().hex[:6]
    externals = [f"{tag}-{i}" for i in range(10)]
    rows = [good(e) for e in externals] + [good(externals[0])]  # the last row repeats the first

    first = build(settings)
    issuer.trust_in(first)
    async with started(first) as client:
        job = (await upload(client, headers, to_csv(rows))).json()
        assert job["status"] == "queued" and job["totalRows"] == 11
        # the worker does one batch, then the service goes down
        assert await services.process_batch(first.uow(), settings.bulk_batch_size)
        job = (await client.get(f"/api/device/bulk-jobs/{job['jobId']}", headers=headers)).json()
        assert (job["status"], job["processedRows"], job["createdRows"]) == ("running", 4, 4)

    second = build(settings.model_copy(update={"bulk_worker_enabled": True}))  # same databases
    issuer.trust_in(second)
    async with started(second) as client:
        job = await finished(client, headers, job["jobId"])
        assert (job["processedRows"], job["createdRows"], job["failedRows"]) == (11, 10, 1)
        by_row = await results(client, headers, job["jobId"])
        assert "repeats row 2" in by_row[12]["errors"][0]["message"]
        devices = (await client.get("/api/device/my", params={"limit": 100}, headers=dev(issuer, org))).json()
        assert sorted(d["externalId"] for d in devices["devices"]) == sorted(externals)
        assert {d["id"] for d in devices["devices"]} == {by_row[n]["deviceId"] for n in range(2, 12)}
        # Each device's event is written in the transaction that inserts it (checked by the mixed-file test).
        # Not read back from the topic here: scanning device.registered right after this restart made the
        # embedded Tansu exit, failing every later test of the session.


# ---------------------------------------------------------------- multipart/form-data uploads

BOUNDARY = "----opendrec-test-boundary"
FORM_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def form(*parts, closed=True):
    """A multipart/form-data body: parts are (field name, filename or None, Content-Type or None, bytes)."""
    out = b""
    for name, filename, content_type, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if content_type:
            out += f"Content-Type: {content_type}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    return out + (f"--{BOUNDARY}--\r\n".encode() if closed else b"")


async def post_form(client, headers, org, body):
    return await client.post(
        f"/api/device/addByAdmin/process-creation-bulk-devices-csv/{org}",
        content=body,
        headers={**headers, "Content-Type": FORM_TYPE},
    )


async def test_a_form_upload_as_clients_send_it(service):
    client, issuer = service
    org = new_org()
    headers = developer(issuer, org)
    tag = uuid.uuid4().hex[:6]
    # httpx builds the form as a browser would: the file field with its filename, beside a plain field
    r = await client.post(
        f"/api/device/addByAdmin/process-creation-bulk-devices-csv/{org}",
        headers=headers,
        files={"file": ("fleet.csv", to_csv([good(f"{tag}-1"), good(f"{tag}-2")]), "text/csv")},
        data={"comment": "two rooftops"},
    )
    assert r.status_code == 202, r.text
    job = r.json()
    assert (job["totalRows"], job["fileName"], job["organizationId"]) == (2, "fleet.csv", org)
    job = await finished(client, headers, job["jobId"])
    assert job["createdRows"] == 2
    device = (await client.get(f"/api/device/externalId/{tag}-2", headers=dev(issuer, org))).json()
    assert device["projectName"] == f"project {tag}-2" and device["organizationId"] == org

    # curl -F "file=<fleet.csv": a field named file, without a filename; fileName from the query
    body = form(("file", None, None, to_csv([good(f"{tag}-3")])))
    r = await client.post(
        "/api/device/bulk",
        content=body,
        params={"fileName": "by-curl.csv"},
        headers={**headers, "Content-Type": FORM_TYPE},
    )
    assert r.status_code == 202, r.text
    assert (r.json()["totalRows"], r.json()["fileName"]) == (1, "by-curl.csv")


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (
            form(("file", "l.csv", "text/csv", to_csv([good("l-1")]).replace(b"12 Main Rd", "Café".encode("latin-1")))),
            400,
            "not UTF-8",
        ),
        (
            form(("file", "h.csv", "text/csv", b"externalId,projectName\nx,y\n")),
            400,
            "lacks required column(s) address",
        ),
        (form(("file", "e.csv", "text/csv", b"")), 400, "empty"),
        (
            form(("file", "p.png", "image/png", b"\x89PNG\r\n\x1a\n\x00\x00")),
            415,
            "got image/png for form field 'file'",
        ),
        (
            form(("upload", "p.csv", "application/octet-stream", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")),
            400,
            "not UTF-8",
        ),
        (
            form(("file", "big.csv", "text/csv", to_csv([good(f"big-{i}") for i in range(1000)]))),
            413,
            "larger than 100000 bytes",
        ),
        (form(("comment", None, None, b"no file here")), 400, "has no file"),
        (
            form(("a", "a.csv", "text/csv", to_csv([good("a-1")])), ("b", "b.csv", "text/csv", to_csv([good("b-1")]))),
            400,
            "more than one file",
        ),
        (form(("file", "c.csv", "text/csv", to_csv([good("c-1")])), closed=False), 400, "cut short"),
        (
            form(("comment", None, None, b"x" * 10_000), ("file", "f.csv", "text/csv", to_csv([good("f-1")]))),
            400,
            "larger than 8192 bytes",
        ),
    ],
)
async def test_malformed_form_uploads_are_refused_without_a_job(service, body, status, fragment):
    client, issuer = service
    org = new_org()  # a developer acts for its own organization: no need for identity's announcement
    headers = developer(issuer, org)
    r = await post_form(client, headers, org, body)
    assert r.status_code == status, r.text
    assert fragment in r.json()["message"]
    assert (await client.get("/api/device/bulk-jobs", headers=headers)).json()["totalCount"] == 0
    assert (await client.get("/api/device/my", headers=dev(issuer, org))).json()["totalCount"] == 0


async def test_size_limit_holds_for_streamed_bodies_without_a_length(service):
    """Chunked bodies (no Content-Length) are counted as they stream in, raw and as a form."""
    client, issuer = service
    org = new_org()
    headers = developer(issuer, org)
    big = to_csv([good(f"s-{i}") for i in range(1000)])

    async def chunks(data):
        for i in range(0, len(data), 8192):
            yield data[i : i + 8192]

    for content_type, data in (("text/csv", big), (FORM_TYPE, form(("file", "s.csv", "text/csv", big)))):
        r = await client.post(
            "/api/device/bulk", content=chunks(data), headers={**headers, "Content-Type": content_type}
        )
        assert r.status_code == 413, r.text
        assert "larger than 100000 bytes" in r.json()["message"]
    assert (await client.get("/api/device/bulk-jobs", headers=headers)).json()["totalCount"] == 0


class _Generated(io.RawIOBase):
    """A bulk CSV of `rows` rows (then the chunks of `tail`), made as it is read: nothing holds the whole file."""

    def __init__(self, rows: int, tail=()) -> None:
        self.chunks = itertools.chain(
            [to_csv([])], (to_csv([good(f"g-{n}")]).split(b"\n", 1)[1] for n in range(rows)), tail
        )
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while len(self.pending) < len(buffer):
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.pending += chunk
        n = min(len(buffer), len(self.pending))
        buffer[:n], self.pending = self.pending[:n], self.pending[n:]
        return n


def _peak_while_reading(source):
    """Peak memory (tracemalloc) while the file's rows are read to the end, and how many (or what was raised)."""
    tracemalloc.start()
    try:
        try:
            _, rows = bulk.read_rows(io.BufferedReader(source), list(FIELD_COLUMNS))
            outcome = sum(1 for _ in rows)
        except bulk.BadFile as exc:
            outcome = exc
        return tracemalloc.get_traced_memory()[1], outcome
    finally:
        tracemalloc.stop()


async def test_reading_a_bulk_file_holds_a_row_at_a_time_not_the_file():  # sync body: nothing else runs meanwhile
    small_peak, small_rows = _peak_while_reading(_Generated(500))
    large_peak, large_rows = _peak_while_reading(_Generated(8_000))  # ~2.5 MB of CSV
    assert (small_rows, large_rows) == (500, 8_000)
    assert large_peak < 512 * 1024, f"peak {large_peak} bytes while reading 8,000 rows"
    assert large_peak < 2 * small_peak + 64 * 1024, (small_peak, large_peak)  # flat, whatever the length
    # a 20 MB row with no end: refused once MAX_ROW_CHARS are read, without reading the rest
    peak, refused = _peak_while_reading(
        _Generated(3, tail=itertools.chain([b"x,"], itertools.repeat(b"9" * 65536, 305)))
    )
    assert isinstance(refused, bulk.TooLarge) and "row 5 is longer than 16384 characters" in str(refused)
    assert peak < 512 * 1024


async def test_a_row_that_fails_every_time_is_set_aside_and_the_job_goes_on(service, monkeypatch):
    client, issuer = service
    org = new_org()
    headers = developer(issuer, org)
    judge = bulk.judge_row

    def poisoned(data, model):
        if data.get("externalId") == "poison":
            raise RuntimeError("this row cannot be judged")
        return judge(data, model)

    monkeypatch.setattr(bulk, "judge_row", poisoned)
    rows = [good(f"p-{i}") for i in range(4)] + [good("poison")] + [good(f"p-{i}") for i in range(4, 12)]
    job = (await upload(client, headers, to_csv(rows))).json()  # batches of 7: the poison is in the first
    job = await finished(client, headers, job["jobId"])
    assert (job["processedRows"], job["createdRows"], job["failedRows"]) == (13, 12, 1)
    by_row = await results(client, headers, job["jobId"])
    assert by_row[6]["status"] == "failed" and by_row[6]["errors"] == [
        {
            "field": "row",
            "message": "could not be registered: it failed 3 times (RuntimeError: this row cannot be judged)",
        }
    ]
    assert all(by_row[n]["status"] == "created" for n in (*range(2, 6), *range(7, 15)))
