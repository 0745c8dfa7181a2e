//! The checks every fuzz target runs on one input, shared by the cargo-fuzz targets in
//! `fuzz/` and the regression replay in `common/tests/fuzz_regressions.rs`
//! (docs/testing.md, "Fuzzing": every parser is fuzzed, crashes are kept as regression
//! tests).
//!
//! Each function feeds the bytes to one parser family and panics when a codec breaks a
//! promise it makes in its own documentation and tests: parsing never panics, and what
//! parses re-emits to bytes that parse to the same value (value, not byte, equality:
//! reserved bits, padding, alignment and the Critical bit of known IKE payloads are not
//! kept). Sealed ESP and SK payloads open to what was sealed, and any altered octet makes
//! them fail. The anti-replay window agrees with a plain set model of RFC 4303 section
//! 3.4.3. Built only with the `fuzzing` feature; the library itself never calls it.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv6Addr};

use crate::diameter::base::{
    CapabilitiesExchangeAnswer, CapabilitiesExchangeRequest, DeviceWatchdogRequest,
    DisconnectPeerRequest, PeerAnswer, VendorSpecificApplicationId,
};
use crate::diameter::swm::{
    AaAnswer, AaRequest, ApnConfiguration, DiameterEapAnswer, DiameterEapRequest, Mip6AgentInfo,
    SessionTerminationAnswer, SessionTerminationRequest, SwmMessage,
};
use crate::diameter::{Avp, Framer, Header, Message};
use crate::eap::{aka_subtype, find_mac, AkaMessage, AkaRepr, Attribute, EapRepr};
use crate::esp::{
    EspPacket, InboundSa, OutboundSa, ReplayError, ReplayWindow, UdpEncapsulated,
    REPLAY_WINDOW_SIZE,
};
use crate::ike::wire::parse_payloads;
use crate::ike::{Encr, EspSuite, IkeMessage, Integ, Random, SkKeys};
use crate::mh::{
    parse_options, ChecksumContext, MobilityHeader, MobilityHeaderRepr, MobilityMessage,
    ProxyBindingAck, ProxyBindingUpdate,
};
use crate::tunnel::{
    decapsulate_gre, decapsulate_ip, encapsulate, GrePacket, GreRepr, OuterHeader,
};

/// One target's check of one input: panics when a promise is broken.
pub type Check = fn(&[u8]);

/// The fuzz targets, by the name of their `fuzz/fuzz_targets/<name>.rs` file and of their
/// `fuzz/corpus/<name>` and `fuzz/regressions/<name>` folders.
pub const TARGETS: [(&str, Check); 7] = [
    ("mh", mh),
    ("ike", ike),
    ("ike_sk", ike_sk),
    ("eap", eap),
    ("diameter", diameter),
    ("esp", esp),
    ("gre", gre),
];

/// The Mobility Header: the checked view, [`MobilityHeaderRepr::parse`] (checksum skipped,
/// as on a raw socket with `IPV6_CHECKSUM`), re-emitted with an IPv6 and an IPv4/UDP
/// checksum and parsed again, and the PBU/PBA conversions both ways.
pub fn mh(data: &[u8]) {
    let _ = parse_options(data);
    if let Ok(view) = MobilityHeader::new_checked(data) {
        let _ = (view.payload_proto(), view.mh_type(), view.checksum());
        for option in view.options(0) {
            if option.is_err() {
                break;
            }
        }
    }
    let v6 = ChecksumContext::Ipv6 {
        source: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
        destination: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
    };
    let v4 = ChecksumContext::Ipv4Udp;
    let _ = MobilityHeaderRepr::parse(data, v6);
    let Ok(parsed) = MobilityHeaderRepr::parse(data, ChecksumContext::Skip) else {
        return;
    };
    // `to_bytes` promises a parseable message only within the wire limits, which a
    // parsed message can exceed once its options get their alignment padding.
    if parsed.check_limits().is_ok() {
        for context in [ChecksumContext::Skip, v6, v4] {
            let bytes = parsed.to_bytes(context);
            assert_eq!(bytes.len(), parsed.buffer_len());
            assert_eq!(bytes.len() % 8, 0);
            assert_eq!(
                MobilityHeaderRepr::parse(&bytes, context).as_ref(),
                Ok(&parsed),
                "MH re-emitted as {bytes:02x?}"
            );
        }
    }
    match &parsed.message {
        MobilityMessage::BindingUpdate(bu) => {
            if let Ok(pbu) = ProxyBindingUpdate::try_from(bu) {
                let message = pbu.to_message();
                if message.check_limits().is_ok() {
                    let again = reparse_mh(&message);
                    let MobilityMessage::BindingUpdate(bu) = again.message else {
                        panic!("a PBU re-emitted as {again:?}");
                    };
                    assert_eq!(ProxyBindingUpdate::try_from(&bu), Ok(pbu));
                }
            }
        }
        MobilityMessage::BindingAck(ba) => {
            if let Ok(pba) = ProxyBindingAck::try_from(ba) {
                let message = pba.to_message();
                if message.check_limits().is_ok() {
                    let again = reparse_mh(&message);
                    let MobilityMessage::BindingAck(ba) = again.message else {
                        panic!("a PBA re-emitted as {again:?}");
                    };
                    assert_eq!(ProxyBindingAck::try_from(&ba), Ok(pba));
                }
            }
        }
        _ => {}
    }
}

fn reparse_mh(message: &MobilityHeaderRepr) -> MobilityHeaderRepr {
    let bytes = message.to_bytes(ChecksumContext::Skip);
    match MobilityHeaderRepr::parse(&bytes, ChecksumContext::Skip) {
        Ok(m) => m,
        Err(e) => panic!("{message:?} emitted as {bytes:02x?} does not parse: {e}"),
    }
}

/// IKEv2: [`IkeMessage::parse`], re-emitted and parsed again; the payload chain alone
/// with the first payload type taken from the first octet.
pub fn ike(data: &[u8]) {
    if let Some((&first, rest)) = data.split_first() {
        let _ = parse_payloads(first.into(), rest);
    }
    let Ok(message) = IkeMessage::parse(data) else {
        return;
    };
    let bytes = message.to_bytes();
    assert_eq!(bytes.len(), message.buffer_len());
    assert_eq!(
        IkeMessage::parse(&bytes).as_ref(),
        Ok(&message),
        "IKE re-emitted as {bytes:02x?}"
    );
    let _ = message.to_string();
}

/// A counter standing in for the IV source, so a run is reproducible.
struct Counter(u8);

impl Random for Counter {
    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            self.0 = self.0.wrapping_add(1);
            *b = self.0;
        }
    }
}

/// The fixed SK keys the `ike_sk` target uses: AES-CBC-128 + HMAC-SHA2-256-128, and
/// AES-GCM-16-256.
fn sk_keys() -> [SkKeys; 2] {
    [
        SkKeys::new(
            Encr::AES_CBC_128,
            Some(Integ::HmacSha2_256_128),
            vec![0x11; 16],
            vec![0x22; 32],
        ),
        SkKeys::new(Encr::AES_GCM_16_256, None, vec![0x33; 36], Vec::new()),
    ]
}

/// The SK payload: the input opened with fixed keys (everything before the ICV check),
/// and, when it parses as an IKE message, sealed with those keys and opened again, which
/// must give the same message back; one altered octet (chosen by the input) must make
/// opening fail.
pub fn ike_sk(data: &[u8]) {
    let keys = sk_keys();
    for k in &keys {
        let _ = k.open(data);
    }
    let Ok(message) = IkeMessage::parse(data) else {
        return;
    };
    for k in &keys {
        let Ok(sealed) = k.seal(&message, &mut Counter(data.len() as u8)) else {
            continue;
        };
        match k.open(&sealed) {
            Ok(opened) => assert_eq!(opened, message, "sealed as {sealed:02x?}"),
            // Only what cannot be carried: more than 64 KiB of payloads.
            Err(e) => assert!(sealed.len() > 0xffff, "{message:?} does not open: {e}"),
        }
        let at = usize::from(data[0]) * 7 % sealed.len();
        let mut altered = sealed.clone();
        altered[at] ^= data[1] | 1;
        assert!(
            k.open(&altered).is_err(),
            "altered octet {at} of {sealed:02x?} still opens"
        );
    }
}

/// EAP and EAP-AKA: [`EapRepr::parse_bytes`] and [`AkaRepr::parse`] (on the whole input
/// and on the Type-Data of a parsed packet), each re-emitted and parsed again.
pub fn eap(data: &[u8]) {
    let _ = find_mac(data);
    let _ = aka_subtype(data);
    if let Ok(repr) = EapRepr::parse_bytes(data) {
        let bytes = match repr.to_bytes() {
            Ok(b) => b,
            Err(e) => panic!("parsed {repr:?} does not emit: {e}"),
        };
        assert_eq!(bytes.len(), repr.buffer_len());
        assert_eq!(EapRepr::parse_bytes(&bytes).as_ref(), Ok(&repr));
    }
    if let Ok(view) = AkaMessage::new_checked(data) {
        for raw in view.attributes().flatten() {
            let _ = Attribute::parse(raw.attribute_type, raw.value);
        }
    }
    if let Ok(repr) = AkaRepr::parse(data) {
        let mut out = vec![0; repr.buffer_len()];
        if let Err(e) = repr.emit(&mut out) {
            panic!("parsed {repr:?} does not emit: {e}");
        }
        assert_eq!(AkaRepr::parse(&out).as_ref(), Ok(&repr));
    }
}

/// Diameter: [`Message::from_bytes`] re-emitted and parsed again, every typed parser
/// (whose results re-emit and parse to the same value) and AVP accessor, the error answer,
/// and [`Framer`] fed the input in two pieces.
pub fn diameter(data: &[u8]) {
    match Message::from_bytes(data) {
        Ok(m) => {
            let bytes = match m.to_vec() {
                Ok(b) => b,
                Err(e) => panic!("parsed {m:?} does not emit: {e}"),
            };
            assert_eq!(bytes.len(), m.buffer_len());
            assert_eq!(Message::from_bytes(&bytes).as_ref(), Ok(&m));
            typed_diameter(&m);
            for avp in &m.avps {
                avp_accessors(avp);
            }
        }
        Err(e) => {
            if let Some(answer) = Message::error_answer_for_bytes(data, "h", "r", &e) {
                let bytes = answer.to_vec().expect("an error answer emits");
                assert_eq!(Message::from_bytes(&bytes), Ok(answer));
            }
        }
    }
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut framer = Framer::new(4096);
    for piece in [&data[..split], &data[split..]] {
        framer.push(piece);
        while let Ok(Some(message)) = framer.next_message() {
            let _ = Message::from_bytes(&message);
        }
    }
}

fn reparse_diameter(m: &Message) -> Message {
    let bytes = m.to_vec().expect("a typed message emits");
    match Message::from_bytes(&bytes) {
        Ok(m) => m,
        Err(e) => panic!("{m:?} emitted as {bytes:02x?} does not parse: {e}"),
    }
}

fn typed_diameter(m: &Message) {
    let request = Header::request(m.header.command_code, m.header.application_id, true, 1, 2);
    let _ = SwmMessage::parse(m);
    if let Ok(r) = DiameterEapRequest::parse(m) {
        assert_eq!(
            DiameterEapRequest::parse(&reparse_diameter(&r.to_message(1, 2))),
            Ok(r)
        );
    }
    if let Ok(a) = DiameterEapAnswer::parse(m) {
        assert_eq!(
            DiameterEapAnswer::parse(&reparse_diameter(&a.to_message(&request))),
            Ok(a)
        );
    }
    if let Ok(r) = AaRequest::parse(m) {
        assert_eq!(
            AaRequest::parse(&reparse_diameter(&r.to_message(1, 2))),
            Ok(r)
        );
    }
    if let Ok(a) = AaAnswer::parse(m) {
        assert_eq!(
            AaAnswer::parse(&reparse_diameter(&a.to_message(&request))),
            Ok(a)
        );
    }
    if let Ok(r) = SessionTerminationRequest::parse(m) {
        assert_eq!(
            SessionTerminationRequest::parse(&reparse_diameter(&r.to_message(1, 2))),
            Ok(r)
        );
    }
    if let Ok(a) = SessionTerminationAnswer::parse(m) {
        assert_eq!(
            SessionTerminationAnswer::parse(&reparse_diameter(&a.to_message(&request))),
            Ok(a)
        );
    }
    if let Ok(r) = CapabilitiesExchangeRequest::parse(m) {
        assert_eq!(
            CapabilitiesExchangeRequest::parse(&reparse_diameter(&r.to_message(1, 2))),
            Ok(r)
        );
    }
    if let Ok(a) = CapabilitiesExchangeAnswer::parse(m) {
        assert_eq!(
            CapabilitiesExchangeAnswer::parse(&reparse_diameter(&a.to_message(&request))),
            Ok(a)
        );
    }
    let _ = DeviceWatchdogRequest::parse(m);
    let _ = DisconnectPeerRequest::parse(m);
    let _ = PeerAnswer::parse(m, m.header.command_code);
}

fn avp_accessors(avp: &Avp) {
    let _ = avp.as_u32();
    let _ = avp.as_u64();
    let _ = avp.as_i32();
    let _ = avp.as_i64();
    let _ = avp.as_time();
    let _ = avp.as_utf8();
    let _ = avp.as_identity();
    let _ = avp.as_address();
    let _ = avp.as_ip();
    let _ = Mip6AgentInfo::from_avp(avp);
    let _ = ApnConfiguration::from_avp(avp);
    let _ = VendorSpecificApplicationId::from_avp(avp);
    if let Ok(members) = avp.as_grouped() {
        for member in &members {
            let _ = member.as_utf8();
            let _ = member.as_grouped();
        }
    }
}

/// The SPI of the `esp` target's inbound SA.
pub const ESP_FUZZ_SPI: u32 = 0x0000_1001;

/// The `esp` target's suites with fixed keys: AES-GCM-16-128 and AES-CBC-128 with
/// HMAC-SHA2-256-128.
fn esp_suites() -> [(EspSuite, Vec<u8>, Vec<u8>); 2] {
    [
        (
            EspSuite {
                encr: Encr::AES_GCM_16_128,
                integ: None,
            },
            vec![0x44; 20],
            Vec::new(),
        ),
        (
            EspSuite {
                encr: Encr::AES_CBC_128,
                integ: Some(Integ::HmacSha2_256_128),
            },
            vec![0x55; 16],
            vec![0x66; 32],
        ),
    ]
}

/// ESP and ESP-in-UDP: the port-4500 classifier and the ESP view; the input opened by an
/// inbound SA with fixed keys (SPI, anti-replay and ICV checks); the input sealed as a
/// payload and opened again, which gives it back once, refuses it as a duplicate the
/// second time, and refuses it with any one octet altered; and the anti-replay window fed
/// the input as sequence numbers, against a set model.
pub fn esp(data: &[u8]) {
    if let Ok(UdpEncapsulated::Esp(view)) = UdpEncapsulated::classify(data) {
        let _ = (view.spi(), view.sequence_number(), view.protected().len());
    }
    if let Ok(view) = EspPacket::new_checked(data) {
        let _ = view.as_bytes();
    }
    let next_header = data.first().copied().unwrap_or(59);
    for (suite, e, a) in esp_suites() {
        let mut inbound = InboundSa::new(ESP_FUZZ_SPI, suite, &e, &a).expect("fixed keys");
        let mut out = Vec::new();
        let _ = inbound.decapsulate(data, &mut out);
        let _ = inbound.decapsulate_ip(data, &mut out);

        let mut outbound = OutboundSa::new(ESP_FUZZ_SPI, suite, &e, &a).expect("fixed keys");
        let mut inbound = InboundSa::new(ESP_FUZZ_SPI, suite, &e, &a).expect("fixed keys");
        let mut packet = Vec::new();
        let sequence_number = outbound
            .encapsulate(next_header, data, &mut Counter(0), &mut packet)
            .expect("sealing a payload");
        assert_eq!(packet.len(), outbound.encapsulated_len(data.len()));
        let opened = inbound
            .decapsulate(&packet, &mut out)
            .expect("opening what was sealed");
        assert_eq!(opened.sequence_number, sequence_number);
        assert_eq!(opened.next_header, next_header);
        assert_eq!(out, data);
        assert_eq!(
            inbound.decapsulate(&packet, &mut out).map(|_| ()),
            Err(ReplayError::Duplicate(sequence_number).into())
        );
        let mut fresh = InboundSa::new(ESP_FUZZ_SPI, suite, &e, &a).expect("fixed keys");
        let at = data.len().wrapping_mul(31) % packet.len();
        packet[at] ^= data.get(1).map_or(0x80, |b| b | 1);
        assert!(
            fresh.decapsulate(&packet, &mut out).is_err(),
            "ESP packet altered at {at} still opens"
        );
        assert_eq!(fresh.replay_window().highest(), 0);
    }
    replay_window(data);
}

/// The window fed sequence numbers read as big-endian 16-bit steps (signed, so they go
/// back and forth around the top), checked against a set of what was accepted.
fn replay_window(data: &[u8]) {
    let mut window = ReplayWindow::new();
    let mut accepted = HashSet::new();
    let mut top = 0u32;
    let mut n = 0u32;
    for step in data.chunks_exact(2) {
        let delta = i16::from_be_bytes([step[0], step[1]]);
        n = n.wrapping_add_signed(i32::from(delta));
        let expected = if n == 0 || (n <= top && top - n >= REPLAY_WINDOW_SIZE) {
            Err(ReplayError::TooOld(n))
        } else if accepted.contains(&n) {
            Err(ReplayError::Duplicate(n))
        } else {
            Ok(())
        };
        assert_eq!(window.check(n), expected, "sequence number {n}, top {top}");
        assert_eq!(window.accept(n), expected);
        if expected.is_ok() {
            accepted.insert(n);
            top = top.max(n);
        }
        assert_eq!(window.highest(), top);
    }
}

/// GRE: the checked view and [`GreRepr::parse`], re-emitted around the same payload and
/// parsed again; [`decapsulate_gre`] and [`decapsulate_ip`], whose result encapsulated
/// again takes apart to the same key, header and inner packet.
pub fn gre(data: &[u8]) {
    if let Ok(view) = GrePacket::new_checked(data) {
        let _ = (view.checksum(), view.key(), view.sequence_number());
        if let Ok(repr) = GreRepr::parse(&view) {
            let mut out = Vec::new();
            repr.emit_with_payload(view.payload(), &mut out);
            let again = GrePacket::new_checked(&out[..]).expect("an emitted GRE header");
            assert_eq!(GreRepr::parse(&again), Ok(repr));
            assert_eq!(again.payload(), view.payload());
        }
    }
    if let Ok(d) = decapsulate_gre(data) {
        let mut out = Vec::new();
        d.gre.emit_with_payload(d.inner, &mut out);
        let again = decapsulate_gre(&out).expect("a re-emitted GRE packet");
        assert_eq!(again, d);
    }
    if let Ok(d) = decapsulate_ip(data) {
        let (Some(source), Some(destination)) = (d.outer_source, d.outer_destination) else {
            panic!("decapsulate_ip without the outer addresses: {d:?}");
        };
        let outer = OuterHeader {
            source,
            destination,
            hop_limit: 64,
        };
        let mut out = Vec::new();
        encapsulate(&outer, &d.gre, d.inner, &mut out).expect("re-encapsulating");
        let again = decapsulate_ip(&out).expect("a re-encapsulated packet");
        assert_eq!(again, d);
        assert!(matches!(
            (source, destination),
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_))
        ));
    }
}
