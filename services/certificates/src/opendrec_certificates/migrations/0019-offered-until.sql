-- Issue 16: allocating a device looked at every read of it in its reservations' windows, certified or not: the scan
-- grew with the device's history (at 50 reads/s a device, ~110 ms a consumer batch after 30 s). A device's reads
-- ending at or before offered_until were offered to every reservation it had then (allocation takes reads in end
-- order up to the settle line); the next round reads only those after it. What could make an earlier read
-- allocatable again asks for a full look (certification_rescans): a reservation new or changed for the device,
-- energy given back to its reads (an end, an expiry, a target reached), a read arriving behind the line. A row there,
-- not an update of device_locks: energy is given back under a reservation's lock, which must never wait for a
-- device's (lock order: devices, then reservations).
ALTER TABLE device_locks ADD COLUMN offered_until timestamptz;
CREATE TABLE certification_rescans (
    id        bigserial PRIMARY KEY,
    device_id bigint NOT NULL
);
CREATE INDEX certification_rescans_device ON certification_rescans (device_id);
-- Issuing after each batch looked at every allocation of the reservation not issued yet (LEAST(period_end, the
-- window's end) is no index bound): the open period's, growing all period long. Due ones are those whose period
-- ended by the settle line (the whole lot once the window has closed): a range of this index.
CREATE INDEX allocations_pending_due ON allocations (reservation_id, period_end) WHERE round_id IS NULL;
-- It serves every lookup of a reservation's pending allocations the one it replaces did (reservation_id first).
DROP INDEX allocations_pending;
