//! A minimal in-test SWm server (Diameter over TCP, EAP-AKA for one subscriber, one APN
//! served by one LMA) for scenarios that need an AAA whose every answer the test controls,
//! or that count its open sessions directly. The real `aaa-stub` is tested in
//! `tests/aaa_*.rs` and `tests/attach_real_aaa.rs`.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
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
use pmip_common::eap::{Server, ServerConfig, ServerInput, ServerOutput, Sqn, Subscriber};

/// Abort-Session-Request (RFC 6733 section 8.5).
pub const ABORT_SESSION: u32 = 274;

/// The subscriber's K, OPc and IMSI (TS 35.208 test set 1 keys) and the one APN served.
pub const K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
pub const OPC: &str = "cd63cb71954a9f4e48a5994e37a02baf";
pub const IMSI: &str = "234150999999999";
pub const APN: &str = "internet";

/// A 16-octet key from its 32 hex digits (test constants only).
pub fn key(hex_text: &str) -> [u8; 16] {
    let mut k = [0u8; 16];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex_text[2 * i..2 * i + 2], 16).unwrap();
    }
    k
}

/// A minimal SWm server: EAP-AKA for one subscriber, one APN served by `lma`.
pub struct FakeAaa {
    pub addr: SocketAddr,
    /// Diameter sessions opened by a DER and not yet ended by an STR.
    sessions: Arc<Mutex<HashSet<String>>>,
    /// Result-Codes of the mag's answers to the Abort-Session-Requests sent after STRs.
    pub asr_results: Arc<Mutex<Vec<u32>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for FakeAaa {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl FakeAaa {
    pub fn start(ip: Ipv4Addr, lma: IpAddr) -> Result<FakeAaa> {
        Self::start_at(SocketAddr::new(ip.into(), 0), lma)
    }

    pub fn start_at(listen: SocketAddr, lma: IpAddr) -> Result<FakeAaa> {
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

    pub fn open_sessions(&self) -> usize {
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
