//! The Linux kernel as an independent computer of the IPv6 Mobility Header checksum
//! (RFC 6275 section 6.1.1): a raw socket with `IPV6_CHECKSUM` set has the kernel fill
//! the checksum of every message it sends. We send messages with a zero checksum that
//! way, receive them on a plain raw socket, and require the kernel's checksum to equal
//! the one our codec computes for the same addresses. Needs root.

use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pmip_common::mh::*;
use pmip_node::socket::RawSocket;

/// A raw Mobility Header socket on ::1; with `kernel_checksum` the kernel fills the
/// checksum of what it sends (`IPV6_CHECKSUM`), without it bytes go and arrive as they are.
fn raw_mh_socket(kernel_checksum: bool) -> Result<RawSocket> {
    RawSocket::mobility_header(Ipv6Addr::LOCALHOST, kernel_checksum)
        .context("opening a raw Mobility Header socket (this test needs root)")
}

/// Heartbeats received within `wait`: sequence number and the bytes as they arrived.
fn received(socket: &RawSocket, wait: Duration) -> Result<Vec<(u32, Vec<u8>)>> {
    let deadline = Instant::now() + wait;
    let mut seen = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(seen);
        }
        socket.set_read_timeout(Some(left))?;
        let Some((n, _)) = socket.recv_timeout(&mut buf)? else {
            return Ok(seen);
        };
        let bytes = buf[..n].to_vec();
        if let Ok(MobilityHeaderRepr {
            message: MobilityMessage::Heartbeat(hb),
            ..
        }) = MobilityHeaderRepr::parse(&bytes, ChecksumContext::Skip)
        {
            seen.push((hb.sequence, bytes));
        }
    }
}

fn heartbeat(sequence: u32, options: Vec<MobilityOption>) -> MobilityHeaderRepr {
    MobilityHeaderRepr {
        payload_proto: IPPROTO_NONE,
        message: MobilityMessage::Heartbeat(HeartbeatRepr {
            unsolicited: false,
            response: false,
            sequence,
            options,
        }),
    }
}

#[test]
fn kernel_computes_the_same_ipv6_checksums_as_our_codec() -> Result<()> {
    let receiver = raw_mh_socket(false)?; // bytes arrive as they were sent
    let sender = raw_mh_socket(true)?; // the kernel fills the checksum field on send
    let context = ChecksumContext::Ipv6 {
        source: Ipv6Addr::LOCALHOST,
        destination: Ipv6Addr::LOCALHOST,
    };
    let to = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let base = 0x5213_0000 + std::process::id() % 0x1000 * 16;

    // Odd-length option data and several padding cases, so every path of the sum runs.
    let samples = [
        heartbeat(base + 1, Vec::new()),
        heartbeat(
            base + 2,
            vec![MobilityOption::MobileNodeIdentifier(
                MobileNodeIdentifier::Nai(
                    "0001011234567890@nai.epc.mnc001.mcc001.3gppnetwork.org".into(),
                ),
            )],
        ),
        heartbeat(
            base + 3,
            vec![
                MobilityOption::RestartCounter(7),
                MobilityOption::ServiceSelection("ims".into()),
                MobilityOption::Timestamp(Timestamp(0xe000_0000_8000_0000)),
                MobilityOption::GreKey(GreKey(0xffff_fffe)),
            ],
        ),
    ];
    for message in &samples {
        sender.send_to(&message.to_bytes(ChecksumContext::Skip), to)?;
    }

    let seen = received(&receiver, Duration::from_millis(500))?;
    for (i, message) in samples.iter().enumerate() {
        let sequence = base + 1 + i as u32;
        let (_, arrived) = seen
            .iter()
            .find(|(s, _)| *s == sequence)
            .with_context(|| format!("message {sequence:#x} never arrived"))?;
        let ours = message.to_bytes(context);
        assert_ne!(&arrived[4..6], &[0, 0], "the kernel filled no checksum");
        assert_eq!(
            arrived[4..6],
            ours[4..6],
            "message {i}: kernel checksum vs ours"
        );
        assert_eq!(arrived, &ours, "message {i}: the bytes differ elsewhere");
        assert!(verify_checksum(context, arrived));
    }
    Ok(())
}
