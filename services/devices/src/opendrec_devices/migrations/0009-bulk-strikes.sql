-- A batch of a bulk job that fails (an error, or it kills its worker) no longer blocks the job, and every later
-- one, for ever (issue 12): `strikes` counts failures of batches starting at `strike_row`; the rows up to
-- `careful_until` (the failed batch's last) are then registered one at a time, so the failing row is found, and
-- once it failed MAX_STRIKES times it is set aside as failed with `last_error`.
ALTER TABLE bulk_jobs
    ADD COLUMN strikes       integer NOT NULL DEFAULT 0,
    ADD COLUMN strike_row    integer,
    ADD COLUMN careful_until integer,
    ADD COLUMN last_error    text;
