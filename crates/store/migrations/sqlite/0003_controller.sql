-- The controller: API tokens (only a hash of the secret is kept), the
-- answers of idempotent requests, and what each node's agent last reported.
CREATE TABLE tokens (
    id         INTEGER PRIMARY KEY,
    name       TEXT,
    role       TEXT NOT NULL,
    node       TEXT,
    hash       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE idempotency (
    key        TEXT PRIMARY KEY,
    response   TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- Old keys are forgotten (Store::forget_idempotency).
CREATE INDEX idempotency_age ON idempotency (created_at);

CREATE TABLE agent_status (
    node       TEXT PRIMARY KEY,
    report     TEXT NOT NULL,
    at         INTEGER NOT NULL
);

INSERT INTO meta (key, value) VALUES ('revision', '0');
