//! The real `lma` with an SGi TUN device in its own network namespace, joined to the
//! test (the MAG, in the root namespace) by a veth pair. The test registers a binding
//! over UDP 5436, sends GRE (uplink key) + ICMP echo from the home address to the TUN's
//! own address and gets the echo reply back in GRE with its downlink key; an echo with
//! a forged inner source is dropped and counted in the LMA's data plane log line. Also:
//! ICMPv6 echo from the home network prefix inside the IPv4 tunnel, an echo from the
//! PDN side (a raw ICMP socket made inside the namespace) reaching the MAG in GRE, and a
//! 1500-octet DF packet answered with fragmentation-needed (inner MTU 1472), and a
//! 1500-octet IPv6 packet with Packet Too Big from the configured ICMPv6 source; a
//! 1500-octet IPv4 packet without DF arrives whole (outer GRE packet fragmented and
//! reassembled by the kernels).
//! Needs root; the namespace and veth are removed in `Drop`, and the test checks that
//! nothing is left.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use integration_tests::netns::{LmaProcess, Topology};
use integration_tests::{write_file, TestMag};
use pmip_common::binding_update_list::{
    Input, MagConfig, MobileNodeKey, Output, RegistrationRequest,
};
use pmip_common::mh::{GreKey, HandoffIndicator};
use pmip_common::tunnel::{decapsulate_ip, GreRepr, ProtocolType};
use pmip_node::gre::IPPROTO_GRE;
use pmip_node::socket::RawSocket;

const DOWNLINK_KEY: u32 = 0x0d0d_0001;
const TUN_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 46, 1, 1);
/// Inside ipv6_pool's /48 but far from the first prefixes handed out.
const TUN_ADDRESS_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x46, 0xffff, 0, 0, 0, 1);

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 ICMP echo request with a 32-octet payload.
fn echo_request(src: Ipv4Addr, dst: Ipv4Addr, id: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![0u8; 20 + 8 + 32];
    p[0] = 0x45;
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 1;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20] = 8;
    p[24..26].copy_from_slice(&id.to_be_bytes());
    p[26..28].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let c = checksum(&p[20..]);
    p[22..24].copy_from_slice(&c.to_be_bytes());
    p
}

/// An ICMPv6 echo request with a 32-octet payload.
fn echo_request_v6(src: Ipv6Addr, dst: Ipv6Addr, id: u16) -> Vec<u8> {
    let mut p = vec![0u8; 40 + 8 + 32];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&40u16.to_be_bytes());
    p[6] = 58;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[40] = 128;
    p[44..46].copy_from_slice(&id.to_be_bytes());
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&p[8..40]);
    pseudo.extend_from_slice(&40u32.to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(&p[40..]);
    let c = checksum(&pseudo);
    p[42..44].copy_from_slice(&c.to_be_bytes());
    p
}

fn gre_socket(local: Ipv4Addr) -> Result<RawSocket> {
    let s = RawSocket::bind(local.into(), IPPROTO_GRE).context("raw GRE socket (needs root)")?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(s)
}

fn send_gre(s: &RawSocket, to: Ipv4Addr, key: u32, inner: &[u8]) -> Result<()> {
    let mut gre = Vec::new();
    GreRepr::keyed(ProtocolType::Ipv4, key).emit_with_payload(inner, &mut gre);
    s.send_to(&gre, to.into())?;
    Ok(())
}

/// A raw ICMP socket inside the namespace `ns` (made on a thread that joins it; the
/// socket stays in the namespace it was made in).
fn icmp_socket_in(ns: &str) -> Result<RawSocket> {
    raw_socket_in(ns, false)
}

/// Sets IP_MTU_DISCOVER (2: always DF, 0: never DF).
fn set_pmtu_discovery(s: &RawSocket, value: i32) -> Result<()> {
    s.set_option(libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, value)
        .context("IP_MTU_DISCOVER")
}

/// A raw ICMP (or, with `v6`, ICMPv6) socket inside the namespace `ns`.
fn raw_socket_in(ns: &str, v6: bool) -> Result<RawSocket> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || -> Result<RawSocket> {
        use std::os::fd::AsRawFd;
        let netns = File::open(&path).with_context(|| format!("opening {path}"))?;
        // SAFETY: a valid namespace fd; only this thread changes namespace.
        let rc = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
        ensure!(rc == 0, "setns: {}", std::io::Error::last_os_error());
        let s = if v6 {
            RawSocket::unbound(Ipv6Addr::UNSPECIFIED.into(), 58)?
        } else {
            RawSocket::unbound(Ipv4Addr::UNSPECIFIED.into(), 1)?
        };
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
        if !v6 {
            set_pmtu_discovery(&s, 2)?; // IP_PMTUDISC_DO: always set DF
        }
        Ok(s)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
}

/// Waits for an IP packet on `s` (a raw ICMP socket) satisfying `pred`.
fn receive_icmp(
    s: &RawSocket,
    timeout: Duration,
    pred: impl Fn(&[u8]) -> bool,
) -> Result<Option<Vec<u8>>> {
    let deadline = Instant::now() + timeout;
    let mut buffer = vec![0u8; 65_536];
    while Instant::now() < deadline {
        let Some((len, _)) = s.recv_timeout(&mut buffer).context("receiving ICMP")? else {
            continue;
        };
        if pred(&buffer[..len]) {
            return Ok(Some(buffer[..len].to_vec()));
        }
    }
    Ok(None)
}

/// An ICMP echo (request or reply, `kind` 8 or 0) without the IP header.
fn echo_message(kind: u8, id: u16, payload: usize) -> Vec<u8> {
    let mut m = vec![0u8; 8 + payload];
    m[0] = kind;
    m[4..6].copy_from_slice(&id.to_be_bytes());
    let c = checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// Waits for a GRE packet from `from` whose inner packet satisfies `pred`; returns
/// (key, inner).
fn receive_gre_inner(
    s: &RawSocket,
    from: Ipv4Addr,
    timeout: Duration,
    pred: impl Fn(&[u8]) -> bool,
) -> Result<Option<(u32, Vec<u8>)>> {
    let deadline = Instant::now() + timeout;
    let mut buffer = vec![0u8; 65_536];
    while Instant::now() < deadline {
        let Some((len, _)) = s.recv_timeout(&mut buffer).context("receiving GRE")? else {
            continue;
        };
        let Ok(d) = decapsulate_ip(&buffer[..len]) else {
            continue;
        };
        if d.outer_source == Some(from.into()) && pred(d.inner) {
            return Ok(Some((d.key, d.inner.to_vec())));
        }
    }
    Ok(None)
}

/// Waits for a GRE packet from `from` whose inner packet is an echo reply with `id`;
/// returns (key, inner).
fn receive_echo_reply(
    s: &RawSocket,
    from: Ipv4Addr,
    id: u16,
    timeout: Duration,
) -> Result<Option<(u32, Vec<u8>)>> {
    receive_echo(s, from, 0, id, timeout)
}

/// Waits for a GRE packet from `from` whose inner packet is an ICMP echo of `kind`
/// with `id`; returns (key, inner).
fn receive_echo(
    s: &RawSocket,
    from: Ipv4Addr,
    kind: u8,
    id: u16,
    timeout: Duration,
) -> Result<Option<(u32, Vec<u8>)>> {
    receive_gre_inner(s, from, timeout, |p| {
        p.len() >= 28
            && p[0] >> 4 == 4
            && p[9] == 1
            && p[20] == kind
            && p[24..26] == id.to_be_bytes()
    })
}

#[test]
fn gre_echo_through_the_sgi_tun_and_forged_source_dropped() -> Result<()> {
    let topology = Topology::new("lmadp", 0)?;
    let dir = tempfile::tempdir()?;
    let tun = format!("sgi{}0", std::process::id());
    let config = format!(
        "listen_v4 = \"{lma}:5436\"\nipv4_pool = \"10.46.0.0/24\"\n\
         ipv6_pool = \"2001:db8:46::/48\"\nallowed_mags = [\"{mag}\"]\n\
         [sgi]\ntun_name = \"{tun}\"\nipv4 = \"{TUN_ADDRESS}/16\"\nmtu = 1500\n\
         icmp_source_v4 = \"10.46.255.254\"\n\
         ipv6 = \"{TUN_ADDRESS_V6}/48\"\nicmp_source_v6 = \"2001:db8:46:fffe::1\"\n",
        lma = topology.lma,
        mag = topology.mag,
    );
    let config = write_file(dir.path(), "lma.toml", &config)?;
    let lma = LmaProcess::start(&topology.ns, &config, dir.path().join("lma.log"))?;
    lma.wait_for("lma listening", Duration::from_secs(30))?;

    let lma_addr = SocketAddr::from((topology.lma, 5436));
    let mut mag = TestMag::new(SocketAddr::from((topology.mag, 0)), MagConfig::default())?;
    mag.input(Input::Register(RegistrationRequest {
        key: MobileNodeKey::new(
            "001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org",
            Some("internet"),
        ),
        lma: lma_addr,
        request_home_network_prefix: true,
        request_ipv4_home_address: true,
        downlink_gre_key: Some(GreKey(DOWNLINK_KEY)),
        handoff: HandoffIndicator::AttachmentOverNewInterface,
        vendor: Vec::new(),
    }))?;
    mag.run_until(Duration::from_secs(10), |e| {
        e.iter()
            .any(|o| matches!(o, Output::Registered { .. } | Output::Failed { .. }))
    })?;
    let registration = mag
        .events
        .iter()
        .find_map(|o| match o {
            Output::Registered { registration, .. } => Some(registration.clone()),
            _ => None,
        })
        .with_context(|| format!("registration failed: {:?}", mag.events))?;
    let hoa = registration
        .ipv4_home_address
        .context("no IPv4 home address")?
        .addr();
    let uplink = registration.uplink_gre_key.context("no uplink key")?.0;

    let gre = gre_socket(topology.mag)?;
    // The LMA learns the binding as it answers: retry the first echo a few times.
    let mut reply = None;
    for seq in 0..5 {
        send_gre(
            &gre,
            topology.lma,
            uplink,
            &echo_request(hoa, TUN_ADDRESS, 0x4242, seq),
        )?;
        reply = receive_echo_reply(&gre, topology.lma, 0x4242, Duration::from_secs(1))?;
        if reply.is_some() {
            break;
        }
    }
    let (key, inner) =
        reply.with_context(|| format!("no echo reply in GRE; lma log:\n{}", lma.output()))?;
    assert_eq!(
        key, DOWNLINK_KEY,
        "the reply carries the MAG's downlink key"
    );
    assert_eq!(&inner[12..16], &TUN_ADDRESS.octets());
    assert_eq!(&inner[16..20], &hoa.octets());

    // A forged inner source: dropped, counted, no reply.
    let forged = Ipv4Addr::new(10, 99, 0, 1);
    send_gre(
        &gre,
        topology.lma,
        uplink,
        &echo_request(forged, TUN_ADDRESS, 0x4343, 0),
    )?;
    assert_eq!(
        receive_echo_reply(&gre, topology.lma, 0x4343, Duration::from_secs(1))?,
        None,
        "a forged source must not get through"
    );
    lma.wait_for("spoofed_source: 1,", Duration::from_secs(5))?;
    assert!(
        lma.output().contains("uplink_forwarded: "),
        "{}",
        lma.output()
    );

    // IPv6 inside the IPv4 GRE tunnel: an echo from the home network prefix to the
    // TUN's IPv6 address comes back with the downlink key.
    let prefix = registration
        .home_network_prefix
        .context("no home network prefix")?;
    let ue6 = Ipv6Addr::from(u128::from(prefix.network()) | 1);
    let mut reply6 = None;
    for _ in 0..5 {
        let mut gre6 = Vec::new();
        GreRepr::keyed(ProtocolType::Ipv6, uplink)
            .emit_with_payload(&echo_request_v6(ue6, TUN_ADDRESS_V6, 0x6666), &mut gre6);
        gre.send_to(&gre6, topology.lma.into())?;
        reply6 = receive_gre_inner(&gre, topology.lma, Duration::from_secs(1), |p| {
            p.len() >= 48
                && p[0] >> 4 == 6
                && p[6] == 58
                && p[40] == 129
                && p[44..46] == [0x66, 0x66]
        })?;
        if reply6.is_some() {
            break;
        }
    }
    let (key, inner) = reply6
        .with_context(|| format!("no ICMPv6 echo reply in GRE; lma log:\n{}", lma.output()))?;
    assert_eq!(key, DOWNLINK_KEY);
    assert_eq!(&inner[24..40], &ue6.octets());

    // From the PDN side (the LMA's namespace): an echo to the home address leaves
    // through the TUN and reaches the MAG in GRE with the downlink key.
    let pdn = icmp_socket_in(&topology.ns)?;
    let to_hoa = IpAddr::V4(hoa);
    pdn.send_to(&echo_message(8, 0x5151, 32), to_hoa)?;
    let (key, inner) = receive_echo(&gre, topology.lma, 8, 0x5151, Duration::from_secs(3))?
        .with_context(|| format!("PDN echo not tunnelled; lma log:\n{}", lma.output()))?;
    assert_eq!(key, DOWNLINK_KEY);
    assert_eq!(&inner[12..16], &TUN_ADDRESS.octets());

    // Too big without DF (before the DF test below teaches the kernel the smaller
    // path MTU): tunnelled whole, the outer packet fragmented on the veth and
    // reassembled by this host before the raw socket sees it.
    set_pmtu_discovery(&pdn, 0)?;
    pdn.send_to(&echo_message(8, 0x5454, 1500 - 28), to_hoa)?;
    let (key, inner) = receive_echo(&gre, topology.lma, 8, 0x5454, Duration::from_secs(3))?
        .with_context(|| format!("big non-DF echo not tunnelled; lma log:\n{}", lma.output()))?;
    assert_eq!(key, DOWNLINK_KEY);
    assert_eq!(inner.len(), 1500);
    lma.wait_for("too_big_outer_fragmented: 1", Duration::from_secs(5))?;

    // Too big for the tunnel (1500 - 20 - 8 = 1472 fits, 1500 does not), DF set: the
    // sender gets ICMP fragmentation-needed with the tunnel's inner MTU.
    set_pmtu_discovery(&pdn, 2)?;
    pdn.send_to(&echo_message(8, 0x5252, 1500 - 28), to_hoa)?;
    let icmp = receive_icmp(&pdn, Duration::from_secs(3), |p| {
        p.len() >= 28 && p[9] == 1 && p[20] == 3 && p[21] == 4
    })?
    .with_context(|| format!("no fragmentation-needed; lma log:\n{}", lma.output()))?;
    assert_eq!(u16::from_be_bytes([icmp[26], icmp[27]]), 1472);
    assert_eq!(
        &icmp[12..16],
        &[10, 46, 255, 254],
        "from the configured ICMP source"
    );
    lma.wait_for("too_big_icmp_sent: 1,", Duration::from_secs(5))?;

    // The same for IPv6: Packet Too Big from the configured ICMPv6 source. (A raw
    // ICMPv6 socket gets the ICMPv6 message without the IPv6 header.)
    let pdn6 = raw_socket_in(&topology.ns, true)?;
    let mut big6 = vec![0u8; 1500 - 40];
    big6[0] = 128; // echo request; the kernel fills the checksum
    big6[4..6].copy_from_slice(&[0x53, 0x53]);
    pdn6.send_to(&big6, ue6.into())?;
    let mut buffer = vec![0u8; 65_536];
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut ptb = None;
    while Instant::now() < deadline && ptb.is_none() {
        let Ok((len, from)) = pdn6.recv_from(&mut buffer) else {
            continue;
        };
        let bytes = &buffer[..len];
        if bytes.len() >= 8 && bytes[0] == 2 {
            ptb = Some((Some(from), bytes.to_vec()));
        }
    }
    let (from, ptb) =
        ptb.with_context(|| format!("no Packet Too Big; lma log:\n{}", lma.output()))?;
    assert_eq!(u32::from_be_bytes([ptb[4], ptb[5], ptb[6], ptb[7]]), 1472);
    let source: Ipv6Addr = "2001:db8:46:fffe::1".parse()?;
    assert_eq!(from, Some(source.into()));
    lma.wait_for("too_big_icmp_sent: 2,", Duration::from_secs(5))?;

    // Tear-down leaves nothing behind.
    let ns = topology.ns.clone();
    let veth = topology.veth.clone();
    drop(lma);
    drop(topology);
    let list = Command::new("ip").args(["netns", "list"]).output()?;
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains(&ns),
        "namespace {ns} left behind"
    );
    let link = Command::new("ip").args(["link", "show", &veth]).output()?;
    assert!(!link.status.success(), "veth {veth} left behind");
    let tun_left = Command::new("ip").args(["link", "show", &tun]).output()?;
    assert!(!tun_left.status.success(), "TUN {tun} left behind");
    Ok(())
}

/// GRE over IPv6: the binding registered with the Mobility Header over IPv6 (raw
/// socket), then an ICMP echo in GRE over IPv6 to the TUN's address and back.
#[test]
fn gre_over_ipv6_transport() -> Result<()> {
    let topology = Topology::new("lmadp", 1)?;
    let dir = tempfile::tempdir()?;
    let tun = format!("sgi{}1", std::process::id());
    let config = format!(
        "listen_v6 = \"{lma6}\"\nipv4_pool = \"10.46.0.0/24\"\n\
         ipv6_pool = \"2001:db8:46::/48\"\nallowed_mags = [\"{mag6}\"]\n\
         [sgi]\ntun_name = \"{tun}\"\nipv4 = \"{TUN_ADDRESS}/16\"\n",
        lma6 = topology.lma6,
        mag6 = topology.mag6,
    );
    let config = write_file(dir.path(), "lma.toml", &config)?;
    let lma = LmaProcess::start(&topology.ns, &config, dir.path().join("lma.log"))?;
    lma.wait_for("lma listening", Duration::from_secs(30))?;

    let mut mag = TestMag::new(SocketAddr::from((topology.mag6, 0)), MagConfig::default())?;
    mag.input(Input::Register(RegistrationRequest {
        key: MobileNodeKey::new(
            "001010000000002@nai.epc.mnc001.mcc001.3gppnetwork.org",
            Some("internet"),
        ),
        lma: SocketAddr::from((topology.lma6, 0)),
        request_home_network_prefix: true,
        request_ipv4_home_address: true,
        downlink_gre_key: Some(GreKey(DOWNLINK_KEY)),
        handoff: HandoffIndicator::AttachmentOverNewInterface,
        vendor: Vec::new(),
    }))?;
    mag.run_until(Duration::from_secs(10), |e| {
        e.iter()
            .any(|o| matches!(o, Output::Registered { .. } | Output::Failed { .. }))
    })?;
    let registration = mag
        .events
        .iter()
        .find_map(|o| match o {
            Output::Registered { registration, .. } => Some(registration.clone()),
            _ => None,
        })
        .with_context(|| format!("registration failed: {:?}", mag.events))?;
    let hoa = registration
        .ipv4_home_address
        .context("no IPv4 home address")?
        .addr();
    let uplink = registration.uplink_gre_key.context("no uplink key")?.0;

    let gre = RawSocket::bind(topology.mag6.into(), IPPROTO_GRE)
        .context("raw IPv6 GRE socket (needs root)")?;
    gre.set_read_timeout(Some(Duration::from_millis(200)))?;
    let to = IpAddr::V6(topology.lma6);
    let mut buffer = vec![0u8; 65_536];
    let mut got = None;
    'attempts: for seq in 0..5 {
        let mut packet = Vec::new();
        GreRepr::keyed(ProtocolType::Ipv4, uplink)
            .emit_with_payload(&echo_request(hoa, TUN_ADDRESS, 0x7777, seq), &mut packet);
        gre.send_to(&packet, to)?;
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            let Ok((len, from)) = gre.recv_from(&mut buffer) else {
                continue;
            };
            let Ok(d) = pmip_common::tunnel::decapsulate_gre(&buffer[..len]) else {
                continue;
            };
            let i = d.inner;
            if from == IpAddr::V6(topology.lma6)
                && i.len() >= 28
                && i[9] == 1
                && i[20] == 0
                && i[24..26] == [0x77, 0x77]
            {
                got = Some((d.key, i.to_vec()));
                break 'attempts;
            }
        }
    }
    let (key, inner) =
        got.with_context(|| format!("no echo reply over GRE/IPv6; lma log:\n{}", lma.output()))?;
    assert_eq!(key, DOWNLINK_KEY);
    assert_eq!(&inner[16..20], &hoa.octets());
    Ok(())
}
