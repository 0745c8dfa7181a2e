//! Pcap writing: every node's optional `--pcap FILE` records the signaling it sends and
//! receives as raw IP packets (LINKTYPE_RAW), so any run opens in Wireshark or tshark.
//! PLACEHOLDER signatures, to be replaced by the real writer.
#![allow(unused_variables)]

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::SystemTime;

/// Writes packets to a pcap file, building the IP (and UDP) headers around payloads.
pub struct PcapWriter {
    _private: (),
}

impl PcapWriter {
    /// Creates (truncates) the file and writes the pcap global header.
    pub fn create(path: &Path) -> io::Result<Self> {
        todo!()
    }
    /// A Mobility Header directly in IPv6 (next header 135). The MH checksum must
    /// already be filled in `mh`.
    pub fn write_ipv6_mh(
        &mut self,
        time: SystemTime,
        source: Ipv6Addr,
        destination: Ipv6Addr,
        mh: &[u8],
    ) -> io::Result<()> {
        todo!()
    }
    /// A UDP datagram over IPv4 or IPv6 (both addresses must be of one family), with
    /// correct IP and UDP checksums.
    pub fn write_udp(
        &mut self,
        time: SystemTime,
        source: SocketAddr,
        destination: SocketAddr,
        payload: &[u8],
    ) -> io::Result<()> {
        todo!()
    }
    /// A whole IP packet as it is.
    pub fn write_ip(&mut self, time: SystemTime, packet: &[u8]) -> io::Result<()> {
        todo!()
    }
    pub fn flush(&mut self) -> io::Result<()> {
        todo!()
    }
}

#[allow(dead_code)]
fn _unused(_: Ipv4Addr) {}
