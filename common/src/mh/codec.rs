//! Parsing and emitting whole Mobility Header messages: the checked views (the Mobility
//! Header, and one per message, each reading its fields through the ranges of
//! [`super::wire::field`]), [`MobilityHeaderRepr`], and the checksum for both transports.
//!
//! Checksum. Over IPv6 the Mobility Header checksum is the RFC 6275 section 6.1.1 one's
//! complement sum over the IPv6 pseudo-header (source, destination, upper-layer length,
//! next header 135) and the whole Mobility Header. Over IPv4 (RFC 5844) the Mobility
//! Header travels directly in a UDP datagram to port 5436 and its Checksum field "MUST
//! be set to zero (and the UDP checksum MUST be used instead)" (sections 4.1.3.2 and
//! 4.2.2.1); a receiver ignores it (sections 4.1.3.1 and 4.2.2):
//! [`ChecksumContext::Ipv4Udp`] writes zero and verifies nothing. On a raw IPv6 socket
//! with `IPV6_CHECKSUM` the kernel fills and verifies the field, so drivers pass
//! [`ChecksumContext::Skip`].
//!
//! Alignment. Every option is placed at the offset its `xn+y` alignment rule names
//! (offsets counted from the start of the Mobility Header, which IPv6 places on an
//! 8-octet boundary), with Pad1 / PadN in between, and the message is padded to a multiple
//! of 8 octets (RFC 6275 sections 6.1.1 and 6.2). The parser accepts any alignment.

use std::net::Ipv6Addr;

use super::error::MhError;
use super::message::*;
use super::options::{pad_to, parse_options, Alignment, OptionIter};
use super::types::*;
use super::wire::field;
use super::wire::{be16, be32, ipv6, Sink};

/// MH Type of a Binding Update (RFC 6275 section 6.1.7).
pub const MH_TYPE_BINDING_UPDATE: u8 = MhType::BindingUpdate.value();
/// MH Type of a Binding Acknowledgement (RFC 6275 section 6.1.8).
pub const MH_TYPE_BINDING_ACK: u8 = MhType::BindingAck.value();
/// MH Type of a Binding Error (RFC 6275 section 6.1.9).
pub const MH_TYPE_BINDING_ERROR: u8 = MhType::BindingError.value();
/// MH Type of a Heartbeat (RFC 5847 section 5.1).
pub const MH_TYPE_HEARTBEAT: u8 = MhType::Heartbeat.value();
/// MH Type of a Binding Revocation message (RFC 5846 section 5).
pub const MH_TYPE_BINDING_REVOCATION: u8 = MhType::BindingRevocation.value();

/// Largest Mobility Header the 8-bit Header Len field can describe.
pub const MH_MAX_LEN: usize = 256 * 8;

// ---------------------------------------------------------------------------------------
// Checksum

/// One's complement sum of `data` added to `sum` (RFC 1071), not yet folded.
fn sum_words(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([pair[0], pair[1]])));
    }
    if let [last] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*last) << 8);
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The folded one's complement sum of the pseudo-header and `mh` (checksum field as it
/// is in `mh`), or `None` when the context computes no checksum.
fn pseudo_header_sum(context: ChecksumContext, mh: &[u8]) -> Option<u16> {
    let (source, destination) = match context {
        ChecksumContext::Ipv6 {
            source,
            destination,
        } => (source, destination),
        ChecksumContext::Ipv4Udp | ChecksumContext::Skip => return None,
    };
    let mut sum = sum_words(0, &source.octets());
    sum = sum_words(sum, &destination.octets());
    let length = u32::try_from(mh.len()).unwrap_or(u32::MAX);
    sum = sum_words(sum, &length.to_be_bytes());
    sum = sum_words(sum, &[0, 0, 0, IPPROTO_MH]);
    sum = sum_words(sum, mh);
    Some(fold(sum))
}

/// The checksum to put in a Mobility Header whose checksum field is zero.
pub fn mobility_header_checksum(context: ChecksumContext, mh: &[u8]) -> Option<u16> {
    pseudo_header_sum(context, mh).map(|sum| !sum)
}

/// Whether the checksum in `mh` verifies (always true for [`ChecksumContext::Ipv4Udp`],
/// whose field is ignored, and for [`ChecksumContext::Skip`]).
pub fn verify_checksum(context: ChecksumContext, mh: &[u8]) -> bool {
    match pseudo_header_sum(context, mh) {
        Some(sum) => sum == 0xffff,
        None => true,
    }
}

// ---------------------------------------------------------------------------------------
// The checked views

/// Checks what every view needs: at least the 8-octet minimum, exactly as long as Header
/// Len says (RFC 6275 section 6.1.1).
fn check_header(bytes: &[u8]) -> Result<(), MhError> {
    if bytes.len() < field::MIN_LEN {
        return Err(MhError::Truncated("shorter than the 8-octet minimum"));
    }
    let declared = (usize::from(bytes[field::HEADER_LEN]) + 1) * 8;
    if bytes.len() < declared {
        return Err(MhError::Truncated("shorter than its Header Len field"));
    }
    if bytes.len() > declared {
        return Err(MhError::Malformed(
            "octets after the end its Header Len gives",
        ));
    }
    Ok(())
}

/// Checks a message view: the header, the MH Type, and the fixed part up to `options`.
fn check_message(
    bytes: &[u8],
    mh_type: MhType,
    options: core::ops::RangeFrom<usize>,
) -> Result<(), MhError> {
    check_header(bytes)?;
    if bytes[field::MH_TYPE] != mh_type.value() {
        return Err(MhError::Malformed("view over another MH Type"));
    }
    if bytes.len() < options.start {
        // The length matches Header Len (check_header): Header Len is what is short.
        return Err(MhError::HeaderLenTooShort(mh_type.value()));
    }
    Ok(())
}

/// A Mobility Header over a byte buffer (RFC 6275 section 6.1.1). `new_checked` makes
/// every accessor safe: the buffer holds exactly `(Header Len + 1) * 8` octets.
#[derive(Debug, Clone)]
pub struct MobilityHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> MobilityHeader<T> {
    /// Checks the lengths: at least the fixed header, and exactly as long as Header Len says.
    pub fn new_checked(buffer: T) -> Result<Self, MhError> {
        check_header(buffer.as_ref())?;
        Ok(MobilityHeader { buffer })
    }

    /// Payload Proto (59, no next header, in every message we send).
    pub fn payload_proto(&self) -> u8 {
        self.buffer.as_ref()[field::PAYLOAD_PROTO]
    }
    /// Total length in octets.
    pub fn len(&self) -> usize {
        self.buffer.as_ref().len()
    }
    /// Never true for a checked view; present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The MH Type octet.
    pub fn mh_type(&self) -> u8 {
        self.buffer.as_ref()[field::MH_TYPE]
    }
    /// The MH Type, named.
    pub fn message_type(&self) -> MhType {
        MhType::from(self.mh_type())
    }
    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }
    /// The message data and its options: everything after the checksum.
    pub fn message_data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::MESSAGE_DATA]
    }
    /// Whether the checksum verifies in `context`.
    pub fn verify_checksum(&self, context: ChecksumContext) -> bool {
        verify_checksum(context, self.buffer.as_ref())
    }
    /// The mobility options after a message's fixed part of `fixed_len` octets (counted
    /// from the end of the checksum).
    pub fn options(&self, fixed_len: usize) -> OptionIter<'_> {
        OptionIter::new(self.message_data().get(fixed_len..).unwrap_or(&[]))
    }
    /// The whole Mobility Header.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Declares the view of one message over the bytes of a whole Mobility Header: the
/// struct, its `new_checked` (header, MH Type and fixed part checked once) and the
/// options iterator; the field accessors follow in an `impl` of their own.
macro_rules! message_view {
    ($(#[$meta:meta])* $view:ident, $mh_type:ident, $fields:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub struct $view<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $view<T> {
            /// Checks the Mobility Header, the MH Type and that the message's fixed part
            /// is there, so that no accessor can panic.
            pub fn new_checked(buffer: T) -> Result<Self, MhError> {
                check_message(buffer.as_ref(), MhType::$mh_type, field::$fields::OPTIONS)?;
                Ok($view { buffer })
            }

            /// The mobility options after the fixed part.
            pub fn options(&self) -> OptionIter<'_> {
                OptionIter::new(&self.buffer.as_ref()[field::$fields::OPTIONS])
            }

            /// The option bytes after the fixed part.
            pub fn options_bytes(&self) -> &[u8] {
                &self.buffer.as_ref()[field::$fields::OPTIONS]
            }
        }
    };
}

message_view!(
    /// A Binding Update (RFC 6275 section 6.1.7), a Proxy Binding Update when the P flag
    /// is set (RFC 5213 section 8.1).
    BindingUpdate, BindingUpdate, binding_update
);

impl<T: AsRef<[u8]>> BindingUpdate<T> {
    pub fn sequence(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::binding_update::SEQUENCE])
    }
    pub fn flags(&self) -> BuFlags {
        BuFlags(be16(&self.buffer.as_ref()[field::binding_update::FLAGS]))
    }
    pub fn lifetime(&self) -> Lifetime {
        Lifetime(be16(&self.buffer.as_ref()[field::binding_update::LIFETIME]))
    }
}

message_view!(
    /// A Binding Acknowledgement (RFC 6275 section 6.1.8), a Proxy Binding
    /// Acknowledgement when the P flag is set (RFC 5213 section 8.2).
    BindingAck, BindingAck, binding_ack
);

impl<T: AsRef<[u8]>> BindingAck<T> {
    pub fn status(&self) -> BindingAckStatus {
        BindingAckStatus::from(self.buffer.as_ref()[field::binding_ack::STATUS])
    }
    pub fn flags(&self) -> BaFlags {
        BaFlags(self.buffer.as_ref()[field::binding_ack::FLAGS])
    }
    pub fn sequence(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::binding_ack::SEQUENCE])
    }
    pub fn lifetime(&self) -> Lifetime {
        Lifetime(be16(&self.buffer.as_ref()[field::binding_ack::LIFETIME]))
    }
}

message_view!(
    /// A Binding Error (RFC 6275 section 6.1.9).
    BindingError, BindingError, binding_error
);

impl<T: AsRef<[u8]>> BindingError<T> {
    pub fn status(&self) -> BindingErrorStatus {
        BindingErrorStatus::from(self.buffer.as_ref()[field::binding_error::STATUS])
    }
    pub fn home_address(&self) -> Ipv6Addr {
        ipv6(&self.buffer.as_ref()[field::binding_error::HOME_ADDRESS])
    }
}

message_view!(
    /// A Heartbeat message (RFC 5847 section 5.1).
    Heartbeat, Heartbeat, heartbeat
);

impl<T: AsRef<[u8]>> Heartbeat<T> {
    /// U flag: unsolicited (no response expected).
    pub fn unsolicited(&self) -> bool {
        self.buffer.as_ref()[field::heartbeat::FLAGS] & HeartbeatRepr::UNSOLICITED != 0
    }
    /// R flag: this is a response.
    pub fn response(&self) -> bool {
        self.buffer.as_ref()[field::heartbeat::FLAGS] & HeartbeatRepr::RESPONSE != 0
    }
    pub fn sequence(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::heartbeat::SEQUENCE])
    }
}

message_view!(
    /// A Binding Revocation Indication or Acknowledgement (RFC 5846 sections 5.1, 5.2).
    BindingRevocation, BindingRevocation, binding_revocation
);

impl<T: AsRef<[u8]>> BindingRevocation<T> {
    pub fn revocation_type(&self) -> BindingRevocationType {
        BindingRevocationType::from(self.buffer.as_ref()[field::binding_revocation::TYPE])
    }
    /// The Revocation Trigger of an indication or the Status of an acknowledgement.
    pub fn trigger_or_status(&self) -> u8 {
        self.buffer.as_ref()[field::binding_revocation::TRIGGER_OR_STATUS]
    }
    pub fn sequence(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::binding_revocation::SEQUENCE])
    }
    /// P, V and G (see [`BindingRevocationRepr::PROXY`] and its siblings).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::binding_revocation::FLAGS]
    }
}

// ---------------------------------------------------------------------------------------
// The representations

impl BindingUpdateRepr {
    pub fn parse<T: AsRef<[u8]>>(view: &BindingUpdate<T>) -> Result<Self, MhError> {
        Ok(BindingUpdateRepr {
            sequence: view.sequence(),
            flags: view.flags(),
            lifetime: view.lifetime(),
            options: parse_options(view.options_bytes())?,
        })
    }
}

impl BindingAckRepr {
    pub fn parse<T: AsRef<[u8]>>(view: &BindingAck<T>) -> Result<Self, MhError> {
        Ok(BindingAckRepr {
            status: view.status(),
            flags: view.flags(),
            sequence: view.sequence(),
            lifetime: view.lifetime(),
            options: parse_options(view.options_bytes())?,
        })
    }
}

impl BindingErrorRepr {
    pub fn parse<T: AsRef<[u8]>>(view: &BindingError<T>) -> Result<Self, MhError> {
        Ok(BindingErrorRepr {
            status: view.status(),
            home_address: view.home_address(),
            options: parse_options(view.options_bytes())?,
        })
    }
}

impl HeartbeatRepr {
    pub fn parse<T: AsRef<[u8]>>(view: &Heartbeat<T>) -> Result<Self, MhError> {
        Ok(HeartbeatRepr {
            unsolicited: view.unsolicited(),
            response: view.response(),
            sequence: view.sequence(),
            options: parse_options(view.options_bytes())?,
        })
    }
}

impl BindingRevocationRepr {
    pub fn parse<T: AsRef<[u8]>>(view: &BindingRevocation<T>) -> Result<Self, MhError> {
        Ok(BindingRevocationRepr {
            revocation_type: view.revocation_type(),
            trigger_or_status: view.trigger_or_status(),
            sequence: view.sequence(),
            flags: view.flags(),
            options: parse_options(view.options_bytes())?,
        })
    }
}

/// A whole Mobility Header message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MobilityHeaderRepr {
    pub payload_proto: u8,
    pub message: MobilityMessage,
}

/// The longest fixed part of a message we emit: a Binding Error's.
const MAX_FIXED_LEN: usize = field::binding_error::OPTIONS.start;

impl MobilityHeaderRepr {
    /// Parses and validates a whole Mobility Header, verifying its checksum in `checksum`.
    pub fn parse(bytes: &[u8], checksum: ChecksumContext) -> Result<Self, MhError> {
        let view = MobilityHeader::new_checked(bytes)?;
        if !view.verify_checksum(checksum) {
            return Err(MhError::BadChecksum);
        }
        Self::parse_view(&view)
    }

    /// Parses a checked view whose checksum the caller has dealt with, in the order of
    /// RFC 6275 section 9.2: a known MH Type, Payload Proto 59, a Header Len at least the
    /// type's fixed part, then the message itself.
    pub fn parse_view<T: AsRef<[u8]>>(view: &MobilityHeader<T>) -> Result<Self, MhError> {
        let bytes = view.as_bytes();
        let known = matches!(
            view.message_type(),
            MhType::BindingUpdate
                | MhType::BindingAck
                | MhType::BindingError
                | MhType::Heartbeat
                | MhType::BindingRevocation
        );
        if known && view.payload_proto() != IPPROTO_NONE {
            return Err(MhError::PayloadProto(view.payload_proto()));
        }
        let message = match view.message_type() {
            MhType::BindingUpdate => MobilityMessage::BindingUpdate(BindingUpdateRepr::parse(
                &BindingUpdate::new_checked(bytes)?,
            )?),
            MhType::BindingAck => MobilityMessage::BindingAck(BindingAckRepr::parse(
                &BindingAck::new_checked(bytes)?,
            )?),
            MhType::BindingError => MobilityMessage::BindingError(BindingErrorRepr::parse(
                &BindingError::new_checked(bytes)?,
            )?),
            MhType::Heartbeat => {
                MobilityMessage::Heartbeat(HeartbeatRepr::parse(&Heartbeat::new_checked(bytes)?)?)
            }
            MhType::BindingRevocation => MobilityMessage::BindingRevocation(
                BindingRevocationRepr::parse(&BindingRevocation::new_checked(bytes)?)?,
            ),
            other => return Err(MhError::UnknownMhType(other.value())),
        };
        Ok(MobilityHeaderRepr {
            payload_proto: view.payload_proto(),
            message,
        })
    }

    /// The MH Type this message is sent with, named.
    pub fn message_type(&self) -> MhType {
        match self.message {
            MobilityMessage::BindingUpdate(_) => MhType::BindingUpdate,
            MobilityMessage::BindingAck(_) => MhType::BindingAck,
            MobilityMessage::BindingError(_) => MhType::BindingError,
            MobilityMessage::Heartbeat(_) => MhType::Heartbeat,
            MobilityMessage::BindingRevocation(_) => MhType::BindingRevocation,
        }
    }

    /// The MH Type this message is sent with.
    pub fn mh_type(&self) -> u8 {
        self.message_type().value()
    }

    /// Octets `emit` writes.
    pub fn buffer_len(&self) -> usize {
        let mut sink = Sink::counting();
        self.write(&mut sink);
        sink.pos
    }

    /// Writes the message into `out` (at least `buffer_len()` long; a shorter buffer gets
    /// a truncated message, never a panic) with its checksum computed for `checksum`.
    ///
    /// The wire limits (255 octets of option data, 2048 octets of message) are the
    /// caller's to respect: [`MobilityHeaderRepr::check_limits`] says whether they hold;
    /// longer option data is cut at 255 octets.
    pub fn emit(&self, out: &mut [u8], checksum: ChecksumContext) {
        let mut sink = Sink::new(out);
        self.write(&mut sink);
        let len = sink.pos;
        finish(out, len, checksum);
    }

    /// Allocates and emits, in one pass for any message within the wire limits.
    pub fn to_bytes(&self, checksum: ChecksumContext) -> Vec<u8> {
        let mut out = vec![0u8; MH_MAX_LEN];
        let mut sink = Sink::new(&mut out);
        self.write(&mut sink);
        let len = sink.pos;
        if len > MH_MAX_LEN {
            // Beyond the wire limit: size first, then write (check_limits says why).
            let mut out = vec![0u8; len];
            self.emit(&mut out, checksum);
            return out;
        }
        out.truncate(len);
        finish(&mut out, len, checksum);
        out
    }

    fn options(&self) -> &[super::options::MobilityOption] {
        match &self.message {
            MobilityMessage::BindingUpdate(m) => &m.options,
            MobilityMessage::BindingAck(m) => &m.options,
            MobilityMessage::BindingError(m) => &m.options,
            MobilityMessage::Heartbeat(m) => &m.options,
            MobilityMessage::BindingRevocation(m) => &m.options,
        }
    }

    /// Whether the message fits the wire's length fields: every option's data at most
    /// 255 octets and the whole message at most 2048 octets.
    pub fn check_limits(&self) -> Result<(), MhError> {
        if self.options().iter().any(|option| option.data_len() > 255) {
            return Err(MhError::Malformed("option data longer than 255 octets"));
        }
        if self.buffer_len() > MH_MAX_LEN {
            return Err(MhError::Malformed("message longer than 2048 octets"));
        }
        Ok(())
    }

    /// The Mobility Header and the message's fixed part, every field at its range; Header
    /// Len and Checksum are left zero for [`finish`].
    fn fixed_part(&self) -> ([u8; MAX_FIXED_LEN], usize) {
        let mut b = [0u8; MAX_FIXED_LEN];
        b[field::PAYLOAD_PROTO] = self.payload_proto;
        b[field::MH_TYPE] = self.mh_type();
        let end = match &self.message {
            MobilityMessage::BindingUpdate(m) => {
                use field::binding_update as f;
                b[f::SEQUENCE].copy_from_slice(&m.sequence.to_be_bytes());
                b[f::FLAGS].copy_from_slice(&m.flags.0.to_be_bytes());
                b[f::LIFETIME].copy_from_slice(&m.lifetime.0.to_be_bytes());
                f::OPTIONS.start
            }
            MobilityMessage::BindingAck(m) => {
                use field::binding_ack as f;
                b[f::STATUS] = m.status.value();
                b[f::FLAGS] = m.flags.0;
                b[f::SEQUENCE].copy_from_slice(&m.sequence.to_be_bytes());
                b[f::LIFETIME].copy_from_slice(&m.lifetime.0.to_be_bytes());
                f::OPTIONS.start
            }
            MobilityMessage::BindingError(m) => {
                use field::binding_error as f;
                b[f::STATUS] = m.status.value();
                b[f::HOME_ADDRESS].copy_from_slice(&m.home_address.octets());
                f::OPTIONS.start
            }
            MobilityMessage::Heartbeat(m) => {
                use field::heartbeat as f;
                let mut flags = 0;
                if m.unsolicited {
                    flags |= HeartbeatRepr::UNSOLICITED;
                }
                if m.response {
                    flags |= HeartbeatRepr::RESPONSE;
                }
                b[f::FLAGS] = flags;
                b[f::SEQUENCE].copy_from_slice(&m.sequence.to_be_bytes());
                f::OPTIONS.start
            }
            MobilityMessage::BindingRevocation(m) => {
                use field::binding_revocation as f;
                b[f::TYPE] = m.revocation_type.value();
                b[f::TRIGGER_OR_STATUS] = m.trigger_or_status;
                b[f::SEQUENCE].copy_from_slice(&m.sequence.to_be_bytes());
                b[f::FLAGS] = m.flags;
                f::OPTIONS.start
            }
        };
        (b, end)
    }

    fn write(&self, sink: &mut Sink<'_>) {
        let (fixed, len) = self.fixed_part();
        sink.put(&fixed[..len]);
        for option in self.options() {
            pad_to(sink, option.alignment());
            option.write(sink);
        }
        pad_to(sink, Alignment { x: 8, y: 0 });
    }
}

/// Fills Header Len and the checksum of the `len`-octet message written into `out`.
fn finish(out: &mut [u8], len: usize, checksum: ChecksumContext) {
    let Some(mh) = out.get_mut(..len) else {
        return;
    };
    if mh.len() >= field::MESSAGE_DATA.start {
        mh[field::HEADER_LEN] = u8::try_from(len / 8 - 1).unwrap_or(u8::MAX);
        mh[field::CHECKSUM].fill(0);
        if let Some(sum) = mobility_header_checksum(checksum, mh) {
            mh[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
        }
    }
}
