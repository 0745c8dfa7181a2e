//! The LMA's user-space data plane (SGi side), sans-IO.
//!
//! [`DataPlane`] learns bindings from the signaling core's [`Output::BindingUp`] and
//! [`Output::BindingDown`] (fed through [`DataPlane::apply`]) and turns packets into
//! [`Action`]s; the driver owns the TUN device and the raw GRE sockets, whose packets
//! reach this plane through the GRE demultiplexer ([`demux::GreDemux`]) unless a
//! chained binding's relay owns their key.
//!
//! * **Uplink** (a MAG's GRE packet, taken apart once by the demultiplexer, or whole with
//!   its outer header): keyed GRE (RFC 2890, RFC 5845) -> binding by the uplink key
//!   (ours) -> the outer source must be the binding's MAG -> the inner source must be the
//!   binding's IPv4 home address or inside its home network prefix -> the inner packet
//!   goes to the SGi TUN device. Anything else is dropped and counted by reason.
//! * **Downlink** (a packet read from the TUN device): binding by destination (the IPv4
//!   home address, or the /64 home network prefix) -> GRE with the MAG's downlink key to
//!   the MAG, from the LMA address the MAG registered through. The kernel adds the outer
//!   IP header (raw sockets without `IP_HDRINCL`).
//! * **No binding** for a downlink destination: the packet is dropped and counted, with
//!   no ICMP unreachable. Unsolicited traffic toward unassigned pool addresses is common
//!   on a PDN; answering each would turn the LMA into a reflector.
//! * **Too big** (the rule): the largest inner packet is `tunnel_mtu` (the MTU of the path
//!   to the MAGs) minus the outer IP header (20 for IPv4, 40 for IPv6) minus the 8-octet
//!   keyed GRE header. A larger downlink IPv6 packet gets an ICMPv6 Packet Too Big (RFC
//!   4443 section 3.2) carrying that MTU (never below 1280, the IPv6 minimum); a larger
//!   IPv4 packet with DF set gets ICMP Destination Unreachable, Fragmentation Needed
//!   (RFC 792, RFC 1191) carrying that MTU. Both go back out of the TUN device toward
//!   the source, from the configured ICMP source address of that family: an address of
//!   the LMA as a router (by default the UEs' IPv4 default router), never the kernel's
//!   own TUN address, which the kernel would drop as a martian source. A too-big IPv4
//!   packet without DF is tunnelled whole and the outer packet is fragmented by the
//!   sending host's IP stack (RFC 4459 section 3.1; the MAG's kernel reassembles before
//!   its raw socket sees it), counted. A too-big ICMP error message (RFC 1122 / RFC 4443
//!   forbid errors about errors), or one with no ICMP source of its family configured,
//!   is dropped and counted.

use pmip_common::icmp6::{self, Icmpv6Error};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;
use pmip_common::tunnel::{
    decapsulate_gre, decapsulate_ip, Decapsulated, GreRepr, ProtocolType, GRE_BASE_HEADER_LEN,
};

use crate::anchor::{BindingInfo, Output};

pub mod demux;
pub mod relay;
use crate::binding_cache::BindingId;
use crate::transport::MagAddress;

/// IPv4 header without options, IPv6 fixed header.
const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
/// A keyed GRE header: base plus key.
const KEYED_GRE_LEN: usize = GRE_BASE_HEADER_LEN + 4;
/// IPv6 minimum link MTU (RFC 8200 section 5).
const IPV6_MIN_MTU: usize = 1280;
/// An ICMPv4 error carries at most this much in total (RFC 1812 section 4.3.2.3).
const ICMPV4_ERROR_MAX: usize = 576;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;

/// What the data plane needs to know that is not in a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataPlaneSettings {
    /// MTU of the path to the MAGs (outer packet size limit).
    pub tunnel_mtu: usize,
    /// Source of ICMP errors sent toward the PDN over IPv4 (not an address of the
    /// kernel's TUN device: see the module doc).
    pub icmp_source_v4: Option<Ipv4Addr>,
    /// Source of ICMPv6 errors sent toward the PDN (likewise).
    pub icmp_source_v6: Option<Ipv6Addr>,
}

impl Default for DataPlaneSettings {
    fn default() -> Self {
        DataPlaneSettings {
            tunnel_mtu: 1500,
            icmp_source_v4: None,
            icmp_source_v6: None,
        }
    }
}

/// What the driver must do with one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write this IP packet to the SGi TUN device.
    ToSgi(Vec<u8>),
    /// Send this GRE packet (header and inner packet) to `mag` from `local`, over the
    /// raw GRE socket of that family.
    ToMag {
        mag: IpAddr,
        local: IpAddr,
        gre: Vec<u8>,
    },
}

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Uplink: outer header or GRE header invalid, no key, or inner version mismatch.
    MalformedGre,
    /// Uplink: no binding has this uplink key.
    UnknownKey,
    /// Uplink: the outer source is not the binding's MAG.
    WrongMag,
    /// Uplink: the inner packet is not a whole IPv4/IPv6 header.
    MalformedInner,
    /// Uplink: the inner source is neither the home address nor in the home prefix.
    SpoofedSource,
    /// Downlink: not an IPv4/IPv6 packet.
    MalformedDownlink,
    /// Downlink: no binding for the destination.
    NoBinding,
    /// Downlink: too big and no ICMP error allowed or possible (see the module doc).
    TooBig,
}

/// Counters, per direction and per drop reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataPlaneStats {
    pub uplink_forwarded: u64,
    pub downlink_forwarded: u64,
    pub too_big_icmp_sent: u64,
    pub malformed_gre: u64,
    pub unknown_key: u64,
    pub wrong_mag: u64,
    pub malformed_inner: u64,
    pub spoofed_source: u64,
    pub malformed_downlink: u64,
    pub no_binding: u64,
    pub too_big_dropped: u64,
    /// Downlink IPv4 packets without DF tunnelled although too big (outer fragments).
    pub too_big_outer_fragmented: u64,
    /// Bindings not installed because they lack an uplink or downlink GRE key.
    pub bindings_without_keys: u64,
}

impl DataPlaneStats {
    fn count(&mut self, reason: DropReason) {
        let c = match reason {
            DropReason::MalformedGre => &mut self.malformed_gre,
            DropReason::UnknownKey => &mut self.unknown_key,
            DropReason::WrongMag => &mut self.wrong_mag,
            DropReason::MalformedInner => &mut self.malformed_inner,
            DropReason::SpoofedSource => &mut self.spoofed_source,
            DropReason::MalformedDownlink => &mut self.malformed_downlink,
            DropReason::NoBinding => &mut self.no_binding,
            DropReason::TooBig => &mut self.too_big_dropped,
        };
        *c += 1;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Route {
    id: BindingId,
    mag: IpAddr,
    local: IpAddr,
    downlink_key: u32,
    ipv4: Option<Ipv4Addr>,
    prefix: Option<Ipv6Net>,
}

/// The tunnel lookups and checks, no I/O (module doc).
#[derive(Debug, Default)]
pub struct DataPlane {
    settings: DataPlaneSettings,
    by_uplink_key: HashMap<u32, Route>,
    /// Each binding's uplink key, so a refresh or a removal finds its route at once.
    by_id: HashMap<BindingId, u32>,
    by_ipv4: HashMap<Ipv4Addr, u32>,
    /// Keyed by the upper 64 bits of the home network prefix.
    by_prefix: HashMap<u64, u32>,
    stats: DataPlaneStats,
}

fn mag_endpoints(mag: &MagAddress) -> (IpAddr, IpAddr) {
    match *mag {
        MagAddress::Udp4 { mag, local } => (IpAddr::V4(*mag.ip()), IpAddr::V4(local)),
        MagAddress::Ip6 { mag, local, .. } => (IpAddr::V6(mag), IpAddr::V6(local)),
    }
}

fn prefix_key(addr: Ipv6Addr) -> u64 {
    (u128::from(addr) >> 64) as u64
}

impl DataPlane {
    pub fn new(settings: DataPlaneSettings) -> Self {
        DataPlane {
            settings,
            ..DataPlane::default()
        }
    }

    pub fn stats(&self) -> DataPlaneStats {
        self.stats
    }

    /// Number of bindings installed.
    pub fn len(&self) -> usize {
        self.by_uplink_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_uplink_key.is_empty()
    }

    /// Follows the signaling core: installs on `BindingUp`, removes on `BindingDown`,
    /// ignores the rest.
    pub fn apply(&mut self, output: &Output) {
        match output {
            Output::BindingUp(info) => self.install(info),
            Output::BindingDown { binding, .. } => self.remove(binding),
            _ => {}
        }
    }

    fn install(&mut self, info: &BindingInfo) {
        // A refresh or handover replaces what the binding had.
        self.remove_id(info.id);
        let (Some(up), Some(down)) = (info.addresses.uplink_gre_key, info.downlink_gre_key) else {
            self.stats.bindings_without_keys += 1;
            return;
        };
        let (mag, local) = mag_endpoints(&info.mag);
        let route = Route {
            id: info.id,
            mag,
            local,
            downlink_key: down.0,
            ipv4: info.addresses.ipv4_home_address,
            prefix: info.addresses.home_network_prefix,
        };
        if let Some(old) = self.by_uplink_key.remove(&up.0) {
            // Another binding held this key (the core never does this): it loses it.
            self.by_id.remove(&old.id);
            self.unindex(&old);
        }
        self.by_uplink_key.insert(up.0, route);
        self.by_id.insert(info.id, up.0);
        if let Some(a) = route.ipv4 {
            self.by_ipv4.insert(a, up.0);
        }
        if let Some(p) = route.prefix {
            self.by_prefix.insert(prefix_key(p.network()), up.0);
        }
    }

    fn remove(&mut self, info: &BindingInfo) {
        self.remove_id(info.id);
    }

    fn remove_id(&mut self, id: BindingId) {
        let Some(key) = self.by_id.remove(&id) else {
            return;
        };
        if let Some(old) = self.by_uplink_key.remove(&key) {
            self.unindex(&old);
        }
    }

    fn unindex(&mut self, route: &Route) {
        if let Some(a) = route.ipv4 {
            if self
                .by_ipv4
                .get(&a)
                .and_then(|k| self.by_uplink_key.get(k))
                .map(|r| r.id == route.id)
                .unwrap_or(true)
            {
                self.by_ipv4.remove(&a);
            }
        }
        if let Some(p) = route.prefix {
            let pk = prefix_key(p.network());
            if self
                .by_prefix
                .get(&pk)
                .and_then(|k| self.by_uplink_key.get(k))
                .map(|r| r.id == route.id)
                .unwrap_or(true)
            {
                self.by_prefix.remove(&pk);
            }
        }
    }

    /// Uplink of a whole packet with its outer IPv4 or IPv6 header.
    pub fn uplink_ip(&mut self, packet: &[u8]) -> Result<Action, DropReason> {
        let d = decapsulate_ip(packet);
        self.uplink(d, None)
    }

    /// Uplink of a GRE header and payload, `from` the MAG.
    pub fn uplink_gre(&mut self, from: IpAddr, gre: &[u8]) -> Result<Action, DropReason> {
        let d = decapsulate_gre(gre);
        self.uplink(d, Some(from))
    }

    /// Uplink of a packet already taken apart: `from` the outer source when the outer
    /// header was not in `d`.
    pub fn uplink(
        &mut self,
        d: Result<Decapsulated<'_>, pmip_common::tunnel::TunnelError>,
        from: Option<IpAddr>,
    ) -> Result<Action, DropReason> {
        let result = self.uplink_inner(d, from);
        match &result {
            Ok(_) => self.stats.uplink_forwarded += 1,
            Err(r) => self.stats.count(*r),
        }
        result
    }

    fn uplink_inner(
        &self,
        d: Result<Decapsulated<'_>, pmip_common::tunnel::TunnelError>,
        from: Option<IpAddr>,
    ) -> Result<Action, DropReason> {
        let d = d.map_err(|_| DropReason::MalformedGre)?;
        let route = self
            .by_uplink_key
            .get(&d.key)
            .ok_or(DropReason::UnknownKey)?;
        let outer_source = from.or(d.outer_source);
        if outer_source != Some(route.mag) {
            return Err(DropReason::WrongMag);
        }
        let ok = match inner_addrs(d.inner).ok_or(DropReason::MalformedInner)? {
            (IpAddr::V4(src), _) => route.ipv4 == Some(src),
            (IpAddr::V6(src), _) => route.prefix.is_some_and(|p| p.contains(&src)),
        };
        if !ok {
            return Err(DropReason::SpoofedSource);
        }
        Ok(Action::ToSgi(d.inner.to_vec()))
    }

    /// Downlink: a packet read from the SGi TUN device.
    pub fn downlink(&mut self, packet: &[u8]) -> Result<Action, DropReason> {
        let result = self.downlink_inner(packet);
        match &result {
            Ok(Action::ToMag { .. }) => self.stats.downlink_forwarded += 1,
            Ok(Action::ToSgi(_)) => self.stats.too_big_icmp_sent += 1,
            Err(r) => self.stats.count(*r),
        }
        result
    }

    fn downlink_inner(&mut self, packet: &[u8]) -> Result<Action, DropReason> {
        let (_, dst) = inner_addrs(packet).ok_or(DropReason::MalformedDownlink)?;
        let key = match dst {
            IpAddr::V4(a) => self.by_ipv4.get(&a),
            IpAddr::V6(a) => self.by_prefix.get(&prefix_key(a)),
        }
        .ok_or(DropReason::NoBinding)?;
        let route = *self.by_uplink_key.get(key).ok_or(DropReason::NoBinding)?;
        let matches = match dst {
            IpAddr::V4(a) => route.ipv4 == Some(a),
            IpAddr::V6(a) => route.prefix.is_some_and(|p| p.contains(&a)),
        };
        if !matches {
            return Err(DropReason::NoBinding);
        }
        let outer = match route.mag {
            IpAddr::V4(_) => IPV4_HEADER_LEN,
            IpAddr::V6(_) => IPV6_HEADER_LEN,
        };
        let max_inner = self
            .settings
            .tunnel_mtu
            .saturating_sub(outer + KEYED_GRE_LEN);
        if packet.len() > max_inner {
            let ipv4_without_df = packet.first().is_some_and(|b| b >> 4 == 4)
                && packet.get(6).is_some_and(|b| b & 0x40 == 0);
            if !ipv4_without_df {
                return self.too_big(packet, max_inner);
            }
            self.stats.too_big_outer_fragmented += 1;
        }
        let protocol = match dst {
            IpAddr::V4(_) => ProtocolType::Ipv4,
            IpAddr::V6(_) => ProtocolType::Ipv6,
        };
        let mut gre = Vec::with_capacity(KEYED_GRE_LEN + packet.len());
        GreRepr::keyed(protocol, route.downlink_key).emit_with_payload(packet, &mut gre);
        Ok(Action::ToMag {
            mag: route.mag,
            local: route.local,
            gre,
        })
    }

    fn too_big(&self, packet: &[u8], mtu: usize) -> Result<Action, DropReason> {
        if is_icmp_error(packet) {
            return Err(DropReason::TooBig);
        }
        match inner_addrs(packet) {
            Some((IpAddr::V4(src), _)) => {
                let sgi = self.settings.icmp_source_v4.ok_or(DropReason::TooBig)?;
                let mtu = u16::try_from(mtu).unwrap_or(u16::MAX);
                Ok(Action::ToSgi(icmpv4_frag_needed(sgi, src, mtu, packet)))
            }
            Some((IpAddr::V6(src), _)) => {
                let sgi = self.settings.icmp_source_v6.ok_or(DropReason::TooBig)?;
                let mtu = u32::try_from(mtu.max(IPV6_MIN_MTU)).unwrap_or(u32::MAX);
                Ok(Action::ToSgi(icmpv6_packet_too_big(sgi, src, mtu, packet)))
            }
            None => Err(DropReason::MalformedDownlink),
        }
    }
}

/// Source and destination of an IPv4 or IPv6 packet, if its fixed header is whole and
/// its version and IPv4 header length are sane.
fn inner_addrs(p: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match p.first()? >> 4 {
        4 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            if ihl < IPV4_HEADER_LEN || p.len() < ihl {
                return None;
            }
            let s: [u8; 4] = p.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = p.get(16..20)?.try_into().ok()?;
            Some((IpAddr::from(s), IpAddr::from(d)))
        }
        6 => {
            if p.len() < IPV6_HEADER_LEN {
                return None;
            }
            let s: [u8; 16] = p.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = p.get(24..40)?.try_into().ok()?;
            Some((IpAddr::from(s), IpAddr::from(d)))
        }
        _ => None,
    }
}

/// Whether the packet is an ICMP/ICMPv6 error message (no error is sent about it).
/// IPv6 extension headers are not walked: only a first next header of 58 counts.
fn is_icmp_error(p: &[u8]) -> bool {
    match p.first().map(|b| b >> 4) {
        Some(4) => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            p.get(9) == Some(&IPPROTO_ICMP)
                && p.get(ihl).is_some_and(|t| matches!(t, 3 | 4 | 5 | 11 | 12))
        }
        Some(6) => p.get(6) == Some(&IPPROTO_ICMPV6) && p.get(40).is_some_and(|t| *t < 128),
        _ => false,
    }
}

fn checksum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn checksum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// ICMP Destination Unreachable, Fragmentation Needed and DF Set (type 3 code 4) with
/// the next-hop MTU (RFC 1191), quoting as much of `original` as fits in 576 octets.
fn icmpv4_frag_needed(src: Ipv4Addr, dst: Ipv4Addr, mtu: u16, original: &[u8]) -> Vec<u8> {
    let quote = original.len().min(ICMPV4_ERROR_MAX - IPV4_HEADER_LEN - 8);
    let total = IPV4_HEADER_LEN + 8 + quote;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = IPPROTO_ICMP;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let hc = checksum_fold(checksum_add(0, &p[..IPV4_HEADER_LEN]));
    p[10..12].copy_from_slice(&hc.to_be_bytes());
    let icmp = &mut p[IPV4_HEADER_LEN..];
    icmp[0] = 3;
    icmp[1] = 4;
    icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[8..].copy_from_slice(&original[..quote]);
    let c = checksum_fold(checksum_add(0, icmp));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    p
}

/// ICMPv6 Packet Too Big (RFC 4443 section 3.2), quoting as much of `original` as fits
/// in the IPv6 minimum MTU.
fn icmpv6_packet_too_big(src: Ipv6Addr, dst: Ipv6Addr, mtu: u32, original: &[u8]) -> Vec<u8> {
    icmp6::error_packet(src, dst, Icmpv6Error::PacketTooBig { mtu }, original)
}

#[cfg(test)]
mod tests;
