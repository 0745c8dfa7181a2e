//! The network-namespace lab of `scripts/netns-lab.sh` (namespaces ue, epdg, lma, pdn,
//! aaa joined by veth links) seen from a test: [`Lab::up`] runs the script, reads its
//! address plan (`netns-lab.sh env`, so the addresses are written down once, in the
//! script), starts processes inside a namespace ([`Lab::spawn`], [`Lab::command`]) and
//! runs `netns-lab.sh down` on drop, so a failing test leaves no namespace, veth or
//! process behind. Needs root and iproute2.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::{node_binary, Process};

/// The nodes (namespaces) of the lab.
pub const NODES: [&str; 5] = ["ue", "epdg", "lma", "pdn", "aaa"];

/// The roaming variant's extra nodes ([`Lab::up_roaming`]): the visited gateway
/// and the visited AAA.
pub const ROAMING_NODES: [&str; 2] = ["vlma", "vaaa"];

/// `scripts/netns-lab.sh` of this workspace.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
        .join("netns-lab.sh")
}

/// True when the process runs as root (the lab needs it).
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs the script, in its roaming variant (`NETNS_LAB_ROAMING=1`) when `roaming`.
fn run_script_variant(args: &[&str], roaming: bool) -> Result<String> {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .env("NETNS_LAB_ROAMING", if roaming { "1" } else { "0" })
        .output()
        .with_context(|| format!("running netns-lab.sh {}", args.join(" ")))?;
    ensure!(
        out.status.success(),
        "netns-lab.sh {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One lab: its name (the namespaces' prefix), tag (address block) and address plan.
pub struct Lab {
    pub name: String,
    pub tag: u8,
    vars: BTreeMap<String, String>,
    down: bool,
    /// The roaming variant (vlma, vaaa namespaces too).
    roaming: bool,
}

impl Lab {
    /// Brings up lab `<prefix><pid>` with address block `tag` (0-15; see the script's
    /// header). A leftover lab of the same name is torn down first.
    pub fn up(prefix: &str, tag: u8) -> Result<Lab> {
        Self::up_variant(prefix, tag, false)
    }

    /// Brings up the roaming variant (the script's header: vlma, vaaa and their links;
    /// `VISITED_POOL_V4/V6` in the plan).
    pub fn up_roaming(prefix: &str, tag: u8) -> Result<Lab> {
        Self::up_variant(prefix, tag, true)
    }

    fn up_variant(prefix: &str, tag: u8, roaming: bool) -> Result<Lab> {
        let run_script = |args: &[&str]| run_script_variant(args, roaming);
        let name = format!("{prefix}{}", std::process::id());
        let tag_text = tag.to_string();
        let env = run_script(&["env", &tag_text, &name])?;
        let vars = env
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut lab = Lab {
            name,
            tag,
            vars,
            down: false,
            roaming,
        };
        run_script(&["down", &tag_text, &lab.name])?;
        // From here on, Drop tears down whatever `up` made.
        run_script(&["up", &tag_text, &lab.name]).inspect_err(|_| lab.teardown())?;
        Ok(lab)
    }

    /// A variable of the address plan (`netns-lab.sh env`), e.g. `EPDG_UE_V4`.
    pub fn var(&self, key: &str) -> Result<&str> {
        self.vars
            .get(key)
            .map(String::as_str)
            .with_context(|| format!("netns-lab.sh env has no {key}"))
    }

    /// An address of the plan: `addr("epdg", "ue", 4)` is the ePDG's IPv4 address on its
    /// link to the UE.
    pub fn addr(&self, node: &str, peer: &str, version: u8) -> Result<IpAddr> {
        let key = format!("{}_{}_V{version}", node.to_uppercase(), peer.to_uppercase());
        let text = self.var(&key)?;
        text.parse()
            .with_context(|| format!("{key}={text} is not an address"))
    }

    /// The namespace of `node`.
    pub fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.name)
    }

    /// `ip netns exec <ns of node> program` (to add arguments and run).
    pub fn command(&self, node: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(node)]).arg(program);
        c
    }

    /// Runs `program args` in `node`'s namespace to the end; its output, or an error with
    /// its stderr when it failed.
    pub fn run(&self, node: &str, program: &str, args: &[&str]) -> Result<String> {
        let out = self
            .command(node, program)
            .args(args)
            .output()
            .with_context(|| format!("running {program} in {}", self.ns(node)))?;
        ensure!(
            out.status.success(),
            "{program} {} in {} failed ({}):\n{}{}",
            args.join(" "),
            self.ns(node),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts node binary `binary` (of this workspace) with `args` in `node`'s
    /// namespace, stdout and stderr to `log`.
    pub fn spawn(
        &self,
        node: &str,
        binary: &str,
        args: &[&str],
        log: PathBuf,
    ) -> Result<LabProcess> {
        let path = node_binary(binary)?;
        self.spawn_program(node, &path, args, log)
    }

    /// Starts any `program` with `args` in `node`'s namespace, stdout and stderr to `log`.
    pub fn spawn_program(
        &self,
        node: &str,
        program: &Path,
        args: &[&str],
        log: PathBuf,
    ) -> Result<LabProcess> {
        let file = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        // `ip netns exec` execs the program itself: the child's pid is the program's.
        let child = self
            .command(node, program)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {} in {}", program.display(), self.ns(node)))?;
        Ok(LabProcess {
            process: Process::new(format!("{}@{node}", program.display()), child),
            log,
        })
    }

    /// The processes running in any of the lab's namespaces (`ip netns pids`).
    pub fn pids(&self) -> Vec<u32> {
        let roaming: &[&str] = if self.roaming { &ROAMING_NODES } else { &[] };
        NODES
            .iter()
            .chain(roaming)
            .filter_map(|n| {
                Command::new("ip")
                    .args(["netns", "pids", &self.ns(n)])
                    .output()
                    .ok()
            })
            .flat_map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect()
    }

    /// What is left of the lab named `name`: its namespaces, and interfaces of the root
    /// namespace carrying a node's name (the lab makes none there).
    pub fn leftovers(name: &str) -> Result<Vec<String>> {
        let mut left = Vec::new();
        let prefix = format!("{name}-");
        if let Ok(entries) = std::fs::read_dir("/run/netns") {
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(&prefix) {
                    left.push(format!("namespace {n}"));
                }
            }
        }
        let links = Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
            .context("running ip link show")?;
        for line in String::from_utf8_lossy(&links.stdout).lines() {
            let ifname = line
                .split(": ")
                .nth(1)
                .and_then(|n| n.split('@').next())
                .unwrap_or("");
            if NODES.contains(&ifname)
                || ROAMING_NODES.contains(&ifname)
                || ifname.starts_with(name)
            {
                left.push(format!("interface {ifname}"));
            }
        }
        Ok(left)
    }

    /// `netns-lab.sh down`: kills every process still in the namespaces and deletes them
    /// (also done on drop).
    pub fn down(&mut self) -> Result<()> {
        self.down = true;
        run_script_variant(&["down", &self.tag.to_string(), &self.name], self.roaming)?;
        Ok(())
    }

    fn teardown(&mut self) {
        if !self.down {
            if let Err(e) = self.down() {
                eprintln!("lab {}: {e:#}", self.name);
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// A process inside a lab namespace, its output in a log file; SIGTERM (then SIGKILL
/// after three seconds) on drop.
pub struct LabProcess {
    process: Process,
    log: PathBuf,
}

impl LabProcess {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.process.id()
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the process prints `needle`; fails early if it exits.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.output().contains(needle) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.process.try_wait() {
                bail!(
                    "{} exited ({status}) before printing {needle:?}:\n{}",
                    self.process.name(),
                    self.output()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not print {needle:?} within {timeout:?}:\n{}",
                    self.process.name(),
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` (e.g. `libc::SIGINT`).
    pub fn signal(&self, signal: libc::c_int) -> Result<()> {
        self.process.signal(signal)
    }

    /// Waits for the process to exit and returns its exit code (`None`: killed by a
    /// signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>> {
        self.process.wait_exit(timeout)
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        self.process.terminate(Duration::from_secs(3));
    }
}
