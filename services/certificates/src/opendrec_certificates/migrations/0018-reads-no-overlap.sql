-- Issue 13: no two reads of a device overlap, held by the database as readings holds it (domain.rule_no_overlap:
-- a read (s, e) meets another when s < e' and s' < e; an instant t meets a read when s < t < e). Readings never
-- sends such a read; one arriving anyway (a bug upstream, an event forged into the topic) is refused with its whole
-- event, which goes to the dead letters where it can be seen, instead of certifying the same time twice.
-- An interval is an open range (touching reads don't meet), an instant a point. The same read again (device,
-- start, end) is still the unique key that insert_reads skips, never an exclusion violation. int8range of the
-- device: no btree_gist needed (as serial_ranges).
ALTER TABLE reads ADD CONSTRAINT reads_no_overlap EXCLUDE USING gist (
    int8range(device_id, device_id, '[]') WITH &&,
    (CASE WHEN start_at = end_at THEN tstzrange(start_at, end_at, '[]') ELSE tstzrange(start_at, end_at, '()') END) WITH &&
);
