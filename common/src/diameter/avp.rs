//! AVPs (RFC 6733 section 4): the checked view over an AVP's bytes, the owned [`Avp`]
//! representation, and typed access to the data formats of RFC 6733 sections 4.2 and 4.3.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           AVP Code                            |
//! |V M P r r r r r|                  AVP Length                   |
//! |                        Vendor-ID (opt)                        |
//! |    Data ...   (padded with zeros to a multiple of 4 octets)
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an AVP's bytes or data cannot be read: the AVP layer's errors, each holding the
/// Failed-AVP content RFC 6733 section 7.5 asks for. [`super::Error`] takes them in with
/// `From` (DIAMETER_INVALID_AVP_LENGTH, DIAMETER_INVALID_AVP_BITS,
/// DIAMETER_INVALID_AVP_VALUE).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvpError {
    /// A length below the header, beyond the container, or wrong for the data format.
    #[error("AVP {} has an invalid length", .0.code)]
    InvalidLength(Avp),
    /// Reserved flag bits set.
    #[error("AVP {} has invalid flag bits", .0.code)]
    InvalidBits(Avp),
    /// Data that is not a valid value of its format.
    #[error("AVP {} has an invalid value", .0.code)]
    InvalidValue(Avp),
}

impl AvpError {
    /// Re-points an error found inside a Grouped AVP at the group, so the Failed-AVP holds
    /// the grouped AVP that holds the offending one (RFC 6733 section 7.5).
    pub(crate) fn within(self, parent: &Avp) -> Self {
        let wrap = |failed: Avp| parent.wrapping(&failed);
        match self {
            AvpError::InvalidLength(failed) => AvpError::InvalidLength(wrap(failed)),
            AvpError::InvalidBits(failed) => AvpError::InvalidBits(wrap(failed)),
            AvpError::InvalidValue(failed) => AvpError::InvalidValue(wrap(failed)),
        }
    }
}

/// Why a representation could not be written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The output buffer is shorter than [`buffer_len`](super::Message::buffer_len).
    #[error("output buffer of {have} bytes, {need} needed")]
    BufferTooShort { have: usize, need: usize },
    /// A length or a command code does not fit its 24-bit field.
    #[error("{0} does not fit in 24 bits")]
    TooLarge(&'static str),
}

/// The V (vendor-specific) flag: a Vendor-ID field follows the length.
pub const FLAG_VENDOR: u8 = 0x80;
/// The M (mandatory) flag: a receiver that does not know the AVP must reject the message.
pub const FLAG_MANDATORY: u8 = 0x40;
/// The P flag (end-to-end protection, RFC 6733 section 4.1).
pub const FLAG_PROTECTED: u8 = 0x20;
/// Bits reserved by RFC 6733 section 4.1; a set one is an error (DIAMETER_INVALID_AVP_BITS).
pub const FLAG_RESERVED: u8 = 0x1f;

/// Largest value of the 24-bit length fields.
pub(crate) const MAX_LEN24: usize = 0x00ff_ffff;

/// Rounds up to the next multiple of 4 (AVP padding, RFC 6733 section 4).
pub(crate) fn pad4(len: usize) -> usize {
    len.saturating_add(3) & !3
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        word.copy_from_slice(src);
    }
    u32::from_be_bytes(word)
}

fn be_u24(bytes: &[u8], at: usize) -> u32 {
    match bytes.get(at..at + 3) {
        Some(b) => u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]),
        None => 0,
    }
}

/// A checked view over one AVP at the start of a buffer.
#[derive(Debug, Clone, Copy)]
pub struct AvpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> AvpPacket<T> {
    /// Checks that the header is complete and that the AVP Length fits both the header and
    /// the buffer; every accessor below then reads within bounds.
    pub fn new_checked(buffer: T) -> Result<Self, AvpError> {
        let bytes = buffer.as_ref();
        if bytes.len() < 8 {
            return Err(AvpError::InvalidLength(failed_from_header(bytes)));
        }
        let flags = bytes[4];
        let header_len = if flags & FLAG_VENDOR != 0 { 12 } else { 8 };
        let length = be_u24(bytes, 5) as usize;
        if length < header_len || length > bytes.len() {
            return Err(AvpError::InvalidLength(failed_from_header(bytes)));
        }
        Ok(AvpPacket { buffer })
    }

    /// The AVP Code.
    pub fn code(&self) -> u32 {
        be_u32(self.buffer.as_ref(), 0)
    }

    /// The AVP Flags octet, reserved bits included.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[4]
    }

    /// The AVP Length: header plus data, padding excluded.
    pub fn length(&self) -> usize {
        be_u24(self.buffer.as_ref(), 5) as usize
    }

    /// The Vendor-ID, present when the V flag is set.
    pub fn vendor_id(&self) -> Option<u32> {
        (self.flags() & FLAG_VENDOR != 0).then(|| be_u32(self.buffer.as_ref(), 8))
    }

    /// Length of the header: 12 with a Vendor-ID, else 8.
    pub fn header_len(&self) -> usize {
        if self.flags() & FLAG_VENDOR != 0 {
            12
        } else {
            8
        }
    }

    /// The data, padding excluded.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..self.length()]
    }

    /// Bytes this AVP occupies in its container: its length padded to 4, cut at the end of
    /// the buffer (a last AVP may lack its padding inside a lenient container).
    pub fn padded_len(&self) -> usize {
        pad4(self.length()).min(self.buffer.as_ref().len())
    }
}

/// The Failed-AVP content for an AVP whose length cannot be trusted: its header (padded
/// with zeros to the minimum header length) and no data (RFC 6733 section 7.1.5, 5014).
fn failed_from_header(bytes: &[u8]) -> Avp {
    let mut header = [0u8; 12];
    let take = bytes.len().min(12);
    header[..take].copy_from_slice(&bytes[..take]);
    let flags = header[4];
    Avp {
        code: be_u32(&header, 0),
        vendor_id: (flags & FLAG_VENDOR != 0).then(|| be_u32(&header, 8)),
        mandatory: flags & FLAG_MANDATORY != 0,
        protected: flags & FLAG_PROTECTED != 0,
        data: Vec::new(),
    }
}

/// Iterates over the AVPs packed in a buffer (a message body or a Grouped AVP's data).
/// Yields an error once, for the first AVP whose header or length is bad, and stops.
#[derive(Debug, Clone)]
pub struct AvpIter<'a> {
    rest: &'a [u8],
}

impl<'a> AvpIter<'a> {
    /// Iterates over `buffer`, which holds zero or more padded AVPs.
    pub fn new(buffer: &'a [u8]) -> Self {
        AvpIter { rest: buffer }
    }
}

impl<'a> Iterator for AvpIter<'a> {
    type Item = Result<AvpPacket<&'a [u8]>, AvpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match AvpPacket::new_checked(self.rest) {
            Ok(packet) => {
                let used = packet.padded_len();
                let (this, rest) = self.rest.split_at(used);
                self.rest = rest;
                Some(Ok(AvpPacket { buffer: this }))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// One AVP, owned: what a message carries once parsed, and what builders produce.
///
/// The data is kept as bytes: the codec needs no dictionary to parse, re-emit or relay a
/// message, and the typed accessors ([`Avp::as_u32`], [`Avp::as_grouped`], ...) read a
/// format when the caller knows it. The V flag is implied by `vendor_id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Avp {
    /// The AVP Code.
    pub code: u32,
    /// The Vendor-ID; `Some` sets the V flag.
    pub vendor_id: Option<u32>,
    /// The M flag.
    pub mandatory: bool,
    /// The P flag.
    pub protected: bool,
    /// The data, without padding.
    pub data: Vec<u8>,
}

impl Avp {
    /// An AVP with the M bit set and no vendor: the shape of nearly every base AVP.
    pub fn new(code: u32, data: Vec<u8>) -> Self {
        Avp {
            code,
            vendor_id: None,
            mandatory: true,
            protected: false,
            data,
        }
    }

    /// Sets the Vendor-ID (and so the V flag).
    pub fn with_vendor(mut self, vendor_id: u32) -> Self {
        self.vendor_id = Some(vendor_id);
        self
    }

    /// Sets or clears the M flag.
    pub fn with_mandatory(mut self, mandatory: bool) -> Self {
        self.mandatory = mandatory;
        self
    }

    /// OctetString (RFC 6733 section 4.2).
    pub fn octets(code: u32, data: &[u8]) -> Self {
        Avp::new(code, data.to_vec())
    }

    /// UTF8String (RFC 6733 section 4.3.1).
    pub fn utf8(code: u32, text: &str) -> Self {
        Avp::new(code, text.as_bytes().to_vec())
    }

    /// DiameterIdentity (RFC 6733 section 4.3.1): an FQDN or realm, in ASCII.
    pub fn identity(code: u32, identity: &str) -> Self {
        Avp::new(code, identity.as_bytes().to_vec())
    }

    /// Unsigned32 (RFC 6733 section 4.2).
    pub fn u32(code: u32, value: u32) -> Self {
        Avp::new(code, value.to_be_bytes().to_vec())
    }

    /// Unsigned64 (RFC 6733 section 4.2).
    pub fn u64(code: u32, value: u64) -> Self {
        Avp::new(code, value.to_be_bytes().to_vec())
    }

    /// Integer32 (RFC 6733 section 4.2).
    pub fn i32(code: u32, value: i32) -> Self {
        Avp::new(code, value.to_be_bytes().to_vec())
    }

    /// Integer64 (RFC 6733 section 4.2).
    pub fn i64(code: u32, value: i64) -> Self {
        Avp::new(code, value.to_be_bytes().to_vec())
    }

    /// Enumerated (RFC 6733 section 4.3.1): an Integer32 whose values the AVP defines.
    pub fn enumerated(code: u32, value: i32) -> Self {
        Avp::i32(code, value)
    }

    /// Time (RFC 6733 section 4.3.1): seconds since 1900-01-01 00:00 UTC, 32 bits.
    pub fn time(code: u32, ntp_seconds: u32) -> Self {
        Avp::u32(code, ntp_seconds)
    }

    /// Address (RFC 6733 section 4.3.1): 2-byte address family, then the address.
    pub fn address(code: u32, address: &Address) -> Self {
        Avp::new(code, address.to_bytes())
    }

    /// Grouped (RFC 6733 section 4.4): the member AVPs, each padded, as the data.
    pub fn grouped(code: u32, members: &[Avp]) -> Self {
        let mut data = Vec::new();
        for member in members {
            member.append_to(&mut data);
        }
        Avp::new(code, data)
    }

    /// Header length: 12 with a Vendor-ID, else 8.
    pub fn header_len(&self) -> usize {
        if self.vendor_id.is_some() {
            12
        } else {
            8
        }
    }

    /// The value of the AVP Length field (header plus data).
    pub fn length(&self) -> usize {
        self.header_len() + self.data.len()
    }

    /// Bytes the AVP takes when emitted, padding included.
    pub fn buffer_len(&self) -> usize {
        pad4(self.length())
    }

    /// The AVP Flags octet this AVP is emitted with.
    pub fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.vendor_id.is_some() {
            flags |= FLAG_VENDOR;
        }
        if self.mandatory {
            flags |= FLAG_MANDATORY;
        }
        if self.protected {
            flags |= FLAG_PROTECTED;
        }
        flags
    }

    /// Reads one AVP from a checked view. Reserved flag bits are an error
    /// (DIAMETER_INVALID_AVP_BITS, RFC 6733 section 4.1).
    pub fn parse<T: AsRef<[u8]>>(packet: &AvpPacket<T>) -> Result<Self, AvpError> {
        let avp = Avp {
            code: packet.code(),
            vendor_id: packet.vendor_id(),
            mandatory: packet.flags() & FLAG_MANDATORY != 0,
            protected: packet.flags() & FLAG_PROTECTED != 0,
            data: packet.data().to_vec(),
        };
        if packet.flags() & FLAG_RESERVED != 0 {
            return Err(AvpError::InvalidBits(avp));
        }
        Ok(avp)
    }

    /// Reads every AVP packed in `buffer`.
    pub fn parse_all(buffer: &[u8]) -> Result<Vec<Avp>, AvpError> {
        AvpIter::new(buffer)
            .map(|packet| packet.and_then(|p| Avp::parse(&p)))
            .collect()
    }

    /// Writes the AVP, padding included, at the start of `out`; returns the bytes written.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, EmitError> {
        let need = self.buffer_len();
        if self.length() > MAX_LEN24 {
            return Err(EmitError::TooLarge("AVP length"));
        }
        let Some(out) = out.get_mut(..need) else {
            return Err(EmitError::BufferTooShort {
                have: out.len(),
                need,
            });
        };
        out[0..4].copy_from_slice(&self.code.to_be_bytes());
        out[4] = self.flags();
        out[5..8].copy_from_slice(&(self.length() as u32).to_be_bytes()[1..]);
        let mut at = 8;
        if let Some(vendor) = self.vendor_id {
            out[8..12].copy_from_slice(&vendor.to_be_bytes());
            at = 12;
        }
        out[at..at + self.data.len()].copy_from_slice(&self.data);
        out[at + self.data.len()..].fill(0);
        Ok(need)
    }

    /// Appends the AVP, padding included, to `out`. An AVP too long for its 24-bit length
    /// field is written with the length cut to 24 bits; use [`Avp::emit`] to be told.
    pub fn append_to(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.buffer_len(), 0);
        if self.emit(&mut out[start..]).is_err() {
            // Only TooLarge can happen here: keep the bytes, cut the length field.
            let length = (self.length() & MAX_LEN24) as u32;
            out[start..start + 4].copy_from_slice(&self.code.to_be_bytes());
            out[start + 4] = self.flags();
            out[start + 5..start + 8].copy_from_slice(&length.to_be_bytes()[1..]);
            let at = start + self.header_len();
            if let Some(vendor) = self.vendor_id {
                out[start + 8..start + 12].copy_from_slice(&vendor.to_be_bytes());
            }
            out[at..at + self.data.len()].copy_from_slice(&self.data);
        }
    }

    /// The AVP as bytes, padding included.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buffer_len());
        self.append_to(&mut out);
        out
    }

    /// Whether this AVP has the given code and vendor.
    pub fn is(&self, code: u32, vendor_id: Option<u32>) -> bool {
        self.code == code && self.vendor_id == vendor_id
    }

    /// This AVP with `inner` (emitted) as its data: the Failed-AVP of an error found
    /// inside a Grouped AVP (RFC 6733 section 7.5).
    pub(crate) fn wrapping(&self, inner: &Avp) -> Avp {
        Avp {
            code: self.code,
            vendor_id: self.vendor_id,
            mandatory: self.mandatory,
            protected: self.protected,
            data: inner.to_vec(),
        }
    }

    fn length_error(&self, min_len: usize) -> AvpError {
        AvpError::InvalidLength(Avp {
            data: vec![0; min_len],
            ..self.clone()
        })
    }

    fn value_error(&self) -> AvpError {
        AvpError::InvalidValue(self.clone())
    }

    fn fixed<const N: usize>(&self) -> Result<[u8; N], AvpError> {
        <[u8; N]>::try_from(self.data.as_slice()).map_err(|_| self.length_error(N))
    }

    /// OctetString.
    pub fn as_octets(&self) -> &[u8] {
        &self.data
    }

    /// Unsigned32; a length other than 4 is DIAMETER_INVALID_AVP_LENGTH.
    pub fn as_u32(&self) -> Result<u32, AvpError> {
        self.fixed::<4>().map(u32::from_be_bytes)
    }

    /// Unsigned64; a length other than 8 is DIAMETER_INVALID_AVP_LENGTH.
    pub fn as_u64(&self) -> Result<u64, AvpError> {
        self.fixed::<8>().map(u64::from_be_bytes)
    }

    /// Integer32.
    pub fn as_i32(&self) -> Result<i32, AvpError> {
        self.fixed::<4>().map(i32::from_be_bytes)
    }

    /// Integer64.
    pub fn as_i64(&self) -> Result<i64, AvpError> {
        self.fixed::<8>().map(i64::from_be_bytes)
    }

    /// Enumerated (an Integer32).
    pub fn as_enumerated(&self) -> Result<i32, AvpError> {
        self.as_i32()
    }

    /// Time: seconds since 1900-01-01 00:00 UTC.
    pub fn as_time(&self) -> Result<u32, AvpError> {
        self.as_u32()
    }

    /// UTF8String; bytes that are not UTF-8 are DIAMETER_INVALID_AVP_VALUE.
    pub fn as_utf8(&self) -> Result<&str, AvpError> {
        std::str::from_utf8(&self.data).map_err(|_| self.value_error())
    }

    /// DiameterIdentity: a non-empty FQDN or realm of printable ASCII without spaces
    /// (RFC 6733 section 4.3.1); anything else is DIAMETER_INVALID_AVP_VALUE.
    pub fn as_identity(&self) -> Result<&str, AvpError> {
        if self.data.is_empty() || !self.data.iter().all(u8::is_ascii_graphic) {
            return Err(self.value_error());
        }
        self.as_utf8()
    }

    /// Address: the 2-byte family (1 = IPv4, 2 = IPv6), then the address. A wrong length
    /// for the family is DIAMETER_INVALID_AVP_LENGTH.
    pub fn as_address(&self) -> Result<Address, AvpError> {
        Address::from_bytes(&self.data).ok_or_else(|| {
            let min = match self.data.get(..2) {
                Some([0, 2]) => 18,
                _ => 6,
            };
            self.length_error(min)
        })
    }

    /// An Address that must be IPv4 or IPv6; another family is DIAMETER_INVALID_AVP_VALUE.
    pub fn as_ip(&self) -> Result<IpAddr, AvpError> {
        match self.as_address()? {
            Address::Ip(ip) => Ok(ip),
            Address::Other { .. } => Err(self.value_error()),
        }
    }

    /// Grouped: the member AVPs. An error inside is reported with this AVP around the
    /// offending member, as RFC 6733 section 7.5 allows.
    pub fn as_grouped(&self) -> Result<Vec<Avp>, AvpError> {
        Avp::parse_all(&self.data).map_err(|e| e.within(self))
    }
}

/// The Address data format (RFC 6733 section 4.3.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// Family 1 (IPv4) with 4 bytes, or family 2 (IPv6) with 16.
    Ip(IpAddr),
    /// Any other family, kept as it came.
    Other { family: u16, address: Vec<u8> },
}

impl Address {
    /// IANA address family number of IPv4.
    pub const FAMILY_IPV4: u16 = 1;
    /// IANA address family number of IPv6.
    pub const FAMILY_IPV6: u16 = 2;

    /// Reads the family and the address; `None` when the length is wrong for the family.
    pub fn from_bytes(bytes: &[u8]) -> Option<Address> {
        let family = u16::from_be_bytes(bytes.get(..2)?.try_into().ok()?);
        let rest = &bytes[2..];
        match family {
            Self::FAMILY_IPV4 => {
                let octets: [u8; 4] = rest.try_into().ok()?;
                Some(Address::Ip(IpAddr::V4(Ipv4Addr::from(octets))))
            }
            Self::FAMILY_IPV6 => {
                let octets: [u8; 16] = rest.try_into().ok()?;
                Some(Address::Ip(IpAddr::V6(Ipv6Addr::from(octets))))
            }
            family => Some(Address::Other {
                family,
                address: rest.to_vec(),
            }),
        }
    }

    /// Family then address, as the AVP data.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Address::Ip(IpAddr::V4(ip)) => [&[0, 1][..], &ip.octets()].concat(),
            Address::Ip(IpAddr::V6(ip)) => [&[0, 2][..], &ip.octets()].concat(),
            Address::Other { family, address } => {
                [&family.to_be_bytes()[..], address.as_slice()].concat()
            }
        }
    }
}

impl From<IpAddr> for Address {
    fn from(ip: IpAddr) -> Self {
        Address::Ip(ip)
    }
}
