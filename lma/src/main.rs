//! `lma --config lma.toml`: the LMA / SAE GW. Reads the configuration, binds the
//! Mobility Header sockets and runs the sans-IO core behind them until SIGINT/SIGTERM.

mod capture;
mod data_path;
mod driver;
mod sgi;

use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result};
use clap::Parser;
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
/// overrides the file field of the same name. Logs go to standard error.
#[derive(Debug, Parser)]
#[command(name = "lma", version, about, long_about)]
struct Cli {
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

fn main() -> Result<()> {
    let cli = Cli::parse();
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
    let mut lma = Lma::new(settings.core.clone(), Instant::now(), wall_clock)
        .context("building the address pools")?;
    if let Some(chaining) = settings.chaining.clone() {
        lma = lma.with_chaining(chaining);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(driver::run(lma, &settings, cli.pcap.as_deref()))
}
