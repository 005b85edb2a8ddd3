"""Login throttling: per account and per client address, in Postgres, saying nothing about which e-mails exist."""

import asyncio
import uuid

import pytest

from opendrec_identity.app import build
from opendrec_kit.testing import eventually, started

from .accounts import register as register_organization

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

# Account: from the 3rd failure wait 2 s, 4 s, ...; address: from the 5th. No lockout here.
SLOW = {
    "login_account_slowdown_after": 3,
    "login_address_slowdown_after": 5,
    "login_slowdown_base_seconds": 2,
    "login_slowdown_max_seconds": 60,
    "login_account_lockout_after": 1000,
    "login_address_lockout_after": 1000,
}
# Refused for 10 minutes at the 4th failure of an account or the 6th of an address.
LOCK = {
    "login_account_slowdown_after": 1000,
    "login_address_slowdown_after": 1000,
    "login_account_lockout_after": 4,
    "login_address_lockout_after": 6,
    "login_lockout_seconds": 600,
}


@pytest.fixture(scope="module")
def slow_settings(make_identity_settings):
    return make_identity_settings(**SLOW)


@pytest.fixture(scope="module")
async def slow(slow_settings):
    async with started(build(slow_settings)) as client:
        yield client


@pytest.fixture(scope="module")
async def lock(make_identity_settings):
    async with started(build(make_identity_settings(**LOCK))) as client:
        yield client


def address() -> str:
    """A client address of its own for each test (the gateway appends it to X-Forwarded-For)."""
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"


async def register(client) -> dict:
    body, _ = await register_organization(client, password="Right123")
    return body


async def login(client, email: str, password: str, ip: str):
    return await client.post(
        "/api/auth/login",
        json={"username": email, "password": password},
        headers={"X-Forwarded-For": f"203.0.113.9, {ip}"},
    )


def answer(resp) -> tuple:
    body = resp.json()
    return resp.status_code, body["message"], resp.headers.get("retry-after")


async def test_an_account_is_slowed_down_after_repeated_failures_even_for_the_right_password(slow):
    body = await register(slow)
    for _ in range(3):
        assert (await login(slow, body["email"], "Wrong123", address())).status_code == 401
    refused = await login(slow, body["email"], body["password"], address())  # another address: still the same account
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 2
    assert refused.json()["message"].startswith("Too many failed logins")

    async def allowed_again():
        return (await login(slow, body["email"], body["password"], address())).status_code == 200

    await eventually(allowed_again, timeout=10)


async def test_unknown_and_known_emails_are_throttled_alike(slow):
    body = await register(slow)
    unknown = f"ghost-{uuid.uuid4().hex[:8]}@example.org"
    known_answers, unknown_answers = [], []
    for _ in range(4):
        known_answers.append(answer(await login(slow, body["email"], "Wrong123", address())))
        unknown_answers.append(answer(await login(slow, unknown, "Wrong123", address())))
    assert [a[0] for a in known_answers] == [a[0] for a in unknown_answers] == [401, 401, 401, 429]
    assert [a[1][:20] for a in known_answers] == [a[1][:20] for a in unknown_answers]


async def test_the_delay_grows_with_each_further_failure(slow):
    body = await register(slow)
    ip = address()
    for _ in range(3):
        await login(slow, body["email"], "Wrong123", address())

    async def tried_after_wait():
        resp = await login(slow, body["email"], "Wrong123", ip)
        return resp if resp.status_code == 401 else None

    await eventually(tried_after_wait, timeout=10)  # the 4th failure, once the 2 s had passed
    resp = await login(slow, body["email"], body["password"], ip)
    assert resp.status_code == 429 and 3 <= int(resp.headers["retry-after"]) <= 4


async def test_a_success_clears_the_account_count(slow):
    body = await register(slow)
    for _ in range(2):
        assert (await login(slow, body["email"], "Wrong123", address())).status_code == 401
    assert (await login(slow, body["email"], body["password"], address())).status_code == 200
    for _ in range(2):
        assert (await login(slow, body["email"], "Wrong123", address())).status_code == 401
    assert (await login(slow, body["email"], body["password"], address())).status_code == 200


async def test_one_address_guessing_many_accounts_is_slowed_down(slow):
    victim = await register(slow)
    ip = address()
    for _ in range(5):
        assert (await login(slow, f"guess-{uuid.uuid4().hex[:8]}@example.org", "Guess123", ip)).status_code == 401
    refused = await login(slow, victim["email"], victim["password"], ip)
    assert refused.status_code == 429 and refused.headers["retry-after"]
    assert (
        await login(slow, victim["email"], victim["password"], address())
    ).status_code == 200  # other addresses are not affected


async def test_the_state_is_shared_by_every_identity_instance(make_identity_settings):
    # Two instances on one database, both started first; a slowdown long enough (60 s) that no machine load can
    # make it pass between the failures on one and the login on the other.
    settings = make_identity_settings(**{**SLOW, "login_slowdown_base_seconds": 60})
    async with started(build(settings)) as one, started(build(settings)) as other:
        body = await register(one)
        for _ in range(3):
            await login(one, body["email"], "Wrong123", address())
        assert (await login(other, body["email"], body["password"], address())).status_code == 429


async def test_an_account_guessed_from_one_address_is_locked_for_that_address_only(lock):
    """No flat lock (issue 12): whoever fails on purpose against someone's account (an admin's) locks only
    themselves out of it; the owner still logs in from their own address."""
    body, guesser = await register(lock), address()
    for _ in range(4):
        assert (await login(lock, body["email"], "Wrong123", guesser)).status_code == 401
    refused = await login(lock, body["email"], body["password"], guesser)
    assert refused.status_code == 429
    assert 590 <= int(refused.headers["retry-after"]) <= 600
    assert (await login(lock, body["email"], body["password"], address())).status_code == 200


async def test_failures_from_many_addresses_never_lock_an_account(lock):
    body = await register(lock)
    for _ in range(8):  # twice the lockout count, each from an address of its own
        assert (await login(lock, body["email"], "Wrong123", address())).status_code == 401
    assert (await login(lock, body["email"], body["password"], address())).status_code == 200


async def test_an_address_is_locked_out_for_a_while(lock):
    ip = address()
    results = await asyncio.gather(
        *[login(lock, f"guess-{uuid.uuid4().hex[:8]}@example.org", "Guess123", ip) for _ in range(6)]
    )
    assert [r.status_code for r in results] == [401] * 6  # concurrent failures are all counted
    body = await register(lock)
    refused = await login(lock, body["email"], body["password"], ip)
    assert refused.status_code == 429 and 590 <= int(refused.headers["retry-after"]) <= 600
