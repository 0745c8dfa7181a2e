//! tshark as an independent decoder of our IKEv2 codec and SK payload (DESIGN.md
//! section 7).
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
use pmip_common::ike::{DhPrivate, Encr, EspSuite, IkeSaKeys, IkeSuite, Random};
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

    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(&path);
    cmd.args(["-V", "-T", "json", "--no-duplicate-keys"]);
    cmd.args([
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
    ]);
    for x in &exchanges {
        cmd.arg("-o").arg(decryption_record(x));
    }
    let out = cmd
        .output()
        .expect("tshark must be installed (scripts/setup.sh)");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let packets: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
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
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args(["-V", "-T", "json", "--no-duplicate-keys", "-o", &record])
        .output()
        .expect("tshark must be installed (scripts/setup.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let packets: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
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
