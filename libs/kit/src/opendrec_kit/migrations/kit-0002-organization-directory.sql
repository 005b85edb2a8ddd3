-- Organizations as other services know them, kept from organization.registered: who may act for which.
-- (Named apart from identity's own `organizations` table, which lives in its database beside this one.)
CREATE TABLE organization_directory (
    organization_id   bigint      PRIMARY KEY,
    name              text        NOT NULL,
    organization_type text        NOT NULL,
    api_user_id       text,
    registered_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX organization_directory_api_user ON organization_directory (api_user_id) WHERE api_user_id IS NOT NULL;
