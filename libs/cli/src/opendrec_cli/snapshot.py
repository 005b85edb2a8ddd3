"""A picture of the dashboard from live metrics, without Grafana: `opendrec snapshot --out dashboard.svg`.

Scrapes every service's /metrics (and the gateway's) every `interval` seconds for `seconds`, then draws, a row per
service, the dashboard's main panels as Grafana computes them from the same families: requests per second, p95
latency (histogram_quantile over the window's bucket increases), consumer lag and outbox backlog. SVG, written
here (no plotting library, nothing fetched).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from html import escape

import httpx
from prometheus_client.parser import text_string_to_metric_families

DURATION = "http_server_request_duration_seconds"
Samples = list[tuple[str, dict[str, str], float]]


@dataclass(frozen=True)
class Scrape:
    at: float  # seconds since the first scrape
    samples: dict[str, Samples]  # service -> its samples (empty: did not answer)


def parse(text: str) -> Samples:
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def total(samples: Samples, name: str) -> float:
    return sum(v for n, _, v in samples if n == name)


def buckets(samples: Samples) -> dict[float, float]:
    out: dict[float, float] = {}
    for name, labels, value in samples:
        if name == f"{DURATION}_bucket":
            le = float(labels["le"])
            out[le] = out.get(le, 0.0) + value
    return out


def quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile over the bucket increases between two scrapes (linear within a bucket)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = bound, cumulative
    return lower


Panel = tuple[str, str, Callable[[Scrape, Scrape], float | None]]  # title, unit, value between two scrapes


def panels(service: str) -> list[Panel]:
    def rate(a: Scrape, b: Scrape) -> float | None:
        if not a.samples[service] or not b.samples[service] or b.at <= a.at:
            return None
        return (total(b.samples[service], f"{DURATION}_count") - total(a.samples[service], f"{DURATION}_count")) / (
            b.at - a.at
        )

    def p95(a: Scrape, b: Scrape) -> float | None:
        value = quantile(0.95, buckets(a.samples[service]), buckets(b.samples[service]))
        return None if value is None else value * 1000

    def gauge(name: str) -> Callable[[Scrape, Scrape], float | None]:
        return lambda _a, b: total(b.samples[service], name) if b.samples[service] else None

    return [
        ("requests", "req/s", rate),
        ("latency p95", "ms", p95),
        ("consumer lag", "messages", gauge("messaging_kafka_consumer_lag")),
        ("outbox backlog", "events", gauge("opendrec_outbox_backlog")),
    ]


async def scrape(
    urls: dict[str, str], seconds: float, interval: float, tick: Callable[[], None] | None = None
) -> list[Scrape]:
    """Every `interval` s for `seconds`: each service's samples (an unreachable one: none)."""
    scrapes: list[Scrape] = []
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=5) as client:

        async def one(url: str) -> Samples:
            try:
                r = await client.get(url)
                return parse(r.text) if r.status_code == 200 else []
            except httpx.HTTPError:
                return []

        while True:
            at = time.monotonic() - started
            found = await asyncio.gather(*(one(u) for u in urls.values()))
            scrapes.append(Scrape(at, dict(zip(urls, found, strict=True))))
            if tick:
                tick()
            if at >= seconds:
                return scrapes
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started - at)))


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def render(scrapes: Sequence[Scrape], services: Iterable[str], title: str = "OpenDREC") -> str:
    """The SVG: a row per service, four panels each."""
    services = list(services)
    w, h, pad, head = 300, 120, 12, 40
    width, height = 4 * w + 2 * pad + 140, head + len(services) * (h + pad) + pad
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="Inter, Helvetica, Arial, sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="#111217"/>',
        f'<text x="{pad}" y="26" fill="#ccccdc" font-size="18">{escape(title)} — last {scrapes[-1].at:.0f} s, '
        f"{len(scrapes)} scrapes</text>",
    ]
    for row, service in enumerate(services):
        y0 = head + row * (h + pad)
        out.append(f'<text x="{pad}" y="{y0 + h / 2}" fill="#ccccdc" font-size="14">{escape(service)}</text>')
        for col, (name, unit, value) in enumerate(panels(service)):
            x0 = pad + 140 + col * w
            points = [(b.at, value(a, b)) for a, b in itertools.pairwise(scrapes)]
            known = [(t, v) for t, v in points if v is not None]
            out.append(f'<rect x="{x0}" y="{y0}" width="{w - 8}" height="{h}" rx="3" fill="#181b1f" stroke="#2c3235"/>')
            latest = _fmt(known[-1][1]) if known else "no data"
            out.append(
                f'<text x="{x0 + 8}" y="{y0 + 16}" fill="#ccccdc">{escape(name)} '
                f'<tspan fill="#8e8e8e">({escape(unit)})</tspan></text>'
                f'<text x="{x0 + w - 16}" y="{y0 + 16}" fill="#73bf69" text-anchor="end">{escape(latest)}</text>'
            )
            if len(known) >= 1:
                top = max(v for _, v in known) or 1.0
                t0, t1 = scrapes[0].at, scrapes[-1].at or 1.0
                px = [
                    (x0 + 8 + (t - t0) / ((t1 - t0) or 1.0) * (w - 24), y0 + h - 10 - v / top * (h - 36))
                    for t, v in known
                ]
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y in px)
                out.append(f'<polyline points="{path}" fill="none" stroke="#73bf69" stroke-width="1.5"/>')
                out.append(
                    f'<text x="{x0 + 8}" y="{y0 + 30}" fill="#6e6e6e" font-size="10">max {escape(_fmt(top))}</text>'
                )
    out.append("</svg>")
    return "\n".join(out) + "\n"
