//! `ue-emu load`: an attach storm. Many emulated UEs, each with its own IMSI (consecutive
//! from the configuration's `imsi`, the range the AAA provisions with one `[[range]]`),
//! its own IKE SA, EAP-AKA run and software USIM, through the real ePDG, AAA and LMA.
//!
//! Design: one tokio task per UE, each with its own UDP socket (an ephemeral port on
//! `local`), so the ePDG sees every UE as a distinct peer, as behind distinct NATs, and
//! no demultiplexing sits on the UE side. A pacer hands out attach starts at `--rate` per
//! second (0: all at once); an idle UE takes the next start. Without `--duration` each UE
//! attaches once; with it, UEs attach, detach and attach again until the time is up.
//! The latency of an attach runs from its IKE_SA_INIT to the IKE_AUTH response carrying
//! the CFG_REPLY (the UE is attached). The tasks run on a multi-threaded runtime, so the
//! UE side uses every core it can get; its CPU time is reported so a reader can tell
//! whether it, rather than the ePDG, was the limit.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pmip_common::eap::{Peer, PeerConfig, PeerOutput, Sqn, Usim};
use pmip_common::ike::auth::{PeerVerifier, PinnedEcdsaP256Key};
use pmip_common::ike::initiator::{InitiatorConfig, InitiatorSa};
use pmip_common::ike::sa::{CloseReason, Event, Output};
use pmip_common::ike::wire::{ConfigAttribute, Identification, TrafficSelector};
use pmip_common::ike::{EspSuite, IkeSuite};
use rand::rngs::OsRng;
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::{watch, Semaphore};

use crate::config::UeConfig;
use crate::CaVerifier;

/// What `ue-emu load` is asked to do.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// How many UEs (distinct IMSIs).
    pub ues: u64,
    /// Attach starts per second; 0 starts every UE at once.
    pub rate: f64,
    /// Keep attaching (attach, detach, attach again) for this long.
    pub duration: Option<Duration>,
    /// After every UE is attached (single-pass mode), stay attached this long before
    /// detaching: for measuring the ePDG's memory per attached UE.
    pub hold: Duration,
    pub apn: Option<String>,
    pub insecure: bool,
    /// Print progress lines on stderr.
    pub progress: bool,
}

/// Latency percentiles of the successful attaches, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// What `ue-emu load --json` prints.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    pub ues: u64,
    pub first_imsi: String,
    /// The rate asked for (attach starts per second; 0 = all at once).
    pub rate_requested: f64,
    pub attempted: u64,
    pub attached: u64,
    pub failed: u64,
    /// attached / attempted.
    pub success_rate: f64,
    /// Seconds from the first attach start to the last attach's end.
    pub elapsed_s: f64,
    /// Successful attaches per second over `elapsed_s`.
    pub attaches_per_s: f64,
    pub latency_ms: Latency,
    /// Detaches the ePDG answered.
    pub detached: u64,
    /// CPU seconds (user + system) this process used: the UE side's own cost.
    pub ue_cpu_s: f64,
    /// The first few distinct failure reasons, with counts.
    pub errors: Vec<(String, u64)>,
}

/// The per-UE settings shared by every task.
struct Shared {
    config: UeConfig,
    ike: InitiatorConfig,
    k: [u8; 16],
    opc: [u8; 16],
    first: u64,
    digits: usize,
    natt: SocketAddr,
    results: Mutex<Results>,
    attempts: AtomicU64,
    attached_now: AtomicU64,
}

#[derive(Default)]
struct Results {
    latencies_ms: Vec<f64>,
    failed: u64,
    detached: u64,
    errors: Vec<(String, u64)>,
    first_start: Option<Instant>,
    last_end: Option<Instant>,
}

impl Results {
    fn error(&mut self, e: String) {
        self.failed += 1;
        if let Some(slot) = self.errors.iter_mut().find(|(t, _)| *t == e) {
            slot.1 += 1;
        } else if self.errors.len() < 8 {
            self.errors.push((e, 1));
        }
    }
}

/// The IMSI of UE `index`: the first IMSI plus `index`, same number of digits.
pub fn imsi_of(first: u64, digits: usize, index: u64) -> String {
    format!("{:0digits$}", first + index)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// CPU seconds this process has used (user + system), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        // USER_HZ is 100 on Linux for every architecture we run on.
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => 0.0,
    }
}

/// Runs the storm and returns the report; `Err` only for local problems.
pub async fn run(config: UeConfig, options: LoadOptions) -> Result<LoadReport> {
    anyhow::ensure!(options.ues > 0, "--ues must be at least 1");
    anyhow::ensure!(
        options.rate >= 0.0 && options.rate.is_finite(),
        "--rate must be 0 or positive"
    );
    anyhow::ensure!(
        config.nai.is_none(),
        "load derives each UE's NAI from its IMSI: remove `nai` from the config"
    );
    let first: u64 = config
        .imsi
        .parse()
        .with_context(|| format!("imsi {:?} is not a number", config.imsi))?;
    let digits = config.imsi.len();
    let last = first + options.ues - 1;
    anyhow::ensure!(
        last.to_string().len() <= digits,
        "{} UEs from IMSI {} do not fit in {digits} digits",
        options.ues,
        config.imsi
    );
    let apn = options
        .apn
        .clone()
        .or_else(|| config.apn.clone())
        .context("no APN: give --apn or apn in the config")?;
    let ike = initiator_template(&config, &apn, options.insecure)?;
    let shared = Arc::new(Shared {
        k: config.k()?,
        opc: config.opc()?,
        natt: SocketAddr::new(config.epdg.ip(), config.epdg_natt_port),
        ike,
        first,
        digits,
        config,
        results: Mutex::new(Results::default()),
        attempts: AtomicU64::new(0),
        attached_now: AtomicU64::new(0),
    });
    let cpu_before = cpu_seconds();
    let starts = Arc::new(Semaphore::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (release_tx, release_rx) = watch::channel(false);
    let run_end = options.duration.map(|d| Instant::now() + d);

    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..options.ues {
        let shared = Arc::clone(&shared);
        let starts = Arc::clone(&starts);
        let stop = stop_rx.clone();
        let release = release_rx.clone();
        let looping = options.duration.is_some();
        tasks.spawn(async move {
            ue_task(shared, index, starts, stop, release, looping).await;
        });
    }

    // The pacer: permits at the asked rate.
    let started = Instant::now();
    if options.rate == 0.0 && run_end.is_none() {
        starts.add_permits(options.ues as usize);
    } else {
        let interval = if options.rate == 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(1.0 / options.rate)
        };
        let mut issued: u64 = 0;
        let mut last_progress = Instant::now();
        loop {
            let now = Instant::now();
            if let Some(end) = run_end {
                if now >= end {
                    break;
                }
            } else if issued >= options.ues {
                break;
            }
            // Catch up to the schedule: as many permits as are due by now.
            let due = if interval.is_zero() {
                issued + options.ues
            } else {
                (now - started)
                    .as_secs_f64()
                    .div_euclid(interval.as_secs_f64()) as u64
                    + 1
            };
            let due = match run_end {
                Some(_) => due,
                None => due.min(options.ues),
            };
            if due > issued {
                starts.add_permits((due - issued) as usize);
                issued = due;
            }
            let next = started + interval.mul_f64(issued as f64);
            let wake = match run_end {
                Some(end) => next.min(end),
                None => next,
            };
            if options.progress && last_progress.elapsed() >= Duration::from_secs(2) {
                last_progress = Instant::now();
                eprintln!(
                    "load: {issued} starts issued, {} attached now",
                    shared.attached_now.load(Ordering::Relaxed)
                );
            }
            tokio::time::sleep_until(wake.max(Instant::now()).into()).await;
            if interval.is_zero() && run_end.is_some() {
                // Unlimited rate for a duration: keep every idle UE busy.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    if run_end.is_some() {
        let _ = stop_tx.send(true);
        starts.close();
    } else {
        // Single pass: wait until every UE has an outcome, then hold.
        loop {
            let done = {
                let r = shared
                    .results
                    .lock()
                    .map_err(|_| anyhow::anyhow!("results lock poisoned"))?;
                r.latencies_ms.len() as u64 + r.failed
            };
            if done >= options.ues {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !options.hold.is_zero() {
            let attached = shared.attached_now.load(Ordering::Relaxed);
            eprintln!(
                "load: holding {attached} attached UEs for {} s",
                options.hold.as_secs_f64()
            );
            tokio::time::sleep(options.hold).await;
        }
    }
    let _ = release_tx.send(true);
    while tasks.join_next().await.is_some() {}

    let results = shared
        .results
        .lock()
        .map_err(|_| anyhow::anyhow!("results lock poisoned"))?;
    let mut sorted = results.latencies_ms.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let attached = sorted.len() as u64;
    let attempted = shared.attempts.load(Ordering::Relaxed);
    let elapsed = match (results.first_start, results.last_end) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => 0.0,
    };
    let mean = if sorted.is_empty() {
        0.0
    } else {
        sorted.iter().sum::<f64>() / sorted.len() as f64
    };
    Ok(LoadReport {
        ues: options.ues,
        first_imsi: shared.config.imsi.clone(),
        rate_requested: options.rate,
        attempted,
        attached,
        failed: results.failed,
        success_rate: if attempted == 0 {
            0.0
        } else {
            round3(attached as f64 / attempted as f64)
        },
        elapsed_s: round3(elapsed),
        attaches_per_s: if elapsed > 0.0 {
            round3(attached as f64 / elapsed)
        } else {
            0.0
        },
        latency_ms: Latency {
            p50: round3(percentile(&sorted, 50.0)),
            p90: round3(percentile(&sorted, 90.0)),
            p99: round3(percentile(&sorted, 99.0)),
            max: round3(sorted.last().copied().unwrap_or(0.0)),
            mean: round3(mean),
        },
        detached: results.detached,
        ue_cpu_s: round3(cpu_seconds() - cpu_before),
        errors: results.errors.clone(),
    })
}

/// The IKE initiator settings common to every UE (IDi, `local` are filled per UE).
fn initiator_template(config: &UeConfig, apn: &str, insecure: bool) -> Result<InitiatorConfig> {
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
        Some(Arc::new(crate::AcceptAnything))
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
    Ok(InitiatorConfig {
        suites,
        esp_suites: EspSuite::defaults(),
        idi: Identification::Rfc822Addr(String::new()),
        idr: Some(Identification::Fqdn(apn.to_string())),
        cp_request: vec![
            ConfigAttribute::InternalIp4Address(None),
            ConfigAttribute::InternalIp4Dns(None),
            ConfigAttribute::InternalIp6Address(None),
            ConfigAttribute::InternalIp6Dns(None),
        ],
        tsi: vec![TrafficSelector::any_ipv4(), TrafficSelector::any_ipv6()],
        tsr: vec![TrafficSelector::any_ipv4(), TrafficSelector::any_ipv6()],
        local: SocketAddr::new(config.local, 0),
        remote: config.epdg,
        force_port_4500: true,
        eap_only: config.eap_only,
        peer_verifier,
        retransmit: Default::default(),
    })
}

/// One UE: waits for a start, attaches, then (looping) detaches and waits again, or
/// (single pass) stays attached until released and detaches.
async fn ue_task(
    shared: Arc<Shared>,
    index: u64,
    starts: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    mut release: watch::Receiver<bool>,
    looping: bool,
) {
    let imsi = imsi_of(shared.first, shared.digits, index);
    let mut sqn_ms = shared.config.sqn;
    loop {
        let permit = tokio::select! {
            p = starts.acquire() => p,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok(permit) = permit else { return };
        permit.forget();
        if *stop.borrow() {
            return;
        }
        shared.attempts.fetch_add(1, Ordering::Relaxed);
        let begin = Instant::now();
        if let Ok(mut r) = shared.results.lock() {
            r.first_start.get_or_insert(begin);
        }
        let outcome = attach_once(&shared, &imsi, &mut sqn_ms).await;
        let end = Instant::now();
        match outcome {
            Ok(mut ue) => {
                shared.attached_now.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut r) = shared.results.lock() {
                    r.latencies_ms.push((end - begin).as_secs_f64() * 1000.0);
                    r.last_end = Some(end);
                }
                if !looping {
                    // Stay attached (answering the ePDG's liveness checks) until released.
                    ue.serve_until(&mut release).await;
                }
                let answered = ue.detach().await;
                shared.attached_now.fetch_sub(1, Ordering::Relaxed);
                if let Ok(mut r) = shared.results.lock() {
                    r.detached += u64::from(answered);
                }
            }
            Err(e) => {
                if let Ok(mut r) = shared.results.lock() {
                    r.error(e);
                    r.last_end = Some(end);
                }
            }
        }
        if !looping {
            return;
        }
    }
}

/// An attached UE: its socket and IKE SA.
struct AttachedUe {
    socket: UdpSocket,
    sa: InitiatorSa,
    epdg: SocketAddr,
    natt: SocketAddr,
}

impl AttachedUe {
    async fn send(&self, bytes: &[u8], port_4500: bool) -> std::io::Result<()> {
        send(&self.socket, self.epdg, self.natt, bytes, port_4500).await
    }

    /// Answers the ePDG's requests (liveness checks) until `release` turns true.
    async fn serve_until(&mut self, release: &mut watch::Receiver<bool>) {
        let mut buf = vec![0u8; 4096];
        loop {
            let received = tokio::select! {
                r = self.socket.recv_from(&mut buf) => r,
                _ = release.wait_for(|r| *r) => return,
            };
            let Ok((n, from)) = received else { return };
            let Some(data) = ike_payload(&buf[..n], from, self.natt) else {
                continue;
            };
            let mut out = Vec::new();
            self.sa.handle(
                data,
                from == self.natt,
                Instant::now(),
                &mut OsRng,
                &mut out,
            );
            for o in out {
                if let Output::Send { bytes, port_4500 } = o {
                    let _ = self.send(&bytes, port_4500).await;
                }
            }
        }
    }

    /// Deletes the IKE SA; true when the ePDG answered. The request is sent again every
    /// second, up to four times, as a storm's burst of detaches may overflow a queue.
    async fn detach(mut self) -> bool {
        let mut out = Vec::new();
        self.sa.delete(Instant::now(), &mut OsRng, &mut out);
        let requests: Vec<(Vec<u8>, bool)> = out
            .into_iter()
            .filter_map(|o| match o {
                Output::Send { bytes, port_4500 } => Some((bytes, port_4500)),
                Output::Event(_) => None,
            })
            .collect();
        let mut buf = [0u8; 2048];
        for _ in 0..5 {
            for (bytes, port_4500) in &requests {
                if self.send(bytes, *port_4500).await.is_err() {
                    return false;
                }
            }
            let wait =
                tokio::time::timeout(Duration::from_secs(1), self.socket.recv_from(&mut buf));
            if let Ok(Ok((n, from))) = wait.await {
                // Any IKE message from the ePDG for this SA now is the answer.
                if ike_payload(&buf[..n], from, self.natt).is_some() {
                    return true;
                }
            }
        }
        false
    }
}

async fn send(
    socket: &UdpSocket,
    epdg: SocketAddr,
    natt: SocketAddr,
    bytes: &[u8],
    port_4500: bool,
) -> std::io::Result<()> {
    if port_4500 {
        let mut d = Vec::with_capacity(bytes.len() + 4);
        d.extend_from_slice(&[0, 0, 0, 0]);
        d.extend_from_slice(bytes);
        socket.send_to(&d, natt).await?;
    } else {
        socket.send_to(bytes, epdg).await?;
    }
    Ok(())
}

/// The IKE message in a datagram from the ePDG (non-ESP marker removed on port 4500).
fn ike_payload(data: &[u8], from: SocketAddr, natt: SocketAddr) -> Option<&[u8]> {
    if from == natt {
        data.strip_prefix(&[0, 0, 0, 0])
    } else {
        Some(data)
    }
}

/// One attach of `imsi`: Ok with the attached UE, or Err naming why it failed.
async fn attach_once(
    shared: &Shared,
    imsi: &str,
    sqn_ms: &mut u64,
) -> std::result::Result<AttachedUe, String> {
    let nai =
        pmip_common::eap::permanent_identity(imsi, shared.config.mnc_digits).ok_or_else(|| {
            format!(
                "IMSI {imsi} has no NAI with {} MNC digits",
                shared.config.mnc_digits
            )
        })?;
    let usim = Usim::new(
        &shared.k,
        &shared.opc,
        Sqn::new(*sqn_ms).ok_or("sqn is more than 48 bits")?,
    );
    let mut peer = Peer::new(
        PeerConfig {
            permanent_identity: nai.clone().into_bytes(),
            eap_identity: Some(nai.clone().into_bytes()),
            result_indication: false,
        },
        usim,
    );
    let socket = UdpSocket::bind(SocketAddr::new(shared.config.local, 0))
        .await
        .map_err(|e| format!("binding UDP at {}: {e}", shared.config.local))?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let mut ike = shared.ike.clone();
    ike.idi = Identification::Rfc822Addr(nai);
    ike.local = local;
    let epdg = shared.config.epdg;
    let natt = shared.natt;
    let mut rng = OsRng;
    let mut out = Vec::new();
    let mut sa = InitiatorSa::start(ike, Instant::now(), &mut rng, &mut out)
        .map_err(|e| format!("starting IKE: {e}"))?;
    let deadline = Instant::now() + Duration::from_millis(shared.config.timeout_ms);
    let mut buf = vec![0u8; 65536];
    let mut usim_error: Option<String> = None;
    loop {
        while !out.is_empty() {
            for o in std::mem::take(&mut out) {
                match o {
                    Output::Send { bytes, port_4500 } => {
                        send(&socket, epdg, natt, &bytes, port_4500)
                            .await
                            .map_err(|e| format!("sending to the ePDG {epdg}: {e}"))?;
                    }
                    Output::Event(Event::EapRequest(eap)) => {
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
                                PeerOutput::SqnAccepted(sqn) => *sqn_ms = sqn.value(),
                                PeerOutput::Problem(p) => {
                                    usim_error = Some(format!("USIM: {p:?}"));
                                }
                                PeerOutput::Failure(p) => {
                                    usim_error.get_or_insert_with(|| {
                                        format!("EAP-Failure (last problem: {p:?})")
                                    });
                                }
                                PeerOutput::Discarded(_) => {}
                            }
                        }
                    }
                    Output::Event(Event::Established(_)) => {
                        return Ok(AttachedUe {
                            socket,
                            sa,
                            epdg,
                            natt,
                        });
                    }
                    Output::Event(Event::Closed(reason)) => {
                        let text = match reason {
                            CloseReason::NotifyReceived(n) => {
                                format!("notify {n:?} ({})", u16::from(n))
                            }
                            CloseReason::Timeout => "no answer from the ePDG".to_string(),
                            other => format!("IKE SA closed: {other:?}"),
                        };
                        return Err(match usim_error {
                            Some(u) => format!("{text}; {u}"),
                            None => text,
                        });
                    }
                    Output::Event(_) => {}
                }
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(format!("no attach within {} ms", shared.config.timeout_ms));
        }
        let wake = sa.poll_timeout().unwrap_or(deadline).min(deadline);
        match tokio::time::timeout_at(wake.into(), socket.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => {
                if from.ip() != epdg.ip() {
                    continue;
                }
                if let Some(data) = ike_payload(&buf[..n], from, natt) {
                    sa.handle(data, from == natt, Instant::now(), &mut rng, &mut out);
                }
            }
            Ok(Err(e)) => return Err(format!("receiving from the ePDG: {e}")),
            Err(_) => {
                if sa.poll_timeout().is_some_and(|t| t <= Instant::now()) {
                    sa.handle_timeout(Instant::now(), &mut out);
                }
            }
        }
    }
}

/// Prints the human-readable summary.
pub fn print_report(r: &LoadReport) {
    println!(
        "load: {} UEs from IMSI {}, rate {} /s requested",
        r.ues,
        r.first_imsi,
        if r.rate_requested == 0.0 {
            "unlimited".to_string()
        } else {
            r.rate_requested.to_string()
        }
    );
    println!(
        "  attempted {}, attached {}, failed {} (success {:.1}%)",
        r.attempted,
        r.attached,
        r.failed,
        r.success_rate * 100.0
    );
    println!(
        "  {:.1} attaches/s over {:.2} s",
        r.attaches_per_s, r.elapsed_s
    );
    let l = &r.latency_ms;
    println!(
        "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  mean {:.2}",
        l.p50, l.p90, l.p99, l.max, l.mean
    );
    println!(
        "  detaches answered {}; UE-side CPU {:.2} s",
        r.detached, r.ue_cpu_s
    );
    for (e, n) in &r.errors {
        println!("  error x{n}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imsis_count_up_with_leading_zeros() {
        assert_eq!(imsi_of(1010000000001, 15, 0), "001010000000001");
        assert_eq!(imsi_of(1010000000001, 15, 9), "001010000000010");
    }

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
