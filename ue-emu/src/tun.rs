//! `ue-emu attach --tun NAME`: after the attach, a TUN device carrying the addresses the
//! ePDG assigned, relayed to and from the CHILD_SA's ESP-in-UDP (RFC 3948) so ordinary
//! tools (ping, iperf3) run through the tunnel. Needs root (or CAP_NET_ADMIN).
//!
//! The device is created by [`pmip_common::tun`] (`IFF_TUN | IFF_NO_PI`), configured
//! with the `ip` command: no IPv6 link-local address (`addrgenmode none`), the assigned
//! IPv4 address as /32, the assigned IPv6 address (interface identifier ::1 when the
//! ePDG gave the bare prefix) with its prefix length, the MTU, and the routes asked for
//! (`default` = 0.0.0.0/0 and ::/0, for the families that were assigned). Closing the
//! device at the end removes it and its routes.
//!
//! Uplink: a packet read from the device is sent only when its source is inside the
//! CHILD_SA's traffic selector (the assigned IPv4 address, or the assigned IPv6 prefix),
//! as an IPsec UE's policy would; anything else (kernel chatter) is counted and dropped.
//! Downlink: ESP from the ePDG's port 4500 is opened (anti-replay checked) and written to
//! the device; IKE messages (liveness checks) are answered. The relay stops on
//! SIGINT/SIGTERM, after `--hold-secs`, or when the ePDG closes the IKE SA. While the
//! uplink is idle, a NAT-keepalive (RFC 3948 section 2.3, one octet 0xFF) goes to the
//! ePDG's port 4500 every `--nat-keepalive-secs` (default 20, the RFC's suggestion), so a
//! NAT between the UE and the ePDG keeps the mapping.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ipnet::{IpNet, Ipv6Net};
use pmip_common::esp::{child_sa_pair, next_header_of, IkeRole, UdpEncapsulated, NAT_KEEPALIVE};
use pmip_common::ike::initiator::InitiatorSa;
use pmip_common::ike::sa::{ChildSa, Event, Output};
use rand::rngs::OsRng;
use serde::Serialize;

/// What `--tun` asks for.
#[derive(Debug, Clone)]
pub struct TunOptions {
    /// The device name (at most 15 octets).
    pub name: String,
    /// Routes through the device; `None` stands for `default` (both families).
    pub routes: Vec<Option<IpNet>>,
    pub mtu: u32,
    /// Send a NAT-keepalive (RFC 3948 section 2.3) after this long without uplink
    /// traffic; `None`: never.
    pub nat_keepalive: Option<Duration>,
}

/// What the relay did, in the `--json` report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TunReport {
    pub name: String,
    pub addresses: Vec<String>,
    pub routes: Vec<String>,
    pub uplink_packets: u64,
    pub uplink_bytes: u64,
    pub downlink_packets: u64,
    pub downlink_bytes: u64,
    /// Read from the device with a source outside the traffic selector; not sent.
    pub uplink_outside_selector: u64,
    /// ESP from the ePDG that failed to open (integrity, replay, malformed).
    pub downlink_esp_errors: u64,
    /// NAT-keepalives (one octet 0xFF to the ePDG's port 4500) sent while idle.
    pub nat_keepalives_sent: u64,
    /// Why the relay stopped: "signal", "hold", or "ike closed: ...".
    pub stopped_by: String,
}

/// Set by SIGINT/SIGTERM while the relay runs.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for s in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(
                s,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

/// A TUN device opened before the attach (so a missing privilege fails before the ePDG
/// is bothered) and configured once the addresses are known.
#[derive(Debug)]
pub struct TunDevice {
    file: File,
}

impl TunDevice {
    /// Creates TUN device `name` (`TUNSETIFF`); it goes away when dropped.
    pub fn open(name: &str) -> Result<TunDevice> {
        let file = pmip_common::tun::create(name, pmip_common::tun::Mode::Blocking)
            .with_context(|| format!("--tun {name}"))?;
        Ok(TunDevice { file })
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The addresses the ePDG assigned, as the device carries them.
#[derive(Debug, Clone, Copy)]
pub struct Assigned {
    pub ipv4: Option<Ipv4Addr>,
    /// The UE's IPv6 address and its prefix (the traffic selector).
    pub ipv6: Option<(Ipv6Addr, Ipv6Net)>,
}

impl Assigned {
    /// Whether `packet`'s source is inside the traffic selector.
    fn allows_source(&self, packet: &[u8]) -> bool {
        match packet.first().map(|b| b >> 4) {
            Some(4) if packet.len() >= 20 => {
                let s = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
                self.ipv4 == Some(s)
            }
            Some(6) if packet.len() >= 40 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(&packet[8..24]);
                self.ipv6
                    .is_some_and(|(_, net)| net.contains(&Ipv6Addr::from(o)))
            }
            _ => false,
        }
    }
}

/// Creates and configures the device; returns it with the addresses and routes set.
fn set_up(options: &TunOptions, assigned: &Assigned) -> Result<(Vec<String>, Vec<String>)> {
    let dev = options.name.as_str();
    ip(&["link", "set", "dev", dev, "addrgenmode", "none"])?;
    ip(&["link", "set", "dev", dev, "mtu", &options.mtu.to_string()])?;
    let mut addresses = Vec::new();
    if let Some(a) = assigned.ipv4 {
        let a = format!("{a}/32");
        ip(&["addr", "add", &a, "dev", dev])?;
        addresses.push(a);
    }
    if let Some((a, net)) = assigned.ipv6 {
        let a = format!("{a}/{}", net.prefix_len());
        ip(&["-6", "addr", "add", &a, "dev", dev, "nodad"])?;
        addresses.push(a);
    }
    ip(&["link", "set", "dev", dev, "up"])?;
    let mut routes = Vec::new();
    let mut wanted = Vec::new();
    for r in &options.routes {
        match r {
            None => {
                wanted.push("0.0.0.0/0".parse::<IpNet>()?);
                wanted.push("::/0".parse::<IpNet>()?);
            }
            Some(net) => wanted.push(*net),
        }
    }
    for net in wanted {
        let family_assigned = match net {
            IpNet::V4(_) => assigned.ipv4.is_some(),
            IpNet::V6(_) => assigned.ipv6.is_some(),
        };
        if !family_assigned {
            continue;
        }
        let text = net.to_string();
        let family = if net.addr().is_ipv4() { "-4" } else { "-6" };
        ip(&[family, "route", "add", &text, "dev", dev]).with_context(|| {
            format!("routing {text} into {dev} (give --tun-route PREFIX when a route exists)")
        })?;
        routes.push(text);
    }
    Ok((addresses, routes))
}

/// Waits until `fd` is readable or `timeout` passes; true when readable.
fn readable(fd: libc::c_int, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut p, 1, ms) };
    rc > 0 && p.revents & libc::POLLIN != 0
}

/// The UDP path to the ePDG the attach ran on.
pub struct EpdgLink<'a> {
    pub socket: &'a UdpSocket,
    /// The ePDG's port 4500 (ESP-in-UDP).
    pub natt: SocketAddr,
    /// Sends an IKE message (`port_4500`) to the ePDG.
    pub send_ike: &'a dyn Fn(&[u8], bool) -> Result<()>,
}

/// Configures the device and relays until a signal, `until`, or the end of the IKE SA.
pub fn relay(
    device: TunDevice,
    link: &EpdgLink<'_>,
    sa: &mut InitiatorSa,
    child: &ChildSa,
    assigned: Assigned,
    options: &TunOptions,
    until: Option<Instant>,
) -> Result<TunReport> {
    let (socket, natt, send_ike) = (link.socket, link.natt, link.send_ike);
    let (mut inbound, mut outbound) =
        child_sa_pair(child, IkeRole::Initiator).context("building the ESP SAs")?;
    STOP.store(false, Ordering::SeqCst);
    install_signal_handlers();
    let tun = device.file;
    let (addresses, routes) = set_up(options, &assigned)
        .with_context(|| format!("setting up TUN device {}", options.name))?;
    eprintln!(
        "ue-emu: TUN {} up, addresses {}, routes {}; relaying until SIGINT/SIGTERM{}",
        options.name,
        addresses.join(" "),
        if routes.is_empty() {
            "none".to_string()
        } else {
            routes.join(" ")
        },
        if until.is_some() {
            " or --hold-secs"
        } else {
            ""
        }
    );
    let uplink_packets = AtomicU64::new(0);
    let uplink_bytes = AtomicU64::new(0);
    let outside = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let tick = Duration::from_millis(100);
    let mut report = TunReport {
        name: options.name.clone(),
        addresses,
        routes,
        ..TunReport::default()
    };
    let stopped_by = std::thread::scope(|scope| -> Result<String> {
        // Uplink: device -> ESP -> ePDG.
        let uplink = scope.spawn(|| -> Result<()> {
            let mut rng = OsRng;
            let mut packet = vec![0u8; 65536];
            let mut esp = Vec::with_capacity(65536);
            let mut reader = &tun;
            while !done.load(Ordering::Relaxed) {
                if !readable(tun.as_raw_fd(), tick) {
                    continue;
                }
                let n = match reader.read(&mut packet) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e).context("reading the TUN device"),
                };
                let packet = &packet[..n];
                if !assigned.allows_source(packet) {
                    outside.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                esp.clear();
                outbound
                    .encapsulate_ip(packet, &mut rng, &mut esp)
                    .context("sealing a packet in ESP")?;
                match socket.send_to(&esp, natt) {
                    Ok(_) => {}
                    // A full socket buffer or an unreachable ePDG loses this packet only.
                    Err(e) if e.kind() != std::io::ErrorKind::Interrupted => {
                        tracing::debug!(error = %e, "sending ESP");
                    }
                    Err(_) => {}
                }
                uplink_packets.fetch_add(1, Ordering::Relaxed);
                uplink_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Ok(())
        });
        // Downlink (this thread): ePDG -> ESP -> device; IKE answered.
        let result = (|| -> Result<String> {
            let mut rng = OsRng;
            let mut buf = vec![0u8; 65536];
            let mut writer = &tun;
            socket.set_read_timeout(Some(tick))?;
            // NAT-keepalive: due when no uplink packet went out for the interval.
            let mut keepalive_due = options.nat_keepalive.map(|i| Instant::now() + i);
            let mut uplink_seen = 0;
            loop {
                if let (Some(due), Some(interval)) = (keepalive_due, options.nat_keepalive) {
                    let now = Instant::now();
                    let sent = uplink_packets.load(Ordering::Relaxed);
                    if sent != uplink_seen {
                        uplink_seen = sent;
                        keepalive_due = Some(now + interval);
                    } else if now >= due {
                        if socket.send_to(&NAT_KEEPALIVE, natt).is_ok() {
                            report.nat_keepalives_sent += 1;
                        }
                        keepalive_due = Some(now + interval);
                    }
                }
                if STOP.load(Ordering::SeqCst) {
                    return Ok("signal".into());
                }
                if until.is_some_and(|u| Instant::now() >= u) {
                    return Ok("hold".into());
                }
                if uplink.is_finished() {
                    return Ok("uplink error".into());
                }
                if sa.poll_timeout().is_some_and(|t| t <= Instant::now()) {
                    let mut out = Vec::new();
                    sa.handle_timeout(Instant::now(), &mut out);
                    if let Some(reason) = carry_out(out, send_ike)? {
                        return Ok(reason);
                    }
                }
                let (n, from) = match socket.recv_from(&mut buf) {
                    Ok(x) => x,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock
                                | std::io::ErrorKind::TimedOut
                                | std::io::ErrorKind::Interrupted
                        ) =>
                    {
                        continue
                    }
                    Err(e) => return Err(e).context("receiving from the ePDG"),
                };
                if from != natt {
                    continue;
                }
                match UdpEncapsulated::classify(&buf[..n]) {
                    Ok(UdpEncapsulated::Esp(_)) => {
                        // ESP-in-UDP: the ESP packet is the whole payload; open it in
                        // place (no copy).
                        let inner = match inbound.decapsulate_in_place(&mut buf[..n]) {
                            Ok((d, range))
                                if next_header_of(&buf[range.clone()]).ok()
                                    == Some(d.next_header) =>
                            {
                                &buf[range]
                            }
                            // A dummy packet (next header 59) is dropped quietly.
                            Ok((d, _)) if d.next_header == 59 => continue,
                            _ => {
                                report.downlink_esp_errors += 1;
                                continue;
                            }
                        };
                        match writer.write(inner) {
                            Ok(written) if written == inner.len() => {
                                report.downlink_packets += 1;
                                report.downlink_bytes += inner.len() as u64;
                            }
                            Ok(_) => tracing::debug!("short write to the TUN device"),
                            Err(e) => tracing::debug!(error = %e, "writing to the TUN device"),
                        }
                    }
                    Ok(UdpEncapsulated::Ike(message)) => {
                        let mut out = Vec::new();
                        sa.handle(message, true, Instant::now(), &mut rng, &mut out);
                        if let Some(reason) = carry_out(out, send_ike)? {
                            return Ok(reason);
                        }
                    }
                    _ => {}
                }
            }
        })();
        done.store(true, Ordering::Relaxed);
        let uplink_result = uplink
            .join()
            .map_err(|_| anyhow::anyhow!("the uplink thread panicked"))?;
        uplink_result?;
        result
    })?;
    report.stopped_by = stopped_by;
    report.uplink_packets = uplink_packets.load(Ordering::Relaxed);
    report.uplink_bytes = uplink_bytes.load(Ordering::Relaxed);
    report.uplink_outside_selector = outside.load(Ordering::Relaxed);
    drop(tun); // removes the device and its routes
    eprintln!(
        "ue-emu: TUN {} closed ({}): uplink {} packets / {} octets, downlink {} packets / {} octets",
        report.name,
        report.stopped_by,
        report.uplink_packets,
        report.uplink_bytes,
        report.downlink_packets,
        report.downlink_bytes
    );
    Ok(report)
}

/// Sends what the IKE SA asked to send; the reason when it reports the SA closed.
fn carry_out(
    out: Vec<Output>,
    send_ike: &dyn Fn(&[u8], bool) -> Result<()>,
) -> Result<Option<String>> {
    let mut closed = None;
    for o in out {
        match o {
            Output::Send { bytes, port_4500 } => send_ike(&bytes, port_4500)?,
            Output::Event(Event::Closed(reason)) => {
                closed = Some(format!("ike closed: {reason:?}"))
            }
            Output::Event(_) => {}
        }
    }
    Ok(closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(source: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0u8; 20];
        p[0] = 0x45;
        p[12..16].copy_from_slice(&source);
        p
    }

    fn v6(source: Ipv6Addr) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[8..24].copy_from_slice(&source.octets());
        p
    }

    #[test]
    fn only_sources_inside_the_selector_go_up() {
        let a = Assigned {
            ipv4: Some(Ipv4Addr::new(10, 0, 0, 7)),
            ipv6: Some((
                "2001:db8:1:2::1".parse().unwrap(),
                "2001:db8:1:2::/64".parse().unwrap(),
            )),
        };
        assert!(a.allows_source(&v4([10, 0, 0, 7])));
        assert!(!a.allows_source(&v4([10, 0, 0, 8])));
        assert!(a.allows_source(&v6("2001:db8:1:2::99".parse().unwrap())));
        assert!(!a.allows_source(&v6("fe80::1".parse().unwrap())));
        assert!(!a.allows_source(&v6("::".parse().unwrap())));
        assert!(!a.allows_source(&[0x45, 0, 0]));
        assert!(!a.allows_source(&[]));
        let none = Assigned {
            ipv4: None,
            ipv6: None,
        };
        assert!(!none.allows_source(&v4([10, 0, 0, 7])));
    }
}
