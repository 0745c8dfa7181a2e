//! Time for the sans-IO cores: [`DeadlineQueue`], the one timer structure every core
//! uses (binding lifetimes, retransmissions, per-UE deadlines), and [`WallClock`], the one
//! conversion from the monotonic `Instant` a core is driven with to the wall-clock time
//! that goes on the wire (RFC 5213 section 5.5 timestamps, pcap records).
//!
//! A core never reads a clock: the driver passes `now` in, and a test passes a virtual
//! `now` that it advances, so a lifetime expiry is tested in microseconds, exactly.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant, SystemTime};

/// The wall-clock time that corresponds to a monotonic instant: fixed once (`epoch` read
/// at the same moment as `wall`), then derived, so wall-clock values follow virtual time
/// in tests and never jump when the system clock is stepped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    epoch: Instant,
    wall: SystemTime,
}

impl WallClock {
    /// Pairs the monotonic instant `epoch` with the wall-clock time `wall` it was read at.
    pub fn new(epoch: Instant, wall: SystemTime) -> Self {
        WallClock { epoch, wall }
    }

    /// The wall-clock time at `now`. Never panics: an instant before the epoch is
    /// subtracted with a check, and a result outside `SystemTime`'s range saturates at
    /// the epoch's wall-clock time.
    pub fn at(&self, now: Instant) -> SystemTime {
        let shifted = match now.checked_duration_since(self.epoch) {
            Some(ahead) => self.wall.checked_add(ahead),
            None => self
                .wall
                .checked_sub(self.epoch.saturating_duration_since(now)),
        };
        shifted.unwrap_or(self.wall)
    }

    /// The monotonic instant the clock was paired at.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// How far `now` is past the epoch (zero before it).
    pub fn since_epoch(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.epoch)
    }
}

/// Deadlines of items of type `T` (a small copyable id): a min-heap of `(instant, item)`
/// pairs. Re-arming pushes a new pair and leaves the old one in place, so the owner checks
/// a popped pair against the item's current deadline and skips stale ones (lazy deletion,
/// no search through the heap on every refresh).

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

    #[test]
    fn wall_clock_follows_the_monotonic_clock_both_ways() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clock = WallClock::new(t0, wall);
        assert_eq!(clock.at(t0), wall);
        assert_eq!(
            clock.at(t0 + Duration::from_secs(5)),
            wall + Duration::from_secs(5)
        );
        if let Some(before) = t0.checked_sub(Duration::from_secs(3)) {
            assert_eq!(clock.at(before), wall - Duration::from_secs(3));
            assert_eq!(clock.since_epoch(before), Duration::ZERO);
        }
        // Before the Unix epoch: a checked subtraction (negative where the platform has
        // it, the epoch's own time where it has not), never a panic.
        let early = WallClock::new(t0 + Duration::from_secs(10), SystemTime::UNIX_EPOCH);
        assert!(early.at(t0) <= SystemTime::UNIX_EPOCH);
    }

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
