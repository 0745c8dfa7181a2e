//! RFC 5847 heartbeats between a MAG and an LMA, for either side, sans-IO: which peers
//! are asked, when, what their answers say about them (reachable, unreachable,
//! restarted), and the answers this node owes. The LMA core uses it toward the MAGs it
//! holds bindings for, the MAG's binding update list toward the LMAs it holds bindings
//! at; `P` is the caller's path to a peer (an address and port, or the LMA's
//! `MagAddress`), peers are told apart by IP address.
//!
//! * **Who is asked** (section 3): only peers [`Heartbeats::watch`]ed, i.e. with at least
//!   one binding between the two; the first request when the caller says (the MAG side
//!   at once, so the LMA's restart counter is known before it can restart; the LMA an
//!   interval after a MAG's first binding), then one every HEARTBEAT_INTERVAL. A request is always answered ([`Heartbeats::on_heartbeat`]),
//!   bindings or not, with this node's restart counter (sections 3 and 3.2).
//! * **Failure** (section 3.1): before each request, MISSING_HEARTBEAT grows by one if the
//!   previous request went unanswered; once it exceeds MISSING_HEARTBEATS_ALLOWED the peer
//!   is [`HeartbeatEvent::Unreachable`] (once; requests go on, and the first answer
//!   after that is [`HeartbeatEvent::Reachable`]). An answer resets the count; only the
//!   answer to the last request counts (matched by sequence number).
//! * **Restart** (section 3.2): the Restart Counter option of every response is compared
//!   with the one stored for the peer; a different value is
//!   [`HeartbeatEvent::Restarted`]. The unsolicited response (U and R set), which a
//!   restarted node sends to the peers it had sessions with, is taken the same way (its
//!   sequence number is ignored, it is not answered); as it is only ever sent after a
//!   restart, one from a watched peer whose counter was not known yet is a restart too.
//!   [`Heartbeats::announce_restart`] sends them for this node.
//! * **Not supported** (section 3): a Binding Error with status 2 while a request is
//!   outstanding ends heartbeats toward that peer for as long as it is watched.
//!
//! Stored counters are kept only while a peer is watched (section 3.2: "for all the peer
//! PMIPv6 nodes with which it currently has sessions"); this node's own counter is the
//! caller's to keep across restarts (`lma::restart`, or the MAG's own state).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::mh::{HeartbeatRepr, MobilityOption};
use crate::time::DeadlineQueue;

/// RFC 5847 section 5's configuration variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatSettings {
    /// HEARTBEAT_INTERVAL: the time between two requests to one peer.
    pub interval: Duration,
    /// MISSING_HEARTBEATS_ALLOWED: unanswered requests in a row before the peer counts as
    /// unreachable.
    pub missing_allowed: u32,
}

impl HeartbeatSettings {
    /// RFC 5847 section 5: HEARTBEAT_INTERVAL SHOULD NOT be under 30 s or over 3600 s.
    pub const RECOMMENDED_INTERVAL: std::ops::RangeInclusive<Duration> =
        Duration::from_secs(30)..=Duration::from_secs(3600);
}

impl Default for HeartbeatSettings {
    /// RFC 5847 section 5's defaults: 60 s, 3 missing heartbeats.
    fn default() -> Self {
        HeartbeatSettings {
            interval: Duration::from_secs(60),
            missing_allowed: 3,
        }
    }
}

/// What the caller carries out or acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeartbeatEvent<P> {
    /// Send this Heartbeat message to the peer on path `to`.
    Send { to: P, heartbeat: HeartbeatRepr },
    /// The peer's restart counter changed (or a restart was announced): it lost the
    /// state of its sessions (section 3.2). `confirmed_before` is when the previous
    /// counter was last confirmed by a response: state changed after that moment may be
    /// the restarted peer's own; `None` for an unsolicited response, sent before anything
    /// else after a restart.
    Restarted {
        peer: IpAddr,
        previous: Option<u32>,
        current: u32,
        confirmed_before: Option<Instant>,
    },
    /// MISSING_HEARTBEATS_ALLOWED exceeded (section 3.1).
    Unreachable { peer: IpAddr, missed: u32 },
    /// The first answer after [`HeartbeatEvent::Unreachable`].
    Reachable { peer: IpAddr },
    /// The peer does not know Heartbeat messages (Binding Error status 2): no more
    /// requests to it while it is watched.
    Unsupported { peer: IpAddr },
}

/// Counters for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeartbeatStats {
    pub requests_sent: u64,
    pub responses_sent: u64,
    pub responses_received: u64,
    /// Responses that answered no outstanding request (late, duplicated, stray).
    pub responses_unmatched: u64,
    pub unsolicited_sent: u64,
    pub restarts_detected: u64,
}

#[derive(Debug)]
struct Peer<P> {
    path: P,
    /// The restart counter last received, and when a response last carried it.
    counter: Option<u32>,
    confirmed_at: Option<Instant>,
    /// The sequence number of the request still unanswered, if any.
    outstanding: Option<u32>,
    missing: u32,
    unreachable: bool,
    unsupported: bool,
    next: Instant,
}

/// The heartbeat state toward every watched peer.
#[derive(Debug)]
pub struct Heartbeats<P> {
    settings: HeartbeatSettings,
    restart_counter: u32,
    peers: HashMap<IpAddr, Peer<P>>,
    deadlines: DeadlineQueue<IpAddr>,
    next_sequence: u32,
    stats: HeartbeatStats,
}

impl<P: Copy> Heartbeats<P> {
    /// `restart_counter` is this node's own (sent in every response).
    pub fn new(settings: HeartbeatSettings, restart_counter: u32) -> Self {
        // A zero interval would send requests in a loop at one instant.
        let settings = HeartbeatSettings {
            interval: settings.interval.max(Duration::from_millis(1)),
            ..settings
        };
        Heartbeats {
            settings,
            restart_counter,
            peers: HashMap::new(),
            deadlines: DeadlineQueue::new(),
            next_sequence: 0,
            stats: HeartbeatStats::default(),
        }
    }

    pub fn settings(&self) -> HeartbeatSettings {
        self.settings
    }

    pub fn restart_counter(&self) -> u32 {
        self.restart_counter
    }

    pub fn stats(&self) -> HeartbeatStats {
        self.stats
    }

    /// Whether `peer` is watched.
    pub fn is_watched(&self, peer: IpAddr) -> bool {
        self.peers.contains_key(&peer)
    }

    /// The restart counter last heard from `peer`.
    pub fn peer_counter(&self, peer: IpAddr) -> Option<u32> {
        self.peers.get(&peer).and_then(|p| p.counter)
    }

    /// Whether `peer` is watched and counted as unreachable.
    pub fn is_unreachable(&self, peer: IpAddr) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.unreachable)
    }

    /// Watched peers.
    pub fn peers(&self) -> impl Iterator<Item = (IpAddr, P)> + '_ {
        self.peers.iter().map(|(ip, p)| (*ip, p.path))
    }

    /// Starts asking `peer` (on `path`) if it is not asked yet, the first request at
    /// `first` (at once, to learn the peer's counter early; or an interval on, so a
    /// short-lived binding costs nothing). A watched peer's path is updated.
    pub fn watch(&mut self, peer: IpAddr, path: P, first: Instant) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.path = path;
            return;
        }
        self.peers.insert(
            peer,
            Peer {
                path,
                counter: None,
                confirmed_at: None,
                outstanding: None,
                missing: 0,
                unreachable: false,
                unsupported: false,
                next: first,
            },
        );
        self.deadlines.push(first, peer);
    }

    /// Stops asking `peer` and forgets its counter (no binding left between the two).
    pub fn unwatch(&mut self, peer: IpAddr) {
        self.peers.remove(&peer);
    }

    /// The next request due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.peek().map(|(at, _)| at)
    }

    /// Sends the requests due at `now`, counting the unanswered ones (section 3.1).
    pub fn on_timeout(&mut self, now: Instant, out: &mut Vec<HeartbeatEvent<P>>) {
        while let Some((at, ip)) = self.deadlines.pop_due(now) {
            let sequence = self.next_sequence;
            let Some(peer) = self.peers.get_mut(&ip) else {
                continue;
            };
            if peer.next != at || peer.unsupported {
                continue;
            }
            if peer.outstanding.is_some() {
                peer.missing += 1;
                if peer.missing > self.settings.missing_allowed && !peer.unreachable {
                    peer.unreachable = true;
                    out.push(HeartbeatEvent::Unreachable {
                        peer: ip,
                        missed: peer.missing,
                    });
                }
            }
            self.next_sequence = self.next_sequence.wrapping_add(1);
            peer.outstanding = Some(sequence);
            peer.next = now + self.settings.interval;
            self.deadlines.push(peer.next, ip);
            self.stats.requests_sent += 1;
            out.push(HeartbeatEvent::Send {
                to: peer.path,
                heartbeat: HeartbeatRepr {
                    unsolicited: false,
                    response: false,
                    sequence,
                    options: Vec::new(),
                },
            });
        }
        // An unwatched peer's deadline is skipped above; drop such leftovers at the front.
        let peers = &self.peers;
        self.deadlines
            .prune_front(|at, ip| peers.get(&ip).is_none_or(|p| p.next != at));
    }

    /// A Heartbeat message from `peer` on `path`: a request is answered, a response
    /// matched and its restart counter compared.
    pub fn on_heartbeat(
        &mut self,
        peer: IpAddr,
        path: P,
        heartbeat: &HeartbeatRepr,
        now: Instant,
        out: &mut Vec<HeartbeatEvent<P>>,
    ) {
        if !heartbeat.response {
            self.stats.responses_sent += 1;
            out.push(HeartbeatEvent::Send {
                to: path,
                heartbeat: self.response(false, heartbeat.sequence),
            });
            return;
        }
        self.stats.responses_received += 1;
        let counter = heartbeat.options.iter().find_map(|o| match o {
            MobilityOption::RestartCounter(c) => Some(*c),
            _ => None,
        });
        let Some(state) = self.peers.get_mut(&peer) else {
            // Nobody watched: nothing is stored, nothing to clean up.
            return;
        };
        if !heartbeat.unsolicited {
            if state.outstanding != Some(heartbeat.sequence) {
                self.stats.responses_unmatched += 1;
                return;
            }
            state.outstanding = None;
            state.missing = 0;
            if state.unreachable {
                state.unreachable = false;
                out.push(HeartbeatEvent::Reachable { peer });
            }
        }
        let Some(current) = counter else {
            return;
        };
        let previous = state.counter;
        let restarted = match previous {
            Some(p) => p != current,
            // Only a restarted node sends the unsolicited response.
            None => heartbeat.unsolicited,
        };
        let confirmed_before = state.confirmed_at.filter(|_| !heartbeat.unsolicited);
        state.counter = Some(current);
        state.confirmed_at = Some(now);
        if restarted {
            self.stats.restarts_detected += 1;
            out.push(HeartbeatEvent::Restarted {
                peer,
                previous,
                current,
                confirmed_before,
            });
        }
    }

    /// A Binding Error from `peer`: status 2 (unrecognized MH type) in answer to a
    /// request ends heartbeats toward it (RFC 5847 section 3).
    pub fn on_binding_error(
        &mut self,
        peer: IpAddr,
        status: crate::mh::BindingErrorStatus,
        out: &mut Vec<HeartbeatEvent<P>>,
    ) {
        if status != crate::mh::BindingErrorStatus::UnrecognizedMhType {
            return;
        }
        if let Some(state) = self.peers.get_mut(&peer) {
            if state.outstanding.take().is_some() && !state.unsupported {
                state.unsupported = true;
                out.push(HeartbeatEvent::Unsupported { peer });
            }
        }
    }

    /// The unsolicited Heartbeat Responses a restarted node sends to the peers it had
    /// sessions with (RFC 5847 section 3.2): U and R set, the new counter, sequence 0.
    pub fn announce_restart(
        &mut self,
        peers: impl IntoIterator<Item = P>,
        out: &mut Vec<HeartbeatEvent<P>>,
    ) {
        for to in peers {
            self.stats.unsolicited_sent += 1;
            out.push(HeartbeatEvent::Send {
                to,
                heartbeat: self.response(true, 0),
            });
        }
    }

    fn response(&self, unsolicited: bool, sequence: u32) -> HeartbeatRepr {
        HeartbeatRepr {
            unsolicited,
            response: true,
            sequence,
            options: vec![MobilityOption::RestartCounter(self.restart_counter)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mh::BindingErrorStatus;
    use std::net::Ipv4Addr;

    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));

    fn sent(out: &[HeartbeatEvent<u8>]) -> Vec<HeartbeatRepr> {
        out.iter()
            .filter_map(|e| match e {
                HeartbeatEvent::Send { heartbeat, .. } => Some(heartbeat.clone()),
                _ => None,
            })
            .collect()
    }

    fn response(sequence: u32, counter: u32) -> HeartbeatRepr {
        HeartbeatRepr {
            unsolicited: false,
            response: true,
            sequence,
            options: vec![MobilityOption::RestartCounter(counter)],
        }
    }

    #[test]
    fn requests_every_interval_and_a_new_counter_is_a_restart() {
        let t0 = Instant::now();
        let mut hb = Heartbeats::new(HeartbeatSettings::default(), 7);
        let mut out = Vec::new();
        hb.watch(PEER, 1u8, t0);
        assert_eq!(hb.poll_timeout(), Some(t0));
        hb.on_timeout(t0, &mut out);
        let first = sent(&out).remove(0);
        assert!(!first.response && !first.unsolicited);
        out.clear();
        hb.on_heartbeat(PEER, 1, &response(first.sequence, 40), t0, &mut out);
        assert!(out.is_empty(), "the first counter is only stored: {out:?}");
        assert_eq!(hb.peer_counter(PEER), Some(40));
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(hb.poll_timeout(), Some(t1));
        hb.on_timeout(t1, &mut out);
        let second = sent(&out).remove(0);
        assert_ne!(second.sequence, first.sequence);
        out.clear();
        // A late answer to the first request does not count.
        hb.on_heartbeat(PEER, 1, &response(first.sequence, 41), t1, &mut out);
        assert!(out.is_empty());
        assert_eq!(hb.stats().responses_unmatched, 1);
        hb.on_heartbeat(PEER, 1, &response(second.sequence, 41), t1, &mut out);
        assert_eq!(
            out,
            vec![HeartbeatEvent::Restarted {
                peer: PEER,
                previous: Some(40),
                current: 41,
                confirmed_before: Some(t0),
            }]
        );
    }

    #[test]
    fn unreachable_after_the_allowed_misses_then_reachable_again() {
        let t0 = Instant::now();
        let settings = HeartbeatSettings::default();
        let mut hb = Heartbeats::new(settings, 1);
        let mut out = Vec::new();
        hb.watch(PEER, 1u8, t0);
        let mut at = t0;
        // Requests at 0, 60, 120, 180 unanswered: at 240 the fourth miss exceeds 3.
        for _ in 0..4 {
            hb.on_timeout(at, &mut out);
            assert!(
                !out.iter()
                    .any(|e| matches!(e, HeartbeatEvent::Unreachable { .. })),
                "{out:?}"
            );
            out.clear();
            at += settings.interval;
        }
        hb.on_timeout(at, &mut out);
        assert!(out.contains(&HeartbeatEvent::Unreachable {
            peer: PEER,
            missed: 4
        }));
        assert!(hb.is_unreachable(PEER));
        let last = sent(&out).remove(0);
        out.clear();
        // Reported once, requests go on.
        hb.on_timeout(at + settings.interval, &mut out);
        assert_eq!(sent(&out).len(), 1);
        assert_eq!(out.len(), 1);
        let latest = sent(&out).remove(0);
        out.clear();
        hb.on_heartbeat(PEER, 1, &response(last.sequence, 5), at, &mut out);
        assert!(out.is_empty(), "only the last request's answer counts");
        hb.on_heartbeat(PEER, 1, &response(latest.sequence, 5), at, &mut out);
        assert_eq!(out, vec![HeartbeatEvent::Reachable { peer: PEER }]);
    }

    #[test]
    fn requests_are_answered_with_the_own_counter_and_restarts_announced() {
        let t0 = Instant::now();
        let mut hb: Heartbeats<u8> = Heartbeats::new(HeartbeatSettings::default(), 77);
        let mut out = Vec::new();
        let request = HeartbeatRepr {
            unsolicited: false,
            response: false,
            sequence: 0xdead_beef,
            options: Vec::new(),
        };
        // Answered without any binding (section 3: irrespective of a cache entry).
        hb.on_heartbeat(PEER, 3, &request, t0, &mut out);
        assert_eq!(
            out,
            vec![HeartbeatEvent::Send {
                to: 3,
                heartbeat: response(0xdead_beef, 77)
            }]
        );
        out.clear();
        hb.announce_restart([4, 5], &mut out);
        let announced = sent(&out);
        assert_eq!(announced.len(), 2);
        assert!(announced.iter().all(|h| h.unsolicited && h.response));
        assert_eq!(
            announced[0].options,
            vec![MobilityOption::RestartCounter(77)]
        );
    }

    #[test]
    fn an_unsolicited_response_is_a_restart_and_binding_error_2_stops_requests() {
        let t0 = Instant::now();
        let mut hb = Heartbeats::new(HeartbeatSettings::default(), 1);
        let mut out = Vec::new();
        let unsolicited = HeartbeatRepr {
            unsolicited: true,
            ..response(0, 9)
        };
        // From a peer nobody watches: nothing.
        hb.on_heartbeat(PEER, 1u8, &unsolicited, t0, &mut out);
        assert!(out.is_empty());
        hb.watch(PEER, 1, t0);
        hb.on_heartbeat(PEER, 1, &unsolicited, t0, &mut out);
        assert_eq!(
            out,
            vec![HeartbeatEvent::Restarted {
                peer: PEER,
                previous: None,
                current: 9,
                confirmed_before: None,
            }]
        );
        out.clear();
        // The same announcement again (a duplicate) changes nothing.
        hb.on_heartbeat(PEER, 1, &unsolicited, t0, &mut out);
        assert!(out.is_empty());
        hb.on_timeout(t0, &mut out);
        out.clear();
        hb.on_binding_error(PEER, BindingErrorStatus::UnrecognizedMhType, &mut out);
        assert_eq!(out, vec![HeartbeatEvent::Unsupported { peer: PEER }]);
        out.clear();
        hb.on_timeout(t0 + Duration::from_secs(600), &mut out);
        assert!(out.is_empty(), "{out:?}");
        // Unwatched: forgotten, the leftover deadline is skipped.
        hb.unwatch(PEER);
        assert_eq!(hb.peer_counter(PEER), None);
    }
}
