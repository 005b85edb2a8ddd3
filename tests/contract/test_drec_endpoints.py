"""docs/drec-endpoints.md against the reference D-REC API and against what OpenDREC serves.

The reference's endpoints are the committed list drec_reference_endpoints.txt (extract_drec_endpoints.py writes
it). What OpenDREC serves is read from each service's OpenAPI, built in-process: nothing is started, so these
tests need no database or broker of their own (the repo-wide conftest still starts Postgres for the session;
`--noconftest` skips it).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from opendrec_gateway.routes import SERVICES, resolve

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
TABLE = ROOT / "docs" / "drec-endpoints.md"
REFERENCE = HERE / "drec_reference_endpoints.txt"
REFERENCE_REPO = Path("/work/.mirror/d-rec+drec-origin/repo")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
STATUSES = ("same", "alias", "refused", "missing")

_HEADING = re.compile(r"^## (\S+)\.controller\.ts\s*$")
_ROW = re.compile(r"^\| `([A-Z]+) (/[^`]*)` \| ([^|]*?) \| ([^|]*?) \| (.*) \|\s*$")
_ENDPOINT = re.compile(r"`(" + "|".join(METHODS) + r") (/[^`\s]*)`")
_COUNTS = re.compile(r"(\d+) same, (\d+) alias, (\d+) refused, (\d+) missing \((\d+) endpoints\)")
_PARAMETER = re.compile(r"\{[^}]+\}")


def template(path: str) -> str:
    """A path template with its parameter names dropped: /api/device/{id} -> /api/device/{}."""
    return _PARAMETER.sub("{}", path)


def concrete(path: str) -> str:
    return _PARAMETER.sub("1", path)


@dataclass(frozen=True)
class Row:
    controller: str  # the heading the row stands under
    method: str
    path: str
    status: str  # same | alias | refused | missing
    refusal: int | None  # the status code of a refused row
    service: str
    notes: str

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


def reference() -> list[tuple[str, str, str]]:
    """(method, path, controller) of every reference endpoint, in the reference's order."""
    rows = [line.split("\t") for line in REFERENCE.read_text().splitlines() if line and not line.startswith("#")]
    return [(method, path, controller) for method, path, controller, *_ in rows]


def reference_commit() -> str:
    match = re.search(r"@([0-9a-f]{40})", REFERENCE.read_text())
    assert match, f"{REFERENCE.name} names no reference commit"
    return match.group(1)


def table() -> list[Row]:
    rows: list[Row] = []
    controller = ""
    for number, line in enumerate(TABLE.read_text().splitlines(), 1):
        if heading := _HEADING.match(line):
            controller = heading.group(1)
            continue
        if not line.startswith("| `"):
            continue
        match = _ROW.match(line)
        assert match, f"{TABLE.name}:{number}: not a row | `METHOD /path` | status | service | notes |"
        method, path, status, service, notes = match.groups()
        word, _, code = status.partition(" ")
        assert word in STATUSES, f"{TABLE.name}:{number}: status {status!r} is none of {STATUSES}"
        assert (word == "refused") == code.isdigit(), f"{TABLE.name}:{number}: `refused <status code>` only"
        rows.append(Row(controller, method, path, word, int(code) if code else None, service.strip(), notes))
    return rows


ROWS = table()


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    """(METHOD, template without parameter names) -> (service, OpenAPI operation), for every service."""
    key_dir = tmp_path_factory.mktemp("identity-key")
    operations: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for service in sorted(SERVICES):
        package = f"opendrec_{service.replace('-', '_')}"
        settings_cls = importlib.import_module(f"{package}.settings").Settings
        overrides = {"jwt_private_key_file": str(key_dir / "key.pem")} if service == "identity" else {}
        settings = settings_cls(environment="test", **overrides)  # nothing is started: only the routes are read
        document = importlib.import_module(f"{package}.app").build(settings).app.openapi()
        for path, item in document["paths"].items():
            for method, operation in item.items():
                operations[(method.upper(), template(path))] = (service, operation)
    return operations


def test_every_reference_endpoint_is_listed_once_under_its_controller() -> None:
    expected = {f"{method} {path}": controller for method, path, controller in reference()}
    listed: dict[str, list[str]] = {}
    for row in ROWS:
        listed.setdefault(row.key, []).append(row.controller)
    problems = [f"{key}: not in {TABLE.name} (controller {c})" for key, c in expected.items() if key not in listed]
    problems += [f"{key}: not a reference endpoint" for key in listed if key not in expected]
    problems += [f"{key}: listed {len(cs)} times" for key, cs in listed.items() if len(cs) > 1]
    problems += [
        f"{key}: under {cs[0]}.controller.ts, the reference's is {expected[key]}.controller.ts"
        for key, cs in listed.items()
        if key in expected and cs[0] != expected[key]
    ]
    assert not problems, "\n".join(problems)


def test_the_counts_stated_at_the_top_are_the_tables() -> None:
    match = _COUNTS.search(TABLE.read_text())
    assert match, f"{TABLE.name} states no counts"
    stated = tuple(int(n) for n in match.groups())
    actual = (*(sum(row.status == s for row in ROWS) for s in STATUSES), len(ROWS))
    assert stated == actual, f"stated {stated}, the tables hold {actual} (same, alias, refused, missing, all)"


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.key)
def test_row_says_what_opendrec_serves(row: Row, served) -> None:
    assert row.service in SERVICES, f"{row.key}: unknown service {row.service!r}"
    found = served.get((row.method, template(row.path)))
    if row.status == "missing":
        server = found[0] if found else None
        assert server is None, f"{row.key} is served by {server}: mark it same, alias or refused in {TABLE.name}"
        return
    assert found is not None, f"{row.key}: marked {row.status}, but no service serves it"
    assert found[0] == row.service, f"{row.key}: served by {found[0]}, the table says {row.service}"
    routed = resolve(concrete(row.path))
    assert routed and routed[1] == row.service, f"{row.key}: the gateway routes it to {routed[1] if routed else None}"
    if row.status == "alias":
        own = _ENDPOINT.search(row.notes)
        assert own, f"{row.key}: an alias row names OpenDREC's own `METHOD /path` in its notes"
        method, path = own.groups()
        assert template(path) != template(row.path), f"{row.key}: the alias names the reference path itself"
        also = served.get((method, template(path)))
        assert also and also[0] == row.service, f"{row.key}: {method} {path} is not served by {row.service}"
        routed = resolve(concrete(path))
        assert routed and routed[1] == row.service, f"{method} {path}: the gateway routes it elsewhere"
    if row.status == "refused":
        responses = found[1].get("responses", {})
        assert str(row.refusal) in responses, f"{row.key}: its OpenAPI documents no {row.refusal} answer"
        assert row.notes.strip(), f"{row.key}: a refusal says why"


def _extractor() -> ModuleType:
    spec = importlib.util.spec_from_file_location("extract_drec_endpoints", HERE / "extract_drec_endpoints.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_extractor_reads_decorators_not_comments() -> None:
    extract = _extractor()
    source = extract.strip_comments(
        "@Controller('/thing')\nclass C {\n"
        "  // @Get('/commented')\n  /* @Post('also-commented') */\n"
        "  @Get(':id/items')\n  @UseGuards(AuthGuard('jwt'),\n    RolesGuard)\n  async listItems(@Param('id') id) {}\n"
        "  @Post()\n  create(@Body() body) { return 'http://example.org'; }\n}\n"
    )
    routes = [(m.group(1), m.group(2)) for m in extract._ROUTE.finditer(source)]
    assert routes == [("Get", ":id/items"), ("Post", None)]
    first = next(extract._ROUTE.finditer(source))
    assert extract.handler_after(source, first.end()) == "listItems"
    assert extract.join("/api", "/thing", ":id/items") == "/api/thing/{id}/items"
    assert "http://example.org" in source


def test_the_committed_list_is_what_the_reference_commit_holds() -> None:
    commit = reference_commit()
    if not REFERENCE_REPO.exists():
        pytest.skip(f"the reference repository is not at {REFERENCE_REPO}")
    known = subprocess.run(["git", "-C", str(REFERENCE_REPO), "cat-file", "-e", f"{commit}^{{commit}}"], check=False)
    if known.returncode != 0:
        pytest.skip(f"{REFERENCE_REPO} does not hold {commit}")
    extracted = _extractor().endpoints(str(REFERENCE_REPO), commit)
    committed = [line.split("\t") for line in REFERENCE.read_text().splitlines() if not line.startswith("#")]
    assert [list(row) for row in extracted] == committed
