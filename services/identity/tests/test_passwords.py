"""Password hashing: OWASP's argon2id cost, old hashes upgraded, and a bounded pool (a login flood is answered 503,
not queued without end)."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher

from opendrec_identity.passwords import Passwords, PasswordWorkBusy

from .accounts import login, register


async def test_new_hashes_are_argon2id_at_owasps_cost():
    passwords = Passwords()
    try:
        hashed = await passwords.hash("MNO133")
        # m=7 MiB, t=5, p=1: one of OWASP's equal-cost settings (Password Storage Cheat Sheet), in the hash itself
        assert hashed.startswith("$argon2id$v=19$m=7168,t=5,p=1$")
        assert await passwords.verify(hashed, "MNO133")
        assert not await passwords.verify(hashed, "MNO134")
        assert not passwords.needs_rehash(hashed)
        # a standard PHC string: another argon2 library reads it, and its hashes at this setting need no rehash
        assert PasswordHasher().verify(hashed, "MNO133")
        other = PasswordHasher(time_cost=5, memory_cost=7168, parallelism=1).hash("MNO133")
        assert await passwords.verify(other, "MNO133") and not passwords.needs_rehash(other)
    finally:
        passwords.close()


async def test_hashes_of_other_parameters_still_verify_and_need_a_rehash():
    passwords = Passwords()
    try:
        earlier = [
            PasswordHasher().hash("MNO133"),  # 64 MiB, t=3, p=4: the library's defaults, how early releases hashed
            PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1).hash("MNO133"),  # argon2-cffi, until s6
        ]
        for hashed in earlier:
            assert await passwords.verify(hashed, "MNO133")
            assert not await passwords.verify(hashed, "MNO134")
            assert passwords.needs_rehash(hashed)
        assert not await passwords.verify("not a hash", "MNO133")
        assert not await passwords.verify("$argon2id$" + "A" * 200, "MNO133")  # longer than any hash
    finally:
        passwords.close()


async def test_work_beyond_the_pool_and_its_queue_is_refused_at_once():
    passwords = Passwords(threads=1, queue=1)
    try:
        hashed = await passwords.hash("MNO133")
        results = await asyncio.gather(*(passwords.verify(hashed, "MNO133") for _ in range(3)), return_exceptions=True)
        # one runs, one waits, the third is refused
        assert results[:2] == [True, True]
        assert isinstance(results[2], PasswordWorkBusy) and results[2].status == 503
        # the slots are given back: the pool takes work again
        assert await passwords.verify(hashed, "MNO133")
    finally:
        passwords.close()


async def test_a_login_beyond_the_bound_is_answered_503_with_retry_after(client, runtime):
    body, _ = await register(client)
    passwords: Passwords = runtime.app.state.passwords
    bound = passwords._bound
    passwords._bound = 0  # as if the pool and its queue were full
    try:
        resp = await login(client, body["email"], body["password"])
    finally:
        passwords._bound = bound
    assert resp.status_code == 503, resp.text
    assert resp.headers["Retry-After"] == "1"
    assert resp.json()["message"] == "Too many logins at once; try again in a moment"
    assert (await login(client, body["email"], body["password"])).status_code == 200


def test_an_unreadable_stored_hash_needs_a_rehash():
    passwords = Passwords()
    try:
        assert passwords.needs_rehash("$argon2id$garbage")
    finally:
        passwords.close()
