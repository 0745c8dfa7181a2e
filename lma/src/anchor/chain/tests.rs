//! Chaining in virtual time: a real ePDG-side [`BindingUpdateList`], the visited core and
//! the home core, joined by a lossless in-memory network that can take the home gateway
//! down. Every message crosses as bytes, with the checksums of its path.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::Ipv4Net;
use pmip_common::binding_update_list::{self as bul, MagConfig, RegistrationRequest};
use pmip_common::mh::{
    BindingAckStatus, ChecksumContext, GreKey, HandoffIndicator, Lifetime, MobilityHeaderRepr,
    MobilityMessage, MobilityOption, ProxyBindingAck, ProxyBindingUpdate, ThreeGppOption,
    VendorSpecific, IPPROTO_NONE,
};

use super::*;
use crate::anchor::{Input, LmaSettings, Outcome};
use crate::anchor::{MagFilter, UnauthorizedMag};
use crate::anchor::{MagLimits, RevocationSettings};

const EPDG: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// A second ePDG the mobile node can move to.
const EPDG2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 5);
const VISITED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const VISITED_HOME_SIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const HOME: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
const STRANGER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const PORT: u16 = 5436;
const UE: &str = "001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org";
const UE2: &str = "001010000000002@nai.epc.mnc001.mcc001.3gppnetwork.org";

fn core_settings(pool_v4: &str, pool_v6: &str, mags: &[Ipv4Addr]) -> LmaSettings {
    let pool: Ipv4Net = pool_v4.parse().unwrap();
    LmaSettings {
        ipv4_pool: Some(pool),
        // The first host is the default router, as the configuration defaults it.
        ipv4_default_router: pool.hosts().next(),
        ipv6_pool: Some(pool_v6.parse().unwrap()),
        max_lifetime: Lifetime::from_secs(3600),
        timestamp_window: Duration::from_secs(1),
        require_timestamp: false,
        require_gre_key: true,
        unauthorized_mag: UnauthorizedMag::Reject,
        allowed_mags: mags
            .iter()
            .map(|a| MagFilter(ipnet::IpNet::from(IpAddr::V4(*a))))
            .collect(),
        restart_counter: 1,
        revocation: RevocationSettings::default(),
        limits: MagLimits::default(),
        heartbeat: None,
    }
}

fn chain_settings() -> ChainSettings {
    ChainSettings {
        home_gateways: vec![MagFilter(ipnet::IpNet::from(IpAddr::V4(HOME)))],
        own_addresses: vec![IpAddr::V4(VISITED), IpAddr::V4(VISITED_HOME_SIDE)],
        local_v4: Some(VISITED_HOME_SIDE),
        local_v6: None,
        home_port: PORT,
        registration: MagConfig {
            init_min_delay_between_bus: Duration::from_millis(200),
            max_delay_between_bus: Duration::from_secs(2),
            max_retransmissions: 2,
            requested_lifetime: Lifetime::from_secs(600),
            ..MagConfig::default()
        },
    }
}

/// The three nodes and the wire between them.
struct Net {
    t0: Instant,
    wall0: SystemTime,
    now: Instant,
    epdg: bul::BindingUpdateList,
    visited: Lma,
    home: Lma,
    home_down: bool,
    /// Whether the ePDG's timers run (false: it has gone silent).
    epdg_alive: bool,
    epdg_events: Vec<bul::Output>,
    visited_out: Vec<Output>,
    /// Every PBU the visited gateway sent home, decoded.
    to_home: Vec<ProxyBindingUpdate>,
    /// Every PBA the ePDG received, decoded.
    to_epdg: Vec<ProxyBindingAck>,
    /// Everything else the visited gateway sent an ePDG: revocations, the second ePDG's
    /// answers.
    to_others: Vec<(IpAddr, MobilityMessage)>,
}

impl Net {
    fn new(home_pool_v4: &str) -> Net {
        Self::with(home_pool_v4, Some(chain_settings()))
    }

    fn with(home_pool_v4: &str, chaining: Option<ChainSettings>) -> Net {
        let t0 = Instant::now();
        let wall0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut visited = Lma::new(
            core_settings("10.20.0.0/24", "2001:db8:20::/56", &[EPDG, EPDG2]),
            t0,
            wall0,
        )
        .unwrap();
        if let Some(c) = chaining {
            visited = visited.with_chaining(c);
        }
        let home = Lma::new(
            core_settings(home_pool_v4, "2001:db8:90::/56", &[VISITED_HOME_SIDE]),
            t0,
            wall0,
        )
        .unwrap();
        let epdg = bul::BindingUpdateList::new(
            MagConfig {
                requested_lifetime: Lifetime::from_secs(300),
                ..MagConfig::default()
            },
            t0,
            wall0,
        );
        Net {
            t0,
            wall0,
            now: t0,
            epdg,
            visited,
            home,
            home_down: false,
            epdg_alive: true,
            epdg_events: Vec::new(),
            visited_out: Vec::new(),
            to_home: Vec::new(),
            to_epdg: Vec::new(),
            to_others: Vec::new(),
        }
    }

    fn request(mn: &str, home: Ipv4Addr, key: u32) -> RegistrationRequest {
        RegistrationRequest {
            key: MobileNodeKey::new(mn, Some("internet")),
            lma: SocketAddr::new(IpAddr::V4(VISITED), PORT),
            request_home_network_prefix: true,
            request_ipv4_home_address: true,
            downlink_gre_key: Some(GreKey(key)),
            handoff: HandoffIndicator::AttachmentOverNewInterface,
            vendor: vec![VendorSpecific::ThreeGpp(ThreeGppOption::PdnGwIpAddress(
                IpAddr::V4(home),
            ))],
        }
    }

    fn epdg_input(&mut self, input: bul::Input) {
        let mut out = Vec::new();
        self.epdg.handle(input, self.now, &mut out);
        self.carry_epdg(out);
    }

    fn carry_epdg(&mut self, out: Vec<bul::Output>) {
        for o in out {
            match o {
                bul::Output::Send { to, pbu } => {
                    assert_eq!(to.ip(), IpAddr::V4(VISITED));
                    let from = MagAddress::Udp4 {
                        mag: SocketAddrV4::new(EPDG, PORT),
                        local: VISITED,
                    };
                    let out = deliver(
                        &mut self.visited,
                        from,
                        MobilityMessage::BindingUpdate(pbu.to_binding_update()),
                        self.now,
                    );
                    self.carry_visited(out);
                }
                event => self.epdg_events.push(event),
            }
        }
    }

    fn carry_visited(&mut self, out: Vec<Output>) {
        for o in out {
            if let Output::Send { to, bytes } = &o {
                let message = MobilityHeaderRepr::parse(bytes, to.send_checksum())
                    .expect("the visited gateway's message parses")
                    .message;
                match (to.ip(), message) {
                    (ip, MobilityMessage::BindingUpdate(bu)) if ip == IpAddr::V4(HOME) => {
                        assert_eq!(
                            *to,
                            MagAddress::Udp4 {
                                mag: SocketAddrV4::new(HOME, PORT),
                                local: VISITED_HOME_SIDE
                            }
                        );
                        self.to_home
                            .push(ProxyBindingUpdate::try_from(&bu).expect("a PBU"));
                        if self.home_down {
                            continue;
                        }
                        let from = MagAddress::Udp4 {
                            mag: SocketAddrV4::new(VISITED_HOME_SIDE, PORT),
                            local: HOME,
                        };
                        let mut home_out = Vec::new();
                        self.home
                            .handle(Input::Mobility { from, bytes }, self.now, &mut home_out);
                        self.carry_home(home_out);
                    }
                    (ip, MobilityMessage::BindingAck(ba)) if ip == IpAddr::V4(EPDG) => {
                        let ack = ProxyBindingAck::try_from(&ba).expect("a PBA");
                        self.to_epdg.push(ack.clone());
                        self.epdg_input(bul::Input::Ack {
                            from: SocketAddr::new(IpAddr::V4(VISITED), PORT),
                            ack,
                        });
                    }
                    (ip, m @ MobilityMessage::BindingRevocation(_))
                        if ip == IpAddr::V4(EPDG) || ip == IpAddr::V4(EPDG2) =>
                    {
                        self.to_others.push((ip, m))
                    }
                    (ip, m) if ip == IpAddr::V4(EPDG2) => self.to_others.push((ip, m)),
                    (ip, m) => panic!("unexpected {m:?} to {ip}"),
                }
            }
            self.visited_out.push(o);
        }
    }

    fn carry_home(&mut self, out: Vec<Output>) {
        for o in out {
            if let Output::Send { to, bytes } = o {
                assert_eq!(to.ip(), IpAddr::V4(VISITED_HOME_SIDE));
                let from = MagAddress::Udp4 {
                    mag: SocketAddrV4::new(HOME, PORT),
                    local: VISITED_HOME_SIDE,
                };
                assert_eq!(to.send_checksum(), from.receive_checksum());
                let mut visited_out = Vec::new();
                self.visited.handle(
                    Input::Mobility {
                        from,
                        bytes: &bytes,
                    },
                    self.now,
                    &mut visited_out,
                );
                self.carry_visited(visited_out);
            }
        }
    }

    /// Runs every node's timers in order up to `secs` after the start.
    fn advance_to(&mut self, at: Duration) {
        let end = self.t0 + at;
        loop {
            let next = [
                self.epdg.poll_timeout().filter(|_| self.epdg_alive),
                self.visited.poll_timeout(),
                self.home.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= end => {
                    self.now = t.max(self.now);
                    if self.epdg_alive && self.epdg.poll_timeout().is_some_and(|x| x <= t) {
                        self.epdg_input(bul::Input::Timeout);
                    }
                    if self.visited.poll_timeout().is_some_and(|x| x <= t) {
                        let mut out = Vec::new();
                        self.visited.handle(Input::Timeout, self.now, &mut out);
                        self.carry_visited(out);
                    }
                    if self.home.poll_timeout().is_some_and(|x| x <= t) {
                        let mut out = Vec::new();
                        self.home.handle(Input::Timeout, self.now, &mut out);
                        self.carry_home(out);
                    }
                }
                _ => break,
            }
        }
        self.now = end.max(self.now);
    }

    fn secs(&mut self, secs: f64) {
        self.advance_to(Duration::from_secs_f64(secs));
    }

    fn registered(&self) -> Vec<&bul::Registration> {
        self.epdg_events
            .iter()
            .filter_map(|e| match e {
                bul::Output::Registered { registration, .. } => Some(registration),
                _ => None,
            })
            .collect()
    }

    fn failed(&self) -> Vec<&RegistrationFailure> {
        self.epdg_events
            .iter()
            .filter_map(|e| match e {
                bul::Output::Failed { reason, .. } => Some(reason),
                _ => None,
            })
            .collect()
    }

    fn chain_events(&self) -> Vec<ChainEvent> {
        self.visited_out
            .iter()
            .filter_map(|o| match o {
                Output::Chain(r) => Some(r.event),
                _ => None,
            })
            .collect()
    }

    /// Nothing held anywhere: no binding, no held PBU, no reserved key, pools whole.
    fn assert_nothing_left(&self) {
        assert_eq!(self.visited.cache().len(), 0, "visited bindings");
        assert_eq!(self.visited.chain_counts(), (0, 0), "chained / held");
        let chain = self.visited.chain.as_ref().unwrap();
        assert!(chain.reserved_keys.is_empty(), "{:?}", chain.reserved_keys);
        assert!(chain.list.is_empty(), "home registrations");
        assert_eq!(self.home.cache().len(), 0, "home bindings");
    }

    fn wall(&self) -> SystemTime {
        self.wall0 + (self.now - self.t0)
    }
}

#[test]
fn a_roaming_pbu_is_held_registered_at_home_and_answered_with_home_addresses() {
    let mut net = Net::new("10.90.0.0/24");
    net.epdg_input(bul::Input::Register(Net::request(UE, HOME, 7000)));

    // One PBU went home, asking what the ePDG asked, with our own key and address.
    assert_eq!(net.to_home.len(), 1);
    let pbu = &net.to_home[0];
    assert_eq!(pbu.mn_id, UE);
    assert_eq!(pbu.apn.as_deref(), Some("internet"));
    assert_eq!(pbu.home_network_prefixes, vec!["::/0".parse().unwrap()]);
    assert_eq!(
        pbu.ipv4_home_address_request,
        Some("0.0.0.0/0".parse::<Ipv4Net>().unwrap())
    );
    assert_eq!(pbu.handoff, HandoffIndicator::AttachmentOverNewInterface);
    assert_eq!(
        pbu.access_technology,
        pmip_common::mh::AccessTechnologyType::Ieee80211
    );
    assert!(pbu.vendor.is_empty(), "the PDN GW address stays here");
    let home_downlink_key = pbu.gre_key.expect("our downlink key toward home");

    // The ePDG got the home's addresses and the visited gateway's uplink key.
    let regs = net.registered();
    assert_eq!(regs.len(), 1, "{:?}", net.epdg_events);
    let r = regs[0];
    assert_eq!(r.ipv4_home_address, Some("10.90.0.2/24".parse().unwrap()));
    assert_eq!(r.ipv4_default_router, Some(Ipv4Addr::new(10, 90, 0, 1)));
    assert_eq!(
        r.home_network_prefix,
        Some("2001:db8:90::/64".parse().unwrap())
    );
    assert_eq!(r.lifetime, Lifetime::from_secs(300));
    let uplink = r.uplink_gre_key.unwrap();
    assert_ne!(uplink, home_downlink_key);

    // The visited cache holds the ePDG side only (no home address in its indexes).
    let id = net.visited.cache().find(UE, Some("internet")).unwrap();
    assert_eq!(net.visited.cache().by_uplink_gre_key(uplink), Some(id));
    assert_eq!(
        net.visited
            .cache()
            .by_ipv4_home_address(Ipv4Addr::new(10, 90, 0, 2)),
        None
    );
    assert_eq!(net.visited.available_ipv4(), 253, "visited pool untouched");
    assert_eq!(net.visited.chain_counts(), (1, 0));
    assert_eq!(net.home.cache().len(), 1);
    let home_entry = net.home.cache().iter().next().unwrap().1;
    assert_eq!(home_entry.mag().ip(), IpAddr::V4(VISITED_HOME_SIDE));
    assert_eq!(home_entry.state.downlink_gre_key, Some(home_downlink_key));

    // The relay learns both key pairs; the log shows the chain.
    let up: Vec<&ChainInfo> = net
        .visited_out
        .iter()
        .filter_map(|o| match o {
            Output::ChainUp(i) => Some(i),
            _ => None,
        })
        .collect();
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].uplink_key, uplink);
    assert_eq!(up[0].epdg_downlink_key, GreKey(7000));
    assert_eq!(up[0].home_downlink_key, home_downlink_key);
    assert_eq!(
        up[0].home_uplink_key,
        home_entry.addresses().uplink_gre_key.unwrap()
    );
    assert_eq!(up[0].ipv4_home_address, Some(Ipv4Addr::new(10, 90, 0, 2)));
    assert!(!net
        .visited_out
        .iter()
        .any(|o| matches!(o, Output::BindingUp(_))));
    assert_eq!(
        net.chain_events(),
        vec![ChainEvent::Held, ChainEvent::HomeRegistered]
    );
    let report = net
        .visited_out
        .iter()
        .find_map(|o| match o {
            Output::Report(r) if r.outcome == Outcome::Registered => Some(r),
            _ => None,
        })
        .unwrap();
    assert_eq!(report.home, Some(IpAddr::V4(HOME)));
    assert_eq!(net.visited.stats().chains_registered, 1);
}

#[test]
fn a_home_reject_reaches_the_epdg_with_its_status_and_leaves_nothing() {
    // The home pool has one address (.1 is the router).
    let mut net = Net::new("10.90.0.0/30");
    net.epdg_input(bul::Input::Register(Net::request(UE, HOME, 7000)));
    assert_eq!(net.registered().len(), 1);
    net.epdg_input(bul::Input::Register(Net::request(UE2, HOME, 7001)));
    assert_eq!(
        net.failed(),
        vec![&RegistrationFailure::Rejected(
            BindingAckStatus::InsufficientResources
        )]
    );
    let last = net.to_epdg.last().unwrap();
    assert_eq!(last.status, BindingAckStatus::InsufficientResources);
    assert_eq!(last.mn_id.as_deref(), Some(UE2));
    // The home's IPv4 Home Address Reply status travels on (RFC 5844: 132).
    assert_eq!(
        last.ipv4_home_address_reply.map(|r| r.0),
        Some(pmip_common::mh::Ipv4HomeAddressReplyStatus::DynamicIpv4HomeAddressAssignmentNotAvailable)
    );
    // Only the first UE's state, at both gateways.
    assert_eq!(net.visited.cache().len(), 1);
    assert_eq!(net.visited.chain_counts(), (1, 0));
    assert_eq!(net.home.cache().len(), 1);
    assert!(net.visited.cache().find(UE2, Some("internet")).is_none());
    assert!(net.chain_events().contains(&ChainEvent::HomeRejected));
}

#[test]
fn a_silent_home_is_status_128_with_gtp_cause_100_after_the_retransmissions() {
    let mut net = Net::new("10.90.0.0/24");
    net.home_down = true;
    net.epdg_input(bul::Input::Register(Net::request(UE, HOME, 7000)));
    assert!(net.to_epdg.is_empty(), "held: no answer yet");
    // 200 ms, 400 ms, 800 ms: three transmissions, then the error (1.4 s), before the
    // ePDG's own first retransmission (1 s) could give up.
    net.secs(1.3);
    assert!(net.to_epdg.is_empty());
    net.secs(1.5);
    let home_pbus: Vec<_> = net.to_home.iter().map(|p| p.lifetime).collect();
    assert_eq!(
        home_pbus,
        vec![
            Lifetime::from_secs(600),
            Lifetime::from_secs(600),
            Lifetime::from_secs(600),
            Lifetime(0)
        ],
        "three registrations, then one clean-up de-registration"
    );
    assert_eq!(net.to_epdg.len(), 1);
    let ack = &net.to_epdg[0];
    assert_eq!(ack.status, BindingAckStatus::ReasonUnspecified);
    assert_eq!(
        ack.vendor,
        vec![VendorSpecific::ThreeGpp(ThreeGppOption::ErrorCode(
            GTP_CAUSE_REMOTE_PEER_NOT_RESPONDING
        ))]
    );
    assert_eq!(
        net.failed(),
        vec![&RegistrationFailure::Rejected(
            BindingAckStatus::ReasonUnspecified
        )]
    );
    assert!(net.chain_events().contains(&ChainEvent::HomeTimeout));
    net.assert_nothing_left();
    // Nothing more goes home afterwards.
    net.secs(60.0);
    assert_eq!(net.to_home.len(), 4);
}

#[test]
fn epdg_retransmissions_while_held_are_answered_once_with_the_latest_sequence() {
    let mut net = Net::new("10.90.0.0/24");
    net.epdg = bul::BindingUpdateList::new(
        MagConfig {
            init_min_delay_between_bus: Duration::from_millis(100),
            ..MagConfig::default()
        },
        net.t0,
        net.wall0,
    );
    net.home_down = true;
    // The ePDG sends at 0, 0.1 and 0.3 s; the visited gateway home at 0, 0.2 and
    // 0.6 s, and the home gateway is back for the last one.
    net.epdg_input(bul::Input::Register(Net::request(UE, HOME, 7000)));
    net.secs(0.5);
    assert!(net.to_epdg.is_empty());
    net.home_down = false;
    net.secs(0.65);
    assert_eq!(net.registered().len(), 1, "{:?}", net.epdg_events);
    assert_eq!(net.to_epdg.len(), 1);
    assert_eq!(
        net.to_epdg[0].sequence, 2,
        "the ePDG's third PBU is answered"
    );
    assert_eq!(net.to_home.len(), 3);
    assert_eq!(net.visited.chain_counts(), (1, 0));
    assert_eq!(net.home.cache().len(), 1);
}

#[test]
fn de_registration_from_the_epdg_propagates_home() {
    let mut net = Net::new("10.90.0.0/24");
    net.epdg_input(bul::Input::Register(Net::request(UE, HOME, 7000)));
    assert_eq!(net.registered().len(), 1);
    net.secs(10.0);
    net.epdg_input(bul::Input::Deregister(MobileNodeKey::new(
        UE,
        Some("internet"),
    )));
    assert!(net.epdg_events.iter().any(|e| matches!(
        e,
        bul::Output::Deregistered {
            acknowledged: true,
            ..
        }
    )));
    assert!(net.visited_out.iter().any(|o| matches!(
        o,
        Output::ChainDown {
            reason: ChainDownReason::Deregistered,
            ..
        }
    )));
    assert_eq!(net.to_home.last().unwrap().lifetime, Lifetime(0));
    assert!(net.chain_events().contains(&ChainEvent::HomeDeregistered));
    net.assert_nothing_left();
    assert_eq!(net.home.available_ipv4(), 253);
}

#[test]
fn refreshes_keep_both_bindings_and_expiry_propagates_home() {
    let mut net = Net::new("10.90.0.0/24");
    net.epdg_input(bul::Input::Register(Net::request(UE, HOME, 7000)));
    // The ePDG refreshes at 240 s (80 % of 300), the visited gateway at 480 s (80 % of
    // 600) at home: both still there after an hour.
    net.secs(3600.0);
    assert_eq!(net.registered().len(), 1);
    let refreshed = net
        .epdg_events
        .iter()
        .filter(|e| matches!(e, bul::Output::Refreshed { .. }))
        .count();
    assert!(refreshed >= 14, "{refreshed}");
    assert!(net.chain_events().contains(&ChainEvent::HomeRefreshed));
    assert_eq!(net.visited.chain_counts(), (1, 0));
    assert_eq!(net.home.cache().len(), 1);
    // The ePDG goes silent: the visited binding expires, and the home one is
    // de-registered at once rather than left to expire.
    net.epdg_alive = false;
    let silent_at = net.now - net.t0;
    net.advance_to(silent_at + Duration::from_secs(301));
    assert!(net.visited_out.iter().any(|o| matches!(
        o,
        Output::ChainDown {
            reason: ChainDownReason::Expired,
            ..
        }
    )));
    net.assert_nothing_left();
}

#[test]
fn a_home_that_loses_the_binding_ends_it_here_and_the_epdgs_refresh_is_refused() {
    let mut net = Net::new("10.90.0.0/24");
    net.epdg_input(bul::Input::Register(Net::request(UE, HOME, 7000)));
    // The home gateway restarts with an empty cache, and another IPv6 pool: the prefix
    // the binding held is not one it may assign any more.
    net.home = Lma::new(
        core_settings("10.90.0.0/24", "2001:db8:91::/56", &[VISITED_HOME_SIDE]),
        net.now,
        net.wall(),
    )
    .unwrap();
    // Its refresh at home (480 s) names a prefix outside the new pool: 155 at home, lost
    // here.
    net.secs(481.0);
    assert!(net.chain_events().contains(&ChainEvent::HomeLost));
    assert!(net.visited_out.iter().any(|o| matches!(
        o,
        Output::ChainDown {
            reason: ChainDownReason::HomeLost,
            ..
        }
    )));
    assert_eq!(net.visited.cache().len(), 0);
    // The ePDG's next refresh (it refreshed at 240 s; next at 480 s) is refused.
    net.secs(800.0);
    assert!(net.epdg_events.iter().any(|e| matches!(
        e,
        bul::Output::Lost {
            reason: RegistrationFailure::Rejected(
                BindingAckStatus::NotAuthorizedForHomeNetworkPrefix
            ),
            ..
        }
    )));
    net.assert_nothing_left();
}

#[test]
fn a_de_registration_while_held_cancels_at_home() {
    let mut net = Net::new("10.90.0.0/24");
    net.home_down = true;
    net.epdg_input(bul::Input::Register(Net::request(UE, HOME, 7000)));
    assert_eq!(net.visited.chain_counts(), (0, 1));
    // The ePDG has given up (its own retransmissions would start a new attempt).
    net.epdg_alive = false;
    // A lifetime-0 PBU from the ePDG for the held binding.
    let pbu = ProxyBindingUpdate {
        lifetime: Lifetime(0),
        sequence: 9,
        ..net.to_home[0].clone()
    };
    let from = MagAddress::Udp4 {
        mag: SocketAddrV4::new(EPDG, PORT),
        local: VISITED,
    };
    let out = deliver(
        &mut net.visited,
        from,
        MobilityMessage::BindingUpdate(pbu.to_binding_update()),
        net.now,
    );
    let answered = out.iter().any(|o| match o {
        Output::Send { to, bytes } if *to == from => matches!(
            MobilityHeaderRepr::parse(bytes, from.send_checksum()).map(|m| m.message),
            Ok(MobilityMessage::BindingAck(ba)) if ba.status == BindingAckStatus::Accepted
        ),
        _ => false,
    });
    assert!(answered, "{out:?}");
    net.home_down = false;
    net.carry_visited(out);
    assert!(net.chain_events().contains(&ChainEvent::Cancelled));
    assert_eq!(net.to_home.last().unwrap().lifetime, Lifetime(0));
    net.secs(5.0);
    net.assert_nothing_left();
}

#[test]
fn a_gateway_not_in_home_gateways_is_administratively_prohibited() {
    let mut net = Net::new("10.90.0.0/24");
    net.epdg_input(bul::Input::Register(Net::request(UE, STRANGER, 7000)));
    assert_eq!(
        net.failed(),
        vec![&RegistrationFailure::Rejected(
            BindingAckStatus::AdministrativelyProhibited
        )]
    );
    assert!(net.to_home.is_empty());
    net.assert_nothing_left();
}

#[test]
fn naming_itself_or_chaining_off_serves_the_pbu_here() {
    for (chaining, named) in [
        (Some(chain_settings()), VISITED),
        (Some(chain_settings()), VISITED_HOME_SIDE),
        (None, HOME),
    ] {
        let mut net = Net::with("10.90.0.0/24", chaining);
        net.epdg_input(bul::Input::Register(Net::request(UE, named, 7000)));
        let regs = net.registered();
        assert_eq!(regs.len(), 1);
        assert_eq!(
            regs[0].ipv4_home_address,
            Some("10.20.0.2/24".parse().unwrap()),
            "from the visited pool"
        );
        assert!(net.to_home.is_empty());
        assert_eq!(net.home.cache().len(), 0);
        assert!(net
            .visited_out
            .iter()
            .any(|o| matches!(o, Output::BindingUp(_))));
    }
}

#[test]
fn the_home_pba_is_accepted_only_from_a_home_gateway() {
    let mut net = Net::new("10.90.0.0/24");
    net.home_down = true;
    net.epdg_input(bul::Input::Register(Net::request(UE, HOME, 7000)));
    let pbu = net.to_home[0].clone();
    // A forged PBA from a stranger answering the home PBU's sequence number.
    let forged = ProxyBindingAck {
        status: BindingAckStatus::Accepted,
        sequence: pbu.sequence,
        lifetime: Lifetime::from_secs(600),
        mn_id: Some(UE.into()),
        apn: Some("internet".into()),
        home_network_prefixes: vec!["2001:db8:66::/64".parse().unwrap()],
        handoff: None,
        access_technology: None,
        timestamp: None,
        link_local_address: None,
        link_layer_id: None,
        gre_key: Some(GreKey(1)),
        ipv4_home_address_reply: Some((
            pmip_common::mh::Ipv4HomeAddressReplyStatus::Success,
            "10.66.0.2/24".parse().unwrap(),
        )),
        ipv4_default_router: None,
        restart_counter: None,
        vendor: Vec::new(),
        other: Vec::new(),
    }
    .to_binding_ack();
    let from = MagAddress::Udp4 {
        mag: SocketAddrV4::new(STRANGER, PORT),
        local: VISITED_HOME_SIDE,
    };
    let bytes = MobilityHeaderRepr {
        payload_proto: IPPROTO_NONE,
        message: MobilityMessage::BindingAck(forged),
    }
    .to_bytes(ChecksumContext::Ipv4Udp);
    let mut out = Vec::new();
    net.visited.handle(
        Input::Mobility {
            from,
            bytes: &bytes,
        },
        net.now,
        &mut out,
    );
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(net.visited.chain_counts(), (0, 1));
    assert!(net.to_epdg.is_empty());
    let _ = MobilityOption::GreKey(GreKey(0));
}

#[test]
fn an_ipv6_home_gateway_is_reached_over_the_raw_mobility_header_path() {
    let home6: std::net::Ipv6Addr = "2001:db8:ffff::3".parse().unwrap();
    let visited6: std::net::Ipv6Addr = "2001:db8:ffff::2".parse().unwrap();
    let t0 = Instant::now();
    let wall0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut settings = chain_settings();
    settings.home_gateways = vec![MagFilter(ipnet::IpNet::from(IpAddr::V6(home6)))];
    settings.local_v6 = Some(visited6);
    settings.own_addresses.push(IpAddr::V6(visited6));
    let mut visited = Lma::new(
        core_settings("10.20.0.0/24", "2001:db8:20::/56", &[EPDG]),
        t0,
        wall0,
    )
    .unwrap()
    .with_chaining(settings);
    let mut home_settings = core_settings("10.90.0.0/24", "2001:db8:90::/56", &[]);
    home_settings.allowed_mags = vec![MagFilter(ipnet::IpNet::from(IpAddr::V6(visited6)))];
    let mut home = Lma::new(home_settings, t0, wall0).unwrap();

    // The ePDG's PBU names the IPv6 home gateway.
    let mut request = Net::request(UE, HOME, 7000);
    request.vendor = vec![VendorSpecific::ThreeGpp(ThreeGppOption::PdnGwIpAddress(
        IpAddr::V6(home6),
    ))];
    let mut epdg = bul::BindingUpdateList::new(MagConfig::default(), t0, wall0);
    let mut sent = Vec::new();
    epdg.handle(bul::Input::Register(request), t0, &mut sent);
    let Some(bul::Output::Send { pbu, .. }) = sent.pop() else {
        panic!("no PBU");
    };
    let from_epdg = MagAddress::Udp4 {
        mag: SocketAddrV4::new(EPDG, PORT),
        local: VISITED,
    };
    let out = deliver(
        &mut visited,
        from_epdg,
        MobilityMessage::BindingUpdate(pbu.to_binding_update()),
        t0,
    );
    let to_home = MagAddress::Ip6 {
        mag: home6,
        local: visited6,
        kernel_checksum: true,
    };
    let pbu_home = out
        .iter()
        .find_map(|o| match o {
            Output::Send { to, bytes } if *to == to_home => Some(bytes.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no PBU over IPv6 to the home gateway: {out:?}"));
    // The home gateway, over its raw socket.
    let mut home_out = Vec::new();
    home.handle(
        Input::Mobility {
            from: MagAddress::Ip6 {
                mag: visited6,
                local: home6,
                kernel_checksum: true,
            },
            bytes: &pbu_home,
        },
        t0,
        &mut home_out,
    );
    let pba_home = home_out
        .iter()
        .find_map(|o| match o {
            Output::Send { to, bytes } if to.ip() == IpAddr::V6(visited6) => Some(bytes.clone()),
            _ => None,
        })
        .expect("a PBA from home");
    let mut back = Vec::new();
    visited.handle(
        Input::Mobility {
            from: to_home,
            bytes: &pba_home,
        },
        t0,
        &mut back,
    );
    let ack = back
        .iter()
        .find_map(|o| match o {
            Output::Send { to, bytes } if *to == from_epdg => {
                match MobilityHeaderRepr::parse(bytes, to.send_checksum()).map(|m| m.message) {
                    Ok(MobilityMessage::BindingAck(ba)) => ProxyBindingAck::try_from(&ba).ok(),
                    _ => None,
                }
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no PBA to the ePDG: {back:?}"));
    assert_eq!(ack.status, BindingAckStatus::Accepted);
    assert_eq!(
        ack.home_network_prefixes,
        vec!["2001:db8:90::/64".parse::<ipnet::Ipv6Net>().unwrap()]
    );
    let up = back
        .iter()
        .find_map(|o| match o {
            Output::ChainUp(info) => Some(info.clone()),
            _ => None,
        })
        .expect("the relay learns the chain");
    assert_eq!(up.home, to_home);
    assert_eq!(visited.chain_counts(), (1, 0));
}

/// Encodes `message` as sent by `from` and hands it to `lma`; returns what it output.
fn deliver(lma: &mut Lma, from: MagAddress, message: MobilityMessage, now: Instant) -> Vec<Output> {
    let bytes = MobilityHeaderRepr {
        payload_proto: IPPROTO_NONE,
        message,
    }
    .to_bytes(from.receive_checksum());
    let mut out = Vec::new();
    lma.handle(
        Input::Mobility {
            from,
            bytes: &bytes,
        },
        now,
        &mut out,
    );
    out
}

/// Sends a PBU as the ePDG (raw, so the test picks every field) and runs the network
/// until it settles.
fn send_as_epdg(net: &mut Net, pbu: &ProxyBindingUpdate) {
    send_as(net, EPDG, pbu)
}

/// Sends a PBU as the ePDG at `epdg`.
fn send_as(net: &mut Net, epdg: Ipv4Addr, pbu: &ProxyBindingUpdate) {
    let from = MagAddress::Udp4 {
        mag: SocketAddrV4::new(epdg, PORT),
        local: VISITED,
    };
    let out = deliver(
        &mut net.visited,
        from,
        MobilityMessage::BindingUpdate(pbu.to_binding_update()),
        net.now,
    );
    net.carry_visited(out);
}

#[test]
fn an_epdg_re_registration_propagates_home_and_is_answered_with_the_homes_grant() {
    let mut net = Net::new("10.90.0.0/24");
    net.epdg_input(bul::Input::Register(Net::request(UE, HOME, 7000)));
    let registered = net.registered()[0].clone();
    let home_pbus = net.to_home.len();
    let answers = net.to_epdg.len();
    // The ePDG re-registers (a handover inside it: a new downlink key), 10 s later.
    net.secs(10.0);
    let pbu = ProxyBindingUpdate {
        sequence: 50,
        lifetime: Lifetime::from_secs(7200),
        gre_key: Some(GreKey(7777)),
        handoff: HandoffIndicator::HandoffBetweenSameInterface,
        home_network_prefixes: vec![registered.home_network_prefix.unwrap()],
        ipv4_home_address_request: registered.ipv4_home_address,
        timestamp: Some(pmip_common::mh::Timestamp::from_system_time(net.wall())),
        ..net.to_home[0].clone()
    };
    send_as_epdg(&mut net, &pbu);
    // One refresh went home, with the held values, and the answer followed it.
    assert_eq!(net.to_home.len(), home_pbus + 1);
    let refresh = net.to_home.last().unwrap();
    assert_eq!(
        refresh.home_network_prefixes,
        vec![registered.home_network_prefix.unwrap()]
    );
    assert_eq!(refresh.handoff, HandoffIndicator::HandoffStateNotChanged);
    assert!(net.chain_events().contains(&ChainEvent::HomeRefreshed));
    assert_eq!(net.to_epdg.len(), answers + 1);
    let ack = net.to_epdg.last().unwrap();
    assert_eq!(ack.status, BindingAckStatus::Accepted);
    assert_eq!(ack.sequence, 50);
    // Never longer than the home granted (600 s), whatever the ePDG asked.
    assert_eq!(ack.lifetime, Lifetime::from_secs(600));
    assert_eq!(ack.gre_key, registered.uplink_gre_key);
    assert_eq!(
        ack.ipv4_home_address_reply.map(|r| r.1),
        registered.ipv4_home_address
    );
    let up: Vec<&ChainInfo> = net
        .visited_out
        .iter()
        .filter_map(|o| match o {
            Output::ChainUp(i) => Some(i),
            _ => None,
        })
        .collect();
    assert_eq!(up.len(), 2, "the relay moved to the new key");
    assert_eq!(up[1].epdg_downlink_key, GreKey(7777));
    assert_eq!(net.home.cache().len(), 1);
    // A refresh naming another prefix is refused here (159), nothing goes home.
    let wrong = ProxyBindingUpdate {
        sequence: 51,
        home_network_prefixes: vec!["2001:db8:66::/64".parse().unwrap()],
        timestamp: Some(pmip_common::mh::Timestamp::from_system_time(
            net.wall() + Duration::from_secs(1),
        )),
        ..pbu.clone()
    };
    send_as_epdg(&mut net, &wrong);
    assert_eq!(
        net.to_epdg.last().unwrap().status,
        BindingAckStatus::BcePbuPrefixSetDoNotMatch
    );
    assert_eq!(net.to_home.len(), home_pbus + 1);
    assert_eq!(net.visited.chain_counts(), (1, 0));
}

#[test]
fn an_epdg_re_registration_the_home_refuses_gets_the_homes_status_and_ends_the_binding() {
    let mut net = Net::new("10.90.0.0/24");
    net.epdg_input(bul::Input::Register(Net::request(UE, HOME, 7000)));
    let registered = net.registered()[0].clone();
    // The home gateway restarts with an empty cache, and another IPv6 pool: the prefix
    // the binding held is not one it may assign any more.
    net.home = Lma::new(
        core_settings("10.90.0.0/24", "2001:db8:91::/56", &[VISITED_HOME_SIDE]),
        net.now,
        net.wall(),
    )
    .unwrap();
    net.secs(10.0);
    let pbu = ProxyBindingUpdate {
        sequence: 50,
        home_network_prefixes: vec![registered.home_network_prefix.unwrap()],
        ipv4_home_address_request: registered.ipv4_home_address,
        timestamp: Some(pmip_common::mh::Timestamp::from_system_time(net.wall())),
        ..net.to_home[0].clone()
    };
    send_as_epdg(&mut net, &pbu);
    // The home refused the refresh (155: a prefix outside its pool); so was the ePDG.
    let ack = net.to_epdg.last().unwrap();
    assert_eq!(ack.sequence, 50);
    assert_eq!(
        ack.status,
        BindingAckStatus::NotAuthorizedForHomeNetworkPrefix
    );
    assert!(net.chain_events().contains(&ChainEvent::HomeLost));
    net.epdg_alive = false;
    net.secs(20.0);
    net.assert_nothing_left();
}

#[test]
fn an_epdg_re_registration_with_a_silent_home_is_128_with_gtp_cause_100() {
    let mut net = Net::new("10.90.0.0/24");
    net.epdg_input(bul::Input::Register(Net::request(UE, HOME, 7000)));
    let registered = net.registered()[0].clone();
    net.secs(10.0);
    net.home_down = true;
    let pbu = ProxyBindingUpdate {
        sequence: 50,
        home_network_prefixes: vec![registered.home_network_prefix.unwrap()],
        ipv4_home_address_request: registered.ipv4_home_address,
        timestamp: Some(pmip_common::mh::Timestamp::from_system_time(net.wall())),
        ..net.to_home[0].clone()
    };
    send_as_epdg(&mut net, &pbu);
    let answers = net.to_epdg.len();
    net.epdg_alive = false;
    net.secs(12.0);
    assert_eq!(net.to_epdg.len(), answers + 1);
    let ack = net.to_epdg.last().unwrap();
    assert_eq!(
        (ack.sequence, ack.status),
        (50, BindingAckStatus::ReasonUnspecified)
    );
    assert_eq!(
        ack.vendor,
        vec![VendorSpecific::ThreeGpp(ThreeGppOption::ErrorCode(
            GTP_CAUSE_REMOTE_PEER_NOT_RESPONDING
        ))]
    );
    assert_eq!(net.visited.cache().len(), 0);
    assert_eq!(net.visited.chain_counts(), (0, 0));
    // Three refresh PBUs went unanswered, then one clean-up de-registration: the home
    // (back now) lets go of it at once.
    let last = net.to_home.last().unwrap();
    assert_eq!(last.lifetime, Lifetime(0));
    assert_eq!(
        last.home_network_prefixes,
        vec![registered.home_network_prefix.unwrap()]
    );
    net.home_down = false;
    let cleanup = last.clone();
    let from = MagAddress::Udp4 {
        mag: SocketAddrV4::new(VISITED_HOME_SIDE, PORT),
        local: HOME,
    };
    let out = deliver(
        &mut net.home,
        from,
        MobilityMessage::BindingUpdate(cleanup.to_binding_update()),
        net.now,
    );
    assert_eq!(net.home.cache().len(), 0, "{out:?}");
}

#[test]
fn a_home_reject_passes_its_3gpp_options_on_to_the_epdg() {
    let mut net = Net::new("10.90.0.0/24");
    net.home_down = true;
    net.epdg_input(bul::Input::Register(Net::request(UE, HOME, 7000)));
    let pbu = net.to_home[0].clone();
    // The home refuses with a 3GPP Specific PMIPv6 Error Code of its own.
    let reject = ProxyBindingAck {
        status: BindingAckStatus::AdministrativelyProhibited,
        sequence: pbu.sequence,
        lifetime: Lifetime(0),
        mn_id: Some(UE.into()),
        apn: Some("internet".into()),
        home_network_prefixes: Vec::new(),
        handoff: None,
        access_technology: None,
        timestamp: None,
        link_local_address: None,
        link_layer_id: None,
        gre_key: None,
        ipv4_home_address_reply: None,
        ipv4_default_router: None,
        restart_counter: None,
        vendor: vec![VendorSpecific::ThreeGpp(ThreeGppOption::ErrorCode(73))],
        other: Vec::new(),
    }
    .to_binding_ack();
    let from = MagAddress::Udp4 {
        mag: SocketAddrV4::new(HOME, PORT),
        local: VISITED_HOME_SIDE,
    };
    let out = deliver(
        &mut net.visited,
        from,
        MobilityMessage::BindingAck(reject),
        net.now,
    );
    net.carry_visited(out);
    let ack = net.to_epdg.last().expect("the ePDG is answered");
    assert_eq!(ack.status, BindingAckStatus::AdministrativelyProhibited);
    assert_eq!(
        ack.vendor,
        vec![VendorSpecific::ThreeGpp(ThreeGppOption::ErrorCode(73))]
    );
    net.secs(5.0);
    assert_eq!(net.to_home.len(), 1, "no clean-up after an answer");
    assert_eq!(net.visited.chain_counts(), (0, 0));
}

/// The Binding Revocation Indications the visited gateway sent to `epdg`.
fn revocations_to(net: &Net, epdg: Ipv4Addr) -> Vec<pmip_common::mh::BindingRevocationRepr> {
    net.to_others
        .iter()
        .filter_map(|(ip, m)| match m {
            MobilityMessage::BindingRevocation(br) if *ip == IpAddr::V4(epdg) => Some(br.clone()),
            _ => None,
        })
        .collect()
}

/// The PBAs the second ePDG received.
fn acks_to_epdg2(net: &Net) -> Vec<ProxyBindingAck> {
    net.to_others
        .iter()
        .filter_map(|(ip, m)| match m {
            MobilityMessage::BindingAck(ba) if *ip == IpAddr::V4(EPDG2) => {
                Some(ProxyBindingAck::try_from(ba).unwrap())
            }
            _ => None,
        })
        .collect()
}

/// The mobile node of the chained test registration, 5 s later at the second ePDG with
/// Handoff Indicator `handoff`; naming the home gateway when `chained`.
fn at_second_epdg(net: &mut Net, handoff: HandoffIndicator, chained: bool) -> ProxyBindingUpdate {
    net.epdg_input(bul::Input::Register(Net::request(UE, HOME, 7000)));
    net.secs(5.0);
    let vendor = if chained {
        vec![VendorSpecific::ThreeGpp(ThreeGppOption::PdnGwIpAddress(
            IpAddr::V4(HOME),
        ))]
    } else {
        Vec::new()
    };
    ProxyBindingUpdate {
        sequence: 9,
        gre_key: Some(GreKey(8888)),
        handoff,
        timestamp: Some(pmip_common::mh::Timestamp::from_system_time(net.wall())),
        vendor,
        ..net.to_home[0].clone()
    }
}

#[test]
fn a_chained_binding_handed_to_another_epdg_moves_the_relay_and_revokes_the_old_epdg() {
    let mut net = Net::new("10.90.0.0/24");
    let pbu = at_second_epdg(
        &mut net,
        HandoffIndicator::HandoffBetweenSameInterface,
        false,
    );
    let registered = net.registered()[0].clone();
    send_as(&mut net, EPDG2, &pbu);
    let acks = acks_to_epdg2(&net);
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].status, BindingAckStatus::Accepted);
    assert_eq!(
        acks[0].ipv4_home_address_reply.map(|r| r.1),
        registered.ipv4_home_address,
        "a handoff keeps the home addresses"
    );
    let bris = revocations_to(&net, EPDG);
    assert_eq!(bris.len(), 1);
    assert_eq!(
        bris[0].trigger_or_status, 2,
        "Inter-MAG Handover - same Access Type"
    );
    assert_eq!(
        bris[0].options[1],
        MobilityOption::HomeNetworkPrefix(registered.home_network_prefix.unwrap()),
        "names the binding by its (home) prefix"
    );
    let up = net.visited_out.iter().rev().find_map(|o| match o {
        Output::ChainUp(i) => Some(i.clone()),
        _ => None,
    });
    assert_eq!(up.unwrap().epdg.ip(), IpAddr::V4(EPDG2));
}

#[test]
fn a_new_session_from_another_epdg_replaces_a_chained_binding_after_home_lets_it_go() {
    let mut net = Net::new("10.90.0.0/24");
    // Chained again: it names the home gateway.
    let pbu = at_second_epdg(&mut net, HandoffIndicator::AttachmentOverNewInterface, true);
    let first = net.registered()[0].clone();
    send_as(&mut net, EPDG2, &pbu);
    net.secs(10.0);
    let acks = acks_to_epdg2(&net);
    assert_eq!(acks.len(), 1, "{:?}", net.to_others);
    assert_eq!(acks[0].status, BindingAckStatus::Accepted);
    assert_ne!(acks[0].gre_key, first.uplink_gre_key, "a new uplink key");
    // Told, and told again once (the old ePDG here does not answer).
    let bris = revocations_to(&net, EPDG);
    assert_eq!(bris.len(), 2);
    assert_eq!(bris[0], bris[1]);
    assert_eq!(bris[0].trigger_or_status, 1, "Administrative Reason");
    assert!(net.chain_events().contains(&ChainEvent::HomeDeregistered));
    assert_eq!(net.visited.chain_counts(), (1, 0));
    assert_eq!(net.home.cache().len(), 1);
    let id = net.visited.cache().find(UE, Some("internet")).unwrap();
    assert_eq!(
        net.visited.cache().get(id).unwrap().mag().ip(),
        IpAddr::V4(EPDG2)
    );
}

#[test]
fn a_new_session_waits_while_the_home_is_slow_to_let_the_old_one_go() {
    let mut net = Net::new("10.90.0.0/24");
    let pbu = at_second_epdg(&mut net, HandoffIndicator::AttachmentOverNewInterface, true);
    // The home does not hear the first de-registration.
    net.home_down = true;
    send_as(&mut net, EPDG2, &pbu);
    assert!(acks_to_epdg2(&net).is_empty(), "waiting for the home");
    net.home_down = false;
    net.secs(8.0);
    let acks = acks_to_epdg2(&net);
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].status, BindingAckStatus::Accepted);
    assert_eq!(net.visited.chain_counts(), (1, 0));
    assert_eq!(net.home.cache().len(), 1);
}
