//! The expectation queue every trait-level mock uses (embedded-hal-mock's shape).
//!
//! A test queues what the next calls should do, in order; the mock takes one step per
//! call, falls back to a default when the queue is empty (so a demo can run a mock
//! forever), and [`Expectations::done`] fails the test if a queued step was never used.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

/// A shared queue of steps of type `T`. Clones share the queue.
#[derive(Debug)]
pub struct Expectations<T> {
    inner: Arc<Mutex<Inner<T>>>,
}

#[derive(Debug)]
struct Inner<T> {
    queue: VecDeque<T>,
    default: Option<T>,
    taken: u64,
}

impl<T> Clone for Expectations<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Clone> Expectations<T> {
    /// An empty queue whose calls fall back to `default` (or to the mock's own
    /// behaviour when `None`).
    pub fn new(default: Option<T>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                queue: VecDeque::new(),
                default,
                taken: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // Held only to push or pop; a panic elsewhere leaves the queue usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue steps for the next calls, in order.
    pub fn expect(&self, steps: impl IntoIterator<Item = T>) {
        self.lock().queue.extend(steps);
    }

    /// Replace the fallback step.
    pub fn set_default(&self, step: Option<T>) {
        self.lock().default = step;
    }

    /// The step for this call: the next queued one, else the default.
    pub fn next(&self) -> Option<T> {
        let mut inner = self.lock();
        inner.taken += 1;
        inner.queue.pop_front().or_else(|| inner.default.clone())
    }

    /// Steps queued and not used yet.
    pub fn pending(&self) -> usize {
        self.lock().queue.len()
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.lock().taken
    }

    /// Fail the test if a queued step was never used.
    ///
    /// # Panics
    /// When steps are left, naming how many.
    #[track_caller]
    pub fn done(&self) {
        let left = self.pending();
        assert!(left == 0, "{left} expected device call(s) never happened");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_run_in_order_then_the_default() {
        let e = Expectations::new(Some("ok"));
        e.expect(["jam", "empty"]);
        assert_eq!(e.next(), Some("jam"));
        assert_eq!(e.next(), Some("empty"));
        assert_eq!(e.next(), Some("ok"));
        assert_eq!(e.calls(), 3);
        e.done();
    }

    #[test]
    #[should_panic(expected = "1 expected device call(s) never happened")]
    fn an_unmet_expectation_fails() {
        let e: Expectations<u8> = Expectations::new(None);
        e.expect([1]);
        e.done();
    }
}
