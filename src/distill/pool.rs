//! The job pool: distillation jobs too large to run inline on a shard go here, so one
//! big photo does not stall the other connections of its shard. Bounded: when the queue
//! is full a job is refused and the original is sent.

use std::sync::Arc;
use std::sync::Mutex;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::cache::flight::Notify;

type Work = Box<dyn FnOnce() + Send>;

/// A job and whom to wake when it is done.
struct Queued {
    work: Work,
    done: Box<dyn Notify>,
}

#[derive(Clone)]
pub struct JobPool {
    tx: Sender<Queued>,
}

impl JobPool {
    pub fn start(threads: usize, queue: usize) -> JobPool {
        JobPool::start_named("distill", threads, queue)
    }

    /// A pool whose threads are called `name-i` (distillation, credential checks).
    pub fn start_named(name: &str, threads: usize, queue: usize) -> JobPool {
        let (tx, rx) = crossbeam_channel::bounded::<Queued>(queue.max(1));
        for i in 0..threads.max(1) {
            let rx: Receiver<Queued> = rx.clone();
            let label = name.to_string();
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    for job in rx {
                        // The waiter is woken whatever happens to the work.
                        let work = std::panic::AssertUnwindSafe(job.work);
                        if std::panic::catch_unwind(work).is_err() {
                            tracing::error!("a job on the {label} pool panicked");
                        }
                        job.done.notify();
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start {name} thread {i}: {e}");
            }
        }
        JobPool { tx }
    }

    /// Queues `work`; `done` is woken after it ran, or at once if the queue is full
    /// (then `work` never runs, and its result slot stays empty).
    pub fn submit(&self, work: Work, done: Box<dyn Notify>) {
        match self.tx.try_send(Queued { work, done }) {
            Ok(()) => {}
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => job.done.notify(),
        }
    }
}

/// Where a job leaves its result for the connection that waits on it.
pub type ResultSlot<T> = Arc<Mutex<Option<T>>>;

pub fn take<T>(slot: &ResultSlot<T>) -> Option<T> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

pub fn put<T>(slot: &ResultSlot<T>, value: T) {
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
}
