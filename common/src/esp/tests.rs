use proptest::prelude::*;

use super::*;
use crate::ike::Encr;

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

fn keys(suite: EspSuite, seed: u8) -> (Vec<u8>, Vec<u8>) {
    let e = (0..suite.encr.key_len()).map(|i| seed ^ i as u8).collect();
    let a = (0..suite.integ.map_or(0, |i| i.key_len()))
        .map(|i| seed.wrapping_add(0x80) ^ i as u8)
        .collect();
    (e, a)
}

fn pair(suite: EspSuite, spi: u32) -> (OutboundSa, InboundSa) {
    let (e, a) = keys(suite, spi as u8);
    (
        OutboundSa::new(spi, suite, &e, &a).unwrap(),
        InboundSa::new(spi, suite, &e, &a).unwrap(),
    )
}

fn ipv4_packet(len: usize) -> Vec<u8> {
    let mut p = vec![0x45, 0, (len >> 8) as u8, len as u8];
    p.resize(len.max(20), 0xab);
    p
}

fn ipv6_packet(len: usize) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.resize(len.max(40), 0xcd);
    p
}

/// The default suites and ENCR_NULL with HMAC-SHA2-256-128 (offered only when configured).
fn all_suites() -> Vec<EspSuite> {
    let mut suites = EspSuite::defaults();
    suites.push("null-sha256".parse().unwrap());
    suites
}

#[test]
fn every_suite_round_trips_ipv4_and_ipv6_with_aligned_padding() {
    for suite in all_suites() {
        let (mut tx, mut rx) = pair(suite, 0x1234_5678);
        let mut rng = Counter(1);
        for len in (20..80).chain([1400, 1500]) {
            for inner in [ipv4_packet(len), ipv6_packet(len + 20)] {
                let mut out = vec![0xee]; // appends after what is there
                let seq = tx.encapsulate_ip(&inner, &mut rng, &mut out).unwrap();
                let packet = &out[1..];
                assert_eq!(packet.len(), tx.encapsulated_len(inner.len()), "{suite:?}");
                let view = EspPacket::new_checked(packet).unwrap();
                assert_eq!(view.spi(), 0x1234_5678);
                assert_eq!(view.sequence_number(), seq);
                let ciphertext_len =
                    packet.len() - ESP_HEADER_LEN - tx.transform.iv_len() - tx.transform.icv_len();
                assert_eq!(ciphertext_len % tx.transform.block_len(), 0);
                let mut plain = vec![1, 2, 3];
                let d = rx.decapsulate_ip(packet, &mut plain).unwrap();
                assert_eq!(d.sequence_number, seq);
                assert_eq!(d.next_header, next_header_of(&inner).unwrap());
                assert_eq!(plain, inner);
            }
        }
        assert_eq!(rx.replay_window().highest(), tx.last_sequence_number());
    }
}

#[test]
fn gcm_uses_the_sequence_number_as_explicit_iv_and_cbc_the_random_iv() {
    let gcm = EspSuite {
        encr: Encr::AES_GCM_16_128,
        integ: None,
    };
    let (mut tx, _) = pair(gcm, 1);
    let mut out = Vec::new();
    tx.encapsulate(
        NEXT_HEADER_IPV4,
        &ipv4_packet(20),
        &mut Counter(0),
        &mut out,
    )
    .unwrap();
    assert_eq!(&out[8..16], &1u64.to_be_bytes());

    let cbc = EspSuite {
        encr: Encr::AES_CBC_128,
        integ: Some(Integ::HmacSha1_96),
    };
    let (mut tx, _) = pair(cbc, 1);
    let mut out = Vec::new();
    tx.encapsulate(
        NEXT_HEADER_IPV4,
        &ipv4_packet(20),
        &mut Counter(0),
        &mut out,
    )
    .unwrap();
    let mut iv = [0u8; 16];
    Counter(0).fill(&mut iv);
    assert_eq!(&out[8..24], &iv);
}

#[test]
fn every_flipped_bit_is_detected() {
    for suite in EspSuite::defaults() {
        let (mut tx, _) = pair(suite, 0x0101_0101);
        let mut packet = Vec::new();
        tx.encapsulate_ip(&ipv4_packet(33), &mut Counter(3), &mut packet)
            .unwrap();
        for i in 0..packet.len() {
            for bit in [0x01, 0x80] {
                let (_, mut rx) = pair(suite, 0x0101_0101);
                let mut tampered = packet.clone();
                tampered[i] ^= bit;
                let result = rx.decapsulate(&tampered, &mut Vec::new());
                match i {
                    0..=3 => assert!(matches!(result, Err(EspError::WrongSpi { .. }))),
                    _ => assert!(
                        matches!(result, Err(EspError::BadIcv | EspError::Replay(_))),
                        "{suite:?} octet {i}: {result:?}"
                    ),
                }
                // A forgery never moves the window.
                assert_eq!(rx.replay_window().highest(), 0);
            }
        }
        // Truncation too.
        let (_, mut rx) = pair(suite, 0x0101_0101);
        for len in 0..packet.len() {
            assert!(rx.decapsulate(&packet[..len], &mut Vec::new()).is_err());
        }
        assert!(rx.decapsulate(&packet, &mut Vec::new()).is_ok());
    }
}

#[test]
fn in_place_decapsulation_points_at_the_payload() {
    for suite in EspSuite::defaults() {
        let (mut tx, mut rx) = pair(suite, 3);
        let inner = ipv6_packet(77);
        let mut packet = Vec::new();
        tx.encapsulate_ip(&inner, &mut Counter(9), &mut packet)
            .unwrap();
        let (d, range) = rx.decapsulate_in_place(&mut packet).unwrap();
        assert_eq!(d.next_header, NEXT_HEADER_IPV6);
        assert_eq!(&packet[range], &inner[..]);
    }
}

#[test]
fn wrong_keys_give_bad_icv() {
    for suite in EspSuite::defaults() {
        let (mut tx, _) = pair(suite, 9);
        let (e, a) = keys(suite, 10);
        let mut rx = InboundSa::new(9, suite, &e, &a).unwrap();
        let mut packet = Vec::new();
        tx.encapsulate_ip(&ipv6_packet(60), &mut Counter(3), &mut packet)
            .unwrap();
        let mut out = vec![1, 2, 3];
        assert_eq!(rx.decapsulate(&packet, &mut out), Err(EspError::BadIcv));
        assert!(out.is_empty(), "out is cleared on failure");
    }
}

#[test]
fn replays_and_old_packets_are_refused() {
    let suite = EspSuite {
        encr: Encr::AES_CBC_256,
        integ: Some(Integ::HmacSha2_256_128),
    };
    let (mut tx, mut rx) = pair(suite, 77);
    let mut rng = Counter(5);
    let packets: Vec<Vec<u8>> = (0..200)
        .map(|_| {
            let mut out = Vec::new();
            tx.encapsulate_ip(&ipv4_packet(40), &mut rng, &mut out)
                .unwrap();
            out
        })
        .collect();
    let mut plain = Vec::new();
    rx.decapsulate(&packets[0], &mut plain).unwrap();
    assert_eq!(
        rx.decapsulate(&packets[0], &mut plain),
        Err(EspError::Replay(ReplayError::Duplicate(1)))
    );
    assert!(plain.is_empty(), "out is cleared on failure");
    // Far ahead, then in-window out of order, then too old.
    rx.decapsulate(&packets[199], &mut plain).unwrap();
    rx.decapsulate(&packets[150], &mut plain).unwrap();
    assert_eq!(
        rx.decapsulate(&packets[150], &mut plain),
        Err(EspError::Replay(ReplayError::Duplicate(151)))
    );
    assert_eq!(
        rx.decapsulate(&packets[5], &mut plain),
        Err(EspError::Replay(ReplayError::TooOld(6)))
    );
}

#[test]
fn sequence_number_never_cycles() {
    let suite = EspSuite {
        encr: Encr::AES_GCM_16_256,
        integ: None,
    };
    let (mut tx, _) = pair(suite, 1);
    tx.sequence_number = u32::MAX - 1;
    let mut out = Vec::new();
    assert_eq!(
        tx.encapsulate_ip(&ipv4_packet(20), &mut Counter(0), &mut out),
        Ok(u32::MAX)
    );
    let len = out.len();
    assert_eq!(
        tx.encapsulate_ip(&ipv4_packet(20), &mut Counter(0), &mut out),
        Err(EspError::SequenceNumberOverflow)
    );
    assert_eq!(out.len(), len, "nothing appended");
}

#[test]
fn encr_null_carries_the_payload_in_clear_under_an_icv() {
    let suite: EspSuite = "null-sha256".parse().unwrap();
    let (mut tx, mut rx) = pair(suite, 7);
    let inner = ipv4_packet(33);
    let mut out = Vec::new();
    tx.encapsulate_ip(&inner, &mut Counter(0), &mut out)
        .unwrap();
    // SPI, sequence number, the packet itself (no IV), padding to 4 octets, ICV.
    assert_eq!(
        &out[ESP_HEADER_LEN..ESP_HEADER_LEN + inner.len()],
        &inner[..]
    );
    assert_eq!(out.len(), ESP_HEADER_LEN + 36 + 16);
    assert_eq!((out.len() - ESP_HEADER_LEN - 16) % 4, 0);
    let mut tampered = out.clone();
    tampered[ESP_HEADER_LEN + 12] ^= 1;
    let mut plain = Vec::new();
    assert_eq!(
        rx.decapsulate_ip(&tampered, &mut plain),
        Err(EspError::BadIcv)
    );
    rx.decapsulate_ip(&out, &mut plain).unwrap();
    assert_eq!(plain, inner);
}

#[test]
fn an_sa_asks_for_a_rekey_long_before_its_sequence_number_is_spent() {
    let suite = EspSuite {
        encr: Encr::AES_GCM_16_128,
        integ: None,
    };
    let (mut tx, _) = pair(suite, 1);
    assert!(!tx.needs_rekey());
    tx.sequence_number = REKEY_SEQUENCE_NUMBER - 1;
    assert!(!tx.needs_rekey());
    let mut out = Vec::new();
    tx.encapsulate_ip(&ipv4_packet(20), &mut Counter(0), &mut out)
        .unwrap();
    assert!(tx.needs_rekey());
    assert_eq!(u32::MAX - REKEY_SEQUENCE_NUMBER, 1 << 28);
}

#[test]
fn padding_is_checked() {
    let p = [9, 9, 1, 2, 3, 3, NEXT_HEADER_IPV4];
    assert_eq!(parse_trailer(&p), Ok((NEXT_HEADER_IPV4, 2)));
    let p = [9, 9, 1, 7, 3, 3, NEXT_HEADER_IPV4];
    assert_eq!(parse_trailer(&p), Err(EspError::BadPadding));
    let p = [1, 2, 5, NEXT_HEADER_IPV4];
    assert_eq!(parse_trailer(&p), Err(EspError::BadPadding));
    assert!(matches!(
        parse_trailer(&[NEXT_HEADER_IPV4]),
        Err(EspError::Truncated(_))
    ));
    assert_eq!(parse_trailer(&[0, 59]), Ok((59, 0)));
}

#[test]
fn bad_padding_inside_a_genuine_packet_is_reported() {
    // Seal a plaintext whose padding is wrong with the SA's own key.
    let suite = EspSuite {
        encr: Encr::AES_GCM_16_128,
        integ: None,
    };
    let (tx, mut rx) = pair(suite, 5);
    let Transform::AesGcm { key, salt } = &tx.transform else {
        unreachable!()
    };
    let mut packet = [5u32.to_be_bytes(), 1u32.to_be_bytes()].concat();
    packet.extend_from_slice(&1u64.to_be_bytes());
    let mut text = ipv4_packet(20);
    text.extend_from_slice(&[1, 1, 2, NEXT_HEADER_IPV4]);
    let aad = aead::Aad::from(&packet[..8]);
    let tag = key
        .seal_in_place_separate_tag(Transform::nonce(salt, &packet[8..16]), aad, &mut text)
        .unwrap();
    packet.extend_from_slice(&text);
    packet.extend_from_slice(tag.as_ref());
    let mut out = Vec::new();
    assert_eq!(rx.decapsulate(&packet, &mut out), Err(EspError::BadPadding));
    assert!(out.is_empty());
    // It was authentic, so it counts for anti-replay.
    assert_eq!(rx.replay_window().highest(), 1);
}

#[test]
fn decapsulate_ip_refuses_dummy_and_mismatched_packets() {
    let suite = EspSuite {
        encr: Encr::AES_GCM_16_128,
        integ: None,
    };
    let (mut tx, mut rx) = pair(suite, 5);
    let mut out = Vec::new();
    let mut packet = Vec::new();
    tx.encapsulate(
        NEXT_HEADER_NO_NEXT_HEADER,
        &[],
        &mut Counter(0),
        &mut packet,
    )
    .unwrap();
    assert_eq!(
        rx.decapsulate_ip(&packet, &mut out),
        Err(EspError::UnexpectedNextHeader(59))
    );
    packet.clear();
    tx.encapsulate(
        NEXT_HEADER_IPV6,
        &ipv4_packet(20),
        &mut Counter(0),
        &mut packet,
    )
    .unwrap();
    assert_eq!(
        rx.decapsulate_ip(&packet, &mut out),
        Err(EspError::InnerVersionMismatch {
            next_header: 41,
            version: 4
        })
    );
    assert_eq!(
        tx.encapsulate_ip(&[0x20], &mut Counter(0), &mut packet),
        Err(EspError::NotAnIpPacket(0x20))
    );
}

#[test]
fn constructors_check_keys_and_suites() {
    let gcm = EspSuite {
        encr: Encr::AES_GCM_16_256,
        integ: None,
    };
    assert!(matches!(
        OutboundSa::new(1, gcm, &[0; 32], &[]),
        Err(EspError::KeyLength {
            expected: 36,
            found: 32,
            ..
        })
    ));
    assert!(OutboundSa::new(1, gcm, &[0; 36], &[]).is_ok());
    let cbc = EspSuite {
        encr: Encr::AES_CBC_128,
        integ: Some(Integ::HmacSha2_256_128),
    };
    assert!(matches!(
        InboundSa::new(1, cbc, &[0; 32], &[0; 32]),
        Err(EspError::KeyLength { expected: 16, .. })
    ));
    assert!(matches!(
        InboundSa::new(1, cbc, &[0; 16], &[0; 20]),
        Err(EspError::KeyLength { expected: 32, .. })
    ));
    assert!(matches!(
        InboundSa::new(1, EspSuite { integ: None, ..cbc }, &[0; 16], &[]),
        Err(EspError::UnsupportedSuite(_))
    ));
    assert!(matches!(
        InboundSa::new(
            1,
            EspSuite {
                integ: cbc.integ,
                ..gcm
            },
            &[0; 36],
            &[0; 32]
        ),
        Err(EspError::UnsupportedSuite(_))
    ));
}

#[test]
fn udp_4500_tells_esp_ike_and_keepalive_apart() {
    assert!(matches!(
        UdpEncapsulated::classify(&[0xff]),
        Ok(UdpEncapsulated::NatKeepalive)
    ));
    assert!(matches!(
        UdpEncapsulated::classify(&[0, 0, 0, 0, 0x11, 0x22]),
        Ok(UdpEncapsulated::Ike(&[0x11, 0x22]))
    ));
    match UdpEncapsulated::classify(&[0, 0, 1, 0, 0, 0, 0, 9, 0xaa]) {
        Ok(UdpEncapsulated::Esp(p)) => {
            assert_eq!((p.spi(), p.sequence_number()), (0x100, 9));
            assert_eq!(p.protected(), &[0xaa]);
        }
        other => panic!("{other:?}"),
    }
    for short in [&[][..], &[0xfe], &[0, 0, 0], &[1, 2, 3, 4, 5]] {
        assert!(matches!(
            UdpEncapsulated::classify(short),
            Err(EspError::Truncated(_))
        ));
    }
}

#[test]
fn a_child_sa_gives_each_end_matching_sas() {
    use crate::ike::keys::EspDirectionKeys;
    for suite in EspSuite::defaults() {
        let (e1, a1) = keys(suite, 1);
        let (e2, a2) = keys(suite, 2);
        let keys = crate::ike::ChildSaKeys {
            initiator_to_responder: EspDirectionKeys {
                encr: e1,
                integ: a1,
            },
            responder_to_initiator: EspDirectionKeys {
                encr: e2,
                integ: a2,
            },
        };
        let ue = ChildSa {
            suite,
            inbound_spi: 0x1111,
            outbound_spi: 0x2222,
            keys: keys.clone(),
            tsi: Vec::new(),
            tsr: Vec::new(),
            mode: crate::ike::sa::Mode::Tunnel,
        };
        let epdg = ChildSa {
            inbound_spi: 0x2222,
            outbound_spi: 0x1111,
            keys,
            ..ue.clone()
        };
        let (mut ue_in, mut ue_out) = child_sa_pair(&ue, IkeRole::Initiator).unwrap();
        let (mut epdg_in, mut epdg_out) = child_sa_pair(&epdg, IkeRole::Responder).unwrap();
        let (mut packet, mut plain) = (Vec::new(), Vec::new());
        ue_out
            .encapsulate_ip(&ipv4_packet(50), &mut Counter(1), &mut packet)
            .unwrap();
        epdg_in.decapsulate_ip(&packet, &mut plain).unwrap();
        assert_eq!(plain, ipv4_packet(50));
        packet.clear();
        epdg_out
            .encapsulate_ip(&ipv6_packet(50), &mut Counter(1), &mut packet)
            .unwrap();
        ue_in.decapsulate_ip(&packet, &mut plain).unwrap();
        assert_eq!(plain, ipv6_packet(50));
        // A second delivery is a replay.
        assert!(matches!(
            ue_in.decapsulate(&packet, &mut plain),
            Err(EspError::Replay(_))
        ));
        packet.clear();
        ue_out
            .encapsulate_ip(&ipv4_packet(50), &mut Counter(1), &mut packet)
            .unwrap();
        // Each direction has its own keys: our own packet reflected back is refused.
        packet[..4].copy_from_slice(&0x1111u32.to_be_bytes());
        assert_eq!(
            ue_in.decapsulate(&packet, &mut plain),
            Err(EspError::BadIcv)
        );
    }
}

fn any_suite() -> impl Strategy<Value = EspSuite> {
    proptest::sample::select(all_suites())
}

proptest! {
    #[test]
    fn decapsulating_arbitrary_bytes_never_panics(
        suite in any_suite(),
        mut bytes in proptest::collection::vec(any::<u8>(), 0..120),
        with_our_spi in any::<bool>(),
    ) {
        let (_, mut rx) = pair(suite, 0x0a0b_0c0d);
        if with_our_spi && bytes.len() >= 4 {
            bytes[..4].copy_from_slice(&0x0a0b_0c0du32.to_be_bytes());
        }
        let mut out = Vec::new();
        prop_assert!(rx.decapsulate(&bytes, &mut out).is_err());
        let _ = rx.decapsulate_ip(&bytes, &mut out);
        let _ = UdpEncapsulated::classify(&bytes);
    }

    #[test]
    fn arbitrary_payloads_round_trip(
        suite in any_suite(),
        next_header in any::<u8>(),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        seed in any::<u8>(),
    ) {
        let (mut tx, mut rx) = pair(suite, 42);
        let mut packet = Vec::new();
        let seq = tx.encapsulate(next_header, &payload, &mut Counter(seed), &mut packet).unwrap();
        let mut out = Vec::new();
        let d = rx.decapsulate(&packet, &mut out).unwrap();
        prop_assert_eq!(d, Decapsulated { sequence_number: seq, next_header });
        prop_assert_eq!(out, payload);
    }

    #[test]
    fn mutated_packets_are_refused_without_panic(
        suite in any_suite(),
        flips in proptest::collection::vec((any::<usize>(), 1u8..), 1..4),
        cut in any::<usize>(),
    ) {
        let (mut tx, mut rx) = pair(suite, 42);
        let mut packet = Vec::new();
        tx.encapsulate_ip(&ipv6_packet(70), &mut Counter(1), &mut packet).unwrap();
        for (i, x) in flips {
            let n = packet.len();
            packet[i % n] ^= x;
        }
        let n = packet.len();
        packet.truncate(n - cut % 4);
        prop_assert!(rx.decapsulate(&packet, &mut Vec::new()).is_err());
    }
}
