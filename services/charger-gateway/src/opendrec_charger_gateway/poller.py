"""The kazam-poller worker: every KAZAM_POLL_SECONDS, finished transactions of linked chargers become reads.

Its step is one poll round (`services.poll_kazam`), each organization's chargers with its own Kazam credentials:
per request group, ask Kazam, then in ONE unit of work
lock the links, record the new transactions (unique txn_id), record their `read.submitted` events and
advance the cursors. A transaction seen again is already recorded and produces nothing. Kazam being
unreachable costs one group one round: it is logged and asked again on the next round. Any other failure
(e.g. the database away) is retried by the kit's worker with backoff.
"""

from __future__ import annotations

from collections.abc import Callable

from opendrec_kit import UnitOfWork

from . import services
from .credentials import TokenCipher
from .kazam import KazamAccess


class KazamPoller:
    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        cipher: TokenCipher,
        *,
        lookback_s: int,
        chargers_per_request: int,
        kazam: KazamAccess | None = None,
    ) -> None:
        self.uow = uow
        self.cipher = cipher
        self.kazam = kazam  # set at startup when the service opens its HTTP session
        self.lookback_s = lookback_s
        self.chargers_per_request = chargers_per_request
        self.last: dict[str, int] = {}  # the counts of the last round

    async def step(self) -> bool:
        """One poll round; the next one waits for the interval (never more work right now)."""
        if self.kazam is None:
            raise RuntimeError("no Kazam client yet: it is opened at startup")
        # Tokens still under an older key are re-encrypted with the current one (key rotation), then the poll.
        await services.rotate_credentials(self.uow(), self.cipher)
        self.last = await services.poll_kazam(
            self.uow(),
            self.kazam,
            self.cipher,
            lookback_s=self.lookback_s,
            chargers_per_request=self.chargers_per_request,
        )
        return False
