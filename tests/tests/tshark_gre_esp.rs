//! tshark as an independent decoder of our data-plane framing (docs/testing.md):
//! GRE with keys (`pmip_common::tunnel`) over IPv4 and IPv6, and ESP-in-UDP
//! (`pmip_common::esp`) for AES-GCM and AES-CBC+HMAC SAs.
//!
//! The packets are written to a pcap (LINKTYPE_RAW) and decoded by `tshark -V -T json`
//! with ESP decryption and authentication checking on and our SAs in Wireshark's
//! `esp_sa` table. We require no malformed-packet mark and no expert info, GRE flags,
//! key, sequence number and protocol type as we set them, and that tshark checks every
//! ESP ICV as good and finds inside the very ICMP / ICMPv6 echo requests we sealed.
//!
//! tshark is installed by `scripts/setup.sh`; without it this test fails. Set
//! `GRE_ESP_ORACLE_PCAP=/some/file.pcap` to keep the capture for Wireshark.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use integration_tests::tshark_fields::{values, walk};
use pmip_common::esp::{OutboundSa, UdpEncapsulated, ESP_IN_UDP_PORT, NAT_KEEPALIVE};
use pmip_common::ike::{EspSuite, Random};
use pmip_common::tunnel::{encapsulate, GreRepr, OuterHeader, ProtocolType};
use pmip_node::pcap::PcapWriter;
use serde_json::Value;

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

/// The Internet checksum (RFC 1071) over several slices laid end to end (each of even
/// length except possibly the last).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for part in parts {
        for w in part.chunks(2) {
            sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

const ECHO_DATA: &[u8] = b"pmip data plane oracle";

/// An IPv4 packet with an ICMP echo request, checksums filled.
fn icmpv4_echo(source: Ipv4Addr, destination: Ipv4Addr, id: u16, seq: u16) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(ECHO_DATA);
    let c = checksum(&[&icmp]);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let total = (20 + icmp.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 1, 0, 0]);
    ip.extend_from_slice(&source.octets());
    ip.extend_from_slice(&destination.octets());
    let c = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&icmp);
    ip
}

/// An IPv6 packet with an ICMPv6 echo request, checksum filled.
fn icmpv6_echo(source: Ipv6Addr, destination: Ipv6Addr, id: u16, seq: u16) -> Vec<u8> {
    let mut icmp = vec![128, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(ECHO_DATA);
    let len = icmp.len() as u32;
    let pseudo = [len.to_be_bytes(), [0, 0, 0, 58]].concat();
    let c = checksum(&[&source.octets(), &destination.octets(), &pseudo, &icmp]);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[58, 64]);
    ip.extend_from_slice(&source.octets());
    ip.extend_from_slice(&destination.octets());
    ip.extend_from_slice(&icmp);
    ip
}

/// What one pcap record is and what tshark must find in it.
enum Expect {
    Gre {
        gre: GreRepr,
        inner: Vec<u8>,
    },
    Esp {
        spi: u32,
        sequence_number: u32,
        inner: Vec<u8>,
    },
    NatKeepalive,
}

/// One row of Wireshark's `esp_sa` table as tshark 4.0 (Debian bookworm) takes it with
/// `-o uat:esp_sa:...`: protocol (`IPv4`/`IPv6`), source, destination (`*` = any), SPI,
/// encryption algorithm and key, authentication algorithm and key, algorithms by their
/// display names, keys as `0x` hex (for AES-GCM the AES key then the 4-octet salt).
fn esp_sa_record(
    ipv6: bool,
    spi: u32,
    suite: EspSuite,
    encryption_key: &[u8],
    integrity_key: &[u8],
) -> String {
    use pmip_common::ike::{Encr, Integ};
    let encryption = match suite.encr {
        Encr::AesGcm16_128 | Encr::AesGcm16_256 => "AES-GCM with 16 octet ICV [RFC4106]",
        Encr::AesCbc128 | Encr::AesCbc256 => "AES-CBC [RFC3602]",
        Encr::Null => "NULL",
    };
    let authentication = match suite.integ {
        None => "NULL",
        Some(Integ::HmacSha1_96) => "HMAC-SHA-1-96 [RFC2404]",
        Some(Integ::HmacSha2_256_128) => "HMAC-SHA-256-128 [RFC4868]",
    };
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let integrity = if integrity_key.is_empty() {
        String::new()
    } else {
        format!("0x{}", hex(integrity_key))
    };
    let encryption_key = if encryption_key.is_empty() {
        String::new()
    } else {
        format!("0x{}", hex(encryption_key))
    };
    format!(
        "uat:esp_sa:\"{}\",\"*\",\"*\",\"{spi:#010x}\",\"{encryption}\",\"{encryption_key}\",\"{authentication}\",\"{integrity}\"",
        if ipv6 { "IPv6" } else { "IPv4" },
    )
}

/// The one value of `key`, as tshark prints it.
fn one<'a>(fields: &'a [(String, String)], key: &str, n: usize) -> &'a str {
    let v = values(fields, key);
    assert_eq!(v.len(), 1, "packet {n}: field {key}: {v:?}");
    v[0]
}

/// Checks the inner echo request tshark decoded (after GRE or after ESP decryption).
fn check_inner(n: usize, fields: &[(String, String)], inner: &[u8]) {
    let data_hex: String = ECHO_DATA.iter().map(|b| format!("{b:02x}")).collect();
    if inner[0] >> 4 == 4 {
        let src = Ipv4Addr::new(inner[12], inner[13], inner[14], inner[15]);
        let dst = Ipv4Addr::new(inner[16], inner[17], inner[18], inner[19]);
        assert!(
            values(fields, "ip.src").contains(&src.to_string().as_str()),
            "packet {n}: inner source {src} not decoded"
        );
        assert!(values(fields, "ip.dst").contains(&dst.to_string().as_str()));
        assert_eq!(one(fields, "icmp.type", n), "8");
        assert_eq!(one(fields, "icmp.checksum.status", n), "1");
        assert_eq!(
            one(fields, "icmp.ident", n),
            u16::from_be_bytes([inner[24], inner[25]]).to_string()
        );
        assert_eq!(
            one(fields, "icmp.seq", n),
            u16::from_be_bytes([inner[26], inner[27]]).to_string()
        );
    } else {
        let mut a = [0u8; 16];
        a.copy_from_slice(&inner[8..24]);
        let src = Ipv6Addr::from(a);
        a.copy_from_slice(&inner[24..40]);
        let dst = Ipv6Addr::from(a);
        assert!(
            values(fields, "ipv6.src").contains(&src.to_string().as_str()),
            "packet {n}: inner source {src} not decoded"
        );
        assert!(values(fields, "ipv6.dst").contains(&dst.to_string().as_str()));
        assert_eq!(one(fields, "icmpv6.type", n), "128");
        assert_eq!(one(fields, "icmpv6.checksum.status", n), "1");
        assert_eq!(
            one(fields, "icmpv6.echo.identifier", n),
            format!("{:#06x}", u16::from_be_bytes([inner[44], inner[45]]))
        );
        assert_eq!(
            one(fields, "icmpv6.echo.sequence_number", n),
            u16::from_be_bytes([inner[46], inner[47]]).to_string()
        );
    }
    let data = values(fields, "data.data").concat().replace(':', "");
    assert_eq!(data, data_hex, "packet {n}: echo data");
}

#[test]
fn tshark_decodes_our_gre_and_decrypts_our_esp() {
    let dir = tempfile::tempdir().unwrap();
    let kept = std::env::var_os("GRE_ESP_ORACLE_PCAP");
    let path = kept
        .as_ref()
        .map(|p| Path::new(p).to_path_buf())
        .unwrap_or_else(|| dir.path().join("gre_esp.pcap"));
    let mut pcap = PcapWriter::create(&path).unwrap();
    let mut t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut expected = Vec::new();

    let ue4 = Ipv4Addr::new(10, 45, 0, 7);
    let pdn4 = Ipv4Addr::new(203, 0, 113, 9);
    let ue6: Ipv6Addr = "2001:db8:45:7::1".parse().unwrap();
    let pdn6: Ipv6Addr = "2001:db8:ffff::9".parse().unwrap();

    // GRE: MAG -> LMA over IPv4 and over IPv6, each with IPv4 and IPv6 inside, with a
    // key alone and with checksum, key and sequence number.
    let outers = [
        (
            IpAddr::from(Ipv4Addr::new(192, 0, 2, 1)),
            IpAddr::from(Ipv4Addr::new(192, 0, 2, 2)),
        ),
        (
            "2001:db8:1::1".parse::<Ipv6Addr>().unwrap().into(),
            "2001:db8:2::2".parse::<Ipv6Addr>().unwrap().into(),
        ),
    ];
    let mut key = 0x1000_0001u32;
    for (source, destination) in outers {
        for (i, inner) in [
            icmpv4_echo(ue4, pdn4, 0x0101, 1),
            icmpv6_echo(ue6, pdn6, 0x0202, 2),
        ]
        .into_iter()
        .enumerate()
        {
            for full in [false, true] {
                let protocol_type = ProtocolType::of_ip_packet(&inner).unwrap();
                let gre = GreRepr {
                    checksum_present: full,
                    sequence_number: full.then_some(0x0a0b_0c00 + i as u32),
                    ..GreRepr::keyed(protocol_type, key)
                };
                key = key.wrapping_mul(3).wrapping_add(0x0f0f);
                let outer = OuterHeader {
                    source,
                    destination,
                    hop_limit: 64,
                };
                let mut packet = Vec::new();
                encapsulate(&outer, &gre, &inner, &mut packet).unwrap();
                pcap.write_ip(t, &packet).unwrap();
                t += Duration::from_millis(1);
                expected.push(Expect::Gre {
                    gre,
                    inner: inner.clone(),
                });
            }
        }
    }

    // ESP-in-UDP: UE -> ePDG on port 4500 over IPv4 and IPv6 for several suites, each
    // with an IPv4 and an IPv6 echo request, and a NAT-keepalive.
    let ue_v4 = SocketAddr::new(Ipv4Addr::new(192, 0, 2, 10).into(), ESP_IN_UDP_PORT);
    let epdg_v4 = SocketAddr::new(Ipv4Addr::new(198, 51, 100, 1).into(), ESP_IN_UDP_PORT);
    let ue_v6 = SocketAddr::new(
        "2001:db8:a::10".parse::<Ipv6Addr>().unwrap().into(),
        ESP_IN_UDP_PORT,
    );
    let epdg_v6 = SocketAddr::new(
        "2001:db8:e::1".parse::<Ipv6Addr>().unwrap().into(),
        ESP_IN_UDP_PORT,
    );
    let mut records = Vec::new();
    for (i, (name, ipv6)) in [
        ("aes128gcm16", false),
        ("aes256gcm16", false),
        ("aes128-sha1", false),
        ("aes256-sha256", false),
        ("aes256gcm16", true),
        ("aes128-sha256", true),
        // Integrity only, as PMIPv6 signaling may use it (RFC 5213 section 4).
        ("null-sha256", false),
    ]
    .iter()
    .enumerate()
    {
        let (ue, epdg) = if *ipv6 {
            (ue_v6, epdg_v6)
        } else {
            (ue_v4, epdg_v4)
        };
        let suite: EspSuite = name.parse().unwrap();
        let spi = 0xc000_0001 + i as u32;
        let encryption_key: Vec<u8> = (0..suite.encr.key_len())
            .map(|k| (k * 7 + i) as u8)
            .collect();
        let integrity_key: Vec<u8> = (0..suite.integ.map_or(0, |a| a.key_len()))
            .map(|k| (k * 11 + i) as u8 ^ 0x5a)
            .collect();
        records.push(esp_sa_record(
            *ipv6,
            spi,
            suite,
            &encryption_key,
            &integrity_key,
        ));
        let mut sa = OutboundSa::new(spi, suite, &encryption_key, &integrity_key).unwrap();
        let mut rng = Counter(i as u8);
        for inner in [
            icmpv4_echo(ue4, pdn4, 0x0300 + i as u16, 1),
            icmpv6_echo(ue6, pdn6, 0x0600 + i as u16, 2),
        ] {
            let mut datagram = Vec::new();
            let sequence_number = sa.encapsulate_ip(&inner, &mut rng, &mut datagram).unwrap();
            assert!(matches!(
                UdpEncapsulated::classify(&datagram),
                Ok(UdpEncapsulated::Esp(_))
            ));
            pcap.write_udp(t, ue, epdg, &datagram).unwrap();
            t += Duration::from_millis(1);
            expected.push(Expect::Esp {
                spi,
                sequence_number,
                inner,
            });
        }
    }
    pcap.write_udp(t, ue_v4, epdg_v4, &NAT_KEEPALIVE).unwrap();
    expected.push(Expect::NatKeepalive);
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
        "-o",
        "esp.enable_encryption_decode:TRUE",
        "-o",
        "esp.enable_authentication_check:TRUE",
    ]);
    for r in &records {
        cmd.arg("-o").arg(r);
    }
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) => panic!("cannot run tshark ({e}): run scripts/setup.sh to install it"),
    };
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let packets: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(packets.len(), expected.len());

    for (n, (packet, expect)) in packets.iter().zip(&expected).enumerate() {
        let mut fields = Vec::new();
        walk(packet, &mut fields);
        let dump = || serde_json::to_string_pretty(packet).unwrap_or_default();
        assert!(
            !fields
                .iter()
                .any(|(k, _)| k.starts_with("_ws.malformed") || k.starts_with("_ws.expert")),
            "packet {n}: malformed or expert info:\n{}",
            dump()
        );
        match expect {
            Expect::Gre { gre, inner } => {
                assert_eq!(
                    one(&fields, "gre.flags.checksum", n),
                    u8::from(gre.checksum_present).to_string()
                );
                assert_eq!(one(&fields, "gre.flags.key", n), "1");
                assert_eq!(
                    one(&fields, "gre.flags.sequence_number", n),
                    u8::from(gre.sequence_number.is_some()).to_string()
                );
                assert_eq!(one(&fields, "gre.flags.version", n), "0");
                assert_eq!(
                    one(&fields, "gre.proto", n),
                    format!("{:#06x}", u16::from(gre.protocol_type))
                );
                assert_eq!(
                    one(&fields, "gre.key", n),
                    format!("{:#010x}", gre.key.unwrap())
                );
                if let Some(s) = gre.sequence_number {
                    assert_eq!(one(&fields, "gre.sequence_number", n), s.to_string());
                }
                if gre.checksum_present {
                    assert_eq!(one(&fields, "gre.checksum.status", n), "1", "{}", dump());
                }
                check_inner(n, &fields, inner);
            }
            Expect::Esp {
                spi,
                sequence_number,
                inner,
            } => {
                assert_eq!(
                    one(&fields, "esp.spi", n),
                    format!("{spi:#010x}"),
                    "{}",
                    dump()
                );
                assert_eq!(one(&fields, "esp.sequence", n), sequence_number.to_string());
                assert_eq!(
                    one(&fields, "esp.icv_good", n),
                    "1",
                    "packet {n}: ICV not checked good:\n{}",
                    dump()
                );
                assert!(values(&fields, "esp.icv_bad").iter().all(|v| *v == "0"));
                assert_eq!(
                    one(&fields, "esp.protocol", n),
                    if inner[0] >> 4 == 4 { "0x04" } else { "0x29" }
                );
                check_inner(n, &fields, inner);
            }
            Expect::NatKeepalive => {
                assert!(
                    fields.iter().any(|(k, _)| k.starts_with("udpencap")),
                    "packet {n}: not decoded as UDP encapsulation:\n{}",
                    dump()
                );
                assert!(values(&fields, "esp.spi").is_empty());
            }
        }
    }
}
