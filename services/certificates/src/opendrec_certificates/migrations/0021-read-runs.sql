-- Issue 16: certifying >= 100,000 reads/s on one stream. A row per read (its three index entries, ~6 us of Postgres
-- a read) and a row per read, reservation and period for its allocation (with an update of the read's certified_wh,
-- ~5 us) cannot get there: even a bare COPY of the reads is ~4.4 us a read. Reads are stored as runs, allocations per
-- run of reads.
--
-- read_runs: one row per run of back-to-back reads of one device in one read.ingested event (each read starting
-- where the one before ended), the reads as arrays of the event's integer microseconds from its origin: read k
-- (0-based) runs from origin + (k = 0 ? start_us : ends_us[k]) to origin + ends_us[k + 1] (1-based arrays) and
-- carries energy_wh[k + 1]. An instant (start = end) is a run of its own, and a gap ends a run. start_at and end_at:
-- the first read's start and the last one's end (a run covers [start_at, end_at) entirely). left_wh: the run's Wh
-- not allocated to any reservation (0: nothing more to offer; the database keeps it >= 0).
CREATE TABLE read_runs (
    id              bigserial   PRIMARY KEY,
    device_id       bigint      NOT NULL,
    organization_id bigint      NOT NULL,
    batch_id        uuid        NOT NULL,
    read_type       text        NOT NULL,
    origin          timestamptz NOT NULL,
    start_us        bigint      NOT NULL,
    ends_us         bigint[]    NOT NULL,
    energy_wh       bigint[]    NOT NULL,
    start_at        timestamptz NOT NULL,
    end_at          timestamptz NOT NULL,
    left_wh         bigint      NOT NULL CHECK (left_wh >= 0),
    -- a read's id (the views below): run id * 2^20 + its index
    CHECK (cardinality(ends_us) BETWEEN 1 AND 1048576 AND cardinality(energy_wh) = cardinality(ends_us)),
    CHECK (start_at <= end_at)
) WITH (fillfactor = 70);  -- left_wh is updated once or twice a run: a HOT update, no index entry
-- A long run's arrays are stored out of line, uncompressed: compressing them cost more than writing them.
ALTER TABLE read_runs ALTER COLUMN ends_us SET STORAGE EXTERNAL, ALTER COLUMN energy_wh SET STORAGE EXTERNAL;
CREATE INDEX read_runs_device_start ON read_runs (device_id, start_at);
CREATE INDEX read_runs_device_end ON read_runs (device_id, end_at);

-- run_allocations: which reads of which run went to which reservation in which period, not issued yet or taken by
-- round_id: one row per (run, reservation, period) range of the run's reads [lo, hi) (0-based). parts_wh: what it
-- takes of each read of the range (0: nothing of that read); NULL: each read's whole energy (the common case: whole
-- reads inside a period and the window, nothing of them taken before). A read is allocated to a reservation when one
-- of its rows gives it more than 0 Wh (as a row per read was before); a read's part is the read cut by the period
-- (which the window cuts already): [greatest(read start, period_start), least(read end, period_end)]. start_at and
-- end_at: the first part's start, the last part's end. A History read is a row of its own (its period: its interval
-- in the window).
CREATE TABLE run_allocations (
    run_id         bigint      NOT NULL,
    reservation_id bigint      NOT NULL,
    period_start   timestamptz NOT NULL,
    period_end     timestamptz NOT NULL,
    lo             integer     NOT NULL,
    hi             integer     NOT NULL,
    kind           text        NOT NULL CHECK (kind IN ('period', 'history')),
    device_id      bigint      NOT NULL,
    start_at       timestamptz NOT NULL,
    end_at         timestamptz NOT NULL,
    energy_wh      bigint      NOT NULL CHECK (energy_wh > 0),
    parts_wh       bigint[],
    round_id       uuid,
    PRIMARY KEY (run_id, reservation_id, period_start, lo),
    CHECK (0 <= lo AND lo < hi),
    CHECK (parts_wh IS NULL OR cardinality(parts_wh) = hi - lo)
);
CREATE INDEX run_allocations_pending_due ON run_allocations (reservation_id, period_end) WHERE round_id IS NULL;
CREATE INDEX run_allocations_pending_end ON run_allocations (period_end) WHERE round_id IS NULL;
CREATE INDEX run_allocations_reservation ON run_allocations (reservation_id);

-- Existing reads become runs of one read each, their allocations a row each (explicit parts): the same reads, the
-- same allocations, the same energy left.
INSERT INTO read_runs (id, device_id, organization_id, batch_id, read_type, origin, start_us, ends_us, energy_wh,
                       start_at, end_at, left_wh)
SELECT id, device_id, organization_id, batch_id, read_type, start_at, 0,
       ARRAY[(extract(epoch FROM end_at - start_at) * 1000000)::bigint], ARRAY[energy_wh], start_at, end_at,
       energy_wh - certified_wh
FROM reads;
DO $$ BEGIN PERFORM setval(pg_get_serial_sequence('read_runs', 'id'), coalesce((SELECT max(id) FROM read_runs), 0) + 1, false); END $$;
INSERT INTO run_allocations (run_id, reservation_id, period_start, period_end, lo, hi, kind, device_id, start_at,
                             end_at, energy_wh, parts_wh, round_id)
SELECT read_id, reservation_id, period_start, period_end, 0, 1, kind, device_id, start_at, end_at, energy_wh,
       ARRAY[energy_wh], round_id
FROM allocations;

DROP TABLE allocations;
DROP TABLE reads;  -- and its no-overlap trigger (migration 0020)
DROP FUNCTION reads_no_overlap();

-- No two reads of a device overlap (domain.rule_no_overlap; migration 0020's rule): a run covers [start_at, end_at)
-- entirely, so two runs of reads (s < e) overlap exactly when their ranges do; an instant t meets a run when it lies
-- strictly inside it and not on one of its reads' boundaries (touching reads don't meet). As 0020: ordered by start,
-- if any two overlap, two neighbours do. After each INSERT, the new runs of reads of a device are cut into chains of
-- back-to-back runs (reads arriving one an event make a run each: a chain is checked at once), and for each chain
-- [lo, hi): the last run of reads starting before it must end by lo, no run of reads but its own may start inside it,
-- and an instant inside it must lie on a boundary of the run holding it (the run of reads starting last at or before
-- it). A new instant: the last run of reads starting before it must end by it or hold it on a boundary, and no other
-- instant may be the same. Index ranges of (device_id, start_at), ~one probe a chain. It relies on the device's row
-- lock held by every insert of reads (migration 0020).
CREATE FUNCTION read_runs_boundary(origin timestamptz, ends_us bigint[], moment timestamptz) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS
$$ SELECT (extract(epoch FROM moment - origin) * 1000000)::bigint = ANY(ends_us) $$;

CREATE FUNCTION read_runs_no_overlap() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    WITH marked AS (
        SELECT device_id, start_at, end_at,
               CASE WHEN lag(end_at) OVER w = start_at THEN 0 ELSE 1 END AS starts_chain
        FROM new_runs WHERE start_at < end_at WINDOW w AS (PARTITION BY device_id ORDER BY start_at, end_at)
    ), numbered AS (
        SELECT device_id, start_at, end_at,
               sum(starts_chain) OVER (PARTITION BY device_id ORDER BY start_at, end_at) AS chain
        FROM marked
    ), chains AS (
        SELECT device_id, min(start_at) AS lo, max(end_at) AS hi, count(*) AS runs
        FROM numbered GROUP BY device_id, chain
    )
    SELECT c.device_id, c.lo AS start_at, c.hi AS end_at INTO bad FROM chains c
    WHERE EXISTS (  -- the run of reads before it reaches into it
              SELECT 1 FROM (SELECT m.end_at FROM read_runs m
                             WHERE m.device_id = c.device_id AND m.start_at < c.lo AND m.start_at < m.end_at
                             ORDER BY m.start_at DESC LIMIT 1) p
              WHERE p.end_at > c.lo)
       OR (SELECT count(*) FROM read_runs m  -- a run of reads not its own starting inside it
           WHERE m.device_id = c.device_id AND m.start_at >= c.lo AND m.start_at < c.hi AND m.start_at < m.end_at)
          > c.runs
       OR EXISTS (  -- an instant inside it, not on a boundary of the run holding it
              SELECT 1 FROM read_runs i
              WHERE i.device_id = c.device_id AND i.start_at > c.lo AND i.start_at < c.hi AND i.start_at = i.end_at
                AND NOT EXISTS (
                    SELECT 1 FROM (SELECT p.start_at, p.origin, p.ends_us FROM read_runs p
                                   WHERE p.device_id = c.device_id AND p.start_at <= i.start_at
                                     AND p.start_at < p.end_at
                                   ORDER BY p.start_at DESC LIMIT 1) p
                    WHERE p.start_at = i.start_at OR read_runs_boundary(p.origin, p.ends_us, i.start_at)))
    LIMIT 1;
    IF NOT FOUND THEN
        SELECT n.device_id, n.start_at, n.end_at INTO bad FROM new_runs n
        WHERE n.start_at = n.end_at
          AND (EXISTS (  -- inside the run of reads before it, not on one of its boundaries
                   SELECT 1 FROM (SELECT m.origin, m.ends_us, m.end_at FROM read_runs m
                                  WHERE m.device_id = n.device_id AND m.start_at < n.start_at
                                    AND m.start_at < m.end_at
                                  ORDER BY m.start_at DESC LIMIT 1) p
                   WHERE p.end_at > n.start_at AND NOT read_runs_boundary(p.origin, p.ends_us, n.start_at))
               OR EXISTS (  -- the same instant twice
                   SELECT 1 FROM read_runs m WHERE m.device_id = n.device_id AND m.start_at = n.start_at
                       AND m.end_at = n.end_at AND m.id <> n.id))
        LIMIT 1;
    END IF;
    IF FOUND THEN
        RAISE EXCEPTION 'reads_no_overlap: a read of device % from % to % overlaps another', bad.device_id,
            bad.start_at, bad.end_at USING ERRCODE = 'exclusion_violation', TABLE = 'read_runs',
            CONSTRAINT = 'reads_no_overlap';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER read_runs_no_overlap AFTER INSERT ON read_runs REFERENCING NEW TABLE AS new_runs
    FOR EACH STATEMENT EXECUTE FUNCTION read_runs_no_overlap();

-- The reads and allocations one per row, as before (the operations CLI, the chaos run and the tests read them): a
-- read's id is its run's * 2^20 + its index, its certified_wh what its allocations give it.
CREATE VIEW reads AS
SELECT (r.id << 20) + x.k - 1 AS id, r.device_id, r.organization_id,
       r.origin + (CASE WHEN x.k = 1 THEN r.start_us ELSE r.ends_us[x.k - 1] END) * interval '1 microsecond'
           AS start_at,
       r.origin + x.end_us * interval '1 microsecond' AS end_at,
       x.energy_wh,
       (SELECT coalesce(sum(CASE WHEN a.parts_wh IS NULL THEN x.energy_wh ELSE a.parts_wh[x.k - a.lo] END), 0)
        FROM run_allocations a WHERE a.run_id = r.id AND a.lo < x.k AND x.k <= a.hi)::bigint AS certified_wh,
       r.batch_id, r.read_type
FROM read_runs r CROSS JOIN LATERAL unnest(r.ends_us, r.energy_wh) WITH ORDINALITY AS x (end_us, energy_wh, k);

CREATE VIEW allocations AS
SELECT (a.run_id << 20) + i AS read_id, a.reservation_id, a.period_start, a.period_end, a.kind, a.device_id,
       greatest(r.origin + (CASE WHEN i = 0 THEN r.start_us ELSE r.ends_us[i] END) * interval '1 microsecond',
                a.period_start) AS start_at,
       least(r.origin + r.ends_us[i + 1] * interval '1 microsecond', a.period_end) AS end_at,
       w.wh AS energy_wh, a.round_id
FROM run_allocations a JOIN read_runs r ON r.id = a.run_id
CROSS JOIN LATERAL generate_series(a.lo, a.hi - 1) AS i
CROSS JOIN LATERAL (SELECT CASE WHEN a.parts_wh IS NULL THEN r.energy_wh[i + 1] ELSE a.parts_wh[i - a.lo + 1] END
                        AS wh) w
WHERE w.wh > 0;
