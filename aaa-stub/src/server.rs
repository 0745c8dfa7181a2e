//! The `aaa-stub` binary's tokio driver around [`crate::core`], in the library so that a
//! test can run the very server the binary runs (in-process, on loopback): one task per
//! peer connection (a [`Framer`] and the Diameter peer state machine: CER/CEA, DWR/DWA,
//! DPR/DPA), one task per home AAA in the visited role (connects, CER, relays), and one
//! task that owns the protocol core and the subscriber store.
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

use pmip_common::diameter::base::{Capabilities, DisconnectCause};
use pmip_common::diameter::peer::{self, Peer, PeerConfig, PeerEvent, Role};
use pmip_common::diameter::{Framer, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::AaaConfig;
use crate::core::{self as aaa, Aaa, ConnId};
use crate::pcap::Recorder;
use crate::subscriber::SubscriberStore;

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
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let (events, events_rx) = unbounded_channel();
        Ok(Server {
            listener,
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
        let core = Aaa::new(config, store, Box::new(rand::rngs::OsRng));
        tokio::spawn(core_task(
            core,
            events_rx,
            events.clone(),
            identity.clone(),
            relay_timeout,
            pcap.clone(),
            Reports {
                status_file: StatusFile::new(status_file),
                status: status.0,
                answers,
            },
        ));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut next_id: ConnId = 0;
        tokio::pin!(stop);
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
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
            next_id += 1;
            info!(peer = %remote, conn = next_id, "peer connected");
            tokio::spawn(connection(
                stream,
                next_id,
                events.clone(),
                identity.clone(),
                pcap.clone(),
                shutdown_rx.clone(),
            ));
        }
        info!("aaa stopping: disconnecting peers");
        let _ = shutdown.send(true);
        let deadline = Instant::now() + Duration::from_secs(1);
        while shutdown.receiver_count() > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        info!("aaa stopped");
    }
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
    events: UnboundedSender<Event>,
    identity: (String, String),
    relay_timeout: Duration,
    pcap: Pcap,
    mut reports: Reports,
) {
    reports.write(core.session_count(), 0);
    let mut conns: HashMap<ConnId, (SocketAddr, UnboundedSender<ToPeer>)> = HashMap::new();
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
            }
            Event::Closed(id) => {
                conns.remove(&id);
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
                    tokio::spawn(home_link(
                        realm,
                        addr,
                        link_rx,
                        events.clone(),
                        identity.clone(),
                        relay_timeout,
                        pcap.clone(),
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

/// One peer connection from an ePDG (or a visited AAA): the peer state machine, and the
/// application requests handed to the core.
async fn connection(
    stream: TcpStream,
    id: ConnId,
    events: UnboundedSender<Event>,
    identity: (String, String),
    pcap: Pcap,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let (local, remote) = match (stream.local_addr(), stream.peer_addr()) {
        (Ok(l), Ok(r)) => (l, r),
        _ => return,
    };
    let (answers, mut answers_rx) = unbounded_channel();
    if events.send(Event::Connected(id, remote, answers)).is_err() {
        return;
    }
    with_pcap(&pcap, |p| p.connect(remote, local));
    let caps = capabilities(&identity, local.ip());
    let mut peer = Peer::new(
        PeerConfig::new(caps),
        Role::Responder,
        Box::new(rand::random::<u32>),
    );
    let (mut rd, mut wr) = stream.into_split();
    let mut framer = Framer::new(1 << 20);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
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
                    info!(peer = %remote, ?reason, "peer down");
                    break 'run;
                }
                peer::Output::Event(e) => info!(peer = %remote, event = ?e, "peer event"),
            }
        }
        let deadline = peer.poll_timeout().map(Instant::from_std);
        tokio::select! {
            n = rd.read(&mut buf) => match n {
                Ok(0) | Err(_) => {
                    peer.handle(peer::Input::ConnectionDown, std::time::Instant::now(), &mut out);
                }
                Ok(n) => {
                    framer.push(&buf[..n]);
                    loop {
                        match framer.next_message() {
                            Ok(Some(m)) => {
                                record(&pcap, remote, local, &m);
                                peer.handle(peer::Input::Message(&m), std::time::Instant::now(), &mut out);
                            }
                            Ok(None) => break,
                            Err(e) => {
                                warn!(peer = %remote, error = %e, "unframeable stream, closing");
                                break 'run;
                            }
                        }
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
            _ = sleep_until(deadline) => {
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
    with_pcap(&pcap, |p| p.close(local, remote));
    let _ = events.send(Event::Closed(id));
}

/// The visited role's connection to one home AAA: connect (bounded by the relay
/// timeout), CER/CEA, then relay requests and hand the answers to the core. Any failure
/// is reported as `HomeUnreachable`, which answers every request pending there with
/// DIAMETER_UNABLE_TO_DELIVER; the next relay opens a new link.
async fn home_link(
    realm: String,
    addr: SocketAddr,
    mut requests: UnboundedReceiver<Message>,
    events: UnboundedSender<Event>,
    identity: (String, String),
    relay_timeout: Duration,
    pcap: Pcap,
) {
    let unreachable = |why: String| {
        warn!(%realm, home = %addr, %why, "home AAA unreachable");
        let _ = events.send(Event::Input(aaa::Input::HomeUnreachable {
            realm: realm.clone(),
        }));
    };
    let stream = match tokio::time::timeout(relay_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return unreachable(e.to_string()),
        Err(_) => return unreachable("connect timed out".into()),
    };
    let local = match stream.local_addr() {
        Ok(l) => l,
        Err(e) => return unreachable(e.to_string()),
    };
    with_pcap(&pcap, |p| p.connect(local, addr));
    let mut peer = Peer::new(
        PeerConfig::new(capabilities(&identity, local.ip())),
        Role::Initiator,
        Box::new(rand::random::<u32>),
    );
    let (mut rd, mut wr) = stream.into_split();
    let mut framer = Framer::new(1 << 20);
    let mut queue: Vec<Message> = Vec::new();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    peer.handle(
        peer::Input::ConnectionUp,
        std::time::Instant::now(),
        &mut out,
    );
    loop {
        let mut send: Vec<Vec<u8>> = Vec::new();
        for o in out.drain(..) {
            match o {
                peer::Output::Send(bytes) => send.push(bytes),
                peer::Output::Close => return unreachable("closed".into()),
                peer::Output::Event(PeerEvent::Open { .. }) => {
                    info!(%realm, home = %addr, "home AAA open (CER/CEA)");
                    send.extend(queue.drain(..).filter_map(|m| m.to_vec().ok()));
                }
                peer::Output::Event(PeerEvent::Answer(message)) => {
                    let _ = events.send(Event::Input(aaa::Input::HomeAnswer {
                        realm: realm.clone(),
                        message,
                    }));
                }
                peer::Output::Event(PeerEvent::Down(reason)) => {
                    return unreachable(format!("{reason:?}"));
                }
                peer::Output::Event(e) => info!(%realm, event = ?e, "home peer event"),
            }
        }
        for bytes in send {
            record(&pcap, local, addr, &bytes);
            if let Err(e) = wr.write_all(&bytes).await {
                return unreachable(e.to_string());
            }
        }
        let deadline = peer.poll_timeout().map(Instant::from_std);
        tokio::select! {
            n = rd.read(&mut buf) => match n {
                Ok(0) | Err(_) => {
                    peer.handle(peer::Input::ConnectionDown, std::time::Instant::now(), &mut out);
                }
                Ok(n) => {
                    framer.push(&buf[..n]);
                    loop {
                        match framer.next_message() {
                            Ok(Some(m)) => {
                                record(&pcap, addr, local, &m);
                                peer.handle(peer::Input::Message(&m), std::time::Instant::now(), &mut out);
                            }
                            Ok(None) => break,
                            Err(e) => return unreachable(e.to_string()),
                        }
                    }
                }
            },
            m = requests.recv() => {
                let Some(m) = m else { return };
                if peer.is_open() {
                    if let Ok(bytes) = m.to_vec() {
                        record(&pcap, local, addr, &bytes);
                        if let Err(e) = wr.write_all(&bytes).await {
                            return unreachable(e.to_string());
                        }
                    }
                } else {
                    queue.push(m);
                }
            }
            _ = sleep_until(deadline) => {
                peer.handle(peer::Input::Timeout, std::time::Instant::now(), &mut out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StatusFile;

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
