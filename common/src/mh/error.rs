//! What can be wrong with Mobility Header bytes.

/// Everything that can be wrong with Mobility Header bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MhError {
    /// Fewer bytes than a length field or fixed layout requires.
    #[error("truncated: {0}")]
    Truncated(&'static str),
    /// The checksum does not verify.
    #[error("bad checksum")]
    BadChecksum,
    /// An MH Type this codec does not implement: answer with a Binding Error, status 2
    /// (RFC 6275 section 9.2).
    #[error("unrecognized MH type {0}")]
    UnknownMhType(u8),
    /// A field or option whose value or length the standard forbids.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// Payload Proto is not IPPROTO_NONE (59): discard the message (RFC 6275 section
    /// 9.2), with an ICMP Parameter Problem where the transport allows one.
    #[error("Payload Proto {0} is not IPPROTO_NONE (59)")]
    PayloadProto(u8),
    /// Header Len is less than the message type's fixed part needs: discard the message
    /// (RFC 6275 section 9.2), with an ICMP Parameter Problem where the transport allows
    /// one.
    #[error("Header Len too short for MH type {0}")]
    HeaderLenTooShort(u8),
}

impl MhError {
    /// For the errors RFC 6275 section 9.2 answers with an ICMP Parameter Problem (Code 0):
    /// the offset, within the Mobility Header, of the field the Pointer names.
    pub fn parameter_problem_offset(&self) -> Option<usize> {
        match self {
            MhError::PayloadProto(_) => Some(super::wire::field::PAYLOAD_PROTO),
            MhError::HeaderLenTooShort(_) => Some(super::wire::field::HEADER_LEN),
            _ => None,
        }
    }
}
