"""The API fuzzer (issue 12): Schemathesis over every operation of the gateway's merged OpenAPI document, as
each role: anonymous, a Developer (its organization's OrganizationAdmin), a Buyer, an approved API user holding
every module, and the Admin; positive and negative data (the coverage phase's boundary and invalid values, then
random cases), with a fixed seed and deterministic generation so a run is the same every time.

Every answer must pass fuzzing.CHECKS: no 5xx, documented answers match their schema and media type, and every
error is the platform's envelope. A failure lists each finding with its request and answer.

Budget (the whole file must fit `make test`: about 4 minutes on 2 cores, platform start included):
  - every operation a principal may call (x-access public, or its role in x-roles) gets
    OPENDREC_FUZZ_EXAMPLES random cases per generation mode (positive, negative; default 5) as that principal;
  - the coverage phase (every schema-driven boundary and invalid value of every parameter and body field,
    deterministic; most of the cases, most of the negative data, and one unexpected method: TRACE) runs once
    per operation, as the first principal in ROLES that may call it: validation runs before any role-specific
    rule, so repeating it for each role would only repeat the same 400s;
  - an operation a principal may not call gets one case (the gateway or the route's permission refuses it
    before anything else runs; the authorization matrix, tests/authz, checks each refusal).

The slower variant, more random cases per operation (no per-test time limit):
    OPENDREC_FUZZ_EXAMPLES=100 .venv/bin/python -m pytest tests/fuzz -p no:cacheprovider -o timeout=0
Against a platform already running (e.g. `make run`: OPENDREC_FUZZ_STACK=.run/stack.json; it changes its data):
    OPENDREC_FUZZ_STACK=<state dir>/stack.json .venv/bin/python -m pytest tests/fuzz -p no:cacheprovider

Its own platform, not the session's `platform`: fuzzing as the Admin rewrites what every later test relies on
(ACL modules and role grants, yield configurations, users and organizations), and fuzzing the login refuses
enough wrong passwords from 127.0.0.1 to lock that address out for LOGIN_LOCKOUT_SECONDS (15 minutes), so the
tests after this one (tests/postman) could no longer log in. Nothing here touches the session's platform.

Nothing is left out. Operations that would cut the fuzzer off are fuzzed last, in this order:
  - MEMBERSHIP: who belongs where and with what role or status (each role's own run ends with them: a
    Developer may remove or demote itself, the Admin may deactivate or delete any principal, itself included);
  - SESSION_ENDING: logout and the API user's key rotation revoke the session they are called with: fuzzed
    last of all, as each signed-in role, with that principal's spare session.
PUT /api/user/password needs the current password, which the generated data never has: fuzzed with the rest.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from schemathesis.schemas import APIOperation

from opendrec_devstack.pytest_plugin import databases_with_prefix, docker_available, drop_databases, start_platform

from .fuzzing import Budget, Result, report, run
from .principals import Principal, make_principals

pytestmark = [pytest.mark.e2e]

EXAMPLES = int(os.environ.get("OPENDREC_FUZZ_EXAMPLES", "5"))
WORKERS = int(os.environ.get("OPENDREC_FUZZ_WORKERS", "4"))

# The role each principal holds in x-roles.
X_ROLE = {"Developer": "OrganizationAdmin", "Buyer": "Buyer", "ApiUser": "ApiUser", "Admin": "Admin"}
ROLES = ("anonymous", "Developer", "Buyer", "ApiUser", "Admin")  # in this order: the Admin's run changes most

MEMBERSHIP = {
    "DELETE /api/admin/user/{id}",
    "PUT /api/admin/users/{id}",
    "DELETE /api/admin/organizations/{id}",
    "PATCH /api/admin/organizations/{id}",
    "PUT /api/permission/module/verify/ByAdmin/{apiuserId}",
    "DELETE /api/Organization/user/{id}",
    "PUT /api/Organization/{organizationId}/change-role/{userId}",
    "POST /api/Organization/{organizationId}/remove-member/{userId}",
}
SESSION_ENDING = {"POST /api/auth/logout", "POST /api/user/apiuser/rotate-key"}


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A platform of the fuzzer's own (gateway URL and admin credentials), started like the session's."""
    if given := os.environ.get("OPENDREC_FUZZ_STACK"):
        yield json.loads(Path(given).read_text())
        return
    postgres_url = request.getfixturevalue("postgres_url")
    state_dir = tmp_path_factory.mktemp("fuzz-platform")
    with contextlib.ExitStack() as stack:
        if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or docker_available():
            bootstrap = request.getfixturevalue("kafka_bootstrap")
        else:
            from opendrec_devstack.broker import start_broker

            bootstrap = stack.enter_context(start_broker(log_path=state_dir.parent / "fuzz-tansu.log")).bootstrap
        running = start_platform(state_dir, database_url=postgres_url, kafka_bootstrap=bootstrap)
        try:
            yield {
                "gateway_url": running.gateway_url,
                "admin_email": running.admin_email,
                "admin_password": running.admin_password,
            }
        finally:
            running.stop()
            drop_databases(postgres_url, databases_with_prefix(postgres_url, running.database_name_prefix))


@pytest.fixture(scope="module")
def document(stack: dict[str, Any]) -> dict[str, Any]:
    # Each service builds its document on the first call, which may outlast the gateway's short wait on a busy
    # machine (a 503 naming the service): asked again until a deadline.
    deadline = time.monotonic() + 60
    while True:
        resp = httpx.get(f"{stack['gateway_url']}/openapi.json", timeout=60)
        if resp.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture(scope="module")
def principals(stack: dict[str, Any]) -> dict[str, Principal]:
    return make_principals(stack["gateway_url"], stack["admin_email"], stack["admin_password"])


@pytest.fixture(scope="module")
def results() -> list[Result]:
    return []


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{method.upper()} {path}": operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "put", "post", "delete", "patch")
    }


def may_call(operation: dict[str, Any], role: str) -> bool:
    return operation.get("x-access") == "public" or X_ROLE.get(role) in (operation.get("x-roles") or [])


def coverage_owner(document: dict[str, Any], label: str) -> str | None:
    """The one principal that runs the coverage phase of an operation: the first in ROLES that may call it."""
    operation = operations(document)[label]
    return next((role for role in ROLES if may_call(operation, role)), None)


def fuzz(
    document: dict[str, Any],
    stack: dict[str, Any],
    principal: Principal,
    labels: set[str],
    *,
    spare: bool = False,
    suffix: str = "",
) -> list[Result]:
    """Among `labels`: the coverage phase and random cases where the principal owns the operation's coverage,
    random cases where it may call the operation, one case where it may not."""
    ops = operations(document)
    allowed = {label for label in labels if may_call(ops[label], principal.role)}
    owned = {label for label in allowed if coverage_owner(document, label) == principal.role}
    headers = principal.headers(spare=spare)
    out = []
    for chosen, budget, title in (
        (owned, Budget(EXAMPLES, coverage=True, unexpected_methods=True), "may call (with coverage)"),
        (allowed - owned, Budget(EXAMPLES, coverage=False), "may call"),
        (labels - allowed, Budget(1, coverage=False), "refused"),
    ):
        if chosen:
            label = f"{principal.role}{suffix}, {len(chosen)} operations it {title}"
            out.append(run(document, stack["gateway_url"], label, headers, budget, _among(chosen), WORKERS))
    return out


def _among(labels: set[str]) -> Callable[[APIOperation], bool]:
    return lambda operation: operation.label in labels


def verdict(found: list[Result]) -> None:
    text = report(found)
    print(text)
    problems = [r for r in found if r.findings or r.errors]
    assert not problems, text


def test_the_document_describes_every_operation(document):
    ops = operations(document)
    assert len(ops) >= 100, f"only {len(ops)} operations in the gateway's document"
    unknown = (MEMBERSHIP | SESSION_ENDING) - set(ops)
    assert not unknown, f"ordered operations the document no longer has: {sorted(unknown)}"
    # every operation documents the error answers any request may get (status_code_conformance; an operation may
    # describe one in its own words, e.g. D-REC's 409s)
    undocumented = {
        label: status
        for label, operation in ops.items()
        for status in ("400", "401", "403", "404", "413", "429", "503")
        if status not in operation["responses"]
    }
    assert not undocumented, (
        f"{len(undocumented)} operations leave an error answer out, e.g. {list(undocumented.items())[:5]}"
    )


@pytest.mark.parametrize("role", ROLES)
def test_fuzz_as(role, document, stack, principals, results):
    ops = set(operations(document))
    principal = principals[role]
    found = fuzz(document, stack, principal, ops - MEMBERSHIP - SESSION_ENDING)
    found += fuzz(document, stack, principal, MEMBERSHIP, suffix=" (membership, last)")
    results.extend(found)
    verdict(found)


def test_fuzz_session_ending_operations_last(document, stack, principals, results):
    found = []
    for role in ROLES:
        found += fuzz(document, stack, principals[role], SESSION_ENDING, spare=True, suffix=" (spare session)")
    results.extend(found)
    verdict(found)


def test_every_operation_was_fuzzed(document, results):
    """Nothing left out: every operation of the document was called; the totals (for the issue's note)."""
    by_role: dict[str, int] = {}
    for result in results:
        role = result.label.split(",")[0].split(" (")[0]
        by_role[role] = by_role.get(role, 0) + result.cases
    operations_seen = set().union(*(r.operations for r in results)) if results else set()
    print(f"fuzzed {len(operations_seen)} operations; cases per role: {by_role}")
    assert set(operations(document)) <= operations_seen, sorted(set(operations(document)) - operations_seen)
