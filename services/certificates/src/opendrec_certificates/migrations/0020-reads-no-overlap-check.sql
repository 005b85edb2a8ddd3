-- Issue 16: the no-overlap rule of migration 0018 (domain.rule_no_overlap: reads (s, e) and (s', e') of a device meet
-- when s < e' and s' < e; an instant t meets a read when s < t < e; the same (device, start, end) again is the
-- duplicate insert_reads skips) held by a statement-level check instead of the GiST exclusion constraint: a GiST
-- range insert cost Postgres ~40 us a read (three quarters of its CPU certifying a read), this check ~1 us.
--
-- Why it is enough: ordered by (start, end), if any two reads of a device overlap, two neighbours do (when no
-- neighbours overlap, each one ends by the next one's start, so no read reaches past its successors). The stored
-- reads never overlap, so only pairs with a new read can: after each INSERT (the rows it added, skipped duplicates
-- excluded), each device's new reads are cut into runs of back-to-back reads (each starting where the one before
-- ended), and for each run [lo, hi]: the read before it must end by lo, and the reads starting in [lo, hi], new and
-- stored, in order, must each start at or after the end of the one before. Everything probed is a range of the
-- (device_id, start_at, end_at) unique index: ~one index entry a new read, however long the device's history, and a
-- late read filling a gap looks only at its own neighbourhood.
--
-- Unlike a constraint, it sees only committed rows and the transaction's own: two transactions inserting reads of a
-- device at once would not see each other's. Every insert of reads (services.take_many_reads) holds the device's
-- row lock (device_locks, migration 0017) from before its INSERT to its commit, and runs at READ COMMITTED: each
-- INSERT starts after the previous holder committed, and sees its reads.
--
-- Refused as before: SQLSTATE 23P01 (exclusion_violation), constraint reads_no_overlap; the whole event is refused
-- and dead-lettered, a batch of events falls back to one by one.
ALTER TABLE reads DROP CONSTRAINT reads_no_overlap;

CREATE FUNCTION reads_no_overlap() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    WITH marked AS (
        SELECT device_id, start_at, end_at,
               CASE WHEN lag(end_at) OVER w = start_at THEN 0 ELSE 1 END AS starts_run
        FROM new_reads WINDOW w AS (PARTITION BY device_id ORDER BY start_at, end_at)
    ), numbered AS (
        SELECT device_id, start_at, end_at,
               sum(starts_run) OVER (PARTITION BY device_id ORDER BY start_at, end_at) AS run
        FROM marked
    ), runs AS (
        SELECT device_id, min(start_at) AS lo, max(end_at) AS hi FROM numbered GROUP BY device_id, run
    )
    SELECT runs.device_id, runs.lo, runs.hi INTO bad FROM runs
    WHERE EXISTS (  -- the read before the run reaches into it
              SELECT 1 FROM (SELECT p.end_at FROM reads p
                             WHERE p.device_id = runs.device_id AND (p.start_at, p.end_at) < (runs.lo, runs.lo)
                             ORDER BY p.start_at DESC, p.end_at DESC LIMIT 1) p
              WHERE p.end_at > runs.lo)
       OR EXISTS (  -- a read inside the run starts before the one before it ended
              SELECT 1 FROM (SELECT r.start_at, lag(r.end_at) OVER (ORDER BY r.start_at, r.end_at) AS before_end
                             FROM reads r
                             WHERE r.device_id = runs.device_id AND r.start_at >= runs.lo AND r.start_at <= runs.hi) x
              WHERE x.start_at < x.before_end)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'reads_no_overlap: a read of device % from % to % overlaps another', bad.device_id, bad.lo,
            bad.hi USING ERRCODE = 'exclusion_violation', TABLE = 'reads', CONSTRAINT = 'reads_no_overlap';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER reads_no_overlap AFTER INSERT ON reads REFERENCING NEW TABLE AS new_reads
    FOR EACH STATEMENT EXECUTE FUNCTION reads_no_overlap();
