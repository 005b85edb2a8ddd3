-- Issue 14: a reservation without authority to exceed its target ends when its target was certified
-- (certificate.issued says target_reached).
ALTER TABLE reservations DROP CONSTRAINT reservations_end_reason_check;
ALTER TABLE reservations ADD CONSTRAINT reservations_end_reason_check
    CHECK (end_reason IN ('expired', 'ended_by_buyer', 'target_reached'));
