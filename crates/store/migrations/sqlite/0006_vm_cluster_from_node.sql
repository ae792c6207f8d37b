-- no-transaction
-- A VM's cluster is its node's: vms.cluster_id repeated it, and its
-- foreign key made deleting a cluster scan every VM of the installation
-- (an index for it would cost every VM create one more page, measured).
-- SQLite drops a column with a foreign key only by rebuilding the table,
-- which must happen with foreign keys off: dropping the old table would
-- otherwise delete every NIC (ON DELETE CASCADE). So this migration runs
-- outside sqlx's transaction, in its own, and can run again if it was
-- interrupted after its commit.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
DROP TABLE IF EXISTS vms_new;
CREATE TABLE vms_new (
    id         INTEGER PRIMARY KEY,
    node_id    INTEGER NOT NULL REFERENCES nodes (id),
    name       TEXT NOT NULL UNIQUE,
    if_prefix  TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
INSERT INTO vms_new (id, node_id, name, if_prefix, created_at)
    SELECT id, node_id, name, if_prefix, created_at FROM vms;
DROP TABLE vms;
ALTER TABLE vms_new RENAME TO vms;
-- A node's VMs, and the nodes -> vms foreign key. Not (node, name): VMs
-- arrive in no name order, and such an index made every batch of creates
-- write a page per VM instead of appending (measured).
CREATE INDEX vms_node ON vms (node_id);
COMMIT;
PRAGMA foreign_keys = ON;
