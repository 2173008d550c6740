-- A typical note-taking app: notebooks hold notes, notes nest under other
-- notes (a reference to the table itself) and carry attachments; tags are
-- named uniquely and attach to notes through a join table. References go
-- three levels deep (notebooks -> notes -> attachments), and deleting a
-- notebook takes its notes, their sub-notes and their attachments along.
-- Notes sort by a REAL position; attachments keep their bytes in a BLOB.
--
--   syncgate check --schema examples/schemas/notes.sql

CREATE TABLE notebooks (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    color TEXT
);

CREATE TABLE notes (
    id INTEGER PRIMARY KEY,
    notebook_id INTEGER REFERENCES notebooks(id) ON DELETE CASCADE,
    parent_id INTEGER REFERENCES notes(id) ON DELETE CASCADE,
    title TEXT,
    body TEXT,
    pinned INTEGER,
    -- Where the note sorts among its siblings: a fraction between its
    -- neighbours' positions, so a move writes one row.
    position REAL,
    edited_at INTEGER
);

CREATE TABLE attachments (
    id INTEGER PRIMARY KEY,
    note_id INTEGER REFERENCES notes(id) ON DELETE CASCADE,
    file_name TEXT,
    media_type TEXT,
    size INTEGER,
    sha256 TEXT,
    -- The file itself (small files are kept inline).
    content BLOB
);

CREATE TABLE tags (
    id INTEGER PRIMARY KEY,
    label TEXT NOT NULL UNIQUE,
    color TEXT
);

CREATE TABLE note_tags (
    id INTEGER PRIMARY KEY,
    note_id INTEGER REFERENCES notes(id) ON DELETE CASCADE,
    tag_id INTEGER REFERENCES tags(id) ON DELETE CASCADE,
    added_at INTEGER
);
