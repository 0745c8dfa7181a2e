//! GRE with keys (RFC 2784, RFC 2890) and its outer IPv4 or IPv6 header (IP protocol
//! 47): the S2b tunnel between MAG and LMA, whose keys RFC 5845 signals and TS 29.275
//! makes mandatory.
//!
//! The kernels we run on have no GRE or ip6tnl, so the data plane frames packets itself:
//! [`GrePacket`] is the checked view over a GRE header and payload, [`GreRepr`] the
//! validated header that parses and emits, and [`encapsulate`] / [`decapsulate_ip`] /
//! [`decapsulate_gre`] put an inner IPv4 or IPv6 packet into a keyed GRE packet and an
//! outer IP header (built and parsed by `etherparse`) and take it out again. Nothing here
//! does I/O: a raw IPv4 socket hands the whole outer packet to [`decapsulate_ip`], a raw
//! IPv6 socket (which never shows the IPv6 header) hands the GRE packet to
//! [`decapsulate_gre`].

use std::net::IpAddr;

use etherparse::{IpNumber, IpSlice, Ipv4Header, Ipv6FlowLabel, Ipv6Header};
use thiserror::Error;

/// IP protocol number of GRE (outer IPv4 Protocol / IPv6 Next Header).
pub const IPPROTO_GRE: u8 = 47;

/// Length of the fixed part of the GRE header: flags, version, protocol type.
pub const GRE_BASE_HEADER_LEN: usize = 4;
/// The longest GRE header we build: base, checksum + reserved1, key, sequence number.
pub const GRE_MAX_HEADER_LEN: usize = 16;

/// Checksum Present (RFC 2784), bit 0.
const FLAG_C: u8 = 0x80;
/// Routing Present (RFC 1701), bit 1: a receiver of RFC 2784 GRE discards it.
const FLAG_R: u8 = 0x40;
/// Key Present (RFC 2890), bit 2.
const FLAG_K: u8 = 0x20;
/// Sequence Number Present (RFC 2890), bit 3.
const FLAG_S: u8 = 0x10;
/// Bits 4 and 5 (RFC 1701 strict source route, recursion control): discarded if set.
const FLAGS_RFC1701_ONLY: u8 = 0x0c;
/// Version field, bits 13-15 of the first word.
const VERSION_MASK: u8 = 0x07;

/// Why a GRE packet or its outer IP header was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TunnelError {
    #[error("truncated: {0}")]
    Truncated(&'static str),
    #[error("GRE version {0}, only version 0 is defined (RFC 2784)")]
    UnsupportedVersion(u8),
    #[error("GRE flags {0:#04x} use RFC 1701 routing, strict source route or recursion bits")]
    UnsupportedFlags(u8),
    #[error("GRE checksum mismatch")]
    BadChecksum,
    #[error("GRE packet without a key; TS 29.275 requires one")]
    KeyMissing,
    #[error("GRE protocol type {0:#06x} is neither IPv4 nor IPv6")]
    UnsupportedProtocolType(u16),
    #[error("inner packet is IP version {found}, the GRE protocol type says {expected}")]
    InnerVersionMismatch { expected: u8, found: u8 },
    #[error("outer IP header: {0}")]
    BadOuterHeader(String),
    #[error("outer IP packet carries protocol {0}, not GRE (47)")]
    NotGre(u8),
    #[error("outer IP packet is a fragment; fragments are not reassembled here")]
    Fragmented,
    #[error("outer addresses are of two IP versions")]
    MixedAddressFamilies,
    #[error("a {0}-octet packet does not fit the outer IP header's length field")]
    TooLong(usize),
}

/// The GRE Protocol Type field: the EtherType of the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolType {
    /// 0x0800.
    Ipv4,
    /// 0x86DD.
    Ipv6,
    Unknown(u16),
}

impl From<u16> for ProtocolType {
    fn from(v: u16) -> Self {
        match v {
            0x0800 => ProtocolType::Ipv4,
            0x86dd => ProtocolType::Ipv6,
            other => ProtocolType::Unknown(other),
        }
    }
}

impl From<ProtocolType> for u16 {
    fn from(p: ProtocolType) -> u16 {
        match p {
            ProtocolType::Ipv4 => 0x0800,
            ProtocolType::Ipv6 => 0x86dd,
            ProtocolType::Unknown(v) => v,
        }
    }
}

impl ProtocolType {
    /// The protocol type for an IP packet, from its version nibble.
    pub fn of_ip_packet(packet: &[u8]) -> Option<Self> {
        match packet.first().map(|b| b >> 4) {
            Some(4) => Some(ProtocolType::Ipv4),
            Some(6) => Some(ProtocolType::Ipv6),
            _ => None,
        }
    }

    /// The IP version this protocol type carries, if it is IPv4 or IPv6.
    pub fn ip_version(self) -> Option<u8> {
        match self {
            ProtocolType::Ipv4 => Some(4),
            ProtocolType::Ipv6 => Some(6),
            ProtocolType::Unknown(_) => None,
        }
    }
}

/// The Internet checksum (RFC 1071) of `data`: the ones' complement of the ones'
/// complement sum of its 16-bit words, an odd last octet padded with zero.
fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A read-only (or, for `T: AsMut<[u8]>`, writable) view of a GRE packet: header and
/// payload. [`GrePacket::new_checked`] makes every accessor safe.
#[derive(Debug, Clone)]
pub struct GrePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GrePacket<T> {
    /// Wraps `buffer` after checking that it holds the whole header its flags announce,
    /// that the version is 0 and that no RFC 1701-only bit is set (RFC 2784 section 2.3:
    /// such packets are discarded).
    pub fn new_checked(buffer: T) -> Result<Self, TunnelError> {
        let b = buffer.as_ref();
        if b.len() < GRE_BASE_HEADER_LEN {
            return Err(TunnelError::Truncated("GRE header shorter than 4 octets"));
        }
        let version = b[1] & VERSION_MASK;
        if version != 0 {
            return Err(TunnelError::UnsupportedVersion(version));
        }
        if b[0] & (FLAG_R | FLAGS_RFC1701_ONLY) != 0 {
            return Err(TunnelError::UnsupportedFlags(b[0]));
        }
        let packet = GrePacket { buffer };
        if packet.buffer.as_ref().len() < packet.header_len() {
            return Err(TunnelError::Truncated(
                "GRE header shorter than its flags announce",
            ));
        }
        Ok(packet)
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn flags(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// C: the Checksum and Reserved1 fields are present (RFC 2784).
    pub fn checksum_present(&self) -> bool {
        self.flags() & FLAG_C != 0
    }

    /// K: the Key field is present (RFC 2890).
    pub fn key_present(&self) -> bool {
        self.flags() & FLAG_K != 0
    }

    /// S: the Sequence Number field is present (RFC 2890).
    pub fn sequence_number_present(&self) -> bool {
        self.flags() & FLAG_S != 0
    }

    /// Protocol Type: the EtherType of the payload.
    pub fn protocol_type(&self) -> ProtocolType {
        let b = self.buffer.as_ref();
        ProtocolType::from(u16::from_be_bytes([b[2], b[3]]))
    }

    /// The header length the flags announce: 4, plus 4 for each of C, K and S.
    pub fn header_len(&self) -> usize {
        GRE_BASE_HEADER_LEN
            + 4 * usize::from(self.checksum_present())
            + 4 * usize::from(self.key_present())
            + 4 * usize::from(self.sequence_number_present())
    }

    fn word_at(&self, offset: usize) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[offset], b[offset + 1], b[offset + 2], b[offset + 3]])
    }

    /// The Checksum field, if present.
    pub fn checksum(&self) -> Option<u16> {
        let b = self.buffer.as_ref();
        self.checksum_present()
            .then(|| u16::from_be_bytes([b[4], b[5]]))
    }

    /// The Key field, if present.
    pub fn key(&self) -> Option<u32> {
        let offset = GRE_BASE_HEADER_LEN + 4 * usize::from(self.checksum_present());
        self.key_present().then(|| self.word_at(offset))
    }

    /// The Sequence Number field, if present.
    pub fn sequence_number(&self) -> Option<u32> {
        let offset = GRE_BASE_HEADER_LEN
            + 4 * usize::from(self.checksum_present())
            + 4 * usize::from(self.key_present());
        self.sequence_number_present().then(|| self.word_at(offset))
    }

    /// Whether the checksum (over header and payload) is right; true when absent.
    pub fn verify_checksum(&self) -> bool {
        !self.checksum_present() || internet_checksum(self.buffer.as_ref()) == 0
    }

    /// The payload: everything after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

/// A GRE header, validated: what the tunnel logic works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GreRepr {
    pub protocol_type: ProtocolType,
    /// Whether a checksum is sent (C bit); parsing verifies it when present.
    pub checksum_present: bool,
    /// The Key (RFC 2890 section 2.1): identifies the PDN connection (RFC 5845).
    pub key: Option<u32>,
    /// The Sequence Number (RFC 2890 section 2.2).
    pub sequence_number: Option<u32>,
}

impl GreRepr {
    /// A header with a key and nothing else optional, for the inner packet's IP version.
    pub fn keyed(protocol_type: ProtocolType, key: u32) -> Self {
        GreRepr {
            protocol_type,
            checksum_present: false,
            key: Some(key),
            sequence_number: None,
        }
    }

    /// Parses a checked view, verifying the checksum when present.
    pub fn parse<T: AsRef<[u8]>>(packet: &GrePacket<T>) -> Result<Self, TunnelError> {
        if !packet.verify_checksum() {
            return Err(TunnelError::BadChecksum);
        }
        Ok(GreRepr {
            protocol_type: packet.protocol_type(),
            checksum_present: packet.checksum_present(),
            key: packet.key(),
            sequence_number: packet.sequence_number(),
        })
    }

    /// The header length this header emits.
    pub fn header_len(&self) -> usize {
        GRE_BASE_HEADER_LEN
            + 4 * usize::from(self.checksum_present)
            + 4 * usize::from(self.key.is_some())
            + 4 * usize::from(self.sequence_number.is_some())
    }

    /// Writes the header into the start of `packet`, whose payload must already be in
    /// place after [`GreRepr::header_len`] octets (the checksum covers it).
    ///
    /// # Panics
    /// If `packet` is shorter than the header: a caller's sizing error, never input data.
    pub fn emit(&self, packet: &mut [u8]) {
        let mut flags = 0;
        if self.checksum_present {
            flags |= FLAG_C;
        }
        if self.key.is_some() {
            flags |= FLAG_K;
        }
        if self.sequence_number.is_some() {
            flags |= FLAG_S;
        }
        packet[0] = flags;
        packet[1] = 0; // reserved0 bits 6-12 and version 0
        packet[2..4].copy_from_slice(&u16::from(self.protocol_type).to_be_bytes());
        let mut offset = GRE_BASE_HEADER_LEN;
        if self.checksum_present {
            packet[offset..offset + 4].fill(0); // checksum (filled below) and reserved1
            offset += 4;
        }
        for field in [self.key, self.sequence_number].into_iter().flatten() {
            packet[offset..offset + 4].copy_from_slice(&field.to_be_bytes());
            offset += 4;
        }
        if self.checksum_present {
            let checksum = internet_checksum(packet);
            packet[4..6].copy_from_slice(&checksum.to_be_bytes());
        }
    }

    /// Appends this header and `payload` to `out`.
    pub fn emit_with_payload(&self, payload: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.header_len(), 0);
        out.extend_from_slice(payload);
        self.emit(&mut out[start..]);
    }
}

/// The outer IP header of a tunnelled packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OuterHeader {
    /// Our tunnel endpoint address.
    pub source: IpAddr,
    /// The peer's tunnel endpoint address.
    pub destination: IpAddr,
    /// TTL (IPv4) or Hop Limit (IPv6).
    pub hop_limit: u8,
}

impl OuterHeader {
    /// The octets the outer header and `gre` add to an inner packet (IPv4 without
    /// options: 20, IPv6 without extension headers: 40): subtract from the path MTU to
    /// get the largest inner packet that fits.
    pub fn overhead(&self, gre: &GreRepr) -> usize {
        let ip = match self.source {
            IpAddr::V4(_) => Ipv4Header::MIN_LEN,
            IpAddr::V6(_) => Ipv6Header::LEN,
        };
        ip + gre.header_len()
    }
}

/// Appends to `out` the outer IPv4 or IPv6 header (protocol 47; IPv4 with DF set and a
/// correct header checksum), then `gre` and the inner packet.
///
/// The inner packet's version nibble must agree with `gre.protocol_type`.
pub fn encapsulate(
    outer: &OuterHeader,
    gre: &GreRepr,
    inner: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), TunnelError> {
    check_inner(gre.protocol_type, inner)?;
    let gre_len = gre.header_len() + inner.len();
    let payload_len = u16::try_from(gre_len).map_err(|_| TunnelError::TooLong(gre_len))?;
    match (outer.source, outer.destination) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut header = Ipv4Header::new(
                payload_len,
                outer.hop_limit,
                IpNumber::GRE,
                s.octets(),
                d.octets(),
            )
            .map_err(|_| TunnelError::TooLong(gre_len))?;
            header.header_checksum = header.calc_header_checksum();
            out.extend_from_slice(&header.to_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let header = Ipv6Header {
                traffic_class: 0,
                flow_label: Ipv6FlowLabel::ZERO,
                payload_length: payload_len,
                next_header: IpNumber::GRE,
                hop_limit: outer.hop_limit,
                source: s.octets(),
                destination: d.octets(),
            };
            out.extend_from_slice(&header.to_bytes());
        }
        _ => return Err(TunnelError::MixedAddressFamilies),
    }
    gre.emit_with_payload(inner, out);
    Ok(())
}

fn check_inner(protocol_type: ProtocolType, inner: &[u8]) -> Result<(), TunnelError> {
    let expected = match protocol_type {
        ProtocolType::Unknown(v) => return Err(TunnelError::UnsupportedProtocolType(v)),
        p => p.ip_version().unwrap_or(0),
    };
    let found = inner
        .first()
        .map(|b| b >> 4)
        .ok_or(TunnelError::Truncated("empty inner packet"))?;
    if found != expected {
        return Err(TunnelError::InnerVersionMismatch { expected, found });
    }
    Ok(())
}

/// A keyed GRE packet taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decapsulated<'a> {
    /// The outer source address (the peer's tunnel endpoint), when the outer header was
    /// seen ([`decapsulate_ip`]).
    pub outer_source: Option<IpAddr>,
    pub outer_destination: Option<IpAddr>,
    pub gre: GreRepr,
    /// The key, which TS 29.275 requires to be present.
    pub key: u32,
    /// The inner IPv4 or IPv6 packet.
    pub inner: &'a [u8],
}

/// Takes apart a GRE packet (header and payload, as a raw IPv6 socket delivers it):
/// the header must parse, carry a key, and carry IPv4 or IPv6 matching the inner
/// packet's version.
pub fn decapsulate_gre(gre_packet: &[u8]) -> Result<Decapsulated<'_>, TunnelError> {
    let view = GrePacket::new_checked(gre_packet)?;
    let gre = GreRepr::parse(&view)?;
    let key = gre.key.ok_or(TunnelError::KeyMissing)?;
    let inner = &gre_packet[view.header_len()..];
    check_inner(gre.protocol_type, inner)?;
    Ok(Decapsulated {
        outer_source: None,
        outer_destination: None,
        gre,
        key,
        inner,
    })
}

/// Takes apart an outer IPv4 or IPv6 packet carrying keyed GRE (as a raw IPv4 socket
/// delivers it). IPv6 extension headers are skipped; fragments are refused.
pub fn decapsulate_ip(packet: &[u8]) -> Result<Decapsulated<'_>, TunnelError> {
    let ip = IpSlice::from_slice(packet).map_err(|e| TunnelError::BadOuterHeader(e.to_string()))?;
    let payload = ip.payload();
    if payload.ip_number != IpNumber::GRE {
        return Err(TunnelError::NotGre(payload.ip_number.0));
    }
    if payload.fragmented {
        return Err(TunnelError::Fragmented);
    }
    let mut d = decapsulate_gre(payload.payload)?;
    d.outer_source = Some(ip.source_addr());
    d.outer_destination = Some(ip.destination_addr());
    Ok(d)
}

#[cfg(test)]
mod tests;
