//! The AAA server on the in-memory network: the `aaa-stub` core ([`aaa_stub::core::Aaa`])
//! behind one Diameter peer state machine per connection (RFC 6733 section 5.6: CER/CEA,
//! DWR/DWA, DPR/DPA) and a [`Framer`], as the `aaa-stub` binary runs it: connections
//! from ePDGs (and visited AAAs) on its listening address, requests to the core; in the
//! visited role, one connection per home realm, opened on the first relayed request,
//! the requests queued until CER/CEA is done, the answers back to the core, and a
//! connection that is refused or goes down reported as that home being unreachable.
//! Subscribers are kept in memory ([`MemorySubscribers`]), their SQNs too.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use aaa_stub::config::AaaConfig;
use aaa_stub::core::{Aaa, Input, Output, Subscribers};
use aaa_stub::subscriber::{Key128, Subscriber};
use pmip_common::diameter::base::Capabilities;
use pmip_common::diameter::peer::{self, Peer, PeerConfig, PeerEvent, Role};
use pmip_common::diameter::{Framer, Message};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use super::{ConnId, Node, NodeInput, NodeOutput, StreamEvent};

/// Subscribers and their last used SQNs, in memory.
#[derive(Debug, Default, Clone)]
pub struct MemorySubscribers {
    subscribers: BTreeMap<String, (Subscriber, u64)>,
}

impl MemorySubscribers {
    /// Adds (or replaces) `imsi` with keys, AMF 0x8000, the APNs it may use and the
    /// last SQN used for it.
    pub fn add(&mut self, imsi: &str, k: [u8; 16], opc: [u8; 16], apns: &[&str], sqn: u64) {
        let subscriber = Subscriber {
            imsi: imsi.into(),
            k: Key128(k),
            opc: Key128(opc),
            amf: [0x80, 0],
            apns: apns.iter().map(|a| a.to_string()).collect(),
        };
        self.subscribers.insert(imsi.into(), (subscriber, sqn));
    }

    /// The last SQN used for `imsi`.
    pub fn sqn(&self, imsi: &str) -> Option<u64> {
        self.subscribers.get(imsi).map(|(_, sqn)| *sqn)
    }
}

impl Subscribers for MemorySubscribers {
    fn lookup(&self, imsi: &str) -> Option<(Subscriber, u64)> {
        self.subscribers.get(imsi).cloned()
    }

    fn commit_sqn(&mut self, imsi: &str, sqn: u64) -> Result<(), String> {
        match self.subscribers.get_mut(imsi) {
            Some((_, last)) => {
                *last = sqn;
                Ok(())
            }
            None => Err(format!("no subscriber {imsi}")),
        }
    }
}

struct Conn {
    peer: Peer,
    framer: Framer,
    /// The home realm this connection relays to (visited role), or None for a client.
    home: Option<String>,
}

enum HomeLink {
    Connecting { tag: u64, queue: Vec<Message> },
    Up { conn: ConnId, queue: Vec<Message> },
}

/// The largest Diameter message a connection accepts, as the binary's.
const MAX_MESSAGE: usize = 1 << 20;

/// An AAA server and what it logged.
pub struct AaaNode {
    name: String,
    /// Where ePDGs (and visited AAAs) connect.
    pub listen: SocketAddr,
    identity: (String, String),
    pub core: Aaa<MemorySubscribers>,
    conns: BTreeMap<ConnId, Conn>,
    homes: BTreeMap<String, HomeLink>,
    next_tag: u64,
    /// The core's log lines (session, user, result), with their time.
    pub logs: Vec<(Instant, String)>,
    /// While set, requests from peers go unanswered (the connection and its watchdog stay
    /// up): an AAA that hangs.
    pub silent: bool,
    /// Requests dropped while silent.
    pub unanswered: u64,
}

impl AaaNode {
    /// The core configured by `config` (its `listen` is where it is reached), with
    /// `subscribers`; `seed` seeds the core's own randomness (EAP-AKA RANDs).
    pub fn new(name: &str, config: AaaConfig, subscribers: MemorySubscribers, seed: u64) -> Self {
        let listen = config.listen;
        let identity = (config.origin_host.clone(), config.origin_realm.clone());
        AaaNode {
            name: name.into(),
            listen,
            identity,
            core: Aaa::new(config, subscribers, Box::new(StdRng::seed_from_u64(seed))),
            conns: BTreeMap::new(),
            homes: BTreeMap::new(),
            next_tag: 1,
            logs: Vec::new(),
            silent: false,
            unanswered: 0,
        }
    }

    /// The AAA that `aaa.toml` text `config` describes (its `subscribers` and
    /// `sqn_state` files are not read: `subscribers` stands in for them).
    pub fn configured(
        name: &str,
        config: &str,
        subscribers: MemorySubscribers,
        seed: u64,
    ) -> anyhow::Result<Self> {
        let layers = pmip_node::config::Layers::parse(
            config,
            std::path::Path::new(name),
            aaa_stub::config::ConfigLayer::default(),
        )?;
        let config = AaaConfig::resolve(&layers)?;
        Ok(AaaNode::new(name, config, subscribers, seed))
    }

    /// Diameter sessions open at the core (authenticated or authenticating, not ended).
    pub fn sessions(&self) -> usize {
        self.core.session_count()
    }

    /// Sessions relayed to a home AAA (visited role) and relayed requests awaiting their
    /// answer.
    pub fn relayed(&self) -> (usize, usize) {
        self.core.relay_counts()
    }

    /// Peer connections open now.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    fn peer(&self, role: Role, local: IpAddr, rng: &mut StdRng) -> Peer {
        let caps = Capabilities::swm(&self.identity.0, &self.identity.1, vec![local], "aaa-stub");
        let mut random = StdRng::seed_from_u64(rng.gen());
        Peer::new(
            PeerConfig::new(caps),
            role,
            Box::new(move || random.next_u32()),
        )
    }

    fn stream(
        &mut self,
        event: StreamEvent<'_>,
        now: Instant,
        rng: &mut StdRng,
        out: &mut Vec<NodeOutput>,
    ) {
        match event {
            StreamEvent::Up {
                conn, tag, local, ..
            } => {
                let home = tag.and_then(|t| {
                    self.homes
                        .iter()
                        .find(|(_, l)| matches!(l, HomeLink::Connecting { tag, .. } if *tag == t))
                        .map(|(realm, _)| realm.clone())
                });
                if tag.is_some() && home.is_none() {
                    // A connection we no longer want.
                    out.push(NodeOutput::Close { conn });
                    return;
                }
                let role = if home.is_some() {
                    Role::Initiator
                } else {
                    Role::Responder
                };
                if let Some(realm) = &home {
                    if let Some(link) = self.homes.get_mut(realm) {
                        let queue = match link {
                            HomeLink::Connecting { queue, .. } => std::mem::take(queue),
                            HomeLink::Up { queue, .. } => std::mem::take(queue),
                        };
                        *link = HomeLink::Up { conn, queue };
                    }
                }
                let mut peer = self.peer(role, local.ip(), rng);
                let mut peer_out = Vec::new();
                peer.handle(peer::Input::ConnectionUp, now, &mut peer_out);
                self.conns.insert(
                    conn,
                    Conn {
                        peer,
                        framer: Framer::new(MAX_MESSAGE),
                        home,
                    },
                );
                self.peer_outputs(conn, peer_out, now, out);
            }
            StreamEvent::Refused { tag } => {
                let realm = self
                    .homes
                    .iter()
                    .find(|(_, l)| matches!(l, HomeLink::Connecting { tag: t, .. } if *t == tag))
                    .map(|(realm, _)| realm.clone());
                if let Some(realm) = realm {
                    self.homes.remove(&realm);
                    self.core(Input::HomeUnreachable { realm }, now, out);
                }
            }
            StreamEvent::Data { conn, bytes } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                c.framer.push(bytes);
                let mut peer_out = Vec::new();
                loop {
                    match c.framer.next_message() {
                        Ok(Some(m)) => c.peer.handle(peer::Input::Message(&m), now, &mut peer_out),
                        Ok(None) => break,
                        Err(_) => {
                            // An unframeable stream is closed, as by the binary.
                            out.push(NodeOutput::Close { conn });
                            self.lost(conn, now, out);
                            return;
                        }
                    }
                }
                self.peer_outputs(conn, peer_out, now, out);
            }
            StreamEvent::Down { conn } => {
                let mut peer_out = Vec::new();
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.peer
                        .handle(peer::Input::ConnectionDown, now, &mut peer_out);
                }
                self.peer_outputs(conn, peer_out, now, out);
                self.lost(conn, now, out);
            }
        }
    }

    /// The connection is gone: forget it; a home link's realm is unreachable.
    fn lost(&mut self, conn: ConnId, now: Instant, out: &mut Vec<NodeOutput>) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(realm) = c.home {
            self.homes.remove(&realm);
            self.core(Input::HomeUnreachable { realm }, now, out);
        }
    }

    fn peer_outputs(
        &mut self,
        conn: ConnId,
        peer_out: Vec<peer::Output>,
        now: Instant,
        out: &mut Vec<NodeOutput>,
    ) {
        for o in peer_out {
            match o {
                peer::Output::Send(bytes) => out.push(NodeOutput::Send { conn, bytes }),
                peer::Output::Close => {
                    out.push(NodeOutput::Close { conn });
                    self.lost(conn, now, out);
                }
                peer::Output::Event(PeerEvent::Request(_)) if self.silent => {
                    self.unanswered += 1;
                }
                peer::Output::Event(PeerEvent::Request(message)) => {
                    let input = Input::Request {
                        conn: conn.0,
                        message,
                    };
                    self.core(input, now, out);
                }
                peer::Output::Event(PeerEvent::Answer(message)) => {
                    let realm = self.conns.get(&conn).and_then(|c| c.home.clone());
                    if let Some(realm) = realm {
                        self.core(Input::HomeAnswer { realm, message }, now, out);
                    }
                }
                peer::Output::Event(PeerEvent::Open { .. }) => {
                    let realm = self.conns.get(&conn).and_then(|c| c.home.clone());
                    if let Some(HomeLink::Up { queue, .. }) =
                        realm.and_then(|r| self.homes.get_mut(&r))
                    {
                        for m in std::mem::take(queue) {
                            if let Ok(bytes) = m.to_vec() {
                                out.push(NodeOutput::Send { conn, bytes });
                            }
                        }
                    }
                }
                peer::Output::Event(PeerEvent::Down(_)) => self.lost(conn, now, out),
                peer::Output::Event(_) => {}
            }
        }
    }

    fn core(&mut self, input: Input, now: Instant, out: &mut Vec<NodeOutput>) {
        let mut core_out = Vec::new();
        self.core.handle(input, now, &mut core_out);
        for o in core_out {
            match o {
                Output::Send { conn, message } => {
                    let conn = ConnId(conn);
                    if let (true, Ok(bytes)) = (self.conns.contains_key(&conn), message.to_vec()) {
                        out.push(NodeOutput::Send { conn, bytes });
                    }
                }
                Output::Relay {
                    realm,
                    addr,
                    message,
                } => self.relay(realm, addr, message, out),
                Output::Log {
                    session,
                    user,
                    result,
                    ..
                } => self.logs.push((
                    now,
                    format!("session={session} user={user} result={result}"),
                )),
            }
        }
    }

    fn relay(
        &mut self,
        realm: String,
        addr: SocketAddr,
        message: Message,
        out: &mut Vec<NodeOutput>,
    ) {
        match self.homes.get_mut(&realm) {
            Some(HomeLink::Up { conn, queue }) => {
                let open = self.conns.get(conn).is_some_and(|c| c.peer.is_open());
                match (open, message.to_vec()) {
                    (true, Ok(bytes)) => out.push(NodeOutput::Send { conn: *conn, bytes }),
                    (true, Err(_)) => {}
                    (false, _) => queue.push(message),
                }
            }
            Some(HomeLink::Connecting { queue, .. }) => queue.push(message),
            None => {
                let tag = self.next_tag;
                self.next_tag += 1;
                self.homes.insert(
                    realm,
                    HomeLink::Connecting {
                        tag,
                        queue: vec![message],
                    },
                );
                out.push(NodeOutput::Connect {
                    tag,
                    from: self.listen.ip(),
                    to: addr,
                });
            }
        }
    }
}

impl Node for AaaNode {
    fn name(&self) -> &str {
        &self.name
    }

    fn addresses(&self) -> Vec<IpAddr> {
        vec![self.listen.ip()]
    }

    fn listens(&self) -> Vec<SocketAddr> {
        vec![self.listen]
    }

    fn handle(
        &mut self,
        input: NodeInput<'_>,
        now: Instant,
        rng: &mut StdRng,
        out: &mut Vec<NodeOutput>,
    ) {
        match input {
            NodeInput::Stream(event) => self.stream(event, now, rng, out),
            NodeInput::Timeout => {
                let due: Vec<ConnId> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.peer.poll_timeout().is_some_and(|t| t <= now))
                    .map(|(id, _)| *id)
                    .collect();
                for conn in due {
                    let mut peer_out = Vec::new();
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.peer.handle(peer::Input::Timeout, now, &mut peer_out);
                    }
                    self.peer_outputs(conn, peer_out, now, out);
                }
                if self.core.poll_timeout().is_some_and(|t| t <= now) {
                    self.core(Input::Timeout, now, out);
                }
            }
            NodeInput::Datagram { .. } => {}
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.conns
            .values()
            .filter_map(|c| c.peer.poll_timeout())
            .chain(self.core.poll_timeout())
            .min()
    }
}
