-- What runs a cluster's VMs (kvm: taps, lxd: veth pairs), and the uplink
-- MAC of a node when the operator knows it (the agent reads it otherwise).
ALTER TABLE clusters ADD COLUMN virtualization TEXT NOT NULL DEFAULT 'kvm';
ALTER TABLE nodes ADD COLUMN uplink_mac TEXT;
