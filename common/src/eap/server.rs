//! The EAP-AKA server (the 3GPP AAA's side of RFC 4187 full authentication), as a sans-IO
//! state machine: one [`Server`] per EAP conversation, fed the peer's packets and the
//! subscriber record it asks for, answering with EAP packets and results. It holds no
//! clock and does no I/O; randomness (RAND, the first Identifier) comes from the
//! caller's RNG so tests are deterministic.
//!
//! The sequence: EAP-Response/Identity (sent by the authenticator, or answering our
//! EAP-Request/Identity); an EAP-Request/AKA-Identity with AT_PERMANENT_ID_REQ when the
//! identity is not an IMSI-based permanent one; [`ServerOutput::SubscriberNeeded`]; the
//! AKA-Challenge with the next SQN, reported as [`ServerOutput::SqnUsed`] for the caller
//! to persist before it sends the challenge; then EAP-Success with the MSK, or
//! EAP-Failure. A Synchronization-Failure is answered once (a second one fails): AUTS is
//! checked (MAC-S), the subscriber's current SQN_HE is asked for again
//! ([`ServerOutput::SubscriberNeeded`]), and TS 33.102 section 6.3.5 with annex C decides
//! (the `resync` module, [`ServerConfig::sqn`]): SQN_HE in range is kept and the new
//! challenge uses SQN_HE + 1; otherwise SEQ_HE is reset to SEQ_MS and the challenge uses
//! the next SEQ. Either way it is reported ([`ServerOutput::Resynchronised`]).

use rand::RngCore;

use super::aka::{AkaMessage, AkaRepr, Attribute, ClientErrorCode, NotificationCode, Subtype};
use super::error::EapError;
use super::identity::permanent_identity_imsi;
use super::keys::{fill_mac, verify_mac, Checkcode, SessionKeys};
use super::milenage::{ct_eq, AuthVector, Milenage, Sqn};
use super::packet::{Code, EapPacket, EapRepr, EapType, TypeData};
use super::resync::{Resynchronisation, SqnProfile};

/// What the server needs to know of a subscriber (from the caller's subscriber store).
#[derive(Clone)]
pub struct Subscriber {
    pub k: [u8; 16],
    pub opc: [u8; 16],
    pub amf: [u8; 2],
    /// The highest sequence number already used for this subscriber (SQN_HE); the next
    /// challenge uses the one after it.
    pub sqn: Sqn,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("amf", &self.amf)
            .field("sqn", &self.sqn)
            .finish_non_exhaustive()
    }
}

/// Server options.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerConfig {
    /// Offer result indications (AT_RESULT_IND, RFC 4187 section 6.2): when the peer
    /// takes them up, success is announced with an AKA-Notification before EAP-Success.
    pub result_indication: bool,
    /// What the HE assumes of the USIMs' freshness check, for resynchronisation.
    pub sqn: SqnProfile,
}

/// An input to [`Server::handle`].
#[derive(Debug)]
pub enum ServerInput<'a> {
    /// Open the conversation with an EAP-Request/Identity.
    Start,
    /// An EAP packet from the peer (the first may be the EAP-Response/Identity the
    /// authenticator obtained itself).
    Packet(&'a [u8]),
    /// The answer to [`ServerOutput::SubscriberNeeded`]: `None` if the IMSI is unknown.
    Subscriber(Option<Subscriber>),
}

/// The successful end of an authentication.
#[derive(Debug, Clone)]
pub struct AuthSuccess {
    pub imsi: String,
    /// The identity the keys were derived from.
    pub identity: Vec<u8>,
    pub keys: SessionKeys,
}

/// Why an authentication failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerFailure {
    #[error("unknown subscriber")]
    UnknownSubscriber,
    #[error("the peer gave no IMSI-based permanent identity")]
    NoPermanentIdentity,
    /// The peer refused our AUTN (its K or OPc differs from ours).
    #[error("the peer sent AKA-Authentication-Reject")]
    AuthenticationReject,
    #[error("RES differs from XRES")]
    ResMismatch,
    #[error("AT_MAC invalid")]
    MacInvalid,
    #[error("AT_CHECKCODE differs from the identity messages exchanged")]
    CheckcodeMismatch,
    /// AUTS did not verify, or a second Synchronization-Failure came.
    #[error("resynchronisation failed")]
    SynchronisationFailed,
    #[error("the peer sent AKA-Client-Error {0:?}")]
    ClientError(ClientErrorCode),
    #[error("the peer does not do EAP-AKA (Nak)")]
    Nak,
    #[error("the subscriber's 48-bit SQN is used up")]
    SqnExhausted,
    #[error("malformed or unexpected message: {0}")]
    Malformed(EapError),
}

/// An output of [`Server::handle`], to be carried out in order.
#[derive(Debug, Clone)]
pub enum ServerOutput {
    /// An EAP packet for the peer.
    Send(Vec<u8>),
    /// Look this IMSI up and answer with [`ServerInput::Subscriber`].
    SubscriberNeeded { imsi: String },
    /// Persist `sqn` as the subscriber's highest used SQN before sending the packet
    /// that follows (a challenge built on it).
    SqnUsed { imsi: String, sqn: Sqn },
    /// A verified AUTS: the USIM's SQN_MS, and whether SQN_HE was kept or reset (TS
    /// 33.102 section 6.3.5).
    Resynchronised {
        imsi: String,
        sqn_ms: Sqn,
        decision: Resynchronisation,
    },
    /// Authenticated; the EAP-Success has been output just before.
    Success(Box<AuthSuccess>),
    /// Failed; the EAP-Failure has been output just before.
    Failure(ServerFailure),
    /// The input was silently discarded (RFC 3748 section 4.1): wrong Identifier or
    /// Code, unparseable, or not expected now.
    Discarded(EapError),
}

#[derive(Debug)]
enum State {
    Idle,
    WaitIdentity,
    WaitAkaIdentity,
    WaitSubscriber {
        imsi: String,
    },
    /// A verified AUTS: the subscriber's current SQN_HE is asked for.
    WaitResyncSubscriber {
        sqn_ms: Sqn,
    },
    WaitChallengeResponse,
    WaitNotificationResponse,
    Done,
}

/// Everything bound to the current challenge.
struct Challenge {
    imsi: String,
    milenage: Milenage,
    amf: [u8; 2],
    vector: AuthVector,
    /// The SQN the challenge was built on.
    sqn: Sqn,
    keys: SessionKeys,
    resynchronised: bool,
}

/// One EAP-AKA conversation, server side.
pub struct Server {
    config: ServerConfig,
    state: State,
    /// Identifier of the outstanding request.
    identifier: u8,
    /// The identity the keys are derived from: the last AT_IDENTITY, else the
    /// EAP-Response/Identity.
    identity: Vec<u8>,
    checkcode: Checkcode,
    challenge: Option<Challenge>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("state", &self.state)
            .field("identifier", &self.identifier)
            .finish_non_exhaustive()
    }
}

impl Server {
    pub fn new(config: ServerConfig) -> Self {
        Server {
            config,
            state: State::Idle,
            identifier: 0,
            identity: Vec::new(),
            checkcode: Checkcode::default(),
            challenge: None,
        }
    }

    /// The identity the peer authenticated with (empty before it gave one).
    pub fn identity(&self) -> &[u8] {
        &self.identity
    }

    /// The IMSI under authentication, once known.
    pub fn imsi(&self) -> Option<&str> {
        match &self.state {
            State::WaitSubscriber { imsi } => Some(imsi),
            _ => self.challenge.as_ref().map(|c| c.imsi.as_str()),
        }
    }

    /// True once Success or Failure has been output.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Advances the conversation by one input.
    pub fn handle(&mut self, input: ServerInput<'_>, rng: &mut dyn RngCore) -> Vec<ServerOutput> {
        let mut out = Vec::new();
        match input {
            ServerInput::Start => self.start(rng, &mut out),
            ServerInput::Subscriber(subscriber) => self.subscriber(subscriber, rng, &mut out),
            ServerInput::Packet(bytes) => self.packet(bytes, rng, &mut out),
        }
        out
    }

    fn start(&mut self, rng: &mut dyn RngCore, out: &mut Vec<ServerOutput>) {
        if !matches!(self.state, State::Idle) {
            out.push(ServerOutput::Discarded(EapError::Malformed(
                "Start after the conversation began",
            )));
            return;
        }
        let mut first = [0u8; 1];
        rng.fill_bytes(&mut first);
        self.identifier = first[0];
        self.send(
            EapRepr::Request {
                identifier: self.identifier,
                data: TypeData::Identity(Vec::new()),
            },
            out,
        );
        self.state = State::WaitIdentity;
    }

    fn packet(&mut self, bytes: &[u8], rng: &mut dyn RngCore, out: &mut Vec<ServerOutput>) {
        let view = match EapPacket::new_checked(bytes) {
            Ok(view) => view,
            Err(e) => return out.push(ServerOutput::Discarded(e)),
        };
        if view.code() != Code::Response {
            return out.push(ServerOutput::Discarded(EapError::Malformed(
                "the server takes only Responses",
            )));
        }
        let idle = matches!(self.state, State::Idle);
        if !idle && view.identifier() != self.identifier {
            return out.push(ServerOutput::Discarded(EapError::Malformed(
                "Identifier does not match the outstanding request",
            )));
        }
        let packet = view.as_bytes();
        match self.state {
            State::Idle | State::WaitIdentity => {
                if idle {
                    // The authenticator's own EAP-Response/Identity: our requests follow it.
                    self.identifier = view.identifier();
                }
                match EapRepr::parse(&view) {
                    Ok(EapRepr::Response {
                        data: TypeData::Identity(identity),
                        ..
                    }) => self.identity_known(identity, false, out),
                    Ok(_) => out.push(ServerOutput::Discarded(EapError::Malformed(
                        "expected EAP-Response/Identity",
                    ))),
                    Err(e) => out.push(ServerOutput::Discarded(e)),
                }
            }
            State::WaitAkaIdentity => match self.aka_response(&view) {
                Err(failure) => self.fail(failure, out),
                Ok(repr) if repr.subtype == Subtype::Identity => {
                    self.checkcode.add(packet);
                    match repr.identity() {
                        Some(identity) => self.identity_known(identity.to_vec(), true, out),
                        None => self.fail(
                            ServerFailure::Malformed(EapError::Malformed(
                                "AKA-Identity response without AT_IDENTITY",
                            )),
                            out,
                        ),
                    }
                }
                Ok(repr) => self.peer_gave_up(&repr, out),
            },
            State::WaitChallengeResponse => match self.aka_response(&view) {
                Err(failure) => self.fail(failure, out),
                Ok(repr) => match repr.subtype {
                    Subtype::Challenge => self.challenge_response(packet, &repr, out),
                    Subtype::SynchronizationFailure => self.resynchronise(&repr, rng, out),
                    _ => self.peer_gave_up(&repr, out),
                },
            },
            State::WaitNotificationResponse => match self.aka_response(&view) {
                Err(failure) => self.fail(failure, out),
                Ok(repr) if repr.subtype == Subtype::Notification => {
                    let k_aut = self.challenge.as_ref().map(|c| c.keys.k_aut);
                    match k_aut.map(|k| verify_mac(&k, packet, &[])) {
                        Some(Ok(true)) => self.succeed(out),
                        Some(Ok(false)) => self.fail(ServerFailure::MacInvalid, out),
                        Some(Err(e)) => self.fail(ServerFailure::Malformed(e), out),
                        None => self.fail(
                            ServerFailure::Malformed(EapError::Malformed("no challenge")),
                            out,
                        ),
                    }
                }
                Ok(repr) => self.peer_gave_up(&repr, out),
            },
            State::WaitSubscriber { .. } | State::WaitResyncSubscriber { .. } | State::Done => out
                .push(ServerOutput::Discarded(EapError::Malformed(
                    "no request outstanding",
                ))),
        }
    }

    /// Decodes an EAP-AKA Response (a Nak or a malformed message ends the conversation).
    fn aka_response<T: AsRef<[u8]>>(&self, view: &EapPacket<T>) -> Result<AkaRepr, ServerFailure> {
        match view.eap_type() {
            Some(EapType::Aka) => {}
            Some(EapType::Nak) => return Err(ServerFailure::Nak),
            _ => {
                return Err(ServerFailure::Malformed(EapError::Malformed(
                    "expected an EAP-AKA Response",
                )))
            }
        }
        AkaRepr::parse(view.type_data()).map_err(ServerFailure::Malformed)
    }

    /// Authentication-Reject, Client-Error, or a subtype that does not fit.
    fn peer_gave_up(&mut self, repr: &AkaRepr, out: &mut Vec<ServerOutput>) {
        let failure = match repr.subtype {
            Subtype::AuthenticationReject => ServerFailure::AuthenticationReject,
            Subtype::ClientError => ServerFailure::ClientError(
                repr.client_error_code()
                    .unwrap_or(ClientErrorCode::UnableToProcessPacket),
            ),
            _ => ServerFailure::Malformed(EapError::Malformed("unexpected EAP-AKA subtype")),
        };
        self.fail(failure, out);
    }

    fn identity_known(
        &mut self,
        identity: Vec<u8>,
        after_aka_identity: bool,
        out: &mut Vec<ServerOutput>,
    ) {
        let imsi = permanent_identity_imsi(&identity);
        self.identity = identity;
        match imsi {
            Some(imsi) => {
                out.push(ServerOutput::SubscriberNeeded { imsi: imsi.clone() });
                self.state = State::WaitSubscriber { imsi };
            }
            None if after_aka_identity => self.fail(ServerFailure::NoPermanentIdentity, out),
            None => {
                // RFC 4187 section 4.1.2: ask for the permanent identity.
                self.identifier = self.identifier.wrapping_add(1);
                let request = EapRepr::Request {
                    identifier: self.identifier,
                    data: TypeData::Aka(AkaRepr::new(
                        Subtype::Identity,
                        vec![Attribute::PermanentIdReq],
                    )),
                };
                match request.to_bytes() {
                    Ok(bytes) => {
                        self.checkcode.add(&bytes);
                        out.push(ServerOutput::Send(bytes));
                        self.state = State::WaitAkaIdentity;
                    }
                    Err(e) => self.fail(ServerFailure::Malformed(e), out),
                }
            }
        }
    }

    fn subscriber(
        &mut self,
        subscriber: Option<Subscriber>,
        rng: &mut dyn RngCore,
        out: &mut Vec<ServerOutput>,
    ) {
        if let State::WaitResyncSubscriber { sqn_ms } = self.state {
            return self.resynchronised(subscriber, sqn_ms, rng, out);
        }
        let State::WaitSubscriber { imsi } = &self.state else {
            return out.push(ServerOutput::Discarded(EapError::Malformed(
                "subscriber record not asked for",
            )));
        };
        let imsi = imsi.clone();
        let Some(subscriber) = subscriber else {
            return self.fail(ServerFailure::UnknownSubscriber, out);
        };
        let Some(sqn) = subscriber.sqn.next() else {
            return self.fail(ServerFailure::SqnExhausted, out);
        };
        let milenage = Milenage::new(&subscriber.k, &subscriber.opc);
        self.challenge_with(imsi, milenage, subscriber.amf, sqn, false, rng, out);
    }

    /// Builds, records and sends an AKA-Challenge on a fresh RAND and `sqn`.
    #[allow(clippy::too_many_arguments)]
    fn challenge_with(
        &mut self,
        imsi: String,
        milenage: Milenage,
        amf: [u8; 2],
        sqn: Sqn,
        resynchronised: bool,
        rng: &mut dyn RngCore,
        out: &mut Vec<ServerOutput>,
    ) {
        let mut rand = [0u8; 16];
        rng.fill_bytes(&mut rand);
        let vector = milenage.vector(&rand, sqn, &amf);
        let keys = SessionKeys::derive(&self.identity, &vector.ik, &vector.ck);
        let mut attributes = vec![Attribute::Rand(vector.rand), Attribute::Autn(vector.autn)];
        if self.config.result_indication {
            attributes.push(Attribute::ResultInd);
        }
        if let Some(checkcode) = self.checkcode.value() {
            attributes.push(Attribute::Checkcode(Some(checkcode)));
        }
        attributes.push(Attribute::Mac([0; 16]));
        self.identifier = self.identifier.wrapping_add(1);
        let request = EapRepr::Request {
            identifier: self.identifier,
            data: TypeData::Aka(AkaRepr::new(Subtype::Challenge, attributes)),
        };
        let bytes = match request.to_bytes().and_then(|mut bytes| {
            fill_mac(&keys.k_aut, &mut bytes, &[])?;
            Ok(bytes)
        }) {
            Ok(bytes) => bytes,
            Err(e) => return self.fail(ServerFailure::Malformed(e), out),
        };
        out.push(ServerOutput::SqnUsed {
            imsi: imsi.clone(),
            sqn,
        });
        out.push(ServerOutput::Send(bytes));
        self.challenge = Some(Challenge {
            imsi,
            milenage,
            amf,
            vector,
            sqn,
            keys,
            resynchronised,
        });
        self.state = State::WaitChallengeResponse;
    }

    fn challenge_response(&mut self, packet: &[u8], repr: &AkaRepr, out: &mut Vec<ServerOutput>) {
        let Some(challenge) = &self.challenge else {
            return self.fail(
                ServerFailure::Malformed(EapError::Malformed("no challenge")),
                out,
            );
        };
        match verify_mac(&challenge.keys.k_aut, packet, &[]) {
            Ok(true) => {}
            Ok(false) => return self.fail(ServerFailure::MacInvalid, out),
            Err(e) => return self.fail(ServerFailure::Malformed(e), out),
        }
        // The peer echoes AT_CHECKCODE only if it understood ours; when present it must
        // match the identity round we ran (RFC 4187 section 10.13).
        if let Some(theirs) = repr.checkcode() {
            if theirs != self.checkcode.value() {
                return self.fail(ServerFailure::CheckcodeMismatch, out);
            }
        }
        let Some(res) = repr.res() else {
            return self.fail(
                ServerFailure::Malformed(EapError::Malformed("AKA-Challenge without AT_RES")),
                out,
            );
        };
        let xres = &challenge.vector.xres;
        if usize::from(res.bits) != xres.len() * 8 || !ct_eq(&res.value, xres) {
            return self.fail(ServerFailure::ResMismatch, out);
        }
        if self.config.result_indication && repr.has(super::aka::attribute_type::AT_RESULT_IND) {
            // RFC 4187 section 6.2: a success notification, protected by AT_MAC, first.
            let k_aut = challenge.keys.k_aut;
            self.identifier = self.identifier.wrapping_add(1);
            let request = EapRepr::Request {
                identifier: self.identifier,
                data: TypeData::Aka(AkaRepr::new(
                    Subtype::Notification,
                    vec![
                        Attribute::Notification(NotificationCode::Success),
                        Attribute::Mac([0; 16]),
                    ],
                )),
            };
            match request.to_bytes().and_then(|mut bytes| {
                fill_mac(&k_aut, &mut bytes, &[])?;
                Ok(bytes)
            }) {
                Ok(bytes) => {
                    out.push(ServerOutput::Send(bytes));
                    self.state = State::WaitNotificationResponse;
                }
                Err(e) => self.fail(ServerFailure::Malformed(e), out),
            }
            return;
        }
        self.succeed(out);
    }

    /// RFC 4187 section 6.3.1 / TS 33.102 section 6.3.5 step 1 and 6.3.3: recover SQN_MS
    /// from AUTS, check MAC-S (always: an AUTS that does not verify ends the
    /// conversation, whatever SQN_HE is), then ask for the current SQN_HE.
    fn resynchronise(
        &mut self,
        repr: &AkaRepr,
        _rng: &mut dyn RngCore,
        out: &mut Vec<ServerOutput>,
    ) {
        let Some(challenge) = &self.challenge else {
            return self.fail(
                ServerFailure::Malformed(EapError::Malformed("no challenge")),
                out,
            );
        };
        if challenge.resynchronised {
            return self.fail(ServerFailure::SynchronisationFailed, out);
        }
        let Some(auts) = repr.auts() else {
            return self.fail(
                ServerFailure::Malformed(EapError::Malformed(
                    "Synchronization-Failure without AT_AUTS",
                )),
                out,
            );
        };
        let Some(sqn_ms) = challenge
            .milenage
            .sqn_ms_from_auts(&challenge.vector.rand, &auts)
        else {
            return self.fail(ServerFailure::SynchronisationFailed, out);
        };
        out.push(ServerOutput::SubscriberNeeded {
            imsi: challenge.imsi.clone(),
        });
        self.state = State::WaitResyncSubscriber { sqn_ms };
    }

    /// TS 33.102 section 6.3.5 steps 2 to 6 with the subscriber's current SQN_HE (the
    /// `resync` module), and the new challenge.
    fn resynchronised(
        &mut self,
        subscriber: Option<Subscriber>,
        sqn_ms: Sqn,
        rng: &mut dyn RngCore,
        out: &mut Vec<ServerOutput>,
    ) {
        let Some(challenge) = self.challenge.take() else {
            return self.fail(
                ServerFailure::Malformed(EapError::Malformed("no challenge")),
                out,
            );
        };
        let Some(subscriber) = subscriber else {
            return self.fail(ServerFailure::UnknownSubscriber, out);
        };
        // The store's counter, or the challenge's own SQN if the store lags behind it.
        let sqn_he = subscriber.sqn.max(challenge.sqn);
        let Some(decision) = self.config.sqn.resynchronise(sqn_he, sqn_ms) else {
            return self.fail(ServerFailure::SqnExhausted, out);
        };
        out.push(ServerOutput::Resynchronised {
            imsi: challenge.imsi.clone(),
            sqn_ms,
            decision,
        });
        self.challenge_with(
            challenge.imsi,
            challenge.milenage,
            challenge.amf,
            decision.next(),
            true,
            rng,
            out,
        );
    }

    fn succeed(&mut self, out: &mut Vec<ServerOutput>) {
        let Some(challenge) = &self.challenge else {
            return self.fail(
                ServerFailure::Malformed(EapError::Malformed("no challenge")),
                out,
            );
        };
        let success = AuthSuccess {
            imsi: challenge.imsi.clone(),
            identity: self.identity.clone(),
            keys: challenge.keys.clone(),
        };
        self.send(
            EapRepr::Success {
                identifier: self.identifier,
            },
            out,
        );
        out.push(ServerOutput::Success(Box::new(success)));
        self.state = State::Done;
    }

    fn fail(&mut self, failure: ServerFailure, out: &mut Vec<ServerOutput>) {
        self.send(
            EapRepr::Failure {
                identifier: self.identifier,
            },
            out,
        );
        out.push(ServerOutput::Failure(failure));
        self.state = State::Done;
    }

    fn send(&mut self, repr: EapRepr, out: &mut Vec<ServerOutput>) {
        match repr.to_bytes() {
            Ok(bytes) => out.push(ServerOutput::Send(bytes)),
            Err(e) => out.push(ServerOutput::Discarded(e)),
        }
    }
}

/// The Subtype of an EAP-AKA packet, read without decoding its attributes.
pub fn aka_subtype(packet: &[u8]) -> Option<Subtype> {
    let view = EapPacket::new_checked(packet).ok()?;
    (view.eap_type() == Some(EapType::Aka))
        .then(|| AkaMessage::new_checked(view.type_data()).ok())
        .flatten()
        .map(|m| m.subtype())
}
