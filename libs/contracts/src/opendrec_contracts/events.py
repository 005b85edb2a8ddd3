"""One pydantic model per event type: the payload inside the envelope.

Field names are snake_case on the wire; identifiers are the owning service's.
Energy is always in watt-hours (integers), times are timezone-aware UTC.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

OrganizationType = Literal["Developer", "Buyer", "ApiUser"]
ReadType = Literal["History", "Delta", "Aggregate"]
Frequency = Literal["hourly", "daily", "weekly", "monthly", "quarterly"]


class Event(BaseModel):
    """Base of every payload. TYPE/VERSION name it; KEY names the field used as Kafka key."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1
    KEY: ClassVar[str]

    def key(self) -> str:
        return str(getattr(self, self.KEY))


class OrganizationRegistered(Event):
    TYPE = "organization.registered"
    KEY = "organization_id"

    organization_id: int
    name: str
    organization_type: OrganizationType
    api_user_id: str | None = None


class UserRegistered(Event):
    TYPE = "user.registered"
    KEY = "organization_id"

    user_id: int
    organization_id: int
    email: str
    role: str


class DeviceState(Event):
    """A device as other services need to know it."""

    KEY = "device_id"

    device_id: int
    device_uuid: uuid.UUID
    external_id: str
    organization_id: int
    capacity_kw: float
    country_code: str
    fuel_code: str
    device_type_code: str
    commissioning_date: AwareDatetime
    onboarded_at: AwareDatetime  # registration time: Delta reads count from here
    timezone: str | None = None  # IANA name
    yield_value: float | None = None  # kWh per kWp per year, for plausibility checks


class DeviceRegistered(DeviceState):
    TYPE = "device.registered"


class DeviceUpdated(DeviceState):
    """The device after a change: the full current state, so a read model just replaces its row."""

    TYPE = "device.updated"


class DeviceDeleted(Event):
    TYPE = "device.deleted"
    KEY = "device_id"

    device_id: int
    external_id: str
    organization_id: int


class MeterRead(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    start: AwareDatetime | None = None
    end: AwareDatetime
    value_wh: int = Field(ge=0)


class ReadSubmitted(Event):
    """Reads sent by a machine source (charger gateway, bulk import) for the readings service to judge."""

    TYPE = "read.submitted"
    KEY = "device_id"

    submission_id: str  # stable id of the source record: a resubmission is recognised
    device_id: int
    external_id: str
    organization_id: int
    read_type: ReadType
    source: str
    reads: list[MeterRead] = Field(min_length=1)


class ReadIngested(Event):
    """A batch of accepted reads of one device."""

    TYPE = "read.ingested"
    KEY = "device_id"

    batch_id: uuid.UUID
    device_id: int
    external_id: str
    organization_id: int
    read_type: ReadType
    reads: list[MeterRead] = Field(min_length=1)


class ReadRejection(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    index: int | None = None  # position in the submission's reads; None: the submission as a whole
    reason: str


class ReadRejected(Event):
    """A read.submitted that the readings service refused, with every reason."""

    TYPE = "read.rejected"
    KEY = "device_id"

    submission_id: str
    device_id: int
    external_id: str
    organization_id: int
    read_type: ReadType
    source: str
    reasons: list[ReadRejection] = Field(min_length=1)


class ReservationCreated(Event):
    TYPE = "reservation.created"
    KEY = "reservation_id"

    reservation_id: int
    reservation_uid: uuid.UUID
    name: str
    buyer_organization_id: int
    device_ids: list[int] = Field(min_length=1)
    reservation_start: AwareDatetime
    reservation_end: AwareDatetime
    frequency: Frequency
    target_capacity_wh: int | None = None
    authority_to_exceed: bool = True


class ReservationEnded(Event):
    """A reservation that stopped: its end date passed or its buyer ended it. Its devices are free again."""

    TYPE = "reservation.ended"
    KEY = "reservation_id"

    reservation_id: int
    reservation_uid: uuid.UUID
    buyer_organization_id: int
    device_ids: list[int] = Field(min_length=1)
    ended_at: AwareDatetime
    reason: Literal["expired", "ended_by_buyer"]


class CertificateIssued(Event):
    TYPE = "certificate.issued"
    KEY = "certificate_id"

    certificate_id: uuid.UUID
    reservation_id: int
    reservation_uid: uuid.UUID
    device_id: int
    buyer_organization_id: int
    owner_organization_id: int
    generation_start: datetime
    generation_end: datetime
    energy_wh: int = Field(gt=0)


class AccessTokenRevoked(Event):
    """An access token that must be refused from now on (logout, password change, removal)."""

    TYPE = "token.revoked"
    KEY = "user_id"

    token_id: str  # the jti
    user_id: int
    expires_at: AwareDatetime  # after this the token is refused anyway: the revocation can be forgotten
