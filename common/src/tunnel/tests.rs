use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

/// A minimal IPv4 packet (header only, checksum not needed here) from 10.0.0.1.
fn inner_v4() -> Vec<u8> {
    let mut h = Ipv4Header::new(4, 64, IpNumber::ICMP, [10, 0, 0, 1], [10, 0, 0, 2]).unwrap();
    h.header_checksum = h.calc_header_checksum();
    let mut v = h.to_bytes().to_vec();
    v.extend_from_slice(&[8, 0, 0xf7, 0xff]);
    v
}

fn inner_v6() -> Vec<u8> {
    let h = Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::ZERO,
        payload_length: 0,
        next_header: IpNumber::IPV6_NO_NEXT_HEADER,
        hop_limit: 64,
        source: Ipv6Addr::LOCALHOST.octets(),
        destination: Ipv6Addr::LOCALHOST.octets(),
    };
    h.to_bytes().to_vec()
}

#[test]
fn keyed_header_layout_matches_rfc_2890() {
    let gre = GreRepr::keyed(ProtocolType::Ipv4, 0x0102_0304);
    let mut out = Vec::new();
    gre.emit_with_payload(&[0x45], &mut out);
    assert_eq!(out, [0x20, 0x00, 0x08, 0x00, 1, 2, 3, 4, 0x45]);
}

#[test]
fn all_fields_layout_and_checksum() {
    let gre = GreRepr {
        protocol_type: ProtocolType::Ipv6,
        checksum_present: true,
        key: Some(0xdead_beef),
        sequence_number: Some(7),
    };
    let mut out = Vec::new();
    gre.emit_with_payload(&[0x60, 1, 2], &mut out);
    assert_eq!(out.len(), 16 + 3);
    assert_eq!(&out[..4], &[0xb0, 0x00, 0x86, 0xdd]);
    assert_eq!(&out[6..8], &[0, 0], "reserved1");
    assert_eq!(&out[8..12], &0xdead_beefu32.to_be_bytes());
    assert_eq!(&out[12..16], &7u32.to_be_bytes());
    assert_eq!(internet_checksum(&out), 0);
    let view = GrePacket::new_checked(&out[..]).unwrap();
    assert_eq!(GreRepr::parse(&view).unwrap(), gre);
    assert_eq!(view.payload(), &[0x60, 1, 2]);
    // A flipped payload bit breaks the checksum.
    out[17] ^= 1;
    let view = GrePacket::new_checked(&out[..]).unwrap();
    assert_eq!(GreRepr::parse(&view), Err(TunnelError::BadChecksum));
}

#[test]
fn refuses_versions_rfc1701_bits_and_short_headers() {
    assert_eq!(
        GrePacket::new_checked(&[0u8, 1, 8, 0][..]).unwrap_err(),
        TunnelError::UnsupportedVersion(1)
    );
    for bits in [0x40u8, 0x08, 0x04] {
        assert!(matches!(
            GrePacket::new_checked(&[bits, 0, 8, 0][..]),
            Err(TunnelError::UnsupportedFlags(_))
        ));
    }
    assert!(matches!(
        GrePacket::new_checked(&[0x20u8, 0, 8, 0, 1, 2, 3][..]),
        Err(TunnelError::Truncated(_))
    ));
    // Reserved0 bits 6-12 are ignored on receipt (RFC 2784 section 2.3).
    let view = GrePacket::new_checked(&[0x03u8, 0xf8, 8, 0][..]).unwrap();
    assert_eq!(view.header_len(), 4);
}

#[test]
fn encapsulates_and_decapsulates_ipv4_and_ipv6_both_ways() {
    let v4 = OuterHeader {
        source: Ipv4Addr::new(192, 0, 2, 1).into(),
        destination: Ipv4Addr::new(192, 0, 2, 2).into(),
        hop_limit: 64,
    };
    let v6 = OuterHeader {
        source: "2001:db8::1".parse::<Ipv6Addr>().unwrap().into(),
        destination: "2001:db8::2".parse::<Ipv6Addr>().unwrap().into(),
        hop_limit: 64,
    };
    for outer in [v4, v6] {
        for inner in [inner_v4(), inner_v6()] {
            let pt = ProtocolType::of_ip_packet(&inner).unwrap();
            let gre = GreRepr {
                sequence_number: Some(9),
                ..GreRepr::keyed(pt, 42)
            };
            let mut out = Vec::new();
            encapsulate(&outer, &gre, &inner, &mut out).unwrap();
            // etherparse sees a valid outer header with protocol 47.
            let ip = IpSlice::from_slice(&out).unwrap();
            assert_eq!(ip.payload().ip_number, IpNumber::GRE);
            assert_eq!(out.len(), outer.overhead(&gre) + inner.len());
            let d = decapsulate_ip(&out).unwrap();
            assert_eq!(d.outer_source, Some(outer.source));
            assert_eq!(d.outer_destination, Some(outer.destination));
            assert_eq!(d.key, 42);
            assert_eq!(d.gre, gre);
            assert_eq!(d.inner, &inner[..]);
        }
    }
}

#[test]
fn decapsulation_refuses_keyless_mismatched_and_foreign_packets() {
    let mut gre = Vec::new();
    GreRepr {
        key: None,
        ..GreRepr::keyed(ProtocolType::Ipv4, 0)
    }
    .emit_with_payload(&inner_v4(), &mut gre);
    assert_eq!(decapsulate_gre(&gre), Err(TunnelError::KeyMissing));

    let mut gre = Vec::new();
    GreRepr::keyed(ProtocolType::Ipv4, 1).emit_with_payload(&inner_v6(), &mut gre);
    assert_eq!(
        decapsulate_gre(&gre),
        Err(TunnelError::InnerVersionMismatch {
            expected: 4,
            found: 6
        })
    );

    let mut gre = Vec::new();
    GreRepr::keyed(ProtocolType::Unknown(0x6558), 1).emit_with_payload(&[0; 14], &mut gre);
    assert_eq!(
        decapsulate_gre(&gre),
        Err(TunnelError::UnsupportedProtocolType(0x6558))
    );

    // The inner ICMP packet is not GRE.
    assert_eq!(decapsulate_ip(&inner_v4()), Err(TunnelError::NotGre(1)));

    let outer = OuterHeader {
        source: Ipv4Addr::LOCALHOST.into(),
        destination: Ipv6Addr::LOCALHOST.into(),
        hop_limit: 1,
    };
    assert_eq!(
        encapsulate(
            &outer,
            &GreRepr::keyed(ProtocolType::Ipv4, 1),
            &inner_v4(),
            &mut Vec::new()
        ),
        Err(TunnelError::MixedAddressFamilies)
    );
    let too_long = {
        let mut v = inner_v4();
        v.resize(65_530, 0);
        v
    };
    let outer = OuterHeader {
        destination: Ipv4Addr::LOCALHOST.into(),
        ..outer
    };
    assert!(matches!(
        encapsulate(
            &outer,
            &GreRepr::keyed(ProtocolType::Ipv4, 1),
            &too_long,
            &mut Vec::new()
        ),
        Err(TunnelError::TooLong(_))
    ));
}

#[test]
fn ipv4_fragments_are_refused() {
    let mut out = Vec::new();
    let outer = OuterHeader {
        source: Ipv4Addr::new(192, 0, 2, 1).into(),
        destination: Ipv4Addr::new(192, 0, 2, 2).into(),
        hop_limit: 64,
    };
    encapsulate(
        &outer,
        &GreRepr::keyed(ProtocolType::Ipv4, 5),
        &inner_v4(),
        &mut out,
    )
    .unwrap();
    out[6] |= 0x20; // More Fragments
    assert_eq!(decapsulate_ip(&out), Err(TunnelError::Fragmented));
}

#[test]
fn ipv6_extension_headers_before_gre_are_skipped() {
    let mut gre = Vec::new();
    GreRepr::keyed(ProtocolType::Ipv4, 77).emit_with_payload(&inner_v4(), &mut gre);
    let header = Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::ZERO,
        payload_length: (8 + gre.len()) as u16,
        next_header: IpNumber::IPV6_DESTINATION_OPTIONS,
        hop_limit: 64,
        source: Ipv6Addr::LOCALHOST.octets(),
        destination: Ipv6Addr::LOCALHOST.octets(),
    };
    let mut packet = header.to_bytes().to_vec();
    // Destination Options: next header GRE, length 0 (8 octets), one PadN of 4.
    packet.extend_from_slice(&[IPPROTO_GRE, 0, 1, 4, 0, 0, 0, 0]);
    packet.extend_from_slice(&gre);
    let d = decapsulate_ip(&packet).unwrap();
    assert_eq!(d.key, 77);
    assert_eq!(d.inner, &inner_v4()[..]);
}

fn any_protocol_type() -> impl Strategy<Value = ProtocolType> {
    prop_oneof![
        Just(ProtocolType::Ipv4),
        Just(ProtocolType::Ipv6),
        any::<u16>().prop_map(ProtocolType::from),
    ]
}

fn any_repr() -> impl Strategy<Value = GreRepr> {
    (
        any_protocol_type(),
        any::<bool>(),
        any::<Option<u32>>(),
        any::<Option<u32>>(),
    )
        .prop_map(
            |(protocol_type, checksum_present, key, sequence_number)| GreRepr {
                protocol_type,
                checksum_present,
                key,
                sequence_number,
            },
        )
}

proptest! {
    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(view) = GrePacket::new_checked(&bytes[..]) {
            let _ = (view.checksum(), view.key(), view.sequence_number(), view.payload());
            let _ = GreRepr::parse(&view);
        }
        let _ = decapsulate_gre(&bytes);
        let _ = decapsulate_ip(&bytes);
    }

    #[test]
    fn decapsulating_mutated_packets_never_panics(
        flip in proptest::collection::vec((0usize..200, any::<u8>()), 1..6),
        cut in 0usize..200,
    ) {
        let outer = OuterHeader {
            source: "2001:db8::1".parse::<Ipv6Addr>().unwrap().into(),
            destination: "2001:db8::2".parse::<Ipv6Addr>().unwrap().into(),
            hop_limit: 64,
        };
        let gre = GreRepr { checksum_present: true, sequence_number: Some(1), ..GreRepr::keyed(ProtocolType::Ipv4, 3) };
        let mut out = Vec::new();
        encapsulate(&outer, &gre, &inner_v4(), &mut out).unwrap();
        for (i, x) in flip {
            let n = out.len();
            out[i % n] ^= x;
        }
        out.truncate(cut);
        let _ = decapsulate_ip(&out);
    }

    #[test]
    fn repr_round_trips(repr in any_repr(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut out = Vec::new();
        repr.emit_with_payload(&payload, &mut out);
        prop_assert_eq!(out.len(), repr.header_len() + payload.len());
        let view = GrePacket::new_checked(&out[..]).unwrap();
        prop_assert_eq!(GreRepr::parse(&view).unwrap(), repr);
        prop_assert_eq!(view.payload(), &payload[..]);
    }

    #[test]
    fn encapsulation_round_trips(
        v6_outer in any::<bool>(),
        addresses in any::<([u8; 16], [u8; 16])>(),
        v6_inner in any::<bool>(),
        mut inner in proptest::collection::vec(any::<u8>(), 1..1500),
        key in any::<u32>(),
        sequence_number in any::<Option<u32>>(),
        checksum_present in any::<bool>(),
        hop_limit in 1u8..,
    ) {
        let (s, d) = addresses;
        let outer = if v6_outer {
            OuterHeader { source: Ipv6Addr::from(s).into(), destination: Ipv6Addr::from(d).into(), hop_limit }
        } else {
            OuterHeader {
                source: Ipv4Addr::new(s[0], s[1], s[2], s[3]).into(),
                destination: Ipv4Addr::new(d[0], d[1], d[2], d[3]).into(),
                hop_limit,
            }
        };
        inner[0] = (inner[0] & 0x0f) | if v6_inner { 0x60 } else { 0x40 };
        let protocol_type = if v6_inner { ProtocolType::Ipv6 } else { ProtocolType::Ipv4 };
        let gre = GreRepr { checksum_present, sequence_number, ..GreRepr::keyed(protocol_type, key) };
        let mut out = Vec::new();
        encapsulate(&outer, &gre, &inner, &mut out).unwrap();
        let d = decapsulate_ip(&out).unwrap();
        prop_assert_eq!(d.outer_source, Some(outer.source));
        prop_assert_eq!(d.outer_destination, Some(outer.destination));
        prop_assert_eq!(d.gre, gre);
        prop_assert_eq!(d.key, key);
        prop_assert_eq!(d.inner, &inner[..]);
        // What a raw IPv6 socket delivers: the GRE packet alone.
        let header_len = if v6_outer { 40 } else { 20 };
        let d = decapsulate_gre(&out[header_len..]).unwrap();
        prop_assert_eq!(d.outer_source, None);
        prop_assert_eq!(d.inner, &inner[..]);
    }
}
