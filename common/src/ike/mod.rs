//! IKEv2 (RFC 7296) for the ePDG and the UE emulator, sans-IO: the wire codec
//! ([`wire`]), the crypto suites ([`crypto`]), key derivation and AUTH ([`keys`]) and
//! the SK payload ([`sk`]), certificate AUTH ([`auth`]); the IKE SA core both roles
//! share ([`sa`]: windows, retransmission, SK protection), the [`initiator`] and
//! [`responder`] SAs, and the responder [`endpoint`] that answers IKE_SA_INIT and owns
//! the SPI table of its SAs.

pub mod auth;
pub mod ca;
pub mod child;
pub mod crypto;
pub mod endpoint;
pub mod initiator;
pub mod keys;
mod rekey;
pub mod responder;
pub mod sa;
pub mod sk;
pub mod wire;

pub use crypto::{CryptoError, DhGroup, DhPrivate, Encr, EspSuite, IkeSuite, Integ, Prf, Random};
pub use keys::{ChildSaKeys, IkeSaKeys};
pub use sk::{SkError, SkKeys};
pub use wire::{IkeMessage, Payload, WireError};

#[cfg(test)]
mod tests;
