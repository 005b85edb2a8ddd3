"""Energy of the last CERTIFY_SETTLE_S is certified once that time has passed, so an early end that arrives
after the read (reservation.ended comes on another topic) still keeps the energy after the end out."""

from datetime import UTC, datetime, timedelta

import pytest

from opendrec_certificates import services
from opendrec_certificates.app import build
from opendrec_certificates.settings import Settings
from opendrec_kit.testing import TokenIssuer, eventually, publish_events, settings_for_test, started

from .helpers import H, _equals, ids, reads, register, reservation, total_certified
from .test_reservation_end import ended

pytestmark = pytest.mark.asyncio(loop_scope="session")

SETTLE_S = 60.0


class Clock:
    """The service's time, moved by the test: what has settled does not depend on how fast the machine is."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
async def settling(postgres_url, kafka_bootstrap):
    """(runtime, client, issuer, clock): a service of its own whose clock the test moves."""
    runtime = build(
        settings_for_test(
            Settings,
            postgres_url,
            kafka_bootstrap,
            certify_settle_s=SETTLE_S,
            certify_sweep_interval_s=0.05,
            wait_for_reservation_watermarks=False,
        )
    )
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    runtime.app.state.settlement.clock = clock
    issuer = TokenIssuer()
    issuer.trust_in(runtime)
    async with started(runtime) as client:
        yield runtime, client, issuer, clock


async def _handled(runtime, envelope) -> bool:
    return bool(await runtime.pool.fetchval("SELECT 1 FROM inbox WHERE event_id = $1", envelope.event_id))


async def _delivered(runtime, kafka_bootstrap, events) -> None:
    """Publish events and wait until the service has handled each one."""
    for envelope in await publish_events(kafka_bootstrap, events):
        await eventually(lambda envelope=envelope: _handled(runtime, envelope))


async def _due_at(runtime, device_id):
    return await runtime.pool.fetchval("SELECT due_at FROM certification_due WHERE device_id = $1", device_id)


async def test_an_end_that_arrives_after_the_read_still_keeps_the_energy_after_it_out(settling, kafka_bootstrap):
    runtime, client, issuer, clock = settling
    dev, res = ids()
    buyer, owner = 910041, 910042
    await register(runtime, dev, owner)  # certified only once known here
    now = clock.now
    created = reservation(res, dev, buyer, start=now - 4 * H, end=now + 20 * H)
    read = reads(dev, owner, [36000], start=now - H)  # 36,000 Wh from an hour ago until now: 10 Wh a second
    await _delivered(runtime, kafka_bootstrap, [created, read])
    # Handled, not settled: nothing certified yet, the device is due when the read's end has settled.
    assert await total_certified(client, issuer, res, buyer) == 0
    assert await _due_at(runtime, dev) == now + timedelta(seconds=SETTLE_S)

    # The buyer had ended the reservation half an hour ago; the end arrives now, after the read.
    await _delivered(runtime, kafka_bootstrap, [ended(created, now - H / 2)])
    clock.now = now + timedelta(seconds=SETTLE_S)  # settled
    assert await eventually(lambda: _equals(total_certified(client, issuer, res, buyer), 18000))
    await eventually(lambda: _equals(_due_at(runtime, dev), None))
    assert await total_certified(client, issuer, res, buyer) == 18000


async def test_settled_energy_is_certified_when_it_arrives(settling, kafka_bootstrap):
    runtime, client, issuer, clock = settling
    dev, res = ids()
    buyer, owner = 910043, 910044
    await register(runtime, dev, owner)  # certified only once known here
    now = clock.now
    created = reservation(res, dev, buyer, start=now - 10 * H, end=now + 20 * H)
    old = reads(dev, owner, [1000, 2000], start=now - 5 * H)  # ended 3 hours ago: settled long since
    await _delivered(runtime, kafka_bootstrap, [created, old])
    assert await total_certified(client, issuer, res, buyer) == 3000
    assert await _due_at(runtime, dev) is None


async def test_the_sweep_runs_as_a_kit_worker_one_batch_a_step(settling):
    runtime, *_ = settling
    [worker] = [w for w in runtime.workers if w.name == "certification-sweep"]
    assert worker.interval_s == 0.05

    async def stepped():
        return worker.status == "ok" and worker.steps >= 1

    await eventually(stepped)
    # Nothing is due before any read ended: an empty round, nothing more waiting.
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)
    assert await services.certify_due(runtime.uow(), timedelta(seconds=SETTLE_S), long_ago) == services.Sweep(0, 0)
