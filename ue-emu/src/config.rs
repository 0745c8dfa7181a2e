//! `ue.toml`: the UE's USIM (IMSI, K, OPc, SQN), its ePDG and APN, in the pattern every
//! node follows (`pmip_node::config`): [`ConfigLayer`] is both the file (serde, unknown
//! fields refused: an error naming the field and the file) and the flags over it (only
//! `--apn` has one); [`UeConfig::resolve`] applies the defaults and names a missing field.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use pmip_node::config::{Layer, Layers};
use pmip_node::pick;
use serde::Deserialize;

/// One layer of settings: the file, or the flags over it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ConfigLayer {
    #[arg(skip)]
    pub imsi: Option<String>,
    #[arg(skip)]
    pub mnc_digits: Option<usize>,
    #[arg(skip)]
    pub nai: Option<String>,
    #[arg(skip)]
    pub k: Option<String>,
    #[arg(skip)]
    pub opc: Option<String>,
    #[arg(skip)]
    pub sqn: Option<u64>,
    #[arg(skip)]
    pub epdg: Option<SocketAddr>,
    #[arg(skip)]
    pub epdg_natt_port: Option<u16>,
    #[arg(skip)]
    pub local: Option<IpAddr>,
    /// The APN (IDr); overrides the file.
    #[arg(long, value_name = "APN")]
    pub apn: Option<String>,
    #[arg(skip)]
    pub eap_only: Option<bool>,
    #[arg(skip)]
    pub epdg_public_key: Option<String>,
    #[arg(skip)]
    pub epdg_ca: Option<PathBuf>,
    #[arg(skip)]
    pub ike_suites: Option<Vec<String>>,
    #[arg(skip)]
    pub timeout_ms: Option<u64>,
}

impl Layer for ConfigLayer {}

/// The UE's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UeConfig {
    /// 15 digits.
    pub imsi: String,
    /// Digits of the MNC in the IMSI (2 or 3), for the NAI's realm. Default 3.
    pub mnc_digits: usize,
    /// The NAI for IDi and EAP; built from the IMSI (TS 23.003 section 19.3.2) if unset.
    pub nai: Option<String>,
    /// K and OPc, 32 hex digits each.
    pub k: String,
    pub opc: String,
    /// SQN_MS: the highest SQN the USIM has accepted. Default 0.
    pub sqn: u64,
    /// The ePDG's IKE address (UDP 500) and its NAT-T port (default 4500).
    pub epdg: SocketAddr,
    pub epdg_natt_port: u16,
    /// Our local address. Default 127.0.0.1.
    pub local: IpAddr,
    /// The APN (IDr).
    pub apn: Option<String>,
    /// Offer EAP-only authentication (RFC 5998; default); otherwise the ePDG must prove
    /// itself with a certificate whose key is `epdg_public_key` (or `--insecure`).
    pub eap_only: bool,
    /// The ePDG's ECDSA P-256 public key (uncompressed point, hex), pinned.
    pub epdg_public_key: Option<String>,
    /// The CA certificate (DER) that must have signed the ePDG's certificate.
    pub epdg_ca: Option<PathBuf>,
    /// IKE suites in preference order (empty = the library defaults).
    pub ike_suites: Vec<String>,
    /// Give up after this many milliseconds. Default 20000.
    pub timeout_ms: u64,
}

fn key(name: &str, hex_text: &str) -> Result<[u8; 16]> {
    let bytes = hex::decode(hex_text.trim()).with_context(|| format!("{name} is not hex"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("{name} must be 16 octets (32 hex digits)"))
}

impl UeConfig {
    /// The flags over the file, with defaults.
    pub fn resolve(
        layers: &Layers<ConfigLayer>,
    ) -> Result<UeConfig, pmip_node::config::ConfigError> {
        Ok(UeConfig {
            imsi: pick!(layers, imsi).required()?,
            mnc_digits: pick!(layers, mnc_digits).or(3),
            nai: pick!(layers, nai).value,
            k: pick!(layers, k).required()?,
            opc: pick!(layers, opc).required()?,
            sqn: pick!(layers, sqn).or(0),
            epdg: pick!(layers, epdg).required()?,
            epdg_natt_port: pick!(layers, epdg_natt_port).or(4500),
            local: pick!(layers, local).or(Ipv4Addr::LOCALHOST.into()),
            apn: pick!(layers, apn).value,
            eap_only: pick!(layers, eap_only).or(true),
            epdg_public_key: pick!(layers, epdg_public_key).value,
            epdg_ca: pick!(layers, epdg_ca).value,
            ike_suites: pick!(layers, ike_suites).or_default(),
            timeout_ms: pick!(layers, timeout_ms).or(20_000),
        })
    }

    /// Reads the file at `path` beneath `flags`.
    pub fn load_with(path: &Path, flags: ConfigLayer) -> Result<UeConfig> {
        let layers = Layers::load(Some(path), flags)?;
        Ok(Self::resolve(&layers)?)
    }

    /// Reads the file at `path`.
    pub fn load(path: &Path) -> Result<UeConfig> {
        Self::load_with(path, ConfigLayer::default())
    }

    pub fn k(&self) -> Result<[u8; 16]> {
        key("k", &self.k)
    }

    pub fn opc(&self) -> Result<[u8; 16]> {
        key("opc", &self.opc)
    }

    /// The NAI: configured, or the permanent EAP-AKA identity of the IMSI.
    pub fn nai(&self) -> Result<String> {
        match &self.nai {
            Some(n) => Ok(n.clone()),
            None => pmip_common::eap::permanent_identity(&self.imsi, self.mnc_digits)
                .with_context(|| format!("imsi {:?} / mnc_digits {}", self.imsi, self.mnc_digits)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<UeConfig, pmip_node::config::ConfigError> {
        UeConfig::resolve(&Layers::parse(
            text,
            Path::new("ue.toml"),
            ConfigLayer::default(),
        )?)
    }

    #[test]
    fn the_example_parses() {
        let c = parse(include_str!("../ue.example.toml")).unwrap();
        assert!(c
            .nai()
            .unwrap()
            .starts_with("0234150999999999@nai.epc.mnc015.mcc234"));
        c.k().unwrap();
        c.opc().unwrap();
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = parse("imsy = \"1\"\n").unwrap_err().to_string();
        assert!(e.contains("imsy") && e.contains("ue.toml"), "{e}");
        let e = parse("imsi = \"001010000000001\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("ue.toml: k: missing"), "{e}");
    }
}
