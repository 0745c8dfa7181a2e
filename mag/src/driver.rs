//! The tokio driver of the ePDG: it binds UDP 500/4500 for IKE, a UDP socket (and,
//! with `mh_local_v6`, a raw IPv6 socket) toward the LMAs, the raw GRE sockets of the
//! data plane, and opens the Diameter connection to the AAA when the core asks. Socket
//! readers feed one task through a channel; that task hands every datagram and byte to
//! the sans-IO core ([`crate::epdg::Epdg`]), carries out its outputs, sleeps until its
//! `poll_timeout()`, and writes the pcap, the keylog, the status file and the log lines
//! from the core's reports. The ESP <-> GRE data plane ([`DataPlane`]) is driven here,
//! with the sessions the core installs and removes.

use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use pmip_common::esp::UdpEncapsulated;
use pmip_common::ike::auth::Signer;
use pmip_common::ike::endpoint::Transmit;
use pmip_common::mh::{mobility_header_checksum, ChecksumContext};
use pmip_node::pcap::PcapWriter;
use rand::rngs::OsRng;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::attach::Outcome;
use crate::config::Config;
use crate::dataplane::{Counters, DataPlane};
use crate::epdg::{self, EpdgConfig, Input, Output, Report};

const TCP_SYN: u8 = 1;
const TCP_ACK: u8 = 2;
const TCP_PSH: u8 = 4;
const TCP_PSH_ACK: u8 = TCP_PSH | TCP_ACK;

/// What the socket tasks tell the main loop.
#[derive(Debug)]
enum Event {
    Ike {
        data: Vec<u8>,
        from: SocketAddr,
        natt: bool,
    },
    Mh {
        data: Vec<u8>,
        from: SocketAddr,
    },
    /// A GRE packet (outer IPv4 header removed) from an LMA.
    Gre {
        data: Vec<u8>,
        from: IpAddr,
    },
    /// Diameter connection `conn` (the driver's count of connects) is up, failed, has
    /// bytes, or is closed; events of an older connection are ignored.
    DiameterUp {
        conn: u64,
        writer: OwnedWriteHalf,
    },
    DiameterConnectFailed {
        conn: u64,
        error: String,
    },
    DiameterBytes {
        conn: u64,
        bytes: Vec<u8>,
    },
    DiameterDown {
        conn: u64,
    },
}

/// The status file is rewritten at most this often, and never more often than 20 times
/// the last rewrite took (at most 5% of the time): a rewrite serialises every UE, so
/// doing it after every event made an attach storm quadratic.
const STATUS_INTERVAL: Duration = Duration::from_millis(100);

/// The status file: the core's summary and the data plane's.
#[derive(Serialize)]
struct StatusFile {
    #[serde(flatten)]
    core: epdg::Status,
    data_plane: DataPlaneStatus,
}

#[derive(Serialize)]
struct DataPlaneStatus {
    enabled: bool,
    sessions: usize,
    counters: Counters,
}

/// The open Diameter connection.
struct DiameterConnection {
    writer: OwnedWriteHalf,
    /// Our end, for the pcap.
    local: Option<SocketAddr>,
}

/// The ePDG process: sockets around the sans-IO core.
pub struct Epdg {
    config: Config,
    core: epdg::Epdg,
    ike500: Arc<UdpSocket>,
    ike4500: Arc<UdpSocket>,
    mh: Arc<UdpSocket>,
    /// The raw Mobility Header socket for IPv6 transport, and our address on it.
    mh6: Option<(Arc<socket2::Socket>, std::net::Ipv6Addr)>,
    /// The data plane and its raw IPv4 GRE socket (None: data plane off).
    dataplane: DataPlane,
    gre4: Option<Arc<socket2::Socket>>,
    /// The raw IPv6 GRE socket at `mh_local_v6`, for LMAs named by IPv6 address.
    gre6: Option<Arc<socket2::Socket>>,
    /// The counters last logged, and when (at most one log line a second).
    logged_counters: (Counters, Instant),
    local_500: SocketAddr,
    local_4500: SocketAddr,
    local_mh: SocketAddr,
    pcap: Option<PcapWriter>,
    keylog: Option<File>,
    rng: OsRng,
    /// The current Diameter connection's number, and the connection once it is up.
    diameter_conn: u64,
    diameter: Option<DiameterConnection>,
    /// The next TCP sequence numbers (ours, the AAA's) of the segments the pcap is given.
    tcp_seq: (u32, u32),
    last_status: Option<String>,
    /// When the status file was last rewritten, how long that took, and when the next
    /// rewrite is due.
    status_written_at: Option<Instant>,
    status_cost: Duration,
    status_due: Option<Instant>,
    tx: mpsc::Sender<Event>,
    rx: Option<mpsc::Receiver<Event>>,
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The ePDG's certificate and key: from files, or a lab certificate made now.
fn signer(config: &Config) -> Result<Arc<dyn Signer>> {
    use pmip_common::ike::auth::EcdsaP256Signer;
    let (key, cert) = match (&config.private_key, &config.certificate) {
        (Some(k), Some(c)) => (read_file(k)?, read_file(c)?),
        _ => {
            let generated = rcgen::generate_simple_self_signed(vec![config.ike_identity.clone()])
                .context("generating a lab certificate")?;
            (
                generated.signing_key.serialize_der(),
                generated.cert.der().to_vec(),
            )
        }
    };
    let signer = EcdsaP256Signer::from_pkcs8(&key, cert)
        .map_err(|e| anyhow::anyhow!("loading the ePDG key: {e}"))?;
    info!(
        public_key = hex::encode(signer.public_key()),
        generated = config.certificate.is_none(),
        "ePDG certificate key (pin it as epdg_public_key in ue.toml)"
    );
    Ok(Arc::new(signer))
}

impl Epdg {
    /// Binds every socket and prepares the core.
    pub async fn bind(config: Config) -> Result<Epdg> {
        let ike500 = UdpSocket::bind(config.ike_listen)
            .await
            .with_context(|| format!("binding IKE UDP {}", config.ike_listen))?;
        let ike4500 = UdpSocket::bind(config.natt_listen)
            .await
            .with_context(|| format!("binding IKE UDP {}", config.natt_listen))?;
        let mh = UdpSocket::bind(SocketAddr::new(config.mh_local.into(), 0))
            .await
            .with_context(|| format!("binding the MH socket at {}", config.mh_local))?;
        let mh6 = match config.mh_local_v6 {
            Some(a) => Some((Arc::new(bind_raw_mh(a)?), a)),
            None => None,
        };
        let gre4 = if config.data_plane {
            match bind_raw_gre(config.mh_local) {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    error!(
                        "DATA PLANE DISABLED: {e:#}; UEs will attach but their traffic is dropped \
                         (run as root or with CAP_NET_RAW, or set data_plane = false)"
                    );
                    None
                }
            }
        } else {
            info!("data plane off (data_plane = false)");
            None
        };
        let gre6 = match (gre4.is_some(), config.mh_local_v6) {
            (true, Some(address)) => match bind_raw_gre6(address) {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    error!("DATA PLANE toward IPv6 LMAs DISABLED: {e:#}");
                    None
                }
            },
            _ => None,
        };
        let local_500 = ike500.local_addr()?;
        let local_4500 = ike4500.local_addr()?;
        let local_mh = mh.local_addr()?;
        let mut core_config = EpdgConfig::from_config(&config)?;
        core_config.ike.signer = Some(signer(&config)?);
        let mut rng = OsRng;
        let core = epdg::Epdg::new(core_config, Instant::now(), SystemTime::now(), &mut rng);
        let pcap = match &config.pcap {
            Some(p) => {
                Some(PcapWriter::create(p).with_context(|| format!("creating {}", p.display()))?)
            }
            None => None,
        };
        let keylog = match &config.keylog {
            Some(p) => Some(File::create(p).with_context(|| format!("creating {}", p.display()))?),
            None => None,
        };
        let (tx, rx) = mpsc::channel(1024);
        Ok(Epdg {
            core,
            ike500: Arc::new(ike500),
            ike4500: Arc::new(ike4500),
            mh: Arc::new(mh),
            mh6,
            dataplane: DataPlane::new(),
            gre4,
            gre6,
            logged_counters: (Default::default(), Instant::now()),
            local_500,
            local_4500,
            local_mh,
            pcap,
            keylog,
            rng,
            diameter_conn: 0,
            diameter: None,
            tcp_seq: (1, 1),
            last_status: None,
            status_written_at: None,
            status_cost: Duration::ZERO,
            status_due: None,
            tx,
            rx: Some(rx),
            config,
        })
    }

    /// Runs until `stop` completes, then detaches every UE (the core's shutdown: every
    /// IKE SA deleted, bindings de-registered, STR, DPR) and returns.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) -> Result<()> {
        tokio::pin!(stop);
        let mut rx = self.rx.take().context("run called twice")?;
        spawn_udp_reader(Arc::clone(&self.ike500), self.tx.clone(), |data, from| {
            Event::Ike {
                data,
                from,
                natt: false,
            }
        });
        spawn_udp_reader(Arc::clone(&self.ike4500), self.tx.clone(), |data, from| {
            Event::Ike {
                data,
                from,
                natt: true,
            }
        });
        spawn_udp_reader(Arc::clone(&self.mh), self.tx.clone(), |data, from| {
            Event::Mh { data, from }
        });
        if let Some((socket, _)) = &self.mh6 {
            spawn_raw_reader(Arc::clone(socket), self.tx.clone())?;
        }
        if let Some(socket) = &self.gre4 {
            spawn_gre_reader(Arc::clone(socket), self.tx.clone())?;
        }
        if let Some(socket) = &self.gre6 {
            spawn_gre_reader(Arc::clone(socket), self.tx.clone())?;
        }
        // The core's first deadline is the connect to the AAA.
        self.feed(Input::Timeout).await;
        info!(
            ike = %self.local_500,
            natt = %self.local_4500,
            mh = %self.local_mh,
            aaa = %self.config.aaa,
            "mag listening"
        );
        self.write_status();
        let mut stopping = false;
        loop {
            let deadline = [self.core.poll_timeout(), self.status_due]
                .into_iter()
                .flatten()
                .min();
            let sleep = tokio::time::sleep_until(
                deadline
                    .map(tokio::time::Instant::from_std)
                    .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600)),
            );
            let stopped = tokio::select! {
                event = rx.recv() => match event {
                    Some(event) => self.on_event(event).await,
                    None => return Ok(()),
                },
                _ = sleep => self.on_timeout().await,
                _ = &mut stop, if !stopping => {
                    stopping = true;
                    self.feed(Input::Shutdown).await
                }
            };
            if stopped {
                return Ok(());
            }
            self.log_counters();
            if let Some(p) = self.pcap.as_mut() {
                let _ = p.flush();
            }
            self.status_changed();
        }
    }

    /// Hands one input to the core and carries out what it asks. True once the core
    /// has stopped.
    async fn feed(&mut self, input: Input<'_>) -> bool {
        let mut out = Vec::new();
        self.core
            .handle(input, Instant::now(), &mut self.rng, &mut out);
        self.carry_out(out).await
    }

    async fn on_timeout(&mut self) -> bool {
        let now = Instant::now();
        if self.status_due.is_some_and(|t| t <= now) {
            self.status_changed();
        }
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            return self.feed(Input::Timeout).await;
        }
        false
    }

    async fn on_event(&mut self, event: Event) -> bool {
        match event {
            Event::Ike { data, from, natt } => self.on_ike(&data, from, natt).await,
            Event::Mh { data, from } => {
                self.record_mh(from, &data);
                self.feed(Input::Mobility { from, bytes: &data }).await
            }
            Event::Gre { data, from } => {
                self.on_gre(&data, from).await;
                false
            }
            Event::DiameterUp { conn, writer } if conn == self.diameter_conn => {
                let local = writer.local_addr().ok();
                self.diameter = Some(DiameterConnection { writer, local });
                self.record_handshake();
                info!(aaa = %self.config.aaa, "connected to the AAA");
                self.feed(Input::DiameterConnected).await
            }
            Event::DiameterConnectFailed { conn, error } if conn == self.diameter_conn => {
                warn!("cannot reach the AAA: {error}; retrying in 2 s");
                self.feed(Input::DiameterConnectFailed).await
            }
            Event::DiameterBytes { conn, bytes } if conn == self.diameter_conn => {
                self.record_tcp(false, TCP_PSH_ACK, &bytes);
                self.feed(Input::DiameterBytes(&bytes)).await
            }
            Event::DiameterDown { conn } if conn == self.diameter_conn => {
                self.diameter = None;
                self.feed(Input::DiameterClosed).await
            }
            // An older connection's: it was closed on the core's word.
            Event::DiameterUp { .. }
            | Event::DiameterConnectFailed { .. }
            | Event::DiameterBytes { .. }
            | Event::DiameterDown { .. } => false,
        }
    }

    async fn on_ike(&mut self, data: &[u8], from: SocketAddr, natt: bool) -> bool {
        let mut ike = data;
        if natt {
            // RFC 3948: IKE after a four-octet non-ESP marker; anything else is ESP
            // (the data plane) or a NAT keepalive.
            match UdpEncapsulated::classify(data) {
                Ok(UdpEncapsulated::Ike(_)) => ike = &data[4..],
                Ok(UdpEncapsulated::Esp(_)) => {
                    self.on_esp(data, from);
                    return false;
                }
                Ok(UdpEncapsulated::NatKeepalive) | Err(_) => return false,
            }
        }
        self.record_ike(from, natt, false, ike);
        let local = if natt {
            self.local_4500
        } else {
            self.local_500
        };
        self.feed(Input::Ike {
            remote: from,
            local,
            natt,
            bytes: ike,
        })
        .await
    }

    /// Carries out the core's outputs in order. True once the core has stopped.
    async fn carry_out(&mut self, out: Vec<Output>) -> bool {
        let mut stopped = false;
        for o in out {
            match o {
                Output::Ike(t) => self.send_ike(t).await,
                Output::Mobility { to, bytes } => self.send_mh(to, &bytes).await,
                Output::DiameterConnect => self.connect(),
                Output::Diameter(bytes) => {
                    self.record_tcp(true, TCP_PSH_ACK, &bytes);
                    match self.diameter.as_mut() {
                        Some(c) => {
                            if let Err(e) = c.writer.write_all(&bytes).await {
                                warn!("writing to the AAA: {e}");
                            }
                        }
                        None => debug!("no AAA connection: Diameter message not written"),
                    }
                }
                Output::DiameterClose => {
                    // Whatever the old connection still says is ignored.
                    self.diameter_conn += 1;
                    if let Some(mut c) = self.diameter.take() {
                        let _ = c.writer.shutdown().await;
                    }
                }
                Output::SessionUp {
                    ike_spi,
                    child,
                    session,
                } => {
                    if let Err(e) = self.dataplane.install(ike_spi, &child, session) {
                        warn!(
                            spi = format_args!("{ike_spi:016x}"),
                            "data plane session not installed: {e}"
                        );
                    }
                }
                Output::ChildSaRekeyed { ike_spi, child } => {
                    if let Err(e) = self.dataplane.rekey(ike_spi, &child) {
                        warn!(
                            spi = format_args!("{ike_spi:016x}"),
                            "rekeyed CHILD_SA not installed: {e}"
                        );
                    }
                }
                Output::ChildSaRetired {
                    ike_spi,
                    inbound_spi,
                } => self.dataplane.retire(ike_spi, inbound_spi),
                Output::SessionDown { ike_spi } => self.dataplane.remove(ike_spi),
                Output::Report(report) => stopped |= self.report(report),
            }
        }
        stopped
    }

    /// Logs one report of the core (and writes the keylog). True for `Stopped`.
    fn report(&mut self, report: Report) -> bool {
        let hex = |spi: u64| format!("{spi:016x}");
        match report {
            Report::IkeSaCreated { spi } => debug!(spi = hex(spi), "IKE SA created"),
            Report::IkeSaKeys { spi: _, record } => {
                if let Some(k) = self.keylog.as_mut() {
                    let _ = writeln!(k, "{record}");
                    let _ = k.flush();
                }
            }
            Report::ChildSaRekeyed { spi, old, new } => info!(
                spi = hex(spi),
                old = format_args!("{old:08x}"),
                new = format_args!("{new:08x}"),
                "CHILD_SA rekeyed"
            ),
            Report::IkeDropped { spi, reason } => {
                debug!(
                    spi = spi.map(hex).unwrap_or_default(),
                    ?reason,
                    "IKE datagram dropped"
                )
            }
            Report::DiameterOpen { applications } => info!(?applications, "Diameter peer open"),
            Report::DiameterDown(reason) => warn!(?reason, "Diameter peer down"),
            Report::DiameterStreamBroken(e) => {
                warn!("bad Diameter stream from the AAA: {e}; reconnecting")
            }
            Report::DiameterRequestRefused { command, session } => {
                warn!(command, session, "request from the AAA not supported")
            }
            Report::DiameterEvent(e) => debug!(?e, "Diameter peer event"),
            Report::SwmAnswerDropped { reason } => debug!("SWm answer dropped: {reason}"),
            Report::StrNotSent { session } => warn!(session, "STR not sent: AAA unreachable"),
            Report::PbuSent {
                to,
                sequence,
                lifetime,
            } => debug!(%to, seq = sequence, lifetime = lifetime.0, "PBU"),
            Report::PbaReceived {
                from,
                sequence,
                status,
            } => debug!(%from, seq = sequence, ?status, "PBA"),
            Report::MobilityIgnored { from, message } => {
                debug!(%from, message, "Mobility Header message ignored")
            }
            Report::MobilityDropped { from, reason } => warn!(%from, "{reason}"),
            Report::EapSuccessReleased { nai, apn } => {
                info!(nai, apn, "PBA accepted: releasing the EAP-Success")
            }
            Report::Attached {
                spi: _,
                info: a,
                attached,
            } => info!(
                nai = a.nai,
                apn = a.apn,
                lma = %a.lma,
                ipv4 = a.ipv4.map(|n| n.addr().to_string()).unwrap_or_default(),
                ipv6_prefix = a.ipv6_prefix.map(|n| n.to_string()).unwrap_or_default(),
                uplink_gre_key = a.uplink_gre_key.map(|k| k.0).unwrap_or_default(),
                downlink_gre_key = a.downlink_gre_key.0,
                attached,
                "UE attached"
            ),
            Report::NoChildSa { spi } => {
                warn!(spi = hex(spi), "attached without a CHILD_SA: no data plane")
            }
            Report::BindingHandedOver { key, old, new } => info!(
                %key,
                old = hex(old),
                new = hex(new),
                "binding handed over to the new IKE SA"
            ),
            Report::AttachEnded { spi, outcome } => match outcome {
                Outcome::Rejected { notify, reason } => {
                    warn!(spi = hex(spi), ?notify, "attach rejected: {reason}")
                }
                Outcome::Detached(r) => info!(spi = hex(spi), "UE detached: {r}"),
                Outcome::Abandoned(r) => info!(spi = hex(spi), "attach abandoned: {r}"),
            },
            Report::UeRemoved {
                spi,
                ike_sas,
                aaa_sessions,
                bindings,
            } => info!(
                spi = hex(spi),
                ike_sas, aaa_sessions, bindings, "UE state removed"
            ),
            Report::BindingRefreshed { key } => debug!(%key, "binding refreshed"),
            Report::BindingRemoved {
                key,
                acknowledged,
                bindings,
            } => info!(%key, acknowledged, bindings, "binding removed"),
            Report::ShuttingDown { ike_sas } => {
                info!(ike_sas, "shutting down: detaching every UE")
            }
            Report::Stopped { bindings } => {
                if let Some(p) = self.pcap.as_mut() {
                    let _ = p.flush();
                }
                self.write_status();
                info!(bindings, "mag stopped");
                return true;
            }
        }
        false
    }

    /// Rewrites the status file now, or at the end of [`STATUS_INTERVAL`] after the last
    /// rewrite (the main loop wakes for it).
    fn status_changed(&mut self) {
        if self.config.status_file.is_none() {
            return;
        }
        let now = Instant::now();
        let interval = STATUS_INTERVAL.max(self.status_cost * 20);
        match self.status_written_at {
            Some(at) if now < at + interval => {
                self.status_due.get_or_insert(at + interval);
            }
            _ => {
                self.status_due = None;
                self.status_written_at = Some(now);
                self.write_status();
                self.status_cost = now.elapsed();
            }
        }
    }

    /// Rewrites the status file when the state summary changed.
    fn write_status(&mut self) {
        let Some(path) = self.config.status_file.clone() else {
            return;
        };
        let status = StatusFile {
            core: self.core.status(),
            data_plane: DataPlaneStatus {
                enabled: self.gre4.is_some(),
                sessions: self.dataplane.len(),
                counters: self.dataplane.counters(),
            },
        };
        let text = match serde_json::to_string(&status) {
            Ok(t) => t,
            Err(e) => return warn!("serialising the status: {e}"),
        };
        if self.last_status.as_deref() == Some(text.as_str()) {
            return;
        }
        let tmp = path.with_extension("tmp");
        let written =
            std::fs::write(&tmp, format!("{text}\n")).and_then(|()| std::fs::rename(&tmp, &path));
        match written {
            Ok(()) => self.last_status = Some(text),
            Err(e) => warn!(path = %path.display(), "writing the status file: {e}"),
        }
    }

    /// Opens connection number `diameter_conn + 1` to the AAA on a task of its own,
    /// which then reads it.
    fn connect(&mut self) {
        self.diameter_conn += 1;
        self.diameter = None;
        let conn = self.diameter_conn;
        let aaa = self.config.aaa;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            match TcpStream::connect(aaa).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let (mut reader, writer) = stream.into_split();
                    if tx.send(Event::DiameterUp { conn, writer }).await.is_err() {
                        return;
                    }
                    let mut buf = vec![0u8; 65536];
                    loop {
                        match reader.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let bytes = buf[..n].to_vec();
                                if tx.send(Event::DiameterBytes { conn, bytes }).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    let _ = tx.send(Event::DiameterDown { conn }).await;
                }
                Err(e) => {
                    let error = format!("{aaa}: {e}");
                    let _ = tx.send(Event::DiameterConnectFailed { conn, error }).await;
                }
            }
        });
    }

    /// A synthetic three-way handshake, so Wireshark follows the Diameter stream.
    fn record_handshake(&mut self) {
        self.tcp_seq = (0, 0);
        self.record_tcp(true, TCP_SYN, &[]);
        self.record_tcp(false, TCP_SYN | TCP_ACK, &[]);
        self.record_tcp(true, TCP_ACK, &[]);
    }

    /// One TCP segment of the Diameter connection in the pcap.
    fn record_tcp(&mut self, outbound: bool, flags: u8, payload: &[u8]) {
        let local = self.diameter.as_ref().and_then(|c| c.local);
        let (Some(pcap), Some(local)) = (self.pcap.as_mut(), local) else {
            return;
        };
        let remote = self.config.aaa;
        let (src, dst, seq, ack) = if outbound {
            (local, remote, self.tcp_seq.0, self.tcp_seq.1)
        } else {
            (remote, local, self.tcp_seq.1, self.tcp_seq.0)
        };
        let builder = match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                etherparse::PacketBuilder::ipv4(s.octets(), d.octets(), 64)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                etherparse::PacketBuilder::ipv6(s.octets(), d.octets(), 64)
            }
            _ => return,
        };
        let mut builder = builder.tcp(src.port(), dst.port(), seq, 65535);
        if flags & TCP_SYN != 0 {
            builder = builder.syn();
        }
        if flags & TCP_ACK != 0 {
            builder = builder.ack(ack);
        }
        if flags & TCP_PSH != 0 {
            builder = builder.psh();
        }
        let mut packet = Vec::with_capacity(builder.size(payload.len()));
        if builder.write(&mut packet, payload).is_err() {
            return;
        }
        let _ = pcap.write_ip(SystemTime::now(), &packet);
        // A SYN takes one sequence number.
        let used = payload.len() as u32 + u32::from(flags & TCP_SYN != 0);
        if outbound {
            self.tcp_seq.0 = self.tcp_seq.0.wrapping_add(used);
        } else {
            self.tcp_seq.1 = self.tcp_seq.1.wrapping_add(used);
        }
    }

    fn record_ike(&mut self, peer: SocketAddr, natt: bool, outbound: bool, data: &[u8]) {
        let Some(p) = self.pcap.as_mut() else { return };
        let local = if natt {
            self.local_4500
        } else {
            self.local_500
        };
        let local = if local.ip().is_unspecified() {
            SocketAddr::new(peer.ip(), local.port())
        } else {
            local
        };
        let mut payload = Vec::with_capacity(data.len() + 4);
        if natt {
            payload.extend_from_slice(&[0, 0, 0, 0]);
        }
        payload.extend_from_slice(data);
        let (src, dst) = if outbound {
            (local, peer)
        } else {
            (peer, local)
        };
        if let Err(e) = p.write_udp(SystemTime::now(), src, dst, &payload) {
            debug!("pcap: {e}");
        }
    }

    /// An IKE datagram of the core, from the socket of its port.
    async fn send_ike(&mut self, t: Transmit) {
        self.record_ike(t.remote, t.natt, true, &t.bytes);
        let result = if t.natt {
            let mut d = Vec::with_capacity(t.bytes.len() + 4);
            d.extend_from_slice(&[0, 0, 0, 0]);
            d.extend_from_slice(&t.bytes);
            self.ike4500.send_to(&d, t.remote).await
        } else {
            self.ike500.send_to(&t.bytes, t.remote).await
        };
        if let Err(e) = result {
            warn!(to = %t.remote, "sending IKE: {e}");
        }
    }

    /// A Mobility Header message of the core: in UDP over IPv4, or on the raw IPv6
    /// socket (the kernel fills the checksum: IPV6_CHECKSUM).
    async fn send_mh(&mut self, to: SocketAddr, bytes: &[u8]) {
        let IpAddr::V6(destination) = to.ip() else {
            if let Some(p) = self.pcap.as_mut() {
                let _ = p.write_udp(SystemTime::now(), self.local_mh, to, bytes);
            }
            if let Err(e) = self.mh.send_to(bytes, to).await {
                warn!(%to, "sending PBU: {e}");
            }
            return;
        };
        let Some((socket, source)) = self.mh6.as_ref() else {
            warn!(%to, "no IPv6 transport to this LMA: set mh_local_v6");
            return;
        };
        let to = SocketAddr::new(to.ip(), 0);
        if let Err(e) = socket.send_to(bytes, &socket2::SockAddr::from(to)) {
            warn!(%to, "sending PBU: {e}");
        }
        if let Some(p) = self.pcap.as_mut() {
            // The copy for the pcap gets the checksum the kernel puts on the wire.
            let mut checked = bytes.to_vec();
            let context = ChecksumContext::Ipv6 {
                source: *source,
                destination,
            };
            if let (Some(sum), Some(field)) = (
                mobility_header_checksum(context, &checked),
                checked.get_mut(4..6),
            ) {
                field.copy_from_slice(&sum.to_be_bytes());
            }
            let _ = p.write_ipv6_mh(SystemTime::now(), *source, destination, &checked);
        }
    }

    /// A received Mobility Header message in the pcap.
    fn record_mh(&mut self, from: SocketAddr, data: &[u8]) {
        let Some(p) = self.pcap.as_mut() else { return };
        match from.ip() {
            IpAddr::V4(_) => {
                let _ = p.write_udp(SystemTime::now(), from, self.local_mh, data);
            }
            IpAddr::V6(source) => {
                if let Some((_, local)) = self.mh6.as_ref() {
                    let _ = p.write_ipv6_mh(SystemTime::now(), source, *local, data);
                }
            }
        }
    }

    /// Logs the data plane counters when they changed, at most once a second.
    fn log_counters(&mut self) {
        let c = self.dataplane.counters();
        let (last, at) = self.logged_counters;
        if c == last || at.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.logged_counters = (c, Instant::now());
        info!(
            uplink = c.uplink_packets,
            downlink = c.downlink_packets,
            dropped = c.dropped(),
            spoofed_source = c.drop_spoofed_source,
            unknown_spi = c.drop_unknown_spi,
            integrity = c.drop_integrity,
            replay = c.drop_replay,
            unknown_downlink_key = c.drop_unknown_downlink_key,
            wrong_lma = c.drop_wrong_lma,
            "data plane counters"
        );
    }

    /// Uplink: ESP from a UE on port 4500 -> GRE to its LMA.
    fn on_esp(&mut self, data: &[u8], from: SocketAddr) {
        if self.gre4.is_none() {
            return;
        }
        match self.dataplane.uplink(from, data) {
            Ok(p) => {
                let socket = if p.lma.is_ipv4() {
                    self.gre4.as_ref()
                } else {
                    self.gre6.as_ref()
                };
                let Some(socket) = socket else {
                    debug!(lma = %p.lma, "no GRE socket for this LMA's IP version: dropped");
                    return;
                };
                let to = socket2::SockAddr::from(SocketAddr::new(p.lma, 0));
                if let Err(e) = socket.send_to(p.gre, &to) {
                    debug!(lma = %p.lma, "sending GRE: {e}");
                }
            }
            Err(reason) => debug!(%from, ?reason, "uplink packet dropped"),
        }
    }

    /// Downlink: GRE from an LMA -> ESP to the UE.
    async fn on_gre(&mut self, data: &[u8], from: IpAddr) {
        match self.dataplane.downlink(from, data, &mut self.rng) {
            Ok(p) => {
                if let Err(e) = self.ike4500.send_to(p.esp, p.ue).await {
                    debug!(ue = %p.ue, "sending ESP: {e}");
                }
            }
            Err(reason) => debug!(%from, ?reason, "downlink packet dropped"),
        }
        for (ike_spi, inbound_spi) in self.dataplane.take_rekeys_due() {
            self.feed(Input::RekeyChildSa {
                ike_spi,
                inbound_spi,
            })
            .await;
        }
    }
}

fn spawn_udp_reader(
    socket: Arc<UdpSocket>,
    tx: mpsc::Sender<Event>,
    make: impl Fn(Vec<u8>, SocketAddr) -> Event + Send + 'static,
) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            match socket.recv_from(&mut buf).await {
                Ok((n, from)) => {
                    if tx.send(make(buf[..n].to_vec(), from)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    debug!("UDP receive: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    });
}

/// The raw IPv6 socket for the Mobility Header (next header 135) at `address`, with the
/// kernel computing and checking the checksum at offset 4 (RFC 6275 section 6.1.1).
fn bind_raw_mh(address: std::net::Ipv6Addr) -> Result<socket2::Socket> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    use std::os::fd::AsRawFd;
    let socket = Socket::new(
        Domain::IPV6,
        Type::RAW,
        Some(Protocol::from(i32::from(pmip_common::mh::IPPROTO_MH))),
    )
    .context("opening a raw IPv6 Mobility Header socket (needs root or CAP_NET_RAW)")?;
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
    socket
        .bind(&SockAddr::from(SocketAddr::new(address.into(), 0)))
        .with_context(|| format!("binding the raw Mobility Header socket to {address}"))?;
    Ok(socket)
}

/// The raw IPv4 socket for GRE (IP protocol 47) at `address`: the kernel adds the outer
/// IPv4 header on send and delivers it on receive.
fn bind_raw_gre(address: std::net::Ipv4Addr) -> Result<socket2::Socket> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(47)))
        .context("opening a raw IPv4 GRE socket (needs root or CAP_NET_RAW)")?;
    socket
        .bind(&SockAddr::from(SocketAddr::new(address.into(), 0)))
        .with_context(|| format!("binding the raw GRE socket to {address}"))?;
    Ok(socket)
}

/// The raw IPv6 socket for GRE (next header 47) at `address`; IPv6 raw sockets carry no
/// IPv6 header either way.
fn bind_raw_gre6(address: std::net::Ipv6Addr) -> Result<socket2::Socket> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(47)))
        .context("opening a raw IPv6 GRE socket (needs root or CAP_NET_RAW)")?;
    socket
        .bind(&SockAddr::from(SocketAddr::new(address.into(), 0)))
        .with_context(|| format!("binding the raw IPv6 GRE socket to {address}"))?;
    Ok(socket)
}

/// Reads a raw GRE socket on a thread of its own; strips the outer IPv4 header (an
/// IPv6 raw socket delivers the GRE packet alone).
fn spawn_gre_reader(socket: Arc<socket2::Socket>, tx: mpsc::Sender<Event>) -> Result<()> {
    std::thread::Builder::new()
        .name("gre4-reader".into())
        .spawn(move || {
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 65536];
            loop {
                match socket.recv_from(&mut buf) {
                    Ok((n, source)) => {
                        // SAFETY: recv_from initialised the first n bytes.
                        let packet: Vec<u8> = buf[..n]
                            .iter()
                            .map(|b| unsafe { b.assume_init() })
                            .collect();
                        if let Some(SocketAddr::V6(v6)) = source.as_socket() {
                            let from = IpAddr::V6(*v6.ip());
                            if tx.blocking_send(Event::Gre { data: packet, from }).is_err() {
                                return;
                            }
                            continue;
                        }
                        let Some(first) = packet.first() else {
                            continue;
                        };
                        let ihl = usize::from(first & 0x0f) * 4;
                        if first >> 4 != 4 || ihl < 20 || packet.len() < ihl {
                            continue;
                        }
                        let from = IpAddr::from([packet[12], packet[13], packet[14], packet[15]]);
                        let data = packet[ihl..].to_vec();
                        if tx.blocking_send(Event::Gre { data, from }).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        debug!("raw GRE receive: {e}");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        })
        .context("starting the raw GRE reader")?;
    Ok(())
}

/// Reads the raw socket on a thread of its own (blocking) and feeds the main loop.
fn spawn_raw_reader(socket: Arc<socket2::Socket>, tx: mpsc::Sender<Event>) -> Result<()> {
    std::thread::Builder::new()
        .name("mh6-reader".into())
        .spawn(move || {
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 65536];
            loop {
                match socket.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        // SAFETY: recv_from initialised the first n bytes.
                        let data: Vec<u8> = buf[..n]
                            .iter()
                            .map(|b| unsafe { b.assume_init() })
                            .collect();
                        let Some(from) = from.as_socket() else {
                            continue;
                        };
                        if tx.blocking_send(Event::Mh { data, from }).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        debug!("raw MH receive: {e}");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        })
        .context("starting the raw MH reader")?;
    Ok(())
}
