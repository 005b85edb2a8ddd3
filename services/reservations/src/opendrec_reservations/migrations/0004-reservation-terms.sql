-- Issue 15. A reservation's expiry: no certificate is issued for it from then on (D-REC reservationExpiryDate;
-- NULL for reservations made before it existed: no such limit). Its terms can change (PATCH): revision counts
-- the changes, so reservation.updated consumers keep the latest whatever the order of delivery.
ALTER TABLE reservations
    ADD COLUMN reservation_expiry timestamptz,
    ADD COLUMN revision integer NOT NULL DEFAULT 0,
    ADD CONSTRAINT reservations_expiry_after_end CHECK (reservation_expiry IS NULL OR reservation_expiry >= reservation_end);

-- What device.registered says of a device that a reservation shows as its group's attributes (NULL for a
-- device registered before these columns existed: left out of the attributes).
ALTER TABLE devices
    ADD COLUMN fuel_code          text,
    ADD COLUMN device_type_code   text,
    ADD COLUMN commissioning_date timestamptz;
