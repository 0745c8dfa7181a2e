//! The ePDG acting as PMIPv6 MAG (DESIGN.md section 3): the per-UE attach procedure
//! ([`attach`], sans-IO), the configuration ([`config`]) and the tokio driver
//! ([`driver`]) around the IKEv2 responder, the SWm client and the binding update list.

pub mod attach;
pub mod config;
pub mod dataplane;
pub mod driver;
pub mod pki;
