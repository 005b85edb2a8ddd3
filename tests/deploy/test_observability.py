"""Prometheus and Grafana for the compose stack and Kubernetes (deploy/prometheus, deploy/grafana), checked without
running them: every service scraped where it serves /metrics, the dashboard current and a row per service."""

import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

from opendrec_devstack.services import SERVICES

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PORTS = {service.name: service.port for service in SERVICES if service.name != "console"}  # the kit's runtimes
GATEWAY_METRICS_PORT = 9464  # METRICS_PORT's default (opendrec_kit.metrics)


def generator():
    spec = importlib.util.spec_from_file_location("dashboard", DEPLOY / "grafana" / "dashboard.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads((DEPLOY / "grafana" / "dashboards" / "opendrec.json").read_text())


def test_prometheus_scrapes_every_service_where_it_serves_metrics():
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    expected = {name: [f"{name}:{port}"] for name, port in PORTS.items() if name != "gateway"}
    expected["gateway"] = [f"gateway:{GATEWAY_METRICS_PORT}"]  # never the public port
    assert jobs == expected
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in config["scrape_configs"])


def test_the_gateway_metrics_port_is_the_kits_default():
    from opendrec_kit.metrics import MetricsSettings

    assert MetricsSettings.model_fields["metrics_port"].default == GATEWAY_METRICS_PORT


def test_kubernetes_scrape_config_follows_the_pod_annotations():
    config = yaml.safe_load((DEPLOY / "prometheus" / "kubernetes.yml").read_text())
    (job,) = config["scrape_configs"]
    relabel = {tuple(r["source_labels"]): r for r in job["relabel_configs"]}
    assert relabel[("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)]["action"] == "keep"
    assert relabel[("__meta_kubernetes_pod_label_app_kubernetes_io_name",)]["target_label"] == "job"


def test_the_committed_dashboard_is_what_the_generator_makes(dashboard):
    assert (DEPLOY / "grafana" / "dashboards" / "opendrec.json").read_text() == generator().render(), (
        "run python deploy/grafana/dashboard.py and commit the JSON"
    )


def test_a_row_per_service_with_rate_errors_latency_lag_and_backlog(dashboard):
    rows: dict[str, list[dict]] = {}
    current = None
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            current = rows.setdefault(panel["title"], [])
        else:
            assert current is not None
            current.append(panel)
    assert set(rows) == set(PORTS)
    for service, panels in rows.items():
        exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
        assert f'job="{service}"' in exprs and "job=" not in exprs.replace(f'job="{service}"', "")
        assert "http_server_request_duration_seconds_count" in exprs  # rate and errors
        assert "http_server_request_duration_seconds_bucket" in exprs  # latency
        if service != "gateway":
            assert "messaging_kafka_consumer_lag" in exprs and "opendrec_outbox_backlog" in exprs
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(t["datasource"]["uid"] == "prometheus" for p in dashboard["panels"] for t in p.get("targets", []))


def test_the_dashboard_queries_only_families_the_platform_exports(dashboard):
    """Every metric a panel asks for is one the kit defines (names as the Prometheus exporter writes them)."""
    kit = (REPO / "libs" / "kit" / "src" / "opendrec_kit" / "metrics.py").read_text()
    names = re.findall(r'"((?:http|messaging|db|opendrec)[._][a-z_.]+)"', kit)  # OpenTelemetry's and Prometheus'
    defined = {name.replace(".", "_") for name in names}
    suffixes = ("_seconds_count", "_seconds_bucket", "_count", "_bucket", "_total", "_seconds", "")
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            for name in re.findall(r"\b((?:http|messaging|db|opendrec)_[a-z_]+)\{", target["expr"]):
                assert any(name.removesuffix(s) in defined for s in suffixes if name.endswith(s)), name


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard():
    datasources = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert (source["uid"], source["type"], source["url"]) == ("prometheus", "prometheus", "http://prometheus:9090")
    providers = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "opendrec.yml").read_text())
    (provider,) = providers["providers"]
    compose = yaml.safe_load((DEPLOY / "compose" / "observability.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = {
        m.split(":")[1]: (DEPLOY / "compose" / m.split(":")[0]).resolve()
        for m in grafana["volumes"]
        if m.startswith("..")
    }
    assert mounts[provider["options"]["path"]] == (DEPLOY / "grafana" / "dashboards").resolve()
    assert mounts["/etc/grafana/provisioning"] == (DEPLOY / "grafana" / "provisioning").resolve()
    prometheus = compose["services"]["prometheus"]
    (config,) = [m for m in prometheus["volumes"] if m.startswith("..")]
    assert (DEPLOY / "compose" / config.split(":")[0]).resolve() == (DEPLOY / "prometheus" / "prometheus.yml").resolve()
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", prometheus["image"])
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", grafana["image"])
    assert "ports" not in prometheus
