//! Parsing and emitting Mobility Header messages and options, the checksum for both
//! transports, and the conversions between a Binding Update / Acknowledgement and their
//! proxy (PMIPv6) forms.
//!
//! Checksum. Over IPv6 the Mobility Header checksum is the RFC 6275 section 6.1.1 one's
//! complement sum over the IPv6 pseudo-header (source, destination, upper-layer length,
//! next header 135) and the whole Mobility Header. Over IPv4 (RFC 5844) the Mobility
//! Header travels directly in a UDP datagram to port 5436, so there is no IPv6 header to
//! build the pseudo-header from: we compute the same RFC 6275 sum with the IPv4 source
//! and destination written as IPv4-mapped IPv6 addresses (RFC 4291 section 2.5.5.2), and
//! verify it the same way on receipt; the UDP checksum (computed by the kernel) protects
//! the datagram as a whole as well. On a raw IPv6 socket with `IPV6_CHECKSUM` the kernel
//! fills and verifies the field, so drivers pass [`ChecksumContext::Skip`].
//!
//! Alignment. Every option is placed at the offset its `xn+y` alignment rule names
//! (offsets counted from the start of the Mobility Header, which IPv6 places on an
//! 8-octet boundary), with Pad1 / PadN in between, and the message is padded to a multiple
//! of 8 octets (RFC 6275 sections 6.1.1 and 6.2). The parser accepts any alignment.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use super::types::*;

/// MH Type of a Binding Update (RFC 6275 section 6.1.7).
pub const MH_TYPE_BINDING_UPDATE: u8 = 5;
/// MH Type of a Binding Acknowledgement (RFC 6275 section 6.1.8).
pub const MH_TYPE_BINDING_ACK: u8 = 6;
/// MH Type of a Binding Error (RFC 6275 section 6.1.9).
pub const MH_TYPE_BINDING_ERROR: u8 = 7;
/// MH Type of a Heartbeat (RFC 5847 section 5.1).
pub const MH_TYPE_HEARTBEAT: u8 = 13;
/// MH Type of a Binding Revocation message (RFC 5846 section 6.1).
pub const MH_TYPE_BINDING_REVOCATION: u8 = 16;

/// The 3GPP vendor ID (SMI network management private enterprise code 10415).
pub const VENDOR_ID_3GPP: u32 = 10415;

/// Length of the fixed Mobility Header fields before the message data.
const MH_FIXED_LEN: usize = 6;
/// Largest Mobility Header the 8-bit Header Len field can describe.
pub const MH_MAX_LEN: usize = 256 * 8;

/// Everything that can be wrong with Mobility Header bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MhError {
    /// Fewer bytes than a length field or fixed layout requires.
    #[error("truncated: {0}")]
    Truncated(&'static str),
    /// The checksum does not verify.
    #[error("bad checksum")]
    BadChecksum,
    /// An MH Type this codec does not implement: answer with a Binding Error, status 2
    /// (RFC 6275 section 9.2).
    #[error("unrecognized MH type {0}")]
    UnknownMhType(u8),
    /// A field or option whose value or length the standard forbids.
    #[error("malformed: {0}")]
    Malformed(&'static str),
}

/// Option type numbers (IANA "Mobility Options").
mod opt {
    pub const PAD1: u8 = 0;
    pub const PADN: u8 = 1;
    pub const BINDING_REFRESH_ADVICE: u8 = 2;
    pub const ALTERNATE_COA: u8 = 3;
    pub const NONCE_INDICES: u8 = 4;
    pub const BINDING_AUTHORIZATION_DATA: u8 = 5;
    pub const MOBILE_NETWORK_PREFIX: u8 = 6;
    pub const MN_ID: u8 = 8;
    pub const VENDOR_SPECIFIC: u8 = 19;
    pub const SERVICE_SELECTION: u8 = 20;
    pub const HOME_NETWORK_PREFIX: u8 = 22;
    pub const HANDOFF_INDICATOR: u8 = 23;
    pub const ACCESS_TECHNOLOGY_TYPE: u8 = 24;
    pub const MN_LINK_LAYER_ID: u8 = 25;
    pub const LINK_LOCAL_ADDRESS: u8 = 26;
    pub const TIMESTAMP: u8 = 27;
    pub const RESTART_COUNTER: u8 = 28;
    pub const IPV4_HOME_ADDRESS: u8 = 29;
    pub const IPV4_ADDRESS_ACK: u8 = 30;
    pub const NAT_DETECTION: u8 = 31;
    pub const IPV4_COA: u8 = 32;
    pub const GRE_KEY: u8 = 33;
    pub const IPV4_HOA_REQUEST: u8 = 36;
    pub const IPV4_HOA_REPLY: u8 = 37;
    pub const IPV4_DEFAULT_ROUTER: u8 = 38;
    pub const IPV4_DHCP_SUPPORT_MODE: u8 = 39;

    /// Every type the codec interprets (an `Unknown` option never carries one of these).
    pub const KNOWN: [u8; 26] = [
        PAD1,
        PADN,
        BINDING_REFRESH_ADVICE,
        ALTERNATE_COA,
        NONCE_INDICES,
        BINDING_AUTHORIZATION_DATA,
        MOBILE_NETWORK_PREFIX,
        MN_ID,
        VENDOR_SPECIFIC,
        SERVICE_SELECTION,
        HOME_NETWORK_PREFIX,
        HANDOFF_INDICATOR,
        ACCESS_TECHNOLOGY_TYPE,
        MN_LINK_LAYER_ID,
        LINK_LOCAL_ADDRESS,
        TIMESTAMP,
        RESTART_COUNTER,
        IPV4_HOME_ADDRESS,
        IPV4_ADDRESS_ACK,
        NAT_DETECTION,
        IPV4_COA,
        GRE_KEY,
        IPV4_HOA_REQUEST,
        IPV4_HOA_REPLY,
        IPV4_DEFAULT_ROUTER,
        IPV4_DHCP_SUPPORT_MODE,
    ];
}

/// Whether `option_type` is one the codec interprets (so `Unknown` must not carry it).
pub fn is_known_option_type(option_type: u8) -> bool {
    opt::KNOWN.contains(&option_type)
}

/// 3GPP vendor-specific sub-types (TS 29.275 section 12.1.1).
mod sub3gpp {
    pub const PCO: u8 = 1;
    pub const ERROR_CODE: u8 = 2;
    pub const PDN_GW_IP_ADDRESS: u8 = 3;
    pub const PDN_TYPE_INDICATION: u8 = 6;
    pub const CHARGING_ID: u8 = 7;
}

// ---------------------------------------------------------------------------------------
// Checksum

/// One's complement sum of `data` added to `sum` (RFC 1071), not yet folded.
fn sum_words(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([pair[0], pair[1]])));
    }
    if let [last] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*last) << 8);
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The folded one's complement sum of the pseudo-header and `mh` (checksum field as it
/// is in `mh`), or `None` when the context computes no checksum.
fn pseudo_header_sum(context: ChecksumContext, mh: &[u8]) -> Option<u16> {
    let (source, destination) = match context {
        ChecksumContext::Ipv6 {
            source,
            destination,
        } => (source, destination),
        ChecksumContext::Ipv4Udp {
            source,
            destination,
        } => (source.to_ipv6_mapped(), destination.to_ipv6_mapped()),
        ChecksumContext::Skip => return None,
    };
    let mut sum = sum_words(0, &source.octets());
    sum = sum_words(sum, &destination.octets());
    let length = u32::try_from(mh.len()).unwrap_or(u32::MAX);
    sum = sum_words(sum, &length.to_be_bytes());
    sum = sum_words(sum, &[0, 0, 0, IPPROTO_MH]);
    sum = sum_words(sum, mh);
    Some(fold(sum))
}

/// The checksum to put in a Mobility Header whose checksum field is zero.
pub fn mobility_header_checksum(context: ChecksumContext, mh: &[u8]) -> Option<u16> {
    pseudo_header_sum(context, mh).map(|sum| !sum)
}

/// Whether the checksum in `mh` verifies (always true for [`ChecksumContext::Skip`]).
pub fn verify_checksum(context: ChecksumContext, mh: &[u8]) -> bool {
    match pseudo_header_sum(context, mh) {
        Some(sum) => sum == 0xffff,
        None => true,
    }
}

// ---------------------------------------------------------------------------------------
// The checked view

/// A Mobility Header over a byte buffer (RFC 6275 section 6.1.1). `new_checked` makes
/// every accessor safe: the buffer holds exactly `(Header Len + 1) * 8` octets.
#[derive(Debug, Clone)]
pub struct MobilityHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> MobilityHeader<T> {
    /// Checks the lengths: at least the fixed header, and exactly as long as Header Len says.
    pub fn new_checked(buffer: T) -> Result<Self, MhError> {
        let bytes = buffer.as_ref();
        if bytes.len() < 8 {
            return Err(MhError::Truncated("shorter than the 8-octet minimum"));
        }
        let declared = (usize::from(bytes[1]) + 1) * 8;
        if bytes.len() < declared {
            return Err(MhError::Truncated("shorter than its Header Len field"));
        }
        if bytes.len() > declared {
            return Err(MhError::Malformed(
                "octets after the end its Header Len gives",
            ));
        }
        Ok(MobilityHeader { buffer })
    }

    /// Payload Proto (59, no next header, in every message we send).
    pub fn payload_proto(&self) -> u8 {
        self.buffer.as_ref()[0]
    }
    /// Total length in octets.
    pub fn len(&self) -> usize {
        self.buffer.as_ref().len()
    }
    /// Never true for a checked view; present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn mh_type(&self) -> u8 {
        self.buffer.as_ref()[2]
    }
    pub fn checksum(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[4], b[5]])
    }
    /// The message data and its options: everything after the checksum.
    pub fn message_data(&self) -> &[u8] {
        &self.buffer.as_ref()[MH_FIXED_LEN..]
    }
    /// Whether the checksum verifies in `context`.
    pub fn verify_checksum(&self, context: ChecksumContext) -> bool {
        verify_checksum(context, self.buffer.as_ref())
    }
    /// The mobility options after a message's fixed part of `fixed_len` octets.
    pub fn options(&self, fixed_len: usize) -> OptionIter<'_> {
        let data = self.message_data();
        OptionIter {
            bytes: data.get(fixed_len..).unwrap_or(&[]),
        }
    }
}

/// One option as it is on the wire: its type and its data (Pad1 and PadN included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawOption<'a> {
    pub option_type: u8,
    pub data: &'a [u8],
}

/// Walks the type-length-value options of a message, checking every length before
/// reading; yields an error and then stops at the first option that overruns.
#[derive(Debug, Clone)]
pub struct OptionIter<'a> {
    bytes: &'a [u8],
}

impl<'a> OptionIter<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        OptionIter { bytes }
    }
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = Result<RawOption<'a>, MhError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&option_type, rest) = self.bytes.split_first()?;
        if option_type == opt::PAD1 {
            self.bytes = rest;
            return Some(Ok(RawOption {
                option_type,
                data: &[],
            }));
        }
        let Some((&len, rest)) = rest.split_first() else {
            self.bytes = &[];
            return Some(Err(MhError::Truncated("option without its length octet")));
        };
        let len = usize::from(len);
        if rest.len() < len {
            self.bytes = &[];
            return Some(Err(MhError::Truncated("option longer than the message")));
        }
        let (data, rest) = rest.split_at(len);
        self.bytes = rest;
        Some(Ok(RawOption { option_type, data }))
    }
}

// ---------------------------------------------------------------------------------------
// Parsing

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
fn ipv4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}
fn ipv6(b: &[u8]) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&b[..16]);
    Ipv6Addr::from(octets)
}

fn exact(data: &[u8], len: usize, what: &'static str) -> Result<(), MhError> {
    if data.len() == len {
        Ok(())
    } else {
        Err(MhError::Malformed(what))
    }
}

fn ipv6_prefix(data: &[u8], what: &'static str) -> Result<Ipv6Net, MhError> {
    // Reserved (1), Prefix Length (1), Prefix (16).
    exact(data, 18, what)?;
    Ipv6Net::new(ipv6(&data[2..18]), data[1]).map_err(|_| MhError::Malformed(what))
}

fn utf8(data: &[u8], what: &'static str) -> Result<String, MhError> {
    String::from_utf8(data.to_vec()).map_err(|_| MhError::Malformed(what))
}

/// Decodes one option's data by type.
fn parse_option(option_type: u8, data: &[u8]) -> Result<MobilityOption, MhError> {
    use MobilityOption as O;
    Ok(match option_type {
        opt::BINDING_REFRESH_ADVICE => {
            exact(data, 2, "Binding Refresh Advice length")?;
            O::BindingRefreshAdvice(be16(data))
        }
        opt::ALTERNATE_COA => {
            exact(data, 16, "Alternate Care-of Address length")?;
            O::AlternateCareOfAddress(ipv6(data))
        }
        opt::NONCE_INDICES => {
            exact(data, 4, "Nonce Indices length")?;
            O::NonceIndices {
                home: be16(data),
                care_of: be16(&data[2..]),
            }
        }
        opt::BINDING_AUTHORIZATION_DATA => O::BindingAuthorizationData(data.to_vec()),
        opt::MOBILE_NETWORK_PREFIX => {
            O::MobileNetworkPrefix(ipv6_prefix(data, "Mobile Network Prefix option")?)
        }
        opt::MN_ID => {
            let (&sub_type, id) = data
                .split_first()
                .ok_or(MhError::Malformed("Mobile Node Identifier without subtype"))?;
            if sub_type == 1 {
                O::MobileNodeIdentifier(MobileNodeIdentifier::Nai(utf8(
                    id,
                    "MN-ID NAI is not UTF-8",
                )?))
            } else {
                O::MobileNodeIdentifier(MobileNodeIdentifier::Other {
                    sub_type,
                    id: id.to_vec(),
                })
            }
        }
        opt::VENDOR_SPECIFIC => O::VendorSpecific(parse_vendor(data)?),
        opt::SERVICE_SELECTION => {
            O::ServiceSelection(utf8(data, "Service Selection identifier is not UTF-8")?)
        }
        opt::HOME_NETWORK_PREFIX => {
            O::HomeNetworkPrefix(ipv6_prefix(data, "Home Network Prefix option")?)
        }
        opt::HANDOFF_INDICATOR => {
            exact(data, 2, "Handoff Indicator length")?;
            O::HandoffIndicator(HandoffIndicator::from(data[1]))
        }
        opt::ACCESS_TECHNOLOGY_TYPE => {
            exact(data, 2, "Access Technology Type length")?;
            O::AccessTechnologyType(AccessTechnologyType::from(data[1]))
        }
        opt::MN_LINK_LAYER_ID => {
            if data.len() < 2 {
                return Err(MhError::Malformed("MN Link-layer Identifier length"));
            }
            O::MobileNodeLinkLayerIdentifier(data[2..].to_vec())
        }
        opt::LINK_LOCAL_ADDRESS => {
            exact(data, 16, "Link-local Address length")?;
            O::LinkLocalAddress(ipv6(data))
        }
        opt::TIMESTAMP => {
            exact(data, 8, "Timestamp length")?;
            O::Timestamp(Timestamp(u64::from_be_bytes([
                data[0], data[1], data[2], data[3], data[4], data[5], data[6], data[7],
            ])))
        }
        opt::RESTART_COUNTER => {
            exact(data, 4, "Restart Counter length")?;
            O::RestartCounter(be32(data))
        }
        opt::IPV4_HOME_ADDRESS => {
            exact(data, 6, "IPv4 Home Address length")?;
            let prefix_len = data[0] >> 2;
            if prefix_len > 32 {
                return Err(MhError::Malformed("IPv4 Home Address prefix length"));
            }
            O::Ipv4HomeAddress {
                prefix_len,
                request_prefix: data[0] & 0x02 != 0,
                address: ipv4(&data[2..]),
            }
        }
        opt::IPV4_ADDRESS_ACK => {
            exact(data, 6, "IPv4 Address Acknowledgement length")?;
            let prefix_len = data[1] >> 2;
            if prefix_len > 32 {
                return Err(MhError::Malformed(
                    "IPv4 Address Acknowledgement prefix length",
                ));
            }
            O::Ipv4AddressAcknowledgement {
                status: data[0],
                prefix_len,
                address: ipv4(&data[2..]),
            }
        }
        opt::NAT_DETECTION => {
            exact(data, 6, "NAT Detection length")?;
            O::NatDetection {
                udp_encapsulation_required: data[0] & 0x80 != 0,
                refresh_time: be32(&data[2..]),
            }
        }
        opt::IPV4_COA => {
            exact(data, 6, "IPv4 Care-of Address length")?;
            O::Ipv4CareOfAddress(ipv4(&data[2..]))
        }
        opt::GRE_KEY => {
            exact(data, 6, "GRE Key length")?;
            O::GreKey(GreKey(be32(&data[2..])))
        }
        opt::IPV4_HOA_REQUEST => {
            exact(data, 6, "IPv4 Home Address Request length")?;
            let net = Ipv4Net::new(ipv4(&data[2..]), data[0] >> 2)
                .map_err(|_| MhError::Malformed("IPv4 Home Address Request prefix length"))?;
            O::Ipv4HomeAddressRequest(net)
        }
        opt::IPV4_HOA_REPLY => {
            exact(data, 6, "IPv4 Home Address Reply length")?;
            let address = Ipv4Net::new(ipv4(&data[2..]), data[1] >> 2)
                .map_err(|_| MhError::Malformed("IPv4 Home Address Reply prefix length"))?;
            O::Ipv4HomeAddressReply {
                status: Ipv4HomeAddressReplyStatus::from(data[0]),
                address,
            }
        }
        opt::IPV4_DEFAULT_ROUTER => {
            exact(data, 6, "IPv4 Default-Router Address length")?;
            O::Ipv4DefaultRouterAddress(ipv4(&data[2..]))
        }
        opt::IPV4_DHCP_SUPPORT_MODE => {
            exact(data, 2, "IPv4 DHCP Support Mode length")?;
            O::Ipv4DhcpSupportMode {
                server: data[1] & 0x01 != 0,
            }
        }
        option_type => O::Unknown {
            option_type,
            data: data.to_vec(),
        },
    })
}

/// Decodes a Vendor-Specific Mobility Option (RFC 5094): Vendor ID, Sub-Type, Data.
fn parse_vendor(data: &[u8]) -> Result<VendorSpecific, MhError> {
    if data.len() < 5 {
        return Err(MhError::Malformed(
            "Vendor-Specific option shorter than 5 octets",
        ));
    }
    let vendor_id = be32(data);
    let sub_type = data[4];
    let rest = &data[5..];
    if vendor_id != VENDOR_ID_3GPP {
        return Ok(VendorSpecific::Other {
            vendor_id,
            sub_type,
            data: rest.to_vec(),
        });
    }
    let other = || {
        VendorSpecific::ThreeGpp(ThreeGppOption::Other {
            sub_type,
            data: rest.to_vec(),
        })
    };
    // The octet after the sub-type is Reserved with the M flag in its low bit; a
    // fragment, non-zero reserved bits or an unexpected length keep the raw form.
    let Some((&flags, value)) = rest.split_first() else {
        return Ok(other());
    };
    if flags != 0 {
        return Ok(other());
    }
    let option = match (sub_type, value.len()) {
        (sub3gpp::PCO, _) => ThreeGppOption::ProtocolConfigurationOptions(value.to_vec()),
        (sub3gpp::ERROR_CODE, 1) => ThreeGppOption::ErrorCode(value[0]),
        (sub3gpp::PDN_GW_IP_ADDRESS, 4) => ThreeGppOption::PdnGwIpAddress(IpAddr::V4(ipv4(value))),
        (sub3gpp::PDN_GW_IP_ADDRESS, 16) => ThreeGppOption::PdnGwIpAddress(IpAddr::V6(ipv6(value))),
        (sub3gpp::PDN_TYPE_INDICATION, 2) => ThreeGppOption::PdnTypeIndication {
            pdn_type: PdnType::from(value[0]),
            cause: value[1],
        },
        (sub3gpp::CHARGING_ID, 4) => ThreeGppOption::ChargingId(be32(value)),
        _ => return Ok(other()),
    };
    Ok(VendorSpecific::ThreeGpp(option))
}

/// Decodes every option of `bytes`, skipping Pad1 and PadN.
pub fn parse_options(bytes: &[u8]) -> Result<Vec<MobilityOption>, MhError> {
    let mut options = Vec::new();
    for raw in OptionIter::new(bytes) {
        let raw = raw?;
        if raw.option_type == opt::PAD1 || raw.option_type == opt::PADN {
            continue;
        }
        options.push(parse_option(raw.option_type, raw.data)?);
    }
    Ok(options)
}

/// A whole Mobility Header message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MobilityHeaderRepr {
    pub payload_proto: u8,
    pub message: MobilityMessage,
}

impl MobilityHeaderRepr {
    /// Parses and validates a whole Mobility Header, verifying its checksum in `checksum`.
    pub fn parse(bytes: &[u8], checksum: ChecksumContext) -> Result<Self, MhError> {
        let view = MobilityHeader::new_checked(bytes)?;
        if !view.verify_checksum(checksum) {
            return Err(MhError::BadChecksum);
        }
        Self::parse_view(&view)
    }

    /// Parses a checked view whose checksum the caller has dealt with.
    pub fn parse_view<T: AsRef<[u8]>>(view: &MobilityHeader<T>) -> Result<Self, MhError> {
        let data = view.message_data();
        let fixed = |len: usize, what: &'static str| -> Result<(&[u8], &[u8]), MhError> {
            if data.len() < len {
                Err(MhError::Truncated(what))
            } else {
                Ok(data.split_at(len))
            }
        };
        let message = match view.mh_type() {
            MH_TYPE_BINDING_UPDATE => {
                let (f, options) = fixed(6, "Binding Update fixed fields")?;
                MobilityMessage::BindingUpdate(BindingUpdateRepr {
                    sequence: be16(f),
                    flags: BuFlags(be16(&f[2..])),
                    lifetime: Lifetime(be16(&f[4..])),
                    options: parse_options(options)?,
                })
            }
            MH_TYPE_BINDING_ACK => {
                let (f, options) = fixed(6, "Binding Acknowledgement fixed fields")?;
                MobilityMessage::BindingAck(BindingAckRepr {
                    status: BindingAckStatus::from(f[0]),
                    flags: BaFlags(f[1]),
                    sequence: be16(&f[2..]),
                    lifetime: Lifetime(be16(&f[4..])),
                    options: parse_options(options)?,
                })
            }
            MH_TYPE_BINDING_ERROR => {
                let (f, options) = fixed(18, "Binding Error fixed fields")?;
                MobilityMessage::BindingError(BindingErrorRepr {
                    status: BindingErrorStatus::from(f[0]),
                    home_address: ipv6(&f[2..]),
                    options: parse_options(options)?,
                })
            }
            MH_TYPE_HEARTBEAT => {
                let (f, options) = fixed(6, "Heartbeat fixed fields")?;
                MobilityMessage::Heartbeat(HeartbeatRepr {
                    unsolicited: f[1] & 0x02 != 0,
                    response: f[1] & 0x01 != 0,
                    sequence: be32(&f[2..]),
                    options: parse_options(options)?,
                })
            }
            MH_TYPE_BINDING_REVOCATION => {
                let (f, options) = fixed(6, "Binding Revocation fixed fields")?;
                MobilityMessage::BindingRevocation(BindingRevocationRepr {
                    revocation_type: BindingRevocationType::from(f[0]),
                    trigger_or_status: f[1],
                    sequence: be16(&f[2..]),
                    flags: f[4],
                    options: parse_options(options)?,
                })
            }
            other => return Err(MhError::UnknownMhType(other)),
        };
        Ok(MobilityHeaderRepr {
            payload_proto: view.payload_proto(),
            message,
        })
    }

    /// The MH Type this message is sent with.
    pub fn mh_type(&self) -> u8 {
        match self.message {
            MobilityMessage::BindingUpdate(_) => MH_TYPE_BINDING_UPDATE,
            MobilityMessage::BindingAck(_) => MH_TYPE_BINDING_ACK,
            MobilityMessage::BindingError(_) => MH_TYPE_BINDING_ERROR,
            MobilityMessage::Heartbeat(_) => MH_TYPE_HEARTBEAT,
            MobilityMessage::BindingRevocation(_) => MH_TYPE_BINDING_REVOCATION,
        }
    }

    /// Octets `emit` writes.
    pub fn buffer_len(&self) -> usize {
        let mut sink = Sink::counting();
        self.write(&mut sink);
        sink.pos
    }

    /// Writes the message into `out` (at least `buffer_len()` long; a shorter buffer gets
    /// a truncated message, never a panic) with its checksum computed for `checksum`.
    ///
    /// The wire limits (255 octets of option data, 2048 octets of message) are the
    /// caller's to respect: [`MobilityHeaderRepr::check_limits`] says whether they hold;
    /// longer option data is cut at 255 octets.
    pub fn emit(&self, out: &mut [u8], checksum: ChecksumContext) {
        let mut sink = Sink::new(out);
        self.write(&mut sink);
        let len = sink.pos;
        finish(out, len, checksum);
    }

    /// Allocates and emits, in one pass for any message within the wire limits.
    pub fn to_bytes(&self, checksum: ChecksumContext) -> Vec<u8> {
        let mut out = vec![0u8; MH_MAX_LEN];
        let mut sink = Sink::new(&mut out);
        self.write(&mut sink);
        let len = sink.pos;
        if len > MH_MAX_LEN {
            // Beyond the wire limit: size first, then write (check_limits says why).
            let mut out = vec![0u8; len];
            self.emit(&mut out, checksum);
            return out;
        }
        out.truncate(len);
        finish(&mut out, len, checksum);
        out
    }

    /// Whether the message fits the wire's length fields: every option's data at most
    /// 255 octets and the whole message at most 2048 octets.
    pub fn check_limits(&self) -> Result<(), MhError> {
        let options = match &self.message {
            MobilityMessage::BindingUpdate(m) => &m.options,
            MobilityMessage::BindingAck(m) => &m.options,
            MobilityMessage::BindingError(m) => &m.options,
            MobilityMessage::Heartbeat(m) => &m.options,
            MobilityMessage::BindingRevocation(m) => &m.options,
        };
        for option in options {
            let mut sink = Sink::counting();
            write_option_data(option, &mut sink);
            if sink.pos > 255 {
                return Err(MhError::Malformed("option data longer than 255 octets"));
            }
        }
        if self.buffer_len() > MH_MAX_LEN {
            return Err(MhError::Malformed("message longer than 2048 octets"));
        }
        Ok(())
    }

    fn write(&self, sink: &mut Sink<'_>) {
        sink.put(&[self.payload_proto, 0, self.mh_type(), 0, 0, 0]);
        let options = match &self.message {
            MobilityMessage::BindingUpdate(m) => {
                sink.put(&m.sequence.to_be_bytes());
                sink.put(&m.flags.0.to_be_bytes());
                sink.put(&m.lifetime.0.to_be_bytes());
                &m.options
            }
            MobilityMessage::BindingAck(m) => {
                sink.put(&[u8::from(m.status), m.flags.0]);
                sink.put(&m.sequence.to_be_bytes());
                sink.put(&m.lifetime.0.to_be_bytes());
                &m.options
            }
            MobilityMessage::BindingError(m) => {
                sink.put(&[u8::from(m.status), 0]);
                sink.put(&m.home_address.octets());
                &m.options
            }
            MobilityMessage::Heartbeat(m) => {
                let flags = (u8::from(m.unsolicited) << 1) | u8::from(m.response);
                sink.put(&[0, flags]);
                sink.put(&m.sequence.to_be_bytes());
                &m.options
            }
            MobilityMessage::BindingRevocation(m) => {
                sink.put(&[u8::from(m.revocation_type), m.trigger_or_status]);
                sink.put(&m.sequence.to_be_bytes());
                sink.put(&[m.flags, 0]);
                &m.options
            }
        };
        for option in options {
            let (x, y) = alignment(option);
            sink.pad_to(x, y);
            write_option(option, sink);
        }
        sink.pad_to(8, 0);
    }
}

// ---------------------------------------------------------------------------------------
// Emitting

/// Fills Header Len and the checksum of the `len`-octet message written into `out`.
fn finish(out: &mut [u8], len: usize, checksum: ChecksumContext) {
    let Some(mh) = out.get_mut(..len) else {
        return;
    };
    if mh.len() >= MH_FIXED_LEN {
        mh[1] = u8::try_from(len / 8 - 1).unwrap_or(u8::MAX);
        mh[4] = 0;
        mh[5] = 0;
        if let Some(sum) = mobility_header_checksum(checksum, mh) {
            mh[4..6].copy_from_slice(&sum.to_be_bytes());
        }
    }
}

/// A bounded writer: counts every octet, stores those that fit, never panics.
struct Sink<'a> {
    out: &'a mut [u8],
    pos: usize,
}

impl<'a> Sink<'a> {
    fn new(out: &'a mut [u8]) -> Self {
        Sink { out, pos: 0 }
    }
    fn counting() -> Sink<'static> {
        Sink {
            out: &mut [],
            pos: 0,
        }
    }
    fn put(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        if let Some(dst) = self.out.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
        } else if let Some(dst) = self.out.get_mut(self.pos..) {
            let n = dst.len();
            dst.copy_from_slice(&bytes[..n]);
        }
        self.pos = end;
    }
    /// Inserts Pad1 or PadN so the next octet is at an offset `x*n + y` (RFC 6275 6.2).
    fn pad_to(&mut self, x: usize, y: usize) {
        let pad = (y + x - self.pos % x) % x;
        match pad {
            0 => {}
            1 => self.put(&[opt::PAD1]),
            n => {
                self.put(&[opt::PADN, (n - 2) as u8]);
                for _ in 0..n - 2 {
                    self.put(&[0]);
                }
            }
        }
    }
}

/// The `xn+y` alignment requirement of an option (RFC 6275 6.2 and the option's RFC).
fn alignment(option: &MobilityOption) -> (usize, usize) {
    use MobilityOption as O;
    match option {
        O::BindingRefreshAdvice(_) | O::NonceIndices { .. } => (2, 0),
        O::AlternateCareOfAddress(_) | O::LinkLocalAddress(_) => (8, 6),
        O::BindingAuthorizationData(_) | O::Timestamp(_) | O::MobileNodeLinkLayerIdentifier(_) => {
            (8, 2)
        }
        O::MobileNetworkPrefix(_) | O::HomeNetworkPrefix(_) => (8, 4),
        O::VendorSpecific(_) => (4, 2),
        O::RestartCounter(_) => (4, 2),
        O::Ipv4HomeAddress { .. }
        | O::Ipv4AddressAcknowledgement { .. }
        | O::NatDetection { .. }
        | O::Ipv4CareOfAddress(_)
        | O::GreKey(_)
        | O::Ipv4HomeAddressRequest(_)
        | O::Ipv4HomeAddressReply { .. }
        | O::Ipv4DefaultRouterAddress(_)
        | O::Ipv4DhcpSupportMode { .. } => (4, 0),
        O::MobileNodeIdentifier(_)
        | O::ServiceSelection(_)
        | O::HandoffIndicator(_)
        | O::AccessTechnologyType(_)
        | O::Unknown { .. } => (1, 0),
    }
}

fn option_type(option: &MobilityOption) -> u8 {
    use MobilityOption as O;
    match option {
        O::BindingRefreshAdvice(_) => opt::BINDING_REFRESH_ADVICE,
        O::AlternateCareOfAddress(_) => opt::ALTERNATE_COA,
        O::NonceIndices { .. } => opt::NONCE_INDICES,
        O::BindingAuthorizationData(_) => opt::BINDING_AUTHORIZATION_DATA,
        O::MobileNetworkPrefix(_) => opt::MOBILE_NETWORK_PREFIX,
        O::MobileNodeIdentifier(_) => opt::MN_ID,
        O::VendorSpecific(_) => opt::VENDOR_SPECIFIC,
        O::ServiceSelection(_) => opt::SERVICE_SELECTION,
        O::HomeNetworkPrefix(_) => opt::HOME_NETWORK_PREFIX,
        O::HandoffIndicator(_) => opt::HANDOFF_INDICATOR,
        O::AccessTechnologyType(_) => opt::ACCESS_TECHNOLOGY_TYPE,
        O::MobileNodeLinkLayerIdentifier(_) => opt::MN_LINK_LAYER_ID,
        O::LinkLocalAddress(_) => opt::LINK_LOCAL_ADDRESS,
        O::Timestamp(_) => opt::TIMESTAMP,
        O::RestartCounter(_) => opt::RESTART_COUNTER,
        O::Ipv4HomeAddress { .. } => opt::IPV4_HOME_ADDRESS,
        O::Ipv4AddressAcknowledgement { .. } => opt::IPV4_ADDRESS_ACK,
        O::NatDetection { .. } => opt::NAT_DETECTION,
        O::Ipv4CareOfAddress(_) => opt::IPV4_COA,
        O::GreKey(_) => opt::GRE_KEY,
        O::Ipv4HomeAddressRequest(_) => opt::IPV4_HOA_REQUEST,
        O::Ipv4HomeAddressReply { .. } => opt::IPV4_HOA_REPLY,
        O::Ipv4DefaultRouterAddress(_) => opt::IPV4_DEFAULT_ROUTER,
        O::Ipv4DhcpSupportMode { .. } => opt::IPV4_DHCP_SUPPORT_MODE,
        O::Unknown { option_type, .. } => *option_type,
    }
}

/// Writes type, length and data in one pass (the length octet is patched once the data
/// is written); data beyond 255 octets is cut.
fn write_option(option: &MobilityOption, sink: &mut Sink<'_>) {
    sink.put(&[option_type(option), 0]);
    let start = sink.pos;
    write_option_data(option, sink);
    let len = (sink.pos - start).min(255);
    sink.pos = start + len;
    if let Some(length) = sink.out.get_mut(start - 1) {
        *length = len as u8;
    }
}

fn write_prefix(sink: &mut Sink<'_>, net: &Ipv6Net) {
    sink.put(&[0, net.prefix_len()]);
    sink.put(&net.addr().octets());
}

fn write_option_data(option: &MobilityOption, sink: &mut Sink<'_>) {
    use MobilityOption as O;
    match option {
        O::BindingRefreshAdvice(interval) => sink.put(&interval.to_be_bytes()),
        O::AlternateCareOfAddress(a) | O::LinkLocalAddress(a) => sink.put(&a.octets()),
        O::NonceIndices { home, care_of } => {
            sink.put(&home.to_be_bytes());
            sink.put(&care_of.to_be_bytes());
        }
        O::BindingAuthorizationData(data) => sink.put(data),
        O::MobileNetworkPrefix(net) | O::HomeNetworkPrefix(net) => write_prefix(sink, net),
        O::MobileNodeIdentifier(MobileNodeIdentifier::Nai(nai)) => {
            sink.put(&[1]);
            sink.put(nai.as_bytes());
        }
        O::MobileNodeIdentifier(MobileNodeIdentifier::Other { sub_type, id }) => {
            sink.put(&[*sub_type]);
            sink.put(id);
        }
        O::VendorSpecific(vendor) => write_vendor(vendor, sink),
        O::ServiceSelection(apn) => sink.put(apn.as_bytes()),
        O::HandoffIndicator(hi) => sink.put(&[0, u8::from(*hi)]),
        O::AccessTechnologyType(att) => sink.put(&[0, u8::from(*att)]),
        O::MobileNodeLinkLayerIdentifier(id) => {
            sink.put(&[0, 0]);
            sink.put(id);
        }
        O::Timestamp(t) => sink.put(&t.0.to_be_bytes()),
        O::RestartCounter(c) => sink.put(&c.to_be_bytes()),
        O::Ipv4HomeAddress {
            prefix_len,
            address,
            request_prefix,
        } => {
            sink.put(&[(prefix_len << 2) | (u8::from(*request_prefix) << 1), 0]);
            sink.put(&address.octets());
        }
        O::Ipv4AddressAcknowledgement {
            status,
            prefix_len,
            address,
        } => {
            sink.put(&[*status, prefix_len << 2]);
            sink.put(&address.octets());
        }
        O::NatDetection {
            udp_encapsulation_required,
            refresh_time,
        } => {
            sink.put(&[u8::from(*udp_encapsulation_required) << 7, 0]);
            sink.put(&refresh_time.to_be_bytes());
        }
        O::Ipv4CareOfAddress(a) | O::Ipv4DefaultRouterAddress(a) => {
            sink.put(&[0, 0]);
            sink.put(&a.octets());
        }
        O::GreKey(key) => {
            sink.put(&[0, 0]);
            sink.put(&key.0.to_be_bytes());
        }
        O::Ipv4HomeAddressRequest(net) => {
            sink.put(&[net.prefix_len() << 2, 0]);
            sink.put(&net.addr().octets());
        }
        O::Ipv4HomeAddressReply { status, address } => {
            sink.put(&[u8::from(*status), address.prefix_len() << 2]);
            sink.put(&address.addr().octets());
        }
        O::Ipv4DhcpSupportMode { server } => sink.put(&[0, u8::from(*server)]),
        O::Unknown { data, .. } => sink.put(data),
    }
}

fn write_vendor(vendor: &VendorSpecific, sink: &mut Sink<'_>) {
    match vendor {
        VendorSpecific::Other {
            vendor_id,
            sub_type,
            data,
        } => {
            sink.put(&vendor_id.to_be_bytes());
            sink.put(&[*sub_type]);
            sink.put(data);
        }
        VendorSpecific::ThreeGpp(option) => {
            sink.put(&VENDOR_ID_3GPP.to_be_bytes());
            match option {
                ThreeGppOption::Other { sub_type, data } => {
                    sink.put(&[*sub_type]);
                    sink.put(data);
                }
                ThreeGppOption::ProtocolConfigurationOptions(pco) => {
                    sink.put(&[sub3gpp::PCO, 0]);
                    sink.put(pco);
                }
                ThreeGppOption::ErrorCode(code) => sink.put(&[sub3gpp::ERROR_CODE, 0, *code]),
                ThreeGppOption::PdnGwIpAddress(IpAddr::V4(a)) => {
                    sink.put(&[sub3gpp::PDN_GW_IP_ADDRESS, 0]);
                    sink.put(&a.octets());
                }
                ThreeGppOption::PdnGwIpAddress(IpAddr::V6(a)) => {
                    sink.put(&[sub3gpp::PDN_GW_IP_ADDRESS, 0]);
                    sink.put(&a.octets());
                }
                ThreeGppOption::PdnTypeIndication { pdn_type, cause } => {
                    sink.put(&[sub3gpp::PDN_TYPE_INDICATION, 0, u8::from(*pdn_type), *cause])
                }
                ThreeGppOption::ChargingId(id) => {
                    sink.put(&[sub3gpp::CHARGING_ID, 0]);
                    sink.put(&id.to_be_bytes());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Proxy forms

/// Why a BU with the P flag is not an acceptable PBU: the PBA status to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid proxy binding update: {reason}")]
pub struct PbuError {
    pub status: BindingAckStatus,
    pub reason: &'static str,
}

impl TryFrom<&BindingUpdateRepr> for ProxyBindingUpdate {
    type Error = PbuError;

    /// Validates the mandatory options of RFC 5213 section 5.3.1 (and RFC 5844 for an
    /// IPv4-only request); the first missing one names the status.
    fn try_from(bu: &BindingUpdateRepr) -> Result<Self, PbuError> {
        if !bu.flags.contains(BuFlags::PROXY) {
            return Err(PbuError {
                status: BindingAckStatus::HomeRegistrationNotSupported,
                reason: "P flag clear: a Mobile IPv6 home registration, not a proxy one",
            });
        }
        let mut pbu = ProxyBindingUpdate {
            sequence: bu.sequence,
            flags: bu.flags,
            lifetime: bu.lifetime,
            mn_id: String::new(),
            apn: None,
            home_network_prefixes: Vec::new(),
            handoff: HandoffIndicator::HandoffStateUnknown,
            access_technology: AccessTechnologyType::Virtual,
            timestamp: None,
            link_local_address: None,
            link_layer_id: None,
            gre_key: None,
            ipv4_home_address_request: None,
            ipv4_care_of_address: None,
            restart_counter: None,
            vendor: Vec::new(),
            other: Vec::new(),
        };
        let (mut mn_id, mut handoff, mut att) = (None, None, None);
        for option in &bu.options {
            use MobilityOption as O;
            match option {
                O::MobileNodeIdentifier(MobileNodeIdentifier::Nai(nai)) if mn_id.is_none() => {
                    mn_id = Some(nai.clone())
                }
                O::ServiceSelection(apn) if pbu.apn.is_none() => pbu.apn = Some(apn.clone()),
                O::HomeNetworkPrefix(p) => pbu.home_network_prefixes.push(*p),
                O::HandoffIndicator(hi) if handoff.is_none() => handoff = Some(*hi),
                O::AccessTechnologyType(t) if att.is_none() => att = Some(*t),
                O::Timestamp(t) if pbu.timestamp.is_none() => pbu.timestamp = Some(*t),
                O::LinkLocalAddress(a) if pbu.link_local_address.is_none() => {
                    pbu.link_local_address = Some(*a)
                }
                O::MobileNodeLinkLayerIdentifier(id) if pbu.link_layer_id.is_none() => {
                    pbu.link_layer_id = Some(id.clone())
                }
                O::GreKey(k) if pbu.gre_key.is_none() => pbu.gre_key = Some(*k),
                O::Ipv4HomeAddressRequest(r) if pbu.ipv4_home_address_request.is_none() => {
                    pbu.ipv4_home_address_request = Some(*r)
                }
                O::Ipv4CareOfAddress(a) if pbu.ipv4_care_of_address.is_none() => {
                    pbu.ipv4_care_of_address = Some(*a)
                }
                O::RestartCounter(c) if pbu.restart_counter.is_none() => {
                    pbu.restart_counter = Some(*c)
                }
                O::VendorSpecific(v) => pbu.vendor.push(v.clone()),
                other => pbu.other.push(other.clone()),
            }
        }
        let missing = |status, reason| PbuError { status, reason };
        pbu.mn_id = mn_id.ok_or(missing(
            BindingAckStatus::MissingMnIdentifierOption,
            "no Mobile Node Identifier option with a NAI",
        ))?;
        pbu.handoff = handoff.ok_or(missing(
            BindingAckStatus::MissingHandoffIndicatorOption,
            "no Handoff Indicator option",
        ))?;
        pbu.access_technology = att.ok_or(missing(
            BindingAckStatus::MissingAccessTechTypeOption,
            "no Access Technology Type option",
        ))?;
        if pbu.home_network_prefixes.is_empty() && pbu.ipv4_home_address_request.is_none() {
            return Err(missing(
                BindingAckStatus::MissingHomeNetworkPrefixOption,
                "neither a Home Network Prefix nor an IPv4 Home Address Request option",
            ));
        }
        Ok(pbu)
    }
}

impl ProxyBindingUpdate {
    /// The Binding Update carrying this PBU, options in a fixed order.
    pub fn to_binding_update(&self) -> BindingUpdateRepr {
        use MobilityOption as O;
        let mut options = vec![O::MobileNodeIdentifier(MobileNodeIdentifier::Nai(
            self.mn_id.clone(),
        ))];
        if let Some(apn) = &self.apn {
            options.push(O::ServiceSelection(apn.clone()));
        }
        options.extend(
            self.home_network_prefixes
                .iter()
                .map(|p| O::HomeNetworkPrefix(*p)),
        );
        options.push(O::HandoffIndicator(self.handoff));
        options.push(O::AccessTechnologyType(self.access_technology));
        if let Some(id) = &self.link_layer_id {
            options.push(O::MobileNodeLinkLayerIdentifier(id.clone()));
        }
        if let Some(a) = self.link_local_address {
            options.push(O::LinkLocalAddress(a));
        }
        if let Some(t) = self.timestamp {
            options.push(O::Timestamp(t));
        }
        if let Some(k) = self.gre_key {
            options.push(O::GreKey(k));
        }
        if let Some(r) = self.ipv4_home_address_request {
            options.push(O::Ipv4HomeAddressRequest(r));
        }
        if let Some(a) = self.ipv4_care_of_address {
            options.push(O::Ipv4CareOfAddress(a));
        }
        if let Some(c) = self.restart_counter {
            options.push(O::RestartCounter(c));
        }
        options.extend(self.vendor.iter().cloned().map(O::VendorSpecific));
        options.extend(self.other.iter().cloned());
        BindingUpdateRepr {
            sequence: self.sequence,
            flags: BuFlags(self.flags.0 | BuFlags::PROXY),
            lifetime: self.lifetime,
            options,
        }
    }

    /// The PBU as a whole Mobility Header message.
    pub fn to_message(&self) -> MobilityHeaderRepr {
        MobilityHeaderRepr {
            payload_proto: IPPROTO_NONE,
            message: MobilityMessage::BindingUpdate(self.to_binding_update()),
        }
    }
}

impl TryFrom<&BindingAckRepr> for ProxyBindingAck {
    type Error = MhError;

    fn try_from(ba: &BindingAckRepr) -> Result<Self, MhError> {
        if !ba.flags.contains(BaFlags::PROXY) {
            return Err(MhError::Malformed(
                "P flag clear: not a Proxy Binding Acknowledgement",
            ));
        }
        let mut pba = ProxyBindingAck {
            status: ba.status,
            sequence: ba.sequence,
            lifetime: ba.lifetime,
            mn_id: None,
            apn: None,
            home_network_prefixes: Vec::new(),
            handoff: None,
            access_technology: None,
            timestamp: None,
            link_local_address: None,
            link_layer_id: None,
            gre_key: None,
            ipv4_home_address_reply: None,
            ipv4_default_router: None,
            restart_counter: None,
            vendor: Vec::new(),
            other: Vec::new(),
        };
        for option in &ba.options {
            use MobilityOption as O;
            match option {
                O::MobileNodeIdentifier(MobileNodeIdentifier::Nai(nai)) if pba.mn_id.is_none() => {
                    pba.mn_id = Some(nai.clone())
                }
                O::ServiceSelection(apn) if pba.apn.is_none() => pba.apn = Some(apn.clone()),
                O::HomeNetworkPrefix(p) => pba.home_network_prefixes.push(*p),
                O::HandoffIndicator(hi) if pba.handoff.is_none() => pba.handoff = Some(*hi),
                O::AccessTechnologyType(t) if pba.access_technology.is_none() => {
                    pba.access_technology = Some(*t)
                }
                O::Timestamp(t) if pba.timestamp.is_none() => pba.timestamp = Some(*t),
                O::LinkLocalAddress(a) if pba.link_local_address.is_none() => {
                    pba.link_local_address = Some(*a)
                }
                O::MobileNodeLinkLayerIdentifier(id) if pba.link_layer_id.is_none() => {
                    pba.link_layer_id = Some(id.clone())
                }
                O::GreKey(k) if pba.gre_key.is_none() => pba.gre_key = Some(*k),
                O::Ipv4HomeAddressReply { status, address }
                    if pba.ipv4_home_address_reply.is_none() =>
                {
                    pba.ipv4_home_address_reply = Some((*status, *address))
                }
                O::Ipv4DefaultRouterAddress(a) if pba.ipv4_default_router.is_none() => {
                    pba.ipv4_default_router = Some(*a)
                }
                O::RestartCounter(c) if pba.restart_counter.is_none() => {
                    pba.restart_counter = Some(*c)
                }
                O::VendorSpecific(v) => pba.vendor.push(v.clone()),
                other => pba.other.push(other.clone()),
            }
        }
        Ok(pba)
    }
}

impl ProxyBindingAck {
    /// The Binding Acknowledgement carrying this PBA (P flag set), options in a fixed order.
    pub fn to_binding_ack(&self) -> BindingAckRepr {
        use MobilityOption as O;
        let mut options = Vec::new();
        if let Some(nai) = &self.mn_id {
            options.push(O::MobileNodeIdentifier(MobileNodeIdentifier::Nai(
                nai.clone(),
            )));
        }
        if let Some(apn) = &self.apn {
            options.push(O::ServiceSelection(apn.clone()));
        }
        options.extend(
            self.home_network_prefixes
                .iter()
                .map(|p| O::HomeNetworkPrefix(*p)),
        );
        if let Some(hi) = self.handoff {
            options.push(O::HandoffIndicator(hi));
        }
        if let Some(t) = self.access_technology {
            options.push(O::AccessTechnologyType(t));
        }
        if let Some(id) = &self.link_layer_id {
            options.push(O::MobileNodeLinkLayerIdentifier(id.clone()));
        }
        if let Some(a) = self.link_local_address {
            options.push(O::LinkLocalAddress(a));
        }
        if let Some(t) = self.timestamp {
            options.push(O::Timestamp(t));
        }
        if let Some(k) = self.gre_key {
            options.push(O::GreKey(k));
        }
        if let Some((status, address)) = self.ipv4_home_address_reply {
            options.push(O::Ipv4HomeAddressReply { status, address });
        }
        if let Some(a) = self.ipv4_default_router {
            options.push(O::Ipv4DefaultRouterAddress(a));
        }
        if let Some(c) = self.restart_counter {
            options.push(O::RestartCounter(c));
        }
        options.extend(self.vendor.iter().cloned().map(O::VendorSpecific));
        options.extend(self.other.iter().cloned());
        BindingAckRepr {
            status: self.status,
            flags: BaFlags(BaFlags::PROXY),
            sequence: self.sequence,
            lifetime: self.lifetime,
            options,
        }
    }

    /// The PBA as a whole Mobility Header message.
    pub fn to_message(&self) -> MobilityHeaderRepr {
        MobilityHeaderRepr {
            payload_proto: IPPROTO_NONE,
            message: MobilityMessage::BindingAck(self.to_binding_ack()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Code points

/// Declares `From<u8>` and `From<Enum> for u8` for a code with an `Other(u8)` arm, so an
/// unknown value is a value, never a panic, and every value converts back unchanged.
macro_rules! code_point {
    ($ty:ident { $($variant:ident = $value:expr),* $(,)? }) => {
        impl From<u8> for $ty {
            fn from(v: u8) -> Self {
                match v {
                    $($value => $ty::$variant,)*
                    other => $ty::Other(other),
                }
            }
        }
        impl From<$ty> for u8 {
            fn from(v: $ty) -> u8 {
                match v {
                    $($ty::$variant => $value,)*
                    $ty::Other(other) => other,
                }
            }
        }
    };
}

code_point!(BindingAckStatus {
    Accepted = 0,
    AcceptedPrefixDiscoveryNecessary = 1,
    ReasonUnspecified = 128,
    AdministrativelyProhibited = 129,
    InsufficientResources = 130,
    HomeRegistrationNotSupported = 131,
    NotHomeSubnet = 132,
    NotHomeAgentForThisMobileNode = 133,
    DuplicateAddressDetectionFailed = 134,
    SequenceNumberOutOfWindow = 135,
    ServiceAuthorizationFailed = 151,
    ProxyRegNotEnabled = 152,
    NotLmaForThisMobileNode = 153,
    MagNotAuthorizedForProxyReg = 154,
    NotAuthorizedForHomeNetworkPrefix = 155,
    TimestampMismatch = 156,
    TimestampLowerThanPrevAccepted = 157,
    MissingHomeNetworkPrefixOption = 158,
    BcePbuPrefixSetDoNotMatch = 159,
    MissingMnIdentifierOption = 160,
    MissingHandoffIndicatorOption = 161,
    MissingAccessTechTypeOption = 162,
    GreKeyOptionRequired = 163,
});

impl BindingAckStatus {
    /// Values under 128 accept the binding (RFC 6275 section 6.1.8).
    pub fn is_accepted(self) -> bool {
        u8::from(self) < 128
    }
}

code_point!(Ipv4HomeAddressReplyStatus {
    Success = 0,
    ReasonUnspecified = 128,
    AdministrativelyProhibited = 129,
    IncorrectIpv4HomeAddress = 130,
    InvalidIpv4Address = 131,
    DynamicIpv4HomeAddressAssignmentNotAvailable = 132,
});

code_point!(HandoffIndicator {
    AttachmentOverNewInterface = 1,
    HandoffBetweenDifferentInterfaces = 2,
    HandoffBetweenSameInterface = 3,
    HandoffStateUnknown = 4,
    HandoffStateNotChanged = 5,
});

code_point!(AccessTechnologyType {
    Virtual = 1,
    Ppp = 2,
    Ieee8023 = 3,
    Ieee80211 = 4,
    Ieee80216e = 5,
    ThreeGppGeran = 6,
    ThreeGppUtran = 7,
    ThreeGppEutran = 8,
});

code_point!(PdnType {
    Ipv4 = 1,
    Ipv6 = 2,
    Ipv4v6 = 3,
});

code_point!(BindingErrorStatus {
    UnknownBindingForHomeAddress = 1,
    UnrecognizedMhType = 2,
});

code_point!(BindingRevocationType {
    Indication = 1,
    Acknowledgement = 2,
});

#[cfg(test)]
mod tests;
