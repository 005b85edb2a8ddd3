"""How `make test` shares the suite among its pytest-xdist workers (conftest.py): a file's tests on one worker, the
suites that start platforms (PLATFORM_SUITES) all on one worker, a test marked e2e outside them refused."""

import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Two quick files of PLATFORM_SUITES (neither starts a platform) and one outside them: three files for three workers,
# which pytest-xdist's own loadfile would give one each.
PLATFORM_FILES = ["tests/chaos/test_plan.py", "tests/operations/test_asyncapi.py"]
OTHER_FILES = ["tests/deploy/test_resources.py"]


def _pytest(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def test_a_file_stays_on_one_worker_and_the_platform_suites_share_one():
    run = _pytest("-n", "3", "--dist", "loadfile", "--no-loadscope-reorder", "-v", *PLATFORM_FILES, *OTHER_FILES)
    assert run.returncode == 0, run.stdout[-3000:]
    workers: dict[str, set[str]] = defaultdict(set)
    for worker, nodeid in re.findall(r"^\[(gw\d+)\] \[\s*\d+%\] PASSED (\S+)", run.stdout, re.M):
        workers[nodeid.split("::")[0]].add(worker)
    assert set(workers) == {*PLATFORM_FILES, *OTHER_FILES}, run.stdout[-3000:]
    assert all(len(w) == 1 for w in workers.values()), dict(workers)  # each file on one worker
    assert workers[PLATFORM_FILES[0]] == workers[PLATFORM_FILES[1]], dict(workers)  # the platform suites on one


def test_a_test_marked_e2e_outside_the_platform_suites_is_refused(tmp_path):
    # a file under the repository (its conftest.py applies), outside PLATFORM_SUITES, removed after
    stray = ROOT / "tests" / "architecture" / f"test_stray_e2e_{tmp_path.name}.py"
    stray.write_text("import pytest\n\n\n@pytest.mark.e2e\ndef test_x():\n    pass\n")
    try:
        run = _pytest("--collect-only", "-q", str(stray.relative_to(ROOT)))
    finally:
        stray.unlink()
    assert run.returncode != 0
    assert "is marked e2e: add it to PLATFORM_SUITES" in run.stdout + run.stderr, run.stdout[-2000:]
