-- Issue 15. The D-REC issuance logs name a device's country (CheckCertificateIssueDateLogForDeviceGroupEntity
-- .countryCode) and time zone (perDeviceCertificateLog[].timezone): kept from device.registered (NULL for a device
-- registered before, or whose event said none).
ALTER TABLE devices
    ADD COLUMN country_code text,
    ADD COLUMN timezone     text;
