-- D-REC's SDGBenefits of a device (certifiedlogOfdevices' and certificateReadModule's SDGBenefits filter), from
-- device.registered/updated; NULL for a state announced before this migration (until its next device.updated).
ALTER TABLE devices ADD COLUMN sdg_benefits text[];
