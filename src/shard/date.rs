//! The Date field value, formatted once a second rather than once a response.

use std::time::{Instant, SystemTime};

use crate::proxy::Now;

pub struct DateCache {
    text: String,
    unix_secs: u64,
    refreshed: Option<Instant>,
}

impl Default for DateCache {
    fn default() -> Self {
        let wall = SystemTime::now();
        DateCache {
            text: httpdate::fmt_http_date(wall),
            unix_secs: unix_secs(wall),
            refreshed: None,
        }
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl DateCache {
    pub fn refresh(&mut self, now: Instant) {
        let stale = self
            .refreshed
            .is_none_or(|t| now.saturating_duration_since(t).as_millis() >= 500);
        if stale {
            let wall = SystemTime::now();
            self.text = httpdate::fmt_http_date(wall);
            self.unix_secs = unix_secs(wall);
            self.refreshed = Some(now);
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }

    /// The `Now` a connection is given: `instant` and this Date value.
    pub fn now(&self, instant: Instant) -> Now<'_> {
        Now {
            instant,
            date: self.text.as_bytes(),
            unix_secs: self.unix_secs,
        }
    }
}
