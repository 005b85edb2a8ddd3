"""Local SMTP sink: accepts every message and stores it as one `.eml` file in a folder.

    python -m opendrec_devstack.smtp_sink --dir .run/mail --port 8025

Each file is the message as received, preceded by the envelope headers `X-Peer`,
`X-MailFrom` and `X-RcptTo` (the names aiosmtpd's own handlers use), with LF line ends.
Files are named `<ns-timestamp>-<random>.eml` (so they sort by arrival) and are written to
a dot-file first and renamed, so a reader never sees half a message.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import os
import smtplib
import time
import uuid
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path

from aiosmtpd.controller import Controller

from .procs import serve_until_signalled

HOST = "127.0.0.1"


class EmlDirHandler:
    """aiosmtpd handler writing each message to `mail_dir` atomically."""

    def __init__(self, mail_dir: str | os.PathLike):
        self.mail_dir = Path(mail_dir)
        self.mail_dir.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        head = (
            f"X-Peer: {session.peer[0] if isinstance(session.peer, tuple) else session.peer}\n"
            f"X-MailFrom: {envelope.mail_from}\n"
            f"X-RcptTo: {', '.join(envelope.rcpt_tos)}\n"
        ).encode()
        body = envelope.original_content or envelope.content
        if isinstance(body, str):
            body = body.encode()
        data = head + body.replace(b"\r\n", b"\n")
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml"
        tmp = self.mail_dir / f".{name}.tmp"
        with open(tmp, "wb") as f:  # noqa: ASYNC230 - a dev mail sink: small local writes
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.mail_dir / name)
        return "250 OK stored as " + name


def start_smtp_sink(mail_dir: str | os.PathLike, port: int, host: str = HOST) -> Controller:
    """Start the sink in a background thread of this process; call `.stop()` on the result."""
    controller = Controller(EmlDirHandler(mail_dir), hostname=host, port=port)
    controller.start()  # returns once the server accepts connections
    return controller


def smtp_ready(port: int, host: str = HOST, timeout: float = 2.0) -> bool:
    """True when an SMTP server answers NOOP on host:port."""
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            return smtp.noop()[0] == 250
    except (OSError, smtplib.SMTPException):
        return False


def _recipients(msg: EmailMessage) -> set[str]:
    fields = msg.get_all("X-RcptTo", []) + msg.get_all("To", []) + msg.get_all("Cc", [])
    return {addr.lower() for _, addr in getaddresses([str(f) for f in fields]) if addr}


def read_mails(mail_dir: str | os.PathLike, to: str | None = None) -> list[EmailMessage]:
    """Every stored message, oldest first, parsed with the modern `email.policy.default`
    (so `msg["Subject"]`, `msg.get_body(("plain",)).get_content()` work). With `to`, only the
    messages whose envelope recipients or To/Cc headers contain that address."""
    mail_dir = Path(mail_dir)
    if not mail_dir.is_dir():
        return []
    out = []
    for path in sorted(mail_dir.glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if to is None or to.lower() in _recipients(msg):
            out.append(msg)
    return out


def wait_for_mails(
    mail_dir: str | os.PathLike, to: str | None = None, count: int = 1, timeout: float = 15.0
) -> list[EmailMessage]:
    """Poll `read_mails` until at least `count` messages match, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        mails = read_mails(mail_dir, to)
        if len(mails) >= count:
            return mails
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(mails)} of {count} mail(s) to {to or 'anyone'} in {mail_dir} after {timeout}s")
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m opendrec_devstack.smtp_sink", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="folder the .eml files go to")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--host", default=HOST)
    args = parser.parse_args(argv)

    serve_until_signalled(
        lambda: start_smtp_sink(args.dir, args.port, args.host),
        lambda _: f"SMTP sink on smtp://{args.host}:{args.port} storing to {Path(args.dir).resolve()}",
    )


if __name__ == "__main__":
    main()
