//! Helpers shared by the cross-process scenario tests: finding and starting the node
//! binaries, waiting for their readiness log line, and a blocking MAG that drives the
//! sans-IO [`BindingUpdateList`] over the real transports (IPv4 UDP 5436, IPv6 raw
//! Mobility Header), whose sockets come from `pmip_node::socket`; and [`net`], the same
//! cores wired together in memory, in virtual time.

pub mod aaa;
pub mod lab;
pub mod net;
pub mod netns;
pub mod tshark_fields;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use pmip_common::binding_update_list::{self as bul, BindingUpdateList, MagConfig};
use pmip_common::mh::{
    ChecksumContext, MobilityHeaderRepr, MobilityMessage, ProxyBindingAck, ProxyBindingUpdate,
};
use pmip_node::socket::RawSocket;

/// The workspace's target directory for the profile the tests were built with.
fn target_dir() -> Result<PathBuf> {
    // Test executables live in target/<profile>/deps/.
    let exe = std::env::current_exe().context("finding the test executable")?;
    let deps = exe
        .parent()
        .context("test executable has no parent folder")?;
    Ok(deps
        .parent()
        .context("deps folder has no parent")?
        .to_path_buf())
}

/// The path of a node binary of this workspace, building it if it is missing.
pub fn node_binary(name: &str) -> Result<PathBuf> {
    let path = target_dir()?.join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--bin", name])
            .status()
            .with_context(|| format!("building {name}"))?;
        if !status.success() {
            bail!("cargo build --bin {name} failed");
        }
    }
    Ok(path)
}

/// A node process whose stdout and stderr are collected; killed when dropped.
pub struct Node {
    process: Process,
    output: Arc<(Mutex<String>, Condvar)>,
}

impl Node {
    /// Starts `binary` with `args`.
    pub fn start(binary: &str, args: &[&str]) -> Result<Node> {
        let path = node_binary(binary)?;
        let mut child = Command::new(&path)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        let output = Arc::new((Mutex::new(String::new()), Condvar::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(|l| l.ok()) {
                    let (text, changed) = &*output;
                    if let Ok(mut text) = text.lock() {
                        text.push_str(&line);
                        text.push('\n');
                    }
                    changed.notify_all();
                }
            });
        }
        Ok(Node {
            process: Process::new(binary, child),
            output,
        })
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.process.id()
    }

    /// Everything the node printed so far.
    pub fn output(&self) -> String {
        self.output.0.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Waits until the node prints a line containing `needle`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let (text, changed) = &*self.output;
        let mut guard = text
            .lock()
            .map_err(|_| anyhow::anyhow!("output lock poisoned"))?;
        loop {
            if guard.contains(needle) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.process.try_wait() {
                bail!(
                    "{} exited ({status}) before printing {needle:?}:\n{}",
                    self.process.name(),
                    *guard
                );
            }
            let now = Instant::now();
            if now >= deadline {
                bail!(
                    "{} did not print {needle:?} within {timeout:?}:\n{}",
                    self.process.name(),
                    *guard
                );
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            guard = changed
                .wait_timeout(guard, wait)
                .map_err(|_| anyhow::anyhow!("output lock poisoned"))?
                .0;
        }
    }

    /// Sends a signal (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: libc::c_int) -> Result<()> {
        self.process.signal(signal)
    }

    /// Waits for the process to exit by itself and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>> {
        self.process.wait_exit(timeout)
    }
}
impl Drop for Node {
    fn drop(&mut self) {
        self.process.kill();
    }
}

/// A child process of a test, named in its errors: signalling it, waiting for its exit,
/// stopping it. [`Node`], [`lab::LabProcess`] and [`netns::LmaProcess`] each hold one.
pub struct Process {
    name: String,
    child: Child,
}

impl Process {
    /// Wraps `child`, called `name` in errors.
    pub fn new(name: impl Into<String>, child: Child) -> Process {
        Process {
            name: name.into(),
            child,
        }
    }

    /// The name errors give the process.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        self.child.try_wait()
    }

    /// Sends a signal (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: libc::c_int) -> Result<()> {
        let pid = libc::pid_t::try_from(self.child.id()).context("pid out of range")?;
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("signalling {}", self.name));
        }
        Ok(())
    }

    /// Waits for the process to exit and returns its exit code (`None`: killed by a
    /// signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            if Instant::now() >= deadline {
                bail!("{} still running after {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the process if it still runs: SIGTERM, then SIGKILL after `grace`; reaps it.
    pub fn terminate(&mut self, grace: Duration) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.signal(libc::SIGTERM);
            if self.wait_exit(grace).is_err() {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// mag's Origin-Host when its config names none: the ePDG the tests' AAAs admit.
pub const EPDG_ORIGIN_HOST: &str = "epdg.epc.mnc015.mcc234.3gppnetwork.org";

/// One `[[peers]]` entry of an aaa-stub config: `origin_host` may connect from `address`
/// (an address or a prefix).
pub fn aaa_peer(origin_host: &str, address: impl std::fmt::Display) -> String {
    format!("[[peers]]\norigin_host = \"{origin_host}\"\naddress = \"{address}\"\n")
}

/// The `[[peers]]` entry admitting the ePDG (mag, default Origin-Host) on loopback: a
/// connection to 127.0.x.y from an unbound socket comes from 127.0.0.1.
pub fn aaa_peer_epdg_loopback() -> String {
    aaa_peer(EPDG_ORIGIN_HOST, "127.0.0.1")
}

/// Writes `contents` to `name` inside `dir` and returns the path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// One socket toward the LMA: UDP 5436 over IPv4 (RFC 5844) or a raw Mobility Header
/// socket over IPv6 whose checksum the kernel fills and verifies (both from
/// `pmip_node::socket`).
pub struct MhSocket {
    transport: Transport,
    local: IpAddr,
}

enum Transport {
    Udp(std::net::UdpSocket),
    Raw(RawSocket),
}

impl MhSocket {
    /// Binds a socket at `local` (port 0 for an ephemeral UDP port; ignored for IPv6).
    pub fn bind(local: SocketAddr) -> Result<MhSocket> {
        // A test MAG sends bursts of a thousand PBUs before it reads the answers: room
        // for them all (past rmem_max when root).
        let buffer = 8 << 20;
        let transport = match local.ip() {
            IpAddr::V4(_) => Transport::Udp(
                pmip_node::socket::udp(local, Some(buffer))
                    .with_context(|| format!("binding UDP {local}"))?,
            ),
            IpAddr::V6(address) => {
                let raw = RawSocket::mobility_header(address, true).with_context(|| {
                    format!("opening a raw Mobility Header socket at {address} (needs root)")
                })?;
                raw.set_receive_buffer(buffer);
                Transport::Raw(raw)
            }
        };
        Ok(MhSocket {
            transport,
            local: local.ip(),
        })
    }

    /// The address PBAs come back to (port 0 for the raw IPv6 socket).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        let port = match &self.transport {
            Transport::Udp(s) => s.local_addr()?.port(),
            Transport::Raw(_) => 0,
        };
        Ok(SocketAddr::new(self.local, port))
    }

    /// Sends Mobility Header bytes to the LMA.
    pub fn send(&self, to: SocketAddr, bytes: &[u8]) -> Result<()> {
        match &self.transport {
            Transport::Udp(s) => s.send_to(bytes, to),
            Transport::Raw(s) => s.send_to(bytes, to.ip()),
        }
        .with_context(|| format!("sending to {to}"))?;
        Ok(())
    }

    /// Receives one Mobility Header message, or `None` after `timeout`.
    pub fn recv(&self, timeout: Duration) -> Result<Option<(SocketAddr, Vec<u8>)>> {
        let timeout = Some(timeout.max(Duration::from_millis(1)));
        let mut buf = vec![0u8; 65_536];
        let received = match &self.transport {
            Transport::Udp(s) => {
                s.set_read_timeout(timeout)?;
                s.recv_from(&mut buf)
            }
            Transport::Raw(s) => {
                s.set_read_timeout(timeout)?;
                s.recv_from(&mut buf)
                    .map(|(len, from)| (len, SocketAddr::new(from, 0)))
            }
        };
        match received {
            Ok((len, from)) => Ok(Some((from, buf[..len].to_vec()))),
            Err(e) if pmip_node::socket::is_timeout(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The checksum context for messages this socket receives (the kernel checks raw
    /// IPv6; UDP carries the RFC 5844 rule).
    pub fn checksum_for(&self, from: SocketAddr) -> ChecksumContext {
        match (from.ip(), self.local) {
            (IpAddr::V4(_), IpAddr::V4(_)) => ChecksumContext::Ipv4Udp,
            _ => ChecksumContext::Skip,
        }
    }

    fn checksum_to(&self, to: SocketAddr) -> ChecksumContext {
        match (self.local, to.ip()) {
            (IpAddr::V4(_), IpAddr::V4(_)) => ChecksumContext::Ipv4Udp,
            _ => ChecksumContext::Skip,
        }
    }

    /// Sends one message and waits for one answer (any Mobility Header message).
    pub fn exchange(
        &self,
        to: SocketAddr,
        message: &MobilityHeaderRepr,
        timeout: Duration,
    ) -> Result<Option<MobilityHeaderRepr>> {
        self.send(to, &message.to_bytes(self.checksum_to(to)))?;
        match self.recv(timeout)? {
            Some((from, bytes)) => {
                let reply = MobilityHeaderRepr::parse(&bytes, self.checksum_for(from))
                    .with_context(|| format!("parsing the reply from {from}"))?;
                Ok(Some(reply))
            }
            None => Ok(None),
        }
    }
}

/// A PBU as a MAG sends it: the Mobility Header message with the checksum of its path.
pub fn encode_pbu(pbu: &ProxyBindingUpdate, checksum: ChecksumContext) -> Vec<u8> {
    MobilityHeaderRepr {
        payload_proto: pmip_common::mh::IPPROTO_NONE,
        message: MobilityMessage::BindingUpdate(pbu.to_binding_update()),
    }
    .to_bytes(checksum)
}

/// The PBA in a received Mobility Header message; `None` for anything else or broken.
pub fn decode_pba(bytes: &[u8], checksum: ChecksumContext) -> Option<ProxyBindingAck> {
    match MobilityHeaderRepr::parse(bytes, checksum).ok()?.message {
        MobilityMessage::BindingAck(ba) => ProxyBindingAck::try_from(&ba).ok(),
        _ => None,
    }
}

/// A blocking MAG for tests: the real [`BindingUpdateList`] with a thin loop around one
/// [`MhSocket`]. Every Mobility Header message received goes to the list, so it answers
/// heartbeats (RFC 5847) and Binding Revocation Indications (RFC 5846) too.
pub struct TestMag {
    pub socket: MhSocket,
    pub list: BindingUpdateList,
    /// Every event the list reported, in order.
    pub events: Vec<bul::Output>,
    /// What the list learnt about its LMAs (restarts, revocations).
    pub lma_events: Vec<bul::LmaEvent>,
    /// Messages that failed to parse.
    pub unparsable: usize,
}

impl TestMag {
    pub fn new(local: SocketAddr, config: MagConfig) -> Result<TestMag> {
        Ok(TestMag {
            socket: MhSocket::bind(local)?,
            list: BindingUpdateList::new(config, Instant::now(), SystemTime::now()),
            events: Vec::new(),
            lma_events: Vec::new(),
            unparsable: 0,
        })
    }

    /// Feeds one input and carries out the outputs (sends PBUs, records events).
    pub fn input(&mut self, input: bul::Input) -> Result<()> {
        let mut out = Vec::new();
        self.list.handle(input, Instant::now(), &mut out);
        self.carry_out(out)
    }

    fn carry_out(&mut self, out: Vec<bul::Output>) -> Result<()> {
        for output in out {
            match output {
                bul::Output::Send { to, pbu } => {
                    let bytes = encode_pbu(&pbu, self.socket.checksum_to(to));
                    self.socket.send(to, &bytes)?;
                }
                event => self.events.push(event),
            }
        }
        while let Some(bul::Transmit { to, message }) = self.list.poll_transmit() {
            let repr = MobilityHeaderRepr {
                payload_proto: pmip_common::mh::IPPROTO_NONE,
                message,
            };
            self.socket
                .send(to, &repr.to_bytes(self.socket.checksum_to(to)))?;
        }
        while let Some(event) = self.list.poll_event() {
            self.lma_events.push(event);
        }
        Ok(())
    }

    /// Runs the loop until `done(events)` is true or `timeout` passes.
    pub fn run_until(
        &mut self,
        timeout: Duration,
        done: impl Fn(&[bul::Output]) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !done(&self.events) {
            let now = Instant::now();
            if now >= deadline {
                bail!(
                    "MAG loop timed out after {timeout:?} with {} events",
                    self.events.len()
                );
            }
            let wake = self.list.poll_timeout().unwrap_or(deadline).min(deadline);
            let wait = wake.saturating_duration_since(now);
            match self.socket.recv(wait)? {
                Some((from, bytes)) => {
                    match MobilityHeaderRepr::parse(&bytes, self.socket.checksum_for(from)) {
                        Ok(repr) => {
                            let message = repr.message;
                            self.input(bul::Input::Mobility { from, message })?
                        }
                        Err(_) => self.unparsable += 1,
                    }
                }
                None => {
                    if self
                        .list
                        .poll_timeout()
                        .is_some_and(|t| t <= Instant::now())
                    {
                        self.input(bul::Input::Timeout)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Runs `ue-emu attach --json --config CONFIG EXTRA...` and returns its exit code and the
/// one JSON object it prints (an error, with its stderr, when it printed none).
pub fn ue_emu_attach(config: &Path, extra: &[&str]) -> Result<(Option<i32>, serde_json::Value)> {
    let out = Command::new(node_binary("ue-emu")?)
        .args(["attach", "--json", "--config"])
        .arg(config)
        .args(extra)
        .output()
        .context("running ue-emu")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(stdout.trim()).with_context(|| {
        format!(
            "ue-emu printed no JSON: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((out.status.code(), report))
}
