//! Uplink GRE keys (RFC 5845): the key the MAG puts in GRE packets toward the LMA, chosen
//! by the LMA, one per binding, so the LMA tells PDN connections apart even when their
//! home addresses overlap. Keys are handed out in sequence (skipping 0 and any still in
//! use) and are free again as soon as their binding is gone.

use pmip_common::mh::GreKey;

/// How many in-use keys one allocation steps over before giving up: with keys handed out
/// in sequence this is reached only when about that many bindings in a row hold keys.
const MAX_PROBES: u32 = 1 << 20;

/// Chooses uplink GRE keys; which keys are in use is the binding cache's to say.
#[derive(Debug, Clone)]
pub struct UplinkKeyAllocator {
    next: u32,
}

impl Default for UplinkKeyAllocator {
    fn default() -> Self {
        UplinkKeyAllocator::new(1)
    }
}

impl UplinkKeyAllocator {
    /// Starts handing out keys at `first` (0 is never used).
    pub fn new(first: u32) -> Self {
        UplinkKeyAllocator { next: first.max(1) }
    }

    /// The next key for which `in_use` is false, or `None` if none was found within
    /// [`MAX_PROBES`] keys.
    pub fn allocate(&mut self, in_use: impl Fn(GreKey) -> bool) -> Option<GreKey> {
        for _ in 0..MAX_PROBES {
            let key = GreKey(self.next);
            self.next = self.next.wrapping_add(1).max(1);
            if !in_use(key) {
                return Some(key);
            }
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
        let mut keys = UplinkKeyAllocator::new(u32::MAX - 1);
        let used: HashSet<u32> = [1].into();
        let got: Vec<u32> = (0..3)
            .filter_map(|_| keys.allocate(|k| used.contains(&k.0)))
            .map(|k| k.0)
            .collect();
        assert_eq!(got, vec![u32::MAX - 1, u32::MAX, 2]);
    }

    #[test]
    fn gives_up_when_everything_near_is_taken() {
        let mut keys = UplinkKeyAllocator::default();
        assert_eq!(keys.allocate(|_| true), None);
    }
}
