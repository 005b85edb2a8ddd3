"""`opendrec snapshot`'s arithmetic and drawing, on scrapes made here (the command itself runs in test_cli)."""

from opendrec_cli import snapshot

BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, float("inf")]


def exposition(count: int, per_bucket: dict[float, int], lag: int, backlog: int) -> str:
    """A service's /metrics text: `per_bucket` requests that took at most each bound (cumulative as Prometheus)."""
    lines, cumulative = [], 0
    lines.append("# TYPE http_server_request_duration_seconds histogram")
    for bound in BUCKETS:
        cumulative += per_bucket.get(bound, 0)
        le = "+Inf" if bound == float("inf") else repr(bound)
        lines.append(f'http_server_request_duration_seconds_bucket{{http_route="/x",le="{le}"}} {cumulative}')
    lines.append(f'http_server_request_duration_seconds_count{{http_route="/x"}} {count}')
    lines.append(f'http_server_request_duration_seconds_sum{{http_route="/x"}} {count * 0.01}')
    lines.append("# TYPE messaging_kafka_consumer_lag gauge")
    lines.append(f'messaging_kafka_consumer_lag{{messaging_consumer_group_name="g"}} {lag}')
    lines.append("# TYPE opendrec_outbox_backlog gauge")
    lines.append(f"opendrec_outbox_backlog {backlog}")
    return "\n".join(lines) + "\n"


def test_rate_p95_lag_and_backlog_between_two_scrapes():
    a = snapshot.Scrape(0.0, {"readings": snapshot.parse(exposition(0, {}, lag=7, backlog=0))})
    # 100 requests in 10 s: 90 within 5 ms, 10 between 25 and 50 ms
    b = snapshot.Scrape(10.0, {"readings": snapshot.parse(exposition(100, {0.005: 90, 0.05: 10}, lag=3, backlog=2))})
    rate, p95, lag, backlog = (value(a, b) for _, _, value in snapshot.panels("readings"))
    assert rate == 10.0
    # the 95th of 100 is the 5th of the 10 in (25 ms, 50 ms]: halfway, as histogram_quantile interpolates
    assert p95 is not None and abs(p95 - 37.5) < 1e-9
    assert (lag, backlog) == (3, 2)


def test_no_requests_no_latency_and_a_silent_service_has_no_data():
    a = snapshot.Scrape(0.0, {"devices": snapshot.parse(exposition(5, {0.01: 5}, 0, 0)), "gateway": []})
    b = snapshot.Scrape(5.0, {"devices": snapshot.parse(exposition(5, {0.01: 5}, 0, 0)), "gateway": []})
    assert snapshot.panels("devices")[1][2](a, b) is None  # nothing served in the window
    assert all(value(a, b) is None for _, _, value in snapshot.panels("gateway"))


def test_the_picture_has_a_row_per_service_and_a_line_per_panel_with_data():
    scrapes = [
        snapshot.Scrape(float(t), {"readings": snapshot.parse(exposition(10 * t, {0.01: 10 * t}, t, 0)), "gateway": []})
        for t in range(4)
    ]
    svg = snapshot.render(scrapes, ["gateway", "readings"])
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert ">gateway<" in svg and ">readings<" in svg
    assert svg.count("<polyline") == 4  # readings' four panels; the silent gateway draws none
    assert svg.count("no data") == 4
