//! The Date field value, formatted once a second rather than once a response.

use std::time::{Instant, SystemTime};

use crate::proxy::Now;

pub struct DateCache {
    text: String,
    refreshed: Option<Instant>,
}

impl Default for DateCache {
    fn default() -> Self {
        DateCache {
            text: httpdate::fmt_http_date(SystemTime::now()),
            refreshed: None,
        }
    }
}

impl DateCache {
    pub fn refresh(&mut self, now: Instant) {
        let stale = self
            .refreshed
            .is_none_or(|t| now.saturating_duration_since(t).as_millis() >= 500);
        if stale {
            self.text = httpdate::fmt_http_date(SystemTime::now());
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
        }
    }
}
