"""The D-REC STAGE Postman collection (drec-stage.postman_collection.json, verbatim from the seed) run through
newman against the whole platform (the `platform` fixture: the same launcher as `make run`), with only its
variables changed (transform.py says which and why). Every request must answer 2xx, or the deliberate refusal
listed in DELIBERATE_REFUSALS, and the answers a D-REC client reads must have the reference's shape.

The collection runs in a few newman runs (`--folder` names requests) because some steps sit between its
requests, done here through the public API only:
- the seed's Delta and Aggregate reads go to devices of another STAGE developer (`EnergyT`, `EnergyT1`) that the
  collection never registers: the test registers two such devices for the collection's developer (the seed's
  "Register Device" body, a larger capacity for the Delta one so that its 1200 Wh are plausible seconds after
  onboarding rather than minutes);
- nothing waits for one service to learn of another's entities: reads and the reservation follow the devices'
  registration at once (read-your-writes: a service asks the owner on a miss);
- ongoing reads must end after the device's onboarding and not in the future: their end is "now" as sent.
Captured values (tokens, ids) travel between runs in a newman environment file.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from opendrec_devstack.drec_samples import bearer, device_body

from .transform import CHANGES, folders, seed, transform

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent
NEWMAN = HERE / "node_modules" / ".bin" / "newman"
NEWMAN_TIMEOUT_S = 120

# Requests the platform refuses by design: name -> (status, why). None in this collection (its requests are all
# ones a D-REC client needs; `POST /api/auth/getAccess?privateKey=`, refused with 410 because private keys never
# go over the wire, is not in it).
DELIBERATE_REFUSALS: dict[str, tuple[int, str]] = {}

DELTA_CAPACITY_KW = 5000  # 1200 Wh is plausible ~3 s after onboarding (1.2 × 5 MW × 2000/8760 h⁻¹ ≈ 380 Wh/s)
DELTA_WAIT_S = 6.0


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---------------------------------------------------------------- the reference's answer shapes

Check = Callable[[Any], list[str]]


def has(*fields: str, of: Callable[[Any], Any] = lambda a: a) -> Check:
    """The answer (or the part `of` picks) is an object with these fields."""

    def check(answer: Any) -> list[str]:
        try:
            part = of(answer)
        except (KeyError, TypeError, IndexError) as exc:
            return [f"no object where expected ({exc!r})"]
        if not isinstance(part, dict):
            return [f"expected an object, got {type(part).__name__}"]
        return [f"missing field {f!r}" for f in fields if f not in part]

    return check


def each(*fields: str, of: Callable[[Any], Any] = lambda a: a, nonempty: bool = False) -> Check:
    """The answer (or the part `of` picks) is a list of objects with these fields."""

    def check(answer: Any) -> list[str]:
        try:
            part = of(answer)
        except (KeyError, TypeError, IndexError) as exc:
            return [f"no list where expected ({exc!r})"]
        if not isinstance(part, list):
            return [f"expected a list, got {type(part).__name__}"]
        if nonempty and not part:
            return ["expected a non-empty list"]
        return [f"item {i}: missing field {f!r}" for i, item in enumerate(part) for f in fields if f not in item]

    return check


def all_of(*checks: Check) -> Check:
    return lambda answer: [problem for check in checks for problem in check(answer)]


# Field names from the reference (d-rec/drec-origin, apps/drec-api/src/...), for the answers a D-REC client reads.
# UserDTO (pods/user/dto/user.dto.ts), the answer of user registration:
USER = has("id", "firstName", "lastName", "email", "role", "status", "organization")
# LoginReturnDataDTO (auth/dto/login-return-data.dto.ts):
LOGIN = has("accessToken")
# DeviceDTO (pods/device/dto/device.dto.ts), the fields a client sent and reads back:
DEVICE_FIELDS: tuple[str, ...] = (
    *("id", "externalId", "organizationId", "projectName", "address", "latitude", "longitude", "countryCode"),
    *("fuelCode", "deviceTypeCode", "capacity", "commissioningDate", "gridInterconnection", "offTaker", "createdAt"),
)
# DeviceService.find / finddeviceForBuyer (pods/device/device.service.ts): {devices, currentPage, totalPages,
# totalCount}:
DEVICE_PAGE = ("currentPage", "totalPages", "totalCount")
# ResponseDeviceGroupDTO (pods/device-group/dto/device-group.dto.ts) and the entity's uid
# (device-group.entity.ts), the answer of POST /buyer-reservation (formerly /device-group):
RESERVATION_FIELDS: tuple[str, ...] = (
    *("id", "name", "organizationId", "frequency", "reservationStartDate", "reservationEndDate"),
    *("targetVolumeInMegaWattHour", "authorityToExceed", "devicegroup_uid"),
)
SHAPES: dict[str, Check] = {
    "Register Developer": all_of(USER, has("id", "name", "organizationType", of=lambda a: a["organization"])),
    "Developer Login": LOGIN,
    "Register Device": has(*DEVICE_FIELDS),
    "List Registered Devices": all_of(
        has(*DEVICE_PAGE), each(*DEVICE_FIELDS, of=lambda a: a["devices"], nonempty=True)
    ),
    # reads (ReadsController.newstoreRead, pods/reads/reads.controller.ts) answer nothing a client reads: 2xx only
    "Register Buyer": all_of(USER, has("id", "name", "organizationType", of=lambda a: a["organization"])),
    "Buyer Login": LOGIN,
    "Create Reservation": has(*RESERVATION_FIELDS),
    "Devices Available For Reservation": all_of(has(*DEVICE_PAGE), each("id", "externalId", of=lambda a: a["devices"])),
    # CertificateLogController.getissueCertificate (pods/certificate-log/certificate-log.controller.ts) answers
    # CertificateLogService.getCertificateFromOldOrNewUfinction (certificate-log.service.ts):
    # {certificatelog, totalItems, currentPage, totalPages}
    "List Devices - Part Of Reservation": all_of(
        has("certificatelog", "totalItems", "currentPage", "totalPages"), each(of=lambda a: a["certificatelog"])
    ),
    # CertificateLogController.getByGroupId -> CertificateLogService.findByGroupId: an array of
    # CheckCertificateIssueDateLogForDeviceEntity (pods/device/check_certificate_issue_date_log_for_device.entity.ts)
    "Get certificate": each(
        "id", "certificate_issuance_startdate", "certificate_issuance_enddate", "readvalue_watthour", "externalId"
    ),
    # BuyerReservationController.getMyDevices for a Buyer: DeviceGroupService.getBuyerDeviceGroups
    # (pods/device-group/device-group.service.ts): {groupedData, pageNumber, totalPages, totalCount}
    "Devices Reserved For Me": all_of(
        has("groupedData", "pageNumber", "totalPages", "totalCount"),
        each(
            "id",
            "name",
            "devicegroup_uid",
            "deviceIds",
            "reservationStartDate",
            of=lambda a: a["groupedData"],
            nonempty=True,
        ),
    ),
}


# ---------------------------------------------------------------- running newman


class Runner:
    """Runs requests of the transformed collection with newman; keeps every execution and the values the
    collection's scripts captured (in a newman environment file, exported over itself after each run)."""

    def __init__(self, workdir: Path, variables: dict[str, str]) -> None:
        self.workdir = workdir
        self.collection_path = workdir / "collection.json"
        self.collection_path.write_text(json.dumps(transform(seed(), variables), indent=1), encoding="utf-8")
        self.environment_path = workdir / "environment.json"
        self.environment_path.write_text(json.dumps({"name": "captured", "values": []}), encoding="utf-8")
        self.executions: dict[str, list[dict[str, Any]]] = {}
        self.runs = 0

    def run(self, *names: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
        self.runs += 1
        report_path = self.workdir / f"report-{self.runs}.json"
        argv = [str(NEWMAN), "run", str(self.collection_path), "--reporters", "json"]
        argv += ["--reporter-json-export", str(report_path), "--environment", str(self.environment_path)]
        argv += ["--export-environment", str(self.environment_path)]
        argv += ["--timeout-request", "30000", "--color", "off"]
        for name in names:
            argv += ["--folder", name]
        for key, value in (env or {}).items():
            argv += ["--env-var", f"{key}={value}"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=NEWMAN_TIMEOUT_S, check=False)
        if not report_path.exists():
            raise AssertionError(f"newman wrote no report (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
        report = json.loads(report_path.read_text(encoding="utf-8"))
        ran = []
        for execution in report["run"]["executions"]:
            name = execution["item"]["name"]
            response = execution.get("response") or {}
            body = bytes((response.get("stream") or {}).get("data") or []).decode("utf-8", errors="replace")
            result = {
                "name": name,
                "method": execution["request"]["method"],
                "url": _url_of(execution["request"]["url"]),
                "status": response.get("code"),
                "body": body,
                "error": (execution.get("requestError") or {}).get("message"),
            }
            self.executions.setdefault(name, []).append(result)
            ran.append(result)
        if sorted(r["name"] for r in ran) != sorted(names):
            raise AssertionError(f"newman ran {[r['name'] for r in ran]} for {list(names)}:\n{done.stdout}")
        return ran

    def variable(self, key: str) -> str | None:
        exported = json.loads(self.environment_path.read_text(encoding="utf-8"))
        values = {v["key"]: v.get("value") for v in exported.get("values", [])}
        value = values.get(key)
        return None if value in (None, "") else str(value)


def _url_of(url: Any) -> str:
    if isinstance(url, str):
        return url
    host = ".".join(url.get("host") or [])
    port = f":{url['port']}" if url.get("port") else ""
    path = "/".join(url.get("path") or [])
    query = "&".join(f"{q['key']}={q.get('value', '')}" for q in url.get("query") or [])
    return f"{url.get('protocol', 'http')}://{host}{port}/{path}" + (f"?{query}" if query else "")


def _answer(result: dict[str, Any]) -> Any:
    try:
        return json.loads(result["body"])
    except ValueError:
        return None


def _problems(result: dict[str, Any]) -> list[str]:
    """What is wrong with one request's (last) answer."""
    name = result["name"]
    if result["error"]:
        return [f"request error {result['error']}"]
    status = result["status"]
    if name in DELIBERATE_REFUSALS:
        expected, _why = DELIBERATE_REFUSALS[name]
        return [] if status == expected else [f"expected the deliberate refusal {expected}"]
    if status is None or not 200 <= status < 300:
        return ["not 2xx"]
    check = SHAPES.get(name)
    return check(_answer(result)) if check else []


def _report(runner: Runner, extra: list[str]) -> str:
    lines = []
    for name in CHANGES:
        results = runner.executions.get(name)
        if not results:
            lines.append(f"- {name}: never ran")
            continue
        last = results[-1]
        problems = _problems(last)
        if problems:
            lines.append(
                f"- {name}: {last['method']} {last['url']} -> {last['status']}: {'; '.join(problems)}\n"
                f"    body: {last['body'][:1500]}"
            )
    return "\n".join([*extra, *lines])


# ---------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def newman_path() -> Path:
    if not NEWMAN.exists():
        pytest.fail(f"{NEWMAN} is missing: `make test` installs it (npm ci --prefix tests/postman)")
    return NEWMAN


def test_drec_stage_collection(platform, newman_path, tmp_path):
    tag = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    seed_collection = seed()
    register_buyer = next(
        json.loads(r["request"]["body"]["raw"])
        for f in seed_collection["item"]
        for r in f["item"]
        if r["name"] == "Register Buyer"
    )
    history_end = now - timedelta(days=1)
    # the seed's History interval (2022-07-23T10:36:02.209Z to 2022-11-23T10:00:02.209Z), ending a day ago
    history_start = history_end - (_parse("2022-11-23T10:00:02.209Z") - _parse("2022-07-23T10:36:02.209Z"))
    # the seed's reservation window (1 h 30 min), from an hour ago
    reservation_start = now - timedelta(hours=1)
    variables = {
        "baseUrl": platform.gateway_url,
        "developerEmail": f"UAT_STAGE_DEVELOPER_{tag}@example.org",
        "developerOrgName": f"Drec4-{tag}",
        "deviceExternalId": f"UAT_STAGE_Drec4_{tag}",
        "deltaExternalId": f"EnergyT_{tag}",
        "aggregateExternalId": f"EnergyT1_{tag}",
        "historyStart": _iso(history_start),
        "historyEnd": _iso(history_end),
        "buyerEmail": f"UAT_STAGE_BUYER_{tag}@example.org",
        "buyerOrgName": f"swi979-{tag}",
        "buyerPassword": register_buyer["password"],
        "reservationName": f"UAT-STAGE-{tag}-RES1",
        "reservationStart": _iso(reservation_start),
        "reservationEnd": _iso(reservation_start + timedelta(hours=1, minutes=30)),
    }
    runner = Runner(tmp_path, variables)
    setup: list[str] = []  # what went wrong between the newman runs
    developer_folder = folders(seed_collection)["Developer APIs"]
    buyer_folder = folders(seed_collection)["Buyer APIs"]
    assert developer_folder[:4] == [
        "Register Developer",
        "Developer Login",
        "Register Device",
        "List Registered Devices",
    ]

    try:
        # 1. The developer registers, logs in, registers the collection's device and lists its devices.
        runner.run(*developer_folder[:4])
        token = runner.variable("developerToken")
        if token is None:
            setup.append("- Developer Login captured no accessToken: the developer's requests cannot run")
            return
        with httpx.Client(base_url=platform.gateway_url, headers=bearer(token), timeout=30) as http:
            # 2. The seed's EnergyT (Delta) and EnergyT1 (Aggregate): devices of the same developer.
            onboarded = {}
            for key, capacity in (("deltaExternalId", DELTA_CAPACITY_KW), ("aggregateExternalId", 200)):
                r = http.post("/api/device", json=device_body(variables[key], capacity=capacity))
                if r.status_code != 201:
                    setup.append(f"- registering {variables[key]}: POST /api/device -> {r.status_code}: {r.text}")
                    return
                onboarded[key] = _parse(r.json()["createdAt"])

        time.sleep(
            max(
                0.0,
                (onboarded["deltaExternalId"] + timedelta(seconds=DELTA_WAIT_S) - datetime.now(UTC)).total_seconds(),
            )
        )

        # 3. History, Delta and Aggregate reads; ongoing reads end now.
        end = _iso(datetime.now(UTC) - timedelta(milliseconds=100))
        runner.run(*developer_folder[4:], env={"deltaReadEnd": end, "aggregateReadEnd": end})

        # 4. The buyer registers and logs in, reserves the collection's device and reads its reservations.
        assert buyer_folder[2] == "Create Reservation"
        runner.run(*buyer_folder)
    except Exception as exc:  # noqa: BLE001 - reported with every request's outcome below
        setup.append(f"- the run stopped: {exc!r}")
    finally:
        report = _report(runner, setup)
        if report:
            pytest.fail(f"the D-REC STAGE collection against the platform:\n{report}", pytrace=False)
