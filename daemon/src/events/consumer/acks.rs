//! Ack coalescing for one consumer ([`Acks`]): the deliveries in flight,
//! those whose outcome is durable, and the task that acks the settled ones
//! with `multiple` acks.

use lapin::options::BasicAckOptions;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Coalesces acks: a settled delivery is acked by one `multiple` ack of the
/// highest settled tag below every delivery still in flight, sent by one
/// task. The task sends once `batch` deliveries are ackable, or `linger`
/// after the first of them became ackable: under load one ack frame covers
/// `batch` deliveries (each ack frame costs the broker as much as a delivery),
/// and when idle a delivery waits at most `linger` for its ack. A delivery is
/// marked settled only once its outcome is durable, so the guarantee is
/// unchanged: an ack lost in a crash means a redelivery the handler dedupes.
#[derive(Default)]
struct AckState {
    in_flight: std::collections::BTreeSet<u64>,
    settled: std::collections::BTreeMap<u64, lapin::Acker>,
}

pub(super) struct Acks {
    state: std::sync::Mutex<AckState>,
    wake: tokio::sync::Notify,
    batch: usize,
}

/// The longest an ackable delivery waits for more to share its ack frame.
const ACK_LINGER: Duration = Duration::from_millis(2);

impl Acks {
    /// `batch`: how many ackable deliveries one ack frame waits for (at
    /// least 1; a quarter of the prefetch keeps the broker's window open).
    pub(super) fn new(prefetch: u16) -> Arc<Acks> {
        let batch = usize::from(prefetch / 4).max(1);
        Arc::new(Acks { state: Default::default(), wake: tokio::sync::Notify::new(), batch })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AckState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn received(&self, tag: u64) {
        self.lock().in_flight.insert(tag);
    }

    /// The outcome is durable: ack it (soon).
    pub(super) fn settle(&self, tag: u64, acker: lapin::Acker) {
        let mut st = self.lock();
        st.in_flight.remove(&tag);
        st.settled.insert(tag, acker);
        drop(st);
        self.wake.notify_one();
    }

    /// Returned with a nack (or never to be acked here).
    pub(super) fn forget(&self, tag: u64) {
        if self.lock().in_flight.remove(&tag) {
            self.wake.notify_one();
        }
    }

    /// How many settled deliveries lie below the lowest one in flight.
    fn ackable(&self) -> usize {
        let st = self.lock();
        let low = st.in_flight.first().copied().unwrap_or(u64::MAX);
        st.settled.range(..low).count()
    }

    /// The acker covering every settled delivery below the lowest in flight.
    fn take_ackable(&self) -> Option<(lapin::Acker, usize)> {
        let mut st = self.lock();
        let low = st.in_flight.first().copied().unwrap_or(u64::MAX);
        let keep = st.settled.split_off(&low);
        let ackable = std::mem::replace(&mut st.settled, keep);
        let n = ackable.len();
        ackable.into_iter().next_back().map(|(_, a)| (a, n))
    }

    /// Sends the acks until `done` fires and nothing ackable is left.
    pub(super) async fn run(self: Arc<Self>, done: CancellationToken, timeout: Duration) {
        // When the oldest ackable delivery must be acked, batch full or not.
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let n = self.ackable();
            let due = deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
            if n > 0 && (n >= self.batch || due || done.is_cancelled()) {
                deadline = None;
                if let Some((acker, n)) = self.take_ackable() {
                    let ack = acker.ack(BasicAckOptions { multiple: true });
                    match tokio::time::timeout(timeout, ack).await {
                        Ok(Ok(true)) => {}
                        other => tracing::warn!(
                            deliveries = n,
                            outcome = ?other.map(|r| r.map_err(|e| e.to_string())),
                            "ack not sent (channel closed?); the broker will redeliver and the handler dedupes"
                        ),
                    }
                }
                continue;
            }
            if n == 0 {
                if done.is_cancelled() {
                    return;
                }
                deadline = None;
            } else if deadline.is_none() {
                deadline = Some(tokio::time::Instant::now() + ACK_LINGER);
            }
            let linger = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = linger => {}
                _ = done.cancelled() => {}
            }
        }
    }
}
