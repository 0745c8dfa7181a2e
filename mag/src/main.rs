//! `mag --config mag.toml`: the ePDG. Reads the configuration, binds the IKE and
//! Mobility Header sockets, connects to the AAA and runs until SIGINT/SIGTERM.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use mag::config::{Config, ConfigLayer};
use mag::driver::Epdg;
use pmip_node::config::Layers;
use pmip_node::logging::{LogOutput, Logging};

/// The ePDG of the PMIPv6 S2b gateway pair, acting as MAG (TS 23.402, TS 24.302,
/// RFC 5213).
///
/// Answers UEs with IKEv2 (UDP 500 and 4500) and authenticates them with EAP-AKA through
/// the 3GPP AAA server (Diameter SWm, DER/DEA), asks the AAA for the APN's gateway
/// (AAR/AAA), registers the UE at that LMA with a Proxy Binding Update (IPv4 transport,
/// UDP 5436) and only after the LMA's Proxy Binding Acknowledgement sends the
/// EAP-Success and the addresses the LMA allocated. Any failure ends IKE_AUTH with an
/// error notify and removes the Diameter session (STR) and binding (lifetime 0).
///
/// Settings come from the --config file (see mag.example.toml); every flag below
/// overrides the file field of the same name. Logs go to standard error; one line per
/// attach ("UE attached") gives the UE's addresses.
#[derive(Debug, Parser)]
#[command(name = "mag", version, about, long_about)]
struct Cli {
    /// The configuration file (TOML; see mag.example.toml). Without it, defaults and
    /// flags are used.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(flatten)]
    settings: ConfigLayer,

    /// Run without the user-space data plane (no raw GRE socket; UE traffic dropped).
    #[arg(long)]
    no_data_plane: bool,

    /// Write a lab PKI into DIR and exit: ca.der (a CA certificate), epdg.der (the
    /// ePDG's certificate for ike_identity, signed by the CA) and epdg.key.der (its
    /// PKCS#8 ECDSA P-256 key). Use the last two as certificate / private_key and give
    /// ca.der to the UEs (epdg_ca in ue.toml).
    #[arg(long, value_name = "DIR")]
    generate_lab_pki: Option<PathBuf>,
}

/// The flags over the file, checked.
fn config(cli: Cli) -> Result<Config> {
    let mut flags = cli.settings;
    if cli.no_data_plane {
        flags.data_plane = Some(false);
    }
    let layers = Layers::load(cli.config.as_deref(), flags)?;
    Ok(Config::resolve(&layers)?)
}

/// One thread, as the LMA: the driver is one task, and a runtime with more workers only
/// adds wake-ups between them for each datagram.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mag: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    if let Some(dir) = cli.generate_lab_pki.clone() {
        let identity = match &cli.config {
            Some(path) => Config::load(path)?.ike_identity,
            None => Config::default().ike_identity,
        };
        mag::pki::write_lab_pki(&dir, &identity)?;
        println!(
            "wrote {0}/ca.der, {0}/epdg.der, {0}/epdg.key.der for {identity}",
            dir.display()
        );
        return Ok(());
    }
    let config = config(cli).context("configuration")?;
    pmip_node::logging::init(Logging {
        format: config.log_format,
        filter: "info",
        filter_source: "the default log level",
        output: LogOutput::Stderr,
    })?;
    let epdg = Epdg::bind(config).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        }
    };
    epdg.run(stop).await
}
