//! Where a MAG's message came from and how the answer goes back: the Mobility Header
//! over IPv4 in UDP port 5436 (RFC 5844) or directly over IPv6 (next header 135), and
//! which checksum rule each path uses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

use pmip_common::mh::ChecksumContext;

/// A MAG as seen on one transport, with the local address its message was sent to; the
/// answer goes back on the same path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MagAddress {
    /// Mobility Header in UDP over IPv4 (RFC 5844): the MAG's address and source port,
    /// and the LMA address the datagram was sent to.
    Udp4 { mag: SocketAddrV4, local: Ipv4Addr },
    /// Mobility Header directly in IPv6. With `kernel_checksum` the socket computes and
    /// verifies the checksum (a raw socket with `IPV6_CHECKSUM`), so the core does
    /// neither; otherwise it uses the RFC 6275 pseudo-header of `mag` and `local`.
    Ip6 {
        mag: Ipv6Addr,
        local: Ipv6Addr,
        kernel_checksum: bool,
    },
}

impl MagAddress {
    /// The MAG's IP address (its proxy care-of address).
    pub fn ip(&self) -> IpAddr {
        match self {
            MagAddress::Udp4 { mag, .. } => IpAddr::V4(*mag.ip()),
            MagAddress::Ip6 { mag, .. } => IpAddr::V6(*mag),
        }
    }

    /// The MAG's socket address (port 0 for IPv6).
    pub fn socket_addr(&self) -> SocketAddr {
        match self {
            MagAddress::Udp4 { mag, .. } => SocketAddr::V4(*mag),
            MagAddress::Ip6 { mag, .. } => SocketAddr::new(IpAddr::V6(*mag), 0),
        }
    }

    /// The checksum rule for a message from the MAG.
    pub fn receive_checksum(&self) -> ChecksumContext {
        match *self {
            MagAddress::Udp4 { .. } => ChecksumContext::Ipv4Udp,
            MagAddress::Ip6 {
                kernel_checksum: true,
                ..
            } => ChecksumContext::Skip,
            MagAddress::Ip6 { mag, local, .. } => ChecksumContext::Ipv6 {
                source: mag,
                destination: local,
            },
        }
    }

    /// The checksum rule for a message to the MAG.
    pub fn send_checksum(&self) -> ChecksumContext {
        match *self {
            MagAddress::Udp4 { .. } => ChecksumContext::Ipv4Udp,
            MagAddress::Ip6 {
                kernel_checksum: true,
                ..
            } => ChecksumContext::Skip,
            MagAddress::Ip6 { mag, local, .. } => ChecksumContext::Ipv6 {
                source: local,
                destination: mag,
            },
        }
    }
}

impl std::fmt::Display for MagAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MagAddress::Udp4 { mag, .. } => write!(f, "{mag}/udp"),
            MagAddress::Ip6 { mag, .. } => write!(f, "{mag}/mh"),
        }
    }
}
