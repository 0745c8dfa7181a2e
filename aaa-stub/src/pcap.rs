//! Records the Diameter messages the server sends and receives as a pcap: each peer
//! connection as synthetic TCP between the real endpoints ([`TcpCapture`]: the
//! handshake, one PSH|ACK segment per message with sequence numbers that follow both
//! directions, a FIN at close), so tshark and Wireshark decode it as Diameter on port
//! 3868 (or with `-d tcp.port==N,diameter`). Every record is flushed at once, so a
//! reader sees it while the server runs.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::SystemTime;

use pmip_node::pcap::{PcapWriter, TcpCapture};

/// The pcap file and the state of every connection in it.
pub struct Recorder {
    writer: PcapWriter,
    tcp: TcpCapture,
}

impl Recorder {
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(Recorder {
            writer: PcapWriter::create(path)?,
            tcp: TcpCapture::new(),
        })
    }

    /// Records the handshake of a connection from `client` to `server`.
    pub fn connect(&mut self, client: SocketAddr, server: SocketAddr) -> io::Result<()> {
        self.tcp
            .connect(&mut self.writer, SystemTime::now(), client, server)?;
        self.writer.flush()
    }

    /// Writes `message` as one TCP segment from `from` to `to`.
    pub fn record(&mut self, from: SocketAddr, to: SocketAddr, message: &[u8]) -> io::Result<()> {
        self.tcp
            .send(&mut self.writer, SystemTime::now(), from, to, message)?;
        self.writer.flush()
    }

    /// Records the close of the connection by `from`.
    pub fn close(&mut self, from: SocketAddr, to: SocketAddr) -> io::Result<()> {
        self.tcp
            .close(&mut self.writer, SystemTime::now(), from, to)?;
        self.writer.flush()
    }
}
