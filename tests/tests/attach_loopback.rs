//! The whole S2b attach on loopback: the real `lma` and `mag` binaries and `ue-emu
//! attach`, with an AAA (Diameter SWm with EAP-AKA) run in this process, each node on
//! its own 127.0.0.x address.
//!
//! Checked: the UE's addresses are inside the LMA's pools and are the ones the LMA
//! logged for the binding; in the ePDG's pcap (decrypted by tshark with the ePDG's
//! keylog) the EAP-Success comes after the PBA; the failures (unknown APN, LMA down,
//! AAA down, wrong K) give the UE a clear notify and leave no Diameter session and no
//! binding behind.
//!
//! The AAA is the `aaa-stub` server run in this process (`integration_tests::aaa`), so
//! the test reads its open Diameter sessions and has it send an Abort-Session-Request.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use integration_tests::aaa::{InTestAaa, APN, IMSI, K, OPC};
use integration_tests::{node_binary, ue_emu_attach, write_file, Node};
use ipnet::{Ipv4Net, Ipv6Net};
use pmip_common::diameter::codes::result;

use serde_json::Value;
const IPV4_POOL: &str = "10.45.0.0/22";
const IPV6_POOL: &str = "2001:db8:45::/54";

/// The nodes of one scenario on 127.0.<net>.x: .1 UE, .2 ePDG, .3 LMA, .4 AAA.
struct Lab {
    dir: tempfile::TempDir,
    net: u8,
    lma: Option<Node>,
    aaa: Option<InTestAaa>,
    mag: Node,
}

fn ip(net: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, net, host)
}

impl Lab {
    fn start(net: u8, with_lma: bool, with_aaa: bool) -> Result<Lab> {
        Self::start_with_pool(net, with_lma, with_aaa, IPV4_POOL)
    }

    fn start_with_pool(net: u8, with_lma: bool, with_aaa: bool, ipv4_pool: &str) -> Result<Lab> {
        Self::start_full(net, with_lma, with_aaa, ipv4_pool, None, "")
    }

    /// `v6`: the (mag, lma) IPv6 addresses for IPv6 transport of the Mobility Header.
    fn start_full(
        net: u8,
        with_lma: bool,
        with_aaa: bool,
        ipv4_pool: &str,
        v6: Option<(Ipv6Addr, Ipv6Addr)>,
        extra_mag: &str,
    ) -> Result<Lab> {
        let dir = tempfile::tempdir()?;
        let lma_v6 = v6
            .map(|(mag, lma)| {
                format!(
                    "listen_v6 = \"{lma}\"\nallowed_mags = [\"{}\", \"{mag}\"]\n",
                    ip(net, 2)
                )
            })
            .unwrap_or_else(|| format!("allowed_mags = [\"{}\"]\n", ip(net, 2)));
        let mag_v6 = v6
            .map(|(mag, _)| format!("mh_local_v6 = \"{mag}\"\n"))
            .unwrap_or_default();
        let gateway: IpAddr = v6.map_or(ip(net, 3).into(), |(_, lma)| lma.into());
        let lma = if with_lma {
            let config = write_file(
                dir.path(),
                "lma.toml",
                &format!(
                    "listen_v4 = \"{}:5436\"\nipv4_pool = \"{ipv4_pool}\"\nipv6_pool = \"{IPV6_POOL}\"\n\
                     timestamp_window_ms = 7000\n{lma_v6}",
                    ip(net, 3),
                ),
            )?;
            let mut lma = Node::start("lma", &["--config", path(&config)?])?;
            lma.wait_for("lma listening", Duration::from_secs(30))?;
            Some(lma)
        } else {
            None
        };
        let aaa = if with_aaa {
            Some(InTestAaa::start(ip(net, 4), gateway)?)
        } else {
            None
        };
        let aaa_addr = aaa
            .as_ref()
            .map(|a| a.addr.to_string())
            .unwrap_or_else(|| format!("{}:3868", ip(net, 4)));
        let config = write_file(
            dir.path(),
            "mag.toml",
            &format!(
                "ike_listen = \"{epdg}:500\"\nnatt_listen = \"{epdg}:4500\"\naaa = \"{aaa_addr}\"\n\
                 mh_local = \"{epdg}\"\ndns = [\"10.45.0.1\"]\npcscf = [\"10.46.0.2\", \"2001:db8:46::2\"]\n\
                 pbu_retransmit_ms = 200\npbu_max_retransmissions = 2\ndiameter_timeout_ms = 2000\n\
                 half_open_timeout_secs = 2\nliveness_interval_secs = 1\nike_retransmit_ms = 100\nike_max_retransmissions = 2\n\
                 pcap = \"{pcap}\"\nkeylog = \"{keylog}\"\nstatus_file = \"{status}\"\n{mag_v6}{extra_mag}",
                epdg = ip(net, 2),
                pcap = dir.path().join("mag.pcap").display(),
                keylog = dir.path().join("mag.keylog").display(),
                status = dir.path().join("status.json").display(),
            ),
        )?;
        let mut mag = Node::start("mag", &["--config", path(&config)?])?;
        mag.wait_for("mag listening", Duration::from_secs(30))?;
        if with_aaa {
            mag.wait_for("Diameter peer open", Duration::from_secs(10))?;
        }
        Ok(Lab {
            dir,
            net,
            lma,
            aaa,
            mag,
        })
    }

    /// Runs `ue-emu attach --json` and returns its exit code and report.
    fn attach(&self, apn: &str, k: &str) -> Result<(Option<i32>, Value)> {
        self.attach_as(IMSI, apn, k, &[])
    }

    /// Runs `ue-emu attach --json` for `imsi` with `extra` flags.
    fn attach_as(
        &self,
        imsi: &str,
        apn: &str,
        k: &str,
        extra: &[&str],
    ) -> Result<(Option<i32>, Value)> {
        let config = write_file(
            self.dir.path(),
            &format!("ue-{imsi}.toml"),
            &format!(
                "imsi = \"{imsi}\"\nmnc_digits = 2\nk = \"{k}\"\nopc = \"{OPC}\"\n\
                 epdg = \"{}:500\"\nlocal = \"{}\"\napn = \"{apn}\"\ntimeout_ms = 10000\n",
                ip(self.net, 2),
                ip(self.net, 1)
            ),
        )?;
        ue_emu_attach(&config, extra)
    }

    /// Waits until `check` holds, up to five seconds.
    fn eventually(&self, what: &str, check: impl Fn(&Lab) -> bool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !check(self) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{what}\nmag:\n{}\nlma:\n{}",
                self.mag.output(),
                self.lma.as_ref().map(|l| l.output()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn no_sessions(&self) -> Result<()> {
        self.eventually("Diameter sessions left at the AAA", |l| {
            l.aaa.as_ref().map_or(0, |a| a.open_sessions()) == 0
        })
    }

    fn lma_lines(&self, outcome: &str) -> Vec<String> {
        self.lma
            .as_ref()
            .map(|l| l.output())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" PBU") && l.contains(&format!("outcome=\"{outcome}\"")))
            .map(str::to_string)
            .collect()
    }
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

/// Frame numbers of the PBAs and of the EAP-Successes in the ePDG's pcap, by tshark
/// with the ePDG's keylog.
fn pba_and_eap_success_frames(dir: &Path) -> Result<(Vec<u32>, Vec<u32>)> {
    let keylog = std::fs::read_to_string(dir.join("mag.keylog"))?;
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(dir.join("mag.pcap"));
    for record in keylog.lines().filter(|l| !l.is_empty()) {
        cmd.arg("-o")
            .arg(format!("uat:ikev2_decryption_table:{record}"));
    }
    cmd.args([
        "-T",
        "fields",
        "-e",
        "frame.number",
        "-e",
        "mip6.mhtype",
        "-e",
        "eap.code",
    ]);
    let out = cmd.output().context("running tshark (scripts/setup.sh)")?;
    anyhow::ensure!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mut pba, mut success) = (Vec::new(), Vec::new());
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let n: u32 = f.first().and_then(|n| n.parse().ok()).unwrap_or(0);
        if f.get(1) == Some(&"6") {
            pba.push(n);
        }
        if f.get(2).is_some_and(|c| c.split(',').any(|c| c == "3")) {
            success.push(n);
        }
    }
    Ok((pba, success))
}

/// tshark's complaints about the ePDG's pcap (malformed packets, expert info), with the
/// IKE_AUTH decrypted by the keylog; and how many IKE messages it decrypted.
fn tshark_complaints(dir: &Path, diameter_port: u16) -> Result<(String, usize)> {
    let keylog = std::fs::read_to_string(dir.join("mag.keylog"))?;
    let run = |filter: &str| -> Result<String> {
        let mut cmd = Command::new("tshark");
        cmd.arg("-r").arg(dir.join("mag.pcap"));
        for record in keylog.lines().filter(|l| !l.is_empty()) {
            cmd.arg("-o")
                .arg(format!("uat:ikev2_decryption_table:{record}"));
        }
        cmd.arg("-d")
            .arg(format!("tcp.port=={diameter_port},diameter"));
        cmd.args(["-Y", filter, "-T", "fields", "-e", "frame.number"]);
        let out = cmd.output().context("running tshark (scripts/setup.sh)")?;
        anyhow::ensure!(
            out.status.success(),
            "tshark: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    // Expert info of severity note and above (the synthetic TCP handshake of the Diameter
    // stream carries "chat" items, which are not complaints).
    let complaints = run("_ws.malformed || _ws.expert.severity >= 0x400000")?;
    let decrypted = run("isakmp.enc.icd")?.lines().count();
    // The SWm exchange is in the capture too: DER/DEA and STR/STA. (No AAR/AAA: the
    // AAA names the APN's gateway in the final DEA already, TS 29.273 section 7.2.2.1.)
    for (code, least) in [(268, 4), (275, 2)] {
        let n = run(&format!("diameter.cmd.code == {code}"))?
            .lines()
            .count();
        anyhow::ensure!(n >= least, "{n} Diameter messages of command {code}");
    }
    Ok((complaints, decrypted))
}

/// The ePDG's last word on its state: no IKE SA, no AAA session, no binding left.
fn mag_left_nothing(lab: &Lab) -> Result<()> {
    lab.eventually("the mag kept state", |l| {
        let out = l.mag.output();
        let last = out.lines().rev().find(|x| x.contains("UE state removed"));
        last.is_some_and(|x| x.contains("ike_sas=0") && x.contains("aaa_sessions=0"))
            && out
                .lines()
                .rev()
                .find(|x| x.contains("binding removed"))
                .is_none_or(|x| x.contains("bindings=0"))
    })
}

#[test]
fn attach_gets_the_lma_addresses_and_eap_success_follows_the_pba() -> Result<()> {
    let lab = Lab::start(61, true, true)?;
    let (code, report) = lab.attach(APN, K)?;
    assert_eq!(code, Some(0), "{report}\n{}", lab.mag.output());
    assert_eq!(report["result"], "attached");
    assert_eq!(report["imsi"], IMSI);
    let ipv4: Ipv4Addr = report["ipv4"].as_str().context("ipv4")?.parse()?;
    let prefix: Ipv6Net = report["ipv6_prefix"]
        .as_str()
        .context("ipv6_prefix")?
        .parse()?;
    assert!(IPV4_POOL.parse::<Ipv4Net>()?.contains(&ipv4), "{ipv4}");
    assert!(IPV6_POOL.parse::<Ipv6Net>()?.contains(&prefix), "{prefix}");
    assert_eq!(prefix.prefix_len(), 64);
    assert_eq!(report["dns"][0], "10.45.0.1");
    assert_eq!(report["pcscf"].as_array().map(Vec::len), Some(2));
    let steps = report["steps"].as_array().context("steps")?;
    assert!(steps.iter().all(|s| s["ms"].is_number()));

    // The LMA registered exactly these addresses.
    let registered = lab.lma_lines("registered");
    assert_eq!(
        registered.len(),
        1,
        "{}",
        lab.lma.as_ref().unwrap().output()
    );
    assert!(
        registered[0].contains(&ipv4.to_string()) && registered[0].contains(&prefix.to_string()),
        "{}",
        registered[0]
    );
    assert!(lab.mag.output().contains("UE attached"));

    // The UE detached: de-registration at the LMA, STR at the AAA.
    lab.eventually("no de-registration at the LMA", |l| {
        !l.lma_lines("deregistered").is_empty()
    })?;
    lab.no_sessions()?;
    // An Abort-Session-Request for the ended session (a request the mag does not
    // implement) gets an answer: DIAMETER_COMMAND_UNSUPPORTED.
    let aaa = lab.aaa.as_ref().context("aaa")?;
    assert_eq!(
        aaa.abort_session("epdg.test;ended;1")?,
        result::DIAMETER_COMMAND_UNSUPPORTED
    );

    // The gate, seen on the wire.
    let (pba, success) = pba_and_eap_success_frames(lab.dir.path())?;
    assert!(!pba.is_empty() && success.len() == 1, "{pba:?} {success:?}");
    assert!(
        pba[0] < success[0],
        "PBA {pba:?} before EAP-Success {success:?}"
    );

    // tshark decodes every message clean, the encrypted IKE_AUTH included.
    let (complaints, decrypted) =
        tshark_complaints(lab.dir.path(), lab.aaa.as_ref().context("aaa")?.addr.port())?;
    assert_eq!(complaints, "", "frames tshark complains about");
    assert!(decrypted >= 6, "{decrypted} decrypted IKE messages");
    mag_left_nothing(&lab)
}

#[test]
fn unknown_apn_is_refused_with_no_apn_subscription() -> Result<()> {
    let lab = Lab::start(62, true, true)?;
    let (code, report) = lab.attach("nosuch.apn", K)?;
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["result"], "failed");
    let notify = report["notify"].as_str().unwrap_or_default();
    assert!(notify.contains("NoApnSubscription"), "{report}");
    lab.no_sessions()?;
    assert!(lab.lma_lines("registered").is_empty());
    mag_left_nothing(&lab)
}

#[test]
fn lma_down_is_a_network_failure_and_leaves_no_session() -> Result<()> {
    let lab = Lab::start(63, false, true)?;
    let (code, report) = lab.attach(APN, K)?;
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report["notify"]
            .as_str()
            .unwrap_or_default()
            .contains("NetworkFailure"),
        "{report}"
    );
    lab.no_sessions()?;
    mag_left_nothing(&lab)
}

#[test]
fn aaa_down_is_a_network_failure() -> Result<()> {
    let lab = Lab::start(64, true, false)?;
    let (code, report) = lab.attach(APN, K)?;
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report["notify"]
            .as_str()
            .unwrap_or_default()
            .contains("NetworkFailure"),
        "{report}"
    );
    assert!(lab.lma_lines("registered").is_empty());
    mag_left_nothing(&lab)
}

#[test]
fn wrong_k_is_an_authentication_failure() -> Result<()> {
    let lab = Lab::start(65, true, true)?;
    let (code, report) = lab.attach(APN, "000102030405060708090a0b0c0d0e0f")?;
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report["notify"]
            .as_str()
            .unwrap_or_default()
            .contains("AuthenticationFailed"),
        "{report}"
    );
    lab.no_sessions()?;
    assert!(lab.lma_lines("registered").is_empty());
    mag_left_nothing(&lab)
}

#[test]
fn exhausted_pool_is_a_pdn_connection_rejection() -> Result<()> {
    // One assignable IPv4 address: the first UE holds it, the second is refused.
    let lab = Lab::start_with_pool(66, true, true, "10.45.0.0/30")?;
    let (code, first) = lab.attach_as(IMSI, APN, K, &["--no-detach"])?;
    assert_eq!(code, Some(0), "{first}");
    let (code, second) = lab.attach_as("234150999999998", APN, K, &[])?;
    assert_eq!(code, Some(1), "{second}");
    assert!(
        second["notify"]
            .as_str()
            .unwrap_or_default()
            .contains("PdnConnectionRejection"),
        "{second}"
    );
    // Only the first UE's session is left.
    lab.eventually("the refused UE's AAA session is left", |l| {
        l.aaa.as_ref().map_or(0, |a| a.open_sessions()) == 1
    })?;
    assert_eq!(lab.lma_lines("registered").len(), 1);
    Ok(())
}

#[test]
fn without_eap_only_the_epdg_signs_with_its_certificate() -> Result<()> {
    let lab = Lab::start(67, true, true)?;
    let config = write_file(
        lab.dir.path(),
        "ue-cert.toml",
        &format!(
            "imsi = \"{IMSI}\"\nmnc_digits = 2\nk = \"{K}\"\nopc = \"{OPC}\"\n\
             epdg = \"{}:500\"\nlocal = \"{}\"\napn = \"{APN}\"\neap_only = false\n",
            ip(67, 2),
            ip(67, 1)
        ),
    )?;
    let ue = |insecure: bool| -> Result<(Option<i32>, Value)> {
        let mut cmd = Command::new(node_binary("ue-emu")?);
        cmd.args(["attach", "--json", "--config", path(&config)?]);
        if insecure {
            cmd.arg("--insecure");
        }
        let out = cmd.output()?;
        Ok((
            out.status.code(),
            serde_json::from_slice(&out.stdout).context("ue-emu JSON")?,
        ))
    };
    // No pinned key and no --insecure: the UE refuses the ePDG. It leaves silently, so
    // the ePDG drops that IKE SA (and its AAA session) at the half-open timeout.
    let (code, report) = ue(false)?;
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report["error"]
            .as_str()
            .unwrap_or_default()
            .contains("PeerNotAuthenticated"),
        "{report}"
    );
    // --insecure: the certificate AUTH is accepted unchecked and the attach completes.
    let (code, report) = ue(true)?;
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["result"], "attached");

    // Pinned: the key the ePDG logged at start.
    let out = lab.mag.output();
    let key = out
        .split("public_key=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .context("the mag logged no public key")?
        .trim_matches('"')
        .to_string();
    let pinned = write_file(
        lab.dir.path(),
        "ue-pinned.toml",
        &format!(
            "{}epdg_public_key = \"{key}\"\n",
            std::fs::read_to_string(&config)?
        ),
    )?;
    let out = Command::new(node_binary("ue-emu")?)
        .args(["attach", "--json", "--config", path(&pinned)?])
        .output()?;
    let report: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(out.status.code(), Some(0), "{report}");
    lab.no_sessions()?;
    mag_left_nothing(&lab)
}

#[test]
fn a_silent_ue_is_detached_by_the_liveness_check() -> Result<()> {
    let lab = Lab::start(68, true, true)?;
    // The UE leaves without a DELETE: the ePDG's liveness check goes unanswered.
    let (code, report) = lab.attach_as(IMSI, APN, K, &["--no-detach"])?;
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["detached"], false);
    lab.eventually("no de-registration of the silent UE", |l| {
        !l.lma_lines("deregistered").is_empty()
    })?;
    lab.no_sessions()?;
    assert!(lab.mag.output().contains("UE detached"));
    mag_left_nothing(&lab)
}

/// An IPv6 address on the loopback device for the duration of a test (root only), so the
/// MAG's and the LMA's raw sockets each see only the packets addressed to them.
struct LoopbackAddress(Ipv6Addr);

impl LoopbackAddress {
    fn add(addr: Ipv6Addr) -> Result<Self> {
        let cidr = format!("{addr}/128");
        let _ = Command::new("ip")
            .args(["-6", "addr", "del", &cidr, "dev", "lo"])
            .output();
        let status = Command::new("ip")
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
        let _ = Command::new("ip")
            .args(["-6", "addr", "del", &format!("{}/128", self.0), "dev", "lo"])
            .output();
    }
}

#[test]
fn attach_over_ipv6_transport_to_the_lma() -> Result<()> {
    let (mag6, lma6): (Ipv6Addr, Ipv6Addr) = ("fd00:45:69::2".parse()?, "fd00:45:69::3".parse()?);
    let _addresses = (LoopbackAddress::add(mag6)?, LoopbackAddress::add(lma6)?);
    let lab = Lab::start_full(69, true, true, IPV4_POOL, Some((mag6, lma6)), "")?;
    let (code, report) = lab.attach(APN, K)?;
    assert_eq!(code, Some(0), "{report}\n{}", lab.mag.output());
    let ipv4 = report["ipv4"].as_str().context("ipv4")?;
    let registered = lab.lma_lines("registered");
    assert_eq!(
        registered.len(),
        1,
        "{}",
        lab.lma.as_ref().unwrap().output()
    );
    assert!(
        registered[0].contains(&format!("mag={mag6}")) || registered[0].contains(&mag6.to_string()),
        "{}",
        registered[0]
    );
    assert!(registered[0].contains(ipv4), "{}", registered[0]);
    lab.eventually("no de-registration over IPv6", |l| {
        !l.lma_lines("deregistered").is_empty()
    })?;
    lab.no_sessions()?;
    // tshark checks the MH checksums the pcap copies carry, over IPv6.
    let aaa_port = lab.aaa.as_ref().context("aaa")?.addr.port();
    let (complaints, _) = tshark_complaints(lab.dir.path(), aaa_port)?;
    assert_eq!(complaints, "", "frames tshark complains about");
    mag_left_nothing(&lab)
}

#[test]
fn an_out_of_sync_usim_resynchronises_with_auts() -> Result<()> {
    let lab = Lab::start(70, true, true)?;
    // The USIM has seen SQNs far beyond the AAA's: it answers the first challenge with
    // AUTS, the AAA challenges again with a fresh SQN, and the attach completes.
    let config = write_file(
        lab.dir.path(),
        "ue-ahead.toml",
        &format!(
            "imsi = \"{IMSI}\"\nmnc_digits = 2\nk = \"{K}\"\nopc = \"{OPC}\"\nsqn = 1000000\n\
             epdg = \"{}:500\"\nlocal = \"{}\"\napn = \"{APN}\"\n",
            ip(70, 2),
            ip(70, 1)
        ),
    )?;
    let out = Command::new(node_binary("ue-emu")?)
        .args(["attach", "--json", "--config", path(&config)?])
        .output()?;
    let report: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(out.status.code(), Some(0), "{report}");
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .context("steps")?
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(
        steps.iter().any(|s| s.contains("EAP-Request #2")),
        "{steps:?}"
    );
    lab.no_sessions()?;
    mag_left_nothing(&lab)
}

/// The pid of the process started with this exact configuration file.
fn pid_of(config: &Path) -> Result<i32> {
    let needle = config.to_str().context("path")?;
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline)
            .split('\0')
            .any(|arg| arg == needle)
        {
            return Ok(pid);
        }
    }
    anyhow::bail!("no process runs with {needle}")
}

#[test]
fn sigterm_detaches_every_ue_first() -> Result<()> {
    let mut lab = Lab::start(71, true, true)?;
    let (code, report) = lab.attach_as(IMSI, APN, K, &["--no-detach"])?;
    assert_eq!(code, Some(0), "{report}");
    // The status file shows the UE with the addresses it got.
    let status_path = lab.dir.path().join("status.json");
    let status = || -> Value {
        std::fs::read(&status_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    };
    lab.eventually("no attached UE in the status file", |_| {
        status()["attached"][0]["ipv4"] == report["ipv4"]
    })?;
    assert_eq!(status()["ike_sas"], 1);
    assert_eq!(
        status()["attached"][0]["ipv6_prefix"],
        report["ipv6_prefix"]
    );
    let pid = pid_of(&lab.dir.path().join("mag.toml"))?;
    // SAFETY: signalling the mag this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    lab.mag.wait_exit(Duration::from_secs(5))?;
    let out = lab.mag.output();
    let stopped = out.lines().find(|l| l.contains("mag stopped"));
    assert!(stopped.is_some_and(|l| l.contains("bindings=0")), "{out}");
    assert_eq!(lab.lma_lines("deregistered").len(), 1);
    let after = status();
    assert_eq!(
        (
            &after["ike_sas"],
            &after["bindings"],
            &after["aaa_sessions"]
        ),
        (&Value::from(0), &Value::from(0), &Value::from(0)),
        "{after}"
    );
    lab.no_sessions()
}

#[test]
fn the_ue_checks_the_epdg_certificate_against_the_lab_ca() -> Result<()> {
    let pki = tempfile::tempdir()?;
    let other = tempfile::tempdir()?;
    for dir in [&pki, &other] {
        let status = Command::new(node_binary("mag")?)
            .arg("--generate-lab-pki")
            .arg(dir.path())
            .status()?;
        assert!(status.success());
    }
    let extra = format!(
        "certificate = \"{}\"\nprivate_key = \"{}\"\n",
        pki.path().join("epdg.der").display(),
        pki.path().join("epdg.key.der").display()
    );
    let lab = Lab::start_full(72, true, true, IPV4_POOL, None, &extra)?;
    let ue = |ca: &Path| -> Result<(Option<i32>, Value)> {
        let config = write_file(
            lab.dir.path(),
            "ue-ca.toml",
            &format!(
                "imsi = \"{IMSI}\"\nmnc_digits = 2\nk = \"{K}\"\nopc = \"{OPC}\"\n\
                 epdg = \"{}:500\"\nlocal = \"{}\"\napn = \"{APN}\"\neap_only = false\n\
                 epdg_ca = \"{}\"\n",
                ip(72, 2),
                ip(72, 1),
                ca.display()
            ),
        )?;
        let out = Command::new(node_binary("ue-emu")?)
            .args(["attach", "--json", "--config", path(&config)?])
            .output()?;
        Ok((out.status.code(), serde_json::from_slice(&out.stdout)?))
    };
    let (code, report) = ue(&pki.path().join("ca.der"))?;
    assert_eq!(code, Some(0), "{report}\n{}", lab.mag.output());
    // A certificate from another CA is refused.
    let (code, report) = ue(&other.path().join("ca.der"))?;
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report["error"]
            .as_str()
            .unwrap_or_default()
            .contains("PeerNotAuthenticated"),
        "{report}"
    );
    Ok(())
}

#[test]
fn a_ue_back_without_deleting_its_old_sa_takes_its_binding_over() -> Result<()> {
    let lab = Lab::start(73, true, true)?;
    let (code, first) = lab.attach_as(IMSI, APN, K, &["--no-detach"])?;
    assert_eq!(code, Some(0), "{first}");
    let (code, second) = lab.attach(APN, K)?;
    assert_eq!(code, Some(0), "{second}\n{}", lab.mag.output());
    assert_eq!(first["ipv4"], second["ipv4"]);
    assert_eq!(first["ipv6_prefix"], second["ipv6_prefix"]);
    assert!(lab.mag.output().contains("binding handed over"));
    assert_eq!(lab.lma_lines("registered").len(), 1);
    lab.eventually("no de-registration", |l| {
        !l.lma_lines("deregistered").is_empty()
    })?;
    lab.no_sessions()?;
    mag_left_nothing(&lab)
}

#[test]
fn the_mag_reconnects_when_the_aaa_comes_back() -> Result<()> {
    let mut lab = Lab::start(74, true, false)?;
    let (code, report) = lab.attach(APN, K)?;
    assert_eq!(code, Some(1), "{report}");
    lab.aaa = Some(InTestAaa::start_at(
        SocketAddr::new(ip(74, 4).into(), 3868),
        ip(74, 3).into(),
    )?);
    lab.mag
        .wait_for("Diameter peer open", Duration::from_secs(10))?;
    let (code, report) = lab.attach(APN, K)?;
    assert_eq!(code, Some(0), "{report}");
    lab.no_sessions()?;
    mag_left_nothing(&lab)
}

#[test]
fn the_ladder_and_cookies() -> Result<()> {
    // cookie_threshold 0: every IKE_SA_INIT must carry a cookie; the UE follows the
    // COOKIE answer (RFC 7296 section 2.6).
    let lab = Lab::start_full(75, true, true, IPV4_POOL, None, "cookie_threshold = 0\n")?;
    let config = write_file(
        lab.dir.path(),
        "ue-ladder.toml",
        &format!(
            "imsi = \"{IMSI}\"\nmnc_digits = 2\nk = \"{K}\"\nopc = \"{OPC}\"\n\
             epdg = \"{}:500\"\nlocal = \"{}\"\napn = \"{APN}\"\n",
            ip(75, 2),
            ip(75, 1)
        ),
    )?;
    let out = Command::new(node_binary("ue-emu")?)
        .args(["attach", "--config", path(&config)?])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for needle in [
        "IKE_SA_INIT",
        "EAP-Success (after PBA)",
        "CFG_REPLY",
        "result: attached",
        "ipv4:",
        "ipv6 prefix:",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
    assert!(
        text.lines()
            .filter(|l| l.trim_end().ends_with(" ms"))
            .count()
            >= 4
    );
    lab.no_sessions()?;
    mag_left_nothing(&lab)
}

#[test]
fn a_retransmitted_ike_sa_init_gets_the_same_sa() -> Result<()> {
    use pmip_common::ike::initiator::{InitiatorConfig, InitiatorSa};
    use pmip_common::ike::sa::{Output, RetransmitPolicy};
    use pmip_common::ike::wire::{Identification, TrafficSelector};
    use pmip_common::ike::{EspSuite, IkeSuite};
    let lab = Lab::start(76, true, true)?;
    let socket = std::net::UdpSocket::bind((ip(76, 1), 0))?;
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    let epdg = SocketAddr::new(ip(76, 2).into(), 500);
    let mut out = Vec::new();
    let _sa = InitiatorSa::start(
        InitiatorConfig {
            suites: IkeSuite::defaults(),
            esp_suites: EspSuite::defaults(),
            idi: Identification::Rfc822Addr("x@test".into()),
            idr: None,
            cp_request: vec![],
            tsi: vec![TrafficSelector::any_ipv4()],
            tsr: vec![TrafficSelector::any_ipv4()],
            local: socket.local_addr()?,
            remote: epdg,
            force_port_4500: false,
            eap_only: true,
            peer_verifier: None,
            retransmit: RetransmitPolicy::default(),
            ..InitiatorConfig::default()
        },
        Instant::now(),
        &mut rand::rngs::OsRng,
        &mut out,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(Output::Send { bytes, .. }) = out.first() else {
        anyhow::bail!("no IKE_SA_INIT: {out:?}");
    };
    let mut answers = Vec::new();
    for _ in 0..2 {
        socket.send_to(bytes, epdg)?;
        let mut buf = [0u8; 2048];
        let (n, _) = socket.recv_from(&mut buf)?;
        answers.push(buf[..n].to_vec());
    }
    assert_eq!(answers[0], answers[1], "the same answer, the same SA");
    let ike_sas = |l: &Lab| -> Value {
        std::fs::read(l.dir.path().join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .map(|v| v["ike_sas"].clone())
            .unwrap_or_default()
    };
    lab.eventually("no IKE SA in the status file", |l| ike_sas(l) == 1)?;
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(ike_sas(&lab), 1);
    Ok(())
}
