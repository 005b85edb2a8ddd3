-- Issue 13: certifying a device runs one transaction at a time. Advisory locks did it, one per device in the
-- shared lock table: a reservation.created of 10,000 devices took 10,000 of them in one transaction, more than the
-- table holds (max_locks_per_transaction x max_connections) for every database of the server. A row per device,
-- locked FOR UPDATE, keeps its lock in the row itself.
CREATE TABLE device_locks (
    device_id bigint PRIMARY KEY
);
