-- Reads that stay cheap at any size (10,000 nodes, 1,000,000 VMs): every
-- question about one node, one cluster or one VM finds its rows through
-- an index, and so do the foreign keys the database checks on delete.

-- A cluster's nodes in name order, and the clusters -> nodes foreign key.
CREATE INDEX nodes_cluster ON nodes (cluster_id, name);
-- A cluster's blocks in address order (paged address listings).
DROP INDEX blocks_cluster;
CREATE INDEX blocks_cluster ON blocks (cluster_id, node_id, first);
CREATE INDEX blocks_cluster_first ON blocks (cluster_id, first);
-- The nodes -> exclusions foreign key, and a node's carved-out addresses.
CREATE INDEX exclusions_node ON exclusions (node_id);
-- Deleting a NIC sets nic_id to NULL in its closed holdings too (history
-- keeps them): without every row in the index, the database scanned the
-- whole allocations table on each VM delete.
DROP INDEX allocations_nic;
CREATE INDEX allocations_nic ON allocations (nic_id);
-- The node an active VM holding names is its VM's node (listings and the
-- agents a release wakes read it): holdings written before migrations
-- updated it name the node the VM was created on.
UPDATE allocations SET node = (
        SELECT n.name FROM nics ni JOIN vms v ON v.id = ni.vm_id JOIN nodes n ON n.id = v.node_id
        WHERE ni.id = allocations.nic_id)
    WHERE until IS NULL AND kind = 'vm' AND nic_id IS NOT NULL;
-- Reservations alone, in address order (VM holdings are not in it, so a
-- VM create writes nothing here).
CREATE INDEX allocations_reserved ON allocations (address) WHERE until IS NULL AND kind = 'reserved';

-- The change log, numbered by the revision of the commit that made each
-- change: `id` is revision * 2^20 + the change's place in its commit, so
-- entries stay appended in order (one B-tree, always at its end) and "the
-- changes after X" is one range of the key. `cluster` is the cluster a
-- change belongs to; `nodes` whose plans it may change: node names
-- (space-separated), '*' for every node of the cluster, or NULL for none.
-- Agents waiting on their plan are woken from it: a change reaches only
-- the agents it concerns.
CREATE TABLE changes_new (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    subject  TEXT NOT NULL,
    detail   TEXT NOT NULL,
    cluster  TEXT,
    nodes    TEXT
);
INSERT INTO changes_new (id, at, kind, subject, detail)
    SELECT revision << 20, at, kind, subject, detail FROM changes;
DROP TABLE changes;
ALTER TABLE changes_new RENAME TO changes;
-- Older entries were numbered per change, not per commit: the revision
-- continues above them, so the log stays in order.
UPDATE meta SET value = CAST(MAX(CAST(value AS INTEGER), COALESCE((SELECT MAX(id) >> 20 FROM changes), 0)) AS TEXT)
    WHERE key = 'revision';
