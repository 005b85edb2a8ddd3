"""Embedded Postgres: reachable by asyncpg and psycopg over TCP, survives kills, stops cleanly."""

import os
import shutil
import signal
import tempfile
from pathlib import Path

import asyncpg
import psutil
import psycopg
import pytest

from opendrec_devstack.net import port_is_free
from opendrec_devstack.postgres import start_postgres, stop_postgres


@pytest.fixture(scope="module")
def pgdata():
    # not under pytest's basetemp, which pytest keeps at mode 0700 (postgres runs as another user)
    base = tempfile.mkdtemp(prefix="opendrec-pg-test-")
    path = Path(base) / "data"
    yield path
    stop_postgres(path)
    shutil.rmtree(base, ignore_errors=True)


def postmasters(pgdata):
    return [
        p
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "postgres" and str(pgdata) in (p.info["cmdline"] or [])
    ]


async def test_both_drivers_connect_over_tcp(pgdata):
    pg = start_postgres(pgdata)
    try:
        assert pg.url.startswith("postgresql://postgres@127.0.0.1:")
        conn = await asyncpg.connect(pg.url)
        try:
            assert await conn.fetchval("select inet_server_port()") == pg.port
        finally:
            await conn.close()
        with psycopg.connect(pg.url) as conn:
            conn.execute("create table if not exists kept (v int)")
            conn.execute("insert into kept values (42)")
    finally:
        pg.stop()
    assert postmasters(pgdata) == []
    assert port_is_free(pg.port)


def test_data_survives_restart_after_postmaster_killed(pgdata):
    pg = start_postgres(pgdata)
    os.kill(pg.pid, signal.SIGKILL)  # leaves a stale postmaster.pid behind
    psutil.wait_procs(postmasters(pgdata), timeout=5)
    assert (pgdata / "postmaster.pid").exists()

    pg2 = start_postgres(pgdata)
    try:
        with psycopg.connect(pg2.url) as conn:
            assert conn.execute("select v from kept").fetchall() == [(42,)]
    finally:
        pg2.stop()


def test_start_while_an_orphan_runs_replaces_it(pgdata):
    orphan_pid = start_postgres(pgdata).pid  # as if its owner had been killed -9 and never stopped it
    pg = start_postgres(pgdata)
    try:
        assert [p.pid for p in postmasters(pgdata)] == [pg.pid]
        assert pg.pid != orphan_pid
        with psycopg.connect(pg.url) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    finally:
        pg.stop()


def test_stale_pid_file_naming_a_live_unrelated_process(pgdata):
    # e.g. after a reboot the pid in postmaster.pid belongs to something else now
    lines = ["1", str(pgdata), "0", "5432", str(pgdata), "127.0.0.1", "0 0", "ready"]
    (pgdata / "postmaster.pid").write_text("\n".join(lines) + "\n")
    pg = start_postgres(pgdata)
    try:
        with psycopg.connect(pg.url) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    finally:
        pg.stop()
    assert psutil.pid_exists(1)
