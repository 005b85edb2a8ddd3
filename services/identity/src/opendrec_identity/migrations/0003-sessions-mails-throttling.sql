-- Access tokens issued (so a logout, a password change or a removal can revoke them),
-- single-use e-mail tokens, the outgoing mail queue, and login throttling state.

CREATE TABLE access_tokens (
    jti         text        PRIMARY KEY,
    user_id     bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);

CREATE INDEX access_tokens_live ON access_tokens (user_id, expires_at) WHERE revoked_at IS NULL;

-- E-mail confirmation and password reset tokens: only a SHA-256 of the token is stored
-- (the token is 256 random bits, so a fast hash is enough).
CREATE TABLE user_tokens (
    id          bigserial   PRIMARY KEY,
    user_id     bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     text        NOT NULL CHECK (purpose IN ('confirm_email', 'reset_password')),
    token_hash  text        NOT NULL UNIQUE,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX user_tokens_open ON user_tokens (user_id, purpose) WHERE used_at IS NULL;

-- Mails are written in the transaction that causes them and sent after commit by a sender
-- loop; a sent mail's row is deleted (its body may hold a one-time token).
CREATE TABLE mails (
    id              bigserial   PRIMARY KEY,
    recipient       text        NOT NULL,
    subject         text        NOT NULL,
    body            text        NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX mails_due ON mails (next_attempt_at);

-- Failed logins per key ('account:<email>' or 'address:<ip>'), shared by every identity instance.
CREATE TABLE login_throttle (
    key           text        PRIMARY KEY,
    failures      integer     NOT NULL DEFAULT 0,
    window_start  timestamptz NOT NULL DEFAULT now(),
    blocked_until timestamptz
);
