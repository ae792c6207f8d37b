-- A VM's cluster is its node's: vms.cluster_id repeated it, and its
-- foreign key made deleting a cluster scan every VM of the installation
-- (an index for it would cost every VM create one more index entry).
ALTER TABLE vms DROP COLUMN cluster_id;
