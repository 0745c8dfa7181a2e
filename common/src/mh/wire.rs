//! Where the octets are: the field ranges of the Mobility Header and of each message's
//! fixed part (smoltcp's `mod field`), the big-endian readers over them, and the bounded
//! writer every emitter uses.
//!
//! Offsets count from the first octet of the Mobility Header (RFC 6275 section 6.1.1),
//! which is also what the `xn+y` alignment of the options refers to (section 6.2).

/// The field ranges. A view checks once, in its `new_checked`, that the buffer reaches
/// the end of its message's fixed part; every accessor then reads inside these ranges.
/// Every field is listed, reserved ones too, so the layout reads as the RFC draws it.
#[allow(dead_code)]
pub mod field {
    /// A fixed-size field.
    pub type Field = core::ops::Range<usize>;
    /// Everything from an offset on.
    pub type Rest = core::ops::RangeFrom<usize>;

    /// The Mobility Header (RFC 6275 section 6.1.1).
    pub const PAYLOAD_PROTO: usize = 0;
    /// In units of 8 octets, not counting the first 8.
    pub const HEADER_LEN: usize = 1;
    pub const MH_TYPE: usize = 2;
    pub const RESERVED: usize = 3;
    pub const CHECKSUM: Field = 4..6;
    /// The message data: the message's fixed part, then its options.
    pub const MESSAGE_DATA: Rest = 6..;
    /// The shortest Mobility Header: Header Len 0.
    pub const MIN_LEN: usize = 8;

    /// Binding Update (RFC 6275 section 6.1.7; the P flag of RFC 5213 section 8.1).
    pub mod binding_update {
        use super::{Field, Rest};
        pub const SEQUENCE: Field = 6..8;
        pub const FLAGS: Field = 8..10;
        /// In units of 4 seconds.
        pub const LIFETIME: Field = 10..12;
        pub const OPTIONS: Rest = 12..;
    }

    /// Binding Acknowledgement (RFC 6275 section 6.1.8; RFC 5213 section 8.2).
    pub mod binding_ack {
        use super::{Field, Rest};
        pub const STATUS: usize = 6;
        pub const FLAGS: usize = 7;
        pub const SEQUENCE: Field = 8..10;
        pub const LIFETIME: Field = 10..12;
        pub const OPTIONS: Rest = 12..;
    }

    /// Binding Error (RFC 6275 section 6.1.9).
    pub mod binding_error {
        use super::{Field, Rest};
        pub const STATUS: usize = 6;
        pub const RESERVED: usize = 7;
        pub const HOME_ADDRESS: Field = 8..24;
        pub const OPTIONS: Rest = 24..;
    }

    /// Heartbeat (RFC 5847 section 5.1).
    pub mod heartbeat {
        use super::{Field, Rest};
        pub const RESERVED: usize = 6;
        /// Reserved bits, then U (0x02) and R (0x01).
        pub const FLAGS: usize = 7;
        pub const SEQUENCE: Field = 8..12;
        pub const OPTIONS: Rest = 12..;
    }

    /// Binding Revocation Indication and Acknowledgement (RFC 5846 sections 5.1, 5.2).
    pub mod binding_revocation {
        use super::{Field, Rest};
        pub const TYPE: usize = 6;
        /// Revocation Trigger in an indication, Status in an acknowledgement.
        pub const TRIGGER_OR_STATUS: usize = 7;
        pub const SEQUENCE: Field = 8..10;
        /// P (0x80), V (0x40), G (0x20), then reserved bits.
        pub const FLAGS: usize = 10;
        pub const RESERVED: usize = 11;
        pub const OPTIONS: Rest = 12..;
    }

    /// A mobility option (RFC 6275 section 6.2): Type, Length, then Length octets of data.
    /// Pad1 is the one option with no Length.
    pub mod option {
        use super::Rest;
        pub const TYPE: usize = 0;
        pub const LENGTH: usize = 1;
        pub const DATA: Rest = 2..;
    }
}

#[inline]
pub(crate) fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

#[inline]
pub(crate) fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[inline]
pub(crate) fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

#[inline]
pub(crate) fn ipv4(b: &[u8]) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

#[inline]
pub(crate) fn ipv6(b: &[u8]) -> std::net::Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&b[..16]);
    std::net::Ipv6Addr::from(octets)
}

/// A bounded writer: counts every octet, stores those that fit, never panics. Counting
/// alone (an empty buffer) sizes a message; the same code then writes it.
pub(crate) struct Sink<'a> {
    pub(crate) out: &'a mut [u8],
    pub(crate) pos: usize,
}

impl<'a> Sink<'a> {
    #[inline]
    pub(crate) fn new(out: &'a mut [u8]) -> Self {
        Sink { out, pos: 0 }
    }

    #[inline]
    pub(crate) fn counting() -> Sink<'static> {
        Sink {
            out: &mut [],
            pos: 0,
        }
    }

    #[inline]
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        if let Some(dst) = self.out.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
        } else if let Some(dst) = self.out.get_mut(self.pos..) {
            let n = dst.len();
            dst.copy_from_slice(&bytes[..n]);
        }
        self.pos = end;
    }
}
