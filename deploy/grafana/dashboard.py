"""Writes deploy/grafana/dashboards/opendrec.json: the OpenDREC dashboard, a row per service.

    python deploy/grafana/dashboard.py           rewrite the JSON (tests/deploy fail when it is stale)

Each service's row: request rate by status class, errors (5xx share), p95 latency (the kit's
http.server.request.duration), consumer lag, outbox backlog and its oldest row's age, events handled and dead
letters; then the service's own families (reads accepted/refused, certificates and Wh, jobs, Kazam polls). The
gateway's row: its requests, errors and latency by route. Prometheus job = service name (deploy/prometheus).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "dashboards" / "opendrec.json"
SERVICES = ["identity", "devices", "readings", "reservations", "certificates", "charger-gateway"]
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
WIDTH, HEIGHT = 6, 7  # four panels a line (Grafana's grid is 24 wide)

# What each service's own families add to its row: (title, unit, [(expression, legend)]).
Panel = tuple[str, str, list[tuple[str, str]]]
OWN: dict[str, list[Panel]] = {
    "readings": [
        (
            "reads accepted / refused",
            "short",
            [
                (
                    'sum by (outcome) (rate(opendrec_readings_reads_total{job="readings"}[$__rate_interval]))',
                    "{{outcome}}",
                ),
                (
                    'sum by (reason) (rate(opendrec_readings_reads_total{job="readings",outcome="refused"}[$__rate_interval]))',
                    "refused: {{reason}}",
                ),
            ],
        ),
        (
            "Wh accepted",
            "short",
            [('sum(rate(opendrec_readings_watt_hours_total{job="readings"}[$__rate_interval]))', "Wh/s")],
        ),
        ("read imports", "short", [('sum by (status) (opendrec_bulk_jobs{job="readings"})', "{{status}}")]),
    ],
    "certificates": [
        (
            "certificates issued",
            "short",
            [('sum(rate(opendrec_certificates_issued_total{job="certificates"}[$__rate_interval]))', "per s")],
        ),
        (
            "Wh certified",
            "short",
            [('sum(rate(opendrec_certificates_watt_hours_total{job="certificates"}[$__rate_interval]))', "Wh/s")],
        ),
    ],
    "devices": [
        ("bulk jobs", "short", [('sum by (status) (opendrec_bulk_jobs{job="devices"})', "{{status}}")]),
        ("bulk rows", "short", [('sum(rate(opendrec_bulk_rows_total{job="devices"}[$__rate_interval]))', "rows/s")]),
    ],
    "charger-gateway": [
        (
            "Kazam polls",
            "short",
            [
                (
                    'sum by (outcome) (rate(opendrec_charger_polls_total{job="charger-gateway"}[$__rate_interval]))',
                    "{{outcome}}",
                )
            ],
        ),
        (
            "charger transactions / errors",
            "short",
            [
                (
                    'sum by (outcome) (rate(opendrec_charger_transactions_total{job="charger-gateway"}[$__rate_interval]))',
                    "{{outcome}}",
                ),
                (
                    'sum by (error_type) (rate(opendrec_charger_errors_total{job="charger-gateway"}[$__rate_interval]))',
                    "{{error_type}}",
                ),
            ],
        ),
    ],
}


def http_panels(job: str, by: str) -> list[Panel]:
    d = "http_server_request_duration_seconds"
    return [
        (
            "requests by status",
            "reqps",
            [
                (
                    f'sum by (http_response_status_code) (rate({d}_count{{job="{job}"}}[$__rate_interval]))',
                    "{{http_response_status_code}}",
                )
            ],
        ),
        (
            "errors (5xx share)",
            "percentunit",
            [
                (
                    f'sum(rate({d}_count{{job="{job}",http_response_status_code=~"5.."}}[$__rate_interval])) / sum(rate({d}_count{{job="{job}"}}[$__rate_interval]))',
                    "5xx",
                )
            ],
        ),
        (
            "latency p95",
            "s",
            [
                (
                    f'histogram_quantile(0.95, sum by (le, {by}) (rate({d}_bucket{{job="{job}"}}[$__rate_interval])))',
                    f"{{{{{by}}}}}",
                )
            ],
        ),
    ]


def event_panels(job: str) -> list[Panel]:
    return [
        (
            "consumer lag",
            "short",
            [
                (
                    f'sum by (messaging_consumer_group_name) (messaging_kafka_consumer_lag{{job="{job}"}})',
                    "{{messaging_consumer_group_name}}",
                )
            ],
        ),
        (
            "outbox backlog",
            "short",
            [
                (f'sum(opendrec_outbox_backlog{{job="{job}"}})', "waiting"),
                (f'max(opendrec_outbox_oldest_age_seconds{{job="{job}"}})', "oldest (s)"),
                (f'sum(rate(opendrec_outbox_published_total{{job="{job}"}}[$__rate_interval]))', "published/s"),
            ],
        ),
        (
            "events handled / dead letters",
            "short",
            [
                (
                    f'sum by (outcome) (rate(opendrec_consumer_messages_total{{job="{job}"}}[$__rate_interval]))',
                    "{{outcome}}",
                )
            ],
        ),
        (
            "handler latency p95",
            "s",
            [
                (
                    f'histogram_quantile(0.95, sum by (le, opendrec_event_type) (rate(messaging_process_duration_seconds_bucket{{job="{job}"}}[$__rate_interval])))',
                    "{{opendrec_event_type}}",
                )
            ],
        ),
        (
            "database pool",
            "short",
            [
                (
                    f'sum by (db_client_connection_state) (db_client_connection_count{{job="{job}"}})',
                    "{{db_client_connection_state}}",
                ),
                (f'sum(db_client_connection_pending_requests{{job="{job}"}})', "waiting"),
            ],
        ),
    ]


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y, next_id = 0, 1
    rows = [("gateway", http_panels("gateway", "http_route"))]
    rows += [(s, http_panels(s, "http_route") + event_panels(s) + OWN.get(s, [])) for s in SERVICES]
    for service, row in rows:
        panels.append(
            {
                "type": "row",
                "title": service,
                "id": next_id,
                "collapsed": False,
                "panels": [],
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            }
        )
        next_id, y = next_id + 1, y + 1
        for i, (title, unit, queries) in enumerate(row):
            panels.append(
                {
                    "type": "timeseries",
                    "title": f"{service}: {title}",
                    "id": next_id,
                    "datasource": DATASOURCE,
                    "gridPos": {"h": HEIGHT, "w": WIDTH, "x": (i % 4) * WIDTH, "y": y + (i // 4) * HEIGHT},
                    "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                    "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
                    "targets": [
                        {"refId": chr(ord("A") + n), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
                        for n, (expr, legend) in enumerate(queries)
                    ],
                }
            )
            next_id += 1
        y += ((len(row) + 3) // 4) * HEIGHT
    return {
        "uid": "opendrec",
        "title": "OpenDREC",
        "description": "A row per service: rate, errors, latency, lag, backlog (generated by deploy/grafana/dashboard.py)",
        "tags": ["opendrec"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render())
    print(f"wrote {OUT}")
