//! Which waiting agents a change concerns. Agents long-poll their node's
//! plan; the controller follows the store's change log (every committed
//! change says whose plans it reaches: nodes by name, or every node of a
//! cluster) and wakes exactly the long polls of those nodes. An agent whose
//! node no change reaches costs nothing: it is not woken, its plan is not
//! rebuilt. Several controllers on one database each follow the log, so an
//! agent learns of a change whichever controller committed it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use vmfabric_model::Result;
use vmfabric_store::{Change, Reach, Store};

/// Changes read from the log at once; a controller that fell behind reads
/// page after page.
const CHANGES_AT_ONCE: usize = 2048;

/// The long polls waiting now, by node, and the cluster of each node.
#[derive(Debug, Default)]
pub struct PlanWatch {
    waiting: Mutex<Waiting>,
    /// Wake-ups sent to waiting long polls.
    pub wakeups: AtomicU64,
    /// Changes read from the log.
    pub changes_read: AtomicU64,
    /// Set by a write through this controller: read the log now rather
    /// than at the next tick.
    nudged: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Waiting {
    nodes: HashMap<String, NodeWaiters>,
    /// Nodes with waiters, by cluster (a cluster-wide change wakes them).
    clusters: HashMap<String, HashSet<String>>,
    /// Nodes whose cluster is not known yet (their first plan is being
    /// read): a cluster-wide change wakes them too, so none is missed.
    unplaced: HashSet<String>,
}

#[derive(Debug)]
struct NodeWaiters {
    cluster: Option<String>,
    count: usize,
    /// The newest revision of a change that reached the node: a long poll
    /// whose plan is older wakes.
    wake: watch::Sender<i64>,
}

/// One long poll's place in the watch; leaving it (drop) forgets the poll.
#[derive(Debug)]
pub struct Waiter {
    watch: Arc<PlanWatch>,
    node: String,
    rx: watch::Receiver<i64>,
}

impl PlanWatch {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register a long poll of `node`. Register before reading the plan:
    /// a change committed after the read then wakes it.
    pub fn wait(self: &Arc<Self>, node: &str) -> Waiter {
        let mut w = self.lock();
        let entry = w
            .nodes
            .entry(node.to_string())
            .or_insert_with(|| NodeWaiters {
                cluster: None,
                count: 0,
                wake: watch::channel(0).0,
            });
        entry.count += 1;
        let rx = entry.wake.subscribe();
        if entry.cluster.is_none() {
            w.unplaced.insert(node.to_string());
        }
        Waiter {
            watch: self.clone(),
            node: node.to_string(),
            rx,
        }
    }

    /// A write through this controller committed: read the log at once
    /// (writes through other controllers are read at the next tick).
    pub fn nudge(&self) {
        // Nobody to wake: the next tick reads the log anyway.
        if !self.lock().nodes.is_empty() {
            self.nudged.notify_one();
        }
    }

    /// Nodes with a long poll waiting now.
    pub fn waiting_nodes(&self) -> BTreeSet<String> {
        self.lock().nodes.keys().cloned().collect()
    }

    /// Long polls waiting now.
    pub fn waiters(&self) -> usize {
        self.lock().nodes.values().map(|n| n.count).sum()
    }

    /// Wake the long polls of the nodes `change` reaches.
    pub fn dispatch(&self, change: &Change) {
        let w = self.lock();
        let wake = |node: &str| {
            if let Some(n) = w.nodes.get(node) {
                n.wake.send_modify(|v| *v = (*v).max(change.revision));
                self.wakeups.fetch_add(1, Ordering::Relaxed);
            }
        };
        match &change.reach {
            Reach::None => {}
            Reach::Nodes(names) => names.iter().for_each(|n| wake(n)),
            Reach::Cluster => {
                let cluster = change.cluster.as_deref().unwrap_or_default();
                let in_cluster = w.clusters.get(cluster).into_iter().flatten();
                for n in in_cluster.chain(w.unplaced.iter()) {
                    wake(n);
                }
            }
        }
    }

    /// Follow the store's change log from revision `from` on (read before
    /// any long poll read a plan), every `every`, waking the long polls each
    /// change reaches, until `stop` says so.
    pub async fn follow(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        from: i64,
        every: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut seen = from;
        let mut after = (seen, i64::MAX);
        let mut last_read = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let nudged = tokio::select! {
                _ = tick.tick() => false,
                () = self.nudged.notified() => true,
                _ = stop.changed() => return,
            };
            if nudged {
                // Writes come faster than one read of the log each can pay
                // for: nudges within half a tick of the last read share
                // the next one.
                tokio::time::sleep_until(last_read + every / 2).await;
            }
            last_read = tokio::time::Instant::now();
            // A tick reads the revision (one row) and the log only when it
            // moved; a nudge knows it moved. A failed read is retried at
            // the next tick; readiness reports a store that does not answer.
            let moved_to = if nudged {
                None
            } else {
                match store.revision().await {
                    Ok(r) if r != seen => Some(r),
                    _ => continue,
                }
            };
            if let Ok(last) = self.read_log(store.as_ref(), after).await {
                after = last;
                seen = moved_to.unwrap_or(seen).max(last.0);
            }
        }
    }

    /// Read and dispatch the changes after `after`; the last one read.
    async fn read_log(&self, store: &dyn Store, mut after: (i64, i64)) -> Result<(i64, i64)> {
        loop {
            let changes = store.changes_after(after, CHANGES_AT_ONCE).await?;
            self.changes_read
                .fetch_add(changes.len() as u64, Ordering::Relaxed);
            for c in &changes {
                self.dispatch(c);
                after = (c.revision, c.seq);
            }
            if changes.len() < CHANGES_AT_ONCE {
                return Ok(after);
            }
        }
    }
}

impl Waiter {
    /// The node's cluster, once its plan was read (cluster-wide changes
    /// then reach it through the cluster).
    pub fn placed(&self, cluster: &str) {
        let mut w = self.watch.lock();
        let Some(n) = w.nodes.get_mut(&self.node) else {
            return;
        };
        if n.cluster.as_deref() == Some(cluster) {
            return;
        }
        let old = n.cluster.replace(cluster.to_string());
        if let Some(old) = old
            && let Some(set) = w.clusters.get_mut(&old)
        {
            set.remove(&self.node);
            if set.is_empty() {
                w.clusters.remove(&old);
            }
        }
        w.clusters
            .entry(cluster.to_string())
            .or_default()
            .insert(self.node.clone());
        w.unplaced.remove(&self.node);
    }

    /// Until a change reaches the node (returns at once if one did since
    /// the last call).
    /// Wait for a change that reached the node after `revision` (the
    /// revision its plan was read at): one the plan already holds (its
    /// commit raced the read) wakes nobody.
    pub async fn changed_after(&mut self, revision: i64) {
        loop {
            // The sender lives as long as any waiter of the node.
            if self.rx.changed().await.is_err() {
                return;
            }
            if *self.rx.borrow_and_update() > revision {
                return;
            }
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut w = self.watch.lock();
        let Some(n) = w.nodes.get_mut(&self.node) else {
            return;
        };
        n.count = n.count.saturating_sub(1);
        if n.count > 0 {
            return;
        }
        let cluster = n.cluster.clone();
        w.nodes.remove(&self.node);
        w.unplaced.remove(&self.node);
        if let Some(c) = cluster
            && let Some(set) = w.clusters.get_mut(&c)
        {
            set.remove(&self.node);
            if set.is_empty() {
                w.clusters.remove(&c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmfabric_model::Timestamp;

    fn change(cluster: &str, reach: Reach) -> Change {
        Change {
            revision: 1,
            seq: 0,
            at: Timestamp(0),
            kind: "test".into(),
            subject: "x".into(),
            actor: None,
            detail: serde_json::json!({}),
            cluster: Some(cluster.into()),
            reach,
        }
    }

    fn woken(w: &mut Waiter) -> bool {
        w.rx.has_changed().unwrap_or(false) && {
            w.rx.borrow_and_update();
            true
        }
    }

    #[test]
    fn wakes_exactly_the_nodes_a_change_reaches() {
        let watch = Arc::new(PlanWatch::default());
        let mut a = watch.wait("a");
        let mut b = watch.wait("b");
        let mut c = watch.wait("c");
        a.placed("k1");
        b.placed("k1");
        c.placed("k2");
        watch.dispatch(&change("k1", Reach::Nodes(vec!["a".into()])));
        assert!(woken(&mut a));
        assert!(!woken(&mut b));
        assert!(!woken(&mut c));
        watch.dispatch(&change("k1", Reach::Cluster));
        assert!(woken(&mut a) && woken(&mut b));
        assert!(!woken(&mut c));
        watch.dispatch(&change("k2", Reach::None));
        assert!(!woken(&mut c));
        // A node whose cluster is not known yet hears cluster-wide changes.
        let mut d = watch.wait("d");
        watch.dispatch(&change("k2", Reach::Cluster));
        assert!(woken(&mut c) && woken(&mut d));
        assert!(!woken(&mut a));
    }

    #[test]
    fn forgets_nodes_whose_polls_ended() {
        let watch = Arc::new(PlanWatch::default());
        let a1 = watch.wait("a");
        let a2 = watch.wait("a");
        a1.placed("k");
        assert_eq!(watch.waiters(), 2);
        drop(a1);
        assert_eq!(watch.waiting_nodes().len(), 1);
        drop(a2);
        assert_eq!(watch.waiters(), 0);
        let w = watch.lock();
        assert!(w.nodes.is_empty() && w.clusters.is_empty() && w.unplaced.is_empty());
    }
}
