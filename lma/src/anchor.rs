//! The LMA's signaling logic (RFC 5213 section 5.3, RFC 5844, RFC 5845, RFC 5847): a
//! plain struct advanced by [`Lma::handle`] and asked [`Lma::poll_timeout`]. No sockets,
//! no clock: the driver passes every received Mobility Header message with the path it
//! came on, and `now`; the core answers with messages to send and binding events.
//!
//! What a Proxy Binding Update gets, in the order of the checks:
//!
//! 1. From a MAG outside `allowed_mags`: status 154 MAG_NOT_AUTHORIZED_FOR_PROXY_REG, or
//!    nothing (`unauthorized_mag = "drop"`).
//! 2. A BU without the P flag: 131. Then the MN-ID (RFC 5213 5.3.1 steps 4 and 7, the
//!    `mn_id` module): none or a zero-length one is 160 MISSING_MN_IDENTIFIER_OPTION
//!    (the PBA carries a zero-length identifier), an NAI the LMA cannot identify a mobile
//!    node by (no `@`, control characters, over 253 octets, not RFC 7542's form) is 153
//!    NOT_LMA_FOR_THIS_MOBILE_NODE. Then the other mandatory options (5.3.1 steps 10 to
//!    12, via `ProxyBindingUpdate::try_from`): 161 (Handoff Indicator), 162 (Access
//!    Technology Type), 158 (neither a Home Network Prefix nor an IPv4 Home Address
//!    Request).
//! 3. Ordering (RFC 5213 5.5): with a Timestamp, 156 TIMESTAMP_MISMATCH outside the
//!    validity window (the PBA carries the LMA's time) and 157 when not later than the
//!    last accepted one; without, 156 when timestamps are required, else, from the MAG
//!    holding the binding (sequence numbers are each MAG's own), the sequence number
//!    must be newer than the last accepted one (RFC 6275 9.5.1: 135, the PBA carrying
//!    the last accepted number).
//! 4. Lifetime 0: de-registration (5.3.5): the binding and its addresses are released.
//!    From a MAG that does not hold it: acknowledged, nothing changes, and the PBA
//!    carries none of the binding's addresses or keys. From the holder while another
//!    MAG's handoff waits for it (below): that handoff is made.
//! 5. No GRE Key option while GRE is required: 163 GRE_KEY_OPTION_REQUIRED (RFC 5845).
//! 6. Existing binding, PBU from the MAG holding it (re-registration, 5.3.3): the
//!    prefixes and IPv4 address in the PBU must be `::/0` / `0.0.0.0` or the ones held,
//!    else 159 BCE_PBU_PREFIX_SET_DO_NOT_MATCH (IPv4: 171 with IPv4 reply status 130);
//!    the addresses stay, the lifetime is extended, the downlink key is updated. A PBU
//!    asking for `::/0` again (a retransmitted first PBU) keeps the held addresses: one
//!    binding per (NAI, APN).
//! 7. Existing binding, PBU from another MAG (the `takeover` module, RFC 5213 5.4.1, RFC
//!    5846 8.1): by the Handoff Indicator, 2 or 3 hand the binding off (same addresses and
//!    keys, the old MAG gets a Binding Revocation Indication), 4 asks the old MAG first
//!    and waits, 1 is a new mobility session replacing the old one (new addresses; the old
//!    MAG is told), 5 or another value is 128. The module doc says why.
//! 8. New binding: a specific prefix is 155 NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX; the
//!    per-MAG limits (the `limits` module: cache capacity, the MAG's share, its rate of
//!    new bindings) are 130; an address family without a pool is 170 / 172 (RFC 5844);
//!    then one /64, one IPv4 address and one uplink GRE key are allocated, all or none:
//!    an empty pool, or the MAG's share of it used, is 130 INSUFFICIENT_RESOURCES (for
//!    IPv4 with IPv4 Home Address Reply status 132).
//!
//! Granted lifetimes are capped at `max_lifetime`. Every PBA mirrors the PBU's MN-ID,
//! Service Selection, Home Network Prefix, Handoff Indicator, Access Technology Type,
//! link-layer and link-local options and Timestamp (RFC 5213 5.3.6, RFC 5149), and adds
//! the uplink GRE key, the IPv4 Home Address Reply and Default-Router options on
//! success. Heartbeat requests get a response with the same sequence number and the
//! restart counter (RFC 5847); a Binding Revocation Indication is answered with an
//! acknowledgement (RFC 5846 section 8.2, the `revocation` module); an unknown MH type
//! gets a Binding Error with status 2 (RFC 6275 9.2); truncated, malformed and
//! bad-checksum messages are dropped and counted. Nothing here panics on any input, and
//! a rejected PBU leaves no state.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant, SystemTime};

use ipnet::{Ipv4Net, Ipv6Net};
use pmip_common::mh::{
    BaFlags, BindingAckRepr, BindingAckStatus, BindingErrorRepr, BindingErrorStatus,
    BindingUpdateRepr, BuFlags, Ipv4HomeAddressReplyStatus, Lifetime, MhError, MobilityHeader,
    MobilityHeaderRepr, MobilityMessage, MobilityOption, ProxyBindingAck, ProxyBindingUpdate,
    Timestamp, IPPROTO_MH, IPPROTO_NONE,
};

mod chain;
mod limits;
mod mag_filter;
mod mn_id;
mod restoration;
mod revocation;
mod takeover;

pub use restoration::{
    HeldBinding, JournalRecord, PeerEvent, PeerReport, Quarantined, Restored, RevokeError,
    RevokeTarget,
};

pub use limits::{LimitKind, LimitReport, MagLimits, MagRefusals};
pub use mag_filter::{MagFilter, UnauthorizedMag};
pub use mn_id::{nai_problem, MAX_NAI_LEN};
pub use revocation::{
    RevocationEvent, RevocationReport, RevocationSettings, RevocationStatus, RevocationTrigger,
};

pub use chain::{
    ChainDownReason, ChainEvent, ChainInfo, ChainReport, ChainSettings,
    GTP_CAUSE_REMOTE_PEER_NOT_RESPONDING,
};

use crate::binding_cache::{Addresses, BindingCache, BindingId, BindingState};
use crate::gre_keys::UplinkKeyAllocator;
use crate::pools::{Ipv4Pool, PoolError, PrefixPool};
use crate::transport::MagAddress;
use pmip_common::icmp6::{self, Icmpv6Error};
use pmip_common::time::{DeadlineQueue, WallClock};

/// The core's settings (checked by [`crate::config::resolve`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LmaSettings {
    pub ipv4_pool: Option<Ipv4Net>,
    /// Reported in the IPv4 Default-Router Address option and never assigned.
    pub ipv4_default_router: Option<Ipv4Addr>,
    pub ipv6_pool: Option<Ipv6Net>,
    /// The longest lifetime granted.
    pub max_lifetime: Lifetime,
    /// How far a PBU's Timestamp may be from the LMA's clock (TimestampValidityWindow).
    pub timestamp_window: Duration,
    /// Refuse PBUs without a Timestamp option (156) instead of ordering by sequence.
    pub require_timestamp: bool,
    /// Refuse PBUs without a GRE Key option (163): TS 29.275 tunnels are keyed GRE.
    pub require_gre_key: bool,
    pub unauthorized_mag: UnauthorizedMag,
    pub allowed_mags: Vec<MagFilter>,
    /// RFC 5847 restart counter reported in Heartbeat responses.
    pub restart_counter: u32,
    /// Binding revocation (RFC 5846): retransmission, and who may revoke globally.
    pub revocation: RevocationSettings,
    /// Per-MAG limits: shares, capacity, rate of new bindings.
    pub limits: MagLimits,
    /// RFC 5847 heartbeats toward every MAG holding a binding (`None`: not sent; requests
    /// are answered all the same).
    pub heartbeat: Option<pmip_common::heartbeat::HeartbeatSettings>,
}

/// What the driver feeds in.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// A Mobility Header message (any type) as received, and the path it came on.
    Mobility { from: MagAddress, bytes: &'a [u8] },
    /// The timer armed for [`Lma::poll_timeout`] fired.
    Timeout,
}

/// The tunnel end a binding needs in the data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingInfo {
    pub id: BindingId,
    pub mag: MagAddress,
    pub addresses: Addresses,
    /// The key the LMA puts in GRE packets toward the MAG.
    pub downlink_gre_key: Option<pmip_common::mh::GreKey>,
}

/// Why a binding went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    Deregistered,
    Expired,
    /// Revoked: by its MAG (RFC 5846), or replaced by a new mobility session.
    Revoked,
    /// Its MAG restarted and lost it (RFC 5847 restart counter).
    MagRestarted,
}

/// What became of one PBU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Registered,
    Refreshed,
    Deregistered,
    /// A de-registration from a MAG that no longer holds the binding (the mobile node
    /// moved on): acknowledged, binding kept (RFC 5213 5.3.5).
    DeregistrationFromOldMag,
    Rejected,
    /// Held for the home gateway's answer (chaining): no PBA yet.
    Held,
}

/// One PBU as the log line reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbuReport {
    pub mag: MagAddress,
    pub mn_id: Option<String>,
    pub apn: Option<String>,
    pub sequence: u16,
    pub outcome: Outcome,
    pub status: BindingAckStatus,
    pub lifetime: Lifetime,
    pub addresses: Addresses,
    /// Why it was rejected.
    pub reason: Option<&'static str>,
    /// The home gateway this binding is chained to (visited role), if any.
    pub home: Option<IpAddr>,
}

/// What the driver carries out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send these Mobility Header bytes (checksum filled for the path) to the MAG.
    Send { to: MagAddress, bytes: Vec<u8> },
    /// Send this ICMPv6 error message (RFC 4443; the IPv6 header is the socket's to add)
    /// from `from` to `to`: the Parameter Problem RFC 6275 section 9.2 asks for a Mobility
    /// Header with a wrong Payload Proto or a short Header Len that came over IPv6.
    Icmpv6 {
        from: Ipv6Addr,
        to: Ipv6Addr,
        message: Vec<u8>,
    },
    /// A binding was created, or its tunnel (MAG, keys, addresses) changed: install or
    /// replace its routes.
    BindingUp(BindingInfo),
    /// A binding is gone: remove its routes.
    BindingDown {
        binding: BindingInfo,
        reason: DownReason,
    },
    /// Something about a peer: heartbeats, a restart, a restoration (one log line).
    Peer(PeerReport),
    /// A change of what MAGs may hold, for the restoration state file (the `state`
    /// module appends it).
    Journal(JournalRecord),
    /// One PBU was handled (one log line).
    Report(PbuReport),
    /// A chained binding was created, or its ePDG side changed: install or replace its
    /// GRE relay (ePDG-side keys <-> home-side keys).
    ChainUp(ChainInfo),
    /// A chained binding is gone: remove its relay.
    ChainDown {
        chain: ChainInfo,
        reason: ChainDownReason,
    },
    /// Something happened on the home side of a chained binding (one log line).
    Chain(ChainReport),
    /// A Binding Revocation was sent, answered, acknowledged or given up (one log line).
    Revocation(RevocationReport),
    /// PBUs refused by the per-MAG limits over the last interval (one line per MAG).
    Limits(LimitReport),
}

/// Counters, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub received: u64,
    pub truncated: u64,
    pub malformed: u64,
    pub bad_checksum: u64,
    pub unauthorized_dropped: u64,
    pub unknown_mh_type: u64,
    /// Messages discarded for a Payload Proto other than 59 or a Header Len shorter than
    /// their type's fixed part (RFC 6275 section 9.2), and the ICMPv6 Parameter Problems
    /// sent about them.
    pub bad_payload_proto: u64,
    pub header_len_too_short: u64,
    pub parameter_problems_sent: u64,
    /// Messages an LMA does not act on (acknowledgements, errors, responses).
    pub ignored: u64,
    pub pbus_accepted: u64,
    pub pbus_rejected: u64,
    pub heartbeats_answered: u64,
    pub expired: u64,
    /// Answers not sent because they would exceed the Mobility Header's length limit.
    pub oversized_answers: u64,
    /// ePDG PBUs held for a home gateway (chaining).
    pub chains_held: u64,
    /// Chained bindings created.
    pub chains_registered: u64,
    /// Held PBUs answered with an error (home reject or timeout).
    pub chains_failed: u64,
    /// Binding Revocation Indications the LMA sent, sent again, saw acknowledged, gave
    /// up on, and could not send (no free sequence number).
    pub revocations_sent: u64,
    pub revocations_retransmitted: u64,
    pub revocation_acks: u64,
    pub revocation_timeouts: u64,
    pub revocations_not_sent: u64,
    /// Binding Revocation Indications from MAGs, and the bindings they revoked.
    pub revocations_received: u64,
    pub revoked_by_mag: u64,
    /// PBUs refused by the per-MAG limits: a full cache, a MAG's share, a MAG's rate.
    pub refused_cache_full: u64,
    pub refused_mag_share: u64,
    pub refused_mag_rate: u64,
}

/// Why a PBU is refused, and what the PBA says.
#[derive(Debug, Clone, Copy)]
struct Rejection {
    status: BindingAckStatus,
    reason: &'static str,
    ipv4_reply: Option<Ipv4HomeAddressReplyStatus>,
    /// The sequence number to answer with, when not the PBU's (status 135).
    sequence: Option<u16>,
    /// A refusal by the per-MAG limits: counted and reported per interval, not per PBU.
    limit: Option<LimitKind>,
}

impl Rejection {
    fn new(status: BindingAckStatus, reason: &'static str) -> Self {
        Rejection {
            status,
            reason,
            ipv4_reply: None,
            sequence: None,
            limit: None,
        }
    }
    /// The binding looked up a moment ago is gone.
    fn vanished() -> Self {
        Rejection::new(BindingAckStatus::ReasonUnspecified, "binding vanished")
    }
    fn ipv4(
        status: BindingAckStatus,
        reply: Ipv4HomeAddressReplyStatus,
        reason: &'static str,
    ) -> Self {
        Rejection {
            ipv4_reply: Some(reply),
            ..Rejection::new(status, reason)
        }
    }
}

/// What an accepted PBU got.
#[derive(Debug, Clone, Copy)]
struct Granted {
    addresses: Addresses,
    lifetime: Lifetime,
    outcome: Outcome,
    /// For a chained binding: what the home gateway assigned (the PBA carries it).
    home: Option<HomeGrant>,
}

/// What a home gateway assigned to a chained binding.
#[derive(Debug, Clone, Copy)]
struct HomeGrant {
    home: IpAddr,
    home_network_prefix: Option<Ipv6Net>,
    ipv4_home_address: Option<Ipv4Net>,
    ipv4_default_router: Option<Ipv4Addr>,
}

/// What became of a valid PBU.
enum Processed {
    Granted(Granted),
    /// Held for the home gateway (chaining): answered later.
    Held,
}

/// `::/0` (or any zero-length prefix): "assign me a prefix".
fn is_any_prefix(prefix: &Ipv6Net) -> bool {
    prefix.prefix_len() == 0
}

/// A new binding or mobility session is given prefixes, never asks for one (RFC 5213
/// section 5.3.2 step 3): 155 otherwise.
fn no_specific_prefix(pbu: &ProxyBindingUpdate) -> Result<(), Rejection> {
    if pbu.home_network_prefixes.iter().any(|p| !is_any_prefix(p)) {
        return Err(Rejection::new(
            BindingAckStatus::NotAuthorizedForHomeNetworkPrefix,
            "a specific home network prefix for a mobile node without a binding",
        ));
    }
    Ok(())
}

/// Whether `new` is later than `old` (sequence numbers compare modulo 2^16).
fn sequence_after(new: u16, old: u16) -> bool {
    (new.wrapping_sub(old) as i16) > 0
}

/// The LMA's signaling state: bindings, pools, timers.
#[derive(Debug)]
pub struct Lma {
    settings: LmaSettings,
    cache: BindingCache,
    ipv4_pool: Option<Ipv4Pool>,
    prefix_pool: Option<PrefixPool>,
    uplink_keys: UplinkKeyAllocator,
    deadlines: DeadlineQueue<BindingId>,
    /// `now` and the wall clock at the same moment: the wall clock follows `now`.
    clock: WallClock,
    stats: Stats,
    /// The visited role ([`Lma::with_chaining`]).
    chain: Option<chain::Chain>,
    /// Binding Revocation Indications waiting for their acknowledgement.
    revocations: revocation::Revocations,
    /// Per-MAG buckets and the refusals not reported yet.
    limiter: limits::Limiter,
    /// RFC 5847 toward the MAGs, addresses held back after a restart, the state file.
    restoration: restoration::Restoration,
}

impl Lma {
    /// `now` and `wall_clock` are the same moment (monotonic and wall-clock time).
    pub fn new(
        settings: LmaSettings,
        now: Instant,
        wall_clock: SystemTime,
    ) -> Result<Self, PoolError> {
        let ipv4_pool = settings
            .ipv4_pool
            .map(|net| Ipv4Pool::new(net, settings.ipv4_default_router))
            .transpose()?;
        let prefix_pool = settings.ipv6_pool.map(PrefixPool::new).transpose()?;
        Ok(Lma {
            restoration: restoration::Restoration::new(&settings),
            // Keys of earlier runs are never handed out again (the gre_keys module).
            uplink_keys: UplinkKeyAllocator::for_restart(settings.restart_counter),
            settings,
            cache: BindingCache::new(),
            ipv4_pool,
            prefix_pool,
            deadlines: DeadlineQueue::new(),
            clock: WallClock::new(now, wall_clock),
            stats: Stats::default(),
            chain: None,
            revocations: revocation::Revocations::default(),
            limiter: limits::Limiter::default(),
        })
    }

    pub fn settings(&self) -> &LmaSettings {
        &self.settings
    }

    pub fn cache(&self) -> &BindingCache {
        &self.cache
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Free IPv4 home addresses.
    pub fn available_ipv4(&self) -> u32 {
        self.ipv4_pool.as_ref().map_or(0, Ipv4Pool::available)
    }

    /// Free home network prefixes.
    pub fn available_prefixes(&self) -> u32 {
        self.prefix_pool.as_ref().map_or(0, PrefixPool::available)
    }

    /// Binding Revocation Indications waiting for an acknowledgement.
    pub fn revocations_outstanding(&self) -> usize {
        self.revocations.len()
    }

    /// The earliest moment `handle(Input::Timeout, ..)` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.deadlines.peek().map(|(at, _)| at),
            self.chain.as_ref().and_then(chain::Chain::poll_timeout),
            self.revocations.poll_timeout(),
            self.limits_poll_timeout(),
            self.restoration.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Advances the state machine by one input at `now`, appending what to do to `out`.
    pub fn handle(&mut self, input: Input<'_>, now: Instant, out: &mut Vec<Output>) {
        let start = out.len();
        match input {
            Input::Mobility { from, bytes } => self.receive(from, bytes, now, out),
            Input::Timeout => {
                self.expire(now, out);
                self.chain_timeout(now, out);
                self.revocation_timeout(now, out);
                self.limits_timeout(now, out);
                self.restoration_timeout(now, out);
            }
        }
        self.track_outputs(start, now, out);
        let cache = &self.cache;
        let stale =
            |at: Instant, id: BindingId| cache.get(id).is_none_or(|e| e.state.expires != at);
        self.deadlines.prune_front(stale);
        // Every refresh leaves its predecessor's deadline behind until it falls due:
        // when they outnumber the live ones, sweep them all at once (amortised O(1)).
        if self.deadlines.len() > 2 * self.cache.len() + 1024 {
            self.deadlines.retain(|at, id| !stale(at, id));
        }
    }

    fn wall_clock(&self, now: Instant) -> SystemTime {
        self.clock.at(now)
    }

    fn is_allowed(&self, mag: IpAddr) -> bool {
        self.settings.allowed_mags.iter().any(|f| f.contains(mag))
    }

    fn send(&mut self, to: MagAddress, message: MobilityMessage, out: &mut Vec<Output>) {
        let repr = MobilityHeaderRepr {
            payload_proto: IPPROTO_NONE,
            message,
        };
        if repr.check_limits().is_err() {
            self.stats.oversized_answers += 1;
            return;
        }
        out.push(Output::Send {
            to,
            bytes: repr.to_bytes(to.send_checksum()),
        });
    }

    /// RFC 6275 section 9.2: the message is discarded, and an ICMP Parameter Problem, Code
    /// 0, goes "directly to the Source Address of the packet", its Pointer at the field in
    /// error. Only over IPv6, where the Mobility Header is the IPv6 payload and a Pointer
    /// into it means something; over UDP 5436 (RFC 5844) the message is only discarded.
    /// The invoking packet's IPv6 header is rebuilt from the addresses (a raw socket gives
    /// the payload alone), so the Pointer counts it: 40 plus the field's offset.
    fn parameter_problem(
        &mut self,
        from: MagAddress,
        bytes: &[u8],
        error: &MhError,
        out: &mut Vec<Output>,
    ) {
        let (MagAddress::Ip6 { mag, local, .. }, Some(offset)) =
            (from, error.parameter_problem_offset())
        else {
            return;
        };
        let mut invoking = icmp6::ipv6_header(mag, local, IPPROTO_MH, bytes.len());
        let pointer = u32::try_from(invoking.len() + offset).unwrap_or(u32::MAX);
        invoking.extend_from_slice(bytes);
        let message = icmp6::error_message(
            local,
            mag,
            Icmpv6Error::ErroneousHeaderField { pointer },
            &invoking,
        );
        self.stats.parameter_problems_sent += 1;
        out.push(Output::Icmpv6 {
            from: local,
            to: mag,
            message,
        });
    }

    fn receive(&mut self, from: MagAddress, bytes: &[u8], now: Instant, out: &mut Vec<Output>) {
        self.stats.received += 1;
        let authorized = self.is_allowed(from.ip());
        let home_gateway = self
            .chain
            .as_ref()
            .is_some_and(|c| c.is_home_gateway(from.ip()));
        if !authorized && !home_gateway && self.settings.unauthorized_mag == UnauthorizedMag::Drop {
            self.stats.unauthorized_dropped += 1;
            return;
        }
        let view = match MobilityHeader::new_checked(bytes) {
            Ok(view) => view,
            Err(MhError::Truncated(_)) => {
                self.stats.truncated += 1;
                return;
            }
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        if !view.verify_checksum(from.receive_checksum()) {
            self.stats.bad_checksum += 1;
            return;
        }
        let message = match MobilityHeaderRepr::parse_view(&view) {
            Ok(repr) => repr.message,
            Err(MhError::UnknownMhType(_)) => {
                self.stats.unknown_mh_type += 1;
                if authorized {
                    // RFC 6275 section 9.2: Binding Error, status 2.
                    let error = BindingErrorRepr {
                        status: BindingErrorStatus::UnrecognizedMhType,
                        home_address: Ipv6Addr::UNSPECIFIED,
                        options: Vec::new(),
                    };
                    self.send(from, MobilityMessage::BindingError(error), out);
                }
                return;
            }
            Err(error @ (MhError::PayloadProto(_) | MhError::HeaderLenTooShort(_))) => {
                if matches!(error, MhError::PayloadProto(_)) {
                    self.stats.bad_payload_proto += 1;
                } else {
                    self.stats.header_len_too_short += 1;
                }
                if authorized {
                    self.parameter_problem(from, bytes, &error, out);
                }
                return;
            }
            Err(MhError::Truncated(_)) => {
                self.stats.truncated += 1;
                return;
            }
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        match message {
            MobilityMessage::BindingUpdate(bu) => {
                self.binding_update(from, authorized, &bu, now, out)
            }
            MobilityMessage::BindingAck(ba) if home_gateway => self.chain_ack(from, &ba, now, out),
            MobilityMessage::Heartbeat(_)
            | MobilityMessage::BindingError(_)
            | MobilityMessage::BindingRevocation(_)
                if home_gateway && !authorized =>
            {
                // The home gateway asks or tells its MAG, this gateway's chain.
                self.chain_mobility(from, message, now, out)
            }
            MobilityMessage::BindingRevocation(br) => {
                self.binding_revocation(from, authorized, &br, now, out)
            }
            // U is only ever set in a response (RFC 5847 section 3.3).
            MobilityMessage::Heartbeat(hb) if authorized && (hb.response || !hb.unsolicited) => {
                if !hb.response {
                    self.stats.heartbeats_answered += 1;
                }
                self.heartbeat_from_mag(from, &hb, now, out);
            }
            MobilityMessage::BindingError(be) if authorized => {
                self.binding_error_from_mag(from, &be, now, out)
            }
            _ => self.stats.ignored += 1,
        }
    }

    fn binding_update(
        &mut self,
        from: MagAddress,
        authorized: bool,
        bu: &BindingUpdateRepr,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let wall = self.wall_clock(now);
        let pbu = if authorized {
            // The P flag first (131), then the MN-ID (160, 153), then the other
            // mandatory options: RFC 5213 section 5.3.1 in its order.
            let proxy = bu.flags.contains(BuFlags::PROXY);
            let mn_id = if proxy { mn_id::check(bu) } else { Ok(()) };
            mn_id.and_then(|()| {
                ProxyBindingUpdate::try_from(bu).map_err(|e| Rejection::new(e.status, e.reason))
            })
        } else {
            Err(Rejection::new(
                BindingAckStatus::MagNotAuthorizedForProxyReg,
                "MAG not in allowed_mags",
            ))
        };
        let result = pbu.and_then(|pbu| {
            let processed = self.process(&pbu, from, now, wall, out)?;
            Ok((pbu, processed))
        });
        self.answer(from, bu, result, now, out);
    }

    /// Answers a PBU (`bu` as received) with what became of it: a PBA and a log line, or
    /// only the line when it is held; a refusal by the limits is counted, not logged.
    fn answer(
        &mut self,
        from: MagAddress,
        bu: &BindingUpdateRepr,
        result: Result<(ProxyBindingUpdate, Processed), Rejection>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        match result {
            Ok((pbu, Processed::Held)) => out.push(Output::Report(PbuReport {
                mag: from,
                mn_id: Some(pbu.mn_id),
                apn: pbu.apn,
                sequence: pbu.sequence,
                outcome: Outcome::Held,
                status: BindingAckStatus::Accepted,
                lifetime: Lifetime(0),
                addresses: Addresses::default(),
                reason: None,
                home: None,
            })),
            Ok((pbu, Processed::Granted(granted))) => {
                self.stats.pbus_accepted += 1;
                let ack = self.accept_ack(&pbu, &granted);
                self.send(from, MobilityMessage::BindingAck(ack), out);
                out.push(Output::Report(PbuReport {
                    mag: from,
                    mn_id: Some(pbu.mn_id),
                    apn: pbu.apn,
                    sequence: pbu.sequence,
                    outcome: granted.outcome,
                    status: BindingAckStatus::Accepted,
                    lifetime: granted.lifetime,
                    addresses: granted.addresses,
                    reason: None,
                    home: granted.home.map(|h| h.home),
                }));
            }
            Err(rejection) => {
                self.stats.pbus_rejected += 1;
                let wall = self.wall_clock(now);
                let ack = reject_ack(bu, &rejection, wall);
                self.send(from, MobilityMessage::BindingAck(ack), out);
                if let Some(kind) = rejection.limit {
                    self.count_refusal(from.ip(), kind, now);
                    return;
                }
                let option = |pick: fn(&MobilityOption) -> Option<&String>| {
                    bu.options.iter().find_map(pick).cloned()
                };
                out.push(Output::Report(PbuReport {
                    mag: from,
                    mn_id: option(|o| match o {
                        MobilityOption::MobileNodeIdentifier(
                            pmip_common::mh::MobileNodeIdentifier::Nai(nai),
                        ) => Some(nai),
                        _ => None,
                    }),
                    apn: option(|o| match o {
                        MobilityOption::ServiceSelection(apn) => Some(apn),
                        _ => None,
                    }),
                    sequence: bu.sequence,
                    outcome: Outcome::Rejected,
                    status: rejection.status,
                    lifetime: Lifetime(0),
                    addresses: Addresses::default(),
                    reason: Some(rejection.reason),
                    home: None,
                }));
            }
        }
    }

    /// Checks and carries out a valid PBU (steps 3 to 8 of the module doc).
    fn process(
        &mut self,
        pbu: &ProxyBindingUpdate,
        from: MagAddress,
        now: Instant,
        wall: SystemTime,
        out: &mut Vec<Output>,
    ) -> Result<Processed, Rejection> {
        let existing = self.cache.find(&pbu.mn_id, pbu.apn.as_deref());
        let held = existing.and_then(|id| self.cache.get(id));
        // Whether the sender holds the binding (RFC 5213 5.3.1 step 13: the Proxy-CoA).
        let holder = held.is_some_and(|e| e.mag().ip() == from.ip());
        match pbu.timestamp {
            Some(ts) => {
                if ts.distance(Timestamp::from_system_time(wall)) > self.settings.timestamp_window {
                    return Err(Rejection::new(
                        BindingAckStatus::TimestampMismatch,
                        "timestamp outside the validity window",
                    ));
                }
                if let Some(last) = held.and_then(|e| e.state.last_timestamp) {
                    if ts <= last {
                        return Err(Rejection::new(
                            BindingAckStatus::TimestampLowerThanPrevAccepted,
                            "timestamp not later than the last accepted one",
                        ));
                    }
                }
            }
            None if self.settings.require_timestamp => {
                return Err(Rejection::new(
                    BindingAckStatus::TimestampMismatch,
                    "no Timestamp option, and timestamps are required",
                ));
            }
            None => {
                if let Some(entry) = held.filter(|_| holder) {
                    if !sequence_after(pbu.sequence, entry.state.last_sequence) {
                        return Err(Rejection {
                            sequence: Some(entry.state.last_sequence),
                            ..Rejection::new(
                                BindingAckStatus::SequenceNumberOutOfWindow,
                                "sequence number not newer than the last accepted one",
                            )
                        });
                    }
                }
            }
        }
        let chained = existing.filter(|id| self.is_chained(*id));
        if pbu.lifetime.is_zero() {
            if let Some(sequence) = existing
                .filter(|_| holder)
                .and_then(|id| self.revocations.awaiting(id))
            {
                return Ok(Processed::Granted(
                    self.deregistered_while_asked(sequence, now, out),
                ));
            }
            if let Some(id) = chained {
                return self
                    .chain_deregister(id, pbu, from, now, out)
                    .map(Processed::Granted);
            }
            if existing.is_none() {
                self.chain_cancel(pbu, from, now, out);
            }
            return self
                .deregister(existing, pbu, from, out)
                .map(Processed::Granted);
        }
        if pbu.gre_key.is_none() && self.settings.require_gre_key {
            return Err(Rejection::new(
                BindingAckStatus::GreKeyOptionRequired,
                "no GRE Key option, and GRE encapsulation is required",
            ));
        }
        if let Some(sequence) = existing
            .filter(|_| holder)
            .and_then(|id| self.revocations.awaiting(id))
        {
            self.refreshed_while_asked(sequence, now, out);
        }
        match (existing, chained) {
            (Some(id), _) if !holder => self.take_over(id, pbu, from, now, out),
            (Some(id), Some(_)) => {
                self.chain_refresh(id, pbu, from, now, out)?;
                Ok(Processed::Held)
            }
            (Some(id), None) => self
                .reregister(id, pbu, from, now, out)
                .map(Processed::Granted),
            (None, _) => self.new_binding(pbu, from, now, out),
        }
    }

    /// A PBU for a mobile node without a binding (step 8): chained to its home gateway,
    /// or registered here.
    fn new_binding(
        &mut self,
        pbu: &ProxyBindingUpdate,
        from: MagAddress,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Result<Processed, Rejection> {
        match self.chain_target(pbu)? {
            Some(home) => {
                self.chain_hold(pbu, from, home, now, out)?;
                Ok(Processed::Held)
            }
            None => self.register(pbu, from, now, out).map(Processed::Granted),
        }
    }

    fn granted_lifetime(&self, requested: Lifetime) -> Lifetime {
        requested.min(self.settings.max_lifetime)
    }

    /// Allocates what `addresses` lacks and the PBU from `mag` asks for, into `taken`,
    /// within the MAG's share of each pool. On error the caller releases `taken`.
    fn allocate(
        &mut self,
        held: &Addresses,
        pbu: &ProxyBindingUpdate,
        mag: MagAddress,
        taken: &mut Addresses,
    ) -> Result<(), Rejection> {
        let one = |prefixes, ipv4| crate::binding_cache::MagUsage {
            bindings: 0,
            home_network_prefixes: prefixes,
            ipv4_home_addresses: ipv4,
        };
        if !pbu.home_network_prefixes.is_empty() && held.home_network_prefix.is_none() {
            if self.prefix_pool.is_some() {
                self.fits_share(mag.ip(), one(1, 0))?;
            }
            let wanted = pbu
                .home_network_prefixes
                .iter()
                .find(|p| !is_any_prefix(p))
                .map(|p| p.trunc());
            let own = |p: &Ipv6Net| self.restoration.held_for(None, Some(*p), pbu, mag.ip());
            if let Some(prefix) = wanted.filter(own) {
                // Held back for this very binding since a restart: it is its own again.
                self.restoration.take(None, Some(prefix));
                taken.home_network_prefix = Some(prefix);
            } else {
                let pool = self.prefix_pool.as_mut().ok_or(Rejection::new(
                    BindingAckStatus::NotAuthorizedForIpv6MobilityService,
                    "no ipv6_pool: IPv6 home network prefixes are not served",
                ))?;
                taken.home_network_prefix = Some(match wanted {
                    // RFC 5213 sections 5.3.2 and 6.9.1.1: a MAG may ask for the prefix it
                    // had; the LMA assigns it when it may, else 155.
                    Some(prefix) if !pool.contains(prefix) => {
                        return Err(Rejection::new(
                            BindingAckStatus::NotAuthorizedForHomeNetworkPrefix,
                            "requested home network prefix outside ipv6_pool",
                        ))
                    }
                    Some(prefix) if pool.allocate_exact(prefix) => prefix,
                    Some(_) => {
                        return Err(Rejection::new(
                            BindingAckStatus::NotAuthorizedForHomeNetworkPrefix,
                            "requested home network prefix is held by another binding",
                        ))
                    }
                    None => pool.allocate().ok_or(Rejection::new(
                        BindingAckStatus::InsufficientResources,
                        "ipv6_pool exhausted",
                    ))?,
                });
            }
        }
        if let (Some(request), None) = (pbu.ipv4_home_address_request, held.ipv4_home_address) {
            if self.ipv4_pool.is_some() {
                self.fits_share(mag.ip(), one(0, 1))?;
            }
            let pool = self.ipv4_pool.as_mut().ok_or(Rejection::ipv4(
                BindingAckStatus::NotAuthorizedForIpv4MobilityService,
                Ipv4HomeAddressReplyStatus::AdministrativelyProhibited,
                "no ipv4_pool: IPv4 home addresses are not served",
            ))?;
            let wanted = request.addr();
            if !wanted.is_unspecified()
                && self.restoration.held_for(Some(wanted), None, pbu, mag.ip())
            {
                // Held back for this very binding since a restart: it is its own again.
                self.restoration.take(Some(wanted), None);
                taken.ipv4_home_address = Some(wanted);
            } else if wanted.is_unspecified() {
                taken.ipv4_home_address = Some(pool.allocate().ok_or(Rejection::ipv4(
                    BindingAckStatus::InsufficientResources,
                    Ipv4HomeAddressReplyStatus::DynamicIpv4HomeAddressAssignmentNotAvailable,
                    "ipv4_pool exhausted",
                ))?);
            } else if !pool.contains(wanted) {
                return Err(Rejection::ipv4(
                    BindingAckStatus::NotAuthorizedForIpv4HomeAddress,
                    Ipv4HomeAddressReplyStatus::InvalidIpv4Address,
                    "requested IPv4 home address outside ipv4_pool",
                ));
            } else if pool.allocate_exact(wanted) {
                taken.ipv4_home_address = Some(wanted);
            } else {
                return Err(Rejection::ipv4(
                    BindingAckStatus::NotAuthorizedForIpv4HomeAddress,
                    Ipv4HomeAddressReplyStatus::IncorrectIpv4HomeAddress,
                    "requested IPv4 home address is held by another binding",
                ));
            }
        }
        if pbu.gre_key.is_some() && held.uplink_gre_key.is_none() {
            let cache = &self.cache;
            let chain = self.chain.as_ref();
            taken.uplink_gre_key = Some(
                self.uplink_keys
                    .allocate(|k| {
                        cache.by_uplink_gre_key(k).is_some()
                            || chain.is_some_and(|c| c.key_reserved(k))
                    })
                    .ok_or(Rejection::new(
                        BindingAckStatus::InsufficientResources,
                        "no free uplink GRE key",
                    ))?,
            );
        }
        Ok(())
    }

    /// Returns addresses to their pools (uplink keys are free once unindexed).
    fn release(&mut self, addresses: &Addresses) {
        if let (Some(prefix), Some(pool)) = (addresses.home_network_prefix, &mut self.prefix_pool) {
            pool.release(prefix);
        }
        if let (Some(address), Some(pool)) = (addresses.ipv4_home_address, &mut self.ipv4_pool) {
            pool.release(address);
        }
    }

    /// Arms the binding's expiry (unless `previous`, its current one, is the same).
    fn arm(
        &mut self,
        id: BindingId,
        now: Instant,
        lifetime: Lifetime,
        previous: Option<Instant>,
    ) -> Instant {
        let expires = now + Duration::from_secs(u64::from(lifetime.as_secs()));
        if previous != Some(expires) {
            self.deadlines.push(expires, id);
        }
        expires
    }

    fn info(&self, id: BindingId) -> Option<BindingInfo> {
        self.cache.get(id).map(|e| BindingInfo {
            id,
            mag: e.mag(),
            addresses: e.addresses(),
            downlink_gre_key: e.state.downlink_gre_key,
        })
    }

    fn register(
        &mut self,
        pbu: &ProxyBindingUpdate,
        from: MagAddress,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Result<Granted, Rejection> {
        self.admit_new(from.ip(), false, now)?;
        // The same MAG starting a new session for a key held back since a restart: the
        // old one is over (one session per key), its addresses go back to the pools.
        self.release_quarantined_key(pbu, from.ip());
        let mut taken = Addresses::default();
        if let Err(rejection) = self.allocate(&Addresses::default(), pbu, from, &mut taken) {
            self.release(&taken);
            return Err(rejection);
        }
        self.insert_binding(pbu, from, taken, now, out)
    }

    /// Binds `pbu` with the addresses `taken` for it (released again on error).
    fn insert_binding(
        &mut self,
        pbu: &ProxyBindingUpdate,
        from: MagAddress,
        taken: Addresses,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Result<Granted, Rejection> {
        let lifetime = self.granted_lifetime(pbu.lifetime);
        let state = BindingState::from_pbu(pbu, lifetime, now);
        let id = match self
            .cache
            .insert(&pbu.mn_id, pbu.apn.as_deref(), from, taken, state)
        {
            Ok(id) => id,
            Err(_) => {
                self.release(&taken);
                return Err(Rejection::new(
                    BindingAckStatus::InsufficientResources,
                    "the binding cache refused the entry",
                ));
            }
        };
        let expires = self.arm(id, now, lifetime, None);
        if let Some(state) = self.cache.state_mut(id) {
            state.expires = expires;
        }
        if let Some(info) = self.info(id) {
            out.push(Output::BindingUp(info));
        }
        Ok(Granted {
            addresses: taken,
            lifetime,
            outcome: Outcome::Registered,
            home: None,
        })
    }

    fn reregister(
        &mut self,
        id: BindingId,
        pbu: &ProxyBindingUpdate,
        from: MagAddress,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Result<Granted, Rejection> {
        let entry = self.cache.get(id).ok_or_else(Rejection::vanished)?;
        let held = entry.addresses();
        let before = (entry.mag(), entry.state.downlink_gre_key);
        let previous_expiry = entry.state.expires;
        let prefix_matches =
            |p: &Ipv6Net| is_any_prefix(p) || Some(p.trunc()) == held.home_network_prefix;
        if !pbu.home_network_prefixes.iter().all(prefix_matches) {
            return Err(Rejection::new(
                BindingAckStatus::BcePbuPrefixSetDoNotMatch,
                "home network prefix differs from the one the binding holds",
            ));
        }
        if let Some(request) = pbu.ipv4_home_address_request {
            let wanted = request.addr();
            if !wanted.is_unspecified() && held.ipv4_home_address.is_some_and(|held| held != wanted)
            {
                return Err(Rejection::ipv4(
                    BindingAckStatus::NotAuthorizedForIpv4HomeAddress,
                    Ipv4HomeAddressReplyStatus::IncorrectIpv4HomeAddress,
                    "IPv4 home address differs from the one the binding holds",
                ));
            }
        }
        // A family asked for now that the binding does not hold yet.
        let mut taken = Addresses::default();
        if let Err(rejection) = self.allocate(&held, pbu, from, &mut taken) {
            self.release(&taken);
            return Err(rejection);
        }
        let addresses = Addresses {
            home_network_prefix: held.home_network_prefix.or(taken.home_network_prefix),
            ipv4_home_address: held.ipv4_home_address.or(taken.ipv4_home_address),
            uplink_gre_key: held.uplink_gre_key.or(taken.uplink_gre_key),
        };
        if addresses != held && self.cache.set_addresses(id, addresses).is_err() {
            self.release(&taken);
            return Err(Rejection::new(
                BindingAckStatus::InsufficientResources,
                "the binding cache refused the new addresses",
            ));
        }
        let lifetime = self.granted_lifetime(pbu.lifetime);
        let expires = self.arm(id, now, lifetime, Some(previous_expiry));
        // Only fails for a binding that is gone, checked above.
        let _ = self.cache.set_mag(id, from);
        if let Some(state) = self.cache.state_mut(id) {
            state.refresh_from(pbu, lifetime, expires);
        }
        if addresses != held || before != (from, pbu.gre_key) {
            if let Some(info) = self.info(id) {
                out.push(Output::BindingUp(info));
            }
        }
        Ok(Granted {
            addresses,
            lifetime,
            outcome: Outcome::Refreshed,
            home: None,
        })
    }

    fn deregister(
        &mut self,
        existing: Option<BindingId>,
        pbu: &ProxyBindingUpdate,
        from: MagAddress,
        out: &mut Vec<Output>,
    ) -> Result<Granted, Rejection> {
        let deregistered = |addresses, outcome| Granted {
            addresses,
            lifetime: Lifetime(0),
            outcome,
            home: None,
        };
        let Some((id, entry)) = existing.and_then(|id| Some((id, self.cache.get(id)?))) else {
            // Nothing bound: the de-registration is already true.
            return Ok(deregistered(Addresses::default(), Outcome::Deregistered));
        };
        let held = entry.addresses();
        if entry.mag().ip() != from.ip() {
            // Nothing of the binding goes to a MAG that does not hold it.
            return Ok(deregistered(
                Addresses::default(),
                Outcome::DeregistrationFromOldMag,
            ));
        }
        let prefix_matches =
            |p: &Ipv6Net| is_any_prefix(p) || Some(p.trunc()) == held.home_network_prefix;
        if !pbu.home_network_prefixes.iter().all(prefix_matches) {
            return Err(Rejection::new(
                BindingAckStatus::BcePbuPrefixSetDoNotMatch,
                "de-registration names a prefix the binding does not hold",
            ));
        }
        self.remove_binding(id, DownReason::Deregistered, out);
        Ok(deregistered(held, Outcome::Deregistered))
    }

    /// Removes a (not chained) binding, returns its addresses to the pools and tells the
    /// data plane; false if it was gone.
    fn remove_binding(&mut self, id: BindingId, reason: DownReason, out: &mut Vec<Output>) -> bool {
        let info = self.info(id);
        let Some(entry) = self.cache.remove(id) else {
            return false;
        };
        self.release(&entry.addresses());
        if let Some(binding) = info {
            out.push(Output::BindingDown { binding, reason });
        }
        true
    }

    fn expire(&mut self, now: Instant, out: &mut Vec<Output>) {
        while let Some((at, id)) = self.deadlines.pop_due(now) {
            let current = self.cache.get(id).is_some_and(|e| e.state.expires == at);
            if !current {
                continue;
            }
            if self.is_chained(id) {
                self.chain_expire(id, now, out);
                continue;
            }
            if self.remove_binding(id, DownReason::Expired, out) {
                self.stats.expired += 1;
            }
        }
    }

    /// The PBA for an accepted PBU (RFC 5213 5.3.6, RFC 5844 3.2.3.2, RFC 5845 3.3).
    fn accept_ack(&self, pbu: &ProxyBindingUpdate, granted: &Granted) -> BindingAckRepr {
        let a = &granted.addresses;
        let deregistration = granted.lifetime.is_zero();
        let home_network_prefixes = if deregistration || pbu.home_network_prefixes.is_empty() {
            pbu.home_network_prefixes.clone()
        } else {
            a.home_network_prefix.into_iter().collect()
        };
        let prefix_len = self
            .ipv4_pool
            .as_ref()
            .map_or(32, |p| p.network().prefix_len());
        let ipv4_home_address_reply = pbu.ipv4_home_address_request.map(|request| {
            let address = match (a.ipv4_home_address, granted.home) {
                // Chained: the home gateway's address and prefix length, as it sent them.
                (Some(_), Some(home)) if !deregistration => {
                    home.ipv4_home_address.unwrap_or(request)
                }
                (Some(address), None) if !deregistration => {
                    Ipv4Net::new(address, prefix_len).unwrap_or(request)
                }
                _ => request,
            };
            (Ipv4HomeAddressReplyStatus::Success, address)
        });
        let ipv4_default_router = match (&ipv4_home_address_reply, deregistration) {
            (Some(_), false) => match granted.home {
                Some(home) => home.ipv4_default_router,
                None => self.settings.ipv4_default_router,
            },
            _ => None,
        };
        ProxyBindingAck {
            status: BindingAckStatus::Accepted,
            sequence: pbu.sequence,
            lifetime: granted.lifetime,
            mn_id: Some(pbu.mn_id.clone()),
            apn: pbu.apn.clone(),
            home_network_prefixes,
            handoff: Some(pbu.handoff),
            access_technology: Some(pbu.access_technology),
            timestamp: pbu.timestamp,
            link_local_address: pbu.link_local_address,
            link_layer_id: pbu.link_layer_id.clone(),
            gre_key: pbu.gre_key.and(a.uplink_gre_key),
            ipv4_home_address_reply,
            ipv4_default_router,
            restart_counter: None,
            vendor: Vec::new(),
            other: Vec::new(),
        }
        .to_binding_ack()
    }
}

/// The PBA refusing a BU (RFC 5213 5.3.6): built from the raw options, since the BU may
/// lack the very options a typed PBU needs.
fn reject_ack(bu: &BindingUpdateRepr, rejection: &Rejection, wall: SystemTime) -> BindingAckRepr {
    use MobilityOption as O;
    let mismatch = rejection.status == BindingAckStatus::TimestampMismatch;
    let mut options: Vec<MobilityOption> = bu
        .options
        .iter()
        .filter(|o| match o {
            O::MobileNodeIdentifier(_)
            | O::ServiceSelection(_)
            | O::HomeNetworkPrefix(_)
            | O::HandoffIndicator(_)
            | O::AccessTechnologyType(_)
            | O::MobileNodeLinkLayerIdentifier(_)
            | O::LinkLocalAddress(_) => true,
            O::Timestamp(_) => !mismatch,
            _ => false,
        })
        .cloned()
        .collect();
    if rejection.status == BindingAckStatus::MissingMnIdentifierOption {
        // RFC 5213 5.3.1 step 4: a zero-length identifier in the answer.
        options.retain(|o| !matches!(o, O::MobileNodeIdentifier(_)));
        options.insert(
            0,
            O::MobileNodeIdentifier(pmip_common::mh::MobileNodeIdentifier::Nai(String::new())),
        );
    }
    if mismatch {
        // RFC 5213 5.5: the LMA's current time, so the MAG can see the offset.
        options.push(O::Timestamp(Timestamp::from_system_time(wall)));
    }
    if let Some(status) = rejection.ipv4_reply {
        let requested = bu.options.iter().find_map(|o| match o {
            O::Ipv4HomeAddressRequest(r) => Some(*r),
            _ => None,
        });
        if let Some(address) = requested {
            options.push(O::Ipv4HomeAddressReply { status, address });
        }
    }
    let proxy = bu.flags.contains(BuFlags::PROXY);
    BindingAckRepr {
        status: rejection.status,
        flags: BaFlags(if proxy { BaFlags::PROXY } else { 0 }),
        sequence: rejection.sequence.unwrap_or(bu.sequence),
        lifetime: Lifetime(0),
        options,
    }
}

#[cfg(test)]
mod tests;
