"""The fault-injection run's plan (no platform): the seed alone decides it, the full run kills every service and the
broker, and the expected energy leaves out exactly the reads outside a reservation's window."""

import random
from datetime import UTC, datetime, timedelta

from .chaos import BROKER, SERVICE_NAMES, STEP, ChaosConfig, plan_faults, plan_world

NOW = datetime(2026, 12, 7, 15, 12, 30, tzinfo=UTC)


def plan(cfg: ChaosConfig):
    rng = random.Random(cfg.seed)
    return plan_world(cfg, rng, NOW), plan_faults(cfg, rng)


def test_the_seed_decides_the_run():
    cfg = ChaosConfig(seed=5, reads=3_000, devices=6)
    (w1, f1), (w2, f2) = plan(cfg), plan(cfg)
    assert [d.reads for d in w1.devices] == [d.reads for d in w2.devices] and f1 == f2
    assert [d.reads for d in plan(ChaosConfig(seed=6, reads=3_000, devices=6))[0].devices] != [
        d.reads for d in w1.devices
    ]


def test_the_full_run_kills_every_service_and_restarts_the_broker_twice():
    faults = plan(ChaosConfig(seed=1))[1]
    assert len(faults) >= 10
    assert {f.victim for f in faults} == {*SERVICE_NAMES, BROKER}
    assert [f.victim for f in faults].count(BROKER) >= 2
    assert faults[-1].victim == "certificates" and faults[-1].at_progress == 1.0  # while certifying the backlog
    small = plan(ChaosConfig(seed=1, reads=6_000, kills=3, devices=12, every_service=False))[1]
    assert len(small) == 3 and {BROKER, "readings"} <= {f.victim for f in small}
    assert all(0 < f.at_progress < 1 for f in small)


def test_expected_energy_is_the_reads_inside_each_window():
    world, _ = plan(ChaosConfig(seed=3, reads=12_000, devices=4))
    assert sum(len(d.reads) for d in world.devices) == 12_000
    assert world.t0.minute == world.t0.second == 0
    last_end = world.t0 + max(len(d.reads) for d in world.devices) * STEP
    assert last_end <= NOW - timedelta(hours=1)  # every read's hour closed
    full, cut = world.reservations
    for d in full.devices:
        assert world.expected_wh(d) == sum(d.reads)
    for d in cut.devices:
        # an hour (360 reads) before the window, and the reads after its end, are left out
        inside = [wh for k, wh in enumerate(d.reads) if cut.start <= world.t0 + k * STEP < cut.end]
        assert world.expected_wh(d) == sum(inside) < sum(d.reads) - sum(d.reads[:360])
    assert [d.late for d in world.devices].count(True) == 2
