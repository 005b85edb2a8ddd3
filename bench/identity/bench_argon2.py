"""Argon2id password checks: argon2-cffi against libsodium (PyNaCl), at OWASP's settings (issue 16).

    python bench/identity/bench_argon2.py [--rounds 3] [--checks 20] [--threads 1,2,3,4]

For each library and each of OWASP's equal-cost argon2id settings (Password Storage Cheat Sheet: m=47104 KiB t=1,
m=19456 t=2, m=12288 t=3, m=9216 t=4, m=7168 t=5, all p=1) it prints:
- the CPU one check costs (user and system time, ms, and the page faults it takes: libsodium maps its memory
  afresh for every check, argon2-cffi's malloc keeps reusing one block), measured in rounds that interleave the
  variants so that drift on a shared machine hits them all alike;
- checks/s and median latency with 1..N threads checking at once (more threads than cores only adds latency).
Then that every library verifies every other's hashes, and the library defaults' p=4 hashes too.

Exit 1 when a hash of one library does not verify in the other (the switch would lock users out).
The figures decide which library and setting identity uses (services/identity/src/opendrec_identity/passwords.py).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher, Type

try:
    import nacl.pwhash.argon2id as sodium
except ImportError:  # measured only where PyNaCl is installed
    sodium = None

SECRET = "Correct-horse-battery-1"
OWASP = [(47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5)]  # (memory KiB, iterations), p=1

Check = Callable[[], bool]


def cffi_check(memory_kib: int, t: int) -> tuple[str, Check]:
    hasher = PasswordHasher(time_cost=t, memory_cost=memory_kib, parallelism=1, type=Type.ID)
    hashed = hasher.hash(SECRET)
    return hashed, lambda: hasher.verify(hashed, SECRET)


def sodium_check(memory_kib: int, t: int) -> tuple[str, Check]:
    assert sodium is not None
    hashed = sodium.str(SECRET.encode(), opslimit=t, memlimit=memory_kib * 1024)
    return hashed.decode(), lambda: sodium.verify(hashed, SECRET.encode())


def cpu_per_check(check: Check, n: int) -> tuple[float, float, float]:
    """(user ms, system ms, page faults) per check, this thread only."""
    before = resource.getrusage(resource.RUSAGE_THREAD)
    for _ in range(n):
        check()
    after = resource.getrusage(resource.RUSAGE_THREAD)
    return (
        (after.ru_utime - before.ru_utime) * 1000 / n,
        (after.ru_stime - before.ru_stime) * 1000 / n,
        (after.ru_minflt - before.ru_minflt) / n,
    )


def concurrent(check: Check, threads: int, n: int) -> tuple[float, float]:
    """(checks/s, median ms) with `threads` threads checking `n` times in all."""
    latencies: list[float] = []

    def timed() -> None:
        started = time.perf_counter()
        check()
        latencies.append(time.perf_counter() - started)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: check(), range(threads)))  # each thread's first check: its arena, its pages
        latencies.clear()
        started = time.perf_counter()
        list(pool.map(lambda _: timed(), range(n)))
        elapsed = time.perf_counter() - started
    return n / elapsed, statistics.median(latencies) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--checks", type=int, default=20, help="checks per variant per round")
    parser.add_argument("--threads", default="1,2,3,4")
    args = parser.parse_args()
    threads = [int(x) for x in args.threads.split(",")]

    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}", flush=True)
    libraries: dict[str, Callable[[int, int], tuple[str, Check]]] = {"argon2-cffi": cffi_check}
    if sodium is not None:
        libraries["libsodium"] = sodium_check
    else:
        print("PyNaCl is not installed: argon2-cffi only", flush=True)
    variants = {(lib, m, t): make(m, t) for lib, make in libraries.items() for m, t in OWASP}

    cpu: dict[tuple[str, int, int], list[tuple[float, float, float]]] = {key: [] for key in variants}
    for _ in range(args.rounds):
        for key, (_, check) in variants.items():
            check()
            cpu[key].append(cpu_per_check(check, args.checks))
    print("\nCPU per check (median of rounds), one thread:")
    print(f"  {'library':<12} {'m KiB':>6} {'t':>2}  {'user ms':>8} {'sys ms':>7} {'total':>6} {'faults':>7}")
    for (lib, m, t), runs in cpu.items():
        user = statistics.median(r[0] for r in runs)
        system = statistics.median(r[1] for r in runs)
        faults = statistics.median(r[2] for r in runs)
        print(f"  {lib:<12} {m:>6} {t:>2}  {user:8.2f} {system:7.2f} {user + system:6.2f} {faults:7.0f}")

    print("\nThreads checking at once (19456 KiB, t=2 and the cheapest setting of each library above):")
    for lib in libraries:
        for m, t in ((19456, 2), (7168, 5)):
            _, check = variants[(lib, m, t)]
            figures = [concurrent(check, n, args.checks * max(2, n)) for n in threads]
            print(
                f"  {lib:<12} m={m:<6} t={t}  "
                + "  ".join(
                    f"{n} thr: {rate:5.1f}/s p50 {p50:5.1f} ms" for n, (rate, p50) in zip(threads, figures, strict=True)
                )
            )

    ok = True
    print("\nEvery library verifies every other's hashes:")
    defaults = PasswordHasher().hash(SECRET)  # argon2-cffi's defaults, m=65536 t=3 p=4: hashes made before the switch
    for lib in libraries:
        for (other, m, t), (hashed, _) in variants.items():
            if other == lib and hashed != defaults:
                continue
            verified = verify_with(lib, hashed)
            ok &= verified
            if not verified:
                print(f"  FAIL: {lib} does not verify a {other} hash m={m} t={t}")
        verified = verify_with(lib, defaults)
        ok &= verified
        print(f"  {lib}: every other library's hashes {'and ' if verified else 'but NOT '}the p=4 defaults' hash")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def verify_with(lib: str, hashed: str) -> bool:
    if lib == "libsodium":
        assert sodium is not None
        try:
            return bool(sodium.verify(hashed.encode(), SECRET.encode()))
        except Exception:  # noqa: BLE001 - nacl raises InvalidkeyError or RuntimeError: either is "does not verify"
            return False
    try:
        return PasswordHasher().verify(hashed, SECRET)
    except Exception:  # noqa: BLE001 - any refusal is "does not verify"
        return False


if __name__ == "__main__":
    sys.exit(main())
