//! The I/O around [`lma::dataplane::relay::Relay`] (visited role, `[chaining]`): raw GRE
//! sockets (IP protocol 47) on this gateway's ePDG-side address (`listen_v4`,
//! `listen_v6`) and its home-side proxy care-of address (`chaining.local_v4`, when it
//! differs). No TUN device: GRE in, GRE out.

use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context, Result};
use lma::dataplane::relay::{Relay, RelayStats};
use lma::dataplane::Action;
use socket2::Socket;
use tokio::io::unix::AsyncFd;

use crate::sgi::{bind_raw_gre, send_raw};

/// One raw GRE socket and the address it is bound to.
pub struct GreSocket {
    pub local: IpAddr,
    pub socket: AsyncFd<Socket>,
}

/// The relay and its sockets.
pub struct RelayIo {
    /// IPv4 sockets (received with the outer header): the ePDG side, then the home side.
    pub v4: Vec<GreSocket>,
    /// The IPv6 socket (received without the outer header).
    pub v6: Option<GreSocket>,
    pub relay: Relay,
    logged: RelayStats,
}

impl RelayIo {
    pub fn open(locals_v4: &[Ipv4Addr], local_v6: Option<Ipv6Addr>) -> Result<RelayIo> {
        let mut v4: Vec<GreSocket> = Vec::new();
        for &a in locals_v4 {
            if v4.iter().any(|s| s.local == IpAddr::V4(a)) {
                continue;
            }
            let socket = bind_raw_gre(IpAddr::V4(a))
                .with_context(|| format!("opening the chaining GRE relay socket on {a}"))?;
            v4.push(GreSocket {
                local: IpAddr::V4(a),
                socket,
            });
        }
        let v6 = local_v6
            .map(|a| {
                bind_raw_gre(IpAddr::V6(a))
                    .with_context(|| format!("opening the chaining GRE relay socket on {a}"))
                    .map(|socket| GreSocket {
                        local: IpAddr::V6(a),
                        socket,
                    })
            })
            .transpose()?;
        tracing::info!(v4 = ?locals_v4, v6 = ?local_v6, "chaining GRE relay up");
        Ok(RelayIo {
            v4,
            v6,
            relay: Relay::new(),
            logged: RelayStats::default(),
        })
    }

    /// Sends a relayed packet from the socket bound to its `local` address (the kernel
    /// writes the outer header from that address).
    pub async fn act(&self, action: Action) {
        let Action::ToMag { mag, local, gre } = action else {
            return;
        };
        let socket = match local {
            IpAddr::V4(_) => self.v4.iter().find(|s| s.local == local),
            IpAddr::V6(_) => self.v6.as_ref().filter(|s| s.local == local),
        };
        let Some(socket) = socket else {
            tracing::debug!(%local, "no relay socket bound to this address");
            return;
        };
        if let Err(error) = send_raw(&socket.socket, mag, &gre).await {
            tracing::debug!(%error, %mag, "relay send failed");
        }
    }

    /// Logs the counters if they changed since last time.
    pub fn log_stats(&mut self) {
        let stats = self.relay.stats();
        if stats != self.logged {
            tracing::info!(?stats, chained = self.relay.len(), "GRE relay");
            self.logged = stats;
        }
    }
}

/// Receives one packet from the `index`th IPv4 relay socket; pends forever without one.
pub async fn receive_v4(
    io: Option<&RelayIo>,
    index: usize,
    buffer: &mut [MaybeUninit<u8>],
) -> std::io::Result<(usize, socket2::SockAddr)> {
    crate::sgi::receive_gre(io.and_then(|r| r.v4.get(index)).map(|s| &s.socket), buffer).await
}

/// Receives one packet from the IPv6 relay socket; pends forever without one.
pub async fn receive_v6(
    io: Option<&RelayIo>,
    buffer: &mut [MaybeUninit<u8>],
) -> std::io::Result<(usize, socket2::SockAddr)> {
    crate::sgi::receive_gre(io.and_then(|r| r.v6.as_ref()).map(|s| &s.socket), buffer).await
}
