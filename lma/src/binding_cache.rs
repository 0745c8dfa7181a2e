//! The binding cache (RFC 5213 section 5.1): one entry per mobile node and APN, found by
//! that key, and also by IPv4 home address, home network prefix and uplink GRE key (the
//! lookups the data plane and the address checks need), and by NAI alone (RFC 5846
//! revocation names a mobile node, not a PDN connection). It also keeps what each MAG
//! holds (bindings, IPv4 home addresses, prefixes), for the per-MAG limits: the MAG of an
//! entry changes only through [`BindingCache::set_mag`], so the count cannot drift.
//!
//! Entries live in a slab (`Vec` of slots, freed slots reused); every index maps to a
//! slot number, so an entry is stored once. The main index is a raw hash table of slot
//! numbers hashed by (NAI, APN) with the std SipHash keys (NAIs come from the network),
//! so the NAI is not stored twice; APN strings are interned, since a gateway serves a
//! handful of APNs for millions of bindings. A slot's generation changes each time it is
//! reused, so a [`BindingId`] held elsewhere (a deadline, a data-plane route) never
//! names a later binding by mistake. The address and key indexes hold values the LMA
//! chose itself (from its pools and key sequence), so they use a cheap multiplicative
//! hash instead of SipHash: no peer can pick keys that collide.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashTable;
use ipnet::Ipv6Net;
use pmip_common::mh::{
    AccessTechnologyType, GreKey, HandoffIndicator, Lifetime, ProxyBindingUpdate, Timestamp,
};

use crate::transport::MagAddress;

/// Distinct APN strings kept interned; more than this many are stored per entry.
const MAX_INTERNED_APNS: usize = 4096;

/// Names one binding for as long as it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BindingId {
    slot: u32,
    generation: u32,
}

impl BindingId {
    /// An id for unit tests of modules that only carry ids around.
    #[cfg(test)]
    pub(crate) fn for_test(slot: u32) -> Self {
        BindingId {
            slot,
            generation: 0,
        }
    }
}

impl BindingId {
    /// An id no binding ever has (slots stop below `u32::MAX`): for an indication about
    /// something that is not in the cache.
    pub fn detached() -> Self {
        BindingId {
            slot: u32::MAX,
            generation: u32::MAX,
        }
    }

    /// Slot and generation in one number (the state file names bindings by it).
    pub fn as_u64(self) -> u64 {
        (u64::from(self.slot) << 32) | u64::from(self.generation)
    }
}

impl std::fmt::Display for BindingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.slot, self.generation)
    }
}

/// What the LMA allocated to a binding: each is indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Addresses {
    pub home_network_prefix: Option<Ipv6Net>,
    pub ipv4_home_address: Option<Ipv4Addr>,
    /// The key the MAG uses toward the LMA (RFC 5845).
    pub uplink_gre_key: Option<GreKey>,
}

/// What one MAG holds in the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MagUsage {
    pub bindings: u32,
    pub ipv4_home_addresses: u32,
    pub home_network_prefixes: u32,
}

impl MagUsage {
    fn add(&mut self, addresses: &Addresses, sign: i64) {
        let step = |n: &mut u32, present: bool| {
            if present {
                *n = u32::try_from(i64::from(*n) + sign).unwrap_or(0);
            }
        };
        step(
            &mut self.ipv4_home_addresses,
            addresses.ipv4_home_address.is_some(),
        );
        step(
            &mut self.home_network_prefixes,
            addresses.home_network_prefix.is_some(),
        );
    }
}

/// The parts of an entry that change on re-registration and are not indexed (the MAG
/// is the entry's, changed with [`BindingCache::set_mag`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingState {
    /// The key the LMA uses toward the MAG (RFC 5845).
    pub downlink_gre_key: Option<GreKey>,
    pub access_technology: AccessTechnologyType,
    pub handoff: HandoffIndicator,
    /// Sequence number of the last accepted PBU.
    pub last_sequence: u16,
    /// Timestamp of the last accepted PBU (RFC 5213 section 5.5).
    pub last_timestamp: Option<Timestamp>,
    /// The lifetime granted last.
    pub lifetime: Lifetime,
    pub expires: Instant,
}

impl BindingState {
    /// The state an accepted initial PBU gives a new binding (RFC 5213 section 5.3.2),
    /// with the granted lifetime and its expiry.
    pub fn from_pbu(
        pbu: &ProxyBindingUpdate,
        lifetime: Lifetime,
        expires: Instant,
    ) -> BindingState {
        BindingState {
            downlink_gre_key: pbu.gre_key,
            access_technology: pbu.access_technology,
            handoff: pbu.handoff,
            last_sequence: pbu.sequence,
            last_timestamp: pbu.timestamp,
            lifetime,
            expires,
        }
    }

    /// Takes what an accepted lifetime-extending PBU carries (RFC 5213 sections 5.3.3
    /// and 5.3.4, with or without handoff; the MAG itself is [`BindingCache::set_mag`]'s):
    /// its GRE key, access technology, handoff indicator, sequence number and timestamp
    /// (the last one kept when the PBU has none), with the granted lifetime and the expiry
    /// armed for it.
    pub fn refresh_from(&mut self, pbu: &ProxyBindingUpdate, lifetime: Lifetime, expires: Instant) {
        self.downlink_gre_key = pbu.gre_key;
        self.access_technology = pbu.access_technology;
        self.handoff = pbu.handoff;
        self.last_sequence = pbu.sequence;
        self.last_timestamp = pbu.timestamp.or(self.last_timestamp);
        self.lifetime = lifetime;
        self.expires = expires;
    }
}

/// One binding cache entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingCacheEntry {
    mn_id: Box<str>,
    apn: Option<Arc<str>>,
    /// The MAG holding the binding (its proxy care-of address) and the path to it.
    mag: MagAddress,
    addresses: Addresses,
    pub state: BindingState,
}

impl BindingCacheEntry {
    /// The MAG holding the binding and the path of its last accepted PBU.
    pub fn mag(&self) -> MagAddress {
        self.mag
    }
    /// The mobile node's NAI.
    pub fn mn_id(&self) -> &str {
        &self.mn_id
    }
    /// The APN (Service Selection).
    pub fn apn(&self) -> Option<&str> {
        self.apn.as_deref()
    }
    pub fn addresses(&self) -> Addresses {
        self.addresses
    }
    fn is_key(&self, mn_id: &str, apn: Option<&str>) -> bool {
        &*self.mn_id == mn_id && self.apn.as_deref() == apn
    }
}

/// Why an entry could not be inserted or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    #[error("a binding for this mobile node and APN already exists")]
    DuplicateKey,
    #[error("an address or key is already held by another binding")]
    AddressInUse,
    #[error("no such binding")]
    NoSuchBinding,
    #[error("the binding cache is full")]
    Full,
}

/// A multiplicative (Fx-style) hasher for small integer keys the LMA allocated.
#[derive(Debug, Clone, Copy, Default)]
struct IndexHasher(u64);

const INDEX_HASH_FACTOR: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl IndexHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(INDEX_HASH_FACTOR);
    }
}

impl Hasher for IndexHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.add(u64::from(b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type IndexMap<K> = HashMap<K, u32, BuildHasherDefault<IndexHasher>>;

#[derive(Debug, Clone)]
struct Slot {
    generation: u32,
    entry: Option<BindingCacheEntry>,
}

/// Every binding of the LMA.
#[derive(Debug, Clone, Default)]
pub struct BindingCache {
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    hasher: std::collections::hash_map::RandomState,
    by_key: HashTable<u32>,
    /// Slot numbers hashed by NAI alone (several per NAI: one per APN).
    by_nai: HashTable<u32>,
    by_ipv4: IndexMap<u32>,
    /// Keyed by the prefix's upper 64 bits: every home network prefix is a /64.
    by_prefix: IndexMap<u64>,
    by_uplink_key: IndexMap<u32>,
    apns: HashSet<Arc<str>>,
    usage: HashMap<IpAddr, MagUsage>,
    len: usize,
}

fn prefix_key(prefix: Ipv6Net) -> u64 {
    (u128::from(prefix.network()) >> 64) as u64
}

impl BindingCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn hash_key(&self, mn_id: &str, apn: Option<&str>) -> u64 {
        self.hasher.hash_one((mn_id, apn))
    }

    fn hash_nai(&self, mn_id: &str) -> u64 {
        self.hasher.hash_one(mn_id)
    }

    /// Every binding of this NAI (any APN).
    pub fn bindings_of(&self, mn_id: &str) -> Vec<BindingId> {
        let slots = &self.slots;
        self.by_nai
            .iter_hash(self.hash_nai(mn_id))
            .filter(|&&s| {
                slots[s as usize]
                    .entry
                    .as_ref()
                    .is_some_and(|e| &*e.mn_id == mn_id)
            })
            .map(|&s| self.id(s))
            .collect()
    }

    /// What the MAG at `mag` holds.
    pub fn usage(&self, mag: IpAddr) -> MagUsage {
        self.usage.get(&mag).copied().unwrap_or_default()
    }

    /// Every MAG holding a binding, and what it holds.
    pub fn usage_by_mag(&self) -> impl Iterator<Item = (IpAddr, MagUsage)> + '_ {
        self.usage.iter().map(|(ip, u)| (*ip, *u))
    }

    fn count(&mut self, mag: IpAddr, addresses: &Addresses, sign: i64) {
        let usage = self.usage.entry(mag).or_default();
        usage.bindings = u32::try_from(i64::from(usage.bindings) + sign).unwrap_or(0);
        usage.add(addresses, sign);
        if usage.bindings == 0 {
            self.usage.remove(&mag);
        }
    }

    fn id(&self, slot: u32) -> BindingId {
        BindingId {
            slot,
            generation: self.slots[slot as usize].generation,
        }
    }

    /// The binding of this mobile node and APN.
    pub fn find(&self, mn_id: &str, apn: Option<&str>) -> Option<BindingId> {
        let hash = self.hash_key(mn_id, apn);
        let slots = &self.slots;
        let slot = *self.by_key.find(hash, |&s| {
            slots[s as usize]
                .entry
                .as_ref()
                .is_some_and(|e| e.is_key(mn_id, apn))
        })?;
        Some(self.id(slot))
    }

    pub fn get(&self, id: BindingId) -> Option<&BindingCacheEntry> {
        let slot = self.slots.get(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.entry.as_ref()
    }

    /// The changeable, unindexed part of an entry.
    pub fn state_mut(&mut self, id: BindingId) -> Option<&mut BindingState> {
        let slot = self.slots.get_mut(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.entry.as_mut().map(|e| &mut e.state)
    }

    pub fn by_ipv4_home_address(&self, address: Ipv4Addr) -> Option<BindingId> {
        self.by_ipv4.get(&u32::from(address)).map(|&s| self.id(s))
    }

    pub fn by_home_network_prefix(&self, prefix: Ipv6Net) -> Option<BindingId> {
        if prefix.prefix_len() != 64 {
            return None;
        }
        self.by_prefix.get(&prefix_key(prefix)).map(|&s| self.id(s))
    }

    pub fn by_uplink_gre_key(&self, key: GreKey) -> Option<BindingId> {
        self.by_uplink_key.get(&key.0).map(|&s| self.id(s))
    }

    /// The interned copy of an APN.
    fn intern(&mut self, apn: &str) -> Arc<str> {
        if let Some(known) = self.apns.get(apn) {
            return Arc::clone(known);
        }
        let apn: Arc<str> = Arc::from(apn);
        if self.apns.len() < MAX_INTERNED_APNS {
            self.apns.insert(Arc::clone(&apn));
        }
        apn
    }

    /// Whether these addresses could be indexed for `slot` (free, or already its own).
    fn addresses_free(&self, addresses: &Addresses, slot: Option<u32>) -> bool {
        let free = |holder: Option<&u32>| holder.is_none_or(|h| Some(*h) == slot);
        addresses
            .ipv4_home_address
            .is_none_or(|a| free(self.by_ipv4.get(&u32::from(a))))
            && addresses
                .home_network_prefix
                .is_none_or(|p| free(self.by_prefix.get(&prefix_key(p))))
            && addresses
                .uplink_gre_key
                .is_none_or(|k| free(self.by_uplink_key.get(&k.0)))
    }

    fn index_addresses(&mut self, addresses: &Addresses, slot: u32) {
        if let Some(a) = addresses.ipv4_home_address {
            self.by_ipv4.insert(u32::from(a), slot);
        }
        if let Some(p) = addresses.home_network_prefix {
            self.by_prefix.insert(prefix_key(p), slot);
        }
        if let Some(k) = addresses.uplink_gre_key {
            self.by_uplink_key.insert(k.0, slot);
        }
    }

    fn unindex_addresses(&mut self, addresses: &Addresses) {
        if let Some(a) = addresses.ipv4_home_address {
            self.by_ipv4.remove(&u32::from(a));
        }
        if let Some(p) = addresses.home_network_prefix {
            self.by_prefix.remove(&prefix_key(p));
        }
        if let Some(k) = addresses.uplink_gre_key {
            self.by_uplink_key.remove(&k.0);
        }
    }

    /// Adds a binding. Nothing changes on error.
    pub fn insert(
        &mut self,
        mn_id: &str,
        apn: Option<&str>,
        mag: MagAddress,
        addresses: Addresses,
        state: BindingState,
    ) -> Result<BindingId, CacheError> {
        if self.find(mn_id, apn).is_some() {
            return Err(CacheError::DuplicateKey);
        }
        if !self.addresses_free(&addresses, None) {
            return Err(CacheError::AddressInUse);
        }
        let slot = match self.free_slots.pop() {
            Some(slot) => slot,
            None => {
                // u32::MAX is no slot: it is `BindingId::detached`'s.
                let slot = u32::try_from(self.slots.len())
                    .ok()
                    .filter(|s| *s != u32::MAX)
                    .ok_or(CacheError::Full)?;
                self.slots.push(Slot {
                    generation: 0,
                    entry: None,
                });
                slot
            }
        };
        let apn = apn.map(|a| self.intern(a));
        let entry = BindingCacheEntry {
            mn_id: Box::from(mn_id),
            apn,
            mag,
            addresses,
            state,
        };
        let hash = self.hash_key(entry.mn_id(), entry.apn());
        let nai_hash = self.hash_nai(entry.mn_id());
        self.slots[slot as usize].entry = Some(entry);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.by_key.insert_unique(hash, slot, |&s| {
            let e = slots[s as usize].entry.as_ref();
            hasher.hash_one((e.map_or("", |e| e.mn_id()), e.and_then(|e| e.apn())))
        });
        self.by_nai.insert_unique(nai_hash, slot, |&s| {
            hasher.hash_one(slots[s as usize].entry.as_ref().map_or("", |e| e.mn_id()))
        });
        self.index_addresses(&addresses, slot);
        self.count(mag.ip(), &addresses, 1);
        self.len += 1;
        Ok(self.id(slot))
    }

    /// Replaces a binding's addresses, re-indexing them. Nothing changes on error.
    pub fn set_addresses(&mut self, id: BindingId, addresses: Addresses) -> Result<(), CacheError> {
        let (old, mag) = self
            .get(id)
            .map(|e| (e.addresses, e.mag.ip()))
            .ok_or(CacheError::NoSuchBinding)?;
        if !self.addresses_free(&addresses, Some(id.slot)) {
            return Err(CacheError::AddressInUse);
        }
        self.unindex_addresses(&old);
        self.index_addresses(&addresses, id.slot);
        let usage = self.usage.entry(mag).or_default();
        usage.add(&old, -1);
        usage.add(&addresses, 1);
        if let Some(entry) = self.slots[id.slot as usize].entry.as_mut() {
            entry.addresses = addresses;
        }
        Ok(())
    }

    /// Moves a binding to another MAG (or another path to the same one).
    pub fn set_mag(&mut self, id: BindingId, mag: MagAddress) -> Result<(), CacheError> {
        let (old, addresses) = self
            .get(id)
            .map(|e| (e.mag, e.addresses))
            .ok_or(CacheError::NoSuchBinding)?;
        if old.ip() != mag.ip() {
            self.count(old.ip(), &addresses, -1);
            self.count(mag.ip(), &addresses, 1);
        }
        if let Some(entry) = self.slots[id.slot as usize].entry.as_mut() {
            entry.mag = mag;
        }
        Ok(())
    }

    /// Removes a binding and returns it (its addresses are the caller's to release).
    pub fn remove(&mut self, id: BindingId) -> Option<BindingCacheEntry> {
        let entry = {
            let slot = self.slots.get_mut(id.slot as usize)?;
            if slot.generation != id.generation {
                return None;
            }
            let entry = slot.entry.take()?;
            slot.generation = slot.generation.wrapping_add(1);
            entry
        };
        let hash = self.hash_key(entry.mn_id(), entry.apn());
        if let Ok(found) = self.by_key.find_entry(hash, |&s| s == id.slot) {
            found.remove();
        }
        let nai_hash = self.hash_nai(entry.mn_id());
        if let Ok(found) = self.by_nai.find_entry(nai_hash, |&s| s == id.slot) {
            found.remove();
        }
        self.unindex_addresses(&entry.addresses);
        self.count(entry.mag.ip(), &entry.addresses, -1);
        self.free_slots.push(id.slot);
        self.len -= 1;
        Some(entry)
    }

    /// Every binding.
    pub fn iter(&self) -> impl Iterator<Item = (BindingId, &BindingCacheEntry)> {
        self.slots.iter().enumerate().filter_map(|(i, slot)| {
            slot.entry.as_ref().map(|e| {
                (
                    BindingId {
                        slot: i as u32,
                        generation: slot.generation,
                    },
                    e,
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddrV4;

    fn mag(last: u8) -> MagAddress {
        MagAddress::Udp4 {
            mag: SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, last), 5436),
            local: Ipv4Addr::new(192, 0, 2, 2),
        }
    }

    fn state() -> BindingState {
        BindingState {
            downlink_gre_key: Some(GreKey(7)),
            access_technology: AccessTechnologyType::Ieee80211,
            handoff: HandoffIndicator::AttachmentOverNewInterface,
            last_sequence: 1,
            last_timestamp: None,
            lifetime: Lifetime::from_secs(60),
            expires: Instant::now(),
        }
    }

    fn addresses(n: u8) -> Addresses {
        Addresses {
            home_network_prefix: Some(format!("2001:db8:0:{n}::/64").parse().unwrap()),
            ipv4_home_address: Some(Ipv4Addr::new(10, 0, 0, n)),
            uplink_gre_key: Some(GreKey(u32::from(n))),
        }
    }

    #[test]
    fn every_index_finds_the_entry_and_removal_clears_them() {
        let mut cache = BindingCache::new();
        let a = cache
            .insert("a@x", Some("internet"), mag(1), addresses(1), state())
            .unwrap();
        let b = cache
            .insert("a@x", Some("ims"), mag(1), addresses(2), state())
            .unwrap();
        let c = cache
            .insert("a@x", None, mag(1), addresses(3), state())
            .unwrap();
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.find("a@x", Some("internet")), Some(a));
        assert_eq!(cache.find("a@x", Some("ims")), Some(b));
        assert_eq!(cache.find("a@x", None), Some(c));
        assert_eq!(cache.find("b@x", None), None);
        assert_eq!(
            cache.by_ipv4_home_address(Ipv4Addr::new(10, 0, 0, 2)),
            Some(b)
        );
        assert_eq!(
            cache.by_home_network_prefix("2001:db8:0:3::/64".parse().unwrap()),
            Some(c)
        );
        assert_eq!(cache.by_uplink_gre_key(GreKey(1)), Some(a));
        assert_eq!(
            cache.insert("a@x", Some("internet"), mag(1), addresses(9), state()),
            Err(CacheError::DuplicateKey)
        );
        assert_eq!(
            cache.insert("z@x", None, mag(1), addresses(1), state()),
            Err(CacheError::AddressInUse)
        );
        let removed = cache.remove(b).unwrap();
        assert_eq!(removed.mn_id(), "a@x");
        assert_eq!(removed.apn(), Some("ims"));
        assert!(cache.get(b).is_none());
        assert!(cache.remove(b).is_none());
        assert_eq!(cache.find("a@x", Some("ims")), None);
        assert_eq!(cache.by_ipv4_home_address(Ipv4Addr::new(10, 0, 0, 2)), None);
        assert_eq!(cache.by_uplink_gre_key(GreKey(2)), None);
        // The slot is reused under a new generation: the old id stays dead.
        let d = cache
            .insert("d@x", None, mag(1), addresses(2), state())
            .unwrap();
        assert_ne!(d, b);
        assert!(cache.get(b).is_none());
        assert_eq!(cache.iter().count(), 3);
    }

    #[test]
    fn set_addresses_reindexes_or_changes_nothing() {
        let mut cache = BindingCache::new();
        let a = cache
            .insert("a@x", None, mag(1), addresses(1), state())
            .unwrap();
        let _b = cache
            .insert("b@x", None, mag(1), addresses(2), state())
            .unwrap();
        assert_eq!(
            cache.set_addresses(a, addresses(2)),
            Err(CacheError::AddressInUse)
        );
        assert_eq!(cache.get(a).unwrap().addresses(), addresses(1));
        cache.set_addresses(a, addresses(3)).unwrap();
        assert_eq!(cache.by_uplink_gre_key(GreKey(3)), Some(a));
        assert_eq!(cache.by_uplink_gre_key(GreKey(1)), None);
    }

    #[test]
    fn many_entries_survive_table_growth() {
        let mut cache = BindingCache::new();
        let ids: Vec<BindingId> = (0..5000u32)
            .map(|i| {
                cache
                    .insert(
                        &format!("{i}@x"),
                        Some("internet"),
                        mag(1),
                        Addresses::default(),
                        state(),
                    )
                    .unwrap()
            })
            .collect();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(cache.find(&format!("{i}@x"), Some("internet")), Some(*id));
        }
    }

    #[test]
    fn the_nai_index_and_per_mag_usage_follow_every_change() {
        let mut cache = BindingCache::new();
        let a = cache
            .insert("n@x", Some("internet"), mag(1), addresses(1), state())
            .unwrap();
        let b = cache
            .insert("n@x", Some("ims"), mag(1), addresses(2), state())
            .unwrap();
        let c = cache
            .insert("other@x", None, mag(3), addresses(3), state())
            .unwrap();
        let mut of_n = cache.bindings_of("n@x");
        of_n.sort();
        assert_eq!(of_n, vec![a, b]);
        assert_eq!(cache.bindings_of("n@y"), vec![]);
        let one = |n| IpAddr::V4(Ipv4Addr::new(192, 0, 2, n));
        let full = |n| MagUsage {
            bindings: n,
            ipv4_home_addresses: n,
            home_network_prefixes: n,
        };
        assert_eq!(cache.usage(one(1)), full(2));
        assert_eq!(cache.usage(one(3)), full(1));
        // A binding moves: counted under its new MAG only.
        cache.set_mag(b, mag(3)).unwrap();
        assert_eq!(cache.usage(one(1)), full(1));
        assert_eq!(cache.usage(one(3)), full(2));
        // Addresses change: so does the count.
        let mut fewer = addresses(2);
        fewer.ipv4_home_address = None;
        cache.set_addresses(b, fewer).unwrap();
        assert_eq!(cache.usage(one(3)).ipv4_home_addresses, 1);
        assert_eq!(cache.usage(one(3)).home_network_prefixes, 2);
        cache.remove(a);
        cache.remove(b);
        cache.remove(c);
        assert_eq!(cache.usage_by_mag().count(), 0, "nothing left behind");
        assert_eq!(cache.bindings_of("n@x"), vec![]);
    }
}
