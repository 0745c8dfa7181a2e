//! The visited gateway's GRE relay between the two tunnels of a chained binding, sans-IO
//! and without a TUN device: learned from the core's [`Output::ChainUp`] /
//! [`Output::ChainDown`] (through [`Relay::apply`]).
//!
//! * **Uplink**: keyed GRE from the ePDG under the uplink key this gateway gave it ->
//!   the outer source must be the ePDG -> the inner source must be the home-assigned
//!   IPv4 home address or inside the home network prefix -> the same inner packet in GRE
//!   under the home gateway's uplink key, to the home gateway, from our proxy care-of
//!   address.
//! * **Downlink**: keyed GRE from the home gateway under the downlink key this gateway
//!   gave it -> the outer source must be the home gateway -> GRE under the ePDG's
//!   downlink key, to the ePDG, from the address the ePDG registered through.
//!
//! IPv4 and IPv6 inner packets alike (the GRE protocol type is kept); IPv4 or IPv6 outer
//! on either side. Both keys of a chained binding are allocated from one key space, so
//! one lookup by key tells the direction. Anything else is dropped and counted. The
//! driver's GRE demultiplexer ([`super::demux::GreDemux`]) hands this relay the packets
//! under its keys ([`Relay::has_key`]) and the SGi data plane the others.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv6Net;
use pmip_common::tunnel::{decapsulate_gre, decapsulate_ip, Decapsulated, GreRepr, TunnelError};

use super::{inner_addrs, mag_endpoints, Action, DropReason, KEYED_GRE_LEN};
use crate::anchor::{ChainInfo, Output};
use crate::binding_cache::BindingId;

/// One direction of one chained binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Leg {
    id: BindingId,
    /// Who may send under this key.
    from: IpAddr,
    to: IpAddr,
    /// Our address the packet leaves from.
    local: IpAddr,
    out_key: u32,
    /// Uplink only: the addresses the inner source must belong to.
    source: Option<(Option<Ipv4Addr>, Option<Ipv6Net>)>,
}

/// Counters per direction and per drop reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    pub uplink_relayed: u64,
    pub downlink_relayed: u64,
    pub malformed_gre: u64,
    /// No chained binding has this key (e.g. a key of a binding served here).
    pub unknown_key: u64,
    pub wrong_peer: u64,
    pub malformed_inner: u64,
    pub spoofed_source: u64,
}

/// The relay table (module doc).
#[derive(Debug, Default)]
pub struct Relay {
    legs: HashMap<u32, Leg>,
    by_id: HashMap<BindingId, [u32; 2]>,
    stats: RelayStats,
}

impl Relay {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stats(&self) -> RelayStats {
        self.stats
    }

    /// Chained bindings installed.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Whether a packet under this key is the relay's.
    pub fn has_key(&self, key: u32) -> bool {
        self.legs.contains_key(&key)
    }

    /// Follows the core: installs on `ChainUp`, removes on `ChainDown`.
    pub fn apply(&mut self, output: &Output) {
        match output {
            Output::ChainUp(info) => self.install(info),
            Output::ChainDown { chain, .. } => self.remove(chain.id),
            _ => {}
        }
    }

    fn install(&mut self, info: &ChainInfo) {
        self.remove(info.id);
        let (epdg, epdg_local) = mag_endpoints(&info.epdg);
        let (home, home_local) = mag_endpoints(&info.home);
        let uplink = Leg {
            id: info.id,
            from: epdg,
            to: home,
            local: home_local,
            out_key: info.home_uplink_key.0,
            source: Some((info.ipv4_home_address, info.home_network_prefix)),
        };
        let downlink = Leg {
            id: info.id,
            from: home,
            to: epdg,
            local: epdg_local,
            out_key: info.epdg_downlink_key.0,
            source: None,
        };
        let keys = [info.uplink_key.0, info.home_downlink_key.0];
        self.legs.insert(keys[0], uplink);
        self.legs.insert(keys[1], downlink);
        self.by_id.insert(info.id, keys);
    }

    fn remove(&mut self, id: BindingId) {
        if let Some(keys) = self.by_id.remove(&id) {
            for k in keys {
                if self.legs.get(&k).is_some_and(|l| l.id == id) {
                    self.legs.remove(&k);
                }
            }
        }
    }

    /// A whole packet with its outer IPv4 or IPv6 header.
    pub fn relay_ip(&mut self, packet: &[u8]) -> Result<Action, DropReason> {
        let d = decapsulate_ip(packet);
        self.relay(d, None)
    }

    /// A GRE header and payload, `from` its source.
    pub fn relay_gre(&mut self, from: IpAddr, gre: &[u8]) -> Result<Action, DropReason> {
        let d = decapsulate_gre(gre);
        self.relay(d, Some(from))
    }

    /// A packet already taken apart: `from` the outer source when the outer header was
    /// not in `d`.
    pub fn relay(
        &mut self,
        d: Result<Decapsulated<'_>, TunnelError>,
        from: Option<IpAddr>,
    ) -> Result<Action, DropReason> {
        let result = self.relay_inner(d, from);
        let s = &mut self.stats;
        match &result {
            Ok((_, true)) => s.uplink_relayed += 1,
            Ok((_, false)) => s.downlink_relayed += 1,
            Err(DropReason::UnknownKey) => s.unknown_key += 1,
            Err(DropReason::WrongMag) => s.wrong_peer += 1,
            Err(DropReason::MalformedInner) => s.malformed_inner += 1,
            Err(DropReason::SpoofedSource) => s.spoofed_source += 1,
            Err(_) => s.malformed_gre += 1,
        }
        result.map(|(action, _)| action)
    }

    /// The action, and whether it is uplink.
    fn relay_inner(
        &self,
        d: Result<Decapsulated<'_>, TunnelError>,
        from: Option<IpAddr>,
    ) -> Result<(Action, bool), DropReason> {
        let d = d.map_err(|_| DropReason::MalformedGre)?;
        let leg = self.legs.get(&d.key).ok_or(DropReason::UnknownKey)?;
        if from.or(d.outer_source) != Some(leg.from) {
            return Err(DropReason::WrongMag);
        }
        if let Some((ipv4, prefix)) = leg.source {
            let ok = match inner_addrs(d.inner).ok_or(DropReason::MalformedInner)? {
                (IpAddr::V4(src), _) => ipv4 == Some(src),
                (IpAddr::V6(src), _) => prefix.is_some_and(|p| p.contains(&src)),
            };
            if !ok {
                return Err(DropReason::SpoofedSource);
            }
        }
        let mut gre = Vec::with_capacity(KEYED_GRE_LEN + d.inner.len());
        GreRepr::keyed(d.gre.protocol_type, leg.out_key).emit_with_payload(d.inner, &mut gre);
        Ok((
            Action::ToMag {
                mag: leg.to,
                local: leg.local,
                gre,
            },
            leg.source.is_some(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv6Addr, SocketAddrV4};

    use pmip_common::mh::GreKey;
    use pmip_common::tunnel::ProtocolType;

    use super::*;
    use crate::transport::MagAddress;

    const EPDG: [u8; 4] = [192, 0, 2, 1];
    const VISITED: [u8; 4] = [192, 0, 2, 2];
    const VISITED_HOME_SIDE: [u8; 4] = [198, 51, 100, 2];
    const HOME: [u8; 4] = [198, 51, 100, 3];

    fn info() -> ChainInfo {
        ChainInfo {
            id: BindingId::for_test(3),
            mn_id: "001010000000001@nai.epc".into(),
            apn: Some("internet".into()),
            epdg: MagAddress::Udp4 {
                mag: SocketAddrV4::new(EPDG.into(), 5436),
                local: VISITED.into(),
            },
            uplink_key: GreKey(10),
            epdg_downlink_key: GreKey(500),
            home: MagAddress::Udp4 {
                mag: SocketAddrV4::new(HOME.into(), 5436),
                local: VISITED_HOME_SIDE.into(),
            },
            home_uplink_key: GreKey(900),
            home_downlink_key: GreKey(11),
            ipv4_home_address: Some(Ipv4Addr::new(10, 9, 0, 2)),
            home_network_prefix: Some("2001:db8:9::/64".parse().unwrap()),
        }
    }

    /// An IPv4 or IPv6 header (no payload) from `src` to `dst`.
    fn inner(src: IpAddr, dst: IpAddr) -> Vec<u8> {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut p = vec![0u8; 28];
                p[0] = 0x45;
                p[3] = 28;
                p[8] = 64;
                p[9] = 1;
                p[12..16].copy_from_slice(&s.octets());
                p[16..20].copy_from_slice(&d.octets());
                p
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut p = vec![0u8; 48];
                p[0] = 0x60;
                p[5] = 8;
                p[6] = 58;
                p[7] = 64;
                p[8..24].copy_from_slice(&s.octets());
                p[24..40].copy_from_slice(&d.octets());
                p
            }
            _ => unreachable!(),
        }
    }

    /// GRE (IPv6 socket form, no outer header) under `key`.
    fn gre(key: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        GreRepr::keyed(ProtocolType::of_ip_packet(payload).unwrap(), key)
            .emit_with_payload(payload, &mut out);
        out
    }

    fn relayed(action: Action) -> (IpAddr, IpAddr, u32, Vec<u8>) {
        let Action::ToMag { mag, local, gre } = action else {
            panic!("not a GRE packet: {action:?}");
        };
        let d = decapsulate_gre(&gre).unwrap();
        (mag, local, d.key, d.inner.to_vec())
    }

    #[test]
    fn uplink_and_downlink_swap_keys_for_ipv4_and_ipv6() {
        let mut relay = Relay::new();
        relay.apply(&Output::ChainUp(info()));
        assert_eq!(relay.len(), 1);
        let ue4 = IpAddr::V4(Ipv4Addr::new(10, 9, 0, 2));
        let pdn4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 200));
        let ue6 = IpAddr::V6("2001:db8:9::1".parse().unwrap());
        let pdn6 = IpAddr::V6("2001:db8:ffff::1".parse().unwrap());
        for (ue, pdn) in [(ue4, pdn4), (ue6, pdn6)] {
            let up = inner(ue, pdn);
            let (to, local, key, payload) =
                relayed(relay.relay_gre(EPDG.into(), &gre(10, &up)).unwrap());
            assert_eq!(
                (to, local, key),
                (HOME.into(), VISITED_HOME_SIDE.into(), 900)
            );
            assert_eq!(payload, up);
            let down = inner(pdn, ue);
            let (to, local, key, payload) =
                relayed(relay.relay_gre(HOME.into(), &gre(11, &down)).unwrap());
            assert_eq!((to, local, key), (EPDG.into(), VISITED.into(), 500));
            assert_eq!(payload, down);
        }
        let s = relay.stats();
        assert_eq!((s.uplink_relayed, s.downlink_relayed), (2, 2));
    }

    #[test]
    fn wrong_peer_spoofed_source_and_unknown_key_are_dropped_and_counted() {
        let mut relay = Relay::new();
        relay.apply(&Output::ChainUp(info()));
        let ue = IpAddr::V4(Ipv4Addr::new(10, 9, 0, 2));
        let pdn = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 200));
        // The uplink key from the home side, the downlink key from the ePDG side.
        assert_eq!(
            relay.relay_gre(HOME.into(), &gre(10, &inner(ue, pdn))),
            Err(DropReason::WrongMag)
        );
        assert_eq!(
            relay.relay_gre(EPDG.into(), &gre(11, &inner(pdn, ue))),
            Err(DropReason::WrongMag)
        );
        let forged = IpAddr::V4(Ipv4Addr::new(10, 9, 0, 3));
        assert_eq!(
            relay.relay_gre(EPDG.into(), &gre(10, &inner(forged, pdn))),
            Err(DropReason::SpoofedSource)
        );
        let outside = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 1));
        let pdn6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1));
        assert_eq!(
            relay.relay_gre(EPDG.into(), &gre(10, &inner(outside, pdn6))),
            Err(DropReason::SpoofedSource)
        );
        assert_eq!(
            relay.relay_gre(EPDG.into(), &gre(12, &inner(ue, pdn))),
            Err(DropReason::UnknownKey)
        );
        assert_eq!(
            relay.relay_gre(EPDG.into(), &[0x20, 0, 8]),
            Err(DropReason::MalformedGre)
        );
        let s = relay.stats();
        assert_eq!(
            (
                s.wrong_peer,
                s.spoofed_source,
                s.unknown_key,
                s.malformed_gre
            ),
            (2, 2, 1, 1)
        );
    }

    #[test]
    fn an_outer_ipv4_header_names_the_sender_and_chain_down_removes_both_keys() {
        let mut relay = Relay::new();
        relay.apply(&Output::ChainUp(info()));
        let ue = IpAddr::V4(Ipv4Addr::new(10, 9, 0, 2));
        let pdn = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 200));
        let g = gre(10, &inner(ue, pdn));
        let mut packet = vec![0u8; 20];
        packet[0] = 0x45;
        packet[2..4].copy_from_slice(&((20 + g.len()) as u16).to_be_bytes());
        packet[8] = 64;
        packet[9] = 47;
        packet[12..16].copy_from_slice(&EPDG);
        packet[16..20].copy_from_slice(&VISITED);
        packet.extend_from_slice(&g);
        let (to, _, key, _) = relayed(relay.relay_ip(&packet).unwrap());
        assert_eq!((to, key), (HOME.into(), 900));
        assert!(relay.has_key(10) && relay.has_key(11));
        relay.apply(&Output::ChainDown {
            chain: info(),
            reason: crate::anchor::ChainDownReason::Deregistered,
        });
        assert!(relay.is_empty() && !relay.has_key(10) && !relay.has_key(11));
        assert_eq!(relay.relay_ip(&packet), Err(DropReason::UnknownKey));
    }
}
