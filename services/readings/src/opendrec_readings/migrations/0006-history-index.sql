-- History overlap checks (store.history_between) look for the device's History intervals ending
-- after a batch starts. Through the primary key (device_id, end_at) that walked every later
-- interval of the device, Delta and Aggregate included (~7 ms a batch for 3 years of 15-minute
-- reads, growing with the device's age). Only History rows are in this index: ongoing reads,
-- the bulk of the writes, don't pay for it.
CREATE INDEX intervals_history ON intervals (device_id, end_at) INCLUDE (start_at) WHERE read_type = 'History';
