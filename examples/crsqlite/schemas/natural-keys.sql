-- Natural keys without references: Integrity can only fail on a natural-key duplicate (two
-- replicas inserted one key apart), which cr-sqlite documents (README.md).
CREATE TABLE tags (id INTEGER PRIMARY KEY, label TEXT UNIQUE, color TEXT, uses INTEGER);
CREATE TABLE hosts (id INTEGER PRIMARY KEY, hostname TEXT, ip TEXT);
