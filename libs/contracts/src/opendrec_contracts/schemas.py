"""Exported JSON Schemas and the compatibility check that guards them.

`python -m opendrec_contracts.schemas` writes one file per event version into
schemas/. A committed schema is a promise: a later model may add optional fields,
but may not remove or retype a field or make an optional field required.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .envelope import Envelope
from .events import Event
from .registry import EVENTS

SCHEMA_DIR = Path(__file__).parent / "schemas"


def schema_file(event_type: str, version: int) -> Path:
    return SCHEMA_DIR / f"{event_type}.v{version}.json"


def current_schema(model: type[Event]) -> dict[str, Any]:
    schema = model.model_json_schema(mode="validation")
    schema["$id"] = f"urn:opendrec:event:{model.TYPE}:v{model.VERSION}"
    schema["x-topic"] = model.TYPE
    schema["x-key"] = model.KEY
    return schema


def envelope_schema() -> dict[str, Any]:
    return Envelope.model_json_schema(mode="validation")


def write_all(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for model in EVENTS.values():
        path = directory / schema_file(model.TYPE, model.VERSION).name
        path.write_text(json.dumps(current_schema(model), indent=2, sort_keys=True) + "\n")
        written.append(path)
    env = directory / "envelope.json"
    env.write_text(json.dumps(envelope_schema(), indent=2, sort_keys=True) + "\n")
    written.append(env)
    return written


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[-1]]
    return node


def _types(node: dict[str, Any], defs: dict[str, Any]) -> set[str]:
    node = _resolve(node, defs)
    if "anyOf" in node:
        return set().union(*(_types(n, defs) for n in node["anyOf"]))
    kind = node.get("type", "object" if "properties" in node else "any")
    if "format" in node:
        kind = f"{kind}:{node['format']}"
    if "enum" in node or "const" in node:
        kind = f"{kind}:enum"
    return {kind}


def _variants(node: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    node = _resolve(node, defs)
    if "anyOf" in node:
        return [v for n in node["anyOf"] for v in _variants(n, defs)]
    return [node]


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What in `new` breaks readers or writers of `old`. Empty means compatible."""
    problems: list[str] = []
    _compare(old, new, old.get("$defs", {}), new.get("$defs", {}), "", problems)
    return problems


def _compare(old, new, old_defs, new_defs, path, problems) -> None:
    old, new = _resolve(old, old_defs), _resolve(new, new_defs)
    old_types, new_types = _types(old, old_defs), _types(new, new_defs)
    if old_types != new_types:
        problems.append(f"{path or '<root>'}: type changed from {sorted(old_types)} to {sorted(new_types)}")
        return
    for o, n in zip(_variants(old, old_defs), _variants(new, new_defs), strict=False):
        removed_values = set(map(str, o.get("enum", []))) - set(map(str, n.get("enum", [])))
        if removed_values:
            problems.append(f"{path}: allowed values removed: {sorted(removed_values)}")
        old_props, new_props = o.get("properties", {}), n.get("properties", {})
        old_required, new_required = set(o.get("required", [])), set(n.get("required", []))
        for name, old_field in old_props.items():
            where = f"{path}.{name}" if path else name
            if name not in new_props:
                problems.append(f"{where}: field removed")
                continue
            if name in new_required and name not in old_required:
                problems.append(f"{where}: optional field made required")
            _compare(old_field, new_props[name], old_defs, new_defs, where, problems)
        for name in new_required - set(old_props):
            problems.append(f"{path}.{name}: new required field" if path else f"{name}: new required field")
        if "items" in o and "items" in n:
            _compare(o["items"], n["items"], old_defs, new_defs, f"{path}[]", problems)


def check_committed(directory: Path = SCHEMA_DIR) -> list[str]:
    """Compare every model with its committed schema; report breaks and missing files."""
    problems = []
    for model in EVENTS.values():
        path = directory / schema_file(model.TYPE, model.VERSION).name
        if not path.exists():
            problems.append(
                f"{model.TYPE} v{model.VERSION}: no committed schema at {path.name} (run python -m opendrec_contracts.schemas)"
            )
            continue
        committed = json.loads(path.read_text())
        problems += [f"{model.TYPE} v{model.VERSION}: {p}" for p in breaking_changes(committed, current_schema(model))]
    return problems


if __name__ == "__main__":
    problems = check_committed()
    if "--check" in sys.argv:
        print("\n".join(problems) or "event schemas: compatible with the committed ones")
        sys.exit(1 if problems else 0)
    breaking = [p for p in problems if "no committed schema" not in p]  # a new event is fine to write
    if breaking and "--force" not in sys.argv:
        print("refusing to overwrite schemas with breaking changes (bump VERSION and add an upcaster):")
        print("\n".join(breaking))
        sys.exit(1)
    for p in write_all():
        print(f"wrote {p}")
