//! The messages a Mobility Header carries, as typed representations: Binding Update and
//! Acknowledgement (RFC 6275 sections 6.1.7, 6.1.8; their proxy forms of RFC 5213
//! section 8), Binding Error (RFC 6275 section 6.1.9), Heartbeat (RFC 5847 section 5.1)
//! and Binding Revocation (RFC 5846 section 5). [`super::MobilityHeaderRepr`] parses and
//! emits them.

use std::net::Ipv6Addr;

use super::options::MobilityOption;
use super::types::*;

/// Binding Update, and Proxy Binding Update when the P flag is set (RFC 6275 6.1.7,
/// RFC 5213 8.1). Options in wire order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BindingUpdateRepr {
    pub sequence: u16,
    pub flags: BuFlags,
    pub lifetime: Lifetime,
    pub options: Vec<MobilityOption>,
}

/// Binding Acknowledgement, and Proxy Binding Acknowledgement when the P flag is set
/// (RFC 6275 6.1.8, RFC 5213 8.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BindingAckRepr {
    pub status: BindingAckStatus,
    pub flags: BaFlags,
    pub sequence: u16,
    pub lifetime: Lifetime,
    pub options: Vec<MobilityOption>,
}

/// Binding Error (RFC 6275 section 6.1.9).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BindingErrorRepr {
    pub status: BindingErrorStatus,
    pub home_address: Ipv6Addr,
    pub options: Vec<MobilityOption>,
}

/// Heartbeat message (RFC 5847 section 5.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeartbeatRepr {
    /// U flag: unsolicited (no response expected).
    pub unsolicited: bool,
    /// R flag: this is a response.
    pub response: bool,
    pub sequence: u32,
    pub options: Vec<MobilityOption>,
}

impl HeartbeatRepr {
    /// The U flag in the flags octet.
    pub const UNSOLICITED: u8 = 0x02;
    /// The R flag in the flags octet.
    pub const RESPONSE: u8 = 0x01;
}

/// Binding Revocation Indication or Acknowledgement (RFC 5846 sections 5.1 and 5.2).
/// `trigger_or_status` is the Revocation Trigger in an indication and the Status in an
/// acknowledgement; `flags` is the flags octet as on the wire: P (proxy binding, 0x80),
/// V (IPv4 home address binding only, 0x40) and G (global revocation, 0x20), see
/// [`BindingRevocationRepr::PROXY`] and its siblings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BindingRevocationRepr {
    pub revocation_type: BindingRevocationType,
    pub trigger_or_status: u8,
    pub sequence: u16,
    pub flags: u8,
    pub options: Vec<MobilityOption>,
}

impl BindingRevocationRepr {
    /// P: the revocation concerns a proxy (PMIPv6) binding.
    pub const PROXY: u8 = 0x80;
    /// V: only the IPv4 home address binding is revoked.
    pub const IPV4_HOA_ONLY: u8 = 0x40;
    /// G: global revocation of every binding of the peer.
    pub const GLOBAL: u8 = 0x20;

    /// The Revocation Trigger of an indication (`None` in an acknowledgement).
    pub fn trigger(&self) -> Option<RevocationTrigger> {
        (self.revocation_type == BindingRevocationType::Indication)
            .then(|| RevocationTrigger::from(self.trigger_or_status))
    }

    /// The Status of an acknowledgement (`None` in an indication).
    pub fn status(&self) -> Option<BindingRevocationStatus> {
        (self.revocation_type == BindingRevocationType::Acknowledgement)
            .then(|| BindingRevocationStatus::from(self.trigger_or_status))
    }
}

/// The message a Mobility Header carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MobilityMessage {
    BindingUpdate(BindingUpdateRepr),
    BindingAck(BindingAckRepr),
    BindingError(BindingErrorRepr),
    Heartbeat(HeartbeatRepr),
    BindingRevocation(BindingRevocationRepr),
}
