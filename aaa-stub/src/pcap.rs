//! Records the Diameter messages the server sends and receives as a pcap: each message
//! becomes one TCP segment (PSH|ACK) between the real endpoints, with sequence numbers
//! that advance consistently per direction, so tshark and Wireshark decode it as
//! Diameter on port 3868 (or with `-d tcp.port==N,diameter`).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::SystemTime;

use etherparse::PacketBuilder;
use pmip_common::pcap::PcapWriter;

/// The pcap file and the next sequence number of each direction of each connection.
pub struct Recorder {
    writer: PcapWriter,
    seq: HashMap<(SocketAddr, SocketAddr), u32>,
}

impl Recorder {
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(Recorder {
            writer: PcapWriter::create(path)?,
            seq: HashMap::new(),
        })
    }

    /// Writes `message` as one TCP segment from `from` to `to`.
    pub fn record(&mut self, from: SocketAddr, to: SocketAddr, message: &[u8]) -> io::Result<()> {
        let seq = *self.seq.entry((from, to)).or_insert(1);
        let ack = *self.seq.entry((to, from)).or_insert(1);
        let builder = match (from, to) {
            (SocketAddr::V4(a), SocketAddr::V4(b)) => {
                PacketBuilder::ipv4(a.ip().octets(), b.ip().octets(), 64)
            }
            (SocketAddr::V6(a), SocketAddr::V6(b)) => {
                PacketBuilder::ipv6(a.ip().octets(), b.ip().octets(), 64)
            }
            _ => return Ok(()),
        };
        let builder = builder
            .tcp(from.port(), to.port(), seq, 65535)
            .ack(ack)
            .psh();
        let mut packet = Vec::with_capacity(builder.size(message.len()));
        builder
            .write(&mut packet, message)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        self.writer.write_ip(SystemTime::now(), &packet)?;
        self.writer.flush()?;
        let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
        self.seq.insert((from, to), seq.wrapping_add(len));
        Ok(())
    }
}
