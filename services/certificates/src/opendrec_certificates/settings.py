from pydantic import Field

from opendrec_kit import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "certificates"
    http_port: int = 8105

    # Energy generated in the last this-many seconds is certified once they have passed: an early end of a
    # reservation (reservation.ended, another topic) published meanwhile is then known first.
    certify_settle_s: float = Field(default=30.0, ge=0)
    # Issue a period only once reservations' watermarks (reservation.ended, reservation.updated) passed its end, so an
    # early end arriving late never leaves a certificate past it (issue 13). Off only for this service tested alone.
    wait_for_reservation_watermarks: bool = True
    # How often settled energy is looked for.
    certify_sweep_interval_s: float = Field(default=5.0, gt=0)
    # read.ingested events taken in one transaction at most (issue 16: one read an event under D-REC clients' load).
    read_batch_max: int = Field(default=500, ge=1, le=10_000)
