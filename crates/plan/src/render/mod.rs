//! Renderers: plans (and VMs) to the text files the node, the guests and
//! the operator use. Pure and deterministic; every output is snapshot-
//! tested and checked by the real tool (`vtysh`, `nft -c`, `bird -p`,
//! `virt-xml-validate` and `virsh define`, LXD).

pub mod bird;
pub mod frr;
pub mod guest;
pub mod libvirt;
pub mod lxd;
pub mod ndppd;
pub mod nft;
pub mod summary;
