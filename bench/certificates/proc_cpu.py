"""CPU seconds of processes on this machine, read from /proc (Linux): the certificates benches' one figure that a
shared machine's load changes least. No psutil: it is not a dependency of the workspace."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state is field 3


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of one process (None: gone, or not on this machine)."""
    fields = _stat(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15 of stat)


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its living children (e.g. Postgres: the postmaster and every backend)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])  # ppid: field 4
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(cpu_seconds(p) or 0.0 for p in tree)
