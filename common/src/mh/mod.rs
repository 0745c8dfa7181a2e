//! Mobility Header codec (RFC 6275 section 6.1) with the messages and options of Proxy
//! Mobile IPv6 (RFC 5213, 5844, 5845, 5846, 5847, 5149, 5094) and the 3GPP vendor-specific
//! option (TS 29.275).
//!
//! Hand-written: no maintained Rust crate covers the Mobility Header. Each message has a
//! checked view over bytes for field access and a typed `Repr` that parses (validating
//! every length before reading) and emits (alignment and padding done once, here).
//! Unknown options are kept as [`MobilityOption::Unknown`] and re-emitted unchanged.
//!
//! Layers, each using only those before it: `types` (registries and small value types),
//! `error`, `wire` (the field ranges, the readers, the bounded writer), `options` (the
//! option table), `message` (the message representations), `codec` (the views, parse,
//! emit, checksum) and `proxy` (the PBU and PBA as the LMA and the MAG use them).

mod codec;
mod error;
mod message;
mod options;
mod proxy;
mod types;
mod wire;

pub use codec::*;
pub use error::MhError;
pub use message::*;
pub use options::*;
pub use proxy::*;
pub use types::*;

#[cfg(test)]
mod tests;
