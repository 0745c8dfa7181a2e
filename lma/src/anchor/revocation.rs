//! Binding Revocation (RFC 5846) at the LMA, both ways: the Binding Revocation Indication
//! a MAG sends is answered with a Binding Revocation Acknowledgement (section 8.2), and a
//! MAG that lost a binding is told with an indication of the LMA's own (section 8.1),
//! retransmitted until acknowledged or given up (sections 6.3 and 11).
//!
//! **Indications from a MAG** (section 8.2, checked in this order; one BRA each, never
//! silence, except that one from a MAG outside `allowed_mags` is discarded without an
//! answer as section 6.2 asks of a message not protected like the binding signaling):
//!
//! 1. The trigger: a value neither registry lists (8 to 127, 130 to 255) is 133
//!    REVOCATION_TRIGGER_NOT_SUPPORTED; a per-MN trigger with G set, or a global one
//!    without, is 134 REVOCATION_FUNCTION_NOT_SUPPORTED (section 6.2.1); the global
//!    trigger "Revoking Mobility Node Local Policy" is the LMA's to send, not a MAG's:
//!    133.
//! 2. P clear asks about Mobile IPv6 bindings, which this LMA does not hold: 128
//!    BINDING_DOES_NOT_EXIST.
//! 3. G set ("Per-Peer Policy"): without an MN-ID option (the MAG's identity), or from a
//!    MAG outside `revocation.global_mags`, 130 GLOBAL_REVOCATION_NOT_AUTHORIZED;
//!    otherwise every binding whose proxy care-of address is the sender's goes, and the
//!    answer is 0.
//! 4. Per MN: no MN-ID is 131 REVOKED_MOBILE_NODES_IDENTITY_REQUIRED. The bindings of that
//!    NAI held by the sending MAG (a MAG revokes only what it holds) are the candidates:
//!    with Home Network Prefix options, those holding one of them (0, or 1 PARTIAL_SUCCESS
//!    naming the prefixes not found); with V set, only the IPv4 home address named by the
//!    IPv4 Home Address Request option is released and the binding stays (129
//!    IPV4_HOME_ADDRESS_OPTION_REQUIRED without it; 134 for a chained binding, whose
//!    address is the home gateway's); with neither, all of them. None found: 128.
//!
//! Revoked bindings go as a de-registration would (addresses back to the pools, the data
//! plane told, a chained binding de-registered at home). The answer mirrors P, V and G
//! and the sequence number.
//!
//! **Indications to a MAG** (section 8.1): P set; MN-ID with the binding's NAI; its Home
//! Network Prefix when it has one (section 5.1: present when one binding is revoked);
//! and the Service Selection option with its APN, since a binding here is one (NAI, APN)
//! PDN connection (TS 29.275) and an IPv4-only binding has no prefix to tell it from the
//! node's others (section 5.1: a receiver skips options it does not use). Sent to the path
//! of the PBU that last updated the binding (section 4: same addresses and ports). The
//! sequence number is one no outstanding indication uses. Without an acknowledgement
//! the same octets are sent again after `initial_timeout` (InitMINDelayBRIs, 1 s),
//! doubling up to `max_timeout` (MAX_BRACK_TIMEOUT, 2 s), `max_retries` times
//! (BRIMaxRetriesNumber, 1); then the LMA gives up and forgets it. An acknowledgement is
//! taken only from the MAG it was sent to and only for an outstanding sequence number;
//! others are discarded (section 6.2.2) and counted as ignored. What the LMA does with
//! the answer is the takeover module's (a handoff with state unknown waits for it).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::Ipv6Net;
use pmip_common::mh::{
    BindingRevocationRepr, BindingRevocationType, MobileNodeIdentifier, MobilityMessage,
    MobilityOption,
};
use pmip_common::time::DeadlineQueue;

use super::MagFilter;
use crate::binding_cache::BindingId;
use crate::transport::MagAddress;

use super::{DownReason, Lma, Output};

/// The RFC 5846 registries, from the codec: Revocation Trigger (section 5.1) and the
/// Binding Revocation Acknowledgement status (section 5.2).
pub use pmip_common::mh::{BindingRevocationStatus as RevocationStatus, RevocationTrigger};

/// RFC 5846 section 11's variables, and who may revoke globally (section 8.2).
#[derive(Debug, Clone, PartialEq)]
pub struct RevocationSettings {
    /// InitMINDelayBRIs: the first wait for an acknowledgement (at least 0.5 s).
    pub initial_timeout: Duration,
    /// MAX_BRACK_TIMEOUT: the longest wait; the wait doubles up to it.
    pub max_timeout: Duration,
    /// BRIMaxRetriesNumber: retransmissions before giving up.
    pub max_retries: u32,
    /// MAGs allowed to revoke every binding they hold at once (G bit, "Per-Peer Policy").
    pub global_mags: Vec<MagFilter>,
}

impl Default for RevocationSettings {
    fn default() -> Self {
        RevocationSettings {
            initial_timeout: Duration::from_secs(1),
            max_timeout: Duration::from_secs(2),
            max_retries: 1,
            global_mags: Vec::new(),
        }
    }
}

/// What happened to a revocation (one log line each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationEvent {
    /// The LMA sent an indication to a MAG that lost (or may have lost) a binding.
    Sent(RevocationTrigger),
    /// The MAG acknowledged the LMA's indication with this status.
    Acknowledged(RevocationStatus),
    /// No acknowledgement after every retransmission: given up.
    TimedOut,
    /// No sequence number was free: the indication was not sent.
    NotSent,
    /// A MAG's indication was answered with this status, revoking this many bindings.
    Answered {
        trigger: RevocationTrigger,
        status: RevocationStatus,
        revoked: usize,
    },
}

/// One [`RevocationEvent`] as the log line reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationReport {
    pub mag: MagAddress,
    pub sequence: u16,
    /// The NAI concerned (of the binding revoked, or the one the MAG named).
    pub mn_id: Option<String>,
    pub apn: Option<String>,
    pub event: RevocationEvent,
}

/// Why an indication to a MAG waits (the takeover module acts on the answer).
#[derive(Debug)]
pub(super) enum Purpose {
    /// The binding already moved or was replaced: the MAG is only told.
    Notify,
    /// A handoff with state unknown (Handoff Indicator 4) waits for the answer.
    AwaitHandoff(Box<super::takeover::HeldHandoff>),
    /// Addresses held back until the MAG has been told (the restoration module): released
    /// when it answers or is given up.
    Release(Vec<u64>),
}

/// An indication waiting for its acknowledgement.
#[derive(Debug)]
pub(super) struct Outstanding {
    pub to: MagAddress,
    pub binding: BindingId,
    pub mn_id: String,
    pub apn: Option<String>,
    bytes: Vec<u8>,
    retries_left: u32,
    timeout: Duration,
    next: Instant,
    pub purpose: Purpose,
}

/// The outstanding indications of the LMA, by sequence number.
#[derive(Debug, Default)]
pub(super) struct Revocations {
    outstanding: HashMap<u16, Outstanding>,
    by_binding: HashMap<BindingId, Vec<u16>>,
    deadlines: DeadlineQueue<u16>,
    next_sequence: u16,
}

impl Revocations {
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.peek().map(|(at, _)| at)
    }

    pub fn len(&self) -> usize {
        self.outstanding.len()
    }

    /// The sequence number of the indication awaiting a handoff of `binding`, if any.
    pub fn awaiting(&self, binding: BindingId) -> Option<u16> {
        self.by_binding.get(&binding)?.iter().copied().find(|s| {
            self.outstanding
                .get(s)
                .is_some_and(|o| matches!(o.purpose, Purpose::AwaitHandoff(_)))
        })
    }

    pub fn get_mut(&mut self, sequence: u16) -> Option<&mut Outstanding> {
        self.outstanding.get_mut(&sequence)
    }

    pub(super) fn free_sequence(&mut self) -> Option<u16> {
        for _ in 0..=u16::MAX {
            let s = self.next_sequence;
            self.next_sequence = self.next_sequence.wrapping_add(1);
            if !self.outstanding.contains_key(&s) {
                return Some(s);
            }
        }
        None
    }

    /// Waits for the acknowledgement of the indication `bytes` just sent (section 11).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn track(
        &mut self,
        sequence: u16,
        to: MagAddress,
        binding: BindingId,
        mn_id: String,
        apn: Option<String>,
        bytes: Vec<u8>,
        settings: &RevocationSettings,
        purpose: Purpose,
        now: Instant,
    ) {
        let next = now + settings.initial_timeout;
        self.outstanding.insert(
            sequence,
            Outstanding {
                to,
                binding,
                mn_id,
                apn,
                bytes,
                retries_left: settings.max_retries,
                timeout: settings.initial_timeout,
                next,
                purpose,
            },
        );
        self.by_binding.entry(binding).or_default().push(sequence);
        self.deadlines.push(next, sequence);
    }

    /// Removes and returns an outstanding indication.
    pub fn take(&mut self, sequence: u16) -> Option<Outstanding> {
        let o = self.outstanding.remove(&sequence)?;
        if let Some(list) = self.by_binding.get_mut(&o.binding) {
            list.retain(|s| *s != sequence);
            if list.is_empty() {
                self.by_binding.remove(&o.binding);
            }
        }
        Some(o)
    }

    /// The indications for `binding` sent to `mag`: when the binding comes back to that
    /// MAG they must not take it away again.
    pub fn to_mag_for(&self, binding: BindingId, mag: IpAddr) -> Vec<u16> {
        self.by_binding
            .get(&binding)
            .map(|list| {
                list.iter()
                    .copied()
                    .filter(|s| self.outstanding.get(s).is_some_and(|o| o.to.ip() == mag))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Pops the next indication due at `now`: `Ok` to send again, `Err` given up.
    fn pop_due(
        &mut self,
        now: Instant,
        max: Duration,
    ) -> Option<Result<(MagAddress, Vec<u8>), u16>> {
        while let Some((at, sequence)) = self.deadlines.pop_due(now) {
            let Some(o) = self.outstanding.get_mut(&sequence) else {
                continue;
            };
            if o.next != at {
                continue;
            }
            if o.retries_left == 0 {
                return Some(Err(sequence));
            }
            o.retries_left -= 1;
            o.timeout = (o.timeout * 2).min(max);
            o.next = now + o.timeout;
            let (to, bytes, next) = (o.to, o.bytes.clone(), o.next);
            self.deadlines.push(next, sequence);
            return Some(Ok((to, bytes)));
        }
        None
    }
}

/// The indication the LMA sends (module doc).
fn indication(
    sequence: u16,
    trigger: RevocationTrigger,
    mn_id: &str,
    apn: Option<&str>,
    prefix: Option<Ipv6Net>,
) -> BindingRevocationRepr {
    let mut options = vec![MobilityOption::MobileNodeIdentifier(
        MobileNodeIdentifier::Nai(mn_id.to_string()),
    )];
    options.extend(prefix.map(MobilityOption::HomeNetworkPrefix));
    options.extend(apn.map(|a| MobilityOption::ServiceSelection(a.to_string())));
    BindingRevocationRepr {
        revocation_type: BindingRevocationType::Indication,
        trigger_or_status: trigger.into(),
        sequence,
        flags: BindingRevocationRepr::PROXY,
        options,
    }
}

/// Known per-MN triggers (below 128) and global ones.
fn trigger_known(trigger: RevocationTrigger) -> bool {
    !matches!(trigger, RevocationTrigger::Unknown(_))
}

impl Lma {
    /// Tells the MAG at `to` that the binding `id` (as it is now, or was just before it
    /// moved) is no longer its own (RFC 5846 section 8.1).
    pub(super) fn revoke(
        &mut self,
        id: BindingId,
        to: MagAddress,
        trigger: RevocationTrigger,
        purpose: Purpose,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Result<u16, Purpose> {
        let Some(entry) = self.cache.get(id) else {
            return Err(purpose);
        };
        let mn_id = entry.mn_id().to_string();
        let apn = entry.apn().map(str::to_string);
        let prefix = self.revocation_prefix(id);
        self.revoke_key(id, to, &mn_id, apn, prefix, trigger, purpose, now, out)
    }

    /// The prefix a revocation names: the binding's own, or none for a chained binding
    /// (its prefix is the home gateway's; the module doc of `chain` says so).
    pub(super) fn revocation_prefix(&self, id: BindingId) -> Option<Ipv6Net> {
        match self.chain_home_prefix(id) {
            Some(home) => home,
            None => self.cache.get(id)?.addresses().home_network_prefix,
        }
    }

    /// [`Lma::revoke`] for a binding that may be gone already (its key given).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn revoke_key(
        &mut self,
        id: BindingId,
        to: MagAddress,
        mn_id: &str,
        apn: Option<String>,
        prefix: Option<Ipv6Net>,
        trigger: RevocationTrigger,
        purpose: Purpose,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Result<u16, Purpose> {
        let report = |sequence, event, apn: &Option<String>| {
            Output::Revocation(RevocationReport {
                mag: to,
                sequence,
                mn_id: Some(mn_id.to_string()),
                apn: apn.clone(),
                event,
            })
        };
        let Some(sequence) = self.revocations.free_sequence() else {
            self.stats.revocations_not_sent += 1;
            out.push(report(0, RevocationEvent::NotSent, &apn));
            return Err(purpose);
        };
        let repr = indication(sequence, trigger, mn_id, apn.as_deref(), prefix);
        let before = out.len();
        self.send(to, MobilityMessage::BindingRevocation(repr), out);
        let bytes = match out.get(before) {
            Some(Output::Send { bytes, .. }) => bytes.clone(),
            _ => return Err(purpose),
        };
        self.stats.revocations_sent += 1;
        out.push(report(sequence, RevocationEvent::Sent(trigger), &apn));
        self.revocations.track(
            sequence,
            to,
            id,
            mn_id.to_string(),
            apn,
            bytes,
            &self.settings.revocation,
            purpose,
            now,
        );
        Ok(sequence)
    }

    /// Retransmissions and give-ups due at `now`.
    pub(super) fn revocation_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        let max = self.settings.revocation.max_timeout;
        while let Some(due) = self.revocations.pop_due(now, max) {
            match due {
                Ok((to, bytes)) => {
                    self.stats.revocations_retransmitted += 1;
                    out.push(Output::Send { to, bytes });
                }
                Err(sequence) => {
                    let Some(o) = self.revocations.take(sequence) else {
                        continue;
                    };
                    self.stats.revocation_timeouts += 1;
                    out.push(Output::Revocation(RevocationReport {
                        mag: o.to,
                        sequence,
                        mn_id: Some(o.mn_id.clone()),
                        apn: o.apn.clone(),
                        event: RevocationEvent::TimedOut,
                    }));
                    self.revocation_answered(o, None, now, out);
                }
            }
        }
    }

    /// Binding Revocation messages from a MAG: indications are answered, acknowledgements
    /// of the LMA's own indications are matched.
    pub(super) fn binding_revocation(
        &mut self,
        from: MagAddress,
        authorized: bool,
        br: &BindingRevocationRepr,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        match br.revocation_type {
            BindingRevocationType::Indication if authorized => {
                self.indication_from_mag(from, br, now, out)
            }
            BindingRevocationType::Indication => self.stats.unauthorized_dropped += 1,
            BindingRevocationType::Acknowledgement => {
                let matches = self
                    .revocations
                    .outstanding
                    .get(&br.sequence)
                    .is_some_and(|o| o.to.ip() == from.ip());
                let Some(o) = matches
                    .then(|| self.revocations.take(br.sequence))
                    .flatten()
                else {
                    self.stats.ignored += 1;
                    return;
                };
                let status = RevocationStatus::from(br.trigger_or_status);
                self.stats.revocation_acks += 1;
                out.push(Output::Revocation(RevocationReport {
                    mag: o.to,
                    sequence: br.sequence,
                    mn_id: Some(o.mn_id.clone()),
                    apn: o.apn.clone(),
                    event: RevocationEvent::Acknowledged(status),
                }));
                self.revocation_answered(o, Some(status), now, out);
            }
            BindingRevocationType::Unknown(_) => self.stats.malformed += 1,
        }
    }

    /// An indication from an allowed MAG (module doc, "Indications from a MAG").
    fn indication_from_mag(
        &mut self,
        from: MagAddress,
        br: &BindingRevocationRepr,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        self.stats.revocations_received += 1;
        let trigger = RevocationTrigger::from(br.trigger_or_status);
        let global = br.flags & BindingRevocationRepr::GLOBAL != 0;
        let nai = br.options.iter().find_map(|o| match o {
            MobilityOption::MobileNodeIdentifier(MobileNodeIdentifier::Nai(n)) => Some(n.clone()),
            _ => None,
        });
        let mut not_found: Vec<Ipv6Net> = Vec::new();
        let mut revoked = 0;
        let status = if !trigger_known(trigger)
            || trigger == RevocationTrigger::RevokingMobilityNodeLocalPolicy
        {
            RevocationStatus::RevocationTriggerNotSupported
        } else if global != (u8::from(trigger) >= 128) {
            RevocationStatus::RevocationFunctionNotSupported
        } else if br.flags & BindingRevocationRepr::PROXY == 0 {
            RevocationStatus::BindingDoesNotExist
        } else if global {
            let allowed = self
                .settings
                .revocation
                .global_mags
                .iter()
                .any(|f| f.contains(from.ip()));
            if nai.is_none() || !allowed {
                RevocationStatus::GlobalRevocationNotAuthorized
            } else {
                let held: Vec<BindingId> = self
                    .cache
                    .iter()
                    .filter(|(_, e)| e.mag().ip() == from.ip())
                    .map(|(id, _)| id)
                    .collect();
                for id in held {
                    revoked += usize::from(self.unbind_revoked(id, now, out));
                }
                RevocationStatus::Success
            }
        } else if let Some(nai) = &nai {
            let candidates = self.cache.bindings_of(nai);
            let candidates: Vec<BindingId> = candidates
                .into_iter()
                .filter(|id| {
                    self.cache
                        .get(*id)
                        .is_some_and(|e| e.mag().ip() == from.ip())
                })
                .collect();
            let prefixes: Vec<Ipv6Net> = br
                .options
                .iter()
                .filter_map(|o| match o {
                    MobilityOption::HomeNetworkPrefix(p) => Some(p.trunc()),
                    _ => None,
                })
                .collect();
            if br.flags & BindingRevocationRepr::IPV4_HOA_ONLY != 0 {
                self.revoke_ipv4_only(&candidates, br, &mut revoked, out)
            } else if prefixes.is_empty() {
                for id in candidates {
                    revoked += usize::from(self.unbind_revoked(id, now, out));
                }
                if revoked == 0 {
                    RevocationStatus::BindingDoesNotExist
                } else {
                    RevocationStatus::Success
                }
            } else {
                for prefix in prefixes {
                    let hit = candidates
                        .iter()
                        .copied()
                        .find(|id| self.revocation_prefix(*id) == Some(prefix));
                    match hit {
                        Some(id) if self.unbind_revoked(id, now, out) => revoked += 1,
                        _ => not_found.push(prefix),
                    }
                }
                match (revoked, not_found.is_empty()) {
                    (0, _) => RevocationStatus::BindingDoesNotExist,
                    (_, true) => RevocationStatus::Success,
                    (_, false) => RevocationStatus::PartialSuccess,
                }
            }
        } else {
            RevocationStatus::RevokedMobileNodesIdentityRequired
        };
        self.stats.revoked_by_mag += revoked as u64;
        // RFC 5846 section 8.2: a partial success names what could not be revoked.
        let mut options = Vec::new();
        if status == RevocationStatus::PartialSuccess {
            options.extend(
                nai.clone()
                    .map(|n| MobilityOption::MobileNodeIdentifier(MobileNodeIdentifier::Nai(n))),
            );
            options.extend(not_found.into_iter().map(MobilityOption::HomeNetworkPrefix));
        }
        let mirrored = BindingRevocationRepr::PROXY
            | BindingRevocationRepr::IPV4_HOA_ONLY
            | BindingRevocationRepr::GLOBAL;
        let ack = BindingRevocationRepr {
            revocation_type: BindingRevocationType::Acknowledgement,
            trigger_or_status: status.into(),
            sequence: br.sequence,
            flags: br.flags & mirrored,
            options,
        };
        self.send(from, MobilityMessage::BindingRevocation(ack), out);
        out.push(Output::Revocation(RevocationReport {
            mag: from,
            sequence: br.sequence,
            mn_id: nai,
            apn: None,
            event: RevocationEvent::Answered {
                trigger,
                status,
                revoked,
            },
        }));
    }

    /// V set: only the IPv4 home address named goes (RFC 5846 section 8.2 item 4).
    fn revoke_ipv4_only(
        &mut self,
        candidates: &[BindingId],
        br: &BindingRevocationRepr,
        revoked: &mut usize,
        out: &mut Vec<Output>,
    ) -> RevocationStatus {
        let Some(address) = br.options.iter().find_map(|o| match o {
            MobilityOption::Ipv4HomeAddressRequest(a) => Some(a.addr()),
            _ => None,
        }) else {
            return RevocationStatus::Ipv4HomeAddressOptionRequired;
        };
        if candidates.iter().any(|id| self.is_chained(*id)) {
            return RevocationStatus::RevocationFunctionNotSupported;
        }
        let Some(id) = candidates.iter().copied().find(|id| {
            self.cache
                .get(*id)
                .is_some_and(|e| e.addresses().ipv4_home_address == Some(address))
        }) else {
            return RevocationStatus::BindingDoesNotExist;
        };
        let Some(mut addresses) = self.cache.get(id).map(|e| e.addresses()) else {
            return RevocationStatus::BindingDoesNotExist;
        };
        addresses.ipv4_home_address = None;
        if self.cache.set_addresses(id, addresses).is_err() {
            return RevocationStatus::BindingDoesNotExist;
        }
        if let Some(pool) = self.ipv4_pool.as_mut() {
            pool.release(address);
        }
        *revoked += 1;
        if let Some(info) = self.info(id) {
            out.push(Output::BindingUp(info));
        }
        RevocationStatus::Success
    }

    /// Removes a binding a MAG revoked (as a de-registration would); false if it is gone.
    pub(super) fn unbind_revoked(
        &mut self,
        id: BindingId,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> bool {
        if self.is_chained(id) {
            return self.chain_revoke(id, now, out);
        }
        self.remove_binding(id, DownReason::Revoked, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_values_are_kept() {
        for v in 0..=u8::MAX {
            assert_eq!(u8::from(RevocationTrigger::from(v)), v);
            assert_eq!(u8::from(RevocationStatus::from(v)), v);
        }
        assert_eq!(
            RevocationTrigger::from(3),
            RevocationTrigger::InterMagHandoverDifferentAccessType
        );
        assert_eq!(
            RevocationStatus::from(132),
            RevocationStatus::RevocationFailedMnIsAttached
        );
        assert!(RevocationStatus::PartialSuccess.is_success());
        assert!(!RevocationStatus::BindingDoesNotExist.is_success());
    }
}
