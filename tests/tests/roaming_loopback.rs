//! Roaming (docs/attach.md, "Roaming"; TS 29.275): two real `lma` processes (the visited
//! gateway with `[chaining]`, the home gateway), the real `mag`, a real `aaa-stub` pair
//! (visited AAA relaying to the home AAA by realm) and `ue-emu attach --json`.
//!
//! Addresses, 127.0.<net>.x with net 140..159: .1 UE, .2 ePDG, .3 visited gateway
//! (ePDG side), .13 visited gateway (home side, its proxy care-of address), .5 home
//! gateway, .4 visited AAA, .14 home AAA. The data test puts the home gateway, with its
//! SGi TUN device, in a network namespace (netns tag 7) joined to the root namespace by a
//! veth pair; the visited gateway's home side is the root end of that pair.
//!
//! What a user would check: a roaming UE gets addresses from the HOME pool, the visited
//! gateway logs the chain, pings reach the PDN (the home TUN) and come back, a
//! subscriber of the visited network is served by the visited gateway alone, the PBUs of
//! both hops decode clean in tshark (with the vendor-specific option), and the failures
//! (home gateway down, home pool exhausted, APN unknown at home, home AAA unreachable)
//! are clear errors at the UE with nothing left anywhere: 0 IKE SAs / AAA sessions /
//! bindings at the ePDG, 0 sessions at both AAAs, and at both gateways' exit
//! `bindings=0 chained=0 held=0` (or only what the test kept on purpose).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use integration_tests::netns::{LmaProcess, Topology};
use integration_tests::tshark_fields::{values, walk};
use integration_tests::{node_binary, ue_emu_attach, write_file, Node};
use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::Value;

const K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
const OPC: &str = "cd63cb71954a9f4e48a5994e37a02baf";
/// Home network subscribers (MCC 001, MNC 01) roaming in the visited network (MNC 02).
const ROAMER: &str = "001010000000001";
const ROAMER2: &str = "001010000000002";
/// A subscriber of the visited network.
const LOCAL: &str = "001020000000001";
const APN: &str = "internet";
const HOME_REALM: &str = "epc.mnc001.mcc001.3gppnetwork.org";
const VISITED_REALM: &str = "epc.mnc002.mcc001.3gppnetwork.org";
const VISITED_POOL: &str = "10.150.0.0/24";
const VISITED_POOL6: &str = "2001:db8:150::/56";
const HOME_POOL: &str = "10.151.0.0/24";
const HOME_POOL6: &str = "2001:db8:151::/56";
/// The home gateway's SGi TUN addresses (the PDN host the UE pings).
const TUN_ADDRESS: &str = "10.151.1.1";
const TUN_ADDRESS_V6: &str = "2001:db8:151:ff00::1";

fn ip(net: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, net, host)
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

/// The home gateway: a loopback process, or one in a namespace with the SGi TUN.
enum HomeGateway {
    Loopback(Node),
    Netns(LmaProcess, Topology),
}

struct Lab {
    dir: tempfile::TempDir,
    net: u8,
    visited_aaa: Node,
    home_aaa: Option<Node>,
    visited: Node,
    home: Option<HomeGateway>,
    mag: Node,
    /// The home gateway's address and the visited gateway's home-side address.
    home_address: IpAddr,
    home_side: IpAddr,
}

/// What to leave out or change.
#[derive(Clone, Copy)]
struct Options {
    home_gateway: bool,
    home_aaa: bool,
    /// Home gateway in a namespace with its SGi TUN (the data test).
    netns: bool,
    /// The home gateway over IPv6 (raw Mobility Header, GRE over IPv6; implies the
    /// namespace, Topology tag 8).
    ipv6_home: bool,
    /// The visited gateway's max_lifetime_secs (short: the ePDG refreshes soon).
    visited_max_lifetime: u32,
    home_pool: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            home_gateway: true,
            home_aaa: true,
            netns: false,
            ipv6_home: false,
            visited_max_lifetime: 3600,
            home_pool: HOME_POOL,
        }
    }
}

impl Lab {
    fn start(net: u8, o: Options) -> Result<Lab> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        open_up(d)?;
        let topology = if o.ipv6_home {
            Some(Topology::new("roam6", 8)?)
        } else if o.netns {
            Some(Topology::new("roam", 7)?)
        } else {
            None
        };
        // The home gateway's address as the AAA names it and the visited gateway reaches
        // it, and the visited gateway's address it sees.
        let (home_named, home_peer): (IpAddr, IpAddr) = match (&topology, o.ipv6_home) {
            (Some(t), true) => (t.lma6.into(), t.mag6.into()),
            (Some(t), false) => (t.lma.into(), t.mag.into()),
            (None, _) => (ip(net, 5).into(), ip(net, 13).into()),
        };
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
        // The visited AAA relays from 127.0.0.1 (unbound, to a loopback address).
        let visited_peer =
            integration_tests::aaa_peer(&format!("aaa.{VISITED_REALM}"), "127.0.0.1");
        let epdg_peer = integration_tests::aaa_peer_epdg_loopback();
        let home_aaa_config = write_file(
            d,
            "home-aaa.toml",
            &format!(
                "origin_host = \"aaa.{HOME_REALM}\"\norigin_realm = \"{HOME_REALM}\"\n\
                 listen = \"{}:3868\"\nsubscribers = \"home-subscribers.toml\"\n\
                 sqn_state = \"home-sqn.toml\"\n{visited_peer}[gateways]\n{APN} = \"{home_named}\"\n\
                 ims = \"{home_named}\"\n",
                ip(net, 14),
            ),
        )?;
        let visited_aaa_config = write_file(
            d,
            "visited-aaa.toml",
            &format!(
                "origin_host = \"aaa.{VISITED_REALM}\"\norigin_realm = \"{VISITED_REALM}\"\n\
                 listen = \"{}:3868\"\nsubscribers = \"visited-subscribers.toml\"\n\
                 sqn_state = \"visited-sqn.toml\"\nrelay_timeout_secs = 2\n{epdg_peer}\
                 [gateways]\n{APN} = \"{}\"\nims = \"{}\"\n\
                 [home_realms]\n\"{HOME_REALM}\" = \"{}:3868\"\n",
                ip(net, 4),
                ip(net, 3),
                ip(net, 3),
                ip(net, 14),
            ),
        )?;
        let home_aaa = if o.home_aaa {
            Some(start_aaa(d, &home_aaa_config, "home-aaa-status.json")?)
        } else {
            None
        };
        let visited_aaa = start_aaa(d, &visited_aaa_config, "visited-aaa-status.json")?;
        let home = if o.home_gateway {
            let listen = match home_named {
                IpAddr::V6(a) => format!("listen_v6 = \"{a}\"\n"),
                IpAddr::V4(a) => format!("listen_v4 = \"{a}:5436\"\n"),
            };
            let mut config = format!(
                "{listen}ipv4_pool = \"{}\"\nipv6_pool = \"{HOME_POOL6}\"\n\
                 allowed_mags = [\"{home_peer}\"]\n",
                o.home_pool
            );
            if topology.is_some() {
                let tun = format!("roam{}", std::process::id() % 100_000);
                config.push_str(&format!(
                    "[sgi]\ntun_name = \"{tun}\"\nipv4 = \"{TUN_ADDRESS}/16\"\n\
                     ipv6 = \"{TUN_ADDRESS_V6}/48\"\n"
                ));
            }
            let config = write_file(d, "home-lma.toml", &config)?;
            Some(match topology {
                Some(t) => {
                    let lma = LmaProcess::start(&t.ns, &config, d.join("home-lma.log"))?;
                    lma.wait_for("lma listening", Duration::from_secs(30))?;
                    HomeGateway::Netns(lma, t)
                }
                None => {
                    let mut lma = Node::start("lma", &["--config", path(&config)?])?;
                    lma.wait_for("lma listening", Duration::from_secs(30))?;
                    HomeGateway::Loopback(lma)
                }
            })
        } else {
            None
        };
        let visited_config = write_file(
            d,
            "visited-lma.toml",
            &format!(
                "{}listen_v4 = \"{}:5436\"\nipv4_pool = \"{VISITED_POOL}\"\nipv6_pool = \"{VISITED_POOL6}\"\n\
                 allowed_mags = [\"{}\"]\nmax_lifetime_secs = {}\n\
                 [chaining]\nhome_gateways = [\"{home_named}\"]\n{}\
                 retransmit_ms = 200\nmax_retransmissions = 2\nlifetime_secs = 3600\n",
                match home_peer {
                    IpAddr::V6(a) => format!("listen_v6 = \"{a}\"\n"),
                    IpAddr::V4(_) => String::new(),
                },
                ip(net, 3),
                ip(net, 2),
                o.visited_max_lifetime,
                match home_peer {
                    // Toward an IPv6 home: the raw Mobility Header socket on listen_v6.
                    IpAddr::V6(a) => format!("local_v6 = \"{a}\"\n"),
                    IpAddr::V4(a) => format!("local_v4 = \"{a}\"\n"),
                },
            ),
        )?;
        let pcap = d.join("visited.pcap");
        // The recording: signaling of both hops (the home side's socket included).
        let mut visited = Node::start(
            "lma",
            &["--config", path(&visited_config)?, "--pcap", path(&pcap)?],
        )?;
        visited.wait_for("lma listening", Duration::from_secs(30))?;
        let mag_config = write_file(
            d,
            "mag.toml",
            &format!(
                "ike_listen = \"{epdg}:500\"\nnatt_listen = \"{epdg}:4500\"\naaa = \"{aaa}:3868\"\n\
                 mh_local = \"{epdg}\"\ndns = [\"10.151.0.1\"]\ndiameter_timeout_ms = 5000\n\
                 pbu_retransmit_ms = 1000\npbu_max_retransmissions = 3\n\
                 status_file = \"{status}\"\n",
                epdg = ip(net, 2),
                aaa = ip(net, 4),
                status = d.join("mag-status.json").display(),
            ),
        )?;
        let mut mag = Node::start("mag", &["--config", path(&mag_config)?])?;
        mag.wait_for("mag listening", Duration::from_secs(30))?;
        mag.wait_for("Diameter peer open", Duration::from_secs(10))?;
        Ok(Lab {
            dir,
            net,
            visited_aaa,
            home_aaa,
            visited,
            home,
            mag,
            home_address: home_named,
            home_side: home_peer,
        })
    }

    fn ue_config(&self, imsi: &str, apn: &str) -> Result<PathBuf> {
        write_file(
            self.dir.path(),
            &format!("ue-{imsi}-{apn}.toml"),
            &format!(
                "imsi = \"{imsi}\"\nmnc_digits = 2\nk = \"{K}\"\nopc = \"{OPC}\"\n\
                 epdg = \"{}:500\"\nlocal = \"{}\"\napn = \"{apn}\"\ntimeout_ms = 15000\n",
                ip(self.net, 2),
                ip(self.net, 1)
            ),
        )
    }

    /// `ue-emu attach --json --insecure EXTRA...`: exit code and report.
    fn attach(&self, imsi: &str, apn: &str, extra: &[&str]) -> Result<(Option<i32>, Value)> {
        let config = self.ue_config(imsi, apn)?;
        let mut args = vec!["--insecure"];
        args.extend_from_slice(extra);
        ue_emu_attach(&config, &args)
    }

    /// `ue-emu attach --json` of `imsi`, unprivileged, pinging the home gateway's TUN (the
    /// PDN host) three times over IPv4 and IPv6; its report, once it says "attached".
    fn attach_pinging_the_pdn(&self, imsi: &str, extra: &[&str]) -> Result<Value> {
        let config = self.ue_config(imsi, APN)?;
        let out = unprivileged(&node_binary("ue-emu")?)
            .args(["attach", "--json", "--insecure", "--config", path(&config)?])
            .args(["--ping", TUN_ADDRESS, "--ping", TUN_ADDRESS_V6])
            .args(["--ping-count", "3", "--ping-interval-ms", "300"])
            .args(["--ping-wait-ms", "2000"])
            .args(extra)
            .output()
            .context("running ue-emu")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report: Value = serde_json::from_str(stdout.trim()).with_context(|| {
            format!(
                "ue-emu printed no JSON: {stdout}\n{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.outputs()
            )
        })?;
        anyhow::ensure!(
            report["result"] == "attached",
            "{report}\n{}",
            self.outputs()
        );
        Ok(report)
    }

    fn home_output(&self) -> String {
        match &self.home {
            Some(HomeGateway::Loopback(n)) => n.output(),
            Some(HomeGateway::Netns(p, _)) => p.output(),
            None => String::new(),
        }
    }

    fn outputs(&self) -> String {
        format!(
            "visited aaa:\n{}\nhome aaa:\n{}\nvisited lma:\n{}\nhome lma:\n{}\nmag:\n{}",
            self.visited_aaa.output(),
            self.home_aaa.as_ref().map(Node::output).unwrap_or_default(),
            self.visited.output(),
            self.home_output(),
            self.mag.output()
        )
    }

    fn status(&self, file: &str) -> Option<Value> {
        let text = std::fs::read_to_string(self.dir.path().join(file)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Waits until `check` holds, up to ten seconds.
    fn eventually(&self, what: &str, check: impl Fn(&Lab) -> bool) -> Result<()> {
        // Generous: a loaded 2-core CI machine runs two such labs at once.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !check(self) {
            if Instant::now() >= deadline {
                bail!(
                    "{what}\nmag status: {:?}\nvisited aaa: {:?}\nhome aaa: {:?}\n{}",
                    self.status("mag-status.json"),
                    self.status("visited-aaa-status.json"),
                    self.status("home-aaa-status.json"),
                    self.outputs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn sessions(&self, file: &str) -> Option<u64> {
        self.status(file)?["sessions"].as_u64()
    }

    /// Only what the test kept attached: `epdg` IKE SAs / AAA sessions / bindings at the
    /// ePDG, `home` sessions at the home AAA and `visited` at the visited AAA (which
    /// holds sessions of its own subscribers only: for roamers it is a relay).
    fn nothing_left_but(&self, epdg: u64, home: u64, visited: u64) -> Result<()> {
        self.eventually("state left behind", |l| {
            let mag_ok = l.status("mag-status.json").is_some_and(|s| {
                s["ike_sas"].as_u64() == Some(epdg)
                    && s["aaa_sessions"].as_u64() == Some(epdg)
                    && s["bindings"].as_u64() == Some(epdg)
            });
            let home_aaa_ok =
                l.home_aaa.is_none() || l.sessions("home-aaa-status.json") == Some(home);
            mag_ok && home_aaa_ok && l.sessions("visited-aaa-status.json") == Some(visited)
        })
    }

    /// The PBU log lines of a gateway's output for `imsi` with this outcome.
    fn pbu_lines(output: &str, imsi: &str, outcome: &str) -> Vec<String> {
        output
            .lines()
            .filter(|l| {
                l.contains(" PBU")
                    && l.contains(imsi)
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .map(str::to_string)
            .collect()
    }

    /// Stops both gateways (SIGTERM) and returns their last words: the `lma stopped`
    /// line with the bindings, chained and held counts.
    fn stop_gateways(&mut self) -> Result<(String, String)> {
        self.visited.signal(libc::SIGTERM)?;
        self.visited.wait_exit(Duration::from_secs(5))?;
        let visited = last_words(&self.visited);
        let home = match self.home.take() {
            Some(HomeGateway::Loopback(mut n)) => {
                n.signal(libc::SIGTERM)?;
                n.wait_exit(Duration::from_secs(5))?;
                last_words(&n)
            }
            Some(HomeGateway::Netns(p, t)) => {
                drop(p);
                drop(t);
                std::fs::read_to_string(self.dir.path().join("home-lma.log"))?
            }
            None => String::new(),
        };
        let last = |o: &str| {
            o.lines()
                .find(|l| l.contains("lma stopped"))
                .unwrap_or("")
                .to_string()
        };
        Ok((last(&visited), last(&home)))
    }

    fn expect_failure(&self, code: Option<i32>, report: &Value, notify: &str) -> Result<()> {
        anyhow::ensure!(
            code.is_some_and(|c| c != 0)
                && report["result"] == "failed"
                && report["notify"]
                    .as_str()
                    .is_some_and(|n| n.contains(notify))
                && report["error"].as_str().is_some_and(|e| !e.is_empty()),
            "expected a failure naming {notify}: {code:?} {report}\n{}",
            self.outputs()
        );
        Ok(())
    }
}

/// The output of an exited node once its `lma stopped` line is in (the threads reading
/// its pipes may lag behind its exit by a moment).
fn last_words(node: &Node) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let output = node.output();
        if output.contains("lma stopped") || Instant::now() >= deadline {
            return output;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start_aaa(dir: &Path, config: &Path, status: &str) -> Result<Node> {
    let status = dir.join(status);
    let mut aaa = Node::start(
        "aaa-stub",
        &["--config", path(config)?, "--status-file", path(&status)?],
    )?;
    aaa.wait_for("aaa listening", Duration::from_secs(30))?;
    Ok(aaa)
}

/// Lets nobody (ue-emu runs unprivileged) read the configs in `dir`.
fn open_up(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
    Ok(())
}

fn unprivileged(binary: &Path) -> Command {
    if Path::new("/usr/bin/setpriv").exists() {
        let mut c = Command::new("/usr/bin/setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(binary);
        c
    } else {
        Command::new(binary)
    }
}

fn assert_clean_stop(line: &str, bindings: usize, chained: usize) -> Result<()> {
    let want = format!("bindings={bindings} chained={chained} held=0");
    anyhow::ensure!(line.contains(&want), "expected {want} in {line:?}");
    Ok(())
}

#[test]
fn roaming_ue_gets_home_addresses_pings_through_both_tunnels_and_a_local_ue_stays_local(
) -> Result<()> {
    let mut lab = Lab::start(
        140,
        Options {
            netns: true,
            ..Options::default()
        },
    )?;
    // The roaming UE: attach, ping the home gateway's TUN (the PDN) over IPv4 and IPv6.
    let report = lab.attach_pinging_the_pdn(ROAMER, &["--no-detach"])?;
    // Addresses from the HOME pool, not the visited one.
    let ipv4: Ipv4Addr = report["ipv4"].as_str().context("ipv4")?.parse()?;
    let prefix: Ipv6Net = report["ipv6_prefix"]
        .as_str()
        .context("ipv6_prefix")?
        .parse()?;
    assert!(HOME_POOL.parse::<Ipv4Net>()?.contains(&ipv4), "{ipv4}");
    assert!(HOME_POOL6.parse::<Ipv6Net>()?.contains(&prefix), "{prefix}");
    // Pings reach the PDN host and the replies come back, both families.
    for p in report["pings"].as_array().context("no pings")? {
        assert_eq!(p["sent"], 3, "{report}");
        let received = p["received"].as_u64().unwrap_or(0);
        assert!(received >= 2, "{report}\n{}", lab.outputs());
    }
    // The visited gateway shows the chain; the home gateway's binding is toward the
    // visited gateway's home side, with the addresses the UE got.
    lab.visited
        .wait_for("chained binding up", Duration::from_secs(10))?;
    let visited = lab.visited.output();
    let up = visited
        .lines()
        .find(|l| l.contains("chained binding up") && l.contains(ROAMER))
        .with_context(|| format!("no chain in the visited log:\n{visited}"))?;
    assert!(
        up.contains(&format!("home={}:5436/udp", lab.home_address))
            && up.contains(&ipv4.to_string()),
        "{up}"
    );
    let registered = Lab::pbu_lines(&visited, ROAMER, "registered");
    assert_eq!(registered.len(), 1, "{visited}");
    assert!(
        registered[0].contains(&format!("home=\"{}\"", lab.home_address)),
        "{}",
        registered[0]
    );
    let home = lab.home_output();
    let home_registered = Lab::pbu_lines(&home, ROAMER, "registered");
    assert_eq!(home_registered.len(), 1, "{home}");
    assert!(
        home_registered[0].contains(&format!("mag={}:5436/udp", lab.home_side))
            && home_registered[0].contains(&ipv4.to_string())
            && home_registered[0].contains(&prefix.to_string()),
        "{}",
        home_registered[0]
    );

    // A subscriber of the visited network: the visited gateway alone serves it.
    let (code, local) = lab.attach(LOCAL, APN, &["--no-detach"])?;
    anyhow::ensure!(code == Some(0), "{local}\n{}", lab.outputs());
    let local_v4: Ipv4Addr = local["ipv4"].as_str().context("ipv4")?.parse()?;
    assert!(
        VISITED_POOL.parse::<Ipv4Net>()?.contains(&local_v4),
        "{local_v4}"
    );
    assert_eq!(
        Lab::pbu_lines(&lab.visited.output(), LOCAL, "registered").len(),
        1
    );
    assert!(!lab.home_output().contains(LOCAL), "{}", lab.home_output());
    lab.nothing_left_but(2, 1, 1)?;

    // Both hops' PBUs decode clean in tshark, with the PDN GW address option on the
    // ePDG's.
    check_pcap_in_tshark(
        &lab.dir.path().join("visited.pcap"),
        ip(140, 3),
        lab.home_side,
        lab.home_address,
    )?;

    // De-registration along the chain when the ePDG lets go (stopping the mag
    // de-registers its bindings).
    lab.mag.signal(libc::SIGTERM)?;
    lab.mag.wait_exit(Duration::from_secs(10))?;
    lab.eventually("no de-registration at home", |l| {
        !Lab::pbu_lines(&l.home_output(), ROAMER, "deregistered").is_empty()
    })?;
    let (visited_last, home_last) = lab.stop_gateways()?;
    assert_clean_stop(&visited_last, 0, 0)?;
    assert_clean_stop(&home_last, 0, 0)?;
    Ok(())
}

/// One packet as tshark decoded it: its JSON layers and their flattened fields.
type Decoded = (Value, Vec<(String, String)>);

/// Every packet of a recording as tshark decodes it (checksum validation on): the JSON
/// layers and their flattened fields. Fails on a malformed mark or any expert info.
fn tshark_packets(pcap: &Path) -> Result<Vec<Decoded>> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args([
            "-o",
            "udp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
        ])
        .args(["-V", "-T", "json", "--no-duplicate-keys"])
        .output()
        .context("running tshark (scripts/setup.sh installs it)")?;
    anyhow::ensure!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let packets: Vec<Value> = serde_json::from_slice(&out.stdout).context("tshark JSON")?;
    let mut decoded = Vec::new();
    for packet in packets {
        let layers = packet["_source"]["layers"].clone();
        let mut fields = Vec::new();
        walk(&layers, &mut fields);
        let problems: Vec<_> = fields
            .iter()
            .filter(|(k, _)| k.starts_with("_ws.malformed") || k.starts_with("_ws.expert"))
            .collect();
        anyhow::ensure!(problems.is_empty(), "{problems:?} in {layers}");
        decoded.push((layers, fields));
    }
    Ok(decoded)
}

/// Every PBU in the visited gateway's recording decodes in tshark without a malformed
/// mark or expert info, with the MN-ID and APN; the ePDG's (to `visited`) carries the
/// 3GPP PDN GW IPv4 address `home`, the visited gateway's (from `home_side`) does not.
fn check_pcap_in_tshark(
    pcap: &Path,
    visited: Ipv4Addr,
    home_side: IpAddr,
    home: IpAddr,
) -> Result<()> {
    let packets = tshark_packets(pcap)?;
    let (mut epdg_pbus, mut home_pbus) = (0, 0);
    for (layers, fields) in &packets {
        if values(fields, "mip6.mhtype") != ["5"] {
            continue;
        }
        let dst = values(fields, "ip.dst");
        let src = values(fields, "ip.src");
        let nai = values(fields, "mip6.mnid.identifier");
        let roamer = nai == [format!("0{ROAMER}@nai.{HOME_REALM}")];
        let local = nai == [format!("0{LOCAL}@nai.{VISITED_REALM}")];
        anyhow::ensure!(roamer || local, "unexpected MN-ID in {layers}");
        anyhow::ensure!(
            values(fields, "mip6.ss.identifier") == [APN],
            "no APN in {layers}"
        );
        anyhow::ensure!(
            values(fields, "mip6.3gpp.flag.m").iter().all(|m| *m == "0"),
            "{layers}"
        );
        let pdn_gw = values(fields, "mip6.3gpp.pdn_gw_ipv4_addr");
        if local {
            anyhow::ensure!(pdn_gw.is_empty(), "{pdn_gw:?} in {layers}");
        } else if dst == [visited.to_string()] {
            epdg_pbus += 1;
            anyhow::ensure!(pdn_gw == [home.to_string()], "{pdn_gw:?} in {layers}");
        } else if src == [home_side.to_string()] {
            home_pbus += 1;
            anyhow::ensure!(pdn_gw.is_empty(), "{pdn_gw:?} in {layers}");
            anyhow::ensure!(
                values(fields, "mip6.gre_key").len() == 1,
                "no GRE key in {layers}"
            );
        }
    }
    anyhow::ensure!(
        epdg_pbus >= 1 && home_pbus >= 1,
        "PBUs: {epdg_pbus} from the ePDG, {home_pbus} to home, in {} packets",
        packets.len()
    );
    Ok(())
}

#[test]
fn home_gateway_down_is_a_pdn_connection_rejection_with_nothing_left() -> Result<()> {
    let mut lab = Lab::start(
        141,
        Options {
            home_gateway: false,
            ..Options::default()
        },
    )?;
    let (code, report) = lab.attach(ROAMER, APN, &[])?;
    lab.expect_failure(code, &report, "PdnConnectionRejection")?;
    // The thread reading the gateway's log may lag the UE's answer by a moment.
    lab.visited
        .wait_for("status=128", Duration::from_secs(10))?;
    let visited = lab.visited.output();
    assert!(
        visited.contains("HomeTimeout") && visited.contains("status=128"),
        "{visited}"
    );
    // The answer decodes clean in tshark: REASON_UNSPECIFIED with the 3GPP Specific
    // PMIPv6 Error Code "PGW not responding" (GTPv2 cause 100); three PBUs went home.
    let packets = tshark_packets(&lab.dir.path().join("visited.pcap"))?;
    let errors: Vec<_> = packets
        .iter()
        .filter(|(_, f)| {
            values(f, "mip6.mhtype") == ["6"] && values(f, "mip6.ba.status") == ["128"]
        })
        .collect();
    assert_eq!(errors.len(), 1, "{packets:?}");
    assert_eq!(
        values(&errors[0].1, "mip6.3gpp.spec_pmipv6_err_code"),
        ["100"],
        "{}",
        errors[0].0
    );
    let home_pbus = packets
        .iter()
        .filter(|(_, f)| {
            values(f, "mip6.mhtype") == ["5"] && values(f, "ip.dst") == [ip(141, 5).to_string()]
        })
        .count();
    assert_eq!(
        home_pbus, 4,
        "three registrations and one clean-up de-registration"
    );
    lab.nothing_left_but(0, 0, 0)?;
    let (visited_last, _) = lab.stop_gateways()?;
    assert_clean_stop(&visited_last, 0, 0)
}

#[test]
fn home_pool_exhausted_reaches_the_ue_and_leaves_only_the_first_ue() -> Result<()> {
    // One assignable address at home: the first roaming UE holds it.
    let mut lab = Lab::start(
        142,
        Options {
            home_pool: "10.151.0.0/30",
            ..Options::default()
        },
    )?;
    let (code, first) = lab.attach(ROAMER, APN, &["--no-detach"])?;
    anyhow::ensure!(code == Some(0), "{first}\n{}", lab.outputs());
    let (code, second) = lab.attach(ROAMER2, APN, &[])?;
    lab.expect_failure(code, &second, "PdnConnectionRejection")?;
    // The home's status (130) reached the ePDG through the visited gateway (its log line
    // follows the PBA it sent: wait for it).
    let _ = lab
        .visited
        .wait_for("outcome=\"rejected\"", Duration::from_secs(5));
    let rejected = Lab::pbu_lines(&lab.visited.output(), ROAMER2, "rejected");
    assert!(
        rejected.len() == 1 && rejected[0].contains("status=130"),
        "{rejected:?}"
    );
    lab.nothing_left_but(1, 1, 0)?;
    let (visited_last, home_last) = lab.stop_gateways()?;
    assert_clean_stop(&visited_last, 1, 1)?;
    // The visited gateway stopped first, and a graceful stop lets go of its chained
    // bindings at home (RFC 5846 revocation toward the ePDG, de-registration at home).
    assert_clean_stop(&home_last, 0, 0)
}

#[test]
fn an_apn_unknown_at_home_is_refused_with_nothing_left() -> Result<()> {
    let mut lab = Lab::start(143, Options::default())?;
    let (code, report) = lab.attach(ROAMER, "ims", &[])?;
    lab.expect_failure(code, &report, "NoApnSubscription")?;
    lab.nothing_left_but(0, 0, 0)?;
    assert!(!lab.visited.output().contains(ROAMER));
    let (visited_last, home_last) = lab.stop_gateways()?;
    assert_clean_stop(&visited_last, 0, 0)?;
    assert_clean_stop(&home_last, 0, 0)
}

#[test]
fn an_unreachable_home_aaa_is_a_network_failure_with_nothing_left() -> Result<()> {
    let mut lab = Lab::start(
        144,
        Options {
            home_aaa: false,
            ..Options::default()
        },
    )?;
    let (code, report) = lab.attach(ROAMER, APN, &[])?;
    lab.expect_failure(code, &report, "NetworkFailure")?;
    lab.nothing_left_but(0, 0, 0)?;
    let (visited_last, home_last) = lab.stop_gateways()?;
    assert_clean_stop(&visited_last, 0, 0)?;
    assert_clean_stop(&home_last, 0, 0)
}

#[test]
fn roaming_to_an_ipv6_home_gateway_over_the_raw_mobility_header() -> Result<()> {
    let mut lab = Lab::start(
        145,
        Options {
            ipv6_home: true,
            ..Options::default()
        },
    )?;
    let report = lab.attach_pinging_the_pdn(ROAMER, &[])?;
    let ipv4: Ipv4Addr = report["ipv4"].as_str().context("ipv4")?.parse()?;
    assert!(HOME_POOL.parse::<Ipv4Net>()?.contains(&ipv4), "{ipv4}");
    for p in report["pings"].as_array().context("no pings")? {
        assert!(
            p["received"].as_u64().unwrap_or(0) >= 2,
            "{report}\n{}",
            lab.outputs()
        );
    }
    // Signaling to the home gateway went over the raw Mobility Header (IPv6), from the
    // visited gateway's IPv6 address; the ePDG still reached the visited one over IPv4.
    lab.visited
        .wait_for("chained binding up", Duration::from_secs(10))?;
    let visited = lab.visited.output();
    assert!(
        visited.lines().any(|l| l.contains("chained binding up")
            && l.contains(&format!("home={}/mh", lab.home_address))),
        "{visited}"
    );
    let home = lab.home_output();
    let lines: Vec<String> = Lab::pbu_lines(&home, ROAMER, "registered");
    assert!(
        lines.len() == 1 && lines[0].contains(&format!("mag={}/mh", lab.home_side)),
        "{home}"
    );
    // ue-emu detached: de-registered at home too.
    lab.eventually("no de-registration at home", |l| {
        !Lab::pbu_lines(&l.home_output(), ROAMER, "deregistered").is_empty()
    })
}

/// Re-registration and expiry along the chain, across processes: the visited gateway
/// grants 8 s, so the ePDG re-registers every 6.4 s (80 %), and each re-registration is
/// refreshed at the home gateway before it is answered (the home granted an hour, so no
/// timer of the visited gateway's would refresh it within the test); when the ePDG dies without a
/// word (SIGKILL), the visited binding expires and the home one is de-registered.
#[test]
fn re_registration_and_expiry_propagate_to_the_home_gateway() -> Result<()> {
    let mut lab = Lab::start(
        146,
        Options {
            visited_max_lifetime: 8,
            ..Options::default()
        },
    )?;
    let (code, report) = lab.attach(ROAMER, APN, &["--no-detach"])?;
    anyhow::ensure!(code == Some(0), "{report}\n{}", lab.outputs());
    // The ePDG re-registers 6.4 s after the attach; room for a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let refreshed_here = Lab::pbu_lines(&lab.visited.output(), ROAMER, "refreshed");
        let refreshed_home = Lab::pbu_lines(&lab.home_output(), ROAMER, "refreshed");
        if !refreshed_here.is_empty() && !refreshed_home.is_empty() {
            // Answered with the home's grant, capped at 8 s.
            assert!(
                refreshed_here[0].contains("lifetime_secs=8")
                    && refreshed_here[0].contains(&format!("home=\"{}\"", lab.home_address)),
                "{}",
                refreshed_here[0]
            );
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no re-registration along the chain\n{}",
            lab.outputs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The ePDG dies silently: the visited binding expires (at most 8 s), and the home
    // binding goes with it.
    lab.mag.signal(libc::SIGKILL)?;
    lab.mag.wait_exit(Duration::from_secs(5))?;
    lab.eventually("no expiry along the chain", |l| {
        l.visited.output().contains("chained binding down: expired")
            && !Lab::pbu_lines(&l.home_output(), ROAMER, "deregistered").is_empty()
    })?;
    let (visited_last, home_last) = lab.stop_gateways()?;
    assert_clean_stop(&visited_last, 0, 0)?;
    assert_clean_stop(&home_last, 0, 0)
}
