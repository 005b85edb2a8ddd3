"""Sending the queued mails: one batch per call, from the mail worker (app.py).

A mail is a row of `mails`, written by the unit of work that causes it. A batch claims due rows
(FOR UPDATE SKIP LOCKED: several identity instances never send the same row at once), sends each over
SMTP in a worker thread (smtplib blocks) and deletes it once the server accepted it (at least once:
a crash right after acceptance may send a mail twice); a refused or failed send is tried again later,
up to the settings' number of attempts.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from typing import Any

from opendrec_kit import UnitOfWork

from .. import store
from ..mail import SmtpServer, compose, deliver

log = logging.getLogger(__name__)

BATCH = 20
MAX_RETRY_DELAY_S = 600


async def send_due_mails(uow: UnitOfWork, server: SmtpServer, sender: str, max_attempts: int) -> int:
    """Send one batch of due mails; returns how many were tried (BATCH: more may be waiting)."""
    async with uow:
        rows = await store.claim_due_mails(uow.conn, max_attempts, BATCH)
        for row in rows:
            await _send_one(uow, server, sender, max_attempts, row)
    return len(rows)


async def _send_one(uow: UnitOfWork, server: SmtpServer, sender: str, max_attempts: int, row: Any) -> None:
    msg = compose(sender, row["recipient"], row["subject"], row["body"])
    try:
        await asyncio.to_thread(deliver, server, msg)
    except (OSError, smtplib.SMTPException) as exc:
        attempts = row["attempts"] + 1
        delay = min(2**attempts, MAX_RETRY_DELAY_S)
        await store.mail_failed(uow.conn, row["id"], attempts, f"{type(exc).__name__}: {exc}"[:500], float(delay))
        level = logging.ERROR if attempts >= max_attempts else logging.WARNING
        log.log(
            level,
            "mail not sent",
            extra={"mail_id": row["id"], "attempts": attempts, "error": type(exc).__name__, "retry_in_s": delay},
        )
        return
    # Deleted once accepted: the body may hold a one-time token that must not linger.
    await store.delete_mail(uow.conn, row["id"])
    log.info("mail sent", extra={"mail_id": row["id"], "subject": row["subject"]})
