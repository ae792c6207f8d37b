-- A VM create finds its node's blocks (routing: the node's subnets and
-- ranges) by node, not by scanning every block of the installation.
CREATE INDEX blocks_node ON blocks (node_id);
