//! `mag.toml`: every setting of the ePDG, with defaults; flags override the file (see
//! `main.rs`). An unknown or malformed field is an error naming the field and the file.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Everything that can go wrong reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// The ePDG's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
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
    /// Reads and checks a file; unknown fields are errors.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.certificate.is_some() != self.private_key.is_some() {
            return Err(ConfigError::Invalid(
                "certificate and private_key go together".into(),
            ));
        }
        if self.mh_local.is_unspecified() {
            return Err(ConfigError::Invalid(
                "mh_local must be a specific address (the MH checksum covers it)".into(),
            ));
        }
        for s in &self.ike_suites {
            s.parse::<pmip_common::ike::IkeSuite>()
                .map_err(|e| ConfigError::Invalid(format!("ike_suites: {s:?}: {e}")))?;
        }
        Ok(())
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
        c.validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = Config::parse("ike_listn = \"127.0.0.1:500\"\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ike_listn") && e.contains("x.toml"), "{e}");
    }
}
