//! Endpoints of nodes back to back in virtual time (RFC 5213 section 4: IKEv2 between a
//! MAG and its LMA): a MAG's endpoint initiates toward an LMA's with a pre-shared key or
//! a certificate, for a transport-mode CHILD_SA carrying the Mobility Header over UDP
//! 5436; then CREATE_CHILD_SA rekeys of the CHILD_SA and of the IKE SA from either side,
//! simultaneous ones, lost ones, lifetimes, and one endpoint serving many peers while it
//! initiates toward another.

use super::*;
use crate::esp::{child_sa_pair, IkeRole};
use crate::ike::auth::{LocalAuth, PeerAuth, PeerVerifier, Psk, Signer};
use crate::ike::ca::tests::TestCa;
use crate::ike::ca::CaVerifier;
use crate::ike::child::{ChildPolicy, Lifetimes, Mode};
use crate::ike::sa::{CloseReason, Established};
use crate::ike::{DhGroup, EspSuite, SkKeys};
use rand::{rngs::StdRng, SeedableRng};
use std::net::Ipv4Addr;
use std::time::Duration;

const MAG_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const LMA_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

fn at(ip: Ipv4Addr) -> SocketAddr {
    SocketAddr::new(ip.into(), 500)
}

fn mag_id() -> Identification {
    Identification::Fqdn("mag.example.net".into())
}

fn lma_id() -> Identification {
    Identification::Fqdn("lma.example.net".into())
}

/// UDP between one address (or all, with `None`) and any port, or port `port`.
fn udp(ip: Option<Ipv4Addr>, port: Option<u16>) -> TrafficSelector {
    let (start, end) = match ip {
        Some(a) => (a, a),
        None => (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST),
    };
    let (start_port, end_port) = port.map_or((0, u16::MAX), |p| (p, p));
    TrafficSelector::AddrRange {
        ip_protocol: 17,
        start_port,
        end_port,
        start_address: start.into(),
        end_address: end.into(),
    }
}

fn esp_suites() -> Vec<EspSuite> {
    vec![
        "null-sha256".parse().unwrap(),
        "aes128gcm16".parse().unwrap(),
    ]
}

/// The MAG toward its LMA: the Mobility Header over UDP, transport mode.
fn mag_config(auth: LocalAuth) -> InitiatorConfig {
    InitiatorConfig {
        suites: vec!["aes256gcm16-prfsha256-ecp256".parse().unwrap()],
        esp_suites: esp_suites(),
        idi: mag_id(),
        idr: Some(lma_id()),
        tsi: vec![udp(Some(MAG_IP), None)],
        tsr: vec![udp(Some(LMA_IP), None)],
        local: at(MAG_IP),
        auth,
        transport_mode: true,
        ..InitiatorConfig::default()
    }
}

/// The LMA: MAGs with this key, the Mobility Header to its UDP port 5436 only.
fn lma_config(peers: PeerAuth) -> ResponderConfig {
    ResponderConfig {
        suites: vec!["aes256gcm16-prfsha256-ecp256".parse().unwrap()],
        esp_suites: esp_suites(),
        identity: lma_id(),
        peers,
        peer_child: ChildPolicy {
            transport_mode: true,
            local_ts: vec![udp(Some(LMA_IP), Some(5436))],
            remote_ts: vec![udp(None, None)],
        },
        ..ResponderConfig::default()
    }
}

fn psk() -> Psk {
    Psk::new(*b"mag-lma shared secret")
}

fn psk_peers(id: Identification) -> PeerAuth {
    PeerAuth {
        psks: vec![(id, psk())],
        verifier: None,
    }
}

/// One node: its endpoint and what it told the application.
struct Node {
    endpoint: Endpoint,
    ip: Ipv4Addr,
    /// Every event, discards included (as `Event::Discarded`), with the SA's handle.
    events: Vec<(u64, Event)>,
    created: Vec<u64>,
}

impl Node {
    fn established(&self, spi: u64) -> Option<&Established> {
        self.events.iter().find_map(|(s, e)| match e {
            Event::Established(x) if *s == spi => Some(&**x),
            _ => None,
        })
    }

    fn closed(&self, spi: u64) -> Option<&CloseReason> {
        self.events.iter().find_map(|(s, e)| match e {
            Event::Closed(r) if *s == spi => Some(r),
            _ => None,
        })
    }

    fn count(&self, f: impl Fn(&Event) -> bool) -> usize {
        self.events.iter().filter(|(_, e)| f(e)).count()
    }

    fn rekeyed_children(&self) -> Vec<(u32, ChildSa)> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::ChildSaRekeyed { replaces, child } => Some((*replaces, (**child).clone())),
                _ => None,
            })
            .collect()
    }

    fn deleted_children(&self) -> Vec<u32> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::ChildSaDeleted { inbound_spi, .. } => Some(*inbound_spi),
                _ => None,
            })
            .collect()
    }

    fn ike_rekeys(&self) -> Vec<(u64, u64, String)> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::IkeSaRekeyed {
                    spi_i,
                    spi_r,
                    keylog,
                } => Some((*spi_i, *spi_r, keylog.clone())),
                _ => None,
            })
            .collect()
    }

    fn children(&self, spi: u64) -> Vec<ChildSa> {
        self.endpoint.children(spi).into_iter().cloned().collect()
    }
}

struct InFlight {
    at: Instant,
    from: usize,
    to: usize,
    transmit: Transmit,
}

/// Nodes wired together with a latency, a filter that may drop datagrams, and a record
/// of what went over the wire.
struct Net {
    now: Instant,
    start: Instant,
    rng: StdRng,
    nodes: Vec<Node>,
    wire: Vec<InFlight>,
    latency: Duration,
    /// Sees each datagram (its number, from, to, bytes); false drops it.
    #[allow(clippy::type_complexity)]
    filter: Box<dyn FnMut(usize, usize, usize, &[u8]) -> bool>,
    sent: usize,
    /// Every datagram sent: from, to, bytes, on port 4500.
    log: Vec<(usize, usize, Vec<u8>, bool)>,
}

const MAG: usize = 0;
const LMA: usize = 1;

impl Net {
    fn new(configs: Vec<(Ipv4Addr, ResponderConfig)>, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let now = Instant::now();
        let nodes = configs
            .into_iter()
            .map(|(ip, c)| Node {
                endpoint: Endpoint::new(c, &mut rng),
                ip,
                events: Vec::new(),
                created: Vec::new(),
            })
            .collect();
        Net {
            now,
            start: now,
            rng,
            nodes,
            wire: Vec::new(),
            latency: Duration::from_millis(10),
            filter: Box::new(|_, _, _, _| true),
            sent: 0,
            log: Vec::new(),
        }
    }

    /// A MAG (node 0, which answers nobody) and an LMA (node 1) with `lma`.
    fn pair(lma: ResponderConfig) -> Self {
        Net::new(vec![(MAG_IP, ResponderConfig::default()), (LMA_IP, lma)], 7)
    }

    fn outputs(&mut self, from: usize, out: Vec<EndpointOutput>) {
        for o in out {
            match o {
                EndpointOutput::Transmit(t) => {
                    let to = self
                        .nodes
                        .iter()
                        .position(|n| IpAddr::from(n.ip) == t.remote.ip())
                        .expect("a node at the destination");
                    assert_eq!(t.local.ip(), IpAddr::from(self.nodes[from].ip));
                    self.sent += 1;
                    self.log.push((from, to, t.bytes.clone(), t.natt));
                    if (self.filter)(self.sent, from, to, &t.bytes) {
                        self.wire.push(InFlight {
                            at: self.now + self.latency,
                            from,
                            to,
                            transmit: t,
                        });
                    }
                }
                EndpointOutput::Created { spi } => self.nodes[from].created.push(spi),
                EndpointOutput::Event { spi, event } => self.nodes[from].events.push((spi, event)),
                EndpointOutput::Discarded { spi, reason } => self.nodes[from]
                    .events
                    .push((spi.unwrap_or(0), Event::Discarded(reason))),
            }
        }
    }

    fn initiate(&mut self, from: usize, config: InitiatorConfig, to: usize) -> u64 {
        let mut out = Vec::new();
        let peer = at(self.nodes[to].ip);
        let spi = self.nodes[from]
            .endpoint
            .initiate(config, peer, self.now, &mut self.rng, &mut out)
            .unwrap();
        self.outputs(from, out);
        spi
    }

    /// Runs `f` on a node's endpoint now and routes what it output.
    fn act<R>(
        &mut self,
        n: usize,
        f: impl FnOnce(&mut Endpoint, Instant, &mut StdRng, &mut Vec<EndpointOutput>) -> R,
    ) -> R {
        let mut out = Vec::new();
        let r = f(
            &mut self.nodes[n].endpoint,
            self.now,
            &mut self.rng,
            &mut out,
        );
        self.outputs(n, out);
        r
    }

    /// Delivers what has arrived and fires what is due, until `limit` after now.
    fn run_for(&mut self, limit: Duration) {
        let end = self.now + limit;
        loop {
            let next_arrival = self.wire.iter().map(|w| w.at).min();
            let next_deadline = self
                .nodes
                .iter()
                .filter_map(|n| n.endpoint.poll_timeout())
                .min();
            let Some(next) = [next_arrival, next_deadline].into_iter().flatten().min() else {
                self.now = end;
                return;
            };
            if next > end {
                self.now = end;
                return;
            }
            self.now = self.now.max(next);
            if let Some(i) = self.wire.iter().position(|w| w.at <= self.now) {
                let w = self.wire.remove(i);
                let mut out = Vec::new();
                let node = &mut self.nodes[w.to];
                node.endpoint.handle(
                    &w.transmit.bytes,
                    w.transmit.local,
                    w.transmit.remote,
                    w.transmit.natt,
                    self.now,
                    &mut self.rng,
                    &mut out,
                );
                let _ = w.from;
                self.outputs(w.to, out);
                continue;
            }
            for n in 0..self.nodes.len() {
                if self.nodes[n]
                    .endpoint
                    .poll_timeout()
                    .is_some_and(|t| t <= self.now)
                {
                    let mut out = Vec::new();
                    let now = self.now;
                    self.nodes[n]
                        .endpoint
                        .handle_timeout(now, &mut self.rng, &mut out);
                    self.outputs(n, out);
                }
            }
        }
    }

    /// The MAG's IKE SA toward the LMA, established.
    fn connect(&mut self, config: InitiatorConfig) -> (u64, u64) {
        let spi = self.initiate(MAG, config, LMA);
        self.run_for(Duration::from_secs(1));
        let lma = *self.nodes[LMA].created.last().expect("an SA at the LMA");
        (spi, lma)
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }
}

/// The CHILD_SAs of both ends are the same SA: the same keys (named after the MAG, the
/// IKE_SA_INIT initiator), SPIs crossed, same selectors and mode; and a packet goes
/// through both ways.
fn assert_same_child(mag: &ChildSa, lma: &ChildSa) {
    assert_eq!(mag.keys, lma.keys);
    assert_eq!(mag.inbound_spi, lma.outbound_spi);
    assert_eq!(mag.outbound_spi, lma.inbound_spi);
    assert_eq!(
        (&mag.tsi, &mag.tsr, mag.mode),
        (&lma.tsi, &lma.tsr, lma.mode)
    );
    let (mut mag_in, mut mag_out) = child_sa_pair(mag, IkeRole::Initiator).unwrap();
    let (mut lma_in, mut lma_out) = child_sa_pair(lma, IkeRole::Responder).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let (mut packet, mut plain) = (Vec::new(), Vec::new());
    // Transport mode: the UDP datagram with the PBU, Next Header 17.
    mag_out
        .encapsulate(17, b"udp header and PBU", &mut rng, &mut packet)
        .unwrap();
    let d = lma_in.decapsulate(&packet, &mut plain).unwrap();
    assert_eq!(
        (d.next_header, &plain[..]),
        (17, &b"udp header and PBU"[..])
    );
    packet.clear();
    lma_out
        .encapsulate(17, b"udp header and PBA", &mut rng, &mut packet)
        .unwrap();
    let d = mag_in.decapsulate(&packet, &mut plain).unwrap();
    assert_eq!(
        (d.next_header, &plain[..]),
        (17, &b"udp header and PBA"[..])
    );
}

/// The only CHILD_SA of each end, the same SA.
fn one_child_each(net: &Net, mag: u64, lma: u64) -> (ChildSa, ChildSa) {
    let (m, l) = (net.nodes[MAG].children(mag), net.nodes[LMA].children(lma));
    assert_eq!((m.len(), l.len()), (1, 1), "one CHILD_SA each: {m:?} {l:?}");
    assert_same_child(&m[0], &l[0]);
    (m[0].clone(), l[0].clone())
}

/// Opens an encrypted datagram with the IKE SA keys `keys` (either direction).
fn open(keys: &IkeSaKeys, datagram: &[u8]) -> Option<IkeMessage> {
    [keys.initiator_sk(), keys.responder_sk()]
        .iter()
        .find_map(|k: &SkKeys| k.open(datagram).ok())
}

/// The LMA refused the MAG's AUTH (RFC 7296 section 2.21.2): both ends closed, no SA on
/// either.
fn assert_refused_by_the_lma(net: &Net, mag: u64, lma: u64) {
    let failed = NotifyType::AuthenticationFailed;
    assert_eq!(
        net.nodes[MAG].closed(mag),
        Some(&CloseReason::NotifyReceived(failed))
    );
    assert_eq!(
        net.nodes[LMA].closed(lma),
        Some(&CloseReason::NotifySent(failed))
    );
    assert!(net.nodes.iter().all(|n| n.endpoint.is_empty()));
}

/// The MAG refused the LMA's AUTH and told it in an INFORMATIONAL (section 2.21.2): no
/// SA on either end.
fn assert_refused_by_the_mag(net: &Net, mag: u64, lma: u64) {
    assert_eq!(
        net.nodes[MAG].closed(mag),
        Some(&CloseReason::PeerNotAuthenticated)
    );
    assert_eq!(
        net.nodes[LMA].closed(lma),
        Some(&CloseReason::NotifyReceived(
            NotifyType::AuthenticationFailed
        ))
    );
    assert!(net.nodes.iter().all(|n| n.endpoint.is_empty()));
}

#[test]
fn a_mag_and_its_lma_authenticate_with_a_pre_shared_key_for_transport_mode() {
    let mut net = Net::pair(lma_config(psk_peers(mag_id())));
    let (mag, lma) = net.connect(mag_config(LocalAuth::Psk(psk())));
    let at_mag = net.nodes[MAG]
        .established(mag)
        .expect("MAG established")
        .clone();
    let at_lma = net.nodes[LMA]
        .established(lma)
        .expect("LMA established")
        .clone();
    // Each reports who the other proved to be, and how.
    assert_eq!(
        (&at_lma.peer_id, at_lma.peer_auth),
        (&mag_id(), PeerAuthMethod::SharedKey)
    );
    assert_eq!(
        (&at_mag.peer_id, at_mag.peer_auth),
        (&lma_id(), PeerAuthMethod::SharedKey)
    );
    assert_eq!(
        net.nodes[LMA].endpoint.peer(lma),
        Some((&mag_id(), PeerAuthMethod::SharedKey))
    );
    // Transport mode, ENCR_NULL with HMAC-SHA2-256-128 (configured first), the TSr
    // narrowed to the LMA's UDP port 5436.
    assert_eq!(at_mag.child.mode, Mode::Transport);
    assert!(at_mag.child.suite.encr.is_null());
    assert_eq!(at_mag.child.tsi, vec![udp(Some(MAG_IP), None)]);
    assert_eq!(at_mag.child.tsr, vec![udp(Some(LMA_IP), Some(5436))]);
    assert_same_child(&at_mag.child, &at_lma.child);
    one_child_each(&net, mag, lma);
    // The keylog record comes with Established, the same on both ends, and only then.
    assert_eq!(at_mag.keylog, at_lma.keylog);
    let sa = net.nodes[LMA].endpoint.sa(lma).unwrap();
    assert_eq!(
        at_lma.keylog,
        sa.keys()
            .wireshark_decryption_record(mag, sa.responder_spi())
    );
    // Initiator and responder SAs share the endpoints' tables by our SPI.
    assert!(net.nodes[MAG].endpoint.initiator(mag).is_some());
    assert_eq!(net.nodes[MAG].endpoint.handle_of(mag), Some(mag));
    assert_eq!(net.nodes[LMA].endpoint.stats().sas_created, 1);
    assert_eq!(net.nodes[MAG].endpoint.stats().sas_initiated, 1);
}

#[test]
fn a_wrong_pre_shared_key_is_authentication_failed_and_leaves_no_sa() {
    let peers = PeerAuth {
        psks: vec![(mag_id(), Psk::new(*b"another secret"))],
        verifier: None,
    };
    let mut net = Net::pair(lma_config(peers));
    let (mag, lma) = net.connect(mag_config(LocalAuth::Psk(psk())));
    assert_refused_by_the_lma(&net, mag, lma);
    // An identity the LMA has no key for is the same.
    let mut net = Net::pair(lma_config(psk_peers(Identification::Fqdn(
        "x.example.net".into(),
    ))));
    let (mag, lma) = net.connect(mag_config(LocalAuth::Psk(psk())));
    assert_refused_by_the_lma(&net, mag, lma);
    for n in &net.nodes {
        assert!(n.endpoint.is_empty() && n.endpoint.poll_timeout().is_none());
        assert!(n
            .events
            .iter()
            .all(|(_, e)| !matches!(e, Event::Established(_))));
    }
}

#[test]
fn a_responder_that_is_not_the_peer_we_meant_is_told_and_keeps_no_sa() {
    // The LMA answers with the right key but as another identity than the MAG asked for:
    // the MAG says AUTHENTICATION_FAILED in an INFORMATIONAL (RFC 7296 section 2.21.2).
    let mut lma = lma_config(psk_peers(mag_id()));
    lma.identity = Identification::Fqdn("impostor.example.net".into());
    let mut net = Net::pair(lma);
    let (mag, lma) = net.connect(mag_config(LocalAuth::Psk(psk())));
    assert_refused_by_the_mag(&net, mag, lma);
}

/// A MAG and an LMA with certificates of `mag_ca` and `lma_ca`, each trusting `trusted`.
fn certificate_pair(mag_ca: &TestCa, lma_ca: &TestCa, trusted: &TestCa) -> (Net, InitiatorConfig) {
    let verifier = Arc::new(CaVerifier::new(vec![trusted.der.clone()]).unwrap());
    let lma_signer: Arc<dyn Signer> = Arc::new(lma_ca.signer(&["lma.example.net"]));
    let mut lma = lma_config(PeerAuth {
        psks: vec![],
        verifier: Some(verifier.clone()),
    });
    lma.signer = Some(lma_signer);
    let mag = InitiatorConfig {
        peer_verifier: Some(verifier),
        ..mag_config(LocalAuth::Certificate(Arc::new(
            mag_ca.signer(&["mag.example.net"]),
        )))
    };
    (Net::pair(lma), mag)
}

#[test]
fn a_mag_and_its_lma_authenticate_with_certificates_from_the_operator_ca() {
    let ca = TestCa::new("operator CA");
    let (mut net, config) = certificate_pair(&ca, &ca, &ca);
    let (mag, lma) = net.connect(config);
    let at_mag = net.nodes[MAG].established(mag).expect("MAG established");
    let at_lma = net.nodes[LMA].established(lma).expect("LMA established");
    assert_eq!(
        (&at_lma.peer_id, at_lma.peer_auth),
        (&mag_id(), PeerAuthMethod::Certificate)
    );
    assert_eq!(
        (&at_mag.peer_id, at_mag.peer_auth),
        (&lma_id(), PeerAuthMethod::Certificate)
    );
    assert_same_child(&at_mag.child, &at_lma.child);
    // CERTREQ naming the CA in the LMA's IKE_SA_INIT response and the MAG's IKE_AUTH.
    let certreq = CaVerifier::new(vec![ca.der.clone()])
        .unwrap()
        .certificate_request()
        .unwrap();
    let init_response = IkeMessage::parse(&net.log[1].2).unwrap();
    assert!(init_response
        .payloads
        .contains(&Payload::CertReq(certreq.clone())));
    let keys = net.nodes[LMA].endpoint.sa(lma).unwrap().keys().clone();
    let auth_request = open(&keys, &net.log[2].2).unwrap();
    assert!(auth_request.payloads.contains(&Payload::CertReq(certreq)));
    assert!(auth_request
        .payloads
        .iter()
        .any(|p| matches!(p, Payload::Auth(a) if a.method == AuthMethod::EcdsaSha256P256)));
}

#[test]
fn a_certificate_from_another_ca_fails_either_way_and_leaves_no_sa() {
    let ours = TestCa::new("operator CA");
    let theirs = TestCa::new("operator CA");
    // The MAG's certificate is not from the LMA's CA: refused by the LMA.
    let (mut net, config) = certificate_pair(&theirs, &ours, &ours);
    let (mag, lma) = net.connect(config);
    assert_refused_by_the_lma(&net, mag, lma);
    // The LMA's certificate is not from the MAG's CA: refused by the MAG, told to the LMA.
    let (mut net, config) = certificate_pair(&ours, &theirs, &ours);
    let (mag, lma) = net.connect(config);
    assert_refused_by_the_mag(&net, mag, lma);
}

#[test]
fn transport_mode_refused_makes_the_mag_delete_the_sa_and_selectors_outside_policy_fail() {
    let mut lma = lma_config(psk_peers(mag_id()));
    lma.peer_child.transport_mode = false;
    let mut net = Net::pair(lma);
    let (mag, lma) = net.connect(mag_config(LocalAuth::Psk(psk())));
    let at_lma = net.nodes[LMA]
        .established(lma)
        .expect("the LMA made it in tunnel mode");
    assert_eq!(at_lma.child.mode, Mode::Tunnel);
    assert_eq!(
        net.nodes[MAG].closed(mag),
        Some(&CloseReason::TransportModeRefused)
    );
    assert_eq!(
        net.nodes[LMA].closed(lma),
        Some(&CloseReason::DeletedByPeer)
    );
    assert!(net.nodes.iter().all(|n| n.endpoint.is_empty()));

    // A MAG that does not need transport mode takes the tunnel.
    let mut lma = lma_config(psk_peers(mag_id()));
    lma.peer_child.transport_mode = false;
    let mut net = Net::pair(lma);
    let (mag, lma) = net.connect(InitiatorConfig {
        transport_mode: false,
        ..mag_config(LocalAuth::Psk(psk()))
    });
    let (m, _) = one_child_each(&net, mag, lma);
    assert_eq!(m.mode, Mode::Tunnel);

    // Selectors the LMA's policy has nothing in common with.
    let mut net = Net::pair(lma_config(psk_peers(mag_id())));
    let (mag, _) = net.connect(InitiatorConfig {
        tsr: vec![udp(Some(Ipv4Addr::new(198, 51, 100, 9)), None)],
        ..mag_config(LocalAuth::Psk(psk()))
    });
    assert_eq!(
        net.nodes[MAG].closed(mag),
        Some(&CloseReason::NotifyReceived(NotifyType::TsUnacceptable))
    );
}

/// A connected MAG-LMA pair with a pre-shared key and `lifetimes` on both ends.
fn connected(lifetimes: Lifetimes) -> (Net, u64, u64) {
    let mut lma = lma_config(psk_peers(mag_id()));
    lma.lifetimes = lifetimes.clone();
    let mut net = Net::pair(lma);
    let (mag, lma) = net.connect(InitiatorConfig {
        lifetimes,
        ..mag_config(LocalAuth::Psk(psk()))
    });
    one_child_each(&net, mag, lma);
    (net, mag, lma)
}

/// Rekeys the CHILD_SA from node `side` and checks the outcome on both ends.
fn rekey_child_from(side: usize, pfs: Option<DhGroup>) {
    let (mut net, mag, lma) = connected(Lifetimes {
        child_dh: pfs,
        ..Lifetimes::default()
    });
    let (old_mag, old_lma) = one_child_each(&net, mag, lma);
    let (spi, inbound) = if side == MAG {
        (mag, old_mag.inbound_spi)
    } else {
        (lma, old_lma.inbound_spi)
    };
    let logged = net.log.len();
    assert!(net.act(side, |e, now, rng, out| e
        .rekey_child_sa(spi, inbound, now, rng, out)));
    net.run_for(Duration::from_secs(1));
    let (new_mag, new_lma) = one_child_each(&net, mag, lma);
    assert_ne!(new_mag.keys, old_mag.keys);
    assert_ne!(new_mag.inbound_spi, old_mag.inbound_spi);
    assert_eq!(
        (new_mag.mode, &new_mag.tsr),
        (Mode::Transport, &old_mag.tsr)
    );
    // Each end announced the new one replacing the old, and then the old one's end.
    assert_eq!(
        net.nodes[MAG].rekeyed_children(),
        vec![(old_mag.inbound_spi, new_mag.clone())]
    );
    assert_eq!(
        net.nodes[LMA].rekeyed_children(),
        vec![(old_lma.inbound_spi, new_lma.clone())]
    );
    assert_eq!(net.nodes[MAG].deleted_children(), vec![old_mag.inbound_spi]);
    assert_eq!(net.nodes[LMA].deleted_children(), vec![old_lma.inbound_spi]);
    assert_eq!(
        net.nodes[LMA].endpoint.esp_owner(new_lma.inbound_spi),
        Some(lma)
    );
    assert_eq!(net.nodes[LMA].endpoint.esp_owner(old_lma.inbound_spi), None);
    // The request: REKEY_SA naming the old SA, a KE exactly when PFS is asked, then the
    // Delete of the old SA: two exchanges in all.
    let keys = match side {
        MAG => net.nodes[MAG]
            .endpoint
            .initiator(mag)
            .unwrap()
            .keys()
            .unwrap()
            .clone(),
        _ => net.nodes[LMA].endpoint.sa(lma).unwrap().keys().clone(),
    };
    let exchanges: Vec<IkeMessage> = net.log[logged..]
        .iter()
        .filter_map(|(_, _, b, _)| open(&keys, b))
        .collect();
    assert_eq!(exchanges.len(), 4);
    let request = &exchanges[0];
    assert_eq!(request.exchange_type, ExchangeType::CreateChildSa);
    let rekey = request
        .notifies()
        .find(|n| n.notify_type == NotifyType::RekeySa)
        .unwrap();
    assert_eq!(rekey.spi, inbound.to_be_bytes().to_vec());
    assert!(request
        .notifies()
        .any(|n| n.notify_type == NotifyType::UseTransportMode));
    let ke = request.find(|p| match p {
        Payload::Ke(k) => Some(k.dh_group),
        _ => None,
    });
    assert_eq!(ke, pfs.map(|g| g.id()));
    assert_eq!(exchanges[2].exchange_type, ExchangeType::Informational);
    assert!(matches!(
        &exchanges[2].payloads[..],
        [Payload::Delete(d)] if d.protocol_id == ProtocolId::Esp
    ));
}

#[test]
fn the_mag_rekeys_the_child_sa_with_and_without_pfs() {
    rekey_child_from(MAG, None);
    rekey_child_from(MAG, Some(DhGroup::Curve25519));
}

#[test]
fn the_lma_rekeys_the_child_sa_with_and_without_pfs() {
    rekey_child_from(LMA, None);
    rekey_child_from(LMA, Some(DhGroup::Ecp256));
}

/// Rekeys the IKE SA from node `side` and checks both ends moved with their CHILD_SA.
fn rekey_ike_from(side: usize) {
    let (mut net, mag, lma) = connected(Lifetimes::default());
    let (child, _) = one_child_each(&net, mag, lma);
    let spi = if side == MAG { mag } else { lma };
    let old_record = net.nodes[MAG].established(mag).unwrap().keylog.clone();
    assert!(net.act(side, |e, now, rng, out| e.rekey_ike_sa(spi, now, rng, out)));
    net.run_for(Duration::from_secs(1));
    let (mag_rekeys, lma_rekeys) = (net.nodes[MAG].ike_rekeys(), net.nodes[LMA].ike_rekeys());
    assert_eq!(mag_rekeys.len(), 1);
    assert_eq!(
        mag_rekeys, lma_rekeys,
        "the same new SPIs and keys at both ends"
    );
    let (spi_i, spi_r, record) = &mag_rekeys[0];
    assert_ne!(record, &old_record);
    assert!(record.starts_with(&format!("{spi_i:016x},{spi_r:016x},")));
    // The side that rekeyed is the new SA's initiator: our SPIs moved in the tables,
    // the old ones left once the old SA's Delete was done.
    let (mag_spi, lma_spi) = if side == MAG {
        (*spi_i, *spi_r)
    } else {
        (*spi_r, *spi_i)
    };
    assert_eq!(net.nodes[MAG].endpoint.handle_of(mag_spi), Some(mag));
    assert_eq!(net.nodes[LMA].endpoint.handle_of(lma_spi), Some(lma));
    net.run_for(Duration::from_secs(120));
    assert_eq!(
        net.nodes[MAG].endpoint.handle_of(mag),
        None,
        "old SPI retired"
    );
    assert_eq!(
        net.nodes[LMA].endpoint.handle_of(lma),
        None,
        "old SPI retired"
    );
    assert_eq!(net.nodes[MAG].endpoint.by_spi.len(), 1);
    assert_eq!(net.nodes[LMA].endpoint.by_spi.len(), 1);
    // The CHILD_SA moved unchanged; the new IKE SA works: a CHILD_SA rekey from each
    // side on it (message IDs from 0) and a liveness check.
    let (moved, _) = one_child_each(&net, mag, lma);
    assert_eq!(moved, child);
    assert!(net.act(MAG, |e, now, rng, out| e.rekey_child_sa(
        mag,
        moved.inbound_spi,
        now,
        rng,
        out
    )));
    net.run_for(Duration::from_secs(1));
    let (again, lma_child) = one_child_each(&net, mag, lma);
    assert_ne!(again, moved);
    assert!(net.act(LMA, |e, now, rng, out| e.rekey_child_sa(
        lma,
        lma_child.inbound_spi,
        now,
        rng,
        out
    )));
    net.run_for(Duration::from_secs(1));
    one_child_each(&net, mag, lma);
    let alive = net.nodes[MAG].count(|e| matches!(e, Event::Alive));
    net.act(MAG, |e, now, rng, out| {
        let entry = e.sas.get_mut(&mag).unwrap();
        let mut sa_out = Vec::new();
        entry.sa.check_liveness(now, rng, &mut sa_out);
        e.carry_out(mag, sa_out, now, out);
    });
    net.run_for(Duration::from_secs(1));
    assert_eq!(
        net.nodes[MAG].count(|e| matches!(e, Event::Alive)),
        alive + 1
    );
    assert!(net
        .nodes
        .iter()
        .all(|n| n.count(|e| matches!(e, Event::Closed(_))) == 0));
}

#[test]
fn the_mag_rekeys_the_ike_sa() {
    rekey_ike_from(MAG);
}

#[test]
fn the_lma_rekeys_the_ike_sa() {
    rekey_ike_from(LMA);
}

#[test]
fn simultaneous_child_sa_rekeys_leave_one_new_child_sa_by_the_lowest_nonce() {
    for seed in 0..12 {
        let (mut net, mag, lma) = connected(Lifetimes::default());
        net.rng = StdRng::seed_from_u64(seed);
        let (old_mag, old_lma) = one_child_each(&net, mag, lma);
        assert!(net.act(MAG, |e, now, rng, out| e.rekey_child_sa(
            mag,
            old_mag.inbound_spi,
            now,
            rng,
            out
        )));
        assert!(net.act(LMA, |e, now, rng, out| e.rekey_child_sa(
            lma,
            old_lma.inbound_spi,
            now,
            rng,
            out
        )));
        net.run_for(Duration::from_secs(2));
        // Two new CHILD_SAs were made (both ends announce both), one survives, the old
        // one and the redundant one are gone at both ends.
        assert_eq!(net.nodes[MAG].rekeyed_children().len(), 2, "seed {seed}");
        assert_eq!(net.nodes[LMA].rekeyed_children().len(), 2, "seed {seed}");
        let (new_mag, _) = one_child_each(&net, mag, lma);
        assert_ne!(new_mag.inbound_spi, old_mag.inbound_spi);
        let mut deleted = net.nodes[MAG].deleted_children();
        deleted.sort_unstable();
        let mut want: Vec<u32> = net.nodes[MAG]
            .rekeyed_children()
            .iter()
            .map(|(_, c)| c.inbound_spi)
            .chain([old_mag.inbound_spi])
            .filter(|s| *s != new_mag.inbound_spi)
            .collect();
        want.sort_unstable();
        assert_eq!(deleted, want, "seed {seed}");
        assert!(net
            .nodes
            .iter()
            .all(|n| n.count(|e| matches!(e, Event::Closed(_))) == 0));
    }
}

#[test]
fn simultaneous_ike_sa_rekeys_leave_one_new_ike_sa_by_the_lowest_nonce() {
    for seed in 0..12 {
        let (mut net, mag, lma) = connected(Lifetimes::default());
        net.rng = StdRng::seed_from_u64(seed);
        let (child, _) = one_child_each(&net, mag, lma);
        assert!(net.act(MAG, |e, now, rng, out| e.rekey_ike_sa(mag, now, rng, out)));
        assert!(net.act(LMA, |e, now, rng, out| e.rekey_ike_sa(lma, now, rng, out)));
        // Both requests crossed: each end answered the other's and holds the new IKE SA
        // it made beside the old one, its own not yet answered.
        net.run_for(net.latency + Duration::from_millis(5));
        assert_eq!(net.nodes[MAG].endpoint.by_spi.len(), 2, "seed {seed}");
        assert_eq!(net.nodes[LMA].endpoint.by_spi.len(), 2, "seed {seed}");
        assert!(net.nodes[MAG].ike_rekeys().is_empty());
        net.run_for(Duration::from_secs(120));
        // Both ends end on the same IKE SA, every other one gone from the tables.
        let mag_sa = net.nodes[MAG].endpoint.initiator(mag).unwrap();
        let lma_sa = net.nodes[LMA].endpoint.sa(lma).unwrap();
        assert_eq!(
            (mag_sa.initiator_spi(), mag_sa.responder_spi()),
            (lma_sa.initiator_spi(), lma_sa.responder_spi()),
            "seed {seed}"
        );
        assert_ne!(mag_sa.initiator_spi(), mag);
        assert_eq!(net.nodes[MAG].endpoint.by_spi.len(), 1, "seed {seed}");
        assert_eq!(net.nodes[LMA].endpoint.by_spi.len(), 1, "seed {seed}");
        let (last_mag, last_lma) = (
            net.nodes[MAG].ike_rekeys().last().cloned().unwrap(),
            net.nodes[LMA].ike_rekeys().last().cloned().unwrap(),
        );
        assert_eq!(last_mag, last_lma, "seed {seed}");
        let (moved, _) = one_child_each(&net, mag, lma);
        assert_eq!(moved, child, "the CHILD_SA moved to the survivor");
        assert!(net.act(MAG, |e, now, rng, out| e.rekey_child_sa(
            mag,
            moved.inbound_spi,
            now,
            rng,
            out
        )));
        net.run_for(Duration::from_secs(1));
        let (rekeyed, _) = one_child_each(&net, mag, lma);
        assert_ne!(rekeyed, moved, "seed {seed}: the survivor works");
        assert!(net
            .nodes
            .iter()
            .all(|n| n.count(|e| matches!(e, Event::Closed(_))) == 0));
    }
}

#[test]
fn a_lost_rekey_request_or_response_is_retransmitted_without_a_second_sa() {
    for lost in [1, 2] {
        // CHILD_SA: the `lost`-th datagram after the rekey starts is dropped (1: the
        // request, 2: the response).
        let (mut net, mag, lma) = connected(Lifetimes::default());
        let (old, _) = one_child_each(&net, mag, lma);
        let base = net.sent;
        net.filter = Box::new(move |n, _, _, _| n != base + lost);
        assert!(net.act(MAG, |e, now, rng, out| e.rekey_child_sa(
            mag,
            old.inbound_spi,
            now,
            rng,
            out
        )));
        net.run_for(Duration::from_secs(10));
        let (new, _) = one_child_each(&net, mag, lma);
        assert_ne!(new, old);
        assert_eq!(
            net.nodes[LMA].rekeyed_children().len(),
            1,
            "one CHILD_SA made"
        );
        assert_eq!(net.nodes[MAG].rekeyed_children().len(), 1);

        // IKE SA, the same.
        let (mut net, mag, lma) = connected(Lifetimes::default());
        let base = net.sent;
        net.filter = Box::new(move |n, _, _, _| n != base + lost);
        assert!(net.act(MAG, |e, now, rng, out| e.rekey_ike_sa(mag, now, rng, out)));
        net.run_for(Duration::from_secs(120));
        assert_eq!(net.nodes[MAG].ike_rekeys().len(), 1);
        assert_eq!(net.nodes[MAG].ike_rekeys(), net.nodes[LMA].ike_rekeys());
        assert_eq!(net.nodes[LMA].endpoint.by_spi.len(), 1);
        one_child_each(&net, mag, lma);
        assert!(net
            .nodes
            .iter()
            .all(|n| n.count(|e| matches!(e, Event::Closed(_))) == 0));
    }
}

#[test]
fn soft_lifetimes_rekey_with_jitter_and_hard_ones_end_what_was_not_rekeyed() {
    // Only the LMA has lifetimes: it rekeys the CHILD_SA every 55 to 60 s and the IKE SA
    // every 270 to 300 s.
    let lifetimes = Lifetimes {
        ike_rekey: Some(Duration::from_secs(300)),
        ike_lifetime: Some(Duration::from_secs(400)),
        child_rekey: Some(Duration::from_secs(60)),
        child_lifetime: Some(Duration::from_secs(90)),
        jitter: Duration::from_secs(5),
        child_dh: None,
    };
    let mut lma = lma_config(psk_peers(mag_id()));
    lma.lifetimes = lifetimes.clone();
    let mut net = Net::pair(lma);
    let (mag, lma) = net.connect(mag_config(LocalAuth::Psk(psk())));
    let mut rekeys = Vec::new();
    let mut seen = 0;
    while net.elapsed() < Duration::from_secs(1200) {
        net.run_for(Duration::from_secs(1));
        let now = net.nodes[LMA].rekeyed_children().len();
        if now > seen {
            seen = now;
            rekeys.push(net.elapsed());
        }
    }
    assert!(
        rekeys.len() >= 1200 / 60 && rekeys.len() <= 1200 / 55 + 1,
        "{rekeys:?}"
    );
    let gaps: Vec<Duration> = rekeys.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter()
            .all(|g| *g >= Duration::from_secs(54) && *g <= Duration::from_secs(61)),
        "{gaps:?}"
    );
    assert!(gaps.iter().any(|g| *g != gaps[0]), "jittered: {gaps:?}");
    let ike = net.nodes[LMA].ike_rekeys().len();
    assert!(
        (1200 / 300..=1200 / 270 + 1).contains(&ike),
        "{ike} IKE SA rekeys"
    );
    assert_eq!(net.nodes[MAG].ike_rekeys(), net.nodes[LMA].ike_rekeys());
    one_child_each(&net, mag, lma);
    assert!(net
        .nodes
        .iter()
        .all(|n| n.count(|e| matches!(e, Event::Closed(_))) == 0));

    // Without soft lifetimes the hard ones end the CHILD_SA at 90 s and the IKE SA at
    // 400 s, to the second.
    let mut lma = lma_config(psk_peers(mag_id()));
    lma.lifetimes = Lifetimes {
        ike_rekey: None,
        child_rekey: None,
        ..lifetimes
    };
    let mut net = Net::pair(lma);
    let (mag, lma) = net.connect(mag_config(LocalAuth::Psk(psk())));
    let (_, child) = one_child_each(&net, mag, lma);
    net.run_for(Duration::from_secs(89));
    assert!(net.nodes[LMA].deleted_children().is_empty());
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.nodes[LMA].deleted_children(), vec![child.inbound_spi]);
    assert_eq!(net.nodes[MAG].deleted_children(), vec![child.outbound_spi]);
    net.run_for(Duration::from_secs(308));
    assert!(net.nodes[LMA].closed(lma).is_none());
    net.run_for(Duration::from_secs(2));
    assert_eq!(
        net.nodes[LMA].closed(lma),
        Some(&CloseReason::LifetimeExpired)
    );
    assert_eq!(
        net.nodes[MAG].closed(mag),
        Some(&CloseReason::DeletedByPeer)
    );
}

#[test]
fn both_ends_with_the_same_lifetimes_stay_up_through_colliding_rekeys() {
    let lifetimes = Lifetimes {
        ike_rekey: Some(Duration::from_secs(120)),
        ike_lifetime: Some(Duration::from_secs(200)),
        child_rekey: Some(Duration::from_secs(30)),
        child_lifetime: Some(Duration::from_secs(50)),
        jitter: Duration::from_millis(30),
        child_dh: Some(DhGroup::Ecp256),
    };
    let (mut net, mag, lma) = connected(lifetimes);
    net.run_for(Duration::from_secs(900));
    one_child_each(&net, mag, lma);
    assert!(net.nodes[MAG].rekeyed_children().len() >= 900 / 30);
    assert!(net.nodes[MAG].ike_rekeys().len() >= 900 / 120);
    assert!(net
        .nodes
        .iter()
        .all(|n| n.count(|e| matches!(e, Event::Closed(_))) == 0));
    let mag_sa = net.nodes[MAG].endpoint.initiator(mag).unwrap();
    let lma_sa = net.nodes[LMA].endpoint.sa(lma).unwrap();
    assert_eq!(
        (mag_sa.initiator_spi(), mag_sa.responder_spi()),
        (lma_sa.initiator_spi(), lma_sa.responder_spi())
    );
}

#[test]
fn one_endpoint_initiates_toward_a_gateway_while_it_answers_many_peers() {
    // Node 0 (the ePDG/MAG) initiates toward node 1 (an LMA) and answers nodes 2.. (MAGs
    // of its own, say) that initiate toward it, all on the same endpoint; liveness on
    // every SA of both roles.
    let n = 20;
    let mut hub = lma_config(PeerAuth {
        psks: (0..n)
            .map(|i| (Identification::Fqdn(format!("peer{i}.example.net")), psk()))
            .collect(),
        verifier: None,
    });
    hub.identity = mag_id();
    hub.peer_child.local_ts = vec![udp(Some(MAG_IP), Some(5436))];
    hub.liveness_interval = Some(Duration::from_secs(30));
    let mut configs = vec![(MAG_IP, hub), (LMA_IP, lma_config(psk_peers(mag_id())))];
    let peer_ip = |i: u8| Ipv4Addr::new(192, 0, 2, 10 + i);
    for i in 0..n {
        configs.push((peer_ip(i), ResponderConfig::default()));
    }
    let mut net = Net::new(configs, 3);
    let uplink = net.initiate(
        MAG,
        InitiatorConfig {
            liveness_interval: Some(Duration::from_secs(30)),
            ..mag_config(LocalAuth::Psk(psk()))
        },
        LMA,
    );
    let mut peers = Vec::new();
    for i in 0..n {
        let config = InitiatorConfig {
            idi: Identification::Fqdn(format!("peer{i}.example.net")),
            idr: Some(mag_id()),
            tsi: vec![udp(Some(peer_ip(i)), None)],
            tsr: vec![udp(Some(MAG_IP), None)],
            local: at(peer_ip(i)),
            ..mag_config(LocalAuth::Psk(psk()))
        };
        peers.push(net.initiate(2 + i as usize, config, MAG));
    }
    net.run_for(Duration::from_secs(100));
    let hub = &net.nodes[MAG];
    assert_eq!(hub.endpoint.len(), 1 + n as usize);
    assert!(hub.endpoint.initiator(uplink).is_some());
    assert_eq!(hub.created.len(), n as usize);
    for (i, spi) in hub.created.iter().enumerate() {
        let (id, how) = hub.endpoint.peer(*spi).unwrap();
        assert_eq!(how, PeerAuthMethod::SharedKey);
        assert!(
            matches!(id, Identification::Fqdn(f) if f.starts_with("peer")),
            "{i}"
        );
    }
    assert!(hub.established(uplink).is_some());
    // Three liveness checks answered on each of the hub's SAs in 100 s.
    let alive: HashMap<u64, usize> = hub.events.iter().fold(HashMap::new(), |mut m, (s, e)| {
        if matches!(e, Event::Alive) {
            *m.entry(*s).or_default() += 1;
        }
        m
    });
    assert_eq!(alive.len(), 1 + n as usize);
    assert!(alive.values().all(|c| *c == 3), "{alive:?}");
    // A rekey of the uplink IKE SA and of a peer's CHILD_SA, while the others go on.
    let peer_sa = hub.created[3];
    let child = net.nodes[MAG].children(peer_sa)[0].inbound_spi;
    assert!(net.act(MAG, |e, now, rng, out| e
        .rekey_ike_sa(uplink, now, rng, out)));
    assert!(net.act(MAG, |e, now, rng, out| e
        .rekey_child_sa(peer_sa, child, now, rng, out)));
    net.run_for(Duration::from_secs(100));
    assert_eq!(net.nodes[LMA].ike_rekeys().len(), 1);
    assert_eq!(net.nodes[5].rekeyed_children().len(), 1);
    assert!(net
        .nodes
        .iter()
        .all(|n| n.count(|e| matches!(e, Event::Closed(_))) == 0));
    assert_eq!(net.nodes[MAG].endpoint.len(), 1 + n as usize);
    assert_eq!(net.nodes[MAG].endpoint.by_spi.len(), 1 + n as usize);
    assert_eq!(net.nodes[MAG].endpoint.half_open(), 0);
    // Deleting the uplink leaves the peers' SAs.
    net.act(MAG, |e, now, rng, out| e.delete(uplink, now, rng, out));
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.nodes[MAG].endpoint.len(), n as usize);
    assert_eq!(
        net.nodes[LMA].closed(net.nodes[LMA].created[0]),
        Some(&CloseReason::DeletedByPeer)
    );
}

#[test]
fn identities_may_be_addresses_and_e_mail_addresses() {
    for (mag, lma) in [
        (
            Identification::Ipv4Addr(MAG_IP),
            Identification::Ipv4Addr(LMA_IP),
        ),
        (
            Identification::Ipv6Addr("2001:db8::1".parse().unwrap()),
            Identification::Rfc822Addr("lma@example.net".into()),
        ),
    ] {
        let mut config = lma_config(psk_peers(mag.clone()));
        config.identity = lma.clone();
        let mut net = Net::pair(config);
        let (m, l) = net.connect(InitiatorConfig {
            idi: mag.clone(),
            idr: Some(lma.clone()),
            ..mag_config(LocalAuth::Psk(psk()))
        });
        assert_eq!(net.nodes[LMA].established(l).unwrap().peer_id, mag);
        assert_eq!(net.nodes[MAG].established(m).unwrap().peer_id, lma);
    }
}

#[test]
fn a_pfs_group_the_peer_does_not_take_is_retried_in_the_one_it_names() {
    // The MAG asks MODP-2048 for PFS; the LMA does its IKE suite's group only.
    let mut net = Net::pair(lma_config(psk_peers(mag_id())));
    let (mag, lma) = net.connect(InitiatorConfig {
        lifetimes: Lifetimes {
            child_dh: Some(DhGroup::Modp2048),
            ..Lifetimes::default()
        },
        ..mag_config(LocalAuth::Psk(psk()))
    });
    let (old, _) = one_child_each(&net, mag, lma);
    let logged = net.log.len();
    assert!(net.act(MAG, |e, now, rng, out| e.rekey_child_sa(
        mag,
        old.inbound_spi,
        now,
        rng,
        out
    )));
    net.run_for(Duration::from_secs(1));
    let (new, _) = one_child_each(&net, mag, lma);
    assert_ne!(new, old);
    let keys = net.nodes[LMA].endpoint.sa(lma).unwrap().keys().clone();
    let messages: Vec<IkeMessage> = net.log[logged..]
        .iter()
        .filter_map(|(_, _, b, _)| open(&keys, b))
        .collect();
    let groups: Vec<Option<DhGroupId>> = messages
        .iter()
        .filter(|m| m.exchange_type == ExchangeType::CreateChildSa)
        .map(|m| {
            m.find(|p| match p {
                Payload::Ke(k) => Some(k.dh_group),
                _ => None,
            })
            .or_else(|| m.notifies().find_map(|n| n.accepted_dh_group()))
        })
        .collect();
    assert_eq!(
        groups,
        vec![
            Some(DhGroupId::Modp2048),
            Some(DhGroupId::Ecp256), // INVALID_KE_PAYLOAD naming it
            Some(DhGroupId::Ecp256),
            Some(DhGroupId::Ecp256),
        ]
    );
}

/// Requests an LMA cannot honour get the notify RFC 7296 names for them, and change
/// nothing: an unknown CHILD_SA (CHILD_SA_NOT_FOUND), no acceptable proposal
/// (NO_PROPOSAL_CHOSEN), a KE in a group the proposal does not name
/// (INVALID_KE_PAYLOAD), a further CHILD_SA (NO_ADDITIONAL_SAS), an IKE SA rekey without
/// KE (INVALID_SYNTAX).
#[test]
fn create_child_sa_requests_that_cannot_be_honoured_get_their_notify() {
    let (mut net, mag, lma) = connected(Lifetimes::default());
    let (_, child) = one_child_each(&net, mag, lma);
    let keys = net.nodes[LMA].endpoint.sa(lma).unwrap().keys().clone();
    let spi_r = net.nodes[LMA].endpoint.sa(lma).unwrap().responder_spi();
    let suite = child.suite;
    let nonce = Payload::Nonce(vec![7; 32]);
    let ts = [
        Payload::TsI(vec![udp(Some(MAG_IP), None)]),
        Payload::TsR(vec![udp(Some(LMA_IP), Some(5436))]),
    ];
    let rekey = |spi: u32| {
        Payload::Notify(NotifyPayload {
            protocol_id: 3,
            spi: spi.to_be_bytes().to_vec(),
            notify_type: NotifyType::RekeySa,
            data: vec![],
        })
    };
    let sa = |s: EspSuite, dh: Option<DhGroup>| {
        Payload::Sa(SaPayload {
            proposals: vec![s.proposal_with_dh(1, 0x5555_0001, dh)],
        })
    };
    let cases: Vec<(Vec<Payload>, NotifyType)> = vec![
        (
            [
                vec![rekey(0xdead_beef), sa(suite, None), nonce.clone()],
                ts.to_vec(),
            ]
            .concat(),
            NotifyType::ChildSaNotFound,
        ),
        (
            [
                vec![
                    rekey(child.outbound_spi),
                    sa("aes256-sha1".parse().unwrap(), None),
                    nonce.clone(),
                ],
                ts.to_vec(),
            ]
            .concat(),
            NotifyType::NoProposalChosen,
        ),
        (
            [
                vec![
                    rekey(child.outbound_spi),
                    sa(suite, Some(DhGroup::Ecp256)),
                    nonce.clone(),
                ],
                ts.to_vec(),
            ]
            .concat(),
            NotifyType::InvalidKePayload,
        ),
        (
            [vec![sa(suite, None), nonce.clone()], ts.to_vec()].concat(),
            NotifyType::NoAdditionalSas,
        ),
        (
            vec![
                Payload::Sa(SaPayload {
                    proposals: vec![{
                        let mut p = "aes256gcm16-prfsha256-ecp256"
                            .parse::<IkeSuite>()
                            .unwrap()
                            .proposal(1);
                        p.spi = 0x1234u64.to_be_bytes().to_vec();
                        p
                    }],
                }),
                nonce.clone(),
            ],
            NotifyType::InvalidSyntax,
        ),
    ];
    for (i, (payloads, want)) in cases.into_iter().enumerate() {
        let m = IkeMessage {
            initiator_spi: mag,
            responder_spi: spi_r,
            exchange_type: ExchangeType::CreateChildSa,
            flags: Flags {
                initiator: true,
                ..Flags::default()
            },
            message_id: 2 + i as u32,
            payloads,
        };
        let sealed = keys.initiator_sk().seal(&m, &mut net.rng).unwrap();
        let mut out = Vec::new();
        let now = net.now;
        net.nodes[LMA].endpoint.handle(
            &sealed,
            at(MAG_IP),
            at(LMA_IP),
            false,
            now,
            &mut net.rng,
            &mut out,
        );
        let response = out
            .iter()
            .find_map(|o| match o {
                EndpointOutput::Transmit(t) => Some(t.bytes.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("case {i}: no answer: {out:?}"));
        let answer = keys.responder_sk().open(&response).unwrap();
        let got: Vec<NotifyType> = answer.notifies().map(|n| n.notify_type).collect();
        assert_eq!(got, vec![want], "case {i}");
        if want == NotifyType::ChildSaNotFound {
            let n = answer.notifies().next().unwrap();
            assert_eq!(
                (n.protocol_id, &n.spi[..]),
                (3, &0xdead_beefu32.to_be_bytes()[..])
            );
        }
        if want == NotifyType::InvalidKePayload {
            // The proposal asked ECP-256 but KE was missing: the group named is ECP-256.
            assert_eq!(
                answer.notifies().next().unwrap().accepted_dh_group(),
                Some(DhGroupId::Ecp256)
            );
        }
    }
    // Nothing changed at the LMA.
    assert_eq!(net.nodes[LMA].children(lma), vec![child]);
    assert!(net.nodes[LMA].rekeyed_children().is_empty());
}

/// RFC 7296 section 2.25: a rekey of the IKE SA while a CHILD_SA rekey is under way (and
/// a CHILD_SA rekey while the IKE SA's is) gets TEMPORARY_FAILURE; the refused sides try
/// again one to three seconds later, and both rekeys are done.
#[test]
fn crossing_child_sa_and_ike_sa_rekeys_are_refused_for_a_while_then_done() {
    for (child_side, ike_side) in [(MAG, LMA), (LMA, MAG)] {
        let (mut net, mag, lma) = connected(Lifetimes::default());
        let (m, l) = one_child_each(&net, mag, lma);
        let spi = |side| if side == MAG { mag } else { lma };
        let inbound = if child_side == MAG {
            m.inbound_spi
        } else {
            l.inbound_spi
        };
        assert!(net.act(child_side, |e, now, rng, out| e.rekey_child_sa(
            spi(child_side),
            inbound,
            now,
            rng,
            out
        )));
        assert!(net.act(ike_side, |e, now, rng, out| e.rekey_ike_sa(
            spi(ike_side),
            now,
            rng,
            out
        )));
        net.run_for(Duration::from_millis(100));
        assert!(net.nodes[MAG].ike_rekeys().is_empty(), "refused at first");
        assert!(
            net.nodes[MAG].rekeyed_children().is_empty(),
            "refused at first"
        );
        net.run_for(Duration::from_secs(10));
        for n in [MAG, LMA] {
            assert_eq!(net.nodes[n].rekeyed_children().len(), 1, "node {n}");
            assert_eq!(net.nodes[n].ike_rekeys().len(), 1, "node {n}");
        }
        assert_eq!(net.nodes[MAG].ike_rekeys(), net.nodes[LMA].ike_rekeys());
        one_child_each(&net, mag, lma);
        assert!(net
            .nodes
            .iter()
            .all(|n| n.count(|e| matches!(e, Event::Closed(_))) == 0));
    }
}
