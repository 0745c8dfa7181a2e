//! ICMP and ICMPv6 echo packets for `ue-emu attach --ping` (RFC 792, RFC 4443): built and
//! recognised here, no I/O. The driver seals them in ESP and sends them over UDP port
//! 4500 (RFC 3948), so no raw socket and no privilege is needed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;
const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;
const TTL: u8 = 64;

/// Why an echo request could not be built.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PingError {
    #[error("source {source_addr} and destination {destination} are not of one IP version")]
    FamilyMismatch {
        source_addr: IpAddr,
        destination: IpAddr,
    },
    #[error("echo payload of {0} octets is too long")]
    TooLong(usize),
}

/// An echo reply found in an inner packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoReply {
    pub from: IpAddr,
    pub to: IpAddr,
    pub identifier: u16,
    pub sequence: u16,
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn add(sum: u32, bytes: &[u8]) -> u32 {
    let mut s = sum;
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        s += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        s += u32::from(*last) << 8;
    }
    // Fold early so very long inputs cannot overflow.
    (s & 0xffff) + (s >> 16)
}

/// The Internet checksum (RFC 1071) of `bytes`, starting from `sum`.
fn checksum(sum: u32, bytes: &[u8]) -> u16 {
    fold(add(sum, bytes))
}

fn icmp_message(kind: u8, identifier: u16, sequence: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0];
    m.extend_from_slice(&identifier.to_be_bytes());
    m.extend_from_slice(&sequence.to_be_bytes());
    m.extend_from_slice(payload);
    m
}

fn ipv6_pseudo_sum(source: Ipv6Addr, destination: Ipv6Addr, len: usize) -> u32 {
    let mut s = add(0, &source.octets());
    s = add(s, &destination.octets());
    s = add(s, &(len as u32).to_be_bytes());
    add(s, &[0, 0, 0, PROTO_ICMPV6])
}

/// An IPv4 packet with an ICMP echo request, or an IPv6 packet with an ICMPv6 one.
pub fn echo_request(
    source: IpAddr,
    destination: IpAddr,
    identifier: u16,
    sequence: u16,
    payload: &[u8],
) -> Result<Vec<u8>, PingError> {
    if payload.len() > 1400 {
        return Err(PingError::TooLong(payload.len()));
    }
    match (source, destination) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut icmp = icmp_message(ICMP_ECHO_REQUEST, identifier, sequence, payload);
            let c = checksum(0, &icmp);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            Ok(ipv4_packet(s, d, PROTO_ICMP, sequence, &icmp))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut icmp = icmp_message(ICMPV6_ECHO_REQUEST, identifier, sequence, payload);
            let c = checksum(ipv6_pseudo_sum(s, d, icmp.len()), &icmp);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            Ok(ipv6_packet(s, d, PROTO_ICMPV6, &icmp))
        }
        _ => Err(PingError::FamilyMismatch {
            source_addr: source,
            destination,
        }),
    }
}

fn ipv4_packet(s: Ipv4Addr, d: Ipv4Addr, protocol: u8, id: u16, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0x40, 0, TTL, protocol, 0, 0]);
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    let c = checksum(0, &p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn ipv6_packet(s: Ipv6Addr, d: Ipv6Addr, next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next_header, TTL]);
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    p.extend_from_slice(payload);
    p
}

/// The echo reply an inner IP packet carries, if it is one (checksums verified;
/// IPv4 options allowed, IPv6 extension headers not).
pub fn parse_echo_reply(packet: &[u8]) -> Option<EchoReply> {
    match packet.first()? >> 4 {
        4 => {
            let ihl = usize::from(packet.first()? & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
            if ihl < 20 || total < ihl || packet.len() < total || packet[9] != PROTO_ICMP {
                return None;
            }
            let icmp = &packet[ihl..total];
            if icmp.len() < 8 || icmp[0] != ICMP_ECHO_REPLY || checksum(0, icmp) != 0 {
                return None;
            }
            let from = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
            let to = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
            Some(reply(from.into(), to.into(), icmp))
        }
        6 => {
            if packet.len() < 40 || packet[6] != PROTO_ICMPV6 {
                return None;
            }
            let len = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
            let icmp = packet.get(40..40 + len)?;
            let mut s = [0u8; 16];
            s.copy_from_slice(&packet[8..24]);
            let mut d = [0u8; 16];
            d.copy_from_slice(&packet[24..40]);
            let (from, to) = (Ipv6Addr::from(s), Ipv6Addr::from(d));
            if icmp.len() < 8
                || icmp[0] != ICMPV6_ECHO_REPLY
                || checksum(ipv6_pseudo_sum(from, to, icmp.len()), icmp) != 0
            {
                return None;
            }
            Some(reply(from.into(), to.into(), icmp))
        }
        _ => None,
    }
}

fn reply(from: IpAddr, to: IpAddr, icmp: &[u8]) -> EchoReply {
    EchoReply {
        from,
        to,
        identifier: u16::from_be_bytes([icmp[4], icmp[5]]),
        sequence: u16::from_be_bytes([icmp[6], icmp[7]]),
    }
}

/// Turns an echo request built by [`echo_request`] into the reply a host would send
/// (addresses swapped, type changed, checksums redone): for tests and loopback labs.
pub fn answer_echo_request(request: &[u8]) -> Option<Vec<u8>> {
    match request.first()? >> 4 {
        4 => {
            let ihl = usize::from(request[0] & 0x0f) * 4;
            if ihl < 20 || request.len() < ihl + 8 || request[9] != PROTO_ICMP {
                return None;
            }
            let icmp = &request[ihl..];
            if icmp[0] != ICMP_ECHO_REQUEST {
                return None;
            }
            let s = Ipv4Addr::new(request[12], request[13], request[14], request[15]);
            let d = Ipv4Addr::new(request[16], request[17], request[18], request[19]);
            let mut m = icmp.to_vec();
            m[0] = ICMP_ECHO_REPLY;
            m[2..4].copy_from_slice(&[0, 0]);
            let c = checksum(0, &m);
            m[2..4].copy_from_slice(&c.to_be_bytes());
            Some(ipv4_packet(d, s, PROTO_ICMP, 0, &m))
        }
        6 => {
            if request.len() < 48
                || request[6] != PROTO_ICMPV6
                || request[40] != ICMPV6_ECHO_REQUEST
            {
                return None;
            }
            let mut s = [0u8; 16];
            s.copy_from_slice(&request[8..24]);
            let mut d = [0u8; 16];
            d.copy_from_slice(&request[24..40]);
            let (s, d) = (Ipv6Addr::from(s), Ipv6Addr::from(d));
            let mut m = request[40..].to_vec();
            m[0] = ICMPV6_ECHO_REPLY;
            m[2..4].copy_from_slice(&[0, 0]);
            let c = checksum(ipv6_pseudo_sum(d, s, m.len()), &m);
            m[2..4].copy_from_slice(&c.to_be_bytes());
            Some(ipv6_packet(d, s, PROTO_ICMPV6, &m))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_echo_round_trip() {
        let s: IpAddr = "10.45.0.2".parse().unwrap();
        let d: IpAddr = "192.0.2.1".parse().unwrap();
        let req = echo_request(s, d, 0x1234, 7, b"hello").unwrap();
        assert_eq!(req.len(), 20 + 8 + 5);
        assert_eq!(checksum(0, &req[..20]), 0, "IPv4 header checksum");
        assert_eq!(checksum(0, &req[20..]), 0, "ICMP checksum");
        assert_eq!(parse_echo_reply(&req), None, "a request is not a reply");
        let rep = answer_echo_request(&req).unwrap();
        assert_eq!(
            parse_echo_reply(&rep),
            Some(EchoReply {
                from: d,
                to: s,
                identifier: 0x1234,
                sequence: 7
            })
        );
    }

    #[test]
    fn ipv6_echo_round_trip() {
        let s: IpAddr = "2001:db8:45::1".parse().unwrap();
        let d: IpAddr = "2001:db8:ffff::1".parse().unwrap();
        let req = echo_request(s, d, 9, 65535, b"x").unwrap();
        let rep = answer_echo_request(&req).unwrap();
        let r = parse_echo_reply(&rep).unwrap();
        assert_eq!((r.from, r.to, r.identifier, r.sequence), (d, s, 9, 65535));
        // A flipped bit fails the checksum.
        let mut bad = rep.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(parse_echo_reply(&bad), None);
    }

    #[test]
    fn families_must_match_and_garbage_is_ignored() {
        let s: IpAddr = "10.0.0.1".parse().unwrap();
        let d: IpAddr = "::1".parse().unwrap();
        assert!(matches!(
            echo_request(s, d, 1, 1, b""),
            Err(PingError::FamilyMismatch { .. })
        ));
        for junk in [&[][..], &[0x45], &[0x60; 39], &[0x4f; 60]] {
            assert_eq!(parse_echo_reply(junk), None);
            assert_eq!(answer_echo_request(junk), None);
        }
    }
}
