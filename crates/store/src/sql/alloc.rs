//! The allocator of `vmfabric_ipam::Pool`, kept in tables instead of memory.
//!
//! Per block, `free_ranges` holds the never-used free space as disjoint
//! coalesced ranges and `released` the addresses given back, each with the
//! time it may be handed out again. Every operation reads and writes O(1)
//! rows through the (block_id, first) and (block_id, usable_at) indexes, so
//! its cost depends neither on the size nor on the fill of the block. The
//! order of allocation is the engine's: the property test in
//! `tests/store_vs_engine.rs` drives both with the same operations.

use vmfabric_ipam::{Key, Range, Reuse};

use super::{Counters, RELEASED, RowExt, Tx, db, kb};
use vmfabric_model::Result;

/// What the allocator needs to know about a block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockAlloc {
    pub id: i64,
    pub reuse: Reuse,
    /// Microseconds a released address waits.
    pub cooldown: i64,
}

/// Fill a new block's free space: the block minus `holes`.
pub(crate) async fn seed_block(
    tx: &mut Tx,
    block: i64,
    range: Range,
    holes: &[Range],
) -> Result<()> {
    let mut free = vmfabric_ipam::RangeSet::from_range(range);
    for h in holes {
        free.remove(*h);
    }
    for r in free.ranges() {
        insert_range(tx, block, r).await?;
    }
    Ok(())
}

async fn insert_range(tx: &mut Tx, block: i64, r: Range) -> Result<()> {
    sqlx::query("INSERT INTO free_ranges (block_id, first, last) VALUES ($1, $2, $3)")
        .bind(block)
        .bind(kb(r.first))
        .bind(kb(r.last))
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

async fn delete_range(tx: &mut Tx, block: i64, first: Key) -> Result<()> {
    sqlx::query("DELETE FROM free_ranges WHERE block_id = $1 AND first = $2")
        .bind(block)
        .bind(kb(first))
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

async fn set_first(tx: &mut Tx, block: i64, old: Key, new: Key) -> Result<()> {
    sqlx::query("UPDATE free_ranges SET first = $1 WHERE block_id = $2 AND first = $3")
        .bind(kb(new))
        .bind(block)
        .bind(kb(old))
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

async fn set_last(tx: &mut Tx, block: i64, first: Key, last: Key) -> Result<()> {
    sqlx::query("UPDATE free_ranges SET last = $1 WHERE block_id = $2 AND first = $3")
        .bind(kb(last))
        .bind(block)
        .bind(kb(first))
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

/// Add one key to the free ranges, merging with its neighbours.
pub(crate) async fn free_one(tx: &mut Tx, block: i64, k: Key) -> Result<()> {
    let left = sqlx::query(
        "SELECT first, last FROM free_ranges WHERE block_id = $1 AND first < $2 ORDER BY first DESC LIMIT 1",
    )
    .bind(block)
    .bind(kb(k))
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?;
    let left = match left {
        Some(row) => {
            let (f, l) = (row.key("first")?, row.key("last")?);
            (l.checked_add(1) == Some(k)).then_some(f)
        }
        None => None,
    };
    let right = match k.checked_add(1) {
        Some(n) => sqlx::query("SELECT last FROM free_ranges WHERE block_id = $1 AND first = $2")
            .bind(block)
            .bind(kb(n))
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?
            .map(|row| row.key("last"))
            .transpose()?,
        None => None,
    };
    match (left, right) {
        (Some(lf), Some(rl)) => {
            delete_range(tx, block, k + 1).await?;
            set_last(tx, block, lf, rl).await
        }
        (Some(lf), None) => set_last(tx, block, lf, k).await,
        (None, Some(_)) => set_first(tx, block, k + 1, k).await,
        (None, None) => insert_range(tx, block, Range::single(k)).await,
    }
}

/// Move released keys whose cool-down has passed back into the free ranges
/// (first-free order only; `last` keeps them apart, behind fresh keys).
pub(crate) async fn promote_cooled(
    tx: &mut Tx,
    counters: &mut Counters,
    b: &BlockAlloc,
    now: i64,
) -> Result<()> {
    loop {
        let rows = sqlx::query(
            "SELECT address FROM released WHERE block_id = $1 AND usable_at <= $2 ORDER BY usable_at, address LIMIT 64",
        )
        .bind(b.id)
        .bind(now)
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
        if rows.is_empty() {
            return Ok(());
        }
        for row in rows {
            let k = row.key("address")?;
            sqlx::query("DELETE FROM released WHERE address = $1")
                .bind(kb(k))
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            counters.add(b.id, RELEASED, -1);
            free_one(tx, b.id, k).await?;
        }
    }
}

/// Take exactly `k`, fresh or released (an explicit request may take an
/// address that is still cooling down). False if `k` is not free.
pub(crate) async fn take(
    tx: &mut Tx,
    counters: &mut Counters,
    b: &BlockAlloc,
    k: Key,
) -> Result<bool> {
    let row = sqlx::query(
        "SELECT first, last FROM free_ranges WHERE block_id = $1 AND first <= $2 ORDER BY first DESC LIMIT 1",
    )
    .bind(b.id)
    .bind(kb(k))
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?;
    if let Some(row) = row {
        let (f, l) = (row.key("first")?, row.key("last")?);
        if l >= k {
            let (left, right) = Range::new(f, l).minus(&Range::single(k));
            match (left, right) {
                (None, None) => delete_range(tx, b.id, f).await?,
                (None, Some(r)) => set_first(tx, b.id, f, r.first).await?,
                (Some(lr), None) => set_last(tx, b.id, f, lr.last).await?,
                (Some(lr), Some(r)) => {
                    set_last(tx, b.id, f, lr.last).await?;
                    insert_range(tx, b.id, r).await?;
                }
            }
            return Ok(true);
        }
    }
    let gone = sqlx::query("DELETE FROM released WHERE address = $1 AND block_id = $2")
        .bind(kb(k))
        .bind(b.id)
        .execute(&mut **tx)
        .await
        .map_err(db)?
        .rows_affected();
    if gone == 1 {
        counters.add(b.id, RELEASED, -1);
        return Ok(true);
    }
    Ok(false)
}

/// Take the next key in the engine's order: the lowest free one (with
/// `first-free`, cooled releases count as free), then (`last`) the least
/// recently released usable one. None if the block has nothing to give.
pub(crate) async fn take_next(
    tx: &mut Tx,
    counters: &mut Counters,
    b: &BlockAlloc,
    now: i64,
) -> Result<Option<Key>> {
    if b.reuse == Reuse::FirstFree {
        promote_cooled(tx, counters, b, now).await?;
    }
    let lowest =
        sqlx::query("SELECT first FROM free_ranges WHERE block_id = $1 ORDER BY first LIMIT 1")
            .bind(b.id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?;
    let k = match lowest {
        Some(row) => row.key("first")?,
        None if b.reuse == Reuse::Last => {
            let oldest = sqlx::query(
                "SELECT address FROM released WHERE block_id = $1 AND usable_at <= $2 ORDER BY usable_at, address LIMIT 1",
            )
            .bind(b.id)
            .bind(now)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?;
            match oldest {
                Some(row) => row.key("address")?,
                None => return Ok(None),
            }
        }
        None => return Ok(None),
    };
    if !take(tx, counters, b, k).await? {
        return Err(super::corrupt("the next free key vanished under its lock"));
    }
    Ok(Some(k))
}

/// Give a held key back. Returns when it may be handed out again.
pub(crate) async fn give_back(
    tx: &mut Tx,
    counters: &mut Counters,
    b: &BlockAlloc,
    k: Key,
    now: i64,
) -> Result<i64> {
    if b.cooldown == 0 && b.reuse == Reuse::FirstFree {
        free_one(tx, b.id, k).await?;
        return Ok(now);
    }
    let usable_at = now.saturating_add(b.cooldown);
    sqlx::query("INSERT INTO released (address, block_id, usable_at) VALUES ($1, $2, $3)")
        .bind(kb(k))
        .bind(b.id)
        .bind(usable_at)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    counters.add(b.id, RELEASED, 1);
    Ok(usable_at)
}
