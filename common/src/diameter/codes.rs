//! Numbers the standards assign: command codes, application ids, vendor ids, result codes
//! (registries: enums of the crate's `registry!` macro, [`crate::registry`], with an
//! `Unknown` arm) and AVP codes. Each cites where it is defined.
//!
//! The modules `command`, `application`, `vendor` and `result` keep the same numbers as
//! plain `u32` constants, each written as its registry value, for the code that matches
//! on raw header fields and AVP data. AVP codes stay plain constants: their numbering
//! space is per vendor (a code means one AVP with the V bit clear and another under
//! vendor 10415), so one enum over the code alone would mix two registries.

use crate::registry::registry;

registry! {
    /// Command codes (RFC 6733 section 3.1, RFC 4072 section 3, RFC 7155 section 3): the
    /// name without its "-Request"/"-Answer".
    pub enum CommandCode: u32 {
        /// RFC 6733 section 5.3.
        CapabilitiesExchange = 257 => "Capabilities-Exchange",
        /// RFC 6733 section 8.3.
        ReAuth = 258 => "Re-Auth",
        /// RFC 7155 section 3.1; TS 29.273 section 7.2.2.1.3.
        Aa = 265 => "AA",
        /// RFC 4072 section 3.1; TS 29.273 section 7.2.2.1.1.
        DiameterEap = 268 => "Diameter-EAP",
        /// RFC 6733 section 9.7.
        Accounting = 271 => "Accounting",
        /// RFC 6733 section 8.5.
        AbortSession = 274 => "Abort-Session",
        /// RFC 6733 section 8.4; TS 29.273 section 7.2.2.2.1.
        SessionTermination = 275 => "Session-Termination",
        /// RFC 6733 section 5.5.
        DeviceWatchdog = 280 => "Device-Watchdog",
        /// RFC 6733 section 5.4.
        DisconnectPeer = 282 => "Disconnect-Peer",
    }
}

registry! {
    /// Application identifiers (RFC 6733 section 2.4, RFC 4072 section 7, TS 29.273).
    pub enum ApplicationId: u32 {
        CommonMessages = 0 => "Diameter common message",
        BaseAccounting = 3 => "Diameter base accounting",
        DiameterEap = 5 => "Diameter EAP",
        /// TS 29.273 section 7.2.2.1.1: the application id in every SWm command header.
        Swm = 16_777_264 => "3GPP SWm",
        /// A peer advertising it has every application in common.
        Relay = 0xffff_ffff => "Relay",
    }
}

registry! {
    /// Vendor identifiers (IANA SMI Network Management Private Enterprise Codes).
    pub enum VendorId: u32 {
        /// TS 29.230.
        Tgpp = 10415 => "3GPP",
    }
}

registry! {
    /// Result-Code values (RFC 6733 section 7.1).
    pub enum ResultCode: u32 {
        DiameterMultiRoundAuth = 1001 => "DIAMETER_MULTI_ROUND_AUTH",
        DiameterSuccess = 2001 => "DIAMETER_SUCCESS",
        DiameterLimitedSuccess = 2002 => "DIAMETER_LIMITED_SUCCESS",
        DiameterCommandUnsupported = 3001 => "DIAMETER_COMMAND_UNSUPPORTED",
        DiameterUnableToDeliver = 3002 => "DIAMETER_UNABLE_TO_DELIVER",
        DiameterRealmNotServed = 3003 => "DIAMETER_REALM_NOT_SERVED",
        DiameterTooBusy = 3004 => "DIAMETER_TOO_BUSY",
        DiameterLoopDetected = 3005 => "DIAMETER_LOOP_DETECTED",
        DiameterRedirectIndication = 3006 => "DIAMETER_REDIRECT_INDICATION",
        DiameterApplicationUnsupported = 3007 => "DIAMETER_APPLICATION_UNSUPPORTED",
        DiameterInvalidHdrBits = 3008 => "DIAMETER_INVALID_HDR_BITS",
        DiameterInvalidAvpBits = 3009 => "DIAMETER_INVALID_AVP_BITS",
        DiameterUnknownPeer = 3010 => "DIAMETER_UNKNOWN_PEER",
        DiameterAuthenticationRejected = 4001 => "DIAMETER_AUTHENTICATION_REJECTED",
        DiameterOutOfSpace = 4002 => "DIAMETER_OUT_OF_SPACE",
        ElectionLost = 4003 => "ELECTION_LOST",
        DiameterAvpUnsupported = 5001 => "DIAMETER_AVP_UNSUPPORTED",
        DiameterUnknownSessionId = 5002 => "DIAMETER_UNKNOWN_SESSION_ID",
        DiameterAuthorizationRejected = 5003 => "DIAMETER_AUTHORIZATION_REJECTED",
        DiameterInvalidAvpValue = 5004 => "DIAMETER_INVALID_AVP_VALUE",
        DiameterMissingAvp = 5005 => "DIAMETER_MISSING_AVP",
        DiameterResourcesExceeded = 5006 => "DIAMETER_RESOURCES_EXCEEDED",
        DiameterContradictingAvps = 5007 => "DIAMETER_CONTRADICTING_AVPS",
        DiameterAvpNotAllowed = 5008 => "DIAMETER_AVP_NOT_ALLOWED",
        DiameterAvpOccursTooManyTimes = 5009 => "DIAMETER_AVP_OCCURS_TOO_MANY_TIMES",
        DiameterNoCommonApplication = 5010 => "DIAMETER_NO_COMMON_APPLICATION",
        DiameterUnsupportedVersion = 5011 => "DIAMETER_UNSUPPORTED_VERSION",
        DiameterUnableToComply = 5012 => "DIAMETER_UNABLE_TO_COMPLY",
        DiameterInvalidBitInHeader = 5013 => "DIAMETER_INVALID_BIT_IN_HEADER",
        DiameterInvalidAvpLength = 5014 => "DIAMETER_INVALID_AVP_LENGTH",
        DiameterInvalidMessageLength = 5015 => "DIAMETER_INVALID_MESSAGE_LENGTH",
        DiameterInvalidAvpBitCombo = 5016 => "DIAMETER_INVALID_AVP_BIT_COMBO",
        DiameterNoCommonSecurity = 5017 => "DIAMETER_NO_COMMON_SECURITY",
    }
}

impl ResultCode {
    /// Protocol errors (3xxx) go in answers with the E bit set (RFC 6733 section 7.1.3).
    pub fn is_protocol_error(self) -> bool {
        (3000..4000).contains(&self.value())
    }

    /// Success class (2xxx, RFC 6733 section 7.1.2).
    pub fn is_success(self) -> bool {
        (2000..3000).contains(&self.value())
    }
}

registry! {
    /// The 3GPP Experimental-Result-Code values used on SWm (TS 29.273 section 10, values
    /// from TS 29.229 section 6.2 and TS 29.273), sent with Vendor-Id 10415. A registry of
    /// its own: 5001 here is not DIAMETER_AVP_UNSUPPORTED.
    pub enum ExperimentalResultCode: u32 {
        DiameterErrorUserUnknown = 5001 => "DIAMETER_ERROR_USER_UNKNOWN",
        DiameterErrorRoamingNotAllowed = 5004 => "DIAMETER_ERROR_ROAMING_NOT_ALLOWED",
        DiameterErrorUserNoNon3gppSubscription = 5450
            => "DIAMETER_ERROR_USER_NO_NON_3GPP_SUBSCRIPTION",
        DiameterErrorUserNoApnSubscription = 5451 => "DIAMETER_ERROR_USER_NO_APN_SUBSCRIPTION",
    }
}

/// Command codes as `u32` ([`CommandCode`]).
pub mod command {
    use super::CommandCode as C;
    /// Capabilities-Exchange-Request/Answer (RFC 6733 section 5.3.1).
    pub const CAPABILITIES_EXCHANGE: u32 = C::CapabilitiesExchange.value();
    /// AA-Request/Answer (RFC 7155 section 3.1; TS 29.273 section 7.2.2.1.3).
    pub const AA: u32 = C::Aa.value();
    /// Diameter-EAP-Request/Answer (RFC 4072 section 3.1; TS 29.273 section 7.2.2.1.1).
    pub const DIAMETER_EAP: u32 = C::DiameterEap.value();
    /// Session-Termination-Request/Answer (RFC 6733 section 8.4.1; TS 29.273 section 7.2.2.2.1).
    pub const SESSION_TERMINATION: u32 = C::SessionTermination.value();
    /// Device-Watchdog-Request/Answer (RFC 6733 section 5.5.1).
    pub const DEVICE_WATCHDOG: u32 = C::DeviceWatchdog.value();
    /// Disconnect-Peer-Request/Answer (RFC 6733 section 5.4.1).
    pub const DISCONNECT_PEER: u32 = C::DisconnectPeer.value();
}

/// Application identifiers as `u32` ([`ApplicationId`]).
pub mod application {
    use super::ApplicationId as A;
    /// Diameter common messages (RFC 6733 section 2.4).
    pub const COMMON_MESSAGES: u32 = A::CommonMessages.value();
    /// Diameter EAP application (RFC 4072 section 7).
    pub const DIAMETER_EAP: u32 = A::DiameterEap.value();
    /// Relay (RFC 6733 section 2.4): a peer advertising it has every application in common.
    pub const RELAY: u32 = A::Relay.value();
    /// 3GPP SWm (TS 29.273 section 7.2.2.1.1: the application id in every SWm command header).
    pub const SWM: u32 = A::Swm.value();
}

/// Vendor identifiers as `u32` ([`VendorId`]).
pub mod vendor {
    /// 3GPP (TS 29.230).
    pub const TGPP: u32 = super::VendorId::Tgpp.value();
}

/// AVP codes. Base ones from the table in RFC 6733 section 4.5; the others where cited.
/// All base AVPs below have the V bit clear; the M bit is as noted (`M` = MUST be set).
pub mod avp {
    /// User-Name, UTF8String, M (RFC 6733 section 8.14).
    pub const USER_NAME: u32 = 1;
    /// Class, OctetString, M (RFC 6733 section 8.20).
    pub const CLASS: u32 = 25;
    /// Session-Timeout, Unsigned32, M (RFC 6733 section 8.13).
    pub const SESSION_TIMEOUT: u32 = 27;
    /// MIP6-Feature-Vector, Unsigned64, M (RFC 5447 section 4.2.5).
    pub const MIP6_FEATURE_VECTOR: u32 = 124;
    /// MIP6-Home-Link-Prefix, OctetString (RFC 5447 section 4.2.4).
    pub const MIP6_HOME_LINK_PREFIX: u32 = 125;
    /// Host-IP-Address, Address, M (RFC 6733 section 5.3.5).
    pub const HOST_IP_ADDRESS: u32 = 257;
    /// Auth-Application-Id, Unsigned32, M (RFC 6733 section 6.8).
    pub const AUTH_APPLICATION_ID: u32 = 258;
    /// Acct-Application-Id, Unsigned32, M (RFC 6733 section 6.9).
    pub const ACCT_APPLICATION_ID: u32 = 259;
    /// Vendor-Specific-Application-Id, Grouped, M (RFC 6733 section 6.11).
    pub const VENDOR_SPECIFIC_APPLICATION_ID: u32 = 260;
    /// Session-Id, UTF8String, M (RFC 6733 section 8.8).
    pub const SESSION_ID: u32 = 263;
    /// Origin-Host, DiameterIdentity, M (RFC 6733 section 6.3).
    pub const ORIGIN_HOST: u32 = 264;
    /// Supported-Vendor-Id, Unsigned32, M (RFC 6733 section 5.3.6).
    pub const SUPPORTED_VENDOR_ID: u32 = 265;
    /// Vendor-Id, Unsigned32, M (RFC 6733 section 5.3.3).
    pub const VENDOR_ID: u32 = 266;
    /// Firmware-Revision, Unsigned32, M bit MUST NOT be set (RFC 6733 section 5.3.4).
    pub const FIRMWARE_REVISION: u32 = 267;
    /// Result-Code, Unsigned32, M (RFC 6733 section 7.1).
    pub const RESULT_CODE: u32 = 268;
    /// Product-Name, UTF8String, M bit MUST NOT be set (RFC 6733 section 5.3.7).
    pub const PRODUCT_NAME: u32 = 269;
    /// Multi-Round-Time-Out, Unsigned32, M (RFC 6733 section 8.19).
    pub const MULTI_ROUND_TIME_OUT: u32 = 272;
    /// Disconnect-Cause, Enumerated, M (RFC 6733 section 5.4.3).
    pub const DISCONNECT_CAUSE: u32 = 273;
    /// Auth-Request-Type, Enumerated, M (RFC 6733 section 8.7).
    pub const AUTH_REQUEST_TYPE: u32 = 274;
    /// Auth-Session-State, Enumerated, M (RFC 6733 section 8.11).
    pub const AUTH_SESSION_STATE: u32 = 277;
    /// Origin-State-Id, Unsigned32, M (RFC 6733 section 8.16).
    pub const ORIGIN_STATE_ID: u32 = 278;
    /// Failed-AVP, Grouped, M (RFC 6733 section 7.5).
    pub const FAILED_AVP: u32 = 279;
    /// Proxy-Host, DiameterIdentity, M (RFC 6733 section 6.7.3).
    pub const PROXY_HOST: u32 = 280;
    /// Error-Message, UTF8String, M bit MUST NOT be set (RFC 6733 section 7.3).
    pub const ERROR_MESSAGE: u32 = 281;
    /// Route-Record, DiameterIdentity, M (RFC 6733 section 6.7.1).
    pub const ROUTE_RECORD: u32 = 282;
    /// Destination-Realm, DiameterIdentity, M (RFC 6733 section 6.6).
    pub const DESTINATION_REALM: u32 = 283;
    /// Proxy-Info, Grouped, M (RFC 6733 section 6.7.2).
    pub const PROXY_INFO: u32 = 284;
    /// Proxy-State, OctetString, M (RFC 6733 section 6.7.4).
    pub const PROXY_STATE: u32 = 33;
    /// Destination-Host, DiameterIdentity, M (RFC 6733 section 6.5).
    pub const DESTINATION_HOST: u32 = 293;
    /// Error-Reporting-Host, DiameterIdentity, M bit MUST NOT be set (RFC 6733 section 7.4).
    pub const ERROR_REPORTING_HOST: u32 = 294;
    /// Termination-Cause, Enumerated, M (RFC 6733 section 8.15).
    pub const TERMINATION_CAUSE: u32 = 295;
    /// Origin-Realm, DiameterIdentity, M (RFC 6733 section 6.4).
    pub const ORIGIN_REALM: u32 = 296;
    /// Experimental-Result, Grouped, M (RFC 6733 section 7.6).
    pub const EXPERIMENTAL_RESULT: u32 = 297;
    /// Experimental-Result-Code, Unsigned32, M (RFC 6733 section 7.7).
    pub const EXPERIMENTAL_RESULT_CODE: u32 = 298;
    /// Inband-Security-Id, Unsigned32, M (RFC 6733 section 6.10).
    pub const INBAND_SECURITY_ID: u32 = 299;
    /// MIP-Home-Agent-Address, Address, M (RFC 4004 section 7.4; used by RFC 5447 section 4.2.2).
    pub const MIP_HOME_AGENT_ADDRESS: u32 = 334;
    /// MIP-Home-Agent-Host, Grouped, M (RFC 4004; used by RFC 5447 section 4.2.3).
    pub const MIP_HOME_AGENT_HOST: u32 = 348;
    /// EAP-Payload, OctetString, M (RFC 4072 section 4.1.1).
    pub const EAP_PAYLOAD: u32 = 462;
    /// EAP-Reissued-Payload, OctetString, M (RFC 4072 section 4.1.2).
    pub const EAP_REISSUED_PAYLOAD: u32 = 463;
    /// EAP-Master-Session-Key, OctetString, M (RFC 4072 section 4.1.3).
    pub const EAP_MASTER_SESSION_KEY: u32 = 464;
    /// MIP6-Agent-Info, Grouped, M, V clear (RFC 5447 section 4.2.1).
    pub const MIP6_AGENT_INFO: u32 = 486;
    /// Service-Selection, UTF8String, M, V clear (RFC 5778 section 6.2; TS 29.273 section 5.2.3.5).
    pub const SERVICE_SELECTION: u32 = 493;
    /// Visited-Network-Identifier, OctetString, vendor 3GPP, V and M set (TS 29.229 section
    /// 6.3.1, re-used by TS 29.273 and by TS 29.272 section 7.3.35 inside APN-Configuration).
    pub const VISITED_NETWORK_IDENTIFIER: u32 = 600;
    /// RAT-Type, Enumerated, vendor 3GPP, V and M set (TS 29.212 section 5.3.31; listed in
    /// the SWm DER of TS 29.273 section 7.2.2.1.1).
    pub const RAT_TYPE: u32 = 1032;
    /// Context-Identifier, Unsigned32, vendor 3GPP, V and M set (TS 29.272 section 7.3.27).
    pub const CONTEXT_IDENTIFIER: u32 = 1423;
    /// APN-Configuration, Grouped, vendor 3GPP, V and M set (TS 29.272 section 7.3.35).
    pub const APN_CONFIGURATION: u32 = 1430;
    /// PDN-Type, Enumerated, vendor 3GPP, V and M set (TS 29.272 section 7.3.62).
    pub const PDN_TYPE: u32 = 1456;
}

/// Result-Code values ([`ResultCode`]) and the 3GPP Experimental-Result-Code values used
/// on SWm ([`ExperimentalResultCode`]), as `u32`.
pub mod result {
    use super::ExperimentalResultCode as E;
    use super::ResultCode as R;

    /// DIAMETER_MULTI_ROUND_AUTH (RFC 6733 section 7.1.1).
    pub const DIAMETER_MULTI_ROUND_AUTH: u32 = R::DiameterMultiRoundAuth.value();
    /// DIAMETER_SUCCESS (RFC 6733 section 7.1.2).
    pub const DIAMETER_SUCCESS: u32 = R::DiameterSuccess.value();
    /// DIAMETER_LIMITED_SUCCESS (RFC 6733 section 7.1.2).
    pub const DIAMETER_LIMITED_SUCCESS: u32 = R::DiameterLimitedSuccess.value();
    /// DIAMETER_COMMAND_UNSUPPORTED (RFC 6733 section 7.1.3).
    pub const DIAMETER_COMMAND_UNSUPPORTED: u32 = R::DiameterCommandUnsupported.value();
    /// DIAMETER_UNABLE_TO_DELIVER (RFC 6733 section 7.1.3).
    pub const DIAMETER_UNABLE_TO_DELIVER: u32 = R::DiameterUnableToDeliver.value();
    /// DIAMETER_REALM_NOT_SERVED (RFC 6733 section 7.1.3).
    pub const DIAMETER_REALM_NOT_SERVED: u32 = R::DiameterRealmNotServed.value();
    /// DIAMETER_TOO_BUSY (RFC 6733 section 7.1.3).
    pub const DIAMETER_TOO_BUSY: u32 = R::DiameterTooBusy.value();
    /// DIAMETER_LOOP_DETECTED (RFC 6733 section 7.1.3).
    pub const DIAMETER_LOOP_DETECTED: u32 = R::DiameterLoopDetected.value();
    /// DIAMETER_APPLICATION_UNSUPPORTED (RFC 6733 section 7.1.3).
    pub const DIAMETER_APPLICATION_UNSUPPORTED: u32 = R::DiameterApplicationUnsupported.value();
    /// DIAMETER_INVALID_HDR_BITS (RFC 6733 section 7.1.3).
    pub const DIAMETER_INVALID_HDR_BITS: u32 = R::DiameterInvalidHdrBits.value();
    /// DIAMETER_INVALID_AVP_BITS (RFC 6733 section 7.1.3).
    pub const DIAMETER_INVALID_AVP_BITS: u32 = R::DiameterInvalidAvpBits.value();
    /// DIAMETER_UNKNOWN_PEER (RFC 6733 section 7.1.3).
    pub const DIAMETER_UNKNOWN_PEER: u32 = R::DiameterUnknownPeer.value();
    /// DIAMETER_AUTHENTICATION_REJECTED (RFC 6733 section 7.1.4).
    pub const DIAMETER_AUTHENTICATION_REJECTED: u32 = R::DiameterAuthenticationRejected.value();
    /// DIAMETER_AVP_UNSUPPORTED (RFC 6733 section 7.1.5).
    pub const DIAMETER_AVP_UNSUPPORTED: u32 = R::DiameterAvpUnsupported.value();
    /// DIAMETER_UNKNOWN_SESSION_ID (RFC 6733 section 7.1.5).
    pub const DIAMETER_UNKNOWN_SESSION_ID: u32 = R::DiameterUnknownSessionId.value();
    /// DIAMETER_AUTHORIZATION_REJECTED (RFC 6733 section 7.1.5).
    pub const DIAMETER_AUTHORIZATION_REJECTED: u32 = R::DiameterAuthorizationRejected.value();
    /// DIAMETER_INVALID_AVP_VALUE (RFC 6733 section 7.1.5).
    pub const DIAMETER_INVALID_AVP_VALUE: u32 = R::DiameterInvalidAvpValue.value();
    /// DIAMETER_MISSING_AVP (RFC 6733 section 7.1.5).
    pub const DIAMETER_MISSING_AVP: u32 = R::DiameterMissingAvp.value();
    /// DIAMETER_AVP_OCCURS_TOO_MANY_TIMES (RFC 6733 section 7.1.5).
    pub const DIAMETER_AVP_OCCURS_TOO_MANY_TIMES: u32 = R::DiameterAvpOccursTooManyTimes.value();
    /// DIAMETER_NO_COMMON_APPLICATION (RFC 6733 section 7.1.5).
    pub const DIAMETER_NO_COMMON_APPLICATION: u32 = R::DiameterNoCommonApplication.value();
    /// DIAMETER_UNSUPPORTED_VERSION (RFC 6733 section 7.1.5).
    pub const DIAMETER_UNSUPPORTED_VERSION: u32 = R::DiameterUnsupportedVersion.value();
    /// DIAMETER_UNABLE_TO_COMPLY (RFC 6733 section 7.1.5).
    pub const DIAMETER_UNABLE_TO_COMPLY: u32 = R::DiameterUnableToComply.value();
    /// DIAMETER_INVALID_AVP_LENGTH (RFC 6733 section 7.1.5).
    pub const DIAMETER_INVALID_AVP_LENGTH: u32 = R::DiameterInvalidAvpLength.value();
    /// DIAMETER_INVALID_MESSAGE_LENGTH (RFC 6733 section 7.1.5).
    pub const DIAMETER_INVALID_MESSAGE_LENGTH: u32 = R::DiameterInvalidMessageLength.value();

    /// DIAMETER_ERROR_USER_UNKNOWN, Experimental-Result-Code (TS 29.273 section 10; TS 29.229).
    pub const DIAMETER_ERROR_USER_UNKNOWN: u32 = E::DiameterErrorUserUnknown.value();
    /// DIAMETER_ERROR_ROAMING_NOT_ALLOWED, Experimental-Result-Code (TS 29.273 section 10).
    pub const DIAMETER_ERROR_ROAMING_NOT_ALLOWED: u32 = E::DiameterErrorRoamingNotAllowed.value();
    /// DIAMETER_ERROR_USER_NO_NON_3GPP_SUBSCRIPTION, Experimental-Result-Code (TS 29.273 section 10).
    pub const DIAMETER_ERROR_USER_NO_NON_3GPP_SUBSCRIPTION: u32 =
        E::DiameterErrorUserNoNon3gppSubscription.value();
    /// DIAMETER_ERROR_USER_NO_APN_SUBSCRIPTION, Experimental-Result-Code (TS 29.273 section 10).
    pub const DIAMETER_ERROR_USER_NO_APN_SUBSCRIPTION: u32 =
        E::DiameterErrorUserNoApnSubscription.value();

    /// Protocol errors (3xxx) go in answers with the E bit set (RFC 6733 section 7.1.3).
    pub fn is_protocol_error(code: u32) -> bool {
        R::from(code).is_protocol_error()
    }

    /// Success class (2xxx, RFC 6733 section 7.1.2).
    pub fn is_success(code: u32) -> bool {
        R::from(code).is_success()
    }
}
