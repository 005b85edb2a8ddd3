"""The mail worker's step and its use case (services/mail.py): one batch per step, retries, the attempts limit."""

import asyncio
import uuid

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


async def test_the_worker_is_reported_by_readyz(client, mailer):
    ready = await client.get("/readyz")
    assert ready.json()["workers"]["mail-sender"] == "ok"
