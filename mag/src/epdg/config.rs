//! The settings of the ePDG core: what [`Epdg::new`](super::Epdg::new) needs, built
//! without files, or from the `mag.toml` settings.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use pmip_common::binding_update_list::MagConfig;
use pmip_common::diameter::base::Capabilities;
use pmip_common::diameter::peer::PeerConfig;
use pmip_common::ike::responder::ResponderConfig;
use pmip_common::ike::sa::RetransmitPolicy;
use pmip_common::ike::wire::Identification;
use pmip_common::ike::IkeSuite;
use pmip_common::mh::Lifetime;

use crate::attach::AttachConfig;
use crate::config::Config;

/// A `mag.toml` setting the core cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpdgConfigError {
    #[error("ike_suites: {0}")]
    IkeSuite(String),
}

/// Everything the core needs, without files: build it with [`EpdgConfig::default`] and
/// change fields, or from the `mag.toml` settings with [`EpdgConfig::from_config`].
#[derive(Debug, Clone)]
pub struct EpdgConfig {
    /// IKE: suites, identity and certificate, cookie threshold, timers, liveness checks.
    pub ike: ResponderConfig,
    /// Each UE's attach: Diameter identities, the LMAs' port, default APN, DNS and
    /// P-CSCF for the CFG_REPLY, how long the AAA may take.
    pub attach: AttachConfig,
    /// The binding update list: PBU retransmissions, requested lifetime (RFC 5213).
    pub mag: MagConfig,
    /// Our IPv4 address toward the LMAs: the source of PBUs over IPv4 (RFC 5844) and of
    /// their checksum.
    pub mh_local: Ipv4Addr,
    /// What we advertise in CER and the watchdog timers (RFC 6733, RFC 3539).
    pub diameter: PeerConfig,
    /// The wait before connecting again after the connection to the AAA failed or ended.
    pub reconnect_delay: Duration,
    /// How long shutdown waits for de-registrations before the DPR.
    pub shutdown_grace: Duration,
}

impl Default for EpdgConfig {
    fn default() -> Self {
        EpdgConfig::with_suites(&Config::default(), Vec::new())
    }
}

impl EpdgConfig {
    /// The core's settings from the `mag.toml` settings `config`. No certificate: the
    /// caller that has one sets `ike.signer` (without, UEs that do not offer EAP-only
    /// authentication get AUTHENTICATION_FAILED).
    pub fn from_config(config: &Config) -> Result<Self, EpdgConfigError> {
        let suites = config
            .ike_suites
            .iter()
            .map(|s| s.parse::<IkeSuite>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| EpdgConfigError::IkeSuite(e.to_string()))?;
        Ok(EpdgConfig::with_suites(config, suites))
    }

    /// `config` with these IKE suites (our defaults when empty).
    fn with_suites(config: &Config, suites: Vec<IkeSuite>) -> Self {
        let defaults = ResponderConfig::default();
        let ike = ResponderConfig {
            suites: if suites.is_empty() {
                defaults.suites.clone()
            } else {
                suites
            },
            identity: Identification::Fqdn(config.ike_identity.clone()),
            half_open_timeout: Duration::from_secs(config.half_open_timeout_secs),
            cookie_threshold: config.cookie_threshold,
            signer: None,
            accept_eap_only: config.eap_only_auth,
            retransmit: RetransmitPolicy {
                initial: Duration::from_millis(config.ike_retransmit_ms),
                max_retransmissions: config.ike_max_retransmissions,
            },
            liveness_interval: (config.liveness_interval_secs > 0)
                .then(|| Duration::from_secs(config.liveness_interval_secs)),
            ..defaults
        };
        let attach = AttachConfig {
            origin_host: config.origin_host.clone(),
            origin_realm: config.origin_realm.clone(),
            destination_realm: config.destination_realm.clone(),
            lma_port: config.lma_port,
            default_apn: config.default_apn.clone(),
            dns: config.dns.clone(),
            pcscf: config.pcscf.clone(),
            diameter_timeout: Duration::from_millis(config.diameter_timeout_ms),
        };
        let mag = MagConfig {
            init_min_delay_between_bus: Duration::from_millis(config.pbu_retransmit_ms),
            max_retransmissions: config.pbu_max_retransmissions,
            requested_lifetime: Lifetime::from_secs(config.binding_lifetime_secs),
            ..MagConfig::default()
        };
        let capabilities = Capabilities::swm(
            &config.origin_host,
            &config.origin_realm,
            vec![IpAddr::from(config.mh_local)],
            "pmip-mag",
        );
        EpdgConfig {
            ike,
            attach,
            mag,
            mh_local: config.mh_local,
            diameter: PeerConfig::new(capabilities),
            reconnect_delay: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(1),
        }
    }
}
