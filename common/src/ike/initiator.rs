//! The initiator's IKE SA (RFC 7296 sections 1.2, 2.6, 2.15, 2.16, RFC 5998):
//! IKE_SA_INIT (INVALID_KE_PAYLOAD retry, cookies, NAT detection), then IKE_AUTH either
//! as a UE (EAP, which the application answers with its USIM) or as a node (a MAG toward
//! its LMA, RFC 5213 section 4: a pre-shared key or a certificate, one round trip, the
//! CHILD_SA in transport mode if asked), with the shared windows, retransmissions and SK
//! protection of the SA core ([`super::sa`]); once established the SA is live (`rekey`)
//! (CREATE_CHILD_SA rekeys both ways, liveness, Delete).
//!
//! The UE emulator drives one `InitiatorSa` directly; a node's SAs toward its peers live
//! in its [`Endpoint`](super::endpoint::Endpoint) beside the SAs it answers
//! ([`Endpoint::initiate`](super::endpoint::Endpoint::initiate)).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::auth::{LocalAuth, PeerVerifier};
use super::child::{Lifetimes, Mode};
use super::crypto::{CryptoError, DhGroup, DhPrivate, EspSuite, IkeSuite, Random};
use super::keys::{shared_key_auth, verify_shared_key_auth, IkeSaKeys};
use super::rekey::{Ctx, Live, Params, RandomSpis, SpiSource};
use super::sa::{
    backoff, nat_detected, nat_detection, nonce, notify_of, ChildSa, CloseReason, Discard,
    Established, Event, Incoming, Output, PeerAuthMethod, Purpose, Receipt, RetransmitPolicy,
    SaCore,
};
use super::wire::*;

/// An initiator's IKE configuration: a UE's toward the ePDG, or a node's toward a peer.
#[derive(Debug, Clone)]
pub struct InitiatorConfig {
    /// Offered in this order; the first suite's group is guessed for KE.
    pub suites: Vec<IkeSuite>,
    pub esp_suites: Vec<EspSuite>,
    /// IDi: the NAI of a UE; a node's FQDN or address.
    pub idi: Identification,
    /// IDr: the APN of a UE; the peer a node expects.
    pub idr: Option<Identification>,
    pub cp_request: Vec<ConfigAttribute>,
    pub tsi: Vec<TrafficSelector>,
    pub tsr: Vec<TrafficSelector>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Move to port 4500 after IKE_SA_INIT even without a NAT.
    pub force_port_4500: bool,
    /// Offer EAP-only authentication (RFC 5998): the ePDG may then skip its certificate.
    pub eap_only: bool,
    /// Checks the responder's certificate AUTH, for the identity it names in IDr.
    /// Without one, only an EAP-only ePDG or a pre-shared key is accepted.
    pub peer_verifier: Option<Arc<dyn PeerVerifier>>,
    pub retransmit: RetransmitPolicy,
    /// How we prove our identity: EAP (a UE), or a pre-shared key (with which the
    /// responder must answer too) or a certificate (a node).
    pub auth: LocalAuth,
    /// Ask for a transport-mode CHILD_SA (USE_TRANSPORT_MODE, RFC 7296 section 1.3.1); a
    /// responder that answers in tunnel mode gets the IKE SA deleted.
    pub transport_mode: bool,
    /// When we rekey (and give up) the IKE SA and its CHILD_SAs on our own.
    pub lifetimes: Lifetimes,
    /// (In an endpoint) a liveness check this often once established (section 2.4).
    pub liveness_interval: Option<Duration>,
}

impl Default for InitiatorConfig {
    /// A UE's defaults: our default suites, EAP, every IPv4 and IPv6 address in both
    /// selectors; the identities and addresses are the caller's to fill in.
    fn default() -> Self {
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 500));
        InitiatorConfig {
            suites: IkeSuite::defaults(),
            esp_suites: EspSuite::defaults(),
            idi: Identification::Fqdn(String::new()),
            idr: None,
            cp_request: Vec::new(),
            tsi: vec![TrafficSelector::any_ipv4(), TrafficSelector::any_ipv6()],
            tsr: vec![TrafficSelector::any_ipv4(), TrafficSelector::any_ipv6()],
            local: unspecified,
            remote: unspecified,
            force_port_4500: false,
            eap_only: false,
            peer_verifier: None,
            retransmit: RetransmitPolicy::default(),
            auth: LocalAuth::Eap,
            transport_mode: false,
            lifetimes: Lifetimes::default(),
            liveness_interval: None,
        }
    }
}

impl InitiatorConfig {
    fn params(&self) -> Params<'_> {
        Params {
            ike_suites: &self.suites,
            esp_suites: &self.esp_suites,
            lifetimes: &self.lifetimes,
            transport_mode: self.transport_mode,
        }
    }

    /// A node, not a UE: it proves itself with a key or a certificate.
    fn is_node(&self) -> bool {
        !matches!(self.auth, LocalAuth::Eap)
    }
}

#[derive(Debug)]
enum InitiatorState {
    SentInit {
        dh: DhPrivate,
        cookie: Option<Vec<u8>>,
        retried_groups: Vec<DhGroup>,
    },
    SentAuth,
    AwaitingApp,
    SentEap,
    EapDone,
    SentAuthFinal {
        msk: Vec<u8>,
    },
    Established(Box<Live>),
    Closed,
}

/// The UE's IKE SA.
#[derive(Debug)]
pub struct InitiatorSa {
    config: InitiatorConfig,
    core: SaCore,
    ni: Vec<u8>,
    nr: Vec<u8>,
    init_request: Vec<u8>,
    init_response: Vec<u8>,
    esp_spi: u32,
    state: InitiatorState,
    init_deadline: Option<(Instant, u32)>,
    cookie_rounds: u32,
    /// The IDr of the responder's first IKE_AUTH response: its AUTH after EAP covers it
    /// (section 2.16), whatever IDr we asked for.
    responder_idr: Option<Identification>,
    /// The responder signed its first IKE_AUTH response with a certificate (EAP after).
    responder_signed: bool,
}

/// How many COOKIE answers in a row an initiator follows before giving up.
pub(super) const MAX_COOKIE_ROUNDS: u32 = 3;

impl InitiatorSa {
    /// Starts IKE_SA_INIT; the request is in `out`.
    pub fn start(
        config: InitiatorConfig,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) -> Result<Self, CryptoError> {
        Self::start_with(config, &mut RandomSpis, now, rng, out)
    }

    /// [`InitiatorSa::start`] with our IKE and ESP SPIs from `spis`.
    pub(super) fn start_with(
        config: InitiatorConfig,
        spis: &mut dyn SpiSource,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) -> Result<Self, CryptoError> {
        let first = *config
            .suites
            .first()
            .ok_or(CryptoError::NoProposalChosen("no IKE suite configured"))?;
        let dh = DhPrivate::generate(first.dh, rng)?;
        let spi_i = spis.ike_spi(rng);
        let esp_spi = spis.esp_spi(rng);
        // Replaced by the real keys when the IKE_SA_INIT response arrives.
        let placeholder = IkeSaKeys::derive(&first, &[0; 32], &[0; 16], &[0; 16], 0, 0)?;
        let mut sa = InitiatorSa {
            core: SaCore::new(true, (spi_i, 0), placeholder, config.retransmit, (1, 0)),
            ni: nonce(rng),
            nr: Vec::new(),
            init_request: Vec::new(),
            init_response: Vec::new(),
            esp_spi,
            state: InitiatorState::SentInit {
                dh,
                cookie: None,
                retried_groups: Vec::new(),
            },
            init_deadline: None,
            cookie_rounds: 0,
            responder_idr: None,
            responder_signed: false,
            config,
        };
        sa.send_init(now, out);
        Ok(sa)
    }

    pub fn config(&self) -> &InitiatorConfig {
        &self.config
    }

    fn live(&self) -> Option<&Live> {
        match &self.state {
            InitiatorState::Established(live) => Some(live),
            _ => None,
        }
    }

    /// Whether IKE_AUTH is done and the SA not closed.
    pub fn is_established(&self) -> bool {
        self.live().is_some() && !self.core.closed
    }

    /// The responder's identity and how it proved it, once established.
    pub fn peer(&self) -> Option<(&Identification, PeerAuthMethod)> {
        self.live().map(Live::peer)
    }

    /// The CHILD_SAs in place (none before IKE_AUTH is done).
    pub fn children(&self) -> impl Iterator<Item = &ChildSa> {
        self.live().into_iter().flat_map(Live::children)
    }

    /// Our SPIs of every IKE SA of this session the peer may still address.
    pub(super) fn our_spis(&self) -> impl Iterator<Item = u64> + '_ {
        std::iter::once(self.core.our_spi())
            .chain(self.live().into_iter().flat_map(Live::other_spis))
    }

    pub fn initiator_spi(&self) -> u64 {
        self.core.spi_i
    }

    pub fn responder_spi(&self) -> u64 {
        self.core.spi_r
    }

    /// The identity the responder named in its IDr (once its first IKE_AUTH response came).
    pub fn responder_identity(&self) -> Option<&Identification> {
        self.responder_idr.as_ref()
    }

    /// The IKE SA keys, once IKE_SA_INIT is done.
    pub fn keys(&self) -> Option<&IkeSaKeys> {
        (!matches!(self.state, InitiatorState::SentInit { .. })).then_some(&self.core.keys)
    }

    /// Whether we send on port 4500 (after a NAT was detected, or when forced).
    pub fn uses_port_4500(&self) -> bool {
        self.core.port_4500
    }

    fn send_init(&mut self, now: Instant, out: &mut Vec<Output>) {
        let InitiatorState::SentInit { dh, cookie, .. } = &self.state else {
            return;
        };
        let mut payloads = Vec::new();
        if let Some(c) = cookie {
            payloads.push(Payload::Notify(NotifyPayload::new(
                NotifyType::Cookie,
                c.clone(),
            )));
        }
        payloads.push(Payload::Sa(SaPayload {
            proposals: self
                .config
                .suites
                .iter()
                .take(255)
                .enumerate()
                .map(|(i, s)| s.proposal(i as u8 + 1))
                .collect(),
        }));
        payloads.push(Payload::Ke(KePayload {
            dh_group: dh.group().id(),
            key_exchange_data: dh.public_value().to_vec(),
        }));
        payloads.push(Payload::Nonce(self.ni.clone()));
        payloads.extend(nat_detection(
            self.core.spi_i,
            0,
            self.config.local,
            self.config.remote,
        ));
        let m = self
            .core
            .message(ExchangeType::IkeSaInit, false, 0, payloads);
        self.init_request = m.to_bytes();
        self.init_deadline = Some((now + self.core.policy.initial, 0));
        out.push(Output::Send {
            bytes: self.init_request.clone(),
            port_4500: false,
        });
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            InitiatorState::SentInit { .. } => self.init_deadline.map(|d| d.0),
            InitiatorState::Established(live) => [self.core.poll_timeout(), live.poll_timeout()]
                .into_iter()
                .flatten()
                .min(),
            _ => self.core.poll_timeout(),
        }
    }

    /// Retransmits, rekeys what is due, or gives up; `rng` seals what is sent.
    pub fn handle_timeout(&mut self, now: Instant, rng: &mut dyn Random, out: &mut Vec<Output>) {
        self.handle_timeout_in(&mut Ctx {
            now,
            rng,
            spis: &mut RandomSpis,
            out,
        });
    }

    pub(super) fn handle_timeout_in(&mut self, ctx: &mut Ctx<'_>) {
        let (now, out) = (ctx.now, &mut *ctx.out);
        if let InitiatorState::Established(live) = &mut self.state {
            live.handle_timeout(&mut self.core, self.config.params(), ctx);
            if self.core.closed {
                self.state = InitiatorState::Closed;
            }
            return;
        }
        if let InitiatorState::SentInit { .. } = self.state {
            let Some((deadline, n)) = self.init_deadline else {
                return;
            };
            if now < deadline {
                return;
            }
            if n >= self.core.policy.max_retransmissions {
                self.state = InitiatorState::Closed;
                self.core.close(CloseReason::Timeout, out);
                return;
            }
            self.init_deadline = Some((now + backoff(self.core.policy.initial, n + 1), n + 1));
            out.push(Output::Send {
                bytes: self.init_request.clone(),
                port_4500: false,
            });
            return;
        }
        self.core.handle_timeout(now, out);
        if self.core.closed {
            self.state = InitiatorState::Closed;
        }
    }

    pub fn handle(
        &mut self,
        datagram: &[u8],
        via_4500: bool,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) {
        self.handle_in(
            datagram,
            via_4500,
            &mut Ctx {
                now,
                rng,
                spis: &mut RandomSpis,
                out,
            },
        );
    }

    /// A datagram for this SA; returns whether it was authentic (an IKE_SA_INIT response
    /// is not: only what IKE_AUTH's keys protect lets the peer's address change).
    pub(super) fn handle_in(&mut self, datagram: &[u8], via_4500: bool, ctx: &mut Ctx<'_>) -> bool {
        if let InitiatorState::SentInit { .. } = self.state {
            self.init_response(datagram, ctx.now, ctx.rng, ctx.out);
            return false;
        }
        if let InitiatorState::Established(live) = &mut self.state {
            let authentic = live.handle(
                &mut self.core,
                datagram,
                via_4500,
                self.config.params(),
                ctx,
            );
            if self.core.closed {
                self.state = InitiatorState::Closed;
            }
            return authentic;
        }
        let (now, rng, out) = (ctx.now, &mut *ctx.rng, &mut *ctx.out);
        let receipt = self.core.receive(datagram, via_4500, rng, out);
        let authentic = receipt.authentic();
        let Receipt::Fresh(incoming) = receipt else {
            return authentic;
        };
        match incoming {
            Incoming::Request(m) if m.exchange_type == ExchangeType::Informational => {
                self.core.informational(&m, rng, out);
                if self.core.closed {
                    self.state = InitiatorState::Closed;
                }
            }
            Incoming::Request(m) => self.core.refuse(
                &m,
                NotifyPayload::new(NotifyType::NoAdditionalSas, vec![]),
                rng,
                out,
            ),
            Incoming::Response(m, Purpose::Liveness) => {
                if m.payloads.is_empty() && !matches!(self.state, InitiatorState::Closed) {
                    out.push(Output::Event(Event::Alive));
                }
            }
            Incoming::Response(m, Purpose::Auth) => self.auth_response(m, ctx),
            Incoming::Response(..) => {}
        }
        let _ = now;
        authentic
    }

    fn init_response(
        &mut self,
        datagram: &[u8],
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) {
        let m = match IkeMessage::parse(datagram) {
            Ok(m) => m,
            Err(e) => return out.push(Output::Event(Event::Discarded(Discard::Wire(e)))),
        };
        if m.exchange_type != ExchangeType::IkeSaInit
            || !m.flags.response
            || m.message_id != 0
            || m.initiator_spi != self.core.spi_i
        {
            return out.push(Output::Event(Event::Discarded(Discard::Unexpected(
                "not our IKE_SA_INIT response",
            ))));
        }
        if let Some(c) = m.notifies().find(|n| n.notify_type == NotifyType::Cookie) {
            // Section 2.6: retry with the cookie; a responder that keeps asking (more than
            // a few times) is given up on, so a forged COOKIE cannot keep us looping.
            self.cookie_rounds += 1;
            if self.cookie_rounds > MAX_COOKIE_ROUNDS {
                return self.give_up(CloseReason::NotifyReceived(NotifyType::Cookie), out);
            }
            if let InitiatorState::SentInit { cookie, .. } = &mut self.state {
                *cookie = Some(c.data.clone());
            }
            return self.send_init(now, out);
        }
        if let Some(group) = m
            .notifies()
            .find(|n| n.notify_type == NotifyType::InvalidKePayload)
            .and_then(|n| n.accepted_dh_group())
        {
            let wanted =
                DhGroup::from_id(group).filter(|g| self.config.suites.iter().any(|s| s.dh == *g));
            let InitiatorState::SentInit {
                dh, retried_groups, ..
            } = &mut self.state
            else {
                return;
            };
            match wanted {
                Some(g) if !retried_groups.contains(&g) && dh.group() != g => {
                    match DhPrivate::generate(g, rng) {
                        Ok(new) => {
                            *dh = new;
                            retried_groups.push(g);
                        }
                        Err(_) => {
                            return self.give_up(
                                CloseReason::NotifyReceived(NotifyType::InvalidKePayload),
                                out,
                            )
                        }
                    }
                    return self.send_init(now, out);
                }
                _ => {
                    return self.give_up(
                        CloseReason::NotifyReceived(NotifyType::InvalidKePayload),
                        out,
                    )
                }
            }
        }
        if let Some(t) = notify_of(&m) {
            return self.give_up(CloseReason::NotifyReceived(t), out);
        }
        let chosen = m.find(|p| match p {
            Payload::Sa(sa) => sa.proposals.first().cloned(),
            _ => None,
        });
        let ke = m.find(|p| match p {
            Payload::Ke(k) => Some(k.clone()),
            _ => None,
        });
        let nr = m.find(|p| match p {
            Payload::Nonce(n) => Some(n.clone()),
            _ => None,
        });
        let (Some(chosen), Some(ke), Some(nr)) = (chosen, ke, nr) else {
            return self.give_up(CloseReason::NotifyReceived(NotifyType::InvalidSyntax), out);
        };
        if m.responder_spi == 0 {
            return self.give_up(CloseReason::NotifyReceived(NotifyType::InvalidSyntax), out);
        }
        let suite = match IkeSuite::from_chosen_proposal(&chosen) {
            Ok(s) if self.config.suites.contains(&s) => s,
            _ => {
                return self.give_up(
                    CloseReason::NotifyReceived(NotifyType::NoProposalChosen),
                    out,
                )
            }
        };
        let InitiatorState::SentInit { dh, .. } =
            std::mem::replace(&mut self.state, InitiatorState::SentAuth)
        else {
            return;
        };
        if ke.dh_group != suite.dh.id() || dh.group() != suite.dh {
            return self.give_up(
                CloseReason::NotifyReceived(NotifyType::InvalidKePayload),
                out,
            );
        }
        let keys = dh.shared_secret(&ke.key_exchange_data).and_then(|g_ir| {
            IkeSaKeys::from_ike_sa_init(
                &suite,
                &g_ir,
                &self.ni,
                &nr,
                m.initiator_spi,
                m.responder_spi,
            )
        });
        let Ok(keys) = keys else {
            return self.give_up(CloseReason::NotifyReceived(NotifyType::InvalidSyntax), out);
        };
        let nat = nat_detected(&m, m.responder_spi, self.config.remote, self.config.local);
        self.core.spi_r = m.responder_spi;
        self.core.keys = keys;
        self.core.port_4500 = nat || self.config.force_port_4500;
        self.nr = nr;
        self.init_response = datagram.to_vec();
        self.init_deadline = None;

        let mut payloads = vec![Payload::IdI(self.config.idi.clone())];
        let prf = self.core.keys.suite().prf;
        let octets =
            self.core
                .initiator_signed_octets(&self.init_request, &self.nr, &self.config.idi);
        let proof = match self.config.auth.prove(prf, &octets) {
            Some(Ok(proof)) => Some(proof),
            Some(Err(_)) => {
                return self.give_up(
                    CloseReason::NotifySent(NotifyType::AuthenticationFailed),
                    out,
                )
            }
            None => None,
        };
        if let Some((Some(certificate), _)) = &proof {
            payloads.push(Payload::Cert(certificate.clone()));
        }
        if proof.is_some() {
            // Which CA we trust for the responder's certificate (section 3.7).
            payloads.extend(
                self.config
                    .peer_verifier
                    .as_ref()
                    .and_then(|v| v.certificate_request())
                    .map(Payload::CertReq),
            );
        }
        if let Some(idr) = &self.config.idr {
            payloads.push(Payload::IdR(idr.clone()));
        }
        if let Some((_, auth)) = proof {
            payloads.push(Payload::Auth(auth));
        }
        if !self.config.cp_request.is_empty() {
            payloads.push(Payload::Cp(CpPayload {
                cfg_type: CfgType::CfgRequest,
                attributes: self.config.cp_request.clone(),
            }));
        }
        payloads.push(Payload::Sa(SaPayload {
            proposals: self
                .config
                .esp_suites
                .iter()
                .take(255)
                .enumerate()
                .map(|(i, s)| s.proposal(i as u8 + 1, self.esp_spi))
                .collect(),
        }));
        payloads.push(Payload::TsI(self.config.tsi.clone()));
        payloads.push(Payload::TsR(self.config.tsr.clone()));
        if self.config.transport_mode {
            payloads.push(Payload::Notify(NotifyPayload::new(
                NotifyType::UseTransportMode,
                vec![],
            )));
        }
        payloads.push(Payload::Notify(NotifyPayload::new(
            NotifyType::InitialContact,
            vec![],
        )));
        if self.config.eap_only && !self.config.is_node() {
            payloads.push(Payload::Notify(NotifyPayload::new(
                NotifyType::EapOnlyAuthentication,
                vec![],
            )));
        }
        self.core.request(
            ExchangeType::IkeAuth,
            payloads,
            Purpose::Auth,
            now,
            rng,
            out,
        );
    }

    fn give_up(&mut self, reason: CloseReason, out: &mut Vec<Output>) {
        self.state = InitiatorState::Closed;
        self.core.close(reason, out);
    }

    fn auth_response(&mut self, m: IkeMessage, ctx: &mut Ctx<'_>) {
        let out = &mut *ctx.out;
        if let Some(t) = notify_of(&m) {
            if let Some(eap) = m.find(|p| match p {
                Payload::Eap(e) => Some(e.clone()),
                _ => None,
            }) {
                out.push(Output::Event(Event::EapRequest(eap)));
            }
            return self.give_up(CloseReason::NotifyReceived(t), out);
        }
        match std::mem::replace(&mut self.state, InitiatorState::AwaitingApp) {
            InitiatorState::SentAuth if self.config.is_node() => self.node_auth_response(&m, ctx),
            InitiatorState::SentAuth if !self.responder_authenticated(&m) => {
                self.give_up(CloseReason::PeerNotAuthenticated, out);
            }
            InitiatorState::SentAuth | InitiatorState::SentEap => {
                if let Some(idr) = m.find(|p| match p {
                    Payload::IdR(i) => Some(i.clone()),
                    _ => None,
                }) {
                    self.responder_idr.get_or_insert(idr);
                }
                let eap = m.find(|p| match p {
                    Payload::Eap(e) => Some(e.clone()),
                    _ => None,
                });
                let Some(eap) = eap else {
                    return self
                        .give_up(CloseReason::NotifyReceived(NotifyType::InvalidSyntax), out);
                };
                // EAP code 3 is Success (RFC 3748): the MSK is the application's next word.
                if eap.first() == Some(&3) {
                    self.state = InitiatorState::EapDone;
                }
                out.push(Output::Event(Event::EapRequest(eap)));
            }
            InitiatorState::SentAuthFinal { msk } => {
                self.state = InitiatorState::Closed;
                self.final_response(m, &msk, ctx);
            }
            other => {
                self.state = other;
                out.push(Output::Event(Event::Discarded(Discard::Unexpected(
                    "IKE_AUTH response in this state",
                ))));
            }
        }
    }

    /// The first IKE_AUTH response: a certificate AUTH our verifier accepts, or none at
    /// all if we offered EAP-only authentication.
    fn responder_authenticated(&mut self, m: &IkeMessage) -> bool {
        let auth = m.find(|p| match p {
            Payload::Auth(a) => Some(a),
            _ => None,
        });
        let Some(auth) = auth else {
            return self.config.eap_only;
        };
        self.responder_signed = true;
        let (Some(verifier), Some(idr)) = (
            self.config.peer_verifier.as_ref(),
            m.find(|p| match p {
                Payload::IdR(i) => Some(i),
                _ => None,
            }),
        ) else {
            return false;
        };
        let certificates = m.certificates();
        let octets = self
            .core
            .responder_signed_octets(&self.init_response, &self.ni, idr);
        verifier.verify_peer(idr, &certificates, auth, &octets)
    }

    /// A node's IKE_AUTH response: the responder's key or certificate AUTH for the IDr it
    /// names, then its CHILD_SA. A bad AUTH is told to the responder in an INFORMATIONAL
    /// (section 2.21.2) so that no SA stays on either side.
    fn node_auth_response(&mut self, m: &IkeMessage, ctx: &mut Ctx<'_>) {
        let certificates = m.certificates();
        let idr = m.find(|p| match p {
            Payload::IdR(i) => Some(i.clone()),
            _ => None,
        });
        let auth = m.find(|p| match p {
            Payload::Auth(a) => Some(a.clone()),
            _ => None,
        });
        let prf = self.core.keys.suite().prf;
        let proven = match (&idr, &auth) {
            (Some(idr), Some(auth)) => {
                let octets = self
                    .core
                    .responder_signed_octets(&self.init_response, &self.ni, idr);
                match (auth.method, &self.config.auth) {
                    (AuthMethod::SharedKeyMessageIntegrityCode, LocalAuth::Psk(psk)) => {
                        verify_shared_key_auth(prf, psk.as_bytes(), &octets, &auth.data)
                            .then_some(PeerAuthMethod::SharedKey)
                    }
                    (AuthMethod::SharedKeyMessageIntegrityCode, _) => None,
                    _ => self
                        .config
                        .peer_verifier
                        .as_ref()
                        .filter(|v| v.verify_peer(idr, &certificates, auth, &octets))
                        .map(|_| PeerAuthMethod::Certificate),
                }
            }
            _ => None,
        };
        // Section 2.15: the responder is the peer we meant, if we named one.
        let expected = match (&self.config.idr, &idr) {
            (Some(want), Some(got)) => super::auth::same_identity(want, got),
            _ => true,
        };
        let (Some(peer_auth), Some(idr), true) = (proven, idr, expected) else {
            self.core.request(
                ExchangeType::Informational,
                vec![Payload::Notify(NotifyPayload::new(
                    NotifyType::AuthenticationFailed,
                    vec![],
                ))],
                Purpose::Notice,
                ctx.now,
                ctx.rng,
                ctx.out,
            );
            return self.give_up(CloseReason::PeerNotAuthenticated, ctx.out);
        };
        let Some(child) = self.first_child(m) else {
            return self.delete_because(
                CloseReason::NotifyReceived(NotifyType::NoProposalChosen),
                ctx,
            );
        };
        if self.config.transport_mode && child.mode != Mode::Transport {
            return self.delete_because(CloseReason::TransportModeRefused, ctx);
        }
        self.establish(child, None, (idr, peer_auth), ctx);
    }

    /// Deletes the IKE SA (its AUTH exchange done) and closes with `reason`.
    fn delete_because(&mut self, reason: CloseReason, ctx: &mut Ctx<'_>) {
        self.state = InitiatorState::Closed;
        self.core.delete_because(reason, ctx.now, ctx.rng, ctx.out);
    }

    /// The CHILD_SA the last IKE_AUTH response makes: its chosen ESP proposal, keys from
    /// the IKE_SA_INIT nonces, selectors, and mode.
    fn first_child(&self, m: &IkeMessage) -> Option<ChildSa> {
        let chosen = m.find(|p| match p {
            Payload::Sa(sa) => sa.proposals.first().cloned(),
            _ => None,
        })?;
        let (outbound_spi, esp) = EspSuite::from_chosen_proposal(&chosen).ok()?;
        if !self.config.esp_suites.contains(&esp) {
            return None;
        }
        let keys = self.core.child_keys(&esp, &self.ni, &self.nr).ok()?;
        let tsi = m.find(|p| match p {
            Payload::TsI(t) => Some(t.clone()),
            _ => None,
        });
        let tsr = m.find(|p| match p {
            Payload::TsR(t) => Some(t.clone()),
            _ => None,
        });
        let transport = self.config.transport_mode
            && m.notifies()
                .any(|n| n.notify_type == NotifyType::UseTransportMode);
        Some(ChildSa {
            suite: esp,
            inbound_spi: self.esp_spi,
            outbound_spi,
            keys,
            tsi: tsi.unwrap_or_default(),
            tsr: tsr.unwrap_or_default(),
            mode: Mode::of(transport),
        })
    }

    /// IKE_AUTH is done: the SA goes live with `child` and tells the application.
    fn establish(
        &mut self,
        child: ChildSa,
        cp_reply: Option<CpPayload>,
        peer: (Identification, PeerAuthMethod),
        ctx: &mut Ctx<'_>,
    ) {
        let live = Live::new(
            true,
            child.clone(),
            peer.clone(),
            self.config.params(),
            ctx.now,
            ctx.rng,
        );
        self.state = InitiatorState::Established(Box::new(live));
        ctx.out
            .push(Output::Event(Event::Established(Box::new(Established {
                child,
                cp_reply,
                peer_id: peer.0,
                peer_auth: peer.1,
                keylog: self.core.keylog(),
            }))));
    }

    fn final_response(&mut self, m: IkeMessage, msk: &[u8], ctx: &mut Ctx<'_>) {
        let out = &mut *ctx.out;
        let prf = self.core.keys.suite().prf;
        let auth = m.find(|p| match p {
            Payload::Auth(a) => Some(a.clone()),
            _ => None,
        });
        let idr = m
            .find(|p| match p {
                Payload::IdR(i) => Some(i.clone()),
                _ => None,
            })
            .or_else(|| self.responder_idr.clone())
            .or_else(|| self.config.idr.clone());
        let (Some(auth), Some(idr)) = (auth, idr) else {
            return self.give_up(
                CloseReason::NotifyReceived(NotifyType::AuthenticationFailed),
                out,
            );
        };
        let octets = self
            .core
            .responder_signed_octets(&self.init_response, &self.ni, &idr);
        if !verify_shared_key_auth(prf, msk, &octets, &auth.data) {
            return self.give_up(
                CloseReason::NotifyReceived(NotifyType::AuthenticationFailed),
                out,
            );
        }
        let Some(child) = self.first_child(&m) else {
            return self.give_up(
                CloseReason::NotifyReceived(NotifyType::NoProposalChosen),
                out,
            );
        };
        let cp_reply = m.find(|p| match p {
            Payload::Cp(c) => Some(c.clone()),
            _ => None,
        });
        let peer_auth = if self.responder_signed {
            PeerAuthMethod::Certificate
        } else {
            PeerAuthMethod::Eap
        };
        self.establish(child, cp_reply, (idr, peer_auth), ctx);
    }

    /// Answers the ePDG's EAP request with the peer's EAP response.
    pub fn send_eap(
        &mut self,
        eap: Vec<u8>,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) -> bool {
        if !matches!(self.state, InitiatorState::AwaitingApp) {
            return false;
        }
        self.state = InitiatorState::SentEap;
        self.core.request(
            ExchangeType::IkeAuth,
            vec![Payload::Eap(eap)],
            Purpose::Auth,
            now,
            rng,
            out,
        );
        true
    }

    /// After EAP-Success: sends our AUTH computed with the MSK.
    pub fn complete_eap(
        &mut self,
        msk: Vec<u8>,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) -> bool {
        if !matches!(self.state, InitiatorState::EapDone) {
            return false;
        }
        let prf = self.core.keys.suite().prf;
        let octets =
            self.core
                .initiator_signed_octets(&self.init_request, &self.nr, &self.config.idi);
        let auth = Payload::Auth(AuthPayload {
            method: AuthMethod::SharedKeyMessageIntegrityCode,
            data: shared_key_auth(prf, &msk, &octets),
        });
        self.state = InitiatorState::SentAuthFinal { msk };
        self.core.request(
            ExchangeType::IkeAuth,
            vec![auth],
            Purpose::Auth,
            now,
            rng,
            out,
        );
        true
    }

    /// Deletes the IKE SA (once IKE_SA_INIT is done): sends an INFORMATIONAL with
    /// Delete and closes. Before, it just closes.
    pub fn delete(&mut self, now: Instant, rng: &mut dyn Random, out: &mut Vec<Output>) {
        match self.state {
            InitiatorState::Closed => {}
            InitiatorState::SentInit { .. } => {
                self.state = InitiatorState::Closed;
                self.init_deadline = None;
                self.core.close(CloseReason::Deleted, out);
            }
            _ => {
                self.state = InitiatorState::Closed;
                self.core.delete(now, rng, out);
            }
        }
    }

    /// Starts a rekey of the CHILD_SA with this inbound SPI (its ESP sequence number runs
    /// out, say). False if there is no such CHILD_SA in place.
    pub fn rekey_child_sa(
        &mut self,
        inbound_spi: u32,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) -> bool {
        self.rekey_child_in(
            inbound_spi,
            &mut Ctx {
                now,
                rng,
                spis: &mut RandomSpis,
                out,
            },
        )
    }

    pub(super) fn rekey_child_in(&mut self, inbound_spi: u32, ctx: &mut Ctx<'_>) -> bool {
        match &mut self.state {
            InitiatorState::Established(live) => {
                live.rekey_child(&mut self.core, inbound_spi, self.config.params(), ctx)
            }
            _ => false,
        }
    }

    /// Starts a rekey of the IKE SA. False before it is established.
    pub fn rekey_ike_sa(
        &mut self,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) -> bool {
        self.rekey_ike_in(&mut Ctx {
            now,
            rng,
            spis: &mut RandomSpis,
            out,
        })
    }

    pub(super) fn rekey_ike_in(&mut self, ctx: &mut Ctx<'_>) -> bool {
        match &mut self.state {
            InitiatorState::Established(live) => {
                live.rekey_ike(&mut self.core, self.config.params(), ctx);
                true
            }
            _ => false,
        }
    }

    /// Sends a liveness check (an empty INFORMATIONAL) once established.
    pub fn check_liveness(&mut self, now: Instant, rng: &mut dyn Random, out: &mut Vec<Output>) {
        if self.is_established() {
            self.core.check_liveness(now, rng, out);
        }
    }
}
