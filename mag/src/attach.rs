//! One UE's attach at the ePDG (TS 23.402 section 7.2; docs/attach.md), sans-IO: the EAP
//! relay between the IKE SA and the AAA (SWm DER/DEA), the authorization for the APN
//! (AAR/AAA, unless the DEA already named the gateway), the proxy registration at the LMA,
//! and the gate: the EAP-Success the AAA sent is held until the LMA accepted the binding,
//! and only then handed to the IKE SA with the addresses the LMA allocated.
//!
//! Inputs are IKE events, Diameter answers, registration results and timeouts; outputs are
//! IKE actions, Diameter requests and registration requests. Every failure ends the
//! IKE_AUTH with an error notify and cleans up behind it: a Session-Termination-Request
//! for the AAA session and a de-registration for a binding that was made.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::{Ipv4Net, Ipv6Net};
use pmip_common::binding_update_list::{
    MobileNodeKey, Registration, RegistrationFailure, RegistrationRequest,
};
use pmip_common::diameter::codes::result;
use pmip_common::diameter::swm::{
    AaAnswer, AaRequest, AnswerResult, AuthRequestType, DiameterEapAnswer, DiameterEapRequest,
    Mip6AgentInfo, SessionTerminationRequest, TerminationCause, RAT_TYPE_WLAN,
};
use pmip_common::eap::{Code, EapPacket, EapRepr, TypeData, HEADER_LEN};
use pmip_common::ike::responder::{Acceptance, AuthRequest};
use pmip_common::ike::sa::CloseReason;
use pmip_common::ike::wire::{ConfigAttribute, Identification, NotifyType, TrafficSelector};
use pmip_common::mh::{GreKey, HandoffIndicator, ThreeGppOption, VendorSpecific};

/// What every attach procedure of one ePDG shares.
#[derive(Debug, Clone)]
pub struct AttachConfig {
    /// Our Diameter identity (Origin-Host, Origin-Realm) and the AAA's realm.
    pub origin_host: String,
    pub origin_realm: String,
    pub destination_realm: String,
    /// The UDP port of IPv4 transport at the LMA (RFC 5844: 5436).
    pub lma_port: u16,
    /// The APN when the UE's IDr names none.
    pub default_apn: Option<String>,
    /// Handed to the UE in the CFG_REPLY.
    pub dns: Vec<IpAddr>,
    pub pcscf: Vec<IpAddr>,
    /// How long a DEA or AAA may take before the AAA counts as down.
    pub diameter_timeout: Duration,
}

impl Default for AttachConfig {
    fn default() -> Self {
        AttachConfig {
            origin_host: "epdg.epc.example.org".into(),
            origin_realm: "epc.example.org".into(),
            destination_realm: "epc.example.org".into(),
            lma_port: 5436,
            default_apn: None,
            dns: Vec::new(),
            pcscf: Vec::new(),
            diameter_timeout: Duration::from_secs(5),
        }
    }
}

/// What the driver feeds in.
#[derive(Debug, Clone)]
pub enum Input {
    /// The UE's first IKE_AUTH request (NAI in IDi, APN in IDr).
    AuthRequested(Box<AuthRequest>),
    /// An EAP response of the UE.
    EapFromUe(Vec<u8>),
    Dea(Box<DiameterEapAnswer>),
    Aaa(Box<AaAnswer>),
    /// A request could not be sent: no open connection to the AAA.
    AaaUnavailable,
    /// The LMA accepted the binding.
    Registered(Box<Registration>),
    /// The registration failed (rejected, or no PBA after the retransmissions).
    RegistrationFailed(RegistrationFailure),
    /// A registered binding was lost (refresh refused or unanswered).
    BindingLost(RegistrationFailure),
    /// A newer IKE SA of the same UE and APN took the binding over: end the AAA session
    /// and the IKE SA, but leave the binding alone.
    Superseded,
    /// The IKE SA and its CHILD_SA are up.
    IkeEstablished,
    /// The IKE SA is gone.
    IkeClosed(CloseReason),
    /// The deadline of [`Attach::poll_timeout`] passed.
    Timeout,
}

/// What the driver carries out, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Relay this EAP request of the AAA to the UE.
    SendEap(Vec<u8>),
    /// The binding is up: release the held EAP-Success.
    EapSuccess {
        eap: Vec<u8>,
        msk: Vec<u8>,
        acceptance: Acceptance,
    },
    /// End IKE_AUTH with this error notify.
    Reject {
        notify: NotifyType,
        eap_failure: Option<Vec<u8>>,
    },
    /// Delete the established IKE SA.
    DeleteIke,
    Der(Box<DiameterEapRequest>),
    Aar(Box<AaRequest>),
    Str(Box<SessionTerminationRequest>),
    Register(Box<RegistrationRequest>),
    Deregister(MobileNodeKey),
    /// The UE is attached (for the log and the status file).
    Attached(Box<AttachInfo>),
    /// The procedure is over; drop it.
    Finished(Outcome),
}

/// A successful attach, as the admin sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachInfo {
    pub nai: String,
    pub apn: String,
    pub lma: SocketAddr,
    pub ipv4: Option<Ipv4Net>,
    pub ipv6_prefix: Option<Ipv6Net>,
    pub uplink_gre_key: Option<GreKey>,
    pub downlink_gre_key: GreKey,
}

/// How an attach ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Attached and later detached (or the IKE SA went away).
    Detached(String),
    /// Rejected with this notify, for this reason.
    Rejected { notify: NotifyType, reason: String },
    /// The IKE SA ended before the attach finished.
    Abandoned(String),
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    /// Waiting for the UE's first IKE_AUTH.
    Idle,
    /// A DER is out.
    AwaitingDea {
        deadline: Instant,
    },
    /// An EAP request is with the UE.
    AwaitingUe,
    /// EAP succeeded; the EAP-Success is held. An AAR is out.
    Authorizing {
        held: Held,
        deadline: Instant,
    },
    /// A PBU is out (the list retransmits it).
    Registering {
        held: Held,
    },
    /// EAP-Success sent; waiting for the UE's AUTH.
    Releasing {
        info: AttachInfo,
    },
    Established {
        info: AttachInfo,
    },
    Done,
}

/// The EAP-Success and MSK the AAA sent, held back until the PBA.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    eap_success: Vec<u8>,
    msk: Vec<u8>,
}

/// One UE's attach procedure.
#[derive(Debug)]
pub struct Attach {
    config: Arc<AttachConfig>,
    session_id: String,
    downlink_gre_key: GreKey,
    nai: String,
    apn: String,
    /// Whether an AAA session exists (a DER was sent).
    session: bool,
    /// Whether a PBU was sent for this UE (a binding may exist at the LMA).
    binding: bool,
    /// EAP identifier of the last request relayed, for a synthesised EAP-Failure.
    last_eap_id: u8,
    state: State,
}

/// The EAP-Response/Identity the ePDG builds from IDi (RFC 7296 section 2.16; RFC 3748
/// section 5.1), identifier 0. An identity longer than an EAP packet can carry is cut
/// to fit (an IKE message cannot bring one that long anyway).
pub fn eap_response_identity(identity: &[u8]) -> Vec<u8> {
    let room = usize::from(u16::MAX) - HEADER_LEN - 1;
    EapRepr::Response {
        identifier: 0,
        data: TypeData::Identity(identity[..identity.len().min(room)].to_vec()),
    }
    .to_bytes()
    .unwrap_or_default()
}

/// The Code of an EAP packet, if it is one.
fn eap_code(eap: &[u8]) -> Option<Code> {
    EapPacket::new_checked(eap).ok().map(|p| p.code())
}

fn identification_text(id: &Identification) -> Option<String> {
    match id {
        Identification::Rfc822Addr(s) | Identification::Fqdn(s) => Some(s.clone()),
        _ => None,
    }
}

/// One gateway's address: IPv4 first (the lab's transport), else IPv6.
fn address(info: &Mip6AgentInfo) -> Option<IpAddr> {
    let a = &info.home_agent_addresses;
    a.iter()
        .find(|a| a.is_ipv4())
        .or_else(|| a.first())
        .copied()
}

/// Where to register, and the home gateway to chain to when roaming. The AAA lists the home
/// gateway first; a visited AAA proxy appends the visited gateway it picked
/// (docs/attach.md, "Roaming"), so with two gateways the PBU goes to the last one and
/// carries the first in the 3GPP PDN GW IP address option (TS 29.275).
fn gateway(infos: &[Mip6AgentInfo]) -> Option<(IpAddr, Option<IpAddr>)> {
    let mut addresses: Vec<IpAddr> = Vec::new();
    for a in infos.iter().filter_map(address) {
        if !addresses.contains(&a) {
            addresses.push(a);
        }
    }
    match addresses[..] {
        [] => None,
        [only] => Some((only, None)),
        [home, .., visited] => Some((visited, Some(home))),
    }
}

/// The TS 24.302 private notify that fits a Diameter failure, else AUTHENTICATION_FAILED.
pub fn notify_for(result: &AnswerResult) -> NotifyType {
    match result {
        AnswerResult::Experimental { code, .. } => match *code {
            result::DIAMETER_ERROR_USER_UNKNOWN => NotifyType::UserUnknown,
            result::DIAMETER_ERROR_USER_NO_APN_SUBSCRIPTION => NotifyType::NoApnSubscription,
            result::DIAMETER_ERROR_ROAMING_NOT_ALLOWED => NotifyType::PlmnNotAllowed,
            result::DIAMETER_ERROR_USER_NO_NON_3GPP_SUBSCRIPTION => {
                NotifyType::Non3gppAccessToEpcNotAllowed
            }
            _ => NotifyType::AuthenticationFailed,
        },
        AnswerResult::ResultCode(result::DIAMETER_AUTHORIZATION_REJECTED) => {
            NotifyType::AuthorizationRejected
        }
        AnswerResult::ResultCode(code) if result::is_protocol_error(*code) => {
            NotifyType::NetworkFailure
        }
        AnswerResult::ResultCode(_) => NotifyType::AuthenticationFailed,
    }
}

impl Attach {
    /// A new procedure for one IKE SA; `session_id` names its AAA session.
    pub fn new(config: Arc<AttachConfig>, session_id: String, downlink_gre_key: GreKey) -> Self {
        Attach {
            config,
            session_id,
            downlink_gre_key,
            nai: String::new(),
            apn: String::new(),
            session: false,
            binding: false,
            last_eap_id: 0,
            state: State::Idle,
        }
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    pub fn nai(&self) -> &str {
        &self.nai
    }

    pub fn apn(&self) -> &str {
        &self.apn
    }

    /// The binding key, once the UE named itself.
    pub fn key(&self) -> MobileNodeKey {
        MobileNodeKey::new(&self.nai, Some(&self.apn))
    }

    /// The GRE key the LMA uses toward us for this UE.
    pub fn downlink_gre_key(&self) -> GreKey {
        self.downlink_gre_key
    }

    /// Takes over a binding made by an older IKE SA of this UE, with its GRE key.
    pub fn adopt_downlink_gre_key(&mut self, key: GreKey) {
        self.downlink_gre_key = key;
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether this UE has a session at the AAA: a DER was sent and no STR yet (nor was
    /// the AAA found unreachable, which ends the session without one).
    pub fn has_aaa_session(&self) -> bool {
        self.session
    }

    /// Whether the UE is attached.
    pub fn info(&self) -> Option<&AttachInfo> {
        match &self.state {
            State::Established { info } => Some(info),
            _ => None,
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::AwaitingDea { deadline } | State::Authorizing { deadline, .. } => {
                Some(*deadline)
            }
            _ => None,
        }
    }

    pub fn handle(&mut self, input: Input, now: Instant, out: &mut Vec<Output>) {
        match (self.state.clone(), input) {
            (State::Done, _) => {}
            (_, Input::IkeClosed(reason)) => self.ike_closed(reason, out),
            (State::Idle, Input::AuthRequested(request)) => self.start(&request, now, out),
            (State::AwaitingUe, Input::EapFromUe(eap)) => {
                self.send_der(eap, now, out);
            }
            (State::AwaitingDea { .. }, Input::Dea(dea)) if dea.session_id == self.session_id => {
                self.dea(*dea, now, out)
            }
            (State::Authorizing { held, .. }, Input::Aaa(aaa))
                if aaa.session_id == self.session_id =>
            {
                self.aaa(held, *aaa, out)
            }
            (State::AwaitingDea { .. } | State::Authorizing { .. }, Input::AaaUnavailable) => {
                // No connection: no STR can reach the AAA either.
                self.session = false;
                self.fail(
                    NotifyType::NetworkFailure,
                    "AAA server unreachable".into(),
                    out,
                );
            }
            (
                State::AwaitingDea { deadline } | State::Authorizing { deadline, .. },
                Input::Timeout,
            ) if now >= deadline => {
                self.fail(
                    NotifyType::NetworkFailure,
                    "no answer from the AAA server".into(),
                    out,
                );
            }
            (State::Registering { held }, Input::Registered(registration)) => {
                self.release(held, *registration, out)
            }
            (State::Registering { .. }, Input::RegistrationFailed(reason)) => {
                // The list dropped its entry; nothing to de-register.
                self.binding = false;
                let notify = match reason {
                    RegistrationFailure::Timeout(_) => NotifyType::NetworkFailure,
                    _ => NotifyType::PdnConnectionRejection,
                };
                self.fail(notify, format!("proxy registration failed: {reason}"), out);
            }
            (State::Releasing { info }, Input::IkeEstablished) => {
                out.push(Output::Attached(Box::new(info.clone())));
                self.state = State::Established { info };
            }
            (_, Input::Superseded) => {
                self.binding = false;
                out.push(Output::DeleteIke);
                self.terminate(TerminationCause::UserMoved, out);
                self.finish(
                    Outcome::Detached("superseded by a new IKE SA of the same UE".into()),
                    out,
                );
            }
            (State::Releasing { .. } | State::Established { .. }, Input::BindingLost(reason)) => {
                self.binding = false;
                out.push(Output::DeleteIke);
                self.terminate(TerminationCause::ServiceNotProvided, out);
                self.finish(Outcome::Detached(format!("binding lost: {reason}")), out);
            }
            _ => {}
        }
    }

    fn start(&mut self, request: &AuthRequest, now: Instant, out: &mut Vec<Output>) {
        let Some(nai) = identification_text(&request.idi) else {
            self.fail(
                NotifyType::AuthenticationFailed,
                "IDi is not an NAI".into(),
                out,
            );
            return;
        };
        self.nai = nai;
        let apn = request
            .idr
            .as_ref()
            .and_then(identification_text)
            .or_else(|| self.config.default_apn.clone());
        let Some(apn) = apn else {
            self.fail(
                NotifyType::NoApnSubscription,
                "no APN in IDr and no default APN".into(),
                out,
            );
            return;
        };
        self.apn = apn;
        let identity = eap_response_identity(self.nai.as_bytes());
        self.send_der(identity, now, out);
    }

    fn send_der(&mut self, eap: Vec<u8>, now: Instant, out: &mut Vec<Output>) {
        self.session = true;
        out.push(Output::Der(Box::new(DiameterEapRequest {
            session_id: self.session_id.clone(),
            origin_host: self.config.origin_host.clone(),
            origin_realm: self.config.origin_realm.clone(),
            destination_realm: self.config.destination_realm.clone(),
            destination_host: None,
            auth_request_type: AuthRequestType::AuthorizeAuthenticate,
            eap_payload: eap,
            user_name: Some(self.nai.clone()),
            rat_type: Some(RAT_TYPE_WLAN),
            service_selection: Some(self.apn.clone()),
            mip6_feature_vector: None,
            visited_network_identifier: None,
            route_record: Vec::new(),
            proxy_info: Vec::new(),
            other: Vec::new(),
        })));
        self.state = State::AwaitingDea {
            deadline: now + self.config.diameter_timeout,
        };
    }

    fn dea(&mut self, dea: DiameterEapAnswer, now: Instant, out: &mut Vec<Output>) {
        if let Some(packet) = dea
            .eap_payload
            .as_deref()
            .and_then(|e| EapPacket::new_checked(e).ok())
        {
            self.last_eap_id = packet.identifier();
        }
        if dea.result.code() == result::DIAMETER_MULTI_ROUND_AUTH {
            match dea.eap_payload {
                Some(eap) => {
                    out.push(Output::SendEap(eap));
                    self.state = State::AwaitingUe;
                }
                None => self.fail(
                    NotifyType::AuthenticationFailed,
                    "multi-round DEA without EAP".into(),
                    out,
                ),
            }
            return;
        }
        if !dea.result.is_success() {
            let reason = format!(
                "AAA rejected the authentication: {:?}{}",
                dea.result,
                dea.error_message
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            );
            let failure = dea
                .eap_payload
                .filter(|e| eap_code(e) == Some(Code::Failure));
            self.reject(notify_for(&dea.result), failure, reason, out);
            return;
        }
        let Some(msk) = dea.eap_master_session_key else {
            self.fail(
                NotifyType::AuthenticationFailed,
                "DEA success without an MSK".into(),
                out,
            );
            return;
        };
        let eap_success = dea
            .eap_payload
            .filter(|e| eap_code(e) == Some(Code::Success))
            .unwrap_or_else(|| EapRepr::success_bytes(self.last_eap_id).to_vec());
        let held = Held { eap_success, msk };
        let mut infos = dea.mip6_agent_info;
        if let Some(info) = dea.apn_configuration.and_then(|c| c.mip6_agent_info) {
            infos.push(info);
        }
        match gateway(&infos) {
            Some((lma, home)) => self.register(held, lma, home, out),
            None => {
                out.push(Output::Aar(Box::new(AaRequest {
                    session_id: self.session_id.clone(),
                    origin_host: self.config.origin_host.clone(),
                    origin_realm: self.config.origin_realm.clone(),
                    destination_realm: self.config.destination_realm.clone(),
                    destination_host: None,
                    auth_request_type: AuthRequestType::AuthorizeOnly,
                    user_name: Some(self.nai.clone()),
                    service_selection: Some(self.apn.clone()),
                    visited_network_identifier: None,
                    mip6_agent_info: Vec::new(),
                    route_record: Vec::new(),
                    proxy_info: Vec::new(),
                    other: Vec::new(),
                })));
                self.state = State::Authorizing {
                    held,
                    deadline: now + self.config.diameter_timeout,
                };
            }
        }
    }

    fn aaa(&mut self, held: Held, aaa: AaAnswer, out: &mut Vec<Output>) {
        if !aaa.result.is_success() {
            self.fail(
                notify_for(&aaa.result),
                format!("AAA refused APN {}: {:?}", self.apn, aaa.result),
                out,
            );
            return;
        }
        let mut infos = aaa.mip6_agent_info;
        if let Some(info) = aaa.apn_configuration.and_then(|c| c.mip6_agent_info) {
            infos.push(info);
        }
        match gateway(&infos) {
            Some((lma, home)) => self.register(held, lma, home, out),
            None => self.fail(
                NotifyType::NoApnSubscription,
                format!("AAA named no gateway for APN {}", self.apn),
                out,
            ),
        }
    }

    fn register(&mut self, held: Held, lma: IpAddr, home: Option<IpAddr>, out: &mut Vec<Output>) {
        self.binding = true;
        out.push(Output::Register(Box::new(RegistrationRequest {
            key: self.key(),
            lma: SocketAddr::new(lma, self.config.lma_port),
            request_home_network_prefix: true,
            request_ipv4_home_address: true,
            downlink_gre_key: Some(self.downlink_gre_key),
            handoff: HandoffIndicator::AttachmentOverNewInterface,
            vendor: home
                .map(|h| VendorSpecific::ThreeGpp(ThreeGppOption::PdnGwIpAddress(h)))
                .into_iter()
                .collect(),
        })));
        self.state = State::Registering { held };
    }

    /// The gate: the PBA accepted the binding, so the held EAP-Success goes out now.
    fn release(&mut self, held: Held, registration: Registration, out: &mut Vec<Output>) {
        let info = AttachInfo {
            nai: self.nai.clone(),
            apn: self.apn.clone(),
            lma: registration.lma,
            ipv4: registration.ipv4_home_address,
            ipv6_prefix: registration.home_network_prefix,
            uplink_gre_key: registration.uplink_gre_key,
            downlink_gre_key: self.downlink_gre_key,
        };
        out.push(Output::EapSuccess {
            eap: held.eap_success,
            msk: held.msk,
            acceptance: acceptance(&self.config, &info),
        });
        self.state = State::Releasing { info };
    }

    fn ike_closed(&mut self, reason: CloseReason, out: &mut Vec<Output>) {
        let was = std::mem::replace(&mut self.state, State::Done);
        let attached = matches!(was, State::Established { .. });
        self.cleanup(out);
        let text = format!("IKE SA closed: {reason:?}");
        let outcome = match reason {
            CloseReason::NotifySent(notify) => Outcome::Rejected {
                notify,
                reason: text,
            },
            _ if attached => Outcome::Detached(text),
            _ => Outcome::Abandoned(text),
        };
        self.finish(outcome, out);
    }

    fn fail(&mut self, notify: NotifyType, reason: String, out: &mut Vec<Output>) {
        let failure = self
            .session
            .then(|| EapRepr::failure_bytes(self.last_eap_id).to_vec())
            .filter(|_| {
                matches!(
                    self.state,
                    State::Authorizing { .. } | State::Registering { .. }
                )
            });
        self.reject(notify, failure, reason, out)
    }

    fn reject(
        &mut self,
        notify: NotifyType,
        eap_failure: Option<Vec<u8>>,
        reason: String,
        out: &mut Vec<Output>,
    ) {
        out.push(Output::Reject {
            notify,
            eap_failure,
        });
        self.cleanup(out);
        self.finish(Outcome::Rejected { notify, reason }, out);
    }

    /// Removes what the attach left on other nodes: the binding and the AAA session.
    fn cleanup(&mut self, out: &mut Vec<Output>) {
        if std::mem::take(&mut self.binding) {
            out.push(Output::Deregister(self.key()));
        }
        self.terminate(TerminationCause::Logout, out);
    }

    fn terminate(&mut self, cause: TerminationCause, out: &mut Vec<Output>) {
        if std::mem::take(&mut self.session) {
            out.push(Output::Str(Box::new(SessionTerminationRequest {
                session_id: self.session_id.clone(),
                origin_host: self.config.origin_host.clone(),
                origin_realm: self.config.origin_realm.clone(),
                destination_realm: self.config.destination_realm.clone(),
                destination_host: None,
                termination_cause: cause,
                user_name: Some(self.nai.clone()),
                route_record: Vec::new(),
                proxy_info: Vec::new(),
                other: Vec::new(),
            })));
        }
    }

    fn finish(&mut self, outcome: Outcome, out: &mut Vec<Output>) {
        self.state = State::Done;
        out.push(Output::Finished(outcome));
    }
}

/// The CFG_REPLY and traffic selectors for an attached UE.
fn acceptance(config: &AttachConfig, info: &AttachInfo) -> Acceptance {
    let mut cp_reply = Vec::new();
    let mut tsi = Vec::new();
    if let Some(v4) = info.ipv4 {
        cp_reply.push(ConfigAttribute::InternalIp4Address(Some(v4.addr())));
        tsi.push(range(v4.addr().into(), v4.addr().into()));
    }
    if let Some(v6) = info.ipv6_prefix {
        cp_reply.push(ConfigAttribute::InternalIp6Address(Some((
            v6.network(),
            v6.prefix_len(),
        ))));
        tsi.push(range(v6.network().into(), v6.broadcast().into()));
    }
    for dns in &config.dns {
        cp_reply.push(match dns {
            IpAddr::V4(a) => ConfigAttribute::InternalIp4Dns(Some(*a)),
            IpAddr::V6(a) => ConfigAttribute::InternalIp6Dns(Some(*a)),
        });
    }
    for pcscf in &config.pcscf {
        cp_reply.push(match pcscf {
            IpAddr::V4(a) => ConfigAttribute::PCscfIp4Address(Some(*a)),
            IpAddr::V6(a) => ConfigAttribute::PCscfIp6Address(Some(*a)),
        });
    }
    if tsi.is_empty() {
        tsi = vec![TrafficSelector::any_ipv4(), TrafficSelector::any_ipv6()];
    }
    Acceptance {
        cp_reply,
        tsi,
        tsr: vec![TrafficSelector::any_ipv4(), TrafficSelector::any_ipv6()],
    }
}

fn range(start: IpAddr, end: IpAddr) -> TrafficSelector {
    TrafficSelector::AddrRange {
        ip_protocol: 0,
        start_port: 0,
        end_port: 65535,
        start_address: start,
        end_address: end,
    }
}

#[cfg(test)]
mod tests;
