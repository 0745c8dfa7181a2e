//! The rules of CHILD_SA negotiation both roles share (RFC 7296 sections 1.3, 2.8, 2.9,
//! 2.17; RFC 4301 section 4.4.1 for selectors): the mode (tunnel, or transport when both
//! sides say USE_TRANSPORT_MODE), the responder's narrowing of traffic selectors to its
//! policy, the choice of an ESP proposal with or without a Diffie-Hellman group (PFS),
//! and the soft and hard lifetimes, jittered, after which SAs are rekeyed or dropped.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::crypto::{DhGroup, EspSuite, Random};
use super::wire::{
    DhGroupId, NotifyPayload, NotifyType, Proposal, SaPayload, TrafficSelector, TransformId,
};

/// How a CHILD_SA's ESP carries packets (RFC 4301 section 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// A whole IP packet inside ESP: the UE's traffic.
    #[default]
    Tunnel,
    /// The upper-layer payload of the node's own packet inside ESP: PMIPv6 signaling
    /// between MAG and LMA (RFC 5213 section 4).
    Transport,
}

impl Mode {
    /// Transport mode if both sides said so, else tunnel mode.
    pub fn of(transport: bool) -> Self {
        if transport {
            Mode::Transport
        } else {
            Mode::Tunnel
        }
    }
}

/// What a responder accepts for a CHILD_SA of a peer that authenticated with a key or a
/// certificate (a UE's CHILD_SA is the application's to grant).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChildPolicy {
    /// Accept a request for transport mode (otherwise the CHILD_SA is made in tunnel mode,
    /// section 1.3.1, and an initiator that needs transport mode deletes it).
    pub transport_mode: bool,
    /// Our side of the traffic: the initiator's TSr is narrowed to it. Empty: anything.
    pub local_ts: Vec<TrafficSelector>,
    /// The peer's side: the initiator's TSi is narrowed to it. Empty: anything.
    pub remote_ts: Vec<TrafficSelector>,
}

/// When SAs are rekeyed and when they must no longer be used (section 2.8): each end
/// enforces its own. The soft times come earlier by a random part of `jitter` so two ends
/// with the same policy seldom start the same rekey at once (section 2.8.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lifetimes {
    /// Rekey the IKE SA this long after it was made. None: never on our own.
    pub ike_rekey: Option<Duration>,
    /// Close the IKE SA this long after it was made, if no rekey replaced it.
    pub ike_lifetime: Option<Duration>,
    /// Rekey a CHILD_SA this long after it was made.
    pub child_rekey: Option<Duration>,
    /// Delete a CHILD_SA this long after it was made, if no rekey replaced it.
    pub child_lifetime: Option<Duration>,
    /// The soft times above come up to this much earlier, at random.
    pub jitter: Duration,
    /// A Diffie-Hellman exchange in the CHILD_SA rekeys we start (perfect forward secrecy,
    /// section 1.3.1). None: no KE payload.
    pub child_dh: Option<DhGroup>,
}

impl Lifetimes {
    /// The soft deadline `soft` after `now`, up to `jitter` earlier.
    pub(super) fn soft(
        &self,
        soft: Option<Duration>,
        now: Instant,
        rng: &mut dyn Random,
    ) -> Option<Instant> {
        let soft = soft?;
        let jitter = self.jitter.min(soft);
        let mut b = [0u8; 4];
        rng.fill(&mut b);
        let fraction = f64::from(u32::from_be_bytes(b)) / f64::from(u32::MAX);
        Some(now + soft - jitter.mul_f64(fraction))
    }

    /// The hard deadline `hard` after `now`.
    pub(super) fn hard(hard: Option<Duration>, now: Instant) -> Option<Instant> {
        hard.map(|h| now + h)
    }
}

/// An address as a number, with its family (false: IPv4).
fn ordinal(a: IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

fn address(v6: bool, n: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(n.into())
    } else {
        IpAddr::V4(u32::try_from(n).unwrap_or(u32::MAX).into())
    }
}

/// The traffic two selectors both cover (RFC 4301 section 4.4.1: protocol 0 and the
/// full port range are wildcards), or None. Unknown selector types cover nothing.
pub fn intersect(a: &TrafficSelector, b: &TrafficSelector) -> Option<TrafficSelector> {
    let (
        TrafficSelector::AddrRange {
            ip_protocol: pa,
            start_port: sa,
            end_port: ea,
            start_address: a0,
            end_address: a1,
        },
        TrafficSelector::AddrRange {
            ip_protocol: pb,
            start_port: sb,
            end_port: eb,
            start_address: b0,
            end_address: b1,
        },
    ) = (a, b)
    else {
        return None;
    };
    let ip_protocol = match (*pa, *pb) {
        (0, p) | (p, 0) => p,
        (p, q) if p == q => p,
        _ => return None,
    };
    // OPAQUE ports (start 65535, end 0, section 3.13.1) only meet themselves or "any".
    let any = |s: u16, e: u16| s == 0 && e == u16::MAX;
    let (start_port, end_port) = if any(*sa, *ea) {
        (*sb, *eb)
    } else if any(*sb, *eb) || (sa, ea) == (sb, eb) {
        (*sa, *ea)
    } else if sa.max(sb) <= ea.min(eb) {
        (*sa.max(sb), *ea.min(eb))
    } else {
        return None;
    };
    let ((fa, a0), (_, a1)) = (ordinal(*a0), ordinal(*a1));
    let ((fb, b0), (_, b1)) = (ordinal(*b0), ordinal(*b1));
    if fa != fb || a0.max(b0) > a1.min(b1) {
        return None;
    }
    Some(TrafficSelector::AddrRange {
        ip_protocol,
        start_port,
        end_port,
        start_address: address(fa, a0.max(b0)),
        end_address: address(fa, a1.min(b1)),
    })
}

/// The responder's narrowing (section 2.9): each proposed selector cut to each policy
/// selector, in the initiator's order (so its first choice leads), duplicates and unknown
/// types left out. An empty policy allows everything proposed. Empty: TS_UNACCEPTABLE.
pub fn narrow(proposed: &[TrafficSelector], policy: &[TrafficSelector]) -> Vec<TrafficSelector> {
    let mut out: Vec<TrafficSelector> = Vec::new();
    for p in proposed {
        let cuts: Vec<TrafficSelector> = if policy.is_empty() {
            intersect(p, p).into_iter().collect()
        } else {
            policy.iter().filter_map(|q| intersect(p, q)).collect()
        };
        for c in cuts {
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
}

/// The Diffie-Hellman groups a proposal names (NONE included, as `None`).
fn proposal_groups(p: &Proposal) -> Vec<Option<DhGroupId>> {
    p.transforms
        .iter()
        .filter_map(|t| match t.id {
            TransformId::Dh(DhGroupId::None) => Some(None),
            TransformId::Dh(g) => Some(Some(g)),
            _ => None,
        })
        .collect()
}

/// The responder's choice for a CHILD_SA of CREATE_CHILD_SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ChildChoice {
    pub(super) number: u8,
    /// The initiator's SPI: where we send.
    pub(super) peer_spi: u32,
    pub(super) suite: EspSuite,
    /// The group of the KE exchange, if the chosen proposal has one and KEi is in it.
    pub(super) dh: Option<DhGroup>,
}

/// Picks the first of our ESP suites some proposal offers, with the group of KEi when the
/// proposal names it (section 1.3: at least one offer includes KEi's group). A proposal
/// that needs a Diffie-Hellman exchange we can do but in another group than KEi's (or
/// without KEi) is answered INVALID_KE_PAYLOAD with that group; nothing acceptable is
/// NO_PROPOSAL_CHOSEN.
pub(super) fn choose_child(
    configured: &[EspSuite],
    groups: &[DhGroup],
    offered: &SaPayload,
    ke_group: Option<DhGroupId>,
) -> Result<ChildChoice, NotifyPayload> {
    let ours = |g: DhGroupId| groups.iter().copied().find(|d| d.id() == g);
    let mut wanted_group = None;
    for s in configured {
        for p in offered.proposals.iter().filter(|p| s.offered_in(p)) {
            let spi = u32::from_be_bytes([p.spi[0], p.spi[1], p.spi[2], p.spi[3]]);
            let listed = proposal_groups(p);
            let choice = |dh| ChildChoice {
                number: p.number,
                peer_spi: spi,
                suite: *s,
                dh,
            };
            match ke_group {
                Some(g) if listed.contains(&Some(g)) => {
                    if let Some(d) = ours(g) {
                        return Ok(choice(Some(d)));
                    }
                }
                // KEi in a group this proposal does not name: no exchange if it allows none.
                _ if listed.is_empty() || listed.contains(&None) => return Ok(choice(None)),
                _ => {}
            }
            wanted_group = wanted_group.or_else(|| listed.iter().flatten().find_map(|g| ours(*g)));
        }
    }
    Err(match wanted_group {
        Some(g) => NotifyPayload::invalid_ke_payload(g.id()),
        None => NotifyPayload::new(NotifyType::NoProposalChosen, vec![]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::crypto::Encr;
    use crate::ike::wire::{EsnId, ProtocolId, Transform};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(a: [u8; 4], b: [u8; 4], protocol: u8, ports: (u16, u16)) -> TrafficSelector {
        TrafficSelector::AddrRange {
            ip_protocol: protocol,
            start_port: ports.0,
            end_port: ports.1,
            start_address: Ipv4Addr::from(a).into(),
            end_address: Ipv4Addr::from(b).into(),
        }
    }

    #[test]
    fn intersection_takes_the_narrower_protocol_ports_and_addresses() {
        let any = TrafficSelector::any_ipv4();
        let mh = v4([10, 0, 0, 1], [10, 0, 0, 1], 17, (5436, 5436));
        assert_eq!(intersect(&any, &mh), Some(mh.clone()));
        assert_eq!(intersect(&mh, &any), Some(mh.clone()));
        let net = v4([10, 0, 0, 0], [10, 0, 0, 255], 0, (0, 65535));
        let part = v4([10, 0, 0, 128], [10, 0, 1, 9], 6, (1000, 2000));
        assert_eq!(
            intersect(&net, &part),
            Some(v4([10, 0, 0, 128], [10, 0, 0, 255], 6, (1000, 2000)))
        );
        // Disjoint addresses, protocols, ports; another family; unknown types.
        assert_eq!(
            intersect(&mh, &v4([10, 0, 0, 2], [10, 0, 0, 9], 0, (0, 65535))),
            None
        );
        assert_eq!(
            intersect(&mh, &v4([10, 0, 0, 1], [10, 0, 0, 1], 6, (0, 65535))),
            None
        );
        assert_eq!(
            intersect(&mh, &v4([10, 0, 0, 1], [10, 0, 0, 1], 17, (1, 9))),
            None
        );
        assert_eq!(intersect(&mh, &TrafficSelector::any_ipv6()), None);
        let unknown = TrafficSelector::Unknown {
            ts_type: 13,
            data: vec![],
        };
        assert_eq!(intersect(&unknown, &any), None);
        // IPv6 protocol 135 (the Mobility Header) within everything.
        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mh6 = TrafficSelector::AddrRange {
            ip_protocol: 135,
            start_port: 0,
            end_port: 65535,
            start_address: a.into(),
            end_address: a.into(),
        };
        assert_eq!(intersect(&TrafficSelector::any_ipv6(), &mh6), Some(mh6));
    }

    #[test]
    fn narrowing_keeps_the_initiators_order_and_refuses_outside_policy() {
        let first = v4([10, 0, 0, 7], [10, 0, 0, 7], 17, (5436, 5436));
        let all = TrafficSelector::any_ipv4();
        let policy = vec![v4([10, 0, 0, 0], [10, 0, 0, 255], 17, (5436, 5436))];
        assert_eq!(
            narrow(&[first.clone(), all.clone()], &policy),
            vec![first.clone(), policy[0].clone()]
        );
        assert_eq!(narrow(std::slice::from_ref(&all), &[]), vec![all]);
        assert!(narrow(
            &[v4([192, 0, 2, 1], [192, 0, 2, 1], 0, (0, 65535))],
            &policy
        )
        .is_empty());
        assert_eq!(narrow(&[first.clone(), first.clone()], &[]), vec![first]);
    }

    fn esp(suite: EspSuite, dh: &[DhGroupId]) -> Proposal {
        let mut p = suite.proposal(1, 0x0102_0304);
        p.transforms
            .extend(dh.iter().map(|g| Transform::new(TransformId::Dh(*g))));
        p
    }

    #[test]
    fn a_child_proposal_is_chosen_with_the_ke_group_or_answered_invalid_ke() {
        let gcm = EspSuite {
            encr: Encr::AES_GCM_16_128,
            integ: None,
        };
        let groups = [DhGroup::Ecp256, DhGroup::Curve25519];
        let sa = |dh: &[DhGroupId]| SaPayload {
            proposals: vec![esp(gcm, dh)],
        };
        let ours = [gcm];
        // No PFS asked, none done.
        let c = choose_child(&ours, &groups, &sa(&[]), None).unwrap();
        assert_eq!((c.peer_spi, c.dh), (0x0102_0304, None));
        // KEi in a listed group we do.
        let c = choose_child(
            &ours,
            &groups,
            &sa(&[DhGroupId::Curve25519]),
            Some(DhGroupId::Curve25519),
        )
        .unwrap();
        assert_eq!(c.dh, Some(DhGroup::Curve25519));
        // A group asked, no KEi or KEi in another group: INVALID_KE_PAYLOAD naming it.
        let e = choose_child(&ours, &groups, &sa(&[DhGroupId::Ecp256]), None).unwrap_err();
        assert_eq!(e.accepted_dh_group(), Some(DhGroupId::Ecp256));
        let e = choose_child(
            &ours,
            &groups,
            &sa(&[DhGroupId::Ecp256]),
            Some(DhGroupId::Modp2048),
        )
        .unwrap_err();
        assert_eq!(e.notify_type, NotifyType::InvalidKePayload);
        // NONE listed beside a group: no exchange is fine.
        let c = choose_child(
            &ours,
            &groups,
            &sa(&[DhGroupId::Ecp256, DhGroupId::None]),
            None,
        )
        .unwrap();
        assert_eq!(c.dh, None);
        // Only groups we do not do, or another cipher: NO_PROPOSAL_CHOSEN.
        let e = choose_child(&ours, &groups, &sa(&[DhGroupId::Modp1536]), None).unwrap_err();
        assert_eq!(e.notify_type, NotifyType::NoProposalChosen);
        let cbc = SaPayload {
            proposals: vec![Proposal {
                number: 1,
                protocol_id: ProtocolId::Esp,
                spi: vec![1, 2, 3, 4],
                transforms: vec![
                    Encr::AES_CBC_128.transform(),
                    Transform::new(TransformId::Esn(EsnId::NoEsn)),
                ],
            }],
        };
        let e = choose_child(&ours, &groups, &cbc, None).unwrap_err();
        assert_eq!(e.notify_type, NotifyType::NoProposalChosen);
    }

    #[test]
    fn soft_lifetimes_come_early_by_at_most_the_jitter() {
        let l = Lifetimes {
            child_rekey: Some(Duration::from_secs(100)),
            jitter: Duration::from_secs(10),
            ..Lifetimes::default()
        };
        let now = Instant::now();
        let mut rng = rand::rngs::mock::StepRng::new(0, 0x1234_5678_9abc_def1);
        let mut seen = Vec::new();
        for _ in 0..50 {
            let at = l.soft(l.child_rekey, now, &mut rng).unwrap();
            assert!(at <= now + Duration::from_secs(100));
            assert!(at >= now + Duration::from_secs(90));
            seen.push(at);
        }
        seen.dedup();
        assert!(seen.len() > 10, "jittered, not one fixed time");
        assert_eq!(l.soft(None, now, &mut rng), None);
        assert_eq!(
            Lifetimes::hard(Some(Duration::from_secs(5)), now),
            Some(now + Duration::from_secs(5))
        );
    }
}
