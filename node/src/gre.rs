//! Raw GRE sockets (IP protocol 47, RFC 2784 / RFC 2890) for the S2b tunnel, one per
//! local address, over IPv4 or IPv6. Whatever the family, a receive gives the same thing:
//! the GRE header and payload, and the sender's address. An IPv4 raw socket delivers the
//! outer IPv4 header too; it is validated here (version, header length, total length,
//! protocol 47, not a fragment) and stripped, its source reported. An IPv6 raw socket
//! never shows the IPv6 header; the sender comes from the socket address. On send the
//! kernel writes the outer header from the bound address.
//!
//! [`GreSockets`] waits on several sockets of one family at once (a gateway with a second
//! address toward its home gateways has two IPv4 ones), so that a driver has one receive
//! per address family whatever the number of addresses.

use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::task::Poll;

use etherparse::{IpNumber, Ipv4Slice};

use crate::socket::{AsyncRawSocket, RawSocket};

/// IP protocol number of GRE.
pub const IPPROTO_GRE: u8 = 47;

/// Why a received packet was not handed on.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The outer IPv4 header the kernel delivered does not hold a whole GRE packet.
    #[error("outer IPv4 header: {0}")]
    OuterHeader(String),
}

/// Takes the outer IPv4 header off a packet from a raw IPv4 socket: its source and the
/// GRE packet it carries.
pub fn strip_outer_ipv4(packet: &[u8]) -> Result<(Ipv4Addr, &[u8]), ReceiveError> {
    let ip = Ipv4Slice::from_slice(packet).map_err(|e| ReceiveError::OuterHeader(e.to_string()))?;
    if ip.payload_ip_number() != IpNumber::GRE {
        return Err(ReceiveError::OuterHeader(format!(
            "protocol {}, not GRE",
            ip.payload_ip_number().0
        )));
    }
    if ip.is_payload_fragmented() {
        return Err(ReceiveError::OuterHeader("a fragment".into()));
    }
    Ok((ip.header().source_addr(), ip.payload().payload))
}

/// One raw GRE socket bound to one local address, driven by tokio.
#[derive(Debug)]
pub struct GreSocket {
    socket: AsyncRawSocket,
}

impl GreSocket {
    /// Opens and binds the socket (needs root or CAP_NET_RAW; call inside the runtime).
    pub fn bind(local: IpAddr) -> io::Result<GreSocket> {
        Ok(GreSocket {
            socket: RawSocket::bind(local, IPPROTO_GRE)?.into_async()?,
        })
    }

    /// The address bound: the outer source of what this socket sends.
    pub fn local(&self) -> IpAddr {
        self.socket.local()
    }

    /// The sender and the GRE packet of `len` octets just read into `buffer`.
    fn unwrap<'a>(
        &self,
        buffer: &'a [u8],
        len: usize,
        from: IpAddr,
    ) -> Result<(IpAddr, &'a [u8]), ReceiveError> {
        let packet = &buffer[..len.min(buffer.len())];
        match self.local() {
            IpAddr::V4(_) => strip_outer_ipv4(packet).map(|(from, gre)| (IpAddr::V4(from), gre)),
            IpAddr::V6(_) => Ok((from, packet)),
        }
    }

    /// Receives one GRE packet: its sender and the GRE header and payload.
    pub async fn recv<'a>(&self, buffer: &'a mut [u8]) -> Result<(IpAddr, &'a [u8]), ReceiveError> {
        let (len, from) = self.socket.recv_from(buffer).await?;
        self.unwrap(buffer, len, from)
    }

    /// Receives one GRE packet if one is waiting (`None` when none is): drains a burst
    /// without going back to the event loop for each packet.
    pub fn try_recv<'a>(
        &self,
        buffer: &'a mut [u8],
    ) -> Option<Result<(IpAddr, &'a [u8]), ReceiveError>> {
        match self.socket.try_recv_from(buffer) {
            Ok(Some((len, from))) => Some(self.unwrap(buffer, len, from)),
            Ok(None) => None,
            Err(e) => Some(Err(e.into())),
        }
    }

    /// Sends a GRE packet (header and payload) to `to`.
    pub async fn send_to(&self, gre: &[u8], to: IpAddr) -> io::Result<()> {
        self.socket.send_to(gre, to).await.map(|_| ())
    }
}

/// The GRE sockets of one address family, one per local address, received as one.
#[derive(Debug, Default)]
pub struct GreSockets {
    sockets: Vec<GreSocket>,
    /// The socket polled first next time, so that a busy one cannot starve the others.
    next: std::cell::Cell<usize>,
}

impl GreSockets {
    /// Opens one socket per address in `locals` (duplicates opened once).
    pub fn bind(locals: &[IpAddr]) -> io::Result<GreSockets> {
        let mut sockets: Vec<GreSocket> = Vec::new();
        for &local in locals {
            if !sockets.iter().any(|s| s.local() == local) {
                sockets.push(GreSocket::bind(local).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "opening a raw GRE socket on {local} (needs root or CAP_NET_RAW): {e}"
                        ),
                    )
                })?);
            }
        }
        Ok(GreSockets {
            sockets,
            next: Default::default(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// The addresses bound.
    pub fn locals(&self) -> Vec<IpAddr> {
        self.sockets.iter().map(GreSocket::local).collect()
    }

    /// The socket bound to `local`.
    pub fn get(&self, local: IpAddr) -> Option<&GreSocket> {
        self.sockets.iter().find(|s| s.local() == local)
    }

    /// The socket bound to `local`, or else the first one.
    pub fn get_or_first(&self, local: IpAddr) -> Option<&GreSocket> {
        self.get(local).or(self.sockets.first())
    }

    /// Receives one GRE packet from whichever socket has one: the index of that socket,
    /// the sender and the GRE packet. Pends for ever without sockets.
    pub async fn recv<'a>(
        &self,
        buffer: &'a mut [u8],
    ) -> (usize, Result<(IpAddr, &'a [u8]), ReceiveError>) {
        let count = self.sockets.len();
        let (index, received) = poll_fn(|cx| {
            let start = self.next.get();
            for i in 0..count {
                let index = (start + i) % count;
                if let Poll::Ready(received) = self.sockets[index].socket.poll_recv_from(cx, buffer)
                {
                    self.next.set((index + 1) % count);
                    return Poll::Ready((index, received));
                }
            }
            Poll::Pending
        })
        .await;
        let unwrapped = match received {
            Ok((len, from)) => self.sockets[index].unwrap(buffer, len, from),
            Err(e) => Err(e.into()),
        };
        (index, unwrapped)
    }

    /// [`GreSocket::try_recv`] on the `index`th socket.
    pub fn try_recv<'a>(
        &self,
        index: usize,
        buffer: &'a mut [u8],
    ) -> Option<Result<(IpAddr, &'a [u8]), ReceiveError>> {
        self.sockets.get(index)?.try_recv(buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_gre(source: [u8; 4], gre: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        etherparse::PacketBuilder::ipv4(source, [192, 0, 2, 2], 64)
            .write(&mut out, IpNumber::GRE, gre)
            .unwrap();
        out
    }

    #[test]
    fn the_outer_ipv4_header_is_checked_and_stripped() {
        let gre = [0x20, 0, 0x08, 0, 0, 0, 0, 7, 0x45];
        let packet = ipv4_gre([192, 0, 2, 1], &gre);
        let (from, inner) = strip_outer_ipv4(&packet).unwrap();
        assert_eq!((from, inner), (Ipv4Addr::new(192, 0, 2, 1), &gre[..]));
        // Truncated, not IPv4, another protocol, a fragment: refused, no panic.
        assert!(strip_outer_ipv4(&packet[..packet.len() - 1]).is_err());
        assert!(strip_outer_ipv4(&packet[..10]).is_err());
        assert!(strip_outer_ipv4(&[0x60; 40]).is_err());
        let mut udp = packet.clone();
        udp[9] = 17;
        assert!(strip_outer_ipv4(&udp).is_err());
        let mut fragment = packet;
        fragment[6] = 0x20; // more fragments
        assert!(strip_outer_ipv4(&fragment).is_err());
        for len in 0..24 {
            let _ = strip_outer_ipv4(&vec![0x45; len]);
        }
    }

    #[tokio::test]
    async fn ipv4_and_ipv6_sockets_report_the_sender_and_the_gre_packet() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: raw sockets need root");
            return;
        }
        let key = std::process::id().to_be_bytes();
        let gre = [0x20, 0, 0x08, 0, key[0], key[1], key[2], key[3], 0x45, 0];
        for (a, b) in [("127.0.0.1", "127.0.0.1"), ("::1", "::1")] {
            let a: IpAddr = a.parse().unwrap();
            let b: IpAddr = b.parse().unwrap();
            let receiver = GreSockets::bind(&[b, b]).unwrap();
            assert_eq!(receiver.locals(), vec![b]);
            let sender = GreSocket::bind(a).unwrap();
            sender.send_to(&gre, b).await.unwrap();
            let mut buffer = vec![0u8; 65_536];
            loop {
                let (index, received) = tokio::time::timeout(
                    std::time::Duration::from_secs(2),
                    receiver.recv(&mut buffer),
                )
                .await
                .expect("no GRE packet");
                let (from, packet) = received.unwrap();
                if packet == gre {
                    assert_eq!((index, from), (0, a));
                    break;
                }
            }
        }
    }
}
