//! The AAA server's protocol logic, sans-IO (docs/architecture.md): SWm requests from the
//! ePDGs' peer connections and answers from home AAA servers go in, with the time;
//! answers and relayed requests come out. No sockets, no clock.
//!
//! * **Home role** (the user's realm is ours, or the NAI has no realm): one EAP-AKA
//!   [`Server`] per Session-Id. A DER is answered DIAMETER_MULTI_ROUND_AUTH (1001) with
//!   the next EAP request while the conversation runs; DIAMETER_SUCCESS with EAP-Success,
//!   EAP-Master-Session-Key, and (when the DER named a subscribed APN in
//!   Service-Selection that this realm has a gateway for) APN-Configuration and
//!   MIP6-Agent-Info with that gateway; an unknown IMSI gets Experimental-Result
//!   DIAMETER_ERROR_USER_UNKNOWN (5001, 3GPP) and any other authentication failure
//!   (wrong RES, bad MAC, AUTS that does not verify, client error) EAP-Failure with
//!   DIAMETER_AUTHENTICATION_REJECTED (4001). Every SQN is committed through
//!   [`Subscribers::commit_sqn`] before the challenge that uses it is output; if the
//!   commit fails the DER gets DIAMETER_UNABLE_TO_COMPLY and no challenge leaves.
//! * **Authorization (AAR)**: the APN in Service-Selection must be in the subscriber's
//!   list, else Experimental-Result DIAMETER_ERROR_USER_NO_APN_SUBSCRIPTION (5451, the
//!   code TS 29.273 section 7.2.2.1.4 names for an APN the user has no subscription
//!   for); a subscribed APN with no gateway configured here, a missing Service-Selection
//!   or an AAR for a session that never authenticated is DIAMETER_AUTHORIZATION_REJECTED
//!   (5003). The answer carries the gateway in MIP6-Agent-Info / MIP-Home-Agent-Address.
//! * **STR** ends the session: STA DIAMETER_SUCCESS, or DIAMETER_UNKNOWN_SESSION_ID.
//! * **Malformed requests** (missing or bad AVPs) are answered with the RFC 6733 error
//!   and Failed-AVP that the codec's [`Error`](pmip_common::diameter::Error) names.
//! * **Visited role** (RFC 6733 section 6): a request whose User-Name (or EAP identity)
//!   names a realm in `home_realms`, and every later request of that session, is relayed
//!   to that realm's home AAA with the same Session-Id and End-to-End id, a new
//!   Hop-by-Hop id and a Route-Record with our Origin-Host; the answer goes back with the
//!   original Hop-by-Hop id. On a successful *final* DEA, or a successful AAA, we **add**
//!   the gateway our own table picks for the APN as one more MIP6-Agent-Info (RFC 5447
//!   section 4.2.1 allows several). **Order: the home gateway(s) first, the visited one
//!   last.** Each MIP6-Agent-Info this server writes also carries MIP-Home-Agent-Host
//!   with its Origin-Realm and Origin-Host, so the ePDG can tell them apart by realm as
//!   well as by position (the ePDG in this project uses position: last = visited). A
//!   home AAA that cannot be reached, or is silent past `relay_timeout_secs`, gets the
//!   request answered DIAMETER_UNABLE_TO_DELIVER (3002) with the E bit.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use pmip_common::diameter::codes::{avp, command, result};
use pmip_common::diameter::swm::{
    AaAnswer, AnswerResult, ApnConfiguration, DiameterEapAnswer, Mip6AgentInfo, MipHomeAgentHost,
    PdnType, SessionTerminationAnswer, SwmMessage,
};
use pmip_common::diameter::{Avp, Header, Message};
use pmip_common::eap::{
    Code, EapPacket, EapRepr, EapType, Resynchronisation, Server, ServerConfig, ServerFailure,
    ServerInput, ServerOutput, Sqn, Subscriber as EapSubscriber,
};
use rand::RngCore;

use crate::config::{AaaConfig, Authorization};
use crate::subscriber::{Subscriber, SubscriberStore};

/// Identifies one peer connection of the driver.
pub type ConnId = u64;

/// What the core needs of a subscriber store: a lookup and a durable SQN commit.
pub trait Subscribers {
    /// The subscriber and the last SQN used for it.
    fn lookup(&self, imsi: &str) -> Option<(Subscriber, u64)>;
    /// Makes `sqn` durable as used; must not return before it is.
    fn commit_sqn(&mut self, imsi: &str, sqn: u64) -> Result<(), String>;
}

impl Subscribers for SubscriberStore {
    fn lookup(&self, imsi: &str) -> Option<(Subscriber, u64)> {
        Some((self.get(imsi)?, self.sqn(imsi)?))
    }
    fn commit_sqn(&mut self, imsi: &str, sqn: u64) -> Result<(), String> {
        SubscriberStore::commit_sqn(self, imsi, sqn).map_err(|e| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        })
    }
}

/// An input to [`Aaa::handle`].
#[derive(Debug)]
pub enum Input {
    /// An application request received on a peer connection.
    Request { conn: ConnId, message: Message },
    /// An answer from the home AAA of `realm`.
    HomeAnswer { realm: String, message: Message },
    /// The connection to the home AAA of `realm` failed or went down.
    HomeUnreachable { realm: String },
    /// The deadline of [`Aaa::poll_timeout`] passed.
    Timeout,
}

/// An output of [`Aaa::handle`], to carry out in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send this message on the connection `conn`.
    Send { conn: ConnId, message: Message },
    /// Send this request to the home AAA of `realm`, at `addr`.
    Relay {
        realm: String,
        addr: SocketAddr,
        message: Message,
    },
    /// Something worth a log line: peer connection, session, user and result.
    Log {
        conn: ConnId,
        session: String,
        user: String,
        result: String,
    },
}

struct Session {
    server: Server,
    imsi: Option<String>,
    authenticated: bool,
    /// The last DER of a conversation still in progress.
    last: Instant,
}

/// How long an unfinished EAP conversation is kept without a DER (the ePDG gave up).
/// Authenticated sessions live until their STR.
pub const EAP_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

struct Pending {
    conn: ConnId,
    realm: String,
    request: Message,
    apn: Option<String>,
    deadline: Instant,
}

/// The AAA server's logic.
pub struct Aaa<S: Subscribers> {
    config: AaaConfig,
    store: S,
    rng: Box<dyn RngCore + Send>,
    sessions: HashMap<String, Session>,
    /// Sessions relayed to a home AAA: Session-Id -> realm.
    relayed: HashMap<String, String>,
    /// Relayed requests awaiting their answer, by our Hop-by-Hop id.
    pending: HashMap<u32, Pending>,
    next_hop_by_hop: u32,
    /// When to look for abandoned EAP conversations.
    next_sweep: Option<Instant>,
}

impl<S: Subscribers> Aaa<S> {
    pub fn new(config: AaaConfig, store: S, mut rng: Box<dyn RngCore + Send>) -> Self {
        let next_hop_by_hop = rng.next_u32();
        Aaa {
            config,
            store,
            rng,
            sessions: HashMap::new(),
            relayed: HashMap::new(),
            pending: HashMap::new(),
            next_hop_by_hop,
            next_sweep: None,
        }
    }

    /// The subscriber store (and the SQNs it committed).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Sessions held in the home role.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Sessions relayed to a home AAA (visited role) and relayed requests awaiting their
    /// answer.
    pub fn relay_counts(&self) -> (usize, usize) {
        (self.relayed.len(), self.pending.len())
    }

    /// The next deadline (a relayed request's timeout), if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending
            .values()
            .map(|p| p.deadline)
            .chain(self.next_sweep)
            .min()
    }

    /// Drops EAP conversations idle for [`EAP_IDLE_TIMEOUT`].
    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|t| t <= now) {
            self.sessions
                .retain(|_, s| s.authenticated || now < s.last + EAP_IDLE_TIMEOUT);
            self.next_sweep = self
                .sessions
                .values()
                .filter(|s| !s.authenticated)
                .map(|s| s.last + EAP_IDLE_TIMEOUT)
                .min();
        }
    }

    pub fn handle(&mut self, input: Input, now: Instant, out: &mut Vec<Output>) {
        match input {
            Input::Request { conn, message } => self.on_request(conn, message, now, out),
            Input::HomeAnswer { message, .. } => self.on_home_answer(message, out),
            Input::HomeUnreachable { realm } => {
                let ids: Vec<u32> = self
                    .pending
                    .iter()
                    .filter(|(_, p)| p.realm == realm)
                    .map(|(id, _)| *id)
                    .collect();
                for id in ids {
                    self.fail_pending(id, "home AAA unreachable", out);
                }
            }
            Input::Timeout => {
                self.sweep(now);
                let ids: Vec<u32> = self
                    .pending
                    .iter()
                    .filter(|(_, p)| p.deadline <= now)
                    .map(|(id, _)| *id)
                    .collect();
                for id in ids {
                    self.fail_pending(id, "home AAA did not answer in time", out);
                }
            }
        }
    }

    fn fail_pending(&mut self, id: u32, why: &str, out: &mut Vec<Output>) {
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        let mut answer = p.request.answer();
        answer.header.flags = answer.header.flags.with_error(true);
        answer.push(Avp::u32(
            avp::RESULT_CODE,
            result::DIAMETER_UNABLE_TO_DELIVER,
        ));
        answer.push(Avp::identity(avp::ORIGIN_HOST, &self.config.origin_host));
        answer.push(Avp::identity(avp::ORIGIN_REALM, &self.config.origin_realm));
        answer.push(Avp::utf8(avp::ERROR_MESSAGE, why).with_mandatory(false));
        if let Some(session) = p.request.session_id() {
            self.relayed.remove(session);
        }
        out.push(Output::Log {
            conn: p.conn,
            session: p.request.session_id().unwrap_or("-").into(),
            user: user_of(&p.request),
            result: format!("DIAMETER_UNABLE_TO_DELIVER: {why} (realm {})", p.realm),
        });
        out.push(Output::Send {
            conn: p.conn,
            message: answer,
        });
    }

    fn on_request(&mut self, conn: ConnId, message: Message, now: Instant, out: &mut Vec<Output>) {
        let start = out.len();
        self.on_request_inner(conn, message, now, out);
        for o in &mut out[start..] {
            if let Output::Log { conn: c, .. } = o {
                *c = conn;
            }
        }
    }

    fn on_request_inner(
        &mut self,
        conn: ConnId,
        message: Message,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        // Route first (the relay must not depend on our parse of the home's AVPs).
        if let Some((realm, addr)) = self.route(&message) {
            self.relay(conn, message, realm, addr, now, out);
            return;
        }
        let header = message.header;
        let parsed = match SwmMessage::parse(&message) {
            Ok(parsed) => parsed,
            Err(error) => {
                out.push(Output::Log {
                    conn: 0,
                    session: message.session_id().unwrap_or("-").into(),
                    user: user_of(&message),
                    result: format!("error {}: {error}", error.result_code()),
                });
                let answer = message.error_answer(
                    &self.config.origin_host,
                    &self.config.origin_realm,
                    &error,
                );
                out.push(Output::Send {
                    conn,
                    message: answer,
                });
                return;
            }
        };
        let answer = match parsed {
            SwmMessage::Der(der) => self.on_der(der, &header, now, out),
            SwmMessage::Aar(aar) => self.on_aar(aar, &header, out),
            SwmMessage::Str(str) => {
                let known = self.sessions.remove(&str.session_id).is_some();
                let code = if known {
                    result::DIAMETER_SUCCESS
                } else {
                    result::DIAMETER_UNKNOWN_SESSION_ID
                };
                out.push(Output::Log {
                    conn: 0,
                    session: str.session_id.clone(),
                    user: str.user_name.clone().unwrap_or_default(),
                    result: format!("STR -> STA {code}"),
                });
                SessionTerminationAnswer {
                    session_id: str.session_id,
                    result_code: code,
                    origin_host: self.config.origin_host.clone(),
                    origin_realm: self.config.origin_realm.clone(),
                    user_name: str.user_name,
                    error_message: None,
                    failed_avp: vec![],
                    proxy_info: str.proxy_info,
                    other: vec![],
                }
                .to_message(&header)
            }
            _ => return,
        };
        out.push(Output::Send {
            conn,
            message: answer,
        });
    }

    /// The home AAA a request goes to, if it is for another realm's user.
    fn route(&self, message: &Message) -> Option<(String, SocketAddr)> {
        if let Some(realm) = message.session_id().and_then(|s| self.relayed.get(s)) {
            let home = self.config.home_realms.get(realm)?;
            return Some((realm.clone(), home.address));
        }
        if message.header.command_code == command::SESSION_TERMINATION {
            return None;
        }
        let user = user_of(message);
        self.config
            .home_aaa_for(&user)
            .map(|(realm, addr)| (realm.to_string(), addr))
    }

    fn relay(
        &mut self,
        conn: ConnId,
        request: Message,
        realm: String,
        addr: SocketAddr,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let route_record_loop = request
            .find_all(avp::ROUTE_RECORD, None)
            .any(|a| a.as_identity().is_ok_and(|h| h == self.config.origin_host));
        if route_record_loop {
            let error_answer = {
                let mut a = request.answer();
                a.header.flags = a.header.flags.with_error(true);
                a.push(Avp::u32(avp::RESULT_CODE, result::DIAMETER_LOOP_DETECTED));
                a.push(Avp::identity(avp::ORIGIN_HOST, &self.config.origin_host));
                a.push(Avp::identity(avp::ORIGIN_REALM, &self.config.origin_realm));
                a
            };
            out.push(Output::Send {
                conn,
                message: error_answer,
            });
            return;
        }
        self.next_hop_by_hop = self.next_hop_by_hop.wrapping_add(1);
        let id = self.next_hop_by_hop;
        let mut forwarded = request.clone();
        forwarded.header.hop_by_hop = id;
        forwarded.push(Avp::identity(avp::ROUTE_RECORD, &self.config.origin_host));
        if let Some(session) = request.session_id() {
            self.relayed.insert(session.to_string(), realm.clone());
        }
        let apn = request
            .find(avp::SERVICE_SELECTION, None)
            .and_then(|a| a.as_utf8().ok())
            .map(str::to_string);
        out.push(Output::Log {
            conn: 0,
            session: request.session_id().unwrap_or("-").into(),
            user: user_of(&request),
            result: format!("relayed to home realm {realm} at {addr}"),
        });
        self.pending.insert(
            id,
            Pending {
                conn,
                realm: realm.clone(),
                request,
                apn,
                deadline: now + Duration::from_secs(self.config.relay_timeout_secs),
            },
        );
        out.push(Output::Relay {
            realm,
            addr,
            message: forwarded,
        });
    }

    fn on_home_answer(&mut self, mut answer: Message, out: &mut Vec<Output>) {
        let Some(p) = self.pending.remove(&answer.header.hop_by_hop) else {
            return; // late (already answered 3002) or unknown
        };
        answer.header.hop_by_hop = p.request.header.hop_by_hop;
        let code = answer.result_code();
        let session = p.request.session_id().unwrap_or("-").to_string();
        let final_success = code == Some(result::DIAMETER_SUCCESS)
            && matches!(
                answer.header.command_code,
                command::DIAMETER_EAP | command::AA
            );
        // The home named its gateway only if it authorized the APN: without one, no
        // visited gateway either (the ePDG then asks with an AAR, which the home
        // refuses), or the UE would be served here for an APN its home refused.
        let home_named_gateway = answer.avps.iter().any(|a| a.is(avp::MIP6_AGENT_INFO, None));
        let mut added = false;
        if final_success && home_named_gateway {
            if let Some(gateway) = p
                .apn
                .as_deref()
                .and_then(|a| self.config.visited_gateway_for(a))
            {
                added = true;
                let info = self.agent_info(gateway).to_avp();
                let at = answer
                    .avps
                    .iter()
                    .rposition(|a| a.is(avp::MIP6_AGENT_INFO, None))
                    .map_or(answer.avps.len(), |i| i + 1);
                answer.avps.insert(at, info);
            }
        }
        // The session stays routed to the home AAA until it ends: STA, or a final DEA
        // that is not a success (an AAR reject leaves the session authenticated).
        let command_code = answer.header.command_code;
        let ended = command_code == command::SESSION_TERMINATION
            || command_code == command::DIAMETER_EAP
                && code != Some(result::DIAMETER_MULTI_ROUND_AUTH)
                && code != Some(result::DIAMETER_SUCCESS);
        if ended {
            self.relayed.remove(&session);
        }
        out.push(Output::Log {
            conn: p.conn,
            session,
            user: user_of(&p.request),
            result: format!(
                "home {} answered {}{}",
                p.realm,
                code.map_or("experimental".into(), |c| c.to_string()),
                if added {
                    " (visited gateway added)"
                } else {
                    ""
                }
            ),
        });
        out.push(Output::Send {
            conn: p.conn,
            message: answer,
        });
    }

    fn agent_info(&self, gateway: IpAddr) -> Mip6AgentInfo {
        let mut info = Mip6AgentInfo::address(gateway);
        info.home_agent_host = Some(MipHomeAgentHost {
            destination_realm: self.config.origin_realm.clone(),
            destination_host: self.config.origin_host.clone(),
        });
        info
    }

    fn on_der(
        &mut self,
        der: pmip_common::diameter::swm::DiameterEapRequest,
        header: &Header,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Message {
        let (host, realm) = (
            self.config.origin_host.clone(),
            self.config.origin_realm.clone(),
        );
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + EAP_IDLE_TIMEOUT);
        }
        let sqn_profile = self.config.sqn_profile();
        let session = self
            .sessions
            .entry(der.session_id.clone())
            .or_insert_with(|| Session {
                server: Server::new(ServerConfig {
                    sqn: sqn_profile,
                    ..ServerConfig::default()
                }),
                imsi: None,
                authenticated: false,
                last: now,
            });
        session.last = now;
        let mut pending = session
            .server
            .handle(ServerInput::Packet(&der.eap_payload), &mut *self.rng);
        let (mut eap, mut success, mut failure, mut store_error) = (None, None, None, None);
        while !pending.is_empty() {
            for o in std::mem::take(&mut pending) {
                match o {
                    ServerOutput::SubscriberNeeded { imsi } => {
                        let sub = self.store.lookup(&imsi).and_then(|(s, sqn)| {
                            Some(EapSubscriber {
                                k: s.k.0,
                                opc: s.opc.0,
                                amf: s.amf,
                                sqn: Sqn::new(sqn)?,
                            })
                        });
                        session.imsi = Some(imsi);
                        pending = session
                            .server
                            .handle(ServerInput::Subscriber(sub), &mut *self.rng);
                    }
                    ServerOutput::SqnUsed { imsi, sqn } => {
                        if let Err(e) = self.store.commit_sqn(&imsi, sqn.value()) {
                            store_error = Some(e);
                        }
                    }
                    ServerOutput::Resynchronised {
                        imsi,
                        sqn_ms,
                        decision,
                    } => {
                        // TS 33.102 6.3.5: one log line per verified AUTS.
                        let (what, next) = match decision {
                            Resynchronisation::Kept(n) => ("kept SQN_HE", n),
                            Resynchronisation::Reset(n) => ("reset SQN_HE to SQN_MS", n),
                        };
                        out.push(Output::Log {
                            conn: 0,
                            session: der.session_id.clone(),
                            user: imsi,
                            result: format!(
                                "EAP-AKA resynchronisation: SQN_MS {}, {what}, next SQN {}",
                                sqn_ms.value(),
                                next.value()
                            ),
                        });
                    }
                    ServerOutput::Send(p) => eap = Some(p),
                    ServerOutput::Success(s) => success = Some(s),
                    ServerOutput::Failure(f) => failure = Some(f),
                    ServerOutput::Discarded(_) => {}
                }
            }
        }
        let user = session
            .imsi
            .clone()
            .or(der.user_name.clone())
            .unwrap_or_default();
        let mut dea;
        let outcome;
        if let Some(e) = store_error {
            // The SQN is not durable: the challenge must not leave.
            self.sessions.remove(&der.session_id);
            dea = DiameterEapAnswer::new(
                &der,
                AnswerResult::ResultCode(result::DIAMETER_UNABLE_TO_COMPLY),
                &host,
                &realm,
            );
            dea.error_message = Some("subscriber store failure".into());
            outcome = format!("DIAMETER_UNABLE_TO_COMPLY: persisting the SQN failed: {e}");
        } else if let Some(s) = success {
            session.authenticated = true;
            dea = DiameterEapAnswer::new(&der, AnswerResult::SUCCESS, &host, &realm);
            dea.eap_payload = eap;
            dea.eap_master_session_key = Some(s.keys.msk.to_vec());
            dea.user_name = Some(String::from_utf8_lossy(&s.identity).into_owned());
            let apns = self
                .store
                .lookup(&s.imsi)
                .map(|(sub, _)| sub.apns)
                .unwrap_or_default();
            let mut gateway_note = String::new();
            if let Some(apn) = der.service_selection.as_deref() {
                match self.config.gateway_for(apn, &apns) {
                    Ok(gw) => {
                        let info = self.agent_info(gw);
                        dea.apn_configuration = Some(ApnConfiguration {
                            context_identifier: 1,
                            pdn_type: PdnType::Ipv4v6,
                            service_selection: apn.to_string(),
                            mip6_agent_info: Some(info.clone()),
                            visited_network_identifier: None,
                            other: vec![],
                        });
                        dea.mip6_agent_info.push(info);
                        gateway_note = format!(", APN {apn} -> gateway {gw}");
                    }
                    Err(e) => gateway_note = format!(", APN {apn} not authorized: {e}"),
                }
            }
            outcome = format!("DIAMETER_SUCCESS (EAP-AKA authenticated{gateway_note})");
        } else if let Some(f) = failure {
            self.sessions.remove(&der.session_id);
            let code = if matches!(f, ServerFailure::UnknownSubscriber) {
                AnswerResult::tgpp(result::DIAMETER_ERROR_USER_UNKNOWN)
            } else {
                AnswerResult::ResultCode(result::DIAMETER_AUTHENTICATION_REJECTED)
            };
            dea = DiameterEapAnswer::new(&der, code, &host, &realm);
            dea.eap_payload = Some(eap.unwrap_or_else(|| eap_failure(&der.eap_payload)));
            outcome = format!("{} ({f:?})", code.code());
        } else {
            dea = DiameterEapAnswer::new(
                &der,
                AnswerResult::ResultCode(result::DIAMETER_MULTI_ROUND_AUTH),
                &host,
                &realm,
            );
            dea.eap_payload = eap;
            outcome = "DIAMETER_MULTI_ROUND_AUTH".into();
        }
        out.push(Output::Log {
            conn: 0,
            session: der.session_id.clone(),
            user,
            result: outcome,
        });
        dea.to_message(header)
    }

    fn on_aar(
        &mut self,
        aar: pmip_common::diameter::swm::AaRequest,
        header: &Header,
        out: &mut Vec<Output>,
    ) -> Message {
        let (host, realm) = (
            self.config.origin_host.clone(),
            self.config.origin_realm.clone(),
        );
        let session = self.sessions.get(&aar.session_id);
        let imsi = session
            .filter(|s| s.authenticated)
            .and_then(|s| s.imsi.clone());
        let decision: Result<IpAddr, (AnswerResult, String)> =
            match (imsi, aar.service_selection.as_deref()) {
                (None, _) => Err((
                    AnswerResult::ResultCode(result::DIAMETER_AUTHORIZATION_REJECTED),
                    "no authenticated session".into(),
                )),
                (Some(_), None) => Err((
                    AnswerResult::ResultCode(result::DIAMETER_AUTHORIZATION_REJECTED),
                    "no Service-Selection (APN) in the AAR".into(),
                )),
                (Some(imsi), Some(apn)) => {
                    let apns = self
                        .store
                        .lookup(&imsi)
                        .map(|(s, _)| s.apns)
                        .unwrap_or_default();
                    self.config.gateway_for(apn, &apns).map_err(|e| match e {
                        Authorization::NotSubscribed => (
                            AnswerResult::tgpp(result::DIAMETER_ERROR_USER_NO_APN_SUBSCRIPTION),
                            format!("APN {apn}: {e}"),
                        ),
                        Authorization::NoGateway => (
                            AnswerResult::ResultCode(result::DIAMETER_AUTHORIZATION_REJECTED),
                            format!("APN {apn}: {e}"),
                        ),
                    })
                }
            };
        let (mut aaa, outcome) = match decision {
            Ok(gw) => {
                let mut a = AaAnswer::new(&aar, AnswerResult::SUCCESS, &host, &realm);
                a.mip6_agent_info.push(self.agent_info(gw));
                (a, format!("AAR authorized, gateway {gw}"))
            }
            Err((code, why)) => {
                let mut a = AaAnswer::new(&aar, code, &host, &realm);
                a.error_message = Some(why.clone());
                (a, format!("AAR rejected {}: {why}", code.code()))
            }
        };
        aaa.user_name = aar.user_name.clone();
        out.push(Output::Log {
            conn: 0,
            session: aar.session_id.clone(),
            user: aar.user_name.clone().unwrap_or_default(),
            result: outcome,
        });
        aaa.to_message(header)
    }
}

/// An EAP-Failure answering the packet `request` (RFC 3748 section 4.2): its Identifier,
/// or 0 when the request is not an EAP packet at all.
fn eap_failure(request: &[u8]) -> Vec<u8> {
    let identifier = EapPacket::new_checked(request).map_or(0, |p| p.identifier());
    EapRepr::failure_bytes(identifier).to_vec()
}

/// The user a request is for: User-Name, else the identity of an EAP-Response/Identity.
pub fn user_of(message: &Message) -> String {
    if let Some(name) = message
        .find(avp::USER_NAME, None)
        .and_then(|a| a.as_utf8().ok())
    {
        return name.to_string();
    }
    if let Some(Ok(eap)) = message
        .find(avp::EAP_PAYLOAD, None)
        .map(|avp| EapPacket::new_checked(avp.as_octets()))
    {
        if eap.code() == Code::Response && eap.eap_type() == Some(EapType::Identity) {
            return String::from_utf8_lossy(eap.type_data()).into_owned();
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscriber::Key128;
    use pmip_common::diameter::swm::{AaAnswer, AaRequest, AuthRequestType, DiameterEapRequest};
    use pmip_common::eap::{Peer, PeerConfig, PeerOutput, TypeData, Usim};
    use rand::SeedableRng;
    use std::collections::BTreeMap;

    const K: [u8; 16] = [0x46; 16];
    const OPC: [u8; 16] = [0xcd; 16];
    const IMSI: &str = "001010000000001";
    const HOME: &str = "epc.mnc001.mcc001.3gppnetwork.org";

    /// An in-memory store that records commits, and can be told to fail them.
    #[derive(Default)]
    struct Memory {
        sqn: u64,
        commits: Vec<u64>,
        fail: bool,
    }

    impl Subscribers for Memory {
        fn lookup(&self, imsi: &str) -> Option<(Subscriber, u64)> {
            (imsi == IMSI).then(|| {
                (
                    Subscriber {
                        imsi: IMSI.into(),
                        k: Key128(K),
                        opc: Key128(OPC),
                        amf: [0x80, 0],
                        apns: vec!["internet".into()],
                    },
                    self.sqn,
                )
            })
        }
        fn commit_sqn(&mut self, _imsi: &str, sqn: u64) -> Result<(), String> {
            if self.fail {
                return Err("disk full".into());
            }
            // As the real store: SQNs only move forward.
            self.sqn = self.sqn.max(sqn);
            self.commits.push(sqn);
            Ok(())
        }
    }

    fn config(realm: &str, gateway: &str, homes: &[(&str, &str)]) -> AaaConfig {
        AaaConfig {
            origin_host: format!("aaa.{realm}"),
            origin_realm: realm.into(),
            listen: "127.0.0.1:3868".parse().unwrap(),
            subscribers: "s.toml".into(),
            sqn_state: "q.toml".into(),
            gateways: BTreeMap::from([("internet".to_string(), gateway.parse().unwrap())]),
            home_realms: homes
                .iter()
                .map(|(r, a)| (r.to_string(), a.parse::<SocketAddr>().unwrap().into()))
                .collect(),
            peers: Default::default(),
            max_connections: 16,
            cer_timeout_secs: 10,
            tls: None,
            relay_timeout_secs: 2,
            sqn_ind_bits: 0,
            sqn_delta: pmip_common::eap::DEFAULT_SQN_DELTA,
        }
    }

    fn aaa(config: AaaConfig, store: Memory) -> Aaa<Memory> {
        Aaa::new(
            config,
            store,
            Box::new(rand::rngs::StdRng::seed_from_u64(7)),
        )
    }

    fn nai() -> String {
        format!("0{IMSI}@nai.{HOME}")
    }

    fn der(session: &str, eap: Vec<u8>) -> Message {
        DiameterEapRequest {
            session_id: session.into(),
            origin_host: "epdg".into(),
            origin_realm: "test".into(),
            destination_realm: HOME.into(),
            destination_host: None,
            auth_request_type: AuthRequestType::AuthorizeAuthenticate,
            eap_payload: eap,
            user_name: Some(nai()),
            rat_type: Some(0),
            service_selection: Some("internet".into()),
            mip6_feature_vector: None,
            visited_network_identifier: None,
            route_record: vec![],
            proxy_info: vec![],
            other: vec![],
        }
        .to_message(11, 22)
    }

    fn identity(id: &str) -> Vec<u8> {
        EapRepr::Response {
            identifier: 0,
            data: TypeData::Identity(id.as_bytes().to_vec()),
        }
        .to_bytes()
        .unwrap()
    }

    fn sent(out: &[Output]) -> Vec<Message> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send { message, .. } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    /// Runs a whole EAP-AKA conversation; returns the final DEA and the peer's MSK.
    fn run(aaa: &mut Aaa<Memory>, eap_identity: Option<&str>) -> (Message, Vec<u8>, usize) {
        let mut peer = Peer::new(
            PeerConfig {
                permanent_identity: nai().into_bytes(),
                eap_identity: eap_identity.map(|s| s.as_bytes().to_vec()),
                result_indication: false,
            },
            Usim::new(&K, &OPC, Sqn::new(0).unwrap()),
        );
        let now = Instant::now();
        let mut eap = identity(eap_identity.unwrap_or(&nai()));
        let mut msk = Vec::new();
        for round in 1..6 {
            let mut out = Vec::new();
            let request = Input::Request {
                conn: 1,
                message: der("s;1", eap.clone()),
            };
            aaa.handle(request, now, &mut out);
            let answer = sent(&out).pop().unwrap();
            assert_eq!(answer.header.hop_by_hop, 11);
            let payload = answer.find(avp::EAP_PAYLOAD, None).unwrap().as_octets();
            let mut next = None;
            for o in peer.handle(payload) {
                match o {
                    PeerOutput::Send(p) => next = Some(p),
                    PeerOutput::Success(k) => msk = k.msk.to_vec(),
                    _ => {}
                }
            }
            if answer.result_code() != Some(result::DIAMETER_MULTI_ROUND_AUTH) {
                return (answer, msk, round);
            }
            eap = next.unwrap();
        }
        panic!("no end");
    }

    /// One DER with `eap` on session "s;1": the answer's EAP payload fed to `peer`, the
    /// peer's next packet, the result code and the log lines.
    fn exchange(
        aaa: &mut Aaa<Memory>,
        peer: &mut Peer,
        eap: Vec<u8>,
    ) -> (Option<Vec<u8>>, Option<u32>, Vec<String>) {
        let mut out = Vec::new();
        let request = Input::Request {
            conn: 1,
            message: der("s;1", eap),
        };
        aaa.handle(request, Instant::now(), &mut out);
        let answer = sent(&out).pop().unwrap();
        let payload = answer.find(avp::EAP_PAYLOAD, None).unwrap().as_octets();
        let next = peer.handle(payload).into_iter().find_map(|o| match o {
            PeerOutput::Send(p) => Some(p),
            _ => None,
        });
        let logs = out
            .iter()
            .filter_map(|o| match o {
                Output::Log { result, .. } => Some(result.clone()),
                _ => None,
            })
            .collect();
        (next, answer.result_code(), logs)
    }

    fn usim_at(sqn_ms: u64) -> Peer {
        Peer::new(
            PeerConfig {
                permanent_identity: nai().into_bytes(),
                eap_identity: None,
                result_indication: false,
            },
            Usim::new(&K, &OPC, Sqn::new(sqn_ms).unwrap()),
        )
    }

    #[test]
    fn a_resynchronisation_keeps_the_aaa_counter_when_it_is_ahead_and_in_range() {
        // TS 33.102 6.3.5 steps 2 and 3: the USIM (at 150) refuses the challenge built on
        // 101; meanwhile the counter moved to 200 (other conversations, or an IMSI range's
        // shared counter). 201 is fresh for the USIM: the AAA goes on from its own counter
        // and never hands out 151, below a value it used.
        let mut aaa = aaa(
            config(HOME, "10.0.0.3", &[]),
            Memory {
                sqn: 100,
                ..Memory::default()
            },
        );
        let mut peer = usim_at(150);
        let (next, _, _) = exchange(&mut aaa, &mut peer, identity(&nai()));
        aaa.store.sqn = 200;
        let (next, code, logs) = exchange(&mut aaa, &mut peer, next.unwrap());
        assert_eq!(code, Some(result::DIAMETER_MULTI_ROUND_AUTH));
        assert!(
            logs.iter()
                .any(|l| l.contains("SQN_MS 150, kept SQN_HE, next SQN 201")),
            "{logs:?}"
        );
        let (_, code, _) = exchange(&mut aaa, &mut peer, next.unwrap());
        assert_eq!(code, Some(result::DIAMETER_SUCCESS));
        assert_eq!(aaa.store.commits, vec![101, 201]);
        assert_eq!(peer.usim().sqn_ms(), Sqn::new(201).unwrap());
    }

    #[test]
    fn a_resynchronisation_resets_to_the_usim_when_the_aaa_is_behind_or_too_far_ahead() {
        for (he, ms, next) in [(5, 1000, 1001), (1000 + (1 << 28), 1000, 1001)] {
            let mut aaa = aaa(
                config(HOME, "10.0.0.3", &[]),
                Memory {
                    sqn: he,
                    ..Memory::default()
                },
            );
            let mut peer = usim_at(ms);
            let (n, _, _) = exchange(&mut aaa, &mut peer, identity(&nai()));
            let (n, _, logs) = exchange(&mut aaa, &mut peer, n.unwrap());
            let want = format!("SQN_MS {ms}, reset SQN_HE to SQN_MS, next SQN {next}");
            assert!(logs.iter().any(|l| l.contains(&want)), "{logs:?}");
            let (_, code, _) = exchange(&mut aaa, &mut peer, n.unwrap());
            assert_eq!(code, Some(result::DIAMETER_SUCCESS));
            assert_eq!(aaa.store.commits, vec![he + 1, next]);
        }
    }

    #[test]
    fn home_success_commits_the_sqn_and_names_the_gateway() {
        let mut aaa = aaa(config(HOME, "10.0.0.3", &[]), Memory::default());
        let (dea, msk, rounds) = run(&mut aaa, None);
        assert_eq!(rounds, 2);
        let dea = DiameterEapAnswer::parse(&dea).unwrap();
        assert!(dea.result.is_success());
        assert_eq!(dea.eap_master_session_key, Some(msk));
        assert_eq!(
            dea.mip6_agent_info[0].home_agent_addresses,
            vec!["10.0.0.3".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(aaa.store.commits, vec![1]);
        // AAR for the APN, then STR removes the session.
        let aar = AaRequest {
            session_id: "s;1".into(),
            origin_host: "epdg".into(),
            origin_realm: "test".into(),
            destination_realm: HOME.into(),
            destination_host: None,
            auth_request_type: AuthRequestType::AuthorizeOnly,
            user_name: Some(nai()),
            service_selection: Some("corp".into()),
            visited_network_identifier: None,
            mip6_agent_info: vec![],
            route_record: vec![],
            proxy_info: vec![],
            other: vec![],
        };
        let mut out = Vec::new();
        let message = aar.to_message(5, 5);
        aaa.handle(
            Input::Request { conn: 1, message },
            Instant::now(),
            &mut out,
        );
        let answer = AaAnswer::parse(&sent(&out)[0]).unwrap();
        assert_eq!(
            answer.result,
            AnswerResult::tgpp(result::DIAMETER_ERROR_USER_NO_APN_SUBSCRIPTION)
        );
        assert_eq!(aaa.session_count(), 1);
    }

    #[test]
    fn an_abandoned_conversation_is_dropped_after_the_idle_timeout() {
        let mut aaa = aaa(config(HOME, "10.0.0.3", &[]), Memory::default());
        let now = Instant::now();
        let mut out = Vec::new();
        let message = der("s;1", identity(&nai()));
        aaa.handle(Input::Request { conn: 1, message }, now, &mut out);
        assert_eq!(aaa.session_count(), 1);
        assert_eq!(aaa.poll_timeout(), Some(now + EAP_IDLE_TIMEOUT));
        aaa.handle(Input::Timeout, now + EAP_IDLE_TIMEOUT, &mut out);
        assert_eq!(aaa.session_count(), 0);
        assert_eq!(aaa.poll_timeout(), None);
    }

    /// A Proxy-Info whose member overruns the group (RFC 6733 section 6.7.2) is a
    /// malformed request: DIAMETER_INVALID_AVP_LENGTH (5014) with the group around the
    /// offending member as the Failed-AVP (section 7.5), not a multi-round answer that
    /// echoes the broken group back; and no session is left.
    #[test]
    fn a_proxy_info_whose_member_overruns_it_is_5014_with_the_failed_avp() {
        let mut aaa = aaa(config(HOME, "10.0.0.3", &[]), Memory::default());
        let mut request = der("s;1", identity(&nai()));
        let host = Avp::identity(avp::PROXY_HOST, "proxy.example");
        let mut overrun = host.to_vec();
        // The member's Length says 200 octets; the group ends long before.
        overrun[5..8].copy_from_slice(&[0, 0, 200]);
        request.push(Avp::new(avp::PROXY_INFO, overrun));
        let mut out = Vec::new();
        aaa.handle(
            Input::Request {
                conn: 1,
                message: request,
            },
            Instant::now(),
            &mut out,
        );
        let answer = sent(&out).pop().unwrap();
        // A permanent failure, not a protocol error: no E bit (section 7.1.5).
        assert!(!answer.header.flags.error());
        assert_eq!(
            answer.result_code(),
            Some(result::DIAMETER_INVALID_AVP_LENGTH)
        );
        let failed = answer
            .find(avp::FAILED_AVP, None)
            .unwrap()
            .as_grouped()
            .unwrap();
        assert_eq!(
            failed[0].code,
            avp::PROXY_INFO,
            "the group around the member"
        );
        assert_eq!(aaa.session_count(), 0);
    }

    #[test]
    fn a_pseudonym_gets_an_identity_request() {
        let mut aaa = aaa(config(HOME, "10.0.0.3", &[]), Memory::default());
        let (dea, _, rounds) = run(&mut aaa, Some("anonymous@nai.epc"));
        assert_eq!(dea.result_code(), Some(result::DIAMETER_SUCCESS));
        assert_eq!(rounds, 3, "identity, AKA-Identity, challenge");
    }

    #[test]
    fn no_challenge_leaves_when_the_sqn_cannot_be_persisted() {
        let store = Memory {
            fail: true,
            ..Memory::default()
        };
        let mut aaa = aaa(config(HOME, "10.0.0.3", &[]), store);
        let mut out = Vec::new();
        let message = der("s;1", identity(&nai()));
        aaa.handle(
            Input::Request { conn: 1, message },
            Instant::now(),
            &mut out,
        );
        let answer = &sent(&out)[0];
        assert_eq!(
            answer.result_code(),
            Some(result::DIAMETER_UNABLE_TO_COMPLY)
        );
        assert!(answer.find(avp::EAP_PAYLOAD, None).is_none());
        assert_eq!(aaa.session_count(), 0);
    }

    #[test]
    fn visited_relays_and_appends_its_gateway_after_the_home_one() {
        let home_addr = "127.0.0.10:3868";
        let mut aaa = aaa(
            config(
                "epc.mnc002.mcc001.3gppnetwork.org",
                "10.2.0.3",
                &[(HOME, home_addr)],
            ),
            Memory::default(),
        );
        let now = Instant::now();
        let mut out = Vec::new();
        let request = der("s;1", identity(&nai()));
        aaa.handle(
            Input::Request {
                conn: 4,
                message: request.clone(),
            },
            now,
            &mut out,
        );
        let relayed = out
            .iter()
            .find_map(|o| match o {
                Output::Relay { message, addr, .. } => Some((message.clone(), *addr)),
                _ => None,
            })
            .unwrap();
        assert_eq!(relayed.1, home_addr.parse().unwrap());
        let relayed = relayed.0;
        assert_eq!(relayed.session_id(), Some("s;1"));
        assert_eq!(relayed.header.end_to_end, 22);
        assert_ne!(relayed.header.hop_by_hop, 11);
        assert!(
            relayed.find(avp::ROUTE_RECORD, None).is_some_and(
                |r| r.as_identity().ok() == Some("aaa.epc.mnc002.mcc001.3gppnetwork.org")
            )
        );
        assert_eq!(aaa.poll_timeout(), Some(now + Duration::from_secs(2)));
        // The home's final success, with the home gateway.
        let der = DiameterEapRequest::parse(&relayed).unwrap();
        let mut dea = DiameterEapAnswer::new(&der, AnswerResult::SUCCESS, "aaa.home", HOME);
        dea.mip6_agent_info
            .push(Mip6AgentInfo::address("10.1.0.3".parse().unwrap()));
        let message = dea.to_message(&relayed.header);
        let mut out = Vec::new();
        aaa.handle(
            Input::HomeAnswer {
                realm: HOME.into(),
                message,
            },
            now,
            &mut out,
        );
        let answer = sent(&out).pop().unwrap();
        assert_eq!(answer.header.hop_by_hop, 11);
        let dea = DiameterEapAnswer::parse(&answer).unwrap();
        let gateways: Vec<IpAddr> = dea
            .mip6_agent_info
            .iter()
            .flat_map(|i| i.home_agent_addresses.clone())
            .collect();
        assert_eq!(
            gateways,
            vec![
                "10.1.0.3".parse::<IpAddr>().unwrap(),
                "10.2.0.3".parse().unwrap()
            ]
        );
        assert_eq!(
            dea.mip6_agent_info[1]
                .home_agent_host
                .as_ref()
                .map(|h| h.destination_realm.as_str()),
            Some("epc.mnc002.mcc001.3gppnetwork.org")
        );
        assert_eq!(aaa.poll_timeout(), None);
    }

    #[test]
    fn no_visited_gateway_when_the_home_named_none() {
        let mut aaa = aaa(
            config(
                "epc.mnc002.mcc001.3gppnetwork.org",
                "10.2.0.3",
                &[(HOME, "127.0.0.10:3868")],
            ),
            Memory::default(),
        );
        let now = Instant::now();
        let mut out = Vec::new();
        let request = der("s;1", identity(&nai()));
        aaa.handle(
            Input::Request {
                conn: 4,
                message: request,
            },
            now,
            &mut out,
        );
        let relayed = out
            .iter()
            .find_map(|o| match o {
                Output::Relay { message, .. } => Some(message.clone()),
                _ => None,
            })
            .unwrap();
        // Authenticated, but the home did not authorize the APN: no home gateway.
        let der = DiameterEapRequest::parse(&relayed).unwrap();
        let dea = DiameterEapAnswer::new(&der, AnswerResult::SUCCESS, "aaa.home", HOME);
        let message = dea.to_message(&relayed.header);
        let mut out = Vec::new();
        aaa.handle(
            Input::HomeAnswer {
                realm: HOME.into(),
                message,
            },
            now,
            &mut out,
        );
        let answer = sent(&out).pop().unwrap();
        let dea = DiameterEapAnswer::parse(&answer).unwrap();
        assert!(dea.mip6_agent_info.is_empty(), "{:?}", dea.mip6_agent_info);
    }

    #[test]
    fn a_silent_home_gets_unable_to_deliver_at_the_relay_timeout() {
        let mut aaa = aaa(
            config(
                "epc.mnc002.mcc001.3gppnetwork.org",
                "10.2.0.3",
                &[(HOME, "127.0.0.10:3868")],
            ),
            Memory::default(),
        );
        let now = Instant::now();
        let mut out = Vec::new();
        let message = der("s;1", identity(&nai()));
        aaa.handle(Input::Request { conn: 4, message }, now, &mut out);
        out.clear();
        aaa.handle(Input::Timeout, now + Duration::from_millis(1999), &mut out);
        assert!(sent(&out).is_empty());
        aaa.handle(Input::Timeout, now + Duration::from_secs(2), &mut out);
        let answer = sent(&out).pop().unwrap();
        assert_eq!(
            answer.result_code(),
            Some(result::DIAMETER_UNABLE_TO_DELIVER)
        );
        assert!(answer.header.flags.error());
        assert_eq!(answer.header.hop_by_hop, 11);
        // And an unreachable home is answered at once.
        let mut out = Vec::new();
        let message = der("s;2", identity(&nai()));
        aaa.handle(Input::Request { conn: 4, message }, now, &mut out);
        aaa.handle(Input::HomeUnreachable { realm: HOME.into() }, now, &mut out);
        assert_eq!(
            sent(&out).pop().and_then(|m| m.result_code()),
            Some(result::DIAMETER_UNABLE_TO_DELIVER)
        );
    }
}
