//! The ePDG core in virtual time, against real peers: UEs built from the IKE initiator
//! and the EAP-AKA peer with a software USIM, the AAA server's core (`aaa_stub::core`)
//! behind a Diameter peer state machine, and the LMA's core (`lma::Lma`). Every message
//! crosses an in-memory wire in order; the tests advance the clock to the next deadline
//! of any node.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::UNIX_EPOCH;

use aaa_stub::config::AaaConfig;
use aaa_stub::core::{self as aaa, Aaa, Subscribers};
use aaa_stub::subscriber::{Key128, Subscriber};
use lma::{Lma, LmaSettings, MagAddress};
use pmip_common::diameter::codes::command;
use pmip_common::diameter::peer::{self, Peer, Role};
use pmip_common::diameter::{Framer, Packet};
use pmip_common::eap::{self as eap, PeerOutput, Sqn, Usim};
use pmip_common::ike::initiator::{InitiatorConfig, InitiatorSa};
use pmip_common::ike::sa::{self as ike_sa, CloseReason, RetransmitPolicy};
use pmip_common::ike::wire::{
    CfgType, ConfigAttribute, CpPayload, Identification, NotifyType, TrafficSelector,
};
use pmip_common::ike::{EspSuite, IkeSuite};

use super::*;
use crate::attach::Outcome;
use pmip_common::diameter::peer::PeerConfig;

const IMSI: &str = "234150999999999";
const K: [u8; 16] = [0x46; 16];
const OPC: [u8; 16] = [0xcd; 16];
const APN: &str = "internet";
const EPDG: &str = "198.51.100.1:500";
const MH_LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const LMA_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const REALM: &str = "epc.mnc015.mcc234.3gppnetwork.org";

fn nai() -> String {
    eap::permanent_identity(IMSI, 3).unwrap()
}

/// The AAA's subscriber store, in memory.
struct Store {
    sqn: u64,
}

impl Subscribers for Store {
    fn lookup(&self, imsi: &str) -> Option<(Subscriber, u64)> {
        (imsi == IMSI).then(|| {
            (
                Subscriber {
                    imsi: IMSI.into(),
                    k: Key128(K),
                    opc: Key128(OPC),
                    amf: [0x80, 0],
                    apns: vec![APN.into()],
                },
                self.sqn,
            )
        })
    }

    fn commit_sqn(&mut self, _imsi: &str, sqn: u64) -> Result<(), String> {
        self.sqn = sqn;
        Ok(())
    }
}

fn epdg_config() -> EpdgConfig {
    let mut config = EpdgConfig {
        mh_local: MH_LOCAL,
        ..EpdgConfig::default()
    };
    config.attach.origin_host = format!("epdg.{REALM}");
    config.attach.origin_realm = REALM.into();
    config.attach.destination_realm = REALM.into();
    config.ike.liveness_interval = None;
    config
}

/// The LMA's settings from `lma.toml` text, as the lma reads them (fields added later
/// take their defaults): pools, GRE keys required, our MAG allowed.
fn lma_settings_from(extra: &str) -> LmaSettings {
    let text = format!(
        "listen_v4 = \"{LMA_IP}:5436\"\nipv6_pool = \"2001:db8:45::/48\"\n\
         max_lifetime_secs = 7200\n\
         timestamp_window_ms = 7000\nrequire_gre_key = true\n\
         allowed_mags = [\"{MH_LOCAL}\"]\n{extra}"
    );
    let layer: lma::config::ConfigLayer = toml::from_str(&text).unwrap();
    let layers = pmip_node::config::Layers::new(None, layer, Default::default());
    lma::config::resolve(&layers).unwrap().core
}

fn lma_settings() -> LmaSettings {
    lma_settings_from("ipv4_pool = \"10.45.0.0/24\"\nipv4_default_router = \"10.45.0.1\"\n")
}

/// One UE: its IKE SA and USIM.
struct TestUe {
    address: SocketAddr,
    sa: InitiatorSa,
    usim: eap::Peer,
    /// When it got the EAP-Success (the net's sequence number).
    eap_success_at: Option<u64>,
    established: Option<Box<ike_sa::Established>>,
    closed: Option<CloseReason>,
    /// Gone without a word: nothing reaches it, it sends nothing.
    vanished: bool,
}

impl TestUe {
    fn cp_reply(&self) -> Option<&CpPayload> {
        self.established.as_ref()?.cp_reply.as_ref()
    }

    fn ipv4(&self) -> Option<Ipv4Addr> {
        self.cp_reply()?.attributes.iter().find_map(|a| match a {
            ConfigAttribute::InternalIp4Address(Some(v)) => Some(*v),
            _ => None,
        })
    }

    fn ipv6(&self) -> Option<(std::net::Ipv6Addr, u8)> {
        self.cp_reply()?.attributes.iter().find_map(|a| match a {
            ConfigAttribute::InternalIp6Address(Some(v)) => Some(*v),
            _ => None,
        })
    }
}

/// What crosses the in-memory wire.
#[derive(Debug)]
enum Wire {
    /// From UE `ue` to the ePDG.
    Ike {
        ue: usize,
        natt: bool,
        bytes: Vec<u8>,
    },
    ToUe {
        transmit: Transmit,
    },
    ToAaa(Vec<u8>),
    FromAaa(Vec<u8>),
    ToLma(Vec<u8>),
    FromLma(Vec<u8>),
}

/// How the AAA behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AaaMode {
    Answering,
    /// Connected and watchdog-alive, but application requests go unanswered.
    Silent,
    /// The connection cannot be opened.
    Down,
}

/// Every node around one ePDG, and the wire between them, in virtual time.
struct Net {
    now: Instant,
    seq: u64,
    rng: StdRng,
    epdg: Epdg,
    aaa: Aaa<Store>,
    aaa_peer: Option<Peer>,
    aaa_framer: Framer,
    aaa_mode: AaaMode,
    lma: Lma,
    lma_silent: bool,
    /// PBAs held back (not delivered) while set.
    hold_pbas: bool,
    held: Vec<Vec<u8>>,
    ues: Vec<TestUe>,
    wire: VecDeque<Wire>,
    /// Every Diameter request the ePDG sent: command code and Session-Id.
    requests: Vec<(u32, String)>,
    /// When each PBA reached the ePDG (the net's sequence numbers).
    pbas_at: Vec<u64>,
    reports: Vec<Report>,
    /// Data-plane sessions installed, by IKE SPI.
    sessions: HashMap<u64, (Box<ChildSa>, SessionInfo)>,
    /// CHILD_SAs the data plane was told to add by a rekey, and to retire.
    rekeyed: Vec<(u64, ChildSa)>,
    retired: Vec<(u64, u32)>,
    /// Lifetimes of the PBUs the ePDG sent, in order.
    pbu_lifetimes: Vec<u32>,
}

impl Net {
    fn new() -> Self {
        Self::with(epdg_config(), lma_settings())
    }

    fn with(config: EpdgConfig, lma: LmaSettings) -> Self {
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut rng = StdRng::seed_from_u64(7);
        // From TOML, as the aaa-stub reads it: fields added later take their defaults.
        let aaa_layer: aaa_stub::config::ConfigLayer = toml::from_str(&format!(
            "origin_host = \"aaa.{REALM}\"\norigin_realm = \"{REALM}\"\n\
             subscribers = \"subscribers.toml\"\nsqn_state = \"sqn.toml\"\n\
             [gateways]\n{APN} = \"{LMA_IP}\"\n"
        ))
        .unwrap();
        let aaa_config = AaaConfig::resolve(&pmip_node::config::Layers::new(
            None,
            aaa_layer,
            Default::default(),
        ))
        .unwrap();
        let mut net = Net {
            now,
            seq: 0,
            epdg: Epdg::new(config, now, wall, &mut rng),
            aaa: Aaa::new(
                aaa_config,
                Store { sqn: 0 },
                Box::new(StdRng::seed_from_u64(8)),
            ),
            rng,
            aaa_peer: None,
            aaa_framer: Framer::new(1 << 20),
            aaa_mode: AaaMode::Answering,
            lma: Lma::new(lma, now, wall).unwrap(),
            lma_silent: false,
            hold_pbas: false,
            held: Vec::new(),
            ues: Vec::new(),
            wire: VecDeque::new(),
            requests: Vec::new(),
            pbas_at: Vec::new(),
            reports: Vec::new(),
            sessions: HashMap::new(),
            rekeyed: Vec::new(),
            retired: Vec::new(),
            pbu_lifetimes: Vec::new(),
        };
        // The first connect to the AAA is due at once.
        assert_eq!(net.epdg.poll_timeout(), Some(now));
        net.fire(now);
        assert!(net.epdg.status().diameter_open, "the SWm peer is open");
        net
    }

    fn epdg_input(&mut self, input: Input<'_>) {
        let mut out = Vec::new();
        self.epdg.handle(input, self.now, &mut self.rng, &mut out);
        self.epdg_outputs(out);
    }

    fn epdg_outputs(&mut self, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Ike(transmit) => self.wire.push_back(Wire::ToUe { transmit }),
                Output::Mobility { to, bytes } => {
                    assert_eq!(to, SocketAddr::new(LMA_IP.into(), 5436));
                    self.wire.push_back(Wire::ToLma(bytes));
                }
                Output::DiameterConnect => {
                    if self.aaa_mode == AaaMode::Down {
                        self.epdg_input(Input::DiameterConnectFailed);
                        continue;
                    }
                    let caps = pmip_common::diameter::base::Capabilities::swm(
                        &format!("aaa.{REALM}"),
                        REALM,
                        vec![IpAddr::from(Ipv4Addr::LOCALHOST)],
                        "aaa-stub",
                    );
                    let mut peer =
                        Peer::new(PeerConfig::new(caps), Role::Responder, Box::new(|| 7));
                    let mut peer_out = Vec::new();
                    peer.handle(peer::Input::ConnectionUp, self.now, &mut peer_out);
                    self.aaa_peer = Some(peer);
                    self.aaa_framer = Framer::new(1 << 20);
                    self.aaa_peer_outputs(peer_out);
                    self.epdg_input(Input::DiameterConnected);
                }
                Output::Diameter(bytes) => {
                    let packet = Packet::new_checked(&bytes[..]).unwrap();
                    let message = pmip_common::diameter::Message::parse(&packet).unwrap();
                    {
                        let h = &message.header;
                        if h.flags.request() {
                            let session = message.session_id().unwrap_or("").to_string();
                            self.requests.push((h.command_code, session));
                        }
                    }
                    self.wire.push_back(Wire::ToAaa(bytes));
                }
                Output::DiameterClose => self.aaa_peer = None,
                Output::SessionUp {
                    ike_spi,
                    child,
                    session,
                } => {
                    assert!(self.sessions.insert(ike_spi, (child, session)).is_none());
                }
                Output::SessionDown { ike_spi } => {
                    assert!(self.sessions.remove(&ike_spi).is_some());
                }
                Output::ChildSaRekeyed { ike_spi, child } => {
                    assert!(self.sessions.contains_key(&ike_spi));
                    self.rekeyed.push((ike_spi, *child));
                }
                Output::ChildSaRetired {
                    ike_spi,
                    inbound_spi,
                } => self.retired.push((ike_spi, inbound_spi)),
                Output::Report(r) => {
                    if let Report::PbuSent { lifetime, .. } = &r {
                        self.pbu_lifetimes.push(lifetime.as_secs());
                    }
                    self.reports.push(r)
                }
            }
        }
    }

    fn aaa_peer_outputs(&mut self, out: Vec<peer::Output>) {
        for o in out {
            match o {
                peer::Output::Send(bytes) => self.wire.push_back(Wire::FromAaa(bytes)),
                peer::Output::Close => self.aaa_peer = None,
                peer::Output::Event(peer::PeerEvent::Request(message)) => {
                    if self.aaa_mode == AaaMode::Silent {
                        continue;
                    }
                    let mut aaa_out = Vec::new();
                    let input = aaa::Input::Request { conn: 1, message };
                    self.aaa.handle(input, self.now, &mut aaa_out);
                    for a in aaa_out {
                        if let aaa::Output::Send { message, .. } = a {
                            self.wire
                                .push_back(Wire::FromAaa(message.to_vec().unwrap()));
                        }
                    }
                }
                peer::Output::Event(_) => {}
            }
        }
    }

    /// A new UE at 192.0.2.(10 + n), starting IKE_SA_INIT toward the ePDG for `apn`.
    fn add_ue(&mut self, apn: &str, k: [u8; 16]) -> usize {
        let n = self.ues.len();
        let address = SocketAddr::new(Ipv4Addr::new(192, 0, 2, 10 + n as u8).into(), 500);
        let config = InitiatorConfig {
            suites: IkeSuite::defaults(),
            esp_suites: EspSuite::defaults(),
            idi: Identification::Rfc822Addr(nai()),
            idr: Some(Identification::Fqdn(apn.into())),
            cp_request: vec![
                ConfigAttribute::InternalIp4Address(None),
                ConfigAttribute::InternalIp6Address(None),
            ],
            tsi: vec![TrafficSelector::any_ipv4(), TrafficSelector::any_ipv6()],
            tsr: vec![TrafficSelector::any_ipv4(), TrafficSelector::any_ipv6()],
            local: address,
            remote: EPDG.parse().unwrap(),
            force_port_4500: true,
            eap_only: true,
            peer_verifier: None,
            retransmit: RetransmitPolicy::default(),
            ..InitiatorConfig::default()
        };
        let mut out = Vec::new();
        let sa = InitiatorSa::start(config, self.now, &mut self.rng, &mut out).unwrap();
        let usim = eap::Peer::new(
            eap::PeerConfig {
                permanent_identity: nai().into_bytes(),
                eap_identity: Some(nai().into_bytes()),
                result_indication: false,
            },
            Usim::new(&k, &OPC, Sqn::new(0).unwrap()),
        );
        self.ues.push(TestUe {
            address,
            sa,
            usim,
            eap_success_at: None,
            established: None,
            closed: None,
            vanished: false,
        });
        self.ue_outputs(n, out);
        n
    }

    fn ue_outputs(&mut self, n: usize, out: Vec<ike_sa::Output>) {
        for o in out {
            match o {
                ike_sa::Output::Send { bytes, port_4500 } => {
                    if !self.ues[n].vanished {
                        self.wire.push_back(Wire::Ike {
                            ue: n,
                            natt: port_4500,
                            bytes,
                        })
                    }
                }
                ike_sa::Output::Event(ike_sa::Event::EapRequest(eap)) => {
                    if eap.first() == Some(&3) {
                        self.ues[n].eap_success_at = Some(self.seq);
                    }
                    let mut more = Vec::new();
                    let now = self.now;
                    let ue = &mut self.ues[n];
                    for p in ue.usim.handle(&eap) {
                        match p {
                            PeerOutput::Send(response) => {
                                ue.sa.send_eap(response, now, &mut self.rng, &mut more);
                            }
                            PeerOutput::Success(keys) => {
                                ue.sa.complete_eap(
                                    keys.msk.to_vec(),
                                    now,
                                    &mut self.rng,
                                    &mut more,
                                );
                            }
                            _ => {}
                        }
                    }
                    self.ue_outputs(n, more);
                }
                ike_sa::Output::Event(ike_sa::Event::Established(e)) => {
                    self.ues[n].established = Some(e)
                }
                ike_sa::Output::Event(ike_sa::Event::Closed(r)) => self.ues[n].closed = Some(r),
                ike_sa::Output::Event(_) => {}
            }
        }
    }

    /// Delivers one message from the wire.
    fn deliver(&mut self, w: Wire) {
        self.seq += 1;
        let epdg: SocketAddr = EPDG.parse().unwrap();
        match w {
            Wire::Ike { ue, natt, bytes } => {
                let mut remote = self.ues[ue].address;
                let mut local = epdg;
                if natt {
                    remote.set_port(4500);
                    local.set_port(4500);
                }
                self.epdg_input(Input::Ike {
                    remote,
                    local,
                    natt,
                    bytes: &bytes,
                });
            }
            Wire::ToUe { transmit } => {
                let Some(n) = self
                    .ues
                    .iter()
                    .position(|u| u.address.ip() == transmit.remote.ip())
                else {
                    panic!("no UE at {}", transmit.remote)
                };
                if self.ues[n].vanished {
                    return;
                }
                let mut out = Vec::new();
                let now = self.now;
                self.ues[n]
                    .sa
                    .handle(&transmit.bytes, transmit.natt, now, &mut self.rng, &mut out);
                self.ue_outputs(n, out);
            }
            Wire::ToAaa(bytes) => {
                let Some(peer) = self.aaa_peer.as_mut() else {
                    return;
                };
                self.aaa_framer.push(&bytes);
                let mut out = Vec::new();
                while let Ok(Some(m)) = self.aaa_framer.next_message() {
                    peer.handle(peer::Input::Message(&m), self.now, &mut out);
                }
                self.aaa_peer_outputs(out);
            }
            Wire::FromAaa(bytes) => self.epdg_input(Input::DiameterBytes(&bytes)),
            Wire::ToLma(bytes) => {
                if self.lma_silent {
                    return;
                }
                let from = MagAddress::Udp4 {
                    mag: SocketAddrV4::new(MH_LOCAL, 40000),
                    local: LMA_IP,
                };
                let mut out = Vec::new();
                self.lma.handle(
                    lma::Input::Mobility {
                        from,
                        bytes: &bytes,
                    },
                    self.now,
                    &mut out,
                );
                self.lma_outputs(out);
            }
            Wire::FromLma(bytes) => {
                if self.hold_pbas {
                    self.held.push(bytes);
                    return;
                }
                self.pbas_at.push(self.seq);
                let from = SocketAddr::new(LMA_IP.into(), 5436);
                self.epdg_input(Input::Mobility {
                    from,
                    bytes: &bytes,
                });
            }
        }
    }

    fn lma_outputs(&mut self, out: Vec<lma::Output>) {
        for o in out {
            if let lma::Output::Send { bytes, .. } = o {
                self.wire.push_back(Wire::FromLma(bytes));
            }
        }
    }

    /// Delivers everything in flight, and what that causes, without moving the clock.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            match self.wire.pop_front() {
                Some(w) => self.deliver(w),
                None => return,
            }
        }
        panic!("the network did not settle");
    }

    /// Every node's earliest deadline.
    fn next_deadline(&self) -> Option<Instant> {
        let ues = self
            .ues
            .iter()
            .filter(|u| !u.vanished)
            .filter_map(|u| u.sa.poll_timeout());
        let aaa_peer = self.aaa_peer.as_ref().and_then(Peer::poll_timeout);
        [
            self.epdg.poll_timeout(),
            self.lma.poll_timeout(),
            self.aaa.poll_timeout(),
            aaa_peer,
        ]
        .into_iter()
        .flatten()
        .chain(ues)
        .min()
    }

    /// Moves the clock to `at` (if later) and fires every node's due deadline.
    fn fire(&mut self, at: Instant) {
        self.now = self.now.max(at);
        let now = self.now;
        if self.epdg.poll_timeout().is_some_and(|t| t <= now) {
            self.epdg_input(Input::Timeout);
        }
        if self.lma.poll_timeout().is_some_and(|t| t <= now) {
            let mut out = Vec::new();
            self.lma.handle(lma::Input::Timeout, now, &mut out);
            self.lma_outputs(out);
        }
        if self.aaa.poll_timeout().is_some_and(|t| t <= now) {
            let mut out = Vec::new();
            self.aaa.handle(aaa::Input::Timeout, now, &mut out);
        }
        if let Some(peer) = self.aaa_peer.as_mut() {
            if peer.poll_timeout().is_some_and(|t| t <= now) {
                let mut out = Vec::new();
                peer.handle(peer::Input::Timeout, now, &mut out);
                self.aaa_peer_outputs(out);
            }
        }
        for n in 0..self.ues.len() {
            let ue = &mut self.ues[n];
            if !ue.vanished && ue.sa.poll_timeout().is_some_and(|t| t <= now) {
                let mut out = Vec::new();
                ue.sa.handle_timeout(now, &mut self.rng, &mut out);
                self.ue_outputs(n, out);
            }
        }
        self.settle();
    }

    /// Runs for `span` of virtual time, deadline by deadline.
    fn run_for(&mut self, span: Duration) {
        self.settle();
        let end = self.now + span;
        while let Some(at) = self.next_deadline().filter(|t| *t <= end) {
            self.fire(at);
        }
        self.now = end;
    }

    /// Attaches a new UE for APN `internet` with the right key.
    fn attach(&mut self) -> usize {
        let n = self.add_ue(APN, K);
        self.settle();
        assert!(
            self.ues[n].established.is_some(),
            "UE {n} attached: {:?}\n{:#?}",
            self.ues[n].closed,
            self.reports
        );
        n
    }

    /// UE `n` deletes its IKE SA (INFORMATIONAL with a Delete payload).
    fn ue_deletes(&mut self, n: usize) {
        let mut out = Vec::new();
        let now = self.now;
        self.ues[n].sa.delete(now, &mut self.rng, &mut out);
        self.ue_outputs(n, out);
    }

    fn str_sent_for(&self, spi: u64) -> bool {
        let session = self.session_of(spi);
        self.requests
            .iter()
            .any(|(c, s)| *c == command::SESSION_TERMINATION && *s == session)
    }

    /// The Session-Id the ePDG gave the IKE SA `spi` (from its DER).
    fn session_of(&self, spi: u64) -> String {
        let prefix = format!("epdg.{REALM};{};", (spi >> 32) as u32);
        self.requests
            .iter()
            .find(|(_, s)| s.starts_with(&prefix))
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    }

    /// The SPIs of every IKE SA the ePDG made.
    fn spis(&self) -> Vec<u64> {
        self.reports
            .iter()
            .filter_map(|r| match r {
                Report::IkeSaCreated { spi } => Some(*spi),
                _ => None,
            })
            .collect()
    }

    fn ended(&self, spi: u64) -> Option<&Outcome> {
        self.reports.iter().find_map(|r| match r {
            Report::AttachEnded { spi: s, outcome } if *s == spi => Some(outcome),
            _ => None,
        })
    }

    /// Nothing left anywhere: no IKE SA, AAA session, binding or per-UE deadline at the
    /// ePDG, no data-plane session, no session at the AAA, no binding at the LMA.
    fn assert_nothing_left(&self) {
        assert!(self.epdg.is_idle(), "{:?}", self.epdg.status());
        assert!(self.sessions.is_empty());
        assert_eq!(self.aaa.session_count(), 0, "AAA sessions");
        assert_eq!(self.lma.cache().len(), 0, "LMA bindings");
        let status = self.epdg.status();
        assert_eq!(
            (status.ike_sas, status.aaa_sessions, status.bindings),
            (0, 0, 0)
        );
        assert!(status.attached.is_empty());
    }
}

#[test]
fn the_whole_ladder_ends_attached_with_the_lmas_addresses_in_the_cfg_reply() {
    let mut net = Net::new();
    let n = net.attach();
    let ue = &net.ues[n];
    // The CFG_REPLY carries what the LMA allocated.
    let (_, binding) = net.lma.cache().iter().next().expect("a binding at the LMA");
    let ipv4 = ue.ipv4().expect("an IPv4 address in the CFG_REPLY");
    let (prefix, len) = ue.ipv6().expect("an IPv6 prefix in the CFG_REPLY");
    assert_eq!(ue.cp_reply().unwrap().cfg_type, CfgType::CfgReply);
    assert_eq!(Some(ipv4), binding.addresses().ipv4_home_address);
    assert_eq!(
        binding.addresses().home_network_prefix,
        Some(ipnet::Ipv6Net::new(prefix, len).unwrap())
    );
    // The status summary, the data plane and the AAA agree.
    let status = net.epdg.status();
    assert_eq!(
        (status.ike_sas, status.aaa_sessions, status.bindings),
        (1, 1, 1)
    );
    let attached = &status.attached[0];
    assert_eq!(
        (attached.nai.as_str(), attached.apn.as_str()),
        (nai().as_str(), APN)
    );
    assert_eq!(attached.ipv4, Some(ipv4));
    assert_eq!(attached.lma, SocketAddr::new(LMA_IP.into(), 5436));
    let spi = net.spis()[0];
    let (child, session) = &net.sessions[&spi];
    let ue_child = &net.ues[n].established.as_ref().unwrap().child;
    assert_eq!(child.keys, ue_child.keys);
    assert_eq!(child.inbound_spi, ue_child.outbound_spi);
    assert_eq!(session.ipv4, Some(ipv4));
    assert_eq!(session.downlink_key, attached.downlink_gre_key);
    assert_eq!(session.uplink_key, attached.uplink_gre_key);
    assert_eq!(session.ue, SocketAddr::new(net.ues[n].address.ip(), 4500));
    assert_eq!(net.aaa.session_count(), 1);
    assert!(net
        .reports
        .iter()
        .any(|r| matches!(r, Report::Attached { attached: 1, .. })));
    // Later, the UE detaches: nothing is left anywhere.
    net.run_for(Duration::from_secs(1));
    let mut out = Vec::new();
    let now = net.now;
    net.ues[n].sa.delete(now, &mut net.rng, &mut out);
    net.ue_outputs(n, out);
    net.run_for(Duration::from_secs(5));
    assert!(net.str_sent_for(spi));
    assert_eq!(net.pbu_lifetimes.last(), Some(&0));
    assert!(matches!(net.ended(spi), Some(Outcome::Detached(_))));
    net.assert_nothing_left();
    // The STA came after the UE was gone, as it always does: not a dropped answer.
    assert!(!net
        .reports
        .iter()
        .any(|r| matches!(r, Report::SwmAnswerDropped { .. })));
}

#[test]
fn the_eap_success_is_never_sent_before_the_pba() {
    let mut net = Net::new();
    net.hold_pbas = true;
    let n = net.add_ue(APN, K);
    net.settle();
    // EAP done at the AAA, the PBU answered but the PBA held: no EAP-Success yet,
    // however long we wait within the PBU's first retransmission.
    assert_eq!(net.held.len(), 1);
    assert_eq!(net.ues[n].eap_success_at, None);
    assert!(net.ues[n].established.is_none());
    net.hold_pbas = false;
    let pba = net.held.remove(0);
    net.wire.push_back(Wire::FromLma(pba));
    net.settle();
    let pba_at = net.pbas_at[0];
    let success_at = net.ues[n]
        .eap_success_at
        .expect("EAP-Success after the PBA");
    assert!(
        pba_at < success_at,
        "PBA {pba_at}, EAP-Success {success_at}"
    );
    assert!(net.ues[n].established.is_some());
}

#[test]
fn a_retransmitted_ike_sa_init_is_answered_from_the_cache_with_no_second_sa() {
    let mut net = Net::new();
    let n = net.add_ue(APN, K);
    let Some(Wire::Ike { bytes: init, .. }) = net.wire.front() else {
        panic!("the UE's IKE_SA_INIT")
    };
    let init = init.clone();
    // The request twice: the same answer, one SA.
    net.deliver(Wire::Ike {
        ue: n,
        natt: false,
        bytes: init.clone(),
    });
    let Some(Wire::ToUe { transmit: first }) = net.wire.pop_back() else {
        panic!("an IKE_SA_INIT response")
    };
    net.deliver(Wire::Ike {
        ue: n,
        natt: false,
        bytes: init,
    });
    let Some(Wire::ToUe { transmit: again }) = net.wire.pop_back() else {
        panic!("the IKE_SA_INIT response again")
    };
    assert_eq!(first, again);
    assert_eq!(net.epdg.status().ike_sas, 1);
    assert_eq!(net.epdg.ike().len(), 1);
    assert_eq!(net.epdg.ike().stats().init_retransmissions, 1);
    assert_eq!(net.spis().len(), 1);
    // The UE's own copy (still on the wire) is a third one; the attach goes on.
    net.wire.push_back(Wire::ToUe { transmit: first });
    net.settle();
    assert!(net.ues[n].established.is_some());
    assert_eq!(net.epdg.status().ike_sas, 1);
}

/// Runs one attach that must fail with `notify`, then checks that it left nothing.
fn assert_rejected(mut net: Net, apn: &str, k: [u8; 16], notify: NotifyType, wait: Duration) {
    let n = net.add_ue(apn, k);
    net.run_for(wait);
    assert!(net.ues[n].established.is_none());
    assert_eq!(
        net.ues[n].closed,
        Some(CloseReason::NotifyReceived(notify)),
        "{:#?}",
        net.reports
    );
    let spi = net.spis()[0];
    assert!(
        matches!(net.ended(spi), Some(Outcome::Rejected { notify: n, .. }) if *n == notify),
        "{:?}",
        net.ended(spi)
    );
    assert!(net.str_sent_for(spi), "STR for the UE's session");
    // Let every retransmission and de-registration run out.
    net.run_for(Duration::from_secs(60));
    net.assert_nothing_left();
    assert!(net.reports.iter().any(|r| matches!(
        r,
        Report::UeRemoved {
            ike_sas: 0,
            aaa_sessions: 0,
            ..
        }
    )));
}

#[test]
fn an_unknown_apn_is_no_apn_subscription() {
    assert_rejected(
        Net::new(),
        "ims",
        K,
        NotifyType::NoApnSubscription,
        Duration::ZERO,
    );
}

#[test]
fn a_wrong_k_is_authentication_failed() {
    assert_rejected(
        Net::new(),
        APN,
        [0x47; 16],
        NotifyType::AuthenticationFailed,
        Duration::ZERO,
    );
}

#[test]
fn a_silent_aaa_is_network_failure_after_the_diameter_timeout() {
    let mut net = Net::new();
    net.aaa_mode = AaaMode::Silent;
    let n = net.add_ue(APN, K);
    net.run_for(Duration::from_millis(4900));
    assert_eq!(net.ues[n].closed, None, "still waiting for the DEA");
    net.run_for(Duration::from_millis(200));
    assert_eq!(
        net.ues[n].closed,
        Some(CloseReason::NotifyReceived(NotifyType::NetworkFailure))
    );
    assert_rejected_state(&net);
}

/// After a rejection: nothing left, an STR sent.
fn assert_rejected_state(net: &Net) {
    let spi = net.spis()[0];
    assert!(net.str_sent_for(spi));
    net.assert_nothing_left();
}

#[test]
fn an_unreachable_aaa_is_network_failure_at_once() {
    let mut net = Net::new();
    net.aaa_mode = AaaMode::Down;
    net.epdg_input(Input::DiameterClosed);
    assert!(!net.epdg.status().diameter_open);
    let n = net.add_ue(APN, K);
    net.settle();
    assert_eq!(
        net.ues[n].closed,
        Some(CloseReason::NotifyReceived(NotifyType::NetworkFailure))
    );
    net.assert_nothing_left();
    // The link comes back by itself, two seconds after the loss.
    net.aaa_mode = AaaMode::Answering;
    net.run_for(Duration::from_secs(3));
    assert!(net.epdg.status().diameter_open);
    net.attach();
}

#[test]
fn a_silent_lma_is_network_failure_after_the_pbu_retransmissions() {
    let mut net = Net::new();
    net.lma_silent = true;
    let n = net.add_ue(APN, K);
    // 1 + 3 PBUs, 1 + 2 + 4 + 8 s apart (RFC 5213 section 6.9.4 backoff).
    net.run_for(Duration::from_millis(14_900));
    assert_eq!(net.ues[n].closed, None);
    net.run_for(Duration::from_millis(200));
    assert_eq!(
        net.ues[n].closed,
        Some(CloseReason::NotifyReceived(NotifyType::NetworkFailure))
    );
    // Then one lifetime-0 PBU, not retransmitted, in case the LMA heard us.
    assert_eq!(net.pbu_lifetimes, [3600, 3600, 3600, 3600, 0]);
    net.run_for(Duration::from_secs(60));
    assert_eq!(net.pbu_lifetimes.len(), 5);
    assert_rejected_state(&net);
}

#[test]
fn a_registration_whose_answers_are_lost_is_released_at_the_lma() {
    let mut net = Net::new();
    let free = net.lma.available_ipv4();
    // The LMA registers the UE, but none of its PBAs comes back.
    net.hold_pbas = true;
    let n = net.add_ue(APN, K);
    net.run_for(Duration::from_secs(16));
    assert_eq!(
        net.ues[n].closed,
        Some(CloseReason::NotifyReceived(NotifyType::NetworkFailure))
    );
    assert_eq!(
        net.held.len(),
        5,
        "four answers to the registration, one to the release"
    );
    assert_eq!(net.pbu_lifetimes, [3600, 3600, 3600, 3600, 0]);
    // The release reached the LMA: its binding and addresses are gone now, not at the
    // end of the lifetime.
    assert_eq!(net.lma.cache().len(), 0);
    assert_eq!(net.lma.available_ipv4(), free);
    net.assert_nothing_left();
    // Its late answer matches no exchange.
    net.hold_pbas = false;
    for pba in std::mem::take(&mut net.held) {
        net.wire.push_back(Wire::FromLma(pba));
    }
    net.settle();
    net.assert_nothing_left();
}

#[test]
fn a_pba_error_is_pdn_connection_rejection() {
    // No IPv4 pool: the LMA refuses the IPv4 home address request (RFC 5844, 170).
    let settings = lma_settings_from("");
    assert_rejected(
        Net::with(epdg_config(), settings),
        APN,
        K,
        NotifyType::PdnConnectionRejection,
        Duration::ZERO,
    );
}

#[test]
fn a_ue_vanishing_mid_attach_leaves_nothing() {
    let mut config = epdg_config();
    config.ike.half_open_timeout = Duration::from_secs(30);
    let mut net = Net::with(config, lma_settings());
    let n = net.add_ue(APN, K);
    // The UE is gone once it has sent its first IKE_AUTH.
    while let Some(w) = net.wire.pop_front() {
        let sent_auth = net
            .requests
            .iter()
            .any(|(c, _)| *c == command::DIAMETER_EAP);
        if sent_auth {
            net.ues[n].vanished = true;
        }
        net.deliver(w);
    }
    assert!(net.ues[n].vanished);
    assert_eq!(net.epdg.status().ike_sas, 1);
    net.run_for(Duration::from_secs(31));
    let spi = net.spis()[0];
    assert!(matches!(net.ended(spi), Some(Outcome::Abandoned(_))));
    assert!(net.str_sent_for(spi));
    net.assert_nothing_left();
}

#[test]
fn a_half_open_ike_sa_is_not_an_aaa_session_until_its_der_is_sent() {
    let mut config = epdg_config();
    config.ike.half_open_timeout = Duration::from_secs(30);
    let mut net = Net::with(config, lma_settings());
    let counts = |net: &Net| {
        let s = net.epdg.status();
        (s.ike_sas, s.aaa_sessions, s.bindings)
    };
    let ders = |net: &Net| {
        net.requests
            .iter()
            .filter(|(c, _)| *c == command::DIAMETER_EAP)
            .count()
    };
    // A UE that vanishes after IKE_SA_INIT: an IKE SA, no session at the AAA.
    let gone = net.add_ue(APN, K);
    net.ues[gone].vanished = true;
    net.settle();
    assert_eq!(counts(&net), (1, 0, 0));
    assert_eq!(ders(&net), 0, "no DER for a half-open IKE SA");
    // A second UE, stepped message by message: its session counts from its first DER.
    let n = net.add_ue(APN, K);
    while let Some(w) = net.wire.pop_front() {
        let before = (ders(&net), counts(&net));
        net.deliver(w);
        if before.0 == 0 {
            let expected = if ders(&net) == 0 { 0 } else { 1 };
            assert_eq!(counts(&net).1, expected, "AAA sessions after {before:?}");
        }
    }
    assert!(net.ues[n].established.is_some());
    assert_eq!(counts(&net), (2, 1, 1));
    assert_eq!(net.aaa.session_count(), 1, "the AAA agrees");
    // The half-open SA times out; what is left is one AAA session.
    net.run_for(Duration::from_secs(31));
    let spi = net.spis()[0];
    assert!(matches!(net.ended(spi), Some(Outcome::Abandoned(_))));
    assert!(!net.str_sent_for(spi), "no STR for a session never opened");
    assert!(net.reports.iter().any(|r| matches!(
        r,
        Report::UeRemoved {
            spi: s,
            ike_sas: 1,
            aaa_sessions: 1,
            bindings: 1,
        } if *s == spi
    )));
    assert_eq!(counts(&net), (1, 1, 1));
}

#[test]
fn a_ue_vanishing_after_the_eap_success_leaves_no_binding() {
    let mut config = epdg_config();
    config.ike.half_open_timeout = Duration::from_secs(30);
    let mut net = Net::with(config, lma_settings());
    let n = net.add_ue(APN, K);
    // Gone once the LMA accepted the binding: the EAP-Success goes nowhere.
    while let Some(w) = net.wire.pop_front() {
        if matches!(w, Wire::FromLma(_)) {
            net.ues[n].vanished = true;
        }
        net.deliver(w);
    }
    assert_eq!(net.lma.cache().len(), 1);
    net.run_for(Duration::from_secs(40));
    assert_eq!(net.pbu_lifetimes.last(), Some(&0), "de-registered");
    net.assert_nothing_left();
}

#[test]
fn a_second_ike_sa_of_the_same_nai_and_apn_takes_the_binding_over() {
    let mut net = Net::new();
    let first = net.attach();
    let old = net.spis()[0];
    let old_addresses = (net.ues[first].ipv4(), net.ues[first].ipv6());
    let old_key = net.epdg.status().attached[0].downlink_gre_key;
    // The UE comes back (a new IKE SA) without deleting the old one.
    let second = net.attach();
    let new = net.spis()[1];
    assert!(net.reports.iter().any(|r| matches!(
        r,
        Report::BindingHandedOver { old: o, new: n, .. } if *o == old && *n == new
    )));
    // The old SA is deleted, its AAA session ended; the binding and addresses stay.
    assert_eq!(net.ues[first].closed, Some(CloseReason::DeletedByPeer));
    assert!(net.str_sent_for(old));
    assert!(!net.str_sent_for(new));
    assert_eq!(
        (net.ues[second].ipv4(), net.ues[second].ipv6()),
        old_addresses
    );
    let status = net.epdg.status();
    assert_eq!(
        (status.ike_sas, status.aaa_sessions, status.bindings),
        (1, 1, 1)
    );
    assert_eq!(status.attached[0].downlink_gre_key, old_key);
    assert_eq!(net.lma.cache().len(), 1);
    assert_eq!(net.aaa.session_count(), 1);
    assert_eq!(net.sessions.keys().copied().collect::<Vec<_>>(), vec![new]);
    // One PBU only: the second IKE SA registered nothing anew.
    assert_eq!(net.pbu_lifetimes.len(), 1);
}

#[test]
fn a_ue_back_while_its_old_binding_is_being_removed_registers_once_it_is_gone() {
    let mut net = Net::new();
    let first = net.attach();
    net.run_for(Duration::from_secs(1));
    // The UE leaves; the LMA's answer to the de-registration is held back (as if lost:
    // the ePDG retransmits the lifetime-0 PBU a second later).
    net.hold_pbas = true;
    net.ue_deletes(first);
    net.settle();
    assert_eq!(net.pbu_lifetimes, [3600, 0]);
    assert_eq!(net.epdg.status().bindings, 1, "still being removed");
    // It comes back at once: EAP runs, and the new registration waits for the removal
    // rather than failing or racing the lifetime-0 PBUs at the LMA.
    let second = net.add_ue(APN, K);
    net.settle();
    assert_eq!(net.ues[second].closed, None);
    assert!(net.ues[second].established.is_none());
    assert_eq!(net.pbu_lifetimes, [3600, 0]);
    // The removal is acknowledged: the registration goes out, the UE attaches.
    net.hold_pbas = false;
    let pba = net.held.remove(0);
    net.wire.push_back(Wire::FromLma(pba));
    net.settle();
    assert_eq!(net.pbu_lifetimes, [3600, 0, 3600]);
    assert!(
        net.ues[second].established.is_some(),
        "{:?}",
        net.ues[second].closed
    );
    let status = net.epdg.status();
    assert_eq!((status.ike_sas, status.bindings), (1, 1));
    assert_eq!(net.lma.cache().len(), 1);
}

#[test]
fn a_ue_back_while_its_old_binding_is_being_removed_and_gone_again_leaves_nothing() {
    let mut net = Net::new();
    let first = net.attach();
    net.run_for(Duration::from_secs(1));
    net.lma_silent = true;
    net.ue_deletes(first);
    // Back with a new IKE SA, its registration waiting for the removal...
    let second = net.add_ue(APN, K);
    net.settle();
    assert_eq!(net.epdg.status().ike_sas, 1);
    // ... and gone again before it could go ahead.
    net.ue_deletes(second);
    net.settle();
    assert_eq!(net.epdg.status().ike_sas, 0);
    // The removal gives up after its retransmissions; nothing is registered again.
    net.run_for(Duration::from_secs(60));
    assert_eq!(net.pbu_lifetimes, [3600, 0, 0, 0, 0]);
    assert!(net.epdg.is_idle(), "{:?}", net.epdg.status());
}

#[test]
fn a_pba_arriving_after_the_ue_left_is_undone_with_a_lifetime_0_pbu() {
    let mut net = Net::new();
    net.hold_pbas = true;
    let n = net.add_ue(APN, K);
    net.settle();
    assert_eq!(net.held.len(), 1, "the PBA is on its way");
    // The UE deletes its IKE SA while the PBU is out.
    let mut out = Vec::new();
    let now = net.now;
    net.ues[n].sa.delete(now, &mut net.rng, &mut out);
    net.ue_outputs(n, out);
    net.settle();
    let spi = net.spis()[0];
    assert!(matches!(net.ended(spi), Some(Outcome::Abandoned(_))));
    assert_eq!(net.epdg.status().ike_sas, 0);
    assert_eq!(
        net.pbu_lifetimes,
        vec![3600],
        "no de-registration before the PBA"
    );
    // The PBA arrives, a moment later: the binding is undone.
    net.run_for(Duration::from_millis(10));
    net.hold_pbas = false;
    let pba = net.held.remove(0);
    net.wire.push_back(Wire::FromLma(pba));
    net.settle();
    assert_eq!(net.pbu_lifetimes, vec![3600, 0]);
    assert!(net.reports.iter().any(|r| matches!(
        r,
        Report::BindingRemoved {
            acknowledged: true,
            bindings: 0,
            ..
        }
    )));
    net.assert_nothing_left();
}

#[test]
fn liveness_checks_keep_an_answering_ue_and_drop_a_silent_one() {
    let mut config = epdg_config();
    config.ike.liveness_interval = Some(Duration::from_secs(60));
    let mut net = Net::with(config, lma_settings());
    let n = net.attach();
    net.run_for(Duration::from_secs(150));
    assert!(net.ues[n].closed.is_none(), "two checks answered");
    assert_eq!(net.epdg.status().ike_sas, 1);
    net.ues[n].vanished = true;
    // The next check at 180 s, retransmitted after 0.5, 1, 2, 4 and 8 s, given up 16 s
    // after the last: at 211.5 s.
    net.run_for(Duration::from_millis(61_400));
    assert!(net.ues[n].closed.is_none());
    assert_eq!(net.epdg.status().ike_sas, 1);
    net.run_for(Duration::from_millis(200));
    let spi = net.spis()[0];
    assert!(matches!(net.ended(spi), Some(Outcome::Detached(_))));
    net.run_for(Duration::from_secs(10));
    net.assert_nothing_left();
}

#[test]
fn shutdown_deletes_every_ike_sa_deregisters_and_says_goodbye() {
    let mut net = Net::new();
    let n = net.attach();
    net.run_for(Duration::from_secs(1));
    net.epdg_input(Input::Shutdown);
    net.settle();
    assert_eq!(net.ues[n].closed, Some(CloseReason::DeletedByPeer));
    assert_eq!(net.pbu_lifetimes.last(), Some(&0));
    assert!(net.str_sent_for(net.spis()[0]));
    assert!(net
        .requests
        .iter()
        .any(|(c, _)| *c == command::DISCONNECT_PEER));
    assert!(net
        .reports
        .iter()
        .any(|r| matches!(r, Report::Stopped { bindings: 0 })));
    net.assert_nothing_left();
}

#[test]
fn shutdown_stops_after_the_grace_time_when_the_lma_is_silent() {
    let mut net = Net::new();
    net.attach();
    net.lma_silent = true;
    net.epdg_input(Input::Shutdown);
    net.settle();
    assert!(!net
        .reports
        .iter()
        .any(|r| matches!(r, Report::Stopped { .. })));
    assert_eq!(
        net.epdg.poll_timeout(),
        Some(net.now + Duration::from_secs(1))
    );
    net.run_for(Duration::from_secs(1));
    assert!(net
        .reports
        .iter()
        .any(|r| matches!(r, Report::Stopped { bindings: 1 })));
}

#[test]
fn poll_timeout_is_exact_and_nothing_waits_after_an_attach() {
    let mut net = Net::new();
    net.attach();
    // Attached, no liveness checks: only the binding's refresh and the Diameter
    // watchdog are ahead.
    let refresh = net.now + Duration::from_secs(2880);
    let next = net.epdg.poll_timeout().unwrap();
    assert!(next <= refresh);
    net.run_for(Duration::from_secs(2881));
    assert_eq!(
        net.pbu_lifetimes,
        vec![3600, 3600],
        "refreshed once, at 80 %"
    );
    assert!(net
        .reports
        .iter()
        .any(|r| matches!(r, Report::BindingRefreshed { .. })));
    assert_eq!(net.epdg.status().bindings, 1);
}

#[test]
fn the_core_config_comes_from_mag_toml_settings_and_names_a_bad_suite() {
    let settings = crate::config::Config {
        ike_suites: vec!["aes128-sha256-prfsha256-modp2048".into()],
        liveness_interval_secs: 0,
        half_open_timeout_secs: 7,
        ..crate::config::Config::default()
    };
    let config = EpdgConfig::from_config(&settings).unwrap();
    assert_eq!(config.ike.suites.len(), 1);
    assert_eq!(config.ike.liveness_interval, None);
    assert_eq!(config.ike.half_open_timeout, Duration::from_secs(7));
    assert!(config.ike.signer.is_none());
    let bad = crate::config::Config {
        ike_suites: vec!["aes128-nonsense".into()],
        ..crate::config::Config::default()
    };
    let error = EpdgConfig::from_config(&bad).unwrap_err().to_string();
    assert!(error.starts_with("ike_suites: "), "{error}");
}

/// The keylog lines (Wireshark's IKEv2 decryption table) the core gave.
fn keylog(net: &Net) -> Vec<String> {
    net.reports
        .iter()
        .filter_map(|r| match r {
            Report::IkeSaKeys { record, .. } => Some(record.clone()),
            _ => None,
        })
        .collect()
}

/// A UE's CHILD_SA and IKE SA rekeys (RFC 7296 sections 1.3.2, 1.3.3) reach the data
/// plane and the keylog; a half-open or refused IKE SA writes no keylog line.
#[test]
fn a_ues_rekeys_reach_the_data_plane_and_only_authenticated_sas_the_keylog() {
    let mut net = Net::new();
    let refused = net.add_ue(APN, [0x55; 16]);
    net.settle();
    assert!(net.ues[refused].closed.is_some());
    assert!(keylog(&net).is_empty(), "no keylog line for a refused UE");

    let n = net.attach();
    let spi = net.spis()[1];
    let keys = net.ues[n].sa.keys().unwrap().clone();
    let (ue_spi_i, ue_spi_r) = (net.ues[n].sa.initiator_spi(), net.ues[n].sa.responder_spi());
    assert_eq!(
        keylog(&net),
        vec![keys.wireshark_decryption_record(ue_spi_i, ue_spi_r)]
    );

    // The UE rekeys its CHILD_SA: the data plane gets the new one and, once the old one
    // is deleted, retires it.
    let old = net.ues[n].established.as_ref().unwrap().child.clone();
    let mut out = Vec::new();
    let now = net.now;
    assert!(net.ues[n]
        .sa
        .rekey_child_sa(old.inbound_spi, now, &mut net.rng, &mut out));
    net.ue_outputs(n, out);
    net.run_for(Duration::from_secs(1));
    let new: Vec<ChildSa> = net.ues[n].sa.children().cloned().collect();
    assert_eq!(new.len(), 1);
    assert_eq!(net.rekeyed.len(), 1);
    let (rekeyed_spi, at_epdg) = &net.rekeyed[0];
    assert_eq!(*rekeyed_spi, spi);
    assert_eq!(at_epdg.keys, new[0].keys);
    assert_eq!(at_epdg.inbound_spi, new[0].outbound_spi);
    assert_eq!(net.retired, vec![(spi, old.outbound_spi)]);
    assert!(net.reports.iter().any(|r| matches!(
        r,
        Report::ChildSaRekeyed { spi: s, old: o, new: w }
            if *s == spi && *o == old.outbound_spi && *w == at_epdg.inbound_spi
    )));

    // The UE rekeys the IKE SA: a keylog line for the new one.
    let mut out = Vec::new();
    let now = net.now;
    assert!(net.ues[n].sa.rekey_ike_sa(now, &mut net.rng, &mut out));
    net.ue_outputs(n, out);
    net.run_for(Duration::from_secs(1));
    let keys = net.ues[n].sa.keys().unwrap().clone();
    let (i, r) = (net.ues[n].sa.initiator_spi(), net.ues[n].sa.responder_spi());
    assert_ne!(i, ue_spi_i);
    assert_eq!(keylog(&net).len(), 2);
    assert_eq!(keylog(&net)[1], keys.wireshark_decryption_record(i, r));
    assert_eq!(net.epdg.keylog_record(spi), Some(keylog(&net)[1].clone()));

    // And it still leaves cleanly.
    let mut out = Vec::new();
    let now = net.now;
    net.ues[n].sa.delete(now, &mut net.rng, &mut out);
    net.ue_outputs(n, out);
    net.run_for(Duration::from_secs(120));
    assert!(matches!(net.ended(spi), Some(Outcome::Detached(_))));
    net.assert_nothing_left();
}

/// When the data plane says a CHILD_SA's sequence numbers are running out, the ePDG
/// rekeys it itself, and the UE's IKE SA answers (RFC 4303 section 3.3.3).
#[test]
fn a_child_sa_near_the_end_of_its_sequence_numbers_is_rekeyed_by_the_epdg() {
    let mut net = Net::new();
    let n = net.attach();
    let spi = net.spis()[0];
    let inbound = net.sessions[&spi].0.inbound_spi;
    net.epdg_input(Input::RekeyChildSa {
        ike_spi: spi,
        inbound_spi: inbound,
    });
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.rekeyed.len(), 1);
    let new: Vec<ChildSa> = net.ues[n].sa.children().cloned().collect();
    assert_eq!(new.len(), 1);
    assert_eq!(net.rekeyed[0].1.keys, new[0].keys);
    assert_eq!(net.retired, vec![(spi, inbound)]);
}
