//! The `--pcap` recorder of the Mobility Header messages the LMA sends and receives: over
//! IPv4 in UDP (RFC 5844), over IPv6 directly (next header 135). Write errors are logged
//! once and end the recording.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result};
use lma::MagAddress;
use pmip_common::icmp6::IPPROTO_ICMPV6;
use pmip_common::mh::{mobility_header_checksum, ChecksumContext};
use pmip_node::pcap::PcapWriter;

/// The pcap file, if any.
pub struct Recorder {
    writer: Option<PcapWriter>,
    /// Our UDP port (listen_v4's).
    udp_port: u16,
}

impl Recorder {
    pub fn open(path: Option<&Path>, udp_port: u16) -> Result<Recorder> {
        let writer = path
            .map(|p| {
                PcapWriter::create(p).with_context(|| format!("creating --pcap {}", p.display()))
            })
            .transpose()?;
        Ok(Recorder { writer, udp_port })
    }

    /// Records one message between `mag` and us; `inbound` says which way.
    /// An ICMPv6 message we sent, with the IPv6 header the kernel puts on it.
    pub fn record_icmp6(&mut self, from: Ipv6Addr, to: Ipv6Addr, message: &[u8]) {
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        let mut packet = pmip_common::icmp6::ipv6_header(from, to, IPPROTO_ICMPV6, message.len());
        packet.extend_from_slice(message);
        if let Err(error) = writer.write_ip(SystemTime::now(), &packet) {
            tracing::warn!(%error, "writing the pcap");
        }
    }

    pub fn record(&mut self, mag: MagAddress, bytes: &[u8], inbound: bool) {
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        let now = SystemTime::now();
        let result = match mag {
            MagAddress::Udp4 { mag, local } => {
                let local = SocketAddr::new(IpAddr::V4(local), self.udp_port);
                if inbound {
                    writer.write_udp(now, SocketAddr::V4(mag), local, bytes)
                } else {
                    writer.write_udp(now, local, SocketAddr::V4(mag), bytes)
                }
            }
            MagAddress::Ip6 { mag, local, .. } => {
                let (source, destination) = if inbound { (mag, local) } else { (local, mag) };
                // What we send leaves with a zero checksum for the kernel to fill
                // (IPV6_CHECKSUM): fill it here too, so the recording shows the wire.
                let mut copy = bytes.to_vec();
                if !inbound && copy.len() >= 6 {
                    copy[4] = 0;
                    copy[5] = 0;
                    let context = ChecksumContext::Ipv6 {
                        source,
                        destination,
                    };
                    if let Some(sum) = mobility_header_checksum(context, &copy) {
                        copy[4..6].copy_from_slice(&sum.to_be_bytes());
                    }
                }
                writer.write_ipv6_mh(now, source, destination, &copy)
            }
        };
        if let Err(error) = result {
            tracing::warn!(%error, "pcap recording stopped");
            self.writer = None;
        }
    }

    pub fn flush(&mut self) {
        if let Some(writer) = self.writer.as_mut() {
            if let Err(error) = writer.flush() {
                tracing::warn!(%error, "pcap recording stopped");
                self.writer = None;
            }
        }
    }
}
