//! The SWm application between the ePDG and the 3GPP AAA server (TS 29.273 section 7,
//! application id 16777264): Diameter-EAP (DER/DEA, RFC 4072 as profiled by TS 29.273
//! section 7.2.2.1.1-2), AA (AAR/AAA, RFC 7155 as profiled by section 7.2.2.1.3-4) and
//! Session-Termination (STR/STA, RFC 6733 section 8.4 as profiled by section 7.2.2.2),
//! with the grouped AVPs they carry.
//!
//! Each command is a typed struct that builds its [`Message`] (AVPs in the order of the
//! ABNF) and parses one back, checking required AVPs, occurrence limits, data formats and
//! the M-bit rule; AVPs it does not model are kept in `other` and re-emitted.
//!
//! Two extensions, both allowed by the `*[ AVP ]` of the ABNFs: the AAR may carry
//! Service-Selection (the APN the UE asked for; TS 29.273 puts it in the SWm DER and in the
//! S6b AAR, section 9) and Visited-Network-Identifier; DEA and AAA may carry several
//! MIP6-Agent-Info AVPs, as RFC 5447 section 4.2.1 allows "where the NAS receives HA
//! information from an MN's home network and locally allocated HA information from the
//! visited network": the roaming case, home gateway and visited gateway.
//!
//! An answer with the E bit set follows the generic answer-message of RFC 6733 section 7.2
//! (no Auth-Application-Id): check `message.header.flags.error()` and read
//! [`Message::result_code`] before the typed parse.

use std::net::IpAddr;

use super::avp::{Address, Avp};
use super::codes::{application, avp, command, result, vendor};
use super::error::Error;
use super::message::{CommandFlags, Header, Message};
use super::read::{opt_enum, opt_identity, opt_u32, opt_u64, opt_utf8, AvpId, AvpReader};
use crate::registry::registry;

const TGPP: Option<u32> = Some(vendor::TGPP);

/// AVPs of the base protocol that SWm commands may carry and that are kept in `other`
/// even with the M bit (RFC 6733 sections 8.11, 8.16, 8.20, 8.13, 8.19, 7.4; RFC 4072).
const TOLERATED: &[AvpId] = &[
    (avp::AUTH_SESSION_STATE, None),
    (avp::ORIGIN_STATE_ID, None),
    (avp::CLASS, None),
    (avp::MULTI_ROUND_TIME_OUT, None),
    (avp::ERROR_REPORTING_HOST, None),
    (avp::EAP_REISSUED_PAYLOAD, None),
];

registry! {
    /// Auth-Request-Type values (RFC 6733 section 8.7).
    pub enum AuthRequestType: i32 {
        AuthenticateOnly = 1 => "AUTHENTICATE_ONLY",
        AuthorizeOnly = 2 => "AUTHORIZE_ONLY",
        AuthorizeAuthenticate = 3 => "AUTHORIZE_AUTHENTICATE",
    }
}

registry! {
    /// Termination-Cause values (RFC 6733 section 8.15, IANA "Termination-Cause AVP Values").
    pub enum TerminationCause: i32 {
        Logout = 1 => "DIAMETER_LOGOUT",
        ServiceNotProvided = 2 => "DIAMETER_SERVICE_NOT_PROVIDED",
        BadAnswer = 3 => "DIAMETER_BAD_ANSWER",
        Administrative = 4 => "DIAMETER_ADMINISTRATIVE",
        LinkBroken = 5 => "DIAMETER_LINK_BROKEN",
        AuthExpired = 6 => "DIAMETER_AUTH_EXPIRED",
        UserMoved = 7 => "DIAMETER_USER_MOVED",
        SessionTimeout = 8 => "DIAMETER_SESSION_TIMEOUT",
    }
}

registry! {
    /// PDN-Type values (TS 29.272 section 7.3.62).
    pub enum PdnType: i32 {
        Ipv4 = 0 => "IPv4",
        Ipv6 = 1 => "IPv6",
        Ipv4v6 = 2 => "IPv4v6",
        Ipv4OrIpv6 = 3 => "IPv4_OR_IPv6",
    }
}

registry! {
    /// RAT-Type values (TS 29.212 section 5.3.31).
    pub enum RatType: i32 {
        Wlan = 0 => "WLAN",
        Virtual = 1 => "VIRTUAL",
        Utran = 1000 => "UTRAN",
        Geran = 1001 => "GERAN",
        Gan = 1002 => "GAN",
        HspaEvolution = 1003 => "HSPA_EVOLUTION",
        Eutran = 1004 => "EUTRAN",
        Cdma2000_1x = 2000 => "CDMA2000_1X",
        Hrpd = 2001 => "HRPD",
        Umb = 2002 => "UMB",
        Ehrpd = 2003 => "EHRPD",
    }
}

/// A Session-Id in the format RFC 6733 section 8.8 recommends:
/// `<DiameterIdentity>;<high 32 bits>;<low 32 bits>[;<optional value>]`.
pub fn session_id(origin_host: &str, high: u32, low: u32, optional: Option<&str>) -> String {
    match optional {
        Some(extra) => format!("{origin_host};{high};{low};{extra}"),
        None => format!("{origin_host};{high};{low}"),
    }
}

/// RAT-Type value WLAN (TS 29.212 section 5.3.31), what an ePDG reports.
pub const RAT_TYPE_WLAN: i32 = RatType::Wlan.value();

/// The outcome an answer carries: a Result-Code, or an Experimental-Result (RFC 6733
/// sections 7.1 and 7.6; answers of vendor applications carry one of the two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnswerResult {
    /// Result-Code.
    ResultCode(u32),
    /// Experimental-Result: Vendor-Id and Experimental-Result-Code, e.g. 3GPP's
    /// DIAMETER_ERROR_USER_UNKNOWN (TS 29.273 section 10).
    Experimental { vendor_id: u32, code: u32 },
}

impl AnswerResult {
    /// DIAMETER_SUCCESS.
    pub const SUCCESS: AnswerResult = AnswerResult::ResultCode(result::DIAMETER_SUCCESS);

    /// A 3GPP Experimental-Result-Code.
    pub fn tgpp(code: u32) -> Self {
        AnswerResult::Experimental {
            vendor_id: vendor::TGPP,
            code,
        }
    }

    /// The code, whichever AVP carries it.
    pub fn code(&self) -> u32 {
        match self {
            AnswerResult::ResultCode(c) | AnswerResult::Experimental { code: c, .. } => *c,
        }
    }

    /// A 2xxx code.
    pub fn is_success(&self) -> bool {
        result::is_success(self.code())
    }

    /// A 3xxx Result-Code, which needs the E bit.
    pub fn is_protocol_error(&self) -> bool {
        matches!(self, AnswerResult::ResultCode(c) if result::is_protocol_error(*c))
    }

    fn to_avp(self) -> Avp {
        match self {
            AnswerResult::ResultCode(c) => Avp::u32(avp::RESULT_CODE, c),
            AnswerResult::Experimental { vendor_id, code } => Avp::grouped(
                avp::EXPERIMENTAL_RESULT,
                &[
                    Avp::u32(avp::VENDOR_ID, vendor_id),
                    Avp::u32(avp::EXPERIMENTAL_RESULT_CODE, code),
                ],
            ),
        }
    }

    fn read(r: &mut AvpReader<'_>) -> Result<Self, Error> {
        let code = r.optional((avp::RESULT_CODE, None))?;
        let experimental = r.optional((avp::EXPERIMENTAL_RESULT, None))?;
        match (code, experimental) {
            (Some(c), None) => Ok(AnswerResult::ResultCode(c.as_u32()?)),
            (None, Some(group)) => {
                let members = group.as_grouped()?;
                let read = || -> Result<AnswerResult, Error> {
                    let mut g = AvpReader::new(&members);
                    let vendor_id = g.required((avp::VENDOR_ID, None), 4)?.as_u32()?;
                    let code = g.required((avp::EXPERIMENTAL_RESULT_CODE, None), 4)?;
                    let code = code.as_u32()?;
                    g.rest(&[])?;
                    Ok(AnswerResult::Experimental { vendor_id, code })
                };
                read().map_err(|e| e.within(group))
            }
            (None, None) => Err(Error::missing(avp::RESULT_CODE, None, 4)),
            (Some(_), Some(extra)) => Err(Error::InvalidAvpValue {
                failed: extra.clone(),
            }),
        }
    }
}

/// MIP-Home-Agent-Host (RFC 4004, used by RFC 5447 section 4.2.3): the realm and host of a
/// home agent (here, a PDN gateway).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MipHomeAgentHost {
    /// Destination-Realm.
    pub destination_realm: String,
    /// Destination-Host.
    pub destination_host: String,
}

/// MIP6-Agent-Info (RFC 5447 section 4.2.1): where the mobility anchor is. On SWm it names
/// the PDN gateway (LMA) of a PDN connection (TS 29.273, TS 29.272 section 7.3.35).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Mip6AgentInfo {
    /// MIP-Home-Agent-Address, at most two (an IPv4 and an IPv6 one).
    pub home_agent_addresses: Vec<IpAddr>,
    /// MIP-Home-Agent-Host.
    pub home_agent_host: Option<MipHomeAgentHost>,
    /// MIP6-Home-Link-Prefix: prefix length octet then 16 address octets (RFC 5447
    /// section 4.2.4), kept as bytes.
    pub home_link_prefix: Option<Vec<u8>>,
    /// Other members, kept as received.
    pub other: Vec<Avp>,
}

impl Mip6AgentInfo {
    /// A gateway known by address.
    pub fn address(address: IpAddr) -> Self {
        Mip6AgentInfo {
            home_agent_addresses: vec![address],
            ..Default::default()
        }
    }

    /// The grouped AVP.
    pub fn to_avp(&self) -> Avp {
        let mut members: Vec<Avp> = self
            .home_agent_addresses
            .iter()
            .map(|ip| Avp::address(avp::MIP_HOME_AGENT_ADDRESS, &Address::Ip(*ip)))
            .collect();
        if let Some(host) = &self.home_agent_host {
            members.push(Avp::grouped(
                avp::MIP_HOME_AGENT_HOST,
                &[
                    Avp::identity(avp::DESTINATION_REALM, &host.destination_realm),
                    Avp::identity(avp::DESTINATION_HOST, &host.destination_host),
                ],
            ));
        }
        if let Some(prefix) = &self.home_link_prefix {
            members.push(Avp::octets(avp::MIP6_HOME_LINK_PREFIX, prefix));
        }
        members.extend(self.other.iter().cloned());
        Avp::grouped(avp::MIP6_AGENT_INFO, &members)
    }

    /// Reads the grouped AVP. More than two addresses is
    /// DIAMETER_AVP_OCCURS_TOO_MANY_TIMES; neither an address nor a host is
    /// DIAMETER_MISSING_AVP (RFC 5447 section 4.2.1: it "MUST contain either").
    pub fn from_avp(group: &Avp) -> Result<Self, Error> {
        let members = group.as_grouped()?;
        Self::read_members(&members).map_err(|e| e.within(group))
    }

    fn read_members(members: &[Avp]) -> Result<Self, Error> {
        let mut r = AvpReader::new(members);
        let addresses = r.all((avp::MIP_HOME_AGENT_ADDRESS, None));
        if let Some(third) = addresses.get(2) {
            return Err(Error::AvpOccursTooManyTimes {
                failed: (*third).clone(),
            });
        }
        let home_agent_addresses = addresses
            .into_iter()
            .map(Avp::as_ip)
            .collect::<Result<Vec<_>, _>>()?;
        let home_agent_host = match r.optional((avp::MIP_HOME_AGENT_HOST, None))? {
            None => None,
            Some(host) => {
                let inner = host.as_grouped()?;
                let mut h = AvpReader::new(&inner);
                let read = || -> Result<MipHomeAgentHost, Error> {
                    let realm = h.required((avp::DESTINATION_REALM, None), 1)?;
                    let destination_realm = realm.as_identity()?.to_owned();
                    let dest = h.required((avp::DESTINATION_HOST, None), 1)?;
                    let destination_host = dest.as_identity()?.to_owned();
                    h.rest(&[])?;
                    Ok(MipHomeAgentHost {
                        destination_realm,
                        destination_host,
                    })
                };
                Some(read().map_err(|e| e.within(host))?)
            }
        };
        if home_agent_addresses.is_empty() && home_agent_host.is_none() {
            return Err(Error::missing(avp::MIP_HOME_AGENT_ADDRESS, None, 6));
        }
        let home_link_prefix = r
            .optional((avp::MIP6_HOME_LINK_PREFIX, None))?
            .map(|a| a.data.clone());
        Ok(Mip6AgentInfo {
            home_agent_addresses,
            home_agent_host,
            home_link_prefix,
            other: r.rest(&[])?,
        })
    }
}

/// APN-Configuration (TS 29.272 section 7.3.35, used on SWm by TS 29.273): one subscribed
/// APN and, when assigned, its PDN gateway.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApnConfiguration {
    /// Context-Identifier (never 0).
    pub context_identifier: u32,
    /// PDN-Type.
    pub pdn_type: PdnType,
    /// Service-Selection: the APN.
    pub service_selection: String,
    /// MIP6-Agent-Info: the PDN gateway.
    pub mip6_agent_info: Option<Mip6AgentInfo>,
    /// Visited-Network-Identifier: the PLMN where the gateway was allocated.
    pub visited_network_identifier: Option<Vec<u8>>,
    /// Other members (Served-Party-IP-Address, AMBR, QoS profile...), kept as received.
    /// 3GPP members with the M bit are accepted here: the ABNF lists many of them.
    pub other: Vec<Avp>,
}

impl ApnConfiguration {
    /// The grouped AVP (vendor 3GPP, V and M set).
    pub fn to_avp(&self) -> Avp {
        let mut members = vec![
            Avp::u32(avp::CONTEXT_IDENTIFIER, self.context_identifier).with_vendor(vendor::TGPP),
            Avp::enumerated(avp::PDN_TYPE, self.pdn_type.into()).with_vendor(vendor::TGPP),
            Avp::utf8(avp::SERVICE_SELECTION, &self.service_selection),
        ];
        if let Some(info) = &self.mip6_agent_info {
            members.push(info.to_avp());
        }
        if let Some(vni) = &self.visited_network_identifier {
            members
                .push(Avp::octets(avp::VISITED_NETWORK_IDENTIFIER, vni).with_vendor(vendor::TGPP));
        }
        members.extend(self.other.iter().cloned());
        Avp::grouped(avp::APN_CONFIGURATION, &members).with_vendor(vendor::TGPP)
    }

    /// Reads the grouped AVP.
    pub fn from_avp(group: &Avp) -> Result<Self, Error> {
        let members = group.as_grouped()?;
        Self::read_members(&members).map_err(|e| e.within(group))
    }

    fn read_members(members: &[Avp]) -> Result<Self, Error> {
        let mut r = AvpReader::new(members);
        let context_identifier = r.required((avp::CONTEXT_IDENTIFIER, TGPP), 4)?.as_u32()?;
        let pdn_type = r
            .required((avp::PDN_TYPE, TGPP), 4)?
            .as_enumerated()?
            .into();
        let service_selection = r
            .required((avp::SERVICE_SELECTION, None), 0)?
            .as_utf8()?
            .to_owned();
        let mip6_agent_info = r
            .optional((avp::MIP6_AGENT_INFO, None))?
            .map(Mip6AgentInfo::from_avp)
            .transpose()?;
        let visited_network_identifier = r
            .optional((avp::VISITED_NETWORK_IDENTIFIER, TGPP))?
            .map(|a| a.data.clone());
        let tolerated: Vec<AvpId> = members
            .iter()
            .filter(|a| a.vendor_id == TGPP)
            .map(|a| (a.code, a.vendor_id))
            .collect();
        Ok(ApnConfiguration {
            context_identifier,
            pdn_type,
            service_selection,
            mip6_agent_info,
            visited_network_identifier,
            other: r.rest(&tolerated)?,
        })
    }
}

/// Checks command code, R bit and application id of an SWm message. SWm requests are
/// proxiable (PXY in every ABNF of TS 29.273 section 7.2.2): a request without P is
/// DIAMETER_INVALID_HDR_BITS.
fn check_header(message: &Message, code: u32, request: bool) -> Result<(), Error> {
    let header = &message.header;
    if header.command_code != code {
        return Err(Error::CommandUnsupported(header.command_code));
    }
    if header.flags.request() != request || (request && !header.flags.proxiable()) {
        return Err(Error::InvalidHdrBits(header.flags.0));
    }
    if header.application_id != application::SWM {
        return Err(Error::ApplicationUnsupported(header.application_id));
    }
    Ok(())
}

fn swm_request_header(code: u32, hop_by_hop: u32, end_to_end: u32) -> Header {
    Header::request(code, application::SWM, true, hop_by_hop, end_to_end)
}

/// Answer header: P kept from the request, E set for protocol errors.
fn swm_answer_header(request: &Header, result: &AnswerResult) -> Header {
    let mut header = request.answer(result.is_protocol_error());
    header.flags = header.flags.with_proxiable(true);
    header
}

fn read_auth_application_id(r: &mut AvpReader<'_>) -> Result<(), Error> {
    let id = r.required((avp::AUTH_APPLICATION_ID, None), 4)?;
    if id.as_u32()? != application::SWM {
        return Err(Error::InvalidAvpValue { failed: id.clone() });
    }
    Ok(())
}

fn required_identity(r: &mut AvpReader<'_>, code: u32) -> Result<String, Error> {
    Ok(r.required((code, None), 1)?.as_identity()?.to_owned())
}

fn read_route_records(r: &mut AvpReader<'_>) -> Result<Vec<String>, Error> {
    Ok(r.all((avp::ROUTE_RECORD, None))
        .into_iter()
        .map(|a| a.as_identity().map(str::to_owned))
        .collect::<Result<_, _>>()?)
}

/// The Proxy-Info AVPs, kept as they came to be echoed in the answer (RFC 6733 section
/// 6.7.2), each checked to be a well-formed Grouped AVP first: a member that overruns its
/// group is DIAMETER_INVALID_AVP_LENGTH with the group around the offending member as the
/// Failed-AVP (section 7.5), not something to echo back.
fn read_proxy_info(r: &mut AvpReader<'_>) -> Result<Vec<Avp>, Error> {
    let groups: Vec<Avp> = r
        .all((avp::PROXY_INFO, None))
        .into_iter()
        .cloned()
        .collect();
    for group in &groups {
        group.as_grouped()?;
    }
    Ok(groups)
}

fn read_mip6_agent_infos(r: &mut AvpReader<'_>) -> Result<Vec<Mip6AgentInfo>, Error> {
    r.all((avp::MIP6_AGENT_INFO, None))
        .into_iter()
        .map(Mip6AgentInfo::from_avp)
        .collect()
}

fn read_failed_avp(r: &mut AvpReader<'_>) -> Result<Vec<Avp>, Error> {
    let mut failed = Vec::new();
    for group in r.all((avp::FAILED_AVP, None)) {
        failed.extend(group.as_grouped()?);
    }
    Ok(failed)
}

fn push_tail(m: &mut Message, route_record: &[String], proxy_info: &[Avp], other: &[Avp]) {
    for host in route_record {
        m.push(Avp::identity(avp::ROUTE_RECORD, host));
    }
    m.avps.extend(proxy_info.iter().cloned());
    m.avps.extend(other.iter().cloned());
}

fn push_error_avps(m: &mut Message, error_message: &Option<String>, failed_avp: &[Avp]) {
    if let Some(text) = error_message {
        m.push(Avp::utf8(avp::ERROR_MESSAGE, text).with_mandatory(false));
    }
    if !failed_avp.is_empty() {
        m.push(Avp::grouped(avp::FAILED_AVP, failed_avp));
    }
}

/// Diameter-EAP-Request on SWm (TS 29.273 section 7.2.2.1.1): the ePDG relays one EAP
/// response of the UE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DiameterEapRequest {
    /// Session-Id.
    pub session_id: String,
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// Destination-Realm.
    pub destination_realm: String,
    /// Destination-Host.
    pub destination_host: Option<String>,
    /// Auth-Request-Type (AUTHORIZE_AUTHENTICATE on SWm).
    pub auth_request_type: AuthRequestType,
    /// EAP-Payload: the EAP packet.
    pub eap_payload: Vec<u8>,
    /// User-Name: the NAI.
    pub user_name: Option<String>,
    /// RAT-Type.
    pub rat_type: Option<i32>,
    /// Service-Selection: the APN.
    pub service_selection: Option<String>,
    /// MIP6-Feature-Vector.
    pub mip6_feature_vector: Option<u64>,
    /// Visited-Network-Identifier.
    pub visited_network_identifier: Option<Vec<u8>>,
    /// Route-Record, added by each relay or proxy (RFC 6733 section 6.7.1).
    pub route_record: Vec<String>,
    /// Proxy-Info AVPs, kept as they are.
    pub proxy_info: Vec<Avp>,
    /// Other AVPs, kept as received.
    pub other: Vec<Avp>,
}

impl DiameterEapRequest {
    /// The DER message.
    pub fn to_message(&self, hop_by_hop: u32, end_to_end: u32) -> Message {
        let mut m = Message::new(swm_request_header(
            command::DIAMETER_EAP,
            hop_by_hop,
            end_to_end,
        ))
        .with(Avp::utf8(avp::SESSION_ID, &self.session_id))
        .with(Avp::u32(avp::AUTH_APPLICATION_ID, application::SWM))
        .with(Avp::identity(avp::ORIGIN_HOST, &self.origin_host))
        .with(Avp::identity(avp::ORIGIN_REALM, &self.origin_realm))
        .with(Avp::identity(
            avp::DESTINATION_REALM,
            &self.destination_realm,
        ));
        if let Some(host) = &self.destination_host {
            m.push(Avp::identity(avp::DESTINATION_HOST, host));
        }
        m.push(Avp::enumerated(
            avp::AUTH_REQUEST_TYPE,
            self.auth_request_type.into(),
        ));
        m.push(Avp::octets(avp::EAP_PAYLOAD, &self.eap_payload));
        if let Some(user) = &self.user_name {
            m.push(Avp::utf8(avp::USER_NAME, user));
        }
        if let Some(rat) = self.rat_type {
            m.push(Avp::enumerated(avp::RAT_TYPE, rat).with_vendor(vendor::TGPP));
        }
        if let Some(apn) = &self.service_selection {
            m.push(Avp::utf8(avp::SERVICE_SELECTION, apn));
        }
        if let Some(v) = self.mip6_feature_vector {
            m.push(Avp::u64(avp::MIP6_FEATURE_VECTOR, v));
        }
        if let Some(vni) = &self.visited_network_identifier {
            m.push(Avp::octets(avp::VISITED_NETWORK_IDENTIFIER, vni).with_vendor(vendor::TGPP));
        }
        push_tail(&mut m, &self.route_record, &self.proxy_info, &self.other);
        m
    }

    /// Reads a DER.
    pub fn parse(message: &Message) -> Result<Self, Error> {
        check_header(message, command::DIAMETER_EAP, true)?;
        let mut r = AvpReader::new(&message.avps);
        let session_id = r
            .required((avp::SESSION_ID, None), 1)?
            .as_utf8()?
            .to_owned();
        read_auth_application_id(&mut r)?;
        Ok(DiameterEapRequest {
            session_id,
            origin_host: required_identity(&mut r, avp::ORIGIN_HOST)?,
            origin_realm: required_identity(&mut r, avp::ORIGIN_REALM)?,
            destination_realm: required_identity(&mut r, avp::DESTINATION_REALM)?,
            destination_host: opt_identity(r.optional((avp::DESTINATION_HOST, None))?)?,
            auth_request_type: r
                .required((avp::AUTH_REQUEST_TYPE, None), 4)?
                .as_enumerated()?
                .into(),
            // Failed-AVP for a missing EAP-Payload: zero-filled to the 4-octet EAP header, the
            // minimum an EAP packet can be (RFC 6733 section 7.5, RFC 3748 section 4).
            eap_payload: r.required((avp::EAP_PAYLOAD, None), 4)?.data.clone(),
            user_name: opt_utf8(r.optional((avp::USER_NAME, None))?)?,
            rat_type: opt_enum(r.optional((avp::RAT_TYPE, TGPP))?)?,
            service_selection: opt_utf8(r.optional((avp::SERVICE_SELECTION, None))?)?,
            mip6_feature_vector: opt_u64(r.optional((avp::MIP6_FEATURE_VECTOR, None))?)?,
            visited_network_identifier: r
                .optional((avp::VISITED_NETWORK_IDENTIFIER, TGPP))?
                .map(|a| a.data.clone()),
            route_record: read_route_records(&mut r)?,
            proxy_info: read_proxy_info(&mut r)?,
            other: r.rest(TOLERATED)?,
        })
    }
}

/// Diameter-EAP-Answer on SWm (TS 29.273 section 7.2.2.1.2): the next EAP request for the
/// UE, or the outcome with the MSK and the authorization data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DiameterEapAnswer {
    /// Session-Id.
    pub session_id: String,
    /// Auth-Request-Type, as in the request.
    pub auth_request_type: AuthRequestType,
    /// Result-Code or Experimental-Result.
    pub result: AnswerResult,
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// EAP-Payload.
    pub eap_payload: Option<Vec<u8>>,
    /// User-Name.
    pub user_name: Option<String>,
    /// EAP-Master-Session-Key: the MSK, on success.
    pub eap_master_session_key: Option<Vec<u8>>,
    /// APN-Configuration.
    pub apn_configuration: Option<ApnConfiguration>,
    /// MIP6-Feature-Vector.
    pub mip6_feature_vector: Option<u64>,
    /// Session-Timeout.
    pub session_timeout: Option<u32>,
    /// MIP6-Agent-Info, home and (when roaming) visited gateway.
    pub mip6_agent_info: Vec<Mip6AgentInfo>,
    /// Error-Message.
    pub error_message: Option<String>,
    /// The AVPs inside Failed-AVP.
    pub failed_avp: Vec<Avp>,
    /// Proxy-Info AVPs, copied from the request.
    pub proxy_info: Vec<Avp>,
    /// Other AVPs, kept as received.
    pub other: Vec<Avp>,
}

impl DiameterEapAnswer {
    /// An answer with only the mandatory AVPs filled in.
    pub fn new(
        request: &DiameterEapRequest,
        result: AnswerResult,
        origin_host: &str,
        origin_realm: &str,
    ) -> Self {
        DiameterEapAnswer {
            session_id: request.session_id.clone(),
            auth_request_type: request.auth_request_type,
            result,
            origin_host: origin_host.to_owned(),
            origin_realm: origin_realm.to_owned(),
            eap_payload: None,
            user_name: None,
            eap_master_session_key: None,
            apn_configuration: None,
            mip6_feature_vector: None,
            session_timeout: None,
            mip6_agent_info: Vec::new(),
            error_message: None,
            failed_avp: Vec::new(),
            proxy_info: request.proxy_info.clone(),
            other: Vec::new(),
        }
    }

    /// The DEA answering the request whose header is `request`.
    pub fn to_message(&self, request: &Header) -> Message {
        let mut m = Message::new(swm_answer_header(request, &self.result))
            .with(Avp::utf8(avp::SESSION_ID, &self.session_id))
            .with(Avp::u32(avp::AUTH_APPLICATION_ID, application::SWM))
            .with(Avp::enumerated(
                avp::AUTH_REQUEST_TYPE,
                self.auth_request_type.into(),
            ))
            .with(self.result.to_avp())
            .with(Avp::identity(avp::ORIGIN_HOST, &self.origin_host))
            .with(Avp::identity(avp::ORIGIN_REALM, &self.origin_realm));
        if let Some(eap) = &self.eap_payload {
            m.push(Avp::octets(avp::EAP_PAYLOAD, eap));
        }
        if let Some(user) = &self.user_name {
            m.push(Avp::utf8(avp::USER_NAME, user));
        }
        if let Some(msk) = &self.eap_master_session_key {
            m.push(Avp::octets(avp::EAP_MASTER_SESSION_KEY, msk));
        }
        if let Some(apn) = &self.apn_configuration {
            m.push(apn.to_avp());
        }
        if let Some(v) = self.mip6_feature_vector {
            m.push(Avp::u64(avp::MIP6_FEATURE_VECTOR, v));
        }
        if let Some(t) = self.session_timeout {
            m.push(Avp::u32(avp::SESSION_TIMEOUT, t));
        }
        for info in &self.mip6_agent_info {
            m.push(info.to_avp());
        }
        push_error_avps(&mut m, &self.error_message, &self.failed_avp);
        push_tail(&mut m, &[], &self.proxy_info, &self.other);
        m
    }

    /// Reads a DEA.
    pub fn parse(message: &Message) -> Result<Self, Error> {
        check_header(message, command::DIAMETER_EAP, false)?;
        let mut r = AvpReader::new(&message.avps);
        let session_id = r
            .required((avp::SESSION_ID, None), 1)?
            .as_utf8()?
            .to_owned();
        read_auth_application_id(&mut r)?;
        Ok(DiameterEapAnswer {
            session_id,
            auth_request_type: r
                .required((avp::AUTH_REQUEST_TYPE, None), 4)?
                .as_enumerated()?
                .into(),
            result: AnswerResult::read(&mut r)?,
            origin_host: required_identity(&mut r, avp::ORIGIN_HOST)?,
            origin_realm: required_identity(&mut r, avp::ORIGIN_REALM)?,
            eap_payload: r
                .optional((avp::EAP_PAYLOAD, None))?
                .map(|a| a.data.clone()),
            user_name: opt_utf8(r.optional((avp::USER_NAME, None))?)?,
            eap_master_session_key: r
                .optional((avp::EAP_MASTER_SESSION_KEY, None))?
                .map(|a| a.data.clone()),
            apn_configuration: r
                .optional((avp::APN_CONFIGURATION, TGPP))?
                .map(ApnConfiguration::from_avp)
                .transpose()?,
            mip6_feature_vector: opt_u64(r.optional((avp::MIP6_FEATURE_VECTOR, None))?)?,
            session_timeout: opt_u32(r.optional((avp::SESSION_TIMEOUT, None))?)?,
            mip6_agent_info: read_mip6_agent_infos(&mut r)?,
            error_message: opt_utf8(r.optional((avp::ERROR_MESSAGE, None))?)?,
            failed_avp: read_failed_avp(&mut r)?,
            proxy_info: read_proxy_info(&mut r)?,
            other: r.rest(TOLERATED)?,
        })
    }
}

/// AA-Request on SWm (TS 29.273 section 7.2.2.1.3): the ePDG asks for authorization,
/// here for one APN (Service-Selection, see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AaRequest {
    /// Session-Id.
    pub session_id: String,
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// Destination-Realm.
    pub destination_realm: String,
    /// Destination-Host.
    pub destination_host: Option<String>,
    /// Auth-Request-Type (AUTHORIZE_ONLY on SWm).
    pub auth_request_type: AuthRequestType,
    /// User-Name.
    pub user_name: Option<String>,
    /// Service-Selection: the APN.
    pub service_selection: Option<String>,
    /// Visited-Network-Identifier.
    pub visited_network_identifier: Option<Vec<u8>>,
    /// MIP6-Agent-Info as a hint (RFC 5447 section 4.2.1 allows it in requests).
    pub mip6_agent_info: Vec<Mip6AgentInfo>,
    /// Route-Record.
    pub route_record: Vec<String>,
    /// Proxy-Info AVPs.
    pub proxy_info: Vec<Avp>,
    /// Other AVPs, kept as received.
    pub other: Vec<Avp>,
}

impl AaRequest {
    /// The AAR message.
    pub fn to_message(&self, hop_by_hop: u32, end_to_end: u32) -> Message {
        let mut m = Message::new(swm_request_header(command::AA, hop_by_hop, end_to_end))
            .with(Avp::utf8(avp::SESSION_ID, &self.session_id))
            .with(Avp::u32(avp::AUTH_APPLICATION_ID, application::SWM))
            .with(Avp::identity(avp::ORIGIN_HOST, &self.origin_host))
            .with(Avp::identity(avp::ORIGIN_REALM, &self.origin_realm))
            .with(Avp::identity(
                avp::DESTINATION_REALM,
                &self.destination_realm,
            ));
        if let Some(host) = &self.destination_host {
            m.push(Avp::identity(avp::DESTINATION_HOST, host));
        }
        m.push(Avp::enumerated(
            avp::AUTH_REQUEST_TYPE,
            self.auth_request_type.into(),
        ));
        if let Some(user) = &self.user_name {
            m.push(Avp::utf8(avp::USER_NAME, user));
        }
        if let Some(apn) = &self.service_selection {
            m.push(Avp::utf8(avp::SERVICE_SELECTION, apn));
        }
        if let Some(vni) = &self.visited_network_identifier {
            m.push(Avp::octets(avp::VISITED_NETWORK_IDENTIFIER, vni).with_vendor(vendor::TGPP));
        }
        for info in &self.mip6_agent_info {
            m.push(info.to_avp());
        }
        push_tail(&mut m, &self.route_record, &self.proxy_info, &self.other);
        m
    }

    /// Reads an AAR.
    pub fn parse(message: &Message) -> Result<Self, Error> {
        check_header(message, command::AA, true)?;
        let mut r = AvpReader::new(&message.avps);
        let session_id = r
            .required((avp::SESSION_ID, None), 1)?
            .as_utf8()?
            .to_owned();
        read_auth_application_id(&mut r)?;
        Ok(AaRequest {
            session_id,
            origin_host: required_identity(&mut r, avp::ORIGIN_HOST)?,
            origin_realm: required_identity(&mut r, avp::ORIGIN_REALM)?,
            destination_realm: required_identity(&mut r, avp::DESTINATION_REALM)?,
            destination_host: opt_identity(r.optional((avp::DESTINATION_HOST, None))?)?,
            auth_request_type: r
                .required((avp::AUTH_REQUEST_TYPE, None), 4)?
                .as_enumerated()?
                .into(),
            user_name: opt_utf8(r.optional((avp::USER_NAME, None))?)?,
            service_selection: opt_utf8(r.optional((avp::SERVICE_SELECTION, None))?)?,
            visited_network_identifier: r
                .optional((avp::VISITED_NETWORK_IDENTIFIER, TGPP))?
                .map(|a| a.data.clone()),
            mip6_agent_info: read_mip6_agent_infos(&mut r)?,
            route_record: read_route_records(&mut r)?,
            proxy_info: read_proxy_info(&mut r)?,
            other: r.rest(TOLERATED)?,
        })
    }
}

/// AA-Answer on SWm (TS 29.273 section 7.2.2.1.4): the authorization, with the APN's
/// configuration and its gateway(s).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AaAnswer {
    /// Session-Id.
    pub session_id: String,
    /// Auth-Request-Type, as in the request.
    pub auth_request_type: AuthRequestType,
    /// Result-Code or Experimental-Result.
    pub result: AnswerResult,
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// User-Name.
    pub user_name: Option<String>,
    /// APN-Configuration.
    pub apn_configuration: Option<ApnConfiguration>,
    /// Session-Timeout.
    pub session_timeout: Option<u32>,
    /// MIP6-Agent-Info, home and (when roaming) visited gateway.
    pub mip6_agent_info: Vec<Mip6AgentInfo>,
    /// Error-Message.
    pub error_message: Option<String>,
    /// The AVPs inside Failed-AVP.
    pub failed_avp: Vec<Avp>,
    /// Proxy-Info AVPs, copied from the request.
    pub proxy_info: Vec<Avp>,
    /// Other AVPs, kept as received.
    pub other: Vec<Avp>,
}

impl AaAnswer {
    /// An answer with only the mandatory AVPs filled in.
    pub fn new(
        request: &AaRequest,
        result: AnswerResult,
        origin_host: &str,
        origin_realm: &str,
    ) -> Self {
        AaAnswer {
            session_id: request.session_id.clone(),
            auth_request_type: request.auth_request_type,
            result,
            origin_host: origin_host.to_owned(),
            origin_realm: origin_realm.to_owned(),
            user_name: request.user_name.clone(),
            apn_configuration: None,
            session_timeout: None,
            mip6_agent_info: Vec::new(),
            error_message: None,
            failed_avp: Vec::new(),
            proxy_info: request.proxy_info.clone(),
            other: Vec::new(),
        }
    }

    /// The AAA answering the request whose header is `request`.
    pub fn to_message(&self, request: &Header) -> Message {
        let mut m = Message::new(swm_answer_header(request, &self.result))
            .with(Avp::utf8(avp::SESSION_ID, &self.session_id))
            .with(Avp::u32(avp::AUTH_APPLICATION_ID, application::SWM))
            .with(Avp::enumerated(
                avp::AUTH_REQUEST_TYPE,
                self.auth_request_type.into(),
            ))
            .with(self.result.to_avp())
            .with(Avp::identity(avp::ORIGIN_HOST, &self.origin_host))
            .with(Avp::identity(avp::ORIGIN_REALM, &self.origin_realm));
        if let Some(user) = &self.user_name {
            m.push(Avp::utf8(avp::USER_NAME, user));
        }
        if let Some(apn) = &self.apn_configuration {
            m.push(apn.to_avp());
        }
        if let Some(t) = self.session_timeout {
            m.push(Avp::u32(avp::SESSION_TIMEOUT, t));
        }
        for info in &self.mip6_agent_info {
            m.push(info.to_avp());
        }
        push_error_avps(&mut m, &self.error_message, &self.failed_avp);
        push_tail(&mut m, &[], &self.proxy_info, &self.other);
        m
    }

    /// Reads an AAA.
    pub fn parse(message: &Message) -> Result<Self, Error> {
        check_header(message, command::AA, false)?;
        let mut r = AvpReader::new(&message.avps);
        let session_id = r
            .required((avp::SESSION_ID, None), 1)?
            .as_utf8()?
            .to_owned();
        read_auth_application_id(&mut r)?;
        Ok(AaAnswer {
            session_id,
            auth_request_type: r
                .required((avp::AUTH_REQUEST_TYPE, None), 4)?
                .as_enumerated()?
                .into(),
            result: AnswerResult::read(&mut r)?,
            origin_host: required_identity(&mut r, avp::ORIGIN_HOST)?,
            origin_realm: required_identity(&mut r, avp::ORIGIN_REALM)?,
            user_name: opt_utf8(r.optional((avp::USER_NAME, None))?)?,
            apn_configuration: r
                .optional((avp::APN_CONFIGURATION, TGPP))?
                .map(ApnConfiguration::from_avp)
                .transpose()?,
            session_timeout: opt_u32(r.optional((avp::SESSION_TIMEOUT, None))?)?,
            mip6_agent_info: read_mip6_agent_infos(&mut r)?,
            error_message: opt_utf8(r.optional((avp::ERROR_MESSAGE, None))?)?,
            failed_avp: read_failed_avp(&mut r)?,
            proxy_info: read_proxy_info(&mut r)?,
            other: r.rest(TOLERATED)?,
        })
    }
}

/// Session-Termination-Request on SWm (TS 29.273 section 7.2.2.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionTerminationRequest {
    /// Session-Id.
    pub session_id: String,
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// Destination-Realm.
    pub destination_realm: String,
    /// Destination-Host.
    pub destination_host: Option<String>,
    /// Termination-Cause.
    pub termination_cause: TerminationCause,
    /// User-Name.
    pub user_name: Option<String>,
    /// Route-Record.
    pub route_record: Vec<String>,
    /// Proxy-Info AVPs.
    pub proxy_info: Vec<Avp>,
    /// Other AVPs, kept as received.
    pub other: Vec<Avp>,
}

impl SessionTerminationRequest {
    /// The STR message.
    pub fn to_message(&self, hop_by_hop: u32, end_to_end: u32) -> Message {
        let mut m = Message::new(swm_request_header(
            command::SESSION_TERMINATION,
            hop_by_hop,
            end_to_end,
        ))
        .with(Avp::utf8(avp::SESSION_ID, &self.session_id))
        .with(Avp::identity(avp::ORIGIN_HOST, &self.origin_host))
        .with(Avp::identity(avp::ORIGIN_REALM, &self.origin_realm))
        .with(Avp::identity(
            avp::DESTINATION_REALM,
            &self.destination_realm,
        ));
        if let Some(host) = &self.destination_host {
            m.push(Avp::identity(avp::DESTINATION_HOST, host));
        }
        m.push(Avp::u32(avp::AUTH_APPLICATION_ID, application::SWM));
        m.push(Avp::enumerated(
            avp::TERMINATION_CAUSE,
            self.termination_cause.into(),
        ));
        if let Some(user) = &self.user_name {
            m.push(Avp::utf8(avp::USER_NAME, user));
        }
        push_tail(&mut m, &self.route_record, &self.proxy_info, &self.other);
        m
    }

    /// Reads an STR.
    pub fn parse(message: &Message) -> Result<Self, Error> {
        check_header(message, command::SESSION_TERMINATION, true)?;
        let mut r = AvpReader::new(&message.avps);
        let session_id = r
            .required((avp::SESSION_ID, None), 1)?
            .as_utf8()?
            .to_owned();
        let origin_host = required_identity(&mut r, avp::ORIGIN_HOST)?;
        let origin_realm = required_identity(&mut r, avp::ORIGIN_REALM)?;
        let destination_realm = required_identity(&mut r, avp::DESTINATION_REALM)?;
        let destination_host = opt_identity(r.optional((avp::DESTINATION_HOST, None))?)?;
        read_auth_application_id(&mut r)?;
        Ok(SessionTerminationRequest {
            session_id,
            origin_host,
            origin_realm,
            destination_realm,
            destination_host,
            termination_cause: r
                .required((avp::TERMINATION_CAUSE, None), 4)?
                .as_enumerated()?
                .into(),
            user_name: opt_utf8(r.optional((avp::USER_NAME, None))?)?,
            route_record: read_route_records(&mut r)?,
            proxy_info: read_proxy_info(&mut r)?,
            other: r.rest(TOLERATED)?,
        })
    }
}

/// Session-Termination-Answer on SWm (TS 29.273 section 7.2.2.2.2, RFC 6733 section 8.4.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionTerminationAnswer {
    /// Session-Id.
    pub session_id: String,
    /// Result-Code.
    pub result_code: u32,
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// User-Name.
    pub user_name: Option<String>,
    /// Error-Message.
    pub error_message: Option<String>,
    /// The AVPs inside Failed-AVP.
    pub failed_avp: Vec<Avp>,
    /// Proxy-Info AVPs, copied from the request.
    pub proxy_info: Vec<Avp>,
    /// Other AVPs, kept as received.
    pub other: Vec<Avp>,
}

impl SessionTerminationAnswer {
    /// The STA answering the request whose header is `request`.
    pub fn to_message(&self, request: &Header) -> Message {
        let result = AnswerResult::ResultCode(self.result_code);
        let mut m = Message::new(swm_answer_header(request, &result))
            .with(Avp::utf8(avp::SESSION_ID, &self.session_id))
            .with(result.to_avp())
            .with(Avp::identity(avp::ORIGIN_HOST, &self.origin_host))
            .with(Avp::identity(avp::ORIGIN_REALM, &self.origin_realm));
        if let Some(user) = &self.user_name {
            m.push(Avp::utf8(avp::USER_NAME, user));
        }
        push_error_avps(&mut m, &self.error_message, &self.failed_avp);
        push_tail(&mut m, &[], &self.proxy_info, &self.other);
        m
    }

    /// Reads an STA.
    pub fn parse(message: &Message) -> Result<Self, Error> {
        check_header(message, command::SESSION_TERMINATION, false)?;
        let mut r = AvpReader::new(&message.avps);
        Ok(SessionTerminationAnswer {
            session_id: r
                .required((avp::SESSION_ID, None), 1)?
                .as_utf8()?
                .to_owned(),
            result_code: r.required((avp::RESULT_CODE, None), 4)?.as_u32()?,
            origin_host: required_identity(&mut r, avp::ORIGIN_HOST)?,
            origin_realm: required_identity(&mut r, avp::ORIGIN_REALM)?,
            user_name: opt_utf8(r.optional((avp::USER_NAME, None))?)?,
            error_message: opt_utf8(r.optional((avp::ERROR_MESSAGE, None))?)?,
            failed_avp: read_failed_avp(&mut r)?,
            proxy_info: read_proxy_info(&mut r)?,
            other: r.rest(TOLERATED)?,
        })
    }
}

/// Any SWm message, parsed by command code and R bit: what an AAA server or an ePDG
/// dispatches on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwmMessage {
    /// DER.
    Der(DiameterEapRequest),
    /// DEA.
    Dea(DiameterEapAnswer),
    /// AAR.
    Aar(AaRequest),
    /// AAA.
    Aaa(AaAnswer),
    /// STR.
    Str(SessionTerminationRequest),
    /// STA.
    Sta(SessionTerminationAnswer),
}

impl SwmMessage {
    /// Parses `message` as the SWm command its header names. Another command is
    /// DIAMETER_COMMAND_UNSUPPORTED.
    pub fn parse(message: &Message) -> Result<Self, Error> {
        let request = message.header.flags.0 & CommandFlags::REQUEST != 0;
        match (message.header.command_code, request) {
            (command::DIAMETER_EAP, true) => DiameterEapRequest::parse(message).map(Self::Der),
            (command::DIAMETER_EAP, false) => DiameterEapAnswer::parse(message).map(Self::Dea),
            (command::AA, true) => AaRequest::parse(message).map(Self::Aar),
            (command::AA, false) => AaAnswer::parse(message).map(Self::Aaa),
            (command::SESSION_TERMINATION, true) => {
                SessionTerminationRequest::parse(message).map(Self::Str)
            }
            (command::SESSION_TERMINATION, false) => {
                SessionTerminationAnswer::parse(message).map(Self::Sta)
            }
            (code, _) => Err(Error::CommandUnsupported(code)),
        }
    }
}
