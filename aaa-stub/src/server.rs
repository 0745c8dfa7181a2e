//! The `aaa-stub` binary's tokio driver around [`crate::core`], in the library so that a
//! test can run the very server the binary runs (in-process, on loopback): one task per
//! peer connection (a [`Framer`] and the Diameter peer state machine: CER/CEA, DWR/DWA,
//! DPR/DPA), one task per home AAA in the visited role (connects, CER, relays), and one
//! task that owns the protocol core and the subscriber store.
//!
//! The transport around the peers (RFC 6733 sections 2.1, 5.3, 5.6 and 13): the plain
//! TCP listener and, with `[tls]`, a TLS listener (mutual authentication,
//! `pmip_node::tls`); at most `max_connections` connections at once (one more is closed
//! at once); `cer_timeout_secs` for the TLS handshake and the CER together; and every
//! CER held against the peer table ([`crate::peers`]) before the peer state machine
//! sees it: an unknown peer gets a CEA with DIAMETER_UNKNOWN_PEER (3010) and the
//! connection is closed, so it never reaches the core. A connection reads into a buffer
//! that grows only once its peer sends something, and everything it holds goes when it
//! closes. The pcap records the Diameter messages as plaintext for TLS connections too.
//!
//! A [`Handle`] reads the core's state (open sessions, peer connections: what
//! `--status-file` writes) and sends AAA-initiated requests, such as an operator's
//! Abort-Session-Request (TS 29.273 section 7.1.2.3, RFC 6733 section 8.5), to every
//! open peer, collecting their answers.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::collections::BTreeMap;

use pmip_common::diameter::base::{
    Capabilities, CapabilitiesExchangeAnswer, CapabilitiesExchangeRequest, DisconnectCause,
};
use pmip_common::diameter::codes::{command, result};
use pmip_common::diameter::peer::{self, Peer, PeerConfig, PeerEvent, PeerState, Role};
use pmip_common::diameter::{Framer, Message};
use pmip_node::tls;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::{AaaConfig, HomeAaa};
use crate::core::{self as aaa, Aaa, ConnId};
use crate::pcap::Recorder;
use crate::peers::{Connection, PeerTable, Refusal};
use crate::subscriber::SubscriberStore;

/// The largest Diameter message a peer may send (the framer refuses longer ones).
const MAX_MESSAGE: usize = 1 << 20;
/// What a connection reads into at most at once, while its peer sends.
const READ_CHUNK: usize = 64 * 1024;

/// The buffer for the next read after one that gave `last`: empty (nothing allocated
/// until the peer sends again) unless `last` filled its buffer, when more is surely
/// waiting: then twice as large, up to [`READ_CHUNK`]. An idle connection holds no
/// read buffer.
fn next_read_buffer(last: Vec<u8>) -> Vec<u8> {
    if last.is_empty() || last.len() < last.capacity() {
        return Vec::new();
    }
    Vec::with_capacity((last.capacity() * 2).min(READ_CHUNK))
}

/// What the server does beyond the protocol.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Record every Diameter message sent and received here (pcap).
    pub pcap: Option<PathBuf>,
    /// Keep this file up to date with the core's state (see [`Status`]).
    pub status_file: Option<PathBuf>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("listening on {addr}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("creating {}", path.display())]
    Pcap {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("setting up TLS")]
    Tls(#[from] tls::TlsError),
}

/// The core's state as `--status-file` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    /// Diameter sessions open (authenticated or authenticating, not yet ended by STR).
    pub sessions: usize,
    /// Peer connections open.
    pub peers: usize,
}

/// Reads a running server's state and sends it requests to originate.
#[derive(Debug, Clone)]
pub struct Handle {
    status: watch::Receiver<Status>,
    events: UnboundedSender<Event>,
    answers: Arc<Mutex<Vec<Message>>>,
}

impl Handle {
    /// The core's state after its last event.
    pub fn status(&self) -> Status {
        *self.status.borrow()
    }

    /// Sends `request` (an AAA-initiated request: Hop-by-Hop and End-to-End ids are set
    /// per connection) on every peer connection open now. False if the server is gone.
    pub fn originate(&self, request: Message) -> bool {
        self.events.send(Event::Originate(request)).is_ok()
    }

    /// The answers received so far to requests sent with [`Handle::originate`].
    pub fn answers(&self) -> Vec<Message> {
        self.answers.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

/// The AAA server, bound and ready to run.
pub struct Server {
    listener: TcpListener,
    /// The TLS listener and its configuration (`[tls] listen`).
    tls_listener: Option<(TcpListener, Arc<tls::ServerConfig>)>,
    /// For the home links with `tls = true`.
    client_tls: Option<Arc<tls::ClientConfig>>,
    config: AaaConfig,
    store: SubscriberStore,
    pcap: Pcap,
    status_file: Option<PathBuf>,
    events: UnboundedSender<Event>,
    events_rx: UnboundedReceiver<Event>,
    status: (watch::Sender<Status>, watch::Receiver<Status>),
    answers: Arc<Mutex<Vec<Message>>>,
}

impl Server {
    /// Binds `config.listen` and opens the pcap file.
    pub async fn bind(
        config: AaaConfig,
        store: SubscriberStore,
        options: ServerOptions,
    ) -> Result<Server, ServerError> {
        let pcap: Pcap = match &options.pcap {
            Some(path) => Some(Arc::new(Mutex::new(Recorder::create(path).map_err(
                |source| ServerError::Pcap {
                    path: path.clone(),
                    source,
                },
            )?))),
            None => None,
        };
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Listen { addr, source })
        };
        let listener = bind(config.listen).await?;
        let (mut tls_listener, mut client_tls) = (None, None);
        if let Some(t) = &config.tls {
            let credentials = t.credentials();
            if let Some(addr) = t.listen {
                tls_listener = Some((bind(addr).await?, tls::server_config(&credentials)?));
            }
            if config.home_realms.values().any(|h| h.tls) {
                client_tls = Some(tls::client_config(&credentials)?);
            }
        }
        let (events, events_rx) = unbounded_channel();
        Ok(Server {
            listener,
            tls_listener,
            client_tls,
            config,
            store,
            pcap,
            status_file: options.status_file,
            events,
            events_rx,
            status: watch::channel(Status::default()),
            answers: Arc::default(),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where it listens for TLS, if it does.
    pub fn tls_local_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.tls_listener.as_ref().map(|(l, _)| l.local_addr())
    }

    pub fn handle(&self) -> Handle {
        Handle {
            status: self.status.1.clone(),
            events: self.events.clone(),
            answers: Arc::clone(&self.answers),
        }
    }

    /// Serves peers until `stop` resolves, then sends every peer a DPR (RFC 6733 section
    /// 5.4) and waits up to 1 s for the DPAs.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        let Server {
            listener,
            tls_listener,
            client_tls,
            config,
            store,
            pcap,
            status_file,
            events,
            events_rx,
            status,
            answers,
        } = self;
        let identity = (config.origin_host.clone(), config.origin_realm.clone());
        let relay_timeout = Duration::from_secs(config.relay_timeout_secs);
        let max_connections = config.max_connections;
        let slots = Arc::new(Semaphore::new(max_connections));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let link = Link {
            events: events.clone(),
            identity: identity.clone(),
            pcap: pcap.clone(),
            shutdown: shutdown_rx,
            peers: Arc::new(config.peers.clone()),
            cer_timeout: Duration::from_secs(config.cer_timeout_secs),
            throttles: SharedThrottles::default(),
        };
        let homes = Homes {
            config: config.home_realms.clone(),
            tls: client_tls,
            relay_timeout,
        };
        let core = Aaa::new(config, store, Box::new(rand::rngs::OsRng));
        tokio::spawn(core_task(
            core,
            events_rx,
            link.clone(),
            homes,
            Reports {
                status_file: StatusFile::new(status_file),
                status: status.0,
                answers,
            },
        ));
        let (tls_listener, tls_config) = match tls_listener {
            Some((l, c)) => (Some(l), Some(c)),
            None => (None, None),
        };
        let mut next_id: ConnId = 0;
        let throttles = Arc::clone(&link.throttles);
        tokio::pin!(stop);
        loop {
            let (accepted, tls) = tokio::select! {
                a = listener.accept() => (a, None),
                a = accept_on(tls_listener.as_ref()) => (a, tls_config.clone()),
                _ = &mut stop => break,
            };
            let (stream, remote) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                // At the cap: closed at once (dropped), said once a second at most.
                throttled(
                    &throttles,
                    |t| &mut t.over_cap,
                    |unsaid| warn!(peer = %remote, unsaid, "max_connections open: connection closed"),
                );
                continue;
            };
            next_id += 1;
            throttled(
                &throttles,
                |t| &mut t.connected,
                |unsaid| info!(peer = %remote, conn = next_id, tls = tls.is_some(), unsaid, "peer connected"),
            );
            tokio::spawn(accepted_connection(
                stream,
                tls,
                next_id,
                link.clone(),
                slot,
            ));
        }
        info!("aaa stopping: disconnecting peers");
        let _ = shutdown.send(true);
        let deadline = Instant::now() + Duration::from_secs(1);
        // Each connection task holds a slot until it ends.
        while slots.available_permits() < max_connections && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        info!("aaa stopped");
    }
}

/// Accepts on the listener if there is one (pends for ever without).
async fn accept_on(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// A log line that anyone who can open a TCP connection can cause (a connection
/// accepted, or over the cap, or closed before its CER; a refused CER; a failed TLS
/// handshake): said at most once a second, with
/// how many were left unsaid since, so that a flood cannot fill the disk.
#[derive(Debug, Default)]
struct Throttle {
    unsaid: u64,
    said: Option<Instant>,
}

impl Throttle {
    /// `Some(unsaid since the last line)` when the line may be said at `now`.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .said
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.unsaid += 1;
            return None;
        }
        self.said = Some(now);
        Some(std::mem::take(&mut self.unsaid))
    }
}

/// The throttles of the lines strangers can cause.
#[derive(Debug, Default)]
struct Throttles {
    /// A connection accepted, or closed before its CER/CEA.
    connected: Throttle,
    over_cap: Throttle,
    refused: Throttle,
    tls: Throttle,
}

type SharedThrottles = Arc<Mutex<Throttles>>;

/// Says a line through `pick`'s throttle of `throttles`, if it allows: `say` gets how
/// many went unsaid since the last.
fn throttled(
    throttles: &SharedThrottles,
    pick: fn(&mut Throttles) -> &mut Throttle,
    say: impl FnOnce(u64),
) {
    let allowed = match throttles.lock() {
        Ok(mut t) => pick(&mut t).allow(Instant::now()),
        Err(_) => None,
    };
    if let Some(unsaid) = allowed {
        say(unsaid);
    }
}

/// What every connection task shares.
#[derive(Clone)]
struct Link {
    events: UnboundedSender<Event>,
    identity: (String, String),
    pcap: Pcap,
    shutdown: watch::Receiver<bool>,
    peers: Arc<PeerTable>,
    cer_timeout: Duration,
    throttles: SharedThrottles,
}

/// What the home links need: each realm's home AAA, the TLS client configuration.
struct Homes {
    config: BTreeMap<String, HomeAaa>,
    tls: Option<Arc<tls::ClientConfig>>,
    relay_timeout: Duration,
}

type Pcap = Option<Arc<Mutex<Recorder>>>;

/// What a connection task is asked to write.
#[derive(Debug)]
enum ToPeer {
    /// An answer of the core's.
    Answer(Message),
    /// A request we originate: the connection's peer state machine numbers it.
    Request(Message),
}

#[derive(Debug)]
enum Event {
    Connected(ConnId, SocketAddr, UnboundedSender<ToPeer>),
    Closed(ConnId),
    Input(aaa::Input),
    /// A request to originate on every open peer connection.
    Originate(Message),
    /// A peer's answer to a request we originated.
    PeerAnswer(ConnId, Message),
}

/// Where the core task reports its state.
struct Reports {
    status_file: StatusFile,
    status: watch::Sender<Status>,
    answers: Arc<Mutex<Vec<Message>>>,
}

impl Reports {
    fn write(&mut self, sessions: usize, peers: usize) {
        self.status_file.write(sessions, peers);
        self.status.send_if_modified(|s| {
            let new = Status { sessions, peers };
            let changed = *s != new;
            *s = new;
            changed
        });
    }
}

/// Does `what` with the pcap recorder, if there is one; a write error is logged.
fn with_pcap(pcap: &Pcap, what: impl FnOnce(&mut Recorder) -> std::io::Result<()>) {
    if let Some(p) = pcap {
        if let Ok(mut p) = p.lock() {
            if let Err(e) = what(&mut p) {
                warn!(error = %e, "writing the pcap");
            }
        }
    }
}

fn record(pcap: &Pcap, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
    with_pcap(pcap, |p| p.record(from, to, bytes));
}

fn capabilities(identity: &(String, String), local: IpAddr) -> Capabilities {
    Capabilities::swm(&identity.0, &identity.1, vec![local], "aaa-stub")
}

async fn core_task(
    mut core: Aaa<SubscriberStore>,
    mut rx: UnboundedReceiver<Event>,
    link: Link,
    home_aaas: Homes,
    mut reports: Reports,
) {
    let home_aaas = Arc::new(home_aaas);
    reports.write(core.session_count(), 0);
    let mut conns: HashMap<ConnId, (SocketAddr, UnboundedSender<ToPeer>)> = HashMap::new();
    let mut trim = HeapTrim::default();
    let mut homes: HashMap<String, UnboundedSender<Message>> = HashMap::new();
    let mut out = Vec::new();
    loop {
        let deadline = core.poll_timeout().map(Instant::from_std);
        let event = tokio::select! {
            e = rx.recv() => match e { Some(e) => e, None => return },
            _ = sleep_until(deadline) => Event::Input(aaa::Input::Timeout),
        };
        match event {
            Event::Connected(id, remote, tx) => {
                conns.insert(id, (remote, tx));
                trim.opened(conns.len());
            }
            Event::Closed(id) => {
                conns.remove(&id);
                if trim.closed(conns.len()) {
                    conns.shrink_to_fit();
                    release_free_memory();
                }
            }
            Event::Input(input) => core.handle(input, std::time::Instant::now(), &mut out),
            Event::Originate(request) => {
                for (_, tx) in conns.values() {
                    let _ = tx.send(ToPeer::Request(request.clone()));
                }
            }
            Event::PeerAnswer(id, answer) => {
                let peer = conns
                    .get(&id)
                    .map_or_else(|| format!("conn {id}"), |(a, _)| a.to_string());
                info!(
                    %peer,
                    command = answer.header.command_code,
                    result = answer.result_code().unwrap_or(0),
                    "answer to our request"
                );
                if let Ok(mut answers) = reports.answers.lock() {
                    answers.push(answer);
                }
            }
        }
        for o in out.drain(..) {
            match o {
                aaa::Output::Send { conn, message } => {
                    if let Some((_, tx)) = conns.get(&conn) {
                        let _ = tx.send(ToPeer::Answer(message));
                    }
                }
                aaa::Output::Relay {
                    realm,
                    addr,
                    message,
                } => {
                    let mut message = message;
                    if let Some(tx) = homes.get(&realm) {
                        match tx.send(message) {
                            Ok(()) => continue,
                            Err(e) => message = e.0,
                        }
                    }
                    let (tx, link_rx) = unbounded_channel();
                    let _ = tx.send(message);
                    homes.insert(realm.clone(), tx);
                    let home = home_aaas
                        .config
                        .get(&realm)
                        .cloned()
                        .unwrap_or_else(|| HomeAaa::from(addr));
                    tokio::spawn(home_link(
                        realm,
                        home,
                        link_rx,
                        link.clone(),
                        Arc::clone(&home_aaas),
                    ));
                }
                aaa::Output::Log {
                    conn,
                    session,
                    user,
                    result,
                } => {
                    let peer = conns
                        .get(&conn)
                        .map_or_else(|| format!("conn {conn}"), |(a, _)| a.to_string());
                    info!(%peer, %session, %user, %result, sessions = core.session_count(), "swm");
                }
            }
        }
        reports.write(core.session_count(), conns.len());
    }
}

/// When to hand the memory of closed connections back to the system: the allocator
/// keeps what is freed for reuse, so after a burst of connections (thousands of idle
/// ones, say) the process would stay at its peak for ever. Asked after every close: yes
/// when the connections open are at most half of, or 256 fewer than, their most since
/// the last time it said yes.
#[derive(Debug, Default)]
struct HeapTrim {
    most: usize,
}

impl HeapTrim {
    fn opened(&mut self, open: usize) {
        self.most = self.most.max(open);
    }

    fn closed(&mut self, open: usize) -> bool {
        let trim = self.most > open && (open <= self.most / 2 || self.most - open >= 256);
        if trim {
            self.most = open;
        }
        trim
    }
}

/// Returns the allocator's free memory to the system (glibc's `malloc_trim`, which
/// releases every free page of every arena, not only the top of the heap).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointer.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The `--status-file`: rewritten (temp file + rename, so readers never see half of it)
/// whenever the summary changes.
struct StatusFile {
    path: Option<PathBuf>,
    last: Option<String>,
}

impl StatusFile {
    fn new(path: Option<PathBuf>) -> Self {
        Self { path, last: None }
    }

    fn write(&mut self, sessions: usize, peers: usize) {
        let Some(path) = &self.path else { return };
        let text = format!("{{\"sessions\": {sessions}, \"peers\": {peers}}}");
        if self.last.as_deref() == Some(text.as_str()) {
            return;
        }
        let tmp = path.with_extension("tmp");
        let written =
            std::fs::write(&tmp, format!("{text}\n")).and_then(|()| std::fs::rename(&tmp, path));
        match written {
            Ok(()) => self.last = Some(text),
            Err(e) => warn!(path = %path.display(), "writing the status file: {e}"),
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A connection just accepted: the TLS handshake on the TLS listener, then the peer;
/// both within `cer_timeout` of the accept. Holds its `slot` until it ends.
async fn accepted_connection(
    stream: TcpStream,
    tls: Option<Arc<tls::ServerConfig>>,
    id: ConnId,
    link: Link,
    slot: OwnedSemaphorePermit,
) {
    let (local, remote) = match (stream.local_addr(), stream.peer_addr()) {
        (Ok(l), Ok(r)) => (l, r),
        _ => return,
    };
    let deadline = Instant::now() + link.cer_timeout;
    match tls {
        None => connection(stream, (local, remote), None, id, link, deadline).await,
        Some(config) => {
            match tokio::time::timeout_at(deadline, tls::accept(config, stream)).await {
                Ok(Ok(stream)) => {
                    let names = tls::client_identities(&stream);
                    connection(stream, (local, remote), Some(names), id, link, deadline).await
                }
                Ok(Err(e)) => throttled(
                    &link.throttles,
                    |t| &mut t.tls,
                    |unsaid| warn!(peer = %remote, error = %e, unsaid, "TLS handshake failed"),
                ),
                Err(_) => throttled(
                    &link.throttles,
                    |t| &mut t.tls,
                    |unsaid| warn!(peer = %remote, unsaid, "no TLS handshake in time, closing"),
                ),
            }
        }
    }
    drop(slot);
}

/// The CEA refusing a CER from an unknown peer (RFC 6733 section 5.3), or `None` when
/// `bytes` are not a well-formed CER (the peer state machine answers those) or the peer
/// is known.
fn refuse_unknown(
    bytes: &[u8],
    peers: &PeerTable,
    connection: Connection<'_>,
    ours: &Capabilities,
) -> Option<(Vec<u8>, Refusal)> {
    let message = Message::from_bytes(bytes).ok()?;
    if message.header.command_code != command::CAPABILITIES_EXCHANGE
        || !message.header.flags.request()
    {
        return None;
    }
    let cer = CapabilitiesExchangeRequest::parse(&message).ok()?;
    let refusal = peers
        .admit(&cer.capabilities.origin_host, connection)
        .err()?;
    let cea = CapabilitiesExchangeAnswer {
        result_code: result::DIAMETER_UNKNOWN_PEER,
        capabilities: ours.clone(),
        error_message: Some("unknown peer".into()),
        failed_avp: None,
    };
    let bytes = cea.to_message(&message.header).to_vec().ok()?;
    Some((bytes, refusal))
}

/// One peer connection from an ePDG (or a visited AAA), over TCP or TLS: the peer state
/// machine, and the application requests handed to the core. `certificate` holds the
/// identities of the peer's certificate over TLS. The CER must come by `deadline`.
async fn connection<S: AsyncRead + AsyncWrite + Send + 'static>(
    stream: S,
    (local, remote): (SocketAddr, SocketAddr),
    certificate: Option<Vec<String>>,
    id: ConnId,
    link: Link,
    deadline: Instant,
) {
    let Link {
        events,
        identity,
        pcap,
        mut shutdown,
        peers,
        throttles,
        ..
    } = link;
    let (answers, mut answers_rx) = unbounded_channel();
    if events.send(Event::Connected(id, remote, answers)).is_err() {
        return;
    }
    with_pcap(&pcap, |p| p.connect(remote, local));
    let caps = capabilities(&identity, local.ip());
    let mut config = PeerConfig::new(caps.clone());
    config.capabilities_timeout = deadline.saturating_duration_since(Instant::now());
    let mut peer = Peer::new(config, Role::Responder, Box::new(rand::random::<u32>));
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut framer = Framer::new(MAX_MESSAGE);
    let mut out = Vec::new();
    // Empty until the peer sends something: an idle connection holds next to nothing.
    let mut inbound: Vec<u8> = Vec::new();
    peer.handle(
        peer::Input::ConnectionUp,
        std::time::Instant::now(),
        &mut out,
    );
    'run: loop {
        for o in out.drain(..) {
            match o {
                peer::Output::Send(bytes) => {
                    record(&pcap, local, remote, &bytes);
                    if wr.write_all(&bytes).await.is_err() {
                        break 'run;
                    }
                }
                peer::Output::Close => break 'run,
                peer::Output::Event(PeerEvent::Request(message)) => {
                    let _ = events.send(Event::Input(aaa::Input::Request { conn: id, message }));
                }
                peer::Output::Event(PeerEvent::Answer(message)) => {
                    let _ = events.send(Event::PeerAnswer(id, message));
                }
                peer::Output::Event(PeerEvent::Open { peer: caps, .. }) => {
                    info!(peer = %remote, origin_host = %caps.origin_host, "peer open (CER/CEA)");
                }
                peer::Output::Event(PeerEvent::Down(reason)) => {
                    if peer.peer_capabilities().is_some() {
                        info!(peer = %remote, ?reason, "peer down");
                    } else {
                        // Never opened: anyone can cause this one.
                        throttled(
                            &throttles,
                            |t| &mut t.connected,
                            |unsaid| info!(peer = %remote, ?reason, unsaid, "peer down before CER/CEA"),
                        );
                    }
                    break 'run;
                }
                peer::Output::Event(e) => info!(peer = %remote, event = ?e, "peer event"),
            }
        }
        let timer = peer.poll_timeout().map(Instant::from_std);
        tokio::select! {
            n = rd.read_buf(&mut inbound) => match n {
                Ok(0) | Err(_) => {
                    peer.handle(peer::Input::ConnectionDown, std::time::Instant::now(), &mut out);
                }
                Ok(_) => {
                    framer.push(&inbound);
                    inbound = next_read_buffer(std::mem::take(&mut inbound));
                    loop {
                        let m = match framer.next_message() {
                            Ok(Some(m)) => m,
                            Ok(None) => break,
                            Err(e) => {
                                warn!(peer = %remote, error = %e, "unframeable stream, closing");
                                break 'run;
                            }
                        };
                        record(&pcap, remote, local, &m);
                        if peer.state() == PeerState::WaitCer {
                            let connection = Connection {
                                source: remote.ip(),
                                certificate_identities: certificate.as_deref(),
                            };
                            if let Some((cea, why)) = refuse_unknown(&m, &peers, connection, &caps) {
                                throttled(&throttles, |t| &mut t.refused, |unsaid| {
                                    warn!(peer = %remote, reason = %why, unsaid, "CER refused: DIAMETER_UNKNOWN_PEER (3010)")
                                });
                                record(&pcap, local, remote, &cea);
                                let _ = wr.write_all(&cea).await;
                                break 'run;
                            }
                        }
                        peer.handle(peer::Input::Message(&m), std::time::Instant::now(), &mut out);
                    }
                }
            },
            m = answers_rx.recv() => {
                let m = match m {
                    Some(ToPeer::Answer(m)) => m,
                    Some(ToPeer::Request(mut m)) => {
                        m.header.hop_by_hop = peer.next_hop_by_hop();
                        m.header.end_to_end = peer.next_end_to_end();
                        m
                    }
                    None => break 'run,
                };
                match m.to_vec() {
                    Ok(bytes) => {
                        record(&pcap, local, remote, &bytes);
                        if wr.write_all(&bytes).await.is_err() {
                            break 'run;
                        }
                    }
                    Err(e) => warn!(error = %e, "emitting an answer"),
                }
            }
            _ = sleep_until(timer) => {
                peer.handle(peer::Input::Timeout, std::time::Instant::now(), &mut out);
            }
            changed = shutdown.changed() => {
                if changed.is_err() || !peer.is_open() {
                    break 'run;
                }
                peer.disconnect(DisconnectCause::Rebooting, std::time::Instant::now(), &mut out);
            }
        }
    }
    // TLS: close_notify; TCP: FIN. Bounded: a peer that reads nothing cannot hold us.
    let _ = tokio::time::timeout(Duration::from_secs(1), wr.shutdown()).await;
    with_pcap(&pcap, |p| p.close(local, remote));
    let _ = events.send(Event::Closed(id));
}

/// The visited role's connection to one home AAA: connect (TCP, then TLS when the realm
/// asks for it; bounded by the relay timeout), CER/CEA, then relay requests and hand the
/// answers to the core. Any failure is reported as `HomeUnreachable`, which answers
/// every request pending there with DIAMETER_UNABLE_TO_DELIVER; the next relay opens a
/// new link.
async fn home_link(
    realm: String,
    home: HomeAaa,
    requests: UnboundedReceiver<Message>,
    link: Link,
    homes: Arc<Homes>,
) {
    let addr = home.address;
    let events = link.events.clone();
    let unreachable = |why: String| {
        warn!(%realm, home = %addr, %why, "home AAA unreachable");
        let _ = events.send(Event::Input(aaa::Input::HomeUnreachable {
            realm: realm.clone(),
        }));
    };
    let deadline = Instant::now() + homes.relay_timeout;
    let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return unreachable(e.to_string()),
        Err(_) => return unreachable("connect timed out".into()),
    };
    let local = match stream.local_addr() {
        Ok(l) => l,
        Err(e) => return unreachable(e.to_string()),
    };
    let why = if !home.tls {
        home_session(stream, &realm, &home, local, requests, &link).await
    } else {
        let (Some(config), Some(host)) = (homes.tls.clone(), home.host.as_deref()) else {
            return unreachable("tls = true without [tls] or host".into());
        };
        match tokio::time::timeout_at(deadline, tls::connect(config, stream, host)).await {
            Ok(Ok(s)) => home_session(s, &realm, &home, local, requests, &link).await,
            Ok(Err(e)) => Some(format!("TLS handshake: {e}")),
            Err(_) => Some("TLS handshake timed out".into()),
        }
    };
    if let Some(why) = why {
        unreachable(why);
    }
}

/// The Diameter side of a home link, over TCP or TLS; why it ended (`None`: the core
/// dropped the link).
async fn home_session<S: AsyncRead + AsyncWrite + Send + 'static>(
    stream: S,
    realm: &str,
    home: &HomeAaa,
    local: SocketAddr,
    mut requests: UnboundedReceiver<Message>,
    link: &Link,
) -> Option<String> {
    let (addr, pcap, events) = (home.address, &link.pcap, &link.events);
    with_pcap(pcap, |p| p.connect(local, addr));
    let mut peer = Peer::new(
        PeerConfig::new(capabilities(&link.identity, local.ip())),
        Role::Initiator,
        Box::new(rand::random::<u32>),
    );
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut framer = Framer::new(MAX_MESSAGE);
    let mut queue: Vec<Message> = Vec::new();
    let mut out = Vec::new();
    let mut inbound: Vec<u8> = Vec::new();
    peer.handle(
        peer::Input::ConnectionUp,
        std::time::Instant::now(),
        &mut out,
    );
    let why = 'run: loop {
        let mut send: Vec<Vec<u8>> = Vec::new();
        for o in out.drain(..) {
            match o {
                peer::Output::Send(bytes) => send.push(bytes),
                peer::Output::Close => break 'run Some("closed".into()),
                peer::Output::Event(PeerEvent::Open { peer: caps, .. }) => {
                    if let Some(host) = home.host.as_deref() {
                        if !caps.origin_host.eq_ignore_ascii_case(host) {
                            break 'run Some(format!(
                                "its CEA names Origin-Host {}, not {host}",
                                caps.origin_host
                            ));
                        }
                    }
                    info!(%realm, home = %addr, tls = home.tls, "home AAA open (CER/CEA)");
                    send.extend(queue.drain(..).filter_map(|m| m.to_vec().ok()));
                }
                peer::Output::Event(PeerEvent::Answer(message)) => {
                    let _ = events.send(Event::Input(aaa::Input::HomeAnswer {
                        realm: realm.to_string(),
                        message,
                    }));
                }
                peer::Output::Event(PeerEvent::Down(reason)) => {
                    break 'run Some(format!("{reason:?}"));
                }
                peer::Output::Event(e) => info!(%realm, event = ?e, "home peer event"),
            }
        }
        for bytes in send {
            record(pcap, local, addr, &bytes);
            if let Err(e) = wr.write_all(&bytes).await {
                break 'run Some(e.to_string());
            }
        }
        let timer = peer.poll_timeout().map(Instant::from_std);
        tokio::select! {
            n = rd.read_buf(&mut inbound) => match n {
                Ok(0) | Err(_) => {
                    peer.handle(peer::Input::ConnectionDown, std::time::Instant::now(), &mut out);
                }
                Ok(_) => {
                    framer.push(&inbound);
                    inbound = next_read_buffer(std::mem::take(&mut inbound));
                    loop {
                        match framer.next_message() {
                            Ok(Some(m)) => {
                                record(pcap, addr, local, &m);
                                peer.handle(peer::Input::Message(&m), std::time::Instant::now(), &mut out);
                            }
                            Ok(None) => break,
                            Err(e) => break 'run Some(e.to_string()),
                        }
                    }
                }
            },
            m = requests.recv() => {
                let Some(m) = m else { break 'run None };
                if peer.is_open() {
                    if let Ok(bytes) = m.to_vec() {
                        record(pcap, local, addr, &bytes);
                        if let Err(e) = wr.write_all(&bytes).await {
                            break 'run Some(e.to_string());
                        }
                    }
                } else {
                    queue.push(m);
                }
            }
            _ = sleep_until(timer) => {
                peer.handle(peer::Input::Timeout, std::time::Instant::now(), &mut out);
            }
        }
    };
    with_pcap(pcap, |p| p.close(local, addr));
    why
}

#[cfg(test)]
mod tests {
    use super::{HeapTrim, StatusFile, Throttle};
    use std::time::Duration;
    use tokio::time::Instant;

    #[test]
    fn a_throttled_line_is_said_once_a_second_with_the_count_of_the_unsaid() {
        let t0 = Instant::now();
        let mut throttle = Throttle::default();
        assert_eq!(throttle.allow(t0), Some(0));
        let said: Vec<Option<u64>> = (1..=2500u64)
            .map(|ms| throttle.allow(t0 + Duration::from_millis(ms)))
            .filter(Option::is_some)
            .collect();
        // At 1 s (999 unsaid before it) and 2 s (999 more).
        assert_eq!(said, vec![Some(999), Some(999)]);
    }

    #[test]
    fn the_heap_is_trimmed_after_many_closes_not_after_each() {
        let mut trim = HeapTrim::default();
        for open in 1..=1000 {
            trim.opened(open);
        }
        let trims: Vec<usize> = (0..1000).rev().filter(|&open| trim.closed(open)).collect();
        // 256 fewer, 256 fewer, then half of what was left each time, down to none.
        assert_eq!(trims, vec![744, 488, 244, 122, 61, 30, 15, 7, 3, 1, 0]);
        // One of a hundred peers reconnecting, again and again: no trim.
        (1..=100).for_each(|open| trim.opened(open));
        for _ in 0..1000 {
            assert!(!trim.closed(99));
            trim.opened(100);
        }
    }

    #[test]
    fn the_status_file_counts_sessions_and_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        let mut status = StatusFile::new(Some(path.clone()));
        status.write(0, 0);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"sessions\": 0, \"peers\": 0}\n"
        );
        status.write(2, 1);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"sessions\": 2, \"peers\": 1}\n"
        );
        assert!(!dir.path().join("status.tmp").exists());
        // Without a path nothing is written.
        StatusFile::new(None).write(1, 1);
    }
}
