"""Argon2id hashing of passwords and secret keys, in a bounded pool of threads off the event loop.

Cost: OWASP's Password Storage Cheat Sheet recommends argon2id with "a minimum configuration of 19 MiB of
memory, an iteration count of 2, and 1 degree of parallelism" (m=19456 KiB, t=2, p=1;
https://cheatsheetseries.owasp.org/cheatsheets/Password_Storage_Cheat_Sheet.html#argon2id). argon2-cffi's
defaults (RFC 9106's low-memory profile: 64 MiB, t=3, p=4) cost ~130 ms of CPU a check here, so a few
concurrent logins took a core each second and 64 MiB apiece. Hashes carry their parameters: a hash made under
other ones still verifies, and the login rehashes it (`needs_rehash`).

Bounded: at most `threads` hashes run at once (each holds `memory_cost` KiB while it runs) and at most `queue`
more wait; beyond that the work is refused at once with PasswordWorkBusy (503), so a login flood costs neither
unbounded memory nor unbounded waiting.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from opendrec_kit import ApiError

# OWASP's recommended argon2id cost (see above).
TIME_COST = 2
MEMORY_COST_KIB = 19 * 1024
PARALLELISM = 1
BUSY_RETRY_AFTER_S = 1

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
        parallelism: int = PARALLELISM,
    ) -> None:
        if threads < 1 or queue < 0:
            raise ValueError("threads must be >= 1 and queue >= 0")
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost_kib, parallelism=parallelism, type=Type.ID
        )
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="argon2")
        self._bound = threads + queue
        self._taken = 0
        self._lock = threading.Lock()  # _taken is released from the pool's threads
        # Checked against when an e-mail is unknown, so that answer costs what a wrong password costs.
        self._nobody = self._hasher.hash(secrets.token_urlsafe(32))

    @property
    def parameters(self) -> tuple[int, int, int]:
        """(time_cost, memory_cost in KiB, parallelism) of new hashes."""
        return self._hasher.time_cost, self._hasher.memory_cost, self._hasher.parallelism

    async def hash(self, secret: str) -> str:
        return await self._run(self._hasher.hash, secret)

    async def verify(self, hashed: str, secret: str) -> bool:
        return await self._run(self._verify, hashed, secret)

    async def spend_verify_time(self, secret: str) -> None:
        """Do the work of a failed check for an account that does not exist."""
        await self.verify(self._nobody, secret)

    def needs_rehash(self, hashed: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(hashed)
        except InvalidHashError:
            return True

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

    def _verify(self, hashed: str, secret: str) -> bool:
        try:
            return self._hasher.verify(hashed, secret)
        except (VerificationError, InvalidHashError):
            return False
