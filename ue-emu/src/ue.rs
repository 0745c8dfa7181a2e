//! The UE, sans-IO (docs/architecture.md, docs/attach.md): the IKEv2 initiator, the EAP-AKA peer
//! with its software USIM, and the attach ladder, advanced by [`Ue::handle`] with the
//! time and asked [`Ue::poll_timeout`]. `ue-emu attach`, `ue-emu load` and the tests'
//! in-memory network all drive this one core; they own the sockets and the clock.
//!
//! Inputs are UDP datagrams from the ePDG (IKE on port 500, or after the non-ESP marker
//! on port 4500, RFC 3948 section 2.2), timeouts, and commands: attach, detach. Outputs
//! are datagrams to send, the ladder's steps, and how each command ended: every
//! [`Command::Attach`] ends in exactly one [`Output::Attached`] or [`Output::Failed`],
//! every [`Command::Detach`] in exactly one [`Output::Detached`]. ESP is the drivers'
//! for now: an ESP datagram given here is ignored.
//!
//! The attach (TS 24.302 section 7.2.2, RFC 7296 section 2.16, RFC 5998): IKE_SA_INIT,
//! IKE_AUTH with IDi = NAI, IDr = APN and a CP request, the ePDG's EAP-AKA requests
//! answered by the USIM (RFC 4187), AUTH from the MSK after EAP-Success, and the
//! CFG_REPLY's addresses. The USIM's SQN_MS carries over from one attach to the next.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pmip_common::eap::{Peer, PeerConfig, PeerOutput, Sqn, Usim};
use pmip_common::esp::NON_ESP_MARKER;
// Every path into the IKE state machine, in one place.
pub use pmip_common::ike::initiator::InitiatorConfig;
use pmip_common::ike::initiator::InitiatorSa;
pub use pmip_common::ike::sa::{ChildSa, CloseReason, RetransmitPolicy};
use pmip_common::ike::sa::{Event, Output as SaOutput};
pub use pmip_common::ike::wire::NotifyType;
use pmip_common::ike::wire::{ConfigAttribute, Identification};
pub use pmip_common::ike::Random;
use serde::Serialize;

/// What every UE of a run shares: the ePDG, the USIM's keys, the IKE settings and the
/// timers.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The ePDG's IKE address (UDP 500).
    pub epdg: SocketAddr,
    /// The ePDG's NAT-T address (UDP 4500): IKE after the non-ESP marker, and ESP.
    pub epdg_natt: SocketAddr,
    pub k: [u8; 16],
    pub opc: [u8; 16],
    /// The IKE initiator's settings; `idi` and `local` are set for each attach.
    pub ike: InitiatorConfig,
    /// An attach not done by then fails.
    pub attach_timeout: Duration,
    pub detach: DetachPolicy,
}

/// How a detach waits for the ePDG's answer to our INFORMATIONAL(DELETE): the IKE SA is
/// gone on our side at once (RFC 7296 section 1.4.1), so the answer is a courtesy, but a
/// storm's burst of detaches may overflow a queue at the ePDG, hence `attempts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetachPolicy {
    /// Transmissions of the request.
    pub attempts: u32,
    /// The wait after each.
    pub wait: Duration,
}

/// One UE's subscription: who it is and its USIM's SQN_MS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub imsi: String,
    /// IDi and the EAP identity (TS 23.003 section 19.3.2).
    pub nai: String,
    pub sqn_ms: Sqn,
}

/// One step of the attach ladder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub name: String,
    /// Milliseconds since the previous step (the first: since the attach began).
    pub ms: f64,
}

/// A command from the UE's user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach from `local`, the address our datagrams leave from (NAT detection hashes
    /// it, RFC 7296 section 2.23).
    Attach { local: SocketAddr },
    /// Delete the IKE SA (or abandon an attach under way).
    Detach,
}

/// What the driver feeds in.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// A UDP payload received from `from`.
    Datagram {
        from: SocketAddr,
        bytes: &'a [u8],
    },
    /// The deadline of [`Ue::poll_timeout`] passed.
    Timeout,
    Command(Command),
}

/// What an attach got: the CFG_REPLY's addresses and the CHILD_SA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The ePDG that serves us.
    pub epdg: SocketAddr,
    pub ipv4: Option<Ipv4Addr>,
    /// INTERNAL_IP6_ADDRESS: an address (or the bare prefix) and the prefix length.
    pub ipv6: Option<(Ipv6Addr, u8)>,
    pub dns: Vec<IpAddr>,
    pub pcscf: Vec<IpAddr>,
    pub child: ChildSa,
    /// A problem the USIM had on the way (e.g. a resynchronisation), if any.
    pub usim_problem: Option<String>,
}

/// Why an attach failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureCause {
    /// The IKE SA ended: an error notify from the ePDG, no answer, or our own refusal.
    Ike(CloseReason),
    /// Not attached within [`Profile::attach_timeout`].
    AttachTimeout(Duration),
    /// The IKE SA could not start.
    Start(String),
    /// An attach was asked while the UE was not idle.
    NotIdle,
}

impl std::fmt::Display for FailureCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureCause::Ike(CloseReason::NotifyReceived(n)) => write!(
                f,
                "the ePDG refused the attach with notify {}",
                notify_name(*n)
            ),
            FailureCause::Ike(CloseReason::Timeout) => write!(f, "no answer from the ePDG"),
            FailureCause::Ike(other) => write!(f, "IKE SA closed: {other:?}"),
            FailureCause::AttachTimeout(t) => write!(f, "no attach within {} ms", t.as_millis()),
            FailureCause::Start(e) => write!(f, "starting IKE: {e}"),
            FailureCause::NotIdle => write!(f, "an attach or detach is under way"),
        }
    }
}

/// A failed attach: the cause, and the USIM's last problem if it had one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub cause: FailureCause,
    pub usim_problem: Option<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.usim_problem {
            Some(u) => write!(f, "{}; {u}", self.cause),
            None => write!(f, "{}", self.cause),
        }
    }
}

/// What the driver carries out or reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send this UDP payload to `to` (the non-ESP marker is in `bytes` on port 4500).
    Transmit { to: SocketAddr, bytes: Vec<u8> },
    /// The ladder moved on.
    Step(Step),
    /// The attach succeeded.
    Attached(Box<Attachment>),
    /// The attach failed; the UE is idle again.
    Failed(Failure),
    /// The IKE SA of an attached UE ended without a detach (deleted by the ePDG, or its
    /// request went unanswered); the UE is idle again.
    Closed(CloseReason),
    /// A detach finished: whether the ePDG answered.
    Detached { answered: bool },
}

/// `NAME (number)` of a notify, as the report shows it.
pub fn notify_name(n: NotifyType) -> String {
    format!("{n:?} ({})", u16::from(n))
}

/// The ladder step names a user reads (and tests look for).
mod ladder {
    pub const IKE_SA_INIT: &str = "IKE_SA_INIT";
    pub const FIRST_EAP_REQUEST: &str = "IKE_AUTH(IDi, IDr=APN, CP) -> EAP-Request (AAA via ePDG)";
    pub const EAP_SUCCESS: &str = "EAP-Response -> EAP-Success (after PBA)";
    pub const EAP_FAILURE: &str = "EAP-Failure";
    pub const ESTABLISHED: &str = "IKE_AUTH(AUTH) -> AUTH, CFG_REPLY, CHILD_SA";
    pub const DELETE: &str = "INFORMATIONAL(DELETE)";
}

enum State {
    Idle,
    Attaching(Box<Attaching>),
    Attached(Box<InitiatorSa>),
    Detaching {
        /// The INFORMATIONAL(DELETE) datagrams, sent again on each attempt.
        request: Vec<(SocketAddr, Vec<u8>)>,
        attempts_left: u32,
        deadline: Instant,
    },
}

struct Attaching {
    sa: InitiatorSa,
    peer: Peer,
    deadline: Instant,
    eap_rounds: u32,
    usim_problem: Option<String>,
}

/// One UE.
pub struct Ue {
    profile: Arc<Profile>,
    identity: Identity,
    state: State,
    /// When the last ladder step happened.
    last_step: Instant,
    /// Datagrams given that were not for us (another source, ESP, garbage).
    ignored: u64,
}

impl std::fmt::Debug for Ue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ue")
            .field("imsi", &self.identity.imsi)
            .field("state", &self.state_name())
            .finish_non_exhaustive()
    }
}

impl Ue {
    pub fn new(profile: Arc<Profile>, identity: Identity, now: Instant) -> Self {
        Ue {
            profile,
            identity,
            state: State::Idle,
            last_step: now,
            ignored: 0,
        }
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The USIM's SQN_MS (the highest SQN accepted), to keep across runs.
    pub fn sqn_ms(&self) -> Sqn {
        self.identity.sqn_ms
    }

    /// No attach, IKE SA or detach under way.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    pub fn is_attached(&self) -> bool {
        matches!(self.state, State::Attached(_))
    }

    /// Datagrams ignored so far.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    fn state_name(&self) -> &'static str {
        match self.state {
            State::Idle => "idle",
            State::Attaching(_) => "attaching",
            State::Attached(_) => "attached",
            State::Detaching { .. } => "detaching",
        }
    }

    /// The next moment [`Input::Timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Idle => None,
            State::Attaching(a) => Some(
                a.sa.poll_timeout()
                    .map_or(a.deadline, |t| t.min(a.deadline)),
            ),
            State::Attached(sa) => sa.poll_timeout(),
            State::Detaching { deadline, .. } => Some(*deadline),
        }
    }

    /// Advances the UE by one input at `now`, appending what to do to `out`.
    pub fn handle(
        &mut self,
        input: Input<'_>,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) {
        match input {
            Input::Command(Command::Attach { local }) => self.attach(local, now, rng, out),
            Input::Command(Command::Detach) => self.detach(now, rng, out),
            Input::Datagram { from, bytes } => self.receive(from, bytes, now, rng, out),
            Input::Timeout => self.timeout(now, rng, out),
        }
    }

    /// Puts a step of the driver's own (a traffic check, say) on the ladder at `now`.
    pub fn ladder_step(&mut self, name: impl Into<String>, now: Instant) -> Step {
        let ms = now.saturating_duration_since(self.last_step).as_secs_f64() * 1000.0;
        self.last_step = now;
        Step {
            name: name.into(),
            ms: (ms * 10.0).round() / 10.0,
        }
    }

    fn step(&mut self, name: impl Into<String>, now: Instant, out: &mut Vec<Output>) {
        let step = self.ladder_step(name, now);
        out.push(Output::Step(step));
    }

    fn attach(
        &mut self,
        local: SocketAddr,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) {
        if !self.is_idle() {
            out.push(Output::Failed(Failure {
                cause: FailureCause::NotIdle,
                usim_problem: None,
            }));
            return;
        }
        self.last_step = now;
        let nai = self.identity.nai.as_bytes().to_vec();
        let peer = Peer::new(
            PeerConfig {
                permanent_identity: nai.clone(),
                eap_identity: Some(nai),
                result_indication: false,
            },
            Usim::new(&self.profile.k, &self.profile.opc, self.identity.sqn_ms),
        );
        let mut config = self.profile.ike.clone();
        config.idi = Identification::Rfc822Addr(self.identity.nai.clone());
        config.local = local;
        config.remote = self.profile.epdg;
        let mut sa_out = Vec::new();
        match InitiatorSa::start(config, now, rng, &mut sa_out) {
            Ok(sa) => {
                self.state = State::Attaching(Box::new(Attaching {
                    sa,
                    peer,
                    deadline: now + self.profile.attach_timeout,
                    eap_rounds: 0,
                    usim_problem: None,
                }));
                self.carry_out(sa_out, now, rng, out);
            }
            Err(e) => out.push(Output::Failed(Failure {
                cause: FailureCause::Start(e.to_string()),
                usim_problem: None,
            })),
        }
    }

    fn detach(&mut self, now: Instant, rng: &mut dyn Random, out: &mut Vec<Output>) {
        let mut sa_out = Vec::new();
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Attached(mut sa) => sa.delete(now, rng, &mut sa_out),
            State::Attaching(mut a) => a.sa.delete(now, rng, &mut sa_out),
            State::Idle => {}
            detaching @ State::Detaching { .. } => {
                // One detach at a time; this one ends when the first does.
                self.state = detaching;
                return;
            }
        }
        let request: Vec<(SocketAddr, Vec<u8>)> = sa_out
            .into_iter()
            .filter_map(|o| match o {
                SaOutput::Send { bytes, port_4500 } => Some(self.datagram(bytes, port_4500)),
                SaOutput::Event(_) => None,
            })
            .collect();
        if request.is_empty() || self.profile.detach.attempts == 0 {
            self.step(ladder::DELETE, now, out);
            out.push(Output::Detached { answered: false });
            return;
        }
        for (to, bytes) in &request {
            out.push(Output::Transmit {
                to: *to,
                bytes: bytes.clone(),
            });
        }
        self.state = State::Detaching {
            request,
            attempts_left: self.profile.detach.attempts - 1,
            deadline: now + self.profile.detach.wait,
        };
    }

    /// The datagram that carries an IKE message to the ePDG.
    fn datagram(&self, bytes: Vec<u8>, port_4500: bool) -> (SocketAddr, Vec<u8>) {
        if port_4500 {
            let mut d = Vec::with_capacity(bytes.len() + NON_ESP_MARKER.len());
            d.extend_from_slice(&NON_ESP_MARKER);
            d.extend_from_slice(&bytes);
            (self.profile.epdg_natt, d)
        } else {
            (self.profile.epdg, bytes)
        }
    }

    /// The IKE message in a datagram from the ePDG, and whether it came on port 4500.
    fn ike_message<'a>(&self, from: SocketAddr, bytes: &'a [u8]) -> Option<(&'a [u8], bool)> {
        if from == self.profile.epdg_natt {
            bytes.strip_prefix(&NON_ESP_MARKER).map(|m| (m, true))
        } else if from == self.profile.epdg {
            Some((bytes, false))
        } else {
            None
        }
    }

    fn receive(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) {
        let Some((message, via_4500)) = self.ike_message(from, bytes) else {
            self.ignored += 1;
            return;
        };
        let mut sa_out = Vec::new();
        match &mut self.state {
            State::Idle => {
                self.ignored += 1;
                return;
            }
            State::Attaching(a) => {
                let before = a.sa.keys().is_some();
                a.sa.handle(message, via_4500, now, rng, &mut sa_out);
                if !before && a.sa.keys().is_some() {
                    self.step(ladder::IKE_SA_INIT, now, out);
                }
            }
            State::Attached(sa) => sa.handle(message, via_4500, now, rng, &mut sa_out),
            State::Detaching { .. } => {
                // Any IKE message from the ePDG now is its answer to our DELETE.
                self.state = State::Idle;
                self.step(ladder::DELETE, now, out);
                out.push(Output::Detached { answered: true });
                return;
            }
        }
        self.carry_out(sa_out, now, rng, out);
    }

    fn timeout(&mut self, now: Instant, rng: &mut dyn Random, out: &mut Vec<Output>) {
        let mut sa_out = Vec::new();
        match &mut self.state {
            State::Idle => return,
            State::Attaching(a) => {
                if a.sa.poll_timeout().is_some_and(|t| t <= now) {
                    a.sa.handle_timeout(now, rng, &mut sa_out);
                }
            }
            State::Attached(sa) => {
                if sa.poll_timeout().is_some_and(|t| t <= now) {
                    sa.handle_timeout(now, rng, &mut sa_out);
                }
            }
            State::Detaching {
                request,
                attempts_left,
                deadline,
            } => {
                if now < *deadline {
                    return;
                }
                if *attempts_left == 0 {
                    self.state = State::Idle;
                    self.step(ladder::DELETE, now, out);
                    out.push(Output::Detached { answered: false });
                    return;
                }
                *attempts_left -= 1;
                *deadline = now + self.profile.detach.wait;
                for (to, bytes) in request.iter() {
                    out.push(Output::Transmit {
                        to: *to,
                        bytes: bytes.clone(),
                    });
                }
                return;
            }
        }
        self.carry_out(sa_out, now, rng, out);
        // The SA's own timeouts first: a request that went unanswered through every
        // retransmission is "no answer", whatever the overall deadline says.
        if let State::Attaching(a) = &self.state {
            if now >= a.deadline {
                let usim_problem = a.usim_problem.clone();
                self.state = State::Idle;
                out.push(Output::Failed(Failure {
                    cause: FailureCause::AttachTimeout(self.profile.attach_timeout),
                    usim_problem,
                }));
            }
        }
    }

    /// Carries out what the IKE SA asked for, handing EAP to the USIM, until nothing is
    /// left (the USIM's answers make the SA send more).
    fn carry_out(
        &mut self,
        mut sa_out: Vec<SaOutput>,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) {
        while !sa_out.is_empty() {
            for o in std::mem::take(&mut sa_out) {
                match o {
                    SaOutput::Send { bytes, port_4500 } => {
                        let (to, bytes) = self.datagram(bytes, port_4500);
                        out.push(Output::Transmit { to, bytes });
                    }
                    SaOutput::Event(Event::EapRequest(eap)) => {
                        self.eap(&eap, now, rng, &mut sa_out, out)
                    }
                    SaOutput::Event(Event::Established(e)) => self.established(*e, now, out),
                    SaOutput::Event(Event::Closed(reason)) => self.closed(reason, now, out),
                    SaOutput::Event(_) => {}
                }
            }
        }
    }

    fn eap(
        &mut self,
        eap: &[u8],
        now: Instant,
        rng: &mut dyn Random,
        sa_out: &mut Vec<SaOutput>,
        out: &mut Vec<Output>,
    ) {
        let State::Attaching(a) = &mut self.state else {
            return;
        };
        let step = match eap.first() {
            Some(1) => {
                a.eap_rounds += 1;
                Some(if a.eap_rounds == 1 {
                    ladder::FIRST_EAP_REQUEST.to_string()
                } else {
                    format!("EAP-Response -> EAP-Request #{}", a.eap_rounds)
                })
            }
            Some(3) => Some(ladder::EAP_SUCCESS.to_string()),
            Some(4) => Some(ladder::EAP_FAILURE.to_string()),
            _ => None,
        };
        for p in a.peer.handle(eap) {
            match p {
                PeerOutput::Send(response) => {
                    a.sa.send_eap(response, now, rng, sa_out);
                }
                PeerOutput::Success(keys) => {
                    a.sa.complete_eap(keys.msk.to_vec(), now, rng, sa_out);
                }
                PeerOutput::SqnAccepted(sqn) => self.identity.sqn_ms = sqn,
                PeerOutput::Problem(problem) => {
                    a.usim_problem = Some(format!("USIM: {problem:?}"));
                }
                PeerOutput::Failure(problem) => {
                    a.usim_problem
                        .get_or_insert_with(|| format!("EAP-Failure (last problem: {problem:?})"));
                }
                PeerOutput::Discarded(_) => {}
            }
        }
        if let Some(step) = step {
            self.step(step, now, out);
        }
    }

    fn established(
        &mut self,
        e: pmip_common::ike::sa::Established,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let State::Attaching(a) = std::mem::replace(&mut self.state, State::Idle) else {
            return;
        };
        let mut attachment = Attachment {
            epdg: self.profile.epdg,
            ipv4: None,
            ipv6: None,
            dns: Vec::new(),
            pcscf: Vec::new(),
            child: e.child,
            usim_problem: a.usim_problem,
        };
        for attribute in e.cp_reply.iter().flat_map(|c| c.attributes.iter()) {
            match attribute {
                ConfigAttribute::InternalIp4Address(Some(v)) => attachment.ipv4 = Some(*v),
                ConfigAttribute::InternalIp6Address(Some(v)) => attachment.ipv6 = Some(*v),
                ConfigAttribute::InternalIp4Dns(Some(v)) => attachment.dns.push((*v).into()),
                ConfigAttribute::InternalIp6Dns(Some(v)) => attachment.dns.push((*v).into()),
                ConfigAttribute::PCscfIp4Address(Some(v)) => attachment.pcscf.push((*v).into()),
                ConfigAttribute::PCscfIp6Address(Some(v)) => attachment.pcscf.push((*v).into()),
                _ => {}
            }
        }
        self.state = State::Attached(Box::new(a.sa));
        self.step(ladder::ESTABLISHED, now, out);
        out.push(Output::Attached(Box::new(attachment)));
    }

    fn closed(&mut self, reason: CloseReason, now: Instant, out: &mut Vec<Output>) {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Attaching(a) => {
                let failure = Failure {
                    cause: FailureCause::Ike(reason),
                    usim_problem: a.usim_problem,
                };
                self.step(format!("closed: {}", failure.cause), now, out);
                out.push(Output::Failed(failure));
            }
            State::Attached(_) => out.push(Output::Closed(reason)),
            other => self.state = other,
        }
    }
}

#[cfg(test)]
mod tests;
