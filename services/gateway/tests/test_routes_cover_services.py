"""The gateway's route table and public list against what the services actually serve.

Every operation in a service's OpenAPI must be routed to that service, and it must be
reachable without a token exactly when the service itself asks for none (x-access, added
by the kit from the route's dependencies).
"""

from __future__ import annotations

import importlib
import json
import re

import pytest

from opendrec_gateway import openapi
from opendrec_gateway.routes import SERVICES, is_public, resolve


def service_openapi(service: str, tmp_path) -> dict:
    module = service.replace("-", "_")
    app = importlib.import_module(f"opendrec_{module}.app")
    settings_cls = importlib.import_module(f"opendrec_{module}.settings").Settings
    overrides = {"jwt_private_key_file": str(tmp_path / "key.pem")} if service == "identity" else {}
    settings = settings_cls(environment="test", **overrides)  # nothing is started: only the routes are read
    return app.build(settings).app.openapi()


def service_operations(service: str, tmp_path) -> list[tuple[str, str, dict]]:
    openapi = service_openapi(service, tmp_path)
    return [(method.upper(), path, op) for path, ops in openapi["paths"].items() for method, op in ops.items()]


def concrete(path: str) -> str:
    """An OpenAPI path template with its parameters filled: /api/device/{id} -> /api/device/1."""
    return re.sub(r"\{[^}]+\}", "1", path)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_operation_is_routed_to_its_service_with_the_same_access(service: str, tmp_path) -> None:
    operations = service_operations(service, tmp_path)
    assert operations, f"{service} serves no operations"
    wrong: list[str] = []
    for method, path, op in operations:
        routed = resolve(concrete(path))
        if routed is None or routed[1] != service:
            wrong.append(f"{method} {path}: routed to {routed[1] if routed else 'nothing'}")
        access = op.get("x-access")
        if access not in ("public", "signed-in"):
            wrong.append(f"{method} {path}: no x-access in OpenAPI")
        elif (access == "public") != is_public(method, concrete(path)):
            wrong.append(
                f"{method} {path}: service says {access}, gateway says {'public' if is_public(method, concrete(path)) else 'signed-in'}"
            )
    assert not wrong, "\n".join(wrong)


def test_the_gateway_document_lists_every_operation_with_its_access_rule(tmp_path) -> None:
    documents = {service: service_openapi(service, tmp_path) for service in SERVICES}
    merged = openapi.merge(documents, title="OpenDREC", version="test")
    expected = {
        (method, path): op
        for doc in documents.values()
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
    }
    listed = {(method, path): op for path, ops in merged["paths"].items() for method, op in ops.items()}
    assert set(listed) == set(expected)
    for key, op in listed.items():
        for field in ("x-access", "x-roles", "x-permissions"):
            assert op.get(field) == expected[key].get(field), (key, field)
        assert ("security" in op) == (op["x-access"] == "signed-in"), key
    # every reference resolves inside the merged document
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(merged)))
    assert refs and refs <= set(merged["components"]["schemas"])


def test_components_named_alike_but_different_are_kept_apart() -> None:
    def doc(path: str, description: str) -> dict:
        return {
            "paths": {path: {"get": {"x-access": "public", "responses": {"200": {"content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Page"}}}}}}}},
            "components": {"schemas": {"Page": {"type": "object", "description": description}}},
        }  # fmt: skip

    merged = openapi.merge(
        {"devices": doc("/api/device/my", "devices"), "readings": doc("/api/meter-reads/x", "reads")},
        title="t",
        version="v",
    )
    schemas = merged["components"]["schemas"]
    assert (schemas["Page"]["description"], schemas["ReadingsPage"]["description"]) == ("devices", "reads")
    ref = merged["paths"]["/api/meter-reads/x"]["get"]["responses"]["200"]["content"]["application/json"]["schema"][
        "$ref"
    ]
    assert ref == "#/components/schemas/ReadingsPage"
