//! The ePDG's one Diameter connection to its AAA server (SWm, TS 29.273), sans-IO: when
//! to (re)connect the TCP connection, the framing of its byte stream (RFC 6733 section
//! 3), the peer state machine in front of it (CER/CEA, watchdog, DPR: RFC 6733 section
//! 5, RFC 3539) and the identifiers of our requests. Answers go back to the [`Epdg`]
//! (super::Epdg); requests of the AAA are refused here, none being implemented.
//!
//! The connection goes: idle (a connect is due at `reconnect_at`) -> connecting (the
//! driver opens it: [`Output::DiameterConnect`]) -> connected (CER sent, then open). A
//! failed connect, a lost connection, a framing error or the peer giving up returns it
//! to idle with a reconnect `reconnect_delay` later.

use std::time::{Duration, Instant};

use pmip_common::diameter::base::DisconnectCause;
use pmip_common::diameter::peer::{self, Peer, PeerConfig, PeerEvent, RandomSource, Role};
use pmip_common::diameter::{Error as DiameterError, Framer, Message};

use super::{Output, Report};

/// The largest Diameter message taken from the AAA.
const MAX_MESSAGE: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// No connection; the next attempt is due then.
    Idle {
        reconnect_at: Option<Instant>,
    },
    /// The driver is opening the connection.
    Connecting,
    Connected,
}

/// The Diameter connection to the AAA and its peer state machine.
pub(super) struct AaaLink {
    peer: Peer,
    framer: Framer,
    link: Link,
    reconnect_delay: Duration,
    origin_host: String,
    origin_realm: String,
}

impl AaaLink {
    /// A link whose first connect is due at `now`.
    pub(super) fn new(
        config: PeerConfig,
        random: RandomSource,
        reconnect_delay: Duration,
        now: Instant,
    ) -> Self {
        AaaLink {
            origin_host: config.capabilities.origin_host.clone(),
            origin_realm: config.capabilities.origin_realm.clone(),
            peer: Peer::new(config, Role::Initiator, random),
            framer: Framer::new(MAX_MESSAGE),
            link: Link::Idle {
                reconnect_at: Some(now),
            },
            reconnect_delay,
        }
    }

    /// Whether requests can be sent (the peer is open).
    pub(super) fn is_open(&self) -> bool {
        self.link == Link::Connected && self.peer.is_open()
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        match self.link {
            Link::Idle { reconnect_at } => reconnect_at,
            Link::Connecting => None,
            Link::Connected => self.peer.poll_timeout(),
        }
    }

    /// Connects when the reconnect is due, or advances the peer's timers.
    pub(super) fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        match self.link {
            Link::Idle {
                reconnect_at: Some(at),
            } if at <= now => {
                self.link = Link::Connecting;
                out.push(Output::DiameterConnect);
            }
            Link::Connected if self.peer.poll_timeout().is_some_and(|t| t <= now) => {
                let mut peer_out = Vec::new();
                self.peer.handle(peer::Input::Timeout, now, &mut peer_out);
                self.carry_out(peer_out, now, out, &mut Vec::new());
            }
            _ => {}
        }
    }

    /// The connection is up: a fresh stream, and the CER.
    pub(super) fn connected(&mut self, now: Instant, out: &mut Vec<Output>) {
        self.link = Link::Connected;
        self.framer = Framer::new(MAX_MESSAGE);
        let mut peer_out = Vec::new();
        self.peer
            .handle(peer::Input::ConnectionUp, now, &mut peer_out);
        self.carry_out(peer_out, now, out, &mut Vec::new());
    }

    /// The connect failed: try again later.
    pub(super) fn connect_failed(&mut self, now: Instant) {
        self.idle(now);
    }

    /// The connection is gone (closed by the AAA, or after our close).
    pub(super) fn closed(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.link == Link::Connected {
            let mut peer_out = Vec::new();
            self.peer
                .handle(peer::Input::ConnectionDown, now, &mut peer_out);
            self.carry_out(peer_out, now, out, &mut Vec::new());
        }
        if !matches!(self.link, Link::Idle { .. }) {
            self.idle(now);
        }
    }

    /// Bytes of the stream from the AAA; the answers in them go to `answers`.
    pub(super) fn receive(
        &mut self,
        bytes: &[u8],
        now: Instant,
        out: &mut Vec<Output>,
        answers: &mut Vec<Message>,
    ) {
        if self.link != Link::Connected {
            return;
        }
        self.framer.push(bytes);
        loop {
            match self.framer.next_message() {
                Ok(Some(m)) => {
                    let mut peer_out = Vec::new();
                    self.peer
                        .handle(peer::Input::Message(&m), now, &mut peer_out);
                    self.carry_out(peer_out, now, out, answers);
                }
                Ok(None) => return,
                Err(e) => {
                    out.push(Output::Report(Report::DiameterStreamBroken(e)));
                    out.push(Output::DiameterClose);
                    let mut peer_out = Vec::new();
                    self.peer
                        .handle(peer::Input::ConnectionDown, now, &mut peer_out);
                    self.carry_out(peer_out, now, out, answers);
                    self.idle(now);
                    return;
                }
            }
        }
    }

    /// Sends the request `message` builds from a Hop-by-Hop and an End-to-End
    /// identifier. False when the peer is not open (nothing is sent).
    pub(super) fn send(
        &mut self,
        message: impl FnOnce(u32, u32) -> Message,
        out: &mut Vec<Output>,
    ) -> bool {
        if !self.is_open() {
            return false;
        }
        let (hbh, e2e) = (self.peer.next_hop_by_hop(), self.peer.next_end_to_end());
        match message(hbh, e2e).to_vec() {
            Ok(bytes) => {
                out.push(Output::Diameter(bytes));
                true
            }
            Err(_) => false,
        }
    }

    /// Says goodbye (DPR, RFC 6733 section 5.4) if the peer is open.
    pub(super) fn disconnect(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.link != Link::Connected {
            return;
        }
        let mut peer_out = Vec::new();
        self.peer
            .disconnect(DisconnectCause::Rebooting, now, &mut peer_out);
        self.carry_out(peer_out, now, out, &mut Vec::new());
    }

    fn idle(&mut self, now: Instant) {
        self.link = Link::Idle {
            reconnect_at: Some(now + self.reconnect_delay),
        };
    }

    fn carry_out(
        &mut self,
        peer_out: Vec<peer::Output>,
        now: Instant,
        out: &mut Vec<Output>,
        answers: &mut Vec<Message>,
    ) {
        for o in peer_out {
            match o {
                peer::Output::Send(bytes) => out.push(Output::Diameter(bytes)),
                peer::Output::Close => {
                    out.push(Output::DiameterClose);
                    self.idle(now);
                }
                peer::Output::Event(PeerEvent::Open { applications, .. }) => {
                    out.push(Output::Report(Report::DiameterOpen { applications }))
                }
                peer::Output::Event(PeerEvent::Answer(m)) => answers.push(m),
                peer::Output::Event(PeerEvent::Request(m)) => {
                    // No AAA-initiated procedure (ASR, RAR, re-authorization) is
                    // implemented: say so rather than leave the AAA waiting.
                    let command = m.header.command_code;
                    out.push(Output::Report(Report::DiameterRequestRefused {
                        command,
                        session: m.session_id().unwrap_or("").to_string(),
                    }));
                    let answer = m.error_answer(
                        &self.origin_host,
                        &self.origin_realm,
                        &DiameterError::CommandUnsupported(command),
                    );
                    if let Ok(bytes) = answer.to_vec() {
                        out.push(Output::Diameter(bytes));
                    }
                }
                peer::Output::Event(PeerEvent::Down(reason)) => {
                    out.push(Output::Report(Report::DiameterDown(reason)));
                    self.idle(now);
                }
                peer::Output::Event(event) => {
                    out.push(Output::Report(Report::DiameterEvent(event)))
                }
            }
        }
    }
}
