-- The device registry. `external_id` is the owner's own id, unique within its organization;
-- `id` (internal) and `device_uuid` are ours.
CREATE TABLE devices (
    id                      bigserial PRIMARY KEY,
    device_uuid             uuid NOT NULL UNIQUE,
    organization_id         bigint NOT NULL,
    external_id             text NOT NULL,
    project_name            text NOT NULL,
    address                 text NOT NULL,
    latitude                double precision NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    longitude               double precision NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    country_code            char(3) NOT NULL,
    fuel_code               text NOT NULL,
    device_type_code        text NOT NULL,
    capacity_kw             double precision NOT NULL CHECK (capacity_kw > 0),
    commissioning_date      timestamptz NOT NULL,
    grid_interconnection    boolean NOT NULL,
    off_taker               text NOT NULL,
    yield_value             double precision,
    labels                  text,
    impact_story            text,
    data                    text,
    images                  text[] NOT NULL DEFAULT '{}',
    device_description      text,
    energy_storage          boolean NOT NULL DEFAULT false,
    energy_storage_capacity double precision,
    quality_labels          text,
    sdg_benefits            text[] NOT NULL DEFAULT '{}',
    version                 text,
    timezone                text,
    created_by              bigint,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT devices_org_external_id_key UNIQUE (organization_id, external_id)
);

-- "My devices", newest first: an index walk per organization (page 1 never scans the table;
-- `id` grows with creation time, so it also serves keyset pagination on (organization_id, id)).
CREATE INDEX devices_org_newest ON devices (organization_id, id DESC);
