//! Group commit for VM creation: requests that arrive while a commit is
//! on its way wait for the next one and share it, so the cost of a durable
//! commit (an fsync, a round trip) is paid once per batch, not per VM.
//! Nothing waits on purpose: a lone request is committed at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot};
use vmfabric_model::{Error, Result, Vm};
use vmfabric_store::{Store, VmRequest};

use crate::metrics::Metrics;

type Job = (VmRequest, oneshot::Sender<Result<Vm>>);

#[derive(Debug, Clone)]
pub struct Batcher {
    /// One queue per committer. Requests of one cluster always go to the
    /// same committer: they draw from the same blocks, whose rows a commit
    /// locks, so spreading them would only make committers wait for each
    /// other with smaller batches. Different clusters commit in parallel.
    queues: Vec<mpsc::Sender<Job>>,
}

impl Batcher {
    /// Start `workers` committers (one is right for SQLite's single
    /// writer; PostgreSQL commits batches of different clusters in
    /// parallel), each taking up to `max` requests per commit.
    pub fn start(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        workers: usize,
        max: usize,
    ) -> Batcher {
        let mut queues = Vec::new();
        for _ in 0..workers.max(1) {
            let (tx, mut rx) = mpsc::channel::<Job>(max * 4);
            queues.push(tx);
            let (store, metrics) = (store.clone(), metrics.clone());
            tokio::spawn(async move {
                while let Some(first) = rx.recv().await {
                    let mut jobs: Vec<Job> = vec![first];
                    while jobs.len() < max {
                        match rx.try_recv() {
                            Ok(j) => jobs.push(j),
                            Err(_) => break,
                        }
                    }
                    let (reqs, replies): (Vec<VmRequest>, Vec<_>) = jobs.into_iter().unzip();
                    metrics.batches.fetch_add(1, Ordering::Relaxed);
                    match store.create_vms(&reqs).await {
                        Ok(results) => {
                            for (r, reply) in results.into_iter().zip(replies) {
                                if r.is_ok() {
                                    metrics.vms_created.fetch_add(1, Ordering::Relaxed);
                                }
                                let _ = reply.send(r);
                            }
                        }
                        Err(e) => {
                            for reply in replies {
                                let _ = reply.send(Err(e.clone()));
                            }
                        }
                    }
                }
            });
        }
        Batcher { queues }
    }

    pub async fn create(&self, req: VmRequest) -> Result<Vm> {
        let rx = self.submit(req).await?;
        rx.await
            .map_err(|_| Error::storage("the commit was abandoned"))?
    }

    /// Create many VMs (`POST /vms/batch`): every one joins its cluster's
    /// queue at once, so a client's batch shares commits with whatever else
    /// is waiting instead of taking the blocks' locks for a commit of its
    /// own (32 clients with batches of 64: 5,019 VMs/s as separate commits,
    /// BENCHMARKS.md). Each VM still succeeds or fails on its own.
    pub async fn create_many(&self, reqs: Vec<VmRequest>) -> Vec<Result<Vm>> {
        let mut waiting = Vec::with_capacity(reqs.len());
        for r in reqs {
            waiting.push(self.submit(r).await);
        }
        let mut out = Vec::with_capacity(waiting.len());
        for w in waiting {
            out.push(match w {
                Ok(rx) => rx
                    .await
                    .unwrap_or_else(|_| Err(Error::storage("the commit was abandoned"))),
                Err(e) => Err(e),
            });
        }
        out
    }

    async fn submit(&self, mut req: VmRequest) -> Result<oneshot::Receiver<Result<Vm>>> {
        // The committer task logs the change: it must know who asked.
        req.actor.get_or_insert_with(vmfabric_store::actor);
        let (tx, rx) = oneshot::channel();
        let i = stable_hash(&req.cluster) % self.queues.len().max(1);
        let Some(q) = self.queues.get(i) else {
            return Err(Error::storage("the controller has no committer"));
        };
        q.send((req, tx))
            .await
            .map_err(|_| Error::storage("the controller is shutting down"))?;
        Ok(rx)
    }
}

/// FNV-1a: the same committer for a cluster in every run.
fn stable_hash(s: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as usize
}
