//! The mobility options (RFC 6275 section 6.2 and the PMIPv6 extensions), all in one
//! table: each row gives an option's variant, its type number and IANA name, its length
//! rule, its `xn+y` alignment (RFC 6275 section 6.2.1; RFC 5213 section 8 and each
//! option's RFC), how its data is parsed and how it is emitted. Adding an option is adding
//! a row; [`MobilityOption`], [`MobilityOptionType`], the parser, the emitter and the
//! alignment all come from the table.
//!
//! Pad1 and PadN are consumed by the parser and inserted by the emitter; they never
//! appear as a [`MobilityOption`]. An option type the table does not list is kept as
//! [`MobilityOption::Unknown`] and re-emitted unchanged.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use super::error::MhError;
use super::types::*;
use super::wire::{be16, be32, be64, field, ipv4, ipv6, Sink};
use crate::registry::registry;

/// The 3GPP vendor ID (SMI network management private enterprise code 10415).
pub const VENDOR_ID_3GPP: u32 = 10415;

/// The rule an option's Length field must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionLength {
    /// Exactly this many octets of data.
    Exact(usize),
    /// At least this many.
    AtLeast(usize),
}

impl OptionLength {
    /// Whether `len` octets of data follow the rule.
    pub const fn allows(self, len: usize) -> bool {
        match self {
            OptionLength::Exact(n) => len == n,
            OptionLength::AtLeast(n) => len >= n,
        }
    }
}

/// The `xn+y` alignment of an option's Type octet (RFC 6275 section 6.2), offsets counted
/// from the start of the Mobility Header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alignment {
    pub x: usize,
    pub y: usize,
}

impl Alignment {
    /// No alignment requirement.
    pub const NONE: Alignment = Alignment { x: 1, y: 0 };
}

/// What the table says about one option type: its length rule and its alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionLayout {
    pub length: OptionLength,
    pub alignment: Alignment,
}

/// Declares the option table; see the module doc. Each row:
///
/// ```text
/// /// doc
/// Variant(fields) = type => "IANA name", align(x, y), length(rule),
///     parse: expression over `data` (may use `?`),
///     emit: pattern => expression writing to `sink`;
/// ```
macro_rules! option_table {
    (
        parse($data:ident), emit($sink:ident);
        $(
            $(#[$doc:meta])*
            $variant:ident $fields:tt = $value:literal => $name:literal,
                align($x:literal, $y:literal), length($length:expr),
                parse: $parse:expr,
                emit: $pattern:pat => $emit:expr;
        )*
    ) => {
        registry! {
            /// Mobility option types (RFC 6275 section 6.2 and the IANA "Mobility Options"
            /// registry): Pad1, PadN and every option of the table.
            pub enum MobilityOptionType: u8 {
                Pad1 = 0 => "Pad1",
                PadN = 1 => "PadN",
                $($variant = $value => $name,)*
            }
        }

        impl MobilityOptionType {
            /// The length rule and alignment of a type the codec reads; `None` for one it
            /// keeps as [`MobilityOption::Unknown`].
            #[inline]
            pub const fn layout(self) -> Option<OptionLayout> {
                match self {
                    MobilityOptionType::Pad1 => Some(OptionLayout {
                        length: OptionLength::Exact(0),
                        alignment: Alignment::NONE,
                    }),
                    MobilityOptionType::PadN => Some(OptionLayout {
                        length: OptionLength::AtLeast(0),
                        alignment: Alignment::NONE,
                    }),
                    $(MobilityOptionType::$variant => Some(OptionLayout {
                        length: $length,
                        alignment: Alignment { x: $x, y: $y },
                    }),)*
                    MobilityOptionType::Unknown(_) => None,
                }
            }
        }

        /// One mobility option, parsed. Pad1 and PadN never appear here.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum MobilityOption {
            $(
                $(#[$doc])*
                $variant $fields,
            )*
            /// An option type we do not interpret, kept as it was and re-emitted unchanged.
            Unknown { option_type: u8, data: Vec<u8> },
        }

        impl MobilityOption {
            /// The option's type.
            #[allow(unused_variables)]
            #[inline]
            pub fn option_type(&self) -> MobilityOptionType {
                match self {
                    $($pattern => MobilityOptionType::$variant,)*
                    MobilityOption::Unknown { option_type, .. } => {
                        MobilityOptionType::from(*option_type)
                    }
                }
            }

            /// Decodes the data of one option of type `option_type`, its length checked
            /// against the table first. A type the table does not list is `Unknown`.
            pub fn parse(option_type: u8, $data: &[u8]) -> Result<Self, MhError> {
                match MobilityOptionType::from(option_type) {
                    $(MobilityOptionType::$variant => {
                        if !$length.allows($data.len()) {
                            return Err(MhError::Malformed(concat!($name, ": wrong length")));
                        }
                        Ok($parse)
                    })*
                    _ => Ok(MobilityOption::Unknown {
                        option_type,
                        data: $data.to_vec(),
                    }),
                }
            }

            /// Writes the option's data (not its Type and Length).
            pub(super) fn write_data(&self, $sink: &mut Sink<'_>) {
                match self {
                    $($pattern => $emit,)*
                    MobilityOption::Unknown { data, .. } => $sink.put(data),
                }
            }
        }
    };
}

option_table! {
    parse(data), emit(sink);

    /// Binding Refresh Advice (RFC 6275 section 6.2.4): the refresh interval, in units of
    /// 4 seconds.
    BindingRefreshAdvice(u16) = 2 => "Binding Refresh Advice",
        align(2, 0), length(OptionLength::Exact(2)),
        parse: Self::BindingRefreshAdvice(be16(data)),
        emit: Self::BindingRefreshAdvice(interval) => sink.put(&interval.to_be_bytes());

    /// Alternate Care-of Address (RFC 6275 section 6.2.5).
    AlternateCareOfAddress(Ipv6Addr) = 3 => "Alternate Care-of Address",
        align(8, 6), length(OptionLength::Exact(16)),
        parse: Self::AlternateCareOfAddress(ipv6(data)),
        emit: Self::AlternateCareOfAddress(address) => sink.put(&address.octets());

    /// Nonce Indices (RFC 6275 section 6.2.6).
    NonceIndices { home: u16, care_of: u16 } = 4 => "Nonce Indices",
        align(2, 0), length(OptionLength::Exact(4)),
        parse: Self::NonceIndices { home: be16(data), care_of: be16(&data[2..]) },
        emit: Self::NonceIndices { home, care_of } => {
            sink.put(&home.to_be_bytes());
            sink.put(&care_of.to_be_bytes());
        };

    /// Binding Authorization Data (RFC 6275 section 6.2.7): the authenticator. No
    /// alignment of its own, but the authenticator is 8n+2 aligned in practice.
    BindingAuthorizationData(Vec<u8>) = 5 => "Authorization Data",
        align(8, 2), length(OptionLength::AtLeast(0)),
        parse: Self::BindingAuthorizationData(data.to_vec()),
        emit: Self::BindingAuthorizationData(authenticator) => sink.put(authenticator);

    /// Mobile Network Prefix (RFC 3963 section 4.3).
    MobileNetworkPrefix(Ipv6Net) = 6 => "Mobile Network Prefix Option",
        align(8, 4), length(OptionLength::Exact(18)),
        parse: Self::MobileNetworkPrefix(ipv6_prefix(data, "Mobile Network Prefix option")?),
        emit: Self::MobileNetworkPrefix(prefix) => write_prefix(sink, prefix);

    /// Mobile Node Identifier (RFC 4283 section 3).
    MobileNodeIdentifier(MobileNodeIdentifier) = 8 => "Mobile Node Identifier",
        align(1, 0), length(OptionLength::AtLeast(1)),
        parse: Self::MobileNodeIdentifier(match MnIdSubtype::from(data[0]) {
            MnIdSubtype::Nai => MobileNodeIdentifier::Nai(utf8(&data[1..], "MN-ID NAI is not UTF-8")?),
            _ => MobileNodeIdentifier::Other { sub_type: data[0], id: data[1..].to_vec() },
        }),
        emit: Self::MobileNodeIdentifier(id) => match id {
            MobileNodeIdentifier::Nai(nai) => {
                sink.put(&[MnIdSubtype::Nai.value()]);
                sink.put(nai.as_bytes());
            }
            MobileNodeIdentifier::Other { sub_type, id } => {
                sink.put(&[*sub_type]);
                sink.put(id);
            }
        };

    /// Vendor-Specific Mobility Option (RFC 5094 section 3).
    VendorSpecific(VendorSpecific) = 19 => "Vendor Specific Mobility Option",
        align(4, 2), length(OptionLength::AtLeast(5)),
        parse: Self::VendorSpecific(parse_vendor(data)),
        emit: Self::VendorSpecific(vendor) => write_vendor(vendor, sink);

    /// Service Selection (RFC 5149 section 3): the APN.
    ServiceSelection(String) = 20 => "Service Selection Mobility Option",
        align(1, 0), length(OptionLength::AtLeast(0)),
        parse: Self::ServiceSelection(utf8(data, "Service Selection identifier is not UTF-8")?),
        emit: Self::ServiceSelection(apn) => sink.put(apn.as_bytes());

    /// Home Network Prefix (RFC 5213 section 8.3).
    HomeNetworkPrefix(Ipv6Net) = 22 => "Home Network Prefix Option",
        align(8, 4), length(OptionLength::Exact(18)),
        parse: Self::HomeNetworkPrefix(ipv6_prefix(data, "Home Network Prefix option")?),
        emit: Self::HomeNetworkPrefix(prefix) => write_prefix(sink, prefix);

    /// Handoff Indicator (RFC 5213 section 8.4).
    HandoffIndicator(HandoffIndicator) = 23 => "Handoff Indicator Option",
        align(1, 0), length(OptionLength::Exact(2)),
        parse: Self::HandoffIndicator(HandoffIndicator::from(data[1])),
        emit: Self::HandoffIndicator(hi) => sink.put(&[0, hi.value()]);

    /// Access Technology Type (RFC 5213 section 8.5).
    AccessTechnologyType(AccessTechnologyType) = 24 => "Access Technology Type Option",
        align(1, 0), length(OptionLength::Exact(2)),
        parse: Self::AccessTechnologyType(AccessTechnologyType::from(data[1])),
        emit: Self::AccessTechnologyType(att) => sink.put(&[0, att.value()]);

    /// Mobile Node Link-layer Identifier (RFC 5213 section 8.6): the identifier, after
    /// two reserved octets.
    MobileNodeLinkLayerIdentifier(Vec<u8>) = 25 => "Mobile Node Link-layer Identifier Option",
        align(8, 2), length(OptionLength::AtLeast(2)),
        parse: Self::MobileNodeLinkLayerIdentifier(data[2..].to_vec()),
        emit: Self::MobileNodeLinkLayerIdentifier(id) => {
            sink.put(&[0, 0]);
            sink.put(id);
        };

    /// Link-local Address (RFC 5213 section 8.7).
    LinkLocalAddress(Ipv6Addr) = 26 => "Link-local Address Option",
        align(8, 6), length(OptionLength::Exact(16)),
        parse: Self::LinkLocalAddress(ipv6(data)),
        emit: Self::LinkLocalAddress(address) => sink.put(&address.octets());

    /// Timestamp (RFC 5213 section 8.8).
    Timestamp(Timestamp) = 27 => "Timestamp",
        align(8, 2), length(OptionLength::Exact(8)),
        parse: Self::Timestamp(Timestamp(be64(data))),
        emit: Self::Timestamp(t) => sink.put(&t.0.to_be_bytes());

    /// Restart Counter (RFC 5847 section 5.2).
    RestartCounter(u32) = 28 => "Restart Counter",
        align(4, 2), length(OptionLength::Exact(4)),
        parse: Self::RestartCounter(be32(data)),
        emit: Self::RestartCounter(counter) => sink.put(&counter.to_be_bytes());

    /// IPv4 Home Address (RFC 5555 section 3.1.1): prefix length (6 bits), P flag.
    Ipv4HomeAddress { prefix_len: u8, address: Ipv4Addr, request_prefix: bool }
        = 29 => "IPv4 Home Address",
        align(4, 0), length(OptionLength::Exact(6)),
        parse: Self::Ipv4HomeAddress {
            prefix_len: ipv4_prefix_len(data[0], "IPv4 Home Address prefix length")?,
            request_prefix: data[0] & 0x02 != 0,
            address: ipv4(&data[2..]),
        },
        emit: Self::Ipv4HomeAddress { prefix_len, address, request_prefix } => {
            sink.put(&[(prefix_len << 2) | (u8::from(*request_prefix) << 1), 0]);
            sink.put(&address.octets());
        };

    /// IPv4 Address Acknowledgement (RFC 5555 section 3.2.1).
    Ipv4AddressAcknowledgement {
        status: Ipv4AddressAcknowledgementStatus,
        prefix_len: u8,
        address: Ipv4Addr,
    } = 30 => "IPv4 Address Acknowledgement",
        align(4, 0), length(OptionLength::Exact(6)),
        parse: Self::Ipv4AddressAcknowledgement {
            status: Ipv4AddressAcknowledgementStatus::from(data[0]),
            prefix_len: ipv4_prefix_len(data[1], "IPv4 Address Acknowledgement prefix length")?,
            address: ipv4(&data[2..]),
        },
        emit: Self::Ipv4AddressAcknowledgement { status, prefix_len, address } => {
            sink.put(&[status.value(), prefix_len << 2]);
            sink.put(&address.octets());
        };

    /// NAT Detection (RFC 5555 section 3.2.2): the F flag and the refresh time.
    NatDetection { udp_encapsulation_required: bool, refresh_time: u32 }
        = 31 => "NAT Detection",
        align(4, 0), length(OptionLength::Exact(6)),
        parse: Self::NatDetection {
            udp_encapsulation_required: data[0] & 0x80 != 0,
            refresh_time: be32(&data[2..]),
        },
        emit: Self::NatDetection { udp_encapsulation_required, refresh_time } => {
            sink.put(&[u8::from(*udp_encapsulation_required) << 7, 0]);
            sink.put(&refresh_time.to_be_bytes());
        };

    /// IPv4 Care-of Address (RFC 5555 section 3.1.2).
    Ipv4CareOfAddress(Ipv4Addr) = 32 => "IPv4 Care-of Address",
        align(4, 0), length(OptionLength::Exact(6)),
        parse: Self::Ipv4CareOfAddress(ipv4(&data[2..])),
        emit: Self::Ipv4CareOfAddress(address) => {
            sink.put(&[0, 0]);
            sink.put(&address.octets());
        };

    /// GRE Key (RFC 5845 section 3.1).
    GreKey(GreKey) = 33 => "GRE Key Option",
        align(4, 0), length(OptionLength::Exact(6)),
        parse: Self::GreKey(GreKey(be32(&data[2..]))),
        emit: Self::GreKey(key) => {
            sink.put(&[0, 0]);
            sink.put(&key.0.to_be_bytes());
        };

    /// IPv4 Home Address Request (RFC 5844 section 3.3.1): 0.0.0.0/0 asks for any address.
    Ipv4HomeAddressRequest(Ipv4Net) = 36 => "IPv4 Home Address Request",
        align(4, 0), length(OptionLength::Exact(6)),
        parse: Self::Ipv4HomeAddressRequest(
            Ipv4Net::new(ipv4(&data[2..]), data[0] >> 2)
                .map_err(|_| MhError::Malformed("IPv4 Home Address Request prefix length"))?,
        ),
        emit: Self::Ipv4HomeAddressRequest(request) => {
            sink.put(&[request.prefix_len() << 2, 0]);
            sink.put(&request.addr().octets());
        };

    /// IPv4 Home Address Reply (RFC 5844 section 3.3.2).
    Ipv4HomeAddressReply { status: Ipv4HomeAddressReplyStatus, address: Ipv4Net }
        = 37 => "IPv4 Home Address Reply",
        align(4, 0), length(OptionLength::Exact(6)),
        parse: Self::Ipv4HomeAddressReply {
            status: Ipv4HomeAddressReplyStatus::from(data[0]),
            address: Ipv4Net::new(ipv4(&data[2..]), data[1] >> 2)
                .map_err(|_| MhError::Malformed("IPv4 Home Address Reply prefix length"))?,
        },
        emit: Self::Ipv4HomeAddressReply { status, address } => {
            sink.put(&[status.value(), address.prefix_len() << 2]);
            sink.put(&address.addr().octets());
        };

    /// IPv4 Default-Router Address (RFC 5844 section 3.3.3).
    Ipv4DefaultRouterAddress(Ipv4Addr) = 38 => "IPv4 Default-Router Address",
        align(4, 0), length(OptionLength::Exact(6)),
        parse: Self::Ipv4DefaultRouterAddress(ipv4(&data[2..])),
        emit: Self::Ipv4DefaultRouterAddress(address) => {
            sink.put(&[0, 0]);
            sink.put(&address.octets());
        };

    /// IPv4 DHCP Support Mode (RFC 5844 section 3.3.4): S flag, the LMA is the DHCP
    /// server. No alignment requirement.
    Ipv4DhcpSupportMode { server: bool } = 39 => "IPv4 DHCP Support Mode",
        align(1, 0), length(OptionLength::Exact(2)),
        parse: Self::Ipv4DhcpSupportMode { server: data[1] & 0x01 != 0 },
        emit: Self::Ipv4DhcpSupportMode { server } => sink.put(&[0, u8::from(*server)]);
}

/// Whether `option_type` is one the codec interprets (so `Unknown` must not carry it).
pub fn is_known_option_type(option_type: u8) -> bool {
    MobilityOptionType::from(option_type).layout().is_some()
}

impl MobilityOption {
    /// Where the option's Type octet must sit (RFC 6275 section 6.2).
    #[inline]
    pub fn alignment(&self) -> Alignment {
        self.option_type()
            .layout()
            .map_or(Alignment::NONE, |layout| layout.alignment)
    }

    /// Writes Type, Length and data in one pass (the Length octet is patched once the
    /// data is written); data beyond 255 octets is cut.
    #[inline]
    pub(super) fn write(&self, sink: &mut Sink<'_>) {
        sink.put(&[self.option_type().value(), 0]);
        let start = sink.pos;
        self.write_data(sink);
        let len = (sink.pos - start).min(255);
        sink.pos = start + len;
        if let Some(length) = sink.out.get_mut(start - 1) {
            *length = len as u8;
        }
    }

    /// Octets of data `write` would write before any cut.
    pub(super) fn data_len(&self) -> usize {
        let mut sink = Sink::counting();
        self.write_data(&mut sink);
        sink.pos
    }
}

/// Inserts Pad1 or PadN so the next octet is at an offset `x*n + y` (RFC 6275 section
/// 6.2.1 and 6.2.2).
#[inline]
pub(super) fn pad_to(sink: &mut Sink<'_>, alignment: Alignment) {
    let Alignment { x, y } = alignment;
    let pad = (y + x - sink.pos % x) % x;
    match pad {
        0 => {}
        1 => sink.put(&[MobilityOptionType::Pad1.value()]),
        n => {
            sink.put(&[MobilityOptionType::PadN.value(), (n - 2) as u8]);
            for _ in 0..n - 2 {
                sink.put(&[0]);
            }
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
        let &option_type = self.bytes.get(field::option::TYPE)?;
        if option_type == MobilityOptionType::Pad1.value() {
            self.bytes = &self.bytes[field::option::LENGTH..];
            return Some(Ok(RawOption {
                option_type,
                data: &[],
            }));
        }
        let Some(&len) = self.bytes.get(field::option::LENGTH) else {
            self.bytes = &[];
            return Some(Err(MhError::Truncated("option without its length octet")));
        };
        let rest = &self.bytes[field::option::DATA];
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

/// Decodes every option of `bytes`, skipping Pad1 and PadN.
pub fn parse_options(bytes: &[u8]) -> Result<Vec<MobilityOption>, MhError> {
    let mut options = Vec::new();
    for raw in OptionIter::new(bytes) {
        let raw = raw?;
        match MobilityOptionType::from(raw.option_type) {
            MobilityOptionType::Pad1 | MobilityOptionType::PadN => {}
            _ => options.push(MobilityOption::parse(raw.option_type, raw.data)?),
        }
    }
    Ok(options)
}

fn ipv6_prefix(data: &[u8], what: &'static str) -> Result<Ipv6Net, MhError> {
    // Reserved (1), Prefix Length (1), Prefix (16); the table checked the 18 octets.
    Ipv6Net::new(ipv6(&data[2..18]), data[1]).map_err(|_| MhError::Malformed(what))
}

/// The 6-bit prefix length in the high bits of an octet (RFC 5555 section 3.1.1).
fn ipv4_prefix_len(octet: u8, what: &'static str) -> Result<u8, MhError> {
    let prefix_len = octet >> 2;
    if prefix_len > 32 {
        return Err(MhError::Malformed(what));
    }
    Ok(prefix_len)
}

fn utf8(data: &[u8], what: &'static str) -> Result<String, MhError> {
    String::from_utf8(data.to_vec()).map_err(|_| MhError::Malformed(what))
}

fn write_prefix(sink: &mut Sink<'_>, net: &Ipv6Net) {
    sink.put(&[0, net.prefix_len()]);
    sink.put(&net.addr().octets());
}

/// Decodes a Vendor-Specific Mobility Option (RFC 5094 section 3): Vendor ID, Sub-Type,
/// Data (the table checked the first five octets are there).
fn parse_vendor(data: &[u8]) -> VendorSpecific {
    let vendor_id = be32(data);
    let sub_type = data[4];
    let rest = &data[5..];
    if vendor_id != VENDOR_ID_3GPP {
        return VendorSpecific::Other {
            vendor_id,
            sub_type,
            data: rest.to_vec(),
        };
    }
    let other = || {
        VendorSpecific::ThreeGpp(ThreeGppOption::Other {
            sub_type,
            data: rest.to_vec(),
        })
    };
    // The octet after the sub-type is Reserved with the M flag in its low bit (TS 29.275
    // section 12.1.1); a fragment, non-zero reserved bits or an unexpected length keep
    // the raw form.
    let Some((&flags, value)) = rest.split_first() else {
        return other();
    };
    if flags != 0 {
        return other();
    }
    use ThreeGppSubType as S;
    let option = match (ThreeGppSubType::from(sub_type), value.len()) {
        (S::ProtocolConfigurationOptions, _) => {
            ThreeGppOption::ProtocolConfigurationOptions(value.to_vec())
        }
        (S::ErrorCode, 1) => ThreeGppOption::ErrorCode(value[0]),
        (S::PdnGwIpAddress, 4) => ThreeGppOption::PdnGwIpAddress(IpAddr::V4(ipv4(value))),
        (S::PdnGwIpAddress, 16) => ThreeGppOption::PdnGwIpAddress(IpAddr::V6(ipv6(value))),
        (S::PdnTypeIndication, 2) => ThreeGppOption::PdnTypeIndication {
            pdn_type: PdnType::from(value[0]),
            cause: value[1],
        },
        (S::ChargingId, 4) => ThreeGppOption::ChargingId(be32(value)),
        _ => return other(),
    };
    VendorSpecific::ThreeGpp(option)
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
            // Sub-Type, then the Reserved octet with the M flag clear.
            let header = |sub_type: ThreeGppSubType| [sub_type.value(), 0];
            match option {
                ThreeGppOption::Other { sub_type, data } => {
                    sink.put(&[*sub_type]);
                    sink.put(data);
                }
                ThreeGppOption::ProtocolConfigurationOptions(pco) => {
                    sink.put(&header(ThreeGppSubType::ProtocolConfigurationOptions));
                    sink.put(pco);
                }
                ThreeGppOption::ErrorCode(code) => {
                    sink.put(&header(ThreeGppSubType::ErrorCode));
                    sink.put(&[*code]);
                }
                ThreeGppOption::PdnGwIpAddress(address) => {
                    sink.put(&header(ThreeGppSubType::PdnGwIpAddress));
                    match address {
                        IpAddr::V4(a) => sink.put(&a.octets()),
                        IpAddr::V6(a) => sink.put(&a.octets()),
                    }
                }
                ThreeGppOption::PdnTypeIndication { pdn_type, cause } => {
                    sink.put(&header(ThreeGppSubType::PdnTypeIndication));
                    sink.put(&[pdn_type.value(), *cause]);
                }
                ThreeGppOption::ChargingId(id) => {
                    sink.put(&header(ThreeGppSubType::ChargingId));
                    sink.put(&id.to_be_bytes());
                }
            }
        }
    }
}
