//! The responder endpoint and both SA roles back to back, in virtual time: IKE_SA_INIT
//! (cookies, INVALID_KE_PAYLOAD, the retransmission cache), EAP-only and certificate
//! IKE_AUTH, NAT-T, retransmissions, liveness and Delete.

use super::*;
use crate::ike::initiator::MAX_COOKIE_ROUNDS;
use crate::ike::initiator::{InitiatorConfig, InitiatorSa};
use crate::ike::sa::{CloseReason, Established, RetransmitPolicy};
use crate::ike::wire::DhGroupId;
use crate::ike::{DhGroup, EspSuite, SkError};
use rand::{rngs::StdRng, SeedableRng};
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Duration;

const MSK: [u8; 64] = [0x4d; 64];

fn suites(names: &[&str]) -> Vec<IkeSuite> {
    names.iter().map(|s| s.parse().unwrap()).collect()
}

fn ue_config(suites: Vec<IkeSuite>) -> InitiatorConfig {
    InitiatorConfig {
        suites,
        esp_suites: EspSuite::defaults(),
        idi: Identification::Rfc822Addr(
            "0234150999999999@nai.epc.mnc015.mcc234.3gppnetwork.org".into(),
        ),
        idr: Some(Identification::Fqdn("ims".into())),
        cp_request: vec![
            ConfigAttribute::InternalIp4Address(None),
            ConfigAttribute::InternalIp6Address(None),
            ConfigAttribute::PCscfIp4Address(None),
        ],
        tsi: vec![TrafficSelector::any_ipv4(), TrafficSelector::any_ipv6()],
        tsr: vec![TrafficSelector::any_ipv4(), TrafficSelector::any_ipv6()],
        local: "192.0.2.10:500".parse().unwrap(),
        remote: "198.51.100.1:500".parse().unwrap(),
        force_port_4500: false,
        eap_only: true,
        peer_verifier: None,
        retransmit: RetransmitPolicy::default(),
        ..InitiatorConfig::default()
    }
}

fn acceptance() -> Acceptance {
    Acceptance {
        cp_reply: vec![
            ConfigAttribute::InternalIp4Address(Some(Ipv4Addr::new(10, 45, 0, 7))),
            ConfigAttribute::InternalIp6Address(Some(("2001:db8:45:7::".parse().unwrap(), 64))),
            ConfigAttribute::PCscfIp4Address(Some(Ipv4Addr::new(10, 46, 0, 2))),
        ],
        tsi: vec![TrafficSelector::any_ipv4()],
        tsr: vec![TrafficSelector::any_ipv4()],
    }
}

/// What the ePDG application does at each EAP step.
#[derive(Clone, Copy, PartialEq)]
enum Aaa {
    Accept,
    Reject,
}

/// Sees the n-th datagram to the ePDG; returning None drops it.
type Tamper = Box<dyn FnMut(usize, Vec<u8>) -> Option<Vec<u8>>>;

/// The ePDG's address.
const EPDG: &str = "198.51.100.1:500";

/// A UE and an ePDG's endpoint wired back to back, with virtual time and a lossy,
/// tamperable link.
struct Lab {
    now: Instant,
    rng: StdRng,
    endpoint: Endpoint,
    /// Our SPI of the UE's IKE SA at the ePDG, once made.
    spi: Option<u64>,
    ue: InitiatorSa,
    ue_events: Vec<Event>,
    /// The endpoint's events about the UE's SA, its discards as `Event::Discarded`.
    epdg_events: Vec<Event>,
    to_epdg: VecDeque<(Vec<u8>, bool)>,
    to_ue: VecDeque<(Vec<u8>, bool)>,
    /// Where the ePDG sees the UE (differs from the UE's own address behind a NAT).
    ue_seen_at: SocketAddr,
    ue_msk: Vec<u8>,
    aaa: Aaa,
    sent_to_epdg: usize,
    /// The port of each datagram the ePDG sent: 4500 or not.
    epdg_ports: Vec<bool>,
    /// Called on each datagram to the ePDG; returning None drops it.
    tamper: Tamper,
}

impl Lab {
    fn new(ue: InitiatorConfig, epdg: ResponderConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(42);
        let now = Instant::now();
        let mut out = Vec::new();
        let ue_seen_at = ue.local;
        let ue = InitiatorSa::start(ue, now, &mut rng, &mut out).unwrap();
        let mut lab = Lab {
            now,
            endpoint: Endpoint::new(epdg, &mut rng),
            rng,
            spi: None,
            ue,
            ue_events: Vec::new(),
            epdg_events: Vec::new(),
            to_epdg: VecDeque::new(),
            to_ue: VecDeque::new(),
            ue_seen_at,
            ue_msk: MSK.to_vec(),
            aaa: Aaa::Accept,
            sent_to_epdg: 0,
            epdg_ports: Vec::new(),
            tamper: Box::new(|_, b| Some(b)),
        };
        lab.route_ue(out);
        lab
    }

    /// The UE's SA at the ePDG.
    fn epdg(&self) -> &ResponderSa {
        self.spi
            .and_then(|spi| self.endpoint.sa(spi))
            .expect("the UE's IKE SA at the ePDG")
    }

    fn route_ue(&mut self, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Send { bytes, port_4500 } => {
                    self.sent_to_epdg += 1;
                    if let Some(b) = (self.tamper)(self.sent_to_epdg, bytes) {
                        self.to_epdg.push_back((b, port_4500));
                    }
                }
                Output::Event(e) => self.ue_events.push(e),
            }
        }
    }

    /// Delivers one datagram to the endpoint as the UE sent it (from `ue_seen_at`).
    fn deliver(&mut self, bytes: &[u8], via_4500: bool) -> Vec<EndpointOutput> {
        let mut remote = self.ue_seen_at;
        let mut local: SocketAddr = EPDG.parse().unwrap();
        if via_4500 {
            remote.set_port(4500);
            local.set_port(4500);
        }
        let mut out = Vec::new();
        let now = self.now;
        self.endpoint
            .handle(bytes, remote, local, via_4500, now, &mut self.rng, &mut out);
        out
    }

    fn route_epdg(&mut self, out: Vec<EndpointOutput>) {
        for o in out {
            match o {
                EndpointOutput::Transmit(t) => {
                    assert_eq!(t.remote.ip(), self.ue_seen_at.ip());
                    self.epdg_ports.push(t.natt);
                    self.to_ue.push_back((t.bytes, t.natt))
                }
                EndpointOutput::Created { spi } => {
                    assert_eq!(self.spi, None, "one IKE SA for the UE");
                    self.spi = Some(spi);
                }
                EndpointOutput::Event { event, .. } => self.epdg_events.push(event),
                EndpointOutput::Discarded { reason, .. } => {
                    self.epdg_events.push(Event::Discarded(reason))
                }
            }
        }
    }

    /// Delivers what is in flight to the ePDG only.
    fn run_epdg_only(&mut self) {
        let to_ue = std::mem::take(&mut self.to_ue);
        self.run_with(true);
        let answers = std::mem::replace(&mut self.to_ue, to_ue);
        self.to_ue.extend(answers);
    }

    /// Delivers everything in flight, with the applications reacting, until quiet.
    fn run(&mut self) {
        self.run_with(false)
    }

    fn run_with(&mut self, epdg_only: bool) {
        for _ in 0..100 {
            if let Some((b, via_4500)) = self.to_epdg.pop_front() {
                let mut out = self.deliver(&b, via_4500);
                self.epdg_app(&mut out);
                self.route_epdg(out);
            } else if epdg_only {
                return;
            } else if let Some((b, via_4500)) = self.to_ue.pop_front() {
                let mut out = Vec::new();
                self.ue
                    .handle(&b, via_4500, self.now, &mut self.rng, &mut out);
                self.ue_app(&mut out);
                self.route_ue(out);
            } else {
                return;
            }
        }
        panic!("the exchange did not settle");
    }

    fn epdg_app(&mut self, out: &mut Vec<EndpointOutput>) {
        let mut more = Vec::new();
        let now = self.now;
        for o in out.iter() {
            let EndpointOutput::Event { spi, event } = o else {
                continue;
            };
            match event {
                Event::AuthRequested(_) => {
                    // The AAA's EAP-Request/AKA-Challenge, opaque here.
                    assert!(self.endpoint.send_eap(
                        *spi,
                        vec![1, 7, 0, 8, 23, 1, 0, 0],
                        now,
                        &mut self.rng,
                        &mut more
                    ));
                }
                Event::EapResponse(_) if self.aaa == Aaa::Accept => {
                    assert!(self.endpoint.eap_success(
                        *spi,
                        crate::eap::EapRepr::success_bytes(7).to_vec(),
                        MSK.to_vec(),
                        acceptance(),
                        0xe0e0_e0e0,
                        now,
                        &mut self.rng,
                        &mut more,
                    ));
                }
                Event::EapResponse(_) => {
                    assert!(self.endpoint.reject(
                        *spi,
                        NotifyType::AuthenticationFailed,
                        Some(crate::eap::EapRepr::failure_bytes(7).to_vec()),
                        now,
                        &mut self.rng,
                        &mut more,
                    ));
                }
                _ => {}
            }
        }
        out.extend(more);
    }

    fn ue_app(&mut self, out: &mut Vec<Output>) {
        let mut more = Vec::new();
        for o in out.iter() {
            if let Output::Event(Event::EapRequest(eap)) = o {
                match eap.first() {
                    Some(1) => {
                        assert!(self.ue.send_eap(
                            vec![2, eap[1], 0, 8, 23, 1, 0, 0],
                            self.now,
                            &mut self.rng,
                            &mut more,
                        ));
                    }
                    Some(3) => {
                        let msk = self.ue_msk.clone();
                        assert!(self
                            .ue
                            .complete_eap(msk, self.now, &mut self.rng, &mut more));
                    }
                    _ => {}
                }
            }
        }
        out.extend(more);
    }

    /// Advances virtual time to the next deadline of either side and fires it.
    fn tick(&mut self) -> bool {
        let next = [self.ue.poll_timeout(), self.endpoint.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(t) = next else {
            return false;
        };
        self.now = self.now.max(t);
        let mut out = Vec::new();
        self.ue.handle_timeout(self.now, &mut self.rng, &mut out);
        self.route_ue(out);
        let mut out = Vec::new();
        let now = self.now;
        self.endpoint.handle_timeout(now, &mut self.rng, &mut out);
        self.route_epdg(out);
        true
    }

    fn established(events: &[Event]) -> Option<&Established> {
        events.iter().find_map(|e| match e {
            Event::Established(x) => Some(&**x),
            _ => None,
        })
    }

    fn closed(events: &[Event]) -> Option<&CloseReason> {
        events.iter().find_map(|e| match e {
            Event::Closed(r) => Some(r),
            _ => None,
        })
    }

    fn discards(events: &[Event]) -> Vec<&Discard> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Discarded(d) => Some(d),
                _ => None,
            })
            .collect()
    }
}

fn assert_both_established(lab: &Lab) {
    let ue = Lab::established(&lab.ue_events).expect("UE established");
    let epdg = Lab::established(&lab.epdg_events).expect("ePDG established");
    assert_eq!(ue.child.keys, epdg.child.keys);
    assert_eq!(ue.child.suite, epdg.child.suite);
    assert_eq!(ue.child.inbound_spi, epdg.child.outbound_spi);
    assert_eq!(ue.child.outbound_spi, epdg.child.inbound_spi);
    assert_eq!(ue.child.outbound_spi, 0xe0e0_e0e0);
    let cp = ue.cp_reply.as_ref().unwrap();
    assert_eq!(cp.cfg_type, CfgType::CfgReply);
    assert_eq!(cp.attributes, acceptance().cp_reply);
    assert_eq!(ue.child.tsi, acceptance().tsi);
    assert!(!lab.epdg().is_half_open());
}

#[test]
fn ue_attaches_through_eap_only_ike_auth() {
    let mut lab = Lab::new(ue_config(IkeSuite::defaults()), ResponderConfig::default());
    lab.run();
    assert_both_established(&lab);
    assert!(!lab.ue.uses_port_4500());
    assert!(!lab.epdg().nat_detected());
    assert_eq!(lab.ue.keys(), Some(lab.epdg().keys()));
    // INIT, IKE_AUTH (identities), EAP response, AUTH.
    assert_eq!(lab.sent_to_epdg, 4);
    assert!(Lab::discards(&lab.epdg_events).is_empty());
    assert_eq!(lab.endpoint.half_open(), 0);
    // EAP-only: the ePDG echoes the IDr the UE sent (the APN).
    let asked = ue_config(IkeSuite::defaults()).idr;
    assert_eq!(lab.ue.responder_identity(), asked.as_ref());
}

#[test]
fn every_suite_and_group_attaches() {
    for name in [
        "aes128gcm16-prfsha1-curve25519",
        "aes256-sha256-prfsha256-modp2048",
        "aes128-sha1-prfsha1-ecp256",
    ] {
        let mut lab = Lab::new(ue_config(suites(&[name])), ResponderConfig::default());
        lab.run();
        assert_both_established(&lab);
    }
}

#[test]
fn an_epdg_with_a_certificate_authenticates_with_a_signature() {
    let signer = crate::ike::auth::tests::signer();
    let pinned = crate::ike::auth::PinnedEcdsaP256Key(signer.public_key().to_vec());
    let pinned_again = crate::ike::auth::PinnedEcdsaP256Key(signer.public_key().to_vec());
    let epdg = ResponderConfig {
        signer: Some(Arc::new(signer)),
        ..ResponderConfig::default()
    };
    let ue = InitiatorConfig {
        eap_only: false,
        peer_verifier: Some(Arc::new(pinned)),
        ..ue_config(IkeSuite::defaults())
    };
    let mut lab = Lab::new(ue, epdg.clone());
    lab.run();
    assert_both_established(&lab);
    // Signing, the ePDG names itself (the identity its certificate names) in IDr, not
    // the APN the UE asked for; the AUTH after EAP covers that IDr.
    assert_eq!(lab.ue.responder_identity(), Some(&epdg.identity));
    assert_ne!(
        ue_config(IkeSuite::defaults()).idr.as_ref(),
        Some(&epdg.identity)
    );

    // A UE that pins another key refuses the ePDG.
    let other = crate::ike::auth::tests::signer();
    let ue = InitiatorConfig {
        eap_only: false,
        peer_verifier: Some(Arc::new(crate::ike::auth::PinnedEcdsaP256Key(
            other.public_key().to_vec(),
        ))),
        ..ue_config(IkeSuite::defaults())
    };
    let mut lab = Lab::new(ue, epdg.clone());
    lab.run();
    assert_eq!(
        Lab::closed(&lab.ue_events),
        Some(&CloseReason::PeerNotAuthenticated)
    );

    // An ePDG that does not take EAP-only signs even for a UE that offers it (as
    // strongSwan always does), naming itself in IDr.
    let signing = ResponderConfig {
        accept_eap_only: false,
        ..epdg.clone()
    };
    let ue = InitiatorConfig {
        eap_only: true,
        peer_verifier: Some(Arc::new(pinned_again)),
        ..ue_config(IkeSuite::defaults())
    };
    let mut lab = Lab::new(ue, signing.clone());
    lab.run();
    assert_both_established(&lab);
    assert_eq!(lab.ue.responder_identity(), Some(&signing.identity));
    // ... and one that takes it answers such a UE without a signature: a UE that
    // has no verifier and offers EAP-only is fine with that.
    let mut lab = Lab::new(ue_config(IkeSuite::defaults()), epdg.clone());
    lab.run();
    assert_both_established(&lab);

    // An ePDG without a certificate refuses a UE that does not offer EAP-only.
    let ue = InitiatorConfig {
        eap_only: false,
        ..ue_config(IkeSuite::defaults())
    };
    let mut lab = Lab::new(ue, ResponderConfig::default());
    lab.run();
    assert_eq!(
        Lab::closed(&lab.ue_events),
        Some(&CloseReason::NotifyReceived(
            NotifyType::AuthenticationFailed
        ))
    );
}

#[test]
fn a_nat_moves_the_ue_to_port_4500() {
    let mut lab = Lab::new(ue_config(IkeSuite::defaults()), ResponderConfig::default());
    lab.ue_seen_at = "203.0.113.5:61000".parse().unwrap();
    lab.run();
    assert_both_established(&lab);
    assert!(lab.ue.uses_port_4500());
    assert!(lab.epdg().nat_detected());
    // The IKE_SA_INIT response on 500, every IKE_AUTH response on 4500.
    assert_eq!(lab.epdg_ports, vec![false, true, true, true]);
}

/// The IKE_SA_INIT requests' KE groups, the first one included.
fn record_ke_groups(lab: &mut Lab) -> Arc<std::sync::Mutex<Vec<DhGroupId>>> {
    let groups = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = groups.clone();
    let ke_group = |b: &[u8]| {
        IkeMessage::parse(b).ok().and_then(|m| {
            if m.exchange_type != ExchangeType::IkeSaInit {
                return None;
            }
            m.find(|p| match p {
                Payload::Ke(k) => Some(k.dh_group),
                _ => None,
            })
        })
    };
    seen.lock().unwrap().extend(ke_group(&lab.to_epdg[0].0));
    lab.tamper = Box::new(move |_, b| {
        seen.lock().unwrap().extend(ke_group(&b));
        Some(b)
    });
    groups
}

#[test]
fn a_ke_in_an_acceptable_group_is_taken_without_invalid_ke_payload() {
    // strongSwan's default offer: KE in Curve25519, ECP-256 further down. We prefer
    // ECP-256 but accept Curve25519: no INVALID_KE_PAYLOAD round trip.
    let offer = suites(&[
        "aes128-sha256-prfsha256-curve25519",
        "aes128-sha256-prfsha256-ecp256",
    ]);
    let mut lab = Lab::new(ue_config(offer), ResponderConfig::default());
    let groups = record_ke_groups(&mut lab);
    lab.run();
    assert_both_established(&lab);
    assert_eq!(*groups.lock().unwrap(), vec![DhGroupId::Curve25519]);
    assert_eq!(lab.ue.keys().unwrap().suite().dh, DhGroup::Curve25519);
}

#[test]
fn invalid_ke_payload_names_our_group_and_the_ue_retries() {
    let offer = suites(&[
        "aes128-sha256-prfsha256-modp2048",
        "aes256gcm16-prfsha256-ecp256",
    ]);
    // This ePDG does not take MODP-2048, so the UE's first KE is in a wrong group.
    let responder = ResponderConfig {
        suites: suites(&["aes256gcm16-prfsha256-ecp256"]),
        ..ResponderConfig::default()
    };
    let mut lab = Lab::new(ue_config(offer), responder);
    let first_ke_group = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = first_ke_group.clone();
    let ke_group = |b: &[u8]| {
        IkeMessage::parse(b).ok().and_then(|m| {
            m.find(|p| match p {
                Payload::Ke(k) => Some(k.dh_group),
                _ => None,
            })
        })
    };
    // The first IKE_SA_INIT is already on its way.
    seen.lock().unwrap().extend(ke_group(&lab.to_epdg[0].0));
    lab.tamper = Box::new(move |_, b| {
        seen.lock().unwrap().extend(ke_group(&b));
        Some(b)
    });
    lab.run();
    assert_both_established(&lab);
    assert_eq!(
        *first_ke_group.lock().unwrap(),
        vec![DhGroupId::Modp2048, DhGroupId::Ecp256]
    );
    assert_eq!(lab.ue.keys().unwrap().suite().dh, DhGroup::Ecp256);
}

#[test]
fn above_the_half_open_threshold_a_cookie_is_required() {
    let config = ResponderConfig {
        cookie_threshold: 10,
        ..ResponderConfig::default()
    };
    let mut lab = Lab::new(ue_config(IkeSuite::defaults()), config);
    fill_half_open(&mut lab, 10);
    let cookies = Arc::new(std::sync::Mutex::new(0));
    let count = cookies.clone();
    lab.tamper = Box::new(move |_, b| {
        if let Ok(m) = IkeMessage::parse(&b) {
            if m.notifies().any(|n| n.notify_type == NotifyType::Cookie) {
                *count.lock().unwrap() += 1;
            }
        }
        Some(b)
    });
    lab.run();
    assert_both_established(&lab);
    assert_eq!(
        *cookies.lock().unwrap(),
        1,
        "one IKE_SA_INIT carried the cookie"
    );
    assert_eq!(
        lab.endpoint.half_open(),
        10,
        "the others' SAs still half-open"
    );
    assert_eq!(lab.sent_to_epdg, 5);
}

#[test]
fn no_acceptable_proposal_is_no_proposal_chosen() {
    let mut lab = Lab::new(
        ue_config(suites(&["aes128-sha1-prfsha1-modp1024"])),
        ResponderConfig::default(),
    );
    lab.run();
    assert!(
        lab.spi.is_none() && lab.endpoint.is_empty(),
        "no state at the ePDG"
    );
    assert_eq!(
        Lab::closed(&lab.ue_events),
        Some(&CloseReason::NotifyReceived(NotifyType::NoProposalChosen))
    );
}

#[test]
fn a_wrong_msk_is_authentication_failed_on_both_sides() {
    let mut lab = Lab::new(ue_config(IkeSuite::defaults()), ResponderConfig::default());
    lab.ue_msk = vec![0x4e; 64];
    lab.run();
    assert!(Lab::established(&lab.epdg_events).is_none());
    assert_eq!(
        Lab::closed(&lab.epdg_events),
        Some(&CloseReason::NotifySent(NotifyType::AuthenticationFailed))
    );
    assert_eq!(
        Lab::closed(&lab.ue_events),
        Some(&CloseReason::NotifyReceived(
            NotifyType::AuthenticationFailed
        ))
    );
}

#[test]
fn an_aaa_reject_sends_eap_failure_and_a_notify() {
    let mut lab = Lab::new(ue_config(IkeSuite::defaults()), ResponderConfig::default());
    lab.aaa = Aaa::Reject;
    lab.run();
    assert!(lab
        .ue_events
        .iter()
        .any(|e| matches!(e, Event::EapRequest(p) if p.first() == Some(&4))));
    assert_eq!(
        Lab::closed(&lab.ue_events),
        Some(&CloseReason::NotifyReceived(
            NotifyType::AuthenticationFailed
        ))
    );
    assert_eq!(
        Lab::closed(&lab.epdg_events),
        Some(&CloseReason::NotifySent(NotifyType::AuthenticationFailed))
    );
}

#[test]
fn a_bad_integrity_checksum_is_dropped_and_the_retransmission_succeeds() {
    let mut lab = Lab::new(ue_config(IkeSuite::defaults()), ResponderConfig::default());
    lab.tamper = Box::new(|n, mut b| {
        if n == 2 {
            let last = b.len() - 1;
            b[last] ^= 1;
        }
        Some(b)
    });
    lab.run();
    assert_eq!(
        Lab::discards(&lab.epdg_events),
        vec![&Discard::Sk(SkError::IntegrityCheckFailed)]
    );
    assert!(Lab::established(&lab.ue_events).is_none());
    assert!(lab.tick(), "the UE has a retransmission due");
    lab.run();
    assert_both_established(&lab);
}

#[test]
fn a_replayed_request_is_answered_from_the_cache_without_effect() {
    let mut lab = Lab::new(ue_config(IkeSuite::defaults()), ResponderConfig::default());
    // The IKE_SA_INIT request is already on its way; the tamper hook keeps the rest.
    let init = lab.to_epdg[0].0.clone();
    let copies: Arc<std::sync::Mutex<Vec<Vec<u8>>>> = Arc::default();
    let keep = copies.clone();
    lab.tamper = Box::new(move |_, b| {
        keep.lock().unwrap().push(b.clone());
        Some(b)
    });
    lab.run();
    assert_both_established(&lab);
    let eap_responses = |l: &Lab| {
        l.epdg_events
            .iter()
            .filter(|e| matches!(e, Event::EapResponse(_)))
            .count()
    };
    assert_eq!(eap_responses(&lab), 1);
    // Replay the UE's EAP response (message ID 2): an old message ID.
    let replay = copies.lock().unwrap()[1].clone();
    let out = lab.deliver(&replay, false);
    assert!(matches!(
        out.as_slice(),
        [EndpointOutput::Discarded {
            spi: Some(_),
            reason: Discard::UnexpectedMessageId(2)
        }]
    ));
    // The last request (AUTH) replayed: the cached final response, byte for byte.
    let last = copies.lock().unwrap()[2].clone();
    let again = lab.deliver(&last, false);
    let again2 = lab.deliver(&last, false);
    match (&again[..], &again2[..]) {
        ([EndpointOutput::Transmit(a)], [EndpointOutput::Transmit(b)]) => assert_eq!(a, b),
        other => panic!("{other:?}"),
    }
    assert_eq!(eap_responses(&lab), 1);
    // A late copy of the IKE_SA_INIT request, once IKE_AUTH is done, is dropped: no
    // answer, no second SA.
    let out = lab.deliver(&init, false);
    assert!(matches!(
        out.as_slice(),
        [EndpointOutput::Discarded {
            spi: Some(_),
            reason: Discard::UnexpectedMessageId(0)
        }]
    ));
    assert_eq!(lab.endpoint.len(), 1);
}

#[test]
fn a_lost_ike_sa_init_response_is_resent_from_the_cache() {
    let mut lab = Lab::new(ue_config(IkeSuite::defaults()), ResponderConfig::default());
    let init = lab.to_epdg[0].0.clone();
    // Deliver the request, lose the response.
    lab.run_epdg_only();
    let first = lab.to_ue.pop_front().unwrap().0;
    assert!(lab.to_ue.is_empty());
    // The UE times out and resends; the ePDG's SA answers from its cache.
    assert!(lab.tick());
    assert_eq!(lab.to_epdg.front().map(|d| &d.0), Some(&init));
    lab.run_epdg_only();
    assert_eq!(lab.to_ue.front().map(|d| &d.0), Some(&first));
    lab.run();
    assert_both_established(&lab);
}

#[test]
fn an_unanswered_request_is_retransmitted_with_backoff_then_times_out() {
    let mut lab = Lab::new(ue_config(IkeSuite::defaults()), ResponderConfig::default());
    // Everything after IKE_SA_INIT is lost.
    lab.tamper = Box::new(|n, b| (n == 1).then_some(b));
    lab.run();
    let start = lab.now;
    let mut deadlines = Vec::new();
    while Lab::closed(&lab.ue_events).is_none() && lab.tick() {
        deadlines.push(lab.now - start);
    }
    let policy = RetransmitPolicy::default();
    // 1 + 5 transmissions of IKE_AUTH, the last deadline ending the SA.
    assert_eq!(lab.sent_to_epdg, 2 + policy.max_retransmissions as usize);
    assert_eq!(deadlines.len(), policy.max_retransmissions as usize + 1);
    assert_eq!(deadlines[0], policy.initial);
    assert_eq!(deadlines[1], policy.initial * 3);
    assert_eq!(Lab::closed(&lab.ue_events), Some(&CloseReason::Timeout));
}

proptest::proptest! {
    #[test]
    fn garbage_and_mutated_datagrams_never_panic_either_side(
        garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        at in proptest::prelude::any::<usize>(),
        x in 1u8..,
    ) {
        let mut lab = Lab::new(ue_config(IkeSuite::defaults()), ResponderConfig::default());
        let copies: Arc<std::sync::Mutex<Vec<Vec<u8>>>> = Arc::default();
        let keep = copies.clone();
        lab.tamper = Box::new(move |_, b| {
            keep.lock().unwrap().push(b.clone());
            Some(b)
        });
        lab.run();
        let now = lab.now;
        let mut out = lab.deliver(&garbage, false);
        let mut ue_out = Vec::new();
        lab.ue.handle(&garbage, true, now, &mut lab.rng, &mut ue_out);
        for mut d in copies.lock().unwrap().clone() {
            let i = at % d.len();
            d[i] ^= x;
            out.extend(lab.deliver(&d, false));
            lab.ue.handle(&d, false, now, &mut lab.rng, &mut ue_out);
        }
        let epdg_closed = out
            .iter()
            .any(|o| matches!(o, EndpointOutput::Event { event: Event::Closed(_), .. }));
        let ue_closed = ue_out
            .iter()
            .any(|o| matches!(o, Output::Event(Event::Closed(_))));
        proptest::prop_assert!(!epdg_closed && !ue_closed);
        proptest::prop_assert_eq!(lab.endpoint.len(), 1);
    }
}

#[test]
fn a_responder_that_keeps_asking_for_cookies_is_given_up_on() {
    let mut lab = Lab::new(
        ue_config(IkeSuite::defaults()),
        ResponderConfig {
            cookie_threshold: 0,
            ..ResponderConfig::default()
        },
    );
    // Every cookie the UE returns is damaged, so the ePDG keeps asking.
    lab.tamper = Box::new(|_, b| {
        let mut m = IkeMessage::parse(&b).ok()?;
        if let Some(Payload::Notify(n)) = m.payloads.first_mut() {
            if n.notify_type == NotifyType::Cookie {
                n.data[5] ^= 1;
            }
        }
        Some(m.to_bytes())
    });
    lab.run();
    assert!(lab.spi.is_none() && lab.endpoint.is_empty());
    assert_eq!(
        Lab::closed(&lab.ue_events),
        Some(&CloseReason::NotifyReceived(NotifyType::Cookie))
    );
    assert_eq!(lab.sent_to_epdg, 1 + MAX_COOKIE_ROUNDS as usize);
}

#[test]
fn a_ue_that_never_finishes_ike_auth_is_dropped_after_the_half_open_timeout() {
    let mut lab = Lab::new(
        ue_config(IkeSuite::defaults()),
        ResponderConfig {
            half_open_timeout: Duration::from_secs(30),
            ..ResponderConfig::default()
        },
    );
    let start = lab.now;
    // The UE goes silent after IKE_SA_INIT.
    lab.tamper = Box::new(|_, _| None);
    lab.run();
    assert!(lab.epdg().is_half_open());
    assert_eq!(lab.endpoint.half_open(), 1);
    let deadline = lab.endpoint.poll_timeout().unwrap();
    assert_eq!(deadline - start, Duration::from_secs(30));
    let mut out = Vec::new();
    lab.endpoint
        .handle_timeout(deadline - Duration::from_millis(1), &mut lab.rng, &mut out);
    assert!(out.is_empty());
    lab.endpoint
        .handle_timeout(deadline, &mut lab.rng, &mut out);
    assert!(matches!(
        out.as_slice(),
        [EndpointOutput::Event {
            event: Event::Closed(CloseReason::Timeout),
            ..
        }]
    ));
    // Gone: no SA, nothing half-open, no deadline.
    assert!(lab.endpoint.is_empty());
    assert_eq!(lab.endpoint.half_open(), 0);
    assert_eq!(lab.endpoint.poll_timeout(), None);
    // A late answer from the application goes nowhere.
    let mut out = Vec::new();
    let spi = lab.spi.unwrap();
    assert!(!lab
        .endpoint
        .send_eap(spi, vec![1, 1, 0, 4], deadline, &mut lab.rng, &mut out));
    assert!(out.is_empty());
}

#[test]
fn the_epdg_deletes_an_established_sa() {
    let mut lab = Lab::new(ue_config(IkeSuite::defaults()), ResponderConfig::default());
    lab.run();
    assert_both_established(&lab);
    assert_eq!(lab.endpoint.poll_timeout(), None);
    let mut out = Vec::new();
    let (spi, now) = (lab.spi.unwrap(), lab.now);
    lab.endpoint.delete(spi, now, &mut lab.rng, &mut out);
    lab.route_epdg(out);
    assert!(lab.endpoint.is_empty());
    lab.run();
    assert_eq!(Lab::closed(&lab.epdg_events), Some(&CloseReason::Deleted));
    assert_eq!(
        Lab::closed(&lab.ue_events),
        Some(&CloseReason::DeletedByPeer)
    );
}

#[test]
fn liveness_checks_and_delete_after_attach() {
    let config = ResponderConfig {
        liveness_interval: Some(Duration::from_secs(20)),
        ..ResponderConfig::default()
    };
    let mut lab = Lab::new(ue_config(IkeSuite::defaults()), config);
    lab.run();
    assert_both_established(&lab);
    let established = lab.now;
    // Two liveness checks, exactly one interval apart, both answered.
    for n in 1..=2 {
        assert_eq!(
            lab.endpoint.poll_timeout(),
            Some(established + Duration::from_secs(20 * n))
        );
        assert!(lab.tick());
        lab.run();
        let alive = |events: &[Event]| events.iter().filter(|e| matches!(e, Event::Alive)).count();
        assert_eq!(alive(&lab.epdg_events), n as usize);
        assert_eq!(alive(&lab.ue_events), n as usize);
    }
    let mut out = Vec::new();
    lab.ue.delete(lab.now, &mut lab.rng, &mut out);
    lab.route_ue(out);
    lab.run();
    assert_eq!(Lab::closed(&lab.ue_events), Some(&CloseReason::Deleted));
    assert_eq!(
        Lab::closed(&lab.epdg_events),
        Some(&CloseReason::DeletedByPeer)
    );
    assert!(lab.endpoint.is_empty());
    assert_eq!(lab.endpoint.poll_timeout(), None);
}

#[test]
fn an_unanswered_liveness_check_ends_the_sa() {
    let config = ResponderConfig {
        liveness_interval: Some(Duration::from_secs(20)),
        ..ResponderConfig::default()
    };
    let mut lab = Lab::new(ue_config(IkeSuite::defaults()), config);
    lab.run();
    assert_both_established(&lab);
    // The UE is gone: nothing reaches it any more.
    while lab.tick() {
        lab.to_ue.clear();
        if Lab::closed(&lab.epdg_events).is_some() {
            break;
        }
    }
    assert_eq!(Lab::closed(&lab.epdg_events), Some(&CloseReason::Timeout));
    assert!(lab.endpoint.is_empty());
}

/// Makes `n` half-open IKE SAs of other UEs at the lab's endpoint.
fn fill_half_open(lab: &mut Lab, n: u8) {
    for i in 0..n {
        let mut config = ue_config(IkeSuite::defaults());
        config.local = SocketAddr::new(Ipv4Addr::new(192, 0, 2, 100 + i).into(), 500);
        let mut out = Vec::new();
        let now = lab.now;
        InitiatorSa::start(config.clone(), now, &mut lab.rng, &mut out).unwrap();
        let Some(Output::Send { bytes, .. }) = out.first() else {
            panic!("{out:?}")
        };
        let mut answer = Vec::new();
        let local = EPDG.parse().unwrap();
        lab.endpoint.handle(
            bytes,
            config.local,
            local,
            false,
            now,
            &mut lab.rng,
            &mut answer,
        );
        assert!(matches!(answer[0], EndpointOutput::Created { .. }));
    }
    assert_eq!(lab.endpoint.half_open(), usize::from(n));
}

#[test]
fn a_retransmitted_ike_sa_init_gets_the_same_answer_and_no_second_sa() {
    let mut lab = Lab::new(ue_config(IkeSuite::defaults()), ResponderConfig::default());
    let init = lab.to_epdg[0].0.clone();
    let first = lab.deliver(&init, false);
    let again = lab.deliver(&init, false);
    let answer = |out: &[EndpointOutput]| {
        out.iter()
            .find_map(|o| match o {
                EndpointOutput::Transmit(t) => Some(t.clone()),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(answer(&first), answer(&again));
    assert!(matches!(first[0], EndpointOutput::Created { .. }));
    assert!(again
        .iter()
        .all(|o| !matches!(o, EndpointOutput::Created { .. })));
    assert_eq!(lab.endpoint.len(), 1);
    assert_eq!(lab.endpoint.stats().init_retransmissions, 1);
    // From another address, the same request is another peer's: a new SA.
    lab.ue_seen_at = "203.0.113.5:500".parse().unwrap();
    let other = lab.deliver(&init, false);
    assert!(matches!(other[0], EndpointOutput::Created { .. }));
    assert_eq!(lab.endpoint.len(), 2);
    assert_eq!(lab.endpoint.half_open(), 2);
}

#[test]
fn a_datagram_for_an_unknown_spi_is_dropped() {
    let mut lab = Lab::new(ue_config(IkeSuite::defaults()), ResponderConfig::default());
    lab.run();
    assert_both_established(&lab);
    let mut bytes = lab.to_epdg.pop_front().map(|d| d.0).unwrap_or_else(|| {
        // Any message of the UE's SA, its responder SPI changed.
        let m = IkeMessage {
            initiator_spi: lab.ue.initiator_spi(),
            responder_spi: lab.ue.responder_spi(),
            exchange_type: ExchangeType::Informational,
            flags: Flags {
                initiator: true,
                ..Flags::default()
            },
            message_id: 9,
            payloads: vec![],
        };
        m.to_bytes()
    });
    bytes[8] ^= 0xff;
    let out = lab.deliver(&bytes, false);
    assert!(matches!(
        out.as_slice(),
        [EndpointOutput::Discarded {
            spi: None,
            reason: Discard::WrongSpi
        }]
    ));
    assert_eq!(lab.endpoint.stats().unknown_spi, 1);
    // Shorter than an IKE header: dropped by the checked view.
    let out = lab.deliver(&bytes[..20], false);
    assert!(matches!(
        out.as_slice(),
        [EndpointOutput::Discarded {
            reason: Discard::Wire(_),
            ..
        }]
    ));
}

/// The CHILD_SAs both sides hold now, which must be the same SA.
fn one_child(lab: &Lab) -> (ChildSa, ChildSa) {
    let ue: Vec<ChildSa> = lab.ue.children().cloned().collect();
    let epdg: Vec<ChildSa> = lab.epdg().children().cloned().collect();
    assert_eq!((ue.len(), epdg.len()), (1, 1), "{ue:?} {epdg:?}");
    assert_eq!(ue[0].keys, epdg[0].keys);
    assert_eq!(ue[0].inbound_spi, epdg[0].outbound_spi);
    assert_eq!(ue[0].outbound_spi, epdg[0].inbound_spi);
    assert_eq!((&ue[0].tsi, &ue[0].tsr), (&epdg[0].tsi, &epdg[0].tsr));
    (ue[0].clone(), epdg[0].clone())
}

fn rekeyed(events: &[Event]) -> Vec<(u32, u32)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ChildSaRekeyed { replaces, child } => Some((*replaces, child.inbound_spi)),
            _ => None,
        })
        .collect()
}

fn deleted(events: &[Event]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ChildSaDeleted { inbound_spi, .. } => Some(*inbound_spi),
            _ => None,
        })
        .collect()
}

/// RFC 7296 section 1.3: a UE's CREATE_CHILD_SA rekeys are accepted (they used to get
/// NO_ADDITIONAL_SAS), and the ePDG's own rekeys are answered by the UE's SA.
#[test]
fn a_ue_and_the_epdg_rekey_the_child_sa_and_the_ike_sa() {
    let mut lab = Lab::new(ue_config(IkeSuite::defaults()), ResponderConfig::default());
    lab.run();
    assert_both_established(&lab);
    let (ue, epdg) = one_child(&lab);

    // The UE rekeys its CHILD_SA: the new one replaces the old one on both sides, which
    // is deleted after.
    let mut out = Vec::new();
    assert!(lab
        .ue
        .rekey_child_sa(ue.inbound_spi, lab.now, &mut lab.rng, &mut out));
    lab.route_ue(out);
    lab.run();
    let (ue2, epdg2) = one_child(&lab);
    assert_ne!(ue2.keys, ue.keys);
    assert_eq!(ue2.tsi, acceptance().tsi, "the selectors stay");
    assert_eq!(
        rekeyed(&lab.ue_events),
        vec![(ue.inbound_spi, ue2.inbound_spi)]
    );
    assert_eq!(
        rekeyed(&lab.epdg_events),
        vec![(epdg.inbound_spi, epdg2.inbound_spi)]
    );
    assert_eq!(deleted(&lab.ue_events), vec![ue.inbound_spi]);
    assert_eq!(deleted(&lab.epdg_events), vec![epdg.inbound_spi]);
    let spi = lab.spi.unwrap();
    assert_eq!(lab.endpoint.esp_owner(epdg2.inbound_spi), Some(spi));

    // The ePDG rekeys it back: keys still named after the UE's IKE_SA_INIT.
    let mut out = Vec::new();
    let now = lab.now;
    assert!(lab
        .endpoint
        .rekey_child_sa(spi, epdg2.inbound_spi, now, &mut lab.rng, &mut out));
    lab.route_epdg(out);
    lab.run();
    let (ue3, _) = one_child(&lab);
    assert_ne!(ue3.keys, ue2.keys);
    assert_eq!(ue3.tsi, acceptance().tsi);
    let (ue_in, ue_out) = crate::esp::child_sa_pair(&ue3, crate::esp::IkeRole::Initiator).unwrap();
    let epdg3 = lab.epdg().children().next().unwrap().clone();
    let (mut epdg_in, mut epdg_out) =
        crate::esp::child_sa_pair(&epdg3, crate::esp::IkeRole::Responder).unwrap();
    let (mut ue_in, mut ue_out) = (ue_in, ue_out);
    let (mut packet, mut plain) = (Vec::new(), Vec::new());
    let ip = [
        0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 45, 0, 7, 8, 8, 8, 8,
    ];
    ue_out
        .encapsulate_ip(&ip, &mut lab.rng, &mut packet)
        .unwrap();
    epdg_in.decapsulate_ip(&packet, &mut plain).unwrap();
    assert_eq!(plain, ip);
    packet.clear();
    epdg_out
        .encapsulate_ip(&ip, &mut lab.rng, &mut packet)
        .unwrap();
    ue_in.decapsulate_ip(&packet, &mut plain).unwrap();
    assert_eq!(plain, ip);

    // The UE rekeys the IKE SA: the endpoint finds the SA under its new SPI, the old
    // one's goes with its Delete; the CHILD_SA moved; the keylog has the new record.
    let mut out = Vec::new();
    assert!(lab.ue.rekey_ike_sa(lab.now, &mut lab.rng, &mut out));
    lab.route_ue(out);
    lab.run();
    let rekeys: Vec<(u64, u64)> = lab
        .epdg_events
        .iter()
        .filter_map(|e| match e {
            Event::IkeSaRekeyed { spi_i, spi_r, .. } => Some((*spi_i, *spi_r)),
            _ => None,
        })
        .collect();
    assert_eq!(
        rekeys,
        vec![(lab.ue.initiator_spi(), lab.ue.responder_spi())]
    );
    assert_eq!(lab.endpoint.handle_of(lab.ue.responder_spi()), Some(spi));
    assert_eq!(lab.ue.keys(), Some(lab.epdg().keys()));
    one_child(&lab);
    // And on the new IKE SA the UE can still leave.
    let mut out = Vec::new();
    lab.ue.delete(lab.now, &mut lab.rng, &mut out);
    lab.route_ue(out);
    lab.run_epdg_only();
    assert_eq!(
        Lab::closed(&lab.epdg_events),
        Some(&CloseReason::DeletedByPeer)
    );
    assert!(lab.endpoint.is_empty());
    assert!(lab.endpoint.esp.is_empty() && lab.endpoint.by_spi.is_empty());
}

/// RFC 7296 section 3.1: the initiator's SPI of an IKE_SA_INIT is never zero; such a
/// request makes no SA and gets no answer.
#[test]
fn an_ike_sa_init_with_initiator_spi_zero_is_dropped() {
    let mut lab = Lab::new(ue_config(IkeSuite::defaults()), ResponderConfig::default());
    let (mut request, via_4500) = lab.to_epdg.pop_front().unwrap();
    request[..8].fill(0);
    let out = lab.deliver(&request, via_4500);
    assert!(matches!(
        out.as_slice(),
        [EndpointOutput::Discarded {
            spi: None,
            reason: Discard::Unexpected(_)
        }]
    ));
    assert!(lab.endpoint.is_empty());
    assert_eq!(lab.endpoint.half_open(), 0);
    assert_eq!(lab.endpoint.stats().sas_created, 0);
}

/// The first datagram among an endpoint's outputs.
fn transmitted(out: &[EndpointOutput]) -> Vec<u8> {
    out.iter()
        .find_map(|o| match o {
            EndpointOutput::Transmit(t) => Some(t.bytes.clone()),
            _ => None,
        })
        .expect("a datagram")
}

/// An unknown payload type 99 with its Critical bit set, appended to a chain.
fn critical_unknown(chain: &mut Vec<u8>, last_header_at: Option<usize>) {
    if let Some(at) = last_header_at {
        chain[at] = 99; // the previous last payload now points to it
    }
    chain.extend_from_slice(&[0, 0x80, 0, 8, 1, 2, 3, 4]);
}

/// RFC 7296 section 2.5: a request with an unknown payload marked critical is refused
/// with UNSUPPORTED_CRITICAL_PAYLOAD naming the type; in IKE_SA_INIT or IKE_AUTH no SA
/// comes of it, later the SA stays.
#[test]
fn an_unknown_critical_payload_gets_unsupported_critical_payload() {
    let expect_notify = |m: &IkeMessage| {
        assert!(m.flags.response);
        assert_eq!(
            m.notifies()
                .map(|n| (n.notify_type, n.data.clone()))
                .collect::<Vec<_>>(),
            vec![(NotifyType::UnsupportedCriticalPayload, vec![99])]
        );
    };
    // IKE_SA_INIT: answered statelessly.
    let mut lab = Lab::new(ue_config(IkeSuite::defaults()), ResponderConfig::default());
    let (request, _) = lab.to_epdg.pop_front().unwrap();
    let m = IkeMessage::parse(&request).unwrap();
    let mut chain = Vec::new();
    emit_payloads(&m.payloads, &mut chain);
    let last = chain.len() - payloads_len(&m.payloads[m.payloads.len() - 1..]);
    critical_unknown(&mut chain, Some(last));
    let mut bytes = m.header(PayloadType::Sa, chain.len()).to_bytes().to_vec();
    bytes.extend_from_slice(&chain);
    let out = lab.deliver(&bytes, false);
    let [EndpointOutput::Transmit(t)] = out.as_slice() else {
        panic!("{out:?}");
    };
    expect_notify(&IkeMessage::parse(&t.bytes).unwrap());
    assert!(lab.endpoint.is_empty());

    // IKE_AUTH: the SA goes.
    let mut lab = Lab::new(ue_config(IkeSuite::defaults()), ResponderConfig::default());
    lab.tamper = Box::new(|n, b| (n != 2).then_some(b));
    lab.run();
    let spi = lab.spi.unwrap();
    let header = IkeMessage {
        initiator_spi: lab.ue.initiator_spi(),
        responder_spi: spi,
        exchange_type: ExchangeType::IkeAuth,
        flags: Flags {
            initiator: true,
            ..Flags::default()
        },
        message_id: 1,
        payloads: vec![],
    };
    let mut chain = Vec::new();
    emit_payloads(
        &[Payload::IdI(Identification::Fqdn("ue".into()))],
        &mut chain,
    );
    critical_unknown(&mut chain, Some(0));
    let keys = lab.epdg().keys().initiator_sk();
    let responder = lab.epdg().keys().responder_sk();
    let sealed = keys
        .seal_chain(&header, PayloadType::IdI, chain.clone(), &mut lab.rng)
        .unwrap();
    let out = lab.deliver(&sealed, false);
    let response = transmitted(&out);
    expect_notify(&responder.open(&response).unwrap());
    lab.route_epdg(out);
    assert_eq!(
        Lab::closed(&lab.epdg_events),
        Some(&CloseReason::NotifySent(
            NotifyType::UnsupportedCriticalPayload
        ))
    );
    assert!(lab.endpoint.is_empty());

    // After IKE_AUTH: an INFORMATIONAL with it is refused, the SA stays.
    let mut lab = Lab::new(ue_config(IkeSuite::defaults()), ResponderConfig::default());
    lab.run();
    assert_both_established(&lab);
    let informational = IkeMessage {
        responder_spi: lab.spi.unwrap(),
        exchange_type: ExchangeType::Informational,
        message_id: 4,
        ..header
    };
    let mut chain = Vec::new();
    critical_unknown(&mut chain, None);
    let keys = lab.epdg().keys().clone();
    let sealed = keys
        .initiator_sk()
        .seal_chain(&informational, PayloadType::from(99), chain, &mut lab.rng)
        .unwrap();
    let out = lab.deliver(&sealed, false);
    let response = transmitted(&out);
    expect_notify(&keys.responder_sk().open(&response).unwrap());
    lab.route_epdg(out);
    assert_eq!(Lab::closed(&lab.epdg_events), None);
    assert_eq!(lab.endpoint.len(), 1);
}
