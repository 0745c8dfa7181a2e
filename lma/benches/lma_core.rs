//! The LMA's sans-IO core handling Proxy Binding Updates for many distinct bindings
//! (1 000 000 by default): nanoseconds per PBU and bytes per binding, each beside a
//! baseline measured in the same run.
//!
//! ```text
//! cargo bench -p lma --bench lma_core                  # full run (about 2 minutes)
//! LMA_BENCH_BINDINGS=100000 cargo bench -p lma --bench lma_core
//! cargo bench -p lma --bench lma_core -- --test        # smoke test: 10 000 bindings, once
//! ```
//!
//! First a table measured by hand (one pass each, `Instant` around the loop only):
//!
//! * `handle` of a first PBU per binding (the core parses, checks, allocates a /64, an
//!   IPv4 address and an uplink GRE key, inserts the binding, arms its deadline, encodes
//!   the PBA), then of a refresh PBU per binding;
//! * baselines over the same wire bytes: parsing alone (`MobilityHeaderRepr::parse` +
//!   `ProxyBindingUpdate::try_from`), and parsing plus inserting the NAI into a plain
//!   `HashMap<String, u32>`;
//! * bytes per binding: what the core holds after N bindings minus the empty core,
//!   counted by a global allocator that adds up requested sizes (malloc's own overhead
//!   not included), with the process RSS growth beside it; baseline: the same NAIs in a
//!   `HashMap<String, u32>`.
//!
//! Then criterion repeats the first-PBU pass and the two baselines (10 samples, each a
//! whole pass over fresh state) for a statistically sound figure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, Throughput};
use lma::anchor::{MagFilter, UnauthorizedMag};
use lma::anchor::{MagLimits, RevocationSettings};
use lma::{Input, Lma, LmaSettings, MagAddress, Output};
use pmip_common::mh::{
    AccessTechnologyType, BuFlags, GreKey, HandoffIndicator, Lifetime, MobilityHeaderRepr,
    MobilityMessage, ProxyBindingUpdate, Timestamp, IPPROTO_NONE,
};

/// Counts the bytes currently allocated (requested sizes).
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is
// updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
            ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocated() -> usize {
    ALLOCATED.load(Ordering::Relaxed)
}

/// Resident set size in bytes, from /proc (0 where unavailable).
fn rss() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

const MAG: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

fn from() -> MagAddress {
    MagAddress::Udp4 {
        mag: SocketAddrV4::new(MAG, 5436),
        local: LOCAL,
    }
}

fn wall0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn settings() -> LmaSettings {
    LmaSettings {
        // 2^20 - 3 assignable addresses and 2^24 prefixes: room for a million.
        ipv4_pool: Some("10.0.0.0/12".parse().expect("pool")),
        ipv4_default_router: Some(Ipv4Addr::new(10, 0, 0, 1)),
        ipv6_pool: Some("2001:db8::/40".parse().expect("pool")),
        max_lifetime: Lifetime::from_secs(3600),
        timestamp_window: Duration::from_secs(7),
        require_timestamp: false,
        require_gre_key: true,
        unauthorized_mag: UnauthorizedMag::Reject,
        allowed_mags: vec!["192.0.2.0/24".parse::<MagFilter>().expect("filter")],
        restart_counter: 1,
        revocation: RevocationSettings::default(),
        limits: MagLimits::default(),
        heartbeat: None,
    }
}

/// N PBUs on the wire, back to back: `bytes[offsets[i]..offsets[i + 1]]`.
struct Wire {
    bytes: Vec<u8>,
    offsets: Vec<usize>,
}

impl Wire {
    fn get(&self, i: usize) -> &[u8] {
        &self.bytes[self.offsets[i]..self.offsets[i + 1]]
    }
    fn len(&self) -> usize {
        self.offsets.len() - 1
    }
}

fn nai(i: usize) -> String {
    format!(
        "{:015}@nai.epc.mnc001.mcc001.3gppnetwork.org",
        1_010_000_000_000u64 + i as u64
    )
}

/// The attach PBU of an ePDG for mobile node `i`; `refresh` gives the one a MAG sends
/// later (one second on, handoff state unchanged, still asking with `::/0` so that the
/// bytes need not know what was granted).
fn pbus(n: usize, refresh: bool) -> Wire {
    let mut wire = Wire {
        bytes: Vec::with_capacity(n * 176),
        offsets: vec![0],
    };
    let at = wall0() + Duration::from_secs(u64::from(refresh));
    for i in 0..n {
        let pbu = ProxyBindingUpdate {
            sequence: (i as u16).wrapping_add(u16::from(refresh)),
            flags: BuFlags(BuFlags::ACK | BuFlags::HOME_REGISTRATION | BuFlags::PROXY),
            lifetime: Lifetime::from_secs(3600),
            mn_id: nai(i),
            apn: Some("internet".into()),
            home_network_prefixes: vec!["::/0".parse().expect("prefix")],
            handoff: if refresh {
                HandoffIndicator::HandoffStateNotChanged
            } else {
                HandoffIndicator::AttachmentOverNewInterface
            },
            access_technology: AccessTechnologyType::Ieee80211,
            timestamp: Some(Timestamp::from_system_time(at)),
            link_local_address: None,
            link_layer_id: None,
            gre_key: Some(GreKey(i as u32 + 1)),
            ipv4_home_address_request: Some("0.0.0.0/0".parse().expect("request")),
            ipv4_care_of_address: None,
            restart_counter: None,
            vendor: Vec::new(),
            other: Vec::new(),
        };
        let message = MobilityHeaderRepr {
            payload_proto: IPPROTO_NONE,
            message: MobilityMessage::BindingUpdate(pbu.to_binding_update()),
        };
        wire.bytes
            .extend_from_slice(&message.to_bytes(from().receive_checksum()));
        wire.offsets.push(wire.bytes.len());
    }
    wire
}

fn new_lma(t0: Instant) -> Lma {
    Lma::new(settings(), t0, wall0()).expect("pools")
}

/// Feeds every PBU at virtual time `now`; returns how many were accepted.
fn feed(lma: &mut Lma, wire: &Wire, now: Instant) -> usize {
    let mut out: Vec<Output> = Vec::with_capacity(8);
    let before = lma.stats().pbus_accepted;
    for i in 0..wire.len() {
        lma.handle(
            Input::Mobility {
                from: from(),
                bytes: wire.get(i),
            },
            now,
            &mut out,
        );
        black_box(&out);
        out.clear();
    }
    (lma.stats().pbus_accepted - before) as usize
}

fn parse_only(wire: &Wire) -> usize {
    let context = from().receive_checksum();
    let mut ok = 0;
    for i in 0..wire.len() {
        if let Ok(MobilityHeaderRepr {
            message: MobilityMessage::BindingUpdate(bu),
            ..
        }) = MobilityHeaderRepr::parse(wire.get(i), context)
        {
            ok += usize::from(ProxyBindingUpdate::try_from(&bu).is_ok());
        }
    }
    black_box(ok)
}

fn parse_and_insert(wire: &Wire, map: &mut HashMap<String, u32>) {
    let context = from().receive_checksum();
    for i in 0..wire.len() {
        if let Ok(MobilityHeaderRepr {
            message: MobilityMessage::BindingUpdate(bu),
            ..
        }) = MobilityHeaderRepr::parse(wire.get(i), context)
        {
            if let Ok(pbu) = ProxyBindingUpdate::try_from(&bu) {
                map.insert(pbu.mn_id, i as u32);
            }
        }
    }
}

fn per_item(elapsed: Duration, n: usize) -> f64 {
    elapsed.as_nanos() as f64 / n as f64
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--test");
    let n: usize = std::env::var("LMA_BENCH_BINDINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 10_000 } else { 1_000_000 });

    let wire = pbus(n, false);
    let refresh = pbus(n, true);
    let t0 = Instant::now();
    println!(
        "LMA core, {n} distinct bindings, PBU of {} octets (IPv4/UDP checksum verified)",
        wire.get(0).len()
    );

    // Nanoseconds per PBU, by hand.
    let started = Instant::now();
    black_box(parse_only(&wire));
    let parse = started.elapsed();

    let heap0 = allocated();
    let rss0 = rss();
    let mut map = HashMap::new();
    let started = Instant::now();
    parse_and_insert(&wire, &mut map);
    let insert = started.elapsed();
    let map_bytes = allocated() - heap0;
    let map_rss = rss().saturating_sub(rss0);
    drop(map);

    let heap0 = allocated();
    let rss0 = rss();
    let mut lma = new_lma(t0);
    let empty = allocated() - heap0;
    let started = Instant::now();
    let accepted = feed(&mut lma, &wire, t0);
    let register = started.elapsed();
    assert_eq!(accepted, n, "every first PBU is accepted");
    assert_eq!(lma.cache().len(), n);
    let lma_bytes = allocated() - heap0 - empty;
    let lma_rss = rss().saturating_sub(rss0);

    let started = Instant::now();
    let refreshed = feed(&mut lma, &refresh, t0 + Duration::from_secs(1));
    let refresh_time = started.elapsed();
    assert_eq!(refreshed, n, "every refresh is accepted");
    drop(lma);

    println!();
    println!("| per PBU | ns |");
    println!("|---|---:|");
    println!(
        "| baseline: parse + `ProxyBindingUpdate::try_from` | {:.0} |",
        per_item(parse, n)
    );
    println!(
        "| baseline: parse + insert NAI into `HashMap<String, u32>` | {:.0} |",
        per_item(insert, n)
    );
    println!(
        "| `Lma::handle`, first PBU (new binding, PBA encoded) | {:.0} |",
        per_item(register, n)
    );
    println!(
        "| `Lma::handle`, refresh PBU (existing binding) | {:.0} |",
        per_item(refresh_time, n)
    );
    println!();
    println!("| per binding | allocator-counted bytes | RSS growth bytes |");
    println!("|---|---:|---:|");
    println!(
        "| baseline: `HashMap<String, u32>` of the NAIs | {:.0} | {:.0} |",
        map_bytes as f64 / n as f64,
        map_rss as f64 / n as f64
    );
    println!(
        "| LMA core (cache, indexes, pools, deadlines) | {:.0} | {:.0} |",
        lma_bytes as f64 / n as f64,
        lma_rss as f64 / n as f64
    );
    println!("(empty core: {empty} bytes)");
    println!();

    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(if smoke { 1 } else { 40 }))
        .configure_from_args();
    let mut group = criterion.benchmark_group("lma_core");
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(format!("baseline_parse/{n}"), |b| {
        b.iter(|| parse_only(&wire))
    });
    group.bench_function(format!("baseline_parse_hashmap_insert/{n}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut map = HashMap::new();
                let started = Instant::now();
                parse_and_insert(&wire, &mut map);
                total += started.elapsed();
                drop(black_box(map));
            }
            total
        })
    });
    group.bench_function(format!("handle_first_pbu/{n}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut lma = new_lma(t0);
                let started = Instant::now();
                feed(&mut lma, &wire, t0);
                total += started.elapsed();
                drop(black_box(lma));
            }
            total
        })
    });
    group.finish();
    criterion.final_summary();
}
