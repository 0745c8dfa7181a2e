//! A network namespace holding an LMA, joined to the root namespace (the test's MAG side)
//! by a veth pair, and the `lma` process run inside it; both removed on drop, so a failing
//! test leaves no namespace, veth or process behind. Needs root and iproute2.

use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::{node_binary, Process};

/// Runs `ip ARGS`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    ensure!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A namespace for the LMA and a veth pair to it; removed on drop.
pub struct Topology {
    pub ns: String,
    pub veth: String,
    pub mag: Ipv4Addr,
    pub lma: Ipv4Addr,
    pub mag6: Ipv6Addr,
    pub lma6: Ipv6Addr,
}

impl Topology {
    /// `prefix` (at most 5 characters) names the namespace and veths after the test;
    /// `tag` (0-9) tells apart the topologies, and their addresses
    /// (172.(31-tag).x.0/30, fd00:31:tag:x::/64), of tests running at once.
    pub fn new(prefix: &str, tag: u8) -> Result<Topology> {
        let pid = std::process::id();
        let third = u8::try_from(pid % 200 + 20).unwrap_or(20);
        let sixth = u16::from(third);
        let t = Topology {
            ns: format!("{prefix}{pid}{tag}"),
            veth: format!("{prefix}{pid}{tag}a"),
            mag: Ipv4Addr::new(172, 31 - tag, third, 1),
            lma: Ipv4Addr::new(172, 31 - tag, third, 2),
            mag6: Ipv6Addr::new(0xfd00, 0x31, u16::from(tag), sixth, 0, 0, 0, 1),
            lma6: Ipv6Addr::new(0xfd00, 0x31, u16::from(tag), sixth, 0, 0, 0, 2),
        };
        t.remove();
        let peer = format!("{prefix}{pid}{tag}b");
        ip(&["netns", "add", &t.ns])?;
        // From here on, Drop cleans up whatever was made.
        ip(&[
            "link", "add", &t.veth, "type", "veth", "peer", "name", &peer,
        ])?;
        ip(&["link", "set", &peer, "netns", &t.ns])?;
        ip(&["addr", "add", &format!("{}/30", t.mag), "dev", &t.veth])?;
        ip(&[
            "-6",
            "addr",
            "add",
            &format!("{}/64", t.mag6),
            "dev",
            &t.veth,
            "nodad",
        ])?;
        ip(&["link", "set", &t.veth, "up"])?;
        ip(&[
            "-n",
            &t.ns,
            "addr",
            "add",
            &format!("{}/30", t.lma),
            "dev",
            &peer,
        ])?;
        let lma6 = format!("{}/64", t.lma6);
        ip(&[
            "-n", &t.ns, "-6", "addr", "add", &lma6, "dev", &peer, "nodad",
        ])?;
        ip(&["-n", &t.ns, "link", "set", &peer, "up"])?;
        ip(&["-n", &t.ns, "link", "set", "lo", "up"])?;
        Ok(t)
    }

    /// Deletes the namespace and the veth (also done on drop).
    pub fn remove(&self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .output();
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The `lma` process inside the namespace, its log in a file; killed on drop.
pub struct LmaProcess {
    process: Process,
    log: std::path::PathBuf,
}

impl LmaProcess {
    /// Starts `lma --config CONFIG` inside namespace `ns`, logging to `log`.
    pub fn start(ns: &str, config: &std::path::Path, log: std::path::PathBuf) -> Result<Self> {
        let binary = node_binary("lma")?;
        let file = File::create(&log).context("creating the lma log file")?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(&binary)
            .arg("--config")
            .arg(config)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("starting lma in the namespace")?;
        Ok(LmaProcess {
            process: Process::new("lma", child),
            log,
        })
    }

    /// Everything the LMA logged so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the LMA logs `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.output().contains(needle) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("lma did not log {needle:?}; log:\n{}", self.output())
    }
}

impl Drop for LmaProcess {
    fn drop(&mut self) {
        self.process.terminate(Duration::from_secs(3));
    }
}
