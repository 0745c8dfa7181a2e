//! The network-namespace lab (`scripts/netns-lab.sh`, issue 5 item 6) with the real
//! nodes in their namespaces. Needs root (namespaces, veths, TUN devices, raw sockets);
//! skipped with a message otherwise. Address blocks: lab tags 3 and 4.

use std::time::Duration;

use anyhow::Result;
use integration_tests::lab::{is_root, Lab};

fn skip_unless_root(test: &str) -> bool {
    if !is_root() {
        eprintln!("SKIPPED {test}: needs root (network namespaces)");
        return true;
    }
    false
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
    let sleeper = lab.command("pdn", "sleep").arg("600").spawn()?;
    std::thread::sleep(Duration::from_millis(200));
    assert!(lab.pids().contains(&sleeper.id()));
    lab.down()?;
    let pid = sleeper.id();
    let mut sleeper = sleeper;
    let status = sleeper.wait()?;
    assert!(!status.success(), "sleep {pid} was not killed: {status}");
    assert_eq!(Lab::leftovers(&name)?, Vec::<String>::new());
    Ok(())
}
