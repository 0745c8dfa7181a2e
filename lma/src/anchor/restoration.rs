//! Failures that heal (RFC 5847, RFC 5846, TS 23.007 section 19) at the LMA: heartbeats
//! toward the MAGs, a MAG's restart, this gateway's own restart, and the operator's
//! revocations, all without cross-talk between an old session and a new one.
//!
//! * **Heartbeats** (`[heartbeat]`, the common `heartbeat` module): every MAG holding a
//!   binding is asked every HEARTBEAT_INTERVAL (watched from its first binding to its
//!   last); requests are answered with the restart counter whether heartbeats are on or
//!   not. A MAG that misses MISSING_HEARTBEATS_ALLOWED is reported unreachable, and its
//!   bindings stay until their lifetimes end (a path may come back; its sessions then go
//!   on).
//! * **A MAG restarted** (its restart counter changed, or it announced a restart with the
//!   unsolicited response): its bindings go at once with their addresses (a restarted MAG
//!   holds no session that could still use them) instead of at the end of their
//!   lifetimes. When the restart was seen in a solicited response, only the bindings not
//!   registered since the previous counter was last confirmed go: later ones may be the
//!   restarted MAG's own. Chained ones are de-registered at home.
//! * **This gateway restarted** ([`Lma::restore`], fed from the state file by the
//!   driver): the MAGs it had bindings with get the unsolicited Heartbeat Response (RFC
//!   5847 section 3.2), the home gateways of its chained bindings too (through the chain's
//!   binding update list). No uplink GRE key of an earlier run is handed out again (the
//!   `gre_keys` module: a restart epoch in the key). The addresses the old bindings held
//!   are **held back** (quarantined): not given to any new binding until their MAG has
//!   either registered that binding again, asking for exactly those addresses (it gets
//!   them back), or started a new session for the same key (it lost the old one), or
//!   restarted, or been told with a Binding Revocation Indication (trigger 7, "Possible
//!   Out-of-Sync BCE State", sent for what is still held back two heartbeat intervals
//!   after the restart: time enough for a MAG that heard of the restart to register
//!   again) that it acknowledged or never answered; at the latest when `max_lifetime`
//!   has passed since the restart, as no binding of the old run can outlive it.
//! * **Operator revocation** ([`Lma::revoke_bindings`], the admin interface; and every MAG's
//!   bindings on a graceful shutdown): a binding (by NAI and APN, or by address) or every
//!   binding of a MAG goes at once; its MAG gets a Binding Revocation Indication (RFC
//!   5846 section 8.1: per mobile node with trigger "Administrative Reason", or one with
//!   the G bit, trigger "Per-Peer Policy" and no options for all of a MAG's), sent again
//!   as section 11 says; the addresses are held back until it is acknowledged or given
//!   up, so they cannot reach another session while the MAG may still use them.
//!   Chained bindings are de-registered at home; the home gateway revoking a chained
//!   binding reaches the ePDG (the chain module).
//!
//! Everything the state file needs comes out as [`Output::Journal`]: a binding bound or
//! gone (from the core's own `BindingUp`/`BindingDown`/`ChainUp`/`ChainDown`), an entry
//! held back or released. The `state` module writes and reads it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime};

use ipnet::Ipv6Net;
use pmip_common::heartbeat::{HeartbeatEvent, Heartbeats};
use pmip_common::mh::{
    BindingErrorRepr, BindingRevocationRepr, BindingRevocationType, HeartbeatRepr, MobilityMessage,
    ProxyBindingUpdate,
};
use pmip_common::time::DeadlineQueue;

use super::revocation::{Purpose, RevocationReport, RevocationTrigger};
use super::{DownReason, Lma, LmaSettings, Output};
use crate::binding_cache::BindingId;
use crate::transport::MagAddress;

/// A binding as the state file keeps it: enough to hold its addresses back after a
/// restart, to tell its MAG, and to know the peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBinding {
    pub mn_id: String,
    pub apn: Option<String>,
    pub mag: MagAddress,
    pub ipv4_home_address: Option<Ipv4Addr>,
    pub home_network_prefix: Option<Ipv6Net>,
    /// A chained binding's home gateway (its addresses are the home's, not held here).
    pub home: Option<MagAddress>,
}

/// One change for the state file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalRecord {
    /// Binding `id` holds this now (new, changed or moved).
    Bound { id: u64, binding: HeldBinding },
    /// Binding `id` is gone (what it held is free, or held back under its own record).
    Unbound { id: u64 },
    /// Entry `id` is held back until `until`.
    Quarantined {
        id: u64,
        binding: HeldBinding,
        until: SystemTime,
    },
    /// Entry `id` is free.
    Released { id: u64 },
}

/// An entry held back by an earlier run, read back from the state file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub binding: HeldBinding,
    pub until: SystemTime,
}

/// What the state file says the previous run left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// Bindings that were up when it stopped.
    pub bindings: Vec<HeldBinding>,
    /// Entries it still held back.
    pub quarantined: Vec<Quarantined>,
}

/// What an operator revokes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeTarget {
    /// One PDN connection (every APN of the NAI when `apn` is `None`).
    Binding { mn_id: String, apn: Option<String> },
    /// The binding holding this IPv4 home address or an address of this prefix.
    Address(IpAddr),
    /// Every binding of this MAG (one indication with the G bit).
    Mag(IpAddr),
    /// Every binding of every MAG (a graceful shutdown).
    All,
}

/// Why nothing was revoked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevokeError {
    #[error("no binding matches")]
    NotFound,
}

/// What happened with a peer (one log line each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// Its restart counter changed: `removed` of its bindings went.
    MagRestarted {
        previous: Option<u32>,
        current: u32,
        removed: usize,
    },
    Unreachable {
        missed: u32,
    },
    Reachable,
    HeartbeatUnsupported,
    /// This gateway restarted: `held` entries held back, the peer told.
    Announced {
        held: usize,
    },
    /// Entries held back for this MAG were released (`why`).
    Released {
        count: usize,
        why: &'static str,
    },
    /// The home gateway (this gateway's chain is its MAG) restarted, became unreachable...
    Home(pmip_common::binding_update_list::LmaEvent),
}

/// One [`PeerEvent`] as the log line reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerReport {
    pub peer: IpAddr,
    pub event: PeerEvent,
}

/// An entry held back.
#[derive(Debug)]
struct Held {
    binding: HeldBinding,
    until: Instant,
    /// The indication telling its MAG, while one is outstanding.
    told: bool,
}

/// The restoration state of the core.
#[derive(Debug)]
pub(super) struct Restoration {
    heartbeats: Heartbeats<MagAddress>,
    enabled: bool,
    held: HashMap<u64, Held>,
    by_ipv4: HashMap<Ipv4Addr, u64>,
    by_prefix: HashMap<Ipv6Net, u64>,
    next_id: u64,
    deadlines: DeadlineQueue<u64>,
    /// When what is still held back after a restart is told to its MAGs.
    tell_at: Option<Instant>,
    grace: Duration,
    max_lifetime: Duration,
    /// Whether journal records are kept (a state file is written).
    journaling: bool,
    journal: Vec<JournalRecord>,
}

/// A binding id as the state file names it.
fn journal_id(id: BindingId) -> u64 {
    id.as_u64()
}

impl Restoration {
    pub fn new(settings: &LmaSettings) -> Self {
        let heartbeat = settings.heartbeat.unwrap_or_default();
        Restoration {
            heartbeats: Heartbeats::new(heartbeat, settings.restart_counter),
            enabled: settings.heartbeat.is_some(),
            held: HashMap::new(),
            by_ipv4: HashMap::new(),
            by_prefix: HashMap::new(),
            next_id: 1,
            deadlines: DeadlineQueue::new(),
            tell_at: None,
            grace: heartbeat.interval * 2,
            max_lifetime: Duration::from_secs(u64::from(settings.max_lifetime.as_secs())),
            journaling: false,
            journal: Vec::new(),
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let heartbeats = self.heartbeats.poll_timeout().filter(|_| self.enabled);
        [
            heartbeats,
            self.deadlines.peek().map(|(at, _)| at),
            self.tell_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether the address (or prefix) is held back for this very binding of `mag`.
    pub fn held_for(
        &self,
        ipv4: Option<Ipv4Addr>,
        prefix: Option<Ipv6Net>,
        pbu: &ProxyBindingUpdate,
        mag: IpAddr,
    ) -> bool {
        let id = match (ipv4, prefix) {
            (Some(a), _) => self.by_ipv4.get(&a),
            (_, Some(p)) => self.by_prefix.get(&p),
            _ => None,
        };
        id.and_then(|id| self.held.get(id)).is_some_and(|h| {
            h.binding.mag.ip() == mag && h.binding.mn_id == pbu.mn_id && h.binding.apn == pbu.apn
        })
    }

    /// The address (or prefix) leaves its entry for a binding (it stays taken in the pool).
    pub fn take(&mut self, ipv4: Option<Ipv4Addr>, prefix: Option<Ipv6Net>) {
        let id = match (ipv4, prefix) {
            (Some(a), _) => self.by_ipv4.remove(&a),
            (_, Some(p)) => self.by_prefix.remove(&p),
            _ => None,
        };
        let Some(id) = id else {
            return;
        };
        let Some(entry) = self.held.get_mut(&id) else {
            return;
        };
        if ipv4.is_some() {
            entry.binding.ipv4_home_address = None;
        }
        if prefix.is_some() {
            entry.binding.home_network_prefix = None;
        }
        let b = &entry.binding;
        if b.ipv4_home_address.is_none() && b.home_network_prefix.is_none() {
            self.held.remove(&id);
            self.record(JournalRecord::Released { id });
        }
    }

    /// Holds `binding`'s addresses back until `until` (`until_wall` on the wall clock).
    fn hold(
        &mut self,
        binding: HeldBinding,
        until: Instant,
        until_wall: SystemTime,
        told: bool,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(a) = binding.ipv4_home_address {
            self.by_ipv4.insert(a, id);
        }
        if let Some(p) = binding.home_network_prefix {
            self.by_prefix.insert(p, id);
        }
        self.record(JournalRecord::Quarantined {
            id,
            binding: binding.clone(),
            until: until_wall,
        });
        self.held.insert(
            id,
            Held {
                binding,
                until,
                told,
            },
        );
        self.deadlines.push(until, id);
        id
    }

    /// Removes an entry; its addresses are the caller's to give back to the pools.
    fn release(&mut self, id: u64) -> Option<HeldBinding> {
        let entry = self.held.remove(&id)?;
        if let Some(a) = entry.binding.ipv4_home_address {
            self.by_ipv4.remove(&a);
        }
        if let Some(p) = entry.binding.home_network_prefix {
            self.by_prefix.remove(&p);
        }
        self.record(JournalRecord::Released { id });
        Some(entry.binding)
    }

    /// Entries held back for `mag`'s bindings.
    fn held_of(&self, mag: IpAddr) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, h)| h.binding.mag.ip() == mag)
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    }

    fn record(&mut self, record: JournalRecord) {
        if self.journaling {
            self.journal.push(record);
        }
    }

    /// Entries held back in all.
    pub fn held_count(&self) -> usize {
        self.held.len()
    }
}

impl Lma {
    /// This gateway restarted (module doc): `restored` is what the state file says the
    /// previous run left. The MAGs and home gateways get the unsolicited Heartbeat
    /// Response, the addresses are held back.
    pub fn restore(&mut self, restored: Restored, now: Instant, out: &mut Vec<Output>) {
        let wall = self.wall_clock(now);
        let bound = self.restoration.max_lifetime;
        let mut entries: Vec<(HeldBinding, Instant)> = restored
            .bindings
            .into_iter()
            .map(|b| (b, now + bound))
            .collect();
        entries.extend(restored.quarantined.into_iter().filter_map(|q| {
            let left = q.until.duration_since(wall).ok()?;
            Some((q.binding, now + left))
        }));
        let mut mags: Vec<MagAddress> = Vec::new();
        let mut homes: Vec<std::net::SocketAddr> = Vec::new();
        let mut held_per_mag: HashMap<IpAddr, usize> = HashMap::new();
        for (mut binding, until) in entries {
            if !mags.iter().any(|m| m.ip() == binding.mag.ip()) {
                mags.push(binding.mag);
            }
            if let Some(home) = binding.home {
                if !homes.iter().any(|h| h.ip() == home.ip()) {
                    homes.push(home.socket_addr());
                }
                continue;
            }
            // Only addresses still in the pools and not held twice are held back.
            if let Some(a) = binding.ipv4_home_address {
                let taken = self.ipv4_pool.as_mut().is_some_and(|p| p.allocate_exact(a));
                if !taken {
                    binding.ipv4_home_address = None;
                }
            }
            if let Some(p) = binding.home_network_prefix {
                let taken = self
                    .prefix_pool
                    .as_mut()
                    .is_some_and(|pool| pool.allocate_exact(p));
                if !taken {
                    binding.home_network_prefix = None;
                }
            }
            if binding.ipv4_home_address.is_none() && binding.home_network_prefix.is_none() {
                continue;
            }
            *held_per_mag.entry(binding.mag.ip()).or_default() += 1;
            let until_wall = self.clock.at(until);
            self.restoration.hold(binding, until, until_wall, false);
        }
        self.restoration.tell_at =
            (self.restoration.held_count() > 0).then_some(now + self.restoration.grace);
        let mut events = Vec::new();
        self.restoration
            .heartbeats
            .announce_restart(mags.iter().copied(), &mut events);
        self.heartbeat_events(events, now, out);
        for mag in &mags {
            out.push(Output::Peer(PeerReport {
                peer: mag.ip(),
                event: PeerEvent::Announced {
                    held: held_per_mag.get(&mag.ip()).copied().unwrap_or(0),
                },
            }));
        }
        if !homes.is_empty() {
            self.chain_announce_restart(homes, now, out);
        }
        out.extend(self.restoration.journal.drain(..).map(Output::Journal));
    }

    /// Reports what a state file needs as [`Output::Journal`] from now on (the driver
    /// turns this on when it writes one; without it nothing is reported).
    pub fn keep_journal(&mut self) {
        self.restoration.journaling = true;
    }

    /// Entries held back after a restart or a revocation.
    pub fn held_back(&self) -> usize {
        self.restoration.held_count()
    }

    /// The restart counter last heard from a MAG (RFC 5847).
    pub fn mag_restart_counter(&self, mag: IpAddr) -> Option<u32> {
        self.restoration.heartbeats.peer_counter(mag)
    }

    /// Heartbeat statistics toward the MAGs.
    pub fn heartbeat_stats(&self) -> pmip_common::heartbeat::HeartbeatStats {
        self.restoration.heartbeats.stats()
    }

    /// A Heartbeat from an allowed MAG: answered, or matched (RFC 5847).
    pub(super) fn heartbeat_from_mag(
        &mut self,
        from: MagAddress,
        heartbeat: &HeartbeatRepr,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let mut events = Vec::new();
        self.restoration
            .heartbeats
            .on_heartbeat(from.ip(), from, heartbeat, now, &mut events);
        self.heartbeat_events(events, now, out);
    }

    /// A Binding Error from an allowed MAG: status 2 ends heartbeats to it.
    pub(super) fn binding_error_from_mag(
        &mut self,
        from: MagAddress,
        error: &BindingErrorRepr,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let mut events = Vec::new();
        self.restoration
            .heartbeats
            .on_binding_error(from.ip(), error.status, &mut events);
        if events.is_empty() {
            self.stats.ignored += 1;
        }
        self.heartbeat_events(events, now, out);
    }

    fn heartbeat_events(
        &mut self,
        events: Vec<HeartbeatEvent<MagAddress>>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        for event in events {
            let (peer, event) = match event {
                HeartbeatEvent::Send { to, heartbeat } => {
                    self.send(to, MobilityMessage::Heartbeat(heartbeat), out);
                    continue;
                }
                HeartbeatEvent::Restarted {
                    peer,
                    previous,
                    current,
                    confirmed_before,
                } => {
                    let removed = self.mag_restarted(peer, confirmed_before, now, out);
                    let event = PeerEvent::MagRestarted {
                        previous,
                        current,
                        removed,
                    };
                    (peer, event)
                }
                HeartbeatEvent::Unreachable { peer, missed } => {
                    (peer, PeerEvent::Unreachable { missed })
                }
                HeartbeatEvent::Reachable { peer } => (peer, PeerEvent::Reachable),
                HeartbeatEvent::Unsupported { peer } => (peer, PeerEvent::HeartbeatUnsupported),
            };
            out.push(Output::Peer(PeerReport { peer, event }));
        }
    }

    /// A MAG restarted: its bindings not registered since `confirmed_before` go, and
    /// what is held back for it is free (module doc). Returns how many bindings went.
    fn mag_restarted(
        &mut self,
        mag: IpAddr,
        confirmed_before: Option<Instant>,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> usize {
        let stale: Vec<BindingId> = self
            .cache
            .iter()
            .filter(|(_, e)| e.mag().ip() == mag)
            .filter(|(_, e)| {
                let registered = e
                    .state
                    .expires
                    .checked_sub(Duration::from_secs(u64::from(e.state.lifetime.as_secs())));
                match (confirmed_before, registered) {
                    (Some(bound), Some(at)) => at <= bound,
                    _ => true,
                }
            })
            .map(|(id, _)| id)
            .collect();
        let mut removed = 0;
        for id in stale {
            let gone = if self.is_chained(id) {
                self.chain_revoke(id, now, out)
            } else {
                self.remove_binding(id, DownReason::MagRestarted, out)
            };
            removed += usize::from(gone);
        }
        let held = self.restoration.held_of(mag);
        self.release_held(mag, held, "the MAG restarted", out);
        removed
    }

    /// Gives entries held back back to the pools (and one log line).
    pub(super) fn release_held(
        &mut self,
        mag: IpAddr,
        ids: Vec<u64>,
        why: &'static str,
        out: &mut Vec<Output>,
    ) {
        let mut count = 0;
        for id in ids {
            if let Some(b) = self.restoration.release(id) {
                self.release(&crate::binding_cache::Addresses {
                    home_network_prefix: b.home_network_prefix,
                    ipv4_home_address: b.ipv4_home_address,
                    uplink_gre_key: None,
                });
                count += 1;
            }
        }
        if count > 0 {
            out.push(Output::Peer(PeerReport {
                peer: mag,
                event: PeerEvent::Released { count, why },
            }));
        }
    }

    /// A new session of the same key from the same MAG, asking for no address of its
    /// own: the session held back is over (one per key).
    pub(super) fn release_quarantined_key(&mut self, pbu: &ProxyBindingUpdate, mag: IpAddr) {
        let specific = pbu
            .home_network_prefixes
            .iter()
            .any(|p| p.prefix_len() != 0)
            || pbu
                .ipv4_home_address_request
                .is_some_and(|a| !a.addr().is_unspecified());
        if specific || self.restoration.held.is_empty() {
            return;
        }
        let ids: Vec<u64> = self
            .restoration
            .held
            .iter()
            .filter(|(_, h)| {
                h.binding.mag.ip() == mag
                    && h.binding.mn_id == pbu.mn_id
                    && h.binding.apn == pbu.apn
            })
            .map(|(id, _)| *id)
            .collect();
        let mut ignored = Vec::new();
        self.release_held(mag, ids, "a new session of the same key", &mut ignored);
    }

    /// Heartbeats due, entries whose time is up, and the indications after the grace.
    pub(super) fn restoration_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.restoration.enabled {
            let mut events = Vec::new();
            self.restoration.heartbeats.on_timeout(now, &mut events);
            self.heartbeat_events(events, now, out);
        }
        while let Some((at, id)) = self.restoration.deadlines.pop_due(now) {
            let Some(entry) = self.restoration.held.get(&id) else {
                continue;
            };
            if entry.until != at {
                continue;
            }
            let mag = entry.binding.mag.ip();
            self.release_held(mag, vec![id], "max_lifetime passed", out);
        }
        if self.restoration.tell_at.is_some_and(|t| t <= now) {
            self.restoration.tell_at = None;
            let untold: Vec<u64> = {
                let mut ids: Vec<u64> = self
                    .restoration
                    .held
                    .iter()
                    .filter(|(_, h)| !h.told)
                    .map(|(id, _)| *id)
                    .collect();
                ids.sort();
                ids
            };
            for id in untold {
                let Some(entry) = self.restoration.held.get_mut(&id) else {
                    continue;
                };
                entry.told = true;
                let b = entry.binding.clone();
                let trigger = RevocationTrigger::PossibleOutOfSyncBceState;
                let purpose = Purpose::Release(vec![id]);
                let sent = self.revoke_key(
                    BindingId::detached(),
                    b.mag,
                    &b.mn_id,
                    b.apn.clone(),
                    b.home_network_prefix,
                    trigger,
                    purpose,
                    now,
                    out,
                );
                if sent.is_err() {
                    self.release_held(b.mag.ip(), vec![id], "not told", out);
                }
            }
        }
    }

    /// After every input: the state file's records for the bindings that came and went,
    /// and the MAGs watched for heartbeats (from their first binding to their last).
    pub(super) fn track_outputs(&mut self, start: usize, now: Instant, out: &mut Vec<Output>) {
        if !self.restoration.enabled && !self.restoration.journaling {
            return;
        }
        let journaling = self.restoration.journaling;
        let mut records = Vec::new();
        for o in out.iter().skip(start) {
            match o {
                Output::BindingUp(info) => {
                    if self.restoration.enabled {
                        let first = now + self.restoration.heartbeats.settings().interval;
                        self.restoration
                            .heartbeats
                            .watch(info.mag.ip(), info.mag, first);
                    }
                    if let Some(entry) = self.cache.get(info.id) {
                        records.push(JournalRecord::Bound {
                            id: journal_id(info.id),
                            binding: HeldBinding {
                                mn_id: entry.mn_id().to_string(),
                                apn: entry.apn().map(str::to_string),
                                mag: info.mag,
                                ipv4_home_address: info.addresses.ipv4_home_address,
                                home_network_prefix: info.addresses.home_network_prefix,
                                home: None,
                            },
                        });
                    }
                }
                Output::ChainUp(info) => {
                    if self.restoration.enabled {
                        let first = now + self.restoration.heartbeats.settings().interval;
                        self.restoration
                            .heartbeats
                            .watch(info.epdg.ip(), info.epdg, first);
                    }
                    records.push(JournalRecord::Bound {
                        id: journal_id(info.id),
                        binding: HeldBinding {
                            mn_id: info.mn_id.clone(),
                            apn: info.apn.clone(),
                            mag: info.epdg,
                            ipv4_home_address: None,
                            home_network_prefix: None,
                            home: Some(info.home),
                        },
                    });
                }
                Output::BindingDown { binding, .. } => {
                    records.push(JournalRecord::Unbound {
                        id: journal_id(binding.id),
                    });
                    if self.cache.usage(binding.mag.ip()).bindings == 0 {
                        self.restoration.heartbeats.unwatch(binding.mag.ip());
                    }
                }
                Output::ChainDown { chain, .. } => {
                    records.push(JournalRecord::Unbound {
                        id: journal_id(chain.id),
                    });
                    if self.cache.usage(chain.epdg.ip()).bindings == 0 {
                        self.restoration.heartbeats.unwatch(chain.epdg.ip());
                    }
                }
                _ => {}
            }
        }
        // Held-back entries first: a binding taking over an entry's address is recorded
        // after the entry let go of it.
        out.extend(self.restoration.journal.drain(..).map(Output::Journal));
        if journaling {
            out.extend(records.into_iter().map(Output::Journal));
        }
    }

    /// An operator's revocation (module doc). Returns how many bindings went.
    pub fn revoke_bindings(
        &mut self,
        target: RevokeTarget,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Result<usize, RevokeError> {
        let start = out.len();
        let ids: Vec<BindingId> = match &target {
            RevokeTarget::Binding { mn_id, apn } => self
                .cache
                .bindings_of(mn_id)
                .into_iter()
                .filter(|id| {
                    apn.is_none() || self.cache.get(*id).and_then(|e| e.apn()) == apn.as_deref()
                })
                .collect(),
            RevokeTarget::Address(IpAddr::V4(a)) => {
                self.cache.by_ipv4_home_address(*a).into_iter().collect()
            }
            RevokeTarget::Address(IpAddr::V6(a)) => {
                let prefix = Ipv6Net::new(*a, 64).map(|p| p.trunc()).ok();
                prefix
                    .and_then(|p| self.cache.by_home_network_prefix(p))
                    .into_iter()
                    .collect()
            }
            RevokeTarget::Mag(mag) => self
                .cache
                .iter()
                .filter(|(_, e)| e.mag().ip() == *mag)
                .map(|(id, _)| id)
                .collect(),
            RevokeTarget::All => self.cache.iter().map(|(id, _)| id).collect(),
        };
        if ids.is_empty() {
            return Err(RevokeError::NotFound);
        }
        let global = matches!(target, RevokeTarget::Mag(_) | RevokeTarget::All);
        let mut per_mag: HashMap<IpAddr, (MagAddress, Vec<u64>)> = HashMap::new();
        let mut count = 0;
        for id in ids {
            let Some(entry) = self.cache.get(id) else {
                continue;
            };
            let mag = entry.mag();
            let held = HeldBinding {
                mn_id: entry.mn_id().to_string(),
                apn: entry.apn().map(str::to_string),
                mag,
                ipv4_home_address: entry.addresses().ipv4_home_address,
                home_network_prefix: entry.addresses().home_network_prefix,
                home: None,
            };
            let prefix = self.revocation_prefix(id);
            if self.is_chained(id) {
                // Nothing held here: the home gateway's addresses are let go at home.
                if !global {
                    let trigger = RevocationTrigger::AdministrativeReason;
                    let (mn, apn) = (held.mn_id.clone(), held.apn.clone());
                    let _ = self.revoke_key(
                        id,
                        mag,
                        &mn,
                        apn,
                        prefix,
                        trigger,
                        Purpose::Notify,
                        now,
                        out,
                    );
                }
                per_mag.entry(mag.ip()).or_insert((mag, Vec::new()));
                count += usize::from(self.chain_revoke(id, now, out));
                continue;
            }
            // The addresses stay taken, held back until the MAG answers.
            let info = self.info(id);
            if self.cache.remove(id).is_none() {
                continue;
            }
            if let Some(binding) = info {
                out.push(Output::BindingDown {
                    binding,
                    reason: DownReason::Revoked,
                });
            }
            count += 1;
            let until = now + self.restoration.max_lifetime;
            let until_wall = self.clock.at(until);
            let q = self.restoration.hold(held.clone(), until, until_wall, true);
            if global {
                per_mag
                    .entry(mag.ip())
                    .or_insert((mag, Vec::new()))
                    .1
                    .push(q);
            } else {
                let trigger = RevocationTrigger::AdministrativeReason;
                let purpose = Purpose::Release(vec![q]);
                let sent = self.revoke_key(
                    id,
                    mag,
                    &held.mn_id,
                    held.apn.clone(),
                    prefix,
                    trigger,
                    purpose,
                    now,
                    out,
                );
                if sent.is_err() {
                    self.release_held(mag.ip(), vec![q], "not told", out);
                }
            }
        }
        let mut mags: Vec<(IpAddr, (MagAddress, Vec<u64>))> = per_mag.into_iter().collect();
        mags.sort_by_key(|(ip, _)| *ip);
        for (_, (mag, held)) in mags.into_iter().filter(|_| global) {
            self.revoke_global(mag, held, now, out);
        }
        self.track_outputs(start, now, out);
        Ok(count)
    }

    /// One indication with the G bit and trigger "Per-Peer Policy", no options (RFC 5846
    /// section 8.1): every binding of `mag` here is gone; `held` is released when it is
    /// answered.
    fn revoke_global(
        &mut self,
        mag: MagAddress,
        held: Vec<u64>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(sequence) = self.revocations.free_sequence() else {
            self.release_held(mag.ip(), held, "not told", out);
            return;
        };
        let repr = BindingRevocationRepr {
            revocation_type: BindingRevocationType::Indication,
            trigger_or_status: RevocationTrigger::PerPeerPolicy.into(),
            sequence,
            flags: BindingRevocationRepr::PROXY | BindingRevocationRepr::GLOBAL,
            options: Vec::new(),
        };
        let before = out.len();
        self.send(mag, MobilityMessage::BindingRevocation(repr), out);
        let Some(Output::Send { bytes, .. }) = out.get(before).cloned() else {
            self.release_held(mag.ip(), held, "not told", out);
            return;
        };
        self.stats.revocations_sent += 1;
        out.push(Output::Revocation(RevocationReport {
            mag,
            sequence,
            mn_id: None,
            apn: None,
            event: super::RevocationEvent::Sent(RevocationTrigger::PerPeerPolicy),
        }));
        self.revocations.track(
            sequence,
            mag,
            BindingId::detached(),
            String::new(),
            None,
            bytes,
            &self.settings.revocation,
            Purpose::Release(held),
            now,
        );
    }
}
