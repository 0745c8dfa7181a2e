//! A PBU for a binding that another MAG holds (RFC 5213 sections 5.4 and 5.4.1, RFC
//! 5846 section 8.1): whether the binding moves, waits, is replaced or stays, by the
//! Handoff Indicator, and the MAG that lost it is told.
//!
//! The binding key here is (MN-ID, APN): TS 29.275 makes each (UE, APN) PDN connection
//! one mobility session, and without the PDN Connection ID option (TS 29.275 section
//! 12.1.1.15, not implemented) there is one PDN connection per APN and mobile node. So
//! RFC 5213's "one mobility session per attached interface" (section 5.4) meets one
//! entry per key, and the Binding Cache Entry lookup of section 5.4.1 (prefix, or MN-ID
//! with the Handoff Indicator) is made with that key; a PBU from the MAG holding the
//! binding is a re-registration whatever its indicator (section 5.4.1.1 item 5, last
//! case: the proxy care-of address matches). From another MAG, a PBU with a lifetime:
//!
//! * **2 (handoff between two different interfaces) or 3 (handoff between MAGs for the
//!   same interface)**: a handoff (sections 5.4.1.2 item 3, 5.4.1.3 item 2). The binding
//!   moves with its prefix, IPv4 address and uplink GRE key (section 5.3.4), the new MAG
//!   gets the PBA, and the old one a Binding Revocation Indication with trigger
//!   "Inter-MAG Handover - same Access Type" (2) or "- different Access Type" (3), the
//!   Access Technology Types compared (RFC 5846 section 8.1; the tunnel is switched first,
//!   as it allows). The per-MAG share of the new MAG applies.
//! * **4 (handoff state unknown)**: RFC 5213 says to wait for the old MAG's
//!   de-registration (sections 5.4.1.2 item 4, 5.4.1.3 item 3); RFC 5846 section 8.1 has
//!   the LMA ask it instead, with trigger "Inter-MAG Handover - Unknown" (4). The PBU is
//!   held (no PBA; a retransmission replaces it) until: a successful acknowledgement, or
//!   128 BINDING_DOES_NOT_EXIST (the node is not there), or the old MAG's
//!   de-registration: the handoff is made; 132 MN_IS_ATTACHED: the node is still there,
//!   and a second session for the same key cannot be: the PBU is refused with 129
//!   ADMINISTRATIVELY_PROHIBITED, and so it is when the old MAG re-registers the binding
//!   meanwhile (section 8.1: accepting its PBU ends the revocation in progress); no
//!   answer after the retransmissions, or another error: a new mobility session, as below
//!   but without a second indication. If the binding moved again meanwhile, 128; if it
//!   went away, a new binding.
//! * **1 (attachment over a new interface)**: a new mobility session (section 5.4.1.3
//!   item 4). One key holds one session, so the new one replaces the old: new prefix,
//!   IPv4 address and uplink GRE key are allocated while the old ones are still held
//!   (nothing of the old binding reaches the new MAG; a specific prefix is 155 as for any
//!   new binding, and the limits apply as to a new binding), then the old binding is
//!   removed and its MAG gets an indication with trigger "Administrative Reason" (1): the
//!   LMA ended it. When the old binding is chained, or the new PBU asks to be chained,
//!   the old one is removed first (its home side de-registered) and the PBU handled as a
//!   new one.
//! * **5 (state not changed), or an unassigned value**: that MAG believes it holds a
//!   binding it does not (a refresh crossing a handoff; RFC 5846 section 8.1 leaves such
//!   races to local policy): refused with 128 REASON_UNSPECIFIED, the binding stays where
//!   it is. A new attach comes with 1.
//!
//! A de-registration from a MAG that does not hold the binding is acknowledged and
//! changes nothing (RFC 5213 section 5.3.5); its PBA carries no address or key of the
//! binding. An indication still outstanding toward a MAG is withdrawn when the binding
//! comes back to that MAG.

use std::time::Instant;

use pmip_common::mh::{BindingAckStatus, HandoffIndicator, ProxyBindingUpdate};

use super::revocation::{Purpose, RevocationStatus, RevocationTrigger};
use super::{
    no_specific_prefix, Addresses, DownReason, Granted, Lma, Output, Processed, Rejection,
};
use crate::binding_cache::BindingId;
use crate::transport::MagAddress;

/// A PBU waiting for the old MAG's answer (Handoff Indicator 4).
#[derive(Debug)]
pub(super) struct HeldHandoff {
    pub pbu: ProxyBindingUpdate,
    pub from: MagAddress,
}

/// What a PBU from another MAG asks, by its Handoff Indicator (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    Handoff,
    Unknown,
    NewSession,
    Refused,
}

fn classify(handoff: HandoffIndicator) -> Move {
    match handoff {
        HandoffIndicator::HandoffBetweenDifferentInterfaces
        | HandoffIndicator::HandoffBetweenSameInterface => Move::Handoff,
        HandoffIndicator::HandoffStateUnknown => Move::Unknown,
        HandoffIndicator::AttachmentOverNewInterface => Move::NewSession,
        HandoffIndicator::HandoffStateNotChanged | HandoffIndicator::Unknown(_) => Move::Refused,
    }
}

impl Lma {
    /// A PBU with a lifetime for binding `id`, which a MAG other than `from` holds.
    pub(super) fn take_over(
        &mut self,
        id: BindingId,
        pbu: &ProxyBindingUpdate,
        from: MagAddress,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Result<Processed, Rejection> {
        let kind = classify(pbu.handoff);
        // A retransmission while the old MAG is asked: the latest PBU waits instead.
        if let Some(sequence) = self.revocations.awaiting(id) {
            if let Some(o) = self.revocations.get_mut(sequence) {
                if let Purpose::AwaitHandoff(held) = &mut o.purpose {
                    if kind == Move::Unknown || held.from.ip() == from.ip() {
                        held.pbu = pbu.clone();
                        held.from = from;
                        return Ok(Processed::Held);
                    }
                }
            }
        }
        match kind {
            Move::Handoff => self.hand_off(id, pbu, from, true, now, out),
            Move::Unknown => self.ask_old_mag(id, pbu, from, now, out),
            Move::NewSession => self.replace(id, pbu, from, true, now, out),
            Move::Refused => Err(Rejection::new(
                BindingAckStatus::ReasonUnspecified,
                "another MAG holds the binding and the Handoff Indicator asks for no handoff",
            )),
        }
    }

    /// Moves binding `id` to `from` (RFC 5213 section 5.3.4) and, with `notify`, tells
    /// the MAG that held it.
    fn hand_off(
        &mut self,
        id: BindingId,
        pbu: &ProxyBindingUpdate,
        from: MagAddress,
        notify: bool,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Result<Processed, Rejection> {
        let entry = self.cache.get(id).ok_or_else(Rejection::vanished)?;
        let old = entry.mag();
        let trigger =
            RevocationTrigger::handoff(entry.state.access_technology, pbu.access_technology);
        let held = entry.addresses();
        let brought = crate::binding_cache::MagUsage {
            bindings: 1,
            ipv4_home_addresses: u32::from(held.ipv4_home_address.is_some()),
            home_network_prefixes: u32::from(held.home_network_prefix.is_some()),
        };
        if old.ip() != from.ip() {
            self.fits_share(from.ip(), brought)?;
        }
        if self.is_chained(id) {
            // Answered, and the old ePDG told, when the home gateway has refreshed.
            self.chain_refresh(id, pbu, from, now, out)?;
            return Ok(Processed::Held);
        }
        let granted = self.reregister(id, pbu, from, now, out)?;
        self.moved(id, old, from, notify.then_some(trigger), now, out);
        Ok(Processed::Granted(granted))
    }

    /// Binding `id` moved from `old` to `new`: indications toward `new` are withdrawn,
    /// and `old` is told with `trigger`.
    pub(super) fn moved(
        &mut self,
        id: BindingId,
        old: MagAddress,
        new: MagAddress,
        trigger: Option<RevocationTrigger>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        if old.ip() == new.ip() {
            return;
        }
        for sequence in self.revocations.to_mag_for(id, new.ip()) {
            self.revocations.take(sequence);
        }
        if let Some(trigger) = trigger {
            // Not sent (no free sequence number) is counted and reported by `revoke`.
            let _ = self.revoke(id, old, trigger, Purpose::Notify, now, out);
        }
    }

    /// Handoff state unknown: the old MAG is asked, the PBU waits.
    fn ask_old_mag(
        &mut self,
        id: BindingId,
        pbu: &ProxyBindingUpdate,
        from: MagAddress,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Result<Processed, Rejection> {
        let Some(old) = self.cache.get(id).map(|e| e.mag()) else {
            return self.new_binding(pbu, from, now, out);
        };
        let held = Box::new(HeldHandoff {
            pbu: pbu.clone(),
            from,
        });
        let trigger = RevocationTrigger::InterMagHandoverUnknown;
        match self.revoke(id, old, trigger, Purpose::AwaitHandoff(held), now, out) {
            Ok(_) => Ok(Processed::Held),
            // Nobody can be asked: as if nobody answered.
            Err(_) => self.replace(id, pbu, from, false, now, out),
        }
    }

    /// A new mobility session replacing binding `id` (module doc, Handoff Indicator 1).
    fn replace(
        &mut self,
        id: BindingId,
        pbu: &ProxyBindingUpdate,
        from: MagAddress,
        notify: bool,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Result<Processed, Rejection> {
        no_specific_prefix(pbu)?;
        let Some(entry) = self.cache.get(id) else {
            return self.new_binding(pbu, from, now, out);
        };
        let old = entry.mag();
        let (mn_id, apn) = (entry.mn_id().to_string(), entry.apn().map(str::to_string));
        let prefix = self.revocation_prefix(id);
        let chains = self.chain_target(pbu)?.is_some();
        let processed = if self.is_chained(id) || chains {
            self.unbind_revoked(id, now, out);
            self.new_binding(pbu, from, now, out)?
        } else {
            // The new addresses first, while the old binding still holds its own.
            self.admit_new(from.ip(), true, now)?;
            let mut taken = Addresses::default();
            if let Err(rejection) = self.allocate(&Addresses::default(), pbu, from, &mut taken) {
                self.release(&taken);
                return Err(rejection);
            }
            self.remove_binding(id, DownReason::Revoked, out);
            Processed::Granted(self.insert_binding(pbu, from, taken, now, out)?)
        };
        if notify {
            let trigger = RevocationTrigger::AdministrativeReason;
            let _ = self.revoke_key(
                id,
                old,
                &mn_id,
                apn,
                prefix,
                trigger,
                Purpose::Notify,
                now,
                out,
            );
        }
        Ok(processed)
    }

    /// The old MAG answered (`Some`) or never did (`None`): a held handoff goes on.
    pub(super) fn revocation_answered(
        &mut self,
        outstanding: super::revocation::Outstanding,
        status: Option<RevocationStatus>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let held = match outstanding.purpose {
            Purpose::AwaitHandoff(held) => held,
            Purpose::Release(ids) => {
                let why = if status.is_some() {
                    "the MAG acknowledged the revocation"
                } else {
                    "the MAG never answered the revocation"
                };
                return self.release_held(outstanding.to.ip(), ids, why, out);
            }
            Purpose::Notify => return,
        };
        let HeldHandoff { pbu, from } = *held;
        let id = outstanding.binding;
        let holder = self.cache.get(id).map(|e| e.mag().ip());
        let result = match (holder, status) {
            (None, _) => self.new_binding(&pbu, from, now, out),
            (Some(h), _) if h != outstanding.to.ip() => Err(Rejection::new(
                BindingAckStatus::ReasonUnspecified,
                "the binding moved again while its MAG was asked",
            )),
            (Some(_), Some(s)) if s.is_success() || s == RevocationStatus::BindingDoesNotExist => {
                self.hand_off(id, &pbu, from, false, now, out)
            }
            (Some(_), Some(RevocationStatus::RevocationFailedMnIsAttached)) => Err(Rejection::new(
                BindingAckStatus::AdministrativelyProhibited,
                "the mobile node is still attached at the MAG holding its binding",
            )),
            (Some(_), _) => self.replace(id, &pbu, from, false, now, out),
        };
        self.answer(
            from,
            &pbu.to_binding_update(),
            result.map(|p| (pbu, p)),
            now,
            out,
        );
    }

    /// The holder of a binding re-registers it while another MAG's handoff waits: the
    /// holder keeps it, the waiting PBU is refused as if the node were still attached.
    pub(super) fn refreshed_while_asked(
        &mut self,
        sequence: u16,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        if let Some(outstanding) = self.revocations.take(sequence) {
            let attached = Some(RevocationStatus::RevocationFailedMnIsAttached);
            self.revocation_answered(outstanding, attached, now, out);
        }
    }

    /// The holder of binding `id` de-registers while another MAG's handoff waits for it:
    /// the handoff is made (RFC 5846 section 8.1); the de-registration is acknowledged
    /// without the binding's addresses.
    pub(super) fn deregistered_while_asked(
        &mut self,
        sequence: u16,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Granted {
        if let Some(outstanding) = self.revocations.take(sequence) {
            self.revocation_answered(outstanding, Some(RevocationStatus::Success), now, out);
        }
        Granted {
            addresses: Addresses::default(),
            lifetime: pmip_common::mh::Lifetime(0),
            outcome: super::Outcome::Deregistered,
            home: None,
        }
    }
}
