//! Errors of the Diameter codec, each mapping to the RFC 6733 Result-Code an answer carries,
//! with the Failed-AVP content the RFC asks for (RFC 6733 sections 7.1 and 7.5).
//!
//! This module sits above [`super::avp`]: an [`Error`] carries the failed [`Avp`], and the
//! AVP layer's own failures ([`AvpError`]) become an [`Error`] through `From`, so the two
//! modules do not import each other.

use super::avp::{Avp, AvpError};
use super::codes::result;

/// What went wrong while reading a Diameter message or one of its AVPs.
///
/// [`Error::result_code`] gives the Result-Code to answer with and [`Error::failed_avp`] the
/// AVP to put in the answer's Failed-AVP, shaped as RFC 6733 section 7.5 says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Fewer bytes than a Diameter header (20) or than the Message Length claims.
    #[error("message truncated: {have} bytes, {need} needed")]
    Truncated { have: usize, need: usize },
    /// Version other than 1 (RFC 6733 section 3): DIAMETER_UNSUPPORTED_VERSION.
    #[error("unsupported Diameter version {0}")]
    UnsupportedVersion(u8),
    /// Message Length below 20 or not a multiple of 4 (RFC 6733 section 3):
    /// DIAMETER_INVALID_MESSAGE_LENGTH.
    #[error("invalid Diameter message length {0}")]
    InvalidMessageLength(u32),
    /// Command flags in a combination the RFC forbids (E with R, T without R, or bits that
    /// contradict the command's definition): DIAMETER_INVALID_HDR_BITS.
    #[error("invalid command flags {0:#04x}")]
    InvalidHdrBits(u8),
    /// An AVP whose length is below its header, beyond its container, or wrong for its data
    /// format: DIAMETER_INVALID_AVP_LENGTH.
    #[error("AVP {} has an invalid length", .failed.code)]
    InvalidAvpLength { failed: Avp },
    /// An AVP with reserved flag bits set, or flags its definition forbids:
    /// DIAMETER_INVALID_AVP_BITS.
    #[error("AVP {} has invalid flag bits", .failed.code)]
    InvalidAvpBits { failed: Avp },
    /// An AVP this node does not know, sent with the M bit: DIAMETER_AVP_UNSUPPORTED.
    #[error("AVP {} (vendor {:?}) is not supported and has the M bit", .failed.code, .failed.vendor_id)]
    AvpUnsupported { failed: Avp },
    /// An AVP whose data is not a valid value of its type: DIAMETER_INVALID_AVP_VALUE.
    #[error("AVP {} has an invalid value", .failed.code)]
    InvalidAvpValue { failed: Avp },
    /// A required AVP is absent: DIAMETER_MISSING_AVP. `failed` is an example of it with a
    /// zero-filled payload of the minimum length.
    #[error("required AVP {} (vendor {:?}) is missing", .failed.code, .failed.vendor_id)]
    MissingAvp { failed: Avp },
    /// An AVP appears more often than its command allows:
    /// DIAMETER_AVP_OCCURS_TOO_MANY_TIMES. `failed` is the first excess instance.
    #[error("AVP {} occurs too many times", .failed.code)]
    AvpOccursTooManyTimes { failed: Avp },
    /// A command code this node does not serve: DIAMETER_COMMAND_UNSUPPORTED.
    #[error("command {0} is not supported")]
    CommandUnsupported(u32),
    /// A request for an application this node does not serve:
    /// DIAMETER_APPLICATION_UNSUPPORTED.
    #[error("application {0} is not supported")]
    ApplicationUnsupported(u32),
    /// Anything else that makes the request impossible to serve: DIAMETER_UNABLE_TO_COMPLY.
    #[error("unable to comply: {0}")]
    UnableToComply(String),
}

impl Error {
    /// The Result-Code an answer to the offending request carries (RFC 6733 section 7.1).
    pub fn result_code(&self) -> u32 {
        match self {
            Error::Truncated { .. } | Error::InvalidMessageLength(_) => {
                result::DIAMETER_INVALID_MESSAGE_LENGTH
            }
            Error::UnsupportedVersion(_) => result::DIAMETER_UNSUPPORTED_VERSION,
            Error::InvalidHdrBits(_) => result::DIAMETER_INVALID_HDR_BITS,
            Error::InvalidAvpLength { .. } => result::DIAMETER_INVALID_AVP_LENGTH,
            Error::InvalidAvpBits { .. } => result::DIAMETER_INVALID_AVP_BITS,
            Error::AvpUnsupported { .. } => result::DIAMETER_AVP_UNSUPPORTED,
            Error::InvalidAvpValue { .. } => result::DIAMETER_INVALID_AVP_VALUE,
            Error::MissingAvp { .. } => result::DIAMETER_MISSING_AVP,
            Error::AvpOccursTooManyTimes { .. } => result::DIAMETER_AVP_OCCURS_TOO_MANY_TIMES,
            Error::CommandUnsupported(_) => result::DIAMETER_COMMAND_UNSUPPORTED,
            Error::ApplicationUnsupported(_) => result::DIAMETER_APPLICATION_UNSUPPORTED,
            Error::UnableToComply(_) => result::DIAMETER_UNABLE_TO_COMPLY,
        }
    }

    /// The AVP to carry inside the answer's Failed-AVP, when the RFC asks for one.
    pub fn failed_avp(&self) -> Option<&Avp> {
        match self {
            Error::InvalidAvpLength { failed }
            | Error::InvalidAvpBits { failed }
            | Error::AvpUnsupported { failed }
            | Error::InvalidAvpValue { failed }
            | Error::MissingAvp { failed }
            | Error::AvpOccursTooManyTimes { failed } => Some(failed),
            _ => None,
        }
    }

    /// Whether the answer must have the E bit set (protocol errors, RFC 6733 section 7.1.3).
    pub fn is_protocol_error(&self) -> bool {
        result::is_protocol_error(self.result_code())
    }

    /// A required AVP is missing: the Failed-AVP holds its code, vendor and `min_len` zero
    /// bytes (RFC 6733 section 7.5).
    pub fn missing(code: u32, vendor_id: Option<u32>, min_len: usize) -> Self {
        Error::MissingAvp {
            failed: Avp {
                code,
                vendor_id,
                mandatory: true,
                protected: false,
                data: vec![0; min_len],
            },
        }
    }

    /// Re-point an error found inside a Grouped AVP at the group, so the Failed-AVP holds
    /// the grouped AVP that holds the offending one (RFC 6733 section 7.5).
    pub(crate) fn within(self, parent: &Avp) -> Self {
        let wrap = |failed: Avp| parent.wrapping(&failed);
        match self {
            Error::InvalidAvpLength { failed } => Error::InvalidAvpLength {
                failed: wrap(failed),
            },
            Error::InvalidAvpBits { failed } => Error::InvalidAvpBits {
                failed: wrap(failed),
            },
            Error::AvpUnsupported { failed } => Error::AvpUnsupported {
                failed: wrap(failed),
            },
            Error::InvalidAvpValue { failed } => Error::InvalidAvpValue {
                failed: wrap(failed),
            },
            Error::MissingAvp { failed } => Error::MissingAvp {
                failed: wrap(failed),
            },
            Error::AvpOccursTooManyTimes { failed } => Error::AvpOccursTooManyTimes {
                failed: wrap(failed),
            },
            other => other,
        }
    }
}

impl From<AvpError> for Error {
    fn from(e: AvpError) -> Self {
        match e {
            AvpError::InvalidLength(failed) => Error::InvalidAvpLength { failed },
            AvpError::InvalidBits(failed) => Error::InvalidAvpBits { failed },
            AvpError::InvalidValue(failed) => Error::InvalidAvpValue { failed },
        }
    }
}
