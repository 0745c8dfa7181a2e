//! The base protocol's peer commands, typed: Capabilities-Exchange (CER/CEA, RFC 6733
//! section 5.3), Device-Watchdog (DWR/DWA, section 5.5) and Disconnect-Peer (DPR/DPA,
//! section 5.4). All use application id 0 and must not be proxied (P bit clear).

use super::avp::{Address, Avp};
use super::codes::{application, avp, command};
use super::error::Error;
use super::message::{Header, Message};
use super::read::{opt_u32, opt_utf8, AvpReader};
use crate::registry::registry;

const ERROR_MESSAGE_ID: (u32, Option<u32>) = (avp::ERROR_MESSAGE, None);

/// Checks the command code and the R and P bits of a base peer message: these commands are
/// never proxiable, so a P bit is DIAMETER_INVALID_HDR_BITS (RFC 6733 section 7.1.3).
fn check_header(message: &Message, code: u32, request: bool) -> Result<(), Error> {
    let flags = message.header.flags;
    if message.header.command_code != code {
        return Err(Error::CommandUnsupported(message.header.command_code));
    }
    if flags.request() != request {
        return Err(Error::InvalidHdrBits(flags.0));
    }
    if flags.proxiable() {
        return Err(Error::InvalidHdrBits(flags.0));
    }
    Ok(())
}

fn answer_header(request: &Header, result_code: u32) -> Header {
    request.answer(super::codes::result::is_protocol_error(result_code))
}

/// Vendor-Specific-Application-Id (RFC 6733 section 6.11): a vendor and exactly one of an
/// authentication or an accounting application id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VendorSpecificApplicationId {
    /// Vendor-Id.
    pub vendor_id: u32,
    /// Auth-Application-Id, or `None` when the accounting one is given.
    pub auth_application_id: Option<u32>,
    /// Acct-Application-Id.
    pub acct_application_id: Option<u32>,
}

impl VendorSpecificApplicationId {
    /// An authentication application of a vendor, e.g. SWm (16777264) of 3GPP (10415).
    pub fn auth(vendor_id: u32, application_id: u32) -> Self {
        VendorSpecificApplicationId {
            vendor_id,
            auth_application_id: Some(application_id),
            acct_application_id: None,
        }
    }

    /// The grouped AVP.
    pub fn to_avp(&self) -> Avp {
        let mut members = vec![Avp::u32(avp::VENDOR_ID, self.vendor_id)];
        if let Some(id) = self.auth_application_id {
            members.push(Avp::u32(avp::AUTH_APPLICATION_ID, id));
        }
        if let Some(id) = self.acct_application_id {
            members.push(Avp::u32(avp::ACCT_APPLICATION_ID, id));
        }
        Avp::grouped(avp::VENDOR_SPECIFIC_APPLICATION_ID, &members)
    }

    /// Reads the grouped AVP. Neither or both application ids is DIAMETER_INVALID_AVP_VALUE
    /// (RFC 6733 section 6.11 allows exactly one).
    pub fn from_avp(group: &Avp) -> Result<Self, Error> {
        let members = group.as_grouped()?;
        let mut r = AvpReader::new(&members);
        let vendor_id = r.required((avp::VENDOR_ID, None), 4)?.as_u32()?;
        let auth = opt_u32(r.optional((avp::AUTH_APPLICATION_ID, None))?)?;
        let acct = opt_u32(r.optional((avp::ACCT_APPLICATION_ID, None))?)?;
        r.rest(&[]).map_err(|e| e.within(group))?;
        if auth.is_some() == acct.is_some() {
            return Err(Error::InvalidAvpValue {
                failed: group.clone(),
            });
        }
        Ok(VendorSpecificApplicationId {
            vendor_id,
            auth_application_id: auth,
            acct_application_id: acct,
        })
    }
}

/// What a node advertises in CER and CEA (RFC 6733 sections 5.3.1 and 5.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// Host-IP-Address, one or more.
    pub host_ip_addresses: Vec<Address>,
    /// Vendor-Id of the implementation.
    pub vendor_id: u32,
    /// Product-Name (sent with the M bit clear, as RFC 6733 section 4.5 requires).
    pub product_name: String,
    /// Origin-State-Id.
    pub origin_state_id: Option<u32>,
    /// Supported-Vendor-Id.
    pub supported_vendor_ids: Vec<u32>,
    /// Auth-Application-Id.
    pub auth_application_ids: Vec<u32>,
    /// Inband-Security-Id.
    pub inband_security_ids: Vec<u32>,
    /// Acct-Application-Id.
    pub acct_application_ids: Vec<u32>,
    /// Vendor-Specific-Application-Id.
    pub vendor_specific_application_ids: Vec<VendorSpecificApplicationId>,
    /// Firmware-Revision (M bit clear).
    pub firmware_revision: Option<u32>,
    /// Other AVPs, kept as received.
    pub other: Vec<Avp>,
}

impl Capabilities {
    /// What an SWm node (ePDG or 3GPP AAA server) advertises: Auth-Application-Id 16777264,
    /// the same in a Vendor-Specific-Application-Id of 3GPP (10415), and Supported-Vendor-Id
    /// 3GPP for the 3GPP AVPs (TS 29.273 section 7.1; RFC 6733 section 5.3). Vendor-Id 0
    /// means "ignored" (RFC 6733 section 5.3.3).
    pub fn swm(
        origin_host: &str,
        origin_realm: &str,
        host_ip_addresses: Vec<std::net::IpAddr>,
        product_name: &str,
    ) -> Self {
        use super::codes::vendor;
        Capabilities {
            origin_host: origin_host.to_owned(),
            origin_realm: origin_realm.to_owned(),
            host_ip_addresses: host_ip_addresses.into_iter().map(Address::Ip).collect(),
            vendor_id: 0,
            product_name: product_name.to_owned(),
            origin_state_id: None,
            supported_vendor_ids: vec![vendor::TGPP],
            auth_application_ids: vec![application::SWM],
            inband_security_ids: Vec::new(),
            acct_application_ids: Vec::new(),
            vendor_specific_application_ids: vec![VendorSpecificApplicationId::auth(
                vendor::TGPP,
                application::SWM,
            )],
            firmware_revision: None,
            other: Vec::new(),
        }
    }

    fn push_avps(&self, out: &mut Message) {
        self.push_identity(out);
        self.push_applications(out);
    }

    /// Origin-Host to Origin-State-Id, in the order of the ABNF.
    fn push_identity(&self, out: &mut Message) {
        out.push(Avp::identity(avp::ORIGIN_HOST, &self.origin_host));
        out.push(Avp::identity(avp::ORIGIN_REALM, &self.origin_realm));
        for address in &self.host_ip_addresses {
            out.push(Avp::address(avp::HOST_IP_ADDRESS, address));
        }
        out.push(Avp::u32(avp::VENDOR_ID, self.vendor_id));
        out.push(Avp::utf8(avp::PRODUCT_NAME, &self.product_name).with_mandatory(false));
        if let Some(state) = self.origin_state_id {
            out.push(Avp::u32(avp::ORIGIN_STATE_ID, state));
        }
    }

    /// Supported-Vendor-Id to Firmware-Revision, then the other AVPs.
    fn push_applications(&self, out: &mut Message) {
        for id in &self.supported_vendor_ids {
            out.push(Avp::u32(avp::SUPPORTED_VENDOR_ID, *id));
        }
        for id in &self.auth_application_ids {
            out.push(Avp::u32(avp::AUTH_APPLICATION_ID, *id));
        }
        for id in &self.inband_security_ids {
            out.push(Avp::u32(avp::INBAND_SECURITY_ID, *id));
        }
        for id in &self.acct_application_ids {
            out.push(Avp::u32(avp::ACCT_APPLICATION_ID, *id));
        }
        for vsai in &self.vendor_specific_application_ids {
            out.push(vsai.to_avp());
        }
        if let Some(revision) = self.firmware_revision {
            out.push(Avp::u32(avp::FIRMWARE_REVISION, revision).with_mandatory(false));
        }
        out.avps.extend(self.other.iter().cloned());
    }

    fn read(r: &mut AvpReader<'_>) -> Result<Self, Error> {
        let origin_host = r
            .required((avp::ORIGIN_HOST, None), 1)?
            .as_identity()?
            .to_owned();
        let origin_realm = r
            .required((avp::ORIGIN_REALM, None), 1)?
            .as_identity()?
            .to_owned();
        let host_ip_addresses = r
            .all((avp::HOST_IP_ADDRESS, None))
            .into_iter()
            .map(Avp::as_address)
            .collect::<Result<Vec<_>, _>>()?;
        if host_ip_addresses.is_empty() {
            return Err(Error::missing(avp::HOST_IP_ADDRESS, None, 6));
        }
        let vendor_id = r.required((avp::VENDOR_ID, None), 4)?.as_u32()?;
        let product_name = r
            .required((avp::PRODUCT_NAME, None), 0)?
            .as_utf8()?
            .to_owned();
        let origin_state_id = opt_u32(r.optional((avp::ORIGIN_STATE_ID, None))?)?;
        let u32s = |r: &mut AvpReader<'_>, code| -> Result<Vec<u32>, Error> {
            Ok(r.all((code, None))
                .into_iter()
                .map(Avp::as_u32)
                .collect::<Result<_, _>>()?)
        };
        let supported_vendor_ids = u32s(r, avp::SUPPORTED_VENDOR_ID)?;
        let auth_application_ids = u32s(r, avp::AUTH_APPLICATION_ID)?;
        let inband_security_ids = u32s(r, avp::INBAND_SECURITY_ID)?;
        let acct_application_ids = u32s(r, avp::ACCT_APPLICATION_ID)?;
        let vendor_specific_application_ids = r
            .all((avp::VENDOR_SPECIFIC_APPLICATION_ID, None))
            .into_iter()
            .map(VendorSpecificApplicationId::from_avp)
            .collect::<Result<Vec<_>, _>>()?;
        let firmware_revision = opt_u32(r.optional((avp::FIRMWARE_REVISION, None))?)?;
        Ok(Capabilities {
            origin_host,
            origin_realm,
            host_ip_addresses,
            vendor_id,
            product_name,
            origin_state_id,
            supported_vendor_ids,
            auth_application_ids,
            inband_security_ids,
            acct_application_ids,
            vendor_specific_application_ids,
            firmware_revision,
            other: Vec::new(),
        })
    }

    /// Every application id advertised: Auth-, Acct-, and those inside
    /// Vendor-Specific-Application-Id (whose Vendor-Id does not count, RFC 6733 section 5.3).
    pub fn application_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .auth_application_ids
            .iter()
            .chain(&self.acct_application_ids)
            .copied()
            .chain(self.vendor_specific_application_ids.iter().flat_map(|v| {
                v.auth_application_id
                    .into_iter()
                    .chain(v.acct_application_id)
            }))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The applications both sides support (RFC 6733 section 5.3). A side advertising the
    /// Relay application has every application in common with the other.
    pub fn common_applications(&self, peer: &Capabilities) -> Vec<u32> {
        let mine = self.application_ids();
        let theirs = peer.application_ids();
        if theirs.contains(&application::RELAY) {
            return mine;
        }
        if mine.contains(&application::RELAY) {
            return theirs;
        }
        mine.into_iter().filter(|id| theirs.contains(id)).collect()
    }
}

/// Capabilities-Exchange-Request (RFC 6733 section 5.3.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CapabilitiesExchangeRequest {
    /// What the sender advertises.
    pub capabilities: Capabilities,
}

impl CapabilitiesExchangeRequest {
    /// The CER message.
    pub fn to_message(&self, hop_by_hop: u32, end_to_end: u32) -> Message {
        let mut m = Message::new(Header::request(
            command::CAPABILITIES_EXCHANGE,
            application::COMMON_MESSAGES,
            false,
            hop_by_hop,
            end_to_end,
        ));
        self.capabilities.push_avps(&mut m);
        m
    }

    /// Reads a CER.
    pub fn parse(message: &Message) -> Result<Self, Error> {
        check_header(message, command::CAPABILITIES_EXCHANGE, true)?;
        let mut r = AvpReader::new(&message.avps);
        let mut capabilities = Capabilities::read(&mut r)?;
        capabilities.other = r.rest(&[])?;
        Ok(CapabilitiesExchangeRequest { capabilities })
    }
}

/// Capabilities-Exchange-Answer (RFC 6733 section 5.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CapabilitiesExchangeAnswer {
    /// Result-Code.
    pub result_code: u32,
    /// What the answering node advertises.
    pub capabilities: Capabilities,
    /// Error-Message.
    pub error_message: Option<String>,
    /// The AVPs inside Failed-AVP.
    pub failed_avp: Option<Vec<Avp>>,
}

impl CapabilitiesExchangeAnswer {
    /// The CEA answering `request` (E set when the Result-Code is a protocol error).
    pub fn to_message(&self, request: &Header) -> Message {
        let mut m = Message::new(answer_header(request, self.result_code));
        m.push(Avp::u32(avp::RESULT_CODE, self.result_code));
        self.capabilities.push_identity(&mut m);
        push_error_message_and_failed(&mut m, &self.error_message, &self.failed_avp);
        self.capabilities.push_applications(&mut m);
        m
    }

    /// Reads a CEA.
    pub fn parse(message: &Message) -> Result<Self, Error> {
        check_header(message, command::CAPABILITIES_EXCHANGE, false)?;
        let mut r = AvpReader::new(&message.avps);
        let result_code = r.required((avp::RESULT_CODE, None), 4)?.as_u32()?;
        let mut capabilities = Capabilities::read(&mut r)?;
        let (error_message, failed_avp) = read_error_message_and_failed(&mut r)?;
        capabilities.other = r.rest(&[])?;
        Ok(CapabilitiesExchangeAnswer {
            result_code,
            capabilities,
            error_message,
            failed_avp,
        })
    }
}

fn push_error_message_and_failed(
    m: &mut Message,
    error_message: &Option<String>,
    failed_avp: &Option<Vec<Avp>>,
) {
    if let Some(text) = error_message {
        m.push(Avp::utf8(avp::ERROR_MESSAGE, text).with_mandatory(false));
    }
    if let Some(failed) = failed_avp {
        m.push(Avp::grouped(avp::FAILED_AVP, failed));
    }
}

fn read_error_message_and_failed(
    r: &mut AvpReader<'_>,
) -> Result<(Option<String>, Option<Vec<Avp>>), Error> {
    let error_message = opt_utf8(r.optional(ERROR_MESSAGE_ID)?)?;
    let failed_avp = r
        .optional((avp::FAILED_AVP, None))?
        .map(Avp::as_grouped)
        .transpose()?;
    Ok((error_message, failed_avp))
}

/// Device-Watchdog-Request (RFC 6733 section 5.5.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceWatchdogRequest {
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// Origin-State-Id.
    pub origin_state_id: Option<u32>,
}

impl DeviceWatchdogRequest {
    /// The DWR message.
    pub fn to_message(&self, hop_by_hop: u32, end_to_end: u32) -> Message {
        let mut m = Message::new(Header::request(
            command::DEVICE_WATCHDOG,
            application::COMMON_MESSAGES,
            false,
            hop_by_hop,
            end_to_end,
        ))
        .with(Avp::identity(avp::ORIGIN_HOST, &self.origin_host))
        .with(Avp::identity(avp::ORIGIN_REALM, &self.origin_realm));
        if let Some(state) = self.origin_state_id {
            m.push(Avp::u32(avp::ORIGIN_STATE_ID, state));
        }
        m
    }

    /// Reads a DWR.
    pub fn parse(message: &Message) -> Result<Self, Error> {
        check_header(message, command::DEVICE_WATCHDOG, true)?;
        let mut r = AvpReader::new(&message.avps);
        let dwr = DeviceWatchdogRequest {
            origin_host: r
                .required((avp::ORIGIN_HOST, None), 1)?
                .as_identity()?
                .to_owned(),
            origin_realm: r
                .required((avp::ORIGIN_REALM, None), 1)?
                .as_identity()?
                .to_owned(),
            origin_state_id: opt_u32(r.optional((avp::ORIGIN_STATE_ID, None))?)?,
        };
        r.rest(&[])?;
        Ok(dwr)
    }
}

/// Device-Watchdog-Answer and Disconnect-Peer-Answer share this shape (RFC 6733 sections
/// 5.5.2 and 5.4.2); DPA has no Origin-State-Id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerAnswer {
    /// Result-Code.
    pub result_code: u32,
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// Error-Message.
    pub error_message: Option<String>,
    /// The AVPs inside Failed-AVP.
    pub failed_avp: Option<Vec<Avp>>,
    /// Origin-State-Id (DWA only).
    pub origin_state_id: Option<u32>,
}

impl PeerAnswer {
    /// A successful answer from this node.
    pub fn success(origin_host: &str, origin_realm: &str) -> Self {
        PeerAnswer {
            result_code: super::codes::result::DIAMETER_SUCCESS,
            origin_host: origin_host.to_owned(),
            origin_realm: origin_realm.to_owned(),
            error_message: None,
            failed_avp: None,
            origin_state_id: None,
        }
    }

    /// The DWA or DPA answering `request`.
    pub fn to_message(&self, request: &Header) -> Message {
        let mut m = Message::new(answer_header(request, self.result_code))
            .with(Avp::u32(avp::RESULT_CODE, self.result_code))
            .with(Avp::identity(avp::ORIGIN_HOST, &self.origin_host))
            .with(Avp::identity(avp::ORIGIN_REALM, &self.origin_realm));
        push_error_message_and_failed(&mut m, &self.error_message, &self.failed_avp);
        if let Some(state) = self.origin_state_id {
            m.push(Avp::u32(avp::ORIGIN_STATE_ID, state));
        }
        m
    }

    /// Reads a DWA (`command` = 280) or DPA (282).
    pub fn parse(message: &Message, command: u32) -> Result<Self, Error> {
        check_header(message, command, false)?;
        let mut r = AvpReader::new(&message.avps);
        let result_code = r.required((avp::RESULT_CODE, None), 4)?.as_u32()?;
        let origin_host = r
            .required((avp::ORIGIN_HOST, None), 1)?
            .as_identity()?
            .to_owned();
        let origin_realm = r
            .required((avp::ORIGIN_REALM, None), 1)?
            .as_identity()?
            .to_owned();
        let (error_message, failed_avp) = read_error_message_and_failed(&mut r)?;
        let origin_state_id = opt_u32(r.optional((avp::ORIGIN_STATE_ID, None))?)?;
        r.rest(&[])?;
        Ok(PeerAnswer {
            result_code,
            origin_host,
            origin_realm,
            error_message,
            failed_avp,
            origin_state_id,
        })
    }
}

registry! {
    /// Disconnect-Cause values (RFC 6733 section 5.4.3).
    pub enum DisconnectCause: i32 {
        /// The peer may reconnect.
        Rebooting = 0 => "REBOOTING",
        /// Do not reconnect.
        Busy = 1 => "BUSY",
        /// Do not reconnect.
        DoNotWantToTalkToYou = 2 => "DO_NOT_WANT_TO_TALK_TO_YOU",
    }
}

/// Disconnect-Peer-Request (RFC 6733 section 5.4.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DisconnectPeerRequest {
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// Disconnect-Cause.
    pub disconnect_cause: DisconnectCause,
}

impl DisconnectPeerRequest {
    /// The DPR message.
    pub fn to_message(&self, hop_by_hop: u32, end_to_end: u32) -> Message {
        Message::new(Header::request(
            command::DISCONNECT_PEER,
            application::COMMON_MESSAGES,
            false,
            hop_by_hop,
            end_to_end,
        ))
        .with(Avp::identity(avp::ORIGIN_HOST, &self.origin_host))
        .with(Avp::identity(avp::ORIGIN_REALM, &self.origin_realm))
        .with(Avp::enumerated(
            avp::DISCONNECT_CAUSE,
            self.disconnect_cause.into(),
        ))
    }

    /// Reads a DPR.
    pub fn parse(message: &Message) -> Result<Self, Error> {
        check_header(message, command::DISCONNECT_PEER, true)?;
        let mut r = AvpReader::new(&message.avps);
        let dpr = DisconnectPeerRequest {
            origin_host: r
                .required((avp::ORIGIN_HOST, None), 1)?
                .as_identity()?
                .to_owned(),
            origin_realm: r
                .required((avp::ORIGIN_REALM, None), 1)?
                .as_identity()?
                .to_owned(),
            disconnect_cause: r
                .required((avp::DISCONNECT_CAUSE, None), 4)?
                .as_enumerated()?
                .into(),
        };
        r.rest(&[])?;
        Ok(dpr)
    }
}
