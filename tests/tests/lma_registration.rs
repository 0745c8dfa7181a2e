//! The real `lma` binary against the MAG's proxy-registration core, on loopback, over
//! both transports (IPv4 UDP 5436 and IPv6 raw Mobility Header): 1000 bindings
//! registered, refreshed, de-registered and their addresses reused, and every bad-input
//! case answered with the exact status RFC 5213, 5844 and 5845 name.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use integration_tests::{write_file, MhSocket, Node, TestMag};
use ipnet::{Ipv4Net, Ipv6Net};
use pmip_common::binding_update_list::{
    Input, MagConfig, MobileNodeKey, Output, Registration, RegistrationRequest,
};
use pmip_common::mh::*;

const IPV4_POOL: &str = "10.45.0.0/22";
const IPV6_POOL: &str = "2001:db8:45::/54";

/// Where one test's LMA listens and who it trusts.
struct Setup {
    lma_v4: SocketAddr,
    lma_v6: Option<Ipv6Addr>,
    allowed_mags: Vec<IpAddr>,
}

/// The `lma.toml` for a setup.
fn lma_config(setup: &Setup) -> String {
    let v6 = setup
        .lma_v6
        .map(|a| format!("listen_v6 = \"{a}\"\n"))
        .unwrap_or_default();
    let mags: Vec<String> = setup
        .allowed_mags
        .iter()
        .map(|m| format!("\"{m}\""))
        .collect();
    format!(
        "listen_v4 = \"{}\"\n{v6}ipv4_pool = \"{IPV4_POOL}\"\nipv6_pool = \"{IPV6_POOL}\"\n\
         max_lifetime_secs = 7200\ntimestamp_window_ms = 7000\nunauthorized_mag = \"reject\"\n\
         allowed_mags = [{}]\n",
        setup.lma_v4,
        mags.join(", ")
    )
}

fn start_lma(dir: &tempfile::TempDir, setup: &Setup) -> Result<Node> {
    start_lma_with(dir, &lma_config(setup))
}

/// Starts the `lma` binary with `config` (the text of its `lma.toml`).
fn start_lma_with(dir: &tempfile::TempDir, config: &str) -> Result<Node> {
    let path = write_file(dir.path(), "lma.toml", config)?;
    let mut lma = Node::start("lma", &["--config", path.to_str().context("path")?])?;
    lma.wait_for("lma listening", Duration::from_secs(20))?;
    Ok(lma)
}

/// An IPv6 address on the loopback device for the duration of a test (root only), so
/// MAG and LMA raw sockets each see only the packets addressed to them.
struct LoopbackAddress(Ipv6Addr);

impl LoopbackAddress {
    fn add(addr: Ipv6Addr) -> Result<Self> {
        let _ = Command::new("ip")
            .args(["-6", "addr", "del", &format!("{addr}/128"), "dev", "lo"])
            .output();
        let status = Command::new("ip")
            .args([
                "-6",
                "addr",
                "add",
                &format!("{addr}/128"),
                "dev",
                "lo",
                "nodad",
            ])
            .status()
            .context("running ip -6 addr add (needs iproute2 and root)")?;
        anyhow::ensure!(
            status.success(),
            "ip -6 addr add {addr} failed (the raw MH tests need root)"
        );
        Ok(LoopbackAddress(addr))
    }
}

impl Drop for LoopbackAddress {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["-6", "addr", "del", &format!("{}/128", self.0), "dev", "lo"])
            .output();
    }
}

fn request(n: u32, lma: SocketAddr) -> RegistrationRequest {
    RegistrationRequest {
        key: MobileNodeKey::new(
            &format!("0001010{n:08}@nai.epc.mnc001.mcc001.3gppnetwork.org"),
            Some("internet"),
        ),
        lma,
        request_home_network_prefix: true,
        request_ipv4_home_address: true,
        downlink_gre_key: Some(GreKey(0x1000_0000 + n)),
        handoff: HandoffIndicator::AttachmentOverNewInterface,
        vendor: Vec::new(),
    }
}

fn count(events: &[Output], pred: impl Fn(&Output) -> bool) -> usize {
    events.iter().filter(|e| pred(e)).count()
}

fn registrations(events: &[Output]) -> Vec<(MobileNodeKey, Registration)> {
    events
        .iter()
        .filter_map(|e| match e {
            Output::Registered { key, registration } => Some((key.clone(), registration.clone())),
            _ => None,
        })
        .collect()
}

/// Every address and key is unique and inside the pools.
fn assert_unique_and_in_pools(granted: &[(MobileNodeKey, Registration)]) {
    let v4_pool: Ipv4Net = IPV4_POOL.parse().unwrap();
    let v6_pool: Ipv6Net = IPV6_POOL.parse().unwrap();
    let mut v4 = HashSet::new();
    let mut v6 = HashSet::new();
    let mut keys = HashSet::new();
    for (key, r) in granted {
        let hoa = r
            .ipv4_home_address
            .unwrap_or_else(|| panic!("{key}: no IPv4 home address"));
        let hnp = r
            .home_network_prefix
            .unwrap_or_else(|| panic!("{key}: no home network prefix"));
        assert!(
            v4_pool.contains(&hoa.addr()),
            "{key}: {hoa} outside {v4_pool}"
        );
        assert_eq!(hnp.prefix_len(), 64, "{key}: {hnp} is not a /64");
        assert!(v6_pool.contains(&hnp), "{key}: {hnp} outside {v6_pool}");
        assert!(v4.insert(hoa.addr()), "{key}: IPv4 {hoa} given twice");
        assert!(v6.insert(hnp), "{key}: prefix {hnp} given twice");
        let gre = r
            .uplink_gre_key
            .unwrap_or_else(|| panic!("{key}: no uplink GRE key"));
        assert!(
            keys.insert(gre),
            "{key}: uplink GRE key {gre:?} given twice"
        );
    }
}

/// 1000 bindings through register, refresh, de-register, and a second 1000 that only
/// fit if the first 1000 released their addresses.
fn thousand_bindings(mag_local: SocketAddr, lma: SocketAddr) -> Result<()> {
    const N: u32 = 1000;
    let config = MagConfig {
        requested_lifetime: Lifetime::from_secs(40),
        // Refresh after 1 s instead of waiting for 80% of the lifetime.
        refresh_ratio: 0.025,
        ..MagConfig::default()
    };
    let mut mag = TestMag::new(mag_local, config)?;
    for n in 0..N {
        mag.input(Input::Register(request(n, lma)))?;
    }
    mag.run_until(Duration::from_secs(60), |e| {
        count(e, |o| {
            matches!(o, Output::Registered { .. } | Output::Failed { .. })
        }) >= N as usize
    })?;
    let failed: Vec<_> = mag
        .events
        .iter()
        .filter(|e| matches!(e, Output::Failed { .. }))
        .collect();
    assert!(
        failed.is_empty(),
        "failed registrations: {:?}",
        &failed[..failed.len().min(5)]
    );
    let first = registrations(&mag.events);
    assert_eq!(first.len(), N as usize);
    assert_unique_and_in_pools(&first);
    for (_, r) in &first {
        assert_eq!(
            r.lifetime,
            Lifetime::from_secs(40),
            "granted what was asked, under the maximum"
        );
    }

    // Refresh: the core re-registers each binding; addresses must not move.
    mag.run_until(Duration::from_secs(60), |e| {
        count(e, |o| {
            matches!(o, Output::Refreshed { .. } | Output::Lost { .. })
        }) >= N as usize
    })?;
    assert_eq!(
        count(&mag.events, |o| matches!(o, Output::Lost { .. })),
        0,
        "no binding lost on refresh"
    );
    for (key, before) in &first {
        let after = mag
            .list
            .registration(key)
            .context("refreshed binding missing")?;
        assert_eq!(
            after.ipv4_home_address, before.ipv4_home_address,
            "{key}: IPv4 moved on refresh"
        );
        assert_eq!(
            after.home_network_prefix, before.home_network_prefix,
            "{key}: prefix moved on refresh"
        );
        assert_eq!(
            after.uplink_gre_key, before.uplink_gre_key,
            "{key}: GRE key moved on refresh"
        );
    }

    // De-registration of all.
    mag.events.clear();
    for (key, _) in &first {
        mag.input(Input::Deregister(key.clone()))?;
    }
    mag.run_until(Duration::from_secs(60), |e| {
        count(e, |o| matches!(o, Output::Deregistered { .. })) >= N as usize
    })?;
    assert_eq!(
        count(&mag.events, |o| matches!(
            o,
            Output::Deregistered {
                acknowledged: true,
                ..
            }
        )),
        N as usize
    );
    assert!(mag.list.is_empty());

    // The pools hold about 1000 addresses: a second 1000 only fit if the first were released.
    mag.events.clear();
    for n in N..2 * N {
        mag.input(Input::Register(request(n, lma)))?;
    }
    mag.run_until(Duration::from_secs(60), |e| {
        count(e, |o| {
            matches!(o, Output::Registered { .. } | Output::Failed { .. })
        }) >= N as usize
    })?;
    let second = registrations(&mag.events);
    assert_eq!(
        second.len(),
        N as usize,
        "released addresses are reused: {:?}",
        mag.events
            .iter()
            .find(|e| matches!(e, Output::Failed { .. }))
    );
    assert_unique_and_in_pools(&second);
    let reused = second
        .iter()
        .filter(|(_, r)| {
            first
                .iter()
                .any(|(_, f)| f.ipv4_home_address == r.ipv4_home_address)
        })
        .count();
    assert!(
        reused > 0,
        "no address of the first 1000 was handed out again"
    );
    Ok(())
}

#[test]
fn thousand_bindings_over_ipv4_udp() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let lma_v4: SocketAddr = "127.0.45.2:5436".parse()?;
    let setup = Setup {
        lma_v4,
        lma_v6: None,
        allowed_mags: vec!["127.0.45.1".parse()?],
    };
    let _lma = start_lma(&dir, &setup)?;
    thousand_bindings("127.0.45.1:0".parse()?, lma_v4)
}

#[test]
fn thousand_bindings_over_ipv6_raw_mobility_header() -> Result<()> {
    let mag_v6: Ipv6Addr = "fd00:5213:45::1".parse()?;
    let lma_v6: Ipv6Addr = "fd00:5213:45::2".parse()?;
    let _a = LoopbackAddress::add(mag_v6)?;
    let _b = LoopbackAddress::add(lma_v6)?;
    let dir = tempfile::tempdir()?;
    let setup = Setup {
        lma_v4: "127.0.46.2:5436".parse()?,
        lma_v6: Some(lma_v6),
        allowed_mags: vec![IpAddr::V6(mag_v6)],
    };
    let _lma = start_lma(&dir, &setup)?;
    thousand_bindings(
        SocketAddr::new(IpAddr::V6(mag_v6), 0),
        SocketAddr::new(IpAddr::V6(lma_v6), 0),
    )
}

/// A valid PBU asking for everything, as a MAG would send it.
fn pbu(sequence: u16, mn: &str) -> ProxyBindingUpdate {
    ProxyBindingUpdate {
        sequence,
        flags: BuFlags(BuFlags::ACK | BuFlags::HOME_REGISTRATION | BuFlags::PROXY),
        lifetime: Lifetime::from_secs(600),
        mn_id: mn.to_string(),
        apn: Some("internet".into()),
        home_network_prefixes: vec!["::/0".parse().unwrap()],
        handoff: HandoffIndicator::AttachmentOverNewInterface,
        access_technology: AccessTechnologyType::Ieee80211,
        timestamp: Some(Timestamp::from_system_time(SystemTime::now())),
        link_local_address: None,
        link_layer_id: None,
        gre_key: Some(GreKey(77)),
        ipv4_home_address_request: Some("0.0.0.0/0".parse().unwrap()),
        ipv4_care_of_address: None,
        restart_counter: None,
        vendor: Vec::new(),
        other: Vec::new(),
    }
}

fn message(bu: BindingUpdateRepr) -> MobilityHeaderRepr {
    MobilityHeaderRepr {
        payload_proto: IPPROTO_NONE,
        message: MobilityMessage::BindingUpdate(bu),
    }
}

/// Sends a BU and returns the PBA, failing when anything else (or nothing) comes back.
fn ack(socket: &MhSocket, lma: SocketAddr, bu: BindingUpdateRepr) -> Result<BindingAckRepr> {
    match socket.exchange(lma, &message(bu), Duration::from_secs(3))? {
        Some(MobilityHeaderRepr {
            message: MobilityMessage::BindingAck(ba),
            ..
        }) => Ok(ba),
        other => anyhow::bail!("expected a PBA, got {other:?}"),
    }
}

fn status_of(
    socket: &MhSocket,
    lma: SocketAddr,
    bu: BindingUpdateRepr,
) -> Result<BindingAckStatus> {
    Ok(ack(socket, lma, bu)?.status)
}

fn without(mut bu: BindingUpdateRepr, drop: impl Fn(&MobilityOption) -> bool) -> BindingUpdateRepr {
    bu.options.retain(|o| !drop(o));
    bu
}

/// Every bad-input case of the LMA's checks over one transport, each with its exact answer.
fn bad_inputs(socket: &MhSocket, lma: SocketAddr, lma_node: &mut Node) -> Result<()> {
    let good = |seq: u16, mn: &str| pbu(seq, mn).to_binding_update();

    // Missing mandatory options (RFC 5213 section 5.3.1, 8.9).
    let missing = [
        (
            "MN-ID",
            BindingAckStatus::MissingMnIdentifierOption,
            &(|o: &MobilityOption| matches!(o, MobilityOption::MobileNodeIdentifier(_)))
                as &dyn Fn(&MobilityOption) -> bool,
        ),
        (
            "handoff",
            BindingAckStatus::MissingHandoffIndicatorOption,
            &|o: &MobilityOption| matches!(o, MobilityOption::HandoffIndicator(_)),
        ),
        (
            "ATT",
            BindingAckStatus::MissingAccessTechTypeOption,
            &|o: &MobilityOption| matches!(o, MobilityOption::AccessTechnologyType(_)),
        ),
        (
            "HNP and IPv4 HoA request",
            BindingAckStatus::MissingHomeNetworkPrefixOption,
            &|o: &MobilityOption| {
                matches!(
                    o,
                    MobilityOption::HomeNetworkPrefix(_)
                        | MobilityOption::Ipv4HomeAddressRequest(_)
                )
            },
        ),
    ];
    for (i, (what, status, drop)) in missing.iter().enumerate() {
        let got = status_of(
            socket,
            lma,
            without(good(100 + i as u16, &format!("missing{i}@test")), drop),
        )?;
        assert_eq!(got, *status, "PBU without {what}");
    }

    // An MN-ID the LMA cannot identify a mobile node by (RFC 5213 5.3.1 steps 4 and 7):
    // zero-length is a missing one (160, answered with a zero-length identifier), a
    // malformed NAI is NOT_LMA_FOR_THIS_MOBILE_NODE (153). Nothing is bound for either.
    let with_nai = |seq: u16, nai: &str| {
        let mut bu = good(seq, "placeholder@test");
        for o in &mut bu.options {
            if let MobilityOption::MobileNodeIdentifier(id) = o {
                *id = MobileNodeIdentifier::Nai(nai.to_string());
            }
        }
        bu
    };
    let empty = ack(socket, lma, with_nai(105, ""))?;
    assert_eq!(empty.status, BindingAckStatus::MissingMnIdentifierOption);
    assert!(
        empty.options.iter().any(|o| matches!(
            o,
            MobilityOption::MobileNodeIdentifier(MobileNodeIdentifier::Nai(n)) if n.is_empty()
        )),
        "zero-length MN-ID in the answer: {empty:?}"
    );
    let long = format!("{}@test", "9".repeat(250));
    for (i, bad) in ["no-at-sign", "two@at@test", "us\u{1}er@test", long.as_str()]
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            status_of(socket, lma, with_nai(106 + i as u16, bad))?,
            BindingAckStatus::NotLmaForThisMobileNode,
            "MN-ID {bad:?}"
        );
    }

    // GRE key required (RFC 5845 section 3.3 / TS 29.275): no GRE key option.
    let got = status_of(
        socket,
        lma,
        without(good(110, "nogre@test"), |o| {
            matches!(o, MobilityOption::GreKey(_))
        }),
    )?;
    assert_eq!(
        got,
        BindingAckStatus::GreKeyOptionRequired,
        "PBU without GRE key"
    );

    // Timestamp far from the LMA's clock (RFC 5213 section 5.5): TIMESTAMP_MISMATCH.
    let mut old = pbu(120, "oldclock@test");
    old.timestamp = Some(Timestamp::from_system_time(
        SystemTime::now() - Duration::from_secs(3600),
    ));
    assert_eq!(
        status_of(socket, lma, old.to_binding_update())?,
        BindingAckStatus::TimestampMismatch
    );

    // A timestamp older than the last accepted one for the binding.
    let first = pbu(121, "replay@test");
    let first_ack = ack(socket, lma, first.to_binding_update())?;
    assert_eq!(first_ack.status, BindingAckStatus::Accepted);
    let granted = ProxyBindingAck::try_from(&first_ack)?;
    let mut replay = first.clone();
    replay.sequence = 122;
    replay.home_network_prefixes = granted.home_network_prefixes.clone();
    replay.timestamp = Some(Timestamp(
        first.timestamp.map(|t| t.0).unwrap_or(0) - Timestamp::ONE_SECOND,
    ));
    replay.handoff = HandoffIndicator::HandoffStateNotChanged;
    assert_eq!(
        status_of(socket, lma, replay.to_binding_update())?,
        BindingAckStatus::TimestampLowerThanPrevAccepted
    );

    // Re-registration with a prefix the binding does not hold (RFC 5213 5.3.2):
    // BCE_PBU_PREFIX_SET_DO_NOT_MATCH, and the binding keeps its prefix.
    let mut wrong_prefix = first.clone();
    wrong_prefix.sequence = 123;
    wrong_prefix.timestamp = Some(Timestamp::from_system_time(SystemTime::now()));
    wrong_prefix.home_network_prefixes = vec!["2001:db8:ffff:1::/64".parse()?];
    wrong_prefix.handoff = HandoffIndicator::HandoffStateNotChanged;
    assert_eq!(
        status_of(socket, lma, wrong_prefix.to_binding_update())?,
        BindingAckStatus::BcePbuPrefixSetDoNotMatch
    );
    let mut refresh = first.clone();
    refresh.sequence = 124;
    refresh.timestamp = Some(Timestamp::from_system_time(SystemTime::now()));
    refresh.home_network_prefixes = granted.home_network_prefixes.clone();
    refresh.ipv4_home_address_request = granted.ipv4_home_address_reply.map(|(_, a)| a);
    refresh.handoff = HandoffIndicator::HandoffStateNotChanged;
    let refreshed = ProxyBindingAck::try_from(&ack(socket, lma, refresh.to_binding_update())?)?;
    assert_eq!(refreshed.status, BindingAckStatus::Accepted);
    assert_eq!(
        refreshed.home_network_prefixes,
        granted.home_network_prefixes
    );
    assert_eq!(
        refreshed.ipv4_home_address_reply,
        granted.ipv4_home_address_reply
    );

    // Unknown MH type: Binding Error, status 2 (RFC 6275 section 9.2). The checksum is
    // computed after the type is changed, as a sender of that type would (over IPv4 it is
    // zero, RFC 5844 section 4.2.2.1; over raw IPv6 the kernel fills it).
    let unknown = {
        let mut bytes = message(good(130, "x@test")).to_bytes(ChecksumContext::Skip);
        bytes[2] = 200; // MH Type
        if let Some(sum) = mobility_header_checksum(checksum_for(socket, lma)?, &bytes) {
            bytes[4..6].copy_from_slice(&sum.to_be_bytes());
        }
        bytes
    };
    let reply = send_raw(socket, lma, unknown)?;
    match reply {
        Some(MobilityHeaderRepr {
            message: MobilityMessage::BindingError(be),
            ..
        }) => {
            assert_eq!(be.status, BindingErrorStatus::UnrecognizedMhType)
        }
        other => anyhow::bail!("unknown MH type: expected a Binding Error, got {other:?}"),
    }

    // RFC 6275 section 9.2: a Payload Proto other than 59 and a Header Len short of the
    // type's fixed part are discarded; over IPv6 the MAG gets an ICMPv6 Parameter
    // Problem, Code 0, pointing at the field (40 octets of IPv6 header counted).
    let icmp = match socket.local_addr()?.ip() {
        IpAddr::V6(mag) => {
            let icmp = pmip_node::socket::RawSocket::bind(IpAddr::V6(mag), 58)?;
            icmp.set_read_timeout(Some(Duration::from_secs(3)))?;
            Some(icmp)
        }
        IpAddr::V4(_) => None,
    };
    let mut tcp = message(good(150, "proto@test")).to_bytes(checksum_for(socket, lma)?);
    tcp[0] = 6;
    let short = vec![IPPROTO_NONE, 0, 5, 0, 0, 0, 0, 0];
    for (bytes, pointer) in [(tcp, 40u32), (short, 41)] {
        assert!(
            send_raw(socket, lma, bytes.clone())?.is_none(),
            "discarded, no Mobility Header answer (pointer {pointer})"
        );
        let Some(icmp) = icmp.as_ref() else { continue };
        let mut buffer = [0u8; 1500];
        let (len, from) = loop {
            let (len, from) = icmp
                .recv_timeout(&mut buffer)?
                .context("no ICMPv6 Parameter Problem from the LMA")?;
            // Other ICMPv6 traffic on the link (neighbour discovery) is not ours.
            if buffer[0] == 4 {
                break (len, from);
            }
        };
        assert_eq!(from, lma.ip(), "from the LMA");
        assert_eq!(buffer[1], 0, "Code 0: erroneous header field");
        assert_eq!(u32::from_be_bytes(buffer[4..8].try_into()?), pointer);
        assert_eq!(
            buffer[8 + 6],
            IPPROTO_MH,
            "the quoted IPv6 header names the MH"
        );
        // Quoted whole, with the checksum the sending kernel filled in (IPV6_CHECKSUM).
        let mut quoted = buffer[8 + 40..len].to_vec();
        quoted[4..6].fill(0);
        assert_eq!(quoted, bytes, "the message quoted whole");
    }

    // Truncated messages: dropped, no answer, LMA alive.
    let full = message(good(140, "trunc@test")).to_bytes(ChecksumContext::Skip);
    assert!(
        send_raw(socket, lma, full[..full.len() / 2].to_vec())?.is_none(),
        "truncated PBU must be dropped"
    );
    // Over UDP 5436 the Mobility Header checksum is zero and a receiver ignores it (RFC
    // 5844 sections 4.2.2.1 and 4.1.3.1): a PBU with zero and one with a random value
    // are both accepted, and the PBA carries zero.
    if lma.is_ipv4() {
        for (n, field) in [[0u8, 0], rand::random::<[u8; 2]>()]
            .into_iter()
            .enumerate()
        {
            let mn = format!("cksum{n}@test");
            let mut bytes = message(good(141, &mn)).to_bytes(ChecksumContext::Ipv4Udp);
            assert_eq!(&bytes[4..6], &[0, 0], "sent with a zero checksum");
            bytes[4..6].copy_from_slice(&field);
            socket.send(lma, &bytes)?;
            let (_, reply) = socket
                .recv(Duration::from_secs(3))?
                .with_context(|| format!("no PBA for a PBU with checksum {field:02x?}"))?;
            assert_eq!(&reply[4..6], &[0, 0], "the PBA's checksum is zero");
            let Ok(MobilityHeaderRepr {
                message: MobilityMessage::BindingAck(ba),
                ..
            }) = MobilityHeaderRepr::parse(&reply, ChecksumContext::Ipv4Udp)
            else {
                anyhow::bail!("checksum {field:02x?}: not a PBA");
            };
            assert_eq!(
                ba.status,
                BindingAckStatus::Accepted,
                "PBU with checksum {field:02x?}"
            );
        }
    }

    // Heartbeat (RFC 5847): a response with the same sequence and a restart counter.
    let heartbeat = MobilityHeaderRepr {
        payload_proto: IPPROTO_NONE,
        message: MobilityMessage::Heartbeat(HeartbeatRepr {
            unsolicited: false,
            response: false,
            sequence: 4242,
            options: Vec::new(),
        }),
    };
    match socket.exchange(lma, &heartbeat, Duration::from_secs(3))? {
        Some(MobilityHeaderRepr {
            message: MobilityMessage::Heartbeat(hb),
            ..
        }) => {
            assert!(hb.response, "heartbeat answer has the R flag");
            assert_eq!(hb.sequence, 4242);
            assert!(
                hb.options
                    .iter()
                    .any(|o| matches!(o, MobilityOption::RestartCounter(_))),
                "restart counter: {hb:?}"
            );
        }
        other => anyhow::bail!("heartbeat: expected a response, got {other:?}"),
    }

    // Binding Revocation Indications from the MAG (RFC 5846 section 8.2): each answered
    // with an acknowledgement carrying its sequence number and the status the RFC names;
    // a revoked binding is gone (its refresh is a new registration afterwards).
    let revoked = ProxyBindingAck::try_from(&ack(socket, lma, good(145, "revoke@test"))?)?;
    let bri = |sequence: u16, trigger: u8, options: Vec<MobilityOption>| MobilityHeaderRepr {
        payload_proto: IPPROTO_NONE,
        message: MobilityMessage::BindingRevocation(BindingRevocationRepr {
            revocation_type: BindingRevocationType::Indication,
            trigger_or_status: trigger,
            sequence,
            flags: BindingRevocationRepr::PROXY,
            options,
        }),
    };
    let nai = |n: &str| MobilityOption::MobileNodeIdentifier(MobileNodeIdentifier::Nai(n.into()));
    for (sequence, trigger, options, want) in [
        (
            901u16,
            1u8,
            vec![
                nai("revoke@test"),
                MobilityOption::HomeNetworkPrefix(revoked.home_network_prefixes[0]),
            ],
            0u8,
        ),
        (902, 1, vec![nai("revoke@test")], 128),
        (903, 1, vec![], 131),
        (904, 77, vec![nai("after@test")], 133),
    ] {
        match socket.exchange(
            lma,
            &bri(sequence, trigger, options),
            Duration::from_secs(3),
        )? {
            Some(MobilityHeaderRepr {
                message: MobilityMessage::BindingRevocation(bra),
                ..
            }) => {
                assert_eq!(bra.revocation_type, BindingRevocationType::Acknowledgement);
                assert_eq!(bra.sequence, sequence);
                assert_eq!(bra.trigger_or_status, want, "BRI {sequence}: {bra:?}");
                assert_eq!(bra.flags, BindingRevocationRepr::PROXY);
            }
            other => anyhow::bail!("BRI {sequence}: expected a BRA, got {other:?}"),
        }
    }

    // Still serving after all of it.
    assert_eq!(
        status_of(socket, lma, good(150, "after@test"))?,
        BindingAckStatus::Accepted
    );
    assert!(
        !lma_node.output().contains("panicked"),
        "lma panicked:\n{}",
        lma_node.output()
    );
    Ok(())
}

fn checksum_for(socket: &MhSocket, lma: SocketAddr) -> Result<ChecksumContext> {
    Ok(match (socket.local_addr()?.ip(), lma.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => ChecksumContext::Ipv4Udp,
        _ => ChecksumContext::Skip,
    })
}

fn send_raw(
    socket: &MhSocket,
    lma: SocketAddr,
    bytes: Vec<u8>,
) -> Result<Option<MobilityHeaderRepr>> {
    socket.send(lma, &bytes)?;
    match socket.recv(Duration::from_millis(700))? {
        Some((from, reply)) => Ok(Some(MobilityHeaderRepr::parse(
            &reply,
            socket.checksum_for(from),
        )?)),
        None => Ok(None),
    }
}

#[test]
fn bad_input_answers_over_ipv4_udp() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let lma: SocketAddr = "127.0.47.2:5436".parse()?;
    let setup = Setup {
        lma_v4: lma,
        lma_v6: None,
        allowed_mags: vec!["127.0.47.1".parse()?],
    };
    let mut node = start_lma(&dir, &setup)?;
    let socket = MhSocket::bind("127.0.47.1:0".parse()?)?;
    bad_inputs(&socket, lma, &mut node)?;

    // A MAG not in the list (RFC 5213 section 5.3.1): MAG_NOT_AUTHORIZED_FOR_PROXY_REG.
    let stranger = MhSocket::bind("127.0.47.9:0".parse()?)?;
    assert_eq!(
        status_of(&stranger, lma, pbu(1, "stranger@test").to_binding_update())?,
        BindingAckStatus::MagNotAuthorizedForProxyReg
    );
    Ok(())
}

#[test]
fn bad_input_answers_over_ipv6_raw_mobility_header() -> Result<()> {
    let mag_v6: Ipv6Addr = "fd00:5213:47::1".parse()?;
    let lma_v6: Ipv6Addr = "fd00:5213:47::2".parse()?;
    let _a = LoopbackAddress::add(mag_v6)?;
    let _b = LoopbackAddress::add(lma_v6)?;
    let dir = tempfile::tempdir()?;
    let setup = Setup {
        lma_v4: "127.0.48.2:5436".parse()?,
        lma_v6: Some(lma_v6),
        allowed_mags: vec![IpAddr::V6(mag_v6)],
    };
    let mut node = start_lma(&dir, &setup)?;
    let socket = MhSocket::bind(SocketAddr::new(IpAddr::V6(mag_v6), 0))?;
    bad_inputs(&socket, SocketAddr::new(IpAddr::V6(lma_v6), 0), &mut node)
}

#[test]
fn pool_exhaustion_is_insufficient_resources() -> Result<()> {
    // A pool of a handful of addresses: the LMA must refuse cleanly once it is empty.
    let dir = tempfile::tempdir()?;
    let lma: SocketAddr = "127.0.49.2:5436".parse()?;
    let config = lma_config(&Setup {
        lma_v4: lma,
        lma_v6: None,
        allowed_mags: vec!["127.0.49.1".parse()?],
    })
    .replace(IPV4_POOL, "10.46.0.0/29")
    .replace(IPV6_POOL, "2001:db8:46::/61");
    let _node = start_lma_with(&dir, &config)?;
    let socket = MhSocket::bind("127.0.49.1:0".parse()?)?;
    let mut accepted = Vec::new();
    let mut refused = None;
    for n in 0..16u16 {
        let ba = ack(
            &socket,
            lma,
            pbu(n, &format!("pool{n}@test")).to_binding_update(),
        )?;
        if ba.status == BindingAckStatus::Accepted {
            accepted.push(ProxyBindingAck::try_from(&ba)?);
        } else {
            refused = Some(ProxyBindingAck::try_from(&ba)?);
            break;
        }
    }
    let refused = refused.context("the pools never ran out")?;
    assert!(
        !accepted.is_empty() && accepted.len() <= 8,
        "{} accepted from a /29 and a /61",
        accepted.len()
    );
    // Either pool may run out first: the prefix pool answers INSUFFICIENT_RESOURCES, the
    // IPv4 pool the RFC 5844 reply status.
    let v4_refused = refused
        .ipv4_home_address_reply
        .is_some_and(|(s, _)| s != Ipv4HomeAddressReplyStatus::Success);
    assert!(
        refused.status == BindingAckStatus::InsufficientResources || v4_refused,
        "exhaustion answered with {:?} / {:?}",
        refused.status,
        refused.ipv4_home_address_reply
    );
    let unique: HashSet<Ipv4Addr> = accepted
        .iter()
        .filter_map(|a| a.ipv4_home_address_reply.map(|(_, n)| n.addr()))
        .collect();
    assert_eq!(unique.len(), accepted.len());
    Ok(())
}

/// `--pcap` records what was received and sent, `--log-format json` prints one JSON
/// object per line (one per PBU), and SIGTERM stops the LMA cleanly: it revokes every
/// binding of the MAG with one indication (G bit, "Per-Peer Policy", RFC 5846 section
/// 8.1), which the MAG acknowledges.
fn pcap_json_logs_and_graceful_shutdown(
    setup: &Setup,
    mag: SocketAddr,
    lma: SocketAddr,
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = write_file(dir.path(), "lma.toml", &lma_config(setup))?;
    let pcap = dir.path().join("lma.pcap");
    let mut node = Node::start(
        "lma",
        &[
            "--config",
            config.to_str().context("path")?,
            "--pcap",
            pcap.to_str().context("path")?,
            "--log-format",
            "json",
        ],
    )?;
    node.wait_for("lma listening", Duration::from_secs(20))?;
    let socket = MhSocket::bind(mag)?;
    assert_eq!(
        status_of(&socket, lma, pbu(1, "pcap@test").to_binding_update())?,
        BindingAckStatus::Accepted
    );
    node.wait_for("pcap@test", Duration::from_secs(5))?;
    node.signal(libc::SIGTERM)?;
    let (from, bytes) = socket
        .recv(Duration::from_secs(5))?
        .context("no Binding Revocation Indication on SIGTERM")?;
    let indication = match MobilityHeaderRepr::parse(&bytes, socket.checksum_for(from))?.message {
        MobilityMessage::BindingRevocation(bri) => bri,
        other => anyhow::bail!("expected a Binding Revocation Indication, got {other:?}"),
    };
    assert_eq!(
        indication.revocation_type,
        BindingRevocationType::Indication
    );
    assert_eq!(indication.trigger_or_status, 128, "Per-Peer Policy");
    assert_eq!(
        indication.flags,
        BindingRevocationRepr::PROXY | BindingRevocationRepr::GLOBAL
    );
    assert!(indication.options.is_empty());
    let acknowledgement = MobilityHeaderRepr {
        payload_proto: IPPROTO_NONE,
        message: MobilityMessage::BindingRevocation(BindingRevocationRepr {
            revocation_type: BindingRevocationType::Acknowledgement,
            trigger_or_status: 0,
            ..indication
        }),
    };
    let context = match (mag.ip(), lma.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => ChecksumContext::Ipv4Udp,
        _ => ChecksumContext::Skip,
    };
    socket.send(from, &acknowledgement.to_bytes(context))?;
    assert_eq!(node.wait_exit(Duration::from_secs(10))?, Some(0));

    let output = node.output();
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<serde_json::Value>(line)
            .with_context(|| format!("log line is not JSON: {line}"))?;
    }
    assert!(output.contains("lma stopped"), "{output}");

    // Four records: the PBU in, the PBA out, the indication out, its acknowledgement in,
    // each a whole IP packet whose Mobility Header checksum verifies (over IPv6 the LMA
    // fills in what its kernel fills on the wire).
    let bytes = std::fs::read(&pcap)?;
    let mut records = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let len = u32::from_ne_bytes(bytes[at + 8..at + 12].try_into()?) as usize;
        records.push(&bytes[at + 16..at + 16 + len]);
        at += 16 + len;
    }
    assert_eq!(records.len(), 4, "PBU, PBA, BRI and BRA recorded");
    for record in &records {
        let (context, mh) = if lma.is_ipv4() {
            assert_eq!(record[0] >> 4, 4, "IPv4");
            assert_eq!(record[9], 17, "UDP");
            // RFC 5844 section 4.1.3.2: the MH checksum is zero over UDP 5436.
            assert_eq!(
                &record[28 + 4..28 + 6],
                &[0, 0],
                "MH checksum zero over UDP"
            );
            (ChecksumContext::Ipv4Udp, &record[28..])
        } else {
            assert_eq!(record[0] >> 4, 6, "IPv6");
            assert_eq!(record[6], IPPROTO_MH, "next header 135");
            let ip = |at: usize| -> Result<Ipv6Addr> {
                Ok(Ipv6Addr::from(<[u8; 16]>::try_from(&record[at..at + 16])?))
            };
            let context = ChecksumContext::Ipv6 {
                source: ip(8)?,
                destination: ip(24)?,
            };
            (context, &record[40..])
        };
        assert!(
            verify_checksum(context, mh),
            "recorded MH checksum verifies"
        );
    }
    // And an independent decoder reads them without complaint, where it is installed.
    if let Ok(out) = Command::new("tshark")
        .args(["-r", pcap.to_str().context("path")?, "-V"])
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "tshark failed: {text}");
        assert!(!text.contains("Malformed"), "{text}");
        assert!(text.contains("pcap@test"), "{text}");
    }
    Ok(())
}

#[test]
fn pcap_json_logs_and_graceful_shutdown_over_ipv4_udp() -> Result<()> {
    let lma: SocketAddr = "127.0.50.2:5436".parse()?;
    let setup = Setup {
        lma_v4: lma,
        lma_v6: None,
        allowed_mags: vec!["127.0.50.1".parse()?],
    };
    pcap_json_logs_and_graceful_shutdown(&setup, "127.0.50.1:0".parse()?, lma)
}

#[test]
fn pcap_json_logs_and_graceful_shutdown_over_ipv6_raw_mobility_header() -> Result<()> {
    let mag_v6: Ipv6Addr = "fd00:5213:50::1".parse()?;
    let lma_v6: Ipv6Addr = "fd00:5213:50::2".parse()?;
    let _a = LoopbackAddress::add(mag_v6)?;
    let _b = LoopbackAddress::add(lma_v6)?;
    let setup = Setup {
        lma_v4: "127.0.51.2:5436".parse()?,
        lma_v6: Some(lma_v6),
        allowed_mags: vec![IpAddr::V6(mag_v6)],
    };
    pcap_json_logs_and_graceful_shutdown(
        &setup,
        SocketAddr::new(IpAddr::V6(mag_v6), 0),
        SocketAddr::new(IpAddr::V6(lma_v6), 0),
    )
}

#[test]
fn a_mag_at_its_share_is_refused_while_the_next_mag_is_served() -> Result<()> {
    // One MAG floods PBUs for new mobile nodes; with [mag_limits] it gets 40 % of the
    // pools (two of the five IPv4 addresses of a /29), the next MAG's UE is served, and
    // the refusals are logged once, summed, not once per PBU.
    let dir = tempfile::tempdir()?;
    let lma: SocketAddr = "127.0.52.2:5436".parse()?;
    let config = lma_config(&Setup {
        lma_v4: lma,
        lma_v6: None,
        allowed_mags: vec!["127.0.52.1".parse()?, "127.0.52.3".parse()?],
    })
    .replace(IPV4_POOL, "10.47.0.0/29")
    .replace(IPV6_POOL, "2001:db8:47::/61")
        + "[mag_limits]\nshare_percent = 40\nreport_interval_secs = 1\n";
    let mut node = start_lma_with(&dir, &config)?;
    let flood = MhSocket::bind("127.0.52.1:0".parse()?)?;
    let mut statuses = Vec::new();
    for n in 0..200u16 {
        let bu = pbu(n, &format!("flood{n}@test")).to_binding_update();
        statuses.push(status_of(&flood, lma, bu)?);
    }
    let accepted = statuses
        .iter()
        .filter(|s| **s == BindingAckStatus::Accepted)
        .count();
    assert_eq!(accepted, 2, "{statuses:?}");
    assert!(statuses[2..]
        .iter()
        .all(|s| *s == BindingAckStatus::InsufficientResources));
    let other = MhSocket::bind("127.0.52.3:0".parse()?)?;
    let served =
        ProxyBindingAck::try_from(&ack(&other, lma, pbu(1, "next@test").to_binding_update())?)?;
    assert_eq!(served.status, BindingAckStatus::Accepted);
    assert!(served.ipv4_home_address_reply.is_some());
    node.wait_for("PBUs refused by mag_limits", Duration::from_secs(10))?;
    let output = node.output();
    let reports: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("PBUs refused by mag_limits"))
        .collect();
    assert_eq!(reports.len(), 1, "{output}");
    assert!(
        reports[0].contains("127.0.52.1") && reports[0].contains("share=198"),
        "{}",
        reports[0]
    );
    let rejected_lines = output
        .lines()
        .filter(|l| l.contains(" PBU ") && l.contains("rejected"))
        .count();
    assert_eq!(rejected_lines, 0, "no log line per refused PBU:\n{output}");
    Ok(())
}

#[test]
fn a_flood_of_rejected_pbus_is_logged_per_mag_and_interval_not_per_pbu() -> Result<()> {
    // 1000 rejected PBUs, half from a known MAG (no MN-ID: 160), half from a MAG not in
    // allowed_mags (154): each MAG's first reject is logged at once, in full; the rest
    // are counted into one line per MAG and interval.
    let dir = tempfile::tempdir()?;
    let lma: SocketAddr = "127.0.53.2:5436".parse()?;
    let config = lma_config(&Setup {
        lma_v4: lma,
        lma_v6: None,
        allowed_mags: vec!["127.0.53.1".parse()?],
    }) + "reject_log_interval_secs = 2\n";
    let node = start_lma_with(&dir, &config)?;
    let known = MhSocket::bind("127.0.53.1:0".parse()?)?;
    let stranger = MhSocket::bind("127.0.53.9:0".parse()?)?;
    let started = std::time::Instant::now();
    for n in 0..500u16 {
        let no_mn_id = without(pbu(n, &format!("flood{n}@test")).to_binding_update(), |o| {
            matches!(o, MobilityOption::MobileNodeIdentifier(_))
        });
        assert_eq!(
            status_of(&known, lma, no_mn_id)?,
            BindingAckStatus::MissingMnIdentifierOption
        );
        assert_eq!(
            status_of(
                &stranger,
                lma,
                pbu(n, &format!("x{n}@test")).to_binding_update()
            )?,
            BindingAckStatus::MagNotAuthorizedForProxyReg
        );
    }
    let intervals = started.elapsed().as_secs() / 2 + 2;
    // Every reject is in a line: the summaries of the last intervals come within 2 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let summed = |output: &str, from: &str, status: &str| -> (u64, usize) {
        let mut pbus = 0;
        let mut individual = 0;
        for line in output.lines().filter(|l| l.contains(from)) {
            if line.contains(" PBU ") && line.contains("outcome=\"rejected\"") {
                individual += 1;
            } else if let Some((n, rest)) =
                line.split_once(" PBUs rejected from ")
                    .and_then(|(head, rest)| {
                        Some((head.rsplit(' ').next()?.parse::<u64>().ok()?, rest))
                    })
            {
                assert!(rest.contains(status), "{line}");
                // The summary counts the first reject too.
                pbus += n - 1;
            }
        }
        (pbus + individual as u64, individual)
    };
    loop {
        let output = node.output();
        let known_seen = summed(&output, "127.0.53.1", "status 160 x");
        let stranger_seen = summed(&output, "127.0.53.9", "status 154 x");
        if known_seen.0 == 500 && stranger_seen.0 == 500 {
            let lines = output.lines().filter(|l| l.contains("rejected")).count() as u64;
            assert!(
                known_seen.1 as u64 <= intervals && stranger_seen.1 as u64 <= intervals,
                "one line at once per MAG and interval: {known_seen:?} {stranger_seen:?}"
            );
            assert!(
                lines <= 4 * intervals,
                "{lines} lines for 1000 rejected PBUs in {intervals} intervals:\n{output}"
            );
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the rejects are not all accounted for ({known_seen:?}, {stranger_seen:?}):\n{output}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
