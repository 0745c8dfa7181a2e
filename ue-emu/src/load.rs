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
use pmip_common::eap::Sqn;
use rand::rngs::OsRng;
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::{watch, Semaphore};

use crate::config::UeConfig;
use crate::ue::{
    notify_name, CloseReason, Command, DetachPolicy, Failure, FailureCause, Identity, Input,
    Output, Profile, Ue,
};

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
    profile: Arc<Profile>,
    first: u64,
    digits: usize,
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
    let profile = crate::profile(
        &config,
        &apn,
        options.insecure,
        false,
        // A storm's burst of detaches may overflow a queue at the ePDG: the DELETE is
        // sent again every second, up to five times.
        DetachPolicy {
            attempts: 5,
            wait: Duration::from_secs(1),
        },
    )?;
    let shared = Arc::new(Shared {
        profile: Arc::new(profile),
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
    let mut ue = new_ue(&shared, &imsi);
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
        let outcome = match &mut ue {
            Ok(ue) => attach_once(&shared, ue).await,
            Err(e) => Err(e.clone()),
        };
        let end = Instant::now();
        match (outcome, &mut ue) {
            (Ok(socket), Ok(ue)) => {
                shared.attached_now.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut r) = shared.results.lock() {
                    r.latencies_ms.push((end - begin).as_secs_f64() * 1000.0);
                    r.last_end = Some(end);
                }
                let mut shell = Shell {
                    socket,
                    epdg: shared.profile.epdg,
                    buf: vec![0u8; 4096],
                };
                if !looping {
                    // Stay attached (answering the ePDG's liveness checks) until released.
                    let _ = shell
                        .run_until(
                            ue,
                            Vec::new(),
                            |o| matches!(o, Output::Closed(_)),
                            Some(&mut release),
                        )
                        .await;
                }
                let answered = shell.detach(ue).await;
                shared.attached_now.fetch_sub(1, Ordering::Relaxed);
                if let Ok(mut r) = shared.results.lock() {
                    r.detached += u64::from(answered);
                }
            }
            (outcome, _) => {
                if let Ok(mut r) = shared.results.lock() {
                    r.error(outcome.err().unwrap_or_default());
                    r.last_end = Some(end);
                }
            }
        }
        if !looping {
            return;
        }
    }
}

/// The UE core of `imsi`, or why it cannot attach.
fn new_ue(shared: &Shared, imsi: &str) -> std::result::Result<Ue, String> {
    let nai =
        pmip_common::eap::permanent_identity(imsi, shared.config.mnc_digits).ok_or_else(|| {
            format!(
                "IMSI {imsi} has no NAI with {} MNC digits",
                shared.config.mnc_digits
            )
        })?;
    let sqn_ms = Sqn::new(shared.config.sqn).ok_or("sqn is more than 48 bits")?;
    let identity = Identity {
        imsi: imsi.to_string(),
        nai,
        sqn_ms,
    };
    Ok(Ue::new(
        Arc::clone(&shared.profile),
        identity,
        Instant::now(),
    ))
}

/// The async shell of one UE: the core on its own UDP socket.
struct Shell {
    socket: UdpSocket,
    epdg: SocketAddr,
    buf: Vec<u8>,
}

impl Shell {
    /// Sends the core's datagrams and returns its other outputs.
    async fn carry_out(&self, out: Vec<Output>) -> std::result::Result<Vec<Output>, String> {
        let mut rest = Vec::new();
        for o in out {
            match o {
                Output::Transmit { to, bytes } => {
                    self.socket
                        .send_to(&bytes, to)
                        .await
                        .map_err(|e| format!("sending to the ePDG {}: {e}", self.epdg))?;
                }
                Output::Step(_) => {}
                other => rest.push(other),
            }
        }
        Ok(rest)
    }

    /// Runs `ue` on the socket until `done` picks one of its outputs (`pending` first);
    /// `None` when `release` turned true first.
    async fn run_until(
        &mut self,
        ue: &mut Ue,
        mut pending: Vec<Output>,
        done: impl Fn(&Output) -> bool,
        mut release: Option<&mut watch::Receiver<bool>>,
    ) -> std::result::Result<Option<Output>, String> {
        loop {
            if let Some(i) = pending.iter().position(&done) {
                return Ok(Some(pending.swap_remove(i)));
            }
            let wake = ue.poll_timeout();
            let released = async {
                match release.as_deref_mut() {
                    Some(r) => {
                        let _ = r.wait_for(|r| *r).await;
                    }
                    None => std::future::pending().await,
                }
            };
            let mut out = Vec::new();
            tokio::select! {
                received = self.socket.recv_from(&mut self.buf) => {
                    let (n, from) = received.map_err(|e| format!("receiving from the ePDG: {e}"))?;
                    let datagram = Input::Datagram { from, bytes: &self.buf[..n] };
                    ue.handle(datagram, Instant::now(), &mut OsRng, &mut out);
                }
                _ = sleep_until(wake) => {
                    ue.handle(Input::Timeout, Instant::now(), &mut OsRng, &mut out);
                }
                _ = released => return Ok(None),
            }
            pending = self.carry_out(out).await?;
        }
    }

    /// Deletes the IKE SA; true when the ePDG answered.
    async fn detach(&mut self, ue: &mut Ue) -> bool {
        let mut out = Vec::new();
        ue.handle(
            Input::Command(Command::Detach),
            Instant::now(),
            &mut OsRng,
            &mut out,
        );
        let Ok(pending) = self.carry_out(out).await else {
            return false;
        };
        let detached = self
            .run_until(ue, pending, |o| matches!(o, Output::Detached { .. }), None)
            .await;
        matches!(detached, Ok(Some(Output::Detached { answered: true })))
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// One attach of `ue` from a new socket: Ok with the socket, or Err naming why it failed.
async fn attach_once(shared: &Shared, ue: &mut Ue) -> std::result::Result<UdpSocket, String> {
    let local = shared.config.local;
    let socket = UdpSocket::bind(SocketAddr::new(local, 0))
        .await
        .map_err(|e| format!("binding UDP at {local}: {e}"))?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let mut shell = Shell {
        socket,
        epdg: shared.profile.epdg,
        buf: vec![0u8; 65536],
    };
    let mut out = Vec::new();
    ue.handle(
        Input::Command(Command::Attach { local }),
        Instant::now(),
        &mut OsRng,
        &mut out,
    );
    let pending = shell.carry_out(out).await?;
    let end = shell
        .run_until(
            ue,
            pending,
            |o| matches!(o, Output::Attached(_) | Output::Failed(_)),
            None,
        )
        .await?;
    match end {
        Some(Output::Attached(_)) => Ok(shell.socket),
        Some(Output::Failed(f)) => Err(failure_text(&f)),
        _ => Err("the attach ended without an outcome".into()),
    }
}

/// How the report's `errors` name a failed attach.
fn failure_text(f: &Failure) -> String {
    let text = match &f.cause {
        FailureCause::Ike(CloseReason::NotifyReceived(n)) => format!("notify {}", notify_name(*n)),
        // The overall deadline names no USIM problem.
        FailureCause::AttachTimeout(_) => return f.cause.to_string(),
        cause => cause.to_string(),
    };
    match &f.usim_problem {
        Some(u) => format!("{text}; {u}"),
        None => text,
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
