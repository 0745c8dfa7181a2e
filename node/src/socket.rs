//! The sockets every node opens, each written once: UDP with a sized receive buffer, the
//! raw IPv6 Mobility Header socket (next header 135, the kernel filling and checking the
//! checksum, RFC 6275 section 6.1.1), and raw IP sockets of any other protocol (GRE in
//! [`crate::gre`], ICMP in tests); blocking for threads and tests, async for tokio
//! drivers.
//!
//! **Receiving without `unsafe`.** socket2 receives into `&mut [MaybeUninit<u8>]`, which
//! leaves each caller an `unsafe` block to read what arrived. Here a raw socket, set up
//! with socket2, is converted (safely, through `OwnedFd`) into a `std::net::UdpSocket`,
//! or tokio's for async use, and used only for `recv_from` / `send_to` and socket
//! options. Those are plain `recvfrom(2)` / `sendto(2)` on the descriptor: nothing in them
//! is UDP-specific, a raw socket keeps datagram boundaries like UDP, and the source
//! `sockaddr_in` / `sockaddr_in6` the kernel fills for a raw socket (port 0) parses like a
//! UDP one. A destination port of 0 on a raw IPv6 socket means "the socket's protocol"
//! to the kernel (`rawv6_sendmsg`); an IPv4 raw socket ignores it. [`RawSocket`] and
//! [`AsyncRawSocket`] keep the conversion out of sight: callers see IP addresses, never
//! ports. The one `unsafe` left is in [`set_int_option`]: one `setsockopt(2)` of an
//! `int`, for the two options socket2 does not offer (`SO_RCVBUFFORCE`, `IPV6_CHECKSUM`).

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};
use tokio::io::ReadBuf;

/// The Mobility Header checksum's offset in the message (RFC 6275 section 6.1.1), which
/// `IPV6_CHECKSUM` gives the kernel.
pub const MH_CHECKSUM_OFFSET: i32 = 4;

/// Sets an `int` socket option socket2 does not offer.
pub fn set_int_option(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a valid descriptor (borrowed for the call) and a pointer to an int that
    // lives across the call, with its exact size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the receive buffer to `bytes` (`SO_RCVBUF`), and past `net.core.rmem_max` when
/// that fell short and the process may (`SO_RCVBUFFORCE`, CAP_NET_ADMIN). Best effort:
/// without the privilege the buffer stays what `SO_RCVBUF` got.
pub fn set_receive_buffer(socket: &(impl AsFd + AsRawFd), bytes: usize) {
    let sock = SockRef::from(socket);
    let _ = sock.set_recv_buffer_size(bytes);
    if sock.recv_buffer_size().is_ok_and(|got| got >= bytes) {
        return;
    }
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let _ = set_int_option(socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, value);
}

fn domain_of(address: IpAddr) -> Domain {
    match address {
        IpAddr::V4(_) => Domain::IPV4,
        IpAddr::V6(_) => Domain::IPV6,
    }
}

/// A blocking UDP socket bound to `local`, with a receive buffer of `receive_buffer`
/// octets when given.
pub fn udp(local: SocketAddr, receive_buffer: Option<usize>) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(domain_of(local.ip()), Type::DGRAM, Some(Protocol::UDP))?;
    if let Some(bytes) = receive_buffer {
        set_receive_buffer(&socket, bytes);
    }
    socket.bind(&SockAddr::from(local))?;
    Ok(socket.into())
}

/// [`udp`] for a tokio driver (call inside the runtime).
pub fn udp_async(
    local: SocketAddr,
    receive_buffer: Option<usize>,
) -> io::Result<tokio::net::UdpSocket> {
    let socket = udp(local, receive_buffer)?;
    socket.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(socket)
}

/// A raw IP socket (`SOCK_RAW`) for one protocol, blocking: each read is one packet. An
/// IPv4 raw socket delivers the IPv4 header with the payload, an IPv6 one the payload
/// alone; on send the kernel writes the IP header either way, from the bound address.
#[derive(Debug)]
pub struct RawSocket {
    /// A `SOCK_RAW` descriptor used only through `recvfrom`/`sendto` (module doc).
    socket: std::net::UdpSocket,
    local: IpAddr,
}

impl RawSocket {
    /// A raw socket for IP protocol (IPv6 next header) `protocol`, bound to `local`
    /// (needs root or CAP_NET_RAW).
    pub fn bind(local: IpAddr, protocol: u8) -> io::Result<RawSocket> {
        let socket = Self::socket(local, protocol)?;
        socket.bind(&SockAddr::from(SocketAddr::new(local, 0)))?;
        Ok(RawSocket {
            socket: OwnedFd::from(socket).into(),
            local,
        })
    }

    /// A raw socket for `protocol` of `local`'s family, not bound to an address: it
    /// receives every packet of that protocol the host receives.
    pub fn unbound(local: IpAddr, protocol: u8) -> io::Result<RawSocket> {
        let socket = Self::socket(local, protocol)?;
        let unspecified = match local {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        Ok(RawSocket {
            socket: OwnedFd::from(socket).into(),
            local: unspecified,
        })
    }

    fn socket(local: IpAddr, protocol: u8) -> io::Result<Socket> {
        Socket::new(
            domain_of(local),
            Type::RAW,
            Some(Protocol::from(i32::from(protocol))),
        )
    }

    /// The raw IPv6 Mobility Header socket (next header 135) at `local`. With
    /// `kernel_checksum` the kernel fills the checksum of every message sent and drops
    /// received messages whose checksum is wrong (`IPV6_CHECKSUM` at offset 4, RFC 6275
    /// section 6.1.1): senders leave the field zero and receivers need not check it.
    pub fn mobility_header(local: Ipv6Addr, kernel_checksum: bool) -> io::Result<RawSocket> {
        let socket = Self::bind(IpAddr::V6(local), pmip_common::mh::IPPROTO_MH)?;
        if kernel_checksum {
            set_int_option(
                &socket.socket,
                libc::IPPROTO_RAW,
                libc::IPV6_CHECKSUM,
                MH_CHECKSUM_OFFSET,
            )?;
        }
        Ok(socket)
    }

    /// The address bound (unspecified for [`RawSocket::unbound`]).
    pub fn local(&self) -> IpAddr {
        self.local
    }

    /// See [`set_receive_buffer`].
    pub fn set_receive_buffer(&self, bytes: usize) {
        set_receive_buffer(&self.socket, bytes);
    }

    /// How long [`RawSocket::recv_from`] waits (`None`: for ever); a zero duration is
    /// taken as one millisecond.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket
            .set_read_timeout(timeout.map(|t| t.max(Duration::from_millis(1))))
    }

    /// Sets an `int` option (for what this type has no method for, e.g.
    /// `IP_MTU_DISCOVER`).
    pub fn set_option(&self, level: libc::c_int, name: libc::c_int, value: i32) -> io::Result<()> {
        set_int_option(&self.socket, level, name, value)
    }

    /// Receives one packet: its length in `buffer` and its source address. A packet
    /// longer than `buffer` is cut to it. Waiting past the read timeout is an error of
    /// kind `WouldBlock` or `TimedOut`.
    pub fn recv_from(&self, buffer: &mut [u8]) -> io::Result<(usize, IpAddr)> {
        let (len, from) = self.socket.recv_from(buffer)?;
        Ok((len, from.ip()))
    }

    /// Like [`RawSocket::recv_from`], `None` when the read timeout passed first.
    pub fn recv_timeout(&self, buffer: &mut [u8]) -> io::Result<Option<(usize, IpAddr)>> {
        match self.recv_from(buffer) {
            Ok(got) => Ok(Some(got)),
            Err(e) if is_timeout(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends one packet (the payload after the IP header) to `to`.
    pub fn send_to(&self, bytes: &[u8], to: IpAddr) -> io::Result<usize> {
        self.socket.send_to(bytes, SocketAddr::new(to, 0))
    }

    /// The socket for a tokio driver (call inside the runtime).
    pub fn into_async(self) -> io::Result<AsyncRawSocket> {
        self.socket.set_nonblocking(true)?;
        Ok(AsyncRawSocket {
            socket: tokio::net::UdpSocket::from_std(self.socket)?,
            local: self.local,
        })
    }
}

/// Whether a receive error only says that the read timeout passed.
pub fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A [`RawSocket`] driven by tokio.
#[derive(Debug)]
pub struct AsyncRawSocket {
    /// A `SOCK_RAW` descriptor used only through `recvfrom`/`sendto` (module doc).
    socket: tokio::net::UdpSocket,
    local: IpAddr,
}

impl AsyncRawSocket {
    /// The address bound.
    pub fn local(&self) -> IpAddr {
        self.local
    }

    /// Receives one packet: its length in `buffer` and its source address.
    pub async fn recv_from(&self, buffer: &mut [u8]) -> io::Result<(usize, IpAddr)> {
        let (len, from) = self.socket.recv_from(buffer).await?;
        Ok((len, from.ip()))
    }

    /// Receives one packet if one is waiting: `Ok(None)` when none is.
    pub fn try_recv_from(&self, buffer: &mut [u8]) -> io::Result<Option<(usize, IpAddr)>> {
        match self.socket.try_recv_from(buffer) {
            Ok((len, from)) => Ok(Some((len, from.ip()))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Polls for one packet (for a driver that waits on several sockets at once).
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buffer: &mut [u8],
    ) -> Poll<io::Result<(usize, IpAddr)>> {
        let mut read = ReadBuf::new(buffer);
        match self.socket.poll_recv_from(cx, &mut read) {
            Poll::Ready(Ok(from)) => Poll::Ready(Ok((read.filled().len(), from.ip()))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Sends one packet (the payload after the IP header) to `to`.
    pub async fn send_to(&self, bytes: &[u8], to: IpAddr) -> io::Result<usize> {
        self.socket.send_to(bytes, SocketAddr::new(to, 0)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn privileged() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn udp_binds_and_carries_a_datagram() {
        let a = udp("127.0.0.1:0".parse().unwrap(), Some(1 << 20)).unwrap();
        let b = udp("127.0.0.1:0".parse().unwrap(), None).unwrap();
        b.send_to(b"pbu", a.local_addr().unwrap()).unwrap();
        let mut buffer = [0u8; 16];
        a.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let (len, from) = a.recv_from(&mut buffer).unwrap();
        assert_eq!(
            (&buffer[..len], from),
            (&b"pbu"[..], b.local_addr().unwrap())
        );
    }

    #[test]
    fn a_raw_mobility_header_socket_has_the_kernel_fill_the_checksum() {
        if !privileged() {
            eprintln!("skipped: raw sockets need root");
            return;
        }
        let receiver = RawSocket::mobility_header(Ipv6Addr::LOCALHOST, false).unwrap();
        let sender = RawSocket::mobility_header(Ipv6Addr::LOCALHOST, true).unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        // A Heartbeat (type 16) with an odd marker in its sequence number, checksum zero.
        let marker = std::process::id().to_be_bytes();
        let mut message = [59u8, 1, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        message[8..12].copy_from_slice(&marker);
        sender
            .send_to(&message, IpAddr::V6(Ipv6Addr::LOCALHOST))
            .unwrap();
        let mut buffer = [0u8; 2048];
        loop {
            let (len, from) = receiver
                .recv_timeout(&mut buffer)
                .unwrap()
                .expect("no heartbeat");
            if len == message.len() && buffer[8..12] == marker {
                assert_eq!(from, IpAddr::V6(Ipv6Addr::LOCALHOST));
                let checksum = u16::from_be_bytes([buffer[4], buffer[5]]);
                assert_ne!(checksum, 0, "the kernel filled the checksum");
                let context = pmip_common::mh::ChecksumContext::Ipv6 {
                    source: Ipv6Addr::LOCALHOST,
                    destination: Ipv6Addr::LOCALHOST,
                };
                buffer[4] = 0;
                buffer[5] = 0;
                assert_eq!(
                    pmip_common::mh::mobility_header_checksum(context, &buffer[..len]),
                    Some(checksum)
                );
                return;
            }
        }
    }
}
