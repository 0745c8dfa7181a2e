//! Diameter for the ePDG and the 3GPP AAA server: the base protocol codec (RFC 6733), a
//! sans-IO peer state machine (capabilities exchange, watchdog, disconnect) and the SWm
//! application (TS 29.273: DER/DEA, AAR/AAA, STR/STA) with typed builders and parsers.
//!
//! Hand-written. Crates looked at: `diameter` (0.7; reads through `std::io::Read + Seek`,
//! needs an XML dictionary at run time, ships a tokio transport but no sans-IO peer state
//! machine), `diameter-interface` (0.1; same shape, about 1% documented, its grouped
//! decoder subtracts lengths without checking them) and `sawp-diameter` (parse only, on
//! nom 5). None gives a panic-free view plus emit, typed SWm AVPs, and a peer that takes
//! `(input, now)` as the rest of this crate does (docs/architecture.md).
//!
//! Layout, smoltcp style: [`Packet`] and [`AvpPacket`] are checked views over bytes;
//! [`Message`] and [`Avp`] are owned representations that parse and emit, and keep every
//! AVP (known or not) so a message can be relayed unchanged. The data formats are read
//! with typed accessors on [`Avp`]. Errors ([`Error`]) carry the RFC 6733 Result-Code and
//! the Failed-AVP for the answer. [`Framer`] splits a TCP byte stream into messages.
//! [`base`] types CER/CEA, DWR/DWA, DPR/DPA; [`swm`] the SWm commands; [`peer`] the state
//! machine of one peer connection.

pub mod avp;
pub mod base;
pub mod codes;
mod error;
mod message;
pub mod peer;
mod read;
pub mod swm;

pub use avp::{Address, Avp, AvpError, AvpIter, AvpPacket, EmitError};
pub use error::Error;
pub use message::{CommandFlags, Framer, Header, Message, Packet, HEADER_LEN, VERSION};

#[cfg(test)]
mod tests;
