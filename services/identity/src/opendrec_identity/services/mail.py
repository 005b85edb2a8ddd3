"""Sending the queued mails: one batch per call, from the mail worker (app.py).

A mail is a row of `mails`, written by the unit of work that causes it. A batch leases due rows in one short
transaction (FOR UPDATE SKIP LOCKED: several identity instances never take the same row at once), then sends each
over SMTP in a worker thread (smtplib blocks) OUTSIDE any transaction, and records each outcome in its own: sent,
the row is deleted (at least once: a crash right after acceptance may send a mail twice, and a crash mid-batch
leaves the rest to be tried again when their lease runs out); failed, it is tried again later, up to the settings'
number of attempts; a message that cannot even be built is set aside at once with its error. Abandoned rows keep
their error, never their text (it may hold a one-time token). One bad message never holds up the others.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from dataclasses import dataclass
from typing import Any

from opendrec_kit import UnitOfWork

from .. import store
from ..mail import SmtpServer, compose, deliver

log = logging.getLogger(__name__)

BATCH = 20
MAX_RETRY_DELAY_S = 600
LEASE_S = 300.0  # longer than a whole batch of sends at the SMTP timeout (20 × 10 s)


@dataclass(frozen=True)
class _Failure:
    error: str
    permanent: bool  # the message cannot be built: trying again would fail the same way


async def send_due_mails(uow: UnitOfWork, server: SmtpServer, sender: str, max_attempts: int) -> int:
    """Send one batch of due mails; returns how many were tried (BATCH: more may be waiting)."""
    async with uow:
        rows = await store.lease_due_mails(uow.conn, max_attempts, BATCH, LEASE_S)
    for row in rows:
        failure = await _send(server, sender, row)
        async with uow:
            if failure is None:
                # Deleted once accepted: the body may hold a one-time token that must not linger.
                await store.delete_mail(uow.conn, row["id"])
            else:
                await _failed(uow, row, failure, max_attempts)
        if failure is None:
            log.info("mail sent", extra={"mail_id": row["id"], "subject": row["subject"]})
    return len(rows)


async def _send(server: SmtpServer, sender: str, row: Any) -> _Failure | None:
    try:
        msg = compose(sender, row["recipient"], row["subject"], row["body"])
    except (ValueError, TypeError) as exc:  # e.g. a header the email package refuses
        return _Failure(f"cannot be built: {type(exc).__name__}: {exc}"[:500], permanent=True)
    try:
        await asyncio.to_thread(deliver, server, msg)
    except (OSError, smtplib.SMTPException) as exc:
        return _Failure(f"{type(exc).__name__}: {exc}"[:500], permanent=False)
    return None


async def _failed(uow: UnitOfWork, row: Any, failure: _Failure, max_attempts: int) -> None:
    attempts = max_attempts if failure.permanent else row["attempts"] + 1
    abandoned = attempts >= max_attempts
    delay = min(2**attempts, MAX_RETRY_DELAY_S)
    await store.mail_failed(uow.conn, row["id"], attempts, failure.error, float(delay), abandoned=abandoned)
    log.log(
        logging.ERROR if abandoned else logging.WARNING,
        "mail not sent",
        extra={"mail_id": row["id"], "attempts": attempts, "error": failure.error, "abandoned": abandoned},
    )
