//! `mag --config mag.toml`: the ePDG. Reads the configuration, binds the IKE and
//! Mobility Header sockets, connects to the AAA and runs until SIGINT/SIGTERM.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use mag::config::{Config, LogFormat};
use mag::driver::Epdg;

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

    /// Address and port for IKE (normally UDP 500).
    #[arg(long, value_name = "ADDR:PORT")]
    ike_listen: Option<SocketAddr>,

    /// Address and port for IKE after NAT detection and ESP-in-UDP (normally UDP 4500).
    #[arg(long, value_name = "ADDR:PORT")]
    natt_listen: Option<SocketAddr>,

    /// The AAA server's Diameter address (TCP, normally port 3868).
    #[arg(long, value_name = "ADDR:PORT")]
    aaa: Option<SocketAddr>,

    /// Our IPv4 address toward the LMAs (PBUs to UDP lma_port, RFC 5844).
    #[arg(long, value_name = "ADDR")]
    mh_local: Option<Ipv4Addr>,

    /// Our IPv6 address toward LMAs named by IPv6 address (raw Mobility Header socket,
    /// next header 135; needs root or CAP_NET_RAW).
    #[arg(long, value_name = "ADDR")]
    mh_local_v6: Option<std::net::Ipv6Addr>,

    /// The LMA's UDP port for the Mobility Header over IPv4 [default: 5436].
    #[arg(long, value_name = "PORT")]
    lma_port: Option<u16>,

    /// Diameter Origin-Host of the ePDG.
    #[arg(long, value_name = "FQDN")]
    origin_host: Option<String>,

    /// Diameter Origin-Realm of the ePDG.
    #[arg(long, value_name = "REALM")]
    origin_realm: Option<String>,

    /// Diameter Destination-Realm (the AAA's realm).
    #[arg(long, value_name = "REALM")]
    destination_realm: Option<String>,

    /// Our IKE identity (IDr, FQDN) when the UE names none; also the lab certificate's name.
    #[arg(long, value_name = "FQDN")]
    ike_identity: Option<String>,

    /// IKE suites in preference order, comma-separated, strongSwan style
    /// (e.g. aes256gcm16-prfsha256-ecp256,aes128-sha256-prfsha256-modp2048).
    #[arg(long, value_name = "SUITES", value_delimiter = ',')]
    ike_suites: Vec<String>,

    /// The APN for UEs whose IDr names none.
    #[arg(long, value_name = "APN")]
    default_apn: Option<String>,

    /// DNS server for UEs (repeat for more); replaces the file's list.
    #[arg(long, value_name = "ADDR")]
    dns: Vec<IpAddr>,

    /// P-CSCF for UEs (repeat for more); replaces the file's list.
    #[arg(long, value_name = "ADDR")]
    pcscf: Vec<IpAddr>,

    /// Our certificate (DER) for UEs without EAP-only authentication.
    #[arg(long, value_name = "FILE", requires = "private_key")]
    certificate: Option<PathBuf>,

    /// The PKCS#8 ECDSA P-256 key (DER) of --certificate.
    #[arg(long, value_name = "FILE", requires = "certificate")]
    private_key: Option<PathBuf>,

    /// Milliseconds a DEA or AAA may take before the AAA counts as down.
    #[arg(long, value_name = "MS")]
    diameter_timeout_ms: Option<u64>,

    /// First PBU retransmission delay in milliseconds (doubling after).
    #[arg(long, value_name = "MS")]
    pbu_retransmit_ms: Option<u64>,

    /// PBU retransmissions before a registration fails.
    #[arg(long, value_name = "N")]
    pbu_max_retransmissions: Option<u32>,

    /// Binding lifetime asked of the LMA, in seconds [default: 3600].
    #[arg(long, value_name = "SECS")]
    binding_lifetime_secs: Option<u32>,

    /// An IKE SA not authenticated within this many seconds is dropped [default: 60].
    #[arg(long, value_name = "SECS")]
    half_open_timeout_secs: Option<u64>,

    /// Above N half-open IKE SAs, IKE_SA_INIT must carry a cookie [default: 1000].
    #[arg(long, value_name = "N")]
    cookie_threshold: Option<usize>,

    /// Liveness check of attached UEs every SECS seconds (0 = off) [default: 60].
    #[arg(long, value_name = "SECS")]
    liveness_interval_secs: Option<u64>,

    /// First retransmission of our IKE requests in milliseconds (doubling) [default: 500].
    #[arg(long, value_name = "MS")]
    ike_retransmit_ms: Option<u64>,

    /// IKE retransmissions before the SA is given up [default: 5].
    #[arg(long, value_name = "N")]
    ike_max_retransmissions: Option<u32>,

    /// Record the signaling (IKE, Diameter, Mobility Header) to this pcap file.
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,

    /// Write Wireshark IKEv2 decryption records (ikev2_decryption_table) to this file.
    #[arg(long, value_name = "FILE")]
    keylog: Option<PathBuf>,

    /// Keep a JSON summary of the state in this file (IKE SAs, attached UEs and their
    /// addresses, bindings, AAA sessions), rewritten whenever it changes.
    #[arg(long, value_name = "FILE")]
    status_file: Option<PathBuf>,

    /// Log format.
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,

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

fn config(cli: Cli) -> Result<Config> {
    let mut c = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = cli.$f { c.$f = v; } )* };
    }
    set!(
        ike_listen,
        natt_listen,
        aaa,
        mh_local,
        lma_port,
        origin_host,
        origin_realm,
        destination_realm,
        diameter_timeout_ms,
        pbu_retransmit_ms,
        pbu_max_retransmissions,
        log_format,
        ike_identity,
        binding_lifetime_secs,
        half_open_timeout_secs,
        cookie_threshold,
        liveness_interval_secs,
        ike_retransmit_ms,
        ike_max_retransmissions
    );
    macro_rules! set_opt {
        ($($f:ident),*) => { $( if cli.$f.is_some() { c.$f = cli.$f; } )* };
    }
    set_opt!(
        default_apn,
        certificate,
        private_key,
        pcap,
        keylog,
        mh_local_v6
    );
    if cli.no_data_plane {
        c.data_plane = false;
    }
    if !cli.ike_suites.is_empty() {
        c.ike_suites = cli.ike_suites;
    }
    if !cli.dns.is_empty() {
        c.dns = cli.dns;
    }
    if !cli.pcscf.is_empty() {
        c.pcscf = cli.pcscf;
    }
    c.validate()?;
    Ok(c)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::env::var_os("NO_COLOR").is_none());
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
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
    init_logging(config.log_format);
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
