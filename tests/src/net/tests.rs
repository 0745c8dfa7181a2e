//! The network itself, tested with the cores that exist: the roaming chain (an ePDG's
//! binding update list -> visited gateway -> home gateway) under loss, the determinism of
//! a seed, stream links (refusal, order, cuts) with the AAA server on them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ::lma::anchor::ChainSettings;
use ::lma::config::{MagFilter, UnauthorizedMag};
use ::lma::{Lma, LmaSettings};
use ipnet::IpNet;
use pmip_common::binding_update_list::{
    self as bul, MagConfig, MobileNodeKey, RegistrationRequest,
};
use pmip_common::mh::{GreKey, HandoffIndicator, Lifetime, ThreeGppOption, VendorSpecific};

use super::lma::{LmaNode, MH_PORT};
use super::mag::MagNode;
use super::*;

const EPDG: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const VISITED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const VISITED_HOME_SIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const HOME: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
const HOME_POOL: &str = "10.90.0.0/20";

fn filter(a: Ipv4Addr) -> MagFilter {
    MagFilter(IpNet::from(IpAddr::V4(a)))
}

fn gateway(pool_v4: &str, pool_v6: &str, mag: Ipv4Addr) -> LmaSettings {
    let pool: ipnet::Ipv4Net = pool_v4.parse().unwrap();
    LmaSettings {
        ipv4_pool: Some(pool),
        ipv4_default_router: pool.hosts().next(),
        ipv6_pool: Some(pool_v6.parse().unwrap()),
        max_lifetime: Lifetime::from_secs(3600),
        timestamp_window: Duration::from_secs(1),
        require_timestamp: false,
        require_gre_key: true,
        unauthorized_mag: UnauthorizedMag::Reject,
        allowed_mags: vec![filter(mag)],
        restart_counter: 1,
    }
}

/// The roaming chain on a network of `seed`, every link `loss` lossy with 10 ms delay.
struct Chain {
    net: Net,
    epdg: NodeId<MagNode>,
    visited: NodeId<LmaNode>,
    home: NodeId<LmaNode>,
}

impl Chain {
    fn new(seed: u64, loss: f64) -> Chain {
        let mut net = Net::new(seed);
        let (t0, wall0) = (net.start(), net.wall_clock_at_start());
        let epdg = net.add(MagNode::new(
            "epdg",
            SocketAddr::new(EPDG.into(), MH_PORT),
            MagConfig {
                // Six transmissions: at 10 % loss each way, a registration fails only
                // if six round trips in a row lose a message (about 5e-5).
                max_retransmissions: 5,
                requested_lifetime: Lifetime::from_secs(300),
                ..MagConfig::default()
            },
            t0,
            wall0,
        ));
        let visited = Lma::new(gateway("10.20.0.0/20", "2001:db8:20::/48", EPDG), t0, wall0)
            .unwrap()
            .with_chaining(ChainSettings {
                home_gateways: vec![filter(HOME)],
                own_addresses: vec![IpAddr::V4(VISITED), IpAddr::V4(VISITED_HOME_SIDE)],
                local_v4: Some(VISITED_HOME_SIDE),
                local_v6: None,
                home_port: MH_PORT,
                registration: MagConfig {
                    init_min_delay_between_bus: Duration::from_millis(200),
                    max_delay_between_bus: Duration::from_secs(2),
                    max_retransmissions: 6,
                    requested_lifetime: Lifetime::from_secs(600),
                    ..MagConfig::default()
                },
            });
        let visited = net.add(LmaNode::new(
            "vsaegw",
            visited,
            &[VISITED, VISITED_HOME_SIDE],
        ));
        let home = Lma::new(
            gateway(HOME_POOL, "2001:db8:90::/48", VISITED_HOME_SIDE),
            t0,
            wall0,
        )
        .unwrap();
        let home = net.add(LmaNode::new("hsaegw", home, &[HOME]));
        let link = LinkPolicy::lossy(Duration::from_millis(10), loss);
        net.link(epdg, visited, link).link(visited, home, link);
        Chain {
            net,
            epdg,
            visited,
            home,
        }
    }

    fn key(i: usize) -> MobileNodeKey {
        MobileNodeKey::new(
            &format!(
                "{:015}@nai.epc.mnc001.mcc001.3gppnetwork.org",
                1010000000000u64 + i as u64
            ),
            Some("internet"),
        )
    }

    fn register(&mut self, n: usize) {
        for i in 0..n {
            let request = RegistrationRequest {
                key: Self::key(i),
                lma: SocketAddr::new(VISITED.into(), MH_PORT),
                request_home_network_prefix: true,
                request_ipv4_home_address: true,
                downlink_gre_key: Some(GreKey(1000 + i as u32)),
                handoff: HandoffIndicator::AttachmentOverNewInterface,
                vendor: vec![VendorSpecific::ThreeGpp(ThreeGppOption::PdnGwIpAddress(
                    IpAddr::V4(HOME),
                ))],
            };
            self.net.command(self.epdg, |m, now, _, out| {
                m.input(bul::Input::Register(request), now, out)
            });
        }
    }

    fn deregister(&mut self, n: usize) {
        for i in 0..n {
            self.net.command(self.epdg, |m, now, _, out| {
                m.input(bul::Input::Deregister(Self::key(i)), now, out)
            });
        }
    }

    /// Runs until every registration has an outcome.
    fn settle_registrations(&mut self, n: usize) {
        let epdg = self.epdg;
        self.net.run_until(Duration::from_secs(300), |net| {
            let m = net.node(epdg);
            m.registered() + m.failed() >= n
        });
    }

    /// Runs until the ePDG's de-registrations are done and neither gateway holds
    /// anything.
    fn settle_deregistrations(&mut self, n: usize) {
        let (epdg, visited, home) = (self.epdg, self.visited, self.home);
        self.net.run_until(Duration::from_secs(300), |net| {
            net.node(epdg).deregistered() >= n
                && net.node(visited).lma.cache().is_empty()
                && net.node(visited).lma.chain_counts() == (0, 0)
                && net.node(home).lma.cache().is_empty()
        });
    }
}

#[test]
fn a_thousand_roaming_registrations_all_succeed_through_ten_percent_loss() {
    let mut chain = Chain::new(7, 0.1);
    chain.register(1000);
    chain.settle_registrations(1000);
    let (net, epdg, visited, home) = (&chain.net, chain.epdg, chain.visited, chain.home);
    let m = net.node(epdg);
    assert_eq!(
        (m.registered(), m.failed()),
        (1000, 0),
        "{:?}",
        net.elapsed()
    );
    assert_eq!(m.unparsable, 0);
    // Every UE holds a distinct address from the home pool, which the home gateway holds.
    let pool: ipnet::Ipv4Net = HOME_POOL.parse().unwrap();
    let mut addresses = std::collections::BTreeSet::new();
    for i in 0..1000 {
        let r = m.registration(&Chain::key(i)).expect("registered");
        let v4 = r.ipv4_home_address.expect("an IPv4 home address").addr();
        assert!(pool.contains(&v4), "{v4}");
        assert!(r.home_network_prefix.is_some());
        assert!(addresses.insert(v4), "{v4} twice");
    }
    assert_eq!(net.node(visited).lma.chain_counts(), (1000, 0));
    assert_eq!(net.node(visited).lma.cache().len(), 1000);
    assert_eq!(net.node(home).lma.cache().len(), 1000);
    // The loss was real, and retransmission made up for it.
    let lost = net.trace().iter().filter(|e| e.fate == Fate::Lost).count();
    let sent = net.trace().len();
    assert!(
        (0.08..0.12).contains(&(lost as f64 / sent as f64)),
        "{lost} of {sent} lost"
    );
    assert!(m.list.stats().retransmissions > 0);

    chain.deregister(1000);
    chain.settle_deregistrations(1000);
    let (net, epdg, visited, home) = (&chain.net, chain.epdg, chain.visited, chain.home);
    assert_eq!(net.node(epdg).deregistered(), 1000);
    assert!(net.node(epdg).list.is_empty());
    let v = &net.node(visited).lma;
    assert_eq!((v.cache().len(), v.chain_counts()), (0, (0, 0)));
    assert_eq!(net.node(home).lma.cache().len(), 0);
    // Nothing is left to do but wait: no binding, no timer.
    assert_eq!(
        net.node(home).lma.available_ipv4(),
        pool.hosts().count() as u32 - 1
    );
}

#[test]
fn one_seed_runs_the_same_way_twice_and_another_does_not() {
    let run = |seed: u64| {
        let mut chain = Chain::new(seed, 0.1);
        chain.register(100);
        chain.settle_registrations(100);
        chain.deregister(100);
        chain.settle_deregistrations(100);
        assert_eq!(chain.net.node(chain.epdg).registered(), 100);
        chain.net.trace().to_vec()
    };
    let first = run(11);
    assert_eq!(first, run(11));
    assert_ne!(first, run(12));
}

#[test]
fn a_partitioned_home_fails_the_registration_back_to_the_epdg() {
    let mut chain = Chain::new(3, 0.0);
    let (visited, home) = (chain.visited, chain.home);
    chain.net.partition(visited, home, true);
    chain.register(1);
    chain.settle_registrations(1);
    let m = chain.net.node(chain.epdg);
    assert_eq!((m.registered(), m.failed()), (0, 1));
    // The visited gateway's PBUs home never arrived, and it kept nothing.
    assert!(chain
        .net
        .trace()
        .iter()
        .any(|e| e.from == visited.index() && e.fate == Fate::Partitioned));
    assert_eq!(chain.net.node(visited).lma.chain_counts(), (0, 0));
    assert_eq!(chain.net.node(home).lma.cache().len(), 0);
    // Restored, the next registration goes through.
    chain.net.partition(visited, home, false);
    chain.register(1);
    chain.settle_registrations(2);
    assert_eq!(chain.net.node(chain.epdg).registered(), 1);
}
