//! IKEv2 (RFC 7296) for the ePDG and the UE emulator, sans-IO: the wire codec
//! ([`wire`]), the crypto suites ([`crypto`]), key derivation and AUTH ([`keys`]) and
//! the SK payload ([`sk`]), certificate AUTH ([`auth`]), and the initiator and responder
//! state machines ([`sa`]).

pub mod auth;
pub mod crypto;
pub mod keys;
pub mod sa;
pub mod sk;
pub mod wire;

pub use crypto::{CryptoError, DhGroup, DhPrivate, Encr, EspSuite, IkeSuite, Integ, Prf, Random};
pub use keys::{ChildSaKeys, IkeSaKeys};
pub use sk::{SkError, SkKeys};
pub use wire::{IkeMessage, Payload, WireError};

#[cfg(test)]
mod tests;
