"""The mail worker's step and its use case (services/mail.py): one batch per step, retries, the attempts limit."""

import asyncio
import uuid

import psycopg
import pytest

from opendrec_devstack.net import free_port
from opendrec_devstack.smtp_sink import wait_for_mails
from opendrec_identity import store
from opendrec_identity.mail import parse_smtp_url
from opendrec_identity.services import mail as mail_service
from opendrec_kit.testing import eventually

MAX_ATTEMPTS = 2


@pytest.fixture(scope="module")
def identity_settings(make_identity_settings):
    # Woken by nothing in these tests (no route is called): only the steps a test runs send mail.
    return make_identity_settings(mail_poll_interval_s=3600, mail_max_attempts=MAX_ATTEMPTS)


@pytest.fixture(scope="module")
async def mailer(runtime, client):
    worker = runtime.app.state.identity.mailer

    async def first_step_done() -> bool:  # the step every worker runs at start
        return worker.steps >= 1

    await eventually(first_step_done)
    return worker


async def queue(runtime, recipients: list[str]) -> None:
    uow = runtime.uow()
    async with uow:
        for recipient in recipients:
            await store.queue_mail(uow.conn, recipient, "Hello", f"Hello {recipient}")


async def queued(runtime, recipients: list[str]):
    return await runtime.pool.fetch(
        "SELECT recipient, attempts, last_error, next_attempt_at > now() AS later FROM mails "
        "WHERE recipient = ANY($1::text[]) ORDER BY id",
        recipients,
    )


async def test_a_step_sends_one_batch_and_says_when_more_is_waiting(runtime, mailer, smtp_sink):
    recipients = [f"batch-{uuid.uuid4().hex[:8]}-{i}@example.org" for i in range(mail_service.BATCH + 1)]
    await queue(runtime, recipients)

    assert await mailer.step() is True  # a full batch: the worker runs its next step at once
    assert len(await queued(runtime, recipients)) == 1
    assert await mailer.step() is False  # the last one: nothing more is waiting
    assert await queued(runtime, recipients) == []
    mails = await asyncio.to_thread(wait_for_mails, smtp_sink[1], recipients[-1], 1, 10.0)
    assert mails[0]["Subject"] == "Hello"


async def test_a_refused_mail_is_kept_and_tried_again_up_to_the_attempts_limit(runtime, mailer):
    down = parse_smtp_url(f"smtp://127.0.0.1:{free_port()}")  # nothing listens there
    recipient = f"down-{uuid.uuid4().hex[:8]}@example.org"
    await queue(runtime, [recipient])

    async def step() -> int:
        return await mail_service.send_due_mails(runtime.uow(), down, "test@example.org", MAX_ATTEMPTS)

    assert await step() == 1
    [row] = await queued(runtime, [recipient])
    assert (row["attempts"], row["later"]) == (1, True) and row["last_error"].startswith("ConnectionRefusedError")
    assert await step() == 0  # not due before its retry time

    await runtime.pool.execute("UPDATE mails SET next_attempt_at = now() WHERE recipient = $1", recipient)
    assert await step() == 1
    await runtime.pool.execute("UPDATE mails SET next_attempt_at = now() WHERE recipient = $1", recipient)
    assert await step() == 0  # MAX_ATTEMPTS tried: kept (for an operator to see), never tried again
    [row] = await queued(runtime, [recipient])
    assert row["attempts"] == MAX_ATTEMPTS
    # abandoned: its error stays, its text (it may hold a one-time token) does not
    body = await runtime.pool.fetchval("SELECT body FROM mails WHERE recipient = $1", recipient)
    assert body == store.ABANDONED_BODY


async def test_a_subject_with_line_breaks_goes_out_on_one_line_and_injects_no_header(runtime, mailer, smtp_sink):
    """An organization named "Evil\nSubject: x" once stopped every mail after its invitation."""
    evil, after = (f"evil-{uuid.uuid4().hex[:8]}@example.org", f"after-{uuid.uuid4().hex[:8]}@example.org")
    uow = runtime.uow()
    async with uow:
        await store.queue_mail(uow.conn, evil, "Join Evil\r\nSubject: x\nBcc: victim@example.org", "Hello")
        await store.queue_mail(uow.conn, after, "Hello", "Hello")
    await mailer.step()
    [sent] = await asyncio.to_thread(wait_for_mails, smtp_sink[1], evil, 1, 10.0)
    assert sent.get_all("Subject") == ["Join Evil Subject: x Bcc: victim@example.org"]
    assert sent.get_all("Bcc") is None
    await asyncio.to_thread(wait_for_mails, smtp_sink[1], after, 1, 10.0)
    assert await queued(runtime, [evil, after]) == []


async def test_a_message_that_cannot_be_built_is_set_aside_at_once_and_the_rest_go_out(runtime, mailer, smtp_sink):
    broken, fine = "broken\n@example.org", f"fine-{uuid.uuid4().hex[:8]}@example.org"
    await queue(runtime, [broken, fine])
    await mailer.step()
    await asyncio.to_thread(wait_for_mails, smtp_sink[1], fine, 1, 10.0)
    [row] = await queued(runtime, [broken])
    assert row["attempts"] == MAX_ATTEMPTS and row["last_error"].startswith("cannot be built")
    assert await runtime.pool.fetchval("SELECT body FROM mails WHERE recipient = $1", broken) == store.ABANDONED_BODY
    assert await queued(runtime, [fine]) == []


async def test_no_transaction_holds_a_mail_while_it_is_being_sent(runtime, monkeypatch):
    """SMTP is slow and may hang: the row is leased, not locked, while its message travels."""
    recipient = f"unlocked-{uuid.uuid4().hex[:8]}@example.org"
    await queue(runtime, [recipient])
    mail_id = await runtime.pool.fetchval("SELECT id FROM mails WHERE recipient = $1", recipient)
    seen: list[bool] = []

    def deliver_while_checking(server, msg):  # runs in the worker thread, as the real one does
        with psycopg.connect(runtime.database_url, autocommit=True) as conn:
            row = conn.execute("SELECT id FROM mails WHERE id = %s FOR UPDATE NOWAIT", (mail_id,)).fetchone()
            seen.append(row is not None)

    monkeypatch.setattr(mail_service, "deliver", deliver_while_checking)
    while await mail_service.send_due_mails(runtime.uow(), parse_smtp_url("smtp://127.0.0.1:25"), "t@x.org", 2):
        pass
    assert True in seen and all(seen)  # the row was free (no lock error) during each send
    assert await queued(runtime, [recipient]) == []


async def test_the_worker_is_reported_by_readyz(client, mailer):
    ready = await client.get("/readyz")
    assert ready.json()["workers"]["mail-sender"] == "ok"
