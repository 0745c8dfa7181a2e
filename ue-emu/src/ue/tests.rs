//! The UE core against an in-test ePDG made of the library's IKE responder and EAP-AKA
//! server, in virtual time: the ladder, the report, the failures, retransmission, detach.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pmip_common::eap::{Server, ServerConfig, ServerInput, ServerOutput, Sqn, Subscriber};
use pmip_common::ike::endpoint::{Endpoint, EndpointOutput};
use pmip_common::ike::responder::{Acceptance, ResponderConfig};
use pmip_common::ike::sa::Event;
use pmip_common::ike::wire::{ConfigAttribute, Identification, NotifyType, TrafficSelector};
use pmip_common::ike::{EspSuite, IkeSuite};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;

const K: [u8; 16] = [
    0x46, 0x5b, 0x5c, 0xe8, 0xb1, 0x99, 0xb4, 0x9f, 0xaa, 0x5f, 0x0a, 0x2e, 0xe2, 0x38, 0xa6, 0xbc,
];
const OPC: [u8; 16] = [
    0xcd, 0x63, 0xcb, 0x71, 0x95, 0x4a, 0x9f, 0x4e, 0x48, 0xa5, 0x99, 0x4e, 0x37, 0xa0, 0x2b, 0xaf,
];
const NAI: &str = "0234150999999999@nai.epc.mnc015.mcc234.3gppnetwork.org";

fn ue_addr() -> SocketAddr {
    "192.0.2.10:40000".parse().unwrap()
}

fn epdg() -> SocketAddr {
    "198.51.100.1:500".parse().unwrap()
}

fn epdg_natt() -> SocketAddr {
    "198.51.100.1:4500".parse().unwrap()
}

fn profile(k: [u8; 16], detach: DetachPolicy) -> Profile {
    Profile {
        epdg: epdg(),
        epdg_natt: epdg_natt(),
        k,
        opc: OPC,
        ike: InitiatorConfig {
            suites: IkeSuite::defaults(),
            esp_suites: EspSuite::defaults(),
            idi: Identification::Rfc822Addr(String::new()),
            idr: Some(Identification::Fqdn("internet".into())),
            cp_request: vec![
                ConfigAttribute::InternalIp4Address(None),
                ConfigAttribute::InternalIp6Address(None),
            ],
            tsi: vec![TrafficSelector::any_ipv4()],
            tsr: vec![TrafficSelector::any_ipv4()],
            local: ue_addr(),
            remote: epdg(),
            force_port_4500: true,
            eap_only: true,
            peer_verifier: None,
            retransmit: RetransmitPolicy::default(),
            ..InitiatorConfig::default()
        },
        attach_timeout: Duration::from_secs(20),
        detach,
    }
}

fn one_try() -> DetachPolicy {
    DetachPolicy {
        attempts: 1,
        wait: Duration::from_millis(500),
    }
}

/// What the in-test ePDG does with an attach once EAP succeeded.
#[derive(Clone, Copy)]
enum Verdict {
    Accept,
    Refuse(NotifyType),
}

/// An ePDG reduced to what the UE sees: the IKE responder, one EAP-AKA server with one
/// subscriber, and a fixed verdict after EAP.
struct StandIn {
    endpoint: Endpoint,
    server: Server,
    sqn: u64,
    verdict: Verdict,
    /// Whether it answers at all.
    silent: bool,
}

impl StandIn {
    fn new(rng: &mut StdRng, sqn: u64, verdict: Verdict) -> Self {
        StandIn {
            endpoint: Endpoint::new(ResponderConfig::default(), rng),
            server: Server::new(ServerConfig::default()),
            sqn,
            verdict,
            silent: false,
        }
    }

    /// A datagram from the UE; returns the datagrams sent back (from, bytes).
    fn receive(
        &mut self,
        to: SocketAddr,
        bytes: &[u8],
        now: Instant,
        rng: &mut StdRng,
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        if self.silent {
            return Vec::new();
        }
        let (message, natt) = match bytes.strip_prefix(&NON_ESP_MARKER) {
            Some(m) if to == epdg_natt() => (m, true),
            _ => (bytes, false),
        };
        let mut out = Vec::new();
        self.endpoint
            .handle(message, ue_addr(), to, natt, now, rng, &mut out);
        let mut sent = Vec::new();
        while !out.is_empty() {
            for o in std::mem::take(&mut out) {
                match o {
                    EndpointOutput::Transmit(t) if t.natt => {
                        sent.push((t.local, [&NON_ESP_MARKER[..], &t.bytes].concat()))
                    }
                    EndpointOutput::Transmit(t) => sent.push((t.local, t.bytes)),
                    EndpointOutput::Event {
                        spi,
                        event: Event::AuthRequested(request),
                    } => {
                        let Identification::Rfc822Addr(nai) = request.idi else {
                            panic!("IDi {:?}", request.idi);
                        };
                        // EAP-Response/Identity built from IDi, as an ePDG does.
                        let mut identity = vec![2, 0, 0, 5 + nai.len() as u8, 1];
                        identity.extend_from_slice(nai.as_bytes());
                        self.eap(spi, &identity, now, rng, &mut out);
                    }
                    EndpointOutput::Event {
                        spi,
                        event: Event::EapResponse(eap),
                    } => self.eap(spi, &eap, now, rng, &mut out),
                    _ => {}
                }
            }
        }
        sent
    }

    fn eap(
        &mut self,
        spi: u64,
        packet: &[u8],
        now: Instant,
        rng: &mut StdRng,
        out: &mut Vec<EndpointOutput>,
    ) {
        let mut pending = self.server.handle(ServerInput::Packet(packet), rng);
        let (mut eap, mut success, mut failed) = (None, None, false);
        while !pending.is_empty() {
            for o in std::mem::take(&mut pending) {
                match o {
                    ServerOutput::SubscriberNeeded { .. } => {
                        let subscriber = Subscriber {
                            k: K,
                            opc: OPC,
                            amf: [0x80, 0],
                            sqn: Sqn::new(self.sqn).unwrap(),
                        };
                        pending = self
                            .server
                            .handle(ServerInput::Subscriber(Some(subscriber)), rng);
                    }
                    ServerOutput::SqnUsed { sqn, .. } => self.sqn = sqn.value(),
                    ServerOutput::Send(p) => eap = Some(p),
                    ServerOutput::Success(s) => success = Some(s.keys.msk.to_vec()),
                    ServerOutput::Failure(_) => failed = true,
                    // Discarded packets, and what a resynchronisation reports.
                    _ => {}
                }
            }
        }
        let Some(eap) = eap else { return };
        match (success, self.verdict) {
            (Some(msk), Verdict::Accept) => {
                let acceptance = Acceptance {
                    cp_reply: vec![
                        ConfigAttribute::InternalIp4Address(Some(Ipv4Addr::new(10, 45, 0, 2))),
                        ConfigAttribute::InternalIp6Address(Some((
                            "2001:db8:45:1::".parse().unwrap(),
                            64,
                        ))),
                        ConfigAttribute::InternalIp4Dns(Some(Ipv4Addr::new(10, 45, 0, 1))),
                        ConfigAttribute::PCscfIp6Address(Some("2001:db8:46::2".parse().unwrap())),
                    ],
                    tsi: vec![TrafficSelector::any_ipv4()],
                    tsr: vec![TrafficSelector::any_ipv4()],
                };
                self.endpoint
                    .eap_success(spi, eap, msk, acceptance, 0x1234_5678, now, rng, out);
            }
            (Some(_), Verdict::Refuse(notify)) => {
                self.endpoint.reject(spi, notify, None, now, rng, out);
            }
            (None, _) if failed => {
                self.endpoint.reject(
                    spi,
                    NotifyType::AuthenticationFailed,
                    Some(eap),
                    now,
                    rng,
                    out,
                );
            }
            (None, _) => {
                self.endpoint.send_eap(spi, eap, now, rng, out);
            }
        }
    }
}

/// The UE and the in-test ePDG on a lossless, instant wire in virtual time; `drop`
/// picks datagrams to lose by their number (0 = the first the UE sends).
struct Pair {
    ue: Ue,
    epdg: StandIn,
    rng: StdRng,
    now: Instant,
    t0: Instant,
    to_epdg: VecDeque<(SocketAddr, Vec<u8>)>,
    to_ue: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Every non-datagram output of the UE, with its time since the start.
    events: Vec<(Duration, Output)>,
    sent_by_ue: usize,
    drop: fn(usize) -> bool,
}

impl Pair {
    fn new(profile: Profile, server_sqn: u64, verdict: Verdict) -> Pair {
        let mut rng = StdRng::seed_from_u64(7);
        let now = Instant::now();
        let identity = Identity {
            imsi: "234150999999999".into(),
            nai: NAI.into(),
            sqn_ms: Sqn::new(0).unwrap(),
        };
        Pair {
            ue: Ue::new(Arc::new(profile), identity, now),
            epdg: StandIn::new(&mut rng, server_sqn, verdict),
            rng,
            now,
            t0: now,
            to_epdg: VecDeque::new(),
            to_ue: VecDeque::new(),
            events: Vec::new(),
            sent_by_ue: 0,
            drop: |_| false,
        }
    }

    fn input(&mut self, input: Input<'_>) {
        let mut out = Vec::new();
        self.ue.handle(input, self.now, &mut self.rng, &mut out);
        for o in out {
            match o {
                Output::Transmit { to, bytes } => {
                    let n = self.sent_by_ue;
                    self.sent_by_ue += 1;
                    if !(self.drop)(n) {
                        self.to_epdg.push_back((to, bytes));
                    }
                }
                other => self.events.push((self.now - self.t0, other)),
            }
        }
    }

    fn command(&mut self, command: Command) {
        self.input(Input::Command(command));
    }

    /// Delivers everything and runs the UE's timers until `done` holds for an event, or
    /// a minute of virtual time passes.
    fn run_until(&mut self, done: impl Fn(&Output) -> bool) -> Output {
        let limit = self.now + Duration::from_secs(60);
        loop {
            if let Some((_, o)) = self.events.iter().rev().find(|(_, o)| done(o)) {
                return o.clone();
            }
            if let Some((to, bytes)) = self.to_epdg.pop_front() {
                let answers = self.epdg.receive(to, &bytes, self.now, &mut self.rng);
                self.to_ue.extend(answers);
            } else if let Some((from, bytes)) = self.to_ue.pop_front() {
                self.input(Input::Datagram {
                    from,
                    bytes: &bytes,
                });
            } else {
                let next = self.ue.poll_timeout().expect("the UE waits for nothing");
                assert!(next <= limit, "nothing happened within a minute");
                self.now = self.now.max(next);
                self.input(Input::Timeout);
            }
        }
    }

    fn attach(&mut self) -> Output {
        self.command(Command::Attach { local: ue_addr() });
        self.run_until(|o| matches!(o, Output::Attached(_) | Output::Failed(_)))
    }

    fn steps(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|(_, o)| match o {
                Output::Step(s) => Some(s.name.clone()),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn an_attach_climbs_the_ladder_reports_the_addresses_and_detaches() {
    let mut pair = Pair::new(profile(K, one_try()), 32, Verdict::Accept);
    let Output::Attached(a) = pair.attach() else {
        panic!("{:?}", pair.events);
    };
    assert_eq!(a.epdg, epdg());
    assert_eq!(a.ipv4, Some(Ipv4Addr::new(10, 45, 0, 2)));
    assert_eq!(a.ipv6, Some(("2001:db8:45:1::".parse().unwrap(), 64)));
    assert_eq!(a.dns, vec![IpAddr::V4(Ipv4Addr::new(10, 45, 0, 1))]);
    assert_eq!(
        a.pcscf,
        vec![IpAddr::V6("2001:db8:46::2".parse::<Ipv6Addr>().unwrap())]
    );
    assert_eq!(a.usim_problem, None);
    assert!(pair.ue.is_attached());
    assert_eq!(
        pair.steps(),
        [
            ladder::IKE_SA_INIT,
            ladder::FIRST_EAP_REQUEST,
            ladder::EAP_SUCCESS,
            ladder::ESTABLISHED
        ]
    );
    // The USIM took the challenge's SQN: the next attach starts from it.
    assert_eq!(pair.ue.sqn_ms().value(), pair.epdg.sqn);

    pair.command(Command::Detach);
    // The DELETE went to port 4500 behind the non-ESP marker.
    let (to, bytes) = pair.to_epdg.front().cloned().unwrap();
    assert_eq!(to, epdg_natt());
    assert_eq!(bytes[..4], NON_ESP_MARKER);
    let end = pair.run_until(|o| matches!(o, Output::Detached { .. }));
    assert_eq!(end, Output::Detached { answered: true });
    assert_eq!(pair.steps().last().unwrap(), ladder::DELETE);
    assert!(pair.ue.is_idle());
    assert_eq!(pair.ue.poll_timeout(), None);
}

#[test]
fn a_refused_attach_names_the_notify_and_leaves_the_ue_idle() {
    let mut pair = Pair::new(
        profile(K, one_try()),
        32,
        Verdict::Refuse(NotifyType::NoApnSubscription),
    );
    let Output::Failed(f) = pair.attach() else {
        panic!("{:?}", pair.events);
    };
    assert_eq!(
        f.cause,
        FailureCause::Ike(CloseReason::NotifyReceived(NotifyType::NoApnSubscription))
    );
    assert_eq!(
        pair.steps().last().unwrap(),
        "closed: the ePDG refused the attach with notify NoApnSubscription (9002)"
    );
    assert!(pair.ue.is_idle());
    // Detaching an idle UE ends at once, unanswered, with nothing sent.
    let sent = pair.sent_by_ue;
    pair.command(Command::Detach);
    assert_eq!(
        pair.events.last().map(|(_, o)| o),
        Some(&Output::Detached { answered: false })
    );
    assert_eq!(pair.sent_by_ue, sent);
}

#[test]
fn a_wrong_k_fails_with_the_usims_problem_named() {
    let mut wrong = K;
    wrong[0] ^= 1;
    let mut pair = Pair::new(profile(wrong, one_try()), 32, Verdict::Accept);
    let Output::Failed(f) = pair.attach() else {
        panic!("{:?}", pair.events);
    };
    assert_eq!(
        f.cause,
        FailureCause::Ike(CloseReason::NotifyReceived(
            NotifyType::AuthenticationFailed
        ))
    );
    assert_eq!(f.usim_problem.as_deref(), Some("USIM: AutnMacFailure"));
    assert!(f.to_string().ends_with("; USIM: AutnMacFailure"), "{f}");
}

#[test]
fn a_silent_epdg_is_no_answer_after_every_retransmission() {
    let mut p = profile(K, one_try());
    p.attach_timeout = Duration::from_secs(40);
    let mut pair = Pair::new(p, 32, Verdict::Accept);
    pair.epdg.silent = true;
    let Output::Failed(f) = pair.attach() else {
        panic!("{:?}", pair.events);
    };
    assert_eq!(f.cause, FailureCause::Ike(CloseReason::Timeout));
    let policy = RetransmitPolicy::default();
    assert_eq!(pair.sent_by_ue as u32, 1 + policy.max_retransmissions);
    // Backoff 0.5 + 1 + 2 + 4 + 8 s, then the last wait of 16 s.
    assert_eq!(pair.events.last().unwrap().0, Duration::from_millis(31_500));
    assert!(pair.ue.is_idle());
}

#[test]
fn the_attach_deadline_ends_an_attach_first() {
    let mut p = profile(K, one_try());
    p.attach_timeout = Duration::from_secs(3);
    let mut pair = Pair::new(p, 32, Verdict::Accept);
    pair.epdg.silent = true;
    let Output::Failed(f) = pair.attach() else {
        panic!("{:?}", pair.events);
    };
    assert_eq!(f.cause, FailureCause::AttachTimeout(Duration::from_secs(3)));
    assert_eq!(f.to_string(), "no attach within 3000 ms");
    assert_eq!(pair.events.last().unwrap().0, Duration::from_secs(3));
}

#[test]
fn lost_datagrams_are_retransmitted_and_the_attach_completes() {
    let mut pair = Pair::new(profile(K, one_try()), 32, Verdict::Accept);
    // The first IKE_SA_INIT and the first IKE_AUTH request are lost.
    pair.drop = |n| n == 0 || n == 2;
    assert!(
        matches!(pair.attach(), Output::Attached(_)),
        "{:?}",
        pair.events
    );
    // Two initial waits of 0.5 s.
    let attached_at = pair.events.last().unwrap().0;
    assert_eq!(attached_at, Duration::from_secs(1));
}

#[test]
fn an_unanswered_detach_is_sent_again_then_given_up() {
    let policy = DetachPolicy {
        attempts: 3,
        wait: Duration::from_secs(1),
    };
    let mut pair = Pair::new(profile(K, policy), 32, Verdict::Accept);
    assert!(matches!(pair.attach(), Output::Attached(_)));
    let sent = pair.sent_by_ue;
    pair.epdg.silent = true;
    let start = pair.now;
    pair.command(Command::Detach);
    let end = pair.run_until(|o| matches!(o, Output::Detached { .. }));
    assert_eq!(end, Output::Detached { answered: false });
    assert_eq!(pair.sent_by_ue - sent, 3);
    assert_eq!(pair.now - start, Duration::from_secs(3));
    assert!(pair.ue.is_idle());
}

#[test]
fn the_same_ue_attaches_again_with_a_fresh_sqn() {
    let mut pair = Pair::new(profile(K, one_try()), 32, Verdict::Accept);
    assert!(matches!(pair.attach(), Output::Attached(_)));
    pair.command(Command::Detach);
    pair.run_until(|o| matches!(o, Output::Detached { .. }));
    let first = pair.ue.sqn_ms();
    // A new ePDG association (new SA, new EAP conversation) with the server's SQN moved on.
    let sqn = pair.epdg.sqn;
    pair.epdg = StandIn::new(&mut pair.rng, sqn, Verdict::Accept);
    pair.events.clear();
    assert!(
        matches!(pair.attach(), Output::Attached(_)),
        "{:?}",
        pair.events
    );
    assert!(pair.ue.sqn_ms() > first);
    // An attach asked while attached fails at once and changes nothing.
    pair.command(Command::Attach { local: ue_addr() });
    assert!(matches!(
        pair.events.last(),
        Some((
            _,
            Output::Failed(Failure {
                cause: FailureCause::NotIdle,
                ..
            })
        ))
    ));
    assert!(pair.ue.is_attached());
}

#[test]
fn datagrams_from_elsewhere_and_esp_are_ignored() {
    let mut pair = Pair::new(profile(K, one_try()), 32, Verdict::Accept);
    assert!(matches!(pair.attach(), Output::Attached(_)));
    let stranger: SocketAddr = "203.0.113.9:500".parse().unwrap();
    pair.input(Input::Datagram {
        from: stranger,
        bytes: &[0; 40],
    });
    // An ESP packet (SPI not zero) on port 4500.
    pair.input(Input::Datagram {
        from: epdg_natt(),
        bytes: &[0, 0, 0x12, 0x34, 0, 0, 0, 1, 9, 9],
    });
    assert_eq!(pair.ue.ignored(), 2);
    assert!(pair.ue.is_attached());
}
