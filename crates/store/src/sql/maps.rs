//! The map of a block, as the panel draws it: what each address is (up to
//! a /22), or how many addresses of each state each run holds (larger
//! blocks, at most 256 runs). Bounded work whatever the block's size: one
//! scan of at most 1,024 addresses, or two indexed counts per run.

use std::collections::BTreeMap;

use vmfabric_ipam::{Key, Range, RangeSet, key};
use vmfabric_model::view::{BlockMap, CellState, MAP_RUNS, MAP_SINGLE_MAX, MapCell};
use vmfabric_model::{Block, Error, Result};

use super::{RowExt, SqlStore, Tx, db, kb};

/// What holds one address now.
enum Held {
    Vm(String),
    Reserved(Option<String>),
}

impl SqlStore {
    pub(crate) async fn block_map_tx(&self, tx: &mut Tx, ip: &str) -> Result<BlockMap> {
        let addr = vmfabric_model::network::parse_ip("address", ip)?;
        let b = self
            .block_containing(tx, key::key(addr))
            .await?
            .ok_or_else(|| Error::not_found("block", format!("containing {addr}")))?;
        let exclusions = self.exclusions_of(tx, b.id).await?;
        let total = b.range.len();
        let cells = if total <= MAP_SINGLE_MAX {
            let held = self.held_in(tx, b.range).await?;
            let cooling = self.cooling_in(tx, &b).await?;
            single_cells(&b, &exclusions, &held, &cooling)
        } else {
            // Two indexed counts per run: the same work for a /21 and a
            // /64, however many VMs the block holds.
            let now = self.now().0;
            let mut out = Vec::new();
            for r in runs_of(b.range) {
                let rows = sqlx::query(
                    "SELECT kind, COUNT(*) AS n FROM allocations WHERE until IS NULL AND address >= $1 AND address <= $2 GROUP BY kind",
                )
                .bind(kb(r.first))
                .bind(kb(r.last))
                .fetch_all(&mut **tx)
                .await
                .map_err(db)?;
                let (mut used, mut reserved) = (0u128, 0u128);
                for row in &rows {
                    let n = u128::try_from(row.int("n")?).unwrap_or(0);
                    if row.text("kind")? == "reserved" {
                        reserved += n;
                    } else {
                        used += n;
                    }
                }
                let cool = sqlx::query(
                    "SELECT COUNT(*) AS n FROM released WHERE address >= $1 AND address <= $2 AND block_id = $3 AND usable_at > $4",
                )
                .bind(kb(r.first))
                .bind(kb(r.last))
                .bind(b.id)
                .bind(now)
                .fetch_one(&mut **tx)
                .await
                .map_err(db)?
                .int("n")?;
                let cool = u128::try_from(cool).unwrap_or(0);
                out.push(cell(r, used, reserved, cool, &exclusions));
            }
            out
        };
        let cell_size = if total <= MAP_SINGLE_MAX {
            1
        } else {
            run_size(total)
        };
        Ok(BlockMap {
            cluster: b.cluster.clone(),
            node: b.node.clone(),
            block: b.text(),
            role: b.role,
            cell_size,
            cells,
        })
    }

    /// Every holding in `r`, by address (bounded by the caller: at most
    /// [`MAP_SINGLE_MAX`] addresses).
    async fn held_in(&self, tx: &mut Tx, r: Range) -> Result<BTreeMap<Key, Held>> {
        let rows = sqlx::query(
            "SELECT address, kind, vm, nic_idx, note FROM allocations WHERE until IS NULL AND address >= $1 AND address <= $2",
        )
        .bind(kb(r.first))
        .bind(kb(r.last))
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
        let mut out = BTreeMap::new();
        for row in &rows {
            let held = if row.text("kind")? == "reserved" {
                Held::Reserved(row.opt_text("note")?)
            } else {
                let vm = row.opt_text("vm")?.unwrap_or_default();
                match row.opt_int("nic_idx")? {
                    Some(i) => Held::Vm(format!("VM {vm} (eth{i})")),
                    None => Held::Vm(format!("VM {vm}")),
                }
            };
            out.insert(row.key("address")?, held);
        }
        Ok(out)
    }

    /// Released addresses of `b` still cooling down, with when they are
    /// usable again (microseconds).
    async fn cooling_in(&self, tx: &mut Tx, b: &Block) -> Result<BTreeMap<Key, i64>> {
        let rows = sqlx::query(
            "SELECT address, usable_at FROM released WHERE block_id = $1 AND usable_at > $2",
        )
        .bind(b.id)
        .bind(self.now().0)
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
        let mut out = BTreeMap::new();
        for row in &rows {
            out.insert(row.key("address")?, row.int("usable_at")?);
        }
        Ok(out)
    }
}

/// Addresses per run: a power of two, so runs of a CIDR block align.
fn run_size(total: u128) -> u128 {
    total.div_ceil(MAP_RUNS).next_power_of_two()
}

fn runs_of(r: Range) -> Vec<Range> {
    let size = run_size(r.len());
    let mut out = Vec::new();
    let mut first = r.first;
    loop {
        let last = first.saturating_add(size - 1).min(r.last);
        out.push(Range::new(first, last));
        if last >= r.last {
            break;
        }
        first = last + 1;
    }
    out
}

/// A run's cell: what is excluded in it counts as system, the rest of
/// what is not held is free.
fn cell(r: Range, used: u128, reserved: u128, cooling: u128, ex: &[(Range, String)]) -> MapCell {
    let mut set = RangeSet::new();
    for (e, _) in ex {
        if let Some(i) = e.intersect(&r) {
            set.insert(i);
        }
    }
    let system = set.count();
    let free = r.len().saturating_sub(used + reserved + cooling + system);
    MapCell::run(
        key::addr(r.first),
        key::addr(r.last),
        [used, reserved, cooling, system, free],
    )
}

fn single_cells(
    b: &Block,
    ex: &[(Range, String)],
    held: &BTreeMap<Key, Held>,
    cooling: &BTreeMap<Key, i64>,
) -> Vec<MapCell> {
    let mut out = Vec::new();
    let mut k = b.range.first;
    loop {
        let (state, holder) = if let Some(h) = held.get(&k) {
            match h {
                Held::Vm(v) => (CellState::Used, Some(v.clone())),
                Held::Reserved(note) => (
                    CellState::Reserved,
                    Some(match note {
                        Some(n) if !n.is_empty() => format!("reserved: {n}"),
                        _ => "reserved".to_string(),
                    }),
                ),
            }
        } else if let Some((_, why)) = ex.iter().find(|(r, _)| r.contains(k)) {
            (CellState::System, Some(why.clone()))
        } else if let Some(at) = cooling.get(&k) {
            let at = vmfabric_model::Timestamp(*at);
            (
                CellState::Cooling,
                Some(format!("released, usable again at {at}")),
            )
        } else {
            (CellState::Free, None)
        };
        let a = key::addr(k);
        let mut counts = [0u128; 5];
        counts[state as usize] = 1;
        let mut c = MapCell::run(a, a, counts);
        c.holder = holder;
        out.push(c);
        if k >= b.range.last {
            break;
        }
        k += 1;
    }
    out
}
