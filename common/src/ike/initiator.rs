//! The initiator's IKE SA (RFC 7296 sections 1.2, 2.6, 2.16, RFC 5998): the UE
//! emulator's side of IKE_SA_INIT (INVALID_KE_PAYLOAD retry, cookies, NAT detection) and
//! of an EAP-only IKE_AUTH whose EAP the application answers with its USIM, with the
//! shared windows, retransmissions and SK protection of the SA core ([`super::sa`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::auth::PeerVerifier;
use super::crypto::{CryptoError, DhGroup, DhPrivate, EspSuite, IkeSuite, Random};
use super::keys::{shared_key_auth, verify_shared_key_auth, IkeSaKeys};
use super::sa::{
    backoff, nat_detected, nat_detection, nonce, nonzero_spi, notify_of, ChildSa, CloseReason,
    Discard, Established, Event, Incoming, Output, Receipt, RetransmitPolicy, SaCore,
};
use super::wire::*;

/// The UE emulator's IKE configuration.
#[derive(Debug, Clone)]
pub struct InitiatorConfig {
    /// Offered in this order; the first suite's group is guessed for KE.
    pub suites: Vec<IkeSuite>,
    pub esp_suites: Vec<EspSuite>,
    /// IDi: the NAI.
    pub idi: Identification,
    /// IDr: the APN.
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
    /// Checks the ePDG's certificate AUTH. Without one, only an EAP-only ePDG is accepted.
    pub peer_verifier: Option<Arc<dyn PeerVerifier>>,
    pub retransmit: RetransmitPolicy,
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
    Established,
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
        let first = *config
            .suites
            .first()
            .ok_or(CryptoError::NoProposalChosen("no IKE suite configured"))?;
        let dh = DhPrivate::generate(first.dh, rng)?;
        let spi_i = nonzero_spi(rng);
        let mut spi = [0u8; 4];
        rng.fill(&mut spi);
        // Replaced by the real keys when the IKE_SA_INIT response arrives.
        let placeholder = IkeSaKeys::derive(&first, &[0; 32], &[0; 16], &[0; 16], 0, 0)?;
        let mut sa = InitiatorSa {
            core: SaCore::new(true, (spi_i, 0), placeholder, config.retransmit, (1, 0)),
            ni: nonce(rng),
            nr: Vec::new(),
            init_request: Vec::new(),
            init_response: Vec::new(),
            esp_spi: u32::from_be_bytes(spi) | 0x100,
            state: InitiatorState::SentInit {
                dh,
                cookie: None,
                retried_groups: Vec::new(),
            },
            init_deadline: None,
            cookie_rounds: 0,
            responder_idr: None,
            config,
        };
        sa.send_init(now, out);
        Ok(sa)
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
        match self.state {
            InitiatorState::SentInit { .. } => self.init_deadline.map(|d| d.0),
            _ => self.core.poll_timeout(),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
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
        if let InitiatorState::SentInit { .. } = self.state {
            return self.init_response(datagram, now, rng, out);
        }
        let Receipt::Fresh(incoming) = self.core.receive(datagram, via_4500, out) else {
            return;
        };
        match incoming {
            Incoming::Request(m) if m.exchange_type == ExchangeType::Informational => {
                self.core.informational(&m, rng, out);
                if self.core.closed {
                    self.state = InitiatorState::Closed;
                }
            }
            Incoming::Request(m) => self.core.refuse(&m, rng, out),
            Incoming::Response(m, ExchangeType::Informational) => {
                if m.payloads.is_empty() && !matches!(self.state, InitiatorState::Closed) {
                    out.push(Output::Event(Event::Alive));
                }
            }
            Incoming::Response(m, _) => self.auth_response(m, out),
        }
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
        if let Some(idr) = &self.config.idr {
            payloads.push(Payload::IdR(idr.clone()));
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
        payloads.push(Payload::Notify(NotifyPayload::new(
            NotifyType::InitialContact,
            vec![],
        )));
        if self.config.eap_only {
            payloads.push(Payload::Notify(NotifyPayload::new(
                NotifyType::EapOnlyAuthentication,
                vec![],
            )));
        }
        self.core
            .request(ExchangeType::IkeAuth, payloads, now, rng, out);
    }

    fn give_up(&mut self, reason: CloseReason, out: &mut Vec<Output>) {
        self.state = InitiatorState::Closed;
        self.core.close(reason, out);
    }

    fn auth_response(&mut self, m: IkeMessage, out: &mut Vec<Output>) {
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
                self.final_response(m, &msk, out);
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
    fn responder_authenticated(&self, m: &IkeMessage) -> bool {
        let auth = m.find(|p| match p {
            Payload::Auth(a) => Some(a),
            _ => None,
        });
        let Some(auth) = auth else {
            return self.config.eap_only;
        };
        let (Some(verifier), Some(idr)) = (
            self.config.peer_verifier.as_ref(),
            m.find(|p| match p {
                Payload::IdR(i) => Some(i),
                _ => None,
            }),
        ) else {
            return false;
        };
        let certificates: Vec<CertPayload> = m
            .payloads
            .iter()
            .filter_map(|p| match p {
                Payload::Cert(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
        let octets = self
            .core
            .responder_signed_octets(&self.init_response, &self.ni, idr);
        verifier.verify(&certificates, auth, &octets)
    }

    fn final_response(&mut self, m: IkeMessage, msk: &[u8], out: &mut Vec<Output>) {
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
        let chosen = m.find(|p| match p {
            Payload::Sa(sa) => sa.proposals.first().cloned(),
            _ => None,
        });
        let Some(Ok((outbound_spi, esp))) = chosen.map(|p| EspSuite::from_chosen_proposal(&p))
        else {
            return self.give_up(
                CloseReason::NotifyReceived(NotifyType::NoProposalChosen),
                out,
            );
        };
        let Ok(keys) = self.core.child_keys(&esp, &self.ni, &self.nr) else {
            return self.give_up(
                CloseReason::NotifyReceived(NotifyType::NoProposalChosen),
                out,
            );
        };
        let tsi = m.find(|p| match p {
            Payload::TsI(t) => Some(t.clone()),
            _ => None,
        });
        let tsr = m.find(|p| match p {
            Payload::TsR(t) => Some(t.clone()),
            _ => None,
        });
        let cp_reply = m.find(|p| match p {
            Payload::Cp(c) => Some(c.clone()),
            _ => None,
        });
        self.state = InitiatorState::Established;
        out.push(Output::Event(Event::Established(Box::new(Established {
            child: ChildSa {
                suite: esp,
                inbound_spi: self.esp_spi,
                outbound_spi,
                keys,
                tsi: tsi.unwrap_or_default(),
                tsr: tsr.unwrap_or_default(),
            },
            cp_reply,
        }))));
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
        self.core
            .request(ExchangeType::IkeAuth, vec![auth], now, rng, out);
        true
    }

    /// Deletes the IKE SA (once IKE_SA_INIT is done): sends an INFORMATIONAL with
    /// Delete and closes.
    pub fn delete(&mut self, now: Instant, rng: &mut dyn Random, out: &mut Vec<Output>) {
        if !matches!(
            self.state,
            InitiatorState::SentInit { .. } | InitiatorState::Closed
        ) {
            self.state = InitiatorState::Closed;
            self.core.delete(now, rng, out);
        }
    }
}
