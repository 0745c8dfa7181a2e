//! Pcap writing: every node's optional `--pcap FILE` records the signaling it sends and
//! receives as raw IP packets, so any run opens in Wireshark or tshark.
//!
//! The file is the classic libpcap format (microsecond timestamps, the writer's byte
//! order, which every reader accepts) with link type `LINKTYPE_RAW` (101): each record is
//! one IPv4 or IPv6 packet, its version told by its first nibble. The IP and UDP headers
//! around a payload are built here (by `etherparse`) with correct lengths and checksums,
//! so an independent decoder raises no checksum or length complaint about our framing.
//! The Mobility Header's own checksum is the caller's (the codec computes it). A TCP
//! connection's messages (Diameter) are recorded as synthetic segments by [`tcp`].

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use etherparse::{IpHeaders, IpNumber, PacketBuilder, PacketBuilderStep};

pub mod tcp;
pub use tcp::TcpCapture;

/// `LINKTYPE_RAW`: each record starts with an IPv4 or IPv6 header.
pub const LINKTYPE_RAW: u32 = 101;
/// Magic number of a pcap file with microsecond timestamps.
const PCAP_MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// The largest record we write: the largest IP packet without jumbograms.
pub const MAX_PACKET_LEN: usize = 65_535;
/// Hop limit / TTL of the packets we build.
const HOP_LIMIT: u8 = 64;

/// Writes packets to a pcap file, building the IP (and UDP) headers around payloads.
///
/// Writes are buffered: call [`PcapWriter::flush`] to make what was written visible to a
/// reader (dropping the writer flushes too, but cannot report an error).
#[derive(Debug)]
pub struct PcapWriter {
    out: BufWriter<File>,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// The IPv4 or IPv6 header from `source` to `destination` (one family) of a packet
/// carrying `what`.
fn ip_builder(
    source: IpAddr,
    destination: IpAddr,
    what: &str,
) -> io::Result<PacketBuilderStep<IpHeaders>> {
    match (source, destination) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            Ok(PacketBuilder::ipv4(s.octets(), d.octets(), HOP_LIMIT))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            Ok(PacketBuilder::ipv6(s.octets(), d.octets(), HOP_LIMIT))
        }
        _ => Err(invalid(format!(
            "{what} between addresses of two families: {source} -> {destination}"
        ))),
    }
}

impl PcapWriter {
    /// Creates (truncates) the file, mode 0600 ([`crate::secret_file`]: a capture may
    /// hold the MSK and EAP keys), and writes the pcap global header.
    pub fn create(path: &Path) -> io::Result<Self> {
        let mut out = BufWriter::new(crate::secret_file::create(path)?);
        let mut header = [0u8; 24];
        header[0..4].copy_from_slice(&PCAP_MAGIC_MICROS.to_ne_bytes());
        header[4..6].copy_from_slice(&2u16.to_ne_bytes()); // version major
        header[6..8].copy_from_slice(&4u16.to_ne_bytes()); // version minor
                                                           // thiszone (8..12) and sigfigs (12..16) stay zero.
        let snaplen = MAX_PACKET_LEN as u32;
        header[16..20].copy_from_slice(&snaplen.to_ne_bytes());
        header[20..24].copy_from_slice(&LINKTYPE_RAW.to_ne_bytes());
        out.write_all(&header)?;
        Ok(PcapWriter { out })
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
        let builder = PacketBuilder::ipv6(source.octets(), destination.octets(), HOP_LIMIT);
        let mut packet = Vec::with_capacity(builder.size(mh.len()));
        builder
            .write(&mut packet, IpNumber(pmip_common::mh::IPPROTO_MH), mh)
            .map_err(|e| invalid(format!("cannot frame the Mobility Header in IPv6: {e}")))?;
        self.write_ip(time, &packet)
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
        let builder = ip_builder(source.ip(), destination.ip(), "UDP")?
            .udp(source.port(), destination.port());
        let mut packet = Vec::with_capacity(builder.size(payload.len()));
        builder
            .write(&mut packet, payload)
            .map_err(|e| invalid(format!("cannot frame the UDP datagram: {e}")))?;
        self.write_ip(time, &packet)
    }

    /// A whole IP packet as it is.
    pub fn write_ip(&mut self, time: SystemTime, packet: &[u8]) -> io::Result<()> {
        if packet.len() > MAX_PACKET_LEN {
            return Err(invalid(format!(
                "a {}-octet packet is longer than the pcap snap length {MAX_PACKET_LEN}",
                packet.len()
            )));
        }
        let since_epoch = time
            .duration_since(UNIX_EPOCH)
            .map_err(|_| invalid("packet time before 1970".to_string()))?;
        let seconds = u32::try_from(since_epoch.as_secs())
            .map_err(|_| invalid("packet time after 2106".to_string()))?;
        let len = packet.len() as u32; // at most MAX_PACKET_LEN, checked above
        let mut record = [0u8; 16];
        record[0..4].copy_from_slice(&seconds.to_ne_bytes());
        record[4..8].copy_from_slice(&since_epoch.subsec_micros().to_ne_bytes());
        record[8..12].copy_from_slice(&len.to_ne_bytes()); // captured length
        record[12..16].copy_from_slice(&len.to_ne_bytes()); // original length
        self.out.write_all(&record)?;
        self.out.write_all(packet)
    }

    /// Writes everything buffered to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// One record read back: seconds, microseconds, the packet.
    pub(super) type Record = (u32, u32, Vec<u8>);

    /// Reads a pcap file with the independent `pcap-file` reader.
    pub(super) fn read_back(path: &Path) -> (pcap_file::pcap::PcapHeader, Vec<Record>) {
        let file = File::open(path).unwrap();
        let mut reader = pcap_file::pcap::PcapReader::new(file).unwrap();
        let header = reader.header();
        let mut records = Vec::new();
        while let Some(packet) = reader.next_packet() {
            let packet = packet.unwrap();
            assert_eq!(packet.orig_len as usize, packet.data.len());
            records.push((
                packet.timestamp.as_secs() as u32,
                packet.timestamp.subsec_micros(),
                packet.data.into_owned(),
            ));
        }
        (header, records)
    }

    /// RFC 1071 sum, folded, computed here rather than by etherparse.
    fn ones_complement_sum(parts: &[&[u8]]) -> u16 {
        let mut sum = 0u32;
        for part in parts {
            let mut chunks = part.chunks_exact(2);
            for pair in &mut chunks {
                sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
            }
            if let [last] = chunks.remainder() {
                sum += u32::from(*last) << 8;
            }
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    fn at(secs: u64, micros: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, micros * 1000)
    }

    #[test]
    fn global_header_is_raw_ip_with_microseconds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pcap");
        let mut writer = PcapWriter::create(&path).unwrap();
        writer.flush().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 24);
        assert_eq!(
            u32::from_ne_bytes(bytes[0..4].try_into().unwrap()),
            0xa1b2c3d4
        );
        assert_eq!(u32::from_ne_bytes(bytes[20..24].try_into().unwrap()), 101);
        let (header, records) = read_back(&path);
        assert_eq!(header.version_major, 2);
        assert_eq!(header.version_minor, 4);
        assert_eq!(header.datalink, pcap_file::DataLink::RAW);
        assert_eq!(header.ts_resolution, pcap_file::TsResolution::MicroSecond);
        assert!(records.is_empty());
    }

    #[test]
    fn ipv4_udp_has_correct_lengths_and_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("udp4.pcap");
        let mut writer = PcapWriter::create(&path).unwrap();
        let source: SocketAddr = "192.0.2.1:5436".parse().unwrap();
        let destination: SocketAddr = "198.51.100.7:5436".parse().unwrap();
        // Odd length, to exercise the checksum's trailing octet.
        let payload: Vec<u8> = (0u8..37).collect();
        writer
            .write_udp(at(1_700_000_000, 123_456), source, destination, &payload)
            .unwrap();
        writer.flush().unwrap();

        let (_, records) = read_back(&path);
        assert_eq!(records.len(), 1);
        let (secs, micros, packet) = &records[0];
        assert_eq!((*secs, *micros), (1_700_000_000, 123_456));
        assert_eq!(packet.len(), 20 + 8 + payload.len());
        // IPv4 header: version 4, IHL 5, total length, protocol 17, addresses.
        assert_eq!(packet[0], 0x45);
        assert_eq!(
            u16::from_be_bytes([packet[2], packet[3]]) as usize,
            packet.len()
        );
        assert_eq!(packet[9], 17);
        assert_eq!(&packet[12..16], &[192, 0, 2, 1]);
        assert_eq!(&packet[16..20], &[198, 51, 100, 7]);
        assert_eq!(
            ones_complement_sum(&[&packet[..20]]),
            0xffff,
            "IPv4 header checksum"
        );
        // UDP header and checksum over the IPv4 pseudo-header.
        let udp = &packet[20..];
        assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), 5436);
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 5436);
        assert_eq!(u16::from_be_bytes([udp[4], udp[5]]) as usize, udp.len());
        assert_ne!(
            u16::from_be_bytes([udp[6], udp[7]]),
            0,
            "UDP checksum present"
        );
        let udp_len = (udp.len() as u16).to_be_bytes();
        let pseudo = [&packet[12..20], &[0, 17], &udp_len[..], udp];
        assert_eq!(ones_complement_sum(&pseudo), 0xffff, "UDP checksum");
        assert_eq!(&udp[8..], &payload[..]);
    }

    #[test]
    fn ipv6_udp_has_correct_lengths_and_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("udp6.pcap");
        let mut writer = PcapWriter::create(&path).unwrap();
        let source: SocketAddr = "[2001:db8::1]:500".parse().unwrap();
        let destination: SocketAddr = "[2001:db8::2]:4500".parse().unwrap();
        let payload = b"ike".to_vec();
        writer
            .write_udp(at(1, 0), source, destination, &payload)
            .unwrap();
        writer.flush().unwrap();
        let (_, records) = read_back(&path);
        let packet = &records[0].2;
        assert_eq!(packet[0] >> 4, 6);
        assert_eq!(
            u16::from_be_bytes([packet[4], packet[5]]) as usize,
            8 + payload.len()
        );
        assert_eq!(packet[6], 17);
        let udp = &packet[40..];
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 4500);
        let udp_len = (udp.len() as u32).to_be_bytes();
        let pseudo = [&packet[8..40], &udp_len[..], &[0, 0, 0, 17], udp];
        assert_eq!(ones_complement_sum(&pseudo), 0xffff, "UDP checksum");
    }

    #[test]
    fn ipv6_mobility_header_is_carried_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mh6.pcap");
        let mut writer = PcapWriter::create(&path).unwrap();
        let source: Ipv6Addr = "2001:db8::a".parse().unwrap();
        let destination: Ipv6Addr = "2001:db8::b".parse().unwrap();
        let mh = [59u8, 1, 13, 0, 0xab, 0xcd, 0, 1, 0, 0, 0, 7, 1, 2, 0, 0];
        writer
            .write_ipv6_mh(at(2, 999_999), source, destination, &mh)
            .unwrap();
        writer
            .write_ipv6_mh(at(3, 0), destination, source, &mh)
            .unwrap();
        writer.flush().unwrap();
        let (_, records) = read_back(&path);
        assert_eq!(records.len(), 2);
        let (secs, micros, packet) = &records[0];
        assert_eq!((*secs, *micros), (2, 999_999));
        assert_eq!(packet.len(), 40 + mh.len());
        assert_eq!(packet[0] >> 4, 6);
        assert_eq!(
            u16::from_be_bytes([packet[4], packet[5]]) as usize,
            mh.len()
        );
        assert_eq!(packet[6], 135, "next header: Mobility Header");
        assert_eq!(packet[7], HOP_LIMIT);
        assert_eq!(&packet[8..24], &source.octets());
        assert_eq!(&packet[24..40], &destination.octets());
        assert_eq!(
            &packet[40..],
            &mh[..],
            "the checksum field is left as given"
        );
        assert_eq!(&records[1].2[8..24], &destination.octets());
    }

    #[test]
    fn write_ip_keeps_the_packet_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raw.pcap");
        let mut writer = PcapWriter::create(&path).unwrap();
        let packet = [
            0x45u8, 0, 0, 20, 0, 0, 0, 0, 64, 47, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        writer.write_ip(at(5, 5), &packet).unwrap();
        writer.write_ip(at(6, 6), &[]).unwrap();
        writer.flush().unwrap();
        let (_, records) = read_back(&path);
        assert_eq!(records[0], (5, 5, packet.to_vec()));
        assert_eq!(records[1], (6, 6, Vec::new()));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.pcap");
        let mut writer = PcapWriter::create(&path).unwrap();
        let v4: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        let err = writer.write_udp(at(1, 0), v4, v6, b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = writer
            .write_udp(at(1, 0), v4, v4, &vec![0; MAX_PACKET_LEN])
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = writer
            .write_ipv6_mh(
                at(1, 0),
                Ipv6Addr::LOCALHOST,
                Ipv6Addr::LOCALHOST,
                &vec![0; 70_000],
            )
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = writer
            .write_ip(UNIX_EPOCH - Duration::from_secs(1), &[0x45])
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = writer
            .write_ip(UNIX_EPOCH + Duration::from_secs(1 << 33), &[0x45])
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        // Nothing half-written: the file still holds only its header.
        writer.flush().unwrap();
        let (_, records) = read_back(&path);
        assert!(records.is_empty());
    }

    #[test]
    fn create_in_a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/x.pcap");
        assert!(PcapWriter::create(&path).is_err());
    }
}
