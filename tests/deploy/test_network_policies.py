"""Least privilege in the Kubernetes shape (issue 12): NetworkPolicies let only the gateway be reached from outside and
each service only from what calls it; only the services reach PostgreSQL, only they and the gateway reach Kafka; each
process has its own database role and Kafka user. Checked without a cluster, against the code's own call graph."""

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
PORTS = {"gateway": 8000, "identity": 8101, "devices": 8102, "readings": 8103, "reservations": 8104,
         "certificates": 8105, "charger-gateway": 8106, "console": 8107}  # fmt: skip
RUNTIMES = ["identity", "devices", "readings", "reservations", "certificates", "charger-gateway"]


def load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def policies() -> dict[str, dict]:
    return {p["metadata"]["name"]: p for p in load(K8S / "network-policies.yaml")}


@pytest.fixture(scope="module")
def deployments() -> dict[str, dict]:
    return {d["metadata"]["name"]: d for path in K8S.glob("*.yaml") for d in load(path) if d["kind"] == "Deployment"}


def callers_in_code() -> dict[str, set[str]]:
    """Who calls whom inside the platform, from the code: the gateway calls every service and the console; a service
    that asks an owner (`owners.ask("devices", ...)`) calls it; every service calls identity (its JWKS, and
    organizations asked on a miss)."""
    callers = {name: {"gateway"} for name in PORTS if name != "gateway"}
    for name in RUNTIMES:
        source = "\n".join(p.read_text() for p in (REPO / "services" / name / "src").rglob("*.py"))
        for owner in re.findall(r"owners\.ask\(\s*\"([a-z-]+)\"", source):
            callers[owner].add(name)
        if name != "identity":
            callers["identity"].add(name)
    return callers


def pods_of(peers: list[dict]) -> set[str]:
    return {
        p["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
        for p in peers
        if "podSelector" in p and "namespaceSelector" not in p
    }


def namespaces_of(peers: list[dict]) -> set[str]:
    return {
        p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in peers if "namespaceSelector" in p
    }


def test_every_policy_matches_the_kubernetes_schema(policies):
    for policy in [*policies.values(), *load(K8S / "data-stores" / "network-policies.yaml")]:
        kubernetes_validate.validate(policy, "1.33.0", strict=True)


def test_kustomize_applies_them():
    assert "network-policies.yaml" in yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]


def test_everything_is_denied_unless_allowed(policies):
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny


def test_only_the_gateway_is_reached_from_outside(policies):
    for name in PORTS:
        for rule in policies[name]["spec"]["ingress"]:
            if "from" not in rule:  # from anywhere
                assert name == "gateway" and rule["ports"] == [{"protocol": "TCP", "port": 8000}]


def test_each_service_is_reached_only_by_what_calls_it(policies):
    expected = callers_in_code()
    assert expected["devices"] >= {"gateway", "readings"} and "certificates" in expected["reservations"]  # sanity
    for name, callers in expected.items():
        rules = policies[name]["spec"]["ingress"]
        from_pods = set().union(*(pods_of(rule.get("from", [])) for rule in rules))
        assert from_pods == callers, name
        for rule in rules:
            assert rule["ports"] == [{"protocol": "TCP", "port": PORTS[name]}], name
            assert namespaces_of(rule["from"]) <= {"monitoring"}, name  # Prometheus scrapes /metrics there


def test_each_pod_calls_only_what_it_needs(policies, deployments):
    expected = callers_in_code()
    for name in PORTS:
        egress = policies[name]["spec"]["egress"]
        called = set().union(*(pods_of(rule["to"]) for rule in egress))
        wanted = {target for target, callers in expected.items() if name in callers}
        if name == "console":  # a client of the public API, through the gateway (GATEWAY_URL)
            wanted.add("gateway")
        assert called == wanted, name
        ports = {p["port"] for rule in egress for p in rule["ports"] if namespaces_of(rule["to"])}
        env = {e["name"] for e in deployments[name]["spec"]["template"]["spec"]["containers"][0].get("env", [])}
        assert (5432 in ports) == ("DATABASE_URL" in env), f"{name}: PostgreSQL only with a database"
        assert (9093 in ports) == ("KAFKA_SASL_USERNAME" in env), f"{name}: Kafka only with a Kafka user"
    assert "DATABASE_URL" not in {
        e["name"] for e in deployments["gateway"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }


def test_each_process_has_its_own_database_role_and_kafka_user(deployments):
    for name, deployment in deployments.items():
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0].get("env", [])}
        for key in ("DATABASE_URL", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
            if key in env:
                assert env[key]["valueFrom"]["secretKeyRef"]["name"] == f"opendrec-{name}", (name, key)
    for name in RUNTIMES:
        assert "DATABASE_URL" in {
            e["name"] for e in deployments[name]["spec"]["template"]["spec"]["containers"][0]["env"]
        }
    config = next(d for d in load(K8S / "configmap.yaml") if d["kind"] == "ConfigMap")["data"]
    assert config["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and config["KAFKA_SASL_MECHANISM"].startswith("SCRAM-")


def test_the_data_stores_admit_exactly_the_pods_marked_for_them(deployments):
    marked = {
        label: {
            name for name, d in deployments.items() if d["spec"]["template"]["metadata"]["labels"].get(label) == "true"
        }
        for label in ("opendrec.io/database", "opendrec.io/kafka")
    }
    env = {
        name: {e["name"] for e in d["spec"]["template"]["spec"]["containers"][0].get("env", [])}
        for name, d in deployments.items()
    }
    assert marked["opendrec.io/database"] == {name for name, keys in env.items() if "DATABASE_URL" in keys}
    assert marked["opendrec.io/kafka"] == {name for name, keys in env.items() if "KAFKA_SASL_USERNAME" in keys}
    stores = {p["metadata"]["namespace"]: p for p in load(K8S / "data-stores" / "network-policies.yaml")}
    postgres, kafka = stores["postgres"]["spec"]["ingress"][0], stores["kafka"]["spec"]["ingress"][0]
    assert postgres["from"][0]["podSelector"]["matchLabels"] == {"opendrec.io/database": "true"}
    assert kafka["from"][0]["podSelector"]["matchLabels"] == {"opendrec.io/kafka": "true"}
    assert postgres["ports"] == [{"protocol": "TCP", "port": 5432}] and kafka["ports"] == [
        {"protocol": "TCP", "port": 9093}
    ]
