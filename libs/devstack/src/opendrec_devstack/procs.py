"""Stopping the helper processes we start, and cleaning up after a run that was killed.

Every helper runs in its own session (process group == its pid), so a terminal Ctrl-C
reaches only the supervisor, which then stops things in order (services first).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, Self, TypeVar

import psutil

STOP_TIMEOUT_S = 10.0


class Stoppable(Protocol):
    def stop(self) -> object: ...


S = TypeVar("S", bound=Stoppable)


def serve_until_signalled(start: Callable[[], S], banner: Callable[[S], str]) -> None:
    """A helper server in the foreground (`python -m ...`): started with SIGINT/SIGTERM blocked (its threads
    inherit the mask, so this thread alone takes them), `banner(server)` printed, stopped on the first of them."""
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    server = start()
    print(banner(server), flush=True)
    try:
        signal.sigwait(stop_signals)
    finally:
        server.stop()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_process(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> int | None:
    """SIGTERM the process group of `proc`, SIGKILL it if it has not exited after `timeout`."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(5)
    else:
        # the leader is gone, but children it left in its group may not be
        _signal_group(proc.pid, signal.SIGKILL)
    return proc.returncode


def record_pid(pid_dir: str | os.PathLike, name: str, proc: subprocess.Popen | psutil.Process | int) -> Path | None:
    """Remember a started process (pid + start time, so a reused pid is never mistaken for it)."""
    pid_dir = Path(pid_dir)
    pid_dir.mkdir(parents=True, exist_ok=True)
    pid = proc if isinstance(proc, int) else proc.pid
    try:
        created = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None
    path = pid_dir / f"{name}.json"
    path.write_text(json.dumps({"pid": pid, "create_time": created}))
    return path


def kill_recorded(pid_dir: str | os.PathLike) -> list[str]:
    """Stop helpers that a killed earlier run left behind; returns their names."""
    pid_dir = Path(pid_dir)
    killed = []
    for path in sorted(pid_dir.glob("*.json")) if pid_dir.is_dir() else []:
        try:
            rec = json.loads(path.read_text())
            proc = psutil.Process(rec["pid"])
            if abs(proc.create_time() - rec["create_time"]) < 0.01:
                _signal_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(STOP_TIMEOUT_S)
                except psutil.TimeoutExpired:
                    _signal_group(proc.pid, signal.SIGKILL)
                killed.append(path.stem)
        except (psutil.NoSuchProcess, ValueError, KeyError):
            pass
        path.unlink(missing_ok=True)
    return killed


class Helper:
    """A helper process we started (broker, SMTP sink, Kazam simulator)."""

    def __init__(
        self,
        name: str,
        process: subprocess.Popen,
        port: int,
        log_path: Path | None = None,
        pid_file: Path | None = None,
    ):
        self.name = name
        self.process = process
        self.port = port
        self.log_path = log_path
        self.pid_file = pid_file

    def stop(self) -> int | None:
        rc = stop_process(self.process)
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)
        return rc

    def log_tail(self, chars: int = 3000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Helper({self.name!r}, pid={self.process.pid}, port={self.port})"


def start_helper(
    name: str,
    argv: list[str],
    port: int,
    *,
    log_path: str | os.PathLike | None = None,
    pid_dir: str | os.PathLike | None = None,
    env: dict[str, str] | None = None,
    ready=None,
    timeout: float = 30.0,
) -> Helper:
    """Start `argv` in its own session with output to `log_path`; return once it listens on
    127.0.0.1:`port` and `ready()` (if given) returns true. Stops it again on failure."""
    from .net import wait_for_port

    log_path = Path(log_path) if log_path is not None else None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    out = open(log_path, "ab") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115 - the child process owns the log file; closed in finally
    try:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    finally:
        if not isinstance(out, int):  # our log file, not DEVNULL
            out.close()
    pid_file = record_pid(pid_dir, name, proc) if pid_dir is not None else None
    helper = Helper(name, proc, port, log_path, pid_file)
    try:
        deadline = time.monotonic() + timeout
        wait_for_port(port, timeout=timeout, proc=proc)
        while ready is not None and not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} is not ready")
            time.sleep(0.05)
    except BaseException as exc:
        helper.stop()
        if isinstance(exc, Exception):
            raise RuntimeError(f"{name} failed to start: {exc}\n{helper.log_tail()}") from exc
        raise
    return helper
