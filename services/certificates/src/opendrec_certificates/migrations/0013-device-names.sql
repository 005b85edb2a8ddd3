-- The REC inventory's DeviceName and FuelType/EnergyValue (issue 14): the device's project name and its fuel's
-- I-REC name, from device.registered/updated (NULL for states announced before they were).
ALTER TABLE devices
    ADD COLUMN project_name text,
    ADD COLUMN fuel_name    text;
