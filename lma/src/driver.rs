//! The tokio driver around the sans-IO core: a UDP socket on `listen_v4` (RFC 5844) and a
//! raw IPv6 socket for next header 135 on `listen_v6` (the kernel fills and checks the
//! Mobility Header checksum: `IPV6_CHECKSUM` at offset 4), a timer for
//! `Lma::poll_timeout`, the pcap recorder and the log lines. One task: receive or sleep,
//! call `handle`, carry out the outputs, until SIGINT or SIGTERM.

use std::future::pending;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::Path;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result};
use lma::anchor::{ChainDownReason, ChainInfo, ChainReport};
use lma::config::Settings;
use lma::{DownReason, Input, Lma, MagAddress, Outcome, Output, PbuReport};
use pmip_common::mh::{mobility_header_checksum, ChecksumContext, IPPROTO_MH};
use pmip_node::pcap::PcapWriter;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::net::UdpSocket;
use tokio::signal::unix::{signal, SignalKind};

use crate::relay_io::{self, RelayIo};
use crate::sgi::{read_tun, receive_gre, Sgi};

/// Largest datagram read (the Mobility Header is at most 2048 octets; larger is junk).
const RECEIVE_BUFFER: usize = 65_536;

/// Sets the receive buffer, past `net.core.rmem_max` when privileged (SO_RCVBUFFORCE).
fn set_receive_buffer(socket: &Socket, bytes: usize) {
    use std::os::fd::AsRawFd;
    let _ = socket.set_recv_buffer_size(bytes);
    if socket.recv_buffer_size().is_ok_and(|got| got >= bytes) {
        return;
    }
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid socket fd and an int option of the right size; failure (no
    // CAP_NET_ADMIN) leaves the buffer as set above.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn bind_udp(address: SocketAddr, buffer: usize) -> Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .context("opening the IPv4 UDP socket")?;
    set_receive_buffer(&socket, buffer);
    socket
        .bind(&SockAddr::from(address))
        .with_context(|| format!("binding UDP {address} (listen_v4)"))?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into()).context("registering the UDP socket with tokio")
}

fn bind_raw_mh(address: Ipv6Addr, buffer: usize) -> Result<AsyncFd<Socket>> {
    use std::os::fd::AsRawFd;
    let socket = Socket::new(
        Domain::IPV6,
        Type::RAW,
        Some(Protocol::from(i32::from(IPPROTO_MH))),
    )
    .context("opening a raw IPv6 socket for the Mobility Header (needs root or CAP_NET_RAW)")?;
    let offset: libc::c_int = 4;
    // SAFETY: a valid socket fd and an int option of the right size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_RAW,
            libc::IPV6_CHECKSUM,
            &offset as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .context("setting IPV6_CHECKSUM on the raw Mobility Header socket");
    }
    set_receive_buffer(&socket, buffer);
    socket
        .bind(&SockAddr::from(SocketAddrV6::new(address, 0, 0, 0)))
        .with_context(|| {
            format!("binding the raw Mobility Header socket to {address} (listen_v6)")
        })?;
    socket.set_nonblocking(true)?;
    // SAFETY: the socket owns its fd, which stays open and unchanged until the AsyncFd
    // (which owns the socket) is dropped.
    unsafe { AsyncFd::register(socket) }
        .map_err(|e| e.into_parts().1)
        .context("registering the raw socket with tokio")
}

async fn receive_udp(
    socket: Option<&UdpSocket>,
    buffer: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(socket) => socket.recv_from(buffer).await,
        None => pending().await,
    }
}

async fn receive_raw(
    socket: Option<&AsyncFd<Socket>>,
    buffer: &mut [MaybeUninit<u8>],
) -> std::io::Result<(usize, SockAddr)> {
    let Some(socket) = socket else {
        return pending().await;
    };
    loop {
        let mut ready = socket.readable().await?;
        match ready.try_io(|s| s.get_ref().recv_from(buffer)) {
            Ok(result) => return result,
            Err(_would_block) => continue,
        }
    }
}

async fn send_raw(socket: &AsyncFd<Socket>, to: Ipv6Addr, bytes: &[u8]) -> std::io::Result<()> {
    let to = SockAddr::from(SocketAddrV6::new(to, 0, 0, 0));
    loop {
        let mut ready = socket.writable().await?;
        match ready.try_io(|s| s.get_ref().send_to(bytes, &to)) {
            Ok(result) => return result.map(|_| ()),
            Err(_would_block) => continue,
        }
    }
}

/// The pcap recorder, if any: write errors are logged once and end the recording.
struct Recorder {
    writer: Option<PcapWriter>,
    /// Our UDP port (listen_v4's).
    udp_port: u16,
}

impl Recorder {
    fn open(path: Option<&Path>, udp_port: u16) -> Result<Recorder> {
        let writer = path
            .map(|p| {
                PcapWriter::create(p).with_context(|| format!("creating --pcap {}", p.display()))
            })
            .transpose()?;
        Ok(Recorder { writer, udp_port })
    }

    /// Records one message between `mag` and us; `inbound` says which way.
    fn record(&mut self, mag: MagAddress, bytes: &[u8], inbound: bool) {
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        let now = SystemTime::now();
        let result = match mag {
            MagAddress::Udp4 { mag, local } => {
                let local = SocketAddr::new(IpAddr::V4(local), self.udp_port);
                if inbound {
                    writer.write_udp(now, SocketAddr::V4(mag), local, bytes)
                } else {
                    writer.write_udp(now, local, SocketAddr::V4(mag), bytes)
                }
            }
            MagAddress::Ip6 { mag, local, .. } => {
                let (source, destination) = if inbound { (mag, local) } else { (local, mag) };
                // What we send leaves with a zero checksum for the kernel to fill: fill
                // it here too, so the recording shows what went on the wire.
                let mut copy = bytes.to_vec();
                if !inbound && copy.len() >= 6 {
                    copy[4] = 0;
                    copy[5] = 0;
                    let context = ChecksumContext::Ipv6 {
                        source,
                        destination,
                    };
                    if let Some(sum) = mobility_header_checksum(context, &copy) {
                        copy[4..6].copy_from_slice(&sum.to_be_bytes());
                    }
                }
                writer.write_ipv6_mh(now, source, destination, &copy)
            }
        };
        if let Err(error) = result {
            tracing::warn!(%error, "pcap recording stopped");
            self.writer = None;
        }
    }

    fn flush(&mut self) {
        if let Some(writer) = self.writer.as_mut() {
            if let Err(error) = writer.flush() {
                tracing::warn!(%error, "pcap recording stopped");
                self.writer = None;
            }
        }
    }
}

fn log_report(report: &PbuReport) {
    let a = &report.addresses;
    let ipv4 = a
        .ipv4_home_address
        .map(|x| x.to_string())
        .unwrap_or_default();
    let prefix = a
        .home_network_prefix
        .map(|x| x.to_string())
        .unwrap_or_default();
    let uplink_key = a
        .uplink_gre_key
        .map(|k| k.0.to_string())
        .unwrap_or_default();
    let outcome = match report.outcome {
        Outcome::Registered => "registered",
        Outcome::Refreshed => "refreshed",
        Outcome::Deregistered => "deregistered",
        Outcome::DeregistrationFromOldMag => "deregistration-from-old-mag",
        Outcome::Rejected => "rejected",
        Outcome::Held => "held",
    };
    let home = report.home.map(|h| h.to_string()).unwrap_or_default();
    tracing::info!(
        mag = %report.mag,
        mn_id = report.mn_id.as_deref().unwrap_or(""),
        apn = report.apn.as_deref().unwrap_or(""),
        sequence = report.sequence,
        outcome,
        status = u8::from(report.status),
        status_name = ?report.status,
        lifetime_secs = report.lifetime.as_secs(),
        ipv4,
        prefix,
        uplink_key,
        reason = report.reason.unwrap_or(""),
        home,
        "PBU"
    );
}

fn log_chain(report: &ChainReport) {
    tracing::info!(
        mn_id = %report.mn_id,
        apn = report.apn.as_deref().unwrap_or(""),
        home = %report.home,
        event = ?report.event,
        detail = %report.detail,
        "chain"
    );
}

fn log_chain_info(info: &ChainInfo, what: &str) {
    tracing::info!(
        id = %info.id,
        mn_id = %info.mn_id,
        apn = info.apn.as_deref().unwrap_or(""),
        epdg = %info.epdg,
        uplink_key = info.uplink_key.0,
        epdg_downlink_key = info.epdg_downlink_key.0,
        home = %info.home,
        home_uplink_key = info.home_uplink_key.0,
        home_downlink_key = info.home_downlink_key.0,
        ipv4 = ?info.ipv4_home_address,
        prefix = ?info.home_network_prefix,
        "{what}"
    );
}

async fn receive_udp_home(
    socket: Option<&(Ipv4Addr, UdpSocket)>,
    buffer: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, Ipv4Addr)> {
    match socket {
        Some((local, socket)) => {
            let (len, from) = socket.recv_from(buffer).await?;
            Ok((len, from, *local))
        }
        None => pending().await,
    }
}

/// Runs until SIGINT or SIGTERM.
pub async fn run(mut lma: Lma, settings: &Settings, pcap: Option<&Path>) -> Result<()> {
    let udp = settings
        .listen_v4
        .map(|a| bind_udp(a, settings.socket_buffer_bytes))
        .transpose()?;
    let raw = settings
        .listen_v6
        .map(|a| bind_raw_mh(a, settings.socket_buffer_bytes))
        .transpose()?;
    let local_v4 = match settings.listen_v4 {
        Some(SocketAddr::V4(a)) => *a.ip(),
        _ => Ipv4Addr::UNSPECIFIED,
    };
    let local_v6 = settings.listen_v6.unwrap_or(Ipv6Addr::UNSPECIFIED);
    let udp_port = settings
        .listen_v4
        .map_or(pmip_common::mh::MH_UDP_PORT, |a| a.port());
    let mut sgi = settings
        .sgi
        .as_ref()
        .map(|c| {
            Sgi::open(
                c,
                settings.listen_v4.map(|_| local_v4),
                settings.listen_v6.map(|_| local_v6),
            )
        })
        .transpose()
        .context("starting the SGi data plane ([sgi])")?;
    // The visited role: a second UDP socket when the home-side proxy care-of address is
    // not listen_v4's, and the GRE relay's raw sockets.
    let chaining = settings.chaining.as_ref();
    let udp_home = match chaining.and_then(|c| c.local_v4) {
        Some(a) if settings.listen_v4.map(|l| l.ip()) != Some(IpAddr::V4(a)) => {
            let socket = bind_udp(
                SocketAddr::new(IpAddr::V4(a), udp_port),
                settings.socket_buffer_bytes,
            )
            .context("binding the home-side UDP socket (chaining.local_v4)")?;
            Some((a, socket))
        }
        _ => None,
    };
    let mut relay = chaining
        .map(|c| {
            let mut v4: Vec<Ipv4Addr> = Vec::new();
            if settings.listen_v4.is_some() {
                v4.push(local_v4);
            }
            v4.extend(c.local_v4);
            RelayIo::open(&v4, settings.listen_v6)
        })
        .transpose()
        .context("starting the chaining GRE relay ([chaining] needs CAP_NET_RAW)")?;
    let mut recorder = Recorder::open(pcap, udp_port)?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;

    tracing::info!(
        listen_v4 = ?settings.listen_v4,
        listen_v6 = ?settings.listen_v6,
        ipv4_pool = ?settings.core.ipv4_pool,
        ipv6_pool = ?settings.core.ipv6_pool,
        restart_counter = settings.core.restart_counter,
        chaining_to = ?chaining.map(|c| &c.home_gateways),
        chaining_local_v4 = ?chaining.and_then(|c| c.local_v4),
        "lma listening"
    );

    let mut udp_buffer = vec![0u8; RECEIVE_BUFFER];
    let mut udp_home_buffer = vec![0u8; RECEIVE_BUFFER];
    let mut raw_buffer = vec![MaybeUninit::<u8>::uninit(); RECEIVE_BUFFER];
    let mut tun_buffer = vec![0u8; RECEIVE_BUFFER];
    let mut gre4_buffer = vec![MaybeUninit::<u8>::uninit(); RECEIVE_BUFFER];
    let mut gre6_buffer = vec![MaybeUninit::<u8>::uninit(); RECEIVE_BUFFER];
    let mut relay_buffers = [
        vec![MaybeUninit::<u8>::uninit(); RECEIVE_BUFFER],
        vec![MaybeUninit::<u8>::uninit(); RECEIVE_BUFFER],
        vec![MaybeUninit::<u8>::uninit(); RECEIVE_BUFFER],
    ];
    let [relay0_buffer, relay1_buffer, relay6_buffer] = &mut relay_buffers;
    let mut stats_tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut out = Vec::new();
    loop {
        let deadline = lma.poll_timeout();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => pending().await,
            }
        };
        tokio::select! {
            _ = interrupt.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = terminate.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            received = receive_udp(udp.as_ref(), &mut udp_buffer) => match received {
                Ok((len, SocketAddr::V4(mag))) => {
                    let from = MagAddress::Udp4 { mag, local: local_v4 };
                    let bytes = &udp_buffer[..len];
                    recorder.record(from, bytes, true);
                    lma.handle(Input::Mobility { from, bytes }, Instant::now(), &mut out);
                }
                Ok((_, other)) => tracing::debug!(%other, "datagram from a non-IPv4 address ignored"),
                Err(error) => tracing::warn!(%error, "UDP receive failed"),
            },
            received = receive_raw(raw.as_ref(), &mut raw_buffer) => match received {
                Ok((len, source)) => match source.as_socket_ipv6() {
                    Some(mag) => {
                        // SAFETY: recv_from initialised the first `len` octets.
                        let bytes: &[u8] = unsafe {
                            std::slice::from_raw_parts(raw_buffer.as_ptr().cast::<u8>(), len.min(raw_buffer.len()))
                        };
                        let from = MagAddress::Ip6 { mag: *mag.ip(), local: local_v6, kernel_checksum: true };
                        recorder.record(from, bytes, true);
                        lma.handle(Input::Mobility { from, bytes }, Instant::now(), &mut out);
                    }
                    None => tracing::debug!("raw packet from a non-IPv6 address ignored"),
                },
                Err(error) => tracing::warn!(%error, "raw IPv6 receive failed"),
            },
            _ = sleep => lma.handle(Input::Timeout, Instant::now(), &mut out),
            _ = stats_tick.tick(), if sgi.is_some() || relay.is_some() => {
                if let Some(sgi) = sgi.as_mut() {
                    sgi.log_stats();
                }
                if let Some(relay) = relay.as_mut() {
                    relay.log_stats();
                }
            }
            received = receive_udp_home(udp_home.as_ref(), &mut udp_home_buffer) => match received {
                Ok((len, SocketAddr::V4(peer), local)) => {
                    let from = MagAddress::Udp4 { mag: peer, local };
                    let bytes = &udp_home_buffer[..len];
                    recorder.record(from, bytes, true);
                    lma.handle(Input::Mobility { from, bytes }, Instant::now(), &mut out);
                }
                Ok((_, other, _)) => tracing::debug!(%other, "datagram from a non-IPv4 address ignored"),
                Err(error) => tracing::warn!(%error, "UDP receive (chaining.local_v4) failed"),
            },
            received = relay_io::receive_v4(relay.as_ref(), 0, relay0_buffer) => {
                relay_v4(relay.as_mut(), received, relay0_buffer, sgi.is_some()).await;
            }
            received = relay_io::receive_v4(relay.as_ref(), 1, relay1_buffer) => {
                relay_v4(relay.as_mut(), received, relay1_buffer, sgi.is_some()).await;
            }
            received = relay_io::receive_v6(relay.as_ref(), relay6_buffer) => match (received, relay.as_mut()) {
                (Ok((len, from)), Some(relay)) => {
                    // SAFETY: recv_from initialised the first `len` octets.
                    let packet: &[u8] = unsafe {
                        std::slice::from_raw_parts(relay6_buffer.as_ptr().cast::<u8>(), len.min(relay6_buffer.len()))
                    };
                    let theirs = sgi.is_some() && !relay.relay.owns_gre(packet);
                    if let (Some(from), false) = (from.as_socket_ipv6(), theirs) {
                        if let Ok(action) = relay.relay.relay_gre(IpAddr::V6(*from.ip()), packet) {
                            relay.act(action).await;
                        }
                    }
                }
                (Err(error), _) => tracing::warn!(%error, "relay GRE (IPv6) receive failed"),
                (Ok(_), None) => {}
            },
            read = read_tun(sgi.as_ref().map(|s| &s.tun), &mut tun_buffer) => match (read, sgi.as_mut()) {
                (Ok(len), Some(sgi)) => {
                    let packet = &tun_buffer[..len.min(tun_buffer.len())];
                    match sgi.plane.downlink(packet) {
                        Ok(action) => sgi.act(action).await,
                        Err(reason) => tracing::debug!(?reason, "downlink packet dropped"),
                    }
                }
                (Err(error), _) => tracing::warn!(%error, "TUN read failed"),
                (Ok(_), None) => {}
            },
            received = receive_gre(sgi.as_ref().and_then(|s| s.gre4.as_ref()), &mut gre4_buffer) => match (received, sgi.as_mut()) {
                (Ok((len, _)), Some(sgi)) => {
                    // SAFETY: recv_from initialised the first `len` octets.
                    let packet: &[u8] = unsafe {
                        std::slice::from_raw_parts(gre4_buffer.as_ptr().cast::<u8>(), len.min(gre4_buffer.len()))
                    };
                    // A chained binding's packet: the relay's socket has it too.
                    if !relay.as_ref().is_some_and(|r| r.relay.owns_ip(packet)) {
                        match sgi.plane.uplink_ip(packet) {
                            Ok(action) => sgi.act(action).await,
                            Err(reason) => tracing::debug!(?reason, "uplink packet dropped"),
                        }
                    }
                }
                (Err(error), _) => tracing::warn!(%error, "raw GRE (IPv4) receive failed"),
                (Ok(_), None) => {}
            },
            received = receive_gre(sgi.as_ref().and_then(|s| s.gre6.as_ref()), &mut gre6_buffer) => match (received, sgi.as_mut()) {
                (Ok((len, from)), Some(sgi)) => {
                    // SAFETY: recv_from initialised the first `len` octets.
                    let packet: &[u8] = unsafe {
                        std::slice::from_raw_parts(gre6_buffer.as_ptr().cast::<u8>(), len.min(gre6_buffer.len()))
                    };
                    match from.as_socket_ipv6() {
                        Some(_) if relay.as_ref().is_some_and(|r| r.relay.owns_gre(packet)) => {}
                        Some(from) => match sgi.plane.uplink_gre(IpAddr::V6(*from.ip()), packet) {
                            Ok(action) => sgi.act(action).await,
                            Err(reason) => tracing::debug!(?reason, "uplink packet dropped"),
                        },
                        None => tracing::debug!("raw GRE packet from a non-IPv6 address ignored"),
                    }
                }
                (Err(error), _) => tracing::warn!(%error, "raw GRE (IPv6) receive failed"),
                (Ok(_), None) => {}
            },
        }
        for output in out.drain(..) {
            if let Some(sgi) = sgi.as_mut() {
                sgi.plane.apply(&output);
            }
            if let Some(relay) = relay.as_mut() {
                relay.relay.apply(&output);
            }
            match output {
                Output::Send { to, bytes } => {
                    recorder.record(to, &bytes, false);
                    let sent = match (to, &udp, &raw) {
                        (MagAddress::Udp4 { mag, local }, _, _)
                            if udp_home.as_ref().is_some_and(|(a, _)| *a == local) =>
                        {
                            match &udp_home {
                                Some((_, socket)) => socket
                                    .send_to(&bytes, SocketAddr::V4(mag))
                                    .await
                                    .map(|_| ()),
                                None => Ok(()),
                            }
                        }
                        (MagAddress::Udp4 { mag, .. }, Some(udp), _) => {
                            udp.send_to(&bytes, SocketAddr::V4(mag)).await.map(|_| ())
                        }
                        (MagAddress::Ip6 { mag, .. }, _, Some(raw)) => {
                            send_raw(raw, mag, &bytes).await
                        }
                        _ => Ok(()),
                    };
                    if let Err(error) = sent {
                        tracing::warn!(%error, mag = %to, "send failed");
                    }
                }
                Output::Report(report) => log_report(&report),
                Output::Chain(report) => log_chain(&report),
                Output::ChainUp(info) => log_chain_info(&info, "chained binding up"),
                Output::ChainDown { chain, reason } => {
                    let what = match reason {
                        ChainDownReason::Deregistered => "chained binding down: deregistered",
                        ChainDownReason::Expired => "chained binding down: expired",
                        ChainDownReason::HomeLost => "chained binding down: home gateway lost it",
                    };
                    log_chain_info(&chain, what);
                }
                Output::BindingUp(binding) => tracing::debug!(
                    id = %binding.id,
                    mag = %binding.mag,
                    ipv4 = ?binding.addresses.ipv4_home_address,
                    prefix = ?binding.addresses.home_network_prefix,
                    uplink_key = ?binding.addresses.uplink_gre_key.map(|k| k.0),
                    downlink_key = ?binding.downlink_gre_key.map(|k| k.0),
                    "binding up"
                ),
                Output::BindingDown { binding, reason } => match reason {
                    DownReason::Expired => tracing::info!(
                        id = %binding.id,
                        mag = %binding.mag,
                        ipv4 = ?binding.addresses.ipv4_home_address,
                        prefix = ?binding.addresses.home_network_prefix,
                        "binding expired"
                    ),
                    DownReason::Deregistered => tracing::debug!(id = %binding.id, "binding down"),
                },
            }
        }
        recorder.flush();
    }
    if let Some(sgi) = sgi.as_mut() {
        sgi.log_stats();
    }
    if let Some(relay) = relay.as_mut() {
        relay.log_stats();
    }
    let stats = lma.stats();
    let (chained, held) = lma.chain_counts();
    tracing::info!(
        bindings = lma.cache().len(),
        chained,
        held,
        ?stats,
        "lma stopped"
    );
    recorder.flush();
    Ok(())
}

/// Relays one packet from an IPv4 relay socket (outer header included). With an SGi
/// data plane too (`shared`), a packet under a key the relay does not know is the SGi
/// plane's, and is left alone here.
async fn relay_v4(
    relay: Option<&mut RelayIo>,
    received: std::io::Result<(usize, SockAddr)>,
    buffer: &[MaybeUninit<u8>],
    shared: bool,
) {
    match (received, relay) {
        (Ok((len, _)), Some(relay)) => {
            // SAFETY: recv_from initialised the first `len` octets.
            let packet: &[u8] = unsafe {
                std::slice::from_raw_parts(buffer.as_ptr().cast::<u8>(), len.min(buffer.len()))
            };
            if shared && !relay.relay.owns_ip(packet) {
                return;
            }
            if let Ok(action) = relay.relay.relay_ip(packet) {
                relay.act(action).await;
            }
        }
        (Err(error), _) => tracing::warn!(%error, "relay GRE (IPv4) receive failed"),
        (Ok(_), None) => {}
    }
}
