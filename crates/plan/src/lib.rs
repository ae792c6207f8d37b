//! Node plans and their renderers: what a node's kernel, FRR, nftables and
//! ndppd must look like for its VMs, and the files the guests and the
//! operator need. Pure: no I/O; the same input always gives the same bytes.
//!
//! Data flows one way: the store assembles a [`PlanInput`], [`build`] turns
//! it into a [`NodePlan`], the renderers turn plans into text, and the agent
//! (next) compares plans with the kernel.

pub mod build;
pub mod check;
pub mod diff;
pub mod files;
pub mod render;
pub mod synthetic;
pub mod types;

pub use build::{PlanInput, build, guest_peer, host_mac};
pub use types::*;
