//! `ue.toml`: the UE's USIM (IMSI, K, OPc, SQN), its ePDG and APN. Unknown fields are
//! errors that name the field and the file.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

/// The UE's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UeConfig {
    /// 15 digits.
    pub imsi: String,
    /// Digits of the MNC in the IMSI (2 or 3), for the NAI's realm.
    #[serde(default = "default_mnc_digits")]
    pub mnc_digits: usize,
    /// The NAI for IDi and EAP; built from the IMSI (TS 23.003 section 19.3.2) if unset.
    pub nai: Option<String>,
    /// K and OPc, 32 hex digits each.
    pub k: String,
    pub opc: String,
    /// SQN_MS: the highest SQN the USIM has accepted.
    #[serde(default)]
    pub sqn: u64,
    /// The ePDG's IKE address (UDP 500) and its NAT-T port.
    pub epdg: SocketAddr,
    #[serde(default = "default_natt_port")]
    pub epdg_natt_port: u16,
    /// Our local address.
    #[serde(default = "default_local")]
    pub local: IpAddr,
    /// The APN (IDr) unless --apn gives one.
    pub apn: Option<String>,
    /// Offer EAP-only authentication (RFC 5998); otherwise the ePDG must prove itself with
    /// a certificate whose key is `epdg_public_key` (or `--insecure`).
    #[serde(default = "default_true")]
    pub eap_only: bool,
    /// The ePDG's ECDSA P-256 public key (uncompressed point, hex), pinned.
    pub epdg_public_key: Option<String>,
    /// The CA certificate (DER) that must have signed the ePDG's certificate.
    pub epdg_ca: Option<std::path::PathBuf>,
    /// IKE suites in preference order (empty = the library defaults).
    #[serde(default)]
    pub ike_suites: Vec<String>,
    /// Give up after this many milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_mnc_digits() -> usize {
    3
}
fn default_natt_port() -> u16 {
    4500
}
fn default_local() -> IpAddr {
    Ipv4Addr::LOCALHOST.into()
}
fn default_true() -> bool {
    true
}
fn default_timeout() -> u64 {
    20_000
}

fn key(name: &str, hex_text: &str) -> Result<[u8; 16]> {
    let bytes = hex::decode(hex_text.trim()).with_context(|| format!("{name} is not hex"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("{name} must be 16 octets (32 hex digits)"))
}

impl UeConfig {
    pub fn load(path: &Path) -> Result<UeConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
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

    #[test]
    fn the_example_parses() {
        let c: UeConfig = toml::from_str(include_str!("../ue.example.toml")).unwrap();
        assert!(c
            .nai()
            .unwrap()
            .starts_with("0234150999999999@nai.epc.mnc015.mcc234"));
        c.k().unwrap();
        c.opc().unwrap();
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = toml::from_str::<UeConfig>("imsy = \"1\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("imsy"), "{e}");
    }
}
