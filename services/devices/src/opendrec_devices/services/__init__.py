"""The use cases of the devices service (its service layer), called by the adapters: the HTTP routes
(`api`, `bulk_api`), the event handlers (`handlers`) and the bulk worker (`worker`).

- `devices`: register, list, read, change and delete devices; the public code lists.
- `bulk_jobs`: bulk CSV onboarding: upload (a staged job), the worker's batch, job status and results.
- `read_models`: what other services' events tell us (reservations, certified energy).
- `access`: which organization a caller acts for or sees, one rule each, for all of the above.
"""

from .bulk_jobs import job_results, job_status, list_jobs, process_batch, upload_job
from .devices import (
    country_codes,
    delete_device,
    device_by_external_id,
    device_by_id,
    device_types,
    fuel_types,
    list_available_devices,
    list_devices,
    register_device,
    registering_organization,
    update_device,
)
from .read_models import record_certificate, record_reservation, record_reservation_ended

__all__ = [
    "country_codes",
    "delete_device",
    "device_by_external_id",
    "device_by_id",
    "device_types",
    "fuel_types",
    "job_results",
    "job_status",
    "list_available_devices",
    "list_devices",
    "list_jobs",
    "process_batch",
    "record_certificate",
    "record_reservation",
    "record_reservation_ended",
    "register_device",
    "registering_organization",
    "update_device",
    "upload_job",
]
