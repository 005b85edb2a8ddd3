"""One pydantic model per event type: the payload inside the envelope.

Field names are snake_case on the wire; identifiers are the owning service's.
Energy is always in watt-hours (integers), times are timezone-aware UTC.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from operator import le, sub
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

_MICROSECOND = timedelta(microseconds=1)
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

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
    off_taker: str | None = None  # D-REC offTaker (e.g. "Residential"): reservation views and filters
    sdg_benefits: list[str] = Field(default_factory=list)  # D-REC SDGBenefits codes
    project_name: str | None = None  # D-REC projectName: the name the REC inventory shows (DeviceName)
    fuel_name: str | None = None  # the I-REC name of fuel_code (e.g. "Solar"), as the REC inventory shows it


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
    # Charging sessions of a linked EV charger (Kazam, OCPP): each read is an interval read, its energy
    # over exactly [start, end] (start required) whatever the gap since the previous read, never overlapping
    # another read of the device, and judged by what a charger can deliver (rated power x duration).
    # False (older events): Delta/Aggregate intervals run from the previous read's end.
    charging_sessions: bool = False


class ReadIngested(Event):
    """A batch of accepted reads of one device, as energy intervals, in columns.

    Interval i runs from `origin + starts_us[i]` to `origin + ends_us[i]` (microseconds) and
    carries `values_wh[i]`. Without `starts_us` the intervals are consecutive: each starts where
    the one before ended, the first at `origin` (every Delta batch). v1 listed the intervals as
    {start, end, value_wh} objects, ~75 bytes a read; this is ~17, and a batch is one message.
    """

    TYPE = "read.ingested"
    VERSION = 2
    KEY = "device_id"

    batch_id: uuid.UUID
    device_id: int
    external_id: str
    organization_id: int
    read_type: ReadType
    origin: AwareDatetime  # the earliest start
    ends_us: list[int] = Field(min_length=1)
    values_wh: list[int] = Field(min_length=1)
    starts_us: list[int] | None = None

    @model_validator(mode="after")
    def _intervals_are_whole(self) -> ReadIngested:
        count = len(self.ends_us)
        if len(self.values_wh) != count or (self.starts_us is not None and len(self.starts_us) != count):
            raise ValueError("ends_us, values_wh (and starts_us when given) must have one entry per interval")
        if min(self.values_wh) < 0:
            raise ValueError("values_wh must not be negative")
        starts = self.starts_us if self.starts_us is not None else [0, *self.ends_us[:-1]]
        if not all(map(le, starts, self.ends_us)):  # an instant (start = end) is an interval too, as v1 allowed
            raise ValueError("no interval may end before it starts")
        return self

    def intervals(self) -> list[tuple[datetime, datetime, int]]:
        """(start, end, Wh) of every interval, in the order sent."""
        origin = self.origin
        ends = [origin + timedelta(microseconds=e) for e in self.ends_us]
        if self.starts_us is None:
            starts = [origin, *ends[:-1]]
        else:
            starts = [origin + timedelta(microseconds=s) for s in self.starts_us]
        return list(zip(starts, ends, self.values_wh, strict=True))

    @staticmethod
    def columns(starts: list[datetime], ends: list[datetime], values_wh: list[int]) -> dict[str, Any]:
        """origin, ends_us, values_wh and (unless consecutive) starts_us of the intervals (starts[i], ends[i], values_wh[i])."""
        return ReadIngested.columns_us(micros_since(UNIX_EPOCH, starts), micros_since(UNIX_EPOCH, ends), values_wh)

    @staticmethod
    def columns_us(starts_us: list[int], ends_us: list[int], values_wh: list[int]) -> dict[str, Any]:
        """The same, from instants as microseconds since the Unix epoch (for a service that holds them so)."""
        origin = min(starts_us)
        consecutive = starts_us[0] == origin and starts_us[1:] == ends_us[:-1]
        return {
            "origin": UNIX_EPOCH + timedelta(microseconds=origin),
            "ends_us": [end - origin for end in ends_us],
            "values_wh": values_wh,
            "starts_us": None if consecutive else [start - origin for start in starts_us],
        }


def micros_since(epoch: datetime, moments: list[datetime]) -> list[int]:
    """Whole microseconds from `epoch` to each moment.

    A datetime becomes an integer in ~0.4 µs; meter reads are usually evenly spaced, and then all
    but the first follow by addition (10,000 of them per batch add up).
    """
    if len(moments) > 2:
        steps = set(map(sub, moments[1:], moments[:-1]))
        if len(steps) == 1:
            step = steps.pop() // _MICROSECOND
            first = (moments[0] - epoch) // _MICROSECOND
            return list(range(first, first + step * len(moments), step)) if step else [first] * len(moments)
    return [(m - epoch) // _MICROSECOND for m in moments]


def _read_ingested_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """v1 listed each interval as {start, end, value_wh} (ISO 8601 instants; start always set)."""
    reads = payload.pop("reads")
    ends = [datetime.fromisoformat(r["end"]) for r in reads]
    starts = [datetime.fromisoformat(r["start"]) if r.get("start") else end for r, end in zip(reads, ends, strict=True)]
    return {**payload, **ReadIngested.columns(starts, ends, [r["value_wh"] for r in reads])}


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
    # No certificate is issued for the reservation from this moment on (None: no such limit; v1 producers
    # before it was added). At or after reservation_end.
    reservation_expiry: AwareDatetime | None = None


class ReservationUpdated(Event):
    """A reservation's terms after its buyer changed them: the full current terms, so a read model replaces
    them. `revision` counts the changes of one reservation (1, 2, ...): a consumer keeps the highest it saw,
    whatever the order of delivery (this topic is not reservation.created's: it may even come first)."""

    TYPE = "reservation.updated"
    KEY = "reservation_id"

    reservation_id: int
    reservation_uid: uuid.UUID
    revision: int = Field(ge=1)
    name: str
    buyer_organization_id: int
    device_ids: list[int] = Field(min_length=1)
    reservation_start: AwareDatetime
    reservation_end: AwareDatetime
    target_capacity_wh: int | None = None
    authority_to_exceed: bool = True
    reservation_expiry: AwareDatetime | None = None


class ReservationEnded(Event):
    """A reservation that stopped: its end date passed or its buyer ended it. Its devices are free again."""

    TYPE = "reservation.ended"
    KEY = "reservation_id"

    reservation_id: int
    reservation_uid: uuid.UUID
    buyer_organization_id: int
    device_ids: list[int] = Field(min_length=1)
    ended_at: AwareDatetime
    # expired: its end date passed; ended_by_buyer: ended early; target_reached: its target was certified without
    # authority to exceed it; deleted: removed before its window began (nothing was certified).
    reason: Literal["expired", "ended_by_buyer", "target_reached", "deleted"]


class CertificatePart(BaseModel):
    """One device's energy in a certificate."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    device_id: int
    owner_organization_id: int  # whose device it is (the organization of its accepted reads)
    energy_wh: int = Field(gt=0)


class CertificateIssued(Event):
    """A certificate (issue 14, D-REC's issuance): one per reservation, country and period of the reservation's
    frequency, holding every device of the reservation in that country, with a part per device. `kind`: "period"
    (the period's certificate, sequence 0), "late" (energy of a period already issued, sequence 1, 2, ...),
    "history" (one History read of one device, sequence 1, 2, ...). Whole kWh are issued: `energy_wh` =
    allocated + carry_in_wh - carry_out_wh, the remainder carried to the next certificate of the (reservation,
    country); the certificate that reaches a target without authority to exceed it is cut to exactly what remains
    (`target_reached`: the reservation ends). v1 named one device: read as one part."""

    TYPE = "certificate.issued"
    VERSION = 2
    KEY = "certificate_id"

    certificate_id: uuid.UUID
    reservation_id: int
    reservation_uid: uuid.UUID
    buyer_organization_id: int
    country_code: str | None = None  # the devices' (None: unknown)
    kind: Literal["period", "late", "history"] = "period"
    sequence: int = Field(default=0, ge=0)
    period_start: datetime  # the period, cut by the reservation's window (history: the read's interval in it)
    period_end: datetime
    generation_start: datetime  # the energy's: earliest start and latest end of the reads' parts in it
    generation_end: datetime
    energy_wh: int = Field(gt=0)  # issued
    carry_in_wh: int = Field(default=0, ge=0)
    carry_out_wh: int = Field(default=0, ge=0)
    target_reached: bool = False
    parts: list[CertificatePart] = Field(min_length=1)
    # The issuance's ledger entry is this payload without `issued_at`, recorded at `issued_at`: the ledger can be
    # rebuilt from the events (None: published before these were added).
    issued_at: AwareDatetime | None = None
    allocated_wh: int | None = Field(default=None, ge=0)  # the energy allocated to it (before the kWh carry)
    reads_hash: str | None = None  # the ledger's hash of the read intervals it covers

    @model_validator(mode="after")
    def _parts_hold_the_energy(self) -> CertificateIssued:
        if sum(p.energy_wh for p in self.parts) != self.energy_wh:
            raise ValueError("the parts' energy_wh must add up to energy_wh")
        return self


def _certificate_issued_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """v1 was one device's certificate of one run: one part, its generation period as the period, no carry."""
    payload = dict(payload)
    device_id, owner = payload.pop("device_id"), payload.pop("owner_organization_id")
    return {
        **payload,
        "kind": "period",
        "sequence": 0,
        "period_start": payload["generation_start"],
        "period_end": payload["generation_end"],
        "parts": [{"device_id": device_id, "owner_organization_id": owner, "energy_wh": payload["energy_wh"]}],
    }


# -- the registry's lifecycle (issue 14): what happens to certificates after issuance ------------------------------
# A certificate's energy is held as parts (one per device), each a numbered range of serials (one serial per Wh):
# every operation names the part (certificate_id, device_id) and the exact serial range it moves.


class _HoldingChange(Event):
    KEY = "certificate_id"

    certificate_id: uuid.UUID
    device_id: int
    organization_id: int  # the holder acting
    energy_wh: int = Field(gt=0)
    serial_start: int = Field(ge=1)  # first and last serial of the range (inclusive), serial_end - serial_start + 1 Wh
    serial_end: int = Field(ge=1)
    serial_number: str  # the range as the REC inventory writes it
    # When it happened: its ledger entry is this payload (with "type", without `recorded_at`), recorded then.
    recorded_at: AwareDatetime | None = None


class CertificateTransferred(_HoldingChange):
    """Energy of a certificate part handed to another organization: pending until the receiver accepts (then
    `accepted`), or `direct`; a pending one may be `rejected` by the receiver or `cancelled` by the sender."""

    TYPE = "certificate.transferred"

    transfer_id: uuid.UUID
    to_organization_id: int
    status: Literal["pending", "accepted", "direct", "rejected", "cancelled"]


class CertificateRetired(_HoldingChange):
    """Energy claimed for a beneficiary: irreversible."""

    TYPE = "certificate.retired"

    retirement_id: uuid.UUID
    beneficiary: str
    location: str | None = None
    purpose: str
    reporting_start: AwareDatetime
    reporting_end: AwareDatetime


class CertificateLocked(_HoldingChange):
    """Energy set aside for a sale, an export or an auction: not available until released."""

    TYPE = "certificate.locked"

    lock_id: uuid.UUID
    purpose: Literal["sale", "export", "auction"]


class CertificateReleased(_HoldingChange):
    """A lock ended: the energy is available again (`released`) or it left as the lock intended (`exported`)."""

    TYPE = "certificate.released"

    lock_id: uuid.UUID
    outcome: Literal["released", "exported"]


class AccessTokenRevoked(Event):
    """An access token that must be refused from now on (logout, password change, removal)."""

    TYPE = "token.revoked"
    KEY = "user_id"

    token_id: str  # the jti
    user_id: int
    expires_at: AwareDatetime  # after this the token is refused anyway: the revocation can be forgotten
