//! Which MAGs the core serves: a MAG address or prefix ([`MagFilter`], RFC 5213 section
//! 5.3.1 step 2: the LMA checks the sender is authorized to send PBUs on behalf of the
//! mobile node), and what a PBU from any other source gets ([`UnauthorizedMag`]). The
//! core owns them; `crate::config` reads them from the file and the flags.

use serde::Deserialize;

/// What to do with a PBU from a MAG that is not in `allowed_mags` (RFC 5213 5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum UnauthorizedMag {
    /// Answer with status 154, MAG_NOT_AUTHORIZED_FOR_PROXY_REG.
    #[default]
    Reject,
    /// Drop it silently (and count it).
    Drop,
}

/// A MAG address or a prefix of MAG addresses: `192.0.2.1` or `192.0.2.0/24` (an
/// IPv4-mapped IPv6 source matches an IPv4 entry).
pub use pmip_common::address_filter::AddressFilter as MagFilter;
