"""python -m opendrec_devstack run [--state-dir .run] [--free-ports] [--environment dev] [--services FILE]

See stack.py for what it starts and in which order."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .services import SERVICES, load_services
from .stack import StackConfig, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m opendrec_devstack")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="start the whole platform; Ctrl-C stops everything")
    p_run.add_argument(
        "--state-dir",
        default=".run",
        type=Path,
        help="folder for Postgres data, mails, traces, keys, logs (default .run)",
    )
    p_run.add_argument(
        "--free-ports",
        action="store_true",
        help="pick free ports for every service and embedded part instead of the dev ports",
    )
    p_run.add_argument(
        "--environment",
        default="dev",
        choices=("dev", "test", "production"),
        help="ENVIRONMENT given to the services (default dev)",
    )
    p_run.add_argument(
        "--services",
        default=os.environ.get("OPENDREC_DEVSTACK_SERVICES") or None,
        type=Path,
        help="JSON list of {name, module, port, url_env} replacing the built-in service table "
        "(default: $OPENDREC_DEVSTACK_SERVICES if set)",
    )
    args = parser.parse_args(argv)
    services = load_services(args.services) if args.services else SERVICES
    return run(
        StackConfig(
            state_dir=args.state_dir, services=services, environment=args.environment, free_ports=args.free_ports
        )
    )


if __name__ == "__main__":
    sys.exit(main())
