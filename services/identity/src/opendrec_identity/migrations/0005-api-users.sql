-- API users: an integrator's account that gets tokens by signing client assertions (RFC 7523)
-- with its own private key. Only the public key is stored.

CREATE TABLE api_users (
    id              uuid        PRIMARY KEY,  -- the client_id (iss and sub of its assertions)
    user_id         bigint      NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    public_key_pem  text        NOT NULL,
    key_created_at  timestamptz NOT NULL DEFAULT now(),
    -- the state of its module permission request: Request (waiting), Active (approved), Deactive
    permission_status text      NOT NULL DEFAULT 'Request' CHECK (permission_status IN ('Request', 'Active', 'Deactive')),
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- What an API user asked for, per module; copied into user_permissions only while approved.
CREATE TABLE api_user_permission_requests (
    api_user_id uuid NOT NULL REFERENCES api_users (id) ON DELETE CASCADE,
    module      text NOT NULL REFERENCES acl_modules (name) ON UPDATE CASCADE ON DELETE CASCADE,
    actions     text NOT NULL CHECK (actions ~ '^R?W?U?D?$' AND actions <> ''),
    PRIMARY KEY (api_user_id, module)
);

-- Assertion ids seen, until the assertion expires: a replayed assertion is refused.
CREATE TABLE client_assertions (
    jti         text        PRIMARY KEY,
    api_user_id uuid        NOT NULL REFERENCES api_users (id) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL
);

CREATE INDEX client_assertions_expiry ON client_assertions (expires_at);
