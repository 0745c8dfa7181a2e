//! The in-memory network (docs/architecture.md, "The in-memory network"): sans-IO cores
//! wired together in virtual time, what quinn's tests call a `Pair`, for a whole lab.
//! Datagram links have a delay, jitter, loss and reordering drawn from one seed; stream
//! links (Diameter's TCP) are reliable and ordered, can be refused and cut; a virtual clock
//! jumps to the next arrival or core deadline. Everything that crosses a link is traced, so
//! a run can be checked message by message and two runs of one seed compared.
//!
//! A node is a core behind the [`Node`] trait: it is handed datagrams, stream events and
//! timeouts with `now`, and answers with [`NodeOutput`]s. The nodes that exist:
//! [`ue::UeNode`] (the `ue-emu` core), [`epdg::EpdgNode`] (the `mag` core, wired as its
//! driver wires it), [`aaa::AaaNode`] (the `aaa-stub` core behind the Diameter peer
//! state machine, as its binary runs it), [`lma::LmaNode`] (an `lma` core, visited or
//! home) and [`mag::MagNode`] (the MAG side of the ePDG: the binding update list alone,
//! where only the chain of gateways matters). [`epc::Epc`] builds a whole lab of them,
//! and [`ladder`] reads the trace back as the messages that crossed.
//!
//! The randomness is all seeded: the links draw from the network's generator, and each
//! node gets its own generator (seeded from the network's seed and its index), so adding
//! a node or a message does not shift another node's draws.

pub mod aaa;
pub mod epc;
pub mod epdg;
pub mod ladder;
pub mod lma;
pub mod mag;
pub mod ue;

#[cfg(test)]
mod heal_tests;
#[cfg(test)]
mod scenarios;
#[cfg(test)]
mod tests;

use std::any::Any;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One connection of a stream link, named by the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// What happens on a node's stream connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEvent<'a> {
    /// A connection is up: one the node asked for (`tag` as given in
    /// [`NodeOutput::Connect`]) or one it accepted on a listening address (`tag` None).
    Up {
        conn: ConnId,
        tag: Option<u64>,
        local: SocketAddr,
        peer: SocketAddr,
    },
    /// The connection asked for with `tag` was refused (nobody listens, or the link is
    /// cut).
    Refused { tag: u64 },
    /// Bytes, in order.
    Data { conn: ConnId, bytes: &'a [u8] },
    /// The peer closed the connection, or the link was cut.
    Down { conn: ConnId },
}

/// What a node is handed.
#[derive(Debug, Clone, Copy)]
pub enum NodeInput<'a> {
    /// A UDP datagram (or a Mobility Header message in UDP 5436) from `from` to `to`.
    Datagram {
        from: SocketAddr,
        to: SocketAddr,
        bytes: &'a [u8],
    },
    Stream(StreamEvent<'a>),
    /// The node's [`Node::poll_timeout`] has passed.
    Timeout,
}

/// What a node asks the network to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeOutput {
    Datagram {
        from: SocketAddr,
        to: SocketAddr,
        bytes: Vec<u8>,
    },
    /// Open a stream connection from the node's address `from` to `to`; answered with
    /// [`StreamEvent::Up`] or [`StreamEvent::Refused`] carrying `tag`.
    Connect {
        tag: u64,
        from: IpAddr,
        to: SocketAddr,
    },
    Send {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    Close {
        conn: ConnId,
    },
}

/// Any node as `Any`, so the network hands a test its node by type.
pub trait AsAny: Any {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any> AsAny for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A sans-IO core on the network.
pub trait Node: AsAny {
    /// The name the trace and the errors use.
    fn name(&self) -> &str;
    /// The addresses datagrams to it are routed by.
    fn addresses(&self) -> Vec<IpAddr>;
    /// The addresses it accepts stream connections on.
    fn listens(&self) -> Vec<SocketAddr> {
        Vec::new()
    }
    fn handle(
        &mut self,
        input: NodeInput<'_>,
        now: Instant,
        rng: &mut StdRng,
        out: &mut Vec<NodeOutput>,
    );
    fn poll_timeout(&self) -> Option<Instant>;
}

/// A node on one network, by type: what [`Net::add`] returns.
pub struct NodeId<T> {
    index: usize,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for NodeId<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for NodeId<T> {}

impl<T> NodeId<T> {
    /// Its position among the network's nodes (the trace names nodes by it).
    pub fn index(&self) -> usize {
        self.index
    }
}

impl<T> std::fmt::Debug for NodeId<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {}", self.index)
    }
}

/// How a link between two nodes treats what crosses it, both ways.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkPolicy {
    /// One-way delay of everything.
    pub delay: Duration,
    /// A datagram's extra delay, uniform in `[0, jitter)`.
    pub jitter: Duration,
    /// Probability that a datagram is lost (streams are reliable: TCP retransmits).
    pub loss: f64,
    /// Probability that a datagram is held back `reorder_delay` more, so that later
    /// ones overtake it.
    pub reorder: f64,
    pub reorder_delay: Duration,
}

impl Default for LinkPolicy {
    /// One millisecond, nothing lost, nothing reordered.
    fn default() -> Self {
        LinkPolicy {
            delay: Duration::from_millis(1),
            jitter: Duration::ZERO,
            loss: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
        }
    }
}

impl LinkPolicy {
    /// `delay` one way, `loss` of the datagrams lost, as many held back 20 ms (reordered)
    /// and a jitter of a fifth of the delay.
    pub fn lossy(delay: Duration, loss: f64) -> Self {
        LinkPolicy {
            delay,
            jitter: delay / 5,
            loss,
            reorder: loss,
            reorder_delay: Duration::from_millis(20),
        }
    }
}

/// What crossed a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceKind {
    Datagram { from: SocketAddr, to: SocketAddr },
    Connect { from: IpAddr, to: SocketAddr },
    Stream { conn: ConnId },
    Close { conn: ConnId },
    Cut { conn: ConnId },
}

/// What became of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Arrives this long after the start.
    Arrives(Duration),
    /// Lost on the link (datagrams only).
    Lost,
    /// No node has the destination address, or nobody listens there.
    Unroutable,
    /// The link between the two nodes is cut.
    Partitioned,
}

/// One entry of the trace: sent this long after the start, by node `from` toward node
/// `to` (when there is one), `len` octets whose FNV-1a hash is `digest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceEntry {
    pub sent: Duration,
    pub from: usize,
    pub to: Option<usize>,
    pub kind: TraceKind,
    pub len: usize,
    pub digest: u64,
    pub fate: Fate,
}

/// FNV-1a over `bytes`: a stable digest for comparing traces.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Something on its way to a node.
#[derive(Debug)]
enum Delivery {
    Datagram {
        from: SocketAddr,
        to: SocketAddr,
        bytes: Vec<u8>,
    },
    Up {
        conn: ConnId,
        tag: Option<u64>,
        local: SocketAddr,
        peer: SocketAddr,
    },
    Refused {
        tag: u64,
    },
    Data {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    Down {
        conn: ConnId,
    },
}

struct InFlight {
    at: Instant,
    /// Send order: ties at one instant are delivered first-sent first.
    seq: u64,
    node: usize,
    delivery: Delivery,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// One stream connection: `ends[0]` connected to `ends[1]`.
struct Stream {
    ends: [(usize, SocketAddr); 2],
    /// The connecting end's tag.
    tag: u64,
    /// When the last delivery toward each end arrives: later ones arrive no sooner.
    last: [Instant; 2],
    /// Whether each end has been told the connection is up.
    told_up: [bool; 2],
    /// An end closed it: nothing more may be sent; what is on its way still arrives.
    closed: bool,
    /// Cut by the network: nothing more is delivered.
    cut: bool,
}

struct Slot {
    node: Box<dyn Node>,
    rng: StdRng,
    /// Its `poll_timeout()` as last asked (after it last ran), filed in
    /// [`Net::deadlines`].
    deadline: Option<Instant>,
}

/// How many times one instant may come round before the network calls it a livelock.
const MAX_STEPS_AT_ONE_INSTANT: u32 = 1_000_000;

/// Cores wired together in virtual time.
pub struct Net {
    t0: Instant,
    now: Instant,
    seed: u64,
    rng: StdRng,
    nodes: Vec<Slot>,
    routes: HashMap<IpAddr, usize>,
    listeners: HashMap<SocketAddr, usize>,
    links: BTreeMap<(usize, usize), LinkPolicy>,
    default_link: LinkPolicy,
    partitions: BTreeMap<(usize, usize), bool>,
    wire: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    streams: BTreeMap<ConnId, Stream>,
    next_conn: u64,
    trace: Vec<TraceEntry>,
    /// What each trace entry carried, by the same index.
    payloads: Vec<Vec<u8>>,
    /// Every node's deadline, earliest first: a node's deadline changes only when it
    /// runs, so it is asked again only then (or, after [`Net::node_mut`], all are).
    deadlines: BTreeSet<(Instant, usize)>,
    /// A node was handed out mutably: its deadline may have changed unseen.
    deadlines_stale: bool,
    steps_at_now: u32,
}

impl Net {
    /// The wall-clock time of the start, for cores that put time on the wire.
    pub const WALL0: SystemTime = UNIX_EPOCH;

    /// An empty network whose draws all come from `seed`.
    pub fn new(seed: u64) -> Net {
        let t0 = Instant::now();
        Net {
            t0,
            now: t0,
            seed,
            rng: StdRng::seed_from_u64(seed),
            nodes: Vec::new(),
            routes: HashMap::new(),
            listeners: HashMap::new(),
            links: BTreeMap::new(),
            default_link: LinkPolicy::default(),
            partitions: BTreeMap::new(),
            wire: BinaryHeap::new(),
            seq: 0,
            streams: BTreeMap::new(),
            next_conn: 1,
            trace: Vec::new(),
            payloads: Vec::new(),
            deadlines: BTreeSet::new(),
            deadlines_stale: false,
            steps_at_now: 0,
        }
    }

    /// The start (virtual time 0) as an instant, for building cores.
    pub fn start(&self) -> Instant {
        self.t0
    }

    /// The wall-clock time that goes with `start()`: [`Net::WALL0`] plus 1.8e9 s (2027),
    /// well inside every timestamp format.
    pub fn wall_clock_at_start(&self) -> SystemTime {
        Self::WALL0 + Duration::from_secs(1_800_000_000)
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// Adds a node; its addresses and listening addresses must be new on this network.
    pub fn add<T: Node>(&mut self, node: T) -> NodeId<T> {
        let index = self.nodes.len();
        for ip in node.addresses() {
            let previous = self.routes.insert(ip, index);
            assert!(previous.is_none(), "{ip} belongs to two nodes");
        }
        for addr in node.listens() {
            self.listeners.insert(addr, index);
        }
        let rng = StdRng::seed_from_u64(self.seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9));
        self.nodes.push(Slot {
            node: Box::new(node),
            rng,
            deadline: None,
        });
        self.refresh_deadline(index);
        NodeId {
            index,
            _type: PhantomData,
        }
    }

    /// The node behind `id`.
    pub fn node<T: Node>(&self, id: NodeId<T>) -> &T {
        self.nodes
            .get(id.index)
            .and_then(|s| (*s.node).as_any().downcast_ref())
            .expect("a NodeId of this network")
    }

    pub fn node_mut<T: Node>(&mut self, id: NodeId<T>) -> &mut T {
        self.deadlines_stale = true;
        self.nodes
            .get_mut(id.index)
            .and_then(|s| (*s.node).as_any_mut().downcast_mut())
            .expect("a NodeId of this network")
    }

    /// The name of the node at `index` (as the trace names it).
    pub fn name_of(&self, index: usize) -> &str {
        self.nodes.get(index).map_or("?", |s| s.node.name())
    }

    /// Sets the policy of the link between `a` and `b` (both ways).
    pub fn link<A, B>(&mut self, a: NodeId<A>, b: NodeId<B>, policy: LinkPolicy) -> &mut Self {
        self.links.insert(pair(a.index, b.index), policy);
        self
    }

    /// The policy of links no [`Net::link`] call named.
    pub fn default_link(&mut self, policy: LinkPolicy) -> &mut Self {
        self.default_link = policy;
        self
    }

    /// Cuts (`true`) or restores the link between `a` and `b`: while cut, datagrams are
    /// dropped and connections refused; cutting ends every connection between them at
    /// once, both ends told.
    pub fn partition<A, B>(&mut self, a: NodeId<A>, b: NodeId<B>, cut: bool) {
        let key = pair(a.index, b.index);
        self.partitions.insert(key, cut);
        if !cut {
            return;
        }
        let conns: Vec<ConnId> = self
            .streams
            .iter()
            .filter(|(_, s)| !s.cut && pair(s.ends[0].0, s.ends[1].0) == key)
            .map(|(c, _)| *c)
            .collect();
        for conn in conns {
            if let Some(s) = self.streams.get_mut(&conn) {
                s.cut = true;
                let (ends, told_up, tag) = (s.ends, s.told_up, s.tag);
                for (end, (node, _)) in ends.into_iter().enumerate() {
                    if told_up[end] {
                        self.schedule(self.now, node, Delivery::Down { conn });
                    } else if end == 0 {
                        // The connecting end still waits for its answer.
                        self.schedule(self.now, node, Delivery::Refused { tag });
                    }
                }
                let fate = Fate::Arrives(self.now - self.t0);
                self.record(
                    ends[0].0,
                    Some(ends[1].0),
                    TraceKind::Cut { conn },
                    &[],
                    fate,
                );
            }
        }
    }

    fn is_partitioned(&self, a: usize, b: usize) -> bool {
        self.partitions.get(&pair(a, b)).copied().unwrap_or(false)
    }

    fn policy(&self, a: usize, b: usize) -> LinkPolicy {
        self.links
            .get(&pair(a, b))
            .copied()
            .unwrap_or(self.default_link)
    }

    /// Everything that crossed (or failed to cross) a link so far, in send order.
    pub fn trace(&self) -> &[TraceEntry] {
        &self.trace
    }

    /// Every trace entry with the octets it carried (a datagram's payload, one stream
    /// write; nothing for connects, closes and cuts), in send order.
    pub fn messages(&self) -> impl Iterator<Item = (&TraceEntry, &[u8])> {
        self.trace
            .iter()
            .zip(self.payloads.iter().map(Vec::as_slice))
    }

    /// What was sent between `a` and `b`, either way, in send order.
    pub fn crossed<A, B>(&self, a: NodeId<A>, b: NodeId<B>) -> impl Iterator<Item = &TraceEntry> {
        let key = pair(a.index, b.index);
        self.trace
            .iter()
            .filter(move |e| e.to.is_some_and(|to| pair(e.from, to) == key))
    }

    /// Gives node `id` to `command` (e.g. to start a registration) at the current time,
    /// then carries out what it output.
    pub fn command<T: Node, R>(
        &mut self,
        id: NodeId<T>,
        command: impl FnOnce(&mut T, Instant, &mut StdRng, &mut Vec<NodeOutput>) -> R,
    ) -> R {
        let now = self.now;
        let mut out = Vec::new();
        let slot = self
            .nodes
            .get_mut(id.index)
            .expect("a NodeId of this network");
        // Through the box to the node (the box itself is `Any` too).
        let node = (*slot.node)
            .as_any_mut()
            .downcast_mut::<T>()
            .expect("a NodeId of this network");
        let result = command(node, now, &mut slot.rng, &mut out);
        self.refresh_deadline(id.index);
        self.carry_out(id.index, out);
        result
    }

    fn schedule(&mut self, at: Instant, node: usize, delivery: Delivery) {
        self.seq += 1;
        self.wire.push(Reverse(InFlight {
            at,
            seq: self.seq,
            node,
            delivery,
        }));
    }

    fn carry_out(&mut self, from_node: usize, out: Vec<NodeOutput>) {
        for o in out {
            match o {
                NodeOutput::Datagram { from, to, bytes } => {
                    self.send_datagram(from_node, from, to, bytes)
                }
                NodeOutput::Connect { tag, from, to } => self.connect(from_node, tag, from, to),
                NodeOutput::Send { conn, bytes } => self.send_stream(from_node, conn, bytes),
                NodeOutput::Close { conn } => self.close_stream(from_node, conn),
            }
        }
    }

    /// Adds an entry to the trace, its payload beside it.
    fn record(
        &mut self,
        from: usize,
        to: Option<usize>,
        kind: TraceKind,
        bytes: &[u8],
        fate: Fate,
    ) {
        self.trace.push(TraceEntry {
            sent: self.now - self.t0,
            from,
            to,
            kind,
            len: bytes.len(),
            digest: fnv1a(bytes),
            fate,
        });
        self.payloads.push(bytes.to_vec());
    }

    fn send_datagram(
        &mut self,
        from_node: usize,
        from: SocketAddr,
        to: SocketAddr,
        bytes: Vec<u8>,
    ) {
        let kind = TraceKind::Datagram { from, to };
        let Some(&target) = self.routes.get(&to.ip()) else {
            self.record(from_node, None, kind, &bytes, Fate::Unroutable);
            return;
        };
        if self.is_partitioned(from_node, target) {
            self.record(from_node, Some(target), kind, &bytes, Fate::Partitioned);
            return;
        }
        let policy = self.policy(from_node, target);
        // Three draws per datagram, always, so one policy change does not shift the
        // draws of every later datagram.
        let lost = self.rng.gen::<f64>() < policy.loss;
        let held = self.rng.gen::<f64>() < policy.reorder;
        let jitter = policy.jitter.mul_f64(self.rng.gen::<f64>());
        let fate = if lost {
            Fate::Lost
        } else {
            let extra = if held {
                policy.reorder_delay
            } else {
                Duration::ZERO
            };
            let at = self.now + policy.delay + jitter + extra;
            Fate::Arrives(at - self.t0)
        };
        self.record(from_node, Some(target), kind, &bytes, fate);
        if let Fate::Arrives(at) = fate {
            self.schedule(self.t0 + at, target, Delivery::Datagram { from, to, bytes });
        }
    }

    fn connect(&mut self, from_node: usize, tag: u64, from: IpAddr, to: SocketAddr) {
        let kind = TraceKind::Connect { from, to };
        let target = self.listeners.get(&to).copied();
        let fate = match target {
            None => Fate::Unroutable,
            Some(t) if self.is_partitioned(from_node, t) => Fate::Partitioned,
            Some(t) => Fate::Arrives(self.now + self.policy(from_node, t).delay - self.t0),
        };
        self.record(from_node, target, kind, &[], fate);
        let (Some(target), Fate::Arrives(_)) = (target, fate) else {
            // A refusal comes back after a round trip (SYN, RST).
            let delay = target.map_or(self.default_link.delay, |t| self.policy(from_node, t).delay);
            self.schedule(self.now + delay * 2, from_node, Delivery::Refused { tag });
            return;
        };
        let delay = self.policy(from_node, target).delay;
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        // An ephemeral port per connection.
        let local = SocketAddr::new(from, 40_000u16.wrapping_add(conn.0 as u16));
        let server_up = self.now + delay;
        let client_up = self.now + delay * 2;
        self.streams.insert(
            conn,
            Stream {
                ends: [(from_node, local), (target, to)],
                tag,
                last: [client_up, server_up],
                told_up: [false; 2],
                closed: false,
                cut: false,
            },
        );
        self.schedule(
            server_up,
            target,
            Delivery::Up {
                conn,
                tag: None,
                local: to,
                peer: local,
            },
        );
        self.schedule(
            client_up,
            from_node,
            Delivery::Up {
                conn,
                tag: Some(tag),
                local,
                peer: to,
            },
        );
    }

    /// The stream `conn` and which of its ends `node` is (0 or 1).
    fn end_of(&self, node: usize, conn: ConnId) -> Option<(usize, &Stream)> {
        let s = self.streams.get(&conn)?;
        let end = s.ends.iter().position(|(n, _)| *n == node)?;
        Some((end, s))
    }

    fn send_stream(&mut self, from_node: usize, conn: ConnId, bytes: Vec<u8>) {
        let kind = TraceKind::Stream { conn };
        let Some((end, s)) = self.end_of(from_node, conn) else {
            self.record(from_node, None, kind, &bytes, Fate::Unroutable);
            return;
        };
        let other = 1 - end;
        let target = s.ends[other].0;
        if s.cut || s.closed {
            self.record(from_node, Some(target), kind, &bytes, Fate::Partitioned);
            return;
        }
        let at = (self.now + self.policy(from_node, target).delay).max(s.last[other]);
        if let Some(s) = self.streams.get_mut(&conn) {
            s.last[other] = at;
        }
        self.record(
            from_node,
            Some(target),
            kind,
            &bytes,
            Fate::Arrives(at - self.t0),
        );
        self.schedule(at, target, Delivery::Data { conn, bytes });
    }

    fn close_stream(&mut self, from_node: usize, conn: ConnId) {
        let kind = TraceKind::Close { conn };
        let Some((end, s)) = self.end_of(from_node, conn) else {
            return;
        };
        let other = 1 - end;
        let target = s.ends[other].0;
        if s.cut || s.closed {
            return;
        }
        // The FIN follows the data already sent.
        let at = (self.now + self.policy(from_node, target).delay).max(s.last[other]);
        if let Some(s) = self.streams.get_mut(&conn) {
            s.closed = true;
            s.last[other] = at;
        }
        self.record(
            from_node,
            Some(target),
            kind,
            &[],
            Fate::Arrives(at - self.t0),
        );
        self.schedule(at, target, Delivery::Down { conn });
    }

    fn deliver(&mut self, flight: InFlight) {
        let InFlight { node, delivery, .. } = flight;
        // Data and Up already on their way when a link was cut are dropped (the cut
        // told both ends); an orderly close lets the data before its FIN through.
        let stale = match &delivery {
            Delivery::Up { conn, .. } | Delivery::Data { conn, .. } => {
                self.streams.get(conn).is_none_or(|s| s.cut)
            }
            _ => false,
        };
        if stale {
            return;
        }
        if let Delivery::Up { conn, .. } = &delivery {
            if let Some(s) = self.streams.get_mut(conn) {
                let end = usize::from(s.ends[0].0 != node);
                s.told_up[end] = true;
            }
        }
        let input = match &delivery {
            Delivery::Datagram { from, to, bytes } => NodeInput::Datagram {
                from: *from,
                to: *to,
                bytes,
            },
            Delivery::Up {
                conn,
                tag,
                local,
                peer,
            } => NodeInput::Stream(StreamEvent::Up {
                conn: *conn,
                tag: *tag,
                local: *local,
                peer: *peer,
            }),
            Delivery::Refused { tag } => NodeInput::Stream(StreamEvent::Refused { tag: *tag }),
            Delivery::Data { conn, bytes } => {
                NodeInput::Stream(StreamEvent::Data { conn: *conn, bytes })
            }
            Delivery::Down { conn } => NodeInput::Stream(StreamEvent::Down { conn: *conn }),
        };
        self.handle(node, input);
        if let Delivery::Down { conn } = delivery {
            // Both ends know: forget it.
            if self.streams.get(&conn).is_some_and(|s| s.cut || s.closed) {
                let both_told = !self
                    .wire
                    .iter()
                    .any(|f| matches!(f.0.delivery, Delivery::Down { conn: c } if c == conn));
                if both_told {
                    self.streams.remove(&conn);
                }
            }
        }
    }

    fn handle(&mut self, index: usize, input: NodeInput<'_>) {
        let now = self.now;
        let mut out = Vec::new();
        if let Some(slot) = self.nodes.get_mut(index) {
            slot.node.handle(input, now, &mut slot.rng, &mut out);
        }
        self.refresh_deadline(index);
        self.carry_out(index, out);
    }

    /// Asks node `index` for its deadline again and files it.
    fn refresh_deadline(&mut self, index: usize) {
        let Some(slot) = self.nodes.get_mut(index) else {
            return;
        };
        let deadline = slot.node.poll_timeout();
        if deadline != slot.deadline {
            if let Some(old) = slot.deadline {
                self.deadlines.remove(&(old, index));
            }
            if let Some(new) = deadline {
                self.deadlines.insert((new, index));
            }
            slot.deadline = deadline;
        }
    }

    /// Asks every node again, after one may have changed unseen.
    fn refresh_stale_deadlines(&mut self) {
        if std::mem::take(&mut self.deadlines_stale) {
            for index in 0..self.nodes.len() {
                self.refresh_deadline(index);
            }
        }
    }

    /// The next moment something happens: an arrival or a node's deadline.
    pub fn next_event(&mut self) -> Option<Instant> {
        self.refresh_stale_deadlines();
        let wire = self.wire.peek().map(|f| f.0.at);
        let timers = self.deadlines.first().map(|(at, _)| *at);
        match (wire, timers) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Advances the clock to the next arrival or deadline and delivers everything due
    /// then: arrivals in arrival (then send) order, then the timeouts of the nodes whose
    /// deadline passed, in the order they were added. False when nothing is left to do.
    pub fn step(&mut self) -> bool {
        let Some(next) = self.next_event() else {
            return false;
        };
        if next > self.now {
            self.now = next;
            self.steps_at_now = 0;
        } else {
            self.steps_at_now += 1;
            assert!(
                self.steps_at_now < MAX_STEPS_AT_ONE_INSTANT,
                "livelock at {:?}: a node keeps asking for a timeout it does not take",
                self.elapsed()
            );
        }
        while self.wire.peek().is_some_and(|f| f.0.at <= self.now) {
            if let Some(Reverse(flight)) = self.wire.pop() {
                self.deliver(flight);
            }
        }
        self.refresh_stale_deadlines();
        let mut due: Vec<usize> = self
            .deadlines
            .iter()
            .take_while(|(at, _)| *at <= self.now)
            .map(|(_, index)| *index)
            .collect();
        due.sort_unstable();
        for index in due {
            // Asked again: an earlier timeout may have moved this node's deadline.
            self.refresh_deadline(index);
            let still_due = self.nodes[index].deadline.is_some_and(|t| t <= self.now);
            if still_due {
                self.handle(index, NodeInput::Timeout);
            }
        }
        true
    }

    /// Steps until `done` holds (true) or `limit` of virtual time has passed from now,
    /// or nothing is left to do (false).
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Net) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            match self.next_event() {
                Some(t) if t <= end => {
                    self.step();
                }
                _ => {
                    self.now = self.now.max(end);
                    return done(self);
                }
            }
        }
    }

    /// Runs every event due in the next `span` of virtual time.
    pub fn run_for(&mut self, span: Duration) {
        self.run_until(span, |_| false);
    }
}

/// A link's key: the two nodes, in order.
fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}
