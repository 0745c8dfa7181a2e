//! The EAP-AKA peer with a software USIM (RFC 4187 peer side, TS 33.102 section 6.3.3),
//! as a sans-IO state machine: fed the server's EAP packets, it answers identity
//! requests, checks AUTN (MAC-A with f1, then SQN freshness), and answers with RES and
//! AT_MAC, with AUTS when the SQN is not fresh, or with Authentication-Reject when the
//! network's MAC is wrong. No clock, no I/O, no randomness.
//!
//! SQN freshness is TS 33.102 Annex C simplified to one counter: SQN must be above the
//! highest accepted SQN_MS and at most `delta` above it.

use super::aka::{
    attribute_type, AkaRepr, Attribute, ClientErrorCode, NotificationCode, Res, Subtype,
};
use super::error::EapError;
use super::keys::{fill_mac, verify_mac, Checkcode, SessionKeys};
use super::milenage::{AutnError, Milenage, Sqn};
use super::packet::{Code, EapPacket, EapRepr, EapType, TypeData};

/// TS 33.102 Annex C.2.2's suggested limit on how far ahead an SQN may jump (2^28).
pub const DEFAULT_SQN_DELTA: u64 = 1 << 28;

/// At most this many AKA-Identity rounds are answered (RFC 4187 section 4.1.5).
const MAX_IDENTITY_ROUNDS: u8 = 3;

/// A software USIM: Milenage with K and OPc, and the SQN_MS of the freshness check.
#[derive(Debug, Clone)]
pub struct Usim {
    milenage: Milenage,
    /// The highest SQN accepted so far.
    sqn_ms: Sqn,
    /// Largest accepted jump above SQN_MS.
    delta: u64,
}

impl Usim {
    pub fn new(k: &[u8; 16], opc: &[u8; 16], sqn_ms: Sqn) -> Self {
        Usim {
            milenage: Milenage::new(k, opc),
            sqn_ms,
            delta: DEFAULT_SQN_DELTA,
        }
    }

    /// Sets how far above SQN_MS an SQN may be and still be fresh.
    pub fn with_delta(mut self, delta: u64) -> Self {
        self.delta = delta;
        self
    }

    pub fn sqn_ms(&self) -> Sqn {
        self.sqn_ms
    }

    fn is_fresh(&self, sqn: Sqn) -> bool {
        sqn > self.sqn_ms && sqn.value() - self.sqn_ms.value() <= self.delta
    }
}

/// Peer options.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The permanent identity, `0<IMSI>@nai.epc...` (see
    /// [`super::identity::permanent_identity`]), given in AT_IDENTITY.
    pub permanent_identity: Vec<u8>,
    /// What to answer an EAP-Request/Identity with; the permanent identity if `None`.
    pub eap_identity: Option<Vec<u8>>,
    /// Take up result indications (AT_RESULT_IND) when the server offers them.
    pub result_indication: bool,
}

/// Something that went wrong on the peer's side; the server hears of it through the
/// response named, and the conversation normally ends with EAP-Failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerProblem {
    /// AUTN's MAC is not ours: AKA-Authentication-Reject sent.
    AutnMacFailure,
    /// The challenge's SQN was not fresh: AKA-Synchronization-Failure (AUTS) sent.
    SynchronisationFailure { received: Sqn, sqn_ms: Sqn },
    /// The request's AT_MAC did not verify: AKA-Client-Error sent.
    MacInvalid,
    /// AT_CHECKCODE did not match our identity messages: AKA-Client-Error sent.
    CheckcodeMismatch,
    /// A request we could not process: AKA-Client-Error sent.
    Malformed(EapError),
    /// The server notified a failure.
    FailureNotification(NotificationCode),
}

/// An output of [`Peer::handle`], to be carried out in order.
#[derive(Debug, Clone)]
pub enum PeerOutput {
    /// An EAP packet for the server.
    Send(Vec<u8>),
    /// The USIM accepted this SQN as its new SQN_MS (persist it to survive restarts).
    SqnAccepted(Sqn),
    /// Something went wrong; a response saying so has been output just before.
    Problem(PeerProblem),
    /// EAP-Success after a full authentication: the keys to use (MSK for IKEv2 AUTH).
    Success(Box<SessionKeys>),
    /// EAP-Failure, with the last problem we had, if any.
    Failure(Option<PeerProblem>),
    /// The packet was silently discarded (RFC 3748 section 4.1).
    Discarded(EapError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a valid challenge was answered.
    Authenticating,
    /// Challenge answered; waiting for EAP-Success (after a success notification if
    /// `awaiting_notification`).
    Answered {
        awaiting_notification: bool,
    },
    Done,
}

/// One EAP-AKA conversation, peer side.
pub struct Peer {
    config: PeerConfig,
    usim: Usim,
    state: State,
    /// The identity the keys derive from: the last AT_IDENTITY we sent, else our
    /// EAP-Response/Identity.
    identity: Vec<u8>,
    checkcode: Checkcode,
    identity_rounds: u8,
    keys: Option<SessionKeys>,
    /// The last request answered and our answer, for retransmissions.
    last: Option<(Vec<u8>, Vec<u8>)>,
    problem: Option<PeerProblem>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("state", &self.state)
            .field("sqn_ms", &self.usim.sqn_ms)
            .finish_non_exhaustive()
    }
}

impl Peer {
    pub fn new(config: PeerConfig, usim: Usim) -> Self {
        let identity = config
            .eap_identity
            .clone()
            .unwrap_or_else(|| config.permanent_identity.clone());
        Peer {
            config,
            usim,
            state: State::Authenticating,
            identity,
            checkcode: Checkcode::default(),
            identity_rounds: 0,
            keys: None,
            last: None,
            problem: None,
        }
    }

    /// The USIM, with its current SQN_MS.
    pub fn usim(&self) -> &Usim {
        &self.usim
    }

    /// The identity to put in an EAP-Response/Identity the authenticator builds itself
    /// (IKEv2 IDi): the configured EAP identity or the permanent one.
    pub fn eap_identity(&self) -> &[u8] {
        self.config
            .eap_identity
            .as_deref()
            .unwrap_or(&self.config.permanent_identity)
    }

    /// The keys once a challenge was answered.
    pub fn keys(&self) -> Option<&SessionKeys> {
        self.keys.as_ref()
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Processes one packet from the server.
    pub fn handle(&mut self, bytes: &[u8]) -> Vec<PeerOutput> {
        let mut out = Vec::new();
        let view = match EapPacket::new_checked(bytes) {
            Ok(view) => view,
            Err(e) => {
                out.push(PeerOutput::Discarded(e));
                return out;
            }
        };
        let packet = view.as_bytes();
        match view.code() {
            Code::Success => match (self.state, &self.keys) {
                (
                    State::Answered {
                        awaiting_notification: false,
                    },
                    Some(keys),
                ) => {
                    out.push(PeerOutput::Success(Box::new(keys.clone())));
                    self.state = State::Done;
                }
                _ => out.push(PeerOutput::Discarded(EapError::Malformed(
                    "EAP-Success before the authentication completed",
                ))),
            },
            Code::Failure => {
                if self.state == State::Done {
                    out.push(PeerOutput::Discarded(EapError::Malformed(
                        "EAP-Failure after the end",
                    )));
                } else {
                    out.push(PeerOutput::Failure(self.problem.clone()));
                    self.state = State::Done;
                }
            }
            Code::Response | Code::Unknown(_) => out.push(PeerOutput::Discarded(
                EapError::Malformed("the peer takes only Requests"),
            )),
            Code::Request => {
                if self.state == State::Done {
                    out.push(PeerOutput::Discarded(EapError::Malformed(
                        "request after the end",
                    )));
                    return out;
                }
                if let Some((request, response)) = &self.last {
                    if request.as_slice() == packet {
                        // A retransmission: the same answer again (RFC 3748 section 4.1).
                        out.push(PeerOutput::Send(response.clone()));
                        return out;
                    }
                }
                self.request(&view, &mut out);
            }
        }
        out
    }

    fn request<T: AsRef<[u8]>>(&mut self, view: &EapPacket<T>, out: &mut Vec<PeerOutput>) {
        let identifier = view.identifier();
        let packet = view.as_bytes();
        let response = match view.eap_type() {
            Some(EapType::Identity) => {
                self.identity = self.eap_identity().to_vec();
                EapRepr::Response {
                    identifier,
                    data: TypeData::Identity(self.identity.clone()),
                }
            }
            Some(EapType::Notification) => EapRepr::Response {
                identifier,
                data: TypeData::Notification(Vec::new()),
            },
            Some(EapType::Aka) => match AkaRepr::parse(view.type_data()) {
                Ok(repr) => match self.aka_request(identifier, packet, &repr, out) {
                    Some(bytes) => return self.answer(packet, bytes, out),
                    None => return,
                },
                Err(e) => self.client_error(identifier, PeerProblem::Malformed(e), out),
            },
            _ => EapRepr::Response {
                identifier,
                data: TypeData::Nak(vec![EapType::Aka]),
            },
        };
        match response.to_bytes() {
            Ok(bytes) => self.answer(packet, bytes, out),
            Err(e) => out.push(PeerOutput::Discarded(e)),
        }
    }

    fn answer(&mut self, request: &[u8], response: Vec<u8>, out: &mut Vec<PeerOutput>) {
        self.last = Some((request.to_vec(), response.clone()));
        out.push(PeerOutput::Send(response));
    }

    /// An EAP-Response/AKA-Client-Error "unable to process packet".
    fn client_error(
        &mut self,
        identifier: u8,
        problem: PeerProblem,
        out: &mut Vec<PeerOutput>,
    ) -> EapRepr {
        self.problem = Some(problem.clone());
        out.push(PeerOutput::Problem(problem));
        EapRepr::Response {
            identifier,
            data: TypeData::Aka(AkaRepr::new(
                Subtype::ClientError,
                vec![Attribute::ClientErrorCode(
                    ClientErrorCode::UnableToProcessPacket,
                )],
            )),
        }
    }

    /// Answers one EAP-AKA request: the emitted response, or `None` if nothing is sent.
    fn aka_request(
        &mut self,
        identifier: u8,
        packet: &[u8],
        repr: &AkaRepr,
        out: &mut Vec<PeerOutput>,
    ) -> Option<Vec<u8>> {
        let response = match repr.subtype {
            Subtype::Identity => return self.aka_identity(identifier, packet, repr, out),
            Subtype::Challenge => return self.challenge(identifier, packet, repr, out),
            Subtype::Notification => return self.notification(identifier, packet, repr, out),
            _ => self.client_error(
                identifier,
                PeerProblem::Malformed(EapError::Malformed("unexpected EAP-AKA request")),
                out,
            ),
        };
        self.emit(&response, None, out)
    }

    /// Emits a response, filling its AT_MAC with `k_aut` if given.
    fn emit(
        &mut self,
        response: &EapRepr,
        k_aut: Option<&[u8; 16]>,
        out: &mut Vec<PeerOutput>,
    ) -> Option<Vec<u8>> {
        let result = response.to_bytes().and_then(|mut bytes| {
            if let Some(k) = k_aut {
                fill_mac(k, &mut bytes, &[])?;
            }
            Ok(bytes)
        });
        match result {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                out.push(PeerOutput::Discarded(e));
                None
            }
        }
    }

    /// RFC 4187 section 4.1: answer AT_PERMANENT_ID_REQ, AT_FULLAUTH_ID_REQ and
    /// AT_ANY_ID_REQ alike with the permanent identity (we have no pseudonym or
    /// re-authentication identity).
    fn aka_identity(
        &mut self,
        identifier: u8,
        packet: &[u8],
        repr: &AkaRepr,
        out: &mut Vec<PeerOutput>,
    ) -> Option<Vec<u8>> {
        self.identity_rounds = self.identity_rounds.saturating_add(1);
        let requests = [
            attribute_type::AT_PERMANENT_ID_REQ,
            attribute_type::AT_FULLAUTH_ID_REQ,
            attribute_type::AT_ANY_ID_REQ,
        ]
        .iter()
        .filter(|&&t| repr.has(t))
        .count();
        if self.identity_rounds > MAX_IDENTITY_ROUNDS || requests > 1 {
            let response = self.client_error(
                identifier,
                PeerProblem::Malformed(EapError::Malformed("AKA-Identity request not acceptable")),
                out,
            );
            return self.emit(&response, None, out);
        }
        self.checkcode.add(packet);
        let mut attributes = Vec::new();
        if requests == 1 {
            self.identity = self.config.permanent_identity.clone();
            attributes.push(Attribute::Identity(self.identity.clone()));
        }
        let response = EapRepr::Response {
            identifier,
            data: TypeData::Aka(AkaRepr::new(Subtype::Identity, attributes)),
        };
        let bytes = self.emit(&response, None, out)?;
        self.checkcode.add(&bytes);
        Some(bytes)
    }

    fn challenge(
        &mut self,
        identifier: u8,
        packet: &[u8],
        repr: &AkaRepr,
        out: &mut Vec<PeerOutput>,
    ) -> Option<Vec<u8>> {
        let (Some(rand), Some(autn), Some(_)) = (repr.rand(), repr.autn(), repr.mac()) else {
            let response = self.client_error(
                identifier,
                PeerProblem::Malformed(EapError::Malformed(
                    "AKA-Challenge without AT_RAND, AT_AUTN or AT_MAC",
                )),
                out,
            );
            return self.emit(&response, None, out);
        };
        let checked = match self.usim.milenage.check_autn(&rand, &autn) {
            Ok(checked) => checked,
            Err(AutnError::MacFailure) => {
                self.problem = Some(PeerProblem::AutnMacFailure);
                out.push(PeerOutput::Problem(PeerProblem::AutnMacFailure));
                let response = EapRepr::Response {
                    identifier,
                    data: TypeData::Aka(AkaRepr::new(Subtype::AuthenticationReject, vec![])),
                };
                return self.emit(&response, None, out);
            }
        };
        if !self.usim.is_fresh(checked.sqn) {
            let problem = PeerProblem::SynchronisationFailure {
                received: checked.sqn,
                sqn_ms: self.usim.sqn_ms,
            };
            self.problem = Some(problem.clone());
            out.push(PeerOutput::Problem(problem));
            let auts = self.usim.milenage.auts(&rand, self.usim.sqn_ms);
            let response = EapRepr::Response {
                identifier,
                data: TypeData::Aka(AkaRepr::new(
                    Subtype::SynchronizationFailure,
                    vec![Attribute::Auts(auts)],
                )),
            };
            return self.emit(&response, None, out);
        }
        let keys = SessionKeys::derive(&self.identity, &checked.keys.ik, &checked.keys.ck);
        if !matches!(verify_mac(&keys.k_aut, packet, &[]), Ok(true)) {
            let response = self.client_error(identifier, PeerProblem::MacInvalid, out);
            return self.emit(&response, None, out);
        }
        if let Some(theirs) = repr.checkcode() {
            if theirs != self.checkcode.value() {
                let response = self.client_error(identifier, PeerProblem::CheckcodeMismatch, out);
                return self.emit(&response, None, out);
            }
        }
        self.usim.sqn_ms = checked.sqn;
        out.push(PeerOutput::SqnAccepted(checked.sqn));

        let result_indication =
            self.config.result_indication && repr.has(attribute_type::AT_RESULT_IND);
        let mut attributes = vec![Attribute::Res(Res::from_octets(&checked.keys.res))];
        if result_indication {
            attributes.push(Attribute::ResultInd);
        }
        if repr.checkcode().is_some() {
            attributes.push(Attribute::Checkcode(self.checkcode.value()));
        }
        attributes.push(Attribute::Mac([0; 16]));
        let response = EapRepr::Response {
            identifier,
            data: TypeData::Aka(AkaRepr::new(Subtype::Challenge, attributes)),
        };
        let bytes = self.emit(&response, Some(&keys.k_aut), out)?;
        self.keys = Some(keys);
        self.problem = None;
        self.state = State::Answered {
            awaiting_notification: result_indication,
        };
        Some(bytes)
    }

    /// RFC 4187 section 6.1: a notification after the challenge (P bit clear) must carry
    /// a valid AT_MAC, and so does our answer to it.
    fn notification(
        &mut self,
        identifier: u8,
        packet: &[u8],
        repr: &AkaRepr,
        out: &mut Vec<PeerOutput>,
    ) -> Option<Vec<u8>> {
        let Some(code) = repr.notification() else {
            let response = self.client_error(
                identifier,
                PeerProblem::Malformed(EapError::Malformed("AKA-Notification without a code")),
                out,
            );
            return self.emit(&response, None, out);
        };
        let k_aut = if code.is_phase_bit() {
            None
        } else {
            let valid = self
                .keys
                .as_ref()
                .map(|keys| matches!(verify_mac(&keys.k_aut, packet, &[]), Ok(true)));
            if valid != Some(true) {
                let response = self.client_error(identifier, PeerProblem::MacInvalid, out);
                return self.emit(&response, None, out);
            }
            self.keys.as_ref().map(|keys| keys.k_aut)
        };
        if code.is_success() {
            if let State::Answered { .. } = self.state {
                self.state = State::Answered {
                    awaiting_notification: false,
                };
            }
        } else {
            let problem = PeerProblem::FailureNotification(code);
            self.problem = Some(problem.clone());
            out.push(PeerOutput::Problem(problem));
        }
        let attributes = if k_aut.is_some() {
            vec![Attribute::Mac([0; 16])]
        } else {
            vec![]
        };
        let response = EapRepr::Response {
            identifier,
            data: TypeData::Aka(AkaRepr::new(Subtype::Notification, attributes)),
        };
        self.emit(&response, k_aut.as_ref(), out)
    }
}
