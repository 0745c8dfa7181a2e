//! The 3GPP AAA server speaking Diameter SWm (TS 29.273; docs/attach.md): the sans-IO
//! protocol core ([`core`]: EAP-AKA sessions, APN authorization, visited-to-home relay),
//! the subscriber store with crash-safe SQNs, the configuration, and the pcap recorder
//! of the binary.

pub mod config;
pub mod core;
pub mod pcap;
pub mod peers;
pub mod server;
pub mod subscriber;
