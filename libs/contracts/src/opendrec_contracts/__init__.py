from .envelope import Envelope
from .events import (
    CertificateIssued,
    DeviceRegistered,
    Event,
    MeterRead,
    OrganizationRegistered,
    ReadIngested,
    ReadSubmitted,
    ReservationCreated,
    UserRegistered,
)
from .registry import EVENTS, UnknownEvent, all_topics, dlq_topic, envelope_for, parse_event, topic_of

__all__ = [
    "EVENTS",
    "CertificateIssued",
    "DeviceRegistered",
    "Envelope",
    "Event",
    "MeterRead",
    "OrganizationRegistered",
    "ReadIngested",
    "ReadSubmitted",
    "ReservationCreated",
    "UnknownEvent",
    "UserRegistered",
    "all_topics",
    "dlq_topic",
    "envelope_for",
    "parse_event",
    "topic_of",
]
