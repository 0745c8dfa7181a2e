//! Tests of the Diameter module: a public CER byte vector checked by hand, error mapping,
//! framing, property tests (parsers never panic, representations round-trip) and the peer
//! state machine under virtual time.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::base::*;
use super::codes::{application, avp, command, result, vendor};
use super::peer::*;
use super::swm::*;
use super::*;
use crate::eap::{EapRepr, TypeData};

// ---------------------------------------------------------------------------------------
// A CER from a public source, checked by hand.
// ---------------------------------------------------------------------------------------

/// The CER of go-diameter's `diam/message_test.go` (BSD-licensed test data), 204 bytes.
/// Field by field (checked by hand against RFC 6733 sections 3 and 4):
///
/// ```text
/// 01 0000cc            version 1, length 204
/// 80 000101            flags R, command 257 (CER)
/// 00000000             application 0
/// a8cc407d a8c1b2b4    hop-by-hop, end-to-end
/// 00000108 40 00000c  74657374                       Origin-Host "test" (M)
/// 00000128 40 000011  6c6f63616c686f7374 000000      Origin-Realm "localhost" + 3 pad
/// 00000101 40 00000e  0001 0a010001 0000             Host-IP-Address 10.1.0.1 + 2 pad
/// 0000010a 40 00000c  0000000d                       Vendor-Id 13
/// 0000010d 00 000013  676f2d6469616d65746572 00      Product-Name "go-diameter" (no M)
/// 00000116 40 00000c  5350228a                       Origin-State-Id 1397760650
/// 00000109 40 00000c  000028af                       Supported-Vendor-Id 10415
/// 00000109 40 00000c  0000000d                       Supported-Vendor-Id 13
/// 00000102 40 00000c  00000004                       Auth-Application-Id 4
/// 0000012b 40 00000c  00000000                       Inband-Security-Id 0
/// 00000104 40 000020  [Auth-Application-Id 4, Vendor-Id 10415]  VSAI, 32 bytes
/// 0000010b 00 00000c  00000001                       Firmware-Revision 1 (no M)
/// ```
const GO_DIAMETER_CER: &str = "010000cc800001010000000 0a8cc407da8c1b2b4\
    0000010840 00000c74657374\
    0000012840 0000116c6f63616c686f7374000000\
    0000010140 00000e00010a0100010000\
    0000010a40 00000c0000000d\
    0000010d00 000013676f2d6469616d6574657200\
    0000011640 00000c5350228a\
    0000010940 00000c000028af\
    0000010940 00000c0000000d\
    0000010240 00000c00000004\
    0000012b40 00000c00000000\
    0000010440 000020 0000010240 00000c00000004 0000010a40 00000c000028af\
    0000010b00 00000c00000001";

fn unhex(text: &str) -> Vec<u8> {
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(clean).expect("test vector is hex")
}

#[test]
fn public_cer_vector_parses_field_by_field() {
    let bytes = unhex(GO_DIAMETER_CER);
    assert_eq!(bytes.len(), 204);
    let packet = Packet::new_checked(&bytes[..]).unwrap();
    assert_eq!(packet.version(), 1);
    assert_eq!(packet.length(), 204);
    assert!(packet.flags().request());
    assert!(!packet.flags().proxiable());
    assert_eq!(packet.command_code(), command::CAPABILITIES_EXCHANGE);
    assert_eq!(packet.application_id(), 0);
    assert_eq!(packet.hop_by_hop(), 0xa8cc_407d);
    assert_eq!(packet.end_to_end(), 0xa8c1_b2b4);
    assert_eq!(packet.avps().count(), 12);

    let message = Message::parse(&packet).unwrap();
    // The generic representation re-emits the very same bytes.
    assert_eq!(message.to_vec().unwrap(), bytes);

    let cer = CapabilitiesExchangeRequest::parse(&message).unwrap();
    let caps = &cer.capabilities;
    assert_eq!(caps.origin_host, "test");
    assert_eq!(caps.origin_realm, "localhost");
    assert_eq!(
        caps.host_ip_addresses,
        vec![Address::Ip(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)))]
    );
    assert_eq!(caps.vendor_id, 13);
    assert_eq!(caps.product_name, "go-diameter");
    assert_eq!(caps.origin_state_id, Some(1_397_760_650));
    assert_eq!(caps.supported_vendor_ids, vec![10415, 13]);
    assert_eq!(caps.auth_application_ids, vec![4]);
    assert_eq!(caps.inband_security_ids, vec![0]);
    assert_eq!(
        caps.vendor_specific_application_ids,
        vec![VendorSpecificApplicationId::auth(10415, 4)]
    );
    assert_eq!(caps.firmware_revision, Some(1));
    assert!(caps.other.is_empty());
    assert_eq!(caps.application_ids(), vec![4]);

    // Rebuilt from the typed form: same bytes except the order of the two members of
    // Vendor-Specific-Application-Id (we write Vendor-Id first, as the ABNF lists it).
    let rebuilt = cer.to_message(0xa8cc_407d, 0xa8c1_b2b4).to_vec().unwrap();
    assert_eq!(rebuilt.len(), 204);
    assert_eq!(rebuilt[..160], bytes[..160]);
    assert_eq!(rebuilt[192..], bytes[192..]);
    let again = CapabilitiesExchangeRequest::parse(&Message::from_bytes(&rebuilt).unwrap());
    assert_eq!(again.unwrap(), cer);
}

// ---------------------------------------------------------------------------------------
// Codec details and error mapping.
// ---------------------------------------------------------------------------------------

#[test]
fn avp_padding_vendor_and_data_formats() {
    let avp = Avp::utf8(avp::SESSION_ID, "abcde");
    assert_eq!(avp.length(), 13);
    assert_eq!(
        avp.to_vec(),
        unhex("00000107 40 00000d 6162636465 000000"),
        "padded with zeros to 16"
    );
    let vendor_avp = Avp::u32(avp::CONTEXT_IDENTIFIER, 7).with_vendor(vendor::TGPP);
    assert_eq!(
        vendor_avp.to_vec(),
        unhex("0000058f c0 000010 000028af 00000007")
    );
    let parsed = Avp::parse(&AvpPacket::new_checked(&vendor_avp.to_vec()[..]).unwrap()).unwrap();
    assert_eq!(parsed, vendor_avp);
    assert_eq!(parsed.as_u32(), Ok(7));

    let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let a = Avp::address(avp::HOST_IP_ADDRESS, &Address::Ip(IpAddr::V6(v6)));
    assert_eq!(&a.data[..2], &[0, 2]);
    assert_eq!(a.as_ip(), Ok(IpAddr::V6(v6)));
    assert_eq!(Avp::u64(1, u64::MAX).as_u64(), Ok(u64::MAX));
    assert_eq!(Avp::i32(1, -5).as_i32(), Ok(-5));
    assert_eq!(Avp::i64(1, -5).as_i64(), Ok(-5));
    assert_eq!(Avp::enumerated(1, 3).as_enumerated(), Ok(3));
    assert_eq!(Avp::time(1, 99).as_time(), Ok(99));
    assert!(Avp::identity(avp::ORIGIN_HOST, "").as_identity().is_err());
    assert!(Avp::identity(avp::ORIGIN_HOST, "a b")
        .as_identity()
        .is_err());

    let group = Avp::grouped(
        avp::EXPERIMENTAL_RESULT,
        &[
            Avp::u32(avp::VENDOR_ID, 10415),
            Avp::u32(avp::EXPERIMENTAL_RESULT_CODE, 5001),
        ],
    );
    assert_eq!(group.length(), 8 + 24);
    assert_eq!(group.as_grouped().unwrap().len(), 2);
}

#[test]
fn wrong_length_of_unsigned32_is_5014_with_zeroed_failed_avp() {
    let bad = Avp::new(avp::RESULT_CODE, vec![1, 2]);
    let err = Error::from(bad.as_u32().unwrap_err());
    assert_eq!(err.result_code(), result::DIAMETER_INVALID_AVP_LENGTH);
    let failed = err.failed_avp().unwrap();
    assert_eq!(failed.code, avp::RESULT_CODE);
    assert_eq!(failed.data, vec![0; 4]);
}

fn header_bytes(flags: u8, code: u32, body: &[u8]) -> Vec<u8> {
    let len = (20 + body.len()) as u32;
    let mut out = Vec::new();
    out.extend_from_slice(&(len | 1 << 24).to_be_bytes());
    out.extend_from_slice(&(code | u32::from(flags) << 24).to_be_bytes());
    out.extend_from_slice(&application::SWM.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
    out.extend_from_slice(body);
    out
}

#[test]
fn header_errors_map_to_result_codes() {
    let mut bytes = header_bytes(0xc0, 268, &[]);
    bytes[0] = 2;
    assert_eq!(
        Message::from_bytes(&bytes).unwrap_err().result_code(),
        result::DIAMETER_UNSUPPORTED_VERSION
    );
    let bytes = header_bytes(0xa0, 268, &[]); // R and E
    let err = Message::from_bytes(&bytes).unwrap_err();
    assert_eq!(err.result_code(), result::DIAMETER_INVALID_HDR_BITS);
    assert!(err.is_protocol_error());
    let mut bytes = header_bytes(0x80, 268, &[]);
    bytes[3] = 21; // not a multiple of 4
    assert_eq!(
        Message::from_bytes(&bytes).unwrap_err().result_code(),
        result::DIAMETER_INVALID_MESSAGE_LENGTH
    );
    // Reserved command flag bits are ignored and kept.
    let bytes = header_bytes(0x8f, 268, &[]);
    let m = Message::from_bytes(&bytes).unwrap();
    assert_eq!(m.header.flags.0, 0x8f);
    assert_eq!(m.to_vec().unwrap(), bytes);
}

#[test]
fn avp_errors_map_to_result_codes_with_failed_avp() {
    // AVP Length 6: below the header.
    let body = unhex("00000107 40 000006 00000000");
    let err = Message::from_bytes(&header_bytes(0xc0, 268, &body)).unwrap_err();
    assert_eq!(err.result_code(), result::DIAMETER_INVALID_AVP_LENGTH);
    assert_eq!(err.failed_avp().unwrap().code, avp::SESSION_ID);
    assert!(err.failed_avp().unwrap().data.is_empty());

    // AVP Length beyond the message.
    let body = unhex("000001ce 40 000040 00000000");
    let err = Message::from_bytes(&header_bytes(0xc0, 268, &body)).unwrap_err();
    assert_eq!(err.result_code(), result::DIAMETER_INVALID_AVP_LENGTH);
    assert_eq!(err.failed_avp().unwrap().code, avp::EAP_PAYLOAD);

    // Header cut short: only 4 bytes of an AVP left.
    let body = unhex("000001ce");
    let err = Message::from_bytes(&header_bytes(0xc0, 268, &body)).unwrap_err();
    assert_eq!(err.result_code(), result::DIAMETER_INVALID_AVP_LENGTH);
    assert_eq!(err.failed_avp().unwrap().code, avp::EAP_PAYLOAD);

    // Reserved AVP flag bit.
    let body = unhex("000001ce 41 00000c 01020304");
    let err = Message::from_bytes(&header_bytes(0xc0, 268, &body)).unwrap_err();
    assert_eq!(err.result_code(), result::DIAMETER_INVALID_AVP_BITS);
    assert!(err.is_protocol_error());
    assert_eq!(err.failed_avp().unwrap().data, vec![1, 2, 3, 4]);
}

fn sample_der() -> DiameterEapRequest {
    DiameterEapRequest {
        session_id: session_id("epdg.example.org", 1, 2, None),
        origin_host: "epdg.example.org".into(),
        origin_realm: "example.org".into(),
        destination_realm: "wlan.mnc001.mcc001.3gppnetwork.org".into(),
        destination_host: None,
        auth_request_type: AuthRequestType::AuthorizeAuthenticate,
        eap_payload: EapRepr::Response {
            identifier: 0,
            data: TypeData::Identity(Vec::new()),
        }
        .to_bytes()
        .unwrap(),
        user_name: Some("0001010123456789@nai.epc.mnc001.mcc001.3gppnetwork.org".into()),
        rat_type: Some(RAT_TYPE_WLAN),
        service_selection: Some("internet".into()),
        mip6_feature_vector: None,
        visited_network_identifier: None,
        route_record: vec![],
        proxy_info: vec![],
        other: vec![],
    }
}

#[test]
fn unknown_mandatory_avp_is_5001_and_unknown_optional_is_kept() {
    let mut m = sample_der().to_message(1, 2);
    let unknown = Avp::octets(9999, b"x").with_vendor(12345);
    m.push(unknown.clone().with_mandatory(false));
    let der = DiameterEapRequest::parse(&m).unwrap();
    assert_eq!(der.other, vec![unknown.clone().with_mandatory(false)]);

    m.push(unknown.clone());
    let err = DiameterEapRequest::parse(&m).unwrap_err();
    assert_eq!(err.result_code(), result::DIAMETER_AVP_UNSUPPORTED);
    assert_eq!(err.failed_avp(), Some(&unknown));

    // The error answer: no E bit (5xxx), Session-Id copied, Failed-AVP holding the AVP.
    let answer = m.error_answer("aaa.example.org", "example.org", &err);
    assert!(!answer.header.flags.request());
    assert!(!answer.header.flags.error());
    assert!(answer.header.flags.proxiable());
    assert_eq!(answer.header.hop_by_hop, 1);
    assert_eq!(answer.header.end_to_end, 2);
    assert_eq!(answer.session_id(), Some("epdg.example.org;1;2"));
    assert_eq!(answer.result_code(), Some(result::DIAMETER_AVP_UNSUPPORTED));
    let failed = answer.find(avp::FAILED_AVP, None).unwrap();
    assert_eq!(failed.as_grouped().unwrap(), vec![unknown]);
}

#[test]
fn missing_avp_is_5005_with_example_of_it() {
    let mut m = sample_der().to_message(1, 2);
    m.avps.retain(|a| a.code != avp::EAP_PAYLOAD);
    let err = DiameterEapRequest::parse(&m).unwrap_err();
    assert_eq!(err.result_code(), result::DIAMETER_MISSING_AVP);
    assert_eq!(err.failed_avp().unwrap().code, avp::EAP_PAYLOAD);

    let mut m = sample_der().to_message(1, 2);
    m.avps.retain(|a| a.code != avp::AUTH_REQUEST_TYPE);
    let err = DiameterEapRequest::parse(&m).unwrap_err();
    assert_eq!(err.result_code(), result::DIAMETER_MISSING_AVP);
    assert_eq!(err.failed_avp().unwrap().data, vec![0; 4]);

    let mut m = sample_der().to_message(1, 2);
    m.push(Avp::utf8(avp::USER_NAME, "second"));
    let err = DiameterEapRequest::parse(&m).unwrap_err();
    assert_eq!(
        err.result_code(),
        result::DIAMETER_AVP_OCCURS_TOO_MANY_TIMES
    );
    assert_eq!(err.failed_avp().unwrap().data, b"second".to_vec());
}

#[test]
fn protocol_error_answer_has_e_bit_and_failed_avp() {
    let body = unhex("00000107 40 00000c 61626364 000001ce 41 00000c 01020304");
    let bytes = header_bytes(0xc0, 268, &body);
    let err = Message::from_bytes(&bytes).unwrap_err();
    let answer =
        Message::error_answer_for_bytes(&bytes, "aaa.example.org", "example.org", &err).unwrap();
    assert!(answer.header.flags.error());
    assert!(!answer.header.flags.request());
    assert_eq!(answer.session_id(), Some("abcd"));
    assert_eq!(
        answer.result_code(),
        Some(result::DIAMETER_INVALID_AVP_BITS)
    );
    assert!(answer.find(avp::FAILED_AVP, None).is_some());
    // Answers are never answered.
    let bytes = header_bytes(0x40, 268, &body);
    assert!(Message::error_answer_for_bytes(&bytes, "a", "b", &err).is_none());
}

#[test]
fn grouped_errors_point_at_the_group() {
    let bad_member = Avp::new(avp::MIP_HOME_AGENT_ADDRESS, vec![0, 1, 10]); // IPv4 cut short
    let info = Avp::grouped(avp::MIP6_AGENT_INFO, &[bad_member]);
    let err = Mip6AgentInfo::from_avp(&info).unwrap_err();
    assert_eq!(err.result_code(), result::DIAMETER_INVALID_AVP_LENGTH);
    let failed = err.failed_avp().unwrap();
    assert_eq!(failed.code, avp::MIP6_AGENT_INFO);
    let inner = failed.as_grouped().unwrap();
    assert_eq!(inner[0].code, avp::MIP_HOME_AGENT_ADDRESS);
    assert_eq!(inner[0].data, vec![0; 6]);
}

#[test]
fn experimental_result_round_trips_in_dea() {
    let der = sample_der();
    let mut dea = DiameterEapAnswer::new(
        &der,
        AnswerResult::tgpp(result::DIAMETER_ERROR_USER_UNKNOWN),
        "aaa.example.org",
        "example.org",
    );
    dea.eap_payload = Some(EapRepr::failure_bytes(1).to_vec());
    let request = der.to_message(7, 8);
    let m = dea.to_message(&request.header);
    assert!(!m.header.flags.error());
    assert_eq!(m.header.application_id, application::SWM);
    assert_eq!(DiameterEapAnswer::parse(&m).unwrap(), dea);
    let er = m
        .find(avp::EXPERIMENTAL_RESULT, None)
        .unwrap()
        .as_grouped()
        .unwrap();
    assert_eq!(er[0].as_u32(), Ok(vendor::TGPP));
    assert_eq!(er[1].as_u32(), Ok(5001));
}

#[test]
fn swm_dispatch_and_header_checks() {
    let m = sample_der().to_message(1, 2);
    assert!(matches!(SwmMessage::parse(&m), Ok(SwmMessage::Der(_))));
    let mut wrong_app = m.clone();
    wrong_app.header.application_id = 5;
    assert_eq!(
        SwmMessage::parse(&wrong_app).unwrap_err().result_code(),
        result::DIAMETER_APPLICATION_UNSUPPORTED
    );
    let mut no_p = m.clone();
    no_p.header.flags = no_p.header.flags.with_proxiable(false);
    assert_eq!(
        SwmMessage::parse(&no_p).unwrap_err().result_code(),
        result::DIAMETER_INVALID_HDR_BITS
    );
    let mut other = m;
    other.header.command_code = 272;
    assert_eq!(
        SwmMessage::parse(&other).unwrap_err().result_code(),
        result::DIAMETER_COMMAND_UNSUPPORTED
    );
}

#[test]
fn roaming_answer_carries_home_and_visited_gateways() {
    let aar = AaRequest {
        session_id: "epdg;1;1".into(),
        origin_host: "epdg.visited.org".into(),
        origin_realm: "visited.org".into(),
        destination_realm: "home.org".into(),
        destination_host: None,
        auth_request_type: AuthRequestType::AuthorizeOnly,
        user_name: Some("user@home.org".into()),
        service_selection: Some("internet".into()),
        visited_network_identifier: None,
        mip6_agent_info: vec![],
        route_record: vec!["vaaa.visited.org".into()],
        proxy_info: vec![],
        other: vec![],
    };
    let mut aaa = AaAnswer::new(&aar, AnswerResult::SUCCESS, "haaa.home.org", "home.org");
    let home = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let visited = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
    aaa.apn_configuration = Some(ApnConfiguration {
        context_identifier: 1,
        pdn_type: PdnType::Ipv4v6,
        service_selection: "internet".into(),
        mip6_agent_info: Some(Mip6AgentInfo::address(home)),
        visited_network_identifier: None,
        other: vec![],
    });
    aaa.mip6_agent_info = vec![
        Mip6AgentInfo::address(home),
        Mip6AgentInfo::address(visited),
    ];
    let request = aar.to_message(1, 1);
    let bytes = aaa.to_message(&request.header).to_vec().unwrap();
    let parsed = AaAnswer::parse(&Message::from_bytes(&bytes).unwrap()).unwrap();
    assert_eq!(parsed, aaa);
    assert!(parsed.result.is_success());
    let again = AaRequest::parse(&Message::from_bytes(&request.to_vec().unwrap()).unwrap());
    assert_eq!(again.unwrap(), aar);
}

// ---------------------------------------------------------------------------------------
// Framing.
// ---------------------------------------------------------------------------------------

#[test]
fn framer_splits_a_stream_at_any_boundary() {
    let a = sample_der().to_message(1, 2).to_vec().unwrap();
    let b = unhex(GO_DIAMETER_CER);
    let stream = [a.clone(), b.clone(), a.clone()].concat();
    for chunk in [1, 3, 7, 20, 64, stream.len()] {
        let mut framer = Framer::default();
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            framer.push(piece);
            while let Some(m) = framer.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, vec![a.clone(), b.clone(), a.clone()]);
        assert_eq!(framer.buffered(), 0);
    }
}

#[test]
fn framer_rejects_bad_version_and_length() {
    let mut framer = Framer::default();
    framer.push(&[2, 0, 0, 20]);
    assert_eq!(framer.next_message(), Err(Error::UnsupportedVersion(2)));
    let mut framer = Framer::default();
    framer.push(&[1, 0, 0, 8]);
    assert_eq!(framer.next_message(), Err(Error::InvalidMessageLength(8)));
    let mut framer = Framer::new(1000);
    framer.push(&[1, 0, 4, 0]);
    assert_eq!(
        framer.next_message(),
        Err(Error::InvalidMessageLength(1024))
    );
    let mut framer = Framer::default();
    framer.push(&[1, 0]);
    assert_eq!(framer.next_message(), Ok(None));
}

// ---------------------------------------------------------------------------------------
// Property tests.
// ---------------------------------------------------------------------------------------

fn any_avp() -> impl Strategy<Value = Avp> {
    (
        any::<u32>(),
        proptest::option::of(any::<u32>()),
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(code, vendor_id, mandatory, protected, data)| Avp {
            code,
            vendor_id,
            mandatory,
            protected,
            data,
        })
}

fn any_header() -> impl Strategy<Value = Header> {
    (
        any::<u8>(),
        0u32..0x0100_0000,
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(flags, command_code, application_id, hop_by_hop, end_to_end)| {
                let mut flags = CommandFlags(flags);
                if flags.request() {
                    flags = flags.with_error(false);
                }
                Header {
                    flags,
                    command_code,
                    application_id,
                    hop_by_hop,
                    end_to_end,
                }
            },
        )
}

/// AVPs no command knows: vendor 99, M clear, so typed parsers keep them in `other`.
fn other_avps() -> impl Strategy<Value = Vec<Avp>> {
    proptest::collection::vec(
        (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..12))
            .prop_map(|(code, data)| Avp::new(code, data).with_vendor(99).with_mandatory(false)),
        0..3,
    )
}

fn identity() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9.-]{0,24}"
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,24}"
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
    ]
}

fn any_address() -> impl Strategy<Value = Address> {
    prop_oneof![
        any_ip().prop_map(Address::Ip),
        (3u16..100, proptest::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(family, address)| Address::Other { family, address }),
    ]
}

fn any_result() -> impl Strategy<Value = AnswerResult> {
    prop_oneof![
        any::<u32>().prop_map(AnswerResult::ResultCode),
        (any::<u32>(), any::<u32>())
            .prop_map(|(vendor_id, code)| AnswerResult::Experimental { vendor_id, code }),
    ]
}

fn any_mip6_agent_info() -> impl Strategy<Value = Mip6AgentInfo> {
    (
        proptest::collection::vec(any_ip(), 0..=2),
        proptest::option::of((identity(), identity())),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 17)),
        other_avps(),
    )
        .prop_map(|(addresses, host, prefix, other)| Mip6AgentInfo {
            home_agent_host: if addresses.is_empty() && host.is_none() {
                Some(MipHomeAgentHost {
                    destination_realm: "realm".into(),
                    destination_host: "host".into(),
                })
            } else {
                host.map(|(destination_realm, destination_host)| MipHomeAgentHost {
                    destination_realm,
                    destination_host,
                })
            },
            home_agent_addresses: addresses,
            home_link_prefix: prefix,
            other,
        })
}

fn any_apn_configuration() -> impl Strategy<Value = ApnConfiguration> {
    (
        any::<u32>(),
        any::<i32>(),
        text(),
        proptest::option::of(any_mip6_agent_info()),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..6)),
        other_avps(),
    )
        .prop_map(|(context, pdn, apn, info, vni, other)| ApnConfiguration {
            context_identifier: context,
            pdn_type: pdn.into(),
            service_selection: apn,
            mip6_agent_info: info,
            visited_network_identifier: vni,
            other,
        })
}

/// Proxy-Info ::= < AVP Header: 284 > { Proxy-Host } { Proxy-State } (RFC 6733 section
/// 6.7.2): well-formed groups with any Proxy-State octets.
fn proxy_infos() -> impl Strategy<Value = Vec<Avp>> {
    proptest::collection::vec(
        (
            "[a-z]{1,8}\\.example",
            proptest::collection::vec(any::<u8>(), 0..12),
        )
            .prop_map(|(host, state)| {
                Avp::grouped(
                    avp::PROXY_INFO,
                    &[
                        Avp::identity(avp::PROXY_HOST, &host),
                        Avp::new(avp::PROXY_STATE, state),
                    ],
                )
            }),
        0..2,
    )
}

fn failed_avps() -> impl Strategy<Value = Vec<Avp>> {
    proptest::collection::vec(any_avp(), 0..2)
}

prop_compose! {
    fn any_der()(
        ids in (text(), identity(), identity(), identity(), proptest::option::of(identity())),
        art in any::<i32>(),
        eap in proptest::collection::vec(any::<u8>(), 0..30),
        user in proptest::option::of(text()),
        rat in proptest::option::of(any::<i32>()),
        apn in proptest::option::of(text()),
        fv in proptest::option::of(any::<u64>()),
        vni in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..6)),
        rr in proptest::collection::vec(identity(), 0..3),
        pi in proxy_infos(),
        other in other_avps(),
    ) -> DiameterEapRequest {
        DiameterEapRequest {
            session_id: ids.0, origin_host: ids.1, origin_realm: ids.2,
            destination_realm: ids.3, destination_host: ids.4,
            auth_request_type: art.into(), eap_payload: eap, user_name: user, rat_type: rat,
            service_selection: apn, mip6_feature_vector: fv, visited_network_identifier: vni,
            route_record: rr, proxy_info: pi, other,
        }
    }
}

prop_compose! {
    fn any_dea()(
        ids in (text(), identity(), identity()),
        art in any::<i32>(),
        result in any_result(),
        eap in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..30)),
        user in proptest::option::of(text()),
        msk in proptest::option::of(proptest::collection::vec(any::<u8>(), 64)),
        apn in proptest::option::of(any_apn_configuration()),
        fv in proptest::option::of(any::<u64>()),
        st in proptest::option::of(any::<u32>()),
        infos in proptest::collection::vec(any_mip6_agent_info(), 0..3),
        em in proptest::option::of(text()),
        failed in failed_avps(),
        pi in proxy_infos(),
        other in other_avps(),
    ) -> DiameterEapAnswer {
        DiameterEapAnswer {
            session_id: ids.0, auth_request_type: art.into(), result,
            origin_host: ids.1, origin_realm: ids.2, eap_payload: eap, user_name: user,
            eap_master_session_key: msk, apn_configuration: apn, mip6_feature_vector: fv,
            session_timeout: st, mip6_agent_info: infos, error_message: em,
            failed_avp: failed, proxy_info: pi, other,
        }
    }
}

prop_compose! {
    fn any_aar()(
        ids in (text(), identity(), identity(), identity(), proptest::option::of(identity())),
        art in any::<i32>(),
        user in proptest::option::of(text()),
        apn in proptest::option::of(text()),
        vni in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..6)),
        infos in proptest::collection::vec(any_mip6_agent_info(), 0..2),
        rr in proptest::collection::vec(identity(), 0..3),
        pi in proxy_infos(),
        other in other_avps(),
    ) -> AaRequest {
        AaRequest {
            session_id: ids.0, origin_host: ids.1, origin_realm: ids.2,
            destination_realm: ids.3, destination_host: ids.4, auth_request_type: art.into(),
            user_name: user, service_selection: apn, visited_network_identifier: vni,
            mip6_agent_info: infos, route_record: rr, proxy_info: pi, other,
        }
    }
}

prop_compose! {
    fn any_aaa()(
        ids in (text(), identity(), identity()),
        art in any::<i32>(),
        result in any_result(),
        user in proptest::option::of(text()),
        apn in proptest::option::of(any_apn_configuration()),
        st in proptest::option::of(any::<u32>()),
        infos in proptest::collection::vec(any_mip6_agent_info(), 0..3),
        em in proptest::option::of(text()),
        failed in failed_avps(),
        pi in proxy_infos(),
        other in other_avps(),
    ) -> AaAnswer {
        AaAnswer {
            session_id: ids.0, auth_request_type: art.into(), result,
            origin_host: ids.1, origin_realm: ids.2, user_name: user,
            apn_configuration: apn, session_timeout: st, mip6_agent_info: infos,
            error_message: em, failed_avp: failed, proxy_info: pi, other,
        }
    }
}

prop_compose! {
    fn any_str()(
        ids in (text(), identity(), identity(), identity(), proptest::option::of(identity())),
        cause in any::<i32>(),
        user in proptest::option::of(text()),
        rr in proptest::collection::vec(identity(), 0..3),
        pi in proxy_infos(),
        other in other_avps(),
    ) -> SessionTerminationRequest {
        SessionTerminationRequest {
            session_id: ids.0, origin_host: ids.1, origin_realm: ids.2,
            destination_realm: ids.3, destination_host: ids.4,
            termination_cause: cause.into(), user_name: user, route_record: rr,
            proxy_info: pi, other,
        }
    }
}

prop_compose! {
    fn any_sta()(
        ids in (text(), identity(), identity()),
        code in any::<u32>(),
        user in proptest::option::of(text()),
        em in proptest::option::of(text()),
        failed in failed_avps(),
        pi in proxy_infos(),
        other in other_avps(),
    ) -> SessionTerminationAnswer {
        SessionTerminationAnswer {
            session_id: ids.0, result_code: code, origin_host: ids.1, origin_realm: ids.2,
            user_name: user, error_message: em, failed_avp: failed, proxy_info: pi, other,
        }
    }
}

prop_compose! {
    fn any_capabilities()(
        ids in (identity(), identity()),
        addresses in proptest::collection::vec(any_address(), 1..3),
        vendor_id in any::<u32>(),
        product in text(),
        state in proptest::option::of(any::<u32>()),
        lists in (
            proptest::collection::vec(any::<u32>(), 0..3),
            proptest::collection::vec(any::<u32>(), 0..3),
            proptest::collection::vec(any::<u32>(), 0..3),
            proptest::collection::vec(any::<u32>(), 0..3),
        ),
        vsai in proptest::collection::vec(
            (any::<u32>(), any::<u32>(), any::<bool>()).prop_map(|(v, id, auth)| {
                VendorSpecificApplicationId {
                    vendor_id: v,
                    auth_application_id: auth.then_some(id),
                    acct_application_id: (!auth).then_some(id),
                }
            }),
            0..3,
        ),
        firmware in proptest::option::of(any::<u32>()),
        other in other_avps(),
    ) -> Capabilities {
        Capabilities {
            origin_host: ids.0, origin_realm: ids.1, host_ip_addresses: addresses,
            vendor_id, product_name: product, origin_state_id: state,
            supported_vendor_ids: lists.0, auth_application_ids: lists.1,
            inband_security_ids: lists.2, acct_application_ids: lists.3,
            vendor_specific_application_ids: vsai, firmware_revision: firmware, other,
        }
    }
}

fn reparse(message: &Message) -> Message {
    Message::from_bytes(&message.to_vec().unwrap()).unwrap()
}

fn request_header(code: u32) -> Header {
    Header::request(code, application::SWM, true, 11, 22)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn message_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(m) = Message::from_bytes(&bytes) {
            prop_assert_eq!(reparse(&m), m);
        }
        for avp in AvpIter::new(&bytes).flatten() {
            let _ = Avp::parse(&avp);
        }
    }

    #[test]
    fn message_parse_never_panics_on_valid_header(
        header in any_header(),
        body in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let mut body = body;
        body.resize(body.len() & !3, 0);
        let bytes = header_bytes(header.flags.0, header.command_code, &body);
        if let Ok(m) = Message::from_bytes(&bytes) {
            prop_assert_eq!(reparse(&m), m);
        }
    }

    #[test]
    fn avp_accessors_never_panic(avp in any_avp()) {
        let _ = avp.as_u32();
        let _ = avp.as_u64();
        let _ = avp.as_i32();
        let _ = avp.as_i64();
        let _ = avp.as_utf8();
        let _ = avp.as_identity();
        let _ = avp.as_address();
        let _ = avp.as_ip();
        let _ = avp.as_grouped();
        let _ = Mip6AgentInfo::from_avp(&avp);
        let _ = ApnConfiguration::from_avp(&avp);
        let _ = VendorSpecificApplicationId::from_avp(&avp);
    }

    #[test]
    fn typed_parsers_never_panic(
        header in any_header(),
        code in prop_oneof![Just(257u32), Just(265), Just(268), Just(275), Just(280), Just(282)],
        avps in proptest::collection::vec(
            (
                prop_oneof![
                    Just(avp::SESSION_ID), Just(avp::ORIGIN_HOST), Just(avp::ORIGIN_REALM),
                    Just(avp::RESULT_CODE), Just(avp::EXPERIMENTAL_RESULT),
                    Just(avp::MIP6_AGENT_INFO), Just(avp::APN_CONFIGURATION),
                    Just(avp::HOST_IP_ADDRESS), Just(avp::VENDOR_SPECIFIC_APPLICATION_ID),
                    Just(avp::FAILED_AVP), Just(avp::AUTH_APPLICATION_ID),
                    Just(avp::EAP_PAYLOAD), Just(avp::AUTH_REQUEST_TYPE),
                ],
                proptest::option::of(Just(vendor::TGPP)),
                any::<bool>(),
                proptest::collection::vec(any::<u8>(), 0..24),
            ).prop_map(|(code, vendor_id, mandatory, data)| Avp {
                code, vendor_id, mandatory, protected: false, data,
            }),
            0..12,
        ),
    ) {
        let m = Message { header: Header { command_code: code, ..header }, avps };
        let _ = SwmMessage::parse(&m);
        let _ = DiameterEapRequest::parse(&m);
        let _ = DiameterEapAnswer::parse(&m);
        let _ = AaRequest::parse(&m);
        let _ = AaAnswer::parse(&m);
        let _ = SessionTerminationRequest::parse(&m);
        let _ = SessionTerminationAnswer::parse(&m);
        let _ = CapabilitiesExchangeRequest::parse(&m);
        let _ = CapabilitiesExchangeAnswer::parse(&m);
        let _ = DeviceWatchdogRequest::parse(&m);
        let _ = DisconnectPeerRequest::parse(&m);
        let _ = PeerAnswer::parse(&m, code);
        if let Err(e) = Message::from_bytes(&m.to_vec().unwrap()) {
            let _ = m.error_answer("h", "r", &e);
        }
    }

    #[test]
    fn framer_never_panics(chunks in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..40), 0..8,
    )) {
        let mut framer = Framer::new(256);
        for chunk in chunks {
            framer.push(&chunk);
            while let Ok(Some(bytes)) = framer.next_message() {
                let _ = Message::from_bytes(&bytes);
            }
        }
    }

    #[test]
    fn message_repr_round_trips(
        header in any_header(),
        avps in proptest::collection::vec(any_avp(), 0..8),
    ) {
        let m = Message { header, avps };
        let bytes = m.to_vec().unwrap();
        prop_assert_eq!(bytes.len(), m.buffer_len());
        prop_assert_eq!(Message::from_bytes(&bytes).unwrap(), m);
    }

    #[test]
    fn der_round_trips(der in any_der()) {
        prop_assert_eq!(DiameterEapRequest::parse(&reparse(&der.to_message(1, 2))).unwrap(), der);
    }

    #[test]
    fn dea_round_trips(dea in any_dea()) {
        let m = reparse(&dea.to_message(&request_header(command::DIAMETER_EAP)));
        prop_assert_eq!(m.header.flags.error(), dea.result.is_protocol_error());
        prop_assert_eq!(DiameterEapAnswer::parse(&m).unwrap(), dea);
    }

    #[test]
    fn aar_round_trips(aar in any_aar()) {
        prop_assert_eq!(AaRequest::parse(&reparse(&aar.to_message(1, 2))).unwrap(), aar);
    }

    #[test]
    fn aaa_round_trips(aaa in any_aaa()) {
        prop_assert_eq!(AaAnswer::parse(&reparse(&aaa.to_message(&request_header(command::AA)))).unwrap(), aaa);
    }

    #[test]
    fn str_round_trips(str_ in any_str()) {
        let m = reparse(&str_.to_message(1, 2));
        prop_assert_eq!(SessionTerminationRequest::parse(&m).unwrap(), str_);
    }

    #[test]
    fn sta_round_trips(sta in any_sta()) {
        let m = reparse(&sta.to_message(&request_header(command::SESSION_TERMINATION)));
        prop_assert_eq!(SessionTerminationAnswer::parse(&m).unwrap(), sta);
    }

    #[test]
    fn cer_and_cea_round_trip(
        capabilities in any_capabilities(),
        result_code in any::<u32>(),
        error_message in proptest::option::of(text()),
        failed_avp in proptest::option::of(failed_avps()),
    ) {
        let cer = CapabilitiesExchangeRequest { capabilities: capabilities.clone() };
        prop_assert_eq!(CapabilitiesExchangeRequest::parse(&reparse(&cer.to_message(3, 4))).unwrap(), cer);
        let cea = CapabilitiesExchangeAnswer { result_code, capabilities, error_message, failed_avp };
        let header = Header::request(command::CAPABILITIES_EXCHANGE, 0, false, 3, 4);
        prop_assert_eq!(CapabilitiesExchangeAnswer::parse(&reparse(&cea.to_message(&header))).unwrap(), cea);
    }

    #[test]
    fn peer_never_panics_on_any_bytes(
        role in prop_oneof![Just(Role::Initiator), Just(Role::Responder)],
        open_first in any::<bool>(),
        inputs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 0..6),
    ) {
        let t0 = Instant::now();
        let mut pair = Pair::new(swm_caps("epdg", "visited.org"), swm_caps("aaa", "home.org"));
        if open_first {
            pair.connect(t0);
        }
        let peer = if role == Role::Initiator { &mut pair.a } else { &mut pair.b };
        let mut out = Vec::new();
        if !open_first {
            peer.handle(Input::ConnectionUp, t0, &mut out);
        }
        for bytes in &inputs {
            peer.handle(Input::Message(bytes), t0, &mut out);
            // The same bytes with a valid header around them.
            let framed = header_bytes(0x80, 280, &bytes[..bytes.len() & !3]);
            peer.handle(Input::Message(&framed), t0, &mut out);
        }
        peer.handle(Input::Timeout, t0 + Duration::from_secs(100), &mut out);
    }
}

// ---------------------------------------------------------------------------------------
// The peer state machine with virtual time.
// ---------------------------------------------------------------------------------------

fn swm_caps(host: &str, realm: &str) -> Capabilities {
    let mut caps = Capabilities::swm(
        &format!("{host}.{realm}"),
        realm,
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        "pmip-s2b",
    );
    caps.origin_state_id = Some(1);
    caps
}

/// Jitter source giving 2000 ms every time: Tw = Twinit exactly.
fn no_jitter() -> RandomSource {
    Box::new(|| 2000)
}

/// Two peers, `a` the initiator (ePDG) and `b` the responder (AAA), on one virtual wire.
struct Pair {
    a: Peer,
    b: Peer,
    a_events: Vec<PeerEvent>,
    b_events: Vec<PeerEvent>,
    a_closed: bool,
    b_closed: bool,
}

impl Pair {
    fn new(a: Capabilities, b: Capabilities) -> Self {
        Pair {
            a: Peer::new(PeerConfig::new(a), Role::Initiator, no_jitter()),
            b: Peer::new(PeerConfig::new(b), Role::Responder, no_jitter()),
            a_events: vec![],
            b_events: vec![],
            a_closed: false,
            b_closed: false,
        }
    }

    /// Feeds `out` of one side into the other until both are quiet.
    fn run(&mut self, from_a: Vec<Output>, from_b: Vec<Output>, now: Instant) {
        let mut queue: Vec<(bool, Output)> = from_a
            .into_iter()
            .map(|o| (true, o))
            .chain(from_b.into_iter().map(|o| (false, o)))
            .collect();
        while !queue.is_empty() {
            let (from_a_side, output) = queue.remove(0);
            let mut out = Vec::new();
            match output {
                Output::Send(bytes) => {
                    let (to, closed) = if from_a_side {
                        (&mut self.b, self.b_closed)
                    } else {
                        (&mut self.a, self.a_closed)
                    };
                    if !closed {
                        to.handle(Input::Message(&bytes), now, &mut out);
                    }
                }
                Output::Close => {
                    self.a_closed = true;
                    self.b_closed = true;
                    self.a.handle(Input::ConnectionDown, now, &mut out);
                    let mut other = Vec::new();
                    self.b.handle(Input::ConnectionDown, now, &mut other);
                    queue.extend(other.into_iter().map(|o| (false, o)));
                    queue.extend(out.drain(..).map(|o| (true, o)));
                    continue;
                }
                Output::Event(e) => {
                    if from_a_side {
                        self.a_events.push(e);
                    } else {
                        self.b_events.push(e);
                    }
                    continue;
                }
            }
            queue.extend(out.into_iter().map(|o| (!from_a_side, o)));
        }
    }

    fn connect(&mut self, now: Instant) {
        let (mut oa, mut ob) = (Vec::new(), Vec::new());
        self.a.handle(Input::ConnectionUp, now, &mut oa);
        self.b.handle(Input::ConnectionUp, now, &mut ob);
        self.run(oa, ob, now);
    }
}

#[test]
fn capabilities_exchange_opens_both_sides() {
    let t0 = Instant::now();
    let mut pair = Pair::new(swm_caps("epdg", "visited.org"), swm_caps("aaa", "home.org"));
    pair.connect(t0);
    assert_eq!(pair.a.state(), PeerState::Open);
    assert_eq!(pair.b.state(), PeerState::Open);
    assert_eq!(pair.a.applications(), &[application::SWM]);
    assert_eq!(pair.b.applications(), &[application::SWM]);
    assert_eq!(
        pair.a.peer_capabilities().unwrap().origin_host,
        "aaa.home.org"
    );
    assert!(matches!(&pair.a_events[..], [PeerEvent::Open { .. }]));
    assert!(
        matches!(&pair.b_events[..], [PeerEvent::Open { peer, .. }] if peer.origin_host == "epdg.visited.org")
    );
    assert_eq!(pair.a.poll_timeout(), Some(t0 + Duration::from_secs(30)));
}

#[test]
fn no_common_application_is_5010_and_closes() {
    let t0 = Instant::now();
    let mut epdg = swm_caps("epdg", "visited.org");
    epdg.auth_application_ids = vec![4];
    epdg.vendor_specific_application_ids = vec![VendorSpecificApplicationId::auth(10415, 4)];
    let mut pair = Pair::new(epdg, swm_caps("aaa", "home.org"));

    // Look at the CEA on the wire.
    let mut oa = Vec::new();
    pair.a.handle(Input::ConnectionUp, t0, &mut oa);
    let mut ob = Vec::new();
    pair.b.handle(Input::ConnectionUp, t0, &mut ob);
    let Some(Output::Send(cer)) = oa.first() else {
        panic!("initiator sends CER first")
    };
    let mut ob = Vec::new();
    pair.b.handle(Input::Message(cer), t0, &mut ob);
    let Some(Output::Send(cea)) = ob.first() else {
        panic!("responder answers with CEA")
    };
    let cea = CapabilitiesExchangeAnswer::parse(&Message::from_bytes(cea).unwrap()).unwrap();
    assert_eq!(cea.result_code, result::DIAMETER_NO_COMMON_APPLICATION);
    assert!(ob.contains(&Output::Close));
    assert_eq!(pair.b.state(), PeerState::Closed);

    pair.run(Vec::new(), ob, t0);
    assert_eq!(pair.a.state(), PeerState::Closed);
    assert!(pair
        .a_events
        .contains(&PeerEvent::Down(DownReason::CapabilitiesRejected(
            result::DIAMETER_NO_COMMON_APPLICATION
        ))));
    assert!(pair
        .b_events
        .contains(&PeerEvent::Down(DownReason::CapabilitiesRejected(
            result::DIAMETER_NO_COMMON_APPLICATION
        ))));
}

#[test]
fn relay_has_every_application_in_common() {
    let t0 = Instant::now();
    let mut relay = swm_caps("dra", "home.org");
    relay.auth_application_ids = vec![application::RELAY];
    relay.vendor_specific_application_ids = vec![];
    let mut pair = Pair::new(swm_caps("epdg", "visited.org"), relay);
    pair.connect(t0);
    assert_eq!(pair.a.state(), PeerState::Open);
    assert_eq!(pair.b.applications(), &[application::SWM]);
}

#[test]
fn watchdog_keeps_a_live_peer_open() {
    let t0 = Instant::now();
    let mut pair = Pair::new(swm_caps("epdg", "visited.org"), swm_caps("aaa", "home.org"));
    pair.connect(t0);
    for round in 1..=5u64 {
        let now = t0 + Duration::from_secs(30 * round);
        let mut oa = Vec::new();
        pair.a.handle(Input::Timeout, now, &mut oa);
        let mut ob = Vec::new();
        pair.b.handle(Input::Timeout, now, &mut ob);
        pair.run(oa, ob, now);
        assert_eq!(pair.a.state(), PeerState::Open);
        assert_eq!(pair.b.state(), PeerState::Open);
    }
    assert!(!pair
        .a_events
        .iter()
        .any(|e| matches!(e, PeerEvent::Failover)));
}

#[test]
fn watchdog_fails_over_then_closes_a_silent_peer() {
    let t0 = Instant::now();
    let mut pair = Pair::new(swm_caps("epdg", "visited.org"), swm_caps("aaa", "home.org"));
    pair.connect(t0);
    let tw = Duration::from_secs(30);

    // Nothing is delivered to b from now on: b is dead.
    let mut out = Vec::new();
    pair.a
        .handle(Input::Timeout, t0 + tw - Duration::from_millis(1), &mut out);
    assert!(out.is_empty(), "not yet due");

    pair.a.handle(Input::Timeout, t0 + tw, &mut out);
    let [Output::Send(dwr)] = &out[..] else {
        panic!("a DWR: {out:?}")
    };
    let dwr = Message::from_bytes(dwr).unwrap();
    assert!(DeviceWatchdogRequest::parse(&dwr).is_ok());
    assert_eq!(pair.a.poll_timeout(), Some(t0 + 2 * tw));

    out.clear();
    pair.a.handle(Input::Timeout, t0 + 2 * tw, &mut out);
    assert_eq!(out, vec![Output::Event(PeerEvent::Failover)]);
    assert_eq!(pair.a.state(), PeerState::Suspect);

    out.clear();
    pair.a.handle(Input::Timeout, t0 + 3 * tw, &mut out);
    assert_eq!(
        out,
        vec![
            Output::Close,
            Output::Event(PeerEvent::Down(DownReason::WatchdogExpired))
        ]
    );
    assert_eq!(pair.a.state(), PeerState::Closed);
    assert_eq!(pair.a.poll_timeout(), None);
}

#[test]
fn suspect_peer_fails_back_on_any_message() {
    let t0 = Instant::now();
    let mut pair = Pair::new(swm_caps("epdg", "visited.org"), swm_caps("aaa", "home.org"));
    pair.connect(t0);
    let tw = Duration::from_secs(30);
    let mut out = Vec::new();
    pair.a.handle(Input::Timeout, t0 + tw, &mut out);
    let Some(Output::Send(dwr)) = out.first().cloned() else {
        panic!("DWR")
    };
    pair.a.handle(Input::Timeout, t0 + 2 * tw, &mut out);
    assert_eq!(pair.a.state(), PeerState::Suspect);
    // The late DWA arrives.
    let mut ob = Vec::new();
    pair.b.handle(Input::Message(&dwr), t0 + 2 * tw, &mut ob);
    let now = t0 + 2 * tw + Duration::from_secs(1);
    pair.run(Vec::new(), ob, now);
    assert_eq!(pair.a.state(), PeerState::Open);
    assert!(pair.a_events.contains(&PeerEvent::Failback));
    assert_eq!(pair.a.poll_timeout(), Some(now + tw));
}

#[test]
fn watchdog_jitter_comes_from_the_injected_source() {
    let t0 = Instant::now();
    let mut config = PeerConfig::new(swm_caps("aaa", "home.org"));
    config.watchdog_interval = Duration::from_secs(1); // raised to the 6 s minimum
    let values = std::sync::Mutex::new(vec![0u32, 0, 0, 4000].into_iter());
    let mut peer = Peer::new(
        config,
        Role::Responder,
        Box::new(move || {
            values
                .lock()
                .map(|mut v| v.next().unwrap_or(0))
                .unwrap_or(0)
        }),
    );
    let mut out = Vec::new();
    peer.handle(Input::ConnectionUp, t0, &mut out);
    let cer = CapabilitiesExchangeRequest {
        capabilities: swm_caps("epdg", "visited.org"),
    }
    .to_message(1, 1)
    .to_vec()
    .unwrap();
    peer.handle(Input::Message(&cer), t0, &mut out);
    assert_eq!(peer.state(), PeerState::Open);
    // Third draw 0: Tw = 6 s - 2 s.
    assert_eq!(peer.poll_timeout(), Some(t0 + Duration::from_secs(4)));
    let dwr = DeviceWatchdogRequest {
        origin_host: "epdg.visited.org".into(),
        origin_realm: "visited.org".into(),
        origin_state_id: None,
    }
    .to_message(2, 2)
    .to_vec()
    .unwrap();
    out.clear();
    peer.handle(Input::Message(&dwr), t0, &mut out);
    // Fourth draw 4000: Tw = 6 s + 2 s. And the DWR was answered with a DWA.
    assert_eq!(peer.poll_timeout(), Some(t0 + Duration::from_secs(8)));
    let [Output::Send(dwa)] = &out[..] else {
        panic!("a DWA: {out:?}")
    };
    let dwa = PeerAnswer::parse(&Message::from_bytes(dwa).unwrap(), command::DEVICE_WATCHDOG);
    assert_eq!(dwa.unwrap().result_code, result::DIAMETER_SUCCESS);
}

#[test]
fn disconnect_peer_exchange_closes_cleanly() {
    let t0 = Instant::now();
    let mut pair = Pair::new(swm_caps("epdg", "visited.org"), swm_caps("aaa", "home.org"));
    pair.connect(t0);
    let mut oa = Vec::new();
    pair.a.disconnect(DisconnectCause::Rebooting, t0, &mut oa);
    assert_eq!(pair.a.state(), PeerState::Closing);
    pair.run(oa, Vec::new(), t0);
    assert_eq!(pair.a.state(), PeerState::Closed);
    assert_eq!(pair.b.state(), PeerState::Closed);
    assert!(pair
        .b_events
        .contains(&PeerEvent::DisconnectRequested(DisconnectCause::Rebooting)));
    assert!(pair
        .a_events
        .contains(&PeerEvent::Down(DownReason::Disconnected)));
    assert!(pair
        .b_events
        .contains(&PeerEvent::Down(DownReason::Disconnected)));
}

#[test]
fn capabilities_timeout_closes() {
    let t0 = Instant::now();
    let mut peer = Peer::new(
        PeerConfig::new(swm_caps("epdg", "visited.org")),
        Role::Initiator,
        no_jitter(),
    );
    let mut out = Vec::new();
    peer.handle(Input::ConnectionUp, t0, &mut out);
    out.clear();
    peer.handle(Input::Timeout, t0 + Duration::from_secs(10), &mut out);
    assert_eq!(
        out,
        vec![
            Output::Close,
            Output::Event(PeerEvent::Down(DownReason::CapabilitiesTimeout))
        ]
    );
}

#[test]
fn application_messages_reach_the_owner_and_bad_ones_are_answered() {
    let t0 = Instant::now();
    let mut pair = Pair::new(swm_caps("epdg", "visited.org"), swm_caps("aaa", "home.org"));
    pair.connect(t0);
    let der = sample_der().to_message(pair.a.next_hop_by_hop(), pair.a.next_end_to_end());
    let mut ob = Vec::new();
    pair.b
        .handle(Input::Message(&der.to_vec().unwrap()), t0, &mut ob);
    assert_eq!(ob, vec![Output::Event(PeerEvent::Request(der.clone()))]);

    // A request with a reserved AVP flag bit: answered with E set and 3009.
    let body = unhex("00000107 40 00000c 61626364 000001ce 41 00000c 01020304");
    let bad = header_bytes(0xc0, 268, &body);
    let mut ob = Vec::new();
    pair.b.handle(Input::Message(&bad), t0, &mut ob);
    let Some(Output::Send(answer)) = ob.first() else {
        panic!("an error answer: {ob:?}")
    };
    let answer = Message::from_bytes(answer).unwrap();
    assert!(answer.header.flags.error());
    assert_eq!(
        answer.result_code(),
        Some(result::DIAMETER_INVALID_AVP_BITS)
    );
    assert!(matches!(
        ob.get(1),
        Some(Output::Event(PeerEvent::ProtocolError(_)))
    ));
    assert_eq!(pair.b.state(), PeerState::Open);
}

#[test]
fn every_registry_round_trips_named_and_unknown_values() {
    use crate::diameter::codes::{
        ApplicationId, CommandCode, ExperimentalResultCode, ResultCode, VendorId,
    };
    use crate::registry::tests::assert_registry;
    assert_registry::<CommandCode>();
    assert_registry::<ApplicationId>();
    assert_registry::<VendorId>();
    assert_registry::<ResultCode>();
    assert_registry::<ExperimentalResultCode>();
    assert_registry::<DisconnectCause>();
    assert_registry::<AuthRequestType>();
    assert_registry::<TerminationCause>();
    assert_registry::<PdnType>();
    assert_registry::<RatType>();
    // The u32 constants are the registry values, and the two result registries are apart.
    assert_eq!(result::DIAMETER_SUCCESS, 2001);
    assert_eq!(
        ResultCode::from(5001).to_string(),
        "DIAMETER_AVP_UNSUPPORTED"
    );
    assert_eq!(
        ExperimentalResultCode::from(5001).to_string(),
        "DIAMETER_ERROR_USER_UNKNOWN"
    );
    assert!(result::is_protocol_error(3008) && !result::is_protocol_error(5008));
    assert!(result::is_success(2002) && !result::is_success(1001));
    assert_eq!(application::SWM, 16_777_264);
    assert_eq!(command::DIAMETER_EAP, 268);
}
