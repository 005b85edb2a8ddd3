"""reservation.created gained an optional expiry; reservation.updated carries a reservation's changed terms."""

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from opendrec_contracts import Envelope, ReservationCreated, ReservationUpdated, envelope_for, parse_event

START, END = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC)


def _created(**kw) -> ReservationCreated:
    fields = {
        "reservation_id": 7,
        "reservation_uid": uuid.uuid4(),
        "name": "r",
        "buyer_organization_id": 3,
        "device_ids": [1],
        "reservation_start": START,
        "reservation_end": END,
        "frequency": "hourly",
    }
    return ReservationCreated(**(fields | kw))


def test_a_reservation_created_without_expiry_still_reads_as_before():
    wire = envelope_for(_created(), producer="reservations").model_dump(mode="json")
    del wire["payload"]["reservation_expiry"]  # as a producer before the field sent it
    assert parse_event(Envelope.model_validate(wire)).reservation_expiry is None
    later = datetime(2025, 4, 1, tzinfo=UTC)
    assert parse_event(envelope_for(_created(reservation_expiry=later), producer="r")).reservation_expiry == later


def test_reservation_updated_round_trips_and_counts_revisions_from_one():
    event = ReservationUpdated(
        reservation_id=7,
        reservation_uid=uuid.uuid4(),
        revision=2,
        name="renamed",
        buyer_organization_id=3,
        device_ids=[1, 2],
        reservation_start=START,
        reservation_end=END,
        target_capacity_wh=5_000_000,
        authority_to_exceed=False,
        reservation_expiry=END,
    )
    assert event.key() == "7" and event.TYPE == "reservation.updated"
    assert parse_event(envelope_for(event, producer="reservations")) == event
    with pytest.raises(ValidationError):
        ReservationUpdated.model_validate({**event.model_dump(), "revision": 0})
