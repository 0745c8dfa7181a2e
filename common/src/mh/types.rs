//! Typed values of the Mobility Header: message and option representations, status
//! codes, flags and the small newtypes the standards name (lifetime, GRE key, timestamp).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::{Ipv4Net, Ipv6Net};

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

/// Binding Acknowledgement status (RFC 6275 6.1.8, RFC 5213 8.9, RFC 5844 and the IANA
/// "Status Codes" registry). Values under 128 accept the binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindingAckStatus {
    Accepted,
    AcceptedPrefixDiscoveryNecessary,
    ReasonUnspecified,
    AdministrativelyProhibited,
    InsufficientResources,
    HomeRegistrationNotSupported,
    NotHomeSubnet,
    NotHomeAgentForThisMobileNode,
    DuplicateAddressDetectionFailed,
    SequenceNumberOutOfWindow,
    /// 151, RFC 5149: the MN is not authorized for the requested service (APN).
    ServiceAuthorizationFailed,
    ProxyRegNotEnabled,
    NotLmaForThisMobileNode,
    MagNotAuthorizedForProxyReg,
    NotAuthorizedForHomeNetworkPrefix,
    TimestampMismatch,
    TimestampLowerThanPrevAccepted,
    MissingHomeNetworkPrefixOption,
    BcePbuPrefixSetDoNotMatch,
    MissingMnIdentifierOption,
    MissingHandoffIndicatorOption,
    MissingAccessTechTypeOption,
    GreKeyOptionRequired,
    /// Any other value, kept as it was.
    Other(u8),
}

/// Status of the IPv4 Home Address Reply option (RFC 5844 section 3.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ipv4HomeAddressReplyStatus {
    Success,
    ReasonUnspecified,
    AdministrativelyProhibited,
    IncorrectIpv4HomeAddress,
    InvalidIpv4Address,
    DynamicIpv4HomeAddressAssignmentNotAvailable,
    Other(u8),
}

/// Handoff Indicator (RFC 5213 section 8.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandoffIndicator {
    AttachmentOverNewInterface,
    HandoffBetweenDifferentInterfaces,
    HandoffBetweenSameInterface,
    HandoffStateUnknown,
    HandoffStateNotChanged,
    Other(u8),
}

/// Access Technology Type (RFC 5213 section 8.5 and the IANA registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessTechnologyType {
    Virtual,
    Ppp,
    Ieee8023,
    Ieee80211,
    Ieee80216e,
    ThreeGppGeran,
    ThreeGppUtran,
    ThreeGppEutran,
    Other(u8),
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

/// PDN type indication (TS 29.275).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PdnType {
    Ipv4,
    Ipv6,
    Ipv4v6,
    Other(u8),
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

/// One mobility option (RFC 6275 section 6.2 and the PMIPv6 extensions). Pad1 and PadN
/// are consumed by the parser and inserted by the emitter; they never appear here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MobilityOption {
    /// Binding Refresh Advice (type 2), in units of 4 seconds.
    BindingRefreshAdvice(u16),
    /// Alternate Care-of Address (type 3).
    AlternateCareOfAddress(Ipv6Addr),
    /// Nonce Indices (type 4).
    NonceIndices { home: u16, care_of: u16 },
    /// Binding Authorization Data (type 5): the authenticator.
    BindingAuthorizationData(Vec<u8>),
    /// Mobile Network Prefix (type 6, RFC 3963).
    MobileNetworkPrefix(Ipv6Net),
    /// Mobile Node Identifier (type 8, RFC 4283).
    MobileNodeIdentifier(MobileNodeIdentifier),
    /// Vendor-Specific Mobility Option (type 19, RFC 5094).
    VendorSpecific(VendorSpecific),
    /// Service Selection (type 20, RFC 5149): the APN.
    ServiceSelection(String),
    /// Home Network Prefix (type 22, RFC 5213).
    HomeNetworkPrefix(Ipv6Net),
    /// Handoff Indicator (type 23, RFC 5213).
    HandoffIndicator(HandoffIndicator),
    /// Access Technology Type (type 24, RFC 5213).
    AccessTechnologyType(AccessTechnologyType),
    /// Mobile Node Link-layer Identifier (type 25, RFC 5213).
    MobileNodeLinkLayerIdentifier(Vec<u8>),
    /// Link-local Address (type 26, RFC 5213).
    LinkLocalAddress(Ipv6Addr),
    /// Timestamp (type 27, RFC 5213).
    Timestamp(Timestamp),
    /// Restart Counter (type 28, RFC 5847).
    RestartCounter(u32),
    /// IPv4 Home Address (type 29, RFC 5555).
    Ipv4HomeAddress {
        prefix_len: u8,
        address: Ipv4Addr,
        request_prefix: bool,
    },
    /// IPv4 Address Acknowledgement (type 30, RFC 5555).
    Ipv4AddressAcknowledgement {
        status: u8,
        prefix_len: u8,
        address: Ipv4Addr,
    },
    /// NAT Detection (type 31, RFC 5555).
    NatDetection {
        udp_encapsulation_required: bool,
        refresh_time: u32,
    },
    /// IPv4 Care-of Address (type 32, RFC 5555).
    Ipv4CareOfAddress(Ipv4Addr),
    /// GRE Key (type 33, RFC 5845).
    GreKey(GreKey),
    /// IPv4 Home Address Request (type 36, RFC 5844): 0.0.0.0/0 asks for any address.
    Ipv4HomeAddressRequest(Ipv4Net),
    /// IPv4 Home Address Reply (type 37, RFC 5844).
    Ipv4HomeAddressReply {
        status: Ipv4HomeAddressReplyStatus,
        address: Ipv4Net,
    },
    /// IPv4 Default-Router Address (type 38, RFC 5844).
    Ipv4DefaultRouterAddress(Ipv4Addr),
    /// IPv4 DHCP Support Mode (type 39, RFC 5844): S flag, the LMA is the DHCP server.
    Ipv4DhcpSupportMode { server: bool },
    /// An option type we do not interpret, kept as it was and re-emitted unchanged.
    Unknown { option_type: u8, data: Vec<u8> },
}

/// Binding Update, and Proxy Binding Update when the P flag is set (RFC 6275 6.1.7,
/// RFC 5213 8.1). Options in wire order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BindingUpdateRepr {
    pub sequence: u16,
    pub flags: BuFlags,
    pub lifetime: Lifetime,
    pub options: Vec<MobilityOption>,
}

/// Binding Acknowledgement, and Proxy Binding Acknowledgement when the P flag is set
/// (RFC 6275 6.1.8, RFC 5213 8.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BindingAckRepr {
    pub status: BindingAckStatus,
    pub flags: BaFlags,
    pub sequence: u16,
    pub lifetime: Lifetime,
    pub options: Vec<MobilityOption>,
}

/// Binding Error status (RFC 6275 section 6.1.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindingErrorStatus {
    /// 1: unknown binding for Home Address destination option.
    UnknownBindingForHomeAddress,
    /// 2: unrecognized MH Type value.
    UnrecognizedMhType,
    Other(u8),
}

/// Binding Error (RFC 6275 section 6.1.9).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BindingErrorRepr {
    pub status: BindingErrorStatus,
    pub home_address: Ipv6Addr,
    pub options: Vec<MobilityOption>,
}

/// Heartbeat message (RFC 5847 section 5.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeartbeatRepr {
    /// U flag: unsolicited (no response expected).
    pub unsolicited: bool,
    /// R flag: this is a response.
    pub response: bool,
    pub sequence: u32,
    pub options: Vec<MobilityOption>,
}

/// Binding Revocation Type (RFC 5846 section 6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindingRevocationType {
    Indication,
    Acknowledgement,
    Other(u8),
}

/// Binding Revocation Indication or Acknowledgement (RFC 5846 sections 6.1 to 6.3).
/// `trigger_or_status` is the Revocation Trigger in an indication and the Status in an
/// acknowledgement; `flags` is the flags octet as on the wire: P (proxy binding, 0x80),
/// V (IPv4 home address binding only, 0x40) and G (global revocation, 0x20), see
/// [`BindingRevocationRepr::PROXY`] and its siblings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BindingRevocationRepr {
    pub revocation_type: BindingRevocationType,
    pub trigger_or_status: u8,
    pub sequence: u16,
    pub flags: u8,
    pub options: Vec<MobilityOption>,
}

impl BindingRevocationRepr {
    /// P: the revocation concerns a proxy (PMIPv6) binding.
    pub const PROXY: u8 = 0x80;
    /// V: only the IPv4 home address binding is revoked.
    pub const IPV4_HOA_ONLY: u8 = 0x40;
    /// G: global revocation of every binding of the peer.
    pub const GLOBAL: u8 = 0x20;
}

/// The message a Mobility Header carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MobilityMessage {
    BindingUpdate(BindingUpdateRepr),
    BindingAck(BindingAckRepr),
    BindingError(BindingErrorRepr),
    Heartbeat(HeartbeatRepr),
    BindingRevocation(BindingRevocationRepr),
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
    /// Inside UDP port 5436 over IPv4 (RFC 5844): see the codec's module doc for what the
    /// checksum covers there.
    Ipv4Udp {
        source: Ipv4Addr,
        destination: Ipv4Addr,
    },
    /// Neither computed nor verified (the kernel fills and checks it on a raw IPv6
    /// socket with IPV6_CHECKSUM, as it does here).
    Skip,
}

/// A Proxy Binding Update as the LMA's logic sees it (RFC 5213 section 6.9, RFC 5844,
/// RFC 5845, TS 29.275): the options of a BU with the P flag, validated and named. Built
/// from a [`BindingUpdateRepr`] by `ProxyBindingUpdate::try_from`, whose error names the
/// PBA status to answer with; turned back into one by `to_binding_update`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProxyBindingUpdate {
    pub sequence: u16,
    /// The A flag and the other flags besides P, as received.
    pub flags: BuFlags,
    pub lifetime: Lifetime,
    /// MN-ID: the NAI (mandatory: MISSING_MN_IDENTIFIER_OPTION, 160, when missing).
    pub mn_id: String,
    /// Service Selection: the APN.
    pub apn: Option<String>,
    /// Home Network Prefixes requested or held: `::/0` asks the LMA to allocate.
    pub home_network_prefixes: Vec<Ipv6Net>,
    /// Mandatory (MISSING_HANDOFF_INDICATOR_OPTION, 161, when missing).
    pub handoff: HandoffIndicator,
    /// Mandatory (MISSING_ACCESS_TECH_TYPE_OPTION, 162, when missing).
    pub access_technology: AccessTechnologyType,
    pub timestamp: Option<Timestamp>,
    pub link_local_address: Option<Ipv6Addr>,
    pub link_layer_id: Option<Vec<u8>>,
    /// The MAG's downlink GRE key (RFC 5845).
    pub gre_key: Option<GreKey>,
    /// `0.0.0.0/0` asks the LMA to allocate an IPv4 home address (RFC 5844).
    pub ipv4_home_address_request: Option<Ipv4Net>,
    /// The MAG's IPv4 proxy care-of address (IPv4 Care-of Address option, type 32, as
    /// RFC 5844 section 3.1 uses it when the transport is IPv6 but the MAG has IPv4).
    pub ipv4_care_of_address: Option<Ipv4Addr>,
    pub restart_counter: Option<u32>,
    pub vendor: Vec<VendorSpecific>,
    /// Every other option, kept and re-emitted as received.
    pub other: Vec<MobilityOption>,
}

/// A Proxy Binding Acknowledgement as the MAG's logic sees it (RFC 5213 section 6.9.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProxyBindingAck {
    pub status: BindingAckStatus,
    pub sequence: u16,
    pub lifetime: Lifetime,
    pub mn_id: Option<String>,
    pub apn: Option<String>,
    pub home_network_prefixes: Vec<Ipv6Net>,
    pub handoff: Option<HandoffIndicator>,
    pub access_technology: Option<AccessTechnologyType>,
    pub timestamp: Option<Timestamp>,
    pub link_local_address: Option<Ipv6Addr>,
    pub link_layer_id: Option<Vec<u8>>,
    /// The LMA's uplink GRE key (RFC 5845).
    pub gre_key: Option<GreKey>,
    pub ipv4_home_address_reply: Option<(Ipv4HomeAddressReplyStatus, Ipv4Net)>,
    pub ipv4_default_router: Option<Ipv4Addr>,
    pub restart_counter: Option<u32>,
    pub vendor: Vec<VendorSpecific>,
    pub other: Vec<MobilityOption>,
}
