"""Kubernetes manifests under deploy/k8s, checked without a cluster.

Each resource is validated (strictly: unknown fields are errors) against the Kubernetes
JSON schemas shipped in the kubernetes-validate package.
"""

import copy
import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from opendrec_devstack.services import SERVICES

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33.0"
# KEDA's ScaledObject, strict, as KEDA documents it (kubernetes-validate knows Kubernetes' own kinds only).
KEDA_SCHEMA = json.loads((Path(__file__).parent / "schemas" / "keda-scaledobject-v1alpha1.json").read_text())
KEDA = jsonschema.Draft202012Validator(KEDA_SCHEMA)
# KEDA's TriggerAuthentication (how its kafka scaler logs in), as strict.
KEDA_AUTH = jsonschema.Draft202012Validator(
    json.loads((Path(__file__).parent / "schemas" / "keda-triggerauthentication-v1alpha1.json").read_text())
)
# The platform's services and the ports they serve HTTP on: devstack's one table of them (its tests pin the
# fixed platform conventions).
PLATFORM_PORTS = {service.name: service.port for service in SERVICES}
# Clients of the public API (no database, no broker): the console.
API_CLIENTS = {"console"}
RUNTIMES = {name: port for name, port in PLATFORM_PORTS.items() if name not in API_CLIENTS}


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.fixture(scope="module")
def resources() -> list[dict]:
    docs = []
    for path in manifest_files():
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def by_kind(resources, kind) -> dict[str, dict]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def test_kustomization_applies_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in manifest_files())


def schema_problems(resource: dict) -> list[str]:
    """What the schema of the resource's kind finds wrong: Kubernetes' own kinds against kubernetes-validate's
    schemas, KEDA's against its ScaledObject schema (tests/deploy/schemas), both strict."""
    where = f"{resource['kind']}/{resource['metadata']['name']}"
    if resource["apiVersion"].startswith("keda.sh/"):
        schema = KEDA_AUTH if resource["kind"] == "TriggerAuthentication" else KEDA
        return [f"{where}: {'.'.join(map(str, e.absolute_path))}: {e.message}" for e in schema.iter_errors(resource)]
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{where}: {'.'.join(map(str, e.path))}: {e.message}"]
    return []


def test_every_resource_matches_the_kubernetes_schema(resources):
    problems = [problem for resource in resources for problem in schema_problems(resource)]
    assert problems == []


def test_the_schema_check_rejects_a_misspelled_field(resources):
    deployment = copy.deepcopy(by_kind(resources, "Deployment")["gateway"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbes"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def container_of(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def test_each_service_has_a_deployment_and_a_service(resources):
    deployments, services = by_kind(resources, "Deployment"), by_kind(resources, "Service")
    assert set(deployments) == set(PLATFORM_PORTS)
    assert set(services) == set(PLATFORM_PORTS)


def test_deployments_probe_readyz_and_healthz_on_the_served_port(resources):
    for name, port in PLATFORM_PORTS.items():
        container = container_of(by_kind(resources, "Deployment")[name])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["http"] == port, name
        assert env_of(container)["HTTP_PORT"]["value"] == str(port), name
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, f"{name} {probe}"
            assert get["port"] in ("http", port), f"{name} {probe}"


def test_deployments_set_requests_and_limits(resources):
    for name in PLATFORM_PORTS:
        resources_ = container_of(by_kind(resources, "Deployment")[name])["resources"]
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources_[bound]), f"{name} {bound}"


def test_services_route_to_their_pods(resources):
    for name, port in PLATFORM_PORTS.items():
        deployment, service = by_kind(resources, "Deployment")[name], by_kind(resources, "Service")[name]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items(), name
        assert service["spec"]["selector"].items() <= pod_labels.items(), name
        (service_port,) = service["spec"]["ports"]
        assert service_port["port"] == port and service_port["targetPort"] in ("http", port), name


def test_shared_settings_come_from_the_config_map_and_point_at_the_services(resources):
    (config,) = by_kind(resources, "ConfigMap").values()
    data = config["data"]
    assert data["ENVIRONMENT"] == "production"
    for key in ("KAFKA_BOOTSTRAP_SERVERS", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        assert data.get(key), key
    urls = {
        "IDENTITY_URL": "identity",
        "DEVICES_URL": "devices",
        "READINGS_URL": "readings",
        "RESERVATIONS_URL": "reservations",
        "CERTIFICATES_URL": "certificates",
        "CHARGER_GATEWAY_URL": "charger-gateway",
    }
    for key, service in urls.items():
        assert data[key] == f"http://{service}:{PLATFORM_PORTS[service]}", key
    for name in PLATFORM_PORTS:
        container = container_of(by_kind(resources, "Deployment")[name])
        refs = [e["configMapRef"]["name"] for e in container.get("envFrom", []) if "configMapRef" in e]
        assert refs == [config["metadata"]["name"]], name


def secret_refs(resources) -> set[tuple[str, str]]:
    """(secret name, key) pairs the Deployments read, from env and from volumes."""
    refs = set()
    for deployment in by_kind(resources, "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        for env in env_of(pod["containers"][0]).values():
            if ref := env.get("valueFrom", {}).get("secretKeyRef"):
                refs.add((ref["name"], ref["key"]))
        for volume in pod.get("volumes", []):
            if secret := volume.get("secret"):
                refs |= {(secret["secretName"], item["key"]) for item in secret["items"]}
    return refs


def test_secrets_are_referenced_never_committed(resources):
    assert by_kind(resources, "Secret") == {}, "secret values must not live in the repository"
    for name in RUNTIMES:
        env = env_of(container_of(by_kind(resources, "Deployment")[name]))
        if name == "gateway":  # it has no database (least privilege)
            assert "DATABASE_URL" not in env
            continue
        assert "secretKeyRef" in env["DATABASE_URL"]["valueFrom"], name
    console = env_of(container_of(by_kind(resources, "Deployment")["console"]))
    assert "DATABASE_URL" not in console and "secretKeyRef" in console["SESSION_KEY"]["valueFrom"]
    assert console["GATEWAY_URL"]["value"] == f"http://gateway:{PLATFORM_PORTS['gateway']}"
    identity = env_of(container_of(by_kind(resources, "Deployment")["identity"]))
    for key in ("ADMIN_PASSWORD", "ADMIN_EMAIL", "SMTP_URL"):
        assert "secretKeyRef" in identity[key]["valueFrom"], key
    assert (
        "secretKeyRef"
        in env_of(container_of(by_kind(resources, "Deployment")["charger-gateway"]))["KAZAM_TOKEN"]["valueFrom"]
    )


def test_the_readme_creates_every_secret_key_the_deployments_read(resources):
    readme = (REPO / "deploy" / "README.md").read_text()
    created = set(re.findall(r"--from-(?:literal|file)=([\w.-]+)=", readme))
    missing = {key for _, key in secret_refs(resources)} - created
    assert not missing, f"deploy/README.md does not create secret keys {sorted(missing)}"


def test_identity_reads_its_signing_key_from_the_mounted_secret(resources):
    deployment = by_kind(resources, "Deployment")["identity"]
    container = container_of(deployment)
    key_file = Path(env_of(container)["JWT_PRIVATE_KEY_FILE"]["value"])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    (volume,) = [name for name, path in mounts.items() if Path(path) == key_file.parent]
    assert key_file.name in {item["path"] for item in volumes[volume]["secret"]["items"]}


def test_pods_run_as_the_image_user_without_privileges(resources):
    dockerfile_user = re.findall(r"^USER\s+(\d+)", (REPO / "Dockerfile").read_text(), re.M)[-1]
    for name in PLATFORM_PORTS:
        pod = by_kind(resources, "Deployment")[name]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert str(pod["securityContext"]["runAsUser"]) == dockerfile_user, name
        container = pod["containers"][0]["securityContext"]
        assert container["allowPrivilegeEscalation"] is False, name
        assert container["readOnlyRootFilesystem"] is True, name


# -- scaling, disruption budgets, metrics (issue 18) -----------------------------------------------------------------

HTTP_BOUND = {"gateway", "identity", "devices", "reservations", "console"}
# the topic whose lag is each event-bound service's load (its consumer group is `<service>.<topic>`)
EVENT_BOUND = {"readings": "read.submitted", "certificates": "read.ingested"}


def test_the_keda_schema_is_a_valid_schema_and_rejects_a_misspelled_field(resources):
    jsonschema.Draft202012Validator.check_schema(KEDA_SCHEMA)
    scaled = copy.deepcopy(by_kind(resources, "ScaledObject")["certificates"])
    scaled["spec"]["maxReplicas"] = scaled["spec"].pop("maxReplicaCount")
    assert schema_problems(scaled)
    scaled = copy.deepcopy(by_kind(resources, "ScaledObject")["certificates"])
    scaled["spec"]["triggers"][0]["metadata"]["lagTreshold"] = "5"
    assert schema_problems(scaled)


def test_http_bound_services_scale_on_cpu(resources):
    hpas = by_kind(resources, "HorizontalPodAutoscaler")
    assert set(hpas) == HTTP_BOUND
    deployments = by_kind(resources, "Deployment")
    for name, hpa in hpas.items():
        spec = hpa["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert name in deployments
        (metric,) = spec["metrics"]
        assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
        assert 2 <= spec["minReplicas"] <= spec["maxReplicas"]
        assert "cpu" in container_of(deployments[name])["resources"]["requests"]  # utilization is of the request


def test_event_bound_services_scale_on_consumer_lag_within_the_partitions(resources):
    from opendrec_cli.asyncapi import scan

    (config,) = by_kind(resources, "ConfigMap").values()
    partitions = int(config["data"]["KAFKA_TOPIC_PARTITIONS"])
    _, consumers = scan()
    scaled = by_kind(resources, "ScaledObject")
    assert set(scaled) == set(EVENT_BOUND)
    for name, topic in EVENT_BOUND.items():
        spec = scaled[name]["spec"]
        assert spec["scaleTargetRef"]["name"] == name and name in by_kind(resources, "Deployment")
        assert spec["maxReplicaCount"] <= partitions  # a consumer beyond the partitions sits idle
        (kafka,) = [t for t in spec["triggers"] if t["type"] == "kafka"]
        meta = kafka["metadata"]
        assert meta["topic"] == topic and name in consumers[topic]  # the service really consumes it
        assert meta["consumerGroup"] == f"{name}.{topic}"  # the kit's group name, no prefix in production
        assert meta["bootstrapServers"] == config["data"]["KAFKA_BOOTSTRAP_SERVERS"]
        assert meta["allowIdleConsumers"] == "false"
    # one autoscaler per Deployment: an HPA and a ScaledObject on one target would fight
    assert not set(by_kind(resources, "HorizontalPodAutoscaler")) & set(scaled)
    assert "charger-gateway" not in set(scaled) | set(by_kind(resources, "HorizontalPodAutoscaler"))


def test_disruption_budgets_keep_a_pod_of_every_replicated_service(resources):
    budgets = by_kind(resources, "PodDisruptionBudget")
    deployments = by_kind(resources, "Deployment")
    replicated = {name for name, d in deployments.items() if d["spec"]["replicas"] >= 2}
    assert set(budgets) == replicated and "charger-gateway" not in budgets
    for name, budget in budgets.items():
        assert budget["spec"]["maxUnavailable"] == 1
        pod_labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_prometheus_scrapes_every_pod_on_its_metrics_port(resources):
    for name, deployment in by_kind(resources, "Deployment").items():
        if name in API_CLIENTS:
            continue  # the console has no /metrics of its own
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
        container = container_of(deployment)
        ports = {p["containerPort"] for p in container["ports"]}
        assert int(annotations["prometheus.io/port"]) in ports, name
    gateway = container_of(by_kind(resources, "Deployment")["gateway"])
    # the gateway's metrics are on their own port, never on the public one
    assert env_of(gateway)["METRICS_PORT"]["value"] == "9464" != env_of(gateway)["HTTP_PORT"]["value"]
