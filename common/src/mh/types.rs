//! Typed values of the Mobility Header: the registries (MH types, status codes, handoff
//! indicator, access technology, ...), flags, and the small newtypes the standards name
//! (lifetime, GRE key, timestamp).

use std::net::Ipv6Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::registry::registry;

/// IPv6 Next Header value of the Mobility Header (RFC 6275 section 6.1.1).
pub const IPPROTO_MH: u8 = 135;
/// UDP port carrying the Mobility Header over IPv4 transport (RFC 5844 section 3.2).
pub const MH_UDP_PORT: u16 = 5436;
/// "No next header": the Payload Proto of every Mobility Header we send.
pub const IPPROTO_NONE: u8 = 59;

/// Binding lifetime, in the wire's units of 4 seconds (RFC 6275 section 6.1.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lifetime(pub u16);

impl Lifetime {
    /// The largest lifetime not above `secs`, saturating at the field's maximum.
    pub fn from_secs(secs: u32) -> Self {
        Lifetime(u16::try_from(secs / 4).unwrap_or(u16::MAX))
    }
    pub fn as_secs(self) -> u32 {
        u32::from(self.0) * 4
    }
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

/// A GRE key (RFC 2890 section 2.1; signalled by RFC 5845): identifies one PDN connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GreKey(pub u32);

/// The value of the Timestamp option (RFC 5213 section 8.8): a fixed-point count of
/// seconds since 1970-01-01 00:00 UTC, the integer seconds in the high 48 bits and
/// 1/65536 fractions of a second in the low 16 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// One second in the fixed-point format.
    pub const ONE_SECOND: u64 = 1 << 16;

    /// The timestamp of a wall-clock time; times before 1970 give zero.
    pub fn from_system_time(time: SystemTime) -> Self {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs() & 0xffff_ffff_ffff;
        let frac = (u64::from(since.subsec_nanos()) << 16) / 1_000_000_000;
        Timestamp((secs << 16) | frac)
    }

    /// The wall-clock time this timestamp names.
    pub fn to_system_time(self) -> SystemTime {
        let secs = self.0 >> 16;
        let nanos = ((self.0 & 0xffff) * 1_000_000_000) >> 16;
        UNIX_EPOCH + Duration::new(secs, nanos as u32)
    }

    /// How far apart two timestamps are, whichever is later.
    pub fn distance(self, other: Timestamp) -> Duration {
        let ticks = self.0.abs_diff(other.0);
        Duration::from_nanos(((u128::from(ticks) * 1_000_000_000) >> 16) as u64)
    }
}

/// Flags of a Binding Update (RFC 6275 6.1.7, RFC 3963, RFC 5213 8.1, RFC 5555, RFC 5845).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BuFlags(pub u16);

impl BuFlags {
    /// Acknowledge (A).
    pub const ACK: u16 = 0x8000;
    /// Home Registration (H).
    pub const HOME_REGISTRATION: u16 = 0x4000;
    /// Link-Local Address Compatibility (L).
    pub const LINK_LOCAL: u16 = 0x2000;
    /// Key Management Mobility Capability (K).
    pub const KEY_MANAGEMENT: u16 = 0x1000;
    /// MAP Registration (M, RFC 5380).
    pub const MAP: u16 = 0x0800;
    /// Mobile Router (R, RFC 3963).
    pub const MOBILE_ROUTER: u16 = 0x0400;
    /// Proxy Registration (P, RFC 5213).
    pub const PROXY: u16 = 0x0200;
    /// Force UDP encapsulation (F, RFC 5555).
    pub const FORCE_UDP: u16 = 0x0100;
    /// TLV-header format (T, RFC 5845).
    pub const TLV_HEADER: u16 = 0x0080;

    pub fn contains(self, flag: u16) -> bool {
        self.0 & flag == flag
    }
}

/// Flags of a Binding Acknowledgement (RFC 6275 6.1.8, RFC 3963, RFC 5213 8.2, RFC 5845).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BaFlags(pub u8);

impl BaFlags {
    /// Key Management Mobility Capability (K).
    pub const KEY_MANAGEMENT: u8 = 0x80;
    /// Mobile Router (R, RFC 3963).
    pub const MOBILE_ROUTER: u8 = 0x40;
    /// Proxy Registration (P, RFC 5213).
    pub const PROXY: u8 = 0x20;
    /// TLV-header format (T, RFC 5845).
    pub const TLV_HEADER: u8 = 0x10;

    pub fn contains(self, flag: u8) -> bool {
        self.0 & flag == flag
    }
}

registry! {
    /// Binding Acknowledgement status (RFC 6275 section 6.1.8 and the IANA "Status Codes"
    /// registry): values under 128 accept the binding. The identifiers are the RFCs'
    /// own: upper case where the RFC gives one (RFC 5149, 5213, 5844, 5845), its
    /// description otherwise (RFC 6275, RFC 3963).
    pub enum BindingAckStatus: u8 {
        Accepted = 0 => "Binding Update accepted",
        AcceptedPrefixDiscoveryNecessary = 1 => "Accepted but prefix discovery necessary",
        ReasonUnspecified = 128 => "Reason unspecified",
        AdministrativelyProhibited = 129 => "Administratively prohibited",
        InsufficientResources = 130 => "Insufficient resources",
        HomeRegistrationNotSupported = 131 => "Home registration not supported",
        NotHomeSubnet = 132 => "Not home subnet",
        NotHomeAgentForThisMobileNode = 133 => "Not home agent for this mobile node",
        DuplicateAddressDetectionFailed = 134 => "Duplicate Address Detection failed",
        SequenceNumberOutOfWindow = 135 => "Sequence number out of window",
        ExpiredHomeNonceIndex = 136 => "Expired home nonce index",
        ExpiredCareOfNonceIndex = 137 => "Expired care-of nonce index",
        ExpiredNonces = 138 => "Expired nonces",
        RegistrationTypeChangeDisallowed = 139 => "Registration type change disallowed",
        /// RFC 3963 section 4.2 (NEMO), and so on to 143.
        MobileRouterOperationNotPermitted = 140 => "Mobile Router Operation not permitted",
        InvalidPrefix = 141 => "Invalid Prefix",
        NotAuthorizedForPrefix = 142 => "Not Authorized for Prefix",
        ForwardingSetupFailed = 143 => "Forwarding Setup failed (prefixes missing)",
        /// RFC 5149 section 5: the MN is not authorized for the requested service (APN).
        ServiceAuthorizationFailed = 151 => "SERVICE_AUTHORIZATION_FAILED",
        /// RFC 5213 section 8.9, and so on to 162.
        ProxyRegNotEnabled = 152 => "PROXY_REG_NOT_ENABLED",
        NotLmaForThisMobileNode = 153 => "NOT_LMA_FOR_THIS_MOBILE_NODE",
        MagNotAuthorizedForProxyReg = 154 => "MAG_NOT_AUTHORIZED_FOR_PROXY_REG",
        NotAuthorizedForHomeNetworkPrefix = 155 => "NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX",
        TimestampMismatch = 156 => "TIMESTAMP_MISMATCH",
        TimestampLowerThanPrevAccepted = 157 => "TIMESTAMP_LOWER_THAN_PREV_ACCEPTED",
        MissingHomeNetworkPrefixOption = 158 => "MISSING_HOME_NETWORK_PREFIX_OPTION",
        BcePbuPrefixSetDoNotMatch = 159 => "BCE_PBU_PREFIX_SET_DO_NOT_MATCH",
        MissingMnIdentifierOption = 160 => "MISSING_MN_IDENTIFIER_OPTION",
        MissingHandoffIndicatorOption = 161 => "MISSING_HANDOFF_INDICATOR_OPTION",
        MissingAccessTechTypeOption = 162 => "MISSING_ACCESS_TECH_TYPE_OPTION",
        /// RFC 5845 section 6.4.
        GreKeyOptionRequired = 163 => "GRE_KEY_OPTION_REQUIRED",
        /// RFC 5844 section 3.3.5: the MN is not authorized for IPv4 mobility service.
        NotAuthorizedForIpv4MobilityService = 170 => "NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE",
        /// RFC 5844 section 3.3.5: the MN is not authorized for the requested IPv4 home
        /// address.
        NotAuthorizedForIpv4HomeAddress = 171 => "NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS",
        /// RFC 5844 section 3.3.5: the MN is not authorized for IPv6 mobility service.
        NotAuthorizedForIpv6MobilityService = 172 => "NOT_AUTHORIZED_FOR_IPV6_MOBILITY_SERVICE",
        /// RFC 5844 section 3.3.5.
        MultipleIpv4HomeAddressAssignmentNotSupported = 173
            => "MULTIPLE_IPV4_HOME_ADDRESS_ASSIGNMENT_NOT_SUPPORTED",
        /// RFC 6275 section 6.1.8.
        InvalidCareOfAddress = 174 => "Invalid Care-of Address",
    }
}

impl BindingAckStatus {
    /// Values under 128 accept the binding (RFC 6275 section 6.1.8).
    pub fn is_accepted(self) -> bool {
        self.value() < 128
    }
}

registry! {
    /// Status of the IPv4 Home Address Reply option (RFC 5844 section 3.3.2): values
    /// under 128 are successes.
    pub enum Ipv4HomeAddressReplyStatus: u8 {
        Success = 0 => "Success",
        ReasonUnspecified = 128 => "Failure, reason unspecified",
        AdministrativelyProhibited = 129 => "Administratively prohibited",
        IncorrectIpv4HomeAddress = 130 => "Incorrect IPv4 home address",
        InvalidIpv4Address = 131 => "Invalid IPv4 address",
        DynamicIpv4HomeAddressAssignmentNotAvailable = 132
            => "Dynamic IPv4 home address assignment not available",
    }
}

registry! {
    /// Status of the IPv4 Address Acknowledgement option (RFC 5555 section 3.2.1):
    /// values under 128 are successes.
    pub enum Ipv4AddressAcknowledgementStatus: u8 {
        Success = 0 => "Success",
        ReasonUnspecified = 128 => "Failure, reason unspecified",
        AdministrativelyProhibited = 129 => "Administratively prohibited",
        IncorrectIpv4HomeAddress = 130 => "Incorrect IPv4 home address",
        InvalidIpv4Address = 131 => "Invalid IPv4 address",
        DynamicIpv4HomeAddressAssignmentNotAvailable = 132
            => "Dynamic IPv4 home address assignment not available",
        PrefixAllocationUnauthorized = 133 => "Prefix allocation unauthorized",
    }
}

registry! {
    /// Handoff Indicator (RFC 5213 section 8.4).
    pub enum HandoffIndicator: u8 {
        AttachmentOverNewInterface = 1 => "Attachment over a new interface",
        HandoffBetweenDifferentInterfaces = 2
            => "Handoff between two different interfaces of the mobile node",
        HandoffBetweenSameInterface = 3
            => "Handoff between mobile access gateways for the same interface",
        HandoffStateUnknown = 4 => "Handoff state unknown",
        HandoffStateNotChanged = 5 => "Handoff state not changed (Re-registration)",
    }
}

registry! {
    /// Access Technology Type (RFC 5213 section 8.5; 6 to 8 from the IANA registry, for
    /// TS 29.275).
    pub enum AccessTechnologyType: u8 {
        Virtual = 1 => "Virtual",
        Ppp = 2 => "PPP",
        Ieee8023 = 3 => "IEEE 802.3",
        Ieee80211 = 4 => "IEEE 802.11a/b/g",
        Ieee80216e = 5 => "IEEE 802.16e",
        ThreeGppGeran = 6 => "3GPP GERAN",
        ThreeGppUtran = 7 => "3GPP UTRAN",
        ThreeGppEutran = 8 => "3GPP E-UTRAN",
    }
}

/// The 3GPP vendor-specific mobility option (RFC 5094 with vendor 10415, TS 29.275
/// section 12.1.1): after the vendor ID come the Sub-Type octet, an octet holding the M
/// (more fragments) flag in its lowest bit, and the sub-type's data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ThreeGppOption {
    /// Protocol Configuration Options (sub-type 1; TS 24.008 10.5.6.3), opaque.
    ProtocolConfigurationOptions(Vec<u8>),
    /// 3GPP specific PMIPv6 error code (sub-type 2, TS 29.275 section 12.1.1.3): one octet.
    ErrorCode(u8),
    /// PMIPv6 PDN GW IP address (sub-type 3): the home gateway a visited gateway should
    /// chain to; 4 or 16 octets.
    PdnGwIpAddress(std::net::IpAddr),
    /// Charging ID (sub-type 7): four octets.
    ChargingId(u32),
    /// PMIPv6 PDN type indication (sub-type 6): the PDN type and the cause octet.
    PdnTypeIndication { pdn_type: PdnType, cause: u8 },
    /// A sub-type we do not interpret, or one whose M (fragment) flag or length we do not
    /// handle: `data` is every octet after the sub-type (starting with the Reserved/M
    /// octet), kept as it was and re-emitted unchanged.
    Other { sub_type: u8, data: Vec<u8> },
}

registry! {
    /// PDN type of the 3GPP PDN type indication (TS 29.275 section 12.1.1.4).
    pub enum PdnType: u8 {
        Ipv4 = 1 => "IPv4",
        Ipv6 = 2 => "IPv6",
        Ipv4v6 = 3 => "IPv4v6",
    }
}

registry! {
    /// Sub-types of the 3GPP vendor-specific mobility option (TS 29.275 section 12.1.1):
    /// those this codec reads into a [`ThreeGppOption`].
    pub enum ThreeGppSubType: u8 {
        ProtocolConfigurationOptions = 1 => "Protocol Configuration Options",
        ErrorCode = 2 => "3GPP Specific PMIPv6 Error Code",
        PdnGwIpAddress = 3 => "PMIPv6 PDN GW IP Address",
        PdnTypeIndication = 6 => "PMIPv6 PDN Type Indication",
        ChargingId = 7 => "Charging ID",
    }
}

/// A Vendor-Specific Mobility Option (RFC 5094).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VendorSpecific {
    /// Vendor 10415, 3GPP.
    ThreeGpp(ThreeGppOption),
    /// Any other vendor: sub-type and data kept as they were.
    Other {
        vendor_id: u32,
        sub_type: u8,
        data: Vec<u8>,
    },
}

/// Mobile Node Identifier option (RFC 4283). Sub-type 1 is the NAI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MobileNodeIdentifier {
    /// Network Access Identifier, e.g. `0234150999999999@nai.epc.mnc015.mcc234.3gppnetwork.org`.
    Nai(String),
    Other {
        sub_type: u8,
        id: Vec<u8>,
    },
}

registry! {
    /// Binding Error status (RFC 6275 section 6.1.9).
    pub enum BindingErrorStatus: u8 {
        /// Unknown binding for Home Address destination option.
        UnknownBindingForHomeAddress = 1 => "Unknown binding for Home Address destination option",
        /// Unrecognized MH Type value.
        UnrecognizedMhType = 2 => "Unrecognized MH Type value",
    }
}

registry! {
    /// Binding Revocation Type (RFC 5846 section 5).
    pub enum BindingRevocationType: u8 {
        Indication = 1 => "Binding Revocation Indication",
        Acknowledgement = 2 => "Binding Revocation Acknowledgement",
    }
}

registry! {
    /// Revocation Trigger of a Binding Revocation Indication (RFC 5846 section 5.1):
    /// per-MN values under 128, global ones from 128.
    pub enum RevocationTrigger: u8 {
        Unspecified = 0 => "Unspecified",
        AdministrativeReason = 1 => "Administrative Reason",
        InterMagHandoverSameAccessType = 2 => "Inter-MAG Handover - same Access Type",
        InterMagHandoverDifferentAccessType = 3 => "Inter-MAG Handover - different Access Type",
        InterMagHandoverUnknown = 4 => "Inter-MAG Handover - Unknown",
        UserInitiatedSessionTermination = 5 => "User-Initiated Session(s) Termination",
        AccessNetworkSessionTermination = 6 => "Access Network Session(s) Termination",
        PossibleOutOfSyncBceState = 7 => "Possible Out-of-Sync BCE State",
        PerPeerPolicy = 128 => "Per-Peer Policy",
        RevokingMobilityNodeLocalPolicy = 129 => "Revoking Mobility Node Local Policy",
    }
}

registry! {
    /// Status of a Binding Revocation Acknowledgement (RFC 5846 section 5.2): values under
    /// 128 are successes.
    pub enum BindingRevocationStatus: u8 {
        Success = 0 => "success",
        PartialSuccess = 1 => "partial success",
        BindingDoesNotExist = 128 => "Binding Does NOT Exist",
        Ipv4HomeAddressOptionRequired = 129 => "IPv4 Home Address Option Required",
        GlobalRevocationNotAuthorized = 130 => "Global Revocation NOT Authorized",
        RevokedMobileNodesIdentityRequired = 131 => "Revoked Mobile Nodes Identity Required",
        RevocationFailedMnIsAttached = 132 => "Revocation Failed - MN is Attached",
        RevocationTriggerNotSupported = 133 => "Revocation Trigger NOT Supported",
        RevocationFunctionNotSupported = 134 => "Revocation Function NOT Supported",
        ProxyBindingRevocationNotSupported = 135 => "Proxy Binding Revocation NOT Supported",
    }
}

impl BindingRevocationStatus {
    /// Values under 128 report a revocation carried out (RFC 5846 section 5.2).
    pub fn is_success(self) -> bool {
        self.value() < 128
    }
}

impl RevocationTrigger {
    /// The trigger telling a MAG that a binding was handed off from it, by whether the
    /// Access Technology Type changed (RFC 5846 section 5.1).
    pub fn handoff(old: AccessTechnologyType, new: AccessTechnologyType) -> Self {
        if old == new {
            RevocationTrigger::InterMagHandoverSameAccessType
        } else {
            RevocationTrigger::InterMagHandoverDifferentAccessType
        }
    }
}

registry! {
    /// Mobility Header types (RFC 6275 section 6.1 and the IANA "Mobility Header Types"
    /// registry). The codec reads Binding Update, Binding Acknowledgement, Binding
    /// Error, Heartbeat and Binding Revocation; any other type is answered with a
    /// Binding Error (RFC 6275 section 9.2).
    pub enum MhType: u8 {
        BindingRefreshRequest = 0 => "Binding Refresh Request",
        HomeTestInit = 1 => "Home Test Init",
        CareOfTestInit = 2 => "Care-of Test Init",
        HomeTest = 3 => "Home Test",
        CareOfTest = 4 => "Care-of Test",
        BindingUpdate = 5 => "Binding Update",
        BindingAck = 6 => "Binding Acknowledgement",
        BindingError = 7 => "Binding Error",
        /// RFC 5142 section 5.
        HomeAgentSwitch = 12 => "Home Agent Switch",
        /// RFC 5847 section 5.1.
        Heartbeat = 13 => "Heartbeat",
        /// RFC 5846 section 5.
        BindingRevocation = 16 => "Binding Revocation",
    }
}

registry! {
    /// Sub-types of the Mobile Node Identifier option (RFC 4283 section 3).
    pub enum MnIdSubtype: u8 {
        /// Network Access Identifier (RFC 4282).
        Nai = 1 => "NAI",
    }
}

/// How the Mobility Header's checksum field is computed and verified, which depends on
/// the transport carrying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumContext {
    /// Directly in IPv6 (next header 135): RFC 6275 section 6.1.1 pseudo-header checksum.
    Ipv6 {
        source: Ipv6Addr,
        destination: Ipv6Addr,
    },
    /// Directly inside UDP port 5436 over IPv4 (RFC 5844 sections 4.1.3.2 and 4.2.2.1):
    /// the field is sent as zero, the UDP checksum protecting the datagram instead, and
    /// ignored on receipt (sections 4.1.3.1 and 4.2.2).
    Ipv4Udp,
    /// Neither computed nor verified (the kernel fills and checks it on a raw IPv6
    /// socket with IPV6_CHECKSUM, as it does here).
    Skip,
}
