from pydantic import Field

from opendrec_kit import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "reservations"
    http_port: int = 8104

    # The expiry sweep: how often it ends reservations whose end date passed, and how many per transaction.
    expiry_sweep_interval_s: float = Field(default=60.0, gt=0)
    expiry_sweep_batch_size: int = Field(default=500, ge=1, le=10_000)
