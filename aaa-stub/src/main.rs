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
use tracing::{info, warn};

/// The 3GPP AAA server of the S2b lab: Diameter SWm (TS 29.273) over TCP, and over TLS
/// with `[tls]` (RFC 6733 section 13).
///
/// Authenticates UEs with EAP-AKA (RFC 4187, Milenage) for the ePDG (DER/DEA), persisting
/// every SQN before its challenge leaves; authorizes APNs and names their gateway
/// (AAR/AAA, MIP6-Agent-Info); ends sessions (STR/STA). For users of another realm it
/// acts as the visited AAA: it relays their requests to the home AAA configured for that
/// realm and adds its own (visited) gateway to the successful answers.
///
/// Only the peers listed in `[[peers]]` (Origin-Host and source address, and over TLS a
/// certificate naming that Origin-Host) get past the CER: any other gets a CEA with
/// DIAMETER_UNKNOWN_PEER (3010) and is disconnected. No `[[peers]]`: nobody is admitted.
#[derive(Debug, Parser)]
#[command(name = "aaa-stub", version)]
struct Cli {
    /// The configuration file (TOML): origin_host, origin_realm, listen, subscribers,
    /// sqn_state, [gateways] (APN -> gateway address), [home_realms] (realm -> home AAA
    /// address, visited role), relay_timeout_secs, [[peers]] (who may connect),
    /// max_connections, cer_timeout_secs, [tls]. See aaa.example.toml.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "generate_lab_pki"
    )]
    config: Option<PathBuf>,

    /// Write a lab PKI into DIR and exit: a fresh CA (ca.pem) and, for each
    /// --lab-pki-host, HOST.pem and HOST.key (mode 0600) for `[tls]`.
    #[arg(long, value_name = "DIR", requires = "lab_pki_host")]
    generate_lab_pki: Option<PathBuf>,

    /// A Diameter identity (Origin-Host) to certify with --generate-lab-pki; repeat.
    #[arg(long, value_name = "HOST")]
    lab_pki_host: Vec<String>,

    #[command(flatten)]
    settings: ConfigLayer,

    /// Log format: `human` (default) or `json` (one object per line). The level comes
    /// from RUST_LOG (default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,

    /// Record every Diameter message sent and received into this pcap file (one TCP
    /// segment per message; Wireshark/tshark decode it as Diameter). Connections over
    /// TLS are recorded as their plaintext messages on their real ports, so Wireshark
    /// shows them too (decode port 5658 as Diameter: `tshark -d tcp.port==5658,diameter`).
    /// The file is created mode 0600: it holds the MSKs.
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
    if let Some(dir) = &cli.generate_lab_pki {
        let files = pmip_node::tls::write_lab_pki(dir, &cli.lab_pki_host)
            .with_context(|| format!("writing the lab PKI into {}", dir.display()))?;
        for file in files {
            println!("{}", file.display());
        }
        return Ok(());
    }
    pmip_node::logging::init(Logging {
        format: cli.log_format,
        filter: "info",
        filter_source: "the default log level",
        output: LogOutput::Stdout,
    })?;
    let layers = Layers::load(cli.config.as_deref(), cli.settings.clone())
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
    let tls_listen = server
        .tls_local_addr()
        .transpose()
        .context("local TLS address")?
        .map(|a| a.to_string())
        .unwrap_or_default();
    if config.peers.is_empty() {
        warn!("no [[peers]] configured: every CER will be refused with DIAMETER_UNKNOWN_PEER");
    }
    // Installed once, before we say we listen, so no signal is lost between two accepts.
    let stop = terminate()?;
    info!(
        %listen,
        tls_listen,
        peers = config.peers.peers().len(),
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
