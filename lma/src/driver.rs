//! The tokio driver around the sans-IO core, one task and one loop: the Mobility Header
//! sockets (UDP on `listen_v4`, RFC 5844; the raw IPv6 socket for next header 135 on
//! `listen_v6`, whose checksum the kernel fills and checks, RFC 6275 section 6.1.1; a
//! second UDP socket on `chaining.local_v4` when it differs), a timer for
//! `Lma::poll_timeout`, the data path ([`crate::data_path`]: one GRE receive per address
//! family into the GRE demultiplexer, and the SGi TUN device), the pcap recorder and the
//! log lines (rejected PBUs through [`lma::reject_log`], summed per MAG and interval). Receive or sleep, call `handle`, carry out the outputs, until SIGINT or
//! SIGTERM. Every socket comes from `pmip_node`, received without `unsafe`.

use std::cell::Cell;
use std::future::{pending, poll_fn};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::task::Poll;
use std::time::Instant;

use anyhow::{Context, Result};
use lma::anchor::{ChainDownReason, ChainInfo, ChainReport};
use lma::anchor::{JournalRecord, Restored, RevokeTarget};
use lma::config::Settings;
use lma::reject_log::{RejectLog, RejectSummary, Verdict, DEFAULT_MAX_SOURCES};
use lma::state::StateFile;
use lma::{DownReason, Input, Lma, MagAddress, Outcome, Output, PbuReport};
use pmip_common::icmp6::IPPROTO_ICMPV6;
use pmip_node::admin::AdminRequest;
use pmip_node::gre::{GreSockets, ReceiveError};
use pmip_node::socket::{self, AsyncRawSocket, RawSocket};
use pmip_node::tun::AsyncTun;
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::signal::unix::{signal, SignalKind};

use crate::capture::Recorder;
use crate::data_path::{DataPath, PACKET_BUFFER};

/// The Mobility Header sockets.
struct MobilitySockets {
    /// `listen_v4` (RFC 5844) and its address.
    udp: Option<UdpSocket>,
    local_v4: Ipv4Addr,
    /// The raw IPv6 socket on `listen_v6` (kernel checksum).
    raw: Option<AsyncRawSocket>,
    /// A raw ICMPv6 socket on `listen_v6`, for the Parameter Problems of RFC 6275 section
    /// 9.2 (send only: its receive buffer is the smallest the kernel allows, and it is
    /// never read, so the ICMPv6 traffic it would see is dropped there).
    icmp6: Option<AsyncRawSocket>,
    local_v6: Ipv6Addr,
    /// The home-side UDP socket (`chaining.local_v4`) when it is not `listen_v4`'s.
    udp_home: Option<(Ipv4Addr, UdpSocket)>,
    /// The socket polled first next time (0 `udp`, 1 `udp_home`, 2 `raw`).
    next: Cell<usize>,
}

/// What one receive on the Mobility Header sockets gave.
enum MhReceived {
    /// A message of this length in the buffer, from this path.
    Message(MagAddress, usize),
    /// A datagram from an address of the wrong family.
    Ignored(IpAddr),
    Failed(&'static str, std::io::Error),
}

impl MobilitySockets {
    fn open(settings: &Settings) -> Result<MobilitySockets> {
        let buffer = Some(settings.socket_buffer_bytes);
        let udp = settings
            .listen_v4
            .map(|a| {
                socket::udp_async(a, buffer).with_context(|| format!("binding UDP {a} (listen_v4)"))
            })
            .transpose()?;
        let raw = settings
            .listen_v6
            .map(|a| -> Result<AsyncRawSocket> {
                let raw = RawSocket::mobility_header(a, true).with_context(|| {
                    format!(
                        "opening the raw Mobility Header socket on {a} (listen_v6; needs root \
                         or CAP_NET_RAW)"
                    )
                })?;
                raw.set_receive_buffer(settings.socket_buffer_bytes);
                raw.into_async()
                    .context("registering the raw socket with tokio")
            })
            .transpose()?;
        let icmp6 = settings
            .listen_v6
            .map(|a| -> Result<AsyncRawSocket> {
                let raw = RawSocket::bind(IpAddr::V6(a), IPPROTO_ICMPV6).with_context(|| {
                    format!("opening a raw ICMPv6 socket on {a} (listen_v6; needs CAP_NET_RAW)")
                })?;
                raw.set_receive_buffer(1);
                raw.into_async()
                    .context("registering the ICMPv6 socket with tokio")
            })
            .transpose()?;
        let local_v4 = match settings.listen_v4 {
            Some(SocketAddr::V4(a)) => *a.ip(),
            _ => Ipv4Addr::UNSPECIFIED,
        };
        let udp_port = settings
            .listen_v4
            .map_or(pmip_common::mh::MH_UDP_PORT, |a| a.port());
        let udp_home = match settings.chaining.as_ref().and_then(|c| c.local_v4) {
            Some(a) if settings.listen_v4.map(|l| l.ip()) != Some(IpAddr::V4(a)) => {
                let socket = socket::udp_async(SocketAddr::new(IpAddr::V4(a), udp_port), buffer)
                    .with_context(|| {
                        format!(
                            "binding the home-side UDP socket {a}:{udp_port} (chaining.local_v4)"
                        )
                    })?;
                Some((a, socket))
            }
            _ => None,
        };
        Ok(MobilitySockets {
            udp,
            local_v4,
            raw,
            icmp6,
            local_v6: settings.listen_v6.unwrap_or(Ipv6Addr::UNSPECIFIED),
            udp_home,
            next: Cell::new(0),
        })
    }

    /// Receives one message from whichever socket has one (pends for ever without
    /// sockets). Polled in turn, starting after the one that last delivered, so a flood
    /// on one cannot starve the others.
    async fn recv(&self, buffer: &mut [u8]) -> MhReceived {
        let home_local = self.udp_home.as_ref().map(|(a, _)| *a);
        poll_fn(|cx| {
            let start = self.next.get();
            for i in 0..3 {
                let which = (start + i) % 3;
                let mut read = ReadBuf::new(buffer);
                let polled = match which {
                    0 => self.udp.as_ref().map(|s| s.poll_recv_from(cx, &mut read)),
                    1 => self
                        .udp_home
                        .as_ref()
                        .map(|(_, s)| s.poll_recv_from(cx, &mut read)),
                    _ => self.raw.as_ref().map(|s| {
                        s.poll_recv_from(cx, read.initialize_unfilled())
                            .map_ok(|(len, from)| {
                                read.advance(len);
                                SocketAddr::new(from, 0)
                            })
                    }),
                };
                let Some(Poll::Ready(result)) = polled else {
                    continue;
                };
                self.next.set((which + 1) % 3);
                let len = read.filled().len();
                let received = match (which, result) {
                    (_, Err(error)) => MhReceived::Failed(
                        [
                            "UDP receive failed",
                            "UDP receive (chaining.local_v4) failed",
                            "raw IPv6 receive failed",
                        ][which],
                        error,
                    ),
                    (0, Ok(SocketAddr::V4(mag))) => MhReceived::Message(
                        MagAddress::Udp4 {
                            mag,
                            local: self.local_v4,
                        },
                        len,
                    ),
                    (1, Ok(SocketAddr::V4(mag))) => MhReceived::Message(
                        MagAddress::Udp4 {
                            mag,
                            local: home_local.unwrap_or(Ipv4Addr::UNSPECIFIED),
                        },
                        len,
                    ),
                    (2, Ok(SocketAddr::V6(mag))) => MhReceived::Message(
                        MagAddress::Ip6 {
                            mag: *mag.ip(),
                            local: self.local_v6,
                            kernel_checksum: true,
                        },
                        len,
                    ),
                    (_, Ok(other)) => MhReceived::Ignored(other.ip()),
                };
                return Poll::Ready(received);
            }
            Poll::Pending
        })
        .await
    }

    /// Sends an ICMPv6 message (the kernel adds the IPv6 header and the checksum).
    async fn send_icmp6(&self, to: Ipv6Addr, message: &[u8]) -> std::io::Result<()> {
        match &self.icmp6 {
            Some(socket) => socket.send_to(message, IpAddr::V6(to)).await.map(|_| ()),
            None => Ok(()),
        }
    }

    /// Sends one message to a MAG (or a home gateway), from the socket of its path.
    async fn send(&self, to: MagAddress, bytes: &[u8]) -> std::io::Result<()> {
        match to {
            MagAddress::Udp4 { mag, local } => {
                let socket = match &self.udp_home {
                    Some((home, socket)) if *home == local => Some(socket),
                    _ => self.udp.as_ref(),
                };
                match socket {
                    Some(s) => s.send_to(bytes, SocketAddr::V4(mag)).await.map(|_| ()),
                    None => Ok(()),
                }
            }
            MagAddress::Ip6 { mag, .. } => match &self.raw {
                Some(raw) => raw.send_to(bytes, IpAddr::V6(mag)).await.map(|_| ()),
                None => Ok(()),
            },
        }
    }
}

/// One GRE receive of an address family, if it has sockets.
async fn receive_gre<'a>(
    sockets: Option<&GreSockets>,
    buffer: &'a mut [u8],
) -> (usize, Result<(IpAddr, &'a [u8]), ReceiveError>) {
    match sockets.filter(|s| !s.is_empty()) {
        Some(sockets) => sockets.recv(buffer).await,
        None => pending().await,
    }
}

/// Reads the TUN device if there is one.
async fn read_tun(tun: Option<&AsyncTun>, buffer: &mut [u8]) -> std::io::Result<usize> {
    match tun {
        Some(tun) => tun.recv(buffer).await,
        None => pending().await,
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

fn log_rejects(summary: &RejectSummary) {
    tracing::info!(
        mag = %summary.source,
        rejected = summary.rejected,
        statuses = %summary.statuses_text(),
        interval_secs = summary.interval.as_secs_f64(),
        "{summary}"
    );
}

/// Sleeps until `deadline`, or for ever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => pending().await,
    }
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

/// How long a graceful shutdown waits for the MAGs to acknowledge its revocations
/// (RFC 5846 section 11's defaults: 1 s, then 2 s) and the home gateways to let go.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits for the next admin request, if there is an admin interface.
async fn admin_request(
    admin: Option<&mut tokio::sync::mpsc::Receiver<AdminRequest>>,
) -> Option<AdminRequest> {
    match admin {
        Some(admin) => admin.recv().await,
        None => pending().await,
    }
}

/// Runs until SIGINT or SIGTERM (a graceful shutdown: every MAG's bindings revoked,
/// RFC 5846), or a second one (at once). `restored` is the state file and what it said
/// the previous run left (the `state` module).
pub async fn run(
    mut lma: Lma,
    settings: &Settings,
    pcap: Option<&Path>,
    restored: Option<(PathBuf, Restored)>,
) -> Result<()> {
    let mh = MobilitySockets::open(settings)?;
    let mut out = Vec::new();
    let mut state = match restored {
        Some((path, restored)) => {
            let (held, bindings) = (restored.quarantined.len(), restored.bindings.len());
            lma.keep_journal();
            lma.restore(restored, Instant::now(), &mut out);
            let records: Vec<JournalRecord> = out
                .iter()
                .filter_map(|o| match o {
                    Output::Journal(r) => Some(r.clone()),
                    _ => None,
                })
                .collect();
            out.retain(|o| !matches!(o, Output::Journal(_)));
            let file = StateFile::create(&path, &records)
                .with_context(|| format!("writing the state file {}", path.display()))?;
            tracing::info!(
                state_file = %path.display(),
                bindings_before = bindings,
                held_back_before = held,
                held_back = lma.held_back(),
                "restored"
            );
            Some(file)
        }
        None => None,
    };
    let (admin_local, mut admin) = match settings.admin_listen {
        Some(listen) => {
            let (local, requests) = pmip_node::admin::serve(listen)
                .await
                .with_context(|| format!("binding the admin interface {listen} (admin_listen)"))?;
            (Some(local), Some(requests))
        }
        None => (None, None),
    };
    let mut shutdown: Option<tokio::time::Instant> = None;
    // What the gateway held when it was told to stop (the `lma stopped` line reports it;
    // the revocations then end it).
    let mut held_at_stop: Option<(usize, (usize, usize))> = None;
    let udp_port = settings
        .listen_v4
        .map_or(pmip_common::mh::MH_UDP_PORT, |a| a.port());
    let mut data = DataPath::open(settings)?;
    let mut recorder = Recorder::open(pcap, udp_port)?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;

    let chaining = settings.chaining.as_ref();
    tracing::info!(
        listen_v4 = ?settings.listen_v4,
        listen_v6 = ?settings.listen_v6,
        ipv4_pool = ?settings.core.ipv4_pool,
        ipv6_pool = ?settings.core.ipv6_pool,
        restart_counter = settings.core.restart_counter,
        admin = ?admin_local,
        chaining_to = ?chaining.map(|c| &c.home_gateways),
        chaining_local_v4 = ?chaining.and_then(|c| c.local_v4),
        "lma listening"
    );

    let mut mh_buffer = vec![0u8; PACKET_BUFFER];
    let mut gre4_buffer = vec![0u8; PACKET_BUFFER];
    let mut gre6_buffer = vec![0u8; PACKET_BUFFER];
    let mut tun_buffer = vec![0u8; PACKET_BUFFER];
    let mut stats_tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut rejects = RejectLog::new(settings.reject_log_interval, DEFAULT_MAX_SOURCES);
    let mut summaries = Vec::new();
    loop {
        let sleep = sleep_until(lma.poll_timeout());
        let shutdown_done = async {
            match shutdown {
                Some(at) => tokio::time::sleep_until(at).await,
                None => pending().await,
            }
        };
        tokio::select! {
            // What the restoration sent before the first event.
            _ = std::future::ready(()), if !out.is_empty() => {}
            _ = interrupt.recv() => {
                if shutdown.is_some() { tracing::info!("SIGINT again: stopping now"); break; }
                tracing::info!("SIGINT: shutting down, revoking every binding");
                shutdown = Some(tokio::time::Instant::now() + SHUTDOWN_GRACE);
                held_at_stop = Some((lma.cache().len(), lma.chain_counts()));
                let _ = lma.revoke_bindings(RevokeTarget::All, Instant::now(), &mut out);
            }
            _ = terminate.recv() => {
                if shutdown.is_some() { tracing::info!("SIGTERM again: stopping now"); break; }
                tracing::info!("SIGTERM: shutting down, revoking every binding");
                shutdown = Some(tokio::time::Instant::now() + SHUTDOWN_GRACE);
                held_at_stop = Some((lma.cache().len(), lma.chain_counts()));
                let _ = lma.revoke_bindings(RevokeTarget::All, Instant::now(), &mut out);
            }
            _ = shutdown_done => {
                tracing::info!(
                    outstanding = lma.revocations_outstanding(),
                    "shutdown: stopped waiting for the revocations"
                );
                break;
            }
            Some(request) = admin_request(admin.as_mut()) => {
                tracing::info!(method = %request.method, path = %request.path, "admin request");
                lma::admin::handle(&mut lma, request, Instant::now(), &mut out);
            }
            received = mh.recv(&mut mh_buffer) => match received {
                MhReceived::Message(from, len) => {
                    let bytes = &mh_buffer[..len.min(mh_buffer.len())];
                    recorder.record(from, bytes, true);
                    lma.handle(Input::Mobility { from, bytes }, Instant::now(), &mut out);
                }
                MhReceived::Ignored(other) => {
                    tracing::debug!(%other, "datagram from an address of the other family ignored")
                }
                MhReceived::Failed(what, error) => tracing::warn!(%error, "{what}"),
            },
            _ = sleep => lma.handle(Input::Timeout, Instant::now(), &mut out),
            _ = sleep_until(rejects.poll_timeout()) => {
                rejects.handle_timeout(Instant::now(), &mut summaries);
                summaries.drain(..).for_each(|s| log_rejects(&s));
            }
            _ = stats_tick.tick(), if data.is_some() => {
                if let Some(data) = data.as_mut() {
                    data.log_stats();
                }
            }
            (index, received) = receive_gre(data.as_ref().map(|d| &d.gre4), &mut gre4_buffer) => {
                if let Some(data) = data.as_mut() {
                    data.on_gre(received).await;
                    data.drain_gre(true, index, &mut gre4_buffer).await;
                }
            }
            (index, received) = receive_gre(data.as_ref().map(|d| &d.gre6), &mut gre6_buffer) => {
                if let Some(data) = data.as_mut() {
                    data.on_gre(received).await;
                    data.drain_gre(false, index, &mut gre6_buffer).await;
                }
            }
            read = read_tun(data.as_ref().and_then(|d| d.tun.as_ref()), &mut tun_buffer) => {
                if let Some(data) = data.as_mut() {
                    data.on_tun(read, &mut tun_buffer).await;
                }
            }
        }
        for output in out.drain(..) {
            if let Some(data) = data.as_mut() {
                data.apply(&output);
            }
            match output {
                Output::Send { to, bytes } => {
                    recorder.record(to, &bytes, false);
                    if let Err(error) = mh.send(to, &bytes).await {
                        tracing::warn!(%error, mag = %to, "send failed");
                    }
                }
                Output::Icmpv6 { from, to, message } => {
                    recorder.record_icmp6(from, to, &message);
                    if let Err(error) = mh.send_icmp6(to, &message).await {
                        tracing::warn!(%error, %to, "ICMPv6 send failed");
                    }
                }
                Output::Report(report) if report.outcome == Outcome::Rejected => {
                    let status = u8::from(report.status);
                    if rejects.record(report.mag.ip(), status, Instant::now()) == Verdict::LogNow {
                        log_report(&report);
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
                        ChainDownReason::Revoked => "chained binding down: revoked",
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
                    DownReason::Expired | DownReason::Revoked | DownReason::MagRestarted => {
                        tracing::info!(
                            id = %binding.id,
                            mag = %binding.mag,
                            ipv4 = ?binding.addresses.ipv4_home_address,
                            prefix = ?binding.addresses.home_network_prefix,
                            "{}",
                            match reason {
                                DownReason::Expired => "binding expired",
                                DownReason::Revoked => "binding revoked",
                                _ => "binding removed: its MAG restarted",
                            }
                        )
                    }
                    DownReason::Deregistered => tracing::debug!(id = %binding.id, "binding down"),
                },
                Output::Revocation(r) => tracing::info!(
                    mag = %r.mag,
                    sequence = r.sequence,
                    mn_id = r.mn_id.as_deref().unwrap_or(""),
                    apn = r.apn.as_deref().unwrap_or(""),
                    event = ?r.event,
                    "binding revocation"
                ),
                Output::Peer(report) => tracing::info!(
                    peer = %report.peer,
                    event = ?report.event,
                    "peer"
                ),
                Output::Journal(record) => {
                    if let Some(state) = state.as_mut() {
                        state.append(&record);
                    }
                }
                Output::Limits(report) => {
                    for (mag, refused) in &report.refusals {
                        tracing::warn!(
                            %mag,
                            interval_secs = report.interval.as_secs_f64(),
                            cache_full = refused.capacity,
                            share = refused.share,
                            rate = refused.rate,
                            "PBUs refused by mag_limits"
                        );
                    }
                }
            }
        }
        recorder.flush();
        if let Some(state) = state.as_mut() {
            state.flush();
            if let Some(error) = state.failed.take() {
                tracing::warn!(%error, file = %state.path().display(), "writing the state file");
            }
        }
        if shutdown.is_some()
            && lma.revocations_outstanding() == 0
            && lma.chain_home_registrations() == 0
        {
            tracing::info!("shutdown: every revocation answered");
            break;
        }
    }
    if let Some(data) = data.as_mut() {
        data.log_stats();
    }
    let stats = lma.stats();
    let (bindings, (chained, held)) =
        held_at_stop.unwrap_or((lma.cache().len(), lma.chain_counts()));
    tracing::info!(
        bindings,
        chained,
        held,
        revoked_left = lma.cache().len(),
        ?stats,
        "lma stopped"
    );
    recorder.flush();
    Ok(())
}
