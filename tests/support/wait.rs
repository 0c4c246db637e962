//! Waiting for a condition instead of sleeping: the deadline only bounds a hang, so it is
//! generous, and a condition that holds early ends the wait early.

use std::time::{Duration, Instant};

/// How often a condition is checked.
const EVERY: Duration = Duration::from_millis(100);

/// What a condition returns: `true`, or `Some(value)`, once it holds.
pub trait Outcome {
    type Value;
    fn ready(self) -> Option<Self::Value>;
}

impl Outcome for bool {
    type Value = ();
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn ready(self) -> Option<T> {
        self
    }
}

/// Checks `f` until it holds (its value is returned) or `deadline` passes (`None`).
pub fn poll<R: Outcome>(deadline: Duration, mut f: impl FnMut() -> R) -> Option<R::Value> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f().ready() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(EVERY);
    }
}

/// [`poll`], panicking with `what` when the deadline passes.
pub fn eventually<R: Outcome>(what: &str, deadline: Duration, f: impl FnMut() -> R) -> R::Value {
    poll(deadline, f).unwrap_or_else(|| panic!("timed out after {deadline:?} waiting for {what}"))
}

/// [`poll`] for async tests: sleeps on the runtime instead of blocking one of its workers.
pub async fn poll_async<R: Outcome>(
    deadline: Duration,
    mut f: impl FnMut() -> R,
) -> Option<R::Value> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f().ready() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// [`eventually`] for async tests.
pub async fn eventually_async<R: Outcome>(
    what: &str,
    deadline: Duration,
    f: impl FnMut() -> R,
) -> R::Value {
    poll_async(deadline, f)
        .await
        .unwrap_or_else(|| panic!("timed out after {deadline:?} waiting for {what}"))
}
