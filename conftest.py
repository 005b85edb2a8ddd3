"""Repo-wide test setup. The Postgres/broker/platform fixtures come from libs/devstack's pytest plugin."""

from typing import Any

import pytest
import pytest_asyncio

from opendrec_kit.testing import drop_test_databases

# The suites that start platforms (every service as a process, a broker): run on one worker, one after the other
# (several platforms at once on two cores starve each other). A file that starts one must be listed here (the
# collection refuses a test marked e2e outside them).
PLATFORM_SUITES = (
    "tests/authz/",
    "tests/browser/",
    "tests/chaos/",
    "tests/e2e/",
    "tests/fuzz/",
    "tests/operations/",
    "tests/postman/",
    "libs/devstack/tests/test_plugin.py",
)
PLATFORM_FIXTURES = ("ops_platform", "platform")  # a whole platform for the session


@pytest_asyncio.fixture(scope="session", autouse=True, loop_scope="session")
async def _drop_test_databases(postgres_url):
    # Depends on postgres_url so the server outlives this teardown.
    yield
    await drop_test_databases()


def _file(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


@pytest.hookimpl(trylast=True)  # after pytest's own reordering (by fixtures), which would undo it
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The suites that start platforms go first: they are the longest unit of work of `make test`'s workers (below),
    and one handed out last would run alone at the end. Among them, those starting platforms of their own go before
    those of a session platform (PLATFORM_FIXTURES), which then idle for the least time."""
    rank: dict[str, int] = {}  # a file's place: 0 a platform of its own, 1 the session's ops_platform, 2 platform
    for item in items:
        file = _file(item.nodeid)
        if not file.startswith(PLATFORM_SUITES):
            if item.get_closest_marker("e2e") is not None:
                raise pytest.UsageError(f"{file} is marked e2e: add it to PLATFORM_SUITES (conftest.py)")
            continue
        uses = [i for i, f in enumerate(PLATFORM_FIXTURES, 1) if f in item.fixturenames]
        rank[file] = max(rank.get(file, 0), *uses, 0)
    items.sort(key=lambda item: rank.get(_file(item.nodeid), 3))  # stable: a file's order is kept


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`make test` runs on several workers (pytest-xdist, `--dist loadfile`): a file's tests run on one worker (its
    module fixtures are set up once), and PLATFORM_SUITES' files all on one worker, in order (pytest-xdist's own
    `loadgroup` does not work with pytest 9: it renames a test's node id, which pytest 9 no longer reads)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = _file(nodeid)
            return "platforms" if file.startswith(PLATFORM_SUITES) else file

    return Scheduling(config, log)
