"""Kazam platform simulator, after shared/seeds/kazam-platform.postman_collection.json.

    python -m opendrec_devstack.kazam_sim --port 8110 --token TOKEN [--state FILE]

Kazam API (bearer token required, 401 `{"message": "unauthorized"}` otherwise):
  POST /getTransactions        {device_id: str | [str], host_id, user_id, start_time, end_time,
                                limit=25, offset=0, private?}
                                -> {"count": {"start": offset, "end": limit, "total": n}, "transactions": [...]}
  POST /getLatestTransaction   {device_id}  -> one transaction
  POST /getTransactionDetails  {txn_id}     -> one transaction
  POST /getDeviceState         {device_id | "*"} -> device state (a list for "*")
  POST /getDeviceUptime        {device_id: [str], start_time (00:00 IST), end_time} -> {device_id: uptime seconds}
  GET  /getDeviceDetails       ?loc=[lat,long]&dist=km&fullAddress=bool&socket=..&parking=.. -> [charger]

Simulator control (same bearer token), for demos and tests:
  POST /simulator/devices                     add/replace a device
  POST /simulator/transactions                add a finished (default) or ongoing (`"ongoing": true`) txn
  POST /simulator/transactions/{txn_id}/stop  finish an ongoing txn {end_time?, total_usage?, end_reason?}
  GET  /simulator/state                       everything, including the `private` flag of each txn
  POST /simulator/reset                       forget everything
  POST /simulator/accounts                    an organization's Kazam account {name, token}: that token sees only
                                              the devices added with `"account": name`
  POST /simulator/accounts/{name}/revoke      its token answers 401 from now on
  POST /simulator/faults                      the next `count` requests to `path` (of `account`, or any) answer
                                              `status` with {"message": message} (e.g. 500 device_timeout), or
                                              first wait `delay_s` (a timeout for a client with a shorter limit)
  DELETE /simulator/faults                    forget the faults not yet taken
  GET  /simulator/requests                    the Kazam API requests received: {account (or "platform"): {path: n}}

Tokens: `--token` is the platform token (sees every device; the only one allowed on /simulator/*); each
account's token sees its own devices only: another's is `device_not_found` (getDeviceState) or absent.

Choices where the collection is silent (documented so clients know what they test against):
- `total_usage` and `usage_limit` are in Wh: the collection documents `usage_limit` in Wh, and its
  example with `"usage_limit": 150` ended with `"total_usage": 150.02, "end_reason": "limit_reached"`,
  so both share that unit. `power` is in W, `voltage` in V, times are unix seconds.
- A finished transaction has `tx_status` 0 (as every example) with `end_time` and `end_reason`;
  an ongoing one has `tx_status` 1, `"ack": true` and no `end_time`/`end_reason` (the shape of the
  collection's "Private Transactions Excluded" example).
- /getTransactions selects transactions whose `start_time` lies in [start_time, end_time], newest
  first; `count.end` echoes `limit` as the collection's pagination example does. `private` absent:
  all; `false`: only public ones; `true`: only private ones. device_id/host_id/user_id combine with AND.
- getDeviceUptime's uptime is in seconds online within [start_time, end_time] (the collection leaves the unit
  open): the device's `uptime_ratio` (default 1) of the window; a start_time not at 00:00 IST is 400.
- Unknown transaction: 404 `{"message": "txn_not_found"}`; device without transactions:
  404 `{"message": "no_transaction_found"}`; malformed body: 400 `{"message": ...}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, ValidationError, field_validator

# Field order of a transaction as in the collection's examples: a finished one ("Get Transactions") and an
# ongoing one, which has `ack` after its id and no end_time or end_reason.
_CHARGER_AND_USER = (
    "connector_id",
    "device_id",
    "device_org",
    "initiated_from",
    "segment",
    "subsegment",
    "user_id",
    "device_network_type",
)
_SESSION = ("power", "start_time", "total_usage", "tx_status", "usage_limit", "voltage")
FINISHED_FIELDS = ("txn_id", *_CHARGER_AND_USER, "end_time", *_SESSION, "end_reason", "payment_initialised")
ONGOING_FIELDS = ("txn_id", "ack", *_CHARGER_AND_USER, *_SESSION, "payment_initialised")
TX_FINISHED = 0
TX_ONGOING = 1


class KazamError(Exception):
    def __init__(self, status: int, message: str, errors: Any = None):
        self.status = status
        self.message = message
        self.errors = errors

    def body(self) -> dict:
        return {"message": self.message} if self.errors is None else {"message": self.message, "errors": self.errors}


# ---------------------------------------------------------------- request bodies


def _unix(v: Any) -> Any:
    # the collection sends times both as numbers and as quoted numbers
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)
    return v


class TransactionsQuery(BaseModel):
    device_id: str | list[str] | None = None
    host_id: str | None = None
    user_id: str | None = None
    start_time: int
    end_time: int
    limit: int = Field(25, ge=1, le=1000)
    offset: int = Field(0, ge=0)
    private: bool | None = None

    _times = field_validator("start_time", "end_time", "limit", "offset", mode="before")(_unix)


class DeviceQuery(BaseModel):
    device_id: str


class UptimeQuery(BaseModel):
    device_id: str | list[str]
    start_time: int
    end_time: int

    _times = field_validator("start_time", "end_time", mode="before")(_unix)


class AccountIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    token: str = Field(min_length=1, max_length=4096)


class FaultIn(BaseModel):
    path: str = Field(description="e.g. /getTransactions")
    status: int = Field(500, ge=200, le=599)
    message: str = "device_timeout"
    count: int = Field(1, ge=1, le=10_000)
    account: str | None = Field(None, description="only requests with this account's token (default: any)")
    delay_s: float = Field(0, ge=0, le=60, description="wait this long first (then answer the fault)")


class TxnQuery(BaseModel):
    txn_id: str

    _id = field_validator("txn_id", mode="before")(lambda v: str(v) if isinstance(v, int) else v)


class DeviceIn(BaseModel):
    device_id: str
    host_id: str = "sim-host"
    device_org: str = "kazam"
    name: str | None = None
    model: str = "Kazam Mini"
    rate: float = 10
    location: tuple[float, float] = (28.4408, 77.2974)
    address: str = "Sector 44, Gurugram, Haryana, India"
    timings: str = "00:00 - 23:59"
    sockets: list[str] = ["type_2"]
    vehicle_types: list[str] = ["2W", "4W"]
    image: str = ""
    amenities: list[dict] = []
    device_group: str = "lite_ble"
    protocol: str = "kazam"
    num_connectors: int = 1
    segment: str = "workplace"
    subsegment: str = "corporate_office"
    device_network_type: int = 1
    account: str | None = Field(default=None, description="the account (organization) owning it; None: the platform's")
    uptime_ratio: float = Field(default=1.0, ge=0, le=1)


class TransactionIn(BaseModel):
    device_id: str
    txn_id: str | None = None
    connector_id: int = 0
    user_id: str = "9999999999"
    start_time: int | None = None
    end_time: int | None = None
    total_usage: float = Field(0, ge=0, description="Wh")
    power: float = 0
    voltage: float = 230.0
    usage_limit: float = 1000000
    end_reason: str = "plug_disconnected"
    initiated_from: str | None = None
    payment_initialised: bool = False
    ongoing: bool = False
    private: bool = False
    host_id: str | None = Field(None, description="host of the device if it is created on the fly")

    _times = field_validator("start_time", "end_time", mode="before")(_unix)


class StopIn(BaseModel):
    end_time: int | None = None
    total_usage: float | None = Field(None, ge=0)
    end_reason: str = "cmd_stop"


# ---------------------------------------------------------------- state


class Simulator:
    """All simulator state; optionally mirrored to a JSON file after every change."""

    def __init__(self, state_file: str | os.PathLike | None = None):
        self.state_file = Path(state_file) if state_file else None
        self.devices: dict[str, dict] = {}
        self.transactions: dict[str, dict] = {}
        self.accounts: dict[str, dict] = {}  # name -> {"token", "revoked"}
        self.faults: list[dict] = []
        self.requests: dict[str, dict[str, int]] = {}  # account name ("platform") -> path -> Kazam API requests
        if self.state_file is not None and self.state_file.exists():
            data = json.loads(self.state_file.read_text())
            self.devices = data.get("devices", {})
            self.transactions = data.get("transactions", {})
            self.accounts = data.get("accounts", {})

    def save(self) -> None:
        if self.state_file is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f".{self.state_file.name}.tmp")
        tmp.write_text(
            json.dumps(
                {"devices": self.devices, "transactions": self.transactions, "accounts": self.accounts}, indent=1
            )
        )
        os.replace(tmp, self.state_file)

    def reset(self) -> None:
        self.devices.clear()
        self.transactions.clear()
        self.accounts.clear()
        self.faults.clear()
        self.requests.clear()
        self.save()

    def account_of(self, token: str) -> str | None:
        """The account name of an account token (KazamError 401 for an unknown or revoked one)."""
        for name, account in self.accounts.items():
            if account["token"] == token:
                if account["revoked"]:
                    break
                return name
        raise KazamError(401, "unauthorized")

    def sees(self, account: str | None, device_id: str) -> bool:
        """The platform token (account None) sees every device; an account token its own."""
        dev = self.devices.get(device_id)
        return account is None or (dev is not None and dev.get("account") == account)

    def take_fault(self, path: str, account: str | None) -> dict | None:
        for fault in self.faults:
            if fault["path"] == path and fault["account"] in (None, account):
                fault["count"] -= 1
                if fault["count"] <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def uptime(self, q: UptimeQuery, account: str | None) -> dict:
        ist_midnight = (q.start_time + 19_800) % 86_400 == 0  # 00:00 IST is 18:30 UTC
        if not ist_midnight:
            raise KazamError(400, "start_time must be a 12am IST timestamp")
        if q.end_time < q.start_time:
            raise KazamError(400, "end_time_before_start_time")
        ids = [q.device_id] if isinstance(q.device_id, str) else q.device_id
        return {
            d: int(self.devices[d].get("uptime_ratio", 1.0) * (q.end_time - q.start_time))
            for d in ids
            if d in self.devices and self.sees(account, d)
        }

    def add_device(self, dev: DeviceIn) -> dict:
        record = dev.model_dump()
        record["location"] = list(dev.location)
        record["name"] = dev.name or f"Charger {dev.device_id}"
        record["created_at"] = int(time.time())
        self.devices[dev.device_id] = record
        self.save()
        return record

    def _new_txn_id(self) -> str:
        # "upto 10 digits for Kazam chargers"
        while True:
            txn_id = str(random.randint(10**9, 10**10 - 1))
            if txn_id not in self.transactions:
                return txn_id

    def add_transaction(self, tx: TransactionIn) -> dict:
        device = self.devices.get(tx.device_id)
        if device is None:
            device = self.add_device(
                DeviceIn(device_id=tx.device_id, host_id=tx.host_id) if tx.host_id else DeviceIn(device_id=tx.device_id)
            )
        txn_id = tx.txn_id or self._new_txn_id()
        if txn_id in self.transactions:
            raise KazamError(409, "txn_exists")
        now = int(time.time())
        if tx.ongoing:
            start, end = (tx.start_time if tx.start_time is not None else now), None
        else:
            end = tx.end_time if tx.end_time is not None else now
            start = tx.start_time if tx.start_time is not None else end - 3600
            if end < start:
                raise KazamError(400, "end_time_before_start_time")
        record = {
            "txn_id": txn_id,
            "connector_id": tx.connector_id,
            "device_id": tx.device_id,
            "device_org": device["device_org"],
            "initiated_from": tx.initiated_from or device["device_org"],
            "segment": device["segment"],
            "subsegment": device["subsegment"],
            "user_id": tx.user_id,
            "device_network_type": device["device_network_type"],
            "end_time": end,
            "power": tx.power,
            "start_time": start,
            "total_usage": round(tx.total_usage, 2),
            "tx_status": TX_ONGOING if tx.ongoing else TX_FINISHED,
            "usage_limit": tx.usage_limit,
            "voltage": tx.voltage,
            "end_reason": None if tx.ongoing else tx.end_reason,
            "payment_initialised": tx.payment_initialised,
            "private": tx.private,
        }
        self.transactions[txn_id] = record
        self.save()
        return record

    def stop_transaction(self, txn_id: str, stop: StopIn) -> dict:
        record = self.transactions.get(txn_id)
        if record is None:
            raise KazamError(404, "txn_not_found")
        if record["tx_status"] != TX_ONGOING:
            raise KazamError(409, "txn_not_ongoing")
        end = stop.end_time if stop.end_time is not None else int(time.time())
        if end < record["start_time"]:
            raise KazamError(400, "end_time_before_start_time")
        record.update(end_time=end, end_reason=stop.end_reason, tx_status=TX_FINISHED, power=0)
        if stop.total_usage is not None:
            record["total_usage"] = round(stop.total_usage, 2)
        self.save()
        return record

    def find_transactions(self, q: TransactionsQuery, account: str | None = None) -> tuple[int, list[dict]]:
        if q.device_id is None and q.host_id is None and q.user_id is None:
            raise KazamError(400, "device_id, host_id or user_id is required")
        device_ids = None
        if q.device_id is not None:
            device_ids = {q.device_id} if isinstance(q.device_id, str) else set(q.device_id)
        if q.host_id is not None:
            hosted = {d for d, dev in self.devices.items() if dev["host_id"] == q.host_id}
            device_ids = hosted if device_ids is None else device_ids & hosted
        found = [
            t
            for t in self.transactions.values()
            if (device_ids is None or t["device_id"] in device_ids)
            and self.sees(account, t["device_id"])
            and (q.user_id is None or t["user_id"] == q.user_id)
            and q.start_time <= t["start_time"] <= q.end_time
            and (q.private is None or t["private"] == q.private)
        ]
        found.sort(key=lambda t: (t["start_time"], t["txn_id"]), reverse=True)
        return len(found), found[q.offset : q.offset + q.limit]

    def latest_transaction(self, device_id: str) -> dict:
        mine = [t for t in self.transactions.values() if t["device_id"] == device_id]
        if not mine:
            raise KazamError(404, "no_transaction_found")
        return max(mine, key=lambda t: (t["start_time"], t["txn_id"]))

    def device_state(self, device_id: str, account: str | None = None) -> dict:
        dev = self.devices.get(device_id)
        if dev is None or not self.sees(account, device_id):
            raise KazamError(404, "device_not_found")
        busy = any(t["device_id"] == device_id and t["tx_status"] == TX_ONGOING for t in self.transactions.values())
        return {
            "device_id": device_id,
            "device_group": dev["device_group"],
            "location": dev["location"],
            "charge_state": 2 if busy else 0,
            "host_id": dev["host_id"],
            "network": True,
            "network_type": dev["device_network_type"],
            "rate": dev["rate"],
            "theft_state": False,
            "timestamp": int(time.time()),
            "org": dev["device_org"],
            "protocol": dev["protocol"],
            "num_connectors": dev["num_connectors"],
        }


def kazam_view(record: dict) -> dict:
    """A transaction exactly as the Kazam API shows it (no simulator-only fields)."""
    if record["tx_status"] == TX_ONGOING:
        return {k: (True if k == "ack" else record[k]) for k in ONGOING_FIELDS}
    return {k: record[k] for k in FINISHED_FIELDS}


def _distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def _list_param(raw: str | None) -> list[str] | None:
    """`socket`/`parking` come as a JSON array or a comma-separated list."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw.split(",")
    return [str(v).strip() for v in (value if isinstance(value, list) else [value])]


def charger_details(dev: dict, full_address: bool) -> dict:
    out = {
        "device_id": dev["device_id"],
        "name": dev["name"],
        "model": dev["model"],
        "rate": dev["rate"],
        "image": dev["image"],
        "timings": dev["timings"],
        "sockets": dev["sockets"],
        "vehicle_types": dev["vehicle_types"],
        "location": dev["location"],
        "amenities": dev["amenities"],
    }
    if full_address:
        # the real API forwards Google reverse geocoding results: an array of address objects
        out["address"] = [
            {
                "formatted_address": dev["address"],
                "geometry": {"location": {"lat": dev["location"][0], "lng": dev["location"][1]}},
            }
        ]
    return out


# ---------------------------------------------------------------- app


def create_app(token: str, state_file: str | os.PathLike | None = None) -> FastAPI:
    sim = Simulator(state_file)
    lock = asyncio.Lock()
    app = FastAPI(title="Kazam platform simulator", docs_url="/simulator/docs", openapi_url="/simulator/openapi.json")
    app.state.sim = sim
    bearer = HTTPBearer(auto_error=False)

    async def authorized(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if cred is None or cred.credentials != token:
            raise KazamError(401, "unauthorized")

    async def account(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str | None:
        """The caller's account (None: the platform token); then a fault set for this path, if any."""
        if cred is None:
            raise KazamError(401, "unauthorized")
        name = None if cred.credentials == token else sim.account_of(cred.credentials)
        counts = sim.requests.setdefault(name or "platform", {})
        counts[request.url.path] = counts.get(request.url.path, 0) + 1
        fault = sim.take_fault(request.url.path, name)
        if fault is not None:
            if fault["delay_s"]:
                await asyncio.sleep(fault["delay_s"])
            raise KazamError(fault["status"], fault["message"])
        return name

    @app.exception_handler(KazamError)
    async def _kazam_error(request: Request, exc: KazamError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError):
        return JSONResponse({"message": "bad_request", "errors": jsonable_errors(exc.errors())}, status_code=400)

    async def body(request: Request, model: type[BaseModel]):
        # Kazam endpoints parse their own bodies so that a bad one is a Kazam-style 400
        try:
            return model.model_validate(await request.json())
        except ValueError as exc:  # JSON decode errors and ValidationError
            errors = jsonable_errors(exc.errors()) if isinstance(exc, ValidationError) else str(exc)
            raise KazamError(400, "bad_request", errors) from None

    auth = [Depends(authorized)]

    @app.post("/getTransactions")
    async def get_transactions(request: Request, who: str | None = Depends(account)):
        q = await body(request, TransactionsQuery)
        total, page = sim.find_transactions(q, who)
        return {
            "count": {"start": q.offset, "end": q.limit, "total": total},
            "transactions": [kazam_view(t) for t in page],
        }

    @app.post("/getLatestTransaction", dependencies=auth)
    async def get_latest_transaction(request: Request):
        q = await body(request, DeviceQuery)
        return kazam_view(sim.latest_transaction(q.device_id))

    @app.post("/getTransactionDetails", dependencies=auth)
    async def get_transaction_details(request: Request):
        q = await body(request, TxnQuery)
        record = sim.transactions.get(q.txn_id)
        if record is None:
            raise KazamError(404, "txn_not_found")
        return kazam_view(record)

    @app.post("/getDeviceState")
    async def get_device_state(request: Request, who: str | None = Depends(account)):
        q = await body(request, DeviceQuery)
        if q.device_id == "*":
            return [sim.device_state(d, who) for d in sorted(sim.devices) if sim.sees(who, d)]
        return sim.device_state(q.device_id, who)

    @app.post("/getDeviceUptime")
    async def get_device_uptime(request: Request, who: str | None = Depends(account)):
        return sim.uptime(await body(request, UptimeQuery), who)

    @app.post("/simulator/accounts", dependencies=auth, status_code=201)
    async def add_account(acc: AccountIn):
        async with lock:
            sim.accounts[acc.name] = {"token": acc.token, "revoked": False}
            sim.save()
        return {"name": acc.name}

    @app.post("/simulator/accounts/{name}/revoke", dependencies=auth)
    async def revoke_account(name: str):
        async with lock:
            if name not in sim.accounts:
                raise KazamError(404, "account_not_found")
            sim.accounts[name]["revoked"] = True
            sim.save()
        return {"name": name, "revoked": True}

    @app.post("/simulator/faults", dependencies=auth, status_code=201)
    async def add_fault(fault: FaultIn):
        async with lock:
            sim.faults.append(fault.model_dump())
        return fault.model_dump()

    @app.delete("/simulator/faults", dependencies=auth, status_code=204)
    async def clear_faults():
        async with lock:
            sim.faults.clear()

    @app.get("/simulator/requests", dependencies=auth)
    async def requests_received():
        return sim.requests

    @app.get("/getDeviceDetails", dependencies=auth)
    async def get_device_details(
        loc: str | None = None,
        dist: float = 5.0,
        fullAddress: bool = False,
        socket: str | None = None,
        parking: str | None = None,
    ):
        center = None
        if loc is not None:
            try:
                lat, lng = json.loads(loc)
                center = (float(lat), float(lng))
            except (ValueError, TypeError):
                raise KazamError(400, "loc must be [latitude,longitude]") from None
        sockets, parkings = _list_param(socket), _list_param(parking)
        out = []
        for dev in sorted(sim.devices.values(), key=lambda d: d["device_id"]):
            if center is not None and _distance_km(center, tuple(dev["location"])) > dist:
                continue
            if sockets is not None and not set(sockets) & set(dev["sockets"]):
                continue
            if parkings is not None and not set(parkings) & set(dev["vehicle_types"]):
                continue
            out.append(charger_details(dev, fullAddress))
        return out

    @app.post("/simulator/devices", dependencies=auth, status_code=201)
    async def add_device(dev: DeviceIn):
        async with lock:
            return sim.add_device(dev)

    @app.post("/simulator/transactions", dependencies=auth, status_code=201)
    async def add_transaction(tx: TransactionIn):
        async with lock:
            return kazam_view(sim.add_transaction(tx))

    @app.post("/simulator/transactions/{txn_id}/stop", dependencies=auth)
    async def stop_transaction(txn_id: str, stop: StopIn | None = None):
        async with lock:
            return kazam_view(sim.stop_transaction(txn_id, stop or StopIn(total_usage=None)))

    @app.get("/simulator/state", dependencies=auth)
    async def state():
        return {"devices": list(sim.devices.values()), "transactions": list(sim.transactions.values())}

    @app.post("/simulator/reset", dependencies=auth, status_code=204)
    async def reset():
        async with lock:
            sim.reset()

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    return app


async def add_charger(kazam_url: str, token: str, device_id: str, account: str | None = None) -> None:
    """Put a charger on a running simulator (platform token), owned by `account` (None: the platform's): what a
    test does before linking it, since linking asks /getDeviceState with the organization's credentials."""
    import httpx

    async with httpx.AsyncClient(base_url=kazam_url, headers={"Authorization": f"Bearer {token}"}) as client:
        answer = await client.post("/simulator/devices", json={"device_id": device_id, "account": account})
        answer.raise_for_status()


def jsonable_errors(errors) -> list[dict]:
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in errors]


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(
        prog="python -m opendrec_devstack.kazam_sim", description="Kazam platform simulator"
    )
    parser.add_argument("--port", type=int, default=8110)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--token", default=os.environ.get("KAZAM_TOKEN"), help="bearer token clients must send")
    parser.add_argument("--state", default=None, help="JSON file keeping devices and transactions across restarts")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("--token (or KAZAM_TOKEN) is required")
    app = create_app(args.token, args.state)
    print(f"Kazam simulator on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
