//! The network itself, tested with the cores that exist: the roaming chain (an ePDG's
//! binding update list -> visited gateway -> home gateway) under loss, the determinism of
//! a seed, stream links (refusal, order, cuts) with the AAA server on them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use pmip_common::binding_update_list::{
    self as bul, MagConfig, MobileNodeKey, RegistrationRequest,
};
use pmip_common::mh::{GreKey, HandoffIndicator, Lifetime, ThreeGppOption, VendorSpecific};

use super::lma::{LmaNode, MH_PORT};
use super::mag::MagNode;
use super::*;

const EPDG: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const VISITED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const VISITED_HOME_SIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const HOME: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
const HOME_POOL: &str = "10.90.0.0/20";

/// The roaming chain on a network of `seed`, every link `loss` lossy with 10 ms delay.
struct Chain {
    net: Net,
    epdg: NodeId<MagNode>,
    visited: NodeId<LmaNode>,
    home: NodeId<LmaNode>,
}

impl Chain {
    /// Without heartbeats, so the trace of a seed is what it was before they existed.
    fn new(seed: u64, loss: f64) -> Chain {
        Chain::with_heartbeats(seed, loss, false)
    }

    fn with_heartbeats(seed: u64, loss: f64, heartbeats: bool) -> Chain {
        let heartbeat = format!("[heartbeat]\nenabled = {heartbeats}\n");
        let mut net = Net::new(seed);
        let (t0, wall0) = (net.start(), net.wall_clock_at_start());
        let epdg = net.add(MagNode::new(
            "epdg",
            SocketAddr::new(EPDG.into(), MH_PORT),
            MagConfig {
                // Six transmissions: at 10 % loss each way, a registration fails only
                // if six round trips in a row lose a message (about 5e-5).
                max_retransmissions: 5,
                requested_lifetime: Lifetime::from_secs(300),
                ..MagConfig::default()
            },
            t0,
            wall0,
        ));
        // Configured as the binaries are: the visited gateway chains to the home one.
        let visited = LmaNode::configured(
            "vsaegw",
            &format!(
                "listen_v4 = \"{VISITED}:{MH_PORT}\"\nipv4_pool = \"10.20.0.0/20\"\n\
                 ipv6_pool = \"2001:db8:20::/48\"\nallowed_mags = [\"{EPDG}\"]\n\
                 timestamp_window_ms = 1000\n\
                 [chaining]\nhome_gateways = [\"{HOME}\"]\nlocal_v4 = \"{VISITED_HOME_SIDE}\"\n\
                 retransmit_ms = 200\nmax_retransmit_ms = 2000\nmax_retransmissions = 6\n\
                 lifetime_secs = 600\n{heartbeat}"
            ),
            t0,
            wall0,
        )
        .unwrap();
        let visited = net.add(visited);
        let home = LmaNode::configured(
            "hsaegw",
            &format!(
                "listen_v4 = \"{HOME}:{MH_PORT}\"\nipv4_pool = \"{HOME_POOL}\"\n\
                 ipv6_pool = \"2001:db8:90::/48\"\nallowed_mags = [\"{VISITED_HOME_SIDE}\"]\n\
                 timestamp_window_ms = 1000\n{heartbeat}"
            ),
            t0,
            wall0,
        )
        .unwrap();
        let home = net.add(home);
        let link = LinkPolicy::lossy(Duration::from_millis(10), loss);
        net.link(epdg, visited, link).link(visited, home, link);
        Chain {
            net,
            epdg,
            visited,
            home,
        }
    }

    fn key(i: usize) -> MobileNodeKey {
        MobileNodeKey::new(
            &format!(
                "{:015}@nai.epc.mnc001.mcc001.3gppnetwork.org",
                1010000000000u64 + i as u64
            ),
            Some("internet"),
        )
    }

    fn register(&mut self, n: usize) {
        for i in 0..n {
            let request = RegistrationRequest {
                key: Self::key(i),
                lma: SocketAddr::new(VISITED.into(), MH_PORT),
                request_home_network_prefix: true,
                request_ipv4_home_address: true,
                downlink_gre_key: Some(GreKey(1000 + i as u32)),
                handoff: HandoffIndicator::AttachmentOverNewInterface,
                vendor: vec![VendorSpecific::ThreeGpp(ThreeGppOption::PdnGwIpAddress(
                    IpAddr::V4(HOME),
                ))],
            };
            self.net.command(self.epdg, |m, now, _, out| {
                m.input(bul::Input::Register(request), now, out)
            });
        }
    }

    fn deregister(&mut self, n: usize) {
        for i in 0..n {
            self.net.command(self.epdg, |m, now, _, out| {
                m.input(bul::Input::Deregister(Self::key(i)), now, out)
            });
        }
    }

    /// Runs until every registration has an outcome.
    fn settle_registrations(&mut self, n: usize) {
        let epdg = self.epdg;
        self.net.run_until(Duration::from_secs(300), |net| {
            let m = net.node(epdg);
            m.registered() + m.failed() >= n
        });
    }

    /// Runs until the ePDG's de-registrations are done and neither gateway holds
    /// anything.
    fn settle_deregistrations(&mut self, n: usize) {
        let (epdg, visited, home) = (self.epdg, self.visited, self.home);
        self.net.run_until(Duration::from_secs(300), |net| {
            net.node(epdg).deregistered() >= n
                && net.node(visited).lma.cache().is_empty()
                && net.node(visited).lma.chain_counts() == (0, 0)
                && net.node(home).lma.cache().is_empty()
        });
    }
}

#[test]
fn a_thousand_roaming_registrations_all_succeed_through_ten_percent_loss() {
    let mut chain = Chain::new(7, 0.1);
    chain.register(1000);
    chain.settle_registrations(1000);
    let (net, epdg, visited, home) = (&chain.net, chain.epdg, chain.visited, chain.home);
    let m = net.node(epdg);
    assert_eq!(
        (m.registered(), m.failed()),
        (1000, 0),
        "{:?}",
        net.elapsed()
    );
    assert_eq!(m.unparsable, 0);
    // Every UE holds a distinct address from the home pool, which the home gateway holds.
    let pool: ipnet::Ipv4Net = HOME_POOL.parse().unwrap();
    let mut addresses = std::collections::BTreeSet::new();
    for i in 0..1000 {
        let r = m.registration(&Chain::key(i)).expect("registered");
        let v4 = r.ipv4_home_address.expect("an IPv4 home address").addr();
        assert!(pool.contains(&v4), "{v4}");
        assert!(r.home_network_prefix.is_some());
        assert!(addresses.insert(v4), "{v4} twice");
    }
    assert_eq!(net.node(visited).lma.chain_counts(), (1000, 0));
    assert_eq!(net.node(visited).lma.cache().len(), 1000);
    assert_eq!(net.node(home).lma.cache().len(), 1000);
    // The loss was real on both links, and retransmission made up for it.
    let lost_share = |entries: Vec<&TraceEntry>| {
        let lost = entries.iter().filter(|e| e.fate == Fate::Lost).count();
        lost as f64 / entries.len() as f64
    };
    for share in [
        lost_share(net.crossed(epdg, visited).collect()),
        lost_share(net.crossed(visited, home).collect()),
    ] {
        assert!((0.08..0.12).contains(&share), "{share} lost");
    }
    assert_eq!(
        net.crossed(epdg, home).count(),
        0,
        "the ePDG talks to the visited gateway only"
    );
    assert!(m.list.stats().retransmissions > 0);

    chain.deregister(1000);
    chain.settle_deregistrations(1000);
    let (net, epdg, visited, home) = (&chain.net, chain.epdg, chain.visited, chain.home);
    assert_eq!(net.node(epdg).deregistered(), 1000);
    assert!(net.node(epdg).list.is_empty());
    let v = &net.node(visited).lma;
    assert_eq!((v.cache().len(), v.chain_counts()), (0, (0, 0)));
    assert_eq!(net.node(home).lma.cache().len(), 0);
    // Nothing is left to do but wait: no binding, no timer.
    assert_eq!(
        net.node(home).lma.available_ipv4(),
        pool.hosts().count() as u32 - 1
    );
}

#[test]
fn one_seed_runs_the_same_way_twice_and_another_does_not() {
    let run = |seed: u64| {
        let mut chain = Chain::new(seed, 0.1);
        chain.register(100);
        chain.settle_registrations(100);
        chain.deregister(100);
        chain.settle_deregistrations(100);
        assert_eq!(chain.net.node(chain.epdg).registered(), 100);
        chain.net.trace().to_vec()
    };
    let first = run(11);
    assert_eq!(first, run(11));
    assert_ne!(first, run(12));
}

#[test]
fn a_partitioned_home_fails_the_registration_back_to_the_epdg() {
    let mut chain = Chain::new(3, 0.0);
    let (visited, home) = (chain.visited, chain.home);
    chain.net.partition(visited, home, true);
    chain.register(1);
    chain.settle_registrations(1);
    let m = chain.net.node(chain.epdg);
    assert_eq!((m.registered(), m.failed()), (0, 1));
    // The visited gateway's PBUs home never arrived, and it kept nothing.
    assert!(chain
        .net
        .trace()
        .iter()
        .any(|e| e.from == visited.index() && e.fate == Fate::Partitioned));
    assert_eq!(chain.net.node(visited).lma.chain_counts(), (0, 0));
    assert_eq!(chain.net.node(home).lma.cache().len(), 0);
    // Restored, the next registration goes through.
    chain.net.partition(visited, home, false);
    chain.register(1);
    chain.settle_registrations(2);
    assert_eq!(chain.net.node(chain.epdg).registered(), 1);
}

// ---------------------------------------------------------------------------------------
// Stream links, with the AAA server on them.

mod swm {
    //! A Diameter client for the AAA tests: the SWm side of an ePDG reduced to one UE's
    //! EAP-AKA run (a software USIM answering the challenges) and the STR.

    use std::net::{IpAddr, SocketAddr};
    use std::time::Instant;

    use pmip_common::diameter::base::Capabilities;
    use pmip_common::diameter::peer::{self, Peer, PeerConfig, PeerEvent, Role};
    use pmip_common::diameter::swm::{
        AuthRequestType, DiameterEapAnswer, DiameterEapRequest, SessionTerminationAnswer,
        SessionTerminationRequest, SwmMessage, TerminationCause,
    };
    use pmip_common::diameter::{Framer, Message};
    use pmip_common::eap::{self, PeerOutput, Sqn, Usim};
    use rand::rngs::StdRng;

    use super::super::{ConnId, Node, NodeInput, NodeOutput, StreamEvent};

    pub const REALM: &str = "epc.mnc001.mcc001.3gppnetwork.org";

    pub struct SwmClient {
        pub address: IpAddr,
        aaa: SocketAddr,
        nai: String,
        session: String,
        conn: Option<ConnId>,
        peer: Option<Peer>,
        framer: Framer,
        eap: eap::Peer,
        next_tag: u64,
        pub open: bool,
        pub refused: u32,
        pub downs: u32,
        /// The Result-Code of every answer (0 for an Experimental-Result).
        pub results: Vec<u32>,
        pub deas: Vec<DiameterEapAnswer>,
        pub stas: Vec<SessionTerminationAnswer>,
        pub msk: Option<Vec<u8>>,
    }

    impl SwmClient {
        pub fn new(
            address: IpAddr,
            aaa: SocketAddr,
            imsi: &str,
            k: [u8; 16],
            opc: [u8; 16],
        ) -> Self {
            let nai = eap::permanent_identity(imsi, 2).expect("an IMSI");
            let eap = eap::Peer::new(
                eap::PeerConfig {
                    permanent_identity: nai.clone().into_bytes(),
                    eap_identity: Some(nai.clone().into_bytes()),
                    result_indication: false,
                },
                Usim::new(&k, &opc, Sqn::new(0).expect("0 fits")),
            );
            SwmClient {
                address,
                aaa,
                session: format!("epdg.test;1;{imsi}"),
                nai,
                conn: None,
                peer: None,
                framer: Framer::new(1 << 20),
                eap,
                next_tag: 1,
                open: false,
                refused: 0,
                downs: 0,
                results: Vec::new(),
                deas: Vec::new(),
                stas: Vec::new(),
                msk: None,
            }
        }

        pub fn connect(&mut self, out: &mut Vec<NodeOutput>) {
            let tag = self.next_tag;
            self.next_tag += 1;
            out.push(NodeOutput::Connect {
                tag,
                from: self.address,
                to: self.aaa,
            });
        }

        fn request(&mut self, build: impl FnOnce(u32, u32) -> Message, out: &mut Vec<NodeOutput>) {
            let (Some(conn), Some(peer)) = (self.conn, self.peer.as_mut()) else {
                return;
            };
            let (hbh, e2e) = (peer.next_hop_by_hop(), peer.next_end_to_end());
            if let Ok(bytes) = build(hbh, e2e).to_vec() {
                out.push(NodeOutput::Send { conn, bytes });
            }
        }

        fn der(&mut self, eap_payload: Vec<u8>, out: &mut Vec<NodeOutput>) {
            let der = DiameterEapRequest {
                session_id: self.session.clone(),
                origin_host: "epdg.test".into(),
                origin_realm: "test".into(),
                destination_realm: REALM.into(),
                destination_host: None,
                auth_request_type: AuthRequestType::AuthorizeAuthenticate,
                eap_payload,
                user_name: Some(self.nai.clone()),
                rat_type: Some(0),
                service_selection: Some("internet".into()),
                mip6_feature_vector: None,
                visited_network_identifier: None,
                route_record: vec![],
                proxy_info: vec![],
                other: vec![],
            };
            self.request(|h, e| der.to_message(h, e), out);
        }

        /// Whether the last DEA was a success.
        pub fn authenticated(&self) -> bool {
            self.deas.last().is_some_and(|d| d.result.is_success())
        }

        /// Ends the session: STR.
        pub fn terminate(&mut self, out: &mut Vec<NodeOutput>) {
            let str = SessionTerminationRequest {
                session_id: self.session.clone(),
                origin_host: "epdg.test".into(),
                origin_realm: "test".into(),
                destination_realm: REALM.into(),
                destination_host: None,
                termination_cause: TerminationCause::Logout,
                user_name: Some(self.nai.clone()),
                route_record: vec![],
                proxy_info: vec![],
                other: vec![],
            };
            self.request(|h, e| str.to_message(h, e), out);
        }

        fn peer_outputs(&mut self, peer_out: Vec<peer::Output>, out: &mut Vec<NodeOutput>) {
            let Some(conn) = self.conn else { return };
            for o in peer_out {
                match o {
                    peer::Output::Send(bytes) => out.push(NodeOutput::Send { conn, bytes }),
                    peer::Output::Close => out.push(NodeOutput::Close { conn }),
                    peer::Output::Event(PeerEvent::Open { .. }) => {
                        self.open = true;
                        // EAP-Response/Identity built from the NAI, as an ePDG does.
                        let mut identity = vec![2, 0, 0, 5 + self.nai.len() as u8, 1];
                        identity.extend_from_slice(self.nai.as_bytes());
                        self.der(identity, out);
                    }
                    peer::Output::Event(PeerEvent::Answer(m)) => self.answer(&m, out),
                    peer::Output::Event(PeerEvent::Down(_)) => {
                        self.open = false;
                        self.conn = None;
                        self.peer = None;
                    }
                    peer::Output::Event(_) => {}
                }
            }
        }

        fn answer(&mut self, m: &Message, out: &mut Vec<NodeOutput>) {
            self.results.push(m.result_code().unwrap_or(0));
            let dea = match SwmMessage::parse(m) {
                Ok(SwmMessage::Sta(sta)) => return self.stas.push(sta),
                Ok(SwmMessage::Dea(dea)) => dea,
                _ => return,
            };
            let mut next = None;
            for o in self
                .eap
                .handle(dea.eap_payload.as_deref().unwrap_or_default())
            {
                match o {
                    PeerOutput::Send(p) => next = Some(p),
                    PeerOutput::Success(keys) => self.msk = Some(keys.msk.to_vec()),
                    _ => {}
                }
            }
            let multi_round = dea.result.code()
                == pmip_common::diameter::codes::result::DIAMETER_MULTI_ROUND_AUTH;
            self.deas.push(dea);
            if let (true, Some(p)) = (multi_round, next) {
                self.der(p, out);
            }
        }
    }

    impl Node for SwmClient {
        fn name(&self) -> &str {
            "epdg-swm"
        }

        fn addresses(&self) -> Vec<IpAddr> {
            vec![self.address]
        }

        fn handle(
            &mut self,
            input: NodeInput<'_>,
            now: Instant,
            _rng: &mut StdRng,
            out: &mut Vec<NodeOutput>,
        ) {
            let mut peer_out = Vec::new();
            match input {
                NodeInput::Stream(StreamEvent::Up { conn, local, .. }) => {
                    let caps = Capabilities::swm("epdg.test", "test", vec![local.ip()], "test");
                    let mut peer =
                        Peer::new(PeerConfig::new(caps), Role::Initiator, Box::new(|| 4));
                    peer.handle(peer::Input::ConnectionUp, now, &mut peer_out);
                    self.conn = Some(conn);
                    self.peer = Some(peer);
                    self.framer = Framer::new(1 << 20);
                }
                NodeInput::Stream(StreamEvent::Refused { .. }) => self.refused += 1,
                NodeInput::Stream(StreamEvent::Data { conn, bytes }) if Some(conn) == self.conn => {
                    self.framer.push(bytes);
                    while let Ok(Some(m)) = self.framer.next_message() {
                        if let Some(peer) = self.peer.as_mut() {
                            peer.handle(peer::Input::Message(&m), now, &mut peer_out);
                        }
                    }
                }
                NodeInput::Stream(StreamEvent::Down { conn }) if Some(conn) == self.conn => {
                    self.downs += 1;
                    if let Some(peer) = self.peer.as_mut() {
                        peer.handle(peer::Input::ConnectionDown, now, &mut peer_out);
                    }
                }
                NodeInput::Timeout => {
                    if let Some(peer) = self.peer.as_mut() {
                        peer.handle(peer::Input::Timeout, now, &mut peer_out);
                    }
                }
                _ => {}
            }
            self.peer_outputs(peer_out, out);
        }

        fn poll_timeout(&self) -> Option<Instant> {
            self.peer.as_ref().and_then(Peer::poll_timeout)
        }
    }
}

use super::aaa::{AaaNode, MemorySubscribers};
use pmip_common::diameter::codes::result;
use swm::SwmClient;

const K: [u8; 16] = [0x46; 16];
const OPC: [u8; 16] = [0xcd; 16];
const SUBSCRIBER: &str = "001010000000001";

use super::epc::aaa_toml as aaa_config;

fn home_aaa(listen: &str) -> AaaNode {
    let mut subscribers = MemorySubscribers::default();
    subscribers.add(SUBSCRIBER, K, OPC, &["internet"], 0);
    let config = aaa_config(swm::REALM, listen, "10.0.0.3", &[]);
    AaaNode::configured("aaa", &config, subscribers, 5).unwrap()
}

/// The SWm client of the subscriber at `address`, toward the AAA at `aaa`.
fn client_at(address: &str, aaa: &str) -> SwmClient {
    SwmClient::new(
        address.parse().unwrap(),
        aaa.parse().unwrap(),
        SUBSCRIBER,
        K,
        OPC,
    )
}

fn client(aaa: &str) -> SwmClient {
    client_at("192.0.2.1", aaa)
}

#[test]
fn eap_aka_runs_over_a_stream_link_to_the_aaa_and_str_ends_the_session() {
    let mut net = Net::new(1);
    let aaa = net.add(home_aaa("192.0.2.4:3868"));
    let epdg = net.add(client("192.0.2.4:3868"));
    net.link(aaa, epdg, LinkPolicy::lossy(Duration::from_millis(5), 0.5));
    net.command(epdg, |c, _, _, out| c.connect(out));
    assert!(net.run_until(Duration::from_secs(5), |n| n.node(epdg).authenticated()));
    let c = net.node(epdg);
    // Identity -> challenge, response -> success: two rounds, the keys agree.
    assert_eq!(c.deas.len(), 2);
    let dea = &c.deas[1];
    assert_eq!(dea.eap_master_session_key, c.msk);
    assert_eq!(
        dea.mip6_agent_info[0].home_agent_addresses,
        vec!["10.0.0.3".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(net.node(aaa).sessions(), 1);
    assert!(net
        .node(aaa)
        .core
        .store()
        .sqn(SUBSCRIBER)
        .is_some_and(|s| s > 0));
    // The stream is reliable whatever the link's loss: nothing lost, all in order.
    let stream: Vec<&TraceEntry> = net
        .trace()
        .iter()
        .filter(|e| matches!(e.kind, TraceKind::Stream { .. }))
        .collect();
    assert!(stream.len() >= 6, "CER/CEA and two DER/DEA");
    assert!(stream.iter().all(|e| matches!(e.fate, Fate::Arrives(_))));

    net.command(epdg, |c, _, _, out| c.terminate(out));
    assert!(net.run_until(Duration::from_secs(1), |n| !n.node(epdg).stas.is_empty()));
    assert_eq!(net.node(epdg).stas[0].result_code, result::DIAMETER_SUCCESS);
    assert_eq!(net.node(aaa).sessions(), 0);
}

#[test]
fn a_cut_link_takes_the_connection_down_at_both_ends_and_refuses_new_ones() {
    let mut net = Net::new(2);
    let aaa = net.add(home_aaa("192.0.2.4:3868"));
    let epdg = net.add(client("192.0.2.4:3868"));
    net.command(epdg, |c, _, _, out| c.connect(out));
    assert!(net.run_until(Duration::from_secs(1), |n| n.node(epdg).open));
    assert_eq!(net.node(aaa).connections(), 1);
    net.partition(aaa, epdg, true);
    net.run_for(Duration::from_millis(10));
    assert_eq!((net.node(epdg).downs, net.node(epdg).open), (1, false));
    assert_eq!(net.node(aaa).connections(), 0);
    net.command(epdg, |c, _, _, out| c.connect(out));
    net.run_for(Duration::from_millis(10));
    assert_eq!(net.node(epdg).refused, 1);
    // Restored: a new connection, CER/CEA, and the authentication goes through.
    net.partition(aaa, epdg, false);
    net.command(epdg, |c, _, _, out| c.connect(out));
    assert!(net.run_until(Duration::from_secs(1), |n| n.node(epdg).authenticated()));
    // Nobody listens elsewhere: refused.
    let stray = net.add(client_at("192.0.2.6", "192.0.2.99:3868"));
    net.command(stray, |c, _, _, out| c.connect(out));
    net.run_for(Duration::from_millis(10));
    assert_eq!(net.node(stray).refused, 1);
}

#[test]
fn a_visited_aaa_relays_home_and_adds_its_gateway_or_answers_unable_to_deliver() {
    let mut net = Net::new(3);
    let home = net.add(home_aaa("198.51.100.4:3868"));
    let config = aaa_config(
        "epc.mnc002.mcc001.3gppnetwork.org",
        "192.0.2.4:3868",
        "192.0.2.3",
        &[(swm::REALM, "198.51.100.4:3868")],
    );
    let visited = AaaNode::configured("visited-aaa", &config, MemorySubscribers::default(), 6);
    let visited = net.add(visited.unwrap());
    let epdg = net.add(client("192.0.2.4:3868"));
    net.link(
        visited,
        home,
        LinkPolicy::lossy(Duration::from_millis(40), 0.0),
    );
    net.command(epdg, |c, _, _, out| c.connect(out));
    assert!(net.run_until(Duration::from_secs(5), |n| n.node(epdg).authenticated()));
    // The home gateway first, the visited one last (docs/attach.md, "Roaming").
    let gateways: Vec<IpAddr> = net.node(epdg).deas[1]
        .mip6_agent_info
        .iter()
        .flat_map(|i| i.home_agent_addresses.clone())
        .collect();
    assert_eq!(
        gateways,
        ["10.0.0.3", "192.0.2.3"].map(|a| a.parse::<IpAddr>().unwrap())
    );
    assert_eq!(net.node(home).sessions(), 1);
    assert_eq!(
        net.node(visited).sessions(),
        0,
        "the visited AAA relays only"
    );

    // The home realm unreachable: the next DER is answered 3002 after one round trip
    // (the connection attempt refused).
    net.partition(visited, home, true);
    let other = net.add(client_at("192.0.2.5", "192.0.2.4:3868"));
    net.command(other, |c, _, _, out| c.connect(out));
    assert!(net.run_until(Duration::from_secs(5), |n| {
        !n.node(other).results.is_empty()
    }));
    assert_eq!(
        net.node(other).results,
        [result::DIAMETER_UNABLE_TO_DELIVER],
        "{:?}",
        net.node(visited).logs
    );
}

// ---------------------------------------------------------------------------------------
// The UE on the network.

#[test]
fn a_ue_whose_epdg_is_missing_retransmits_then_gives_up_in_virtual_time() {
    use pmip_common::eap::Sqn;
    use pmip_common::ike::wire::{Identification, TrafficSelector};
    use pmip_common::ike::{EspSuite, IkeSuite};
    use std::sync::Arc;
    use ue_emu::ue::{
        CloseReason, DetachPolicy, FailureCause, Identity, InitiatorConfig, Output, Profile,
        RetransmitPolicy, Ue,
    };

    let epdg: SocketAddr = "198.51.100.1:500".parse().unwrap();
    let local: SocketAddr = "192.0.2.10:40000".parse().unwrap();
    let profile = Profile {
        epdg,
        epdg_natt: "198.51.100.1:4500".parse().unwrap(),
        k: K,
        opc: OPC,
        ike: InitiatorConfig {
            suites: IkeSuite::defaults(),
            esp_suites: EspSuite::defaults(),
            idi: Identification::Rfc822Addr(String::new()),
            idr: Some(Identification::Fqdn("internet".into())),
            cp_request: vec![],
            tsi: vec![TrafficSelector::any_ipv4()],
            tsr: vec![TrafficSelector::any_ipv4()],
            local,
            remote: epdg,
            force_port_4500: true,
            eap_only: true,
            peer_verifier: None,
            retransmit: RetransmitPolicy::default(),
            ..InitiatorConfig::default()
        },
        attach_timeout: Duration::from_secs(60),
        detach: DetachPolicy {
            attempts: 1,
            wait: Duration::from_millis(500),
        },
    };
    let mut net = Net::new(4);
    let identity = Identity {
        imsi: SUBSCRIBER.into(),
        nai: "0001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org".into(),
        sqn_ms: Sqn::new(0).unwrap(),
    };
    let ue = Ue::new(Arc::new(profile), identity, net.start());
    let ue = net.add(super::ue::UeNode::new("ue", local, ue));
    net.command(ue, |u, now, rng, out| u.attach(now, rng, out));
    assert!(net.run_until(Duration::from_secs(60), |n| n.node(ue).outcome().is_some()));
    assert_eq!(
        net.node(ue).outcome(),
        Some(&Output::Failed(ue_emu::ue::Failure {
            cause: FailureCause::Ike(CloseReason::Timeout),
            usim_problem: None,
        }))
    );
    // Six IKE_SA_INITs to port 500, nobody there; given up 31.5 s in (RFC 7296 section
    // 2.1 back-off from 0.5 s).
    let sent: Vec<&TraceEntry> = net.trace().iter().collect();
    assert_eq!(sent.len(), 6);
    assert!(sent.iter().all(|e| e.fate == Fate::Unroutable
        && e.kind
            == TraceKind::Datagram {
                from: local,
                to: epdg
            }));
    assert_eq!(net.elapsed(), Duration::from_millis(31_500));
    assert!(net.node(ue).ue.is_idle());
}

#[test]
fn a_restarted_home_gateway_gets_the_chained_bindings_back_with_the_epdgs_addresses() {
    let mut chain = Chain::with_heartbeats(21, 0.0, true);
    chain.register(20);
    chain.settle_registrations(20);
    let (epdg, visited, home) = (chain.epdg, chain.visited, chain.home);
    let before: Vec<bul::Registration> = (0..20)
        .map(|i| {
            chain
                .net
                .node(epdg)
                .registration(&Chain::key(i))
                .unwrap()
                .clone()
        })
        .collect();
    // A heartbeat exchange: the visited gateway knows the home's counter.
    chain.net.run_for(Duration::from_secs(70));
    let chain_ups = |net: &Net| {
        net.node(visited)
            .reports
            .iter()
            .filter(|(_, o)| matches!(o, ::lma::Output::ChainUp(_)))
            .count()
    };
    let ups_before = chain_ups(&chain.net);
    let reports_before = chain.net.node(visited).reports.len();
    // The home gateway restarts without a state file: the visited gateway sees the new
    // counter at its next heartbeat and registers every chained binding again.
    let (now, wall) = (
        chain.net.now(),
        chain.net.wall_clock_at_start() + chain.net.elapsed(),
    );
    chain
        .net
        .command(home, |h, _, _, out| h.restart(1, now, wall, out).unwrap());
    assert!(chain.net.run_until(Duration::from_secs(120), |net| {
        net.node(home).lma.cache().len() == 20 && chain_ups(net) >= ups_before + 20
    }));
    let m = chain.net.node(epdg);
    assert_eq!(m.lost(), 0, "the ePDG lost nothing");
    for (i, old) in before.iter().enumerate() {
        let now = m.registration(&Chain::key(i)).unwrap();
        assert_eq!(now.ipv4_home_address, old.ipv4_home_address);
        assert_eq!(now.home_network_prefix, old.home_network_prefix);
        // The home holds exactly the addresses the ePDG was given.
        let id = chain
            .net
            .node(home)
            .lma
            .cache()
            .find(&Chain::key(i).mn_id, Some("internet"))
            .unwrap();
        let held = chain
            .net
            .node(home)
            .lma
            .cache()
            .get(id)
            .unwrap()
            .addresses();
        assert_eq!(
            held.ipv4_home_address,
            old.ipv4_home_address.map(|a| a.addr())
        );
    }
    // The relay moved to the new home uplink keys (the restarted home's epoch).
    let moved = chain.net.node(visited).reports.iter().skip(reports_before);
    let mut keys = 0;
    for (_, o) in moved {
        if let ::lma::Output::ChainUp(info) = o {
            assert_eq!(
                ::lma::gre_keys::UplinkKeyAllocator::epoch_of(info.home_uplink_key),
                1
            );
            keys += 1;
        }
    }
    assert!(keys >= 20);
}

#[test]
fn the_home_revoking_a_roaming_binding_reaches_the_epdg_through_the_visited_gateway() {
    let mut chain = Chain::new(22, 0.0);
    chain.register(2);
    chain.settle_registrations(2);
    let (epdg, visited, home) = (chain.epdg, chain.visited, chain.home);
    let now = chain.net.now();
    chain.net.command(home, |h, _, _, out| {
        let mut lma_out = Vec::new();
        let target = ::lma::anchor::RevokeTarget::Binding {
            mn_id: Chain::key(0).mn_id.to_string(),
            apn: Some("internet".into()),
        };
        assert_eq!(h.lma.revoke_bindings(target, now, &mut lma_out), Ok(1));
        h.handle_outputs(now, lma_out, out);
    });
    chain.net.run_for(Duration::from_secs(3));
    let m = chain.net.node(epdg);
    assert!(m.events.iter().any(|(_, e)| matches!(
        e,
        bul::Output::Lost {
            key,
            reason: bul::RegistrationFailure::Revoked { trigger: 1 }
        } if *key == Chain::key(0)
    )));
    assert!(m.registration(&Chain::key(1)).is_some());
    assert_eq!(chain.net.node(visited).lma.cache().len(), 1);
    assert_eq!(chain.net.node(home).lma.cache().len(), 1);
    // Both indications were acknowledged: nothing is held back, nothing outstanding.
    for lma in [&chain.net.node(home).lma, &chain.net.node(visited).lma] {
        assert_eq!(lma.held_back(), 0);
        assert_eq!(lma.revocations_outstanding(), 0);
        assert_eq!(lma.stats().revocation_acks, 1);
    }
}
