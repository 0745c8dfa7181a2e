//! The IKE SA core shared by both roles (RFC 7296 sections 2.1 to 2.4): message IDs and
//! the window of one request each way, retransmission of our request with exponential
//! backoff, the answer to a retransmitted request from the cached response, SK protection
//! (section 3.14), INFORMATIONAL (liveness checks, Delete), the error notify for an
//! authentic request whose payloads do not parse (sections 2.5, 2.21); and the
//! [`Output`]s and [`Event`]s of both state machines,
//! [`InitiatorSa`](super::initiator::InitiatorSa) and
//! [`ResponderSa`](super::responder::ResponderSa).
//!
//! Message IDs and retransmissions follow sections 2.1 and 2.2: we retransmit our own
//! outstanding request on timeout, answer a retransmitted request from the cached
//! response, and drop anything else out of window. Each outstanding request carries its
//! `Purpose`, so the response finds what it answers (a CREATE_CHILD_SA's nonce and
//! Diffie-Hellman key, the CHILD_SAs a Delete names). IKE_SA_INIT is not handled here:
//! the initiator matches its response itself, and at the responder the
//! [`Endpoint`](super::endpoint::Endpoint) answers a retransmitted IKE_SA_INIT request.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use super::child::Mode;
use super::crypto::{CryptoError, EspSuite, Random};
use super::keys::{nat_detection_hash, signed_octets, ChildSaKeys, IkeSaKeys};
use super::rekey::{ChildRequest, IkeRekeyRequest};
use super::responder::AuthRequest;
use super::sk::{SkError, SkKeys};
use super::wire::*;

/// What a state machine asks its driver to do, or tells the application.
#[derive(Debug)]
pub enum Output {
    /// Send a datagram to the peer; on port 4500 the driver prefixes the four-octet
    /// non-ESP marker (RFC 3948).
    Send {
        bytes: Vec<u8>,
        port_4500: bool,
    },
    Event(Event),
}

/// What happened, for the application.
#[derive(Debug)]
pub enum Event {
    /// (Responder) The UE's first IKE_AUTH request: start EAP with the AAA, then call
    /// [`Endpoint::send_eap`](super::endpoint::Endpoint::send_eap) (or
    /// [`Endpoint::reject`](super::endpoint::Endpoint::reject)).
    AuthRequested(AuthRequest),
    /// (Responder) An EAP packet from the UE, to relay to the AAA.
    EapResponse(Vec<u8>),
    /// (Initiator) An EAP packet from the ePDG: a request, a Success or a Failure.
    EapRequest(Vec<u8>),
    /// The IKE SA and its first CHILD_SA are up.
    Established(Box<Established>),
    /// A CHILD_SA replaced the one whose inbound SPI was `replaces` (a CREATE_CHILD_SA
    /// with REKEY_SA from either side, RFC 7296 section 1.3.3): install `child` beside
    /// it; the old one keeps receiving until its [`Event::ChildSaDeleted`] (section 2.8).
    ChildSaRekeyed { replaces: u32, child: Box<ChildSa> },
    /// A CHILD_SA is gone (deleted by either side, replaced, or past its hard lifetime):
    /// retire its ESP SAs.
    ChildSaDeleted { inbound_spi: u32, outbound_spi: u32 },
    /// The IKE SA was rekeyed (section 2.18): it now runs under these SPIs, its CHILD_SAs
    /// moved to it; `keylog` is its record for Wireshark's IKEv2 decryption table.
    IkeSaRekeyed {
        spi_i: u64,
        spi_r: u64,
        keylog: String,
    },
    /// The peer's liveness check was answered, or ours was.
    Alive,
    /// The IKE SA is gone (at the responder its [`Endpoint`](super::endpoint::Endpoint)
    /// has dropped it already).
    Closed(CloseReason),
    /// A datagram was dropped without any effect.
    Discarded(Discard),
}

/// An established CHILD_SA (ESP) and its keys.
///
/// `keys` and `tsi`/`tsr` are named after the IKE_SA_INIT that began the session, whoever
/// started the CREATE_CHILD_SA that made a later CHILD_SA: `initiator_to_responder` always
/// protects what the node that sent IKE_SA_INIT (the UE, the ePDG toward a gateway) sends,
/// and `tsi` is always its side, so [`crate::esp::child_sa_pair`] with the node's role
/// fits every CHILD_SA of the session, rekeyed ones too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSa {
    pub suite: EspSuite,
    /// The SPI the peer puts in ESP packets it sends us.
    pub inbound_spi: u32,
    /// The SPI we put in ESP packets we send.
    pub outbound_spi: u32,
    pub keys: ChildSaKeys,
    pub tsi: Vec<TrafficSelector>,
    pub tsr: Vec<TrafficSelector>,
    /// Tunnel mode, or transport mode when both sides said USE_TRANSPORT_MODE (RFC 7296
    /// section 1.3.1).
    pub mode: Mode,
}

/// How the peer proved its identity in IKE_AUTH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAuthMethod {
    /// With EAP (a UE at the ePDG), or the ePDG to a UE with the MSK alone (RFC 5998).
    Eap,
    /// A pre-shared key (RFC 7296 section 2.15, AUTH method 2).
    SharedKey,
    /// A signature by a certificate's key (AUTH method 9 or 14, RFC 7427).
    Certificate,
}

/// The outcome of IKE_AUTH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Established {
    pub child: ChildSa,
    /// The CFG_REPLY the initiator received (None at the responder).
    pub cp_reply: Option<CpPayload>,
    /// The peer's identity as IKE_AUTH proved it: its IDi at the responder, its IDr at
    /// the initiator. A gateway checks that a PBU came through the SA of the MAG it
    /// claims to be with this.
    pub peer_id: Identification,
    pub peer_auth: PeerAuthMethod,
    /// The IKE SA's record for Wireshark's IKEv2 decryption table
    /// ([`IkeSaKeys::wireshark_decryption_record`]): given only now that the SA is
    /// authenticated, so a flood of half-open SAs writes nothing.
    pub keylog: String,
}

/// Why an IKE SA ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer answered with this error notify.
    NotifyReceived(NotifyType),
    /// We answered with this error notify.
    NotifySent(NotifyType),
    /// Our request went unanswered through every retransmission.
    Timeout,
    /// The peer deleted the IKE SA.
    DeletedByPeer,
    /// We deleted it.
    Deleted,
    /// (Initiator) The responder did not prove its identity: no AUTH where one was
    /// needed, or one our verifier refused.
    PeerNotAuthenticated,
    /// (Initiator) We asked for a transport-mode CHILD_SA and the responder answered in
    /// tunnel mode (RFC 7296 section 1.3.1: the initiator then deletes the SA).
    TransportModeRefused,
    /// The IKE SA reached its hard lifetime without a rekey (section 2.8).
    LifetimeExpired,
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discard {
    Wire(WireError),
    Sk(SkError),
    /// No IKE SA of ours has these SPIs.
    WrongSpi,
    UnexpectedMessageId(u32),
    Unexpected(&'static str),
}

/// Retransmission timing of our requests (section 2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetransmitPolicy {
    pub initial: Duration,
    /// Retransmissions after the first transmission before giving up.
    pub max_retransmissions: u32,
}

impl Default for RetransmitPolicy {
    fn default() -> Self {
        RetransmitPolicy {
            initial: Duration::from_millis(500),
            max_retransmissions: 5,
        }
    }
}

impl RetransmitPolicy {
    /// From a request's first transmission to giving up on it: how long a peer may keep
    /// retransmitting one request of its own.
    pub fn span(&self) -> Duration {
        (0..=self.max_retransmissions)
            .map(|n| backoff(self.initial, n))
            .fold(Duration::ZERO, Duration::saturating_add)
    }
}

/// What one of our requests is for, so its response finds its context.
#[derive(Debug)]
pub(super) enum Purpose {
    /// An IKE_AUTH request of the initiator.
    Auth,
    /// An empty INFORMATIONAL: a liveness check (section 2.4).
    Liveness,
    /// An INFORMATIONAL telling the responder its AUTH failed (section 2.21.2).
    Notice,
    /// Delete of this IKE SA (the old one, after a rekey).
    DeleteIke,
    /// Delete of the CHILD_SAs with these inbound SPIs of ours (section 1.4.1).
    DeleteChildren(Vec<u32>),
    /// CREATE_CHILD_SA rekeying a CHILD_SA (section 1.3.3).
    CreateChild(Box<ChildRequest>),
    /// CREATE_CHILD_SA rekeying this IKE SA (section 1.3.2).
    RekeyIke(Box<IkeRekeyRequest>),
}

#[derive(Debug)]
pub(super) struct Outstanding {
    message_id: u32,
    exchange: ExchangeType,
    purpose: Purpose,
    bytes: Vec<u8>,
    retransmissions: u32,
    deadline: Instant,
}

/// The message windows and keys shared by both roles.
#[derive(Debug)]
pub(super) struct SaCore {
    pub(super) original_initiator: bool,
    pub(super) spi_i: u64,
    pub(super) spi_r: u64,
    pub(super) keys: IkeSaKeys,
    /// Whether we send on port 4500 (section 2.23).
    pub(super) port_4500: bool,
    pub(super) policy: RetransmitPolicy,
    /// The message ID the peer's next request must carry.
    pub(super) next_peer_request: u32,
    /// Our last response and its message ID, for a retransmitted request (section 2.1).
    pub(super) last_response: Option<(u32, Vec<u8>)>,
    pub(super) next_request: u32,
    pub(super) outstanding: Option<Outstanding>,
    pub(super) closed: bool,
}

/// An authentic, new message from the peer.
pub(super) enum Incoming {
    Request(IkeMessage),
    /// The response to our outstanding request, with what it was for.
    Response(IkeMessage, Purpose),
}

/// What became of a datagram given to [`SaCore::receive`].
pub(super) enum Receipt {
    /// A new request, or the response we waited for: the caller acts on it.
    Fresh(Incoming),
    /// An authentic retransmission of the peer's last request, answered from the cache.
    Repeated,
    /// An authentic new request whose payloads do not parse, answered with this error
    /// notify (UNSUPPORTED_CRITICAL_PAYLOAD naming the payload type, or INVALID_SYNTAX;
    /// sections 2.5 and 2.21.2) of this exchange.
    Malformed(NotifyType, ExchangeType),
    /// Dropped (a [`Event::Discarded`] says why).
    Dropped,
}

impl Receipt {
    /// Whether the datagram was authentic: only then may the peer's address change
    /// (section 2.23).
    pub(super) fn authentic(&self) -> bool {
        !matches!(self, Receipt::Dropped)
    }
}

impl SaCore {
    /// The core of a new IKE SA whose IKE_SA_INIT is done: our next request is
    /// `next_request`, the peer's is `next_peer_request`.
    pub(super) fn new(
        original_initiator: bool,
        (spi_i, spi_r): (u64, u64),
        keys: IkeSaKeys,
        policy: RetransmitPolicy,
        (next_request, next_peer_request): (u32, u32),
    ) -> Self {
        SaCore {
            original_initiator,
            spi_i,
            spi_r,
            keys,
            port_4500: false,
            policy,
            next_peer_request,
            last_response: None,
            next_request,
            outstanding: None,
            closed: false,
        }
    }

    fn our_sk(&self) -> SkKeys {
        if self.original_initiator {
            self.keys.initiator_sk()
        } else {
            self.keys.responder_sk()
        }
    }

    fn peer_sk(&self) -> SkKeys {
        if self.original_initiator {
            self.keys.responder_sk()
        } else {
            self.keys.initiator_sk()
        }
    }

    pub(super) fn message(
        &self,
        exchange_type: ExchangeType,
        response: bool,
        message_id: u32,
        payloads: Vec<Payload>,
    ) -> IkeMessage {
        IkeMessage {
            initiator_spi: self.spi_i,
            responder_spi: self.spi_r,
            exchange_type,
            flags: Flags {
                initiator: self.original_initiator,
                version: false,
                response,
            },
            message_id,
            payloads,
        }
    }

    fn send(&self, bytes: Vec<u8>, out: &mut Vec<Output>) {
        out.push(Output::Send {
            bytes,
            port_4500: self.port_4500,
        });
    }

    /// Seals and sends a response, and keeps it for retransmitted requests.
    pub(super) fn respond(
        &mut self,
        exchange: ExchangeType,
        message_id: u32,
        payloads: Vec<Payload>,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) {
        let m = self.message(exchange, true, message_id, payloads);
        match self.our_sk().seal(&m, rng) {
            Ok(bytes) => {
                self.last_response = Some((message_id, bytes.clone()));
                self.send(bytes, out);
            }
            Err(e) => out.push(Output::Event(Event::Discarded(Discard::Sk(e)))),
        }
    }

    /// Seals and sends a request of ours. One request is outstanding at a time (window 1).
    pub(super) fn request(
        &mut self,
        exchange: ExchangeType,
        payloads: Vec<Payload>,
        purpose: Purpose,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) {
        let message_id = self.next_request;
        let m = self.message(exchange, false, message_id, payloads);
        match self.our_sk().seal(&m, rng) {
            Ok(bytes) => {
                self.next_request += 1;
                self.outstanding = Some(Outstanding {
                    message_id,
                    exchange,
                    purpose,
                    bytes: bytes.clone(),
                    retransmissions: 0,
                    deadline: now + self.policy.initial,
                });
                self.send(bytes, out);
            }
            Err(e) => out.push(Output::Event(Event::Discarded(Discard::Sk(e)))),
        }
    }

    pub(super) fn close(&mut self, reason: CloseReason, out: &mut Vec<Output>) {
        if !self.closed {
            self.closed = true;
            self.outstanding = None;
            out.push(Output::Event(Event::Closed(reason)));
        }
    }

    /// Classifies a datagram: a new request, the response to our outstanding request, a
    /// retransmitted request (answered here from the cache), or something to drop.
    pub(super) fn receive(
        &mut self,
        datagram: &[u8],
        via_4500: bool,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) -> Receipt {
        let discard = |d: Discard, out: &mut Vec<Output>| {
            out.push(Output::Event(Event::Discarded(d)));
            Receipt::Dropped
        };
        if self.closed {
            return discard(Discard::Unexpected("IKE SA closed"), out);
        }
        let header = match IkeHeader::new_checked(datagram).and_then(|h| HeaderRepr::parse(&h)) {
            Ok(h) => h,
            Err(e) => return discard(Discard::Wire(e), out),
        };
        if header.initiator_spi != self.spi_i || header.responder_spi != self.spi_r {
            return discard(Discard::WrongSpi, out);
        }
        if header.flags.initiator == self.original_initiator {
            return discard(Discard::Unexpected("message from our own role"), out);
        }
        let id = header.message_id;
        if header.exchange_type == ExchangeType::IkeSaInit {
            // Past IKE_SA_INIT: a late copy of it (either way) is out of window.
            return discard(Discard::UnexpectedMessageId(id), out);
        }
        // Only an authenticated message moves us to port 4500 (section 2.23).
        let float = |core: &mut SaCore| core.port_4500 |= via_4500;
        if header.flags.response {
            let Some(o) = &self.outstanding else {
                return discard(Discard::UnexpectedMessageId(id), out);
            };
            if o.message_id != id || o.exchange != header.exchange_type {
                return discard(Discard::UnexpectedMessageId(id), out);
            }
            return match self.peer_sk().open(datagram) {
                Ok(m) => {
                    let Some(o) = self.outstanding.take() else {
                        return discard(Discard::UnexpectedMessageId(id), out);
                    };
                    float(self);
                    Receipt::Fresh(Incoming::Response(m, o.purpose))
                }
                Err(e) => discard(Discard::Sk(e), out),
            };
        }
        let retransmission = matches!(&self.last_response, Some((last, _)) if *last == id);
        if id != self.next_peer_request && !retransmission {
            return discard(Discard::UnexpectedMessageId(id), out);
        }
        let m = match self.peer_sk().open(datagram) {
            Ok(m) => m,
            Err(SkError::InnerPayloads(e)) if !retransmission => {
                // Authentic (the ICV held) but not parseable: the request is refused as a
                // whole with the notify its error names (sections 2.5, 2.21.2).
                float(self);
                self.next_peer_request += 1;
                let notify = e.notify_type();
                let data = match e {
                    WireError::UnsupportedCriticalPayload(t) => vec![t],
                    _ => Vec::new(),
                };
                let answer = vec![Payload::Notify(NotifyPayload::new(notify, data))];
                self.respond(header.exchange_type, id, answer, rng, out);
                out.push(Output::Event(Event::Discarded(Discard::Wire(e))));
                return Receipt::Malformed(notify, header.exchange_type);
            }
            Err(e) => return discard(Discard::Sk(e), out),
        };
        float(self);
        if retransmission {
            if let Some((_, bytes)) = &self.last_response {
                self.send(bytes.clone(), out);
            }
            return Receipt::Repeated;
        }
        self.next_peer_request += 1;
        Receipt::Fresh(Incoming::Request(m))
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.outstanding.as_ref().map(|o| o.deadline)
    }

    /// Retransmits our outstanding request when its deadline passed, or closes the SA
    /// when its retransmissions are spent.
    pub(super) fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        let policy = self.policy;
        let port_4500 = self.port_4500;
        let Some(o) = self.outstanding.as_mut() else {
            return;
        };
        if now < o.deadline {
            return;
        }
        if o.retransmissions >= policy.max_retransmissions {
            self.close(CloseReason::Timeout, out);
            return;
        }
        o.retransmissions += 1;
        o.deadline = now + backoff(policy.initial, o.retransmissions);
        out.push(Output::Send {
            bytes: o.bytes.clone(),
            port_4500,
        });
    }

    /// Answers an INFORMATIONAL request (liveness check or Delete, section 1.4.1).
    pub(super) fn informational(
        &mut self,
        m: &IkeMessage,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) {
        let delete_ike = deletes_ike(m);
        self.respond(ExchangeType::Informational, m.message_id, vec![], rng, out);
        if delete_ike {
            self.close(CloseReason::DeletedByPeer, out);
        } else {
            out.push(Output::Event(Event::Alive));
        }
    }

    /// Sends an empty INFORMATIONAL request (a liveness check, section 2.4) unless a
    /// request of ours is already outstanding.
    pub(super) fn check_liveness(
        &mut self,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) {
        if self.outstanding.is_none() && !self.closed {
            self.request(
                ExchangeType::Informational,
                vec![],
                Purpose::Liveness,
                now,
                rng,
                out,
            );
        }
    }

    /// Whether a request of ours is outstanding (the window is full).
    pub(super) fn busy(&self) -> bool {
        self.outstanding.is_some()
    }

    /// What our outstanding request is for.
    pub(super) fn purpose(&self) -> Option<&Purpose> {
        self.outstanding.as_ref().map(|o| &o.purpose)
    }

    /// Answers a request with one error notify (with `data`) and changes nothing else.
    pub(super) fn refuse(
        &mut self,
        m: &IkeMessage,
        notify: NotifyPayload,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) {
        self.respond(
            m.exchange_type,
            m.message_id,
            vec![Payload::Notify(notify)],
            rng,
            out,
        );
    }

    /// The record of this IKE SA for Wireshark's IKEv2 decryption table.
    pub(super) fn keylog(&self) -> String {
        self.keys
            .wireshark_decryption_record(self.spi_i, self.spi_r)
    }

    /// Our SPI of this IKE SA: the one the peer's messages name us by.
    pub(super) fn our_spi(&self) -> u64 {
        if self.original_initiator {
            self.spi_i
        } else {
            self.spi_r
        }
    }

    /// Whether a header names this IKE SA.
    pub(super) fn owns(&self, header: &HeaderRepr) -> bool {
        header.initiator_spi == self.spi_i && header.responder_spi == self.spi_r
    }

    /// Sends an INFORMATIONAL with Delete of the IKE SA and closes at once: the peer's
    /// answer is not awaited (section 1.4.1 lets the deleting side forget the SA).
    pub(super) fn delete(&mut self, now: Instant, rng: &mut dyn Random, out: &mut Vec<Output>) {
        self.delete_because(CloseReason::Deleted, now, rng, out);
    }

    /// [`SaCore::delete`], closing with `reason`.
    pub(super) fn delete_because(
        &mut self,
        reason: CloseReason,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) {
        if self.closed {
            return;
        }
        self.outstanding = None;
        self.request(
            ExchangeType::Informational,
            vec![delete_ike()],
            Purpose::DeleteIke,
            now,
            rng,
            out,
        );
        self.close(reason, out);
    }

    /// What the responder's AUTH covers (section 2.15): its IKE_SA_INIT response, the
    /// initiator's nonce and prf(SK_pr, IDr').
    pub(super) fn responder_signed_octets(
        &self,
        init_response: &[u8],
        ni: &[u8],
        idr: &Identification,
    ) -> Vec<u8> {
        let prf = self.keys.suite().prf;
        signed_octets(prf, init_response, ni, &self.keys.sk_pr, &idr.body_bytes())
    }

    /// What the initiator's AUTH covers (section 2.15): its IKE_SA_INIT request, the
    /// responder's nonce and prf(SK_pi, IDi').
    pub(super) fn initiator_signed_octets(
        &self,
        init_request: &[u8],
        nr: &[u8],
        idi: &Identification,
    ) -> Vec<u8> {
        let prf = self.keys.suite().prf;
        signed_octets(prf, init_request, nr, &self.keys.sk_pi, &idi.body_bytes())
    }

    pub(super) fn child_keys(
        &self,
        esp: &EspSuite,
        ni: &[u8],
        nr: &[u8],
    ) -> Result<ChildSaKeys, CryptoError> {
        ChildSaKeys::derive(&self.keys, esp, None, ni, nr)
    }
}

/// Whether a request deletes the IKE SA that carries it (section 1.4.1).
pub(super) fn deletes_ike(m: &IkeMessage) -> bool {
    m.payloads
        .iter()
        .any(|p| matches!(p, Payload::Delete(d) if d.protocol_id == ProtocolId::Ike))
}

/// A Delete payload for the IKE SA that carries it (section 3.11).
pub(super) fn delete_ike() -> Payload {
    Payload::Delete(DeletePayload {
        protocol_id: ProtocolId::Ike,
        spis: vec![],
    })
}

/// The wait before retransmission `n` + 1: doubling from `initial`, at most 1024 times it.
pub(super) fn backoff(initial: Duration, n: u32) -> Duration {
    initial.saturating_mul(1 << n.min(10))
}

/// The first error notify of a message.
pub(super) fn notify_of(m: &IkeMessage) -> Option<NotifyType> {
    m.notifies().map(|n| n.notify_type).find(|t| t.is_error())
}

/// A random SPI, never zero (section 3.1: zero means "not yet known").
pub(super) fn nonzero_spi(rng: &mut dyn Random) -> u64 {
    loop {
        let mut b = [0u8; 8];
        rng.fill(&mut b);
        let spi = u64::from_be_bytes(b);
        if spi != 0 {
            return spi;
        }
    }
}

/// A 32-octet nonce (section 2.10: at least half the PRF key size, at least 16 octets).
pub(super) fn nonce(rng: &mut dyn Random) -> Vec<u8> {
    let mut n = vec![0u8; 32];
    rng.fill(&mut n);
    n
}

/// The NAT_DETECTION_SOURCE_IP and _DESTINATION_IP notifies (section 2.23).
pub(super) fn nat_detection(
    spi_i: u64,
    spi_r: u64,
    source: SocketAddr,
    destination: SocketAddr,
) -> [Payload; 2] {
    [
        Payload::Notify(NotifyPayload::new(
            NotifyType::NatDetectionSourceIp,
            nat_detection_hash(spi_i, spi_r, source).to_vec(),
        )),
        Payload::Notify(NotifyPayload::new(
            NotifyType::NatDetectionDestinationIp,
            nat_detection_hash(spi_i, spi_r, destination).to_vec(),
        )),
    ]
}

/// Whether the peer's NAT detection notifies disagree with the addresses the datagram
/// really had: a NAT between us (section 2.23).
pub(super) fn nat_detected(
    m: &IkeMessage,
    spi_r: u64,
    source: SocketAddr,
    destination: SocketAddr,
) -> bool {
    let find = |t| m.notifies().filter(move |n| n.notify_type == t);
    let src = nat_detection_hash(m.initiator_spi, spi_r, source);
    let dst = nat_detection_hash(m.initiator_spi, spi_r, destination);
    let source_ok = find(NotifyType::NatDetectionSourceIp).any(|n| n.data == src);
    let destination_ok = find(NotifyType::NatDetectionDestinationIp).any(|n| n.data == dst);
    let present = find(NotifyType::NatDetectionSourceIp).next().is_some();
    present && !(source_ok && destination_ok)
}
