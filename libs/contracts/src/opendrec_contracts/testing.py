"""Example events for tests: one valid event, with the fields a test cares about given."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from .events import DeviceRegistered


def device_registered(device_id: int, **fields: Any) -> DeviceRegistered:
    """A solar device (IND, ES100, TC110) of organization 1, commissioned 2024-01-01 and onboarded 2024-02-01;
    `fields` replace any of these."""
    example: dict[str, Any] = {
        "device_id": device_id,
        "device_uuid": uuid.uuid4(),
        "external_id": f"e{device_id}",
        "organization_id": 1,
        "capacity_kw": 5,
        "country_code": "IND",
        "fuel_code": "ES100",
        "device_type_code": "TC110",
        "commissioning_date": datetime(2024, 1, 1, tzinfo=UTC),
        "onboarded_at": datetime(2024, 2, 1, tzinfo=UTC),
    }
    return DeviceRegistered(**{**example, **fields})
