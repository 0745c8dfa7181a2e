//! `aaa-stub`: the command line, the logs and the signals around
//! [`aaa_stub::server`], the tokio driver of the protocol core ([`aaa_stub::core`]).

use std::path::PathBuf;

use aaa_stub::config::{AaaConfig, ConfigLayer};
use aaa_stub::server::{Server, ServerOptions};
use aaa_stub::subscriber::SubscriberStore;
use anyhow::{Context, Result};
use clap::Parser;
use pmip_node::config::Layers;
use pmip_node::logging::{LogFormat, LogOutput, Logging};
use tracing::info;

/// The 3GPP AAA server of the S2b lab: Diameter SWm (TS 29.273) over TCP.
///
/// Authenticates UEs with EAP-AKA (RFC 4187, Milenage) for the ePDG (DER/DEA), persisting
/// every SQN before its challenge leaves; authorizes APNs and names their gateway
/// (AAR/AAA, MIP6-Agent-Info); ends sessions (STR/STA). For users of another realm it
/// acts as the visited AAA: it relays their requests to the home AAA configured for that
/// realm and adds its own (visited) gateway to the successful answers.
#[derive(Debug, Parser)]
#[command(name = "aaa-stub", version)]
struct Cli {
    /// The configuration file (TOML): origin_host, origin_realm, listen, subscribers,
    /// sqn_state, [gateways] (APN -> gateway address), [home_realms] (realm -> home AAA
    /// address, visited role), relay_timeout_secs. See aaa.example.toml.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,

    #[command(flatten)]
    settings: ConfigLayer,

    /// Log format: `human` (default) or `json` (one object per line). The level comes
    /// from RUST_LOG (default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,

    /// Record every Diameter message sent and received into this pcap file (one TCP
    /// segment per message; Wireshark/tshark decode it as Diameter).
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,

    /// Keep this file (JSON, rewritten atomically: temp file + rename) up to date with
    /// the core's state after every event: `{"sessions": N, "peers": M}`, where
    /// `sessions` counts the Diameter sessions open (authenticated, not yet ended by STR).
    #[arg(long, value_name = "FILE")]
    status_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("aaa-stub: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let cli = Cli::parse();
    pmip_node::logging::init(Logging {
        format: cli.log_format,
        filter: "info",
        filter_source: "the default log level",
        output: LogOutput::Stdout,
    })?;
    let layers = Layers::load(Some(&cli.config), cli.settings.clone())
        .context("loading the configuration")?;
    let config = AaaConfig::resolve(&layers).context("loading the configuration")?;
    let store = SubscriberStore::load(&config.subscribers, &config.sqn_state)
        .context("loading the subscribers")?;
    let subscribers = store.len();
    let server = Server::bind(
        config.clone(),
        store,
        ServerOptions {
            pcap: cli.pcap.clone(),
            status_file: cli.status_file.clone(),
        },
    )
    .await?;
    let listen = server.local_addr().context("local address")?;
    // Installed once, before we say we listen, so no signal is lost between two accepts.
    let stop = terminate()?;
    info!(
        %listen,
        origin_host = %config.origin_host,
        origin_realm = %config.origin_realm,
        subscribers,
        "aaa listening"
    );
    // Until SIGTERM or SIGINT; then a DPR to every peer (RFC 6733 section 5.4).
    server.run(stop).await;
    Ok(())
}

/// A future that resolves on SIGTERM or SIGINT; the handlers are installed at once.
fn terminate() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
