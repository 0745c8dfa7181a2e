//! Per-MAG limits: one MAG cannot take the whole of a pool or of the binding cache, nor
//! create bindings faster than its rate, so another MAG's mobile nodes still get served.
//! RFC 5213 leaves admission to local policy; a refusal is status 130
//! INSUFFICIENT_RESOURCES (section 5.3.2 step 2; for an IPv4 home address with IPv4
//! Home Address Reply status 132, RFC 5844 section 3.2.3.2), like an empty pool.
//!
//! * **Capacity**: the binding cache holds at most `max_bindings` (held chained PBUs
//!   count too).
//! * **Share**: a MAG (one source address) holds at most `share_percent` of
//!   `max_bindings`, of the IPv4 pool and of the prefix pool (at least one of each).
//!   Checked for a new binding, for an address family a re-registration adds, and for a
//!   binding handed off to the MAG (it brings its addresses along).
//! * **Rate**: new bindings (a handoff is not one; a new mobility session replacing one
//!   is) take a token from the MAG's bucket, which holds `burst` tokens and refills at
//!   `new_bindings_per_sec` in the core's virtual time; an empty bucket refuses.
//!
//! A refusal is counted ([`super::Stats`]) and not logged one by one: the refusals of an
//! interval are summed per MAG and reported once, `report_interval` after the first one,
//! as [`super::Output::Limits`] (the driver logs it). The PBA answering each refused PBU
//! is still sent. A filter in `allowed_mags` that covers many addresses trusts each of
//! them as a MAG of its own.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use pmip_common::mh::{BindingAckStatus, Ipv4HomeAddressReplyStatus};

use super::{Lma, Output, Rejection};
use crate::binding_cache::MagUsage;

/// The `[mag_limits]` settings (read and checked by the `config` module's `resolve`).
#[derive(Debug, Clone, PartialEq)]
pub struct MagLimits {
    /// Percent (1 to 100) of each pool and of `max_bindings` one MAG may hold.
    pub share_percent: u8,
    /// Bindings the cache holds at most.
    pub max_bindings: usize,
    /// New bindings per second per MAG (0: no rate limit).
    pub new_bindings_per_sec: u32,
    /// New bindings a MAG may create at once (the bucket's size).
    pub burst: u32,
    /// How long refusals are summed before they are reported.
    pub report_interval: Duration,
}

impl Default for MagLimits {
    /// No share and no rate (one MAG may use everything, as before these limits), a cache
    /// of 2^24 bindings, reports every 10 s.
    fn default() -> Self {
        MagLimits {
            share_percent: 100,
            max_bindings: 1 << 24,
            new_bindings_per_sec: 0,
            burst: 0,
            report_interval: Duration::from_secs(10),
        }
    }
}

/// Why a PBU was refused by the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// The binding cache is full.
    Capacity,
    /// The MAG holds its share of the cache or of a pool.
    Share,
    /// The MAG's bucket of new bindings is empty.
    Rate,
}

/// Refusals of one MAG in one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MagRefusals {
    pub capacity: u64,
    pub share: u64,
    pub rate: u64,
}

/// The refusals of one interval, per MAG (one log line per MAG).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitReport {
    pub interval: Duration,
    pub refusals: Vec<(IpAddr, MagRefusals)>,
}

/// A token bucket in virtual time.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The limits' state: buckets, and the refusals not reported yet.
#[derive(Debug, Default)]
pub(super) struct Limiter {
    buckets: HashMap<IpAddr, Bucket>,
    refused: BTreeMap<IpAddr, MagRefusals>,
    report_at: Option<Instant>,
}

impl Limiter {
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.report_at
    }

    /// Takes a token for `mag`; false when its bucket is empty.
    fn take(&mut self, limits: &MagLimits, mag: IpAddr, now: Instant) -> bool {
        if limits.new_bindings_per_sec == 0 {
            return true;
        }
        let burst = f64::from(limits.burst.max(1));
        let rate = f64::from(limits.new_bindings_per_sec);
        let bucket = self.buckets.entry(mag).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at = now.max(bucket.at);
        if bucket.tokens < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        true
    }

    fn count(&mut self, limits: &MagLimits, mag: IpAddr, kind: LimitKind, now: Instant) {
        let entry = self.refused.entry(mag).or_default();
        match kind {
            LimitKind::Capacity => entry.capacity += 1,
            LimitKind::Share => entry.share += 1,
            LimitKind::Rate => entry.rate += 1,
        }
        self.report_at
            .get_or_insert(now + limits.report_interval.max(Duration::from_millis(1)));
    }

    /// The report due at `now`, if one is; buckets that refilled are dropped then.
    fn report(&mut self, limits: &MagLimits, now: Instant) -> Option<LimitReport> {
        let at = self.report_at.filter(|at| *at <= now)?;
        self.report_at = None;
        let burst = f64::from(limits.burst.max(1));
        let rate = f64::from(limits.new_bindings_per_sec);
        self.buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
        });
        let refusals = std::mem::take(&mut self.refused).into_iter().collect();
        Some(LimitReport {
            interval: limits.report_interval.max(Duration::from_millis(1)) + (now - at),
            refusals,
        })
    }
}

/// `percent` of `total`, at least one.
fn share(total: u64, percent: u8) -> u64 {
    (total * u64::from(percent.min(100)) / 100).max(1)
}

impl Rejection {
    /// A refusal by the limits (status 130; not logged one by one).
    fn limit(kind: LimitKind, ipv4: bool, reason: &'static str) -> Self {
        let mut rejection = if ipv4 {
            Rejection::ipv4(
                BindingAckStatus::InsufficientResources,
                Ipv4HomeAddressReplyStatus::DynamicIpv4HomeAddressAssignmentNotAvailable,
                reason,
            )
        } else {
            Rejection::new(BindingAckStatus::InsufficientResources, reason)
        };
        rejection.limit = Some(kind);
        rejection
    }
}

impl Lma {
    /// Admits a new binding from `mag` (capacity, share of the cache, rate), or refuses
    /// it. `replacing`: it takes the place of one already counted.
    pub(super) fn admit_new(
        &mut self,
        mag: IpAddr,
        replacing: bool,
        now: Instant,
    ) -> Result<(), Rejection> {
        let limits = &self.settings.limits;
        let held = self.cache.len() + self.chain_counts().1;
        if !replacing && held >= limits.max_bindings {
            return Err(Rejection::limit(
                LimitKind::Capacity,
                false,
                "the binding cache is full (mag_limits.max_bindings)",
            ));
        }
        let one = MagUsage {
            bindings: 1,
            ..MagUsage::default()
        };
        self.fits_share(mag, one)?;
        let limits = &self.settings.limits;
        if !self.limiter.take(limits, mag, now) {
            return Err(Rejection::limit(
                LimitKind::Rate,
                false,
                "the MAG creates bindings faster than mag_limits.new_bindings_per_sec",
            ));
        }
        Ok(())
    }

    /// Whether `mag` may hold `more` (bindings, prefixes, IPv4 home addresses) on top of
    /// what it holds: its share of the cache and of each pool.
    pub(super) fn fits_share(&self, mag: IpAddr, more: MagUsage) -> Result<(), Rejection> {
        let percent = self.settings.limits.share_percent;
        if percent >= 100 {
            return Ok(());
        }
        let usage = self.cache.usage(mag);
        // (held, asked for, the whole of it, an IPv4 refusal, why)
        let checks = [
            (
                usage.bindings,
                more.bindings,
                Some(self.settings.limits.max_bindings as u64),
                false,
                "the MAG holds its share of the binding cache (mag_limits.share_percent)",
            ),
            (
                usage.home_network_prefixes,
                more.home_network_prefixes,
                self.prefix_pool.as_ref().map(|p| p.capacity().into()),
                false,
                "the MAG holds its share of ipv6_pool (mag_limits.share_percent)",
            ),
            (
                usage.ipv4_home_addresses,
                more.ipv4_home_addresses,
                self.ipv4_pool.as_ref().map(|p| p.capacity().into()),
                true,
                "the MAG holds its share of ipv4_pool (mag_limits.share_percent)",
            ),
        ];
        for (held, asked, total, ipv4, reason) in checks {
            let Some(total) = total else { continue };
            if asked > 0 && u64::from(held) + u64::from(asked) > share(total, percent) {
                return Err(Rejection::limit(LimitKind::Share, ipv4, reason));
            }
        }
        Ok(())
    }

    /// Counts a refusal by the limits, to be reported with the others of its interval.
    pub(super) fn count_refusal(&mut self, mag: IpAddr, kind: LimitKind, now: Instant) {
        match kind {
            LimitKind::Capacity => self.stats.refused_cache_full += 1,
            LimitKind::Share => self.stats.refused_mag_share += 1,
            LimitKind::Rate => self.stats.refused_mag_rate += 1,
        }
        self.limiter.count(&self.settings.limits, mag, kind, now);
    }

    /// The aggregated report, when its interval is over.
    pub(super) fn limits_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        if let Some(report) = self.limiter.report(&self.settings.limits, now) {
            out.push(Output::Limits(report));
        }
    }

    pub(super) fn limits_poll_timeout(&self) -> Option<Instant> {
        self.limiter.poll_timeout()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refills_in_virtual_time_up_to_its_burst() {
        let limits = MagLimits {
            new_bindings_per_sec: 10,
            burst: 3,
            ..MagLimits::default()
        };
        let mut l = Limiter::default();
        let t0 = Instant::now();
        let mag: IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..3).all(|_| l.take(&limits, mag, t0)));
        assert!(!l.take(&limits, mag, t0));
        // 100 ms later: one token.
        let t1 = t0 + Duration::from_millis(100);
        assert!(l.take(&limits, mag, t1));
        assert!(!l.take(&limits, mag, t1));
        // An hour later: the burst, not more.
        let t2 = t0 + Duration::from_secs(3600);
        assert_eq!((0..10).filter(|_| l.take(&limits, mag, t2)).count(), 3);
        // Another MAG has its own bucket; no rate at all is no limit.
        assert!(l.take(&limits, "192.0.2.2".parse().unwrap(), t2));
        assert!((0..1000).all(|_| l.take(&MagLimits::default(), mag, t2)));
    }

    #[test]
    fn refusals_are_summed_and_reported_once_per_interval() {
        let limits = MagLimits::default();
        let mut l = Limiter::default();
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..1000 {
            l.count(&limits, a, LimitKind::Rate, t0);
        }
        l.count(&limits, a, LimitKind::Share, t0 + Duration::from_secs(1));
        assert_eq!(l.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(l.report(&limits, t0 + Duration::from_secs(9)), None);
        let report = l.report(&limits, t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(
            report.refusals,
            vec![(
                a,
                MagRefusals {
                    capacity: 0,
                    share: 1,
                    rate: 1000
                }
            )]
        );
        assert_eq!(l.poll_timeout(), None);
        assert_eq!(l.report(&limits, t0 + Duration::from_secs(20)), None);
    }

    #[test]
    fn a_share_is_at_least_one() {
        assert_eq!(share(5, 50), 2);
        assert_eq!(share(1, 10), 1);
        assert_eq!(share(1000, 100), 1000);
        assert_eq!(share(1000, 250), 1000);
    }
}
