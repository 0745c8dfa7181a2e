//! The GRE demultiplexer, sans-IO: every keyed GRE packet this gateway receives (RFC
//! 2890, RFC 5845), from a MAG or from a home gateway, is taken apart once and handed to
//! the one part that owns its key: the roaming relay ([`Relay`]) for the two keys of each
//! chained binding, the SGi data plane ([`DataPlane`]) for every other key. Both parts'
//! keys come from the core's one key space, so a key never has two owners.
//!
//! The driver reads each address family's raw GRE sockets as one and feeds this one
//! demultiplexer (the IPv4 receive path has already stripped the outer header, so both
//! families arrive as the sender and the GRE packet). A packet whose GRE header does not
//! parse is the SGi plane's to count when it runs, else the relay's; so is a key no
//! part knows. Packets read from the SGi TUN device go to the SGi plane.

use std::net::IpAddr;

use pmip_common::tunnel::decapsulate_gre;

use super::relay::Relay;
use super::{Action, DataPlane, DropReason};
use crate::anchor::Output;

/// Which part a packet went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Sgi,
    Relay,
}

/// The SGi data plane and the roaming relay, each optional, behind one GRE receive.
#[derive(Debug, Default)]
pub struct GreDemux {
    sgi: Option<DataPlane>,
    relay: Option<Relay>,
}

impl GreDemux {
    pub fn new(sgi: Option<DataPlane>, relay: Option<Relay>) -> Self {
        GreDemux { sgi, relay }
    }

    pub fn sgi(&self) -> Option<&DataPlane> {
        self.sgi.as_ref()
    }

    pub fn relay(&self) -> Option<&Relay> {
        self.relay.as_ref()
    }

    /// Follows the signaling core: bindings for the SGi plane, chained bindings for the
    /// relay.
    pub fn apply(&mut self, output: &Output) {
        if let Some(sgi) = self.sgi.as_mut() {
            sgi.apply(output);
        }
        if let Some(relay) = self.relay.as_mut() {
            relay.apply(output);
        }
    }

    /// One GRE packet (header and payload) from `from`: its owner and what to do with
    /// it. `None` when neither part runs.
    pub fn receive(
        &mut self,
        from: IpAddr,
        gre: &[u8],
    ) -> Option<(Owner, Result<Action, DropReason>)> {
        let d = decapsulate_gre(gre);
        let relayed = match (&d, &self.relay) {
            (Ok(d), Some(relay)) => relay.has_key(d.key),
            _ => false,
        };
        match self.sgi.as_mut() {
            Some(sgi) if !relayed => Some((Owner::Sgi, sgi.uplink(d, Some(from)))),
            _ => {
                let relay = self.relay.as_mut()?;
                Some((Owner::Relay, relay.relay(d, Some(from))))
            }
        }
    }

    /// One packet read from the SGi TUN device. `None` without an SGi plane.
    pub fn downlink(&mut self, packet: &[u8]) -> Option<Result<Action, DropReason>> {
        self.sgi.as_mut().map(|sgi| sgi.downlink(packet))
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use pmip_common::mh::GreKey;
    use pmip_common::tunnel::{GreRepr, ProtocolType};

    use super::*;
    use crate::anchor::ChainInfo;
    use crate::binding_cache::{Addresses, BindingId};
    use crate::dataplane::DataPlaneSettings;
    use crate::transport::MagAddress;
    use crate::BindingInfo;

    const MAG: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const LMA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    const HOME: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
    const UE: Ipv4Addr = Ipv4Addr::new(10, 45, 0, 7);
    const ROAMER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);

    fn path(mag: Ipv4Addr) -> MagAddress {
        MagAddress::Udp4 {
            mag: SocketAddrV4::new(mag, 5436),
            local: LMA,
        }
    }

    /// An SGi binding under uplink key 20 and a chained binding under keys 10 and 11.
    fn demux(sgi: bool, relay: bool) -> GreDemux {
        let mut d = GreDemux::new(
            sgi.then(|| DataPlane::new(DataPlaneSettings::default())),
            relay.then(Relay::new),
        );
        d.apply(&Output::BindingUp(BindingInfo {
            id: BindingId::for_test(1),
            mag: path(MAG),
            addresses: Addresses {
                home_network_prefix: None,
                ipv4_home_address: Some(UE),
                uplink_gre_key: Some(GreKey(20)),
            },
            downlink_gre_key: Some(GreKey(500)),
        }));
        d.apply(&Output::ChainUp(ChainInfo {
            id: BindingId::for_test(2),
            mn_id: "001010000000001@nai.epc".into(),
            apn: Some("internet".into()),
            epdg: path(MAG),
            uplink_key: GreKey(10),
            epdg_downlink_key: GreKey(501),
            home: path(HOME),
            home_uplink_key: GreKey(900),
            home_downlink_key: GreKey(11),
            ipv4_home_address: Some(ROAMER),
            home_network_prefix: None,
        }));
        d
    }

    fn gre(key: u32, source: Ipv4Addr) -> Vec<u8> {
        let mut inner = vec![0u8; 28];
        inner[0] = 0x45;
        inner[3] = 28;
        inner[8] = 64;
        inner[9] = 1;
        inner[12..16].copy_from_slice(&source.octets());
        inner[16..20].copy_from_slice(&[192, 0, 2, 200]);
        let mut out = Vec::new();
        GreRepr::keyed(ProtocolType::Ipv4, key).emit_with_payload(&inner, &mut out);
        out
    }

    fn to_mag(action: Action) -> (IpAddr, u32) {
        match action {
            Action::ToMag { mag, gre, .. } => (mag, decapsulate_gre(&gre).unwrap().key),
            other => panic!("not toward a MAG: {other:?}"),
        }
    }

    #[test]
    fn each_key_goes_to_its_owner_and_is_counted_there_only() {
        let mut d = demux(true, true);
        let mag = IpAddr::V4(MAG);
        let (owner, action) = d.receive(mag, &gre(20, UE)).unwrap();
        assert_eq!(owner, Owner::Sgi);
        assert!(matches!(action, Ok(Action::ToSgi(_))));
        let (owner, action) = d.receive(mag, &gre(10, ROAMER)).unwrap();
        assert_eq!(owner, Owner::Relay);
        assert_eq!(to_mag(action.unwrap()), (IpAddr::V4(HOME), 900));
        let (owner, action) = d.receive(IpAddr::V4(HOME), &gre(11, ROAMER)).unwrap();
        assert_eq!(owner, Owner::Relay);
        assert_eq!(to_mag(action.unwrap()), (mag, 501));
        // An unknown key and a broken header are the SGi plane's to count.
        assert_eq!(
            d.receive(mag, &gre(77, UE)).unwrap(),
            (Owner::Sgi, Err(DropReason::UnknownKey))
        );
        assert_eq!(
            d.receive(mag, &[0x20, 0, 8]).unwrap(),
            (Owner::Sgi, Err(DropReason::MalformedGre))
        );
        let sgi = d.sgi().unwrap().stats();
        assert_eq!(
            (sgi.uplink_forwarded, sgi.unknown_key, sgi.malformed_gre),
            (1, 1, 1)
        );
        let relay = d.relay().unwrap().stats();
        assert_eq!(
            (
                relay.uplink_relayed,
                relay.downlink_relayed,
                relay.unknown_key
            ),
            (1, 1, 0)
        );
    }

    #[test]
    fn a_relay_alone_counts_what_it_does_not_know_and_an_sgi_plane_alone_sees_all() {
        let mut relay_only = demux(false, true);
        assert_eq!(
            relay_only.receive(IpAddr::V4(MAG), &gre(20, UE)).unwrap(),
            (Owner::Relay, Err(DropReason::UnknownKey))
        );
        assert_eq!(relay_only.relay().unwrap().stats().unknown_key, 1);
        assert_eq!(relay_only.downlink(&[0x45; 20]), None);
        let mut sgi_only = demux(true, false);
        assert_eq!(
            sgi_only.receive(IpAddr::V4(MAG), &gre(10, ROAMER)).unwrap(),
            (Owner::Sgi, Err(DropReason::UnknownKey))
        );
        assert!(GreDemux::default()
            .receive(IpAddr::V4(MAG), &gre(20, UE))
            .is_none());
    }
}
