"""`python -m opendrec_devstack run`: the whole platform on one machine (`make run`).

Order of events:
1. stop helpers a killed earlier run left behind (pid files in <state>/pids);
2. the embedded parts, each unless its env var points elsewhere: Postgres (DATABASE_URL) with
   data in <state>/pg, Tansu (KAFKA_BOOTSTRAP_SERVERS), the SMTP sink (SMTP_URL) writing
   <state>/mail, the Kazam simulator (KAZAM_URL, with KAZAM_TOKEN) keeping <state>/kazam.json;
3. <state>/keys/jwt-ed25519.pem is created once (Ed25519, PKCS#8 PEM) for identity;
4. every service of the table in services.py, supervised by honcho; when all answer
   GET /readyz with 200, one line `OpenDREC ready at <gateway url>` is printed and
   <state>/stack.json gets `"ready": true`;
5. Ctrl-C / SIGTERM / SIGHUP (or any service exiting) stops the services (honcho: SIGTERM, SIGKILL
   after 5 s), then the simulator, the sink, the broker and Postgres, in that order. With
   OPENDREC_DEVSTACK_RESTART=1 (the fault-injection suite, tests/chaos) a service that exits is started
   again instead, with the same command and environment.

<state>/stack.json describes the running stack (URLs, ports, dirs, dev credentials).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import psutil
from honcho.manager import Manager
from honcho.printer import Message, Printer

from . import services as svc_table
from .broker import start_broker
from .net import free_port, port_is_free
from .postgres import service_databases, start_postgres, stop_postgres
from .procs import kill_recorded, record_pid, start_helper
from .services import GATEWAY, SERVICES, ServiceSpec
from .smtp_sink import smtp_ready

HOST = "127.0.0.1"
DEFAULT_ADMIN_EMAIL = "admin@opendrec.local"
DEFAULT_ADMIN_PASSWORD = "dev-only-Admin123"  # dev only; override with ADMIN_PASSWORD
DEFAULT_KAZAM_TOKEN = "dev-only-kazam-token"  # dev only; override with KAZAM_TOKEN
KAFKA_SESSION_TIMEOUT_MS = "2000"
KAFKA_HEARTBEAT_INTERVAL_MS = "500"
# Tansu creates a topic any client asks metadata of (it has no switch to turn that off) with 4 partitions. After it
# restarts empty, a consumer, a lag reader or a producer may ask before a service re-creates its topics: with another
# count the services' views of a topic disagreed and events went to a partition the topic does not have, which Tansu
# acknowledged and lost (issue 13, the fault-injection suite). The services create theirs with the same count.
TANSU_AUTO_CREATE_PARTITIONS = "4"
KAZAM_POLL_SECONDS = "2"
READY_LINE = "OpenDREC ready at {url}"
STACK_FILE = "stack.json"
RESTART_ENV = "OPENDREC_DEVSTACK_RESTART"  # "1": a service that exits is started again, the stack runs on


@dataclass
class StackConfig:
    state_dir: Path = Path(".run")
    services: Sequence[ServiceSpec] = SERVICES
    environment: str = "dev"
    free_ports: bool = False  # every port (services and embedded parts) picked free: for tests
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @property
    def restart_services(self) -> bool:
        return self.env.get(RESTART_ENV) == "1"


@dataclass
class Infra:
    """Where the platform's dependencies are, embedded or given."""

    database_url: str
    kafka_bootstrap: str
    smtp_url: str
    kazam_url: str
    kazam_token: str
    mail_dir: str | None  # None when SMTP_URL points at another server
    # Each service's own DATABASE_URL (its role, rights on its own database only) on the embedded Postgres; empty
    # with a DATABASE_URL given (its roles are the operator's: deploy/postgres/roles.sql), where all use that one.
    service_database_urls: dict[str, str] = field(default_factory=dict)


def ensure_jwt_key(path: Path) -> Path:
    """Create the identity signing key once (kept across runs so issued tokens stay valid)."""
    if path.exists():
        return path
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.replace(tmp, path)
    return path


def service_ports(services: Sequence[ServiceSpec], free: bool) -> dict[str, int]:
    return {s.name: (free_port() if free else s.port) for s in services}


def service_env(
    spec: ServiceSpec,
    *,
    base: Mapping[str, str],
    ports: Mapping[str, int],
    services: Sequence[ServiceSpec],
    infra: Infra,
    state_dir: Path,
    environment: str,
) -> dict[str, str]:
    """The environment one service process gets (the conventions of the platform brief)."""
    env = dict(base)
    env.pop("DATABASE_URL", None)
    if spec.database:  # its own role where there is one (least privilege); none for the gateway and the console
        env["DATABASE_URL"] = infra.service_database_urls.get(spec.name, infra.database_url)
    env.update(
        ENVIRONMENT=environment,
        KAFKA_BOOTSTRAP_SERVERS=infra.kafka_bootstrap,
        KAFKA_SESSION_TIMEOUT_MS=base.get("KAFKA_SESSION_TIMEOUT_MS", KAFKA_SESSION_TIMEOUT_MS),
        KAFKA_HEARTBEAT_INTERVAL_MS=base.get("KAFKA_HEARTBEAT_INTERVAL_MS", KAFKA_HEARTBEAT_INTERVAL_MS),
        KAFKA_TOPIC_PARTITIONS=base.get("KAFKA_TOPIC_PARTITIONS", TANSU_AUTO_CREATE_PARTITIONS),
        HTTP_HOST=HOST,
        HTTP_PORT=str(ports[spec.name]),
        TRACES_FILE=str(state_dir / "traces" / f"{spec.name}.jsonl"),
        SMTP_URL=infra.smtp_url,
        ADMIN_EMAIL=base.get("ADMIN_EMAIL", DEFAULT_ADMIN_EMAIL),
        ADMIN_PASSWORD=base.get("ADMIN_PASSWORD", DEFAULT_ADMIN_PASSWORD),
        JWT_PRIVATE_KEY_FILE=str(state_dir / "keys" / "jwt-ed25519.pem"),
        KAZAM_URL=infra.kazam_url,
        KAZAM_TOKEN=infra.kazam_token,
        KAZAM_POLL_SECONDS=base.get("KAZAM_POLL_SECONDS", KAZAM_POLL_SECONDS),
        PYTHONUNBUFFERED="1",  # logs reach honcho line by line
    )
    for other in services:
        env[other.url_env] = f"http://{HOST}:{ports[other.name]}"
    return env


class _StackPrinter(Printer):
    """honcho's printer, plus messages without a process name printed as they are
    (the single unprefixed ready line)."""

    def write(self, message):
        if message.type == "line" and message.name is None:
            print(message.data, file=self.output, flush=True)
        else:
            super().write(message)


class _Manager(Manager):
    """honcho Manager that starts the readiness watcher once the processes are forked
    (a thread alive during fork is best avoided). With `restart`, a service that exits is started again
    (a fault-injection run kills services with -9) rather than stopping the others."""

    def __init__(self, on_started, restart: bool = False, **kwargs):
        super().__init__(**kwargs)
        self._on_started = on_started
        self._restart = restart

    def _start(self):
        super()._start()
        self._on_started()

    def _any_stopped(self):
        # honcho's loop asks this after each event; "any stopped" makes it stop every process
        if not self._restart or self._terminating:
            return super()._any_stopped()
        for name, proc in self._processes.items():
            if proc.get("returncode") is not None:
                self._start_again(name, proc)
        return False

    def _start_again(self, name: str, proc: dict) -> None:
        self._system_print(f"{name} exited (rc={proc['returncode']}), starting it again\n")
        del proc["returncode"]
        # the old pid stays until the new process's "start" event replaces it: honcho's checks need one, and
        # signalling a gone process group is harmless (ESRCH is ignored)
        proc["process"].join(timeout=1)  # its output relay sent "stop" as its last act
        proc["process"] = multiprocessing.Process(name=name, target=proc["obj"].run, args=(self.events, True))
        proc["process"].start()
        self.returncode = None  # the stack's exit code is that of a stop, not of a restarted service


def _watch(manager: Manager, urls: Mapping[str, str], gateway_url: str, state: Path, stop: threading.Event) -> None:
    """Runs beside honcho's loop: records the service processes' pids (so that a later run can
    clean up if this one is killed -9) and polls every service's /readyz. Readiness is announced
    once, through honcho's event queue, so the line never interleaves with service output."""
    pid_dir = state / "pids"
    helpers = {json.loads(p.read_text())["pid"] for p in pid_dir.glob("*.json")}
    services: set[int] = set()
    pending = dict(urls)
    started = time.monotonic()
    warned = False
    with httpx.Client(timeout=2.0) as client:
        while (pending or len(services) < len(urls)) and not stop.is_set():
            _record_service_pids(pid_dir, helpers, services)
            for name, url in list(pending.items()):
                try:
                    if client.get(url + "/readyz").status_code == 200:
                        del pending[name]
                        if not pending:
                            info = json.loads((state / STACK_FILE).read_text())
                            _write_json(state / STACK_FILE, {**info, "ready": True})
                            _emit(manager, READY_LINE.format(url=gateway_url), None)
                except httpx.HTTPError:
                    pass
            if pending and not warned and time.monotonic() - started > 60:
                warned = True
                _emit(manager, f"still waiting for /readyz of: {', '.join(sorted(pending))}", "system")
            stop.wait(0.2)


def _record_service_pids(pid_dir: Path, helpers: set[int], services: set[int]) -> None:
    # honcho starts each service as the leader of its own session (pgid == pid)
    for child in psutil.Process().children(recursive=True):
        try:
            if child.pid not in helpers and child.pid not in services and os.getpgid(child.pid) == child.pid:
                record_pid(pid_dir, f"service-{child.pid}", child)
                services.add(child.pid)
        except (ProcessLookupError, psutil.Error):
            pass


def _emit(manager: Manager, text: str, name: str | None) -> None:
    manager.events.put(Message(type="line", data=text, time=datetime.now(), name=name, colour=None))


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _say(text: str) -> None:
    print(f"devstack | {text}", flush=True)


def _raise_interrupt(signum, frame):
    # until honcho's loop takes over the signals, SIGTERM means the same as Ctrl-C
    raise KeyboardInterrupt


def _ignore_while_stopping(signum, frame):
    if signum == signal.SIGHUP:
        _detach_output()
    else:
        _say("stopping, please wait")


def _detach_output() -> None:
    # the terminal is gone: further output would fail with EIO halfway through stopping
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)


def _hangup_handler(main_pid: int):
    """Closing the terminal stops the stack like SIGTERM does. honcho's forked output relays
    inherit this handler and must survive (they ignore INT/TERM for the same reason)."""

    def on_hangup(signum, frame):
        if os.getpid() != main_pid:
            return
        _detach_output()
        os.kill(main_pid, signal.SIGTERM)

    return on_hangup


def _start_infra(cfg: StackConfig, stack: ExitStack, state: Path) -> Infra:
    env = cfg.env
    python = sys.executable
    logs, pids = state / "logs", state / "pids"

    database_url = env.get("DATABASE_URL")
    service_database_urls: dict[str, str] = {}
    if database_url:
        _say(f"Postgres: using DATABASE_URL {database_url}")
    else:
        pgdata = state / "pg"
        # registered before starting: an interrupt during start must not leave a server behind
        stack.callback(stop_postgres, pgdata)
        pg = start_postgres(pgdata)
        database_url = pg.url
        prefix = env.get("DATABASE_NAME_PREFIX", "opendrec_")
        databases = {s.name: f"{prefix}{s.name.replace('-', '_')}" for s in cfg.services if s.database}
        service_database_urls = service_databases(database_url, databases)
        _say(f"Postgres: {database_url} (data in {pgdata}); each service signs in with a role of its own")

    kafka = env.get("KAFKA_BOOTSTRAP_SERVERS")
    if kafka:
        _say(f"Kafka: using KAFKA_BOOTSTRAP_SERVERS {kafka}")
    else:
        port = free_port() if cfg.free_ports else svc_table.BROKER_PORT
        broker = stack.enter_context(start_broker(port, log_path=logs / "tansu.log", pid_dir=pids))
        kafka = broker.bootstrap
        _say(f"Kafka (Tansu, in memory): {kafka}")

    smtp_url, mail_dir = env.get("SMTP_URL"), None
    if smtp_url:
        _say(f"SMTP: using SMTP_URL {smtp_url}")
    else:
        port = free_port() if cfg.free_ports else svc_table.SMTP_SINK_PORT
        mail_dir = str((state / "mail").resolve())
        stack.enter_context(
            start_helper(
                "smtp-sink",
                [python, "-m", "opendrec_devstack.smtp_sink", "--dir", mail_dir, "--port", str(port)],
                port,
                log_path=logs / "smtp-sink.log",
                pid_dir=pids,
                ready=lambda: smtp_ready(port),
            )
        )
        smtp_url = f"smtp://{HOST}:{port}"
        _say(f"SMTP sink: {smtp_url} (mails in {mail_dir})")

    kazam_url = env.get("KAZAM_URL")
    kazam_token = env.get("KAZAM_TOKEN") or DEFAULT_KAZAM_TOKEN
    if kazam_url:
        _say(f"Kazam: using KAZAM_URL {kazam_url}")
    else:
        port = free_port() if cfg.free_ports else svc_table.KAZAM_SIM_PORT
        kazam_url = f"http://{HOST}:{port}"
        stack.enter_context(
            start_helper(
                "kazam-sim",
                [
                    python,
                    "-m",
                    "opendrec_devstack.kazam_sim",
                    "--port",
                    str(port),
                    "--state",
                    str(state / "kazam.json"),
                ],
                port,
                log_path=logs / "kazam-sim.log",
                pid_dir=pids,
                env={**env, "KAZAM_TOKEN": kazam_token},
                ready=lambda: _http_ok(kazam_url + "/healthz"),
            )
        )
        _say(f"Kazam simulator: {kazam_url} (token {kazam_token})")

    return Infra(database_url, kafka, smtp_url, kazam_url, kazam_token, mail_dir, service_database_urls)


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def run(cfg: StackConfig) -> int:
    """Start everything, block until Ctrl-C/SIGTERM or a service exits, stop everything.
    Returns the exit code (130 after SIGINT, 143 after SIGTERM, else the first service's)."""
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    state = Path(cfg.state_dir).resolve()
    for sub in ("logs", "traces", "keys", "pids"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    stack_file = state / STACK_FILE
    stack_file.unlink(missing_ok=True)
    if not cfg.services:
        raise SystemExit("no services to run")

    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    previous_hup = signal.signal(signal.SIGHUP, _hangup_handler(os.getpid()))
    try:
        with ExitStack() as stack:
            try:
                for name in kill_recorded(state / "pids"):
                    _say(f"stopped {name} left running by an earlier run")
                ports = service_ports(cfg.services, cfg.free_ports)
                busy = [f"{name} ({port})" for name, port in ports.items() if not port_is_free(port)]
                if busy:
                    _say("ports in use, is another stack running? " + ", ".join(busy))
                    return 1
                infra = _start_infra(cfg, stack, state)
                ensure_jwt_key(state / "keys" / "jwt-ed25519.pem")
                return _supervise(cfg, state, stack_file, ports, infra)
            except KeyboardInterrupt:
                return 130
            finally:
                # stopping the embedded parts takes a moment; don't let a second Ctrl-C cut it short
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(sig, _ignore_while_stopping)
                _say("stopping embedded parts")
    finally:
        stack_file.unlink(missing_ok=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGHUP, previous_hup)
        _say("stopped")


def _supervise(cfg: StackConfig, state: Path, stack_file: Path, ports: Mapping[str, int], infra: Infra) -> int:
    urls = {s.name: f"http://{HOST}:{ports[s.name]}" for s in cfg.services}
    gateway_url = urls.get(GATEWAY, next(iter(urls.values())))
    _write_json(
        stack_file,
        {
            "ready": False,
            "pid": os.getpid(),
            "state_dir": str(state),
            "environment": cfg.environment,
            "gateway_url": gateway_url,
            "service_urls": urls,
            "database_url": infra.database_url,
            "database_name_prefix": cfg.env.get("DATABASE_NAME_PREFIX", ""),
            "kafka_bootstrap": infra.kafka_bootstrap,
            "smtp_url": infra.smtp_url,
            "mail_dir": infra.mail_dir,
            "kazam_url": infra.kazam_url,
            "kazam_token": infra.kazam_token,
            "traces_dir": str(state / "traces"),
            "jwt_private_key_file": str(state / "keys" / "jwt-ed25519.pem"),
            "admin_email": cfg.env.get("ADMIN_EMAIL", DEFAULT_ADMIN_EMAIL),
            "admin_password": cfg.env.get("ADMIN_PASSWORD", DEFAULT_ADMIN_PASSWORD),
        },
    )

    stop_watch = threading.Event()
    manager: _Manager

    def start_watcher():
        threading.Thread(
            target=_watch, args=(manager, urls, gateway_url, state, stop_watch), name="readyz-watch", daemon=True
        ).start()

    manager = _Manager(start_watcher, restart=cfg.restart_services, printer=_StackPrinter(sys.stdout))
    for spec in cfg.services:
        env = service_env(
            spec,
            base=cfg.env,
            ports=ports,
            services=cfg.services,
            infra=infra,
            state_dir=state,
            environment=cfg.environment,
        )
        # exec: the shell honcho starts is replaced by the service, so signals reach it directly
        manager.add_process(spec.name, f"exec {shlex.quote(sys.executable)} -m {spec.module}", env=env)
    try:
        manager.loop()  # handles SIGINT/SIGTERM itself: terminates all, returns when all exited
    finally:
        stop_watch.set()
        for path in (state / "pids").glob("service-*.json"):
            path.unlink()
    return manager.returncode if manager.returncode is not None else 1
