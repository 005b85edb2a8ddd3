-- Organizations, their users, and grants given to one user on top of their role's.

CREATE TABLE organizations (
    id                bigserial PRIMARY KEY,
    name              text        NOT NULL,
    address           text,
    organization_type text        NOT NULL CHECK (organization_type IN ('Developer', 'Buyer', 'ApiUser', 'Admin')),
    status            text        NOT NULL DEFAULT 'Active' CHECK (status IN ('Submitted', 'Denied', 'Active')),
    secret_key_hash   text,       -- argon2id; the key itself is never stored
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Organization names are unique regardless of letter case.
CREATE UNIQUE INDEX organizations_name_unique ON organizations (lower(name));

CREATE TABLE users (
    id               bigserial PRIMARY KEY,
    organization_id  bigint      NOT NULL REFERENCES organizations (id),
    first_name       text        NOT NULL,
    last_name        text        NOT NULL,
    -- stored lower-cased, so the unique index makes e-mails unique regardless of letter case
    email            text        NOT NULL CHECK (email = lower(email)),
    password_hash    text        NOT NULL,  -- argon2id
    role             text        NOT NULL REFERENCES roles (name),
    status           text        NOT NULL DEFAULT 'Active' CHECK (status IN ('Pending', 'Active', 'Suspended', 'Deleted')),
    email_confirmed  boolean     NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX users_email_unique ON users (email);
CREATE INDEX users_organization ON users (organization_id);
CREATE INDEX users_admins ON users (role) WHERE role = 'Admin';

CREATE TABLE user_permissions (
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    module  text   NOT NULL REFERENCES acl_modules (name) ON UPDATE CASCADE ON DELETE CASCADE,
    actions text   NOT NULL CHECK (actions ~ '^R?W?U?D?$' AND actions <> ''),
    PRIMARY KEY (user_id, module)
);
