//! Replays the fuzz inputs on every `cargo test`, without nightly or cargo-fuzz: each file
//! under `fuzz/regressions/<target>/` (inputs that once crashed a target, kept after the
//! fix) and `fuzz/corpus/<target>/` (a few valid messages per target, the fuzzer's seeds)
//! goes through the same checks as the libFuzzer target, `pmip_common::fuzzing`.
//!
//! The seeds are written by this file too: `FUZZ_WRITE_SEEDS=1 cargo test -p pmip-common
//! --test fuzz_regressions` regenerates `fuzz/corpus/` from the messages built below.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use pmip_common::diameter::codes::{application, avp, command};
use pmip_common::diameter::{Avp, Header, Message};
use pmip_common::eap::{AkaRepr, Attribute, EapRepr, Subtype, TypeData};
use pmip_common::esp::{OutboundSa, NAT_KEEPALIVE, NON_ESP_MARKER};
use pmip_common::fuzzing::{ESP_FUZZ_SPI, TARGETS};
use pmip_common::ike::wire::{
    CfgType, ConfigAttribute, CpPayload, DeletePayload, ExchangeType, Flags, Identification,
    KePayload, NotifyPayload, NotifyType, ProtocolId, SaPayload, TrafficSelector,
};
use pmip_common::ike::{Encr, EspSuite, IkeMessage, IkeSuite, Integ, Payload, Random, SkKeys};
use pmip_common::mh::{
    AccessTechnologyType, BindingAckStatus, BuFlags, ChecksumContext, GreKey, HandoffIndicator,
    HeartbeatRepr, Ipv4HomeAddressReplyStatus, Lifetime, MobilityHeaderRepr, MobilityMessage,
    ProxyBindingAck, ProxyBindingUpdate, Timestamp, IPPROTO_NONE,
};
use pmip_common::tunnel::{encapsulate, GreRepr, OuterHeader, ProtocolType};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every file of `dir` (none if it does not exist), sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(kind: &str) -> usize {
    let mut count = 0;
    for (target, check) in TARGETS {
        for file in files(&fuzz_dir().join(kind).join(target)) {
            let data = std::fs::read(&file).expect("reading a fuzz input");
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{target}: {} fails", file.display());
            count += 1;
        }
    }
    count
}

#[test]
fn every_kept_crash_passes_its_target() {
    replay("regressions");
}

#[test]
fn every_seed_passes_its_target_and_each_target_has_seeds() {
    for (target, _) in TARGETS {
        let n = files(&fuzz_dir().join("corpus").join(target)).len();
        assert!((1..50).contains(&n), "fuzz/corpus/{target} holds {n} seeds");
    }
    assert!(replay("corpus") >= TARGETS.len());
}

/// The seeds are what they say: valid messages that the codecs built, each parsing.
#[test]
fn seeds_are_valid_messages() {
    for (target, name, bytes) in seeds() {
        let ok = match target {
            "mh" => MobilityHeaderRepr::parse(&bytes, ChecksumContext::Skip).is_ok(),
            "ike" => IkeMessage::parse(&bytes).is_ok(),
            "ike_sk" => sk_keys().iter().any(|k| k.open(&bytes).is_ok()),
            "eap" => EapRepr::parse_bytes(&bytes).is_ok(),
            "diameter" => Message::from_bytes(&bytes).is_ok(),
            "esp" => !bytes.is_empty(),
            "gre" => pmip_common::tunnel::decapsulate_ip(&bytes).is_ok(),
            _ => false,
        };
        assert!(ok, "seed {target}/{name} does not parse");
        let check = TARGETS
            .iter()
            .find(|(t, _)| *t == target)
            .expect("a target")
            .1;
        check(&bytes);
    }
    if std::env::var_os("FUZZ_WRITE_SEEDS").is_some() {
        for (target, name, bytes) in seeds() {
            let dir = fuzz_dir().join("corpus").join(target);
            std::fs::create_dir_all(&dir).expect("creating fuzz/corpus");
            std::fs::write(dir.join(name), bytes).expect("writing a seed");
        }
    }
}

/// The `ike_sk` target's keys (the first one): seeds sealed with them open in the target.
fn sk_keys() -> [SkKeys; 1] {
    [SkKeys::new(
        Encr::AES_CBC_128,
        Some(Integ::HmacSha2_256_128),
        vec![0x11; 16],
        vec![0x22; 32],
    )]
}

struct Counter(u8);

impl Random for Counter {
    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            self.0 = self.0.wrapping_add(1);
            *b = self.0;
        }
    }
}

fn pbu() -> ProxyBindingUpdate {
    ProxyBindingUpdate {
        sequence: 7,
        flags: BuFlags(BuFlags::ACK | BuFlags::HOME_REGISTRATION | BuFlags::PROXY),
        lifetime: Lifetime(150),
        mn_id: "001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org".into(),
        apn: Some("internet".into()),
        home_network_prefixes: vec!["::/0".parse().expect("prefix")],
        handoff: HandoffIndicator::AttachmentOverNewInterface,
        access_technology: AccessTechnologyType::Ieee80211,
        timestamp: Some(Timestamp(0x0102_0304_0506_0708)),
        link_local_address: None,
        link_layer_id: None,
        gre_key: Some(GreKey(0x0000_00aa)),
        ipv4_home_address_request: Some("0.0.0.0/0".parse().expect("prefix")),
        ipv4_care_of_address: None,
        restart_counter: Some(3),
        vendor: Vec::new(),
        other: Vec::new(),
    }
}

fn pba(pbu: &ProxyBindingUpdate) -> ProxyBindingAck {
    ProxyBindingAck {
        status: BindingAckStatus::from(0),
        sequence: pbu.sequence,
        lifetime: pbu.lifetime,
        mn_id: Some(pbu.mn_id.clone()),
        apn: pbu.apn.clone(),
        home_network_prefixes: vec!["2001:db8:1::/64".parse().expect("prefix")],
        handoff: Some(pbu.handoff),
        access_technology: Some(pbu.access_technology),
        timestamp: pbu.timestamp,
        link_local_address: None,
        link_layer_id: None,
        gre_key: Some(GreKey(0x0000_00bb)),
        ipv4_home_address_reply: Some((
            Ipv4HomeAddressReplyStatus::Success,
            "10.45.0.2/32".parse().expect("prefix"),
        )),
        ipv4_default_router: Some(Ipv4Addr::new(10, 45, 0, 1)),
        restart_counter: None,
        vendor: Vec::new(),
        other: Vec::new(),
    }
}

fn ike_messages() -> Vec<(&'static str, IkeMessage)> {
    let suite: IkeSuite = IkeSuite::defaults()[0];
    let init = IkeMessage {
        initiator_spi: 0x0102_0304_0506_0708,
        responder_spi: 0,
        exchange_type: ExchangeType::IkeSaInit,
        flags: Flags {
            initiator: true,
            ..Flags::default()
        },
        message_id: 0,
        payloads: vec![
            Payload::Sa(SaPayload {
                proposals: vec![suite.proposal(1)],
            }),
            Payload::Ke(KePayload {
                dh_group: 14.into(),
                key_exchange_data: vec![0x5a; 256],
            }),
            Payload::Nonce(vec![0x4e; 32]),
            Payload::Notify(NotifyPayload::new(NotifyType::from(16388), vec![0x11; 20])),
        ],
    };
    let auth = IkeMessage {
        initiator_spi: 0x0102_0304_0506_0708,
        responder_spi: 0x1112_1314_1516_1718,
        exchange_type: ExchangeType::IkeAuth,
        flags: Flags {
            initiator: true,
            ..Flags::default()
        },
        message_id: 1,
        payloads: vec![
            Payload::IdI(Identification::Rfc822Addr(
                "0001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org".into(),
            )),
            Payload::IdR(Identification::Fqdn("internet".into())),
            Payload::Sa(SaPayload {
                proposals: vec![EspSuite::defaults()[0].proposal(1, 0xc0ff_ee01)],
            }),
            Payload::Cp(CpPayload {
                cfg_type: CfgType::CfgRequest,
                attributes: vec![
                    ConfigAttribute::InternalIp4Address(None),
                    ConfigAttribute::InternalIp6Address(None),
                    ConfigAttribute::InternalIp4Dns(None),
                ],
            }),
            Payload::TsI(vec![
                TrafficSelector::any_ipv4(),
                TrafficSelector::any_ipv6(),
            ]),
            Payload::TsR(vec![
                TrafficSelector::any_ipv4(),
                TrafficSelector::any_ipv6(),
            ]),
        ],
    };
    let eap = IkeMessage {
        message_id: 2,
        flags: Flags {
            response: true,
            ..Flags::default()
        },
        payloads: vec![Payload::Eap(
            EapRepr::Request {
                identifier: 1,
                data: TypeData::Aka(AkaRepr::new(Subtype::Identity, vec![Attribute::AnyIdReq])),
            }
            .to_bytes()
            .expect("emit"),
        )],
        ..auth.clone()
    };
    let delete = IkeMessage {
        exchange_type: ExchangeType::Informational,
        message_id: 3,
        payloads: vec![Payload::Delete(DeletePayload {
            protocol_id: ProtocolId::Esp,
            spis: vec![0xc0ff_ee01],
        })],
        ..auth.clone()
    };
    vec![
        ("ike_sa_init", init),
        ("ike_auth_request", auth),
        ("ike_auth_eap", eap),
        ("informational_delete", delete),
    ]
}

fn diameter_messages() -> Vec<(&'static str, Message)> {
    let der = Message::new(Header::request(
        command::DIAMETER_EAP,
        application::SWM,
        true,
        0x11,
        0x22,
    ))
    .with(Avp::utf8(avp::SESSION_ID, "epdg.example.org;1;2"))
    .with(Avp::u32(avp::AUTH_APPLICATION_ID, application::SWM))
    .with(Avp::identity(avp::ORIGIN_HOST, "epdg.example.org"))
    .with(Avp::identity(avp::ORIGIN_REALM, "example.org"))
    .with(Avp::octets(
        avp::EAP_PAYLOAD,
        &EapRepr::Response {
            identifier: 0,
            data: TypeData::Identity(b"0001010000000001@example.org".to_vec()),
        }
        .to_bytes()
        .expect("emit"),
    ));
    let cer = Message::new(Header::request(
        command::CAPABILITIES_EXCHANGE,
        0,
        false,
        1,
        1,
    ))
    .with(Avp::identity(avp::ORIGIN_HOST, "epdg.example.org"))
    .with(Avp::identity(avp::ORIGIN_REALM, "example.org"))
    .with(Avp::address(
        avp::HOST_IP_ADDRESS,
        &pmip_common::diameter::Address::Ip(Ipv4Addr::new(192, 0, 2, 1).into()),
    ))
    .with(Avp::u32(avp::AUTH_APPLICATION_ID, application::SWM));
    let grouped = Message::new(Header::request(command::AA, application::SWM, true, 3, 4))
        .with(Avp::utf8(avp::SESSION_ID, "epdg.example.org;1;3"))
        .with(Avp::grouped(
            avp::MIP6_AGENT_INFO,
            &[Avp::address(
                avp::HOST_IP_ADDRESS,
                &pmip_common::diameter::Address::Ip(Ipv6Addr::LOCALHOST.into()),
            )],
        ));
    vec![("der", der), ("cer", cer), ("aar_grouped", grouped)]
}

/// The seed corpus: (target, file name, bytes).
fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut seeds = Vec::new();
    let pbu = pbu();
    let pba = pba(&pbu);
    let v6 = ChecksumContext::Skip;
    seeds.push(("mh", "pbu", pbu.to_message().to_bytes(v6)));
    seeds.push(("mh", "pba", pba.to_message().to_bytes(v6)));
    let heartbeat = MobilityHeaderRepr {
        payload_proto: IPPROTO_NONE,
        message: MobilityMessage::Heartbeat(HeartbeatRepr {
            unsolicited: false,
            response: true,
            sequence: 42,
            options: vec![pmip_common::mh::MobilityOption::RestartCounter(9)],
        }),
    };
    seeds.push(("mh", "heartbeat", heartbeat.to_bytes(v6)));

    for (name, m) in ike_messages() {
        seeds.push(("ike", name, m.to_bytes()));
        let sealed = sk_keys()[0].seal(&m, &mut Counter(0)).expect("seal");
        seeds.push(("ike_sk", name, sealed));
    }

    let eaps = [
        (
            "identity_response",
            EapRepr::Response {
                identifier: 0,
                data: TypeData::Identity(b"0001010000000001@example.org".to_vec()),
            },
        ),
        (
            "aka_challenge",
            EapRepr::Request {
                identifier: 2,
                data: TypeData::Aka(AkaRepr::new(
                    Subtype::Challenge,
                    vec![
                        Attribute::Rand([0x12; 16]),
                        Attribute::Autn([0x34; 16]),
                        Attribute::ResultInd,
                        Attribute::Checkcode(None),
                        Attribute::Mac([0x56; 16]),
                    ],
                )),
            },
        ),
        (
            "aka_identity",
            EapRepr::Response {
                identifier: 1,
                data: TypeData::Aka(AkaRepr::new(
                    Subtype::Identity,
                    vec![Attribute::Identity(
                        b"0001010000000001@example.org".to_vec(),
                    )],
                )),
            },
        ),
        ("success", EapRepr::Success { identifier: 3 }),
    ];
    for (name, repr) in eaps {
        seeds.push(("eap", name, repr.to_bytes().expect("emit")));
    }

    for (name, m) in diameter_messages() {
        seeds.push(("diameter", name, m.to_vec().expect("emit")));
    }

    let inner_v4 = {
        let mut p = vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0];
        p.extend_from_slice(&[
            10, 45, 0, 2, 10, 0, 0, 1, 0x30, 0x39, 0x00, 0x35, 0, 8, 0, 0,
        ]);
        p
    };
    let gcm = EspSuite {
        encr: Encr::AES_GCM_16_128,
        integ: None,
    };
    let mut tx = OutboundSa::new(ESP_FUZZ_SPI, gcm, &[0x44; 20], &[]).expect("keys");
    let mut packet = Vec::new();
    tx.encapsulate_ip(&inner_v4, &mut Counter(0), &mut packet)
        .expect("seal");
    seeds.push(("esp", "gcm_ipv4", packet));
    seeds.push(("esp", "nat_keepalive", NAT_KEEPALIVE.to_vec()));
    let mut ike_in_udp = NON_ESP_MARKER.to_vec();
    ike_in_udp.extend_from_slice(&ike_messages()[0].1.to_bytes());
    seeds.push(("esp", "non_esp_marker_ike", ike_in_udp));
    seeds.push((
        "esp",
        "replay_steps",
        vec![0, 1, 0, 1, 0, 200, 255, 0, 0, 3],
    ));

    for (name, outer) in [
        (
            "ipv4_outer",
            OuterHeader {
                source: Ipv4Addr::new(192, 0, 2, 1).into(),
                destination: Ipv4Addr::new(192, 0, 2, 2).into(),
                hop_limit: 64,
            },
        ),
        (
            "ipv6_outer",
            OuterHeader {
                source: "2001:db8::1".parse::<Ipv6Addr>().expect("address").into(),
                destination: "2001:db8::2".parse::<Ipv6Addr>().expect("address").into(),
                hop_limit: 64,
            },
        ),
    ] {
        let gre = GreRepr {
            checksum_present: name == "ipv6_outer",
            sequence_number: Some(5),
            ..GreRepr::keyed(ProtocolType::Ipv4, 0xaa)
        };
        let mut out = Vec::new();
        encapsulate(&outer, &gre, &inner_v4, &mut out).expect("encapsulate");
        seeds.push(("gre", name, out));
    }
    seeds
}
