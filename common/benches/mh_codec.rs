//! Mobility Header codec: Proxy Binding Update and Acknowledgement, encode and decode,
//! each beside a baseline measured in the same run.
//!
//! Run: `cargo bench -p pmip-common --bench mh_codec`. Figures go to BENCHMARKS.md,
//! section "Mobility Header codec".
//!
//! Every group holds the baselines and the codec operations for one message:
//!
//! * `baseline/copy`: `copy_from_slice` of the message's wire bytes into a buffer (the
//!   least any encoder or decoder must do: touch every octet once);
//! * `baseline/to_vec`: the same copy into a fresh `Vec` (one allocation, as `to_bytes`);
//! * `baseline/checksum`: the Mobility Header checksum over the bytes alone
//!   ([`verify_checksum`]), the part of encoding and decoding that is pure arithmetic;
//! * `emit`: [`MobilityHeaderRepr::emit`] into a reused buffer, checksum included;
//! * `to_bytes`: [`MobilityHeaderRepr::to_bytes`] (sizing pass, allocation, emit);
//! * `parse`: [`MobilityHeaderRepr::parse`] with checksum verification (what a receiver
//!   does first);
//! * `parse+proxy`: `parse` then `ProxyBindingUpdate::try_from` /
//!   `ProxyBindingAck::try_from`, the typed form the LMA's and MAG's logic use;
//! * `proxy+to_bytes` (encode side): `to_message` from the typed proxy form, then
//!   `to_bytes` (what the MAG and the LMA do to send).
//!
//! Over the IPv4 transport (UDP 5436), the lab's default; its checksum costs the same as
//! the IPv6 one.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use pmip_common::mh::*;

const CONTEXT: ChecksumContext = ChecksumContext::Ipv4Udp;

const NAI: &str = "0234150999999999@nai.epc.mnc015.mcc234.3gppnetwork.org";
const APN: &str = "internet.mnc015.mcc234.gprs";

/// The PBU an ePDG sends at attach (RFC 5213 section 6.9.1.1; docs/attach.md, step 5).
fn pbu() -> ProxyBindingUpdate {
    ProxyBindingUpdate {
        sequence: 4242,
        flags: BuFlags(BuFlags::ACK | BuFlags::PROXY),
        lifetime: Lifetime(900),
        mn_id: NAI.into(),
        apn: Some(APN.into()),
        home_network_prefixes: vec!["::/0".parse().unwrap()],
        handoff: HandoffIndicator::AttachmentOverNewInterface,
        access_technology: AccessTechnologyType::Ieee80211,
        timestamp: Some(Timestamp(0x0000_6553_f100_8000)),
        link_local_address: None,
        link_layer_id: None,
        gre_key: Some(GreKey(0x0102_0304)),
        ipv4_home_address_request: Some("0.0.0.0/0".parse().unwrap()),
        ipv4_care_of_address: None,
        restart_counter: None,
        vendor: vec![VendorSpecific::ThreeGpp(
            ThreeGppOption::PdnTypeIndication {
                pdn_type: PdnType::Ipv4v6,
                cause: 0,
            },
        )],
        other: vec![],
    }
}

/// The LMA's accepting PBA.
fn pba() -> ProxyBindingAck {
    ProxyBindingAck {
        status: BindingAckStatus::Accepted,
        sequence: 4242,
        lifetime: Lifetime(900),
        mn_id: Some(NAI.into()),
        apn: Some(APN.into()),
        home_network_prefixes: vec!["2001:db8:1:2::/64".parse().unwrap()],
        handoff: Some(HandoffIndicator::AttachmentOverNewInterface),
        access_technology: Some(AccessTechnologyType::Ieee80211),
        timestamp: Some(Timestamp(0x0000_6553_f100_8000)),
        link_local_address: None,
        link_layer_id: None,
        gre_key: Some(GreKey(0xfedc_ba98)),
        ipv4_home_address_reply: Some((
            Ipv4HomeAddressReplyStatus::Success,
            "10.45.0.7/32".parse().unwrap(),
        )),
        ipv4_default_router: Some(Ipv4Addr::new(10, 45, 0, 1)),
        restart_counter: None,
        vendor: vec![VendorSpecific::ThreeGpp(ThreeGppOption::ChargingId(
            0xdead_beef,
        ))],
        other: vec![],
    }
}

fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, bytes: usize) {
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
        .throughput(Throughput::Bytes(bytes as u64));
}

/// The baselines and the message-independent operations of a group.
fn common(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    message: &MobilityHeaderRepr,
    wire: &[u8],
) {
    let mut buffer = vec![0u8; wire.len()];
    group.bench_function("baseline/copy", |b| {
        b.iter(|| buffer.copy_from_slice(black_box(wire)))
    });
    group.bench_function("baseline/to_vec", |b| b.iter(|| black_box(wire).to_vec()));
    group.bench_function("baseline/checksum", |b| {
        b.iter(|| verify_checksum(CONTEXT, black_box(wire)))
    });
    group.bench_function("emit", |b| {
        b.iter(|| black_box(message).emit(&mut buffer, CONTEXT))
    });
    group.bench_function("to_bytes", |b| {
        b.iter(|| black_box(message).to_bytes(CONTEXT))
    });
    group.bench_function("parse", |b| {
        b.iter(|| MobilityHeaderRepr::parse(black_box(wire), CONTEXT))
    });
}

fn pbu_bench(c: &mut Criterion) {
    let pbu = pbu();
    let message = pbu.to_message();
    let wire = message.to_bytes(CONTEXT);
    // The encoder and decoder must agree before their speed means anything.
    let parsed = MobilityHeaderRepr::parse(&wire, CONTEXT).expect("the PBU parses");
    assert_eq!(parsed, message);
    let MobilityMessage::BindingUpdate(bu) = &parsed.message else {
        panic!("not a Binding Update");
    };
    assert_eq!(ProxyBindingUpdate::try_from(bu).expect("a valid PBU"), pbu);

    let mut group = c.benchmark_group(format!("mh_codec/pbu_{}B", wire.len()));
    configure(&mut group, wire.len());
    common(&mut group, &message, &wire);
    group.bench_function("parse+proxy", |b| {
        b.iter(|| {
            let repr = MobilityHeaderRepr::parse(black_box(&wire), CONTEXT).ok()?;
            match &repr.message {
                MobilityMessage::BindingUpdate(bu) => ProxyBindingUpdate::try_from(bu).ok(),
                _ => None,
            }
        })
    });
    group.bench_function("proxy+to_bytes", |b| {
        b.iter(|| black_box(&pbu).to_message().to_bytes(CONTEXT))
    });
    group.finish();
}

fn pba_bench(c: &mut Criterion) {
    let pba = pba();
    let message = pba.to_message();
    let wire = message.to_bytes(CONTEXT);
    let parsed = MobilityHeaderRepr::parse(&wire, CONTEXT).expect("the PBA parses");
    assert_eq!(parsed, message);
    let MobilityMessage::BindingAck(ba) = &parsed.message else {
        panic!("not a Binding Acknowledgement");
    };
    assert_eq!(ProxyBindingAck::try_from(ba).expect("a valid PBA"), pba);

    let mut group = c.benchmark_group(format!("mh_codec/pba_{}B", wire.len()));
    configure(&mut group, wire.len());
    common(&mut group, &message, &wire);
    group.bench_function("parse+proxy", |b| {
        b.iter(|| {
            let repr = MobilityHeaderRepr::parse(black_box(&wire), CONTEXT).ok()?;
            match &repr.message {
                MobilityMessage::BindingAck(ba) => ProxyBindingAck::try_from(ba).ok(),
                _ => None,
            }
        })
    });
    group.bench_function("proxy+to_bytes", |b| {
        b.iter(|| black_box(&pba).to_message().to_bytes(CONTEXT))
    });
    group.finish();
}

criterion_group!(benches, pbu_bench, pba_bench);
criterion_main!(benches);
