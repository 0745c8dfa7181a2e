//! The MAG side of an ePDG on the in-memory network: the binding update list
//! ([`BindingUpdateList`], RFC 5213 section 6) alone, its Mobility Header messages in UDP
//! port 5436 over IPv4 (RFC 5844), checksummed for their path: PBUs and PBAs, and the
//! heartbeats (RFC 5847) and revocations (RFC 5846) the list sends and answers. It stands
//! in for the ePDG where only the PMIP side matters (the chain of gateways, restarts);
//! the test gives it the registrations and de-registrations.

use std::net::{IpAddr, SocketAddr};
use std::time::{Instant, SystemTime};

use pmip_common::binding_update_list::{self as bul, BindingUpdateList, MagConfig, MobileNodeKey};
use pmip_common::mh::{ChecksumContext, MobilityHeaderRepr, IPPROTO_NONE};
use rand::rngs::StdRng;

use super::{Node, NodeInput, NodeOutput};
use crate::encode_pbu;

/// A binding update list and everything it reported.
pub struct MagNode {
    name: String,
    /// Where its PBUs leave from (an IPv4 address and port).
    pub address: SocketAddr,
    pub list: BindingUpdateList,
    pub events: Vec<(Instant, bul::Output)>,
    /// What the list learnt about its LMAs (restarts, unreachable, revocations).
    pub lma_events: Vec<(Instant, bul::LmaEvent)>,
    /// Datagrams that were not a Mobility Header message this list could read.
    pub unparsable: u64,
}

impl MagNode {
    pub fn new(
        name: &str,
        address: SocketAddr,
        config: MagConfig,
        now: Instant,
        wall_clock: SystemTime,
    ) -> Self {
        MagNode {
            name: name.into(),
            address,
            list: BindingUpdateList::new(config, now, wall_clock),
            events: Vec::new(),
            lma_events: Vec::new(),
            unparsable: 0,
        }
    }

    /// The MAG restarted (a new list, the new `config` with its own restart counter),
    /// and tells the LMAs it had bindings at (RFC 5847 section 3.2) when `announce`.
    pub fn restart(
        &mut self,
        config: MagConfig,
        announce: bool,
        now: Instant,
        wall_clock: SystemTime,
        out: &mut Vec<NodeOutput>,
    ) {
        let lmas = self.list.lmas();
        self.list = BindingUpdateList::new(config, now, wall_clock);
        if announce {
            self.input(bul::Input::AnnounceRestart(lmas), now, out);
        }
    }

    /// Feeds the list one input (a registration, a de-registration) at `now`.
    pub fn input(&mut self, input: bul::Input, now: Instant, out: &mut Vec<NodeOutput>) {
        let mut list_out = Vec::new();
        self.list.handle(input, now, &mut list_out);
        for o in list_out {
            match o {
                bul::Output::Send { to, pbu } => {
                    let bytes = encode_pbu(&pbu, checksum(self.address, to));
                    out.push(NodeOutput::Datagram {
                        from: self.address,
                        to,
                        bytes,
                    });
                }
                event => self.events.push((now, event)),
            }
        }
        while let Some(bul::Transmit { to, message }) = self.list.poll_transmit() {
            let repr = MobilityHeaderRepr {
                payload_proto: IPPROTO_NONE,
                message,
            };
            out.push(NodeOutput::Datagram {
                from: self.address,
                to,
                bytes: repr.to_bytes(checksum(self.address, to)),
            });
        }
        while let Some(event) = self.list.poll_event() {
            self.lma_events.push((now, event));
        }
    }

    /// Bindings lost so far (refused, unanswered, unreachable, revoked).
    pub fn lost(&self) -> usize {
        self.count(|e| matches!(e, bul::Output::Lost { .. }))
    }

    /// Registrations that succeeded so far.
    pub fn registered(&self) -> usize {
        self.count(|e| matches!(e, bul::Output::Registered { .. }))
    }

    /// Registrations that failed or were lost so far.
    pub fn failed(&self) -> usize {
        self.count(|e| matches!(e, bul::Output::Failed { .. } | bul::Output::Lost { .. }))
    }

    /// De-registrations finished so far (acknowledged or given up).
    pub fn deregistered(&self) -> usize {
        self.count(|e| matches!(e, bul::Output::Deregistered { .. }))
    }

    fn count(&self, which: impl Fn(&bul::Output) -> bool) -> usize {
        self.events.iter().filter(|(_, e)| which(e)).count()
    }

    /// The registration of `key`, while it is in the list.
    pub fn registration(&self, key: &MobileNodeKey) -> Option<&bul::Registration> {
        self.list.registration(key)
    }
}

/// The RFC 5844 checksum rule for a message between two IPv4 addresses.
fn checksum(source: SocketAddr, destination: SocketAddr) -> ChecksumContext {
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => ChecksumContext::Ipv4Udp,
        _ => ChecksumContext::Skip,
    }
}

impl Node for MagNode {
    fn name(&self) -> &str {
        &self.name
    }

    fn addresses(&self) -> Vec<IpAddr> {
        vec![self.address.ip()]
    }

    fn handle(
        &mut self,
        input: NodeInput<'_>,
        now: Instant,
        _rng: &mut StdRng,
        out: &mut Vec<NodeOutput>,
    ) {
        match input {
            NodeInput::Datagram { from, to, bytes } => {
                match MobilityHeaderRepr::parse(bytes, checksum(from, to)) {
                    Ok(repr) => {
                        let message = repr.message;
                        self.input(bul::Input::Mobility { from, message }, now, out)
                    }
                    Err(_) => self.unparsable += 1,
                }
            }
            NodeInput::Timeout => self.input(bul::Input::Timeout, now, out),
            NodeInput::Stream(_) => {}
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.list.poll_timeout()
    }
}
