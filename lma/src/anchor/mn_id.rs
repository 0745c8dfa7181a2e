//! The Mobile Node Identifier check (RFC 5213 section 5.3.1 steps 4 and 7): the NAI a
//! PBU names must be one the LMA can identify a mobile node by, before anything is bound
//! to it.
//!
//! The MN-ID option carries an NAI of the form `user@realm` (RFC 4283 section 3.1); TS
//! 23.003 section 19.3 builds the 3GPP ones on RFC 7542 (`<IMSI>@nai.epc.mnc<MNC>.mcc<MCC>
//! .3gppnetwork.org`, the decorated `homerealm!user@realm`, ...). What is refused:
//!
//! * a zero-length identifier: status 160 MISSING_MN_IDENTIFIER_OPTION, as if the option
//!   were absent (step 4: the answer then carries a zero-length identifier);
//! * an NAI the LMA cannot identify a mobile node by: status 153
//!   NOT_LMA_FOR_THIS_MOBILE_NODE (step 7). That is one longer than the 253 octets of
//!   RFC 7542 section 2.3, without exactly one `@`, with an empty user name, a user name
//!   that is not a dot-string of RFC 7542 section 2.2 atext (no control characters,
//!   spaces or the specials `"(),:;<>[\]`, no leading, trailing or doubled dot), or a realm
//!   that is not labels of letters, digits and inner hyphens separated by single dots.
//!   Non-ASCII UTF-8 is allowed in both parts (RFC 7542 UTF8-xtra-char), control
//!   characters never. A realm of a single label (`user@test`) is accepted: lab realms
//!   are written so, and RFC 4283 asks only for `user@realm`.

use pmip_common::mh::{BindingAckStatus, BindingUpdateRepr, MobileNodeIdentifier, MobilityOption};

use super::Rejection;

/// RFC 7542 section 2.3: the longest NAI every implementation must handle.
pub const MAX_NAI_LEN: usize = 253;

/// Checks the first NAI-type MN-ID option of a BU with the P flag. No such option at all
/// is left to `ProxyBindingUpdate::try_from`, which names status 160 for it.
pub(super) fn check(bu: &BindingUpdateRepr) -> Result<(), Rejection> {
    let Some(nai) = bu.options.iter().find_map(|o| match o {
        MobilityOption::MobileNodeIdentifier(MobileNodeIdentifier::Nai(nai)) => Some(nai),
        _ => None,
    }) else {
        return Ok(());
    };
    if nai.is_empty() {
        return Err(Rejection::new(
            BindingAckStatus::MissingMnIdentifierOption,
            "zero-length Mobile Node Identifier",
        ));
    }
    nai_problem(nai).map_or(Ok(()), |reason| {
        Err(Rejection::new(
            BindingAckStatus::NotLmaForThisMobileNode,
            reason,
        ))
    })
}

/// Why `nai` does not identify a mobile node, if it does not.
pub fn nai_problem(nai: &str) -> Option<&'static str> {
    if nai.len() > MAX_NAI_LEN {
        return Some("MN-ID NAI longer than 253 octets (RFC 7542 section 2.3)");
    }
    if nai.chars().any(char::is_control) {
        return Some("MN-ID NAI with a control character");
    }
    let Some((user, realm)) = nai.split_once('@') else {
        return Some("MN-ID NAI without '@': not of the form user@realm");
    };
    if realm.contains('@') {
        return Some("MN-ID NAI with more than one '@'");
    }
    if user.is_empty() {
        return Some("MN-ID NAI with an empty user name");
    }
    if !user.split('.').all(is_atext_string) {
        return Some("MN-ID NAI user name is not an RFC 7542 dot-string");
    }
    if realm.is_empty() || !realm.split('.').all(is_label) {
        return Some("MN-ID NAI realm is not a sequence of RFC 7542 labels");
    }
    None
}

/// RFC 7542 `string`: one or more utf8-atext.
fn is_atext_string(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| {
            !c.is_ascii() || c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
        })
}

/// RFC 7542 `label`: utf8-rtext, then utf8-rtext or inner hyphens.
fn is_label(s: &str) -> bool {
    let rtext = |c: char| c.is_alphanumeric() || !c.is_ascii();
    !s.is_empty()
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.chars().all(|c| rtext(c) || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_gpp_nais_are_accepted() {
        for nai in [
            "0234150999999999@nai.epc.mnc015.mcc234.3gppnetwork.org",
            "nai.epc.mnc015.mcc234.3gppnetwork.org!0234150999999999@wlan.mnc001.mcc001.3gppnetwork.org",
            "imei35209900176148@sos.invalid",
            "a.b+c@x",
            "pool7@test",
            "用户@例子.测试",
        ] {
            assert_eq!(nai_problem(nai), None, "{nai}");
        }
        let longest = format!("{}@{}", "1".repeat(240), "a".repeat(MAX_NAI_LEN - 241));
        assert_eq!(longest.len(), MAX_NAI_LEN);
        assert_eq!(nai_problem(&longest), None);
    }

    #[test]
    fn malformed_nais_are_named() {
        for nai in [
            "no-at-sign",
            "@realm.only",
            "user@",
            "two@at@signs",
            "user@realm..double",
            "user@.leading",
            "user@trailing.",
            "user@-hyphen.x",
            "user@hyphen-.x",
            "user@under_score.x",
            ".user@x",
            "us..er@x",
            "us er@x",
            "us\"er@x",
            "user@x\n",
            "us\u{0}er@x",
            "us\u{85}er@x",
            "user@x\u{7f}",
        ] {
            assert!(nai_problem(nai).is_some(), "{nai:?} accepted");
        }
        let long = format!("{}@x", "1".repeat(MAX_NAI_LEN));
        assert!(nai_problem(&long).is_some());
    }
}
