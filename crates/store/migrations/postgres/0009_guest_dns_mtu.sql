-- What guests are told besides their addresses: resolvers and search
-- domains (JSON, as the model's Dns; NULL: none) per cluster and per
-- routing node, and the cluster's MTU (NULL: the default).
ALTER TABLE clusters ADD COLUMN dns TEXT;
ALTER TABLE clusters ADD COLUMN mtu INTEGER;
ALTER TABLE nodes ADD COLUMN dns TEXT;
