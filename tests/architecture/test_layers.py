"""The shape every service keeps (ARCHITECTURE.md, "Layout"), checked over the source tree.

- Transactions and the outbox belong to the kit's unit of work: no service module opens a transaction,
  acquires a pooled connection by hand, or writes the outbox.
- Adapters (routes, consumers, workers, wiring) call the service layer; they run no SQL (no `store`).
- `domain` does no I/O; services never import one another; background loops use the kit's Worker.
- Every lint or type suppression says why.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p for p in (ROOT / "services").iterdir() if (p / "src").is_dir())
DATABASE_SERVICES = [p for p in SERVICES if p.name != "gateway"]
PACKAGES = {p.name: next((p / "src").iterdir()).name for p in SERVICES}


def sources(service: Path) -> list[Path]:
    return sorted((service / "src").rglob("*.py"))


def is_adapter(path: Path) -> bool:
    """Routes, consumers, workers and wiring: the modules that parse and call the service layer."""
    if "services" in path.parent.parts[-1:]:
        return False  # a use-case module of a services package (identity's services/api_users.py)
    name = path.stem
    return (
        path.parent.name == "api"
        or name in {"api", "handlers", "app", "__main__", "worker", "poller"}
        or name.startswith("api_")
        or name.endswith("_api")
    )


def imported_modules(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ("." * node.level) + (node.module or "")
            found.add(base)
            found.update(f"{base}.{alias.name}" if base else alias.name for alias in node.names)
    return found


FORBIDDEN_CALLS = {
    "transaction": "opens a transaction (use the unit of work)",
    "acquire": "acquires a connection by hand (use the unit of work)",
}


@pytest.mark.parametrize("service", DATABASE_SERVICES, ids=lambda p: p.name)
def test_no_service_module_opens_a_transaction_or_writes_the_outbox(service: Path):
    found = []
    for path in sources(service):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                why = FORBIDDEN_CALLS.get(node.func.attr)
                if why and not (node.func.attr == "acquire" and "lock" in ast.unparse(node.func.value).lower()):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node.func)}(): {why}")
        for module in imported_modules(tree):
            if module.split(".")[-1] == "outbox" and module.startswith(("opendrec_kit", ".")):
                found.append(f"{path.relative_to(ROOT)}: imports the outbox (record events on the unit of work)")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("service", DATABASE_SERVICES, ids=lambda p: p.name)
def test_adapters_call_the_service_layer_and_run_no_sql(service: Path):
    found = []
    for path in sources(service):
        if not is_adapter(path):
            continue
        tree = ast.parse(path.read_text(), str(path))
        for module in imported_modules(tree):
            if module in (".store", "..store") or module.endswith(".store"):
                found.append(f"{path.relative_to(ROOT)}: imports store (SQL belongs to use cases)")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("service", SERVICES, ids=lambda p: p.name)
def test_domain_does_no_io_and_services_do_not_import_each_other(service: Path):
    io_modules = ("asyncpg", "aiohttp", "httpx", "aiokafka", "faststream", "fastapi", "starlette", "socket")
    own = PACKAGES[service.name]
    others = {pkg for pkg in PACKAGES.values() if pkg != own}
    found = []
    for path in sources(service):
        tree = ast.parse(path.read_text(), str(path))
        modules = imported_modules(tree)
        for module in modules:
            if module.split(".")[0] in others:
                found.append(f"{path.relative_to(ROOT)}: imports {module} (services share contracts and kit only)")
            if path.stem == "domain" and module.split(".")[0] in io_modules:
                found.append(f"{path.relative_to(ROOT)}: domain imports {module} (rules do no I/O)")
    assert not found, "\n".join(found)


LOOP = re.compile(r"^\s*while True:\s*$", re.MULTILINE)


@pytest.mark.parametrize("service", DATABASE_SERVICES, ids=lambda p: p.name)
def test_background_loops_use_the_kits_worker(service: Path):
    found = []
    for path in sources(service):
        text = path.read_text()
        if "runtime.background(" in text or "rt.background(" in text:
            found.append(f"{path.relative_to(ROOT)}: starts a hand-made background task (use runtime.worker)")
        if LOOP.search(text) and "asyncio.sleep(" in text:
            found.append(f"{path.relative_to(ROOT)}: a `while True` loop with sleeps (use runtime.worker)")
    assert not found, "\n".join(found)


SUPPRESSION = re.compile(r"#\s*(noqa|type:\s*ignore)\b(?P<rest>.*)$")


def test_every_lint_or_type_suppression_says_why():
    found = []
    roots = [ROOT / "libs", ROOT / "services", ROOT / "tests", ROOT / "bench", ROOT / "deploy"]
    for root in roots:
        for path in root.rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                match = SUPPRESSION.search(line)
                if not match:
                    continue
                rest = match.group("rest")
                # "noqa: X - why" or "type: ignore[x]  # why" (written without the leading hash: ruff reads that as a directive)
                reason = re.sub(r"^(:\s*[A-Z0-9, ]+|\[[a-z0-9_, -]+\])", "", rest).strip(" -#")
                if len(reason) < 4:
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "suppressions without a reason:\n" + "\n".join(found)
