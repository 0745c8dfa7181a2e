//! The network-namespace lab (`scripts/netns-lab.sh`, docs/testing.md) with the real
//! nodes in their namespaces: `aaa-stub` (aaa), `mag` (epdg), `lma` with its SGi TUN
//! (lma, forwarding to pdn), `ue-emu` (ue); the PDN host (pdn) is the kernel of the pdn
//! namespace, and ping / iperf3 run there and in the ue namespace through
//! `ue-emu attach --tun`. Needs root (namespaces, veths, TUN devices, raw sockets);
//! skipped with a message otherwise. Address blocks: lab tags 3 and 4.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use integration_tests::lab::{is_root, Lab, LabProcess};
use integration_tests::{node_binary, write_file};
use serde_json::Value;

const K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
const OPC: &str = "cd63cb71954a9f4e48a5994e37a02baf";
const IMSI: &str = "001010000000001";
const APN: &str = "internet";

fn skip_unless_root(test: &str) -> bool {
    if !is_root() {
        eprintln!("SKIPPED {test}: needs root (network namespaces)");
        return true;
    }
    false
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

/// The lab with aaa-stub, lma and mag running in their namespaces.
struct Core {
    // Dropped first (fields drop in order): processes, then the lab, then the files.
    mag: LabProcess,
    lma: LabProcess,
    aaa: LabProcess,
    lab: Lab,
    dir: tempfile::TempDir,
}

impl Core {
    fn start(prefix: &str, tag: u8) -> Result<Core> {
        let lab = Lab::up(prefix, tag)?;
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        let v = |k: &str| lab.var(k).map(str::to_string);
        write_file(
            d,
            "subscribers.toml",
            &format!(
                "[[subscriber]]\nimsi = \"{IMSI}\"\nk = \"{K}\"\nopc = \"{OPC}\"\napns = [\"{APN}\"]\n"
            ),
        )?;
        let epdg_peer =
            integration_tests::aaa_peer(integration_tests::EPDG_ORIGIN_HOST, v("EPDG_AAA_V4")?);
        let aaa_config = write_file(
            d,
            "aaa.toml",
            &format!(
                "origin_host = \"aaa.epc.mnc001.mcc001.3gppnetwork.org\"\n\
                 origin_realm = \"epc.mnc001.mcc001.3gppnetwork.org\"\nlisten = \"{}:3868\"\n\
                 subscribers = \"subscribers.toml\"\nsqn_state = \"sqn.toml\"\n{epdg_peer}[gateways]\n{APN} = \"{}\"\n",
                v("AAA_EPDG_V4")?,
                v("LMA_EPDG_V4")?,
            ),
        )?;
        let mut aaa = lab.spawn(
            "aaa",
            "aaa-stub",
            &["--config", path(&aaa_config)?],
            d.join("aaa.log"),
        )?;
        aaa.wait_for("aaa listening", Duration::from_secs(30))?;
        let lma_config = write_file(
            d,
            "lma.toml",
            &format!(
                "listen_v4 = \"{}:5436\"\nipv4_pool = \"{}\"\nipv6_pool = \"{}\"\n\
                 allowed_mags = [\"{}\"]\n[sgi]\ntun_name = \"sgi\"\nipv4 = \"{}\"\nipv6 = \"{}\"\nmtu = 1500\n",
                v("LMA_EPDG_V4")?,
                v("UE_POOL_V4")?,
                v("UE_POOL_V6")?,
                v("EPDG_LMA_V4")?,
                v("SGI_TUN_V4")?,
                v("SGI_TUN_V6")?,
            ),
        )?;
        let mut lma = lab.spawn(
            "lma",
            "lma",
            &["--config", path(&lma_config)?],
            d.join("lma.log"),
        )?;
        lma.wait_for("lma listening", Duration::from_secs(30))?;
        let mag_config = write_file(
            d,
            "mag.toml",
            &format!(
                "ike_listen = \"{epdg}:500\"\nnatt_listen = \"{epdg}:4500\"\naaa = \"{aaa}:3868\"\n\
                 mh_local = \"{mh}\"\nstatus_file = \"{status}\"\n",
                epdg = v("EPDG_UE_V4")?,
                aaa = v("AAA_EPDG_V4")?,
                mh = v("EPDG_LMA_V4")?,
                status = d.join("mag-status.json").display(),
            ),
        )?;
        let mut mag = lab.spawn(
            "epdg",
            "mag",
            &["--config", path(&mag_config)?],
            d.join("mag.log"),
        )?;
        mag.wait_for("mag listening", Duration::from_secs(30))?;
        mag.wait_for("Diameter peer open", Duration::from_secs(10))?;
        write_file(
            d,
            "ue.toml",
            &format!(
                "imsi = \"{IMSI}\"\nmnc_digits = 2\nk = \"{K}\"\nopc = \"{OPC}\"\n\
                 epdg = \"{}:500\"\nlocal = \"{}\"\napn = \"{APN}\"\ntimeout_ms = 10000\n",
                v("EPDG_UE_V4")?,
                v("UE_EPDG_V4")?,
            ),
        )?;
        Ok(Core {
            mag,
            lma,
            aaa,
            lab,
            dir,
        })
    }

    fn ue_config(&self) -> PathBuf {
        self.dir.path().join("ue.toml")
    }

    fn pdn(&self, version: u8) -> Result<IpAddr> {
        self.lab.addr("pdn", "lma", version)
    }

    /// `ue-emu attach --json EXTRA` in the ue namespace, to the end.
    fn attach(&self, extra: &[&str]) -> Result<(Option<i32>, Value)> {
        let out = self
            .lab
            .command("ue", node_binary("ue-emu")?)
            .args(["attach", "--json", "--config", path(&self.ue_config())?])
            .args(extra)
            .output()
            .context("running ue-emu")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report = serde_json::from_str(stdout.trim()).with_context(|| {
            format!(
                "ue-emu printed no JSON: {stdout}\n{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.logs()
            )
        })?;
        Ok((out.status.code(), report))
    }

    fn mag_status(&self) -> Result<Value> {
        let path = self.dir.path().join("mag-status.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    }

    fn logs(&self) -> String {
        format!(
            "aaa:\n{}\nlma:\n{}\nmag:\n{}",
            self.aaa.output(),
            self.lma.output(),
            self.mag.output()
        )
    }

    /// Waits until `check` holds on the mag's status file.
    fn eventually(&self, what: &str, check: impl Fn(&Value) -> bool) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            if let Ok(s) = self.mag_status() {
                if check(&s) {
                    return Ok(s);
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "{what}; mag status {:?}\n{}",
                    self.mag_status().ok(),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The topology alone: every link answers on IPv4 and IPv6, the PDN host routes the UE
/// pools to the lma, `up` twice is harmless, and `down` leaves no namespace, interface
/// or process behind, even with a process still running inside.
#[test]
fn lab_up_is_idempotent_and_down_leaves_nothing() -> Result<()> {
    if skip_unless_root("lab_up_is_idempotent_and_down_leaves_nothing") {
        return Ok(());
    }
    let mut lab = Lab::up("nlt", 4)?;
    let name = lab.name.clone();
    // Idempotent: up again on a lab that is up.
    let out = std::process::Command::new("bash")
        .arg(integration_tests::lab::script())
        .args(["up", "4", &name])
        .output()?;
    assert!(out.status.success(), "{out:?}");
    for (node, peer) in [
        ("ue", "epdg"),
        ("epdg", "lma"),
        ("epdg", "aaa"),
        ("lma", "pdn"),
    ] {
        for version in [4, 6] {
            let to = lab.addr(peer, node, version)?.to_string();
            lab.run(node, "ping", &["-c", "1", "-W", "2", &to])?;
        }
    }
    let routes = lab.run("pdn", "ip", &["route"])?;
    assert!(routes.contains(lab.var("UE_ROUTE_V4")?), "{routes}");
    let routes = lab.run("pdn", "ip", &["-6", "route"])?;
    assert!(routes.contains(lab.var("UE_ROUTE_V6")?), "{routes}");
    // A process left running inside a namespace does not survive `down`.
    let mut sleeper = lab.command("pdn", "sleep").arg("600").spawn()?;
    // `ip netns exec` enters the namespace, then execs sleep (same pid): wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab.pids().contains(&sleeper.id()) {
        assert!(
            Instant::now() < deadline,
            "sleep never showed in the pdn namespace"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    lab.down()?;
    let status = sleeper.wait()?;
    assert!(!status.success(), "sleep was not killed: {status}");
    assert_eq!(Lab::leftovers(&name)?, Vec::<String>::new());
    Ok(())
}

/// iperf3 in the pdn namespace against iperf3 in the ue namespace (through the TUN):
/// `-R` for PDN -> UE. Returns the receiver's bits per second.
fn iperf3(core: &Core, server: &str, reverse: bool) -> Result<f64> {
    let log = core.dir.path().join(format!("iperf3-server-{reverse}.log"));
    let mut s = core.lab.spawn_program(
        "pdn",
        Path::new("iperf3"),
        &["-s", "-1", "-B", server, "--forceflush"],
        log,
    )?;
    s.wait_for("Server listening", Duration::from_secs(10))?;
    let mut args = vec!["-c", server, "-t", "2", "-J", "--connect-timeout", "5000"];
    if reverse {
        args.push("-R");
    }
    let out = core.lab.run("ue", "iperf3", &args)?;
    let v: Value = serde_json::from_str(&out).context("iperf3 -J output")?;
    let received = &v["end"]["sum_received"];
    let bytes = received["bytes"].as_f64().unwrap_or(0.0);
    assert!(bytes > 1e6, "iperf3 moved only {bytes} octets: {out}");
    received["bits_per_second"]
        .as_f64()
        .context("no bits_per_second")
}

/// IPv4 and IPv6 echoes from the UE reach the PDN host and return, by
/// `ue-emu --ping` and by ordinary ping through `ue-emu --tun`; iperf3 TCP runs through
/// the TUN both ways; the TUN, its routes and the sessions go away at SIGTERM.
#[test]
fn ue_reaches_the_pdn_host_by_ping_and_iperf3() -> Result<()> {
    if skip_unless_root("ue_reaches_the_pdn_host_by_ping_and_iperf3") {
        return Ok(());
    }
    let core = Core::start("nlp", 3)?;
    let pdn4 = core.pdn(4)?.to_string();
    let pdn6 = core.pdn(6)?.to_string();
    // --ping (no TUN): ICMP and ICMPv6 inside ESP.
    let (code, report) = core.attach(&[
        "--ping",
        &pdn4,
        "--ping",
        &pdn6,
        "--ping-count",
        "3",
        "--ping-interval-ms",
        "200",
        "--ping-wait-ms",
        "2000",
    ])?;
    assert_eq!(code, Some(0), "{report}\n{}", core.logs());
    for p in report["pings"].as_array().context("no pings")? {
        assert_eq!(p["received"], 3, "{report}\n{}", core.logs());
    }
    // --tun: ordinary ping and iperf3.
    let mut ue = core.lab.spawn(
        "ue",
        "ue-emu",
        &[
            "attach",
            "--json",
            "--config",
            path(&core.ue_config())?,
            "--tun",
            "uetun",
            "--nat-keepalive-secs",
            "1",
        ],
        core.dir.path().join("ue-tun.log"),
    )?;
    ue.wait_for("relaying until", Duration::from_secs(20))?;
    let routes = core.lab.run("ue", "ip", &["route"])?;
    assert!(routes.contains("default dev uetun"), "{routes}");
    let out = core
        .lab
        .run("ue", "ping", &["-c", "3", "-i", "0.2", "-W", "2", &pdn4])?;
    assert!(out.contains("3 received"), "{out}");
    let out = core.lab.run(
        "ue",
        "ping",
        &["-6", "-c", "3", "-i", "0.2", "-W", "2", &pdn6],
    )?;
    assert!(out.contains("3 received"), "{out}");
    let up = iperf3(&core, &pdn4, false)?;
    let down = iperf3(&core, &pdn4, true)?;
    eprintln!("iperf3 through ue-emu --tun: UE->PDN {up:.0} bit/s, PDN->UE {down:.0} bit/s");
    // Idle: NAT-keepalives (RFC 3948: UDP payload 0xFF, UDP length 9) reach the ePDG.
    let seen = core.lab.run(
        "epdg",
        "tshark",
        &[
            "-i",
            "ue",
            "-f",
            "udp dst port 4500 and udp[4:2] = 9",
            "-c",
            "1",
            "-a",
            "duration:8",
            "-T",
            "fields",
            "-e",
            "udp.payload",
        ],
    )?;
    assert_eq!(seen.trim(), "ff", "no NAT-keepalive seen at the ePDG");
    // Detach on SIGTERM: the report comes out, the TUN and the sessions go away.
    ue.signal(libc::SIGTERM)?;
    let code = ue.wait_exit(Duration::from_secs(10))?;
    let log = ue.output();
    assert_eq!(code, Some(0), "{log}");
    let line = log
        .lines()
        .find(|l| l.starts_with('{'))
        .context("no JSON report")?;
    let report: Value = serde_json::from_str(line)?;
    assert_eq!(report["detached"], true, "{report}");
    assert_eq!(report["tun"]["stopped_by"], "signal", "{report}");
    assert!(
        report["tun"]["nat_keepalives_sent"].as_u64().unwrap_or(0) >= 1,
        "{report}"
    );
    assert!(
        report["tun"]["uplink_packets"].as_u64().unwrap_or(0) > 1000,
        "{report}"
    );
    let links = core.lab.run("ue", "ip", &["link"])?;
    assert!(!links.contains("uetun"), "{links}");
    core.eventually("sessions left after detach", |s| {
        s["data_plane"]["sessions"] == 0 && s["bindings"] == 0
    })?;
    // Tearing down leaves nothing: no namespace or interface of the lab, no node process.
    let name = core.lab.name.clone();
    let pids = [core.mag.id(), core.lma.id(), core.aaa.id(), ue.id()];
    drop(ue);
    drop(core);
    assert_eq!(Lab::leftovers(&name)?, Vec::<String>::new());
    for pid in pids {
        // SAFETY: kill(2) with signal 0 only checks whether the process exists.
        let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
        assert!(!alive, "process {pid} survived the lab");
    }
    Ok(())
}

/// A 20-octet IPv4 header + ICMP echo request from `source` to `destination`.
fn echo_request(source: Ipv4Addr, destination: Ipv4Addr) -> Vec<u8> {
    fn checksum(bytes: &[u8]) -> u16 {
        let mut sum: u32 = bytes
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
    icmp.extend_from_slice(&[0x5a; 16]);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let total = (20 + icmp.len()) as u16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 1, 0, 0, 64, 1, 0, 0]);
    p.extend_from_slice(&source.octets());
    p.extend_from_slice(&destination.octets());
    let c = checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&icmp);
    p
}

/// Sends one GRE packet (RFC 2890 key `key`, IPv4 payload) from namespace `ns` to `to`
/// over a raw IP-protocol-47 socket opened inside that namespace.
fn send_gre_from(ns: &str, to: Ipv4Addr, key: u32, inner: Vec<u8>) -> Result<()> {
    let ns_path = format!("/run/netns/{ns}");
    std::thread::spawn(move || -> Result<()> {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(&ns_path).with_context(|| format!("opening {ns_path}"))?;
        // SAFETY: setns(2) on a valid namespace fd; it moves only this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error()).context("setns");
        }
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(47)),
        )?;
        let mut gre = vec![0x20, 0x00, 0x08, 0x00];
        gre.extend_from_slice(&key.to_be_bytes());
        gre.extend_from_slice(&inner);
        let to = std::net::SocketAddr::new(IpAddr::V4(to), 0);
        socket.send_to(&gre, &to.into())?;
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the GRE sender thread panicked"))?
}

/// Forged inner sources on the lab: an inner packet whose source is not the UE's
/// assigned address is dropped and counted at the ePDG (ESP from the UE) and at the LMA
/// (GRE with the binding's uplink key, as if from a MAG that did not check).
#[test]
fn forged_inner_sources_are_dropped_and_counted() -> Result<()> {
    if skip_unless_root("forged_inner_sources_are_dropped_and_counted") {
        return Ok(());
    }
    let core = Core::start("nlf", 4)?;
    let pdn4 = core.pdn(4)?;
    let forged = Ipv4Addr::new(192, 0, 2, 66);
    // At the ePDG: three echoes from a forged source inside ESP, none answered.
    let (code, report) = core.attach(&[
        "--ping",
        &pdn4.to_string(),
        "--ping-source",
        &forged.to_string(),
        "--ping-count",
        "3",
        "--ping-interval-ms",
        "100",
        "--ping-wait-ms",
        "500",
        "--no-detach",
    ])?;
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["pings"][0]["sent"], 3, "{report}");
    assert_eq!(report["pings"][0]["received"], 0, "{report}");
    let s = core.eventually("the mag did not count 3 spoofed sources", |s| {
        s["data_plane"]["counters"]["drop_spoofed_source"] == 3
    })?;
    assert_eq!(s["data_plane"]["counters"]["uplink_packets"], 0, "{s}");
    // At the LMA: GRE with the still-attached UE's uplink key, forged inner source.
    let key = s["attached"][0]["uplink_gre_key"]
        .as_u64()
        .and_then(|k| u32::try_from(k).ok())
        .with_context(|| format!("no uplink key in {s}"))?;
    let lma = match core.lab.addr("lma", "epdg", 4)? {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => bail!("LMA_EPDG_V4 is not IPv4"),
    };
    let pdn4 = match pdn4 {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => bail!("PDN_LMA_V4 is not IPv4"),
    };
    let ns = core.lab.ns("epdg");
    send_gre_from(&ns, lma, key, echo_request(forged, pdn4))?;
    send_gre_from(&ns, lma, key, echo_request(forged, pdn4))?;
    let mut lma_process = core.lma;
    lma_process.wait_for("spoofed_source: 2", Duration::from_secs(10))?;
    Ok(())
}
