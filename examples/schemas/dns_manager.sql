-- The schema of the application this project's bug catalog came from: a
-- DNS manager that keeps domains, hosts, certificates and DNS records in a
-- SQLite cache on each workstation, synced through a shared remote. Its own
-- timestamp columns (updated_at) are ordinary synced columns here.
--
--   syncgate check --schema examples/schemas/dns_manager.sql

CREATE TABLE domains (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,     -- the natural key: one row per domain name
    registrar TEXT,
    expires_at INTEGER,
    updated_at INTEGER
);

CREATE TABLE hosts (
    id INTEGER PRIMARY KEY,
    hostname TEXT NOT NULL,
    ip TEXT,
    updated_at INTEGER
);

CREATE TABLE certificates (
    id INTEGER PRIMARY KEY,
    domain_id INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    issuer TEXT,
    not_after INTEGER,
    updated_at INTEGER
);

CREATE TABLE dns_records (
    id INTEGER PRIMARY KEY,
    domain_id INTEGER REFERENCES domains(id) ON DELETE CASCADE,
    host_id INTEGER REFERENCES hosts(id) ON DELETE CASCADE,
    kind TEXT NOT NULL DEFAULT 'A',
    value TEXT,
    ttl INTEGER NOT NULL DEFAULT 3600,
    updated_at INTEGER
);

CREATE INDEX dns_records_by_domain ON dns_records(domain_id);
