//! What every node binary of the PMIPv6 S2b gateway pair shares: the I/O shell around
//! the sans-IO protocol cores of `pmip-common` (docs/architecture.md, "The I/O layer").
//!
//! * [`admin`]: the admin HTTP interface (JSON), served and asked.
//! * [`socket`]: UDP with a sized receive buffer, the raw IPv6 Mobility Header socket
//!   and raw sockets of any protocol, blocking or async, received without `unsafe`.
//! * [`gre`]: raw GRE sockets for IPv4 and IPv6 that hand out the GRE packet and its
//!   sender alike, and a set of them received as one.
//! * [`pcap`]: the `--pcap` writer and synthetic TCP for a Diameter connection.
//! * [`tun`]: the TUN device toward a packet data network.
//! * [`config`]: the TOML file and the flags over it, one pattern for every binary.
//! * [`logging`]: human or JSON log lines.
//! * [`secret_file`]: files holding secrets (captures, key logs, SQN state), mode 0600.
//! * [`tls`]: Diameter over TLS (rustls, mutual authentication) and a lab PKI.

pub mod admin;
pub mod config;
pub mod gre;
pub mod logging;
pub mod pcap;
pub mod secret_file;
pub mod socket;
pub mod tls;
pub mod tun;
