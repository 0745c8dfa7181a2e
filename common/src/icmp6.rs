//! ICMPv6 error messages (RFC 4443 section 3) a node sends about a packet it received:
//! Packet Too Big from the LMA's data plane, Parameter Problem from the Mobility Header
//! checks of RFC 6275 section 9.2. Built with `etherparse` (its ICMPv6 types and
//! checksum), quoting as much of the invoking packet as fits in the IPv6 minimum MTU
//! (RFC 4443 section 2.4 (c)).

use std::net::Ipv6Addr;

use etherparse::icmpv6::{ParameterProblemCode, ParameterProblemHeader};
use etherparse::{Icmpv6Header, Icmpv6Type, IpNumber, Ipv6Header};

/// ICMPv6's Next Header value (RFC 4443 section 1).
pub const IPPROTO_ICMPV6: u8 = 58;

/// The IPv6 minimum link MTU (RFC 8200 section 5): an ICMPv6 error never exceeds it.
pub const IPV6_MIN_MTU: usize = 1280;
const IPV6_HEADER_LEN: usize = Ipv6Header::LEN;
/// Type, Code, Checksum and the four octets after them.
const ICMPV6_ERROR_HEADER_LEN: usize = 8;
/// Hop Limit of the errors we originate and of the invoking headers we reconstruct.
const HOP_LIMIT: u8 = 64;

/// Which ICMPv6 error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv6Error {
    /// Packet Too Big (RFC 4443 section 3.2) with the MTU of the next hop.
    PacketTooBig { mtu: u32 },
    /// Parameter Problem, Code 0 "erroneous header field encountered" (RFC 4443 section
    /// 3.4), `pointer` octets into the invoking packet (its IPv6 header included).
    ErroneousHeaderField { pointer: u32 },
}

impl Icmpv6Error {
    fn icmp_type(self) -> Icmpv6Type {
        match self {
            Icmpv6Error::PacketTooBig { mtu } => Icmpv6Type::PacketTooBig { mtu },
            Icmpv6Error::ErroneousHeaderField { pointer } => {
                Icmpv6Type::ParameterProblem(ParameterProblemHeader {
                    code: ParameterProblemCode::ErroneousHeaderField,
                    pointer,
                })
            }
        }
    }
}

/// The ICMPv6 message alone (what a raw ICMPv6 socket sends; the kernel adds the IPv6
/// header), from `source` to `destination`, its checksum over their pseudo-header.
pub fn error_message(
    source: Ipv6Addr,
    destination: Ipv6Addr,
    error: Icmpv6Error,
    invoking: &[u8],
) -> Vec<u8> {
    let quote = &invoking[..invoking
        .len()
        .min(IPV6_MIN_MTU - IPV6_HEADER_LEN - ICMPV6_ERROR_HEADER_LEN)];
    // The quote is bounded by the minimum MTU, far below the checksum's length limit.
    let header = Icmpv6Header::with_checksum(
        error.icmp_type(),
        source.octets(),
        destination.octets(),
        quote,
    )
    .unwrap_or_else(|_| Icmpv6Header::new(error.icmp_type()));
    let mut message = Vec::with_capacity(header.header_len() + quote.len());
    message.extend_from_slice(&header.to_bytes());
    message.extend_from_slice(quote);
    message
}

/// The whole IPv6 packet carrying [`error_message`] (for a TUN device or a pcap).
pub fn error_packet(
    source: Ipv6Addr,
    destination: Ipv6Addr,
    error: Icmpv6Error,
    invoking: &[u8],
) -> Vec<u8> {
    let message = error_message(source, destination, error, invoking);
    let mut packet = ipv6_header(source, destination, IpNumber::IPV6_ICMP.0, message.len());
    packet.extend_from_slice(&message);
    packet
}

/// An IPv6 header for `payload_len` octets of `next_header` (hop limit 64, no flow label):
/// the invoking packet an error quotes when the socket that received it gave only its
/// payload, as a raw IPv6 socket does.
pub fn ipv6_header(
    source: Ipv6Addr,
    destination: Ipv6Addr,
    next_header: u8,
    payload_len: usize,
) -> Vec<u8> {
    let header = Ipv6Header {
        traffic_class: 0,
        flow_label: Default::default(),
        payload_length: u16::try_from(payload_len).unwrap_or(u16::MAX),
        next_header: IpNumber(next_header),
        hop_limit: HOP_LIMIT,
        source: source.octets(),
        destination: destination.octets(),
    };
    header.to_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    #[test]
    fn a_parameter_problem_quotes_the_invoking_packet_and_points_into_it() {
        let (mag, lma): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        let mh = [6u8, 1, 5, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut invoking = ipv6_header(mag, lma, 135, mh.len());
        invoking.extend_from_slice(&mh);
        let pointer = 40;
        let packet = error_packet(
            lma,
            mag,
            Icmpv6Error::ErroneousHeaderField { pointer },
            &invoking,
        );
        let sliced = SlicedPacket::from_ip(&packet).unwrap();
        let Some(NetSlice::Ipv6(ip)) = &sliced.net else {
            panic!("not IPv6");
        };
        assert_eq!(ip.header().source_addr(), lma);
        assert_eq!(ip.header().destination_addr(), mag);
        let Some(TransportSlice::Icmpv6(icmp)) = &sliced.transport else {
            panic!("not ICMPv6");
        };
        assert_eq!(
            icmp.icmp_type(),
            Icmpv6Type::ParameterProblem(ParameterProblemHeader {
                code: ParameterProblemCode::ErroneousHeaderField,
                pointer,
            })
        );
        assert_eq!(icmp.payload(), &invoking[..]);
        let recomputed = icmp
            .icmp_type()
            .calc_checksum(lma.octets(), mag.octets(), icmp.payload())
            .unwrap();
        assert_eq!(icmp.checksum(), recomputed);
    }

    #[test]
    fn an_error_never_exceeds_the_minimum_mtu() {
        let a = Ipv6Addr::LOCALHOST;
        let packet = error_packet(a, a, Icmpv6Error::PacketTooBig { mtu: 1400 }, &[0; 9000]);
        assert_eq!(packet.len(), IPV6_MIN_MTU);
    }
}
