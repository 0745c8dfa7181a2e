//! A whole S2b lab on the in-memory network (docs/attach.md, the attach and roaming): UEs
//! (the `ue-emu` core), the ePDG (the `mag` core), its AAA and its gateway, and, for
//! roaming, a home network behind them (home AAA, home gateway) with the ePDG's AAA
//! relaying and its gateway chaining. Every node is configured from the text its binary
//! reads. The UEs of the ePDG's own realm are served by its gateway; roamers are registered
//! through it at their home gateway, which allocates their addresses.
//!
//! [`Epc::leftovers`] names whatever state is left on any node (IKE SAs, AAA sessions
//! and relayed records, bindings and chained bindings, data-plane sessions, pending
//! deadlines other than the Diameter peers' watchdogs and reconnects); [`Epc::gate`]
//! checks from the trace that no UE got its EAP-Success before an accepted PBA for it
//! reached the ePDG.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pmip_common::eap::{permanent_identity, Sqn};
use pmip_common::ike::wire::ExchangeType;
use ue_emu::config::{ConfigLayer as UeLayer, UeConfig};
use ue_emu::ue::{DetachPolicy, Identity, Profile, Ue};

use super::aaa::{AaaNode, MemorySubscribers};
use super::epdg::EpdgNode;
use super::ladder::{self, Message, Seen};
use super::lma::{LmaNode, MH_PORT};
use super::ue::UeNode;
use super::{LinkPolicy, Net, NodeId};

/// The ePDG's IKE address (UDP 500 and 4500), as the UEs know it.
pub const EPDG_IKE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The ePDG's address toward the AAA and the gateways.
pub const EPDG_CORE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The gateway of the ePDG's network (the vSAE GW for roamers).
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// Its address toward home gateways.
pub const GATEWAY_HOME_SIDE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// The home network's gateway (hSAE GW) and AAA.
pub const HOME_GATEWAY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 3);
pub const AAA: &str = "192.0.2.4:3868";
pub const HOME_AAA: &str = "203.0.113.4:3868";

/// The ePDG's realm, whose subscribers its AAA serves.
pub const REALM: &str = "epc.mnc015.mcc234.3gppnetwork.org";
/// The roamers' home realm.
pub const HOME_REALM: &str = "epc.mnc001.mcc001.3gppnetwork.org";
pub const APN: &str = "internet";
/// The pools of the two gateways.
pub const POOL: &str = "10.45.0.0/16";
pub const HOME_POOL: &str = "10.90.0.0/16";

pub const K: [u8; 16] = [0x46; 16];
pub const OPC: [u8; 16] = [0xcd; 16];

/// How a lab is built.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    /// UEs of the ePDG's realm, and roamers (with roamers, the home network exists).
    pub locals: usize,
    pub roamers: usize,
    /// Every link: one-way delay; datagram links also `loss` (and as many reordered).
    pub delay: Duration,
    pub loss: f64,
    /// More `mag.toml` lines.
    pub mag: String,
    /// More lines of the gateway's `[chaining]` table (with roamers).
    pub chaining: String,
    /// The ePDG's gateway's IPv4 pool.
    pub pool: String,
    /// The UEs' `timeout_ms` (`ue.toml`).
    pub ue_timeout_ms: u64,
    /// The UEs' IKE retransmissions (RFC 7296 section 2.1), if not `ue-emu`'s five.
    pub ike_retransmissions: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: 1,
            locals: 1,
            roamers: 0,
            delay: Duration::from_millis(1),
            loss: 0.0,
            mag: String::new(),
            chaining: String::new(),
            pool: POOL.into(),
            ue_timeout_ms: 20_000,
            ike_retransmissions: None,
        }
    }
}

/// The home network of the roamers.
#[derive(Debug, Clone, Copy)]
pub struct Home {
    pub aaa: NodeId<AaaNode>,
    pub gateway: NodeId<LmaNode>,
}

/// The lab.
pub struct Epc {
    pub net: Net,
    pub epdg: NodeId<EpdgNode>,
    pub aaa: NodeId<AaaNode>,
    pub gateway: NodeId<LmaNode>,
    pub home: Option<Home>,
    pub ues: Vec<NodeId<UeNode>>,
    options: Options,
    /// Attach commands given to each UE.
    attaches: HashMap<usize, usize>,
}

/// The IMSI of the `i`th local UE, or roamer.
pub fn imsi(i: usize, roamer: bool) -> String {
    let plmn = if roamer { "00101" } else { "23415" };
    format!("{plmn}{:010}", i)
}

/// The `ue.toml` of a UE toward the ePDG.
fn ue_toml(imsi: &str, k: [u8; 16], timeout_ms: u64) -> String {
    format!(
        "imsi = \"{imsi}\"\nmnc_digits = 2\nk = \"{}\"\nopc = \"{}\"\nsqn = 0\n\
         epdg = \"{EPDG_IKE}:500\"\nepdg_natt_port = 4500\nlocal = \"100.64.0.1\"\n\
         apn = \"{APN}\"\neap_only = true\ntimeout_ms = {timeout_ms}\n",
        hex(&k),
        hex(&OPC),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `aaa.toml` of an AAA of `realm` at `listen` whose gateway for the APN is
/// `gateway`, relaying the users of the realms in `homes` to their home AAA.
pub fn aaa_toml(realm: &str, listen: &str, gateway: &str, homes: &[(&str, &str)]) -> String {
    let homes: String = homes
        .iter()
        .map(|(r, a)| format!("\"{r}\" = \"{a}\"\n"))
        .collect();
    format!(
        "origin_host = \"aaa.{realm}\"\norigin_realm = \"{realm}\"\nlisten = \"{listen}\"\n\
         subscribers = \"unused.toml\"\nsqn_state = \"unused-sqn.toml\"\n\
         [gateways]\n{APN} = \"{gateway}\"\n[home_realms]\n{homes}"
    )
}

impl Epc {
    pub fn new(options: Options) -> Epc {
        let mut net = Net::new(options.seed);
        let (t0, wall0) = (net.start(), net.wall_clock_at_start());
        let roaming = options.roamers > 0;
        net.default_link(LinkPolicy::lossy(options.delay, options.loss));

        let mag = format!(
            "ike_listen = \"{EPDG_IKE}:500\"\nnatt_listen = \"{EPDG_IKE}:4500\"\n\
             aaa = \"{AAA}\"\nmh_local = \"{EPDG_CORE}\"\n\
             origin_host = \"epdg.{REALM}\"\norigin_realm = \"{REALM}\"\n\
             destination_realm = \"{REALM}\"\ndns = [\"192.0.2.53\"]\ndata_plane = false\n{}",
            options.mag
        );
        let epdg = EpdgNode::configured("epdg", &mag, t0, wall0, options.seed ^ 0xe9d6)
            .expect("the ePDG's mag.toml");
        let epdg = net.add(epdg);

        let mut locals = MemorySubscribers::default();
        for i in 0..options.locals {
            locals.add(&imsi(i, false), K, OPC, &[APN], 0);
        }
        let homes = [(HOME_REALM, HOME_AAA)];
        let gateway = GATEWAY.to_string();
        let aaa_config = aaa_toml(REALM, AAA, &gateway, if roaming { &homes[..] } else { &[] });
        let aaa = AaaNode::configured("aaa", &aaa_config, locals, options.seed ^ 0xaaa)
            .expect("the AAA's aaa.toml");
        let aaa = net.add(aaa);

        let chaining = if roaming {
            format!(
                "[chaining]\nhome_gateways = [\"{HOME_GATEWAY}\"]\n\
                 local_v4 = \"{GATEWAY_HOME_SIDE}\"\n{}",
                options.chaining
            )
        } else {
            String::new()
        };
        let gateway = LmaNode::configured(
            "gateway",
            &format!(
                "listen_v4 = \"{GATEWAY}:{MH_PORT}\"\nipv4_pool = \"{}\"\n\
                 ipv6_pool = \"2001:db8:45::/48\"\nrequire_gre_key = true\n\
                 allowed_mags = [\"{EPDG_CORE}\"]\n{chaining}",
                options.pool
            ),
            t0,
            wall0,
        )
        .expect("the gateway's lma.toml");
        let gateway = net.add(gateway);

        let home = roaming.then(|| {
            let mut roamers = MemorySubscribers::default();
            for i in 0..options.roamers {
                roamers.add(&imsi(i, true), K, OPC, &[APN], 0);
            }
            let config = aaa_toml(HOME_REALM, HOME_AAA, &HOME_GATEWAY.to_string(), &[]);
            let aaa = AaaNode::configured("home-aaa", &config, roamers, options.seed ^ 0x40e)
                .expect("the home AAA's aaa.toml");
            let aaa = net.add(aaa);
            let gateway = LmaNode::configured(
                "home-gateway",
                &format!(
                    "listen_v4 = \"{HOME_GATEWAY}:{MH_PORT}\"\nipv4_pool = \"{HOME_POOL}\"\n\
                     ipv6_pool = \"2001:db8:90::/48\"\nrequire_gre_key = true\n\
                     allowed_mags = [\"{GATEWAY_HOME_SIDE}\"]\n"
                ),
                t0,
                wall0,
            )
            .expect("the home gateway's lma.toml");
            Home {
                aaa,
                gateway: net.add(gateway),
            }
        });

        let mut epc = Epc {
            net,
            epdg,
            aaa,
            gateway,
            home,
            ues: Vec::new(),
            options: options.clone(),
            attaches: HashMap::new(),
        };
        for i in 0..options.locals {
            epc.add_ue(&imsi(i, false), APN, K, 0);
        }
        for i in 0..options.roamers {
            epc.add_ue(&imsi(i, true), APN, K, 0);
        }
        // The ePDG connects to its AAA first (CER/CEA).
        let epdg = epc.epdg;
        let open = epc.net.run_until(Duration::from_secs(5), |n| {
            n.node(epdg).status().diameter_open
        });
        assert!(open, "the ePDG's SWm peer did not open");
        epc
    }

    /// A UE for `imsi` asking for `apn`, its USIM with key `k` and SQN_MS `sqn_ms`, at
    /// the next UE address; its index.
    pub fn add_ue(&mut self, imsi: &str, apn: &str, k: [u8; 16], sqn_ms: u64) -> usize {
        let n = self.ues.len();
        let local = SocketAddr::new(
            Ipv4Addr::new(
                100,
                64 + (n / 60_000) as u8,
                (n / 250 % 240) as u8,
                (n % 250 + 1) as u8,
            )
            .into(),
            50_000,
        );
        let text = ue_toml(imsi, k, self.options.ue_timeout_ms);
        let layers =
            pmip_node::config::Layers::parse(&text, Path::new("ue.toml"), UeLayer::default())
                .expect("the UE's ue.toml");
        let config = UeConfig::resolve(&layers).expect("the UE's settings");
        // As `ue-emu load` detaches: several tries, a second apart.
        let detach = DetachPolicy {
            attempts: 5,
            wait: Duration::from_secs(1),
        };
        let mut profile: Profile =
            ue_emu::profile(&config, apn, false, false, detach).expect("the UE's profile");
        if let Some(n) = self.options.ike_retransmissions {
            profile.ike.retransmit.max_retransmissions = n;
        }
        let identity = Identity {
            imsi: imsi.into(),
            nai: permanent_identity(imsi, 2).expect("an IMSI"),
            sqn_ms: Sqn::new(sqn_ms).expect("48 bits"),
        };
        let ue = Ue::new(Arc::new(profile), identity, self.net.start());
        let id = self.net.add(UeNode::new(&format!("ue{n}"), local, ue));
        self.ues.push(id);
        n
    }

    /// UE `i` attaches.
    pub fn attach(&mut self, i: usize) {
        *self.attaches.entry(i).or_default() += 1;
        self.net
            .command(self.ues[i], |u, now, rng, out| u.attach(now, rng, out));
    }

    pub fn attach_all(&mut self) {
        for i in 0..self.ues.len() {
            self.attach(i);
        }
    }

    pub fn detach(&mut self, i: usize) {
        self.net
            .command(self.ues[i], |u, now, rng, out| u.detach(now, rng, out));
    }

    pub fn detach_all(&mut self) {
        for i in 0..self.ues.len() {
            self.detach(i);
        }
    }

    /// UE `i`'s node.
    pub fn ue(&self, i: usize) -> &UeNode {
        self.net.node(self.ues[i])
    }

    pub fn epdg(&self) -> &EpdgNode {
        self.net.node(self.epdg)
    }

    /// Whether every attach command has its outcome at its UE.
    pub fn attaches_settled(&self) -> bool {
        self.attaches
            .iter()
            .all(|(&i, &n)| self.ue(i).attach_outcomes >= n)
    }

    /// Steps until `done` holds, or `limit` of virtual time passes, or nothing is left
    /// to do; `done` is asked each time the clock moves (not at every delivery). Whether
    /// `done` held.
    fn run_until(&mut self, limit: Duration, done: impl Fn(&Epc) -> bool) -> bool {
        let end = self.net.now() + limit;
        let mut asked_at = None;
        loop {
            if asked_at != Some(self.net.now()) {
                asked_at = Some(self.net.now());
                if done(self) {
                    return true;
                }
            }
            match self.net.next_event() {
                Some(t) if t <= end => {
                    self.net.step();
                }
                _ => {
                    self.net
                        .run_for(end.saturating_duration_since(self.net.now()));
                    return done(self);
                }
            }
        }
    }

    /// Runs until every attach has its outcome (or `limit` passes).
    pub fn settle_attaches(&mut self, limit: Duration) -> bool {
        self.run_until(limit, Epc::attaches_settled)
    }

    /// Runs until nothing is left anywhere (or `limit` passes); whether it got there.
    pub fn settle_cleanup(&mut self, limit: Duration) -> bool {
        self.run_until(limit, Epc::nothing_left)
    }

    /// Whether nothing is left on any node: [`Epc::leftovers`] is empty (cheaper).
    pub fn nothing_left(&self) -> bool {
        let net = &self.net;
        let e = self.epdg();
        let aaas = std::iter::once(self.aaa).chain(self.home.map(|h| h.aaa));
        let gateways = std::iter::once(self.gateway).chain(self.home.map(|h| h.gateway));
        e.core().is_idle()
            && e.sessions.is_empty()
            && aaas.map(|id| net.node(id)).all(|a| {
                a.sessions() == 0 && a.relayed() == (0, 0) && a.core.poll_timeout().is_none()
            })
            && gateways.map(|id| &net.node(id).lma).all(|l| {
                l.cache().is_empty() && l.chain_counts() == (0, 0) && l.poll_timeout().is_none()
            })
            && self.ues.iter().all(|id| net.node(*id).ue.is_idle())
    }

    /// The UEs attached now.
    pub fn attached(&self) -> usize {
        (0..self.ues.len())
            .filter(|&i| self.ue(i).ue.is_attached())
            .count()
    }

    /// What is left on any node, named; empty when nothing is.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        let net = &self.net;
        let e = self.epdg();
        let core = e.core();
        if !core.is_idle() {
            let s = core.status();
            left.push(format!(
                "ePDG: {} IKE SAs, {} AAA sessions, {} bindings, {} attached, deadline {:?}",
                s.ike_sas,
                s.aaa_sessions,
                s.bindings,
                s.attached.len(),
                core.poll_timeout().map(|t| t - net.start())
            ));
        }
        if !e.sessions.is_empty() {
            left.push(format!("ePDG: {} data-plane sessions", e.sessions.len()));
        }
        let aaas = std::iter::once(("aaa", self.aaa)).chain(self.home.map(|h| ("home-aaa", h.aaa)));
        for (name, id) in aaas {
            let a = net.node(id);
            if a.sessions() > 0 {
                left.push(format!("{name}: {} sessions", a.sessions()));
            }
            if a.relayed() != (0, 0) {
                left.push(format!(
                    "{name}: relayed (sessions, requests) {:?}",
                    a.relayed()
                ));
            }
            if let Some(t) = a.core.poll_timeout() {
                left.push(format!("{name}: deadline {:?}", t - net.start()));
            }
        }
        let gateways = std::iter::once(("gateway", self.gateway))
            .chain(self.home.map(|h| ("home-gateway", h.gateway)));
        for (name, id) in gateways {
            let l = &net.node(id).lma;
            if !l.cache().is_empty() {
                left.push(format!("{name}: {} bindings", l.cache().len()));
            }
            if l.chain_counts() != (0, 0) {
                left.push(format!("{name}: chained {:?}", l.chain_counts()));
            }
            if let Some(t) = l.poll_timeout() {
                left.push(format!("{name}: deadline {:?}", t - net.start()));
            }
        }
        let busy: Vec<usize> = (0..self.ues.len())
            .filter(|&i| !self.ue(i).ue.is_idle())
            .collect();
        if let Some(first) = busy.first() {
            left.push(format!(
                "{} UEs not idle, the first {:?}",
                busy.len(),
                self.ue(*first).ue
            ));
        }
        left
    }

    /// Everything that crossed the links, decoded with the ePDG's IKE keys.
    pub fn read(&self) -> Vec<Seen> {
        ladder::read(&self.net, self.epdg().keyring())
    }

    /// The EAP-Successes the ePDG sent, and for each whether an accepted PBA for the
    /// same NAI had reached the ePDG by then, after that IKE SA's IKE_AUTH began: the
    /// gate of docs/attach.md, read from the wire. Returns (how many IKE SAs got
    /// an EAP-Success, those sent before their PBA, described).
    pub fn gate(&self, seen: &[Seen]) -> (usize, Vec<String>) {
        let epdg = self.epdg.index();
        // The NAI and start of each IKE SA's IKE_AUTH, from its first request.
        let mut auth_began: HashMap<(u64, u64), (String, Duration)> = HashMap::new();
        // When accepted PBAs for each NAI reached the ePDG.
        let mut pbas: HashMap<&str, Vec<Duration>> = HashMap::new();
        for p in seen.iter().filter(|p| p.entry.to == Some(epdg)) {
            if let (
                Message::Pba {
                    mn_id: Some(m),
                    status,
                    ..
                },
                Some(at),
            ) = (&p.message, p.arrived())
            {
                if status.is_accepted() {
                    pbas.entry(m.as_str()).or_default().push(at);
                }
            }
        }
        let mut successes = std::collections::HashSet::new();
        let mut broken = Vec::new();
        for s in seen {
            let Message::Ike(ike) = &s.message else {
                continue;
            };
            if ike.exchange != ExchangeType::IkeAuth {
                continue;
            }
            let spis = (ike.initiator_spi, ike.responder_spi);
            if let Some(nai) = ike.idi().filter(|_| s.entry.to == Some(epdg)) {
                auth_began.entry(spis).or_insert((nai, s.sent()));
            }
            if s.entry.from != epdg || ike.eap_code() != Some(3) {
                continue;
            }
            successes.insert(spis);
            let Some((nai, began)) = auth_began.get(&spis) else {
                broken.push(format!(
                    "EAP-Success at {:?} on an IKE SA without IDi",
                    s.sent()
                ));
                continue;
            };
            let pba = pbas
                .get(nai.as_str())
                .is_some_and(|ats| ats.iter().any(|at| began <= at && *at <= s.sent()));
            if !pba {
                broken.push(format!(
                    "EAP-Success to {nai} at {:?} with no accepted PBA before it",
                    s.sent()
                ));
            }
        }
        (successes.len(), broken)
    }
}
