//! An `lma` core ([`lma::Lma`], home or visited) on the in-memory network: the Mobility
//! Header in UDP port 5436 over IPv4 (RFC 5844), each datagram handed in with the path it
//! came on, as the `lma` binary's IPv4 driver does.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::{Instant, SystemTime};

use anyhow::Context;
use lma::config::{resolve, ConfigLayer};
use lma::{Input, Lma, MagAddress, Output};
use rand::rngs::StdRng;

use super::{Node, NodeInput, NodeOutput};

/// The UDP port of the Mobility Header over IPv4 (RFC 5844 section 3).
pub const MH_PORT: u16 = 5436;

/// An LMA and everything it reported (every output but the datagrams it sent).
pub struct LmaNode {
    name: String,
    pub lma: Lma,
    addresses: Vec<Ipv4Addr>,
    pub reports: Vec<(Instant, Output)>,
    /// Its `lma.toml` text, to start it again the same way.
    config: Option<String>,
    /// The state file's lines, as the `lma` binary writes them (when kept).
    pub state_file: Option<String>,
    /// While set, what it sends is dropped as it leaves: it hears, acts, and is never
    /// heard (a path that loses only its answers).
    pub mute: bool,
}

impl LmaNode {
    /// The LMA that `lma.toml` text `config` describes (read and checked as the `lma`
    /// binary does, `[chaining]` included), started at `now` / `wall_clock`; it answers
    /// on `listen_v4`'s address and on `chaining.local_v4`.
    pub fn configured(
        name: &str,
        config: &str,
        now: Instant,
        wall_clock: SystemTime,
    ) -> anyhow::Result<Self> {
        Self::start(name, config, 0, now, wall_clock)
    }

    fn start(
        name: &str,
        config: &str,
        restart_counter: u32,
        now: Instant,
        wall_clock: SystemTime,
    ) -> anyhow::Result<Self> {
        let path = Path::new(name);
        let layers = pmip_node::config::Layers::parse(config, path, ConfigLayer::default())?;
        let mut settings = resolve(&layers)?;
        settings.core.restart_counter = restart_counter;
        let mut addresses: Vec<Ipv4Addr> = Vec::new();
        if let Some(SocketAddr::V4(listen)) = settings.listen_v4 {
            addresses.push(*listen.ip());
        }
        let chaining = settings.chaining.clone();
        addresses.extend(chaining.as_ref().and_then(|c| c.local_v4));
        addresses.dedup();
        let lma = Lma::new(settings.core, now, wall_clock)
            .with_context(|| format!("{name}: the address pools"))?;
        let lma = match chaining {
            Some(c) => lma.with_chaining(c),
            None => lma,
        };
        let mut node = LmaNode::new(name, lma, &addresses);
        node.config = Some(config.to_string());
        Ok(node)
    }

    /// Keeps a state file from now on (in memory, in the binary's format).
    pub fn keep_state(&mut self) {
        self.lma.keep_journal();
        self.state_file.get_or_insert_with(String::new);
    }

    /// The gateway restarts (as after a `kill -9`): a fresh core from the same
    /// configuration with `restart_counter`, restored from the state file when one was
    /// kept (which goes on being kept). Only the configured node can.
    pub fn restart(
        &mut self,
        restart_counter: u32,
        now: Instant,
        wall_clock: SystemTime,
        out: &mut Vec<NodeOutput>,
    ) -> anyhow::Result<()> {
        let config = self.config.clone().context("not a configured node")?;
        let fresh = Self::start(&self.name, &config, restart_counter, now, wall_clock)?;
        self.lma = fresh.lma;
        if let Some(text) = self.state_file.take() {
            let restored = lma::state::replay(&text);
            self.keep_state();
            let mut lma_out = Vec::new();
            self.lma.restore(restored, now, &mut lma_out);
            self.handle_outputs(now, lma_out, out);
        }
        Ok(())
    }

    /// Carries out what the core output (datagrams to send; the rest kept as reports).
    pub fn handle_outputs(
        &mut self,
        now: Instant,
        lma_out: Vec<Output>,
        out: &mut Vec<NodeOutput>,
    ) {
        for o in lma_out {
            match o {
                Output::Send { .. } if self.mute => {}
                Output::Send {
                    to: MagAddress::Udp4 { mag, local },
                    bytes,
                } => out.push(NodeOutput::Datagram {
                    from: SocketAddr::V4(SocketAddrV4::new(local, MH_PORT)),
                    to: SocketAddr::V4(mag),
                    bytes,
                }),
                // Not routed here: the network has no IPv6 Mobility Header path yet.
                Output::Send { .. } => {}
                Output::Journal(record) => {
                    if let Some(text) = self.state_file.as_mut() {
                        text.push_str(&lma::state::line(&record));
                    }
                }
                other => self.reports.push((now, other)),
            }
        }
    }

    /// `lma` answering on `addresses` (a visited gateway has one toward the ePDGs and
    /// one toward the home gateways).
    pub fn new(name: &str, lma: Lma, addresses: &[Ipv4Addr]) -> Self {
        LmaNode {
            name: name.into(),
            lma,
            addresses: addresses.to_vec(),
            reports: Vec::new(),
            config: None,
            state_file: None,
            mute: false,
        }
    }
}

impl Node for LmaNode {
    fn name(&self) -> &str {
        &self.name
    }

    fn addresses(&self) -> Vec<IpAddr> {
        self.addresses.iter().map(|a| IpAddr::V4(*a)).collect()
    }

    fn handle(
        &mut self,
        input: NodeInput<'_>,
        now: Instant,
        _rng: &mut StdRng,
        out: &mut Vec<NodeOutput>,
    ) {
        let mut lma_out = Vec::new();
        match input {
            NodeInput::Datagram {
                from: SocketAddr::V4(mag),
                to: SocketAddr::V4(local),
                bytes,
            } if local.port() == MH_PORT => {
                let from = MagAddress::Udp4 {
                    mag,
                    local: *local.ip(),
                };
                self.lma
                    .handle(Input::Mobility { from, bytes }, now, &mut lma_out);
            }
            NodeInput::Timeout => self.lma.handle(Input::Timeout, now, &mut lma_out),
            // IPv6 transport and streams are not this node's.
            NodeInput::Datagram { .. } | NodeInput::Stream(_) => {}
        }
        self.handle_outputs(now, lma_out, out);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.lma.poll_timeout()
    }
}
