//! The UE emulator (DESIGN.md section 6): `ue-emu attach` runs one UE through the S2b
//! attach, the IKEv2 initiator ([`pmip_common::ike::sa::InitiatorSa`]) driven together
//! with the EAP-AKA peer ([`pmip_common::eap::Peer`], a software USIM) over one UDP
//! socket, and reports the ladder with per-step times.

pub mod config;
pub mod load;
pub mod ping;
pub mod tun;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pmip_common::eap::{Code, EapPacket, Peer, PeerConfig, PeerOutput, Sqn, Usim};
use pmip_common::ike::auth::{PeerVerifier, PinnedEcdsaP256Key};
use pmip_common::ike::sa::{
    CloseReason, Event, InitiatorConfig, InitiatorSa, Output, RetransmitPolicy,
};
use pmip_common::ike::wire::{
    AuthPayload, CertPayload, ConfigAttribute, Identification, NotifyType, TrafficSelector,
};
use pmip_common::ike::{EspSuite, IkeSuite};
use rand::rngs::OsRng;
use serde::Serialize;

use config::UeConfig;

/// One step of the attach ladder.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: String,
    /// Milliseconds since the previous step.
    pub ms: f64,
}

/// What `ue-emu attach --json` prints.
#[derive(Debug, Clone, Serialize, Default)]
pub struct AttachReport {
    pub imsi: String,
    pub apn: String,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6_prefix: Option<String>,
    pub dns: Vec<IpAddr>,
    pub pcscf: Vec<IpAddr>,
    pub steps: Vec<Step>,
    /// "attached", or "failed".
    pub result: String,
    /// The error notify the ePDG sent, by name and number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the IKE SA was deleted again at the end.
    pub detached: bool,
    /// One entry per `--ping` target, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pings: Vec<PingReport>,
    /// What `--tun` relayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tun: Option<tun::TunReport>,
}

/// What `--ping ADDR` found: echo requests sent inside ESP-in-UDP, replies received.
#[derive(Debug, Clone, Serialize)]
pub struct PingReport {
    pub target: IpAddr,
    /// The inner source: the assigned IPv4 address, or an address in the /64.
    pub source: Option<IpAddr>,
    pub sent: u32,
    pub received: u32,
    /// Round-trip times of the replies, in milliseconds.
    pub rtt_ms: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Accepts any ePDG certificate (`--insecure`).
#[derive(Debug)]
struct AcceptAnything;

impl PeerVerifier for AcceptAnything {
    fn verify(&self, _: &[CertPayload], _: &AuthPayload, _: &[u8]) -> bool {
        true
    }
}

/// Checks the ePDG's certificate against a CA certificate (DER): the first CERT payload
/// must be an X.509 certificate signed by the CA's key and valid now, and the AUTH must be
/// an ECDSA P-256 signature (RFC 7296 method 9) by its key.
#[derive(Debug)]
pub struct CaVerifier {
    ca_der: Vec<u8>,
}

impl CaVerifier {
    /// Fails when `ca_der` is not a certificate.
    pub fn new(ca_der: Vec<u8>) -> Result<Self> {
        x509_parser::parse_x509_certificate(&ca_der)
            .map_err(|e| anyhow::anyhow!("the CA file is not a DER certificate: {e}"))?;
        Ok(CaVerifier { ca_der })
    }
}

impl PeerVerifier for CaVerifier {
    fn verify(
        &self,
        certificates: &[CertPayload],
        auth: &AuthPayload,
        signed_octets: &[u8],
    ) -> bool {
        let Ok((_, ca)) = x509_parser::parse_x509_certificate(&self.ca_der) else {
            return false;
        };
        let Some(leaf) = certificates.first() else {
            return false;
        };
        let Ok((_, leaf)) = x509_parser::parse_x509_certificate(&leaf.data) else {
            return false;
        };
        leaf.verify_signature(Some(ca.public_key())).is_ok()
            && leaf.validity().is_valid()
            && PinnedEcdsaP256Key(leaf.public_key().subject_public_key.data.to_vec()).verify(
                certificates,
                auth,
                signed_octets,
            )
    }
}

fn notify_name(n: NotifyType) -> String {
    format!("{n:?} ({})", u16::from(n))
}

struct Ladder {
    last: Instant,
    steps: Vec<Step>,
    print: bool,
}

impl Ladder {
    fn step(&mut self, name: impl Into<String>) {
        let now = Instant::now();
        let ms = (now - self.last).as_secs_f64() * 1000.0;
        self.last = now;
        let name = name.into();
        if self.print {
            println!("  {name:<58} {ms:>8.1} ms");
        }
        self.steps.push(Step {
            name,
            ms: (ms * 10.0).round() / 10.0,
        });
    }
}

/// Options of one attach run beyond the file.
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    pub apn: Option<String>,
    pub insecure: bool,
    /// Print the ladder as it happens.
    pub print: bool,
    /// Keep the attach this long before detaching.
    pub hold: Duration,
    /// Leave the IKE SA up at exit.
    pub no_detach: bool,
    /// Echo targets after the attach (`--ping`, repeatable).
    pub pings: Vec<IpAddr>,
    /// Echo requests per target.
    pub ping_count: u32,
    /// Time between echo requests to one target, and how long to wait for the last reply.
    pub ping_interval: Duration,
    pub ping_wait: Duration,
    /// Inner source of the echo requests instead of the assigned address (to check the
    /// ePDG's source check; the ePDG drops them).
    pub ping_source: Option<IpAddr>,
    /// Open a TUN device and relay it through the tunnel (`--tun`), for `hold` (zero:
    /// until SIGINT/SIGTERM).
    pub tun: Option<tun::TunOptions>,
}

/// Runs one attach and returns the report (failures included); `Err` only for local
/// problems (configuration, sockets).
pub fn attach(config: &UeConfig, options: &AttachOptions) -> Result<AttachReport> {
    let apn = options
        .apn
        .clone()
        .or_else(|| config.apn.clone())
        .context("no APN: give --apn or apn in the config")?;
    let nai = config.nai()?;
    let usim = Usim::new(
        &config.k()?,
        &config.opc()?,
        Sqn::new(config.sqn).context("sqn is more than 48 bits")?,
    );
    // A --tun device is created first: without the privilege, fail before attaching.
    let mut tun_device = options
        .tun
        .as_ref()
        .map(|t| tun::TunDevice::open(&t.name))
        .transpose()?;
    let mut peer = Peer::new(
        PeerConfig {
            permanent_identity: nai.clone().into_bytes(),
            eap_identity: Some(nai.clone().into_bytes()),
            result_indication: false,
        },
        usim,
    );
    let socket = UdpSocket::bind(SocketAddr::new(config.local, 0))
        .with_context(|| format!("binding UDP at {}", config.local))?;
    let local = socket.local_addr()?;
    let natt = SocketAddr::new(config.epdg.ip(), config.epdg_natt_port);
    let suites = if config.ike_suites.is_empty() {
        IkeSuite::defaults()
    } else {
        config
            .ike_suites
            .iter()
            .map(|s| s.parse::<IkeSuite>())
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("ike_suites: {e}"))?
    };
    let peer_verifier: Option<Arc<dyn PeerVerifier>> = if options.insecure {
        eprintln!("WARNING: --insecure: the ePDG's certificate is NOT checked");
        Some(Arc::new(AcceptAnything))
    } else {
        match (&config.epdg_public_key, &config.epdg_ca) {
            (Some(hex_key), _) => Some(Arc::new(PinnedEcdsaP256Key(
                hex::decode(hex_key).context("epdg_public_key is not hex")?,
            ))),
            (None, Some(ca)) => Some(Arc::new(CaVerifier::new(
                std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?,
            )?)),
            (None, None) => None,
        }
    };
    let ike_config = InitiatorConfig {
        suites,
        esp_suites: EspSuite::defaults(),
        idi: Identification::Rfc822Addr(nai.clone()),
        idr: Some(Identification::Fqdn(apn.clone())),
        cp_request: vec![
            ConfigAttribute::InternalIp4Address(None),
            ConfigAttribute::InternalIp4Dns(None),
            ConfigAttribute::InternalIp6Address(None),
            ConfigAttribute::InternalIp6Dns(None),
            ConfigAttribute::PCscfIp4Address(None),
            ConfigAttribute::PCscfIp6Address(None),
        ],
        tsi: vec![TrafficSelector::any_ipv4(), TrafficSelector::any_ipv6()],
        tsr: vec![TrafficSelector::any_ipv4(), TrafficSelector::any_ipv6()],
        local,
        remote: config.epdg,
        force_port_4500: true,
        eap_only: config.eap_only,
        peer_verifier,
        retransmit: RetransmitPolicy::default(),
    };
    let mut report = AttachReport {
        imsi: config.imsi.clone(),
        apn,
        ..AttachReport::default()
    };
    let mut ladder = Ladder {
        last: Instant::now(),
        steps: Vec::new(),
        print: options.print,
    };
    let mut rng = OsRng;
    let mut out = Vec::new();
    let mut sa = InitiatorSa::start(ike_config, Instant::now(), &mut rng, &mut out)
        .map_err(|e| anyhow::anyhow!("starting IKE: {e}"))?;
    let deadline = Instant::now() + Duration::from_millis(config.timeout_ms);
    let mut outcome: Option<std::result::Result<(), String>> = None;
    let mut child: Option<pmip_common::ike::sa::ChildSa> = None;
    let mut eap_rounds = 0;
    let mut buf = vec![0u8; 65536];
    let send = |bytes: &[u8], port_4500: bool| -> Result<()> {
        if port_4500 {
            let mut d = vec![0u8; 4];
            d.extend_from_slice(bytes);
            socket.send_to(&d, natt)?;
        } else {
            socket.send_to(bytes, config.epdg)?;
        }
        Ok(())
    };
    loop {
        // Carry out what the SA asked for.
        while !out.is_empty() {
            for o in std::mem::take(&mut out) {
                match o {
                    Output::Send { bytes, port_4500 } => send(&bytes, port_4500)
                        .with_context(|| format!("sending to the ePDG {}", config.epdg))?,
                    Output::Event(Event::EapRequest(eap)) => {
                        let code = EapPacket::new_checked(&eap[..]).map(|p| p.code());
                        match code {
                            Ok(Code::Request) => {
                                eap_rounds += 1;
                                ladder.step(if eap_rounds == 1 {
                                    "IKE_AUTH(IDi, IDr=APN, CP) -> EAP-Request (AAA via ePDG)"
                                        .to_string()
                                } else {
                                    format!("EAP-Response -> EAP-Request #{eap_rounds}")
                                });
                            }
                            Ok(Code::Success) => {
                                ladder.step("EAP-Response -> EAP-Success (after PBA)")
                            }
                            Ok(Code::Failure) => ladder.step("EAP-Failure"),
                            _ => {}
                        }
                        for p in peer.handle(&eap) {
                            match p {
                                PeerOutput::Send(resp) => {
                                    sa.send_eap(resp, Instant::now(), &mut rng, &mut out);
                                }
                                PeerOutput::Success(keys) => {
                                    sa.complete_eap(
                                        keys.msk.to_vec(),
                                        Instant::now(),
                                        &mut rng,
                                        &mut out,
                                    );
                                }
                                PeerOutput::Problem(problem) => {
                                    report.error = Some(format!("USIM: {problem:?}"));
                                }
                                PeerOutput::Failure(problem) => {
                                    report.error.get_or_insert_with(|| {
                                        format!("EAP-Failure (last problem: {problem:?})")
                                    });
                                }
                                PeerOutput::SqnAccepted(_) | PeerOutput::Discarded(_) => {}
                            }
                        }
                    }
                    Output::Event(Event::Established(e)) => {
                        ladder.step("IKE_AUTH(AUTH) -> AUTH, CFG_REPLY, CHILD_SA");
                        child = Some(e.child.clone());
                        for a in e.cp_reply.iter().flat_map(|c| c.attributes.iter()) {
                            match a {
                                ConfigAttribute::InternalIp4Address(Some(v)) => {
                                    report.ipv4 = Some(*v)
                                }
                                ConfigAttribute::InternalIp6Address(Some((v, len))) => {
                                    report.ipv6_prefix = Some(format!("{v}/{len}"))
                                }
                                ConfigAttribute::InternalIp4Dns(Some(v)) => {
                                    report.dns.push((*v).into())
                                }
                                ConfigAttribute::InternalIp6Dns(Some(v)) => {
                                    report.dns.push((*v).into())
                                }
                                ConfigAttribute::PCscfIp4Address(Some(v)) => {
                                    report.pcscf.push((*v).into())
                                }
                                ConfigAttribute::PCscfIp6Address(Some(v)) => {
                                    report.pcscf.push((*v).into())
                                }
                                _ => {}
                            }
                        }
                        outcome = Some(Ok(()));
                    }
                    Output::Event(Event::Closed(reason)) => {
                        let text = match &reason {
                            CloseReason::NotifyReceived(n) => {
                                report.notify = Some(notify_name(*n));
                                format!(
                                    "the ePDG refused the attach with notify {}",
                                    notify_name(*n)
                                )
                            }
                            CloseReason::Timeout => "no answer from the ePDG".to_string(),
                            other => format!("IKE SA closed: {other:?}"),
                        };
                        ladder.step(format!("closed: {text}"));
                        if outcome.is_none() {
                            outcome = Some(Err(text));
                        }
                    }
                    Output::Event(_) => {}
                }
            }
        }
        if outcome.is_some() {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            outcome = Some(Err(format!("no attach within {} ms", config.timeout_ms)));
            break;
        }
        let wake = sa.poll_timeout().unwrap_or(deadline).min(deadline);
        socket.set_read_timeout(Some(
            wake.saturating_duration_since(now)
                .max(Duration::from_millis(1)),
        ))?;
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                let mut data = &buf[..n];
                let via_4500 = from.port() == config.epdg_natt_port;
                if via_4500 {
                    if data.len() < 4 || data[..4] != [0, 0, 0, 0] {
                        continue;
                    }
                    data = &data[4..];
                }
                let first = sa.keys().is_none();
                sa.handle(data, via_4500, Instant::now(), &mut rng, &mut out);
                if first && sa.keys().is_some() {
                    ladder.step("IKE_SA_INIT");
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if sa.poll_timeout().is_some_and(|t| t <= Instant::now()) {
                    sa.handle_timeout(Instant::now(), &mut out);
                }
            }
            Err(e) => return Err(e).context("receiving from the ePDG"),
        }
    }
    match outcome {
        Some(Ok(())) => {
            report.result = "attached".into();
            if let (Some(child), false) = (&child, options.pings.is_empty()) {
                let ctx = PingContext {
                    socket: &socket,
                    natt,
                    send: &send,
                };
                report.pings = ping_all(&ctx, &mut sa, child, &report, options)?;
                let received: u32 = report.pings.iter().map(|p| p.received).sum();
                let sent: u32 = report.pings.iter().map(|p| p.sent).sum();
                ladder.step(format!("ping: {received}/{sent} echo replies"));
            }
            match (&child, &options.tun) {
                (Some(child), Some(tun_options)) if tun_device.is_some() => {
                    let until = (!options.hold.is_zero()).then(|| Instant::now() + options.hold);
                    let assigned = tun::Assigned {
                        ipv4: report.ipv4,
                        ipv6: assigned_ipv6(&report),
                    };
                    let link = tun::EpdgLink {
                        socket: &socket,
                        natt,
                        send_ike: &send,
                    };
                    let device = tun_device.take().context("the TUN device is gone")?;
                    let relayed =
                        tun::relay(device, &link, &mut sa, child, assigned, tun_options, until);
                    let relayed = match relayed {
                        Ok(r) => r,
                        Err(e) => {
                            // Leave no session behind at the ePDG.
                            if !options.no_detach {
                                let _ = detach(&mut sa, &socket, &send, &mut ladder);
                            }
                            return Err(e);
                        }
                    };
                    ladder.step(format!(
                        "TUN {}: {} packets up, {} down",
                        relayed.name, relayed.uplink_packets, relayed.downlink_packets
                    ));
                    report.tun = Some(relayed);
                }
                _ if !options.hold.is_zero() => std::thread::sleep(options.hold),
                _ => {}
            }
            if !options.no_detach {
                report.detached = detach(&mut sa, &socket, &send, &mut ladder)?;
            }
        }
        Some(Err(e)) => {
            report.result = "failed".into();
            report.error = Some(match report.error.take() {
                Some(usim) => format!("{e}; {usim}"),
                None => e,
            });
        }
        None => report.result = "failed".into(),
    }
    report.steps = ladder.steps;
    Ok(report)
}

struct PingContext<'a> {
    socket: &'a UdpSocket,
    natt: SocketAddr,
    send: &'a dyn Fn(&[u8], bool) -> Result<()>,
}

/// The inner source for a target: the assigned IPv4 address, or for IPv6 the assigned
/// address (interface identifier ::1 when the ePDG gave the bare prefix).
fn ping_source(report: &AttachReport, target: IpAddr) -> Option<IpAddr> {
    match target {
        IpAddr::V4(_) => report.ipv4.map(IpAddr::V4),
        IpAddr::V6(_) => {
            let text = report.ipv6_prefix.as_deref()?;
            let addr: std::net::Ipv6Addr = text.split('/').next()?.parse().ok()?;
            let mut o = addr.octets();
            if o[8..].iter().all(|b| *b == 0) {
                o[15] = 1;
            }
            Some(IpAddr::V6(o.into()))
        }
    }
}

/// The UE's IPv6 address (see [`ping_source`]) and the assigned prefix.
fn assigned_ipv6(report: &AttachReport) -> Option<(std::net::Ipv6Addr, ipnet::Ipv6Net)> {
    let prefix: ipnet::Ipv6Net = report.ipv6_prefix.as_deref()?.parse().ok()?;
    match ping_source(report, IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED))? {
        IpAddr::V6(a) => Some((a, prefix.trunc())),
        IpAddr::V4(_) => None,
    }
}

/// Sends the echo requests of every target inside ESP-in-UDP to the ePDG's port 4500
/// and collects the replies. The IKE SA was forced onto port 4500
/// (`force_port_4500`), so the ePDG knows our UDP port for ESP; IKE messages
/// arriving meanwhile (liveness checks) are still answered.
fn ping_all(
    ctx: &PingContext<'_>,
    sa: &mut InitiatorSa,
    child: &pmip_common::ike::sa::ChildSa,
    report: &AttachReport,
    options: &AttachOptions,
) -> Result<Vec<PingReport>> {
    use pmip_common::esp::{child_sa_pair, IkeRole, UdpEncapsulated};
    let (mut inbound, mut outbound) =
        child_sa_pair(child, IkeRole::Initiator).context("building the ESP SAs")?;
    let mut rng = OsRng;
    let identifier = (std::process::id() & 0xffff) as u16;
    let mut results: Vec<PingReport> = options
        .pings
        .iter()
        .map(|t| PingReport {
            target: *t,
            source: match options.ping_source {
                Some(forged) if forged.is_ipv4() == t.is_ipv4() => Some(forged),
                _ => ping_source(report, *t),
            },
            sent: 0,
            received: 0,
            rtt_ms: Vec::new(),
            error: None,
        })
        .collect();
    // (target index, sequence) -> send time
    let mut pending: std::collections::HashMap<(usize, u16), Instant> = Default::default();
    let count = options.ping_count.clamp(1, 255);
    let mut next_send = Instant::now();
    let mut round = 0u32;
    let mut buf = vec![0u8; 65536];
    let mut inner = Vec::new();
    let mut esp = Vec::new();
    let mut finish_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if round < count && now >= next_send {
            for (i, r) in results.iter_mut().enumerate() {
                let Some(source) = r.source else {
                    r.error = Some("no address of this IP version was assigned".into());
                    continue;
                };
                let sequence = ((i as u32) << 8 | round) as u16;
                let packet =
                    ping::echo_request(source, r.target, identifier, sequence, &[0x5a; 32])
                        .context("building an echo request")?;
                esp.clear();
                outbound
                    .encapsulate_ip(&packet, &mut rng, &mut esp)
                    .context("sealing an echo request in ESP")?;
                ctx.socket
                    .send_to(&esp, ctx.natt)
                    .with_context(|| format!("sending ESP to {}", ctx.natt))?;
                pending.insert((i, sequence), Instant::now());
                r.sent += 1;
            }
            round += 1;
            next_send = now + options.ping_interval;
            if round == count {
                finish_at = Some(now + options.ping_wait);
            }
        }
        if pending.is_empty() && round >= count {
            break;
        }
        let now = Instant::now();
        if finish_at.is_some_and(|f| now >= f) {
            break;
        }
        let wake = if round < count {
            next_send
        } else {
            finish_at.unwrap_or(now)
        };
        ctx.socket.set_read_timeout(Some(
            wake.saturating_duration_since(now)
                .max(Duration::from_millis(1)),
        ))?;
        let (n, from) = match ctx.socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(e).context("receiving from the ePDG"),
        };
        if from != ctx.natt {
            continue;
        }
        match UdpEncapsulated::classify(&buf[..n]) {
            Ok(UdpEncapsulated::Esp(packet)) => {
                if inbound
                    .decapsulate_ip(packet.as_bytes(), &mut inner)
                    .is_err()
                {
                    continue;
                }
                let Some(reply) = ping::parse_echo_reply(&inner) else {
                    continue;
                };
                if reply.identifier != identifier {
                    continue;
                }
                let index = usize::from(reply.sequence >> 8);
                if let Some(sent_at) = pending.remove(&(index, reply.sequence)) {
                    if let Some(r) = results.get_mut(index) {
                        r.received += 1;
                        let ms = sent_at.elapsed().as_secs_f64() * 1000.0;
                        r.rtt_ms.push((ms * 1000.0).round() / 1000.0);
                    }
                }
            }
            Ok(UdpEncapsulated::Ike(message)) => {
                let mut out = Vec::new();
                sa.handle(message, true, Instant::now(), &mut rng, &mut out);
                for o in out {
                    if let Output::Send { bytes, port_4500 } = o {
                        (ctx.send)(&bytes, port_4500)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(results)
}

/// Deletes the IKE SA and waits for the ePDG's answer.
fn detach(
    sa: &mut InitiatorSa,
    socket: &UdpSocket,
    send: &dyn Fn(&[u8], bool) -> Result<()>,
    ladder: &mut Ladder,
) -> Result<bool> {
    let mut rng = OsRng;
    let mut out = Vec::new();
    sa.delete(Instant::now(), &mut rng, &mut out);
    for o in out {
        if let Output::Send { bytes, port_4500 } = o {
            send(&bytes, port_4500)?;
        }
    }
    // The SA is closed on our side; an answer is a courtesy. Wait briefly for it.
    socket.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut buf = [0u8; 2048];
    let answered = socket.recv_from(&mut buf).is_ok();
    ladder.step("INFORMATIONAL(DELETE)");
    Ok(answered)
}

/// One target's result as ping(8) would sum it up.
pub fn ping_summary(p: &PingReport) -> String {
    let loss = if p.sent == 0 {
        100.0
    } else {
        100.0 * f64::from(p.sent - p.received.min(p.sent)) / f64::from(p.sent)
    };
    let rtt = if p.rtt_ms.is_empty() {
        String::new()
    } else {
        let min = p.rtt_ms.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = p.rtt_ms.iter().cloned().fold(0.0, f64::max);
        let avg = p.rtt_ms.iter().sum::<f64>() / p.rtt_ms.len() as f64;
        format!(", rtt min/avg/max {min:.3}/{avg:.3}/{max:.3} ms")
    };
    format!(
        "ping {}: {} sent, {} received, {loss:.0}% loss{rtt}",
        p.target, p.sent, p.received
    )
}

/// Prints the summary lines after the ladder.
pub fn print_summary(r: &AttachReport) {
    println!("result: {}", r.result);
    if let Some(v4) = r.ipv4 {
        println!("  ipv4:        {v4}");
    }
    if let Some(v6) = &r.ipv6_prefix {
        println!("  ipv6 prefix: {v6}");
    }
    for d in &r.dns {
        println!("  dns:         {d}");
    }
    for p in &r.pcscf {
        println!("  p-cscf:      {p}");
    }
    if let Some(n) = &r.notify {
        println!("  notify:      {n}");
    }
    if let Some(e) = &r.error {
        println!("  error:       {e}");
    }
    for p in &r.pings {
        println!("  {}", ping_summary(p));
        if let Some(e) = &p.error {
            println!("    error: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_sources_come_from_the_assigned_addresses() {
        let mut r = AttachReport {
            ipv4: Some(Ipv4Addr::new(10, 45, 0, 2)),
            ipv6_prefix: Some("2001:db8:45:1::/64".into()),
            ..AttachReport::default()
        };
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(ping_source(&r, v4), Some("10.45.0.2".parse().unwrap()));
        // A bare prefix gets interface identifier ::1; a full address is used as is.
        assert_eq!(
            ping_source(&r, v6),
            Some("2001:db8:45:1::1".parse().unwrap())
        );
        r.ipv6_prefix = Some("2001:db8:45:1::abcd/64".into());
        assert_eq!(
            ping_source(&r, v6),
            Some("2001:db8:45:1::abcd".parse().unwrap())
        );
        r.ipv4 = None;
        r.ipv6_prefix = Some("garbage".into());
        assert_eq!(ping_source(&r, v4), None);
        assert_eq!(ping_source(&r, v6), None);
    }

    #[test]
    fn ping_summary_reads_like_ping() {
        let mut p = PingReport {
            target: "192.0.2.1".parse().unwrap(),
            source: None,
            sent: 4,
            received: 3,
            rtt_ms: vec![1.0, 2.0, 3.0],
            error: None,
        };
        assert_eq!(
            ping_summary(&p),
            "ping 192.0.2.1: 4 sent, 3 received, 25% loss, rtt min/avg/max 1.000/2.000/3.000 ms"
        );
        p.received = 0;
        p.rtt_ms.clear();
        assert_eq!(
            ping_summary(&p),
            "ping 192.0.2.1: 4 sent, 0 received, 100% loss"
        );
    }
}
