//! The ePDG's core ([`mag::epdg::Epdg`]) on the in-memory network, wired as the `mag`
//! binary's driver (`mag::driver`) wires it to its sockets:
//!
//! * **Settings**: `mag.toml` text read by [`mag::config::Config::parse`] and turned into
//!   the core's settings by [`EpdgConfig::from_config`], as the binary does. Without a
//!   certificate: the UEs here offer EAP-only authentication (RFC 5998), and a signing
//!   key drawn from the operating system would make runs differ.
//! * **Addresses**: IKE on `ike_listen` (UDP 500) and `natt_listen` (UDP 4500: IKE after
//!   the non-ESP marker of RFC 3948, told from ESP by
//!   [`UdpEncapsulated::classify`]); the Mobility Header toward the gateways from
//!   `mh_local` (UDP over IPv4, RFC 5844; port [`MH_PORT`] where the binary's socket has
//!   an ephemeral one); the Diameter connection opened from `mh_local` to `aaa`.
//! * **Inputs**: datagrams become [`Input::Ike`] or [`Input::Mobility`] by the address
//!   they came to; the connection's events become `DiameterConnected`,
//!   `DiameterConnectFailed`, `DiameterBytes` and `DiameterClosed`, those of a connection
//!   the core closed being ignored (as the driver's connection count does); timeouts
//!   become [`Input::Timeout`] when [`Epdg::poll_timeout`] has passed.
//! * **Outputs**: IKE datagrams (the non-ESP marker added on port 4500), PBUs, the
//!   connection's bytes, connect and close; the data plane's installs and removes are
//!   kept as [`EpdgNode::sessions`], the reports with their time as
//!   [`EpdgNode::reports`]. The state is read through [`Epdg::status`],
//!   [`Epdg::is_idle`] and those reports.
//!
//! It also keeps each IKE SA's keys (as the binary's keylog does on
//! [`Report::IkeSaCreated`]) so that the test can read the encrypted IKE_AUTH messages
//! that crossed the links: [`IkeKeyring`].

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Instant, SystemTime};

use mag::config::Config;
use mag::dataplane::SessionInfo;
use mag::epdg::{Epdg, EpdgConfig, Input, Output, Report, Status};
use pmip_common::esp::{UdpEncapsulated, NON_ESP_MARKER};
use pmip_common::ike::keys::IkeSaKeys;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::lma::MH_PORT;
use super::{ConnId, Node, NodeInput, NodeOutput, StreamEvent};

/// The keys of the IKE SAs an ePDG made, by (initiator SPI, responder SPI).
#[derive(Default, Clone)]
pub struct IkeKeyring {
    keys: HashMap<(u64, u64), IkeSaKeys>,
}

impl IkeKeyring {
    /// The keys of the IKE SA with these SPIs, if this ePDG made it.
    pub fn get(&self, initiator_spi: u64, responder_spi: u64) -> Option<&IkeSaKeys> {
        self.keys.get(&(initiator_spi, responder_spi))
    }

    /// Adds another ePDG's keys.
    pub fn extend(&mut self, other: &IkeKeyring) {
        self.keys
            .extend(other.keys.iter().map(|(k, v)| (*k, v.clone())));
    }
}

/// The state of the Diameter connection, as the driver tracks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Diameter {
    Idle,
    /// Asked for with this tag.
    Connecting(u64),
    Up(ConnId),
}

/// An ePDG and what its driver would have carried out besides sending.
pub struct EpdgNode {
    name: String,
    epdg: Epdg,
    ike: SocketAddr,
    natt: SocketAddr,
    mh: SocketAddr,
    aaa: SocketAddr,
    diameter: Diameter,
    next_tag: u64,
    /// Every report of the core, with its time.
    pub reports: Vec<(Instant, Report)>,
    /// The data-plane sessions installed now, by IKE SPI.
    pub sessions: BTreeMap<u64, SessionInfo>,
    /// SessionUp for an SPI already installed, or SessionDown for none: the data plane
    /// would have complained.
    pub session_errors: u64,
    /// Diameter messages the core asked to write while no connection was up.
    pub unwritten: u64,
    /// Datagrams on port 4500 that were ESP (no data plane here) or unclassifiable.
    pub not_ike: u64,
    keyring: IkeKeyring,
}

impl EpdgNode {
    /// The ePDG that `mag.toml` text `config` describes, started at `now` / `wall_clock`;
    /// `seed` seeds the core's randomness (SPIs, nonces, GRE keys, Diameter ids).
    pub fn configured(
        name: &str,
        config: &str,
        now: Instant,
        wall_clock: SystemTime,
        seed: u64,
    ) -> anyhow::Result<Self> {
        let config = Config::parse(config, Path::new(name))?;
        let core_config = EpdgConfig::from_config(&config)?;
        let mut rng = StdRng::seed_from_u64(seed);
        let epdg = Epdg::new(core_config, now, wall_clock, &mut rng);
        Ok(EpdgNode {
            name: name.into(),
            epdg,
            ike: config.ike_listen,
            natt: config.natt_listen,
            mh: SocketAddr::new(config.mh_local.into(), MH_PORT),
            aaa: config.aaa,
            diameter: Diameter::Idle,
            next_tag: 1,
            reports: Vec::new(),
            sessions: BTreeMap::new(),
            session_errors: 0,
            unwritten: 0,
            not_ike: 0,
            keyring: IkeKeyring::default(),
        })
    }

    /// The core, to read (`status`, `is_idle`, `poll_timeout`).
    pub fn core(&self) -> &Epdg {
        &self.epdg
    }

    /// The core's state summary (the binary's status file).
    pub fn status(&self) -> Status {
        self.epdg.status()
    }

    /// Where the UEs send IKE_SA_INIT.
    pub fn ike_address(&self) -> SocketAddr {
        self.ike
    }

    /// Where PBUs leave from.
    pub fn mh_address(&self) -> SocketAddr {
        self.mh
    }

    /// The keys of every IKE SA this ePDG made.
    pub fn keyring(&self) -> &IkeKeyring {
        &self.keyring
    }

    /// Whether the Diameter connection is up (the peer may still be opening).
    pub fn connected(&self) -> bool {
        matches!(self.diameter, Diameter::Up(_))
    }

    /// The reports that `which` selects.
    pub fn reports_where<'a>(
        &'a self,
        which: impl Fn(&Report) -> bool + 'a,
    ) -> impl Iterator<Item = &'a (Instant, Report)> + 'a {
        self.reports.iter().filter(move |(_, r)| which(r))
    }

    /// Whether the core reported [`Report::Stopped`].
    pub fn stopped(&self) -> bool {
        self.reports_where(|r| matches!(r, Report::Stopped { .. }))
            .next()
            .is_some()
    }

    /// Starts the core's shutdown, as the binary does on SIGTERM.
    pub fn shutdown(&mut self, now: Instant, rng: &mut StdRng, out: &mut Vec<NodeOutput>) {
        self.feed(Input::Shutdown, now, rng, out);
    }

    fn feed(
        &mut self,
        input: Input<'_>,
        now: Instant,
        rng: &mut StdRng,
        out: &mut Vec<NodeOutput>,
    ) {
        let mut core_out = Vec::new();
        self.epdg.handle(input, now, rng, &mut core_out);
        for o in core_out {
            self.carry_out(o, now, out);
        }
    }

    fn carry_out(&mut self, o: Output, now: Instant, out: &mut Vec<NodeOutput>) {
        match o {
            Output::Ike(t) => {
                let bytes = if t.natt {
                    let mut d = Vec::with_capacity(NON_ESP_MARKER.len() + t.bytes.len());
                    d.extend_from_slice(&NON_ESP_MARKER);
                    d.extend_from_slice(&t.bytes);
                    d
                } else {
                    t.bytes
                };
                out.push(NodeOutput::Datagram {
                    from: t.local,
                    to: t.remote,
                    bytes,
                });
            }
            Output::Mobility { to, bytes } => out.push(NodeOutput::Datagram {
                from: self.mh,
                to,
                bytes,
            }),
            Output::DiameterConnect => {
                if let Diameter::Up(conn) = self.diameter {
                    out.push(NodeOutput::Close { conn });
                }
                let tag = self.next_tag;
                self.next_tag += 1;
                self.diameter = Diameter::Connecting(tag);
                out.push(NodeOutput::Connect {
                    tag,
                    from: self.mh.ip(),
                    to: self.aaa,
                });
            }
            Output::Diameter(bytes) => match self.diameter {
                Diameter::Up(conn) => out.push(NodeOutput::Send { conn, bytes }),
                _ => self.unwritten += 1,
            },
            Output::DiameterClose => {
                if let Diameter::Up(conn) = self.diameter {
                    out.push(NodeOutput::Close { conn });
                }
                // Whatever the old connection still says is ignored.
                self.diameter = Diameter::Idle;
            }
            Output::SessionUp {
                ike_spi, session, ..
            } => {
                if self.sessions.insert(ike_spi, session).is_some() {
                    self.session_errors += 1;
                }
            }
            Output::SessionDown { ike_spi } => {
                if self.sessions.remove(&ike_spi).is_none() {
                    self.session_errors += 1;
                }
            }
            // A rekey moves a session to new SPIs; the network carries no ESP, so the
            // session (addresses, keys) is what matters here.
            Output::ChildSaRekeyed { ike_spi, .. } | Output::ChildSaRetired { ike_spi, .. } => {
                if !self.sessions.contains_key(&ike_spi) {
                    self.session_errors += 1;
                }
            }
            Output::Report(report) => {
                if let Report::IkeSaCreated { spi } = report {
                    if let Some(sa) = self.epdg.ike().sa(spi) {
                        self.keyring
                            .keys
                            .insert((sa.initiator_spi(), spi), sa.keys().clone());
                    }
                }
                self.reports.push((now, report));
            }
        }
    }

    fn stream(
        &mut self,
        event: StreamEvent<'_>,
        now: Instant,
        rng: &mut StdRng,
        out: &mut Vec<NodeOutput>,
    ) {
        match event {
            StreamEvent::Up { conn, tag, .. } => {
                let asked =
                    matches!((tag, self.diameter), (Some(t), Diameter::Connecting(c)) if t == c);
                if asked {
                    self.diameter = Diameter::Up(conn);
                    self.feed(Input::DiameterConnected, now, rng, out);
                } else {
                    // A connection the core no longer wants, or one nobody should open
                    // to an ePDG.
                    out.push(NodeOutput::Close { conn });
                }
            }
            StreamEvent::Refused { tag } => {
                if self.diameter == Diameter::Connecting(tag) {
                    self.diameter = Diameter::Idle;
                    self.feed(Input::DiameterConnectFailed, now, rng, out);
                }
            }
            StreamEvent::Data { conn, bytes } => {
                if self.diameter == Diameter::Up(conn) {
                    self.feed(Input::DiameterBytes(bytes), now, rng, out);
                }
            }
            StreamEvent::Down { conn } => {
                if self.diameter == Diameter::Up(conn) {
                    self.diameter = Diameter::Idle;
                    self.feed(Input::DiameterClosed, now, rng, out);
                }
            }
        }
    }
}

impl Node for EpdgNode {
    fn name(&self) -> &str {
        &self.name
    }

    fn addresses(&self) -> Vec<IpAddr> {
        let mut addresses = vec![self.ike.ip(), self.natt.ip(), self.mh.ip()];
        addresses.sort();
        addresses.dedup();
        addresses
    }

    fn handle(
        &mut self,
        input: NodeInput<'_>,
        now: Instant,
        rng: &mut StdRng,
        out: &mut Vec<NodeOutput>,
    ) {
        match input {
            NodeInput::Datagram { from, to, bytes } if to == self.ike => {
                let input = Input::Ike {
                    remote: from,
                    local: to,
                    natt: false,
                    bytes,
                };
                self.feed(input, now, rng, out);
            }
            NodeInput::Datagram { from, to, bytes } if to == self.natt => {
                match UdpEncapsulated::classify(bytes) {
                    Ok(UdpEncapsulated::Ike(ike)) => {
                        let input = Input::Ike {
                            remote: from,
                            local: to,
                            natt: true,
                            bytes: ike,
                        };
                        self.feed(input, now, rng, out);
                    }
                    Ok(UdpEncapsulated::NatKeepalive) => {}
                    Ok(UdpEncapsulated::Esp(_)) | Err(_) => self.not_ike += 1,
                }
            }
            NodeInput::Datagram { from, to, bytes } if to == self.mh => {
                self.feed(Input::Mobility { from, bytes }, now, rng, out);
            }
            NodeInput::Datagram { .. } => {}
            NodeInput::Stream(event) => self.stream(event, now, rng, out),
            NodeInput::Timeout => {
                if self.epdg.poll_timeout().is_some_and(|t| t <= now) {
                    self.feed(Input::Timeout, now, rng, out);
                }
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.epdg.poll_timeout()
    }
}
