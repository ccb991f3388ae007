//! Request collapsing: while one request fetches a key from the origin, others for the
//! same key wait on its flight instead of fetching too, and are woken when it ends
//! (stored or not) to look the key up again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How a waiter is woken: a message to its shard and a poke of the shard's loop.
pub trait Notify: Send {
    fn notify(self: Box<Self>);
}

#[derive(Default)]
pub struct Flight {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    done: bool,
    waiters: Vec<Box<dyn Notify>>,
}

impl Flight {
    /// Wakes `w` when the flight ends (at once if it already has).
    pub fn wait(&self, w: Box<dyn Notify>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.done {
            drop(s);
            w.notify();
        } else {
            s.waiters.push(w);
        }
    }

    fn finish(&self) {
        let waiters = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.done = true;
            std::mem::take(&mut s.waiters)
        };
        for w in waiters {
            w.notify();
        }
    }

    pub fn waiters(&self) -> usize {
        self.state.lock().map_or(0, |s| s.waiters.len())
    }
}

/// Held by the request that fetches: ends the flight when dropped, however the fetch
/// ended (stored, not storable, failed, client gone), so no waiter waits forever.
pub struct FlightGuard {
    key: Arc<str>,
    flight: Arc<Flight>,
    flights: Arc<Mutex<HashMap<Arc<str>, Arc<Flight>>>>,
}

impl FlightGuard {
    pub(super) fn new(
        key: Arc<str>,
        flight: Arc<Flight>,
        flights: Arc<Mutex<HashMap<Arc<str>, Arc<Flight>>>>,
    ) -> FlightGuard {
        FlightGuard {
            key,
            flight,
            flights,
        }
    }
}

impl std::fmt::Debug for FlightGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FlightGuard({})", self.key)
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.flights
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
        self.flight.finish();
    }
}
