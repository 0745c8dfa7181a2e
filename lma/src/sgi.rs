//! The SGi data plane's I/O around [`lma::dataplane::DataPlane`]: a TUN device toward
//! the PDN (created by [`pmip_node::tun`], `IFF_TUN | IFF_NO_PI`; its MTU, addresses
//! and link state set with the `ip` command) and raw GRE sockets (IP protocol 47) for
//! IPv4 (received with the outer header) and IPv6 (received without it), bound to the
//! LMA's `listen_v4` / `listen_v6` addresses. What the kernel sends out of a raw socket
//! gets its outer header from the kernel, sourced from the bound address.

use std::fs::File;
use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use anyhow::{bail, Context, Result};
use lma::config::SgiSettings;
use lma::dataplane::{Action, DataPlane, DataPlaneSettings, DataPlaneStats};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

const IPPROTO_GRE: i32 = 47;

fn ip(args: &[&str]) -> Result<()> {
    let status = std::process::Command::new("ip")
        .args(args)
        .status()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !status.success() {
        bail!("ip {} failed: {status}", args.join(" "));
    }
    Ok(())
}

fn configure_tun(s: &SgiSettings) -> Result<()> {
    let mtu = s.mtu.to_string();
    ip(&["link", "set", "dev", &s.tun_name, "mtu", &mtu])?;
    if let Some(a) = s.ipv4 {
        ip(&["addr", "add", &a.to_string(), "dev", &s.tun_name])?;
    }
    if let Some(a) = s.ipv6 {
        ip(&[
            "-6",
            "addr",
            "add",
            &a.to_string(),
            "dev",
            &s.tun_name,
            "nodad",
        ])?;
    }
    ip(&["link", "set", "dev", &s.tun_name, "up"])
}

pub fn bind_raw_gre(local: IpAddr) -> Result<AsyncFd<Socket>> {
    let domain = match local {
        IpAddr::V4(_) => Domain::IPV4,
        IpAddr::V6(_) => Domain::IPV6,
    };
    let socket = Socket::new(domain, Type::RAW, Some(Protocol::from(IPPROTO_GRE)))
        .context("opening a raw GRE socket (needs root or CAP_NET_RAW)")?;
    socket
        .bind(&SockAddr::from(SocketAddr::new(local, 0)))
        .with_context(|| format!("binding the raw GRE socket to {local}"))?;
    socket.set_nonblocking(true)?;
    // SAFETY: the socket owns its fd, open until the AsyncFd (which owns it) drops.
    unsafe { AsyncFd::register(socket) }
        .map_err(|e| e.into_parts().1)
        .context("registering the raw GRE socket with tokio")
}

/// The TUN device, the GRE sockets and the data plane.
pub struct Sgi {
    pub tun: AsyncFd<File>,
    pub gre4: Option<AsyncFd<Socket>>,
    pub gre6: Option<AsyncFd<Socket>>,
    pub plane: DataPlane,
    logged: DataPlaneStats,
}

impl Sgi {
    pub fn open(
        s: &SgiSettings,
        local_v4: Option<Ipv4Addr>,
        local_v6: Option<Ipv6Addr>,
    ) -> Result<Sgi> {
        let tun = pmip_node::tun::create(&s.tun_name, pmip_node::tun::Mode::NonBlocking)?;
        configure_tun(s).with_context(|| format!("configuring TUN device {}", s.tun_name))?;
        // SAFETY: the file owns its fd, open until the AsyncFd drops.
        let tun = unsafe { AsyncFd::register(tun) }
            .map_err(|e| e.into_parts().1)
            .context("registering the TUN device with tokio")?;
        let gre4 = local_v4.map(|a| bind_raw_gre(IpAddr::V4(a))).transpose()?;
        let gre6 = local_v6.map(|a| bind_raw_gre(IpAddr::V6(a))).transpose()?;
        let plane = DataPlane::new(DataPlaneSettings {
            tunnel_mtu: s.tunnel_mtu as usize,
            icmp_source_v4: s.icmp_source_v4,
            icmp_source_v6: s.icmp_source_v6,
        });
        tracing::info!(tun = %s.tun_name, ipv4 = ?s.ipv4, ipv6 = ?s.ipv6, mtu = s.mtu,
            tunnel_mtu = s.tunnel_mtu, gre_v4 = ?local_v4, gre_v6 = ?local_v6, "SGi data plane up");
        Ok(Sgi {
            tun,
            gre4,
            gre6,
            plane,
            logged: DataPlaneStats::default(),
        })
    }

    /// Carries out one action; failures are logged, never fatal.
    pub async fn act(&self, action: Action) {
        let result = match &action {
            Action::ToSgi(packet) => write_tun(&self.tun, packet).await,
            Action::ToMag { mag, gre, .. } => {
                let socket = match mag {
                    IpAddr::V4(_) => self.gre4.as_ref(),
                    IpAddr::V6(_) => self.gre6.as_ref(),
                };
                match socket {
                    Some(s) => send_raw(s, *mag, gre).await,
                    None => Ok(()),
                }
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, "data plane send failed");
        }
    }

    /// Logs the counters if they changed since last time.
    pub fn log_stats(&mut self) {
        let stats = self.plane.stats();
        if stats != self.logged {
            tracing::info!(?stats, bindings = self.plane.len(), "data plane");
            self.logged = stats;
        }
    }
}

async fn write_tun(tun: &AsyncFd<File>, packet: &[u8]) -> std::io::Result<()> {
    loop {
        let mut ready = tun.writable().await?;
        match ready.try_io(|f| f.get_ref().write(packet)) {
            Ok(r) => return r.map(|_| ()),
            Err(_would_block) => continue,
        }
    }
}

pub async fn send_raw(socket: &AsyncFd<Socket>, to: IpAddr, bytes: &[u8]) -> std::io::Result<()> {
    let to = match to {
        IpAddr::V4(a) => SockAddr::from(SocketAddrV4::new(a, 0)),
        IpAddr::V6(a) => SockAddr::from(SocketAddrV6::new(a, 0, 0, 0)),
    };
    loop {
        let mut ready = socket.writable().await?;
        match ready.try_io(|s| s.get_ref().send_to(bytes, &to)) {
            Ok(r) => return r.map(|_| ()),
            Err(_would_block) => continue,
        }
    }
}

/// Reads one packet from the TUN device; pends forever without one.
pub async fn read_tun(tun: Option<&AsyncFd<File>>, buffer: &mut [u8]) -> std::io::Result<usize> {
    let Some(tun) = tun else {
        return std::future::pending().await;
    };
    loop {
        let mut ready = tun.readable().await?;
        match ready.try_io(|f| f.get_ref().read(buffer)) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

/// Receives one packet from a raw GRE socket; pends forever without one.
pub async fn receive_gre(
    socket: Option<&AsyncFd<Socket>>,
    buffer: &mut [MaybeUninit<u8>],
) -> std::io::Result<(usize, SockAddr)> {
    let Some(socket) = socket else {
        return std::future::pending().await;
    };
    loop {
        let mut ready = socket.readable().await?;
        match ready.try_io(|s| s.get_ref().recv_from(buffer)) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}
