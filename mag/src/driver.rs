//! The tokio driver of the ePDG: UDP 500/4500 for IKE, one Diameter connection to the
//! AAA, one UDP socket toward the LMAs. One task owns every state machine (IKE SAs,
//! attach procedures, the Diameter peer, the binding update list); socket readers feed it
//! through a channel, and it sleeps until the earliest `poll_timeout()`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use pmip_common::binding_update_list::{self as bul, BindingUpdateList, MagConfig, MobileNodeKey};
use pmip_common::diameter::base::{Capabilities, DisconnectCause};
use pmip_common::diameter::peer::{self, Peer, PeerConfig, PeerEvent, Role};
use pmip_common::diameter::swm::SwmMessage;
use pmip_common::diameter::{Framer, Message};
use pmip_common::esp::{UdpEncapsulated, ESP_IN_UDP_PORT};
use pmip_common::ike::auth::Signer;
use pmip_common::ike::sa::{
    CloseReason, Event as IkeEvent, InitReply, Output as IkeOutput, Responder, ResponderConfig,
    ResponderSa, RetransmitPolicy,
};
use pmip_common::ike::wire::Identification;
use pmip_common::ike::IkeSuite;
use pmip_common::mh::{
    ChecksumContext, GreKey, Lifetime, MobilityHeaderRepr, MobilityMessage, ProxyBindingAck,
    IPPROTO_NONE,
};
use pmip_node::pcap::PcapWriter;
use rand::rngs::OsRng;
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::attach::{self, Attach, AttachConfig, Outcome};
use crate::config::Config;
use crate::dataplane::{DataPlane, SessionInfo};

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
    DiameterUp(OwnedWriteHalf),
    DiameterConnectFailed(String),
    DiameterBytes(Vec<u8>),
    DiameterDown,
}

/// One UE: its IKE SA and its attach procedure.
struct Ue {
    sa: ResponderSa,
    attach: Attach,
    remote: IpAddr,
    port_500: u16,
    port_4500: Option<u16>,
    /// The CHILD_SA of the finished IKE_AUTH, for the data plane.
    child: Option<pmip_common::ike::sa::ChildSa>,
    /// When to check that the UE is still there (attached UEs only).
    next_liveness: Option<Instant>,
    /// The IKE_SA_INIT request that made this SA, where it came from, and our answer,
    /// to answer a retransmission of it with the same SA.
    init: (SocketAddr, Vec<u8>, Vec<u8>),
    /// The deadline this UE has in [`Epdg::timers`] (the earliest of its SA's, its
    /// attach procedure's and its liveness check's).
    scheduled: Option<Instant>,
}

impl Ue {
    fn deadline(&self) -> Option<Instant> {
        [
            self.sa.poll_timeout(),
            self.attach.poll_timeout(),
            self.next_liveness,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Every UE's timers are also checked this often by a full scan, a safety net under the
/// timer heap (which finds due UEs without scanning them all).
const TIMER_SWEEP: Duration = Duration::from_secs(1);

/// The status file is rewritten at most this often, and never more often than 20 times
/// the last rewrite took (at most 5% of the time): a rewrite serialises every UE, so
/// doing it after every event made an attach storm quadratic.
const STATUS_INTERVAL: Duration = Duration::from_millis(100);

/// The whole ePDG.
pub struct Epdg {
    config: Config,
    attach_config: Arc<AttachConfig>,
    responder: Responder,
    ues: HashMap<u64, Ue>,
    by_session: HashMap<String, u64>,
    by_key: HashMap<MobileNodeKey, u64>,
    /// IKE SAs by the UE's address and SPIi of their IKE_SA_INIT.
    by_init: HashMap<(SocketAddr, u64), u64>,
    list: BindingUpdateList,
    diameter: Peer,
    framer: Framer,
    writer: Option<OwnedWriteHalf>,
    /// Our end of the Diameter connection and the next TCP sequence numbers (ours, the
    /// AAA's) of the segments the pcap is given.
    diameter_local: Option<SocketAddr>,
    tcp_seq: (u32, u32),
    connecting: bool,
    reconnect_at: Option<Instant>,
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
    logged_counters: (crate::dataplane::Counters, Instant),
    local_500: SocketAddr,
    local_4500: SocketAddr,
    local_mh: SocketAddr,
    pcap: Option<PcapWriter>,
    keylog: Option<File>,
    rng: OsRng,
    next_gre_key: u32,
    next_session: u32,
    work: VecDeque<(u64, attach::Input)>,
    last_status: Option<String>,
    /// When the status file was last rewritten, how long that took, and when the next
    /// rewrite is due.
    status_written_at: Option<Instant>,
    status_cost: Duration,
    status_due: Option<Instant>,
    /// UE deadlines, earliest first: (deadline, SPI). An entry is current while it
    /// equals the UE's `scheduled`; others are dropped when they surface.
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    /// UEs whose deadline may have moved since they were last scheduled.
    dirty: Vec<u64>,
    next_sweep: Instant,
    /// IKE SAs not yet established (for the cookie threshold), without a scan.
    half_open: HashSet<u64>,
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
    /// Binds every socket and prepares the state machines.
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
        let mut rng = OsRng;
        let suites = if config.ike_suites.is_empty() {
            IkeSuite::defaults()
        } else {
            config
                .ike_suites
                .iter()
                .map(|s| s.parse::<IkeSuite>())
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("ike_suites: {e}"))?
        };
        let responder = Responder::new(
            ResponderConfig {
                suites,
                identity: Identification::Fqdn(config.ike_identity.clone()),
                half_open_timeout: Duration::from_secs(config.half_open_timeout_secs),
                cookie_threshold: config.cookie_threshold,
                signer: Some(signer(&config)?),
                accept_eap_only: config.eap_only_auth,
                retransmit: RetransmitPolicy {
                    initial: Duration::from_millis(config.ike_retransmit_ms),
                    max_retransmissions: config.ike_max_retransmissions,
                },
                ..ResponderConfig::default()
            },
            &mut rng,
        );
        let attach_config = Arc::new(AttachConfig {
            origin_host: config.origin_host.clone(),
            origin_realm: config.origin_realm.clone(),
            destination_realm: config.destination_realm.clone(),
            lma_port: config.lma_port,
            default_apn: config.default_apn.clone(),
            dns: config.dns.clone(),
            pcscf: config.pcscf.clone(),
            diameter_timeout: Duration::from_millis(config.diameter_timeout_ms),
        });
        let list = BindingUpdateList::new(
            MagConfig {
                init_min_delay_between_bus: Duration::from_millis(config.pbu_retransmit_ms),
                max_retransmissions: config.pbu_max_retransmissions,
                requested_lifetime: Lifetime::from_secs(config.binding_lifetime_secs),
                ..MagConfig::default()
            },
            Instant::now(),
            SystemTime::now(),
        );
        let capabilities = Capabilities::swm(
            &config.origin_host,
            &config.origin_realm,
            vec![IpAddr::from(config.mh_local)],
            "pmip-mag",
        );
        let diameter = Peer::new(
            PeerConfig::new(capabilities),
            Role::Initiator,
            Box::new(|| OsRng.next_u32()),
        );
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
            attach_config,
            responder,
            ues: HashMap::new(),
            by_session: HashMap::new(),
            by_key: HashMap::new(),
            by_init: HashMap::new(),
            list,
            diameter,
            framer: Framer::new(1 << 20),
            writer: None,
            diameter_local: None,
            tcp_seq: (1, 1),
            connecting: false,
            reconnect_at: None,
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
            next_gre_key: OsRng.next_u32() & 0x00ff_ffff | 1,
            next_session: 0,
            work: VecDeque::new(),
            last_status: None,
            status_written_at: None,
            status_cost: Duration::ZERO,
            status_due: None,
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
            next_sweep: Instant::now() + TIMER_SWEEP,
            half_open: HashSet::new(),
            tx,
            rx: Some(rx),
            config,
        })
    }

    /// Runs until the task is cancelled (the caller selects on a signal).
    /// Runs until `stop` completes, then detaches every UE (see [`Epdg::shutdown`]).
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
        self.connect();
        info!(
            ike = %self.local_500,
            natt = %self.local_4500,
            mh = %self.local_mh,
            aaa = %self.config.aaa,
            "mag listening"
        );
        self.write_status();
        loop {
            let deadline = self.next_deadline();
            let sleep = tokio::time::sleep_until(
                deadline
                    .map(tokio::time::Instant::from_std)
                    .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                event = rx.recv() => match event {
                    Some(event) => self.on_event(event).await,
                    None => return Ok(()),
                },
                _ = sleep => self.on_timeout().await,
                _ = &mut stop => {
                    self.shutdown(&mut rx).await;
                    return Ok(());
                }
            }
            self.run_work().await;
            self.log_counters();
            if let Some(p) = self.pcap.as_mut() {
                let _ = p.flush();
            }
            self.status_changed();
        }
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
        let mut attached: Vec<(String, serde_json::Value)> = self
            .ues
            .values()
            .filter_map(|u| u.attach.info())
            .map(|a| {
                let key = format!("{}/{}", a.nai, a.apn);
                let entry = serde_json::json!({
                    "nai": a.nai,
                    "apn": a.apn,
                    "lma": a.lma.to_string(),
                    "ipv4": a.ipv4.map(|n| n.addr().to_string()),
                    "ipv6_prefix": a.ipv6_prefix.map(|n| n.to_string()),
                    "uplink_gre_key": a.uplink_gre_key.map(|k| k.0),
                    "downlink_gre_key": a.downlink_gre_key.0,
                });
                (key, entry)
            })
            .collect();
        attached.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let attached: Vec<serde_json::Value> = attached.into_iter().map(|(_, v)| v).collect();
        let status = serde_json::json!({
            "ike_sas": self.ues.len(),
            "aaa_sessions": self.by_session.len(),
            "bindings": self.list.len(),
            "diameter_open": self.diameter.is_open(),
            "attached": attached,
            "data_plane": {
                "enabled": self.gre4.is_some(),
                "sessions": self.dataplane.len(),
                "counters": self.dataplane.counters(),
            },
        });
        let text = status.to_string();
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

    /// Leaves nothing behind (best effort, within about a second): deletes every IKE SA,
    /// which de-registers its binding (lifetime-0 PBU) and ends its AAA session (STR);
    /// waits for the answers, then says goodbye to the AAA (DPR).
    async fn shutdown(&mut self, rx: &mut mpsc::Receiver<Event>) {
        let now = Instant::now();
        let spis: Vec<u64> = self.ues.keys().copied().collect();
        info!(ike_sas = spis.len(), "shutting down: detaching every UE");
        for spi in spis {
            let mut out = Vec::new();
            if let Some(ue) = self.ues.get_mut(&spi) {
                ue.sa.delete(now, &mut self.rng, &mut out);
            }
            self.ike_outputs(spi, out).await;
            self.work
                .push_back((spi, attach::Input::IkeClosed(CloseReason::Deleted)));
        }
        self.run_work().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while !self.list.is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(event)) => self.on_event(event).await,
                _ => break,
            }
            self.run_work().await;
        }
        let mut out = Vec::new();
        self.diameter
            .disconnect(DisconnectCause::Rebooting, Instant::now(), &mut out);
        self.diameter_outputs(out).await;
        if let Some(p) = self.pcap.as_mut() {
            let _ = p.flush();
        }
        self.write_status();
        info!(bindings = self.list.len(), "mag stopped");
    }

    fn connect(&mut self) {
        if self.connecting || self.writer.is_some() {
            return;
        }
        self.connecting = true;
        self.reconnect_at = None;
        let aaa = self.config.aaa;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            match TcpStream::connect(aaa).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let (mut reader, writer) = stream.into_split();
                    if tx.send(Event::DiameterUp(writer)).await.is_err() {
                        return;
                    }
                    let mut buf = vec![0u8; 65536];
                    loop {
                        match reader.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if tx
                                    .send(Event::DiameterBytes(buf[..n].to_vec()))
                                    .await
                                    .is_err()
                                {
                                    return;
                                }
                            }
                        }
                    }
                    let _ = tx.send(Event::DiameterDown).await;
                }
                Err(e) => {
                    let _ = tx
                        .send(Event::DiameterConnectFailed(format!("{aaa}: {e}")))
                        .await;
                }
            }
        });
    }

    /// Puts the UEs whose deadline may have moved back in the timer heap.
    fn schedule_dirty(&mut self) {
        for spi in std::mem::take(&mut self.dirty) {
            let Some(ue) = self.ues.get_mut(&spi) else {
                continue;
            };
            let deadline = ue.deadline();
            if deadline != ue.scheduled {
                ue.scheduled = deadline;
                if let Some(at) = deadline {
                    self.timers.push(Reverse((at, spi)));
                }
            }
        }
    }

    fn next_deadline(&mut self) -> Option<Instant> {
        self.schedule_dirty();
        // Drop superseded entries (the UE rescheduled or went away).
        while let Some(Reverse((at, spi))) = self.timers.peek().copied() {
            if self.ues.get(&spi).is_some_and(|u| u.scheduled == Some(at)) {
                break;
            }
            self.timers.pop();
        }
        let earliest_ue = self.timers.peek().map(|Reverse((at, _))| *at);
        let sweep = (!self.ues.is_empty()).then_some(self.next_sweep);
        [
            earliest_ue,
            sweep,
            self.status_due,
            self.list.poll_timeout(),
            self.diameter.poll_timeout(),
            self.reconnect_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The UEs with a deadline at or before `now`: from the timer heap, or all of them
    /// once every [`TIMER_SWEEP`].
    fn due_ues(&mut self, now: Instant) -> Vec<u64> {
        let mut due = Vec::new();
        if now >= self.next_sweep {
            self.next_sweep = now + TIMER_SWEEP;
            due.extend(self.ues.keys().copied());
        } else {
            while let Some(Reverse((at, spi))) = self.timers.peek().copied() {
                if at > now {
                    break;
                }
                self.timers.pop();
                if let Some(ue) = self.ues.get_mut(&spi) {
                    if ue.scheduled == Some(at) {
                        ue.scheduled = None;
                        due.push(spi);
                    }
                }
            }
        }
        self.dirty.extend_from_slice(&due);
        due
    }

    async fn on_timeout(&mut self) {
        let now = Instant::now();
        let mut ike_out = Vec::new();
        let candidates = self.due_ues(now);
        let due: Vec<u64> = candidates
            .iter()
            .copied()
            .filter(|spi| {
                self.ues
                    .get(spi)
                    .is_some_and(|u| u.sa.poll_timeout().is_some_and(|t| t <= now))
            })
            .collect();
        for spi in due {
            if let Some(ue) = self.ues.get_mut(&spi) {
                ue.sa.handle_timeout(now, &mut ike_out);
            }
            let out = std::mem::take(&mut ike_out);
            self.ike_outputs(spi, out).await;
        }
        let interval = Duration::from_secs(self.config.liveness_interval_secs);
        let due: Vec<u64> = candidates
            .iter()
            .copied()
            .filter(|spi| {
                self.ues
                    .get(spi)
                    .is_some_and(|u| u.next_liveness.is_some_and(|t| t <= now))
            })
            .collect();
        for spi in due {
            if let Some(ue) = self.ues.get_mut(&spi) {
                ue.next_liveness = Some(now + interval);
                ue.sa.check_liveness(now, &mut self.rng, &mut ike_out);
            }
            let out = std::mem::take(&mut ike_out);
            self.ike_outputs(spi, out).await;
        }
        for spi in &candidates {
            if let Some(ue) = self.ues.get(spi) {
                if ue.attach.poll_timeout().is_some_and(|t| t <= now) {
                    self.work.push_back((*spi, attach::Input::Timeout));
                }
            }
        }
        if self.list.poll_timeout().is_some_and(|t| t <= now) {
            let mut out = Vec::new();
            self.list.handle(bul::Input::Timeout, now, &mut out);
            self.list_outputs(out).await;
        }
        if self.diameter.poll_timeout().is_some_and(|t| t <= now) {
            let mut out = Vec::new();
            self.diameter.handle(peer::Input::Timeout, now, &mut out);
            self.diameter_outputs(out).await;
        }
        if self.reconnect_at.is_some_and(|t| t <= now) {
            self.connect();
        }
    }

    async fn on_event(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::Ike { data, from, natt } => self.on_ike(data, from, natt).await,
            Event::Mh { data, from } => self.on_mh(&data, from).await,
            Event::Gre { data, from } => self.on_gre(&data, from).await,
            Event::DiameterUp(writer) => {
                self.connecting = false;
                self.diameter_local = writer.local_addr().ok();
                self.record_handshake();
                self.writer = Some(writer);
                self.framer = Framer::new(1 << 20);
                info!(aaa = %self.config.aaa, "connected to the AAA");
                let mut out = Vec::new();
                self.diameter
                    .handle(peer::Input::ConnectionUp, now, &mut out);
                self.diameter_outputs(out).await;
            }
            Event::DiameterConnectFailed(e) => {
                self.connecting = false;
                warn!("cannot reach the AAA: {e}; retrying in 2 s");
                self.reconnect_at = Some(now + Duration::from_secs(2));
            }
            Event::DiameterBytes(bytes) => {
                self.record_tcp(false, TCP_PSH_ACK, &bytes);
                self.framer.push(&bytes);
                loop {
                    match self.framer.next_message() {
                        Ok(Some(m)) => {
                            let mut out = Vec::new();
                            self.diameter
                                .handle(peer::Input::Message(&m), now, &mut out);
                            self.diameter_outputs(out).await;
                        }
                        Ok(None) => break,
                        Err(e) => {
                            warn!("bad Diameter stream from the AAA: {e}; reconnecting");
                            self.writer = None;
                            let mut out = Vec::new();
                            self.diameter
                                .handle(peer::Input::ConnectionDown, now, &mut out);
                            self.diameter_outputs(out).await;
                            break;
                        }
                    }
                }
            }
            Event::DiameterDown => {
                let mut out = Vec::new();
                self.diameter
                    .handle(peer::Input::ConnectionDown, now, &mut out);
                self.diameter_outputs(out).await;
                self.writer = None;
                self.reconnect_at = Some(now + Duration::from_secs(2));
            }
        }
    }

    async fn diameter_outputs(&mut self, out: Vec<peer::Output>) {
        for o in out {
            match o {
                peer::Output::Send(bytes) => {
                    self.record_tcp(true, TCP_PSH_ACK, &bytes);
                    if let Some(w) = self.writer.as_mut() {
                        if let Err(e) = w.write_all(&bytes).await {
                            warn!("writing to the AAA: {e}");
                        }
                    }
                }
                peer::Output::Close => {
                    if let Some(mut w) = self.writer.take() {
                        let _ = w.shutdown().await;
                    }
                    self.reconnect_at = Some(Instant::now() + Duration::from_secs(2));
                }
                peer::Output::Event(PeerEvent::Open { applications, .. }) => {
                    info!(?applications, "Diameter peer open")
                }
                peer::Output::Event(PeerEvent::Answer(m)) => self.on_answer(&m),
                peer::Output::Event(PeerEvent::Request(m)) => {
                    // No AAA-initiated procedure (ASR, RAR, re-authorization) is
                    // implemented yet: say so rather than leave the AAA waiting.
                    warn!(
                        command = m.header.command_code,
                        session = m.session_id().unwrap_or(""),
                        "request from the AAA not supported"
                    );
                    let answer = m.error_answer(
                        &self.config.origin_host,
                        &self.config.origin_realm,
                        &pmip_common::diameter::Error::CommandUnsupported(m.header.command_code),
                    );
                    if let Ok(bytes) = answer.to_vec() {
                        self.record_tcp(true, TCP_PSH_ACK, &bytes);
                        if let Some(w) = self.writer.as_mut() {
                            if let Err(e) = w.write_all(&bytes).await {
                                warn!("writing to the AAA: {e}");
                            }
                        }
                    }
                }
                peer::Output::Event(PeerEvent::Down(reason)) => {
                    warn!(?reason, "Diameter peer down");
                    self.writer = None;
                    self.reconnect_at = Some(Instant::now() + Duration::from_secs(2));
                }
                peer::Output::Event(e) => debug!(?e, "Diameter peer event"),
            }
        }
    }

    fn on_answer(&mut self, m: &Message) {
        let Some(spi) = m.session_id().and_then(|s| self.by_session.get(s)).copied() else {
            debug!("answer for an unknown session");
            return;
        };
        match SwmMessage::parse(m) {
            Ok(SwmMessage::Dea(dea)) => self
                .work
                .push_back((spi, attach::Input::Dea(Box::new(dea)))),
            Ok(SwmMessage::Aaa(aaa)) => self
                .work
                .push_back((spi, attach::Input::Aaa(Box::new(aaa)))),
            Ok(SwmMessage::Sta(_)) => {}
            Ok(other) => debug!(?other, "unexpected SWm message"),
            Err(e) => warn!("unparsable SWm answer: {e}"),
        }
    }

    async fn send_diameter(&mut self, message: impl FnOnce(u32, u32) -> Message) -> bool {
        if !self.diameter.is_open() || self.writer.is_none() {
            return false;
        }
        let (hbh, e2e) = (
            self.diameter.next_hop_by_hop(),
            self.diameter.next_end_to_end(),
        );
        let Ok(bytes) = message(hbh, e2e).to_vec() else {
            return false;
        };
        self.record_tcp(true, TCP_PSH_ACK, &bytes);
        match self.writer.as_mut() {
            Some(w) => w.write_all(&bytes).await.is_ok(),
            None => false,
        }
    }

    async fn on_ike(&mut self, mut data: Vec<u8>, from: SocketAddr, natt: bool) {
        if natt {
            // RFC 3948: IKE after a four-octet non-ESP marker; anything else is ESP
            // (the data plane) or a NAT keepalive.
            match UdpEncapsulated::classify(&data) {
                Ok(UdpEncapsulated::Ike(_)) => {}
                Ok(UdpEncapsulated::Esp(_)) => {
                    self.on_esp(&data, from);
                    return;
                }
                Ok(UdpEncapsulated::NatKeepalive) | Err(_) => return,
            }
            data.drain(..4);
        }
        if data.len() < 28 {
            return;
        }
        self.record_ike(from, natt, false, &data);
        let mut spi_r = [0u8; 8];
        spi_r.copy_from_slice(&data[8..16]);
        let spi_r = u64::from_be_bytes(spi_r);
        let mut out = Vec::new();
        if spi_r == 0 {
            let mut spi_i = [0u8; 8];
            spi_i.copy_from_slice(&data[..8]);
            let spi_i = u64::from_be_bytes(spi_i);
            // A retransmitted IKE_SA_INIT gets the answer it already had, not a new SA.
            let cached = self
                .by_init
                .get(&(from, spi_i))
                .and_then(|spi| self.ues.get(spi))
                .filter(|u| u.init.1 == data)
                .map(|u| u.init.2.clone());
            if let Some(reply) = cached {
                debug!(%from, "IKE_SA_INIT retransmitted: answered again");
                self.send_ike_to(from, natt, &reply).await;
                return;
            }
            let local = if natt {
                self.local_4500
            } else {
                self.local_500
            };
            let half_open = self.half_open.len();
            match self.responder.handle_ike_sa_init(
                &data,
                from,
                local,
                half_open,
                Instant::now(),
                &mut self.rng,
            ) {
                InitReply::Stateless(reply) => self.send_ike_to(from, natt, &reply).await,
                InitReply::NewSa(sa, reply) => {
                    let spi = sa.responder_spi();
                    if let Some(k) = self.keylog.as_mut() {
                        let record = sa
                            .keys()
                            .wireshark_decryption_record(sa.initiator_spi(), spi);
                        let _ = writeln!(k, "{record}");
                        let _ = k.flush();
                    }
                    self.next_session = self.next_session.wrapping_add(1);
                    let session_id = pmip_common::diameter::swm::session_id(
                        &self.config.origin_host,
                        (spi >> 32) as u32,
                        self.next_session,
                        None,
                    );
                    self.next_gre_key = self.next_gre_key.wrapping_add(1).max(1);
                    let attach = Attach::new(
                        Arc::clone(&self.attach_config),
                        session_id.clone(),
                        GreKey(self.next_gre_key),
                    );
                    self.by_session.insert(session_id, spi);
                    self.ues.insert(
                        spi,
                        Ue {
                            sa: *sa,
                            attach,
                            remote: from.ip(),
                            port_500: from.port(),
                            port_4500: natt.then_some(from.port()),
                            child: None,
                            next_liveness: None,
                            init: (from, data.clone(), reply.clone()),
                            scheduled: None,
                        },
                    );
                    self.half_open.insert(spi);
                    self.dirty.push(spi);
                    self.by_init.insert((from, spi_i), spi);
                    self.send_ike_to(from, natt, &reply).await;
                }
                InitReply::Discarded(d) => debug!(%from, ?d, "IKE_SA_INIT discarded"),
            }
            return;
        }
        let Some(ue) = self.ues.get_mut(&spi_r) else {
            debug!(%from, "IKE message for an unknown SA");
            return;
        };
        if natt {
            ue.port_4500 = Some(from.port());
        } else {
            ue.port_500 = from.port();
        }
        ue.remote = from.ip();
        ue.sa.handle(&data, natt, &mut self.rng, &mut out);
        self.ike_outputs(spi_r, out).await;
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
        let (Some(pcap), Some(local)) = (self.pcap.as_mut(), self.diameter_local) else {
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

    async fn send_ike_to(&mut self, to: SocketAddr, natt: bool, bytes: &[u8]) {
        self.record_ike(to, natt, true, bytes);
        let result = if natt {
            let mut d = vec![0u8; 4];
            d.extend_from_slice(bytes);
            self.ike4500.send_to(&d, to).await
        } else {
            self.ike500.send_to(bytes, to).await
        };
        if let Err(e) = result {
            warn!(%to, "sending IKE: {e}");
        }
    }

    /// Carries out what an IKE SA asked for and turns its events into attach inputs.
    async fn ike_outputs(&mut self, spi: u64, out: Vec<IkeOutput>) {
        self.dirty.push(spi);
        for o in out {
            match o {
                IkeOutput::Send { bytes, port_4500 } => {
                    let Some(ue) = self.ues.get(&spi) else {
                        continue;
                    };
                    let to = if port_4500 {
                        SocketAddr::new(ue.remote, ue.port_4500.unwrap_or(4500))
                    } else {
                        SocketAddr::new(ue.remote, ue.port_500)
                    };
                    self.send_ike_to(to, port_4500, &bytes).await;
                }
                IkeOutput::Event(e) => {
                    let input = match e {
                        IkeEvent::AuthRequested(r) => attach::Input::AuthRequested(Box::new(r)),
                        IkeEvent::EapResponse(eap) => attach::Input::EapFromUe(eap),
                        IkeEvent::Established(established) => {
                            self.half_open.remove(&spi);
                            if let Some(ue) = self.ues.get_mut(&spi) {
                                ue.child = Some(established.child);
                                // No IKE_SA_INIT retransmission can come any more: free
                                // its copy and our answer (about 700 octets per UE).
                                let (from, request, reply) = &mut ue.init;
                                let spi_i = ue.sa.initiator_spi();
                                if self.by_init.get(&(*from, spi_i)) == Some(&spi) {
                                    self.by_init.remove(&(*from, spi_i));
                                }
                                *request = Vec::new();
                                *reply = Vec::new();
                            }
                            attach::Input::IkeEstablished
                        }
                        IkeEvent::Closed(reason) => {
                            self.half_open.remove(&spi);
                            attach::Input::IkeClosed(reason)
                        }
                        IkeEvent::Alive | IkeEvent::EapRequest(_) => continue,
                        IkeEvent::Discarded(d) => {
                            debug!(spi = format_args!("{spi:016x}"), ?d, "IKE datagram dropped");
                            continue;
                        }
                    };
                    self.work.push_back((spi, input));
                }
            }
        }
    }

    /// Runs attach procedures until no input is left.
    async fn run_work(&mut self) {
        while let Some((spi, input)) = self.work.pop_front() {
            self.dirty.push(spi);
            let now = Instant::now();
            let mut out = Vec::new();
            let closed_first = matches!(input, attach::Input::IkeClosed(_));
            {
                let Some(ue) = self.ues.get_mut(&spi) else {
                    continue;
                };
                ue.attach.handle(input, now, &mut out);
            }
            let mut ike_out = Vec::new();
            let mut finished =
                closed_first && self.ues.get(&spi).is_some_and(|u| u.attach.is_done());
            for o in out {
                match o {
                    attach::Output::SendEap(eap) => {
                        if let Some(ue) = self.ues.get_mut(&spi) {
                            ue.sa.send_eap(eap, &mut self.rng, &mut ike_out);
                        }
                    }
                    attach::Output::EapSuccess {
                        eap,
                        msk,
                        acceptance,
                    } => {
                        let inbound_spi = self.rng.next_u32() | 0x100;
                        if let Some(ue) = self.ues.get_mut(&spi) {
                            info!(
                                nai = ue.attach.nai(),
                                apn = ue.attach.apn(),
                                "PBA accepted: releasing the EAP-Success"
                            );
                            ue.sa.eap_success(
                                eap,
                                msk,
                                acceptance,
                                inbound_spi,
                                &mut self.rng,
                                &mut ike_out,
                            );
                        }
                    }
                    attach::Output::Reject {
                        notify,
                        eap_failure,
                    } => {
                        if let Some(ue) = self.ues.get_mut(&spi) {
                            ue.sa
                                .reject(notify, eap_failure, &mut self.rng, &mut ike_out);
                        }
                    }
                    attach::Output::DeleteIke => {
                        if let Some(ue) = self.ues.get_mut(&spi) {
                            ue.sa.delete(now, &mut self.rng, &mut ike_out);
                        }
                    }
                    attach::Output::Der(der) => {
                        if !self.send_diameter(|h, e| der.to_message(h, e)).await {
                            self.work.push_back((spi, attach::Input::AaaUnavailable));
                        }
                    }
                    attach::Output::Aar(aar) => {
                        if !self.send_diameter(|h, e| aar.to_message(h, e)).await {
                            self.work.push_back((spi, attach::Input::AaaUnavailable));
                        }
                    }
                    attach::Output::Str(str) => {
                        if !self.send_diameter(|h, e| str.to_message(h, e)).await {
                            warn!(session = str.session_id, "STR not sent: AAA unreachable");
                        }
                    }
                    attach::Output::Register(request) => {
                        // The same UE and APN with a binding from an older IKE SA (the UE
                        // came back without deleting it): the new SA takes the binding
                        // over, addresses kept; the old SA and its AAA session go.
                        let older = self
                            .by_key
                            .get(&request.key)
                            .copied()
                            .filter(|old| *old != spi && self.ues.contains_key(old));
                        let granted = self.list.registration(&request.key).cloned();
                        if let (Some(old), Some(registration)) = (older, granted) {
                            info!(
                                key = %request.key,
                                old = format_args!("{old:016x}"),
                                new = format_args!("{spi:016x}"),
                                "binding handed over to the new IKE SA"
                            );
                            self.by_key.insert(request.key.clone(), spi);
                            let key = self.ues.get(&old).map(|u| u.attach.downlink_gre_key());
                            if let (Some(key), Some(ue)) = (key, self.ues.get_mut(&spi)) {
                                ue.attach.adopt_downlink_gre_key(key);
                            }
                            self.work.push_front((old, attach::Input::Superseded));
                            self.work.push_back((
                                spi,
                                attach::Input::Registered(Box::new(registration)),
                            ));
                            continue;
                        }
                        self.by_key.insert(request.key.clone(), spi);
                        let mut lout = Vec::new();
                        self.list
                            .handle(bul::Input::Register(*request), now, &mut lout);
                        self.list_outputs(lout).await;
                    }
                    attach::Output::Deregister(key) => {
                        let mut lout = Vec::new();
                        self.list
                            .handle(bul::Input::Deregister(key), now, &mut lout);
                        self.list_outputs(lout).await;
                    }
                    attach::Output::Attached(a) => {
                        self.install_session(spi, &a);
                        let interval = self.config.liveness_interval_secs;
                        if let Some(ue) = self.ues.get_mut(&spi) {
                            ue.next_liveness =
                                (interval > 0).then(|| now + Duration::from_secs(interval));
                        }
                        info!(
                            nai = a.nai,
                            apn = a.apn,
                            lma = %a.lma,
                            ipv4 = a.ipv4.map(|n| n.addr().to_string()).unwrap_or_default(),
                            ipv6_prefix = a.ipv6_prefix.map(|n| n.to_string()).unwrap_or_default(),
                            uplink_gre_key = a.uplink_gre_key.map(|k| k.0).unwrap_or_default(),
                            downlink_gre_key = a.downlink_gre_key.0,
                            attached = self.ues.values().filter(|u| u.attach.info().is_some()).count(),
                            "UE attached"
                        )
                    }
                    attach::Output::Finished(outcome) => {
                        finished = true;
                        match &outcome {
                            Outcome::Rejected { notify, reason } => {
                                warn!(
                                    spi = format_args!("{spi:016x}"),
                                    ?notify,
                                    "attach rejected: {reason}"
                                )
                            }
                            Outcome::Detached(r) => {
                                info!(spi = format_args!("{spi:016x}"), "UE detached: {r}")
                            }
                            Outcome::Abandoned(r) => {
                                info!(spi = format_args!("{spi:016x}"), "attach abandoned: {r}")
                            }
                        }
                    }
                }
            }
            self.ike_outputs(spi, ike_out).await;
            if finished {
                self.remove(spi);
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

    /// Gives the data plane the attached UE's CHILD_SA, addresses and GRE keys.
    fn install_session(&mut self, spi: u64, a: &attach::AttachInfo) {
        let Some(ue) = self.ues.get(&spi) else {
            return;
        };
        let Some(child) = ue.child.as_ref() else {
            warn!(
                spi = format_args!("{spi:016x}"),
                "attached without a CHILD_SA: no data plane"
            );
            return;
        };
        let info = SessionInfo {
            ipv4: a.ipv4.map(|n| n.addr()),
            ipv6_prefix: a.ipv6_prefix,
            lma: a.lma.ip(),
            uplink_key: a.uplink_gre_key.map(|k| k.0),
            downlink_key: a.downlink_gre_key.0,
            ue: SocketAddr::new(ue.remote, ue.port_4500.unwrap_or(ESP_IN_UDP_PORT)),
        };
        if let Err(e) = self.dataplane.install(spi, child, info) {
            warn!(
                spi = format_args!("{spi:016x}"),
                "data plane session not installed: {e}"
            );
        }
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
    }

    fn remove(&mut self, spi: u64) {
        self.dataplane.remove(spi);
        self.half_open.remove(&spi);
        if let Some(ue) = self.ues.remove(&spi) {
            self.by_session.remove(ue.attach.session_id());
            let spi_i = ue.sa.initiator_spi();
            if self.by_init.get(&(ue.init.0, spi_i)) == Some(&spi) {
                self.by_init.remove(&(ue.init.0, spi_i));
            }
            let key = ue.attach.key();
            if self.by_key.get(&key) == Some(&spi) {
                self.by_key.remove(&key);
            }
            info!(
                spi = format_args!("{spi:016x}"),
                ike_sas = self.ues.len(),
                aaa_sessions = self.by_session.len(),
                bindings = self.list.len(),
                "UE state removed"
            );
        }
    }

    async fn list_outputs(&mut self, out: Vec<bul::Output>) {
        for o in out {
            match o {
                bul::Output::Send { to, pbu } => {
                    let message = MobilityHeaderRepr {
                        payload_proto: IPPROTO_NONE,
                        message: MobilityMessage::BindingUpdate(pbu.to_binding_update()),
                    };
                    let IpAddr::V4(destination) = to.ip() else {
                        self.send_mh6(to, &message);
                        continue;
                    };
                    let bytes = message.to_bytes(ChecksumContext::Ipv4Udp {
                        source: self.config.mh_local,
                        destination,
                    });
                    if let Some(p) = self.pcap.as_mut() {
                        let _ = p.write_udp(SystemTime::now(), self.local_mh, to, &bytes);
                    }
                    debug!(%to, seq = pbu.sequence, lifetime = pbu.lifetime.0, "PBU");
                    if let Err(e) = self.mh.send_to(&bytes, to).await {
                        warn!(%to, "sending PBU: {e}");
                    }
                }
                bul::Output::Registered { key, registration } => {
                    match self.by_key.get(&key) {
                        Some(spi) => self
                            .work
                            .push_back((*spi, attach::Input::Registered(Box::new(registration)))),
                        None => {
                            // The UE left while the PBU was out: undo the binding.
                            let mut lout = Vec::new();
                            self.list.handle(
                                bul::Input::Deregister(key),
                                Instant::now(),
                                &mut lout,
                            );
                            Box::pin(self.list_outputs(lout)).await;
                        }
                    }
                }
                bul::Output::Failed { key, reason } => {
                    if let Some(spi) = self.by_key.get(&key) {
                        self.work
                            .push_back((*spi, attach::Input::RegistrationFailed(reason)));
                    }
                }
                bul::Output::Lost { key, reason } => {
                    if let Some(spi) = self.by_key.get(&key) {
                        self.work
                            .push_back((*spi, attach::Input::BindingLost(reason)));
                    }
                }
                bul::Output::Refreshed { key, .. } => debug!(%key, "binding refreshed"),
                bul::Output::Deregistered { key, acknowledged } => {
                    info!(%key, acknowledged, bindings = self.list.len(), "binding removed")
                }
            }
        }
    }

    /// A PBU over IPv6 transport: the kernel fills the checksum (IPV6_CHECKSUM).
    fn send_mh6(&mut self, to: SocketAddr, message: &MobilityHeaderRepr) {
        let (IpAddr::V6(destination), Some((socket, source))) = (to.ip(), self.mh6.as_ref()) else {
            warn!(%to, "no IPv6 transport to this LMA: set mh_local_v6");
            return;
        };
        let bytes = message.to_bytes(ChecksumContext::Skip);
        let to = SocketAddr::new(to.ip(), 0);
        if let Err(e) = socket.send_to(&bytes, &socket2::SockAddr::from(to)) {
            warn!(%to, "sending PBU: {e}");
        }
        if let Some(p) = self.pcap.as_mut() {
            // The copy for the pcap gets the checksum the kernel puts on the wire.
            let checked = message.to_bytes(ChecksumContext::Ipv6 {
                source: *source,
                destination,
            });
            let _ = p.write_ipv6_mh(SystemTime::now(), *source, destination, &checked);
        }
    }

    async fn on_mh(&mut self, data: &[u8], from: SocketAddr) {
        let checksum = match from.ip() {
            IpAddr::V4(source) => {
                if let Some(p) = self.pcap.as_mut() {
                    let _ = p.write_udp(SystemTime::now(), from, self.local_mh, data);
                }
                ChecksumContext::Ipv4Udp {
                    source,
                    destination: self.config.mh_local,
                }
            }
            IpAddr::V6(source) => {
                if let (Some(p), Some((_, local))) = (self.pcap.as_mut(), self.mh6.as_ref()) {
                    let _ = p.write_ipv6_mh(SystemTime::now(), source, *local, data);
                }
                // The kernel verified it (IPV6_CHECKSUM).
                ChecksumContext::Skip
            }
        };
        let parsed = MobilityHeaderRepr::parse(data, checksum);
        let ack = match parsed.map(|m| m.message) {
            Ok(MobilityMessage::BindingAck(ba)) => match ProxyBindingAck::try_from(&ba) {
                Ok(ack) => ack,
                Err(e) => {
                    warn!(%from, "bad PBA: {e:?}");
                    return;
                }
            },
            Ok(other) => {
                debug!(%from, ?other, "Mobility Header message ignored");
                return;
            }
            Err(e) => {
                warn!(%from, "unparsable Mobility Header: {e}");
                return;
            }
        };
        debug!(%from, seq = ack.sequence, status = ?ack.status, "PBA");
        let mut out = Vec::new();
        self.list
            .handle(bul::Input::Ack { from, ack }, Instant::now(), &mut out);
        self.list_outputs(out).await;
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
