//! The one error type of the EAP codecs.

/// Why a packet could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EapError {
    /// The bytes end before a field the packet says is there.
    #[error("truncated: {0}")]
    Truncated(&'static str),
    /// A field holds a value the standard does not allow.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// A Code other than Request, Response, Success or Failure: silently discarded
    /// (RFC 3748 section 4).
    #[error("unknown EAP Code {0}")]
    UnknownCode(u8),
    /// A non-skippable EAP-AKA attribute (type below 128) this implementation does not
    /// know: the peer answers with a Client-Error, the server fails (RFC 4187 section 8.1).
    #[error("non-skippable attribute {0} not recognised")]
    UnsupportedAttribute(u8),
    /// An attribute that may appear once appeared again (RFC 4187 section 8.1).
    #[error("attribute {0} repeated")]
    RepeatedAttribute(u8),
    /// An EAP-AKA subtype this implementation does not know.
    #[error("unknown EAP-AKA subtype {0}")]
    UnknownSubtype(u8),
    /// The packet or one of its attributes would not fit its length field.
    #[error("too long: {0}")]
    TooLong(&'static str),
    /// The output buffer is shorter than `buffer_len()`.
    #[error("output buffer too short")]
    BufferTooShort,
}
