//! The password hashing pool: a fixed number of threads of their own
//! (`auth.hash_concurrency`, default the cores), run at a lower scheduling
//! priority (nice 10), and a semaphore of as many permits in front of them.
//! A login flood therefore waits for a permit instead of taking every core,
//! and argon2's memory (about 19 MiB per hash) is held by those few threads
//! only: memory stays bounded and the other routes keep the CPU they need.
//! (tokio's blocking pool, used before, spread hashes over up to 512 threads,
//! each keeping its allocator arena.)

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

type Job = Box<dyn FnOnce() + Send>;

pub struct HashPool {
    permits: Arc<Semaphore>,
    jobs: Mutex<mpsc::Sender<Job>>,
    threads: usize,
}

impl HashPool {
    /// Starts `threads` hashing threads (at least 1). They end when the pool is dropped.
    pub fn new(threads: usize) -> HashPool {
        let threads = threads.max(1);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("hashing-{i}")).spawn(move || {
                lower_priority();
                loop {
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        HashPool { permits: Arc::new(Semaphore::new(threads)), jobs: Mutex::new(tx), threads }
    }

    /// The pool's size.
    pub fn size(&self) -> usize {
        self.threads
    }

    /// Permits free now (tests and benchmarks).
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// Runs `work` on a hashing thread once a permit is free. The permit is
    /// given back when `work` ends, even if the caller stopped waiting.
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let permit: OwnedSemaphorePermit = self.permits.clone().acquire_owned().await.ok()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let out = work();
            drop(permit);
            let _ = tx.send(out);
        });
        self.jobs.lock().ok()?.send(job).ok()?;
        rx.await.ok()
    }
}

/// Nice 10 for the calling thread (on Linux, a thread's own priority).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only reads its integer arguments; `who = 0` is the
    // calling thread on Linux. A failure leaves the priority as it was.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_the_pool_and_permits_come_back() {
        let pool = HashPool::new(2);
        let names = futures_util::future::join_all(
            (0..8).map(|_| pool.run(|| std::thread::current().name().map(str::to_owned))),
        )
        .await;
        assert!(names.iter().all(|n| n.clone().flatten().is_some_and(|n| n.starts_with("hashing-"))), "{names:?}");
        assert_eq!(pool.available(), 2);
    }
}
