//! Chained registration (TS 29.275; docs/attach.md, "Roaming"): the
//! visited gateway (vSAE GW) is an LMA toward the ePDG and a MAG toward the home gateway
//! (hSAE GW) that the ePDG's PBU names in the 3GPP PDN GW IP Address option.
//!
//! * **Which PBUs chain**: a PBU for a mobile node without a binding here, carrying the
//!   3GPP vendor-specific option sub-type 3 (PMIPv6 PDN GW IP Address) naming an address
//!   that is not one of this gateway's own, when `[chaining]` is configured. Without
//!   `[chaining]` the option is ignored and the PBU is served here (local breakout). A
//!   gateway outside `chaining.home_gateways` gets status 129 ADMINISTRATIVELY_PROHIBITED
//!   (RFC 6275 6.1.8); a chained PBU without a GRE Key option 163
//!   GRE_KEY_OPTION_REQUIRED (the relay needs both keys).
//! * **Hold and register**: the ePDG's PBU is held (a retransmission replaces it, so the
//!   answer carries the latest sequence number and timestamp) and this gateway registers
//!   the same MN-ID and APN at the home gateway with [`BindingUpdateList`] (RFC 5213
//!   section 6: retransmission with back-off, refresh before expiry, de-registration):
//!   the same address requests (HNP `::/0`, IPv4 Home Address Request), Handoff Indicator
//!   and Access Technology Type, the ePDG's other vendor options, its own proxy care-of
//!   address (`chaining.local_v4` / `local_v6`) and its own downlink GRE key.
//! * **Home PBA accepted**: the binding is created here toward the ePDG (the cache holds
//!   only its uplink key: the home-allocated addresses are the home gateway's, they may
//!   overlap between home networks and never enter the address indexes), the ePDG gets
//!   a PBA with the home prefix, IPv4 home address and default router and this gateway's
//!   uplink key, and [`Output::ChainUp`] gives the GRE relay both key pairs.
//! * **Errors travel back**: a home reject is answered to the ePDG with the home's
//!   status, its IPv4 Home Address Reply status and its 3GPP vendor options. No home
//!   PBA after every retransmission is status 128 REASON_UNSPECIFIED with the 3GPP
//!   Specific PMIPv6 Error Code option (sub-type 2) carrying GTPv2 cause 100 "Remote
//!   peer not responding"/"PGW not responding" (TS 29.275 section 12.1.1.3 takes its
//!   values from TS 29.274 table 8.4-1); one lifetime-0 PBU then goes to the home gateway, not
//!   retransmitted, so a home that registered but whose answers were lost lets go at
//!   once instead of at expiry. Nothing is kept here after a failure.
//! * **Afterwards, along the chain**: a re-registration from the ePDG is checked here
//!   (prefix, IPv4 address, GRE key: refused here when wrong), held, and propagated: the
//!   home registration is refreshed at once ([`bul::Input::Refresh`]); the home's answer
//!   answers the ePDG (a success with a lifetime never above the home's, the relay moved
//!   if the ePDG or its key changed; an error with the home's status, or 128 + cause 100
//!   when the home is silent, and the binding ends on both sides). Between ePDG
//!   refreshes the list also refreshes home on its own timer. A de-registration or an
//!   expiry here de-registers at home; a failed home refresh removes the binding here
//!   (and, if the home was silent, sends the single lifetime-0 PBU). A de-registration
//!   from the ePDG while the home registration is outstanding cancels it (and sends the
//!   same single lifetime-0 PBU home).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::time::Instant;

use ipnet::Ipv6Net;
use pmip_common::binding_update_list::{
    self as bul, BindingUpdateList, MagConfig, MobileNodeKey, Registration, RegistrationFailure,
    RegistrationRequest,
};
use pmip_common::mh::{
    BindingAckRepr, BindingAckStatus, BuFlags, GreKey, Ipv4HomeAddressReplyStatus, Lifetime,
    MobilityMessage, MobilityOption, ProxyBindingAck, ProxyBindingUpdate, ThreeGppOption,
    VendorSpecific,
};

use super::revocation::RevocationTrigger;
use super::MagFilter;
use super::{
    is_any_prefix, no_specific_prefix, reject_ack, Granted, HomeGrant, Lma, Outcome, Output,
    PbuReport, Rejection,
};
use crate::binding_cache::{Addresses, BindingId, BindingState};
use crate::transport::MagAddress;

/// GTPv2 cause 100, "Remote peer not responding" (TS 29.274 table 8.4-1; Wireshark:
/// "PGW not responding"), carried in the 3GPP Specific PMIPv6 Error Code option when the
/// home gateway never answered.
pub const GTP_CAUSE_REMOTE_PEER_NOT_RESPONDING: u8 = 100;

/// Where and how this gateway chains (the `[chaining]` table, checked).
#[derive(Debug, Clone)]
pub struct ChainSettings {
    /// The home gateways this gateway may register at; others get status 129.
    pub home_gateways: Vec<MagFilter>,
    /// This gateway's own addresses: a PDN GW address naming one of them is served here.
    pub own_addresses: Vec<IpAddr>,
    /// The proxy care-of address toward IPv4 home gateways (UDP 5436, RFC 5844).
    pub local_v4: Option<Ipv4Addr>,
    /// The proxy care-of address toward IPv6 home gateways (raw Mobility Header).
    pub local_v6: Option<Ipv6Addr>,
    /// The home gateways' UDP port for the Mobility Header over IPv4.
    pub home_port: u16,
    /// Retransmission, lifetime and timestamps of the PBUs sent home.
    pub registration: MagConfig,
}

/// A chained binding's tunnels, for the GRE relay and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainInfo {
    pub id: BindingId,
    pub mn_id: String,
    pub apn: Option<String>,
    /// The ePDG and the path its signaling came on.
    pub epdg: MagAddress,
    /// The key the ePDG puts in GRE toward this gateway (ours, given in the PBA).
    pub uplink_key: GreKey,
    /// The key this gateway puts in GRE toward the ePDG (the ePDG's).
    pub epdg_downlink_key: GreKey,
    /// The home gateway and the path toward it (with our proxy care-of address).
    pub home: MagAddress,
    /// The key this gateway puts in GRE toward the home gateway (the home's).
    pub home_uplink_key: GreKey,
    /// The key the home gateway puts in GRE toward this gateway (ours, given in our PBU).
    pub home_downlink_key: GreKey,
    pub ipv4_home_address: Option<Ipv4Addr>,
    pub home_network_prefix: Option<Ipv6Net>,
}

/// Why a chained binding went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainDownReason {
    /// The ePDG de-registered.
    Deregistered,
    /// The ePDG let it expire.
    Expired,
    /// The home gateway refused or ignored a refresh.
    HomeLost,
    /// Revoked: by the ePDG (RFC 5846), or replaced by a new mobility session.
    Revoked,
}

/// What happened on the home side (one log line each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainEvent {
    /// The ePDG's PBU is held; a PBU went to the home gateway.
    Held,
    /// The home gateway accepted.
    HomeRegistered,
    /// A refresh at home succeeded.
    HomeRefreshed,
    /// The home gateway refused; the ePDG got its status.
    HomeRejected,
    /// The home gateway never answered; the ePDG got status 128 with GTPv2 cause 100.
    HomeTimeout,
    /// A refresh at home failed: the binding here is gone too.
    HomeLost,
    /// The home binding is de-registered (acknowledged or given up).
    HomeDeregistered,
    /// The ePDG de-registered while the home registration was outstanding.
    Cancelled,
}

/// One [`ChainEvent`] as the log line reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub mn_id: String,
    pub apn: Option<String>,
    pub home: IpAddr,
    pub event: ChainEvent,
    pub detail: String,
}

/// An ePDG's PBU held while the home gateway answers.
#[derive(Debug)]
struct Pending {
    pbu: ProxyBindingUpdate,
    from: MagAddress,
    home: MagAddress,
    uplink_key: GreKey,
    home_downlink_key: GreKey,
}

/// The home side of a chained binding (the cache entry holds the ePDG side).
#[derive(Debug)]
struct Record {
    key: MobileNodeKey,
    home: MagAddress,
    registration: Registration,
    home_downlink_key: GreKey,
}

/// The chaining state: the Binding Update List toward home gateways, the held PBUs and
/// the chained bindings' home sides.
pub(super) struct Chain {
    settings: ChainSettings,
    list: BindingUpdateList,
    pending: HashMap<MobileNodeKey, Pending>,
    records: HashMap<BindingId, Record>,
    by_key: HashMap<MobileNodeKey, BindingId>,
    /// Every GRE key a held or chained binding uses here (uplink and home downlink).
    reserved_keys: HashSet<u32>,
    /// Sequence numbers of the unretransmitted clean-up de-registrations.
    cleanup_sequence: u16,
    /// The home PBA being handled, so a reject can pass on more than its status.
    current_ack: Option<ProxyBindingAck>,
    /// ePDG re-registrations held while the home gateway refreshes.
    refreshing: HashMap<MobileNodeKey, HeldRefresh>,
    /// Keys whose home registration is being de-registered: the list takes no new
    /// registration for them until that ends.
    deregistering: HashSet<MobileNodeKey>,
    /// New PBUs for such a key, handled when the de-registration ends.
    after_deregistration: HashMap<MobileNodeKey, HeldRefresh>,
}

/// An ePDG's re-registration of a chained binding, held for the home's answer.
#[derive(Debug)]
struct HeldRefresh {
    pbu: ProxyBindingUpdate,
    from: MagAddress,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("settings", &self.settings)
            .field("pending", &self.pending.len())
            .field("chained", &self.records.len())
            .finish()
    }
}

impl Chain {
    pub(super) fn new(settings: ChainSettings, clock: pmip_common::time::WallClock) -> Self {
        let epoch = clock.epoch();
        Chain {
            list: BindingUpdateList::new(settings.registration.clone(), epoch, clock.at(epoch)),
            settings,
            pending: HashMap::new(),
            records: HashMap::new(),
            by_key: HashMap::new(),
            reserved_keys: HashSet::new(),
            cleanup_sequence: 0x8000,
            current_ack: None,
            refreshing: HashMap::new(),
            deregistering: HashSet::new(),
            after_deregistration: HashMap::new(),
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.list.poll_timeout()
    }

    pub(super) fn is_chained(&self, id: BindingId) -> bool {
        self.records.contains_key(&id)
    }

    pub(super) fn key_reserved(&self, key: GreKey) -> bool {
        self.reserved_keys.contains(&key.0)
    }

    /// Whether `address` is a home gateway this gateway may talk to.
    pub(super) fn is_home_gateway(&self, address: IpAddr) -> bool {
        self.settings
            .home_gateways
            .iter()
            .any(|f| f.contains(address))
    }

    pub(super) fn held(&self) -> usize {
        self.pending.len()
    }

    pub(super) fn chained(&self) -> usize {
        self.records.len()
    }

    /// The path toward a home gateway, from our proxy care-of address.
    fn path(&self, home: IpAddr) -> Option<MagAddress> {
        match home {
            IpAddr::V4(a) => Some(MagAddress::Udp4 {
                mag: SocketAddrV4::new(a, self.settings.home_port),
                local: self.settings.local_v4?,
            }),
            IpAddr::V6(a) => Some(MagAddress::Ip6 {
                mag: a,
                local: self.settings.local_v6?,
                kernel_checksum: true,
            }),
        }
    }
}

fn key_of(pbu: &ProxyBindingUpdate) -> MobileNodeKey {
    MobileNodeKey::new(&pbu.mn_id, pbu.apn.as_deref())
}

fn pdn_gw_address(pbu: &ProxyBindingUpdate) -> Option<IpAddr> {
    pbu.vendor.iter().find_map(|v| match v {
        VendorSpecific::ThreeGpp(ThreeGppOption::PdnGwIpAddress(a)) => Some(*a),
        _ => None,
    })
}

impl HomeGrant {
    fn of(home: IpAddr, r: &Registration) -> Self {
        HomeGrant {
            home,
            home_network_prefix: r.home_network_prefix,
            ipv4_home_address: r.ipv4_home_address,
            ipv4_default_router: r.ipv4_default_router,
        }
    }

    fn addresses(&self, uplink_key: GreKey) -> Addresses {
        Addresses {
            home_network_prefix: self.home_network_prefix.map(|p| p.trunc()),
            ipv4_home_address: self.ipv4_home_address.map(|a| a.addr()),
            uplink_gre_key: Some(uplink_key),
        }
    }
}

/// The binding key of a PBU to be chained and the chaining state, or the rejection when
/// the ePDG sent no GRE key (163) or chaining is off. A free function over the `chain`
/// field, so the caller keeps borrowing the core's other fields.
fn chain_for<'c>(
    chain: &'c mut Option<Chain>,
    pbu: &ProxyBindingUpdate,
) -> Result<(MobileNodeKey, &'c mut Chain), Rejection> {
    if pbu.gre_key.is_none() {
        return Err(Rejection::new(
            BindingAckStatus::GreKeyOptionRequired,
            "a chained binding needs the ePDG's GRE key",
        ));
    }
    let chain = chain
        .as_mut()
        .ok_or_else(|| Rejection::new(BindingAckStatus::ReasonUnspecified, "chaining is off"))?;
    Ok((key_of(pbu), chain))
}

impl Lma {
    /// Turns chaining on (the `[chaining]` table).
    pub fn with_chaining(mut self, mut settings: ChainSettings) -> Self {
        // Toward the home gateways this gateway is a MAG with the core's own restart
        // counter and heartbeats (RFC 5847).
        settings.registration.restart_counter = self.settings.restart_counter;
        settings.registration.heartbeat = self.settings.heartbeat;
        self.chain = Some(Chain::new(settings, self.clock));
        self
    }

    /// The home gateway and home-assigned addresses of a chained binding.
    pub fn chained_home(&self, id: BindingId) -> Option<(MagAddress, Option<GreKey>)> {
        let record = self.chain.as_ref()?.records.get(&id)?;
        Some((record.home, record.registration.uplink_gre_key))
    }

    /// Registrations the chain still has at home gateways (being let go included).
    pub fn chain_home_registrations(&self) -> usize {
        self.chain.as_ref().map_or(0, |c| c.list.len())
    }

    /// Chained bindings, and ePDG PBUs held for a home answer.
    pub fn chain_counts(&self) -> (usize, usize) {
        self.chain
            .as_ref()
            .map_or((0, 0), |c| (c.chained(), c.held()))
    }

    pub(super) fn is_chained(&self, id: BindingId) -> bool {
        self.chain.as_ref().is_some_and(|c| c.is_chained(id))
    }

    /// The home gateway a new binding's PBU asks to chain to, if it does and may.
    pub(super) fn chain_target(
        &self,
        pbu: &ProxyBindingUpdate,
    ) -> Result<Option<MagAddress>, Rejection> {
        let (Some(home), Some(chain)) = (pdn_gw_address(pbu), self.chain.as_ref()) else {
            return Ok(None);
        };
        if chain.settings.own_addresses.contains(&home) || home.is_unspecified() {
            return Ok(None);
        }
        if !chain.is_home_gateway(home) {
            return Err(Rejection::new(
                BindingAckStatus::AdministrativelyProhibited,
                "the PDN GW address names a gateway not in chaining.home_gateways",
            ));
        }
        chain.path(home).map(Some).ok_or(Rejection::new(
            BindingAckStatus::AdministrativelyProhibited,
            "no proxy care-of address of the home gateway's family (chaining.local_v4/v6)",
        ))
    }

    /// Holds the ePDG's PBU and registers at `home` (module doc).
    pub(super) fn chain_hold(
        &mut self,
        pbu: &ProxyBindingUpdate,
        from: MagAddress,
        home: MagAddress,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Result<(), Rejection> {
        no_specific_prefix(pbu)?;
        let (key, chain) = chain_for(&mut self.chain, pbu)?;
        if chain.deregistering.contains(&key) {
            // The old home registration of this key is still being let go (a new
            // session replacing one, or a quick re-attach): this one waits for that.
            let held = HeldRefresh {
                pbu: pbu.clone(),
                from,
            };
            chain.after_deregistration.insert(key, held);
            return Ok(());
        }
        if let Some(held) = chain.pending.get_mut(&key) {
            // A retransmission while the home gateway has not answered: the answer goes
            // to the latest one.
            held.pbu = pbu.clone();
            held.from = from;
            return Ok(());
        }
        let cache = &self.cache;
        let reserved = &chain.reserved_keys;
        let in_use = |k: GreKey| cache.by_uplink_gre_key(k).is_some() || reserved.contains(&k.0);
        let uplink_key = self.uplink_keys.allocate(in_use);
        let home_downlink_key = self
            .uplink_keys
            .allocate(|k| in_use(k) || Some(k) == uplink_key);
        let (Some(uplink_key), Some(home_downlink_key)) = (uplink_key, home_downlink_key) else {
            return Err(Rejection::new(
                BindingAckStatus::InsufficientResources,
                "no free GRE key",
            ));
        };
        chain.reserved_keys.insert(uplink_key.0);
        chain.reserved_keys.insert(home_downlink_key.0);
        let vendor = pbu
            .vendor
            .iter()
            .filter(|v| {
                !matches!(
                    v,
                    VendorSpecific::ThreeGpp(ThreeGppOption::PdnGwIpAddress(_))
                )
            })
            .cloned()
            .collect();
        let request = RegistrationRequest {
            key: key.clone(),
            lma: home.socket_addr(),
            request_home_network_prefix: !pbu.home_network_prefixes.is_empty(),
            request_ipv4_home_address: pbu.ipv4_home_address_request.is_some(),
            downlink_gre_key: Some(home_downlink_key),
            handoff: pbu.handoff,
            vendor,
        };
        chain.pending.insert(
            key,
            Pending {
                pbu: pbu.clone(),
                from,
                home,
                uplink_key,
                home_downlink_key,
            },
        );
        self.stats.chains_held += 1;
        out.push(Output::Chain(ChainReport {
            mn_id: pbu.mn_id.clone(),
            apn: pbu.apn.clone(),
            home: home.ip(),
            event: ChainEvent::Held,
            detail: format!("ePDG {from}: PBU held, registering at the home gateway"),
        }));
        self.list_input(bul::Input::Register(request), now, out);
        Ok(())
    }

    /// A PBA from a home gateway.
    pub(super) fn chain_ack(
        &mut self,
        from: MagAddress,
        ba: &BindingAckRepr,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        match ProxyBindingAck::try_from(ba) {
            Ok(ack) => {
                if let Some(chain) = self.chain.as_mut() {
                    chain.current_ack = Some(ack.clone());
                }
                self.list_input(
                    bul::Input::Ack {
                        from: from.socket_addr(),
                        ack,
                    },
                    now,
                    out,
                );
                if let Some(chain) = self.chain.as_mut() {
                    chain.current_ack = None;
                }
            }
            Err(_) => self.stats.malformed += 1,
        }
    }

    /// The list's retransmission and refresh timers.
    pub(super) fn chain_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self
            .chain
            .as_ref()
            .and_then(Chain::poll_timeout)
            .is_some_and(|at| at <= now)
        {
            self.list_input(bul::Input::Timeout, now, out);
        }
    }

    fn list_input(&mut self, input: bul::Input, now: Instant, out: &mut Vec<Output>) {
        let Some(chain) = self.chain.as_mut() else {
            return;
        };
        if let bul::Input::Deregister(key) = &input {
            chain.deregistering.insert(key.clone());
        }
        let mut events = Vec::new();
        chain.list.handle(input, now, &mut events);
        let mut transmits = Vec::new();
        while let Some(t) = chain.list.poll_transmit() {
            transmits.push(t);
        }
        let mut home_events = Vec::new();
        while let Some(e) = chain.list.poll_event() {
            home_events.push(e);
        }
        for event in events {
            self.list_event(event, now, out);
        }
        // Heartbeats and acknowledgements toward the home gateways (RFC 5847, RFC 5846).
        for bul::Transmit { to, message } in transmits {
            if let Some(path) = self.chain.as_ref().and_then(|c| c.path(to.ip())) {
                self.send(path, message, out);
            }
        }
        for event in home_events {
            let peer = match &event {
                bul::LmaEvent::Restarted { lma, .. }
                | bul::LmaEvent::Unreachable { lma, .. }
                | bul::LmaEvent::Reachable { lma }
                | bul::LmaEvent::HeartbeatUnsupported { lma }
                | bul::LmaEvent::Revocation { lma, .. } => *lma,
            };
            out.push(Output::Peer(super::PeerReport {
                peer,
                event: super::PeerEvent::Home(event),
            }));
        }
    }

    /// A Heartbeat, Binding Error or Binding Revocation Indication from a home gateway:
    /// the chain's binding update list (this gateway is the home's MAG) takes it.
    pub(super) fn chain_mobility(
        &mut self,
        from: MagAddress,
        message: MobilityMessage,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let from = from.socket_addr();
        self.list_input(bul::Input::Mobility { from, message }, now, out);
    }

    /// This gateway restarted: the home gateways it had chained bindings at are told
    /// (RFC 5847 section 3.2), so they let go of them at once.
    pub(super) fn chain_announce_restart(
        &mut self,
        homes: Vec<SocketAddr>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        self.list_input(bul::Input::AnnounceRestart(homes), now, out);
    }

    fn list_event(&mut self, event: bul::Output, now: Instant, out: &mut Vec<Output>) {
        match event {
            bul::Output::Send { to, pbu } => self.send_home(to, pbu, out),
            bul::Output::Registered { key, registration } => {
                self.chain_registered(key, registration, now, out)
            }
            bul::Output::Refreshed { key, registration } => {
                let Some(chain) = self.chain.as_mut() else {
                    return;
                };
                let home = registration.lma.ip();
                let id = chain.by_key.get(&key).copied();
                let mut moved = false;
                if let Some(record) = id.and_then(|id| chain.records.get_mut(&id)) {
                    // A home gateway that restarted grants a new uplink key for the same
                    // addresses: the relay moves to it.
                    moved = record.registration.uplink_gre_key != registration.uplink_gre_key;
                    record.registration = registration;
                }
                let held = chain.refreshing.remove(&key);
                out.push(report(&key, home, ChainEvent::HomeRefreshed, String::new()));
                if let Some(info) = id.filter(|_| moved).and_then(|id| self.chain_info(id)) {
                    out.push(Output::ChainUp(info));
                }
                if let (Some(id), Some(held)) = (id, held) {
                    self.answer_refresh(id, held, now, out);
                }
            }
            bul::Output::Failed { key, reason } => self.chain_failed(key, reason, now, out),
            bul::Output::Lost { key, reason } => self.chain_lost(key, reason, now, out),
            bul::Output::Deregistered { key, acknowledged } => {
                let home = self
                    .chain
                    .as_ref()
                    .and_then(|c| c.by_key.get(&key).and_then(|id| c.records.get(id)))
                    .map(|r| r.home.ip());
                out.push(report(
                    &key,
                    home.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                    ChainEvent::HomeDeregistered,
                    if acknowledged {
                        "acknowledged".into()
                    } else {
                        "not acknowledged".into()
                    },
                ));
                let waiting = self.chain.as_mut().and_then(|c| {
                    c.deregistering.remove(&key);
                    c.after_deregistration.remove(&key)
                });
                if let Some(HeldRefresh { pbu, from }) = waiting {
                    let result = self.new_binding(&pbu, from, now, out);
                    let bu = pbu.to_binding_update();
                    self.answer(from, &bu, result.map(|p| (pbu, p)), now, out);
                }
            }
        }
    }

    /// Encodes a PBU of the list for the home path, with the ePDG's Access Technology
    /// Type (the list's configuration has one for every binding).
    fn send_home(&mut self, to: SocketAddr, mut pbu: ProxyBindingUpdate, out: &mut Vec<Output>) {
        let Some(chain) = self.chain.as_ref() else {
            return;
        };
        let Some(path) = chain.path(to.ip()) else {
            return;
        };
        let key = key_of(&pbu);
        let technology = chain
            .pending
            .get(&key)
            .map(|p| p.pbu.access_technology)
            .or_else(|| {
                let id = chain.by_key.get(&key)?;
                Some(self.cache.get(*id)?.state.access_technology)
            });
        if let Some(technology) = technology {
            pbu.access_technology = technology;
        }
        self.send(
            path,
            MobilityMessage::BindingUpdate(pbu.to_binding_update()),
            out,
        );
    }

    /// One lifetime-0 PBU home, not retransmitted (module doc).
    fn send_home_cleanup(&mut self, pending: &Pending, now: Instant, out: &mut Vec<Output>) {
        let p = &pending.pbu;
        let template = ProxyBindingUpdate {
            gre_key: Some(pending.home_downlink_key),
            ..p.clone()
        };
        self.send_home_release(&template, pending.home, now, out);
    }

    /// The same clean-up for a chained binding whose home refresh went unanswered: the
    /// home may still hold it.
    fn send_home_cleanup_for(&mut self, record: &Record, now: Instant, out: &mut Vec<Output>) {
        let r = &record.registration;
        let template = ProxyBindingUpdate {
            sequence: 0,
            flags: BuFlags(0),
            lifetime: Lifetime(0),
            mn_id: record.key.mn_id.to_string(),
            apn: record.key.apn.as_deref().map(str::to_string),
            home_network_prefixes: r.home_network_prefix.into_iter().collect(),
            handoff: pmip_common::mh::HandoffIndicator::HandoffStateNotChanged,
            access_technology: self
                .chain
                .as_ref()
                .map_or(pmip_common::mh::AccessTechnologyType::Ieee80211, |c| {
                    c.settings.registration.access_technology
                }),
            timestamp: None,
            link_local_address: None,
            link_layer_id: None,
            gre_key: Some(record.home_downlink_key),
            ipv4_home_address_request: r.ipv4_home_address,
            ipv4_care_of_address: None,
            restart_counter: None,
            vendor: Vec::new(),
            other: Vec::new(),
        };
        self.send_home_release(&template, record.home, now, out);
    }

    /// Sends one lifetime-0 PBU for `p`'s mobile node to `home`, not retransmitted.
    fn send_home_release(
        &mut self,
        p: &ProxyBindingUpdate,
        home: MagAddress,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(chain) = self.chain.as_mut() else {
            return;
        };
        let sequence = chain.cleanup_sequence;
        chain.cleanup_sequence = chain.cleanup_sequence.wrapping_add(1);
        let timestamp = chain
            .settings
            .registration
            .use_timestamps
            .then(|| pmip_common::mh::Timestamp::from_system_time(self.wall_clock(now)));
        let pbu = ProxyBindingUpdate {
            sequence,
            flags: BuFlags(BuFlags::ACK | BuFlags::HOME_REGISTRATION | BuFlags::PROXY),
            lifetime: Lifetime(0),
            mn_id: p.mn_id.clone(),
            apn: p.apn.clone(),
            home_network_prefixes: p.home_network_prefixes.clone(),
            handoff: p.handoff,
            access_technology: p.access_technology,
            timestamp,
            link_local_address: None,
            link_layer_id: None,
            gre_key: p.gre_key,
            ipv4_home_address_request: p.ipv4_home_address_request,
            ipv4_care_of_address: None,
            restart_counter: None,
            vendor: Vec::new(),
            other: Vec::new(),
        };
        self.send(
            home,
            MobilityMessage::BindingUpdate(pbu.to_binding_update()),
            out,
        );
    }

    fn release_keys(&mut self, keys: [GreKey; 2]) {
        if let Some(chain) = self.chain.as_mut() {
            for k in keys {
                chain.reserved_keys.remove(&k.0);
            }
        }
    }

    /// The home gateway accepted: bind here and answer the ePDG.
    fn chain_registered(
        &mut self,
        key: MobileNodeKey,
        registration: Registration,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(pending) = self.chain.as_mut().and_then(|c| c.pending.remove(&key)) else {
            // Nobody waits for it any more: let go at home.
            self.list_input(bul::Input::Deregister(key), now, out);
            return;
        };
        let pbu = &pending.pbu;
        let home = HomeGrant::of(pending.home.ip(), &registration);
        let Some(home_uplink_key) = registration.uplink_gre_key else {
            // The list checks the home granted a key for ours; never bind without one.
            let rejection = Rejection::new(
                BindingAckStatus::ReasonUnspecified,
                "the home gateway granted no uplink GRE key",
            );
            self.answer_rejection(&pending, rejection, Vec::new(), now, out);
            self.list_input(bul::Input::Deregister(key), now, out);
            return;
        };
        let lifetime = self
            .granted_lifetime(pbu.lifetime)
            .min(registration.lifetime);
        let state = BindingState::from_pbu(pbu, lifetime, now);
        let held = Addresses {
            uplink_gre_key: Some(pending.uplink_key),
            ..Addresses::default()
        };
        let id = match self
            .cache
            .insert(&pbu.mn_id, pbu.apn.as_deref(), pending.from, held, state)
        {
            Ok(id) => id,
            Err(_) => {
                let rejection = Rejection::new(
                    BindingAckStatus::InsufficientResources,
                    "the binding cache refused the chained entry",
                );
                self.answer_rejection(&pending, rejection, Vec::new(), now, out);
                self.list_input(bul::Input::Deregister(key), now, out);
                return;
            }
        };
        let expires = self.arm(id, now, lifetime, None);
        if let Some(state) = self.cache.state_mut(id) {
            state.expires = expires;
        }
        if let Some(chain) = self.chain.as_mut() {
            chain.by_key.insert(key.clone(), id);
            chain.records.insert(
                id,
                Record {
                    key: key.clone(),
                    home: pending.home,
                    registration,
                    home_downlink_key: pending.home_downlink_key,
                },
            );
        }
        let granted = Granted {
            addresses: home.addresses(pending.uplink_key),
            lifetime,
            outcome: Outcome::Registered,
            home: Some(home),
        };
        self.stats.pbus_accepted += 1;
        self.stats.chains_registered += 1;
        let ack = self.accept_ack(pbu, &granted);
        self.send(pending.from, MobilityMessage::BindingAck(ack), out);
        out.push(report(
            &key,
            home.home,
            ChainEvent::HomeRegistered,
            format!(
                "home uplink key {}, our home downlink key {}",
                home_uplink_key.0, pending.home_downlink_key.0
            ),
        ));
        if let Some(info) = self.chain_info(id) {
            out.push(Output::ChainUp(info));
        }
        out.push(Output::Report(pbu_report(
            pending.from,
            pbu,
            &granted,
            BindingAckStatus::Accepted,
            None,
        )));
    }

    /// The home registration failed: answer the held PBU with the error.
    fn chain_failed(
        &mut self,
        key: MobileNodeKey,
        reason: RegistrationFailure,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(pending) = self.chain.as_mut().and_then(|c| c.pending.remove(&key)) else {
            return;
        };
        let (rejection, vendor, event) = self.failure_answer(&key, &reason);
        out.push(report(&key, pending.home.ip(), event, reason.to_string()));
        self.answer_rejection(&pending, rejection, vendor, now, out);
        if event == ChainEvent::HomeTimeout {
            self.send_home_cleanup(&pending, now, out);
        }
    }

    fn answer_rejection(
        &mut self,
        pending: &Pending,
        rejection: Rejection,
        vendor: Vec<VendorSpecific>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        self.release_keys([pending.uplink_key, pending.home_downlink_key]);
        let (pbu, from, home) = (&pending.pbu, pending.from, pending.home.ip());
        self.answer_error(pbu, from, home, rejection, vendor, now, out);
    }

    /// A PBA refusing a held PBU (the home's error), and its log line.
    #[allow(clippy::too_many_arguments)]
    fn answer_error(
        &mut self,
        pbu: &ProxyBindingUpdate,
        from: MagAddress,
        home: IpAddr,
        rejection: Rejection,
        vendor: Vec<VendorSpecific>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        self.stats.pbus_rejected += 1;
        self.stats.chains_failed += 1;
        let wall = self.wall_clock(now);
        let mut ack = reject_ack(&pbu.to_binding_update(), &rejection, wall);
        ack.options
            .extend(vendor.into_iter().map(MobilityOption::VendorSpecific));
        self.send(from, MobilityMessage::BindingAck(ack), out);
        let granted = Granted {
            addresses: Addresses::default(),
            lifetime: Lifetime(0),
            outcome: Outcome::Rejected,
            home: Some(HomeGrant {
                home,
                home_network_prefix: None,
                ipv4_home_address: None,
                ipv4_default_router: None,
            }),
        };
        out.push(Output::Report(pbu_report(
            from,
            pbu,
            &granted,
            rejection.status,
            Some(rejection.reason),
        )));
    }

    /// What the ePDG is told for a home failure: the rejection, the 3GPP options, the
    /// log event.
    fn failure_answer(
        &mut self,
        key: &MobileNodeKey,
        reason: &RegistrationFailure,
    ) -> (Rejection, Vec<VendorSpecific>, ChainEvent) {
        // The home's own PBA, when this failure is its answer: its IPv4 Home Address
        // Reply status and its 3GPP options (e.g. an error code) travel on too.
        let home_ack = self
            .chain
            .as_mut()
            .and_then(|c| c.current_ack.take())
            .filter(|a| a.mn_id.as_deref().is_none_or(|m| *m == *key.mn_id));
        let (rejection, error_code, event) = match *reason {
            RegistrationFailure::Rejected(status) => (
                Rejection {
                    ipv4_reply: home_ack
                        .as_ref()
                        .and_then(|a| a.ipv4_home_address_reply)
                        .map(|(s, _)| s)
                        .filter(|s| *s != Ipv4HomeAddressReplyStatus::Success),
                    ..Rejection::new(status, "the home gateway rejected the binding")
                },
                None,
                ChainEvent::HomeRejected,
            ),
            RegistrationFailure::Ipv4Refused(status) => (
                Rejection::ipv4(
                    BindingAckStatus::NotAuthorizedForIpv4HomeAddress,
                    status,
                    "the home gateway refused the IPv4 home address",
                ),
                None,
                ChainEvent::HomeRejected,
            ),
            RegistrationFailure::Timeout(_) | RegistrationFailure::Unreachable { .. } => (
                Rejection::new(
                    BindingAckStatus::ReasonUnspecified,
                    "the home gateway did not answer",
                ),
                Some(GTP_CAUSE_REMOTE_PEER_NOT_RESPONDING),
                ChainEvent::HomeTimeout,
            ),
            RegistrationFailure::Revoked { .. } => (
                Rejection::new(
                    BindingAckStatus::ReasonUnspecified,
                    "the home gateway revoked the binding",
                ),
                None,
                ChainEvent::HomeRejected,
            ),
            RegistrationFailure::Incomplete(_) | RegistrationFailure::Duplicate => (
                Rejection::new(
                    BindingAckStatus::ReasonUnspecified,
                    "the home gateway's answer lacked what was asked",
                ),
                None,
                ChainEvent::HomeRejected,
            ),
        };
        let mut vendor: Vec<VendorSpecific> = home_ack
            .map(|a| a.vendor)
            .unwrap_or_default()
            .into_iter()
            .filter(|v| matches!(v, VendorSpecific::ThreeGpp(_)))
            .collect();
        vendor.extend(error_code.map(|c| VendorSpecific::ThreeGpp(ThreeGppOption::ErrorCode(c))));
        (rejection, vendor, event)
    }

    /// A home refresh failed: the binding here goes too.
    fn chain_lost(
        &mut self,
        key: MobileNodeKey,
        reason: RegistrationFailure,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(id) = self
            .chain
            .as_ref()
            .and_then(|c| c.by_key.get(&key).copied())
        else {
            return;
        };
        let home = self
            .chain
            .as_ref()
            .and_then(|c| c.records.get(&id))
            .map(|r| r.home.ip());
        let home = home.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        out.push(report(&key, home, ChainEvent::HomeLost, reason.to_string()));
        let (rejection, vendor, _) = self.failure_answer(&key, &reason);
        let held = self.chain.as_mut().and_then(|c| c.refreshing.remove(&key));
        if held.is_none() {
            // Nothing of the ePDG's waits for an answer: it is told (RFC 5846 section
            // 8.1), with the home's own trigger when the home revoked the binding.
            let trigger = match reason {
                RegistrationFailure::Revoked { trigger } => RevocationTrigger::from(trigger),
                _ => RevocationTrigger::AdministrativeReason,
            };
            self.revoke_chained_toward_epdg(id, trigger, now, out);
        }
        let reason_down = match reason {
            RegistrationFailure::Revoked { .. } => ChainDownReason::Revoked,
            _ => ChainDownReason::HomeLost,
        };
        let record = self.unbind_chained(id, reason_down, out);
        if let (Some(record), RegistrationFailure::Timeout(_)) = (&record, &reason) {
            self.send_home_cleanup_for(record, now, out);
        }
        // The ePDG's re-registration that asked for this refresh gets the home's error.
        if let Some(held) = held {
            self.answer_error(&held.pbu, held.from, home, rejection, vendor, now, out);
        }
    }

    /// Sends the ePDG holding chained binding `id` a Binding Revocation Indication.
    fn revoke_chained_toward_epdg(
        &mut self,
        id: BindingId,
        trigger: RevocationTrigger,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(entry) = self.cache.get(id) else {
            return;
        };
        let (epdg, mn_id, apn) = (
            entry.mag(),
            entry.mn_id().to_string(),
            entry.apn().map(str::to_string),
        );
        let prefix = self.revocation_prefix(id);
        let notify = super::revocation::Purpose::Notify;
        let _ = self.revoke_key(id, epdg, &mn_id, apn, prefix, trigger, notify, now, out);
    }

    /// Removes a chained binding here (cache, record, keys) and tells the relay.
    fn unbind_chained(
        &mut self,
        id: BindingId,
        reason: ChainDownReason,
        out: &mut Vec<Output>,
    ) -> Option<Record> {
        let info = self.chain_info(id);
        let entry = self.cache.remove(id);
        let record = self.chain.as_mut().and_then(|c| {
            let record = c.records.remove(&id)?;
            c.by_key.remove(&record.key);
            c.refreshing.remove(&record.key);
            Some(record)
        });
        if let (Some(entry), Some(record)) = (&entry, &record) {
            if let Some(k) = entry.addresses().uplink_gre_key {
                self.release_keys([k, record.home_downlink_key]);
            }
        }
        if let Some(chain) = info {
            out.push(Output::ChainDown { chain, reason });
        }
        record
    }

    /// A de-registration from the ePDG (RFC 5213 5.3.5) for a chained binding.
    pub(super) fn chain_deregister(
        &mut self,
        id: BindingId,
        pbu: &ProxyBindingUpdate,
        from: MagAddress,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Result<Granted, Rejection> {
        let (Some(entry), Some(record)) = (
            self.cache.get(id),
            self.chain.as_ref().and_then(|c| c.records.get(&id)),
        ) else {
            return Err(Rejection::new(
                BindingAckStatus::ReasonUnspecified,
                "binding vanished",
            ));
        };
        let Some(uplink_key) = entry.addresses().uplink_gre_key else {
            return Err(Rejection::new(
                BindingAckStatus::ReasonUnspecified,
                "chained binding without its key",
            ));
        };
        let home = HomeGrant::of(record.home.ip(), &record.registration);
        if entry.mag().ip() != from.ip() {
            // Nothing of the binding goes to an ePDG that does not hold it.
            return Ok(Granted {
                addresses: Addresses::default(),
                lifetime: Lifetime(0),
                outcome: Outcome::DeregistrationFromOldMag,
                home: None,
            });
        }
        let deregistered = |outcome| Granted {
            addresses: home.addresses(uplink_key),
            lifetime: Lifetime(0),
            outcome,
            home: Some(home),
        };
        let held = home.home_network_prefix.map(|p| p.trunc());
        if !pbu
            .home_network_prefixes
            .iter()
            .all(|p| is_any_prefix(p) || Some(p.trunc()) == held)
        {
            return Err(Rejection::new(
                BindingAckStatus::BcePbuPrefixSetDoNotMatch,
                "de-registration names a prefix the binding does not hold",
            ));
        }
        if let Some(record) = self.unbind_chained(id, ChainDownReason::Deregistered, out) {
            self.list_input(bul::Input::Deregister(record.key), now, out);
        }
        Ok(deregistered(Outcome::Deregistered))
    }

    /// A de-registration from the ePDG while its PBU is held: cancel at home.
    pub(super) fn chain_cancel(
        &mut self,
        pbu: &ProxyBindingUpdate,
        from: MagAddress,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let key = key_of(pbu);
        let Some(chain) = self.chain.as_mut() else {
            return;
        };
        if chain
            .after_deregistration
            .get(&key)
            .is_some_and(|p| p.from.ip() == from.ip())
        {
            // Waiting for the old home registration to go: now it need not wait.
            chain.after_deregistration.remove(&key);
            return;
        }
        match chain.pending.get(&key) {
            Some(p) if p.from.ip() == from.ip() => {}
            _ => return,
        }
        let Some(pending) = chain.pending.remove(&key) else {
            return;
        };
        self.release_keys([pending.uplink_key, pending.home_downlink_key]);
        out.push(report(
            &key,
            pending.home.ip(),
            ChainEvent::Cancelled,
            "the ePDG de-registered before the home gateway answered".into(),
        ));
        self.list_input(bul::Input::Deregister(key), now, out);
        self.send_home_cleanup(&pending, now, out);
    }

    /// A re-registration from the ePDG for a chained binding: checked here, then held
    /// and propagated (the home registration is refreshed now); answered when the home
    /// answers ([`Lma::answer_refresh`], or with the home's error on `Lost`).
    pub(super) fn chain_refresh(
        &mut self,
        id: BindingId,
        pbu: &ProxyBindingUpdate,
        from: MagAddress,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Result<(), Rejection> {
        let Some(record) = self.chain.as_ref().and_then(|c| c.records.get(&id)) else {
            return Err(Rejection::new(
                BindingAckStatus::ReasonUnspecified,
                "binding vanished",
            ));
        };
        let home = HomeGrant::of(record.home.ip(), &record.registration);
        let held = home.home_network_prefix.map(|p| p.trunc());
        if !pbu
            .home_network_prefixes
            .iter()
            .all(|p| is_any_prefix(p) || Some(p.trunc()) == held)
        {
            return Err(Rejection::new(
                BindingAckStatus::BcePbuPrefixSetDoNotMatch,
                "home network prefix differs from the one the home gateway assigned",
            ));
        }
        if let Some(request) = pbu.ipv4_home_address_request {
            let wanted = request.addr();
            let assigned = home.ipv4_home_address.map(|a| a.addr());
            if !wanted.is_unspecified() && assigned.is_some_and(|a| a != wanted) {
                return Err(Rejection::ipv4(
                    BindingAckStatus::NotAuthorizedForIpv4HomeAddress,
                    Ipv4HomeAddressReplyStatus::IncorrectIpv4HomeAddress,
                    "IPv4 home address differs from the one the home gateway assigned",
                ));
            }
        }
        let (key, chain) = chain_for(&mut self.chain, pbu)?;
        let held = HeldRefresh {
            pbu: pbu.clone(),
            from,
        };
        // A retransmission while the home refresh is under way replaces the held one.
        if chain.refreshing.insert(key.clone(), held).is_none() {
            self.list_input(bul::Input::Refresh(key), now, out);
        }
        Ok(())
    }

    /// The home refreshed: the held re-registration takes effect and is answered.
    fn answer_refresh(
        &mut self,
        id: BindingId,
        held: HeldRefresh,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let (Some(entry), Some(record)) = (
            self.cache.get(id),
            self.chain.as_ref().and_then(|c| c.records.get(&id)),
        ) else {
            return;
        };
        let Some(uplink_key) = entry.addresses().uplink_gre_key else {
            return;
        };
        let (pbu, from) = (&held.pbu, held.from);
        let home = HomeGrant::of(record.home.ip(), &record.registration);
        let home_lifetime = record.registration.lifetime;
        let before = (entry.mag(), entry.state.downlink_gre_key);
        let old_technology = entry.state.access_technology;
        let previous_expiry = entry.state.expires;
        let lifetime = self.granted_lifetime(pbu.lifetime).min(home_lifetime);
        let expires = self.arm(id, now, lifetime, Some(previous_expiry));
        // Only fails for a binding that is gone, checked above.
        let _ = self.cache.set_mag(id, from);
        if let Some(state) = self.cache.state_mut(id) {
            state.refresh_from(pbu, lifetime, expires);
        }
        if before != (from, pbu.gre_key) {
            if let Some(info) = self.chain_info(id) {
                out.push(Output::ChainUp(info));
            }
        }
        // A handoff to another ePDG (the takeover module): the old one is told now.
        let trigger = RevocationTrigger::handoff(old_technology, pbu.access_technology);
        self.moved(id, before.0, from, Some(trigger), now, out);
        let granted = Granted {
            addresses: home.addresses(uplink_key),
            lifetime,
            outcome: Outcome::Refreshed,
            home: Some(home),
        };
        self.stats.pbus_accepted += 1;
        let ack = self.accept_ack(pbu, &granted);
        self.send(from, MobilityMessage::BindingAck(ack), out);
        out.push(Output::Report(pbu_report(
            from,
            pbu,
            &granted,
            BindingAckStatus::Accepted,
            None,
        )));
    }

    /// The home network prefix of a chained binding (`Some`, possibly without a prefix),
    /// or `None` for a binding that is not chained.
    pub(super) fn chain_home_prefix(&self, id: BindingId) -> Option<Option<Ipv6Net>> {
        let record = self.chain.as_ref()?.records.get(&id)?;
        Some(record.registration.home_network_prefix.map(|p| p.trunc()))
    }

    /// A chained binding revoked here (by its ePDG, or replaced): removed, and
    /// de-registered at home. False if it was gone.
    pub(super) fn chain_revoke(
        &mut self,
        id: BindingId,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> bool {
        match self.unbind_chained(id, ChainDownReason::Revoked, out) {
            Some(record) => {
                self.list_input(bul::Input::Deregister(record.key), now, out);
                true
            }
            None => false,
        }
    }

    /// A chained binding expired here: de-register at home too.
    pub(super) fn chain_expire(&mut self, id: BindingId, now: Instant, out: &mut Vec<Output>) {
        self.stats.expired += 1;
        if let Some(record) = self.unbind_chained(id, ChainDownReason::Expired, out) {
            self.list_input(bul::Input::Deregister(record.key), now, out);
        }
    }

    fn chain_info(&self, id: BindingId) -> Option<ChainInfo> {
        let entry = self.cache.get(id)?;
        let record = self.chain.as_ref()?.records.get(&id)?;
        Some(ChainInfo {
            id,
            mn_id: entry.mn_id().to_string(),
            apn: entry.apn().map(str::to_string),
            epdg: entry.mag(),
            uplink_key: entry.addresses().uplink_gre_key?,
            epdg_downlink_key: entry.state.downlink_gre_key?,
            home: record.home,
            home_uplink_key: record.registration.uplink_gre_key?,
            home_downlink_key: record.home_downlink_key,
            ipv4_home_address: record.registration.ipv4_home_address.map(|a| a.addr()),
            home_network_prefix: record.registration.home_network_prefix,
        })
    }
}

fn report(key: &MobileNodeKey, home: IpAddr, event: ChainEvent, detail: String) -> Output {
    Output::Chain(ChainReport {
        mn_id: key.mn_id.to_string(),
        apn: key.apn.as_deref().map(str::to_string),
        home,
        event,
        detail,
    })
}

fn pbu_report(
    from: MagAddress,
    pbu: &ProxyBindingUpdate,
    granted: &Granted,
    status: BindingAckStatus,
    reason: Option<&'static str>,
) -> PbuReport {
    PbuReport {
        mag: from,
        mn_id: Some(pbu.mn_id.clone()),
        apn: pbu.apn.clone(),
        sequence: pbu.sequence,
        outcome: granted.outcome,
        status,
        lifetime: granted.lifetime,
        addresses: granted.addresses,
        reason,
        home: granted.home.map(|h| h.home),
    }
}

#[cfg(test)]
mod tests;
