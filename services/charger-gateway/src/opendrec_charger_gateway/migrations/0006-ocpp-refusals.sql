-- A submitted OCPP transaction that readings refused (read.rejected, source ocpp): why, for GET .../transactions.
ALTER TABLE ocpp_transactions ADD COLUMN refused_reasons jsonb;
