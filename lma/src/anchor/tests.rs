//! The core with virtual time: every path of the module doc, exactly, without sockets.

use std::net::{SocketAddr, SocketAddrV4};
use std::time::UNIX_EPOCH;

use pmip_common::mh::{
    AccessTechnologyType, BindingErrorStatus, BindingRevocationRepr, BindingRevocationType,
    ChecksumContext, GreKey, HandoffIndicator, HeartbeatRepr, MobileNodeIdentifier, Timestamp,
};
use proptest::prelude::*;

use super::*;

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
        revocation: RevocationSettings::default(),
        limits: MagLimits::default(),
        heartbeat: None,
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

    // A specific prefix for a mobile node without a binding: outside the pool, or held
    // by another binding (RFC 5213 section 5.3.2: 155).
    for prefix in [
        "2001:db8:ffff:7::/64".parse().unwrap(),
        granted.home_network_prefixes[0],
    ] {
        let mut specific = b.pbu(4, "q@x", 3);
        specific.home_network_prefixes = vec![prefix];
        assert_rejected(
            &mut b,
            udp(MAG),
            specific.to_binding_update(),
            3,
            BindingAckStatus::NotAuthorizedForHomeNetworkPrefix,
        );
    }

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
    // A bad checksum where one is computed (IPv6 without the kernel's help): dropped.
    bytes[2] = 5;
    let ip6 = MagAddress::Ip6 {
        mag: "fd00::1".parse().unwrap(),
        local: "fd00::2".parse().unwrap(),
        kernel_checksum: false,
    };
    assert!(b.feed(ip6, &bytes, 0).is_empty());
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
    .to_bytes(ChecksumContext::Ipv4Udp);
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

/// RFC 5844: over UDP 5436 the checksum field is ignored on receipt (section 4.1.3.1) and
/// sent as zero (section 4.1.3.2), whatever the PBU carried.
#[test]
fn ipv4_udp_ignores_the_checksum_field_and_answers_with_zero() {
    for field in [[0u8, 0], [0x5a, 0xa5], [0xff, 0xff]] {
        let mut b = Bench::new();
        let mut bytes = MobilityHeaderRepr {
            payload_proto: IPPROTO_NONE,
            message: MobilityMessage::BindingUpdate(b.pbu(1, "four@x", 0).to_binding_update()),
        }
        .to_bytes(udp(MAG).receive_checksum());
        assert_eq!(&bytes[4..6], &[0, 0]);
        bytes[4..6].copy_from_slice(&field);
        let out = b.feed(udp(MAG), &bytes, 0);
        let Some(Output::Send { bytes: answer, .. }) =
            out.iter().find(|o| matches!(o, Output::Send { .. }))
        else {
            panic!("checksum {field:02x?}: no answer");
        };
        assert_eq!(&answer[4..6], &[0, 0], "the PBA's checksum is zero");
        match answers(&out, udp(MAG)).as_slice() {
            [MobilityMessage::BindingAck(ba)] => {
                assert_eq!(ba.status, BindingAckStatus::Accepted, "{field:02x?}")
            }
            other => panic!("checksum {field:02x?}: expected a PBA, got {other:?}"),
        }
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
        // Over UDP 5436 the checksum field is ignored (RFC 5844 section 4.1.3.1).
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

/// A PBU naming `nai` as its MN-ID (everything else valid).
fn with_nai(nai: &str) -> BindingUpdateRepr {
    // Every bench's clock starts at the same wall-clock time.
    let mut bu = Bench::new().pbu(3, "placeholder@x", 0).to_binding_update();
    for o in &mut bu.options {
        if let MobilityOption::MobileNodeIdentifier(id) = o {
            *id = MobileNodeIdentifier::Nai(nai.to_string());
        }
    }
    bu
}

#[test]
fn an_empty_mn_id_is_a_missing_one_and_binds_nothing() {
    let mut b = Bench::new();
    let ack = assert_rejected(
        &mut b,
        udp(MAG),
        with_nai(""),
        0,
        BindingAckStatus::MissingMnIdentifierOption,
    );
    // RFC 5213 5.3.1 step 4: the answer carries a zero-length identifier.
    assert_eq!(ack.options.iter().filter_map(nai).collect::<Vec<_>>(), [""]);
    // With no MN-ID option at all, the same.
    let none = without(with_nai("x@y"), |o| {
        matches!(o, MobilityOption::MobileNodeIdentifier(_))
    });
    let ack = assert_rejected(
        &mut b,
        udp(MAG),
        none,
        0,
        BindingAckStatus::MissingMnIdentifierOption,
    );
    assert_eq!(ack.options.iter().filter_map(nai).collect::<Vec<_>>(), [""]);
    b.assert_empty();
}

#[test]
fn a_malformed_mn_id_is_not_a_mobile_node_of_this_lma() {
    let mut b = Bench::new();
    // 254 octets: the most the option carries, one more than RFC 7542 asks for.
    let long = format!("{}@x", "9".repeat(252));
    for bad in [
        "no-at-sign",
        "two@at@signs",
        "user@",
        "@realm",
        "us\u{1}er@x",
        "user@x\r\n",
        "us er@x",
        long.as_str(),
    ] {
        let ack = assert_rejected(
            &mut b,
            udp(MAG),
            with_nai(bad),
            0,
            BindingAckStatus::NotLmaForThisMobileNode,
        );
        // The answer mirrors the identifier it refuses (RFC 5213 5.3.6).
        assert_eq!(
            ack.options.iter().filter_map(nai).collect::<Vec<_>>(),
            [bad]
        );
    }
    b.assert_empty();
    assert_eq!(b.lma.stats().pbus_rejected, 8);
    // A well-formed 3GPP NAI is served.
    let (ack, _) = b.exchange(
        udp(MAG),
        with_nai("001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org"),
        0,
    );
    assert_eq!(ack.status, BindingAckStatus::Accepted);
}

#[test]
fn the_mn_id_is_checked_before_the_other_mandatory_options() {
    // RFC 5213 5.3.1: step 4 (MN-ID) and 7 (identify it) before 11 (Handoff Indicator).
    let mut b = Bench::new();
    let no_hi = |bu| without(bu, |o| matches!(o, MobilityOption::HandoffIndicator(_)));
    assert_rejected(
        &mut b,
        udp(MAG),
        no_hi(with_nai("")),
        0,
        BindingAckStatus::MissingMnIdentifierOption,
    );
    assert_rejected(
        &mut b,
        udp(MAG),
        no_hi(with_nai("nobody")),
        0,
        BindingAckStatus::NotLmaForThisMobileNode,
    );
    // But after the P flag (131) and the MAG's authorization (154).
    let mut plain = with_nai("");
    plain.flags = BuFlags(BuFlags::ACK | BuFlags::HOME_REGISTRATION);
    assert_rejected(
        &mut b,
        udp(MAG),
        plain,
        0,
        BindingAckStatus::HomeRegistrationNotSupported,
    );
    assert_rejected(
        &mut b,
        udp("198.51.100.1"),
        with_nai(""),
        0,
        BindingAckStatus::MagNotAuthorizedForProxyReg,
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any identifier: bound if and only if it is an NAI the check accepts, and never an
    /// empty one.
    #[test]
    fn only_well_formed_nais_are_bound(nai in "[a-z0-9.@ \\-\\x00-\\x1f]{0,12}") {
        let mut b = Bench::new();
        let (ack, _) = b.exchange(udp(MAG), with_nai(&nai), 0);
        let good = !nai.is_empty() && mn_id::nai_problem(&nai).is_none();
        prop_assert_eq!(ack.status.is_accepted(), good, "{:?}: {:?}", nai, ack.status);
        prop_assert_eq!(b.lma.cache().len(), usize::from(good));
    }
}

// ---------------------------------------------------------------------------------------
// Binding Revocation from a MAG (RFC 5846 section 8.2)

const P: u8 = BindingRevocationRepr::PROXY;
const V: u8 = BindingRevocationRepr::IPV4_HOA_ONLY;
const G: u8 = BindingRevocationRepr::GLOBAL;

fn mn(nai: &str) -> MobilityOption {
    MobilityOption::MobileNodeIdentifier(MobileNodeIdentifier::Nai(nai.into()))
}

fn bri_bytes(
    from: MagAddress,
    sequence: u16,
    trigger: u8,
    flags: u8,
    options: Vec<MobilityOption>,
) -> Vec<u8> {
    MobilityHeaderRepr {
        payload_proto: IPPROTO_NONE,
        message: MobilityMessage::BindingRevocation(BindingRevocationRepr {
            revocation_type: BindingRevocationType::Indication,
            trigger_or_status: trigger,
            sequence,
            flags,
            options,
        }),
    }
    .to_bytes(from.receive_checksum())
}

/// The Binding Revocation messages the outputs send to `to`.
fn revocations_to(out: &[Output], to: MagAddress) -> Vec<BindingRevocationRepr> {
    answers(out, to)
        .into_iter()
        .filter_map(|m| match m {
            MobilityMessage::BindingRevocation(br) => Some(br),
            _ => None,
        })
        .collect()
}

impl Bench {
    /// Sends a BRI from `from` and returns the one acknowledgement it got, and the outputs.
    fn bri(
        &mut self,
        from: MagAddress,
        sequence: u16,
        trigger: u8,
        flags: u8,
        options: Vec<MobilityOption>,
        secs: u64,
    ) -> (BindingRevocationRepr, Vec<Output>) {
        let bytes = bri_bytes(from, sequence, trigger, flags, options);
        let out = self.feed(from, &bytes, secs);
        match revocations_to(&out, from).as_slice() {
            [ack] => {
                assert_eq!(ack.revocation_type, BindingRevocationType::Acknowledgement);
                assert_eq!(ack.sequence, sequence, "the BRA copies the sequence number");
                (ack.clone(), out)
            }
            other => panic!("expected one BRA, got {other:?} in {out:?}"),
        }
    }

    /// Registers `mn` for `apn` from `mag`.
    fn register_at(&mut self, mag: MagAddress, mn: &str, apn: &str, secs: u64) -> ProxyBindingAck {
        let mut pbu = self.pbu(1, mn, secs);
        pbu.apn = Some(apn.into());
        let (ack, _) = self.exchange(mag, pbu.to_binding_update(), secs);
        assert_eq!(ack.status, BindingAckStatus::Accepted, "{ack:?}");
        ProxyBindingAck::try_from(&ack).unwrap()
    }
}

fn status(ack: &BindingRevocationRepr) -> RevocationStatus {
    RevocationStatus::from(ack.trigger_or_status)
}

fn downs(out: &[Output]) -> Vec<DownReason> {
    out.iter()
        .filter_map(|o| match o {
            Output::BindingDown { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

#[test]
fn a_mag_revokes_one_binding_by_prefix_and_the_addresses_come_back() {
    let mut b = Bench::new();
    let granted = b.register("r@x", 0);
    let hnp = granted.home_network_prefixes[0];
    let (ack, out) = b.bri(
        udp(MAG),
        77,
        1,
        P,
        vec![mn("r@x"), MobilityOption::HomeNetworkPrefix(hnp)],
        1,
    );
    assert_eq!(status(&ack), RevocationStatus::Success);
    assert_eq!(ack.flags, P, "P mirrored");
    assert_eq!(downs(&out), vec![DownReason::Revoked]);
    b.assert_empty();
    assert_eq!(b.lma.stats().revoked_by_mag, 1);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Revocation(RevocationReport {
            event: RevocationEvent::Answered { revoked: 1, .. },
            ..
        })
    )));
}

#[test]
fn a_mag_revokes_every_binding_of_a_node_it_holds_and_only_those() {
    let mut b = Bench::new();
    b.register_at(udp(MAG), "n@x", "internet", 0);
    b.register_at(udp(MAG), "n@x", "ims", 0);
    b.register_at(udp(OTHER_MAG), "n@x", "mms", 0);
    b.register_at(udp(MAG), "someone-else@x", "internet", 0);
    let (ack, out) = b.bri(udp(MAG), 1, 5, P, vec![mn("n@x")], 1);
    assert_eq!(status(&ack), RevocationStatus::Success);
    assert_eq!(downs(&out).len(), 2);
    let cache = b.lma.cache();
    assert_eq!(cache.len(), 2);
    assert!(
        cache.find("n@x", Some("mms")).is_some(),
        "another MAG's binding stays"
    );
    // A MAG cannot revoke what another MAG holds.
    let (ack, out) = b.bri(udp(MAG), 2, 5, P, vec![mn("n@x")], 1);
    assert_eq!(status(&ack), RevocationStatus::BindingDoesNotExist);
    assert!(downs(&out).is_empty());
    assert_eq!(b.lma.cache().len(), 2);
}

#[test]
fn bad_indications_get_the_status_rfc_5846_names_and_change_nothing() {
    let mut b = Bench::with(LmaSettings {
        revocation: RevocationSettings {
            global_mags: vec![OTHER_MAG.parse().unwrap()],
            ..RevocationSettings::default()
        },
        ..settings()
    });
    b.register("keep@x", 0);
    let cases: Vec<(u8, u8, Vec<MobilityOption>, RevocationStatus)> = vec![
        // A trigger no registry lists, per-MN and global.
        (
            50,
            P,
            vec![mn("keep@x")],
            RevocationStatus::RevocationTriggerNotSupported,
        ),
        (
            200,
            P | G,
            vec![mn("keep@x")],
            RevocationStatus::RevocationTriggerNotSupported,
        ),
        // The LMA's own global trigger.
        (
            129,
            P | G,
            vec![mn("@x")],
            RevocationStatus::RevocationTriggerNotSupported,
        ),
        // A per-MN trigger with G, a global one without.
        (
            2,
            P | G,
            vec![mn("keep@x")],
            RevocationStatus::RevocationFunctionNotSupported,
        ),
        (
            128,
            P,
            vec![mn("keep@x")],
            RevocationStatus::RevocationFunctionNotSupported,
        ),
        // Mobile IPv6 bindings: none here.
        (
            1,
            0,
            vec![mn("keep@x")],
            RevocationStatus::BindingDoesNotExist,
        ),
        // Per MN without the MN-ID.
        (
            1,
            P,
            vec![],
            RevocationStatus::RevokedMobileNodesIdentityRequired,
        ),
        // V without the IPv4 Home Address Request option.
        (
            1,
            P | V,
            vec![mn("keep@x")],
            RevocationStatus::Ipv4HomeAddressOptionRequired,
        ),
        // Global from a MAG not allowed to, or without its identity.
        (
            128,
            P | G,
            vec![mn("mag@x")],
            RevocationStatus::GlobalRevocationNotAuthorized,
        ),
        // An unknown node, or a prefix it does not hold.
        (
            1,
            P,
            vec![mn("nobody@x")],
            RevocationStatus::BindingDoesNotExist,
        ),
        (
            1,
            P,
            vec![
                mn("keep@x"),
                MobilityOption::HomeNetworkPrefix("2001:db8:9::/64".parse().unwrap()),
            ],
            RevocationStatus::BindingDoesNotExist,
        ),
    ];
    for (i, (trigger, flags, options, want)) in cases.into_iter().enumerate() {
        let (ack, out) = b.bri(udp(MAG), 100 + i as u16, trigger, flags, options, 1);
        assert_eq!(status(&ack), want, "case {i}");
        assert_eq!(ack.flags, flags, "case {i}: P, V and G mirrored");
        assert!(downs(&out).is_empty(), "case {i}");
        assert_eq!(b.lma.cache().len(), 1, "case {i}");
    }
    let (ack, _) = b.bri(udp(OTHER_MAG), 9, 128, P | G, vec![], 1);
    assert_eq!(
        status(&ack),
        RevocationStatus::GlobalRevocationNotAuthorized
    );
    // A MAG outside allowed_mags gets no answer at all (RFC 5846 section 6.2).
    let stranger = udp("198.51.100.1");
    let out = b.feed(
        stranger,
        &bri_bytes(stranger, 1, 1, P, vec![mn("keep@x")]),
        1,
    );
    assert!(out.is_empty());
}

#[test]
fn a_mag_allowed_to_revokes_all_its_bindings_at_once() {
    let mut b = Bench::with(LmaSettings {
        revocation: RevocationSettings {
            global_mags: vec![MAG.parse().unwrap()],
            ..RevocationSettings::default()
        },
        ..settings()
    });
    b.register_at(udp(MAG), "a@x", "internet", 0);
    b.register_at(udp(MAG), "b@x", "internet", 0);
    b.register_at(udp(OTHER_MAG), "c@x", "internet", 0);
    let (ack, out) = b.bri(udp(MAG), 5, 128, P | G, vec![mn("mag1@operator")], 1);
    assert_eq!(status(&ack), RevocationStatus::Success);
    assert_eq!(ack.flags, P | G);
    assert_eq!(downs(&out).len(), 2);
    assert_eq!(b.lma.cache().len(), 1);
    assert!(b.lma.cache().find("c@x", Some("internet")).is_some());
}

#[test]
fn v_revokes_the_ipv4_home_address_only() {
    let mut b = Bench::new();
    let granted = b.register("v@x", 0);
    let (_, hoa) = granted.ipv4_home_address_reply.unwrap();
    let (ack, out) = b.bri(
        udp(MAG),
        3,
        5,
        P | V,
        vec![mn("v@x"), MobilityOption::Ipv4HomeAddressRequest(hoa)],
        1,
    );
    assert_eq!(status(&ack), RevocationStatus::Success);
    assert_eq!(ack.flags, P | V);
    let id = b.lma.cache().find("v@x", Some("internet")).unwrap();
    let held = b.lma.cache().get(id).unwrap().addresses();
    assert_eq!(held.ipv4_home_address, None);
    assert_eq!(
        held.home_network_prefix,
        granted.home_network_prefixes.first().copied()
    );
    assert_eq!(b.lma.available_ipv4(), 5, "the address is back in the pool");
    let up: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::BindingUp(info) => Some(*info),
            _ => None,
        })
        .collect();
    assert_eq!(up.len(), 1, "the data plane drops the IPv4 route");
    assert_eq!(up[0].addresses.ipv4_home_address, None);
}

#[test]
fn a_partial_success_names_the_prefixes_not_found() {
    let mut b = Bench::new();
    let granted = b.register("p@x", 0);
    let held = granted.home_network_prefixes[0];
    let unknown: Ipv6Net = "2001:db8:ffff::/64".parse().unwrap();
    let (ack, _) = b.bri(
        udp(MAG),
        4,
        1,
        P,
        vec![
            mn("p@x"),
            MobilityOption::HomeNetworkPrefix(held),
            MobilityOption::HomeNetworkPrefix(unknown),
        ],
        1,
    );
    assert_eq!(status(&ack), RevocationStatus::PartialSuccess);
    assert_eq!(
        ack.options,
        vec![mn("p@x"), MobilityOption::HomeNetworkPrefix(unknown)]
    );
    b.assert_empty();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any indication from an allowed MAG gets exactly one acknowledgement with its
    /// sequence number: never silence.
    #[test]
    fn every_indication_is_answered(
        trigger in any::<u8>(),
        flags in any::<u8>(),
        sequence in any::<u16>(),
        with_nai in any::<bool>(),
        with_prefix in any::<bool>(),
    ) {
        let mut b = Bench::new();
        let granted = b.register("any@x", 0);
        let mut options = Vec::new();
        if with_nai {
            options.push(mn("any@x"));
        }
        if with_prefix {
            options.push(MobilityOption::HomeNetworkPrefix(granted.home_network_prefixes[0]));
        }
        let bytes = bri_bytes(udp(MAG), sequence, trigger, flags, options);
        let out = b.feed(udp(MAG), &bytes, 1);
        let acks = revocations_to(&out, udp(MAG));
        prop_assert_eq!(acks.len(), 1);
        prop_assert_eq!(acks[0].revocation_type, BindingRevocationType::Acknowledgement);
        prop_assert_eq!(acks[0].sequence, sequence);
        prop_assert_eq!(acks[0].flags, flags & (P | V | G));
        let revoked = status(&acks[0]).is_success();
        prop_assert_eq!(b.lma.cache().len(), usize::from(!revoked || flags & V != 0));
    }
}

// ---------------------------------------------------------------------------------------
// Binding takeover (RFC 5213 section 5.4.1) and the LMA's own revocations (RFC 5846 8.1)

impl Bench {
    /// A PBU for `mn` from another MAG with Handoff Indicator `hi`, at `secs`.
    fn move_pbu(&self, mn: &str, hi: HandoffIndicator, secs: u64) -> ProxyBindingUpdate {
        let mut pbu = self.pbu(2, mn, secs);
        pbu.handoff = hi;
        pbu.gre_key = Some(GreKey(99));
        pbu
    }
}

/// The only indication sent to `to`, checked for what RFC 5846 section 8.1 requires.
fn one_bri(out: &[Output], to: MagAddress, trigger: RevocationTrigger) -> BindingRevocationRepr {
    match revocations_to(out, to).as_slice() {
        [bri] => {
            assert_eq!(bri.revocation_type, BindingRevocationType::Indication);
            assert_eq!(RevocationTrigger::from(bri.trigger_or_status), trigger);
            assert_eq!(bri.flags, P, "P set, G and V clear");
            bri.clone()
        }
        other => panic!("expected one BRI to {to}, got {other:?}"),
    }
}

fn bra_bytes(to_lma_from: MagAddress, sequence: u16, status: RevocationStatus) -> Vec<u8> {
    MobilityHeaderRepr {
        payload_proto: IPPROTO_NONE,
        message: MobilityMessage::BindingRevocation(BindingRevocationRepr {
            revocation_type: BindingRevocationType::Acknowledgement,
            trigger_or_status: status.into(),
            sequence,
            flags: P,
            options: Vec::new(),
        }),
    }
    .to_bytes(to_lma_from.receive_checksum())
}

fn pba_to(out: &[Output], to: MagAddress) -> Option<ProxyBindingAck> {
    answers(out, to).into_iter().find_map(|m| match m {
        MobilityMessage::BindingAck(ba) => Some(ProxyBindingAck::try_from(&ba).unwrap()),
        _ => None,
    })
}

#[test]
fn attachment_over_a_new_interface_elsewhere_is_a_new_session_and_the_old_mag_is_told() {
    let mut b = Bench::new();
    let first = b.register("t@x", 0);
    let pbu = b.move_pbu("t@x", HandoffIndicator::AttachmentOverNewInterface, 1);
    let (ack, out) = b.exchange(udp(OTHER_MAG), pbu.to_binding_update(), 1);
    assert_eq!(ack.status, BindingAckStatus::Accepted);
    let second = ProxyBindingAck::try_from(&ack).unwrap();
    // Nothing of the first MAG's binding reaches the second MAG.
    assert_ne!(second.home_network_prefixes, first.home_network_prefixes);
    assert_ne!(
        second.ipv4_home_address_reply,
        first.ipv4_home_address_reply
    );
    assert_ne!(second.gre_key, first.gre_key);
    assert_eq!(downs(&out), vec![DownReason::Revoked]);
    // One binding for the key, at the second MAG; the first one's addresses are free.
    let cache = b.lma.cache();
    assert_eq!(cache.len(), 1);
    let id = cache.find("t@x", Some("internet")).unwrap();
    assert_eq!(cache.get(id).unwrap().mag(), udp(OTHER_MAG));
    assert_eq!(b.lma.available_ipv4(), 4);
    assert_eq!(b.lma.available_prefixes(), 7);
    // The first MAG is told, naming the binding it had.
    let bri = one_bri(&out, udp(MAG), RevocationTrigger::AdministrativeReason);
    assert_eq!(
        bri.options,
        vec![
            mn("t@x"),
            MobilityOption::HomeNetworkPrefix(first.home_network_prefixes[0]),
            MobilityOption::ServiceSelection("internet".into()),
        ]
    );
    // Its late de-registration changes nothing and learns nothing of the new binding.
    let mut late = b.pbu(3, "t@x", 2);
    late.lifetime = Lifetime(0);
    let (ack, out) = b.exchange(udp(MAG), late.to_binding_update(), 2);
    assert_eq!(ack.status, BindingAckStatus::Accepted);
    assert_eq!(reports(&out)[0].outcome, Outcome::DeregistrationFromOldMag);
    let pba = ProxyBindingAck::try_from(&ack).unwrap();
    assert_eq!(pba.gre_key, None);
    assert_ne!(
        pba.ipv4_home_address_reply.map(|(_, a)| a),
        second.ipv4_home_address_reply.map(|(_, a)| a)
    );
    assert_eq!(b.lma.cache().len(), 1);
}

#[test]
fn a_handoff_keeps_the_addresses_and_revokes_the_old_mag_with_the_access_type_compared() {
    for (hi, technology, trigger) in [
        (
            HandoffIndicator::HandoffBetweenSameInterface,
            AccessTechnologyType::Ieee80211,
            RevocationTrigger::InterMagHandoverSameAccessType,
        ),
        (
            HandoffIndicator::HandoffBetweenDifferentInterfaces,
            AccessTechnologyType::ThreeGppEutran,
            RevocationTrigger::InterMagHandoverDifferentAccessType,
        ),
    ] {
        let mut b = Bench::new();
        let first = b.register("h@x", 0);
        let mut pbu = b.move_pbu("h@x", hi, 1);
        pbu.access_technology = technology;
        let (ack, out) = b.exchange(udp(OTHER_MAG), pbu.to_binding_update(), 1);
        let moved = ProxyBindingAck::try_from(&ack).unwrap();
        assert_eq!(moved.status, BindingAckStatus::Accepted);
        assert_eq!(moved.home_network_prefixes, first.home_network_prefixes);
        assert_eq!(moved.ipv4_home_address_reply, first.ipv4_home_address_reply);
        assert_eq!(moved.gre_key, first.gre_key);
        assert!(downs(&out).is_empty());
        one_bri(&out, udp(MAG), trigger);
        assert_eq!(b.lma.stats().revocations_sent, 1);
    }
}

#[test]
fn an_unanswered_indication_is_sent_again_then_given_up() {
    let mut b = Bench::new();
    b.register("u@x", 0);
    let pbu = b.move_pbu("u@x", HandoffIndicator::HandoffBetweenSameInterface, 10);
    let (_, out) = b.exchange(udp(OTHER_MAG), pbu.to_binding_update(), 10);
    let first = out
        .iter()
        .find_map(|o| match o {
            Output::Send { to, bytes } if *to == udp(MAG) => Some(bytes.clone()),
            _ => None,
        })
        .unwrap();
    // RFC 5846 section 11: InitMINDelayBRIs 1 s, one retransmission, MAX_BRACK_TIMEOUT 2 s.
    assert_eq!(b.lma.poll_timeout(), Some(b.at(11)));
    let out = b.timeout(11);
    assert_eq!(
        out,
        vec![Output::Send {
            to: udp(MAG),
            bytes: first
        }],
        "the same octets again"
    );
    assert_eq!(b.lma.poll_timeout(), Some(b.at(13)));
    assert!(b.timeout(12).is_empty());
    let out = b.timeout(13);
    assert!(out.iter().all(|o| !matches!(o, Output::Send { .. })));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Revocation(RevocationReport {
            event: RevocationEvent::TimedOut,
            ..
        })
    )));
    assert_eq!(b.lma.revocations_outstanding(), 0);
    let stats = b.lma.stats();
    assert_eq!(
        (stats.revocations_retransmitted, stats.revocation_timeouts),
        (1, 1)
    );
    // Nothing else is due but the binding's expiry.
    assert_eq!(b.lma.poll_timeout(), Some(b.at(10 + 600)));
    assert_eq!(b.lma.cache().len(), 1);
}

#[test]
fn an_acknowledged_indication_stops_whatever_its_status_and_strangers_are_ignored() {
    for status in [
        RevocationStatus::Success,
        RevocationStatus::BindingDoesNotExist,
        RevocationStatus::RevocationFailedMnIsAttached,
    ] {
        let mut b = Bench::new();
        b.register("a@x", 0);
        let pbu = b.move_pbu("a@x", HandoffIndicator::HandoffBetweenSameInterface, 1);
        let (_, out) = b.exchange(udp(OTHER_MAG), pbu.to_binding_update(), 1);
        let bri = one_bri(
            &out,
            udp(MAG),
            RevocationTrigger::InterMagHandoverSameAccessType,
        );
        // Wrong sequence number, or the right one from another MAG: discarded.
        assert!(b
            .feed(
                udp(MAG),
                &bra_bytes(udp(MAG), bri.sequence.wrapping_add(1), status),
                1
            )
            .is_empty());
        assert!(b
            .feed(
                udp(OTHER_MAG),
                &bra_bytes(udp(OTHER_MAG), bri.sequence, status),
                1
            )
            .is_empty());
        assert_eq!(b.lma.revocations_outstanding(), 1);
        let out = b.feed(udp(MAG), &bra_bytes(udp(MAG), bri.sequence, status), 1);
        assert!(matches!(
            out.as_slice(),
            [Output::Revocation(RevocationReport {
                event: RevocationEvent::Acknowledged(s),
                ..
            })] if *s == status
        ));
        assert_eq!(b.lma.revocations_outstanding(), 0);
        assert!(b.timeout(5).is_empty(), "no retransmission after an answer");
        // The handoff stands whatever the old MAG says.
        let id = b.lma.cache().find("a@x", Some("internet")).unwrap();
        assert_eq!(b.lma.cache().get(id).unwrap().mag(), udp(OTHER_MAG));
    }
}

#[test]
fn handoff_state_unknown_waits_for_the_old_mag() {
    // The old MAG says the node left: a handoff, same addresses.
    let mut b = Bench::new();
    let first = b.register("w@x", 0);
    let pbu = b.move_pbu("w@x", HandoffIndicator::HandoffStateUnknown, 1);
    let out = b.send(udp(OTHER_MAG), pbu.to_binding_update(), 1);
    assert!(pba_to(&out, udp(OTHER_MAG)).is_none(), "held: no PBA yet");
    assert_eq!(reports(&out)[0].outcome, Outcome::Held);
    let bri = one_bri(&out, udp(MAG), RevocationTrigger::InterMagHandoverUnknown);
    // The new MAG retransmits meanwhile: the latest PBU is the one answered.
    let mut again = pbu.clone();
    again.sequence = 3;
    again.timestamp = Some(Timestamp(b.ntp_at(1).0 + 1));
    let out = b.send(udp(OTHER_MAG), again.to_binding_update(), 1);
    assert!(answers(&out, udp(OTHER_MAG)).is_empty());
    assert!(revocations_to(&out, udp(MAG)).is_empty(), "asked once");
    let out = b.feed(
        udp(MAG),
        &bra_bytes(udp(MAG), bri.sequence, RevocationStatus::Success),
        2,
    );
    let pba = pba_to(&out, udp(OTHER_MAG)).expect("answered now");
    assert_eq!(pba.status, BindingAckStatus::Accepted);
    assert_eq!(pba.sequence, 3);
    assert_eq!(pba.home_network_prefixes, first.home_network_prefixes);
    assert_eq!(pba.ipv4_home_address_reply, first.ipv4_home_address_reply);
    assert!(
        revocations_to(&out, udp(MAG)).is_empty(),
        "no second indication"
    );

    // The old MAG says the node is still there: the second session is refused.
    let mut b = Bench::new();
    b.register("w@x", 0);
    let pbu = b.move_pbu("w@x", HandoffIndicator::HandoffStateUnknown, 1);
    let out = b.send(udp(OTHER_MAG), pbu.to_binding_update(), 1);
    let bri = one_bri(&out, udp(MAG), RevocationTrigger::InterMagHandoverUnknown);
    let attached = RevocationStatus::RevocationFailedMnIsAttached;
    let out = b.feed(udp(MAG), &bra_bytes(udp(MAG), bri.sequence, attached), 2);
    let pba = pba_to(&out, udp(OTHER_MAG)).unwrap();
    assert_eq!(pba.status, BindingAckStatus::AdministrativelyProhibited);
    let id = b.lma.cache().find("w@x", Some("internet")).unwrap();
    assert_eq!(b.lma.cache().get(id).unwrap().mag(), udp(MAG));

    // The old MAG is silent: a new session once the retransmissions are spent.
    let mut b = Bench::new();
    let first = b.register("w@x", 0);
    let pbu = b.move_pbu("w@x", HandoffIndicator::HandoffStateUnknown, 1);
    b.send(udp(OTHER_MAG), pbu.to_binding_update(), 1);
    let out = b.timeout(2);
    assert_eq!(revocations_to(&out, udp(MAG)).len(), 1, "sent again");
    let out = b.timeout(4);
    let pba = pba_to(&out, udp(OTHER_MAG)).expect("answered after the give-up");
    assert_eq!(pba.status, BindingAckStatus::Accepted);
    assert_ne!(pba.home_network_prefixes, first.home_network_prefixes);
    assert_ne!(pba.gre_key, first.gre_key);
    assert_eq!(downs(&out), vec![DownReason::Revoked]);
    assert!(
        revocations_to(&out, udp(MAG)).is_empty(),
        "told once already"
    );
    assert_eq!(b.lma.cache().len(), 1);

    // The old MAG de-registers while asked: that is its answer.
    let mut b = Bench::new();
    let first = b.register("w@x", 0);
    let pbu = b.move_pbu("w@x", HandoffIndicator::HandoffStateUnknown, 1);
    b.send(udp(OTHER_MAG), pbu.to_binding_update(), 1);
    let mut dereg = b.pbu(5, "w@x", 2);
    dereg.lifetime = Lifetime(0);
    let out = b.send(udp(MAG), dereg.to_binding_update(), 2);
    let old = pba_to(&out, udp(MAG)).unwrap();
    assert_eq!(
        (old.status, old.lifetime),
        (BindingAckStatus::Accepted, Lifetime(0))
    );
    assert_eq!(old.gre_key, None);
    let new = pba_to(&out, udp(OTHER_MAG)).unwrap();
    assert_eq!(new.status, BindingAckStatus::Accepted);
    assert_eq!(new.home_network_prefixes, first.home_network_prefixes);
    assert_eq!(b.lma.revocations_outstanding(), 0);
    assert!(b.timeout(10).is_empty());
}

#[test]
fn a_refresh_from_a_mag_that_lost_the_binding_is_refused_and_moves_nothing() {
    let mut b = Bench::new();
    let first = b.register("s@x", 0);
    let handoff = b.move_pbu("s@x", HandoffIndicator::HandoffBetweenSameInterface, 1);
    b.exchange(udp(OTHER_MAG), handoff.to_binding_update(), 1);
    // The first MAG's refresh crosses the BRI.
    let mut stale = b.pbu(9, "s@x", 2);
    stale.handoff = HandoffIndicator::HandoffStateNotChanged;
    stale.home_network_prefixes = first.home_network_prefixes.clone();
    let ack = assert_rejected(
        &mut b,
        udp(MAG),
        stale.to_binding_update(),
        2,
        BindingAckStatus::ReasonUnspecified,
    );
    assert_eq!(ProxyBindingAck::try_from(&ack).unwrap().gre_key, None);
    let id = b.lma.cache().find("s@x", Some("internet")).unwrap();
    assert_eq!(b.lma.cache().get(id).unwrap().mag(), udp(OTHER_MAG));
}

#[test]
fn a_binding_handed_back_withdraws_the_indication_to_its_mag() {
    let mut b = Bench::new();
    b.register("b@x", 0);
    let there = b.move_pbu("b@x", HandoffIndicator::HandoffBetweenSameInterface, 1);
    let (_, out) = b.exchange(udp(OTHER_MAG), there.to_binding_update(), 1);
    one_bri(
        &out,
        udp(MAG),
        RevocationTrigger::InterMagHandoverSameAccessType,
    );
    let mut back = b.move_pbu("b@x", HandoffIndicator::HandoffBetweenSameInterface, 1);
    back.timestamp = Some(Timestamp(b.ntp_at(1).0 + 1));
    back.gre_key = Some(GreKey(5));
    let (ack, out) = b.exchange(udp(MAG), back.to_binding_update(), 1);
    assert_eq!(ack.status, BindingAckStatus::Accepted);
    one_bri(
        &out,
        udp(OTHER_MAG),
        RevocationTrigger::InterMagHandoverSameAccessType,
    );
    assert_eq!(
        b.lma.revocations_outstanding(),
        1,
        "the one to MAG withdrawn"
    );
    let out = b.timeout(2);
    assert!(revocations_to(&out, udp(MAG)).is_empty());
    assert_eq!(revocations_to(&out, udp(OTHER_MAG)).len(), 1);
}

/// What each MAG holds, recounted from the entries (the cache keeps it incrementally).
fn recount(b: &Bench) -> std::collections::BTreeMap<IpAddr, crate::binding_cache::MagUsage> {
    let mut usage = std::collections::BTreeMap::new();
    for (_, e) in b.lma.cache().iter() {
        let u: &mut crate::binding_cache::MagUsage = usage.entry(e.mag().ip()).or_default();
        u.bindings += 1;
        u.ipv4_home_addresses += u32::from(e.addresses().ipv4_home_address.is_some());
        u.home_network_prefixes += u32::from(e.addresses().home_network_prefix.is_some());
    }
    usage
}

/// Every accepted PBA in `out` names only keys and prefixes of bindings its MAG holds.
fn pbas_match_holders(
    b: &Bench,
    mags: &[MagAddress],
    out: &[Output],
) -> Result<(), proptest::test_runner::TestCaseError> {
    let cache = b.lma.cache();
    for &to in mags {
        for message in answers(out, to) {
            let MobilityMessage::BindingAck(ba) = message else {
                continue;
            };
            let Ok(pba) = ProxyBindingAck::try_from(&ba) else {
                continue;
            };
            if !pba.status.is_accepted() {
                prop_assert_eq!(pba.gre_key, None);
                continue;
            }
            if let Some(id) = pba.gre_key.and_then(|k| cache.by_uplink_gre_key(k)) {
                prop_assert_eq!(cache.get(id).unwrap().mag().ip(), to.ip());
            }
            if pba.lifetime.is_zero() {
                continue;
            }
            for prefix in &pba.home_network_prefixes {
                let id = cache.by_home_network_prefix(*prefix);
                prop_assert!(id.is_some_and(|id| cache.get(id).unwrap().mag().ip() == to.ip()));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Two MAGs registering, moving, refreshing and de-registering the same nodes with any
    /// Handoff Indicator, the old MAGs answering or not: an accepted PBA never carries a
    /// key or an address of a binding its MAG does not hold; the per-MAG counts, the pools
    /// and the cache always agree.
    #[test]
    fn a_pba_carries_only_what_its_mag_holds(
        ops in proptest::collection::vec((0u8..2, 0u8..2, 1u8..6, any::<bool>(), 0u8..4), 1..40)
    ) {
        let mut b = Bench::new();
        let mags = [udp(MAG), udp(OTHER_MAG)];
        let mut secs = 0;
        let mut sequence = 1u16;
        for (mag, node, hi, deregister, then) in ops {
            secs += 1;
            sequence += 1;
            let from = mags[usize::from(mag)];
            let mut pbu = b.pbu(sequence, if node == 0 { "p@x" } else { "q@x" }, secs);
            pbu.handoff = HandoffIndicator::from(hi);
            pbu.gre_key = Some(GreKey(1000 + u32::from(mag)));
            if deregister {
                pbu.lifetime = Lifetime(0);
            }
            let mut out = b.send(from, pbu.to_binding_update(), secs);
            // The other MAG answers whatever it was asked, or stays silent.
            let other = mags[1 - usize::from(mag)];
            for bri in revocations_to(&out, other) {
                if then < 3 {
                    let status = [
                        RevocationStatus::Success,
                        RevocationStatus::RevocationFailedMnIsAttached,
                        RevocationStatus::BindingDoesNotExist,
                    ][usize::from(then)];
                    out.extend(b.feed(other, &bra_bytes(other, bri.sequence, status), secs));
                }
            }
            pbas_match_holders(&b, &mags, &out)?;
            secs += 3;
            let out = b.timeout(secs);
            pbas_match_holders(&b, &mags, &out)?;
            let usage: std::collections::BTreeMap<_, _> = b.lma.cache().usage_by_mag().collect();
            prop_assert_eq!(&usage, &recount(&b));
            let held = |f: fn(&Addresses) -> bool| {
                b.lma.cache().iter().filter(|(_, e)| f(&e.addresses())).count() as u32
            };
            prop_assert_eq!(b.lma.available_ipv4() + held(|a| a.ipv4_home_address.is_some()), 5);
            prop_assert_eq!(b.lma.available_prefixes() + held(|a| a.home_network_prefix.is_some()), 8);
        }
    }
}

#[test]
fn a_refresh_by_the_holder_while_it_is_asked_keeps_the_binding_there() {
    let mut b = Bench::new();
    let first = b.register("k@x", 0);
    let pbu = b.move_pbu("k@x", HandoffIndicator::HandoffStateUnknown, 1);
    let out = b.send(udp(OTHER_MAG), pbu.to_binding_update(), 1);
    let bri = one_bri(&out, udp(MAG), RevocationTrigger::InterMagHandoverUnknown);
    let mut refresh = b.pbu(7, "k@x", 2);
    refresh.handoff = HandoffIndicator::HandoffStateNotChanged;
    refresh.home_network_prefixes = first.home_network_prefixes.clone();
    let out = b.send(udp(MAG), refresh.to_binding_update(), 2);
    assert_eq!(
        pba_to(&out, udp(MAG)).unwrap().status,
        BindingAckStatus::Accepted
    );
    assert_eq!(
        pba_to(&out, udp(OTHER_MAG)).unwrap().status,
        BindingAckStatus::AdministrativelyProhibited
    );
    assert_eq!(b.lma.revocations_outstanding(), 0);
    // Its late answer changes nothing.
    let success = RevocationStatus::Success;
    assert!(b
        .feed(udp(MAG), &bra_bytes(udp(MAG), bri.sequence, success), 3)
        .is_empty());
    let id = b.lma.cache().find("k@x", Some("internet")).unwrap();
    assert_eq!(b.lma.cache().get(id).unwrap().mag(), udp(MAG));
}

// ---------------------------------------------------------------------------------------
// Per-MAG limits

fn limited(limits: MagLimits) -> Bench {
    Bench::with(LmaSettings {
        limits,
        ..settings()
    })
}

fn limit_reports(out: &[Output]) -> Vec<&LimitReport> {
    out.iter()
        .filter_map(|o| match o {
            Output::Limits(r) => Some(r),
            _ => None,
        })
        .collect()
}

#[test]
fn one_mag_cannot_take_the_whole_pool_and_the_next_mag_is_served() {
    // Half of the five IPv4 addresses (two) and of the eight prefixes (four) per MAG.
    let mut b = limited(MagLimits {
        share_percent: 50,
        ..MagLimits::default()
    });
    for i in 0..2 {
        b.register_at(udp(MAG), &format!("{i}@x"), "internet", 0);
    }
    let mut refused = 0;
    for i in 2..1000u32 {
        let pbu = b.pbu(1, &format!("{i}@x"), 0);
        let (ack, out) = b.exchange(udp(MAG), pbu.to_binding_update(), 0);
        assert_eq!(ack.status, BindingAckStatus::InsufficientResources);
        let pba = ProxyBindingAck::try_from(&ack).unwrap();
        assert_eq!(
            pba.ipv4_home_address_reply.map(|(s, _)| s),
            Some(Ipv4HomeAddressReplyStatus::DynamicIpv4HomeAddressAssignmentNotAvailable)
        );
        assert!(reports(&out).is_empty(), "not one log line per refused PBU");
        refused += 1;
    }
    assert_eq!(b.lma.stats().refused_mag_share, refused);
    assert_eq!(b.lma.available_ipv4(), 3);
    // The other MAG's mobile nodes still get addresses.
    b.register_at(udp(OTHER_MAG), "next@x", "internet", 1);
    // The refusals are reported once, summed, when the interval is over.
    assert_eq!(b.lma.poll_timeout(), Some(b.at(10)));
    let out = b.timeout(10);
    let limits = limit_reports(&out);
    assert_eq!(limits.len(), 1);
    assert_eq!(
        limits[0].refusals,
        vec![(
            IpAddr::V4(MAG.parse().unwrap()),
            MagRefusals {
                capacity: 0,
                share: refused,
                rate: 0
            }
        )]
    );
    assert!(
        limit_reports(&b.timeout(20)).is_empty(),
        "nothing new, nothing reported"
    );
}

#[test]
fn the_share_of_the_cache_and_its_capacity_hold_for_bindings_without_addresses() {
    let mut b = limited(MagLimits {
        share_percent: 50,
        max_bindings: 4,
        ..MagLimits::default()
    });
    let v6_only = |b: &Bench, mn: &str| {
        let mut pbu = b.pbu(1, mn, 0);
        pbu.ipv4_home_address_request = None;
        pbu.to_binding_update()
    };
    for i in 0..2 {
        let (ack, _) = b.exchange(udp(MAG), v6_only(&b, &format!("{i}@x")), 0);
        assert_eq!(ack.status, BindingAckStatus::Accepted);
    }
    let (ack, _) = b.exchange(udp(MAG), v6_only(&b, "2@x"), 0);
    assert_eq!(ack.status, BindingAckStatus::InsufficientResources);
    for i in 3..5 {
        let (ack, _) = b.exchange(udp(OTHER_MAG), v6_only(&b, &format!("{i}@x")), 0);
        assert_eq!(ack.status, BindingAckStatus::Accepted);
    }
    // Full: even a MAG under its share is refused.
    let mut c = limited(MagLimits {
        max_bindings: 2,
        ..MagLimits::default()
    });
    c.register_at(udp(MAG), "a@x", "internet", 0);
    c.register_at(udp(OTHER_MAG), "b@x", "internet", 0);
    let (ack, _) = c.exchange(udp(MAG), c.pbu(1, "c@x", 0).to_binding_update(), 0);
    assert_eq!(ack.status, BindingAckStatus::InsufficientResources);
    assert_eq!(c.lma.stats().refused_cache_full, 1);
    assert_eq!(c.lma.cache().len(), 2);
}

#[test]
fn new_bindings_are_rate_limited_per_mag_in_virtual_time() {
    let mut b = Bench::with(LmaSettings {
        ipv4_pool: Some("10.1.0.0/22".parse().unwrap()),
        ipv4_default_router: Some("10.1.0.1".parse().unwrap()),
        ipv6_pool: Some("2001:db8:2::/54".parse().unwrap()),
        limits: MagLimits {
            new_bindings_per_sec: 2,
            burst: 3,
            ..MagLimits::default()
        },
        ..settings()
    });
    let status = |b: &mut Bench, mag, mn: &str, secs| {
        let pbu = b.pbu(1, mn, secs);
        b.exchange(mag, pbu.to_binding_update(), secs).0.status
    };
    let (ok, refused) = (
        BindingAckStatus::Accepted,
        BindingAckStatus::InsufficientResources,
    );
    // The burst, then nothing; another MAG has its own bucket.
    for (mag, mn, want) in [
        (MAG, "0@x", ok),
        (MAG, "1@x", ok),
        (MAG, "2@x", ok),
        (MAG, "3@x", refused),
        (OTHER_MAG, "o@x", ok),
    ] {
        assert_eq!(status(&mut b, udp(mag), mn, 0), want, "{mn} from {mag}");
    }
    // A refresh is not a new binding.
    let mut refresh = b.pbu(2, "0@x", 0);
    refresh.handoff = HandoffIndicator::HandoffStateNotChanged;
    refresh.timestamp = Some(Timestamp(b.ntp_at(0).0 + 1));
    let (ack, _) = b.exchange(udp(MAG), refresh.to_binding_update(), 0);
    assert_eq!(ack.status, ok);
    // One second later, two more.
    for (mn, want) in [("4@x", ok), ("5@x", ok), ("6@x", refused)] {
        assert_eq!(status(&mut b, udp(MAG), mn, 1), want, "{mn}");
    }
    assert_eq!(b.lma.stats().refused_mag_rate, 2);
}

#[test]
fn a_handoff_into_a_mag_at_its_share_is_refused_and_the_binding_stays() {
    let mut b = limited(MagLimits {
        share_percent: 40,
        ..MagLimits::default()
    });
    // 40 % of five addresses: two for OTHER_MAG.
    b.register_at(udp(OTHER_MAG), "o1@x", "internet", 0);
    b.register_at(udp(OTHER_MAG), "o2@x", "internet", 0);
    b.register("h@x", 0);
    let pbu = b.move_pbu("h@x", HandoffIndicator::HandoffBetweenSameInterface, 1);
    let (ack, out) = b.exchange(udp(OTHER_MAG), pbu.to_binding_update(), 1);
    assert_eq!(ack.status, BindingAckStatus::InsufficientResources);
    assert_eq!(ProxyBindingAck::try_from(&ack).unwrap().gre_key, None);
    assert!(!out
        .iter()
        .any(|o| matches!(o, Output::BindingUp(_) | Output::BindingDown { .. })));
    assert_eq!(b.lma.stats().refused_mag_share, 1);
    let id = b.lma.cache().find("h@x", Some("internet")).unwrap();
    assert_eq!(b.lma.cache().get(id).unwrap().mag(), udp(MAG));
    assert_eq!(b.lma.revocations_outstanding(), 0, "nobody told to let go");
}

/// An uplink GRE packet (header and an IPv4 echo request from `source`) with `key`.
fn uplink_gre(key: GreKey, source: std::net::Ipv4Addr) -> Vec<u8> {
    use pmip_common::tunnel::{GreRepr, ProtocolType};
    let mut inner = vec![0u8; 28];
    inner[0] = 0x45;
    inner[2..4].copy_from_slice(&28u16.to_be_bytes());
    inner[8] = 64;
    inner[9] = 1;
    inner[12..16].copy_from_slice(&source.octets());
    inner[16..20].copy_from_slice(&[198, 51, 100, 1]);
    inner[20] = 8;
    let mut out = Vec::new();
    let proto = ProtocolType::of_ip_packet(&inner).unwrap();
    GreRepr::keyed(proto, key.0).emit_with_payload(&inner, &mut out);
    out
}

#[test]
fn after_a_restart_no_packet_of_an_old_session_reaches_the_pdn_as_a_new_ones_traffic() {
    use crate::dataplane::{DataPlane, DataPlaneSettings, DropReason};
    // Run 1 (restart counter 42): three sessions, the state file kept.
    let mut before = Bench::new();
    before.lma.keep_journal();
    let mut journal = String::new();
    let mut old = Vec::new();
    for i in 0..3 {
        let pbu = before.pbu(1, &format!("old{i}@x"), 0);
        let (ack, out) = before.exchange(udp(MAG), pbu.to_binding_update(), 0);
        for o in &out {
            if let Output::Journal(record) = o {
                journal.push_str(&crate::state::line(record));
            }
        }
        let ack = ProxyBindingAck::try_from(&ack).unwrap();
        let v4 = ack.ipv4_home_address_reply.unwrap().1.addr();
        old.push((ack.gre_key.unwrap(), v4, ack.home_network_prefixes[0]));
    }
    // kill -9; run 2 (counter 43) reads the state file back. The MAG's sessions are
    // stale: it has not heard of the restart yet.
    let mut after = Bench::with(LmaSettings {
        restart_counter: 43,
        ..settings()
    });
    let mut out = Vec::new();
    after.lma.keep_journal();
    after
        .lma
        .restore(crate::state::replay(&journal), after.t0, &mut out);
    assert_eq!(after.lma.held_back(), 3);
    // RFC 5847 section 3.2: the unsolicited Heartbeat Response tells the MAG at once.
    match answers(&out, udp(MAG)).as_slice() {
        [MobilityMessage::Heartbeat(hb)] => {
            assert!(hb.unsolicited && hb.response);
            assert_eq!(hb.options, vec![MobilityOption::RestartCounter(43)]);
        }
        other => panic!("expected an unsolicited heartbeat response, got {other:?}"),
    }
    let mut plane = DataPlane::new(DataPlaneSettings::default());
    // New sessions, from either MAG: never an address or uplink key of the old ones.
    for (i, mag) in [udp(MAG), udp(OTHER_MAG)].into_iter().enumerate() {
        let pbu = after.pbu(1, &format!("new{i}@x"), 1);
        let (ack, out) = after.exchange(mag, pbu.to_binding_update(), 1);
        out.iter().for_each(|o| plane.apply(o));
        let ack = ProxyBindingAck::try_from(&ack).unwrap();
        assert_eq!(ack.status, BindingAckStatus::Accepted);
        let key = ack.gre_key.unwrap();
        let v4 = ack.ipv4_home_address_reply.unwrap().1.addr();
        assert!(old
            .iter()
            .all(|(k, a, p)| *k != key && *a != v4 && *p != ack.home_network_prefixes[0]));
    }
    // The pool's other addresses are held back: a third new session gets none.
    let pbu = after.pbu(1, "new2@x", 1);
    let (ack, _) = after.exchange(udp(MAG), pbu.to_binding_update(), 1);
    assert_eq!(ack.status, BindingAckStatus::InsufficientResources);
    // Another MAG asking for an old session's address by name is refused (RFC 5844).
    let mut grab = after.pbu(2, "thief@x", 1);
    grab.ipv4_home_address_request = Some(Ipv4Net::new(old[0].1, 32).unwrap());
    let (ack, _) = after.exchange(udp(OTHER_MAG), grab.to_binding_update(), 1);
    assert_eq!(
        ack.status,
        BindingAckStatus::NotAuthorizedForIpv4HomeAddress
    );
    // Every packet of an old session is dropped: its key is of the old run.
    for (key, address, _) in &old {
        let stale = uplink_gre(*key, *address);
        let from: IpAddr = MAG.parse().unwrap();
        assert_eq!(plane.uplink_gre(from, &stale), Err(DropReason::UnknownKey));
    }
    // The old MAG registers an old session again, naming its addresses: it gets exactly
    // them, with a key of the new run; the old key still carries nothing.
    let (old_key, old_v4, old_prefix) = old[1];
    let mut again = after.pbu(3, "old1@x", 2);
    again.handoff = HandoffIndicator::HandoffStateNotChanged;
    again.home_network_prefixes = vec![old_prefix];
    again.ipv4_home_address_request = Some(Ipv4Net::new(old_v4, 32).unwrap());
    let (ack, out) = after.exchange(udp(MAG), again.to_binding_update(), 2);
    out.iter().for_each(|o| plane.apply(o));
    let ack = ProxyBindingAck::try_from(&ack).unwrap();
    assert_eq!(ack.status, BindingAckStatus::Accepted);
    assert_eq!(ack.home_network_prefixes, vec![old_prefix]);
    assert_eq!(ack.ipv4_home_address_reply.unwrap().1.addr(), old_v4);
    let key = ack.gre_key.unwrap();
    assert_ne!(key, old_key);
    assert_eq!(crate::gre_keys::UplinkKeyAllocator::epoch_of(key), 43);
    let from: IpAddr = MAG.parse().unwrap();
    assert!(plane.uplink_gre(from, &uplink_gre(key, old_v4)).is_ok());
    assert_eq!(
        plane.uplink_gre(from, &uplink_gre(old_key, old_v4)),
        Err(DropReason::UnknownKey)
    );
    assert_eq!(after.lma.held_back(), 2);
    // The rest is told after the grace (two heartbeat intervals): trigger 7, then free.
    let told = after.timeout(121);
    let indications: Vec<BindingRevocationRepr> = answers(&told, udp(MAG))
        .into_iter()
        .filter_map(|m| match m {
            MobilityMessage::BindingRevocation(br) => Some(br),
            _ => None,
        })
        .collect();
    assert_eq!(indications.len(), 2);
    assert!(indications.iter().all(|br| br.trigger_or_status == 7));
    for br in indications {
        let ack = BindingRevocationRepr {
            revocation_type: BindingRevocationType::Acknowledgement,
            trigger_or_status: 0,
            sequence: br.sequence,
            flags: br.flags,
            options: Vec::new(),
        };
        let bytes = MobilityHeaderRepr {
            payload_proto: IPPROTO_NONE,
            message: MobilityMessage::BindingRevocation(ack),
        }
        .to_bytes(udp(MAG).receive_checksum());
        after.feed(udp(MAG), &bytes, 122);
    }
    assert_eq!(after.lma.held_back(), 0);
    assert_eq!(after.lma.available_ipv4(), 2);
}

/// RFC 6275 section 9.2: a Payload Proto other than 59, or a Header Len short of the
/// type's fixed part, is discarded, never bound; over IPv6 the MAG gets an ICMPv6
/// Parameter Problem, Code 0, whose Pointer names the field in the invoking packet (its
/// IPv6 header counted); over UDP 5436 nothing is answered.
#[test]
fn a_bad_payload_proto_or_header_len_is_discarded_with_a_parameter_problem_over_ipv6() {
    use etherparse::{Icmpv6Slice, Icmpv6Type};
    let ip6 = MagAddress::Ip6 {
        mag: "fd00::1".parse().unwrap(),
        local: "fd00::2".parse().unwrap(),
        kernel_checksum: true,
    };
    let mut b = Bench::new();
    let mut tcp = MobilityHeaderRepr {
        payload_proto: IPPROTO_NONE,
        message: MobilityMessage::BindingUpdate(b.pbu(1, "proto@x", 0).to_binding_update()),
    }
    .to_bytes(ChecksumContext::Skip);
    tcp[0] = 6;
    let short = [IPPROTO_NONE, 0, 5, 0, 0, 0, 0, 0];
    for (bytes, pointer) in [(&tcp[..], 40), (&short[..], 41)] {
        // Over UDP: discarded in silence.
        assert!(b.feed(udp(MAG), bytes, 0).is_empty());
        // Over IPv6: discarded, with one Parameter Problem back to the MAG.
        let out = b.feed(ip6, bytes, 0);
        let [Output::Icmpv6 { from, to, message }] = out.as_slice() else {
            panic!("expected one ICMPv6 message, got {out:?}");
        };
        assert_eq!(
            (from.to_string(), to.to_string()),
            ("fd00::2".into(), "fd00::1".into())
        );
        let icmp = Icmpv6Slice::from_slice(message).unwrap();
        let Icmpv6Type::ParameterProblem(problem) = icmp.icmp_type() else {
            panic!("not a Parameter Problem: {:?}", icmp.icmp_type());
        };
        assert_eq!(problem.code as u8, 0);
        assert_eq!(problem.pointer, pointer);
        // The quoted packet: a rebuilt IPv6 header (next header 135), then the message.
        let quoted = icmp.payload();
        assert_eq!(quoted[6], IPPROTO_MH);
        assert_eq!(&quoted[40..], bytes);
        assert_eq!(quoted[pointer as usize], bytes[pointer as usize - 40]);
    }
    let stats = b.lma.stats();
    assert_eq!(stats.bad_payload_proto, 2);
    assert_eq!(stats.header_len_too_short, 2);
    assert_eq!(stats.parameter_problems_sent, 2);
    b.assert_empty();
    // From a MAG that may not register: discarded, no ICMPv6 to a stranger.
    let stranger = MagAddress::Ip6 {
        mag: "2001:db8:bad::1".parse().unwrap(),
        local: "fd00::2".parse().unwrap(),
        kernel_checksum: true,
    };
    let out = b.feed(stranger, &tcp, 0);
    assert!(!out.iter().any(|o| matches!(o, Output::Icmpv6 { .. })));
}
