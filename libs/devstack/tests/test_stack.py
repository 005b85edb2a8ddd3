"""`python -m opendrec_devstack run` with a stand-in service table: env, readiness, clean stop."""

import json
import smtplib

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from opendrec_devstack.net import port_is_free
from opendrec_devstack.pytest_plugin import start_platform
from opendrec_devstack.services import SERVICES, ServiceSpec
from opendrec_devstack.smtp_sink import wait_for_mails
from opendrec_devstack.stack import Infra, ensure_jwt_key, service_env


def test_service_table_matches_the_platform_conventions():
    assert {s.name: (s.module, s.port) for s in SERVICES} == {
        "gateway": ("opendrec_gateway", 8000),
        "identity": ("opendrec_identity", 8101),
        "devices": ("opendrec_devices", 8102),
        "readings": ("opendrec_readings", 8103),
        "reservations": ("opendrec_reservations", 8104),
        "certificates": ("opendrec_certificates", 8105),
        "charger-gateway": ("opendrec_charger_gateway", 8106),
        "console": ("opendrec_console", 8107),
    }


def test_service_env(tmp_path):
    infra = Infra(
        "postgresql://postgres@127.0.0.1:5555/postgres",
        "127.0.0.1:9092",
        "smtp://127.0.0.1:8025",
        "http://127.0.0.1:8110",
        "tok",
        str(tmp_path / "mail"),
    )
    spec = ServiceSpec("charger-gateway", "opendrec_charger_gateway", 8106, "CHARGER_GATEWAY_URL")
    ports = {s.name: s.port for s in SERVICES}
    env = service_env(
        spec,
        base={"PATH": "/bin", "KAZAM_POLL_SECONDS": "5"},
        ports=ports,
        services=SERVICES,
        infra=infra,
        state_dir=tmp_path,
        environment="dev",
    )
    assert env["PATH"] == "/bin"
    assert env["ENVIRONMENT"] == "dev"
    assert env["DATABASE_URL"] == infra.database_url
    assert (env["KAFKA_BOOTSTRAP_SERVERS"], env["KAFKA_SESSION_TIMEOUT_MS"], env["KAFKA_HEARTBEAT_INTERVAL_MS"]) == (
        "127.0.0.1:9092",
        "2000",
        "500",
    )
    assert (env["HTTP_HOST"], env["HTTP_PORT"]) == ("127.0.0.1", "8106")
    assert env["TRACES_FILE"] == str(tmp_path / "traces" / "charger-gateway.jsonl")
    assert env["JWT_PRIVATE_KEY_FILE"] == str(tmp_path / "keys" / "jwt-ed25519.pem")
    assert (env["KAZAM_URL"], env["KAZAM_TOKEN"], env["KAZAM_POLL_SECONDS"]) == ("http://127.0.0.1:8110", "tok", "5")
    assert env["ADMIN_EMAIL"] == "admin@opendrec.local" and env["ADMIN_PASSWORD"]
    assert env["GATEWAY_URL"] == "http://127.0.0.1:8000"
    assert env["CHARGER_GATEWAY_URL"] == "http://127.0.0.1:8106"
    assert env["IDENTITY_URL"] == "http://127.0.0.1:8101"


def test_jwt_key_is_made_once(tmp_path):
    path = tmp_path / "keys" / "jwt-ed25519.pem"
    ensure_jwt_key(path)
    first = path.read_bytes()
    assert isinstance(load_pem_private_key(first, None), Ed25519PrivateKey)
    assert path.stat().st_mode & 0o777 == 0o600
    ensure_jwt_key(path)
    assert path.read_bytes() == first


@pytest.fixture
def start(postgres_url, kafka_bootstrap, dummy_services):
    """start(state, services_file): start_platform on the test Postgres and broker, the stand-ins findable."""
    _, env = dummy_services

    def start(state, services_file):
        return start_platform(
            state,
            database_url=postgres_url,
            kafka_bootstrap=kafka_bootstrap,
            services_file=services_file,
            extra_env=env,
            timeout=60,
        )

    return start


def test_run_start_ready_stop_and_run_again(
    tmp_path, postgres_url, kafka_bootstrap, dummy_services, start, processes_mentioning
):
    services_file, _ = dummy_services
    state = tmp_path / "state"
    for attempt in (1, 2):
        p = start(state, services_file)
        try:
            assert set(p.service_urls) == {"identity", "gateway"}
            assert p.gateway_url == p.service_urls["gateway"]
            assert httpx.get(p.gateway_url + "/readyz").status_code == 200
            seen = httpx.get(p.service_urls["identity"] + "/env").json()
            assert seen["ENVIRONMENT"] == "test"
            assert seen["DATABASE_URL"] == postgres_url == p.database_url
            assert seen["DATABASE_NAME_PREFIX"] == p.database_name_prefix
            assert seen["KAFKA_BOOTSTRAP_SERVERS"] == kafka_bootstrap == p.kafka_bootstrap
            assert seen["TRACES_FILE"] == str(p.traces_dir / "identity.jsonl")
            assert (seen["KAZAM_URL"], seen["KAZAM_TOKEN"]) == (p.kazam_url, p.kazam_token)
            assert seen["GATEWAY_URL"] == p.gateway_url and seen["IDENTITY_URL"] == p.service_urls["identity"]
            assert (seen["ADMIN_EMAIL"], seen["ADMIN_PASSWORD"]) == (p.admin_email, p.admin_password)

            r = httpx.post(
                p.kazam_url + "/getTransactions",
                json={"device_id": "x", "start_time": 0, "end_time": 1},
                headers={"Authorization": f"Bearer {p.kazam_token}"},
            )
            assert r.json()["count"]["total"] == 0
            host, port = seen["SMTP_URL"].removeprefix("smtp://").split(":")
            with smtplib.SMTP(host, int(port)) as smtp:
                smtp.sendmail("a@x.org", [f"run{attempt}@x.org"], b"Subject: hi\n\nhello\n")
            assert wait_for_mails(p.mail_dir, to=f"run{attempt}@x.org", timeout=10)

            ready_lines = [line for line in p.log_tail(100_000).splitlines() if line.startswith("OpenDREC ready")]
            assert ready_lines == [f"OpenDREC ready at {p.gateway_url}"]
            pids = [json.loads(f.read_text())["pid"] for f in (state / "pids").glob("*.json")]
            assert len(pids) == 4  # two services, the SMTP sink, the Kazam simulator
        finally:
            rc = p.stop()
        assert rc == 130  # like Ctrl-C
        assert processes_mentioning(str(state)) == []
        assert processes_mentioning("opendrec_devstack_dummy") == []
        assert all(port_is_free(int(u.rsplit(":", 1)[1])) for u in p.service_urls.values())
        assert list((state / "pids").iterdir()) == []
        assert not (state / "stack.json").exists()


def test_a_failing_service_stops_the_whole_stack(tmp_path, start, processes_mentioning):
    services_file = tmp_path / "broken.json"
    services_file.write_text(
        json.dumps(
            [
                {"name": "gateway", "module": "opendrec_devstack_dummy", "port": 8000, "url_env": "GATEWAY_URL"},
                {"name": "broken", "module": "opendrec_no_such_service", "port": 8999, "url_env": "BROKEN_URL"},
            ]
        )
    )
    state = tmp_path / "state"
    with pytest.raises(RuntimeError, match="exited with 1") as err:
        start(state, services_file)
    assert "No module named opendrec_no_such_service" in str(err.value)
    assert processes_mentioning(str(state)) == []
    assert processes_mentioning("opendrec_devstack_dummy") == []
