"""The use cases of the devices service (its service layer), called by the adapters: the HTTP routes
(`api`, `bulk_api`, `files_api`, `internal`), the event handlers (`handlers`) and the bulk worker (`worker`).

- `devices`: register, list, read, change and delete devices; ungrouped devices, autocomplete, the
  onboarding date; the public code lists (fuel, device type, country, SDG benefits); devices' current states
  for other services (read-your-writes, `internal`).
- `bulk_jobs`: bulk CSV onboarding: upload (a staged job, from the body or an uploaded file), the worker's
  batch, job status and results.
- `files`: uploaded files: store an upload, read a file back.
- `certified`: what certificate.issued tells of a device's energy: totals, a reservation's certified log.
- `read_models`: what other services' events tell us (reservations, certified energy).
- `access`: which organization a caller acts for or sees, one rule each, for all of the above.
"""

from .bulk_jobs import (
    job_results,
    job_status,
    list_jobs,
    process_batch,
    upload_drec_job,
    upload_job,
    upload_job_from_file,
)
from .certified import certified_log, certified_totals
from .devices import (
    autocomplete,
    change_onboarding_date,
    country_codes,
    delete_device,
    device_by_external_id,
    device_by_id,
    device_state_by_external_id,
    device_states,
    device_types,
    fuel_types,
    list_available_devices,
    list_devices,
    register_device,
    registering_organization,
    sdg_benefit_codes,
    sdg_benefits,
    ungrouped_devices,
    update_device,
)
from .files import read_file, store_files
from .read_models import record_certificate, record_reservation, record_reservation_change, record_reservation_ended

__all__ = [
    "autocomplete",
    "certified_log",
    "certified_totals",
    "change_onboarding_date",
    "country_codes",
    "delete_device",
    "device_by_external_id",
    "device_by_id",
    "device_state_by_external_id",
    "device_states",
    "device_types",
    "fuel_types",
    "job_results",
    "job_status",
    "list_available_devices",
    "list_devices",
    "list_jobs",
    "process_batch",
    "read_file",
    "record_certificate",
    "record_reservation",
    "record_reservation_change",
    "record_reservation_ended",
    "register_device",
    "registering_organization",
    "sdg_benefit_codes",
    "sdg_benefits",
    "store_files",
    "ungrouped_devices",
    "update_device",
    "upload_drec_job",
    "upload_job",
    "upload_job_from_file",
]
