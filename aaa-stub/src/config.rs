//! The AAA server's configuration and its authorization policy: which gateway serves an
//! APN in this realm, and which home AAA serves the users of another realm (visited
//! role). The file (`--config aaa.toml`) and the flags over it follow the pattern every
//! node follows (`pmip_node::config`): [`ConfigLayer`] is both, [`AaaConfig::resolve`]
//! checks them. Unknown or bad fields are errors that name the field and the file.
//!
//! Beyond the policy, the Diameter transport: the peers allowed to connect
//! ([`crate::peers`]: `[[peers]]`), a cap on connections and the time a connection gets
//! to send its CER, and TLS (`[tls]`, RFC 6733 section 13) for a second listener and for
//! the links to home AAAs that ask for it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use pmip_node::config::{Layer, Layers};
use pmip_node::pick;
use serde::Deserialize;

use crate::peers::{KnownPeer, PeerTable};

pub use pmip_node::config::ConfigError;

/// One layer of settings: the file, or the flags over it (the doc comments of the fields
/// with a flag are its `--help`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ConfigLayer {
    /// Diameter identity: Origin-Host (a FQDN).
    #[arg(skip)]
    pub origin_host: Option<String>,
    /// Diameter identity: Origin-Realm.
    #[arg(skip)]
    pub origin_realm: Option<String>,
    /// Listen on this TCP address for Diameter peers, overriding `listen` in the file
    /// (default 0.0.0.0:3868).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// The subscriber file.
    #[arg(skip)]
    pub subscribers: Option<PathBuf>,
    /// Where the last SQN of each subscriber is persisted.
    #[arg(skip)]
    pub sqn_state: Option<PathBuf>,
    /// APN -> gateway.
    #[arg(skip)]
    pub gateways: Option<BTreeMap<String, IpAddr>>,
    /// Realm -> home AAA (visited role).
    #[arg(skip)]
    pub home_realms: Option<BTreeMap<String, HomeRealm>>,
    /// The Diameter peers allowed to connect (`[[peers]]`).
    #[arg(skip)]
    pub peers: Option<Vec<KnownPeer>>,
    /// Peer connections open at once, at most; one more is closed as soon as it is
    /// accepted (default 1024), overriding `max_connections` in the file.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Seconds a new connection gets to finish its TLS handshake and send its CER before
    /// it is closed (default 10), overriding `cer_timeout_secs` in the file.
    #[arg(long, value_name = "SECS")]
    pub cer_timeout_secs: Option<u64>,
    /// TLS (`[tls]`): the certificate, key and CA, and the TLS listener.
    #[arg(skip)]
    pub tls: Option<TlsConfig>,
    /// Seconds to wait for a home AAA before answering DIAMETER_UNABLE_TO_DELIVER,
    /// overriding `relay_timeout_secs` in the file.
    #[arg(long, value_name = "SECS")]
    pub relay_timeout_secs: Option<u64>,
    /// The USIMs' SQN profile (TS 33.102 annex C): the length of IND in bits.
    #[arg(skip)]
    pub sqn_ind_bits: Option<u8>,
    /// Δ of TS 33.102 annex C.2.1, in units of SEQ.
    #[arg(skip)]
    pub sqn_delta: Option<u64>,
}

impl Layer for ConfigLayer {
    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        let tls = self
            .tls
            .iter_mut()
            .flat_map(|t| [&mut t.certificate, &mut t.private_key, &mut t.ca]);
        self.subscribers
            .iter_mut()
            .chain(self.sqn_state.iter_mut())
            .chain(tls)
            .collect()
    }
}

/// The `[tls]` table: Diameter over TLS (RFC 6733 section 13, TLS 1.2 or 1.3 with
/// mutual certificate authentication). Files are PEM or DER; relative paths are
/// relative to the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Also listen here for TLS connections (TLS from the first byte, RFC 6733 section
    /// 2.1: port 5658). Without it only the home links use TLS.
    pub listen: Option<SocketAddr>,
    /// This AAA's certificate (chain), presented to peers and to home AAAs.
    pub certificate: PathBuf,
    /// Its private key (PKCS#8, or SEC1 / PKCS#1 in PEM).
    pub private_key: PathBuf,
    /// The CA that peers' and home AAAs' certificates must chain to.
    pub ca: PathBuf,
}

impl TlsConfig {
    /// The files as `pmip_node::tls` takes them.
    pub fn credentials(&self) -> pmip_node::tls::Credentials {
        pmip_node::tls::Credentials {
            certificate: self.certificate.clone(),
            private_key: self.private_key.clone(),
            ca: self.ca.clone(),
        }
    }
}

/// A `[home_realms]` value: `"ADDR:PORT"` (plain TCP), or a table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum HomeRealm {
    Address(SocketAddr),
    Table(HomeAaa),
}

/// A home AAA (visited role): where it listens and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeAaa {
    /// Its Diameter address (3868 plain, 5658 TLS by convention).
    pub address: SocketAddr,
    /// Connect with TLS (needs `[tls]` for our certificate and the CA). Default false.
    #[serde(default)]
    pub tls: bool,
    /// Its Origin-Host: with TLS, the name its certificate must carry (required then);
    /// when given, its CEA must carry it.
    pub host: Option<String>,
}

impl From<SocketAddr> for HomeAaa {
    fn from(address: SocketAddr) -> Self {
        HomeAaa {
            address,
            tls: false,
            host: None,
        }
    }
}

/// The AAA's settings, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct AaaConfig {
    /// Diameter identity: Origin-Host (a FQDN).
    pub origin_host: String,
    /// Diameter identity: Origin-Realm, the realm whose subscribers this AAA serves,
    /// e.g. `epc.mnc001.mcc001.3gppnetwork.org`.
    pub origin_realm: String,
    /// Where the Diameter server listens (TCP, RFC 6733; 3868 by default).
    pub listen: SocketAddr,
    /// The subscriber file (relative paths are relative to the config file).
    pub subscribers: PathBuf,
    /// Where the last SQN of each subscriber is persisted.
    pub sqn_state: PathBuf,
    /// The gateway (LMA / PDN GW) serving each APN for this realm's own subscribers,
    /// and, in the visited role, the visited gateway picked for roamers.
    pub gateways: BTreeMap<String, IpAddr>,
    /// Visited role: the home AAA of each other realm, by realm name.
    pub home_realms: BTreeMap<String, HomeAaa>,
    /// The peers allowed to connect. Empty (no `[[peers]]`): every CER is refused.
    pub peers: PeerTable,
    /// Peer connections open at once, at most.
    pub max_connections: usize,
    /// Seconds a new connection gets to finish TLS and send its CER.
    pub cer_timeout_secs: u64,
    /// TLS: the TLS listener, and the credentials of it and of the TLS home links.
    pub tls: Option<TlsConfig>,
    /// Seconds to wait for a home AAA before answering DIAMETER_UNABLE_TO_DELIVER.
    pub relay_timeout_secs: u64,
    /// The USIMs' SQN profile (TS 33.102 annex C), for resynchronisation: the length of
    /// IND in bits (0: one counter, as the project's software USIMs keep; 5 for USIMs
    /// with an array of 32 SEQ values). At most 47.
    pub sqn_ind_bits: u8,
    /// Δ: how far above the USIM's highest SEQ a SEQ is still fresh (annex C.2.1), in
    /// units of SEQ. Default 2^28.
    pub sqn_delta: u64,
}

fn not_empty(value: &str) -> Result<(), String> {
    if value.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(())
    }
}

/// Defaults of the transport settings.
pub mod defaults {
    /// Peer connections open at once: an AAA has a handful of ePDGs and AAAs as peers.
    pub const MAX_CONNECTIONS: usize = 1024;
    /// Seconds to finish TLS and send the CER (the peer state machine's Wait-Conn-Ack /
    /// Wait-CER bound, RFC 6733 section 5.6).
    pub const CER_TIMEOUT_SECS: u64 = 10;
}

fn at_least_one(value: u64) -> Result<(), String> {
    match value {
        0 => Err("must be at least 1".into()),
        _ => Ok(()),
    }
}

impl AaaConfig {
    /// The flags over the file, with defaults, checked.
    pub fn resolve(layers: &Layers<ConfigLayer>) -> Result<Self, ConfigError> {
        let tls = pick!(layers, tls).value;
        let home_realms: BTreeMap<String, HomeAaa> = pick!(layers, home_realms)
            .or_default()
            .into_iter()
            .map(|(realm, home)| {
                let home = match home {
                    HomeRealm::Address(a) => HomeAaa::from(a),
                    HomeRealm::Table(t) => t,
                };
                (realm, home)
            })
            .collect();
        for (realm, home) in &home_realms {
            if home.tls && home.host.is_none() {
                return Err(layers.invalid(
                    "home_realms",
                    false,
                    format!("{realm}: tls = true needs host, the name its certificate carries"),
                ));
            }
            if home.tls && tls.is_none() {
                return Err(layers.invalid(
                    "home_realms",
                    false,
                    format!("{realm}: tls = true needs a [tls] table (certificate, key, CA)"),
                ));
            }
        }
        Ok(AaaConfig {
            origin_host: pick!(layers, origin_host)
                .check(|v| not_empty(v))?
                .required()?,
            origin_realm: pick!(layers, origin_realm)
                .check(|v| not_empty(v))?
                .required()?,
            listen: pick!(layers, listen).or(SocketAddr::from(([0, 0, 0, 0], 3868))),
            subscribers: pick!(layers, subscribers).required()?,
            sqn_state: pick!(layers, sqn_state).required()?,
            gateways: pick!(layers, gateways).or_default(),
            home_realms,
            peers: PeerTable::new(pick!(layers, peers).or_default()),
            max_connections: pick!(layers, max_connections)
                .check(|n| at_least_one(*n as u64))?
                .or(defaults::MAX_CONNECTIONS),
            cer_timeout_secs: pick!(layers, cer_timeout_secs)
                .check(|n| at_least_one(*n))?
                .or(defaults::CER_TIMEOUT_SECS),
            tls,
            relay_timeout_secs: pick!(layers, relay_timeout_secs).or(5),
            sqn_ind_bits: pick!(layers, sqn_ind_bits)
                .check(|bits| match bits {
                    0..=47 => Ok(()),
                    _ => Err("IND takes at most 47 of the 48 bits of SQN".into()),
                })?
                .or(0),
            sqn_delta: pick!(layers, sqn_delta)
                .check(|delta| match delta {
                    0 => Err("Δ must be at least 1".into()),
                    _ => Ok(()),
                })?
                .or(pmip_common::eap::DEFAULT_SQN_DELTA),
        })
    }

    /// Reads and checks the file (no flags); relative paths inside it become relative
    /// to it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::resolve(&Layers::load(Some(path), ConfigLayer::default())?)
    }

    /// The SQN profile the EAP-AKA server resynchronises with.
    pub fn sqn_profile(&self) -> pmip_common::eap::SqnProfile {
        pmip_common::eap::SqnProfile {
            ind_bits: self.sqn_ind_bits,
            delta: self.sqn_delta,
        }
    }

    /// The realm part of an NAI (`user@realm`), if it names another realm than ours,
    /// together with that realm's home AAA. `None` when the user is ours (or the NAI
    /// has no realm).
    pub fn home_aaa_for(&self, nai: &str) -> Option<(&str, SocketAddr)> {
        let realm = nai_realm(nai)?;
        if realm.eq_ignore_ascii_case(&self.origin_realm) {
            return None;
        }
        self.home_realms
            .iter()
            .find(|(name, _)| realm.eq_ignore_ascii_case(name) || realm_ends_with(realm, name))
            .map(|(name, home)| (name.as_str(), home.address))
    }

    /// The gateway serving `apn` for a subscriber allowed `allowed` APNs.
    pub fn gateway_for(&self, apn: &str, allowed: &[String]) -> Result<IpAddr, Authorization> {
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(apn)) {
            return Err(Authorization::NotSubscribed);
        }
        self.visited_gateway_for(apn)
            .ok_or(Authorization::NoGateway)
    }

    /// The gateway this realm picks for `apn`, whoever's subscriber it is.
    pub fn visited_gateway_for(&self, apn: &str) -> Option<IpAddr> {
        self.gateways
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(apn))
            .map(|(_, addr)| *addr)
    }
}

/// Why an APN is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Authorization {
    /// The subscriber has no subscription for the APN (TS 29.273
    /// DIAMETER_ERROR_USER_NO_APN_SUBSCRIPTION).
    #[error("the subscriber has no subscription for this APN")]
    NotSubscribed,
    /// No gateway is configured for the APN in this realm.
    #[error("no gateway serves this APN")]
    NoGateway,
}

/// The realm of an NAI: what follows the last `@`.
pub fn nai_realm(nai: &str) -> Option<&str> {
    nai.rsplit_once('@')
        .map(|(_, realm)| realm)
        .filter(|r| !r.is_empty())
}

/// Whether `realm` is `suffix` or a sub-domain of it (`nai.epc.x` ends with `epc.x`).
fn realm_ends_with(realm: &str, suffix: &str) -> bool {
    let (realm, suffix) = (realm.to_ascii_lowercase(), suffix.to_ascii_lowercase());
    realm
        .strip_suffix(&suffix)
        .is_some_and(|head| head.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VISITED: &str = r#"
origin_host = "aaa.visited.example"
origin_realm = "epc.mnc002.mcc001.3gppnetwork.org"
listen = "127.0.0.20:3868"
subscribers = "subscribers.toml"
sqn_state = "/var/lib/aaa/sqn.toml"
[gateways]
internet = "127.0.0.21"
[home_realms]
"epc.mnc001.mcc001.3gppnetwork.org" = "127.0.0.10:3868"
"#;

    fn load(text: &str) -> Result<AaaConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aaa.toml");
        std::fs::write(&path, text).unwrap();
        AaaConfig::load(&path)
    }

    #[test]
    fn visited_role_finds_the_home_aaa_by_realm() {
        let config = load(VISITED).unwrap();
        assert!(
            config.subscribers.ends_with("subscribers.toml") && config.subscribers.is_absolute()
        );
        assert_eq!(config.sqn_state, PathBuf::from("/var/lib/aaa/sqn.toml"));
        let home = config.home_aaa_for("0001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org");
        assert_eq!(
            home,
            Some((
                "epc.mnc001.mcc001.3gppnetwork.org",
                "127.0.0.10:3868".parse().unwrap()
            ))
        );
        assert_eq!(
            config.home_aaa_for("0001020000000001@epc.mnc002.mcc001.3gppnetwork.org"),
            None
        );
        assert_eq!(config.home_aaa_for("0001020000000001"), None);
        assert_eq!(
            config.home_aaa_for("x@evil-epc.mnc001.mcc001.3gppnetwork.org"),
            None
        );
    }

    #[test]
    fn apn_policy() {
        let config = load(VISITED).unwrap();
        let allowed = vec!["internet".to_string(), "ims".to_string()];
        assert_eq!(
            config.gateway_for("Internet", &allowed),
            Ok("127.0.0.21".parse().unwrap())
        );
        assert_eq!(
            config.gateway_for("ims", &allowed),
            Err(Authorization::NoGateway)
        );
        assert_eq!(
            config.gateway_for("corp", &allowed),
            Err(Authorization::NotSubscribed)
        );
    }

    #[test]
    fn unknown_field_is_named() {
        let err = load(&format!("listen_port = 3\n{VISITED}"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("listen_port") && err.contains("aaa.toml"),
            "{err}"
        );
        let err = load(&VISITED.replace("origin_host = \"aaa.visited.example\"", ""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("aaa.toml: origin_host: missing"), "{err}");
    }

    #[test]
    fn the_sqn_profile_defaults_to_one_counter_and_is_checked() {
        let config = load(VISITED).unwrap();
        assert_eq!(
            config.sqn_profile(),
            pmip_common::eap::SqnProfile::default()
        );
        let config = load(&format!("sqn_ind_bits = 5\nsqn_delta = 1024\n{VISITED}")).unwrap();
        assert_eq!(
            config.sqn_profile(),
            pmip_common::eap::SqnProfile {
                ind_bits: 5,
                delta: 1024
            }
        );
        for (bad, field) in [
            ("sqn_ind_bits = 48\n", "sqn_ind_bits"),
            ("sqn_delta = 0\n", "sqn_delta"),
        ] {
            let err = load(&format!("{bad}{VISITED}")).unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn peers_tls_and_home_realm_tables() {
        let text = format!(
            "max_connections = 8\ncer_timeout_secs = 3\n{VISITED}\
             \"epc.mnc003.mcc001.3gppnetwork.org\" = {{ address = \"127.0.0.30:5658\", tls = true, host = \"aaa.three\" }}\n\
             [[peers]]\norigin_host = \"epdg.test\"\naddress = \"127.0.0.0/8\"\n\
             [tls]\nlisten = \"127.0.0.20:5658\"\ncertificate = \"aaa.pem\"\nprivate_key = \"aaa.key\"\nca = \"ca.pem\"\n"
        );
        let config = load(&text).unwrap();
        assert_eq!((config.max_connections, config.cer_timeout_secs), (8, 3));
        assert_eq!(config.peers.peers().len(), 1);
        let three = &config.home_realms["epc.mnc003.mcc001.3gppnetwork.org"];
        assert!(three.tls && three.host.as_deref() == Some("aaa.three"));
        let plain = &config.home_realms["epc.mnc001.mcc001.3gppnetwork.org"];
        assert!(!plain.tls && plain.address == "127.0.0.10:3868".parse().unwrap());
        let tls = config.tls.as_ref().unwrap();
        assert!(tls.certificate.is_absolute() && tls.ca.ends_with("ca.pem"));
        // TLS toward a home AAA needs its name and our [tls].
        let err = load(&text.replace(", host = \"aaa.three\"", "")).unwrap_err();
        assert!(err.to_string().contains("needs host"), "{err}");
        let no_tls = &text[..text.find("[tls]").unwrap()];
        let err = load(no_tls).unwrap_err();
        assert!(err.to_string().contains("[tls]"), "{err}");
        for bad in ["max_connections = 0\n", "cer_timeout_secs = 0\n"] {
            assert!(load(&format!("{bad}{VISITED}")).is_err(), "{bad}");
        }
        // Without [[peers]] the table is empty: nobody is admitted.
        assert!(load(VISITED).unwrap().peers.is_empty());
    }

    #[test]
    fn the_shipped_configs_list_their_peers() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for file in [
            root.join("aaa.example.toml"),
            root.join("../lab/aaa-home.toml"),
            root.join("../lab/aaa-visited.toml"),
        ] {
            let config = AaaConfig::load(&file).unwrap();
            assert!(!config.peers.is_empty(), "{}", file.display());
        }
    }
}
