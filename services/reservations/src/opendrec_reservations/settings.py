from pydantic import Field

from opendrec_kit import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "reservations"
    http_port: int = 8104

    # The expiry sweep: how often it ends reservations whose end date passed, and how many per transaction.
    expiry_sweep_interval_s: float = Field(default=60.0, gt=0)
    expiry_sweep_batch_size: int = Field(default=500, ge=1, le=10_000)
    # How far ahead a reservation may end (days; ~10 years by default).
    reservation_max_future_days: int = Field(default=3653, ge=1, le=36_525)
    # A reservation whose buyer names no reservationExpiryDate is certifiable until this many days after its
    # end (D-REC's certificate_setting.no_of_days, 60 there).
    reservation_expiry_days: int = Field(default=60, ge=0, le=3653)
