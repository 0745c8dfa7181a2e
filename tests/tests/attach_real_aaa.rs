//! The attach and its failures against the real `aaa-stub`: the real `aaa-stub`, `lma` and
//! `mag` binaries on loopback (127.0.<net>.x, nets 111..117: .1 UE, .2 ePDG, .3 LMA, .4
//! AAA) and `ue-emu attach --json`.
//!
//! Success: the UE's addresses are inside the LMA's pools and are the LMA's logged
//! binding; after the detach the AAA has 0 sessions. Failures (wrong K, unknown APN, LMA
//! down, LMA pool exhausted, AAA down): the UE exits non-zero naming the notify, and
//! afterwards the ePDG's status file shows 0 IKE SAs, 0 AAA sessions and 0 bindings, the
//! LMA holds no binding for that UE (its PBU log) and the aaa-stub's `--status-file`
//! shows 0 sessions.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use integration_tests::{ue_emu_attach, write_file, Node};
use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::Value;

const K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
const WRONG_K: &str = "000102030405060708090a0b0c0d0e0f";
const OPC: &str = "cd63cb71954a9f4e48a5994e37a02baf";
const IMSI: &str = "001010000000001";
const IMSI2: &str = "001010000000002";
const APN: &str = "internet";
const IPV4_POOL: &str = "10.111.0.0/22";
const IPV6_POOL: &str = "2001:db8:111::/54";

fn ip(net: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, net, host)
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

struct Lab {
    dir: tempfile::TempDir,
    net: u8,
    aaa: Option<Node>,
    lma: Option<Node>,
    mag: Node,
}

impl Lab {
    fn start(net: u8, with_lma: bool, with_aaa: bool, ipv4_pool: &str) -> Result<Lab> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        write_file(
            d,
            "subscribers.toml",
            &format!(
                "[[subscriber]]\nimsi = \"{IMSI}\"\nk = \"{K}\"\nopc = \"{OPC}\"\napns = [\"{APN}\"]\n\
                 [[subscriber]]\nimsi = \"{IMSI2}\"\nk = \"{K}\"\nopc = \"{OPC}\"\napns = [\"{APN}\"]\n"
            ),
        )?;
        let epdg_peer = integration_tests::aaa_peer_epdg_loopback();
        let aaa_config = write_file(
            d,
            "aaa.toml",
            &format!(
                "origin_host = \"aaa.epc.mnc001.mcc001.3gppnetwork.org\"\n\
                 origin_realm = \"epc.mnc001.mcc001.3gppnetwork.org\"\nlisten = \"{}:3868\"\n\
                 subscribers = \"subscribers.toml\"\nsqn_state = \"sqn.toml\"\n{epdg_peer}[gateways]\n{APN} = \"{}\"\n",
                ip(net, 4),
                ip(net, 3)
            ),
        )?;
        let aaa = if with_aaa {
            let status = d.join("aaa-status.json");
            let mut aaa = Node::start(
                "aaa-stub",
                &[
                    "--config",
                    path(&aaa_config)?,
                    "--status-file",
                    path(&status)?,
                ],
            )?;
            aaa.wait_for("aaa listening", Duration::from_secs(30))?;
            Some(aaa)
        } else {
            None
        };
        let lma = if with_lma {
            let config = write_file(
                d,
                "lma.toml",
                &format!(
                    "listen_v4 = \"{}:5436\"\nipv4_pool = \"{ipv4_pool}\"\nipv6_pool = \"{IPV6_POOL}\"\n\
                     allowed_mags = [\"{}\"]\n",
                    ip(net, 3),
                    ip(net, 2)
                ),
            )?;
            let mut lma = Node::start("lma", &["--config", path(&config)?])?;
            lma.wait_for("lma listening", Duration::from_secs(30))?;
            Some(lma)
        } else {
            None
        };
        let mag_config = write_file(
            d,
            "mag.toml",
            &format!(
                "ike_listen = \"{epdg}:500\"\nnatt_listen = \"{epdg}:4500\"\naaa = \"{aaa}:3868\"\n\
                 mh_local = \"{epdg}\"\ndns = [\"10.111.0.1\"]\ndiameter_timeout_ms = 2000\n\
                 pbu_retransmit_ms = 200\npbu_max_retransmissions = 2\n\
                 status_file = \"{status}\"\n",
                epdg = ip(net, 2),
                aaa = ip(net, 4),
                status = d.join("mag-status.json").display(),
            ),
        )?;
        let mut mag = Node::start("mag", &["--config", path(&mag_config)?])?;
        mag.wait_for("mag listening", Duration::from_secs(30))?;
        if with_aaa {
            mag.wait_for("Diameter peer open", Duration::from_secs(10))?;
        }
        Ok(Lab {
            dir,
            net,
            aaa,
            lma,
            mag,
        })
    }

    /// `ue-emu attach --json` for `imsi`: exit code and report.
    fn attach(
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
        let mut args = vec!["--insecure"];
        args.extend_from_slice(extra);
        ue_emu_attach(&config, &args)
    }

    fn outputs(&self) -> String {
        format!(
            "aaa:\n{}\nlma:\n{}\nmag:\n{}",
            self.aaa.as_ref().map(Node::output).unwrap_or_default(),
            self.lma.as_ref().map(Node::output).unwrap_or_default(),
            self.mag.output()
        )
    }

    fn status(&self, file: &str) -> Option<Value> {
        let text = std::fs::read_to_string(self.dir.path().join(file)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Waits until `check` holds, up to eight seconds.
    fn eventually(&self, what: &str, check: impl Fn(&Lab) -> bool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(8);
        while !check(self) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{what}\nmag status: {:?}\naaa status: {:?}\n{}",
                self.status("mag-status.json"),
                self.status("aaa-status.json"),
                self.outputs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The aaa-stub's open Diameter sessions, from its `--status-file`.
    fn aaa_sessions(&self) -> Option<u64> {
        self.status("aaa-status.json")?["sessions"].as_u64()
    }

    /// The LMA's PBU log lines for `imsi` with this outcome.
    fn lma_lines(&self, imsi: &str, outcome: &str) -> Vec<String> {
        self.lma
            .as_ref()
            .map(Node::output)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.contains(" PBU")
                    && l.contains(imsi)
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .map(str::to_string)
            .collect()
    }

    /// The LMA's bindings for `imsi`: registrations minus de-registrations.
    fn lma_bindings(&self, imsi: &str) -> usize {
        self.lma_lines(imsi, "registered")
            .len()
            .saturating_sub(self.lma_lines(imsi, "deregistered").len())
    }

    /// Nothing left for `imsi`: the mag's status shows `others` IKE SAs/AAA sessions/
    /// bindings (those of other UEs), the LMA no binding for `imsi`, the AAA `others`
    /// sessions.
    fn nothing_left(&self, imsi: &str, others: u64) -> Result<()> {
        self.eventually("state left behind", |l| {
            let mag = l.status("mag-status.json");
            let mag_ok = mag.is_some_and(|s| {
                s["ike_sas"].as_u64() == Some(others)
                    && s["aaa_sessions"].as_u64() == Some(others)
                    && s["bindings"].as_u64() == Some(others)
            });
            let aaa_ok = l.aaa.is_none() || l.aaa_sessions() == Some(others);
            mag_ok && aaa_ok && l.lma_bindings(imsi) == 0
        })
    }

    fn expect_failure(&self, code: Option<i32>, report: &Value, notify: &str) -> Result<()> {
        anyhow::ensure!(
            code.is_some_and(|c| c != 0)
                && report["result"] == "failed"
                && report["notify"]
                    .as_str()
                    .is_some_and(|n| n.contains(notify)),
            "expected a failure naming {notify}: {code:?} {report}\n{}",
            self.outputs()
        );
        Ok(())
    }
}

#[test]
fn real_aaa_attach_gets_the_lma_binding() -> Result<()> {
    let lab = Lab::start(111, true, true, IPV4_POOL)?;
    lab.eventually("no aaa status file", |l| l.aaa_sessions() == Some(0))?;
    let (code, report) = lab.attach(IMSI, APN, K, &["--no-detach"])?;
    anyhow::ensure!(code == Some(0), "{report}\n{}", lab.outputs());
    assert_eq!(report["result"], "attached");
    let ipv4: Ipv4Addr = report["ipv4"].as_str().context("ipv4")?.parse()?;
    let prefix: Ipv6Net = report["ipv6_prefix"]
        .as_str()
        .context("ipv6_prefix")?
        .parse()?;
    assert!(IPV4_POOL.parse::<Ipv4Net>()?.contains(&ipv4), "{ipv4}");
    assert!(IPV6_POOL.parse::<Ipv6Net>()?.contains(&prefix), "{prefix}");
    // The LMA's log comes through a pipe that may lag the UE's answer.
    lab.eventually("no registration in the LMA's log", |l| {
        !l.lma_lines(IMSI, "registered").is_empty()
    })?;
    let registered = lab.lma_lines(IMSI, "registered");
    assert_eq!(registered.len(), 1, "{}", lab.outputs());
    assert!(
        registered[0].contains(&ipv4.to_string()) && registered[0].contains(&prefix.to_string()),
        "{}",
        registered[0]
    );
    // Attached and kept: one session everywhere.
    lab.eventually("one session while attached", |l| {
        l.aaa_sessions() == Some(1)
            && l.status("mag-status.json")
                .is_some_and(|s| s["ike_sas"] == 1 && s["bindings"] == 1)
    })?;
    Ok(())
}

#[test]
fn real_aaa_detach_leaves_no_session() -> Result<()> {
    let lab = Lab::start(112, true, true, IPV4_POOL)?;
    let (code, report) = lab.attach(IMSI, APN, K, &[])?;
    anyhow::ensure!(code == Some(0), "{report}\n{}", lab.outputs());
    lab.eventually("no de-registration at the LMA", |l| {
        !l.lma_lines(IMSI, "deregistered").is_empty()
    })?;
    lab.nothing_left(IMSI, 0)
}

#[test]
fn real_aaa_wrong_k_is_an_authentication_failure() -> Result<()> {
    let lab = Lab::start(113, true, true, IPV4_POOL)?;
    let (code, report) = lab.attach(IMSI, APN, WRONG_K, &[])?;
    lab.expect_failure(code, &report, "AuthenticationFailed")?;
    assert!(lab.lma_lines(IMSI, "registered").is_empty());
    lab.nothing_left(IMSI, 0)
}

#[test]
fn real_aaa_unknown_apn_is_refused() -> Result<()> {
    let lab = Lab::start(114, true, true, IPV4_POOL)?;
    let (code, report) = lab.attach(IMSI, "nosuch.apn", K, &[])?;
    lab.expect_failure(code, &report, "NoApnSubscription")?;
    assert!(lab.lma_lines(IMSI, "registered").is_empty());
    lab.nothing_left(IMSI, 0)
}

#[test]
fn real_aaa_lma_down_is_a_network_failure() -> Result<()> {
    let lab = Lab::start(115, false, true, IPV4_POOL)?;
    let (code, report) = lab.attach(IMSI, APN, K, &[])?;
    lab.expect_failure(code, &report, "NetworkFailure")?;
    lab.nothing_left(IMSI, 0)
}

#[test]
fn real_aaa_exhausted_pool_is_a_pdn_connection_rejection() -> Result<()> {
    // One assignable IPv4 address: the first UE holds it, the second is refused.
    let lab = Lab::start(116, true, true, "10.111.0.0/30")?;
    let (code, first) = lab.attach(IMSI, APN, K, &["--no-detach"])?;
    anyhow::ensure!(code == Some(0), "{first}\n{}", lab.outputs());
    let (code, second) = lab.attach(IMSI2, APN, K, &[])?;
    lab.expect_failure(code, &second, "PdnConnectionRejection")?;
    // Only the first UE's state is left, everywhere.
    lab.nothing_left(IMSI2, 1)?;
    assert_eq!(lab.lma_bindings(IMSI), 1);
    Ok(())
}

#[test]
fn real_aaa_down_is_a_network_failure() -> Result<()> {
    let lab = Lab::start(117, true, false, IPV4_POOL)?;
    let (code, report) = lab.attach(IMSI, APN, K, &[])?;
    lab.expect_failure(code, &report, "NetworkFailure")?;
    assert!(lab.lma_lines(IMSI, "registered").is_empty());
    lab.nothing_left(IMSI, 0)
}
