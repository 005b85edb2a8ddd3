"""Topic registry: which event goes on which topic, and how old versions are read.

A topic is named after its event type (`<entity>.<past-tense verb>`); poison
messages go to `<topic>.dlq`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import events
from .envelope import Envelope
from .events import Event

EVENTS: dict[str, type[Event]] = {
    model.TYPE: model
    for model in (
        events.OrganizationRegistered,
        events.UserRegistered,
        events.DeviceRegistered,
        events.DeviceUpdated,
        events.DeviceDeleted,
        events.ReadSubmitted,
        events.ReadIngested,
        events.ReadRejected,
        events.ReservationCreated,
        events.ReservationUpdated,
        events.ReservationEnded,
        events.CertificateIssued,
        events.CertificateTransferred,
        events.CertificateRetired,
        events.CertificateLocked,
        events.CertificateReleased,
        events.AccessTokenRevoked,
    )
}

# (type, from_version) -> function turning that version's payload into the next version's.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("read.ingested", 1): events._read_ingested_v1_to_v2,
    ("certificate.issued", 1): events._certificate_issued_v1_to_v2,
}


class UnknownEvent(ValueError):
    pass


def topic_of(event_type: str) -> str:
    return event_type


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


def all_topics() -> list[str]:
    topics = [topic_of(t) for t in EVENTS]
    return topics + [dlq_topic(t) for t in topics]


def envelope_for(event: Event, producer: str) -> Envelope:
    return Envelope(
        type=event.TYPE,
        version=event.VERSION,
        producer=producer,
        payload=event.model_dump(mode="json"),
    )


def parse_event(envelope: Envelope) -> Event:
    """Validate an envelope's payload against its model, upcasting older versions first."""
    model = EVENTS.get(envelope.type)
    if model is None:
        raise UnknownEvent(f"unknown event type {envelope.type!r}")
    if envelope.version > model.VERSION:
        raise UnknownEvent(f"{envelope.type} v{envelope.version} is newer than this consumer knows (v{model.VERSION})")
    payload, version = dict(envelope.payload), envelope.version
    while version < model.VERSION:
        payload = UPCASTERS[(envelope.type, version)](payload)
        version += 1
    return model.model_validate(payload)
