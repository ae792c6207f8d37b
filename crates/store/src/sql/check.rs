//! `check`: verify every invariant of the stored state, the way fsck checks
//! a file system. Used after crashes in tests and by operators after
//! restoring a backup.

use vmfabric_ipam::{Range, RangeSet};

use super::clusters::{BLOCK_COLS, BLOCK_FROM, block_from_row};
use super::{RowExt, SqlStore, Tx, db};
use crate::CheckReport;
use vmfabric_model::Result;

impl SqlStore {
    pub(crate) async fn check_tx(&self, tx: &mut Tx) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        let sql = format!("SELECT {BLOCK_COLS} FROM {BLOCK_FROM} ORDER BY b.first");
        let rows = sqlx::query(SqlStore::dynamic(sql))
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
        let blocks = rows
            .iter()
            .map(block_from_row)
            .collect::<Result<Vec<_>>>()?;
        report.blocks = blocks.len() as u64;
        for w in blocks.windows(2) {
            if w[0].range.last >= w[1].range.first {
                report
                    .problems
                    .push(format!("{} overlaps {}", w[0].label(), w[1].label()));
            }
        }
        for b in &blocks {
            let p = &mut report.problems;
            let label = b.label();
            // Free ranges: inside the block, ordered, disjoint, coalesced.
            let free = sqlx::query(
                "SELECT first, last FROM free_ranges WHERE block_id = $1 ORDER BY first",
            )
            .bind(b.id)
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
            let mut fresh: u128 = 0;
            let mut prev: Option<Range> = None;
            let mut fresh_set = RangeSet::new();
            for r in &free {
                let (f, l) = (r.key("first")?, r.key("last")?);
                if f > l || !b.range.contains(f) || !b.range.contains(l) {
                    p.push(format!("{label}: free range outside the block"));
                    continue;
                }
                let cur = Range::new(f, l);
                if let Some(pr) = prev
                    && pr.last.saturating_add(1) >= cur.first
                {
                    p.push(format!(
                        "{label}: free ranges {pr} and {cur} overlap or touch"
                    ));
                }
                prev = Some(cur);
                fresh += cur.len();
                fresh_set.insert(cur);
            }
            // Counters against the rows they count.
            // Holdings are found by address (the block's range), so the
            // check reads each holding once: linear in the installation.
            let counts = sqlx::query(
                "SELECT used, reserved, released, \
                 (SELECT COUNT(*) FROM allocations WHERE until IS NULL AND address >= $2 AND address <= $3 AND block_id = $1 AND kind = 'vm') AS n_used, \
                 (SELECT COUNT(*) FROM allocations WHERE until IS NULL AND address >= $2 AND address <= $3 AND block_id = $1 AND kind = 'reserved') AS n_reserved, \
                 (SELECT COUNT(*) FROM released WHERE block_id = $1) AS n_released \
                 FROM blocks WHERE id = $1",
            )
            .bind(b.id)
            .bind(super::kb(b.range.first))
            .bind(super::kb(b.range.last))
            .fetch_one(&mut **tx)
            .await
            .map_err(db)?;
            let mut held: u128 = 0;
            for (counter, actual) in [
                ("used", "n_used"),
                ("reserved", "n_reserved"),
                ("released", "n_released"),
            ] {
                let (c, a) = (counts.int(counter)?, counts.int(actual)?);
                if c != a {
                    p.push(format!(
                        "{label}: counter {counter} is {c} but {a} rows exist"
                    ));
                }
                held += u128::try_from(a).unwrap_or(0);
            }
            // Every address in exactly one state: the states add up.
            let mut excluded = RangeSet::new();
            for (r, _) in self.exclusions_of(tx, b.id).await? {
                if let Some(i) = r.intersect(&b.range) {
                    excluded.insert(i);
                }
                if fresh_set.intersects(&r) {
                    p.push(format!("{label}: excluded {r} is also free"));
                }
            }
            let p = &mut report.problems;
            let sum = excluded.count() + held + fresh;
            if sum != b.range.len() {
                p.push(format!(
                    "{label}: {} addresses, but {} excluded + {held} held or released + {fresh} free = {sum}",
                    b.range.len(),
                    excluded.count()
                ));
            }
            // Nothing both held and free.
            let both = sqlx::query(
                "SELECT COUNT(*) AS n FROM allocations a WHERE a.until IS NULL AND a.address >= $2 AND a.address <= $3 AND (a.block_id <> $1 OR EXISTS (SELECT 1 FROM released r WHERE r.address = a.address) OR EXISTS (SELECT 1 FROM free_ranges f WHERE f.block_id = $1 AND f.first <= a.address AND f.last >= a.address))",
            )
            .bind(b.id)
            .bind(super::kb(b.range.first))
            .bind(super::kb(b.range.last))
            .fetch_one(&mut **tx)
            .await
            .map_err(db)?
            .int("n")?;
            if both > 0 {
                p.push(format!(
                    "{label}: {both} held addresses are also free, released or counted in another block"
                ));
            }
        }
        let rows = sqlx::query(
            "SELECT \
             (SELECT COUNT(*) FROM allocations WHERE until IS NULL) AS active, \
             (SELECT COUNT(*) FROM vms) AS vms, \
             (SELECT COUNT(*) FROM allocations a WHERE a.until IS NULL AND a.kind = 'vm' AND NOT EXISTS (SELECT 1 FROM nics n WHERE n.id = a.nic_id)) AS orphans, \
             (SELECT COUNT(*) FROM allocations a WHERE a.until IS NULL AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.id = a.block_id AND a.address >= b.first AND a.address <= b.last)) AS blockless, \
             (SELECT COUNT(*) FROM allocations a JOIN nics ni ON ni.id = a.nic_id JOIN vms v ON v.id = ni.vm_id JOIN nodes n ON n.id = v.node_id WHERE a.until IS NULL AND (a.node IS NULL OR a.node <> n.name)) AS misplaced, \
             (SELECT COUNT(*) FROM vms v WHERE NOT EXISTS (SELECT 1 FROM nics n WHERE n.vm_id = v.id AND n.idx = 0)) AS nicless",
        )
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?;
        report.active_allocations = u64::try_from(rows.int("active")?).unwrap_or(0);
        report.vms = u64::try_from(rows.int("vms")?).unwrap_or(0);
        for (col, what) in [
            ("orphans", "active VM allocations whose NIC does not exist"),
            ("blockless", "active allocations outside their block"),
            (
                "misplaced",
                "active VM allocations that name another node than their VM's",
            ),
            ("nicless", "VMs without a first NIC"),
        ] {
            let n = rows.int(col)?;
            if n > 0 {
                report.problems.push(format!("{n} {what}"));
            }
        }
        Ok(report)
    }
}
