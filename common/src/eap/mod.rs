//! EAP (RFC 3748) and EAP-AKA (RFC 4187) with Milenage (TS 35.206): the wire formats,
//! the key derivation, and both ends as sans-IO state machines: [`Server`] for the 3GPP
//! AAA (aaa-stub) and [`Peer`], a software USIM, for the UE emulator.
//!
//! Hand-written: no maintained Rust crate implements EAP-AKA or Milenage, and the pieces
//! are small. The primitives come from RustCrypto (`aes` for the Milenage kernel, `sha1`
//! with its raw compression function for the FIPS 186-2 PRF); HMAC-SHA1 is the few lines
//! of RFC 2104 over `sha1`. Wire formats follow the project's split: a checked view over
//! bytes ([`EapPacket`], [`AkaMessage`]) and a typed representation ([`EapRepr`],
//! [`AkaRepr`]) that parses with every length checked before it is read and emits.

mod aka;
mod error;
mod identity;
mod keys;
mod milenage;
mod packet;
mod peer;
mod resync;
mod server;

pub use aka::{
    attribute_type, AkaMessage, AkaRepr, Attribute, AttributeIter, AttributeType, ClientErrorCode,
    NotificationCode, RawAttribute, Res, Subtype, AKA_HEADER_LEN, AUTS_LEN, CHECKCODE_LEN, MAC_LEN,
};
pub use error::EapError;
pub use identity::{permanent_identity, permanent_identity_imsi, AKA_PERMANENT_PREFIX};
pub use keys::{
    fill_mac, find_mac, fips186_2_prf, hmac_sha1, master_key, verify_mac, Checkcode, SessionKeys,
};
pub use milenage::{opc_from_op, AuthVector, AutnError, AutnResult, Milenage, Sqn, F2345, SQN_MAX};
pub use packet::{Code, EapPacket, EapRepr, EapType, TypeData, HEADER_LEN};
pub use peer::{Peer, PeerConfig, PeerOutput, PeerProblem, Usim, DEFAULT_SQN_DELTA};
pub use resync::{Resynchronisation, SqnProfile};
pub use server::{
    aka_subtype, AuthSuccess, Server, ServerConfig, ServerFailure, ServerInput, ServerOutput,
    Subscriber,
};

#[cfg(test)]
mod tests;
