//! The IPAM engine of vmfabric: address keys, CIDR blocks and ranges, range
//! sets and the per-block allocator. Pure: no I/O, no clock, no knowledge of
//! clusters or VMs.

pub mod cidr;
pub mod key;
pub mod pool;
pub mod set;

pub use cidr::{Cidr, ParseError, Range};
pub use key::{Family, Key};
pub use pool::{KeyState, Pool, PoolError, Reuse, Tick, Usage};
pub use set::RangeSet;
