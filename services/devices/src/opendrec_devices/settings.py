import functools

from pydantic import Field

from opendrec_kit import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "devices"
    http_port: int = 8102
    # Bulk CSV onboarding
    bulk_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1)  # larger uploads get a 413
    bulk_batch_size: int = Field(default=500, ge=1)  # rows registered per transaction
    bulk_poll_interval_s: float = 1.0  # how often the worker looks for jobs it was not woken for
    bulk_worker_enabled: bool = True
    # Uploaded files (POST /api/file), D-REC's FILE_MAX_FILE_SIZE and FILE_MAX_FILES
    file_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1)  # a larger file gets a 413
    file_max_files: int = Field(default=20, ge=1)  # files in one upload
    # The largest capacity a device may have (kW), judged at registration, update and bulk upload: reads are judged
    # against the capacity, so an absurd one would let any energy through (issue 12). 1 GW is above any distributed
    # plant; readings applies the same cap (DEVICE_MAX_CAPACITY_KW) to devices registered before it.
    device_max_capacity_kw: float = Field(default=1_000_000, gt=0, le=1e9)
    # PUT /api/device/my/deviceOnBoardingDate: D-REC allows it only in dev mode (MODE=dev)
    onboarding_date_changes_enabled: bool = False


@functools.cache
def device_max_capacity_kw() -> float:
    """This process's DEVICE_MAX_CAPACITY_KW, read once (the device model's validator has no app at hand)."""
    return Settings().device_max_capacity_kw
