"""Kazam simulator: the collection's endpoints and transaction shape, plus the control API."""

import json
import sys

import httpx
import pytest

from opendrec_devstack.kazam_sim import FINISHED_FIELDS, create_app
from opendrec_devstack.net import free_port
from opendrec_devstack.procs import start_helper

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = 1_700_000_000


def client(state_file=None):
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(TOKEN, state_file)), base_url="http://kazam", headers=AUTH
    )


async def add(c, **tx):
    r = await c.post("/simulator/transactions", json=tx)
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture
async def kazam():
    async with client() as c:
        await c.post("/simulator/devices", json={"device_id": "3654e5", "host_id": "hostA", "location": [28.44, 77.29]})
        await c.post(
            "/simulator/devices",
            json={"device_id": "3pt6d3", "host_id": "hostB", "location": [12.97, 77.59], "sockets": ["ccs"]},
        )
        await add(
            c,
            device_id="3654e5",
            txn_id="1000000001",
            user_id="u1",
            start_time=T0,
            end_time=T0 + 3600,
            total_usage=1943.64,
            power=687,
            voltage=236.5,
        )
        await add(
            c,
            device_id="3654e5",
            txn_id="1000000002",
            user_id="u2",
            start_time=T0 + 7200,
            end_time=T0 + 9000,
            total_usage=150.02,
            usage_limit=150,
            end_reason="limit_reached",
        )
        await add(
            c,
            device_id="3pt6d3",
            txn_id="1000000003",
            user_id="u1",
            start_time=T0 + 100,
            end_time=T0 + 200,
            total_usage=0.05,
            private=True,
        )
        yield c


async def test_bearer_token_is_required(kazam):
    body = {"device_id": "3654e5", "start_time": T0, "end_time": T0 + 10**6}
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
        r = await kazam.post("/getTransactions", json=body, headers=headers)
        assert (r.status_code, r.json()) == (401, {"message": "unauthorized"})
    r = await kazam.post("/simulator/transactions", json={"device_id": "x"}, headers={"Authorization": ""})
    assert r.status_code == 401


async def test_transaction_has_the_collection_fields_in_order(kazam):
    r = await kazam.post("/getTransactionDetails", json={"txn_id": "1000000001"})
    assert r.status_code == 200
    tx = r.json()
    assert tuple(tx) == FINISHED_FIELDS
    assert tx == {
        "txn_id": "1000000001",
        "connector_id": 0,
        "device_id": "3654e5",
        "device_org": "kazam",
        "initiated_from": "kazam",
        "segment": "workplace",
        "subsegment": "corporate_office",
        "user_id": "u1",
        "device_network_type": 1,
        "end_time": T0 + 3600,
        "power": 687,
        "start_time": T0,
        "total_usage": 1943.64,
        "tx_status": 0,
        "usage_limit": 1000000,
        "voltage": 236.5,
        "end_reason": "plug_disconnected",
        "payment_initialised": False,
    }
    r = await kazam.post("/getTransactionDetails", json={"txn_id": "404"})
    assert (r.status_code, r.json()) == (404, {"message": "txn_not_found"})


async def test_get_transactions_by_device_host_user_and_window(kazam):
    async def ids(**body):
        body.setdefault("start_time", T0)
        body.setdefault("end_time", T0 + 10**6)
        r = await kazam.post("/getTransactions", json=body)
        assert r.status_code == 200, r.text
        return [t["txn_id"] for t in r.json()["transactions"]]

    assert await ids(device_id="3654e5") == ["1000000002", "1000000001"]  # newest first
    assert await ids(device_id=["3654e5", "3pt6d3"]) == ["1000000002", "1000000003", "1000000001"]
    assert await ids(host_id="hostB") == ["1000000003"]
    assert await ids(user_id="u1") == ["1000000003", "1000000001"]
    assert await ids(user_id="u1", device_id="3654e5") == ["1000000001"]
    # window on the transaction's start_time; times may be quoted as in the collection
    assert await ids(device_id="3654e5", start_time=str(T0 + 1), end_time=str(T0 + 7200)) == ["1000000002"]
    assert await ids(device_id="3654e5", start_time=T0 + 7201) == []


async def test_private_flag(kazam):
    base = {"device_id": ["3654e5", "3pt6d3"], "start_time": T0, "end_time": T0 + 10**6}
    r = await kazam.post("/getTransactions", json={**base, "private": False})
    assert [t["txn_id"] for t in r.json()["transactions"]] == ["1000000002", "1000000001"]
    r = await kazam.post("/getTransactions", json={**base, "private": True})
    assert [t["txn_id"] for t in r.json()["transactions"]] == ["1000000003"]


async def test_pagination_counts(kazam):
    body = {"device_id": ["3654e5", "3pt6d3"], "start_time": T0, "end_time": T0 + 10**6, "limit": 2, "offset": 2}
    r = await kazam.post("/getTransactions", json=body)
    assert r.json()["count"] == {"start": 2, "end": 2, "total": 3}
    assert [t["txn_id"] for t in r.json()["transactions"]] == ["1000000001"]
    r = await kazam.post("/getTransactions", json={"device_id": "3654e5", "start_time": T0, "end_time": T0 + 10**6})
    assert r.json()["count"] == {"start": 0, "end": 25, "total": 2}


async def test_bad_requests_are_400(kazam):
    r = await kazam.post("/getTransactions", json={"start_time": T0, "end_time": T0 + 1})
    assert r.status_code == 400 and "required" in r.json()["message"]
    r = await kazam.post("/getTransactions", json={"device_id": "3654e5"})
    assert r.status_code == 400 and r.json()["message"] == "bad_request"
    r = await kazam.post("/getTransactions", content=b"not json")
    assert r.status_code == 400


async def test_ongoing_transaction_then_stop(kazam):
    tx = await add(
        kazam,
        device_id="3654e5",
        txn_id="1000000009",
        start_time=T0 + 20000,
        ongoing=True,
        total_usage=12.5,
        power=3300,
    )
    assert tx["tx_status"] == 1 and tx["ack"] is True
    assert "end_time" not in tx and "end_reason" not in tx

    r = await kazam.post("/getLatestTransaction", json={"device_id": "3654e5"})
    assert r.json()["txn_id"] == "1000000009"
    r = await kazam.post("/getDeviceState", json={"device_id": "3654e5"})
    assert r.json()["charge_state"] == 2

    r = await kazam.post("/simulator/transactions/1000000009/stop", json={"end_time": T0 + 23600, "total_usage": 3300})
    assert r.status_code == 200
    done = r.json()
    assert (done["tx_status"], done["end_time"], done["end_reason"]) == (0, T0 + 23600, "cmd_stop")
    assert done["total_usage"] == 3300
    r = await kazam.post("/simulator/transactions/1000000009/stop")
    assert r.status_code == 409
    r = await kazam.post("/getDeviceState", json={"device_id": "3654e5"})
    assert r.json()["charge_state"] == 0


async def test_latest_of_unknown_device_is_404(kazam):
    r = await kazam.post("/getLatestTransaction", json={"device_id": "nope"})
    assert (r.status_code, r.json()) == (404, {"message": "no_transaction_found"})


async def test_device_details_by_location(kazam):
    r = await kazam.get("/getDeviceDetails")
    assert [d["device_id"] for d in r.json()] == ["3654e5", "3pt6d3"]
    r = await kazam.get("/getDeviceDetails", params={"loc": "[28.45,77.30]"})  # default 5 km
    assert [d["device_id"] for d in r.json()] == ["3654e5"]
    assert "address" not in r.json()[0]
    r = await kazam.get("/getDeviceDetails", params={"loc": "[28.45,77.30]", "dist": 3000, "fullAddress": "true"})
    assert len(r.json()) == 2 and r.json()[0]["address"][0]["formatted_address"]
    r = await kazam.get("/getDeviceDetails", params={"socket": '["ccs"]'})
    assert [d["device_id"] for d in r.json()] == ["3pt6d3"]


async def test_state_file_survives_restart(tmp_path):
    state = tmp_path / "kazam.json"
    async with client(state) as c:
        await add(c, device_id="abc123", txn_id="42", start_time=T0, end_time=T0 + 60, total_usage=500)
    async with client(state) as c:
        r = await c.post("/getTransactionDetails", json={"txn_id": "42"})
        assert r.json()["total_usage"] == 500
    assert json.loads(state.read_text())["transactions"]["42"]["device_id"] == "abc123"


def test_command_line_simulator(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        sys.executable,
        "-m",
        "opendrec_devstack.kazam_sim",
        "--port",
        str(port),
        "--token",
        TOKEN,
        "--state",
        str(tmp_path / "state.json"),
    ]
    with (
        start_helper("kazam-sim", argv, port, log_path=tmp_path / "sim.log"),
        httpx.Client(base_url=url, headers=AUTH) as c,
    ):
        created = c.post("/simulator/transactions", json={"device_id": "d1", "total_usage": 1000}).json()
        assert len(created["txn_id"]) == 10 and created["end_time"] - created["start_time"] == 3600
        r = c.post(
            "/getTransactions",
            json={"device_id": "d1", "start_time": created["start_time"], "end_time": created["end_time"]},
        )
        assert [t["txn_id"] for t in r.json()["transactions"]] == [created["txn_id"]]
        assert httpx.post(url + "/getLatestTransaction", json={"device_id": "d1"}).status_code == 401
