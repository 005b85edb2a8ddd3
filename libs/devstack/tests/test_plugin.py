"""The pytest plugin's fixtures, used as any test suite of the repo uses them."""

import json
import os
import subprocess
import sys
import textwrap
import time

import asyncpg
import psycopg
from aiokafka.admin import AIOKafkaAdminClient

from opendrec_devstack.pytest_plugin import databases_with_prefix, docker_available


async def test_postgres_url_works_with_both_drivers(postgres_url):
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await conn.fetchval("select 1") == 1
    finally:
        await conn.close()
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


async def test_kafka_bootstrap_answers(kafka_bootstrap):
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        assert isinstance(await admin.list_topics(), list)
    finally:
        await admin.close()


def test_fresh_databases_are_separate(fresh_database, postgres_url):
    a, b = fresh_database("devstack"), fresh_database("devstack")
    assert a != b
    with psycopg.connect(a) as conn:
        conn.execute("create table t (v int)")
        conn.execute("insert into t values (1)")
    with psycopg.connect(b) as conn:
        assert conn.execute("select count(*) from pg_tables where tablename = 't'").fetchone() == (0,)
    assert len(databases_with_prefix(postgres_url, "devstack_")) >= 2


def test_docker_probe_is_quick():
    t = time.monotonic()
    docker_available()
    assert time.monotonic() - t < 5


def test_platform_fixture_in_a_test_session(
    tmp_path, postgres_url, kafka_bootstrap, dummy_services, processes_mentioning
):
    """An inner pytest session (plugin loaded through its entry point) uses `platform` and
    `fresh_database`; afterwards every database it made is gone and nothing is left running."""
    services_file, env = dummy_services
    report = tmp_path / "report.json"
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(f"""
        import json, httpx, psycopg

        def test_inner(platform, fresh_database):
            url = fresh_database("inner")
            assert httpx.get(platform.gateway_url + "/readyz").status_code == 200
            assert platform.mail_dir.is_dir() and platform.traces_dir.is_dir()
            with psycopg.connect(platform.database_url) as conn:
                names = [r[0] for r in conn.execute("select datname from pg_database")]
            json.dump({{"fresh": url.rsplit("/", 1)[1], "prefix": platform.database_name_prefix,
                        "state_dir": str(platform.state_dir), "names": names}}, open({str(report)!r}, "w"))
    """)
    )
    inner_env = {
        **os.environ,
        **env,
        "DATABASE_URL": postgres_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "OPENDREC_DEVSTACK_SERVICES": str(services_file),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "--rootdir",
            str(tmp_path),
            "--basetemp",
            str(tmp_path / "inner-tmp"),
            str(tmp_path / "test_inner.py"),
        ],
        cwd=tmp_path,
        env=inner_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    seen = json.loads(report.read_text())
    assert seen["fresh"] in seen["names"]
    assert seen["prefix"] + "opendrec_dummy" in seen["names"]  # made by the stand-in service
    assert databases_with_prefix(postgres_url, seen["prefix"]) == []
    assert databases_with_prefix(postgres_url, seen["fresh"]) == []
    assert processes_mentioning(seen["state_dir"]) == []
