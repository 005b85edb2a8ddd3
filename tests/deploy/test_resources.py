"""Kubernetes requests and limits come from measurements (issue 18): deploy/k8s/resources.measured.json, written by
bench/operations/bench_resources.py --write, and its rule; a manifest edited by hand, or a measurement taken without
writing the manifests, fails here."""

import importlib.util
import json
from datetime import datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
MEASURED = json.loads((K8S / "resources.measured.json").read_text())


def bench_resources():
    spec = importlib.util.spec_from_file_location("bench_resources", REPO / "bench/operations/bench_resources.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def deployments() -> dict[str, dict]:
    out = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Deployment":
                out[doc["metadata"]["name"]] = doc
    return out


def test_the_measurement_says_when_where_and_under_what_load():
    assert datetime.fromisoformat(MEASURED["measured_at"]).tzinfo is not None
    assert MEASURED["machine"]["cpus"] >= 1 and MEASURED["machine"]["cpu_model"]
    assert MEASURED["load"]["connections"] >= 1 and MEASURED["load"]["seconds_per_scenario"] > 0
    assert set(MEASURED["scenarios"]) == {"reads", "listing", "login"}


def test_every_deployment_requests_and_limits_what_the_measurement_derives():
    derive = bench_resources().derive
    found = deployments()
    assert set(found) == set(MEASURED["services"]), "a measured figure for every Deployment, and nothing else"
    for name, figures in MEASURED["services"].items():
        (container,) = found[name]["spec"]["template"]["spec"]["containers"]
        assert container["resources"] == derive(figures), f"{name}: run bench/operations/bench_resources.py --write"


def test_the_rule_leaves_headroom_over_the_measured_peak():
    bench = bench_resources()
    for name, figures in MEASURED["services"].items():
        derived = bench.derive(figures)
        assert figures["rss_mib_peak"] <= bench.mebibytes(derived["requests"]["memory"]), name
        assert figures["rss_mib_peak"] <= bench.mebibytes(derived["limits"]["memory"]) / 2, name
        assert figures["cpu_cores_peak"] * 1000 <= int(derived["requests"]["cpu"].removesuffix("m")), name


def test_a_hand_edited_manifest_disagrees(tmp_path):
    bench = bench_resources()
    manifest = tmp_path / "readings.yaml"
    manifest.write_text((K8S / "readings.yaml").read_text())
    wanted = bench.derive(MEASURED["services"]["readings"])
    bench.write_manifest(manifest, {**wanted, "requests": {**wanted["requests"], "cpu": "999m"}})
    (deployment,) = [d for d in yaml.safe_load_all(manifest.read_text()) if d and d["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"] != wanted
