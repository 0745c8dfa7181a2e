//! The responder's IKE SA (RFC 7296 sections 1.2, 2.15, 2.16, RFC 5998): one peer's IKE
//! SA from its IKE_SA_INIT response on. A UE authenticates with EAP (EAP-only, or our
//! certificate plus EAP) in an IKE_AUTH whose EAP the application relays to the AAA; a
//! node (a MAG toward its LMA, RFC 5213 section 4) authenticates with a pre-shared key
//! or a certificate in one IKE_AUTH round trip that this SA settles by itself, with a
//! CHILD_SA in tunnel or transport mode narrowed to our [`ChildPolicy`]. Once established
//! the SA is live (`rekey`): CREATE_CHILD_SA rekeys, liveness checks, Delete.
//!
//! A `ResponderSa` is made and owned by the [`Endpoint`](super::endpoint::Endpoint),
//! which finds it by our SPI and passes the application's calls on; the windows,
//! retransmissions and SK protection are the shared SA core ([`super::sa`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::auth::{LocalAuth, PeerAuth, Signer};
use super::child::{narrow, ChildPolicy, Lifetimes, Mode};
use super::crypto::{EspSuite, IkeSuite, Random};
use super::keys::{shared_key_auth, verify_shared_key_auth, IkeSaKeys};
use super::rekey::{Ctx, Live, Params};
use super::sa::{
    ChildSa, CloseReason, Discard, Established, Event, Incoming, Output, PeerAuthMethod, Receipt,
    RetransmitPolicy, SaCore,
};
use super::wire::*;

/// The ePDG's IKE configuration.
#[derive(Debug, Clone)]
pub struct ResponderConfig {
    /// IKE suites in our preference order.
    pub suites: Vec<IkeSuite>,
    pub esp_suites: Vec<EspSuite>,
    /// Above this many half-open IKE SAs, IKE_SA_INIT requests must carry a cookie
    /// (section 2.6).
    pub cookie_threshold: usize,
    /// Our identity in IDr when the UE sent none.
    pub identity: Identification,
    /// A new IKE SA that has not finished IKE_AUTH by then is dropped (with its UE's
    /// AAA session and binding, by the application on [`CloseReason::Timeout`]).
    pub half_open_timeout: Duration,
    /// Our certificate and key, for UEs that do not offer EAP-only authentication
    /// (RFC 5998). Without one such UEs get AUTHENTICATION_FAILED.
    pub signer: Option<Arc<dyn Signer>>,
    /// Take EAP-only authentication (RFC 5998) when the UE offers it; false: always
    /// authenticate with [`ResponderConfig::signer`] (TS 33.402 section 8.2.2), even to
    /// UEs that offer EAP-only (strongSwan always does).
    pub accept_eap_only: bool,
    pub retransmit: RetransmitPolicy,
    /// A liveness check (an empty INFORMATIONAL request, section 2.4) of every
    /// established IKE SA this often; an unanswered one ends the SA with
    /// [`CloseReason::Timeout`]. None: never.
    pub liveness_interval: Option<Duration>,
    /// The nodes that may authenticate with a pre-shared key or a certificate (a MAG at
    /// its LMA); empty: only UEs with EAP. A node authenticated with a key gets our AUTH
    /// with the same key; one with a certificate gets [`ResponderConfig::signer`]'s.
    pub peers: PeerAuth,
    /// What such a node's CHILD_SA may be (UEs' are the application's to grant).
    pub peer_child: ChildPolicy,
    /// When we rekey (and give up) IKE SAs and CHILD_SAs on our own.
    pub lifetimes: Lifetimes,
}

impl Default for ResponderConfig {
    fn default() -> Self {
        ResponderConfig {
            suites: IkeSuite::defaults(),
            esp_suites: EspSuite::defaults(),
            cookie_threshold: 1000,
            identity: Identification::Fqdn("epdg".into()),
            half_open_timeout: Duration::from_secs(60),
            signer: None,
            accept_eap_only: true,
            retransmit: RetransmitPolicy::default(),
            liveness_interval: None,
            peers: PeerAuth::default(),
            peer_child: ChildPolicy::default(),
            lifetimes: Lifetimes::default(),
        }
    }
}

impl ResponderConfig {
    /// What the live SAs read of it.
    fn params(&self) -> Params<'_> {
        Params {
            ike_suites: &self.suites,
            esp_suites: &self.esp_suites,
            lifetimes: &self.lifetimes,
            transport_mode: self.peer_child.transport_mode,
        }
    }
}

/// The UE's identities and requests from its first IKE_AUTH message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// IDi: the NAI in S2b.
    pub idi: Identification,
    /// IDr: the APN in S2b.
    pub idr: Option<Identification>,
    pub cp_request: Option<CpPayload>,
    /// The UE offered EAP-only authentication and we take it: no certificate, no
    /// signature from us.
    pub eap_only: bool,
    pub initial_contact: bool,
    /// The ESP suite we chose among the UE's proposals.
    pub esp: EspSuite,
    pub tsi: Vec<TrafficSelector>,
    pub tsr: Vec<TrafficSelector>,
}

/// What the ePDG grants when EAP succeeded (after the PBA): the CFG_REPLY attributes and
/// the traffic selectors of the CHILD_SA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acceptance {
    pub cp_reply: Vec<ConfigAttribute>,
    pub tsi: Vec<TrafficSelector>,
    pub tsr: Vec<TrafficSelector>,
}

/// What IKE_SA_INIT settled, for [`ResponderSa::new`].
#[derive(Debug)]
pub(super) struct InitDone {
    pub(super) spi_i: u64,
    pub(super) spi_r: u64,
    pub(super) keys: IkeSaKeys,
    pub(super) nat: bool,
    pub(super) init_request: Vec<u8>,
    pub(super) init_response: Vec<u8>,
    pub(super) ni: Vec<u8>,
    pub(super) nr: Vec<u8>,
}

#[derive(Debug)]
enum ResponderState {
    AwaitingIkeAuth,
    /// The application owes the answer to request `message_id`.
    AwaitingApp {
        message_id: u32,
        request: AuthRequest,
        peer_spi: u32,
        proposal_number: u8,
    },
    AwaitingEapResponse {
        request: AuthRequest,
        peer_spi: u32,
        proposal_number: u8,
    },
    AwaitingAuth {
        request: AuthRequest,
        peer_spi: u32,
        proposal_number: u8,
        msk: Vec<u8>,
        acceptance: Acceptance,
        inbound_spi: u32,
    },
    Established(Box<Live>),
}

/// One IKE SA at the ePDG, from its IKE_SA_INIT response on.
#[derive(Debug)]
pub struct ResponderSa {
    core: SaCore,
    half_open_deadline: Option<Instant>,
    config: Arc<ResponderConfig>,
    nat: bool,
    init_request: Vec<u8>,
    init_response: Vec<u8>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    state: ResponderState,
}

impl ResponderSa {
    /// The half-open SA IKE_SA_INIT made at `now`: the peer's next request is IKE_AUTH
    /// (message ID 1), and IKE_AUTH must finish by the half-open timeout.
    pub(super) fn new(config: Arc<ResponderConfig>, init: InitDone, now: Instant) -> Self {
        ResponderSa {
            core: SaCore::new(
                false,
                (init.spi_i, init.spi_r),
                init.keys,
                config.retransmit,
                (0, 1),
            ),
            half_open_deadline: Some(now + config.half_open_timeout),
            nat: init.nat,
            init_request: init.init_request,
            init_response: init.init_response,
            ni: init.ni,
            nr: init.nr,
            state: ResponderState::AwaitingIkeAuth,
            config,
        }
    }

    pub fn initiator_spi(&self) -> u64 {
        self.core.spi_i
    }

    pub fn responder_spi(&self) -> u64 {
        self.core.spi_r
    }

    pub fn keys(&self) -> &IkeSaKeys {
        &self.core.keys
    }

    /// Whether the IKE_SA_INIT showed a NAT between the UE and us.
    pub fn nat_detected(&self) -> bool {
        self.nat
    }

    /// The IKE_SA_INIT request that made this SA, until IKE_AUTH is done (empty after).
    pub(super) fn init_request(&self) -> &[u8] {
        &self.init_request
    }

    /// Our IKE_SA_INIT response, until IKE_AUTH is done (empty after).
    pub(super) fn init_response(&self) -> &[u8] {
        &self.init_response
    }

    /// Whether we send on port 4500 (the UE moved there, section 2.23).
    pub fn uses_port_4500(&self) -> bool {
        self.core.port_4500
    }

    /// Not yet authenticated (counts toward the cookie threshold).
    pub fn is_half_open(&self) -> bool {
        !matches!(self.state, ResponderState::Established(_)) && !self.core.closed
    }

    fn live(&self) -> Option<&Live> {
        match &self.state {
            ResponderState::Established(live) => Some(live),
            _ => None,
        }
    }

    /// The peer's identity and how it proved it, once established.
    pub fn peer(&self) -> Option<(&Identification, PeerAuthMethod)> {
        self.live().map(Live::peer)
    }

    /// The CHILD_SAs in place (none before IKE_AUTH is done).
    pub fn children(&self) -> impl Iterator<Item = &ChildSa> {
        self.live().into_iter().flat_map(Live::children)
    }

    /// Our SPIs of every IKE SA of this session the peer may still address: the current
    /// one, and one replaced by a rekey until its Delete is done.
    pub(super) fn our_spis(&self) -> impl Iterator<Item = u64> + '_ {
        std::iter::once(self.core.our_spi())
            .chain(self.live().into_iter().flat_map(Live::other_spis))
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let half_open = self.half_open_deadline.filter(|_| self.is_half_open());
        [
            self.core.poll_timeout(),
            half_open,
            self.live().and_then(Live::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Retransmits our outstanding request, rekeys what is due, or ends the SA when its
    /// retransmissions are spent, its lifetime is over, or IKE_AUTH did not finish within
    /// [`ResponderConfig::half_open_timeout`].
    pub(super) fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        if self.is_half_open() && self.half_open_deadline.is_some_and(|d| ctx.now >= d) {
            self.core.close(CloseReason::Timeout, ctx.out);
            return;
        }
        match &mut self.state {
            ResponderState::Established(live) => {
                live.handle_timeout(&mut self.core, self.config.params(), ctx)
            }
            _ => self.core.handle_timeout(ctx.now, ctx.out),
        }
    }

    /// Starts a rekey of the CHILD_SA with this inbound SPI. False if there is none.
    pub(super) fn rekey_child(&mut self, inbound_spi: u32, ctx: &mut Ctx<'_>) -> bool {
        match &mut self.state {
            ResponderState::Established(live) => {
                live.rekey_child(&mut self.core, inbound_spi, self.config.params(), ctx)
            }
            _ => false,
        }
    }

    /// Starts a rekey of the IKE SA. False before it is established.
    pub(super) fn rekey_ike(&mut self, ctx: &mut Ctx<'_>) -> bool {
        match &mut self.state {
            ResponderState::Established(live) => {
                live.rekey_ike(&mut self.core, self.config.params(), ctx);
                true
            }
            _ => false,
        }
    }

    /// Deletes the IKE SA (say, when the binding behind it is revoked): sends an
    /// INFORMATIONAL with Delete and closes.
    pub(super) fn delete(&mut self, now: Instant, rng: &mut dyn Random, out: &mut Vec<Output>) {
        self.core.delete(now, rng, out);
    }

    fn fail(
        &mut self,
        message_id: u32,
        notify: NotifyType,
        eap: Option<Vec<u8>>,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) {
        let mut payloads = Vec::new();
        if let Some(eap) = eap {
            payloads.push(Payload::Eap(eap));
        }
        payloads.push(Payload::Notify(NotifyPayload::new(notify, vec![])));
        self.core
            .respond(ExchangeType::IkeAuth, message_id, payloads, rng, out);
        self.core.close(CloseReason::NotifySent(notify), out);
    }

    /// A datagram for this SA (the endpoint found it by our SPI), received on port 4500
    /// or not. Returns whether it was authentic, which alone lets the peer's address
    /// change (section 2.23).
    pub(super) fn handle(&mut self, datagram: &[u8], via_4500: bool, ctx: &mut Ctx<'_>) -> bool {
        if let ResponderState::Established(live) = &mut self.state {
            let params = self.config.params();
            return live.handle(&mut self.core, datagram, via_4500, params, ctx);
        }
        let receipt = self.core.receive(datagram, via_4500, ctx.rng, ctx.out);
        let authentic = receipt.authentic();
        let incoming = match receipt {
            Receipt::Fresh(incoming) => incoming,
            Receipt::Malformed(notify, ExchangeType::IkeAuth) => {
                // Refused as a whole, and no IKE SA comes of it (section 2.21.2).
                self.core.close(CloseReason::NotifySent(notify), ctx.out);
                return authentic;
            }
            _ => return authentic,
        };
        match incoming {
            Incoming::Response(m, _) => {
                if m.exchange_type == ExchangeType::Informational {
                    ctx.out.push(Output::Event(Event::Alive));
                }
            }
            Incoming::Request(m) => match m.exchange_type {
                ExchangeType::Informational => self.core.informational(&m, ctx.rng, ctx.out),
                ExchangeType::IkeAuth => self.ike_auth(m, ctx),
                // Nothing but IKE_AUTH before IKE_AUTH is done (section 1.2).
                _ => self.core.refuse(
                    &m,
                    NotifyPayload::new(NotifyType::InvalidSyntax, vec![]),
                    ctx.rng,
                    ctx.out,
                ),
            },
        }
        authentic
    }

    /// IKE_AUTH is done: the SA goes live with `child` and tells the application.
    fn establish(
        &mut self,
        child: ChildSa,
        peer_id: Identification,
        peer_auth: PeerAuthMethod,
        ctx: &mut Ctx<'_>,
    ) {
        // Both AUTH payloads are done: free the IKE_SA_INIT messages they signed (about
        // 650 octets per attached UE).
        self.init_request = Vec::new();
        self.init_response = Vec::new();
        let live = Live::new(
            false,
            child.clone(),
            (peer_id.clone(), peer_auth),
            self.config.params(),
            ctx.now,
            ctx.rng,
        );
        self.state = ResponderState::Established(Box::new(live));
        ctx.out
            .push(Output::Event(Event::Established(Box::new(Established {
                child,
                cp_reply: None,
                peer_id,
                peer_auth,
                keylog: self.core.keylog(),
            }))));
    }

    /// A node's IKE_AUTH (AUTH in the first message): its key or certificate checked,
    /// ours sent, the CHILD_SA made, all in one round trip (section 1.2).
    fn node_ike_auth(&mut self, m: &IkeMessage, ctx: &mut Ctx<'_>) {
        let id = m.message_id;
        let fail =
            |sa: &mut Self, notify, ctx: &mut Ctx<'_>| sa.fail(id, notify, None, ctx.rng, ctx.out);
        let (mut idi, mut auth, mut sa, mut tsi, mut tsr) = (None, None, None, None, None);
        for p in &m.payloads {
            match p {
                Payload::IdI(i) => idi = Some(i),
                Payload::Auth(a) => auth = Some(a),
                Payload::Sa(s) => sa = Some(s),
                Payload::TsI(t) => tsi = Some(t),
                Payload::TsR(t) => tsr = Some(t),
                _ => {}
            }
        }
        let certificates = m.certificates();
        let (Some(idi), Some(auth), Some(sa), Some(tsi), Some(tsr)) = (idi, auth, sa, tsi, tsr)
        else {
            return fail(self, NotifyType::InvalidSyntax, ctx);
        };
        let prf = self.core.keys.suite().prf;
        let octets = self
            .core
            .initiator_signed_octets(&self.init_request, &self.nr, idi);
        let config = Arc::clone(&self.config);
        let Some(peer_auth) = config.peers.verify(prf, idi, &certificates, auth, &octets) else {
            return fail(self, NotifyType::AuthenticationFailed, ctx);
        };
        // We answer a key with the same key, a certificate with ours.
        let local = match (peer_auth, &config.signer) {
            (PeerAuthMethod::Certificate, Some(signer)) => {
                Some(LocalAuth::Certificate(Arc::clone(signer)))
            }
            _ => config.peers.psk(idi).cloned().map(LocalAuth::Psk),
        };
        let idr = config.identity.clone();
        let our_octets = self
            .core
            .responder_signed_octets(&self.init_response, &self.ni, &idr);
        let Some(Ok((certificate, our_auth))) = local.and_then(|l| l.prove(prf, &our_octets))
        else {
            return fail(self, NotifyType::AuthenticationFailed, ctx);
        };
        let Some((number, peer_spi, esp)) = EspSuite::select(&config.esp_suites, sa) else {
            return fail(self, NotifyType::NoProposalChosen, ctx);
        };
        let policy = &config.peer_child;
        let (tsi, tsr) = (
            narrow(tsi, &policy.remote_ts),
            narrow(tsr, &policy.local_ts),
        );
        if tsi.is_empty() || tsr.is_empty() {
            return fail(self, NotifyType::TsUnacceptable, ctx);
        }
        let transport = policy.transport_mode
            && m.notifies()
                .any(|n| n.notify_type == NotifyType::UseTransportMode);
        let inbound_spi = ctx.spis.esp_spi(ctx.rng);
        let Ok(keys) = self.core.child_keys(&esp, &self.ni, &self.nr) else {
            return fail(self, NotifyType::TemporaryFailure, ctx);
        };
        let mut payloads = vec![Payload::IdR(idr)];
        payloads.extend(certificate.map(Payload::Cert));
        payloads.push(Payload::Auth(our_auth));
        payloads.push(Payload::Sa(SaPayload {
            proposals: vec![esp.proposal(number, inbound_spi)],
        }));
        payloads.push(Payload::TsI(tsi.clone()));
        payloads.push(Payload::TsR(tsr.clone()));
        if transport {
            payloads.push(Payload::Notify(NotifyPayload::new(
                NotifyType::UseTransportMode,
                vec![],
            )));
        }
        self.core
            .respond(ExchangeType::IkeAuth, id, payloads, ctx.rng, ctx.out);
        let child = ChildSa {
            suite: esp,
            inbound_spi,
            outbound_spi: peer_spi,
            keys,
            tsi,
            tsr,
            mode: Mode::of(transport),
        };
        self.establish(child, idi.clone(), peer_auth, ctx);
    }

    fn ike_auth(&mut self, m: IkeMessage, ctx: &mut Ctx<'_>) {
        let id = m.message_id;
        let (rng, out) = (&mut *ctx.rng, &mut *ctx.out);
        match std::mem::replace(&mut self.state, ResponderState::AwaitingIkeAuth) {
            ResponderState::AwaitingIkeAuth => {
                let (mut idi, mut idr, mut cp, mut sa, mut tsi, mut tsr) =
                    (None, None, None, None, None, None);
                let mut has_auth = false;
                for p in &m.payloads {
                    match p {
                        Payload::IdI(i) => idi = Some(i.clone()),
                        Payload::IdR(i) => idr = Some(i.clone()),
                        Payload::Cp(c) => cp = Some(c.clone()),
                        Payload::Sa(s) => sa = Some(s.clone()),
                        Payload::TsI(t) => tsi = Some(t.clone()),
                        Payload::TsR(t) => tsr = Some(t.clone()),
                        Payload::Auth(_) => has_auth = true,
                        _ => {}
                    }
                }
                let has = |t| m.notifies().any(|n| n.notify_type == t);
                let (Some(idi), Some(sa), Some(tsi), Some(tsr)) = (idi, sa, tsi, tsr) else {
                    return self.fail(id, NotifyType::InvalidSyntax, None, rng, out);
                };
                if has_auth && !self.config.peers.is_empty() {
                    // A node with a key or a certificate, not a UE with EAP.
                    return self.node_ike_auth(&m, ctx);
                }
                let eap_only = has(NotifyType::EapOnlyAuthentication)
                    && (self.config.accept_eap_only || self.config.signer.is_none());
                if has_auth || (!eap_only && self.config.signer.is_none()) {
                    // A UE must authenticate with EAP, and we need a certificate unless
                    // it accepts EAP-only authentication.
                    return self.fail(id, NotifyType::AuthenticationFailed, None, rng, out);
                }
                let Some((proposal_number, peer_spi, esp)) =
                    EspSuite::select(&self.config.esp_suites, &sa)
                else {
                    return self.fail(id, NotifyType::NoProposalChosen, None, rng, out);
                };
                let request = AuthRequest {
                    idi,
                    idr,
                    cp_request: cp,
                    eap_only,
                    initial_contact: has(NotifyType::InitialContact),
                    esp,
                    tsi,
                    tsr,
                };
                out.push(Output::Event(Event::AuthRequested(request.clone())));
                self.state = ResponderState::AwaitingApp {
                    message_id: id,
                    request,
                    peer_spi,
                    proposal_number,
                };
            }
            ResponderState::AwaitingEapResponse {
                request,
                peer_spi,
                proposal_number,
            } => {
                let eap = m.payloads.iter().find_map(|p| match p {
                    Payload::Eap(e) => Some(e.clone()),
                    _ => None,
                });
                let Some(eap) = eap else {
                    return self.fail(id, NotifyType::InvalidSyntax, None, rng, out);
                };
                out.push(Output::Event(Event::EapResponse(eap)));
                self.state = ResponderState::AwaitingApp {
                    message_id: id,
                    request,
                    peer_spi,
                    proposal_number,
                };
            }
            ResponderState::AwaitingAuth {
                request,
                peer_spi,
                proposal_number,
                msk,
                acceptance,
                inbound_spi,
            } => {
                let auth = m.payloads.iter().find_map(|p| match p {
                    Payload::Auth(a) => Some(a.clone()),
                    _ => None,
                });
                let prf = self.core.keys.suite().prf;
                let octets =
                    self.core
                        .initiator_signed_octets(&self.init_request, &self.nr, &request.idi);
                let ok = auth.as_ref().is_some_and(|a| {
                    a.method == AuthMethod::SharedKeyMessageIntegrityCode
                        && verify_shared_key_auth(prf, &msk, &octets, &a.data)
                });
                if !ok {
                    return self.fail(id, NotifyType::AuthenticationFailed, None, rng, out);
                }
                let idr = self.our_idr(&request);
                let our_octets =
                    self.core
                        .responder_signed_octets(&self.init_response, &self.ni, &idr);
                let keys = match self.core.child_keys(&request.esp, &self.ni, &self.nr) {
                    Ok(k) => k,
                    Err(_) => return self.fail(id, NotifyType::TemporaryFailure, None, rng, out),
                };
                let payloads = vec![
                    Payload::Auth(AuthPayload {
                        method: AuthMethod::SharedKeyMessageIntegrityCode,
                        data: shared_key_auth(prf, &msk, &our_octets),
                    }),
                    Payload::Cp(CpPayload {
                        cfg_type: CfgType::CfgReply,
                        attributes: acceptance.cp_reply.clone(),
                    }),
                    Payload::Sa(SaPayload {
                        proposals: vec![request.esp.proposal(proposal_number, inbound_spi)],
                    }),
                    Payload::TsI(acceptance.tsi.clone()),
                    Payload::TsR(acceptance.tsr.clone()),
                ];
                self.core
                    .respond(ExchangeType::IkeAuth, id, payloads, rng, out);
                let child = ChildSa {
                    suite: request.esp,
                    inbound_spi,
                    outbound_spi: peer_spi,
                    keys,
                    tsi: acceptance.tsi,
                    tsr: acceptance.tsr,
                    mode: Mode::Tunnel,
                };
                self.establish(child, request.idi, PeerAuthMethod::Eap, ctx);
            }
            other => {
                self.state = other;
                out.push(Output::Event(Event::Discarded(Discard::Unexpected(
                    "IKE_AUTH request in this state",
                ))));
            }
        }
    }

    /// The IDr we answer with. Authenticating with our certificate, it is our own identity
    /// (the one the certificate names; TS 33.402 section 8.2.2: "the ePDG sends its
    /// identity in the IDr payload"), whatever the UE asked for (the APN); RFC 7296
    /// section 2.5 lets it differ. With EAP-only authentication (RFC 5998) no certificate
    /// binds it, and we echo the UE's IDr, which an initiator that names its peer
    /// (strongSwan's `remote.id`) requires back.
    fn our_idr(&self, request: &AuthRequest) -> Identification {
        if !request.eap_only && self.config.signer.is_some() {
            return self.config.identity.clone();
        }
        request
            .idr
            .clone()
            .unwrap_or_else(|| self.config.identity.clone())
    }

    fn owed(&mut self) -> Option<(u32, AuthRequest, u32, u8)> {
        if self.core.closed {
            return None;
        }
        match std::mem::replace(&mut self.state, ResponderState::AwaitingIkeAuth) {
            ResponderState::AwaitingApp {
                message_id,
                request,
                peer_spi,
                proposal_number,
            } => Some((message_id, request, peer_spi, proposal_number)),
            other => {
                self.state = other;
                None
            }
        }
    }

    /// Sends an EAP request from the AAA to the UE. Returns false if no IKE_AUTH request
    /// is waiting for an answer.
    pub(super) fn send_eap(
        &mut self,
        eap: Vec<u8>,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) -> bool {
        let Some((message_id, request, peer_spi, proposal_number)) = self.owed() else {
            return false;
        };
        let mut payloads = Vec::new();
        if message_id == 1 {
            // The first answer names us and, unless the UE accepts EAP-only (RFC 5998),
            // proves it with our certificate and a signature (section 2.16).
            let idr = self.our_idr(&request);
            payloads.push(Payload::IdR(idr.clone()));
            if let (false, Some(signer)) = (request.eap_only, self.config.signer.clone()) {
                let octets = self
                    .core
                    .responder_signed_octets(&self.init_response, &self.ni, &idr);
                let Ok(signature) = signer.sign(&octets) else {
                    self.fail(message_id, NotifyType::AuthenticationFailed, None, rng, out);
                    return true;
                };
                payloads.push(Payload::Cert(signer.certificate()));
                payloads.push(Payload::Auth(AuthPayload {
                    method: signer.method(),
                    data: signature,
                }));
            }
        }
        payloads.push(Payload::Eap(eap));
        self.core
            .respond(ExchangeType::IkeAuth, message_id, payloads, rng, out);
        self.state = ResponderState::AwaitingEapResponse {
            request,
            peer_spi,
            proposal_number,
        };
        true
    }

    /// EAP succeeded and the application is ready (in S2b: after the PBA): sends the
    /// EAP-Success; the UE's AUTH is then checked with the MSK and answered with our AUTH
    /// and `acceptance`. `inbound_spi` is the ESP SPI we allocated.
    pub(super) fn eap_success(
        &mut self,
        eap_success: Vec<u8>,
        msk: Vec<u8>,
        acceptance: Acceptance,
        inbound_spi: u32,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) -> bool {
        let Some((message_id, request, peer_spi, proposal_number)) = self.owed() else {
            return false;
        };
        self.core.respond(
            ExchangeType::IkeAuth,
            message_id,
            vec![Payload::Eap(eap_success)],
            rng,
            out,
        );
        self.state = ResponderState::AwaitingAuth {
            request,
            peer_spi,
            proposal_number,
            msk,
            acceptance,
            inbound_spi,
        };
        true
    }

    /// Ends IKE_AUTH with an error notify (and an EAP-Failure if given), closing the SA.
    pub(super) fn reject(
        &mut self,
        notify: NotifyType,
        eap_failure: Option<Vec<u8>>,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) -> bool {
        let Some((message_id, ..)) = self.owed() else {
            return false;
        };
        self.fail(message_id, notify, eap_failure, rng, out);
        true
    }

    /// Sends a liveness check (an empty INFORMATIONAL request); [`Event::Alive`] follows
    /// its answer, [`CloseReason::Timeout`] its loss.
    pub(super) fn check_liveness(
        &mut self,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) {
        self.core.check_liveness(now, rng, out);
    }
}
