//! The Diameter peer table of the AAA (RFC 6733 section 2.1 and section 5.3): which peers
//! may open a connection, by Origin-Host and source address, and over which transport.
//! The server asks it about every CER before the peer state machine answers it; a CER
//! it refuses gets a CEA with DIAMETER_UNKNOWN_PEER (3010) and the connection is closed
//! (RFC 6733 section 5.3: "CERs received from unknown peers MAY be silently discarded, or
//! a CEA MAY be issued with the Result-Code AVP set to DIAMETER_UNKNOWN_PEER. In both
//! cases, the transport connection is closed"). No I/O here.

use std::net::IpAddr;

use pmip_common::address_filter::canonical;
use serde::Deserialize;

pub use pmip_common::address_filter::AddressFilter;

/// One `[[peers]]` entry: a Diameter peer allowed to connect.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownPeer {
    /// The Origin-Host its CER must carry (a DiameterIdentity: compared without regard
    /// to case).
    pub origin_host: String,
    /// Where it connects from: an address or a prefix.
    pub address: AddressFilter,
    /// Whether it must connect over TLS (RFC 6733 section 13). Default false. Over TLS
    /// its certificate must name `origin_host` whatever this says.
    #[serde(default)]
    pub tls: bool,
}

/// What the server knows of a connection when its CER arrives.
#[derive(Debug, Clone, Copy)]
pub struct Connection<'a> {
    /// The source address of the transport connection.
    pub source: IpAddr,
    /// Over TLS: the identities the peer's certificate names (its subjectAltName DNS
    /// names, else its Common Name). `None` over plain TCP.
    pub certificate_identities: Option<&'a [String]>,
}

/// Why a CER is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `[[peers]]` entry has this Origin-Host.
    #[error("Origin-Host {0} is not a configured peer")]
    UnknownHost(String),
    /// The Origin-Host is known, but not from this address.
    #[error("Origin-Host {host} is a peer from {allowed}, not from {from}")]
    WrongAddress {
        host: String,
        from: IpAddr,
        allowed: String,
    },
    /// The peer must use TLS and came over plain TCP.
    #[error("Origin-Host {0} must connect over TLS")]
    TlsRequired(String),
    /// Over TLS, the certificate does not name the Origin-Host.
    #[error("the certificate names {names:?}, not Origin-Host {host}")]
    CertificateMismatch { host: String, names: Vec<String> },
}

/// The configured peers. An empty table admits nobody.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerTable {
    peers: Vec<KnownPeer>,
}

impl PeerTable {
    pub fn new(peers: Vec<KnownPeer>) -> Self {
        PeerTable { peers }
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    pub fn peers(&self) -> &[KnownPeer] {
        &self.peers
    }

    /// Whether a CER with `origin_host` on `connection` comes from a known peer: one
    /// entry must match both the Origin-Host and the source address (and require TLS
    /// only if the connection is TLS), and over TLS the certificate must name the
    /// Origin-Host.
    pub fn admit(&self, origin_host: &str, connection: Connection<'_>) -> Result<(), Refusal> {
        let host = || origin_host.to_string();
        let named: Vec<&KnownPeer> = self
            .peers
            .iter()
            .filter(|p| p.origin_host.eq_ignore_ascii_case(origin_host))
            .collect();
        if named.is_empty() {
            return Err(Refusal::UnknownHost(host()));
        }
        let from_here: Vec<&&KnownPeer> = named
            .iter()
            .filter(|p| p.address.contains(connection.source))
            .collect();
        if from_here.is_empty() {
            let allowed: Vec<String> = named.iter().map(|p| p.address.to_string()).collect();
            return Err(Refusal::WrongAddress {
                host: host(),
                from: canonical(connection.source),
                allowed: allowed.join(", "),
            });
        }
        match connection.certificate_identities {
            None if from_here.iter().all(|p| p.tls) => Err(Refusal::TlsRequired(host())),
            None => Ok(()),
            Some(names) if names.iter().any(|n| n.eq_ignore_ascii_case(origin_host)) => Ok(()),
            Some(names) => Err(Refusal::CertificateMismatch {
                host: host(),
                names: names.to_vec(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> PeerTable {
        PeerTable::new(vec![
            KnownPeer {
                origin_host: "epdg.visited.example".into(),
                address: "10.250.2.0/24".parse().unwrap(),
                tls: false,
            },
            KnownPeer {
                origin_host: "aaa.visited.example".into(),
                address: "10.250.3.20".parse().unwrap(),
                tls: true,
            },
        ])
    }

    fn plain(source: &str) -> Connection<'static> {
        Connection {
            source: source.parse().unwrap(),
            certificate_identities: None,
        }
    }

    #[test]
    fn host_and_address_must_both_match() {
        let t = table();
        assert_eq!(
            t.admit("EPDG.visited.example", plain("10.250.2.10")),
            Ok(())
        );
        assert_eq!(
            t.admit("epdg.visited.example", plain("::ffff:10.250.2.11")),
            Ok(()),
            "an IPv4-mapped source is its IPv4 address"
        );
        assert_eq!(
            t.admit("epdg.other.example", plain("10.250.2.10")),
            Err(Refusal::UnknownHost("epdg.other.example".into()))
        );
        let wrong = t.admit("epdg.visited.example", plain("10.250.3.10"));
        assert!(
            matches!(&wrong, Err(Refusal::WrongAddress { allowed, .. }) if allowed == "10.250.2.0/24"),
            "{wrong:?}"
        );
        assert!(PeerTable::default()
            .admit("epdg.visited.example", plain("10.250.2.10"))
            .is_err());
    }

    #[test]
    fn a_tls_peer_needs_tls_and_a_certificate_naming_it() {
        let t = table();
        assert_eq!(
            t.admit("aaa.visited.example", plain("10.250.3.20")),
            Err(Refusal::TlsRequired("aaa.visited.example".into()))
        );
        let names = vec!["aaa.visited.example".to_string()];
        let tls = Connection {
            source: "10.250.3.20".parse().unwrap(),
            certificate_identities: Some(&names),
        };
        assert_eq!(t.admit("aaa.visited.example", tls), Ok(()));
        // A certificate of another peer of the same CA does not make one this peer.
        let other = vec!["epdg.visited.example".to_string()];
        let spoofed = Connection {
            source: "10.250.3.20".parse().unwrap(),
            certificate_identities: Some(&other),
        };
        assert!(matches!(
            t.admit("aaa.visited.example", spoofed),
            Err(Refusal::CertificateMismatch { .. })
        ));
        // Over TLS a plain peer's certificate is checked too.
        let spoofed = Connection {
            source: "10.250.2.10".parse().unwrap(),
            certificate_identities: Some(&names),
        };
        assert!(t.admit("epdg.visited.example", spoofed).is_err());
    }
}
