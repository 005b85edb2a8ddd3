-- Issue 14. The ledger anyone can verify: every issuance, transfer, retirement, lock and release, hash-chained
-- (ledger/domain.py states the hash). One chain per service. `ledger_head` is one row, locked FOR UPDATE by every
-- append (held to the end of the appending transaction), so appends are serialized and the head always names the
-- last committed entry; the unique previous_hash makes a fork impossible even for a writer that skipped the lock.
CREATE TABLE ledger_entries (
    sequence       bigint      PRIMARY KEY CHECK (sequence > 0),
    kind           text        NOT NULL CHECK (kind IN ('issuance', 'transfer', 'retirement', 'lock', 'release')),
    certificate_id uuid        NOT NULL,
    body           text        NOT NULL,  -- the canonical JSON of the body (ledger/domain.py), as hashed
    recorded_at    timestamptz NOT NULL,
    previous_hash  text        NOT NULL UNIQUE CHECK (previous_hash ~ '^[0-9a-f]{64}$'),
    hash           text        NOT NULL UNIQUE CHECK (hash ~ '^[0-9a-f]{64}$')
);

CREATE INDEX ledger_entries_certificate ON ledger_entries (certificate_id, sequence);

CREATE TABLE ledger_head (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    sequence bigint  NOT NULL,
    hash     text    NOT NULL
);

INSERT INTO ledger_head (only_row, sequence, hash) VALUES (true, 0, repeat('0', 64));
