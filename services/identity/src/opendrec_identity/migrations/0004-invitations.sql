-- Invitations to join an organization. The mailed token (stored as SHA-256) lets someone without
-- an account register straight into the organization; account holders accept or reject by id.

CREATE TABLE invitations (
    id               bigserial   PRIMARY KEY,
    organization_id  bigint      NOT NULL REFERENCES organizations (id),
    email            text        NOT NULL CHECK (email = lower(email)),
    role             text        NOT NULL REFERENCES roles (name),
    status           text        NOT NULL DEFAULT 'Pending' CHECK (status IN ('Pending', 'Accepted', 'Rejected')),
    sender_id        bigint      NOT NULL REFERENCES users (id),
    token_hash       text        NOT NULL UNIQUE,
    expires_at       timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- One open invitation per person and organization.
CREATE UNIQUE INDEX invitations_pending_unique ON invitations (organization_id, email) WHERE status = 'Pending';
CREATE INDEX invitations_organization ON invitations (organization_id, id);
