-- The schema policies/webshop.yaml expects. Portable SQL: TIMESTAMP becomes DATETIME(6)
-- on MariaDB/MySQL (see retention.policies.examples.schema_statements). Times are UTC.
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    email VARCHAR(200) NOT NULL,
    name VARCHAR(200),
    created_at TIMESTAMP NOT NULL,
    closed_at TIMESTAMP
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    account_id INTEGER,
    status VARCHAR(20) NOT NULL,
    invoice_address VARCHAR(400),
    created_at TIMESTAMP NOT NULL,
    completed_at TIMESTAMP
);
CREATE TABLE order_lines (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL,
    product VARCHAR(200) NOT NULL,
    quantity INTEGER NOT NULL
);
CREATE TABLE subscriptions (
    id INTEGER PRIMARY KEY,
    account_id INTEGER,
    plan VARCHAR(50) NOT NULL,
    started_at TIMESTAMP NOT NULL,
    cancelled_at TIMESTAMP
);
CREATE TABLE contact_requests (
    id INTEGER PRIMARY KEY,
    email VARCHAR(200) NOT NULL,
    message VARCHAR(2000),
    received_at TIMESTAMP NOT NULL,
    resolved_at TIMESTAMP
);
CREATE TABLE newsletter_subscribers (
    email VARCHAR(200) PRIMARY KEY,
    subscribed_at TIMESTAMP NOT NULL,
    unsubscribed_at TIMESTAMP
);
CREATE TABLE visits (
    id INTEGER PRIMARY KEY,
    visited_at TIMESTAMP NOT NULL,
    ip VARCHAR(45),
    user_agent VARCHAR(400),
    path VARCHAR(400)
);
