-- Issue 16: an allocation's two foreign keys were checked per row, and the one to `reads` also locked each read
-- (FOR KEY SHARE: a second write to a row the same transaction updates next): the most costly part of certifying
-- a read (3x the insert of the read itself). What they guarded cannot happen: allocations are made only from reads
-- and reservations read under their locks in the same transaction, and neither reads nor reservations are ever
-- deleted here. The primary key (read, reservation, period) and certified_wh <= energy_wh on reads still hold the
-- energy exact.
ALTER TABLE allocations DROP CONSTRAINT allocations_read_id_fkey, DROP CONSTRAINT allocations_reservation_id_fkey;
