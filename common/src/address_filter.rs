//! An address or a prefix of addresses, as the nodes' allow-lists name their peers: the
//! LMA's `allowed_mags` (RFC 5213 section 5.3.1: a PBU only from a MAG authorized for
//! proxy registration) and the AAA's `[[peers]]` (RFC 6733 section 5.3: CERs only from
//! known peers). Written `192.0.2.1` or `192.0.2.0/24`; an IPv4-mapped IPv6 address
//! matches its IPv4 form.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::Deserialize;

/// An address or a prefix: `192.0.2.1`, `192.0.2.0/24`, `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct AddressFilter(pub IpNet);

impl AddressFilter {
    /// Whether `address` is inside.
    pub fn contains(&self, address: IpAddr) -> bool {
        self.0.contains(&canonical(address))
    }
}

/// An IPv4-mapped IPv6 address as IPv4, any other as it is.
pub fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for AddressFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(AddressFilter(net.trunc()));
        }
        s.parse::<IpAddr>()
            .map(|a| AddressFilter(IpNet::from(a)))
            .map_err(|_| format!("`{s}` is neither an IP address nor an address/prefix"))
    }
}

impl TryFrom<String> for AddressFilter {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl fmt::Display for AddressFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_prefixes_and_mapped_sources() {
        let net: AddressFilter = "192.0.2.7/24".parse().unwrap();
        assert_eq!(net.to_string(), "192.0.2.0/24");
        assert!(net.contains("192.0.2.200".parse().unwrap()));
        assert!(net.contains("::ffff:192.0.2.9".parse().unwrap()));
        assert!(!net.contains("192.0.3.1".parse().unwrap()));
        let one: AddressFilter = "2001:db8::1".parse().unwrap();
        assert!(one.contains("2001:db8::1".parse().unwrap()));
        assert!(!one.contains("2001:db8::2".parse().unwrap()));
        let e = "aaa.example".parse::<AddressFilter>().unwrap_err();
        assert!(e.contains("aaa.example"), "{e}");
    }
}
