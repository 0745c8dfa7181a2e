//! The data path's I/O around the sans-IO GRE demultiplexer
//! ([`lma::dataplane::demux::GreDemux`]: the SGi data plane of `[sgi]` and the roaming
//! relay of `[chaining]`): one set of raw GRE sockets per address family
//! ([`pmip_node::gre::GreSockets`]) and the SGi TUN device.
//!
//! The IPv4 GRE sockets are bound to `listen_v4`'s address and, in the visited role, to
//! the home-side proxy care-of address `chaining.local_v4`; the IPv6 one to `listen_v6`.
//! Each family's sockets are read as one and every packet goes to the one demultiplexer,
//! which takes it apart once and hands it to its owner. A packet leaves from the socket
//! bound to the address the action names (the kernel writes the outer header from it).
//! After each packet the same socket (or the TUN device) is drained of what else waits,
//! up to [`BURST`], before the driver's loop runs again.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context, Result};
use lma::anchor::Output;
use lma::config::Settings;
use lma::dataplane::demux::GreDemux;
use lma::dataplane::relay::{Relay, RelayStats};
use lma::dataplane::{Action, DataPlane, DataPlaneSettings, DataPlaneStats, DropReason};
use pmip_node::gre::{GreSockets, ReceiveError};
use pmip_node::tun::AsyncTun;

use crate::sgi;

/// Packets handled from one socket or the TUN device before the loop runs again.
pub const BURST: usize = 64;

/// Largest packet read (an IP packet without jumbograms).
pub const PACKET_BUFFER: usize = 65_536;

/// The demultiplexer, its sockets, the TUN device and the counters last logged.
pub struct DataPath {
    demux: GreDemux,
    pub gre4: GreSockets,
    pub gre6: GreSockets,
    pub tun: Option<AsyncTun>,
    logged: (DataPlaneStats, RelayStats),
}

impl DataPath {
    /// Opens what `[sgi]` and `[chaining]` need; `None` when neither is configured.
    pub fn open(settings: &Settings) -> Result<Option<DataPath>> {
        let chaining = settings.chaining.as_ref();
        if settings.sgi.is_none() && chaining.is_none() {
            return Ok(None);
        }
        let listen_v4 = settings.listen_v4.map(|a| a.ip());
        let mut v4: Vec<IpAddr> = listen_v4.into_iter().collect();
        v4.extend(chaining.and_then(|c| c.local_v4).map(IpAddr::V4));
        let v6: Vec<IpAddr> = settings.listen_v6.map(IpAddr::V6).into_iter().collect();
        let what = match (&settings.sgi, chaining) {
            (Some(_), None) => "starting the SGi data plane ([sgi])",
            (None, _) => "starting the chaining GRE relay ([chaining] needs CAP_NET_RAW)",
            (Some(_), Some(_)) => "starting the SGi data plane and the chaining GRE relay",
        };
        let gre4 = GreSockets::bind(&v4).context(what)?;
        let gre6 = GreSockets::bind(&v6).context(what)?;
        let mut tun = None;
        let sgi = match &settings.sgi {
            Some(s) => {
                tun = Some(sgi::open_tun(s).context(what)?);
                tracing::info!(tun = %s.tun_name, ipv4 = ?s.ipv4, ipv6 = ?s.ipv6, mtu = s.mtu,
                    tunnel_mtu = s.tunnel_mtu, gre_v4 = ?listen_v4, gre_v6 = ?settings.listen_v6,
                    "SGi data plane up");
                Some(DataPlane::new(DataPlaneSettings {
                    tunnel_mtu: s.tunnel_mtu as usize,
                    icmp_source_v4: s.icmp_source_v4,
                    icmp_source_v6: s.icmp_source_v6,
                }))
            }
            None => None,
        };
        let relay = chaining.map(|_| {
            let v4: Vec<Ipv4Addr> = gre4
                .locals()
                .into_iter()
                .filter_map(|a| match a {
                    IpAddr::V4(a) => Some(a),
                    IpAddr::V6(_) => None,
                })
                .collect();
            tracing::info!(v4 = ?v4, v6 = ?settings.listen_v6, "chaining GRE relay up");
            Relay::new()
        });
        Ok(Some(DataPath {
            demux: GreDemux::new(sgi, relay),
            gre4,
            gre6,
            tun,
            logged: Default::default(),
        }))
    }

    /// Follows the signaling core's output.
    pub fn apply(&mut self, output: &Output) {
        self.demux.apply(output);
    }

    /// Hands one received GRE packet to its owner and carries out the action.
    pub async fn on_gre(&mut self, received: Result<(IpAddr, &[u8]), ReceiveError>) {
        match received {
            Ok((from, gre)) => match self.demux.receive(from, gre) {
                Some((_, Ok(action))) => self.act(action).await,
                Some((_, Err(reason))) => log_drop("uplink", reason),
                None => {}
            },
            Err(ReceiveError::OuterHeader(error)) => {
                tracing::debug!(%error, "raw GRE packet dropped")
            }
            Err(ReceiveError::Io(error)) => tracing::warn!(%error, "raw GRE receive failed"),
        }
    }

    /// Drains the `index`th socket of the IPv4 (`v4`) or IPv6 sockets: at most `BURST`
    /// packets that are already waiting.
    pub async fn drain_gre(&mut self, v4: bool, index: usize, buffer: &mut [u8]) {
        for _ in 0..BURST {
            let sockets = if v4 { &self.gre4 } else { &self.gre6 };
            let Some(received) = sockets.try_recv(index, buffer) else {
                return;
            };
            self.on_gre(received).await;
        }
    }

    /// Hands packets read from the TUN device to the SGi plane: `first`, then at most
    /// `BURST` more already waiting.
    pub async fn on_tun(&mut self, first: std::io::Result<usize>, buffer: &mut [u8]) {
        let mut read = first.map(Some);
        for _ in 0..=BURST {
            match read {
                Ok(Some(len)) => {
                    let packet = &buffer[..len.min(buffer.len())];
                    match self.demux.downlink(packet) {
                        Some(Ok(action)) => self.act(action).await,
                        Some(Err(reason)) => log_drop("downlink", reason),
                        None => {}
                    }
                }
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(%error, "TUN read failed");
                    return;
                }
            }
            read = match &self.tun {
                Some(tun) => tun.try_recv(buffer),
                None => return,
            };
        }
    }

    /// Carries out one action; failures are logged, never fatal.
    async fn act(&self, action: Action) {
        let result = match &action {
            Action::ToSgi(packet) => match &self.tun {
                Some(tun) => tun.send(packet).await,
                None => Ok(()),
            },
            Action::ToMag { mag, local, gre } => {
                let sockets = match local {
                    IpAddr::V4(_) => &self.gre4,
                    IpAddr::V6(_) => &self.gre6,
                };
                match sockets.get_or_first(*local) {
                    Some(socket) => socket.send_to(gre, *mag).await,
                    None => {
                        tracing::debug!(%local, "no GRE socket bound to this address");
                        Ok(())
                    }
                }
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, "data plane send failed");
        }
    }

    /// Logs the counters of each part that runs, if they changed since last time.
    pub fn log_stats(&mut self) {
        if let Some(sgi) = self.demux.sgi() {
            let stats = sgi.stats();
            if stats != self.logged.0 {
                tracing::info!(?stats, bindings = sgi.len(), "data plane");
                self.logged.0 = stats;
            }
        }
        if let Some(relay) = self.demux.relay() {
            let stats = relay.stats();
            if stats != self.logged.1 {
                tracing::info!(?stats, chained = relay.len(), "GRE relay");
                self.logged.1 = stats;
            }
        }
    }
}

fn log_drop(direction: &str, reason: DropReason) {
    tracing::debug!(?reason, "{direction} packet dropped");
}
