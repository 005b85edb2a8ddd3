CREATE TABLE notes (id bigserial PRIMARY KEY, device_id bigint NOT NULL, trace_id text);
