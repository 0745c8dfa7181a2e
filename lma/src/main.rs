//! `lma --config lma.toml`: the LMA / SAE GW. Reads the configuration, binds the
//! Mobility Header sockets and runs the sans-IO core behind them until SIGINT/SIGTERM.

mod capture;
mod data_path;
mod driver;
mod sgi;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use lma::config::{self, ConfigLayer};
use lma::{restart, Lma};
use pmip_node::config::Layers;
use pmip_node::logging::{LogFormat, LogOutput, Logging};

/// The LMA / SAE GW of the PMIPv6 S2b gateway pair (RFC 5213, 5844, 5845, 5847).
///
/// Receives Proxy Binding Updates from MAGs (ePDGs) over IPv4 (UDP port 5436, RFC 5844)
/// and IPv6 (raw Mobility Header, next header 135), allocates each mobile node's IPv4
/// home address, IPv6 /64 home network prefix and uplink GRE key, and answers with Proxy
/// Binding Acknowledgements; answers Heartbeats with its restart counter. With a
/// [chaining] table it is also a visited gateway: a PBU naming another gateway in the
/// 3GPP PDN GW IP Address option is registered there, and GRE relayed between the two.
///
/// Settings come from the --config file (see lma.example.toml); every flag below
/// overrides the file field of the same name. Logs go to standard error. The
/// subcommands talk to a running gateway over its admin interface (admin_listen).
#[derive(Debug, Parser)]
#[command(name = "lma", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// The configuration file (TOML; see lma.example.toml). Without it, flags alone
    /// must give at least a listen address and a pool.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(flatten)]
    settings: ConfigLayer,

    /// Record every Mobility Header message sent and received in this pcap file
    /// (opens in Wireshark / tshark).
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,

    /// Log format: human (one line per event) or json (one object per line).
    #[arg(long, value_enum, default_value = "human", value_name = "FORMAT")]
    log_format: LogFormat,

    /// Log filter: a level (error, warn, info, debug, trace) or a tracing directive
    /// such as `lma=debug`. The RUST_LOG environment variable, when set, wins.
    #[arg(long, default_value = "info", value_name = "FILTER")]
    log_level: String,

    /// Check the configuration, print the settings in effect and exit.
    #[arg(long)]
    check_config: bool,
}

/// Talking to a running gateway over its admin interface.
#[derive(Debug, Subcommand)]
enum Command {
    /// List the running gateway's bindings (GET /bindings) as a table, or as JSON.
    Bindings {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the JSON the interface answered instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Counts of the running gateway (GET /status), as JSON.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Revoke bindings (POST /revoke, RFC 5846): one PDN connection by NAI and APN, the
    /// binding of an address, or every binding of a MAG (one indication with the G bit).
    Revoke {
        #[command(flatten)]
        admin: AdminArgs,
        /// The mobile node's NAI (with --apn: that PDN connection; without: every APN).
        #[arg(long, value_name = "NAI", conflicts_with_all = ["address", "all_from_mag"])]
        nai: Option<String>,
        #[arg(long, value_name = "APN", requires = "nai")]
        apn: Option<String>,
        /// The IPv4 home address or an address in the home network prefix.
        #[arg(long, value_name = "ADDR", conflicts_with = "all_from_mag")]
        address: Option<IpAddr>,
        /// Every binding of the MAG at this address.
        #[arg(long, value_name = "ADDR")]
        all_from_mag: Option<IpAddr>,
    },
}

/// Where the running gateway's admin interface is.
#[derive(Debug, Clone, clap::Args)]
struct AdminArgs {
    /// The admin interface's address [default: admin_listen of --config].
    #[arg(long, value_name = "ADDR:PORT")]
    admin: Option<SocketAddr>,
}

/// The admin address: the flag, or admin_listen of the configuration.
fn admin_address(cli: &Cli, args: &AdminArgs) -> Result<SocketAddr> {
    if let Some(a) = args.admin {
        return Ok(a);
    }
    let layers = Layers::load(cli.config.as_deref(), cli.settings.clone())?;
    let settings = config::resolve(&layers)?;
    let mut address = settings
        .admin_listen
        .context("no admin interface: give --admin, or --config with admin_listen")?;
    if address.ip().is_unspecified() {
        address.set_ip(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    }
    Ok(address)
}

/// Runs one subcommand against the admin interface.
fn admin_command(cli: &Cli, command: &Command) -> Result<()> {
    use pmip_node::admin::{request, Method};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let (args, method, path, body) = match command {
        Command::Bindings { admin, .. } => (admin, Method::GET, "/bindings", None),
        Command::Status { admin } => (admin, Method::GET, "/status", None),
        Command::Revoke {
            admin,
            nai,
            apn,
            address,
            all_from_mag,
        } => {
            let body = match (nai, address, all_from_mag) {
                (Some(nai), _, _) => serde_json::json!({ "nai": nai, "apn": apn }),
                (_, Some(a), _) => serde_json::json!({ "address": a.to_string() }),
                (_, _, Some(m)) => serde_json::json!({ "mag": m.to_string() }),
                _ => anyhow::bail!("give --nai (and --apn), --address or --all-from-mag"),
            };
            (admin, Method::POST, "/revoke", Some(body))
        }
    };
    let address = admin_address(cli, args)?;
    let (status, answer) = runtime.block_on(request(address, method, path, body))?;
    if status != 200 {
        anyhow::bail!(
            "{path}: {status} {}",
            answer["error"].as_str().unwrap_or(&answer.to_string())
        );
    }
    match command {
        Command::Bindings { json: false, .. } => print_table(&answer),
        _ => println!("{}", serde_json::to_string_pretty(&answer)?),
    }
    Ok(())
}

/// `lma bindings` as a table: one line per binding.
fn print_table(answer: &serde_json::Value) {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    println!(
        "{:<44} {:<12} {:<16} {:<16} {:<24} {:>10} {:>10} {:>8}",
        "MN-ID", "APN", "MAG", "IPV4", "PREFIX", "UPLINK", "DOWNLINK", "EXPIRES"
    );
    for b in answer["bindings"].as_array().into_iter().flatten() {
        println!(
            "{:<44} {:<12} {:<16} {:<16} {:<24} {:>10} {:>10} {:>8}",
            text(&b["mn_id"]),
            text(&b["apn"]),
            text(&b["mag"]),
            text(&b["ipv4_home_address"]),
            text(&b["home_network_prefix"]),
            text(&b["uplink_gre_key"]),
            text(&b["downlink_gre_key"]),
            text(&b["expires_in_secs"]),
        );
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(command) = &cli.command {
        return admin_command(&cli, command);
    }
    pmip_node::logging::init(Logging {
        format: cli.log_format,
        filter: &cli.log_level,
        filter_source: "--log-level",
        output: LogOutput::Stderr,
    })?;
    let layers = Layers::load(cli.config.as_deref(), cli.settings.clone())?;
    let mut settings = config::resolve(&layers)?;
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    if cli.check_config {
        println!("{settings:#?}");
        return Ok(());
    }
    let wall_clock = SystemTime::now();
    settings.core.restart_counter = match &settings.restart_counter_file {
        Some(path) => restart::next_from_file(path)
            .with_context(|| format!("updating the restart counter in {}", path.display()))?,
        None => restart::from_clock(wall_clock),
    };
    // What the previous run left, beside the restart counter (the `state` module).
    let restored = match &settings.restart_counter_file {
        Some(counter_file) => {
            let path = lma::state::path_for(counter_file);
            let restored = lma::state::read(&path)
                .with_context(|| format!("reading the state file {}", path.display()))?;
            Some((path, restored))
        }
        None => None,
    };
    let mut lma = Lma::new(settings.core.clone(), Instant::now(), wall_clock)
        .context("building the address pools")?;
    if let Some(chaining) = settings.chaining.clone() {
        lma = lma.with_chaining(chaining);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(driver::run(lma, &settings, cli.pcap.as_deref(), restored))
}
