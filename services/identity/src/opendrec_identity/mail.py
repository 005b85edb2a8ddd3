"""Outgoing mail: queued in the `mails` table by the transaction that causes it, sent after commit.

A crash between commit and send loses nothing: the row stays until the SMTP server accepted it
(at-least-once: a crash right after acceptance may send a mail twice). Rows are claimed with
FOR UPDATE SKIP LOCKED, so several identity instances never send the same row at the same time.
smtplib is blocking, so each send runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlsplit

import asyncpg

from . import domain, store

log = logging.getLogger(__name__)

BATCH = 20


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    tls: bool = False  # smtps:// (implicit TLS)
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # never print the password
        return f"SmtpServer({self.host}:{self.port}, tls={self.tls})"


def parse_smtp_url(url: str) -> SmtpServer:
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("SMTP_URL must look like smtp://host:port or smtps://user:password@host:port")
    tls = parts.scheme == "smtps"
    return SmtpServer(
        host=parts.hostname,
        port=parts.port or (465 if tls else 25),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


async def queue(conn: asyncpg.Connection, recipient: str, subject: str, body: str) -> int:
    """Record a mail in the caller's transaction; it is sent once that transaction commits."""
    return await conn.fetchval(
        "INSERT INTO mails (recipient, subject, body) VALUES ($1, $2, $3) RETURNING id", recipient, subject, body
    )


async def queue_confirmation(
    conn: asyncpg.Connection, user_id: int, email: str, first_name: str, public_url: str, ttl_seconds: int
) -> None:
    """A new e-mail confirmation token (replacing older ones) and its mail, in the caller's transaction."""
    token = secrets.token_urlsafe(32)
    await store.create_user_token(conn, user_id, "confirm_email", domain.token_digest(token), ttl_seconds)
    subject, body = confirmation_mail(first_name, public_url, token)
    await queue(conn, email, subject, body)


def compose(sender: str, recipient: str, subject: str, body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="opendrec.local")
    msg.set_content(body)
    return msg


def deliver(server: SmtpServer, msg: EmailMessage, timeout: float = 10.0) -> None:
    """Blocking SMTP transaction (run it in a thread)."""
    if server.tls:
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(
            server.host, server.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        smtp = smtplib.SMTP(server.host, server.port, timeout=timeout)
    with smtp:
        if server.username:
            smtp.login(server.username, server.password or "")
        smtp.send_message(msg)


class MailSender:
    def __init__(
        self, pool: asyncpg.Pool, server: SmtpServer, sender: str, poll_interval_s: float, max_attempts: int
    ) -> None:
        self.pool = pool
        self.server = server
        self.sender = sender
        self.poll_interval_s = poll_interval_s
        self.max_attempts = max_attempts
        self._wake = asyncio.Event()
        self.sent = 0

    def wake(self) -> None:
        """Call after committing a transaction that queued mail: send now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                if await self.send_due() >= BATCH:
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be away for a moment: keep the loop alive
                log.exception("mail sender failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)

    async def send_due(self) -> int:
        """Send one batch of due mails; returns how many were tried."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, recipient, subject, body, attempts FROM mails "
                "WHERE next_attempt_at <= now() AND attempts < $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
                self.max_attempts,
                BATCH,
            )
            for row in rows:
                await self._send_one(conn, row)
        return len(rows)

    async def _send_one(self, conn: asyncpg.Connection, row: asyncpg.Record) -> None:
        msg = compose(self.sender, row["recipient"], row["subject"], row["body"])
        try:
            await asyncio.to_thread(deliver, self.server, msg)
        except (OSError, smtplib.SMTPException) as exc:
            attempts = row["attempts"] + 1
            delay = min(2**attempts, 600)
            await conn.execute(
                "UPDATE mails SET attempts = $2, last_error = $3, next_attempt_at = now() + make_interval(secs => $4) WHERE id = $1",
                row["id"],
                attempts,
                f"{type(exc).__name__}: {exc}"[:500],
                float(delay),
            )
            level = logging.ERROR if attempts >= self.max_attempts else logging.WARNING
            log.log(
                level,
                "mail not sent",
                extra={"mail_id": row["id"], "attempts": attempts, "error": type(exc).__name__, "retry_in_s": delay},
            )
            return
        # Deleted once accepted: the body may hold a one-time token that must not linger.
        await conn.execute("DELETE FROM mails WHERE id = $1", row["id"])
        self.sent += 1
        log.info("mail sent", extra={"mail_id": row["id"], "subject": row["subject"]})


# -- the mails identity sends (subject, body) ---------------------------------------------------------


def confirmation_mail(first_name: str, public_url: str, token: str) -> tuple[str, str]:
    return (
        "Confirm your OpenDREC e-mail address",
        f"Hello {first_name},\n\n"
        "please confirm your e-mail address for OpenDREC by sending\n"
        f"PUT {public_url.rstrip('/')}/api/user/confirm-email/{token}\n\n"
        f"Token: {token}\n\n"
        "The token can be used once. If you did not register, ignore this mail.\n",
    )


def reset_mail(first_name: str, public_url: str, token: str, ttl_minutes: int) -> tuple[str, str]:
    return (
        "Reset your OpenDREC password",
        f"Hello {first_name},\n\n"
        "a password reset was asked for your OpenDREC account. To choose a new password, send\n"
        f"PUT {public_url.rstrip('/')}/api/user/reset/password/{token}\n"
        'with {"newPassword": "...", "confirmPassword": "..."}\n\n'
        f"Token: {token}\n\n"
        f"The token can be used once, within {ttl_minutes} minutes. If you did not ask for it, ignore this mail.\n",
    )


def invitation_mail(
    organization_name: str, role: str, inviter: str, public_url: str, invitation_id: int, token: str
) -> tuple[str, str]:
    base = public_url.rstrip("/")
    return (
        f"You are invited to join {organization_name} on OpenDREC",
        f"Hello,\n\n{inviter} invites you to join {organization_name} on OpenDREC as {role}.\n\n"
        f"Invitation: {invitation_id}\n"
        f"Token: {token}\n\n"
        "Without an OpenDREC account, register with\n"
        f"POST {base}/api/invitation/register/{token}\n"
        '{"firstName": "...", "lastName": "...", "password": "...", "confirmPassword": "..."}\n\n'
        "With an account, log in with this e-mail address and answer with\n"
        f'PUT {base}/api/invitation/{invitation_id}   {{"status": "Accepted"}} or {{"status": "Rejected"}}\n',
    )
