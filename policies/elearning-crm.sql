-- The CRM and marketing automation that policies/elearning.yaml expects (source `crm`).
-- TIMESTAMP is naive UTC; DATETIME(6) on MariaDB.
CREATE TABLE segments (
    id INTEGER PRIMARY KEY,
    name VARCHAR(100) NOT NULL
);
CREATE TABLE contacts (
    id INTEGER PRIMARY KEY,
    email VARCHAR(200) NOT NULL,
    name VARCHAR(200) NULL,
    consented_at TIMESTAMP NOT NULL,
    unsubscribed_at TIMESTAMP NULL
);
CREATE TABLE mail_events (
    id INTEGER PRIMARY KEY,
    contact_id INTEGER NOT NULL REFERENCES contacts (id),
    kind VARCHAR(20) NOT NULL,
    ip VARCHAR(45) NULL,
    user_agent VARCHAR(300) NULL,
    occurred_at TIMESTAMP NOT NULL
);
