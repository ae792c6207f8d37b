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
UPDATE allocations a SET node = n.name
    FROM nics ni JOIN vms v ON v.id = ni.vm_id JOIN nodes n ON n.id = v.node_id
    WHERE ni.id = a.nic_id AND a.until IS NULL AND a.kind = 'vm' AND a.node IS DISTINCT FROM n.name;
-- Reservations alone, in address order (VM holdings are not in it, so a
-- VM create writes nothing here).
CREATE INDEX allocations_reserved ON allocations (address) WHERE until IS NULL AND kind = 'reserved';

-- The change log, numbered by the revision of the commit that made each
-- change: `id` is revision * 2^20 + the change's place in its commit, so
-- "the changes after X" is one range of the key. `cluster` is the cluster
-- a change belongs to; `nodes` whose plans it may change: node names
-- (space-separated), '*' for every node of the cluster, or NULL for none.
-- Agents waiting on their plan are woken from it: a change reaches only
-- the agents it concerns.
ALTER TABLE changes ALTER COLUMN revision DROP IDENTITY;
-- Renumbered without the key: row by row, revision 1 << 20 would meet the
-- old revision 1048576 while it still exists.
ALTER TABLE changes DROP CONSTRAINT changes_pkey;
UPDATE changes SET revision = revision << 20;
ALTER TABLE changes RENAME COLUMN revision TO id;
ALTER TABLE changes ADD PRIMARY KEY (id);
ALTER TABLE changes ADD COLUMN cluster TEXT;
ALTER TABLE changes ADD COLUMN nodes TEXT;
-- Older entries were numbered per change, not per commit: the revision
-- continues above them, so the log stays in order.
UPDATE meta SET value = CAST(GREATEST(CAST(value AS BIGINT), COALESCE((SELECT MAX(id) >> 20 FROM changes), 0)) AS TEXT)
    WHERE key = 'revision';
