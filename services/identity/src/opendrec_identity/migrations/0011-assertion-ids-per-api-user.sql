-- Issue 12: a client assertion's id (jti) is unique per API user, not across all of them: an API user who reuses
-- (or guesses) another's jti must not make that one's assertion count as a replay.
ALTER TABLE client_assertions DROP CONSTRAINT client_assertions_pkey;
ALTER TABLE client_assertions ADD PRIMARY KEY (api_user_id, jti);
