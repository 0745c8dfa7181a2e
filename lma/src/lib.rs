//! The LMA / SAE GW (PDN gateway side of PMIPv6, RFC 5213): binding cache, address
//! pools and Proxy Binding Update handling.
//!
//! The signaling logic is sans-IO ([`anchor::Lma`]: `handle(input, now, &mut out)` and
//! `poll_timeout()`, docs/architecture.md); the `lma` binary wraps it in thin tokio
//! drivers for the IPv4 UDP 5436 and raw IPv6 Mobility Header sockets.
//!
//! With an `[sgi]` table in `lma.toml` the binary also runs the user-space data plane:
//! [`dataplane::DataPlane`] (sans-IO, fed by the core's `BindingUp`/`BindingDown`)
//! between raw GRE sockets toward the MAGs and a TUN device toward the PDN.
//!
//! With a `[chaining]` table it is also a visited gateway (roaming, docs/attach.md):
//! the core's chain module registers roamers at their home gateway with
//! `pmip_common::binding_update_list`, and [`dataplane::relay::Relay`] relays GRE
//! between the two tunnels without a TUN device.

pub mod admin;
pub mod anchor;
pub mod binding_cache;
pub mod config;
pub mod dataplane;
pub mod gre_keys;
pub mod pools;
pub mod reject_log;
pub mod restart;
pub mod state;
pub mod transport;

pub use anchor::{
    BindingInfo, DownReason, Input, Lma, LmaSettings, Outcome, Output, PbuReport, Stats,
};
pub use binding_cache::{Addresses, BindingCache, BindingCacheEntry, BindingId};
pub use transport::MagAddress;
