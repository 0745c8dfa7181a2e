//! The whole data path on one machine: `ue-emu attach --ping` (as nobody) => the real
//! `mag` (ESP-in-UDP -> GRE) => the real `lma` with its SGi TUN device in a network
//! namespace of its own, joined to the root namespace by a veth pair; the kernel behind
//! the TUN answers the echo to the TUN's own address, and the reply comes back
//! TUN -> LMA -> GRE (downlink key) -> mag -> ESP -> ue-emu. The AAA is the `aaa-stub`
//! server run in this process (`integration_tests::aaa`). Needs root (namespace, veth, TUN, raw GRE sockets).

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use integration_tests::aaa::{InTestAaa, APN, IMSI, K, OPC};
use integration_tests::netns::{LmaProcess, Topology};
use integration_tests::{node_binary, write_file, Node};

use serde_json::Value;
const IPV4_POOL: &str = "10.46.0.0/24";
const IPV6_POOL: &str = "2001:db8:46:100::/56";

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

const TUN_ADDRESS: &str = "10.46.1.1";
const TUN_ADDRESS_V6: &str = "2001:db8:46::1";

#[test]
fn ue_pings_the_lmas_sgi_through_esp_and_gre() -> Result<()> {
    let net = 90;
    let topology = Topology::new("dpe2e", 2)?;
    let dir = tempfile::tempdir()?;
    open_up(dir.path())?;
    let tun = format!("dpe2e{}", std::process::id() % 100_000);
    let lma_config = write_file(
        dir.path(),
        "lma.toml",
        &format!(
            "listen_v4 = \"{lma}:5436\"\nipv4_pool = \"{IPV4_POOL}\"\n\
             ipv6_pool = \"{IPV6_POOL}\"\nallowed_mags = [\"{mag}\"]\n\
             timestamp_window_ms = 7000\n\
             [sgi]\ntun_name = \"{tun}\"\nipv4 = \"{TUN_ADDRESS}/16\"\nipv6 = \"{TUN_ADDRESS_V6}/48\"\nmtu = 1500\n",
            lma = topology.lma,
            mag = topology.mag,
        ),
    )?;
    let lma = LmaProcess::start(&topology.ns, &lma_config, dir.path().join("lma.log"))?;
    lma.wait_for("lma listening", Duration::from_secs(30))?;
    let aaa = InTestAaa::start(Ipv4Addr::new(127, 0, net, 4), topology.lma.into())?;
    let status = dir.path().join("status.json");
    let epdg = Ipv4Addr::new(127, 0, net, 2);
    let mag_config = write_file(
        dir.path(),
        "mag.toml",
        &format!(
            "ike_listen = \"{epdg}:500\"\nnatt_listen = \"{epdg}:4500\"\naaa = \"{aaa}\"\n\
             mh_local = \"{mh}\"\nstatus_file = \"{status}\"\n",
            aaa = aaa.addr,
            mh = topology.mag,
            status = status.display(),
        ),
    )?;
    let mut mag = Node::start("mag", &["--config", path(&mag_config)?])?;
    mag.wait_for("mag listening", Duration::from_secs(30))?;
    mag.wait_for("Diameter peer open", Duration::from_secs(10))?;
    let ue_config = write_file(
        dir.path(),
        "ue.toml",
        &format!(
            "imsi = \"{IMSI}\"\nmnc_digits = 2\nk = \"{K}\"\nopc = \"{OPC}\"\n\
             epdg = \"{epdg}:500\"\nlocal = \"127.0.{net}.1\"\napn = \"{APN}\"\n\
             timeout_ms = 10000\n",
        ),
    )?;
    let out = unprivileged(&node_binary("ue-emu")?)
        .args(["attach", "--json", "--config", path(&ue_config)?])
        .args([
            "--ping",
            TUN_ADDRESS,
            "--ping",
            TUN_ADDRESS_V6,
            "--ping-count",
            "3",
        ])
        .args(["--ping-interval-ms", "300", "--ping-wait-ms", "2000"])
        .output()
        .context("running ue-emu")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).with_context(|| {
        format!(
            "ue-emu printed no JSON: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let context = || format!("{report}\nmag:\n{}\nlma:\n{}", mag.output(), lma.output());
    assert_eq!(report["result"], "attached", "{}", context());
    // The first echo may race the LMA's route set-up; the later ones must come back.
    let mut received = 0;
    for p in report["pings"].as_array().context("no pings")? {
        assert_eq!(p["sent"], 3, "{}", context());
        let r = p["received"].as_u64().unwrap_or(0);
        assert!(r >= 2, "{}", context());
        received += r;
    }
    assert_eq!(out.status.code(), Some(0), "{}", context());
    let s = status_when(&status, |s| {
        let c = &s["data_plane"]["counters"];
        c["uplink_packets"].as_u64() >= Some(6) && c["downlink_packets"].as_u64() >= Some(received)
    })?;
    let c = &s["data_plane"]["counters"];
    assert_eq!(c["uplink_packets"], 6, "{s}");
    assert_eq!(c["downlink_packets"].as_u64(), Some(received), "{s}");
    // ue-emu detached: no data plane session, no AAA session left.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s: Value = serde_json::from_str(&std::fs::read_to_string(&status)?)?;
        if s["data_plane"]["sessions"] == 0 && aaa.open_sessions() == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "state left after detach: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(mag);
    drop(lma);
    drop(topology);
    Ok(())
}
