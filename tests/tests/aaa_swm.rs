//! The real `aaa-stub` binaries over Diameter TCP on loopback, driven by a small SWm
//! client in this test with the library's EAP-AKA `Peer` (a software USIM) as the UE:
//! home AAA alone, and a visited AAA relaying to a home AAA. Each test uses its own
//! 127.0.<net>.x addresses.
//!
//! Oracles: tshark decodes the `--pcap` of the AAA (no malformed packet or expert
//! error; Session-Id, Result-Code, EAP-Payload and the MIP6-Agent-Info address present),
//! and python-diameter (PyPI, installed by scripts/setup.sh) decodes every message too.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use integration_tests::{write_file, Node};
use pmip_common::diameter::base::{Capabilities, CapabilitiesExchangeRequest};
use pmip_common::diameter::codes::{avp, result, vendor};
use pmip_common::diameter::swm::{
    AaRequest, AuthRequestType, DiameterEapAnswer, DiameterEapRequest, SessionTerminationRequest,
    TerminationCause,
};
use pmip_common::diameter::{Framer, Message};
use pmip_common::eap::{EapRepr, PeerConfig, PeerOutput, Sqn, TypeData, Usim};

const K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
const OPC: &str = "cd63cb71954a9f4e48a5994e37a02baf";
const IMSI: &str = "001010000000001";
const HOME_REALM: &str = "epc.mnc001.mcc001.3gppnetwork.org";
const VISITED_REALM: &str = "epc.mnc002.mcc001.3gppnetwork.org";
const APN: &str = "internet";

fn key(hex_text: &str) -> [u8; 16] {
    let mut k = [0u8; 16];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex_text[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    k
}

fn ip(net: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, net, host)
}

fn nai(imsi: &str) -> String {
    format!("0{imsi}@nai.{HOME_REALM}")
}

/// A `[[peers]]` entry.
fn peer(origin_host: &str, address: impl std::fmt::Display) -> String {
    format!("[[peers]]\norigin_host = \"{origin_host}\"\naddress = \"{address}\"\n")
}

/// The test's ePDG client, `epdg.test`, from `client`.
fn epdg(client: Ipv4Addr) -> String {
    peer("epdg.test", client)
}

/// A visited AAA relaying to a home AAA on loopback: the kernel gives its connection
/// the source 127.0.0.1.
fn visited_aaa() -> String {
    peer(&format!("visited.{VISITED_REALM}"), "127.0.0.1")
}

/// Starts an aaa-stub in `dir` listening on `addr`; `extra` is appended to its config
/// (its `[[peers]]` at least: without, nobody is admitted).
#[allow(clippy::too_many_arguments)]
fn start_aaa(
    dir: &Path,
    name: &str,
    addr: SocketAddr,
    realm: &str,
    gateway: IpAddr,
    home: Option<SocketAddr>,
    sqn: u64,
    extra: &str,
) -> Result<Node> {
    write_file(
        dir,
        &format!("{name}-subscribers.toml"),
        &format!(
            "[[subscriber]]\nimsi = \"{IMSI}\"\nk = \"{K}\"\nopc = \"{OPC}\"\nsqn = {sqn}\n\
             apns = [\"internet\", \"corp\"]\n"
        ),
    )?;
    let homes = home
        .map(|h| format!("[home_realms]\n\"{HOME_REALM}\" = \"{h}\"\n"))
        .unwrap_or_default();
    let config = write_file(
        dir,
        &format!("{name}.toml"),
        &format!(
            "origin_host = \"{name}.{realm}\"\norigin_realm = \"{realm}\"\nlisten = \"{addr}\"\n\
             subscribers = \"{name}-subscribers.toml\"\nsqn_state = \"{name}-sqn.toml\"\n\
             relay_timeout_secs = 2\n{extra}\n[gateways]\ninternet = \"{gateway}\"\n{homes}"
        ),
    )?;
    let pcap = dir.join(format!("{name}.pcap"));
    let status = dir.join(format!("{name}-status.json"));
    let config = config.to_str().context("path")?.to_string();
    let pcap = pcap.to_str().context("path")?.to_string();
    let status = status.to_str().context("path")?.to_string();
    let mut node = Node::start(
        "aaa-stub",
        &[
            "--config",
            &config,
            "--pcap",
            &pcap,
            "--status-file",
            &status,
        ],
    )?;
    node.wait_for("aaa listening", Duration::from_secs(30))?;
    Ok(node)
}

/// A Diameter client (the ePDG's side of SWm) over blocking TCP.
struct Client {
    stream: TcpStream,
    framer: Framer,
    next_id: u32,
}

impl Client {
    /// A TCP connection from `local`, nothing sent yet.
    fn tcp(to: SocketAddr, local: Ipv4Addr) -> Result<Client> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.bind(&SocketAddr::new(local.into(), 0).into())?;
        socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(Client {
            stream,
            framer: Framer::new(1 << 20),
            next_id: 100,
        })
    }

    /// Connects from `local` and sends a CER as `origin_host`; the CEA.
    fn open(to: SocketAddr, local: Ipv4Addr, origin_host: &str) -> Result<(Client, Message)> {
        let mut client = Client::tcp(to, local)?;
        let cer = CapabilitiesExchangeRequest {
            capabilities: Capabilities::swm(origin_host, "test", vec![local.into()], "aaa-test"),
        }
        .to_message(1, 1);
        client.send(&cer)?;
        let cea = client.read(Duration::from_secs(5))?;
        Ok((client, cea))
    }

    /// Connects from `local` as `epdg.test`: CER, and a CEA with DIAMETER_SUCCESS.
    fn connect(to: SocketAddr, local: Ipv4Addr) -> Result<Client> {
        let (client, cea) = Client::open(to, local, "epdg.test")?;
        if cea.result_code() != Some(result::DIAMETER_SUCCESS) {
            bail!("CEA {:?}", cea.result_code());
        }
        Ok(client)
    }

    fn send(&mut self, m: &Message) -> Result<()> {
        self.stream.write_all(&m.to_vec()?)?;
        Ok(())
    }

    fn read(&mut self, timeout: Duration) -> Result<Message> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 65536];
        loop {
            if let Some(bytes) = self.framer.next_message()? {
                return Message::from_bytes(&bytes).context("parsing an answer");
            }
            if Instant::now() >= deadline {
                bail!("no Diameter message within {timeout:?}");
            }
            match self.stream.read(&mut buf) {
                Ok(0) => bail!("connection closed"),
                Ok(n) => self.framer.push(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sends `m` (its Hop-by-Hop id replaced) and returns the answer to it.
    fn request(&mut self, mut m: Message, timeout: Duration) -> Result<Message> {
        self.next_id += 1;
        m.header.hop_by_hop = self.next_id;
        m.header.end_to_end = self.next_id;
        self.send(&m)?;
        loop {
            let a = self.read(timeout)?;
            if a.header.hop_by_hop == self.next_id && !a.header.flags.request() {
                return Ok(a);
            }
        }
    }
}

fn der(session: &str, user: &str, eap: Vec<u8>, apn: Option<&str>) -> Message {
    DiameterEapRequest {
        session_id: session.into(),
        origin_host: "epdg.test".into(),
        origin_realm: "test".into(),
        destination_realm: HOME_REALM.into(),
        destination_host: None,
        auth_request_type: AuthRequestType::AuthorizeAuthenticate,
        eap_payload: eap,
        user_name: Some(user.into()),
        rat_type: Some(0),
        service_selection: apn.map(str::to_string),
        mip6_feature_vector: None,
        visited_network_identifier: None,
        route_record: vec![],
        proxy_info: vec![],
        other: vec![],
    }
    .to_message(0, 0)
}

fn eap_identity(identity: &str) -> Vec<u8> {
    EapRepr::Response {
        identifier: 0,
        data: TypeData::Identity(identity.as_bytes().to_vec()),
    }
    .to_bytes()
    .expect("an EAP-Response/Identity fits its Length field")
}

/// The end of one EAP-AKA conversation.
struct Outcome {
    last: Message,
    dea: Option<DiameterEapAnswer>,
    peer_msk: Option<Vec<u8>>,
    sqns: Vec<u64>,
    rounds: usize,
}

fn authenticate(
    client: &mut Client,
    session: &str,
    k: &str,
    sqn_ms: u64,
    apn: Option<&str>,
    timeout: Duration,
) -> Result<Outcome> {
    authenticate_as(client, session, k, sqn_ms, apn, timeout, None)
}

/// `pseudonym`: the identity the UE gives first instead of its permanent one.
fn authenticate_as(
    client: &mut Client,
    session: &str,
    k: &str,
    sqn_ms: u64,
    apn: Option<&str>,
    timeout: Duration,
    pseudonym: Option<&str>,
) -> Result<Outcome> {
    let permanent = nai(IMSI);
    let user = pseudonym.map_or_else(|| permanent.clone(), str::to_string);
    let mut peer = pmip_common::eap::Peer::new(
        PeerConfig {
            permanent_identity: permanent.clone().into_bytes(),
            eap_identity: pseudonym.map(|p| p.as_bytes().to_vec()),
            result_indication: false,
        },
        Usim::new(&key(k), &key(OPC), Sqn::new(sqn_ms).context("sqn")?),
    );
    let mut eap = eap_identity(&user);
    let (mut peer_msk, mut sqns, mut rounds) = (None, Vec::new(), 0);
    loop {
        rounds += 1;
        let answer = client.request(der(session, &user, eap.clone(), apn), timeout)?;
        let payload = answer
            .find(avp::EAP_PAYLOAD, None)
            .map(|a| a.as_octets().to_vec());
        let mut next = None;
        if let Some(p) = &payload {
            for o in peer.handle(p) {
                match o {
                    PeerOutput::Send(b) => next = Some(b),
                    PeerOutput::Success(keys) => peer_msk = Some(keys.msk.to_vec()),
                    PeerOutput::SqnAccepted(s) => sqns.push(s.value()),
                    _ => {}
                }
            }
        }
        if answer.result_code() == Some(result::DIAMETER_MULTI_ROUND_AUTH) && rounds < 6 {
            eap = next.context("the peer had nothing to answer")?;
            continue;
        }
        let dea = if answer.header.flags.error() {
            None
        } else {
            Some(DiameterEapAnswer::parse(&answer)?)
        };
        return Ok(Outcome {
            last: answer,
            dea,
            peer_msk,
            sqns,
            rounds,
        });
    }
}

fn aar(session: &str, apn: &str) -> Message {
    AaRequest {
        session_id: session.into(),
        origin_host: "epdg.test".into(),
        origin_realm: "test".into(),
        destination_realm: HOME_REALM.into(),
        destination_host: None,
        auth_request_type: AuthRequestType::AuthorizeOnly,
        user_name: Some(nai(IMSI)),
        service_selection: Some(apn.into()),
        visited_network_identifier: None,
        mip6_agent_info: vec![],
        route_record: vec![],
        proxy_info: vec![],
        other: vec![],
    }
    .to_message(0, 0)
}

fn str_request(session: &str) -> Message {
    SessionTerminationRequest {
        session_id: session.into(),
        origin_host: "epdg.test".into(),
        origin_realm: "test".into(),
        destination_realm: HOME_REALM.into(),
        destination_host: None,
        termination_cause: TerminationCause::from(1),
        user_name: Some(nai(IMSI)),
        route_record: vec![],
        proxy_info: vec![],
        other: vec![],
    }
    .to_message(0, 0)
}

fn experimental(m: &Message) -> Option<u32> {
    let group = m.find(avp::EXPERIMENTAL_RESULT, None)?.as_grouped().ok()?;
    group
        .iter()
        .find(|a| a.is(avp::EXPERIMENTAL_RESULT_CODE, None))?
        .as_u32()
        .ok()
}

fn gateways(dea: &DiameterEapAnswer) -> Vec<IpAddr> {
    dea.mip6_agent_info
        .iter()
        .flat_map(|i| i.home_agent_addresses.clone())
        .collect()
}

const T: Duration = Duration::from_secs(5);

/// Runs every negative and positive case against `aaa` (a home AAA, or a visited one
/// relaying to it) and returns nothing: it asserts.
fn scenario(to: SocketAddr, client_ip: Ipv4Addr, expected_gateways: &[IpAddr]) -> Result<()> {
    let mut c = Client::connect(to, client_ip)?;
    // Success: MSK equal on both sides, gateway(s) in the answer.
    let ok = authenticate(&mut c, "epdg.test;1;ok", K, 0, Some(APN), T)?;
    let dea = ok.dea.as_ref().context("a DEA")?;
    assert_eq!(ok.last.result_code(), Some(result::DIAMETER_SUCCESS));
    assert_eq!(ok.rounds, 2, "identity, challenge");
    assert!(dea.eap_master_session_key.is_some());
    assert_eq!(dea.eap_master_session_key, ok.peer_msk, "MSK differs");
    assert_eq!(gateways(dea), expected_gateways);
    // AAR for the APN, then an unsubscribed APN, then STR.
    let a = c.request(aar("epdg.test;1;ok", APN), T)?;
    assert_eq!(a.result_code(), Some(result::DIAMETER_SUCCESS), "{a:?}");
    let a = c.request(aar("epdg.test;1;ok", "unknown-apn"), T)?;
    assert_eq!(
        experimental(&a),
        Some(result::DIAMETER_ERROR_USER_NO_APN_SUBSCRIPTION),
        "{a:?}"
    );
    let a = c.request(str_request("epdg.test;1;ok"), T)?;
    assert_eq!(a.result_code(), Some(result::DIAMETER_SUCCESS));
    // Wrong K: the peer rejects the network's AUTN -> EAP-Failure, 4001.
    let bad = authenticate(
        &mut c,
        "epdg.test;2;badk",
        "00112233445566778899aabbccddeeff",
        0,
        Some(APN),
        T,
    )?;
    assert_eq!(
        bad.last.result_code(),
        Some(result::DIAMETER_AUTHENTICATION_REJECTED)
    );
    assert_eq!(
        bad.dea
            .and_then(|d| d.eap_payload)
            .and_then(|p| p.first().copied()),
        Some(4),
        "EAP-Failure"
    );
    // AUTS: a USIM far ahead resynchronises and succeeds.
    let auts = authenticate(&mut c, "epdg.test;3;auts", K, 1 << 20, Some(APN), T)?;
    assert_eq!(auts.last.result_code(), Some(result::DIAMETER_SUCCESS));
    assert_eq!(auts.rounds, 3, "identity, challenge, resync challenge");
    assert!(auts.sqns.iter().all(|s| *s > 1 << 20));
    // Unknown user.
    let user = format!("0001019999999999@nai.{HOME_REALM}");
    let a = c.request(
        der("epdg.test;4;unknown", &user, eap_identity(&user), Some(APN)),
        T,
    )?;
    assert_eq!(
        experimental(&a),
        Some(result::DIAMETER_ERROR_USER_UNKNOWN),
        "{a:?}"
    );
    let group = a
        .find(avp::EXPERIMENTAL_RESULT, None)
        .context("exp")?
        .as_grouped()?;
    assert!(group
        .iter()
        .any(|v| v.is(avp::VENDOR_ID, None) && v.as_u32().ok() == Some(vendor::TGPP)));
    // A NAI that is not IMSI-based: the AAA asks for the permanent identity.
    let pseudonym = format!("anonymous@nai.{HOME_REALM}");
    let id = authenticate_as(
        &mut c,
        "epdg.test;6;anon",
        K,
        0,
        Some(APN),
        T,
        Some(&pseudonym),
    )?;
    assert_eq!(id.last.result_code(), Some(result::DIAMETER_SUCCESS));
    assert_eq!(id.rounds, 3, "identity, AKA-Identity, challenge");
    // Malformed: a DER without Auth-Request-Type -> DIAMETER_MISSING_AVP with Failed-AVP.
    let mut m = der(
        "epdg.test;5;bad",
        &nai(IMSI),
        eap_identity(&nai(IMSI)),
        None,
    );
    m.avps.retain(|a| !a.is(avp::AUTH_REQUEST_TYPE, None));
    let a = c.request(m, T)?;
    assert_eq!(a.result_code(), Some(result::DIAMETER_MISSING_AVP), "{a:?}");
    let failed = a
        .find(avp::FAILED_AVP, None)
        .context("Failed-AVP")?
        .as_grouped()?;
    assert!(
        failed.iter().any(|f| f.is(avp::AUTH_REQUEST_TYPE, None)),
        "{failed:?}"
    );
    Ok(())
}

/// tshark decodes the pcap cleanly, with the AVPs we meant.
fn tshark_check(pcap: &Path, gateway: IpAddr) -> Result<()> {
    let run = |args: &[&str]| -> Result<String> {
        // TLS connections (port 5658) are recorded as their plaintext messages.
        let out = Command::new("tshark")
            .args(["-n", "-d", "tcp.port==5658,diameter", "-r"])
            .arg(pcap)
            .args(args)
            .output()
            .context("running tshark (installed by scripts/setup.sh)")?;
        if !out.status.success() {
            bail!("tshark: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let bad = run(&["-Y", "_ws.malformed || _ws.expert.severity >= warning"])?;
    assert!(bad.trim().is_empty(), "tshark found problems:\n{bad}");
    let fields = run(&[
        "-Y",
        "diameter",
        "-T",
        "fields",
        "-e",
        "diameter.cmd.code",
        "-e",
        "diameter.Session-Id",
        "-e",
        "diameter.Result-Code",
        "-e",
        "diameter.EAP-Payload",
        "-e",
        "diameter.MIP-Home-Agent-Address",
    ])?;
    assert!(fields.contains("268\t"), "no DER/DEA:\n{fields}");
    assert!(
        fields.contains("epdg.test;1;ok"),
        "no Session-Id:\n{fields}"
    );
    assert!(fields.contains("2001"), "no success:\n{fields}");
    // tshark shows the Address as its bytes: family 1 (IPv4) and the address.
    let hex: String = match gateway {
        IpAddr::V4(a) => a.octets().iter().map(|b| format!("{b:02x}")).collect(),
        IpAddr::V6(a) => a.octets().iter().map(|b| format!("{b:02x}")).collect(),
    };
    assert!(
        fields.contains(&gateway.to_string()) || fields.contains(&format!("0001{hex}")),
        "no gateway {gateway}:\n{fields}"
    );
    assert!(
        fields
            .lines()
            .any(|l| l.starts_with("268\t") && l.split('\t').nth(3).is_some_and(|e| !e.is_empty())),
        "no EAP-Payload:\n{fields}"
    );
    Ok(())
}

const PY_DECODER: &str = r#"
import sys, json
try:
    from diameter.message import Message
except ImportError:
    print("python-diameter is missing: run scripts/setup.sh (pip install python-diameter)", file=sys.stderr)
    sys.exit(2)
for line in sys.stdin:
    raw = bytes.fromhex(line.strip())
    m = Message.from_bytes(raw)
    print(json.dumps({"cmd": m.header.command_code, "request": m.header.is_request,
                      "avps": [a.code for a in m.avps]}))
"#;

/// python-diameter decodes every message of the pcap (read back from its records).
fn python_check(pcap: &Path) -> Result<()> {
    let bytes = std::fs::read(pcap)?;
    let mut hex_lines = String::new();
    let mut at = 24;
    let mut count = 0;
    while at + 16 <= bytes.len() {
        let caplen = u32::from_ne_bytes(bytes[at + 8..at + 12].try_into()?) as usize;
        let packet = bytes
            .get(at + 16..at + 16 + caplen)
            .context("truncated pcap")?;
        at += 16 + caplen;
        let ihl = usize::from(packet[0] & 0x0f) * 4;
        let doff = usize::from(packet[ihl + 12] >> 4) * 4;
        let payload = &packet[ihl + doff..];
        if payload.is_empty() {
            continue; // the synthetic handshake and FIN carry no message
        }
        for b in payload {
            hex_lines.push_str(&format!("{b:02x}"));
        }
        hex_lines.push('\n');
        count += 1;
    }
    let mut child = Command::new("python3")
        .args(["-c", PY_DECODER])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running python3")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(hex_lines.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "python-diameter failed to decode: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let decoded: Vec<serde_json::Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(decoded.len(), count);
    assert!(decoded.iter().any(|d| d["cmd"] == 268
        && d["request"] == false
        && d["avps"]
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c == 462) && a.iter().any(|c| c == 263))));
    assert!(decoded.iter().any(|d| d["cmd"] == 265));
    assert!(decoded.iter().any(|d| d["cmd"] == 275));
    Ok(())
}

#[test]
fn aaa_home_alone() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let addr = SocketAddr::new(ip(61, 10).into(), 3868);
    let gw: IpAddr = ip(61, 3).into();
    let peers = epdg(ip(61, 1));
    let aaa = start_aaa(dir.path(), "home", addr, HOME_REALM, gw, None, 0, &peers)?;
    let r = scenario(addr, ip(61, 1), &[gw]);
    if let Err(e) = r {
        bail!("{e:#}\naaa output:\n{}", aaa.output());
    }
    drop(aaa);
    let pcap = dir.path().join("home.pcap");
    tshark_check(&pcap, gw)?;
    python_check(&pcap)?;
    Ok(())
}

#[test]
fn aaa_visited_proxies_to_home() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let home_addr = SocketAddr::new(ip(62, 10).into(), 3868);
    let visited_addr = SocketAddr::new(ip(62, 20).into(), 3868);
    let (home_gw, visited_gw): (IpAddr, IpAddr) = (ip(62, 3).into(), ip(62, 23).into());
    let home = start_aaa(
        dir.path(),
        "home",
        home_addr,
        HOME_REALM,
        home_gw,
        None,
        0,
        &visited_aaa(),
    )?;
    let visited = start_aaa(
        dir.path(),
        "visited",
        visited_addr,
        VISITED_REALM,
        visited_gw,
        Some(home_addr),
        0,
        &epdg(ip(62, 1)),
    )?;
    // Home first, visited second.
    let r = scenario(visited_addr, ip(62, 1), &[home_gw, visited_gw]);
    if let Err(e) = r {
        bail!(
            "{e:#}\nvisited output:\n{}\nhome output:\n{}",
            visited.output(),
            home.output()
        );
    }
    drop(visited);
    drop(home);
    let pcap = dir.path().join("visited.pcap");
    tshark_check(&pcap, visited_gw)?;
    tshark_check(&pcap, home_gw)?;
    python_check(&pcap)?;
    // The home AAA saw the visited AAA's Route-Record.
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(dir.path().join("home.pcap"))
        .args(["-T", "fields", "-e", "diameter.Route-Record"])
        .output()?;
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("visited.{VISITED_REALM}")));
    Ok(())
}

#[test]
fn aaa_visited_with_home_unreachable_answers_3002() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // Nobody listens on the home address.
    let home_addr = SocketAddr::new(ip(63, 10).into(), 3868);
    let visited_addr = SocketAddr::new(ip(63, 20).into(), 3868);
    let visited = start_aaa(
        dir.path(),
        "visited",
        visited_addr,
        VISITED_REALM,
        ip(63, 23).into(),
        Some(home_addr),
        0,
        &epdg(ip(63, 1)),
    )?;
    let mut c = Client::connect(visited_addr, ip(63, 1))?;
    let started = Instant::now();
    let user = nai(IMSI);
    let a = c.request(
        der("epdg.test;9;x", &user, eap_identity(&user), Some(APN)),
        T,
    )?;
    assert_eq!(
        a.result_code(),
        Some(result::DIAMETER_UNABLE_TO_DELIVER),
        "{}",
        visited.output()
    );
    assert!(a.header.flags.error());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // A home that accepts TCP but never answers: 3002 after relay_timeout (2 s).
    let silent = std::net::TcpListener::bind(SocketAddr::new(ip(63, 11).into(), 3868))?;
    drop(visited);
    let visited = start_aaa(
        dir.path(),
        "visited2",
        SocketAddr::new(ip(63, 21).into(), 3868),
        VISITED_REALM,
        ip(63, 23).into(),
        Some(silent.local_addr()?),
        0,
        &epdg(ip(63, 1)),
    )?;
    let mut c = Client::connect(SocketAddr::new(ip(63, 21).into(), 3868), ip(63, 1))?;
    let started = Instant::now();
    let a = c.request(
        der("epdg.test;9;y", &user, eap_identity(&user), Some(APN)),
        T,
    )?;
    assert_eq!(
        a.result_code(),
        Some(result::DIAMETER_UNABLE_TO_DELIVER),
        "{}",
        visited.output()
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(4),
        "{took:?}"
    );
    Ok(())
}

#[test]
fn aaa_kill_9_never_reuses_an_sqn() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let addr = SocketAddr::new(ip(64, 10).into(), 3868);
    let gw: IpAddr = ip(64, 3).into();
    let peers = epdg(ip(64, 1));
    let aaa = start_aaa(dir.path(), "home", addr, HOME_REALM, gw, None, 0, &peers)?;
    let mut c = Client::connect(addr, ip(64, 1))?;
    let first = authenticate(&mut c, "epdg.test;1;a", K, 0, Some(APN), T)?;
    assert_eq!(first.last.result_code(), Some(result::DIAMETER_SUCCESS));
    let first_sqn = *first.sqns.last().context("no SQN accepted")?;
    // A challenge that is never answered: its SQN is used too.
    let user = nai(IMSI);
    let a = c.request(
        der("epdg.test;1;b", &user, eap_identity(&user), Some(APN)),
        T,
    )?;
    assert_eq!(a.result_code(), Some(result::DIAMETER_MULTI_ROUND_AUTH));
    aaa.signal(libc::SIGKILL)?;
    drop(aaa);
    let _aaa = start_aaa(dir.path(), "home", addr, HOME_REALM, gw, None, 0, &peers)?;
    let mut c = Client::connect(addr, ip(64, 1))?;
    // A USIM that has seen the first SQN accepts only greater ones (no AUTS round).
    let next = authenticate(&mut c, "epdg.test;2;a", K, first_sqn, Some(APN), T)?;
    assert_eq!(next.last.result_code(), Some(result::DIAMETER_SUCCESS));
    assert_eq!(next.rounds, 2, "no resynchronisation needed");
    let next_sqn = *next.sqns.last().context("no SQN accepted")?;
    assert!(next_sqn > first_sqn, "{next_sqn} <= {first_sqn}");
    Ok(())
}

#[test]
fn aaa_sigterm_sends_dpr_and_exits() -> Result<()> {
    use pmip_common::diameter::base::PeerAnswer;
    use pmip_common::diameter::codes::command;
    let dir = tempfile::tempdir()?;
    let addr = SocketAddr::new(ip(67, 10).into(), 3868);
    let mut aaa = start_aaa(
        dir.path(),
        "home",
        addr,
        HOME_REALM,
        ip(67, 3).into(),
        None,
        0,
        &epdg(ip(67, 1)),
    )?;
    let mut c = Client::connect(addr, ip(67, 1))?;
    aaa.signal(libc::SIGTERM)?;
    let dpr = c.read(T).with_context(|| aaa.output())?;
    assert_eq!(dpr.header.command_code, command::DISCONNECT_PEER);
    assert!(dpr.header.flags.request());
    c.send(&PeerAnswer::success("epdg.test", "test").to_message(&dpr.header))?;
    assert_eq!(
        aaa.wait_exit(Duration::from_secs(5))?,
        Some(0),
        "{}",
        aaa.output()
    );
    Ok(())
}

/// A home AAA on 127.0.`net`.10:3868 whose gateway is 127.0.`net`.3, `extra` in its
/// config; its address and gateway.
fn start_home(dir: &Path, net: u8, extra: &str) -> Result<(Node, SocketAddr, IpAddr)> {
    let addr = SocketAddr::new(ip(net, 10).into(), 3868);
    let gw: IpAddr = ip(net, 3).into();
    let aaa = start_aaa(dir, "home", addr, HOME_REALM, gw, None, 0, extra)?;
    Ok((aaa, addr, gw))
}

/// Waits until the AAA named `name` in `dir` has `peers` connections open (its
/// `--status-file`).
fn wait_peers(dir: &Path, name: &str, peers: u64, timeout: Duration) -> Result<()> {
    let path = dir.join(format!("{name}-status.json"));
    let deadline = Instant::now() + timeout;
    loop {
        let now: Option<u64> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["peers"].as_u64());
        if now == Some(peers) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{name}: {now:?} peers open, not {peers}, after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the connection is closed: the next read finds its end (EOF or a reset).
fn closed(c: &mut Client) -> bool {
    match c.read(Duration::from_secs(3)) {
        Ok(m) => {
            eprintln!("unexpected message on a refused connection: {m:?}");
            false
        }
        Err(e) => {
            let text = format!("{e:#}");
            text.contains("connection closed") || text.contains("reset")
        }
    }
}

#[test]
fn aaa_refuses_unknown_peers_at_the_cer_with_3010() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (aaa, addr, gw) = start_home(dir.path(), 68, &epdg(ip(68, 1)))?;
    let user = nai(IMSI);
    // The known Origin-Host from another address, another Origin-Host from the known
    // address: a CEA with DIAMETER_UNKNOWN_PEER (E bit), then the connection is closed,
    // so a DER, an AAR or an STR sent anyway gets nothing.
    for (local, host) in [(ip(68, 2), "epdg.test"), (ip(68, 1), "stranger.test")] {
        let (mut c, cea) = Client::open(addr, local, host)?;
        assert_eq!(
            cea.result_code(),
            Some(result::DIAMETER_UNKNOWN_PEER),
            "{host} from {local}: {cea:?}"
        );
        assert!(cea.header.flags.error());
        let _ = c.send(&der("stranger;1", &user, eap_identity(&user), Some(APN)));
        assert!(closed(&mut c), "{host} from {local}: still open");
    }
    // No CER at all: a DER or an STR first is not answered either.
    for request in [
        der("stranger;2", &user, eap_identity(&user), Some(APN)),
        str_request("epdg.test;1;ok"),
    ] {
        let mut c = Client::tcp(addr, ip(68, 2))?;
        c.send(&request)?;
        assert!(closed(&mut c), "a request before any CER was served");
    }
    // A flood of strangers' CERs: each refused, the log says so once a second, with the
    // count of the unsaid.
    let started = Instant::now();
    for n in 0..300 {
        let (mut c, cea) = Client::open(addr, ip(68, 2), &format!("stranger{n}.test"))?;
        assert_eq!(cea.result_code(), Some(result::DIAMETER_UNKNOWN_PEER));
        assert!(closed(&mut c));
    }
    std::thread::sleep(Duration::from_millis(200));
    let seconds = started.elapsed().as_secs() + 2;
    let output = aaa.output();
    for line in ["CER refused", "peer connected", "peer down"] {
        let said = output.matches(line).count() as u64;
        assert!(
            said <= seconds,
            "{said} lines {line:?} for 300 strangers in {seconds} s:\n{output}"
        );
    }
    // The listed peer from its address is served.
    scenario(addr, ip(68, 1), &[gw]).with_context(|| aaa.output())?;
    // Said in the log (at most once a second: strangers cannot flood it).
    assert!(
        aaa.output().contains("CER refused: DIAMETER_UNKNOWN_PEER"),
        "{}",
        aaa.output()
    );
    drop(aaa);
    // tshark decodes the refusals like the rest: a CEA with Result-Code 3010 each.
    let pcap = dir.path().join("home.pcap");
    tshark_check(&pcap, gw)?;
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&pcap)
        .args([
            "-Y",
            "diameter.Result-Code == 3010 && diameter.cmd.code == 257",
        ])
        .output()?;
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 302);
    Ok(())
}

/// Runs `aaa-stub --generate-lab-pki DIR --lab-pki-host HOST...`.
fn lab_pki(dir: &Path, hosts: &[&str]) -> Result<()> {
    let mut command = Command::new(integration_tests::node_binary("aaa-stub")?);
    command.arg("--generate-lab-pki").arg(dir);
    for host in hosts {
        command.args(["--lab-pki-host", host]);
    }
    let out = command.output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A `[tls]` table with `host`'s certificate and key from `pki`, trusting `ca`.
fn tls_table(pki: &Path, host: &str, ca: &Path, listen: Option<SocketAddr>) -> String {
    let listen = listen
        .map(|a| format!("listen = \"{a}\"\n"))
        .unwrap_or_default();
    format!(
        "[tls]\n{listen}certificate = \"{}\"\nprivate_key = \"{}\"\nca = \"{}\"\n",
        pki.join(format!("{host}.pem")).display(),
        pki.join(format!("{host}.key")).display(),
        ca.display()
    )
}

#[test]
fn aaa_visited_relays_to_home_over_tls() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let home_host = format!("home.{HOME_REALM}");
    let visited_host = format!("visited.{VISITED_REALM}");
    let (pki, other_pki) = (d.join("pki"), d.join("other-pki"));
    lab_pki(&pki, &[&home_host, &visited_host])?;
    // The same name from another CA.
    lab_pki(&other_pki, &[&visited_host])?;
    let ca = pki.join("ca.pem");
    let home_plain = SocketAddr::new(ip(69, 10).into(), 3868);
    let home_tls = SocketAddr::new(ip(69, 10).into(), 5658);
    let (home_gw, visited_gw): (IpAddr, IpAddr) = (ip(69, 3).into(), ip(69, 23).into());
    // The home AAA admits the visited AAA over TLS only.
    let home_peers = format!(
        "{}tls = true\n{}",
        visited_aaa(),
        tls_table(&pki, &home_host, &ca, Some(home_tls))
    );
    let home = start_aaa(
        d,
        "home",
        home_plain,
        HOME_REALM,
        home_gw,
        None,
        0,
        &home_peers,
    )?;
    let home_realm = format!(
        "[home_realms]\n\"{HOME_REALM}\" = {{ address = \"{home_tls}\", tls = true, host = \"{home_host}\" }}\n"
    );
    // A visited AAA relaying to the home over TLS with `pki`'s certificate for its name.
    let visited_aaa_tls = |name: &str, addr: SocketAddr, pki: &Path| {
        start_aaa(
            d,
            name,
            addr,
            VISITED_REALM,
            visited_gw,
            None,
            0,
            &format!(
                "{}{home_realm}{}",
                epdg(ip(69, 1)),
                tls_table(pki, &visited_host, &ca, None)
            ),
        )
    };
    let visited_addr = SocketAddr::new(ip(69, 20).into(), 3868);
    let visited = visited_aaa_tls("visited", visited_addr, &pki)?;
    let r = scenario(visited_addr, ip(69, 1), &[home_gw, visited_gw]);
    if let Err(e) = r {
        bail!(
            "{e:#}\nvisited output:\n{}\nhome output:\n{}",
            visited.output(),
            home.output()
        );
    }
    let home_log = home.output();
    assert!(
        home_log
            .lines()
            .any(|l| l.contains("peer connected") && l.contains("tls=true")),
        "{home_log}"
    );
    assert!(
        visited.output().contains("home AAA open (CER/CEA)"),
        "{}",
        visited.output()
    );

    // The visited AAA's Origin-Host over plain TCP: refused, it must use TLS.
    let (mut c, cea) = Client::open(home_plain, Ipv4Addr::LOCALHOST, &visited_host)?;
    assert_eq!(cea.result_code(), Some(result::DIAMETER_UNKNOWN_PEER));
    assert!(closed(&mut c));

    // A visited AAA whose certificate comes from another CA: the home refuses the TLS
    // handshake, the relay fails, the ePDG gets DIAMETER_UNABLE_TO_DELIVER.
    let stranger_addr = SocketAddr::new(ip(69, 21).into(), 3868);
    let stranger = visited_aaa_tls("stranger", stranger_addr, &other_pki)?;
    let mut c = Client::connect(stranger_addr, ip(69, 1))?;
    let user = nai(IMSI);
    let a = c.request(
        der("epdg.test;9;tls", &user, eap_identity(&user), Some(APN)),
        T,
    )?;
    assert_eq!(
        a.result_code(),
        Some(result::DIAMETER_UNABLE_TO_DELIVER),
        "{}",
        stranger.output()
    );
    let mut home = home;
    home.wait_for("TLS handshake failed", Duration::from_secs(5))?;
    drop(stranger);
    drop(visited);
    drop(home);
    // Both captures hold the messages in plaintext: tshark decodes them as before.
    tshark_check(&d.join("visited.pcap"), visited_gw)?;
    tshark_check(&d.join("home.pcap"), home_gw)?;
    python_check(&d.join("home.pcap"))?;
    Ok(())
}

#[test]
fn aaa_caps_connections_and_closes_those_that_send_no_cer() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut aaa, addr, gw) = start_home(
        dir.path(),
        70,
        &format!(
            "max_connections = 4\ncer_timeout_secs = 1\n{}",
            epdg(ip(70, 1))
        ),
    )?;
    let started = Instant::now();
    let mut idle: Vec<Client> = (0..4)
        .map(|_| Client::tcp(addr, ip(70, 2)))
        .collect::<Result<_>>()?;
    wait_peers(dir.path(), "home", 4, Duration::from_secs(5))?;
    // A fifth is closed at once, long before the CER timeout.
    let mut fifth = Client::tcp(addr, ip(70, 2))?;
    assert!(closed(&mut fifth));
    assert!(started.elapsed() < Duration::from_millis(900));
    aaa.wait_for("max_connections open", Duration::from_secs(5))?;
    // The four that sent nothing are closed after cer_timeout_secs.
    for c in &mut idle {
        assert!(closed(c));
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    // Their slots are free again: a known peer is served.
    scenario(addr, ip(70, 1), &[gw]).with_context(|| aaa.output())
}

/// The resident set of process `pid`, in KiB.
fn vm_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

#[test]
fn aaa_memory_comes_back_after_5000_idle_connections() -> Result<()> {
    const CONNECTIONS: usize = 5000;
    let dir = tempfile::tempdir()?;
    let (aaa, addr, gw) = start_home(
        dir.path(),
        71,
        &format!(
            "max_connections = 6000\ncer_timeout_secs = 120\n{}",
            peer("epdg.test", "127.0.71.0/24")
        ),
    )?;
    // One attach first, so what the server allocates once is in the baseline; and a
    // peer that stays connected throughout, as an ePDG does.
    scenario(addr, ip(71, 1), &[gw]).with_context(|| aaa.output())?;
    let _staying = Client::connect(addr, ip(71, 1))?;
    std::thread::sleep(Duration::from_millis(300));
    let before = vm_rss_kib(aaa.id())?;
    // Half send nothing, half a CER and then nothing.
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for n in 0..CONNECTIONS {
        let local = ip(71, 2 + (n % 200) as u8);
        if n % 2 == 0 {
            clients.push(Client::tcp(addr, local)?);
        } else {
            let (c, cea) = Client::open(addr, local, "epdg.test")?;
            anyhow::ensure!(cea.result_code() == Some(result::DIAMETER_SUCCESS));
            clients.push(c);
        }
    }
    // The staying peer and the 5 000.
    wait_peers(
        dir.path(),
        "home",
        CONNECTIONS as u64 + 1,
        Duration::from_secs(30),
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let peak = vm_rss_kib(aaa.id())?;
    drop(clients);
    wait_peers(dir.path(), "home", 1, Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_millis(500));
    let after = vm_rss_kib(aaa.id())?;
    eprintln!(
        "aaa-stub VmRSS: {before} KiB before, {peak} KiB with {CONNECTIONS} idle connections, \
         {after} KiB after they closed"
    );
    assert!(peak > before, "{before} -> {peak}");
    assert!(
        after <= before + 4 * 1024,
        "VmRSS {before} KiB before, {peak} KiB at the peak, {after} KiB after closing"
    );
    Ok(())
}
