//! PLACEHOLDER signatures, to be replaced by the real codec.
#![allow(unused_variables)]

use super::*;

/// Everything that can be wrong with Mobility Header bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MhError {
    #[error("truncated: {0}")]
    Truncated(&'static str),
    #[error("bad checksum")]
    BadChecksum,
    #[error("unrecognized MH type {0}")]
    UnknownMhType(u8),
    #[error("malformed: {0}")]
    Malformed(&'static str),
}

/// A whole Mobility Header message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MobilityHeaderRepr {
    pub payload_proto: u8,
    pub message: MobilityMessage,
}

impl MobilityHeaderRepr {
    pub fn parse(bytes: &[u8], checksum: ChecksumContext) -> Result<Self, MhError> {
        todo!()
    }
    pub fn buffer_len(&self) -> usize {
        todo!()
    }
    pub fn emit(&self, out: &mut [u8], checksum: ChecksumContext) {
        todo!()
    }
    /// Allocates and emits.
    pub fn to_bytes(&self, checksum: ChecksumContext) -> Vec<u8> {
        todo!()
    }
}

/// Why a BU with the P flag is not an acceptable PBU: the PBA status to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid proxy binding update: {reason}")]
pub struct PbuError {
    pub status: BindingAckStatus,
    pub reason: &'static str,
}

impl TryFrom<&BindingUpdateRepr> for ProxyBindingUpdate {
    type Error = PbuError;
    fn try_from(bu: &BindingUpdateRepr) -> Result<Self, PbuError> {
        todo!()
    }
}

impl ProxyBindingUpdate {
    pub fn to_binding_update(&self) -> BindingUpdateRepr {
        todo!()
    }
}

impl TryFrom<&BindingAckRepr> for ProxyBindingAck {
    type Error = MhError;
    fn try_from(ba: &BindingAckRepr) -> Result<Self, MhError> {
        todo!()
    }
}

impl ProxyBindingAck {
    pub fn to_binding_ack(&self) -> BindingAckRepr {
        todo!()
    }
}

impl From<u8> for BindingAckStatus {
    fn from(v: u8) -> Self {
        todo!()
    }
}
impl From<BindingAckStatus> for u8 {
    fn from(v: BindingAckStatus) -> u8 {
        todo!()
    }
}
