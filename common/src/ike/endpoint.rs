//! The ePDG's IKE responder endpoint (RFC 7296 sections 2.1, 2.4, 2.6, 2.23), sans-IO:
//! every datagram on UDP 500 and 4500 goes in with both addresses; it is dispatched by
//! its header, read through the checked [`IkeHeader`] view, and comes out as datagrams
//! to send (with source and destination) and events of the IKE SA it concerns.
//!
//! What the endpoint owns, once for the whole node:
//!
//! 1. **IKE_SA_INIT** (responder SPI zero, section 1.2): answered statelessly with
//!    INVALID_SYNTAX, COOKIE, INVALID_KE_PAYLOAD or NO_PROPOSAL_CHOSEN, or by a new
//!    half-open [`ResponderSa`] under a fresh SPI of ours ([`Endpoint::handle`],
//!    `ike_sa_init`).
//! 2. **The IKE_SA_INIT retransmission cache** (section 2.1): the same request again from
//!    the same peer and SPIi, byte for byte, gets the same response and no second SA; a
//!    different request with that SPIi makes a new SA; once the SA is past IKE_AUTH
//!    (whose AUTH payloads were the last use of the IKE_SA_INIT messages, which are then
//!    freed) a late copy is dropped.
//! 3. **Half-open accounting and cookies** (section 2.6): with `cookie_threshold` SAs not
//!    yet authenticated, an IKE_SA_INIT must return a valid cookie; the cookie secret
//!    rotates with [`Endpoint::rotate_cookie_secret`], the previous one staying valid.
//! 4. **The SPI table**: our SPI to its [`ResponderSa`] and the addresses of its peer. A
//!    datagram with a responder SPI we do not hold is dropped; the peer's address and
//!    ports change only with an authentic datagram (section 2.23).
//! 5. **Timers**: one [`DeadlineQueue`] over every SA's retransmission, half-open and
//!    liveness deadline (section 2.4); [`Endpoint::poll_timeout`] is exact.
//!
//! A closed SA leaves the table at once; its [`Event::Closed`] is the last word about it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use super::crypto::{DhPrivate, IkeSuite, Random};
use super::keys::{CookieSecret, IkeSaKeys};
use super::responder::{Acceptance, InitDone, ResponderConfig, ResponderSa};
use super::sa::{nat_detected, nat_detection, nonce, nonzero_spi, Discard, Event, Output};
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
    /// A new half-open IKE SA under our SPI `spi`.
    Created {
        spi: u64,
    },
    /// Something happened to the IKE SA `spi` (never [`Event::Discarded`]: that is
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

/// One row of the SPI table.
#[derive(Debug)]
struct Entry {
    sa: ResponderSa,
    path: Path,
    /// The key of its IKE_SA_INIT in the retransmission cache.
    init_key: (SocketAddr, u64),
    half_open: bool,
    /// The next liveness check, once established.
    next_liveness: Option<Instant>,
    /// The deadline this SA has in the queue; others for it are stale.
    scheduled: Option<Instant>,
}

impl Entry {
    fn deadline(&self) -> Option<Instant> {
        match (self.sa.poll_timeout(), self.next_liveness) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The IKE responder of a node: IKE_SA_INIT, cookies, the SPI table of its
/// [`ResponderSa`]s, their timers.
#[derive(Debug)]
pub struct Endpoint {
    /// Shared with every SA it makes (one copy, not one per UE).
    config: Arc<ResponderConfig>,
    cookie_secret: CookieSecret,
    previous_cookie_secret: Option<CookieSecret>,
    sas: HashMap<u64, Entry>,
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

    /// The IKE SA under our SPI `spi`.
    pub fn sa(&self, spi: u64) -> Option<&ResponderSa> {
        self.sas.get(&spi).map(|e| &e.sa)
    }

    /// Our SPIs of every IKE SA held.
    pub fn spis(&self) -> impl Iterator<Item = u64> + '_ {
        self.sas.keys().copied()
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
        if header.responder_spi == 0 {
            self.ike_sa_init(&header, datagram, remote, local, natt, now, rng, out);
        } else {
            let spi = header.responder_spi;
            let Some(entry) = self.sas.get_mut(&spi) else {
                self.stats.unknown_spi += 1;
                return out.push(EndpointOutput::Discarded {
                    spi: None,
                    reason: Discard::WrongSpi,
                });
            };
            let mut sa_out = Vec::new();
            if entry.sa.handle(datagram, natt, rng, &mut sa_out) {
                entry.path.update(remote, local, natt);
            }
            self.carry_out(spi, sa_out, now, out);
        }
        self.prune();
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
            entry.sa.handle_timeout(now, &mut sa_out);
            if let (Some(due), Some(interval)) =
                (entry.next_liveness, self.config.liveness_interval)
            {
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

    /// Deletes the IKE SA `spi` (an INFORMATIONAL with Delete, section 1.4.1); it closes
    /// at once. Nothing happens if it is gone already.
    pub fn delete(
        &mut self,
        spi: u64,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<EndpointOutput>,
    ) {
        self.with_sa(spi, now, out, |sa, o| {
            sa.delete(now, rng, o);
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
        let Some(entry) = self.sas.get_mut(&spi) else {
            return false;
        };
        let mut sa_out = Vec::new();
        let done = f(&mut entry.sa, &mut sa_out);
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
                        Event::Established(_) => {
                            if std::mem::take(&mut entry.half_open) {
                                self.half_open -= 1;
                            }
                            entry.next_liveness = self.config.liveness_interval.map(|i| now + i);
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
        if self.by_init.get(&entry.init_key) == Some(&spi) {
            self.by_init.remove(&entry.init_key);
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
        let init_key = (remote, header.initiator_spi);
        if let Some((&spi, entry)) = self
            .by_init
            .get(&init_key)
            .and_then(|spi| self.sas.get(spi).map(|e| (spi, e)))
        {
            if !entry.half_open {
                // Past IKE_AUTH: the initiator has moved on; a late copy is out of window.
                return out.push(EndpointOutput::Discarded {
                    spi: Some(spi),
                    reason: Discard::UnexpectedMessageId(0),
                });
            }
            if entry.sa.init_request() == datagram {
                self.stats.init_retransmissions += 1;
                let bytes = entry.sa.init_response().to_vec();
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
                self.sas.insert(
                    spi,
                    Entry {
                        sa: *sa,
                        path: Path::new(remote, local, natt),
                        init_key,
                        half_open: true,
                        next_liveness: None,
                        scheduled: None,
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

    /// A fresh SPI of ours: random, never zero, not in the table.
    fn fresh_spi(&self, rng: &mut dyn Random) -> u64 {
        loop {
            let spi = nonzero_spi(rng);
            if !self.sas.contains_key(&spi) {
                return spi;
            }
        }
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
mod tests;
