//! `ue-emu attach --config ue.toml [--apn APN] [--json]`: one emulated UE through the
//! S2b attach; the ladder with per-step times, or one JSON object.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ue_emu::config::{ConfigLayer, UeConfig};
use ue_emu::{attach, print_summary, AttachOptions};

/// The UE emulator: IKEv2 initiator with an EAP-AKA software USIM (Milenage).
#[derive(Debug, Parser)]
#[command(name = "ue-emu", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Attach one UE to the ePDG: IKE_SA_INIT, IKE_AUTH with EAP-AKA, CFG_REPLY. Exits
    /// non-zero on failure, naming the notify the ePDG sent.
    Attach(Box<AttachArgs>),
    /// Attach storm: many UEs at once, each its own IMSI (counting up from the config's
    /// `imsi`; provision them as one `[[range]]` at the AAA), IKE SA, EAP-AKA run and UDP
    /// socket, through the real ePDG, AAA and LMA. Reports attaches per second, success
    /// rate and latency percentiles (IKE_SA_INIT to CFG_REPLY). Exits non-zero unless
    /// every attach succeeded.
    Load(Box<LoadArgs>),
}

#[derive(Debug, clap::Args)]
struct AttachArgs {
    /// The UE's configuration (see ue.example.toml).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// The file's fields that have a flag.
    #[command(flatten)]
    settings: ConfigLayer,
    /// Print one JSON object instead of the ladder.
    #[arg(long)]
    json: bool,
    /// Do not check the ePDG's certificate (only matters without EAP-only).
    #[arg(long)]
    insecure: bool,
    /// Stay attached this many seconds before detaching (with --tun: relay this long;
    /// 0 = until SIGINT/SIGTERM).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    hold_secs: u64,
    /// Leave the IKE SA up at exit (no INFORMATIONAL DELETE).
    #[arg(long)]
    no_detach: bool,
    /// After the attach, send ICMP (IPv4) or ICMPv6 (IPv6) echo requests to ADDR from
    /// the assigned address, inside ESP-in-UDP to the ePDG's port 4500 (no privilege
    /// needed); repeatable. Reports sent/received/rtt.
    #[arg(long, value_name = "ADDR")]
    ping: Vec<std::net::IpAddr>,
    /// Echo requests per --ping target (1 to 255).
    #[arg(long, value_name = "N", default_value_t = 3)]
    ping_count: u32,
    /// Milliseconds between echo requests.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    ping_interval_ms: u64,
    /// Milliseconds to wait for replies after the last request.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    ping_wait_ms: u64,
    /// Send the --ping echo requests from ADDR instead of the assigned address (same IP
    /// version only), to see the ePDG drop and count a forged inner source.
    #[arg(long, value_name = "ADDR")]
    ping_source: Option<std::net::IpAddr>,
    /// After the attach (and any --ping), open TUN device NAME with the assigned
    /// addresses (IPv4 /32; IPv6 address ::1 in the assigned prefix) and relay it
    /// to and from ESP-in-UDP, so ping, iperf3 and the like run through the tunnel,
    /// until SIGINT/SIGTERM (then detach) or --hold-secs. Packets the device gives us
    /// from other sources are not sent. Needs root (or CAP_NET_ADMIN); the device and
    /// its routes go away at exit.
    #[arg(long, value_name = "NAME")]
    tun: Option<String>,
    /// Route PREFIX (e.g. 10.0.0.0/8, 2001:db8::/32) into the --tun device;
    /// repeatable; `default` routes 0.0.0.0/0 and ::/0 (the default when none is
    /// given; fails if the namespace has a default route already, then give prefixes).
    /// Only families with an assigned address are routed.
    #[arg(long, value_name = "PREFIX", value_parser = parse_route)]
    tun_route: Vec<Option<ipnet::IpNet>>,
    /// MTU of the --tun device (leaves room for ESP-in-UDP and GRE in 1500).
    #[arg(long, value_name = "OCTETS", default_value_t = 1400)]
    tun_mtu: u32,
    /// With --tun: send a NAT-keepalive (RFC 3948) to the ePDG's port 4500 after this
    /// many seconds without uplink traffic; 0 disables them.
    #[arg(long, value_name = "SECS", default_value_t = 20)]
    nat_keepalive_secs: u64,
}

#[derive(Debug, clap::Args)]
struct LoadArgs {
    /// The UEs' common configuration (ePDG, K, OPc, APN; `imsi` is the first IMSI).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// How many UEs (distinct IMSIs).
    #[arg(long, value_name = "N")]
    ues: u64,
    /// Attach starts per second (0: all at once).
    #[arg(long, value_name = "R", default_value_t = 0.0)]
    rate: f64,
    /// Keep attaching for this many seconds: each UE attaches, detaches and attaches
    /// again. Without it every UE attaches once.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Once every UE has attached, stay attached this many seconds before detaching
    /// (to measure the ePDG's memory per attached UE). Single-pass runs only.
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    hold: f64,
    /// The file's fields that have a flag.
    #[command(flatten)]
    settings: ConfigLayer,
    /// Do not check the ePDG's certificate (only matters without EAP-only).
    #[arg(long)]
    insecure: bool,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    json: bool,
}

/// `ue-emu load`: runs the storm on a multi-threaded runtime.
fn run_load(args: LoadArgs) -> Result<bool> {
    let config = UeConfig::load_with(&args.config, args.settings)?;
    anyhow::ensure!(
        args.hold >= 0.0 && args.hold.is_finite(),
        "--hold must be 0 or more seconds"
    );
    let duration = match args.duration {
        Some(d) if d > 0.0 && d.is_finite() => Some(Duration::from_secs_f64(d)),
        Some(d) => anyhow::bail!("--duration {d}: give a positive number of seconds"),
        None => None,
    };
    let options = ue_emu::load::LoadOptions {
        ues: args.ues,
        rate: args.rate,
        duration,
        hold: Duration::from_secs_f64(args.hold),
        apn: None, // the flag is in config.apn
        insecure: args.insecure,
        progress: !args.json,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let report = runtime.block_on(ue_emu::load::run(config, options))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        ue_emu::load::print_report(&report);
    }
    Ok(report.failed == 0 && report.attached > 0)
}

/// `--tun-route`: `default`, or an IPv4/IPv6 prefix.
fn parse_route(text: &str) -> std::result::Result<Option<ipnet::IpNet>, String> {
    if text == "default" {
        return Ok(None);
    }
    text.parse::<ipnet::IpNet>()
        .map(|n| Some(n.trunc()))
        .map_err(|e| format!("`{text}` is neither `default` nor a prefix like 10.0.0.0/8: {e}"))
}

fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::Load(args) => run_load(*args),
        command => run(command),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ue-emu: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> Result<bool> {
    let Command::Attach(args) = command else {
        anyhow::bail!("not an attach command");
    };
    let AttachArgs {
        config,
        settings,
        json,
        insecure,
        hold_secs,
        no_detach,
        ping,
        ping_count,
        ping_interval_ms,
        ping_wait_ms,
        ping_source,
        tun,
        tun_route,
        tun_mtu,
        nat_keepalive_secs,
    } = *args;
    let config = UeConfig::load_with(&config, settings)?;
    let options = AttachOptions {
        apn: None, // the flag is in config.apn
        insecure,
        print: !json,
        hold: Duration::from_secs(hold_secs),
        no_detach,
        pings: ping,
        ping_count,
        ping_interval: Duration::from_millis(ping_interval_ms),
        ping_wait: Duration::from_millis(ping_wait_ms),
        ping_source,
        tun: tun.map(|name| ue_emu::tun::TunOptions {
            name,
            routes: if tun_route.is_empty() {
                vec![None]
            } else {
                tun_route
            },
            mtu: tun_mtu,
            nat_keepalive: (nat_keepalive_secs > 0)
                .then(|| Duration::from_secs(nat_keepalive_secs)),
        }),
    };
    if !json {
        println!("attach imsi={} epdg={}", config.imsi, config.epdg);
    }
    let report = attach(&config, &options)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_summary(&report);
    }
    if report.result != "attached" {
        eprintln!(
            "ue-emu: attach failed: {}",
            report.error.as_deref().unwrap_or("unknown")
        );
    }
    let pings_ok = report.pings.iter().all(|p| p.received > 0);
    if !pings_ok {
        eprintln!("ue-emu: some --ping target got no echo reply");
    }
    Ok(report.result == "attached" && pings_ok)
}
