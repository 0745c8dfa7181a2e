//! The UE emulator (DESIGN.md section 6): `ue-emu attach` runs one UE through the S2b
//! attach, the IKEv2 initiator ([`pmip_common::ike::sa::InitiatorSa`]) driven together
//! with the EAP-AKA peer ([`pmip_common::eap::Peer`], a software USIM) over one UDP
//! socket, and reports the ladder with per-step times.

pub mod config;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pmip_common::eap::{Peer, PeerConfig, PeerOutput, Sqn, Usim};
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
                        let code = eap.first().copied().unwrap_or(0);
                        match code {
                            1 => {
                                eap_rounds += 1;
                                ladder.step(if eap_rounds == 1 {
                                    "IKE_AUTH(IDi, IDr=APN, CP) -> EAP-Request (AAA via ePDG)"
                                        .to_string()
                                } else {
                                    format!("EAP-Response -> EAP-Request #{eap_rounds}")
                                });
                            }
                            3 => ladder.step("EAP-Response -> EAP-Success (after PBA)"),
                            4 => ladder.step("EAP-Failure"),
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
            if !options.hold.is_zero() {
                std::thread::sleep(options.hold);
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
}
