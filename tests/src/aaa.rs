//! The AAA of the loopback scenarios: the `aaa-stub` server (its protocol core behind
//! the very driver its binary runs, [`aaa_stub::server`]) in this process, serving the
//! scenarios' subscribers and one APN through one gateway, so that a test reads its open
//! Diameter sessions directly and can have it originate requests, such as an
//! Abort-Session-Request the ePDG does not implement.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use aaa_stub::config::AaaConfig;
use aaa_stub::server::{Handle, Server, ServerOptions};
use aaa_stub::subscriber::SubscriberStore;
use anyhow::{Context, Result};
use pmip_common::diameter::codes::application::SWM;
use pmip_common::diameter::codes::avp::{
    AUTH_APPLICATION_ID, DESTINATION_REALM, ORIGIN_HOST, ORIGIN_REALM, SESSION_ID,
};
use pmip_common::diameter::{Avp, Header, Message};

use crate::write_file;

/// Abort-Session-Request (RFC 6733 section 8.5).
pub const ABORT_SESSION: u32 = 274;

/// The subscribers' K and OPc (TS 35.208 test set 1), the first IMSI and the one APN
/// served. IMSIs 234150999999990 to ...999 are provisioned (one `[[range]]`).
pub const K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
pub const OPC: &str = "cd63cb71954a9f4e48a5994e37a02baf";
pub const IMSI: &str = "234150999999999";
pub const APN: &str = "internet";
const FIRST_IMSI: &str = "234150999999990";
const ORIGIN: (&str, &str) = ("aaa.test", "test");

/// The `aaa-stub` server running on a thread of this process; stopped when dropped.
pub struct InTestAaa {
    pub addr: SocketAddr,
    handle: Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl InTestAaa {
    /// On `ip`, an ephemeral port; the APN served by `gateway`.
    pub fn start(ip: Ipv4Addr, gateway: IpAddr) -> Result<InTestAaa> {
        Self::start_at(SocketAddr::new(ip.into(), 0), gateway)
    }

    pub fn start_at(listen: SocketAddr, gateway: IpAddr) -> Result<InTestAaa> {
        let dir = tempfile::tempdir()?;
        write_file(
            dir.path(),
            "subscribers.toml",
            &format!(
                "[[range]]\nfirst_imsi = \"{FIRST_IMSI}\"\ncount = 10\nk = \"{K}\"\n\
                 opc = \"{OPC}\"\napns = [\"{APN}\"]\n"
            ),
        )?;
        let peers = crate::aaa_peer_epdg_loopback();
        let config = write_file(
            dir.path(),
            "aaa.toml",
            &format!(
                "origin_host = \"{}\"\norigin_realm = \"{}\"\nlisten = \"{listen}\"\n\
                 subscribers = \"subscribers.toml\"\nsqn_state = \"sqn.toml\"\n{peers}\
                 [gateways]\n{APN} = \"{gateway}\"\n",
                ORIGIN.0, ORIGIN.1
            ),
        )?;
        // Read as the binary reads its file.
        let config = AaaConfig::load(&config)?;
        let store = SubscriberStore::load(&config.subscribers, &config.sqn_state)
            .context("loading the AAA's subscribers")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the AAA's runtime")?;
        let server = runtime
            .block_on(Server::bind(config, store, ServerOptions::default()))
            .context("starting the AAA")?;
        let addr = server.local_addr()?;
        let handle = server.handle();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(server.run(async {
                let _ = stopped.await;
            }));
        });
        Ok(InTestAaa {
            addr,
            handle,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        })
    }

    /// Diameter sessions open at the AAA (authenticated or authenticating, no STR yet).
    pub fn open_sessions(&self) -> usize {
        self.handle.status().sessions
    }

    /// Sends an Abort-Session-Request for `session` to every connected ePDG and returns
    /// the Result-Code of the first answer, waiting up to five seconds for it.
    pub fn abort_session(&self, session: &str) -> Result<u32> {
        let before = self.abort_answers().len();
        let asr = Message::new(Header::request(ABORT_SESSION, SWM, true, 0, 0))
            .with(Avp::utf8(SESSION_ID, session))
            .with(Avp::identity(ORIGIN_HOST, ORIGIN.0))
            .with(Avp::identity(ORIGIN_REALM, ORIGIN.1))
            .with(Avp::identity(DESTINATION_REALM, ORIGIN.1))
            .with(Avp::u32(AUTH_APPLICATION_ID, SWM));
        anyhow::ensure!(self.handle.originate(asr), "the AAA has stopped");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(code) = self.abort_answers().get(before) {
                return Ok(*code);
            }
            anyhow::ensure!(Instant::now() < deadline, "no answer to the ASR");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The Result-Codes of the answers to the Abort-Session-Requests sent so far.
    fn abort_answers(&self) -> Vec<u32> {
        self.handle
            .answers()
            .iter()
            .filter(|a| a.header.command_code == ABORT_SESSION)
            .map(|a| a.result_code().unwrap_or(0))
            .collect()
    }
}

impl Drop for InTestAaa {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
