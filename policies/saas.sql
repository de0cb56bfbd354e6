-- The schema policies/saas.yaml expects. TIMESTAMPTZ is timestamptz on PostgreSQL,
-- TIMESTAMP(6) (stored in UTC) on MariaDB and a plain timestamp on SQLite.
CREATE TABLE plans (
    code VARCHAR(20) PRIMARY KEY,
    price_cents INTEGER NOT NULL
);
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    email VARCHAR(200) NOT NULL,
    password_hash VARCHAR(200) NOT NULL,
    state VARCHAR(20) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    deleted_at TIMESTAMPTZ NULL
);
CREATE TABLE account_profiles (
    account_id INTEGER NOT NULL,
    field VARCHAR(40) NOT NULL,
    value VARCHAR(200),
    PRIMARY KEY (account_id, field)
);
CREATE TABLE sessions (
    token VARCHAR(64) PRIMARY KEY,
    account_id INTEGER NOT NULL,
    ip VARCHAR(45),
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE device_logs (
    account_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL,
    device_id VARCHAR(100),
    ip VARCHAR(45),
    referrer VARCHAR(400),
    PRIMARY KEY (account_id, seq)
);
CREATE TABLE location_history (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    city VARCHAR(100)
);
