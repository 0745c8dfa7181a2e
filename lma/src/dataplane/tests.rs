use super::*;
use crate::anchor::DownReason;
use crate::binding_cache::Addresses;
use pmip_common::mh::GreKey;
use pmip_common::tunnel::{encapsulate, OuterHeader};
use proptest::prelude::*;
use std::net::SocketAddrV4;

const MAG4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const LMA4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const HOA: Ipv4Addr = Ipv4Addr::new(10, 45, 0, 7);
const PDN4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const UP: u32 = 0x1000_0001;
const DOWN: u32 = 0xabcd_0001;

fn hnp() -> Ipv6Net {
    "2001:db8:45:7::/64".parse().unwrap()
}

fn ue6() -> Ipv6Addr {
    "2001:db8:45:7::1".parse().unwrap()
}

fn pdn6() -> Ipv6Addr {
    "2001:db8:ffff::1".parse().unwrap()
}

fn info(slot: u32, up: u32, down: u32, mag: MagAddress) -> BindingInfo {
    BindingInfo {
        id: BindingId::for_test(slot),
        mag,
        addresses: Addresses {
            home_network_prefix: Some(hnp()),
            ipv4_home_address: Some(HOA),
            uplink_gre_key: Some(GreKey(up)),
        },
        downlink_gre_key: Some(GreKey(down)),
    }
}

fn mag4() -> MagAddress {
    MagAddress::Udp4 {
        mag: SocketAddrV4::new(MAG4, 5436),
        local: LMA4,
    }
}

fn settings() -> DataPlaneSettings {
    DataPlaneSettings {
        tunnel_mtu: 1500,
        icmp_source_v4: Some(Ipv4Addr::new(198, 51, 100, 254)),
        icmp_source_v6: Some("2001:db8:ffff::fe".parse().unwrap()),
    }
}

fn plane() -> DataPlane {
    let mut dp = DataPlane::new(settings());
    dp.apply(&Output::BindingUp(info(1, UP, DOWN, mag4())));
    dp
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, len: usize, df: bool) -> Vec<u8> {
    let mut p = vec![0u8; len.max(28)];
    p[0] = 0x45;
    let l = p.len() as u16;
    p[2..4].copy_from_slice(&l.to_be_bytes());
    if df {
        p[6] = 0x40;
    }
    p[8] = 64;
    p[9] = IPPROTO_ICMP;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20] = 8; // echo request
    p
}

fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len.max(48)];
    p[0] = 0x60;
    let l = (p.len() - 40) as u16;
    p[4..6].copy_from_slice(&l.to_be_bytes());
    p[6] = IPPROTO_ICMPV6;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[40] = 128; // echo request
    p
}

fn gre_from_mag4(key: u32, inner: &[u8]) -> Vec<u8> {
    let proto = ProtocolType::of_ip_packet(inner).unwrap();
    let mut out = Vec::new();
    let outer = OuterHeader {
        source: IpAddr::V4(MAG4),
        destination: IpAddr::V4(LMA4),
        hop_limit: 64,
    };
    encapsulate(&outer, &GreRepr::keyed(proto, key), inner, &mut out).unwrap();
    out
}

fn gre_only(key: u32, inner: &[u8]) -> Vec<u8> {
    let proto = ProtocolType::of_ip_packet(inner).unwrap();
    let mut out = Vec::new();
    GreRepr::keyed(proto, key).emit_with_payload(inner, &mut out);
    out
}

#[test]
fn uplink_ipv4_from_home_address_goes_to_sgi() {
    let mut dp = plane();
    let inner = ipv4(HOA, PDN4, 84, true);
    let a = dp.uplink_ip(&gre_from_mag4(UP, &inner)).unwrap();
    assert_eq!(a, Action::ToSgi(inner));
    assert_eq!(dp.stats().uplink_forwarded, 1);
}

#[test]
fn uplink_ipv6_from_prefix_over_ipv6_transport() {
    let mut dp = DataPlane::new(settings());
    let mag6: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let lma6: Ipv6Addr = "2001:db8::100".parse().unwrap();
    let m = MagAddress::Ip6 {
        mag: mag6,
        local: lma6,
        kernel_checksum: true,
    };
    dp.apply(&Output::BindingUp(info(1, UP, DOWN, m)));
    let inner = ipv6(ue6(), pdn6(), 100);
    let a = dp.uplink_gre(IpAddr::V6(mag6), &gre_only(UP, &inner));
    assert_eq!(a, Ok(Action::ToSgi(inner)));
    // And downlink goes back over IPv6 with the downlink key.
    let reply = ipv6(pdn6(), ue6(), 100);
    match dp.downlink(&reply).unwrap() {
        Action::ToMag { mag, local, gre } => {
            assert_eq!(mag, IpAddr::V6(mag6));
            assert_eq!(local, IpAddr::V6(lma6));
            let d = decapsulate_gre(&gre).unwrap();
            assert_eq!(d.key, DOWN);
            assert_eq!(d.inner, &reply[..]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn uplink_drop_reasons_are_counted() {
    let mut dp = plane();
    let good = ipv4(HOA, PDN4, 60, false);
    assert_eq!(dp.uplink_ip(&[0x45, 0, 0]), Err(DropReason::MalformedGre));
    assert_eq!(
        dp.uplink_ip(&gre_from_mag4(UP + 1, &good)),
        Err(DropReason::UnknownKey)
    );
    assert_eq!(
        dp.uplink_gre(
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)),
            &gre_only(UP, &good)
        ),
        Err(DropReason::WrongMag)
    );
    let forged = ipv4(Ipv4Addr::new(10, 45, 0, 8), PDN4, 60, false);
    assert_eq!(
        dp.uplink_ip(&gre_from_mag4(UP, &forged)),
        Err(DropReason::SpoofedSource)
    );
    let forged6 = ipv6("2001:db8:46::1".parse().unwrap(), pdn6(), 60);
    assert_eq!(
        dp.uplink_ip(&gre_from_mag4(UP, &forged6)),
        Err(DropReason::SpoofedSource)
    );
    // A GRE header saying IPv4 around a 10-octet "IPv4 packet".
    let mut short = vec![0x45u8; 10];
    short[0] = 0x45;
    assert_eq!(
        dp.uplink_gre(IpAddr::V4(MAG4), &gre_only(UP, &short)),
        Err(DropReason::MalformedInner)
    );
    let s = dp.stats();
    assert_eq!(
        (
            s.malformed_gre,
            s.unknown_key,
            s.wrong_mag,
            s.spoofed_source,
            s.malformed_inner,
            s.uplink_forwarded
        ),
        (1, 1, 1, 2, 1, 0)
    );
}

#[test]
fn downlink_ipv4_by_home_address() {
    let mut dp = plane();
    let reply = ipv4(PDN4, HOA, 84, true);
    match dp.downlink(&reply).unwrap() {
        Action::ToMag { mag, local, gre } => {
            assert_eq!((mag, local), (IpAddr::V4(MAG4), IpAddr::V4(LMA4)));
            let d = decapsulate_gre(&gre).unwrap();
            assert_eq!(d.key, DOWN);
            assert_eq!(d.gre.protocol_type, ProtocolType::Ipv4);
            assert_eq!(d.inner, &reply[..]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(dp.stats().downlink_forwarded, 1);
}

#[test]
fn downlink_ipv6_by_prefix_over_ipv4_transport() {
    let mut dp = plane();
    let to: Ipv6Addr = "2001:db8:45:7:aaaa::9".parse().unwrap();
    let reply = ipv6(pdn6(), to, 100);
    assert!(matches!(dp.downlink(&reply), Ok(Action::ToMag { .. })));
}

#[test]
fn downlink_drop_reasons_are_counted() {
    let mut dp = plane();
    assert_eq!(dp.downlink(&[]), Err(DropReason::MalformedDownlink));
    assert_eq!(dp.downlink(&[0x45; 12]), Err(DropReason::MalformedDownlink));
    assert_eq!(dp.downlink(&[0x20; 60]), Err(DropReason::MalformedDownlink));
    assert_eq!(
        dp.downlink(&ipv4(PDN4, Ipv4Addr::new(10, 45, 0, 8), 60, false)),
        Err(DropReason::NoBinding)
    );
    assert_eq!(
        dp.downlink(&ipv6(pdn6(), "2001:db8:45:8::1".parse().unwrap(), 60)),
        Err(DropReason::NoBinding)
    );
    let s = dp.stats();
    assert_eq!((s.malformed_downlink, s.no_binding), (3, 2));
}

#[test]
fn too_big_ipv4_with_df_gets_fragmentation_needed() {
    let mut dp = plane();
    // 1500 - 20 (outer IPv4) - 8 (keyed GRE) = 1472.
    assert!(matches!(
        dp.downlink(&ipv4(PDN4, HOA, 1472, true)),
        Ok(Action::ToMag { .. })
    ));
    let big = ipv4(PDN4, HOA, 1473, true);
    let Ok(Action::ToSgi(icmp)) = dp.downlink(&big) else {
        panic!("expected an ICMP error");
    };
    assert_eq!(icmp.len(), 576);
    assert_eq!(&icmp[12..16], &[198, 51, 100, 254]);
    assert_eq!(&icmp[16..20], &PDN4.octets());
    assert_eq!(checksum_fold(checksum_add(0, &icmp[..20])), 0);
    assert_eq!((icmp[20], icmp[21]), (3, 4));
    assert_eq!(u16::from_be_bytes([icmp[26], icmp[27]]), 1472);
    assert_eq!(checksum_fold(checksum_add(0, &icmp[20..])), 0);
    assert_eq!(&icmp[28..], &big[..548]);
    assert_eq!(dp.stats().too_big_icmp_sent, 1);
}

#[test]
fn too_big_ipv4_without_df_is_tunnelled_and_an_icmp_error_is_dropped() {
    let mut dp = plane();
    let big = ipv4(PDN4, HOA, 1600, false);
    match dp.downlink(&big) {
        Ok(Action::ToMag { gre, .. }) => {
            assert_eq!(decapsulate_gre(&gre).unwrap().inner, &big[..]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(dp.stats().too_big_outer_fragmented, 1);
    let mut err = ipv4(PDN4, HOA, 1600, true);
    err[20] = 3; // destination unreachable
    assert_eq!(dp.downlink(&err), Err(DropReason::TooBig));
    let mut dp = DataPlane::new(DataPlaneSettings {
        icmp_source_v4: None,
        ..settings()
    });
    dp.apply(&Output::BindingUp(info(1, UP, DOWN, mag4())));
    assert_eq!(
        dp.downlink(&ipv4(PDN4, HOA, 1600, true)),
        Err(DropReason::TooBig)
    );
    assert_eq!(dp.stats().too_big_dropped, 1);
}

#[test]
fn too_big_ipv6_gets_packet_too_big() {
    let mut dp = DataPlane::new(DataPlaneSettings {
        tunnel_mtu: 1400,
        ..settings()
    });
    dp.apply(&Output::BindingUp(info(1, UP, DOWN, mag4())));
    let big = ipv6(pdn6(), ue6(), 1373);
    let Ok(Action::ToSgi(icmp)) = dp.downlink(&big) else {
        panic!("expected Packet Too Big");
    };
    assert_eq!(icmp.len(), 1280);
    assert_eq!(&icmp[24..40], &pdn6().octets());
    assert_eq!(icmp[40], 2);
    assert_eq!(
        u32::from_be_bytes([icmp[44], icmp[45], icmp[46], icmp[47]]),
        1372
    );
    let mut sum = checksum_add(0, &icmp[8..40]);
    sum = checksum_add(sum, &(1240u32).to_be_bytes());
    sum = checksum_add(sum, &[0, 0, 0, 58]);
    assert_eq!(checksum_fold(checksum_add(sum, &icmp[40..])), 0);
    // An ICMPv6 error is never answered with another.
    let mut err = big.clone();
    err[40] = 1;
    assert_eq!(dp.downlink(&err), Err(DropReason::TooBig));
}

#[test]
fn packet_too_big_mtu_never_below_1280() {
    let mut dp = DataPlane::new(DataPlaneSettings {
        tunnel_mtu: 1000,
        ..settings()
    });
    dp.apply(&Output::BindingUp(info(1, UP, DOWN, mag4())));
    let Ok(Action::ToSgi(icmp)) = dp.downlink(&ipv6(pdn6(), ue6(), 1200)) else {
        panic!("expected Packet Too Big");
    };
    assert_eq!(
        u32::from_be_bytes([icmp[44], icmp[45], icmp[46], icmp[47]]),
        1280
    );
}

#[test]
fn binding_down_removes_routes_and_refresh_replaces_them() {
    let mut dp = plane();
    // Handover: same binding, new MAG and new keys.
    let other = MagAddress::Udp4 {
        mag: SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 5436),
        local: LMA4,
    };
    dp.apply(&Output::BindingUp(info(1, UP + 5, DOWN + 5, other)));
    assert_eq!(dp.len(), 1);
    let inner = ipv4(HOA, PDN4, 60, false);
    assert_eq!(
        dp.uplink_ip(&gre_from_mag4(UP, &inner)),
        Err(DropReason::UnknownKey)
    );
    match dp.downlink(&ipv4(PDN4, HOA, 60, false)) {
        Ok(Action::ToMag { mag, gre, .. }) => {
            assert_eq!(mag, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)));
            assert_eq!(decapsulate_gre(&gre).unwrap().key, DOWN + 5);
        }
        other => panic!("{other:?}"),
    }
    dp.apply(&Output::BindingDown {
        binding: info(1, UP + 5, DOWN + 5, other),
        reason: DownReason::Expired,
    });
    assert!(dp.is_empty());
    assert_eq!(
        dp.downlink(&ipv4(PDN4, HOA, 60, false)),
        Err(DropReason::NoBinding)
    );
}

#[test]
fn a_reused_uplink_key_takes_the_routes_of_its_old_holder() {
    let mut dp = plane();
    let mut second = info(2, UP, DOWN + 1, mag4());
    second.addresses.ipv4_home_address = Some(Ipv4Addr::new(10, 45, 0, 9));
    second.addresses.home_network_prefix = Some("2001:db8:45:9::/64".parse().unwrap());
    dp.apply(&Output::BindingUp(second));
    assert_eq!(dp.len(), 1);
    assert_eq!(
        dp.downlink(&ipv4(PDN4, HOA, 60, false)),
        Err(DropReason::NoBinding)
    );
    assert_eq!(
        dp.downlink(&ipv6(pdn6(), ue6(), 60)),
        Err(DropReason::NoBinding)
    );
    assert!(matches!(
        dp.downlink(&ipv4(PDN4, Ipv4Addr::new(10, 45, 0, 9), 60, false)),
        Ok(Action::ToMag { .. })
    ));
    // The old holder going down leaves the new one alone.
    dp.apply(&Output::BindingDown {
        binding: info(1, UP, DOWN, mag4()),
        reason: DownReason::Deregistered,
    });
    assert_eq!(dp.len(), 1);
    dp.apply(&Output::BindingDown {
        binding: second,
        reason: DownReason::Deregistered,
    });
    assert!(dp.is_empty());
}

#[test]
fn binding_without_keys_is_not_installed() {
    let mut dp = DataPlane::new(settings());
    let mut i = info(1, UP, DOWN, mag4());
    i.downlink_gre_key = None;
    dp.apply(&Output::BindingUp(i));
    assert!(dp.is_empty());
    assert_eq!(dp.stats().bindings_without_keys, 1);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let mut dp = plane();
        let _ = dp.uplink_ip(&bytes);
        let _ = dp.uplink_gre(IpAddr::V4(MAG4), &bytes);
        let _ = dp.downlink(&bytes);
    }

    #[test]
    fn arbitrary_inner_behind_valid_gre_never_panics(
        tail in proptest::collection::vec(any::<u8>(), 0..1600),
        v6 in any::<bool>(),
    ) {
        let mut dp = plane();
        let mut inner = tail.clone();
        if inner.is_empty() { inner.push(0); }
        inner[0] = (inner[0] & 0x0f) | if v6 { 0x60 } else { 0x40 };
        let _ = dp.uplink_gre(IpAddr::V4(MAG4), &gre_only(UP, &inner));
        let _ = dp.downlink(&inner);
    }
}
