//! Synthetic TCP for the pcap: a node records the messages of a TCP connection (Diameter,
//! RFC 6733 section 2.1) as segments between the real endpoints, so that Wireshark and
//! tshark follow the stream and decode it. The kernel's own segments are not seen, so
//! they are made up, consistently: a three-way handshake (RFC 9293 section 3.5) when a
//! connection is first recorded, then one PSH|ACK segment per message whose sequence
//! number advances by the message length in its direction and whose acknowledgement
//! number is what the other direction has sent, and a FIN|ACK at close. Both directions
//! of the first connection recorded start from initial sequence number 0 (its first data
//! octet is number 1); each later connection from another one, spread over the sequence
//! space, so that a client reusing its port for a new connection (it may, once the
//! server closed the last one) shows as a new stream, not a retransmission of the last.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::SystemTime;

use super::{ip_builder, PcapWriter};

/// The window advertised in every segment.
const WINDOW: u16 = 65_535;

/// The next sequence number of each direction of one connection.
#[derive(Debug, Clone, Copy)]
struct Connection {
    client: SocketAddr,
    /// Next sequence number from the client, from the server.
    next: [u32; 2],
}

/// What a segment carries besides data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flags {
    Syn,
    SynAck,
    Ack,
    PshAck,
    FinAck,
}

/// The sequence state of every recorded connection; segments go to a [`PcapWriter`]
/// the caller owns (it may hold other traffic too).
#[derive(Debug, Default)]
pub struct TcpCapture {
    connections: HashMap<(SocketAddr, SocketAddr), Connection>,
    /// Connections recorded so far: picks the next initial sequence number.
    recorded: u32,
}

/// The initial sequence number of the `n`-th connection recorded: 0 for the first, then
/// spread by the golden ratio's multiplier (distinct for 2^32 connections).
fn initial_sequence(n: u32) -> u32 {
    n.wrapping_mul(0x9e37_79b9)
}

/// The key of a connection whatever the direction.
fn key(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

impl TcpCapture {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the handshake of a connection from `client` to `server` (once: a
    /// connection already recorded is left alone).
    pub fn connect(
        &mut self,
        pcap: &mut PcapWriter,
        time: SystemTime,
        client: SocketAddr,
        server: SocketAddr,
    ) -> io::Result<()> {
        let k = key(client, server);
        if self.connections.contains_key(&k) {
            return Ok(());
        }
        let isn = initial_sequence(self.recorded);
        self.recorded = self.recorded.wrapping_add(1);
        let mut c = Connection {
            client,
            next: [isn, isn],
        };
        write(pcap, time, &mut c, client, server, Flags::Syn, &[])?;
        write(pcap, time, &mut c, server, client, Flags::SynAck, &[])?;
        write(pcap, time, &mut c, client, server, Flags::Ack, &[])?;
        self.connections.insert(k, c);
        Ok(())
    }

    /// Records `payload` sent from `from` to `to`. A connection not seen before gets its
    /// handshake first, with `from` as the client.
    pub fn send(
        &mut self,
        pcap: &mut PcapWriter,
        time: SystemTime,
        from: SocketAddr,
        to: SocketAddr,
        payload: &[u8],
    ) -> io::Result<()> {
        self.connect(pcap, time, from, to)?;
        let Some(c) = self.connections.get_mut(&key(from, to)) else {
            return Ok(());
        };
        write(pcap, time, c, from, to, Flags::PshAck, payload)
    }

    /// Records the close of the connection by `from` (FIN|ACK) and forgets it.
    pub fn close(
        &mut self,
        pcap: &mut PcapWriter,
        time: SystemTime,
        from: SocketAddr,
        to: SocketAddr,
    ) -> io::Result<()> {
        match self.connections.remove(&key(from, to)) {
            Some(mut c) => write(pcap, time, &mut c, from, to, Flags::FinAck, &[]),
            None => Ok(()),
        }
    }
}

/// Builds one segment from `from` to `to`, writes it and advances the sequence number.
fn write(
    pcap: &mut PcapWriter,
    time: SystemTime,
    c: &mut Connection,
    from: SocketAddr,
    to: SocketAddr,
    flags: Flags,
    payload: &[u8],
) -> io::Result<()> {
    let (this, other) = if from == c.client { (0, 1) } else { (1, 0) };
    let mut builder =
        ip_builder(from.ip(), to.ip(), "TCP")?.tcp(from.port(), to.port(), c.next[this], WINDOW);
    if matches!(flags, Flags::Syn | Flags::SynAck) {
        builder = builder.syn();
    }
    if flags != Flags::Syn {
        builder = builder.ack(c.next[other]);
    }
    match flags {
        Flags::PshAck => builder = builder.psh(),
        Flags::FinAck => builder = builder.fin(),
        _ => {}
    }
    let mut packet = Vec::with_capacity(builder.size(payload.len()));
    builder
        .write(&mut packet, payload)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    pcap.write_ip(time, &packet)?;
    // A SYN and a FIN each take one sequence number (RFC 9293 section 3.4).
    let used = u32::try_from(payload.len()).unwrap_or(u32::MAX)
        + u32::from(matches!(flags, Flags::Syn | Flags::SynAck | Flags::FinAck));
    c.next[this] = c.next[this].wrapping_add(used);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{SlicedPacket, TransportSlice};

    /// (source port, seq, ack, SYN, ACK, PSH, FIN, payload) of each TCP record.
    type Segment = (u16, u32, u32, bool, bool, bool, bool, Vec<u8>);

    fn segments(path: &std::path::Path) -> Vec<Segment> {
        let (_, records) = crate::pcap::tests::read_back(path);
        records
            .iter()
            .map(|(_, _, packet)| {
                let sliced = SlicedPacket::from_ip(packet).unwrap();
                let Some(TransportSlice::Tcp(tcp)) = sliced.transport else {
                    panic!("not TCP");
                };
                (
                    tcp.source_port(),
                    tcp.sequence_number(),
                    tcp.acknowledgment_number(),
                    tcp.syn(),
                    tcp.ack(),
                    tcp.psh(),
                    tcp.fin(),
                    tcp.payload().to_vec(),
                )
            })
            .collect()
    }

    #[test]
    fn a_connection_is_a_handshake_then_data_both_ways_then_a_fin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("diameter.pcap");
        let mut pcap = PcapWriter::create(&path).unwrap();
        let client: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let server: SocketAddr = "192.0.2.9:3868".parse().unwrap();
        let mut tcp = TcpCapture::new();
        let t = SystemTime::now();
        tcp.connect(&mut pcap, t, client, server).unwrap();
        tcp.send(&mut pcap, t, client, server, b"CER..").unwrap();
        tcp.send(&mut pcap, t, server, client, b"CEA").unwrap();
        tcp.send(&mut pcap, t, client, server, b"DER").unwrap();
        tcp.close(&mut pcap, t, server, client).unwrap();
        pcap.flush().unwrap();
        let s = segments(&path);
        assert_eq!(
            s,
            vec![
                (40000, 0, 0, true, false, false, false, vec![]),
                (3868, 0, 1, true, true, false, false, vec![]),
                (40000, 1, 1, false, true, false, false, vec![]),
                (40000, 1, 1, false, true, true, false, b"CER..".to_vec()),
                (3868, 1, 6, false, true, true, false, b"CEA".to_vec()),
                (40000, 6, 4, false, true, true, false, b"DER".to_vec()),
                (3868, 4, 9, false, true, false, true, vec![]),
            ]
        );
    }

    #[test]
    fn a_port_reused_for_a_new_connection_starts_from_another_sequence_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reuse.pcap");
        let mut pcap = PcapWriter::create(&path).unwrap();
        let client: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let server: SocketAddr = "192.0.2.9:3868".parse().unwrap();
        let mut tcp = TcpCapture::new();
        let t = SystemTime::now();
        for _ in 0..2 {
            tcp.send(&mut pcap, t, client, server, b"CER").unwrap();
            tcp.close(&mut pcap, t, server, client).unwrap();
        }
        pcap.flush().unwrap();
        let s = segments(&path);
        let syns: Vec<u32> = s.iter().filter(|s| s.3 && !s.4).map(|s| s.1).collect();
        assert_eq!(syns.len(), 2);
        assert_ne!(syns[0], syns[1]);
        // The second stream is whole on its own: data at ISN + 1, FIN after it.
        assert_eq!(
            (s[8].1, &s[8].7[..]),
            (syns[1].wrapping_add(1), &b"CER"[..])
        );
    }

    #[test]
    fn an_unseen_connection_starts_with_the_sender_as_client_and_v6_works() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v6.pcap");
        let mut pcap = PcapWriter::create(&path).unwrap();
        let a: SocketAddr = "[2001:db8::1]:3868".parse().unwrap();
        let b: SocketAddr = "[2001:db8::2]:50000".parse().unwrap();
        let mut tcp = TcpCapture::new();
        let t = SystemTime::now();
        tcp.send(&mut pcap, t, a, b, b"x").unwrap();
        tcp.send(&mut pcap, t, b, a, b"yz").unwrap();
        let v4: SocketAddr = "192.0.2.1:1".parse().unwrap();
        assert!(tcp.send(&mut pcap, t, v4, a, b"x").is_err());
        pcap.flush().unwrap();
        let s = segments(&path);
        assert_eq!(s.len(), 5);
        assert_eq!(s[0].0, 3868);
        assert!(s[0].3 && !s[0].4);
        assert_eq!((s[3].1, s[3].2, &s[3].7[..]), (1, 1, &b"x"[..]));
        assert_eq!((s[4].1, s[4].2, &s[4].7[..]), (1, 2, &b"yz"[..]));
    }
}
