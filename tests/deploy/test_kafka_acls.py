"""Kafka ACLs (issue 12, least privilege): each service's user writes only what it produces, reads only what it
follows; the committed script is what the code says (libs/cli/src/opendrec_cli/kafka_acls.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

from opendrec_cli.asyncapi import scan
from opendrec_cli.kafka_acls import acls, script
from opendrec_contracts import EVENTS, topic_of

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "kafka" / "create-acls.sh"


def test_the_committed_acl_script_is_the_one_the_code_makes():
    assert SCRIPT.read_text() == script(), (
        "run: .venv/bin/python -m opendrec_cli.kafka_acls > deploy/kafka/create-acls.sh"
    )


def writers(topic: str) -> set[str]:
    return {user for user, op, kind, name in acls() if kind == "topic" and op == "Write" and name in (topic, "*")}


def test_only_an_events_producer_may_write_its_topic_so_no_service_forges_anothers_events():
    producers, _ = scan()
    for event_type in EVENTS:
        expected = {f"opendrec-{s}" for s in producers[event_type]} | {"opendrec-identity"}  # identity replays
        assert writers(topic_of(event_type)) == expected, event_type
    # the case of the issue: an API user's organization is identity's fact alone
    assert writers("organization.registered") == {"opendrec-identity"}
    assert "opendrec-readings" not in writers("certificate.issued")


def test_each_service_reads_what_it_follows_in_its_own_groups_and_the_gateway_only_revocations():
    _, consumers = scan()
    granted = acls()
    for event_type, services in consumers.items():
        for service in services:
            assert (f"opendrec-{service}", "Read", "topic", topic_of(event_type)) in granted, (service, event_type)
    groups = {(user, name) for user, op, kind, name in granted if kind == "group"}
    assert all(name == user.removeprefix("opendrec-") + "." for user, name in groups)  # its own groups only
    assert [(op, kind, name) for user, op, kind, name in granted if user == "opendrec-gateway"] == [
        ("Read", "topic", "token.revoked")
    ]


def test_the_compose_broker_enforces_them_and_the_users_step_applies_them():
    infra = yaml.safe_load((REPO / "deploy" / "compose" / "infra.yml").read_text())["services"]
    kafka = infra["kafka"]["environment"]
    assert kafka["KAFKA_AUTHORIZER_CLASS_NAME"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false" and kafka["KAFKA_SUPER_USERS"] == "User:ANONYMOUS"
    step = infra["kafka-users"]
    assert "create-acls.sh" in " ".join(step["entrypoint"])
    assert "../kafka/create-acls.sh:/opt/opendrec/create-acls.sh:ro" in step["volumes"]
