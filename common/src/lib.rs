//! Sans-IO protocol libraries shared by every node of the PMIPv6 S2b gateway pair.
//!
//! Every module here is pure protocol logic: wire formats (a checked view plus a typed
//! `Repr`, smoltcp style) and state machines advanced by `handle(input, now)` and asked
//! `poll_timeout()`. None of them opens a socket or reads a clock (docs/architecture.md):
//! the I/O every node shares (sockets, pcap files, the TUN device) is `pmip-node`'s.

pub mod address_filter;
pub mod binding_update_list;
pub mod diameter;
pub mod eap;
pub mod esp;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod heartbeat;
pub mod icmp6;
pub mod ike;
pub mod mh;
pub mod registry;
pub mod time;
pub mod tunnel;
