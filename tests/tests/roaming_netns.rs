//! Roaming in the network-namespace lab (`scripts/netns-lab.sh`, roaming variant,
//! `NETNS_LAB_ROAMING=1`, lab tag 8): the real nodes each in their namespace — `ue-emu`
//! (ue), `mag` (epdg), the visited gateway `lma` with `[chaining]` and no TUN (vlma),
//! the visited `aaa-stub` relaying by realm (vaaa), the home `aaa-stub` (aaa), the home
//! gateway `lma` with its SGi TUN (lma) forwarding to the PDN host (pdn, its kernel).
//!
//! A roaming UE attaches, gets home-pool addresses, and pings the PDN host over IPv4 and
//! IPv6 through ESP, the ePDG->vGW GRE tunnel, the vGW->hGW GRE tunnel and the home SGi,
//! and back; the visited gateway logs the chain; a subscriber of the visited network is
//! served by the visited gateway alone; with the home gateway stopped a roaming attach
//! is refused at the UE with nothing left at the ePDG, either AAA or the visited gateway.
//! The other failure cases run on loopback (roaming_loopback.rs). Needs root; skipped
//! with a message otherwise.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use integration_tests::lab::{is_root, Lab, LabProcess};
use integration_tests::{node_binary, write_file};
use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::Value;

const K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
const OPC: &str = "cd63cb71954a9f4e48a5994e37a02baf";
const ROAMER: &str = "001010000000001";
const ROAMER2: &str = "001010000000002";
const LOCAL: &str = "001020000000001";
const APN: &str = "internet";
const HOME_REALM: &str = "epc.mnc001.mcc001.3gppnetwork.org";
const VISITED_REALM: &str = "epc.mnc002.mcc001.3gppnetwork.org";

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

struct Roaming {
    // Dropped first (fields drop in order): processes, then the lab, then the files.
    mag: LabProcess,
    visited: LabProcess,
    home: Option<LabProcess>,
    vaaa: LabProcess,
    aaa: LabProcess,
    lab: Lab,
    dir: tempfile::TempDir,
}

impl Roaming {
    fn start() -> Result<Roaming> {
        let lab = Lab::up_roaming("rnl", 8)?;
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        let v = |k: &str| lab.var(k).map(str::to_string);
        write_file(
            d,
            "home-subscribers.toml",
            &format!(
                "[[subscriber]]\nimsi = \"{ROAMER}\"\nk = \"{K}\"\nopc = \"{OPC}\"\napns = [\"{APN}\"]\n\
                 [[subscriber]]\nimsi = \"{ROAMER2}\"\nk = \"{K}\"\nopc = \"{OPC}\"\napns = [\"{APN}\"]\n"
            ),
        )?;
        write_file(
            d,
            "visited-subscribers.toml",
            &format!(
                "[[subscriber]]\nimsi = \"{LOCAL}\"\nk = \"{K}\"\nopc = \"{OPC}\"\napns = [\"{APN}\"]\n"
            ),
        )?;
        let visited_peer =
            integration_tests::aaa_peer(&format!("aaa.{VISITED_REALM}"), v("VAAA_AAA_V4")?);
        let epdg_peer =
            integration_tests::aaa_peer(integration_tests::EPDG_ORIGIN_HOST, v("EPDG_VAAA_V4")?);
        let aaa_config = write_file(
            d,
            "home-aaa.toml",
            &format!(
                "origin_host = \"aaa.{HOME_REALM}\"\norigin_realm = \"{HOME_REALM}\"\n\
                 listen = \"{}:3868\"\nsubscribers = \"home-subscribers.toml\"\n\
                 sqn_state = \"home-sqn.toml\"\n{visited_peer}[gateways]\n{APN} = \"{}\"\n",
                v("AAA_VAAA_V4")?,
                v("LMA_VLMA_V4")?,
            ),
        )?;
        let vaaa_config = write_file(
            d,
            "visited-aaa.toml",
            &format!(
                "origin_host = \"aaa.{VISITED_REALM}\"\norigin_realm = \"{VISITED_REALM}\"\n\
                 listen = \"{}:3868\"\nsubscribers = \"visited-subscribers.toml\"\n\
                 sqn_state = \"visited-sqn.toml\"\nrelay_timeout_secs = 2\n{epdg_peer}\
                 [gateways]\n{APN} = \"{}\"\n[home_realms]\n\"{HOME_REALM}\" = \"{}:3868\"\n",
                v("VAAA_EPDG_V4")?,
                v("VLMA_EPDG_V4")?,
                v("AAA_VAAA_V4")?,
            ),
        )?;
        let mut aaa = lab.spawn(
            "aaa",
            "aaa-stub",
            &[
                "--config",
                path(&aaa_config)?,
                "--status-file",
                path(&d.join("home-aaa-status.json"))?,
            ],
            d.join("home-aaa.log"),
        )?;
        aaa.wait_for("aaa listening", Duration::from_secs(30))?;
        let mut vaaa = lab.spawn(
            "vaaa",
            "aaa-stub",
            &[
                "--config",
                path(&vaaa_config)?,
                "--status-file",
                path(&d.join("visited-aaa-status.json"))?,
            ],
            d.join("visited-aaa.log"),
        )?;
        vaaa.wait_for("aaa listening", Duration::from_secs(30))?;
        let home_config = write_file(
            d,
            "home-lma.toml",
            &format!(
                "listen_v4 = \"{}:5436\"\nipv4_pool = \"{}\"\nipv6_pool = \"{}\"\n\
                 allowed_mags = [\"{}\"]\n[sgi]\ntun_name = \"sgi\"\nipv4 = \"{}\"\nipv6 = \"{}\"\n",
                v("LMA_VLMA_V4")?,
                v("UE_POOL_V4")?,
                v("UE_POOL_V6")?,
                v("VLMA_LMA_V4")?,
                v("SGI_TUN_V4")?,
                v("SGI_TUN_V6")?,
            ),
        )?;
        let mut home = lab.spawn(
            "lma",
            "lma",
            &["--config", path(&home_config)?],
            d.join("home-lma.log"),
        )?;
        home.wait_for("lma listening", Duration::from_secs(30))?;
        let visited_config = write_file(
            d,
            "visited-lma.toml",
            &format!(
                "listen_v4 = \"{}:5436\"\nipv4_pool = \"{}\"\nipv6_pool = \"{}\"\n\
                 allowed_mags = [\"{}\"]\n[chaining]\nhome_gateways = [\"{}\"]\n\
                 local_v4 = \"{}\"\nretransmit_ms = 200\nmax_retransmissions = 2\n\
                 [sgi]\ntun_name = \"vsgi\"\nipv4 = \"{}\"\n",
                v("VLMA_EPDG_V4")?,
                v("VISITED_POOL_V4")?,
                v("VISITED_POOL_V6")?,
                v("EPDG_VLMA_V4")?,
                v("LMA_VLMA_V4")?,
                v("VLMA_LMA_V4")?,
                visited_tun(&lab)?,
            ),
        )?;
        let mut visited = lab.spawn(
            "vlma",
            "lma",
            &["--config", path(&visited_config)?],
            d.join("visited-lma.log"),
        )?;
        visited.wait_for("lma listening", Duration::from_secs(30))?;
        let mag_config = write_file(
            d,
            "mag.toml",
            &format!(
                "ike_listen = \"{epdg}:500\"\nnatt_listen = \"{epdg}:4500\"\naaa = \"{aaa}:3868\"\n\
                 mh_local = \"{mh}\"\ndiameter_timeout_ms = 5000\npbu_retransmit_ms = 1000\n\
                 pbu_max_retransmissions = 3\nstatus_file = \"{status}\"\n",
                epdg = v("EPDG_UE_V4")?,
                aaa = v("VAAA_EPDG_V4")?,
                mh = v("EPDG_VLMA_V4")?,
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
        Ok(Roaming {
            mag,
            visited,
            home: Some(home),
            vaaa,
            aaa,
            lab,
            dir,
        })
    }

    fn ue_config(&self, imsi: &str) -> Result<PathBuf> {
        write_file(
            self.dir.path(),
            &format!("ue-{imsi}.toml"),
            &format!(
                "imsi = \"{imsi}\"\nmnc_digits = 2\nk = \"{K}\"\nopc = \"{OPC}\"\n\
                 epdg = \"{}:500\"\nlocal = \"{}\"\napn = \"{APN}\"\ntimeout_ms = 15000\n",
                self.lab.var("EPDG_UE_V4")?,
                self.lab.var("UE_EPDG_V4")?,
            ),
        )
    }

    /// `ue-emu attach --json --insecure EXTRA` in the ue namespace, to the end.
    fn attach(&self, imsi: &str, extra: &[&str]) -> Result<(Option<i32>, Value)> {
        let out = self
            .lab
            .command("ue", node_binary("ue-emu")?)
            .args(["attach", "--json", "--insecure", "--config"])
            .arg(self.ue_config(imsi)?)
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

    fn status(&self, file: &str) -> Option<Value> {
        let text = std::fs::read_to_string(self.dir.path().join(file)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn logs(&self) -> String {
        format!(
            "home aaa:\n{}\nvisited aaa:\n{}\nhome lma:\n{}\nvisited lma:\n{}\nmag:\n{}",
            self.aaa.output(),
            self.vaaa.output(),
            self.home
                .as_ref()
                .map(LabProcess::output)
                .unwrap_or_default(),
            self.visited.output(),
            self.mag.output()
        )
    }

    /// Only `epdg` SAs/sessions/bindings at the ePDG, `home` / `visited` AAA sessions.
    fn nothing_left_but(&self, epdg: u64, home: u64, visited: u64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mag_ok = self.status("mag-status.json").is_some_and(|s| {
                s["ike_sas"].as_u64() == Some(epdg)
                    && s["aaa_sessions"].as_u64() == Some(epdg)
                    && s["bindings"].as_u64() == Some(epdg)
            });
            let sessions = |f: &str| self.status(f).and_then(|s| s["sessions"].as_u64());
            if mag_ok
                && sessions("home-aaa-status.json") == Some(home)
                && sessions("visited-aaa-status.json") == Some(visited)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "state left behind: mag {:?}\n{}",
                    self.status("mag-status.json"),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The visited gateway's SGi TUN address: the last host of its pool, over the pool's
/// prefix (the visited gateway serves its own subscribers with a data plane of its own
/// and relays the roamers' GRE on the same address).
fn visited_tun(lab: &Lab) -> Result<String> {
    let pool: Ipv4Net = lab.var("VISITED_POOL_V4")?.parse()?;
    let last = pool.hosts().last().context("empty visited pool")?;
    Ok(format!("{last}/{}", pool.prefix_len()))
}

fn pbu_lines(output: &str, imsi: &str, outcome: &str) -> usize {
    output
        .lines()
        .filter(|l| {
            l.contains(" PBU") && l.contains(imsi) && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .count()
}

#[test]
fn roaming_in_the_namespace_lab_reaches_the_pdn_host_through_both_gateways() -> Result<()> {
    if !is_root() {
        eprintln!("SKIPPED roaming_in_the_namespace_lab: needs root (network namespaces)");
        return Ok(());
    }
    let mut r = Roaming::start()?;
    let pdn4 = r.lab.addr("pdn", "lma", 4)?.to_string();
    let pdn6 = r.lab.addr("pdn", "lma", 6)?.to_string();
    let (code, report) = r.attach(
        ROAMER,
        &[
            "--ping",
            &pdn4,
            "--ping",
            &pdn6,
            "--ping-count",
            "3",
            "--ping-interval-ms",
            "300",
            "--ping-wait-ms",
            "2000",
            "--no-detach",
        ],
    )?;
    anyhow::ensure!(
        code == Some(0) && report["result"] == "attached",
        "{report}\n{}",
        r.logs()
    );
    // Home-pool addresses.
    let ipv4: Ipv4Addr = report["ipv4"].as_str().context("ipv4")?.parse()?;
    let prefix: Ipv6Net = report["ipv6_prefix"]
        .as_str()
        .context("ipv6_prefix")?
        .parse()?;
    assert!(
        r.lab.var("UE_POOL_V4")?.parse::<Ipv4Net>()?.contains(&ipv4),
        "{ipv4}"
    );
    assert!(
        r.lab
            .var("UE_POOL_V6")?
            .parse::<Ipv6Net>()?
            .contains(&prefix),
        "{prefix}"
    );
    // The PDN host answered every family through both tunnels.
    for p in report["pings"].as_array().context("no pings")? {
        assert_eq!(p["sent"], 3, "{report}");
        assert!(
            p["received"].as_u64().unwrap_or(0) >= 2,
            "{report}\n{}",
            r.logs()
        );
    }
    // The visited gateway shows the chain toward the home gateway.
    let visited = r.visited.output();
    let home_gw = r.lab.var("LMA_VLMA_V4")?;
    assert!(
        visited.lines().any(|l| l.contains("chained binding up")
            && l.contains(ROAMER)
            && l.contains(&format!("home={home_gw}:5436/udp"))),
        "{visited}"
    );
    // The relay carried the pings (its counters are logged once a second).
    r.visited
        .wait_for("uplink_relayed: ", Duration::from_secs(10))?;

    // A subscriber of the visited network: served by the visited gateway alone.
    let tun = visited_tun(&r.lab)?;
    let tun = tun.split('/').next().unwrap_or_default();
    let (code, local) = r.attach(
        LOCAL,
        &[
            "--ping",
            tun,
            "--ping-count",
            "2",
            "--ping-wait-ms",
            "2000",
            "--no-detach",
        ],
    )?;
    anyhow::ensure!(code == Some(0), "{local}\n{}", r.logs());
    let local_v4: Ipv4Addr = local["ipv4"].as_str().context("ipv4")?.parse()?;
    assert!(
        r.lab
            .var("VISITED_POOL_V4")?
            .parse::<Ipv4Net>()?
            .contains(&local_v4),
        "{local_v4}"
    );
    assert!(
        local["pings"][0]["received"].as_u64().unwrap_or(0) >= 1,
        "{local}\n{}",
        r.logs()
    );
    let home_log = r.home.as_ref().map(LabProcess::output).unwrap_or_default();
    assert!(!home_log.contains(LOCAL), "{home_log}");
    assert_eq!(pbu_lines(&home_log, ROAMER, "registered"), 1, "{home_log}");
    r.nothing_left_but(2, 1, 1)?;

    // The home gateway goes away: a second roamer's attach is refused at the UE, and
    // nothing is left for it anywhere.
    if let Some(mut home) = r.home.take() {
        home.signal(libc::SIGTERM)?;
        home.wait_exit(Duration::from_secs(5))?;
    }
    let (code, refused) = r.attach(ROAMER2, &[])?;
    anyhow::ensure!(
        code.is_some_and(|c| c != 0)
            && refused["result"] == "failed"
            && refused["notify"]
                .as_str()
                .is_some_and(|n| n.contains("PdnConnectionRejection")),
        "{refused}\n{}",
        r.logs()
    );
    r.nothing_left_but(2, 1, 1)?;
    let visited = r.visited.output();
    assert_eq!(pbu_lines(&visited, ROAMER2, "registered"), 0);
    assert_eq!(pbu_lines(&visited, ROAMER2, "rejected"), 1, "{visited}");
    // At exit the visited gateway holds the one it served locally: the chained one went
    // when the home gateway stopped, whose graceful stop revoked every binding of its
    // MAGs (RFC 5846, G bit), and the ePDG was told in turn.
    r.visited.signal(libc::SIGTERM)?;
    r.visited.wait_exit(Duration::from_secs(5))?;
    let stopped = r.visited.output();
    assert!(stopped.contains("bindings=1 chained=0 held=0"), "{stopped}");
    assert!(
        stopped.contains("event=Home(Revocation") && stopped.contains("global: true"),
        "{stopped}"
    );
    // The GRE demultiplexer handed each packet on the ePDG-side address to the owner of
    // its key: neither the SGi plane nor the relay counted an unknown key, both forwarded.
    let last = |what: &str| {
        stopped
            .lines()
            .rev()
            .find(|l| l.contains(what))
            .unwrap_or("")
            .to_string()
    };
    let plane = last("data plane stats=");
    let relay = last("GRE relay stats=");
    assert!(
        plane.contains("unknown_key: 0") && !plane.contains("uplink_forwarded: 0"),
        "{plane}"
    );
    assert!(
        relay.contains("unknown_key: 0") && !relay.contains("uplink_relayed: 0"),
        "{relay}"
    );
    Ok(())
}
