//! The ePDG's configuration, in the pattern every node follows (`pmip_node::config`):
//! [`ConfigLayer`] is both `mag.toml` (serde, unknown fields refused) and the
//! command-line flags that override it (clap, flattened into `main.rs`'s command line);
//! [`Config::resolve`] applies the defaults and checks the result into the [`Config`] the
//! driver runs with. An unknown or malformed field is an error naming the field and the
//! file; a value that cannot be used is an error naming the field and its flag or file.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use pmip_node::config::{Layer, Layers};
use pmip_node::pick;
use serde::Deserialize;

pub use pmip_node::config::ConfigError;
pub use pmip_node::logging::LogFormat;

/// One layer of settings: the file, or the flags over it (every field optional; the doc
/// comments are the flags' `--help`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ConfigLayer {
    /// Address and port for IKE (normally UDP 500).
    #[arg(long, value_name = "ADDR:PORT")]
    pub ike_listen: Option<SocketAddr>,

    /// Address and port for IKE after NAT detection and ESP-in-UDP (normally UDP 4500).
    #[arg(long, value_name = "ADDR:PORT")]
    pub natt_listen: Option<SocketAddr>,

    /// The AAA server's Diameter address (TCP, normally port 3868).
    #[arg(long, value_name = "ADDR:PORT")]
    pub aaa: Option<SocketAddr>,

    /// Our IPv4 address toward the LMAs (PBUs to UDP lma_port, RFC 5844).
    #[arg(long, value_name = "ADDR")]
    pub mh_local: Option<Ipv4Addr>,

    /// Our IPv6 address toward LMAs named by IPv6 address (raw Mobility Header socket,
    /// next header 135; needs root or CAP_NET_RAW).
    #[arg(long, value_name = "ADDR")]
    pub mh_local_v6: Option<std::net::Ipv6Addr>,

    /// The LMA's UDP port for the Mobility Header over IPv4 [default: 5436].
    #[arg(long, value_name = "PORT")]
    pub lma_port: Option<u16>,

    /// Diameter Origin-Host of the ePDG.
    #[arg(long, value_name = "FQDN")]
    pub origin_host: Option<String>,

    /// Diameter Origin-Realm of the ePDG.
    #[arg(long, value_name = "REALM")]
    pub origin_realm: Option<String>,

    /// Diameter Destination-Realm (the AAA's realm).
    #[arg(long, value_name = "REALM")]
    pub destination_realm: Option<String>,

    /// Our IKE identity (IDr, FQDN) when the UE names none; also the lab certificate's name.
    #[arg(long, value_name = "FQDN")]
    pub ike_identity: Option<String>,

    /// IKE suites in preference order, comma-separated, strongSwan style
    /// (e.g. aes256gcm16-prfsha256-ecp256,aes128-sha256-prfsha256-modp2048).
    #[arg(long, value_name = "SUITES", value_delimiter = ',')]
    pub ike_suites: Option<Vec<String>>,

    /// The APN for UEs whose IDr names none.
    #[arg(long, value_name = "APN")]
    pub default_apn: Option<String>,

    /// DNS server for UEs (repeat for more); replaces the file's list.
    #[arg(long, value_name = "ADDR")]
    pub dns: Option<Vec<IpAddr>>,

    /// P-CSCF for UEs (repeat for more); replaces the file's list.
    #[arg(long, value_name = "ADDR")]
    pub pcscf: Option<Vec<IpAddr>>,

    /// Our certificate (DER) for UEs without EAP-only authentication.
    #[arg(long, value_name = "FILE", requires = "private_key")]
    pub certificate: Option<PathBuf>,

    /// The PKCS#8 ECDSA P-256 key (DER) of --certificate.
    #[arg(long, value_name = "FILE", requires = "certificate")]
    pub private_key: Option<PathBuf>,

    /// Milliseconds a DEA or AAA may take before the AAA counts as down.
    #[arg(long, value_name = "MS")]
    pub diameter_timeout_ms: Option<u64>,

    /// First PBU retransmission delay in milliseconds (doubling after).
    #[arg(long, value_name = "MS")]
    pub pbu_retransmit_ms: Option<u64>,

    /// PBU retransmissions before a registration fails.
    #[arg(long, value_name = "N")]
    pub pbu_max_retransmissions: Option<u32>,

    /// Binding lifetime asked of the LMA, in seconds [default: 3600].
    #[arg(long, value_name = "SECS")]
    pub binding_lifetime_secs: Option<u32>,

    /// An IKE SA not authenticated within this many seconds is dropped [default: 60].
    #[arg(long, value_name = "SECS")]
    pub half_open_timeout_secs: Option<u64>,

    /// Above N half-open IKE SAs, IKE_SA_INIT must carry a cookie [default: 1000].
    #[arg(long, value_name = "N")]
    pub cookie_threshold: Option<usize>,

    /// Liveness check of attached UEs every SECS seconds (0 = off) [default: 60].
    #[arg(long, value_name = "SECS")]
    pub liveness_interval_secs: Option<u64>,

    /// First retransmission of our IKE requests in milliseconds (doubling) [default: 500].
    #[arg(long, value_name = "MS")]
    pub ike_retransmit_ms: Option<u64>,

    /// IKE retransmissions before the SA is given up [default: 5].
    #[arg(long, value_name = "N")]
    pub ike_max_retransmissions: Option<u32>,

    /// Record the signaling (IKE, Diameter, Mobility Header) to this pcap file.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,

    /// Write Wireshark IKEv2 decryption records (ikev2_decryption_table) to this file.
    #[arg(long, value_name = "FILE")]
    pub keylog: Option<PathBuf>,

    /// Keep a JSON summary of the state in this file (IKE SAs, attached UEs and their
    /// addresses, bindings, AAA sessions), rewritten whenever it changes.
    #[arg(long, value_name = "FILE")]
    pub status_file: Option<PathBuf>,

    /// Log format.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Take EAP-only authentication (RFC 5998) from UEs that offer it (file only).
    #[arg(skip)]
    pub eap_only_auth: Option<bool>,

    /// Run the user-space data plane (file; the flag is --no-data-plane).
    #[arg(skip)]
    pub data_plane: Option<bool>,
}

impl Layer for ConfigLayer {}

/// The ePDG's settings, checked, with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// IKE on UDP 500.
    pub ike_listen: SocketAddr,
    /// IKE after NAT detection (and ESP-in-UDP) on UDP 4500.
    pub natt_listen: SocketAddr,
    /// The AAA server's Diameter address (TCP).
    pub aaa: SocketAddr,
    /// Our IPv4 address toward the LMAs (PBUs leave from an ephemeral UDP port on it).
    pub mh_local: Ipv4Addr,
    /// Our IPv6 address toward LMAs named by an IPv6 address: the Mobility Header goes
    /// directly in IPv6 (next header 135, raw socket: root or CAP_NET_RAW). Unset: no
    /// IPv6 transport.
    pub mh_local_v6: Option<std::net::Ipv6Addr>,
    /// The LMA's UDP port for IPv4 transport (RFC 5844).
    pub lma_port: u16,
    /// Diameter identities.
    pub origin_host: String,
    pub origin_realm: String,
    pub destination_realm: String,
    /// Our IKE identity (IDr) when the UE names none.
    pub ike_identity: String,
    /// The APN for UEs whose IDr names none.
    pub default_apn: Option<String>,
    /// Given to UEs in the CFG_REPLY.
    pub dns: Vec<IpAddr>,
    pub pcscf: Vec<IpAddr>,
    /// IKE suites in preference order, strongSwan style (e.g. aes256gcm16-prfsha256-ecp256).
    pub ike_suites: Vec<String>,
    /// How long a DEA or AAA may take, in milliseconds.
    pub diameter_timeout_ms: u64,
    /// First PBU retransmission delay, in milliseconds (doubling after).
    pub pbu_retransmit_ms: u64,
    /// PBU retransmissions before the registration fails.
    pub pbu_max_retransmissions: u32,
    /// Binding lifetime asked of the LMA, in seconds.
    pub binding_lifetime_secs: u32,
    /// An IKE SA not authenticated within this many seconds is dropped.
    pub half_open_timeout_secs: u64,
    /// Above this many half-open IKE SAs, IKE_SA_INIT requests must carry a cookie
    /// (RFC 7296 section 2.6).
    pub cookie_threshold: usize,
    /// Liveness check (empty INFORMATIONAL) of every attached UE this often, in seconds;
    /// a UE that does not answer is detached (0 = never).
    pub liveness_interval_secs: u64,
    /// First retransmission of our IKE requests, in milliseconds (doubling after), and
    /// how many retransmissions before the SA is given up.
    pub ike_retransmit_ms: u64,
    pub ike_max_retransmissions: u32,
    /// Our certificate (DER) and PKCS#8 ECDSA P-256 key (DER) for UEs that do not offer
    /// EAP-only authentication. Without them a lab certificate is generated at start.
    pub certificate: Option<PathBuf>,
    pub private_key: Option<PathBuf>,
    /// Take EAP-only authentication (RFC 5998) from UEs that offer it (default). false:
    /// always authenticate with the certificate (TS 33.402 section 8.2.2), naming our
    /// `ike_identity` in IDr.
    pub eap_only_auth: bool,
    /// Record signaling (IKE, Mobility Header) to this pcap file.
    pub pcap: Option<PathBuf>,
    /// Write Wireshark IKEv2 decryption records here.
    pub keylog: Option<PathBuf>,
    /// Keep a JSON summary of the ePDG's state here (IKE SAs, attached UEs with their
    /// addresses, bindings, AAA sessions), rewritten whenever it changes.
    pub status_file: Option<PathBuf>,
    pub log_format: LogFormat,
    /// Run the user-space data plane (ESP-in-UDP on port 4500 <-> GRE to the LMAs over a
    /// raw IPv4 socket for IP protocol 47 at `mh_local`, which needs root or
    /// CAP_NET_RAW). When the raw socket cannot be opened the ePDG still attaches UEs,
    /// with an error in the log, and drops their traffic.
    pub data_plane: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ike_listen: SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 500),
            natt_listen: SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 4500),
            aaa: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 3868),
            mh_local: Ipv4Addr::LOCALHOST,
            mh_local_v6: None,
            lma_port: 5436,
            origin_host: "epdg.epc.mnc015.mcc234.3gppnetwork.org".into(),
            origin_realm: "epc.mnc015.mcc234.3gppnetwork.org".into(),
            destination_realm: "epc.mnc015.mcc234.3gppnetwork.org".into(),
            ike_identity: "epdg.epc.mnc015.mcc234.pub.3gppnetwork.org".into(),
            default_apn: None,
            dns: Vec::new(),
            pcscf: Vec::new(),
            ike_suites: Vec::new(),
            diameter_timeout_ms: 5000,
            pbu_retransmit_ms: 1000,
            pbu_max_retransmissions: 3,
            binding_lifetime_secs: 3600,
            half_open_timeout_secs: 60,
            cookie_threshold: 1000,
            liveness_interval_secs: 60,
            ike_retransmit_ms: 500,
            ike_max_retransmissions: 5,
            certificate: None,
            private_key: None,
            eap_only_auth: true,
            pcap: None,
            keylog: None,
            status_file: None,
            log_format: LogFormat::Human,
            data_plane: true,
        }
    }
}

impl Config {
    /// The flags over the file, with defaults, checked.
    pub fn resolve(layers: &Layers<ConfigLayer>) -> Result<Config, ConfigError> {
        let d = Config::default();
        macro_rules! take {
            ($($field:ident),* ; $($optional:ident),*) => {
                Config {
                    $( $field: pick!(layers, $field).or(d.$field), )*
                    $( $optional: pick!(layers, $optional).value.or(d.$optional), )*
                }
            };
        }
        let config = take!(
            ike_listen, natt_listen, aaa, mh_local, lma_port, origin_host, origin_realm,
            destination_realm, ike_identity, dns, pcscf, ike_suites, diameter_timeout_ms,
            pbu_retransmit_ms, pbu_max_retransmissions, binding_lifetime_secs,
            half_open_timeout_secs, cookie_threshold, liveness_interval_secs, ike_retransmit_ms,
            ike_max_retransmissions, eap_only_auth, log_format, data_plane;
            mh_local_v6, default_apn, certificate, private_key, pcap, keylog, status_file
        );
        let certificate = pick!(layers, certificate);
        if config.certificate.is_some() != config.private_key.is_some() {
            return Err(certificate.invalid("certificate and private_key go together"));
        }
        if config.mh_local.is_unspecified() {
            return Err(pick!(layers, mh_local).invalid(
                "must be a specific address: it is the IPv4 Proxy-CoA the LMA binds \
                     to and the GRE tunnel endpoint (RFC 5844 section 3.1)",
            ));
        }
        let suites = pick!(layers, ike_suites);
        for s in &config.ike_suites {
            s.parse::<pmip_common::ike::IkeSuite>()
                .map_err(|e| suites.invalid(format!("{s:?}: {e}")))?;
        }
        Ok(config)
    }

    /// Reads and checks a file (no flags).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::resolve(&Layers::load(Some(path), ConfigLayer::default())?)
    }

    /// Parses and checks a file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Self::resolve(&Layers::parse(text, path, ConfigLayer::default())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_parses() {
        let c = Config::parse(
            include_str!("../mag.example.toml"),
            Path::new("mag.example.toml"),
        )
        .unwrap();
        assert_eq!(c.default_apn.as_deref(), Some("internet"));
        assert_eq!(c.dns.len(), 2);
    }

    #[test]
    fn flags_override_the_file_and_checks_name_the_place() {
        let flags = ConfigLayer {
            lma_port: Some(6000),
            dns: Some(vec!["192.0.2.53".parse().unwrap()]),
            ..ConfigLayer::default()
        };
        let text = include_str!("../mag.example.toml");
        let layers = Layers::parse(text, Path::new("mag.toml"), flags).unwrap();
        let c = Config::resolve(&layers).unwrap();
        assert_eq!((c.lma_port, c.dns.len()), (6000, 1));
        assert_eq!(c.ike_max_retransmissions, 5);
        let flags = ConfigLayer {
            mh_local: Some(Ipv4Addr::UNSPECIFIED),
            ..ConfigLayer::default()
        };
        let layers = Layers::parse(text, Path::new("mag.toml"), flags).unwrap();
        let err = Config::resolve(&layers).unwrap_err().to_string();
        assert!(err.starts_with("--mh-local: mh_local:"), "{err}");
        let err = Config::parse("ike_suites = [\"rot13\"]\n", Path::new("mag.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("mag.toml: ike_suites:"), "{err}");
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = Config::parse("ike_listn = \"127.0.0.1:500\"\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ike_listn") && e.contains("x.toml"), "{e}");
    }
}
