"""Each organization's own Kazam account (issue 19), against the Kazam simulator process (account tokens, faults),
a real broker and Postgres: proof of ownership, per-organization polls, 401, retries, the breaker, charger state,
uptime and transactions. No platform token here: an organization without credentials has no Kazam."""

import asyncio
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import aiohttp
import httpx
import pytest

from opendrec_charger_gateway import handlers
from opendrec_charger_gateway.app import build
from opendrec_charger_gateway.credentials import TokenCipher
from opendrec_charger_gateway.domain import own_breaker
from opendrec_charger_gateway.kazam import KazamAccess
from opendrec_charger_gateway.poller import KazamPoller
from opendrec_charger_gateway.settings import Settings
from opendrec_contracts import ReadRejected, ReadRejection
from opendrec_kit.testing import OwnerStandIn, TokenIssuer, dispatch, eventually, settings_for_test, started

from .test_kazam import headers, known_device, polls, submissions

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
async def gateway(postgres_url, kafka_bootstrap, kazam_sim):
    url, _ = kazam_sim
    owners = OwnerStandIn().start()
    settings = settings_for_test(
        Settings,
        postgres_url,
        kafka_bootstrap,
        service_name="charger-gateway-accounts",
        kazam_url=url,
        kazam_token="",  # no platform token: every organization uses its own credentials
        kazam_credentials_keys="test-key-new,test-key-old",
        kazam_poll_seconds=0.2,
        kazam_lookback_seconds=3600,
        kazam_breaker_failures=2,
        kazam_breaker_cooldown_seconds=3600,
        identity_url=owners.url,
        devices_url=owners.url,
    )
    runtime = build(settings)
    issuer = TokenIssuer()
    issuer.trust_in(runtime)
    try:
        async with started(runtime) as client:
            yield runtime, client, issuer
    finally:
        owners.stop()


async def kazam_account(sim, charger: str | None = None) -> tuple[str, str]:
    """A Kazam account (name, token) on the simulator, owning `charger` if given."""
    name, token = f"acct-{uuid.uuid4().hex[:8]}", f"tok-{uuid.uuid4().hex}"
    assert (await sim.post("/simulator/accounts", json={"name": name, "token": token})).status_code == 201
    if charger:
        assert (await sim.post("/simulator/devices", json={"device_id": charger, "account": name})).status_code == 201
    return name, token


async def linked_charger(gateway, sim) -> tuple[int, int, str, str, str]:
    """A device of a new organization linked to a charger that the organization's own Kazam account (registered)
    sees: (device id, organization, externalId, charger, account name)."""
    runtime, client, issuer = gateway
    device_id, org, ext, charger = await known_device(runtime)
    name, token = await kazam_account(sim, charger)
    assert (await register_credentials(client, issuer, org, token)).status_code == 200
    assert (await link(client, issuer, org, charger, ext)).status_code == 201
    return device_id, org, ext, charger, name


async def charging_session(sim, session: dict) -> dict:
    """A finished transaction on the simulator, as Kazam shows it."""
    answer = await sim.post("/simulator/transactions", json=session)
    assert answer.status_code == 201, answer.text
    return answer.json()


async def register_credentials(client, issuer, org, token) -> httpx.Response:
    return await client.put("/api/charger/kazam/credentials", json={"token": token}, headers=headers(issuer, org))


async def link(client, issuer, org, charger, ext) -> httpx.Response:
    return await client.post(
        "/api/charger", json={"chargerId": charger, "externalId": ext}, headers=headers(issuer, org)
    )


async def test_only_the_organization_whose_credentials_see_a_charger_may_link_it(gateway, sim):
    runtime, client, issuer = gateway
    _, owner, ext, charger = await known_device(runtime)
    _, thief, thief_ext, _ = await known_device(runtime)
    _, owner_token = await kazam_account(sim, charger)
    _, thief_token = await kazam_account(sim)

    # Without credentials of its own, nobody links (no platform token here).
    refused = await link(client, issuer, thief, charger, thief_ext)
    assert refused.status_code == 409 and "PUT /api/charger/kazam/credentials" in refused.json()["message"]

    registered = await register_credentials(client, issuer, owner, owner_token)
    assert registered.status_code == 200, registered.text
    answer = registered.json()
    assert (answer["organizationId"], answer["status"], answer["baseUrl"]) == (owner, "active", None)
    assert owner_token not in registered.text
    # Stored encrypted: the token's bytes are nowhere in the row, and the current (first) key encrypted it.
    row = await runtime.pool.fetchrow("SELECT * FROM kazam_accounts WHERE organization_id = $1", owner)
    assert owner_token.encode() not in bytes(row["token_encrypted"])
    assert runtime.app.state.kazam_cipher.decrypt(row["token_encrypted"]) == owner_token
    shown = await client.get("/api/charger/kazam/credentials", headers=headers(issuer, owner))
    assert shown.status_code == 200 and owner_token not in shown.text and shown.json()["status"] == "active"

    # Another organization's credentials do not see the charger: 403, and the owner links it.
    assert (await register_credentials(client, issuer, thief, thief_token)).status_code == 200
    taken = await link(client, issuer, thief, charger, thief_ext)
    assert taken.status_code == 403 and "does not see charger" in taken.json()["message"]
    assert (await link(client, issuer, owner, charger, ext)).status_code == 201

    # Bad bodies are 400, a missing account 404 after deletion.
    for bad in ({"token": "short"}, {"token": "x" * 5000}, {"token": "t" * 20, "baseUrl": "not a url"}, {}):
        r = await client.put("/api/charger/kazam/credentials", json=bad, headers=headers(issuer, thief))
        assert r.status_code == 400, (bad, r.text)
    assert (await client.delete("/api/charger/kazam/credentials", headers=headers(issuer, thief))).status_code == 204
    assert (await client.get("/api/charger/kazam/credentials", headers=headers(issuer, thief))).status_code == 404


async def test_polls_use_the_linking_organizations_credentials_and_a_401_stops_them_until_new_ones(
    gateway, sim, kafka_bootstrap
):
    runtime, client, issuer = gateway
    _, org, _, charger, name = await linked_charger(gateway, sim)

    # A one-minute session at ~20 kW: one interval read over exactly [start, end].
    now = int(time.time())
    txn = await charging_session(
        sim, {"device_id": charger, "start_time": now - 60, "end_time": now, "total_usage": 330.4}
    )
    found = await eventually(lambda: submissions(kafka_bootstrap, f"kazam:{txn['txn_id']}") or None, timeout=30)
    [envelope] = found
    payload = envelope["payload"]
    assert payload["charging_sessions"] is True and payload["read_type"] == "Delta"
    [read] = payload["reads"]
    assert (datetime.fromisoformat(read["start"]), datetime.fromisoformat(read["end"]), read["value_wh"]) == (
        datetime.fromtimestamp(now - 60, UTC),
        datetime.fromtimestamp(now, UTC),
        330,
    )

    # The account's token is revoked at Kazam: the account needs new credentials and its links stop polling.
    assert (await sim.post(f"/simulator/accounts/{name}/revoke")).status_code == 200
    state = await eventually(lambda: _status(client, issuer, org, "needs_credentials"), timeout=30)
    assert "401" in state["statusReason"]
    t = int(time.time())  # a session after the link (one ending before it is not the linker's)
    later = await charging_session(sim, {"device_id": charger, "start_time": t - 5, "end_time": t, "total_usage": 50})
    await polls(runtime, 3)
    assert runtime.app.state.kazam_poller.last["without_credentials"] >= 1
    assert await runtime.pool.fetchval("SELECT 1 FROM kazam_transactions WHERE txn_id = $1", later["txn_id"]) is None
    linked = await runtime.pool.fetchval("SELECT 1 FROM charger_links WHERE charger_id = $1", charger)
    assert linked  # the link stays; it is just not polled

    # New credentials: active again, and the waiting transaction becomes a read.
    fresh = f"tok-{uuid.uuid4().hex}"
    assert (await sim.post("/simulator/accounts", json={"name": name, "token": fresh})).status_code == 201
    assert (await register_credentials(client, issuer, org, fresh)).json()["status"] == "active"
    await eventually(lambda: submissions(kafka_bootstrap, f"kazam:{later['txn_id']}") or None, timeout=30)


async def _status(client, issuer, org, wanted):
    answer = (await client.get("/api/charger/kazam/credentials", headers=headers(issuer, org))).json()
    return answer if answer["status"] == wanted else None


async def test_device_timeouts_are_retried_and_a_failing_account_opens_its_breaker(gateway, sim, kafka_bootstrap):
    runtime = gateway[0]
    _, org, _, charger, name = await linked_charger(gateway, sim)

    # Two device_timeout answers (500) in a row: the retries (3 attempts) get through within the round.
    await sim.post("/simulator/faults", json={"path": "/getTransactions", "account": name, "count": 2})
    now = int(time.time())
    txn = await charging_session(
        sim, {"device_id": charger, "start_time": now - 600, "end_time": now, "total_usage": 900}
    )
    await eventually(lambda: submissions(kafka_bootstrap, f"kazam:{txn['txn_id']}") or None, timeout=30)

    # Kazam keeps failing for this account: after 2 failed requests the breaker opens and polls skip it.
    await sim.post(
        "/simulator/faults", json={"path": "/getTransactions", "account": name, "count": 1000, "status": 503}
    )
    access = runtime.app.state.kazam
    await eventually(lambda: _breaker_open(runtime, org), timeout=60)
    await polls(runtime, 2)
    assert runtime.app.state.kazam_poller.last["breaker_open"] >= 1
    assert access.errors.get("unavailable", 0) >= 2


async def _breaker_open(runtime, org):
    return await runtime.pool.fetchval(
        "SELECT open_until > now() FROM kazam_breakers WHERE account = $1", own_breaker(org)
    )


async def _requests(sim, account):
    return (await sim.get("/simulator/requests")).json().get(account, {}).get("/getTransactions", 0)


def _replica(runtime, session, url):
    """Another poller on the same database: a second replica, or this one after a restart (nothing in memory)."""
    settings = runtime.settings
    access = KazamAccess(
        session,
        url,
        platform_token=None,
        attempts=settings.kazam_attempts,
        breaker_failures=settings.kazam_breaker_failures,
        breaker_cooldown_s=settings.kazam_breaker_cooldown_seconds,
    )
    cipher = runtime.app.state.kazam_cipher
    return KazamPoller(runtime.uow, cipher, lookback_s=3600, chargers_per_request=100, kazam=access)


async def test_the_breaker_is_shared_by_replicas_and_survives_a_restart(gateway, sim, kazam_sim, kafka_bootstrap):
    runtime = gateway[0]
    url, _ = kazam_sim
    _, org, _, charger, name = await linked_charger(gateway, sim)
    await sim.post(
        "/simulator/faults", json={"path": "/getTransactions", "account": name, "count": 1000, "status": 503}
    )
    await eventually(lambda: _breaker_open(runtime, org), timeout=60)
    attempts = runtime.settings.kazam_attempts

    async with aiohttp.ClientSession() as session:
        # Two pollers with nothing in memory (two more replicas, or the service restarted) leave the account alone.
        replicas = [_replica(runtime, session, url) for _ in range(2)]
        asked = await _requests(sim, name)
        await asyncio.gather(*(replica.step() for replica in replicas))
        assert all(replica.last["breaker_open"] >= 1 for replica in replicas)
        assert await _requests(sim, name) == asked

        # The cool-down is over: ONE request tries again, whichever poller claims it (these two or the service's).
        await runtime.pool.execute("UPDATE kazam_breakers SET open_until = now() WHERE account = $1", own_breaker(org))
        await asyncio.gather(*(replica.step() for replica in replicas))
        await eventually(lambda: _failed(runtime, org, runtime.settings.kazam_breaker_failures + 1), timeout=30)
        await asyncio.gather(*(replica.step() for replica in replicas))
        await polls(runtime, 2)
        assert await _requests(sim, name) == asked + attempts  # one request, its retries
        assert await _breaker_open(runtime, org)  # it failed: open again for a cool-down

        # Kazam is back: the next trial succeeds, the breaker closes for every poller, and the session is a read.
        assert (await sim.delete("/simulator/faults")).status_code == 204
        now = int(time.time())
        txn = await charging_session(
            sim, {"device_id": charger, "start_time": now - 120, "end_time": now, "total_usage": 1500}
        )
        await runtime.pool.execute("UPDATE kazam_breakers SET open_until = now() WHERE account = $1", own_breaker(org))
        await replicas[0].step()
        await eventually(lambda: submissions(kafka_bootstrap, f"kazam:{txn['txn_id']}") or None, timeout=30)
        # closed for every poller: no row left
        assert (
            await runtime.pool.fetchval("SELECT count(*) FROM kazam_breakers WHERE account = $1", own_breaker(org)) == 0
        )


async def _failed(runtime, org, n):
    return await runtime.pool.fetchval(
        "SELECT failed >= $2 FROM kazam_breakers WHERE account = $1", own_breaker(org), n
    )


async def test_state_uptime_and_transactions_of_a_linked_charger(gateway, sim):
    runtime, client, issuer = gateway
    device_id, org, ext, charger, _ = await linked_charger(gateway, sim)
    h = headers(issuer, org)

    state = await client.get(f"/api/charger/{charger}/state", headers=h)
    assert state.status_code == 200, state.text
    body = state.json()
    assert (body["chargerId"], body["chargeState"], body["chargeStateName"], body["availability"]) == (
        charger, 0, "idle", "Available",
    )  # fmt: skip

    today = datetime.now(UTC).date()
    uptime = await client.get(
        f"/api/charger/{charger}/uptime", params={"from": str(today - timedelta(days=1)), "to": str(today)}, headers=h
    )
    assert uptime.status_code == 200, uptime.text
    u = uptime.json()
    assert u["uptime"] == 2 * 86_400 and (u["startTime"] + 19_800) % 86_400 == 0  # from 00:00 IST
    assert u["endTime"] - u["startTime"] == 2 * 86_400
    for bad in ({"from": str(today), "to": str(today - timedelta(days=1))}, {"from": "2026-13-01", "to": str(today)}):
        assert (await client.get(f"/api/charger/{charger}/uptime", params=bad, headers=h)).status_code == 400
    assert (
        await client.get(
            f"/api/charger/{charger}/uptime", params={"from": str(date(2020, 1, 1)), "to": str(today)}, headers=h
        )
    ).status_code == 400

    # Another organization sees none of it.
    _, other, _, _ = await known_device(runtime)
    assert (await client.get(f"/api/charger/{charger}/state", headers=headers(issuer, other))).status_code == 404

    # Transactions: one read, one skipped (no energy), one refused by readings (read.rejected).
    now = int(time.time())
    done = []
    for i, usage in enumerate((400, 0, 99_999)):  # ending after the link, one after the other
        session = {"device_id": charger, "start_time": now - 300 + i * 60, "end_time": now + i, "total_usage": usage}
        done.append((await charging_session(sim, session))["txn_id"])
    await eventually(
        lambda: runtime.pool.fetchval(
            "SELECT count(*) = 3 FROM kazam_transactions WHERE txn_id = ANY($1::text[])", done
        ),
        timeout=30,
    )
    rejected = ReadRejected(
        submission_id=f"kazam:{done[2]}",
        device_id=device_id,
        external_id=ext,
        organization_id=org,
        read_type="Delta",
        source="kazam",
        reasons=[ReadRejection(index=0, reason="more than a 7.4 kW charger can deliver")],
    )
    assert await dispatch(runtime.pool, "readings", handlers.on_read_rejected, rejected)
    listed = await client.get(f"/api/charger/{charger}/transactions", headers=h)
    assert listed.status_code == 200 and listed.headers["X-Total-Count"] == "3"
    by_id = {t["txnId"]: t for t in listed.json()}
    assert [t["txnId"] for t in listed.json()] == list(reversed(done))  # newest first
    assert (by_id[done[0]]["outcome"], by_id[done[0]]["valueWh"]) == ("read", 400)
    assert by_id[done[1]]["outcome"] == "skipped" and "no energy delivered" in by_id[done[1]]["reason"]
    assert by_id[done[2]]["outcome"] == "refused"
    assert by_id[done[2]]["refusedReasons"] == [{"index": 0, "reason": "more than a 7.4 kW charger can deliver"}]


async def test_the_kazam_details_for_readyz_show_poll_lag_transactions_per_minute_and_errors_by_kind(gateway, sim):
    runtime, client, _ = gateway
    _, _, _, charger, name = await linked_charger(gateway, sim)
    access = runtime.app.state.kazam
    unavailable = access.errors.get("unavailable", 0)
    # One request's every attempt answers 503: one "unavailable" error; the next round gets the session.
    await sim.post(
        "/simulator/faults",
        json={"path": "/getTransactions", "account": name, "count": runtime.settings.kazam_attempts, "status": 503},
    )
    now = int(time.time())
    session = {"device_id": charger, "start_time": now - 60, "end_time": now, "total_usage": 250}
    txn = await charging_session(sim, session)
    await eventually(
        lambda: runtime.pool.fetchval("SELECT 1 FROM kazam_transactions WHERE txn_id = $1", txn["txn_id"]), timeout=30
    )
    await polls(runtime, 1)

    ready = await client.get("/readyz")
    # Details, not a failure: the service stays ready.
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    details = ready.json()["details"]["kazam"]
    assert details["errors"]["unavailable"] >= unavailable + 1
    assert details["transactionsPerMinute"] >= 1
    assert 0 <= details["pollLagSeconds"] < 30 and details["lastPollAt"].endswith("Z")
    assert details["links"]["verified"] >= 1
    assert set(details["lastRound"]) >= {"chargers", "requests_failed", "breaker_open", "ownership_refused"}


async def link_made_before_ownership_was_proven(runtime, org, device_id, charger):
    """A link as migration 0007 leaves one made before linking asked Kazam: unverified (an hour old)."""
    await runtime.pool.execute(
        "INSERT INTO charger_links (charger_id, device_id, organization_id, linked_at, poll_cursor, ownership) "
        "VALUES ($1, $2, $3, now() - interval '1 hour', floor(extract(epoch FROM now() - interval '1 hour')), "
        "'unverified')",
        charger,
        device_id,
        org,
    )


async def _ownership(client, issuer, org, charger, wanted):
    listed = (await client.get("/api/charger", headers=headers(issuer, org))).json()
    found = next(link for link in listed if link["chargerId"] == charger)
    return found if found["ownership"] == wanted else None


async def test_a_link_made_before_ownership_was_proven_is_checked_on_its_next_poll(gateway, sim, kafka_bootstrap):
    runtime, client, issuer = gateway
    owner_device, owner, owner_ext, charger = await known_device(runtime)
    squatter_device, squatter, _, _ = await known_device(runtime)
    _, owner_token = await kazam_account(sim, charger)
    _, squatter_token = await kazam_account(sim)
    for org, token in ((owner, owner_token), (squatter, squatter_token)):
        assert (await register_credentials(client, issuer, org, token)).status_code == 200
    now = int(time.time())
    session = {"device_id": charger, "start_time": now - 300, "end_time": now - 60, "total_usage": 2000}
    txn = await charging_session(sim, session)

    # Linked by the squatter before linking proved ownership; its credentials do not see the charger: the link is
    # refused with the reason, never polled, and the session is nobody's read.
    await link_made_before_ownership_was_proven(runtime, squatter, squatter_device, charger)
    refused = await eventually(lambda: _ownership(client, issuer, squatter, charger, "refused"), timeout=30)
    assert f"organization {squatter} does not see charger {charger!r}" in refused["ownershipReason"]
    await polls(runtime, 2)
    assert await runtime.pool.fetchval("SELECT 1 FROM kazam_transactions WHERE txn_id = $1", txn["txn_id"]) is None

    # The real owner links it (the refused link gives way); its sessions from then on are its reads.
    linked = await link(client, issuer, owner, charger, owner_ext)
    assert linked.status_code == 201 and linked.json()["ownership"] == "verified"
    now = int(time.time())
    session = {"device_id": charger, "start_time": now - 30, "end_time": now + 1, "total_usage": 150}
    txn = await charging_session(sim, session)
    [read] = await eventually(lambda: submissions(kafka_bootstrap, f"kazam:{txn['txn_id']}") or None, timeout=30)
    assert (read["payload"]["device_id"], read["payload"]["organization_id"]) == (owner_device, owner)
    assert (await client.get("/api/charger", headers=headers(issuer, squatter))).json() == []


async def test_a_link_made_before_ownership_was_proven_whose_credentials_see_the_charger_is_verified_and_polled(
    gateway, sim, kafka_bootstrap
):
    runtime, client, issuer = gateway
    device_id, org, _, charger = await known_device(runtime)
    _, token = await kazam_account(sim, charger)
    assert (await register_credentials(client, issuer, org, token)).status_code == 200
    now = int(time.time())
    session = {"device_id": charger, "start_time": now - 300, "end_time": now - 60, "total_usage": 700}
    txn = await charging_session(sim, session)

    await link_made_before_ownership_was_proven(runtime, org, device_id, charger)
    verified = await eventually(lambda: _ownership(client, issuer, org, charger, "verified"), timeout=30)
    assert verified["ownershipReason"] is None
    [read] = await eventually(lambda: submissions(kafka_bootstrap, f"kazam:{txn['txn_id']}") or None, timeout=30)
    assert read["payload"]["device_id"] == device_id


async def test_tokens_under_an_older_key_are_re_encrypted_with_the_first_and_a_base_url_is_kept(
    gateway, sim, kazam_sim
):
    runtime, client, issuer = gateway
    url, _ = kazam_sim
    _, org, ext, charger = await known_device(runtime)
    _, token = await kazam_account(sim, charger)
    registered = await client.put(
        "/api/charger/kazam/credentials", json={"token": token, "baseUrl": url + "/"}, headers=headers(issuer, org)
    )
    assert registered.status_code == 200 and registered.json()["baseUrl"] == url
    # As if stored before the rotation: under the key now listed second.
    old, old_key = TokenCipher("test-key-old").encrypt(token)
    await runtime.pool.execute(
        "UPDATE kazam_accounts SET token_encrypted = $2, key_id = $3 WHERE organization_id = $1", org, old, old_key
    )
    cipher = runtime.app.state.kazam_cipher
    rotated = await eventually(
        lambda: runtime.pool.fetchrow(
            "SELECT token_encrypted FROM kazam_accounts WHERE organization_id = $1 AND key_id = $2", org, cipher.current
        ),
        timeout=30,
    )
    assert TokenCipher("test-key-new").decrypt(rotated["token_encrypted"]) == token
    # and the account still works with its own base URL: the charger links
    assert (await link(client, issuer, org, charger, ext)).status_code == 201
