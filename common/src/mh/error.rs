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
}
