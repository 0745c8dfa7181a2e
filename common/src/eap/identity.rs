//! EAP-AKA identities (RFC 4187 section 4.1, TS 23.003 section 19.3): the permanent
//! identity is the IMSI behind a leading '0', in the EPC realm
//! `nai.epc.mnc<MNC>.mcc<MCC>.3gppnetwork.org`.

/// The leading digit of an EAP-AKA permanent identity (TS 23.003 section 19.3.2).
pub const AKA_PERMANENT_PREFIX: u8 = b'0';

/// The IMSI in an EAP-AKA permanent identity, or `None` for any other identity (a
/// pseudonym, a re-authentication identity, EAP-SIM's '1' or EAP-AKA''s '6' prefix, or
/// something that is not an NAI at all). A decorated NAI (`realm!user@visited`, TS
/// 23.003 section 19.3.3) is read by its last part.
pub fn permanent_identity_imsi(identity: &[u8]) -> Option<String> {
    let user = identity.split(|&b| b == b'@').next().unwrap_or(identity);
    let user = user.rsplit(|&b| b == b'!').next().unwrap_or(user);
    let (&prefix, imsi) = user.split_first()?;
    if prefix != AKA_PERMANENT_PREFIX
        || !(6..=15).contains(&imsi.len())
        || !imsi.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    String::from_utf8(imsi.to_vec()).ok()
}

/// The EAP-AKA permanent identity of an IMSI in its home EPC realm (TS 23.003 section
/// 19.3.2): `0<IMSI>@nai.epc.mnc<MNC>.mcc<MCC>.3gppnetwork.org`, the MNC padded to three
/// digits. `mnc_digits` is 2 or 3; `None` if the IMSI is too short or not digits.
pub fn permanent_identity(imsi: &str, mnc_digits: usize) -> Option<String> {
    if !(2..=3).contains(&mnc_digits)
        || !(6..=15).contains(&imsi.len())
        || !imsi.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mcc = imsi.get(..3)?;
    let mnc = imsi.get(3..3 + mnc_digits)?;
    Some(format!(
        "0{imsi}@nai.epc.mnc{mnc:0>3}.mcc{mcc}.3gppnetwork.org"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_identities() {
        let nai = permanent_identity("001010000000001", 2).expect("valid IMSI");
        assert_eq!(
            nai,
            "0001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org"
        );
        assert_eq!(
            permanent_identity_imsi(nai.as_bytes()).as_deref(),
            Some("001010000000001")
        );
        assert_eq!(
            permanent_identity_imsi(b"nai.epc.mnc001.mcc001.3gppnetwork.org!0234150999999999@nai.epc.mnc015.mcc234.3gppnetwork.org").as_deref(),
            Some("234150999999999")
        );
        assert_eq!(
            permanent_identity_imsi(b"0001010000000001").as_deref(),
            Some("001010000000001")
        );
        assert_eq!(permanent_identity_imsi(b"1001010000000001@realm"), None);
        assert_eq!(permanent_identity_imsi(b"6001010000000001@realm"), None);
        assert_eq!(permanent_identity_imsi(b"alice@example.org"), None);
        assert_eq!(permanent_identity_imsi(b"0abc@realm"), None);
        assert_eq!(permanent_identity_imsi(b""), None);
        assert_eq!(permanent_identity_imsi(b"@"), None);
        assert_eq!(permanent_identity("12345", 2), None);
    }
}
