//! The ePDG's user-space data plane (docs/attach.md, step 9), sans-IO:
//! uplink ESP-in-UDP from a UE -> SA by SPI -> decrypt -> source check -> GRE with the
//! uplink key toward the LMA holding the binding; downlink GRE from an LMA -> session by
//! the downlink key -> ESP -> the UE's address and UDP port. The driver owns the sockets
//! (UDP 4500, a raw IPv4 socket for IP protocol 47) and calls [`DataPlane::uplink`] and
//! [`DataPlane::downlink`]; every dropped packet is counted by its reason.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::Ipv6Net;
use pmip_common::esp::{
    child_sa_pair, next_header_of, EspError, EspPacket, IkeRole, InboundSa, OutboundSa,
};
use pmip_common::ike::sa::ChildSa;
use pmip_common::ike::Random;
use pmip_common::tunnel::{decapsulate_gre, GreRepr, ProtocolType};
use serde::Serialize;

/// Why a packet was dropped; each has its counter in [`Counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Not an ESP packet (too short, SPI zero).
    MalformedEsp,
    /// No session holds this inbound SPI.
    UnknownSpi,
    /// The ICV did not verify (or the padding was wrong).
    Integrity,
    /// Anti-replay: a duplicate or a packet left of the window.
    Replay,
    /// Opened, but not an IPv4/IPv6 packet matching its Next Header (or a dummy).
    BadInner,
    /// The inner source is not the UE's IPv4 address nor inside its /64.
    SpoofedSource,
    /// The binding has no uplink GRE key (the LMA gave none).
    NoUplinkKey,
    /// Not a keyed GRE packet carrying IPv4/IPv6.
    MalformedGre,
    /// No session holds this downlink key.
    UnknownDownlinkKey,
    /// The GRE packet came from an address other than the binding's LMA.
    WrongLma,
    /// The inner destination is not the UE's address or /64.
    WrongDestination,
    /// Sealing failed (sequence numbers exhausted: the SA needs a rekey).
    SealFailed,
}

/// Packet and drop counters, for logs and the status file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub uplink_packets: u64,
    pub uplink_bytes: u64,
    pub downlink_packets: u64,
    pub downlink_bytes: u64,
    pub drop_malformed_esp: u64,
    pub drop_unknown_spi: u64,
    pub drop_integrity: u64,
    pub drop_replay: u64,
    pub drop_bad_inner: u64,
    pub drop_spoofed_source: u64,
    pub drop_no_uplink_key: u64,
    pub drop_malformed_gre: u64,
    pub drop_unknown_downlink_key: u64,
    pub drop_wrong_lma: u64,
    pub drop_wrong_destination: u64,
    pub drop_seal_failed: u64,
}

impl Counters {
    fn count(&mut self, reason: DropReason) {
        let c = match reason {
            DropReason::MalformedEsp => &mut self.drop_malformed_esp,
            DropReason::UnknownSpi => &mut self.drop_unknown_spi,
            DropReason::Integrity => &mut self.drop_integrity,
            DropReason::Replay => &mut self.drop_replay,
            DropReason::BadInner => &mut self.drop_bad_inner,
            DropReason::SpoofedSource => &mut self.drop_spoofed_source,
            DropReason::NoUplinkKey => &mut self.drop_no_uplink_key,
            DropReason::MalformedGre => &mut self.drop_malformed_gre,
            DropReason::UnknownDownlinkKey => &mut self.drop_unknown_downlink_key,
            DropReason::WrongLma => &mut self.drop_wrong_lma,
            DropReason::WrongDestination => &mut self.drop_wrong_destination,
            DropReason::SealFailed => &mut self.drop_seal_failed,
        };
        *c += 1;
    }

    /// Packets dropped for any reason.
    pub fn dropped(&self) -> u64 {
        self.drop_malformed_esp
            + self.drop_unknown_spi
            + self.drop_integrity
            + self.drop_replay
            + self.drop_bad_inner
            + self.drop_spoofed_source
            + self.drop_no_uplink_key
            + self.drop_malformed_gre
            + self.drop_unknown_downlink_key
            + self.drop_wrong_lma
            + self.drop_wrong_destination
            + self.drop_seal_failed
    }
}

/// What a session needs besides its CHILD_SA: the binding's addresses and keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6_prefix: Option<Ipv6Net>,
    /// The LMA's address (the GRE peer).
    pub lma: IpAddr,
    pub uplink_key: Option<u32>,
    pub downlink_key: u32,
    /// Where ESP to the UE goes: its address and UDP source port of port-4500 traffic.
    pub ue: SocketAddr,
}

/// The two ESP SAs of one CHILD_SA.
struct Pair {
    inbound: InboundSa,
    outbound: OutboundSa,
    /// A rekey was asked for: its outbound sequence number is running out.
    rekey_asked: bool,
}

impl Pair {
    fn of(child: &ChildSa) -> Result<Self, EspError> {
        let (inbound, outbound) = child_sa_pair(child, IkeRole::Responder)?;
        Ok(Pair {
            inbound,
            outbound,
            rekey_asked: false,
        })
    }
}

struct Session {
    info: SessionInfo,
    /// The CHILD_SA we send on.
    current: Pair,
    /// The other CHILD_SA while a rekey is under way (RFC 7296 section 2.8): the new one
    /// until the UE shows it has it (a packet on it, or the old one's Delete), then the
    /// old one until its Delete. Both receive.
    other: Option<Pair>,
}

impl Session {
    fn inbound_spis(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(self.current.inbound.spi())
            .chain(self.other.iter().map(|p| p.inbound.spi()))
    }
}

/// An uplink packet to send: GRE (header and inner packet) to the LMA, as a raw socket
/// for IP protocol 47 takes it. Borrowed from the data plane's buffer (no allocation per
/// packet); valid until the next call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToLma<'a> {
    pub lma: IpAddr,
    pub gre: &'a [u8],
}

/// A downlink packet to send: ESP to the UE's UDP port (no non-ESP marker). Borrowed
/// like [`ToLma`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToUe<'a> {
    pub ue: SocketAddr,
    pub esp: &'a [u8],
}

/// Every attached UE's ESP SAs and GRE keys, keyed by the IKE SA (its SPIr).
#[derive(Default)]
pub struct DataPlane {
    sessions: HashMap<u64, Session>,
    by_spi: HashMap<u32, u64>,
    by_downlink_key: HashMap<u32, u64>,
    /// CHILD_SAs (IKE SA, our inbound SPI) whose outbound sequence number passed
    /// [`pmip_common::esp::REKEY_SEQUENCE_NUMBER`]: to rekey (RFC 4303 section 3.3.3).
    rekeys_due: Vec<(u64, u32)>,
    counters: Counters,
    /// Uplink: the ESP packet, opened in place; the GRE header is then written over the
    /// end of the ESP header and IV, right before the inner packet.
    uplink_buffer: Vec<u8>,
    /// Downlink: the sealed ESP packet.
    downlink_buffer: Vec<u8>,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane")
            .field("sessions", &self.sessions.len())
            .field("counters", &self.counters)
            .finish()
    }
}

impl DataPlane {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Installs (or replaces) the session of IKE SA `ike_spi`, the ePDG being the IKE
    /// responder of `child`.
    pub fn install(
        &mut self,
        ike_spi: u64,
        child: &ChildSa,
        info: SessionInfo,
    ) -> Result<(), EspError> {
        let current = Pair::of(child)?;
        self.remove(ike_spi);
        // A key or SPI still held by another session moves to this one.
        if let Some(old) = self.by_downlink_key.get(&info.downlink_key).copied() {
            self.remove(old);
        }
        self.by_spi.insert(current.inbound.spi(), ike_spi);
        self.by_downlink_key.insert(info.downlink_key, ike_spi);
        self.sessions.insert(
            ike_spi,
            Session {
                info,
                current,
                other: None,
            },
        );
        Ok(())
    }

    /// A rekey of the session's CHILD_SA made `child`: it receives at once, and we send
    /// on it once the UE does (or the old one is retired).
    pub fn rekey(&mut self, ike_spi: u64, child: &ChildSa) -> Result<(), EspError> {
        let pair = Pair::of(child)?;
        let Some(session) = self.sessions.get_mut(&ike_spi) else {
            return Ok(());
        };
        if let Some(dropped) = session.other.replace(pair) {
            if self.by_spi.get(&dropped.inbound.spi()) == Some(&ike_spi) {
                self.by_spi.remove(&dropped.inbound.spi());
            }
        }
        self.by_spi.insert(child.inbound_spi, ike_spi);
        Ok(())
    }

    /// The CHILD_SA with this inbound SPI is deleted: its SAs go; if it was the one we
    /// sent on, the other takes over.
    pub fn retire(&mut self, ike_spi: u64, inbound_spi: u32) {
        let Some(session) = self.sessions.get_mut(&ike_spi) else {
            return;
        };
        if session.other.as_ref().map(|p| p.inbound.spi()) == Some(inbound_spi) {
            session.other = None;
        } else if session.current.inbound.spi() == inbound_spi {
            match session.other.take() {
                Some(next) => session.current = next,
                None => return,
            }
        } else {
            return;
        }
        if self.by_spi.get(&inbound_spi) == Some(&ike_spi) {
            self.by_spi.remove(&inbound_spi);
        }
    }

    /// Forgets the session of IKE SA `ike_spi`, if any.
    pub fn remove(&mut self, ike_spi: u64) {
        if let Some(s) = self.sessions.remove(&ike_spi) {
            for spi in s.inbound_spis() {
                if self.by_spi.get(&spi) == Some(&ike_spi) {
                    self.by_spi.remove(&spi);
                }
            }
            if self.by_downlink_key.get(&s.info.downlink_key) == Some(&ike_spi) {
                self.by_downlink_key.remove(&s.info.downlink_key);
            }
        }
    }

    /// The CHILD_SAs to rekey before their sequence numbers run out, as (IKE SA, our
    /// inbound SPI): each once, for [`crate::epdg::Input::RekeyChildSa`].
    pub fn take_rekeys_due(&mut self) -> Vec<(u64, u32)> {
        std::mem::take(&mut self.rekeys_due)
    }

    /// The session's info, for tests and the status file.
    pub fn session(&self, ike_spi: u64) -> Option<&SessionInfo> {
        self.sessions.get(&ike_spi).map(|s| &s.info)
    }

    /// An ESP packet (the UDP payload, already classified as ESP) from `from`.
    pub fn uplink(&mut self, from: SocketAddr, esp: &[u8]) -> Result<ToLma<'_>, DropReason> {
        match Self::uplink_inner(
            &mut self.sessions,
            &self.by_spi,
            &mut self.uplink_buffer,
            from,
            esp,
        ) {
            Ok((lma, range)) => {
                self.counters.uplink_packets += 1;
                self.counters.uplink_bytes += range.len() as u64;
                Ok(ToLma {
                    lma,
                    gre: &self.uplink_buffer[range],
                })
            }
            Err(reason) => {
                self.counters.count(reason);
                Err(reason)
            }
        }
    }

    /// Opens `esp` in `buffer` and frames the inner packet as GRE in place; returns the
    /// LMA and where the GRE packet lies in `buffer`.
    fn uplink_inner(
        sessions: &mut HashMap<u64, Session>,
        by_spi: &HashMap<u32, u64>,
        buffer: &mut Vec<u8>,
        from: SocketAddr,
        esp: &[u8],
    ) -> Result<(IpAddr, std::ops::Range<usize>), DropReason> {
        let view = EspPacket::new_checked(esp).map_err(|_| DropReason::MalformedEsp)?;
        let ike_spi = *by_spi.get(&view.spi()).ok_or(DropReason::UnknownSpi)?;
        let session = sessions.get_mut(&ike_spi).ok_or(DropReason::UnknownSpi)?;
        buffer.clear();
        buffer.extend_from_slice(esp);
        let on_other = session.current.inbound.spi() != view.spi();
        let inbound = match (&mut session.other, on_other) {
            (Some(other), true) => &mut other.inbound,
            _ => &mut session.current.inbound,
        };
        let (d, range) = inbound.decapsulate_in_place(buffer).map_err(|e| match e {
            EspError::Replay(_) => DropReason::Replay,
            EspError::BadIcv | EspError::BadPadding => DropReason::Integrity,
            EspError::Truncated(_) | EspError::InvalidLength(_) => DropReason::MalformedEsp,
            _ => DropReason::BadInner,
        })?;
        if on_other {
            // The UE sends on the new CHILD_SA of a rekey: so do we now (RFC 7296 section
            // 2.8); the old one keeps receiving until its Delete.
            if let Some(other) = session.other.as_mut() {
                std::mem::swap(&mut session.current, other);
            }
        }
        let inner = &buffer[range.clone()];
        // An IPv4 or IPv6 packet agreeing with the Next Header (a dummy, 59, is dropped).
        if next_header_of(inner).ok() != Some(d.next_header) {
            return Err(DropReason::BadInner);
        }
        let (source, _) = addresses(inner).ok_or(DropReason::BadInner)?;
        if !owns(&session.info, source) {
            return Err(DropReason::SpoofedSource);
        }
        // An authenticated packet: follow the UE's NAT mapping (RFC 3948 section 3.2).
        if from.ip() == session.info.ue.ip() {
            session.info.ue = from;
        }
        let key = session.info.uplink_key.ok_or(DropReason::NoUplinkKey)?;
        let protocol = ProtocolType::of_ip_packet(inner).ok_or(DropReason::BadInner)?;
        let gre = GreRepr::keyed(protocol, key);
        // The ESP header and IV (at least 8 octets) lie before the payload: room for the
        // 8-octet keyed GRE header.
        let start = range
            .start
            .checked_sub(gre.header_len())
            .ok_or(DropReason::MalformedEsp)?;
        gre.emit(&mut buffer[start..range.end]);
        Ok((session.info.lma, start..range.end))
    }

    /// A GRE packet (header and payload, the outer IP header removed) from `lma`.
    pub fn downlink<R: Random + ?Sized>(
        &mut self,
        lma: IpAddr,
        gre: &[u8],
        random: &mut R,
    ) -> Result<ToUe<'_>, DropReason> {
        match Self::downlink_inner(
            &mut self.sessions,
            &self.by_downlink_key,
            &mut self.downlink_buffer,
            &mut self.rekeys_due,
            lma,
            gre,
            random,
        ) {
            Ok(ue) => {
                self.counters.downlink_packets += 1;
                self.counters.downlink_bytes += self.downlink_buffer.len() as u64;
                Ok(ToUe {
                    ue,
                    esp: &self.downlink_buffer,
                })
            }
            Err(reason) => {
                self.counters.count(reason);
                Err(reason)
            }
        }
    }

    /// Seals the inner packet of `gre` into `buffer`; returns the UE's address.
    fn downlink_inner<R: Random + ?Sized>(
        sessions: &mut HashMap<u64, Session>,
        by_downlink_key: &HashMap<u32, u64>,
        buffer: &mut Vec<u8>,
        rekeys_due: &mut Vec<(u64, u32)>,
        lma: IpAddr,
        gre: &[u8],
        random: &mut R,
    ) -> Result<SocketAddr, DropReason> {
        let d = decapsulate_gre(gre).map_err(|_| DropReason::MalformedGre)?;
        let ike_spi = *by_downlink_key
            .get(&d.key)
            .ok_or(DropReason::UnknownDownlinkKey)?;
        let session = sessions
            .get_mut(&ike_spi)
            .ok_or(DropReason::UnknownDownlinkKey)?;
        if session.info.lma != lma {
            return Err(DropReason::WrongLma);
        }
        let (_, destination) = addresses(d.inner).ok_or(DropReason::MalformedGre)?;
        if !owns(&session.info, destination) {
            return Err(DropReason::WrongDestination);
        }
        buffer.clear();
        let current = &mut session.current;
        current
            .outbound
            .encapsulate_ip(d.inner, random, buffer)
            .map_err(|_| DropReason::SealFailed)?;
        if current.outbound.needs_rekey() && !current.rekey_asked {
            current.rekey_asked = true;
            rekeys_due.push((ike_spi, current.inbound.spi()));
        }
        Ok(session.info.ue)
    }
}

/// Whether `address` is the UE's IPv4 address or inside its IPv6 prefix.
fn owns(info: &SessionInfo, address: IpAddr) -> bool {
    match address {
        IpAddr::V4(a) => info.ipv4 == Some(a),
        IpAddr::V6(a) => info.ipv6_prefix.is_some_and(|p| p.contains(&a)),
    }
}

/// Source and destination of an IPv4 or IPv6 packet whose header is complete.
fn addresses(packet: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match packet.first()? >> 4 {
        4 => {
            let h = packet.get(..20)?;
            Some((
                Ipv4Addr::new(h[12], h[13], h[14], h[15]).into(),
                Ipv4Addr::new(h[16], h[17], h[18], h[19]).into(),
            ))
        }
        6 => {
            let h = packet.get(..40)?;
            let mut s = [0u8; 16];
            s.copy_from_slice(&h[8..24]);
            let mut d = [0u8; 16];
            d.copy_from_slice(&h[24..40]);
            Some((IpAddr::from(s), IpAddr::from(d)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmip_common::ike::keys::EspDirectionKeys;
    use pmip_common::ike::sa::Mode;
    use pmip_common::ike::{ChildSaKeys, EspSuite};

    struct Counter(u8);
    impl Random for Counter {
        fn fill(&mut self, out: &mut [u8]) {
            for b in out {
                self.0 = self.0.wrapping_add(1);
                *b = self.0;
            }
        }
    }

    const UE_SPI: u32 = 0x1111_0000;
    const EPDG_SPI: u32 = 0x2222_0000;
    const IKE: u64 = 0xabcd;
    const UP: u32 = 0x100;
    const DOWN: u32 = 0x200;

    fn children(suite: EspSuite) -> (ChildSa, ChildSa) {
        let key = |seed: u8, n: usize| (0..n).map(|i| seed ^ i as u8).collect::<Vec<u8>>();
        let integ = suite.integ.map_or(0, |i| i.key_len());
        let keys = ChildSaKeys {
            initiator_to_responder: EspDirectionKeys {
                encr: key(1, suite.encr.key_len()),
                integ: key(2, integ),
            },
            responder_to_initiator: EspDirectionKeys {
                encr: key(3, suite.encr.key_len()),
                integ: key(4, integ),
            },
        };
        let ue = ChildSa {
            suite,
            inbound_spi: UE_SPI,
            outbound_spi: EPDG_SPI,
            keys: keys.clone(),
            tsi: Vec::new(),
            tsr: Vec::new(),
            mode: Mode::Tunnel,
        };
        let epdg = ChildSa {
            inbound_spi: EPDG_SPI,
            outbound_spi: UE_SPI,
            ..ue.clone()
        };
        (ue, epdg)
    }

    fn info() -> SessionInfo {
        SessionInfo {
            ipv4: Some(Ipv4Addr::new(10, 45, 0, 2)),
            ipv6_prefix: Some("2001:db8:45:1::/64".parse().unwrap()),
            lma: "127.0.0.3".parse().unwrap(),
            uplink_key: Some(UP),
            downlink_key: DOWN,
            ue: "127.0.0.5:40000".parse().unwrap(),
        }
    }

    fn ipv4(src: &str, dst: &str) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 1, 0, 0];
        p.extend_from_slice(&src.parse::<Ipv4Addr>().unwrap().octets());
        p.extend_from_slice(&dst.parse::<Ipv4Addr>().unwrap().octets());
        p.extend_from_slice(&[8, 0, 0xf7, 0xff, 0, 0, 0, 0]);
        p
    }

    fn ipv6(src: &str, dst: &str) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 8, 58, 64];
        p.extend_from_slice(&src.parse::<std::net::Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&dst.parse::<std::net::Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&[128, 0, 0, 0, 0, 0, 0, 0]);
        p
    }

    fn lab() -> (DataPlane, InboundSa, OutboundSa) {
        let suite = EspSuite::defaults()[0];
        let (ue, epdg) = children(suite);
        let mut dp = DataPlane::new();
        dp.install(IKE, &epdg, info()).unwrap();
        let (ue_in, ue_out) = child_sa_pair(&ue, IkeRole::Initiator).unwrap();
        (dp, ue_in, ue_out)
    }

    fn seal(sa: &mut OutboundSa, inner: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        sa.encapsulate_ip(inner, &mut Counter(0), &mut out).unwrap();
        out
    }

    #[test]
    fn uplink_v4_and_v6_become_gre_with_the_uplink_key() {
        let (mut dp, _, mut ue_out) = lab();
        let from: SocketAddr = "127.0.0.5:40001".parse().unwrap();
        for inner in [
            ipv4("10.45.0.2", "192.0.2.1"),
            ipv6("2001:db8:45:1::1", "2001:db8::1"),
            ipv6("2001:db8:45:1:aaaa::9", "2001:db8::1"),
        ] {
            let out = dp.uplink(from, &seal(&mut ue_out, &inner)).unwrap();
            assert_eq!(out.lma, info().lma);
            let d = decapsulate_gre(out.gre).unwrap();
            assert_eq!(d.key, UP);
            assert_eq!(d.inner, &inner[..]);
        }
        assert_eq!(dp.counters().uplink_packets, 3);
        assert_eq!(dp.counters().dropped(), 0);
        // The UE's new NAT port is followed.
        assert_eq!(dp.session(IKE).unwrap().ue, from);
    }

    #[test]
    fn every_uplink_drop_is_counted() {
        let (mut dp, _, mut ue_out) = lab();
        let from: SocketAddr = "127.0.0.5:40000".parse().unwrap();
        // Forged sources: another IPv4 address, an address outside the /64.
        let forged = seal(&mut ue_out, &ipv4("10.45.0.3", "192.0.2.1"));
        assert_eq!(dp.uplink(from, &forged), Err(DropReason::SpoofedSource));
        let forged6 = seal(&mut ue_out, &ipv6("2001:db8:45:2::1", "2001:db8::1"));
        assert_eq!(dp.uplink(from, &forged6), Err(DropReason::SpoofedSource));
        // Replay of a good packet.
        let good = seal(&mut ue_out, &ipv4("10.45.0.2", "192.0.2.1"));
        assert!(dp.uplink(from, &good).is_ok());
        assert_eq!(dp.uplink(from, &good), Err(DropReason::Replay));
        // A flipped bit.
        let mut bad = seal(&mut ue_out, &ipv4("10.45.0.2", "192.0.2.1"));
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(dp.uplink(from, &bad), Err(DropReason::Integrity));
        // Unknown SPI, and not ESP at all.
        let mut other = good.clone();
        other[..4].copy_from_slice(&0x9999u32.to_be_bytes());
        assert_eq!(dp.uplink(from, &other), Err(DropReason::UnknownSpi));
        assert_eq!(dp.uplink(from, &[1, 2]), Err(DropReason::MalformedEsp));
        // A binding without an uplink key.
        let mut i = info();
        i.uplink_key = None;
        let (ue, epdg) = children(EspSuite::defaults()[0]);
        dp.install(IKE, &epdg, i).unwrap();
        let (_, mut ue_out) = child_sa_pair(&ue, IkeRole::Initiator).unwrap();
        let p = seal(&mut ue_out, &ipv4("10.45.0.2", "192.0.2.1"));
        assert_eq!(dp.uplink(from, &p), Err(DropReason::NoUplinkKey));
        let c = dp.counters();
        assert_eq!(c.drop_spoofed_source, 2);
        assert_eq!(c.drop_replay, 1);
        assert_eq!(c.drop_integrity, 1);
        assert_eq!(c.drop_unknown_spi, 1);
        assert_eq!(c.drop_malformed_esp, 1);
        assert_eq!(c.drop_no_uplink_key, 1);
        assert_eq!(c.dropped(), 7);
        assert_eq!(c.uplink_packets, 1);
    }

    #[test]
    fn downlink_gre_becomes_esp_to_the_ue() {
        let (mut dp, mut ue_in, _) = lab();
        let lma = info().lma;
        for inner in [
            ipv4("192.0.2.1", "10.45.0.2"),
            ipv6("2001:db8::1", "2001:db8:45:1::1"),
        ] {
            let mut gre = Vec::new();
            let proto = ProtocolType::of_ip_packet(&inner).unwrap();
            GreRepr::keyed(proto, DOWN).emit_with_payload(&inner, &mut gre);
            let out = dp.downlink(lma, &gre, &mut Counter(0)).unwrap();
            assert_eq!(out.ue, info().ue);
            let mut plain = Vec::new();
            ue_in.decapsulate_ip(out.esp, &mut plain).unwrap();
            assert_eq!(plain, inner);
        }
        assert_eq!(dp.counters().downlink_packets, 2);
    }

    #[test]
    fn every_downlink_drop_is_counted() {
        let (mut dp, _, _) = lab();
        let lma = info().lma;
        let gre = |key: u32, inner: &[u8]| {
            let mut g = Vec::new();
            GreRepr::keyed(ProtocolType::Ipv4, key).emit_with_payload(inner, &mut g);
            g
        };
        let to_ue = ipv4("192.0.2.1", "10.45.0.2");
        let mut r = Counter(0);
        assert_eq!(
            dp.downlink(lma, &gre(DOWN + 1, &to_ue), &mut r),
            Err(DropReason::UnknownDownlinkKey)
        );
        assert_eq!(
            dp.downlink("127.0.0.9".parse().unwrap(), &gre(DOWN, &to_ue), &mut r),
            Err(DropReason::WrongLma)
        );
        assert_eq!(
            dp.downlink(lma, &gre(DOWN, &ipv4("192.0.2.1", "10.45.0.7")), &mut r),
            Err(DropReason::WrongDestination)
        );
        assert_eq!(
            dp.downlink(lma, &[0; 3], &mut r),
            Err(DropReason::MalformedGre)
        );
        let c = dp.counters();
        assert_eq!(
            (
                c.drop_unknown_downlink_key,
                c.drop_wrong_lma,
                c.drop_wrong_destination,
                c.drop_malformed_gre
            ),
            (1, 1, 1, 1)
        );
        // Removing the session forgets its SPI and key.
        dp.remove(IKE);
        assert!(dp.is_empty());
        assert_eq!(
            dp.downlink(lma, &gre(DOWN, &to_ue), &mut r),
            Err(DropReason::UnknownDownlinkKey)
        );
    }

    /// A CHILD_SA rekey (RFC 7296 section 2.8): the new SA receives at once, the ePDG
    /// sends on it once the UE does, the old one receives until it is retired.
    #[test]
    fn a_rekeyed_child_sa_takes_over_when_the_ue_uses_it() {
        let (mut dp, mut old_in, mut old_out) = lab();
        let suite = EspSuite::defaults()[0];
        let (mut ue, mut epdg) = children(suite);
        for (c, spi) in [(&mut ue, 0x3333_0000), (&mut epdg, 0x4444_0000)] {
            c.keys.initiator_to_responder.encr[0] ^= 0xff;
            c.keys.responder_to_initiator.encr[0] ^= 0xff;
            c.inbound_spi = spi;
        }
        ue.outbound_spi = epdg.inbound_spi;
        epdg.outbound_spi = ue.inbound_spi;
        let (mut new_in, mut new_out) = child_sa_pair(&ue, IkeRole::Initiator).unwrap();
        dp.rekey(IKE, &epdg).unwrap();
        let from: SocketAddr = "127.0.0.5:40000".parse().unwrap();
        let lma = info().lma;
        let down = |dp: &mut DataPlane| {
            let gre = GreRepr::keyed(ProtocolType::Ipv4, DOWN);
            let inner = ipv4("192.0.2.1", "10.45.0.2");
            let mut packet = vec![0; gre.header_len()];
            gre.emit(&mut packet);
            packet.extend_from_slice(&inner);
            dp.downlink(lma, &packet, &mut Counter(0))
                .unwrap()
                .esp
                .to_vec()
        };
        // Both receive; until the UE sends on the new one we still send on the old one.
        assert!(dp
            .uplink(from, &seal(&mut old_out, &ipv4("10.45.0.2", "192.0.2.1")))
            .is_ok());
        let mut plain = Vec::new();
        assert!(old_in.decapsulate_ip(&down(&mut dp), &mut plain).is_ok());
        assert!(dp
            .uplink(from, &seal(&mut new_out, &ipv4("10.45.0.2", "192.0.2.1")))
            .is_ok());
        assert!(new_in.decapsulate_ip(&down(&mut dp), &mut plain).is_ok());
        // The old one still receives until the Delete retires it.
        assert!(dp
            .uplink(from, &seal(&mut old_out, &ipv4("10.45.0.2", "192.0.2.1")))
            .is_ok());
        dp.retire(IKE, EPDG_SPI);
        assert_eq!(
            dp.uplink(from, &seal(&mut old_out, &ipv4("10.45.0.2", "192.0.2.1"))),
            Err(DropReason::UnknownSpi)
        );
        assert!(dp
            .uplink(from, &seal(&mut new_out, &ipv4("10.45.0.2", "192.0.2.1")))
            .is_ok());
        // Retiring the old one first (no packet on the new one yet) moves sending too.
        let (mut dp, mut old_in, _) = lab();
        dp.rekey(IKE, &epdg).unwrap();
        let (mut new_in, _) = child_sa_pair(&ue, IkeRole::Initiator).unwrap();
        dp.retire(IKE, EPDG_SPI);
        assert!(old_in.decapsulate_ip(&down(&mut dp), &mut plain).is_err());
        assert!(new_in.decapsulate_ip(&down(&mut dp), &mut plain).is_ok());
        dp.remove(IKE);
        assert!(dp.by_spi.is_empty() && dp.is_empty());
    }
}
