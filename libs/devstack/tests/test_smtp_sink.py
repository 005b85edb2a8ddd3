"""SMTP sink: every message becomes one .eml file; read_mails gives them back parsed."""

import smtplib
import sys
from email.message import EmailMessage

from opendrec_devstack.net import free_port
from opendrec_devstack.procs import start_helper
from opendrec_devstack.smtp_sink import read_mails, smtp_ready, start_smtp_sink, wait_for_mails


def send(port, to, subject, body, bcc=()):
    msg = EmailMessage()
    msg["From"] = "OpenDREC <noreply@opendrec.local>"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(body)
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        smtp.send_message(msg, to_addrs=[to, *bcc])


def test_messages_are_stored_and_read_back(tmp_path):
    port = free_port()
    sink = start_smtp_sink(tmp_path / "mail", port)
    try:
        send(port, "alice@example.org", "Verify your e-mail", "Your code is 123456\n")
        send(port, "bob@example.org", "Welcome", "Hello Bob\n", bcc=["audit@example.org"])
    finally:
        sink.stop()

    files = sorted((tmp_path / "mail").iterdir())
    assert [f.suffix for f in files] == [".eml", ".eml"]  # no temp files left over
    mails = read_mails(tmp_path / "mail")
    assert [m["Subject"] for m in mails] == ["Verify your e-mail", "Welcome"]
    assert mails[0].get_body(("plain",)).get_content() == "Your code is 123456\n"
    assert mails[0]["X-MailFrom"] == "noreply@opendrec.local"

    assert [m["Subject"] for m in read_mails(tmp_path / "mail", to="ALICE@example.org")] == ["Verify your e-mail"]
    # Bcc recipients are only in the envelope; the sink keeps it as X-RcptTo
    assert [m["Subject"] for m in read_mails(tmp_path / "mail", to="audit@example.org")] == ["Welcome"]
    assert read_mails(tmp_path / "mail", to="nobody@example.org") == []
    assert read_mails(tmp_path / "missing") == []


def test_command_line_sink(tmp_path):
    port = free_port()
    argv = [sys.executable, "-m", "opendrec_devstack.smtp_sink", "--dir", str(tmp_path / "mail"), "--port", str(port)]
    with start_helper("smtp-sink", argv, port, log_path=tmp_path / "sink.log", ready=lambda: smtp_ready(port)) as sink:
        send(port, "carol@example.org", "Password reset", "Reset link: http://x/reset?t=abc\n")
        [mail] = wait_for_mails(tmp_path / "mail", to="carol@example.org", timeout=10)
        assert "reset?t=abc" in mail.get_body(("plain",)).get_content()
    assert sink.process.returncode == 0
    assert "SMTP sink on smtp://127.0.0.1:" in (tmp_path / "sink.log").read_text()
