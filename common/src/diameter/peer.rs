//! The Diameter peer state machine (RFC 6733 section 5.6) for one TCP connection, with the
//! transport failure detection of RFC 3539 section 3.4, sans-IO.
//!
//! Simplified from RFC 6733: one connection per peer, so no election (section 5.6.4) and
//! no REOPEN state of RFC 3539 (a lost connection is reported as [`DownReason`] and the
//! driver reconnects with a fresh [`Peer`] state). Inputs are connection up/down, one
//! framed message (see [`Framer`](super::Framer)) or a timeout, each with the current
//! time; outputs are bytes to send, a request to close the connection, and events.
//!
//! The watchdog (RFC 3539 section 3.4.1): every message received re-arms a timer of
//! `Tw = Twinit ± 2 s` (jitter from the injected random source, Twinit at least 6 s).
//! When it fires with no DWR pending a DWR is sent; when it fires again with the DWR
//! still unanswered the peer is suspect ([`PeerEvent::Failover`]); a third expiry closes
//! the connection. Any message received while suspect brings the peer back
//! ([`PeerEvent::Failback`]).

use std::time::{Duration, Instant};

use super::base::{
    Capabilities, CapabilitiesExchangeAnswer, CapabilitiesExchangeRequest, DeviceWatchdogRequest,
    DisconnectCause, DisconnectPeerRequest, PeerAnswer,
};
use super::codes::{command, result};
use super::error::Error;
use super::message::Message;

/// Which side opened the connection: the initiator sends the CER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Connected out; sends CER and waits for CEA.
    Initiator,
    /// Accepted the connection; waits for CER.
    Responder,
}

/// The states of one peer connection (RFC 6733 section 5.6, simplified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// No connection.
    Closed,
    /// Initiator: CER sent, waiting for CEA (Wait-I-CEA).
    WaitCea,
    /// Responder: connection accepted, waiting for CER.
    WaitCer,
    /// Capabilities exchanged; application messages flow (I-Open / R-Open).
    Open,
    /// Open, but a DWR went unanswered (RFC 3539 SUSPECT).
    Suspect,
    /// DPR sent or received, waiting for the transport to close (Closing).
    Closing,
}

/// Configuration of the local node.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// What this node advertises in CER/CEA; also the Origin-Host/Realm of DWR, DWA, DPR.
    pub capabilities: Capabilities,
    /// Twinit of RFC 3539 (default 30 s; values below 6 s are raised to 6 s).
    pub watchdog_interval: Duration,
    /// How long to wait for the CER or the CEA after the connection is up.
    pub capabilities_timeout: Duration,
    /// How long to wait for the DPA, or for the peer to close after our DPA.
    pub disconnect_timeout: Duration,
}

impl PeerConfig {
    /// Default timers around the given capabilities.
    pub fn new(capabilities: Capabilities) -> Self {
        PeerConfig {
            capabilities,
            watchdog_interval: Duration::from_secs(30),
            capabilities_timeout: Duration::from_secs(10),
            disconnect_timeout: Duration::from_secs(5),
        }
    }
}

/// An input to [`Peer::handle`].
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// The TCP connection is established.
    ConnectionUp,
    /// The TCP connection is gone.
    ConnectionDown,
    /// One whole message received.
    Message(&'a [u8]),
    /// The deadline from [`Peer::poll_timeout`] has passed.
    Timeout,
}

/// Why the connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// The transport went down.
    ConnectionLost,
    /// No CER or CEA in time.
    CapabilitiesTimeout,
    /// The capabilities exchange failed with this Result-Code (ours or the peer's).
    CapabilitiesRejected(u32),
    /// The watchdog found the peer dead (RFC 3539).
    WatchdogExpired,
    /// Closed after DPR/DPA.
    Disconnected,
    /// The peer broke the protocol before the connection was open.
    ProtocolError(Error),
}

/// Something the owner of the peer needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// Capabilities exchanged; the applications both sides support.
    Open {
        peer: Box<Capabilities>,
        applications: Vec<u32>,
    },
    /// An application request from the peer, to be answered by the owner.
    Request(Message),
    /// An application answer from the peer.
    Answer(Message),
    /// A received message was malformed; if it was a request, an error answer was sent.
    ProtocolError(Error),
    /// The watchdog suspects the peer: fail pending requests over (RFC 3539).
    Failover,
    /// The suspect peer answered again.
    Failback,
    /// The peer sent DPR; it was answered and the peer will close.
    DisconnectRequested(DisconnectCause),
    /// The connection is over.
    Down(DownReason),
}

/// An output of [`Peer::handle`], to carry out in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write these bytes (one message) to the connection.
    Send(Vec<u8>),
    /// Close the connection.
    Close,
    /// Tell the owner.
    Event(PeerEvent),
}

/// Source of randomness for the watchdog jitter and the first identifiers.
pub type RandomSource = Box<dyn FnMut() -> u32 + Send>;

/// One Diameter peer connection, advanced by [`Peer::handle`].
pub struct Peer {
    config: PeerConfig,
    role: Role,
    state: PeerState,
    random: RandomSource,
    deadline: Option<Instant>,
    watchdog_pending: bool,
    hop_by_hop: u32,
    end_to_end: u32,
    peer: Option<Capabilities>,
    applications: Vec<u32>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("deadline", &self.deadline)
            .field("watchdog_pending", &self.watchdog_pending)
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// A peer in state Closed. `random` feeds the watchdog jitter and the first
    /// Hop-by-Hop and End-to-End identifiers (RFC 6733 section 3).
    pub fn new(config: PeerConfig, role: Role, mut random: RandomSource) -> Self {
        let hop_by_hop = random();
        let end_to_end = random();
        Peer {
            config,
            role,
            state: PeerState::Closed,
            random,
            deadline: None,
            watchdog_pending: false,
            hop_by_hop,
            end_to_end,
            peer: None,
            applications: Vec::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> PeerState {
        self.state
    }

    /// Whether application messages may be sent (Open or Suspect).
    pub fn is_open(&self) -> bool {
        matches!(self.state, PeerState::Open | PeerState::Suspect)
    }

    /// The capabilities the peer advertised, once exchanged.
    pub fn peer_capabilities(&self) -> Option<&Capabilities> {
        self.peer.as_ref()
    }

    /// The applications both sides support, once exchanged.
    pub fn applications(&self) -> &[u32] {
        &self.applications
    }

    /// When [`Input::Timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// A fresh Hop-by-Hop identifier for a request on this connection.
    pub fn next_hop_by_hop(&mut self) -> u32 {
        self.hop_by_hop = self.hop_by_hop.wrapping_add(1);
        self.hop_by_hop
    }

    /// A fresh End-to-End identifier for a request originated here.
    pub fn next_end_to_end(&mut self) -> u32 {
        self.end_to_end = self.end_to_end.wrapping_add(1);
        self.end_to_end
    }

    /// Tw of RFC 3539 section 3.4.1: Twinit plus a jitter uniform in [-2 s, +2 s].
    fn watchdog_delay(&mut self) -> Duration {
        let twinit = self.config.watchdog_interval.max(Duration::from_secs(6));
        let jitter_ms = u64::from((self.random)() % 4001);
        twinit + Duration::from_millis(jitter_ms) - Duration::from_millis(2000)
    }

    fn arm_watchdog(&mut self, now: Instant) {
        let delay = self.watchdog_delay();
        self.deadline = Some(now + delay);
    }

    fn send(out: &mut Vec<Output>, message: &Message) {
        // Messages built here have small, bounded AVPs: emitting cannot fail.
        if let Ok(bytes) = message.to_vec() {
            out.push(Output::Send(bytes));
        }
    }

    fn down(&mut self, reason: DownReason, close: bool, out: &mut Vec<Output>) {
        if close {
            out.push(Output::Close);
        }
        self.state = PeerState::Closed;
        self.deadline = None;
        self.watchdog_pending = false;
        out.push(Output::Event(PeerEvent::Down(reason)));
    }

    /// Advances the state machine by one input at time `now`.
    pub fn handle(&mut self, input: Input<'_>, now: Instant, out: &mut Vec<Output>) {
        match input {
            Input::ConnectionUp => self.on_connection_up(now, out),
            Input::ConnectionDown => {
                if self.state != PeerState::Closed {
                    let reason = if self.state == PeerState::Closing {
                        DownReason::Disconnected
                    } else {
                        DownReason::ConnectionLost
                    };
                    self.down(reason, false, out);
                }
            }
            Input::Timeout => {
                if self.deadline.is_some_and(|d| now >= d) {
                    self.on_timeout(now, out);
                }
            }
            Input::Message(bytes) => self.on_message(bytes, now, out),
        }
    }

    /// Starts a graceful disconnect: sends DPR (RFC 6733 section 5.4) and waits for DPA.
    pub fn disconnect(&mut self, cause: DisconnectCause, now: Instant, out: &mut Vec<Output>) {
        if !self.is_open() {
            return;
        }
        let dpr = DisconnectPeerRequest {
            origin_host: self.config.capabilities.origin_host.clone(),
            origin_realm: self.config.capabilities.origin_realm.clone(),
            disconnect_cause: cause,
        };
        let (hbh, e2e) = (self.next_hop_by_hop(), self.next_end_to_end());
        Self::send(out, &dpr.to_message(hbh, e2e));
        self.state = PeerState::Closing;
        self.deadline = Some(now + self.config.disconnect_timeout);
    }

    fn on_connection_up(&mut self, now: Instant, out: &mut Vec<Output>) {
        self.peer = None;
        self.applications.clear();
        self.watchdog_pending = false;
        self.deadline = Some(now + self.config.capabilities_timeout);
        match self.role {
            Role::Initiator => {
                let cer = CapabilitiesExchangeRequest {
                    capabilities: self.config.capabilities.clone(),
                };
                let (hbh, e2e) = (self.next_hop_by_hop(), self.next_end_to_end());
                Self::send(out, &cer.to_message(hbh, e2e));
                self.state = PeerState::WaitCea;
            }
            Role::Responder => self.state = PeerState::WaitCer,
        }
    }

    fn on_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        match self.state {
            PeerState::Closed => self.deadline = None,
            PeerState::WaitCea | PeerState::WaitCer => {
                self.down(DownReason::CapabilitiesTimeout, true, out)
            }
            PeerState::Open if !self.watchdog_pending => {
                let dwr = DeviceWatchdogRequest {
                    origin_host: self.config.capabilities.origin_host.clone(),
                    origin_realm: self.config.capabilities.origin_realm.clone(),
                    origin_state_id: self.config.capabilities.origin_state_id,
                };
                let (hbh, e2e) = (self.next_hop_by_hop(), self.next_end_to_end());
                Self::send(out, &dwr.to_message(hbh, e2e));
                self.watchdog_pending = true;
                self.arm_watchdog(now);
            }
            PeerState::Open => {
                self.state = PeerState::Suspect;
                out.push(Output::Event(PeerEvent::Failover));
                self.arm_watchdog(now);
            }
            PeerState::Suspect => self.down(DownReason::WatchdogExpired, true, out),
            PeerState::Closing => self.down(DownReason::Disconnected, true, out),
        }
    }

    fn origin(&self) -> (&str, &str) {
        let caps = &self.config.capabilities;
        (&caps.origin_host, &caps.origin_realm)
    }

    fn on_message(&mut self, bytes: &[u8], now: Instant, out: &mut Vec<Output>) {
        if self.state == PeerState::Closed {
            return;
        }
        let message = match Message::from_bytes(bytes) {
            Ok(message) => message,
            Err(error) => {
                let (host, realm) = self.origin();
                if let Some(answer) = Message::error_answer_for_bytes(bytes, host, realm, &error) {
                    Self::send(out, &answer);
                }
                if matches!(self.state, PeerState::WaitCea | PeerState::WaitCer) {
                    self.down(DownReason::ProtocolError(error), true, out);
                } else {
                    out.push(Output::Event(PeerEvent::ProtocolError(error)));
                }
                return;
            }
        };
        match self.state {
            PeerState::Closed => {}
            PeerState::WaitCer => self.on_cer(&message, now, out),
            PeerState::WaitCea => self.on_cea(&message, now, out),
            PeerState::Open | PeerState::Suspect | PeerState::Closing => {
                self.on_open_message(message, now, out)
            }
        }
    }

    fn on_cer(&mut self, message: &Message, now: Instant, out: &mut Vec<Output>) {
        let is_cer = message.header.command_code == command::CAPABILITIES_EXCHANGE
            && message.header.flags.request();
        if !is_cer {
            let error = Error::UnableToComply("expected CER".into());
            return self.down(DownReason::ProtocolError(error), true, out);
        }
        let cer = match CapabilitiesExchangeRequest::parse(message) {
            Ok(cer) => cer,
            Err(error) => {
                let (host, realm) = self.origin();
                Self::send(out, &message.error_answer(host, realm, &error));
                return self.down(
                    DownReason::CapabilitiesRejected(error.result_code()),
                    true,
                    out,
                );
            }
        };
        let common = self
            .config
            .capabilities
            .common_applications(&cer.capabilities);
        let result_code = if common.is_empty() {
            result::DIAMETER_NO_COMMON_APPLICATION
        } else {
            result::DIAMETER_SUCCESS
        };
        let cea = CapabilitiesExchangeAnswer {
            result_code,
            capabilities: self.config.capabilities.clone(),
            error_message: None,
            failed_avp: None,
        };
        Self::send(out, &cea.to_message(&message.header));
        if common.is_empty() {
            return self.down(DownReason::CapabilitiesRejected(result_code), true, out);
        }
        self.open(cer.capabilities, common, now, out);
    }

    fn on_cea(&mut self, message: &Message, now: Instant, out: &mut Vec<Output>) {
        let is_cea = message.header.command_code == command::CAPABILITIES_EXCHANGE
            && !message.header.flags.request();
        if !is_cea {
            let error = Error::UnableToComply("expected CEA".into());
            return self.down(DownReason::ProtocolError(error), true, out);
        }
        // A CEA with an error may be a bare error answer (RFC 6733 section 7.2).
        if let Some(code) = message.result_code().filter(|c| !result::is_success(*c)) {
            return self.down(DownReason::CapabilitiesRejected(code), true, out);
        }
        let cea = match CapabilitiesExchangeAnswer::parse(message) {
            Ok(cea) => cea,
            Err(error) => return self.down(DownReason::ProtocolError(error), true, out),
        };
        let common = self
            .config
            .capabilities
            .common_applications(&cea.capabilities);
        if common.is_empty() {
            let code = result::DIAMETER_NO_COMMON_APPLICATION;
            return self.down(DownReason::CapabilitiesRejected(code), true, out);
        }
        self.open(cea.capabilities, common, now, out);
    }

    fn open(&mut self, peer: Capabilities, common: Vec<u32>, now: Instant, out: &mut Vec<Output>) {
        self.state = PeerState::Open;
        self.peer = Some(peer.clone());
        self.applications = common.clone();
        self.watchdog_pending = false;
        self.arm_watchdog(now);
        out.push(Output::Event(PeerEvent::Open {
            peer: Box::new(peer),
            applications: common,
        }));
    }

    fn on_open_message(&mut self, message: Message, now: Instant, out: &mut Vec<Output>) {
        let code = message.header.command_code;
        let request = message.header.flags.request();
        if self.state == PeerState::Suspect {
            self.state = PeerState::Open;
            out.push(Output::Event(PeerEvent::Failback));
        }
        if self.state != PeerState::Closing {
            self.arm_watchdog(now);
        }
        let (host, realm) = self.origin();
        let (host, realm) = (host.to_owned(), realm.to_owned());
        match (code, request) {
            (command::DEVICE_WATCHDOG, true) => match DeviceWatchdogRequest::parse(&message) {
                Ok(_) => {
                    let mut dwa = PeerAnswer::success(&host, &realm);
                    dwa.origin_state_id = self.config.capabilities.origin_state_id;
                    Self::send(out, &dwa.to_message(&message.header));
                }
                Err(e) => self.reject(&message, e, out),
            },
            (command::DEVICE_WATCHDOG, false) => self.watchdog_pending = false,
            (command::DISCONNECT_PEER, true) => match DisconnectPeerRequest::parse(&message) {
                Ok(dpr) => {
                    let dpa = PeerAnswer::success(&host, &realm);
                    Self::send(out, &dpa.to_message(&message.header));
                    self.state = PeerState::Closing;
                    self.deadline = Some(now + self.config.disconnect_timeout);
                    out.push(Output::Event(PeerEvent::DisconnectRequested(
                        dpr.disconnect_cause,
                    )));
                }
                Err(e) => self.reject(&message, e, out),
            },
            (command::DISCONNECT_PEER, false) => {
                // The receiver of the DPA closes the transport (RFC 6733 section 5.4).
                if self.state == PeerState::Closing {
                    self.down(DownReason::Disconnected, true, out);
                }
            }
            (command::CAPABILITIES_EXCHANGE, true) => {
                // One connection per peer: a second CER on an open connection is refused.
                let error = Error::UnableToComply("capabilities already exchanged".into());
                self.reject(&message, error, out);
            }
            (command::CAPABILITIES_EXCHANGE, false) => {}
            (_, true) => out.push(Output::Event(PeerEvent::Request(message))),
            (_, false) => out.push(Output::Event(PeerEvent::Answer(message))),
        }
    }

    fn reject(&mut self, request: &Message, error: Error, out: &mut Vec<Output>) {
        let (host, realm) = self.origin();
        Self::send(out, &request.error_answer(host, realm, &error));
        out.push(Output::Event(PeerEvent::ProtocolError(error)));
    }
}
