//! The visited gateway's costs (roaming, docs/attach.md), each beside a baseline measured
//! in the same run:
//!
//! * **GRE relay**: `Relay::relay_gre` of one 1400-octet IPv4 packet in keyed GRE
//!   (decapsulate, key lookup, peer and inner-source checks, re-encapsulate under the
//!   other key) beside the SGi plane's `DataPlane::uplink_gre` of the same packet
//!   (decapsulate, key lookup, checks, copy of the inner packet for the TUN).
//! * **Chained registration**: 1000 roaming UEs registered through the visited core
//!   (hold, its own PBU to the home core, the home PBA, the binding and the PBA to the
//!   ePDG: two PBUs and two PBAs encoded and parsed per UE) beside the same 1000 UEs
//!   registered directly at one core (one PBU, one PBA per UE).
//!
//! ```text
//! cargo bench -p lma --bench chain_relay
//! cargo bench -p lma --bench chain_relay -- --test      # smoke test, each case once
//! ```

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{BatchSize, Criterion, Throughput};
use lma::anchor::{ChainInfo, ChainSettings, MagLimits, RevocationSettings};
use lma::anchor::{MagFilter, UnauthorizedMag};
use lma::dataplane::relay::Relay;
use lma::dataplane::{DataPlane, DataPlaneSettings};
use lma::{Addresses, BindingInfo, Input, Lma, LmaSettings, MagAddress, Output};
use pmip_common::binding_update_list::MagConfig;
use pmip_common::mh::{
    AccessTechnologyType, BuFlags, GreKey, HandoffIndicator, Lifetime, MobilityHeaderRepr,
    MobilityMessage, ProxyBindingUpdate, ThreeGppOption, VendorSpecific, IPPROTO_NONE,
};
use pmip_common::tunnel::{GreRepr, ProtocolType};

const EPDG: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const VISITED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const VISITED_HOME_SIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const HOME: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
const UE: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
const UES: usize = 1000;

fn gre_packet() -> Vec<u8> {
    let mut inner = vec![0u8; 1400];
    inner[0] = 0x45;
    inner[2..4].copy_from_slice(&1400u16.to_be_bytes());
    inner[8] = 64;
    inner[9] = 17;
    inner[12..16].copy_from_slice(&UE.octets());
    inner[16..20].copy_from_slice(&[192, 0, 2, 200]);
    let mut gre = Vec::new();
    GreRepr::keyed(ProtocolType::Ipv4, 10).emit_with_payload(&inner, &mut gre);
    gre
}

fn epdg_path(local: Ipv4Addr) -> MagAddress {
    MagAddress::Udp4 {
        mag: SocketAddrV4::new(EPDG, 5436),
        local,
    }
}

fn bench_relay(c: &mut Criterion) {
    let packet = gre_packet();
    let mut relay = Relay::new();
    relay.apply(&Output::ChainUp(ChainInfo {
        id: first_binding_id(),
        mn_id: "001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org".into(),
        apn: Some("internet".into()),
        epdg: epdg_path(VISITED),
        uplink_key: GreKey(10),
        epdg_downlink_key: GreKey(500),
        home: MagAddress::Udp4 {
            mag: SocketAddrV4::new(HOME, 5436),
            local: VISITED_HOME_SIDE,
        },
        home_uplink_key: GreKey(900),
        home_downlink_key: GreKey(11),
        ipv4_home_address: Some(UE),
        home_network_prefix: None,
    }));
    let mut plane = DataPlane::new(DataPlaneSettings::default());
    plane.apply(&Output::BindingUp(BindingInfo {
        id: first_binding_id(),
        mag: epdg_path(VISITED),
        addresses: Addresses {
            home_network_prefix: None,
            ipv4_home_address: Some(UE),
            uplink_gre_key: Some(GreKey(10)),
        },
        downlink_gre_key: Some(GreKey(500)),
    }));
    assert!(relay.relay_gre(IpAddr::V4(EPDG), &packet).is_ok());
    assert!(plane.uplink_gre(IpAddr::V4(EPDG), &packet).is_ok());
    let mut g = c.benchmark_group("gre_1400B");
    g.throughput(Throughput::Bytes(packet.len() as u64));
    g.bench_function("baseline: SGi uplink_gre (decap + checks + copy)", |b| {
        b.iter(|| black_box(plane.uplink_gre(IpAddr::V4(EPDG), black_box(&packet))))
    });
    g.bench_function("relay_gre (decap + checks + re-encap)", |b| {
        b.iter(|| black_box(relay.relay_gre(IpAddr::V4(EPDG), black_box(&packet))))
    });
    g.finish();
}

/// The id of the first binding a fresh core makes (the relay and plane only carry it).
fn first_binding_id() -> lma::BindingId {
    let (mut core, t0) = core("10.0.0.0/16", &[EPDG]);
    let mut out = Vec::new();
    let bytes = pbu_bytes(0, None, epdg_path(VISITED));
    core.handle(
        Input::Mobility {
            from: epdg_path(VISITED),
            bytes: &bytes,
        },
        t0,
        &mut out,
    );
    let id = core.cache().iter().next().map(|(id, _)| id);
    id.expect("a binding")
}

fn core(pool: &str, mags: &[Ipv4Addr]) -> (Lma, Instant) {
    let t0 = Instant::now();
    let settings = LmaSettings {
        ipv4_pool: Some(pool.parse().expect("pool")),
        ipv4_default_router: None,
        ipv6_pool: Some("2001:db8::/40".parse().expect("pool")),
        max_lifetime: Lifetime::from_secs(3600),
        timestamp_window: Duration::from_secs(7),
        require_timestamp: false,
        require_gre_key: true,
        unauthorized_mag: UnauthorizedMag::Reject,
        allowed_mags: mags
            .iter()
            .map(|a| a.to_string().parse::<MagFilter>().expect("filter"))
            .collect(),
        restart_counter: 1,
        revocation: RevocationSettings::default(),
        limits: MagLimits::default(),
        heartbeat: None,
    };
    let wall: SystemTime = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    (Lma::new(settings, t0, wall).expect("core"), t0)
}

fn pbu_bytes(i: usize, home: Option<Ipv4Addr>, path: MagAddress) -> Vec<u8> {
    let pbu = ProxyBindingUpdate {
        sequence: 1,
        flags: BuFlags(BuFlags::ACK | BuFlags::HOME_REGISTRATION | BuFlags::PROXY),
        lifetime: Lifetime::from_secs(600),
        mn_id: format!("{:015}@nai.epc.mnc001.mcc001.3gppnetwork.org", i),
        apn: Some("internet".into()),
        home_network_prefixes: vec!["::/0".parse().expect("prefix")],
        handoff: HandoffIndicator::AttachmentOverNewInterface,
        access_technology: AccessTechnologyType::Ieee80211,
        timestamp: None,
        link_local_address: None,
        link_layer_id: None,
        gre_key: Some(GreKey(7000 + i as u32)),
        ipv4_home_address_request: Some("0.0.0.0/0".parse().expect("request")),
        ipv4_care_of_address: None,
        restart_counter: None,
        vendor: home
            .map(|h| VendorSpecific::ThreeGpp(ThreeGppOption::PdnGwIpAddress(IpAddr::V4(h))))
            .into_iter()
            .collect(),
        other: Vec::new(),
    };
    MobilityHeaderRepr {
        payload_proto: IPPROTO_NONE,
        message: MobilityMessage::BindingUpdate(pbu.to_binding_update()),
    }
    .to_bytes(path.receive_checksum())
}

/// Registers every UE through the visited core and the home core; returns PBAs sent to
/// the ePDG.
fn register_chained(visited: &mut Lma, home: &mut Lma, wire: &[Vec<u8>], now: Instant) -> usize {
    let mut answered = 0;
    let mut out = Vec::new();
    let mut home_out = Vec::new();
    let mut back = Vec::new();
    for bytes in wire {
        out.clear();
        visited.handle(
            Input::Mobility {
                from: epdg_path(VISITED),
                bytes,
            },
            now,
            &mut out,
        );
        for o in &out {
            if let Output::Send { to, bytes } = o {
                if to.ip() == IpAddr::V4(HOME) {
                    home_out.clear();
                    let from = MagAddress::Udp4 {
                        mag: SocketAddrV4::new(VISITED_HOME_SIDE, 5436),
                        local: HOME,
                    };
                    home.handle(Input::Mobility { from, bytes }, now, &mut home_out);
                    for h in &home_out {
                        if let Output::Send { bytes, .. } = h {
                            back.clear();
                            let from = MagAddress::Udp4 {
                                mag: SocketAddrV4::new(HOME, 5436),
                                local: VISITED_HOME_SIDE,
                            };
                            visited.handle(Input::Mobility { from, bytes }, now, &mut back);
                            answered += back
                                .iter()
                                .filter(|b| matches!(b, Output::Send { to, .. } if to.ip() == IpAddr::V4(EPDG)))
                                .count();
                        }
                    }
                }
            }
        }
    }
    answered
}

fn register_direct(home: &mut Lma, wire: &[Vec<u8>], now: Instant) -> usize {
    let mut out = Vec::new();
    let mut answered = 0;
    for bytes in wire {
        out.clear();
        home.handle(
            Input::Mobility {
                from: epdg_path(HOME),
                bytes,
            },
            now,
            &mut out,
        );
        answered += out
            .iter()
            .filter(|o| matches!(o, Output::Send { .. }))
            .count();
    }
    answered
}

fn chain_settings() -> ChainSettings {
    ChainSettings {
        home_gateways: vec!["198.51.100.3".parse().expect("filter")],
        own_addresses: vec![IpAddr::V4(VISITED), IpAddr::V4(VISITED_HOME_SIDE)],
        local_v4: Some(VISITED_HOME_SIDE),
        local_v6: None,
        home_port: 5436,
        registration: MagConfig {
            use_timestamps: false,
            ..MagConfig::default()
        },
    }
}

fn bench_registration(c: &mut Criterion) {
    let chained_wire: Vec<Vec<u8>> = (0..UES)
        .map(|i| pbu_bytes(i, Some(HOME), epdg_path(VISITED)))
        .collect();
    let direct_wire: Vec<Vec<u8>> = (0..UES)
        .map(|i| pbu_bytes(i, None, epdg_path(HOME)))
        .collect();
    // Check once that every UE is answered accepted both ways.
    {
        let (visited, now) = core("10.20.0.0/16", &[EPDG]);
        let mut visited = visited.with_chaining(chain_settings());
        let (mut home, _) = core("10.90.0.0/16", &[VISITED_HOME_SIDE]);
        assert_eq!(
            register_chained(&mut visited, &mut home, &chained_wire, now),
            UES
        );
        assert_eq!(visited.chain_counts(), (UES, 0));
        let (mut direct, now) = core("10.90.0.0/16", &[EPDG]);
        assert_eq!(register_direct(&mut direct, &direct_wire, now), UES);
    }
    let mut g = c.benchmark_group("register_1000_ues");
    g.sample_size(20);
    g.throughput(Throughput::Elements(UES as u64));
    g.bench_function("baseline: directly at one core", |b| {
        b.iter_batched(
            || core("10.90.0.0/16", &[EPDG]),
            |(mut home, now)| black_box(register_direct(&mut home, &direct_wire, now)),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("chained: visited core + home core", |b| {
        b.iter_batched(
            || {
                let (visited, now) = core("10.20.0.0/16", &[EPDG]);
                let (home, _) = core("10.90.0.0/16", &[VISITED_HOME_SIDE]);
                (visited.with_chaining(chain_settings()), home, now)
            },
            |(mut visited, mut home, now)| {
                black_box(register_chained(
                    &mut visited,
                    &mut home,
                    &chained_wire,
                    now,
                ))
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_relay(&mut c);
    bench_registration(&mut c);
    c.final_summary();
}
