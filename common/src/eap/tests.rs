//! EAP-AKA runs between the peer and server state machines, and property tests of every
//! parser.

use std::collections::HashMap;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;

const IMSI: &str = "001010000000001";

fn unhex<const N: usize>(s: &str) -> [u8; N] {
    let v = hex::decode(s).expect("test hex");
    v.try_into().expect("test hex length")
}

/// TS 35.208 test set 1's K and OPc.
fn k() -> [u8; 16] {
    unhex("465b5ce8b199b49faa5f0a2ee238a6bc")
}
fn opc() -> [u8; 16] {
    unhex("cd63cb71954a9f4e48a5994e37a02baf")
}

fn sqn(v: u64) -> Sqn {
    Sqn::new(v).expect("48-bit SQN")
}

fn nai() -> Vec<u8> {
    permanent_identity(IMSI, 2)
        .expect("valid IMSI")
        .into_bytes()
}

fn store(sqn_he: u64) -> HashMap<String, Subscriber> {
    HashMap::from([(
        IMSI.to_string(),
        Subscriber {
            k: k(),
            opc: opc(),
            amf: [0x80, 0x00],
            sqn: sqn(sqn_he),
        },
    )])
}

fn peer_with(k: [u8; 16], sqn_ms: u64, eap_identity: Option<&[u8]>, result_ind: bool) -> Peer {
    Peer::new(
        PeerConfig {
            permanent_identity: nai(),
            eap_identity: eap_identity.map(<[u8]>::to_vec),
            result_indication: result_ind,
        },
        Usim::new(&k, &opc(), sqn(sqn_ms)),
    )
}

/// Everything both sides output during one run.
#[derive(Debug, Default)]
struct Transcript {
    server: Vec<ServerOutput>,
    peer: Vec<PeerOutput>,
    /// Every packet, in the order sent: (from the server?, bytes).
    packets: Vec<(bool, Vec<u8>)>,
}

impl Transcript {
    fn server_success(&self) -> Option<&AuthSuccess> {
        self.server.iter().find_map(|o| match o {
            ServerOutput::Success(s) => Some(&**s),
            _ => None,
        })
    }
    fn server_failure(&self) -> Option<&ServerFailure> {
        self.server.iter().find_map(|o| match o {
            ServerOutput::Failure(f) => Some(f),
            _ => None,
        })
    }
    fn peer_success(&self) -> Option<&SessionKeys> {
        self.peer.iter().find_map(|o| match o {
            PeerOutput::Success(k) => Some(&**k),
            _ => None,
        })
    }
    fn peer_failure(&self) -> Option<&Option<PeerProblem>> {
        self.peer.iter().find_map(|o| match o {
            PeerOutput::Failure(p) => Some(p),
            _ => None,
        })
    }
    fn sqns_used(&self) -> Vec<u64> {
        self.server
            .iter()
            .filter_map(|o| match o {
                ServerOutput::SqnUsed { sqn, .. } => Some(sqn.value()),
                _ => None,
            })
            .collect()
    }
    fn subtypes(&self) -> Vec<(bool, Option<Subtype>)> {
        self.packets
            .iter()
            .map(|(from_server, p)| (*from_server, aka_subtype(p)))
            .collect()
    }
}

/// Runs a conversation to its end. `tamper` may change each packet in flight (its
/// argument says whether the server sent it).
fn converse(
    server: &mut Server,
    peer: &mut Peer,
    subscribers: &mut HashMap<String, Subscriber>,
    first: ServerInput<'_>,
    rng: &mut StdRng,
    mut tamper: impl FnMut(bool, &mut Vec<u8>),
) -> Transcript {
    let mut t = Transcript::default();
    let mut pending = server.handle(first, rng);
    for _ in 0..32 {
        if pending.is_empty() {
            break;
        }
        let mut next = Vec::new();
        for output in pending {
            t.server.push(output.clone());
            match output {
                ServerOutput::Send(mut bytes) => {
                    tamper(true, &mut bytes);
                    t.packets.push((true, bytes.clone()));
                    for p in peer.handle(&bytes) {
                        t.peer.push(p.clone());
                        if let PeerOutput::Send(mut answer) = p {
                            tamper(false, &mut answer);
                            t.packets.push((false, answer.clone()));
                            next.extend(server.handle(ServerInput::Packet(&answer), rng));
                        }
                    }
                }
                ServerOutput::SubscriberNeeded { imsi } => {
                    let record = subscribers.get(&imsi).cloned();
                    next.extend(server.handle(ServerInput::Subscriber(record), rng));
                }
                ServerOutput::SqnUsed { imsi, sqn } => {
                    if let Some(s) = subscribers.get_mut(&imsi) {
                        s.sqn = sqn;
                    }
                }
                _ => {}
            }
        }
        pending = next;
    }
    t
}

fn no_tamper(_: bool, _: &mut Vec<u8>) {}

fn rng() -> StdRng {
    StdRng::seed_from_u64(4187)
}

#[test]
fn success_both_sides_derive_the_same_msk() {
    let mut subscribers = store(0x20);
    let mut server = Server::new(ServerConfig::default());
    let mut peer = peer_with(k(), 0x20, None, false);
    let t = converse(
        &mut server,
        &mut peer,
        &mut subscribers,
        ServerInput::Start,
        &mut rng(),
        no_tamper,
    );
    let success = t.server_success().expect("server succeeds");
    let keys = t.peer_success().expect("peer succeeds");
    assert_eq!(&success.keys, keys);
    assert_eq!(success.keys.msk, keys.msk);
    assert_eq!(success.imsi, IMSI);
    assert_eq!(success.identity, nai());
    assert_eq!(t.sqns_used(), vec![0x21]);
    assert_eq!(subscribers[IMSI].sqn, sqn(0x21));
    assert_eq!(peer.usim().sqn_ms(), sqn(0x21));
    assert!(server.is_done() && peer.is_done());
    // Identity request/response, challenge, response, EAP-Success.
    assert_eq!(t.packets.len(), 5);
    assert_eq!(
        t.subtypes()[2..4],
        [
            (true, Some(Subtype::Challenge)),
            (false, Some(Subtype::Challenge))
        ]
    );
    // The keys are those RFC 4187 section 7 says: PRF(SHA1(Identity | IK | CK)).
    let f = Milenage::new(&k(), &opc()).f2345(&challenge_rand(&t.packets[2].1));
    assert_eq!(success.keys, SessionKeys::derive(&nai(), &f.ik, &f.ck));
}

fn challenge_rand(packet: &[u8]) -> [u8; 16] {
    match EapRepr::parse_bytes(packet) {
        Ok(EapRepr::Request {
            data: TypeData::Aka(repr),
            ..
        }) => repr.rand().expect("AT_RAND"),
        other => panic!("not a challenge: {other:?}"),
    }
}

#[test]
fn authenticator_sends_the_identity_response_first() {
    // The ePDG builds EAP-Response/Identity from IKEv2 IDi (the first DER).
    let mut subscribers = store(7);
    let mut server = Server::new(ServerConfig::default());
    let mut peer = peer_with(k(), 7, None, false);
    let first = EapRepr::Response {
        identifier: 0xfe,
        data: TypeData::Identity(peer.eap_identity().to_vec()),
    }
    .to_bytes()
    .expect("emit");
    let t = converse(
        &mut server,
        &mut peer,
        &mut subscribers,
        ServerInput::Packet(&first),
        &mut rng(),
        no_tamper,
    );
    assert!(t.server_success().is_some());
    assert!(t.peer_success().is_some());
    // Requests follow the authenticator's Identifier.
    let challenge = EapPacket::new_checked(&t.packets[0].1).expect("packet");
    assert_eq!(challenge.identifier(), 0xff);
    let success = EapPacket::new_checked(&t.packets[2].1).expect("packet");
    assert_eq!(
        (success.code(), success.identifier()),
        (Code::Success, 0xff)
    );
}

#[test]
fn wrong_k_is_rejected_by_the_peer() {
    let mut subscribers = store(0);
    let mut server = Server::new(ServerConfig::default());
    let mut wrong = k();
    wrong[0] ^= 1;
    let mut peer = peer_with(wrong, 0, None, false);
    let t = converse(
        &mut server,
        &mut peer,
        &mut subscribers,
        ServerInput::Start,
        &mut rng(),
        no_tamper,
    );
    assert_eq!(
        t.server_failure(),
        Some(&ServerFailure::AuthenticationReject)
    );
    assert_eq!(t.peer_failure(), Some(&Some(PeerProblem::AutnMacFailure)));
    assert!(t.server_success().is_none() && t.peer_success().is_none());
    assert!(t
        .subtypes()
        .contains(&(false, Some(Subtype::AuthenticationReject))));
    // The peer's SQN is untouched by a challenge it refused.
    assert_eq!(peer.usim().sqn_ms(), sqn(0));
}

#[test]
fn auts_resynchronisation_then_success() {
    // The network is behind the USIM.
    let mut subscribers = store(5);
    let mut server = Server::new(ServerConfig::default());
    let mut peer = peer_with(k(), 1000, None, false);
    let t = converse(
        &mut server,
        &mut peer,
        &mut subscribers,
        ServerInput::Start,
        &mut rng(),
        no_tamper,
    );
    assert!(t
        .peer
        .contains_problem(&PeerProblem::SynchronisationFailure {
            received: sqn(6),
            sqn_ms: sqn(1000),
        }));
    assert_eq!(t.sqns_used(), vec![6, 1001]);
    assert_eq!(subscribers[IMSI].sqn, sqn(1001));
    assert_eq!(peer.usim().sqn_ms(), sqn(1001));
    let success = t.server_success().expect("server succeeds after resync");
    assert_eq!(Some(&success.keys), t.peer_success());
    assert_eq!(
        t.subtypes().iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        vec![
            None,
            None,
            Some(Subtype::Challenge),
            Some(Subtype::SynchronizationFailure),
            Some(Subtype::Challenge),
            Some(Subtype::Challenge),
            None,
        ]
    );
}

#[test]
fn sqn_too_far_ahead_is_resynchronised_backwards() {
    let mut subscribers = store(DEFAULT_SQN_DELTA + 10);
    let mut server = Server::new(ServerConfig::default());
    let mut peer = peer_with(k(), 9, None, false);
    let t = converse(
        &mut server,
        &mut peer,
        &mut subscribers,
        ServerInput::Start,
        &mut rng(),
        no_tamper,
    );
    assert_eq!(t.sqns_used(), vec![DEFAULT_SQN_DELTA + 11, 10]);
    assert!(t.server_success().is_some() && t.peer_success().is_some());
}

trait PeerOutputs {
    fn contains_problem(&self, problem: &PeerProblem) -> bool;
}

impl PeerOutputs for Vec<PeerOutput> {
    fn contains_problem(&self, problem: &PeerProblem) -> bool {
        self.iter()
            .any(|o| matches!(o, PeerOutput::Problem(p) if p == problem))
    }
}

#[test]
fn a_second_synchronisation_failure_ends_it() {
    let mut subscribers = store(5);
    let mut server = Server::new(ServerConfig::default());
    // A USIM whose freshness window is closed refuses every SQN.
    let mut peer = Peer::new(
        PeerConfig {
            permanent_identity: nai(),
            eap_identity: None,
            result_indication: false,
        },
        Usim::new(&k(), &opc(), sqn(1000)).with_delta(0),
    );
    let t = converse(
        &mut server,
        &mut peer,
        &mut subscribers,
        ServerInput::Start,
        &mut rng(),
        no_tamper,
    );
    assert_eq!(
        t.server_failure(),
        Some(&ServerFailure::SynchronisationFailed)
    );
    assert!(matches!(
        t.peer_failure(),
        Some(Some(PeerProblem::SynchronisationFailure { .. }))
    ));
}

#[test]
fn bad_auts_fails() {
    let mut subscribers = store(5);
    let mut server = Server::new(ServerConfig::default());
    let mut peer = peer_with(k(), 1000, None, false);
    let t = converse(
        &mut server,
        &mut peer,
        &mut subscribers,
        ServerInput::Start,
        &mut rng(),
        |from_server, p| {
            if !from_server && aka_subtype(p) == Some(Subtype::SynchronizationFailure) {
                let last = p.len() - 1;
                p[last] ^= 1; // MAC-S
            }
        },
    );
    assert_eq!(
        t.server_failure(),
        Some(&ServerFailure::SynchronisationFailed)
    );
    assert_eq!(t.sqns_used(), vec![6]);
}

#[test]
fn identity_request_when_the_nai_is_not_imsi_based() {
    let mut subscribers = store(0x40);
    let mut server = Server::new(ServerConfig::default());
    let mut peer = peer_with(
        k(),
        0x40,
        Some(b"anonymous@nai.epc.mnc001.mcc001.3gppnetwork.org"),
        false,
    );
    let t = converse(
        &mut server,
        &mut peer,
        &mut subscribers,
        ServerInput::Start,
        &mut rng(),
        no_tamper,
    );
    assert_eq!(
        t.subtypes().iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        vec![
            None,
            None,
            Some(Subtype::Identity),
            Some(Subtype::Identity),
            Some(Subtype::Challenge),
            Some(Subtype::Challenge),
            None,
        ]
    );
    let success = t.server_success().expect("success");
    // MK uses the identity from the last AT_IDENTITY, the permanent one.
    assert_eq!(success.identity, nai());
    assert_eq!(server.identity(), nai().as_slice());
    assert_eq!(Some(&success.keys), t.peer_success());
    // Both AKA-Identity messages are covered by AT_CHECKCODE, sent and echoed.
    let mut checkcode = Checkcode::default();
    checkcode.add(&t.packets[2].1);
    checkcode.add(&t.packets[3].1);
    for (_, p) in &t.packets[4..6] {
        let Ok(
            EapRepr::Request {
                data: TypeData::Aka(repr),
                ..
            }
            | EapRepr::Response {
                data: TypeData::Aka(repr),
                ..
            },
        ) = EapRepr::parse_bytes(p)
        else {
            panic!("challenge expected");
        };
        assert_eq!(repr.checkcode(), Some(checkcode.value()));
        assert!(checkcode.value().is_some());
    }
}

#[test]
fn no_permanent_identity_fails() {
    let mut subscribers = store(0);
    let mut server = Server::new(ServerConfig::default());
    let mut peer = Peer::new(
        PeerConfig {
            permanent_identity: b"pseudonym@example.org".to_vec(),
            eap_identity: None,
            result_indication: false,
        },
        Usim::new(&k(), &opc(), sqn(0)),
    );
    let t = converse(
        &mut server,
        &mut peer,
        &mut subscribers,
        ServerInput::Start,
        &mut rng(),
        no_tamper,
    );
    assert_eq!(
        t.server_failure(),
        Some(&ServerFailure::NoPermanentIdentity)
    );
    assert_eq!(t.peer_failure(), Some(&None));
}

#[test]
fn unknown_subscriber_fails() {
    let mut subscribers = HashMap::new();
    let mut server = Server::new(ServerConfig::default());
    let mut peer = peer_with(k(), 0, None, false);
    let t = converse(
        &mut server,
        &mut peer,
        &mut subscribers,
        ServerInput::Start,
        &mut rng(),
        no_tamper,
    );
    assert_eq!(t.server_failure(), Some(&ServerFailure::UnknownSubscriber));
    assert!(t.peer_failure().is_some());
    assert!(t.sqns_used().is_empty());
}

#[test]
fn tampered_at_mac_in_the_challenge_is_rejected() {
    let mut subscribers = store(1);
    let mut server = Server::new(ServerConfig::default());
    let mut peer = peer_with(k(), 1, None, false);
    let t = converse(
        &mut server,
        &mut peer,
        &mut subscribers,
        ServerInput::Start,
        &mut rng(),
        |from_server, p| {
            if from_server && aka_subtype(p) == Some(Subtype::Challenge) {
                let at = find_mac(p).expect("AT_MAC");
                p[at + 3] ^= 0x40;
            }
        },
    );
    assert!(t.peer.contains_problem(&PeerProblem::MacInvalid));
    assert_eq!(
        t.server_failure(),
        Some(&ServerFailure::ClientError(
            ClientErrorCode::UnableToProcessPacket
        ))
    );
    // A challenge whose AT_MAC failed does not move the USIM's SQN.
    assert_eq!(peer.usim().sqn_ms(), sqn(1));
}

#[test]
fn tampered_at_mac_in_the_response_is_rejected() {
    let mut subscribers = store(1);
    let mut server = Server::new(ServerConfig::default());
    let mut peer = peer_with(k(), 1, None, false);
    let t = converse(
        &mut server,
        &mut peer,
        &mut subscribers,
        ServerInput::Start,
        &mut rng(),
        |from_server, p| {
            if !from_server && aka_subtype(p) == Some(Subtype::Challenge) {
                let at = find_mac(p).expect("AT_MAC");
                p[at] ^= 1;
            }
        },
    );
    assert_eq!(t.server_failure(), Some(&ServerFailure::MacInvalid));
    assert!(t.server_success().is_none());
}

#[test]
fn tampered_rand_is_an_authentication_reject() {
    let mut subscribers = store(1);
    let mut server = Server::new(ServerConfig::default());
    let mut peer = peer_with(k(), 1, None, false);
    let t = converse(
        &mut server,
        &mut peer,
        &mut subscribers,
        ServerInput::Start,
        &mut rng(),
        |from_server, p| {
            if from_server && aka_subtype(p) == Some(Subtype::Challenge) {
                // EAP header, Type, Subtype, Reserved, AT_RAND header and Reserved.
                p[5 + 3 + 4] ^= 1;
            }
        },
    );
    assert_eq!(
        t.server_failure(),
        Some(&ServerFailure::AuthenticationReject)
    );
}

#[test]
fn wrong_res_fails_with_a_valid_mac() {
    let mut subscribers = store(1);
    let mut server = Server::new(ServerConfig::default());
    let mut peer = peer_with(k(), 1, None, false);
    let mut r = rng();
    let out = server.handle(ServerInput::Start, &mut r);
    let [ServerOutput::Send(identity_request)] = out.as_slice() else {
        panic!("{out:?}");
    };
    let answer = peer.handle(identity_request);
    let [PeerOutput::Send(identity)] = answer.as_slice() else {
        panic!("identity response");
    };
    let out = server.handle(ServerInput::Packet(identity), &mut r);
    assert!(matches!(
        out.as_slice(),
        [ServerOutput::SubscriberNeeded { .. }]
    ));
    let out = server.handle(ServerInput::Subscriber(subscribers.remove(IMSI)), &mut r);
    let [ServerOutput::SqnUsed { .. }, ServerOutput::Send(challenge)] = out.as_slice() else {
        panic!("{out:?}");
    };
    let answer = peer.handle(challenge);
    let k_aut = peer.keys().expect("keys").k_aut;
    let Some(PeerOutput::Send(good)) = answer.last() else {
        panic!("{answer:?}");
    };
    let identifier = EapPacket::new_checked(good).expect("packet").identifier();
    let mut forged = EapRepr::Response {
        identifier,
        data: TypeData::Aka(AkaRepr::new(
            Subtype::Challenge,
            vec![
                Attribute::Res(Res::from_octets(&[0; 8])),
                Attribute::Mac([0; 16]),
            ],
        )),
    }
    .to_bytes()
    .expect("emit");
    fill_mac(&k_aut, &mut forged, &[]).expect("AT_MAC");
    assert_eq!(verify_mac(&k_aut, &forged, &[]), Ok(true));
    let out = server.handle(ServerInput::Packet(&forged), &mut r);
    assert!(matches!(
        out.as_slice(),
        [ServerOutput::Send(failure), ServerOutput::Failure(ServerFailure::ResMismatch)]
            if failure.first() == Some(&4)
    ));
}

#[test]
fn result_indication_adds_a_success_notification() {
    let mut subscribers = store(3);
    let mut server = Server::new(ServerConfig {
        result_indication: true,
        ..ServerConfig::default()
    });
    let mut peer = peer_with(k(), 3, None, true);
    let t = converse(
        &mut server,
        &mut peer,
        &mut subscribers,
        ServerInput::Start,
        &mut rng(),
        no_tamper,
    );
    assert_eq!(
        t.subtypes().iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        vec![
            None,
            None,
            Some(Subtype::Challenge),
            Some(Subtype::Challenge),
            Some(Subtype::Notification),
            Some(Subtype::Notification),
            None,
        ]
    );
    assert_eq!(t.server_success().map(|s| &s.keys), t.peer_success());
    // Only one side asking changes nothing.
    let mut server = Server::new(ServerConfig {
        result_indication: true,
        ..ServerConfig::default()
    });
    let mut peer = peer_with(k(), 4, None, false);
    let t = converse(
        &mut server,
        &mut peer,
        &mut subscribers,
        ServerInput::Start,
        &mut rng(),
        no_tamper,
    );
    assert_eq!(t.packets.len(), 5);
    assert!(t.peer_success().is_some());
}

#[test]
fn retransmitted_challenge_gets_the_same_answer() {
    let mut subscribers = store(1);
    let mut server = Server::new(ServerConfig::default());
    let mut peer = peer_with(k(), 1, None, false);
    let mut r = rng();
    let out = server.handle(ServerInput::Start, &mut r);
    let [ServerOutput::Send(req)] = out.as_slice() else {
        panic!()
    };
    let answer = peer.handle(req);
    let [PeerOutput::Send(id)] = answer.as_slice() else {
        panic!()
    };
    server.handle(ServerInput::Packet(id), &mut r);
    let out = server.handle(ServerInput::Subscriber(subscribers.remove(IMSI)), &mut r);
    let Some(ServerOutput::Send(challenge)) = out.last() else {
        panic!()
    };
    let first = peer.handle(challenge);
    let again = peer.handle(challenge);
    let (Some(PeerOutput::Send(a)), [PeerOutput::Send(b)]) = (first.last(), again.as_slice())
    else {
        panic!("{first:?} {again:?}");
    };
    assert_eq!(a, b);
    // A stale Identifier is ignored by the server.
    let mut stale = a.clone();
    stale[1] = stale[1].wrapping_sub(1);
    assert!(matches!(
        server
            .handle(ServerInput::Packet(&stale), &mut r)
            .as_slice(),
        [ServerOutput::Discarded(_)]
    ));
    assert!(matches!(
        server.handle(ServerInput::Packet(a), &mut r).as_slice(),
        [ServerOutput::Send(_), ServerOutput::Success(_)]
    ));
}

#[test]
fn peer_naks_other_methods_and_answers_notifications() {
    let mut peer = peer_with(k(), 0, None, false);
    let md5 = EapRepr::Request {
        identifier: 9,
        data: TypeData::Other {
            eap_type: EapType::Md5Challenge,
            data: vec![16; 17],
        },
    }
    .to_bytes()
    .expect("emit");
    let answer = peer.handle(&md5);
    let [PeerOutput::Send(nak)] = answer.as_slice() else {
        panic!()
    };
    assert_eq!(
        EapRepr::parse_bytes(nak),
        Ok(EapRepr::Response {
            identifier: 9,
            data: TypeData::Nak(vec![EapType::Aka])
        })
    );
    let note = EapRepr::Request {
        identifier: 10,
        data: TypeData::Notification(b"maintenance tonight".to_vec()),
    }
    .to_bytes()
    .expect("emit");
    let answer = peer.handle(&note);
    let [PeerOutput::Send(ack)] = answer.as_slice() else {
        panic!()
    };
    assert_eq!(ack.as_slice(), [2, 10, 0, 5, 2]);
    // An early EAP-Success is not believed.
    assert!(matches!(
        peer.handle(&[3, 11, 0, 4]).as_slice(),
        [PeerOutput::Discarded(_)]
    ));
    // A Nak ends the server's conversation.
    let mut server = Server::new(ServerConfig::default());
    let mut subscribers = store(0);
    let t = converse(
        &mut server,
        &mut peer_with(k(), 0, None, false),
        &mut subscribers,
        ServerInput::Start,
        &mut rng(),
        |from_server, p| {
            if !from_server && aka_subtype(p) == Some(Subtype::Challenge) {
                let identifier = EapPacket::new_checked(&p[..]).unwrap().identifier();
                *p = EapRepr::Response {
                    identifier,
                    data: TypeData::Nak(vec![EapType::Md5Challenge]),
                }
                .to_bytes()
                .unwrap();
            }
        },
    );
    assert_eq!(t.server_failure(), Some(&ServerFailure::Nak));
}

#[test]
fn unknown_attributes() {
    // A skippable one is kept and re-emitted unchanged.
    let bytes = [
        2, 1, 0, 20, 23, 1, 0, 0, // EAP header, Type, Subtype Challenge, Reserved
        200, 2, 1, 2, 3, 4, 5, 6, // skippable type 200, 8 octets
        135, 1, 0, 0, // AT_RESULT_IND
    ];
    let repr = EapRepr::parse_bytes(&bytes).expect("parses");
    let EapRepr::Response {
        data: TypeData::Aka(aka),
        ..
    } = &repr
    else {
        panic!()
    };
    assert_eq!(
        aka.attributes,
        vec![
            Attribute::Unknown {
                attribute_type: 200,
                data: vec![1, 2, 3, 4, 5, 6]
            },
            Attribute::ResultInd
        ]
    );
    assert_eq!(repr.to_bytes().expect("emit"), bytes);
    // A non-skippable one is an error; the peer answers with a Client-Error.
    let mut bad = bytes;
    bad[8] = 100;
    assert_eq!(
        EapRepr::parse_bytes(&bad),
        Err(EapError::UnsupportedAttribute(100))
    );
    bad[0] = 1;
    let mut peer = peer_with(k(), 0, None, false);
    let out = peer.handle(&bad);
    assert!(matches!(
        out.as_slice(),
        [PeerOutput::Problem(PeerProblem::Malformed(EapError::UnsupportedAttribute(100))), PeerOutput::Send(p)]
            if aka_subtype(p) == Some(Subtype::ClientError)
    ));
    // Repeated known attributes are refused.
    let twice = [2, 1, 0, 16, 23, 1, 0, 0, 135, 1, 0, 0, 135, 1, 0, 0];
    assert_eq!(
        EapRepr::parse_bytes(&twice),
        Err(EapError::RepeatedAttribute(135))
    );
}

#[test]
fn at_res_carries_its_length_in_bits() {
    let res = Attribute::Res(Res::from_octets(&[
        0xa5, 0x42, 0x11, 0xd5, 0xe3, 0xba, 0x50, 0xbf,
    ]));
    let mut out = [0u8; 12];
    assert_eq!(res.emit(&mut out), Ok(12));
    assert_eq!(
        out,
        [3, 3, 0, 64, 0xa5, 0x42, 0x11, 0xd5, 0xe3, 0xba, 0x50, 0xbf]
    );
    // 36 bits: five octets, padded to eight.
    let odd = Attribute::parse(3, &[0, 36, 1, 2, 3, 4, 5, 0, 0, 0]).expect("parses");
    assert_eq!(
        odd,
        Attribute::Res(Res {
            bits: 36,
            value: vec![1, 2, 3, 4, 5]
        })
    );
    assert_eq!(
        Attribute::parse(3, &[0, 16, 1, 2]),
        Err(EapError::Malformed("AT_RES length outside 32 to 128 bits"))
    );
    assert!(Attribute::parse(3, &[0, 64, 1, 2, 3, 4]).is_err());
}

#[test]
fn identity_attribute_is_padded() {
    let id = Attribute::Identity(b"0001010000000001@a".to_vec());
    assert_eq!(id.buffer_len(), 24);
    let mut out = [0xffu8; 24];
    id.emit(&mut out).expect("emit");
    assert_eq!(&out[..4], &[14, 6, 0, 18]);
    assert_eq!(&out[22..], &[0, 0]);
    assert_eq!(Attribute::parse(14, &out[2..]), Ok(id));
}

// ---- property tests ----

fn skippable_unknown_type() -> impl Strategy<Value = u8> {
    (128u8..=255).prop_filter("not a known skippable type", |t| {
        ![129, 130, 132, 133, 134, 135].contains(t)
    })
}

fn attribute() -> impl Strategy<Value = Attribute> {
    let fixed = prop_oneof![
        any::<[u8; 16]>().prop_map(Attribute::Rand),
        any::<[u8; 16]>().prop_map(Attribute::Autn),
        any::<[u8; 14]>().prop_map(Attribute::Auts),
        any::<[u8; 16]>().prop_map(Attribute::Mac),
        any::<[u8; 16]>().prop_map(Attribute::NonceS),
        any::<[u8; 16]>().prop_map(Attribute::Iv),
        option::of(any::<[u8; 20]>()).prop_map(Attribute::Checkcode),
        (1u8..=3).prop_map(Attribute::Padding),
    ];
    let flags = prop_oneof![
        Just(Attribute::PermanentIdReq),
        Just(Attribute::AnyIdReq),
        Just(Attribute::FullauthIdReq),
        Just(Attribute::CounterTooSmall),
        Just(Attribute::ResultInd),
        any::<u16>().prop_map(|c| Attribute::Notification(NotificationCode::from(c))),
        any::<u16>().prop_map(Attribute::Counter),
        any::<u16>().prop_map(|c| Attribute::ClientErrorCode(ClientErrorCode::from(c))),
    ];
    let variable = prop_oneof![
        (32u16..=128).prop_flat_map(|bits| {
            vec(any::<u8>(), usize::from(bits).div_ceil(8))
                .prop_map(move |value| Attribute::Res(Res { bits, value }))
        }),
        vec(any::<u8>(), 0..40).prop_map(Attribute::Identity),
        vec(any::<u8>(), 0..40).prop_map(Attribute::NextPseudonym),
        vec(any::<u8>(), 0..40).prop_map(Attribute::NextReauthId),
        (1usize..4)
            .prop_flat_map(|blocks| vec(any::<u8>(), blocks * 16))
            .prop_map(Attribute::EncrData),
        (
            skippable_unknown_type(),
            (0usize..8).prop_flat_map(|n| vec(any::<u8>(), 4 * n + 2))
        )
            .prop_map(|(attribute_type, data)| Attribute::Unknown {
                attribute_type,
                data
            }),
    ];
    prop_oneof![fixed, flags, variable]
}

fn subtype() -> impl Strategy<Value = Subtype> {
    prop_oneof![
        Just(Subtype::Challenge),
        Just(Subtype::AuthenticationReject),
        Just(Subtype::SynchronizationFailure),
        Just(Subtype::Identity),
        Just(Subtype::Notification),
        Just(Subtype::Reauthentication),
        Just(Subtype::ClientError),
    ]
}

fn aka_repr() -> impl Strategy<Value = AkaRepr> {
    (subtype(), vec(attribute(), 0..8)).prop_map(|(subtype, attributes)| {
        // A known attribute appears once at most.
        let mut kept: Vec<Attribute> = Vec::new();
        for a in attributes {
            let unknown = matches!(a, Attribute::Unknown { .. });
            if unknown
                || !kept
                    .iter()
                    .any(|k| k.attribute_type() == a.attribute_type())
            {
                kept.push(a);
            }
        }
        AkaRepr::new(subtype, kept)
    })
}

fn eap_repr() -> impl Strategy<Value = EapRepr> {
    let other_type = any::<u8>()
        .prop_filter("not a decoded Type", |t| ![1, 2, 3, 23].contains(t))
        .prop_map(EapType::from);
    let data = prop_oneof![
        vec(any::<u8>(), 0..64).prop_map(TypeData::Identity),
        vec(any::<u8>(), 0..64).prop_map(TypeData::Notification),
        aka_repr().prop_map(TypeData::Aka),
        (other_type, vec(any::<u8>(), 0..64))
            .prop_map(|(eap_type, data)| TypeData::Other { eap_type, data }),
    ];
    let nak = vec(any::<u8>(), 1..6)
        .prop_map(|types| TypeData::Nak(types.into_iter().map(EapType::from).collect()));
    prop_oneof![
        (any::<u8>(), data.clone())
            .prop_map(|(identifier, data)| EapRepr::Request { identifier, data }),
        (any::<u8>(), prop_oneof![data, nak])
            .prop_map(|(identifier, data)| EapRepr::Response { identifier, data }),
        any::<u8>().prop_map(|identifier| EapRepr::Success { identifier }),
        any::<u8>().prop_map(|identifier| EapRepr::Failure { identifier }),
    ]
}

/// Raw EAP-AKA packets: a valid frame around attributes with valid lengths but arbitrary
/// types and contents, to reach deep into the attribute parser.
fn framed_aka_packet() -> impl Strategy<Value = Vec<u8>> {
    (
        1u8..=2,
        any::<u8>(),
        any::<u8>(),
        vec(
            (
                any::<u8>(),
                (1usize..6).prop_flat_map(|units| vec(any::<u8>(), units * 4 - 2)),
            ),
            0..6,
        ),
    )
        .prop_map(|(code, identifier, subtype, attributes)| {
            let mut p = vec![code, identifier, 0, 0, 23, subtype, 0, 0];
            for (t, value) in attributes {
                p.push(t);
                p.push(((value.len() + 2) / 4) as u8);
                p.extend(value);
            }
            let len = p.len() as u16;
            p[2..4].copy_from_slice(&len.to_be_bytes());
            p
        })
}

proptest! {
    #[test]
    fn eap_parse_never_panics_and_reemits(bytes in vec(any::<u8>(), 0..200)) {
        if let Ok(repr) = EapRepr::parse_bytes(&bytes) {
            let emitted = repr.to_bytes().expect("a parsed packet emits");
            prop_assert_eq!(EapRepr::parse_bytes(&emitted), Ok(repr));
        }
        let _ = find_mac(&bytes);
        let _ = verify_mac(&[0; 16], &bytes, &[]);
        let _ = aka_subtype(&bytes);
    }

    #[test]
    fn aka_parse_never_panics_and_reemits(bytes in vec(any::<u8>(), 0..200)) {
        if let Ok(repr) = AkaRepr::parse(&bytes) {
            let mut out = vec![0; repr.buffer_len()];
            repr.emit(&mut out).expect("a parsed message emits");
            prop_assert_eq!(AkaRepr::parse(&out), Ok(repr));
        }
        if let Ok(view) = AkaMessage::new_checked(&bytes[..]) {
            for raw in view.attributes().flatten() {
                let _ = Attribute::parse(raw.attribute_type, raw.value);
            }
        }
    }

    #[test]
    fn framed_aka_packets_never_panic(packet in framed_aka_packet()) {
        if let Ok(repr) = EapRepr::parse_bytes(&packet) {
            let emitted = repr.to_bytes().expect("a parsed packet emits");
            prop_assert_eq!(EapRepr::parse_bytes(&emitted), Ok(repr));
        }
        let _ = verify_mac(&[7; 16], &packet, &[]);
        let mut peer = peer_with(k(), 0, None, true);
        let _ = peer.handle(&packet);
        let mut server = Server::new(ServerConfig::default());
        let mut r = rng();
        let _ = server.handle(ServerInput::Start, &mut r);
        let _ = server.handle(ServerInput::Packet(&packet), &mut r);
    }

    #[test]
    fn eap_repr_round_trips(repr in eap_repr()) {
        let bytes = repr.to_bytes().expect("emit");
        prop_assert_eq!(bytes.len(), repr.buffer_len());
        let view = EapPacket::new_checked(&bytes[..]).expect("view");
        prop_assert_eq!(usize::from(view.length()), bytes.len());
        prop_assert_eq!(EapRepr::parse(&view), Ok(repr));
    }

    #[test]
    fn state_machines_never_panic(packets in vec(vec(any::<u8>(), 0..80), 0..6)) {
        let mut r = rng();
        let mut peer = peer_with(k(), 0, None, true);
        let mut server = Server::new(ServerConfig {
            result_indication: true,
            ..ServerConfig::default()
        });
        let _ = server.handle(ServerInput::Start, &mut r);
        for p in &packets {
            let _ = peer.handle(p);
            let _ = server.handle(ServerInput::Packet(p), &mut r);
        }
        // Mid-conversation too: a server waiting for the challenge response.
        let mut server = Server::new(ServerConfig::default());
        let id = EapRepr::Response { identifier: 0, data: TypeData::Identity(nai()) }
            .to_bytes().expect("emit");
        let _ = server.handle(ServerInput::Packet(&id), &mut r);
        let _ = server.handle(ServerInput::Subscriber(store(0).remove(IMSI)), &mut r);
        for p in &packets {
            let _ = server.handle(ServerInput::Packet(p), &mut r);
        }
    }
}

#[test]
fn altered_identity_request_is_caught_by_at_checkcode() {
    // An attacker turns AT_PERMANENT_ID_REQ into AT_ANY_ID_REQ: the peer's hash of the
    // identity round differs from the server's.
    let mut subscribers = store(0);
    let mut server = Server::new(ServerConfig::default());
    let mut peer = peer_with(k(), 0, Some(b"anonymous@example.org"), false);
    let t = converse(
        &mut server,
        &mut peer,
        &mut subscribers,
        ServerInput::Start,
        &mut rng(),
        |from_server, p| {
            if from_server && aka_subtype(p) == Some(Subtype::Identity) {
                p[8] = attribute_type::AT_ANY_ID_REQ;
            }
        },
    );
    assert!(t.peer.contains_problem(&PeerProblem::CheckcodeMismatch));
    assert!(matches!(
        t.server_failure(),
        Some(ServerFailure::ClientError(_))
    ));
}

#[test]
fn endless_identity_requests_get_a_client_error() {
    let mut peer = peer_with(k(), 0, None, false);
    for identifier in 0..=255u8 {
        let request = EapRepr::Request {
            identifier,
            data: TypeData::Aka(AkaRepr::new(Subtype::Identity, vec![Attribute::AnyIdReq])),
        }
        .to_bytes()
        .expect("emit");
        let out = peer.handle(&request);
        let Some(PeerOutput::Send(answer)) = out.last() else {
            panic!("{out:?}");
        };
        let expected = if identifier < 3 {
            Subtype::Identity
        } else {
            Subtype::ClientError
        };
        assert_eq!(aka_subtype(answer), Some(expected));
    }
}

/// Drives one step: the server's outputs go to the peer (packets) or are answered from
/// `record` (subscriber look-ups); returns everything the server output.
fn step(
    server: &mut Server,
    peer: &mut Peer,
    input: ServerInput<'_>,
    record: &dyn Fn() -> Subscriber,
    rng: &mut StdRng,
) -> (Vec<ServerOutput>, Vec<Vec<u8>>) {
    let mut all = Vec::new();
    let mut answers = Vec::new();
    let mut pending = server.handle(input, rng);
    while !pending.is_empty() {
        let mut next = Vec::new();
        for o in pending {
            all.push(o.clone());
            match o {
                ServerOutput::SubscriberNeeded { .. } => {
                    next.extend(server.handle(ServerInput::Subscriber(Some(record())), rng))
                }
                ServerOutput::Send(bytes) => {
                    for p in peer.handle(&bytes) {
                        if let PeerOutput::Send(answer) = p {
                            answers.push(answer);
                        }
                    }
                }
                _ => {}
            }
        }
        pending = next;
    }
    (all, answers)
}

#[test]
fn a_resynchronisation_keeps_the_he_counter_when_it_is_ahead_and_in_range() {
    // TS 33.102 6.3.5: the USIM refuses a challenge built on an older SQN (101, below its
    // SQN_MS 150) while the HE's counter has moved on to 200 meanwhile (other
    // conversations, or the IMSI range's shared counter): 201 is in range, so the HE goes
    // on from its own counter instead of going back to SQN_MS + 1.
    let mut rng = rng();
    let mut server = Server::new(ServerConfig::default());
    let mut peer = peer_with(k(), 150, None, false);
    let record = |sqn_he: u64| {
        move || Subscriber {
            sqn: sqn(sqn_he),
            ..store(0)[IMSI].clone()
        }
    };
    let (_, answers) = step(
        &mut server,
        &mut peer,
        ServerInput::Start,
        &record(100),
        &mut rng,
    );
    let (out, answers) = step(
        &mut server,
        &mut peer,
        ServerInput::Packet(&answers[0]),
        &record(100),
        &mut rng,
    );
    assert!(out
        .iter()
        .any(|o| matches!(o, ServerOutput::SqnUsed { sqn, .. } if sqn.value() == 101)));
    assert_eq!(
        aka_subtype(&answers[0]),
        Some(Subtype::SynchronizationFailure)
    );
    // The store now says 200.
    let (out, answers) = step(
        &mut server,
        &mut peer,
        ServerInput::Packet(&answers[0]),
        &record(200),
        &mut rng,
    );
    assert!(
        out.iter().any(|o| matches!(
            o,
            ServerOutput::Resynchronised { sqn_ms, decision: Resynchronisation::Kept(next), .. }
                if sqn_ms.value() == 150 && next.value() == 201
        )),
        "{out:?}"
    );
    let used: Vec<u64> = out
        .iter()
        .filter_map(|o| match o {
            ServerOutput::SqnUsed { sqn, .. } => Some(sqn.value()),
            _ => None,
        })
        .collect();
    assert_eq!(used, vec![201], "never below a value the HE handed out");
    let (out, _) = step(
        &mut server,
        &mut peer,
        ServerInput::Packet(&answers[0]),
        &record(201),
        &mut rng,
    );
    assert!(out.iter().any(|o| matches!(o, ServerOutput::Success(_))));
    assert_eq!(peer.usim().sqn_ms(), sqn(201));
}

#[test]
fn a_resynchronisation_resets_to_the_next_seq_of_an_array_usim() {
    // A USIM with the annex C array (IND of 5 bits) refuses SQN 10||4 because its entry
    // for IND 4 holds SEQ 10 already; SQN_MS is 10||4. SQN_HE + 1 = 10||5 has no SEQ above
    // SEQ_MS: the HE resets and goes on with SEQ 11, IND 0, which any entry accepts.
    let profile = SqnProfile {
        ind_bits: 5,
        delta: 1 << 28,
    };
    let he = sqn((10 << 5) | 4);
    let ms = sqn((10 << 5) | 4);
    assert_eq!(
        profile.resynchronise(he, ms),
        Some(Resynchronisation::Reset(sqn(11 << 5)))
    );
    // And through the server, with the USIM's AUTS.
    let mut rng = rng();
    let mut server = Server::new(ServerConfig {
        sqn: profile,
        ..ServerConfig::default()
    });
    let mut peer = peer_with(k(), (10 << 5) | 4, None, false);
    let record = |v: u64| {
        move || Subscriber {
            sqn: sqn(v),
            ..store(0)[IMSI].clone()
        }
    };
    let start = (10 << 5) | 3;
    let (_, a) = step(
        &mut server,
        &mut peer,
        ServerInput::Start,
        &record(start),
        &mut rng,
    );
    let (_, a) = step(
        &mut server,
        &mut peer,
        ServerInput::Packet(&a[0]),
        &record(start),
        &mut rng,
    );
    assert_eq!(aka_subtype(&a[0]), Some(Subtype::SynchronizationFailure));
    let (out, a) = step(
        &mut server,
        &mut peer,
        ServerInput::Packet(&a[0]),
        &record(start + 1),
        &mut rng,
    );
    assert!(out.iter().any(|o| matches!(
        o,
        ServerOutput::Resynchronised { decision: Resynchronisation::Reset(next), .. }
            if next.value() == 11 << 5
    )));
    let (out, _) = step(
        &mut server,
        &mut peer,
        ServerInput::Packet(&a[0]),
        &record(11 << 5),
        &mut rng,
    );
    assert!(out.iter().any(|o| matches!(o, ServerOutput::Success(_))));
}

#[test]
fn every_registry_round_trips_named_and_unknown_values() {
    use crate::registry::tests::assert_registry;
    assert_registry::<Code>();
    assert_registry::<EapType>();
    assert_registry::<Subtype>();
    assert_registry::<AttributeType>();
    assert_registry::<NotificationCode>();
    assert_registry::<ClientErrorCode>();
    assert_eq!(Subtype::Challenge.to_string(), "AKA-Challenge");
    assert_eq!(AttributeType::from(11).to_string(), "AT_MAC");
    assert!(NotificationCode::Success.is_success());
    assert!(NotificationCode::GeneralFailure.is_phase_bit());
    assert!(!NotificationCode::from(1026).is_success());
}

/// RFC 3748 section 4.2: Success and Failure are the four header octets alone, and the
/// fixed-size forms are what `emit` writes.
#[test]
fn success_and_failure_bytes_are_the_header_alone() {
    assert_eq!(EapRepr::success_bytes(7), [3, 7, 0, 4]);
    assert_eq!(EapRepr::failure_bytes(9), [4, 9, 0, 4]);
    for identifier in [0, 1, 255] {
        let success = EapRepr::Success { identifier };
        assert_eq!(
            success.to_bytes().unwrap(),
            EapRepr::success_bytes(identifier)
        );
        assert_eq!(
            EapRepr::parse_bytes(&EapRepr::success_bytes(identifier)),
            Ok(success)
        );
        let failure = EapRepr::Failure { identifier };
        assert_eq!(
            failure.to_bytes().unwrap(),
            EapRepr::failure_bytes(identifier)
        );
        assert_eq!(
            EapRepr::parse_bytes(&EapRepr::failure_bytes(identifier)),
            Ok(failure)
        );
    }
}
