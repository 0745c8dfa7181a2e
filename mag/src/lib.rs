//! The ePDG acting as PMIPv6 MAG (docs/attach.md): the sans-IO core ([`epdg`]: the
//! IKEv2 responder endpoint, the SWm client, the binding update list, the per-UE
//! [`attach`] procedure), the ESP <-> GRE [`dataplane`], the configuration ([`config`])
//! and the tokio driver ([`driver`]) that wires the core to sockets.

pub mod attach;
pub mod config;
pub mod dataplane;
pub mod driver;
pub mod epdg;
pub mod pki;
