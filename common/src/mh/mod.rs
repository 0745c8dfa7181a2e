//! Mobility Header codec (RFC 6275 section 6.1) with the messages and options of Proxy
//! Mobile IPv6 (RFC 5213, 5844, 5845, 5846, 5847, 5149, 5094) and the 3GPP vendor-specific
//! option (TS 29.275).
//!
//! Hand-written: no maintained Rust crate covers the Mobility Header. Each message has a
//! checked view over bytes for field access and a typed `Repr` that parses (validating
//! every length before reading) and emits (alignment and padding done once, here).
//! Unknown options are kept as [`MobilityOption::Unknown`] and re-emitted unchanged.
//!
//! Layers, each using only those above it: [`types`](self) (registries and small value
//! types), the error, the octet layout (`wire`: field ranges, readers, the bounded
//! writer), the option table (`options`), the message representations (`message`), the
//! codec (views, parse, emit, checksum) and the proxy forms (`proxy`).

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
