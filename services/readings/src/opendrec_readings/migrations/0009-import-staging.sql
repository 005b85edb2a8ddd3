-- Bulk read imports (issue 12): an upload's rows are staged as it is parsed (streamed, off the event loop) and the
-- worker reads them back a part at a time, so a service's memory is a constant times a row, never the file.
-- `content` remains only in jobs queued before this migration (the worker stages them first).
CREATE TABLE import_staged (
    job_id     uuid    NOT NULL REFERENCES import_jobs (job_id) ON DELETE CASCADE,
    row_number integer NOT NULL,
    cells      text[]  NOT NULL,  -- deviceExternalId, timezone, type, unit, value, startDate, endDate
    PRIMARY KEY (job_id, row_number)
);
ALTER TABLE import_jobs ALTER COLUMN content DROP NOT NULL;
-- A worker holds a job while its lease runs (renewed at each group), instead of a transaction open all along; a
-- worker that died leaves the lease to run out. `strikes`: failures of the group at the same cursor
-- (`strike_row`); at a bound that group is set aside with the job's last `error`, so one poison group cannot hold
-- the job (and the worker) for ever.
ALTER TABLE import_jobs
    ADD COLUMN leased_until timestamptz,
    ADD COLUMN strikes      integer NOT NULL DEFAULT 0,
    ADD COLUMN strike_row   integer;
