//! The proxy forms of the Binding Update and Acknowledgement (RFC 5213 section 6.9,
//! RFC 5844, RFC 5845, TS 29.275): the options of a message with the P flag, validated
//! and named, as the LMA's and the MAG's logic use them, and the conversions both ways.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use super::codec::MobilityHeaderRepr;
use super::error::MhError;
use super::message::*;
use super::options::MobilityOption;
use super::types::*;

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
