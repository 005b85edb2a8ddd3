"""The envelope every event travels in.

Trace context does not live here: it travels in Kafka headers (W3C traceparent).
Consumers ignore unknown fields, so producers may add optional fields freely;
a breaking change gets a new version and an upcaster (see registry.py).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    version: int = Field(ge=1)
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    producer: str
    payload: dict[str, Any]
