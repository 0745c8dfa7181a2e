//! Uplink GRE keys (RFC 5845): the key the MAG puts in GRE packets toward the LMA, chosen
//! by the LMA, one per binding, so the LMA tells PDN connections apart even when their
//! home addresses overlap. Keys are handed out in sequence (skipping 0 and any still in
//! use) and are free again as soon as their binding is gone.
//!
//! **Restart epochs**: a MAG that has not yet heard that the LMA restarted still sends
//! with the keys of the previous run; were one handed to a new binding, that stale
//! session's uplink would reach the PDN as the new one's. So the top [`EPOCH_BITS`] bits
//! of every key are the run's epoch, the low bits of the RFC 5847 restart counter
//! ([`UplinkKeyAllocator::for_restart`]): with the counter kept in a state file (one more
//! per restart) the keys of the last 255 runs are never handed out again; without one
//! the counter is the start time in seconds, and two runs share an epoch only when they
//! start a multiple of 256 s apart. Within a run the low bits go round in sequence.

use pmip_common::mh::GreKey;

/// How many in-use keys one allocation steps over before giving up: with keys handed out
/// in sequence this is reached only when about that many bindings in a row hold keys.
const MAX_PROBES: u32 = 1 << 20;

/// The bits of a key that name the run (the restart epoch).
pub const EPOCH_BITS: u32 = 8;
const INDEX_BITS: u32 = 32 - EPOCH_BITS;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;

/// Chooses uplink GRE keys; which keys are in use is the binding cache's to say.
#[derive(Debug, Clone)]
pub struct UplinkKeyAllocator {
    /// The epoch, already shifted into place.
    epoch: u32,
    /// The next index (low bits) to try.
    next: u32,
}

impl Default for UplinkKeyAllocator {
    fn default() -> Self {
        UplinkKeyAllocator::for_restart(0)
    }
}

impl UplinkKeyAllocator {
    /// The keys of the run with this RFC 5847 restart counter: its epoch in the top bits,
    /// indices from 1.
    pub fn for_restart(restart_counter: u32) -> Self {
        UplinkKeyAllocator {
            epoch: (restart_counter & ((1 << EPOCH_BITS) - 1)) << INDEX_BITS,
            next: 1,
        }
    }

    /// The epoch a key was handed out in.
    pub fn epoch_of(key: GreKey) -> u32 {
        key.0 >> INDEX_BITS
    }

    /// The next key of this run for which `in_use` is false, or `None` if none was found
    /// within `MAX_PROBES` (2^20) keys. Never 0.
    pub fn allocate(&mut self, in_use: impl Fn(GreKey) -> bool) -> Option<GreKey> {
        for _ in 0..MAX_PROBES {
            let key = GreKey(self.epoch | self.next);
            self.next = (self.next + 1) & INDEX_MASK;
            if self.next == 0 && self.epoch == 0 {
                self.next = 1;
            }
            if key.0 == 0 || in_use(key) {
                continue;
            }
            return Some(key);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn keys_are_sequential_skip_zero_and_in_use() {
        let mut keys = UplinkKeyAllocator {
            next: INDEX_MASK - 1,
            ..UplinkKeyAllocator::default()
        };
        let used: HashSet<u32> = [1].into();
        let got: Vec<u32> = (0..3)
            .filter_map(|_| keys.allocate(|k| used.contains(&k.0)))
            .map(|k| k.0)
            .collect();
        assert_eq!(got, vec![INDEX_MASK - 1, INDEX_MASK, 2]);
    }

    #[test]
    fn gives_up_when_everything_near_is_taken() {
        let mut keys = UplinkKeyAllocator::default();
        assert_eq!(keys.allocate(|_| true), None);
    }

    #[test]
    fn a_restart_never_hands_out_a_key_of_the_previous_runs() {
        let mut seen = HashSet::new();
        for counter in 41..41 + 255 {
            let mut keys = UplinkKeyAllocator::for_restart(counter);
            for _ in 0..100 {
                let key = keys.allocate(|_| false).unwrap();
                assert_eq!(UplinkKeyAllocator::epoch_of(key), counter & 0xff);
                assert!(seen.insert(key.0), "key {} handed out twice", key.0);
            }
        }
        // Within one run the index wraps inside the epoch, never into the next one.
        let mut keys = UplinkKeyAllocator::for_restart(7);
        keys.next = INDEX_MASK;
        let last = keys.allocate(|_| false).unwrap();
        let wrapped = keys.allocate(|_| false).unwrap();
        assert_eq!(last.0, (7 << 24) | INDEX_MASK);
        assert_eq!(wrapped.0, 7 << 24);
    }
}
