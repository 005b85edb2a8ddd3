"""Outgoing mail: the SMTP server, one message's delivery, and the mails identity sends.

Mails are queued in the `mails` table by the unit of work that causes them (store.queue_mail) and sent
after commit by the mail worker (services/mail.py). smtplib is blocking: `deliver` runs in a worker thread.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlsplit


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


def compose(sender: str, recipient: str, subject: str, body: str) -> EmailMessage:
    """One message. The subject may carry what clients named (an organization's name): line breaks and other
    control characters become spaces, so no header can be injected; a recipient or sender the email package
    refuses raises ValueError (the mail is set aside, the others go out)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = one_line(subject)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="opendrec.local")
    msg.set_content(body)
    return msg


def one_line(text: str) -> str:
    """`text` with every control character (CR and LF included) as a space, runs of spaces as one."""
    return " ".join("".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in text).split())


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


# -- the mails identity sends (subject, body) ---------------------------------------------------------


def confirmation_mail(first_name: str, public_url: str, token: str) -> tuple[str, str]:
    return (
        "Confirm your OpenDREC e-mail address",
        f"Hello {first_name},\n\n"
        "please confirm your e-mail address for OpenDREC by sending\n"
        f"PUT {public_url.rstrip('/')}/api/user/confirm-email/{token}\n\n"
        f"or by opening {public_url.rstrip('/')}/console/confirm-email/{token} in a browser.\n\n"
        f"Token: {token}\n\n"
        "The token can be used once. If you did not register, ignore this mail.\n",
    )


def registration_attempt_mail(first_name: str, public_url: str) -> tuple[str, str]:
    """To the owner of an e-mail address someone tried to register again (REGISTRATION_DISCLOSURE=private)."""
    base = public_url.rstrip("/")
    return (
        "Someone tried to register with your OpenDREC e-mail address",
        f"Hello {first_name},\n\n"
        "someone tried to register a new OpenDREC organization with this e-mail address, which already has an "
        "account. Nothing was created.\n\n"
        f"If it was you, sign in at {base}/console/ instead; if you forgot your password, reset it at "
        f"{base}/console/forgot-password.\n"
        "If it was not you, you need not do anything.\n",
    )


def reset_mail(first_name: str, public_url: str, token: str, ttl_minutes: int) -> tuple[str, str]:
    return (
        "Reset your OpenDREC password",
        f"Hello {first_name},\n\n"
        "a password reset was asked for your OpenDREC account. To choose a new password, send\n"
        f"PUT {public_url.rstrip('/')}/api/user/reset/password/{token}\n"
        'with {"newPassword": "...", "confirmPassword": "..."}\n\n'
        f"or open {public_url.rstrip('/')}/console/reset-password/{token} in a browser.\n\n"
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
        f"Without an OpenDREC account, open {base}/console/invitation/{token} in a browser, or register with\n"
        f"POST {base}/api/invitation/register/{token}\n"
        '{"firstName": "...", "lastName": "...", "password": "...", "confirmPassword": "..."}\n\n'
        "With an account, log in with this e-mail address and answer with\n"
        f'PUT {base}/api/invitation/{invitation_id}   {{"status": "Accepted"}} or {{"status": "Rejected"}}\n',
    )
