-- A VM create finds its node's blocks (routing: the node's subnets and
-- ranges) by node, not by scanning every block of the installation.
CREATE INDEX blocks_node ON blocks (node_id);

-- The change log is append-only, so a plain INTEGER PRIMARY KEY already
-- numbers it in order; AUTOINCREMENT only added a write of sqlite_sequence
-- to every change (one page of the ~16 a VM create writes).
CREATE TABLE changes_new (
    revision INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    subject  TEXT NOT NULL,
    detail   TEXT NOT NULL
);
INSERT INTO changes_new (revision, at, kind, subject, detail)
    SELECT revision, at, kind, subject, detail FROM changes;
DROP TABLE changes;
ALTER TABLE changes_new RENAME TO changes;
