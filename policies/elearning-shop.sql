-- The web shop and course platform that policies/elearning.yaml expects (source `shop`).
-- TIMESTAMP is naive UTC; DATETIME(6) on MariaDB.
CREATE TABLE courses (
    code VARCHAR(20) PRIMARY KEY,
    title VARCHAR(200) NOT NULL
);
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    email VARCHAR(200) NOT NULL,
    name VARCHAR(200) NOT NULL,
    created_at TIMESTAMP NOT NULL,
    closed_at TIMESTAMP NULL
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL,
    status VARCHAR(20) NOT NULL,
    billing_address VARCHAR(300) NOT NULL,
    created_at TIMESTAMP NOT NULL,
    paid_at TIMESTAMP NULL
);
CREATE TABLE order_lines (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders (id),
    course_code VARCHAR(20) NOT NULL,
    price_ore INTEGER NOT NULL
);
CREATE TABLE enrolments (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL,
    course_code VARCHAR(20) NOT NULL,
    progress INTEGER NOT NULL,
    last_activity_at TIMESTAMP NOT NULL
);
