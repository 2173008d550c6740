-- Tables with nothing cr-sqlite leaves unenforced across merges: no natural key (UNIQUE) and
-- no reference. With the built-in schema most failing cases stop at an Integrity violation
-- cr-sqlite documents (README.md); on these tables every other property is reached.
CREATE TABLE hosts (id INTEGER PRIMARY KEY, hostname TEXT, ip TEXT, port INTEGER);
CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT, pinned INTEGER);
