-- References without natural keys: Integrity can only fail on a dangling reference (a child
-- inserted under a parent another replica deleted), which cr-sqlite documents (README.md).
CREATE TABLE folders (id INTEGER PRIMARY KEY, title TEXT, color TEXT);
CREATE TABLE files (id INTEGER PRIMARY KEY, folder_id INTEGER REFERENCES folders(id) ON DELETE CASCADE,
                    name TEXT, size INTEGER);
CREATE TABLE comments (id INTEGER PRIMARY KEY, file_id INTEGER REFERENCES files(id) ON DELETE CASCADE,
                       parent_id INTEGER REFERENCES comments(id) ON DELETE CASCADE, body TEXT);
