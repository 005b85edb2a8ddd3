-- Bulk CSV onboarding. An upload is parsed and staged row by row in one transaction (a bad file
-- leaves no job); a worker then registers pending rows batch by batch, each batch in one
-- transaction with its devices and events, so a restart resumes without inserting a row twice.
CREATE TABLE bulk_jobs (
    id               bigserial PRIMARY KEY,
    organization_id  bigint NOT NULL,
    created_by       bigint,
    file_name        text,
    status           text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'completed')),
    total_rows       integer NOT NULL,
    done_rows        integer NOT NULL DEFAULT 0,
    created_rows     integer NOT NULL DEFAULT 0,
    warning_rows     integer NOT NULL DEFAULT 0,
    failed_rows      integer NOT NULL DEFAULT 0,
    warnings         jsonb NOT NULL DEFAULT '[]',
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz
);
CREATE INDEX bulk_jobs_org_newest ON bulk_jobs (organization_id, id DESC);
CREATE INDEX bulk_jobs_unfinished ON bulk_jobs (id) WHERE status <> 'completed';

CREATE TABLE bulk_job_rows (
    job_id       bigint NOT NULL REFERENCES bulk_jobs (id) ON DELETE CASCADE,
    row_number   integer NOT NULL,          -- as a spreadsheet shows it: the header is row 1
    external_id  text,
    data         jsonb NOT NULL,            -- the row's non-empty cells by D-REC field name
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'created', 'created_with_warnings', 'failed')),
    device_id    bigint,
    errors       jsonb,
    warnings     jsonb,
    PRIMARY KEY (job_id, row_number)
);
CREATE INDEX bulk_job_rows_external_id ON bulk_job_rows (job_id, external_id, row_number);
CREATE INDEX bulk_job_rows_pending ON bulk_job_rows (job_id, row_number) WHERE status = 'pending';
