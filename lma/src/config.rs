//! The LMA's configuration, in the pattern every node follows (`pmip_node::config`):
//! [`ConfigLayer`] is both the `lma.toml` file (serde, unknown fields refused) and the
//! command-line flags that override it (clap, flattened into the binary's command line);
//! [`resolve`] checks the two layers into the settings the sans-IO core
//! ([`LmaSettings`]) and the socket drivers use. Every error names the field and where
//! its value came from (the file or the flag). `lma.example.toml` documents each field.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use pmip_common::mh::Lifetime;
use pmip_node::config::{Layer, Layers};
use pmip_node::pick;
use serde::Deserialize;

pub use pmip_node::config::ConfigError;

use crate::anchor::{ChainSettings, LmaSettings, MagLimits, RevocationSettings};
// The core owns these; they are named here too, where the settings are read.
pub use crate::anchor::{MagFilter, UnauthorizedMag};
use crate::pools::{Ipv4Pool, PrefixPool};
use pmip_common::heartbeat::HeartbeatSettings;

/// The largest lifetime the 16-bit field (units of 4 s) carries.
pub const MAX_LIFETIME_SECS: u32 = u16::MAX as u32 * 4;

/// One layer of settings: the file, or the flags over it. Every field is optional so
/// that a flag given overrides the file and a flag not given leaves it alone. The doc
/// comments are the flags' `--help`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ConfigLayer {
    /// IPv4 address and UDP port for the Mobility Header over IPv4 (RFC 5844; 5436 by
    /// convention), e.g. 192.0.2.1:5436. Must be a specific address, not 0.0.0.0.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen_v4: Option<SocketAddr>,

    /// IPv6 address for the raw Mobility Header socket (next header 135; needs root or
    /// CAP_NET_RAW). The kernel computes and verifies the MH checksum.
    #[arg(long, value_name = "ADDR")]
    pub listen_v6: Option<Ipv6Addr>,

    /// IPv4 network whose host addresses are assigned as IPv4 home addresses.
    #[arg(long, value_name = "CIDR")]
    pub ipv4_pool: Option<Ipv4Net>,

    /// IPv4 default router reported to MAGs and never assigned [default: first host of
    /// the IPv4 pool].
    #[arg(long, value_name = "ADDR")]
    pub ipv4_default_router: Option<Ipv4Addr>,

    /// IPv6 prefix (/64 or shorter) from which one /64 home network prefix is assigned
    /// per binding.
    #[arg(long, value_name = "CIDR")]
    pub ipv6_pool: Option<Ipv6Net>,

    /// Longest binding lifetime granted, in seconds [default: 3600].
    #[arg(long, value_name = "SECS")]
    pub max_lifetime_secs: Option<u32>,

    /// How far a PBU Timestamp may be from this clock before TIMESTAMP_MISMATCH, in
    /// milliseconds [default: 300].
    #[arg(long, value_name = "MS")]
    pub timestamp_window_ms: Option<u64>,

    /// Refuse PBUs that carry no Timestamp option [default: false].
    #[arg(long, value_name = "BOOL")]
    pub require_timestamp: Option<bool>,

    /// Refuse PBUs that carry no GRE Key option, with GRE_KEY_OPTION_REQUIRED
    /// [default: true].
    #[arg(long, value_name = "BOOL")]
    pub require_gre_key: Option<bool>,

    /// What a PBU from a MAG not in the allowed list gets: reject (status 154) or drop
    /// (no answer) [default: reject].
    #[arg(long, value_enum, value_name = "WHAT")]
    pub unauthorized_mag: Option<UnauthorizedMag>,

    /// A MAG address or prefix allowed to register bindings; repeat for several. Given
    /// at all, the flags replace the file's allowed_mags list.
    #[arg(long = "allowed-mag", value_name = "ADDR|CIDR")]
    pub allowed_mags: Option<Vec<MagFilter>>,

    /// File holding the RFC 5847 restart counter, incremented at every start
    /// [default: none; the counter is the start time in seconds].
    #[arg(long, value_name = "FILE")]
    pub restart_counter_file: Option<PathBuf>,

    /// Receive buffer of each socket, in bytes [default: 4194304].
    #[arg(long, value_name = "BYTES")]
    pub socket_buffer_bytes: Option<usize>,

    /// Address and port of the admin HTTP interface (JSON: `GET /bindings`, `POST
    /// /revoke`; see lma/README.md), e.g. 127.0.0.1:9436 [default: none, no interface].
    #[arg(long, value_name = "ADDR:PORT")]
    pub admin_listen: Option<SocketAddr>,

    /// Rejected PBUs are logged one line for the first of a MAG in an interval, then
    /// once per interval per MAG as a count by status (`lma::reject_log`): the
    /// interval, in seconds [default: 10].
    #[arg(long, value_name = "SECS")]
    pub reject_log_interval_secs: Option<u64>,

    /// The SGi data plane; without it the LMA runs signaling only.
    #[arg(skip)]
    pub sgi: Option<SgiConfig>,

    /// The visited role: chaining to home gateways (`lma::anchor` chain module doc).
    #[arg(skip)]
    pub chaining: Option<ChainingConfig>,
    /// Per-MAG limits (`lma::anchor` limits module doc).
    #[arg(skip)]
    pub mag_limits: Option<MagLimitsConfig>,
    /// Binding revocation (RFC 5846; `lma::anchor` revocation module doc).
    #[arg(skip)]
    pub revocation: Option<RevocationConfig>,
    /// RFC 5847 heartbeats (`lma::anchor` restoration module doc).
    #[arg(skip)]
    pub heartbeat: Option<HeartbeatConfig>,
}

/// The `[heartbeat]` table: RFC 5847 section 5's variables. Heartbeats go to every MAG
/// holding a binding and, with `[chaining]`, to every home gateway holding one of ours.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// Send heartbeats at all (requests are answered either way). Default true.
    pub enabled: Option<bool>,
    /// HEARTBEAT_INTERVAL in seconds. Default 60; under 30 or over 3600 only with a
    /// warning (RFC 5847 section 5: SHOULD NOT).
    pub interval_secs: Option<u64>,
    /// MISSING_HEARTBEATS_ALLOWED. Default 3.
    pub missing_allowed: Option<u32>,
}

/// The `[mag_limits]` table: how much of the pools and of the binding cache one MAG may
/// hold, and how fast it may create bindings. Refusals are status 130.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MagLimitsConfig {
    /// Percent (1 to 100) of each pool and of `max_bindings` one MAG (source address)
    /// may hold. Default 100: no share.
    pub share_percent: Option<u8>,
    /// Bindings the cache holds at most. Default 16777216.
    pub max_bindings: Option<usize>,
    /// New bindings per second per MAG (a token bucket). Default 0: no limit.
    pub new_bindings_per_sec: Option<u32>,
    /// New bindings a MAG may create at once. Default: one second's worth.
    pub burst: Option<u32>,
    /// Refusals are summed and logged once per this many seconds. Default 10.
    pub report_interval_secs: Option<u64>,
}

/// The `[revocation]` table: RFC 5846 section 11's variables, and the MAGs allowed to
/// revoke all their bindings at once.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationConfig {
    /// InitMINDelayBRIs, in ms: the first wait for an acknowledgement. Default 1000, at
    /// least 500.
    pub initial_timeout_ms: Option<u64>,
    /// MAX_BRACK_TIMEOUT, in ms: the wait doubles up to it. Default 2000.
    pub max_timeout_ms: Option<u64>,
    /// BRIMaxRetriesNumber: retransmissions before giving up. Default 1.
    pub max_retries: Option<u32>,
    /// MAGs (addresses or prefixes) allowed the global "Per-Peer Policy" revocation.
    /// Default: none.
    pub global_mags: Option<Vec<MagFilter>>,
}

impl Layer for ConfigLayer {
    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        self.restart_counter_file.iter_mut().collect()
    }
}

/// The `[chaining]` table: when a PBU names another gateway in the 3GPP PDN GW IP
/// Address option, this gateway registers at it as a MAG and relays GRE between the two
/// tunnels (needs CAP_NET_RAW for the raw GRE sockets).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainingConfig {
    /// The home gateways this gateway may chain to (addresses or prefixes). A PBU naming
    /// another one is refused with status 129 ADMINISTRATIVELY_PROHIBITED.
    pub home_gateways: Vec<MagFilter>,
    /// This gateway's IPv4 proxy care-of address toward the home gateways (signaling
    /// from UDP port `listen_v4`'s, GRE). Default: `listen_v4`'s address.
    pub local_v4: Option<Ipv4Addr>,
    /// Toward IPv6 home gateways; must be `listen_v6` (one raw Mobility Header socket).
    /// Default: `listen_v6`.
    pub local_v6: Option<Ipv6Addr>,
    /// The home gateways' UDP port for the Mobility Header over IPv4. Default 5436.
    pub home_port: Option<u16>,
    /// First PBU retransmission delay toward home, in ms (InitMinDelayBetweenBUs).
    /// Default 1000.
    pub retransmit_ms: Option<u64>,
    /// Longest retransmission delay, in ms (MaxDelayBetweenBUs). Default 32000.
    pub max_retransmit_ms: Option<u64>,
    /// Retransmissions before the home gateway counts as not responding. Default 3.
    pub max_retransmissions: Option<u32>,
    /// Lifetime asked of the home gateway, in seconds. Default `max_lifetime_secs`.
    pub lifetime_secs: Option<u32>,
}

/// The `[sgi]` table: the TUN device toward the PDN and the GRE tunnel MTU.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgiConfig {
    /// TUN device name (at most 15 octets). Default `lma-sgi`.
    pub tun_name: Option<String>,
    /// Address and prefix given to the TUN device; also the source of ICMP errors.
    pub ipv4: Option<Ipv4Net>,
    pub ipv6: Option<Ipv6Net>,
    /// MTU of the TUN device. Default 1500.
    pub mtu: Option<u32>,
    /// MTU of the path to the MAGs (outer packets): decides what is too big (see
    /// `lma::dataplane`). Default 1500.
    pub tunnel_mtu: Option<u32>,
    /// Source of ICMP fragmentation-needed: an address of the LMA as a router, not the
    /// TUN's own address. Default: the IPv4 default router given to UEs.
    pub icmp_source_v4: Option<Ipv4Addr>,
    /// Source of ICMPv6 Packet Too Big. No default: without it they are not sent.
    pub icmp_source_v6: Option<Ipv6Addr>,
}

/// The checked `[sgi]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgiSettings {
    pub tun_name: String,
    pub ipv4: Option<Ipv4Net>,
    pub ipv6: Option<Ipv6Net>,
    pub mtu: u32,
    pub tunnel_mtu: u32,
    pub icmp_source_v4: Option<Ipv4Addr>,
    pub icmp_source_v6: Option<Ipv6Addr>,
}

/// Everything the binary needs, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub core: LmaSettings,
    pub listen_v4: Option<SocketAddr>,
    pub listen_v6: Option<Ipv6Addr>,
    pub restart_counter_file: Option<PathBuf>,
    pub socket_buffer_bytes: usize,
    /// The interval over which rejected PBUs are summed per MAG in the log.
    pub reject_log_interval: Duration,
    pub sgi: Option<SgiSettings>,
    /// The visited role (`[chaining]`), checked.
    pub chaining: Option<ChainSettings>,
    /// The admin HTTP interface's address, if any.
    pub admin_listen: Option<SocketAddr>,
    /// Things worth a warning in the log, not worth refusing to start.
    pub warnings: Vec<String>,
}

/// Defaults of the optional fields.
pub mod defaults {
    /// RFC 5213 section 9.3 leaves it to configuration; an hour is common.
    pub const MAX_LIFETIME_SECS: u32 = 3600;
    /// RFC 5213 section 9.3, TimestampValidityWindow: 300 ms.
    pub const TIMESTAMP_WINDOW_MS: u64 = 300;
    /// Large enough for a burst of a few thousand PBUs.
    pub const SOCKET_BUFFER_BYTES: usize = 4 << 20;
}

/// Merges the flags over the file and checks the result.
pub fn resolve(layers: &Layers<ConfigLayer>) -> Result<Settings, ConfigError> {
    macro_rules! value {
        ($field:ident) => {{
            let setting = pick!(layers, $field);
            (setting.value, setting.from_flag)
        }};
    }
    let invalid = |field: &'static str, from_flag: bool, message: String| {
        layers.invalid(field, from_flag, message)
    };
    let place = |field: &str, from_flag: bool| layers.place(field, from_flag);
    let mut warnings = Vec::new();

    let (listen_v4, v4_flag) = value!(listen_v4);
    let (listen_v6, _) = value!(listen_v6);
    if listen_v4.is_none() && listen_v6.is_none() {
        return Err(invalid(
            "listen_v4",
            false,
            "neither listen_v4 nor listen_v6 is set: nothing to listen on".into(),
        ));
    }
    if let Some(addr) = listen_v4 {
        if !addr.is_ipv4() {
            return Err(invalid(
                "listen_v4",
                v4_flag,
                format!("{addr} is not an IPv4 socket address"),
            ));
        }
        if addr.ip().is_unspecified() {
            return Err(invalid(
                "listen_v4",
                v4_flag,
                format!(
                    "{addr}: give the LMA's own address, not 0.0.0.0: it is the IPv4 LMAA, \
                     the GRE tunnel endpoint and the source of every PBA (RFC 5844 section \
                     4.1.3.2)"
                ),
            ));
        }
    }

    let (ipv4_pool, v4pool_flag) = value!(ipv4_pool);
    let (ipv6_pool, v6pool_flag) = value!(ipv6_pool);
    let (chaining, _) = value!(chaining);
    if ipv4_pool.is_none() && ipv6_pool.is_none() && chaining.is_none() {
        return Err(invalid(
            "ipv4_pool",
            false,
            "neither ipv4_pool nor ipv6_pool is set: nothing to assign".into(),
        ));
    }
    let (ipv4_default_router, router_flag) = value!(ipv4_default_router);
    if ipv4_default_router.is_some() && ipv4_pool.is_none() {
        return Err(invalid(
            "ipv4_default_router",
            router_flag,
            "set without ipv4_pool".into(),
        ));
    }
    // By default the first host address of the IPv4 pool is the default router.
    let ipv4_default_router = ipv4_default_router.or_else(|| {
        ipv4_pool
            .filter(|p| p.prefix_len() < 31)
            .and_then(|p| p.hosts().next())
    });
    if let Some(pool) = ipv4_pool {
        Ipv4Pool::new(pool, ipv4_default_router)
            .map_err(|e| invalid("ipv4_pool", v4pool_flag, e.to_string()))?;
    }
    if let Some(pool) = ipv6_pool {
        PrefixPool::new(pool).map_err(|e| invalid("ipv6_pool", v6pool_flag, e.to_string()))?;
    }

    let (max_lifetime, lifetime_flag) = value!(max_lifetime_secs);
    let max_lifetime = max_lifetime.unwrap_or(defaults::MAX_LIFETIME_SECS);
    if !(4..=MAX_LIFETIME_SECS).contains(&max_lifetime) {
        return Err(invalid(
            "max_lifetime_secs",
            lifetime_flag,
            format!(
                "{max_lifetime} is outside 4..={MAX_LIFETIME_SECS} (the field counts units of 4 s)"
            ),
        ));
    }
    let (window, window_flag) = value!(timestamp_window_ms);
    let window = window.unwrap_or(defaults::TIMESTAMP_WINDOW_MS);
    if window == 0 || window > 24 * 3600 * 1000 {
        return Err(invalid(
            "timestamp_window_ms",
            window_flag,
            format!("{window} ms: give a window between 1 ms and a day"),
        ));
    }
    let (allowed_mags, mags_flag) = value!(allowed_mags);
    let allowed_mags = allowed_mags.unwrap_or_default();
    if allowed_mags.is_empty() {
        warnings.push(format!(
            "{}: allowed_mags is empty: every MAG is refused (list `0.0.0.0/0` and `::/0` to allow all)",
            place("allowed_mags", mags_flag)
        ));
    }
    let (socket_buffer, buffer_flag) = value!(socket_buffer_bytes);
    let socket_buffer_bytes = socket_buffer.unwrap_or(defaults::SOCKET_BUFFER_BYTES);
    if socket_buffer_bytes < 4096 {
        return Err(invalid(
            "socket_buffer_bytes",
            buffer_flag,
            format!("{socket_buffer_bytes} is smaller than 4096"),
        ));
    }

    let (reject_log, reject_log_flag) = value!(reject_log_interval_secs);
    let reject_log_interval = match reject_log {
        Some(0) => {
            return Err(invalid(
                "reject_log_interval_secs",
                reject_log_flag,
                "must be at least 1".into(),
            ))
        }
        Some(secs) => Duration::from_secs(secs),
        None => crate::reject_log::DEFAULT_INTERVAL,
    };

    let limits = match value!(mag_limits).0 {
        None => MagLimits::default(),
        Some(c) => {
            let defaults = MagLimits::default();
            let share_percent = c.share_percent.unwrap_or(defaults.share_percent);
            if !(1..=100).contains(&share_percent) {
                return Err(invalid(
                    "mag_limits.share_percent",
                    false,
                    format!("{share_percent}: give a percentage from 1 to 100"),
                ));
            }
            let max_bindings = c.max_bindings.unwrap_or(defaults.max_bindings);
            if max_bindings == 0 {
                return Err(invalid(
                    "mag_limits.max_bindings",
                    false,
                    "0: the LMA could bind nothing".into(),
                ));
            }
            let rate = c.new_bindings_per_sec.unwrap_or(0);
            let burst = c.burst.unwrap_or(rate);
            if rate > 0 && burst == 0 {
                return Err(invalid(
                    "mag_limits.burst",
                    false,
                    "0 with a rate: no binding could ever be created".into(),
                ));
            }
            let interval = c.report_interval_secs.unwrap_or(10);
            if !(1..=86_400).contains(&interval) {
                return Err(invalid(
                    "mag_limits.report_interval_secs",
                    false,
                    format!("{interval}: give 1 to 86400 seconds"),
                ));
            }
            MagLimits {
                share_percent,
                max_bindings,
                new_bindings_per_sec: rate,
                burst,
                report_interval: Duration::from_secs(interval),
            }
        }
    };
    let revocation = match value!(revocation).0 {
        None => RevocationSettings::default(),
        Some(c) => {
            let defaults = RevocationSettings::default();
            let initial = c
                .initial_timeout_ms
                .map_or(defaults.initial_timeout, Duration::from_millis);
            let max = c
                .max_timeout_ms
                .map_or(defaults.max_timeout, Duration::from_millis);
            if initial < Duration::from_millis(500) {
                return Err(invalid(
                    "revocation.initial_timeout_ms",
                    false,
                    format!(
                        "{} ms: RFC 5846 section 11 asks for 500 ms or more",
                        initial.as_millis()
                    ),
                ));
            }
            if max < initial || max > Duration::from_secs(3600) {
                return Err(invalid(
                    "revocation.max_timeout_ms",
                    false,
                    format!(
                        "{} ms: give initial_timeout_ms ({}) or more, at most an hour",
                        max.as_millis(),
                        initial.as_millis()
                    ),
                ));
            }
            let max_retries = c.max_retries.unwrap_or(defaults.max_retries);
            if max_retries > 16 {
                return Err(invalid(
                    "revocation.max_retries",
                    false,
                    format!("{max_retries}: at most 16"),
                ));
            }
            RevocationSettings {
                initial_timeout: initial,
                max_timeout: max,
                max_retries,
                global_mags: c.global_mags.unwrap_or_default(),
            }
        }
    };
    let heartbeat = match value!(heartbeat).0 {
        None => Some(HeartbeatSettings::default()),
        Some(c) if c.enabled == Some(false) => None,
        Some(c) => {
            let interval = c.interval_secs.unwrap_or(60);
            if interval == 0 || interval > 86_400 {
                return Err(invalid(
                    "heartbeat.interval_secs",
                    false,
                    format!("{interval}: give 1 to 86400 seconds"),
                ));
            }
            let interval = Duration::from_secs(interval);
            if !HeartbeatSettings::RECOMMENDED_INTERVAL.contains(&interval) {
                warnings.push(format!(
                    "{}: heartbeat.interval_secs {} is outside 30..=3600 (RFC 5847 section 5)",
                    place("heartbeat", false),
                    interval.as_secs()
                ));
            }
            Some(HeartbeatSettings {
                interval,
                missing_allowed: c.missing_allowed.unwrap_or(3),
            })
        }
    };
    let core = LmaSettings {
        ipv4_pool,
        ipv4_default_router,
        ipv6_pool,
        max_lifetime: Lifetime::from_secs(max_lifetime),
        timestamp_window: Duration::from_millis(window),
        require_timestamp: value!(require_timestamp).0.unwrap_or(false),
        require_gre_key: value!(require_gre_key).0.unwrap_or(true),
        unauthorized_mag: value!(unauthorized_mag).0.unwrap_or_default(),
        allowed_mags,
        restart_counter: 0,
        revocation,
        limits,
        heartbeat,
    };
    let sgi = match value!(sgi).0 {
        None => None,
        Some(c) => {
            let tun_name = c.tun_name.unwrap_or_else(|| "lma-sgi".into());
            if tun_name.is_empty() || tun_name.len() > 15 || tun_name.contains(['/', ' ']) {
                return Err(invalid(
                    "sgi.tun_name",
                    false,
                    format!("`{tun_name}`: 1 to 15 octets, no '/' or space"),
                ));
            }
            let mtu = c.mtu.unwrap_or(1500);
            let tunnel_mtu = c.tunnel_mtu.unwrap_or(1500);
            for (field, v) in [("sgi.mtu", mtu), ("sgi.tunnel_mtu", tunnel_mtu)] {
                if !(576..=65_535).contains(&v) {
                    return Err(invalid(field, false, format!("{v}: not in 576..=65535")));
                }
            }
            let icmp_source_v4 = c.icmp_source_v4.or(ipv4_default_router);
            if icmp_source_v4.is_some() && icmp_source_v4 == c.ipv4.map(|n| n.addr()) {
                return Err(invalid(
                    "sgi.icmp_source_v4",
                    false,
                    format!(
                        "{} (default: ipv4_default_router) is the TUN's own address, which \
                         the kernel drops as a martian source: give the TUN another address \
                         or set sgi.icmp_source_v4",
                        icmp_source_v4.map(|a| a.to_string()).unwrap_or_default()
                    ),
                ));
            }
            if c.icmp_source_v6.is_some() && c.icmp_source_v6 == c.ipv6.map(|n| n.addr()) {
                return Err(invalid(
                    "sgi.icmp_source_v6",
                    false,
                    "equals the TUN's own address, which the kernel drops as a martian source"
                        .into(),
                ));
            }
            Some(SgiSettings {
                tun_name,
                ipv4: c.ipv4,
                ipv6: c.ipv6,
                mtu,
                tunnel_mtu,
                icmp_source_v4,
                icmp_source_v6: c.icmp_source_v6,
            })
        }
    };
    let chaining = match chaining {
        None => None,
        Some(c) => {
            if c.home_gateways.is_empty() {
                return Err(invalid(
                    "chaining.home_gateways",
                    false,
                    "empty: list the home gateways this gateway may chain to".into(),
                ));
            }
            let listen_ip_v4 = match listen_v4 {
                Some(SocketAddr::V4(a)) => Some(*a.ip()),
                _ => None,
            };
            let local_v4 = c.local_v4.or(listen_ip_v4);
            if local_v4.is_some_and(|a| a.is_unspecified()) {
                return Err(invalid(
                    "chaining.local_v4",
                    false,
                    "give this gateway's own address, not 0.0.0.0".into(),
                ));
            }
            let local_v6 = c.local_v6.or(listen_v6);
            if c.local_v6.is_some() && c.local_v6 != listen_v6 {
                return Err(invalid(
                    "chaining.local_v6",
                    false,
                    "must be listen_v6 (the raw Mobility Header socket's address)".into(),
                ));
            }
            if local_v4.is_none() && local_v6.is_none() {
                return Err(invalid(
                    "chaining.local_v4",
                    false,
                    "no address toward the home gateways: set listen_v4 or local_v4".into(),
                ));
            }
            let retransmit = c.retransmit_ms.unwrap_or(1000);
            let max_retransmit = c.max_retransmit_ms.unwrap_or(32_000);
            if retransmit == 0 || max_retransmit < retransmit {
                return Err(invalid(
                    "chaining.retransmit_ms",
                    false,
                    format!(
                        "{retransmit} ms (max_retransmit_ms {max_retransmit}): give 1 ms or \
                         more, and no more than max_retransmit_ms"
                    ),
                ));
            }
            let lifetime = c.lifetime_secs.unwrap_or(max_lifetime);
            if !(4..=MAX_LIFETIME_SECS).contains(&lifetime) {
                return Err(invalid(
                    "chaining.lifetime_secs",
                    false,
                    format!("{lifetime} is outside 4..={MAX_LIFETIME_SECS}"),
                ));
            }
            let mut own_addresses: Vec<IpAddr> = Vec::new();
            own_addresses.extend(listen_ip_v4.map(IpAddr::V4));
            own_addresses.extend(listen_v6.map(IpAddr::V6));
            own_addresses.extend(local_v4.map(IpAddr::V4));
            Some(ChainSettings {
                home_gateways: c.home_gateways,
                own_addresses,
                local_v4,
                local_v6,
                home_port: c.home_port.unwrap_or(pmip_common::mh::MH_UDP_PORT),
                registration: pmip_common::binding_update_list::MagConfig {
                    init_min_delay_between_bus: Duration::from_millis(retransmit),
                    max_delay_between_bus: Duration::from_millis(max_retransmit),
                    max_retransmissions: c.max_retransmissions.unwrap_or(3),
                    requested_lifetime: Lifetime::from_secs(lifetime),
                    ..Default::default()
                },
            })
        }
    };
    Ok(Settings {
        core,
        sgi,
        chaining,
        listen_v4,
        listen_v6,
        restart_counter_file: value!(restart_counter_file).0,
        admin_listen: value!(admin_listen).0,
        socket_buffer_bytes,
        reject_log_interval,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(text: &str) -> Result<ConfigLayer, ConfigError> {
        pmip_node::config::parse_text(text, Path::new("/etc/lma.toml"))
    }

    /// `resolve` of a file (its path and layer) and the flags.
    fn resolve_with(
        file: Option<(&Path, ConfigLayer)>,
        flags: &ConfigLayer,
    ) -> Result<Settings, ConfigError> {
        let layers = match file {
            Some((path, layer)) => Layers::new(Some(path.into()), layer, flags.clone()),
            None => Layers::new(None, ConfigLayer::default(), flags.clone()),
        };
        resolve(&layers)
    }

    const GOOD: &str = r#"
        listen_v4 = "192.0.2.1:5436"
        listen_v6 = "2001:db8::1"
        ipv4_pool = "10.45.0.0/22"
        ipv6_pool = "2001:db8:45::/54"
        max_lifetime_secs = 7200
        timestamp_window_ms = 7000
        unauthorized_mag = "drop"
        allowed_mags = ["192.0.2.7", "2001:db8:1::/48"]
    "#;

    #[test]
    fn the_file_parses_and_flags_override_it() {
        let layer = parse(GOOD).unwrap();
        let flags = ConfigLayer {
            max_lifetime_secs: Some(600),
            ..ConfigLayer::default()
        };
        let s = resolve_with(Some((Path::new("/etc/lma.toml"), layer)), &flags).unwrap();
        assert_eq!(s.core.max_lifetime, Lifetime::from_secs(600));
        assert_eq!(s.core.timestamp_window, Duration::from_millis(7000));
        assert_eq!(s.core.unauthorized_mag, UnauthorizedMag::Drop);
        assert!(s.core.require_gre_key);
        assert_eq!(
            s.core.ipv4_default_router,
            Some("10.45.0.1".parse().unwrap())
        );
        assert!(s.core.allowed_mags[0].contains("192.0.2.7".parse().unwrap()));
        assert!(s.core.allowed_mags[1].contains("2001:db8:1::9".parse().unwrap()));
        assert!(s.warnings.is_empty());
    }

    #[test]
    fn an_unknown_field_is_named_with_the_file() {
        let err = parse("listen_v4 = \"192.0.2.1:5436\"\nlisten_v5 = 1\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/etc/lma.toml"), "{text}");
        assert!(text.contains("listen_v5"), "{text}");
    }

    #[test]
    fn a_bad_value_is_named() {
        let err = parse("ipv4_pool = \"10.0.0.0/33\"\n").unwrap_err();
        assert!(err.to_string().contains("ipv4_pool"), "{err}");
        let err = parse("allowed_mags = [\"not-an-address\"]\n").unwrap_err();
        assert!(err.to_string().contains("not-an-address"), "{err}");
        let err = parse("unauthorized_mag = \"maybe\"\n").unwrap_err();
        assert!(err.to_string().contains("unauthorized_mag"), "{err}");
    }

    #[test]
    fn checks_name_the_field_and_its_place() {
        let layer = parse(GOOD).unwrap();
        let flags = ConfigLayer {
            max_lifetime_secs: Some(0),
            ..ConfigLayer::default()
        };
        let err =
            resolve_with(Some((Path::new("/etc/lma.toml"), layer.clone())), &flags).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--max-lifetime-secs: max_lifetime_secs:"),
            "{err}"
        );
        let mut unspecified = layer.clone();
        unspecified.listen_v4 = Some("0.0.0.0:5436".parse().unwrap());
        let err = resolve_with(
            Some((Path::new("/etc/lma.toml"), unspecified)),
            &ConfigLayer::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("/etc/lma.toml: listen_v4:"),
            "{err}"
        );
        let mut tiny = layer;
        tiny.ipv4_pool = Some("10.0.0.0/30".parse().unwrap());
        tiny.ipv4_default_router = Some("10.0.0.1".parse().unwrap());
        tiny.ipv6_pool = None;
        // A /30 has two hosts; one is the router, one is left.
        assert!(resolve_with(
            Some((Path::new("x"), tiny.clone())),
            &ConfigLayer::default()
        )
        .is_ok());
        tiny.ipv4_pool = Some("10.0.0.1/32".parse().unwrap());
        let err = resolve_with(Some((Path::new("x"), tiny)), &ConfigLayer::default()).unwrap_err();
        assert!(err.to_string().contains("ipv4_pool"), "{err}");
    }

    #[test]
    fn an_empty_mag_list_warns() {
        let layer =
            parse("listen_v4 = \"192.0.2.1:5436\"\nipv6_pool = \"2001:db8::/48\"\n").unwrap();
        let s = resolve_with(Some((Path::new("x"), layer)), &ConfigLayer::default()).unwrap();
        assert_eq!(s.warnings.len(), 1);
        assert_eq!(s.core.max_lifetime, Lifetime::from_secs(3600));
    }

    #[test]
    fn the_sgi_table_is_optional_and_checked() {
        let base = "listen_v4 = \"127.0.0.1:5436\"\nipv4_pool = \"10.0.0.0/24\"\n";
        let s = resolve_with(
            Some((Path::new("x"), parse(base).unwrap())),
            &ConfigLayer::default(),
        )
        .unwrap();
        assert_eq!(s.sgi, None);
        let text = format!("{base}[sgi]\ntun_name = \"sgi0\"\nipv4 = \"10.0.0.254/24\"\n");
        let s = resolve_with(
            Some((Path::new("x"), parse(&text).unwrap())),
            &ConfigLayer::default(),
        )
        .unwrap();
        let sgi = s.sgi.unwrap();
        assert_eq!(
            (sgi.tun_name.as_str(), sgi.mtu, sgi.tunnel_mtu),
            ("sgi0", 1500, 1500)
        );
        // The default router (the pool's first host) sources ICMP errors by default.
        assert_eq!(sgi.icmp_source_v4, Some(Ipv4Addr::new(10, 0, 0, 1)));
        for same in [
            format!("{base}[sgi]\nipv4 = \"10.0.0.9/24\"\nicmp_source_v4 = \"10.0.0.9\"\n"),
            format!("{base}[sgi]\nipv4 = \"10.0.0.1/24\"\n"),
        ] {
            let err = resolve_with(
                Some((Path::new("x"), parse(&same).unwrap())),
                &ConfigLayer::default(),
            )
            .unwrap_err();
            assert!(err.to_string().contains("sgi.icmp_source_v4"), "{err}");
        }
        let bad = format!("{base}[sgi]\ntun_name = \"a-name-much-too-long\"\n");
        let err = resolve_with(
            Some((Path::new("x"), parse(&bad).unwrap())),
            &ConfigLayer::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("sgi.tun_name"), "{err}");
        let unknown = format!("{base}[sgi]\ntun = \"x\"\n");
        assert!(parse(&unknown).unwrap_err().to_string().contains("tun"));
    }

    #[test]
    fn the_chaining_table_is_checked_and_defaults_to_listen_v4() {
        let base = "listen_v4 = \"192.0.2.2:5436\"\nallowed_mags = [\"192.0.2.1\"]\n";
        let resolve_text = |text: &str| {
            resolve_with(
                Some((Path::new("x"), parse(text).unwrap())),
                &ConfigLayer::default(),
            )
        };
        // A pure relay needs no pool.
        let s = resolve_text(&format!(
            "{base}[chaining]\nhome_gateways = [\"198.51.100.0/24\"]\nmax_retransmissions = 2\n"
        ))
        .unwrap();
        let c = s.chaining.unwrap();
        assert_eq!(c.local_v4, Some(Ipv4Addr::new(192, 0, 2, 2)));
        assert_eq!(c.home_port, 5436);
        assert_eq!(c.registration.max_retransmissions, 2);
        assert_eq!(c.registration.requested_lifetime, Lifetime::from_secs(3600));
        assert!(c.home_gateways[0].contains("198.51.100.7".parse().unwrap()));
        assert!(c.own_addresses.contains(&"192.0.2.2".parse().unwrap()));
        let s = resolve_text(&format!(
            "{base}[chaining]\nhome_gateways = [\"198.51.100.3\"]\nlocal_v4 = \"198.51.100.2\"\n"
        ))
        .unwrap();
        let c = s.chaining.unwrap();
        assert_eq!(c.local_v4, Some(Ipv4Addr::new(198, 51, 100, 2)));
        assert_eq!(c.own_addresses.len(), 2);
        for (bad, field) in [
            ("home_gateways = []\n", "chaining.home_gateways"),
            (
                "home_gateways = [\"198.51.100.3\"]\nretransmit_ms = 0\n",
                "chaining.retransmit_ms",
            ),
            (
                "home_gateways = [\"198.51.100.3\"]\nlocal_v6 = \"2001:db8::9\"\n",
                "chaining.local_v6",
            ),
            (
                "home_gateways = [\"198.51.100.3\"]\nlifetime_secs = 1\n",
                "chaining.lifetime_secs",
            ),
        ] {
            let err = resolve_text(&format!("{base}[chaining]\n{bad}")).unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
        let unknown = format!("{base}[chaining]\nhome_gateways = []\nhome = 1\n");
        assert!(parse(&unknown).unwrap_err().to_string().contains("home"));
        // Still no pool and no chaining: nothing to do.
        assert!(resolve_text(base).is_err());
    }

    #[test]
    fn the_limit_and_revocation_tables_are_optional_and_checked() {
        let base = "listen_v4 = \"127.0.0.1:5436\"\nipv4_pool = \"10.0.0.0/24\"\n";
        let resolve_text = |text: &str| {
            resolve_with(
                Some((Path::new("x"), parse(text).unwrap())),
                &ConfigLayer::default(),
            )
        };
        // Without the tables: no share, no rate, as before them.
        let s = resolve_text(base).unwrap();
        assert_eq!(s.core.limits, MagLimits::default());
        assert_eq!(s.core.limits.share_percent, 100);
        assert_eq!(s.core.limits.new_bindings_per_sec, 0);
        assert_eq!(s.core.revocation, RevocationSettings::default());
        let s = resolve_text(&format!(
            "{base}[mag_limits]\nshare_percent = 50\nnew_bindings_per_sec = 200\n\
             [revocation]\ninitial_timeout_ms = 700\nmax_retries = 3\n\
             global_mags = [\"192.0.2.0/24\"]\n"
        ))
        .unwrap();
        assert_eq!(s.core.limits.share_percent, 50);
        assert_eq!(s.core.limits.burst, 200, "one second's worth by default");
        assert_eq!(
            s.core.revocation.initial_timeout,
            Duration::from_millis(700)
        );
        assert_eq!(s.core.revocation.max_timeout, Duration::from_secs(2));
        assert_eq!(s.core.revocation.max_retries, 3);
        assert!(s.core.revocation.global_mags[0].contains("192.0.2.9".parse().unwrap()));
        for (bad, field) in [
            (
                "[mag_limits]\nshare_percent = 0\n",
                "mag_limits.share_percent",
            ),
            (
                "[mag_limits]\nshare_percent = 101\n",
                "mag_limits.share_percent",
            ),
            (
                "[mag_limits]\nmax_bindings = 0\n",
                "mag_limits.max_bindings",
            ),
            (
                "[mag_limits]\nnew_bindings_per_sec = 5\nburst = 0\n",
                "mag_limits.burst",
            ),
            (
                "[mag_limits]\nreport_interval_secs = 0\n",
                "mag_limits.report_interval_secs",
            ),
            (
                "[revocation]\ninitial_timeout_ms = 100\n",
                "revocation.initial_timeout_ms",
            ),
            (
                "[revocation]\ninitial_timeout_ms = 3000\n",
                "revocation.max_timeout_ms",
            ),
            ("[revocation]\nmax_retries = 99\n", "revocation.max_retries"),
        ] {
            let err = resolve_text(&format!("{base}{bad}")).unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
        assert!(parse(&format!("{base}[mag_limits]\nshare = 5\n"))
            .unwrap_err()
            .to_string()
            .contains("share"));
    }

    #[test]
    fn the_example_file_is_valid() {
        let text = include_str!("../lma.example.toml");
        let layer = parse(text).unwrap();
        resolve_with(
            Some((Path::new("lma.example.toml"), layer)),
            &ConfigLayer::default(),
        )
        .unwrap();
    }
}
