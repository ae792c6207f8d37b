-- A node token is bound to its node's row, not only its name: a node
-- removed and added again (even in another cluster) is another node.
-- Tokens of nodes already gone are revoked (they outlived their node).
ALTER TABLE tokens ADD COLUMN node_id BIGINT;
UPDATE tokens SET node_id = (SELECT id FROM nodes WHERE nodes.name = tokens.node)
    WHERE node IS NOT NULL;
UPDATE tokens SET revoked_at = CAST(EXTRACT(EPOCH FROM now()) * 1000000 AS BIGINT)
    WHERE node IS NOT NULL AND node_id IS NULL AND revoked_at IS NULL;
CREATE INDEX tokens_node_id ON tokens (node_id);
