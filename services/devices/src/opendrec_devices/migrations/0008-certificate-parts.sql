-- Issue 14: certificate.issued v2 holds every device of a reservation in one country and period, a part per
-- device: one row per (certificate, device) part, so a redelivery still counts once.
ALTER TABLE certified_energy DROP CONSTRAINT certified_energy_pkey;
ALTER TABLE certified_energy ADD PRIMARY KEY (certificate_id, device_id);
