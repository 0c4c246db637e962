//! The desk's notion of now.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::Utc;

/// Now, in Unix seconds. Clones share one offset, so tests move every service's clock forward
/// at once (to pass SLA due times, session ends, rate-limit windows).
#[derive(Clone, Default)]
pub struct Clock {
    offset_s: Arc<AtomicI64>,
}

impl Clock {
    pub fn now(&self) -> i64 {
        Utc::now().timestamp() + self.offset_s.load(Ordering::Relaxed)
    }
    pub fn advance(&self, seconds: i64) {
        self.offset_s.fetch_add(seconds, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_advances_for_every_clone() {
        let c = Clock::default();
        let other = c.clone();
        let t = c.now();
        c.advance(3600);
        assert!(c.now() >= t + 3600);
        assert!(other.now() >= t + 3600);
    }
}
