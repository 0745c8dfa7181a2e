//! The MAG's proxy registration (RFC 5213 section 6): the Binding Update List, building
//! Proxy Binding Updates, retransmitting them with exponential backoff, matching Proxy
//! Binding Acknowledgements by sequence number, refreshing bindings before they expire
//! and de-registering them. Sans-IO: typed messages and virtual time in, typed messages
//! and events out; the driver encodes, sends and keeps the clock.
//!
//! Retransmission (RFC 5213 section 6.9.4, RFC 6275 section 11.8): a PBU without an
//! answer is sent again after `init_min_delay_between_bus`, the delay doubling on every
//! retransmission up to `max_delay_between_bus`; after `max_retransmissions` the
//! registration fails with [`RegistrationFailure::Timeout`]. Every transmission carries a
//! new sequence number and a fresh timestamp; a PBA answering any transmission of the
//! current exchange is accepted, so a late answer to an earlier copy is not wasted.
//!
//! Self-healing (RFC 5847, RFC 5846, TS 23.007 section 19), for a caller that feeds every
//! Mobility Header message from an LMA in as [`Input::Mobility`] and sends what
//! [`BindingUpdateList::poll_transmit`] returns besides the PBUs:
//!
//! * **Heartbeats** (with [`MagConfig::heartbeat`] set; the `heartbeat` module): every LMA
//!   this list holds a binding at is asked every HEARTBEAT_INTERVAL; requests from an LMA
//!   are answered with [`MagConfig::restart_counter`] (always, heartbeats on or not).
//! * **LMA restarted** (its restart counter changed, or it announced a restart with an
//!   unsolicited response): every binding held there is registered again at once, the PBU
//!   asking for the same home network prefix and IPv4 home address (RFC 5213 section
//!   6.9.1.1 lets a MAG name the prefix it wants, RFC 5844 section 3.1.1 the IPv4 home
//!   address) with this MAG's own downlink GRE key. Granted with the same addresses it is
//!   [`Output::Refreshed`] (the uplink GRE key in it may be new: the caller moves its
//!   tunnel to it); refused, unanswered or granted other addresses it is [`Output::Lost`]
//!   and the caller ends the session. [`LmaEvent::Restarted`] says how many went.
//! * **LMA unreachable** (MISSING_HEARTBEATS_ALLOWED exceeded): every binding held there is
//!   [`Output::Lost`] with [`RegistrationFailure::Unreachable`] ([`LmaEvent::Unreachable`]).
//! * **Binding Revocation Indication** (RFC 5846 section 9.1, checked in the order of
//!   section 6.2.1): a trigger the registry does not list is 133; G with a per-MN trigger
//!   or a global trigger without G is 134; P clear is 128 (this list holds only proxy
//!   bindings). G with "Per-Peer Policy" (no options allowed, else 134) revokes every
//!   binding held at that LMA; G with "Revoking Mobility Node Local Policy" those whose NAI
//!   has the realm of the MN-ID option's `@realm` (131 without one). Per mobile node: the
//!   MN-ID is required (131), the bindings of that NAI at that LMA are the candidates,
//!   narrowed by the Service Selection option (the APN) and the Home Network Prefix options
//!   when present (1 PARTIAL_SUCCESS naming the prefixes not found); with V, only the
//!   IPv4 home address named by the IPv4 Home Address Request option is released and the
//!   binding stays ([`Output::Refreshed`] without it); none found is 128. Handover
//!   triggers are accepted: whether the mobile node is still attached is the caller's to
//!   know, not the list's, and the LMA has moved the binding already. Revoked bindings
//!   leave the list as [`Output::Lost`] with [`RegistrationFailure::Revoked`]; the
//!   acknowledgement mirrors P, V, G and the sequence number (section 6.1.2).
//! * **This MAG restarted**: [`Input::AnnounceRestart`] sends the unsolicited Heartbeat
//!   Response to the LMAs it had bindings at (their addresses are the caller's to keep), so
//!   they drop its old bindings at once.
//!
//! Heartbeats, acknowledgements and per-LMA events come out of `poll_transmit` and
//! `poll_event`, quinn-proto style, beside the per-binding [`Output`]s of `handle`: a
//! caller that feeds no [`Input::Mobility`] and leaves heartbeats off never gets any.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::heartbeat::{HeartbeatEvent, HeartbeatSettings, Heartbeats};
use crate::mh::{
    AccessTechnologyType, BindingAckStatus, BindingRevocationRepr, BindingRevocationType, BuFlags,
    GreKey, HandoffIndicator, Ipv4HomeAddressReplyStatus, Lifetime, MobileNodeIdentifier,
    MobilityMessage, MobilityOption, ProxyBindingAck, ProxyBindingUpdate, Timestamp,
    VendorSpecific,
};
use crate::time::WallClock;

/// The MAG's protocol settings (RFC 5213 section 6.9.4 and section 9).
#[derive(Debug, Clone)]
pub struct MagConfig {
    /// First retransmission delay (InitMinDelayBetweenBUs).
    pub init_min_delay_between_bus: Duration,
    /// Largest retransmission delay (MaxDelayBetweenBUs, RFC 6275 MAX_BINDACK_TIMEOUT).
    pub max_delay_between_bus: Duration,
    /// Retransmissions after the first PBU before the exchange fails.
    pub max_retransmissions: u32,
    /// Lifetime asked for in every registration.
    pub requested_lifetime: Lifetime,
    /// Fraction of the granted lifetime after which the binding is refreshed.
    pub refresh_ratio: f64,
    /// Access Technology Type sent in every PBU (WLAN for an ePDG).
    pub access_technology: AccessTechnologyType,
    /// Whether PBUs carry the Timestamp option (RFC 5213 section 5.5).
    pub use_timestamps: bool,
    /// RFC 5847 heartbeats toward every LMA holding a binding of this list. `None` (the
    /// default): none are sent, and an LMA's restart shows only when a refresh fails.
    pub heartbeat: Option<HeartbeatSettings>,
    /// This MAG's RFC 5847 restart counter, sent in every Heartbeat Response; the caller
    /// keeps it across restarts and increments it when the MAG lost its bindings.
    pub restart_counter: u32,
}

impl Default for MagConfig {
    fn default() -> Self {
        MagConfig {
            init_min_delay_between_bus: Duration::from_secs(1),
            max_delay_between_bus: Duration::from_secs(32),
            max_retransmissions: 3,
            requested_lifetime: Lifetime::from_secs(3600),
            refresh_ratio: 0.8,
            access_technology: AccessTechnologyType::Ieee80211,
            use_timestamps: true,
            heartbeat: None,
            restart_counter: 0,
        }
    }
}

/// What identifies one binding: the mobile node's NAI and the APN (TS 29.275: one PDN
/// connection per (UE, APN) is one mobility session).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MobileNodeKey {
    pub mn_id: Arc<str>,
    pub apn: Option<Arc<str>>,
}

impl MobileNodeKey {
    pub fn new(mn_id: &str, apn: Option<&str>) -> Self {
        MobileNodeKey {
            mn_id: Arc::from(mn_id),
            apn: apn.map(Arc::from),
        }
    }
}

impl std::fmt::Display for MobileNodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.apn {
            Some(apn) => write!(f, "{} apn={}", self.mn_id, apn),
            None => write!(f, "{}", self.mn_id),
        }
    }
}

/// A request to register a mobile node at an LMA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationRequest {
    pub key: MobileNodeKey,
    /// The LMA: its address, and for IPv4 transport the UDP port (5436 by default).
    pub lma: SocketAddr,
    /// Ask for an IPv6 home network prefix (HNP option `::/0`).
    pub request_home_network_prefix: bool,
    /// Ask for an IPv4 home address (IPv4 Home Address Request `0.0.0.0/0`).
    pub request_ipv4_home_address: bool,
    /// The GRE key the LMA must use toward this MAG (RFC 5845 downlink key).
    pub downlink_gre_key: Option<GreKey>,
    pub handoff: HandoffIndicator,
    /// Extra vendor options, e.g. the 3GPP PDN GW address when chaining (TS 29.275).
    pub vendor: Vec<VendorSpecific>,
}

/// What the LMA granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub lma: SocketAddr,
    pub home_network_prefix: Option<Ipv6Net>,
    pub ipv4_home_address: Option<Ipv4Net>,
    pub ipv4_default_router: Option<Ipv4Addr>,
    /// The GRE key this MAG must use toward the LMA (RFC 5845 uplink key).
    pub uplink_gre_key: Option<GreKey>,
    pub lifetime: Lifetime,
    /// The 3GPP and other vendor options of the PBA (e.g. charging ID, PCO).
    pub vendor: Vec<VendorSpecific>,
}

/// Why a registration did not happen or did not last.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationFailure {
    /// The LMA answered with a rejecting status.
    #[error("LMA rejected the binding with status {0:?}")]
    Rejected(BindingAckStatus),
    /// The LMA accepted but did not assign what was asked for.
    #[error("LMA accepted but {0}")]
    Incomplete(&'static str),
    /// The LMA refused the IPv4 home address (RFC 5844 IPv4 Home Address Reply status).
    #[error("LMA refused the IPv4 home address: {0:?}")]
    Ipv4Refused(Ipv4HomeAddressReplyStatus),
    /// No PBA after every retransmission.
    #[error("no Proxy Binding Acknowledgement after {0} transmissions")]
    Timeout(u32),
    /// A registration for this key is already in the list.
    #[error("a binding for this mobile node and APN already exists")]
    Duplicate,
    /// The LMA missed this many heartbeats in a row (RFC 5847 section 3.1).
    #[error("the LMA did not answer {missed} heartbeats in a row")]
    Unreachable { missed: u32 },
    /// The LMA revoked the binding (RFC 5846) with this Revocation Trigger.
    #[error("the LMA revoked the binding (revocation trigger {trigger})")]
    Revoked { trigger: u8 },
}

/// What the driver feeds in.
#[derive(Debug, Clone)]
pub enum Input {
    Register(RegistrationRequest),
    Deregister(MobileNodeKey),
    /// Refresh this registration now instead of at its refresh time (a chaining gateway
    /// forwards its own MAG's re-registration): answered by `Refreshed` or `Lost`. An
    /// exchange already under way is left to finish; a key not registered is `Lost`.
    Refresh(MobileNodeKey),
    /// A PBA received from `from` (already parsed and checked).
    Ack {
        from: SocketAddr,
        ack: ProxyBindingAck,
    },
    /// Any Mobility Header message received from `from` (parsed, checksum checked): a
    /// Binding Acknowledgement, a Heartbeat (RFC 5847), a Binding Revocation Indication
    /// (RFC 5846) or a Binding Error; anything else is counted and dropped.
    Mobility {
        from: SocketAddr,
        message: MobilityMessage,
    },
    /// This MAG restarted and lost its bindings: the LMAs it had bindings at (kept by the
    /// caller) are told with unsolicited Heartbeat Responses (RFC 5847 section 3.2).
    AnnounceRestart(Vec<SocketAddr>),
    /// The driver's timer for `poll_timeout()` fired.
    Timeout,
}

/// A Mobility Header message other than a PBU that the driver sends for the list: a
/// Heartbeat or a Binding Revocation Acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub message: MobilityMessage,
}

/// What the list learnt about one LMA (one log line each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LmaEvent {
    /// Its restart counter changed: `reregistering` bindings are being registered again.
    Restarted {
        lma: IpAddr,
        previous: Option<u32>,
        current: u32,
        reregistering: usize,
    },
    /// MISSING_HEARTBEATS_ALLOWED exceeded: `lost` bindings were given up.
    Unreachable {
        lma: IpAddr,
        missed: u32,
        lost: usize,
    },
    /// It answered a heartbeat again after being unreachable.
    Reachable { lma: IpAddr },
    /// It answered a heartbeat with Binding Error status 2: no more heartbeats to it.
    HeartbeatUnsupported { lma: IpAddr },
    /// It sent a Binding Revocation Indication: answered with `status`, `revoked`
    /// bindings gone.
    Revocation {
        lma: IpAddr,
        trigger: u8,
        global: bool,
        status: u8,
        revoked: usize,
    },
}

/// What the driver carries out or reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Encode and send this PBU to the LMA.
    Send {
        to: SocketAddr,
        pbu: ProxyBindingUpdate,
    },
    /// The first registration succeeded.
    Registered {
        key: MobileNodeKey,
        registration: Registration,
    },
    /// A refresh succeeded (addresses unchanged, lifetime extended).
    Refreshed {
        key: MobileNodeKey,
        registration: Registration,
    },
    /// The registration failed; the entry is gone.
    Failed {
        key: MobileNodeKey,
        reason: RegistrationFailure,
    },
    /// A registered binding was lost (refresh rejected or unanswered); the entry is gone.
    Lost {
        key: MobileNodeKey,
        reason: RegistrationFailure,
    },
    /// De-registration finished (acknowledged, or given up after retransmissions).
    Deregistered {
        key: MobileNodeKey,
        acknowledged: bool,
    },
}

/// Counters for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub pbus_sent: u64,
    pub retransmissions: u64,
    pub pbas_matched: u64,
    /// PBAs that matched no outstanding sequence number, or came from the wrong LMA.
    pub pbas_unmatched: u64,
    /// Bindings registered again, with the same addresses, after their LMA restarted.
    pub reregistered: u64,
    /// Bindings revoked by their LMA (RFC 5846).
    pub revoked: u64,
    /// Mobility Header messages the list does not act on.
    pub ignored: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// First registration, waiting for the PBA.
    Registering,
    /// Registered; refresh due at the deadline.
    Registered,
    /// Refresh sent, waiting for the PBA.
    Refreshing,
    /// Lifetime-zero PBU sent, waiting for the PBA.
    Deregistering,
}

/// One Binding Update List entry (RFC 5213 section 6.1).
#[derive(Debug)]
struct BindingUpdateListEntry {
    request: RegistrationRequest,
    phase: Phase,
    /// What the LMA granted, once registered.
    granted: Option<Registration>,
    /// Sequence numbers sent in the current exchange.
    outstanding: Vec<u16>,
    transmissions: u32,
    next_delay: Duration,
    deadline: Option<Instant>,
    /// Bumped on every deadline change so stale heap items are ignored.
    generation: u64,
    /// Registering again after the LMA restarted (counted when it succeeds).
    restoring: bool,
}

/// The MAG's Binding Update List: every mobile node this MAG has registered or is
/// registering, keyed by (MN-ID, APN).
pub struct BindingUpdateList {
    config: MagConfig,
    entries: HashMap<MobileNodeKey, BindingUpdateListEntry>,
    by_sequence: HashMap<u16, MobileNodeKey>,
    deadlines: BinaryHeap<Reverse<(Instant, u64, MobileNodeKey)>>,
    next_sequence: u16,
    next_generation: u64,
    /// Wall clock at `epoch`, so timestamps follow virtual time.
    clock: WallClock,
    stats: Stats,
    /// RFC 5847 toward the LMAs, and how many granted bindings each holds.
    heartbeats: Heartbeats<SocketAddr>,
    granted_at: HashMap<IpAddr, usize>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<LmaEvent>,
}

impl BindingUpdateList {
    /// `now` and `wall_clock` are the same moment: monotonic and wall-clock time.
    pub fn new(config: MagConfig, now: Instant, wall_clock: SystemTime) -> Self {
        BindingUpdateList {
            heartbeats: Heartbeats::new(
                config.heartbeat.unwrap_or_default(),
                config.restart_counter,
            ),
            granted_at: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            config,
            entries: HashMap::new(),
            by_sequence: HashMap::new(),
            deadlines: BinaryHeap::new(),
            next_sequence: 0,
            next_generation: 0,
            clock: WallClock::new(now, wall_clock),
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the first registration of this mobile node is under way (no PBA yet).
    pub fn is_registering(&self, key: &MobileNodeKey) -> bool {
        self.entries
            .get(key)
            .is_some_and(|e| e.phase == Phase::Registering)
    }

    /// What the LMA granted this mobile node, if it is registered.
    pub fn registration(&self, key: &MobileNodeKey) -> Option<&Registration> {
        self.entries.get(key).and_then(|e| e.granted.as_ref())
    }

    /// Heartbeat statistics (RFC 5847).
    pub fn heartbeat_stats(&self) -> crate::heartbeat::HeartbeatStats {
        self.heartbeats.stats()
    }

    /// The LMAs holding a granted binding of this list (what a caller keeps to announce
    /// its own restart with [`Input::AnnounceRestart`]).
    pub fn lmas(&self) -> Vec<SocketAddr> {
        let mut lmas: Vec<SocketAddr> = self
            .entries
            .values()
            .filter(|e| e.granted.is_some())
            .map(|e| e.request.lma)
            .collect();
        lmas.sort();
        lmas.dedup();
        lmas
    }

    /// The restart counter last heard from `lma` (RFC 5847).
    pub fn lma_restart_counter(&self, lma: IpAddr) -> Option<u32> {
        self.heartbeats.peer_counter(lma)
    }

    /// The earliest moment `handle(Input::Timeout, ..)` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let list = self.deadlines.peek().map(|Reverse((at, _, _))| *at);
        let heartbeats = self
            .config
            .heartbeat
            .and_then(|_| self.heartbeats.poll_timeout());
        list.into_iter().chain(heartbeats).min()
    }

    /// The next Heartbeat or Binding Revocation Acknowledgement to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next thing learnt about an LMA.
    pub fn poll_event(&mut self) -> Option<LmaEvent> {
        self.events.pop_front()
    }

    pub fn handle(&mut self, input: Input, now: Instant, out: &mut Vec<Output>) {
        match input {
            Input::Register(request) => self.register(request, now, out),
            Input::Deregister(key) => self.deregister(key, now, out),
            Input::Refresh(key) => self.refresh(key, now, out),
            Input::Ack { from, ack } => self.acknowledge(from, ack, now, out),
            Input::Mobility { from, message } => self.mobility(from, message, now, out),
            Input::AnnounceRestart(lmas) => {
                let mut events = Vec::new();
                self.heartbeats.announce_restart(lmas, &mut events);
                self.heartbeat_events(events, now, out);
            }
            Input::Timeout => {
                self.expire(now, out);
                if self.config.heartbeat.is_some() {
                    let mut events = Vec::new();
                    self.heartbeats.on_timeout(now, &mut events);
                    self.heartbeat_events(events, now, out);
                }
            }
        }
        self.prune_stale_deadlines();
    }

    /// A Mobility Header message from an LMA (`Input::Mobility`).
    fn mobility(
        &mut self,
        from: SocketAddr,
        message: MobilityMessage,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let mut events = Vec::new();
        match message {
            MobilityMessage::BindingAck(ba) => match ProxyBindingAck::try_from(&ba) {
                Ok(ack) => self.acknowledge(from, ack, now, out),
                Err(_) => self.stats.pbas_unmatched += 1,
            },
            MobilityMessage::Heartbeat(heartbeat) => {
                self.heartbeats
                    .on_heartbeat(from.ip(), from, &heartbeat, now, &mut events)
            }
            MobilityMessage::BindingError(error) => {
                self.heartbeats
                    .on_binding_error(from.ip(), error.status, &mut events)
            }
            MobilityMessage::BindingRevocation(bri)
                if bri.revocation_type == BindingRevocationType::Indication =>
            {
                self.revocation(from, &bri, out)
            }
            _ => self.stats.ignored += 1,
        }
        self.heartbeat_events(events, now, out);
    }

    /// Carries out what the heartbeat state reported.
    fn heartbeat_events(
        &mut self,
        events: Vec<HeartbeatEvent<SocketAddr>>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        for event in events {
            match event {
                HeartbeatEvent::Send { to, heartbeat } => self.transmits.push_back(Transmit {
                    to,
                    message: MobilityMessage::Heartbeat(heartbeat),
                }),
                HeartbeatEvent::Restarted {
                    peer,
                    previous,
                    current,
                    ..
                } => {
                    let reregistering = self.lma_restarted(peer, now, out);
                    self.events.push_back(LmaEvent::Restarted {
                        lma: peer,
                        previous,
                        current,
                        reregistering,
                    });
                }
                HeartbeatEvent::Unreachable { peer, missed } => {
                    let lost = self.lma_unreachable(peer, missed, out);
                    self.events.push_back(LmaEvent::Unreachable {
                        lma: peer,
                        missed,
                        lost,
                    });
                }
                HeartbeatEvent::Reachable { peer } => {
                    self.events.push_back(LmaEvent::Reachable { lma: peer })
                }
                HeartbeatEvent::Unsupported { peer } => self
                    .events
                    .push_back(LmaEvent::HeartbeatUnsupported { lma: peer }),
            }
        }
    }

    /// The keys of the entries at `lma` for which `pick` holds.
    fn keys_at(
        &self,
        lma: IpAddr,
        pick: impl Fn(&BindingUpdateListEntry) -> bool,
    ) -> Vec<MobileNodeKey> {
        let mut keys: Vec<MobileNodeKey> = self
            .entries
            .iter()
            .filter(|(_, e)| e.request.lma.ip() == lma && pick(e))
            .map(|(k, _)| k.clone())
            .collect();
        // A fixed order, so a run repeats exactly.
        keys.sort();
        keys
    }

    /// The LMA lost its state: every binding granted there is registered again now with
    /// the addresses it holds (module doc). Returns how many.
    fn lma_restarted(&mut self, lma: IpAddr, now: Instant, out: &mut Vec<Output>) -> usize {
        let keys = self.keys_at(lma, |e| e.granted.is_some());
        let mut count = 0;
        for key in keys {
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            match entry.phase {
                Phase::Registered => {
                    entry.phase = Phase::Refreshing;
                    entry.restoring = true;
                    self.start_exchange(&key, now, out);
                    count += 1;
                }
                // Its PBUs go on to the restarted LMA, which answers them as new ones.
                Phase::Refreshing => {
                    entry.restoring = true;
                    count += 1;
                }
                Phase::Registering | Phase::Deregistering => {}
            }
        }
        count
    }

    /// The LMA missed its heartbeats: every binding there is given up. Returns how many.
    fn lma_unreachable(&mut self, lma: IpAddr, missed: u32, out: &mut Vec<Output>) -> usize {
        // A registration under way has its own retransmissions and outcome.
        let keys = self.keys_at(lma, |e| e.phase != Phase::Registering);
        for key in &keys {
            let phase = self.entries.get(key).map(|e| e.phase);
            self.remove(key);
            out.push(match phase {
                Some(Phase::Deregistering) => Output::Deregistered {
                    key: key.clone(),
                    acknowledged: false,
                },
                _ => Output::Lost {
                    key: key.clone(),
                    reason: RegistrationFailure::Unreachable { missed },
                },
            });
        }
        keys.len()
    }

    /// A Binding Revocation Indication from an LMA (RFC 5846 section 9.1, module doc).
    fn revocation(&mut self, from: SocketAddr, bri: &BindingRevocationRepr, out: &mut Vec<Output>) {
        let trigger = bri.trigger_or_status;
        let global = bri.flags & BindingRevocationRepr::GLOBAL != 0;
        let nai = bri.options.iter().find_map(|o| match o {
            MobilityOption::MobileNodeIdentifier(MobileNodeIdentifier::Nai(n)) => Some(n.clone()),
            _ => None,
        });
        let apn = bri.options.iter().find_map(|o| match o {
            MobilityOption::ServiceSelection(a) => Some(a.clone()),
            _ => None,
        });
        let prefixes: Vec<Ipv6Net> = bri
            .options
            .iter()
            .filter_map(|o| match o {
                MobilityOption::HomeNetworkPrefix(p) => Some(p.trunc()),
                _ => None,
            })
            .collect();
        let lma = from.ip();
        // Revocable: a binding granted at this LMA (or being let go there).
        let at_lma = |e: &BindingUpdateListEntry| e.granted.is_some();
        let mut revoked: Vec<MobileNodeKey> = Vec::new();
        let mut not_found: Vec<Ipv6Net> = Vec::new();
        let mut ipv4_only: Option<MobileNodeKey> = None;
        let status = if !revocation::trigger_known(trigger) {
            revocation::TRIGGER_NOT_SUPPORTED
        } else if global != (trigger >= 128) {
            revocation::FUNCTION_NOT_SUPPORTED
        } else if bri.flags & BindingRevocationRepr::PROXY == 0 {
            revocation::BINDING_DOES_NOT_EXIST
        } else if trigger == revocation::PER_PEER_POLICY {
            if bri.options.is_empty() {
                revoked = self.keys_at(lma, at_lma);
                revocation::SUCCESS
            } else {
                revocation::FUNCTION_NOT_SUPPORTED
            }
        } else if global {
            // "Revoking Mobility Node Local Policy": every NAI of the realm named.
            match nai.as_deref().and_then(|n| n.strip_prefix('@')) {
                Some(realm) if !realm.is_empty() => {
                    revoked = self.keys_at(lma, |e| {
                        at_lma(e)
                            && e.request.key.mn_id.rsplit_once('@').map(|(_, r)| r) == Some(realm)
                    });
                    if revoked.is_empty() {
                        revocation::BINDING_DOES_NOT_EXIST
                    } else {
                        revocation::SUCCESS
                    }
                }
                _ => revocation::IDENTITY_REQUIRED,
            }
        } else if let Some(nai) = &nai {
            let mut candidates = self.keys_at(lma, |e| {
                at_lma(e)
                    && &*e.request.key.mn_id == nai.as_str()
                    && apn
                        .as_deref()
                        .is_none_or(|a| e.request.key.apn.as_deref() == Some(a))
            });
            if bri.flags & BindingRevocationRepr::IPV4_HOA_ONLY != 0 {
                let address = bri.options.iter().find_map(|o| match o {
                    MobilityOption::Ipv4HomeAddressRequest(a) => Some(a.addr()),
                    _ => None,
                });
                ipv4_only = candidates.into_iter().find(|k| {
                    let held = self.registration(k).and_then(|r| r.ipv4_home_address);
                    address.is_some() && held.map(|h| h.addr()) == address
                });
                if ipv4_only.is_some() {
                    revocation::SUCCESS
                } else {
                    revocation::BINDING_DOES_NOT_EXIST
                }
            } else {
                if !prefixes.is_empty() {
                    for prefix in &prefixes {
                        let held = |k: &MobileNodeKey| {
                            self.registration(k)
                                .and_then(|r| r.home_network_prefix)
                                .map(|p| p.trunc())
                                == Some(*prefix)
                        };
                        if !candidates.iter().any(held) {
                            not_found.push(*prefix);
                        }
                    }
                    candidates.retain(|k| {
                        self.registration(k)
                            .and_then(|r| r.home_network_prefix)
                            .is_some_and(|p| prefixes.contains(&p.trunc()))
                    });
                }
                revoked = candidates;
                match (revoked.is_empty(), not_found.is_empty()) {
                    (true, _) => revocation::BINDING_DOES_NOT_EXIST,
                    (false, true) => revocation::SUCCESS,
                    (false, false) => revocation::PARTIAL_SUCCESS,
                }
            }
        } else {
            revocation::IDENTITY_REQUIRED
        };
        let ipv4_released = ipv4_only.is_some();
        if let Some(key) = ipv4_only {
            self.release_ipv4(&key, out);
        }
        for key in &revoked {
            let phase = self.entries.get(key).map(|e| e.phase);
            self.remove(key);
            self.stats.revoked += 1;
            out.push(match phase {
                Some(Phase::Deregistering) => Output::Deregistered {
                    key: key.clone(),
                    acknowledged: true,
                },
                _ => Output::Lost {
                    key: key.clone(),
                    reason: RegistrationFailure::Revoked { trigger },
                },
            });
        }
        // RFC 5846 section 9.1: a partial success names what could not be revoked.
        let mut options = Vec::new();
        if status == revocation::PARTIAL_SUCCESS {
            options.extend(
                nai.map(|n| MobilityOption::MobileNodeIdentifier(MobileNodeIdentifier::Nai(n))),
            );
            options.extend(not_found.into_iter().map(MobilityOption::HomeNetworkPrefix));
        }
        let mirrored = BindingRevocationRepr::PROXY
            | BindingRevocationRepr::IPV4_HOA_ONLY
            | BindingRevocationRepr::GLOBAL;
        self.transmits.push_back(Transmit {
            to: from,
            message: MobilityMessage::BindingRevocation(BindingRevocationRepr {
                revocation_type: BindingRevocationType::Acknowledgement,
                trigger_or_status: status,
                sequence: bri.sequence,
                flags: bri.flags & mirrored,
                options,
            }),
        });
        self.events.push_back(LmaEvent::Revocation {
            lma,
            trigger,
            global,
            status,
            revoked: revoked.len() + usize::from(ipv4_released),
        });
    }

    /// RFC 5846 V flag: the binding keeps going without its IPv4 home address.
    fn release_ipv4(&mut self, key: &MobileNodeKey, out: &mut Vec<Output>) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        entry.request.request_ipv4_home_address = false;
        if let Some(granted) = entry.granted.as_mut() {
            granted.ipv4_home_address = None;
            out.push(Output::Refreshed {
                key: key.clone(),
                registration: granted.clone(),
            });
        }
    }

    /// Drops superseded deadlines from the top of the heap so `poll_timeout` is exact.
    fn prune_stale_deadlines(&mut self) {
        while let Some(Reverse((_, generation, key))) = self.deadlines.peek() {
            match self.entries.get(key) {
                Some(entry) if entry.generation == *generation => break,
                _ => {
                    self.deadlines.pop();
                }
            }
        }
    }

    fn register(&mut self, request: RegistrationRequest, now: Instant, out: &mut Vec<Output>) {
        if self.entries.contains_key(&request.key) {
            out.push(Output::Failed {
                key: request.key,
                reason: RegistrationFailure::Duplicate,
            });
            return;
        }
        let key = request.key.clone();
        let entry = BindingUpdateListEntry {
            request,
            phase: Phase::Registering,
            granted: None,
            outstanding: Vec::new(),
            transmissions: 0,
            next_delay: self.config.init_min_delay_between_bus,
            deadline: None,
            generation: 0,
            restoring: false,
        };
        self.entries.insert(key.clone(), entry);
        self.transmit(&key, now, out);
    }

    fn refresh(&mut self, key: MobileNodeKey, now: Instant, out: &mut Vec<Output>) {
        match self.entries.get_mut(&key) {
            Some(entry) if entry.phase == Phase::Registered => {
                entry.phase = Phase::Refreshing;
                self.start_exchange(&key, now, out);
            }
            // Registering, refreshing or de-registering: that exchange answers.
            Some(_) => {}
            None => out.push(Output::Lost {
                key,
                reason: RegistrationFailure::Incomplete("there is no registration to refresh"),
            }),
        }
    }

    fn deregister(&mut self, key: MobileNodeKey, now: Instant, out: &mut Vec<Output>) {
        let Some(entry) = self.entries.get_mut(&key) else {
            // Nothing registered: de-registration is already true.
            out.push(Output::Deregistered {
                key,
                acknowledged: false,
            });
            return;
        };
        if entry.phase == Phase::Registering {
            // Not yet granted: forget it, and tell whoever waits for the registration.
            self.remove(&key);
            out.push(Output::Deregistered {
                key,
                acknowledged: false,
            });
            return;
        }
        entry.phase = Phase::Deregistering;
        self.start_exchange(&key, now, out);
    }

    /// Starts a new request/response exchange (refresh or de-registration) for `key`.
    fn start_exchange(&mut self, key: &MobileNodeKey, now: Instant, out: &mut Vec<Output>) {
        self.forget_outstanding(key);
        if let Some(entry) = self.entries.get_mut(key) {
            entry.transmissions = 0;
            entry.next_delay = self.config.init_min_delay_between_bus;
        }
        self.transmit(key, now, out);
    }

    /// Sends (or re-sends) the entry's current PBU and arms the retransmission timer.
    fn transmit(&mut self, key: &MobileNodeKey, now: Instant, out: &mut Vec<Output>) {
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        let timestamp = self.config.use_timestamps.then(|| self.timestamp_at(now));
        if let Some(stale) = self.by_sequence.insert(sequence, key.clone()) {
            // The 16-bit space wrapped onto an exchange still waiting: that copy is lost.
            if let Some(other) = self.entries.get_mut(&stale) {
                other.outstanding.retain(|s| *s != sequence);
            }
        }
        let Some(entry) = self.entries.get_mut(key) else {
            self.by_sequence.remove(&sequence);
            return;
        };
        let pbu = build_pbu(&self.config, entry, sequence, timestamp);
        entry.outstanding.push(sequence);
        entry.transmissions += 1;
        let delay = entry.next_delay;
        entry.next_delay = (delay * 2).min(self.config.max_delay_between_bus);
        let to = entry.request.lma;
        self.stats.pbus_sent += 1;
        if entry.transmissions > 1 {
            self.stats.retransmissions += 1;
        }
        self.arm(key, now + delay);
        out.push(Output::Send { to, pbu });
    }

    fn acknowledge(
        &mut self,
        from: SocketAddr,
        ack: ProxyBindingAck,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(key) = self.by_sequence.get(&ack.sequence).cloned() else {
            self.stats.pbas_unmatched += 1;
            return;
        };
        let Some(entry) = self.entries.get(&key) else {
            self.stats.pbas_unmatched += 1;
            return;
        };
        let mn_id_matches = ack.mn_id.as_deref().is_none_or(|id| id == &*key.mn_id);
        if from.ip() != entry.request.lma.ip() || !mn_id_matches {
            self.stats.pbas_unmatched += 1;
            return;
        }
        let phase = entry.phase;
        self.stats.pbas_matched += 1;
        self.forget_outstanding(&key);
        match phase {
            Phase::Deregistering => {
                self.remove(&key);
                out.push(Output::Deregistered {
                    key,
                    acknowledged: true,
                });
            }
            Phase::Registering | Phase::Refreshing => match self.grant(&key, from, &ack) {
                Ok(registration) => {
                    let refresh_in = Duration::from_secs_f64(
                        f64::from(registration.lifetime.as_secs()) * self.config.refresh_ratio,
                    );
                    let mut first = false;
                    if let Some(entry) = self.entries.get_mut(&key) {
                        first = entry.granted.is_none();
                        if std::mem::take(&mut entry.restoring) {
                            self.stats.reregistered += 1;
                        }
                        entry.granted = Some(registration.clone());
                        entry.phase = Phase::Registered;
                    }
                    if first {
                        self.granted_here(from, 1, now);
                    }
                    self.arm(&key, now + refresh_in);
                    out.push(if phase == Phase::Registering {
                        Output::Registered { key, registration }
                    } else {
                        Output::Refreshed { key, registration }
                    });
                }
                Err(reason) => {
                    self.remove(&key);
                    out.push(if phase == Phase::Registering {
                        Output::Failed { key, reason }
                    } else {
                        Output::Lost { key, reason }
                    });
                }
            },
            // Nothing outstanding while registered: a duplicate of an answered PBA.
            Phase::Registered => {}
        }
    }

    /// Checks a PBA against what was asked (RFC 5213 section 6.9.1.2, RFC 5844 3.2).
    fn grant(
        &self,
        key: &MobileNodeKey,
        from: SocketAddr,
        ack: &ProxyBindingAck,
    ) -> Result<Registration, RegistrationFailure> {
        let entry = self
            .entries
            .get(key)
            .ok_or(RegistrationFailure::Incomplete("the entry vanished"))?;
        if !ack.status.is_accepted() {
            return Err(RegistrationFailure::Rejected(ack.status));
        }
        if ack.lifetime.is_zero() {
            return Err(RegistrationFailure::Incomplete("granted a zero lifetime"));
        }
        let request = &entry.request;
        let home_network_prefix = ack.home_network_prefixes.first().copied();
        if request.request_home_network_prefix
            && home_network_prefix.is_none_or(|p| p.prefix_len() == 0)
        {
            return Err(RegistrationFailure::Incomplete(
                "no home network prefix was assigned",
            ));
        }
        let mut ipv4_home_address = None;
        if request.request_ipv4_home_address {
            match ack.ipv4_home_address_reply {
                Some((Ipv4HomeAddressReplyStatus::Success, address))
                    if !address.addr().is_unspecified() =>
                {
                    ipv4_home_address = Some(address)
                }
                Some((Ipv4HomeAddressReplyStatus::Success, _)) | None => {
                    return Err(RegistrationFailure::Incomplete(
                        "no IPv4 home address was assigned",
                    ))
                }
                Some((status, _)) => return Err(RegistrationFailure::Ipv4Refused(status)),
            }
        }
        if request.downlink_gre_key.is_some() && ack.gre_key.is_none() {
            return Err(RegistrationFailure::Incomplete(
                "no uplink GRE key was assigned",
            ));
        }
        if let Some(held) = &entry.granted {
            // A refresh (or a registration again at a restarted LMA) must keep what the
            // first registration granted.
            if held.home_network_prefix != home_network_prefix
                && request.request_home_network_prefix
            {
                return Err(RegistrationFailure::Incomplete(
                    "the home network prefix changed on refresh",
                ));
            }
            let address = |a: Option<Ipv4Net>| a.map(|a| a.addr());
            if address(held.ipv4_home_address) != address(ipv4_home_address)
                && request.request_ipv4_home_address
            {
                return Err(RegistrationFailure::Incomplete(
                    "the IPv4 home address changed on refresh",
                ));
            }
        }
        Ok(Registration {
            lma: from,
            home_network_prefix: if request.request_home_network_prefix {
                home_network_prefix
            } else {
                None
            },
            ipv4_home_address,
            ipv4_default_router: ack.ipv4_default_router,
            uplink_gre_key: ack.gre_key,
            lifetime: ack.lifetime,
            vendor: ack.vendor.clone(),
        })
    }

    fn expire(&mut self, now: Instant, out: &mut Vec<Output>) {
        while let Some(Reverse((at, generation, key))) = self.deadlines.peek().cloned() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let Some(entry) = self.entries.get(&key) else {
                continue;
            };
            if entry.generation != generation {
                continue;
            }
            match entry.phase {
                Phase::Registered => {
                    if let Some(entry) = self.entries.get_mut(&key) {
                        entry.phase = Phase::Refreshing;
                    }
                    self.start_exchange(&key, now, out);
                }
                phase if entry.transmissions <= self.config.max_retransmissions => {
                    let _ = phase;
                    self.transmit(&key, now, out);
                }
                phase => {
                    let reason = RegistrationFailure::Timeout(entry.transmissions);
                    self.remove(&key);
                    out.push(match phase {
                        Phase::Registering => Output::Failed { key, reason },
                        Phase::Refreshing => Output::Lost { key, reason },
                        _ => Output::Deregistered {
                            key,
                            acknowledged: false,
                        },
                    });
                }
            }
        }
    }

    fn arm(&mut self, key: &MobileNodeKey, at: Instant) {
        self.next_generation += 1;
        let generation = self.next_generation;
        if let Some(entry) = self.entries.get_mut(key) {
            entry.generation = generation;
            entry.deadline = Some(at);
            self.deadlines.push(Reverse((at, generation, key.clone())));
        }
    }

    fn forget_outstanding(&mut self, key: &MobileNodeKey) {
        if let Some(entry) = self.entries.get_mut(key) {
            for sequence in entry.outstanding.drain(..) {
                if self.by_sequence.get(&sequence) == Some(key) {
                    self.by_sequence.remove(&sequence);
                }
            }
        }
    }

    fn remove(&mut self, key: &MobileNodeKey) {
        self.forget_outstanding(key);
        if let Some(entry) = self.entries.remove(key) {
            if entry.granted.is_some() {
                self.granted_here(entry.request.lma, -1, self.clock.epoch());
            }
        }
        // Heap items for it are skipped lazily: the entry is gone.
    }

    /// Counts a granted binding at `lma` in (`1`) or out (`-1`): an LMA is asked for
    /// heartbeats while it holds one (RFC 5847 section 3).
    fn granted_here(&mut self, lma: SocketAddr, delta: i32, now: Instant) {
        let count = self.granted_at.entry(lma.ip()).or_default();
        if delta > 0 {
            *count += 1;
            if *count == 1 && self.config.heartbeat.is_some() {
                self.heartbeats.watch(lma.ip(), lma, now);
            }
        } else {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.granted_at.remove(&lma.ip());
                self.heartbeats.unwatch(lma.ip());
            }
        }
    }

    fn timestamp_at(&self, now: Instant) -> Timestamp {
        Timestamp::from_system_time(self.clock.at(now))
    }
}

/// The PBU for an entry's current exchange (RFC 5213 section 6.9.1.1, RFC 5844 3.1,
/// RFC 5845 3.1): requests on first registration, held values on refresh and
/// de-registration.
fn build_pbu(
    config: &MagConfig,
    entry: &BindingUpdateListEntry,
    sequence: u16,
    timestamp: Option<Timestamp>,
) -> ProxyBindingUpdate {
    let request = &entry.request;
    let held = entry.granted.as_ref();
    let lifetime = if entry.phase == Phase::Deregistering {
        Lifetime(0)
    } else {
        config.requested_lifetime
    };
    let any_prefix = Ipv6Net::new(std::net::Ipv6Addr::UNSPECIFIED, 0).unwrap_or_default();
    let home_network_prefixes = if request.request_home_network_prefix {
        vec![held
            .and_then(|h| h.home_network_prefix)
            .unwrap_or(any_prefix)]
    } else {
        Vec::new()
    };
    let ipv4_home_address_request = request.request_ipv4_home_address.then(|| {
        held.and_then(|h| h.ipv4_home_address)
            .unwrap_or_else(|| Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).unwrap_or_default())
    });
    let handoff = if held.is_some() {
        HandoffIndicator::HandoffStateNotChanged
    } else {
        request.handoff
    };
    ProxyBindingUpdate {
        sequence,
        flags: BuFlags(BuFlags::ACK | BuFlags::HOME_REGISTRATION | BuFlags::PROXY),
        lifetime,
        mn_id: request.key.mn_id.to_string(),
        apn: request.key.apn.as_deref().map(str::to_string),
        home_network_prefixes,
        handoff,
        access_technology: config.access_technology,
        timestamp,
        link_local_address: None,
        link_layer_id: None,
        gre_key: request.downlink_gre_key,
        ipv4_home_address_request,
        ipv4_care_of_address: None,
        restart_counter: None,
        vendor: request.vendor.clone(),
        other: Vec::new(),
    }
}

/// RFC 5846 code points the list reads and answers with (sections 5.1, 5.2 and 12), as
/// octets, from the codec's registries.
mod revocation {
    use crate::mh::{BindingRevocationStatus as Status, RevocationTrigger as Trigger};

    pub const PER_PEER_POLICY: u8 = Trigger::PerPeerPolicy.value();
    pub const SUCCESS: u8 = Status::Success.value();
    pub const PARTIAL_SUCCESS: u8 = Status::PartialSuccess.value();
    pub const BINDING_DOES_NOT_EXIST: u8 = Status::BindingDoesNotExist.value();
    pub const IDENTITY_REQUIRED: u8 = Status::RevokedMobileNodesIdentityRequired.value();
    pub const TRIGGER_NOT_SUPPORTED: u8 = Status::RevocationTriggerNotSupported.value();
    pub const FUNCTION_NOT_SUPPORTED: u8 = Status::RevocationFunctionNotSupported.value();

    /// Whether the Revocation Trigger registry names `trigger`.
    pub fn trigger_known(trigger: u8) -> bool {
        !matches!(Trigger::from(trigger), Trigger::Unknown(_))
    }
}

/// The LMA address family decides the transport: IPv4 uses UDP 5436 (RFC 5844), IPv6
/// the Mobility Header directly (RFC 5213).
pub fn is_ipv4_transport(lma: &SocketAddr) -> bool {
    matches!(lma.ip(), IpAddr::V4(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mh::HeartbeatRepr;
    use std::net::Ipv6Addr;
    use std::time::UNIX_EPOCH;

    fn lma() -> SocketAddr {
        "127.0.0.2:5436".parse().unwrap()
    }

    fn request(n: u32) -> RegistrationRequest {
        RegistrationRequest {
            key: MobileNodeKey::new(&format!("0001010{n:08}@nai.epc"), Some("internet")),
            lma: lma(),
            request_home_network_prefix: true,
            request_ipv4_home_address: true,
            downlink_gre_key: Some(GreKey(1000 + n)),
            handoff: HandoffIndicator::AttachmentOverNewInterface,
            vendor: Vec::new(),
        }
    }

    fn accept(pbu: &ProxyBindingUpdate, n: u8) -> ProxyBindingAck {
        ProxyBindingAck {
            status: BindingAckStatus::Accepted,
            sequence: pbu.sequence,
            lifetime: pbu.lifetime,
            mn_id: Some(pbu.mn_id.clone()),
            apn: pbu.apn.clone(),
            home_network_prefixes: vec![Ipv6Net::new(
                Ipv6Addr::new(0x2001, 0xdb8, 0, n.into(), 0, 0, 0, 0),
                64,
            )
            .unwrap()],
            handoff: Some(pbu.handoff),
            access_technology: Some(pbu.access_technology),
            timestamp: pbu.timestamp,
            link_local_address: None,
            link_layer_id: None,
            gre_key: Some(GreKey(7)),
            ipv4_home_address_reply: Some((
                Ipv4HomeAddressReplyStatus::Success,
                Ipv4Net::new(Ipv4Addr::new(10, 45, 0, n), 16).unwrap(),
            )),
            ipv4_default_router: Some(Ipv4Addr::new(10, 45, 0, 1)),
            restart_counter: None,
            vendor: Vec::new(),
            other: Vec::new(),
        }
    }

    fn sent(out: &[Output]) -> Vec<ProxyBindingUpdate> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send { pbu, .. } => Some(pbu.clone()),
                _ => None,
            })
            .collect()
    }

    fn bul(t0: Instant) -> BindingUpdateList {
        BindingUpdateList::new(
            MagConfig::default(),
            t0,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        )
    }

    #[test]
    fn refresh_on_demand_sends_the_held_values_at_once() {
        let t0 = Instant::now();
        let mut list = bul(t0);
        let mut out = Vec::new();
        list.handle(Input::Register(request(1)), t0, &mut out);
        let pbu = sent(&out).remove(0);
        out.clear();
        let from = lma();
        list.handle(
            Input::Ack {
                from,
                ack: accept(&pbu, 9),
            },
            t0,
            &mut out,
        );
        let key = request(1).key;
        // Asked long before the refresh time (80 % of an hour).
        let t1 = t0 + Duration::from_secs(10);
        out.clear();
        list.handle(Input::Refresh(key.clone()), t1, &mut out);
        let refresh = sent(&out).remove(0);
        assert_eq!(
            refresh.home_network_prefixes,
            vec!["2001:db8:0:9::/64".parse::<Ipv6Net>().unwrap()]
        );
        assert_eq!(refresh.handoff, HandoffIndicator::HandoffStateNotChanged);
        // A second request while it is under way sends nothing more.
        out.clear();
        list.handle(Input::Refresh(key.clone()), t1, &mut out);
        assert!(out.is_empty(), "{out:?}");
        list.handle(
            Input::Ack {
                from,
                ack: accept(&refresh, 9),
            },
            t1,
            &mut out,
        );
        assert!(
            matches!(out.last(), Some(Output::Refreshed { .. })),
            "{out:?}"
        );
        // An unknown key is lost at once.
        out.clear();
        let unknown = request(2).key;
        list.handle(Input::Refresh(unknown.clone()), t1, &mut out);
        assert!(
            matches!(&out[..], [Output::Lost { key, .. }] if *key == unknown),
            "{out:?}"
        );
    }

    #[test]
    fn first_pbu_asks_for_everything() {
        let t0 = Instant::now();
        let mut list = bul(t0);
        let mut out = Vec::new();
        list.handle(Input::Register(request(1)), t0, &mut out);
        let pbus = sent(&out);
        assert_eq!(pbus.len(), 1);
        let pbu = &pbus[0];
        assert!(pbu.flags.contains(BuFlags::PROXY | BuFlags::ACK));
        assert_eq!(
            pbu.home_network_prefixes,
            vec!["::/0".parse::<Ipv6Net>().unwrap()]
        );
        assert_eq!(
            pbu.ipv4_home_address_request,
            Some("0.0.0.0/0".parse().unwrap())
        );
        assert_eq!(pbu.gre_key, Some(GreKey(1001)));
        assert_eq!(pbu.apn.as_deref(), Some("internet"));
        assert_eq!(pbu.lifetime, Lifetime::from_secs(3600));
        assert_eq!(pbu.access_technology, AccessTechnologyType::Ieee80211);
        // 1_700_000_000 s after 1970, RFC 5213 48.16 fixed point.
        assert_eq!(pbu.timestamp.unwrap().0 >> 16, 1_700_000_000);
        assert_eq!(list.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn accepted_pba_registers_and_refreshes_before_expiry() {
        let t0 = Instant::now();
        let mut list = bul(t0);
        let mut out = Vec::new();
        list.handle(Input::Register(request(1)), t0, &mut out);
        let pbu = sent(&out).remove(0);
        out.clear();
        let ack = accept(&pbu, 9);
        list.handle(Input::Ack { from: lma(), ack }, t0, &mut out);
        let Output::Registered { registration, .. } = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(
            registration.ipv4_home_address,
            Some("10.45.0.9/16".parse().unwrap())
        );
        assert_eq!(registration.uplink_gre_key, Some(GreKey(7)));
        // Refresh at 80% of 3600 s.
        let refresh_at = t0 + Duration::from_secs(2880);
        assert_eq!(list.poll_timeout(), Some(refresh_at));
        out.clear();
        list.handle(
            Input::Timeout,
            refresh_at - Duration::from_millis(1),
            &mut out,
        );
        assert!(out.is_empty());
        list.handle(Input::Timeout, refresh_at, &mut out);
        let refresh = sent(&out).remove(0);
        assert_eq!(
            refresh.home_network_prefixes,
            vec!["2001:db8:0:9::/64".parse::<Ipv6Net>().unwrap()]
        );
        assert_eq!(
            refresh.ipv4_home_address_request,
            Some("10.45.0.9/16".parse().unwrap())
        );
        assert_eq!(refresh.handoff, HandoffIndicator::HandoffStateNotChanged);
        assert_ne!(refresh.sequence, pbu.sequence);
        out.clear();
        list.handle(
            Input::Ack {
                from: lma(),
                ack: accept(&refresh, 9),
            },
            refresh_at,
            &mut out,
        );
        assert!(matches!(out[0], Output::Refreshed { .. }), "{out:?}");
    }

    #[test]
    fn retransmits_with_doubling_delay_then_fails() {
        let t0 = Instant::now();
        let mut list = bul(t0);
        let mut out = Vec::new();
        list.handle(Input::Register(request(1)), t0, &mut out);
        let mut at = t0;
        let mut sequences = vec![sent(&out)[0].sequence];
        for delay in [1, 2, 4] {
            at += Duration::from_secs(delay);
            assert_eq!(list.poll_timeout(), Some(at));
            out.clear();
            list.handle(Input::Timeout, at, &mut out);
            let pbus = sent(&out);
            assert_eq!(pbus.len(), 1, "retransmission after {delay} s");
            sequences.push(pbus[0].sequence);
        }
        sequences.dedup();
        assert_eq!(
            sequences.len(),
            4,
            "every transmission has its own sequence number"
        );
        at += Duration::from_secs(8);
        out.clear();
        list.handle(Input::Timeout, at, &mut out);
        assert_eq!(
            out,
            vec![Output::Failed {
                key: request(1).key,
                reason: RegistrationFailure::Timeout(4)
            }]
        );
        assert!(list.is_empty());
        assert_eq!(list.poll_timeout(), None);
        out.clear();
        list.handle(Input::Timeout, at + Duration::from_secs(100), &mut out);
        assert!(out.is_empty());
        assert_eq!(list.stats().retransmissions, 3);
    }

    #[test]
    fn late_answer_to_an_earlier_copy_is_accepted() {
        let t0 = Instant::now();
        let mut list = bul(t0);
        let mut out = Vec::new();
        list.handle(Input::Register(request(1)), t0, &mut out);
        let first = sent(&out).remove(0);
        list.handle(Input::Timeout, t0 + Duration::from_secs(1), &mut out);
        out.clear();
        list.handle(
            Input::Ack {
                from: lma(),
                ack: accept(&first, 3),
            },
            t0 + Duration::from_secs(1),
            &mut out,
        );
        assert!(matches!(out[0], Output::Registered { .. }));
    }

    #[test]
    fn rejects_and_strays() {
        let t0 = Instant::now();
        let mut list = bul(t0);
        let mut out = Vec::new();
        list.handle(Input::Register(request(1)), t0, &mut out);
        let pbu = sent(&out).remove(0);
        out.clear();
        // From another LMA: ignored.
        let elsewhere: SocketAddr = "127.0.0.9:5436".parse().unwrap();
        list.handle(
            Input::Ack {
                from: elsewhere,
                ack: accept(&pbu, 1),
            },
            t0,
            &mut out,
        );
        // Unknown sequence: ignored.
        let mut stray = accept(&pbu, 1);
        stray.sequence = pbu.sequence.wrapping_add(100);
        list.handle(
            Input::Ack {
                from: lma(),
                ack: stray,
            },
            t0,
            &mut out,
        );
        assert!(out.is_empty());
        assert_eq!(list.stats().pbas_unmatched, 2);
        let mut reject = accept(&pbu, 1);
        reject.status = BindingAckStatus::InsufficientResources;
        list.handle(
            Input::Ack {
                from: lma(),
                ack: reject,
            },
            t0,
            &mut out,
        );
        assert_eq!(
            out,
            vec![Output::Failed {
                key: request(1).key,
                reason: RegistrationFailure::Rejected(BindingAckStatus::InsufficientResources)
            }]
        );
        assert!(list.is_empty());
    }

    #[test]
    fn ipv4_refusal_and_missing_prefix_fail() {
        let t0 = Instant::now();
        let mut list = bul(t0);
        let mut out = Vec::new();
        list.handle(Input::Register(request(1)), t0, &mut out);
        let pbu = sent(&out).remove(0);
        out.clear();
        let mut ack = accept(&pbu, 1);
        ack.ipv4_home_address_reply = Some((
            Ipv4HomeAddressReplyStatus::DynamicIpv4HomeAddressAssignmentNotAvailable,
            Ipv4Net::default(),
        ));
        list.handle(Input::Ack { from: lma(), ack }, t0, &mut out);
        assert!(
            matches!(
                out[0],
                Output::Failed {
                    reason: RegistrationFailure::Ipv4Refused(_),
                    ..
                }
            ),
            "{out:?}"
        );

        list.handle(Input::Register(request(2)), t0, &mut out);
        let pbu = sent(&out).pop().unwrap();
        out.clear();
        let mut ack = accept(&pbu, 2);
        ack.home_network_prefixes.clear();
        list.handle(Input::Ack { from: lma(), ack }, t0, &mut out);
        assert!(
            matches!(
                out[0],
                Output::Failed {
                    reason: RegistrationFailure::Incomplete(_),
                    ..
                }
            ),
            "{out:?}"
        );
    }

    #[test]
    fn deregistration_sends_lifetime_zero_with_held_addresses() {
        let t0 = Instant::now();
        let mut list = bul(t0);
        let mut out = Vec::new();
        list.handle(Input::Register(request(1)), t0, &mut out);
        let pbu = sent(&out).remove(0);
        list.handle(
            Input::Ack {
                from: lma(),
                ack: accept(&pbu, 4),
            },
            t0,
            &mut out,
        );
        out.clear();
        list.handle(Input::Deregister(request(1).key), t0, &mut out);
        let dereg = sent(&out).remove(0);
        assert_eq!(dereg.lifetime, Lifetime(0));
        assert_eq!(
            dereg.home_network_prefixes,
            vec!["2001:db8:0:4::/64".parse::<Ipv6Net>().unwrap()]
        );
        out.clear();
        let mut ack = accept(&dereg, 4);
        ack.lifetime = Lifetime(0);
        list.handle(Input::Ack { from: lma(), ack }, t0, &mut out);
        assert_eq!(
            out,
            vec![Output::Deregistered {
                key: request(1).key,
                acknowledged: true
            }]
        );
        assert!(list.is_empty());
    }

    #[test]
    fn duplicate_registration_is_refused() {
        let t0 = Instant::now();
        let mut list = bul(t0);
        let mut out = Vec::new();
        list.handle(Input::Register(request(1)), t0, &mut out);
        out.clear();
        list.handle(Input::Register(request(1)), t0, &mut out);
        assert_eq!(
            out,
            vec![Output::Failed {
                key: request(1).key,
                reason: RegistrationFailure::Duplicate
            }]
        );
        assert_eq!(list.len(), 1);
    }

    /// A list holding `n` bindings at `lma()`, granted prefix `2001:db8:0:i::/64`.
    fn registered(n: u8, t0: Instant) -> BindingUpdateList {
        let mut list = bul(t0);
        for i in 1..=n {
            let mut out = Vec::new();
            list.handle(Input::Register(request(u32::from(i))), t0, &mut out);
            let pbu = sent(&out).remove(0);
            let ack = accept(&pbu, i);
            list.handle(Input::Ack { from: lma(), ack }, t0, &mut out);
        }
        list
    }

    fn bri(trigger: u8, flags: u8, options: Vec<MobilityOption>) -> MobilityMessage {
        MobilityMessage::BindingRevocation(BindingRevocationRepr {
            revocation_type: BindingRevocationType::Indication,
            trigger_or_status: trigger,
            sequence: 77,
            flags,
            options,
        })
    }

    /// Feeds `message` from `lma()`: the acknowledgement's status and flags, and the keys
    /// lost.
    fn answer(list: &mut BindingUpdateList, message: MobilityMessage) -> (u8, u8, Vec<String>) {
        let mut out = Vec::new();
        let t = Instant::now();
        list.handle(
            Input::Mobility {
                from: lma(),
                message,
            },
            t,
            &mut out,
        );
        let Some(Transmit {
            to,
            message: MobilityMessage::BindingRevocation(bra),
        }) = list.poll_transmit()
        else {
            panic!("no acknowledgement")
        };
        assert_eq!(to, lma());
        assert_eq!(bra.revocation_type, BindingRevocationType::Acknowledgement);
        assert_eq!(bra.sequence, 77);
        let lost = out
            .iter()
            .filter_map(|o| match o {
                Output::Lost {
                    key,
                    reason: RegistrationFailure::Revoked { .. },
                } => Some(key.mn_id.to_string()),
                _ => None,
            })
            .collect();
        (bra.trigger_or_status, bra.flags, lost)
    }

    #[test]
    fn every_revocation_indication_gets_its_status() {
        const P: u8 = BindingRevocationRepr::PROXY;
        const V: u8 = BindingRevocationRepr::IPV4_HOA_ONLY;
        const G: u8 = BindingRevocationRepr::GLOBAL;
        let t0 = Instant::now();
        let nai = |n: u32| {
            MobilityOption::MobileNodeIdentifier(MobileNodeIdentifier::Nai(
                request(n).key.mn_id.to_string(),
            ))
        };
        let prefix = |i: u16| {
            MobilityOption::HomeNetworkPrefix(
                Ipv6Net::new(Ipv6Addr::new(0x2001, 0xdb8, 0, i, 0, 0, 0, 0), 64).unwrap(),
            )
        };
        let mut list = registered(3, t0);
        // RFC 5846 section 6.2.1 and 9.1, in order.
        assert_eq!(answer(&mut list, bri(77, P, vec![nai(1)])).0, 133);
        assert_eq!(answer(&mut list, bri(1, P | G, vec![nai(1)])).0, 134);
        assert_eq!(answer(&mut list, bri(128, P, vec![])).0, 134);
        assert_eq!(answer(&mut list, bri(1, 0, vec![nai(1)])).0, 128);
        assert_eq!(answer(&mut list, bri(1, P, vec![])).0, 131);
        assert_eq!(answer(&mut list, bri(129, P | G, vec![])).0, 131);
        assert_eq!(answer(&mut list, bri(128, P | G, vec![nai(1)])).0, 134);
        assert_eq!(answer(&mut list, bri(1, P, vec![nai(9)])).0, 128);
        // V: only the IPv4 home address goes; the binding stays (section 9.1).
        let v4 = MobilityOption::Ipv4HomeAddressRequest("10.45.0.1/32".parse().unwrap());
        let (status, flags, lost) = answer(&mut list, bri(1, P | V, vec![nai(1), v4]));
        assert_eq!((status, flags, lost.len()), (0, P | V, 0));
        let held = list.registration(&request(1).key).unwrap();
        assert_eq!(held.ipv4_home_address, None);
        assert!(held.home_network_prefix.is_some());
        // A prefix held and one not: partial success naming the one not found.
        let (status, _, lost) = answer(&mut list, bri(1, P, vec![nai(2), prefix(2), prefix(7)]));
        assert_eq!((status, lost), (1, vec![request(2).key.mn_id.to_string()]));
        // The realm of the NAIs (G, "Revoking Mobility Node Local Policy").
        let realm =
            MobilityOption::MobileNodeIdentifier(MobileNodeIdentifier::Nai("@nai.epc".into()));
        let (status, flags, lost) = answer(&mut list, bri(129, P | G, vec![realm]));
        assert_eq!((status, flags, lost.len()), (0, P | G, 2));
        assert!(list.is_empty());
        // Every binding at that LMA (G, "Per-Peer Policy", no options).
        let mut list = registered(2, t0);
        let (status, _, lost) = answer(&mut list, bri(128, P | G, vec![]));
        assert_eq!((status, lost.len()), (0, 2));
        assert!(list.is_empty());
        assert_eq!(list.stats().revoked, 2);
    }

    #[test]
    fn a_restarted_lma_gets_every_binding_again_with_the_same_addresses() {
        let t0 = Instant::now();
        let mut list = BindingUpdateList::new(
            MagConfig {
                heartbeat: Some(HeartbeatSettings::default()),
                restart_counter: 5,
                ..MagConfig::default()
            },
            t0,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        );
        let mut out = Vec::new();
        list.handle(Input::Register(request(1)), t0, &mut out);
        let pbu = sent(&out).remove(0);
        list.handle(
            Input::Ack {
                from: lma(),
                ack: accept(&pbu, 3),
            },
            t0,
            &mut out,
        );
        // The first heartbeat goes at once: the LMA's counter is learnt.
        list.handle(Input::Timeout, t0, &mut out);
        let Some(Transmit {
            message: MobilityMessage::Heartbeat(request_hb),
            ..
        }) = list.poll_transmit()
        else {
            panic!("no heartbeat request")
        };
        let response = |counter, sequence, unsolicited| {
            MobilityMessage::Heartbeat(HeartbeatRepr {
                unsolicited,
                response: true,
                sequence,
                options: vec![MobilityOption::RestartCounter(counter)],
            })
        };
        out.clear();
        let from = lma();
        list.handle(
            Input::Mobility {
                from,
                message: response(8, request_hb.sequence, false),
            },
            t0,
            &mut out,
        );
        assert!(out.is_empty());
        // A request from the LMA is answered with this MAG's counter.
        let ask = MobilityMessage::Heartbeat(HeartbeatRepr {
            unsolicited: false,
            response: false,
            sequence: 4,
            options: Vec::new(),
        });
        list.handle(Input::Mobility { from, message: ask }, t0, &mut out);
        assert_eq!(
            list.poll_transmit().map(|t| t.message),
            Some(response(5, 4, false))
        );
        // The LMA restarted: it says so; the binding is registered again at once, naming
        // the prefix and IPv4 address it holds, with the same downlink key.
        let t1 = t0 + Duration::from_secs(30);
        list.handle(
            Input::Mobility {
                from,
                message: response(9, 0, true),
            },
            t1,
            &mut out,
        );
        let again = sent(&out).remove(0);
        assert_eq!(
            again.home_network_prefixes,
            vec!["2001:db8:0:3::/64".parse::<Ipv6Net>().unwrap()]
        );
        assert_eq!(
            again.ipv4_home_address_request,
            Some("10.45.0.3/16".parse().unwrap())
        );
        assert_eq!(again.gre_key, Some(GreKey(1001)));
        assert!(matches!(
            list.poll_event(),
            Some(LmaEvent::Restarted {
                previous: Some(8),
                current: 9,
                reregistering: 1,
                ..
            })
        ));
        out.clear();
        let mut granted = accept(&again, 3);
        granted.gre_key = Some(GreKey(0x0900_0001));
        list.handle(Input::Ack { from, ack: granted }, t1, &mut out);
        match out.as_slice() {
            [Output::Refreshed { registration, .. }] => {
                assert_eq!(registration.uplink_gre_key, Some(GreKey(0x0900_0001)))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(list.stats().reregistered, 1);
        // Other addresses granted after a restart: the binding is lost, not changed.
        list.handle(
            Input::Mobility {
                from,
                message: response(10, 0, true),
            },
            t1,
            &mut out,
        );
        let again = sent(&out).pop().unwrap();
        out.clear();
        list.handle(
            Input::Ack {
                from,
                ack: accept(&again, 4),
            },
            t1,
            &mut out,
        );
        assert!(matches!(out.as_slice(), [Output::Lost { .. }]), "{out:?}");
        assert!(list.is_empty());
    }

    #[test]
    fn timestamp_conversion() {
        let t = UNIX_EPOCH + Duration::from_millis(1_500);
        let ts = Timestamp::from_system_time(t);
        assert_eq!(ts.0 >> 16, 1);
        assert_eq!(ts.0 & 0xffff, 1 << 15);
    }
}
