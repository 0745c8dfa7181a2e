//! Which MAGs the core serves: a MAG address or prefix ([`MagFilter`], RFC 5213 section
//! 5.3.1 step 2: the LMA checks the sender is authorized to send PBUs on behalf of the
//! mobile node), and what a PBU from any other source gets ([`UnauthorizedMag`]). The
//! core owns them; `crate::config` reads them from the file and the flags.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::Deserialize;

/// What to do with a PBU from a MAG that is not in `allowed_mags` (RFC 5213 5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum UnauthorizedMag {
    /// Answer with status 154, MAG_NOT_AUTHORIZED_FOR_PROXY_REG.
    #[default]
    Reject,
    /// Drop it silently (and count it).
    Drop,
}

/// A MAG address or a prefix of MAG addresses: `192.0.2.1` or `192.0.2.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct MagFilter(pub IpNet);

impl MagFilter {
    pub fn contains(&self, address: IpAddr) -> bool {
        // An IPv4-mapped IPv6 source matches an IPv4 entry.
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        self.0.contains(&address)
    }
}

impl FromStr for MagFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(MagFilter(net.trunc()));
        }
        s.parse::<IpAddr>()
            .map(|a| MagFilter(IpNet::from(a)))
            .map_err(|_| format!("`{s}` is neither an IP address nor an address/prefix"))
    }
}

impl TryFrom<String> for MagFilter {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}
