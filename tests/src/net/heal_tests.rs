//! Failures that heal, on the in-memory network: an ePDG's binding update list (the MAG
//! side) and a gateway (an `lma` core) with RFC 5847 heartbeats; the gateway restarts
//! with or without its state file, goes away for good, the MAG restarts, the gateway
//! revokes (RFC 5846).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ::lma::anchor::RevokeTarget;
use pmip_common::binding_update_list::{
    self as bul, LmaEvent, MagConfig, MobileNodeKey, Registration, RegistrationFailure,
    RegistrationRequest,
};
use pmip_common::heartbeat::HeartbeatSettings;
use pmip_common::mh::{GreKey, HandoffIndicator, Lifetime};

use super::lma::{LmaNode, MH_PORT};
use super::mag::MagNode;
use super::*;

const EPDG: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
const INTERVAL: Duration = Duration::from_secs(60);

fn mag_config(restart_counter: u32) -> MagConfig {
    MagConfig {
        requested_lifetime: Lifetime::from_secs(3600),
        heartbeat: Some(HeartbeatSettings::default()),
        restart_counter,
        ..MagConfig::default()
    }
}

struct Lab {
    net: Net,
    epdg: NodeId<MagNode>,
    gateway: NodeId<LmaNode>,
}

impl Lab {
    fn new(seed: u64) -> Lab {
        let mut net = Net::new(seed);
        let (t0, wall0) = (net.start(), net.wall_clock_at_start());
        let epdg = net.add(MagNode::new(
            "epdg",
            SocketAddr::new(EPDG.into(), MH_PORT),
            mag_config(1),
            t0,
            wall0,
        ));
        // Heartbeats on by default (RFC 5847 section 5's 60 s and 3).
        let gateway = LmaNode::configured(
            "pgw",
            &format!(
                "listen_v4 = \"{GATEWAY}:{MH_PORT}\"\nipv4_pool = \"10.45.0.0/20\"\n\
                 ipv6_pool = \"2001:db8:45::/48\"\nallowed_mags = [\"{EPDG}\"]\n\
                 timestamp_window_ms = 1000\n"
            ),
            t0,
            wall0,
        )
        .unwrap();
        let gateway = net.add(gateway);
        net.link(
            epdg,
            gateway,
            LinkPolicy::lossy(Duration::from_millis(5), 0.0),
        );
        Lab { net, epdg, gateway }
    }

    fn key(i: usize) -> MobileNodeKey {
        MobileNodeKey::new(
            &format!("{:015}@nai.epc", 1010000000000u64 + i as u64),
            Some("internet"),
        )
    }

    fn register(&mut self, n: usize) -> HashMap<MobileNodeKey, Registration> {
        for i in 0..n {
            let request = RegistrationRequest {
                key: Self::key(i),
                lma: SocketAddr::new(GATEWAY.into(), MH_PORT),
                request_home_network_prefix: true,
                request_ipv4_home_address: true,
                downlink_gre_key: Some(GreKey(1000 + i as u32)),
                handoff: HandoffIndicator::AttachmentOverNewInterface,
                vendor: Vec::new(),
            };
            self.net.command(self.epdg, |m, now, _, out| {
                m.input(bul::Input::Register(request), now, out)
            });
        }
        let epdg = self.epdg;
        assert!(self
            .net
            .run_until(Duration::from_secs(30), |net| net.node(epdg).registered()
                >= n));
        self.registrations(n)
    }

    fn registrations(&self, n: usize) -> HashMap<MobileNodeKey, Registration> {
        (0..n)
            .filter_map(|i| {
                let key = Self::key(i);
                let r = self.net.node(self.epdg).registration(&key)?.clone();
                Some((key, r))
            })
            .collect()
    }

    fn restart_gateway(&mut self, counter: u32) {
        let (now, wall) = (self.net.now(), self.wall());
        self.net.command(self.gateway, |g, _, _, out| {
            g.restart(counter, now, wall, out).unwrap()
        });
    }

    fn wall(&self) -> std::time::SystemTime {
        self.net.wall_clock_at_start() + self.net.elapsed()
    }

    /// The ePDG's restart counter as the gateway heard it.
    fn mag_counter_at_gateway(&self) -> Option<u32> {
        let gateway = &self.net.node(self.gateway).lma;
        gateway.mag_restart_counter(EPDG.into())
    }

    fn reregistered(&self) -> u64 {
        self.net.node(self.epdg).list.stats().reregistered
    }
}

/// Same prefix and IPv4 address for every binding; a new uplink key for each.
fn assert_same_addresses(
    before: &HashMap<MobileNodeKey, Registration>,
    after: &HashMap<MobileNodeKey, Registration>,
) {
    assert_eq!(before.len(), after.len());
    for (key, old) in before {
        let new = &after[key];
        assert_eq!(new.home_network_prefix, old.home_network_prefix, "{key}");
        assert_eq!(new.ipv4_home_address, old.ipv4_home_address, "{key}");
        assert_ne!(
            new.uplink_gre_key, old.uplink_gre_key,
            "{key}: a key of the old run"
        );
    }
}

fn restart_heals(keep_state: bool) {
    let mut lab = Lab::new(3);
    if keep_state {
        lab.net.node_mut(lab.gateway).keep_state();
    }
    let before = lab.register(100);
    // A heartbeat exchange or two: the ePDG knows the gateway's counter (0).
    lab.net.run_for(INTERVAL + Duration::from_secs(5));
    let gw = IpAddr::V4(GATEWAY);
    assert_eq!(lab.net.node(lab.epdg).list.lma_restart_counter(gw), Some(0));
    assert_eq!(lab.mag_counter_at_gateway(), Some(1));
    // kill -9, started again 2 s later with the next counter.
    lab.net.partition(lab.epdg, lab.gateway, true);
    lab.net.run_for(Duration::from_secs(2));
    lab.net.partition(lab.epdg, lab.gateway, false);
    let restarted_at = lab.net.elapsed();
    lab.restart_gateway(1);
    let epdg = lab.epdg;
    let healed = lab.net.run_until(2 * INTERVAL, |net| {
        net.node(epdg).list.stats().reregistered >= 100
    });
    assert!(healed, "{} of 100 re-registered", lab.reregistered());
    let took = lab.net.elapsed() - restarted_at;
    if keep_state {
        // The unsolicited Heartbeat Response told the ePDG at once.
        assert!(took < Duration::from_secs(1), "{took:?}");
    }
    assert_eq!(lab.net.node(lab.epdg).lost(), 0);
    assert!(lab
        .net
        .node(lab.epdg)
        .lma_events
        .iter()
        .any(|(_, e)| matches!(
            e,
            LmaEvent::Restarted {
                previous: Some(0),
                current: 1,
                ..
            }
        )));
    let after = lab.registrations(100);
    assert_same_addresses(&before, &after);
    assert_eq!(lab.net.node(lab.gateway).lma.cache().len(), 100);
    // Held back entries all went back to their bindings.
    assert_eq!(lab.net.node(lab.gateway).lma.held_back(), 0);
}

#[test]
fn a_restarted_gateway_with_its_state_file_gets_every_binding_back_at_once() {
    restart_heals(true);
}

#[test]
fn a_restarted_gateway_without_state_gets_every_binding_back_within_two_intervals() {
    restart_heals(false);
}

#[test]
fn a_gateway_gone_for_good_loses_every_binding_after_the_allowed_misses() {
    let mut lab = Lab::new(4);
    lab.register(100);
    lab.net.run_for(Duration::from_secs(10));
    lab.net.partition(lab.epdg, lab.gateway, true);
    let epdg = lab.epdg;
    // Requests at 60, 120, 180, 240 s unanswered: the fifth sees the fourth miss.
    assert!(lab
        .net
        .run_until(6 * INTERVAL, |net| net.node(epdg).lost() >= 100));
    let m = lab.net.node(lab.epdg);
    assert!(m.events.iter().all(|(_, e)| !matches!(
        e,
        bul::Output::Lost { reason, .. } if !matches!(reason, RegistrationFailure::Unreachable { .. })
    )));
    assert!(m.list.is_empty());
    assert!(m
        .lma_events
        .iter()
        .any(|(_, e)| matches!(e, LmaEvent::Unreachable { lost: 100, .. })));
}

#[test]
fn a_restarted_mag_loses_its_bindings_at_the_gateway_at_once() {
    for announce in [true, false] {
        let mut lab = Lab::new(5);
        lab.register(50);
        // The gateway's first heartbeat (an interval after the first binding) learns the
        // MAG's counter.
        lab.net.run_for(INTERVAL + Duration::from_secs(10));
        assert_eq!(lab.mag_counter_at_gateway(), Some(1));
        let full = lab.net.node(lab.gateway).lma.available_ipv4() + 50;
        let (now, wall) = (lab.net.now(), lab.wall());
        lab.net.command(lab.epdg, |m, _, _, out| {
            m.restart(mag_config(2), announce, now, wall, out)
        });
        let gateway = lab.gateway;
        // Announced: at once; else at the gateway's next heartbeat (within an interval).
        let limit = if announce {
            Duration::from_secs(1)
        } else {
            INTERVAL
        };
        assert!(
            lab.net
                .run_until(limit, |net| net.node(gateway).lma.cache().is_empty()),
            "announce {announce}: {} left",
            lab.net.node(lab.gateway).lma.cache().len()
        );
        assert_eq!(lab.net.node(lab.gateway).lma.available_ipv4(), full);
    }
}

#[test]
fn an_operator_revocation_reaches_the_mag_and_its_address_waits_for_the_answer() {
    let mut lab = Lab::new(6);
    let before = lab.register(3);
    let now = lab.net.now();
    let revoked = lab.net.command(lab.gateway, |g, _, _, out| {
        let mut lma_out = Vec::new();
        let n = g.lma.revoke_bindings(
            RevokeTarget::Binding {
                mn_id: Lab::key(1).mn_id.to_string(),
                apn: Some("internet".into()),
            },
            now,
            &mut lma_out,
        );
        g.handle_outputs(now, lma_out, out);
        n
    });
    assert_eq!(revoked, Ok(1));
    // Held back until the MAG answers.
    assert_eq!(lab.net.node(lab.gateway).lma.held_back(), 1);
    lab.net.run_for(Duration::from_secs(1));
    let m = lab.net.node(lab.epdg);
    assert!(m.events.iter().any(|(_, e)| matches!(
        e,
        bul::Output::Lost { key, reason: RegistrationFailure::Revoked { trigger: 1 } }
            if *key == Lab::key(1)
    )));
    assert!(m.registration(&Lab::key(1)).is_none());
    assert!(m.registration(&Lab::key(0)).is_some());
    assert_eq!(lab.net.node(lab.gateway).lma.held_back(), 0);
    assert_eq!(lab.net.node(lab.gateway).lma.stats().revocation_acks, 1);
    // Every binding of the MAG at once: one indication with G.
    let now = lab.net.now();
    lab.net.command(lab.gateway, |g, _, _, out| {
        let mut lma_out = Vec::new();
        let n = g
            .lma
            .revoke_bindings(RevokeTarget::Mag(EPDG.into()), now, &mut lma_out);
        assert_eq!(n, Ok(2));
        g.handle_outputs(now, lma_out, out);
    });
    lab.net.run_for(Duration::from_secs(1));
    assert!(lab.net.node(lab.epdg).list.is_empty());
    assert!(lab
        .net
        .node(lab.epdg)
        .lma_events
        .iter()
        .any(|(_, e)| matches!(
            e,
            LmaEvent::Revocation {
                global: true,
                trigger: 128,
                status: 0,
                revoked: 2,
                ..
            }
        )));
    assert_eq!(lab.net.node(lab.gateway).lma.held_back(), 0);
    assert_eq!(before.len(), 3);
}
