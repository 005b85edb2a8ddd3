"""certificate.issued v2 (issue 14): a certificate of a reservation, country and period with a part per device; a v1
event (one device's certificate) is read as one part."""

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from opendrec_contracts import CertificateIssued, CertificatePart, Envelope, parse_event

T0 = datetime(2025, 3, 1, 10, tzinfo=UTC)
T1 = datetime(2025, 3, 1, 11, tzinfo=UTC)


def test_v1_is_upcast_to_one_part():
    payload = {
        "certificate_id": str(uuid.uuid4()),
        "reservation_id": 7,
        "reservation_uid": str(uuid.uuid4()),
        "device_id": 6,
        "buyer_organization_id": 1,
        "owner_organization_id": 2,
        "generation_start": T0.isoformat(),
        "generation_end": T1.isoformat(),
        "energy_wh": 1234,
    }
    event = parse_event(Envelope(type="certificate.issued", version=1, producer="certificates", payload=payload))
    assert isinstance(event, CertificateIssued)
    assert event.parts == [CertificatePart(device_id=6, owner_organization_id=2, energy_wh=1234)]
    assert (event.kind, event.sequence, event.period_start, event.period_end) == ("period", 0, T0, T1)
    assert (event.carry_in_wh, event.carry_out_wh, event.target_reached, event.country_code) == (0, 0, False, None)


def test_the_parts_hold_the_certificates_energy():
    fields = {
        "certificate_id": uuid.uuid4(),
        "reservation_id": 7,
        "reservation_uid": uuid.uuid4(),
        "buyer_organization_id": 1,
        "period_start": T0,
        "period_end": T1,
        "generation_start": T0,
        "generation_end": T1,
        "energy_wh": 3000,
    }
    parts = [CertificatePart(device_id=1, owner_organization_id=2, energy_wh=1000)]
    with pytest.raises(ValidationError, match="add up"):
        CertificateIssued(**fields, parts=parts)
    with pytest.raises(ValidationError):
        CertificateIssued(**fields, parts=[])
    ok = CertificateIssued(
        **fields, parts=[*parts, CertificatePart(device_id=3, owner_organization_id=2, energy_wh=2000)]
    )
    assert CertificateIssued.VERSION == 2 and ok.kind == "period"
