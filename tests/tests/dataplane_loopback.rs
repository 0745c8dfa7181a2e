//! The ePDG's data plane on loopback: the real `lma`, `mag` and `ue-emu attach --ping`,
//! with the in-test AAA of attach_loopback.rs. The LMA runs signaling only (no `[sgi]`):
//! this test plays the LMA's tunnel end itself (root: a raw IPv4 socket for IP protocol
//! 47 bound to the LMA's address), so that it sees the ePDG's GRE as sent: it captures the uplink GRE the ePDG sends, checks the
//! uplink key and the inner echo requests (source = the UE's assigned address), answers
//! each with an echo reply in GRE under the downlink key, and checks that ue-emu counts
//! the replies. The forged-source drop is unit-tested in mag/src/dataplane.rs; the path
//! through the LMA's own data plane is dataplane_e2e.rs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use integration_tests::aaa::{InTestAaa, APN, IMSI, K, OPC};
use integration_tests::{node_binary, write_file, Node};
use ipnet::Ipv6Net;
use pmip_node::socket::RawSocket;

use serde_json::Value;
const IPV4_POOL: &str = "10.45.0.0/22";
const IPV6_POOL: &str = "2001:db8:45::/54";

/// The mag's status file once `ready` holds (it is rewritten at most every 100 ms, so it
/// lags the events a little); the last one read after three seconds otherwise.
fn status_when(path: &Path, ready: impl Fn(&Value) -> bool) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let s: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        if ready(&s) || Instant::now() >= deadline {
            return Ok(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

/// The nodes on 127.0.<net>.x: .1 UE, .2 ePDG, .3 LMA, .4 AAA.
fn ip(net: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, net, host)
}

/// The Internet checksum (RFC 1071).
fn checksum(sum: u32, bytes: &[u8]) -> u16 {
    let mut s = sum;
    for c in bytes.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// The echo reply a PDN host would send to `request` (IPv4/ICMP or IPv6/ICMPv6).
fn echo_reply(request: &[u8]) -> Option<Vec<u8>> {
    let mut p = request.to_vec();
    match p.first()? >> 4 {
        4 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            if p.len() < ihl + 8 || p[9] != 1 || p[ihl] != 8 {
                return None;
            }
            let (s, d) = (p[12..16].to_vec(), p[16..20].to_vec());
            p[12..16].copy_from_slice(&d);
            p[16..20].copy_from_slice(&s);
            p[10..12].copy_from_slice(&[0, 0]);
            let c = checksum(0, &p[..ihl]);
            p[10..12].copy_from_slice(&c.to_be_bytes());
            p[ihl] = 0;
            p[ihl + 2..ihl + 4].copy_from_slice(&[0, 0]);
            let c = checksum(0, &p[ihl..]);
            p[ihl + 2..ihl + 4].copy_from_slice(&c.to_be_bytes());
            Some(p)
        }
        6 => {
            if p.len() < 48 || p[6] != 58 || p[40] != 128 {
                return None;
            }
            let (s, d) = (p[8..24].to_vec(), p[24..40].to_vec());
            p[8..24].copy_from_slice(&d);
            p[24..40].copy_from_slice(&s);
            p[40] = 129;
            p[42..44].copy_from_slice(&[0, 0]);
            let mut pseudo = Vec::new();
            pseudo.extend_from_slice(&p[8..40]);
            pseudo.extend_from_slice(&((p.len() - 40) as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 58]);
            pseudo.extend_from_slice(&p[40..]);
            let c = checksum(0, &pseudo);
            p[42..44].copy_from_slice(&c.to_be_bytes());
            Some(p)
        }
        _ => None,
    }
}

fn inner_source(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(packet.get(12..16)?).ok()?)),
        6 => Some(IpAddr::from(<[u8; 16]>::try_from(packet.get(8..24)?).ok()?)),
        _ => None,
    }
}

/// An IPv6 address on the loopback device for the duration of a test (root only).
struct LoopbackAddress(Ipv6Addr);

impl LoopbackAddress {
    fn add(addr: Ipv6Addr) -> Result<Self> {
        let cidr = format!("{addr}/128");
        let _ = std::process::Command::new("ip")
            .args(["-6", "addr", "del", &cidr, "dev", "lo"])
            .output();
        let status = std::process::Command::new("ip")
            .args(["-6", "addr", "add", &cidr, "dev", "lo", "nodad"])
            .status()
            .context("running ip -6 addr add (needs iproute2 and root)")?;
        anyhow::ensure!(
            status.success(),
            "ip -6 addr add {addr} failed (needs root)"
        );
        Ok(LoopbackAddress(addr))
    }
}

impl Drop for LoopbackAddress {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["-6", "addr", "del", &format!("{}/128", self.0), "dev", "lo"])
            .output();
    }
}

/// The LMA's tunnel end, played by the test: a raw GRE socket at `address` (an IPv4
/// one delivers the outer IPv4 header, an IPv6 one only the GRE packet).
fn raw_gre(address: IpAddr) -> Result<RawSocket> {
    let s = RawSocket::bind(address, pmip_node::gre::IPPROTO_GRE)
        .context("raw GRE socket (the test needs root)")?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(s)
}

fn recv_from(s: &RawSocket) -> Option<(Vec<u8>, IpAddr)> {
    let mut buf = vec![0u8; 65_536];
    let (n, from) = s.recv_from(&mut buf).ok()?;
    buf.truncate(n);
    Some((buf, from))
}

/// A command that runs `binary` as user and group 65534 (nobody) through setpriv(1),
/// or as we are when setpriv is missing.
fn unprivileged(binary: &Path) -> std::process::Command {
    if Path::new("/usr/bin/setpriv").exists() {
        let mut c = std::process::Command::new("/usr/bin/setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(binary);
        c
    } else {
        std::process::Command::new(binary)
    }
}

/// Lets nobody read the configs and write the status file in `dir`.
fn open_up(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
    Ok(())
}

/// How the test's LMA end answers the echo requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// From the LMA's address under the downlink key.
    Good,
    /// Under a key the ePDG never gave out.
    WrongKey,
    /// Under the right key, but from an address that is not the binding's LMA.
    WrongLma,
}

#[test]
fn ue_pings_through_the_epdg_esp_to_gre_and_back() -> Result<()> {
    run(77, Reply::Good, None)
}

#[test]
fn ue_pings_through_gre_over_ipv6_to_an_lma_named_by_ipv6_address() -> Result<()> {
    let (mag6, lma6): (Ipv6Addr, Ipv6Addr) = ("fd00:45:81::2".parse()?, "fd00:45:81::3".parse()?);
    let _addresses = (LoopbackAddress::add(mag6)?, LoopbackAddress::add(lma6)?);
    run(81, Reply::Good, Some((mag6, lma6)))
}

#[test]
fn downlink_gre_under_an_unknown_key_is_dropped_and_counted() -> Result<()> {
    run(78, Reply::WrongKey, None)
}

#[test]
fn downlink_gre_from_another_address_than_the_lma_is_dropped_and_counted() -> Result<()> {
    run(79, Reply::WrongLma, None)
}

/// `v6`: the (mag, lma) IPv6 addresses when the LMA is reached over IPv6 (MH and GRE).
fn run(net: u8, how: Reply, v6: Option<(Ipv6Addr, Ipv6Addr)>) -> Result<()> {
    let dir = tempfile::tempdir()?;
    open_up(dir.path())?;
    let (mag_addr, lma_addr, impostor_addr): (IpAddr, IpAddr, IpAddr) = match v6 {
        Some((m, l)) => (m.into(), l.into(), "fd00:45:81::9".parse()?),
        None => (ip(net, 2).into(), ip(net, 3).into(), ip(net, 9).into()),
    };
    let (lma_v6, mag_v6) = match v6 {
        Some((m, l)) => (
            format!(
                "listen_v6 = \"{l}\"\nallowed_mags = [\"{}\", \"{m}\"]\n",
                ip(net, 2)
            ),
            format!("mh_local_v6 = \"{m}\"\n"),
        ),
        None => (
            format!("allowed_mags = [\"{}\"]\n", ip(net, 2)),
            String::new(),
        ),
    };
    let lma_config = write_file(
        dir.path(),
        "lma.toml",
        &format!(
            "listen_v4 = \"{}:5436\"\nipv4_pool = \"{IPV4_POOL}\"\nipv6_pool = \"{IPV6_POOL}\"\n\
             timestamp_window_ms = 7000\n{lma_v6}",
            ip(net, 3),
        ),
    )?;
    let mut lma = Node::start("lma", &["--config", path(&lma_config)?])?;
    lma.wait_for("lma listening", Duration::from_secs(30))?;
    let aaa = InTestAaa::start(ip(net, 4), lma_addr)?;
    let status = dir.path().join("status.json");
    let mag_config = write_file(
        dir.path(),
        "mag.toml",
        &format!(
            "ike_listen = \"{epdg}:500\"\nnatt_listen = \"{epdg}:4500\"\naaa = \"{aaa}\"\n\
             mh_local = \"{epdg}\"\nstatus_file = \"{status}\"\n{mag_v6}",
            epdg = ip(net, 2),
            aaa = aaa.addr,
            status = status.display(),
        ),
    )?;
    let mut mag = Node::start("mag", &["--config", path(&mag_config)?])?;
    mag.wait_for("mag listening", Duration::from_secs(30))?;
    mag.wait_for("Diameter peer open", Duration::from_secs(10))?;
    let gre = raw_gre(lma_addr)?;
    let _impostor_address = match impostor_addr {
        IpAddr::V6(a) => Some(LoopbackAddress::add(a)?),
        IpAddr::V4(_) => None,
    };
    let impostor = raw_gre(impostor_addr)?;

    let ue_config = write_file(
        dir.path(),
        "ue.toml",
        &format!(
            "imsi = \"{IMSI}\"\nmnc_digits = 2\nk = \"{K}\"\nopc = \"{OPC}\"\n\
             epdg = \"{}:500\"\nlocal = \"{}\"\napn = \"{APN}\"\ntimeout_ms = 10000\n",
            ip(net, 2),
            ip(net, 1)
        ),
    )?;
    // ue-emu runs as nobody: --ping needs no privilege.
    let ue = unprivileged(&node_binary("ue-emu")?)
        .args(["attach", "--json", "--config", path(&ue_config)?])
        .args(["--ping", "192.0.2.1", "--ping", "2001:db8:ffff::1"])
        .args(["--ping-count", "2", "--ping-wait-ms"])
        .arg(if how == Reply::Good { "3000" } else { "1000" })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running ue-emu")?;

    // Play the LMA's tunnel end: answer every echo request under the downlink key.
    let mut seen: Vec<(u32, IpAddr)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut keys: Option<(u64, u64, String, String)> = None;
    while seen.len() < 4 && Instant::now() < deadline {
        let Some((packet, source)) = recv_from(&gre) else {
            continue;
        };
        let d = if v6.is_some() {
            pmip_common::tunnel::decapsulate_gre(&packet)
        } else {
            pmip_common::tunnel::decapsulate_ip(&packet)
        }
        .map_err(|e| anyhow::anyhow!("uplink is not keyed GRE: {e}"))?;
        assert_eq!(source, mag_addr, "the GRE comes from the ePDG");
        if keys.is_none() {
            let s = status_when(&status, |s| s["attached"][0]["uplink_gre_key"].is_u64())?;
            let a = &s["attached"][0];
            keys = Some((
                a["uplink_gre_key"].as_u64().context("no uplink key")?,
                a["downlink_gre_key"].as_u64().context("no downlink key")?,
                a["ipv4"].as_str().context("no ipv4")?.to_string(),
                a["ipv6_prefix"].as_str().context("no prefix")?.to_string(),
            ));
        }
        let Some((up, down, v4, prefix)) = keys.clone() else {
            continue;
        };
        assert_eq!(u64::from(d.key), up, "the uplink GRE key");
        let source = inner_source(d.inner).context("inner packet")?;
        match source {
            IpAddr::V4(a) => assert_eq!(a.to_string(), v4, "inner IPv4 source"),
            IpAddr::V6(a) => {
                let p: Ipv6Net = prefix.parse()?;
                assert!(p.contains(&a), "inner IPv6 source {a} outside {p}");
            }
        }
        seen.push((d.key, source));
        let reply = echo_reply(d.inner).context("not an echo request")?;
        let proto = if reply[0] >> 4 == 4 {
            pmip_common::tunnel::ProtocolType::Ipv4
        } else {
            pmip_common::tunnel::ProtocolType::Ipv6
        };
        let mut out = Vec::new();
        let key = if how == Reply::WrongKey {
            down as u32 + 1
        } else {
            down as u32
        };
        pmip_common::tunnel::GreRepr::keyed(proto, key).emit_with_payload(&reply, &mut out);
        let from = if how == Reply::WrongLma {
            &impostor
        } else {
            &gre
        };
        from.send_to(&out, mag_addr)?;
    }
    let out = ue.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).with_context(|| {
        format!(
            "ue-emu printed no JSON: {stdout}\n{}\nmag:\n{}",
            String::from_utf8_lossy(&out.stderr),
            mag.output()
        )
    })?;
    assert_eq!(report["result"], "attached", "{report}");
    assert_eq!(
        seen.len(),
        4,
        "uplink echo requests seen: {seen:?}\n{report}"
    );
    let pings = report["pings"].as_array().context("no pings")?;
    assert_eq!(pings.len(), 2);
    let expected = if how == Reply::Good { 2 } else { 0 };
    for p in pings {
        assert_eq!(p["sent"], 2, "{p}");
        assert_eq!(p["received"], expected, "{p}");
        assert_eq!(
            p["rtt_ms"].as_array().map(|a| a.len()),
            Some(expected),
            "{p}"
        );
    }
    // ue-emu exits 1 when a target got no reply.
    assert_eq!(
        out.status.code(),
        Some(if how == Reply::Good { 0 } else { 1 })
    );
    // The counters: four packets up; four down, or four dropped for the right reason.
    let s = status_when(&status, |s| {
        let c = &s["data_plane"]["counters"];
        let n = |k: &str| c[k].as_u64().unwrap_or(0);
        n("uplink_packets") >= 4
            && n("downlink_packets") + n("drop_unknown_downlink_key") + n("drop_wrong_lma") >= 4
    })?;
    let c = &s["data_plane"]["counters"];
    assert_eq!(c["uplink_packets"], 4, "{s}");
    assert_eq!(c["drop_spoofed_source"], 0, "{s}");
    let (down, unknown_key, wrong_lma) = match how {
        Reply::Good => (4, 0, 0),
        Reply::WrongKey => (0, 4, 0),
        Reply::WrongLma => (0, 0, 4),
    };
    assert_eq!(c["downlink_packets"], down, "{s}");
    assert_eq!(c["drop_unknown_downlink_key"], unknown_key, "{s}");
    assert_eq!(c["drop_wrong_lma"], wrong_lma, "{s}");
    // The UE detached: its data plane session and AAA session are gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s: Value = serde_json::from_str(&std::fs::read_to_string(&status)?)?;
        if s["data_plane"]["sessions"] == 0 && aaa.open_sessions() == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "state left after detach: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(lma);
    Ok(())
}

/// Kills the child when dropped.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_in_file(file: &Path, needle: &str, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.contains(needle) {
            return Ok(text);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no {needle:?} in {}:\n{text}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A mag without CAP_NET_RAW (run as nobody, IKE on unprivileged ports) says loudly that
/// its data plane is off, still attaches the UE, and the UE's pings go unanswered.
#[test]
fn without_the_raw_socket_the_mag_attaches_with_the_data_plane_disabled() -> Result<()> {
    let net = 80;
    let dir = tempfile::tempdir()?;
    open_up(dir.path())?;
    let lma_config = write_file(
        dir.path(),
        "lma.toml",
        &format!(
            "listen_v4 = \"{}:5436\"\nipv4_pool = \"{IPV4_POOL}\"\nipv6_pool = \"{IPV6_POOL}\"\n\
             timestamp_window_ms = 7000\nallowed_mags = [\"{}\"]\n",
            ip(net, 3),
            ip(net, 2)
        ),
    )?;
    let mut lma = Node::start("lma", &["--config", path(&lma_config)?])?;
    lma.wait_for("lma listening", Duration::from_secs(30))?;
    let aaa = InTestAaa::start(ip(net, 4), ip(net, 3).into())?;
    let status = dir.path().join("status.json");
    let mag_config = write_file(
        dir.path(),
        "mag.toml",
        &format!(
            "ike_listen = \"{epdg}:1500\"\nnatt_listen = \"{epdg}:14500\"\naaa = \"{aaa}\"\n\
             mh_local = \"{epdg}\"\nstatus_file = \"{status}\"\n",
            epdg = ip(net, 2),
            aaa = aaa.addr,
            status = status.display(),
        ),
    )?;
    let log = dir.path().join("mag.log");
    let _mag = Reap(
        unprivileged(&node_binary("mag")?)
            .args(["--config", path(&mag_config)?])
            .env("NO_COLOR", "1")
            .stdout(std::fs::File::create(dir.path().join("mag.out"))?)
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting mag")?,
    );
    let text = wait_in_file(&log, "Diameter peer open", Duration::from_secs(30))?;
    assert!(text.contains("DATA PLANE DISABLED"), "{text}");
    let ue_config = write_file(
        dir.path(),
        "ue.toml",
        &format!(
            "imsi = \"{IMSI}\"\nmnc_digits = 2\nk = \"{K}\"\nopc = \"{OPC}\"\n\
             epdg = \"{}:1500\"\nepdg_natt_port = 14500\nlocal = \"{}\"\napn = \"{APN}\"\n\
             timeout_ms = 10000\n",
            ip(net, 2),
            ip(net, 1)
        ),
    )?;
    let out = unprivileged(&node_binary("ue-emu")?)
        .args(["attach", "--json", "--config", path(&ue_config)?])
        .args([
            "--ping",
            "192.0.2.1",
            "--ping-count",
            "1",
            "--ping-wait-ms",
            "500",
        ])
        .output()
        .context("running ue-emu")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).with_context(|| {
        format!(
            "ue-emu printed no JSON: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    assert_eq!(report["result"], "attached", "{report}");
    assert_eq!(report["pings"][0]["sent"], 1, "{report}");
    assert_eq!(report["pings"][0]["received"], 0, "{report}");
    assert_eq!(out.status.code(), Some(1));
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&status)?)?;
    assert_eq!(s["data_plane"]["enabled"], false, "{s}");
    drop(lma);
    Ok(())
}
