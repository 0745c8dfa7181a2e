//! Address pools: IPv4 home addresses and IPv6 /64 home network prefixes, handed out
//! from configured `ipnet` ranges and taken back on de-registration or expiry.
//!
//! Both pools share one allocator over indices `0..size`: never-used indices first, in
//! order, then released ones, the oldest release first, so an address that was just
//! released is not handed to another mobile node while the old tunnel may still carry
//! packets. A bitmap says which indices are in use (it grows only as far as indices were
//! handed out: 1 bit per address); the free list holds released indices (4 octets each).

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// A pool that cannot be built from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("{0} holds no assignable IPv4 home address")]
    EmptyIpv4(Ipv4Net),
    #[error("{0} is longer than /64: it holds no /64 home network prefix")]
    PrefixTooLong(Ipv6Net),
}

/// Hands out indices `0..size`: fresh ones first, then released ones (FIFO).
#[derive(Debug, Clone)]
struct IndexPool {
    size: u32,
    next_fresh: u32,
    released: VecDeque<u32>,
    /// One bit per index below the highest one ever marked.
    used: Vec<u64>,
    in_use: u32,
}

impl IndexPool {
    fn new(size: u32) -> Self {
        IndexPool {
            size,
            next_fresh: 0,
            released: VecDeque::new(),
            used: Vec::new(),
            in_use: 0,
        }
    }

    fn is_used(&self, index: u32) -> bool {
        let (word, bit) = (index as usize / 64, index % 64);
        self.used.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    fn mark(&mut self, index: u32, used: bool) {
        let (word, bit) = (index as usize / 64, index % 64);
        if word >= self.used.len() {
            if !used {
                return;
            }
            self.used.resize(word + 1, 0);
        }
        if used {
            self.used[word] |= 1 << bit;
        } else {
            self.used[word] &= !(1 << bit);
        }
    }

    /// Any free index, or `None` when every index is in use.
    fn take_any(&mut self) -> Option<u32> {
        while self.next_fresh < self.size {
            let index = self.next_fresh;
            self.next_fresh += 1;
            if !self.is_used(index) {
                self.mark(index, true);
                self.in_use += 1;
                return Some(index);
            }
        }
        // Entries whose index was taken by `take` since its release are skipped.
        while let Some(index) = self.released.pop_front() {
            if !self.is_used(index) {
                self.mark(index, true);
                self.in_use += 1;
                return Some(index);
            }
        }
        None
    }

    /// Takes this index if it is free.
    fn take(&mut self, index: u32) -> bool {
        if index >= self.size || self.is_used(index) {
            return false;
        }
        self.mark(index, true);
        self.in_use += 1;
        true
    }

    /// Gives an index back; false if it was not in use (nothing changes then).
    fn release(&mut self, index: u32) -> bool {
        if index >= self.size || !self.is_used(index) {
            return false;
        }
        self.mark(index, false);
        self.in_use -= 1;
        if index < self.next_fresh {
            self.released.push_back(index);
        }
        true
    }

    fn available(&self) -> u32 {
        self.size - self.in_use
    }
}

/// IPv4 home addresses (RFC 5844): the host addresses of a network, less a reserved
/// default-router address.
#[derive(Debug, Clone)]
pub struct Ipv4Pool {
    network: Ipv4Net,
    /// The first assignable address: index 0.
    first: u32,
    /// The index of the reserved address (never handed out, never released).
    reserved: Option<u32>,
    indices: IndexPool,
}

impl Ipv4Pool {
    /// The pool of `network`'s host addresses (without the network and broadcast
    /// addresses for prefixes up to /30), less `reserved` when it lies inside.
    pub fn new(network: Ipv4Net, reserved: Option<Ipv4Addr>) -> Result<Self, PoolError> {
        let network = network.trunc();
        let (first, last) = if network.prefix_len() >= 31 {
            (u32::from(network.network()), u32::from(network.broadcast()))
        } else {
            (
                u32::from(network.network()) + 1,
                u32::from(network.broadcast()) - 1,
            )
        };
        // At most 2^32 - 2 hosts (a /0 without network and broadcast): fits in u32.
        let size = (last - first).saturating_add(1);
        let mut pool = Ipv4Pool {
            network,
            first,
            reserved: None,
            indices: IndexPool::new(size),
        };
        pool.reserved = reserved.and_then(|r| pool.index_of(r));
        if let Some(index) = pool.reserved {
            pool.indices.take(index);
        }
        if pool.indices.available() == 0 {
            return Err(PoolError::EmptyIpv4(network));
        }
        Ok(pool)
    }

    /// The configured network (its prefix length is the one reported to the MAG).
    pub fn network(&self) -> Ipv4Net {
        self.network
    }

    fn index_of(&self, address: Ipv4Addr) -> Option<u32> {
        let offset = u32::from(address).checked_sub(self.first)?;
        (offset < self.indices.size).then_some(offset)
    }

    /// Whether `address` is one this pool hands out.
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        self.index_of(address).is_some()
    }

    /// Any free address.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let index = self.indices.take_any()?;
        Some(Ipv4Addr::from(self.first + index))
    }

    /// This address, if it belongs to the pool and is free.
    pub fn allocate_exact(&mut self, address: Ipv4Addr) -> bool {
        self.index_of(address)
            .is_some_and(|index| self.indices.take(index))
    }

    /// Returns an address to the pool; false if it was not allocated from it.
    pub fn release(&mut self, address: Ipv4Addr) -> bool {
        self.index_of(address)
            .filter(|index| Some(*index) != self.reserved)
            .is_some_and(|index| self.indices.release(index))
    }

    /// Free addresses left.
    pub fn available(&self) -> u32 {
        self.indices.available()
    }

    /// Addresses the pool hands out in all (the reserved one aside).
    pub fn capacity(&self) -> u32 {
        self.indices.size - u32::from(self.reserved.is_some())
    }
}

/// IPv6 home network prefixes (RFC 5213): the /64s of a shorter prefix. Pools shorter
/// than /32 are used up to their first 2^32 /64s.
#[derive(Debug, Clone)]
pub struct PrefixPool {
    network: Ipv6Net,
    indices: IndexPool,
}

impl PrefixPool {
    pub fn new(network: Ipv6Net) -> Result<Self, PoolError> {
        let network = network.trunc();
        if network.prefix_len() > 64 {
            return Err(PoolError::PrefixTooLong(network));
        }
        let bits = 64 - u32::from(network.prefix_len());
        let size = if bits >= 32 { u32::MAX } else { 1u32 << bits };
        Ok(PrefixPool {
            network,
            indices: IndexPool::new(size),
        })
    }

    pub fn network(&self) -> Ipv6Net {
        self.network
    }

    fn prefix_at(&self, index: u32) -> Ipv6Net {
        let base = u128::from(self.network.network());
        let address = Ipv6Addr::from(base + (u128::from(index) << 64));
        Ipv6Net::new(address, 64).unwrap_or(self.network)
    }

    fn index_of(&self, prefix: Ipv6Net) -> Option<u32> {
        if prefix.prefix_len() != 64 || !self.network.contains(&prefix) {
            return None;
        }
        let offset = (u128::from(prefix.network()) - u128::from(self.network.network())) >> 64;
        u32::try_from(offset)
            .ok()
            .filter(|i| *i < self.indices.size)
    }

    /// Whether `prefix` is a /64 this pool hands out.
    pub fn contains(&self, prefix: Ipv6Net) -> bool {
        self.index_of(prefix.trunc()).is_some()
    }

    /// Any free /64.
    pub fn allocate(&mut self) -> Option<Ipv6Net> {
        let index = self.indices.take_any()?;
        Some(self.prefix_at(index))
    }

    /// This /64, if it belongs to the pool and is free.
    pub fn allocate_exact(&mut self, prefix: Ipv6Net) -> bool {
        self.index_of(prefix.trunc())
            .is_some_and(|index| self.indices.take(index))
    }

    /// Returns a prefix to the pool; false if it was not allocated from it.
    pub fn release(&mut self, prefix: Ipv6Net) -> bool {
        self.index_of(prefix.trunc())
            .is_some_and(|index| self.indices.release(index))
    }

    pub fn available(&self) -> u32 {
        self.indices.available()
    }

    /// Prefixes the pool hands out in all.
    pub fn capacity(&self) -> u32 {
        self.indices.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_pool_skips_network_broadcast_and_reserved() {
        let mut pool = Ipv4Pool::new(
            "10.0.0.0/29".parse().unwrap(),
            Some("10.0.0.1".parse().unwrap()),
        )
        .unwrap();
        assert_eq!(pool.available(), 5);
        assert_eq!(pool.capacity(), 5);
        let got: Vec<Ipv4Addr> = std::iter::from_fn(|| pool.allocate()).collect();
        let want: Vec<Ipv4Addr> = (2..=6).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        assert_eq!(got, want);
        assert_eq!(pool.allocate(), None);
        assert!(!pool.release("10.0.0.1".parse().unwrap()), "reserved");
        assert!(!pool.release("10.0.0.7".parse().unwrap()), "broadcast");
    }

    #[test]
    fn released_addresses_come_back_oldest_first_after_fresh_ones() {
        let mut pool = Ipv4Pool::new("10.0.0.0/29".parse().unwrap(), None).unwrap();
        let a = pool.allocate().unwrap();
        let b = pool.allocate().unwrap();
        assert!(pool.release(b));
        assert!(pool.release(a));
        assert!(!pool.release(a), "double release is refused");
        // Four fresh ones (.3 to .6) before any released one.
        for i in 3..=6 {
            assert_eq!(pool.allocate(), Some(Ipv4Addr::new(10, 0, 0, i)));
        }
        assert_eq!(pool.allocate(), Some(b));
        assert_eq!(pool.allocate(), Some(a));
        assert_eq!(pool.allocate(), None);
    }

    #[test]
    fn exact_allocation_is_honoured_and_skipped_later() {
        let mut pool = Ipv4Pool::new("10.0.0.0/30".parse().unwrap(), None).unwrap();
        assert!(pool.allocate_exact("10.0.0.2".parse().unwrap()));
        assert!(!pool.allocate_exact("10.0.0.2".parse().unwrap()));
        assert!(!pool.allocate_exact("10.9.0.2".parse().unwrap()));
        assert_eq!(pool.allocate(), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(pool.allocate(), None);
    }

    #[test]
    fn prefix_pool_hands_out_distinct_slash_64s() {
        let mut pool = PrefixPool::new("2001:db8:46::/62".parse().unwrap()).unwrap();
        let got: Vec<Ipv6Net> = std::iter::from_fn(|| pool.allocate()).collect();
        assert_eq!(got.len(), 4);
        assert_eq!(got[3], "2001:db8:46:3::/64".parse::<Ipv6Net>().unwrap());
        assert!(pool.release(got[1]));
        assert!(!pool.release("2001:db8:47::/64".parse().unwrap()));
        assert_eq!(pool.allocate(), Some(got[1]));
        assert!(PrefixPool::new("2001:db8::/96".parse().unwrap()).is_err());
        let huge = PrefixPool::new("2001:db8::/16".parse().unwrap()).unwrap();
        assert_eq!(huge.available(), u32::MAX);
    }
}
