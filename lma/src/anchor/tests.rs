//! The core with virtual time: every path of the module doc, exactly, without sockets.

use std::net::{SocketAddr, SocketAddrV4};
use std::time::UNIX_EPOCH;

use pmip_common::mh::{
    mobility_header_checksum, AccessTechnologyType, BindingErrorStatus, ChecksumContext, GreKey,
    HandoffIndicator, MobileNodeIdentifier, Timestamp,
};
use proptest::prelude::*;

use super::*;
use crate::config::MagFilter;

const MAG: &str = "192.0.2.1";
const OTHER_MAG: &str = "192.0.2.9";
const LMA: &str = "192.0.2.2";

fn settings() -> LmaSettings {
    LmaSettings {
        // Hosts .2 to .6: five addresses (.1 is the router).
        ipv4_pool: Some("10.0.0.0/29".parse().unwrap()),
        ipv4_default_router: Some("10.0.0.1".parse().unwrap()),
        // Eight /64s.
        ipv6_pool: Some("2001:db8:1::/61".parse().unwrap()),
        max_lifetime: Lifetime::from_secs(7200),
        timestamp_window: Duration::from_secs(1),
        require_timestamp: false,
        require_gre_key: true,
        unauthorized_mag: UnauthorizedMag::Reject,
        allowed_mags: vec![
            MAG.parse::<MagFilter>().unwrap(),
            OTHER_MAG.parse().unwrap(),
            "fd00::/64".parse().unwrap(),
        ],
        restart_counter: 42,
    }
}

/// A test bench: the core, virtual time and the wall clock that goes with it.
struct Bench {
    lma: Lma,
    t0: Instant,
    wall0: SystemTime,
}

impl Bench {
    fn new() -> Self {
        Self::with(settings())
    }

    fn with(settings: LmaSettings) -> Self {
        let t0 = Instant::now();
        let wall0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        Bench {
            lma: Lma::new(settings, t0, wall0).unwrap(),
            t0,
            wall0,
        }
    }

    fn at(&self, secs: u64) -> Instant {
        self.t0 + Duration::from_secs(secs)
    }

    fn ntp_at(&self, secs: u64) -> Timestamp {
        Timestamp::from_system_time(self.wall0 + Duration::from_secs(secs))
    }

    /// A valid first PBU at virtual second `secs`, asking for everything.
    fn pbu(&self, sequence: u16, mn: &str, secs: u64) -> ProxyBindingUpdate {
        ProxyBindingUpdate {
            sequence,
            flags: BuFlags(BuFlags::ACK | BuFlags::HOME_REGISTRATION | BuFlags::PROXY),
            lifetime: Lifetime::from_secs(600),
            mn_id: mn.to_string(),
            apn: Some("internet".into()),
            home_network_prefixes: vec!["::/0".parse().unwrap()],
            handoff: HandoffIndicator::AttachmentOverNewInterface,
            access_technology: AccessTechnologyType::Ieee80211,
            timestamp: Some(self.ntp_at(secs)),
            link_local_address: None,
            link_layer_id: Some(vec![2, 0, 0, 0, 0, 1]),
            gre_key: Some(GreKey(77)),
            ipv4_home_address_request: Some("0.0.0.0/0".parse().unwrap()),
            ipv4_care_of_address: None,
            restart_counter: None,
            vendor: Vec::new(),
            other: Vec::new(),
        }
    }

    /// Feeds raw bytes at virtual second `secs`.
    fn feed(&mut self, from: MagAddress, bytes: &[u8], secs: u64) -> Vec<Output> {
        let mut out = Vec::new();
        let now = self.at(secs);
        self.lma
            .handle(Input::Mobility { from, bytes }, now, &mut out);
        out
    }

    /// Sends a BU as the MAG would (checksum for the path) and returns the outputs.
    fn send(&mut self, from: MagAddress, bu: BindingUpdateRepr, secs: u64) -> Vec<Output> {
        let bytes = MobilityHeaderRepr {
            payload_proto: IPPROTO_NONE,
            message: MobilityMessage::BindingUpdate(bu),
        }
        .to_bytes(from.receive_checksum());
        self.feed(from, &bytes, secs)
    }

    /// Sends a BU and returns the one answer it got, parsed.
    fn exchange(
        &mut self,
        from: MagAddress,
        bu: BindingUpdateRepr,
        secs: u64,
    ) -> (BindingAckRepr, Vec<Output>) {
        let out = self.send(from, bu, secs);
        let ack = answers(&out, from)
            .into_iter()
            .find_map(|m| match m {
                MobilityMessage::BindingAck(ba) => Some(ba),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no PBA in {out:?}"));
        (ack, out)
    }

    fn register(&mut self, mn: &str, secs: u64) -> ProxyBindingAck {
        let pbu = self.pbu(1, mn, secs);
        let (ack, _) = self.exchange(udp(MAG), pbu.to_binding_update(), secs);
        assert_eq!(ack.status, BindingAckStatus::Accepted, "{ack:?}");
        ProxyBindingAck::try_from(&ack).unwrap()
    }

    fn timeout(&mut self, secs: u64) -> Vec<Output> {
        let mut out = Vec::new();
        let now = self.at(secs);
        self.lma.handle(Input::Timeout, now, &mut out);
        out
    }

    /// Nothing allocated, nothing bound.
    fn assert_empty(&self) {
        assert_eq!(self.lma.cache().len(), 0);
        assert_eq!(self.lma.available_ipv4(), 5);
        assert_eq!(self.lma.available_prefixes(), 8);
    }
}

fn udp(mag: &str) -> MagAddress {
    MagAddress::Udp4 {
        mag: SocketAddrV4::new(mag.parse().unwrap(), 40_000),
        local: LMA.parse().unwrap(),
    }
}

/// Every message the outputs send to `to`, parsed with the path's checksum.
fn answers(out: &[Output], to: MagAddress) -> Vec<MobilityMessage> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { to: dest, bytes } if *dest == to => Some(
                MobilityHeaderRepr::parse(bytes, to.send_checksum())
                    .unwrap_or_else(|e| panic!("our own answer does not parse: {e}"))
                    .message,
            ),
            _ => None,
        })
        .collect()
}

fn reports(out: &[Output]) -> Vec<&PbuReport> {
    out.iter()
        .filter_map(|o| match o {
            Output::Report(r) => Some(r),
            _ => None,
        })
        .collect()
}

#[test]
fn registration_allocates_prefix_address_and_key_and_mirrors_options() {
    let mut b = Bench::new();
    let pbu = b.pbu(7, "001010000000001@nai.epc", 0);
    let (ack, out) = b.exchange(udp(MAG), pbu.to_binding_update(), 0);
    assert_eq!(ack.status, BindingAckStatus::Accepted);
    assert_eq!(ack.sequence, 7);
    assert!(ack.flags.contains(BaFlags::PROXY));
    let pba = ProxyBindingAck::try_from(&ack).unwrap();
    assert_eq!(pba.lifetime, Lifetime::from_secs(600));
    assert_eq!(pba.mn_id.as_deref(), Some("001010000000001@nai.epc"));
    assert_eq!(pba.apn.as_deref(), Some("internet"));
    assert_eq!(
        pba.handoff,
        Some(HandoffIndicator::AttachmentOverNewInterface)
    );
    assert_eq!(pba.access_technology, Some(AccessTechnologyType::Ieee80211));
    assert_eq!(pba.timestamp, pbu.timestamp);
    assert_eq!(pba.link_layer_id, pbu.link_layer_id);
    let hnp = pba.home_network_prefixes[0];
    assert_eq!(hnp, "2001:db8:1::/64".parse::<Ipv6Net>().unwrap());
    let (status, hoa) = pba.ipv4_home_address_reply.unwrap();
    assert_eq!(status, Ipv4HomeAddressReplyStatus::Success);
    assert_eq!(hoa, "10.0.0.2/29".parse::<Ipv4Net>().unwrap());
    assert_eq!(pba.ipv4_default_router, Some("10.0.0.1".parse().unwrap()));
    let uplink = pba.gre_key.expect("uplink GRE key");

    // The cache holds it under every index, and the data plane hears of it.
    let cache = b.lma.cache();
    let id = cache
        .find("001010000000001@nai.epc", Some("internet"))
        .unwrap();
    assert_eq!(cache.by_ipv4_home_address(hoa.addr()), Some(id));
    assert_eq!(cache.by_home_network_prefix(hnp), Some(id));
    assert_eq!(cache.by_uplink_gre_key(uplink), Some(id));
    let up: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::BindingUp(info) => Some(*info),
            _ => None,
        })
        .collect();
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].downlink_gre_key, Some(GreKey(77)));
    assert_eq!(up[0].addresses.uplink_gre_key, Some(uplink));
    let report = reports(&out)[0].clone();
    assert_eq!(report.outcome, Outcome::Registered);
    assert_eq!(report.addresses.ipv4_home_address, Some(hoa.addr()));
    assert_eq!(b.lma.poll_timeout(), Some(b.at(600)));
    assert_eq!(b.lma.stats().pbus_accepted, 1);
}

#[test]
fn lifetime_is_capped_at_the_maximum() {
    let mut b = Bench::with(LmaSettings {
        max_lifetime: Lifetime::from_secs(120),
        ..settings()
    });
    let (ack, _) = b.exchange(udp(MAG), b.pbu(1, "a@x", 0).to_binding_update(), 0);
    assert_eq!(ack.lifetime, Lifetime::from_secs(120));
    assert_eq!(b.lma.poll_timeout(), Some(b.at(120)));
}

#[test]
fn refresh_keeps_addresses_and_extends_the_lifetime_until_expiry() {
    let mut b = Bench::new();
    let first = b.register("a@x", 0);
    // A refresh at 500 s, as the MAG sends it: held values, handoff state unchanged.
    let mut refresh = b.pbu(2, "a@x", 500);
    refresh.home_network_prefixes = first.home_network_prefixes.clone();
    refresh.ipv4_home_address_request = first.ipv4_home_address_reply.map(|(_, a)| a);
    refresh.handoff = HandoffIndicator::HandoffStateNotChanged;
    let (ack, out) = b.exchange(udp(MAG), refresh.to_binding_update(), 500);
    assert_eq!(ack.status, BindingAckStatus::Accepted);
    let again = ProxyBindingAck::try_from(&ack).unwrap();
    assert_eq!(again.home_network_prefixes, first.home_network_prefixes);
    assert_eq!(again.ipv4_home_address_reply, first.ipv4_home_address_reply);
    assert_eq!(again.gre_key, first.gre_key);
    assert_eq!(reports(&out)[0].outcome, Outcome::Refreshed);
    assert!(
        !out.iter().any(|o| matches!(o, Output::BindingUp(_))),
        "nothing changed for the data plane"
    );
    // The first deadline (600 s) is stale: nothing expires then.
    assert_eq!(b.lma.poll_timeout(), Some(b.at(1100)));
    assert!(b.timeout(700).is_empty());
    assert_eq!(b.lma.cache().len(), 1);
    // Expiry at 1100 s releases everything.
    let out = b.timeout(1100);
    assert!(matches!(
        out.as_slice(),
        [Output::BindingDown {
            reason: DownReason::Expired,
            ..
        }]
    ));
    b.assert_empty();
    assert_eq!(b.lma.poll_timeout(), None);
    assert_eq!(b.lma.stats().expired, 1);
}

#[test]
fn a_repeated_first_pbu_gets_the_same_addresses() {
    // A retransmitted first PBU (its PBA was lost) asks for ::/0 again.
    let mut b = Bench::new();
    let first = b.register("a@x", 0);
    let retransmission = b.pbu(2, "a@x", 1);
    let (ack, _) = b.exchange(udp(MAG), retransmission.to_binding_update(), 1);
    let again = ProxyBindingAck::try_from(&ack).unwrap();
    assert_eq!(again.status, BindingAckStatus::Accepted);
    assert_eq!(again.home_network_prefixes, first.home_network_prefixes);
    assert_eq!(again.ipv4_home_address_reply, first.ipv4_home_address_reply);
    assert_eq!(b.lma.cache().len(), 1);
}

#[test]
fn deregistration_releases_and_the_addresses_are_reused() {
    let mut b = Bench::new();
    let granted: Vec<ProxyBindingAck> = (0..5).map(|i| b.register(&format!("{i}@x"), 0)).collect();
    assert_eq!(b.lma.available_ipv4(), 0);
    // De-register the third one with the held values and lifetime 0.
    let mut dereg = b.pbu(9, "2@x", 10);
    dereg.lifetime = Lifetime(0);
    dereg.home_network_prefixes = granted[2].home_network_prefixes.clone();
    dereg.ipv4_home_address_request = granted[2].ipv4_home_address_reply.map(|(_, a)| a);
    let (ack, out) = b.exchange(udp(MAG), dereg.to_binding_update(), 10);
    assert_eq!(ack.status, BindingAckStatus::Accepted);
    assert_eq!(ack.lifetime, Lifetime(0));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::BindingDown {
            reason: DownReason::Deregistered,
            ..
        }
    )));
    assert_eq!(b.lma.cache().len(), 4);
    assert_eq!(b.lma.available_ipv4(), 1);
    assert!(b
        .lma
        .cache()
        .by_uplink_gre_key(granted[2].gre_key.unwrap())
        .is_none());
    // The released address is the only one left: the next binding gets it.
    let next = b.register("new@x", 11);
    assert_eq!(
        next.ipv4_home_address_reply,
        granted[2].ipv4_home_address_reply
    );
    // De-registering what is not bound is acknowledged too.
    let mut unknown = b.pbu(10, "nobody@x", 12);
    unknown.lifetime = Lifetime(0);
    let (ack, _) = b.exchange(udp(MAG), unknown.to_binding_update(), 12);
    assert_eq!(ack.status, BindingAckStatus::Accepted);
}

#[test]
fn deregistration_after_expiry_and_every_binding_gone_leaves_pools_full() {
    let mut b = Bench::new();
    for i in 0..5 {
        let mut pbu = b.pbu(1, &format!("{i}@x"), 0);
        pbu.lifetime = Lifetime::from_secs(8 + 4 * i);
        let (ack, _) = b.exchange(udp(MAG), pbu.to_binding_update(), 0);
        assert_eq!(ack.status, BindingAckStatus::Accepted);
    }
    assert!(b.timeout(7).is_empty());
    assert_eq!(b.timeout(8).len(), 1);
    assert_eq!(b.timeout(100).len(), 4);
    b.assert_empty();
}

#[test]
fn pool_exhaustion_is_insufficient_resources_and_leaves_nothing() {
    let mut b = Bench::new();
    for i in 0..5 {
        b.register(&format!("{i}@x"), 0);
    }
    let (ack, out) = b.exchange(udp(MAG), b.pbu(1, "sixth@x", 1).to_binding_update(), 1);
    assert_eq!(ack.status, BindingAckStatus::InsufficientResources);
    let pba = ProxyBindingAck::try_from(&ack).unwrap();
    assert_eq!(
        pba.ipv4_home_address_reply.map(|(s, _)| s),
        Some(Ipv4HomeAddressReplyStatus::DynamicIpv4HomeAddressAssignmentNotAvailable)
    );
    assert_eq!(pba.gre_key, None);
    // The prefix taken before the IPv4 pool ran dry went back.
    assert_eq!(b.lma.available_prefixes(), 3);
    assert_eq!(b.lma.cache().len(), 5);
    assert!(!out.iter().any(|o| matches!(o, Output::BindingUp(_))));
    assert_eq!(reports(&out)[0].outcome, Outcome::Rejected);

    // And the prefix pool running out first returns the IPv4 address.
    let mut b = Bench::with(LmaSettings {
        ipv6_pool: Some("2001:db8:1::/63".parse().unwrap()),
        ..settings()
    });
    b.register("a@x", 0);
    b.register("b@x", 0);
    let (ack, _) = b.exchange(udp(MAG), b.pbu(1, "c@x", 1).to_binding_update(), 1);
    assert_eq!(ack.status, BindingAckStatus::InsufficientResources);
    assert_eq!(b.lma.available_ipv4(), 3);
}

/// Sends `bu` and checks the status, that the PBA mirrors the sequence number, and that
/// no state was left behind.
fn assert_rejected(
    b: &mut Bench,
    from: MagAddress,
    bu: BindingUpdateRepr,
    secs: u64,
    status: BindingAckStatus,
) -> BindingAckRepr {
    let before = (
        b.lma.cache().len(),
        b.lma.available_ipv4(),
        b.lma.available_prefixes(),
        b.lma.poll_timeout(),
    );
    let (ack, out) = b.exchange(from, bu, secs);
    assert_eq!(ack.status, status, "{ack:?}");
    assert_eq!(ack.lifetime, Lifetime(0));
    assert!(!out
        .iter()
        .any(|o| matches!(o, Output::BindingUp(_) | Output::BindingDown { .. })));
    let after = (
        b.lma.cache().len(),
        b.lma.available_ipv4(),
        b.lma.available_prefixes(),
        b.lma.poll_timeout(),
    );
    assert_eq!(before, after, "a rejected PBU left state behind");
    ack
}

fn without(mut bu: BindingUpdateRepr, drop: impl Fn(&MobilityOption) -> bool) -> BindingUpdateRepr {
    bu.options.retain(|o| !drop(o));
    bu
}

#[test]
fn missing_mandatory_options_name_their_status() {
    let mut b = Bench::new();
    let good = b.pbu(5, "m@x", 0).to_binding_update();
    type Drop = fn(&MobilityOption) -> bool;
    let cases: [(BindingAckStatus, Drop); 4] = [
        (BindingAckStatus::MissingMnIdentifierOption, |o| {
            matches!(o, MobilityOption::MobileNodeIdentifier(_))
        }),
        (BindingAckStatus::MissingHandoffIndicatorOption, |o| {
            matches!(o, MobilityOption::HandoffIndicator(_))
        }),
        (BindingAckStatus::MissingAccessTechTypeOption, |o| {
            matches!(o, MobilityOption::AccessTechnologyType(_))
        }),
        (BindingAckStatus::MissingHomeNetworkPrefixOption, |o| {
            matches!(
                o,
                MobilityOption::HomeNetworkPrefix(_) | MobilityOption::Ipv4HomeAddressRequest(_)
            )
        }),
    ];
    for (status, drop) in cases {
        let ack = assert_rejected(&mut b, udp(MAG), without(good.clone(), drop), 0, status);
        assert_eq!(ack.sequence, 5);
    }
    // The reject mirrors what the PBU had: MN-ID, HNP, timestamp.
    let ack = assert_rejected(
        &mut b,
        udp(MAG),
        without(good.clone(), |o| {
            matches!(o, MobilityOption::HandoffIndicator(_))
        }),
        0,
        BindingAckStatus::MissingHandoffIndicatorOption,
    );
    let pba = ProxyBindingAck::try_from(&ack).unwrap();
    assert_eq!(pba.mn_id.as_deref(), Some("m@x"));
    assert_eq!(
        pba.home_network_prefixes,
        vec!["::/0".parse::<Ipv6Net>().unwrap()]
    );
    assert_eq!(pba.timestamp, Some(b.ntp_at(0)));
    // A Binding Update without the P flag is a home registration: not served.
    let mut plain = good.clone();
    plain.flags = BuFlags(BuFlags::ACK | BuFlags::HOME_REGISTRATION);
    let ack = assert_rejected(
        &mut b,
        udp(MAG),
        plain,
        0,
        BindingAckStatus::HomeRegistrationNotSupported,
    );
    assert!(!ack.flags.contains(BaFlags::PROXY));
    b.assert_empty();
    assert_eq!(b.lma.stats().pbus_rejected, 6);
}

#[test]
fn gre_key_is_required_unless_configured_otherwise() {
    let mut b = Bench::new();
    let bu = without(b.pbu(1, "g@x", 0).to_binding_update(), |o| {
        matches!(o, MobilityOption::GreKey(_))
    });
    assert_rejected(
        &mut b,
        udp(MAG),
        bu.clone(),
        0,
        BindingAckStatus::GreKeyOptionRequired,
    );

    let mut b = Bench::with(LmaSettings {
        require_gre_key: false,
        ..settings()
    });
    let (ack, _) = b.exchange(udp(MAG), bu, 0);
    assert_eq!(ack.status, BindingAckStatus::Accepted);
    let pba = ProxyBindingAck::try_from(&ack).unwrap();
    assert_eq!(pba.gre_key, None, "no GRE asked, none given");
    let id = b.lma.cache().find("g@x", Some("internet")).unwrap();
    assert_eq!(
        b.lma.cache().get(id).unwrap().addresses().uplink_gre_key,
        None
    );
}

#[test]
fn timestamp_outside_the_window_or_not_newer_is_refused() {
    let mut b = Bench::new();
    // 2 s ahead of the LMA's clock, with a 1 s window.
    let mut ahead = b.pbu(1, "t@x", 0);
    ahead.timestamp = Some(b.ntp_at(2));
    let ack = assert_rejected(
        &mut b,
        udp(MAG),
        ahead.to_binding_update(),
        0,
        BindingAckStatus::TimestampMismatch,
    );
    // The PBA carries the LMA's own time.
    let pba = ProxyBindingAck::try_from(&ack).unwrap();
    assert_eq!(pba.timestamp, Some(b.ntp_at(0)));

    // An hour old.
    let mut old = b.pbu(1, "t@x", 3600);
    old.timestamp = Some(b.ntp_at(0));
    assert_rejected(
        &mut b,
        udp(MAG),
        old.to_binding_update(),
        3600,
        BindingAckStatus::TimestampMismatch,
    );

    // Not later than the last accepted one, even with a newer sequence number.
    b.register("t@x", 3600);
    let mut replay = b.pbu(2, "t@x", 3600);
    replay.handoff = HandoffIndicator::HandoffStateNotChanged;
    assert_rejected(
        &mut b,
        udp(MAG),
        replay.to_binding_update(),
        3600,
        BindingAckStatus::TimestampLowerThanPrevAccepted,
    );
    let mut earlier = b.pbu(3, "t@x", 3600);
    earlier.timestamp = Some(Timestamp(b.ntp_at(3600).0 - Timestamp::ONE_SECOND / 2));
    assert_rejected(
        &mut b,
        udp(MAG),
        earlier.to_binding_update(),
        3600,
        BindingAckStatus::TimestampLowerThanPrevAccepted,
    );
}

#[test]
fn without_timestamps_the_sequence_number_orders() {
    let mut b = Bench::new();
    let mut first = b.pbu(100, "s@x", 0);
    first.timestamp = None;
    let (ack, _) = b.exchange(udp(MAG), first.to_binding_update(), 0);
    assert_eq!(ack.status, BindingAckStatus::Accepted);
    let mut stale = first.clone();
    stale.sequence = 99;
    let ack = assert_rejected(
        &mut b,
        udp(MAG),
        stale.to_binding_update(),
        1,
        BindingAckStatus::SequenceNumberOutOfWindow,
    );
    assert_eq!(
        ack.sequence, 100,
        "the PBA carries the last accepted sequence number"
    );
    let mut newer = first.clone();
    newer.sequence = 101;
    let (ack, _) = b.exchange(udp(MAG), newer.to_binding_update(), 2);
    assert_eq!(ack.status, BindingAckStatus::Accepted);
    // Modulo 2^16: 5 follows 65535.
    assert!(sequence_after(5, u16::MAX));
    assert!(!sequence_after(u16::MAX, 5));

    let mut strict = Bench::with(LmaSettings {
        require_timestamp: true,
        ..settings()
    });
    assert_rejected(
        &mut strict,
        udp(MAG),
        first.to_binding_update(),
        0,
        BindingAckStatus::TimestampMismatch,
    );
}

#[test]
fn prefix_and_address_mismatches_on_reregistration_are_refused() {
    let mut b = Bench::new();
    let granted = b.register("p@x", 0);
    let mut wrong = b.pbu(2, "p@x", 1);
    wrong.home_network_prefixes = vec!["2001:db8:ffff:1::/64".parse().unwrap()];
    wrong.handoff = HandoffIndicator::HandoffStateNotChanged;
    assert_rejected(
        &mut b,
        udp(MAG),
        wrong.to_binding_update(),
        1,
        BindingAckStatus::BcePbuPrefixSetDoNotMatch,
    );

    let mut wrong_v4 = b.pbu(3, "p@x", 2);
    wrong_v4.home_network_prefixes = granted.home_network_prefixes.clone();
    wrong_v4.ipv4_home_address_request = Some("10.0.0.6/29".parse().unwrap());
    let ack = assert_rejected(
        &mut b,
        udp(MAG),
        wrong_v4.to_binding_update(),
        2,
        BindingAckStatus::NotAuthorizedForIpv4HomeAddress,
    );
    let pba = ProxyBindingAck::try_from(&ack).unwrap();
    assert_eq!(
        pba.ipv4_home_address_reply.map(|(s, _)| s),
        Some(Ipv4HomeAddressReplyStatus::IncorrectIpv4HomeAddress)
    );
    // The binding is as it was.
    let id = b.lma.cache().find("p@x", Some("internet")).unwrap();
    assert_eq!(
        b.lma
            .cache()
            .get(id)
            .unwrap()
            .addresses()
            .home_network_prefix,
        granted.home_network_prefixes.first().copied()
    );

    // A specific prefix for a mobile node without a binding.
    let mut specific = b.pbu(4, "q@x", 3);
    specific.home_network_prefixes = vec!["2001:db8:1:7::/64".parse().unwrap()];
    assert_rejected(
        &mut b,
        udp(MAG),
        specific.to_binding_update(),
        3,
        BindingAckStatus::NotAuthorizedForHomeNetworkPrefix,
    );

    // A de-registration naming another prefix.
    let mut dereg = b.pbu(5, "p@x", 4);
    dereg.lifetime = Lifetime(0);
    dereg.home_network_prefixes = vec!["2001:db8:1:7::/64".parse().unwrap()];
    assert_rejected(
        &mut b,
        udp(MAG),
        dereg.to_binding_update(),
        4,
        BindingAckStatus::BcePbuPrefixSetDoNotMatch,
    );
}

#[test]
fn a_specific_ipv4_address_is_granted_when_free_and_refused_otherwise() {
    let mut b = Bench::new();
    let mut pbu = b.pbu(1, "v4@x", 0);
    pbu.ipv4_home_address_request = Some("10.0.0.5/32".parse().unwrap());
    let (ack, _) = b.exchange(udp(MAG), pbu.to_binding_update(), 0);
    let pba = ProxyBindingAck::try_from(&ack).unwrap();
    assert_eq!(
        pba.ipv4_home_address_reply.unwrap().1.addr(),
        "10.0.0.5".parse::<Ipv4Addr>().unwrap()
    );
    let mut taken = b.pbu(1, "other@x", 0);
    taken.ipv4_home_address_request = Some("10.0.0.5/32".parse().unwrap());
    assert_rejected(
        &mut b,
        udp(MAG),
        taken.to_binding_update(),
        0,
        BindingAckStatus::NotAuthorizedForIpv4HomeAddress,
    );
    let mut outside = b.pbu(1, "other@x", 0);
    outside.ipv4_home_address_request = Some("192.168.0.5/32".parse().unwrap());
    let ack = assert_rejected(
        &mut b,
        udp(MAG),
        outside.to_binding_update(),
        0,
        BindingAckStatus::NotAuthorizedForIpv4HomeAddress,
    );
    assert_eq!(
        ProxyBindingAck::try_from(&ack)
            .unwrap()
            .ipv4_home_address_reply
            .map(|(s, _)| s),
        Some(Ipv4HomeAddressReplyStatus::InvalidIpv4Address)
    );
}

#[test]
fn single_family_registrations_and_families_without_a_pool() {
    let mut b = Bench::new();
    let mut v6_only = b.pbu(1, "six@x", 0);
    v6_only.ipv4_home_address_request = None;
    let (ack, _) = b.exchange(udp(MAG), v6_only.to_binding_update(), 0);
    let pba = ProxyBindingAck::try_from(&ack).unwrap();
    assert_eq!(pba.status, BindingAckStatus::Accepted);
    assert_eq!(pba.ipv4_home_address_reply, None);
    assert_eq!(pba.ipv4_default_router, None);
    assert_eq!(b.lma.available_ipv4(), 5);

    let mut v4_only = b.pbu(1, "four@x", 0);
    v4_only.home_network_prefixes.clear();
    let (ack, _) = b.exchange(udp(MAG), v4_only.to_binding_update(), 0);
    let pba = ProxyBindingAck::try_from(&ack).unwrap();
    assert_eq!(pba.status, BindingAckStatus::Accepted);
    assert!(pba.home_network_prefixes.is_empty());
    assert_eq!(b.lma.available_prefixes(), 7);

    let mut no_v4 = Bench::with(LmaSettings {
        ipv4_pool: None,
        ipv4_default_router: None,
        ..settings()
    });
    let pbu = no_v4.pbu(1, "a@x", 0);
    assert_rejected(
        &mut no_v4,
        udp(MAG),
        pbu.to_binding_update(),
        0,
        BindingAckStatus::NotAuthorizedForIpv4MobilityService,
    );
    let mut no_v6 = Bench::with(LmaSettings {
        ipv6_pool: None,
        ..settings()
    });
    let pbu = no_v6.pbu(1, "a@x", 0);
    assert_rejected(
        &mut no_v6,
        udp(MAG),
        pbu.to_binding_update(),
        0,
        BindingAckStatus::NotAuthorizedForIpv6MobilityService,
    );
}

#[test]
fn an_unknown_mag_is_refused_or_ignored() {
    let mut b = Bench::new();
    let pbu = b.pbu(1, "u@x", 0).to_binding_update();
    assert_rejected(
        &mut b,
        udp("198.51.100.1"),
        pbu.clone(),
        0,
        BindingAckStatus::MagNotAuthorizedForProxyReg,
    );

    let mut quiet = Bench::with(LmaSettings {
        unauthorized_mag: UnauthorizedMag::Drop,
        ..settings()
    });
    assert!(quiet.send(udp("198.51.100.1"), pbu, 0).is_empty());
    assert_eq!(quiet.lma.stats().unauthorized_dropped, 1);
    quiet.assert_empty();
}

#[test]
fn handoff_to_another_mag_moves_the_binding_and_the_old_mag_cannot_remove_it() {
    let mut b = Bench::new();
    let first = b.register("h@x", 0);
    let mut moved = b.pbu(2, "h@x", 1);
    moved.handoff = HandoffIndicator::HandoffBetweenDifferentInterfaces;
    moved.gre_key = Some(GreKey(99));
    let (ack, out) = b.exchange(udp(OTHER_MAG), moved.to_binding_update(), 1);
    let pba = ProxyBindingAck::try_from(&ack).unwrap();
    assert_eq!(pba.home_network_prefixes, first.home_network_prefixes);
    let up: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::BindingUp(info) => Some(*info),
            _ => None,
        })
        .collect();
    assert_eq!(up.len(), 1, "the data plane hears of the new tunnel end");
    assert_eq!(up[0].mag, udp(OTHER_MAG));
    assert_eq!(up[0].downlink_gre_key, Some(GreKey(99)));
    // The old MAG's late de-registration is acknowledged but changes nothing.
    let mut late = b.pbu(3, "h@x", 2);
    late.lifetime = Lifetime(0);
    let (ack, out) = b.exchange(udp(MAG), late.to_binding_update(), 2);
    assert_eq!(ack.status, BindingAckStatus::Accepted);
    assert_eq!(reports(&out)[0].outcome, Outcome::DeregistrationFromOldMag);
    assert_eq!(b.lma.cache().len(), 1);
}

#[test]
fn heartbeat_requests_get_the_restart_counter() {
    let mut b = Bench::new();
    let request = |unsolicited, response| {
        MobilityHeaderRepr {
            payload_proto: IPPROTO_NONE,
            message: MobilityMessage::Heartbeat(HeartbeatRepr {
                unsolicited,
                response,
                sequence: 0xdead_beef,
                options: Vec::new(),
            }),
        }
        .to_bytes(udp(MAG).receive_checksum())
    };
    let out = b.feed(udp(MAG), &request(false, false), 0);
    match answers(&out, udp(MAG)).as_slice() {
        [MobilityMessage::Heartbeat(hb)] => {
            assert!(hb.response && !hb.unsolicited);
            assert_eq!(hb.sequence, 0xdead_beef);
            assert_eq!(hb.options, vec![MobilityOption::RestartCounter(42)]);
        }
        other => panic!("expected a heartbeat response, got {other:?}"),
    }
    assert!(b.feed(udp(MAG), &request(false, true), 0).is_empty());
    assert!(b.feed(udp(MAG), &request(true, false), 0).is_empty());
    assert!(b
        .feed(udp("198.51.100.1"), &request(false, false), 0)
        .is_empty());
    assert_eq!(b.lma.stats().heartbeats_answered, 1);
}

#[test]
fn unknown_types_get_a_binding_error_and_broken_messages_are_dropped() {
    let mut b = Bench::new();
    let mut bytes = MobilityHeaderRepr {
        payload_proto: IPPROTO_NONE,
        message: MobilityMessage::BindingUpdate(b.pbu(1, "x@x", 0).to_binding_update()),
    }
    .to_bytes(ChecksumContext::Skip);
    bytes[2] = 200;
    let context = udp(MAG).receive_checksum();
    let sum = mobility_header_checksum(context, &bytes).unwrap();
    bytes[4..6].copy_from_slice(&sum.to_be_bytes());
    let out = b.feed(udp(MAG), &bytes, 0);
    match answers(&out, udp(MAG)).as_slice() {
        [MobilityMessage::BindingError(be)] => {
            assert_eq!(be.status, BindingErrorStatus::UnrecognizedMhType);
            assert_eq!(be.home_address, Ipv6Addr::UNSPECIFIED);
        }
        other => panic!("expected a Binding Error, got {other:?}"),
    }
    // Truncated.
    assert!(b.feed(udp(MAG), &bytes[..bytes.len() / 2], 0).is_empty());
    assert!(b.feed(udp(MAG), &[], 0).is_empty());
    // Bad checksum.
    bytes[2] = 5;
    assert!(b.feed(udp(MAG), &bytes, 0).is_empty());
    let stats = b.lma.stats();
    assert_eq!(stats.unknown_mh_type, 1);
    assert_eq!(stats.truncated, 2);
    assert_eq!(stats.bad_checksum, 1);
    // A PBA sent to the LMA is ignored.
    let pba = MobilityHeaderRepr {
        payload_proto: IPPROTO_NONE,
        message: MobilityMessage::BindingAck(BindingAckRepr {
            status: BindingAckStatus::Accepted,
            flags: BaFlags(BaFlags::PROXY),
            sequence: 1,
            lifetime: Lifetime(1),
            options: Vec::new(),
        }),
    }
    .to_bytes(context);
    assert!(b.feed(udp(MAG), &pba, 0).is_empty());
    assert_eq!(b.lma.stats().ignored, 1);
    b.assert_empty();
}

#[test]
fn ipv6_transport_with_and_without_the_kernel_checksum() {
    for kernel_checksum in [true, false] {
        let mut b = Bench::new();
        let from = MagAddress::Ip6 {
            mag: "fd00::1".parse().unwrap(),
            local: "fd00::2".parse().unwrap(),
            kernel_checksum,
        };
        let (ack, out) = b.exchange(from, b.pbu(1, "six@x", 0).to_binding_update(), 0);
        assert_eq!(ack.status, BindingAckStatus::Accepted);
        let Some(Output::Send { bytes, .. }) =
            out.iter().find(|o| matches!(o, Output::Send { .. }))
        else {
            panic!("no answer");
        };
        let checksum = u16::from_be_bytes([bytes[4], bytes[5]]);
        assert_eq!(
            checksum == 0,
            kernel_checksum,
            "the kernel fills it on a raw socket"
        );
    }
}

#[test]
fn the_wall_clock_follows_virtual_time() {
    let b = Bench::new();
    assert_eq!(
        b.lma.wall_clock(b.at(10)),
        b.wall0 + Duration::from_secs(10)
    );
    let _ = SocketAddr::from(([127, 0, 0, 1], 1));
}

#[test]
fn many_bindings_are_unique_and_all_come_back() {
    let mut settings = settings();
    settings.ipv4_pool = Some("10.1.0.0/22".parse().unwrap());
    settings.ipv4_default_router = Some("10.1.0.1".parse().unwrap());
    settings.ipv6_pool = Some("2001:db8:2::/54".parse().unwrap());
    let mut b = Bench::with(settings);
    let mut keys = std::collections::HashSet::new();
    for i in 0..1000 {
        let ack = b.register(&format!("{i}@x"), 0);
        assert!(keys.insert(ack.gre_key.unwrap()));
    }
    assert_eq!(b.lma.cache().len(), 1000);
    assert_eq!(b.timeout(600).len(), 1000);
    assert_eq!(b.lma.cache().len(), 0);
    assert_eq!(b.lma.available_ipv4(), 1021);
    assert_eq!(b.lma.available_prefixes(), 1024);
}

fn nai(o: &MobilityOption) -> Option<&str> {
    match o {
        MobilityOption::MobileNodeIdentifier(MobileNodeIdentifier::Nai(n)) => Some(n),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary bytes on either path never panic and never bind anything.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut b = Bench::new();
        b.feed(udp(MAG), &bytes, 0);
        let raw = MagAddress::Ip6 {
            mag: "fd00::1".parse().unwrap(),
            local: "fd00::2".parse().unwrap(),
            kernel_checksum: true,
        };
        b.feed(raw, &bytes, 0);
        prop_assert!(b.lma.cache().len() <= 1);
    }

    /// A valid PBU with octets changed (checksum recomputed, so the parser sees them):
    /// never a panic, and the cache holds exactly the bindings that were acknowledged.
    #[test]
    fn mutated_pbus_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut b = Bench::new();
        let bu = b.pbu(1, "fuzz@x", 0).to_binding_update();
        let context = udp(MAG).receive_checksum();
        let mut bytes = MobilityHeaderRepr {
            payload_proto: IPPROTO_NONE,
            message: MobilityMessage::BindingUpdate(bu),
        }
        .to_bytes(context);
        for (at, value) in edits {
            let at = 6 + at % (bytes.len() - 6);
            bytes[at] = value;
        }
        bytes[4] = 0;
        bytes[5] = 0;
        let sum = mobility_header_checksum(context, &bytes).unwrap();
        bytes[4..6].copy_from_slice(&sum.to_be_bytes());
        let out = b.feed(udp(MAG), &bytes, 0);
        let accepted = answers(&out, udp(MAG)).iter().filter(|m| matches!(
            m,
            MobilityMessage::BindingAck(ba) if ba.status.is_accepted() && !ba.lifetime.is_zero()
        )).count();
        prop_assert_eq!(b.lma.cache().len(), accepted);
        if let Some(MobilityMessage::BindingAck(ba)) = answers(&out, udp(MAG)).first() {
            if ba.status.is_accepted() {
                let mn = ba.options.iter().find_map(nai).unwrap_or_default();
                prop_assert!(!mn.is_empty());
            }
        }
    }
}

#[test]
fn a_refresh_storm_does_not_pile_up_deadlines() {
    let mut b = Bench::new();
    let first = b.register("storm@x", 0);
    // Refreshes at the same instant leave one deadline...
    for i in 0..100u16 {
        let mut refresh = b.pbu(i + 2, "storm@x", 1);
        refresh.timestamp = Some(Timestamp(b.ntp_at(1).0 + u64::from(i) + 1));
        refresh.home_network_prefixes = first.home_network_prefixes.clone();
        let (ack, _) = b.exchange(udp(MAG), refresh.to_binding_update(), 1);
        assert_eq!(ack.status, BindingAckStatus::Accepted);
    }
    assert_eq!(
        b.lma.deadlines.len(),
        1,
        "the first one was stale at the front"
    );
    // ... and a refresh every second for longer than a lifetime stays bounded.
    for i in 0..5000u16 {
        let mut refresh = b.pbu(i + 200, "storm@x", 2 + u64::from(i));
        refresh.home_network_prefixes = first.home_network_prefixes.clone();
        let (ack, _) = b.exchange(udp(MAG), refresh.to_binding_update(), 2 + u64::from(i));
        assert_eq!(ack.status, BindingAckStatus::Accepted);
    }
    assert!(b.lma.deadlines.len() <= 1026, "{}", b.lma.deadlines.len());
    assert_eq!(b.lma.poll_timeout(), Some(b.at(5001 + 600)));
}
