//! Reading a command's AVPs against its ABNF (RFC 6733 section 3.2): required ones,
//! occurrence limits, and the M-bit rule for AVPs the command does not know.

use super::avp::Avp;
use super::error::Error;

/// An AVP's identity: code and vendor.
pub(crate) type AvpId = (u32, Option<u32>);

/// Takes AVPs out of a list by identity and checks what is left at the end.
pub(crate) struct AvpReader<'a> {
    avps: &'a [Avp],
    used: Vec<bool>,
}

impl<'a> AvpReader<'a> {
    pub(crate) fn new(avps: &'a [Avp]) -> Self {
        AvpReader {
            avps,
            used: vec![false; avps.len()],
        }
    }

    /// Every instance of `id`, marked as read.
    pub(crate) fn all(&mut self, id: AvpId) -> Vec<&'a Avp> {
        let mut found = Vec::new();
        for (i, avp) in self.avps.iter().enumerate() {
            if avp.is(id.0, id.1) {
                self.used[i] = true;
                found.push(avp);
            }
        }
        found
    }

    /// At most one instance of `id`; a second one is DIAMETER_AVP_OCCURS_TOO_MANY_TIMES.
    pub(crate) fn optional(&mut self, id: AvpId) -> Result<Option<&'a Avp>, Error> {
        let found = self.all(id);
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            [_, second, ..] => Err(Error::AvpOccursTooManyTimes {
                failed: (*second).clone(),
            }),
        }
    }

    /// Exactly one instance of `id`; absence is DIAMETER_MISSING_AVP with a zero payload of
    /// `min_len` bytes in the Failed-AVP.
    pub(crate) fn required(&mut self, id: AvpId, min_len: usize) -> Result<&'a Avp, Error> {
        self.optional(id)?
            .ok_or_else(|| Error::missing(id.0, id.1, min_len))
    }

    /// The AVPs not read yet, which the caller keeps as they are. One of them with the M bit
    /// is DIAMETER_AVP_UNSUPPORTED, unless it is listed in `tolerated` (AVPs the command's
    /// ABNF names but this code does not model).
    pub(crate) fn rest(self, tolerated: &[AvpId]) -> Result<Vec<Avp>, Error> {
        let mut rest = Vec::new();
        for (avp, used) in self.avps.iter().zip(self.used) {
            if used {
                continue;
            }
            if avp.mandatory && !tolerated.iter().any(|id| avp.is(id.0, id.1)) {
                return Err(Error::AvpUnsupported {
                    failed: avp.clone(),
                });
            }
            rest.push(avp.clone());
        }
        Ok(rest)
    }
}

/// Reads an optional UTF8String.
pub(crate) fn opt_utf8(avp: Option<&Avp>) -> Result<Option<String>, Error> {
    Ok(avp.map(|a| a.as_utf8().map(str::to_owned)).transpose()?)
}

/// Reads an optional DiameterIdentity.
pub(crate) fn opt_identity(avp: Option<&Avp>) -> Result<Option<String>, Error> {
    Ok(avp
        .map(|a| a.as_identity().map(str::to_owned))
        .transpose()?)
}

/// Reads an optional Unsigned32.
pub(crate) fn opt_u32(avp: Option<&Avp>) -> Result<Option<u32>, Error> {
    Ok(avp.map(Avp::as_u32).transpose()?)
}

/// Reads an optional Unsigned64.
pub(crate) fn opt_u64(avp: Option<&Avp>) -> Result<Option<u64>, Error> {
    Ok(avp.map(Avp::as_u64).transpose()?)
}

/// Reads an optional Enumerated.
pub(crate) fn opt_enum(avp: Option<&Avp>) -> Result<Option<i32>, Error> {
    Ok(avp.map(Avp::as_enumerated).transpose()?)
}
