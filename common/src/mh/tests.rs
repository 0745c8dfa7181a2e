//! Codec tests: hand-checked bytes, checksum rules, the PBU validation statuses, and
//! property tests (never a panic on any bytes; every Repr round-trips).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use proptest::collection::vec;
use proptest::prelude::*;

use super::wire::Sink;
use super::*;

fn minimal_pbu() -> ProxyBindingUpdate {
    ProxyBindingUpdate {
        sequence: 1,
        flags: BuFlags(BuFlags::ACK | BuFlags::HOME_REGISTRATION | BuFlags::PROXY),
        lifetime: Lifetime(150),
        mn_id: "a@b".into(),
        apn: None,
        home_network_prefixes: vec!["::/0".parse().unwrap()],
        handoff: HandoffIndicator::AttachmentOverNewInterface,
        access_technology: AccessTechnologyType::Ieee80211,
        timestamp: None,
        link_local_address: None,
        link_layer_id: None,
        gre_key: None,
        ipv4_home_address_request: None,
        ipv4_care_of_address: None,
        restart_counter: None,
        vendor: Vec::new(),
        other: Vec::new(),
    }
}

#[test]
fn pbu_bytes_are_as_rfc_5213_lays_them_out() {
    let mut pbu = minimal_pbu();
    pbu.home_network_prefixes.clear();
    pbu.ipv4_home_address_request = None;
    let message = MobilityHeaderRepr {
        payload_proto: IPPROTO_NONE,
        message: MobilityMessage::BindingUpdate(pbu.to_binding_update()),
    };
    let bytes = message.to_bytes(ChecksumContext::Skip);
    let expected: &[u8] = &[
        0x3b, 0x03, 0x05, 0x00, 0x00, 0x00, // proto 59, len (3+1)*8, type 5, checksum
        0x00, 0x01, 0xc2, 0x00, 0x00, 0x96, // sequence 1, A|H|P, lifetime 150 (600 s)
        0x08, 0x04, 0x01, b'a', b'@', b'b', // MN-ID, subtype 1 (NAI)
        0x17, 0x02, 0x00, 0x01, // Handoff Indicator 1
        0x18, 0x02, 0x00, 0x04, // Access Technology Type 4 (802.11)
        0x01, 0x04, 0x00, 0x00, 0x00, 0x00, // PadN to 32 octets
    ];
    assert_eq!(bytes, expected);
}

#[test]
fn options_are_placed_at_their_alignment() {
    let mut pbu = minimal_pbu();
    pbu.timestamp = Some(Timestamp(0x0102_0304_0506_0708));
    pbu.gre_key = Some(GreKey(0xdead_beef));
    pbu.ipv4_home_address_request = Some("0.0.0.0/0".parse().unwrap());
    let bytes = pbu.to_message().to_bytes(ChecksumContext::Skip);
    assert_eq!(bytes.len() % 8, 0);
    let view = MobilityHeader::new_checked(&bytes[..]).unwrap();
    let mut offset = 12;
    for raw in view.options(6) {
        let raw = raw.unwrap();
        // RFC 5213 sections 8.3 and 8.8, RFC 5845 section 3.1, RFC 5844 section 3.3.1.
        let (x, y) = match MobilityOptionType::from(raw.option_type) {
            MobilityOptionType::HomeNetworkPrefix => (8, 4),
            MobilityOptionType::Timestamp => (8, 2),
            MobilityOptionType::GreKey | MobilityOptionType::Ipv4HomeAddressRequest => (4, 0),
            _ => (1, 0),
        };
        assert_eq!(
            offset % x,
            y,
            "option {} at offset {offset}",
            raw.option_type
        );
        offset += if raw.option_type == MobilityOptionType::Pad1.value() {
            1
        } else {
            2 + raw.data.len()
        };
    }
    assert_eq!(offset, bytes.len());
}

#[test]
fn ipv6_checksum_verifies_and_catches_a_flipped_bit() {
    let context = ChecksumContext::Ipv6 {
        source: "2001:db8::1".parse().unwrap(),
        destination: "2001:db8::2".parse().unwrap(),
    };
    let mut bytes = minimal_pbu().to_message().to_bytes(context);
    assert_ne!(&bytes[4..6], &[0, 0]);
    assert!(MobilityHeaderRepr::parse(&bytes, context).is_ok());
    bytes[9] ^= 0x10;
    assert_eq!(
        MobilityHeaderRepr::parse(&bytes, context),
        Err(MhError::BadChecksum)
    );
}

/// RFC 6275 section 9.2, in its order: a known MH Type first (else a Binding Error),
/// then Payload Proto 59, then a Header Len covering the type's fixed part; the last two
/// name the field an ICMP Parameter Problem points at.
#[test]
fn payload_proto_and_header_len_are_checked_in_the_order_of_rfc_6275_section_9_2() {
    let good = minimal_pbu().to_message().to_bytes(ChecksumContext::Skip);
    let mut tcp = good.clone();
    tcp[0] = 6;
    let err = MobilityHeaderRepr::parse(&tcp, ChecksumContext::Skip).unwrap_err();
    assert_eq!(err, MhError::PayloadProto(6));
    assert_eq!(err.parameter_problem_offset(), Some(0));
    // An unknown type is a Binding Error whatever its Payload Proto.
    let mut unknown = tcp.clone();
    unknown[2] = 200;
    assert_eq!(
        MobilityHeaderRepr::parse(&unknown, ChecksumContext::Skip),
        Err(MhError::UnknownMhType(200))
    );
    // A BU with Header Len 0 (8 octets) cannot hold its 12-octet fixed part.
    let short = [IPPROTO_NONE, 0, 5, 0, 0, 0, 0, 0];
    let err = MobilityHeaderRepr::parse(&short, ChecksumContext::Skip).unwrap_err();
    assert_eq!(err, MhError::HeaderLenTooShort(5));
    assert_eq!(err.parameter_problem_offset(), Some(1));
}

/// RFC 5844 sections 4.1.3.2 and 4.2.2.1: over UDP 5436 the Checksum field "MUST be set
/// to zero"; sections 4.1.3.1 and 4.2.2: a receiver "MUST" ignore it, whatever it holds.
#[test]
fn ipv4_udp_sends_a_zero_checksum_and_ignores_the_field_on_receipt() {
    let bytes = minimal_pbu()
        .to_message()
        .to_bytes(ChecksumContext::Ipv4Udp);
    assert_eq!(&bytes[4..6], &[0, 0]);
    let meant = MobilityHeaderRepr::parse(&bytes, ChecksumContext::Ipv4Udp).unwrap();
    for field in [[0x00, 0x01], [0xbe, 0xef], [0xff, 0xff]] {
        let mut other = bytes.clone();
        other[4..6].copy_from_slice(&field);
        assert_eq!(
            MobilityHeaderRepr::parse(&other, ChecksumContext::Ipv4Udp),
            Ok(meant.clone())
        );
    }
    // What an RFC 6275 sum over the IPv6 pseudo-header would be is no reason to refuse
    // it either (an implementation that computes one anyway still interoperates).
    let ipv6 = ChecksumContext::Ipv6 {
        source: Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped(),
        destination: Ipv4Addr::new(192, 0, 2, 2).to_ipv6_mapped(),
    };
    let summed = minimal_pbu().to_message().to_bytes(ipv6);
    assert!(MobilityHeaderRepr::parse(&summed, ChecksumContext::Ipv4Udp).is_ok());
}

#[test]
fn ipv6_checksum_matches_a_hand_computed_sum() {
    // A Heartbeat between ::1 and ::2, summed by hand (RFC 1071):
    // pseudo-header words: 0x0001 + 0x0002 (addresses), 0x0010 (length 16), 0x0087 (135);
    // message words: 0x3b01 + 0x0d00 + 0x0000 + 0x0001 + 0x0000 + 0x002a (sequence 42)
    // and the PadN to 16 octets, 0x0102 + 0x0000.
    let message = MobilityHeaderRepr {
        payload_proto: IPPROTO_NONE,
        message: MobilityMessage::Heartbeat(HeartbeatRepr {
            unsolicited: false,
            response: true,
            sequence: 42,
            options: Vec::new(),
        }),
    };
    let context = ChecksumContext::Ipv6 {
        source: Ipv6Addr::LOCALHOST,
        destination: "::2".parse().unwrap(),
    };
    let bytes = message.to_bytes(context);
    let sum: u32 = 0x0001 + 0x0002 + 0x0010 + 0x0087 + 0x3b01 + 0x0d00 + 0x0001 + 0x002a + 0x0102;
    let expected = !(sum as u16);
    assert_eq!(u16::from_be_bytes([bytes[4], bytes[5]]), expected);
}

#[test]
fn length_errors_are_typed_never_panics() {
    let good = minimal_pbu().to_message().to_bytes(ChecksumContext::Skip);
    assert!(matches!(
        MobilityHeaderRepr::parse(&good[..7], ChecksumContext::Skip),
        Err(MhError::Truncated(_))
    ));
    assert!(matches!(
        MobilityHeaderRepr::parse(&good[..good.len() - 8], ChecksumContext::Skip),
        Err(MhError::Truncated(_))
    ));
    let mut long = good.clone();
    long.push(0);
    assert!(matches!(
        MobilityHeaderRepr::parse(&long, ChecksumContext::Skip),
        Err(MhError::Malformed(_))
    ));
    // An option whose length runs past the end.
    let mut overrun = good.clone();
    overrun[13] = 200;
    assert!(matches!(
        MobilityHeaderRepr::parse(&overrun, ChecksumContext::Skip),
        Err(MhError::Truncated(_))
    ));
}

#[test]
fn over_long_data_is_cut_and_reported_never_a_panic() {
    let mut pbu = minimal_pbu();
    pbu.mn_id = "n".repeat(300);
    let message = pbu.to_message();
    assert!(message.check_limits().is_err());
    let bytes = message.to_bytes(ChecksumContext::Skip);
    assert_eq!(bytes.len(), message.buffer_len());
    let parsed = MobilityHeaderRepr::parse(&bytes, ChecksumContext::Skip).unwrap();
    let MobilityMessage::BindingUpdate(bu) = parsed.message else {
        panic!("not a BU")
    };
    // The option's data (subtype + NAI) was cut at 255 octets.
    assert_eq!(ProxyBindingUpdate::try_from(&bu).unwrap().mn_id.len(), 254);

    let mut huge = minimal_pbu().to_binding_update();
    for _ in 0..12 {
        huge.options
            .push(MobilityOption::BindingAuthorizationData(vec![1; 250]));
    }
    let huge = MobilityHeaderRepr {
        payload_proto: IPPROTO_NONE,
        message: MobilityMessage::BindingUpdate(huge),
    };
    assert!(huge.check_limits().is_err());
    assert_eq!(
        huge.to_bytes(ChecksumContext::Skip).len(),
        huge.buffer_len()
    );
    let mut short = [0u8; 10];
    huge.emit(&mut short, ChecksumContext::Skip);
}

#[test]
fn unknown_mh_type_is_reported_for_a_binding_error() {
    let mut bytes = minimal_pbu().to_message().to_bytes(ChecksumContext::Skip);
    bytes[2] = 200;
    assert_eq!(
        MobilityHeaderRepr::parse(&bytes, ChecksumContext::Skip),
        Err(MhError::UnknownMhType(200))
    );
}

#[test]
fn unknown_options_and_vendors_are_kept_and_re_emitted_unchanged() {
    let mut bu = minimal_pbu().to_binding_update();
    bu.options.push(MobilityOption::Unknown {
        option_type: 250,
        data: vec![1, 2, 3],
    });
    bu.options
        .push(MobilityOption::VendorSpecific(VendorSpecific::Other {
            vendor_id: 9,
            sub_type: 4,
            data: vec![7; 5],
        }));
    bu.options
        .push(MobilityOption::VendorSpecific(VendorSpecific::ThreeGpp(
            ThreeGppOption::Other {
                sub_type: 42,
                data: vec![0, 9, 9],
            },
        )));
    let message = MobilityHeaderRepr {
        payload_proto: IPPROTO_NONE,
        message: MobilityMessage::BindingUpdate(bu),
    };
    let bytes = message.to_bytes(ChecksumContext::Skip);
    let parsed = MobilityHeaderRepr::parse(&bytes, ChecksumContext::Skip).unwrap();
    assert_eq!(parsed, message);
    assert_eq!(parsed.to_bytes(ChecksumContext::Skip), bytes);
    let MobilityMessage::BindingUpdate(bu) = &parsed.message else {
        panic!("not a BU")
    };
    let pbu = ProxyBindingUpdate::try_from(bu).unwrap();
    assert_eq!(pbu.other.len(), 1);
    assert_eq!(pbu.vendor.len(), 2);
    // The proxy form re-emits every option it kept (in its own fixed order).
    let mut before: Vec<String> = bu.options.iter().map(|o| format!("{o:?}")).collect();
    let mut after: Vec<String> = pbu
        .to_binding_update()
        .options
        .iter()
        .map(|o| format!("{o:?}"))
        .collect();
    before.sort();
    after.sort();
    assert_eq!(before, after);
}

#[test]
fn three_gpp_sub_types_have_their_ts_29_275_layout() {
    let option = MobilityOption::VendorSpecific(VendorSpecific::ThreeGpp(
        ThreeGppOption::PdnGwIpAddress(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
    ));
    let mut sink = Sink::counting();
    option.write(&mut sink);
    let mut bytes = vec![0u8; sink.pos];
    option.write(&mut Sink::new(&mut bytes));
    // Type 19, length 10, vendor 10415, sub-type 3, reserved/M 0, address.
    assert_eq!(bytes, [19, 10, 0x00, 0x00, 0x28, 0xaf, 3, 0, 10, 1, 2, 3]);
    let parsed = parse_options(&bytes).unwrap();
    assert_eq!(parsed, vec![option]);
}

#[test]
fn pbu_validation_names_the_missing_option_status() {
    let full = minimal_pbu().to_binding_update();
    let without = |drop: fn(&MobilityOption) -> bool| {
        let mut bu = full.clone();
        bu.options.retain(|o| !drop(o));
        ProxyBindingUpdate::try_from(&bu).map_err(|e| e.status)
    };
    assert_eq!(
        without(|o| matches!(o, MobilityOption::MobileNodeIdentifier(_))),
        Err(BindingAckStatus::MissingMnIdentifierOption)
    );
    assert_eq!(
        without(|o| matches!(o, MobilityOption::HandoffIndicator(_))),
        Err(BindingAckStatus::MissingHandoffIndicatorOption)
    );
    assert_eq!(
        without(|o| matches!(o, MobilityOption::AccessTechnologyType(_))),
        Err(BindingAckStatus::MissingAccessTechTypeOption)
    );
    assert_eq!(
        without(|o| matches!(o, MobilityOption::HomeNetworkPrefix(_))),
        Err(BindingAckStatus::MissingHomeNetworkPrefixOption)
    );
    let mut not_proxy = full.clone();
    not_proxy.flags = BuFlags(BuFlags::ACK | BuFlags::HOME_REGISTRATION);
    assert_eq!(
        ProxyBindingUpdate::try_from(&not_proxy).map_err(|e| e.status),
        Err(BindingAckStatus::HomeRegistrationNotSupported)
    );
    assert_eq!(u8::from(BindingAckStatus::MissingMnIdentifierOption), 160);
    assert_eq!(u8::from(BindingAckStatus::GreKeyOptionRequired), 163);
    assert_eq!(u8::from(BindingAckStatus::TimestampMismatch), 156);
}

#[test]
fn timestamp_is_rfc_5213_fixed_point_since_1970() {
    use std::time::{Duration, UNIX_EPOCH};
    // 2023-11-14 22:13:20.5 UTC: 0x6553f100 seconds, half a second is 0x8000.
    let time = UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
    let t = Timestamp::from_system_time(time);
    assert_eq!(
        t.0.to_be_bytes(),
        [0, 0, 0x65, 0x53, 0xf1, 0x00, 0x80, 0x00]
    );
    assert_eq!(t.to_system_time(), time);
    let later = Timestamp::from_system_time(time + Duration::from_secs(7));
    assert_eq!(later.distance(t), Duration::from_secs(7));
    assert_eq!(t.distance(later), Duration::from_secs(7));
}

#[test]
fn every_registry_round_trips_named_and_unknown_values() {
    use crate::registry::tests::assert_registry;
    assert_registry::<MhType>();
    assert_registry::<MobilityOptionType>();
    assert_registry::<BindingAckStatus>();
    assert_registry::<Ipv4HomeAddressReplyStatus>();
    assert_registry::<Ipv4AddressAcknowledgementStatus>();
    assert_registry::<HandoffIndicator>();
    assert_registry::<AccessTechnologyType>();
    assert_registry::<PdnType>();
    assert_registry::<ThreeGppSubType>();
    assert_registry::<MnIdSubtype>();
    assert_registry::<BindingErrorStatus>();
    assert_registry::<BindingRevocationType>();
    assert_registry::<RevocationTrigger>();
    assert_registry::<BindingRevocationStatus>();
}

/// RFC 5844 section 3.3.5: the four IPv4 statuses are named, displayed as the RFC spells
/// them, reject the binding, and travel as 170 to 173.
#[test]
fn rfc_5844_statuses_are_named() {
    let named = [
        (
            170,
            BindingAckStatus::NotAuthorizedForIpv4MobilityService,
            "NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE",
        ),
        (
            171,
            BindingAckStatus::NotAuthorizedForIpv4HomeAddress,
            "NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS",
        ),
        (
            172,
            BindingAckStatus::NotAuthorizedForIpv6MobilityService,
            "NOT_AUTHORIZED_FOR_IPV6_MOBILITY_SERVICE",
        ),
        (
            173,
            BindingAckStatus::MultipleIpv4HomeAddressAssignmentNotSupported,
            "MULTIPLE_IPV4_HOME_ADDRESS_ASSIGNMENT_NOT_SUPPORTED",
        ),
    ];
    for (value, status, name) in named {
        assert_eq!(BindingAckStatus::from(value), status);
        assert_eq!(status.to_string(), name);
        assert!(!status.is_accepted());
        let ba = BindingAckRepr {
            status,
            flags: BaFlags(BaFlags::PROXY),
            sequence: 7,
            lifetime: Lifetime(0),
            options: vec![],
        };
        let message = MobilityHeaderRepr {
            payload_proto: IPPROTO_NONE,
            message: MobilityMessage::BindingAck(ba),
        };
        let bytes = message.to_bytes(ChecksumContext::Skip);
        assert_eq!(bytes[6], value);
        let parsed = MobilityHeaderRepr::parse(&bytes, ChecksumContext::Skip).unwrap();
        assert_eq!(parsed, message);
    }
    assert_eq!(BindingAckStatus::from(175), BindingAckStatus::Unknown(175));
}

/// The option table's alignment column against the RFCs, read independently: RFC 6275
/// section 6.2, RFC 3963 section 4.3, RFC 4283 section 3, RFC 5094 section 3, RFC 5149
/// section 3, RFC 5213 section 8, RFC 5555 section 3, RFC 5844 section 3.3, RFC 5845
/// section 3.1, RFC 5847 section 5.2.
#[test]
fn every_option_alignment_is_the_one_its_rfc_gives() {
    use MobilityOptionType as T;
    let rfc = |t: MobilityOptionType| match t {
        T::Pad1 | T::PadN => (1, 0),
        T::BindingRefreshAdvice | T::NonceIndices => (2, 0),
        T::AlternateCareOfAddress | T::LinkLocalAddress => (8, 6),
        T::BindingAuthorizationData | T::Timestamp | T::MobileNodeLinkLayerIdentifier => (8, 2),
        T::MobileNetworkPrefix | T::HomeNetworkPrefix => (8, 4),
        T::VendorSpecific | T::RestartCounter => (4, 2),
        T::Ipv4HomeAddress
        | T::Ipv4AddressAcknowledgement
        | T::NatDetection
        | T::Ipv4CareOfAddress
        | T::GreKey
        | T::Ipv4HomeAddressRequest
        | T::Ipv4HomeAddressReply
        | T::Ipv4DefaultRouterAddress => (4, 0),
        T::MobileNodeIdentifier
        | T::ServiceSelection
        | T::HandoffIndicator
        | T::AccessTechnologyType
        | T::Ipv4DhcpSupportMode => (1, 0),
        T::Unknown(_) => unreachable!(),
    };
    for &t in MobilityOptionType::NAMED {
        let layout = t.layout().expect("every named option type is in the table");
        assert_eq!((layout.alignment.x, layout.alignment.y), rfc(t), "{t}");
        assert!(is_known_option_type(t.value()));
    }
    assert!(!is_known_option_type(7));
    assert_eq!(MobilityOptionType::from(33).to_string(), "GRE Key Option");
}

/// A wrong length is refused with the option's name, before any field is read.
#[test]
fn option_lengths_follow_the_table() {
    for &t in &MobilityOptionType::NAMED[2..] {
        let Some(layout) = t.layout() else { continue };
        for len in 0..40 {
            let data = vec![0u8; len];
            let parsed = MobilityOption::parse(t.value(), &data);
            if !layout.length.allows(len) {
                assert!(
                    matches!(parsed, Err(MhError::Malformed(why)) if why.starts_with(t.name().unwrap())),
                    "{t} {len}: {parsed:?}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Property tests

fn ipv6_addr() -> impl Strategy<Value = Ipv6Addr> {
    any::<[u8; 16]>().prop_map(Ipv6Addr::from)
}
fn ipv4_addr() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}
fn ipv6_net() -> impl Strategy<Value = Ipv6Net> {
    (ipv6_addr(), 0u8..=128).prop_map(|(a, l)| Ipv6Net::new(a, l).unwrap())
}
fn ipv4_net() -> impl Strategy<Value = Ipv4Net> {
    (ipv4_addr(), 0u8..=32).prop_map(|(a, l)| Ipv4Net::new(a, l).unwrap())
}
fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}
fn text() -> impl Strategy<Value = String> {
    ".{0,30}"
}

fn three_gpp() -> impl Strategy<Value = ThreeGppOption> {
    prop_oneof![
        bytes(60).prop_map(ThreeGppOption::ProtocolConfigurationOptions),
        any::<u8>().prop_map(ThreeGppOption::ErrorCode),
        ipv4_addr().prop_map(|a| ThreeGppOption::PdnGwIpAddress(IpAddr::V4(a))),
        ipv6_addr().prop_map(|a| ThreeGppOption::PdnGwIpAddress(IpAddr::V6(a))),
        any::<u32>().prop_map(ThreeGppOption::ChargingId),
        (any::<u8>(), any::<u8>()).prop_map(|(t, cause)| ThreeGppOption::PdnTypeIndication {
            pdn_type: PdnType::from(t),
            cause
        }),
        (8u8..=255, bytes(40))
            .prop_map(|(sub_type, data)| ThreeGppOption::Other { sub_type, data }),
    ]
}

fn vendor() -> impl Strategy<Value = VendorSpecific> {
    prop_oneof![
        three_gpp().prop_map(VendorSpecific::ThreeGpp),
        (
            any::<u32>().prop_filter("not 3GPP", |v| *v != VENDOR_ID_3GPP),
            any::<u8>(),
            bytes(40)
        )
            .prop_map(|(vendor_id, sub_type, data)| VendorSpecific::Other {
                vendor_id,
                sub_type,
                data
            }),
    ]
}

fn option() -> impl Strategy<Value = MobilityOption> {
    use MobilityOption as O;
    prop_oneof![
        any::<u16>().prop_map(O::BindingRefreshAdvice),
        ipv6_addr().prop_map(O::AlternateCareOfAddress),
        (any::<u16>(), any::<u16>()).prop_map(|(home, care_of)| O::NonceIndices { home, care_of }),
        bytes(40).prop_map(O::BindingAuthorizationData),
        ipv6_net().prop_map(O::MobileNetworkPrefix),
        text().prop_map(|s| O::MobileNodeIdentifier(MobileNodeIdentifier::Nai(s))),
        (2u8..=255, bytes(30)).prop_map(|(sub_type, id)| O::MobileNodeIdentifier(
            MobileNodeIdentifier::Other { sub_type, id }
        )),
        vendor().prop_map(O::VendorSpecific),
        text().prop_map(O::ServiceSelection),
        ipv6_net().prop_map(O::HomeNetworkPrefix),
        any::<u8>().prop_map(|v| O::HandoffIndicator(HandoffIndicator::from(v))),
        any::<u8>().prop_map(|v| O::AccessTechnologyType(AccessTechnologyType::from(v))),
        bytes(30).prop_map(O::MobileNodeLinkLayerIdentifier),
        ipv6_addr().prop_map(O::LinkLocalAddress),
        any::<u64>().prop_map(|t| O::Timestamp(Timestamp(t))),
        any::<u32>().prop_map(O::RestartCounter),
        (0u8..=32, ipv4_addr(), any::<bool>()).prop_map(|(prefix_len, address, request_prefix)| {
            O::Ipv4HomeAddress {
                prefix_len,
                address,
                request_prefix,
            }
        }),
        (any::<u8>(), 0u8..=32, ipv4_addr()).prop_map(|(status, prefix_len, address)| {
            O::Ipv4AddressAcknowledgement {
                status: status.into(),
                prefix_len,
                address,
            }
        }),
        (any::<bool>(), any::<u32>()).prop_map(|(udp_encapsulation_required, refresh_time)| {
            O::NatDetection {
                udp_encapsulation_required,
                refresh_time,
            }
        }),
        ipv4_addr().prop_map(O::Ipv4CareOfAddress),
        any::<u32>().prop_map(|k| O::GreKey(GreKey(k))),
        ipv4_net().prop_map(O::Ipv4HomeAddressRequest),
        (any::<u8>(), ipv4_net()).prop_map(|(s, address)| O::Ipv4HomeAddressReply {
            status: Ipv4HomeAddressReplyStatus::from(s),
            address
        }),
        ipv4_addr().prop_map(O::Ipv4DefaultRouterAddress),
        any::<bool>().prop_map(|server| O::Ipv4DhcpSupportMode { server }),
        (40u8..=255, bytes(40)).prop_map(|(option_type, data)| O::Unknown { option_type, data }),
    ]
}

fn options() -> impl Strategy<Value = Vec<MobilityOption>> {
    vec(option(), 0..8)
}

fn message() -> impl Strategy<Value = MobilityMessage> {
    prop_oneof![
        (any::<u16>(), any::<u16>(), any::<u16>(), options()).prop_map(
            |(sequence, flags, lifetime, options)| MobilityMessage::BindingUpdate(
                BindingUpdateRepr {
                    sequence,
                    flags: BuFlags(flags),
                    lifetime: Lifetime(lifetime),
                    options
                }
            )
        ),
        (
            any::<u8>(),
            any::<u8>(),
            any::<u16>(),
            any::<u16>(),
            options()
        )
            .prop_map(|(status, flags, sequence, lifetime, options)| {
                MobilityMessage::BindingAck(BindingAckRepr {
                    status: BindingAckStatus::from(status),
                    flags: BaFlags(flags),
                    sequence,
                    lifetime: Lifetime(lifetime),
                    options,
                })
            }),
        (any::<u8>(), ipv6_addr(), options()).prop_map(|(status, home_address, options)| {
            MobilityMessage::BindingError(BindingErrorRepr {
                status: BindingErrorStatus::from(status),
                home_address,
                options,
            })
        }),
        (any::<bool>(), any::<bool>(), any::<u32>(), options()).prop_map(
            |(unsolicited, response, sequence, options)| MobilityMessage::Heartbeat(
                HeartbeatRepr {
                    unsolicited,
                    response,
                    sequence,
                    options
                }
            )
        ),
        (
            any::<u8>(),
            any::<u8>(),
            any::<u16>(),
            any::<u8>(),
            options()
        )
            .prop_map(|(t, trigger_or_status, sequence, flags, options)| {
                MobilityMessage::BindingRevocation(BindingRevocationRepr {
                    revocation_type: BindingRevocationType::from(t),
                    trigger_or_status,
                    sequence,
                    flags,
                    options,
                })
            }),
    ]
}

fn context() -> impl Strategy<Value = ChecksumContext> {
    prop_oneof![
        Just(ChecksumContext::Skip),
        (ipv6_addr(), ipv6_addr()).prop_map(|(source, destination)| ChecksumContext::Ipv6 {
            source,
            destination
        }),
        Just(ChecksumContext::Ipv4Udp),
    ]
}

fn proxy_binding_update() -> impl Strategy<Value = ProxyBindingUpdate> {
    let other = prop_oneof![
        any::<u16>().prop_map(MobilityOption::BindingRefreshAdvice),
        (40u8..=255, bytes(20))
            .prop_map(|(option_type, data)| MobilityOption::Unknown { option_type, data }),
    ];
    (
        (
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            text(),
            proptest::option::of(text()),
        ),
        (vec(ipv6_net(), 0..3), any::<u8>(), any::<u8>()),
        (
            proptest::option::of(any::<u64>()),
            proptest::option::of(ipv6_addr()),
            proptest::option::of(bytes(20)),
            proptest::option::of(any::<u32>()),
        ),
        (
            proptest::option::of(ipv4_net()),
            proptest::option::of(ipv4_addr()),
            proptest::option::of(any::<u32>()),
            vec(vendor(), 0..3),
            vec(other, 0..3),
        ),
    )
        .prop_filter(
            "a PBU asks for a prefix or an IPv4 address",
            |(_, (hnps, _, _), _, (v4, ..))| !hnps.is_empty() || v4.is_some(),
        )
        .prop_map(
            |(
                (sequence, flags, lifetime, mn_id, apn),
                (home_network_prefixes, hi, att),
                (timestamp, link_local_address, link_layer_id, gre_key),
                (ipv4_home_address_request, ipv4_care_of_address, restart_counter, vendor, other),
            )| ProxyBindingUpdate {
                sequence,
                flags: BuFlags(flags | BuFlags::PROXY),
                lifetime: Lifetime(lifetime),
                mn_id,
                apn,
                home_network_prefixes,
                handoff: HandoffIndicator::from(hi),
                access_technology: AccessTechnologyType::from(att),
                timestamp: timestamp.map(Timestamp),
                link_local_address,
                link_layer_id,
                gre_key: gre_key.map(GreKey),
                ipv4_home_address_request,
                ipv4_care_of_address,
                restart_counter,
                vendor,
                other,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_never_panics_on_any_bytes(data in bytes(300), ctx in context()) {
        let _ = MobilityHeaderRepr::parse(&data, ctx);
        let _ = parse_options(&data);
    }

    #[test]
    fn parse_never_panics_on_mutated_valid_messages(
        m in message(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let repr = MobilityHeaderRepr { payload_proto: IPPROTO_NONE, message: m };
        let mut data = repr.to_bytes(ChecksumContext::Skip);
        for (at, value) in edits {
            let i = at.index(data.len());
            data[i] = value;
        }
        if let Ok(parsed) = MobilityHeaderRepr::parse(&data, ChecksumContext::Skip) {
            // Whatever parses re-emits to something that parses to the same value.
            let again = parsed.to_bytes(ChecksumContext::Skip);
            prop_assert_eq!(MobilityHeaderRepr::parse(&again, ChecksumContext::Skip), Ok(parsed));
        }
    }

    #[test]
    fn every_message_round_trips(
        payload_proto in any::<u8>(),
        m in message(),
        ctx in context(),
    ) {
        let repr = MobilityHeaderRepr { payload_proto, message: m };
        prop_assert!(repr.check_limits().is_ok());
        let data = repr.to_bytes(ctx);
        prop_assert_eq!(data.len(), repr.buffer_len());
        prop_assert_eq!(data.len() % 8, 0);
        // Any Payload Proto is emitted as given; only 59 is accepted (RFC 6275 9.2).
        if payload_proto == IPPROTO_NONE {
            prop_assert_eq!(MobilityHeaderRepr::parse(&data, ctx), Ok(repr));
        } else {
            prop_assert_eq!(
                MobilityHeaderRepr::parse(&data, ctx),
                Err(MhError::PayloadProto(payload_proto))
            );
        }
    }

    #[test]
    fn proxy_binding_update_round_trips(pbu in proxy_binding_update(), ctx in context()) {
        let data = pbu.to_message().to_bytes(ctx);
        let parsed = MobilityHeaderRepr::parse(&data, ctx).unwrap();
        let MobilityMessage::BindingUpdate(bu) = parsed.message else {
            return Err(TestCaseError::fail("not a BU"));
        };
        prop_assert_eq!(ProxyBindingUpdate::try_from(&bu), Ok(pbu));
    }

    #[test]
    fn proxy_binding_ack_round_trips(
        status in any::<u8>(),
        pbu in proxy_binding_update(),
        reply in proptest::option::of((any::<u8>(), ipv4_net())),
        router in proptest::option::of(ipv4_addr()),
    ) {
        let pba = ProxyBindingAck {
            status: BindingAckStatus::from(status),
            sequence: pbu.sequence,
            lifetime: pbu.lifetime,
            mn_id: Some(pbu.mn_id.clone()),
            apn: pbu.apn.clone(),
            home_network_prefixes: pbu.home_network_prefixes.clone(),
            handoff: Some(pbu.handoff),
            access_technology: Some(pbu.access_technology),
            timestamp: pbu.timestamp,
            link_local_address: pbu.link_local_address,
            link_layer_id: pbu.link_layer_id.clone(),
            gre_key: pbu.gre_key,
            ipv4_home_address_reply: reply
                .map(|(s, a)| (Ipv4HomeAddressReplyStatus::from(s), a)),
            ipv4_default_router: router,
            restart_counter: pbu.restart_counter,
            vendor: pbu.vendor.clone(),
            other: pbu.other.clone(),
        };
        let data = pba.to_message().to_bytes(ChecksumContext::Skip);
        let parsed = MobilityHeaderRepr::parse(&data, ChecksumContext::Skip).unwrap();
        let MobilityMessage::BindingAck(ba) = parsed.message else {
            return Err(TestCaseError::fail("not a BA"));
        };
        prop_assert_eq!(ProxyBindingAck::try_from(&ba), Ok(pba));
    }
}

/// The per-message views read every field at the range RFC 6275 (and RFC 5846, 5847)
/// draws, and refuse a buffer of another type or too short for the fixed part.
#[test]
fn message_views_read_fields_at_their_ranges() {
    let pba = MobilityHeaderRepr {
        payload_proto: IPPROTO_NONE,
        message: MobilityMessage::BindingAck(BindingAckRepr {
            status: BindingAckStatus::NotAuthorizedForIpv4HomeAddress,
            flags: BaFlags(BaFlags::PROXY),
            sequence: 0x1234,
            lifetime: Lifetime(0x0102),
            options: vec![MobilityOption::GreKey(GreKey(7))],
        }),
    };
    let bytes = pba.to_bytes(ChecksumContext::Skip);
    // Status 171, flags P, sequence, lifetime: octets 6 to 11 (RFC 6275 section 6.1.8).
    assert_eq!(&bytes[6..12], &[171, 0x20, 0x12, 0x34, 0x01, 0x02]);
    let view = BindingAck::new_checked(&bytes[..]).unwrap();
    assert_eq!(
        view.status(),
        BindingAckStatus::NotAuthorizedForIpv4HomeAddress
    );
    assert_eq!(view.flags(), BaFlags(BaFlags::PROXY));
    assert_eq!(
        (view.sequence(), view.lifetime()),
        (0x1234, Lifetime(0x0102))
    );
    let types: Vec<u8> = view.options().map(|o| o.unwrap().option_type).collect();
    // The GRE Key at offset 12, already 4n (RFC 5845 section 3.1), then PadN to 8n.
    assert_eq!(types, [33, 1]);
    assert!(matches!(
        BindingUpdate::new_checked(&bytes[..]),
        Err(MhError::Malformed(_))
    ));

    let bri = MobilityHeaderRepr {
        payload_proto: IPPROTO_NONE,
        message: MobilityMessage::BindingRevocation(BindingRevocationRepr {
            revocation_type: BindingRevocationType::Indication,
            trigger_or_status: RevocationTrigger::PerPeerPolicy.value(),
            sequence: 9,
            flags: BindingRevocationRepr::PROXY | BindingRevocationRepr::GLOBAL,
            options: vec![],
        }),
    };
    let bytes = bri.to_bytes(ChecksumContext::Skip);
    assert_eq!(&bytes[6..12], &[1, 128, 0, 9, 0xa0, 0]);
    let view = BindingRevocation::new_checked(&bytes[..]).unwrap();
    assert_eq!(view.revocation_type(), BindingRevocationType::Indication);
    assert_eq!(view.sequence(), 9);
    let MobilityMessage::BindingRevocation(parsed) =
        MobilityHeaderRepr::parse_view(&MobilityHeader::new_checked(&bytes[..]).unwrap())
            .unwrap()
            .message
    else {
        panic!("not a revocation");
    };
    assert_eq!(parsed.trigger(), Some(RevocationTrigger::PerPeerPolicy));
    assert_eq!(parsed.status(), None);

    let heartbeat = MobilityHeaderRepr {
        payload_proto: IPPROTO_NONE,
        message: MobilityMessage::Heartbeat(HeartbeatRepr {
            unsolicited: false,
            response: true,
            sequence: 0xa1b2_c3d4,
            options: vec![],
        }),
    };
    let bytes = heartbeat.to_bytes(ChecksumContext::Skip);
    let view = Heartbeat::new_checked(&bytes[..]).unwrap();
    assert!(view.response() && !view.unsolicited());
    assert_eq!(view.sequence(), 0xa1b2_c3d4);

    // A Binding Error needs 24 octets before its options: a 16-octet message of type 7
    // (Header Len 1) is refused by the view, never read past its end (RFC 6275 9.2).
    let mut short = vec![IPPROTO_NONE, 1, 7, 0, 0, 0];
    short.resize(16, 0);
    assert_eq!(
        BindingError::new_checked(&short[..]).unwrap_err(),
        MhError::HeaderLenTooShort(7)
    );
}
