//! The UE emulator (docs/attach.md): `ue-emu attach` runs one UE through the S2b
//! attach over one UDP socket and reports the ladder with per-step times; `ue-emu load`
//! ([`load`]) runs many. Both drive the one sans-IO UE core ([`ue::Ue`]: the IKEv2
//! initiator, the EAP-AKA peer and its software USIM); this module is the blocking shell
//! of `attach`, with its ping and TUN data plane.

pub mod config;
pub mod load;
pub mod ping;
pub mod tun;
pub mod ue;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pmip_common::eap::Sqn;
use pmip_common::ike::auth::{PeerVerifier, PinnedEcdsaP256Key};
use pmip_common::ike::ca::CaVerifier;
use pmip_common::ike::wire::{
    AuthPayload, CertPayload, ConfigAttribute, Identification, TrafficSelector,
};
use pmip_common::ike::{EspSuite, IkeSuite};
use rand::rngs::OsRng;
use serde::Serialize;

use config::UeConfig;
pub use ue::Step;
use ue::{
    ChildSa, CloseReason, Command, DetachPolicy, FailureCause, Identity, InitiatorConfig, Input,
    Output, Profile, RetransmitPolicy, Ue,
};

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

/// The IKE and USIM settings of `config`'s UEs toward its ePDG, for `apn`. The CP
/// payload asks for addresses and DNS servers, and P-CSCFs with `ask_pcscf` (RFC 7651).
/// `insecure` accepts any ePDG certificate.
pub fn profile(
    config: &UeConfig,
    apn: &str,
    insecure: bool,
    ask_pcscf: bool,
    detach: DetachPolicy,
) -> Result<Profile> {
    let mut cp_request = vec![
        ConfigAttribute::InternalIp4Address(None),
        ConfigAttribute::InternalIp4Dns(None),
        ConfigAttribute::InternalIp6Address(None),
        ConfigAttribute::InternalIp6Dns(None),
    ];
    if ask_pcscf {
        cp_request.push(ConfigAttribute::PCscfIp4Address(None));
        cp_request.push(ConfigAttribute::PCscfIp6Address(None));
    }
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
    let peer_verifier: Option<Arc<dyn PeerVerifier>> = if insecure {
        Some(Arc::new(AcceptAnything))
    } else {
        match (&config.epdg_public_key, &config.epdg_ca) {
            (Some(hex_key), _) => Some(Arc::new(PinnedEcdsaP256Key(
                hex::decode(hex_key).context("epdg_public_key is not hex")?,
            ))),
            // The ePDG's certificate must chain to the CA and name the identity it gives
            // in IDr (TS 33.402 section 8.2.2).
            (None, Some(ca)) => Some(Arc::new(
                CaVerifier::new(vec![
                    std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?
                ])
                .with_context(|| format!("epdg_ca {}", ca.display()))?,
            )),
            (None, None) => None,
        }
    };
    let local = SocketAddr::new(config.local, 0);
    Ok(Profile {
        epdg: config.epdg,
        epdg_natt: SocketAddr::new(config.epdg.ip(), config.epdg_natt_port),
        k: config.k()?,
        opc: config.opc()?,
        ike: InitiatorConfig {
            suites,
            esp_suites: EspSuite::defaults(),
            // IDi and the local address are set for each attach.
            idi: Identification::Rfc822Addr(String::new()),
            idr: Some(Identification::Fqdn(apn.to_string())),
            cp_request,
            tsi: vec![TrafficSelector::any_ipv4(), TrafficSelector::any_ipv6()],
            tsr: vec![TrafficSelector::any_ipv4(), TrafficSelector::any_ipv6()],
            local,
            remote: config.epdg,
            force_port_4500: true,
            eap_only: config.eap_only,
            peer_verifier,
            retransmit: RetransmitPolicy::default(),
            ..InitiatorConfig::default()
        },
        attach_timeout: Duration::from_millis(config.timeout_ms),
        detach,
    })
}

/// The blocking shell of `ue-emu attach`: the UE core on one UDP socket, its ladder
/// printed as it goes.
struct Shell<'a> {
    socket: &'a UdpSocket,
    ue: Ue,
    steps: Vec<Step>,
    print: bool,
    rng: OsRng,
    buf: Vec<u8>,
}

impl Shell<'_> {
    /// Carries out the core's outputs (datagrams, ladder steps) and returns the others.
    fn carry_out(&mut self, out: Vec<Output>) -> Result<Vec<Output>> {
        let mut rest = Vec::new();
        for o in out {
            match o {
                Output::Transmit { to, bytes } => send_to(self.socket, to, &bytes)?,
                Output::Step(step) => self.record(step),
                other => rest.push(other),
            }
        }
        Ok(rest)
    }

    /// A step of the shell's own (ping, TUN) on the UE's ladder.
    fn note(&mut self, name: String) {
        let step = self.ue.ladder_step(name, Instant::now());
        self.record(step);
    }

    fn record(&mut self, step: Step) {
        if self.print {
            println!("  {:<58} {:>8.1} ms", step.name, step.ms);
        }
        self.steps.push(step);
    }

    fn command(&mut self, command: Command) -> Result<Vec<Output>> {
        let mut out = Vec::new();
        self.ue.handle(
            Input::Command(command),
            Instant::now(),
            &mut self.rng,
            &mut out,
        );
        self.carry_out(out)
    }

    /// Runs the UE on the socket until `done` picks one of its outputs (`pending` first).
    fn run_until(
        &mut self,
        pending: Vec<Output>,
        done: impl Fn(&Output) -> bool,
    ) -> Result<Output> {
        let mut pending = pending;
        loop {
            if let Some(i) = pending.iter().position(&done) {
                return Ok(pending.swap_remove(i));
            }
            let now = Instant::now();
            let wake = self
                .ue
                .poll_timeout()
                .unwrap_or(now + Duration::from_secs(1));
            self.socket.set_read_timeout(Some(
                wake.saturating_duration_since(now)
                    .max(Duration::from_millis(1)),
            ))?;
            let mut out = Vec::new();
            match self.socket.recv_from(&mut self.buf) {
                Ok((n, from)) => self.ue.handle(
                    Input::Datagram {
                        from,
                        bytes: &self.buf[..n],
                    },
                    Instant::now(),
                    &mut self.rng,
                    &mut out,
                ),
                Err(e) if is_timeout(&e) => {
                    if self.ue.poll_timeout().is_some_and(|t| t <= Instant::now()) {
                        self.ue
                            .handle(Input::Timeout, Instant::now(), &mut self.rng, &mut out);
                    }
                }
                Err(e) => return Err(e).context("receiving from the ePDG"),
            }
            pending = self.carry_out(out)?;
        }
    }

    /// Deletes the IKE SA; true when the ePDG answered.
    fn detach(&mut self) -> Result<bool> {
        let out = self.command(Command::Detach)?;
        match self.run_until(out, |o| matches!(o, Output::Detached { .. }))? {
            Output::Detached { answered } => Ok(answered),
            _ => Ok(false),
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn send_to(socket: &UdpSocket, to: SocketAddr, bytes: &[u8]) -> Result<()> {
    socket
        .send_to(bytes, to)
        .with_context(|| format!("sending to the ePDG {to}"))?;
    Ok(())
}

/// Carries out what the UE core asked for after an IKE datagram or a timeout while
/// attached (answers to the ePDG's liveness checks); the reason when its IKE SA ended.
pub(crate) fn carry_out_attached(
    out: Vec<Output>,
    send: &dyn Fn(SocketAddr, &[u8]) -> Result<()>,
) -> Result<Option<CloseReason>> {
    let mut closed = None;
    for o in out {
        match o {
            Output::Transmit { to, bytes } => send(to, &bytes)?,
            Output::Closed(reason) => closed = Some(reason),
            _ => {}
        }
    }
    Ok(closed)
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
    let sqn_ms = Sqn::new(config.sqn).context("sqn is more than 48 bits")?;
    // A --tun device is created first: without the privilege, fail before attaching.
    let mut tun_device = options
        .tun
        .as_ref()
        .map(|t| tun::TunDevice::open(&t.name))
        .transpose()?;
    let socket = UdpSocket::bind(SocketAddr::new(config.local, 0))
        .with_context(|| format!("binding UDP at {}", config.local))?;
    let local = socket.local_addr()?;
    if options.insecure {
        eprintln!("WARNING: --insecure: the ePDG's certificate is NOT checked");
    }
    let profile = profile(
        config,
        &apn,
        options.insecure,
        true,
        DetachPolicy {
            attempts: 1,
            wait: Duration::from_millis(500),
        },
    )?;
    let natt = profile.epdg_natt;
    let identity = Identity {
        imsi: config.imsi.clone(),
        nai,
        sqn_ms,
    };
    let mut shell = Shell {
        socket: &socket,
        ue: Ue::new(Arc::new(profile), identity, Instant::now()),
        steps: Vec::new(),
        print: options.print,
        rng: OsRng,
        buf: vec![0u8; 65536],
    };
    let mut report = AttachReport {
        imsi: config.imsi.clone(),
        apn,
        ..AttachReport::default()
    };
    let pending = shell.command(Command::Attach { local })?;
    let end = shell.run_until(pending, |o| {
        matches!(o, Output::Attached(_) | Output::Failed(_))
    })?;
    match end {
        Output::Attached(attachment) => {
            report.result = "attached".into();
            report.ipv4 = attachment.ipv4;
            report.ipv6_prefix = attachment.ipv6.map(|(v, len)| format!("{v}/{len}"));
            report.dns = attachment.dns.clone();
            report.pcscf = attachment.pcscf.clone();
            report.error = attachment.usim_problem.clone();
            let child = &attachment.child;
            if !options.pings.is_empty() {
                report.pings = ping_all(&mut shell, natt, child, &report, options)?;
                let received: u32 = report.pings.iter().map(|p| p.received).sum();
                let sent: u32 = report.pings.iter().map(|p| p.sent).sum();
                shell.note(format!("ping: {received}/{sent} echo replies"));
            }
            match (&options.tun, tun_device.take()) {
                (Some(tun_options), Some(device)) => {
                    let until = (!options.hold.is_zero()).then(|| Instant::now() + options.hold);
                    let assigned = tun::Assigned {
                        ipv4: report.ipv4,
                        ipv6: assigned_ipv6(&report),
                    };
                    let send = |to: SocketAddr, bytes: &[u8]| send_to(&socket, to, bytes);
                    let link = tun::EpdgLink {
                        socket: &socket,
                        natt,
                        send: &send,
                    };
                    let relayed = tun::relay(
                        device,
                        &link,
                        &mut shell.ue,
                        child,
                        assigned,
                        tun_options,
                        until,
                    );
                    let relayed = match relayed {
                        Ok(r) => r,
                        Err(e) => {
                            // Leave no session behind at the ePDG.
                            if !options.no_detach {
                                let _ = shell.detach();
                            }
                            return Err(e);
                        }
                    };
                    let step = format!(
                        "TUN {}: {} packets up, {} down",
                        relayed.name, relayed.uplink_packets, relayed.downlink_packets
                    );
                    shell.note(step);
                    report.tun = Some(relayed);
                }
                _ if !options.hold.is_zero() => std::thread::sleep(options.hold),
                _ => {}
            }
            if !options.no_detach {
                report.detached = shell.detach()?;
            }
        }
        Output::Failed(failure) => {
            report.result = "failed".into();
            if let FailureCause::Ike(CloseReason::NotifyReceived(n)) = &failure.cause {
                report.notify = Some(ue::notify_name(*n));
            }
            report.error = Some(failure.to_string());
        }
        _ => report.result = "failed".into(),
    }
    report.steps = shell.steps;
    Ok(report)
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
    shell: &mut Shell<'_>,
    natt: SocketAddr,
    child: &ChildSa,
    report: &AttachReport,
    options: &AttachOptions,
) -> Result<Vec<PingReport>> {
    let socket = shell.socket;
    let send = |to: SocketAddr, bytes: &[u8]| send_to(socket, to, bytes);
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
                socket
                    .send_to(&esp, natt)
                    .with_context(|| format!("sending ESP to {natt}"))?;
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
        socket.set_read_timeout(Some(
            wake.saturating_duration_since(now)
                .max(Duration::from_millis(1)),
        ))?;
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if is_timeout(&e) => continue,
            Err(e) => return Err(e).context("receiving from the ePDG"),
        };
        if from != natt {
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
            Ok(UdpEncapsulated::Ike(_)) => {
                let mut out = Vec::new();
                let datagram = Input::Datagram {
                    from,
                    bytes: &buf[..n],
                };
                shell
                    .ue
                    .handle(datagram, Instant::now(), &mut rng, &mut out);
                carry_out_attached(out, &send)?;
            }
            _ => {}
        }
    }
    Ok(results)
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
