-- vmfabric schema, PostgreSQL dialect. Addresses are 16-byte big-endian keys
-- (IPv4 mapped into ::ffff:0:0/96), so byte order is numeric order.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE clusters (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    network_type     TEXT NOT NULL,
    vm_gateway       TEXT,
    vm_gateway6      TEXT,
    community        TEXT,
    asn              BIGINT,
    route_reflectors TEXT NOT NULL DEFAULT '[]',
    cooldown_s       BIGINT NOT NULL,
    reuse            TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);

CREATE TABLE nodes (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cluster_id     BIGINT NOT NULL REFERENCES clusters (id),
    name           TEXT NOT NULL UNIQUE,
    address        TEXT NOT NULL,
    address_prefix BIGINT,
    uplink         TEXT NOT NULL,
    bridge         TEXT NOT NULL,
    primary_ip     TEXT,
    primary_prefix BIGINT,
    ipv6_address   TEXT,
    ipv6_gateway   TEXT,
    ndp_proxy      TEXT,
    created_at     BIGINT NOT NULL
);

-- Every address a node holds, unique in the installation.
CREATE TABLE node_addresses (
    address BYTEA PRIMARY KEY,
    node_id BIGINT NOT NULL REFERENCES nodes (id) ON DELETE CASCADE
);

-- Blocks VM addresses are allocated from: networks of a cluster's pool,
-- and routing nodes' subnets, ranges and IPv6 /64s. Disjoint by rule.
CREATE TABLE blocks (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cluster_id BIGINT NOT NULL REFERENCES clusters (id),
    node_id    BIGINT REFERENCES nodes (id),
    role       TEXT NOT NULL,
    first      BYTEA NOT NULL UNIQUE,
    last       BYTEA NOT NULL,
    prefix_len BIGINT,
    gateway    TEXT,
    -- counters kept in the same transactions as the rows they count
    used       BIGINT NOT NULL DEFAULT 0,
    reserved   BIGINT NOT NULL DEFAULT 0,
    released   BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE INDEX blocks_cluster ON blocks (cluster_id, node_id);

-- Addresses of a block never handed out, and why (may overlap).
CREATE TABLE exclusions (
    block_id BIGINT NOT NULL REFERENCES blocks (id) ON DELETE CASCADE,
    first    BYTEA NOT NULL,
    last     BYTEA NOT NULL,
    reason   TEXT NOT NULL,
    node_id  BIGINT REFERENCES nodes (id) ON DELETE CASCADE
);
CREATE INDEX exclusions_block ON exclusions (block_id, first);

-- Never-used free space of each block, as disjoint coalesced ranges.
CREATE TABLE free_ranges (
    block_id BIGINT NOT NULL REFERENCES blocks (id) ON DELETE CASCADE,
    first    BYTEA NOT NULL,
    last     BYTEA NOT NULL,
    PRIMARY KEY (block_id, first)
);

-- Released addresses waiting to be handed out again.
CREATE TABLE released (
    address   BYTEA PRIMARY KEY,
    block_id  BIGINT NOT NULL REFERENCES blocks (id) ON DELETE CASCADE,
    usable_at BIGINT NOT NULL
);
CREATE INDEX released_order ON released (block_id, usable_at, address);

CREATE TABLE vms (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cluster_id BIGINT NOT NULL REFERENCES clusters (id),
    node_id    BIGINT NOT NULL REFERENCES nodes (id),
    name       TEXT NOT NULL UNIQUE,
    if_prefix  TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE INDEX vms_node ON vms (node_id);

CREATE TABLE nics (
    id    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    vm_id BIGINT NOT NULL REFERENCES vms (id) ON DELETE CASCADE,
    idx   BIGINT NOT NULL,
    mac   TEXT NOT NULL UNIQUE,
    UNIQUE (vm_id, idx)
);

-- Every holding of an address, kept forever: `until` is NULL while it lasts.
CREATE TABLE allocations (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    address  BYTEA NOT NULL,
    block_id BIGINT NOT NULL,
    kind     TEXT NOT NULL,
    nic_id   BIGINT REFERENCES nics (id) ON DELETE SET NULL,
    vm       TEXT,
    nic_idx  BIGINT,
    mac      TEXT,
    note     TEXT,
    cluster  TEXT NOT NULL,
    node     TEXT,
    since    BIGINT NOT NULL,
    until    BIGINT
);
-- The guarantee: one active holder per address, whatever the code does.
CREATE UNIQUE INDEX allocations_active ON allocations (address) WHERE until IS NULL;
CREATE INDEX allocations_history ON allocations (address, since);
CREATE INDEX allocations_nic ON allocations (nic_id) WHERE until IS NULL;

-- Append-only change log; the revision orders every change.
CREATE TABLE changes (
    revision BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       BIGINT NOT NULL,
    kind     TEXT NOT NULL,
    subject  TEXT NOT NULL,
    detail   TEXT NOT NULL
);
