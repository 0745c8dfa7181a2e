//! A node's IKE endpoint (RFC 7296 sections 2.1, 2.4, 2.6, 2.23, 3.1), sans-IO: every
//! datagram on UDP 500 and 4500 goes in with both addresses; it is dispatched by its
//! header, read through the checked [`IkeHeader`] view, and comes out as datagrams to
//! send (with source and destination) and events of the IKE SA it concerns. One endpoint
//! holds the SAs the node answers (UEs at the ePDG, MAGs at an LMA) and those it starts
//! itself ([`Endpoint::initiate`]: the ePDG toward its gateways), on the same sockets.
//!
//! What the endpoint owns, once for the whole node:
//!
//! 1. **IKE_SA_INIT** (responder SPI zero, section 1.2): answered statelessly with
//!    INVALID_SYNTAX, COOKIE, INVALID_KE_PAYLOAD, NO_PROPOSAL_CHOSEN or
//!    UNSUPPORTED_CRITICAL_PAYLOAD (section 2.5), dropped when its initiator SPI is zero
//!    (section 3.1), or answered by a new half-open [`ResponderSa`] under a fresh SPI of
//!    ours ([`Endpoint::handle`], `ike_sa_init`).
//! 2. **The IKE_SA_INIT retransmission cache** (section 2.1): the same request again from
//!    the same peer and SPIi, byte for byte, gets the same response and no second SA; a
//!    different request with that SPIi makes a new SA; once the SA is past IKE_AUTH
//!    (whose AUTH payloads were the last use of the IKE_SA_INIT messages, which are then
//!    freed) a late copy is dropped.
//! 3. **Half-open accounting and cookies** (section 2.6): with `cookie_threshold` SAs not
//!    yet authenticated, an IKE_SA_INIT must return a valid cookie; the cookie secret
//!    rotates with [`Endpoint::rotate_cookie_secret`], the previous one staying valid.
//! 4. **The SPI table**: every SA is known to the application by the SPI of ours it was
//!    made under (its handle); the table maps every SPI of ours the peer may use, which a
//!    rekey of the IKE SA changes (section 2.18), to it. Our SPI in a message is the
//!    responder SPI when its I flag says the original initiator sent it, else the
//!    initiator SPI (section 3.1). A datagram with an SPI we do not hold is dropped; the
//!    peer's address and ports change only with an authentic datagram (section 2.23).
//!    The inbound ESP SPIs of every CHILD_SA are kept too, so new ones are unique.
//! 5. **Timers**: one [`DeadlineQueue`] over every SA's retransmission, half-open,
//!    lifetime and liveness deadline (section 2.4); [`Endpoint::poll_timeout`] is exact.
//!
//! A closed SA leaves the table at once; its [`Event::Closed`] is the last word about it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::crypto::{CryptoError, DhPrivate, IkeSuite, Random};
use super::initiator::{InitiatorConfig, InitiatorSa};
use super::keys::{CookieSecret, IkeSaKeys};
use super::rekey::{random_esp_spi, Ctx, SpiSource};
use super::responder::{Acceptance, InitDone, ResponderConfig, ResponderSa};
use super::sa::{
    nat_detected, nat_detection, nonce, nonzero_spi, ChildSa, Discard, Event, Output,
    PeerAuthMethod,
};
use super::wire::*;
use crate::esp::ESP_IN_UDP_PORT;
use crate::time::DeadlineQueue;

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Our address it leaves from: where the peer's datagram arrived.
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// On the NAT-T port: the driver prefixes the four-octet non-ESP marker (RFC 3948
    /// section 2.2).
    pub natt: bool,
    pub bytes: Vec<u8>,
}

/// What the endpoint asks its driver to do, or tells the application.
#[derive(Debug)]
pub enum EndpointOutput {
    Transmit(Transmit),
    /// A new half-open IKE SA of a peer's under our SPI `spi` (not for the ones
    /// [`Endpoint::initiate`] makes).
    Created {
        spi: u64,
    },
    /// Something happened to the IKE SA `spi` (its handle: the SPI it was made under,
    /// see the module doc; never [`Event::Discarded`]: that is
    /// [`EndpointOutput::Discarded`]).
    Event {
        spi: u64,
        event: Event,
    },
    /// A datagram was dropped without any effect; `spi` names the SA it was for, if any.
    Discarded {
        spi: Option<u64>,
        reason: Discard,
    },
}

/// Counters, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub sas_created: u64,
    /// IKE SAs started with [`Endpoint::initiate`].
    pub sas_initiated: u64,
    /// IKE_SA_INIT requests answered again from the cache.
    pub init_retransmissions: u64,
    /// Stateless IKE_SA_INIT answers (COOKIE, INVALID_KE_PAYLOAD and errors).
    pub stateless_replies: u64,
    /// Datagrams for an SPI we do not hold.
    pub unknown_spi: u64,
}

/// Where an SA's peer is, as its authentic datagrams showed.
#[derive(Debug, Clone, Copy)]
struct Path {
    remote: IpAddr,
    port_500: u16,
    /// The peer's port after it moved to port 4500, and our address there.
    port_4500: Option<u16>,
    local_500: SocketAddr,
    local_4500: Option<SocketAddr>,
}

impl Path {
    fn new(remote: SocketAddr, local: SocketAddr, natt: bool) -> Self {
        let mut path = Path {
            remote: remote.ip(),
            port_500: remote.port(),
            port_4500: None,
            local_500: local,
            local_4500: None,
        };
        path.update(remote, local, natt);
        path
    }

    fn update(&mut self, remote: SocketAddr, local: SocketAddr, natt: bool) {
        self.remote = remote.ip();
        if natt {
            self.port_4500 = Some(remote.port());
            self.local_4500 = Some(local);
        } else {
            self.port_500 = remote.port();
            self.local_500 = local;
        }
    }

    fn transmit(&self, natt: bool, bytes: Vec<u8>) -> Transmit {
        let (local, port) = if natt {
            let local = self
                .local_4500
                .unwrap_or(SocketAddr::new(self.local_500.ip(), ESP_IN_UDP_PORT));
            (local, self.port_4500.unwrap_or(ESP_IN_UDP_PORT))
        } else {
            (self.local_500, self.port_500)
        };
        Transmit {
            local,
            remote: SocketAddr::new(self.remote, port),
            natt,
            bytes,
        }
    }
}

/// An SA of either role. The responder, of which an ePDG holds one per UE, stays inline
/// (no second allocation each); the few initiators are boxed.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum AnySa {
    Responder(ResponderSa),
    /// Boxed: an initiator keeps its configuration, and there are few of them.
    Initiator(Box<InitiatorSa>),
}

impl AnySa {
    fn handle(&mut self, datagram: &[u8], natt: bool, ctx: &mut Ctx<'_>) -> bool {
        match self {
            AnySa::Responder(sa) => sa.handle(datagram, natt, ctx),
            AnySa::Initiator(sa) => sa.handle_in(datagram, natt, ctx),
        }
    }

    fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        match self {
            AnySa::Responder(sa) => sa.handle_timeout(ctx),
            AnySa::Initiator(sa) => sa.handle_timeout_in(ctx),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            AnySa::Responder(sa) => sa.poll_timeout(),
            AnySa::Initiator(sa) => sa.poll_timeout(),
        }
    }

    fn check_liveness(&mut self, now: Instant, rng: &mut dyn Random, out: &mut Vec<Output>) {
        match self {
            AnySa::Responder(sa) => sa.check_liveness(now, rng, out),
            AnySa::Initiator(sa) => sa.check_liveness(now, rng, out),
        }
    }

    fn delete(&mut self, now: Instant, rng: &mut dyn Random, out: &mut Vec<Output>) {
        match self {
            AnySa::Responder(sa) => sa.delete(now, rng, out),
            AnySa::Initiator(sa) => sa.delete(now, rng, out),
        }
    }

    fn rekey_child(&mut self, inbound_spi: u32, ctx: &mut Ctx<'_>) -> bool {
        match self {
            AnySa::Responder(sa) => sa.rekey_child(inbound_spi, ctx),
            AnySa::Initiator(sa) => sa.rekey_child_in(inbound_spi, ctx),
        }
    }

    fn rekey_ike(&mut self, ctx: &mut Ctx<'_>) -> bool {
        match self {
            AnySa::Responder(sa) => sa.rekey_ike(ctx),
            AnySa::Initiator(sa) => sa.rekey_ike_in(ctx),
        }
    }

    /// Our SPIs the peer may address, current first.
    fn our_spis(&self) -> Box<dyn Iterator<Item = u64> + '_> {
        match self {
            AnySa::Responder(sa) => Box::new(sa.our_spis()),
            AnySa::Initiator(sa) => Box::new(sa.our_spis()),
        }
    }

    fn children(&self) -> Box<dyn Iterator<Item = &ChildSa> + '_> {
        match self {
            AnySa::Responder(sa) => Box::new(sa.children()),
            AnySa::Initiator(sa) => Box::new(sa.children()),
        }
    }

    fn peer(&self) -> Option<(&Identification, PeerAuthMethod)> {
        match self {
            AnySa::Responder(sa) => sa.peer(),
            AnySa::Initiator(sa) => sa.peer(),
        }
    }
}

/// One row of the SPI table.
#[derive(Debug)]
struct Entry {
    sa: AnySa,
    path: Path,
    /// The key of its IKE_SA_INIT in the retransmission cache (a responder's).
    init_key: Option<(SocketAddr, u64)>,
    half_open: bool,
    /// Liveness checks this often once established.
    liveness: Option<Duration>,
    /// The next liveness check, once established.
    next_liveness: Option<Instant>,
    /// The deadline this SA has in the queue; others for it are stale.
    scheduled: Option<Instant>,
    /// The SPIs of ours the table maps to it.
    spis: Vec<u64>,
}

impl Entry {
    fn deadline(&self) -> Option<Instant> {
        match (self.sa.poll_timeout(), self.next_liveness) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// New SPIs no SA of the endpoint holds (the SPI table and the ESP SPIs are borrowed
/// apart from the SA being handled).
struct TableSpis<'a> {
    ike: &'a HashMap<u64, u64>,
    /// The handles, when the table is not borrowed for an SA.
    handles: Option<&'a HashMap<u64, Entry>>,
    esp: &'a HashMap<u32, u64>,
}

impl SpiSource for TableSpis<'_> {
    fn ike_spi(&mut self, rng: &mut dyn Random) -> u64 {
        loop {
            let spi = nonzero_spi(rng);
            if !self.ike.contains_key(&spi) && !self.handles.is_some_and(|h| h.contains_key(&spi)) {
                return spi;
            }
        }
    }

    fn esp_spi(&mut self, rng: &mut dyn Random) -> u32 {
        loop {
            let spi = random_esp_spi(rng);
            if !self.esp.contains_key(&spi) {
                return spi;
            }
        }
    }
}

/// The IKE endpoint of a node: IKE_SA_INIT, cookies, the SPI table of the SAs it answers
/// and starts, their timers.
#[derive(Debug)]
pub struct Endpoint {
    /// Shared with every SA it makes (one copy, not one per UE).
    config: Arc<ResponderConfig>,
    cookie_secret: CookieSecret,
    previous_cookie_secret: Option<CookieSecret>,
    /// Every SA by its handle.
    sas: HashMap<u64, Entry>,
    /// Every SPI of ours a peer may address, to the handle of its SA.
    by_spi: HashMap<u64, u64>,
    /// Every inbound ESP SPI of a CHILD_SA, to the handle of its IKE SA.
    esp: HashMap<u32, u64>,
    /// IKE_SA_INIT requests by the peer's address and SPIi: the SA they made.
    by_init: HashMap<(SocketAddr, u64), u64>,
    half_open: usize,
    deadlines: DeadlineQueue<u64>,
    stats: Stats,
}

impl Endpoint {
    pub fn new(config: ResponderConfig, rng: &mut dyn Random) -> Self {
        Endpoint {
            config: Arc::new(config),
            cookie_secret: CookieSecret::generate(1, rng),
            previous_cookie_secret: None,
            sas: HashMap::new(),
            by_spi: HashMap::new(),
            esp: HashMap::new(),
            by_init: HashMap::new(),
            half_open: 0,
            deadlines: DeadlineQueue::new(),
            stats: Stats::default(),
        }
    }

    pub fn config(&self) -> &ResponderConfig {
        &self.config
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// IKE SAs held.
    pub fn len(&self) -> usize {
        self.sas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sas.is_empty()
    }

    /// IKE SAs not yet authenticated (what the cookie threshold counts).
    pub fn half_open(&self) -> usize {
        self.half_open
    }

    /// The IKE SA of a peer's under the handle `spi`.
    pub fn sa(&self, spi: u64) -> Option<&ResponderSa> {
        match &self.sas.get(&spi)?.sa {
            AnySa::Responder(sa) => Some(sa),
            AnySa::Initiator(_) => None,
        }
    }

    /// The IKE SA we started under the handle `spi`.
    pub fn initiator(&self, spi: u64) -> Option<&InitiatorSa> {
        match &self.sas.get(&spi)?.sa {
            AnySa::Initiator(sa) => Some(sa),
            AnySa::Responder(_) => None,
        }
    }

    /// The handles of every IKE SA held, of both roles.
    pub fn spis(&self) -> impl Iterator<Item = u64> + '_ {
        self.sas.keys().copied()
    }

    /// The handle of the IKE SA a message naming our SPI `spi` is for (after a rekey it
    /// differs from the handle).
    pub fn handle_of(&self, spi: u64) -> Option<u64> {
        self.by_spi.get(&spi).copied()
    }

    /// The CHILD_SAs of the IKE SA `spi` in place now.
    pub fn children(&self, spi: u64) -> Vec<&ChildSa> {
        self.sas
            .get(&spi)
            .map(|e| e.sa.children().collect())
            .unwrap_or_default()
    }

    /// The IKE SA (by handle) a CHILD_SA with this inbound ESP SPI belongs to.
    pub fn esp_owner(&self, inbound_spi: u32) -> Option<u64> {
        self.esp.get(&inbound_spi).copied()
    }

    /// Who the peer of `spi` proved to be in IKE_AUTH, and how (None before).
    pub fn peer(&self, spi: u64) -> Option<(&Identification, PeerAuthMethod)> {
        self.sas.get(&spi)?.sa.peer()
    }

    /// An inbound ESP SPI no CHILD_SA of the endpoint has (never 0 to 255, RFC 4303
    /// section 2.1), for the application's first CHILD_SA of a UE.
    pub fn fresh_esp_spi(&self, rng: &mut dyn Random) -> u32 {
        TableSpis {
            ike: &self.by_spi,
            handles: Some(&self.sas),
            esp: &self.esp,
        }
        .esp_spi(rng)
    }

    /// Where the peer of `spi` sends from on port 4500 (where ESP-in-UDP to it goes,
    /// RFC 3948), or its address with port 4500 if it never moved there.
    pub fn natt_peer(&self, spi: u64) -> Option<SocketAddr> {
        let path = &self.sas.get(&spi)?.path;
        Some(SocketAddr::new(
            path.remote,
            path.port_4500.unwrap_or(ESP_IN_UDP_PORT),
        ))
    }

    /// Replaces the cookie secret; cookies of the previous one stay valid until the next
    /// rotation (section 2.6).
    pub fn rotate_cookie_secret(&mut self, rng: &mut dyn Random) {
        let version = self.cookie_secret.version.wrapping_add(1);
        let old = std::mem::replace(
            &mut self.cookie_secret,
            CookieSecret::generate(version, rng),
        );
        self.previous_cookie_secret = Some(old);
    }

    /// The earliest deadline of any SA: call [`Endpoint::handle_timeout`] then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.peek().map(|(at, _)| at)
    }

    /// A datagram that arrived from `remote` at our `local` address, on the NAT-T port
    /// (`natt`, non-ESP marker already removed) or not.
    #[allow(clippy::too_many_arguments)]
    pub fn handle(
        &mut self,
        datagram: &[u8],
        remote: SocketAddr,
        local: SocketAddr,
        natt: bool,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<EndpointOutput>,
    ) {
        let header = match IkeHeader::new_checked(datagram).and_then(|h| HeaderRepr::parse(&h)) {
            Ok(h) => h,
            Err(e) => {
                return out.push(EndpointOutput::Discarded {
                    spi: None,
                    reason: Discard::Wire(e),
                })
            }
        };
        if header.flags.initiator && header.responder_spi == 0 {
            self.ike_sa_init(&header, datagram, remote, local, natt, now, rng, out);
        } else {
            // Section 3.1: the original initiator's messages name us by the responder SPI.
            let ours = if header.flags.initiator {
                header.responder_spi
            } else {
                header.initiator_spi
            };
            let Some((handle, entry)) = self
                .by_spi
                .get(&ours)
                .and_then(|h| self.sas.get_mut(h).map(|e| (*h, e)))
            else {
                self.stats.unknown_spi += 1;
                return out.push(EndpointOutput::Discarded {
                    spi: None,
                    reason: Discard::WrongSpi,
                });
            };
            let mut sa_out = Vec::new();
            let mut spis = TableSpis {
                ike: &self.by_spi,
                handles: None,
                esp: &self.esp,
            };
            let mut ctx = Ctx {
                now,
                rng,
                spis: &mut spis,
                out: &mut sa_out,
            };
            if entry.sa.handle(datagram, natt, &mut ctx) {
                entry.path.update(remote, local, natt);
            }
            self.carry_out(handle, sa_out, now, out);
        }
        self.prune();
    }

    /// Starts an IKE SA of ours toward `peer` (its port 500) with `config` (whose
    /// `remote` it replaces): IKE_SA_INIT goes out from `config.local`. Returns the SA's
    /// handle, our SPI in it; [`Event::Established`] or [`Event::Closed`] follows.
    pub fn initiate(
        &mut self,
        mut config: InitiatorConfig,
        peer: SocketAddr,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<EndpointOutput>,
    ) -> Result<u64, CryptoError> {
        config.remote = peer;
        let local = config.local;
        let liveness = config.liveness_interval;
        let mut sa_out = Vec::new();
        let mut spis = TableSpis {
            ike: &self.by_spi,
            handles: Some(&self.sas),
            esp: &self.esp,
        };
        let sa = InitiatorSa::start_with(config, &mut spis, now, rng, &mut sa_out)?;
        let handle = sa.initiator_spi();
        self.stats.sas_initiated += 1;
        self.by_spi.insert(handle, handle);
        self.sas.insert(
            handle,
            Entry {
                sa: AnySa::Initiator(Box::new(sa)),
                path: Path::new(peer, local, false),
                init_key: None,
                half_open: false,
                liveness,
                next_liveness: None,
                scheduled: None,
                spis: vec![handle],
            },
        );
        self.carry_out(handle, sa_out, now, out);
        self.prune();
        Ok(handle)
    }

    /// Starts a rekey of the CHILD_SA with this inbound ESP SPI of the IKE SA `spi` (its
    /// sequence number runs out: [`crate::esp::OutboundSa::needs_rekey`]). False if there
    /// is no such CHILD_SA in place.
    pub fn rekey_child_sa(
        &mut self,
        spi: u64,
        inbound_spi: u32,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<EndpointOutput>,
    ) -> bool {
        self.with_ctx(spi, now, rng, out, |sa, ctx| {
            sa.rekey_child(inbound_spi, ctx)
        })
    }

    /// Starts a rekey of the IKE SA `spi`. False if it is not established.
    pub fn rekey_ike_sa(
        &mut self,
        spi: u64,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<EndpointOutput>,
    ) -> bool {
        self.with_ctx(spi, now, rng, out, |sa, ctx| sa.rekey_ike(ctx))
    }

    /// Runs `f` on the SA `spi` with new SPIs at hand, and carries out what it output.
    fn with_ctx(
        &mut self,
        spi: u64,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<EndpointOutput>,
        f: impl FnOnce(&mut AnySa, &mut Ctx<'_>) -> bool,
    ) -> bool {
        let Some(entry) = self.sas.get_mut(&spi) else {
            return false;
        };
        let mut sa_out = Vec::new();
        let mut spis = TableSpis {
            ike: &self.by_spi,
            handles: None,
            esp: &self.esp,
        };
        let done = f(
            &mut entry.sa,
            &mut Ctx {
                now,
                rng,
                spis: &mut spis,
                out: &mut sa_out,
            },
        );
        self.carry_out(spi, sa_out, now, out);
        self.prune();
        done
    }

    /// Retransmits, gives up on, checks the liveness of and drops half-open SAs whose
    /// deadline passed.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<EndpointOutput>,
    ) {
        while let Some((at, spi)) = self.deadlines.pop_due(now) {
            let Some(entry) = self.sas.get_mut(&spi) else {
                continue;
            };
            if entry.scheduled != Some(at) {
                continue;
            }
            entry.scheduled = None;
            let mut sa_out = Vec::new();
            let mut spis = TableSpis {
                ike: &self.by_spi,
                handles: None,
                esp: &self.esp,
            };
            entry.sa.handle_timeout(&mut Ctx {
                now,
                rng,
                spis: &mut spis,
                out: &mut sa_out,
            });
            if let (Some(due), Some(interval)) = (entry.next_liveness, entry.liveness) {
                if due <= now {
                    entry.next_liveness = Some(now + interval);
                    entry.sa.check_liveness(now, rng, &mut sa_out);
                }
            }
            self.carry_out(spi, sa_out, now, out);
        }
        self.prune();
    }

    /// Relays an EAP request of the AAA to the UE of `spi`. False if that SA owes no
    /// IKE_AUTH answer (or is gone).
    pub fn send_eap(
        &mut self,
        spi: u64,
        eap: Vec<u8>,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<EndpointOutput>,
    ) -> bool {
        self.with_sa(spi, now, out, |sa, o| sa.send_eap(eap, rng, o))
    }

    /// EAP succeeded and the application is ready (in S2b: after the PBA): sends the
    /// EAP-Success; the UE's AUTH is then checked with the MSK and answered with our AUTH
    /// and `acceptance`. `inbound_spi` is the ESP SPI we allocated.
    #[allow(clippy::too_many_arguments)]
    pub fn eap_success(
        &mut self,
        spi: u64,
        eap_success: Vec<u8>,
        msk: Vec<u8>,
        acceptance: Acceptance,
        inbound_spi: u32,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<EndpointOutput>,
    ) -> bool {
        self.with_sa(spi, now, out, |sa, o| {
            sa.eap_success(eap_success, msk, acceptance, inbound_spi, rng, o)
        })
    }

    /// Ends IKE_AUTH of `spi` with an error notify (and an EAP-Failure if given); the SA
    /// closes.
    #[allow(clippy::too_many_arguments)]
    pub fn reject(
        &mut self,
        spi: u64,
        notify: NotifyType,
        eap_failure: Option<Vec<u8>>,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<EndpointOutput>,
    ) -> bool {
        self.with_sa(spi, now, out, |sa, o| {
            sa.reject(notify, eap_failure, rng, o)
        })
    }

    /// Deletes the IKE SA `spi`, of either role (an INFORMATIONAL with Delete, section
    /// 1.4.1); it closes at once. Nothing happens if it is gone already.
    pub fn delete(
        &mut self,
        spi: u64,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<EndpointOutput>,
    ) {
        self.with_ctx(spi, now, rng, out, |sa, ctx| {
            sa.delete(ctx.now, ctx.rng, ctx.out);
            true
        });
    }

    /// Runs `f` on the SA `spi` and carries out what it output. False if there is no
    /// such SA or `f` says so.
    fn with_sa(
        &mut self,
        spi: u64,
        now: Instant,
        out: &mut Vec<EndpointOutput>,
        f: impl FnOnce(&mut ResponderSa, &mut Vec<Output>) -> bool,
    ) -> bool {
        let Some(Entry {
            sa: AnySa::Responder(sa),
            ..
        }) = self.sas.get_mut(&spi)
        else {
            return false;
        };
        let mut sa_out = Vec::new();
        let done = f(sa, &mut sa_out);
        self.carry_out(spi, sa_out, now, out);
        self.prune();
        done
    }

    /// Addresses what the SA `spi` output, follows its life (established: no longer
    /// half-open, liveness armed; closed: out of the table) and re-arms its deadline.
    fn carry_out(
        &mut self,
        spi: u64,
        sa_out: Vec<Output>,
        now: Instant,
        out: &mut Vec<EndpointOutput>,
    ) {
        let Some(entry) = self.sas.get_mut(&spi) else {
            return;
        };
        let path = entry.path;
        let mut closed = false;
        for o in sa_out {
            match o {
                Output::Send { bytes, port_4500 } => {
                    out.push(EndpointOutput::Transmit(path.transmit(port_4500, bytes)))
                }
                Output::Event(Event::Discarded(reason)) => out.push(EndpointOutput::Discarded {
                    spi: Some(spi),
                    reason,
                }),
                Output::Event(event) => {
                    match &event {
                        Event::Established(e) => {
                            if std::mem::take(&mut entry.half_open) {
                                self.half_open -= 1;
                            }
                            entry.next_liveness = entry.liveness.map(|i| now + i);
                            self.esp.insert(e.child.inbound_spi, spi);
                        }
                        Event::ChildSaRekeyed { child, .. } => {
                            self.esp.insert(child.inbound_spi, spi);
                        }
                        Event::ChildSaDeleted { inbound_spi, .. }
                            if self.esp.get(inbound_spi) == Some(&spi) =>
                        {
                            self.esp.remove(inbound_spi);
                        }
                        Event::Closed(_) => closed = true,
                        _ => {}
                    }
                    out.push(EndpointOutput::Event { spi, event });
                }
            }
        }
        if closed {
            self.remove(spi);
            return;
        }
        // A rekey of the IKE SA adds SPIs of ours, its end takes the old ones away.
        if !entry.sa.our_spis().eq(entry.spis.iter().copied()) {
            let now_spis: Vec<u64> = entry.sa.our_spis().collect();
            for old in &entry.spis {
                if !now_spis.contains(old) && self.by_spi.get(old) == Some(&spi) {
                    self.by_spi.remove(old);
                }
            }
            for new in &now_spis {
                self.by_spi.insert(*new, spi);
            }
            entry.spis = now_spis;
        }
        let deadline = entry.deadline();
        if deadline != entry.scheduled {
            entry.scheduled = deadline;
            if let Some(at) = deadline {
                self.deadlines.push(at, spi);
            }
        }
    }

    fn remove(&mut self, spi: u64) {
        let Some(entry) = self.sas.remove(&spi) else {
            return;
        };
        if entry.half_open {
            self.half_open -= 1;
        }
        if let Some(key) = entry.init_key {
            if self.by_init.get(&key) == Some(&spi) {
                self.by_init.remove(&key);
            }
        }
        for s in &entry.spis {
            if self.by_spi.get(s) == Some(&spi) {
                self.by_spi.remove(s);
            }
        }
        for child in entry.sa.children() {
            if self.esp.get(&child.inbound_spi) == Some(&spi) {
                self.esp.remove(&child.inbound_spi);
            }
        }
    }

    /// Drops stale deadlines from the front so [`Endpoint::poll_timeout`] is exact, and
    /// all of them when they outnumber the live ones (amortised O(1)).
    fn prune(&mut self) {
        let sas = &self.sas;
        let stale = |at: Instant, spi: u64| sas.get(&spi).is_none_or(|e| e.scheduled != Some(at));
        self.deadlines.prune_front(stale);
        if self.deadlines.len() > 2 * self.sas.len() + 1024 {
            self.deadlines.retain(|at, spi| !stale(at, spi));
        }
    }

    /// An IKE_SA_INIT request (section 1.2): the cached answer to a retransmission, a
    /// stateless answer, or a new half-open SA.
    #[allow(clippy::too_many_arguments)]
    fn ike_sa_init(
        &mut self,
        header: &HeaderRepr,
        datagram: &[u8],
        remote: SocketAddr,
        local: SocketAddr,
        natt: bool,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<EndpointOutput>,
    ) {
        if header.initiator_spi == 0 {
            // Section 3.1: the initiator's SPI is never zero; no answer, no state.
            return out.push(EndpointOutput::Discarded {
                spi: None,
                reason: Discard::Unexpected("IKE_SA_INIT with initiator SPI zero"),
            });
        }
        let init_key = (remote, header.initiator_spi);
        if let Some((&spi, entry)) = self
            .by_init
            .get(&init_key)
            .and_then(|spi| self.sas.get(spi).map(|e| (spi, e)))
        {
            let AnySa::Responder(sa) = &entry.sa else {
                return;
            };
            if !entry.half_open {
                // Past IKE_AUTH: the initiator has moved on; a late copy is out of window.
                return out.push(EndpointOutput::Discarded {
                    spi: Some(spi),
                    reason: Discard::UnexpectedMessageId(0),
                });
            }
            if sa.init_request() == datagram {
                self.stats.init_retransmissions += 1;
                let bytes = sa.init_response().to_vec();
                return out.push(EndpointOutput::Transmit(Transmit {
                    local,
                    remote,
                    natt,
                    bytes,
                }));
            }
        }
        let reply = |bytes| Transmit {
            local,
            remote,
            natt,
            bytes,
        };
        match self.answer_ike_sa_init(datagram, remote, local, now, rng) {
            InitAnswer::Stateless(bytes) => {
                self.stats.stateless_replies += 1;
                out.push(EndpointOutput::Transmit(reply(bytes)));
            }
            InitAnswer::NewSa(sa) => {
                let spi = sa.responder_spi();
                let bytes = sa.init_response().to_vec();
                self.stats.sas_created += 1;
                self.half_open += 1;
                self.by_init.insert(init_key, spi);
                self.by_spi.insert(spi, spi);
                self.sas.insert(
                    spi,
                    Entry {
                        sa: AnySa::Responder(*sa),
                        path: Path::new(remote, local, natt),
                        init_key: Some(init_key),
                        half_open: true,
                        liveness: self.config.liveness_interval,
                        next_liveness: None,
                        scheduled: None,
                        spis: vec![spi],
                    },
                );
                out.push(EndpointOutput::Created { spi });
                self.carry_out(
                    spi,
                    vec![Output::Send {
                        bytes,
                        port_4500: natt,
                    }],
                    now,
                    out,
                );
            }
            InitAnswer::Discarded(reason) => {
                out.push(EndpointOutput::Discarded { spi: None, reason })
            }
        }
    }

    /// A fresh SPI of ours: random, never zero, neither a handle nor in the table.
    fn fresh_spi(&self, rng: &mut dyn Random) -> u64 {
        TableSpis {
            ike: &self.by_spi,
            handles: Some(&self.sas),
            esp: &self.esp,
        }
        .ike_spi(rng)
    }

    /// Answers an IKE_SA_INIT request that arrived from `remote` at `local` at `now`.
    fn answer_ike_sa_init(
        &self,
        datagram: &[u8],
        remote: SocketAddr,
        local: SocketAddr,
        now: Instant,
        rng: &mut dyn Random,
    ) -> InitAnswer {
        let m = match IkeMessage::parse(datagram) {
            Ok(m) => m,
            // Section 2.5: an unknown payload marked critical is named in the answer.
            Err(WireError::UnsupportedCriticalPayload(t)) => {
                return match IkeHeader::new_checked(datagram).and_then(|h| HeaderRepr::parse(&h)) {
                    Ok(h) if h.exchange_type == ExchangeType::IkeSaInit && !h.flags.response => {
                        let answer = IkeMessage {
                            initiator_spi: h.initiator_spi,
                            responder_spi: 0,
                            exchange_type: ExchangeType::IkeSaInit,
                            flags: Flags {
                                response: true,
                                ..Flags::default()
                            },
                            message_id: h.message_id,
                            payloads: vec![Payload::Notify(NotifyPayload::new(
                                NotifyType::UnsupportedCriticalPayload,
                                vec![t],
                            ))],
                        };
                        InitAnswer::Stateless(answer.to_bytes())
                    }
                    _ => InitAnswer::Discarded(Discard::Wire(
                        WireError::UnsupportedCriticalPayload(t),
                    )),
                };
            }
            // An unparseable request gets no answer: it may not even be from a peer.
            Err(e) => return InitAnswer::Discarded(Discard::Wire(e)),
        };
        if m.exchange_type != ExchangeType::IkeSaInit
            || m.flags.response
            || !m.flags.initiator
            || m.message_id != 0
            || m.responder_spi != 0
        {
            return InitAnswer::Discarded(Discard::Unexpected("not an IKE_SA_INIT request"));
        }
        let stateless = |t: NotifyType, data: Vec<u8>| {
            let answer = IkeMessage {
                initiator_spi: m.initiator_spi,
                responder_spi: 0,
                exchange_type: ExchangeType::IkeSaInit,
                flags: Flags {
                    response: true,
                    ..Flags::default()
                },
                message_id: 0,
                payloads: vec![Payload::Notify(NotifyPayload::new(t, data))],
            };
            InitAnswer::Stateless(answer.to_bytes())
        };
        let (mut sa, mut ke, mut ni) = (None, None, None);
        for p in &m.payloads {
            match p {
                Payload::Sa(s) => sa = sa.or(Some(s)),
                Payload::Ke(k) => ke = ke.or(Some(k)),
                Payload::Nonce(n) => ni = ni.or(Some(n)),
                _ => {}
            }
        }
        let (Some(sa), Some(ke), Some(ni)) = (sa, ke, ni) else {
            return stateless(NotifyType::InvalidSyntax, vec![]);
        };
        if self.half_open >= self.config.cookie_threshold {
            let returned = m
                .notifies()
                .find(|n| n.notify_type == NotifyType::Cookie)
                .map(|n| n.data.clone());
            let valid = returned.as_ref().is_some_and(|c| {
                self.cookie_secret.verify(
                    self.previous_cookie_secret.as_ref(),
                    c,
                    ni,
                    remote.ip(),
                    m.initiator_spi,
                )
            });
            if !valid {
                let cookie = self.cookie_secret.cookie(ni, remote.ip(), m.initiator_spi);
                return stateless(NotifyType::Cookie, cookie);
            }
        }
        // A suite in the group the initiator already sent its KE in, if we accept one of
        // those; else our preferred suite, which may cost the initiator an
        // INVALID_KE_PAYLOAD round trip (section 1.3). strongSwan sends Curve25519 first:
        // accepting it saves every such UE a round trip.
        let in_ke_group: Vec<IkeSuite> = self
            .config
            .suites
            .iter()
            .filter(|s| s.dh.id() == ke.dh_group)
            .copied()
            .collect();
        let Some((number, suite)) = IkeSuite::select(&in_ke_group, sa)
            .or_else(|| IkeSuite::select(&self.config.suites, sa))
        else {
            return stateless(NotifyType::NoProposalChosen, vec![]);
        };
        if ke.dh_group != suite.dh.id() {
            return stateless(
                NotifyType::InvalidKePayload,
                u16::from(suite.dh.id()).to_be_bytes().to_vec(),
            );
        }
        let Ok(dh) = DhPrivate::generate(suite.dh, rng) else {
            return stateless(NotifyType::TemporaryFailure, vec![]);
        };
        let spi_r = self.fresh_spi(rng);
        let nr = nonce(rng);
        let mut payloads = vec![
            Payload::Sa(SaPayload {
                proposals: vec![suite.proposal(number)],
            }),
            Payload::Ke(KePayload {
                dh_group: suite.dh.id(),
                key_exchange_data: dh.public_value().to_vec(),
            }),
            Payload::Nonce(nr.clone()),
        ];
        let peer_did_nat_detection = m
            .notifies()
            .any(|n| n.notify_type == NotifyType::NatDetectionSourceIp);
        if peer_did_nat_detection {
            payloads.extend(nat_detection(m.initiator_spi, spi_r, local, remote));
        }
        // The CAs a node's certificate may come from (section 1.2: CERTREQ here).
        payloads.extend(
            self.config
                .peers
                .verifier
                .as_ref()
                .and_then(|v| v.certificate_request())
                .map(Payload::CertReq),
        );
        let Ok(g_ir) = dh.shared_secret(&ke.key_exchange_data) else {
            return stateless(NotifyType::InvalidSyntax, vec![]);
        };
        let Ok(keys) = IkeSaKeys::from_ike_sa_init(&suite, &g_ir, ni, &nr, m.initiator_spi, spi_r)
        else {
            return stateless(NotifyType::TemporaryFailure, vec![]);
        };
        let response = IkeMessage {
            initiator_spi: m.initiator_spi,
            responder_spi: spi_r,
            exchange_type: ExchangeType::IkeSaInit,
            flags: Flags {
                response: true,
                ..Flags::default()
            },
            message_id: 0,
            payloads,
        };
        let init = InitDone {
            spi_i: m.initiator_spi,
            spi_r,
            keys,
            nat: nat_detected(&m, 0, remote, local),
            init_request: datagram.to_vec(),
            init_response: response.to_bytes(),
            ni: ni.clone(),
            nr,
        };
        InitAnswer::NewSa(Box::new(ResponderSa::new(
            Arc::clone(&self.config),
            init,
            now,
        )))
    }
}

/// What an IKE_SA_INIT request gets.
enum InitAnswer {
    /// An answer that leaves no state.
    Stateless(Vec<u8>),
    /// A new half-open IKE SA (its response is its `init_response`).
    NewSa(Box<ResponderSa>),
    /// Dropped: not an IKE_SA_INIT request, or not parseable.
    Discarded(Discard),
}

#[cfg(test)]
mod nodes;
#[cfg(test)]
mod tests;
