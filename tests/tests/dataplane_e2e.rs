//! The whole data path on one machine: `ue-emu attach --ping` (as nobody) => the real
//! `mag` (ESP-in-UDP -> GRE) => the real `lma` with its SGi TUN device in a network
//! namespace of its own, joined to the root namespace by a veth pair; the kernel behind
//! the TUN answers the echo to the TUN's own address, and the reply comes back
//! TUN -> LMA -> GRE (downlink key) -> mag -> ESP -> ue-emu. The AAA is the in-test one
//! of attach_loopback.rs. Needs root (namespace, veth, TUN, raw GRE sockets).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use integration_tests::{node_binary, write_file, Node};
use pmip_common::diameter::base::Capabilities;
use pmip_common::diameter::codes::application::SWM;
use pmip_common::diameter::codes::avp::{ORIGIN_HOST, ORIGIN_REALM, SESSION_ID};
use pmip_common::diameter::codes::command::SESSION_TERMINATION;
use pmip_common::diameter::codes::result;
use pmip_common::diameter::peer::{self, Peer, PeerConfig, PeerEvent, Role};
use pmip_common::diameter::swm::{
    AaAnswer, AnswerResult, DiameterEapAnswer, Mip6AgentInfo, SessionTerminationAnswer, SwmMessage,
};
use pmip_common::diameter::{Avp, Framer, Header, Message};

/// Abort-Session-Request (RFC 6733 section 8.5).
const ABORT_SESSION: u32 = 274;
use pmip_common::eap::{Server, ServerConfig, ServerInput, ServerOutput, Sqn, Subscriber};
use serde_json::Value;

const K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
const OPC: &str = "cd63cb71954a9f4e48a5994e37a02baf";
const IMSI: &str = "234150999999999";
const APN: &str = "internet";
const IPV4_POOL: &str = "10.46.0.0/24";
const IPV6_POOL: &str = "2001:db8:46:100::/56";

fn key(hex_text: &str) -> [u8; 16] {
    let mut k = [0u8; 16];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex_text[2 * i..2 * i + 2], 16).unwrap();
    }
    k
}

/// A minimal SWm server: EAP-AKA for one subscriber, one APN served by `lma`.
struct FakeAaa {
    addr: SocketAddr,
    /// Diameter sessions opened by a DER and not yet ended by an STR.
    sessions: Arc<Mutex<HashSet<String>>>,
    /// Result-Codes of the mag's answers to the Abort-Session-Requests sent after STRs.
    asr_results: Arc<Mutex<Vec<u32>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for FakeAaa {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl FakeAaa {
    fn start(ip: Ipv4Addr, lma: IpAddr) -> Result<FakeAaa> {
        Self::start_at(SocketAddr::new(ip.into(), 0), lma)
    }

    fn start_at(listen: SocketAddr, lma: IpAddr) -> Result<FakeAaa> {
        let listener = TcpListener::bind(listen).context("binding the AAA")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let sessions = Arc::new(Mutex::new(HashSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let asr_results = Arc::new(Mutex::new(Vec::new()));
        let (s, st, asr) = (
            Arc::clone(&sessions),
            Arc::clone(&stop),
            Arc::clone(&asr_results),
        );
        std::thread::spawn(move || {
            let mut sqn = 0u64;
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = serve(stream, lma, &s, &asr, &st, &mut sqn);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(FakeAaa {
            addr,
            sessions,
            asr_results,
            stop,
        })
    }

    fn open_sessions(&self) -> usize {
        self.sessions.lock().map(|s| s.len()).unwrap_or(usize::MAX)
    }
}

fn serve(
    mut stream: std::net::TcpStream,
    lma: IpAddr,
    sessions: &Mutex<HashSet<String>>,
    asr_results: &Mutex<Vec<u32>>,
    stop: &AtomicBool,
    sqn: &mut u64,
) -> Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_millis(50)))?;
    let caps = Capabilities::swm("aaa.test", "test", vec![lma], "fake-aaa");
    let mut peer = Peer::new(PeerConfig::new(caps), Role::Responder, Box::new(|| 7));
    let mut framer = Framer::new(1 << 20);
    let mut servers: HashMap<String, Server> = HashMap::new();
    let mut out = Vec::new();
    peer.handle(peer::Input::ConnectionUp, Instant::now(), &mut out);
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        for o in std::mem::take(&mut out) {
            match o {
                peer::Output::Send(b) => stream.write_all(&b)?,
                peer::Output::Close => return Ok(()),
                peer::Output::Event(PeerEvent::Request(m)) => {
                    if let Some(answer) = answer(&m, lma, &mut servers, sessions, sqn) {
                        stream.write_all(&answer.to_vec()?)?;
                    }
                    if m.header.command_code == SESSION_TERMINATION {
                        // An AAA-initiated request the mag does not implement.
                        let asr = Message::new(Header::request(ABORT_SESSION, SWM, true, 7, 7))
                            .with(Avp::utf8(SESSION_ID, m.session_id().unwrap_or("x")))
                            .with(Avp::utf8(ORIGIN_HOST, "aaa.test"))
                            .with(Avp::utf8(ORIGIN_REALM, "test"));
                        stream.write_all(&asr.to_vec()?)?;
                    }
                }
                peer::Output::Event(PeerEvent::Answer(m))
                    if m.header.command_code == ABORT_SESSION =>
                {
                    if let Ok(mut r) = asr_results.lock() {
                        r.push(m.result_code().unwrap_or(0));
                    }
                }
                peer::Output::Event(PeerEvent::Down(_)) => return Ok(()),
                peer::Output::Event(_) => {}
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                framer.push(&buf[..n]);
                while let Some(m) = framer.next_message()? {
                    peer.handle(peer::Input::Message(&m), Instant::now(), &mut out);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }
        if peer.poll_timeout().is_some_and(|t| t <= Instant::now()) {
            peer.handle(peer::Input::Timeout, Instant::now(), &mut out);
        }
    }
    Ok(())
}

fn answer(
    m: &Message,
    lma: IpAddr,
    servers: &mut HashMap<String, Server>,
    sessions: &Mutex<HashSet<String>>,
    sqn: &mut u64,
) -> Option<Message> {
    let header = m.header;
    match SwmMessage::parse(m).ok()? {
        SwmMessage::Der(der) => {
            sessions.lock().ok()?.insert(der.session_id.clone());
            let server = servers
                .entry(der.session_id.clone())
                .or_insert_with(|| Server::new(ServerConfig::default()));
            let mut rng = rand::rngs::OsRng;
            let mut pending = server.handle(ServerInput::Packet(&der.eap_payload), &mut rng);
            let (mut eap, mut msk, mut failed) = (None, None, false);
            while !pending.is_empty() {
                for o in std::mem::take(&mut pending) {
                    match o {
                        ServerOutput::SubscriberNeeded { imsi } => {
                            let sub = imsi.starts_with(&IMSI[..10]).then(|| {
                                *sqn += 32;
                                Subscriber {
                                    k: key(K),
                                    opc: key(OPC),
                                    amf: [0x80, 0],
                                    sqn: Sqn::new(*sqn).unwrap(),
                                }
                            });
                            pending = server.handle(ServerInput::Subscriber(sub), &mut rng);
                        }
                        ServerOutput::Send(p) => eap = Some(p),
                        ServerOutput::Success(s) => msk = Some(s.keys.msk.to_vec()),
                        ServerOutput::Failure(_) => failed = true,
                        _ => {}
                    }
                }
            }
            let code = if msk.is_some() {
                AnswerResult::SUCCESS
            } else if failed {
                AnswerResult::ResultCode(result::DIAMETER_AUTHENTICATION_REJECTED)
            } else {
                AnswerResult::ResultCode(result::DIAMETER_MULTI_ROUND_AUTH)
            };
            let mut dea = DiameterEapAnswer::new(&der, code, "aaa.test", "test");
            dea.eap_payload = eap;
            dea.eap_master_session_key = msk;
            Some(dea.to_message(&header))
        }
        SwmMessage::Aar(aar) => {
            let known = aar.service_selection.as_deref() == Some(APN);
            let code = if known {
                AnswerResult::SUCCESS
            } else {
                AnswerResult::tgpp(result::DIAMETER_ERROR_USER_NO_APN_SUBSCRIPTION)
            };
            let mut aaa = AaAnswer::new(&aar, code, "aaa.test", "test");
            if known {
                aaa.mip6_agent_info.push(Mip6AgentInfo::address(lma));
            }
            Some(aaa.to_message(&header))
        }
        SwmMessage::Str(str) => {
            sessions.lock().ok()?.remove(&str.session_id);
            servers.remove(&str.session_id);
            Some(
                SessionTerminationAnswer {
                    session_id: str.session_id,
                    result_code: result::DIAMETER_SUCCESS,
                    origin_host: "aaa.test".into(),
                    origin_realm: "test".into(),
                    user_name: None,
                    error_message: None,
                    failed_avp: vec![],
                    proxy_info: str.proxy_info,
                    other: vec![],
                }
                .to_message(&header),
            )
        }
        _ => None,
    }
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

fn unprivileged(binary: &Path) -> std::process::Command {
    if Path::new("/usr/bin/setpriv").exists() {
        let mut c = std::process::Command::new("/usr/bin/setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(binary);
        c
    } else {
        std::process::Command::new(binary)
    }
}

/// Lets nobody read the configs and write the status file in `dir`.
fn open_up(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
    Ok(())
}
fn ip(args: &[&str]) -> Result<()> {
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
struct Topology {
    ns: String,
    veth: String,
    mag: Ipv4Addr,
    lma: Ipv4Addr,
}

impl Topology {
    fn new() -> Result<Topology> {
        let pid = std::process::id();
        let third = u8::try_from(pid % 200 + 30).unwrap_or(20);
        let t = Topology {
            ns: format!("dpe2e{pid}"),
            veth: format!("dpe2e{pid}a"),
            mag: Ipv4Addr::new(172, 31, third, 1),
            lma: Ipv4Addr::new(172, 31, third, 2),
        };
        t.remove();
        let peer = format!("dpe2e{pid}b");
        ip(&["netns", "add", &t.ns])?;
        // From here on, Drop cleans up whatever was made.
        ip(&[
            "link", "add", &t.veth, "type", "veth", "peer", "name", &peer,
        ])?;
        ip(&["link", "set", &peer, "netns", &t.ns])?;
        ip(&["addr", "add", &format!("{}/30", t.mag), "dev", &t.veth])?;
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
        ip(&["-n", &t.ns, "link", "set", &peer, "up"])?;
        ip(&["-n", &t.ns, "link", "set", "lo", "up"])?;
        Ok(t)
    }

    fn remove(&self) {
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
struct LmaProcess {
    child: Child,
    log: std::path::PathBuf,
}

impl LmaProcess {
    fn start(ns: &str, config: &std::path::Path, log: std::path::PathBuf) -> Result<Self> {
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
        Ok(LmaProcess { child, log })
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for(&self, needle: &str, timeout: Duration) -> Result<()> {
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
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TUN_ADDRESS: &str = "10.46.1.1";
const TUN_ADDRESS_V6: &str = "2001:db8:46::1";

#[test]
fn ue_pings_the_lmas_sgi_through_esp_and_gre() -> Result<()> {
    let net = 90;
    let topology = Topology::new()?;
    let dir = tempfile::tempdir()?;
    open_up(dir.path())?;
    let tun = format!("dpe2e{}", std::process::id() % 100_000);
    let lma_config = write_file(
        dir.path(),
        "lma.toml",
        &format!(
            "listen_v4 = \"{lma}:5436\"\nipv4_pool = \"{IPV4_POOL}\"\n\
             ipv6_pool = \"{IPV6_POOL}\"\nallowed_mags = [\"{mag}\"]\n\
             timestamp_window_ms = 7000\n\
             [sgi]\ntun_name = \"{tun}\"\nipv4 = \"{TUN_ADDRESS}/16\"\nipv6 = \"{TUN_ADDRESS_V6}/48\"\nmtu = 1500\n",
            lma = topology.lma,
            mag = topology.mag,
        ),
    )?;
    let lma = LmaProcess::start(&topology.ns, &lma_config, dir.path().join("lma.log"))?;
    lma.wait_for("lma listening", Duration::from_secs(30))?;
    let aaa = FakeAaa::start(Ipv4Addr::new(127, 0, net, 4), topology.lma.into())?;
    let status = dir.path().join("status.json");
    let epdg = Ipv4Addr::new(127, 0, net, 2);
    let mag_config = write_file(
        dir.path(),
        "mag.toml",
        &format!(
            "ike_listen = \"{epdg}:500\"\nnatt_listen = \"{epdg}:4500\"\naaa = \"{aaa}\"\n\
             mh_local = \"{mh}\"\nstatus_file = \"{status}\"\n",
            aaa = aaa.addr,
            mh = topology.mag,
            status = status.display(),
        ),
    )?;
    let mut mag = Node::start("mag", &["--config", path(&mag_config)?])?;
    mag.wait_for("mag listening", Duration::from_secs(30))?;
    mag.wait_for("Diameter peer open", Duration::from_secs(10))?;
    let ue_config = write_file(
        dir.path(),
        "ue.toml",
        &format!(
            "imsi = \"{IMSI}\"\nmnc_digits = 2\nk = \"{K}\"\nopc = \"{OPC}\"\n\
             epdg = \"{epdg}:500\"\nlocal = \"127.0.{net}.1\"\napn = \"{APN}\"\n\
             timeout_ms = 10000\n",
        ),
    )?;
    let out = unprivileged(&node_binary("ue-emu")?)
        .args(["attach", "--json", "--config", path(&ue_config)?])
        .args([
            "--ping",
            TUN_ADDRESS,
            "--ping",
            TUN_ADDRESS_V6,
            "--ping-count",
            "3",
        ])
        .args(["--ping-interval-ms", "300", "--ping-wait-ms", "2000"])
        .output()
        .context("running ue-emu")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).with_context(|| {
        format!(
            "ue-emu printed no JSON: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let context = || format!("{report}\nmag:\n{}\nlma:\n{}", mag.output(), lma.output());
    assert_eq!(report["result"], "attached", "{}", context());
    // The first echo may race the LMA's route set-up; the later ones must come back.
    let mut received = 0;
    for p in report["pings"].as_array().context("no pings")? {
        assert_eq!(p["sent"], 3, "{}", context());
        let r = p["received"].as_u64().unwrap_or(0);
        assert!(r >= 2, "{}", context());
        received += r;
    }
    assert_eq!(out.status.code(), Some(0), "{}", context());
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&status)?)?;
    let c = &s["data_plane"]["counters"];
    assert_eq!(c["uplink_packets"], 6, "{s}");
    assert_eq!(c["downlink_packets"].as_u64(), Some(received), "{s}");
    // ue-emu detached: no data plane session, no AAA session left.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s: Value = serde_json::from_str(&std::fs::read_to_string(&status)?)?;
        if s["data_plane"]["sessions"] == 0 && aaa.open_sessions() == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "state left after detach: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let asr = aaa
        .asr_results
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default();
    assert!(asr.iter().all(|r| *r == 3001), "{asr:?}");
    drop(mag);
    drop(lma);
    drop(topology);
    Ok(())
}
