//! `lma --config lma.toml`: the LMA / SAE GW. Reads the configuration, binds the
//! Mobility Header sockets and runs the sans-IO core behind them until SIGINT/SIGTERM.

mod capture;
mod data_path;
mod driver;
mod sgi;

use std::io::IsTerminal;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result};
use clap::Parser;
use ipnet::{Ipv4Net, Ipv6Net};
use lma::config::{self, ConfigLayer, MagFilter, UnauthorizedMag};
use lma::{restart, Lma};

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

    /// IPv4 address and UDP port for the Mobility Header over IPv4 (RFC 5844; 5436 by
    /// convention), e.g. 192.0.2.1:5436. Must be a specific address, not 0.0.0.0.
    #[arg(long, value_name = "ADDR:PORT")]
    listen_v4: Option<SocketAddr>,

    /// IPv6 address for the raw Mobility Header socket (next header 135; needs root or
    /// CAP_NET_RAW). The kernel computes and verifies the MH checksum.
    #[arg(long, value_name = "ADDR")]
    listen_v6: Option<Ipv6Addr>,

    /// IPv4 network whose host addresses are assigned as IPv4 home addresses.
    #[arg(long, value_name = "CIDR")]
    ipv4_pool: Option<Ipv4Net>,

    /// IPv4 default router reported to MAGs and never assigned [default: first host of
    /// the IPv4 pool].
    #[arg(long, value_name = "ADDR")]
    ipv4_default_router: Option<Ipv4Addr>,

    /// IPv6 prefix (/64 or shorter) from which one /64 home network prefix is assigned
    /// per binding.
    #[arg(long, value_name = "CIDR")]
    ipv6_pool: Option<Ipv6Net>,

    /// Longest binding lifetime granted, in seconds [default: 3600].
    #[arg(long, value_name = "SECS")]
    max_lifetime_secs: Option<u32>,

    /// How far a PBU Timestamp may be from this clock before TIMESTAMP_MISMATCH, in
    /// milliseconds [default: 300].
    #[arg(long, value_name = "MS")]
    timestamp_window_ms: Option<u64>,

    /// Refuse PBUs that carry no Timestamp option [default: false].
    #[arg(long, value_name = "BOOL")]
    require_timestamp: Option<bool>,

    /// Refuse PBUs that carry no GRE Key option, with GRE_KEY_OPTION_REQUIRED
    /// [default: true].
    #[arg(long, value_name = "BOOL")]
    require_gre_key: Option<bool>,

    /// What a PBU from a MAG not in the allowed list gets: reject (status 154) or drop
    /// (no answer) [default: reject].
    #[arg(long, value_enum, value_name = "WHAT")]
    unauthorized_mag: Option<UnauthorizedMag>,

    /// A MAG address or prefix allowed to register bindings; repeat for several. Given
    /// at all, the flags replace the file's allowed_mags list.
    #[arg(long = "allowed-mag", value_name = "ADDR|CIDR")]
    allowed_mags: Vec<MagFilter>,

    /// File holding the RFC 5847 restart counter, incremented at every start
    /// [default: none; the counter is the start time in seconds].
    #[arg(long, value_name = "FILE")]
    restart_counter_file: Option<PathBuf>,

    /// Receive buffer of each socket, in bytes [default: 4194304].
    #[arg(long, value_name = "BYTES")]
    socket_buffer_bytes: Option<usize>,

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

impl Cli {
    /// The flags as a configuration layer over the file.
    fn overrides(&self) -> ConfigLayer {
        ConfigLayer {
            listen_v4: self.listen_v4,
            listen_v6: self.listen_v6,
            ipv4_pool: self.ipv4_pool,
            ipv4_default_router: self.ipv4_default_router,
            ipv6_pool: self.ipv6_pool,
            max_lifetime_secs: self.max_lifetime_secs,
            timestamp_window_ms: self.timestamp_window_ms,
            require_timestamp: self.require_timestamp,
            require_gre_key: self.require_gre_key,
            unauthorized_mag: self.unauthorized_mag,
            allowed_mags: (!self.allowed_mags.is_empty()).then(|| self.allowed_mags.clone()),
            restart_counter_file: self.restart_counter_file.clone(),
            socket_buffer_bytes: self.socket_buffer_bytes,
            sgi: None,
            chaining: None,
        }
    }
}

fn init_logging(cli: &Cli) -> Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.is_empty() => EnvFilter::try_new(&value)
            .with_context(|| format!("RUST_LOG={value:?} is not a valid log filter"))?,
        _ => EnvFilter::try_new(&cli.log_level).with_context(|| {
            format!("--log-level {:?} is not a valid log filter", cli.log_level)
        })?,
    };
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Human => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging(&cli)?;
    let file = match &cli.config {
        Some(path) => Some((path.as_path(), ConfigLayer::load(path)?)),
        None => None,
    };
    let mut settings = config::resolve(file, &cli.overrides())?;
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
