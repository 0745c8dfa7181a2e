//! The docker compose lab, as the README runs it: `scripts/build-images.sh` builds the
//! FROM-scratch image, `scripts/lab.sh up` brings up both networks (docker-compose.yml),
//! and `scripts/lab.sh attach` runs `ue-emu` in the `ue` service. Asserts what a user
//! checks: the visited network's subscriber gets an address from lma-visited's pool, the
//! roaming home subscriber one from lma-home's pool (chained lma-visited -> lma-home),
//! both ping the pdn host through the tunnels, a UE with a TUN device (`lab.sh tun`)
//! fetches the pdn's web page over TCP through the chain; every node's capture decodes in tshark
//! without a malformed packet and lma-home's shows the chained PBU; after
//! `docker compose restart lma-home` a new roaming attach works again; and
//! `lab.sh down` (`docker compose down -v`) leaves no container, network or volume of
//! the project behind. Each run uses its own compose project name and capture folder.
//! Needs docker with compose (v1 or v2) and the root of the repository; the static
//! release build lands in target/static and is reused by later runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use ipnet::{IpNet, Ipv4Net};
use serde_json::Value;

const VISITED_POOL_V4: &str = "10.55.0.0/17";
const VISITED_POOL_V6: &str = "2001:db8:55::/49";
const HOME_POOL_V4: &str = "10.45.0.0/17";
const HOME_POOL_V6: &str = "2001:db8:45::/49";
const PDN_HOST: &str = "10.250.100.1";
const PDN_HOST_V6: &str = "fd00:250:100::1";
const PDN_PAGE: &str = "pdn: hello from the lab's packet data network";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The lab for one test run: its compose project and capture folder; `lab.sh down`
/// when dropped, whatever happened.
struct Lab {
    root: PathBuf,
    project: String,
    captures: tempfile::TempDir,
    down: bool,
}

impl Lab {
    fn new() -> Result<Lab> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Ok(Lab {
            root: repo_root(),
            project: format!("pmiplabtest{}x{nanos}", std::process::id()),
            captures: tempfile::tempdir().context("creating the capture folder")?,
            down: false,
        })
    }

    fn command(&self, script: &str) -> Command {
        let mut c = Command::new("bash");
        c.arg(self.root.join("scripts").join(script))
            .current_dir(&self.root)
            .env("COMPOSE_PROJECT_NAME", &self.project)
            .env("LAB_CAPTURES", self.captures.path());
        c
    }

    /// Runs a script; its output, or an error with both streams.
    fn run(&self, script: &str, args: &[&str]) -> Result<String> {
        let out = self
            .command(script)
            .args(args)
            .output()
            .with_context(|| format!("running scripts/{script} {}", args.join(" ")))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "scripts/{script} {} failed ({}):\n{stdout}\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }

    /// One attach through the lab (`lab.sh attach visited|roaming --json`), pinging the
    /// pdn host; the report, whatever the exit status, with the nodes' logs on error.
    fn attach(&self, who: &str) -> Result<Value> {
        let out = self
            .command("lab.sh")
            .args(["attach", who, "--json"])
            .output()
            .with_context(|| format!("running scripts/lab.sh attach {who}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json = stdout
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .unwrap_or("");
        serde_json::from_str(json).with_context(|| {
            format!(
                "ue-emu ({who}) printed no JSON ({}):\n{stdout}\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.logs()
            )
        })
    }

    fn logs(&self) -> String {
        self.run("lab.sh", &["logs", "--tail", "40"])
            .unwrap_or_else(|e| format!("(no logs: {e:#})"))
    }

    /// IDs of the project's containers (`ps -a`), networks or volumes.
    fn objects(&self, kind: &str) -> Result<Vec<String>> {
        let label = format!("label=com.docker.compose.project={}", self.project);
        let args: Vec<&str> = match kind {
            "container" => vec!["ps", "-a", "-q", "--filter", &label],
            _ => vec![kind, "ls", "-q", "--filter", &label],
        };
        let out = Command::new("docker")
            .args(&args)
            .output()
            .with_context(|| format!("docker {}", args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "docker {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect())
    }

    fn down(&mut self) -> Result<String> {
        self.down = true;
        self.run("lab.sh", &["down"])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.down {
            let _ = self.command("lab.sh").arg("down").output();
        }
    }
}

/// Asserts a successful attach from the pools given and pings that came back.
fn check_attach(report: &Value, pool_v4: &str, pool_v6: &str, context: &dyn Fn() -> String) {
    assert_eq!(report["result"], "attached", "{report}\n{}", context());
    let v4: std::net::Ipv4Addr = report["ipv4"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no IPv4 address: {report}"));
    let pool: Ipv4Net = pool_v4.parse().expect("pool");
    assert!(
        pool.contains(&v4),
        "IPv4 {v4} is not from {pool_v4}: {report}\n{}",
        context()
    );
    let prefix: IpNet = report["ipv6_prefix"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no IPv6 prefix: {report}"));
    let pool6: IpNet = pool_v6.parse().expect("pool");
    assert!(
        pool6.contains(&prefix) && prefix.prefix_len() == 64,
        "prefix {prefix} is not a /64 of {pool_v6}: {report}\n{}",
        context()
    );
    let pings = report["pings"].as_array().cloned().unwrap_or_default();
    assert_eq!(pings.len(), 2, "{report}");
    assert_eq!(pings[0]["target"], PDN_HOST, "{report}");
    assert_eq!(pings[0]["source"], v4.to_string(), "{report}");
    assert_eq!(pings[1]["target"], PDN_HOST_V6, "{report}");
    let v6_source: std::net::IpAddr = pings[1]["source"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no IPv6 ping source: {report}"));
    assert!(prefix.contains(&v6_source), "{v6_source} not in {prefix}");
    for ping in &pings {
        assert_eq!(ping["sent"], 3, "{report}");
        // Every echo must come back: nothing in the lab drops packets.
        assert_eq!(
            ping["received"],
            3,
            "pings to the pdn lost: {report}\n{}",
            context()
        );
    }
}

/// tshark's one-line summary of a capture, with `display_filter`.
fn tshark(pcap: &Path, display_filter: &str) -> Result<Vec<String>> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-d", "tcp.port==3868,diameter", "-Y", display_filter])
        .output()
        .context("running tshark (scripts/setup.sh installs it)")?;
    if !out.status.success() {
        bail!(
            "tshark -r {} failed: {}",
            pcap.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

#[test]
fn compose_lab_attaches_a_visited_and_a_roaming_subscriber() -> Result<()> {
    let mut lab = Lab::new()?;
    lab.run("build-images.sh", &[])?;
    lab.run("lab.sh", &["up"])?;
    let context = || lab.logs();

    // Six services up, each on its fixed networks, four state volumes.
    let containers = lab.objects("container")?;
    assert_eq!(containers.len(), 6, "containers: {containers:?}");
    assert_eq!(lab.objects("network")?.len(), 6, "networks");
    assert_eq!(lab.objects("volume")?.len(), 4, "volumes");

    let visited = lab.attach("visited")?;
    check_attach(&visited, VISITED_POOL_V4, VISITED_POOL_V6, &context);
    let roaming = lab.attach("roaming")?;
    check_attach(&roaming, HOME_POOL_V4, HOME_POOL_V6, &context);

    // TCP through the chained tunnel: a roaming UE with a TUN device (lab.sh tun) pings
    // with ping(8) and fetches the pdn's page with wget.
    let tun = lab.run("lab.sh", &["tun"])?;
    assert_eq!(
        tun.matches("3 packets transmitted, 3 packets received")
            .count(),
        2,
        "ping(8) to {PDN_HOST} and {PDN_HOST_V6} through the TUN device: {tun}\n{}",
        context()
    );
    assert_eq!(
        tun.matches(PDN_PAGE).count(),
        2,
        "wget over IPv4 and IPv6 through the TUN device: {tun}\n{}",
        context()
    );
    let tun_v4: std::net::Ipv4Addr = tun
        .lines()
        .find_map(|l| l.trim().strip_prefix("ipv4:"))
        .and_then(|a| a.trim().parse().ok())
        .with_context(|| format!("no ipv4 in the ladder: {tun}"))?;
    let home: Ipv4Net = HOME_POOL_V4.parse()?;
    assert!(home.contains(&tun_v4), "{tun_v4} not from {HOME_POOL_V4}");

    // Captures: every node wrote one, tshark finds nothing malformed, the ePDG's IKE
    // keys are logged, and lma-home saw the chained PBU from lma-visited.
    let dir = lab.captures.path();
    for node in ["epdg", "aaa-visited", "aaa-home", "lma-visited", "lma-home"] {
        let pcap = dir.join(format!("{node}.pcap"));
        assert!(pcap.exists(), "no capture {}", pcap.display());
        let bad = tshark(&pcap, "_ws.malformed || _ws.expert.severity >= \"error\"")?;
        assert!(bad.is_empty(), "{node}.pcap: {bad:#?}");
    }
    let keys = std::fs::read_to_string(dir.join("epdg.ikev2_decryption_table"))?;
    assert!(keys.lines().count() >= 2, "IKE key log: {keys}");
    let home_pbus = tshark(
        &dir.join("lma-home.pcap"),
        "mip6.mhtype == 5 && ip.src == 10.250.3.30",
    )?;
    assert!(
        !home_pbus.is_empty(),
        "lma-home received no PBU from lma-visited\n{}",
        context()
    );

    // Restarting the home gateway: new roaming attaches work again.
    lab.run("lab.sh", &["compose", "restart", "lma-home"])?;
    lab.run("lab.sh", &["wait"])?;
    let again = lab.attach("roaming")?;
    check_attach(&again, HOME_POOL_V4, HOME_POOL_V6, &context);

    // Tear down: nothing of the project is left.
    lab.down()?;
    assert_eq!(
        lab.objects("container")?,
        Vec::<String>::new(),
        "containers"
    );
    assert_eq!(lab.objects("network")?, Vec::<String>::new(), "networks");
    assert_eq!(lab.objects("volume")?, Vec::<String>::new(), "volumes");
    Ok(())
}
