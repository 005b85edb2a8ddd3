"""Schemathesis (the engine behind `schemathesis run`, in process) over the gateway's merged OpenAPI document,
as one principal at a time; what it found, counted and described.

Checks on every answer:
  not_a_server_error            no 5xx, ever
  status_code_conformance       every status answered is documented for the operation (the services document
                                their error answers on every operation: opendrec_kit.errors.ERROR_RESPONSES)
  response_schema_conformance   a documented answer's body matches its documented schema
  content_type_conformance      a documented answer's media type is the documented one
  error_envelope (ours)         every 4xx and 5xx is the platform's error envelope
                                ({statusCode, message, ...} with statusCode the answer's status; the seed's
                                {StatusCode, Message, ...} also on the seed's /public/v2 paths): the one shape
                                every error has, whether or not the operation lists that status
"""

from __future__ import annotations

import ast
import contextlib
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from schemathesis.engine import Status, events, from_schema
from schemathesis.schemas import APIOperation

SEED = 20241212  # fixed: the same cases on every run (with generation.deterministic)

ENVELOPE_STATUSES = range(400, 600)


@schemathesis.check
def error_envelope(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> bool | None:
    """Every 4xx/5xx answer is the platform's error envelope, with its own status inside."""
    if response.status_code not in ENVELOPE_STATUSES:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"{response.status_code} answer is not JSON: {response.content[:200]!r}") from None
    shapes = [("statusCode", "message")]
    if case.path.startswith("/public/v2/"):
        # The seed's envelope where the platform answers a seed endpoint as the seed does (the REC inventory's
        # refusals: {Data, Errors, Meta, StatusCode, Message}); a 405 there still comes in the platform's.
        shapes.append(("StatusCode", "Message"))
    if not isinstance(body, dict) or not any(
        body.get(status) == response.status_code and message in body for status, message in shapes
    ):
        raise AssertionError(f"{response.status_code} answer is not the error envelope: {response.content[:300]!r}")
    return True


CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "response_schema_conformance",
    "content_type_conformance",
    "error_envelope",
)


@dataclass(frozen=True)
class Budget:
    """How much to generate per operation: examples per generation mode in the fuzzing phase, and whether
    the coverage phase (schema-driven boundary and invalid values, deterministic) runs too."""

    examples: int
    coverage: bool = True
    unexpected_methods: bool = False  # the coverage phase also sends a method the path does not have


@dataclass
class Finding:
    check: str
    operation: str
    status: int | None
    request: str
    answer: str
    message: str

    def describe(self) -> str:
        return f"[{self.check}] {self.operation} -> {self.status}\n    {self.request}\n    answer: {self.answer}\n    {self.message}"


@dataclass
class Result:
    label: str
    operations: set[str] = field(default_factory=set)
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    phases: Counter[str] = field(default_factory=Counter)
    findings: dict[tuple[str, str, int | None, str], Finding] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # the engine's own errors (schema it cannot use, ...)
    seconds: float = 0.0

    def summary(self) -> str:
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        statuses += " " + str(dict(self.phases))
        return (
            f"{self.label}: {len(self.operations)} operations, {self.cases} cases in {self.seconds:.0f} s, "
            f"{len(self.findings)} findings, {len(self.errors)} errors ({statuses})"
        )


def config(
    gateway_url: str,
    headers: dict[str, str],
    budget: Budget,
    workers: int,
) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "suppress-health-check": ["all"],
            "base-url": gateway_url,
            "headers": headers,
            "workers": workers,
            "request-timeout": 60,
            "generation": {
                "mode": "all",  # positive and negative data
                "max-examples": budget.examples,
                "deterministic": True,
                "no-shrink": True,  # one failing example is enough to report; shrinking costs requests
                "database": "none",
            },
            "phases": {
                "examples": {"enabled": True},
                "coverage": {
                    "enabled": budget.coverage,
                    # one method each path does not have (the 405 answer is the same for any)
                    "unexpected-methods": ["TRACE"] if budget.unexpected_methods else [],
                },
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "continue-on-failure": True,
        }
    )


_AST_LOCK = threading.Lock()


@contextlib.contextmanager
def one_ast_parse_at_a_time() -> Iterator[None]:
    """CPython 3.11 keeps the AST converter's recursion depth in one global: two threads parsing at once fail
    with "SystemError: AST constructor recursion depth mismatch" (cpython gh-106905, fixed in 3.12 only).
    Hypothesis parses every newly imported local module (for constants) from whichever worker thread is
    generating, so the engine's workers take turns in ast.parse while the fuzzer runs."""
    parse = ast.parse

    def locked(*args: Any, **kwargs: Any) -> Any:
        with _AST_LOCK:
            return parse(*args, **kwargs)

    ast.parse = locked  # the same function, serialized
    try:
        yield
    finally:
        ast.parse = parse


def _short(data: bytes | None, limit: int = 300) -> str:
    if data is None:
        return ""
    text = data.decode(errors="replace")
    return text if len(text) <= limit else text[:limit] + "..."


def run(
    document: dict[str, Any],
    gateway_url: str,
    label: str,
    headers: dict[str, str],
    budget: Budget,
    include: Callable[[APIOperation], bool],
    workers: int = 4,
) -> Result:
    """Fuzz the operations `include` accepts, as the caller `headers` name; never raises on a finding."""
    loaded = schemathesis.openapi.from_dict(document, config=config(gateway_url, headers, budget, workers))
    schema = loaded.include(lambda ctx: include(ctx.operation))
    result = Result(label)
    with one_ast_parse_at_a_time():
        stream = list(from_schema(schema).execute())
    for event in stream:
        if isinstance(event, events.ScenarioFinished):
            _collect(result, event)
        elif isinstance(event, events.NonFatalError):
            result.errors.append(f"{event.label}: {type(event.value).__name__}: {str(event.value)[:500]}")
        elif isinstance(event, events.FatalError):
            raise event.exception
        elif isinstance(event, events.EngineFinished):
            result.seconds = event.running_time
    return result


def _collect(result: Result, event: events.ScenarioFinished) -> None:
    recorder = event.recorder
    if event.status == Status.SKIP or not recorder.cases:
        return
    result.operations.add(recorder.label)
    result.cases += len(recorder.interactions)
    result.phases[event.phase.value] += len(recorder.interactions)
    for each in recorder.interactions.values():
        if each.response is not None:
            result.statuses[each.response.status_code] += 1
    for case_id, checks in recorder.checks.items():
        for check in checks:
            if check.status != Status.FAILURE or check.failure_info is None:
                continue
            failure = check.failure_info.failure
            interaction = recorder.interactions.get(case_id)
            status = interaction.response.status_code if interaction and interaction.response else None
            key = (check.name, recorder.label, status, failure.title)
            if key in result.findings:
                continue
            request = (
                f"{interaction.request.method} {interaction.request.uri} {_short(interaction.request.body)}"
                if interaction
                else check.failure_info.code_sample
            )
            answer = _short(interaction.response.content) if interaction and interaction.response else ""
            result.findings[key] = Finding(
                check.name, recorder.label, status, request, answer, f"{failure.title}: {failure.message[:300]}"
            )


def report(results: Iterable[Result]) -> str:
    lines = []
    for result in results:
        lines.append(result.summary())
        lines += [f"  {f.describe()}" for f in result.findings.values()]
        lines += [f"  engine error: {e}" for e in result.errors]
    return "\n".join(lines)
