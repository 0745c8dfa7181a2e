//! The log of rejected Proxy Binding Updates, aggregated per source and interval so that a
//! flood of bad PBUs cannot fill the disk, sans-IO: the driver feeds it the core's
//! rejected [`PbuReport`](crate::PbuReport)s with `now` and asks [`RejectLog::poll_timeout`].
//!
//! The first reject from a source (a MAG address) opens an interval for that source and
//! is logged at once, in full, so that an operator bringing up a new MAG sees why its
//! first PBU failed ([`Verdict::LogNow`]). The others in that interval are only counted
//! ([`Verdict::Counted`]); when the interval ends, one [`RejectSummary`] line tells how
//! many PBUs the source had rejected in it and with which statuses (RFC 5213 section
//! 8.9, RFC 5844 section 8), and the next reject opens a new interval. A source with a
//! single reject in its interval gets no summary: its line said it all.
//!
//! At most `max_sources` sources are followed at once (the memory and the lines of an
//! interval stay bounded however many addresses a flood comes from, IPv6 sources being
//! cheap to vary); the rejects of any further source share one interval, reported as
//! from "other sources", whose first reject is logged at once too. So an interval logs
//! at most `2 * (max_sources + 1)` lines.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How often a source's rejects are summed up, by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Sources followed at once, by default.
pub const DEFAULT_MAX_SOURCES: usize = 1024;

/// What to do with one rejected PBU's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The first reject of its source in an interval: log its line now.
    LogNow,
    /// Counted in the source's summary at the end of the interval.
    Counted,
}

/// Where rejected PBUs came from, as a summary names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectSource {
    /// One MAG address (IPv4-mapped IPv6 addresses count as IPv4).
    Mag(IpAddr),
    /// Any source beyond the `max_sources` followed at once.
    Others,
}

impl fmt::Display for RejectSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectSource::Mag(address) => write!(f, "{address}"),
            RejectSource::Others => f.write_str("other sources"),
        }
    }
}

/// One source's rejects over one interval (one log line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectSummary {
    pub source: RejectSource,
    /// PBUs rejected in the interval, the first one (logged on its own) included.
    pub rejected: u64,
    /// How many of them got each Binding Acknowledgement status, by status.
    pub statuses: BTreeMap<u8, u64>,
    /// The interval's length.
    pub interval: Duration,
}

impl RejectSummary {
    /// The statuses as `154 x3, 160 x2`.
    pub fn statuses_text(&self) -> String {
        let parts: Vec<String> = self
            .statuses
            .iter()
            .map(|(status, n)| format!("{status} x{n}"))
            .collect();
        parts.join(", ")
    }
}

impl fmt::Display for RejectSummary {
    /// `5 PBUs rejected from 192.0.2.1 in the last 10 s: status 154 x3, 160 x2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} PBUs rejected from {} in the last {} s: status {}",
            self.rejected,
            self.source,
            self.interval.as_secs_f64(),
            self.statuses_text()
        )
    }
}

/// One source's open interval.
#[derive(Debug)]
struct Window {
    rejected: u64,
    statuses: BTreeMap<u8, u64>,
}

/// The aggregator: open intervals per source and their ends.
#[derive(Debug)]
pub struct RejectLog {
    interval: Duration,
    max_sources: usize,
    windows: HashMap<RejectSource, Window>,
    /// When each open interval ends, in the order they opened: every interval has the
    /// same length, so this is also the order of their ends.
    ends: VecDeque<(Instant, RejectSource)>,
}

impl Default for RejectLog {
    fn default() -> Self {
        RejectLog::new(DEFAULT_INTERVAL, DEFAULT_MAX_SOURCES)
    }
}

impl RejectLog {
    /// Sums up each source's rejects over `interval` (at least 1 ms), following at most
    /// `max_sources` sources at once.
    pub fn new(interval: Duration, max_sources: usize) -> Self {
        RejectLog {
            interval: interval.max(Duration::from_millis(1)),
            max_sources,
            windows: HashMap::new(),
            ends: VecDeque::new(),
        }
    }

    /// Counts one PBU from `source` rejected with `status` at `now`, and says whether to
    /// log its line now.
    pub fn record(&mut self, source: IpAddr, status: u8, now: Instant) -> Verdict {
        let source = match source {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(source, IpAddr::V4),
            v4 => v4,
        };
        let mut key = RejectSource::Mag(source);
        if !self.windows.contains_key(&key) && self.followed() >= self.max_sources {
            key = RejectSource::Others;
        }
        let mut verdict = Verdict::Counted;
        let window = self.windows.entry(key).or_insert_with(|| {
            verdict = Verdict::LogNow;
            Window {
                rejected: 0,
                statuses: BTreeMap::new(),
            }
        });
        window.rejected += 1;
        *window.statuses.entry(status).or_default() += 1;
        if verdict == Verdict::LogNow {
            self.ends.push_back((now + self.interval, key));
        }
        verdict
    }

    /// Sources with an open interval (the shared one of the others not counted).
    fn followed(&self) -> usize {
        self.windows.len() - usize::from(self.windows.contains_key(&RejectSource::Others))
    }

    /// When the next interval ends.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ends.front().map(|(end, _)| *end)
    }

    /// Closes every interval ended by `now`; one summary each for the sources with more
    /// rejects than the one logged at once.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<RejectSummary>) {
        while let Some(&(end, source)) = self.ends.front() {
            if end > now {
                break;
            }
            self.ends.pop_front();
            let Some(window) = self.windows.remove(&source) else {
                continue;
            };
            if window.rejected > 1 {
                out.push(RejectSummary {
                    source,
                    rejected: window.rejected,
                    statuses: window.statuses,
                    interval: self.interval,
                });
            }
        }
        if self.windows.is_empty() {
            // Give back the memory a flood from many sources took.
            self.windows.shrink_to(0);
            self.ends.shrink_to(0);
        }
    }

    /// Sources with an open interval, the others' shared one included.
    pub fn open_intervals(&self) -> usize {
        self.windows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn addr(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn the_first_reject_is_logged_at_once_and_the_rest_summed_per_interval() {
        let t0 = Instant::now();
        let mut log = RejectLog::new(10 * SECOND, 16);
        assert_eq!(log.poll_timeout(), None);
        assert_eq!(log.record(addr(1), 154, t0), Verdict::LogNow);
        for n in 1..5u32 {
            let status = if n < 3 { 154 } else { 160 };
            assert_eq!(
                log.record(addr(1), status, t0 + n * SECOND),
                Verdict::Counted
            );
        }
        // Another MAG is a newcomer of its own: logged at once.
        assert_eq!(log.record(addr(2), 153, t0 + 2 * SECOND), Verdict::LogNow);
        assert_eq!(log.poll_timeout(), Some(t0 + 10 * SECOND));
        let mut out = Vec::new();
        log.handle_timeout(t0 + 10 * SECOND - Duration::from_nanos(1), &mut out);
        assert!(out.is_empty(), "not before the interval ends");
        log.handle_timeout(t0 + 10 * SECOND, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].to_string(),
            "5 PBUs rejected from 192.0.2.1 in the last 10 s: status 154 x3, 160 x2"
        );
        // The second MAG's single reject was its own line: no summary at t0 + 12 s.
        assert_eq!(log.poll_timeout(), Some(t0 + 12 * SECOND));
        out.clear();
        log.handle_timeout(t0 + 12 * SECOND, &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(log.poll_timeout(), None);
        assert_eq!(log.open_intervals(), 0);
        // The next reject from the first MAG opens a new interval: logged at once again.
        assert_eq!(log.record(addr(1), 154, t0 + 13 * SECOND), Verdict::LogNow);
        assert_eq!(log.poll_timeout(), Some(t0 + 23 * SECOND));
    }

    #[test]
    fn a_steady_flood_logs_two_lines_per_interval() {
        let t0 = Instant::now();
        let mut log = RejectLog::new(10 * SECOND, 16);
        let mut lines = 0;
        let mut summaries = Vec::new();
        // 1000 rejects a second for 60 s of virtual time.
        for ms in 0..60_000u64 {
            let now = t0 + Duration::from_millis(ms);
            log.handle_timeout(now, &mut summaries);
            if log.record(addr(9), 154, now) == Verdict::LogNow {
                lines += 1;
            }
        }
        log.handle_timeout(t0 + 70 * SECOND, &mut summaries);
        assert_eq!(lines, 6);
        assert_eq!(summaries.len(), 6);
        assert_eq!(summaries.iter().map(|s| s.rejected).sum::<u64>(), 60_000);
        assert!(
            summaries.iter().all(|s| s.rejected == 10_000),
            "{summaries:?}"
        );
    }

    #[test]
    fn sources_beyond_the_limit_share_one_interval() {
        let t0 = Instant::now();
        let mut log = RejectLog::new(SECOND, 4);
        let mut now_logged = 0;
        for n in 0..200u8 {
            if log.record(addr(n), 154, t0) == Verdict::LogNow {
                now_logged += 1;
            }
            // An IPv4-mapped IPv6 source is the same MAG as its IPv4 address.
            let mapped = match addr(n) {
                IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
                v6 => v6,
            };
            assert_eq!(log.record(mapped, 160, t0), Verdict::Counted);
        }
        assert_eq!(now_logged, 5, "four sources and the others");
        assert_eq!(log.open_intervals(), 5);
        let mut out = Vec::new();
        log.handle_timeout(t0 + SECOND, &mut out);
        assert_eq!(out.len(), 5);
        let others = out
            .iter()
            .find(|s| s.source == RejectSource::Others)
            .expect("a summary of the other sources");
        assert_eq!(others.rejected, 2 * 196);
        assert!(
            others.to_string().contains("from other sources"),
            "{others}"
        );
        assert_eq!(out.iter().map(|s| s.rejected).sum::<u64>(), 400);
        assert_eq!(log.open_intervals(), 0);
    }
}
