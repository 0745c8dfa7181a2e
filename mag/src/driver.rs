//! The tokio driver of the ePDG around the sans-IO core ([`crate::epdg::Epdg`]), one task
//! and one loop, like the LMA's: IKE on UDP 500 and on UDP 4500 (after the non-ESP
//! marker; ESP-in-UDP on the same port goes to the data plane, RFC 3948 section 2.2), the
//! Mobility Header toward the LMAs (UDP over IPv4, RFC 5844; with `mh_local_v6` the raw
//! IPv6 socket for next header 135, whose checksum the kernel fills and checks, RFC 6275
//! section 6.1.1), the raw GRE sockets of the data plane for both families (RFC 2890),
//! the Diameter connection to the AAA when the core asks for it (RFC 6733 section 2.1),
//! the core's timer and the stop signal. Receive into a buffer the loop keeps (the core
//! gets a slice), hand it to the core, carry out its outputs; after a wake-up, what else
//! is already waiting is handled too before the loop sleeps again: one datagram from
//! each socket in turn, up to [`BURST`] in all, so that no socket waits behind another's
//! queue (an LMA's PBA behind an attach storm's IKE, each costing a Diffie-Hellman or a
//! signature). Every socket comes from `pmip_node`, received without `unsafe`.
//!
//! The driver also writes what the core reports: the log lines, the `--pcap` recording
//! (IKE with its non-ESP marker on 4500, the Mobility Header, the Diameter stream as
//! synthetic TCP through [`TcpCapture`]), the keylog and the status file. The ESP <-> GRE
//! data plane ([`DataPlane`], sans-IO) gets the sessions the core installs and removes.

use std::fs::File;
use std::future::{pending, Future};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use pmip_common::esp::UdpEncapsulated;
use pmip_common::ike::auth::Signer;
use pmip_common::ike::endpoint::Transmit;
use pmip_common::mh::{mobility_header_checksum, ChecksumContext};
use pmip_node::gre::{GreSockets, ReceiveError};
use pmip_node::pcap::{PcapWriter, TcpCapture};
use pmip_node::socket::{self, AsyncRawSocket, RawSocket};
use rand::rngs::OsRng;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tracing::{debug, error, info, warn};

use crate::attach::Outcome;
use crate::config::Config;
use crate::dataplane::{Counters, DataPlane};
use crate::epdg::{self, EpdgConfig, Input, Output, Report};

/// Datagrams (and Diameter reads) handled after a wake-up, from every socket in turn,
/// before the loop looks at its timer and sleeps again.
pub const BURST: usize = 64;

/// The largest datagram read (an IP packet without jumbograms).
const PACKET_BUFFER: usize = 65_536;

/// The receive buffer asked of each UDP socket and of the raw Mobility Header socket
/// (`SO_RCVBUF`, or `SO_RCVBUFFORCE` when privileged): with one task reading every
/// socket, the kernel's queue holds a burst (an attach storm's IKE, a UE's ESP on 4500)
/// while the core works. The LMA's default is the same.
const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// The non-ESP marker before IKE on port 4500 (RFC 3948 section 2.2).
const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// The status file is rewritten at most this often, and never more often than 20 times
/// the last rewrite took (at most 5% of the time): a rewrite serialises every UE, so
/// doing it after every event made an attach storm quadratic.
const STATUS_INTERVAL: Duration = Duration::from_millis(100);

/// The data plane counters are logged at most this often, when they changed.
const COUNTER_INTERVAL: Duration = Duration::from_secs(1);

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

/// The sockets the loop reads; sending needs only a shared borrow of them.
struct Sockets {
    ike500: UdpSocket,
    ike4500: UdpSocket,
    local_500: SocketAddr,
    local_4500: SocketAddr,
    /// The Mobility Header over IPv4 in UDP (RFC 5844), and its address.
    mh: UdpSocket,
    local_mh: SocketAddr,
    /// The raw IPv6 Mobility Header socket at `mh_local_v6` (kernel checksum).
    mh6: Option<AsyncRawSocket>,
    /// The raw GRE sockets at `mh_local` and `mh_local_v6`; none when the data plane is
    /// off (a receive on an empty set pends for ever).
    gre4: GreSockets,
    gre6: GreSockets,
}

/// Which IKE port a datagram came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IkePort {
    /// UDP 500.
    Ike,
    /// UDP 4500: IKE after the non-ESP marker, or ESP.
    NatT,
}

/// Where the loop receives from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Ike,
    NatT,
    Mh,
    Mh6,
    Gre4,
    Gre6,
    Diameter,
}

impl Source {
    const ALL: [Source; 7] = [
        Source::Ike,
        Source::NatT,
        Source::Mh,
        Source::Mh6,
        Source::Gre4,
        Source::Gre6,
        Source::Diameter,
    ];
}

impl Sockets {
    fn ike(&self, port: IkePort) -> &UdpSocket {
        match port {
            IkePort::Ike => &self.ike500,
            IkePort::NatT => &self.ike4500,
        }
    }

    fn ike_local(&self, port: IkePort) -> SocketAddr {
        match port {
            IkePort::Ike => self.local_500,
            IkePort::NatT => self.local_4500,
        }
    }

    /// The raw MH socket's address (unspecified without one).
    fn local_mh6(&self) -> Ipv6Addr {
        match self.mh6.as_ref().map(AsyncRawSocket::local) {
            Some(IpAddr::V6(a)) => a,
            _ => Ipv6Addr::UNSPECIFIED,
        }
    }

    /// The GRE socket toward an LMA at `lma`: the one of its family.
    fn gre_toward(&self, lma: IpAddr) -> Option<&pmip_node::gre::GreSocket> {
        let (sockets, local) = match lma {
            IpAddr::V4(_) => (&self.gre4, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            IpAddr::V6(_) => (&self.gre6, IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        };
        sockets.get_or_first(local)
    }
}

/// Receives one packet on the raw IPv6 Mobility Header socket, if there is one; its
/// sender as a socket address of port 0, like a UDP one.
async fn recv_mh6(
    socket: Option<&AsyncRawSocket>,
    buffer: &mut [u8],
) -> io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => {
            let (len, from) = s.recv_from(buffer).await?;
            Ok((len, SocketAddr::new(from, 0)))
        }
        None => pending().await,
    }
}

/// Sleeps until `deadline`, or for ever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => pending().await,
    }
}

/// The connection to the AAA.
enum Diameter {
    /// None, and none asked for.
    Idle,
    /// Being opened ([`Output::DiameterConnect`]).
    Connecting(Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>),
    /// Open; our end, for the pcap.
    Open {
        stream: TcpStream,
        local: Option<SocketAddr>,
    },
}

/// What the connection to the AAA did.
enum DiameterEvent {
    Connected(io::Result<TcpStream>),
    /// Octets read into the buffer (0: the AAA closed the connection).
    Read(io::Result<usize>),
}

impl Diameter {
    /// Waits for the connect to finish or for bytes from the AAA (pends for ever when
    /// idle). Cancel-safe: the connect and the read survive the loop's other branches.
    async fn next(&mut self, buffer: &mut [u8]) -> DiameterEvent {
        match self {
            Diameter::Idle => pending().await,
            Diameter::Connecting(connect) => DiameterEvent::Connected(connect.as_mut().await),
            Diameter::Open { stream, .. } => DiameterEvent::Read(stream.read(buffer).await),
        }
    }
}

/// Opens the TCP connection to the AAA.
async fn connect(aaa: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(aaa).await?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// The `--pcap` recording: the signaling the ePDG sends and receives.
struct Capture {
    pcap: Option<PcapWriter>,
    /// The Diameter connection's synthetic TCP segments.
    tcp: TcpCapture,
    /// The AAA's address: the server end of the Diameter connection.
    aaa: SocketAddr,
    /// A copy of an outgoing IPv6 Mobility Header message, checksum filled.
    scratch: Vec<u8>,
}

impl Capture {
    /// One UDP datagram as it is on the wire (IKE on 4500 with its non-ESP marker). Our
    /// end bound to an unspecified address is shown with the peer's.
    fn udp(&mut self, ours: SocketAddr, peer: SocketAddr, outbound: bool, datagram: &[u8]) {
        let Some(pcap) = self.pcap.as_mut() else {
            return;
        };
        let ours = if ours.ip().is_unspecified() {
            SocketAddr::new(peer.ip(), ours.port())
        } else {
            ours
        };
        let (source, destination) = if outbound { (ours, peer) } else { (peer, ours) };
        if let Err(e) = pcap.write_udp(SystemTime::now(), source, destination, datagram) {
            debug!("pcap: {e}");
        }
    }

    /// A Mobility Header message directly in IPv6. One we send gets, in the copy
    /// recorded, the checksum the kernel puts on the wire (IPV6_CHECKSUM).
    fn mh6(&mut self, source: Ipv6Addr, destination: Ipv6Addr, outbound: bool, message: &[u8]) {
        let Some(pcap) = self.pcap.as_mut() else {
            return;
        };
        let mut recorded = message;
        if outbound {
            self.scratch.clear();
            self.scratch.extend_from_slice(message);
            let context = ChecksumContext::Ipv6 {
                source,
                destination,
            };
            if let (Some(sum), Some(field)) = (
                mobility_header_checksum(context, &self.scratch),
                self.scratch.get_mut(4..6),
            ) {
                field.copy_from_slice(&sum.to_be_bytes());
            }
            recorded = &self.scratch;
        }
        if let Err(e) = pcap.write_ipv6_mh(SystemTime::now(), source, destination, recorded) {
            debug!("pcap: {e}");
        }
    }

    /// The synthetic handshake of a new connection from our `local` end.
    fn diameter_connected(&mut self, local: Option<SocketAddr>) {
        if let (Some(pcap), Some(local)) = (self.pcap.as_mut(), local) {
            if let Err(e) = self.tcp.connect(pcap, SystemTime::now(), local, self.aaa) {
                debug!("pcap: {e}");
            }
        }
    }

    /// One Diameter message (or the octets of one read) on the connection.
    fn diameter(&mut self, local: Option<SocketAddr>, outbound: bool, bytes: &[u8]) {
        if let (Some(pcap), Some(local)) = (self.pcap.as_mut(), local) {
            let (from, to) = if outbound {
                (local, self.aaa)
            } else {
                (self.aaa, local)
            };
            if let Err(e) = self.tcp.send(pcap, SystemTime::now(), from, to, bytes) {
                debug!("pcap: {e}");
            }
        }
    }

    /// The close of the connection, by us (`outbound`) or by the AAA.
    fn diameter_closed(&mut self, local: Option<SocketAddr>, outbound: bool) {
        if let (Some(pcap), Some(local)) = (self.pcap.as_mut(), local) {
            let (from, to) = if outbound {
                (local, self.aaa)
            } else {
                (self.aaa, local)
            };
            if let Err(e) = self.tcp.close(pcap, SystemTime::now(), from, to) {
                debug!("pcap: {e}");
            }
        }
    }

    fn flush(&mut self) {
        if let Some(p) = self.pcap.as_mut() {
            let _ = p.flush();
        }
    }
}

/// The status file's writer: at most one rewrite per [`STATUS_INTERVAL`].
#[derive(Default)]
struct StatusWriter {
    last: Option<String>,
    /// When the file was last rewritten, how long that took, and when the next rewrite
    /// is due.
    written_at: Option<Instant>,
    cost: Duration,
    due: Option<Instant>,
}

/// Everything the loop changes: the core, the data plane, the Diameter connection and
/// what is written for the user.
struct Shell {
    config: Config,
    core: epdg::Epdg,
    rng: OsRng,
    /// The core's outputs, carried out after each input (kept for its allocation).
    out: Vec<Output>,
    dataplane: DataPlane,
    data_plane_enabled: bool,
    diameter: Diameter,
    capture: Capture,
    keylog: Option<File>,
    status: StatusWriter,
    /// The counters last logged, and when.
    logged_counters: (Counters, Instant),
    /// An IKE datagram for port 4500 with its non-ESP marker.
    send_buffer: Vec<u8>,
}

/// The ePDG process: sockets around the sans-IO core.
pub struct Epdg {
    sockets: Sockets,
    shell: Shell,
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

/// The raw GRE sockets of the data plane: IPv4 at `mh_local`, IPv6 at `mh_local_v6`.
/// Without the privilege the ePDG runs on without a data plane, and says so.
fn open_gre(config: &Config) -> (GreSockets, GreSockets) {
    if !config.data_plane {
        info!("data plane off (data_plane = false)");
        return Default::default();
    }
    let gre4 = match GreSockets::bind(&[IpAddr::V4(config.mh_local)]) {
        Ok(s) => s,
        Err(e) => {
            error!(
                "DATA PLANE DISABLED: {e:#}; UEs will attach but their traffic is dropped \
                 (run as root or with CAP_NET_RAW, or set data_plane = false)"
            );
            return Default::default();
        }
    };
    let v6: Vec<IpAddr> = config.mh_local_v6.map(IpAddr::V6).into_iter().collect();
    let gre6 = GreSockets::bind(&v6).unwrap_or_else(|e| {
        error!("DATA PLANE toward IPv6 LMAs DISABLED: {e:#}");
        GreSockets::default()
    });
    (gre4, gre6)
}

impl Epdg {
    /// Binds every socket and prepares the core (call inside the runtime).
    pub async fn bind(config: Config) -> Result<Epdg> {
        let buffer = Some(SOCKET_BUFFER_BYTES);
        let ike500 = socket::udp_async(config.ike_listen, buffer)
            .with_context(|| format!("binding IKE UDP {}", config.ike_listen))?;
        let ike4500 = socket::udp_async(config.natt_listen, buffer)
            .with_context(|| format!("binding IKE UDP {}", config.natt_listen))?;
        let mh = socket::udp_async(SocketAddr::new(config.mh_local.into(), 0), buffer)
            .with_context(|| format!("binding the MH socket at {}", config.mh_local))?;
        let mh6 = config
            .mh_local_v6
            .map(|a| -> Result<AsyncRawSocket> {
                let raw = RawSocket::mobility_header(a, true).with_context(|| {
                    format!(
                        "opening the raw Mobility Header socket on {a} (mh_local_v6; needs \
                         root or CAP_NET_RAW)"
                    )
                })?;
                raw.set_receive_buffer(SOCKET_BUFFER_BYTES);
                raw.into_async()
                    .context("registering the raw Mobility Header socket with tokio")
            })
            .transpose()?;
        let (gre4, gre6) = open_gre(&config);
        let sockets = Sockets {
            local_500: ike500.local_addr()?,
            local_4500: ike4500.local_addr()?,
            local_mh: mh.local_addr()?,
            ike500,
            ike4500,
            mh,
            mh6,
            gre4,
            gre6,
        };
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
            // The keylog holds every IKE SA's keys: mode 0600 whatever the umask.
            Some(p) => Some(
                pmip_node::secret_file::create(p)
                    .with_context(|| format!("creating {}", p.display()))?,
            ),
            None => None,
        };
        let shell = Shell {
            core,
            rng,
            out: Vec::new(),
            dataplane: DataPlane::new(),
            data_plane_enabled: !sockets.gre4.is_empty(),
            diameter: Diameter::Idle,
            capture: Capture {
                pcap,
                tcp: TcpCapture::new(),
                aaa: config.aaa,
                scratch: Vec::new(),
            },
            keylog,
            status: StatusWriter::default(),
            logged_counters: (Counters::default(), Instant::now()),
            send_buffer: Vec::new(),
            config,
        };
        Ok(Epdg { sockets, shell })
    }

    /// Runs until `stop` completes, then detaches every UE (the core's shutdown: every
    /// IKE SA deleted, bindings de-registered, STR, DPR) and returns.
    pub async fn run(self, stop: impl Future<Output = ()>) -> Result<()> {
        let Epdg { sockets, mut shell } = self;
        tokio::pin!(stop);
        // The core's first deadline is the connect to the AAA.
        shell.feed(&sockets, Input::Timeout).await;
        info!(
            ike = %sockets.local_500,
            natt = %sockets.local_4500,
            mh = %sockets.local_mh,
            aaa = %shell.config.aaa,
            "mag listening"
        );
        shell.write_status();
        let mut ike_buffer = vec![0u8; PACKET_BUFFER];
        let mut natt_buffer = vec![0u8; PACKET_BUFFER];
        let mut mh_buffer = vec![0u8; PACKET_BUFFER];
        let mut mh6_buffer = vec![0u8; PACKET_BUFFER];
        let mut gre4_buffer = vec![0u8; PACKET_BUFFER];
        let mut gre6_buffer = vec![0u8; PACKET_BUFFER];
        let mut diameter_buffer = vec![0u8; PACKET_BUFFER];
        let mut counter_tick = tokio::time::interval(COUNTER_INTERVAL);
        counter_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let data_plane = shell.data_plane_enabled;
        let mut stopping = false;
        loop {
            let deadline = [shell.core.poll_timeout(), shell.status.due]
                .into_iter()
                .flatten()
                .min();
            let mut stopped = tokio::select! {
                _ = &mut stop, if !stopping => {
                    stopping = true;
                    shell.feed(&sockets, Input::Shutdown).await
                }
                received = sockets.ike500.recv_from(&mut ike_buffer) => {
                    shell.on_udp(&sockets, Source::Ike, received, &ike_buffer).await
                }
                received = sockets.ike4500.recv_from(&mut natt_buffer) => {
                    shell.on_udp(&sockets, Source::NatT, received, &natt_buffer).await
                }
                received = sockets.mh.recv_from(&mut mh_buffer) => {
                    shell.on_udp(&sockets, Source::Mh, received, &mh_buffer).await
                }
                received = recv_mh6(sockets.mh6.as_ref(), &mut mh6_buffer) => {
                    shell.on_udp(&sockets, Source::Mh6, received, &mh6_buffer).await
                }
                (_, received) = sockets.gre4.recv(&mut gre4_buffer) => {
                    shell.on_gre(&sockets, received).await;
                    false
                }
                (_, received) = sockets.gre6.recv(&mut gre6_buffer) => {
                    shell.on_gre(&sockets, received).await;
                    false
                }
                event = shell.diameter.next(&mut diameter_buffer) => {
                    shell.on_diameter(&sockets, event, &diameter_buffer).await
                }
                _ = sleep_until(deadline) => shell.on_timeout(&sockets).await,
                _ = counter_tick.tick(), if data_plane => false,
            };
            if !stopped {
                stopped = shell.sweep(&sockets, &mut ike_buffer).await;
            }
            if stopped {
                return Ok(());
            }
            shell.log_counters();
            shell.capture.flush();
            shell.status_changed();
        }
    }
}

impl Shell {
    /// Hands one input to the core and carries out what it asks. True once the core
    /// has stopped.
    async fn feed(&mut self, sockets: &Sockets, input: Input<'_>) -> bool {
        let mut out = std::mem::take(&mut self.out);
        self.core
            .handle(input, Instant::now(), &mut self.rng, &mut out);
        let stopped = self.carry_out(sockets, &mut out).await;
        self.out = out;
        stopped
    }

    async fn on_timeout(&mut self, sockets: &Sockets) -> bool {
        let now = Instant::now();
        if self.status.due.is_some_and(|t| t <= now) {
            self.status_changed();
        }
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            return self.feed(sockets, Input::Timeout).await;
        }
        false
    }

    /// A datagram of a UDP socket (IKE on 500 or 4500, the Mobility Header over IPv4) or
    /// a Mobility Header message of the raw IPv6 socket (checksum checked by the kernel;
    /// `from` has port 0). True once the core has stopped.
    async fn on_udp(
        &mut self,
        sockets: &Sockets,
        source: Source,
        received: io::Result<(usize, SocketAddr)>,
        buffer: &[u8],
    ) -> bool {
        let (len, from) = match received {
            Ok(r) => r,
            Err(e) => {
                debug!(socket = ?source, "receive: {e}");
                return false;
            }
        };
        let datagram = &buffer[..len.min(buffer.len())];
        match source {
            Source::Ike => self.on_ike(sockets, IkePort::Ike, datagram, from).await,
            Source::NatT => self.on_ike(sockets, IkePort::NatT, datagram, from).await,
            _ => {
                match from.ip() {
                    IpAddr::V6(source) => {
                        self.capture
                            .mh6(source, sockets.local_mh6(), false, datagram)
                    }
                    IpAddr::V4(_) => self.capture.udp(sockets.local_mh, from, false, datagram),
                }
                let input = Input::Mobility {
                    from,
                    bytes: datagram,
                };
                self.feed(sockets, input).await
            }
        }
    }

    /// One datagram on an IKE port: IKE to the core; on 4500, ESP to the data plane.
    async fn on_ike(
        &mut self,
        sockets: &Sockets,
        port: IkePort,
        datagram: &[u8],
        from: SocketAddr,
    ) -> bool {
        let natt = port == IkePort::NatT;
        let mut ike = datagram;
        if natt {
            // RFC 3948 section 2.2: IKE after a four-octet non-ESP marker; anything else
            // is ESP (the data plane) or a NAT keepalive.
            match UdpEncapsulated::classify(datagram) {
                Ok(UdpEncapsulated::Ike(_)) => ike = &datagram[NON_ESP_MARKER.len()..],
                Ok(UdpEncapsulated::Esp(_)) => {
                    self.on_esp(sockets, datagram, from).await;
                    return false;
                }
                Ok(UdpEncapsulated::NatKeepalive) | Err(_) => return false,
            }
        }
        let local = sockets.ike_local(port);
        self.capture.udp(local, from, false, datagram);
        self.feed(
            sockets,
            Input::Ike {
                remote: from,
                local,
                natt,
                bytes: ike,
            },
        )
        .await
    }

    /// What the Diameter connection did.
    async fn on_diameter(
        &mut self,
        sockets: &Sockets,
        event: DiameterEvent,
        buffer: &[u8],
    ) -> bool {
        let aaa = self.config.aaa;
        let read = match event {
            DiameterEvent::Connected(Ok(stream)) => {
                let local = stream.local_addr().ok();
                self.diameter = Diameter::Open { stream, local };
                self.capture.diameter_connected(local);
                info!(aaa = %aaa, "connected to the AAA");
                return self.feed(sockets, Input::DiameterConnected).await;
            }
            DiameterEvent::Connected(Err(e)) => {
                self.diameter = Diameter::Idle;
                let error = format!("{aaa}: {e}");
                warn!("cannot reach the AAA: {error}; retrying in 2 s");
                return self.feed(sockets, Input::DiameterConnectFailed).await;
            }
            DiameterEvent::Read(read) => read,
        };
        let Diameter::Open { local, .. } = &self.diameter else {
            return false;
        };
        let local = *local;
        match read {
            Ok(0) | Err(_) => {
                if let Err(e) = &read {
                    debug!(aaa = %aaa, "reading from the AAA: {e}");
                }
                self.capture.diameter_closed(local, false);
                self.diameter = Diameter::Idle;
                self.feed(sockets, Input::DiameterClosed).await
            }
            Ok(len) => {
                let bytes = &buffer[..len.min(buffer.len())];
                self.capture.diameter(local, false, bytes);
                self.feed(sockets, Input::DiameterBytes(bytes)).await
            }
        }
    }

    /// After a wake-up: what is already waiting on any socket, taken one at a time from
    /// each in turn (a PBA or a DEA must not wait behind a queue of IKE requests), up to
    /// [`BURST`] in all or until every socket is empty. True once the core has stopped.
    async fn sweep(&mut self, sockets: &Sockets, buffer: &mut [u8]) -> bool {
        let mut handled = 0;
        while handled < BURST {
            let before = handled;
            for source in Source::ALL {
                let Some(stopped) = self.try_one(sockets, source, buffer).await else {
                    continue;
                };
                if stopped {
                    return true;
                }
                handled += 1;
            }
            if handled == before {
                break;
            }
        }
        false
    }

    /// Handles one datagram (or read) of `source` if one is waiting: `None` when none
    /// is, else whether the core has stopped.
    async fn try_one(
        &mut self,
        sockets: &Sockets,
        source: Source,
        buffer: &mut [u8],
    ) -> Option<bool> {
        let would_block = |e: &io::Error| e.kind() == io::ErrorKind::WouldBlock;
        match source {
            Source::Ike | Source::NatT | Source::Mh => {
                let socket = match source {
                    Source::Ike => &sockets.ike500,
                    Source::NatT => &sockets.ike4500,
                    _ => &sockets.mh,
                };
                let received = socket.try_recv_from(buffer);
                if received.as_ref().is_err_and(would_block) {
                    return None;
                }
                Some(self.on_udp(sockets, source, received, buffer).await)
            }
            Source::Mh6 => {
                let received = sockets.mh6.as_ref()?.try_recv_from(buffer).transpose()?;
                let received = received.map(|(len, from)| (len, SocketAddr::new(from, 0)));
                Some(self.on_udp(sockets, source, received, buffer).await)
            }
            Source::Gre4 | Source::Gre6 => {
                let family = match source {
                    Source::Gre4 => &sockets.gre4,
                    _ => &sockets.gre6,
                };
                // One address per family: the socket of index 0.
                let received = family.try_recv(0, buffer)?;
                self.on_gre(sockets, received).await;
                Some(false)
            }
            Source::Diameter => {
                let Diameter::Open { stream, .. } = &self.diameter else {
                    return None;
                };
                let read = stream.try_read(buffer);
                if read.as_ref().is_err_and(would_block) {
                    return None;
                }
                Some(
                    self.on_diameter(sockets, DiameterEvent::Read(read), buffer)
                        .await,
                )
            }
        }
    }

    /// Carries out the core's outputs in order, leaving `out` empty. True once the core
    /// has stopped.
    async fn carry_out(&mut self, sockets: &Sockets, out: &mut Vec<Output>) -> bool {
        let mut stopped = false;
        for o in out.drain(..) {
            match o {
                Output::Ike(t) => self.send_ike(sockets, t).await,
                Output::Mobility { to, bytes } => self.send_mh(sockets, to, &bytes).await,
                Output::DiameterConnect => {
                    // A connection still open is dropped: the core starts afresh.
                    self.diameter = Diameter::Connecting(Box::pin(connect(self.config.aaa)));
                }
                Output::Diameter(bytes) => match &mut self.diameter {
                    Diameter::Open { stream, local } => {
                        self.capture.diameter(*local, true, &bytes);
                        if let Err(e) = stream.write_all(&bytes).await {
                            warn!("writing to the AAA: {e}");
                        }
                    }
                    _ => debug!("no AAA connection: Diameter message not written"),
                },
                Output::DiameterClose => {
                    if let Diameter::Open { mut stream, local } =
                        std::mem::replace(&mut self.diameter, Diameter::Idle)
                    {
                        self.capture.diameter_closed(local, true);
                        let _ = stream.shutdown().await;
                    }
                    // Whatever was being opened is dropped too.
                    self.diameter = Diameter::Idle;
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
                self.capture.flush();
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
        let interval = STATUS_INTERVAL.max(self.status.cost * 20);
        match self.status.written_at {
            Some(at) if now < at + interval => {
                self.status.due.get_or_insert(at + interval);
            }
            _ => {
                self.status.due = None;
                self.status.written_at = Some(now);
                self.write_status();
                self.status.cost = now.elapsed();
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
                enabled: self.data_plane_enabled,
                sessions: self.dataplane.len(),
                counters: self.dataplane.counters(),
            },
        };
        let text = match serde_json::to_string(&status) {
            Ok(t) => t,
            Err(e) => return warn!("serialising the status: {e}"),
        };
        if self.status.last.as_deref() == Some(text.as_str()) {
            return;
        }
        let tmp = path.with_extension("tmp");
        let written =
            std::fs::write(&tmp, format!("{text}\n")).and_then(|()| std::fs::rename(&tmp, &path));
        match written {
            Ok(()) => self.status.last = Some(text),
            Err(e) => warn!(path = %path.display(), "writing the status file: {e}"),
        }
    }

    /// An IKE datagram of the core, from the socket of its port (on 4500 after the
    /// non-ESP marker).
    async fn send_ike(&mut self, sockets: &Sockets, t: Transmit) {
        let (port, datagram) = if t.natt {
            self.send_buffer.clear();
            self.send_buffer.extend_from_slice(&NON_ESP_MARKER);
            self.send_buffer.extend_from_slice(&t.bytes);
            (IkePort::NatT, &self.send_buffer[..])
        } else {
            (IkePort::Ike, &t.bytes[..])
        };
        self.capture
            .udp(sockets.ike_local(port), t.remote, true, datagram);
        if let Err(e) = sockets.ike(port).send_to(datagram, t.remote).await {
            warn!(to = %t.remote, "sending IKE: {e}");
        }
    }

    /// A Mobility Header message of the core: in UDP over IPv4, or on the raw IPv6
    /// socket (the kernel fills the checksum: IPV6_CHECKSUM).
    async fn send_mh(&mut self, sockets: &Sockets, to: SocketAddr, bytes: &[u8]) {
        let IpAddr::V6(destination) = to.ip() else {
            self.capture.udp(sockets.local_mh, to, true, bytes);
            if let Err(e) = sockets.mh.send_to(bytes, to).await {
                warn!(%to, "sending PBU: {e}");
            }
            return;
        };
        let Some(raw) = sockets.mh6.as_ref() else {
            warn!(%to, "no IPv6 transport to this LMA: set mh_local_v6");
            return;
        };
        if let Err(e) = raw.send_to(bytes, to.ip()).await {
            warn!(to = %SocketAddr::new(to.ip(), 0), "sending PBU: {e}");
        }
        self.capture
            .mh6(sockets.local_mh6(), destination, true, bytes);
    }

    /// Logs the data plane counters when they changed, at most once a second.
    fn log_counters(&mut self) {
        let c = self.dataplane.counters();
        let (last, at) = self.logged_counters;
        if c == last || at.elapsed() < COUNTER_INTERVAL {
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
    async fn on_esp(&mut self, sockets: &Sockets, esp: &[u8], from: SocketAddr) {
        if !self.data_plane_enabled {
            return;
        }
        match self.dataplane.uplink(from, esp) {
            Ok(p) => {
                let Some(socket) = sockets.gre_toward(p.lma) else {
                    debug!(lma = %p.lma, "no GRE socket for this LMA's IP version: dropped");
                    return;
                };
                if let Err(e) = socket.send_to(p.gre, p.lma).await {
                    debug!(lma = %p.lma, "sending GRE: {e}");
                }
            }
            Err(reason) => debug!(%from, ?reason, "uplink packet dropped"),
        }
    }

    /// Downlink: GRE from an LMA -> ESP to the UE.
    async fn on_gre(&mut self, sockets: &Sockets, received: Result<(IpAddr, &[u8]), ReceiveError>) {
        let (from, gre) = match received {
            Ok(r) => r,
            Err(ReceiveError::OuterHeader(e)) => return debug!("raw GRE packet dropped: {e}"),
            Err(ReceiveError::Io(e)) => return debug!("raw GRE receive: {e}"),
        };
        match self.dataplane.downlink(from, gre, &mut self.rng) {
            Ok(p) => {
                if let Err(e) = sockets.ike4500.send_to(p.esp, p.ue).await {
                    debug!(ue = %p.ue, "sending ESP: {e}");
                }
            }
            Err(reason) => debug!(%from, ?reason, "downlink packet dropped"),
        }
        for (ike_spi, inbound_spi) in self.dataplane.take_rekeys_due() {
            self.feed(
                sockets,
                Input::RekeyChildSa {
                    ike_spi,
                    inbound_spi,
                },
            )
            .await;
        }
    }
}
