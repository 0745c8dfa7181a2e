//! What an IKE SA does once IKE_AUTH is done, the same in both roles (RFC 7296 sections
//! 1.3, 1.4, 2.8, 2.17, 2.18, 2.25): it keeps its CHILD_SAs and their lifetimes,
//! rekeys a CHILD_SA or the IKE SA itself with CREATE_CHILD_SA when a soft lifetime
//! passes or the application asks (and answers the peer's rekeys), resolves simultaneous
//! rekeys by the lowest nonce (sections 2.8.1, 2.8.2), deletes what a rekey replaced once
//! the new SA is in place, and keeps a replaced IKE SA only until its Delete is done.
//!
//! [`Live`] does not own the current IKE SA's [`SaCore`]: its role (the
//! [`InitiatorSa`](super::initiator::InitiatorSa) or
//! [`ResponderSa`](super::responder::ResponderSa)) does, and passes it in; an IKE SA
//! rekey swaps a new core in and keeps the old one in [`Live`] until it is deleted.
//! Requests of ours go one at a time on the current core (window 1): deletes first, then
//! CHILD_SA rekeys, then the IKE SA's.

use std::time::{Duration, Instant};

use super::child::{choose_child, narrow, Lifetimes, Mode};
use super::crypto::{DhGroup, DhPrivate, EspSuite, IkeSuite, Random};
use super::keys::{ChildSaKeys, IkeSaKeys};
use super::sa::{
    delete_ike, deletes_ike, nonce, nonzero_spi, notify_of, ChildSa, CloseReason, Discard, Event,
    Incoming, Output, PeerAuthMethod, Purpose, Receipt, SaCore,
};
use super::wire::*;

/// Where new SPIs of ours come from: the [`Endpoint`](super::endpoint::Endpoint) gives
/// ones no other SA of the node holds.
pub(super) trait SpiSource {
    /// A new IKE SPI of ours, never zero.
    fn ike_spi(&mut self, rng: &mut dyn Random) -> u64;
    /// A new inbound ESP SPI of ours, never 0 to 255 (RFC 4303 section 2.1).
    fn esp_spi(&mut self, rng: &mut dyn Random) -> u32;
}

/// Random SPIs, for an SA outside any endpoint (the UE emulator has one IKE SA).
pub(super) struct RandomSpis;

impl SpiSource for RandomSpis {
    fn ike_spi(&mut self, rng: &mut dyn Random) -> u64 {
        nonzero_spi(rng)
    }

    fn esp_spi(&mut self, rng: &mut dyn Random) -> u32 {
        random_esp_spi(rng)
    }
}

/// A random ESP SPI above the reserved 1 to 255 (RFC 4303 section 2.1).
pub(super) fn random_esp_spi(rng: &mut dyn Random) -> u32 {
    let mut b = [0u8; 4];
    rng.fill(&mut b);
    u32::from_be_bytes(b) | 0x100
}

/// What one call needs besides the SA: the time, randomness, SPIs, and where outputs go.
pub(super) struct Ctx<'a> {
    pub(super) now: Instant,
    pub(super) rng: &'a mut dyn Random,
    pub(super) spis: &'a mut dyn SpiSource,
    pub(super) out: &'a mut Vec<Output>,
}

/// The role's settings a live SA reads.
#[derive(Clone, Copy)]
pub(super) struct Params<'a> {
    pub(super) ike_suites: &'a [IkeSuite],
    pub(super) esp_suites: &'a [EspSuite],
    pub(super) lifetimes: &'a Lifetimes,
    /// A peer's rekey may ask transport mode for a CHILD_SA that was in tunnel mode.
    pub(super) transport_mode: bool,
}

impl Params<'_> {
    /// The groups we do a CHILD_SA's Diffie-Hellman exchange in: our IKE suites' and the
    /// configured PFS group.
    fn groups(&self) -> Vec<DhGroup> {
        let mut groups: Vec<DhGroup> = self.lifetimes.child_dh.into_iter().collect();
        for s in self.ike_suites {
            if !groups.contains(&s.dh) {
                groups.push(s.dh);
            }
        }
        groups
    }
}

/// How long to hold back a CREATE_CHILD_SA after TEMPORARY_FAILURE (section 2.25: not
/// at once, so the peer finishes what it is doing): one to three seconds at random, so
/// two ends that refused each other's crossing requests do not cross again.
fn backoff_after_temporary_failure(rng: &mut dyn Random) -> Duration {
    let mut b = [0u8; 2];
    rng.fill(&mut b);
    Duration::from_secs(1) + Duration::from_millis(u64::from(u16::from_be_bytes(b)) % 2000)
}

/// Our CREATE_CHILD_SA rekeying a CHILD_SA, until its response.
#[derive(Debug)]
pub(super) struct ChildRequest {
    /// The inbound SPI of the CHILD_SA it replaces.
    replaces: u32,
    /// Our inbound SPI of the new one.
    inbound_spi: u32,
    suite: EspSuite,
    ni: Vec<u8>,
    dh: Option<DhPrivate>,
    mode: Mode,
    /// TSi and TSr as sent (we initiate this exchange).
    tsi: Vec<TrafficSelector>,
    tsr: Vec<TrafficSelector>,
    /// Sent again with the group an INVALID_KE_PAYLOAD named already.
    retried: bool,
}

/// Our CREATE_CHILD_SA rekeying the IKE SA, until its response.
#[derive(Debug)]
pub(super) struct IkeRekeyRequest {
    /// Our SPI of the new IKE SA (its initiator SPI).
    spi_i: u64,
    ni: Vec<u8>,
    dh: DhPrivate,
    retried: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChildState {
    Installed,
    /// Our rekey of it is outstanding; `peer_made` is the inbound SPI of the CHILD_SA a
    /// rekey of the peer's made meanwhile (a collision, section 2.8.1).
    Rekeying {
        peer_made: Option<u32>,
    },
    /// A rekey of the peer's replaced it: the peer deletes it (or we do at `expire_at`).
    Replaced,
    /// We delete it: our Delete is due, or outstanding when `sent`.
    Deleting {
        sent: bool,
    },
}

#[derive(Debug)]
struct Child {
    sa: ChildSa,
    rekey_at: Option<Instant>,
    expire_at: Option<Instant>,
    state: ChildState,
    /// A rekey is due (soft lifetime passed, or asked for).
    want_rekey: bool,
    /// The lower nonce of the CREATE_CHILD_SA that made it (empty for IKE_AUTH's).
    lowest_nonce: Vec<u8>,
}

/// An IKE SA on its way out: replaced by a rekey, or made redundant by a simultaneous one.
#[derive(Debug)]
struct Retiring {
    core: SaCore,
    /// Dropped then, if still here: we wait for the peer's Delete (or for retransmitted
    /// requests to answer). None: we delete it, and it goes with our Delete's answer.
    until: Option<Instant>,
}

/// A new IKE SA a rekey of the peer's made while ours was outstanding (section 2.8.2).
#[derive(Debug)]
struct PeerRekey {
    core: SaCore,
    lowest_nonce: Vec<u8>,
}

/// An IKE SA past IKE_AUTH: its CHILD_SAs, lifetimes, rekeys and retiring IKE SAs.
#[derive(Debug)]
pub(super) struct Live {
    /// Whether we sent the IKE_SA_INIT that began the session: it names the halves of
    /// every [`ChildSa`] (see there).
    first_initiator: bool,
    /// Who the peer proved to be in IKE_AUTH, and how.
    peer: (Identification, PeerAuthMethod),
    children: Vec<Child>,
    /// Inbound SPIs of CHILD_SAs already gone for the application, still to delete at
    /// the peer.
    orphans: Vec<u32>,
    ike_rekey_at: Option<Instant>,
    ike_expire_at: Option<Instant>,
    want_ike_rekey: bool,
    /// No CREATE_CHILD_SA of ours before this (after a TEMPORARY_FAILURE).
    hold_until: Option<Instant>,
    retiring: Vec<Retiring>,
    peer_rekey: Option<Box<PeerRekey>>,
    /// No request of the peer's on this IKE SA yet: an AUTHENTICATION_FAILED notify in
    /// the first one ends the SA (section 2.21.2).
    first_request: bool,
}

/// The lower of two nonces, octet by octet; a nonce that is a prefix of the other is the
/// lower (section 2.8.1).
fn lowest(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.min(b).to_vec()
}

fn find_sa(m: &IkeMessage) -> Option<&SaPayload> {
    m.find(|p| match p {
        Payload::Sa(s) => Some(s),
        _ => None,
    })
}

fn find_nonce(m: &IkeMessage) -> Option<&Vec<u8>> {
    m.find(|p| match p {
        Payload::Nonce(n) => Some(n),
        _ => None,
    })
}

fn find_ke(m: &IkeMessage) -> Option<&KePayload> {
    m.find(|p| match p {
        Payload::Ke(k) => Some(k),
        _ => None,
    })
}

fn find_ts(m: &IkeMessage) -> (Option<&Vec<TrafficSelector>>, Option<&Vec<TrafficSelector>>) {
    (
        m.find(|p| match p {
            Payload::TsI(t) => Some(t),
            _ => None,
        }),
        m.find(|p| match p {
            Payload::TsR(t) => Some(t),
            _ => None,
        }),
    )
}

fn has_notify(m: &IkeMessage, t: NotifyType) -> bool {
    m.notifies().any(|n| n.notify_type == t)
}

fn notify(t: NotifyType) -> NotifyPayload {
    NotifyPayload::new(t, vec![])
}

/// REKEY_SA or CHILD_SA_NOT_FOUND about an ESP SA (section 3.10: Protocol ID 3, its SPI).
fn esp_notify(t: NotifyType, spi: u32) -> NotifyPayload {
    NotifyPayload {
        protocol_id: ProtocolId::Esp.into(),
        spi: spi.to_be_bytes().to_vec(),
        notify_type: t,
        data: vec![],
    }
}

fn event(out: &mut Vec<Output>, e: Event) {
    out.push(Output::Event(e));
}

impl Live {
    /// The live SA after IKE_AUTH made `child` at `now`.
    pub(super) fn new(
        first_initiator: bool,
        child: ChildSa,
        peer: (Identification, PeerAuthMethod),
        params: Params<'_>,
        now: Instant,
        rng: &mut dyn Random,
    ) -> Self {
        let l = params.lifetimes;
        Live {
            first_initiator,
            peer,
            children: vec![Child {
                sa: child,
                rekey_at: l.soft(l.child_rekey, now, rng),
                expire_at: Lifetimes::hard(l.child_lifetime, now),
                state: ChildState::Installed,
                want_rekey: false,
                lowest_nonce: Vec::new(),
            }],
            orphans: Vec::new(),
            ike_rekey_at: l.soft(l.ike_rekey, now, rng),
            ike_expire_at: Lifetimes::hard(l.ike_lifetime, now),
            want_ike_rekey: false,
            hold_until: None,
            retiring: Vec::new(),
            peer_rekey: None,
            first_request: true,
        }
    }

    /// The peer's identity and how it proved it.
    pub(super) fn peer(&self) -> (&Identification, PeerAuthMethod) {
        (&self.peer.0, self.peer.1)
    }

    /// The CHILD_SAs the application has (installed, or replaced and not yet deleted).
    pub(super) fn children(&self) -> impl Iterator<Item = &ChildSa> {
        self.children.iter().map(|c| &c.sa)
    }

    /// Our SPIs of the IKE SAs besides the current one: a retiring one, or a peer's
    /// simultaneous rekey not yet resolved. Datagrams for them must reach this SA.
    pub(super) fn other_spis(&self) -> impl Iterator<Item = u64> + '_ {
        self.retiring
            .iter()
            .map(|r| r.core.our_spi())
            .chain(self.peer_rekey.iter().map(|p| p.core.our_spi()))
    }

    /// The earliest deadline: a lifetime, a held-back request, a retiring IKE SA's.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        let children = self.children.iter().flat_map(|c| {
            let rekey = c
                .rekey_at
                .filter(|_| c.state == ChildState::Installed && !c.want_rekey);
            [rekey, c.expire_at]
        });
        let waiting = self.want_ike_rekey || self.children.iter().any(|c| c.want_rekey);
        let retiring = self
            .retiring
            .iter()
            .flat_map(|r| [r.core.poll_timeout(), r.until]);
        children
            .chain([self.ike_rekey_at.filter(|_| !self.want_ike_rekey)])
            .chain([self.ike_expire_at])
            .chain([self.hold_until.filter(|_| waiting)])
            .chain(retiring)
            .flatten()
            .min()
    }

    /// Asks for a rekey of the CHILD_SA with this inbound SPI (its ESP sequence number is
    /// running out, say). False if there is no such CHILD_SA in place.
    pub(super) fn rekey_child(
        &mut self,
        core: &mut SaCore,
        inbound_spi: u32,
        p: Params<'_>,
        ctx: &mut Ctx<'_>,
    ) -> bool {
        let Some(c) = self
            .children
            .iter_mut()
            .find(|c| c.sa.inbound_spi == inbound_spi && c.state == ChildState::Installed)
        else {
            return false;
        };
        c.want_rekey = true;
        self.next_request(core, p, ctx);
        true
    }

    /// Asks for a rekey of the IKE SA.
    pub(super) fn rekey_ike(&mut self, core: &mut SaCore, p: Params<'_>, ctx: &mut Ctx<'_>) {
        self.want_ike_rekey = true;
        self.next_request(core, p, ctx);
    }

    /// A datagram for this session (the current IKE SA or one on its way out). Returns
    /// whether it was authentic.
    pub(super) fn handle(
        &mut self,
        core: &mut SaCore,
        datagram: &[u8],
        via_4500: bool,
        p: Params<'_>,
        ctx: &mut Ctx<'_>,
    ) -> bool {
        let header = match IkeHeader::new_checked(datagram).and_then(|h| HeaderRepr::parse(&h)) {
            Ok(h) => h,
            Err(e) => {
                event(ctx.out, Event::Discarded(Discard::Wire(e)));
                return false;
            }
        };
        let authentic = if core.owns(&header) {
            let receipt = core.receive(datagram, via_4500, ctx.rng, ctx.out);
            let authentic = receipt.authentic();
            match receipt {
                Receipt::Fresh(Incoming::Request(m)) => self.request(core, m, p, ctx),
                Receipt::Fresh(Incoming::Response(m, purpose)) => {
                    self.response(core, m, purpose, p, ctx)
                }
                Receipt::Malformed(..) => self.first_request = false,
                Receipt::Repeated | Receipt::Dropped => {}
            }
            authentic
        } else if let Some(i) = self.retiring.iter().position(|r| r.core.owns(&header)) {
            self.retiring_datagram(i, datagram, via_4500, p, ctx)
        } else if self
            .peer_rekey
            .as_ref()
            .is_some_and(|r| r.core.owns(&header))
        {
            self.peer_rekey_datagram(core, datagram, via_4500, ctx)
        } else {
            event(ctx.out, Event::Discarded(Discard::WrongSpi));
            false
        };
        self.next_request(core, p, ctx);
        authentic
    }

    /// Retransmissions, lifetimes, held-back requests and retiring IKE SAs whose time came.
    pub(super) fn handle_timeout(&mut self, core: &mut SaCore, p: Params<'_>, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        let mut scratch = Vec::new();
        self.retiring.retain_mut(|r| {
            r.core.handle_timeout(now, &mut scratch);
            !r.core.closed && r.until.is_none_or(|u| u > now)
        });
        // Only the datagrams: a retiring SA's end is no news for the application.
        ctx.out.extend(
            scratch
                .into_iter()
                .filter(|o| matches!(o, Output::Send { .. })),
        );
        core.handle_timeout(now, ctx.out);
        if core.closed {
            return;
        }
        if self.ike_expire_at.is_some_and(|t| t <= now) {
            core.delete_because(CloseReason::LifetimeExpired, now, ctx.rng, ctx.out);
            return;
        }
        if self.ike_rekey_at.is_some_and(|t| t <= now) {
            self.ike_rekey_at = None;
            self.want_ike_rekey = true;
        }
        let mut gone = Vec::new();
        for c in &mut self.children {
            if c.expire_at.is_some_and(|t| t <= now) {
                gone.push(c.sa.inbound_spi);
            } else if c.state == ChildState::Installed && c.rekey_at.is_some_and(|t| t <= now) {
                c.rekey_at = None;
                c.want_rekey = true;
            }
        }
        for spi in gone {
            // Past its hard lifetime a CHILD_SA must not be used (section 2.8): gone for
            // the application now, deleted at the peer when the window allows.
            if let Some(sa) = self.remove_child(spi, ctx.out) {
                self.orphans.push(sa.inbound_spi);
            }
        }
        if self.hold_until.is_some_and(|t| t <= now) {
            self.hold_until = None;
        }
        self.next_request(core, p, ctx);
    }

    fn child_index(&self, f: impl Fn(&Child) -> bool) -> Option<usize> {
        self.children.iter().position(f)
    }

    /// Takes a CHILD_SA out and tells the application.
    fn remove_child(&mut self, inbound_spi: u32, out: &mut Vec<Output>) -> Option<ChildSa> {
        let i = self.child_index(|c| c.sa.inbound_spi == inbound_spi)?;
        let c = self.children.remove(i);
        event(
            out,
            Event::ChildSaDeleted {
                inbound_spi: c.sa.inbound_spi,
                outbound_spi: c.sa.outbound_spi,
            },
        );
        Some(c.sa)
    }

    /// Names a CHILD_SA's keys and selectors after the session's first IKE_SA_INIT (see
    /// [`ChildSa`]) from how the exchange that made it had them.
    fn oriented(
        &self,
        we_initiated: bool,
        keys: ChildSaKeys,
        tsi: Vec<TrafficSelector>,
        tsr: Vec<TrafficSelector>,
    ) -> (ChildSaKeys, Vec<TrafficSelector>, Vec<TrafficSelector>) {
        if we_initiated == self.first_initiator {
            (keys, tsi, tsr)
        } else {
            (
                ChildSaKeys {
                    initiator_to_responder: keys.responder_to_initiator,
                    responder_to_initiator: keys.initiator_to_responder,
                },
                tsr,
                tsi,
            )
        }
    }

    /// A CHILD_SA's selectors as (ours, the peer's).
    fn sides(&self, sa: &ChildSa) -> (Vec<TrafficSelector>, Vec<TrafficSelector>) {
        if self.first_initiator {
            (sa.tsi.clone(), sa.tsr.clone())
        } else {
            (sa.tsr.clone(), sa.tsi.clone())
        }
    }

    fn add_child(&mut self, sa: ChildSa, lowest_nonce: Vec<u8>, p: Params<'_>, ctx: &mut Ctx<'_>) {
        let l = p.lifetimes;
        self.children.push(Child {
            sa,
            rekey_at: l.soft(l.child_rekey, ctx.now, ctx.rng),
            expire_at: Lifetimes::hard(l.child_lifetime, ctx.now),
            state: ChildState::Installed,
            want_rekey: false,
            lowest_nonce,
        });
    }

    // -----------------------------------------------------------------------------------
    // Requests of the peer on the current IKE SA

    fn request(&mut self, core: &mut SaCore, m: IkeMessage, p: Params<'_>, ctx: &mut Ctx<'_>) {
        let first = std::mem::replace(&mut self.first_request, false);
        match m.exchange_type {
            ExchangeType::Informational => self.informational(core, &m, first, ctx),
            ExchangeType::CreateChildSa => self.create_child_sa(core, &m, p, ctx),
            // An IKE_AUTH after IKE_AUTH, or an exchange we do not know.
            _ => core.refuse(&m, notify(NotifyType::InvalidSyntax), ctx.rng, ctx.out),
        }
    }

    /// Answers the Deletes of CHILD_SAs in `m` (section 1.4.1): each one we hold goes,
    /// and our half is named in the answer unless we were deleting it ourselves (section
    /// 2.25.1). Returns the Delete payload of the answer, if any.
    fn peer_deletes_children(&mut self, m: &IkeMessage, out: &mut Vec<Output>) -> Option<Payload> {
        let mut ours = Vec::new();
        for d in m.payloads.iter().filter_map(|p| match p {
            Payload::Delete(d) if d.protocol_id == ProtocolId::Esp => Some(d),
            _ => None,
        }) {
            for spi in &d.spis {
                let Some(i) = self.child_index(|c| c.sa.outbound_spi == *spi) else {
                    continue;
                };
                let inbound = self.children[i].sa.inbound_spi;
                if !matches!(self.children[i].state, ChildState::Deleting { .. }) {
                    ours.push(inbound);
                }
                self.remove_child(inbound, out);
            }
        }
        (!ours.is_empty()).then_some(Payload::Delete(DeletePayload {
            protocol_id: ProtocolId::Esp,
            spis: ours,
        }))
    }

    fn informational(&mut self, core: &mut SaCore, m: &IkeMessage, first: bool, ctx: &mut Ctx<'_>) {
        let delete_ike = deletes_ike(m);
        let auth_failed = first && has_notify(m, NotifyType::AuthenticationFailed);
        let answer: Vec<Payload> = self.peer_deletes_children(m, ctx.out).into_iter().collect();
        core.respond(
            ExchangeType::Informational,
            m.message_id,
            answer,
            ctx.rng,
            ctx.out,
        );
        if auth_failed {
            // The initiator did not accept our AUTH (section 2.21.2): no SA stays.
            return core.close(
                CloseReason::NotifyReceived(NotifyType::AuthenticationFailed),
                ctx.out,
            );
        }
        if delete_ike {
            if let Some(r) = self.peer_rekey.take() {
                // Our rekey and the peer's crossed, and the peer, not having seen ours,
                // deletes the old IKE SA: its new one stands and ours is forgotten
                // (section 2.8.2); a late answer to ours is still read on the old one.
                self.switch(core, r.core, None, ctx);
                return;
            }
            return core.close(CloseReason::DeletedByPeer, ctx.out);
        }
        if m.payloads.is_empty() {
            event(ctx.out, Event::Alive);
        }
    }

    fn create_child_sa(
        &mut self,
        core: &mut SaCore,
        m: &IkeMessage,
        p: Params<'_>,
        ctx: &mut Ctx<'_>,
    ) {
        let (Some(sa), Some(ni)) = (find_sa(m), find_nonce(m)) else {
            return core.refuse(m, notify(NotifyType::InvalidSyntax), ctx.rng, ctx.out);
        };
        let ike = sa
            .proposals
            .first()
            .is_some_and(|p| p.protocol_id == ProtocolId::Ike);
        let rekey = m
            .notifies()
            .find(|n| n.notify_type == NotifyType::RekeySa)
            .cloned();
        let answer = if ike {
            self.peer_rekeys_ike(core, m, sa, ni, p, ctx)
        } else if let Some(rekey) = rekey {
            self.peer_rekeys_child(core, m, &rekey, sa, ni, p, ctx)
        } else {
            // A further CHILD_SA is not offered (section 1.3).
            Err(notify(NotifyType::NoAdditionalSas))
        };
        if let Err(n) = answer {
            core.refuse(m, n, ctx.rng, ctx.out);
        }
    }

    /// Whether a CHILD_SA is being created, rekeyed or deleted by us: the peer's IKE SA
    /// rekey waits (section 2.25.1).
    fn child_exchange_under_way(&self, core: &SaCore) -> bool {
        matches!(
            core.purpose(),
            Some(Purpose::CreateChild(_) | Purpose::DeleteChildren(_))
        ) || self
            .children
            .iter()
            .any(|c| matches!(c.state, ChildState::Rekeying { .. }))
    }

    #[allow(clippy::too_many_arguments)]
    fn peer_rekeys_child(
        &mut self,
        core: &mut SaCore,
        m: &IkeMessage,
        rekey: &NotifyPayload,
        sa: &SaPayload,
        ni: &[u8],
        p: Params<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), NotifyPayload> {
        if matches!(core.purpose(), Some(Purpose::RekeyIke(_))) || self.peer_rekey.is_some() {
            return Err(notify(NotifyType::TemporaryFailure)); // section 2.25.2
        }
        let Ok(spi) = <[u8; 4]>::try_from(rekey.spi.as_slice()).map(u32::from_be_bytes) else {
            return Err(notify(NotifyType::InvalidSyntax));
        };
        // The SPI the peer receives on, which is where we send.
        let Some(old) = self.child_index(|c| c.sa.outbound_spi == spi) else {
            return Err(esp_notify(NotifyType::ChildSaNotFound, spi));
        };
        if matches!(
            self.children[old].state,
            ChildState::Deleting { .. } | ChildState::Replaced
        ) {
            return Err(notify(NotifyType::TemporaryFailure)); // section 2.25.1
        }
        let (Some(tsi), Some(tsr)) = find_ts(m) else {
            return Err(notify(NotifyType::InvalidSyntax));
        };
        let ke = find_ke(m);
        let choice = choose_child(p.esp_suites, &p.groups(), sa, ke.map(|k| k.dh_group))?;
        // Never narrower than the CHILD_SA it replaces (section 2.9.2): the old scope is
        // our policy here. TSi is the peer's side, TSr ours.
        let (ours, theirs) = self.sides(&self.children[old].sa);
        let (tsi, tsr) = (narrow(tsi, &theirs), narrow(tsr, &ours));
        if tsi.is_empty() || tsr.is_empty() {
            return Err(notify(NotifyType::TsUnacceptable));
        }
        let (kex, g_ir) = match (choice.dh, ke) {
            (Some(group), Some(ke)) => {
                let dh = DhPrivate::generate(group, ctx.rng)
                    .map_err(|_| notify(NotifyType::TemporaryFailure))?;
                let public = dh.public_value().to_vec();
                let g_ir = dh
                    .shared_secret(&ke.key_exchange_data)
                    .map_err(|_| notify(NotifyType::InvalidSyntax))?;
                (
                    Some(KePayload {
                        dh_group: group.id(),
                        key_exchange_data: public,
                    }),
                    Some(g_ir),
                )
            }
            _ => (None, None),
        };
        let nr = nonce(ctx.rng);
        let keys = ChildSaKeys::derive(&core.keys, &choice.suite, g_ir.as_deref(), ni, &nr)
            .map_err(|_| notify(NotifyType::NoProposalChosen))?;
        let inbound_spi = ctx.spis.esp_spi(ctx.rng);
        let old_mode = self.children[old].sa.mode;
        let transport = has_notify(m, NotifyType::UseTransportMode)
            && (old_mode == Mode::Transport || p.transport_mode);
        let mut answer = vec![
            Payload::Sa(SaPayload {
                proposals: vec![choice.suite.proposal_with_dh(
                    choice.number,
                    inbound_spi,
                    choice.dh,
                )],
            }),
            Payload::Nonce(nr.clone()),
        ];
        answer.extend(kex.map(Payload::Ke));
        answer.push(Payload::TsI(tsi.clone()));
        answer.push(Payload::TsR(tsr.clone()));
        if transport {
            answer.push(Payload::Notify(notify(NotifyType::UseTransportMode)));
        }
        core.respond(
            ExchangeType::CreateChildSa,
            m.message_id,
            answer,
            ctx.rng,
            ctx.out,
        );
        let (keys, tsi, tsr) = self.oriented(false, keys, tsi, tsr);
        let child = ChildSa {
            suite: choice.suite,
            inbound_spi,
            outbound_spi: choice.peer_spi,
            keys,
            tsi,
            tsr,
            mode: Mode::of(transport),
        };
        let replaced = &mut self.children[old];
        let replaces = replaced.sa.inbound_spi;
        replaced.want_rekey = false;
        replaced.rekey_at = None;
        replaced.state = match replaced.state {
            // Both of us rekeyed it: the nonces decide when our answer comes.
            ChildState::Rekeying { .. } => ChildState::Rekeying {
                peer_made: Some(inbound_spi),
            },
            _ => {
                // The peer started this rekey and deletes the old one; if it never does,
                // we do when its retransmissions would surely be over.
                let grace = ctx.now + 2 * core.policy.span();
                replaced.expire_at = Some(replaced.expire_at.map_or(grace, |e| e.min(grace)));
                ChildState::Replaced
            }
        };
        event(
            ctx.out,
            Event::ChildSaRekeyed {
                replaces,
                child: Box::new(child.clone()),
            },
        );
        self.add_child(child, lowest(ni, &nr), p, ctx);
        Ok(())
    }

    fn peer_rekeys_ike(
        &mut self,
        core: &mut SaCore,
        m: &IkeMessage,
        sa: &SaPayload,
        ni: &[u8],
        p: Params<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), NotifyPayload> {
        if self.child_exchange_under_way(core) || self.peer_rekey.is_some() {
            return Err(notify(NotifyType::TemporaryFailure)); // section 2.25.1
        }
        // A new DH exchange is a must (section 2.18).
        let Some(ke) = find_ke(m) else {
            return Err(notify(NotifyType::InvalidSyntax));
        };
        let in_ke_group: Vec<IkeSuite> = p
            .ike_suites
            .iter()
            .filter(|s| s.dh.id() == ke.dh_group)
            .copied()
            .collect();
        let Some((number, suite)) =
            IkeSuite::select(&in_ke_group, sa).or_else(|| IkeSuite::select(p.ike_suites, sa))
        else {
            return Err(notify(NotifyType::NoProposalChosen));
        };
        if ke.dh_group != suite.dh.id() {
            return Err(NotifyPayload::invalid_ke_payload(suite.dh.id()));
        }
        let spi_i = sa
            .proposals
            .iter()
            .find(|p| p.number == number)
            .and_then(|p| <[u8; 8]>::try_from(p.spi.as_slice()).ok())
            .map(u64::from_be_bytes)
            .filter(|spi| *spi != 0);
        let Some(spi_i) = spi_i else {
            return Err(notify(NotifyType::InvalidSyntax));
        };
        let dh = DhPrivate::generate(suite.dh, ctx.rng)
            .map_err(|_| notify(NotifyType::TemporaryFailure))?;
        let public = dh.public_value().to_vec();
        let g_ir = dh
            .shared_secret(&ke.key_exchange_data)
            .map_err(|_| notify(NotifyType::InvalidSyntax))?;
        let nr = nonce(ctx.rng);
        let spi_r = ctx.spis.ike_spi(ctx.rng);
        let keys = IkeSaKeys::from_rekey(&core.keys, &suite, &g_ir, (ni, &nr), spi_i, spi_r)
            .map_err(|_| notify(NotifyType::NoProposalChosen))?;
        let mut proposal = suite.proposal(number);
        proposal.spi = spi_r.to_be_bytes().to_vec();
        let answer = vec![
            Payload::Sa(SaPayload {
                proposals: vec![proposal],
            }),
            Payload::Nonce(nr.clone()),
            Payload::Ke(KePayload {
                dh_group: suite.dh.id(),
                key_exchange_data: public,
            }),
        ];
        core.respond(
            ExchangeType::CreateChildSa,
            m.message_id,
            answer,
            ctx.rng,
            ctx.out,
        );
        let mut new = SaCore::new(false, (spi_i, spi_r), keys, core.policy, (0, 0));
        new.port_4500 = core.port_4500;
        if matches!(core.purpose(), Some(Purpose::RekeyIke(_))) {
            // Ours is outstanding: which survives waits for its answer (section 2.8.2).
            self.peer_rekey = Some(Box::new(PeerRekey {
                core: new,
                lowest_nonce: lowest(ni, &nr),
            }));
        } else {
            // The peer deletes the old IKE SA; it lingers to answer that.
            self.switch(core, new, None, ctx);
            self.reset_ike_lifetimes(p, ctx);
        }
        Ok(())
    }

    /// Makes `new` the current IKE SA: the old one retires (deleted by us with
    /// `we_delete`, else waited on for the peer's Delete), the CHILD_SAs move with us.
    fn switch(&mut self, core: &mut SaCore, new: SaCore, we_delete: Option<()>, ctx: &mut Ctx<'_>) {
        let mut old = std::mem::replace(core, new);
        let until = match we_delete {
            Some(()) => {
                old.request(
                    ExchangeType::Informational,
                    vec![delete_ike()],
                    Purpose::DeleteIke,
                    ctx.now,
                    ctx.rng,
                    ctx.out,
                );
                None
            }
            None => Some(ctx.now + 2 * old.policy.span()),
        };
        self.retiring.push(Retiring { core: old, until });
        event(
            ctx.out,
            Event::IkeSaRekeyed {
                spi_i: core.spi_i,
                spi_r: core.spi_r,
                keylog: core.keylog(),
            },
        );
    }

    fn reset_ike_lifetimes(&mut self, p: Params<'_>, ctx: &mut Ctx<'_>) {
        let l = p.lifetimes;
        self.want_ike_rekey = false;
        self.ike_rekey_at = l.soft(l.ike_rekey, ctx.now, ctx.rng);
        self.ike_expire_at = Lifetimes::hard(l.ike_lifetime, ctx.now);
        self.first_request = false;
    }

    // -----------------------------------------------------------------------------------
    // Responses to our requests on the current IKE SA

    fn response(
        &mut self,
        core: &mut SaCore,
        m: IkeMessage,
        purpose: Purpose,
        p: Params<'_>,
        ctx: &mut Ctx<'_>,
    ) {
        match purpose {
            Purpose::Liveness => event(ctx.out, Event::Alive),
            Purpose::DeleteChildren(spis) => {
                for spi in spis {
                    self.remove_child(spi, ctx.out);
                }
            }
            Purpose::CreateChild(req) => self.child_rekey_answered(core, &m, *req, p, ctx),
            Purpose::RekeyIke(req) => self.ike_rekey_answered(core, &m, *req, p, ctx),
            Purpose::Auth | Purpose::Notice | Purpose::DeleteIke => {}
        }
    }

    /// After a rekey of a CHILD_SA of ours failed: the old one stays; a simultaneous
    /// rekey of the peer's (if any) stands, and the peer deletes the old one.
    fn child_rekey_failed(&mut self, replaces: u32, again: bool) {
        if let Some(c) = self
            .children
            .iter_mut()
            .find(|c| c.sa.inbound_spi == replaces)
        {
            c.state = match c.state {
                ChildState::Rekeying { peer_made: Some(_) } => ChildState::Replaced,
                ChildState::Rekeying { peer_made: None } => {
                    c.want_rekey = again;
                    ChildState::Installed
                }
                other => other,
            };
        }
    }

    fn child_rekey_answered(
        &mut self,
        core: &mut SaCore,
        m: &IkeMessage,
        req: ChildRequest,
        p: Params<'_>,
        ctx: &mut Ctx<'_>,
    ) {
        if let Some(t) = notify_of(m) {
            match t {
                NotifyType::ChildSaNotFound => {
                    // The peer has no such CHILD_SA (any more): gone here too (section 2.25).
                    if let Some(sa) = self.remove_child(req.replaces, ctx.out) {
                        self.orphans.push(sa.inbound_spi);
                    }
                }
                NotifyType::InvalidKePayload if !req.retried => {
                    let group = m
                        .notifies()
                        .find_map(|n| n.accepted_dh_group())
                        .and_then(DhGroup::from_id)
                        .filter(|g| p.groups().contains(g));
                    match group {
                        Some(g) => {
                            return self.send_child_rekey(
                                core,
                                req.replaces,
                                (Some(g), true),
                                p,
                                ctx,
                            )
                        }
                        None => self.child_rekey_failed(req.replaces, false),
                    }
                }
                NotifyType::TemporaryFailure => {
                    self.hold_until = Some(ctx.now + backoff_after_temporary_failure(ctx.rng));
                    self.child_rekey_failed(req.replaces, true);
                }
                _ => self.child_rekey_failed(req.replaces, false),
            }
            return;
        }
        let mut req = req;
        match self.new_child(core, m, &mut req) {
            Some(child) if child.mode == req.mode => {
                let lowest_nonce = find_nonce(m).map_or_else(Vec::new, |nr| lowest(&req.ni, nr));
                self.rekeyed(req.replaces, child, lowest_nonce, p, ctx);
            }
            Some(child) => {
                // Tunnel mode where we need transport: we delete it (section 1.3.1).
                self.orphans.push(child.inbound_spi);
                self.child_rekey_failed(req.replaces, false);
            }
            None => self.child_rekey_failed(req.replaces, false),
        }
    }

    /// The CHILD_SA a successful CREATE_CHILD_SA response of ours makes, or None if the
    /// response does not fit our request.
    fn new_child(&self, core: &SaCore, m: &IkeMessage, req: &mut ChildRequest) -> Option<ChildSa> {
        let chosen = find_sa(m)?.proposals.first()?;
        let (outbound_spi, suite) = EspSuite::from_chosen_proposal(chosen).ok()?;
        if suite != req.suite {
            return None;
        }
        let nr = find_nonce(m)?;
        let g_ir = match (req.dh.take(), find_ke(m)) {
            (Some(dh), Some(ke)) if ke.dh_group == dh.group().id() => {
                Some(dh.shared_secret(&ke.key_exchange_data).ok()?)
            }
            (_, None) => None,
            _ => return None,
        };
        let keys = ChildSaKeys::derive(&core.keys, &suite, g_ir.as_deref(), &req.ni, nr).ok()?;
        let (Some(tsi), Some(tsr)) = find_ts(m) else {
            return None;
        };
        // The responder may only narrow what we proposed.
        let (tsi, tsr) = (narrow(tsi, &req.tsi), narrow(tsr, &req.tsr));
        if tsi.is_empty() || tsr.is_empty() {
            return None;
        }
        let transport = has_notify(m, NotifyType::UseTransportMode) && req.mode == Mode::Transport;
        let (keys, tsi, tsr) = self.oriented(true, keys, tsi, tsr);
        Some(ChildSa {
            suite,
            inbound_spi: req.inbound_spi,
            outbound_spi,
            keys,
            tsi,
            tsr,
            mode: Mode::of(transport),
        })
    }

    /// Our rekey of `replaces` made `child`: it is installed, and the old one goes
    /// (section 2.8), unless a simultaneous rekey of the peer's made a second one and
    /// ours has the lowest nonce (section 2.8.1): then ours goes and the peer deletes the
    /// old one.
    fn rekeyed(
        &mut self,
        replaces: u32,
        child: ChildSa,
        lowest_nonce: Vec<u8>,
        p: Params<'_>,
        ctx: &mut Ctx<'_>,
    ) {
        let inbound = child.inbound_spi;
        event(
            ctx.out,
            Event::ChildSaRekeyed {
                replaces,
                child: Box::new(child.clone()),
            },
        );
        self.add_child(child, lowest_nonce.clone(), p, ctx);
        let Some(old) = self.child_index(|c| c.sa.inbound_spi == replaces) else {
            return;
        };
        let peers = match self.children[old].state {
            ChildState::Rekeying { peer_made: Some(y) } => {
                self.child_index(|c| c.sa.inbound_spi == y)
            }
            _ => None,
        };
        let ours_redundant = peers.is_some_and(|y| lowest_nonce < self.children[y].lowest_nonce);
        if ours_redundant {
            self.children[old].state = ChildState::Replaced;
            if let Some(mine) = self.child_index(|c| c.sa.inbound_spi == inbound) {
                self.children[mine].state = ChildState::Deleting { sent: false };
            }
        } else {
            self.children[old].state = ChildState::Deleting { sent: false };
        }
    }

    fn ike_rekey_answered(
        &mut self,
        core: &mut SaCore,
        m: &IkeMessage,
        req: IkeRekeyRequest,
        p: Params<'_>,
        ctx: &mut Ctx<'_>,
    ) {
        let made = match notify_of(m) {
            Some(NotifyType::InvalidKePayload) if !req.retried => {
                let group = m
                    .notifies()
                    .find_map(|n| n.accepted_dh_group())
                    .and_then(DhGroup::from_id)
                    .filter(|g| p.ike_suites.iter().any(|s| s.dh == *g));
                if let Some(g) = group {
                    if self.peer_rekey.is_none() {
                        return self.send_ike_rekey(core, g, true, p, ctx);
                    }
                }
                None
            }
            Some(NotifyType::TemporaryFailure) => {
                // Again once the peer is done with what it was doing (section 2.25).
                self.hold_until = Some(ctx.now + backoff_after_temporary_failure(ctx.rng));
                self.want_ike_rekey = true;
                None
            }
            Some(_) => {
                self.want_ike_rekey = false;
                None
            }
            None => new_ike_sa(core, m, req, p),
        };
        let theirs = self.peer_rekey.take();
        match (made, theirs) {
            (Some((ours, our_lowest)), Some(theirs)) => {
                if our_lowest < theirs.lowest_nonce {
                    // Ours is redundant (section 2.8.2): the peer's stands, the peer
                    // deletes the old one, we delete ours.
                    self.switch(core, theirs.core, None, ctx);
                    self.retire_redundant(ours, ctx);
                } else {
                    self.retiring.push(Retiring {
                        core: theirs.core,
                        until: Some(ctx.now + 2 * core.policy.span()),
                    });
                    self.switch(core, ours, Some(()), ctx);
                }
                self.reset_ike_lifetimes(p, ctx);
            }
            (Some((ours, _)), None) => {
                self.switch(core, ours, Some(()), ctx);
                self.reset_ike_lifetimes(p, ctx);
            }
            (None, Some(theirs)) => {
                self.switch(core, theirs.core, None, ctx);
                self.reset_ike_lifetimes(p, ctx);
            }
            (None, None) => {}
        }
    }

    /// A new IKE SA we made that a simultaneous rekey made redundant: we delete it.
    fn retire_redundant(&mut self, mut sa: SaCore, ctx: &mut Ctx<'_>) {
        sa.request(
            ExchangeType::Informational,
            vec![delete_ike()],
            Purpose::DeleteIke,
            ctx.now,
            ctx.rng,
            ctx.out,
        );
        self.retiring.push(Retiring {
            core: sa,
            until: None,
        });
    }

    // -----------------------------------------------------------------------------------
    // IKE SAs on their way out

    /// A datagram for a retiring IKE SA: the peer's Delete (or retransmissions) to answer,
    /// or the answer to our Delete.
    fn retiring_datagram(
        &mut self,
        i: usize,
        datagram: &[u8],
        via_4500: bool,
        p: Params<'_>,
        ctx: &mut Ctx<'_>,
    ) -> bool {
        let now = ctx.now;
        let r = &mut self.retiring[i];
        let receipt = r.core.receive(datagram, via_4500, ctx.rng, ctx.out);
        let authentic = receipt.authentic();
        if authentic {
            let span = r.core.policy.span();
            if let Some(until) = &mut r.until {
                *until = (*until).max(now + span);
            }
        }
        match receipt {
            Receipt::Fresh(Incoming::Request(m)) => match m.exchange_type {
                ExchangeType::Informational => {
                    // A Delete of CHILD_SAs sent before the peer saw the rekey is
                    // answered as usual (section 2.25.2); that of this IKE SA too.
                    let answer: Vec<Payload> = self
                        .peer_deletes_children(&m, ctx.out)
                        .into_iter()
                        .collect();
                    let r = &mut self.retiring[i];
                    r.core.respond(
                        ExchangeType::Informational,
                        m.message_id,
                        answer,
                        ctx.rng,
                        ctx.out,
                    );
                }
                // This IKE SA is already rekeyed (section 2.8.2) and its CHILD_SAs moved.
                ExchangeType::CreateChildSa => self.retiring[i].core.refuse(
                    &m,
                    notify(NotifyType::TemporaryFailure),
                    ctx.rng,
                    ctx.out,
                ),
                _ => self.retiring[i].core.refuse(
                    &m,
                    notify(NotifyType::InvalidSyntax),
                    ctx.rng,
                    ctx.out,
                ),
            },
            Receipt::Fresh(Incoming::Response(m, purpose)) => match purpose {
                Purpose::DeleteIke => {
                    self.retiring.remove(i);
                }
                Purpose::RekeyIke(req) => {
                    // Our rekey, answered after the peer's won by deleting this IKE SA:
                    // the one it made is redundant, and ours to delete.
                    let made = new_ike_sa(&self.retiring[i].core, &m, *req, p);
                    if let Some((sa, _)) = made {
                        self.retire_redundant(sa, ctx);
                    }
                }
                _ => {}
            },
            Receipt::Malformed(..) | Receipt::Repeated | Receipt::Dropped => {}
        }
        authentic
    }

    /// A datagram for the IKE SA a simultaneous rekey of the peer's made, before ours is
    /// answered: the peer may already delete it (its nonce was the lowest) or use it.
    fn peer_rekey_datagram(
        &mut self,
        core: &mut SaCore,
        datagram: &[u8],
        via_4500: bool,
        ctx: &mut Ctx<'_>,
    ) -> bool {
        let Some(r) = self.peer_rekey.as_mut() else {
            return false;
        };
        let receipt = r.core.receive(datagram, via_4500, ctx.rng, ctx.out);
        let authentic = receipt.authentic();
        if let Receipt::Fresh(Incoming::Request(m)) = receipt {
            let delete_ike = deletes_ike(&m);
            if delete_ike {
                // The peer found its new IKE SA redundant: ours will stand.
                r.core.respond(
                    ExchangeType::Informational,
                    m.message_id,
                    vec![],
                    ctx.rng,
                    ctx.out,
                );
                if let Some(r) = self.peer_rekey.take() {
                    self.retiring.push(Retiring {
                        core: r.core,
                        until: Some(ctx.now + 2 * core.policy.span()),
                    });
                }
            } else {
                // Anything else waits until we know which IKE SA stays.
                r.core
                    .refuse(&m, notify(NotifyType::TemporaryFailure), ctx.rng, ctx.out);
            }
        }
        authentic
    }

    // -----------------------------------------------------------------------------------
    // Our requests

    /// Sends the next request of ours that is due, if the window is free: Deletes first,
    /// then a CHILD_SA rekey, then the IKE SA's.
    fn next_request(&mut self, core: &mut SaCore, p: Params<'_>, ctx: &mut Ctx<'_>) {
        if core.busy() || core.closed {
            return;
        }
        let mut spis = std::mem::take(&mut self.orphans);
        for c in &mut self.children {
            if c.state == (ChildState::Deleting { sent: false }) {
                c.state = ChildState::Deleting { sent: true };
                spis.push(c.sa.inbound_spi);
            }
        }
        if !spis.is_empty() {
            let delete = Payload::Delete(DeletePayload {
                protocol_id: ProtocolId::Esp,
                spis: spis.clone(),
            });
            core.request(
                ExchangeType::Informational,
                vec![delete],
                Purpose::DeleteChildren(spis),
                ctx.now,
                ctx.rng,
                ctx.out,
            );
            return;
        }
        if self.hold_until.is_some_and(|t| t > ctx.now) || self.peer_rekey.is_some() {
            return;
        }
        if let Some(i) = self.child_index(|c| c.want_rekey && c.state == ChildState::Installed) {
            let spi = self.children[i].sa.inbound_spi;
            return self.send_child_rekey(core, spi, (p.lifetimes.child_dh, false), p, ctx);
        }
        if self.want_ike_rekey && !self.child_exchange_under_way(core) {
            let group = core.keys.suite().dh;
            self.send_ike_rekey(core, group, false, p, ctx);
        }
    }

    /// CREATE_CHILD_SA rekeying the CHILD_SA `replaces` (section 1.3.3): same suite and
    /// selectors, same mode, a KE in `group` if given.
    fn send_child_rekey(
        &mut self,
        core: &mut SaCore,
        replaces: u32,
        (group, retried): (Option<DhGroup>, bool),
        p: Params<'_>,
        ctx: &mut Ctx<'_>,
    ) {
        let Some(i) = self.child_index(|c| c.sa.inbound_spi == replaces) else {
            return;
        };
        let dh = match group.map(|g| DhPrivate::generate(g, ctx.rng)) {
            Some(Ok(dh)) => Some(dh),
            Some(Err(_)) => return self.child_rekey_failed(replaces, false),
            None => None,
        };
        let (ours, theirs) = self.sides(&self.children[i].sa);
        let old = &mut self.children[i];
        old.want_rekey = false;
        old.state = ChildState::Rekeying { peer_made: None };
        let inbound_spi = ctx.spis.esp_spi(ctx.rng);
        let ni = nonce(ctx.rng);
        let mut proposal = old.sa.suite.proposal_with_dh(1, inbound_spi, group);
        if let Some(g) = group {
            // The other groups we would do too, after KEi's (section 1.3): a responder
            // that takes none of KEi's can name one of these in INVALID_KE_PAYLOAD.
            let esn = proposal.transforms.len() - 1;
            for other in p.groups().into_iter().filter(|o| *o != g).rev() {
                proposal
                    .transforms
                    .insert(esn, Transform::new(TransformId::Dh(other.id())));
            }
        }
        let mut payloads = vec![
            Payload::Notify(esp_notify(NotifyType::RekeySa, replaces)),
            Payload::Sa(SaPayload {
                proposals: vec![proposal],
            }),
            Payload::Nonce(ni.clone()),
        ];
        payloads.extend(dh.as_ref().map(|d| {
            Payload::Ke(KePayload {
                dh_group: d.group().id(),
                key_exchange_data: d.public_value().to_vec(),
            })
        }));
        payloads.push(Payload::TsI(ours.clone()));
        payloads.push(Payload::TsR(theirs.clone()));
        if old.sa.mode == Mode::Transport {
            payloads.push(Payload::Notify(notify(NotifyType::UseTransportMode)));
        }
        let request = ChildRequest {
            replaces,
            inbound_spi,
            suite: old.sa.suite,
            ni,
            dh,
            mode: old.sa.mode,
            tsi: ours,
            tsr: theirs,
            retried,
        };
        core.request(
            ExchangeType::CreateChildSa,
            payloads,
            Purpose::CreateChild(Box::new(request)),
            ctx.now,
            ctx.rng,
            ctx.out,
        );
    }

    /// CREATE_CHILD_SA rekeying the IKE SA (section 1.3.2): our suites, the KE in `group`
    /// first, a new SPI of ours in every proposal.
    fn send_ike_rekey(
        &mut self,
        core: &mut SaCore,
        group: DhGroup,
        retried: bool,
        p: Params<'_>,
        ctx: &mut Ctx<'_>,
    ) {
        let Ok(dh) = DhPrivate::generate(group, ctx.rng) else {
            self.want_ike_rekey = false;
            return;
        };
        let spi_i = ctx.spis.ike_spi(ctx.rng);
        let ni = nonce(ctx.rng);
        let current = *core.keys.suite();
        let mut suites: Vec<IkeSuite> = p
            .ike_suites
            .iter()
            .filter(|s| s.dh == group)
            .copied()
            .collect();
        // The current suite first, when the KE's group is its group.
        if current.dh == group {
            suites.retain(|s| *s != current);
            suites.insert(0, current);
        }
        suites.extend(p.ike_suites.iter().filter(|s| s.dh != group));
        let proposals = suites
            .iter()
            .take(255)
            .enumerate()
            .map(|(n, s)| {
                let mut proposal = s.proposal(n as u8 + 1);
                proposal.spi = spi_i.to_be_bytes().to_vec();
                proposal
            })
            .collect();
        let payloads = vec![
            Payload::Sa(SaPayload { proposals }),
            Payload::Nonce(ni.clone()),
            Payload::Ke(KePayload {
                dh_group: group.id(),
                key_exchange_data: dh.public_value().to_vec(),
            }),
        ];
        self.want_ike_rekey = false;
        core.request(
            ExchangeType::CreateChildSa,
            payloads,
            Purpose::RekeyIke(Box::new(IkeRekeyRequest {
                spi_i,
                ni,
                dh,
                retried,
            })),
            ctx.now,
            ctx.rng,
            ctx.out,
        );
    }
}

/// The IKE SA a successful answer to our IKE SA rekey makes, with the lower nonce of the
/// exchange; None if the answer does not fit our request.
fn new_ike_sa(
    old: &SaCore,
    m: &IkeMessage,
    req: IkeRekeyRequest,
    p: Params<'_>,
) -> Option<(SaCore, Vec<u8>)> {
    let chosen = find_sa(m)?.proposals.first()?;
    let suite = IkeSuite::from_chosen_proposal(chosen).ok()?;
    if !p.ike_suites.contains(&suite) || suite.dh != req.dh.group() {
        return None;
    }
    let spi_r = u64::from_be_bytes(<[u8; 8]>::try_from(chosen.spi.as_slice()).ok()?);
    let nr = find_nonce(m)?;
    let ke = find_ke(m)?;
    if spi_r == 0 || ke.dh_group != suite.dh.id() {
        return None;
    }
    let g_ir = req.dh.shared_secret(&ke.key_exchange_data).ok()?;
    let keys =
        IkeSaKeys::from_rekey(&old.keys, &suite, &g_ir, (&req.ni, nr), req.spi_i, spi_r).ok()?;
    let mut core = SaCore::new(true, (req.spi_i, spi_r), keys, old.policy, (0, 0));
    core.port_4500 = old.port_4500;
    Some((core, lowest(&req.ni, nr)))
}
