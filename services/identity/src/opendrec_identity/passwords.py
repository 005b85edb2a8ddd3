"""Argon2id hashing of passwords and secret keys, in a bounded pool of threads off the event loop.

Cost: OWASP's Password Storage Cheat Sheet recommends argon2id at one of five settings that "provide an equal level
of defense" and trade memory for iterations (m=47104 KiB t=1, m=19456 t=2, m=12288 t=3, m=9216 t=4, m=7168 t=5,
all p=1; https://cheatsheetseries.owasp.org/cheatsheets/Password_Storage_Cheat_Sheet.html#argon2id). Hashes are
made at m=7168 KiB, t=5, p=1 with libsodium (PyNaCl): measured here (bench/identity/bench_argon2.py) a check costs
9.5 ms of CPU against 18.6 ms at m=19456 t=2 with libsodium and 20.4 ms with argon2-cffi, whose portable code does
not use AVX2; libsodium maps its memory afresh for each check, so the smaller block also costs fewer page faults
(3 ms of system time against 7.6 ms) and holds less memory while it runs. The hashes are the standard
`$argon2id$v=19$m=...,t=...,p=...$salt$hash` strings: hashes made earlier (argon2-cffi, m=19456 t=2, or its
defaults m=65536 t=3 p=4) still verify, and a login rehashes them at the current setting (`needs_rehash`).

Bounded: at most `threads` hashes run at once (each holds `memory_cost` KiB while it runs) and at most `queue`
more wait; beyond that the work is refused at once with PasswordWorkBusy (503), so a login flood costs neither
unbounded memory nor unbounded waiting. More threads than cores only add latency (each check takes longer while
the total rate stays): the default is 2, this machine's cores.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import nacl.exceptions
import nacl.pwhash.argon2id as argon2id

from opendrec_kit import ApiError

# One of OWASP's equal-cost argon2id settings (see above).
TIME_COST = 5
MEMORY_COST_KIB = 7 * 1024
PARALLELISM = 1  # libsodium computes one lane; hashes of more lanes (p=4) still verify
BUSY_RETRY_AFTER_S = 1

# The parameters a PHC string carries (libsodium's own check refuses anything else as a wrong password).
_PARAMETERS = re.compile(r"\$argon2id\$v=19\$m=(\d{1,10}),t=(\d{1,10}),p=(\d{1,3})\$")

T = TypeVar("T")


class PasswordWorkBusy(ApiError):
    """More password checks are running and waiting than the pool takes: try again in a moment."""

    def __init__(self) -> None:
        super().__init__(503, "Too many logins at once; try again in a moment")
        self.retry_after = BUSY_RETRY_AFTER_S


class Passwords:
    def __init__(
        self,
        *,
        threads: int = 2,
        queue: int = 64,
        time_cost: int = TIME_COST,
        memory_cost_kib: int = MEMORY_COST_KIB,
    ) -> None:
        if threads < 1 or queue < 0:
            raise ValueError("threads must be >= 1 and queue >= 0")
        self._time_cost = time_cost
        self._memory_cost_kib = memory_cost_kib
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="argon2")
        self._bound = threads + queue
        self._taken = 0
        self._lock = threading.Lock()  # _taken is released from the pool's threads
        # Checked against when an e-mail is unknown, so that answer costs what a wrong password costs.
        self._nobody = self._hash(secrets.token_urlsafe(32))

    @property
    def parameters(self) -> tuple[int, int, int]:
        """(time_cost, memory_cost in KiB, parallelism) of new hashes."""
        return self._time_cost, self._memory_cost_kib, PARALLELISM

    async def hash(self, secret: str) -> str:
        return await self._run(self._hash, secret)

    async def verify(self, hashed: str, secret: str) -> bool:
        return await self._run(self._verify, hashed, secret)

    async def spend_verify_time(self, secret: str) -> None:
        """Do the work of a failed check for an account that does not exist."""
        await self.verify(self._nobody, secret)

    def needs_rehash(self, hashed: str) -> bool:
        """True unless `hashed` is an argon2id hash of the current parameters (unreadable ones included)."""
        found = _PARAMETERS.match(hashed)
        current = (self._memory_cost_kib, self._time_cost, PARALLELISM)
        return found is None or tuple(int(x) for x in found.groups()) != current

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self, work: Callable[..., T], *args: str) -> T:
        with self._lock:
            if self._taken >= self._bound:
                raise PasswordWorkBusy()
            self._taken += 1
        try:
            future = self._pool.submit(work, *args)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(lambda _: self._release())  # when the thread is done, even if the caller left
        return await asyncio.wrap_future(future)

    def _release(self) -> None:
        with self._lock:
            self._taken -= 1

    def _hash(self, secret: str) -> str:
        hashed = argon2id.str(secret.encode(), opslimit=self._time_cost, memlimit=self._memory_cost_kib * 1024)
        return hashed.decode("ascii")

    def _verify(self, hashed: str, secret: str) -> bool:
        try:
            return bool(argon2id.verify(hashed.encode(), secret.encode()))
        except (nacl.exceptions.InvalidkeyError, ValueError):  # wrong secret; unreadable or too long a hash
            return False
