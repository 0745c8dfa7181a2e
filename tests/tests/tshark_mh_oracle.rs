//! tshark as an independent decoder of our Mobility Header codec (docs/testing.md).
//!
//! Every message type and every mobility option `pmip_common::mh` can emit is built with
//! our codec, sent through both transports (IPv6 with next header 135, and IPv4 with the
//! Mobility Header in UDP port 5436), written to a pcap by `pmip_node::pcap`, and
//! decoded by `tshark -V -T json`. For each packet we require:
//!
//! * no malformed-packet mark and no expert info of any severity (the one exception: the
//!   "IE data not dissected yet" note tshark attaches to an option type it does not know,
//!   which is what an unknown option is);
//! * good IPv4 header and UDP checksums (tshark's validation is switched on);
//! * the Mobility Header checksum: tshark 4.0 does not verify it (its `mip6.csum` field has
//!   no status), so over IPv6 it is summed here from the packet's addresses, independently
//!   of the codec's own function; over UDP 5436 it must be zero (RFC 5844 sections 4.1.3.2
//!   and 4.2.2.1), and tshark must show it so;
//! * the options tshark found are ours, in our order (the Pad1/PadN between them aside);
//! * every field tshark decodes that we set (MN-ID NAI, APN, HNP, IPv4 HoA, GRE keys,
//!   timestamp, sequence, lifetime, status, flags, 3GPP sub-options, ...) has the value we
//!   encoded, field by field, in order. Status codes are compared as numbers: tshark 4.0
//!   prints wrong names for some of them (IPv4 HoA Reply 128-132).
//!
//! tshark is installed by `scripts/setup.sh`; without it this test fails (it never passes
//! silently). Set `MH_ORACLE_PCAP=/some/file.pcap` to keep the capture for Wireshark.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use ipnet::Ipv6Net;
use pmip_common::mh::*;
use pmip_node::pcap::PcapWriter;

// ---------------------------------------------------------------------------------------
// The messages

const NAI: &str = "0234150999999999@nai.epc.mnc015.mcc234.3gppnetwork.org";
const APN: &str = "internet.mnc015.mcc234.gprs";
/// 2023-11-14 22:13:20 UTC.
const UNIX_SECS: u64 = 1_700_000_000;

/// A Timestamp option value as RFC 5213 section 8.8 lays it out: seconds since
/// 1970-01-01 00:00 UTC in the high 48 bits, 1/65536 fractions of a second in the low 16.
fn rfc5213_timestamp(unix_secs: u64, fraction: u16) -> Timestamp {
    Timestamp((unix_secs << 16) | u64::from(fraction))
}

fn three_gpp(option: ThreeGppOption) -> MobilityOption {
    MobilityOption::VendorSpecific(VendorSpecific::ThreeGpp(option))
}

fn nai() -> MobilityOption {
    MobilityOption::MobileNodeIdentifier(MobileNodeIdentifier::Nai(NAI.into()))
}

fn message(message: MobilityMessage) -> MobilityHeaderRepr {
    MobilityHeaderRepr {
        payload_proto: IPPROTO_NONE,
        message,
    }
}

/// The PBU an ePDG sends (docs/attach.md, step 5), with every option a PBU may carry.
fn pbu() -> MobilityHeaderRepr {
    use MobilityOption as O;
    message(MobilityMessage::BindingUpdate(BindingUpdateRepr {
        sequence: 4242,
        flags: BuFlags(BuFlags::ACK | BuFlags::PROXY | BuFlags::TLV_HEADER),
        lifetime: Lifetime(900),
        options: vec![
            nai(),
            O::ServiceSelection(APN.into()),
            O::HomeNetworkPrefix("::/0".parse().unwrap()),
            O::HandoffIndicator(HandoffIndicator::AttachmentOverNewInterface),
            O::AccessTechnologyType(AccessTechnologyType::Ieee80211),
            O::MobileNodeLinkLayerIdentifier(vec![0x02, 0x00, 0x5e, 0x10, 0x20, 0x30]),
            O::LinkLocalAddress("fe80::1".parse().unwrap()),
            O::Timestamp(rfc5213_timestamp(UNIX_SECS, 0x8000)),
            O::GreKey(GreKey(0x0102_0304)),
            O::Ipv4HomeAddressRequest("0.0.0.0/0".parse().unwrap()),
            O::Ipv4CareOfAddress(Ipv4Addr::new(192, 0, 2, 1)),
            three_gpp(ThreeGppOption::PdnGwIpAddress(IpAddr::V4(Ipv4Addr::new(
                198, 51, 100, 77,
            )))),
            three_gpp(ThreeGppOption::PdnGwIpAddress(IpAddr::V6(
                "2001:db8:77::1".parse().unwrap(),
            ))),
            three_gpp(ThreeGppOption::PdnTypeIndication {
                pdn_type: PdnType::Ipv4v6,
                cause: 0,
            }),
            // TS 24.008 10.5.6.3: configuration protocol PPP, DNS server IPv4 address
            // request (0x000d) and IPv6 DNS server request (0x0003), both empty.
            three_gpp(ThreeGppOption::ProtocolConfigurationOptions(vec![
                0x80, 0x00, 0x0d, 0x00, 0x00, 0x03, 0x00,
            ])),
        ],
    }))
}

/// A PBU with what we keep without interpreting: an option type nobody assigned, a
/// vendor other than 3GPP, a 3GPP sub-type we do not decode, a non-NAI MN-ID.
fn pbu_with_unknowns() -> MobilityHeaderRepr {
    use MobilityOption as O;
    message(MobilityMessage::BindingUpdate(BindingUpdateRepr {
        sequence: 4243,
        flags: BuFlags(BuFlags::ACK | BuFlags::PROXY),
        lifetime: Lifetime(0),
        options: vec![
            nai(),
            O::Unknown {
                option_type: 200,
                data: vec![0xde, 0xad, 0xbe, 0xef, 0x01],
            },
            O::VendorSpecific(VendorSpecific::Other {
                vendor_id: 9,
                sub_type: 1,
                data: vec![0x11, 0x22, 0x33],
            }),
        ],
    }))
}

/// The LMA's accepting PBA: addresses, keys, lifetime and the 3GPP sub-options.
fn pba_accept() -> MobilityHeaderRepr {
    use MobilityOption as O;
    message(MobilityMessage::BindingAck(BindingAckRepr {
        status: BindingAckStatus::Accepted,
        flags: BaFlags(BaFlags::PROXY | BaFlags::TLV_HEADER),
        sequence: 4242,
        lifetime: Lifetime(900),
        options: vec![
            nai(),
            O::ServiceSelection(APN.into()),
            O::HomeNetworkPrefix("2001:db8:1:2::/64".parse().unwrap()),
            O::HandoffIndicator(HandoffIndicator::AttachmentOverNewInterface),
            O::AccessTechnologyType(AccessTechnologyType::Ieee80211),
            O::MobileNodeLinkLayerIdentifier(vec![0x02, 0x00, 0x5e, 0x10, 0x20, 0x30]),
            O::LinkLocalAddress("fe80::2".parse().unwrap()),
            O::Timestamp(rfc5213_timestamp(UNIX_SECS, 0x4000)),
            O::GreKey(GreKey(0xfedc_ba98)),
            O::Ipv4HomeAddressReply {
                status: Ipv4HomeAddressReplyStatus::Success,
                address: "10.45.0.7/32".parse().unwrap(),
            },
            O::Ipv4DefaultRouterAddress(Ipv4Addr::new(10, 45, 0, 1)),
            O::Ipv4DhcpSupportMode { server: true },
            three_gpp(ThreeGppOption::ChargingId(0xdead_beef)),
            three_gpp(ThreeGppOption::PdnTypeIndication {
                pdn_type: PdnType::Ipv4,
                cause: 1,
            }),
            // PPP, DNS server IPv4 address 192.0.2.53.
            three_gpp(ThreeGppOption::ProtocolConfigurationOptions(vec![
                0x80, 0x00, 0x0d, 0x04, 192, 0, 2, 53,
            ])),
        ],
    }))
}

/// A rejecting PBA: `status`, the IPv4 HoA Reply with `ipv4_status`, the 3GPP error code.
fn pba_reject(status: u8, ipv4_status: u8, sequence: u16) -> MobilityHeaderRepr {
    use MobilityOption as O;
    message(MobilityMessage::BindingAck(BindingAckRepr {
        status: BindingAckStatus::from(status),
        flags: BaFlags(BaFlags::PROXY),
        sequence,
        lifetime: Lifetime(0),
        options: vec![
            nai(),
            O::ServiceSelection(APN.into()),
            O::HomeNetworkPrefix("::/0".parse().unwrap()),
            O::HandoffIndicator(HandoffIndicator::HandoffStateUnknown),
            O::AccessTechnologyType(AccessTechnologyType::ThreeGppEutran),
            O::Ipv4HomeAddressReply {
                status: Ipv4HomeAddressReplyStatus::from(ipv4_status),
                address: "0.0.0.0/0".parse().unwrap(),
            },
            three_gpp(ThreeGppOption::ErrorCode(1)),
        ],
    }))
}

/// A Mobile IPv6 / DSMIPv6 home registration (RFC 6275, RFC 3963, RFC 5555): the
/// options a UE's own Binding Update carries.
fn mipv6_bu() -> MobilityHeaderRepr {
    use MobilityOption as O;
    message(MobilityMessage::BindingUpdate(BindingUpdateRepr {
        sequence: 65535,
        flags: BuFlags(
            BuFlags::ACK
                | BuFlags::HOME_REGISTRATION
                | BuFlags::LINK_LOCAL
                | BuFlags::KEY_MANAGEMENT
                | BuFlags::MOBILE_ROUTER
                | BuFlags::FORCE_UDP,
        ),
        lifetime: Lifetime(65535),
        options: vec![
            O::AlternateCareOfAddress("2001:db8:c0a::1".parse().unwrap()),
            O::NonceIndices {
                home: 0x1234,
                care_of: 0xabcd,
            },
            O::MobileNetworkPrefix("2001:db8:99::/48".parse().unwrap()),
            O::Ipv4HomeAddress {
                prefix_len: 32,
                address: Ipv4Addr::new(10, 0, 0, 5),
                request_prefix: true,
            },
            O::Ipv4CareOfAddress(Ipv4Addr::new(203, 0, 113, 9)),
            nai(),
            O::BindingAuthorizationData(vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
        ],
    }))
}

/// The home agent's answer to [`mipv6_bu`].
fn mipv6_ba() -> MobilityHeaderRepr {
    use MobilityOption as O;
    message(MobilityMessage::BindingAck(BindingAckRepr {
        status: BindingAckStatus::AcceptedPrefixDiscoveryNecessary,
        flags: BaFlags(BaFlags::KEY_MANAGEMENT | BaFlags::MOBILE_ROUTER),
        sequence: 65535,
        lifetime: Lifetime(1),
        options: vec![
            O::BindingRefreshAdvice(150),
            O::Ipv4AddressAcknowledgement {
                status: Ipv4AddressAcknowledgementStatus::Success,
                prefix_len: 24,
                address: Ipv4Addr::new(10, 0, 0, 5),
            },
            O::NatDetection {
                udp_encapsulation_required: true,
                refresh_time: 110,
            },
            O::MobileNetworkPrefix("2001:db8:99::/48".parse().unwrap()),
        ],
    }))
}

fn binding_error(status: BindingErrorStatus) -> MobilityHeaderRepr {
    message(MobilityMessage::BindingError(BindingErrorRepr {
        status,
        home_address: "2001:db8::99".parse().unwrap(),
        options: vec![],
    }))
}

fn heartbeat(unsolicited: bool, response: bool, sequence: u32) -> MobilityHeaderRepr {
    message(MobilityMessage::Heartbeat(HeartbeatRepr {
        unsolicited,
        response,
        sequence,
        options: vec![MobilityOption::RestartCounter(0x0102_0304)],
    }))
}

/// Flags of a Binding Revocation Indication or Acknowledgement (RFC 5846 sections 6.1
/// and 6.2), as the high bits of the octet after the sequence number: Proxy binding (P),
/// IPv4 HoA binding only (V), Global (G), in that order as Wireshark and Pcap.Net both
/// place them.
const BRI_P: u8 = 0x80;
const BRI_V: u8 = 0x40;
const BRI_G: u8 = 0x20;

fn revocation_indication() -> MobilityHeaderRepr {
    use MobilityOption as O;
    message(MobilityMessage::BindingRevocation(BindingRevocationRepr {
        revocation_type: BindingRevocationType::Indication,
        trigger_or_status: 1, // Administrative Reason
        sequence: 7,
        flags: BRI_P | BRI_V,
        options: vec![
            nai(),
            O::HomeNetworkPrefix("2001:db8:1:2::/64".parse().unwrap()),
            O::Ipv4HomeAddress {
                prefix_len: 32,
                address: Ipv4Addr::new(10, 45, 0, 7),
                request_prefix: false,
            },
            O::GreKey(GreKey(0xfedc_ba98)),
        ],
    }))
}

fn revocation_ack() -> MobilityHeaderRepr {
    message(MobilityMessage::BindingRevocation(BindingRevocationRepr {
        revocation_type: BindingRevocationType::Acknowledgement,
        trigger_or_status: 0, // success
        sequence: 7,
        flags: BRI_P | BRI_V | BRI_G,
        options: vec![nai()],
    }))
}

/// Every message of the oracle run, named.
fn cases() -> Vec<(String, MobilityHeaderRepr)> {
    let mut cases = vec![
        ("PBU".to_string(), pbu()),
        ("PBU with unknown options".to_string(), pbu_with_unknowns()),
        ("PBA accepted".to_string(), pba_accept()),
    ];
    // Every rejecting status the codec names, and the IPv4 HoA Reply failure statuses
    // 128-132 (those whose names tshark 4.0 gets wrong) in turn beside them.
    let reject = BindingAckStatus::NAMED
        .iter()
        .filter(|s| !s.is_accepted())
        .map(|s| s.value());
    for (i, status) in reject.enumerate() {
        let ipv4_status = 128 + (i % 5) as u8;
        cases.push((
            format!("PBA rejected, status {status}, IPv4 status {ipv4_status}"),
            pba_reject(status, ipv4_status, 100 + i as u16),
        ));
    }
    cases.extend([
        ("MIPv6 BU".to_string(), mipv6_bu()),
        ("MIPv6 BA".to_string(), mipv6_ba()),
        (
            "Binding Error, unknown binding".to_string(),
            binding_error(BindingErrorStatus::UnknownBindingForHomeAddress),
        ),
        (
            "Binding Error, unrecognized MH type".to_string(),
            binding_error(BindingErrorStatus::UnrecognizedMhType),
        ),
        ("Heartbeat request".to_string(), heartbeat(false, false, 1)),
        (
            "Heartbeat response".to_string(),
            heartbeat(false, true, u32::MAX),
        ),
        (
            "Heartbeat unsolicited".to_string(),
            heartbeat(true, false, 0x8000_0001),
        ),
        (
            "Binding Revocation Indication".to_string(),
            revocation_indication(),
        ),
        (
            "Binding Revocation Acknowledgement".to_string(),
            revocation_ack(),
        ),
    ]);
    cases.extend(lma_emitted());
    cases
}

// ---------------------------------------------------------------------------------------
// What the LMA core itself emits beyond PBAs: driven in virtual time, its bytes taken

mod lma_core {
    use super::*;
    use lma::anchor::RevocationSettings;
    use lma::config::{MagFilter, UnauthorizedMag};
    use lma::{Input, Lma, LmaSettings, MagAddress, Output};
    use std::net::SocketAddrV4;
    use std::time::{Instant, SystemTime};

    pub const MAG_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    pub const MAG_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);

    pub fn path(mag: Ipv4Addr) -> MagAddress {
        MagAddress::Udp4 {
            mag: SocketAddrV4::new(mag, MH_UDP_PORT),
            local: LMA4,
        }
    }

    /// An LMA core in virtual time whose every MAG may revoke globally.
    pub struct Core {
        pub lma: Lma,
        t0: Instant,
        wall0: SystemTime,
    }

    impl Core {
        pub fn new() -> Core {
            Core::with_heartbeat(None)
        }

        /// With RFC 5847 heartbeats toward the MAGs.
        pub fn with_heartbeat(
            heartbeat: Option<pmip_common::heartbeat::HeartbeatSettings>,
        ) -> Core {
            let t0 = Instant::now();
            let wall0 = UNIX_EPOCH + Duration::from_secs(UNIX_SECS);
            let settings = LmaSettings {
                ipv4_pool: Some("10.45.0.0/24".parse().unwrap()),
                ipv4_default_router: Some("10.45.0.1".parse().unwrap()),
                ipv6_pool: Some("2001:db8:45::/56".parse().unwrap()),
                max_lifetime: Lifetime::from_secs(3600),
                timestamp_window: Duration::from_secs(5),
                require_timestamp: false,
                require_gre_key: true,
                unauthorized_mag: UnauthorizedMag::Reject,
                allowed_mags: vec![
                    "192.0.2.0/24".parse::<MagFilter>().unwrap(),
                    MAG6.parse::<MagFilter>().unwrap(),
                ],
                restart_counter: 1,
                revocation: RevocationSettings {
                    global_mags: vec!["192.0.2.0/24".parse().unwrap()],
                    ..RevocationSettings::default()
                },
                limits: Default::default(),
                heartbeat,
            };
            Core {
                lma: Lma::new(settings, t0, wall0).unwrap(),
                t0,
                wall0,
            }
        }

        /// Feeds `message` from `mag` at virtual second `secs`; the messages the core
        /// sent back, each checked to re-emit to the very octets the core produced.
        pub fn feed(
            &mut self,
            mag: Ipv4Addr,
            message: MobilityMessage,
            secs: u64,
        ) -> Vec<(Ipv4Addr, MobilityHeaderRepr)> {
            let from = path(mag);
            let bytes = message_repr(message).to_bytes(from.receive_checksum());
            let mut out = Vec::new();
            let now = self.t0 + Duration::from_secs(secs);
            self.lma.handle(
                Input::Mobility {
                    from,
                    bytes: &bytes,
                },
                now,
                &mut out,
            );
            sent(out)
        }

        /// The timers due at virtual second `secs`: what the core sent.
        pub fn timeout(&mut self, secs: u64) -> Vec<(Ipv4Addr, MobilityHeaderRepr)> {
            let mut out = Vec::new();
            let now = self.t0 + Duration::from_secs(secs);
            self.lma.handle(Input::Timeout, now, &mut out);
            sent(out)
        }

        /// The operator revokes (the admin interface): what the core sent.
        pub fn revoke(
            &mut self,
            target: lma::anchor::RevokeTarget,
            secs: u64,
        ) -> Vec<(Ipv4Addr, MobilityHeaderRepr)> {
            let mut out = Vec::new();
            let now = self.t0 + Duration::from_secs(secs);
            self.lma.revoke_bindings(target, now, &mut out).unwrap();
            sent(out)
        }

        /// The core restarted from a state file naming one binding of `mag`: what it sent.
        pub fn restore(&mut self, mag: Ipv4Addr) -> Vec<(Ipv4Addr, MobilityHeaderRepr)> {
            let mut out = Vec::new();
            let restored = lma::anchor::Restored {
                bindings: vec![lma::anchor::HeldBinding {
                    mn_id: super::NAI.into(),
                    apn: Some(APN.into()),
                    mag: path(mag),
                    ipv4_home_address: Some("10.45.0.9".parse().unwrap()),
                    home_network_prefix: Some("2001:db8:45:9::/64".parse().unwrap()),
                    home: None,
                }],
                quarantined: Vec::new(),
            };
            self.lma.restore(restored, self.t0, &mut out);
            sent(out)
        }

        pub fn pbu(&self, mn: &str, hi: HandoffIndicator, key: u32, secs: u64) -> MobilityMessage {
            let wall = self.wall0 + Duration::from_secs(secs);
            MobilityMessage::BindingUpdate(
                ProxyBindingUpdate {
                    sequence: 1,
                    flags: BuFlags(BuFlags::ACK | BuFlags::HOME_REGISTRATION | BuFlags::PROXY),
                    lifetime: Lifetime::from_secs(600),
                    mn_id: mn.to_string(),
                    apn: Some(APN.into()),
                    home_network_prefixes: vec!["::/0".parse().unwrap()],
                    handoff: hi,
                    access_technology: AccessTechnologyType::Ieee80211,
                    timestamp: Some(Timestamp::from_system_time(wall)),
                    link_local_address: None,
                    link_layer_id: None,
                    gre_key: Some(GreKey(key)),
                    ipv4_home_address_request: Some("0.0.0.0/0".parse().unwrap()),
                    ipv4_care_of_address: None,
                    restart_counter: None,
                    vendor: Vec::new(),
                    other: Vec::new(),
                }
                .to_binding_update(),
            )
        }
    }

    fn message_repr(message: MobilityMessage) -> MobilityHeaderRepr {
        MobilityHeaderRepr {
            payload_proto: IPPROTO_NONE,
            message,
        }
    }

    fn sent(out: Vec<Output>) -> Vec<(Ipv4Addr, MobilityHeaderRepr)> {
        out.into_iter()
            .filter_map(|o| match o {
                Output::Send { to, bytes } => {
                    let context = to.send_checksum();
                    let repr = MobilityHeaderRepr::parse(&bytes, context)
                        .unwrap_or_else(|e| panic!("the LMA's own message does not parse: {e}"));
                    assert_eq!(repr.to_bytes(context), bytes, "re-emitted exactly");
                    let IpAddr::V4(mag) = to.ip() else {
                        panic!("an IPv4 path")
                    };
                    Some((mag, repr))
                }
                _ => None,
            })
            .collect()
    }
}

/// The messages the LMA core emits besides PBAs, each from a run of the core itself:
/// Binding Revocation Indications for every trigger it uses, its Acknowledgements with
/// every status it answers with, and its Binding Error.
fn lma_emitted() -> Vec<(String, MobilityHeaderRepr)> {
    use lma_core::{Core, MAG_A, MAG_B};
    let mut cases = Vec::new();
    let revocations =
        |sent: Vec<(Ipv4Addr, MobilityHeaderRepr)>, to: Ipv4Addr| -> Vec<MobilityHeaderRepr> {
            sent.into_iter()
                .filter(|(mag, r)| {
                    *mag == to && matches!(r.message, MobilityMessage::BindingRevocation(_))
                })
                .map(|(_, r)| r)
                .collect()
        };
    // Indications: handoff with the same and another access type, state unknown, a new
    // session replacing the old one.
    for (name, hi, technology) in [
        (
            "handoff, same access type",
            HandoffIndicator::HandoffBetweenSameInterface,
            None,
        ),
        (
            "handoff, different access type",
            HandoffIndicator::HandoffBetweenDifferentInterfaces,
            Some(AccessTechnologyType::ThreeGppEutran),
        ),
        (
            "handoff state unknown",
            HandoffIndicator::HandoffStateUnknown,
            None,
        ),
        (
            "new session elsewhere",
            HandoffIndicator::AttachmentOverNewInterface,
            None,
        ),
    ] {
        let mut core = Core::new();
        core.feed(
            MAG_A,
            core.pbu(NAI, HandoffIndicator::AttachmentOverNewInterface, 1, 0),
            0,
        );
        let mut moved = core.pbu(NAI, hi, 2, 1);
        if let (Some(t), MobilityMessage::BindingUpdate(bu)) = (technology, &mut moved) {
            for o in &mut bu.options {
                if let MobilityOption::AccessTechnologyType(a) = o {
                    *a = t;
                }
            }
        }
        let bris = revocations(core.feed(MAG_B, moved, 1), MAG_A);
        assert_eq!(bris.len(), 1, "{name}: one BRI to the old MAG");
        cases.push((format!("LMA's BRI: {name}"), bris[0].clone()));
    }
    // Acknowledgements, by the status the LMA answers with.
    let bri = |trigger: u8, flags: u8, options: Vec<MobilityOption>| {
        MobilityMessage::BindingRevocation(BindingRevocationRepr {
            revocation_type: BindingRevocationType::Indication,
            trigger_or_status: trigger,
            sequence: 0x1234,
            flags,
            options,
        })
    };
    let mut core = Core::new();
    core.feed(
        MAG_A,
        core.pbu(NAI, HandoffIndicator::AttachmentOverNewInterface, 1, 0),
        0,
    );
    let other_prefix = MobilityOption::HomeNetworkPrefix("2001:db8:99::/64".parse().unwrap());
    let hnp = MobilityOption::HomeNetworkPrefix("2001:db8:45::/64".parse().unwrap());
    for (name, message) in [
        ("trigger not supported", bri(77, BRI_P, vec![nai()])),
        ("function not supported", bri(2, BRI_P | BRI_G, vec![nai()])),
        ("identity required", bri(1, BRI_P, vec![])),
        (
            "IPv4 HoA option required",
            bri(1, BRI_P | BRI_V, vec![nai()]),
        ),
        (
            "binding does not exist",
            bri(1, BRI_P, vec![nai(), other_prefix.clone()]),
        ),
        (
            "partial success",
            bri(1, BRI_P, vec![nai(), hnp, other_prefix]),
        ),
        ("global, success", bri(128, BRI_P | BRI_G, vec![nai()])),
        ("global not authorized", bri(128, BRI_P | BRI_G, vec![])),
    ] {
        let acks = revocations(core.feed(MAG_A, message, 2), MAG_A);
        assert_eq!(acks.len(), 1, "{name}: one BRA");
        cases.push((format!("LMA's BRA: {name}"), acks[0].clone()));
    }
    // RFC 5847: its heartbeat request, its response with the restart counter, the
    // unsolicited response after a restart; RFC 5846: the operator's revocations (per
    // node with the APN, and every binding of a MAG with G), and the indication telling
    // a MAG its binding held back since a restart is gone (trigger 7).
    let mut beating = Core::with_heartbeat(Some(Default::default()));
    beating.feed(
        MAG_A,
        beating.pbu(NAI, HandoffIndicator::AttachmentOverNewInterface, 1, 0),
        0,
    );
    let request = beating.timeout(60);
    assert!(
        matches!(request.as_slice(), [(_, r)] if matches!(r.message, MobilityMessage::Heartbeat(_)))
    );
    cases.push(("LMA's heartbeat request".to_string(), request[0].1.clone()));
    let answer = beating.feed(
        MAG_A,
        MobilityMessage::Heartbeat(HeartbeatRepr {
            unsolicited: false,
            response: false,
            sequence: 0x0102_0304,
            options: Vec::new(),
        }),
        61,
    );
    cases.push((
        "LMA's heartbeat response with its restart counter".to_string(),
        answer[0].1.clone(),
    ));
    let pick = |sent: Vec<(Ipv4Addr, MobilityHeaderRepr)>, what: &str| {
        sent.into_iter()
            .next()
            .unwrap_or_else(|| panic!("{what}: nothing sent"))
            .1
    };
    let first = |sent: Vec<MobilityHeaderRepr>, what: &str| {
        sent.into_iter()
            .next()
            .unwrap_or_else(|| panic!("{what}: no indication"))
    };
    let mut restarted = Core::new();
    cases.push((
        "LMA's unsolicited heartbeat response after a restart".to_string(),
        pick(restarted.restore(MAG_A), "restore"),
    ));
    cases.push((
        "LMA's BRI: a binding held back since the restart".to_string(),
        pick(restarted.timeout(121), "trigger 7"),
    ));
    let mut operator = Core::new();
    for (key, mn) in [
        (1, NAI),
        (2, "001010000000002@nai.epc.mnc001.mcc001.3gppnetwork.org"),
    ] {
        let pbu = operator.pbu(mn, HandoffIndicator::AttachmentOverNewInterface, key, 0);
        operator.feed(MAG_A, pbu, 0);
    }
    let per_node = lma::anchor::RevokeTarget::Binding {
        mn_id: NAI.into(),
        apn: Some(APN.into()),
    };
    cases.push((
        "LMA's BRI: the operator revokes one PDN connection".to_string(),
        first(revocations(operator.revoke(per_node, 1), MAG_A), "per node"),
    ));
    let global = lma::anchor::RevokeTarget::Mag(MAG_A.into());
    cases.push((
        "LMA's BRI: every binding of a MAG (G)".to_string(),
        first(revocations(operator.revoke(global, 2), MAG_A), "global"),
    ));
    // A Binding Error for an MH type it does not know.
    let unknown = {
        let mut bytes = MobilityHeaderRepr {
            payload_proto: IPPROTO_NONE,
            message: core.pbu(NAI, HandoffIndicator::AttachmentOverNewInterface, 1, 3),
        }
        .to_bytes(ChecksumContext::Skip);
        bytes[2] = 99;
        let from = lma_core::path(MAG_A);
        if let Some(sum) = mobility_header_checksum(from.receive_checksum(), &bytes) {
            bytes[4..6].copy_from_slice(&sum.to_be_bytes());
        }
        let mut out = Vec::new();
        core.lma.handle(
            lma::Input::Mobility {
                from,
                bytes: &bytes,
            },
            std::time::Instant::now(),
            &mut out,
        );
        out.into_iter()
            .find_map(|o| match o {
                lma::Output::Send { to, bytes } => {
                    MobilityHeaderRepr::parse(&bytes, to.send_checksum()).ok()
                }
                _ => None,
            })
            .expect("a Binding Error")
    };
    assert!(matches!(unknown.message, MobilityMessage::BindingError(_)));
    cases.push(("LMA's Binding Error, unknown MH type".to_string(), unknown));
    cases
}

// ---------------------------------------------------------------------------------------
// What tshark must show for a message: its own field names, our values

/// tshark field name -> the values it must show, in wire order.
type Fields = BTreeMap<&'static str, Vec<String>>;

fn put(fields: &mut Fields, name: &'static str, value: impl fmt::Display) {
    fields.entry(name).or_default().push(value.to_string());
}

fn flag(fields: &mut Fields, name: &'static str, set: bool) {
    put(fields, name, u8::from(set));
}

/// Wireshark shows a byte string as colon-separated lowercase hex.
fn hex_colons(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// How tshark prints a Timestamp option (RFC 5213 section 8.8, 48.16 fixed point since
/// the Unix epoch) with TZ=UTC: `Nov 14, 2023 22:13:20.500000000 UTC`.
fn tshark_time(timestamp: Timestamp) -> String {
    let secs = timestamp.0 >> 16;
    let nanos = (timestamp.0 & 0xffff) * 1_000_000_000 / 65_536;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {:>2}, {} {:02}:{:02}:{:02}.{:09} UTC",
        MONTHS[(month - 1) as usize],
        day,
        year,
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        nanos
    )
}

fn prefix(fields: &mut Fields, net: &Ipv6Net) {
    put(fields, "mip6.nemo.mnp.pfl", net.prefix_len());
    put(fields, "mip6.nemo.mnp.mnp", net.addr());
}

fn option_fields(fields: &mut Fields, option: &MobilityOption) {
    use MobilityOption as O;
    match option {
        O::BindingRefreshAdvice(interval) => put(fields, "mip6.bra.interval", interval),
        O::AlternateCareOfAddress(a) => put(fields, "mip6.acoa.acoa", a),
        O::NonceIndices { home, care_of } => {
            put(fields, "mip6.ni.hni", home);
            put(fields, "mip6.ni.cni", care_of);
        }
        O::BindingAuthorizationData(data) => put(fields, "mip6.bad.auth", hex_colons(data)),
        O::MobileNetworkPrefix(net) | O::HomeNetworkPrefix(net) => prefix(fields, net),
        O::MobileNodeIdentifier(MobileNodeIdentifier::Nai(nai)) => {
            put(fields, "mip6.mnid.subtype", 1);
            put(fields, "mip6.mnid.identifier", nai);
        }
        O::MobileNodeIdentifier(MobileNodeIdentifier::Other { sub_type, .. }) => {
            put(fields, "mip6.mnid.subtype", sub_type)
        }
        O::VendorSpecific(VendorSpecific::Other {
            vendor_id,
            sub_type,
            ..
        }) => {
            put(fields, "mip6.vsm.vendorId", vendor_id);
            put(fields, "mip6.vsm.subtype", sub_type);
        }
        O::VendorSpecific(VendorSpecific::ThreeGpp(option)) => {
            put(fields, "mip6.vsm.vendorId", 10415);
            put(fields, "mip6.3gpp.flag.m", 0);
            match option {
                ThreeGppOption::ProtocolConfigurationOptions(_) => {
                    put(fields, "mip6.vsm.subtype", 1)
                }
                ThreeGppOption::ErrorCode(code) => {
                    put(fields, "mip6.vsm.subtype", 2);
                    put(fields, "mip6.3gpp.spec_pmipv6_err_code", code);
                }
                ThreeGppOption::PdnGwIpAddress(IpAddr::V4(a)) => {
                    put(fields, "mip6.vsm.subtype", 3);
                    put(fields, "mip6.3gpp.pdn_gw_ipv4_addr", a);
                }
                ThreeGppOption::PdnGwIpAddress(IpAddr::V6(a)) => {
                    put(fields, "mip6.vsm.subtype", 3);
                    put(fields, "mip6.3gpp.pdn_gw_ipv6_addr", a);
                }
                ThreeGppOption::PdnTypeIndication { pdn_type, cause } => {
                    put(fields, "mip6.vsm.subtype", 6);
                    put(fields, "mip6.3gpp.pdn_type", u8::from(*pdn_type));
                    put(fields, "mip6.3gpp.pdn_ind_cause", cause);
                }
                ThreeGppOption::ChargingId(id) => {
                    put(fields, "mip6.vsm.subtype", 7);
                    put(fields, "mip6.3gpp.chg_id", id);
                }
                ThreeGppOption::Other { sub_type, .. } => put(fields, "mip6.vsm.subtype", sub_type),
            }
        }
        O::ServiceSelection(apn) => put(fields, "mip6.ss.identifier", apn),
        O::HandoffIndicator(hi) => put(fields, "mip6.hi", u8::from(*hi)),
        O::AccessTechnologyType(att) => put(fields, "mip6.att", u8::from(*att)),
        O::MobileNodeLinkLayerIdentifier(id) => put(fields, "mip6.mnlli.lli", hex_colons(id)),
        O::LinkLocalAddress(a) => put(fields, "mip6.lila_lla", a),
        O::Timestamp(t) => put(fields, "mip6.timestamp_tmp", tshark_time(*t)),
        O::RestartCounter(c) => put(fields, "mip6.rc", c),
        O::Ipv4HomeAddress {
            prefix_len,
            address,
            request_prefix,
        } => {
            put(fields, "mip6.ipv4ha.preflen", prefix_len);
            flag(fields, "mip6.ipv4ha.p_flag", *request_prefix);
            put(fields, "mip6.ipv4ha.ha", address);
        }
        O::Ipv4AddressAcknowledgement {
            status,
            prefix_len,
            address,
        } => {
            put(fields, "mip6.ipv4aa.sts", u8::from(*status));
            put(fields, "mip6.ipv4ha.preflen", prefix_len);
            put(fields, "mip6.ipv4ha.ha", address);
        }
        O::NatDetection {
            udp_encapsulation_required,
            refresh_time,
        } => {
            flag(fields, "mip6.natd.f_flag", *udp_encapsulation_required);
            put(fields, "mip6.natd.refresh_t", refresh_time);
        }
        O::Ipv4CareOfAddress(a) => put(fields, "mip6.ipv4coa.addr", a),
        O::GreKey(key) => put(fields, "mip6.gre_key", key.0),
        O::Ipv4HomeAddressRequest(net) => {
            put(fields, "mip6.ipv4ha.preflen", net.prefix_len());
            put(fields, "mip6.ipv4ha.ha", net.addr());
        }
        O::Ipv4HomeAddressReply { status, address } => {
            put(fields, "mip6.ipv4aa.sts", u8::from(*status));
            put(fields, "mip6.ipv4ha.preflen", address.prefix_len());
            put(fields, "mip6.ipv4ha.ha", address.addr());
        }
        O::Ipv4DefaultRouterAddress(a) => put(fields, "mip6.ipv4dra.dra", a),
        O::Ipv4DhcpSupportMode { server } => flag(fields, "mip6.ipv4dsm.s_flag", *server),
        O::Unknown { option_type, .. } => put(fields, "mip6.mobility_opt", option_type),
    }
}

/// The option type octet of `option` as it goes on the wire.
fn option_type(option: &MobilityOption) -> u8 {
    use MobilityOption as O;
    match option {
        O::BindingRefreshAdvice(_) => 2,
        O::AlternateCareOfAddress(_) => 3,
        O::NonceIndices { .. } => 4,
        O::BindingAuthorizationData(_) => 5,
        O::MobileNetworkPrefix(_) => 6,
        O::MobileNodeIdentifier(_) => 8,
        O::VendorSpecific(_) => 19,
        O::ServiceSelection(_) => 20,
        O::HomeNetworkPrefix(_) => 22,
        O::HandoffIndicator(_) => 23,
        O::AccessTechnologyType(_) => 24,
        O::MobileNodeLinkLayerIdentifier(_) => 25,
        O::LinkLocalAddress(_) => 26,
        O::Timestamp(_) => 27,
        O::RestartCounter(_) => 28,
        O::Ipv4HomeAddress { .. } => 29,
        O::Ipv4AddressAcknowledgement { .. } => 30,
        O::NatDetection { .. } => 31,
        O::Ipv4CareOfAddress(_) => 32,
        O::GreKey(_) => 33,
        O::Ipv4HomeAddressRequest(_) => 36,
        O::Ipv4HomeAddressReply { .. } => 37,
        O::Ipv4DefaultRouterAddress(_) => 38,
        O::Ipv4DhcpSupportMode { .. } => 39,
        O::Unknown { option_type, .. } => *option_type,
    }
}

/// The fields tshark must show for `repr` emitted as `bytes`, and its options' types.
fn expected(repr: &MobilityHeaderRepr, bytes: &[u8]) -> (Fields, Vec<u8>) {
    let mut f = Fields::new();
    put(&mut f, "mip6.proto", repr.payload_proto);
    put(&mut f, "mip6.hlen", bytes.len() / 8 - 1);
    put(&mut f, "mip6.mhtype", repr.mh_type());
    put(
        &mut f,
        "mip6.csum",
        format!("0x{:04x}", u16::from_be_bytes([bytes[4], bytes[5]])),
    );
    let options = match &repr.message {
        MobilityMessage::BindingUpdate(bu) => {
            let has = |bit| bu.flags.contains(bit);
            put(&mut f, "mip6.bu.seqnr", bu.sequence);
            flag(&mut f, "mip6.bu.a_flag", has(BuFlags::ACK));
            flag(&mut f, "mip6.bu.h_flag", has(BuFlags::HOME_REGISTRATION));
            flag(&mut f, "mip6.bu.l_flag", has(BuFlags::LINK_LOCAL));
            flag(&mut f, "mip6.bu.k_flag", has(BuFlags::KEY_MANAGEMENT));
            flag(&mut f, "mip6.bu.m_flag", has(BuFlags::MAP));
            flag(&mut f, "mip6.nemo.bu.r_flag", has(BuFlags::MOBILE_ROUTER));
            flag(&mut f, "mip6.bu.p_flag", has(BuFlags::PROXY));
            flag(&mut f, "mip6.bu.f_flag", has(BuFlags::FORCE_UDP));
            flag(&mut f, "mip6.bu.t_flag", has(BuFlags::TLV_HEADER));
            put(&mut f, "mip6.bu.lifetime", bu.lifetime.0);
            &bu.options
        }
        MobilityMessage::BindingAck(ba) => {
            let has = |bit| ba.flags.contains(bit);
            put(&mut f, "mip6.ba.status", u8::from(ba.status));
            flag(&mut f, "mip6.ba.k_flag", has(BaFlags::KEY_MANAGEMENT));
            flag(&mut f, "mip6.nemo.ba.r_flag", has(BaFlags::MOBILE_ROUTER));
            flag(&mut f, "mip6.ba.p_flag", has(BaFlags::PROXY));
            flag(&mut f, "mip6.ba.t_flag", has(BaFlags::TLV_HEADER));
            put(&mut f, "mip6.ba.seqnr", ba.sequence);
            put(&mut f, "mip6.ba.lifetime", ba.lifetime.0);
            &ba.options
        }
        MobilityMessage::BindingError(be) => {
            put(&mut f, "mip6.be.status", u8::from(be.status));
            put(&mut f, "mip6.be.haddr", be.home_address);
            &be.options
        }
        MobilityMessage::Heartbeat(hb) => {
            flag(&mut f, "mip6.hb.u_flag", hb.unsolicited);
            flag(&mut f, "mip6.hb.r_flag", hb.response);
            put(&mut f, "mip6.hb.seqnr", hb.sequence);
            &hb.options
        }
        MobilityMessage::BindingRevocation(br) => {
            put(&mut f, "mip6.bri_br.type", u8::from(br.revocation_type));
            put(&mut f, "mip6.bri_seqnr", br.sequence);
            match br.revocation_type {
                BindingRevocationType::Indication => {
                    put(&mut f, "mip6.bri_r.trigger", br.trigger_or_status);
                    flag(&mut f, "mip6.bri_ip", br.flags & BRI_P != 0);
                    flag(&mut f, "mip6.bri_ig", br.flags & BRI_G != 0);
                    flag(&mut f, "mip6.bri_iv", br.flags & BRI_V != 0);
                }
                _ => {
                    put(&mut f, "mip6.bri_status", br.trigger_or_status);
                    flag(&mut f, "mip6.bri_ap", br.flags & BRI_P != 0);
                    flag(&mut f, "mip6.bri_ag", br.flags & BRI_G != 0);
                    flag(&mut f, "mip6.bri_av", br.flags & BRI_V != 0);
                }
            }
            &br.options
        }
    };
    for option in options {
        option_fields(&mut f, option);
    }
    (f, options.iter().map(option_type).collect())
}

// ---------------------------------------------------------------------------------------
// Reading tshark's JSON with duplicate keys and their order kept

/// A JSON value whose objects keep every key, repeated ones included, in document order
/// (tshark's `-T json` repeats a key once per occurrence of a field).
#[derive(Debug)]
enum Node {
    Leaf(String),
    List(Vec<Node>),
    Object(Vec<(String, Node)>),
}

/// A small JSON reader for tshark's output: serde_json's `Value` would fold repeated keys
/// into one, and their order is what tells the options apart.
struct JsonReader<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> JsonReader<'a> {
    fn parse(text: &'a str) -> Result<Node, String> {
        let mut reader = JsonReader {
            text: text.as_bytes(),
            pos: 0,
        };
        let node = reader.value()?;
        reader.skip_space();
        if reader.pos != reader.text.len() {
            return Err(format!("trailing text at {}", reader.pos));
        }
        Ok(node)
    }

    fn skip_space(&mut self) {
        while self
            .text
            .get(self.pos)
            .is_some_and(|c| c.is_ascii_whitespace())
        {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.text.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at {}", c as char, self.pos))
        }
    }

    fn value(&mut self) -> Result<Node, String> {
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                let mut entries = Vec::new();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(Node::Object(entries));
                }
                loop {
                    let key = self.string()?;
                    self.expect(b':')?;
                    entries.push((key, self.value()?));
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(Node::Object(entries));
                        }
                        _ => return Err(format!("bad object at {}", self.pos)),
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(Node::List(items));
                }
                loop {
                    items.push(self.value()?);
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Node::List(items));
                        }
                        _ => return Err(format!("bad list at {}", self.pos)),
                    }
                }
            }
            Some(b'"') => Ok(Node::Leaf(self.string()?)),
            Some(_) => {
                // A number, true, false or null: kept as its text.
                let start = self.pos;
                while self
                    .text
                    .get(self.pos)
                    .is_some_and(|c| !b",}] \t\r\n".contains(c))
                {
                    self.pos += 1;
                }
                let word = String::from_utf8_lossy(&self.text[start..self.pos]);
                Ok(Node::Leaf(if word == "null" {
                    String::new()
                } else {
                    word.into_owned()
                }))
            }
            None => Err("unexpected end".into()),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            let c = *self.text.get(self.pos).ok_or("unterminated string")?;
            self.pos += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                b'\\' => {
                    let e = *self.text.get(self.pos).ok_or("unterminated escape")?;
                    self.pos += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = self
                                .text
                                .get(self.pos..self.pos + 4)
                                .ok_or("short \\u escape")?;
                            self.pos += 4;
                            let code = u32::from_str_radix(&String::from_utf8_lossy(hex), 16)
                                .map_err(|e| e.to_string())?;
                            let c = char::from_u32(code).unwrap_or('\u{fffd}');
                            out.extend_from_slice(c.to_string().as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                other => out.push(other),
            }
        }
    }
}

impl Node {
    fn entries(&self) -> &[(String, Node)] {
        match self {
            Node::Object(entries) => entries,
            _ => &[],
        }
    }

    /// The first value under `key`, at any depth.
    fn find(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Leaf(_) => None,
            Node::List(items) => items.iter().find_map(|n| n.find(key)),
            Node::Object(entries) => {
                entries
                    .iter()
                    .find_map(|(k, v)| if k == key { Some(v) } else { v.find(key) })
            }
        }
    }

    /// Every (key, leaf value) at any depth, in document order.
    fn leaves(&self, out: &mut Vec<(String, String)>) {
        self.leaves_under("", out)
    }

    fn leaves_under(&self, key: &str, out: &mut Vec<(String, String)>) {
        match self {
            Node::Leaf(v) => out.push((key.to_string(), v.clone())),
            Node::List(items) => items.iter().for_each(|n| n.leaves_under(key, out)),
            Node::Object(entries) => entries.iter().for_each(|(k, v)| v.leaves_under(k, out)),
        }
    }

    /// Every key at any depth, in document order, with its value.
    fn walk<'a>(&'a self, out: &mut Vec<(&'a str, &'a Node)>) {
        match self {
            Node::Leaf(_) => {}
            Node::List(items) => items.iter().for_each(|n| n.walk(out)),
            Node::Object(entries) => {
                for (k, v) in entries {
                    out.push((k, v));
                    v.walk(out);
                }
            }
        }
    }

    fn leaf(&self) -> Option<&str> {
        match self {
            Node::Leaf(v) => Some(v),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Independent checksum

/// RFC 1071 one's complement sum over `parts`, folded.
fn ones_complement_sum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u64;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for pair in &mut chunks {
            sum += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u64::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Whether the Mobility Header checksum verifies over the RFC 6275 section 6.1.1
/// pseudo-header of `source` and `destination` (IPv6 addresses, or over IPv4 the
/// IPv4-mapped ones, as the codec documents its reading of RFC 5844).
fn mh_checksum_ok(source: Ipv6Addr, destination: Ipv6Addr, mh: &[u8]) -> bool {
    let length = (mh.len() as u32).to_be_bytes();
    let next_header = [0, 0, 0, 135];
    ones_complement_sum(&[
        &source.octets(),
        &destination.octets(),
        &length,
        &next_header,
        mh,
    ]) == 0xffff
}

// ---------------------------------------------------------------------------------------
// The run

#[derive(Debug, Clone, Copy, PartialEq)]
enum Transport {
    Ipv6,
    Ipv4Udp,
}

struct Packet {
    name: String,
    transport: Transport,
    repr: MobilityHeaderRepr,
    bytes: Vec<u8>,
}

const MAG6: &str = "2001:db8:a::1";
const LMA6: &str = "2001:db8:b::1";
const MAG4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const LMA4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

/// Emits every case over both transports and writes them to `path`.
fn write_capture(path: &Path) -> Vec<Packet> {
    let mag6: Ipv6Addr = MAG6.parse().unwrap();
    let lma6: Ipv6Addr = LMA6.parse().unwrap();
    let mut writer = PcapWriter::create(path).expect("creating the pcap");
    let mut packets = Vec::new();
    for (i, (name, repr)) in cases().into_iter().enumerate() {
        repr.check_limits()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let time = UNIX_EPOCH + Duration::from_secs(UNIX_SECS) + Duration::from_millis(i as u64);
        let bytes = repr.to_bytes(ChecksumContext::Ipv6 {
            source: mag6,
            destination: lma6,
        });
        writer
            .write_ipv6_mh(time, mag6, lma6, &bytes)
            .expect("writing an IPv6 packet");
        packets.push(Packet {
            name: name.clone(),
            transport: Transport::Ipv6,
            repr: repr.clone(),
            bytes,
        });
        let bytes = repr.to_bytes(ChecksumContext::Ipv4Udp);
        writer
            .write_udp(
                time,
                SocketAddr::new(MAG4.into(), MH_UDP_PORT),
                SocketAddr::new(LMA4.into(), MH_UDP_PORT),
                &bytes,
            )
            .expect("writing an IPv4 UDP packet");
        packets.push(Packet {
            name,
            transport: Transport::Ipv4Udp,
            repr,
            bytes,
        });
    }
    writer.flush().expect("flushing the pcap");
    packets
}

/// Runs tshark on `path`: its JSON, parsed.
fn tshark_json(path: &Path) -> Vec<Node> {
    let output = match Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(["-V", "-T", "json"])
        .args([
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
        ])
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "tshark is not installed: run `bash scripts/setup.sh` (it installs Debian's \
             tshark); this oracle test cannot pass without it"
        ),
        Err(e) => panic!("running tshark: {e}"),
    };
    assert!(
        output.status.success(),
        "tshark failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let json = String::from_utf8(output.stdout).expect("tshark JSON is UTF-8");
    match JsonReader::parse(&json).expect("tshark JSON parses") {
        Node::List(packets) => packets,
        other => panic!("tshark JSON is not a list of packets: {other:?}"),
    }
}

/// The expert infos tshark may attach to a packet with an option it cannot know.
fn expert_allowed(repr: &MobilityHeaderRepr, message: &str) -> bool {
    let has_unknown = match &repr.message {
        MobilityMessage::BindingUpdate(bu) => bu
            .options
            .iter()
            .any(|o| matches!(o, MobilityOption::Unknown { .. })),
        _ => false,
    };
    has_unknown && message == "IE data not dissected yet"
}

/// Checks one decoded packet against what we sent; returns the problems found.
fn check_packet(packet: &Packet, decoded: &Node) -> Vec<String> {
    let mut problems = Vec::new();
    let layers = decoded.find("layers").expect("a tshark packet has layers");

    // No malformed mark, no expert info.
    let mut all = Vec::new();
    layers.walk(&mut all);
    for (key, node) in &all {
        if key.starts_with("_ws.malformed") {
            problems.push(format!("malformed: {node:?}"));
        }
        if *key == "_ws.expert" {
            let message = node
                .find("_ws.expert.message")
                .and_then(Node::leaf)
                .unwrap_or("?");
            if !expert_allowed(&packet.repr, message) {
                problems.push(format!("expert info: {message}"));
            }
        }
    }

    // The transport around the Mobility Header.
    let mut leaves = Vec::new();
    layers.leaves(&mut leaves);
    let value = |key: &str| -> Vec<&str> {
        leaves
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    match packet.transport {
        Transport::Ipv6 => {
            if value("ipv6.nxt") != ["135"] {
                problems.push(format!("ipv6.nxt {:?}", value("ipv6.nxt")));
            }
            let len = packet.bytes.len().to_string();
            if value("ipv6.plen") != [len.as_str()] {
                problems.push(format!("ipv6.plen {:?}", value("ipv6.plen")));
            }
            if !mh_checksum_ok(MAG6.parse().unwrap(), LMA6.parse().unwrap(), &packet.bytes) {
                problems.push("Mobility Header checksum (IPv6 pseudo-header) is wrong".into());
            }
        }
        Transport::Ipv4Udp => {
            for (key, want) in [
                ("ip.proto", "17"),
                ("ip.checksum.status", "1"),
                ("udp.dstport", "5436"),
                ("udp.checksum.status", "1"),
            ] {
                if value(key) != [want] {
                    problems.push(format!("{key} {:?}, want {want}", value(key)));
                }
            }
            if packet.bytes.get(4..6) != Some(&[0, 0][..]) {
                problems.push("Mobility Header checksum over UDP 5436 is not zero".into());
            }
        }
    }

    // The Mobility Header itself.
    let Some(mipv6) = layers.find("mipv6") else {
        problems.push("tshark found no Mobility Header".into());
        return problems;
    };
    let mut mh_leaves = Vec::new();
    mipv6.leaves(&mut mh_leaves);
    let (fields, option_types) = expected(&packet.repr, &packet.bytes);
    for (field, want) in &fields {
        let got: Vec<&str> = mh_leaves
            .iter()
            .filter(|(k, _)| k == field)
            .map(|(_, v)| v.as_str())
            .collect();
        if got != *want {
            problems.push(format!("{field}: tshark {got:?}, we sent {want:?}"));
        }
    }

    // The options tshark delimited: their types, pads aside, in order.
    let mut seen = Vec::new();
    if let Some(options) = mipv6.find("Mobility Options") {
        for (key, node) in options.entries() {
            if key == "mip6.options.pad1" || key == "mip6.options.padn" {
                continue;
            }
            if let Some(raw) = key.strip_prefix("mip6.options.") {
                if raw.ends_with("_tree") {
                    continue;
                }
                let first = node.leaf().and_then(|v| v.get(0..2));
                match first.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(t) => seen.push(t),
                    None => problems.push(format!("option {key} without its bytes")),
                }
            } else if let Some(t) = node.find("mip6.mobility_opt").and_then(Node::leaf) {
                seen.push(t.parse().unwrap_or(0));
            } else {
                problems.push(format!("unexpected entry in the options: {key}"));
            }
        }
    }
    if seen != option_types {
        problems.push(format!(
            "option types: tshark {seen:?}, we sent {option_types:?}"
        ));
    }
    problems
}

#[test]
fn tshark_decodes_every_message_and_option_as_we_meant_them() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = match std::env::var_os("MH_ORACLE_PCAP") {
        Some(path) => path.into(),
        None => dir.path().join("mh_oracle.pcap"),
    };
    let packets = write_capture(&path);
    let decoded = tshark_json(&path);
    assert_eq!(
        decoded.len(),
        packets.len(),
        "tshark decoded {} packets of the {} written",
        decoded.len(),
        packets.len()
    );

    let mut failures = Vec::new();
    for (packet, node) in packets.iter().zip(&decoded) {
        for problem in check_packet(packet, node) {
            failures.push(format!(
                "{} over {:?}: {problem}",
                packet.name, packet.transport
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "tshark disagrees with what we sent ({} problems; rerun with \
         MH_ORACLE_PCAP=/tmp/mh.pcap to keep the capture):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every option type the codec knows appears in the run: a new option added to the codec
/// without a case here fails this test.
#[test]
fn the_run_covers_every_option_type_and_message_type() {
    let mut option_types: Vec<u8> = Vec::new();
    let mut mh_types: Vec<u8> = Vec::new();
    let mut three_gpp_sub_types: Vec<u8> = Vec::new();
    let mut pdn_gw_families = Vec::new();
    for (_, repr) in cases() {
        mh_types.push(repr.mh_type());
        let (_, types) = expected(&repr, &repr.to_bytes(ChecksumContext::Skip));
        option_types.extend(types);
        let options = match &repr.message {
            MobilityMessage::BindingUpdate(m) => &m.options,
            MobilityMessage::BindingAck(m) => &m.options,
            MobilityMessage::BindingError(m) => &m.options,
            MobilityMessage::Heartbeat(m) => &m.options,
            MobilityMessage::BindingRevocation(m) => &m.options,
        };
        for option in options {
            if let MobilityOption::VendorSpecific(VendorSpecific::ThreeGpp(o)) = option {
                let sub_type = match o {
                    ThreeGppOption::ProtocolConfigurationOptions(_) => 1,
                    ThreeGppOption::ErrorCode(_) => 2,
                    ThreeGppOption::PdnGwIpAddress(a) => {
                        pdn_gw_families.push(a.is_ipv4());
                        3
                    }
                    ThreeGppOption::PdnTypeIndication { .. } => 6,
                    ThreeGppOption::ChargingId(_) => 7,
                    ThreeGppOption::Other { sub_type, .. } => *sub_type,
                };
                three_gpp_sub_types.push(sub_type);
            }
        }
    }
    for t in 2..=255u8 {
        if is_known_option_type(t) {
            assert!(
                option_types.contains(&t),
                "option type {t} is not in the run"
            );
        }
    }
    assert!(
        option_types.iter().any(|t| !is_known_option_type(*t)),
        "no unknown option in the run"
    );
    for t in [
        MH_TYPE_BINDING_UPDATE,
        MH_TYPE_BINDING_ACK,
        MH_TYPE_BINDING_ERROR,
        MH_TYPE_HEARTBEAT,
        MH_TYPE_BINDING_REVOCATION,
    ] {
        assert!(mh_types.contains(&t), "MH type {t} is not in the run");
    }
    for s in [1, 2, 3, 6, 7] {
        assert!(
            three_gpp_sub_types.contains(&s),
            "3GPP sub-type {s} is not in the run"
        );
    }
    assert!(pdn_gw_families.contains(&true) && pdn_gw_families.contains(&false));
}

#[test]
fn tshark_time_format() {
    assert_eq!(
        tshark_time(rfc5213_timestamp(UNIX_SECS, 0x8000)),
        "Nov 14, 2023 22:13:20.500000000 UTC"
    );
    assert_eq!(
        tshark_time(rfc5213_timestamp(951_782_400, 0)),
        "Feb 29, 2000 00:00:00.000000000 UTC"
    );
    assert_eq!(
        tshark_time(rfc5213_timestamp(0, 1)),
        "Jan  1, 1970 00:00:00.000015258 UTC"
    );
}

/// The ICMPv6 Parameter Problem the LMA core sends about a Mobility Header whose Payload
/// Proto is not 59 (RFC 6275 section 9.2): tshark decodes it as such, checksum good,
/// Pointer at the Payload Proto field of the quoted packet, nothing malformed.
#[test]
fn tshark_decodes_the_lma_parameter_problem() {
    let (mag6, lma6): (Ipv6Addr, Ipv6Addr) = (MAG6.parse().unwrap(), LMA6.parse().unwrap());
    let mut core = lma_core::Core::new();
    let mut bytes = MobilityHeaderRepr {
        payload_proto: IPPROTO_NONE,
        message: core.pbu(
            "proto@test",
            HandoffIndicator::AttachmentOverNewInterface,
            1,
            3,
        ),
    }
    .to_bytes(ChecksumContext::Ipv6 {
        source: mag6,
        destination: lma6,
    });
    bytes[0] = 6;
    let mut out = Vec::new();
    core.lma.handle(
        lma::Input::Mobility {
            from: lma::MagAddress::Ip6 {
                mag: mag6,
                local: lma6,
                kernel_checksum: true,
            },
            bytes: &bytes,
        },
        std::time::Instant::now(),
        &mut out,
    );
    let Some((from, to, message)) = out.into_iter().find_map(|o| match o {
        lma::Output::Icmpv6 { from, to, message } => Some((from, to, message)),
        _ => None,
    }) else {
        panic!("the LMA core sent no ICMPv6 message");
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("icmp6.pcap");
    let mut writer = PcapWriter::create(&path).expect("creating the pcap");
    let mut packet = pmip_common::icmp6::ipv6_header(
        from,
        to,
        pmip_common::icmp6::IPPROTO_ICMPV6,
        message.len(),
    );
    packet.extend_from_slice(&message);
    writer
        .write_ip(UNIX_EPOCH + Duration::from_secs(UNIX_SECS), &packet)
        .expect("writing the packet");
    writer.flush().expect("flushing the pcap");
    let output = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args(["-V", "-T", "json"])
        .output()
        .expect("running tshark (scripts/setup.sh installs it)");
    assert!(
        output.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("tshark JSON parses");
    let mut fields = Vec::new();
    integration_tests::tshark_fields::walk(&json, &mut fields);
    let values = |key| integration_tests::tshark_fields::values(&fields, key);
    assert_eq!(values("icmpv6.type").first(), Some(&"4"), "{fields:?}");
    assert_eq!(values("icmpv6.code").first(), Some(&"0"));
    assert_eq!(values("icmpv6.pointer").first(), Some(&"40"));
    // tshark always verifies the ICMPv6 checksum: status 1 is "Good".
    assert_eq!(
        values("icmpv6.checksum.status").first(),
        Some(&"1"),
        "checksum not good"
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!text.contains("_ws.malformed"), "malformed: {text}");
    assert!(!text.contains("_ws.expert"), "expert info: {text}");
}
