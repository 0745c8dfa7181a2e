//! Self-healing across real processes, on loopback (127.0.171.x): the `lma` binary's
//! admin interface and subcommands (`lma bindings`, `lma revoke`) revoking a test MAG's
//! binding (RFC 5846: the MAG, a real `BindingUpdateList`, answers the indication and
//! loses the binding), and a home gateway killed with SIGKILL and started again with the
//! same state directory under a visited gateway (RFC 5847: the unsolicited Heartbeat
//! Response; the visited gateway registers its chained bindings again, the addresses
//! stay, the relay moves to the new home keys). State is read through the admin
//! interface, not from log lines.
//!
//! Addresses: revocation: .21 the test MAG, .25 the gateway (admin on port 9436);
//! restart: .1 the test MAG (the ePDG), .3 the visited gateway's ePDG side (admin on
//! 9437), .13 its home side, .5 the home gateway (admin on 9436).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use integration_tests::{node_binary, write_file, Node, TestMag};
use pmip_common::binding_update_list::{
    self as bul, MagConfig, MobileNodeKey, RegistrationFailure, RegistrationRequest,
};
use pmip_common::mh::{GreKey, HandoffIndicator, ThreeGppOption, VendorSpecific};
use serde_json::Value;

const NET: u8 = 171;
const APN: &str = "internet";

fn ip(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, NET, host)
}

fn nai(n: u32) -> String {
    format!("00101000000{n:04}@nai.epc.mnc001.mcc001.3gppnetwork.org")
}

fn request(n: u32, lma: Ipv4Addr, home: Option<Ipv4Addr>) -> RegistrationRequest {
    RegistrationRequest {
        key: MobileNodeKey::new(&nai(n), Some(APN)),
        lma: SocketAddr::new(lma.into(), 5436),
        request_home_network_prefix: true,
        request_ipv4_home_address: true,
        downlink_gre_key: Some(GreKey(5000 + n)),
        handoff: HandoffIndicator::AttachmentOverNewInterface,
        vendor: home
            .map(|h| VendorSpecific::ThreeGpp(ThreeGppOption::PdnGwIpAddress(IpAddr::V4(h))))
            .into_iter()
            .collect(),
    }
}

/// `lma ARGS` (a subcommand against a running gateway): its standard output as JSON.
fn lma_command(args: &[&str]) -> Result<Value> {
    let out = Command::new(node_binary("lma")?)
        .args(args)
        .output()
        .context("running lma")?;
    if !out.status.success() {
        bail!(
            "lma {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("lma {args:?}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn bindings(admin: SocketAddr) -> Result<Vec<Value>> {
    let answer = lma_command(&["bindings", "--json", "--admin", &admin.to_string()])?;
    Ok(answer["bindings"].as_array().cloned().unwrap_or_default())
}

fn start(dir: &std::path::Path, name: &str, config: &str) -> Result<Node> {
    let path = write_file(dir, &format!("{name}.toml"), config)?;
    let mut node = Node::start("lma", &["--config", path.to_str().context("path")?])?;
    node.wait_for("lma listening", Duration::from_secs(20))?;
    Ok(node)
}

#[test]
fn lma_revoke_over_the_admin_interface_reaches_the_mag() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let admin = SocketAddr::new(ip(25).into(), 9436);
    let config = format!(
        "listen_v4 = \"{}:5436\"\nipv4_pool = \"10.171.0.0/24\"\nipv6_pool = \
         \"2001:db8:171::/56\"\nallowed_mags = [\"{}\"]\nadmin_listen = \"{admin}\"\n\
         timestamp_window_ms = 5000\n",
        ip(25),
        ip(21)
    );
    let mut lma = start(dir.path(), "lma", &config)?;
    let mut mag = TestMag::new(SocketAddr::new(ip(21).into(), 0), MagConfig::default())?;
    for n in 0..3 {
        mag.input(bul::Input::Register(request(n, ip(25), None)))?;
    }
    mag.run_until(Duration::from_secs(10), |e| {
        e.iter()
            .filter(|o| matches!(o, bul::Output::Registered { .. }))
            .count()
            == 3
    })?;
    let listed = bindings(admin)?;
    assert_eq!(listed.len(), 3, "{listed:?}");
    let held = mag
        .list
        .registration(&MobileNodeKey::new(&nai(1), Some(APN)))
        .context("registered")?
        .clone();
    let entry = listed
        .iter()
        .find(|b| b["mn_id"] == nai(1).as_str())
        .context("listed")?;
    assert_eq!(
        entry["ipv4_home_address"],
        held.ipv4_home_address
            .map(|a| a.addr().to_string())
            .unwrap()
    );
    assert_eq!(entry["apn"], APN);
    assert_eq!(entry["uplink_gre_key"], held.uplink_gre_key.unwrap().0);

    // One PDN connection, by NAI and APN: the MAG is told and loses exactly that one.
    let answer = lma_command(&[
        "revoke",
        "--admin",
        &admin.to_string(),
        "--nai",
        &nai(1),
        "--apn",
        APN,
    ])?;
    assert_eq!(answer["revoked"], 1);
    mag.run_until(Duration::from_secs(5), |e| {
        e.iter().any(|o| matches!(o, bul::Output::Lost { .. }))
    })?;
    assert!(mag.events.iter().any(|o| matches!(
        o,
        bul::Output::Lost { key, reason: RegistrationFailure::Revoked { trigger: 1 } }
            if *key.mn_id == nai(1)
    )));
    let status = lma_command(&["status", "--admin", &admin.to_string()])?;
    assert_eq!(status["revocation_acks"], 1, "{status}");
    assert_eq!(status["held_back"], 0, "{status}");
    assert_eq!(bindings(admin)?.len(), 2);

    // By address: the binding holding that IPv4 home address.
    let v4 = mag
        .list
        .registration(&MobileNodeKey::new(&nai(2), Some(APN)))
        .and_then(|r| r.ipv4_home_address)
        .context("registered")?;
    let answer = lma_command(&[
        "revoke",
        "--admin",
        &admin.to_string(),
        "--address",
        &v4.addr().to_string(),
    ])?;
    assert_eq!(answer["revoked"], 1);
    // Every binding of the MAG: one indication with the G bit.
    let answer = lma_command(&[
        "revoke",
        "--admin",
        &admin.to_string(),
        "--all-from-mag",
        &ip(21).to_string(),
    ])?;
    assert_eq!(answer["revoked"], 1);
    mag.run_until(Duration::from_secs(5), |_| false).ok();
    assert!(mag.list.is_empty(), "{:?}", mag.events);
    assert!(mag.lma_events.iter().any(|e| matches!(
        e,
        bul::LmaEvent::Revocation {
            global: true,
            status: 0,
            ..
        }
    )));
    // Nothing matches any more: the command fails with the interface's 404.
    let out = Command::new(node_binary("lma")?)
        .args(["revoke", "--admin", &admin.to_string(), "--nai", &nai(1)])
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no binding matches"));
    drop(lma.signal(libc::SIGTERM));
    assert_eq!(lma.wait_exit(Duration::from_secs(10))?, Some(0));
    Ok(())
}

#[test]
fn a_killed_home_gateway_restarted_with_its_state_keeps_the_roaming_addresses() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let home_admin = SocketAddr::new(ip(5).into(), 9436);
    let visited_admin = SocketAddr::new(ip(3).into(), 9437);
    let state = dir.path().join("home_restart_counter");
    let heartbeat = "[heartbeat]\ninterval_secs = 1\nmissing_allowed = 3\n";
    let home_config = format!(
        "listen_v4 = \"{}:5436\"\nipv4_pool = \"10.171.0.0/24\"\nipv6_pool = \
         \"2001:db8:171::/56\"\nallowed_mags = [\"{}\"]\nadmin_listen = \"{home_admin}\"\n\
         timestamp_window_ms = 5000\nrestart_counter_file = \"{}\"\n{heartbeat}",
        ip(5),
        ip(13),
        state.display()
    );
    let visited_config = format!(
        "listen_v4 = \"{}:5436\"\nipv4_pool = \"10.172.0.0/24\"\nallowed_mags = [\"{}\"]\n\
         admin_listen = \"{visited_admin}\"\ntimestamp_window_ms = 5000\n{heartbeat}\
         [chaining]\nhome_gateways = [\"{}\"]\nlocal_v4 = \"{}\"\nretransmit_ms = 200\n",
        ip(3),
        ip(1),
        ip(5),
        ip(13)
    );
    let home = start(dir.path(), "home", &home_config)?;
    let _visited = start(dir.path(), "visited", &visited_config)?;
    let mut epdg = TestMag::new(SocketAddr::new(ip(1).into(), 0), MagConfig::default())?;
    for n in 0..5 {
        epdg.input(bul::Input::Register(request(n, ip(3), Some(ip(5)))))?;
    }
    epdg.run_until(Duration::from_secs(10), |e| {
        e.iter()
            .filter(|o| matches!(o, bul::Output::Registered { .. }))
            .count()
            == 5
    })?;
    let before = bindings(home_admin)?;
    let relay_before = bindings(visited_admin)?;
    assert_eq!(before.len(), 5);
    // Heartbeats: the visited gateway learns the home's counter.
    epdg.run_until(Duration::from_secs(3), |_| false).ok();

    home.signal(libc::SIGKILL)?;
    drop(home);
    std::thread::sleep(Duration::from_secs(2));
    let home = start(dir.path(), "home", &home_config)?;
    // The unsolicited heartbeat tells the visited gateway, which registers again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let after = loop {
        let listed = bindings(home_admin)?;
        if listed.len() == 5 || std::time::Instant::now() > deadline {
            break listed;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(after.len(), 5, "{after:?}\n{}", home.output());
    for old in &before {
        let new = after
            .iter()
            .find(|b| b["mn_id"] == old["mn_id"])
            .context("registered again")?;
        assert_eq!(new["ipv4_home_address"], old["ipv4_home_address"]);
        assert_eq!(new["home_network_prefix"], old["home_network_prefix"]);
        assert_ne!(new["uplink_gre_key"], old["uplink_gre_key"]);
    }
    // The relay uses the restarted home's keys; the ePDG's side is untouched.
    let relay_after = bindings(visited_admin)?;
    for old in &relay_before {
        let new = relay_after
            .iter()
            .find(|b| b["mn_id"] == old["mn_id"])
            .context("still chained")?;
        assert_eq!(new["uplink_gre_key"], old["uplink_gre_key"]);
        assert_ne!(new["home_uplink_gre_key"], old["home_uplink_gre_key"]);
        let home_key = after
            .iter()
            .find(|b| b["mn_id"] == old["mn_id"])
            .map(|b| b["uplink_gre_key"].clone());
        assert_eq!(Some(new["home_uplink_gre_key"].clone()), home_key);
    }
    // The ePDG lost nothing.
    epdg.run_until(Duration::from_secs(1), |_| false).ok();
    assert!(!epdg
        .events
        .iter()
        .any(|o| matches!(o, bul::Output::Lost { .. } | bul::Output::Failed { .. })));
    let status = lma_command(&["status", "--admin", &home_admin.to_string()])?;
    assert_eq!(status["restart_counter"], 2, "{status}");
    assert_eq!(status["held_back"], 0, "{status}");
    Ok(())
}
