//! The deadline queue: when each binding's lifetime runs out. A min-heap of
//! `(instant, binding)` pairs; a refresh pushes a new pair and leaves the old one in
//! place, so the owner checks a popped pair against the binding's current expiry and
//! skips stale ones (lazy deletion, no search through the heap on every refresh).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Deadlines of items of type `T` (a small copyable id).
#[derive(Debug, Clone)]
pub struct DeadlineQueue<T: Ord + Copy> {
    heap: BinaryHeap<Reverse<(Instant, T)>>,
}

impl<T: Ord + Copy> Default for DeadlineQueue<T> {
    fn default() -> Self {
        DeadlineQueue {
            heap: BinaryHeap::new(),
        }
    }
}

impl<T: Ord + Copy> DeadlineQueue<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Arms a deadline for `item` at `at`.
    pub fn push(&mut self, at: Instant, item: T) {
        self.heap.push(Reverse((at, item)));
    }

    /// The earliest deadline, stale or not.
    pub fn peek(&self) -> Option<(Instant, T)> {
        self.heap.peek().map(|Reverse(pair)| *pair)
    }

    /// Removes and returns the earliest deadline if it is at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, T)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(pair)| pair),
            _ => None,
        }
    }

    /// Drops deadlines from the front while `is_stale` says so, so [`Self::peek`] names
    /// a live one.
    pub fn prune_front(&mut self, is_stale: impl Fn(Instant, T) -> bool) {
        while let Some(Reverse((at, item))) = self.heap.peek() {
            if !is_stale(*at, *item) {
                break;
            }
            self.heap.pop();
        }
    }

    /// Keeps only the deadlines `keep` accepts (O(n)): for dropping stale ones when they
    /// pile up, e.g. under a storm of refreshes.
    pub fn retain(&mut self, keep: impl Fn(Instant, T) -> bool) {
        self.heap.retain(|Reverse((at, item))| keep(*at, *item));
    }

    /// Deadlines held, stale ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_time_order_only_when_due() {
        let t0 = Instant::now();
        let mut q = DeadlineQueue::new();
        q.push(t0 + Duration::from_secs(5), 2u32);
        q.push(t0 + Duration::from_secs(1), 1u32);
        assert_eq!(q.peek(), Some((t0 + Duration::from_secs(1), 1)));
        assert_eq!(q.pop_due(t0), None);
        assert_eq!(
            q.pop_due(t0 + Duration::from_secs(6)),
            Some((t0 + Duration::from_secs(1), 1))
        );
        q.prune_front(|_, item| item == 2);
        assert!(q.is_empty());
        q.push(t0, 3);
        q.push(t0, 4);
        q.retain(|_, item| item == 4);
        assert_eq!(q.len(), 1);
        assert_eq!(q.peek(), Some((t0, 4)));
    }
}
