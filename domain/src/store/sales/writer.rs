//! Group commit for the API's sales: the sales of concurrent requests are
//! created together, as many as are waiting ([`super::create_all`]): one
//! round trip of reads for them all, then one statement that writes them.
//!
//! Why: PostgreSQL's cost of a sale is mostly per statement and per commit
//! (executor start, locks, WAL flush, the reply over the socket), not per
//! row: a statement writing 8 sales costs about twice one writing 1. With
//! each request reading and writing its own sale, 64 busy connections on 2
//! cores made about 2,900 sales/s (p99 29-33 ms); created together, about
//! 6,000 (p99 15-18 ms). `ci/bench http` measures it.
//!
//! How: requests queue their sale; [`WRITERS`] tasks each take everything
//! queued (up to [`MAX_BATCH`]), create it on a connection of their own and
//! answer each request. Nobody waits for a batch to fill: a sale alone is
//! created at once, and sales queue only while the writers are busy, which
//! is when batching pays. A sale refused refuses only itself. A request that
//! goes away after queueing its sale does not take it back: the sale is
//! created, as it would be had the request gone away during its statement.

use super::super::{Db, StoreError};
use super::{SaleRequest, SaleWithLines};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tokio::sync::{Mutex, mpsc, oneshot};

/// Batches created at the same time. With two, one batch's round trips to
/// the database do not idle the writing, nor does one batch waiting on a
/// studio's numbering lock stop every sale. Measured with `ci/bench http`
/// (loopback, 2 cores, 64 connections, 16 studios): 2 writers made
/// 5,800-6,200 sales/s, 3 about 6,000 and 4 5,700 (more writers, smaller
/// batches, and their studios' numbering rows locked by one another).
pub const WRITERS: usize = 2;

/// The writers' sessions. PostgreSQL plans a prepared statement anew on
/// each run while it guesses a plan for the values at hand beats one plan
/// for any values; with arrays for values it always guesses so, and planning
/// the sales' statement cost a third of running it (pgbench, one sale per
/// statement: 1,900 statements/s planned each time, 2,800 with one plan).
/// One plan suits it: it reads no table but by key.
const SESSION: &str = "SET plan_cache_mode = force_generic_plan";

/// The most sales in one batch.
pub const MAX_BATCH: usize = 64;

/// Sales waiting for a writer before a request waits to queue its own.
const QUEUE: usize = 1024;

type Reply = oneshot::Sender<Result<SaleWithLines, StoreError>>;

/// Counters for `/metrics`: their ratio is the mean batch size.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub batches: AtomicU64,
    pub sales: AtomicU64,
}

/// The queue to the writers. The writers stop when it is dropped, after
/// writing what was queued.
pub struct SalesWriter {
    queue: mpsc::Sender<(SaleRequest, Reply)>,
}

impl SalesWriter {
    /// Starts the writers on the current runtime, each with a connection
    /// of its own to `db`'s database (opened on first use), counting in
    /// `stats`.
    pub fn start(db: &Db, stats: Arc<WriterStats>) -> Result<SalesWriter, StoreError> {
        let own = db.own_pool(WRITERS, SESSION)?;
        let (queue, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..WRITERS {
            tokio::spawn(run(own.clone(), rx.clone(), stats.clone()));
        }
        Ok(SalesWriter { queue })
    }

    /// Creates the sale with whatever other sales are waiting; its own result.
    pub async fn create(&self, sale: SaleRequest) -> Result<SaleWithLines, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((sale, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the sales writer stopped".into())
}

/// One writer: takes what is queued, writes it, answers, until the queue closes.
async fn run(db: Db, queue: Arc<Mutex<mpsc::Receiver<(SaleRequest, Reply)>>>, stats: Arc<WriterStats>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    loop {
        // One writer gathers at a time, so the other's batch is not split.
        if queue.lock().await.recv_many(&mut jobs, MAX_BATCH).await == 0 {
            return;
        }
        let (batch, replies): (Vec<_>, Vec<_>) = jobs.drain(..).unzip();
        stats.batches.fetch_add(1, Relaxed);
        stats.sales.fetch_add(batch.len() as u64, Relaxed);
        // Its own task, so that after a panic in it this writer answers its
        // requests and goes on.
        let db = db.clone();
        let written = tokio::spawn(async move {
            let n = batch.len();
            match db.conn().await {
                Ok(mut conn) => super::create_all(&mut conn, batch).await,
                Err(e) => {
                    let message = e.to_string();
                    (0..n).map(|_| Err(StoreError::Unavailable(message.clone()))).collect()
                }
            }
        })
        .await;
        match written {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    // The request may have gone away; its sale is written.
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                // A bug: each request is answered 500 (and logged there).
                let message = format!("writing a batch of sales failed: {e}");
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Database(diesel::result::Error::QueryBuilderError(
                        message.clone().into(),
                    ))));
                }
            }
        }
    }
}
