"""OCPP 1.6J charge points connecting directly (issue 19): the central system served on a real port (uvicorn),
charge points simulated with the same `ocpp` library over `websockets`, a real broker and Postgres. Each finished
transaction is exactly one read.submitted, whatever the resends, reconnections and duplicate StopTransactions."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import uvicorn
import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus

from opendrec_charger_gateway import handlers
from opendrec_charger_gateway.app import build
from opendrec_charger_gateway.settings import Settings
from opendrec_contracts import ReadRejected, ReadRejection
from opendrec_devstack.net import free_port
from opendrec_gateway.app import create_app
from opendrec_gateway.settings import Settings as GatewaySettings
from opendrec_kit.testing import OwnerStandIn, TokenIssuer, dispatch, eventually, settings_for_test, started

from .test_kazam import headers, known_device, submissions

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
async def central(postgres_url, kafka_bootstrap):
    """The charger gateway in-process, its app also served by uvicorn on a free port (WebSockets need one)."""
    owners = OwnerStandIn().start()
    settings = settings_for_test(
        Settings,
        postgres_url,
        kafka_bootstrap,
        service_name="charger-gateway-ocpp",
        kazam_poll_seconds=3600,  # no Kazam here
        identity_url=owners.url,
        devices_url=owners.url,
    )
    runtime = build(settings)
    issuer = TokenIssuer()
    issuer.trust_in(runtime)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(runtime.app, port=port, lifespan="off", log_level="warning"))
    try:
        async with started(runtime) as client:
            serving = asyncio.create_task(server.serve())
            await eventually(lambda: asyncio.sleep(0, server.started), timeout=30)
            try:
                yield runtime, client, issuer, f"ws://127.0.0.1:{port}"
            finally:
                server.should_exit = True
                await serving
    finally:
        owners.stop()


class StationSim(ChargePoint):
    """A charge point: sends what a real one sends; answers nothing the central system asks (none here)."""

    @on(Action.get_configuration)
    async def on_get_configuration(self, **_):  # pragma: no cover - the central system asks nothing
        return call_result.GetConfiguration(configuration_key=[])


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@contextlib.asynccontextmanager
async def connected(url: str, charger: str, password: str, subprotocols=("ocpp1.6",)):
    async with websockets.connect(
        f"{url}/ocpp/{charger}",
        subprotocols=list(subprotocols),
        additional_headers={"Authorization": basic(charger, password)},
    ) as ws:
        assert ws.subprotocol == "ocpp1.6"
        station = StationSim(charger, ws)
        task = asyncio.create_task(station.start())
        try:
            yield station
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await task


async def register_ocpp(runtime, client, issuer):
    _, org, ext, _ = await known_device(runtime)
    charger = f"CP-{uuid.uuid4().hex[:8]}"
    r = await client.post(
        "/api/charger", json={"chargerId": charger, "externalId": ext, "type": "ocpp"}, headers=headers(issuer, org)
    )
    assert r.status_code == 201, r.text
    return charger, r.json()


async def refusal(url: str, who: str, secret: str, protocols=("ocpp1.6",), source: str = "127.0.0.1"):
    """The HTTP response refusing `who`'s upgrade from the loopback address `source` (None: accepted)."""
    try:
        async with websockets.connect(
            f"{url}/ocpp/{who}",
            subprotocols=list(protocols),
            additional_headers={"Authorization": basic(who, secret)},
            local_addr=(source, 0),
        ):
            return None
    except websockets.InvalidStatus as refused:
        return refused.response


async def attempt(url: str, who: str, secret: str, protocols=("ocpp1.6",), source: str = "127.0.0.1") -> int:
    """101 when `who` is accepted from `source`, else the refusal's HTTP status."""
    refused = await refusal(url, who, secret, protocols, source)
    return 101 if refused is None else refused.status_code


async def retry_after(url: str, who: str, secret: str, source: str) -> str:
    """The Retry-After of the 429 that holds `source` back."""
    refused = await refusal(url, who, secret, source=source)
    assert refused is not None and refused.status_code == 429, refused
    return refused.headers["Retry-After"]


def at(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def energy(wh: int, moment: datetime) -> list[dict]:
    return [
        {
            "timestamp": at(moment),
            "sampledValue": [{"value": str(wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}],
        }
    ]


async def test_a_charge_point_with_the_wrong_credentials_or_subprotocol_is_refused_at_the_upgrade(central):
    runtime, client, issuer, url = central
    charger, answer = await register_ocpp(runtime, client, issuer)
    assert answer["type"] == "ocpp" and answer["ocppUrl"] == f"/ocpp/{charger}"
    password = answer["ocppPassword"]
    assert 16 <= len(password) <= 40
    # never answered again
    listed = (await client.get("/api/charger", headers=headers(issuer, answer["organizationId"]))).json()
    assert next(c for c in listed if c["chargerId"] == charger).get("ocppPassword") is None

    refusals = [
        (charger, "wrong-password-123456", ("ocpp1.6",)),
        (f"CP-{uuid.uuid4().hex[:8]}", password, ("ocpp1.6",)),  # not linked
        (charger, password, ("ocpp2.0.1",)),
    ]
    for n, (who, secret, protocols) in enumerate(refusals):
        # each from an address of its own: an address that sent a wrong password is held back a moment (below)
        assert await attempt(url, who, secret, protocols, source=f"127.0.0.{11 + n}") == 403, (who, protocols)
    with pytest.raises(websockets.InvalidStatus):  # the credentials of another charge point's path
        async with websockets.connect(
            f"{url}/ocpp/other-{charger}",
            subprotocols=["ocpp1.6"],
            additional_headers={"Authorization": basic(charger, password)},
        ):
            pass
    async with connected(url, charger, password) as station:
        booted = await station.call(call.BootNotification(charge_point_model="M1", charge_point_vendor="OpenDREC"))
        assert booted.status == RegistrationStatus.accepted and booted.interval > 0


async def test_wrong_passwords_hold_their_address_back_and_the_right_password_from_elsewhere_connects(central):
    runtime, client, issuer, url = central
    charger, answer = await register_ocpp(runtime, client, issuer)
    password = answer["ocppPassword"]
    assert await attempt(url, charger, "guess-0000000000000", source="127.0.0.21") == 403
    # That address is held back (1 s) before any check, even with the right password...
    assert await retry_after(url, charger, password, source="127.0.0.21") == "1"
    # ...while the real charge point, from its own address, connects at once.
    assert await attempt(url, charger, password) == 101
    # A second address guessing the same charge point waits twice as long: the guesses of its id count too.
    assert await attempt(url, charger, "guess-1111111111111", source="127.0.0.22") == 403
    assert await retry_after(url, charger, password, source="127.0.0.22") == "2"

    # No lockout: once its backoff is over, the first address gets in with the right password (tries meanwhile are
    # refused without counting).
    async def admitted() -> bool:
        return await attempt(url, charger, password, source="127.0.0.21") == 101

    await eventually(admitted, timeout=10)


async def test_each_finished_transaction_is_one_read_whatever_the_resends_and_reconnections(central, kafka_bootstrap):
    runtime, client, issuer, url = central
    charger, answer = await register_ocpp(runtime, client, issuer)
    password = answer["ocppPassword"]
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)

    async with connected(url, charger, password) as station:
        await station.call(call.BootNotification(charge_point_model="M1", charge_point_vendor="OpenDREC"))
        assert (await station.call(call.Heartbeat())).current_time
        await station.call(
            call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing", timestamp=at(t0))
        )
        authorized = await station.call(call.Authorize(id_tag="TAG1"))
        assert authorized.id_tag_info["status"] == AuthorizationStatus.accepted
        start = call.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=10_000, timestamp=at(t0))
        started = await station.call(start)
        assert started.id_tag_info["status"] == AuthorizationStatus.accepted
        tx = started.transaction_id
        await station.call(
            call.MeterValues(connector_id=1, transaction_id=tx, meter_value=energy(12_000, t0 + timedelta(minutes=10)))
        )
    # The connection drops mid-transaction; the charge point reconnects and resends its StartTransaction (no answer
    # reached it), then stops, and resends the StopTransaction after another drop.
    async with connected(url, charger, password) as station:
        assert (await station.call(start)).transaction_id == tx
        stop = call.StopTransaction(meter_stop=15_500, timestamp=at(t0 + timedelta(minutes=20)), transaction_id=tx)
        assert (await station.call(stop)).id_tag_info["status"] == AuthorizationStatus.accepted
    async with connected(url, charger, password) as station:
        await station.call(stop)
        await station.call(stop)

    submission = f"ocpp:{charger}:{tx}"
    [envelope] = await eventually(lambda: submissions(kafka_bootstrap, submission) or None, timeout=30)
    payload = envelope["payload"]
    assert (payload["source"], payload["read_type"], payload["charging_sessions"]) == ("ocpp", "Delta", True)
    assert (payload["device_id"], payload["organization_id"]) == (answer["deviceId"], answer["organizationId"])
    [read] = payload["reads"]
    assert (datetime.fromisoformat(read["start"]), datetime.fromisoformat(read["end"]), read["value_wh"]) == (
        t0, t0 + timedelta(minutes=20), 5_500,
    )  # fmt: skip
    # Still one after everything was resent.
    await asyncio.sleep(0)
    assert len(await submissions(kafka_bootstrap, submission)) == 1
    status = await runtime.pool.fetchrow(
        "SELECT status FROM ocpp_connectors WHERE charger_id = $1 AND connector_id = 1", charger
    )
    assert status["status"] == "Preparing"


async def test_a_transaction_left_open_is_closed_from_its_last_meter_values_by_the_next_start(central, kafka_bootstrap):
    runtime, client, issuer, url = central
    charger, answer = await register_ocpp(runtime, client, issuer)
    password = answer["ocppPassword"]
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    async with connected(url, charger, password) as station:
        first = await station.call(call.StartTransaction(connector_id=1, id_tag="A", meter_start=100, timestamp=at(t0)))
        await station.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=first.transaction_id,
                meter_value=energy(2_100, t0 + timedelta(minutes=15)),
            )
        )
        # its StopTransaction never comes (lost); the connector starts another transaction later
        second = await station.call(
            call.StartTransaction(connector_id=1, id_tag="B", meter_start=2_500, timestamp=at(t0 + timedelta(hours=1)))
        )
        assert second.transaction_id != first.transaction_id
        # a transaction without energy is recorded with its reason, and sends nothing
        await station.call(
            call.StopTransaction(
                meter_stop=2_500, timestamp=at(t0 + timedelta(hours=1, minutes=5)), transaction_id=second.transaction_id
            )
        )
    [closed] = await eventually(
        lambda: submissions(kafka_bootstrap, f"ocpp:{charger}:{first.transaction_id}") or None, timeout=30
    )
    [read] = closed["payload"]["reads"]
    assert (datetime.fromisoformat(read["start"]), datetime.fromisoformat(read["end"]), read["value_wh"]) == (
        t0, t0 + timedelta(minutes=15), 2_000,
    )  # fmt: skip
    rows = {
        r["transaction_id"]: r
        for r in await runtime.pool.fetch("SELECT * FROM ocpp_transactions WHERE charger_id = $1", charger)
    }
    assert rows[first.transaction_id]["status"] == "closed_by_next"
    assert (rows[second.transaction_id]["outcome"], rows[second.transaction_id]["reason"]) == (
        "skipped", "no energy delivered (meterStop equals meterStart)",
    )  # fmt: skip
    assert await submissions(kafka_bootstrap, f"ocpp:{charger}:{second.transaction_id}") == []

    # What the organization sees: the charge point's state and its transactions (a refusal by readings included).
    rejected = ReadRejected(
        submission_id=f"ocpp:{charger}:{first.transaction_id}",
        device_id=answer["deviceId"],
        external_id=answer["externalId"],
        organization_id=answer["organizationId"],
        read_type="Delta",
        source="ocpp",
        reasons=[ReadRejection(index=0, reason="overlaps a stored read of this device")],
    )
    assert await dispatch(runtime.pool, "readings", handlers.on_read_rejected, rejected)
    h = headers(issuer, answer["organizationId"])
    listed = await client.get(f"/api/charger/{charger}/transactions", headers=h)
    assert listed.status_code == 200 and listed.headers["X-Total-Count"] == "2"
    by_id = {t["txnId"]: t for t in listed.json()}
    closed_row, empty_row = by_id[str(first.transaction_id)], by_id[str(second.transaction_id)]
    assert (closed_row["status"], closed_row["outcome"], closed_row["valueWh"]) == ("closed_by_next", "refused", 2_000)
    assert closed_row["refusedReasons"] == [{"index": 0, "reason": "overlaps a stored read of this device"}]
    assert (empty_row["status"], empty_row["outcome"]) == ("finished", "skipped")
    state = (await client.get(f"/api/charger/{charger}/state", headers=h)).json()
    assert state["protocol"] == "ocpp1.6" and state["lastHeardAt"]
    uptime = await client.get(
        f"/api/charger/{charger}/uptime", params={"from": "2026-01-01", "to": "2026-01-02"}, headers=h
    )
    assert uptime.status_code == 409


@pytest.fixture(scope="module")
async def gateway_url(central):
    """The public gateway (its own app, uvicorn on a free port) in front of this charger gateway."""
    _, _, _, url = central
    owners = OwnerStandIn().start()  # identity's JWKS: nothing here needs a bearer token
    settings = GatewaySettings(
        environment="test", charger_gateway_url=url.replace("ws://", "http://"), identity_url=owners.url
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: asyncio.sleep(0, server.started), timeout=30)
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving
        owners.stop()


async def test_a_charge_point_reaches_the_central_system_through_the_gateway(central, gateway_url, kafka_bootstrap):
    runtime, client, issuer, _ = central
    charger, answer = await register_ocpp(runtime, client, issuer)
    password = answer["ocppPassword"]
    for who, secret in ((charger, "not-the-password-000"), (f"CP-{uuid.uuid4().hex[:8]}", password)):
        assert await attempt(gateway_url, who, secret, source="127.0.0.31") == 403
    # The charge point's address is the one the gateway was reached from (X-Forwarded-For from a trusted proxy),
    # not the gateway's: 127.0.0.31 is held back (the gateway answers the service's 429 as 403), the real charge
    # point at 127.0.0.1 is not, though both reach the service from the gateway's address.
    assert await attempt(gateway_url, charger, password, source="127.0.0.31") == 403
    with pytest.raises(websockets.InvalidStatus) as elsewhere:  # only /ocpp/... is relayed
        async with websockets.connect(f"{gateway_url}/api/charger", subprotocols=["ocpp1.6"]):
            pass
    assert elsewhere.value.response.status_code == 403

    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    async with connected(gateway_url, charger, password) as station:
        booted = await station.call(call.BootNotification(charge_point_model="M1", charge_point_vendor="OpenDREC"))
        assert booted.status == RegistrationStatus.accepted
        tx = (
            await station.call(call.StartTransaction(connector_id=1, id_tag="T", meter_start=0, timestamp=at(t0)))
        ).transaction_id
        await station.call(
            call.StopTransaction(meter_stop=1_234, timestamp=at(t0 + timedelta(minutes=5)), transaction_id=tx)
        )
    [envelope] = await eventually(lambda: submissions(kafka_bootstrap, f"ocpp:{charger}:{tx}") or None, timeout=30)
    assert envelope["payload"]["reads"][0]["value_wh"] == 1_234
