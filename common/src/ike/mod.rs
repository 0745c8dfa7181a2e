//! IKEv2 (RFC 7296) for the ePDG, the gateways and the UE emulator, sans-IO: the wire
//! codec ([`wire`]), the crypto suites ([`crypto`]), key derivation and AUTH ([`keys`])
//! and the SK payload ([`sk`]); how peers authenticate ([`auth`]: EAP, pre-shared keys,
//! certificates; [`ca`]: X.509 chains to an operator CA); what a CHILD_SA may be
//! ([`child`]: tunnel or transport mode, traffic selector narrowing, lifetimes); the IKE
//! SA core both roles share ([`sa`]: windows, retransmission, SK protection), the
//! [`initiator`] and [`responder`] SAs, what an established SA does in either role
//! (`rekey`: CREATE_CHILD_SA rekeys of CHILD_SAs and of the IKE SA, Deletes), and the
//! [`endpoint`] that holds a node's SAs of both roles, answers IKE_SA_INIT and owns the
//! SPI table.

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
