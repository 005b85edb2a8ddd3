-- Issue 16: a read is written once and its certified_wh updated once, right after (in the same transaction when
-- it has settled). With pages left half free the update stays on the row's page and touches no index (a HOT
-- update) instead of adding an entry to each of the table's indexes. Pages written from now on.
ALTER TABLE reads SET (fillfactor = 50);
