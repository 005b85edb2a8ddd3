"""docker-compose.yml and the pieces it includes, checked without a Docker engine.

The Compose Specification JSON schema comes from the check-jsonschema package, which
vendors the official schema (compose-spec/compose-spec, schema/compose-spec.json) as
its builtin "vendor.compose-spec"; no network is needed at test time.
"""

import copy
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema

from opendrec_devstack.services import SERVICES

REPO = Path(__file__).resolve().parents[2]
ROOT_COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"

# The platform's services and the ports they serve HTTP on: devstack's one table of them (its tests pin the
# fixed platform conventions).
PLATFORM_PORTS = {service.name: service.port for service in SERVICES}
# Clients of the public API (no database, no broker): the console.
API_CLIENTS = {"console"}
RUNTIMES = {name: port for name, port in PLATFORM_PORTS.items() if name not in API_CLIENTS}
GATEWAY_UPSTREAMS = {
    "DEVICES_URL": "devices",
    "READINGS_URL": "readings",
    "RESERVATIONS_URL": "reservations",
    "CERTIFICATES_URL": "certificates",
    "CHARGER_GATEWAY_URL": "charger-gateway",
    "CONSOLE_URL": "console",
}
# A variable or environment key with one of these in its name holds a secret.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE_KEY|DATABASE_URL")
# Compose interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, ...
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


def load_compose_files() -> list[tuple[Path, dict]]:
    """The root compose file and, recursively, every file it includes."""
    files, queue = [], [ROOT_COMPOSE]
    while queue:
        path = queue.pop(0)
        doc = yaml.safe_load(path.read_text())
        files.append((path, doc))
        for entry in doc.get("include", []):
            # Short syntax is a path; long syntax has `path` (a string or a list).
            paths = entry if isinstance(entry, str) else entry["path"]
            for rel in [paths] if isinstance(paths, str) else paths:
                # Include paths are relative to the including file's folder.
                queue.append((path.parent / rel).resolve())
    return files


@pytest.fixture(scope="module")
def compose_files():
    return load_compose_files()


@pytest.fixture(scope="module")
def services(compose_files):
    """Every service of the assembled project: name -> (file it is defined in, definition)."""
    merged = {}
    for path, doc in compose_files:
        for name, svc in doc.get("services", {}).items():
            assert name not in merged, f"service {name!r} is defined in {merged[name][0]} and {path}"
            merged[name] = (path, svc)
    return merged


@pytest.fixture(scope="module")
def compose_validator():
    schema = get_builtin_schema("vendor.compose-spec")
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def schema_errors(validator, doc) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]


def test_root_compose_includes_the_infrastructure_pieces(compose_files):
    paths = [p for p, _ in compose_files]
    assert paths[0] == ROOT_COMPOSE
    assert all(p.is_file() for p in paths)
    assert len(paths) > 1, "docker-compose.yml includes no pieces from deploy/compose/"
    assert all(p.is_relative_to(REPO / "deploy" / "compose") for p in paths[1:])


def test_every_compose_file_matches_the_compose_specification(compose_files, compose_validator):
    problems = {
        str(path.relative_to(REPO)): errors
        for path, doc in compose_files
        if (errors := schema_errors(compose_validator, doc))
    }
    assert problems == {}


@pytest.mark.parametrize(
    "mistake",
    [
        pytest.param(lambda d: d["services"]["gateway"].update(buidl="."), id="misspelled-service-key"),
        pytest.param(lambda d: d["services"]["gateway"].update(ports="8000:8000"), id="ports-not-a-list"),
        pytest.param(
            lambda d: d["services"]["gateway"]["depends_on"]["identity"].update(condition="service_ready"),
            id="unknown-depends-on-condition",
        ),
    ],
)
def test_the_schema_check_rejects_a_broken_file(compose_files, compose_validator, mistake):
    # The check above is only worth something if the schema really constrains services.
    root = copy.deepcopy(compose_files[0][1])
    mistake(root)
    assert schema_errors(compose_validator, root)


def test_every_platform_service_is_defined_with_a_readyz_healthcheck(services):
    missing = set(PLATFORM_PORTS) - set(services)
    assert not missing, f"services missing from compose: {sorted(missing)}"
    for name in PLATFORM_PORTS:
        healthcheck = services[name][1].get("healthcheck")
        assert healthcheck, f"{name} has no healthcheck"
        assert not healthcheck.get("disable"), f"{name} disables its healthcheck"
        test = healthcheck["test"]
        assert "/readyz" in (test if isinstance(test, str) else " ".join(test)), name


def published_ports(service: dict) -> list[tuple[str, str]]:
    """(published, target) pairs, from short ("8000:8000") or long port syntax."""
    pairs = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            pairs.append((str(port.get("published", "")), str(port["target"])))
        else:
            parts = str(port).split("/")[0].split(":")  # [ip:]published:target
            pairs.append((parts[-2] if len(parts) > 1 else "", parts[-1]))
    return pairs


def test_only_the_gateway_is_published_on_port_8000(services):
    assert ("8000", "8000") in published_ports(services["gateway"][1])
    exposed = {name for name, (_, svc) in services.items() if svc.get("ports") and name not in ("gateway", "grafana")}
    assert not exposed, f"only the gateway should be reachable from outside: {sorted(exposed)}"
    # Grafana, for the operator on the Docker host only
    assert services["grafana"][1]["ports"] == ["127.0.0.1:3000:3000"]


def test_every_service_image_builds_from_the_one_dockerfile(services):
    for name in PLATFORM_PORTS:
        path, svc = services[name]
        build = svc.get("build")
        assert isinstance(build, dict), f"{name}: no build section"
        context = (path.parent / build.get("context", ".")).resolve()
        assert context == REPO, f"{name}: build context {context}"
        assert (context / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE, name
        assert build.get("args", {}).get("SERVICE") == name, f"{name}: build arg SERVICE"
        assert svc.get("image", "").startswith(f"opendrec/{name}:"), f"{name}: image name"
    others = []
    for folder, subfolders, files in os.walk(REPO):
        subfolders[:] = [d for d in subfolders if d not in {".git", ".venv", "node_modules", ".run"}]
        others += [Path(folder, f) for f in files if "Dockerfile" in f and Path(folder, f) != DOCKERFILE]
    assert others == [], "there should be a single Dockerfile"


def interpolations(text: str) -> list[tuple[str, str, str]]:
    """(variable, operator, argument) of every ${...} in a compose file's text."""
    return [(m[0], m[1], m[2]) for m in INTERPOLATION.findall(text)]


def test_no_secret_has_a_default_value(compose_files):
    for path, doc in compose_files:
        for var, op, _ in interpolations(path.read_text()):
            if SECRET_NAME.search(var):
                # Only ${VAR:?msg} (or ${VAR?msg}) makes compose refuse to start without it.
                assert op in (":?", "?"), f"{path.name}: ${{{var}}} must be required, not {op or 'optional'}"
        for name, svc in doc.get("services", {}).items():
            env = svc.get("environment", {})
            assert isinstance(env, dict), f"{name}: use the mapping form of environment"
            for key, value in env.items():
                if SECRET_NAME.search(key) and not key.endswith("_FILE"):
                    used = interpolations(str(value))
                    assert used and all(op in (":?", "?") for _, op, _ in used), (
                        f"{name}: {key} must come from a required variable, not a literal"
                    )
        for secret, spec in doc.get("secrets", {}).items():
            source = spec.get("file") or spec.get("environment") or ""
            used = interpolations(source)
            assert used and all(op in (":?", "?") for _, op, _ in used), (
                f"secret {secret} must come from a required variable, not a file in the repository"
            )


def test_each_service_logs_in_to_postgres_as_its_own_role_owning_its_own_database(services):
    """Least privilege (issue 12): no service uses the administrator, nor another service's role or database."""
    postgres_env = services["postgres"][1]["environment"]
    for name in RUNTIMES:
        env = services[name][1]["environment"]
        if name == "gateway":
            assert "DATABASE_URL" not in env  # it has no database
            continue
        # Stand in for compose's substitution: mark where each variable lands in the URL.
        url = urlsplit(INTERPOLATION.sub(lambda m: f"VAR-{m[1]}", env["DATABASE_URL"]))
        role = "opendrec_" + name.replace("-", "_")
        assert url.scheme.startswith("postgres"), name
        assert url.hostname == "postgres" and "postgres" in services, name
        assert (url.username, url.path) == (role, f"/{role}"), name
        password = name.upper().replace("-", "_") + "_DATABASE_PASSWORD"
        assert url.password == f"VAR-{password}", f"{name}: DATABASE_URL password"
        # ...the password the Postgres container creates that role with (deploy/postgres/roles.sql).
        assert [var for var, _, _ in interpolations(postgres_env[password])] == [password]
        assert url.username != postgres_env["POSTGRES_USER"]
    mounts = services["postgres"][1]["volumes"]
    assert any(m.endswith(":/docker-entrypoint-initdb.d/10-opendrec-roles.sh:ro") for m in mounts)
    assert any(m.startswith("../postgres/roles.sql:") for m in mounts)


def test_each_process_logs_in_to_kafka_as_its_own_user_over_tls(services):
    users = set()
    for name in RUNTIMES:
        env = services[name][1]["environment"]
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512", name
        assert env["KAFKA_SSL_CAFILE"] == "/run/secrets/kafka_ca" and "kafka_ca" in services[name][1]["secrets"], name
        assert env["KAFKA_SASL_USERNAME"] == f"opendrec-{name}", name
        users.add(env["KAFKA_SASL_USERNAME"])
        password = name.upper().replace("-", "_") + "_KAFKA_PASSWORD"
        assert [var for var, _, _ in interpolations(env["KAFKA_SASL_PASSWORD"])] == [password], name
    script = (REPO / "deploy" / "kafka" / "create-users.sh").read_text()
    assert set(re.findall(r"^add (\S+) ", script, re.M)) == users  # the kafka-users step creates exactly those
    kafka = services["kafka"][1]["environment"]
    listeners = dict(item.split("://") for item in kafka["KAFKA_LISTENERS"].split(","))
    protocols = dict(item.split(":") for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    for listener, address in listeners.items():  # anything not SASL_SSL listens on the container's loopback only
        assert protocols[listener] == "SASL_SSL" or address.startswith("127.0.0.1:"), listener
    users_step = services["kafka-users"][1]
    assert users_step["network_mode"] == "service:kafka"
    for name in RUNTIMES:
        assert services[name][1]["depends_on"]["kafka-users"]["condition"] == "service_completed_successfully"


def test_env_example_lists_every_required_setting(compose_files):
    required = {
        var for path, _ in compose_files for var, op, _ in interpolations(path.read_text()) if op in (":?", "?")
    }
    example = REPO / "deploy" / "env.example"
    listed = {}
    for line in example.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            listed[key.strip()] = value.strip()
    assert required <= set(listed), f"missing from env.example: {sorted(required - set(listed))}"
    assert not any(listed[v] for v in required), "env.example must not carry real values"


def test_dependencies_start_in_order_and_are_healthchecked(services):
    for name, (_, svc) in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            if spec["condition"] == "service_healthy":
                assert services[dep][1].get("healthcheck"), f"{name} waits for {dep}, which has no healthcheck"
    for name in RUNTIMES:
        deps = services[name][1]["depends_on"]
        for infra in ("kafka", "postgres"):
            assert deps[infra]["condition"] == "service_healthy", f"{name} must wait for {infra}"
        if name != "identity":
            assert deps["identity"]["condition"] == "service_healthy", name
    gateway_deps = services["gateway"][1]["depends_on"]
    for upstream in GATEWAY_UPSTREAMS.values():
        assert gateway_deps[upstream]["condition"] == "service_healthy"


def test_services_are_configured_for_production(services):
    identity_port = services["identity"][1]["environment"]["HTTP_PORT"]
    for name, port in PLATFORM_PORTS.items():
        env = services[name][1]["environment"]
        assert env["ENVIRONMENT"] == "production", name
        assert env["HTTP_PORT"] == str(port), name
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318", name
        assert env["IDENTITY_URL"] == f"http://identity:{identity_port}", name
        if name in API_CLIENTS:
            assert "DATABASE_URL" not in env and "KAFKA_BOOTSTRAP_SERVERS" not in env, name  # no secret it needs not
            assert urlsplit(env["GATEWAY_URL"]).hostname == "gateway", name
            continue
        for server in env["KAFKA_BOOTSTRAP_SERVERS"].split(","):
            assert server.split(":")[0] in services, f"{name}: unknown broker host {server}"
        assert services[name][1].get("read_only") is True, f"{name}: writable root filesystem"


def test_gateway_forwards_to_each_service_on_its_port(services):
    env = services["gateway"][1]["environment"]
    for var, upstream in GATEWAY_UPSTREAMS.items():
        url = urlsplit(env[var])
        assert url.hostname == upstream, var
        assert str(url.port) == services[upstream][1]["environment"]["HTTP_PORT"], var


def test_identity_and_charger_gateway_get_their_settings(services, compose_files):
    identity = services["identity"][1]
    env = identity["environment"]
    for key in ("SMTP_URL", "ADMIN_EMAIL", "ADMIN_PASSWORD"):
        assert env.get(key), key
    # The signing key arrives as a compose secret, mounted at /run/secrets/<name>.
    mounted = {s if isinstance(s, str) else s.get("target", s["source"]) for s in identity["secrets"]}
    assert env["JWT_PRIVATE_KEY_FILE"] in {f"/run/secrets/{m}" for m in mounted} | mounted
    declared = {name for _, doc in compose_files for name in doc.get("secrets", {})}
    assert {s if isinstance(s, str) else s["source"] for s in identity["secrets"]} <= declared
    charger = services["charger-gateway"][1]["environment"]
    for key in ("KAZAM_URL", "KAZAM_TOKEN", "KAZAM_POLL_SECONDS"):
        assert charger.get(key), key


def test_infrastructure_images_are_pinned(services):
    images = {name: services[name][1]["image"] for name in ("kafka", "postgres", "otel-collector")}
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", images["kafka"]), images["kafka"]
    assert re.fullmatch(r"postgres:16\.\d+(-\w+)?", images["postgres"]), images["postgres"]
    assert re.fullmatch(r"otel/opentelemetry-collector-contrib:\d+\.\d+\.\d+", images["otel-collector"])


def test_kafka_runs_in_kraft_mode_on_a_single_node(services):
    env = services["kafka"][1]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@localhost:")
    assert "SASL_SSL://kafka:9093" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert not any("zookeeper" in name for name in services)
    # Named volumes survive `docker compose down`; a fixed cluster id keeps them usable.
    assert any(v.endswith(":/var/lib/kafka/data") for v in services["kafka"][1]["volumes"])
    assert env.get("CLUSTER_ID")


def test_otel_collector_receives_otlp_http_and_exports(services, compose_files):
    collector_path, collector = services["otel-collector"]
    doc = next(doc for path, doc in compose_files if path == collector_path)
    (mount,) = collector["configs"]
    config_file = (collector_path.parent / doc["configs"][mount["source"]]["file"]).resolve()
    assert config_file == REPO / "deploy" / "otel-collector.yaml"
    assert mount["target"] == "/etc/otelcol-contrib/config.yaml"  # where the contrib image reads it

    config = yaml.safe_load(config_file.read_text())
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == "0.0.0.0:4318"
    assert "debug" in config["exporters"]
    pipelines = config["service"]["pipelines"]
    assert "debug" in pipelines["traces"]["exporters"]
    for pipeline in pipelines.values():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in config[kind], f"pipeline uses undefined {kind[:-1]} {component}"
    for extension in config["service"].get("extensions", []):
        assert extension in config["extensions"]
