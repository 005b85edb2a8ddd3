"""opendrec: the operator's command line.

    opendrec health                          every service's readiness, checks and workers (exit 1 unless all ready)
    opendrec lag [--service S]               consumer lag per service, group and partition
    opendrec outbox                          outbox backlog, oldest age, published and set aside, per service
    opendrec dlq list [--topic T ...]        dead letters (all DLQs, or those of T)
    opendrec dlq show --event-id ID          one dead letter whole: headers and message
    opendrec dlq replay --topic T [--event-id ID ...]   publish dead letters again to their topic
    opendrec jobs [--all] [--limit N]        bulk onboarding and read import jobs (unfinished ones unless --all)
    opendrec reconcile [--device ID ...]     reads accepted vs held by certificates vs certified Wh, per device
                                             (exit 1 if a device has more certified than held: the invariant)
    opendrec asyncapi [--check | --write]    the events' AsyncAPI document (stdout, check or rewrite the committed one)
    opendrec snapshot --out dashboard.svg    the dashboard's main panels drawn from live metrics (--seconds, --interval)

Which platform: --stack FILE (a `make run` stack.json; .run/stack.json when present), else the environment the
services read (GATEWAY_URL, IDENTITY_URL ... CHARGER_GATEWAY_URL, KAFKA_BOOTSTRAP_SERVERS, KAFKA_GROUP_PREFIX,
DATABASE_URL, DATABASE_NAME_PREFIX). --json prints machine-readable JSON on stdout; tables and progress go to the
terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import asyncapi, ops, snapshot
from .target import SERVICES, Target, load

out = Console()
err = Console(stderr=True)


def _json_default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=_json_default, indent=2) + "\n")


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    t = Table(title=title, title_justify="left")
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    out.print(t)


def _bar(description: str) -> Progress:
    return Progress(
        TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True
    )


# -- commands ------------------------------------------------------------------------------------------------


async def cmd_health(target: Target, args: argparse.Namespace) -> int:
    report = await ops.health(target)
    if args.json:
        emit_json(report)
    else:
        rows = []
        for name, s in report["services"].items():
            failing = {k: v for k, v in {**s["checks"], **s["workers"]}.items() if v != "ok"}
            detail = ", ".join(f"{k}: {v}" for k, v in failing.items()) or s.get("error", "")
            rows.append((name, s["status"], s["statusCode"], len(s["workers"]), detail))
        table(f"platform: {report['status']}", ["service", "status", "HTTP", "workers", "not ok"], rows)
    return 0 if report["status"] == "ok" else 1


async def cmd_lag(target: Target, args: argparse.Namespace) -> int:
    with err.status("reading committed and end offsets"):
        rows = await ops.lag(target, args.service)
    if args.json:
        emit_json(rows)
        return 0
    table(
        f"consumer lag: {sum(r['lag'] for r in rows)} messages",
        ["service", "group", "partition", "committed", "end", "lag"],
        [(r["service"], r["group"], r["partition"], r["committed"], r["end"], r["lag"]) for r in rows],
    )
    return 0


async def cmd_outbox(target: Target, args: argparse.Namespace) -> int:
    rows = await ops.outbox(target)
    if args.json:
        emit_json(rows)
        return 0
    table(
        "outbox (as each service's metrics worker last measured it)",
        ["service", "waiting", "oldest age s", "published", "set aside", "error"],
        [
            (
                r["service"],
                r.get("backlog"),
                r.get("oldest_age_s"),
                r.get("published"),
                r.get("set_aside"),
                r.get("error"),
            )
            for r in rows
        ],
    )
    return 0


async def cmd_dlq(target: Target, args: argparse.Namespace) -> int:
    with err.status("reading the dead-letter topics"):
        letters = await ops.dead_letters(target, args.topic)
    if args.event_id:
        wanted = set(args.event_id)
        letters = [d for d in letters if d.event_id in wanted]
    if args.dlq_command == "list":
        if args.json:
            emit_json([d.summary() for d in letters])
        else:
            table(
                f"{len(letters)} dead letter(s)",
                ["dlq", "partition", "offset", "event id", "type", "error", "attempts"],
                [
                    (
                        d.topic,
                        d.partition,
                        d.offset,
                        d.event_id,
                        d.event_type,
                        f"{d.error_type}: {d.error_message}"[:120],
                        d.attempts,
                    )
                    for d in letters
                ],
            )
        return 0
    if args.dlq_command == "show":
        if not args.event_id:
            err.print("show needs --event-id")
            return 2
        shown = [{**d.summary(), "headers": d.headers, "message": d.value.decode(errors="replace")} for d in letters]
        if args.json:
            emit_json(shown)
        else:
            for letter in shown:
                out.print_json(json.dumps(letter, default=_json_default))
        return 0 if shown else 1
    # replay: never every DLQ implicitly (as opendrec_kit.dlq)
    if not args.topic:
        err.print("replay needs --topic (which DLQ); nothing replayed")
        return 2
    replayed = 0
    with _bar("replaying") as bar:
        task = bar.add_task("replay", total=len(letters))
        for start in range(0, len(letters), 100):
            chunk = letters[start : start + 100]
            replayed += await ops.replay(target, chunk)
            bar.advance(task, len(chunk))
    if args.json:
        emit_json({"replayed": replayed, "event_ids": [d.event_id for d in letters]})
    else:
        out.print(f"{replayed} dead letter(s) published again to their topics")
    return 0


async def cmd_jobs(target: Target, args: argparse.Namespace) -> int:
    rows = await ops.jobs(target, unfinished_only=not args.all, limit=args.limit)
    if args.json:
        emit_json(rows)
        return 0
    table(
        f"{len(rows)} job(s)" + ("" if args.all else " queued or running"),
        ["service", "kind", "id", "organization", "status", "done", "accepted", "failed", "created"],
        [
            (
                r["service"],
                r["kind"],
                r["id"],
                r["organization_id"],
                r["status"],
                f"{r['done_rows']}/{r['total_rows']}",
                r["accepted_rows"],
                r["failed_rows"],
                r["created_at"],
            )
            for r in rows
        ],
    )
    return 0


async def cmd_reconcile(target: Target, args: argparse.Namespace) -> int:
    bar = _bar("reconciling devices")
    with bar:
        task = bar.add_task("devices", total=None)

        def progress(total: int) -> Callable[[], None]:
            bar.update(task, total=total)
            return lambda: bar.advance(task)

        rows = await ops.reconcile(target, args.device, progress)
    broken = [r for r in rows if r["verdict"] == "over-certified"]
    if args.json:
        emit_json(rows)
    else:
        table(
            f"{len(rows)} device(s): {sum(r['verdict'] == 'ok' for r in rows)} in sync, "
            f"{sum(r['verdict'] == 'behind' for r in rows)} behind, {len(broken)} over-certified",
            [
                "device",
                "accepted reads",
                "accepted Wh",
                "held reads",
                "held Wh",
                "certified Wh",
                "uncertified Wh",
                "verdict",
            ],
            [
                (
                    r["device_id"],
                    r["accepted_reads"],
                    r["accepted_wh"],
                    r["held_reads"],
                    r["held_wh"],
                    r["certified_wh"],
                    r["uncertified_wh"],
                    r["verdict"],
                )
                for r in rows
            ],
        )
    return 1 if broken else 0


async def cmd_asyncapi(target: Target, args: argparse.Namespace) -> int:
    if args.check:
        if asyncapi.check():
            err.print(f"{asyncapi.DOCUMENT} is current")
            return 0
        err.print(f"{asyncapi.DOCUMENT} is stale: run `opendrec asyncapi --write` and commit it")
        return 1
    if args.write:
        err.print(f"wrote {asyncapi.write()}")
        return 0
    sys.stdout.write(asyncapi.render(asyncapi.document()))
    return 0


async def cmd_snapshot(target: Target, args: argparse.Namespace) -> int:
    urls = {"gateway": args.gateway_metrics or target.gateway_metrics_url()}
    urls |= {name: url.rstrip("/") + "/metrics" for name, url in target.service_urls.items()}
    with _bar("scraping /metrics") as bar:
        task = bar.add_task("scrapes", total=int(args.seconds // args.interval) + 1)
        scrapes = await snapshot.scrape(urls, args.seconds, args.interval, lambda: bar.advance(task))
    Path(args.out).write_text(snapshot.render(scrapes, urls))  # noqa: ASYNC240 - one small file, after the scrapes
    answered = {name: bool(scrapes[-1].samples[name]) for name in urls}
    if args.json:
        emit_json({"out": args.out, "scrapes": len(scrapes), "answered": answered})
    else:
        silent = [name for name, ok in answered.items() if not ok]
        err.print(
            f"wrote {args.out}: {len(scrapes)} scrapes" + (f"; no metrics from {', '.join(silent)}" if silent else "")
        )
    return 0


COMMANDS = {
    "health": cmd_health,
    "lag": cmd_lag,
    "outbox": cmd_outbox,
    "dlq": cmd_dlq,
    "jobs": cmd_jobs,
    "reconcile": cmd_reconcile,
    "asyncapi": cmd_asyncapi,
    "snapshot": cmd_snapshot,
}


def _limit(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError("a whole number from 1 to 10000")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="opendrec", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--stack", help="a stack.json of `make run` (default: .run/stack.json when present)")
    p.add_argument("--group-prefix", help="KAFKA_GROUP_PREFIX of the services (default: from the environment)")
    p.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("health", help="every service's readiness")
    lag = sub.add_parser("lag", help="consumer lag per service, group and partition")
    lag.add_argument("--service", choices=SERVICES)
    sub.add_parser("outbox", help="outbox backlog per service")
    dlq = sub.add_parser("dlq", help="dead letters: list, show, replay")
    dlq.add_argument("dlq_command", choices=["list", "show", "replay"])
    dlq.add_argument("--topic", action="append", help="a DLQ or its topic; repeat for several")
    dlq.add_argument("--event-id", action="append", help="only this event; repeat for several")
    jobs = sub.add_parser("jobs", help="bulk onboarding and read import jobs")
    jobs.add_argument("--all", action="store_true", help="finished ones too")
    jobs.add_argument("--limit", type=_limit, default=50, metavar="1..10000")
    rec = sub.add_parser("reconcile", help="reads accepted vs held vs certified, per device")
    rec.add_argument("--device", type=int, action="append", help="a device id (repeat); default: every device")
    spec = sub.add_parser("asyncapi", help="the events' AsyncAPI document")
    mode = spec.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--write", action="store_true")
    snap = sub.add_parser("snapshot", help="the dashboard's main panels from live metrics, as SVG")
    snap.add_argument("--out", required=True, help="the SVG file to write")
    snap.add_argument("--seconds", type=float, default=60.0, help="how long to watch (default 60)")
    snap.add_argument("--interval", type=float, default=5.0, help="seconds between scrapes (default 5)")
    snap.add_argument("--gateway-metrics", help="the gateway's /metrics URL (default: its host, METRICS_PORT 9464)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    target = load(args.stack, args.group_prefix)
    return asyncio.run(COMMANDS[args.command](target, args))


if __name__ == "__main__":
    sys.exit(main())
