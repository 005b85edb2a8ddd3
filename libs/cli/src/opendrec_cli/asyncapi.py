"""The AsyncAPI 3 document of OpenDREC's events, generated from libs/contracts and the services' code.

- Channels: every topic of the contracts' registry (and its `.dlq`), its key, its message: the envelope with the
  event's payload schema (the models' own JSON Schemas, as `python -m opendrec_contracts.schemas` exports them).
- Operations: who sends and who receives each. Producers are the services whose code builds the event
  (`DeviceRegistered(...)`); consumers are the services that subscribe (`runtime.on(DeviceRegistered, ...)`,
  `runtime.follow_organizations()`), in consumer group `<service>.<topic>` (after KAFKA_GROUP_PREFIX). Every
  process of the kit's runtime and the gateway follow `token.revoked` (`RevocationFollower`: no group, each
  process reads it all).

The gateway serves the committed document at /asyncapi (services/gateway/src/opendrec_gateway/asyncapi.json);
`opendrec asyncapi --check` (and a test) fails when the contracts or the services changed without it, `--write`
rewrites it.
"""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path
from typing import Any

from opendrec_contracts import EVENTS, dlq_topic, topic_of
from opendrec_contracts.schemas import envelope_schema

REPO = Path(__file__).resolve().parents[4]
DOCUMENT = REPO / "services/gateway/src/opendrec_gateway/asyncapi.json"
# The kit's RevocationFollower: every ServiceRuntime process and the gateway read token.revoked, without a group.
EVERYONE_FOLLOWS = {"token.revoked"}
FOLLOWERS = {"ServiceRuntime", "RevocationFollower"}

_CLASS_OF = {model.__name__: model for model in EVENTS.values()}


def service_sources(repo: Path = REPO) -> dict[str, list[Path]]:
    """service name -> its source files (not its tests)."""
    out: dict[str, list[Path]] = {}
    for src in sorted((repo / "services").glob("*/src")):
        out[src.parent.name] = sorted(src.rglob("*.py"))
    return out


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def scan(repo: Path = REPO) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(event type -> producing services, event type -> consuming services), read from the services' code."""
    producers: dict[str, set[str]] = {t: set() for t in EVENTS}
    consumers: dict[str, set[str]] = {t: set() for t in EVENTS}
    for service, files in service_sources(repo).items():
        for path in files:
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call):
                    continue
                called = _name(node.func)
                if isinstance(node.func, ast.Attribute) and node.func.attr in ("model_construct", "model_validate"):
                    called = _name(node.func.value)  # ReadIngested.model_construct(...) builds one too
                if called in FOLLOWERS:
                    for event_type in EVERYONE_FOLLOWS:
                        consumers[event_type].add(service)
                elif called in _CLASS_OF:
                    producers[_CLASS_OF[called].TYPE].add(service)
                elif called == "on" and node.args and (_name(node.args[0]) or "") in _CLASS_OF:
                    consumers[_CLASS_OF[_name(node.args[0]) or ""].TYPE].add(service)
                elif called == "follow_organizations":
                    consumers["organization.registered"].add(service)
    return producers, consumers


def _hoist(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """The schema with its `$defs` moved into components/schemas (refs rewritten); a name two events define
    differently gets the event's name in front."""
    schema = copy.deepcopy(schema)
    defs = schema.pop("$defs", {})
    renames = {}
    for name, definition in defs.items():
        target = name if schemas.get(name, definition) == definition else f"{schema['title']}{name}"
        renames[name] = target
    text = json.dumps(schema)
    for name, target in renames.items():
        text = text.replace(f'"#/$defs/{name}"', f'"#/components/schemas/{target}"')
    for name, definition in defs.items():
        body = json.dumps(definition)
        for other, target in renames.items():
            body = body.replace(f'"#/$defs/{other}"', f'"#/components/schemas/{target}"')
        schemas[renames[name]] = json.loads(body)
    return json.loads(text)


def document(repo: Path = REPO) -> dict[str, Any]:
    producers, consumers = scan(repo)
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    envelope = envelope_schema()
    for event_type, model in sorted(EVENTS.items()):
        name = model.__name__
        topic = topic_of(event_type)
        payload = model.model_json_schema(mode="validation")
        schemas[name] = _hoist(payload, schemas)
        wire = copy.deepcopy(envelope)
        wire["title"] = f"{name}Envelope"
        wire["properties"]["type"] = {"const": event_type, "type": "string"}
        wire["properties"]["version"] = {"const": model.VERSION, "type": "integer"}
        wire["properties"]["payload"] = {"$ref": f"#/components/schemas/{name}"}
        messages[name] = {
            "name": event_type,
            "title": name,
            "summary": (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else event_type,
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "properties": {
                    "traceparent": {"type": "string", "description": "W3C trace context of the cause"},
                    "content-type": {"type": "string", "const": "application/json"},
                },
            },
            "payload": wire,
            "bindings": {
                "kafka": {
                    "key": {
                        "type": "string",
                        "description": f"the event's {model.KEY}: one key, one partition, in order",
                    },
                    "bindingVersion": "0.5.0",
                }
            },
            "x-version": model.VERSION,
            "x-key": model.KEY,
        }
        ref = {"$ref": f"#/channels/{topic}"}
        message_ref = {"$ref": f"#/channels/{topic}/messages/{name}"}
        channels[topic] = {
            "address": topic,
            "title": topic,
            "description": f"{name} events, keyed by {model.KEY}. Producers: {', '.join(sorted(producers[event_type])) or 'none'};"
            f" consumers: {', '.join(sorted(consumers[event_type])) or 'none'}.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "x-key": model.KEY,
            "x-producers": sorted(producers[event_type]),
            "x-consumers": sorted(consumers[event_type]),
        }
        dlq = dlq_topic(topic)
        channels[dlq] = {
            "address": dlq,
            "title": dlq,
            "description": f"{topic} messages a consumer set aside after bounded retries, with the error in headers"
            " (x-error-type, x-error-message, x-original-topic/partition/offset, x-attempts); replayed with"
            " `opendrec dlq replay`.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "x-key": model.KEY,
        }
        for service in sorted(producers[event_type]):
            operations[f"{service}.send.{topic}"] = {
                "action": "send",
                "channel": ref,
                "messages": [message_ref],
                "summary": f"{service} publishes {event_type} through its transactional outbox",
                "x-service": service,
            }
        for service in sorted(consumers[event_type]):
            group = None if event_type in EVERYONE_FOLLOWS else f"{service}.{topic}"
            operation: dict[str, Any] = {
                "action": "receive",
                "channel": ref,
                "messages": [message_ref],
                "summary": f"{service} handles {event_type}"
                + (f" once per event (inbox), in consumer group {group}" if group else " (every process, no group)"),
                "x-service": service,
            }
            if group:
                operation["bindings"] = {
                    "kafka": {"groupId": {"type": "string", "const": group}, "bindingVersion": "0.5.0"}
                }
            operations[f"{service}.receive.{topic}"] = operation
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "OpenDREC events",
            "version": "0.1.0",
            "description": "Every Kafka topic of OpenDREC: its key, its envelope and payload schema, who publishes and"
            " who consumes it. Generated from libs/contracts and the services' subscriptions (`opendrec asyncapi`).",
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "kafka:9092",
                "protocol": "kafka",
                "description": "KAFKA_BOOTSTRAP_SERVERS of the deployment",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def check(path: Path = DOCUMENT, repo: Path = REPO) -> bool:
    """True when the committed document is what the contracts and services make now."""
    return path.exists() and path.read_text() == render(document(repo))


def write(path: Path = DOCUMENT, repo: Path = REPO) -> Path:
    path.write_text(render(document(repo)))
    return path
