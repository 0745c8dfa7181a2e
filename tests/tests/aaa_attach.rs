//! The real `aaa-stub` behind the real ePDG: `ue-emu attach` through `mag`, `lma` and
//! `aaa-stub` on loopback (127.0.93.x; the visited-home case on 127.0.94.x, a block no
//! other test file uses), for a subscribed and an unsubscribed APN; then
//! the same UE after an `aaa-stub` restart (its SQN state survives).

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use integration_tests::{ue_emu_attach, write_file, Node};
use serde_json::Value;

const K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
const OPC: &str = "cd63cb71954a9f4e48a5994e37a02baf";
const IMSI: &str = "001010000000001";

fn ip(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 93, host)
}

fn ip94(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 94, host)
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

fn start_aaa(dir: &Path) -> Result<Node> {
    start_aaa_named(dir, "aaa")
}

fn start_aaa_named(dir: &Path, name: &str) -> Result<Node> {
    let config = path(&dir.join(format!("{name}.toml")))?.to_string();
    let mut aaa = Node::start("aaa-stub", &["--config", &config])?;
    aaa.wait_for("aaa listening", Duration::from_secs(30))?;
    Ok(aaa)
}

fn attach(dir: &Path, apn: &str) -> Result<(Option<i32>, Value)> {
    attach_via(dir, apn, ip(2), ip(1))
}

fn attach_via(
    dir: &Path,
    apn: &str,
    epdg: Ipv4Addr,
    local: Ipv4Addr,
) -> Result<(Option<i32>, Value)> {
    let config = write_file(
        dir,
        "ue.toml",
        &format!(
            "imsi = \"{IMSI}\"\nmnc_digits = 2\nk = \"{K}\"\nopc = \"{OPC}\"\n\
             epdg = \"{epdg}:500\"\nlocal = \"{local}\"\napn = \"{apn}\"\ntimeout_ms = 10000\n",
        ),
    )?;
    ue_emu_attach(&config, &["--insecure"])
}

#[test]
fn aaa_stub_serves_the_real_epdg() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    write_file(
        d,
        "subscribers.toml",
        &format!(
            "[[subscriber]]\nimsi = \"{IMSI}\"\nk = \"{K}\"\nopc = \"{OPC}\"\napns = [\"internet\", \"nogw\"]\n"
        ),
    )?;
    let epdg_peer = integration_tests::aaa_peer_epdg_loopback();
    write_file(
        d,
        "aaa.toml",
        &format!(
            "origin_host = \"aaa.epc.mnc001.mcc001.3gppnetwork.org\"\n\
             origin_realm = \"epc.mnc001.mcc001.3gppnetwork.org\"\nlisten = \"{}:3868\"\n\
             subscribers = \"subscribers.toml\"\nsqn_state = \"sqn.toml\"\n{epdg_peer}[gateways]\ninternet = \"{}\"\n",
            ip(4),
            ip(3)
        ),
    )?;
    let lma_config = write_file(
        d,
        "lma.toml",
        &format!(
            "listen_v4 = \"{}:5436\"\nipv4_pool = \"10.65.0.0/22\"\nipv6_pool = \"2001:db8:65::/54\"\n\
             allowed_mags = [\"{}\"]\n",
            ip(3),
            ip(2)
        ),
    )?;
    let mut aaa = start_aaa(d)?;
    let mut lma = Node::start("lma", &["--config", path(&lma_config)?])?;
    lma.wait_for("lma listening", Duration::from_secs(30))?;
    let mag_config = write_file(
        d,
        "mag.toml",
        &format!(
            "ike_listen = \"{epdg}:500\"\nnatt_listen = \"{epdg}:4500\"\naaa = \"{aaa}:3868\"\n\
             mh_local = \"{epdg}\"\ndns = [\"10.65.0.1\"]\ndiameter_timeout_ms = 2000\n",
            epdg = ip(2),
            aaa = ip(4),
        ),
    )?;
    let mut mag = Node::start("mag", &["--config", path(&mag_config)?])?;
    mag.wait_for("mag listening", Duration::from_secs(30))?;
    mag.wait_for("Diameter peer open", Duration::from_secs(10))?;
    let context = |what: &str, report: &Value, aaa: &Node, mag: &Node| {
        format!(
            "{what}: {report}\naaa:\n{}\nmag:\n{}",
            aaa.output(),
            mag.output()
        )
    };

    let (code, report) = attach(d, "internet")?;
    anyhow::ensure!(
        code == Some(0),
        "{}",
        context("attach", &report, &aaa, &mag)
    );
    let ipv4 = report["ipv4"].as_str().unwrap_or_default().to_string();
    assert!(ipv4.starts_with("10.65."), "{report}");
    aaa.wait_for(
        "DIAMETER_SUCCESS (EAP-AKA authenticated",
        Duration::from_secs(5),
    )?;

    // A subscribed APN no gateway serves here: a clear reject, no addresses.
    let (code, report) = attach(d, "nogw")?;
    anyhow::ensure!(code != Some(0), "{}", context("nogw", &report, &aaa, &mag));
    // An APN the subscriber has no subscription for.
    let (code, report) = attach(d, "corp")?;
    anyhow::ensure!(code != Some(0), "{}", context("corp", &report, &aaa, &mag));
    aaa.wait_for("AAR rejected 5003", Duration::from_secs(5))?;
    aaa.wait_for("AAR rejected 5451", Duration::from_secs(5))?;

    // kill -9 and restart: the UE (SQN_MS from its last attach is not kept by ue-emu,
    // but the AAA's SQN only moves forward) attaches again.
    aaa.signal(libc::SIGKILL)?;
    drop(aaa);
    let aaa = start_aaa(d)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while mag.output().matches("Diameter peer open").count() < 2 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the ePDG did not reconnect:\n{}",
            mag.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, report) = attach(d, "internet")?;
    anyhow::ensure!(
        code == Some(0),
        "{}",
        context("re-attach", &report, &aaa, &mag)
    );
    Ok(())
}

/// Roaming: the ePDG's AAA is a visited aaa-stub relaying to the home aaa-stub. The home
/// names its gateway (where nothing listens), the visited AAA adds its own (the LMA):
/// the ePDG registers at the visited gateway, the last one, so the attach succeeds.
#[test]
fn aaa_stub_visited_proxy_serves_the_real_epdg() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let subscribers = format!(
        "[[subscriber]]\nimsi = \"{IMSI}\"\nk = \"{K}\"\nopc = \"{OPC}\"\napns = [\"internet\"]\n"
    );
    write_file(d, "subscribers.toml", &subscribers)?;
    write_file(d, "none.toml", "")?;
    let epdg_peer = integration_tests::aaa_peer_epdg_loopback();
    // The visited AAA relays from 127.0.0.1 (unbound, to a loopback address).
    let visited_peer =
        integration_tests::aaa_peer("aaa.epc.mnc002.mcc001.3gppnetwork.org", "127.0.0.1");
    write_file(
        d,
        "home.toml",
        &format!(
            "origin_host = \"aaa.epc.mnc001.mcc001.3gppnetwork.org\"\n\
             origin_realm = \"epc.mnc001.mcc001.3gppnetwork.org\"\nlisten = \"{}:3868\"\n\
             subscribers = \"subscribers.toml\"\nsqn_state = \"home-sqn.toml\"\n{visited_peer}\
             [gateways]\ninternet = \"{}\"\n",
            ip94(14),
            ip94(99)
        ),
    )?;
    write_file(
        d,
        "visited.toml",
        &format!(
            "origin_host = \"aaa.epc.mnc002.mcc001.3gppnetwork.org\"\n\
             origin_realm = \"epc.mnc002.mcc001.3gppnetwork.org\"\nlisten = \"{}:3868\"\n\
             subscribers = \"none.toml\"\nsqn_state = \"visited-sqn.toml\"\n{epdg_peer}\
             [gateways]\ninternet = \"{}\"\n\
             [home_realms]\n\"epc.mnc001.mcc001.3gppnetwork.org\" = \"{}:3868\"\n",
            ip94(4),
            ip94(3),
            ip94(14)
        ),
    )?;
    let lma_config = write_file(
        d,
        "lma.toml",
        &format!(
            "listen_v4 = \"{}:5436\"\nipv4_pool = \"10.66.0.0/22\"\nipv6_pool = \"2001:db8:66::/54\"\n\
             allowed_mags = [\"{}\"]\n",
            ip94(3),
            ip94(2)
        ),
    )?;
    let home = start_aaa_named(d, "home")?;
    let mut visited = start_aaa_named(d, "visited")?;
    let mut lma = Node::start("lma", &["--config", path(&lma_config)?])?;
    lma.wait_for("lma listening", Duration::from_secs(30))?;
    let mag_config = write_file(
        d,
        "mag.toml",
        &format!(
            "ike_listen = \"{epdg}:500\"\nnatt_listen = \"{epdg}:4500\"\naaa = \"{aaa}:3868\"\n\
             mh_local = \"{epdg}\"\ndns = [\"10.66.0.1\"]\ndiameter_timeout_ms = 4000\n",
            epdg = ip94(2),
            aaa = ip94(4),
        ),
    )?;
    let mut mag = Node::start("mag", &["--config", path(&mag_config)?])?;
    mag.wait_for("mag listening", Duration::from_secs(30))?;
    mag.wait_for("Diameter peer open", Duration::from_secs(10))?;
    let (code, report) = attach_via(d, "internet", ip94(2), ip94(1))?;
    anyhow::ensure!(
        code == Some(0),
        "roaming attach: {report}\nvisited:\n{}\nhome:\n{}\nmag:\n{}",
        visited.output(),
        home.output(),
        mag.output()
    );
    assert!(
        report["ipv4"]
            .as_str()
            .is_some_and(|a| a.starts_with("10.66.")),
        "{report}"
    );
    visited.wait_for("(visited gateway added)", Duration::from_secs(5))?;
    Ok(())
}
