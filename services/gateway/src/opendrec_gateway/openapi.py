"""One OpenAPI document for the whole public API: the services' own documents, merged.

Each service describes its operations (with x-access / x-permissions / x-roles from the kit);
the gateway serves what it routes. Component schemas that two services name alike but define
differently are renamed with the service's name, and their references follow.
"""

from __future__ import annotations

import re
from typing import Any

from . import routes

_PARAMETER = re.compile(r"\{[^}]+\}")
_REF_PREFIX = "#/components/schemas/"


def _camel(service: str) -> str:
    return "".join(part.capitalize() for part in service.split("-"))


def _rename_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(_REF_PREFIX):
                name = value[len(_REF_PREFIX) :]
                out[key] = _REF_PREFIX + renames.get(name, name)
            else:
                out[key] = _rename_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rename_refs(item, renames) for item in node]
    return node


def merge(documents: dict[str, dict[str, Any]], *, title: str, version: str) -> dict[str, Any]:
    """The public document: every operation the gateway routes to the service that describes it."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for service in sorted(documents):
        document = documents[service]
        own = document.get("components", {}).get("schemas", {})
        renames = {
            name: f"{_camel(service)}{name}"
            for name, schema in own.items()
            if name in schemas and schemas[name] != schema
        }
        document = _rename_refs(document, renames)
        for name, schema in document.get("components", {}).get("schemas", {}).items():
            schemas[renames.get(name, name)] = schema
        for path, operations in document.get("paths", {}).items():
            owner = routes.resolve(_PARAMETER.sub("1", path))
            if owner is None or owner[1] != service:
                continue  # not reachable through the gateway
            for method, operation in operations.items():
                tagged = {**operation, "tags": operation.get("tags") or [service]}
                if operation.get("x-access") == "signed-in":
                    tagged["security"] = [{"bearerAuth": []}]
                paths.setdefault(path, {})[method] = tagged
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "The OpenDREC public API (D-REC compatible). Each operation states who may call it: "
            "x-access (public or signed-in), x-permissions (ACL module and action) and x-roles (roles with the "
            "default grants; an ApiUser once an admin approved its request for the module).",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
