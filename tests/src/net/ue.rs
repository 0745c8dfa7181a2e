//! The UE emulator's core ([`ue_emu::ue::Ue`]) on the in-memory network: its datagrams
//! leave from one local address, as from `ue-emu`'s socket; the test gives it the
//! commands (attach, detach).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rand::rngs::StdRng;
use ue_emu::ue::{Command, Input, Output, Ue};

use super::{Node, NodeInput, NodeOutput};

/// A UE and everything it reported (every output but its datagrams), with the time.
pub struct UeNode {
    name: String,
    /// Its address and UDP port.
    pub local: SocketAddr,
    pub ue: Ue,
    pub events: Vec<(Instant, Output)>,
    /// Attaches that ended (attached or failed), and detaches that ended.
    pub attach_outcomes: usize,
    pub detach_outcomes: usize,
}

impl UeNode {
    pub fn new(name: &str, local: SocketAddr, ue: Ue) -> Self {
        UeNode {
            name: name.into(),
            local,
            ue,
            events: Vec::new(),
            attach_outcomes: 0,
            detach_outcomes: 0,
        }
    }

    /// Attaches from this node's address.
    pub fn attach(&mut self, now: Instant, rng: &mut StdRng, out: &mut Vec<NodeOutput>) {
        let local = self.local;
        self.input(Input::Command(Command::Attach { local }), now, rng, out);
    }

    pub fn detach(&mut self, now: Instant, rng: &mut StdRng, out: &mut Vec<NodeOutput>) {
        self.input(Input::Command(Command::Detach), now, rng, out);
    }

    fn input(
        &mut self,
        input: Input<'_>,
        now: Instant,
        rng: &mut StdRng,
        out: &mut Vec<NodeOutput>,
    ) {
        let mut ue_out = Vec::new();
        self.ue.handle(input, now, rng, &mut ue_out);
        for o in ue_out {
            match o {
                Output::Transmit { to, bytes } => out.push(NodeOutput::Datagram {
                    from: self.local,
                    to,
                    bytes,
                }),
                other => {
                    match other {
                        Output::Attached(_) | Output::Failed(_) => self.attach_outcomes += 1,
                        Output::Detached { .. } => self.detach_outcomes += 1,
                        _ => {}
                    }
                    self.events.push((now, other))
                }
            }
        }
    }

    /// How the last attach ended, if it did.
    pub fn outcome(&self) -> Option<&Output> {
        self.events
            .iter()
            .rev()
            .map(|(_, o)| o)
            .find(|o| matches!(o, Output::Attached(_) | Output::Failed(_)))
    }
}

impl Node for UeNode {
    fn name(&self) -> &str {
        &self.name
    }

    fn addresses(&self) -> Vec<IpAddr> {
        vec![self.local.ip()]
    }

    fn handle(
        &mut self,
        input: NodeInput<'_>,
        now: Instant,
        rng: &mut StdRng,
        out: &mut Vec<NodeOutput>,
    ) {
        match input {
            NodeInput::Datagram { from, to, bytes } if to == self.local => {
                self.input(Input::Datagram { from, bytes }, now, rng, out)
            }
            NodeInput::Timeout => self.input(Input::Timeout, now, rng, out),
            NodeInput::Datagram { .. } | NodeInput::Stream(_) => {}
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.ue.poll_timeout()
    }
}
