-- Bulk read imports (CSV): the upload, its progress, and a result for every row.
CREATE TABLE import_jobs (
    job_id          uuid        PRIMARY KEY,
    organization_id bigint      NOT NULL,
    user_id         bigint,
    file_name       text,
    content         text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    rows_total      integer     NOT NULL,
    rows_done       integer     NOT NULL DEFAULT 0,
    accepted        integer     NOT NULL DEFAULT 0,
    last_row        integer     NOT NULL DEFAULT 0,  -- the cursor: rows up to this number are done
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX import_jobs_unfinished ON import_jobs (created_at) WHERE status IN ('queued', 'running');
CREATE INDEX import_jobs_organization ON import_jobs (organization_id, created_at);

CREATE TABLE import_rows (
    job_id     uuid    NOT NULL REFERENCES import_jobs (job_id) ON DELETE CASCADE,
    row_number integer NOT NULL,
    accepted   boolean NOT NULL,
    reason     text,
    batch_id   uuid,
    PRIMARY KEY (job_id, row_number)
);
