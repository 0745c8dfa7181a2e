//! tshark as an independent decoder of our IKEv2 codec and SK payload (docs/testing.md).
//!
//! For each suite (AES-GCM-16-256, AES-CBC-256 with HMAC-SHA2-256-128, AES-CBC-128 with
//! HMAC-SHA1-96) an S2b IKE_SA_INIT (UDP 500) and an encrypted IKE_AUTH request and
//! response (UDP 4500, after the non-ESP marker) are built with `pmip_common::ike`,
//! written to a pcap, and decoded by `tshark -V -T json` with the SA's keys in Wireshark's
//! IKEv2 decryption table. We require no malformed-packet mark and no expert info, that
//! tshark's integrity check of every SK payload succeeds, and that the payloads and
//! fields tshark finds inside are the ones we sealed.
//!
//! tshark is installed by `scripts/setup.sh`; without it this test fails. Set
//! `IKE_ORACLE_PCAP=/some/file.pcap` to keep the capture for Wireshark.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use integration_tests::tshark_fields::{values, walk};
use pmip_common::eap::{Code, EapPacket, EapRepr, TypeData};
use pmip_common::ike::keys::{nat_detection_hash, shared_key_auth, signed_octets};
use pmip_common::ike::wire::*;
use pmip_common::ike::{DhPrivate, Encr, EspSuite, IkeSaKeys, IkeSuite, Random, SkKeys};
use pmip_node::pcap::PcapWriter;
use serde_json::Value;

/// The Code of an EAP packet the peer handed over, if it is one.
fn eap_code(eap: &[u8]) -> Option<Code> {
    EapPacket::new_checked(eap).ok().map(|p| p.code())
}

const NAI: &str = "0234150999999999@nai.epc.mnc015.mcc234.3gppnetwork.org";
const APN: &str = "ims.mnc015.mcc234.gprs";

/// A deterministic byte stream standing in for the OS generator.
struct Counter(u8);

impl Random for Counter {
    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            self.0 = self.0.wrapping_mul(13).wrapping_add(7);
            *b = self.0;
        }
    }
}

struct Exchange {
    spi_i: u64,
    spi_r: u64,
    keys: IkeSaKeys,
    /// (from the UE, the message as built, the datagram as sent).
    datagrams: Vec<(bool, IkeMessage, Vec<u8>)>,
}

fn ue() -> SocketAddr {
    "192.0.2.10:500".parse().unwrap()
}

fn epdg() -> SocketAddr {
    "198.51.100.1:500".parse().unwrap()
}

fn notify(t: NotifyType, data: Vec<u8>) -> Payload {
    Payload::Notify(NotifyPayload::new(t, data))
}

fn exchange(suite: IkeSuite, spi_i: u64, spi_r: u64) -> Exchange {
    let mut rng = Counter(spi_i as u8);
    let ue_dh = DhPrivate::generate(suite.dh, &mut rng).unwrap();
    let epdg_dh = DhPrivate::generate(suite.dh, &mut rng).unwrap();
    let (mut ni, mut nr) = (vec![0u8; 32], vec![0u8; 32]);
    rng.fill(&mut ni);
    rng.fill(&mut nr);
    let init = |flags, responder_spi, payloads| IkeMessage {
        initiator_spi: spi_i,
        responder_spi,
        exchange_type: ExchangeType::IkeSaInit,
        flags,
        message_id: 0,
        payloads,
    };
    let request = init(
        Flags {
            initiator: true,
            ..Flags::default()
        },
        0,
        vec![
            Payload::Sa(SaPayload {
                proposals: vec![suite.proposal(1)],
            }),
            Payload::Ke(KePayload {
                dh_group: suite.dh.id(),
                key_exchange_data: ue_dh.public_value().to_vec(),
            }),
            Payload::Nonce(ni.clone()),
            notify(
                NotifyType::NatDetectionSourceIp,
                nat_detection_hash(spi_i, 0, ue()).to_vec(),
            ),
            notify(
                NotifyType::NatDetectionDestinationIp,
                nat_detection_hash(spi_i, 0, epdg()).to_vec(),
            ),
        ],
    );
    let response = init(
        Flags {
            response: true,
            ..Flags::default()
        },
        spi_r,
        vec![
            Payload::Sa(SaPayload {
                proposals: vec![suite.proposal(1)],
            }),
            Payload::Ke(KePayload {
                dh_group: suite.dh.id(),
                key_exchange_data: epdg_dh.public_value().to_vec(),
            }),
            Payload::Nonce(nr.clone()),
            notify(
                NotifyType::NatDetectionSourceIp,
                nat_detection_hash(spi_i, spi_r, epdg()).to_vec(),
            ),
            notify(
                NotifyType::NatDetectionDestinationIp,
                nat_detection_hash(spi_i, spi_r, ue()).to_vec(),
            ),
        ],
    );
    let ue_public = ue_dh.public_value().to_vec();
    let g_ir = epdg_dh.shared_secret(&ue_public).unwrap();
    let keys = IkeSaKeys::from_ike_sa_init(&suite, &g_ir, &ni, &nr, spi_i, spi_r).unwrap();

    let child = EspSuite {
        encr: Encr::AES_GCM_16_128,
        integ: None,
    };
    let auth_request = IkeMessage {
        initiator_spi: spi_i,
        responder_spi: spi_r,
        exchange_type: ExchangeType::IkeAuth,
        flags: Flags {
            initiator: true,
            ..Flags::default()
        },
        message_id: 1,
        payloads: vec![
            Payload::IdI(Identification::Rfc822Addr(NAI.into())),
            Payload::IdR(Identification::Fqdn(APN.into())),
            Payload::Cp(CpPayload {
                cfg_type: CfgType::CfgRequest,
                attributes: vec![
                    ConfigAttribute::InternalIp4Address(None),
                    ConfigAttribute::InternalIp4Dns(None),
                    ConfigAttribute::InternalIp6Address(None),
                    ConfigAttribute::InternalIp6Dns(None),
                    ConfigAttribute::PCscfIp4Address(None),
                    ConfigAttribute::PCscfIp6Address(None),
                ],
            }),
            Payload::Sa(SaPayload {
                proposals: vec![child.proposal(1, 0xc0ff_ee01)],
            }),
            Payload::TsI(vec![
                TrafficSelector::any_ipv4(),
                TrafficSelector::any_ipv6(),
            ]),
            Payload::TsR(vec![
                TrafficSelector::any_ipv4(),
                TrafficSelector::any_ipv6(),
            ]),
            notify(NotifyType::InitialContact, vec![]),
            notify(NotifyType::EapOnlyAuthentication, vec![]),
        ],
    };
    let msk = [0x4d; 64];
    let epdg_auth = shared_key_auth(
        suite.prf,
        &msk,
        &signed_octets(
            suite.prf,
            &response.to_bytes(),
            &ni,
            &keys.sk_pr,
            &Identification::Fqdn(APN.into()).body_bytes(),
        ),
    );
    let auth_response = IkeMessage {
        initiator_spi: spi_i,
        responder_spi: spi_r,
        exchange_type: ExchangeType::IkeAuth,
        flags: Flags {
            response: true,
            ..Flags::default()
        },
        message_id: 1,
        payloads: vec![
            Payload::IdR(Identification::Fqdn(APN.into())),
            Payload::Auth(AuthPayload {
                method: AuthMethod::SharedKeyMessageIntegrityCode,
                data: epdg_auth,
            }),
            Payload::Cp(CpPayload {
                cfg_type: CfgType::CfgReply,
                attributes: vec![
                    ConfigAttribute::InternalIp4Address(Some(Ipv4Addr::new(10, 45, 0, 7))),
                    ConfigAttribute::InternalIp4Dns(Some(Ipv4Addr::new(10, 45, 0, 1))),
                    ConfigAttribute::InternalIp6Address(Some((
                        "2001:db8:45:7::".parse().unwrap(),
                        64,
                    ))),
                    ConfigAttribute::PCscfIp4Address(Some(Ipv4Addr::new(10, 46, 0, 2))),
                    ConfigAttribute::PCscfIp6Address(Some("2001:db8:46::2".parse().unwrap())),
                ],
            }),
            Payload::Sa(SaPayload {
                proposals: vec![child.proposal(1, 0xdead_beef)],
            }),
            Payload::TsI(vec![TrafficSelector::AddrRange {
                ip_protocol: 0,
                start_port: 0,
                end_port: 65535,
                start_address: Ipv4Addr::new(10, 45, 0, 7).into(),
                end_address: Ipv4Addr::new(10, 45, 0, 7).into(),
            }]),
            Payload::TsR(vec![TrafficSelector::any_ipv4()]),
        ],
    };
    let sealed_request = keys.initiator_sk().seal(&auth_request, &mut rng).unwrap();
    let sealed_response = keys.responder_sk().seal(&auth_response, &mut rng).unwrap();
    Exchange {
        spi_i,
        spi_r,
        datagrams: vec![
            (true, request.clone(), request.to_bytes()),
            (false, response.clone(), response.to_bytes()),
            (true, auth_request, sealed_request),
            (false, auth_response, sealed_response),
        ],
        keys,
    }
}

/// One record of Wireshark's `ikev2_decryption_table`, as `--keylog` writes it.
fn decryption_record(x: &Exchange) -> String {
    format!(
        "uat:ikev2_decryption_table:{}",
        x.keys.wireshark_decryption_record(x.spi_i, x.spi_r)
    )
}

/// `tshark -V -T json` of a capture with these `-o` preferences: one JSON value a packet.
fn tshark(pcap: &Path, options: &[String]) -> Vec<Value> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(pcap)
        .args(["-V", "-T", "json", "--no-duplicate-keys"]);
    for o in options {
        cmd.arg("-o").arg(o);
    }
    let out = cmd
        .output()
        .expect("tshark must be installed (scripts/setup.sh)");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn colon_hex(b: &[u8]) -> String {
    b.iter()
        .map(|o| format!("{o:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Checks that what tshark decoded is the message we built.
fn check(n: usize, exchange: &Exchange, message: &IkeMessage, fields: &[(String, String)]) {
    let suite = exchange.keys.suite();
    let one = |key: &str| values(fields, key).first().map(|s| s.to_string());
    assert_eq!(
        one("isakmp.ispi"),
        Some(colon_hex(&exchange.spi_i.to_be_bytes())),
        "packet {n}"
    );
    assert_eq!(
        one("isakmp.exchangetype"),
        Some(u8::from(message.exchange_type).to_string()),
        "packet {n}"
    );
    assert_eq!(
        one("isakmp.messageid"),
        Some(format!("0x{:08x}", message.message_id)),
        "packet {n}"
    );
    // The payload chain tshark walked (inside SK too), proposals and transforms aside.
    let chain: Vec<u8> = values(fields, "isakmp.typepayload")
        .iter()
        .filter_map(|v| v.parse::<u8>().ok())
        .filter(|t| *t >= 33)
        .collect();
    let mut want: Vec<u8> = message
        .payloads
        .iter()
        .map(|p| p.payload_type().into())
        .collect();
    if message.exchange_type == ExchangeType::IkeAuth {
        want.insert(0, 46);
    }
    assert_eq!(chain, want, "packet {n}: payload chain");
    let notifies: Vec<String> = message
        .notifies()
        .map(|m| u16::from(m.notify_type).to_string())
        .collect();
    assert_eq!(
        values(fields, "isakmp.notify.msgtype"),
        notifies,
        "packet {n}"
    );

    for p in &message.payloads {
        match p {
            Payload::Sa(sa) if message.exchange_type == ExchangeType::IkeSaInit => {
                let t = &sa.proposals[0];
                assert_eq!(
                    values(fields, "isakmp.tf.type").len(),
                    t.transforms.len(),
                    "packet {n}"
                );
                assert_eq!(
                    values(fields, "isakmp.tf.id.dh"),
                    vec![u16::from(suite.dh.id()).to_string()],
                    "packet {n}"
                );
                assert_eq!(
                    values(fields, "isakmp.tf.id.prf"),
                    vec![u16::from(suite.prf.id()).to_string()],
                    "packet {n}"
                );
                let integ: Vec<String> = suite
                    .integ
                    .iter()
                    .map(|i| u16::from(i.id()).to_string())
                    .collect();
                assert_eq!(values(fields, "isakmp.tf.id.integ"), integ, "packet {n}");
                let key_bits = (suite.encr.cipher_key_len() * 8).to_string();
                assert_eq!(
                    values(fields, "isakmp.ike2.attr.key_length"),
                    vec![key_bits.as_str()],
                    "packet {n}"
                );
            }
            Payload::Sa(sa) => {
                assert_eq!(
                    values(fields, "isakmp.spi"),
                    vec![colon_hex(&sa.proposals[0].spi)],
                    "packet {n}: ESP SPI"
                );
            }
            Payload::Ke(ke) => {
                assert_eq!(
                    values(fields, "isakmp.key_exchange.dh_group"),
                    vec![u16::from(ke.dh_group).to_string()],
                    "packet {n}"
                );
                assert_eq!(
                    values(fields, "isakmp.key_exchange.data"),
                    vec![colon_hex(&ke.key_exchange_data)],
                    "packet {n}"
                );
            }
            Payload::Nonce(nonce) => {
                assert_eq!(
                    values(fields, "isakmp.nonce"),
                    vec![colon_hex(nonce)],
                    "packet {n}"
                )
            }
            Payload::Notify(nt) if !nt.data.is_empty() => {
                assert!(
                    values(fields, "isakmp.notify.data").contains(&colon_hex(&nt.data).as_str()),
                    "packet {n}: notify data"
                );
            }
            Payload::IdI(Identification::Rfc822Addr(nai)) => {
                assert_eq!(
                    values(fields, "isakmp.id.data.user_fqdn"),
                    vec![nai.as_str()]
                );
            }
            Payload::IdR(Identification::Fqdn(apn)) => {
                assert_eq!(values(fields, "isakmp.id.data.fqdn"), vec![apn.as_str()]);
            }
            Payload::Auth(auth) => {
                assert_eq!(one("isakmp.auth.method"), Some("2".to_string()));
                assert_eq!(
                    values(fields, "isakmp.auth.data"),
                    vec![colon_hex(&auth.data)],
                    "packet {n}"
                );
            }
            Payload::Cp(cp) => {
                assert_eq!(
                    one("isakmp.cfg.type"),
                    Some(u8::from(cp.cfg_type).to_string()),
                    "packet {n}"
                );
                let types: Vec<String> = cp
                    .attributes
                    .iter()
                    .map(|a| a.attribute_type().to_string())
                    .collect();
                assert_eq!(values(fields, "isakmp.cfg.attr.type"), types, "packet {n}");
                for a in &cp.attributes {
                    let (field, value) = match a {
                        ConfigAttribute::InternalIp4Address(Some(v)) => {
                            ("isakmp.cfg.attr.internal_ip4_address", v.to_string())
                        }
                        ConfigAttribute::InternalIp4Dns(Some(v)) => {
                            ("isakmp.cfg.attr.internal_ip4_dns", v.to_string())
                        }
                        ConfigAttribute::InternalIp6Address(Some((v, len))) => {
                            assert_eq!(
                                one("isakmp.cfg.attr.internal_ip6_address.prefix"),
                                Some(len.to_string())
                            );
                            ("isakmp.cfg.attr.internal_ip6_address", v.to_string())
                        }
                        ConfigAttribute::PCscfIp4Address(Some(v)) => {
                            ("isakmp.cfg.attr.p_cscf_ip4_address", v.to_string())
                        }
                        ConfigAttribute::PCscfIp6Address(Some(v)) => {
                            ("isakmp.cfg.attr.p_cscf_ip6_address", v.to_string())
                        }
                        _ => continue,
                    };
                    assert_eq!(values(fields, field), vec![value.as_str()], "packet {n}");
                }
            }
            Payload::TsI(ts) | Payload::TsR(ts) => {
                for t in ts {
                    if let TrafficSelector::AddrRange {
                        start_address: std::net::IpAddr::V4(a),
                        ..
                    } = t
                    {
                        assert!(
                            values(fields, "isakmp.ts.start_ipv4")
                                .contains(&a.to_string().as_str()),
                            "packet {n}: TS start {a}"
                        );
                    }
                }
            }
            _ => {}
        }
    }
}

#[test]
fn tshark_decrypts_and_decodes_our_ike_sa_init_and_ike_auth() {
    let suites: Vec<IkeSuite> = [
        "aes256gcm16-prfsha256-ecp256",
        "aes128gcm16-prfsha1-curve25519",
        "aes256-sha256-prfsha256-curve25519",
        "aes128-sha1-prfsha1-modp2048",
        "aes128-sha256-prfsha256-modp1024",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let exchanges: Vec<Exchange> = suites
        .iter()
        .enumerate()
        .map(|(i, s)| {
            exchange(
                *s,
                0x1111_0000_0000_0000 + i as u64,
                0x2222_0000_0000_0000 + i as u64,
            )
        })
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let kept = std::env::var_os("IKE_ORACLE_PCAP");
    let path = kept
        .as_ref()
        .map(|p| Path::new(p).to_path_buf())
        .unwrap_or_else(|| dir.path().join("ike.pcap"));
    let mut pcap = PcapWriter::create(&path).unwrap();
    let mut t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let nat_t = |a: SocketAddr| SocketAddr::new(a.ip(), 4500);
    for x in &exchanges {
        for (from_ue, message, datagram) in &x.datagrams {
            let (src, dst) = if *from_ue {
                (ue(), epdg())
            } else {
                (epdg(), ue())
            };
            if message.exchange_type == ExchangeType::IkeSaInit {
                pcap.write_udp(t, src, dst, datagram).unwrap();
            } else {
                // Port 4500 carries IKE after the four-octet non-ESP marker (RFC 3948).
                let mut d = vec![0u8; 4];
                d.extend_from_slice(datagram);
                pcap.write_udp(t, nat_t(src), nat_t(dst), &d).unwrap();
            }
            t += Duration::from_millis(10);
        }
    }
    pcap.flush().unwrap();
    drop(pcap);

    let mut options = vec![
        "ip.check_checksum:TRUE".to_string(),
        "udp.check_checksum:TRUE".to_string(),
    ];
    options.extend(exchanges.iter().map(decryption_record));
    let packets = tshark(&path, &options);
    assert_eq!(packets.len(), 4 * exchanges.len());

    for (n, packet) in packets.iter().enumerate() {
        let mut fields = Vec::new();
        walk(packet, &mut fields);
        let dump = || serde_json::to_string_pretty(packet).unwrap_or_default();
        // No malformed mark and no expert info: this includes tshark's own check of
        // every SK payload's Integrity Checksum Data (or GCM tag) with our keys.
        assert!(
            !fields
                .iter()
                .any(|(k, _)| k.starts_with("_ws.malformed") || k.starts_with("_ws.expert")),
            "packet {n}: malformed or expert info:\n{}",
            dump()
        );
        for status in ["ip.checksum.status", "udp.checksum.status"] {
            assert_eq!(values(&fields, status), vec!["1"], "packet {n}: {status}");
        }
        let exchange = &exchanges[n / 4];
        let (_, message, _) = &exchange.datagrams[n % 4];
        if message.exchange_type == ExchangeType::IkeAuth {
            assert_eq!(values(&fields, "isakmp.enc.icd").len(), 1, "packet {n}");
        }
        check(n, exchange, message, &fields);
    }
}

/// A whole attach as the state machines run it (UE `InitiatorSa` against the ePDG's
/// `Endpoint`, EAP relayed by stand-in applications), recorded on the wire and decoded by
/// tshark with the ePDG's keylog record.
#[test]
fn tshark_decodes_an_attach_driven_by_the_state_machines() {
    use pmip_common::ike::endpoint::{Endpoint, EndpointOutput};
    use pmip_common::ike::initiator::{InitiatorConfig, InitiatorSa};
    use pmip_common::ike::responder::{Acceptance, ResponderConfig};
    use pmip_common::ike::sa::{Event, Output, RetransmitPolicy};
    use std::time::Instant;

    let ue_addr: SocketAddr = "192.0.2.10:500".parse().unwrap();
    let epdg_addr: SocketAddr = "198.51.100.1:500".parse().unwrap();
    let mut rng = Counter(9);
    let now = Instant::now();
    let config = InitiatorConfig {
        suites: vec!["aes256gcm16-prfsha256-ecp256".parse().unwrap()],
        esp_suites: EspSuite::defaults(),
        idi: Identification::Rfc822Addr(NAI.into()),
        idr: Some(Identification::Fqdn(APN.into())),
        cp_request: vec![
            ConfigAttribute::InternalIp4Address(None),
            ConfigAttribute::InternalIp6Address(None),
            ConfigAttribute::PCscfIp4Address(None),
        ],
        tsi: vec![TrafficSelector::any_ipv4()],
        tsr: vec![TrafficSelector::any_ipv4()],
        local: ue_addr,
        remote: epdg_addr,
        force_port_4500: true,
        eap_only: true,
        peer_verifier: None,
        retransmit: RetransmitPolicy::default(),
        ..InitiatorConfig::default()
    };
    let mut endpoint = Endpoint::new(ResponderConfig::default(), &mut rng);
    let mut out = Vec::new();
    let mut ue = InitiatorSa::start(config, now, &mut rng, &mut out).unwrap();
    let mut epdg_spi = None;
    // (from the UE, datagram, port 4500)
    let mut wire: Vec<(bool, Vec<u8>, bool)> = Vec::new();
    let mut to_epdg: Vec<(Vec<u8>, bool)> = Vec::new();
    let mut established = 0;
    let msk = vec![0x4d; 64];
    let take = |out: &mut Vec<Output>| std::mem::take(out);
    for o in take(&mut out) {
        if let Output::Send { bytes, port_4500 } = o {
            to_epdg.push((bytes, port_4500));
        }
    }
    for _ in 0..20 {
        let Some((d, via_4500)) = to_epdg.pop() else {
            break;
        };
        wire.push((true, d.clone(), via_4500));
        let mut epdg_out = Vec::new();
        let (mut remote, mut local) = (ue_addr, epdg_addr);
        if via_4500 {
            remote.set_port(4500);
            local.set_port(4500);
        }
        endpoint.handle(&d, remote, local, via_4500, now, &mut rng, &mut epdg_out);
        let mut more = Vec::new();
        for o in &epdg_out {
            match o {
                EndpointOutput::Created { spi } => epdg_spi = Some(*spi),
                EndpointOutput::Event {
                    spi,
                    event: Event::AuthRequested(_),
                } => {
                    let identity_request = EapRepr::Request {
                        identifier: 1,
                        data: TypeData::Identity(Vec::new()),
                    };
                    assert!(endpoint.send_eap(
                        *spi,
                        identity_request.to_bytes().unwrap(),
                        now,
                        &mut rng,
                        &mut more
                    ));
                }
                EndpointOutput::Event {
                    spi,
                    event: Event::EapResponse(_),
                } => {
                    let acceptance = Acceptance {
                        cp_reply: vec![
                            ConfigAttribute::InternalIp4Address(Some(Ipv4Addr::new(10, 45, 0, 7))),
                            ConfigAttribute::InternalIp6Address(Some((
                                "2001:db8:45:7::".parse().unwrap(),
                                64,
                            ))),
                            ConfigAttribute::PCscfIp4Address(Some(Ipv4Addr::new(10, 46, 0, 2))),
                        ],
                        tsi: vec![TrafficSelector::AddrRange {
                            ip_protocol: 0,
                            start_port: 0,
                            end_port: 65535,
                            start_address: Ipv4Addr::new(10, 45, 0, 7).into(),
                            end_address: Ipv4Addr::new(10, 45, 0, 7).into(),
                        }],
                        tsr: vec![TrafficSelector::any_ipv4()],
                    };
                    assert!(endpoint.eap_success(
                        *spi,
                        EapRepr::success_bytes(1).to_vec(),
                        msk.clone(),
                        acceptance,
                        0xe0e0_e0e0,
                        now,
                        &mut rng,
                        &mut more
                    ));
                }
                EndpointOutput::Event {
                    event: Event::Established(_),
                    ..
                } => established += 1,
                EndpointOutput::Event {
                    event: Event::Closed(r),
                    ..
                } => panic!("ePDG closed: {r:?}"),
                _ => {}
            }
        }
        epdg_out.extend(more);
        for o in epdg_out {
            let EndpointOutput::Transmit(t) = o else {
                continue;
            };
            assert_eq!(t.remote.ip(), ue_addr.ip());
            let (bytes, port_4500) = (t.bytes, t.natt);
            wire.push((false, bytes.clone(), port_4500));
            let mut ue_out = Vec::new();
            ue.handle(&bytes, port_4500, now, &mut rng, &mut ue_out);
            let mut more = Vec::new();
            for o in &ue_out {
                match o {
                    Output::Event(Event::EapRequest(eap))
                        if eap_code(eap) == Some(Code::Request) =>
                    {
                        let response = EapRepr::Response {
                            identifier: EapPacket::new_checked(&eap[..]).unwrap().identifier(),
                            data: TypeData::Identity(NAI.as_bytes().to_vec()),
                        };
                        assert!(ue.send_eap(
                            response.to_bytes().unwrap(),
                            now,
                            &mut rng,
                            &mut more
                        ));
                    }
                    Output::Event(Event::EapRequest(eap))
                        if eap_code(eap) == Some(Code::Success) =>
                    {
                        assert!(ue.complete_eap(msk.clone(), now, &mut rng, &mut more));
                    }
                    Output::Event(Event::Established(_)) => established += 1,
                    Output::Event(Event::Closed(r)) => panic!("UE closed: {r:?}"),
                    _ => {}
                }
            }
            ue_out.extend(more);
            for o in ue_out {
                if let Output::Send { bytes, port_4500 } = o {
                    to_epdg.push((bytes, port_4500));
                }
            }
        }
    }
    assert_eq!(established, 2, "both sides established");
    // IKE_SA_INIT pair and three IKE_AUTH pairs.
    assert_eq!(wire.len(), 8);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("attach.pcap");
    let mut pcap = PcapWriter::create(&path).unwrap();
    let mut t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for (from_ue, d, port_4500) in &wire {
        let (mut src, mut dst) = if *from_ue {
            (ue_addr, epdg_addr)
        } else {
            (epdg_addr, ue_addr)
        };
        let mut payload = d.clone();
        if *port_4500 {
            src.set_port(4500);
            dst.set_port(4500);
            payload.splice(0..0, [0u8; 4]);
        }
        pcap.write_udp(t, src, dst, &payload).unwrap();
        t += Duration::from_millis(5);
    }
    pcap.flush().unwrap();
    drop(pcap);

    let sa = epdg_spi.and_then(|spi| endpoint.sa(spi)).unwrap();
    let record = format!(
        "uat:ikev2_decryption_table:{}",
        sa.keys()
            .wireshark_decryption_record(sa.initiator_spi(), sa.responder_spi())
    );
    let packets = tshark(&path, &[record]);
    assert_eq!(packets.len(), wire.len());
    let mut eap_codes = Vec::new();
    for (n, packet) in packets.iter().enumerate() {
        let mut fields = Vec::new();
        walk(packet, &mut fields);
        assert!(
            !fields
                .iter()
                .any(|(k, _)| k.starts_with("_ws.malformed") || k.starts_with("_ws.expert")),
            "packet {n}: malformed or expert info:\n{}",
            serde_json::to_string_pretty(packet).unwrap_or_default()
        );
        let (_, d, _) = &wire[n];
        let header = IkeHeader::new_checked(&d[..]).unwrap();
        assert_eq!(
            values(&fields, "isakmp.messageid"),
            vec![format!("0x{:08x}", header.message_id())],
            "packet {n}"
        );
        eap_codes.extend(values(&fields, "eap.code").iter().map(|c| c.to_string()));
        if n == 7 {
            assert_eq!(
                values(&fields, "isakmp.cfg.attr.internal_ip4_address"),
                vec!["10.45.0.7"]
            );
            assert_eq!(values(&fields, "isakmp.auth.method"), vec!["2"]);
        }
    }
    assert_eq!(
        eap_codes,
        vec!["1", "2", "3"],
        "EAP Request, Response, Success"
    );
}

/// Two nodes' endpoints back to back (RFC 5213 section 4: a MAG and its LMA, UDP 500):
/// IKE_AUTH with a pre-shared key or certificates for a transport-mode CHILD_SA (ENCR_NULL
/// with HMAC-SHA2-256-128), a CHILD_SA rekey with PFS from the MAG, an IKE SA rekey from
/// the LMA, CHILD_SA rekeys on the new IKE SA from both, and the Delete.
mod nodes {
    use std::collections::VecDeque;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::Arc;
    use std::time::Instant;

    use pmip_common::ike::auth::EcdsaP256Signer;
    use pmip_common::ike::auth::{LocalAuth, PeerAuth, PeerVerifier, Psk, Signer};
    use pmip_common::ike::ca::CaVerifier;
    use pmip_common::ike::child::{ChildPolicy, Lifetimes};
    use pmip_common::ike::endpoint::{Endpoint, EndpointOutput, Transmit};
    use pmip_common::ike::initiator::InitiatorConfig;
    use pmip_common::ike::responder::ResponderConfig;
    use pmip_common::ike::sa::{CloseReason, Event};
    use pmip_common::ike::wire::{Identification, TrafficSelector};
    use pmip_common::ike::DhGroup;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType,
        PKCS_ECDSA_P256_SHA256,
    };

    use super::Counter;

    pub const MAG: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    pub const LMA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    /// What went over the wire (from the MAG, the datagram) and the keylog records the
    /// endpoints gave (at Established and at each IKE SA rekey).
    pub struct Run {
        pub wire: Vec<(bool, Vec<u8>)>,
        pub records: Vec<String>,
    }

    pub fn udp(ip: Ipv4Addr, port: Option<u16>) -> TrafficSelector {
        let (start_port, end_port) = port.map_or((0, u16::MAX), |p| (p, p));
        TrafficSelector::AddrRange {
            ip_protocol: 17,
            start_port,
            end_port,
            start_address: ip.into(),
            end_address: ip.into(),
        }
    }

    /// A CA and signers with certificates for `names`, signed by it.
    fn pki(names: &[&str]) -> (Vec<u8>, Vec<EcdsaP256Signer>) {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "operator CA");
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let ca_der = ca.self_signed(&ca_key).unwrap().der().to_vec();
        let issuer = Issuer::new(ca, ca_key);
        let signers = names
            .iter()
            .map(|name| {
                let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
                p.distinguished_name.push(DnType::CommonName, *name);
                p.subject_alt_names = vec![SanType::DnsName((*name).try_into().unwrap())];
                let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
                let cert = p.signed_by(&key, &issuer).unwrap();
                EcdsaP256Signer::from_pkcs8(&key.serialize_der(), cert.der().to_vec()).unwrap()
            })
            .collect();
        (ca_der, signers)
    }

    pub fn run(certificates: bool) -> Run {
        let mut rng = Counter(3);
        let now = Instant::now();
        let suite = "aes256gcm16-prfsha256-ecp256".parse().unwrap();
        let null = "null-sha256".parse().unwrap();
        let mag_id = Identification::Fqdn("mag.example.net".into());
        let lma_id = Identification::Fqdn("lma.example.net".into());
        let psk = Psk::new(*b"mag-lma secret");
        let (mag_auth, peers, signer, verifier): (_, _, Option<Arc<dyn Signer>>, _) =
            if certificates {
                let (ca, mut signers) = pki(&["mag.example.net", "lma.example.net"]);
                let verifier: Arc<dyn PeerVerifier> = Arc::new(CaVerifier::new(vec![ca]).unwrap());
                let lma_signer = signers.pop().unwrap();
                let mag_signer = signers.pop().unwrap();
                (
                    LocalAuth::Certificate(Arc::new(mag_signer)),
                    PeerAuth {
                        psks: vec![],
                        verifier: Some(verifier.clone()),
                    },
                    Some(Arc::new(lma_signer) as Arc<dyn Signer>),
                    Some(verifier),
                )
            } else {
                (
                    LocalAuth::Psk(psk.clone()),
                    PeerAuth {
                        psks: vec![(mag_id.clone(), psk)],
                        verifier: None,
                    },
                    None,
                    None,
                )
            };
        let lma_config = ResponderConfig {
            suites: vec![suite],
            esp_suites: vec![null],
            identity: lma_id.clone(),
            peers,
            signer,
            peer_child: ChildPolicy {
                transport_mode: true,
                local_ts: vec![udp(LMA, Some(5436))],
                remote_ts: vec![],
            },
            ..ResponderConfig::default()
        };
        let mag_config = InitiatorConfig {
            suites: vec![suite],
            esp_suites: vec![null],
            idi: mag_id,
            idr: Some(lma_id),
            tsi: vec![udp(MAG, None)],
            tsr: vec![udp(LMA, None)],
            local: SocketAddr::new(MAG.into(), 500),
            auth: mag_auth,
            peer_verifier: verifier,
            transport_mode: true,
            lifetimes: Lifetimes {
                child_dh: Some(DhGroup::Ecp256),
                ..Lifetimes::default()
            },
            ..InitiatorConfig::default()
        };
        let mut pair = Pair {
            mag: Endpoint::new(ResponderConfig::default(), &mut rng),
            lma: Endpoint::new(lma_config, &mut rng),
            rng,
            now,
            queue: VecDeque::new(),
            run: Run {
                wire: Vec::new(),
                records: Vec::new(),
            },
            lma_spi: None,
        };
        let mut out = Vec::new();
        let spi = pair
            .mag
            .initiate(
                mag_config,
                SocketAddr::new(LMA.into(), 500),
                now,
                &mut pair.rng,
                &mut out,
            )
            .unwrap();
        pair.route(true, out);
        pair.pump();
        let lma_spi = pair.lma_spi.expect("the LMA's SA");
        // The MAG rekeys the CHILD_SA, the LMA the IKE SA, each the CHILD_SA on it, then
        // the MAG deletes the IKE SA.
        for step in 0..5 {
            let mut out = Vec::new();
            let (now, rng) = (pair.now, &mut pair.rng);
            let done = match step {
                0 | 2 => {
                    let inbound = pair.mag.children(spi)[0].inbound_spi;
                    pair.mag.rekey_child_sa(spi, inbound, now, rng, &mut out)
                }
                1 => pair.lma.rekey_ike_sa(lma_spi, now, rng, &mut out),
                3 => {
                    let inbound = pair.lma.children(lma_spi)[0].inbound_spi;
                    pair.lma
                        .rekey_child_sa(lma_spi, inbound, now, rng, &mut out)
                }
                _ => {
                    pair.mag.delete(spi, now, rng, &mut out);
                    true
                }
            };
            assert!(done, "step {step}");
            pair.route(step % 2 == 0, out);
            pair.pump();
        }
        assert!(pair.mag.is_empty() && pair.lma.is_empty());
        pair.run
    }

    /// The MAG's and the LMA's endpoints and what is in flight between them.
    struct Pair {
        mag: Endpoint,
        lma: Endpoint,
        rng: Counter,
        now: Instant,
        queue: VecDeque<(bool, Transmit)>,
        run: Run,
        lma_spi: Option<u64>,
    }

    impl Pair {
        /// What an endpoint (the MAG's when `from_mag`) output: datagrams go on the wire,
        /// the keylog records are kept.
        fn route(&mut self, from_mag: bool, out: Vec<EndpointOutput>) {
            for o in out {
                match o {
                    EndpointOutput::Transmit(t) => {
                        self.run.wire.push((from_mag, t.bytes.clone()));
                        self.queue.push_back((from_mag, t));
                    }
                    EndpointOutput::Created { spi } => self.lma_spi = Some(spi),
                    EndpointOutput::Event {
                        event: Event::Established(e),
                        ..
                    } if from_mag => self.run.records.push(e.keylog),
                    EndpointOutput::Event {
                        event: Event::IkeSaRekeyed { keylog, .. },
                        ..
                    } if from_mag => self.run.records.push(keylog),
                    EndpointOutput::Event {
                        event: Event::Closed(r),
                        ..
                    } => assert!(
                        matches!(r, CloseReason::Deleted | CloseReason::DeletedByPeer),
                        "{r:?}"
                    ),
                    _ => {}
                }
            }
        }

        /// Delivers until nothing is in flight.
        fn pump(&mut self) {
            while let Some((from_mag, t)) = self.queue.pop_front() {
                let mut out = Vec::new();
                let node = if from_mag {
                    &mut self.lma
                } else {
                    &mut self.mag
                };
                node.handle(
                    &t.bytes,
                    t.local,
                    t.remote,
                    t.natt,
                    self.now,
                    &mut self.rng,
                    &mut out,
                );
                self.route(!from_mag, out);
            }
        }
    }
}

/// The sender's SK keys of every IKE SA of a node run, from the keylog records the
/// endpoints gave: (SPIi, SPIr) -> (initiator's keys, responder's keys).
fn keys_of(records: &[String]) -> Vec<((u64, u64), SkKeys, SkKeys)> {
    records
        .iter()
        .map(|r| {
            let f: Vec<&str> = r.split(',').collect();
            let spi = |s: &str| u64::from_str_radix(s, 16).unwrap();
            let key = |s: &str| {
                (0..s.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                    .collect::<Vec<u8>>()
            };
            assert_eq!(f[4], "\"AES-GCM-256 with 16 octet ICV [RFC5282]\"", "{r}");
            let sk = |k: &str| SkKeys::new(Encr::AES_GCM_16_256, None, key(k), Vec::new());
            ((spi(f[0]), spi(f[1])), sk(f[2]), sk(f[3]))
        })
        .collect()
}

/// Checks that what tshark decoded of a node exchange's message is `m`: header, payload
/// chain, and every field of the payloads a node sends.
fn check_node_message(n: usize, m: &IkeMessage, fields: &[(String, String)]) {
    let hex = |b: &[u8]| colon_hex(b);
    let strings = |v: Vec<String>| v;
    let got =
        |key: &str| -> Vec<String> { values(fields, key).iter().map(|s| s.to_string()).collect() };
    assert_eq!(
        got("isakmp.ispi"),
        vec![hex(&m.initiator_spi.to_be_bytes())],
        "packet {n}"
    );
    assert_eq!(
        got("isakmp.rspi"),
        vec![hex(&m.responder_spi.to_be_bytes())],
        "packet {n}"
    );
    assert_eq!(
        got("isakmp.exchangetype"),
        vec![u8::from(m.exchange_type).to_string()],
        "packet {n}"
    );
    assert_eq!(
        got("isakmp.messageid"),
        vec![format!("0x{:08x}", m.message_id)],
        "packet {n}"
    );
    assert_eq!(
        got("isakmp.flag_r"),
        vec![u8::from(m.flags.response).to_string()],
        "packet {n}"
    );
    assert_eq!(
        got("isakmp.flag_i"),
        vec![u8::from(m.flags.initiator).to_string()],
        "packet {n}"
    );
    let encrypted = m.exchange_type != ExchangeType::IkeSaInit;
    if encrypted {
        assert_eq!(
            values(fields, "isakmp.enc.decrypted").len(),
            1,
            "packet {n} not decrypted"
        );
    }
    let chain: Vec<String> = got("isakmp.typepayload")
        .into_iter()
        .filter(|t| t.parse::<u8>().is_ok_and(|t| t >= 33))
        .collect();
    let mut want: Vec<String> = m
        .payloads
        .iter()
        .map(|p| u8::from(p.payload_type()).to_string())
        .collect();
    if encrypted {
        want.insert(0, "46".into());
    }
    assert_eq!(chain, want, "packet {n}: payload chain");
    let (mut spis, mut protocols, mut encr, mut dh) = (vec![], vec![], vec![], vec![]);
    let (mut nonces, mut groups, mut kex, mut fqdns) = (vec![], vec![], vec![], vec![]);
    let (mut methods, mut psk_auth, mut certs, mut certreqs) = (vec![], vec![], vec![], vec![]);
    let (mut ts_start, mut ts_end, mut ts_ports, mut ts_protocols) =
        (vec![], vec![], vec![], vec![]);
    let (mut notifies, mut deleted_protocols, mut deleted_spis) = (vec![], vec![], vec![]);
    for p in &m.payloads {
        match p {
            Payload::Notify(nt) => {
                notifies.push(u16::from(nt.notify_type).to_string());
                if !nt.spi.is_empty() {
                    spis.push(hex(&nt.spi));
                }
            }
            Payload::Sa(sa) => {
                for prop in &sa.proposals {
                    protocols.push(u8::from(prop.protocol_id).to_string());
                    if !prop.spi.is_empty() {
                        spis.push(hex(&prop.spi));
                    }
                    for t in &prop.transforms {
                        match t.id {
                            TransformId::Encr(e) => encr.push(u16::from(e).to_string()),
                            TransformId::Dh(g) => dh.push(u16::from(g).to_string()),
                            _ => {}
                        }
                    }
                }
            }
            Payload::Nonce(x) => nonces.push(hex(x)),
            Payload::Ke(k) => {
                groups.push(u16::from(k.dh_group).to_string());
                kex.push(hex(&k.key_exchange_data));
            }
            Payload::IdI(Identification::Fqdn(f)) | Payload::IdR(Identification::Fqdn(f)) => {
                fqdns.push(f.clone())
            }
            Payload::Auth(a) => {
                methods.push(u8::from(a.method).to_string());
                if a.method == AuthMethod::SharedKeyMessageIntegrityCode {
                    psk_auth.push(hex(&a.data));
                }
            }
            Payload::Cert(c) => certs.push(u8::from(c.encoding).to_string()),
            Payload::CertReq(c) => certreqs.push(u8::from(c.encoding).to_string()),
            Payload::TsI(ts) | Payload::TsR(ts) => {
                for t in ts {
                    if let TrafficSelector::AddrRange {
                        ip_protocol,
                        start_port,
                        end_port,
                        start_address,
                        end_address,
                    } = t
                    {
                        ts_start.push(start_address.to_string());
                        ts_end.push(end_address.to_string());
                        ts_ports.push(format!("{start_port}-{end_port}"));
                        ts_protocols.push(ip_protocol.to_string());
                    }
                }
            }
            Payload::Delete(d) => {
                deleted_protocols.push(u8::from(d.protocol_id).to_string());
                deleted_spis.extend(d.spis.iter().map(|s| hex(&s.to_be_bytes())));
            }
            _ => {}
        }
    }
    let ports: Vec<String> = got("isakmp.ts.start_port")
        .iter()
        .zip(got("isakmp.ts.end_port"))
        .map(|(s, e)| format!("{s}-{e}"))
        .collect();
    for (key, want) in [
        ("isakmp.notify.msgtype", notifies),
        ("isakmp.spi", spis),
        ("isakmp.prop.protoid", protocols),
        ("isakmp.tf.id.encr", encr),
        ("isakmp.tf.id.dh", dh),
        ("isakmp.nonce", nonces),
        ("isakmp.key_exchange.dh_group", groups),
        ("isakmp.key_exchange.data", kex),
        ("isakmp.id.data.fqdn", fqdns),
        ("isakmp.auth.method", methods),
        ("isakmp.cert.encoding", certs),
        ("isakmp.certreq.type", certreqs),
        ("isakmp.ts.start_ipv4", ts_start),
        ("isakmp.ts.end_ipv4", ts_end),
        ("isakmp.ts.protoid", ts_protocols),
        ("isakmp.delete.protoid", deleted_protocols),
        ("isakmp.delete.spi", deleted_spis),
    ] {
        assert_eq!(got(key), strings(want), "packet {n}: {key}");
    }
    assert_eq!(ports, ts_ports, "packet {n}: TS ports");
    if !psk_auth.is_empty() {
        assert_eq!(got("isakmp.auth.data"), psk_auth, "packet {n}: AUTH data");
    }
}

/// Node-to-node IKEv2 as the endpoints run it (a MAG initiating toward its LMA): a
/// pre-shared key exchange and a certificate exchange, each for a transport-mode CHILD_SA
/// with ENCR_NULL, then a CHILD_SA rekey (with PFS), an IKE SA rekey, CHILD_SA rekeys on
/// the new IKE SA from both ends and the Delete, all decrypted by tshark with the keylog
/// records the endpoints gave (one at Established, one at the IKE SA rekey); nothing
/// malformed, every field as sent.
#[test]
fn tshark_decodes_node_authentication_transport_mode_and_rekeys() {
    for certificates in [false, true] {
        let run = nodes::run(certificates);
        assert_eq!(run.records.len(), 2, "the first IKE SA and the rekeyed one");
        let keys = keys_of(&run.records);
        let messages: Vec<IkeMessage> = run
            .wire
            .iter()
            .map(|(_, d)| {
                let header = HeaderRepr::parse(&IkeHeader::new_checked(&d[..]).unwrap()).unwrap();
                if header.exchange_type == ExchangeType::IkeSaInit {
                    return IkeMessage::parse(d).unwrap();
                }
                let (_, i, r) = keys
                    .iter()
                    .find(|(spis, _, _)| *spis == (header.initiator_spi, header.responder_spi))
                    .expect("a keylog record for every IKE SA on the wire");
                let sk = if header.flags.initiator { i } else { r };
                sk.open(d).unwrap()
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nodes.pcap");
        let mut pcap = PcapWriter::create(&path).unwrap();
        let mut t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (mag, lma) = (
            SocketAddr::new(nodes::MAG.into(), 500),
            SocketAddr::new(nodes::LMA.into(), 500),
        );
        for (from_mag, d) in &run.wire {
            let (src, dst) = if *from_mag { (mag, lma) } else { (lma, mag) };
            pcap.write_udp(t, src, dst, d).unwrap();
            t += Duration::from_millis(5);
        }
        pcap.flush().unwrap();
        drop(pcap);
        let options: Vec<String> = run
            .records
            .iter()
            .map(|r| format!("uat:ikev2_decryption_table:{r}"))
            .collect();
        let packets = tshark(&path, &options);
        assert_eq!(packets.len(), messages.len());
        for (n, (packet, m)) in packets.iter().zip(&messages).enumerate() {
            let mut fields = Vec::new();
            walk(packet, &mut fields);
            assert!(
                !fields
                    .iter()
                    .any(|(k, _)| k.starts_with("_ws.malformed") || k.starts_with("_ws.expert")),
                "packet {n}: malformed or expert info:\n{}",
                serde_json::to_string_pretty(packet).unwrap_or_default()
            );
            check_node_message(n, m, &fields);
        }
        // What the run was for: the AUTH method, CERT and CERTREQ, transport mode asked
        // and granted, two kinds of rekey, the Deletes.
        let auth = |m: &IkeMessage| {
            m.find(|p| match p {
                Payload::Auth(a) => Some(a.method),
                _ => None,
            })
        };
        let (request, response) = (&messages[2], &messages[3]);
        let method = if certificates {
            AuthMethod::EcdsaSha256P256
        } else {
            AuthMethod::SharedKeyMessageIntegrityCode
        };
        assert_eq!(
            (auth(request), auth(response)),
            (Some(method), Some(method))
        );
        let has = |m: &IkeMessage, f: fn(&Payload) -> bool| m.payloads.iter().any(f);
        assert_eq!(
            has(request, |p| matches!(p, Payload::Cert(_))),
            certificates
        );
        assert_eq!(
            has(request, |p| matches!(p, Payload::CertReq(_))),
            certificates
        );
        assert_eq!(
            has(&messages[1], |p| matches!(p, Payload::CertReq(_))),
            certificates
        );
        let transport = |m: &IkeMessage| {
            m.notifies()
                .any(|n| n.notify_type == NotifyType::UseTransportMode)
        };
        assert!(transport(request) && transport(response));
        let creates: Vec<&IkeMessage> = messages
            .iter()
            .filter(|m| m.exchange_type == ExchangeType::CreateChildSa && !m.flags.response)
            .collect();
        let child_rekeys = creates
            .iter()
            .filter(|m| m.notifies().any(|n| n.notify_type == NotifyType::RekeySa))
            .count();
        let ike_rekeys = creates
            .iter()
            .filter(|m| has(m, |p| matches!(p, Payload::Sa(sa) if sa.proposals[0].protocol_id == ProtocolId::Ike && sa.proposals[0].spi.len() == 8)))
            .count();
        assert_eq!((child_rekeys, ike_rekeys), (3, 1));
        let deletes = messages
            .iter()
            .filter(|m| !m.flags.response && has(m, |p| matches!(p, Payload::Delete(_))))
            .count();
        assert_eq!(
            deletes, 5,
            "3 replaced CHILD_SAs, the old IKE SA, the last one"
        );
    }
}
